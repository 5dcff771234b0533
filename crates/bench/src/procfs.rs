//! What the bench reads from /proc: CPU time of the server process and of each bench thread,
//! the server's RSS and thread count, the machine's busy time, and a description of the machine.
//!
//! CPU is attributed by process: the server runs as its own process (started by the bench or
//! given by pid), so `/proc/<pid>/stat` holds exactly its CPU (all its threads, live and exited).
//! The bench's own CPU comes from `/proc/self/stat`, and per thread from `/proc/self/task/*/stat`
//! (threads are named `bc-*`), which shows whether one load-generator thread was the bottleneck.

use std::collections::HashMap;
use std::path::Path;
use std::sync::{Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use serde_json::json;

use crate::error::BenchError;
use crate::hist::round3;

/// CPU and memory figures of one process at one moment.
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcSample {
    /// utime + stime, in clock ticks.
    pub cpu_ticks: u64,
    /// stime (kernel) alone, in clock ticks.
    pub sys_ticks: u64,
    /// Resident set size in KiB (`VmRSS`).
    pub rss_kib: u64,
    /// Threads.
    pub threads: u64,
}

fn ticks_per_second() -> f64 {
    rustix::param::clock_ticks_per_second() as f64
}

/// Splits a `stat` line into (comm, fields after the comm); field 3 (`state`) is index 0.
fn split_stat(text: &str) -> Option<(&str, Vec<&str>)> {
    let open = text.find('(')?;
    let close = text.rfind(')')?;
    let comm = &text[open + 1..close];
    Some((comm, text[close + 1..].split_whitespace().collect()))
}

fn field(fields: &[&str], n: usize) -> u64 {
    // `n` is the 1-based field number of proc(5).
    fields.get(n - 3).and_then(|f| f.parse().ok()).unwrap_or(0)
}

/// Reads `/proc/<pid>/stat` and `/proc/<pid>/status`; `None` if the process is gone.
pub fn sample(pid: &str) -> Option<ProcSample> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let (_, fields) = split_stat(&stat)?;
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    Some(ProcSample {
        cpu_ticks: field(&fields, 14) + field(&fields, 15),
        sys_ticks: field(&fields, 15),
        rss_kib: kib("VmRSS:"),
        threads: kib("Threads:"),
    })
}

/// Threads of this process that have finished: their last CPU figures (they vanish from
/// `/proc/self/task` when they exit).
static FINISHED: Mutex<Vec<(u64, String, u64)>> = Mutex::new(Vec::new());

/// Records the calling thread's CPU time; bench worker threads call this just before they end,
/// so snapshots taken after they exit still count them.
pub fn thread_done() {
    let Ok(stat) = std::fs::read_to_string("/proc/thread-self/stat") else {
        return;
    };
    let tid = stat
        .split_whitespace()
        .next()
        .and_then(|t| t.parse().ok())
        .unwrap_or(0);
    if let Some((comm, fields)) = split_stat(&stat) {
        let ticks = field(&fields, 14) + field(&fields, 15);
        FINISHED
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push((tid, comm.to_owned(), ticks));
    }
}

/// CPU ticks of each thread of this process, by thread id, with its name (finished threads
/// included, see [`thread_done`]).
pub fn own_threads() -> HashMap<u64, (String, u64)> {
    let mut out: HashMap<u64, (String, u64)> = FINISHED
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .iter()
        .map(|(tid, name, ticks)| (*tid, (name.clone(), *ticks)))
        .collect();
    out.extend(threads_of("self"));
    out
}

/// Each live thread of process `pid` (`self` for this one) that `read` makes something of
/// (given its `/proc/<pid>/task/<tid>` directory): its name and CPU figure, by thread id.
fn per_thread(
    pid: &str,
    read: impl Fn(&Path) -> Option<(String, u64)>,
) -> HashMap<u64, (String, u64)> {
    let Ok(dir) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashMap::new();
    };
    dir.flatten()
        .filter_map(|entry| {
            let tid = entry.file_name().to_str()?.parse().ok()?;
            Some((tid, read(&entry.path())?))
        })
        .collect()
}

