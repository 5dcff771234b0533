//! The connection thread: signs in (DISCONNECTED → CONNECTING → CONNECTED → AUTHENTICATING →
//! AUTHENTICATED → ACTIVE) through the protocol's sign-in machine, reconnects with backoff, and
//! carries every exchange on the server's sending port (outbox, `History`, `Who`, `Rooms`, the
//! room requests, `Bye`) over one kept connection. What to do next while active is
//! [`Control::next_work`]'s decision.
//!
//! Versions: the client asks `Ping GC/4` first on either transport. A server that answers
//! `Err version` is an older one: the client asks again on a fresh connection with `GC/3`
//! (rooms, without `/passwd`, `/away` and the stop notice), and after another `Err version` with
//! the transport's old version (`GC/2` over TLS, `GC/1` plain), without rooms. Any other answer
//! than a `Pong` of the version asked or `Err version` is refused, as a `Pong` of another version
//! always was ([`first_answer`]).

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gc_net::{Conn, KeptConn, NetError, Reuse};
use gc_protocol::limits::MAX_HISTORY_LIMIT;
use gc_protocol::limits::MAX_SCRAM_ITERATIONS;
use gc_protocol::scram::Binding;
use gc_protocol::scram::{ClientKeys, derive_verifier, passwd_message, passwd_proof, random_salt};
use gc_protocol::signin::{self, Channel, ServerHello, SignInError, SignedIn};
use gc_protocol::{
    ErrorCode, ErrorFrame, Frame, Record, Registration, Room, SendReply, SendRequest, SessionLevel,
    SessionToken, Username, VERSION, VERSION_GC4, VERSION_GC5, VERSION_ROOMS, VERSION_TLS,
};

use crate::backoff::Backoff;
use crate::control::{Command, Next, PasswordChange, Work, no_gc4};
use crate::error::{ClientError, PinMismatch, error_chain};
use crate::event::{AccountChange, Event, NoticeLevel, Refusal, Rejection};
use crate::failover::{Rotation, Target};
use crate::net;
use crate::outbox::{MAX_PIPELINE, MsgReply, PendingMessage, ReplyEffect};
use crate::rooms::{NO_ROOMS, RoomInfo, RoomRequest, wire_room};
use crate::state::ClientState;
use crate::trust::ServerPin;

/// The wait after `internal` from the server before the outbox tries again.
const INTERNAL_RETRY: Duration = Duration::from_secs(1);

/// Fresh connections one exchange on the sending port may open when each is cut before any
/// reply: the server hands a new connection to a listener of any session from this address, and
/// cuts it if that session ends (e.g. our previous one, lingering until it misses three
/// heartbeats).
const SEND_FRESH_ATTEMPTS: u32 = 2;

/// A live session, as the connection thread uses it.
#[derive(Debug)]
struct LiveSession {
    token: SessionToken,
    heartbeat: Duration,
    /// A GC/3 session: it may name rooms.
    rooms: bool,
    /// A GC/4 session: `/passwd`, `/away`, and `Away` lines after `Online`.
    gc4: bool,
}

/// How an active session ended.
#[derive(Debug)]
enum End {
    /// `close()`: stop.
    Closed {
        /// Whether the server acknowledged `Bye`.
        bye_sent: bool,
    },
    /// The session is gone or was given up: log in again.
    Relogin(String),
    /// The instance stopped answering (a late heartbeat's probe was refused, or the watchdog
    /// fired): log in again, on the next instance of the list first, at once.
    Lost(String),
    /// An exchange failed.
    Failed(ClientError),
}

/// Runs the connection thread until the client closes.
pub fn run(shared: &Arc<ClientState>) {
    let mut backoff = Backoff::new(shared.config.backoff);
    let mut rotation = Rotation::new(
        shared
            .config
            .servers()
            .unwrap_or_else(|_| vec![shared.config.server.clone()]),
    );
    let mut registered = !shared.config.register;
    let mut link = send_link(shared);
    let mut last_warning: Option<String> = None;
    let mut bye_sent = false;
    loop {
        if shared.closing() {
            break;
        }
        let end = match sign_in(shared, &mut rotation, &mut registered, &mut link) {
            Ok(session) => {
                backoff.reset();
                last_warning = None;
                let end = run_active(shared, &mut link, &session);
                if matches!(&end, End::Lost(_)) || matches!(&end, End::Failed(e) if !e.is_fatal()) {
                    // This instance failed: the next attempt starts with another.
                    rotation.failed(link.addr().ip());
                }
                end
            }
            Err(e) => End::Failed(e),
        };
        link.close();
        end_session(shared);
        let wait = match end {
            End::Closed { bye_sent: sent } => {
                bye_sent = sent;
                break;
            }
            End::Relogin(why) => {
                shared.notice(NoticeLevel::Warning, format!("{why}; logging in again"));
                backoff.next_wait()
            }
            End::Lost(why) if rotation.has_alternatives() => {
                // Another instance may well answer: try it now. If none does, the failed
                // sign-in backs off as usual.
                shared.notice(
                    NoticeLevel::Warning,
                    format!("{why}; moving to the next server"),
                );
                Duration::ZERO
            }
            End::Lost(why) => {
                shared.notice(NoticeLevel::Warning, format!("{why}; logging in again"));
                backoff.next_wait()
            }
            End::Failed(e) if e.is_fatal() => {
                tracing::warn!("giving up: {}", error_chain(&e));
                shared.emit(Event::Fatal(e));
                if !wait_after_fatal(shared) {
                    break;
                }
                backoff.reset();
                last_warning = None;
                continue;
            }
            End::Failed(e) => {
                // A server that says how long to wait (`throttled`) is not asked sooner.
                let wait = backoff.next_wait().max(e.retry_after().unwrap_or_default());
                let text = error_chain(&e);
                if last_warning.as_deref() == Some(text.as_str()) {
                    tracing::debug!("{text}; retrying in {:.1} s", wait.as_secs_f64());
                } else {
                    let hint = if e.code() == Some(ErrorCode::Unreachable) {
                        " (the server cannot connect back to this client: check the firewall, \
                         NAT, or --bind)"
                    } else {
                        ""
                    };
                    let when = match e.retry_after() {
                        Some(_) => format!("trying again in {:.0} s", wait.as_secs_f64().ceil()),
                        None => "retrying with backoff".to_owned(),
                    };
                    shared.notice(NoticeLevel::Warning, format!("{text}{hint}; {when}"));
                    last_warning = Some(text);
                }
                wait
            }
        };
        if !wait_backoff(shared, wait) {
            break;
        }
    }
    link.close();
    let mut ctl = shared.ctl();
    let changed = ctl.disconnect();
    ctl.finished(bye_sent);
    shared.report(Ok(changed));
    shared.notify();
}

