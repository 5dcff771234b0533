//! The three callback listeners (auth 12090, heartbeat 8070, delivery 6090): one accept thread
//! each, and one short thread per accepted connection, so a new connection is never stuck behind
//! an idle kept one.
//!
//! The server keeps one connection per port open and reuses it; it opens a fresh one when it finds
//! the kept one closed. Connection threads per role are bounded: when a new connection would go
//! over the bound, the oldest one of that role is cut (the server only ever uses its newest).

use std::fmt;
use std::net::{Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gc_net::tls::Stream;
use gc_net::{Conn, Registration, Unblocker};
use gc_protocol::{
    Authed, CallbackPorts, CallbackReply, DeliveryFrame, DeliveryReply, ErrorCode, ErrorFrame,
    Frame, HeartbeatPing, HeartbeatReply, HeartbeatRequest, ProtocolError, Record, Stopping,
    Timestamp,
};

use crate::config::{
    ClientConfig, DEFAULT_CALLBACK_AUTH_PORT, DEFAULT_DELIVERY_PORT, DEFAULT_HEARTBEAT_PORT,
};
use crate::error::ClientError;
use crate::event::{Event, NoticeLevel};
use crate::net;
use crate::state::ClientState;

/// Connection threads per role at once.
const MAX_CONNS_PER_ROLE: usize = 4;
/// Stack of connection threads: they run shallow frame handling.
const SMALL_STACK: usize = 256 * 1024;

/// Which callback port.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Role {
    /// 12090: `Authed`.
    Auth,
    /// 8070: `Ping`.
    Heartbeat,
    /// 6090: `Batch`.
    Delivery,
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Auth => "auth",
            Self::Heartbeat => "heartbeat",
            Self::Delivery => "delivery",
        })
    }
}

/// The address whose family the listeners take when no local address is configured: the
/// server's, when every entry of the server list is an IP address of one family (IPv4 listeners
/// then); otherwise none (`::`, both families).
fn listen_family(config: &ClientConfig) -> Option<std::net::IpAddr> {
    let ips: Vec<std::net::IpAddr> = config
        .servers()
        .ok()?
        .iter()
        .map(|s| s.parse().ok())
        .collect::<Option<_>>()?;
    let first = *ips.first()?;
    ips.iter()
        .all(|ip| ip.is_ipv4() == first.is_ipv4())
        .then_some(first)
}

/// The three bound listeners (bound before any login, so no callback can race them).
#[derive(Debug)]
pub struct Listeners {
    auth: TcpListener,
    heartbeat: TcpListener,
    delivery: TcpListener,
}

impl Listeners {
    /// Binds the three listeners as configured; returns them and their ports.
    pub fn bind(config: &ClientConfig) -> Result<(Self, CallbackPorts), ClientError> {
        let server_ip = listen_family(config);
        let ip = config
            .bind_ip
            .unwrap_or_else(|| net::unspecified_like(server_ip));
        let p = config.listen_ports;
        let auth = net::bind_listener(ip, p.auth, DEFAULT_CALLBACK_AUTH_PORT, "auth")?;
        let heartbeat = net::bind_listener(ip, p.heartbeat, DEFAULT_HEARTBEAT_PORT, "heartbeat")?;
        let delivery = net::bind_listener(ip, p.delivery, DEFAULT_DELIVERY_PORT, "delivery")?;
        let port = |l: &TcpListener, role: &'static str| {
            l.local_addr()
                .map(|a| a.port())
                .map_err(|source| ClientError::Bind {
                    role,
                    addr: std::net::SocketAddr::new(ip, 0),
                    source,
                })
        };
        let ports = CallbackPorts {
            auth: port(&auth, "auth")?,
            heartbeat: port(&heartbeat, "heartbeat")?,
            delivery: port(&delivery, "delivery")?,
        };
        Ok((
            Self {
                auth,
                heartbeat,
                delivery,
            },
            ports,
        ))
    }
}

/// The running listeners: accept threads and the connection threads they started.
#[derive(Debug)]
pub struct CallbackServer {
    accept: Vec<(JoinHandle<()>, TcpListener, SocketAddr)>,
    conns: Arc<ConnSet>,
}

