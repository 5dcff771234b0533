//! State shared by the server's threads: the store, accounts, the session registry, presence,
//! the "something changed" notifier, limits, the sockets a shutdown cuts, and the shutdown
//! signal.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Shutdown, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gc_net::tls::{PeerCheck, Stream, TlsConfig, starts_with_tls};
use gc_net::{Conn, Connector, KeptConn, Registration, Reuse, Timeouts, Unblocker};
use gc_plugin::Plugins;
use gc_protocol::{
    CallbackPorts, ErrorCode, ErrorFrame, Fingerprint, Frame, SessionToken, Username,
};
use gc_store::{AccountStore, MessageLog, Rooms};
use parking_lot::{Condvar, Mutex};

use crate::config::{Config, TlsMode};
use crate::limits::{PendingConns, RateLimiter};
use crate::metrics::PortRole;
use crate::notify::{Doorbell, Notifier};
use crate::rooms::Spans;
use crate::threads::ThreadGroup;
use crate::throttle::LoginThrottle;
use crate::warnings::{DropNotice, WarnLimiter, peer_warn};

/// How long an outgoing connect may take at most, whatever the I/O timeout: a client behind a
/// firewall that drops packets must not hold a thread (or the shutdown) for long. On a LAN a
/// connect is answered in milliseconds, refused, or never.
const MAX_CONNECT: Duration = Duration::from_secs(2);

/// Everything the server's threads share. The parts are set up once at start; what changes lives
/// inside them, behind their own methods.
#[derive(Debug)]
pub struct ServerState {
    /// The configuration the server started with.
    pub config: Config,
    /// Messages.
    pub store: Arc<dyn MessageLog>,
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Rooms, their members and the server admins (GC/3).
    pub rooms: Rooms,
    /// Which records of a room a user is owed, where that changed while this server runs: by
    /// user key, per room, `(after, until)` ids. A join sets `(newest id, MAX)`: the room from
    /// then on; leaving (or being kicked or banned) sets `until` to the notice that says so,
    /// so the user still gets that notice and nothing after it.
    pub spans: Spans,
    /// Live sessions and presence.
    pub registry: Registry,
    /// Wakes heartbeat threads on new messages, presence changes and shutdown.
    pub notifier: Notifier,
    /// Per-user message rate.
    pub rate: RateLimiter,
    /// Server plugins from the mods directory.
    pub plugins: Plugins,
    /// Failed-login throttle.
    pub throttle: LoginThrottle,
    /// Counters for `--metrics-addr` (kept whether served or not: atomic adds).
    pub metrics: crate::metrics::Metrics,
    /// The secret of the decoy verifiers answered for names without an account.
    pub decoy_secret: Vec<u8>,
    /// Registrations per address.
    pub registrations: crate::limits::RegistrationLimit,
    /// How many warnings each address that has not signed in may put in the log.
    pub peer_warnings: WarnLimiter,
    /// The one warning a minute that says connections in progress were dropped for room.
    pub drop_notice: DropNotice,
    /// Short-lived connection threads (connect and auth ports).
    pub conn_threads: ThreadGroup,
    /// Session threads (heartbeat and listener).
    pub session_threads: ThreadGroup,
    /// Connection threads in progress, bounded per client address and in all.
    pub pending: PendingConns,
    /// Shared files' content (GC/5), under the data dir.
    pub files: gc_store::ContentStore,
    /// File transfers in progress (GC/5).
    pub transfers: crate::transfer::Transfers,
    /// Sockets of connection threads and auth callbacks, cut at stop so no thread waits out a
    /// deadline.
    sockets: Unblocker,
    /// How the server connects back to plain GC/1 clients.
    connector: Connector,
    /// The server's TLS (its identity), unless `--tls off`.
    tls: Option<Arc<TlsConfig>>,
}

/// What a server keeps its data in, opened before it starts.
#[derive(Debug)]
pub struct Stores {
    /// Messages.
    pub store: Arc<dyn MessageLog>,
    /// Accounts.
    pub accounts: Arc<dyn AccountStore>,
    /// Rooms.
    pub rooms: Rooms,
    /// Shared files' content.
    pub files: gc_store::ContentStore,
}

