//! Starting and stopping the server: the three listening ports, their accept threads, and the
//! shutdown that tests and signal handlers share.

use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gc_net::Conn;
use gc_plugin::Plugins;
use gc_protocol::texts::ServerAddrs;
use gc_protocol::{
    ConnectPing, ConnectReply, ErrorCode, ErrorFrame, Fingerprint, ProtocolError, Registration,
    SessionLevel, VERSION, VERSION_GC4, VERSION_GC5, VERSION_ROOMS, VERSION_TLS,
};
use gc_store::{AccountStore, Accounts, DataDirLock, MessageLog, MessageStore, Rooms, StoreConfig};

use crate::config::Config;
use crate::error::ServerError;
use crate::limits::{PendingSlot, Refusal};
use crate::metrics::{MetricsServer, PortRole};
use crate::notify::Doorbell;
use crate::state::{Incoming, ServerState, Stores, refuse};
use crate::warnings::peer_warn;
use crate::{auth, paths};

/// Pending connections the kernel queues per listening port before the accept threads take them.
const LISTEN_BACKLOG: i32 = 1024;

/// How long a shutdown waits at most, in all, for the heartbeat threads of GC/4 sessions to tell
/// their clients that the server stops (each on its own thread, so in parallel); sessions not
/// told by then are ended anyway, cutting any exchange still under way.
const STOP_NOTICE_WAIT: Duration = Duration::from_secs(1);

/// A running server. Dropping it shuts it down.
#[derive(Debug)]
pub struct ServerHandle {
    shared: Arc<ServerState>,
    addrs: ServerAddrs,
    fingerprint: Option<Fingerprint>,
    accept_threads: Vec<JoinHandle<()>>,
    stopped: bool,
    /// The data dir's lock when the store does not hold it (PostgreSQL).
    _lock: Option<DataDirLock>,
    /// Presence across instances, with a shared store.
    presence_thread: Option<JoinHandle<()>>,
    /// The `/metrics` and `/healthz` endpoint, with `--metrics-addr`.
    metrics: Option<MetricsServer>,
}

impl ServerHandle {
    /// Where the server listens.
    pub fn addrs(&self) -> ServerAddrs {
        self.addrs
    }

    /// The fingerprint of the certificate it presents, unless it runs with `--tls off`.
    pub fn fingerprint(&self) -> Option<Fingerprint> {
        self.fingerprint
    }

    /// Where `/metrics` is served, with `--metrics-addr`.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.as_ref().map(MetricsServer::addr)
    }

    /// Number of live sessions.
    pub fn sessions(&self) -> usize {
        self.shared.registry.len()
    }

    /// Connections in progress on the connect and auth ports (version checks, registrations,
    /// logins): at most `max-pending-auths`.
    pub fn pending_connections(&self) -> usize {
        self.shared.pending.total()
    }

    /// Waits up to `timeout` until `done(number of live sessions)` holds; returns whether it
    /// did. It wakes whenever a session starts or ends (no polling), and gives up early once the
    /// server has stopped with no session left. For tests and tools that must know, e.g., that a
    /// client which stopped answering heartbeats has been dropped.
    pub fn wait_sessions(&self, done: impl FnMut(usize) -> bool, timeout: Duration) -> bool {
        self.shared.registry.wait_len(timeout, done)
    }

    /// Starts the shutdown without waiting for it (safe to call from any thread, more than once).
    pub fn begin_shutdown(&self) {
        begin_shutdown(&self.shared, &self.addrs);
    }

    /// A handle that can start the shutdown from another thread (e.g. a signal handler).
    pub fn stopper(&self) -> Stopper {
        Stopper {
            shared: Arc::clone(&self.shared),
            addrs: self.addrs,
        }
    }

    /// Blocks until the server has stopped (after [`ServerHandle::begin_shutdown`] or a stopper).
    pub fn wait(mut self) {
        self.finish();
    }

    /// Stops the server: stop accepting, end sessions, let in-flight appends finish, fsync, join
    /// every thread.
    pub fn shutdown(mut self) {
        self.begin_shutdown();
        self.finish();
    }

    fn finish(&mut self) {
        if self.stopped {
            return;
        }
        for handle in self.accept_threads.drain(..) {
            let _ = handle.join();
        }
        // Accept threads only return once shutdown has begun; make sure it has in every case.
        begin_shutdown(&self.shared, &self.addrs);
        // The GC/4 sessions are being told by their heartbeat threads: wait for that (woken as
        // each ends), then end whatever is left.
        let wait = STOP_NOTICE_WAIT.min(self.shared.config.io_timeout);
        if !self.shared.registry.wait_len(wait, |n| n == 0) {
            tracing::info!("ending the sessions that were not told in time that the server stops");
        }
        for session in self.shared.registry.close_all(&self.shared.notifier) {
            self.shared
                .plugins
                .client_disconnected(session.user.as_str());
        }
        self.shared.session_threads.join_all();
        self.shared.conn_threads.join_all();
        // Stopped once the sessions are gone: until then a scrape says 503 on `/healthz` and
        // still shows the shutdown's counts.
        if let Some(mut metrics) = self.metrics.take() {
            metrics.stop();
        }
        if let Some(handle) = self.presence_thread.take()
            && handle.join().is_err()
        {
            tracing::error!("the presence thread panicked");
        }
        if let Err(e) = self.shared.store.sync() {
            tracing::error!("final fsync of the store failed: {e}");
        }
        self.shared.store.stop();
        self.stopped = true;
        tracing::info!("server stopped");
    }
}

