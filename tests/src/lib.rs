//! Support code for the end-to-end tests: real servers on loopback with OS-chosen ports, and a
//! raw GC/1 client that speaks the protocol frame by frame (for tests that misbehave on purpose).

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::path::Path;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant};

use std::sync::Arc;

use gc_net::identity::Identity;
use gc_net::tls::{ClientAuth, PeerCheck, Stream, TlsConfig};
use gc_net::{Conn, Timeouts};
use gc_protocol::limits::MIN_SCRAM_ITERATIONS;
use gc_protocol::scram::Binding;
use gc_protocol::scram::{derive_verifier, random_salt};
use gc_protocol::signin::{self, Channel, SignInError};
use gc_protocol::texts::ServerAddrs;
use gc_protocol::{
    AuthServer, CallbackPorts, ClientMsgId, ConnectReply, DeliveryFrame, DeliveryReply, ErrorFrame,
    Fingerprint, Frame, FramedStream, HeartbeatReply, HeartbeatRequest, Record, SendReply,
    SendRequest, SessionLevel, SessionToken, Timestamp, Username,
};
use gc_server::{Config, ServerHandle};

pub mod client;
pub mod pg;
pub mod relay;

/// How long any test waits for anything before failing.
pub const WAIT: Duration = Duration::from_secs(30);

/// A password long enough for a new account (`gc_protocol::limits::MIN_PASSWORD_CHARS`), for
/// tests where any valid password will do.
pub const PASSWORD: &str = "correct-horse-9";

/// A fresh loopback address per client, so many clients can run at once (Linux routes all of
/// 127.0.0.0/8 to loopback). Each test process starts from its own second octet, so test
/// binaries running side by side rarely share an address.
pub fn client_ip() -> IpAddr {
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let second = 100 + (std::process::id() % 100) as u8;
    let third = ((n / 250) % 256) as u8;
    let fourth = 2 + (n % 250) as u8;
    IpAddr::V4(Ipv4Addr::new(127, second, third, fourth))
}

/// A server running in this process on 127.0.0.1 with OS-chosen ports and a temporary data dir.
#[derive(Debug)]
pub struct TestServer {
    /// The configuration it runs with (ports are the bound ones after start).
    pub config: Config,
    handle: Option<ServerHandle>,
    _dir: Option<tempfile::TempDir>,
}

impl TestServer {
    /// A server with test-friendly defaults: fast heartbeats, short timeouts.
    pub fn start() -> Self {
        Self::start_with(|_| {})
    }

