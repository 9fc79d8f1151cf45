//! CPU time spent by processes, read from `/proc`: what each side of a
//! benchmark (the client, tally, the database server) costs per record,
//! which a rate alone hides when they all share the machine's cores.

use std::collections::HashMap;
use std::time::Duration;

/// CPU time (user + system) used so far, by process id.
#[derive(Debug, Default, Clone)]
pub struct CpuSample(HashMap<u32, Duration>);

impl CpuSample {
    /// The processes' CPU time now; those already gone are left out.
    pub fn of(pids: impl IntoIterator<Item = u32>) -> Self {
        CpuSample(
            (pids.into_iter())
                .filter_map(|pid| Some((pid, cpu_time(pid)?)))
                .collect(),
        )
    }

    /// The CPU time used since `earlier`, summed over the processes of this
    /// sample (one that started in between counts from zero).
    pub fn since(&self, earlier: &CpuSample) -> Duration {
        (self.0.iter())
            .map(|(pid, now)| now.saturating_sub(earlier.0.get(pid).copied().unwrap_or_default()))
            .sum()
    }
}

/// This process.
pub fn this_process() -> u32 {
    std::process::id()
}

/// Every process on the machine running `name` (its `comm`): a local
/// database server's processes, its backends among them.
pub fn processes_named(name: &str) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|comm| comm.trim_end() == name)
        })
        .collect()
}

/// A process's user + system time, from `/proc/PID/stat` (fields 14 and 15,
/// in clock ticks).
fn cpu_time(pid: u32) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may hold spaces and parentheses: fields are counted
    // after its closing parenthesis (field 3, the state, comes first).
    let fields: Vec<&str> = stat[stat.rfind(')')? + 2..].split(' ').collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // SAFETY: sysconf only reads a configuration value.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    Some(Duration::from_secs_f64(ticks as f64 / per_second as f64))
}
