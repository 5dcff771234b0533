//! Operational metrics in the Prometheus text format, and the small HTTP endpoint that serves
//! them with `/healthz` (`--metrics-addr`, issue #15; docs/operations.md lists each metric).
//!
//! The counters live in [`ServerState`] whether or not they are served: each update is an atomic
//! add (a label lookup under a read lock for logins, which are not per message),
//! so the message path takes no new lock. What is cheaper to read than to count (sessions,
//! descriptors, threads) is read at each scrape.

use std::fmt;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gc_net::ByteCount;
use gc_protocol::ErrorCode;
use prometheus_client::encoding::{EncodeLabelSet, EncodeMetric, MetricEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::metrics::counter::{ConstCounter, Counter};
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;

use crate::error::ServerError;
use crate::state::ServerState;

/// Largest request head read from a scraper; a longer one is refused.
const MAX_REQUEST_BYTES: usize = 4096;
/// Deadline of reading a request head, and of each write: a scraper that stalls holds the
/// (single) metrics thread no longer than about this.
const IO_TIMEOUT: Duration = Duration::from_secs(2);

/// Upper bounds of the latency histograms, in seconds: 100 µs to 10 s.
const LATENCY_BUCKETS: [f64; 14] = [
    0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 10.0,
];

/// A label naming why something happened (a login's outcome, an error code).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Reason {
    /// `ok`, or the protocol error code.
    pub reason: &'static str,
}

/// A label naming a file transfer's direction and how it ended (GC/5).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct TransferOutcome {
    /// `upload` or `download`.
    pub direction: &'static str,
    /// `completed`; `refused` (an `Err` before any content byte: a limit, a right, an unknown
    /// file); `failed` (an `Err` after: corrupt content, a full disk, a store that failed);
    /// `interrupted` (the connection ended mid-way; the client resumes).
    pub outcome: &'static str,
}

/// A label naming a protocol error code.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Code {
    /// The error code as sent (`auth`, `rate-limited`, …).
    pub code: &'static str,
}

/// A label naming a plugin hook.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Hook {
    /// The hook (`message_received`, `client_connected`, `client_disconnected`).
    pub hook: &'static str,
}

/// The plugin hooks the server times.
#[derive(Clone, Copy, Debug)]
pub enum HookKind {
    /// Checking (and maybe rewriting) each message.
    MessageReceived,
    /// A login.
    ClientConnected,
    /// A session's end.
    ClientDisconnected,
}

impl HookKind {
    const ALL: [Self; 3] = [
        Self::MessageReceived,
        Self::ClientConnected,
        Self::ClientDisconnected,
    ];

    fn name(self) -> &'static str {
        match self {
            Self::MessageReceived => "message_received",
            Self::ClientConnected => "client_connected",
            Self::ClientDisconnected => "client_disconnected",
        }
    }
}

/// Seconds spent in each plugin hook: one counter per hook, fixed, so timing the per-message
/// hook takes no lock (a `Family` looks its label up under a read lock).
#[derive(Clone, Debug, Default)]
pub struct HookTimes {
    seconds: Arc<[Counter<f64, AtomicU64>; 3]>,
}

impl HookTimes {
    fn add(&self, hook: HookKind, took: Duration) {
        if let Some(counter) = self.seconds.get(hook as usize) {
            counter.inc_by(took.as_secs_f64());
        }
    }
}