    /// A server with defaults changed by `tweak`.
    pub fn start_with(tweak: impl FnOnce(&mut Config)) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        let mut config = test_config(dir.path());
        tweak(&mut config);
        let mut server = Self {
            config,
            handle: None,
            _dir: Some(dir),
        };
        server.run();
        server
    }

    fn run(&mut self) {
        // A child process forked by a parallel test can hold a copy of the previous server's lock
        // until it execs (flock follows the open file): retry briefly.
        let deadline = Instant::now() + WAIT;
        let handle = loop {
            match gc_server::start(self.config.clone()) {
                Ok(h) => break h,
                Err(gc_server::ServerError::Store(gc_store::StoreError::Locked { .. }))
                    if Instant::now() < deadline =>
                {
                    thread::sleep(Duration::from_millis(20));
                }
                Err(e) => panic!("server does not start: {e}"),
            }
        };
        let addrs = handle.addrs();
        self.config.connect_port = addrs.connect.port();
        self.config.auth_port = addrs.auth.port();
        self.config.send_port = addrs.send.port();
        self.handle = Some(handle);
    }

    /// Its ports, as a client configuration takes them.
    pub fn ports(&self) -> gc_client_core::ServerPorts {
        gc_client_core::ServerPorts {
            connect: self.config.connect_port,
            auth: self.config.auth_port,
            send: self.config.send_port,
        }
    }

    /// Where it listens.
    pub fn addrs(&self) -> ServerAddrs {
        ServerAddrs {
            connect: SocketAddr::new(self.config.bind, self.config.connect_port),
            auth: SocketAddr::new(self.config.bind, self.config.auth_port),
            send: SocketAddr::new(self.config.bind, self.config.send_port),
        }
    }

    /// The fingerprint of its certificate (`None` with `--tls off`).
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.handle.as_ref().and_then(ServerHandle::fingerprint)
    }

    /// Where it listens and how to reach it: over TLS pinned to its certificate, unless it runs
    /// with `--tls off`.
    pub fn target(&self) -> Target {
        Target {
            addrs: self.addrs(),
            fingerprint: self.fingerprint(),
        }
    }

    /// The data directory.
    pub fn data_dir(&self) -> &Path {
        &self.config.data_dir
    }

    /// Where it serves `/metrics` and `/healthz` (with `metrics_addr` set).
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.handle.as_ref().and_then(ServerHandle::metrics_addr)
    }

    /// Starts its shutdown without waiting for it ([`TestServer::stop`] then waits).
    pub fn begin_shutdown(&self) {
        if let Some(h) = &self.handle {
            h.begin_shutdown();
        }
    }

    /// Stops it (graceful shutdown), keeping the data dir.
    pub fn stop(&mut self) {
        if let Some(h) = self.handle.take() {
            h.shutdown();
        }
    }

    /// Stops it and starts it again on the same ports and data dir.
    pub fn restart(&mut self) {
        self.stop();
        self.run();
    }

    /// Connections in progress on the connect and auth ports.
    pub fn pending_connections(&self) -> usize {
        self.handle
            .as_ref()
            .map_or(0, ServerHandle::pending_connections)
    }

    /// Live sessions.
    pub fn sessions(&self) -> usize {
        self.handle.as_ref().map_or(0, ServerHandle::sessions)
    }

    /// Waits up to [`WAIT`] until `done(live sessions)` holds; returns whether it did. The server
    /// wakes it whenever a session starts or ends: nothing polls.
    pub fn wait_sessions(&self, done: impl FnMut(usize) -> bool) -> bool {
        self.handle
            .as_ref()
            .is_some_and(|h| h.wait_sessions(done, WAIT))
    }

    /// Lines of database.db.
    pub fn stored_lines(&self) -> Vec<String> {
        std::fs::read_to_string(self.config.data_dir.join("database.db"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        self.stop();
    }
}

impl TestServer {
    /// A server on an existing data dir (e.g. one a killed child process left behind).
    pub fn open(data_dir: &Path) -> Self {
        let mut server = Self {
            config: test_config(data_dir),
            handle: None,
            _dir: None,
        };
        server.run();
        server
    }
}

// ───────────────────────────── a server in a child process ─────────────────────────────

/// A server running in a child process (the package's `gc-test-server` binary: the library's
/// `run_until_signal` with [`test_config`]), so tests can kill it with SIGKILL or stop it with a
/// real signal.
#[derive(Debug)]
pub struct ChildServer {
    pid: u32,
    /// Where it listens.
    pub addrs: ServerAddrs,
    /// Where it listens, and its certificate.
    pub target: Target,
    exited: mpsc::Receiver<std::process::ExitStatus>,
    status: Option<std::process::ExitStatus>,
    /// The lines of its log (standard error), as it writes them.
    log: mpsc::Receiver<String>,
}

impl ChildServer {
    /// Starts `bin` (the `gc-test-server` binary; integration tests know it as
    /// `env!("CARGO_BIN_EXE_gc-test-server")`) on `data_dir` with OS-chosen ports, and waits
    /// until it announces where it listens.
    pub fn spawn(bin: &Path, data_dir: &Path) -> Self {
        Self::spawn_with(bin, data_dir, &[])
    }

    /// [`ChildServer::spawn`] with variables added to the child's environment (e.g.
    /// `GC_TEST_CHILD_STORE`: a shared store URL).
    pub fn spawn_with(bin: &Path, data_dir: &Path, envs: &[(&str, &str)]) -> Self {
        Self::spawn_args(bin, data_dir, std::iter::empty::<&str>(), envs)
    }

    /// [`ChildServer::spawn_with`] with gc-server's options after the data dir (those about
    /// logs take effect: see `gc-test-server`).
    pub fn spawn_args(
        bin: &Path,
        data_dir: &Path,
        args: impl IntoIterator<Item = impl AsRef<std::ffi::OsStr>>,
        envs: &[(&str, &str)],
    ) -> Self {
        use std::io::BufRead;
        use std::process::{Command, Stdio};
        let mut child = Command::new(bin)
            .envs(envs.iter().copied())
            .arg(data_dir)
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn the child server");
        let pid = child.id();
        let stdout = child.stdout.take().expect("piped stdout");
        let stderr = child.stderr.take().expect("piped stderr");
        let (addrs_tx, addrs_rx) = mpsc::channel();
        // The machine-readable listening line on standard output; then keep draining, so the
        // child never blocks on a full pipe.
        thread::spawn(move || {
            for line in std::io::BufReader::new(stdout).lines() {
                let Ok(line) = line else { return };
                if let Some(addrs) = ServerAddrs::from_listening_line(&line) {
                    let _ = addrs_tx.send(addrs);
                }
            }
        });
        let (log_tx, log) = mpsc::channel();
        thread::spawn(move || {
            for line in std::io::BufReader::new(stderr).lines() {
                let Ok(line) = line else { return };
                if std::env::var_os("GC_TEST_LOG").is_some() {
                    // Debugging aid: the child's log beside the test's own output.
                    #[allow(clippy::print_stderr)]
                    {
                        eprintln!("[child {pid}] {line}");
                    }
                }
                let _ = log_tx.send(line);
            }
        });
        let (exit_tx, exited) = mpsc::channel();
        thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = exit_tx.send(status);
            }
        });
        let addrs = addrs_rx
            .recv_timeout(WAIT)
            .expect("the child server reports its ports");
        Self {
            pid,
            addrs,
            target: Target {
                addrs,
                fingerprint: fingerprint_in(data_dir),
            },
            exited,
            status: None,
            log,
        }
    }

    /// Waits up to `timeout` for a line of its log that contains `text`, reading on from the
    /// lines earlier calls looked at. Whether one came.
    pub fn wait_log(&self, text: &str, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.log.recv_timeout(left) {
                Ok(line) if line.contains(text) => return true,
                Ok(_) => {}
                Err(_) => return false,
            }
        }
    }

    /// Its open file descriptors and threads (from /proc).
    pub fn fds_and_threads(&self) -> (usize, usize) {
        let count = |what: &str| {
            std::fs::read_dir(format!("/proc/{}/{what}", self.pid)).map_or(0, Iterator::count)
        };
        (count("fd"), count("task"))
    }

    /// Sends a signal (`KILL`, `INT`, `TERM`) with kill(1).
    pub fn signal(&self, name: &str) {
        assert!(self.try_signal(name), "kill -s {name} {} failed", self.pid);
    }

    fn try_signal(&self, name: &str) -> bool {
        std::process::Command::new("kill")
            .args(["-s", name, &self.pid.to_string()])
            .stderr(std::process::Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }

    /// Waits up to `timeout` for the child to exit.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        if self.status.is_none() {
            self.status = self.exited.recv_timeout(timeout).ok();
        }
        self.status
    }
}

