//! Helpers for tests that drive the real client library (`gc_client_core::Client`): configurations
//! for a [`TestServer`], and a [`TestClient`] that gathers the client's events and checks that
//! records arrive exactly once, in id order.

#![allow(clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use gc_client_core::{
    BackoffConfig, Client, ClientConfig, ClientError, ClientTls, CloseReport, ConnState, Event,
    ListenPorts, NoticeLevel, PinSource, ServerPin, TransferEvent,
};
use gc_protocol::{ClientMsgId, Record};

use crate::{TestServer, WAIT, client_ip};

/// Logs to stderr when `GC_TEST_LOG` holds a filter (e.g. `gc_client=debug`), for debugging.
pub fn init_logging() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        if let Ok(filter) = std::env::var("GC_TEST_LOG") {
            let _ = tracing_subscriber::fmt()
                .with_env_filter(tracing_subscriber::EnvFilter::new(filter))
                .with_test_writer()
                .try_init();
        }
    });
}

/// A client configuration for `server`: its own loopback address, OS-chosen callback ports,
/// short timeouts and backoff; TLS pinned to the server's certificate unless the server runs
/// with `--tls off`.
pub fn config(server: &TestServer, user: &str, password: &str) -> ClientConfig {
    config_for(&server.target(), user, password)
}

/// [`config`] for the server at `target` (one in another process, say).
pub fn config_for(target: &crate::Target, user: &str, password: &str) -> ClientConfig {
    init_logging();
    let ip = target.addrs.connect.ip().to_string();
    let mut c = ClientConfig::new(ip.as_str(), user, password);
    c.tls = match target.fingerprint {
        Some(fingerprint) => ClientTls::Pinned(ServerPin {
            fingerprint,
            source: PinSource::Given("the test's pin".into()),
        }),
        None => ClientTls::Off,
    };
    c.server_ports = gc_client_core::ServerPorts {
        connect: target.addrs.connect.port(),
        auth: target.addrs.auth.port(),
        send: target.addrs.send.port(),
    };
    c.bind_ip = Some(client_ip());
    c.listen_ports = ListenPorts::any();
    c.io_timeout = Duration::from_secs(2);
    c.idle_timeout = Duration::from_secs(5);
    c.backoff = BackoffConfig {
        min: Duration::from_millis(50),
        max: Duration::from_millis(500),
    };
    c
}

/// A running client and everything it has reported so far.
#[derive(Debug)]
pub struct TestClient {
    pub client: Option<Client>,
    rx: Receiver<Event>,
    /// Every record from `Event::Records`, in arrival order.
    pub records: Vec<Record>,
    /// Acknowledged client-msg-ids with their record ids.
    pub acked: Vec<(ClientMsgId, u64)>,
    /// Every notice text.
    pub notices: Vec<(NoticeLevel, String)>,
    /// Every state change.
    pub states: Vec<ConnState>,
    /// Every other event, for checks.
    pub others: Vec<Event>,
}

impl TestClient {
    pub fn start(config: ClientConfig) -> Self {
        let deadline = Instant::now() + WAIT;
        let (client, rx) = loop {
            match Client::start(config.clone()) {
                Ok(started) => break started,
                // See `Server::run`: a forked child may hold the previous run's cache lock briefly.
                Err(ClientError::Cache(gc_store::StoreError::Locked { .. }))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("client does not start: {e:?}"),
            }
        };
        Self {
            client: Some(client),
            rx,
            records: Vec::new(),
            acked: Vec::new(),
            notices: Vec::new(),
            states: Vec::new(),
            others: Vec::new(),
        }
    }

    pub fn client(&self) -> &Client {
        self.client.as_ref().expect("client running")
    }

