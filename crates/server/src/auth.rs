//! The authentication port: SCRAM-SHA-256 login with the callback to the client's auth port, and
//! registration. One thread per connection, bounded by the pending-auth limit.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;
use std::time::Instant;

use gc_net::Conn;
use gc_protocol::scram::{Binding, ClientHello, ScramError, ServerFirst, Verifier};
use gc_protocol::{
    AuthClient, AuthServer, Authed, CallbackPorts, CallbackReply, ErrorCode, ErrorFrame,
    Fingerprint, ProtocolError, SessionLevel, SessionToken, Timestamp, Username, texts,
};
use gc_store::{Account, StoreError};

use crate::config::TlsMode;
use crate::limits::PendingSlot;
use crate::state::{AddError, NewSession, ServerState, SessionLimits};
use crate::throttle::Failure;
use crate::warnings::peer_warn;
use crate::{heartbeat, listener, rooms};

/// Serves one connection on the auth port: any number of `Register` and `AuthRequest` exchanges
/// until the client closes, stays silent for the I/O timeout, sends a malformed frame, or reaches
/// the end of its pending time (`slot`).
pub fn serve(shared: Arc<ServerState>, mut conn: Conn, peer: SocketAddr, slot: &PendingSlot) {
    loop {
        if Instant::now() >= slot.end() {
            tracing::debug!(%peer, "auth connection open too long; closing");
            return;
        }
        let frame = match conn.read::<AuthClient>(slot.within(shared.io_deadline())) {
            Ok(frame) => {
                slot.progress();
                frame
            }
            Err(ProtocolError::Malformed { error, .. }) => {
                // Before a login: one answer, then the connection is closed (a garbage stream
                // must not hold a pending-auth slot or fill the log line by line).
                peer_warn!(shared, peer.ip(), %peer, "malformed frame on the auth port: {error}; closing");
                let _ = reply(&shared, &mut conn, err(error.code(), error.to_string()));
                return;
            }
            Err(ProtocolError::TooLong { limit, .. }) => {
                peer_warn!(shared, peer.ip(), %peer, "frame over {limit} bytes on the auth port; closing");
                let _ = reply(
                    &shared,
                    &mut conn,
                    err(
                        ErrorCode::TooLong,
                        format!("frame longer than {limit} bytes"),
                    ),
                );
                return;
            }
            Err(_) => {
                crate::server::tell_dropped(&shared, &mut conn, slot);
                return;
            }
        };
        if shared.stopping() {
            let _ = reply(
                &shared,
                &mut conn,
                err(
                    ErrorCode::ShuttingDown,
                    "the server is shutting down; try again later",
                ),
            );
            return;
        }
        let answer = match frame {
            AuthClient::Register {
                username,
                salt,
                iterations,
                stored_key,
                server_key,
            } => register(
                &shared,
                peer.ip(),
                Account {
                    username,
                    salt,
                    iterations,
                    stored_key,
                    server_key,
                    created: Timestamp::now(),
                },
            ),
            AuthClient::AuthRequest {
                username,
                ports,
                client_first,
                callback_fingerprint,
                level,
            } => {
                let answer =
                    match channel(&shared, &conn, peer.ip(), &username, callback_fingerprint) {
                        Ok(channel) => login(
                            &shared,
                            &mut conn,
                            slot,
                            &username,
                            ports,
                            &client_first,
                            LoginChannel { level, ..channel },
                        ),
                        Err(answer) => answer,
                    };
                shared.metrics.login(match &answer {
                    AuthServer::Err(e) => e.code.as_str(),
                    _ => "ok",
                });
                answer
            }
            AuthClient::Proof { .. } => err(
                ErrorCode::Malformed,
                "`Proof` without an `AuthRequest` before it",
            ),
        };
        // Before a login, a malformed request is the connection's last (as a malformed frame).
        let close = slot.dropped()
            || matches!(
                &answer,
                AuthServer::Err(e) if matches!(e.code, ErrorCode::TooLong | ErrorCode::Malformed)
            );
        if reply(&shared, &mut conn, answer).is_err() || close {
            return;
        }
    }
}

fn reply(shared: &ServerState, conn: &mut Conn, frame: AuthServer) -> Result<(), ProtocolError> {
    if let AuthServer::Err(e) = &frame {
        shared.metrics.error(e.code);
    }
    conn.send(&frame, shared.io_deadline())
}

fn err(code: ErrorCode, text: impl Into<String>) -> AuthServer {
    AuthServer::Err(ErrorFrame::new(code, text))
}

