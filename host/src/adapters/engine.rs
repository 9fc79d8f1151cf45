//! One wasmtime engine for all adapters, and the precompiled-component cache.
//!
//! A component is compiled once, when it is loaded (at install time), and the
//! artifact is cached on disk under the component's sha256 and a hash of the
//! engine's settings; loading it again maps the artifact (≈0.1 ms) instead of
//! compiling (≈80 ms for a small Rust adapter). Nothing compiles on a run.

use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use sha2::{Digest, Sha256};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::contract::{BillingAdapterPre, WORLD_VERSION, add_imports_to_linker};
use super::sandbox::{MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES, RunState};

/// How often the deadline clock ticks: deadlines are checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Largest memory any run may be given (the pooling allocator reserves it per slot).
pub const MAX_MEMORY_BYTES: usize = 1 << 30;
/// Instances that may run at once with the pooling allocator: every run
/// ([`crate::exports::MAX_CONCURRENT_RUNS`]) and every install-time call
/// ([`crate::exports::MAX_INSTALL_CALLS`]) at once, with room to spare.
pub const POOL_SLOTS: u32 = 32;
/// Wasm stack of a call: deep recursion traps as a stack overflow, not a host crash.
const MAX_WASM_STACK: usize = 1 << 20;

/// The engine, the linker with the host's imports, and the artifact cache.
pub struct AdapterEngine {
    engine: Engine,
    linker: Linker<RunState>,
    cache_dir: PathBuf,
    ticker_stop: Arc<AtomicBool>,
    /// Whether instances come from the pooling allocator (else on demand).
    pub pooling: bool,
}

/// A component compiled for this engine and checked against the world.
#[derive(Clone)]
pub struct LoadedAdapter {
    /// Hex sha256 of the component's bytes.
    pub sha256: String,
    /// The world version the component targets.
    pub world_version: String,
    pub(super) pre: BillingAdapterPre<RunState>,
    /// Time to compile (or load the cached artifact).
    pub load_time: Duration,
    /// Whether the artifact came from the cache.
    pub cached: bool,
}

impl std::fmt::Debug for LoadedAdapter {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("LoadedAdapter")
            .field("sha256", &self.sha256)
            .field("world_version", &self.world_version)
            .field("cached", &self.cached)
            .finish_non_exhaustive()
    }
}

impl AdapterEngine {
    /// Creates the engine, trying the pooling allocator first.
    pub fn new(cache_dir: impl Into<PathBuf>) -> anyhow::Result<Self> {
        let cache_dir = cache_dir.into();
        std::fs::create_dir_all(&cache_dir)
            .with_context(|| format!("creating {}", cache_dir.display()))?;
        let (engine, pooling) = match Engine::new(&config(true)) {
            Ok(engine) => (engine, true),
            Err(error) => {
                tracing::warn!(error = %error, "pooling allocator unavailable; instantiating on demand");
                (
                    Engine::new(&config(false)).map_err(|e| anyhow!("{e}"))?,
                    false,
                )
            }
        };
        let mut linker = Linker::new(&engine);
        wasmtime_wasi::p2::add_to_linker_sync(&mut linker).map_err(|e| anyhow!("{e}"))?;
        add_imports_to_linker(&mut linker).map_err(|e| anyhow!("{e}"))?;

        let ticker_stop = Arc::new(AtomicBool::new(false));
        let (ticking, stop) = (engine.clone(), ticker_stop.clone());
        std::thread::Builder::new()
            .name("adapter-epoch".into())
            .spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    std::thread::sleep(EPOCH_TICK);
                    ticking.increment_epoch();
                }
            })?;
        Ok(AdapterEngine {
            engine,
            linker,
            cache_dir,
            ticker_stop,
            pooling,
        })
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// Loads a component: from the artifact cache, or compiled and cached.
    /// Refuses what is not a component of a supported `tally:billing` world.
    pub fn load(&self, wasm: &[u8]) -> anyhow::Result<LoadedAdapter> {
        let started = Instant::now();
        let sha256 = hex(&Sha256::digest(wasm));
        let artifact = self
            .cache_dir
            .join(format!("{sha256}-{:016x}.cwasm", self.settings_hash()));
        let mut cached = artifact.exists();
        if !cached {
            self.compile_into(wasm, &artifact)?;
        }
        // SAFETY: the artifact was written by `precompile_component` of an
        // engine with the same settings (its name carries their hash), into a
        // cache directory that only the host writes.
        let component = match unsafe { Component::deserialize_file(&self.engine, &artifact) } {
            Ok(component) => component,
            Err(error) if cached => {
                // A damaged cache entry (disk full, partial copy…): compile again once.
                tracing::warn!(artifact = %artifact.display(), %error, "recompiling a cached component that would not load");
                cached = false;
                self.compile_into(wasm, &artifact)?;
                unsafe { Component::deserialize_file(&self.engine, &artifact) }
                    .map_err(|e| anyhow!("loading the compiled component: {e}"))?
            }
            Err(error) => bail!("loading the compiled component: {error}"),
        };
        let world_version = world_version(&component, &self.engine)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(BillingAdapterPre::new)
            .map_err(|e| {
                anyhow!(
                    "the component does not implement the tally:billing/billing-adapter world: {e}"
                )
            })?;
        Ok(LoadedAdapter {
            sha256,
            world_version,
            pre,
            load_time: started.elapsed(),
            cached,
        })
    }

    /// Compiles `wasm` and writes the artifact atomically (write, then rename):
    /// loaded components map their artifact, so one must never be rewritten in place.
    fn compile_into(&self, wasm: &[u8], artifact: &Path) -> anyhow::Result<()> {
        if !wasmparser_is_component(wasm) {
            bail!(
                "not a WebAssembly component (a core module or other bytes); build it for wasm32-wasip2"
            );
        }
        let compiled = self
            .engine
            .precompile_component(wasm)
            .map_err(|e| anyhow!("compiling the component: {e}"))?;
        let partial = artifact.with_extension("partial");
        std::fs::write(&partial, compiled)?;
        std::fs::rename(&partial, artifact)?;
        Ok(())
    }

    fn settings_hash(&self) -> u64 {
        let mut hasher = std::collections::hash_map::DefaultHasher::new();
        self.engine
            .precompile_compatibility_hash()
            .hash(&mut hasher);
        hasher.finish()
    }
}

