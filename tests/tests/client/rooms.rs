//! The client library with rooms (GC/3): members of a room talk, outsiders hear nothing, the
//! cache keeps a file per room under one cursor, refusals come back with the server's text, and
//! a server older than rooms is spoken to without them.

use gc_client_core::{
    ClientError, Event, ListenPorts, NO_ROOMS, NoticeLevel, Refusal, Rejection, RoomInfo,
    RoomRequest,
};
use gc_protocol::{ErrorCode, ListedKind, ListedRole, Record, Room, Username, Visibility};
use gc_server::config::TlsMode;
use gc_tests::client::{OlderConnectPort, TestClient, cache_dir, config, register};
use gc_tests::{PASSWORD, TestServer};

fn room(name: &str) -> Room {
    Room::new(name).unwrap()
}

fn user(name: &str) -> Username {
    Username::new(name).unwrap()
}

/// A logged-in client of an account registered just now.
fn member(server: &TestServer, name: &str) -> TestClient {
    let mut c = config(server, name, PASSWORD);
    c.register = true;
    let mut client = TestClient::start(c);
    client.wait_active();
    client
}

/// Waits for the server to have done `request`; returns the notice's id.
#[track_caller]
fn done(c: &mut TestClient, request: &RoomRequest) -> u64 {
    c.wait_other(&format!("{request}"), |e| match e {
        Event::RoomDone {
            request: r,
            notice_id,
        } if r == request => Some(*notice_id),
        _ => None,
    })
}

/// Asks for `request` and waits until it is done.
#[track_caller]
fn ask(c: &mut TestClient, request: RoomRequest) -> u64 {
    c.client().room_request(request.clone()).unwrap();
    done(c, &request)
}

/// Waits for the refusal of `request`.
#[track_caller]
fn refusal_of(c: &mut TestClient, request: &RoomRequest) -> Refusal {
    c.wait_other(&format!("the refusal to {request}"), |e| match e {
        Event::Refused(r)
            if r.command == gc_client_core::control::Command::Room(request.clone()) =>
        {
            Some(r.clone())
        }
        _ => None,
    })
}

/// Waits until a record with `body` has arrived; returns every record so far.
#[track_caller]
fn wait_body(c: &mut TestClient, body: &str) -> Vec<Record> {
    let mut n = c.records.len();
    while !c.records.iter().any(|r| r.body == body) {
        n += 1;
        c.wait_records(n);
    }
    c.records.clone()
}

fn in_room(records: &[Record], r: &Room) -> Vec<String> {
    records
        .iter()
        .filter(|rec| &rec.room == r)
        .map(|rec| rec.body.clone())
        .collect()
}

fn join(r: &Room) -> RoomRequest {
    RoomRequest::Join { room: r.clone() }
}