/// CPU ticks of each live thread of process `pid` (`self` for this one), with its name.
fn threads_of(pid: &str) -> HashMap<u64, (String, u64)> {
    per_thread(pid, |task| {
        let stat = std::fs::read_to_string(task.join("stat")).ok()?;
        let (comm, fields) = split_stat(&stat)?;
        Some((comm.to_owned(), field(&fields, 14) + field(&fields, 15)))
    })
}

/// CPU time of each live thread of process `pid`, in nanoseconds, with its name: from
/// `schedstat`, which counts every run exactly. The tick counts of `stat` miss threads that run
/// for microseconds at a time: a server's heartbeat threads showed 0 ticks each while the
/// process used most of a core.
fn threads_ns(pid: u32) -> HashMap<u64, (String, u64)> {
    per_thread(&pid.to_string(), |task| {
        let comm = std::fs::read_to_string(task.join("comm")).ok()?;
        let sched = std::fs::read_to_string(task.join("schedstat")).ok()?;
        let ns = sched.split_whitespace().next()?.parse().ok()?;
        Some((comm.trim_end().to_owned(), ns))
    })
}

/// Each thread of `later` with the cores it used since `before` (`cores` turns the difference of
/// their CPU figures into cores).
fn per_thread_cores<'a>(
    before: &HashMap<u64, (String, u64)>,
    later: &'a HashMap<u64, (String, u64)>,
    cores: impl Fn(u64) -> f64,
) -> Vec<(&'a str, f64)> {
    later
        .iter()
        .map(|(tid, (name, now))| {
            let then = before.get(tid).map_or(0, |(_, t)| *t);
            (name.as_str(), cores(now.saturating_sub(then)))
        })
        .collect()
}

/// `threads` summed by the kind `kind` reads from each name, busiest first.
fn by_kind<'a>(
    threads: &[(&'a str, f64)],
    kind: impl Fn(&'a str) -> &'a str,
) -> Vec<(String, f64)> {
    let mut kinds: HashMap<&str, f64> = HashMap::new();
    for &(name, c) in threads {
        *kinds.entry(kind(name)).or_default() += c;
    }
    let mut out: Vec<(String, f64)> = kinds.into_iter().map(|(k, c)| (k.to_owned(), c)).collect();
    out.sort_by(|a, b| b.1.total_cmp(&a.1));
    out
}

/// Busy and total jiffies of the whole machine (`/proc/stat`, first line).
fn machine_jiffies() -> (u64, u64) {
    let Ok(text) = std::fs::read_to_string("/proc/stat") else {
        return (0, 0);
    };
    let Some(line) = text.lines().next() else {
        return (0, 0);
    };
    let v: Vec<u64> = line
        .split_whitespace()
        .skip(1)
        .filter_map(|x| x.parse().ok())
        .collect();
    let total: u64 = v.iter().take(8).sum();
    // idle + iowait
    let idle = v.get(3).copied().unwrap_or(0) + v.get(4).copied().unwrap_or(0);
    (total - idle, total)
}

/// The 1-minute load average.
pub fn loadavg() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|t| t.split_whitespace().next().and_then(|x| x.parse().ok()))
        .unwrap_or(0.0)
}

/// Everything CPU-related at one instant.
#[derive(Debug, Clone)]
pub struct CpuSnapshot {
    at: Instant,
    server: Option<ProcSample>,
    bench: Option<ProcSample>,
    threads: HashMap<u64, (String, u64)>,
    /// The server's threads, CPU in nanoseconds.
    server_threads: HashMap<u64, (String, u64)>,
    machine: (u64, u64),
}

/// CPU used between two snapshots, in cores (1.0 = one core busy the whole time).
#[derive(Debug, Clone)]
pub struct CpuUsage {
    /// Wall time between the snapshots, in seconds.
    pub wall_s: f64,
    /// The server process (None when its pid is unknown).
    pub server_cores: Option<f64>,
    /// Of which in the kernel (system calls, TCP).
    pub server_sys_cores: Option<f64>,
    /// The bench's kernel share.
    pub bench_sys_cores: f64,
    /// This process (the load generator).
    pub bench_cores: f64,
    /// The busiest bench thread and its share of a core.
    pub bench_busiest: (String, f64),
    /// Bench CPU by thread kind (name up to its last `-`).
    pub bench_by_kind: Vec<(String, f64)>,
    /// Server CPU by thread kind (name up to its first `-`: `hb` for the heartbeat threads,
    /// which deliver; `listen` for the sending-port listeners, which store), threads that ran
    /// all through the window only.
    pub server_by_kind: Vec<(String, f64)>,
    /// The whole machine (all processes), out of `nproc`.
    pub machine_cores: f64,
    /// Cores of the machine.
    pub nproc: usize,
}