impl Drop for ChildServer {
    fn drop(&mut self) {
        if self.wait_exit(Duration::ZERO).is_none() {
            // It may be exiting already; then kill fails harmlessly.
            self.try_signal("KILL");
            let _ = self.wait_exit(WAIT);
        }
    }
}

/// The configuration of [`ChildServer`]s: [`test_config`], with no rate limit (load tests send
/// as fast as they can) and the listening line on standard output.
pub fn child_config(data_dir: &Path) -> Config {
    let mut config = test_config(data_dir);
    config.rate_burst = 1_000_000;
    config.rate_per_sec = 1_000_000.0;
    config.print_addrs = true;
    // A shared store, for the tests that kill an instance of several ([`ChildServer::spawn_with`]
    // sets it in the child's environment only).
    config.store = std::env::var("GC_TEST_CHILD_STORE").ok();
    // For the tests that need a plugin hook to hold the server longer than the default limit.
    if let Some(ms) = std::env::var("GC_TEST_CHILD_PLUGIN_HOOK_LIMIT_MS")
        .ok()
        .and_then(|ms| ms.parse().ok())
    {
        config.plugin_hook_limit = Duration::from_millis(ms);
    }
    config
}

/// The configuration tests start from.
pub fn test_config(data_dir: &Path) -> Config {
    Config {
        bind: IpAddr::V4(Ipv4Addr::LOCALHOST),
        connect_port: 0,
        auth_port: 0,
        send_port: 0,
        data_dir: data_dir.to_path_buf(),
        heartbeat_interval: Duration::from_millis(100),
        io_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(5),
        ..Config::default()
    }
}

/// The fingerprint of the TLS identity a server made in `data_dir` (`None` if it has none).
pub fn fingerprint_in(data_dir: &Path) -> Option<Fingerprint> {
    let dir = data_dir.join(gc_net::identity::IDENTITY_DIR);
    Identity::load(&dir.join("cert.pem"), &dir.join("key.pem"))
        .ok()
        .map(|id| id.fingerprint())
}

// ───────────────────────────── raw protocol client ─────────────────────────────

/// A server as a raw client reaches it: its ports, and its certificate when it speaks TLS.
#[derive(Clone, Copy, Debug)]
pub struct Target {
    /// Its ports.
    pub addrs: ServerAddrs,
    /// Its certificate: connections are TLS, pinned to it. `None`: plain GC/1.
    pub fingerprint: Option<Fingerprint>,
}

impl Target {
    /// The same server, reached with plain GC/1 (as an old client would).
    pub fn plain(self) -> Self {
        Self {
            fingerprint: None,
            ..self
        }
    }

    /// A byte stream to `to` from `local`: TLS pinned to the server's certificate, or plain.
    /// For tests that write raw bytes past the framing.
    pub fn stream(&self, local: IpAddr, to: SocketAddr) -> std::io::Result<Stream> {
        let tcp = connect_from(local, to)?;
        match self.fingerprint {
            None => Ok(Stream::plain(tcp)),
            Some(pin) => tls_connector()
                .connect(tcp, &to.to_string(), PeerCheck::Pinned(pin), deadline())
                .map_err(std::io::Error::other),
        }
    }
}

