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
pub static ASSETS: [Asset; 3] = [
    asset!("index.html", "text/html; charset=utf-8"),
    asset!("style.css", "text/css; charset=utf-8"),
    asset!("app.js", JS),
];

/// The file at `path` under `/console/`.
pub fn find(path: &str) -> Option<&'static Asset> {
    ASSETS.iter().find(|asset| asset.path == path)
}