/// The link to the server's sending port (its address is set at each sign-in).
fn send_link(shared: &ClientState) -> KeptConn {
    let reuse = if shared.config.reuse_connections {
        Reuse::Keep
    } else {
        Reuse::CloseAfterEach
    };
    let unspecified = SocketAddr::new(IpAddr::from([0, 0, 0, 0]), 0);
    KeptConn::new(
        unspecified,
        shared.connector.clone(),
        shared.sockets.clone(),
        reuse,
    )
    .with_fresh_attempts(SEND_FRESH_ATTEMPTS)
    .with_check(shared.server_check())
}

/// Forgets the session (its token is refused from now on) and goes DISCONNECTED.
fn end_session(shared: &ClientState) {
    let mut ctl = shared.ctl();
    let changed = ctl.disconnect();
    shared.report(Ok(changed));
}

/// Waits out a backoff. False when the client is closing.
fn wait_backoff(shared: &ClientState, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut ctl = shared.ctl();
    loop {
        if ctl.is_closing() {
            return false;
        }
        if ctl.take_reconnect() || Instant::now() >= deadline {
            return true;
        }
        shared.wait_until(&mut ctl, deadline);
    }
}

/// After a fatal error: waits for `reconnect()` (true) or `close()` (false).
fn wait_after_fatal(shared: &ClientState) -> bool {
    let mut ctl = shared.ctl();
    ctl.give_up();
    shared.notify();
    loop {
        match ctl.life() {
            crate::control::Lifecycle::GaveUp => shared.wait(&mut ctl),
            crate::control::Lifecycle::Running => return true,
            _ => return false,
        }
    }
}

fn unexpected(peer: &str, detail: impl Into<String>) -> ClientError {
    ClientError::Unexpected {
        peer: peer.to_owned(),
        detail: detail.into(),
    }
}

/// A connection failure: opening one to the server's `port`, or the exchange `what` on it. A
/// certificate other than the pinned one (`pin`) is never retried.
fn net_error(
    pin: Option<&ServerPin>,
    port: &'static str,
    what: &'static str,
    e: NetError,
) -> ClientError {
    match (e, pin) {
        (NetError::Connect { addr, source }, _) => ClientError::Connect {
            what: port,
            addr,
            source,
        },
        (NetError::Tls { peer, detail }, _) => ClientError::Handshake {
            what: port,
            peer,
            detail,
        },
        (
            NetError::WrongPeer {
                peer,
                expected,
                presented,
            },
            Some(pin),
        ) => ClientError::FingerprintChanged(Box::new(PinMismatch {
            peer,
            expected,
            presented,
            pin: pin.source.clone(),
        })),
        (other, _) => ClientError::Protocol {
            what,
            source: other.into_protocol(),
        },
    }
}

/// A failure on the link to the server's sending port, during `what`.
fn link_error(shared: &ClientState, what: &'static str, e: NetError) -> ClientError {
    net_error(pin(shared), "the server's send port", what, e)
}

fn pin(shared: &ClientState) -> Option<&ServerPin> {
    shared.server_pin()
}

// ───────────────────────────── sign-in ─────────────────────────────

/// One sign-in, step by step through `gc_protocol::signin`, with the state machine following: on
/// the first instance of `rotation`'s order that answers the version check.
fn sign_in(
    shared: &ClientState,
    rotation: &mut Rotation,
    registered: &mut bool,
    link: &mut KeptConn,
) -> Result<LiveSession, ClientError> {
    let config = &shared.config;
    shared.transition(|c| c.begin_sign_in())?;
    let (targets, warnings) = rotation.targets(
        |server| net::resolve(server, config.server_ports.connect, config.bind_ip),
        |entry| shared.usable(entry),
    )?;
    for warning in rotation.fresh_warnings(warnings) {
        shared.notice(NoticeLevel::Warning, warning);
    }
    let (checked, early) = with_auth_opening(shared, targets.first().copied(), || {
        version_check(shared, rotation, &targets)
    });
    let (target, hello, version) = checked?;
    let result = sign_in_on(shared, target, hello, version, early, registered, link);
    match &result {
        Ok(_) => {
            let now = rotation.instance(target);
            let mut label = now.to_string();
            if !label.contains(&target.ip.to_string()) {
                label.push_str(&format!(" (at {})", target.ip));
            }
            if let Some(before) = rotation.logged_in(target) {
                if before.ip != target.ip {
                    shared.notice(NoticeLevel::Info, format!("moved from {before} to {label}"));
                }
            } else if now.has_alternatives() {
                shared.notice(NoticeLevel::Info, format!("on {label}"));
            }
        }
        Err(e) if !e.is_fatal() => rotation.failed(target.ip),
        Err(_) => {}
    }
    result
}

/// The rest of a sign-in once `target` answered the version check.
fn sign_in_on(
    shared: &ClientState,
    target: Target,
    hello: ServerHello,
    version: &'static str,
    early: EarlyAuth,
    registered: &mut bool,
    link: &mut KeptConn,
) -> Result<LiveSession, ClientError> {
    let config = &shared.config;
    let server_ip = target.ip;
    let level = SessionLevel::of_version(version).unwrap_or_default();
    let rooms = level.rooms();
    {
        let mut ctl = shared.ctl();
        let change = ctl.agree_version(version, rooms);
        if change.changed {
            shared.emit(Event::Version { version, rooms });
        }
        if change.first_without_rooms && config.rooms {
            shared.notice(NoticeLevel::Info, NO_ROOMS);
        }
    }
    let registration = hello.registration;
    shared.transition(|c| c.connected(hello))?;
    let auth_addr = SocketAddr::new(server_ip, config.server_ports.auth);
    let (mut auth, _registered) = match early {
        Some((addr, Ok(opened))) if addr == auth_addr => opened,
        // Another address answered, or the early attempt failed: open it now (and report
        // that attempt's error, if it fails again).
        _ => shared
            .connector
            .open(auth_addr, shared.server_check(), &shared.sockets)
            .map_err(|e| connect_error(pin(shared), "the server's auth port", e))?,
    };
    if !*registered {
        register(shared, &mut auth, registration)?;
        *registered = true;
    }
    let signed_in = authenticate(shared, &mut auth, level)?;
    link.set_addr(SocketAddr::new(server_ip, config.server_ports.send));
    link.set_check(shared.server_check());
    Ok(signed_in)
}