impl ServerState {
    /// The shared state of a server about to start.
    pub fn new(
        config: Config,
        stores: Stores,
        plugins: Plugins,
        tls: Option<Arc<TlsConfig>>,
        decoy_secret: Vec<u8>,
    ) -> Self {
        let Stores {
            store,
            accounts,
            rooms,
            files,
        } = stores;
        let timeouts = Timeouts {
            connect: config.io_timeout.min(MAX_CONNECT),
            io: config.io_timeout,
        };
        Self {
            notifier: Notifier::new(store.newest_id()),
            rate: RateLimiter::new(config.rate_burst, config.rate_per_sec),
            throttle: LoginThrottle::new(config.max_login_failures),
            metrics: crate::metrics::Metrics::default(),
            decoy_secret,
            registrations: crate::limits::RegistrationLimit::new(
                config.max_registrations_per_address,
            ),
            peer_warnings: WarnLimiter::default(),
            drop_notice: DropNotice::default(),
            pending: PendingConns::new(config.max_pending_auths, config.pending_timeout),
            files,
            transfers: crate::transfer::Transfers::default(),
            // The server never logs in anywhere: its connections need no channel binding, and
            // most are kept open, so they are lean.
            connector: Connector::new(None, timeouts).lean(),
            plugins,
            config,
            store,
            accounts,
            rooms,
            spans: Spans::default(),
            registry: Registry::default(),
            conn_threads: ThreadGroup::default(),
            session_threads: ThreadGroup::default(),
            sockets: Unblocker::new(),
            tls,
        }
    }

    /// Takes a connection accepted on one of the ports as the TLS mode says: a TLS handshake
    /// (recognised by its first byte), plain GC/1 where allowed, or a refusal that tells a plain
    /// client to update, all before `deadline`. `None`: nothing to serve (closed, silent,
    /// refused, failed handshake; logged). Its bytes count as `role`'s, handshake included.
    pub fn accept(
        &self,
        tcp: std::net::TcpStream,
        peer: SocketAddr,
        role: PortRole,
        deadline: Instant,
    ) -> Option<Stream> {
        let mut stream = self.take(tcp, peer, role, deadline)?;
        stream.count_into(self.metrics.bytes.of(role));
        Some(stream)
    }

    /// [`ServerState::accept`] before the stream is counted.
    fn take(
        &self,
        tcp: std::net::TcpStream,
        peer: SocketAddr,
        role: PortRole,
        deadline: Instant,
    ) -> Option<Stream> {
        let ip = peer.ip();
        let Some(tls) = &self.tls else {
            // `--tls off`: a TLS client would wait out its handshake on a server reading its
            // ClientHello as a frame. It is told in plain text, which it shows.
            return match starts_with_tls(&tcp, deadline) {
                Ok(Some(true)) => {
                    peer_warn!(self, ip, %peer, "a TLS client on a server with --tls off; refused");
                    refuse(
                        tcp,
                        ErrorCode::Version,
                        "this server runs without TLS (--tls off); connect with --tls off to \
                         talk to it unencrypted, or ask the operator to enable TLS",
                    );
                    None
                }
                _ => Some(Stream::plain(tcp)),
            };
        };
        match starts_with_tls(&tcp, deadline) {
            Ok(Some(true)) => match accept_tls(tls, tcp, peer, role, deadline) {
                Ok(stream) => Some(stream),
                Err(e) => {
                    peer_warn!(self, ip, %peer, "TLS handshake failed: {e}");
                    None
                }
            },
            Ok(Some(false)) if self.config.tls == TlsMode::Optional => Some(Stream::plain(tcp)),
            Ok(Some(false)) => {
                peer_warn!(self, ip, %peer, "a plain GC/1 client on a server that requires TLS; refused");
                refuse(
                    tcp,
                    ErrorCode::Version,
                    "this server requires TLS (GC/2); update gc-client, or ask the operator to \
                     run the server with --tls optional",
                );
                None
            }
            Ok(None) => None,
            Err(e) => {
                tracing::debug!(%peer, "no first byte: {e}");
                None
            }
        }
    }

    /// How the server connects back to a client: over TLS to the callback certificate it
    /// announced at login (GC/2), or plain (GC/1).
    /// Its connections count their bytes as `role`'s.
    fn connector_for(
        &self,
        callback_pin: Option<Fingerprint>,
        role: PortRole,
    ) -> (Connector, PeerCheck) {
        let connector = self
            .connector
            .clone()
            .with_count(self.metrics.bytes.of(role));
        match (&self.tls, callback_pin) {
            (Some(tls), Some(pin)) => (connector.with_tls(Arc::clone(tls)), PeerCheck::Pinned(pin)),
            _ => (connector, PeerCheck::Any),
        }
    }

