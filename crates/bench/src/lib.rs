//! gc-bench: a load generator for `gc-server`.
//!
//! Every run starts a fresh `gc-server` child process ([`server`]), signs in many in-process
//! clients ([`client`]), serves their heartbeat and delivery ports on a few epoll threads
//! ([`reactor`]), sends with pipelined senders ([`sender`]), and measures with /proc
//! ([`procfs`]). The workloads are in [`workloads`]; [`run`] is what the binary calls.

pub mod cli;
pub mod client;
pub mod error;
pub mod hist;
pub mod procfs;
pub mod reactor;
pub mod report;
pub mod sender;
pub mod server;
pub mod workloads;

use std::io::Write;
use std::net::IpAddr;
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use gc_protocol::SessionToken;
use serde_json::{Value, json};

use crate::cli::{Cli, CommonArgs, Workload};
use crate::client::{KeyCache, SignInArgs, SignInTiming, client_ip};
use crate::error::BenchError;
use crate::procfs::{CpuSnapshot, CpuUsage};
use crate::reactor::{IoReport, Reactor, ReactorConfig};
use crate::report::RunResult;
use crate::sender::{SenderJob, SenderReport};
use crate::server::{BenchAccounts, External, Server, ServerSpec};

pub use error::BenchError as Error;

/// Settings counters by every run of one invocation.
#[derive(Debug)]
pub struct Ctx {
    /// How to get a server.
    pub spec: ServerSpec,
    /// `bc-io-*` threads.
    pub io_threads: usize,
    /// Bound of one run.
    pub timeout: Duration,
    /// Second octet of client addresses.
    pub ip_base: u8,
    /// The bench accounts.
    pub accounts: BenchAccounts,
    /// Machine description.
    pub machine: Value,
    /// Server version and build.
    pub server_info: Value,
}

impl Ctx {
    /// Resolves the common options.
    pub fn new(c: &CommonArgs) -> Result<Self, BenchError> {
        let bin = match &c.server_bin {
            Some(p) => p.clone(),
            None => std::env::current_exe()
                .ok()
                .and_then(|p| p.parent().map(|d| d.join("gc-server")))
                .unwrap_or_else(|| PathBuf::from("gc-server")),
        };
        let external = match c.server {
            Some(ip) => {
                let ports: Vec<u16> = c
                    .server_ports
                    .split(',')
                    .map(|p| p.trim().parse())
                    .collect::<Result<_, _>>()
                    .map_err(|_| BenchError::Invalid("--server-ports takes C,A,S".into()))?;
                let [a, b, d] = ports[..] else {
                    return Err(BenchError::Invalid("--server-ports takes C,A,S".into()));
                };
                Some(External {
                    ip,
                    ports: [a, b, d],
                    pid: c.server_pid,
                    data_dir: c.server_data_dir.clone(),
                })
            }
            None => None,
        };
        if c.io_threads == 0 || c.io_threads > 64 {
            return Err(BenchError::Invalid("--io-threads must be 1 to 64".into()));
        }
        if c.runs == 0 || c.runs > 20 {
            return Err(BenchError::Invalid("--runs must be 1 to 20".into()));
        }
        if !(5..=600).contains(&c.timeout) {
            return Err(BenchError::Invalid("--timeout must be 5 to 600 s".into()));
        }
        let spec = ServerSpec {
            bin,
            external,
            fsync: c.fsync.as_str().to_owned(),
            heartbeat_ms: c.heartbeat_ms,
            extra_args: c.server_args.clone(),
            data_parent: c.data_parent.clone(),
        };
        let nofile = procfs::raise_nofile();
        let git = std::process::Command::new("git")
            .args(["describe", "--always", "--dirty"])
            .output()
            .ok()
            .filter(|o| o.status.success())
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
        let mut machine = procfs::machine();
        machine["nofile"] = json!(nofile);
        let server_info = json!({
            "version": spec.version(),
            "git": git,
            "mode": if spec.external.is_some() { "external" } else { "child process" },
            "fsync": spec.fsync,
            "heartbeat_ms": spec.heartbeat_ms,
            "extra_args": spec.extra_args,
        });
        Ok(Self {
            spec,
            io_threads: c.io_threads,
            timeout: Duration::from_secs(c.timeout),
            ip_base: c.ip_base,
            accounts: BenchAccounts::new(gc_protocol::limits::MIN_SCRAM_ITERATIONS),
            machine,
            server_info,
        })
    }