/// An early attempt to open the auth-port connection: where to, and how it went.
type EarlyAuth = Option<(SocketAddr, Result<(Conn, gc_net::Registration), NetError>)>;

/// Runs `check` (the version check) while the connection to the auth port at `ip` opens beside
/// it on a scoped thread: over TLS each connection costs a handshake, and a sign-in would
/// otherwise wait for two in a row. No frame goes on the auth connection before the version
/// check has passed; one that is not needed is closed unused.
fn with_auth_opening<T>(
    shared: &ClientState,
    target: Option<Target>,
    check: impl FnOnce() -> T,
) -> (T, EarlyAuth) {
    let Some(target) = target.filter(|_| shared.tls.is_some()) else {
        // Plain connections open in a round trip: not worth a thread.
        return (check(), None);
    };
    let addr = SocketAddr::new(target.ip, shared.config.server_ports.auth);
    let server_check = shared.server_check_for(target.entry);
    std::thread::scope(|scope| {
        let opening = std::thread::Builder::new()
            .name("gc-conn-auth".into())
            .spawn_scoped(scope, || {
                shared.connector.open(addr, server_check, &shared.sockets)
            });
        let checked = check();
        let early = opening
            .ok()
            .and_then(|thread| thread.join().ok())
            .map(|opened| (addr, opened));
        (checked, early)
    })
}

/// A failure opening a connection to the server's `port` (pinned to `pin`).
pub(crate) fn connect_error(
    pin: Option<&ServerPin>,
    port: &'static str,
    e: NetError,
) -> ClientError {
    net_error(pin, port, port, e)
}

/// What the answer to `Ping GC/4` (or, after it, `Ping GC/3`) means.
#[derive(Debug)]
pub(crate) enum FirstAnswer {
    /// The `Pong` of the version asked: the server speaks it.
    Rooms(ServerHello),
    /// `Err version`: an older server. Ask again, on a fresh connection, with the next older
    /// version (`GC/3`, then the transport's old one), and work without what it lacks. Over TLS
    /// the answer is authenticated (the pinned certificate), so this is no downgrade an attacker
    /// can cause.
    Older(ErrorFrame),
    /// Anything else, as any failed version check: a connection failure (try the next address,
    /// or later), or a refusal or a `Pong` of another version than asked (refused for good, as
    /// a downgrade would be).
    Failed(SignInError),
}

/// Sorts out the answer to `Ping GC/4` or `Ping GC/3` (see [`FirstAnswer`]).
pub(crate) fn first_answer(answer: Result<ServerHello, SignInError>) -> FirstAnswer {
    match answer {
        Ok(hello) => FirstAnswer::Rooms(hello),
        Err(SignInError::Refused { error, .. }) if error.code == ErrorCode::Version => {
            FirstAnswer::Older(error)
        }
        Err(e) => FirstAnswer::Failed(e),
    }
}

/// The transport's version without rooms: `GC/2` over TLS, `GC/1` plain.
fn old_version(shared: &ClientState) -> &'static str {
    if shared.tls.is_some() {
        VERSION_TLS
    } else {
        VERSION
    }
}

/// The version check on the first of `targets` that answers (each checked against its own
/// instance's pin): `Ping GC/5`, after `Err version` `Ping GC/4`, then `Ping GC/3`, then
/// `Ping GC/2` (`GC/1` plain), each on a fresh connection (see [`first_answer`]); only the last when the
/// configuration asks for no rooms. Returns the target, the server's hello and the version
/// agreed.
fn version_check(
    shared: &ClientState,
    rotation: &Rotation,
    targets: &[Target],
) -> Result<(Target, ServerHello, &'static str), ClientError> {
    let port = shared.config.server_ports.connect;
    let old = old_version(shared);
    let ladder: &[&'static str] = if shared.config.rooms {
        &[VERSION_GC5, VERSION_GC4, VERSION_ROOMS]
    } else {
        &[]
    };
    let mut last_error = None;
    'targets: for &target in targets {
        shared.set_instance(rotation.instance(target));
        let addr = SocketAddr::new(target.ip, port);
        let mut agreed = ladder.first().copied().unwrap_or(old);
        let mut answer = match ask_version(shared, addr, agreed) {
            Ok(answer) => answer,
            Err(e) if e.is_fatal() => return Err(e),
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        // Down the ladder while the server says it speaks an older version.
        for (i, &asked) in ladder.iter().enumerate() {
            match first_answer(answer) {
                FirstAnswer::Rooms(hello) => {
                    answer = Ok(hello);
                    break;
                }
                FirstAnswer::Older(refusal) => {
                    let next = ladder.get(i + 1).copied().unwrap_or(old);
                    tracing::info!(
                        "{addr} does not speak {asked} ({}); asking for {next}",
                        refusal.text
                    );
                    agreed = next;
                    answer = match ask_version(shared, addr, next) {
                        Ok(answer) => answer,
                        Err(e) if e.is_fatal() => return Err(e),
                        Err(e) => {
                            last_error = Some(e);
                            continue 'targets;
                        }
                    };
                }
                FirstAnswer::Failed(e) => {
                    answer = Err(e);
                    break;
                }
            }
        }
        match answer {
            Ok(hello) => {
                tracing::info!("connected to {:?} at {addr} ({agreed})", hello.name);
                return Ok((target, hello, agreed));
            }
            Err(e @ SignInError::Wire { .. }) => last_error = Some(e.into()),
            Err(e) => return Err(e.into()),
        }
    }
    Err(last_error.unwrap_or_else(|| ClientError::Resolve {
        server: shared.config.server.clone(),
        detail: "no addresses".into(),
    }))
}

/// `Ping <version>` on a fresh connection to the server's connect port at `addr`: the answer,
/// or why the connection could not be opened.
fn ask_version(
    shared: &ClientState,
    addr: SocketAddr,
    version: &'static str,
) -> Result<Result<ServerHello, SignInError>, ClientError> {
    let (mut conn, _registered) = shared
        .connector
        .open(addr, shared.server_check(), &shared.sockets)
        .map_err(|e| connect_error(pin(shared), "the server's connect port", e))?;
    Ok(signin::version_check(
        &mut conn,
        version,
        shared.config.io_timeout,
    ))
}

