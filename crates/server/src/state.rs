//! State shared by the server's threads: the store, accounts, the session registry, presence,
//! the "something changed" notifier, limits and the shutdown signal.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Instant;

use gc_plugin::Plugins;
use gc_protocol::{CallbackPorts, FramedStream, SessionToken, Username};
use gc_store::{Accounts, MessageStore};
use parking_lot::{Condvar, Mutex};

use crate::config::Config;
use crate::limits::{LoginThrottle, RateLimiter};
use crate::notify::{Doorbell, Notifier};
use crate::threads::ThreadGroup;

/// Everything the server's threads share.
#[derive(Debug)]
pub struct Shared {
    /// The configuration the server started with.
    pub config: Config,
    /// Messages.
    pub store: MessageStore,
    /// Accounts.
    pub accounts: Accounts,
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
    /// Short-lived connection threads (connect and auth ports).
    pub conn_threads: ThreadGroup,
    /// Session threads (heartbeat and listener).
    pub session_threads: ThreadGroup,
    /// Sockets of short-lived connection threads, shut down at stop so no thread waits out a
    /// deadline.
    pub open_conns: Mutex<HashMap<u64, TcpStream>>,
    /// Source of ids for `open_conns`.
    pub next_conn_id: AtomicU64,
    /// Connection threads in progress per client address (bounded, so one address cannot use up
    /// every slot).
    pub pending_by_ip: Mutex<HashMap<IpAddr, usize>>,
    /// Connection threads in progress in all.
    pub pending_total: AtomicUsize,
}

impl Shared {
    /// Whether shutdown has begun.
    pub fn stopping(&self) -> bool {
        self.notifier.is_shutdown()
    }

    /// Ends a session (Bye, missed heartbeats, failed start) and tells the plugins.
    pub fn end_session(&self, session: &Session) {
        if self.registry.end(session, &self.notifier) {
            self.plugins.client_disconnected(session.user.as_str());
        }
    }

    /// How long an outgoing connect may take: the I/O timeout, but at most 2 s, so a client
    /// behind a firewall that drops packets cannot hold a thread (or the shutdown) for long. On a
    /// LAN a connect is answered in milliseconds, refused, or never.
    pub fn connect_timeout(&self) -> std::time::Duration {
        self.config
            .io_timeout
            .min(std::time::Duration::from_secs(2))
    }

    /// Registers a socket to be shut down when the server stops; unregistered when the guard
    /// drops.
    pub fn track_conn(&self, stream: &TcpStream) -> TrackedConn<'_> {
        let id = self.next_conn_id.fetch_add(1, Ordering::Relaxed);
        if let Ok(clone) = stream.try_clone() {
            self.open_conns.lock().insert(id, clone);
        }
        if self.stopping() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        TrackedConn { shared: self, id }
    }

    /// A deadline `io_timeout` from now.
    pub fn io_deadline(&self) -> Instant {
        Instant::now() + self.config.io_timeout
    }
}

/// Keeps a socket in [`Shared::open_conns`] while alive.
#[derive(Debug)]
pub struct TrackedConn<'a> {
    shared: &'a Shared,
    id: u64,
}

impl Drop for TrackedConn<'_> {
    fn drop(&mut self) {
        self.shared.open_conns.lock().remove(&self.id);
    }
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
    /// Set once when the session ends.
    ended: AtomicBool,
    /// Connections on the sending port waiting for, or served by, this session's listener.
    pub slot: ListenerSlot,
    /// Clones of the heartbeat thread's kept connections (heartbeat, delivery), shut down when
    /// the session ends so the thread never waits out a deadline.
    pub hb_sockets: Mutex<[Option<TcpStream>; 2]>,
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
        for s in self.hb_sockets.lock().iter_mut().filter_map(Option::take) {
            let _ = s.shutdown(Shutdown::Both);
        }
        self.bell.ring();
        true
    }
}

/// Hands connections from the sending-port accept thread to a session's listener thread.
#[derive(Debug, Default)]
pub struct ListenerSlot {
    state: Mutex<SlotState>,
    cv: Condvar,
}

