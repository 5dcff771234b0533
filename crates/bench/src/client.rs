//! One bench client: its own loopback address, its callback listeners, and the full sign-in
//! (Ping/Pong, SCRAM, the auth callback, Ok), timed phase by phase, plain or over TLS (the
//! run's [`Wire`]).

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Mutex;
use std::time::{Duration, Instant};

use gc_protocol::scram::ClientKeys;
use gc_protocol::signin::{self, SignInError};
use gc_protocol::texts::ServerAddrs;
use gc_protocol::{CallbackPorts, SendReply, SendRequest, SessionToken, Username, VERSION_ROOMS};
use socket2::{Domain, Socket, Type};

use crate::error::BenchError;
use crate::server::BenchAccounts;
use crate::wire::Wire;

/// Deadline of each step of an exchange.
pub const STEP: Duration = Duration::from_secs(10);

/// The loopback address of client `i`: `127.<base + i/62500>.<(i/250) % 250>.<1 + i % 250>`.
/// Linux routes all of 127/8 to the loopback device, so every client gets its own address, as on
/// a real LAN (the server tells sessions apart, and calls back, by source address).
pub fn client_ip(base: u8, i: usize) -> IpAddr {
    let block = i / 250;
    IpAddr::V4(Ipv4Addr::new(
        127,
        base.saturating_add((block / 250) as u8),
        (block % 250) as u8,
        (1 + i % 250) as u8,
    ))
}

/// Connects to `to` from `local` (port chosen by the OS) within [`STEP`], with Nagle off.
pub fn connect_from(local: IpAddr, to: SocketAddr) -> std::io::Result<TcpStream> {
    gc_net::connect_from(Some(local), to, STEP)
}

/// A listener on `ip` with an OS-chosen port.
fn listen(ip: IpAddr, accept_timeout: Option<Duration>) -> std::io::Result<TcpListener> {
    let socket = Socket::new(
        Domain::for_address(SocketAddr::new(ip, 0)),
        Type::STREAM,
        None,
    )?;
    socket.bind(&SocketAddr::new(ip, 0).into())?;
    socket.listen(64)?;
    if let Some(t) = accept_timeout {
        // SO_RCVTIMEO bounds accept() on Linux.
        socket.set_read_timeout(Some(t))?;
    }
    Ok(socket.into())
}

/// Derived SCRAM keys by salt and iteration count: a client may keep these instead of running
/// PBKDF2 at every sign-in (`--keys cached`).
#[derive(Debug, Default)]
pub struct KeyCache {
    keys: Mutex<HashMap<(Vec<u8>, u32), ClientKeys>>,
}

impl KeyCache {
    /// Derives the bench accounts' keys ahead of time, as a client that signed in before would
    /// have them.
    pub fn warm(&self, accounts: &BenchAccounts) {
        let v = &accounts.verifier;
        let _ = self.get(&v.salt, v.iterations, &accounts.password);
    }

    fn get(&self, salt: &[u8], iterations: u32, password: &str) -> ClientKeys {
        let key = (salt.to_vec(), iterations);
        if let Some(k) = self
            .keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(&key)
        {
            return k.clone();
        }
        let k = ClientKeys::derive(password, salt, iterations);
        self.keys
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(key, k.clone());
        k
    }
}

/// Time spent in each step of a sign-in.
#[derive(Debug, Clone, Copy, Default)]
pub struct SignInTiming {
    /// From the first connect to `Ok`.
    pub total: Duration,
    /// Connect (and TLS handshake) + `Ping` → `Pong`.
    pub ping: Duration,
    /// Connect (and TLS handshake) + `AuthRequest` → `Auth1`.
    pub auth1: Duration,
    /// PBKDF2 and the proof (client CPU; near zero with cached keys).
    pub proof: Duration,
    /// `Proof` → callback (its TLS handshake, `Authed`/`Thx`) → `Ok`.
    pub finish: Duration,
}

/// The listeners a client serves after signing in.
#[derive(Debug)]
pub struct CallbackListeners {
    /// Heartbeat port (8070).
    pub heartbeat: TcpListener,
    /// Delivery port (6090).
    pub delivery: TcpListener,
}

/// A signed-in client.
#[derive(Debug)]
pub struct SignedInClient {
    /// Its index (slot) in the run.
    pub slot: usize,
    /// Its address.
    pub ip: IpAddr,
    /// Its session token.
    pub token: SessionToken,
    /// The newest message id at sign-in (the client's starting cursor).
    pub latest_id: u64,
    /// Heartbeat interval the server announced.
    pub heartbeat_ms: u32,
    /// How long each step took.
    pub timing: SignInTiming,
    /// Its heartbeat and delivery listeners.
    pub listeners: CallbackListeners,
}