/// A heartbeat is late: opens (and closes) a connection to the server's connect port at the
/// address of the sending link. Refused means the server is gone: log in again (with backoff)
/// now rather than at the watchdog. Anything else (accepted, slow) says nothing: a busy server
/// or a lost packet is left to the watchdog.
fn probe(shared: &ClientState, send_addr: SocketAddr) -> Result<(), End> {
    let addr = SocketAddr::new(send_addr.ip(), shared.config.server_ports.connect);
    let wait = shared.config.io_timeout.min(Duration::from_secs(1));
    match gc_net::connect_from(shared.config.bind_ip, addr, wait) {
        Err(e) if e.kind() == std::io::ErrorKind::ConnectionRefused => Err(End::Lost(format!(
            "the server at {addr} refuses connections: it has stopped"
        ))),
        Ok(_) | Err(_) => Ok(()),
    }
}

/// `Register` with a verifier derived here: the password never leaves the client.
fn register(
    shared: &ClientState,
    auth: &mut Conn,
    registration: Registration,
) -> Result<(), ClientError> {
    let config = &shared.config;
    if registration == Registration::Closed {
        return Err(ClientError::Refused {
            during: "the registration",
            code: ErrorCode::RegistrationClosed,
            text: "this server only has accounts made by its operator; ask them for one, then \
                   log in without registering"
                .into(),
        });
    }
    let password = shared.ctl().password(&config.password).clone();
    signin::register_with_password(
        auth,
        &shared.username,
        password.expose(),
        config.min_scram_iterations,
        config.io_timeout,
    )?;
    shared.notice(
        NoticeLevel::Info,
        format!("account {} created", shared.username),
    );
    Ok(())
}

/// SCRAM: `AuthRequest` → `Auth1` → `Proof`, while the auth callback checks the server's
/// signature and takes the token; then `Ok`. `level`: a GC/3 or GC/4 session (the server
/// answered `Pong` of that version), or neither.
fn authenticate(
    shared: &ClientState,
    auth: &mut Conn,
    level: SessionLevel,
) -> Result<LiveSession, ClientError> {
    let rooms = level.rooms();
    let config = &shared.config;
    shared.transition(|c| c.authenticating())?;
    let channel = match &shared.tls {
        None => Channel::Plain,
        Some(tls) => match auth.get_ref().binding() {
            Binding::TlsExporter(binding) => Channel::Tls {
                binding,
                callback_fingerprint: tls.callback_fingerprint,
            },
            Binding::Unbound => {
                return Err(ClientError::Tls {
                    detail: "no channel binding from the TLS session".into(),
                });
            }
        },
    };
    let challenge = signin::request_login(
        auth,
        &shared.username,
        shared.ports,
        &channel,
        level,
        config.io_timeout,
    )?;
    let password = shared.ctl().password(&config.password).clone();
    let proof = challenge.prove(password.expose(), config.min_scram_iterations)?;
    // The cursor the session's first heartbeats will report (see `activate`).
    let cursor_at_login = shared.records().cursor();
    // Before the proof goes out: the server calls back as soon as it has read it.
    shared.ctl().expect_callback(proof.callback_check())?;
    let awaiting = proof.send(auth, config.io_timeout)?;
    // The server calls back (connect + exchange, each within its own deadline) before it answers.
    let SignedIn {
        token,
        heartbeat_ms,
        latest_id,
    } = awaiting.finish(auth, config.io_timeout * 3, |_| {
        shared.ctl().callback_outcome()
    })?;
    let heartbeat = Duration::from_millis(u64::from(heartbeat_ms.max(1)));
    activate(shared, heartbeat, latest_id, cursor_at_login, rooms)?;
    Ok(LiveSession {
        token,
        heartbeat,
        rooms,
        gc4: level.gc4(),
    })
}

/// After `Ok`: checks the cursor against the server's newest id, gives up the outbox's messages
/// for rooms when the session has none, and goes ACTIVE.
fn activate(
    shared: &ClientState,
    heartbeat: Duration,
    latest_id: u64,
    cursor_at_login: u64,
    rooms: bool,
) -> Result<(), ClientError> {
    let reset = shared
        .records()
        .check_server_latest(latest_id, cursor_at_login);
    if let Some(reset) = reset {
        let mut text = format!(
            "the server's newest message is {} but this client already holds up to {}: the \
             server's store was reset, or this is another server",
            reset.server_latest, reset.old_cursor
        );
        if let Some(to) = &reset.moved_to {
            text.push_str(&format!(
                "; the old cache was moved to {} and a fresh one started",
                to.display()
            ));
        }
        if let Some(e) = &reset.move_error {
            text.push_str("; ");
            text.push_str(e);
        }
        shared.notice(NoticeLevel::Warning, text);
    }
    if !rooms {
        // Queued before the client knew, or before the server was replaced by an older one.
        let mut ctl = shared.ctl();
        for m in ctl.outbox.take_rooms() {
            tracing::warn!(
                "message {} to {} not sent: {NO_ROOMS}",
                m.client_msg_id,
                m.room
            );
            shared.emit(Event::Rejected(Rejection {
                client_msg_id: m.client_msg_id,
                room: m.room,
                code: ErrorCode::Version,
                text: NO_ROOMS.into(),
            }));
        }
    }
    shared.transition(|c| c.activate(heartbeat, latest_id, Instant::now()))?;
    let server = shared
        .ctl()
        .server()
        .map(|s| s.name.clone())
        .unwrap_or_default();
    shared.notice(
        NoticeLevel::Info,
        format!("logged in as {} on {server}", shared.username),
    );
    Ok(())
}

// ───────────────────────────── active session ─────────────────────────────