impl CallbackServer {
    /// Starts one accept thread per listener.
    pub fn start(shared: &Arc<ClientState>, listeners: Listeners) -> Result<Self, ClientError> {
        let conns = Arc::new(ConnSet::default());
        let mut server = Self {
            accept: Vec::new(),
            conns: Arc::clone(&conns),
        };
        for (role, listener) in [
            (Role::Auth, listeners.auth),
            (Role::Heartbeat, listeners.heartbeat),
            (Role::Delivery, listeners.delivery),
        ] {
            let name = format!("gc-accept-{role}");
            let io_err = |source| ClientError::Thread {
                name: name.clone(),
                source,
            };
            let addr = listener.local_addr().map_err(io_err)?;
            let keep = listener.try_clone().map_err(io_err)?;
            let (sh, cs) = (Arc::clone(shared), Arc::clone(&conns));
            let spawned = thread::Builder::new()
                .name(name.clone())
                .spawn(move || accept_loop(&sh, &listener, role, &cs));
            match spawned {
                Ok(handle) => server.accept.push((handle, keep, addr)),
                Err(source) => {
                    server.stop(shared);
                    return Err(ClientError::Thread { name, source });
                }
            }
        }
        Ok(server)
    }

    /// Stops accepting, cuts every connection and joins every thread.
    pub fn stop(&mut self, shared: &ClientState) {
        shared.stop_listeners();
        for (handle, listener, addr) in self.accept.drain(..) {
            // On Linux, shutting a listening socket down wakes a blocked accept; elsewhere the
            // connection below does.
            let _ = socket2::SockRef::from(&listener).shutdown(Shutdown::Both);
            gc_net::wake_accept(addr);
            if handle.join().is_err() {
                tracing::error!("an accept thread panicked");
            }
        }
        self.conns.close_all();
    }
}

fn accept_loop(
    shared: &Arc<ClientState>,
    listener: &TcpListener,
    role: Role,
    conns: &Arc<ConnSet>,
) {
    loop {
        let accepted = listener.accept();
        if shared.listeners_stopping() {
            return;
        }
        match accepted {
            Ok((stream, peer)) => {
                tracing::trace!(%peer, "accepted a {role} connection");
                let _ = stream.set_nodelay(true);
                conns.spawn(shared, role, stream, peer);
            }
            Err(e) => {
                // E.g. out of file descriptors: back off briefly instead of spinning, but stop at
                // once when asked.
                tracing::warn!("accepting on the {role} port failed: {e}");
                shared.pause_listener(Duration::from_millis(100));
            }
        }
    }
}

#[derive(Debug)]
struct LiveConn {
    role: Role,
    registration: Registration,
    handle: JoinHandle<()>,
    cut: bool,
}

/// Connection threads, bounded per role, joined when finished or at stop; their sockets are
/// registered so the stop can cut them.
#[derive(Debug, Default)]
struct ConnSet {
    live: parking_lot::Mutex<Vec<LiveConn>>,
    sockets: Unblocker,
}

impl ConnSet {
    fn spawn(&self, shared: &Arc<ClientState>, role: Role, stream: TcpStream, peer: SocketAddr) {
        // Registered first: after `close_all` began, the socket is cut at once.
        let registration = self.sockets.register(&stream);
        if self.sockets.is_stopped() {
            return;
        }
        let finished = {
            let mut live = self.live.lock();
            let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut *live)
                .into_iter()
                .partition(|c| c.handle.is_finished());
            *live = running;
            let active = live.iter().filter(|c| c.role == role && !c.cut).count();
            if active >= MAX_CONNS_PER_ROLE
                && let Some(oldest) = live.iter_mut().find(|c| c.role == role && !c.cut)
            {
                tracing::debug!("too many {role} connections; cutting the oldest");
                oldest.registration.shutdown(Shutdown::Both);
                oldest.cut = true;
            }
            let sh = Arc::clone(shared);
            let spawned = thread::Builder::new()
                .name(format!("gc-{role}-{peer}"))
                .stack_size(SMALL_STACK)
                .spawn(move || serve(&sh, role, stream, peer));
            match spawned {
                Ok(handle) => live.push(LiveConn {
                    role,
                    registration,
                    handle,
                    cut: false,
                }),
                Err(e) => {
                    tracing::error!(%peer, "cannot start a {role} connection thread: {e}");
                    registration.shutdown(Shutdown::Both);
                }
            }
            done
        };
        for c in finished {
            join_logged(c.handle);
        }
    }

    fn close_all(&self) {
        self.sockets.stop();
        let live = std::mem::take(&mut *self.live.lock());
        for c in live {
            join_logged(c.handle);
        }
    }
}