    /// Handles events until `done` holds for the state gathered so far; fails on a fatal error
    /// unless `fatal_ok`, and after [`WAIT`].
    fn pump(&mut self, what: &str, mut done: impl FnMut(&Self) -> bool) {
        let deadline = Instant::now() + WAIT;
        while !done(self) {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::Fatal(e)) => panic!("fatal error while waiting for {what}: {e:?}"),
                Ok(event) => self.take(event),
                Err(RecvTimeoutError::Timeout) => panic!(
                    "timed out waiting for {what}; records {:?}, notices {:?}, states {:?}",
                    self.bodies(),
                    self.notices,
                    self.states
                ),
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("client gone while waiting for {what}")
                }
            }
        }
    }

    fn take(&mut self, event: Event) {
        match event {
            Event::Records(r) => {
                // Exactly once, in order: every id above everything before it.
                for rec in &r {
                    if let Some(last) = self.records.last() {
                        assert!(rec.id > last.id, "record {} after {}", rec.id, last.id);
                    }
                    self.records.push(rec.clone());
                }
            }
            Event::Acked(ack) => self.acked.push((ack.client_msg_id, ack.id)),
            Event::Notice { level, text } => self.notices.push((level, text)),
            Event::State(s) => self.states.push(s),
            other => self.others.push(other),
        }
    }

    pub fn wait_active(&mut self) {
        let since = self.states.len();
        self.pump("ACTIVE", |c| c.states[since..].contains(&ConnState::Active));
    }

    /// Waits for a state other than `from` among those after the `since`-th, and returns it.
    pub fn wait_state_other_than(&mut self, since: usize, from: ConnState) -> ConnState {
        self.pump("a state change", |c| {
            c.states[since..].iter().any(|s| *s != from)
        });
        self.states[since..]
            .iter()
            .copied()
            .find(|s| *s != from)
            .expect("found")
    }

    /// Waits for a notice whose text contains `words`; returns its level.
    pub fn wait_notice(&mut self, words: &str) -> NoticeLevel {
        self.pump(&format!("a notice with {words:?}"), |c| {
            c.notices.iter().any(|(_, t)| t.contains(words))
        });
        self.notices
            .iter()
            .find(|(_, t)| t.contains(words))
            .map(|(level, _)| *level)
            .expect("found")
    }

    pub fn wait_records(&mut self, n: usize) {
        self.pump(&format!("{n} records"), |c| c.records.len() >= n);
    }

    pub fn wait_acked(&mut self, n: usize) {
        self.pump(&format!("{n} acknowledgements"), |c| c.acked.len() >= n);
    }

    /// Waits for an event matched by `pick` among the "other" events (presence, history, …).
    pub fn wait_other<T>(&mut self, what: &str, mut pick: impl FnMut(&Event) -> Option<T>) -> T {
        let mut found = None;
        self.pump(what, |c| {
            if found.is_none() {
                found = c.others.iter().find_map(&mut pick);
            }
            found.is_some()
        });
        found.expect("found")
    }

    /// Waits for the end of transfer `id` (uploaded, downloaded, failed or cancelled) and takes
    /// it out of the events seen.
    pub fn finished_transfer(&mut self, id: u64) -> TransferEvent {
        let is_end = |e: &Event| {
            matches!(
                e,
                Event::Transfer(
                    TransferEvent::Uploaded { id: t, .. }
                        | TransferEvent::Downloaded { id: t, .. }
                        | TransferEvent::Failed { id: t, .. }
                        | TransferEvent::Cancelled { id: t, .. },
                ) if *t == id
            )
        };
        self.wait_other("the end of a transfer", |e| is_end(e).then_some(()));
        let pos = self.others.iter().position(is_end).expect("found");
        match self.others.remove(pos) {
            Event::Transfer(t) => t,
            other => panic!("not a transfer: {other:?}"),
        }
    }

    /// Waits for the fatal error that stops the client.
    pub fn wait_fatal(&mut self) -> ClientError {
        let deadline = Instant::now() + WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.rx.recv_timeout(left) {
                Ok(Event::Fatal(e)) => return e,
                Ok(event) => self.take(event),
                Err(e) => panic!(
                    "no fatal error ({e:?}); notices {:?}, states {:?}",
                    self.notices, self.states
                ),
            }
        }
    }

    pub fn send(&self, text: &str) -> ClientMsgId {
        self.client().send(text).expect("message queued")
    }

    pub fn bodies(&self) -> Vec<String> {
        self.records.iter().map(|r| r.body.clone()).collect()
    }

    pub fn ids(&self) -> Vec<u64> {
        self.records.iter().map(|r| r.id).collect()
    }

    /// Closes with `Bye`, returning the unsent count.
    pub fn close(&mut self) -> usize {
        self.close_report().unsent.len()
    }

    /// Closes with `Bye` (after up to 10 s for the outbox to drain), returning what was never
    /// acknowledged and whether the server acknowledged `Bye`.
    pub fn close_report(&mut self) -> CloseReport {
        self.client.take().map_or_else(CloseReport::default, |c| {
            c.close(true, Some(Duration::from_secs(10)))
        })
    }
}

/// Registers `user` with a throwaway client and closes it.
pub fn register(server: &TestServer, user: &str, password: &str) {
    let mut c = config(server, user, password);
    c.register = true;
    let mut client = TestClient::start(c);
    client.wait_active();
    client.close();
}