fn run_active(shared: &ClientState, link: &mut KeptConn, session: &LiveSession) -> End {
    let config = &shared.config;
    let watchdog = session.heartbeat * 3 + config.io_timeout;
    // A heartbeat and a half without one: is the server still there? A dead server's port
    // refuses the connection at once, and the client need not wait for the watchdog to know.
    shared.ctl().probe_when_late(session.heartbeat * 3 / 2);
    let batch_max = if config.reuse_connections {
        MAX_PIPELINE
    } else {
        1
    };
    loop {
        let work = {
            let mut ctl = shared.ctl();
            loop {
                let idle_at = link.idle_deadline(config.idle_timeout);
                match ctl.next_work(Instant::now(), watchdog, idle_at, batch_max) {
                    Next::Do(work) => break work,
                    Next::WaitUntil(deadline) => shared.wait_until(&mut ctl, deadline),
                }
            }
        };
        let step = match work {
            Work::Close { bye } => {
                let bye_sent = bye && send_bye(shared, link, session);
                return End::Closed { bye_sent };
            }
            Work::Reconnect => {
                // End this session on the server now rather than leave it to linger until it
                // misses three heartbeats.
                send_bye(shared, link, session);
                return End::Relogin("reconnecting as asked".into());
            }
            Work::Relogin(why) => return End::Lost(why),
            Work::CloseLink => {
                tracing::trace!("closing the idle sending connection");
                link.close();
                Ok(())
            }
            Work::Who => run_command(shared, link, session, Command::Who { room: None }),
            Work::Probe => probe(shared, link.addr()),
            Work::Command(command) => run_command(shared, link, session, command),
            Work::Send(batch) => send_batch(shared, link, session, &batch),
        };
        if let Err(end) = step {
            // An exchange cut by a server that said it stops: say that, not the cut.
            if let Some(text) = shared.ctl().take_stopping() {
                return End::Lost(format!(
                    "the server is stopping ({})",
                    gc_protocol::sanitize::Sanitized(&text)
                ));
            }
            return end;
        }
    }
}

/// Sends a batch of messages pipelined (one write) and reads the replies in order.
fn send_batch(
    shared: &ClientState,
    link: &mut KeptConn,
    session: &LiveSession,
    batch: &[PendingMessage],
) -> Result<(), End> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut request = Vec::with_capacity(batch.len() * 64);
    for m in batch {
        SendRequest::Msg {
            token: session.token.clone(),
            client_msg_id: m.client_msg_id.clone(),
            body: m.text.as_bytes().to_vec(),
            room: wire_room(&m.room),
        }
        .encode(&mut request);
    }
    let deadline = || shared.connector.deadline();
    let mut replies: Vec<SendReply> = Vec::with_capacity(batch.len());
    let result = link.exchange_with(&request, |conn| {
        replies.clear();
        while replies.len() < batch.len() {
            let reply = conn
                .read::<SendReply>(deadline())
                .map_err(|e| (e, !replies.is_empty()))?;
            replies.push(reply);
        }
        Ok(())
    });
    let peer = link.addr().to_string();
    let mut end = None;
    {
        let now = Instant::now();
        let mut ctl = shared.ctl();
        let mut rate_limited = false;
        for (m, reply) in batch.iter().zip(replies) {
            let id = &m.client_msg_id;
            let reply = match reply {
                SendReply::Thx { id: rid, timestamp } => MsgReply::Thx { id: rid, timestamp },
                SendReply::Err(e) => MsgReply::Err(e),
                other => {
                    link.close();
                    end = Some(End::Failed(unexpected(
                        &peer,
                        format!("answered `Msg` with {other:?}"),
                    )));
                    break;
                }
            };
            match ctl.outbox.apply(now, id, reply) {
                ReplyEffect::Acked(ack) => {
                    ctl.acked(ack.id);
                    shared.emit(Event::Acked(ack));
                }
                ReplyEffect::Rejected(rejection) => {
                    tracing::warn!(
                        "the server refused message {} ({}): {}",
                        rejection.client_msg_id,
                        rejection.code,
                        rejection.text
                    );
                    shared.emit(Event::Rejected(rejection));
                }
                ReplyEffect::RateLimited(wait) => {
                    rate_limited = true;
                    tracing::debug!("rate-limited; resending in {:.1} s", wait.as_secs_f64());
                }
                ReplyEffect::Session => {
                    end.get_or_insert(End::Relogin(
                        "the server no longer knows this session".into(),
                    ));
                }
                ReplyEffect::Retry { code, text } => {
                    if code == ErrorCode::ShuttingDown {
                        end.get_or_insert(End::Failed(ClientError::Refused {
                            during: "the message",
                            code,
                            text,
                        }));
                    } else {
                        tracing::warn!("the server could not take a message now ({code}): {text}");
                        ctl.outbox.hold_until(now + INTERNAL_RETRY);
                    }
                }
            }
        }
        if !rate_limited {
            ctl.outbox.round_ok();
        }
        shared.notify();
    }
    match result {
        // Cut after some replies: the rest stay in the outbox and go again (same ids) on a new
        // connection; no reason to give up the session.
        Err(NetError::Protocol(source)) if source.is_stale_connection() && end.is_none() => {
            tracing::debug!(
                "the sending connection was cut mid-batch ({source}); resending the rest"
            );
            link.close();
        }
        Err(e) => {
            end.get_or_insert(End::Failed(link_error(shared, "sending", e)));
        }
        Ok(()) => {}
    }
    end.map_or(Ok(()), Err)
}

/// How a request on the sending port was answered.
#[derive(Debug)]
enum Answer {
    /// As asked: its event is out.
    Done,
    /// `Err`.
    Refused(ErrorFrame),
    /// A frame the request does not allow (described).
    Unexpected(String),
}

/// Carries out a queued request and reports its answer: an event of its own, or
/// [`Event::Refused`]. A request needing rooms on a session without them is refused here
/// (`version`) and never sent. One the session ended under (`Err session`, a failed connection)
/// goes first in line for the next session.
fn run_command(
    shared: &ClientState,
    link: &mut KeptConn,
    session: &LiveSession,
    command: Command,
) -> Result<(), End> {
    if command.needs_gc4() && !session.gc4 {
        let text = no_gc4(command.feature(), shared.ctl().version());
        refused(shared, command, Some(ErrorCode::Version), text);
        return Ok(());
    }
    if command.needs_rooms() && !session.rooms {
        refused(shared, command, Some(ErrorCode::Version), NO_ROOMS.into());
        return Ok(());
    }
    let (what, answer) = match &command {
        Command::Who { room } => ("`Who`", who(shared, link, session, room.as_ref())),
        Command::History {
            room,
            before_id,
            limit,
        } => (
            "`History`",
            history(shared, link, session, room, *before_id, *limit),
        ),
        Command::Rooms => ("`Rooms`", list_rooms(shared, link, session)),
        Command::Room(request) => (
            "a room request",
            room_request(shared, link, session, request),
        ),
        Command::Away { message } => ("`Away`", away(shared, link, session, message)),
        Command::Passwd(change) => ("`Passwd`", passwd(shared, link, session, change)),
    };
    match answer {
        Ok(Answer::Done) => Ok(()),
        Ok(Answer::Refused(e)) => match e.code {
            ErrorCode::Session => {
                shared.ctl().requeue_command(command);
                Err(End::Relogin(
                    "the server no longer knows this session".into(),
                ))
            }
            ErrorCode::ShuttingDown => {
                shared.ctl().requeue_command(command);
                Err(End::Failed(ClientError::from_refusal("a request", e)))
            }
            code => {
                tracing::info!("the server refused {command} ({code}): {}", e.text);
                refused(shared, command, Some(code), e.text);
                Ok(())
            }
        },
        Ok(Answer::Unexpected(frame)) => {
            let peer = link.addr().to_string();
            link.close();
            let detail = format!("answered {what} with {frame}");
            refused(
                shared,
                command,
                None,
                format!("the server broke the protocol: it {detail}"),
            );
            Err(End::Failed(unexpected(&peer, detail)))
        }
        Err(e) => {
            shared.ctl().requeue_command(command);
            Err(End::Failed(link_error(shared, what, e)))
        }
    }
}

