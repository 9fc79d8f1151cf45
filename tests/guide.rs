//! The guide's path to a first export (docs/writing-adapters.md, "Your first
//! export"), run as a reader pastes it: its `sh` blocks in order, in one
//! `bash -euo pipefail` in an empty directory, with the `tally` under test
//! first on `PATH` and no `TALLY_*` variable set beforehand. The one change:
//! the host's port, `127.0.0.1:8080` in the guide, is a free one, so that
//! runs side by side do not collide. Then the document the guide exported is
//! read through the API, and its figures checked.
//!
//! The guide uses the JavaScript template: it needs Node.js and npm (which
//! `tests/run.sh` needs too) and `curl`; the test fails, not skips, without them.

use crate::support;

use std::path::Path;
use std::process::Command;

use support::process::free_port;

/// Where the path starts and what it is called.
const GUIDE: &str = "docs/writing-adapters.md";
const SECTION: &str = "## Your first export";
/// The port the guide's host listens on.
const GUIDE_ADDRESS: &str = "127.0.0.1:8080";

/// The `sh` blocks of `section` in `markdown`, in order.
fn shell_blocks(markdown: &str, section: &str) -> Vec<String> {
    let start = markdown
        .find(&format!("\n{section}\n"))
        .unwrap_or_else(|| panic!("{GUIDE} has no section {section:?}"));
    let body = &markdown[start + section.len() + 2..];
    let body = &body[..body.find("\n## ").unwrap_or(body.len())];
    let mut blocks = Vec::new();
    let mut lines = body.lines();
    while let Some(line) = lines.next() {
        if line.trim_end() == "```sh" {
            let block: Vec<&str> = lines
                .by_ref()
                .take_while(|l| l.trim_end() != "```")
                .collect();
            blocks.push(block.join("\n"));
        }
    }
    blocks
}

/// Ends the process group of the guide's shell (its background host too) when dropped.
struct ProcessGroup(i32);

impl Drop for ProcessGroup {
    fn drop(&mut self) {
        // SAFETY: kill(2) on the group this test started (the shell's pid is its id).
        unsafe { libc::kill(-self.0, libc::SIGTERM) };
    }
}

#[tokio::test]
async fn the_guides_first_export_works_as_written() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let markdown = std::fs::read_to_string(root.join(GUIDE)).unwrap();
    let blocks = shell_blocks(&markdown, SECTION);
    let script = blocks.join("\n");
    for step in [
        "tally serve",
        "tally adapter new",
        "tally adapter test",
        "tally adapters install",
        "tally export run",
    ] {
        assert!(
            script.contains(step),
            "the guide's path lost `{step}`:\n{script}"
        );
    }
    assert!(script.contains(GUIDE_ADDRESS), "{script}");
    let port = free_port();
    let script = script.replace(GUIDE_ADDRESS, &format!("127.0.0.1:{port}"));

    let dir = tempfile::tempdir().unwrap();
    let host_file = dir.path().join("guide-host");
    let work = dir.path().join("work");
    std::fs::create_dir(&work).unwrap();
    // The test's own last line: where the guide's host is, for the check below.
    let script = format!(
        "{script}\nprintf '%s\\n%s\\n' \"$TALLY_URL\" \"$TALLY_TOKEN\" >{}\n",
        host_file.display()
    );
    let tally = Path::new(env!("CARGO_BIN_EXE_tally"));
    let path = format!(
        "{}:{}",
        tally.parent().unwrap().display(),
        std::env::var("PATH").unwrap_or_default()
    );
    let mut command = Command::new("bash");
    command
        .args(["-euo", "pipefail", "-c", &script])
        .current_dir(&work)
        .env("PATH", path)
        .env("XDG_CACHE_HOME", dir.path().join("cache"));
    // As a new reader: no host chosen beforehand.
    for (variable, _) in std::env::vars().filter(|(name, _)| name.starts_with("TALLY_")) {
        command.env_remove(variable);
    }
    std::os::unix::process::CommandExt::process_group(&mut command, 0);
    let child = command
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("bash runs");
    let _group = ProcessGroup(i32::try_from(child.id()).unwrap());
    let output = tokio::task::spawn_blocking(move || child.wait_with_output())
        .await
        .unwrap()
        .unwrap();
    let host_log = std::fs::read_to_string(work.join("tally.log")).unwrap_or_default();
    assert!(
        output.status.success(),
        "the guide's commands failed ({}):\n--- script\n{script}\n--- stdout\n{}\n--- stderr\n{}\n--- tally.log\n{host_log}",
        output.status,
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr),
    );

    // The document the guide's run exported, read through the API.
    let host = std::fs::read_to_string(&host_file).unwrap();
    let (url, token) = host.trim().split_once('\n').unwrap();
    let csv = reqwest::Client::new()
        .get(format!(
            "{url}/v1/adapters/my-adapter/documents/summary.csv?from=2026-11-03&to=2026-11-04"
        ))
        .bearer_auth(token)
        .send()
        .await
        .unwrap()
        .error_for_status()
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_summary(&csv);
}

/// The sample usage priced with the manifest's rates: 2 VMs of 2 and 4
/// vCPUs and one IP address for 48 hours.
fn assert_summary(csv: &str) {
    let expected = [
        ("F271A8A388C44D93956A063E1D2FA80B", 48.0, 48.0 * 0.005),
        ("FAB6EB84-500B-4A09-A8CA-7358F8BBAEA5", 288.0, 288.0 * 0.025),
    ];
    let mut lines = csv.lines();
    assert_eq!(
        lines.next(),
        Some("meter_id,meter_name,unit,quantity,rate,cost,currency"),
        "{csv}"
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    assert_eq!(rows.len(), expected.len(), "{csv}");
    for (row, (meter, quantity, cost)) in rows.iter().zip(expected) {
        assert_eq!(row[0], meter, "{csv}");
        assert_eq!(row[3].parse::<f64>().unwrap(), quantity, "{csv}");
        assert!(
            (row[5].parse::<f64>().unwrap() - cost).abs() < 1e-9,
            "{csv}"
        );
        assert_eq!(row[6], "EUR", "{csv}");
    }
}

#[test]
fn shell_blocks_are_read_from_their_section_only() {
    let markdown = "# t\n\n## A\n\n```sh\na 1\n```\n\n## Your first export\n\ntext\n\n```sh\none\ntwo\n```\n\n```rust\nno\n```\n\n```sh\nthree\n```\n\n## B\n\n```sh\nb\n```\n";
    assert_eq!(
        shell_blocks(markdown, SECTION),
        ["one\ntwo".to_owned(), "three".to_owned()]
    );
}
