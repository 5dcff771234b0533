//! gc-bench: a load generator for `gc-server`.
//!
//! Every run starts a fresh `gc-server` child process ([`server`]), signs in many in-process
//! clients ([`client`]), serves their heartbeat and delivery ports on a few epoll threads
//! ([`reactor`]), sends with pipelined senders ([`sender`]), and measures with /proc
//! ([`procfs`]). Its clients speak plain GC/1 or GC/2 over TLS ([`wire`]); by default each run
//! goes once each way and the report puts the two side by side. With rooms ([`rooms`]) they are
//! GC/3 sessions spread over rooms of equal size. The workloads are in
//! [`workloads`]; [`run`] is what the binary calls.

pub mod cli;
pub mod client;
pub mod error;
pub mod hist;
pub mod pg;
pub mod procfs;
pub mod reactor;
pub mod report;
pub mod rooms;
pub mod scrape;
pub mod sender;
pub mod server;
pub mod wire;
pub mod workloads;

use std::io::Write;
use std::net::{IpAddr, Ipv4Addr};
use std::ops::Range;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use gc_protocol::SessionToken;
use serde_json::{Value, json};

use crate::cli::{Cli, CommonArgs, StoreChoice, StoreKind, Workload};
use crate::client::{KeyCache, SignInArgs, SignInTiming, client_ip};
use crate::error::BenchError;
use crate::pg::PgCluster;
use crate::procfs::{CpuSnapshot, CpuUsage};
use crate::reactor::{IoReport, Reactor, ReactorConfig};
use crate::report::RunResult;
use crate::rooms::RoomPlan;
use crate::sender::{SenderJob, SenderReport};
use crate::server::{BenchAccounts, External, Server, ServerSpec};
use crate::wire::{ClientTls, Mode, Wire};

pub use error::BenchError as Error;