impl EncodeMetric for HookTimes {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        for (hook, counter) in HookKind::ALL.iter().zip(self.seconds.iter()) {
            let label = Hook { hook: hook.name() };
            counter.encode(encoder.encode_family(&label)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// Errors answered, one counter per protocol code, fixed: counting a refused message takes no
/// lock, and every code has its series (at 0) from the start.
#[derive(Clone, Debug)]
pub struct ErrorCounts {
    counts: Arc<[Counter; ErrorCode::ALL.len()]>,
}

impl Default for ErrorCounts {
    fn default() -> Self {
        Self {
            counts: Arc::new(std::array::from_fn(|_| Counter::default())),
        }
    }
}

impl ErrorCounts {
    fn inc(&self, code: ErrorCode) {
        if let Some(counter) = ErrorCode::ALL
            .iter()
            .position(|c| *c == code)
            .and_then(|i| self.counts.get(i))
        {
            counter.inc();
        }
    }
}

impl EncodeMetric for ErrorCounts {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        for (code, counter) in ErrorCode::ALL.iter().zip(self.counts.iter()) {
            let label = Code {
                code: code.as_str(),
            };
            counter.encode(encoder.encode_family(&label)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A label naming a port role.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct Port {
    /// `connect`, `auth`, `send` (the server's ports), `callback`, `heartbeat`, `delivery` (the
    /// client's ports the server connects to).
    pub port: &'static str,
}

/// The connections whose bytes are counted, by the port they go to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PortRole {
    /// The server's connect port.
    Connect,
    /// The server's auth port.
    Auth,
    /// The server's send port.
    Send,
    /// The auth callback, to the client's auth port.
    Callback,
    /// To the client's heartbeat port.
    Heartbeat,
    /// To the client's delivery port.
    Delivery,
}

impl PortRole {
    const ALL: [Self; 6] = [
        Self::Connect,
        Self::Auth,
        Self::Send,
        Self::Callback,
        Self::Heartbeat,
        Self::Delivery,
    ];

    /// The label value (and the word for it in thread names).
    pub fn name(self) -> &'static str {
        match self {
            Self::Connect => "connect",
            Self::Auth => "auth",
            Self::Send => "send",
            Self::Callback => "callback",
            Self::Heartbeat => "heartbeat",
            Self::Delivery => "delivery",
        }
    }
}

/// Bytes crossing the server's sockets with its peers, by port role: one [`ByteCount`] per role,
/// fixed, that each connection adds to with an atomic add per socket read or write (ciphertext
/// under TLS, handshake included), so the message path takes no lock.
#[derive(Clone, Debug)]
pub struct PortBytes {
    counts: Arc<[Arc<ByteCount>; PortRole::ALL.len()]>,
}

impl Default for PortBytes {
    fn default() -> Self {
        Self {
            counts: Arc::new(std::array::from_fn(|_| Arc::default())),
        }
    }
}

impl PortBytes {
    /// The count of the connections of `role`, to give each of them.
    pub fn of(&self, role: PortRole) -> Arc<ByteCount> {
        // `ALL` lists the roles in declaration order, so the index is in bounds.
        self.counts
            .get(role as usize)
            .map_or_else(Arc::default, Arc::clone)
    }

    /// Bytes received from peers of `role` so far.
    pub fn received(&self, role: PortRole) -> u64 {
        self.of(role).received()
    }

    /// Bytes sent to peers of `role` so far.
    pub fn sent(&self, role: PortRole) -> u64 {
        self.of(role).sent()
    }
}

/// One direction of [`PortBytes`], as one metric family.
#[derive(Clone, Debug)]
struct BytesWay {
    bytes: PortBytes,
    received: bool,
}

impl EncodeMetric for BytesWay {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        for (role, count) in PortRole::ALL.iter().zip(self.bytes.counts.iter()) {
            let n = if self.received {
                count.received()
            } else {
                count.sent()
            };
            let label = Port { port: role.name() };
            ConstCounter::new(n).encode(encoder.encode_family(&label)?)?;
        }
        Ok(())
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Counter
    }
}

/// A histogram of durations kept in atomics: the crate's own histogram takes a lock per
/// observation, which the delivery path (one observation per record) should not.
#[derive(Clone, Debug)]
pub struct Latency {
    inner: Arc<LatencyInner>,
}

#[derive(Debug)]
struct LatencyInner {
    /// Bucket bounds in microseconds, ascending.
    bounds_us: Vec<u64>,
    /// Observations per bucket (not cumulative); the last one is `+Inf`.
    counts: Vec<AtomicU64>,
    sum_us: AtomicU64,
}

impl Default for Latency {
    fn default() -> Self {
        Self::new(&LATENCY_BUCKETS)
    }
}

impl Latency {
    /// A histogram with these upper bounds (seconds, ascending) and `+Inf`.
    pub fn new(bounds: &[f64]) -> Self {
        let bounds_us: Vec<u64> = bounds.iter().map(|b| (b * 1e6).round() as u64).collect();
        let counts = (0..=bounds_us.len()).map(|_| AtomicU64::new(0)).collect();
        Self {
            inner: Arc::new(LatencyInner {
                bounds_us,
                counts,
                sum_us: AtomicU64::new(0),
            }),
        }
    }

    /// Records one duration.
    pub fn observe(&self, d: Duration) {
        self.observe_us(u64::try_from(d.as_micros()).unwrap_or(u64::MAX));
    }

    /// Records one duration given in microseconds.
    pub fn observe_us(&self, us: u64) {
        let i = self.inner.bounds_us.partition_point(|&b| b < us);
        if let Some(count) = self.inner.counts.get(i) {
            count.fetch_add(1, Ordering::Relaxed);
        }
        self.inner.sum_us.fetch_add(us, Ordering::Relaxed);
    }

    /// The number of observations.
    pub fn count(&self) -> u64 {
        self.inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .sum()
    }
}

impl EncodeMetric for Latency {
    fn encode(&self, mut encoder: MetricEncoder<'_>) -> Result<(), fmt::Error> {
        // Per bucket, not cumulative: the encoder sums them into the `le` series itself.
        let mut total = 0;
        let mut buckets = Vec::with_capacity(self.inner.counts.len());
        for (i, count) in self.inner.counts.iter().enumerate() {
            let count = count.load(Ordering::Relaxed);
            total += count;
            // f64::MAX is how the encoder spells `+Inf`.
            let bound = self
                .inner
                .bounds_us
                .get(i)
                .map_or(f64::MAX, |&us| us as f64 / 1e6);
            buckets.push((bound, count));
        }
        let sum = self.inner.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
        encoder.encode_histogram::<NoLabelSet>(sum, total, &buckets, None)
    }

    fn metric_type(&self) -> MetricType {
        MetricType::Histogram
    }
}

/// Every metric the server keeps.
#[derive(Debug)]
pub struct Metrics {
    registry: Registry,
    /// Sessions online (read at each scrape).
    pub sessions: Gauge,
    /// Logins by outcome: `ok` or the error code answered.
    pub logins: Family<Reason, Counter>,
    /// Messages stored (duplicates, answered from the first copy, are not counted).
    pub messages_stored: Counter,
    /// How long each store commit (one or several messages) took.
    pub store_commit: Latency,
    /// Records written to clients' delivery ports.
    pub deliveries: Counter,
    /// From a record's timestamp (taken when it was stored) to its delivery being written.
    pub delivery_latency: Latency,
    /// Errors answered to clients, by code.
    pub errors: ErrorCounts,
    /// Time spent in plugin hooks, by hook (seconds).
    pub plugin_hook_seconds: HookTimes,
    /// Bytes read from and written to peers' sockets, by port role.
    pub bytes: PortBytes,
    /// File transfers that ended, by direction and outcome.
    pub file_transfers: Family<TransferOutcome, Counter>,
    /// Connections serving file transfers (each serves one transfer at a time).
    pub file_transfer_connections: Gauge,
    /// Shared files' content bytes received in uploads (not counting frames or TLS).
    pub file_bytes_received: Counter,
    /// Shared files' content bytes sent in downloads.
    pub file_bytes_sent: Counter,
    /// Open file descriptors (read at each scrape).
    pub open_fds: Gauge,
    /// Threads of the process (read at each scrape).
    pub threads: Gauge,
    /// Whether the store took the last write (false after an unavailable store refused one).
    store_writable: AtomicBool,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut m = Self {
            registry: Registry::with_prefix("gc"),
            sessions: Gauge::default(),
            logins: Family::default(),
            messages_stored: Counter::default(),
            store_commit: Latency::default(),
            deliveries: Counter::default(),
            delivery_latency: Latency::default(),
            errors: ErrorCounts::default(),
            plugin_hook_seconds: HookTimes::default(),
            bytes: PortBytes::default(),
            file_transfers: Family::default(),
            file_transfer_connections: Gauge::default(),
            file_bytes_received: Counter::default(),
            file_bytes_sent: Counter::default(),
            open_fds: Gauge::default(),
            threads: Gauge::default(),
            store_writable: AtomicBool::new(true),
        };
        let r = &mut m.registry;
        r.register("sessions", "Sessions online", m.sessions.clone());
        r.register(
            "logins",
            "Login attempts by outcome (ok, or the error code answered)",
            m.logins.clone(),
        );
        r.register(
            "messages_stored",
            "Messages stored (not counting retried duplicates)",
            m.messages_stored.clone(),
        );
        r.register(
            "store_commit_seconds",
            "Time of each store commit of one or several messages",
            m.store_commit.clone(),
        );
        r.register(
            "deliveries",
            "Records written to clients' delivery ports",
            m.deliveries.clone(),
        );
        r.register(
            "delivery_latency_seconds",
            "From a record being stored to its delivery being written to a client",
            m.delivery_latency.clone(),
        );
        r.register(
            "errors",
            "Errors answered to clients, by protocol code",
            m.errors.clone(),
        );
        r.register(
            "plugin_hook_seconds",
            "Time spent in plugin hooks, by hook",
            m.plugin_hook_seconds.clone(),
        );
        r.register(
            "bytes_received",
            "Bytes read from peers' sockets (TLS records as sent, handshake included), by port",
            BytesWay {
                bytes: m.bytes.clone(),
                received: true,
            },
        );
        r.register(
            "bytes_sent",
            "Bytes written to peers' sockets (TLS records as sent, handshake included), by port",
            BytesWay {
                bytes: m.bytes.clone(),
                received: false,
            },
        );
        r.register(
            "file_transfers",
            "File transfers that ended, by direction (upload, download) and outcome (completed, \
             refused, failed, interrupted)",
            m.file_transfers.clone(),
        );
        r.register(
            "file_transfer_connections",
            "Connections serving file transfers (one transfer at a time each)",
            m.file_transfer_connections.clone(),
        );
        r.register(
            "file_bytes_received",
            "Shared files' content bytes received in uploads",
            m.file_bytes_received.clone(),
        );
        r.register(
            "file_bytes_sent",
            "Shared files' content bytes sent in downloads",
            m.file_bytes_sent.clone(),
        );
        r.register("open_fds", "Open file descriptors", m.open_fds.clone());
        r.register(
            "threads",
            "Threads of the server process",
            m.threads.clone(),
        );
        m
    }
}

impl Metrics {
    /// Counts a login's outcome: `ok` or the error code.
    pub fn login(&self, reason: &'static str) {
        self.logins.get_or_create(&Reason { reason }).inc();
    }

