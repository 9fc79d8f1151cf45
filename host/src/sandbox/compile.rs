//! Compiling a component, bounded in time and memory.
//!
//! Cranelift's time and memory grow with the code it is given: a component
//! of 47 MiB with 150,000 functions once took 80 s and left the host 1.2 GiB
//! larger. So the host compiles in a child process — the `tally` binary's
//! hidden `compile-component` command — under a data-memory limit and a
//! deadline, and only maps the finished artifact. Benchmarks and tests of the
//! engine, which have no `tally` binary at hand, compile in process.
//!
//! The child reads the component on stdin and writes the artifact to stdout,
//! which the parent points at a fresh temporary file in the cache directory.
//! It builds its engine from the host's own settings function and refuses to
//! compile when the settings hash differs from the parent's (an artifact
//! loads only into an engine with the same settings). It starts with no
//! environment, no descriptor but its standard three, core dumps off, and
//! is killed if the thread that started it dies.

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitCode, ExitStatus};
use std::time::{Duration, Instant};

use anyhow::{Context, anyhow, bail};
use serde::Deserialize;

/// Default longest compile: five times what a Python adapter (18 MiB, an
/// embedded CPython) takes on a small, busy machine (≈ 12–25 s).
pub const DEFAULT_COMPILE_TIMEOUT: Duration = Duration::from_secs(120);
/// Default data memory of a compile (heap and writable mappings), in MiB: a
/// Python adapter compiles within 512 MiB (peak RSS ≈ 360 MiB); a component of
/// 47 MiB with 150,000 functions needs more than 1.3 GiB.
pub const DEFAULT_COMPILE_MEMORY_MIB: u64 = 1_024;
/// Default compiles at once; further installs wait for a turn.
pub const DEFAULT_COMPILE_CONCURRENCY: usize = 2;
/// How much lower a compile's scheduling priority is than the host's (`nice`).
const COMPILE_NICENESS: libc::c_int = 10;
/// Exit code of a child that refused to compile, the reason on stderr.
const REFUSED: u8 = 2;
/// How often the parent looks whether the child has finished.
const POLL: Duration = Duration::from_millis(20);
/// Most of a child's stderr quoted in an error.
const STDERR_QUOTED: u64 = 4_096;

/// Bounds on compiling a component at install: `tally.toml`'s `[compile]`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct CompileSettings {
    /// Longest a compile may take; the child is killed past it.
    #[serde(with = "humantime_serde")]
    pub timeout: Duration,
    /// Data memory (heap and writable mappings) a compile may use, in MiB.
    pub memory_mib: u64,
    /// Compiles at once (at least 1): what compiles may use together is
    /// this many times `memory_mib`.
    pub concurrency: usize,
}

impl Default for CompileSettings {
    fn default() -> Self {
        CompileSettings {
            timeout: DEFAULT_COMPILE_TIMEOUT,
            memory_mib: DEFAULT_COMPILE_MEMORY_MIB,
            concurrency: DEFAULT_COMPILE_CONCURRENCY,
        }
    }
}

/// Where components are compiled.
#[derive(Debug, Clone)]
pub enum Compiler {
    /// In this process, without bounds: for benchmarks and tests of the
    /// engine, which have no `tally` binary to start.
    InProcess,
    /// In a child process of `program` (the `tally` binary), bounded.
    Child {
        /// The `tally` binary, started with its hidden `compile-component` command.
        program: PathBuf,
        /// The bounds each compile runs under.
        settings: CompileSettings,
    },
}

impl Compiler {
    /// Children of the `tally` binary running now (`/proc/self/exe` on
    /// Linux: the very binary, even if a newer one was installed over it).
    pub fn this_binary(settings: CompileSettings) -> anyhow::Result<Self> {
        let exe = Path::new("/proc/self/exe");
        let program = if exe.exists() {
            exe.to_path_buf()
        } else {
            std::env::current_exe().context("finding the tally binary to compile components")?
        };
        Ok(Compiler::Child { program, settings })
    }

    /// Compiles at once.
    pub(super) fn concurrency(&self) -> usize {
        match self {
            Compiler::InProcess => DEFAULT_COMPILE_CONCURRENCY,
            Compiler::Child { settings, .. } => settings.concurrency.max(1),
        }
    }
}

