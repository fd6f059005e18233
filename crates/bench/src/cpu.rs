//! CPU time spent during a throughput run: on the whole machine (so a
//! PostgreSQL server's backends count too), in the server processes and in
//! the bench process (the client side), read from `/proc` at the run's
//! start and at its last completion.
//!
//! Why: a ratio to the commit baseline says how a run compares with the
//! disk's flush rate, but once group commit has taken the flushes out of
//! the way a run is bound by CPU, and the ratio then moves with the disk
//! while the run does not (performance.md, finding 51). CPU per task, and
//! how busy the cores were, say which limit a run met: the cores divided by
//! the CPU per task is the most this machine could do at that cost.
//!
//! The store's writer thread (`aruntime-writer`) is counted on its own as
//! well: SQLite's writes all run on that one thread, so a run can be bound
//! by it while the cores sit partly idle (performance.md, finding 61), and
//! the machine's figures alone would not show it.
//!
//! Linux only; elsewhere nothing is read and the report leaves it out.

use aruntime_store::WRITER_THREAD;
use serde::Serialize;

/// The kernel reports these times in `USER_HZ` ticks, which is 100 on
/// every Linux this runs on (an ABI constant, unlike the kernel's `HZ`).
const TICKS_PER_S: f64 = 100.0;

/// CPU counters at one moment.
#[derive(Debug, Clone)]
pub(crate) struct Mark {
    /// Busy ticks summed over all cores (everything but idle and iowait).
    machine_busy: u64,
    /// How many cores `/proc/stat` lists.
    cores: u32,
    /// User plus system ticks of each server process.
    servers: u64,
    /// User plus system ticks of this process.
    bench: u64,
    /// User plus system ticks of the servers' writer threads.
    writer: u64,
}

/// What a run used, per task it completed.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct CpuUse {
    /// Cores on the machine.
    pub cores: u32,
    /// Busy CPU time on the whole machine, µs per task.
    pub machine_us_per_task: f64,
    /// CPU time of the server processes, µs per task (the bench process's
    /// own when the store is embedded).
    pub server_us_per_task: f64,
    /// CPU time of the bench process (the clients), µs per task; zero when
    /// the store is embedded, where it is the server.
    pub bench_us_per_task: f64,
    /// CPU time of the servers' writer threads, µs per task: the one
    /// thread every write of a SQLite store runs on.
    pub writer_us_per_task: f64,
    /// How much of one core the writer threads used during the run, 0 to
    /// 1 per server: near 1, the writer is the bound, whatever the cores.
    pub writer_busy_share: f64,
    /// Share of all cores busy during the run, 0 to 1.
    pub busy_share: f64,
    /// `cores` divided by the machine's CPU per task: the tasks/s the
    /// machine could reach at this cost per task with every core busy.
    pub cpu_bound_tasks_per_s: f64,
}

/// Reads the counters; `servers` are the server processes' ids (none when
/// the store is embedded in this process).
pub(crate) fn mark(servers: &[u32]) -> Option<Mark> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    let (machine_busy, cores) = machine(&stat)?;
    let own = process_ticks(&std::fs::read_to_string("/proc/self/stat").ok()?)?;
    let (servers, writer) = if servers.is_empty() {
        (own, writer_ticks("self"))
    } else {
        servers.iter().try_fold((0, 0), |(sum, w), pid| {
            let s = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            Some((sum + process_ticks(&s)?, w + writer_ticks(&pid.to_string())))
        })?
    };
    Some(Mark {
        machine_busy,
        cores,
        servers,
        bench: own,
        writer,
    })
}

/// User plus system ticks of process `pid`'s writer threads (0 if it has
/// none: a thread that cannot be read is left out, not an error).
fn writer_ticks(pid: &str) -> u64 {
    let Ok(threads) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    threads
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|stat| thread_name(stat) == Some(WRITER_THREAD))
        .filter_map(|stat| process_ticks(&stat))
        .sum()
}

/// The command name of a `/proc/PID/task/TID/stat` line (field 2).
fn thread_name(stat: &str) -> Option<&str> {
    stat.get(stat.find('(')? + 1..stat.rfind(')')?)
}