impl Drop for ServerHandle {
    fn drop(&mut self) {
        if !self.stopped {
            begin_shutdown(&self.shared, &self.addrs);
            self.finish();
        }
    }
}

/// Starts a shutdown from anywhere.
#[derive(Debug, Clone)]
pub struct Stopper {
    shared: Arc<ServerState>,
    addrs: ServerAddrs,
}

impl Stopper {
    /// Starts the shutdown (idempotent).
    pub fn stop(&self) {
        begin_shutdown(&self.shared, &self.addrs);
    }
}

fn begin_shutdown(shared: &ServerState, addrs: &ServerAddrs) {
    let first = !shared.notifier.is_shutdown();
    shared.notifier.shutdown();
    shared.transfers.stop();
    if first {
        tracing::info!("shutting down");
    }
    // Wake the accept threads: each checks the flag after accept returns.
    for addr in [addrs.connect, addrs.auth, addrs.send] {
        gc_net::wake_accept(addr);
    }
    // GC/4 sessions are ended by their heartbeat threads once they have told their clients
    // (wakened by the shutdown above); `finish` ends any left after a short wait.
    for session in shared.registry.close_but(&shared.notifier, |s| s.gc4) {
        let hook_started = Instant::now();
        shared.plugins.client_disconnected(session.user.as_str());
        shared.metrics.hook(
            crate::metrics::HookKind::ClientDisconnected,
            hook_started.elapsed(),
        );
    }
    shared.cut_connections();
}

/// What [`open_storage`] opens: the messages, the accounts, and the data dir's lock when the
/// messages are elsewhere (the flat-file store holds it itself).
type Storage = (
    Arc<dyn MessageLog>,
    Arc<dyn AccountStore>,
    Option<DataDirLock>,
);

/// Opens the messages and accounts where the configuration says: the data dir's flat files, or
/// the PostgreSQL database shared with other instances (migrated first).
fn open_storage(config: &Config) -> Result<Storage, ServerError> {
    if let Some(url) = &config.store {
        let url = crate::config::database_url(url)?;
        // The data dir still holds this instance's own files (TLS identity, rooms, plugins):
        // one instance per data dir.
        let lock = DataDirLock::acquire(&config.data_dir)?;
        let (messages, accounts) = gc_pgstore::open(
            &url,
            &gc_pgstore::PgConfig {
                tail_capacity: config.tail_capacity,
            },
        )?;
        return Ok((Arc::new(messages), Arc::new(accounts), Some(lock)));
    }
    let (store, report) = MessageStore::open(
        &config.data_dir,
        StoreConfig {
            fsync: config.fsync,
            tail_capacity: config.tail_capacity,
            ..StoreConfig::default()
        },
    )?;
    if report.torn_tail.is_some() {
        tracing::warn!("a torn last line was moved to database.db.corrupt (a crash mid-write)");
    }
    let accounts = Accounts::open(&paths::accounts(&config.data_dir))?;
    // The store holds the data-dir lock: a torn last line (a crash mid-append) is ours to cut.
    accounts.recover()?;
    Ok((Arc::new(store), Arc::new(accounts), None))
}

