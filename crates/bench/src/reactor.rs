//! The client side of the callback ports for thousands of clients on a few threads.
//!
//! Every signed-in client has a heartbeat and a delivery listener on its own address. The server
//! connects to them and keeps the connections open. Threads `bc-io-<k>` serve all of them with
//! non-blocking sockets and one epoll set each (a client belongs to one thread), behaving like a
//! real client:
//! - heartbeat: `Ping <token> …` → `Pong <last-id> <client-time>` (`Err session` for a token that
//!   is not the client's, then close);
//! - delivery: `Batch <token> <n>`, n × `Rec`, `End` → `Thx <last-id>`; every id is recorded in a
//!   per-client bitmap (lost and duplicated deliveries) and the send time embedded in bench bodies
//!   gives the end-to-end latency of every delivery. A `Rec` may name its room (GC/3): frames are
//!   counted per client and room, and a bench message whose room is not its sender's (see
//!   [`RoomPlan`]) is counted as mislabelled;
//! - any number of connections per port, accepted whenever the server opens a fresh one, closed
//!   when the server closes them;
//! - over TLS (a TLS run's [`Wire`]), each connection runs its own rustls session ([`Pipe`]): the
//!   handshake as the server's bytes come, demanding the server's certificate, checked before a
//!   frame is read.
//!
//! Only the framing is done here (splitting non-blocking reads at LF; `FramedStream` blocks).
//! Every line is parsed and every answer encoded by `gc_protocol`'s frames, as `gc-client` does,
//! so the bench measures the server against the real codec, limits included.

use std::io::{self, Read, Write};
use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::sync::atomic::{AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gc_protocol::limits::MAX_FRAME_BYTES;
use gc_protocol::{
    DeliveryFrame, DeliveryReply, ErrorCode, ErrorFrame, Frame, HeartbeatPing, HeartbeatReply,
    ParseError, Room, SessionToken, Timestamp,
};
use rustix::event::epoll::{self, CreateFlags, Event, EventData, EventFlags};
use rustix::event::{EventfdFlags, Timespec, eventfd};

use crate::client::SignedInClient;
use crate::error::BenchError;
use crate::hist::Histogram;
use crate::rooms::RoomPlan;
use crate::wire::{Pipe, Wire};

/// Largest read buffer: the largest frame, LF included. A full buffer without an LF holds a line
/// longer than any frame.
const MAX_BUF: usize = MAX_FRAME_BYTES;
/// Start size of a connection's read buffer.
const START_BUF: usize = 4096;
/// Ids tracked per client in its bitmap (beyond: counted as untracked).
const MAX_TRACKED_IDS: u64 = 16 << 20;
/// The cursor a `--sink` client reports: far ahead of any store, so nothing is delivered.
pub const SINK_CURSOR: u64 = 1_000_000_000_000_000_000;
/// Token of the wake-up eventfd.
const WAKE: u64 = u64::MAX;

/// Counters counters with the workload driver while the reactor runs.
#[derive(Debug)]
pub struct Counters {
    /// Each slot's cursor (highest id held), updated after every batch.
    pub last_id: Vec<AtomicU64>,
    /// Each slot's answered heartbeats.
    pub slot_pings: Vec<AtomicU32>,
    /// Heartbeats answered, all clients.
    pub pings: AtomicU64,
    /// Connections the server opened to heartbeat ports.
    pub hb_accepts: AtomicU64,
    /// Connections the server opened to delivery ports.
    pub dl_accepts: AtomicU64,
    /// Batches answered.
    pub batches: AtomicU64,
    /// `Rec` frames received.
    pub records: AtomicU64,
    /// Frames that broke the protocol (the connection was closed).
    pub protocol_errors: AtomicU64,
    /// Connections from the server currently open.
    pub open_conns: AtomicI64,
}

impl Counters {
    fn new(slots: usize) -> Self {
        Self {
            last_id: (0..slots).map(|_| AtomicU64::new(0)).collect(),
            slot_pings: (0..slots).map(|_| AtomicU32::new(0)).collect(),
            pings: AtomicU64::new(0),
            hb_accepts: AtomicU64::new(0),
            dl_accepts: AtomicU64::new(0),
            batches: AtomicU64::new(0),
            records: AtomicU64::new(0),
            protocol_errors: AtomicU64::new(0),
            open_conns: AtomicI64::new(0),
        }
    }

    /// Slots (among `slots`) whose cursor is below `id`.
    pub fn behind(&self, slots: &[usize], id: u64) -> usize {
        slots
            .iter()
            .filter(|&&s| self.last_id[s].load(Ordering::Acquire) < id)
            .count()
    }

    /// Slots that have not reached their target: `(slot, id)` pairs whose cursor is below `id`.
    pub fn behind_each(&self, targets: &[(usize, u64)]) -> usize {
        targets
            .iter()
            .filter(|&&(s, id)| self.last_id[s].load(Ordering::Acquire) < id)
            .count()
    }

    /// Slots (among `slots`) that have not answered a heartbeat yet.
    pub fn unpinged(&self, slots: &[usize]) -> usize {
        slots
            .iter()
            .filter(|&&s| self.slot_pings[s].load(Ordering::Acquire) == 0)
            .count()
    }
}

/// How the reactor's clients behave.
#[derive(Debug, Clone)]
pub struct ReactorConfig {
    /// Number of `bc-io-*` threads.
    pub threads: usize,
    /// Slots (client indexes) that may be added.
    pub slots: usize,
    /// The instant bench bodies count their send time from.
    pub epoch: Instant,
    /// The prefix of this run's bodies (`<tag>:<sent-µs>:…`).
    pub tag: String,
    /// Report a cursor far ahead of the store, so the server delivers nothing (isolates ingest).
    pub sink: bool,
    /// Plain or TLS, as the server's callbacks come.
    pub wire: Wire,
    /// Which room each sender posts into, to check the room of every bench message delivered.
    pub rooms: RoomPlan,
    /// Clients from this slot on are on a second instance: their deliveries' latency also goes
    /// into [`IoReport::latency_b`], the others' into [`IoReport::latency_a`] (`usize::MAX`:
    /// one instance).
    pub split: usize,
}

enum Cmd {
    Add(Box<SignedInClient>),
    Stop,
}

struct IoThread {
    name: String,
    handle: Option<JoinHandle<IoReport>>,
    inbox: Arc<Mutex<Vec<Cmd>>>,
    wake: Arc<OwnedFd>,
}

impl IoThread {
    fn send(&self, cmd: Cmd) {
        self.inbox
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .push(cmd);
        let _ = rustix::io::write(&*self.wake, &1u64.to_ne_bytes());
    }
}

/// The running io threads.
#[derive(Debug)]
pub struct Reactor {
    threads: Vec<IoThread>,
    /// Live counters.
    pub counters: Arc<Counters>,
}

impl std::fmt::Debug for IoThread {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.name)
    }
}