/// Settings counters by every run of one invocation.
#[derive(Debug, Clone)]
pub struct Ctx {
    /// How to get a server.
    pub spec: ServerSpec,
    /// The protocols each run goes through, in order.
    pub modes: &'static [Mode],
    /// The stores each run goes on, in order.
    pub stores: &'static [StoreKind],
    /// The PostgreSQL cluster of `--postgres`.
    pub postgres: Option<PgCluster>,
    /// The clients' TLS setup and callback identity, when a mode is TLS.
    pub client_tls: Option<Arc<ClientTls>>,
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
                    fingerprint: c.server_fingerprint,
                })
            }
            None => None,
        };
        let modes = c.tls.modes();
        let tls = modes.iter().any(|m| m.is_tls());
        if tls && c.server.is_some() && c.server_fingerprint.is_none() {
            return Err(BenchError::Invalid(
                "TLS runs against --server pin its certificate: pass --server-fingerprint \
                 (`gc-server tls fingerprint` prints it), or --tls off"
                    .into(),
            ));
        }
        if c.io_threads == 0 || c.io_threads > 64 {
            return Err(BenchError::Invalid("--io-threads must be 1 to 64".into()));
        }
        if c.runs == 0 || c.runs > 20 {
            return Err(BenchError::Invalid("--runs must be 1 to 20".into()));
        }
        if !(5..=600).contains(&c.timeout) {
            return Err(BenchError::Invalid("--timeout must be 5 to 600 s".into()));
        }
        let postgres = c.postgres.as_deref().map(PgCluster::new).transpose()?;
        let store = c.store.unwrap_or(if postgres.is_some() {
            StoreChoice::Both
        } else {
            StoreChoice::Flat
        });
        let stores = store.stores();
        if stores.contains(&StoreKind::Postgres) {
            if postgres.is_none() {
                return Err(BenchError::Invalid(
                    "--store postgres or both needs --postgres URL (or GC_BENCH_POSTGRES):                      `source .ci/postgres && GC_PG_FSYNC=on gc_pg_start` starts a private                      cluster and exports its URL as GC_TEST_POSTGRES"
                        .into(),
                ));
            }
            if external.is_some() {
                return Err(BenchError::Invalid(
                    "--store postgres starts its servers; against --server use --store flat                      (the external server keeps whatever store it was started with)"
                        .into(),
                ));
            }
        }
        let spec = ServerSpec {
            bin,
            external,
            fsync: c.fsync.as_str().to_owned(),
            heartbeat_ms: c.heartbeat_ms,
            extra_args: c.server_args.clone(),
            data_parent: c.data_parent.clone(),
            postgres: None,
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
        let pg_settings = match &postgres {
            Some(cluster) => cluster.settings()?,
            None => Value::Null,
        };
        let server_info = json!({
            "version": spec.version(),
            "git": git,
            "mode": if spec.external.is_some() { "external" } else { "child process" },
            "fsync": spec.fsync,
            "heartbeat_ms": spec.heartbeat_ms,
            "extra_args": spec.extra_args,
            "tls_modes": modes.iter().map(|m| m.server_tls()).collect::<Vec<_>>(),
            "stores": stores.iter().map(|s| s.key()).collect::<Vec<_>>(),
            "postgres": pg_settings,
        });
        let client_tls = if tls {
            Some(Arc::new(ClientTls::new()?))
        } else {
            None
        };
        Ok(Self {
            spec,
            modes,
            stores,
            postgres,
            client_tls,
            io_threads: c.io_threads,
            timeout: Duration::from_secs(c.timeout),
            ip_base: c.ip_base,
            accounts: BenchAccounts::new(gc_protocol::limits::MIN_SCRAM_ITERATIONS),
            machine,
            server_info,
        })
    }

    /// The same settings for runs on `store`.
    pub fn on(&self, store: StoreKind) -> Self {
        let mut ctx = self.clone();
        ctx.spec.postgres = match store {
            StoreKind::Flat => None,
            StoreKind::Postgres => self.postgres.clone(),
        };
        ctx
    }

    /// Whether runs of this context are on PostgreSQL.
    pub fn on_postgres(&self) -> bool {
        self.spec.postgres.is_some()
    }

    /// How clients reach `server` in `mode`.
    fn wire(&self, mode: Mode, server: &Server) -> Result<Wire, BenchError> {
        match (mode, &self.client_tls, server.fingerprint) {
            (Mode::Plain, _, _) => Ok(Wire::plain()),
            (Mode::Tls, Some(client), Some(server)) => Ok(Wire::tls(Arc::clone(client), server)),
            (Mode::Tls, _, _) => Err(BenchError::Invalid(
                "a TLS run without the server's certificate or the clients' identity".into(),
            )),
        }
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
    /// The server (instance A of a pair).
    pub server: Server,
    /// Instance B of a pair ([`Run::start_pair`]): the same service on the same database.
    pub other: Option<Server>,
    /// Clients from this slot on are on instance B (`usize::MAX`: one instance).
    pub split: usize,
    /// How the clients reach it.
    pub wire: Wire,
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
    /// Which room each client is in, and whether its session is a GC/3 one.
    pub rooms: RoomPlan,
}

impl<'a> Run<'a> {
    /// Starts a server for `mode` with `accounts` accounts, and io threads for `slots` clients,
    /// all in `#general` (GC/1 sessions).
    pub fn start(
        ctx: &'a Ctx,
        mode: Mode,
        accounts: usize,
        slots: usize,
        sink: bool,
    ) -> Result<Self, BenchError> {
        Self::start_in(ctx, mode, accounts, slots, sink, RoomPlan::GENERAL)
    }

    /// [`Run::start`] for clients placed in rooms as `rooms` says (with rooms: GC/3 sessions,
    /// which [`rooms::set_up`] puts in their rooms once signed in).
    pub fn start_in(
        ctx: &'a Ctx,
        mode: Mode,
        accounts: usize,
        slots: usize,
        sink: bool,
        rooms: RoomPlan,
    ) -> Result<Self, BenchError> {
        ctx.check_fds(slots)?;
        let server = Server::start(&ctx.spec, mode, &ctx.accounts, accounts)?;
        Self::with_servers(
            ctx,
            mode,
            (server, None),
            (accounts, slots),
            usize::MAX,
            sink,
            rooms,
        )
    }