/// At or above this share of a core, a bench thread (or the whole bench) counts as saturated.
pub const SATURATED: f64 = 0.9;

impl CpuSnapshot {
    /// Takes a snapshot; `server_pid` is the server's pid if known.
    pub fn take(server_pid: Option<u32>) -> Self {
        Self {
            at: Instant::now(),
            server: server_pid.and_then(|p| sample(&p.to_string())),
            bench: sample("self"),
            threads: own_threads(),
            server_threads: server_pid.map_or_else(HashMap::new, threads_ns),
            machine: machine_jiffies(),
        }
    }

    /// The usage from `self` to `later`.
    pub fn until(&self, later: &CpuSnapshot) -> CpuUsage {
        let wall = later.at.duration_since(self.at).as_secs_f64().max(1e-9);
        let tps = ticks_per_second();
        let cores = |ticks: u64| ticks as f64 / tps / wall;
        let server_cores = match (self.server, later.server) {
            (Some(a), Some(b)) => Some(cores(b.cpu_ticks.saturating_sub(a.cpu_ticks))),
            _ => None,
        };
        let server_sys_cores = match (self.server, later.server) {
            (Some(a), Some(b)) => Some(cores(b.sys_ticks.saturating_sub(a.sys_ticks))),
            _ => None,
        };
        let bench_cores = match (self.bench, later.bench) {
            (Some(a), Some(b)) => cores(b.cpu_ticks.saturating_sub(a.cpu_ticks)),
            _ => 0.0,
        };
        let bench_sys_cores = match (self.bench, later.bench) {
            (Some(a), Some(b)) => cores(b.sys_ticks.saturating_sub(a.sys_ticks)),
            _ => 0.0,
        };
        let bench_threads = per_thread_cores(&self.threads, &later.threads, cores);
        let busiest = bench_threads
            .iter()
            .filter(|(_, c)| *c > 0.0)
            .max_by(|a, b| a.1.total_cmp(&b.1))
            .map_or((String::new(), 0.0), |(name, c)| ((*name).to_owned(), *c));
        // Bench threads are `bc-io-0`…: their kind is the name up to its last `-`.
        let bench_by_kind = by_kind(&bench_threads, |name| {
            name.rsplit_once('-').map_or(name, |(k, _)| k)
        });
        // A server thread that started during the window is counted from 0, one that ended is
        // lost (/proc forgets it): in the measured windows the sessions stay. Server threads are
        // `hb-<user>`…, and a user name may hold a `-`: the kind is up to the first one.
        let server_threads = per_thread_cores(&self.server_threads, &later.server_threads, |ns| {
            ns as f64 / 1e9 / wall
        });
        let server_by_kind = by_kind(&server_threads, |name| {
            name.split_once('-').map_or(name, |(k, _)| k)
        });
        let (busy0, total0) = self.machine;
        let (busy1, total1) = later.machine;
        let nproc = nproc();
        let machine_cores = if total1 > total0 {
            (busy1 - busy0) as f64 / (total1 - total0) as f64 * nproc as f64
        } else {
            0.0
        };
        CpuUsage {
            wall_s: wall,
            server_cores,
            server_sys_cores,
            bench_cores,
            bench_sys_cores,
            bench_busiest: busiest,
            bench_by_kind,
            server_by_kind,
            machine_cores,
            nproc,
        }
    }

    /// The server's sample at this moment.
    pub fn server(&self) -> Option<ProcSample> {
        self.server
    }
}

impl CpuUsage {
    /// The uncertainty of a per-process figure: /proc counts CPU time in clock ticks (10 ms), so
    /// each figure may be off by up to one tick over the window.
    pub fn resolution(&self) -> f64 {
        1.0 / ticks_per_second() / self.wall_s
    }

    /// Whether the load generator saturated a core: one of its threads, or the bench as a whole
    /// (beyond the measurement's resolution).
    pub fn bench_saturated(&self) -> bool {
        let r = self.resolution();
        self.bench_busiest.1 - r >= SATURATED || self.bench_cores - r >= SATURATED
    }