/// What a client saw, returned when the reactor stops.
#[derive(Debug, Clone)]
pub struct ClientReport {
    /// Its slot.
    pub slot: usize,
    /// Its starting cursor (ids up to it were not owed).
    pub start: u64,
    /// Its final cursor.
    pub last_id: u64,
    bits: Vec<u64>,
    /// Deliveries of an id it already had.
    pub dups: u64,
    /// Deliveries of ids at or below its starting cursor.
    pub old: u64,
    /// Deliveries beyond the tracked range.
    pub untracked: u64,
    /// Heartbeats answered.
    pub pings: u64,
    /// `Rec` frames by the room they named (`#general` when they named none).
    pub by_room: Vec<(Room, u64)>,
    /// Bench messages whose `Rec` named another room than their sender's.
    pub mislabelled: u64,
}

impl ClientReport {
    /// Whether it received `id` (above its start, in the tracked range).
    pub fn has(&self, id: u64) -> bool {
        if id <= self.start {
            return false;
        }
        let bit = id - self.start - 1;
        self.bits
            .get((bit / 64) as usize)
            .is_some_and(|w| w & (1 << (bit % 64)) != 0)
    }

    /// How many distinct ids in `(lo, hi]` it received (`lo` at or above its start).
    pub fn received_in(&self, lo: u64, hi: u64) -> u64 {
        let lo = lo.max(self.start);
        if hi <= lo {
            return 0;
        }
        let (a, b) = (lo - self.start, hi - self.start); // bit indexes [a, b)
        let mut n = 0u64;
        for i in a..b.min(self.bits.len() as u64 * 64) {
            if self.bits[(i / 64) as usize] & (1 << (i % 64)) != 0 {
                n += 1;
            }
        }
        n
    }
}

/// What an io thread returns.
#[derive(Debug, Default)]
pub struct IoReport {
    /// Per client.
    pub clients: Vec<ClientReport>,
    /// End-to-end latency of every delivery of a bench body, µs.
    pub latency: Histogram,
    /// The same for the clients before [`ReactorConfig::split`] (the first instance).
    pub latency_a: Histogram,
    /// The same for the clients from [`ReactorConfig::split`] on (the second instance).
    pub latency_b: Histogram,
    /// The first few problems seen.
    pub problems: Vec<String>,
}

impl Reactor {
    /// Starts `config.threads` io threads.
    pub fn start(config: &ReactorConfig) -> Result<Self, BenchError> {
        let counters = Arc::new(Counters::new(config.slots));
        let mut threads = Vec::new();
        for k in 0..config.threads.max(1) {
            let name = format!("bc-io-{k}");
            let wake = Arc::new(
                eventfd(0, EventfdFlags::CLOEXEC | EventfdFlags::NONBLOCK)
                    .map_err(|e| BenchError::io("create an eventfd", e.into()))?,
            );
            let inbox = Arc::new(Mutex::new(Vec::new()));
            let (sh, ib, wk, cfg) = (
                Arc::clone(&counters),
                Arc::clone(&inbox),
                Arc::clone(&wake),
                config.clone(),
            );
            let handle = thread::Builder::new()
                .name(name.clone())
                .stack_size(256 * 1024)
                .spawn(move || IoLoop::new(cfg, sh, ib, wk).run())
                .map_err(|source| BenchError::Thread {
                    name: name.clone(),
                    source,
                })?;
            threads.push(IoThread {
                name,
                handle: Some(handle),
                inbox,
                wake,
            });
        }
        Ok(Self { threads, counters })
    }

    /// Hands a signed-in client to its io thread (slot modulo the thread count).
    pub fn add(&self, session: SignedInClient) {
        let t = &self.threads[session.slot % self.threads.len()];
        self.counters.last_id[session.slot].store(session.latest_id, Ordering::Release);
        t.send(Cmd::Add(Box::new(session)));
    }

    /// Stops every io thread (closing all connections) and merges what they saw.
    pub fn stop(mut self) -> Result<IoReport, BenchError> {
        self.stop_inner()
    }

    fn stop_inner(&mut self) -> Result<IoReport, BenchError> {
        for t in &self.threads {
            t.send(Cmd::Stop);
        }
        let mut all = IoReport::default();
        let mut panicked = None;
        for t in &mut self.threads {
            if let Some(h) = t.handle.take() {
                match h.join() {
                    Ok(r) => {
                        all.clients.extend(r.clients);
                        all.latency.merge(&r.latency);
                        all.latency_a.merge(&r.latency_a);
                        all.latency_b.merge(&r.latency_b);
                        all.problems.extend(r.problems);
                    }
                    Err(_) => panicked = Some(t.name.clone()),
                }
            }
        }
        all.clients.sort_by_key(|c| c.slot);
        match panicked {
            Some(name) => Err(BenchError::Panicked(name)),
            None => Ok(all),
        }
    }
}