    /// Two instances of one service on one PostgreSQL database: A on 127.0.0.1, B on
    /// 127.0.0.2 with A's TLS identity (one service, one certificate to pin); clients
    /// `0..split` on A, `split..slots` on B, all in `#general`.
    pub fn start_pair(
        ctx: &'a Ctx,
        mode: Mode,
        accounts: usize,
        slots: usize,
        split: usize,
    ) -> Result<Self, BenchError> {
        if !ctx.on_postgres() {
            return Err(BenchError::Invalid(
                "two instances of one service share a PostgreSQL database: give --postgres URL"
                    .into(),
            ));
        }
        ctx.check_fds(slots)?;
        let a = Server::start(&ctx.spec, mode, &ctx.accounts, accounts)?;
        let mut spec = ctx.spec.clone();
        if let Some(dir) = &a.data_dir {
            let identity = dir.join(gc_net::identity::IDENTITY_DIR);
            spec.extra_args.extend([
                "--tls-cert".to_owned(),
                identity
                    .join(gc_net::identity::CERT_FILE)
                    .display()
                    .to_string(),
                "--tls-key".to_owned(),
                identity
                    .join(gc_net::identity::KEY_FILE)
                    .display()
                    .to_string(),
            ]);
        }
        let b = Server::start_on(
            &spec,
            mode,
            &ctx.accounts,
            accounts,
            Ipv4Addr::new(127, 0, 0, 2).into(),
            a.db.clone(),
        )?;
        Self::with_servers(
            ctx,
            mode,
            (a, Some(b)),
            (accounts, slots),
            split,
            false,
            RoomPlan::GENERAL,
        )
    }