impl Drop for AdapterEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

fn config(pooling: bool) -> Config {
    let mut config = Config::new();
    config.epoch_interruption(true);
    config.max_wasm_stack(MAX_WASM_STACK);
    if pooling {
        let mut pool = PoolingAllocationConfig::default();
        // Each slot has room for the most one instance may hold, so that no
        // instance can take another's share: a component declaring more is
        // refused when it is loaded (at install).
        let (memories, tables, instances) = (
            MAX_MEMORIES as u32,
            MAX_TABLES as u32,
            MAX_CORE_INSTANCES as u32,
        );
        pool.total_component_instances(POOL_SLOTS)
            .total_core_instances(POOL_SLOTS * instances)
            .total_memories(POOL_SLOTS * memories)
            .total_tables(POOL_SLOTS * tables)
            .total_stacks(POOL_SLOTS)
            .max_core_instances_per_component(instances)
            .max_memories_per_component(memories)
            .max_tables_per_component(tables)
            .max_memory_size(MAX_MEMORY_BYTES);
        config.allocation_strategy(InstanceAllocationStrategy::Pooling(pool));
    }
    config
}

/// The version of `tally:billing` a component exports its adapter for,
/// checked against the versions this host supports.
fn world_version(component: &Component, engine: &Engine) -> anyhow::Result<String> {
    const PREFIX: &str = "tally:billing/adapter@";
    let ty = component.component_type();
    let Some(version) = ty
        .exports(engine)
        .find_map(|(name, _)| name.strip_prefix(PREFIX).map(str::to_owned))
    else {
        bail!("not a tally billing adapter: the component does not export tally:billing/adapter");
    };
    // Within 0.x the minor version is the breaking one, as in the component model's semver.
    let breaking = |v: &str| -> String {
        let mut parts = v.split('.');
        let major = parts.next().unwrap_or("");
        if major == "0" {
            format!("0.{}", parts.next().unwrap_or(""))
        } else {
            major.to_owned()
        }
    };
    let supported = breaking(WORLD_VERSION);
    if breaking(&version) != supported {
        bail!(
            "the adapter targets tally:billing@{version}; this host supports tally:billing@{WORLD_VERSION} ({supported}.x)"
        );
    }
    Ok(version)
}

/// Whether the bytes start with the component-model preamble (layer 1).
fn wasmparser_is_component(wasm: &[u8]) -> bool {
    wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[6..8] == [1, 0]
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Reads a component file and loads it.
pub fn load_file(engine: &AdapterEngine, path: &Path) -> anyhow::Result<LoadedAdapter> {
    let wasm = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    engine
        .load(&wasm)
        .with_context(|| format!("loading {}", path.display()))
}
