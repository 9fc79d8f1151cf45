//! Host bindings of `wit/billing-adapter.wit` (`tally:billing@0.1.0`).

use wasmtime::component::{HasSelf, Linker};

use super::limits::RunState;

wasmtime::component::bindgen!({
    path: "../wit",
    world: "billing-adapter",
    imports: { default: trappable },
    with: { "tally:billing/usage.cursor": crate::sandbox::host_usage::UsageCursor },
});

/// The world version this host implements.
pub const WORLD_VERSION: &str = "0.1.0";

pub use self::tally::billing::types::{Granularity, Window};
pub use exports::tally::billing::adapter::{Description, ExportError, ExportRequest, Summary};

/// Defines the world's imports on `linker`: `types`, `output` and `log` as
/// generated, `usage` by hand (see [`super::host_usage::add_to_linker`]).
pub fn add_imports_to_linker(linker: &mut Linker<RunState>) -> wasmtime::Result<()> {
    tally::billing::types::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    tally::billing::output::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    tally::billing::log::add_to_linker::<_, HasSelf<_>>(linker, |state| state)?;
    super::host_usage::add_to_linker(linker)
}