/// What a sign-in needs to know.
#[derive(Debug, Clone, Copy)]
pub struct SignInArgs<'a> {
    /// The server.
    pub addrs: &'a ServerAddrs,
    /// Plain or TLS.
    pub wire: &'a Wire,
    /// Accounts and password.
    pub accounts: &'a BenchAccounts,
    /// Cached keys (`None`: derive at every sign-in, as a client without a cache does).
    pub keys: Option<&'a KeyCache>,
    /// The lowest iteration count the client accepts.
    pub min_iterations: u32,
    /// GC/3: `Ping GC/3`, then `AuthRequest … GC/3`, for a session with rooms. `false`: the GC/1
    /// sign-in (GC/2 over TLS) exactly as before rooms.
    pub rooms: bool,
}

fn refused(what: &str, answer: impl std::fmt::Debug) -> BenchError {
    BenchError::Refused {
        what: what.to_owned(),
        answer: format!("{answer:?}"),
    }
}

/// A sign-in step that failed: a refusal or a protocol break is the server's answer; anything
/// else is the wire.
fn sign_in_error(user: &str, step: &str, e: SignInError) -> BenchError {
    match e {
        SignInError::Wire { source, .. } => BenchError::protocol(format!("{user}: {step}"), source),
        other => refused(step, other),
    }
}

/// Signs in client `slot` from `ip` as account `account`: binds its three listeners, then
/// `Ping`/`Pong`, `AuthRequest`/`Auth1`, `Proof`, the callback, `Ok` — through the protocol's
/// sign-in machine, timing each step. With `args.rooms` the session is a GC/3 one (`Ping GC/3`
/// and `AuthRequest … GC/3`, plain or over TLS).
pub fn sign_in(
    args: SignInArgs<'_>,
    slot: usize,
    ip: IpAddr,
    account: usize,
) -> Result<SignedInClient, BenchError> {
    let user = BenchAccounts::name(account);
    let io = |what: &str, e| BenchError::io(format!("{user}: {what}"), e);
    let step = |what: &'static str| {
        let user = user.clone();
        move |e| sign_in_error(&user, what, e)
    };
    // Listeners first, so no callback can race ahead of them.
    let auth_l = listen(ip, Some(STEP)).map_err(|e| io("bind the auth listener", e))?;
    let hb_l = listen(ip, None).map_err(|e| io("bind the heartbeat listener", e))?;
    let dl_l = listen(ip, None).map_err(|e| io("bind the delivery listener", e))?;
    let port = |l: &TcpListener| l.local_addr().map(|a| a.port());
    let ports = CallbackPorts {
        auth: port(&auth_l).map_err(|e| io("auth listener address", e))?,
        heartbeat: port(&hb_l).map_err(|e| io("heartbeat listener address", e))?,
        delivery: port(&dl_l).map_err(|e| io("delivery listener address", e))?,
    };
    let username = Username::new(user.clone()).map_err(|e| BenchError::Invalid(e.to_string()))?;
    let t0 = Instant::now();

    let wire = args.wire;

    // 10740: version check. Over TLS the 9281 connection opens beside it, as gc-client's does,
    // so its handshake does not wait for the first one.
    let auth_name = format!("{user}: connect (9281)");
    let open_auth = || wire.connect(ip, args.addrs.auth, &auth_name);
    let ping = || -> Result<(), BenchError> {
        let mut c = wire.connect(ip, args.addrs.connect, &format!("{user}: connect (10740)"))?;
        let version = if args.rooms {
            VERSION_ROOMS
        } else {
            wire.version()
        };
        signin::version_check(&mut c, version, STEP).map_err(step("Ping"))?;
        Ok(())
    };
    let opened = if wire.mode().is_tls() {
        std::thread::scope(|scope| {
            let opening = std::thread::Builder::new()
                .name("bc-login-auth".into())
                .spawn_scoped(scope, open_auth)
                .map_err(|e| io("start a thread", e))?;
            let checked = ping();
            let opened = opening
                .join()
                .map_err(|_| BenchError::Invalid(format!("{user}: the 9281 opener panicked")))?;
            checked.map(|()| opened)
        })?
    } else {
        ping()?;
        open_auth()
    };
    let t_ping = Instant::now();
    // 9281: SCRAM, bound to the TLS session if there is one. Meanwhile the auth callback is
    // accepted, and its handshake run, on a thread of its own, as gc-client's accept thread
    // does: the server calls back as soon as `Auth1` is out, while the client derives its proof.
    let mut a = opened?;
    let channel = wire.channel(&a)?;
    let level = if args.rooms {
        gc_protocol::SessionLevel::Rooms
    } else {
        gc_protocol::SessionLevel::Base
    };
    let callback_name = format!("{user}: the auth callback");
    let take_callback = || -> Result<gc_net::Conn, BenchError> {
        let (s, peer) = auth_l
            .accept()
            .map_err(|e| io("accept the auth callback", e))?;
        s.set_nodelay(true)
            .map_err(|e| io("set TCP_NODELAY on the callback", e))?;
        wire.accept(s, peer, &callback_name)
    };
    let mut login = || {
        let challenge = signin::request_login(&mut a, &username, ports, &channel, level, STEP)
            .map_err(step("AuthRequest"))?;
        let t_auth1 = Instant::now();
        let password = &args.accounts.password;
        let proof = match args.keys {
            None => challenge.prove(password, args.min_iterations),
            Some(cache) => {
                let (salt, iterations) = challenge.salt_and_iterations().map_err(step("Auth1"))?;
                let keys = cache.get(&salt, iterations, password);
                challenge.prove_with_keys(&keys, args.min_iterations)
            }
        }
        .map_err(step("Auth1"))?;
        let t_proof = Instant::now();
        let check = proof.callback_check();
        let awaiting = proof.send(&mut a, STEP).map_err(step("Proof"))?;
        Ok((t_auth1, t_proof, check, awaiting))
    };
    let (logged_in, callback) = std::thread::scope(|scope| {
        let taking = std::thread::Builder::new()
            .name("bc-login-cb".into())
            .spawn_scoped(scope, take_callback)
            .map_err(|e| io("start a thread", e))?;
        let logged_in = login();
        if logged_in.is_err() {
            // No callback is coming: wake the accept rather than wait out its timeout.
            let _ = socket2::SockRef::from(&auth_l).shutdown(std::net::Shutdown::Both);
        }
        let callback = taking
            .join()
            .map_err(|_| BenchError::Invalid(format!("{user}: the callback taker panicked")))?;
        Ok::<_, BenchError>((logged_in, callback))
    })?;
    let (t_auth1, t_proof, check, awaiting) = logged_in?;
    let mut callback = callback?;
    let token = check.serve(&mut callback, STEP).map_err(step("Authed"))?;
    drop(auth_l);
    let signed_in = awaiting
        .finish(&mut a, STEP, |_| Some(Ok(token)))
        .map_err(step("Proof"))?;
    let t_ok = Instant::now();
    Ok(SignedInClient {
        slot,
        ip,
        token: signed_in.token,
        latest_id: signed_in.latest_id,
        heartbeat_ms: signed_in.heartbeat_ms,
        timing: SignInTiming {
            total: t_ok - t0,
            ping: t_ping - t0,
            auth1: t_auth1 - t_ping,
            proof: t_proof - t_auth1,
            finish: t_ok - t_proof,
        },
        listeners: CallbackListeners {
            heartbeat: hb_l,
            delivery: dl_l,
        },
    })
}

