//! One wasmtime engine for all adapters, and the precompiled-component cache.
//!
//! A component is compiled once, when it is loaded (at install time), and the
//! artifact is cached on disk under the component's sha256 and a hash of the
//! engine's settings; loading it again maps the artifact (≈0.1 ms) instead of
//! compiling (≈80 ms for a small Rust adapter). Nothing compiles on a run.
//!
//! Loads of one component wait for each other (one compile per sha256), and
//! a compile is written to a temporary file of its own, synced, mapped and
//! only then renamed into place: a published artifact is never rewritten or
//! truncated, since a loaded component maps it (and another replica sharing
//! the directory may too). Compiles run where [`Compiler`] says, bounded,
//! each in a turn ([`CompileTurn`]) that async callers wait for with a
//! timeout before they take a blocking thread ([`AdapterEngine::load_async`]).

use std::collections::HashMap;
use std::hash::{Hash, Hasher};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, Weak};
use std::time::{Duration, Instant, SystemTime};

use anyhow::{Context, anyhow, bail};
use sha2::{Digest, Sha256};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use wasmtime::component::{Component, Linker};
use wasmtime::{Config, Engine, InstanceAllocationStrategy, PoolingAllocationConfig};

use super::compile::{Compiler, compile_in_child};
use super::contract::{Contract, PreparedAdapter, add_imports_to_linker};
use super::egress::OutboundClients;
use super::limits::{MAX_CORE_INSTANCES, MAX_MEMORIES, MAX_TABLES, RunState};

/// How often the deadline clock ticks: deadlines are checked at this granularity.
pub const EPOCH_TICK: Duration = Duration::from_millis(10);
/// Largest memory any run may be given (the pooling allocator reserves it per slot).
pub const MAX_MEMORY_BYTES: usize = 1 << 30;
/// Instances that may run at once with the pooling allocator: every run
/// ([`crate::exports::MAX_CONCURRENT_RUNS`]) and every install-time call
/// ([`crate::exports::MAX_INSTALL_CALLS`]) at once, and [`POOL_HEADROOM`]
/// more (checked where those are defined). Each slot reserves address space
/// (not memory: inaccessible until an instance uses it) for
/// [`MAX_MEMORIES`] memories of [`MAX_MEMORY_BYTES`] with their guard
/// regions: measured ≈ 7.9 GiB a slot, 323 GiB for 40 (258 GiB for 32) of
/// the 128 TiB a 64-bit process has.
pub const POOL_SLOTS: u32 = 40;
/// Slots beyond the most runs and install-time calls at once: an instance
/// whose slot is being returned, or a limit raised later, never leaves a run
/// without one.
pub const POOL_HEADROOM: u32 = 8;
/// Wasm stack of a call: deep recursion traps as a stack overflow, not a host crash.
const MAX_WASM_STACK: usize = 1 << 20;
/// Name prefix of an artifact being written (never loaded under that name).
const COMPILING_PREFIX: &str = ".compiling-";
/// Extension of an artifact being written.
const PARTIAL_EXTENSION: &str = ".partial";
/// Extension of a published artifact.
const ARTIFACT_EXTENSION: &str = "cwasm";
/// A temporary artifact this old (or twice the compile timeout) was left by a
/// host that died mid-compile.
const STALE_COMPILE: Duration = Duration::from_secs(3_600);

/// The engine, the linker with the host's imports, and the artifact cache.
pub struct AdapterEngine {
    engine: Engine,
    linker: Linker<RunState>,
    cache_dir: PathBuf,
    ticker_stop: Arc<AtomicBool>,
    /// Whether instances come from the pooling allocator (else on demand).
    pub pooling: bool,
    compiler: Compiler,
    /// Turns to compile: [`Compiler`]'s concurrency.
    compile_turns: Arc<Semaphore>,
    /// One lock per sha256 being loaded: concurrent loads compile once.
    loading: Mutex<HashMap<String, Weak<Mutex<()>>>>,
    compiles: AtomicU64,
    /// The HTTP clients runs send through, shared by all of them.
    outbound_clients: OutboundClients,
}

