//! Logged-in clients exchanging messages.

use std::io::Write;
use std::net::TcpStream;
use std::time::Duration;

use gc_client_core::{ConnState, Event};
use gc_protocol::{Frame, HeartbeatReply};
use gc_protocol::{HeartbeatPing, SessionToken, Timestamp};

use gc_tests::client::{TestClient, config, heartbeat_addr};
use gc_tests::{PASSWORD, TestServer};

#[test]
fn three_users_chat_and_everyone_gets_every_message_once_in_id_order() {
    let server = TestServer::start_with(|c| {
        c.rate_burst = 100;
        c.rate_per_sec = 100.0;
    });
    let names = ["ann", "ben", "cat"];
    let mut clients: Vec<TestClient> = names
        .iter()
        .map(|n| {
            let mut cfg = config(&server, n, PASSWORD);
            cfg.register = true;
            TestClient::start(cfg)
        })
        .collect();
    for c in &mut clients {
        c.wait_active();
    }
    // Everyone talks at once: 3 users × 20 messages, interleaved.
    for k in 0..20 {
        for (c, n) in clients.iter().zip(names) {
            c.send(&format!("{n} says {k}"));
        }
    }
    let stored = |server: &TestServer| -> Vec<(u64, String, String)> {
        server
            .stored_lines()
            .iter()
            .map(|l| {
                let mut f = l.splitn(4, ';');
                let id = f.next().unwrap().parse().unwrap();
                let _ts = f.next();
                (
                    id,
                    f.next().unwrap().to_owned(),
                    f.next().unwrap().to_owned(),
                )
            })
            .collect()
    };
    for c in &mut clients {
        c.wait_records(60);
        c.wait_acked(20);
    }
    let lines = stored(&server);
    assert_eq!(lines.len(), 60);
    for c in &clients {
        // Exactly the stored records, in id order (TestClient also asserts ascending ids).
        let got: Vec<(u64, String, String)> = c
            .records
            .iter()
            .map(|r| (r.id, r.username.to_string(), r.body.clone()))
            .collect();
        assert_eq!(got, lines);
    }
    // Each user's own messages are stored in the order they were sent.
    for n in names {
        let mine: Vec<&str> = lines
            .iter()
            .filter(|(_, u, _)| u == n)
            .map(|(_, _, b)| b.as_str())
            .collect();
        let expected: Vec<String> = (0..20).map(|k| format!("{n} says {k}")).collect();
        assert_eq!(mine, expected);
    }
    for c in &mut clients {
        assert_eq!(c.close(), 0);
    }
}

#[test]
fn two_clients_get_every_message_once_in_order() {
    let server = TestServer::start();
    let mut alice_cfg = config(&server, "alice", "pw-alice");
    alice_cfg.register = true;
    let mut bob_cfg = config(&server, "bob", "bob-password");
    bob_cfg.register = true;
    let mut alice = TestClient::start(alice_cfg);
    let mut bob = TestClient::start(bob_cfg);
    alice.wait_active();
    bob.wait_active();
    assert_eq!(
        alice.states,
        [
            ConnState::Connecting,
            ConnState::Connected,
            ConnState::Authenticating,
            ConnState::Authenticated,
            ConnState::Active
        ]
    );

    // Interleaved, without waiting for each other; alice's third one has a newline and ESC.
    alice.send("a1");
    bob.send("b1");
    alice.send("a2");
    bob.send("b2");
    alice.send("a3 line\nnext \u{1b}[2J");
    for c in [&mut alice, &mut bob] {
        c.wait_records(5);
        let ids = c.ids();
        assert_eq!(ids.len(), 5);
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
        let mut bodies = c.bodies();
        bodies.sort();
        assert_eq!(bodies, ["a1", "a2", "a3 line\nnext \u{1b}[2J", "b1", "b2"]);
        // Each sender's messages keep their order.
        let mine: Vec<_> = c
            .records
            .iter()
            .filter(|r| r.username.as_str() == "alice")
            .map(|r| r.body.as_str())
            .collect();
        assert_eq!(mine, ["a1", "a2", "a3 line\nnext \u{1b}[2J"]);
    }
    alice.wait_acked(3);
    bob.wait_acked(2);
    assert!(alice.client().outbox().is_empty());
    assert_eq!(server.stored_lines().len(), 5);

    // Presence: alice learns that bob is online.
    let users = alice.wait_other("presence with bob", |e| match e {
        Event::Presence { users, .. } if users.len() == 2 => Some(users.clone()),
        _ => None,
    });
    let names: Vec<_> = users.iter().map(|u| u.as_str()).collect();
    assert_eq!(names, ["alice", "bob"]);
    let status = alice.client().status();
    assert_eq!(status.state, ConnState::Active);
    assert_eq!(status.last_id, 5);
    assert!(status.last_heartbeat.is_some());

    // Bye ended both sessions at once (no waiting for missed heartbeats): the server ends a
    // session before it acknowledges its `Bye`, so with both acknowledged none is left now.
    for c in [&mut alice, &mut bob] {
        let report = c.close_report();
        assert!(report.unsent.is_empty(), "unsent: {:?}", report.unsent);
        assert!(report.bye_sent, "the server acknowledged Bye");
    }
    assert_eq!(server.sessions(), 0);
}