/// Compiles `wasm` in a child of `program` under `settings`, the artifact
/// written to `out`. `pooling` and `settings_hash` describe the parent's
/// engine; the child refuses if its own would differ.
pub(super) fn compile_in_child(
    program: &Path,
    settings: &CompileSettings,
    pooling: bool,
    settings_hash: &str,
    wasm: &[u8],
    scratch: &Path,
    out: &File,
) -> anyhow::Result<()> {
    // Files, not pipes: no thread to feed or drain the child.
    let mut input = tempfile::tempfile_in(scratch)?;
    input.write_all(wasm)?;
    input.seek(SeekFrom::Start(0))?;
    let mut stderr = tempfile::tempfile_in(scratch)?;

    let mut command = Command::new(program);
    command
        .arg("compile-component")
        .args(["--settings-hash", settings_hash])
        .args(pooling.then_some("--pooling"))
        .env_clear()
        .current_dir("/")
        .stdin(input)
        .stdout(out.try_clone()?)
        .stderr(stderr.try_clone()?);
    confine(
        &mut command,
        settings.memory_mib.saturating_mul(1 << 20),
        cpu_seconds(settings.timeout),
    );
    let mut child = command
        .spawn()
        .with_context(|| format!("starting the compiler ({})", program.display()))?;

    let started = Instant::now();
    let status = loop {
        if let Some(status) = child.try_wait()? {
            break status;
        }
        let elapsed = started.elapsed();
        if elapsed >= settings.timeout {
            let _ = child.kill();
            let _ = child.wait();
            bail!(
                "compiling the component took longer than {} (the compile timeout, `[compile] timeout` in tally.toml): it was stopped",
                humantime::format_duration(settings.timeout)
            );
        }
        std::thread::sleep(POLL.min(settings.timeout - elapsed));
    };
    let said = tail(&mut stderr)?;
    if stopped_by(status, libc::SIGXCPU) {
        bail!(
            "compiling the component used more than {} s of CPU (the compile timeout, `[compile] timeout` in tally.toml, on every core): it was stopped",
            cpu_seconds(settings.timeout)
        );
    }
    if is_out_of_memory(&said) {
        bail!(
            "compiling the component needed more than {} MiB (the compile memory limit, `[compile] memory_mib` in tally.toml): it was stopped",
            settings.memory_mib
        );
    }
    if stopped_by(status, libc::SIGABRT) {
        bail!(
            "compiling the component ran out of memory or aborted (the compile memory limit is {} MiB, `[compile] memory_mib` in tally.toml): {said}",
            settings.memory_mib
        );
    }
    match status.code() {
        Some(0) if out.metadata()?.len() > 0 => Ok(()),
        Some(0) => bail!("the compiler wrote no artifact: {said}"),
        Some(code) if code == i32::from(REFUSED) => Err(anyhow!("{said}")),
        _ => bail!("the compiler failed ({status}): {said}"),
    }
}

/// CPU time a compile may use: its wall-clock timeout on every core, since
/// Cranelift compiles functions in parallel. A backstop to the timeout (the
/// kernel enforces it even if the parent stalls).
fn cpu_seconds(timeout: Duration) -> u64 {
    let cores = std::thread::available_parallelism().map_or(1, |n| n.get() as u64);
    timeout.as_secs().max(1).saturating_mul(cores)
}

/// The limits and isolation a child starts with (set between fork and exec).
fn confine(command: &mut Command, memory_bytes: u64, cpu_seconds: u64) {
    use std::os::unix::process::CommandExt;
    // SAFETY: the closure runs in the forked child before exec and calls
    // only async-signal-safe functions (setrlimit, nice, prctl,
    // syscall, fcntl).
    unsafe {
        command.pre_exec(move || {
            limit(libc::RLIMIT_DATA, memory_bytes)?;
            limit(libc::RLIMIT_CPU, cpu_seconds)?;
            // Compiles yield to request handling and runs: two of them must
            // not starve the host's own threads of the CPU. (Raising one's
            // niceness is always allowed; a failure would only cost priority.)
            libc::nice(COMPILE_NICENESS);
            // A child that aborts over its memory limit must not write a core of that size.
            limit(libc::RLIMIT_CORE, 0)?;
            #[cfg(target_os = "linux")]
            {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                // Every descriptor but stdin, stdout and stderr closes at exec:
                // the database, sockets, whatever a library opened without CLOEXEC.
                let all = libc::syscall(
                    libc::SYS_close_range,
                    3u32,
                    u32::MAX,
                    libc::CLOSE_RANGE_CLOEXEC,
                );
                if all != 0 {
                    for fd in 3..4_096 {
                        libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC);
                    }
                }
            }
            Ok(())
        });
    }
}

#[cfg(target_os = "linux")]
type Resource = libc::__rlimit_resource_t;
#[cfg(not(target_os = "linux"))]
type Resource = libc::c_int;

