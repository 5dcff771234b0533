//! The GC/1 exchanges driven frame by frame against a real server.

use gc_protocol::{
    AuthServer, ClientMsgId, ConnectReply, ErrorCode, Registration, Room, SendReply, SendRequest,
};
use std::time::Duration;

use gc_tests::{PASSWORD, RawClient, TestServer};

#[test]
fn register_login_send_and_receive() {
    let server = TestServer::start();
    let mut alice = RawClient::new(server.target());
    assert!(matches!(
        alice.ping(),
        ConnectReply::Pong {
            registration: Registration::Open,
            ..
        }
    ));
    assert_eq!(alice.register("alice", "pw-alice"), AuthServer::Registered);
    assert!(matches!(
        alice.login("alice", "pw-alice"),
        AuthServer::Ok { latest_id: 0, .. }
    ));

    let mut bob = RawClient::new(server.target());
    assert_eq!(bob.register("bob", "bob-password"), AuthServer::Registered);
    assert!(matches!(
        bob.login("bob", "bob-password"),
        AuthServer::Ok { .. }
    ));

    let reply = alice.send("hello; world\\ \n line two");
    assert!(matches!(reply, SendReply::Thx { id: 1, .. }), "{reply:?}");
    for client in [&alice, &bob] {
        let got = client.receive(1);
        assert_eq!(got[0].body, "hello; world\\ \n line two");
        assert_eq!(got[0].username.as_str(), "alice");
    }
    assert_eq!(server.stored_lines().len(), 1);
    assert!(server.stored_lines()[0].starts_with("1;"));
    assert!(server.stored_lines()[0].ends_with(";alice;hello; world\\\\ \\n line two"));

    // Who lists both.
    let who = alice.request(
        &[SendRequest::Who {
            token: alice.token.clone().unwrap(),
            room: None,
        }],
        1,
    );
    match &who[0] {
        SendReply::Online { users, .. } => {
            let names: Vec<_> = users.iter().map(|u| u.as_str()).collect();
            assert_eq!(names, ["alice", "bob"]);
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn wrong_password_and_unknown_user() {
    let server = TestServer::start();
    let mut c = RawClient::new(server.target());
    assert_eq!(
        c.register("carol", "right-password"),
        AuthServer::Registered
    );
    match c.login("carol", "wrong") {
        AuthServer::Err(e) => assert_eq!(e.code, ErrorCode::Auth),
        other => panic!("{other:?}"),
    }
    // A name without an account is answered like an account (a decoy salt, the same every
    // time) and refused at the proof, with the text of a wrong password: a login does not
    // tell which names exist.
    let wrong = match c.login("carol", "wrong-again") {
        AuthServer::Err(e) => e,
        other => panic!("{other:?}"),
    };
    let decoy = c
        .challenge("nobody")
        .expect("a challenge for a name without an account");
    let real = c.challenge("carol").expect("a challenge");
    assert_eq!(decoy.0.len(), real.0.len(), "salts of one length");
    assert_eq!(decoy.1, real.1, "the iterations clients register with");
    assert_ne!(decoy.0, real.0);
    assert_eq!(c.challenge("NOBODY").expect("challenge").0, decoy.0);
    match c.login("nobody", "some-password") {
        AuthServer::Err(e) => {
            assert_eq!(e.code, ErrorCode::Auth);
            assert_eq!(
                e.text.replace("nobody", "carol"),
                wrong.text,
                "the same answer as a wrong password"
            );
        }
        other => panic!("{other:?}"),
    }
    // The decoy salt survives a restart (its secret is kept in the data dir, 0600).
    let mut server = server;
    server.restart();
    let c = RawClient::new(server.target());
    assert_eq!(c.challenge("nobody").expect("challenge").0, decoy.0);
    let key = server.data_dir().join("decoy.key");
    let mode = std::fs::metadata(&key).expect("decoy.key").permissions();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&mode) & 0o777,
        0o600
    );

    // An operator with open registration may choose to tell (the client then offers to
    // create the account).
    let telling = TestServer::start_with(|c| c.tell_unknown_users = true);
    let mut c = RawClient::new(telling.target());
    match c.login("nobody", "x") {
        AuthServer::Err(e) => assert_eq!(e.code, ErrorCode::UnknownUser),
        other => panic!("{other:?}"),
    }
}

fn logged_in(server: &TestServer, user: &str) -> RawClient {
    let mut c = RawClient::new(server.target());
    assert_eq!(c.register(user, PASSWORD), AuthServer::Registered);
    assert!(matches!(c.login(user, PASSWORD), AuthServer::Ok { .. }));
    c
}

fn token(c: &RawClient) -> gc_protocol::SessionToken {
    c.token.clone().unwrap()
}

#[test]
fn a_new_client_gets_the_newest_200_then_everything_after() {
    let server = TestServer::start_with(|c| {
        c.rate_burst = 10_000;
        c.rate_per_sec = 10_000.0;
    });
    let writer = logged_in(&server, "writer");
    let frames: Vec<_> = (1..=250)
        .map(|i| SendRequest::Msg {
            token: token(&writer),
            client_msg_id: gc_protocol::ClientMsgId::new(format!("m{i}")).unwrap(),
            body: format!("message {i}").into_bytes(),
            room: None,
        })
        .collect();
    let replies = writer.request(&frames, 250);
    assert!(replies.iter().all(|r| matches!(r, SendReply::Thx { .. })));
    let fresh = logged_in(&server, "fresh");
    writer.send("after login");
    let got = fresh.receive(201);
    let ids: Vec<u64> = got.iter().map(|r| r.id).collect();
    assert_eq!(ids, (51..=251).collect::<Vec<_>>());
    assert!(
        fresh
            .receive_more(std::time::Duration::from_millis(300))
            .is_empty()
    );
    // Older records come through History, ascending, newest `limit` below `before-id`.
    let page = fresh.request(
        &[SendRequest::History {
            token: token(&fresh),
            before_id: 51,
            limit: 3,
            room: None,
        }],
        4,
    );
    let ids: Vec<u64> = page
        .iter()
        .filter_map(|r| match r {
            SendReply::Rec(r) => Some(r.id),
            _ => None,
        })
        .collect();
    assert_eq!(ids, [48, 49, 50]);
    assert_eq!(page[3], SendReply::End);
    // limit 0: just End.
    let empty = fresh.request(
        &[SendRequest::History {
            token: token(&fresh),
            before_id: 0,
            limit: 0,
            room: None,
        }],
        1,
    );
    assert_eq!(empty, [SendReply::End]);
}

#[test]
fn large_history_pages_and_join_deliveries_arrive_whole_and_in_order() {
    // Records of 4,000 bytes: a join delivery of 200 and a page of 300 take many of the
    // bounded pieces the server writes them in (issue #16).
    let server = TestServer::start_with(|c| {
        c.rate_burst = 10_000;
        c.rate_per_sec = 10_000.0;
    });
    let writer = logged_in(&server, "writer");
    let body = |i: u32| format!("{i:05}{}", "é".repeat(1_995)).into_bytes();
    let frames: Vec<_> = (1..=320)
        .map(|i| SendRequest::Msg {
            token: token(&writer),
            client_msg_id: gc_protocol::ClientMsgId::new(format!("m{i}")).unwrap(),
            body: body(i),
            room: None,
        })
        .collect();
    for chunk in frames.chunks(40) {
        let replies = writer.request(chunk, chunk.len());
        assert!(replies.iter().all(|r| matches!(r, SendReply::Thx { .. })));
    }
    let fresh = logged_in(&server, "fresh");
    let got = fresh.receive(200);
    assert_eq!(
        got.iter().map(|r| r.id).collect::<Vec<_>>(),
        (121..=320).collect::<Vec<_>>()
    );
    assert!(got.iter().all(|r| r.body.as_bytes() == body(r.id as u32)));
    for (before_id, limit, want) in [(0, 300, 21..=320), (301, 1000, 1..=300), (20, 7, 13..=19)] {
        let n = want.clone().count();
        let page = fresh.request(
            &[SendRequest::History {
                token: token(&fresh),
                before_id,
                limit,
                room: None,
            }],
            n + 1,
        );
        let ids: Vec<u64> = page
            .iter()
            .filter_map(|r| match r {
                SendReply::Rec(r) => {
                    assert_eq!(r.body.as_bytes(), body(r.id as u32));
                    Some(r.id)
                }
                _ => None,
            })
            .collect();
        assert_eq!(ids, want.collect::<Vec<_>>(), "History {before_id} {limit}");
        assert_eq!(page[n], SendReply::End);
    }
}

#[test]
fn a_client_that_misses_three_heartbeats_is_dropped() {
    let server = TestServer::start();
    let watcher = logged_in(&server, "watcher");
    let hung = logged_in(&server, "hung");
    // The server adds a session before it answers the login with `Ok`.
    assert_eq!(server.sessions(), 2);
    hung.stop_answering();
    assert!(
        server.wait_sessions(|n| n == 1),
        "the hung session is dropped ({} left)",
        server.sessions()
    );
    let who = watcher.request(
        &[SendRequest::Who {
            token: token(&watcher),
            room: None,
        }],
        1,
    );
    match &who[0] {
        SendReply::Online { users, .. } => {
            assert_eq!(
                users.iter().map(|u| u.as_str()).collect::<Vec<_>>(),
                ["watcher"]
            );
        }
        other => panic!("{other:?}"),
    }
    // Its token is dead now.
    assert!(matches!(hung.send("anyone?"), SendReply::Err(ref e) if e.code == ErrorCode::Session));
}

#[test]
fn bye_ends_the_session_and_presence_changes() {
    let server = TestServer::start();
    let a = logged_in(&server, "a");
    let b = logged_in(&server, "b");
    let pv = |c: &RawClient| match &c.request(
        &[SendRequest::Who {
            token: token(c),
            room: None,
        }],
        1,
    )[0]
    {
        SendReply::Online {
            presence_version,
            users,
        } => (*presence_version, users.len()),
        other => panic!("{other:?}"),
    };
    let (before, n) = pv(&a);
    assert_eq!(n, 2);
    let bye = b.request(&[SendRequest::Bye { token: token(&b) }], 1);
    assert!(matches!(bye[0], SendReply::Thx { id: 0, .. }));
    // Ended before the reply, so a client may close its listeners as soon as it has it.
    assert_eq!(
        server.sessions(),
        1,
        "b's session ends before Bye is answered"
    );
    let (after, n) = pv(&a);
    assert_eq!(n, 1);
    assert!(after > before);
    assert!(matches!(b.send("x"), SendReply::Err(ref e) if e.code == ErrorCode::Session));
}

#[test]
fn a_gc1_session_gets_version_errors_for_rooms_and_goes_on() {
    // A session that logged in without GC/3: a room request, or a message to another room than
    // #general, is answered `Err version`, in order among the others, and stores nothing.
    let server = TestServer::start();
    let alice = logged_in(&server, "alice");
    let dev = Room::new("#dev").unwrap();
    let msg = |id: &str, body: &str, room: Option<Room>| SendRequest::Msg {
        token: token(&alice),
        client_msg_id: ClientMsgId::new(id).unwrap(),
        body: body.as_bytes().to_vec(),
        room,
    };
    let replies = alice.request(
        &[
            msg("m1", "before", None),
            SendRequest::Join {
                token: token(&alice),
                room: dev.clone(),
            },
            msg("m2", "in #dev", Some(dev.clone())),
            msg("m3", "after", Some(Room::general())),
        ],
        4,
    );
    assert!(
        matches!(replies[0], SendReply::Thx { id: 1, .. }),
        "{replies:?}"
    );
    for reply in &replies[1..3] {
        match reply {
            SendReply::Err(e) => {
                assert_eq!(e.code, ErrorCode::Version);
                assert_eq!(
                    e.text,
                    "this session logged in without rooms (GC/1); update gc-client to use them"
                );
            }
            other => panic!("{other:?}"),
        }
    }
    assert!(
        matches!(replies[3], SendReply::Thx { id: 2, .. }),
        "{replies:?}"
    );
    // History and presence of #dev too; of #general, named or not, as before.
    let replies = alice.request(
        &[
            SendRequest::History {
                token: token(&alice),
                before_id: 0,
                limit: 10,
                room: Some(dev.clone()),
            },
            SendRequest::Who {
                token: token(&alice),
                room: Some(dev),
            },
            SendRequest::Who {
                token: token(&alice),
                room: Some(Room::general()),
            },
            SendRequest::History {
                token: token(&alice),
                before_id: 0,
                limit: 10,
                room: Some(Room::general()),
            },
        ],
        6,
    );
    assert!(
        matches!(&replies[..2], [SendReply::Err(a), SendReply::Err(b)]
            if a.code == ErrorCode::Version && b.code == ErrorCode::Version),
        "{replies:?}"
    );
    assert!(
        matches!(&replies[2], SendReply::Online { users, .. } if users.len() == 1),
        "{replies:?}"
    );
    let history: Vec<_> = replies[3..5]
        .iter()
        .map(|r| match r {
            SendReply::Rec(r) => r.body.as_str(),
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(history, ["before", "after"]);
    assert_eq!(replies[5], SendReply::End);

    // The session still works: messages are stored and delivered, only #general's.
    assert!(matches!(
        alice.send("still here"),
        SendReply::Thx { id: 3, .. }
    ));
    let got: Vec<_> = alice.receive(3).into_iter().map(|r| r.body).collect();
    assert_eq!(got, ["before", "after", "still here"]);
    assert_eq!(server.stored_lines().len(), 3);
    assert_eq!(server.sessions(), 1);
}

#[test]
fn deliveries_go_on_when_the_client_closes_each_delivery_connection() {
    // The server leaves a delivery's `Thx` to be read at the next cycle when its kept connection
    // is in steady use. A client that closes the connection after each `Thx` must still get every
    // message at once, not a heartbeat interval later (10 s here), and the session must not
    // count anything as a missed heartbeat.
    gc_tests::capture_logs();
    let server = TestServer::start_with(|c| {
        c.rate_burst = 100;
        c.rate_per_sec = 100.0;
        c.heartbeat_interval = Duration::from_secs(10);
    });
    let writer = logged_in(&server, "writer");
    let closer = logged_in(&server, "closer");
    closer.close_each_delivery();
    for i in 1..=10 {
        let reply = writer.send(&format!("message {i}"));
        assert!(matches!(reply, SendReply::Thx { .. }), "{reply:?}");
        let got = closer.receive_within(1, Duration::from_secs(5));
        assert_eq!(got[0].body, format!("message {i}"));
    }
    assert_eq!(server.sessions(), 2);
    let logs = gc_tests::captured_logs();
    let missed = missed_heartbeats(&logs, "closer@");
    assert!(missed.is_empty(), "{missed:#?}");
}

#[test]
fn an_idle_delivery_connection_is_closed_and_the_next_delivery_opens_a_fresh_one() {
    // A kept TLS connection costs the server some 10 KB; one that carried nothing for the
    // server's idle-timeout is closed, as on the sending port, and the next message goes out on a
    // fresh one at once, with no heartbeat missed.
    gc_tests::capture_logs();
    let server = TestServer::start_with(|c| {
        c.io_timeout = Duration::from_millis(500);
        c.idle_timeout = Duration::from_secs(1);
    });
    let writer = logged_in(&server, "quietwriter");
    let reader = logged_in(&server, "quietreader");
    assert!(matches!(writer.send("first"), SendReply::Thx { .. }));
    assert_eq!(reader.receive(1)[0].body, "first");
    assert_eq!(reader.delivery_connections(), 1);
    assert!(
        reader.wait_open_deliveries(0, Duration::from_secs(10)),
        "the idle delivery connection is still open"
    );
    assert!(matches!(writer.send("second"), SendReply::Thx { .. }));
    let got = reader.receive_within(1, Duration::from_secs(5));
    assert_eq!(got[0].body, "second");
    assert_eq!(reader.delivery_connections(), 2);
    assert_eq!(server.sessions(), 2);
    let logs = gc_tests::captured_logs();
    let missed = missed_heartbeats(&logs, "quiet");
    assert!(missed.is_empty(), "{missed:#?}");
}

/// The "missed heartbeat" lines of `logs` that name `who`: the captured log is the whole test
/// binary's, so only the sessions of the test that asks count.
fn missed_heartbeats<'a>(logs: &'a str, who: &str) -> Vec<&'a str> {
    logs.lines()
        .filter(|l| l.contains("missed heartbeat") && l.contains(who))
        .collect()
}