#[test]
fn two_members_of_a_room_talk_and_an_outsider_never_gets_its_records() {
    let server = TestServer::start();
    let mut alice = member(&server, "alice");
    let mut bob = member(&server, "bob");
    let mut carol = member(&server, "carol");
    assert_eq!(alice.client().rooms_available(), Some(true));
    // GC/5 is GC/4 and GC/3 and more: rooms.
    assert_eq!(alice.client().status().version, Some("GC/5"));
    assert!(alice.others.iter().any(|e| matches!(
        e,
        Event::Version {
            version: "GC/5",
            rooms: true
        }
    )));

    let dev = room("#dev");
    ask(
        &mut alice,
        RoomRequest::Create {
            room: dev.clone(),
            visibility: Visibility::Public,
            topic: "builds".into(),
        },
    );
    let joined = ask(&mut bob, join(&dev));
    assert!(joined > 0, "a join stores its notice");
    alice.client().send_to(dev.clone(), "build is red").unwrap();
    alice.wait_acked(1);
    bob.client().send_to(dev.clone(), "fixed").unwrap();
    bob.wait_acked(1);
    // A direct conversation is opened by its first message.
    let dm = bob.client().direct_room(&user("alice")).unwrap();
    assert_eq!(dm, room("@alice+bob"));
    bob.client().send_to(dm.clone(), "psst").unwrap();
    bob.wait_acked(2);
    carol.send("the last word");

    for c in [&mut alice, &mut bob] {
        let records = wait_body(c, "the last word");
        assert_eq!(
            in_room(&records, &dev)[in_room(&records, &dev).len() - 3..],
            ["bob joined", "build is red", "fixed"]
        );
        assert_eq!(in_room(&records, &dm), ["psst"]);
        assert_eq!(in_room(&records, &Room::general()), ["the last word"]);
    }
    assert_eq!(
        in_room(&alice.records, &dev),
        [
            "alice created #dev (public)",
            "bob joined",
            "build is red",
            "fixed"
        ]
    );
    // carol's last record comes after all of #dev's and the DM's (one id sequence, delivered in
    // order): none of theirs ever reached her, and her cursor went past them all the same.
    let records = wait_body(&mut carol, "the last word");
    assert!(records.iter().all(|r| r.room.is_general()), "{records:?}");
    let last = records.last().unwrap().id;
    assert!(alice.records.iter().all(|r| r.id <= last));
    assert_eq!(carol.client().status().last_id, last);
    assert!(carol.client().cached_in(&dev, 0, 100).is_empty());

    // Who is where, and the list of rooms as each sees it.
    bob.client().who_in(dev.clone()).unwrap();
    let online = bob.wait_other("who is in #dev", |e| match e {
        Event::RoomPresence { room, users, .. } if *room == dev => Some(users.clone()),
        _ => None,
    });
    assert_eq!(online, [user("alice"), user("bob")]);
    carol.client().rooms().unwrap();
    let listed = carol.wait_other("the list of rooms", |e| match e {
        Event::RoomList(rooms) => Some(rooms.clone()),
        _ => None,
    });
    let dev_for_carol = listed.iter().find(|r| r.room == dev).unwrap();
    assert_eq!(
        (
            dev_for_carol.kind,
            dev_for_carol.role,
            dev_for_carol.members
        ),
        (ListedKind::Public, ListedRole::Outside, 2)
    );
    assert_eq!(dev_for_carol.topic, "builds");
    assert!(!listed.iter().any(|r| r.room == dm), "{listed:?}");
    bob.client().rooms().unwrap();
    let listed: Vec<RoomInfo> = bob.wait_other("bob's rooms", |e| match e {
        Event::RoomList(rooms) => Some(rooms.clone()),
        _ => None,
    });
    assert!(listed.iter().any(|r| r.room == dm && r.is_member()));
    assert!(
        listed
            .iter()
            .any(|r| r.room == dev && r.role == ListedRole::Member)
    );

    for c in [&mut alice, &mut bob, &mut carol] {
        assert_eq!(c.close(), 0);
    }
}

#[test]
fn a_joiner_reads_what_was_said_before_and_watched_rooms_follow_presence() {
    let server = TestServer::start();
    let mut alice = member(&server, "alice");
    let dev = room("#dev");
    ask(
        &mut alice,
        RoomRequest::Create {
            room: dev.clone(),
            visibility: Visibility::Public,
            topic: String::new(),
        },
    );
    for text in ["one", "two"] {
        alice.client().send_to(dev.clone(), text).unwrap();
    }
    alice.wait_acked(2);
    let mut bob = member(&server, "bob");
    ask(&mut bob, join(&dev));
    wait_body(&mut bob, "bob joined");
    bob.client().history_in(dev.clone(), 0, 50).unwrap();
    let page = bob.wait_other("the history of #dev", |e| match e {
        Event::History { room, records, .. } if *room == dev => Some(records.clone()),
        _ => None,
    });
    let bodies: Vec<&str> = page.iter().map(|r| r.body.as_str()).collect();
    assert_eq!(
        bodies,
        ["alice created #dev (public)", "one", "two", "bob joined"]
    );
    assert!(page.iter().all(|r| r.room == dev));
    // The page went to the room's cache: scrollback without asking again.
    let cached: Vec<String> = bob
        .client()
        .cached_in(&dev, 0, 50)
        .into_iter()
        .map(|r| r.body)
        .collect();
    assert_eq!(cached, bodies);

    // A watched room's online members come again at each presence change.
    alice.client().watch_presence(vec![dev.clone()]);
    let carol = member(&server, "carol");
    alice.wait_other("#dev's members after carol came", |e| match e {
        Event::RoomPresence { room, users, .. } if *room == dev && users.len() == 2 => Some(()),
        _ => None,
    });
    drop(carol);
    assert_eq!(bob.close(), 0);
    assert_eq!(alice.close(), 0);
}