fn register(shared: &ServerState, ip: IpAddr, account: Account) -> AuthServer {
    let name = account.username.clone();
    if !shared.config.registration_open {
        peer_warn!(shared, ip, %ip, user = %name, "registration refused: registration is closed");
        return err(
            ErrorCode::RegistrationClosed,
            "this server only has accounts made by its operator (gc-server user add); ask them for one",
        );
    }
    if name.is_reserved() {
        return err(
            ErrorCode::Malformed,
            format!("the name {name} is reserved for the server; pick another"),
        );
    }
    let min = shared.config.scram_min_iterations;
    if account.iterations < min {
        return err(
            ErrorCode::Malformed,
            texts::iterations_below_minimum(account.iterations, min),
        );
    }
    let now = Instant::now();
    if let Err(wait) = shared.registrations.check(ip, now) {
        peer_warn!(shared, ip, %ip, user = %name, "registration refused: too many from this address");
        return err(
            ErrorCode::RateLimited,
            texts::registrations_limited(shared.config.max_registrations_per_address, wait),
        );
    }
    match shared.accounts.add(account) {
        Ok(()) => {
            shared.registrations.record(ip, now);
            tracing::info!(%ip, user = %name, "account registered");
            AuthServer::Registered
        }
        Err(StoreError::Exists { .. }) => err(
            ErrorCode::Exists,
            format!("an account named {name} already exists; log in, or pick another name"),
        ),
        Err(e) => {
            tracing::error!(user = %name, "cannot save a new account: {e}");
            err(
                ErrorCode::Internal,
                "the server could not save the account; try again later",
            )
        }
    }
}

/// What a login is bound to, as its connection says.
struct LoginChannel {
    /// The TLS session's `tls-exporter` value, or unbound on plain GC/1.
    binding: Binding,
    /// GC/2: the client's callback certificate, the only one the server accepts when it calls
    /// back.
    callback_pin: Option<Fingerprint>,
    /// GC/3: the session speaks rooms (`AuthRequest … GC/3`); GC/4: and the GC/4 frames.
    level: SessionLevel,
}

/// Checks that an `AuthRequest` fits its connection: over TLS it must name the client's callback
/// certificate; plain, it must not (and is logged, as it crosses the network in the clear).
fn channel(
    shared: &ServerState,
    conn: &Conn,
    ip: IpAddr,
    username: &Username,
    callback_fingerprint: Option<Fingerprint>,
) -> Result<LoginChannel, AuthServer> {
    let stream = conn.get_ref();
    if !stream.is_tls() {
        if callback_fingerprint.is_some() {
            return Err(err(
                ErrorCode::Malformed,
                "a callback certificate is announced over TLS (GC/2) only; this connection is plain",
            ));
        }
        if shared.config.tls == TlsMode::Optional {
            tracing::warn!(%ip, user = %username, "plain GC/1 login: this session is not encrypted");
        }
        return Ok(LoginChannel {
            binding: Binding::Unbound,
            callback_pin: None,
            level: SessionLevel::Base,
        });
    }
    let Some(pin) = callback_fingerprint else {
        return Err(err(
            ErrorCode::Malformed,
            "over TLS (GC/2) an AuthRequest names the fingerprint of the client's callback certificate",
        ));
    };
    match stream.binding() {
        binding @ Binding::TlsExporter(_) => Ok(LoginChannel {
            binding,
            callback_pin: Some(pin),
            level: SessionLevel::Base,
        }),
        Binding::Unbound => Err(err(
            ErrorCode::Internal,
            "the server cannot derive this TLS session's channel binding",
        )),
    }
}

