//! The web console's browser scenarios (`tests/browser/*.mjs`): Node
//! driving a headless browser against a running host, Debian's Chromium
//! with playwright-core or Debian's Firefox ESR with puppeteer-core.
//! `tests/run.sh` installs them; without one a scenario fails with a
//! message saying so, it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// A browser a scenario drives, and the Node library that drives it.
#[derive(Clone, Copy, Debug)]
pub enum Browser {
    /// Debian's `chromium`, through playwright-core.
    Chromium,
    /// Debian's `firefox-esr`, through puppeteer-core (WebDriver BiDi).
    Firefox,
}

impl Browser {
    /// Where Debian's package puts the browser.
    fn executable(self) -> &'static str {
        match self {
            Browser::Chromium => "/usr/bin/chromium",
            Browser::Firefox => "/usr/bin/firefox-esr",
        }
    }

    /// The npm package (in `tests/browser/package.json`) that drives it.
    fn driver(self) -> &'static str {
        match self {
            Browser::Chromium => "playwright-core",
            Browser::Firefox => "puppeteer-core",
        }
    }

    /// Panics, saying how to install them, when the browser or its
    /// automation library is missing.
    fn assert_installed(self) {
        let (browser, driver) = (self.executable(), self.driver());
        // Debian names both packages as their executables.
        let package = browser.rsplit('/').next().unwrap_or(browser);
        let hint = format!(
            "run tests/run.sh (it installs Debian's {package} with apt and {driver} with `npm ci` in tests/browser)"
        );
        assert!(Path::new(browser).exists(), "{browser} is missing: {hint}");
        assert!(
            browser_dir()
                .join(format!("node_modules/{driver}/package.json"))
                .exists(),
            "tests/browser/node_modules has no {driver}: {hint}"
        );
    }
}

/// How long one scenario may take before it is stopped and failed.
const SCENARIO_TIMEOUT: Duration = Duration::from_secs(240);

/// The scenarios' folder, `tests/browser/`.
pub fn browser_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/browser")
}

/// Where the scenarios leave their screenshots: `target/console-screenshots/`.
pub fn screenshots_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/console-screenshots")
}

/// Runs `node tests/browser/{name}.mjs` (a scenario that drives `browser`)
/// with `env` and asserts it passes; on failure (or after
/// [`SCENARIO_TIMEOUT`]) panics with all it printed.
pub async fn run_scenario(browser: Browser, name: &str, env: &[(&str, String)]) {
    browser.assert_installed();
    let output = tempfile::NamedTempFile::new().expect("a file for the scenario's output");
    let mut child = Command::new("node")
        .arg(browser_dir().join(format!("{name}.mjs")))
        .current_dir(browser_dir())
        .env("TALLY_SCREENSHOTS", screenshots_dir())
        .envs(env.iter().map(|(key, value)| (*key, value)))
        .stdin(Stdio::null())
        .stdout(output.reopen().unwrap())
        .stderr(output.reopen().unwrap())
        .spawn()
        .unwrap_or_else(|e| panic!("node does not start ({e}): install Node.js 18+"));
    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break Some(status);
        }
        if started.elapsed() > SCENARIO_TIMEOUT {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        // The host is its own process: waiting here holds nothing up.
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let printed = std::fs::read_to_string(output.path()).unwrap_or_default();
    match status {
        Some(status) if status.success() => println!("{printed}"),
        Some(status) => panic!("browser scenario {name} failed ({status}):\n{printed}"),
        None => panic!(
            "browser scenario {name} still ran after {SCENARIO_TIMEOUT:?} and was stopped:\n{printed}"
        ),
    }
}