    /// Opens the auth callback to a client at `addr`, registered so a stop cuts it.
    pub fn call_back(
        &self,
        callback_pin: Option<Fingerprint>,
        addr: std::net::SocketAddr,
    ) -> Result<(Conn, Registration), gc_net::NetError> {
        let (connector, check) = self.connector_for(callback_pin, PortRole::Callback);
        connector.open(addr, check, &self.sockets)
    }

    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.notifier.is_shutdown()
    }

    /// Ends a session (Bye, missed heartbeats, failed start) and tells the plugins.
    pub fn end_session(&self, session: &Session) {
        if self.registry.end(session, &self.notifier) {
            let hook_started = Instant::now();
            self.plugins.client_disconnected(session.user.as_str());
            self.metrics.hook(
                crate::metrics::HookKind::ClientDisconnected,
                hook_started.elapsed(),
            );
        }
    }

    /// Registers a socket to be shut down when the server stops, while the registration lives.
    pub fn track(&self, stream: &std::net::TcpStream) -> Registration {
        self.sockets.register(stream)
    }

    /// Shuts down every tracked socket, and any tracked from now on (shutdown).
    pub fn cut_connections(&self) {
        self.sockets.stop();
    }

    /// A deadline `io_timeout` from now.
    pub fn io_deadline(&self) -> Instant {
        self.connector.deadline()
    }

    /// A link to one of `session`'s callback ports (`role`: heartbeat or delivery), cut when
    /// the session ends.
    pub fn link(&self, session: &Session, port: u16, role: PortRole) -> KeptConn {
        let reuse = if self.config.reuse_connections {
            Reuse::Keep
        } else {
            Reuse::CloseAfterEach
        };
        let (connector, check) = self.connector_for(session.callback_pin, role);
        KeptConn::new(
            std::net::SocketAddr::new(session.ip, port),
            connector,
            session.sockets.clone(),
            reuse,
        )
        .with_check(check)
    }
}

/// The TLS handshake of a connection accepted on `role`'s port. Logins (the auth port) bind
/// SCRAM to the TLS session, which only rustls' buffered connection can export; every other
/// port takes lean streams, which hold no buffer while they wait.
fn accept_tls(
    tls: &TlsConfig,
    tcp: std::net::TcpStream,
    peer: SocketAddr,
    role: PortRole,
    deadline: Instant,
) -> Result<Stream, gc_net::NetError> {
    let name = peer.to_string();
    match role {
        PortRole::Auth => tls.accept(tcp, &name, PeerCheck::Any, deadline),
        _ => tls.accept_lean(tcp, &name, PeerCheck::Any, deadline),
    }
}

/// Answers `Err <code> <text>` in plain text on a connection nobody will serve (which a TLS
/// client shows too: `gc_net::tls` keeps a plain answer to its handshake), and closes it without
/// waiting on the peer.
pub fn refuse(mut tcp: std::net::TcpStream, code: ErrorCode, text: &str) {
    use std::io::{Read as _, Write as _};
    let _ = tcp.set_write_timeout(Some(Duration::from_millis(100)));
    let _ = tcp.write_all(&ErrorFrame::new(code, text).to_bytes());
    // What the peer already sent (a ClientHello, a Ping) is read first: closing a socket with
    // unread input resets the connection, and the reset could overtake the answer.
    if tcp.set_nonblocking(true).is_ok() {
        let mut scratch = [0u8; 4096];
        for _ in 0..16 {
            match tcp.read(&mut scratch) {
                Ok(n) if n > 0 => {}
                _ => break,
            }
        }
    }
    let _ = tcp.shutdown(Shutdown::Both);
}

/// One logged-in session.
#[derive(Debug)]
pub struct Session {
    /// Server-internal id (for logs and the listener slot).
    pub id: u64,
    /// The user, spelled as registered.
    pub user: Username,
    /// The client's address (callbacks go here; sends must come from here).
    pub ip: IpAddr,
    /// The client's callback ports.
    pub ports: CallbackPorts,
    /// The session token.
    pub token: SessionToken,
    /// The id cursor owed to a client that answers `last-id` 0 (history-on-join at login).
    pub join_floor: u64,
    /// GC/2: the certificate the client's callback listeners present (the server calls back over
    /// TLS and accepts no other); `None` for a plain GC/1 session.
    pub callback_pin: Option<Fingerprint>,
    /// GC/3: the client speaks rooms (its login said so). A GC/1 session is shown `#general`
    /// only, and never sent a frame with a room.
    pub rooms: bool,
    /// GC/4: the client also speaks the password change, the away state and the stop notice
    /// (its login said so; always with rooms).
    pub gc4: bool,
    /// GC/5: the client also shares and fetches files (`Offer`, `Chunk`, `Fetch`).
    pub files: bool,
    /// GC/4: the nonce of the last `Challenge` and when it was given, until a `Passwd` spends it.
    pub challenge: Mutex<Option<(Vec<u8>, Instant)>>,
    /// Set once when the session ends.
    ended: AtomicBool,
    /// Connections on the sending port waiting for, or served by, this session's listener.
    pub slot: ListenerSlot,
    /// The sockets this session's threads block on (the heartbeat thread's links, the connection
    /// its listener serves), cut when the session ends so no thread waits out a deadline.
    sockets: Unblocker,
    /// Wakes the heartbeat thread (registered with the notifier for new messages; rung directly
    /// when the session ends).
    pub bell: Arc<Doorbell>,
}