/// A component compiled for this engine and checked against the world.
#[derive(Clone)]
pub struct LoadedAdapter {
    /// Hex sha256 of the component's bytes.
    pub sha256: String,
    /// The version of the contract (world) that serves the component,
    /// e.g. `"0.2.0"`: one of [`super::contract::SUPPORTED_WORLDS`].
    pub world_version: &'static str,
    pub(super) pre: PreparedAdapter,
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
    /// Creates the engine, trying the pooling allocator first. It compiles
    /// in process until given another [`Compiler`] ([`Self::with_compiler`]).
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
        let compiler = Compiler::InProcess;
        Ok(AdapterEngine {
            engine,
            linker,
            cache_dir,
            ticker_stop,
            pooling,
            compile_turns: Arc::new(Semaphore::new(compiler.concurrency())),
            compiler,
            loading: Mutex::default(),
            compiles: AtomicU64::new(0),
            outbound_clients: OutboundClients::default(),
        })
    }

    /// Compiles components with `compiler` (a bounded child process, in a host).
    pub fn with_compiler(mut self, compiler: Compiler) -> Self {
        self.compile_turns = Arc::new(Semaphore::new(compiler.concurrency()));
        self.compiler = compiler;
        self
    }

    /// Components this engine has compiled (not loaded from the cache).
    pub fn compiles(&self) -> u64 {
        self.compiles.load(Ordering::Relaxed)
    }

    /// The directory of compiled artifacts.
    pub fn cache_dir(&self) -> &Path {
        &self.cache_dir
    }

    /// The wasmtime engine.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// The HTTP clients of the runs' `send`.
    pub fn outbound_clients(&self) -> &OutboundClients {
        &self.outbound_clients
    }

    /// Loads a component: from the artifact cache, or compiled and cached.
    /// Refuses what is not a component of a supported `tally:billing` world.
    /// A compile needs a free turn ([`CompilesBusy`] if none is): callers
    /// that may wait use [`Self::load_async`].
    pub fn load(&self, wasm: &[u8]) -> anyhow::Result<LoadedAdapter> {
        self.load_in_turn(wasm, None)
    }

    /// [`Self::load`] on a blocking thread, for async callers: a component
    /// whose artifact is not cached first waits up to `wait` for a compile
    /// turn, without holding a thread ([`CompilesBusy`] past it). Gives the
    /// bytes back.
    pub async fn load_async(
        self: &Arc<Self>,
        sha256: &str,
        wasm: Vec<u8>,
        wait: Duration,
    ) -> anyhow::Result<(LoadedAdapter, Vec<u8>)> {
        let turn = if self.artifact_path(sha256).exists() {
            None
        } else {
            let turns = self.compile_turns.clone();
            let permit = tokio::time::timeout(wait, turns.acquire_owned())
                .await
                .map_err(|_| CompilesBusy {
                    turns: self.compiler.concurrency(),
                    wait,
                })?
                .expect("the compile semaphore is never closed");
            Some(CompileTurn { _permit: permit })
        };
        let engine = self.clone();
        let (loaded, wasm) =
            tokio::task::spawn_blocking(move || (engine.load_in_turn(&wasm, turn), wasm)).await?;
        Ok((loaded?, wasm))
    }

    /// Whether the component `wasm` has an artifact in the cache: loading
    /// it maps that instead of compiling.
    pub fn is_cached(&self, wasm: &[u8]) -> bool {
        self.artifact_path(&hex(&Sha256::digest(wasm))).exists()
    }

    /// Where the artifact of the component `sha256` is cached.
    fn artifact_path(&self, sha256: &str) -> PathBuf {
        self.cache_dir.join(format!(
            "{sha256}-{}.{ARTIFACT_EXTENSION}",
            self.settings_hash()
        ))
    }

    fn load_in_turn(
        &self,
        wasm: &[u8],
        turn: Option<CompileTurn>,
    ) -> anyhow::Result<LoadedAdapter> {
        let started = Instant::now();
        let sha256 = hex(&Sha256::digest(wasm));
        let artifact = self.artifact_path(&sha256);
        // Others loading this component wait here, then map what it compiled.
        let lock = self.loading_lock(&sha256);
        let _loading = lock.lock().unwrap_or_else(|e| e.into_inner());
        let (component, cached) = match self.map_artifact(&artifact) {
            Some(component) => (component, true),
            None => (self.compile_into(wasm, &artifact, turn)?, false),
        };
        let contract = contract_of(&component, &self.engine)?;
        let pre = self
            .linker
            .instantiate_pre(&component)
            .and_then(|pre| PreparedAdapter::new(contract, pre))
            .map_err(|e| {
                anyhow!(
                    "the component does not implement the tally:billing@{}/billing-adapter world: {e}",
                    contract.version
                )
            })?;
        Ok(LoadedAdapter {
            sha256,
            world_version: contract.version,
            pre,
            load_time: started.elapsed(),
            cached,
        })
    }

    /// The lock that loads of `sha256` take, shared while any holds it.
    fn loading_lock(&self, sha256: &str) -> Arc<Mutex<()>> {
        let mut loading = self.loading.lock().expect("loading lock");
        loading.retain(|_, lock| lock.strong_count() > 0);
        if let Some(lock) = loading.get(sha256).and_then(Weak::upgrade) {
            return lock;
        }
        let lock = Arc::new(Mutex::new(()));
        loading.insert(sha256.to_owned(), Arc::downgrade(&lock));
        lock
    }

    /// The cached artifact, if there is one that loads. A damaged one (disk
    /// full, a partial copy…) or one removed meanwhile is compiled again.
    fn map_artifact(&self, artifact: &Path) -> Option<Component> {
        // SAFETY: the artifact was written by `precompile_component` of an
        // engine with the same settings (its name carries their hash), into a
        // cache directory that only the host writes, and is never modified
        // once published under this name.
        match unsafe { Component::deserialize_file(&self.engine, artifact) } {
            Ok(component) => Some(component),
            Err(_) if !artifact.exists() => None,
            Err(error) => {
                tracing::warn!(artifact = %artifact.display(), %error, "recompiling a cached component that would not load");
                None
            }
        }
    }

    /// Compiles `wasm` into a temporary file of its own (synced), maps it,
    /// then renames it to `artifact`: a published artifact is replaced whole,
    /// never rewritten in place, so whoever maps it keeps a valid file.
    fn compile_into(
        &self,
        wasm: &[u8],
        artifact: &Path,
        turn: Option<CompileTurn>,
    ) -> anyhow::Result<Component> {
        if !wasmparser_is_component(wasm) {
            bail!("{}", not_a_component(wasm));
        }
        // A blocking thread never waits for a turn: it has one, or takes a free one.
        let _turn = match turn {
            Some(turn) => turn,
            None => CompileTurn {
                _permit: self
                    .compile_turns
                    .clone()
                    .try_acquire_owned()
                    .map_err(|_| CompilesBusy {
                        turns: self.compiler.concurrency(),
                        wait: Duration::ZERO,
                    })?,
            },
        };
        let mut partial = tempfile::Builder::new()
            .prefix(COMPILING_PREFIX)
            .suffix(PARTIAL_EXTENSION)
            .tempfile_in(&self.cache_dir)
            .with_context(|| format!("creating a file in {}", self.cache_dir.display()))?;
        match &self.compiler {
            Compiler::InProcess => {
                let compiled = self
                    .engine
                    .precompile_component(wasm)
                    .map_err(|e| anyhow!("compiling the component: {e}"))?;
                std::io::Write::write_all(&mut partial, &compiled)?;
            }
            Compiler::Child { program, settings } => compile_in_child(
                program,
                settings,
                self.pooling,
                &self.settings_hash(),
                wasm,
                &self.cache_dir,
                partial.as_file(),
            )?,
        }
        partial.as_file().sync_all()?;
        self.compiles.fetch_add(1, Ordering::Relaxed);
        // SAFETY: written just now by `precompile_component` of an engine with
        // these settings (the child checks the hash), under a name only this
        // call knows.
        let component = unsafe { Component::deserialize_file(&self.engine, partial.path()) }
            .map_err(|e| anyhow!("loading the compiled component: {e}"))?;
        // A cache that cannot keep the artifact costs a compile next time, no more.
        match partial.persist(artifact) {
            Ok(_) => {
                if let Err(error) = std::fs::File::open(&self.cache_dir).and_then(|d| d.sync_all())
                {
                    tracing::warn!(%error, "cannot sync the artifact cache directory");
                }
            }
            Err(error) => {
                tracing::warn!(artifact = %artifact.display(), error = %error.error, "cannot cache the compiled component");
            }
        }
        Ok(component)
    }

    /// Deletes the artifacts of every component `keep` refuses, and the
    /// temporary files of compiles that died with an earlier host. Returns
    /// how many artifacts went. Loaded components keep their mapping.
    pub fn remove_artifacts(&self, keep: impl Fn(&str) -> bool) -> std::io::Result<usize> {
        let mut removed = 0;
        for entry in std::fs::read_dir(&self.cache_dir)? {
            let entry = entry?;
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            // `.partial` without the prefix: what hosts before it left.
            if name.starts_with(COMPILING_PREFIX) || name.ends_with(PARTIAL_EXTENSION) {
                let age = entry
                    .metadata()
                    .and_then(|m| m.modified())
                    .ok()
                    .and_then(|t| SystemTime::now().duration_since(t).ok());
                if age.is_some_and(|age| age > self.stale_compile()) {
                    let _ = std::fs::remove_file(&path);
                }
                continue;
            }
            let Some(sha256) = artifact_sha256(name) else {
                continue;
            };
            // Not while a load of this component compiles or maps it; and
            // asked only under the lock, so that a load that began before
            // it counts as an install in `keep`.
            let lock = self.loading_lock(sha256);
            let _loading = lock.lock().unwrap_or_else(|e| e.into_inner());
            if keep(sha256) {
                continue;
            }
            match std::fs::remove_file(&path) {
                Ok(()) => removed += 1,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error),
            }
        }
        Ok(removed)
    }

    /// How old a temporary artifact is when no compile can be writing it any more.
    fn stale_compile(&self) -> Duration {
        match &self.compiler {
            Compiler::Child { settings, .. } => {
                STALE_COMPILE.max(settings.timeout.saturating_mul(2))
            }
            Compiler::InProcess => STALE_COMPILE,
        }
    }

    /// The engine's compile settings, as artifact names and the compiler child carry them.
    fn settings_hash(&self) -> String {
        settings_hash(&self.engine)
    }
}