fn login(
    shared: &Arc<ServerState>,
    conn: &mut Conn,
    slot: &PendingSlot,
    username: &Username,
    ports: CallbackPorts,
    client_first: &str,
    channel: LoginChannel,
) -> AuthServer {
    let ip = slot.ip();
    let key = username.key();
    let now = Instant::now();
    if let Err(wait) = shared.throttle.check(&key, ip, now) {
        peer_warn!(shared, ip, %ip, user = %username, "login throttled");
        return err(ErrorCode::Throttled, texts::login_throttled(wait));
    }
    let account = match shared.accounts.get(username.as_str()) {
        Ok(account) => account,
        Err(e) => {
            tracing::error!(user = %username, "cannot read the accounts: {e}");
            return err(
                ErrorCode::Internal,
                "the server cannot read its accounts right now; try again later",
            );
        }
    };
    let (account, decoy) = match account {
        Some(account) => (account, false),
        None if shared.config.tell_unknown_users => {
            shared
                .throttle
                .record_failure(&key, ip, Failure::UnknownUser, now);
            peer_warn!(shared, ip, %ip, user = %username, "login for an unknown user");
            return err(
                ErrorCode::UnknownUser,
                format!("no account named {username}; register it first, or check the spelling"),
            );
        }
        // Answered like an account, refused at the proof like a wrong password: a login does
        // not tell which names exist.
        None => (decoy_account(shared, username), true),
    };
    if shared.registry.len() >= shared.config.max_clients {
        return full(shared);
    }
    let hello = match ClientHello::parse_bound(client_first, &channel.binding) {
        Ok(h) => h,
        Err(e) => {
            peer_warn!(shared, ip, %ip, user = %username, "login refused: {e}");
            return err(ErrorCode::Malformed, e.to_string());
        }
    };
    if hello.username != username.as_str() {
        return err(
            ErrorCode::Malformed,
            "the SCRAM username differs from the AuthRequest username",
        );
    }
    let verifier = match verifier_of(&account) {
        Some(v) => v,
        None => {
            tracing::error!(user = %account.username, "stored account has keys of the wrong size");
            return err(
                ErrorCode::Internal,
                "this account's stored keys are damaged",
            );
        }
    };
    let server_first = match ServerFirst::new(&hello, &verifier) {
        Ok(s) => s,
        Err(_) => {
            return err(
                ErrorCode::Internal,
                "the server has no randomness available",
            );
        }
    };
    let pin = channel.callback_pin;
    let level = channel.level;
    let gc3 = level.rooms();
    let addr = SocketAddr::new(ip, ports.auth);
    let proving = Proving {
        account: &account,
        asked: username,
        decoy,
    };
    // From `Auth1` to the callback's answer the client works (its PBKDF2) or is called back: a
    // full pool drops this connection last.
    let busy = slot.busy();
    let proven = prove_and_call_back(shared, conn, slot, &proving, server_first, pin, addr);
    drop(busy);
    let token = match proven {
        Ok(token) => token,
        Err(answer) => return answer,
    };
    shared.throttle.record_success(&key, ip, Instant::now());
    // History on join counts the records this session will be shown.
    let visible = rooms::visible(shared, &account.username, gc3);
    let join_floor = shared
        .store
        .last_n_start_in(&visible, shared.config.history_on_join);
    let latest_id = shared.store.newest_id();
    let new = NewSession {
        user: account.username.clone(),
        ip,
        ports,
        token,
        join_floor,
        callback_pin: pin,
        rooms: gc3,
        gc4: level.gc4(),
        files: level.files(),
    };
    let session = match shared.registry.add(
        new,
        SessionLimits::of(&shared.config),
        &shared.notifier,
    ) {
        Ok(s) => s,
        Err(AddError::Full) => return full(shared),
        Err(AddError::UserFull(n)) => {
            return capped(
                ip,
                username,
                format!(
                    "{username} already has {n} sessions, the most one account may have on this \
                     server; log out one of them first"
                ),
            );
        }
        Err(AddError::AddressFull(n)) => {
            return capped(
                ip,
                username,
                format!(
                    "{ip} already has {n} sessions, the most one address may have on this \
                     server; try again later or ask the operator (--max-sessions-per-address)"
                ),
            );
        }
        Err(AddError::ShuttingDown) => {
            return err(ErrorCode::ShuttingDown, "the server is shutting down");
        }
    };
    for (kind, run) in [
        ("hb", heartbeat::run as fn(_, _)),
        ("listen", listener::run as fn(_, _)),
    ] {
        let (sh, se) = (Arc::clone(shared), Arc::clone(&session));
        let name = format!("{kind}-{}", session.user);
        if let Err(e) = shared.session_threads.spawn(name, move || run(sh, se)) {
            tracing::error!("{e}");
            shared.end_session(&session);
            return err(ErrorCode::Internal, "the server cannot start a session now");
        }
    }
    tracing::info!(
        user = %session.user, %ip, session = session.id,
        "logged in (callback ports {}/{}/{})", ports.auth, ports.heartbeat, ports.delivery
    );
    let hook_started = Instant::now();
    shared
        .plugins
        .client_connected(session.user.as_str(), &ip.to_string());
    shared.metrics.hook(
        crate::metrics::HookKind::ClientConnected,
        hook_started.elapsed(),
    );
    AuthServer::Ok {
        heartbeat_ms: u32::try_from(shared.config.heartbeat_interval.as_millis())
            .unwrap_or(u32::MAX),
        latest_id,
    }
}