impl Mark {
    /// What was used between `self` and `end`, over `secs` and `tasks`.
    /// `embedded`: the servers are this process, so the bench's own time
    /// is not counted twice.
    pub(crate) fn until(&self, end: &Mark, secs: f64, tasks: u64, embedded: bool) -> CpuUse {
        let per_task = |ticks: u64| ticks as f64 / TICKS_PER_S * 1e6 / tasks.max(1) as f64;
        let busy_ticks = end.machine_busy.saturating_sub(self.machine_busy);
        let machine = per_task(busy_ticks);
        let bench = if embedded {
            0.0
        } else {
            per_task(end.bench.saturating_sub(self.bench))
        };
        let busy = busy_ticks as f64 / TICKS_PER_S;
        let writer_ticks = end.writer.saturating_sub(self.writer);
        CpuUse {
            cores: end.cores,
            machine_us_per_task: machine,
            server_us_per_task: per_task(end.servers.saturating_sub(self.servers)),
            bench_us_per_task: bench,
            writer_us_per_task: per_task(writer_ticks),
            writer_busy_share: if secs > 0.0 {
                writer_ticks as f64 / TICKS_PER_S / secs
            } else {
                0.0
            },
            busy_share: if secs > 0.0 {
                (busy / (secs * f64::from(end.cores))).min(1.0)
            } else {
                0.0
            },
            cpu_bound_tasks_per_s: if machine > 0.0 {
                f64::from(end.cores) * 1e6 / machine
            } else {
                0.0
            },
        }
    }
}

/// Busy ticks and core count from `/proc/stat`.
fn machine(stat: &str) -> Option<(u64, u32)> {
    let mut lines = stat.lines();
    let total = lines.next()?.strip_prefix("cpu ")?;
    let f: Vec<u64> = total
        .split_whitespace()
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice]:
    // guest time is already inside user, so it is not added again.
    let busy = f.iter().take(8).sum::<u64>() - f.get(3)? - f.get(4)?;
    let cores = lines
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .count();
    Some((busy, u32::try_from(cores).ok()?.max(1)))
}

/// User plus system ticks from a `/proc/PID/stat` line. The command name
/// (field 2) may hold spaces and parentheses, so fields are counted from
/// its closing parenthesis.
fn process_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state is field 3, utime 14 and stime 15.
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn machine_busy_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 7 0\ncpu0 50 2 25 500 10 1 1 0 0 0\ncpu1 50 3 25 500 10 2 1 1 0 0\nintr 1 2\n";
        assert_eq!(machine(stat), Some((100 + 5 + 50 + 3 + 2 + 1, 2)));
    }

    #[test]
    fn process_ticks_survive_a_name_with_spaces_and_parentheses() {
        let stat = "4242 (a (b) c) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0 20 0 8 0 100 0 0";
        assert_eq!(process_ticks(stat), Some(280));
    }

    #[test]
    fn a_threads_name_is_read_between_the_outer_parentheses() {
        let stat = "77 (aruntime-writer) S 1 2 3 4 5 6 7 8 9 10 250 30 0 0";
        assert_eq!(thread_name(stat), Some("aruntime-writer"));
        assert_eq!(thread_name("78 (a (b)) R 1"), Some("a (b)"));
    }

    #[test]
    fn this_process_writer_thread_is_found_by_name() {
        // The thread works until its own ticks show up under its name (a
        // tick is 10 ms of CPU), or gives up after a few seconds.
        let t = std::thread::Builder::new()
            .name(WRITER_THREAD.into())
            .spawn(|| {
                let start = std::time::Instant::now();
                while start.elapsed().as_secs() < 5 {
                    if writer_ticks("self") > 0 {
                        return true;
                    }
                }
                false
            });
        let found = t.map(|t| t.join().unwrap_or(false));
        assert!(
            matches!(found, Ok(true)),
            "the writer thread's ticks were never counted"
        );
    }

    #[test]
    fn use_is_per_task_and_bounded_by_the_cores() {
        let a = Mark {
            machine_busy: 1_000,
            cores: 2,
            servers: 100,
            bench: 50,
            writer: 10,
        };
        let b = Mark {
            machine_busy: 1_180, // 1.8 s busy of 2 s × 2 cores
            cores: 2,
            servers: 200, // 1 s
            bench: 90,    // 0.4 s
            writer: 70,   // 0.6 s
        };
        let u = a.until(&b, 1.0, 10_000, false);
        assert_eq!(u.machine_us_per_task, 180.0);
        assert_eq!(u.server_us_per_task, 100.0);
        assert_eq!(u.bench_us_per_task, 40.0);
        assert_eq!(u.writer_us_per_task, 60.0);
        assert_eq!(u.writer_busy_share, 0.6);
        assert_eq!(u.busy_share, 0.9);
        assert!((u.cpu_bound_tasks_per_s - 2e6 / 180.0).abs() < 1e-6);
        assert_eq!(a.until(&b, 1.0, 10_000, true).bench_us_per_task, 0.0);
    }
}
