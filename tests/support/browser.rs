//! The web console's browser scenarios (`tests/browser/*.mjs`): Node with
//! playwright-core driving Debian's headless Chromium against a running
//! host. `tests/run.sh` installs both; without either a scenario fails with
//! a message saying so, it never skips.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's `chromium` package puts the browser.
pub const CHROMIUM: &str = "/usr/bin/chromium";

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

/// Panics, saying how to install them, when the browser or the automation
/// library is missing.
fn assert_installed() {
    let hint = "run tests/run.sh (it installs Chromium with apt and playwright-core with `npm ci` in tests/browser)";
    assert!(
        Path::new(CHROMIUM).exists(),
        "{CHROMIUM} is missing: {hint}"
    );
    assert!(
        browser_dir()
            .join("node_modules/playwright-core/package.json")
            .exists(),
        "tests/browser/node_modules has no playwright-core: {hint}"
    );
}

/// Runs `node tests/browser/{name}.mjs` with `env` and asserts it passes;
/// on failure (or after [`SCENARIO_TIMEOUT`]) panics with all it printed.
pub async fn run_scenario(name: &str, env: &[(&str, String)]) {
    assert_installed();
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