fn refused(shared: &ClientState, command: Command, code: Option<ErrorCode>, text: String) {
    // The passwords go no further than the exchange that needed them.
    let command = match command {
        Command::Passwd(_) => Command::Passwd(PasswordChange {
            current: Default::default(),
            new: Default::default(),
        }),
        other => other,
    };
    shared.emit(Event::Refused(Refusal {
        command,
        code,
        text,
    }));
}

fn encode(request: &SendRequest) -> Vec<u8> {
    let mut bytes = Vec::new();
    request.encode(&mut bytes);
    bytes
}

/// `Who [<room>]` → `Online`: a presence event (of `#general` as GC/1 asks it, or of `room`).
fn who(
    shared: &ClientState,
    link: &mut KeptConn,
    session: &LiveSession,
    room: Option<&Room>,
) -> Result<Answer, NetError> {
    let request = encode(&SendRequest::Who {
        token: session.token.clone(),
        room: room.and_then(wire_room),
    });
    // A GC/4 session's `Online` is followed by an `Away` line per away user, then `End`.
    let deadline = || shared.connector.deadline();
    let gc4 = session.gc4;
    let (reply, away) = link.exchange_with(&request, |conn| {
        let first = conn.read::<SendReply>(deadline()).map_err(|e| (e, false))?;
        let mut away: Vec<(Username, String)> = Vec::new();
        if gc4 && matches!(first, SendReply::Online { .. }) {
            loop {
                match conn.read::<SendReply>(deadline()) {
                    Ok(SendReply::Away { username, message }) => away.push((username, message)),
                    Ok(SendReply::End) => break,
                    Ok(other) => return Ok((other, away)),
                    Err(e) => return Err((e, true)),
                }
            }
        }
        Ok((first, away))
    })?;
    match reply {
        SendReply::Online {
            presence_version,
            users,
        } => {
            match room {
                None => {
                    let mut ctl = shared.ctl();
                    ctl.presence.fetched(presence_version, users.clone());
                    // The away states first: a front end showing the list has them then.
                    if gc4 {
                        shared.emit(Event::Away(away));
                    }
                    shared.emit(Event::Presence {
                        version: presence_version,
                        users,
                    });
                }
                Some(room) => shared.emit(Event::RoomPresence {
                    room: room.clone(),
                    version: presence_version,
                    users,
                }),
            }
            Ok(Answer::Done)
        }
        SendReply::Err(e) => Ok(Answer::Refused(e)),
        other => Ok(Answer::Unexpected(format!("{other:?}"))),
    }
}

/// `History … [<room>]` → `Rec`… `End`: a history event; records at or below the cursor go to
/// the cache.
fn history(
    shared: &ClientState,
    link: &mut KeptConn,
    session: &LiveSession,
    room: &Room,
    before_id: u64,
    limit: u32,
) -> Result<Answer, NetError> {
    let asked = shared.records().clamp_history(before_id);
    let request = encode(&SendRequest::History {
        token: session.token.clone(),
        before_id: asked,
        limit: limit.min(MAX_HISTORY_LIMIT),
        room: wire_room(room),
    });
    let deadline = || shared.connector.deadline();
    let reply = link.exchange_with(&request, |conn| {
        let mut records: Vec<Record> = Vec::new();
        loop {
            match conn.read::<SendReply>(deadline()) {
                Ok(SendReply::Rec(r)) => records.push(r),
                Ok(SendReply::End) => return Ok(Ok(records)),
                Ok(SendReply::Err(e)) if records.is_empty() => return Ok(Err(Answer::Refused(e))),
                Ok(other) => return Ok(Err(Answer::Unexpected(format!("{other:?}")))),
                Err(e) => return Err((e, !records.is_empty())),
            }
        }
    })?;
    let mut records = match reply {
        Ok(records) => records,
        Err(answer) => return Ok(answer),
    };
    records.sort_by_key(|r| r.id);
    records.dedup_by_key(|r| r.id);
    if let Some(stray) = records.iter().find(|r| &r.room != room) {
        return Ok(Answer::Unexpected(format!(
            "a record of {} in the history of {room}",
            stray.room
        )));
    }
    let error = shared.records().accept_history(&records);
    if let Some(text) = error {
        shared.notice(NoticeLevel::Warning, text);
    }
    let records = shared.for_display(records);
    shared.emit(Event::History {
        room: room.clone(),
        before_id,
        records,
    });
    Ok(Answer::Done)
}

/// `Rooms` → `Room`… `End`: the room list event.
fn list_rooms(
    shared: &ClientState,
    link: &mut KeptConn,
    session: &LiveSession,
) -> Result<Answer, NetError> {
    let request = encode(&SendRequest::Rooms {
        token: session.token.clone(),
    });
    let deadline = || shared.connector.deadline();
    let reply = link.exchange_with(&request, |conn| {
        let mut rooms: Vec<RoomInfo> = Vec::new();
        loop {
            match conn.read::<SendReply>(deadline()) {
                Ok(SendReply::Room {
                    room,
                    kind,
                    role,
                    members,
                    topic,
                }) => rooms.push(RoomInfo {
                    room,
                    kind,
                    role,
                    members,
                    topic,
                }),
                Ok(SendReply::End) => return Ok(Ok(rooms)),
                Ok(SendReply::Err(e)) if rooms.is_empty() => return Ok(Err(Answer::Refused(e))),
                Ok(other) => return Ok(Err(Answer::Unexpected(format!("{other:?}")))),
                Err(e) => return Err((e, !rooms.is_empty())),
            }
        }
    })?;
    match reply {
        Ok(rooms) => {
            shared.emit(Event::RoomList(rooms));
            Ok(Answer::Done)
        }
        Err(answer) => Ok(answer),
    }
}