    /// Whether the machine as a whole had no idle CPU left.
    pub fn machine_saturated(&self) -> bool {
        self.machine_cores >= SATURATED * self.nproc as f64
    }

    /// CPU used by everything else on the machine (other engineers' builds, the kernel's
    /// softirq work is mostly charged to the processes themselves).
    pub fn others_cores(&self) -> f64 {
        (self.machine_cores - self.bench_cores - self.server_cores.unwrap_or(0.0)).max(0.0)
    }

    /// The server's CPU in threads of `kind` (see [`CpuUsage::server_by_kind`]), in cores: 0 when
    /// none of its threads is of that kind.
    pub fn server_kind_cores(&self, kind: &str) -> Option<f64> {
        // No threads seen (no server pid, or /proc unreadable): no figure, rather than 0.
        if self.server_cores.is_none() || self.server_by_kind.is_empty() {
            return None;
        }
        Some(
            self.server_by_kind
                .iter()
                .find(|(k, _)| k == kind)
                .map_or(0.0, |(_, c)| *c),
        )
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        let by_kind = |list: &[(String, f64)]| -> serde_json::Map<String, serde_json::Value> {
            list.iter()
                .filter(|(_, c)| *c >= 0.005)
                .map(|(k, c)| (k.clone(), json!(round3(*c))))
                .collect()
        };
        let kinds = by_kind(&self.bench_by_kind);
        json!({
            "wall_s": round3(self.wall_s),
            "server_cores": self.server_cores.map(round3),
            "server_sys_cores": self.server_sys_cores.map(round3),
            "bench_cores": round3(self.bench_cores),
            "bench_sys_cores": round3(self.bench_sys_cores),
            "bench_busiest_thread": self.bench_busiest.0,
            "bench_busiest_thread_cores": round3(self.bench_busiest.1),
            "bench_by_thread_kind": kinds,
            "server_by_thread_kind": by_kind(&self.server_by_kind),
            "machine_cores": round3(self.machine_cores),
            "others_cores": round3(self.others_cores()),
            "resolution_cores": round3(self.resolution()),
            "bench_saturated": self.bench_saturated(),
            "machine_saturated": self.machine_saturated(),
        })
    }

    /// One line for the human table.
    pub fn describe(&self) -> String {
        let server = self
            .server_cores
            .map_or("n/a".to_owned(), |c| format!("{:.0} %", c * 100.0));
        let mut s = format!(
            "server {server} · bench {:.0} % (busiest {} {:.0} %) · whole machine {:.0} % of {} cores",
            self.bench_cores * 100.0,
            self.bench_busiest.0,
            self.bench_busiest.1 * 100.0,
            self.machine_cores * 100.0,
            self.nproc
        );
        if self.resolution() > 0.02 {
            s.push_str(&format!(
                " (±{:.0} %: short window)",
                self.resolution() * 100.0
            ));
        }
        if self.bench_saturated() {
            s.push_str(" · LOAD GENERATOR SATURATED: rate is a lower bound");
        } else if self.machine_saturated() {
            s.push_str(" · machine saturated");
        }
        s
    }
}

/// What a mapping of `/proc/<pid>/smaps` holds, as [`rss_breakdown`] counts it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Mapping {
    Stack,
    SignalStack,
    Heap,
    File,
    OtherAnon,
}

/// Largest no-access mapping taken for a thread's guard page (glibc puts one page below every
/// thread stack). A malloc arena's unused reservation is a no-access mapping too, of megabytes,
/// and the next arena's used part may follow it: that is not a stack.
const MAX_GUARD: u64 = 64 * 1024;

/// Classifies the mapping `start..end` with `perms` and `name`, `guard` being the no-access
/// anonymous mapping right before it, if there is one (its start and end).
fn classify(start: u64, end: u64, perms: &str, name: &str, guard: Option<(u64, u64)>) -> Mapping {
    let below_guard = guard.is_some_and(|(g0, g1)| g1 == start && g1 - g0 <= MAX_GUARD);
    if name.starts_with('/') {
        Mapping::File
    } else if name.is_empty() && perms.starts_with("rw") && below_guard {
        // Thread stacks are large; Rust also gives every thread a small guarded alternate
        // signal stack (for stack-overflow reports).
        if end - start >= 64 * 1024 {
            Mapping::Stack
        } else {
            Mapping::SignalStack
        }
    } else if name == "[heap]" {
        Mapping::Heap
    } else {
        Mapping::OtherAnon
    }
}