#[test]
fn refusals_come_back_with_the_servers_code_and_text() {
    let server = TestServer::start();
    let mut alice = member(&server, "alice");
    let mut carol = member(&server, "carol");
    let (dev, secret) = (room("#dev"), room("#secret"));
    for (r, visibility) in [(&dev, Visibility::Public), (&secret, Visibility::Private)] {
        ask(
            &mut alice,
            RoomRequest::Create {
                room: r.clone(),
                visibility,
                topic: String::new(),
            },
        );
    }
    // A private room does not exist for an outsider.
    carol.client().join(secret.clone()).unwrap();
    let r = refusal_of(&mut carol, &join(&secret));
    assert_eq!(r.code, Some(ErrorCode::NoRoom));
    assert!(r.text.contains("no room #secret"), "{}", r.text);
    assert!(
        r.to_string()
            .starts_with("could not join #secret (no-room): "),
        "{r}"
    );
    // Creating a taken name; kicking without the rank.
    let create = RoomRequest::Create {
        room: dev.clone(),
        visibility: Visibility::Public,
        topic: String::new(),
    };
    carol.client().room_request(create.clone()).unwrap();
    assert_eq!(
        refusal_of(&mut carol, &create).code,
        Some(ErrorCode::Exists)
    );
    let kick = RoomRequest::Kick {
        room: dev.clone(),
        username: user("alice"),
        reason: String::new(),
    };
    carol.client().room_request(kick.clone()).unwrap();
    let r = refusal_of(&mut carol, &kick);
    assert_eq!(r.code, Some(ErrorCode::Forbidden));
    assert!(r.text.contains("only a moderator"), "{}", r.text);
    // A message into a room she is not in leaves the outbox with the server's word.
    let id = carol.client().send_to(dev.clone(), "hello?").unwrap();
    let rejection = carol.wait_other("the rejection", |e| match e {
        Event::Rejected(r) if r.client_msg_id == id => Some(r.clone()),
        _ => None,
    });
    let Rejection {
        room, code, text, ..
    } = rejection;
    assert_eq!((room, code), (dev.clone(), ErrorCode::Forbidden));
    assert!(text.contains("/join #dev"), "{text}");
    assert!(carol.client().outbox().is_empty());
    // What the server would refuse as malformed never leaves the client.
    let long = carol.client().topic(dev.clone(), "x".repeat(600));
    assert!(
        matches!(long, Err(ClientError::InvalidRequest(_))),
        "{long:?}"
    );
    assert!(carol.client().direct_room(&user("Carol")).is_err());
    assert_eq!(carol.close(), 0);
    assert_eq!(alice.close(), 0);
}

#[test]
fn the_cache_keeps_each_room_under_one_cursor_across_restarts() {
    let server = TestServer::start();
    let (_dir, cache) = cache_dir();
    let mut alice_cfg = config(&server, "alice", PASSWORD);
    alice_cfg.register = true;
    alice_cfg.cache_path = Some(cache.clone());
    let mut alice = TestClient::start(alice_cfg.clone());
    alice.wait_active();
    let mut bob = member(&server, "bob");
    let mut carol = member(&server, "carol");
    let (dev, other) = (room("#dev"), room("#other"));
    let dm = room("@alice+bob");
    ask(
        &mut alice,
        RoomRequest::Create {
            room: dev.clone(),
            visibility: Visibility::Public,
            topic: String::new(),
        },
    );
    ask(&mut bob, join(&dev));
    alice.client().send_to(dev.clone(), "dev 1").unwrap();
    alice.send("general 1");
    alice.client().send_to(dm.clone(), "dm 1").unwrap();
    alice.wait_acked(3);
    wait_body(&mut alice, "dm 1");
    assert_eq!(alice.close(), 0);

    // While alice is away: her rooms go on, and a room she is not in too.
    bob.client().send_to(dev.clone(), "dev 2").unwrap();
    bob.send("general 2");
    bob.client().send_to(dm.clone(), "dm 2").unwrap();
    bob.wait_acked(3);
    ask(
        &mut carol,
        RoomRequest::Create {
            room: other.clone(),
            visibility: Visibility::Public,
            topic: String::new(),
        },
    );
    carol
        .client()
        .send_to(other.clone(), "not for alice")
        .unwrap();
    carol.wait_acked(1);
    carol.send("general 3");
    carol.wait_acked(2);

    alice_cfg.register = false;
    alice_cfg.bind_ip = Some(gc_tests::client_ip());
    alice_cfg.listen_ports = ListenPorts::any();
    let mut alice = TestClient::start(alice_cfg.clone());
    // Exactly what she missed, once, in order (TestClient checks ids only ever grow).
    let got = wait_body(&mut alice, "general 3");
    let bodies: Vec<(String, String)> = got
        .iter()
        .map(|r| (r.room.to_string(), r.body.clone()))
        .collect();
    assert_eq!(
        bodies,
        [
            ("#dev".to_owned(), "dev 2".to_owned()),
            ("#general".into(), "general 2".into()),
            ("@alice+bob".into(), "dm 2".into()),
            ("#general".into(), "general 3".into()),
        ]
    );
    let held = |c: &TestClient, r: &Room| -> Vec<String> {
        c.client()
            .cached_in(r, 0, 100)
            .into_iter()
            .map(|rec| rec.body)
            .collect()
    };
    assert_eq!(
        held(&alice, &dev),
        [
            "alice created #dev (public)",
            "bob joined",
            "dev 1",
            "dev 2"
        ]
    );
    assert_eq!(
        held(&alice, &Room::general()),
        ["general 1", "general 2", "general 3"]
    );
    assert_eq!(held(&alice, &dm), ["dm 1", "dm 2"]);
    assert!(held(&alice, &other).is_empty());
    assert_eq!(
        alice.client().cached_rooms(),
        [Room::general(), dev.clone(), dm.clone()]
    );
    let cursor = alice.client().status().last_id;
    assert_eq!(cursor, got.last().unwrap().id);
    assert_eq!(alice.close(), 0);

    // The files mirror the server's: #general in cdatabase.db, each other room beside it.
    let rooms_dir = cache.parent().unwrap().join("rooms");
    for file in ["dev.db", "@alice+bob.db"] {
        assert!(rooms_dir.join(file).is_file(), "{file}");
    }
    assert!(!rooms_dir.join("other.db").exists());

    // Once more, with nothing new: nothing comes twice.
    alice_cfg.bind_ip = Some(gc_tests::client_ip());
    let mut alice = TestClient::start(alice_cfg);
    alice.wait_active();
    alice.send("back");
    let got = wait_body(&mut alice, "back");
    assert_eq!(got.len(), 1, "{got:?}");
    assert!(got[0].id > cursor);
    assert_eq!(alice.close(), 0);
    bob.close();
    carol.close();
}

