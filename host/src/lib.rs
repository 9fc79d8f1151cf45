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
//!   embedded SQLite store ([`store::sqlite`]) as the default and PostgreSQL
//!   for replicas: idempotent, all-or-nothing ingest with group commit,
//!   keyset-paged aggregates, [`store::exports`], what the export
//!   control plane keeps (installations, runs, documents), and
//!   [`store::console`], sessions and the overview's figures;
//!   [`store::private_files`] keeps the data directory the account's own.
//! - [`sandbox`]: where billing adapters run (wasmtime): the
//!   `tally:billing` contract, the engine and its compiled-component cache,
//!   per-run limits, egress, and running one export.
//! - [`exports`]: the export control plane: installing adapters from their
//!   manifests, and the scheduler that runs each closed window once and
//!   publishes its documents; the one door to installations, runs and
//!   documents.
//! - [`api`]: the HTTP API (axum): `POST /v1/usage`, the Azure-compatible
//!   tenant and provider usage APIs (their `nextLink` base decided in
//!   `api::next_link`), the meter catalog, installations and runs
//!   (`/v1/adapters`), tokens, the console's sessions and figures
//!   (`/v1/session`, `/v1/overview`, `/v1/usage/summary`), `/healthz`,
//!   `/metrics`, `/openapi.json`.
//! - [`console`]: the web console's page, embedded in the binary and served
//!   at `/` with a strict Content-Security-Policy; it speaks only the API.
//! - [`cli`]: the `tally` command: serve, token, import, meters, migrate;
//!   `adapter` for authors, `adapters` and `export` for a running host's
//!   installations and runs.
//! - Beside the pipeline: [`auth`] (bearer tokens and roles: operator,
//!   tenant, reporter), [`clock`] (this host's own clock, which tests can
//!   move; the store's is the one replicas agree on), [`metrics`]
//!   (Prometheus counters and latencies), [`config`] (the optional
//!   `tally.toml`), [`retention`] (pruning `usage_events` past their
//!   configured age), [`text`] (cutting, checking and escaping text the host
//!   did not write).
//!
//! The words mean one thing throughout: an *adapter* is a WebAssembly
//! component; an *installation* is an adapter installed under a name with its
//! manifest; a *run* exports one window of an installation; its *documents*
//! are what it publishes.

pub mod api;
pub mod auth;
pub mod cli;
pub mod clock;
pub mod config;
pub mod console;
pub mod exports;
pub mod identity;
pub mod metrics;
pub mod retention;
pub mod sandbox;
pub mod store;
pub mod text;
pub mod usage;