/// A TLS configuration for connecting only (no certificate of its own).
fn tls_connector() -> Arc<TlsConfig> {
    static CONFIG: std::sync::OnceLock<Arc<TlsConfig>> = std::sync::OnceLock::new();
    Arc::clone(CONFIG.get_or_init(|| {
        Arc::new(TlsConfig::new(None, ClientAuth::None).expect("a TLS client configuration"))
    }))
}

/// A raw client's TLS: its per-run callback certificate, and the server's.
#[derive(Debug)]
struct RawTls {
    config: Arc<TlsConfig>,
    callback_fingerprint: Fingerprint,
    server: Fingerprint,
}

/// A client written frame by frame, with its three callback listeners on its own loopback address.
/// It answers heartbeats and collects deliveries on background threads, like a real client, but
/// lets tests send anything they like.
#[derive(Debug)]
pub struct RawClient {
    /// Its address.
    pub ip: IpAddr,
    /// The server.
    pub server: ServerAddrs,
    /// Its callback ports.
    pub ports: CallbackPorts,
    tls: Option<Arc<RawTls>>,
    /// Announced at login instead of the callback certificate's fingerprint (a test's lie).
    announced: Option<Fingerprint>,
    /// Logs in as a GC/3 session (rooms), or a GC/4 one.
    level: SessionLevel,
    auth_listener: TcpListener,
    hb_listener: Option<TcpListener>,
    dl_listener: Option<TcpListener>,
    /// The session token once logged in.
    pub token: Option<SessionToken>,
    records: mpsc::Receiver<Record>,
    records_tx: mpsc::Sender<Record>,
    last_id: std::sync::Arc<std::sync::atomic::AtomicU64>,
    answering: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// The token heartbeats are answered for: the latest login's (a client that logs in again,
    /// after a server restart say, answers for its new session).
    live_token: std::sync::Arc<std::sync::Mutex<Option<SessionToken>>>,
    close_deliveries: std::sync::Arc<std::sync::atomic::AtomicBool>,
    /// Delivery connections taken so far, and those still open.
    deliveries: std::sync::Arc<DeliveryCount>,
    /// The texts of the `Stopping` notices its heartbeat port was sent (GC/4).
    stops: mpsc::Receiver<String>,
    stops_tx: mpsc::Sender<String>,
}

impl RawClient {
    /// Binds the three listeners on a fresh loopback address; speaks TLS (GC/2) when `target`
    /// has a certificate, plain GC/1 otherwise.
    pub fn new(target: Target) -> Self {
        Self::on(target, client_ip())
    }

    /// [`RawClient::new`] on the loopback address `ip` (several clients of one host).
    pub fn on(target: Target, ip: IpAddr) -> Self {
        let server = target.addrs;
        let tls = target.fingerprint.map(|pin| {
            let identity = Identity::generate("gc-test-client").expect("a callback identity");
            Arc::new(RawTls {
                config: Arc::new(
                    TlsConfig::new(Some(&identity), ClientAuth::Required)
                        .expect("a callback TLS configuration"),
                ),
                callback_fingerprint: identity.fingerprint(),
                server: pin,
            })
        });
        let bind = || TcpListener::bind((ip, 0)).expect("bind a callback port");
        let (a, h, d) = (bind(), bind(), bind());
        let port = |l: &TcpListener| l.local_addr().expect("local addr").port();
        let ports = CallbackPorts {
            auth: port(&a),
            heartbeat: port(&h),
            delivery: port(&d),
        };
        let (records_tx, records) = mpsc::channel();
        let (stops_tx, stops) = mpsc::channel();
        Self {
            ip,
            server,
            ports,
            tls,
            announced: None,
            level: SessionLevel::Base,
            auth_listener: a,
            hb_listener: Some(h),
            dl_listener: Some(d),
            token: None,
            records,
            records_tx,
            last_id: Default::default(),
            answering: std::sync::Arc::new(std::sync::atomic::AtomicBool::new(true)),
            live_token: std::sync::Arc::default(),
            close_deliveries: Default::default(),
            deliveries: Default::default(),
            stops,
            stops_tx,
        }
    }

    /// Where it connects to, and how.
    pub fn target(&self) -> Target {
        Target {
            addrs: self.server,
            fingerprint: self.tls.as_ref().map(|t| t.server),
        }
    }

    /// Announces `fingerprint` at login as its callback certificate, which its listeners do not
    /// present.
    pub fn announce_callback(&mut self, fingerprint: Fingerprint) {
        self.announced = Some(fingerprint);
    }