/// Opens the room metadata where the configuration says: the data dir's files, or the shared
/// database's tables.
pub(crate) fn open_rooms(config: &Config) -> Result<(Rooms, gc_store::RoomsReport), ServerError> {
    Ok(match &config.store {
        Some(url) => {
            let url = crate::config::database_url(url)?;
            Rooms::open_shared(&config.data_dir, Arc::new(gc_pgstore::PgRooms::new(&url)))?
        }
        None => Rooms::open(&config.data_dir)?,
    })
}

/// Opens the store and accounts, binds the three ports and starts the accept threads.
pub fn start(config: Config) -> Result<ServerHandle, ServerError> {
    crate::config::check(&config)?;
    // First, so that a metrics port already taken stops the start before anything opens.
    let metrics_listener = config.metrics_addr.map(crate::metrics::bind).transpose()?;
    let (store, accounts, lock) = open_storage(&config)?;
    tracing::info!(
        "opened {} ({} messages, newest id {})",
        store.describe(),
        store.len(),
        store.newest_id()
    );
    let (rooms, rooms_report) = open_rooms(&config)?;
    if !rooms_report.is_clean() {
        tracing::warn!(
            "damaged lines of the room files were moved aside into their .corrupt files: {:?}",
            rooms_report
        );
    }
    let (plugins, _report) = Plugins::load_dir_with(
        &config.mods_dir(),
        crate::config::plugin_hook_limits(&config),
    );
    let bind = |port: u16, role: &'static str| {
        let addr = SocketAddr::new(config.bind, port);
        gc_net::listen(addr, LISTEN_BACKLOG).map_err(|source| ServerError::Bind {
            addr,
            role,
            source,
        })
    };
    let connect_l = bind(config.connect_port, "connect")?;
    let auth_l = bind(config.auth_port, "auth")?;
    let send_l = bind(config.send_port, "send")?;
    let local = |l: &TcpListener, port| {
        l.local_addr()
            .unwrap_or_else(|_| SocketAddr::new(config.bind, port))
    };
    let addrs = ServerAddrs {
        connect: local(&connect_l, config.connect_port),
        auth: local(&auth_l, config.auth_port),
        send: local(&send_l, config.send_port),
    };
    let (tls, fingerprint) = crate::tls::server_config(&config)?.unzip();
    let decoy_secret = crate::throttle::decoy_secret(&config.data_dir, accounts.as_ref())?;
    let files = crate::config::open_files(&config)?;
    let shared = Arc::new(ServerState::new(
        config,
        Stores {
            store,
            accounts,
            rooms,
            files,
        },
        plugins,
        tls,
        decoy_secret,
    ));
    // Records another instance stored wake the heartbeat threads owed them, as our own do.
    let weak = Arc::downgrade(&shared);
    shared.store.set_waker(Arc::new(move |arrived| {
        if let Some(shared) = weak.upgrade() {
            crate::listener::wake_for(&shared, arrived.newest, &arrived.rooms, &[]);
        }
    }));
    // Room changes made through another instance: reloaded here (heartbeat threads see the new
    // generation at their next cycle).
    let weak = Arc::downgrade(&shared);
    shared.store.set_rooms_waker(Arc::new(move || {
        if let Some(shared) = weak.upgrade()
            && let Err(e) = shared.rooms.refresh()
        {
            tracing::warn!("cannot reload the shared room metadata: {e}");
        }
    }));
    let mut accept_threads = Vec::new();
    let mut spawn = |name: &str, listener: TcpListener, role: Role| {
        let sh = Arc::clone(&shared);
        thread::Builder::new()
            .name(name.to_owned())
            .spawn(move || accept_loop(&sh, &listener, role))
            .map(|h| accept_threads.push(h))
            .map_err(|source| ServerError::Thread {
                name: name.to_owned(),
                source,
            })
    };
    let started = spawn("accept-connect", connect_l, Role::Connect)
        .and_then(|()| spawn("accept-auth", auth_l, Role::Auth))
        .and_then(|()| spawn("accept-send", send_l, Role::Send));
    let presence = crate::presence::start(&shared);
    let cleaner = crate::transfer::start_cleaner(&shared);
    let mut handle = ServerHandle {
        shared,
        addrs,
        fingerprint,
        accept_threads,
        stopped: false,
        _lock: lock,
        presence_thread: None,
        metrics: None,
    };
    // On an error, dropping the handle stops and joins what started.
    handle.presence_thread = presence?;
    started?;
    cleaner?;
    if let Some(listener) = metrics_listener {
        let metrics = MetricsServer::start(listener, Arc::clone(&handle.shared))?;
        tracing::info!("metrics on http://{}/metrics", metrics.addr());
        handle.metrics = Some(metrics);
    }
    tracing::info!("{}", addrs.listening_line());
    Ok(handle)
}

