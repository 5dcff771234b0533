//! The connection thread: the state machine DISCONNECTED → CONNECTING → CONNECTED →
//! AUTHENTICATING → AUTHENTICATED → ACTIVE, reconnecting with backoff, and every exchange on the
//! server's sending port (outbox, `History`, `Who`, `Bye`) on one kept connection.

use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gc_protocol::limits::{MAX_HISTORY_LIMIT, MAX_SCRAM_ITERATIONS};
use gc_protocol::scram::{ClientFirst, derive_verifier, random_salt};
use gc_protocol::{
    AuthClient, AuthServer, ClientMsgId, ConnectPing, ConnectReply, ErrorCode, ErrorFrame, Frame,
    FramedStream, Record, Registration, SendReply, SendRequest, SessionToken, VERSION,
};

use crate::backoff::Backoff;
use crate::error::{ClientError, error_chain};
use crate::event::{ConnState, Event, NoticeLevel};
use crate::link::{SendLink, io_deadline, open};
use crate::net;
use crate::outbox::{MAX_PIPELINE, MsgReply, Outcome};
use crate::state::{ClientState, Command, PendingAuth};

/// The wait after `internal` from the server before the outbox tries again.
const INTERNAL_RETRY: Duration = Duration::from_secs(1);

/// A live session.
#[derive(Debug)]
struct Session {
    token: SessionToken,
    send_addr: SocketAddr,
    heartbeat: Duration,
}

/// How an active session ended.
#[derive(Debug)]
enum End {
    /// `close()`: stop.
    Closed,
    /// The session is gone or was given up: log in again.
    Relogin(String),
    /// An exchange failed.
    Failed(ClientError),
}