impl Session {
    /// Whether the session has ended.
    pub fn is_ended(&self) -> bool {
        self.ended.load(Ordering::Acquire)
    }

    /// Name for threads and logs: `alice@127.0.0.2#3`.
    pub fn label(&self) -> String {
        format!("{}@{}#{}", self.user, self.ip, self.id)
    }

    /// Marks the session ended and unblocks its threads. Returns false if it already was.
    fn mark_ended(&self) -> bool {
        if self.ended.swap(true, Ordering::AcqRel) {
            return false;
        }
        self.slot.close();
        self.sockets.stop();
        self.bell.ring();
        true
    }
}

/// Hands connections from the sending-port accept thread to a session's listener thread.
#[derive(Debug)]
pub struct ListenerSlot {
    state: Mutex<SlotState>,
    cv: Condvar,
    /// The session's sockets: the connection being served is registered there.
    sockets: Unblocker,
}

/// A connection on the sending port, waiting for a listener.
#[derive(Debug)]
pub enum Incoming {
    /// As accepted: the listener that takes it does its TLS handshake, if any (never the accept
    /// thread, which a stalling peer must not hold up).
    Accepted(std::net::TcpStream, std::net::SocketAddr),
    /// Handed over, ready, by the listener of another session of the same address.
    Framed(Box<Conn>),
}

impl Incoming {
    fn tcp(&self) -> &std::net::TcpStream {
        match self {
            Self::Accepted(tcp, _) => tcp,
            Self::Framed(conn) => conn.get_ref().tcp(),
        }
    }
}

#[derive(Debug, Default)]
struct SlotState {
    inbox: VecDeque<Incoming>,
    /// The connection being served, registered so it can be unblocked.
    current: Option<Registration>,
    /// Since when the listener has been waiting for the next frame on `current`.
    idle_since: Option<Instant>,
    closed: bool,
}

/// How a listener's wait for its next connection ended.
#[derive(Debug)]
pub enum NextConn {
    /// A connection to serve.
    Conn(Incoming),
    /// The session ended or the server is stopping.
    Closed,
}

impl ListenerSlot {
    fn new(sockets: Unblocker) -> Self {
        Self {
            state: Mutex::default(),
            cv: Condvar::new(),
            sockets,
        }
    }

    /// Whether the listener is free: no connection held, none queued.
    fn is_free(&self) -> bool {
        let s = self.state.lock();
        s.current.is_none() && s.inbox.is_empty() && !s.closed
    }

    /// Since when the served connection has been idle, if it is.
    fn idle_since(&self) -> Option<Instant> {
        let s = self.state.lock();
        if s.closed { None } else { s.idle_since }
    }

    fn queued(&self) -> usize {
        self.state.lock().inbox.len()
    }

    /// Queues a connection. If the listener is idle on another connection, that one is ended (a
    /// client keeps one connection per session, so the older one is stale) so the listener moves on.
    pub fn offer(&self, conn: Incoming) -> Result<(), Incoming> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(conn);
        }
        s.inbox.push_back(conn);
        if s.idle_since.is_some()
            && let Some(current) = &s.current
        {
            current.shutdown(Shutdown::Read);
        }
        self.cv.notify_all();
        Ok(())
    }

    /// Waits for the next connection.
    pub fn next(&self) -> NextConn {
        let mut s = self.state.lock();
        loop {
            if s.closed {
                return NextConn::Closed;
            }
            if let Some(conn) = s.inbox.pop_front() {
                s.current = Some(self.sockets.register(conn.tcp()));
                s.idle_since = None;
                return NextConn::Conn(conn);
            }
            self.cv.wait(&mut s);
        }
    }

    /// The listener waits for the next frame on its connection. Returns false if it should rather
    /// move on (a newer connection is queued, or the slot closed).
    pub fn set_idle(&self) -> bool {
        let mut s = self.state.lock();
        if s.closed || !s.inbox.is_empty() {
            return false;
        }
        s.idle_since = Some(Instant::now());
        true
    }

    /// The listener is handling a frame.
    pub fn set_busy(&self) {
        self.state.lock().idle_since = None;
    }

    /// The listener is done with its connection.
    pub fn release(&self) {
        let mut s = self.state.lock();
        s.current = None;
        s.idle_since = None;
    }

    /// Closes the slot: queued connections are dropped, the served one is shut down.
    pub fn close(&self) {
        let mut s = self.state.lock();
        s.closed = true;
        s.inbox.clear();
        if let Some(current) = s.current.take() {
            current.shutdown(Shutdown::Both);
        }
        self.cv.notify_all();
    }
}