/// Where a process's resident memory is (`/proc/<pid>/smaps`), in KiB: thread stacks (a
/// read-write anonymous mapping right above a no-access guard page; the stacks of exited threads
/// that glibc keeps for new ones included), the heap and other anonymous mappings (malloc's
/// per-thread arenas), and files (the binary, libraries).
pub fn rss_breakdown(pid: &str) -> Option<serde_json::Value> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps")).ok()?;
    let (mut stacks, mut stack_count, mut heap, mut anon, mut file) =
        (0u64, 0u64, 0u64, 0u64, 0u64);
    let mut sigstacks = 0u64;
    let mut kind = None;
    let mut guard: Option<(u64, u64)> = None;
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        let first = parts.next().unwrap_or("");
        if let Some((a, b)) = first.split_once('-')
            && let (Ok(start), Ok(end)) = (u64::from_str_radix(a, 16), u64::from_str_radix(b, 16))
        {
            let perms = parts.next().unwrap_or("");
            let name = parts.nth(3).unwrap_or("");
            let mapping = classify(start, end, perms, name, guard);
            if mapping == Mapping::Stack {
                stack_count += 1;
            }
            kind = Some(mapping);
            guard = (name.is_empty() && perms.starts_with("---")).then_some((start, end));
            continue;
        }
        if first == "Rss:" {
            let kib: u64 = parts.next().and_then(|v| v.parse().ok()).unwrap_or(0);
            match kind {
                Some(Mapping::Stack) => stacks += kib,
                Some(Mapping::OtherAnon) => anon += kib,
                Some(Mapping::File) => file += kib,
                Some(Mapping::Heap) => heap += kib,
                Some(Mapping::SignalStack) => sigstacks += kib,
                None => {}
            }
        }
    }
    Some(serde_json::json!({
        "thread_stacks_kib": stacks,
        "thread_stacks": stack_count,
        "signal_stacks_kib": sigstacks,
        "heap_kib": heap,
        "other_anon_kib": anon,
        "file_kib": file,
    }))
}

/// Machine-wide kernel memory that RSS does not show, in KiB: kernel stacks (one per thread),
/// unreclaimable slab (sockets, epoll, …) and TCP buffers. Deltas of these over a run with a quiet
/// machine are what the run's threads and connections cost the kernel (both ends: the bench's
/// sockets are counted too).
pub fn kernel_memory() -> serde_json::Value {
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let kib = |key: &str| -> u64 {
        meminfo
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|r| r.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let sockstat = std::fs::read_to_string("/proc/net/sockstat").unwrap_or_default();
    let tcp_pages: u64 = sockstat
        .lines()
        .find(|l| l.starts_with("TCP:"))
        .and_then(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            f.iter()
                .position(|&x| x == "mem")
                .and_then(|i| f.get(i + 1))
                .and_then(|v| v.parse().ok())
        })
        .unwrap_or(0);
    serde_json::json!({
        "kernel_stack_kib": kib("KernelStack:"),
        "slab_unreclaimable_kib": kib("SUnreclaim:"),
        "tcp_buffers_kib": tcp_pages * 4,
    })
}

/// How often [`RssPeak`] samples.
pub const RSS_EVERY: Duration = Duration::from_millis(10);

/// `VmRSS` and `VmHWM` (the peak since the start, or since [`reset_peak`]) of process `pid`
/// (`self` for this one), in KiB.
fn rss_and_hwm(pid: &str) -> Option<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |key: &str| -> Option<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(key))
            .and_then(|rest| rest.split_whitespace().next())
            .and_then(|v| v.parse().ok())
    };
    Some((kib("VmRSS:")?, kib("VmHWM:")?))
}

/// Sets the peak RSS the kernel keeps for process `pid` (`VmHWM`) back to its RSS now
/// (`/proc/<pid>/clear_refs`, proc(5)); whether that worked (a process of another user's: no).
pub fn reset_peak(pid: &str) -> bool {
    std::fs::write(format!("/proc/{pid}/clear_refs"), b"5").is_ok()
}