    /// Logs in as a GC/3 session from now on: shown every room it is in, and allowed to name
    /// rooms in its requests.
    pub fn speak_rooms(&mut self) {
        self.level = SessionLevel::Rooms;
    }

    /// Logs in as a GC/4 session from now on: rooms, and the password change, the away state and
    /// the stop notice.
    pub fn speak_gc4(&mut self) {
        self.level = SessionLevel::Gc4;
    }

    /// Logs in as a GC/5 session from now on: GC/4 and file transfer.
    pub fn speak_gc5(&mut self) {
        self.level = SessionLevel::Gc5;
    }

    /// The text of a `Stopping` notice sent to its heartbeat port within `within`, if one comes.
    pub fn stop_notice(&self, within: Duration) -> Option<String> {
        self.stops.recv_timeout(within).ok()
    }

    /// Whether it speaks TLS (GC/2).
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// A connection to one of the server's ports, from this client's address.
    pub fn connect(&self, to: SocketAddr) -> Conn {
        self.try_connect(to).expect("connect to the server")
    }

    fn try_connect(&self, to: SocketAddr) -> std::io::Result<Conn> {
        Ok(Conn::new(
            self.target().stream(self.ip, to)?,
            to.to_string(),
        ))
    }

    /// The version it speaks: `GC/2` over TLS, `GC/1` plain.
    pub fn version(&self) -> &'static str {
        if self.is_tls() {
            gc_protocol::VERSION_TLS
        } else {
            gc_protocol::VERSION
        }
    }

    /// `Ping` on the connect port: the server's `Pong`, or its `Err`.
    pub fn ping(&self) -> ConnectReply {
        let mut c = self.connect(self.server.connect);
        match signin::version_check(&mut c, self.version(), STEP) {
            Ok(hello) => ConnectReply::Pong {
                version: self.version().into(),
                server_name: hello.name,
                registration: hello.registration,
            },
            Err(SignInError::Refused { error, .. }) => ConnectReply::Err(error),
            Err(e) => panic!("version check: {e:?}"),
        }
    }

    /// Registers `user` with `password`: `Registered`, or the server's `Err`.
    pub fn register(&self, user: &str, password: &str) -> AuthServer {
        let salt = random_salt().expect("salt");
        let verifier = derive_verifier(password, &salt, MIN_SCRAM_ITERATIONS);
        let username = Username::new(user).expect("valid username");
        let mut c = self.connect(self.server.auth);
        match signin::register(&mut c, &username, &verifier, STEP) {
            Ok(()) => AuthServer::Registered,
            Err(SignInError::Refused { error, .. }) => AuthServer::Err(error),
            Err(e) => panic!("registration: {e:?}"),
        }
    }

    /// Logs in; on success starts answering heartbeats and collecting deliveries. Returns the
    /// server's final answer on the auth port (`Ok`, or its `Err`).
    /// Asks to log in as `user` and stops at the challenge: its salt and iteration count, or
    /// the server's refusal.
    pub fn challenge(&self, user: &str) -> Result<(Vec<u8>, u32), ErrorFrame> {
        let username = Username::new(user).expect("valid username");
        let mut c = self.connect(self.server.auth);
        let channel = match (&self.tls, c.get_ref().binding()) {
            (Some(tls), Binding::TlsExporter(binding)) => Channel::Tls {
                binding,
                callback_fingerprint: self.announced.unwrap_or(tls.callback_fingerprint),
            },
            _ => Channel::Plain,
        };
        match signin::request_login(&mut c, &username, self.ports, &channel, self.level, STEP) {
            Ok(challenge) => Ok(challenge.salt_and_iterations().expect("a valid challenge")),
            Err(SignInError::Refused { error, .. }) => Err(error),
            Err(e) => panic!("login request: {e:?}"),
        }
    }

    pub fn login(&mut self, user: &str, password: &str) -> AuthServer {
        let username = Username::new(user).expect("valid username");
        let mut c = self.connect(self.server.auth);
        let channel = match (&self.tls, c.get_ref().binding()) {
            (Some(tls), Binding::TlsExporter(binding)) => Channel::Tls {
                binding,
                callback_fingerprint: self.announced.unwrap_or(tls.callback_fingerprint),
            },
            _ => Channel::Plain,
        };
        let challenge = match signin::request_login(
            &mut c, &username, self.ports, &channel, self.level, STEP,
        ) {
            Ok(challenge) => challenge,
            Err(SignInError::Refused { error, .. }) => return AuthServer::Err(error),
            Err(e) => panic!("login request: {e:?}"),
        };
        let proof = challenge
            .prove(password, MIN_SCRAM_ITERATIONS)
            .expect("server-first is valid");
        // The server calls back while we wait for its answer on the auth port.
        let check = proof.callback_check();
        let listener = self.auth_listener.try_clone().expect("clone listener");
        let tls = self.tls.clone();
        let callback = thread::spawn(move || {
            let (s, peer) = listener.accept().ok()?;
            let stream = accept_callback(tls.as_deref(), s, peer)?;
            match check.serve(&mut Conn::new(stream, peer.to_string()), STEP) {
                Ok(token) => Some(Ok(token)),
                Err(SignInError::ServerSignature(e)) => Some(Err(e)),
                Err(_) => None,
            }
        });
        let awaiting = proof.send(&mut c, STEP).expect("send Proof");
        let own = self.auth_listener.local_addr();
        let finished = awaiting.finish(&mut c, STEP, |ok| {
            if !ok && let Ok(own) = own {
                // No `Authed` comes after a failure: unblock the accept by connecting to
                // ourselves. (Over TLS the server may have opened its callback connection
                // already, and dropped it unused: then the accept has taken that one, and our
                // own connection waits in the backlog, taken out below.)
                let _ = TcpStream::connect(own);
            }
            let called = callback.join().ok().flatten();
            if !ok {
                self.drain_auth_backlog();
            }
            called
        });
        match finished {
            Ok(signed_in) => {
                self.token = Some(signed_in.token);
                self.serve_callbacks();
                AuthServer::Ok {
                    heartbeat_ms: signed_in.heartbeat_ms,
                    latest_id: signed_in.latest_id,
                }
            }
            Err(SignInError::Refused { error, .. }) => AuthServer::Err(error),
            Err(e) => panic!("login: {e:?}"),
        }
    }

    /// Accepts and drops whatever waits on the auth-callback listener, so the next login's
    /// callback is the first connection it takes.
    fn drain_auth_backlog(&self) {
        if self.auth_listener.set_nonblocking(true).is_ok() {
            while self.auth_listener.accept().is_ok() {}
            let _ = self.auth_listener.set_nonblocking(false);
        }
    }

    fn serve_callbacks(&mut self) {
        let token = std::sync::Arc::clone(&self.live_token);
        if let Ok(mut live) = token.lock() {
            live.clone_from(&self.token);
        }
        if let Some(hb) = self.hb_listener.take() {
            let last_id = std::sync::Arc::clone(&self.last_id);
            let answering = std::sync::Arc::clone(&self.answering);
            let token = token.clone();
            let tls = self.tls.clone();
            let stops = self.stops_tx.clone();
            thread::spawn(move || {
                for s in hb.incoming() {
                    let Ok(s) = s else { return };
                    let last_id = std::sync::Arc::clone(&last_id);
                    let answering = std::sync::Arc::clone(&answering);
                    let token = token.clone();
                    let tls = tls.clone();
                    let stops = stops.clone();
                    thread::spawn(move || {
                        let peer = s.peer_addr().ok()?;
                        let stream = accept_callback(tls.as_deref(), s, peer)?;
                        serve_heartbeats(stream, &token, &last_id, &answering, &stops);
                        Some(())
                    });
                }
            });
        }
        if let Some(dl) = self.dl_listener.take() {
            let tx = self.records_tx.clone();
            let last_id = std::sync::Arc::clone(&self.last_id);
            let close = std::sync::Arc::clone(&self.close_deliveries);
            let count = std::sync::Arc::clone(&self.deliveries);
            let tls = self.tls.clone();
            thread::spawn(move || {
                for s in dl.incoming() {
                    let Ok(s) = s else { return };
                    let (tx, last_id) = (tx.clone(), std::sync::Arc::clone(&last_id));
                    let close = std::sync::Arc::clone(&close);
                    let count = std::sync::Arc::clone(&count);
                    let tls = tls.clone();
                    thread::spawn(move || {
                        let peer = s.peer_addr().ok()?;
                        let stream = accept_callback(tls.as_deref(), s, peer)?;
                        count.opened();
                        serve_deliveries(stream, &tx, &last_id, &close);
                        count.closed();
                        Some(())
                    });
                }
            });
        }
    }

    /// Sends request frames on one connection to the send port and reads `n` reply frames.
    pub fn request(&self, frames: &[SendRequest], n: usize) -> Vec<SendReply> {
        let mut c = self.connect(self.server.send);
        let mut bytes = Vec::new();
        for f in frames {
            f.encode(&mut bytes);
        }
        c.write_all(&bytes, deadline()).expect("send requests");
        (0..n)
            .map(|_| c.read(deadline()).expect("read a reply"))
            .collect()
    }

    /// Sends one message and returns the reply.
    pub fn send(&self, text: &str) -> SendReply {
        self.send_with_id(&ClientMsgId::random().expect("random id"), text)
    }

    /// Sends one message; `None` if the server cannot be reached or closes the connection.
    pub fn try_send(&self, text: &str) -> Option<SendReply> {
        let msg = SendRequest::Msg {
            token: self.token.clone()?,
            client_msg_id: ClientMsgId::random().ok()?,
            body: text.as_bytes().to_vec(),
            room: None,
        };
        let mut c = self.try_connect(self.server.send).ok()?;
        c.send(&msg, deadline()).ok()?;
        c.read(deadline()).ok()
    }

    /// Sends one message with a chosen client-msg-id.
    pub fn send_with_id(&self, id: &ClientMsgId, text: &str) -> SendReply {
        let msg = SendRequest::Msg {
            token: self.token.clone().expect("logged in"),
            client_msg_id: id.clone(),
            body: text.as_bytes().to_vec(),
            room: None,
        };
        self.request(&[msg], 1).remove(0)
    }

    /// Waits until `n` delivered records have arrived and returns them.
    pub fn receive(&self, n: usize) -> Vec<Record> {
        self.receive_within(n, WAIT)
    }

    /// Waits at most `within` until `n` delivered records have arrived and returns them.
    pub fn receive_within(&self, n: usize, within: Duration) -> Vec<Record> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while out.len() < n {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.records.recv_timeout(left) {
                Ok(r) => out.push(r),
                Err(_) => panic!("received {} of {n} records: {out:?}", out.len()),
            }
        }
        out
    }

    /// Records that arrive within `within` (for checking that nothing more comes).
    pub fn receive_more(&self, within: Duration) -> Vec<Record> {
        let deadline = Instant::now() + within;
        let mut out = Vec::new();
        while let Ok(r) = self
            .records
            .recv_timeout(deadline.saturating_duration_since(Instant::now()))
        {
            out.push(r);
        }
        out
    }

    /// Stops answering heartbeats (as a hung or vanished client would).
    pub fn stop_answering(&self) {
        self.answering.store(false, Ordering::SeqCst);
    }

    /// Answers heartbeats and takes deliveries again (after [`RawClient::stop_answering`]).
    pub fn answer_again(&self) {
        self.answering.store(true, Ordering::SeqCst);
    }

    /// Closes each delivery connection right after its `Thx`, so the server finds its kept
    /// connection closed at the next delivery.
    pub fn close_each_delivery(&self) {
        self.close_deliveries.store(true, Ordering::SeqCst);
    }

    /// The cursor this client reports in `Pong`.
    pub fn last_id(&self) -> u64 {
        self.last_id.load(Ordering::SeqCst)
    }

    /// Delivery connections the server has opened to this client so far.
    pub fn delivery_connections(&self) -> usize {
        self.deliveries.lock().0
    }

    /// Waits up to `within` until `open` delivery connections are open; whether they are.
    pub fn wait_open_deliveries(&self, open: usize, within: Duration) -> bool {
        let guard = self.deliveries.lock();
        let (guard, _) = self
            .deliveries
            .changed
            .wait_timeout_while(guard, within, |(_, now)| *now != open)
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        guard.1 == open
    }
}

