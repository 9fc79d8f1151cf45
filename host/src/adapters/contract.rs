//! Host bindings of `wit/billing-adapter.wit` (`tally:billing@0.1.0`).

wasmtime::component::bindgen!({
    path: "../wit",
    world: "billing-adapter",
    imports: { default: trappable },
    with: { "tally:billing/usage.cursor": crate::adapters::host_usage::UsageCursor },
});

/// The world version this host implements.
pub const WORLD_VERSION: &str = "0.1.0";

pub use self::tally::billing::types::{Granularity, Window};
pub use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Summary};