impl Drop for Reactor {
    fn drop(&mut self) {
        let _ = self.stop_inner();
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Heartbeat,
    Delivery,
}

#[derive(Clone, Copy, Debug)]
enum DlState {
    Idle,
    Recs(u32),
    AwaitEnd,
}

struct Conn {
    client: usize,
    kind: Kind,
    pipe: Pipe,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    out: Vec<u8>,
    want_out: bool,
    dl: DlState,
    close_after_write: bool,
}

impl Conn {
    /// A fresh connection from the server to one of `client`'s ports.
    fn new(client: usize, kind: Kind, pipe: Pipe) -> Self {
        Self {
            client,
            kind,
            pipe,
            buf: vec![0; START_BUF],
            start: 0,
            end: 0,
            out: Vec::new(),
            want_out: false,
            dl: DlState::Idle,
            close_after_write: false,
        }
    }
}

enum Entry {
    Listener {
        client: usize,
        kind: Kind,
        listener: TcpListener,
    },
    Conn(Conn),
}

struct ClientState {
    slot: usize,
    token: SessionToken,
    start: u64,
    last_id: u64,
    bits: Vec<u64>,
    dups: u64,
    old: u64,
    untracked: u64,
    pings: u64,
    by_room: Vec<(Room, u64)>,
    mislabelled: u64,
}

impl ClientState {
    fn new(slot: usize, token: SessionToken, start: u64) -> Self {
        Self {
            slot,
            token,
            start,
            last_id: start,
            bits: Vec::new(),
            dups: 0,
            old: 0,
            untracked: 0,
            pings: 0,
            by_room: Vec::new(),
            mislabelled: 0,
        }
    }

    /// Counts a frame of `room` (most frames are of the room of the one before).
    fn count_room(&mut self, room: Room) {
        match self.by_room.iter_mut().rev().find(|(r, _)| *r == room) {
            Some((_, n)) => *n += 1,
            None => self.by_room.push((room, 1)),
        }
    }
}

struct IoLoop {
    cfg: ReactorConfig,
    counters: Arc<Counters>,
    inbox: Arc<Mutex<Vec<Cmd>>>,
    wake: Arc<OwnedFd>,
    entries: Vec<Option<Entry>>,
    free: Vec<usize>,
    clients: Vec<ClientState>,
    latency: Histogram,
    latency_a: Histogram,
    latency_b: Histogram,
    problems: Vec<String>,
}

/// Why a connection must close.
enum Close {
    /// The peer closed it or it failed.
    Gone,
    /// It broke the protocol.
    Protocol(String),
}

impl IoLoop {
    fn new(
        cfg: ReactorConfig,
        counters: Arc<Counters>,
        inbox: Arc<Mutex<Vec<Cmd>>>,
        wake: Arc<OwnedFd>,
    ) -> Self {
        Self {
            cfg,
            counters,
            inbox,
            wake,
            entries: Vec::new(),
            free: Vec::new(),
            clients: Vec::new(),
            latency: Histogram::new(),
            latency_a: Histogram::new(),
            latency_b: Histogram::new(),
            problems: Vec::new(),
        }
    }

    fn problem(&mut self, what: String) {
        if self.problems.len() < 10 {
            self.problems.push(what);
        }
    }

    fn run(mut self) -> IoReport {
        let ep = match epoll::create(CreateFlags::CLOEXEC) {
            Ok(ep) => ep,
            Err(e) => {
                self.problem(format!("epoll_create: {e}"));
                return self.report();
            }
        };
        if let Err(e) = epoll::add(&ep, &*self.wake, EventData::new_u64(WAKE), EventFlags::IN) {
            self.problem(format!("epoll_ctl(eventfd): {e}"));
            return self.report();
        }
        let mut events: Vec<Event> = Vec::with_capacity(1024);
        let tick = Timespec {
            tv_sec: 0,
            tv_nsec: 100_000_000,
        };
        loop {
            events.clear();
            match epoll::wait(
                &ep,
                rustix::buffer::spare_capacity(&mut events),
                Some(&tick),
            ) {
                Ok(_) => {}
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => {
                    self.problem(format!("epoll_wait: {e}"));
                    break;
                }
            }
            let now = Instant::now();
            let mut stop = false;
            for ev in &events {
                let flags = ev.flags;
                let data = ev.data;
                let token = data.u64();
                if token == WAKE {
                    stop |= self.commands(&ep);
                } else {
                    self.event(&ep, token as usize, flags, now);
                }
            }
            if stop {
                break;
            }
        }
        for e in self.entries.iter().flatten() {
            match e {
                Entry::Listener { listener, .. } => {
                    let _ = epoll::delete(&ep, listener);
                }
                Entry::Conn(c) => {
                    let _ = epoll::delete(&ep, c.pipe.tcp());
                }
            }
        }
        self.entries.clear();
        self.report()
    }

    fn report(self) -> IoReport {
        IoReport {
            clients: self
                .clients
                .into_iter()
                .map(|c| ClientReport {
                    slot: c.slot,
                    start: c.start,
                    last_id: c.last_id,
                    bits: c.bits,
                    dups: c.dups,
                    old: c.old,
                    untracked: c.untracked,
                    pings: c.pings,
                    by_room: c.by_room,
                    mislabelled: c.mislabelled,
                })
                .collect(),
            latency: self.latency,
            latency_a: self.latency_a,
            latency_b: self.latency_b,
            problems: self.problems,
        }
    }

