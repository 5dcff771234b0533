//! Logins that must fail, and must not be retried.

use std::net::{IpAddr, Ipv4Addr, SocketAddr, TcpListener};
use std::thread;
use std::time::{Duration, Instant};

use base64::Engine as _;
use gc_client_core::{ClientError, ConnState, ServerPorts};
use gc_protocol::scram::{ClientHello, ServerFirst, derive_verifier};
use gc_protocol::{
    AuthClient, AuthServer, Authed, CallbackReply, ConnectPing, ConnectReply, ErrorCode,
    ErrorFrame, FramedStream, Registration, SessionToken, VERSION_GC5,
};

use gc_tests::client::{TestClient, config, register};
use gc_tests::{PASSWORD, TestServer};

#[test]
fn wrong_password_is_fatal_and_not_retried() {
    let server = TestServer::start();
    register(&server, "alice", "right-password");
    let mut c = TestClient::start(config(&server, "alice", "wrong"));
    let err = c.wait_fatal();
    assert!(
        matches!(
            &err,
            ClientError::Refused {
                code: ErrorCode::Auth,
                ..
            }
        ),
        "{err:?}"
    );
    let text = gc_client_core::error_chain(&err);
    assert!(text.contains("wrong password"), "{text}");
    assert!(err.is_fatal() && err.is_login_refused());
    assert_eq!(c.client().state(), ConnState::Disconnected);
    // It waits for reconnect() instead of hammering the server: a message stays queued.
    c.send("queued");
    assert_eq!(c.client().outbox().len(), 1);
    assert_eq!(
        c.client.take().map(|cl| cl.close(false, None).unsent.len()),
        Some(1)
    );
}

#[test]
fn unknown_user_is_fatal() {
    // By default a server does not tell: the name fails like a wrong password.
    let server = TestServer::start();
    let mut c = TestClient::start(config(&server, "nobody", PASSWORD));
    let err = c.wait_fatal();
    assert_eq!(err.code(), Some(ErrorCode::Auth), "{err:?}");
    let telling = TestServer::start_with(|c| c.tell_unknown_users = true);
    let mut c = TestClient::start(config(&telling, "nobody", PASSWORD));
    let err = c.wait_fatal();
    assert_eq!(err.code(), Some(ErrorCode::UnknownUser), "{err:?}");
}

#[test]
fn a_throttled_client_waits_the_stated_time_and_logs_in() {
    let server = TestServer::start();
    register(&server, "bot", PASSWORD);
    let cfg = config(&server, "bot", PASSWORD);
    let ip = cfg.bind_ip.expect("a test client address");
    // Typos from this address: the next login must wait 1 s.
    let mut typist = gc_tests::RawClient::on(server.target(), ip);
    for _ in 0..5 {
        assert!(
            matches!(typist.login("bot", "wrong"), AuthServer::Err(ref e) if e.code == ErrorCode::Auth)
        );
    }
    let started = Instant::now();
    let mut c = TestClient::start(cfg);
    c.wait_active();
    let took = started.elapsed();
    assert!(
        took >= Duration::from_millis(900),
        "logged in after {took:?}: before the wait"
    );
    assert!(c.client().state() == ConnState::Active);
    let said = c
        .notices
        .iter()
        .map(|(_, text)| text.clone())
        .find(|text| text.contains("throttled"))
        .expect("a notice of the wait");
    assert!(said.contains("trying again in 1 s"), "{said}");
}

#[test]
fn registering_a_taken_name_is_fatal() {
    let server = TestServer::start();
    register(&server, "frank", "password-one");
    let mut cfg = config(&server, "FRANK", "password-two");
    cfg.register = true;
    let mut c = TestClient::start(cfg);
    let err = c.wait_fatal();
    assert_eq!(err.code(), Some(ErrorCode::Exists), "{err:?}");
}

#[test]
fn an_account_of_another_server_does_not_log_in() {
    // The same name on two servers with different secrets: server B cannot be fooled by the
    // password of server A (and, the other way round, B could never prove A's secret).
    let a = TestServer::start();
    let b = TestServer::start();
    register(&a, "alice", "password-on-a");
    register(&b, "alice", "password-on-b");
    let mut c = TestClient::start(config(&b, "alice", "password-on-a"));
    let err = c.wait_fatal();
    assert_eq!(err.code(), Some(ErrorCode::Auth), "{err:?}");
    // And the right one works.
    let mut ok = TestClient::start(config(&b, "alice", "password-on-b"));
    ok.wait_active();
    ok.close();
}