fn limit(resource: Resource, value: u64) -> std::io::Result<()> {
    let value = libc::rlimit {
        rlim_cur: value as libc::rlim_t,
        rlim_max: value as libc::rlim_t,
    };
    // SAFETY: setrlimit reads the struct it is given, nothing else.
    if unsafe { libc::setrlimit(resource, &value) } == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Whether the child was ended by `signal`. Rust aborts (SIGABRT) on a
/// failed allocation, but so does any other abort: its reason names both.
fn stopped_by(status: ExitStatus, signal: libc::c_int) -> bool {
    use std::os::unix::process::ExitStatusExt;
    status.signal() == Some(signal)
}

/// Whether the child said it ran out of its memory limit: a failed
/// allocation, or a failed mapping as an error naming ENOMEM.
fn is_out_of_memory(said: &str) -> bool {
    [
        "memory allocation of",
        "Cannot allocate memory",
        "out of memory",
    ]
    .iter()
    .any(|sign| said.contains(sign))
}

/// The last few KiB of what the child wrote to stderr.
fn tail(stderr: &mut File) -> anyhow::Result<String> {
    let length = stderr.seek(SeekFrom::End(0))?;
    stderr.seek(SeekFrom::Start(length.saturating_sub(STDERR_QUOTED)))?;
    let mut bytes = Vec::new();
    stderr.read_to_end(&mut bytes)?;
    Ok(String::from_utf8_lossy(&bytes).trim().to_owned())
}

/// The hidden `tally compile-component` command: the component on stdin,
/// the artifact on stdout; a refusal exits with a status of its own and the reason
/// on stderr.
pub fn child_main(pooling: bool, settings_hash: &str) -> ExitCode {
    match compile_stdin(pooling, settings_hash) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            eprintln!("{error:#}");
            ExitCode::from(REFUSED)
        }
    }
}

fn compile_stdin(pooling: bool, expected: &str) -> anyhow::Result<()> {
    let mut wasm = Vec::new();
    std::io::stdin()
        .lock()
        .read_to_end(&mut wasm)
        .context("reading the component")?;
    let engine = super::engine::compiling_engine(pooling)?;
    let actual = super::engine::settings_hash(&engine);
    if actual != expected {
        bail!(
            "the compiler's engine settings ({actual}) differ from the host's ({expected}): was the tally binary replaced under a running host? Restart it"
        );
    }
    let artifact = engine
        .precompile_component(&wasm)
        .map_err(|e| anyhow!("compiling the component: {e}"))?;
    drop(wasm);
    let mut out = std::io::stdout().lock();
    out.write_all(&artifact)?;
    out.flush()?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// The child starts with no environment and no descriptor of the parent's
    /// but the standard three, whatever the parent left open.
    #[test]
    fn the_child_inherits_no_descriptor_and_no_environment() {
        let dir = tempfile::tempdir().unwrap();
        // A descriptor the parent leaks (no CLOEXEC), as a database library might.
        let leaked = File::create(dir.path().join("leaked.db")).unwrap();
        let fd = std::os::fd::AsRawFd::as_raw_fd(&leaked);
        // SAFETY: clears a flag on a descriptor this test owns.
        unsafe { libc::fcntl(fd, libc::F_SETFD, 0) };
        // Stands in for the compiler: reports what it was given, then refuses.
        let program = dir.path().join("fake-compiler");
        std::fs::write(
            &program,
            "#!/bin/sh\nenv >&2\nls -l /proc/self/fd >&2\necho \"cpu=$(ulimit -t) nice=$(nice)\" >&2\nexit 2\n",
        )
        .unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = tempfile::tempfile_in(dir.path()).unwrap();
        let said = compile_in_child(
            &program,
            &CompileSettings::default(),
            false,
            "0",
            b"\0asm",
            dir.path(),
            &out,
        )
        .unwrap_err()
        .to_string();
        assert!(!said.contains("leaked.db"), "{said}");
        assert!(!said.contains("HOME=") && !said.contains("CARGO"), "{said}");
        assert!(said.contains("/proc/"), "the listing is quoted: {said}");
        // Bounded in CPU time, and below the host's priority.
        let cpu = cpu_seconds(CompileSettings::default().timeout);
        // SAFETY: reads this process's scheduling priority.
        let host_nice = unsafe { libc::getpriority(libc::PRIO_PROCESS, 0) };
        let nice = (host_nice + COMPILE_NICENESS).min(19);
        assert!(said.contains(&format!("cpu={cpu} nice={nice}")), "{said}");
    }

    /// Past its deadline the child is killed and the error names the bound.
    #[test]
    fn a_compile_past_its_timeout_is_stopped() {
        let dir = tempfile::tempdir().unwrap();
        let program = dir.path().join("slow-compiler");
        std::fs::write(&program, "#!/bin/sh\nexec sleep 30\n").unwrap();
        std::fs::set_permissions(&program, std::fs::Permissions::from_mode(0o755)).unwrap();
        let out = tempfile::tempfile_in(dir.path()).unwrap();
        let settings = CompileSettings {
            timeout: Duration::from_millis(200),
            ..CompileSettings::default()
        };
        let error = compile_in_child(&program, &settings, false, "0", b"", dir.path(), &out)
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("longer than 200ms") && error.contains("`[compile] timeout`"),
            "{error}"
        );
    }
}
