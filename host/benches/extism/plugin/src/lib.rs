//! tally's chargeback transform (adapters/chargeback-csv/src/rating.rs, the
//! same file) as an Extism plugin, for the benchmark in `../src/main.rs`.
//!
//! A run is `begin(config)`, then `add_json` or `add_msgpack` once per
//! usage batch, then `finish(catalog)`, which returns the CSV. The plugin
//! keeps the run's state between calls, as Extism plugins do.

#[path = "../../../../../adapters/chargeback-csv/src/rating.rs"]
#[allow(dead_code, unused_imports)]
mod rating;

use std::cell::RefCell;
use std::collections::HashMap;

use extism_pdk::{FnResult, Json, Msgpack, plugin_fn};
use rating::{Chargeback, Config};
use serde::Deserialize;

/// A usage batch, as tally hands it to its components (the `usage-batch`
/// record of wit/billing-adapter.wit): every column, the strings once each.
#[derive(Deserialize)]
pub struct UsageBatch {
    strings: Vec<String>,
    subscription_id: Vec<u32>,
    meter_id: Vec<u32>,
    resource_uri: Vec<u32>,
    location: Vec<u32>,
    tags: Vec<u32>,
    additional_info: Vec<u32>,
    usage_start: Vec<i64>,
    usage_end: Vec<i64>,
    quantity: Vec<f64>,
    tag_sets: Vec<Vec<(u32, u32)>>,
}

/// One meter of the catalog: id, name, unit.
type Meter = (String, String, String);

thread_local! {
    /// The run in progress: its config and the quantities summed so far.
    static RUN: RefCell<Option<(Config, Chargeback)>> = const { RefCell::new(None) };
}

/// Starts a run with the installation's config (JSON).
#[plugin_fn]
pub fn begin(config: String) -> FnResult<()> {
    let config = Config::parse(&config).map_err(extism_pdk::Error::msg)?;
    RUN.with_borrow_mut(|run| *run = Some((config, Chargeback::default())));
    Ok(())
}

/// Adds a batch serialised as JSON.
#[plugin_fn]
pub fn add_json(Json(batch): Json<UsageBatch>) -> FnResult<()> {
    add(&batch)
}

/// Adds a batch serialised as MessagePack.
#[plugin_fn]
pub fn add_msgpack(Msgpack(batch): Msgpack<UsageBatch>) -> FnResult<()> {
    add(&batch)
}

fn add(batch: &UsageBatch) -> FnResult<()> {
    // The columns chargeback does not read are received all the same (as
    // the component receives them), and checked for shape.
    let rows = batch.quantity.len();
    for column in [
        batch.resource_uri.len(),
        batch.location.len(),
        batch.additional_info.len(),
        batch.usage_end.len(),
    ] {
        if column != rows {
            return Err(extism_pdk::Error::msg("a column's length differs").into());
        }
    }
    RUN.with_borrow_mut(|run| {
        let (config, chargeback) = run
            .as_mut()
            .ok_or_else(|| extism_pdk::Error::msg("add before begin"))?;
        chargeback.add(&rating::columns_of!(batch), &config.group_by_tag);
        Ok(())
    })
}

/// Ends the run: the CSV of everything added, rated with the catalog's
/// meter names and units.
#[plugin_fn]
pub fn finish(Json(catalog): Json<Vec<Meter>>) -> FnResult<Vec<u8>> {
    let (config, chargeback) = RUN
        .with_borrow_mut(Option::take)
        .ok_or_else(|| extism_pdk::Error::msg("finish before begin"))?;
    let catalog: HashMap<String, (String, String)> = catalog
        .into_iter()
        .map(|(id, name, unit)| (id.to_ascii_lowercase(), (name, unit)))
        .collect();
    let mut csv = Vec::new();
    chargeback
        .render(&config, &catalog, |piece| {
            csv.extend_from_slice(piece.as_bytes());
            Ok::<_, ()>(())
        })
        .map_err(|()| extism_pdk::Error::msg("render"))?;
    Ok(csv)
}

/// Does nothing: the cost of a call itself.
#[plugin_fn]
pub fn noop() -> FnResult<()> {
    Ok(())
}

/// The plugin's linear memory, in bytes (it never shrinks: its peak).
#[plugin_fn]
pub fn memory_bytes() -> FnResult<String> {
    Ok((core::arch::wasm32::memory_size(0) * 65_536).to_string())
}
