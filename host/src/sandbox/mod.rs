//! The sandbox billing adapters run in: WebAssembly components that read
//! aggregated usage through `wit/billing-adapter.wit` and write export
//! documents, each call bounded in time, memory and output.
//!
//! - [`contract`]: the host bindings of the `tally:billing` world.
//! - [`engine`]: one wasmtime engine; components compiled once, cached by
//!   sha256 and engine settings, checked against the world.
//! - [`compile`]: compiling a component bounded in time and memory, in a
//!   child process of the `tally` binary.
//! - [`limits`]: what one run may use (deadline, memory, output and log caps)
//!   and its state.
//! - [`host_usage`], [`host_output`], [`egress`]: the host side of the imports.
//! - [`run`]: running `export` for one window and reporting how it ended.

pub mod compile;
pub mod contract;
pub mod egress;
pub mod engine;
pub mod host_output;
pub mod host_usage;
pub mod limits;
pub mod run;
mod stdio;

pub use compile::{CompileSettings, Compiler};
pub use engine::{AdapterEngine, LoadedAdapter};
pub use limits::{Limits, SubscriptionGrant};
pub use run::{ExportOutcome, RunFailure, describe, run_export, validate_config};