    /// The address of client `slot`.
    pub fn ip(&self, slot: usize) -> IpAddr {
        client_ip(self.ip_base, slot)
    }

    /// Checks that `clients` clients fit in the descriptor limit (bench and server share it),
    /// and sizes this process's descriptor table for them up front: growing it while clients
    /// sign in would stall the sign-in that crosses each power of two (an RCU grace period in a
    /// multi-threaded process) and show up as the bench's own latency.
    pub fn check_fds(&self, clients: usize) -> Result<(), BenchError> {
        let limit = rustix::process::getrlimit(rustix::process::Resource::Nofile)
            .current
            .unwrap_or(u64::MAX);
        // Bench: 2 listeners + up to 2 connections per client. Server: about 6 per client.
        let need = (clients as u64) * 6 + 200;
        if need > limit {
            return Err(BenchError::Invalid(format!(
                "{clients} clients need about {need} file descriptors per process, the limit is \
                 {limit}: raise it first (e.g. `ulimit -n 65536`)"
            )));
        }
        procfs::grow_fd_table(need);
        Ok(())
    }
}

/// A session the run holds.
#[derive(Debug, Clone)]
pub struct Held {
    /// Its address.
    pub ip: IpAddr,
    /// Its token.
    pub token: SessionToken,
    /// Newest id at sign-in.
    pub latest_id: u64,
}

/// Sign-ins of one batch.
#[derive(Debug)]
pub struct SignIns {
    /// Per sign-in, in completion order.
    pub timings: Vec<SignInTiming>,
    /// From the first start to the last `Ok`.
    pub wall: Duration,
    /// CPU over that time.
    pub cpu: CpuUsage,
}

/// One run: a server, the io threads, the held sessions.
#[derive(Debug)]
pub struct Run<'a> {
    /// The invocation's settings.
    pub ctx: &'a Ctx,
    /// The server.
    pub server: Server,
    /// The io threads.
    pub reactor: Option<Reactor>,
    /// Send times count from here.
    pub epoch: Instant,
    /// This run's body tag.
    pub tag: String,
    /// The run gives up at this instant.
    pub deadline: Instant,
    /// Sessions by slot.
    pub held: Arc<Mutex<Vec<Option<Held>>>>,
}