    /// Handles queued commands; true when told to stop.
    fn commands(&mut self, ep: &OwnedFd) -> bool {
        let mut buf = [0u8; 8];
        let _ = rustix::io::read(&*self.wake, &mut buf);
        let cmds = std::mem::take(&mut *self.inbox.lock().unwrap_or_else(|p| p.into_inner()));
        let mut stop = false;
        for cmd in cmds {
            match cmd {
                Cmd::Stop => stop = true,
                Cmd::Add(session) => self.add_client(ep, *session),
            }
        }
        stop
    }

    fn insert(&mut self, entry: Entry) -> usize {
        match self.free.pop() {
            Some(i) => {
                self.entries[i] = Some(entry);
                i
            }
            None => {
                self.entries.push(Some(entry));
                self.entries.len() - 1
            }
        }
    }

    fn add_client(&mut self, ep: &OwnedFd, session: SignedInClient) {
        let client = self.clients.len();
        self.clients.push(ClientState::new(
            session.slot,
            session.token.clone(),
            session.latest_id,
        ));
        for (kind, listener) in [
            (Kind::Heartbeat, session.listeners.heartbeat),
            (Kind::Delivery, session.listeners.delivery),
        ] {
            if let Err(e) = listener.set_nonblocking(true) {
                self.problem(format!("set_nonblocking on a listener: {e}"));
                continue;
            }
            let i = self.insert(Entry::Listener {
                client,
                kind,
                listener,
            });
            let res = match &self.entries[i] {
                Some(Entry::Listener { listener, .. }) => {
                    epoll::add(ep, listener, EventData::new_u64(i as u64), EventFlags::IN)
                }
                _ => Ok(()),
            };
            if let Err(e) = res {
                self.problem(format!("epoll_ctl(listener): {e}"));
            }
        }
    }