/// Sends `request` on a fresh connection to the sending port and reads its one reply; `what`
/// names the request in errors.
pub fn ask(
    addrs: &ServerAddrs,
    wire: &Wire,
    ip: IpAddr,
    request: &SendRequest,
    what: &str,
) -> Result<SendReply, BenchError> {
    let mut c = wire.connect(ip, addrs.send, "connect (9980)")?;
    let deadline = Instant::now() + STEP;
    c.send(request, deadline)
        .map_err(|e| BenchError::protocol(format!("send {what}"), e))?;
    c.read::<SendReply>(deadline)
        .map_err(|e| BenchError::protocol(format!("read the {what} reply"), e))
}

/// Sends `request` as [`ask`] does and expects `Thx`: returns its id.
pub fn ask_thx(
    addrs: &ServerAddrs,
    wire: &Wire,
    ip: IpAddr,
    request: &SendRequest,
    what: &str,
) -> Result<u64, BenchError> {
    match ask(addrs, wire, ip, request, what)? {
        SendReply::Thx { id, .. } => Ok(id),
        other => Err(refused(what, other)),
    }
}

/// Ends a session with `Bye` on the sending port.
pub fn bye(
    addrs: &ServerAddrs,
    wire: &Wire,
    ip: IpAddr,
    token: &SessionToken,
) -> Result<(), BenchError> {
    let bye = SendRequest::Bye {
        token: token.clone(),
    };
    ask_thx(addrs, wire, ip, &bye, "Bye").map(|_| ())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_are_distinct_and_on_loopback() {
        let mut seen = std::collections::HashSet::new();
        for i in 0..70_000 {
            let ip = client_ip(20, i);
            assert!(ip.is_loopback());
            assert!(seen.insert(ip), "{i}");
            if let IpAddr::V4(v4) = ip {
                assert!(v4.octets()[3] >= 1 && v4.octets()[3] <= 250);
            }
        }
    }
}