#[test]
fn history_who_and_history_on_join() {
    let server = TestServer::start();
    let mut alice_cfg = config(&server, "alice", PASSWORD);
    alice_cfg.register = true;
    let mut alice = TestClient::start(alice_cfg);
    alice.wait_active();
    for i in 1..=5 {
        alice.send(&format!("m{i}"));
    }
    alice.wait_records(5);

    // A fresh client is owed the newest records at login (here all five).
    let mut carol_cfg = config(&server, "carol", PASSWORD);
    carol_cfg.register = true;
    let mut carol = TestClient::start(carol_cfg);
    carol.wait_records(5);
    assert_eq!(carol.ids(), [1, 2, 3, 4, 5]);

    carol.client().history(4, 2).unwrap();
    let page = carol.wait_other("history page", |e| match e {
        Event::History {
            before_id: 4,
            records,
            ..
        } => Some(records.clone()),
        _ => None,
    });
    let ids: Vec<u64> = page.iter().map(|r| r.id).collect();
    assert_eq!(ids, [2, 3]);
    // History never duplicates into the record stream.
    assert_eq!(carol.ids(), [1, 2, 3, 4, 5]);

    carol.client().who().unwrap();
    carol.wait_other("who answer with both", |e| match e {
        Event::Presence { users, .. } if users.len() == 2 => Some(()),
        _ => None,
    });
    assert_eq!(carol.client().cached(0, 3).len(), 3);
    carol.close();
    alice.close();
}

#[test]
fn one_connection_per_exchange_works_too() {
    let server = TestServer::start_with(|c| c.reuse_connections = false);
    let mut cfg = config(&server, "dave", PASSWORD);
    cfg.register = true;
    cfg.reuse_connections = false;
    let mut dave = TestClient::start(cfg);
    dave.wait_active();
    for i in 0..4 {
        dave.send(&format!("no reuse {i}"));
    }
    dave.wait_records(4);
    dave.wait_acked(4);
    assert_eq!(
        dave.bodies(),
        ["no reuse 0", "no reuse 1", "no reuse 2", "no reuse 3"]
    );
    dave.close();
}

#[test]
fn only_the_server_can_call_back_and_a_foreign_token_gets_err_session() {
    use gc_net::identity::{IDENTITY_DIR, Identity};
    use gc_net::tls::{ClientAuth, PeerCheck, TlsConfig};
    let server = TestServer::start();
    let mut cfg = config(&server, "erin", PASSWORD);
    cfg.register = true;
    let mut erin = TestClient::start(cfg.clone());
    erin.wait_active();
    let addr = heartbeat_addr(&cfg, erin.client());
    let ping = HeartbeatPing {
        token: SessionToken::random().unwrap(),
        server_time: Timestamp::now(),
        presence_version: 1,
    };
    let soon = || std::time::Instant::now() + Duration::from_secs(5);

    // Plain text on the heartbeat port, even from the client's own address: no TLS, no answer
    // (at most a TLS alert).
    let mut plain = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    plain
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    plain.write_all(&ping.to_bytes()).unwrap();
    let mut answer = Vec::new();
    let _ = std::io::Read::read_to_end(&mut plain, &mut answer);
    const TLS_ALERT: u8 = 0x15;
    assert!(
        answer.first().is_none_or(|&b| b == TLS_ALERT),
        "{:?}",
        String::from_utf8_lossy(&answer)
    );

    // TLS with any certificate but the server's: the handshake is refused.
    let stranger = Identity::generate("stranger").unwrap();
    let tls = TlsConfig::new(Some(&stranger), ClientAuth::None).unwrap();
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    let refused = tls
        .connect(tcp, "erin", PeerCheck::Any, soon())
        .and_then(|s| {
            // TLS 1.3: the client's verdict on our certificate arrives with the first read.
            let mut conn = gc_net::Conn::new(s, "erin");
            conn.send(&ping, soon())?;
            conn.read::<HeartbeatReply>(soon())?;
            Ok(())
        });
    assert!(refused.is_err(), "a stranger's certificate was accepted");

    // With the server's own certificate (its key is on the server's disk), a token that is not
    // the session's: `Err session`, then closed.
    let dir = server.data_dir().join(IDENTITY_DIR);
    let own = Identity::load(&dir.join("cert.pem"), &dir.join("key.pem")).unwrap();
    let tls = TlsConfig::new(Some(&own), ClientAuth::None).unwrap();
    let tcp = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
    let mut conn = gc_net::Conn::new(
        tls.connect(tcp, "erin", PeerCheck::Any, soon()).unwrap(),
        "erin",
    );
    conn.send(&ping, soon()).unwrap();
    let reply = conn.read::<HeartbeatReply>(soon()).unwrap();
    assert!(
        matches!(&reply, HeartbeatReply::Err(e) if e.code == gc_protocol::ErrorCode::Session),
        "{reply:?}"
    );
    assert!(conn.read::<HeartbeatReply>(soon()).is_err(), "then closed");

    // The real session is unaffected.
    erin.send("still here");
    erin.wait_records(1);
    erin.close();
}

