//! tally: usage metering and billing adapters for private clouds.
//!
//! Resource providers report hourly usage; tally stores and aggregates it and
//! serves it over a usage API that Azure clients speak. The crate reads as the
//! pipeline:
//!
//! - [`usage`]: the domain. Usage records as reported, their validation, the
//!   meter catalog, hour/day buckets and the splitting of an interval across
//!   hours. No I/O.
//! - [`store`]: durable storage behind the [`store::Store`] trait, with the
//!   embedded SQLite store ([`store::sqlite`]) as the default: idempotent,
//!   all-or-nothing ingest with group commit, and keyset-paged aggregates;
//!   [`store::private_files`] keeps the data directory the account's own.
//! - [`api`]: the HTTP API (axum): `POST /v1/usage`, the Azure-compatible
//!   tenant and provider usage APIs (their `nextLink` base decided in
//!   `api::next_link`), the meter catalog, `/healthz`, `/metrics`,
//!   `/openapi.json`.
//! - [`adapters`]: billing adapters, WebAssembly components run in a
//!   sandbox (wasmtime): the `tally:billing` contract, the engine and its
//!   compiled-component cache, per-run limits, and running an export.
//! - [`exports`]: installing adapters from their manifests, and the
//!   scheduler that runs each closed window once and publishes its documents;
//!   the one door the API goes through to installations, runs and documents.
//! - [`auth`]: bearer tokens and roles (operator, tenant, reporter).
//! - [`clock`]: this host's own clock (the store's is the one replicas
//!   agree on), which tests can move.
//! - [`metrics`]: Prometheus counters and latencies.
//! - [`config`]: the optional `tally.toml`.
//! - [`text`]: cutting, checking and escaping text the host did not write.
//! - [`cli`]: the `tally` command (serve, token, import, meters).

pub mod adapters;
pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod exports;
pub mod metrics;
pub mod store;
pub mod text;
pub mod usage;