/// A raw client's delivery connections: `(taken so far, open now)`, and a signal on each change.
#[derive(Debug, Default)]
struct DeliveryCount {
    count: std::sync::Mutex<(usize, usize)>,
    changed: std::sync::Condvar,
}

impl DeliveryCount {
    fn lock(&self) -> std::sync::MutexGuard<'_, (usize, usize)> {
        self.count
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// One more taken and open.
    fn opened(&self) {
        let mut c = self.lock();
        c.0 += 1;
        c.1 += 1;
        self.changed.notify_all();
    }

    /// One fewer open.
    fn closed(&self) {
        let mut c = self.lock();
        c.1 = c.1.saturating_sub(1);
        self.changed.notify_all();
    }
}

/// A callback connection as the raw client takes it: TLS demanding the server's certificate, or
/// plain. `None` if the handshake fails.
fn accept_callback(tls: Option<&RawTls>, s: TcpStream, peer: SocketAddr) -> Option<Stream> {
    match tls {
        None => Some(Stream::plain(s)),
        Some(tls) => tls
            .config
            .accept(
                s,
                &peer.to_string(),
                PeerCheck::Pinned(tls.server),
                deadline(),
            )
            .ok(),
    }
}

fn serve_heartbeats(
    s: Stream,
    token: &std::sync::Mutex<Option<SessionToken>>,
    last_id: &std::sync::atomic::AtomicU64,
    answering: &std::sync::atomic::AtomicBool,
    stops: &mpsc::Sender<String>,
) {
    let peer = s
        .tcp()
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut conn = FramedStream::new(s, peer);
    // Any frame is taken (a GC/1 client would refuse `Stopping`), so a test sees what was sent.
    while let Ok(request) = conn.read::<HeartbeatRequest>(Instant::now() + Duration::from_secs(30))
    {
        if !answering.load(Ordering::SeqCst) {
            return; // a client that hung: the server sees the connection close unanswered
        }
        if let HeartbeatRequest::Stopping(stopping) = &request {
            let _ = stops.send(stopping.text.clone());
        }
        let mine = token
            .lock()
            .is_ok_and(|t| t.as_ref().is_some_and(|t| request.token().ct_eq(t)));
        let reply = if mine {
            HeartbeatReply::Pong {
                last_id: last_id.load(Ordering::SeqCst),
                client_time: Timestamp::now(),
            }
        } else {
            HeartbeatReply::Err(ErrorFrame::new(gc_protocol::ErrorCode::Session, "not mine"))
        };
        if conn.send(&reply, deadline()).is_err() {
            return;
        }
    }
}