#[test]
fn rate_limited_messages_are_resent_in_order() {
    let server = TestServer::start_with(|c| {
        c.rate_burst = 2;
        c.rate_per_sec = 20.0;
    });
    let mut cfg = config(&server, "gina", PASSWORD);
    cfg.register = true;
    let mut gina = TestClient::start(cfg);
    gina.wait_active();
    let sent: Vec<String> = (0..8).map(|i| format!("burst {i}")).collect();
    for text in &sent {
        gina.send(text);
    }
    gina.wait_acked(8);
    gina.wait_records(8);
    assert_eq!(gina.bodies(), sent);
    assert!(
        !gina.others.iter().any(|e| matches!(e, Event::Rejected(_))),
        "{:?}",
        gina.others
    );
    assert_eq!(server.stored_lines().len(), 8);
    gina.close();
}

#[test]
fn refusals_leave_the_outbox_with_the_server_text() {
    let server = TestServer::start_with(|c| c.max_message_bytes = 10);
    let mut cfg = config(&server, "hank", PASSWORD);
    cfg.register = true;
    let mut hank = TestClient::start(cfg);
    hank.wait_active();
    let big = hank.send("this is longer than ten bytes");
    hank.send("short");
    let (id, code, text) = hank.wait_other("rejection", |e| match e {
        Event::Rejected(r) => Some((r.client_msg_id.clone(), r.code, r.text.clone())),
        _ => None,
    });
    assert_eq!(id, big);
    assert_eq!(code, gc_protocol::ErrorCode::TooLarge);
    assert!(text.contains("at most 10"), "{text}");
    hank.wait_records(1);
    hank.wait_acked(1);
    assert_eq!(hank.bodies(), ["short"]);
    assert!(hank.client().outbox().is_empty());
    // Local checks refuse before anything is queued.
    assert!(hank.client().send("").is_err());
    assert!(hank.client().send("a\0b").is_err());
    hank.close();
}

/// A client that logs in again from the same address while its previous session still lingers on
/// the server (it takes three missed heartbeats to drop it) keeps working without churning.
#[test]
fn a_lingering_old_session_on_the_same_address_does_not_disturb_the_new_one() {
    let server = TestServer::start_with(|c| c.rate_burst = 10_000);
    let mut cfg = config(&server, "kim", PASSWORD);
    cfg.register = true;
    let mut first = TestClient::start(cfg.clone());
    first.wait_active();
    // Gone without Bye: the server keeps the session until it misses three heartbeats.
    drop(first.client.take());
    cfg.register = false;
    let mut second = TestClient::start(cfg);
    second.wait_active();
    let start = std::time::Instant::now();
    let mut n = 0;
    while start.elapsed() < Duration::from_millis(1500) {
        second.send(&format!("m{n}"));
        n += 1;
        second.wait_acked(n);
    }
    assert!(
        server.wait_sessions(|n| n == 1),
        "the old session is dropped after missed heartbeats ({} left)",
        server.sessions()
    );
    second.wait_records(n);
    let warnings: Vec<_> = second
        .notices
        .iter()
        .filter(|(l, _)| *l == gc_client_core::NoticeLevel::Warning)
        .collect();
    let logins = second
        .states
        .iter()
        .filter(|s| **s == ConnState::Active)
        .count();
    assert_eq!(logins, 1, "no relogin; warnings {warnings:?}");
    second.close();
}

#[test]
fn reconnect_ends_the_old_session_and_carries_on() {
    let server = TestServer::start();
    let mut cfg = config(&server, "lena", PASSWORD);
    cfg.register = true;
    let mut lena = TestClient::start(cfg);
    lena.wait_active();
    lena.send("one");
    lena.wait_records(1);
    lena.client().reconnect();
    lena.wait_active();
    // The old session said Bye before the new login began, and the server ends a session before
    // it acknowledges its `Bye`: only the new one is left, at once (not after missed heartbeats).
    assert_eq!(server.sessions(), 1);
    lena.send("two");
    lena.wait_records(2);
    assert_eq!(lena.bodies(), ["one", "two"]);
    lena.close();
}