/// A fresh temporary directory for cache files.
pub fn cache_dir() -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("cache").join("cdatabase.db");
    (dir, path)
}

/// The address of a client's heartbeat listener.
pub fn heartbeat_addr(config: &ClientConfig, client: &Client) -> SocketAddr {
    SocketAddr::new(
        config.bind_ip.expect("tests bind"),
        client.ports().heartbeat,
    )
}

/// The connect port of a server older than rooms (GC/3), in front of a real one: it answers
/// `Ping GC/3` with `Err version`, as a gc-server before rooms did, and the transport's old
/// version (`GC/2` over TLS, with the real server's certificate; `GC/1` plain) with `Pong`. Point
/// a client's connect port at it and its auth and send ports at the real server: the client
/// falls back and logs in as a session without rooms, which the real server serves as GC/1's.
#[derive(Debug)]
pub struct OlderConnectPort {
    /// Its port on 127.0.0.1.
    pub port: u16,
    /// The versions asked, in order.
    asked: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl OlderConnectPort {
    /// In front of `server` (TLS with its certificate when it has one).
    pub fn start(server: &TestServer) -> Self {
        Self::speaking(server, false)
    }

    /// [`OlderConnectPort::start`] for a GC/3 server: it answers `Ping GC/3` too (rooms), and
    /// only `GC/4` with `Err version`.
    pub fn start_gc3(server: &TestServer) -> Self {
        Self::speaking(server, true)
    }

    fn speaking(server: &TestServer, gc3: bool) -> Self {
        use gc_net::identity::{IDENTITY_DIR, Identity};
        use gc_net::tls::{ClientAuth, PeerCheck, Stream, TlsConfig};
        use std::sync::atomic::Ordering;

        let tls = server.fingerprint().map(|_| {
            let dir = server.data_dir().join(IDENTITY_DIR);
            let identity = Identity::load(&dir.join("cert.pem"), &dir.join("key.pem"))
                .expect("the server's identity");
            std::sync::Arc::new(
                TlsConfig::new(Some(&identity), ClientAuth::None).expect("a TLS configuration"),
            )
        });
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = listener.local_addr().expect("local addr").port();
        let asked: std::sync::Arc<std::sync::Mutex<Vec<String>>> = std::sync::Arc::default();
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let (seen, stopping) = (std::sync::Arc::clone(&asked), std::sync::Arc::clone(&stop));
        let thread = std::thread::Builder::new()
            .name("older-connect-port".into())
            .spawn(move || {
                let old = if tls.is_some() {
                    gc_protocol::VERSION_TLS
                } else {
                    gc_protocol::VERSION
                };
                for tcp in listener.incoming() {
                    if stopping.load(Ordering::SeqCst) {
                        return;
                    }
                    let Ok(tcp) = tcp else { return };
                    let deadline = || Instant::now() + Duration::from_secs(5);
                    let stream = match &tls {
                        Some(tls) => match tls.accept(tcp, "client", PeerCheck::Any, deadline()) {
                            Ok(stream) => stream,
                            Err(_) => continue,
                        },
                        None => Stream::plain(tcp),
                    };
                    let mut conn = gc_net::Conn::new(stream, "client");
                    let Ok(ping) = conn.read::<gc_protocol::ConnectPing>(deadline()) else {
                        continue;
                    };
                    if let Ok(mut seen) = seen.lock() {
                        seen.push(ping.version.clone());
                    }
                    let known =
                        ping.version == old || (gc3 && ping.version == gc_protocol::VERSION_ROOMS);
                    let reply = if known {
                        gc_protocol::ConnectReply::Pong {
                            version: ping.version.clone(),
                            server_name: "an older server".into(),
                            registration: gc_protocol::Registration::Open,
                        }
                    } else {
                        gc_protocol::ConnectReply::Err(gc_protocol::ErrorFrame::new(
                            gc_protocol::ErrorCode::Version,
                            format!("this server speaks {old}, not {}", ping.version),
                        ))
                    };
                    let _ = conn.send(&reply, deadline());
                }
            })
            .expect("spawn");
        Self {
            port,
            asked,
            stop,
            thread: Some(thread),
        }
    }

    /// The versions asked so far, in order.
    pub fn asked(&self) -> Vec<String> {
        self.asked.lock().map(|a| a.clone()).unwrap_or_default()
    }
}

impl Drop for OlderConnectPort {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.port));
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}