    /// Counts a file transfer that ended (see [`TransferOutcome`]).
    pub fn transfer(&self, direction: &'static str, outcome: &'static str) {
        self.file_transfers
            .get_or_create(&TransferOutcome { direction, outcome })
            .inc();
    }

    /// Counts an error answered to a client.
    pub fn error(&self, code: ErrorCode) {
        self.errors.inc(code);
    }

    /// Adds the time of one plugin hook call.
    pub fn hook(&self, hook: HookKind, took: Duration) {
        self.plugin_hook_seconds.add(hook, took);
    }

    /// Records whether the store took a write.
    pub fn store_wrote(&self, ok: bool) {
        self.store_writable.store(ok, Ordering::Relaxed);
    }

    /// Whether the store took the last write asked of it.
    pub fn store_writable(&self) -> bool {
        self.store_writable.load(Ordering::Relaxed)
    }

    /// The text exposition, with the gauges read now.
    pub fn encode(&self, sessions: usize) -> Result<String, fmt::Error> {
        self.sessions
            .set(i64::try_from(sessions).unwrap_or(i64::MAX));
        self.open_fds.set(count_dir("/proc/self/fd"));
        self.threads.set(count_dir("/proc/self/task"));
        let mut out = String::new();
        prometheus_client::encoding::text::encode(&mut out, &self.registry)?;
        Ok(out)
    }
}

/// Entries of a /proc directory, -1 when it cannot be read (not Linux, no /proc).
fn count_dir(path: &str) -> i64 {
    std::fs::read_dir(path).map_or(-1, |d| d.count() as i64)
}

/// The metrics endpoint's thread, stopped and joined by [`MetricsServer::stop`].
#[derive(Debug)]
pub struct MetricsServer {
    addr: SocketAddr,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

/// Binds the metrics address: done before anything else starts, so that a port already taken
/// stops the start with a clear error instead of a server running without its metrics.
pub fn bind(addr: SocketAddr) -> Result<TcpListener, ServerError> {
    gc_net::listen(addr, 16).map_err(|source| ServerError::Bind {
        addr,
        role: "metrics",
        source,
    })
}

impl MetricsServer {
    /// Serves `listener` on one thread. Scrapes are answered one at a time, each within
    /// [`IO_TIMEOUT`]: a scraper needs no more, and nothing can pile up connection threads.
    pub fn start(listener: TcpListener, shared: Arc<ServerState>) -> Result<Self, ServerError> {
        let addr = listener.local_addr().map_err(|source| ServerError::Bind {
            addr: SocketAddr::from(([0, 0, 0, 0], 0)),
            role: "metrics",
            source,
        })?;
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::Builder::new()
            .name("metrics".into())
            .spawn(move || {
                loop {
                    let accepted = listener.accept();
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    match accepted {
                        Ok((stream, _)) => serve(&shared, stream),
                        Err(e) => {
                            tracing::warn!("metrics: accept failed: {e}");
                            // Out of descriptors, say: back off instead of spinning; `stop`
                            // unparks it.
                            thread::park_timeout(Duration::from_millis(100));
                        }
                    }
                }
            })
            .map_err(|source| ServerError::Thread {
                name: "metrics".into(),
                source,
            })?;
        Ok(Self {
            addr,
            stop,
            thread: Some(thread),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Stops and joins the thread (a scrape in progress finishes within its timeout).
    pub fn stop(&mut self) {
        let Some(thread) = self.thread.take() else {
            return;
        };
        self.stop.store(true, Ordering::SeqCst);
        thread.thread().unpark();
        gc_net::wake_accept(self.addr);
        if thread.join().is_err() {
            tracing::error!("the metrics thread panicked");
        }
    }
}

impl Drop for MetricsServer {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Answers one HTTP request: `GET /metrics` or `GET /healthz`; anything else 404/405/400.
fn serve(shared: &ServerState, mut stream: TcpStream) {
    if stream.set_read_timeout(Some(IO_TIMEOUT)).is_err()
        || stream.set_write_timeout(Some(IO_TIMEOUT)).is_err()
    {
        return;
    }
    let Some(head) = read_head(&mut stream) else {
        respond(&mut stream, 400, "text/plain", "bad request\n");
        return;
    };
    let (status, kind, body) = answer(shared, &head);
    respond(&mut stream, status, kind, &body);
}

/// What a request head gets: status, content type, body.
fn answer(shared: &ServerState, head: &str) -> (u16, &'static str, String) {
    let mut parts = head.lines().next().unwrap_or("").split(' ');
    let (method, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    // The query string, if any, changes nothing.
    let path = target.split('?').next().unwrap_or("");
    let text = "text/plain; charset=utf-8";
    match (method, path) {
        ("GET", "/metrics") => match shared.metrics.encode(shared.registry.len()) {
            Ok(body) => (
                200,
                "application/openmetrics-text; version=1.0.0; charset=utf-8",
                body,
            ),
            Err(_) => (500, text, "cannot encode the metrics\n".into()),
        },
        ("GET", "/healthz") => {
            if shared.stopping() {
                (503, text, "shutting down\n".into())
            } else if !shared.metrics.store_writable() {
                (
                    503,
                    text,
                    "the message store refused the last write\n".into(),
                )
            } else {
                (200, text, "ok\n".into())
            }
        }
        ("GET", _) => (404, text, "not found: GET /metrics or /healthz\n".into()),
        _ => (405, text, "only GET\n".into()),
    }
}

/// Reads the request head (through the empty line), at most [`MAX_REQUEST_BYTES`]; `None` when
/// it is longer, not text, or the peer stalls or closes first.
fn read_head(stream: &mut TcpStream) -> Option<String> {
    // One deadline for the whole head: a peer trickling a byte at a time cannot hold the thread
    // for a timeout per byte.
    let deadline = Instant::now() + IO_TIMEOUT;
    let mut buf = Vec::with_capacity(512);
    let mut chunk = [0u8; 512];
    loop {
        let left = deadline.checked_duration_since(Instant::now())?;
        if left.is_zero() {
            return None;
        }
        stream.set_read_timeout(Some(left)).ok()?;
        let n = stream.read(&mut chunk).ok()?;
        if n == 0 {
            return None;
        }
        buf.extend_from_slice(chunk.get(..n)?);
        if buf.windows(4).any(|w| w == b"\r\n\r\n") || buf.windows(2).any(|w| w == b"\n\n") {
            return String::from_utf8(buf).ok();
        }
        if buf.len() > MAX_REQUEST_BYTES {
            return None;
        }
    }
}

fn respond(stream: &mut TcpStream, status: u16, kind: &str, body: &str) {
    let reason = match status {
        200 => "OK",
        400 => "Bad Request",
        404 => "Not Found",
        405 => "Method Not Allowed",
        503 => "Service Unavailable",
        _ => "Internal Server Error",
    };
    let head = format!(
        "HTTP/1.1 {status} {reason}\r\nContent-Type: {kind}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n",
        body.len()
    );
    let _ = stream
        .write_all(head.as_bytes())
        .and_then(|()| stream.write_all(body.as_bytes()));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_exposition_names_each_metric_with_its_values() {
        let m = Metrics::default();
        m.login("ok");
        m.login("ok");
        m.login("auth");
        m.messages_stored.inc();
        m.error(ErrorCode::RateLimited);
        m.hook(HookKind::MessageReceived, Duration::from_millis(3));
        m.store_commit.observe(Duration::from_micros(300));
        m.delivery_latency.observe(Duration::from_secs(20));
        let send = m.bytes.of(PortRole::Send);
        let (tcp, _peer) = loopback_pair();
        let mut stream = gc_net::Stream::plain(tcp);
        stream.count_into(send);
        stream.write_all(b"hello").expect("writes");
        let text = m.encode(7).expect("encodes");
        for line in [
            "# TYPE gc_sessions gauge",
            "gc_sessions 7",
            "gc_logins_total{reason=\"ok\"} 2",
            "gc_logins_total{reason=\"auth\"} 1",
            "gc_messages_stored_total 1",
            "gc_errors_total{code=\"rate-limited\"} 1",
            "gc_errors_total{code=\"auth\"} 0",
            "# TYPE gc_store_commit_seconds histogram",
            "gc_store_commit_seconds_bucket{le=\"0.00025\"} 0",
            "gc_store_commit_seconds_bucket{le=\"0.0005\"} 1",
            "gc_store_commit_seconds_bucket{le=\"0.001\"} 1",
            "gc_store_commit_seconds_bucket{le=\"+Inf\"} 1",
            "gc_store_commit_seconds_count 1",
            "gc_store_commit_seconds_sum 0.0003",
            // Beyond the last bound: only in +Inf.
            "gc_delivery_latency_seconds_bucket{le=\"10.0\"} 0",
            "gc_delivery_latency_seconds_bucket{le=\"+Inf\"} 1",
            "gc_plugin_hook_seconds_total{hook=\"message_received\"} 0.003",
            "gc_plugin_hook_seconds_total{hook=\"client_connected\"} 0.0",
            "gc_bytes_sent_total{port=\"send\"} 5",
            "gc_bytes_received_total{port=\"send\"} 0",
            "gc_bytes_sent_total{port=\"delivery\"} 0",
            "# EOF",
        ] {
            assert!(text.lines().any(|l| l == line), "no `{line}` in\n{text}");
        }
        // Read from /proc at the scrape.
        let fds = text
            .lines()
            .find_map(|l| l.strip_prefix("gc_open_fds "))
            .and_then(|v| v.parse::<i64>().ok());
        assert!(fds.is_some_and(|n| n > 0), "{text}");
    }

    /// Both ends of a fresh loopback connection.
    fn loopback_pair() -> (TcpStream, TcpStream) {
        let listener = TcpListener::bind(("127.0.0.1", 0)).expect("binds");
        let addr = listener.local_addr().expect("has an address");
        let stream = TcpStream::connect(addr).expect("connects");
        let (accepted, _) = listener.accept().expect("accepts");
        (stream, accepted)
    }

    #[test]
    fn latency_buckets_take_a_value_at_their_bound() {
        let h = Latency::new(&[0.001, 0.01]);
        h.observe_us(1000);
        h.observe_us(1001);
        h.observe_us(50_000);
        let counts: Vec<u64> = h
            .inner
            .counts
            .iter()
            .map(|c| c.load(Ordering::Relaxed))
            .collect();
        assert_eq!(counts, [1, 1, 1]);
        assert_eq!(h.count(), 3);
    }
}