fn join_logged(handle: JoinHandle<()>) {
    let name = handle.thread().name().unwrap_or("unnamed").to_owned();
    if handle.join().is_err() {
        tracing::error!(thread = %name, "thread panicked");
    }
}

fn serve(shared: &ClientState, role: Role, tcp: TcpStream, peer: SocketAddr) {
    let name = peer.to_string();
    let stream = match &shared.tls {
        None => Stream::plain(tcp),
        // Only the server this client trusts may call back: the handshake demands its
        // certificate (mutual TLS), and it must be the pinned one.
        Some(tls) => {
            let check = shared.server_check();
            let deadline = io_deadline(shared);
            match tls.config.accept(tcp, &name, check, deadline) {
                Ok(stream) => stream,
                Err(e) => {
                    tracing::warn!(%peer, "{role} callback refused: {e}");
                    return;
                }
            }
        }
    };
    let mut conn = Conn::new(stream, name);
    match role {
        Role::Auth => serve_auth(shared, &mut conn),
        Role::Heartbeat => serve_heartbeat(shared, &mut conn),
        Role::Delivery => serve_delivery(shared, &mut conn),
    }
    // The connection set holds a duplicate of this socket: dropping ours alone would not close
    // the connection.
    let _ = conn.get_ref().tcp().shutdown(Shutdown::Both);
}

fn io_deadline(shared: &ClientState) -> Instant {
    shared.connector.deadline()
}

fn err_frame(code: ErrorCode, text: impl Into<String>) -> ErrorFrame {
    ErrorFrame::new(code, text)
}

// ───────────────────────────── 12090: auth callback ─────────────────────────────

/// One exchange: `Authed` → `Thx` (or `Err auth` when the server's signature does not verify).
fn serve_auth(shared: &ClientState, conn: &mut Conn) {
    let reply = match conn.read::<Authed>(io_deadline(shared)) {
        Ok(authed) => handle_authed(shared, authed),
        Err(ProtocolError::Malformed { error, .. }) => {
            tracing::warn!(peer = conn.peer(), "malformed auth callback: {error}");
            CallbackReply::Err(err_frame(error.code(), error.to_string()))
        }
        Err(ProtocolError::TooLong { limit, .. }) => CallbackReply::Err(err_frame(
            ErrorCode::TooLong,
            format!("frame longer than {limit} bytes"),
        )),
        Err(e) => {
            tracing::debug!("auth callback ended: {e}");
            return;
        }
    };
    if let Err(e) = conn.send(&reply, io_deadline(shared)) {
        tracing::warn!("cannot answer the auth callback: {e}");
    }
}

/// Checks the server signature before trusting the session token.
pub(crate) fn handle_authed(shared: &ClientState, authed: Authed) -> CallbackReply {
    let mut ctl = shared.ctl();
    let (reply, changed) = ctl.callback(authed);
    match &reply {
        CallbackReply::Thx => shared.report(Ok(changed)),
        CallbackReply::Err(e) if e.code == ErrorCode::Auth => {
            tracing::warn!("the server's signature on the auth callback does not verify");
        }
        CallbackReply::Err(_) => {
            tracing::warn!("an auth callback arrived while no login was in progress; refused");
        }
    }
    reply
}

// ───────────────────────────── 8070: heartbeat ─────────────────────────────