/// Why a session could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// The client limit is reached.
    Full,
    /// The account has as many sessions as allowed.
    UserFull(usize),
    /// The address has as many sessions as allowed.
    AddressFull(usize),
    /// The server is stopping.
    ShuttingDown,
}

/// The most sessions [`Registry::add`] allows: in all, per account, per address.
#[derive(Debug, Clone, Copy)]
pub struct SessionLimits {
    /// In all.
    pub total: usize,
    /// Of one account.
    pub per_user: usize,
    /// From one address.
    pub per_address: usize,
}

impl SessionLimits {
    /// The limits `config` sets.
    pub fn of(config: &Config) -> Self {
        Self {
            total: config.max_clients,
            per_user: config.max_sessions_per_user,
            per_address: config.max_sessions_per_address,
        }
    }
}

/// Live sessions, indexed by token and by address, and who is online.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
    /// Notified whenever a session is added or removed, for [`Registry::wait_len`].
    changed: Condvar,
}

#[derive(Debug, Default)]
struct RegistryInner {
    by_token: HashMap<String, Arc<Session>>,
    by_ip: HashMap<IpAddr, Vec<Arc<Session>>>,
    /// Sessions by case-folded user name (to wake only the members of a room).
    by_user: HashMap<String, Vec<Arc<Session>>>,
    /// Online users by case-folded name: display name and number of sessions.
    online: BTreeMap<String, (Username, usize)>,
    /// Online through other instances sharing the store, by case-folded name.
    remote: BTreeMap<String, Username>,
    /// GC/4: the away messages of users online here, by case-folded name. Kept per instance,
    /// and only while the user has a session here: a client sets it again after a new login.
    away: HashMap<String, String>,
    presence_version: u64,
    next_id: u64,
    closed: bool,
}

/// What a new session needs.
#[derive(Debug)]
pub struct NewSession {
    /// The user as registered.
    pub user: Username,
    /// Client address.
    pub ip: IpAddr,
    /// Callback ports.
    pub ports: CallbackPorts,
    /// The token.
    pub token: SessionToken,
    /// History-on-join cursor.
    pub join_floor: u64,
    /// See [`Session::callback_pin`].
    pub callback_pin: Option<Fingerprint>,
    /// See [`Session::rooms`].
    pub rooms: bool,
    /// See [`Session::gc4`].
    pub gc4: bool,
    /// See [`Session::files`].
    pub files: bool,
}

impl Registry {
    /// Adds a session unless the limit is reached or the registry is closed for shutdown.
    pub fn add(
        &self,
        new: NewSession,
        limits: SessionLimits,
        notifier: &Notifier,
    ) -> Result<Arc<Session>, AddError> {
        let mut r = self.inner.lock();
        if r.closed {
            return Err(AddError::ShuttingDown);
        }
        if r.by_token.len() >= limits.total {
            return Err(AddError::Full);
        }
        let of_user = r.by_user.get(&new.user.key()).map_or(0, Vec::len);
        if of_user >= limits.per_user {
            return Err(AddError::UserFull(of_user));
        }
        let of_address = r.by_ip.get(&new.ip).map_or(0, Vec::len);
        if of_address >= limits.per_address {
            return Err(AddError::AddressFull(of_address));
        }
        r.next_id += 1;
        let sockets = Unblocker::new();
        let session = Arc::new(Session {
            id: r.next_id,
            user: new.user,
            ip: new.ip,
            ports: new.ports,
            token: new.token,
            join_floor: new.join_floor,
            callback_pin: new.callback_pin,
            rooms: new.rooms,
            gc4: new.gc4,
            files: new.files,
            challenge: Mutex::new(None),
            ended: AtomicBool::new(false),
            slot: ListenerSlot::new(sockets.clone()),
            sockets,
            bell: Arc::new(Doorbell::default()),
        });
        r.by_token
            .insert(session.token.as_str().to_owned(), Arc::clone(&session));
        r.by_ip
            .entry(session.ip)
            .or_default()
            .push(Arc::clone(&session));
        r.by_user
            .entry(session.user.key())
            .or_default()
            .push(Arc::clone(&session));
        let entry = r
            .online
            .entry(session.user.key())
            .or_insert_with(|| (session.user.clone(), 0));
        entry.1 += 1;
        if entry.1 == 1 {
            r.presence_version += 1;
            notifier.presence_changed(r.presence_version);
        }
        self.changed.notify_all();
        Ok(session)
    }

