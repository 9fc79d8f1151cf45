//! The `tally` binary as a child process, for tests that kill it or use its CLI.

use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Output, Stdio};

use super::database::database_args;

/// Runs `tally ARGS…` to completion (on the test database of `--data-dir`, if any).
pub fn tally(args: &[&str]) -> Output {
    let data_dir = args
        .iter()
        .position(|arg| *arg == "--data-dir")
        .and_then(|i| args.get(i + 1));
    Command::new(env!("CARGO_BIN_EXE_tally"))
        .args(args)
        .args(data_dir.map_or_else(Vec::new, |dir| database_args(Path::new(dir))))
        .output()
        .expect("the tally binary runs")
}

/// Runs `tally ARGS…` and returns its standard output; panics if it fails.
pub fn tally_ok(args: &[&str]) -> String {
    let output = tally(args);
    assert!(
        output.status.success(),
        "tally {args:?} failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8(output.stdout).unwrap()
}

/// Creates a token of `role` in the data directory `data_dir` with `tally
/// token create`; returns its secret.
pub fn create_token(data_dir: &str, role: &str) -> String {
    tally_ok(&["token", "create", "--data-dir", data_dir, "--role", role])
        .trim()
        .to_owned()
}

/// A loopback port free right now (the OS picks it; it stays free unless
/// another process binds it before the caller does).
pub fn free_port() -> u16 {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("a free loopback port");
    listener.local_addr().unwrap().port()
}

/// A running `tally serve` on a free port.
pub struct Server {
    pub child: Child,
    pub base: String,
    /// Its log (stderr).
    log: tempfile::NamedTempFile,
}

impl Server {
    pub fn start(data_dir: &Path) -> Server {
        Self::start_with(data_dir, &[])
    }

    /// Starts with more arguments (e.g. `--config FILE`).
    pub fn start_with(data_dir: &Path, args: &[&str]) -> Server {
        Self::start_with_env(data_dir, args, &[])
    }

    /// Starts with more arguments and environment variables.
    pub fn start_with_env(data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        Self::start_on("127.0.0.1:0", data_dir, args, env)
    }

    /// Starts listening on `listen`: a port chosen beforehand (see
    /// [`free_port`]) when the configuration must name the host's own URL.
    pub fn start_on(listen: &str, data_dir: &Path, args: &[&str], env: &[(&str, &str)]) -> Server {
        // Its log, to say why should it not start.
        let log = tempfile::NamedTempFile::new().expect("a log file for tally serve");
        let stderr = log.reopen().expect("the log file opens");
        let mut child = Command::new(env!("CARGO_BIN_EXE_tally"))
            .args(["serve", "--listen", listen, "--data-dir"])
            .arg(data_dir)
            .args(database_args(data_dir))
            .args(args)
            .envs(env.iter().copied())
            .stdout(Stdio::piped())
            .stderr(stderr)
            .spawn()
            .expect("tally serve starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let Some(base) = line.trim().strip_prefix("tally listening on ") else {
            let _ = child.wait();
            let log = std::fs::read_to_string(log.path()).unwrap_or_default();
            panic!("tally serve did not start (stdout {line:?}); its log:\n{log}");
        };
        let base = base.to_string();
        Server { child, base, log }
    }

    /// What the host has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.log.path()).unwrap_or_default()
    }

    /// Sends SIGTERM and waits for the host to exit; its exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        self.signal(libc::SIGTERM);
        self.wait_for_exit()
    }

    /// Sends `signal` to the host.
    pub fn signal(&self, signal: libc::c_int) {
        let pid = libc::pid_t::try_from(self.child.id()).unwrap();
        // SAFETY: kill(2) on our own child, not reaped yet (so the pid is still its).
        assert_eq!(unsafe { libc::kill(pid, signal) }, 0);
    }

    /// Waits for the host to exit; its exit status. Panics if it still runs
    /// after a minute (a stop that hangs).
    pub fn wait_for_exit(&mut self) -> std::process::ExitStatus {
        let asked = std::time::Instant::now();
        loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                return status;
            }
            assert!(
                asked.elapsed() < std::time::Duration::from_secs(60),
                "tally serve still runs a minute after it was told to stop"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// `kill -9`.
    pub fn kill(&mut self) {
        self.child.kill().unwrap();
        self.child.wait().unwrap();
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// `POST /v1/usage` over real HTTP; the accepted reply.
pub async fn post_usage(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    batch: &[serde_json::Value],
) -> reqwest::Result<serde_json::Value> {
    client
        .post(format!("{base}/v1/usage"))
        .bearer_auth(token)
        .json(batch)
        .send()
        .await?
        .error_for_status()?
        .json()
        .await
}

/// A GET that must succeed, decoded.
pub async fn get_json(client: &reqwest::Client, url: &str, token: &str) -> serde_json::Value {
    client
        .get(url)
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .json()
        .await
        .unwrap()
}
