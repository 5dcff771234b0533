//! TLS (GC/2) end to end: a man in the middle with its own certificate, a server whose key was
//! replaced, the three TLS modes side by side, callbacks to the wrong certificate, stalled
//! handshakes and unusable certificate files.

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use gc_client_core::{ClientError, ClientTls, KnownServers, PinSource, ServerPin};
use gc_net::identity::Identity;
use gc_net::tls::{ClientAuth, PeerCheck, Stream, TlsConfig};
use gc_protocol::{AuthServer, ConnectReply, ErrorCode, Fingerprint, SendReply};
use gc_server::config::TlsMode;
use gc_tests::client::{TestClient, config};
use gc_tests::{PASSWORD, RawClient, TestServer, client_ip, connect_from};

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

// ───────────────────────────── a man in the middle ─────────────────────────────

/// What a man in the middle runs: it terminates TLS with a certificate of its own and opens its
/// own TLS connection to the real server (whose certificate it checks), then passes the
/// plaintext on, one line each way at a time (every exchange up to a login's end is one line
/// answered by one line).
struct Relay {
    addr: SocketAddr,
    fingerprint: Fingerprint,
    stop: Arc<AtomicBool>,
    thread: Option<thread::JoinHandle<()>>,
}

impl Relay {
    fn start(identity: &Identity, upstream: SocketAddr, server: Fingerprint) -> Self {
        let fingerprint = identity.fingerprint();
        let front = Arc::new(TlsConfig::new(Some(identity), ClientAuth::None).unwrap());
        let back = Arc::new(TlsConfig::new(None, ClientAuth::None).unwrap());
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stopping = Arc::clone(&stop);
        let thread = thread::spawn(move || {
            let mut conns = Vec::new();
            for tcp in listener.incoming() {
                if stopping.load(Ordering::SeqCst) {
                    break;
                }
                let Ok(tcp) = tcp else { break };
                let (front, back) = (Arc::clone(&front), Arc::clone(&back));
                conns.push(thread::spawn(move || {
                    let Ok(client) = front.accept(tcp, "victim", PeerCheck::Any, soon()) else {
                        return;
                    };
                    let Ok(up) = TcpStream::connect(upstream) else {
                        return;
                    };
                    let Ok(server) = back.connect(up, "server", PeerCheck::Pinned(server), soon())
                    else {
                        return;
                    };
                    pass_lines(client, server);
                }));
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Self {
            addr,
            fingerprint,
            stop,
            thread: Some(thread),
        }
    }
}

impl Drop for Relay {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        let _ = TcpStream::connect(self.addr);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One line from `s` (without its end), or `None` at the end or after 5 s.
fn read_line(s: &mut Stream) -> Option<Vec<u8>> {
    s.tcp()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .ok()?;
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    loop {
        match s.read(&mut byte) {
            Ok(1) if byte[0] == b'\n' => return Some(line),
            Ok(1) if line.len() < 64 * 1024 => line.push(byte[0]),
            _ => return None,
        }
    }
}

fn pass_lines(mut client: Stream, mut server: Stream) {
    while let Some(mut request) = read_line(&mut client) {
        request.push(b'\n');
        if server
            .write_all(&request)
            .and_then(|()| server.flush())
            .is_err()
        {
            return;
        }
        let Some(mut answer) = read_line(&mut server) else {
            return;
        };
        answer.push(b'\n');
        if client
            .write_all(&answer)
            .and_then(|()| client.flush())
            .is_err()
        {
            return;
        }
    }
}

/// A client of `server` whose connect and auth ports are the relays'.
fn through(server: &TestServer, connect: &Relay, auth: &Relay) -> gc_client_core::ClientConfig {
    let mut c = config(server, "victim", "pw-victim");
    c.server_ports.connect = connect.addr.port();
    c.server_ports.auth = auth.addr.port();
    c
}

#[test]
fn a_relay_with_its_own_certificate_cannot_complete_a_login() {
    let server = TestServer::start();
    let real = server.fingerprint().expect("TLS");
    let mut setup = RawClient::new(server.target());
    assert_eq!(
        setup.register("victim", "pw-victim"),
        AuthServer::Registered
    );
    let mitm = Identity::generate("not-the-server").unwrap();
    let connect = Relay::start(&mitm, server.addrs().connect, real);
    let auth = Relay::start(&mitm, server.addrs().auth, real);
    assert_eq!(connect.fingerprint, auth.fingerprint);

    // Pinned to the real server: the relay's certificate is refused at once, naming both.
    let mut pinned = TestClient::start(through(&server, &connect, &auth));
    match pinned.wait_fatal() {
        ClientError::FingerprintChanged(m) => {
            assert_eq!((m.expected, m.presented), (real, Some(connect.fingerprint)));
        }
        other => panic!("{other:?}"),
    }
    drop(pinned);

    // The user trusted the relay's certificate by mistake (first contact through it): the TLS
    // sessions are the relay's, so the login bound to the client's session fails at the server,
    // which never calls back.
    let mut fooled = through(&server, &connect, &auth);
    fooled.tls = ClientTls::Pinned(ServerPin {
        fingerprint: connect.fingerprint,
        source: PinSource::Given("a mistaken first contact".into()),
    });
    let mut fooled = TestClient::start(fooled);
    let e = fooled.wait_fatal();
    let text = gc_client_core::error_chain(&e);
    assert_eq!(e.code(), Some(ErrorCode::Malformed), "{text}");
    assert!(text.contains("another TLS session"), "{text}");
    assert_eq!(server.sessions(), 0);
    assert!(server.stored_lines().is_empty());

    // The same account logs in fine without the relay.
    assert!(matches!(
        setup.login("victim", "pw-victim"),
        AuthServer::Ok { .. }
    ));
}

// ───────────────────────────── a replaced key ─────────────────────────────

#[test]
fn a_replaced_server_key_is_refused_with_both_fingerprints_and_the_line() {
    let mut server = TestServer::start();
    gc_tests::client::register(&server, "rita", PASSWORD);
    let old = server.fingerprint().expect("TLS");
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("known_servers");
    let mut known = KnownServers::load(&path).unwrap();
    known
        .add("elsewhere:10740", Fingerprint::of_der(b"x"))
        .unwrap();
    let pin = known.add("127.0.0.1:10740", old).unwrap();

    // The operator makes a new identity.
    server.stop();
    std::fs::remove_dir_all(server.data_dir().join("tls")).unwrap();
    server.restart();
    let new = server.fingerprint().expect("TLS");
    assert_ne!(new, old);

    let mut c = config(&server, "rita", PASSWORD);
    c.tls = ClientTls::Pinned(pin);
    let mut client = TestClient::start(c);
    let e = client.wait_fatal();
    assert!(e.is_fatal() && e.is_login_refused());
    let text = e.to_string();
    for part in [
        old.to_string(),
        new.to_string(),
        format!("remove line 5 from {}", path.display()),
    ] {
        assert!(text.contains(&part), "{part:?} not in {text}");
    }
    assert_eq!(server.sessions(), 0);
}

// ───────────────────────────── the three modes ─────────────────────────────

#[test]
fn optional_mode_serves_plain_and_tls_clients_side_by_side() {
    gc_tests::capture_logs();
    let server = TestServer::start_with(|c| c.tls = TlsMode::Optional);
    let target = server.target();
    let mut secure = RawClient::new(target);
    let mut old = RawClient::new(target.plain());
    assert!(secure.is_tls() && !old.is_tls());
    assert!(matches!(old.ping(), ConnectReply::Pong { ref version, .. } if version == "GC/1"));
    assert!(matches!(secure.ping(), ConnectReply::Pong { ref version, .. } if version == "GC/2"));
    for (c, user) in [(&mut secure, "sec"), (&mut old, "oldtimer")] {
        assert_eq!(c.register(user, PASSWORD), AuthServer::Registered);
        assert!(matches!(c.login(user, PASSWORD), AuthServer::Ok { .. }));
    }
    assert!(matches!(old.send("from GC/1"), SendReply::Thx { .. }));
    assert!(matches!(secure.send("from GC/2"), SendReply::Thx { .. }));
    for c in [&secure, &old] {
        let got: Vec<_> = c.receive(2).into_iter().map(|r| r.body).collect();
        assert_eq!(got, ["from GC/1", "from GC/2"]);
    }
    // Each plain login is logged as a warning.
    let logs = gc_tests::captured_logs();
    assert!(
        logs.lines().any(|l| l.contains("WARN")
            && l.contains("plain GC/1 login")
            && l.contains("oldtimer")),
        "{logs}"
    );
    // A session opened over TLS takes nothing in the clear, even from its own address.
    let mut clear = target.plain().stream(secure.ip, target.addrs.send).unwrap();
    let msg = gc_protocol::SendRequest::Msg {
        token: secure.token.clone().unwrap(),
        client_msg_id: gc_protocol::ClientMsgId::new("clear").unwrap(),
        body: b"in the clear".to_vec(),
        room: None,
    };
    clear
        .write_all(&gc_protocol::Frame::to_bytes(&msg))
        .unwrap();
    let mut conn = gc_net::Conn::new(clear, "server");
    match conn.read::<SendReply>(soon()).unwrap() {
        SendReply::Err(e) => assert_eq!(e.code, ErrorCode::Session),
        other => panic!("{other:?}"),
    }
    assert_eq!(server.stored_lines().len(), 2);
}

#[test]
fn off_mode_is_plain_gc1_and_tells_a_tls_client_so() {
    let server = TestServer::start_with(|c| c.tls = TlsMode::Off);
    assert_eq!(server.fingerprint(), None);
    let mut c = RawClient::new(server.target());
    assert!(!c.is_tls());
    assert_eq!(c.register("plain", PASSWORD), AuthServer::Registered);
    assert!(matches!(c.login("plain", PASSWORD), AuthServer::Ok { .. }));
    assert!(matches!(c.send("hello"), SendReply::Thx { .. }));
    // A TLS client gets, in words, why not.
    let mut with_tls = server.target();
    with_tls.fingerprint = Some(Fingerprint::of_der(b"whatever"));
    for port in [server.addrs().connect, server.addrs().auth] {
        let err = with_tls.stream(client_ip(), port).map(|_| ()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains(
                "answered in plain text instead of TLS: `Err version`: this server runs without TLS"
            ),
            "{text}"
        );
    }
    assert!(matches!(c.send("still fine"), SendReply::Thx { .. }));
}

#[test]
fn required_mode_tells_a_plain_client_to_update() {
    let server = TestServer::start();
    let old = RawClient::new(server.target().plain());
    match old.ping() {
        ConnectReply::Err(e) => {
            assert_eq!(e.code, ErrorCode::Version);
            assert!(e.text.contains("requires TLS"), "{}", e.text);
        }
        other => panic!("{other:?}"),
    }
    match old.register("x", PASSWORD) {
        AuthServer::Err(e) => assert_eq!(e.code, ErrorCode::Version),
        other => panic!("{other:?}"),
    }
}

// ───────────────────────────── callbacks ─────────────────────────────

#[test]
fn a_callback_listener_with_another_certificate_is_never_told_the_token() {
    let server = TestServer::start();
    let mut c = RawClient::new(server.target());
    assert_eq!(c.register("cal", PASSWORD), AuthServer::Registered);
    // The login announces a certificate the listener does not present (as if someone else
    // had taken the callback port).
    c.announce_callback(Fingerprint::of_der(b"another certificate"));
    match c.login("cal", PASSWORD) {
        AuthServer::Err(e) => {
            assert_eq!(e.code, ErrorCode::Unreachable);
            assert!(
                e.text
                    .contains("another certificate than the one the client announced"),
                "{}",
                e.text
            );
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.sessions(), 0);
}

#[test]
fn a_wrong_password_gets_its_answer_though_the_callback_was_opened_early() {
    // Over TLS the server opens its callback connection while the client works out its proof;
    // a wrong proof must still get `Err auth` (not `unreachable`), the early connection must be
    // dropped without `Authed`, and the next login on the same listener must work.
    let server = TestServer::start();
    let mut c = RawClient::new(server.target());
    assert_eq!(
        c.register("early", "right-password"),
        AuthServer::Registered
    );
    for _ in 0..2 {
        match c.login("early", "wrong") {
            AuthServer::Err(e) => assert_eq!(e.code, ErrorCode::Auth, "{}", e.text),
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(server.sessions(), 0);
    assert!(matches!(
        c.login("early", "right-password"),
        AuthServer::Ok { .. }
    ));
    assert!(matches!(c.send("in"), SendReply::Thx { .. }));
}

// ───────────────────────────── stalls and files ─────────────────────────────

#[test]
fn a_stalled_handshake_is_cut_at_the_io_timeout_and_holds_nobody_up() {
    let server = TestServer::start(); // I/O timeout 2 s
    let addrs = server.addrs();
    // Half a ClientHello on every port, then silence.
    let stalled: Vec<TcpStream> = [addrs.connect, addrs.auth]
        .into_iter()
        .map(|port| {
            let mut s = connect_from(client_ip(), port).unwrap();
            s.write_all(&[0x16, 0x03, 0x01, 0x02]).unwrap();
            s
        })
        .collect();
    // Meanwhile others sign in.
    let mut c = RawClient::new(server.target());
    assert_eq!(c.register("busy", PASSWORD), AuthServer::Registered);
    assert!(matches!(c.login("busy", PASSWORD), AuthServer::Ok { .. }));
    // The stalled ones are closed by the server, within its I/O timeout (and well within 10 s).
    for mut s in stalled {
        let started = Instant::now();
        s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
        let mut rest = Vec::new();
        let closed = s.read_to_end(&mut rest);
        assert!(
            closed.is_ok() || started.elapsed() < Duration::from_secs(10),
            "still open after 10 s: {closed:?}"
        );
    }
    assert!(matches!(c.send("after"), SendReply::Thx { .. }));
}

#[test]
fn unusable_certificate_files_stop_the_server_with_the_file_named() {
    let dir = tempfile::tempdir().unwrap();
    let missing = dir.path().join("missing.pem");
    let key = dir.path().join("key.pem");
    let mut config = gc_tests::test_config(dir.path());
    config.tls_cert = Some(missing.clone());
    config.tls_key = Some(key.clone());
    // A key, but no certificate.
    let made = dir.path().join("made");
    let (real, _) = Identity::load_or_create(&made, "operator").unwrap();
    std::fs::copy(made.join("key.pem"), &key).unwrap();
    let err = gc_server::start(config.clone()).unwrap_err().to_string();
    assert!(err.contains(&missing.display().to_string()), "{err}");

    // Not a certificate at all.
    std::fs::write(&missing, "not a certificate\n").unwrap();
    let err = gc_server::start(config.clone()).unwrap_err().to_string();
    assert!(err.contains("missing.pem"), "{err}");

    // The operator's own pair works, and is what clients pin.
    std::fs::copy(made.join("cert.pem"), &missing).unwrap();
    let server = gc_server::start(config.clone()).unwrap();
    assert_eq!(server.fingerprint(), Some(real.fingerprint()));
    server.shutdown();

    // With --tls off the files are not needed.
    config.tls = TlsMode::Off;
    let server = gc_server::start(config).unwrap();
    assert_eq!(server.fingerprint(), None);
    server.shutdown();
}

// ───────────────────────────── no leaks ─────────────────────────────

/// Bad TLS of every kind, many times, against a server in its own process: afterwards it holds
/// as many descriptors and threads as before (looked at in /proc, for at most [`WAIT`]).
#[test]
fn failed_handshakes_leak_no_descriptor_and_no_thread() {
    let dir = tempfile::tempdir().unwrap();
    let child = gc_tests::ChildServer::spawn(
        std::path::Path::new(env!("CARGO_BIN_EXE_gc-test-server")),
        dir.path(),
    );
    let target = child.target;
    // Warm up: one full sign-in (its session stays, heartbeats answered), so lazily made
    // things exist before the baseline.
    let mut warm = RawClient::new(target);
    assert_eq!(warm.register("warm", PASSWORD), AuthServer::Registered);
    assert!(matches!(
        warm.login("warm", PASSWORD),
        AuthServer::Ok { .. }
    ));
    assert!(matches!(warm.send("hello"), SendReply::Thx { .. }));
    assert_eq!(warm.receive(1).len(), 1);
    let settled = |want: (usize, usize)| {
        let deadline = Instant::now() + gc_tests::WAIT;
        loop {
            let now = child.fds_and_threads();
            if now.0 <= want.0 && now.1 <= want.1 {
                return now;
            }
            assert!(Instant::now() < deadline, "still {now:?}, was {want:?}");
            thread::sleep(Duration::from_millis(50));
        }
    };
    let baseline = child.fds_and_threads();

    let stranger = Identity::generate("stranger").unwrap();
    let strangers = TlsConfig::new(Some(&stranger), ClientAuth::None).unwrap();
    for round in 0..10 {
        for port in [target.addrs.connect, target.addrs.auth, target.addrs.send] {
            // Plain GC/1 to a TLS port.
            let mut plain = connect_from(client_ip(), port).unwrap();
            let _ = plain.write_all(b"Ping GC/1\n");
            let _ = plain.read_to_end(&mut Vec::new());
            // A handshake cut off half-way.
            let mut half = connect_from(client_ip(), port).unwrap();
            let _ = half.write_all(&[0x16, 0x03, 0x01, 0x00, 0x50, 0x01]);
            drop(half);
            // A client that pins another certificate gives up after the server's hello.
            let tcp = connect_from(client_ip(), port).unwrap();
            let wrong = strangers.connect(
                tcp,
                "server",
                PeerCheck::Pinned(stranger.fingerprint()),
                soon(),
            );
            assert!(wrong.is_err(), "round {round}");
            // Garbage after a good handshake.
            if let Ok(mut s) = target.stream(client_ip(), port) {
                let _ = s.write_all(b"\xff\xfe garbage\n").and_then(|()| s.flush());
                let _ = s.read(&mut [0u8; 256]);
            }
        }
    }
    let after = settled((baseline.0, baseline.1));
    assert!(after.0 <= baseline.0 && after.1 <= baseline.1);
    // And it still serves.
    let mut c = RawClient::new(target);
    assert_eq!(c.register("after", PASSWORD), AuthServer::Registered);
    assert!(matches!(c.login("after", PASSWORD), AuthServer::Ok { .. }));
}