impl<'a> Run<'a> {
    /// Starts a server with `accounts` accounts and io threads for `slots` clients.
    pub fn start(
        ctx: &'a Ctx,
        accounts: usize,
        slots: usize,
        sink: bool,
    ) -> Result<Self, BenchError> {
        ctx.check_fds(slots)?;
        let server = Server::start(&ctx.spec, &ctx.accounts, accounts, ctx.ip(slots))?;
        let epoch = Instant::now();
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos());
        let tag = format!("gcb{:06x}", (nanos ^ std::process::id()) & 0xff_ffff);
        let reactor = Reactor::start(&ReactorConfig {
            threads: ctx.io_threads,
            slots,
            epoch,
            tag: tag.clone(),
            sink,
        })?;
        Ok(Self {
            ctx,
            server,
            reactor: Some(reactor),
            epoch,
            tag,
            deadline: epoch + ctx.timeout,
            held: Arc::new(Mutex::new(vec![None; slots])),
        })
    }

    /// The io threads' counters counters.
    pub fn counters(&self) -> Arc<reactor::Counters> {
        match &self.reactor {
            Some(r) => Arc::clone(&r.counters),
            None => unreachable!("the reactor lives as long as the run"),
        }
    }

    /// Time left before the run's deadline.
    pub fn left(&self) -> Duration {
        self.deadline.saturating_duration_since(Instant::now())
    }

    /// A CPU snapshot including the server.
    pub fn snapshot(&self) -> CpuSnapshot {
        CpuSnapshot::take(self.server.pid)
    }

    /// Signs in clients `slots` (account `account(slot)`), at most `concurrency` at a time, and
    /// hands each to the io threads.
    pub fn sign_in(
        &self,
        slots: Range<usize>,
        account: fn(usize, usize) -> usize,
        n: usize,
        concurrency: usize,
        keys: Option<&KeyCache>,
    ) -> Result<SignIns, BenchError> {
        let reactor = self.reactor.as_ref().map_or_else(
            || Err(BenchError::Invalid("run already finished".into())),
            Ok,
        )?;
        let next = AtomicUsize::new(slots.start);
        let failed = AtomicBool::new(false);
        let timings = Mutex::new(Vec::with_capacity(slots.len()));
        let first_error: Mutex<Option<BenchError>> = Mutex::new(None);
        let args = SignInArgs {
            addrs: &self.server.addrs,
            accounts: &self.ctx.accounts,
            keys,
            min_iterations: gc_protocol::limits::MIN_SCRAM_ITERATIONS,
        };
        let before = self.snapshot();
        let t0 = Instant::now();
        let deadline = self.deadline;
        thread::scope(|scope| -> Result<(), BenchError> {
            let mut handles = Vec::new();
            for k in 0..concurrency.max(1).min(slots.len().max(1)) {
                let name = format!("bc-login-{k}");
                let (next, failed, timings, first_error) = (&next, &failed, &timings, &first_error);
                let end = slots.end;
                let h = thread::Builder::new()
                    .name(name.clone())
                    .spawn_scoped(scope, move || {
                        loop {
                            let slot = next.fetch_add(1, Ordering::Relaxed);
                            if slot >= end || failed.load(Ordering::Relaxed) {
                                procfs::thread_done();
                                return;
                            }
                            if Instant::now() >= deadline {
                                failed.store(true, Ordering::Relaxed);
                                lock(first_error).get_or_insert(BenchError::Timeout {
                                    what: "sign-ins".into(),
                                    after: self.ctx.timeout,
                                });
                                return;
                            }
                            let ip = self.ctx.ip(slot);
                            match client::sign_in(args, slot, ip, account(slot, n)) {
                                Ok(session) => {
                                    lock(timings).push(session.timing);
                                    lock(&self.held)[slot] = Some(Held {
                                        ip,
                                        token: session.token.clone(),
                                        latest_id: session.latest_id,
                                    });
                                    reactor.add(session);
                                }
                                Err(e) => {
                                    failed.store(true, Ordering::Relaxed);
                                    lock(first_error).get_or_insert(e);
                                    return;
                                }
                            }
                        }
                    })
                    .map_err(|source| BenchError::Thread { name, source })?;
                handles.push(h);
            }
            for h in handles {
                let name = h.thread().name().unwrap_or("bc-login").to_owned();
                h.join().map_err(|_| BenchError::Panicked(name))?;
            }
            Ok(())
        })?;
        let wall = t0.elapsed();
        let cpu = before.until(&self.snapshot());
        if let Some(e) = lock(&first_error).take() {
            return Err(e);
        }
        Ok(SignIns {
            timings: lock(&timings).clone(),
            wall,
            cpu,
        })
    }

    /// The held session of `slot`.
    pub fn held(&self, slot: usize) -> Option<Held> {
        lock(&self.held).get(slot).cloned().flatten()
    }

    /// The highest `latest_id` among the held sessions (the run's starting id).
    pub fn base_id(&self) -> u64 {
        lock(&self.held)
            .iter()
            .flatten()
            .map(|h| h.latest_id)
            .max()
            .unwrap_or(0)
    }

    /// Waits until every client of `slots` answered a heartbeat.
    pub fn wait_pinged(&self, slots: &[usize], timeout: Duration) -> Result<(), BenchError> {
        let counters = self.counters();
        let timeout = timeout.min(self.left());
        if reactor::wait_for(timeout, || counters.unpinged(slots) == 0) {
            Ok(())
        } else {
            Err(BenchError::Timeout {
                what: format!(
                    "a first heartbeat to every client ({} of {} still waiting)",
                    counters.unpinged(slots),
                    slots.len()
                ),
                after: timeout,
            })
        }
    }

    /// Runs sender jobs, one thread each (`bc-send-<i>`), and returns their reports.
    pub fn send(&self, jobs: Vec<SenderJob>) -> Result<Vec<SenderReport>, BenchError> {
        thread::scope(|scope| {
            let mut handles = Vec::new();
            for job in jobs {
                let name = format!("bc-send-{}", job.index);
                let h = thread::Builder::new()
                    .name(name.clone())
                    .spawn_scoped(scope, move || {
                        let r = sender::run(&job);
                        procfs::thread_done();
                        r
                    })
                    .map_err(|source| BenchError::Thread { name, source })?;
                handles.push(h);
            }
            let mut out = Vec::new();
            let mut first_err = None;
            for h in handles {
                let name = h.thread().name().unwrap_or("bc-send").to_owned();
                match h.join() {
                    Ok(Ok(r)) => out.push(r),
                    Ok(Err(e)) => {
                        first_err.get_or_insert(e);
                    }
                    Err(_) => {
                        first_err.get_or_insert(BenchError::Panicked(name));
                    }
                }
            }
            match first_err {
                Some(e) => Err(e),
                None => Ok(out),
            }
        })
    }

    /// A sender job for the client in `slot`.
    pub fn job(
        &self,
        slot: usize,
        index: usize,
        body_bytes: usize,
        window: usize,
        pace: sender::Pace,
    ) -> Result<SenderJob, BenchError> {
        let held = self
            .held(slot)
            .ok_or_else(|| BenchError::Invalid(format!("client {slot} is not signed in")))?;
        Ok(SenderJob {
            addrs: self.server.addrs,
            index,
            ip: held.ip,
            token: held.token,
            tag: self.tag.clone(),
            epoch: self.epoch,
            body_bytes,
            window,
            pace,
            deadline: self.deadline,
        })
    }

    /// Waits until every client of `slots` holds `id`; returns how long it took, or `None`.
    pub fn wait_delivered(&self, slots: &[usize], id: u64, timeout: Duration) -> Option<Duration> {
        let counters = self.counters();
        let t0 = Instant::now();
        reactor::wait_for(timeout.min(self.left()), || counters.behind(slots, id) == 0)
            .then(|| t0.elapsed())
    }

    /// Ends the sessions of `slots` with `Bye`, `concurrency` at a time, then waits (up to 2 s)
    /// for the server to close its connections to them when every held session has ended.
    /// Returns how many failed.
    pub fn bye(&self, slots: Range<usize>, concurrency: usize) -> usize {
        let failed = self.bye_inner(slots, concurrency);
        if lock(&self.held).iter().all(Option::is_none) {
            // The server answers `Bye` just before it ends the session; closing our listeners at
            // once could make a heartbeat in flight fail and be logged as missed.
            let counters = self.counters();
            reactor::wait_for(Duration::from_secs(2), || {
                counters.open_conns.load(Ordering::Acquire) <= 0
            });
        }
        failed
    }

    fn bye_inner(&self, slots: Range<usize>, concurrency: usize) -> usize {
        let next = AtomicUsize::new(slots.start);
        let failures = AtomicUsize::new(0);
        thread::scope(|scope| {
            for k in 0..concurrency.max(1) {
                let (next, failures) = (&next, &failures);
                let end = slots.end;
                let spawned = thread::Builder::new()
                    .name(format!("bc-bye-{k}"))
                    .spawn_scoped(scope, move || {
                        loop {
                            let slot = next.fetch_add(1, Ordering::Relaxed);
                            if slot >= end {
                                procfs::thread_done();
                                return;
                            }
                            if let Some(h) = self.held(slot) {
                                if client::bye(&self.server.addrs, h.ip, &h.token).is_err() {
                                    failures.fetch_add(1, Ordering::Relaxed);
                                }
                                lock(&self.held)[slot] = None;
                            }
                        }
                    });
                if spawned.is_err() {
                    failures.fetch_add(1, Ordering::Relaxed);
                }
            }
        });
        failures.into_inner()
    }

    /// Stops the io threads and the server; returns what the clients saw and the server's
    /// warnings/errors.
    pub fn finish(mut self) -> Result<(IoReport, Value), BenchError> {
        let io = match self.reactor.take() {
            Some(r) => r.stop()?,
            None => IoReport::default(),
        };
        self.server.stop();
        let (warnings, errors, first) = self.server.problems();
        let mut problems = json!({
            "server_pid": self.server.pid.map(|p| p.to_string()),
            "server_warnings": warnings,
            "server_errors": errors,
            "client_protocol_errors": io.problems.len(),
        });
        if !first.is_empty() {
            problems["server_first_problems"] = json!(first);
        }
        if !io.problems.is_empty() {
            problems["client_first_problems"] = json!(io.problems);
        }
        Ok((io, problems))
    }
}