fn serve_heartbeat(shared: &ClientState, conn: &mut Conn) {
    let config = &shared.config;
    loop {
        let idle = Instant::now() + config.idle_timeout;
        let (reply, close) = match conn.read_line_idle(idle, Some(config.io_timeout)) {
            Ok(line) => match HeartbeatRequest::parse(line) {
                Ok(HeartbeatRequest::Ping(ping)) => heartbeat_reply(shared, &ping),
                Ok(HeartbeatRequest::Stopping(stopping)) => stopping_reply(shared, stopping),
                Err(e) => {
                    tracing::warn!(peer = conn.peer(), "malformed heartbeat: {e}");
                    (
                        HeartbeatReply::Err(err_frame(e.code(), e.to_string())),
                        false,
                    )
                }
            },
            Err(ProtocolError::TooLong { limit, .. }) => (
                HeartbeatReply::Err(err_frame(
                    ErrorCode::TooLong,
                    format!("frame longer than {limit} bytes"),
                )),
                true,
            ),
            Err(e) => {
                tracing::trace!("heartbeat connection ended: {e}");
                return;
            }
        };
        if conn.send(&reply, io_deadline(shared)).is_err() || close {
            return;
        }
    }
}

/// Answers one heartbeat: `Pong <cursor> <now>` for this session's token, `Err session` (and
/// close) for any other.
pub(crate) fn heartbeat_reply(
    shared: &ClientState,
    ping: &HeartbeatPing,
) -> (HeartbeatReply, bool) {
    {
        let mut ctl = shared.ctl();
        if !ctl.owns(&ping.token) {
            tracing::debug!("heartbeat for a session that is not ours; answering Err session");
            return (
                HeartbeatReply::Err(err_frame(
                    ErrorCode::Session,
                    "not this client's current session",
                )),
                true,
            );
        }
        if ctl.heartbeat(Instant::now(), ping.presence_version) {
            shared.notify();
        }
    }
    let last_id = shared.records().cursor();
    (
        HeartbeatReply::Pong {
            last_id,
            client_time: Timestamp::now(),
        },
        false,
    )
}

/// GC/4: the server stops. For this session's token: the session ends at once (the connection
/// thread logs in again with its backoff, or moves to another instance), answered `Pong` like a
/// heartbeat; any other token gets `Err session`.
pub(crate) fn stopping_reply(shared: &ClientState, stopping: Stopping) -> (HeartbeatReply, bool) {
    {
        let mut ctl = shared.ctl();
        if !ctl.owns(&stopping.token) {
            tracing::debug!("a stop notice for a session that is not ours; answering Err session");
            return (
                HeartbeatReply::Err(err_frame(
                    ErrorCode::Session,
                    "not this client's current session",
                )),
                true,
            );
        }
        tracing::info!("the server says it stops");
        ctl.server_stopping(stopping.text);
    }
    shared.notify();
    (
        HeartbeatReply::Pong {
            last_id: shared.records().cursor(),
            client_time: Timestamp::now(),
        },
        true,
    )
}

// ───────────────────────────── 6090: delivery ─────────────────────────────

fn serve_delivery(shared: &ClientState, conn: &mut Conn) {
    let config = &shared.config;
    loop {
        let idle = Instant::now() + config.idle_timeout;
        let first = match conn.read_line_idle(idle, Some(config.io_timeout)) {
            Ok(line) => DeliveryFrame::parse(line),
            Err(ProtocolError::TooLong { limit, .. }) => {
                refuse(
                    shared,
                    conn,
                    ErrorCode::TooLong,
                    format!("frame longer than {limit} bytes"),
                );
                return;
            }
            Err(e) => {
                tracing::trace!("delivery connection ended: {e}");
                return;
            }
        };
        let (token, n) = match first {
            Ok(DeliveryFrame::Batch { token, n }) => (token, n),
            Ok(_) => {
                refuse(shared, conn, ErrorCode::Malformed, "expected `Batch`");
                return;
            }
            Err(e) => {
                refuse(shared, conn, e.code(), e.to_string());
                return;
            }
        };
        let ours = shared.ctl().owns(&token);
        if !ours {
            tracing::debug!("delivery for a session that is not ours; answering Err session");
            refuse(
                shared,
                conn,
                ErrorCode::Session,
                "not this client's current session",
            );
            return;
        }
        let mut records = Vec::with_capacity(n as usize);
        for _ in 0..n {
            match conn.read::<DeliveryFrame>(io_deadline(shared)) {
                Ok(DeliveryFrame::Rec(r)) => records.push(r),
                Ok(_) => {
                    let text = format!("the batch announced {n} records but had fewer");
                    refuse(shared, conn, ErrorCode::Malformed, text);
                    return;
                }
                Err(e) => return refuse_read(shared, conn, e),
            }
        }
        match conn.read::<DeliveryFrame>(io_deadline(shared)) {
            Ok(DeliveryFrame::End) => {}
            Ok(_) => {
                let text = format!("the batch announced {n} records but had more");
                refuse(shared, conn, ErrorCode::Malformed, text);
                return;
            }
            Err(e) => return refuse_read(shared, conn, e),
        }
        let last_id = deliver(shared, records);
        if conn
            .send(&DeliveryReply::Thx { last_id }, io_deadline(shared))
            .is_err()
        {
            return;
        }
    }
}