/// A turn to compile (one of [`Compiler`]'s concurrency), given back when dropped.
pub struct CompileTurn {
    _permit: OwnedSemaphorePermit,
}

/// No compile turn came free in time: the load was refused, nothing compiled.
#[derive(Debug, thiserror::Error)]
#[error("{turns} compiles are running already and none finished within {wait:?}: try again later")]
pub struct CompilesBusy {
    /// Compiles at once.
    pub turns: usize,
    /// How long the load waited for a turn.
    pub wait: Duration,
}

impl Drop for AdapterEngine {
    fn drop(&mut self) {
        self.ticker_stop.store(true, Ordering::Relaxed);
    }
}

/// A hash of what a precompiled artifact depends on (wasmtime's version,
/// compiler flags, tunables, features): artifacts load only where it matches.
pub(super) fn settings_hash(engine: &Engine) -> String {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    engine.precompile_compatibility_hash().hash(&mut hasher);
    format!("{:016x}", hasher.finish())
}

/// An engine with the host's settings, for the compiler child: it compiles
/// nothing but artifacts for the host, and runs nothing.
pub(super) fn compiling_engine(pooling: bool) -> anyhow::Result<Engine> {
    Engine::new(&config(pooling)).map_err(|e| anyhow!("creating the compiler's engine: {e}"))
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

/// The contract version that serves a component: the one of the
/// `tally:billing` version it exports its adapter for, if this host serves it.
fn contract_of(component: &Component, engine: &Engine) -> anyhow::Result<&'static Contract> {
    const PREFIX: &str = "tally:billing/adapter@";
    let ty = component.component_type();
    let Some(version) = ty
        .exports(engine)
        .find_map(|(name, _)| name.strip_prefix(PREFIX).map(str::to_owned))
    else {
        bail!("not a tally billing adapter: the component does not export tally:billing/adapter");
    };
    Contract::for_version(&version)
}