#[derive(Clone, Copy, Debug)]
enum Role {
    Connect,
    Auth,
    Send,
}

fn accept_loop(shared: &Arc<ServerState>, listener: &TcpListener, role: Role) {
    // Only for the back-off after a failed accept, which shutdown must cut short.
    let registration = shared.notifier.register(Arc::new(Doorbell::default()));
    loop {
        let accepted = listener.accept();
        if shared.stopping() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                let _ = stream.set_nodelay(true);
                match role {
                    Role::Connect => {
                        spawn_conn(shared, stream, peer, PortRole::Connect, serve_connect);
                    }
                    Role::Auth => spawn_conn(shared, stream, peer, PortRole::Auth, auth::serve),
                    Role::Send => dispatch_send(shared, stream, peer),
                }
            }
            Err(e) => {
                // E.g. out of file descriptors: back off briefly instead of spinning, but wake at
                // once for shutdown.
                tracing::warn!("accept failed: {e}");
                let until = Instant::now() + Duration::from_millis(100);
                shared
                    .notifier
                    .wait_until(registration.bell(), until, |_| false);
            }
        }
    }
}

/// What serves a connection on the connect or auth port, within its place among the connections
/// in progress.
type Serve = fn(Arc<ServerState>, Conn, SocketAddr, &PendingSlot);

/// Runs `serve` on its own thread, within the pending-connection limits: a place in the pool
/// (which may drop another connection to make room), and a deadline from now.
fn spawn_conn(
    shared: &Arc<ServerState>,
    stream: TcpStream,
    peer: SocketAddr,
    role: PortRole,
    serve: Serve,
) {
    let now = Instant::now();
    let admitted = match shared.pending.begin(&stream, peer.ip(), now) {
        Ok(admitted) => admitted,
        Err(refusal) => {
            let text = match refusal {
                Refusal::Address => {
                    "too many connections in progress from this address; try again in a moment"
                }
                Refusal::Full => "too many connections in progress; try again in a moment",
            };
            peer_warn!(shared, peer.ip(), %peer, "{text}; refused");
            refuse(stream, ErrorCode::Full, text);
            return;
        }
    };
    if let Some((dropped, expired)) =
        shared
            .drop_notice
            .add(admitted.dropped, admitted.expired, now)
    {
        tracing::warn!(
            "connections in progress on the connect and auth ports: {dropped} dropped to make \
             room for new ones (max-pending-auths {} reached) and {expired} past \
             pending-timeout-ms since the last such warning; a connection flood, or a limit too \
             low for this server's load",
            shared.config.max_pending_auths
        );
    }
    let slot = admitted.slot;
    // Registered before the thread starts, so a shutdown from now on cuts it.
    let tracked = shared.track(&stream);
    let sh = Arc::clone(shared);
    let spawned = shared
        .conn_threads
        .spawn(format!("{}-{peer}", role.name()), move || {
            let _tracked = tracked;
            let name = peer.to_string();
            // The TLS handshake runs here, on the connection's own thread, never on the accept
            // thread that a stalling peer must not hold up; within the connection's deadline.
            let deadline = slot.within(sh.io_deadline());
            if let Some(stream) = sh.accept(stream, peer, role, deadline) {
                serve(sh, Conn::new(stream, name), peer, &slot);
            }
        });
    if let Err(e) = spawned {
        // The closure (and with it the slot and the registration) was dropped: released.
        tracing::error!("{e}");
    }
}

/// After a read on the connect or auth port failed: if the pool dropped this connection to make
/// room for another, the peer is told (`Err full`), so a real client tries again.
pub(crate) fn tell_dropped(shared: &ServerState, conn: &mut Conn, slot: &PendingSlot) {
    if slot.dropped() {
        let _ = conn.send(&dropped(), shared.io_deadline());
    }
}