/// A room request → `Thx <notice-id> <ts>`: the room-done event.
fn room_request(
    shared: &ClientState,
    link: &mut KeptConn,
    session: &LiveSession,
    request: &RoomRequest,
) -> Result<Answer, NetError> {
    let bytes = encode(&request.frame(session.token.clone()));
    match link.exchange::<SendReply>(&bytes)? {
        SendReply::Thx { id, .. } => {
            tracing::info!("done: {request} (notice {id})");
            shared.emit(Event::RoomDone {
                request: request.clone(),
                notice_id: id,
            });
            Ok(Answer::Done)
        }
        SendReply::Err(e) => Ok(Answer::Refused(e)),
        other => Ok(Answer::Unexpected(format!("{other:?}"))),
    }
}

/// GC/4 `Away <message>` or `Back` → `Thx 0`: the account-done event; the state is kept, to be
/// set again after each login.
fn away(
    shared: &ClientState,
    link: &mut KeptConn,
    session: &LiveSession,
    message: &Option<String>,
) -> Result<Answer, NetError> {
    let token = session.token.clone();
    let request = match message {
        Some(message) => SendRequest::Away {
            token,
            message: message.clone(),
        },
        None => SendRequest::Back { token },
    };
    match link.exchange::<SendReply>(&encode(&request))? {
        SendReply::Thx { .. } => {
            shared.ctl().away_done(message.clone());
            shared.emit(Event::AccountDone(match message {
                Some(message) => AccountChange::Away(message.clone()),
                None => AccountChange::Back,
            }));
            Ok(Answer::Done)
        }
        SendReply::Err(e) => Ok(Answer::Refused(e)),
        other => Ok(Answer::Unexpected(format!("{other:?}"))),
    }
}

/// GC/4 password change: `Challenge` → the current password's salt and iteration count and a
/// fresh nonce; the client derives the current keys and the new verifier (fresh salt) here,
/// proves the current password over the nonce and the new verifier, and sends `Passwd` →
/// `Thx 0`. Neither password leaves the client.
fn passwd(
    shared: &ClientState,
    link: &mut KeptConn,
    session: &LiveSession,
    change: &PasswordChange,
) -> Result<Answer, NetError> {
    let challenge = encode(&SendRequest::Challenge {
        token: session.token.clone(),
    });
    let (nonce, salt, iterations) = match link.exchange::<SendReply>(&challenge)? {
        SendReply::Challenge {
            nonce,
            salt,
            iterations,
        } => (nonce, salt, iterations),
        SendReply::Err(e) => return Ok(Answer::Refused(e)),
        other => return Ok(Answer::Unexpected(format!("{other:?}"))),
    };
    let min = shared.config.min_scram_iterations;
    // Checked before any PBKDF2, as at login: a hostile server cannot make the client spin.
    if !(min..=MAX_SCRAM_ITERATIONS).contains(&iterations) {
        return Ok(Answer::Unexpected(format!(
            "a challenge of {iterations} iterations (this client takes {min} to \
             {MAX_SCRAM_ITERATIONS})"
        )));
    }
    let current = ClientKeys::derive(change.current.expose(), &salt, iterations);
    let Ok(new_salt) = random_salt() else {
        return Ok(Answer::Refused(ErrorFrame::new(
            ErrorCode::Internal,
            "no randomness available from the operating system",
        )));
    };
    // As strong as the account was, and at least what this client registers with.
    let new = derive_verifier(change.new.expose(), &new_salt, iterations.max(min));
    let proof = passwd_proof(
        &current,
        &passwd_message(&shared.username.key(), &nonce, &new),
    );
    let request = encode(&SendRequest::Passwd {
        token: session.token.clone(),
        salt: new.salt.clone(),
        iterations: new.iterations,
        stored_key: new.stored_key.to_vec(),
        server_key: new.server_key.to_vec(),
        proof: proof.to_vec(),
    });
    match link.exchange::<SendReply>(&request)? {
        SendReply::Thx { .. } => {
            tracing::info!("password changed");
            shared.ctl().password_changed(change.new.clone());
            shared.emit(Event::AccountDone(AccountChange::Password));
            Ok(Answer::Done)
        }
        SendReply::Err(e) => Ok(Answer::Refused(e)),
        other => Ok(Answer::Unexpected(format!("{other:?}"))),
    }
}