/// Against a server older than rooms, over TLS and plain: the client asks GC/4 and GC/3, is told
/// `Err version` each time, asks again with the old version on a fresh connection, logs in
/// without rooms, says so once, and refuses rooms itself.
#[test]
fn an_older_server_is_spoken_to_without_rooms() {
    for tls in [true, false] {
        let server = if tls {
            TestServer::start()
        } else {
            TestServer::start_with(|c| c.tls = TlsMode::Off)
        };
        register(&server, "alice", PASSWORD);
        let older = OlderConnectPort::start(&server);
        let mut cfg = config(&server, "alice", PASSWORD);
        cfg.server_ports.connect = older.port;
        let mut alice = TestClient::start(cfg);
        // Queued before the client knows: given up once the session turns out to have none.
        let early = alice.client().send_to(room("#dev"), "too early");
        alice.wait_active();
        let old = if tls { "GC/2" } else { "GC/1" };
        assert_eq!(older.asked(), ["GC/5", "GC/4", "GC/3", old], "tls {tls}");
        assert_eq!(alice.client().rooms_available(), Some(false));
        assert!(alice.others.iter().any(|e| matches!(
            e,
            Event::Version { version, rooms: false } if *version == old
        )));
        let told: Vec<_> = alice
            .notices
            .iter()
            .filter(|(level, text)| *level == NoticeLevel::Info && text == NO_ROOMS)
            .collect();
        assert_eq!(told.len(), 1, "{:?}", alice.notices);
        if let Ok(id) = early {
            let r = alice.wait_other("the early message's rejection", |e| match e {
                Event::Rejected(r) if r.client_msg_id == id => Some(r.clone()),
                _ => None,
            });
            assert_eq!(r.code, ErrorCode::Version);
        }
        // #general works as it always did.
        alice.send("still here");
        wait_body(&mut alice, "still here");
        assert!(matches!(
            alice.client().join(room("#dev")),
            Err(ClientError::NoRooms)
        ));
        assert!(matches!(
            alice.client().send_to(room("@alice+bob"), "x"),
            Err(ClientError::NoRooms)
        ));
        assert!(matches!(alice.client().rooms(), Err(ClientError::NoRooms)));
        alice.client().history(0, 10).unwrap();
        alice.wait_other("#general's history", |e| match e {
            Event::History { room, .. } if room.is_general() => Some(()),
            _ => None,
        });
        // Logging in again says nothing more.
        alice.client().reconnect();
        alice.wait_active();
        let told = alice.notices.iter().filter(|(_, t)| t == NO_ROOMS).count();
        assert_eq!(told, 1, "tls {tls}: {:?}", alice.notices);
        assert_eq!(alice.close(), 0);
    }
}