/// Sends the challenge, checks the proof and calls the client back with `Authed`; the session
/// token on success, the answer for the client otherwise.
///
/// Over TLS the callback connection is opened *while* the client derives and sends its proof:
/// its mutual handshake is the costliest step of a sign-in, and overlapping it with the client's
/// PBKDF2 takes it off the sign-in's critical path. Nothing is said on it before the proof
/// checks out (a failed login drops it unused), and it only ever goes to the address this login
/// comes from, at the port it names, to the certificate it announced. Plain GC/1 keeps the
/// original order (connect after the proof), which old clients may expect.
fn prove_and_call_back(
    shared: &ServerState,
    conn: &mut Conn,
    slot: &PendingSlot,
    proving: &Proving<'_>,
    server_first: ServerFirst,
    pin: Option<Fingerprint>,
    addr: SocketAddr,
) -> Result<SessionToken, AuthServer> {
    std::thread::scope(|scope| {
        let early = match pin {
            Some(_) => std::thread::Builder::new()
                .name("auth-callback".into())
                .spawn_scoped(scope, || shared.call_back(pin, addr))
                .map_err(|e| tracing::warn!("cannot open the auth callback early: {e}"))
                .ok(),
            None => None,
        };
        let server_final = prove(shared, conn, slot, proving, server_first)?;
        let Ok(token) = SessionToken::random() else {
            return Err(err(
                ErrorCode::Internal,
                "the server has no randomness available",
            ));
        };
        let opened = match early {
            Some(handle) => handle.join().unwrap_or_else(|_| {
                Err(gc_net::NetError::Tls {
                    peer: addr.to_string(),
                    detail: "the callback thread panicked".into(),
                })
            }),
            None => shared.call_back(pin, addr),
        };
        callback(shared, opened, slot, addr, server_final, &token)?;
        Ok(token)
    })
}

/// The account a login is proving, or the decoy of a name without one.
struct Proving<'a> {
    account: &'a Account,
    /// The name as the client wrote it (an answer never shows the registered spelling, which a
    /// decoy could not).
    asked: &'a Username,
    decoy: bool,
}

/// A stand-in account for `username`, which has none: the decoy verifier, so the challenge
/// looks like a real account's and no proof passes.
fn decoy_account(shared: &ServerState, username: &Username) -> Account {
    let verifier = gc_protocol::scram::decoy_verifier(
        &shared.decoy_secret,
        &username.key(),
        shared.config.scram_min_iterations,
    );
    Account {
        username: username.clone(),
        salt: verifier.salt,
        iterations: verifier.iterations,
        stored_key: verifier.stored_key.to_vec(),
        server_key: verifier.server_key.to_vec(),
        created: Timestamp::now(),
    }
}

/// Sends `Auth1` and checks the client's `Proof`: the server's final SCRAM message on success.
fn prove(
    shared: &ServerState,
    conn: &mut Conn,
    slot: &PendingSlot,
    proving: &Proving<'_>,
    server_first: ServerFirst,
) -> Result<String, AuthServer> {
    let ip = slot.ip();
    let challenge = AuthServer::Auth1 {
        server_first: server_first.message().to_owned(),
    };
    if reply(shared, conn, challenge).is_err() {
        return Err(err(ErrorCode::Malformed, "no proof received"));
    }
    let username = &proving.account.username;
    let client_final = match conn.read::<AuthClient>(slot.within(shared.io_deadline())) {
        Ok(AuthClient::Proof { client_final }) => client_final,
        Ok(_) => return Err(err(ErrorCode::Malformed, "expected `Proof` after `Auth1`")),
        Err(ProtocolError::Malformed { error, .. }) => {
            return Err(err(error.code(), error.to_string()));
        }
        Err(ProtocolError::TooLong { limit, .. }) => {
            return Err(err(
                ErrorCode::TooLong,
                format!("frame longer than {limit} bytes"),
            ));
        }
        // Dropped from a full pool while the client worked out its proof: `full`, which the
        // client retries (`malformed` would make it give up).
        Err(_) if slot.dropped() => return Err(AuthServer::Err(crate::server::dropped())),
        Err(e) => {
            peer_warn!(shared, ip, %ip, user = %username, "no proof: {e}");
            return Err(err(ErrorCode::Malformed, "no proof received in time"));
        }
    };
    match server_first.handle_client_final(&client_final) {
        Ok(server_final) if !proving.decoy => Ok(server_final),
        Ok(_) | Err(ScramError::BadProof) => {
            let (failure, what) = if proving.decoy {
                (Failure::UnknownUser, "login for an unknown user")
            } else {
                (Failure::WrongPassword, "wrong password")
            };
            shared
                .throttle
                .record_failure(&username.key(), ip, failure, Instant::now());
            peer_warn!(shared, ip, %ip, user = %username, "{what}");
            let asked = proving.asked;
            Err(err(
                ErrorCode::Auth,
                if shared.config.tell_unknown_users {
                    format!("wrong password for {asked}")
                } else {
                    texts::login_failed(asked.as_str())
                },
            ))
        }
        Err(e) => {
            // E.g. a binding mismatch: somebody relays this login through their own TLS endpoint.
            peer_warn!(shared, ip, %ip, user = %username, "login refused: {e}");
            Err(err(ErrorCode::Malformed, e.to_string()))
        }
    }
}