/// Takes a whole batch: new records (above the cursor) go to the cache and to the UI, in order,
/// each id once. Returns the cursor for `Thx`.
pub(crate) fn deliver(shared: &ClientState, records: Vec<Record>) -> u64 {
    let (cursor, error, arrived) = {
        let mut store = shared.records();
        let (new, error) = store.accept_delivery(records);
        let arrived = !new.is_empty();
        if arrived {
            // Emitted under the store lock, so concurrent batches come out in id order.
            shared.emit(Event::Records(shared.for_display(new)));
        }
        (store.cursor(), error, arrived)
    };
    if arrived {
        // Before the `Thx`: the server's next `Ping` comes after it.
        shared.ctl().records_arrived();
    }
    if let Some(text) = error {
        shared.notice(NoticeLevel::Warning, text);
    }
    cursor
}

fn refuse(shared: &ClientState, conn: &mut Conn, code: ErrorCode, text: impl Into<String>) {
    let text = text.into();
    tracing::warn!(peer = conn.peer(), "refusing a delivery ({code}): {text}");
    let _ = conn.send(
        &DeliveryReply::Err(err_frame(code, text)),
        io_deadline(shared),
    );
}

fn refuse_read(shared: &ClientState, conn: &mut Conn, e: ProtocolError) {
    match e {
        ProtocolError::Malformed { error, .. } => {
            refuse(shared, conn, error.code(), error.to_string());
        }
        ProtocolError::TooLong { limit, .. } => refuse(
            shared,
            conn,
            ErrorCode::TooLong,
            format!("frame longer than {limit} bytes"),
        ),
        e => tracing::debug!("delivery connection ended mid-batch: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

    use base64::Engine as _;
    use gc_protocol::{SessionToken, Username};

    use gc_protocol::Registration;
    use gc_protocol::signin::ServerHello;

    use crate::event::ConnState;
    use crate::records::RecordStore;

    fn shared() -> (ClientState, mpsc::Receiver<Event>) {
        let (tx, rx) = mpsc::channel();
        let config = ClientConfig::new("127.0.0.1", "alice", "right");
        let ports = CallbackPorts {
            auth: 1,
            heartbeat: 2,
            delivery: 3,
        };
        let sink = Box::new(move |e| {
            let _ = tx.send(e);
        });
        let user = Username::new("alice").unwrap();
        (
            ClientState::new(
                config,
                user,
                ports,
                RecordStore::in_memory(),
                sink,
                gc_plugin::Plugins::none(),
                None,
            ),
            rx,
        )
    }

    /// A login expecting its callback (no events: the tests look at what the callback emits);
    /// returns the genuine server-final.
    fn pending_login(shared: &ClientState) -> String {
        let (check, server_final) = crate::control::tests::scram_exchange();
        let mut ctl = shared.ctl();
        ctl.begin_sign_in().unwrap();
        ctl.connected(ServerHello {
            name: "test".into(),
            registration: Registration::Open,
        })
        .unwrap();
        ctl.authenticating().unwrap();
        ctl.expect_callback(check).unwrap();
        server_final
    }

    fn shared_last_heartbeat(ctl: &crate::control::Control) -> Option<Instant> {
        match ctl.session() {
            crate::control::SessionPhase::Active { last_heartbeat, .. } => Some(*last_heartbeat),
            _ => None,
        }
    }

    fn token(c: char) -> SessionToken {
        SessionToken::new(c.to_string().repeat(64)).unwrap()
    }

    #[test]
    fn forged_authed_is_refused_and_the_genuine_one_accepted() {
        let (shared, rx) = shared();
        let genuine = pending_login(&shared);
        let forged = format!(
            "v={}",
            base64::engine::general_purpose::STANDARD.encode([7u8; 32])
        );
        let reply = handle_authed(
            &shared,
            Authed {
                server_final: forged,
                token: token('a'),
            },
        );
        match reply {
            CallbackReply::Err(e) => {
                assert_eq!(e.code, ErrorCode::Auth);
                assert!(e.text.contains("signature"), "{}", e.text);
            }
            other => panic!("{other:?}"),
        }
        assert!(
            !shared.ctl().owns(&token('a')),
            "a forged token is never trusted"
        );
        assert!(matches!(shared.ctl().callback_outcome(), Some(Err(_))));
        // The real server's callback still verifies.
        let reply = handle_authed(
            &shared,
            Authed {
                server_final: genuine,
                token: token('b'),
            },
        );
        assert_eq!(reply, CallbackReply::Thx);
        assert!(shared.ctl().owns(&token('b')));
        assert_eq!(shared.ctl().state(), ConnState::Authenticated);
        assert!(matches!(
            rx.try_recv(),
            Ok(Event::State(ConnState::Authenticated))
        ));
        // No login in progress any more: another callback is refused.
        let again = handle_authed(
            &shared,
            Authed {
                server_final: "v=AAAA".into(),
                token: token('c'),
            },
        );
        assert!(matches!(again, CallbackReply::Err(_)));
        assert!(shared.ctl().owns(&token('b')));
    }

    #[test]
    fn heartbeats_for_other_sessions_get_err_session() {
        let (shared, _rx) = shared();
        let ping = |t| HeartbeatPing {
            token: t,
            server_time: Timestamp::now(),
            presence_version: 3,
        };
        let (reply, close) = heartbeat_reply(&shared, &ping(token('a')));
        assert!(close);
        assert!(matches!(reply, HeartbeatReply::Err(e) if e.code == ErrorCode::Session));
        let genuine = pending_login(&shared);
        handle_authed(
            &shared,
            Authed {
                server_final: genuine,
                token: token('a'),
            },
        );
        let started = Instant::now();
        shared
            .ctl()
            .activate(Duration::from_secs(1), 0, started)
            .unwrap();
        deliver(&shared, vec![]);
        let (reply, close) = heartbeat_reply(&shared, &ping(token('a')));
        assert!(!close);
        assert!(matches!(reply, HeartbeatReply::Pong { last_id: 0, .. }));
        let ctl = shared.ctl();
        assert!(ctl.presence.wanted(), "a new presence version asks for Who");
        assert_eq!(ctl.presence.seen(), Some(3));
        assert!(shared_last_heartbeat(&ctl) > Some(started));
    }

    #[test]
    fn deliveries_emit_each_record_once_in_order() {
        let (shared, rx) = shared();
        let rec = |id| Record {
            room: gc_protocol::Room::general(),
            id,
            timestamp: Timestamp::from_micros(id),
            username: Username::new("bob").unwrap(),
            body: format!("{id}"),
        };
        assert_eq!(deliver(&shared, vec![rec(2), rec(1)]), 2);
        assert_eq!(deliver(&shared, vec![rec(1), rec(2)]), 2);
        assert_eq!(deliver(&shared, vec![rec(3)]), 3);
        let got: Vec<Vec<u64>> = rx
            .try_iter()
            .filter_map(|e| match e {
                Event::Records(r) => Some(r.iter().map(|r| r.id).collect()),
                _ => None,
            })
            .collect();
        assert_eq!(got, [vec![1, 2], vec![3]]);
    }
}