    /// Ends a session: removes it, updates presence, unblocks its threads. Returns false if it had
    /// already ended.
    pub fn end(&self, session: &Session, notifier: &Notifier) -> bool {
        if !session.mark_ended() {
            return false;
        }
        let mut r = self.inner.lock();
        r.by_token.remove(session.token.as_str());
        if let Some(list) = r.by_ip.get_mut(&session.ip) {
            list.retain(|s| s.id != session.id);
            if list.is_empty() {
                r.by_ip.remove(&session.ip);
            }
        }
        let key = session.user.key();
        if let Some(list) = r.by_user.get_mut(&key) {
            list.retain(|s| s.id != session.id);
            if list.is_empty() {
                r.by_user.remove(&key);
            }
        }
        let gone = match r.online.get_mut(&key) {
            Some(entry) => {
                entry.1 -= 1;
                entry.1 == 0
            }
            None => false,
        };
        if gone {
            r.online.remove(&key);
            r.away.remove(&key);
            r.presence_version += 1;
            notifier.presence_changed(r.presence_version);
        }
        self.changed.notify_all();
        true
    }

    /// The live session with this token, if it belongs to `ip`.
    pub fn by_token(&self, token: &SessionToken, ip: IpAddr) -> Option<Arc<Session>> {
        let r = self.inner.lock();
        let session = r.by_token.get(token.as_str())?;
        (session.ip == ip && session.token.ct_eq(token)).then(|| Arc::clone(session))
    }

    /// The listener that should take a new connection from `ip`: a free one, else the one idle the
    /// longest, else the least loaded. `None` when `ip` has no session.
    pub fn listener_for(&self, ip: IpAddr) -> Option<Arc<Session>> {
        let r = self.inner.lock();
        let sessions = r.by_ip.get(&ip)?;
        if let Some(free) = sessions.iter().find(|s| s.slot.is_free()) {
            return Some(Arc::clone(free));
        }
        if let Some(idle) = sessions
            .iter()
            .filter_map(|s| s.slot.idle_since().map(|t| (t, s)))
            .min_by_key(|(t, _)| *t)
        {
            return Some(Arc::clone(idle.1));
        }
        sessions.iter().min_by_key(|s| s.slot.queued()).cloned()
    }

