//! The sandbox billing adapters run in: WebAssembly components that read
//! aggregated usage through `wit/billing-adapter.wit` and write export
//! documents, each call bounded in time, memory and output.
//!
//! - [`contract`]: the `tally:billing` versions served (0.1.0 and 0.2.0): the
//!   host bindings of the current one, and the adaptation of older ones.
//! - [`engine`]: one wasmtime engine; components compiled once, cached by
//!   sha256 and engine settings, checked against the world.
//! - [`compile`]: compiling a component bounded in time and memory, in a
//!   child process of the `tally` binary.
//! - [`limits`]: what one run may use (deadline, memory, output and log caps)
//!   and its state.
//! - [`host_usage`], [`host_output`], [`egress`]: the host side of the imports;
//!   [`usage_batch`] encodes the rows `host_usage` hands over.
//! - [`usage_read`]: what a run has read (the digest of its rows, their
//!   subscriptions).
//! - [`run`]: running `export` for one window and reporting how it ended;
//!   `guest_errors` says what a guest language's trap means.

pub mod compile;
pub mod contract;
pub mod egress;
pub mod engine;
mod guest_errors;
pub mod host_output;
pub mod host_usage;
pub mod limits;
pub mod run;
mod stdio;
pub mod usage_batch;
pub mod usage_read;

pub use compile::{CompileSettings, Compiler};
pub use contract::SUPPORTED_WORLDS;
pub use egress::{AllowedOrigin, Outbound};
pub use engine::{AdapterEngine, LoadedAdapter};
pub use limits::{Limits, SubscriptionGrant};
pub use run::{ExportOutcome, RunFailure, describe, run_export, validate_config};