fn serve_deliveries(
    s: Stream,
    tx: &mpsc::Sender<Record>,
    last_id: &std::sync::atomic::AtomicU64,
    close: &std::sync::atomic::AtomicBool,
) {
    let peer = s
        .tcp()
        .peer_addr()
        .map(|a| a.to_string())
        .unwrap_or_default();
    let mut conn = FramedStream::new(s, peer);
    loop {
        let Ok(DeliveryFrame::Batch { n, .. }) =
            conn.read::<DeliveryFrame>(Instant::now() + Duration::from_secs(30))
        else {
            return;
        };
        let closing = close.load(Ordering::SeqCst);
        // A closing client hands its records on only once the connection is closed, so a test
        // that reacts to them acts after the close, as a slower client would.
        let mut held = Vec::new();
        for _ in 0..n {
            match conn.read::<DeliveryFrame>(deadline()) {
                Ok(DeliveryFrame::Rec(r)) => {
                    if r.id > last_id.load(Ordering::SeqCst) {
                        last_id.store(r.id, Ordering::SeqCst);
                        if closing {
                            held.push(r);
                        } else {
                            let _ = tx.send(r);
                        }
                    }
                }
                _ => return,
            }
        }
        if !matches!(
            conn.read::<DeliveryFrame>(deadline()),
            Ok(DeliveryFrame::End)
        ) {
            return;
        }
        let thx = DeliveryReply::Thx {
            last_id: last_id.load(Ordering::SeqCst),
        };
        let answered = conn.send(&thx, deadline()).is_ok();
        if closing {
            drop(conn);
            for r in held {
                let _ = tx.send(r);
            }
            return;
        }
        if !answered {
            return;
        }
    }
}