/// RSS figures of one process over a window, in KiB.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct RssWindow {
    /// RSS at the start.
    pub before_kib: u64,
    /// The largest RSS sampled (every [`RSS_EVERY`]).
    pub peak_kib: u64,
    /// RSS at the end.
    pub after_kib: u64,
    /// The kernel's own peak (`VmHWM`) over the window, when it could be reset at the start:
    /// exact, where sampling may miss a short spike.
    pub hwm_kib: Option<u64>,
}

impl RssWindow {
    /// The growth: the peak (the larger of sampled and kernel's) less the RSS at the start.
    pub fn growth_kib(&self) -> u64 {
        self.peak_kib
            .max(self.hwm_kib.unwrap_or(0))
            .saturating_sub(self.before_kib)
    }

    /// As JSON.
    pub fn to_json(&self) -> serde_json::Value {
        json!({
            "before_kib": self.before_kib,
            "peak_kib": self.peak_kib,
            "after_kib": self.after_kib,
            "kernel_peak_kib": self.hwm_kib,
            "growth_kib": self.growth_kib(),
        })
    }
}

/// One process's sampling state.
#[derive(Debug)]
struct Watched {
    pid: String,
    window: RssWindow,
    reset: bool,
}

impl Watched {
    fn start(pid: String) -> Option<Self> {
        let reset = reset_peak(&pid);
        let (rss, _) = rss_and_hwm(&pid)?;
        Some(Self {
            pid,
            window: RssWindow {
                before_kib: rss,
                peak_kib: rss,
                after_kib: rss,
                hwm_kib: None,
            },
            reset,
        })
    }

    fn sample(&mut self) {
        if let Some((rss, hwm)) = rss_and_hwm(&self.pid) {
            self.window.peak_kib = self.window.peak_kib.max(rss);
            self.window.after_kib = rss;
            if self.reset {
                self.window.hwm_kib = Some(hwm);
            }
        }
    }
}

/// The peak RSS of the server (when its pid is known) and of this process from
/// [`RssPeak::start`] to [`RssPeak::finish`], sampled every [`RSS_EVERY`] on a thread of its own
/// (`bc-rss`), and read from the kernel's own peak where it can be reset. A transfer's growth is
/// its peak less the RSS before it.
#[derive(Debug)]
pub struct RssPeak {
    stop: Option<mpsc::Sender<()>>,
    thread: Option<JoinHandle<(Option<RssWindow>, Option<RssWindow>)>>,
}

impl RssPeak {
    /// Takes the RSS now and starts sampling.
    pub fn start(server_pid: Option<u32>) -> Result<Self, BenchError> {
        let server = server_pid.and_then(|p| Watched::start(p.to_string()));
        let own = Watched::start("self".to_owned());
        let (stop, stopped) = mpsc::channel::<()>();
        let name = "bc-rss".to_owned();
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                let (mut server, mut own) = (server, own);
                // Until told (or the handle is gone), a sample each time the wait runs out.
                while let Err(mpsc::RecvTimeoutError::Timeout) = stopped.recv_timeout(RSS_EVERY) {
                    if let Some(s) = &mut server {
                        s.sample();
                    }
                    if let Some(s) = &mut own {
                        s.sample();
                    }
                }
                // One last sample at the end of the window.
                for s in [&mut server, &mut own].into_iter().flatten() {
                    s.sample();
                }
                thread_done();
                (server.map(|s| s.window), own.map(|s| s.window))
            })
            .map_err(|source| BenchError::Thread { name, source })?;
        Ok(Self {
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// Stops sampling: the server's window (`None` without its pid, or when /proc could not be
    /// read) and this process's.
    pub fn finish(mut self) -> Result<(Option<RssWindow>, Option<RssWindow>), BenchError> {
        self.stop.take();
        match self.thread.take() {
            Some(h) => h.join().map_err(|_| BenchError::Panicked("bc-rss".into())),
            None => Ok((None, None)),
        }
    }
}

impl Drop for RssPeak {
    fn drop(&mut self) {
        // Dropping the sender ends the thread's wait at once.
        self.stop.take();
        if let Some(h) = self.thread.take() {
            let _ = h.join();
        }
    }
}

/// Cores available.
pub fn nproc() -> usize {
    std::thread::available_parallelism().map_or(1, usize::from)
}

/// nproc, kernel, CPU model, load, descriptor limit.
pub fn machine() -> serde_json::Value {
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|s| s.trim().to_owned())
        .unwrap_or_default();
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find_map(|l| l.strip_prefix("model name"))
                .map(|rest| rest.trim_start_matches([' ', '\t', ':']).to_owned())
        })
        .unwrap_or_default();
    let nofile = rustix::process::getrlimit(rustix::process::Resource::Nofile).current;
    json!({
        "nproc": nproc(),
        "kernel": kernel,
        "cpu": cpu,
        "loadavg_1m": loadavg(),
        "nofile": nofile,
    })
}

