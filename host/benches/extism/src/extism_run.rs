//! The Extism side: the chargeback plugin run on the store's batches, one
//! call per batch, as a host built on Extism would run it.

use std::time::{Duration, Instant};

use extism::convert::{Json, Msgpack};
use extism::{CompiledPlugin, Manifest, Plugin, PluginBuilder, ToBytes, Wasm};
use serde::Serialize;
use tally::sandbox::contract::tally::billing::usage::UsageBatch;
use tally::sandbox::usage_batch::BatchEncoder;
use tally::sandbox::usage_read::UsageRead;
use tally::store::{AggregateQuery, Store};

/// How each batch is serialised into the plugin's input bytes: the two
/// encodings the Rust PDK decodes (`Json<T>`, `Msgpack<T>`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Encoding {
    Json,
    Msgpack,
}

impl Encoding {
    /// The plugin function that takes a batch in this encoding.
    fn function(self) -> &'static str {
        match self {
            Encoding::Json => "add_json",
            Encoding::Msgpack => "add_msgpack",
        }
    }

    /// The batch's bytes.
    fn encode(self, batch: &BatchView<'_>) -> Vec<u8> {
        // What the SDK does with `Json(batch)` / `Msgpack(batch)` as a call's input.
        let bytes: Result<Vec<u8>, _> = match self {
            Encoding::Json => Json(batch).to_bytes(),
            Encoding::Msgpack => Msgpack(batch).to_bytes(),
        };
        bytes.expect("a batch serialises")
    }
}

/// A usage batch borrowed for serialisation: every column of tally's
/// `usage-batch`, so the plugin receives what the component receives.
#[derive(Serialize)]
struct BatchView<'a> {
    strings: &'a [String],
    subscription_id: &'a [u32],
    meter_id: &'a [u32],
    resource_uri: &'a [u32],
    location: &'a [u32],
    tags: &'a [u32],
    additional_info: &'a [u32],
    usage_start: &'a [i64],
    usage_end: &'a [i64],
    quantity: &'a [f64],
    tag_sets: &'a [Vec<(u32, u32)>],
}

impl<'a> BatchView<'a> {
    fn of(batch: &'a UsageBatch) -> Self {
        BatchView {
            strings: &batch.strings,
            subscription_id: &batch.subscription_id,
            meter_id: &batch.meter_id,
            resource_uri: &batch.resource_uri,
            location: &batch.location,
            tags: &batch.tags,
            additional_info: &batch.additional_info,
            usage_start: &batch.usage_start,
            usage_end: &batch.usage_end,
            quantity: &batch.quantity,
            tag_sets: &batch.tag_sets,
        }
    }
}

/// Compiles the plugin once (as tally compiles a component at install),
/// without WASI (the plugin needs none) and without Extism's on-disk cache.
pub fn compile(wasm: &[u8]) -> CompiledPlugin {
    PluginBuilder::new(Manifest::new([Wasm::data(wasm.to_vec())]))
        .with_wasi(false)
        .with_cache_disabled()
        .compile()
        .expect("the plugin compiles")
}

/// What one export through the plugin produced.
pub struct ExtismExport {
    /// From a fresh plugin to the document in hand, reading included.
    pub elapsed: Duration,
    pub csv: Vec<u8>,
    pub rows_read: usize,
    /// The serialised batches' total size.
    pub input_bytes: usize,
    /// The plugin's linear memory at the end (its peak: it never shrinks).
    pub plugin_memory_bytes: u64,
}

/// One export: a fresh plugin, `begin(config)`, every page of `query`
/// read, encoded like tally's batches, serialised and passed to the plugin
/// one call per batch, then `finish(catalog)` for the CSV. With `digest`,
/// the host also digests every batch it hands over, as tally's host does
/// for the run's provenance.
pub async fn export(
    compiled: &CompiledPlugin,
    store: &dyn Store,
    query: &AggregateQuery,
    config: &str,
    meters: &[(String, String, String)],
    encoding: Encoding,
    digest: bool,
) -> ExtismExport {
    let started = Instant::now();
    let mut plugin = Plugin::new_from_compiled(compiled).expect("a plugin instance");
    plugin
        .call::<&str, ()>("begin", config)
        .expect("the plugin takes the config");
    let mut encoder = BatchEncoder::default();
    let (mut after, mut rows_read, mut input_bytes) = (None, 0, 0);
    let mut usage_read = UsageRead::default();
    loop {
        let page = store.aggregates(query, after).await.expect("a page");
        let batch = encoder.encode(&page.rows).expect("a batch");
        let bytes = encoding.encode(&BatchView::of(&batch));
        plugin
            .call::<&[u8], ()>(encoding.function(), &bytes)
            .expect("the plugin takes the batch");
        if digest {
            usage_read.record(&batch);
        }
        rows_read += batch.quantity.len();
        input_bytes += bytes.len();
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    let csv: Vec<u8> = plugin
        .call::<Json<&[(String, String, String)]>, Vec<u8>>("finish", Json(meters))
        .expect("the plugin renders the CSV");
    if digest {
        assert_eq!(usage_read.sha256_hex().len(), 64);
    }
    let elapsed = started.elapsed();
    let plugin_memory_bytes = plugin
        .call::<(), &str>("memory_bytes", ())
        .expect("the plugin reports its memory")
        .parse()
        .expect("a number");
    ExtismExport {
        elapsed,
        csv,
        rows_read,
        input_bytes,
        plugin_memory_bytes,
    }
}

/// The cost of a call that does nothing, `n` times: on one live plugin
/// (Extism's usual way), and on a fresh plugin each time (as tally starts a
/// fresh instance for every call).
pub fn call_overhead(compiled: &CompiledPlugin, n: usize) -> (Vec<Duration>, Vec<Duration>) {
    let mut live = Plugin::new_from_compiled(compiled).expect("a plugin instance");
    live.call::<(), ()>("noop", ()).expect("noop");
    let warm: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            live.call::<(), ()>("noop", ()).expect("noop");
            started.elapsed()
        })
        .collect();
    let fresh: Vec<Duration> = (0..n)
        .map(|_| {
            let started = Instant::now();
            let mut plugin = Plugin::new_from_compiled(compiled).expect("a plugin instance");
            plugin.call::<(), ()>("noop", ()).expect("noop");
            started.elapsed()
        })
        .collect();
    (warm, fresh)
}