/// What a connection dropped from a full pool is told: `full`, which clients retry.
pub(crate) fn dropped() -> ErrorFrame {
    ErrorFrame::new(
        ErrorCode::Full,
        "the server has too many connections in progress and closed this one to make room; try \
         again in a moment",
    )
}

/// The connect port: `Ping GC/1` → `Pong GC/1 <name> <open|closed>` on a plain connection,
/// `GC/2` over TLS, and `GC/3` (rooms) or `GC/4` on either: the answer names the version asked
/// for.
fn serve_connect(shared: Arc<ServerState>, mut conn: Conn, peer: SocketAddr, slot: &PendingSlot) {
    let (version, other) = if conn.get_ref().is_tls() {
        (VERSION_TLS, "over TLS")
    } else {
        (VERSION, "without TLS")
    };
    loop {
        if Instant::now() >= slot.end() {
            tracing::debug!(%peer, "connect connection open too long; closing");
            return;
        }
        let read = conn.read::<ConnectPing>(slot.within(shared.io_deadline()));
        if read.is_ok() {
            slot.progress();
        }
        let reply = match read {
            Ok(ping)
                if ping.version == version || SessionLevel::of_version(&ping.version).is_some() =>
            {
                ConnectReply::Pong {
                    version: ping.version,
                    server_name: shared.config.server_name.clone(),
                    registration: if shared.config.registration_open {
                        Registration::Open
                    } else {
                        Registration::Closed
                    },
                }
            }
            Ok(ping) => {
                peer_warn!(shared, peer.ip(), %peer, version = %ping.version, "client speaks another version");
                ConnectReply::Err(ErrorFrame::new(
                    ErrorCode::Version,
                    format!(
                        "{other} this server speaks {version} (and {VERSION_ROOMS} with rooms, \
                         {VERSION_GC4}, {VERSION_GC5} with files), not {}; use a matching gc-client",
                        ping.version
                    ),
                ))
            }
            Err(ProtocolError::Malformed { error, .. }) => {
                // Nobody has signed in on this port: a peer that sends garbage gets one answer
                // and the connection closed, not a slot and a log line per line it sends.
                peer_warn!(shared, peer.ip(), %peer, "malformed frame on the connect port: {error}; closing");
                let reply = ConnectReply::Err(ErrorFrame::new(error.code(), error.to_string()));
                let _ = conn.send(&reply, shared.io_deadline());
                return;
            }
            Err(ProtocolError::TooLong { limit, .. }) => {
                let _ = conn.send(
                    &ErrorFrame::new(
                        ErrorCode::TooLong,
                        format!("frame longer than {limit} bytes"),
                    ),
                    shared.io_deadline(),
                );
                return;
            }
            Err(_) => {
                tell_dropped(&shared, &mut conn, slot);
                return;
            }
        };
        if conn.send(&reply, shared.io_deadline()).is_err() {
            return;
        }
    }
}

/// The sending port: hand the connection to a listener of a session at the peer's address.
fn dispatch_send(shared: &Arc<ServerState>, stream: TcpStream, peer: SocketAddr) {
    let mut conn = Incoming::Accepted(stream, peer);
    // A session can end between the choice and the hand-over; try the next one then.
    for _ in 0..4 {
        let Some(session) = shared.registry.listener_for(peer.ip()) else {
            break;
        };
        match session.slot.offer(conn) {
            Ok(()) => return,
            Err(back) => conn = back,
        }
    }
    let Incoming::Accepted(stream, _) = conn else {
        return;
    };
    peer_warn!(shared, peer.ip(), %peer, "connection on the sending port from an address with no session");
    // Refused on a connection thread: over TLS the refusal needs a handshake, which must not
    // hold up the accept thread.
    spawn_conn(shared, stream, peer, PortRole::Send, refuse_no_session);
}

/// Tells a sender that has no session so, in its own protocol (plain or TLS).
fn refuse_no_session(
    shared: Arc<ServerState>,
    mut conn: Conn,
    _peer: SocketAddr,
    _slot: &PendingSlot,
) {
    let _ = conn.send(
        &ErrorFrame::new(
            ErrorCode::Session,
            "no session from this address; log in first",
        ),
        shared.io_deadline(),
    );
}