/// Runs the connection thread until the client closes.
pub fn run(shared: &Arc<ClientState>) {
    let mut backoff = Backoff::new(shared.config.backoff);
    let mut registered = !shared.config.register;
    let mut link = SendLink::default();
    let mut last_warning: Option<String> = None;
    loop {
        if shared.closing() {
            break;
        }
        let end = match login(shared, &mut registered) {
            Ok(session) => {
                backoff.reset();
                last_warning = None;
                run_active(shared, &mut link, &session)
            }
            Err(e) => End::Failed(e),
        };
        link.close();
        end_session(shared);
        let wait = match end {
            End::Closed => break,
            End::Relogin(why) => {
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
                let wait = backoff.next_wait();
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
                    shared.notice(
                        NoticeLevel::Warning,
                        format!("{text}{hint}; retrying with backoff"),
                    );
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
    ctl.token = None;
    ctl.pending_auth = None;
    ctl.conn_done = true;
    shared.set_state(&mut ctl, ConnState::Disconnected);
    shared.notify();
}

/// Forgets the session (its token is refused from now on) and goes DISCONNECTED.
fn end_session(shared: &ClientState) {
    let mut ctl = shared.ctl();
    ctl.token = None;
    ctl.pending_auth = None;
    ctl.last_heartbeat = None;
    ctl.heartbeat_interval = None;
    ctl.presence_seen = None;
    ctl.presence_wanted = false;
    shared.set_state(&mut ctl, ConnState::Disconnected);
}

/// Waits out a backoff. False when the client is closing.
fn wait_backoff(shared: &ClientState, wait: Duration) -> bool {
    let deadline = Instant::now() + wait;
    let mut ctl = shared.ctl();
    loop {
        if ctl.close.is_some() {
            return false;
        }
        if ctl.reconnect {
            ctl.reconnect = false;
            return true;
        }
        if Instant::now() >= deadline {
            return true;
        }
        shared.wait_until(&mut ctl, deadline);
    }
}

/// After a fatal error: waits for `reconnect()` (true) or `close()` (false).
fn wait_after_fatal(shared: &ClientState) -> bool {
    let mut ctl = shared.ctl();
    ctl.fatal = true;
    ctl.reconnect = false;
    shared.notify();
    loop {
        if ctl.close.is_some() {
            return false;
        }
        if ctl.reconnect {
            ctl.reconnect = false;
            ctl.fatal = false;
            return true;
        }
        shared.wait(&mut ctl);
    }
}

fn set_state(shared: &ClientState, state: ConnState) {
    let mut ctl = shared.ctl();
    shared.set_state(&mut ctl, state);
}

fn refused(during: &'static str, e: ErrorFrame) -> ClientError {
    match e.code {
        ErrorCode::Version => ClientError::Version { text: e.text },
        code => ClientError::Refused {
            during,
            code,
            text: e.text,
        },
    }
}

fn unexpected(peer: &str, detail: impl Into<String>) -> ClientError {
    ClientError::Unexpected {
        peer: peer.to_owned(),
        detail: detail.into(),
    }
}

// ───────────────────────────── login ─────────────────────────────

fn login(shared: &ClientState, registered: &mut bool) -> Result<Session, ClientError> {
    let config = &shared.config;
    set_state(shared, ConnState::Connecting);
    let ips = net::resolve(&config.server, config.server_ports.connect, config.bind_ip)?;
    let (server_ip, registration) = version_check(shared, &ips)?;
    set_state(shared, ConnState::Connected);
    let auth_addr = SocketAddr::new(server_ip, config.server_ports.auth);
    let mut auth = open(shared, auth_addr, "the server's auth port")?;
    let result = (|| {
        if !*registered {
            register(shared, &mut auth, registration)?;
            *registered = true;
        }
        authenticate(shared, &mut auth, server_ip)
    })();
    shared.untrack();
    result
}

/// `Ping GC/1` → `Pong GC/1 <name> <registration>` on the first address that answers.
fn version_check(
    shared: &ClientState,
    ips: &[IpAddr],
) -> Result<(IpAddr, Registration), ClientError> {
    let port = shared.config.server_ports.connect;
    let mut last_error = None;
    for &ip in ips {
        let addr = SocketAddr::new(ip, port);
        let mut conn = match open(shared, addr, "the server's connect port") {
            Ok(c) => c,
            Err(e) => {
                last_error = Some(e);
                continue;
            }
        };
        let ping = ConnectPing {
            version: VERSION.to_owned(),
        };
        let reply = conn
            .send(&ping, io_deadline(shared))
            .and_then(|()| conn.read::<ConnectReply>(io_deadline(shared)));
        shared.untrack();
        match reply {
            Ok(ConnectReply::Pong {
                version,
                server_name,
                registration,
            }) => {
                if version != VERSION {
                    return Err(ClientError::Version {
                        text: format!("it answered with version {version}, not {VERSION}"),
                    });
                }
                tracing::info!("connected to {server_name:?} at {addr}");
                let mut ctl = shared.ctl();
                ctl.server_name = Some(server_name);
                ctl.registration = Some(registration);
                return Ok((ip, registration));
            }
            Ok(ConnectReply::Err(e)) => return Err(refused("the version check", e)),
            Err(e) => last_error = Some(ClientError::protocol("the version check", e)),
        }
    }
    Err(last_error.unwrap_or_else(|| ClientError::Resolve {
        server: shared.config.server.clone(),
        detail: "no addresses".into(),
    }))
}

/// `Register` with a verifier derived here: the password never leaves the client.
fn register(
    shared: &ClientState,
    auth: &mut FramedStream<TcpStream>,
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
    let mut iterations = config.min_scram_iterations;
    for attempt in 0..2 {
        let salt = random_salt().map_err(|_| ClientError::Random)?;
        let verifier = derive_verifier(config.password.expose(), &salt, iterations);
        let frame = AuthClient::Register {
            username: shared.username.clone(),
            salt: verifier.salt,
            iterations,
            stored_key: verifier.stored_key.to_vec(),
            server_key: verifier.server_key.to_vec(),
        };
        auth.send(&frame, io_deadline(shared))
            .map_err(|e| ClientError::protocol("the registration", e))?;
        match auth
            .read::<AuthServer>(io_deadline(shared))
            .map_err(|e| ClientError::protocol("the registration", e))?
        {
            AuthServer::Registered => {
                shared.notice(
                    NoticeLevel::Info,
                    format!("account {} created", shared.username),
                );
                return Ok(());
            }
            AuthServer::Err(e) => {
                // A server that wants more iterations says so; meet it once.
                let wanted = (e.code == ErrorCode::Malformed && attempt == 0)
                    .then(|| parse_min_iterations(&e.text))
                    .flatten()
                    .filter(|&n| n > iterations && n <= MAX_SCRAM_ITERATIONS);
                match wanted {
                    Some(n) => iterations = n,
                    None => return Err(refused("the registration", e)),
                }
            }
            other => {
                return Err(unexpected(
                    auth.peer(),
                    format!("answered `Register` with {other:?}"),
                ));
            }
        }
    }
    Err(unexpected(
        auth.peer(),
        "refused the registration twice over the iteration count",
    ))
}

/// Reads `N` out of a text like "… below this server's minimum of N".
fn parse_min_iterations(text: &str) -> Option<u32> {
    let rest = &text[text.find("minimum of ")? + "minimum of ".len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// SCRAM: `AuthRequest` → `Auth1` → `Proof`, while the auth callback checks the server's
/// signature and takes the token; then `Ok`.
fn authenticate(
    shared: &ClientState,
    auth: &mut FramedStream<TcpStream>,
    server_ip: IpAddr,
) -> Result<Session, ClientError> {
    let config = &shared.config;
    set_state(shared, ConnState::Authenticating);
    let first = ClientFirst::new(shared.username.as_str()).map_err(ClientError::Scram)?;
    {
        let mut ctl = shared.ctl();
        ctl.token = None;
        ctl.pending_auth = None;
    }
    let request = AuthClient::AuthRequest {
        username: shared.username.clone(),
        ports: shared.ports,
        client_first: first.message().to_owned(),
    };
    auth.send(&request, io_deadline(shared))
        .map_err(|e| ClientError::protocol("the login", e))?;
    let server_first = match auth
        .read::<AuthServer>(io_deadline(shared))
        .map_err(|e| ClientError::protocol("the login", e))?
    {
        AuthServer::Auth1 { server_first } => server_first,
        AuthServer::Err(e) => return Err(refused("the login", e)),
        other => {
            return Err(unexpected(
                auth.peer(),
                format!("answered `AuthRequest` with {other:?}"),
            ));
        }
    };
    let client_final = first
        .handle_server_first(
            &server_first,
            config.password.expose(),
            config.min_scram_iterations,
        )
        .map_err(ClientError::Scram)?;
    let proof = AuthClient::Proof {
        client_final: client_final.message().to_owned(),
    };
    // The cursor the session's first heartbeats will report (see `activate`).
    let cursor_at_login = shared.records().cursor();
    shared.ctl().pending_auth = Some(PendingAuth {
        client_final,
        signature_error: None,
    });
    // The server calls back (connect + exchange, each within its own deadline) before it answers.
    let reply = auth
        .send(&proof, io_deadline(shared))
        .and_then(|()| auth.read::<AuthServer>(Instant::now() + config.io_timeout * 3));
    let (signature_error, token) = {
        let mut ctl = shared.ctl();
        let pending = ctl.pending_auth.take();
        (pending.and_then(|p| p.signature_error), ctl.token.clone())
    };
    match reply.map_err(|e| ClientError::protocol("the login", e))? {
        AuthServer::Ok {
            heartbeat_ms,
            latest_id,
        } => {
            let Some(token) = token else {
                return Err(unexpected(
                    auth.peer(),
                    "it answered `Ok` but never proved its identity on the auth callback",
                ));
            };
            let heartbeat = Duration::from_millis(u64::from(heartbeat_ms.max(1)));
            activate(shared, heartbeat, latest_id, cursor_at_login);
            Ok(Session {
                token,
                send_addr: SocketAddr::new(server_ip, config.server_ports.send),
                heartbeat,
            })
        }
        AuthServer::Err(e) if e.code == ErrorCode::Auth && signature_error.is_some() => {
            match signature_error {
                Some(s) => Err(ClientError::ServerSignature(s)),
                None => Err(refused("the login", e)),
            }
        }
        AuthServer::Err(e) => Err(refused("the login", e)),
        other => Err(unexpected(
            auth.peer(),
            format!("answered `Proof` with {other:?}"),
        )),
    }
}

/// After `Ok`: checks the cursor against the server's newest id, and goes ACTIVE.
fn activate(shared: &ClientState, heartbeat: Duration, latest_id: u64, cursor_at_login: u64) {
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
    let mut ctl = shared.ctl();
    ctl.login_latest = Some(latest_id);
    ctl.heartbeat_interval = Some(heartbeat);
    ctl.last_heartbeat = Some(Instant::now());
    ctl.presence_seen = None;
    shared.set_state(&mut ctl, ConnState::Active);
    let server = ctl.server_name.clone().unwrap_or_default();
    drop(ctl);
    shared.notice(
        NoticeLevel::Info,
        format!("logged in as {} on {server}", shared.username),
    );
}

// ───────────────────────────── active session ─────────────────────────────

enum Work {
    Close(bool),
    Reconnect,
    Relogin(String),
    CloseLink,
    Command(Command),
    Who,
    Send(Vec<(ClientMsgId, String)>),
}

fn run_active(shared: &ClientState, link: &mut SendLink, session: &Session) -> End {
    let config = &shared.config;
    let watchdog = session.heartbeat * 3 + config.io_timeout;
    let batch_max = if config.reuse_connections {
        MAX_PIPELINE
    } else {
        1
    };
    loop {
        let work = {
            let mut ctl = shared.ctl();
            loop {
                let now = Instant::now();
                if let Some(bye) = ctl.close {
                    break Work::Close(bye);
                }
                if ctl.reconnect {
                    ctl.reconnect = false;
                    break Work::Reconnect;
                }
                let dead_at = ctl.last_heartbeat.unwrap_or(now) + watchdog;
                if now >= dead_at {
                    break Work::Relogin(format!(
                        "no heartbeat from the server for {:.1} s: the session is presumed lost",
                        watchdog.as_secs_f64()
                    ));
                }
                if let Some(command) = ctl.commands.pop_front() {
                    break Work::Command(command);
                }
                if ctl.presence_wanted {
                    ctl.presence_wanted = false;
                    break Work::Who;
                }
                if ctl.outbox.ready(now) {
                    break Work::Send(ctl.outbox.next_batch(now, batch_max));
                }
                let idle_at = link.idle_deadline(config.idle_timeout);
                if idle_at.is_some_and(|t| now >= t) {
                    break Work::CloseLink;
                }
                let mut deadline = dead_at;
                if !ctl.outbox.is_empty()
                    && let Some(gate) = ctl.outbox.gate()
                {
                    deadline = deadline.min(gate);
                }
                if let Some(t) = idle_at {
                    deadline = deadline.min(t);
                }
                shared.wait_until(&mut ctl, deadline);
            }
        };
        let step = match work {
            Work::Close(bye) => {
                if bye && send_bye(shared, link, session) {
                    shared.ctl().bye_sent = true;
                }
                return End::Closed;
            }
            Work::Reconnect => {
                // End this session on the server now rather than leave it to linger until it
                // misses three heartbeats.
                send_bye(shared, link, session);
                return End::Relogin("reconnecting as asked".into());
            }
            Work::Relogin(why) => return End::Relogin(why),
            Work::CloseLink => {
                tracing::trace!("closing the idle sending connection");
                link.close();
                Ok(())
            }
            Work::Command(Command::Who) | Work::Who => who(shared, link, session),
            Work::Command(Command::History { before_id, limit }) => {
                history(shared, link, session, before_id, limit)
            }
            Work::Send(batch) => send_batch(shared, link, session, &batch),
        };
        if let Err(end) = step {
            return end;
        }
    }
}

/// Sends a batch of messages pipelined (one write) and reads the replies in order.
fn send_batch(
    shared: &ClientState,
    link: &mut SendLink,
    session: &Session,
    batch: &[(ClientMsgId, String)],
) -> Result<(), End> {
    if batch.is_empty() {
        return Ok(());
    }
    let mut request = Vec::with_capacity(batch.len() * 64);
    for (id, text) in batch {
        SendRequest::Msg {
            token: session.token.clone(),
            client_msg_id: id.clone(),
            body: text.as_bytes().to_vec(),
        }
        .encode(&mut request);
    }
    let mut replies: Vec<SendReply> = Vec::with_capacity(batch.len());
    let result = link.round_trip(shared, session.send_addr, "sending", &request, |conn| {
        replies.clear();
        while replies.len() < batch.len() {
            let reply = conn
                .read::<SendReply>(io_deadline(shared))
                .map_err(|e| (e, !replies.is_empty()))?;
            replies.push(reply);
        }
        Ok(())
    });
    let mut end = None;
    {
        let now = Instant::now();
        let mut ctl = shared.ctl();
        let mut rate_limited = false;
        for ((id, _), reply) in batch.iter().zip(replies) {
            let reply = match reply {
                SendReply::Thx { id: rid, timestamp } => MsgReply::Thx { id: rid, timestamp },
                SendReply::Err(e) => MsgReply::Err(e),
                other => {
                    link.close();
                    end = Some(End::Failed(unexpected(
                        &session.send_addr.to_string(),
                        format!("answered `Msg` with {other:?}"),
                    )));
                    break;
                }
            };
            match ctl.outbox.apply(now, id, reply) {
                Outcome::Acked {
                    client_msg_id,
                    id,
                    timestamp,
                } => {
                    ctl.acked_max = ctl.acked_max.max(id);
                    shared.emit(Event::Acked {
                        client_msg_id,
                        id,
                        timestamp,
                    });
                }
                Outcome::Rejected {
                    client_msg_id,
                    code,
                    text,
                } => {
                    tracing::warn!("the server refused message {client_msg_id} ({code}): {text}");
                    shared.emit(Event::Rejected {
                        client_msg_id,
                        code,
                        text,
                    });
                }
                Outcome::RateLimited(wait) => {
                    rate_limited = true;
                    tracing::debug!("rate-limited; resending in {:.1} s", wait.as_secs_f64());
                }
                Outcome::Session => {
                    end.get_or_insert(End::Relogin(
                        "the server no longer knows this session".into(),
                    ));
                }
                Outcome::Retry { code, text } => {
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
        Err(ClientError::Protocol { source, .. })
            if source.is_stale_connection() && end.is_none() =>
        {
            tracing::debug!(
                "the sending connection was cut mid-batch ({source}); resending the rest"
            );
            link.close();
        }
        Err(e) => {
            end.get_or_insert(End::Failed(e));
        }
        Ok(()) => {}
    }
    end.map_or(Ok(()), Err)
}

/// `Who` → `Online`: a presence event.
fn who(shared: &ClientState, link: &mut SendLink, session: &Session) -> Result<(), End> {
    let mut request = Vec::new();
    SendRequest::Who {
        token: session.token.clone(),
    }
    .encode(&mut request);
    let reply = link
        .round_trip(shared, session.send_addr, "`Who`", &request, |conn| {
            conn.read::<SendReply>(io_deadline(shared))
                .map_err(|e| (e, false))
        })
        .map_err(End::Failed)?;
    match reply {
        SendReply::Online {
            presence_version,
            users,
        } => {
            let mut ctl = shared.ctl();
            ctl.online = users.clone();
            ctl.presence_version = Some(presence_version);
            shared.emit(Event::Presence {
                version: presence_version,
                users,
            });
            Ok(())
        }
        SendReply::Err(e) => query_error(shared, "`Who`", e),
        other => {
            link.close();
            Err(End::Failed(unexpected(
                &session.send_addr.to_string(),
                format!("answered `Who` with {other:?}"),
            )))
        }
    }
}

/// `History` → `Rec`… `End`: a history event; records at or below the cursor go to the cache.
fn history(
    shared: &ClientState,
    link: &mut SendLink,
    session: &Session,
    before_id: u64,
    limit: u32,
) -> Result<(), End> {
    let asked = shared.records().clamp_history(before_id);
    let mut request = Vec::new();
    SendRequest::History {
        token: session.token.clone(),
        before_id: asked,
        limit: limit.min(MAX_HISTORY_LIMIT),
    }
    .encode(&mut request);
    let reply = link
        .round_trip(shared, session.send_addr, "`History`", &request, |conn| {
            let mut records: Vec<Record> = Vec::new();
            loop {
                match conn.read::<SendReply>(io_deadline(shared)) {
                    Ok(SendReply::Rec(r)) => records.push(r),
                    Ok(SendReply::End) => return Ok(Ok(records)),
                    Ok(SendReply::Err(e)) if records.is_empty() => return Ok(Err(Ok(e))),
                    Ok(other) => return Ok(Err(Err(format!("{other:?}")))),
                    Err(e) => return Err((e, !records.is_empty())),
                }
            }
        })
        .map_err(End::Failed)?;
    match reply {
        Ok(mut records) => {
            records.sort_by_key(|r| r.id);
            records.dedup_by_key(|r| r.id);
            let error = shared.records().accept_history(&records);
            if let Some(text) = error {
                shared.notice(NoticeLevel::Warning, text);
            }
            let records = shared.for_display(records);
            shared.emit(Event::History { before_id, records });
            Ok(())
        }
        Err(Ok(e)) => query_error(shared, "`History`", e),
        Err(Err(what)) => {
            link.close();
            Err(End::Failed(unexpected(
                &session.send_addr.to_string(),
                format!("answered `History` with {what}"),
            )))
        }
    }
}

fn query_error(shared: &ClientState, what: &str, e: ErrorFrame) -> Result<(), End> {
    match e.code {
        ErrorCode::Session => Err(End::Relogin(
            "the server no longer knows this session".into(),
        )),
        ErrorCode::ShuttingDown => Err(End::Failed(refused("a query", e))),
        code => {
            shared.notice(
                NoticeLevel::Warning,
                format!("the server refused {what} ({code}): {}", e.text),
            );
            Ok(())
        }
    }
}

/// `Bye` → `Thx 0 <ts>`: ends the session on the server at once. Returns whether the server
/// acknowledged it.
fn send_bye(shared: &ClientState, link: &mut SendLink, session: &Session) -> bool {
    let mut request = Vec::new();
    SendRequest::Bye {
        token: session.token.clone(),
    }
    .encode(&mut request);
    let reply = link.round_trip(shared, session.send_addr, "`Bye`", &request, |conn| {
        conn.read::<SendReply>(io_deadline(shared))
            .map_err(|e| (e, false))
    });
    match reply {
        Ok(SendReply::Thx { .. }) => {
            tracing::info!("session ended with Bye");
            shared.ctl().token = None;
            true
        }
        Ok(other) => {
            tracing::warn!("the server answered `Bye` with {other:?}");
            false
        }
        Err(e) => {
            tracing::warn!("could not say Bye: {}", error_chain(&e));
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn min_iterations_from_server_text() {
        assert_eq!(
            parse_min_iterations("4096 SCRAM iterations is below this server's minimum of 8192"),
            Some(8192)
        );
        assert_eq!(parse_min_iterations("bad username"), None);
    }
}