    /// Appends to `out` the doorbells of the GC/3 sessions of the users whose case-folded names
    /// `keys` yields, under one lock (a message to a room wakes its members through this).
    pub fn gc3_bells_of<'k>(
        &self,
        keys: impl IntoIterator<Item = &'k str>,
        out: &mut Vec<Arc<Doorbell>>,
    ) {
        let r = self.inner.lock();
        for key in keys {
            if let Some(sessions) = r.by_user.get(key) {
                out.extend(
                    sessions
                        .iter()
                        .filter(|s| s.rooms)
                        .map(|s| Arc::clone(&s.bell)),
                );
            }
        }
    }

    /// A change of who is in which room: clients are told through the presence version, as for a
    /// login or logout, and ask `Who` again.
    pub fn membership_changed(&self, notifier: &Notifier) {
        let mut r = self.inner.lock();
        r.presence_version += 1;
        notifier.presence_changed(r.presence_version);
    }

    /// Who is online, here or through another instance (each user once, sorted
    /// case-insensitively), and the presence version.
    pub fn online(&self) -> (u64, Vec<Username>) {
        let r = self.inner.lock();
        if r.remote.is_empty() {
            return (
                r.presence_version,
                r.online.values().map(|(u, _)| u.clone()).collect(),
            );
        }
        let mut all: BTreeMap<&str, &Username> =
            r.remote.iter().map(|(k, u)| (k.as_str(), u)).collect();
        all.extend(r.online.iter().map(|(k, (u, _))| (k.as_str(), u)));
        (r.presence_version, all.into_values().cloned().collect())
    }

    /// GC/4: sets (`Some`) or clears `user`'s away message; a change raises the presence
    /// version, so clients ask `Who` again. Returns whether anything changed. Ignored for a user
    /// with no session here (it ended meanwhile).
    pub fn set_away(&self, user: &Username, message: Option<String>, notifier: &Notifier) -> bool {
        let key = user.key();
        let mut r = self.inner.lock();
        if !r.online.contains_key(&key) {
            return false;
        }
        let changed = match message {
            Some(message) => r.away.insert(key, message.clone()).as_ref() != Some(&message),
            None => r.away.remove(&key).is_some(),
        };
        if changed {
            r.presence_version += 1;
            notifier.presence_changed(r.presence_version);
        }
        changed
    }

    /// GC/4: the away messages of those of `users` who are away here, in the order given.
    pub fn away_of(&self, users: &[Username]) -> Vec<(Username, String)> {
        let r = self.inner.lock();
        if r.away.is_empty() {
            return Vec::new();
        }
        users
            .iter()
            .filter_map(|u| r.away.get(&u.key()).map(|m| (u.clone(), m.clone())))
            .collect()
    }

    /// Who is online through this instance.
    pub fn local_online(&self) -> Vec<Username> {
        let r = self.inner.lock();
        r.online.values().map(|(u, _)| u.clone()).collect()
    }

    /// Replaces who is online through the other instances; raises the presence version if that
    /// changes the list clients see.
    pub fn set_remote(&self, users: Vec<Username>, notifier: &Notifier) {
        let remote: BTreeMap<String, Username> = users.into_iter().map(|u| (u.key(), u)).collect();
        let mut r = self.inner.lock();
        if r.remote == remote {
            return;
        }
        let before: Vec<&String> = r
            .remote
            .keys()
            .filter(|k| !r.online.contains_key(*k))
            .collect();
        let after: Vec<&String> = remote
            .keys()
            .filter(|k| !r.online.contains_key(*k))
            .collect();
        let visible = before != after;
        r.remote = remote;
        if visible {
            r.presence_version += 1;
            notifier.presence_changed(r.presence_version);
        }
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.inner.lock().by_token.len()
    }

    /// Waits until `done(number of live sessions)` holds, and returns true; false if `timeout`
    /// passes first, or once the registry is closed and empty (stopped: nothing changes any
    /// more). Woken by every session added or ended and by the close, never by a clock.
    pub fn wait_len(&self, timeout: Duration, mut done: impl FnMut(usize) -> bool) -> bool {
        let deadline = Instant::now().checked_add(timeout);
        let mut r = self.inner.lock();
        loop {
            if done(r.by_token.len()) {
                return true;
            }
            if r.closed && r.by_token.is_empty() {
                return false;
            }
            match deadline {
                Some(deadline) => {
                    if self.changed.wait_until(&mut r, deadline).timed_out() {
                        return done(r.by_token.len());
                    }
                }
                None => self.changed.wait(&mut r),
            }
        }
    }

    /// Refuses new sessions and ends every live one (shutdown); returns the sessions it ended.
    pub fn close_all(&self, notifier: &Notifier) -> Vec<Arc<Session>> {
        self.close_but(notifier, |_| false)
    }

    /// Refuses new sessions and ends every live one but those `keep` picks (at shutdown: the
    /// GC/4 sessions, which their heartbeat threads first tell that the server stops); returns
    /// the sessions it ended.
    pub fn close_but(
        &self,
        notifier: &Notifier,
        keep: impl Fn(&Session) -> bool,
    ) -> Vec<Arc<Session>> {
        let sessions: Vec<Arc<Session>> = {
            let mut r = self.inner.lock();
            r.closed = true;
            self.changed.notify_all();
            r.by_token.values().cloned().collect()
        };
        sessions
            .into_iter()
            .filter(|s| !keep(s) && self.end(s, notifier))
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::sync::mpsc;
    use std::thread;

    use super::*;

    /// Long enough never to pass in a test that works: returning before it shows a wake-up.
    const LONG: Duration = Duration::from_secs(10);

    fn new_session(user: &str) -> NewSession {
        NewSession {
            user: Username::new(user).unwrap(),
            ip: IpAddr::from([127, 0, 0, 2]),
            ports: CallbackPorts {
                auth: 1,
                heartbeat: 2,
                delivery: 3,
            },
            token: SessionToken::random().unwrap(),
            join_floor: 0,
            callback_pin: None,
            rooms: false,
            gc4: false,
            files: false,
        }
    }

    /// Ten sessions in all, per account and per address.
    const TEN: SessionLimits = SessionLimits {
        total: 10,
        per_user: 10,
        per_address: 10,
    };

    #[test]
    fn one_account_or_one_address_cannot_take_every_slot() {
        let registry = Registry::default();
        let notifier = Notifier::new(0);
        let limits = SessionLimits {
            total: 10,
            per_user: 2,
            per_address: 3,
        };
        let from = |user: &str, last: u8| NewSession {
            ip: IpAddr::from([127, 0, 0, last]),
            ..new_session(user)
        };
        for _ in 0..2 {
            registry.add(from("ann", 2), limits, &notifier).unwrap();
        }
        // Case does not make another account.
        assert!(matches!(
            registry.add(from("ANN", 3), limits, &notifier),
            Err(AddError::UserFull(2))
        ));
        registry.add(from("bob", 2), limits, &notifier).unwrap();
        assert!(matches!(
            registry.add(from("cy", 2), limits, &notifier),
            Err(AddError::AddressFull(3))
        ));
        // Another address still gets in.
        registry.add(from("cy", 3), limits, &notifier).unwrap();
        assert_eq!(registry.len(), 4);
    }

    #[test]
    fn away_is_the_users_raises_the_presence_version_and_ends_with_the_last_session() {
        let registry = Registry::default();
        let notifier = Notifier::new(0);
        let first = registry.add(new_session("ann"), TEN, &notifier).unwrap();
        let second = registry.add(new_session("ann"), TEN, &notifier).unwrap();
        let ann = Username::new("Ann").unwrap();
        let (before, users) = registry.online();
        assert!(registry.set_away(&ann, Some("lunch".into()), &notifier));
        assert!(registry.online().0 > before, "a change is news");
        assert!(
            !registry.set_away(&ann, Some("lunch".into()), &notifier),
            "no change"
        );
        assert_eq!(
            registry.away_of(&users),
            [(Username::new("ann").unwrap(), "lunch".to_owned())]
        );
        // Kept while one of the user's sessions lives, forgotten with the last.
        assert!(registry.end(&first, &notifier));
        assert_eq!(registry.away_of(&users).len(), 1);
        assert!(registry.end(&second, &notifier));
        assert!(registry.away_of(&users).is_empty());
        // Nobody online here: nothing to set.
        assert!(!registry.set_away(&ann, Some("x".into()), &notifier));
        assert!(!registry.set_away(&ann, None, &notifier));
    }

    /// Runs `change` on another thread once `wait_len` is waiting: the first call of `done`
    /// runs under the registry's lock, which the waiter lets go of only by waiting, and `change`
    /// needs that lock. Returns what `wait_len` returned and whether it returned before `LONG`
    /// (a missed notification would show as a timeout).
    fn wait_while(
        registry: &Arc<Registry>,
        mut done: impl FnMut(usize) -> bool,
        change: impl FnOnce(&Registry) + Send + 'static,
    ) -> (bool, bool) {
        let (go, ready) = mpsc::channel::<()>();
        let changer = {
            let registry = Arc::clone(registry);
            thread::spawn(move || {
                if ready.recv().is_ok() {
                    change(&registry);
                }
            })
        };
        let deadline = Instant::now() + LONG;
        let mut first = true;
        let held = registry.wait_len(LONG, |n| {
            if std::mem::take(&mut first) {
                let _ = go.send(());
            }
            done(n)
        });
        let woken = Instant::now() < deadline;
        changer.join().unwrap();
        (held, woken)
    }

    #[test]
    fn wait_len_wakes_when_a_session_starts_and_ends() {
        let registry = Arc::new(Registry::default());
        let notifier = Arc::new(Notifier::new(0));
        let (tx, rx) = mpsc::channel();
        let n = Arc::clone(&notifier);
        let added = wait_while(
            &registry,
            |n| n == 1,
            move |r| {
                let _ = tx.send(r.add(new_session("ann"), TEN, &n).unwrap());
            },
        );
        assert_eq!(added, (true, true), "woken by the add");
        let session = rx.recv().unwrap();
        let ended = wait_while(
            &registry,
            |n| n == 0,
            move |r| assert!(r.end(&session, &notifier)),
        );
        assert_eq!(ended, (true, true), "woken by the end");
        assert!(!registry.wait_len(Duration::ZERO, |n| n == 1), "a timeout");
    }

    #[test]
    fn wait_len_gives_up_once_closed_and_empty() {
        let registry = Arc::new(Registry::default());
        let notifier = Arc::new(Notifier::new(0));
        registry.add(new_session("ann"), TEN, &notifier).unwrap();
        // Waiting for a second session that will never come: the close ends the first one, and
        // then nothing can change any more.
        let closed = wait_while(
            &registry,
            |n| n == 2,
            move |r| {
                r.close_all(&notifier);
            },
        );
        assert_eq!(
            closed,
            (false, true),
            "given up at the close, not the timeout"
        );
        assert!(
            registry.wait_len(LONG, |n| n == 0),
            "what holds still holds"
        );
        // Closed with no session at all: the close itself wakes the waiter.
        let empty = Arc::new(Registry::default());
        let closed = wait_while(
            &empty,
            |n| n == 1,
            |r| {
                r.close_all(&Notifier::new(0));
            },
        );
        assert_eq!(closed, (false, true), "given up at the close itself");
    }
}