#[derive(Debug, Default)]
struct SlotState {
    inbox: VecDeque<Conn>,
    /// A clone of the connection being served, to unblock its read.
    current: Option<TcpStream>,
    /// Since when the listener has been waiting for the next frame on `current`.
    idle_since: Option<Instant>,
    closed: bool,
}

/// A connection on the sending port, with whatever it has buffered.
pub type Conn = FramedStream<TcpStream>;

/// How a listener's wait for its next connection ended.
#[derive(Debug)]
pub enum NextConn {
    /// A connection to serve.
    Conn(Conn),
    /// The session ended or the server is stopping.
    Closed,
}

impl ListenerSlot {
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
    pub fn offer(&self, conn: Conn) -> Result<(), Conn> {
        let mut s = self.state.lock();
        if s.closed {
            return Err(conn);
        }
        s.inbox.push_back(conn);
        if s.idle_since.is_some()
            && let Some(current) = &s.current
        {
            let _ = current.shutdown(Shutdown::Read);
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
                s.current = conn.get_ref().try_clone().ok();
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
            let _ = current.shutdown(Shutdown::Both);
        }
        self.cv.notify_all();
    }
}

/// Why a session could not be added.
#[derive(Debug, PartialEq, Eq)]
pub enum AddError {
    /// The client limit is reached.
    Full,
    /// The server is stopping.
    ShuttingDown,
}

/// Live sessions, indexed by token and by address, and who is online.
#[derive(Debug, Default)]
pub struct Registry {
    inner: Mutex<RegistryInner>,
}

#[derive(Debug, Default)]
struct RegistryInner {
    by_token: HashMap<String, Arc<Session>>,
    by_ip: HashMap<IpAddr, Vec<Arc<Session>>>,
    /// Online users by case-folded name: display name and number of sessions.
    online: BTreeMap<String, (Username, usize)>,
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
}

impl Registry {
    /// Adds a session unless the limit is reached or the registry is closed for shutdown.
    pub fn add(
        &self,
        new: NewSession,
        max_clients: usize,
        notifier: &Notifier,
    ) -> Result<Arc<Session>, AddError> {
        let mut r = self.inner.lock();
        if r.closed {
            return Err(AddError::ShuttingDown);
        }
        if r.by_token.len() >= max_clients {
            return Err(AddError::Full);
        }
        r.next_id += 1;
        let session = Arc::new(Session {
            id: r.next_id,
            user: new.user,
            ip: new.ip,
            ports: new.ports,
            token: new.token,
            join_floor: new.join_floor,
            ended: AtomicBool::new(false),
            slot: ListenerSlot::default(),
            hb_sockets: Mutex::new([None, None]),
            bell: Arc::new(Doorbell::default()),
        });
        r.by_token
            .insert(session.token.as_str().to_owned(), Arc::clone(&session));
        r.by_ip
            .entry(session.ip)
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
        let gone = match r.online.get_mut(&key) {
            Some(entry) => {
                entry.1 -= 1;
                entry.1 == 0
            }
            None => false,
        };
        if gone {
            r.online.remove(&key);
            r.presence_version += 1;
            notifier.presence_changed(r.presence_version);
        }
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

    /// Who is online (each user once, sorted case-insensitively) and the presence version.
    pub fn online(&self) -> (u64, Vec<Username>) {
        let r = self.inner.lock();
        (
            r.presence_version,
            r.online.values().map(|(u, _)| u.clone()).collect(),
        )
    }

    /// Number of live sessions.
    pub fn len(&self) -> usize {
        self.inner.lock().by_token.len()
    }

    /// Refuses new sessions and ends every live one (shutdown); returns the sessions it ended.
    pub fn close_all(&self, notifier: &Notifier) -> Vec<Arc<Session>> {
        let sessions: Vec<Arc<Session>> = {
            let mut r = self.inner.lock();
            r.closed = true;
            r.by_token.values().cloned().collect()
        };
        sessions
            .into_iter()
            .filter(|s| self.end(s, notifier))
            .collect()
    }
}