/// A fake server that knows a different secret for `alice` than the client's password, follows
/// the protocol otherwise, and calls back with its (necessarily wrong) signature.
#[test]
fn a_server_that_cannot_prove_the_secret_is_refused() {
    let ip = IpAddr::V4(Ipv4Addr::LOCALHOST);
    let connect_l = TcpListener::bind((ip, 0)).unwrap();
    let auth_l = TcpListener::bind((ip, 0)).unwrap();
    let ports = ServerPorts {
        connect: connect_l.local_addr().unwrap().port(),
        auth: auth_l.local_addr().unwrap().port(),
        send: 1,
    };
    let fake = thread::Builder::new()
        .name("fake-server".into())
        .spawn(move || fake_server(&connect_l, &auth_l))
        .unwrap();

    let mut cfg = gc_client_core::ClientConfig::new("127.0.0.1", "alice", "the-real-password");
    cfg.server_ports = ports;
    cfg.bind_ip = Some(gc_tests::client_ip());
    cfg.listen_ports = gc_client_core::ListenPorts::any();
    cfg.io_timeout = Duration::from_secs(2);
    let mut c = TestClient::start(cfg);
    let err = c.wait_fatal();
    assert!(matches!(err, ClientError::ServerSignature(_)), "{err:?}");
    assert!(err.to_string().contains("not the server"), "{err}");
    assert!(
        !c.states.contains(&ConnState::Authenticated),
        "{:?}",
        c.states
    );
    let callback_reply = fake.join().unwrap();
    match callback_reply {
        CallbackReply::Err(e) => assert_eq!(e.code, ErrorCode::Auth),
        other => panic!("the client accepted a forged callback: {other:?}"),
    }
}

fn fake_server(connect_l: &TcpListener, auth_l: &TcpListener) -> CallbackReply {
    let deadline = || Instant::now() + Duration::from_secs(10);
    // Version check.
    let (stream, peer) = connect_l.accept().expect("fake server step");
    let mut conn = FramedStream::new(stream, peer.to_string());
    let ping: ConnectPing = conn.read(deadline()).expect("fake server step");
    // The client asks for the newest version first; this impostor claims to speak it.
    assert_eq!(ping.version, VERSION_GC5);
    conn.send(
        &ConnectReply::Pong {
            version: VERSION_GC5.into(),
            server_name: "impostor".into(),
            registration: Registration::Open,
        },
        deadline(),
    )
    .expect("fake server step");
    // Login with a verifier made from another password.
    let (stream, peer) = auth_l.accept().expect("fake server step");
    let mut conn = FramedStream::new(stream, peer.to_string());
    let AuthClient::AuthRequest {
        ports,
        client_first,
        ..
    } = conn
        .read::<AuthClient>(deadline())
        .expect("fake server step")
    else {
        panic!("expected AuthRequest");
    };
    let verifier = derive_verifier("not-the-password", b"some salt 123456", 4096);
    let hello = ClientHello::parse(&client_first).expect("fake server step");
    let server_first = ServerFirst::new(&hello, &verifier).expect("fake server step");
    conn.send(
        &AuthServer::Auth1 {
            server_first: server_first.message().to_owned(),
        },
        deadline(),
    )
    .expect("fake server step");
    let AuthClient::Proof { .. } = conn
        .read::<AuthClient>(deadline())
        .expect("fake server step")
    else {
        panic!("expected Proof");
    };
    // The proof does not verify here; an impostor calls back anyway with a made-up signature.
    let forged = format!(
        "v={}",
        base64::engine::general_purpose::STANDARD.encode([42u8; 32])
    );
    let callback = SocketAddr::new(peer.ip(), ports.auth);
    let stream =
        gc_net::connect_from(None, callback, Duration::from_secs(2)).expect("fake server step");
    let mut cb = FramedStream::new(stream, callback.to_string());
    cb.send(
        &Authed {
            server_final: forged,
            token: SessionToken::random().expect("fake server step"),
        },
        deadline(),
    )
    .expect("fake server step");
    let reply: CallbackReply = cb.read(deadline()).expect("fake server step");
    let answer = match &reply {
        CallbackReply::Err(e) if e.code == ErrorCode::Auth => {
            AuthServer::Err(ErrorFrame::new(ErrorCode::Auth, "your client rejected us"))
        }
        _ => AuthServer::Ok {
            heartbeat_ms: 100,
            latest_id: 0,
        },
    };
    let _ = conn.send(&answer, deadline());
    reply
}