/// How long each step of the raw client's exchanges may take.
const STEP: Duration = Duration::from_secs(5);

fn deadline() -> Instant {
    Timeouts::new(STEP).deadline()
}

/// Connects from a chosen local address (the server tells sessions apart by address).
pub fn connect_from(local: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    gc_net::connect_from(Some(local), to, STEP)
}

// ───────────────────────────── plugins ─────────────────────────────

/// The shared library of a plugin crate this package depends on (cargo builds a dependency's
/// cdylib next to the test binaries), e.g. `plugin_library("word_filter")`.
pub fn plugin_library(lib_name: &str) -> std::path::PathBuf {
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().expect("test binary directory");
    let file = format!(
        "{}{lib_name}.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    );
    [dir.to_path_buf(), dir.join("..")]
        .into_iter()
        .map(|d| d.join(&file))
        .find(|p| p.exists())
        .unwrap_or_else(|| panic!("{file} was not built next to {}", dir.display()))
}

/// The `shout` example plugin (C, built by its crate's build script), for tests of other
/// packages that load it (the terminal UI's).
pub fn shout_library() -> &'static Path {
    Path::new(gc_mod_shout::LIBRARY)
}

/// A broken plugin built from `tests/fixtures/<name>.c`.
pub fn fixture_library(name: &str) -> std::path::PathBuf {
    Path::new(env!("GC_FIXTURES_DIR")).join(format!(
        "{}{name}.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    ))
}

/// Log lines of everything in this process, for checking what plugins logged. Installed once.
pub fn captured_logs() -> String {
    String::from_utf8_lossy(&log_buffer().lock().expect("log buffer")).into_owned()
}

fn log_buffer() -> &'static std::sync::Mutex<Vec<u8>> {
    static BUFFER: std::sync::OnceLock<std::sync::Mutex<Vec<u8>>> = std::sync::OnceLock::new();
    BUFFER.get_or_init(|| std::sync::Mutex::new(Vec::new()))
}

/// Starts capturing this process's logs (idempotent), formatted as the binaries format them
/// (`gc_net::logfmt`: peers' text escaped).
pub fn capture_logs() {
    struct Sink;
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = log_buffer().lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let _ = tracing_subscriber::fmt()
            .fmt_fields(gc_net::logfmt::escaped_fields())
            .with_writer(|| Sink)
            .with_ansi(false)
            .try_init();
    });
}