    fn event(&mut self, ep: &OwnedFd, i: usize, flags: EventFlags, now: Instant) {
        let (client, kind, is_listener) = match self.entries.get(i) {
            Some(Some(Entry::Listener { client, kind, .. })) => (*client, *kind, true),
            Some(Some(Entry::Conn(c))) => (c.client, c.kind, false),
            _ => return,
        };
        if is_listener {
            self.accept(ep, i, client, kind);
            return;
        }
        let Some(Some(Entry::Conn(mut conn))) = self.entries.get_mut(i).map(Option::take) else {
            return;
        };
        let outcome = self.serve(&mut conn, flags, now);
        match outcome {
            Ok(()) => {
                let want = !conn.out.is_empty() || conn.pipe.wants_write();
                if want != conn.want_out {
                    let f = if want {
                        EventFlags::IN | EventFlags::OUT | EventFlags::RDHUP
                    } else {
                        EventFlags::IN | EventFlags::RDHUP
                    };
                    if epoll::modify(ep, conn.pipe.tcp(), EventData::new_u64(i as u64), f).is_ok() {
                        conn.want_out = want;
                    }
                }
                self.entries[i] = Some(Entry::Conn(conn));
            }
            Err(close) => {
                if let Close::Protocol(what) = close {
                    self.counters
                        .protocol_errors
                        .fetch_add(1, Ordering::Relaxed);
                    let slot = self.clients[client].slot;
                    self.problem(format!("client {slot} ({kind:?}): {what}"));
                }
                let _ = epoll::delete(ep, conn.pipe.tcp());
                self.free.push(i);
                self.counters.open_conns.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    fn accept(&mut self, ep: &OwnedFd, i: usize, client: usize, kind: Kind) {
        loop {
            let accepted = match &self.entries[i] {
                Some(Entry::Listener { listener, .. }) => listener.accept(),
                _ => return,
            };
            let stream = match accepted {
                Ok((s, _)) => s,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.problem(format!("accept: {e}"));
                    return;
                }
            };
            let counter = match kind {
                Kind::Heartbeat => &self.counters.hb_accepts,
                Kind::Delivery => &self.counters.dl_accepts,
            };
            counter.fetch_add(1, Ordering::Relaxed);
            if stream.set_nonblocking(true).is_err() || stream.set_nodelay(true).is_err() {
                continue;
            }
            let pipe = match self.cfg.wire.pipe_from(stream) {
                Ok(pipe) => pipe,
                Err(e) => {
                    self.problem(format!("start a TLS session: {e}"));
                    continue;
                }
            };
            self.counters.open_conns.fetch_add(1, Ordering::AcqRel);
            let j = self.insert(Entry::Conn(Conn::new(client, kind, pipe)));
            let res = match &self.entries[j] {
                Some(Entry::Conn(c)) => epoll::add(
                    ep,
                    c.pipe.tcp(),
                    EventData::new_u64(j as u64),
                    EventFlags::IN | EventFlags::RDHUP,
                ),
                _ => Ok(()),
            };
            if let Err(e) = res {
                self.problem(format!("epoll_ctl(conn): {e}"));
                self.entries[j] = None;
                self.free.push(j);
                self.counters.open_conns.fetch_sub(1, Ordering::AcqRel);
            }
        }
    }

    /// Reads what is there, answers every complete frame, writes the answers (and with TLS the
    /// handshake's records).
    fn serve(&mut self, conn: &mut Conn, flags: EventFlags, now: Instant) -> Result<(), Close> {
        let mut eof = false;
        if flags.intersects(EventFlags::IN | EventFlags::HUP | EventFlags::ERR | EventFlags::RDHUP)
        {
            let now_us = now.saturating_duration_since(self.cfg.epoch).as_micros() as u64;
            loop {
                if conn.end == conn.buf.len() {
                    if conn.start > 0 {
                        conn.buf.copy_within(conn.start..conn.end, 0);
                        conn.end -= conn.start;
                        conn.start = 0;
                    } else if conn.buf.len() < MAX_BUF {
                        let n = (conn.buf.len() * 2).min(MAX_BUF);
                        conn.buf.resize(n, 0);
                    } else {
                        return Err(Close::Protocol(ParseError::TooLong.to_string()));
                    }
                }
                let room = conn.buf.len() - conn.end;
                match conn.pipe.read(&mut conn.buf[conn.end..]) {
                    Ok(0) => {
                        eof = true;
                        break;
                    }
                    Ok(n) => {
                        conn.end += n;
                        self.lines(conn, now_us)?;
                        if conn.pipe.drained(n < room) {
                            // Drained: epoll is level-triggered and reports the rest, which
                            // saves a read that would only say EAGAIN.
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    // A TLS error, or a caller that is not the server.
                    Err(e) if e.kind() == io::ErrorKind::InvalidData => {
                        return Err(Close::Protocol(format!("TLS: {e}")));
                    }
                    Err(_) => return Err(Close::Gone),
                }
            }
        }
        if !conn.out.is_empty() {
            loop {
                match conn.pipe.write(&conn.out) {
                    Ok(0) => return Err(Close::Gone),
                    Ok(n) => {
                        conn.out.drain(..n);
                        if conn.out.is_empty() {
                            break;
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                    Err(_) => return Err(Close::Gone),
                }
            }
        }
        if conn.pipe.wants_write() {
            match conn.pipe.flush() {
                Ok(()) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                    ) => {}
                Err(_) => return Err(Close::Gone),
            }
        }
        let written = conn.out.is_empty() && !conn.pipe.wants_write();
        if eof || (conn.close_after_write && written) {
            return Err(Close::Gone);
        }
        Ok(())
    }

    /// Handles every complete line in the buffer.
    fn lines(&mut self, conn: &mut Conn, now_us: u64) -> Result<(), Close> {
        while let Some(pos) = conn.buf[conn.start..conn.end]
            .iter()
            .position(|&b| b == b'\n')
        {
            let (s, e) = (conn.start, conn.start + pos);
            conn.start = e + 1;
            // Borrow the line out of the buffer without copying: swap the buffer out.
            let buf = std::mem::take(&mut conn.buf);
            let result = match conn.kind {
                Kind::Heartbeat => self.heartbeat(conn, &buf[s..e]),
                Kind::Delivery => self.delivery(conn, &buf[s..e], now_us),
            };
            conn.buf = buf;
            result?;
            if conn.close_after_write {
                break;
            }
        }
        if conn.start == conn.end {
            conn.start = 0;
            conn.end = 0;
        }
        Ok(())
    }

    fn heartbeat(&mut self, conn: &mut Conn, line: &[u8]) -> Result<(), Close> {
        let ping = HeartbeatPing::parse(line)
            .map_err(|e| protocol_error(&format!("not a heartbeat Ping ({e})"), line))?;
        let c = &mut self.clients[conn.client];
        if ping.token != c.token {
            HeartbeatReply::Err(not_this_session()).encode(&mut conn.out);
            conn.close_after_write = true;
            return Ok(());
        }
        let last_id = if self.cfg.sink {
            SINK_CURSOR
        } else {
            c.last_id
        };
        HeartbeatReply::Pong {
            last_id,
            client_time: Timestamp::now(),
        }
        .encode(&mut conn.out);
        c.pings += 1;
        self.counters.slot_pings[c.slot].fetch_add(1, Ordering::Release);
        self.counters.pings.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    fn delivery(&mut self, conn: &mut Conn, line: &[u8], now_us: u64) -> Result<(), Close> {
        match conn.dl {
            DlState::Idle => {
                // The codec checks the count against `limits::MAX_BATCH_RECORDS`.
                let (token, n) = match DeliveryFrame::parse(line) {
                    Ok(DeliveryFrame::Batch { token, n }) => (token, n),
                    Ok(_) => return Err(protocol_error("expected Batch", line)),
                    Err(e) => return Err(protocol_error(&format!("expected Batch ({e})"), line)),
                };
                if token != self.clients[conn.client].token {
                    DeliveryReply::Err(not_this_session()).encode(&mut conn.out);
                    conn.close_after_write = true;
                    return Ok(());
                }
                conn.dl = DlState::Recs(n);
            }
            DlState::Recs(left) => {
                self.record(conn.client, line, now_us)
                    .ok_or_else(|| protocol_error("bad Rec", line))?;
                conn.dl = if left > 1 {
                    DlState::Recs(left - 1)
                } else {
                    DlState::AwaitEnd
                };
            }
            DlState::AwaitEnd => {
                match DeliveryFrame::parse(line) {
                    Ok(DeliveryFrame::End) => {}
                    Ok(_) => return Err(protocol_error("expected End", line)),
                    Err(e) => return Err(protocol_error(&format!("expected End ({e})"), line)),
                }
                conn.dl = DlState::Idle;
                let c = &self.clients[conn.client];
                DeliveryReply::Thx { last_id: c.last_id }.encode(&mut conn.out);
                self.counters.last_id[c.slot].store(c.last_id, Ordering::Release);
                self.counters.batches.fetch_add(1, Ordering::Relaxed);
            }
        }
        Ok(())
    }

    /// `Rec <id> <timestamp> <username> <body:c16> [<room>]`: records the id and its room and,
    /// for bench bodies, the latency and whether the room is the sender's. `None` if the line is
    /// not a valid `Rec` frame.
    fn record(&mut self, client: usize, line: &[u8], now_us: u64) -> Option<()> {
        let DeliveryFrame::Rec(record) = DeliveryFrame::parse(line).ok()? else {
            return None;
        };
        let id = record.id;
        self.counters.records.fetch_add(1, Ordering::Relaxed);
        let c = &mut self.clients[client];
        if id <= c.start {
            c.old += 1;
        } else {
            let bit = id - c.start - 1;
            if bit >= MAX_TRACKED_IDS {
                c.untracked += 1;
            } else {
                let word = (bit / 64) as usize;
                if word >= c.bits.len() {
                    c.bits.resize(word + 1 + word / 2, 0);
                }
                let mask = 1u64 << (bit % 64);
                if c.bits[word] & mask != 0 {
                    c.dups += 1;
                } else {
                    c.bits[word] |= mask;
                }
            }
        }
        c.last_id = c.last_id.max(id);
        // Bench bodies start with `<tag>:<sent-µs>:<sender>:`: the latency, and the room the
        // message must be in.
        if let Some(rest) = record
            .body
            .strip_prefix(self.cfg.tag.as_str())
            .and_then(|r| r.strip_prefix(':'))
        {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if let Ok(sent) = rest[..digits].parse::<u64>() {
                let us = now_us.saturating_sub(sent);
                self.latency.record(us);
                if c.slot >= self.cfg.split {
                    self.latency_b.record(us);
                } else {
                    self.latency_a.record(us);
                }
            }
            let sender = rest[digits..]
                .strip_prefix(':')
                .and_then(|r| r.split(':').next())
                .and_then(|r| r.parse::<usize>().ok());
            if sender.is_none_or(|i| !self.cfg.rooms.labelled(i, &record.room)) {
                c.mislabelled += 1;
            }
        }
        c.count_room(record.room);
        Some(())
    }
}

/// The reply to a frame for another session.
fn not_this_session() -> ErrorFrame {
    ErrorFrame::new(ErrorCode::Session, "not this client's session")
}

/// A protocol error about `line` (its first 80 bytes are quoted).
fn protocol_error(what: &str, line: &[u8]) -> Close {
    Close::Protocol(format!(
        "{what}: {}",
        String::from_utf8_lossy(&line[..line.len().min(80)])
    ))
}

/// Waits until `done()` holds or `timeout` passes, checking every 5 ms. True if it held.
pub fn wait_for(timeout: Duration, mut done: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if done() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(5));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_protocol::{Record, Username};
    use std::net::TcpStream;

    const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

    fn io_loop(tag: &str, epoch: Instant) -> IoLoop {
        let cfg = ReactorConfig {
            threads: 1,
            slots: 1,
            epoch,
            tag: tag.to_owned(),
            sink: false,
            wire: Wire::plain(),
            rooms: RoomPlan::GENERAL,
            split: usize::MAX,
        };
        let wake = Arc::new(eventfd(0, EventfdFlags::CLOEXEC).expect("eventfd"));
        let mut l = IoLoop::new(cfg, Arc::new(Counters::new(1)), Arc::default(), wake);
        l.clients.push(ClientState::new(
            0,
            SessionToken::new(TOKEN).expect("token"),
            10,
        ));
        l
    }

    fn rec(id: u64, body: &str) -> Vec<u8> {
        rec_in(Room::general(), id, body)
    }

    fn rec_in(room: Room, id: u64, body: &str) -> Vec<u8> {
        let mut out = Vec::new();
        gc_protocol::frame::encode_rec_frame(
            &Record {
                room,
                id,
                timestamp: Timestamp::from_micros(1_700_000_000_000_000),
                username: Username::new("bench00001").expect("name"),
                body: body.to_owned(),
            },
            &mut out,
        );
        out.pop(); // the LF
        out
    }

    #[test]
    fn records_ids_duplicates_and_latency() {
        let epoch = Instant::now();
        let mut l = io_loop("gcbabc123", epoch);
        assert!(
            l.record(0, &rec(12, "gcbabc123:1000:0:7:xxxx"), 3500)
                .is_some()
        );
        assert!(
            l.record(0, &rec(11, "someone else's message"), 3600)
                .is_some()
        );
        assert!(
            l.record(0, &rec(12, "gcbabc123:1000:0:7:xxxx"), 3700)
                .is_some()
        );
        assert!(l.record(0, &rec(9, "history"), 3800).is_some());
        assert!(l.record(0, b"Rec 13 1 bench00001", 0).is_none());
        let c = &l.clients[0];
        assert_eq!((c.last_id, c.dups, c.old), (12, 1, 1));
        // Two bench bodies (the duplicate too) timed, 2,500 and 2,700 µs.
        assert_eq!(l.latency.count(), 2);
        assert!(l.latency.quantile(0.5).abs_diff(2500) <= 3);
        let report = l.report();
        assert_eq!(report.clients[0].received_in(10, 12), 2);
        assert_eq!(report.clients[0].received_in(11, 12), 1);
    }

    #[test]
    fn attributes_records_to_their_rooms() {
        let mut l = io_loop("gcbabc123", Instant::now());
        l.cfg.rooms = RoomPlan::new(50, false, 1000).expect("a plan");
        let room = |n: &str| Room::new(n).expect("room");
        // Sender 57 posts into #bench-7; a notice has no bench body; the warm-up is in #general.
        for (id, r, body) in [
            (11, "#bench-7", "gcbabc123:1000:57:0:xx"),
            (12, "#bench-7", "bench00007 joined"),
            (13, "#general", "warm-up:1:0:0:"),
            (14, "#bench-8", "gcbabc123:1000:57:1:xx"),
            (15, "#general", "gcbabc123:1000:7:0:xx"),
            (16, "#bench-7", "gcbabc123:1000:x:0:xx"),
        ] {
            assert!(l.record(0, &rec_in(room(r), id, body), 2000).is_some());
        }
        let c = &l.clients[0];
        assert_eq!(
            c.mislabelled, 3,
            "14 in #bench-8, 15 in #general, 16 without a sender"
        );
        assert_eq!(
            c.by_room,
            [
                (room("#bench-7"), 3),
                (Room::general(), 2),
                (room("#bench-8"), 1)
            ]
        );
        let report = l.report();
        let c = &report.clients[0];
        assert!(c.has(11) && c.has(16) && !c.has(17) && !c.has(10) && !c.has(9));
        assert_eq!(c.mislabelled, 3);

        // Without rooms a bench message must be in #general: a GC/1 session's frames name none.
        let mut l = io_loop("gcbabc123", Instant::now());
        assert!(
            l.record(0, &rec(11, "gcbabc123:1000:3:0:xx"), 2000)
                .is_some()
        );
        let in_room = rec_in(room("#bench-0"), 12, "gcbabc123:1000:0:0:xx");
        assert!(l.record(0, &in_room, 2000).is_some());
        assert_eq!(l.clients[0].mislabelled, 1);
    }

    /// A connection of `kind` to client 0 (over loopback: `Conn` owns a real socket).
    fn conn(kind: Kind) -> (Conn, TcpStream) {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let peer = TcpStream::connect(listener.local_addr().expect("addr")).expect("connect");
        let (stream, _) = listener.accept().expect("accept");
        (Conn::new(0, kind, Pipe::plain(stream)), peer)
    }

    /// Feeds `lines` to `conn` as one read and returns what it would write.
    fn feed(l: &mut IoLoop, conn: &mut Conn, lines: &[Vec<u8>]) -> Result<Vec<u8>, String> {
        let mut input = Vec::new();
        for line in lines {
            input.extend_from_slice(line);
            input.push(b'\n');
        }
        conn.buf = input;
        conn.start = 0;
        conn.end = conn.buf.len();
        match l.lines(conn, 5000) {
            Ok(()) => Ok(std::mem::take(&mut conn.out)),
            Err(Close::Protocol(what)) => Err(what),
            Err(Close::Gone) => Err("gone".into()),
        }
    }

    fn ping(token: &str) -> Vec<u8> {
        HeartbeatPing {
            token: SessionToken::new(token).expect("token"),
            server_time: Timestamp::from_micros(1_700_000_000_000_000),
            presence_version: 3,
        }
        .to_bytes()
        .strip_suffix(b"\n")
        .expect("LF")
        .to_vec()
    }

    fn batch(token: &str, n: u32) -> Vec<u8> {
        let frame = DeliveryFrame::Batch {
            token: SessionToken::new(token).expect("token"),
            n,
        };
        let mut out = frame.to_bytes();
        out.pop();
        out
    }

    #[test]
    fn answers_heartbeats() {
        let mut l = io_loop("gcbabc123", Instant::now());
        let (mut c, _peer) = conn(Kind::Heartbeat);
        let out = feed(&mut l, &mut c, &[ping(TOKEN), ping(TOKEN)]).expect("pongs");
        let mut replies = out.split(|&b| b == b'\n').filter(|r| !r.is_empty());
        for _ in 0..2 {
            let reply = HeartbeatReply::parse(replies.next().expect("a reply")).expect("parses");
            assert!(matches!(reply, HeartbeatReply::Pong { last_id: 10, .. }));
        }
        assert_eq!(l.clients[0].pings, 2);
        assert_eq!(l.counters.pings.load(Ordering::Relaxed), 2);

        // Another session's token: `Err session`, then the connection closes.
        let (mut c, _peer) = conn(Kind::Heartbeat);
        let other = "f".repeat(64);
        let out = feed(&mut l, &mut c, &[ping(&other)]).expect("an answer");
        let reply = HeartbeatReply::parse(out.strip_suffix(b"\n").expect("LF")).expect("parses");
        assert!(matches!(reply, HeartbeatReply::Err(e) if e.code == ErrorCode::Session));
        assert!(c.close_after_write);

        // Not a heartbeat at all: a protocol error.
        let (mut c, _peer) = conn(Kind::Heartbeat);
        let err = feed(&mut l, &mut c, &[b"Ping GC/1".to_vec()]).expect_err("malformed");
        assert!(err.starts_with("not a heartbeat Ping"), "{err}");
    }

    #[test]
    fn answers_batches() {
        let epoch = Instant::now();
        let mut l = io_loop("gcbabc123", epoch);
        let (mut c, _peer) = conn(Kind::Delivery);
        let lines = [
            batch(TOKEN, 2),
            rec(11, "gcbabc123:1000:0:0:xxxx"),
            rec(12, "gcbabc123:2000:0:1:xxxx"),
            b"End".to_vec(),
        ];
        let out = feed(&mut l, &mut c, &lines).expect("Thx");
        let reply = DeliveryReply::parse(out.strip_suffix(b"\n").expect("LF")).expect("parses");
        assert_eq!(reply, DeliveryReply::Thx { last_id: 12 });
        assert_eq!(l.counters.last_id[0].load(Ordering::Relaxed), 12);
        assert_eq!(l.counters.batches.load(Ordering::Relaxed), 1);
        assert_eq!(l.counters.records.load(Ordering::Relaxed), 2);
        assert_eq!(l.latency.count(), 2);

        // Another session's batch: `Err session`, then close.
        let (mut c, _peer) = conn(Kind::Delivery);
        let out = feed(&mut l, &mut c, &[batch(&"f".repeat(64), 1)]).expect("an answer");
        let reply = DeliveryReply::parse(out.strip_suffix(b"\n").expect("LF")).expect("parses");
        assert!(matches!(reply, DeliveryReply::Err(e) if e.code == ErrorCode::Session));
        assert!(c.close_after_write);

        // Out of order, or more records than a batch may hold.
        for (lines, what) in [
            (vec![b"End".to_vec()], "expected Batch"),
            (vec![batch(TOKEN, 1), b"End".to_vec()], "bad Rec"),
            (
                vec![batch(TOKEN, 1), rec(13, "x"), rec(14, "x")],
                "expected End",
            ),
            (
                vec![format!("Batch {TOKEN} 1001").into_bytes()],
                "expected Batch",
            ),
        ] {
            let (mut c, _peer) = conn(Kind::Delivery);
            let err = feed(&mut l, &mut c, &lines).expect_err(what);
            assert!(err.starts_with(what), "{err}");
        }
    }

    /// Serves `conn` until it closes (at most 5 s); the protocol error, if any.
    fn serve_until_closed(l: &mut IoLoop, conn: &mut Conn) -> Option<String> {
        let deadline = Instant::now() + Duration::from_secs(5);
        while Instant::now() < deadline {
            match l.serve(conn, EventFlags::IN, Instant::now()) {
                Ok(()) => thread::sleep(Duration::from_millis(1)),
                Err(Close::Protocol(what)) => return Some(what),
                Err(Close::Gone) => return None,
            }
        }
        Some("still open after 5 s".into())
    }

    #[test]
    fn answers_heartbeats_over_tls_to_the_pinned_server_only() {
        use gc_net::tls::{PeerCheck, TlsConfig};
        use gc_net::{ClientAuth, Identity};

        let client = Arc::new(crate::wire::ClientTls::new().expect("client TLS"));
        let server_id = Identity::generate("gc-server").expect("identity");
        let mut l = io_loop("gcbabc123", Instant::now());
        l.cfg.wire = Wire::tls(Arc::clone(&client), server_id.fingerprint());
        let callback_pin = client.fingerprint();
        for (caller, answered) in [
            (server_id, true),
            (Identity::generate("x").expect("id"), false),
        ] {
            let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
            let addr = listener.local_addr().expect("addr");
            let ping = ping(TOKEN);
            let server = thread::spawn(move || {
                let config = TlsConfig::new(Some(&caller), ClientAuth::None).expect("config");
                let tcp = TcpStream::connect(addr).expect("connect");
                let deadline = Instant::now() + Duration::from_secs(5);
                let mut conn = gc_net::Conn::new(
                    config
                        .connect(tcp, "client", PeerCheck::Pinned(callback_pin), deadline)
                        .ok()?,
                    "client",
                );
                conn.write_all(&[&ping[..], b"\n"].concat(), deadline)
                    .ok()?;
                conn.read::<HeartbeatReply>(deadline).ok()
            });
            let (stream, _) = listener.accept().expect("accept");
            stream.set_nonblocking(true).expect("nonblocking");
            let pipe = l.cfg.wire.pipe_from(stream).expect("a TLS session");
            let mut c = Conn::new(0, Kind::Heartbeat, pipe);
            let outcome = serve_until_closed(&mut l, &mut c);
            drop(c);
            let reply = server.join().expect("server");
            if answered {
                assert!(
                    matches!(reply, Some(HeartbeatReply::Pong { last_id: 10, .. })),
                    "{reply:?}"
                );
                assert_eq!(outcome, None, "closed by the server, no protocol error");
            } else {
                assert!(reply.is_none(), "{reply:?}");
                let err = outcome.expect("refused");
                assert!(err.contains("not the pinned"), "{err}");
            }
        }
        assert_eq!(l.clients[0].pings, 1);
    }

    #[test]
    fn holds_the_largest_frame_and_refuses_longer_lines() {
        let mut l = io_loop("gcbabc123", Instant::now());
        // The largest frame (LF included) fits: the codec gets it and says what is wrong with it.
        let (mut c, mut peer) = conn(Kind::Delivery);
        c.pipe.tcp().set_nonblocking(true).expect("nonblocking");
        let mut line = vec![b'A'; MAX_FRAME_BYTES - 1];
        line.push(b'\n');
        peer.write_all(&line).expect("write");
        let err = serve_until_closed(&mut l, &mut c).expect("a protocol error");
        assert!(err.starts_with("expected Batch (unexpected token"), "{err}");
        // One byte more does not fit a frame.
        let (mut c, mut peer) = conn(Kind::Delivery);
        c.pipe.tcp().set_nonblocking(true).expect("nonblocking");
        peer.write_all(&vec![b'A'; MAX_FRAME_BYTES]).expect("write");
        let err = serve_until_closed(&mut l, &mut c).expect("a protocol error");
        assert_eq!(err, ParseError::TooLong.to_string());
    }
}

/// Building client reports in other modules' tests.
#[cfg(test)]
pub(crate) mod tests_support {
    use super::*;

    /// A report of the client in `slot` that started at `start` and received `ids`, with `dups`
    /// duplicates and `by_room` frames per room.
    pub(crate) fn client_report(
        slot: usize,
        start: u64,
        ids: &[u64],
        dups: u64,
        by_room: &[(&Room, u64)],
    ) -> ClientReport {
        let mut bits = Vec::new();
        for &id in ids {
            let bit = id - start - 1;
            let word = (bit / 64) as usize;
            if word >= bits.len() {
                bits.resize(word + 1, 0u64);
            }
            bits[word] |= 1 << (bit % 64);
        }
        ClientReport {
            slot,
            start,
            last_id: ids.iter().copied().max().unwrap_or(start),
            bits,
            dups,
            old: 0,
            untracked: 0,
            pings: 0,
            by_room: by_room.iter().map(|(r, n)| ((*r).clone(), *n)).collect(),
            mislabelled: 0,
        }
    }
}