/// Raises this process's open-file limit to its hard limit (children inherit it). Returns the
/// new soft limit.
pub fn raise_nofile() -> Option<u64> {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let _ = setrlimit(
        Resource::Nofile,
        Rlimit {
            current: lim.maximum,
            maximum: lim.maximum,
        },
    );
    getrlimit(Resource::Nofile).current
}

/// Makes the kernel size this process's descriptor table for `size` descriptors, by taking one
/// numbered just below it and closing it again (the table never shrinks).
pub fn grow_fd_table(size: u64) {
    use std::os::fd::AsRawFd;
    let Ok(file) = std::fs::File::open("/dev/null") else {
        return;
    };
    if let Ok(top) = i32::try_from(size.saturating_sub(1))
        && top > file.as_raw_fd()
    {
        let _ = rustix::io::fcntl_dupfd_cloexec(&file, top);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stacks_are_told_from_malloc_arenas() {
        const K: u64 = 1024;
        let page_guard = Some((100 * K, 104 * K));
        // A thread's stack above its one-page guard, and its small signal stack.
        assert_eq!(
            classify(104 * K, 364 * K, "rw-p", "", page_guard),
            Mapping::Stack
        );
        assert_eq!(
            classify(104 * K, 116 * K, "rw-p", "", page_guard),
            Mapping::SignalStack
        );
        // An arena's used part right after another arena's unused reservation (megabytes).
        let reservation = Some((0, 62 * K * K));
        assert_eq!(
            classify(62 * K * K, 64 * K * K, "rw-p", "", reservation),
            Mapping::OtherAnon
        );
        assert_eq!(classify(0, 4 * K, "rw-p", "", None), Mapping::OtherAnon);
        assert_eq!(classify(0, 4 * K, "rw-p", "[heap]", None), Mapping::Heap);
        assert_eq!(
            classify(0, 4 * K, "r-xp", "/usr/bin/gc-server", page_guard),
            Mapping::File
        );
    }

    #[test]
    fn reads_own_process() {
        let s = sample("self").expect("/proc/self");
        assert!(s.rss_kib > 0 && s.threads >= 1);
        assert!(!own_threads().is_empty());
        let a = CpuSnapshot::take(Some(std::process::id()));
        let mut x = 0u64;
        for i in 0..5_000_000u64 {
            x = x.wrapping_mul(31).wrapping_add(i);
        }
        std::hint::black_box(x);
        let u = a.until(&CpuSnapshot::take(Some(std::process::id())));
        assert!(u.server_cores.is_some());
    }

    #[test]
    fn rss_peak_sees_memory_touched_and_freed_within_the_window() {
        let peak = RssPeak::start(Some(std::process::id())).expect("sampler");
        // 32 MiB touched, held for a few samples, then freed again before the window ends.
        let block = vec![1u8; 32 << 20];
        std::hint::black_box(&block);
        std::thread::sleep(RSS_EVERY * 5);
        drop(block);
        let (server, own) = peak.finish().expect("joined");
        for w in [server.expect("by pid"), own.expect("self")] {
            assert!(w.growth_kib() >= 30 << 10, "{w:?}");
            assert!(w.peak_kib >= w.before_kib, "{w:?}");
        }
    }

    #[test]
    fn stat_with_spaces_in_the_name() {
        let (comm, f) = split_stat("12 (a b) c) S 1 2 3 4 5 6 7 8 9 10 11 12 13").expect("parse");
        assert_eq!(comm, "a b) c");
        assert_eq!(field(&f, 4), 1);
        assert_eq!(field(&f, 14), 11);
    }
}
