//! Real servers in this process and real clients, over loopback only.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::time::{Duration, Instant};

use gc_client::{
    BackoffConfig, Client, ClientConfig, ClientError, ConnState, Event, ListenPorts, NoticeLevel,
    ServerPorts,
};
use gc_protocol::{ClientMsgId, Record};
use gc_server::{Config, ServerHandle};

/// The longest any test waits for anything.
pub const WAIT: Duration = Duration::from_secs(30);

/// A loopback address of its own for every client (Linux routes all of 127/8 to loopback), in a
/// range no other test binary of the workspace uses.
pub fn client_ip() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let second = 100 + (std::process::id() % 100) as u8;
    let third = ((n / 250) % 256) as u8;
    let fourth = 2 + (n % 250) as u8;
    IpAddr::V4(Ipv4Addr::new(127, second, third, fourth))
}

/// A gc-server in this process on 127.0.0.1 with OS-chosen ports and a temporary data dir.
#[derive(Debug)]
pub struct Server {
    pub config: Config,
    handle: Option<ServerHandle>,
    _dir: tempfile::TempDir,
}

impl Server {
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A server with its configuration changed by `tweak` first.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = Config {
            bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
            connect_port: 0,
            auth_port: 0,
            send_port: 0,
            data_dir: dir.path().join("data"),
            heartbeat_interval: Duration::from_millis(100),
            io_timeout: Duration::from_secs(2),
            idle_timeout: Duration::from_secs(5),
            ..Config::default()
        };
        tweak(&mut config);
        let mut server = Self {
            config,
            handle: None,
            _dir: dir,
        };
        server.run();
        server
    }

    fn run(&mut self) {
        let deadline = Instant::now() + WAIT;
        let handle = loop {
            match gc_server::start(self.config.clone()) {
                Ok(h) => break h,
                // A child process spawned by a test running in parallel holds a duplicate of every
                // descriptor between its fork and exec, and flock locks follow the open file: the
                // previous server's lock can outlive it by that moment.
                Err(gc_server::ServerError::Store(gc_store::StoreError::Locked { .. }))
                    if Instant::now() < deadline =>
                {
                    std::thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("server does not start: {e:?}"),
            }
        };
        let addrs = handle.addrs();
        // Keep the ports, so a restart comes back on the same ones.
        self.config.connect_port = addrs.connect.port();
        self.config.auth_port = addrs.auth.port();
        self.config.send_port = addrs.send.port();
        self.handle = Some(handle);
    }

    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }

    /// Starts again on the same ports and data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    pub fn ports(&self) -> ServerPorts {
        ServerPorts {
            connect: self.config.connect_port,
            auth: self.config.auth_port,
            send: self.config.send_port,
        }
    }

    /// Live sessions.
    pub fn sessions(&self) -> usize {
        self.handle.as_ref().map_or(0, ServerHandle::sessions)
    }

    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Lines of database.db.
    pub fn stored_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.data_dir().join("database.db"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// Waits until `check` holds (polling: for server-side state with no event to wait on).
pub fn wait_until(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + WAIT;
    while !check() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

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
/// short timeouts and backoff.
pub fn config(server: &Server, user: &str, password: &str) -> ClientConfig {
    init_logging();
    let mut c = ClientConfig::new("127.0.0.1", user, password);
    c.server_ports = server.ports();
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
            Event::Acked {
                client_msg_id, id, ..
            } => self.acked.push((client_msg_id, id)),
            Event::Notice { level, text } => self.notices.push((level, text)),
            Event::State(s) => self.states.push(s),
            other => self.others.push(other),
        }
    }

    pub fn wait_active(&mut self) {
        let since = self.states.len();
        self.pump("ACTIVE", |c| c.states[since..].contains(&ConnState::Active));
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
        self.client.take().map_or(0, |c| {
            c.close(true, Some(Duration::from_secs(10))).unsent.len()
        })
    }
}

/// Registers `user` with a throwaway client and closes it.
pub fn register(server: &Server, user: &str, password: &str) {
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
