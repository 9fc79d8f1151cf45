//! tally's integration tests: one test binary (one link of wasmtime, both
//! stores and the HTTP stack) with a module per area. Each module starts a
//! real host — in process through `Router::oneshot`, or `tally serve` as a
//! process — on a temporary data directory; `TALLY_TEST_BACKEND=postgres`
//! puts every host on PostgreSQL (see `support::database`). `store` holds
//! the store's contract itself, on both backends in every run.

mod support;

mod access;
mod adapter_new;
mod adapters;
mod authoring;
mod azure_sdk;
mod azure_sdk_sign_in;
mod c_adapters;
mod cli;
mod console;
mod console_browser;
mod console_sso;
mod contract_versions;
mod durability;
mod exports;
mod focus;
mod go_adapters;
mod guide;
mod identity;
mod ingest;
mod js_adapters;
mod migrate;
mod oidc_provider;
mod python_adapters;
mod replicas;
mod retention;
mod shutdown;
mod startup;
mod statements;
mod store;
mod stored_data;
mod tenant_documents;
mod twins;
mod usage_api;
mod verify;
mod webhook;
