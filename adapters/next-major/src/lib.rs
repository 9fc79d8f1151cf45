//! An adapter built against `tally:billing@1.0.0` (its own copy of the WIT,
//! with only the version changed), to prove that the host refuses a world
//! version it does not support, naming both versions.

wit_bindgen::generate!({ path: "wit", world: "billing-adapter" });

use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Guest, Summary};

struct NextMajor;

impl Guest for NextMajor {
    fn describe() -> Description {
        Description {
            name: "next-major".into(),
            version: env!("CARGO_PKG_VERSION").into(),
            produces: vec![],
        }
    }

    fn validate_config(_config: String) -> Result<(), String> {
        Ok(())
    }

    fn export(_request: ExportRequest, _config: String) -> Result<Summary, ExportError> {
        Ok(Summary {
            rows_read: 0,
            rows_written: 0,
            documents: vec![],
        })
    }
}

export!(NextMajor);