/// `Bye` → `Thx 0 <ts>`: ends the session on the server at once. Returns whether the server
/// acknowledged it.
fn send_bye(shared: &ClientState, link: &mut KeptConn, session: &LiveSession) -> bool {
    let mut request = Vec::new();
    SendRequest::Bye {
        token: session.token.clone(),
    }
    .encode(&mut request);
    match link.exchange::<SendReply>(&request) {
        Ok(SendReply::Thx { .. }) => {
            tracing::info!("session ended with Bye");
            true
        }
        Ok(other) => {
            tracing::warn!("the server answered `Bye` with {other:?}");
            false
        }
        Err(e) => {
            tracing::warn!(
                "could not say Bye: {}",
                error_chain(&link_error(shared, "`Bye`", e))
            );
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::{Ipv4Addr, TcpListener};
    use std::sync::mpsc;

    use gc_protocol::{CallbackPorts, ConnectPing, ConnectReply, Username};

    use super::*;
    use crate::config::ClientConfig;
    use crate::records::RecordStore;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    fn pong(version: &str) -> ConnectReply {
        ConnectReply::Pong {
            version: version.into(),
            server_name: "test".into(),
            registration: Registration::Open,
        }
    }

    fn err(code: ErrorCode, text: &str) -> ConnectReply {
        ConnectReply::Err(ErrorFrame::new(code, text))
    }

    /// A connect port that answers one `Ping` per connection with `answers`, in order, and
    /// reports the version each `Ping` asked for.
    fn fake_connect_port(answers: Vec<ConnectReply>) -> (u16, mpsc::Receiver<String>) {
        let listener = TcpListener::bind((LOCAL, 0)).unwrap();
        let port = listener.local_addr().unwrap().port();
        let (tx, rx) = mpsc::channel();
        std::thread::Builder::new()
            .name("test-connect-port".into())
            .spawn(move || {
                for answer in answers {
                    let Ok((tcp, _)) = listener.accept() else {
                        return;
                    };
                    let mut reader = BufReader::new(tcp.try_clone().unwrap());
                    let mut line = String::new();
                    if reader.read_line(&mut line).is_err() {
                        return;
                    }
                    let ping = ConnectPing::parse(line.trim_end().as_bytes()).unwrap();
                    let _ = tx.send(ping.version);
                    let mut bytes = Vec::new();
                    answer.encode(&mut bytes);
                    let _ = (&tcp).write_all(&bytes);
                }
            })
            .unwrap();
        (port, rx)
    }

    fn client(port: u16, rooms: bool) -> ClientState {
        let mut config = ClientConfig::new("127.0.0.1", "alice", "correct-horse-9");
        config.server_ports.connect = port;
        config.io_timeout = Duration::from_secs(2);
        config.rooms = rooms;
        let ports = CallbackPorts {
            auth: 1,
            heartbeat: 2,
            delivery: 3,
        };
        ClientState::new(
            config,
            Username::new("alice").unwrap(),
            ports,
            RecordStore::in_memory(),
            Box::new(|_| {}),
            gc_plugin::Plugins::none(),
            None,
        )
    }

    fn check(
        answers: Vec<ConnectReply>,
        rooms: bool,
    ) -> (Result<&'static str, ClientError>, Vec<String>) {
        let (port, asked) = fake_connect_port(answers);
        let shared = client(port, rooms);
        let rotation = Rotation::new(vec!["127.0.0.1".into()]);
        let target = Target {
            entry: 0,
            ip: LOCAL,
            addresses: 1,
        };
        let result = version_check(&shared, &rotation, &[target]).map(|(_, _, version)| version);
        (result, asked.try_iter().collect())
    }

    #[test]
    fn the_first_answer_decides_between_rooms_an_older_server_and_a_refusal() {
        let hello = ServerHello {
            name: "x".into(),
            registration: Registration::Open,
        };
        assert!(matches!(first_answer(Ok(hello)), FirstAnswer::Rooms(_)));
        let refused = |code| SignInError::Refused {
            step: signin::Step::VersionCheck,
            error: ErrorFrame::new(code, "no"),
        };
        assert!(matches!(
            first_answer(Err(refused(ErrorCode::Version))),
            FirstAnswer::Older(_)
        ));
        for code in [
            ErrorCode::Full,
            ErrorCode::Malformed,
            ErrorCode::ShuttingDown,
        ] {
            assert!(matches!(
                first_answer(Err(refused(code))),
                FirstAnswer::Failed(SignInError::Refused { .. })
            ));
        }
        // A Pong of another version than asked: as refused as it always was.
        let other = SignInError::Version {
            asked: VERSION_ROOMS,
            announced: "GC/2".into(),
        };
        assert!(matches!(
            first_answer(Err(other)),
            FirstAnswer::Failed(SignInError::Version { .. })
        ));
    }

    #[test]
    fn a_server_with_gc5_is_asked_once() {
        let (result, asked) = check(vec![pong("GC/5")], true);
        assert_eq!(result.unwrap(), VERSION_GC5);
        assert_eq!(asked, ["GC/5"]);
    }

    #[test]
    fn a_gc4_server_is_asked_again_for_gc4_on_a_fresh_connection() {
        let (result, asked) = check(
            vec![
                err(
                    ErrorCode::Version,
                    "this server speaks GC/1 (and GC/3 with rooms, GC/4), not GC/5",
                ),
                pong("GC/4"),
            ],
            true,
        );
        assert_eq!(result.unwrap(), VERSION_GC4);
        assert_eq!(asked, ["GC/5", "GC/4"]);
    }

    #[test]
    fn a_gc3_server_is_asked_again_for_gc3_on_a_fresh_connection() {
        let (result, asked) = check(
            vec![
                err(ErrorCode::Version, "not GC/5"),
                err(
                    ErrorCode::Version,
                    "this server speaks GC/1 (and GC/3 with rooms), not GC/4",
                ),
                pong("GC/3"),
            ],
            true,
        );
        assert_eq!(result.unwrap(), VERSION_ROOMS);
        assert_eq!(asked, ["GC/5", "GC/4", "GC/3"]);
    }

    #[test]
    fn an_older_server_is_asked_again_on_a_fresh_connection_with_the_old_version() {
        let (result, asked) = check(
            vec![
                err(ErrorCode::Version, "this server speaks GC/1, not GC/5"),
                err(ErrorCode::Version, "this server speaks GC/1, not GC/4"),
                err(ErrorCode::Version, "this server speaks GC/1, not GC/3"),
                pong("GC/1"),
            ],
            true,
        );
        assert_eq!(result.unwrap(), VERSION);
        assert_eq!(asked, ["GC/5", "GC/4", "GC/3", "GC/1"]);
    }

    #[test]
    fn anything_but_the_pong_asked_for_or_err_version_is_refused() {
        // A Pong of an older version to `Ping GC/5`: refused for good, not taken as a fallback.
        for old in ["GC/1", "GC/3", "GC/4"] {
            let (result, asked) = check(vec![pong(old)], true);
            let e = result.unwrap_err();
            assert!(e.is_fatal(), "{e}");
            assert!(error_chain(&e).contains("when asked for GC/5"), "{e}");
            assert_eq!(asked, ["GC/5"]);
        }
        // Nor is GC/1 to `Ping GC/4`.
        let (result, _) = check(vec![err(ErrorCode::Version, "no"), pong("GC/1")], true);
        assert!(matches!(result, Err(ClientError::Version { .. })));
        // The last fallback's answer is checked as the old version check was.
        let (result, _) = check(
            vec![
                err(ErrorCode::Version, "no"),
                err(ErrorCode::Version, "no"),
                err(ErrorCode::Version, "no"),
                pong("GC/3"),
            ],
            true,
        );
        assert!(matches!(result, Err(ClientError::Version { .. })));
        let (result, _) = check(
            vec![
                err(ErrorCode::Version, "no"),
                err(ErrorCode::Version, "no"),
                err(ErrorCode::Version, "no"),
                err(ErrorCode::Version, "speaks GC/9 only"),
            ],
            true,
        );
        assert!(
            matches!(&result, Err(ClientError::Version { text }) if text.contains("GC/9")),
            "{result:?}"
        );
        // Other refusals are what they were.
        let (result, asked) = check(vec![err(ErrorCode::Full, "busy")], true);
        assert_eq!(result.unwrap_err().code(), Some(ErrorCode::Full));
        assert_eq!(asked, ["GC/5"]);
    }

    #[test]
    fn without_rooms_configured_only_the_old_version_is_asked() {
        let (result, asked) = check(vec![pong("GC/1")], false);
        assert_eq!(result.unwrap(), VERSION);
        assert_eq!(asked, ["GC/1"]);
    }
}