/// A login refused by a per-account or per-address session cap: logged, and `Err full` with
/// `text`.
fn capped(ip: IpAddr, username: &Username, text: String) -> AuthServer {
    tracing::warn!(%ip, user = %username, "login refused: {text}");
    err(ErrorCode::Full, text)
}

fn full(shared: &ServerState) -> AuthServer {
    err(
        ErrorCode::Full,
        format!(
            "the server is full ({} clients); try again later",
            shared.config.max_clients
        ),
    )
}

pub(crate) fn verifier_of(account: &Account) -> Option<Verifier> {
    Some(Verifier {
        salt: account.salt.clone(),
        iterations: account.iterations,
        stored_key: account.stored_key.as_slice().try_into().ok()?,
        server_key: account.server_key.as_slice().try_into().ok()?,
    })
}

/// On the connection `opened` to the client's auth port at `addr` (over TLS to the certificate
/// it announced when it logged in over TLS), sends `Authed` and expects `Thx`.
fn callback(
    shared: &ServerState,
    opened: Result<(Conn, gc_net::Registration), gc_net::NetError>,
    slot: &PendingSlot,
    addr: SocketAddr,
    server_final: String,
    token: &SessionToken,
) -> Result<(), AuthServer> {
    // The detail goes to the log only: the client names the port, so whatever answers there
    // (any service on its address) must not have its words relayed through this server.
    let unreachable = |public: &str, detail: String| {
        tracing::warn!(%addr, "auth callback failed: {detail}");
        err(
            ErrorCode::Unreachable,
            format!(
                "the server could not call back {addr}: {public}; the client's auth port must \
                 accept connections from the server (check firewall and NAT)"
            ),
        )
    };
    let failed = |e: gc_net::NetError| unreachable(net_reason(&e), e.to_string());
    // Registered, so shutdown does not wait for a client that stalls the callback.
    let (mut conn, _registered) = opened.map_err(failed)?;
    let deadline = slot.within(shared.io_deadline());
    let authed = Authed {
        server_final,
        token: token.clone(),
    };
    conn.send(&authed, deadline).map_err(|e| failed(e.into()))?;
    match conn.read::<CallbackReply>(deadline) {
        Ok(CallbackReply::Thx) => Ok(()),
        Ok(CallbackReply::Err(e)) if e.code == ErrorCode::Auth => {
            tracing::warn!(%addr, "client rejected the server signature");
            Err(err(
                ErrorCode::Auth,
                "your client rejected this server's signature; it may not be the server the \
                 account was made on",
            ))
        }
        Ok(CallbackReply::Err(e)) => Err(unreachable(
            &format!("the client answered with the error `{}`", e.code),
            format!("the client answered `{e}`"),
        )),
        Err(e) => Err(failed(e.into())),
    }
}

/// What the client is told of a failed callback: a reason from a fixed set, never the words of
/// whatever answered.
fn net_reason(e: &gc_net::NetError) -> &'static str {
    use gc_protocol::ProtocolError;
    match e {
        gc_net::NetError::Connect { source, .. } => match source.kind() {
            std::io::ErrorKind::ConnectionRefused => "nothing accepts connections there",
            std::io::ErrorKind::TimedOut | std::io::ErrorKind::WouldBlock => {
                "the connection timed out"
            }
            _ => "the connection failed",
        },
        gc_net::NetError::Protocol(ProtocolError::TimedOut { .. }) => "it did not answer in time",
        gc_net::NetError::Protocol(_) => "it did not answer as a gc client does",
        gc_net::NetError::Tls { .. } => "the TLS handshake failed",
        gc_net::NetError::WrongPeer { .. } => {
            "it presented another certificate than the one the client announced"
        }
        _ => "the callback failed",
    }
}