/// Locks a mutex, ignoring poisoning (a panicked thread is reported on join).
pub fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

/// Runs the workload of `cli` `--runs` times, writing tables and JSON lines to `out`.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), BenchError> {
    let ctx = Ctx::new(&cli.common)?;
    let runs = cli.common.runs;
    let name = match &cli.workload {
        Workload::Connect(_) => "connect",
        Workload::Ingest(_) => "ingest",
        Workload::Fanout(_) => "fanout",
        Workload::Idle(_) => "idle",
        Workload::Memory(_) => "memory",
    };
    let mut all = Vec::new();
    for r in 1..=runs {
        let mut machine = ctx.machine.clone();
        machine["loadavg_1m_before"] = json!(procfs::loadavg());
        let outcome: RunResult = match &cli.workload {
            Workload::Connect(a) => workloads::connect(&ctx, a)?,
            Workload::Ingest(a) => workloads::ingest(&ctx, a)?,
            Workload::Fanout(a) => workloads::fanout(&ctx, a)?,
            Workload::Idle(a) => workloads::idle(&ctx, a)?,
            Workload::Memory(a) => workloads::memory(&ctx, a)?,
        };
        if !cli.common.json_only {
            report::write_table(
                out,
                &format!("gc-bench {name} — run {r} of {runs}"),
                &outcome.table,
            )?;
        }
        report::write_json(
            out,
            &json!({
                "gc_bench": env!("CARGO_PKG_VERSION"),
                "workload": name,
                "run": r,
                "runs": runs,
                "params": outcome.params,
                "machine": machine,
                "server": ctx.server_info,
                "results": outcome.results,
            }),
        )?;
        let _ = out.flush();
        all.push(outcome);
    }
    if runs > 1 {
        let results: Vec<Value> = all.iter().map(|o| o.results.clone()).collect();
        let med = report::medians(&results);
        if !cli.common.json_only {
            let rows: Vec<(String, String)> = all[0]
                .headline
                .iter()
                .map(|path| {
                    let each: Vec<String> = results
                        .iter()
                        .map(|r| report::num(report::at(r, path)))
                        .collect();
                    (
                        path.clone(),
                        format!(
                            "{}   (runs: {})",
                            report::num(report::at(&med, path)),
                            each.join(", ")
                        ),
                    )
                })
                .collect();
            report::write_table(
                out,
                &format!("gc-bench {name} — median of {runs} runs"),
                &rows,
            )?;
        }
        report::write_json(
            out,
            &json!({
                "gc_bench": env!("CARGO_PKG_VERSION"),
                "workload": name,
                "summary": "median",
                "runs": runs,
                "params": all[0].params,
                "machine": ctx.machine,
                "server": ctx.server_info,
                "results": med,
            }),
        )?;
    }
    Ok(())
}