/// The component sha256 in the name of a published artifact
/// (`SHA256-SETTINGS.cwasm`), or `None` for any other file.
fn artifact_sha256(file_name: &str) -> Option<&str> {
    file_name
        .strip_suffix(ARTIFACT_EXTENSION)
        .and_then(|rest| rest.strip_suffix('.'))
        .and_then(|rest| rest.split_once('-'))
        .map(|(sha256, _)| sha256)
}

/// Why `wasm` (not a component) is refused, and how each toolchain makes a
/// component: a core module is what C, C++, Go and Zig compilers write.
fn not_a_component(wasm: &[u8]) -> String {
    let core_module = wasm.len() >= 8 && wasm[..4] == *b"\0asm" && wasm[4..8] == [1, 0, 0, 0];
    if !core_module {
        return "not a WebAssembly component (nor a core module: not WebAssembly at all)".into();
    }
    "a core WebAssembly module, not a component. Make it one: \
     from Rust, build with `--target wasm32-wasip2` (a cdylib is then a component); \
     from C, C++, Go or Zig (wasm32-wasi / wasip1), run `tally adapter componentize core.wasm -o adapter.wasm` \
     (or `wasm-tools component new core.wasm --adapt wasi_snapshot_preview1.reactor.wasm -o adapter.wasm`); \
     Python and JavaScript build components with componentize-py and componentize-qjs \
     (see `tally adapter new --help`)"
        .into()
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_component_bytes_are_compiled() {
        let component = b"\0asm\x0d\0\x01\0";
        let core_module = b"\0asm\x01\0\0\0";
        assert!(wasmparser_is_component(component));
        assert!(!wasmparser_is_component(core_module));
        assert!(!wasmparser_is_component(b"\0asm\x0d\0"));
        assert!(!wasmparser_is_component(b"PK\x03\x04\x0d\0\x01\0"));
        let advice = not_a_component(core_module);
        for toolchain in [
            "wasm32-wasip2",
            "tally adapter componentize",
            "wasm-tools component new",
        ] {
            assert!(advice.contains(toolchain), "{advice}");
        }
        assert!(not_a_component(b"PK\x03\x04").contains("not WebAssembly at all"));
    }

    /// What the cache cleanup may remove: artifacts, by their component's
    /// sha256; nothing else in the directory.
    #[test]
    fn artifacts_are_told_from_other_files_by_name() {
        let sha = "9f2c".repeat(16);
        let artifact = format!("{sha}-00ff00ff00ff00ff.cwasm");
        assert_eq!(artifact_sha256(&artifact), Some(sha.as_str()));
        for other in [
            format!("{sha}.cwasm"),
            format!("{sha}-00ff.cwasm.partial"),
            format!(".compiling-{sha}.partial"),
            format!("{sha}-00ffcwasm"),
            "notes.txt".to_string(),
        ] {
            assert_eq!(artifact_sha256(&other), None, "{other}");
        }
    }
}