    fn with_servers(
        ctx: &'a Ctx,
        mode: Mode,
        (server, other): (Server, Option<Server>),
        (accounts, slots): (usize, usize),
        split: usize,
        sink: bool,
        rooms: RoomPlan,
    ) -> Result<Self, BenchError> {
        let wire = ctx.wire(mode, &server)?;
        if server.is_external() {
            ctx.accounts
                .register(&server.addrs, &wire, ctx.ip(slots), accounts)?;
        }
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
            wire: wire.clone(),
            rooms,
            split,
        })?;
        Ok(Self {
            ctx,
            server,
            other,
            split,
            wire,
            reactor: Some(reactor),
            epoch,
            tag,
            deadline: epoch + ctx.timeout,
            held: Arc::new(Mutex::new(vec![None; slots])),
            rooms,
        })
    }

    /// The instance client `slot` is on.
    pub fn server_of(&self, slot: usize) -> &Server {
        match &self.other {
            Some(b) if slot >= self.split => b,
            _ => &self.server,
        }
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
        if slots.start < self.split && slots.end > self.split {
            return Err(BenchError::Invalid(
                "one batch of sign-ins goes to one instance".into(),
            ));
        }
        let next = AtomicUsize::new(slots.start);
        let failed = AtomicBool::new(false);
        let timings = Mutex::new(Vec::with_capacity(slots.len()));
        let first_error: Mutex<Option<BenchError>> = Mutex::new(None);
        let args = SignInArgs {
            addrs: &self.server_of(slots.start).addrs,
            wire: &self.wire,
            accounts: &self.ctx.accounts,
            keys,
            min_iterations: gc_protocol::limits::MIN_SCRAM_ITERATIONS,
            rooms: self.rooms.gc3(),
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

    /// A sender job for the client in `slot`, posting into its room.
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
            addrs: self.server_of(slot).addrs,
            wire: self.wire.clone(),
            index,
            ip: held.ip,
            token: held.token,
            tag: self.tag.clone(),
            epoch: self.epoch,
            body_bytes,
            window,
            pace,
            room: self.rooms.msg_room(self.rooms.room_of(slot)),
            deadline: self.deadline,
        })
    }

    /// Sends one untimed message into `#general` (every account's room) from `slots[0]` and waits
    /// until every client of `slots` holds it:
    /// after that each has its delivery connection (over TLS: handshaken), so what is timed next
    /// is the steady state. Returns the message's id and how long it took to reach everyone.
    pub fn warm_up(&self, slots: &[usize]) -> Result<(u64, Duration), BenchError> {
        let Some(&first) = slots.first() else {
            return Ok((self.base_id(), Duration::ZERO));
        };
        let mut job = self.job(first, 0, 32, 1, sender::Pace::Count(1))?;
        // Not this run's tag: the receivers do not time it.
        job.tag = "warm-up".into();
        job.room = None;
        let t0 = Instant::now();
        let sent = self.send(vec![job])?;
        let id = sent
            .first()
            .and_then(|r| r.ids.first().copied())
            .ok_or_else(|| BenchError::Refused {
                what: "the warm-up message".into(),
                answer: sent
                    .first()
                    .and_then(|r| r.first_error.clone())
                    .unwrap_or_else(|| "no Thx".into()),
            })?;
        let timeout = Duration::from_secs(20);
        self.wait_delivered(slots, id, timeout)
            .map(|_| (id, t0.elapsed()))
            .ok_or_else(|| BenchError::Timeout {
                what: format!(
                    "the warm-up message to reach every client ({} of {} still waiting)",
                    self.counters().behind(slots, id),
                    slots.len()
                ),
                after: timeout.min(self.left()),
            })
    }

    /// Waits until every client of `slots` holds `id`; returns how long it took, or `None`.
    pub fn wait_delivered(&self, slots: &[usize], id: u64, timeout: Duration) -> Option<Duration> {
        let counters = self.counters();
        let t0 = Instant::now();
        reactor::wait_for(timeout.min(self.left()), || counters.behind(slots, id) == 0)
            .then(|| t0.elapsed())
    }

    /// Waits until every `(slot, id)` of `targets` holds its `id`; how long it took, or `None`.
    pub fn wait_delivered_each(
        &self,
        targets: &[(usize, u64)],
        timeout: Duration,
    ) -> Option<Duration> {
        let counters = self.counters();
        let t0 = Instant::now();
        reactor::wait_for(timeout.min(self.left()), || {
            counters.behind_each(targets) == 0
        })
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
                                let addrs = &self.server_of(slot).addrs;
                                if client::bye(addrs, &self.wire, h.ip, &h.token).is_err() {
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
        let (mut warnings, mut errors, mut first) = self.server.problems();
        if let Some(b) = &mut self.other {
            b.stop();
            let (w, e, f) = b.problems();
            warnings += w;
            errors += e;
            first.extend(f.into_iter().map(|l| format!("instance B: {l}")));
        }
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

/// Runs the workload of `cli` `--runs` times on each store of `--store` and in each mode of
/// `--tls` (flat files, then PostgreSQL; plain, then TLS; run after run), writing tables and
/// JSON lines to `out`: one per run and variant, the medians per variant with `--runs` above 1,
/// and with two stores (else two modes) the headline figures side by side.
pub fn run(cli: &Cli, out: &mut dyn Write) -> Result<(), BenchError> {
    let mut ctx = Ctx::new(&cli.common)?;
    if matches!(cli.workload, Workload::Instances(_)) {
        // Two instances share one database: there is no flat-file counterpart.
        if ctx.postgres.is_none() {
            return Err(BenchError::Invalid(
                "instances runs two gc-server instances on one PostgreSQL database: give \
                 --postgres URL (or GC_BENCH_POSTGRES)"
                    .into(),
            ));
        }
        ctx.stores = &[StoreKind::Postgres];
    }
    let runs = cli.common.runs;
    let tables = !cli.common.json_only;
    let name = cli.workload.name();
    let line = |extra: Value| {
        let mut v = json!({
            "gc_bench": env!("CARGO_PKG_VERSION"),
            "workload": name,
            "runs": runs,
            "server": ctx.server_info,
        });
        if let (Some(v), Value::Object(extra)) = (v.as_object_mut(), extra) {
            v.extend(extra);
        }
        v
    };
    let variants: Vec<(StoreKind, Mode)> = ctx
        .stores
        .iter()
        .flat_map(|&s| ctx.modes.iter().map(move |&m| (s, m)))
        .collect();
    let several_stores = ctx.stores.len() > 1;
    let label = |(store, mode): (StoreKind, Mode)| {
        if several_stores || store == StoreKind::Postgres {
            format!("{} on {}", mode.name(), store.name())
        } else {
            mode.name().to_owned()
        }
    };
    let mut all: Vec<((StoreKind, Mode), RunResult)> = Vec::new();
    for r in 1..=runs {
        for &(store, mode) in &variants {
            let mut machine = ctx.machine.clone();
            machine["loadavg_1m_before"] = json!(procfs::loadavg());
            let scraper = cli.common.scrape.map(scrape::Scraper::start).transpose()?;
            let mut outcome = workloads::run(&ctx.on(store), mode, &cli.workload)?;
            if let Some(scraper) = scraper
                && let Value::Object(results) = &mut outcome.results
            {
                results.insert("scrapes".into(), scraper.finish());
            }
            if tables {
                let title = format!(
                    "gc-bench {name}, {} — run {r} of {runs}",
                    label((store, mode))
                );
                report::write_table(out, &title, &outcome.table)?;
            }
            report::write_json(
                out,
                &line(json!({
                    "tls": mode.is_tls(),
                    "store": store.key(),
                    "run": r,
                    "params": outcome.params,
                    "machine": machine,
                    "results": outcome.results,
                })),
            )?;
            let _ = out.flush();
            all.push(((store, mode), outcome));
        }
    }
    let Some((_, first)) = all.first() else {
        return Ok(());
    };
    let (params, headline) = (first.params.clone(), first.headline.clone());
    // Each variant's figures: its one run, or the medians of its runs.
    let mut figures = Vec::new();
    for &variant in &variants {
        let results: Vec<Value> = all
            .iter()
            .filter(|(v, _)| *v == variant)
            .map(|(_, o)| o.results.clone())
            .collect();
        if runs == 1 {
            figures.extend(results.into_iter().map(|r| (variant, r)));
            continue;
        }
        let med = report::medians(&results);
        if tables {
            let title = format!(
                "gc-bench {name}, {} — median of {runs} runs",
                label(variant)
            );
            report::write_table(out, &title, &report::median_rows(&headline, &med, &results))?;
        }
        report::write_json(
            out,
            &line(json!({
                "tls": variant.1.is_tls(),
                "store": variant.0.key(),
                "summary": "median",
                "params": params,
                "machine": ctx.machine,
                "results": med,
            })),
        )?;
        figures.push((variant, med));
    }
    let of = if runs > 1 {
        format!("medians of {runs} runs")
    } else {
        "one run each".to_owned()
    };
    let find = |v: (StoreKind, Mode)| figures.iter().find(|(w, _)| *w == v).map(|(_, r)| r);
    // Two stores: flat file beside PostgreSQL, per mode; else two modes: plain beside TLS.
    let mut pairs = Vec::new();
    if several_stores {
        for &mode in ctx.modes {
            pairs.push((
                (StoreKind::Flat, mode),
                (StoreKind::Postgres, mode),
                report::Sides::STORES,
                format!("flat file and PostgreSQL side by side, {}", mode.name()),
                "flat_and_postgres",
            ));
        }
    } else if let [store] = ctx.stores[..]
        && ctx.modes.len() == 2
    {
        pairs.push((
            (store, Mode::Plain),
            (store, Mode::Tls),
            report::Sides::TLS,
            "plain and TLS side by side".to_owned(),
            "plain_and_tls",
        ));
    }
    for (a, b, sides, what, summary) in pairs {
        let (Some(ra), Some(rb)) = (find(a), find(b)) else {
            continue;
        };
        if tables {
            let title = format!("gc-bench {name} — {what} ({of})");
            report::write_table(
                out,
                &title,
                &report::side_by_side_as(sides, &headline, ra, rb),
            )?;
        }
        let mut extra = json!({
            "summary": summary,
            "params": params,
            "machine": ctx.machine,
            "results": report::compare_json_as(sides, &headline, ra, rb),
        });
        if several_stores {
            extra["tls"] = json!(a.1.is_tls());
        }
        report::write_json(out, &line(extra))?;
    }
    let _ = out.flush();
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::Parser;

    use super::*;

    #[test]
    fn tls_against_an_external_server_needs_its_fingerprint() {
        let cli = Cli::try_parse_from(["gc-bench", "--server", "10.0.0.1", "idle"]).expect("args");
        let err = Ctx::new(&cli.common).expect_err("no fingerprint to pin");
        assert!(err.to_string().contains("--server-fingerprint"), "{err}");
    }
}
