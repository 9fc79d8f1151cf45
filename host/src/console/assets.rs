//! The console's files, embedded at build time from `host/console/` (plain
//! HTML, CSS and JavaScript modules: no build step, so what is in the
//! repository is what is served). A new file gets a line in [`ASSETS`].

use std::sync::OnceLock;

use sha2::{Digest, Sha256};

/// One embedded file.
pub struct Asset {
    /// Its path under `/console/`.
    pub path: &'static str,
    pub content_type: &'static str,
    pub bytes: &'static [u8],
    etag: OnceLock<String>,
}

impl Asset {
    const fn new(path: &'static str, content_type: &'static str, bytes: &'static [u8]) -> Self {
        Asset {
            path,
            content_type,
            bytes,
            etag: OnceLock::new(),
        }
    }

    /// A strong `ETag`: a digest of the bytes, computed once.
    pub fn etag(&self) -> &str {
        self.etag.get_or_init(|| {
            let digest = Sha256::digest(self.bytes);
            let hex: String = digest[..12].iter().map(|b| format!("{b:02x}")).collect();
            format!("\"{hex}\"")
        })
    }
}

macro_rules! asset {
    ($path:literal, $type:expr) => {
        Asset::new(
            $path,
            $type,
            include_bytes!(concat!("../../console/", $path)),
        )
    };
}

const JS: &str = "text/javascript; charset=utf-8";

/// The page itself, answered at `/`.
pub static INDEX: &Asset = &ASSETS[0];

/// Every file of the console.
pub static ASSETS: [Asset; 28] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("api.js", JS),
    asset!("app.js", JS),
    asset!("chart.js", JS),
    asset!("dialog.js", JS),
    asset!("digest.js", JS),
    asset!("dom.js", JS),
    asset!("format.js", JS),
    asset!("health.js", JS),
    asset!("pages/adapter.js", JS),
    asset!("pages/adapters.js", JS),
    asset!("pages/documents.js", JS),
    asset!("pages/meters.js", JS),
    asset!("pages/overview.js", JS),
    asset!("pages/run.js", JS),
    asset!("pages/sign-in.js", JS),
    asset!("pages/statements.js", JS),
    asset!("pages/subscriptions.js", JS),
    asset!("pages/tokens.js", JS),
    asset!("pages/usage.js", JS),
    asset!("provenance.js", JS),
    asset!("range.js", JS),
    asset!("runs.js", JS),
    asset!("session.js", JS),
    asset!("summary.js", JS),
    asset!("table.js", JS),
    asset!("verify.js", JS),
];

/// The file at `path` under `/console/`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every file of `host/console/` is embedded, and every embedded path is
    /// one of them: a file added to the folder but not here fails.
    #[test]
    fn every_console_file_is_embedded() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("console");
        let mut on_disk = Vec::new();
        let mut folders = vec![root.clone()];
        while let Some(folder) = folders.pop() {
            for entry in std::fs::read_dir(&folder).expect("host/console is readable") {
                let path = entry.expect("a directory entry").path();
                if path.is_dir() {
                    folders.push(path);
                } else {
                    let relative = path.strip_prefix(&root).expect("under the root");
                    on_disk.push(relative.to_string_lossy().replace('\\', "/"));
                }
            }
        }
        on_disk.sort();
        let mut embedded: Vec<String> = ASSETS.iter().map(|a| a.path.to_owned()).collect();
        embedded.sort();
        assert_eq!(embedded, on_disk);
    }
}
