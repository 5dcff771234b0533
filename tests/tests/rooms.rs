//! Rooms, direct conversations and their authorization (GC/3) over real sessions: who receives
//! what, who may do what, and what a refusal says.

use std::time::Duration;

use gc_protocol::{
    AuthServer, ClientMsgId, ErrorCode, ListedKind, ListedRole, Record, Room, RoomRole, SendReply,
    SendRequest, Username, Visibility,
};
use gc_tests::{PASSWORD, RawClient, TestServer};

/// Long enough for a delivery that is not coming to have come.
const QUIET: Duration = Duration::from_millis(400);

fn server() -> TestServer {
    TestServer::start_with(|c| {
        c.rate_burst = 10_000;
        c.rate_per_sec = 10_000.0;
    })
}

/// A GC/3 session of a new account.
fn member(server: &TestServer, user: &str) -> RawClient {
    let mut c = RawClient::new(server.target());
    c.speak_rooms();
    assert_eq!(c.register(user, PASSWORD), AuthServer::Registered);
    assert!(matches!(c.login(user, PASSWORD), AuthServer::Ok { .. }));
    c
}

fn room(name: &str) -> Room {
    Room::new(name).unwrap()
}

fn user(name: &str) -> Username {
    Username::new(name).unwrap()
}

/// Sends one request and returns its one reply.
fn ask(c: &RawClient, request: SendRequest) -> SendReply {
    c.request(&[request], 1).remove(0)
}

fn msg(c: &RawClient, room: Option<&Room>, text: &str) -> SendReply {
    ask(
        c,
        SendRequest::Msg {
            token: c.token.clone().unwrap(),
            client_msg_id: ClientMsgId::random().unwrap(),
            body: text.as_bytes().to_vec(),
            room: room.cloned(),
        },
    )
}

fn create(c: &RawClient, name: &Room, visibility: Visibility) -> SendReply {
    ask(
        c,
        SendRequest::Create {
            token: c.token.clone().unwrap(),
            room: name.clone(),
            visibility,
            topic: "a topic".into(),
        },
    )
}

fn join(c: &RawClient, name: &Room) -> SendReply {
    ask(
        c,
        SendRequest::Join {
            token: c.token.clone().unwrap(),
            room: name.clone(),
        },
    )
}

/// Asserts an `Err` with `code` whose text contains `words`.
#[track_caller]
fn refused(reply: SendReply, code: ErrorCode, words: &str) {
    match reply {
        SendReply::Err(e) => {
            assert_eq!(e.code, code, "{}", e.text);
            assert!(e.text.contains(words), "{:?} lacks {words:?}", e.text);
        }
        other => panic!("expected Err {code}, got {other:?}"),
    }
}

#[track_caller]
fn stored(reply: SendReply) -> u64 {
    match reply {
        SendReply::Thx { id, .. } if id > 0 => id,
        other => panic!("expected Thx, got {other:?}"),
    }
}

fn bodies(records: &[Record]) -> Vec<(String, String)> {
    records
        .iter()
        .map(|r| (r.room.to_string(), r.body.clone()))
        .collect()
}

/// Everything that arrives until it is quiet.
fn drain(c: &RawClient) -> Vec<Record> {
    c.receive_more(QUIET)
}

#[test]
fn records_reach_exactly_the_members_of_their_room_once_and_in_order() {
    let server = server();
    let alice = member(&server, "alice");
    let bob = member(&server, "bob");
    let carol = member(&server, "carol");
    let dev = room("#dev");
    stored(create(&alice, &dev, Visibility::Public));
    stored(msg(&carol, None, "lunch?"));
    // bob has it: his session has looked past the creation, which was not his to see.
    assert_eq!(bob.receive(1)[0].body, "lunch?");
    stored(join(&bob, &dev));
    stored(msg(&alice, Some(&dev), "build is red"));
    stored(msg(&bob, Some(&dev), "fixed"));

    let all = [
        ("#dev".to_owned(), "alice created #dev (public)".to_owned()),
        ("#general".into(), "lunch?".into()),
        ("#dev".into(), "bob joined".into()),
        ("#dev".into(), "build is red".into()),
        ("#dev".into(), "fixed".into()),
    ];
    for (c, want) in [(&alice, &all[..]), (&bob, &all[2..])] {
        let got = c.receive(want.len());
        assert_eq!(bodies(&got), want);
        assert!(got.windows(2).all(|w| w[0].id < w[1].id), "{got:?}");
        assert!(drain(c).is_empty(), "nothing twice");
    }
    // carol is not in #dev: she gets #general alone.
    let got = carol.receive(1);
    assert_eq!(bodies(&got), [("#general".to_owned(), "lunch?".to_owned())]);
    assert!(drain(&carol).is_empty());
    // Nor can she read or post there.
    refused(
        msg(&carol, Some(&dev), "hi"),
        ErrorCode::Forbidden,
        "/join #dev",
    );
    refused(
        ask(
            &carol,
            SendRequest::History {
                token: carol.token.clone().unwrap(),
                before_id: 0,
                limit: 10,
                room: Some(dev.clone()),
            },
        ),
        ErrorCode::Forbidden,
        "not in #dev",
    );
}

#[test]
fn a_private_room_does_not_exist_for_outsiders_until_they_are_invited() {
    let server = server();
    let alice = member(&server, "alice");
    let carol = member(&server, "carol");
    let secret = room("#secret");
    stored(create(&alice, &secret, Visibility::Private));
    stored(msg(&alice, Some(&secret), "the plan"));

    // Every question of an outsider gets the answer an unknown room gets.
    let unknown = room("#nothing");
    for r in [&secret, &unknown] {
        refused(join(&carol, r), ErrorCode::NoRoom, "no room");
        refused(msg(&carol, Some(r), "x"), ErrorCode::NoRoom, "no room");
        refused(
            ask(
                &carol,
                SendRequest::Who {
                    token: carol.token.clone().unwrap(),
                    room: Some(r.clone()),
                },
            ),
            ErrorCode::NoRoom,
            "no room",
        );
    }
    let listed = rooms(&carol);
    assert!(!listed.iter().any(|(r, ..)| *r == secret), "{listed:?}");
    // Creating it anyway says the name is taken, and nothing more.
    refused(
        create(&carol, &secret, Visibility::Public),
        ErrorCode::Exists,
        "taken",
    );

    // Invited, carol sees it, joins, and gets what is said from then on.
    stored(ask(
        &alice,
        SendRequest::Invite {
            token: alice.token.clone().unwrap(),
            room: secret.clone(),
            username: user("carol"),
        },
    ));
    let listed = rooms(&carol);
    assert!(
        listed.iter().any(|(r, kind, role, _)| *r == secret
            && *kind == ListedKind::Private
            && *role == ListedRole::Invited),
        "{listed:?}"
    );
    stored(join(&carol, &secret));
    stored(msg(&alice, Some(&secret), "welcome"));
    let got = carol.receive(2);
    assert_eq!(
        bodies(&got),
        [
            ("#secret".to_owned(), "carol joined".to_owned()),
            ("#secret".into(), "welcome".into())
        ]
    );
    // Its history before she joined is hers to read now.
    let page = alice.request(
        &[SendRequest::History {
            token: carol.token.clone().unwrap(),
            before_id: 0,
            limit: 10,
            room: Some(secret.clone()),
        }],
        1,
    );
    // (asked with carol's token from alice's address: refused, the token is not this address's)
    refused(page[0].clone(), ErrorCode::Session, "log in again");
    let history = carol.request(
        &[SendRequest::History {
            token: carol.token.clone().unwrap(),
            before_id: 0,
            limit: 10,
            room: Some(secret.clone()),
        }],
        6,
    );
    let texts: Vec<_> = history
        .iter()
        .filter_map(|r| match r {
            SendReply::Rec(r) => Some(r.body.as_str()),
            _ => None,
        })
        .collect();
    assert_eq!(
        texts,
        [
            "alice created #secret (private)",
            "the plan",
            "alice invited carol",
            "carol joined",
            "welcome"
        ]
    );
}

/// `Rooms` as (room, kind, role, members).
fn rooms(c: &RawClient) -> Vec<(Room, ListedKind, ListedRole, u32)> {
    let mut conn = c.connect(c.server.send);
    let mut bytes = Vec::new();
    gc_protocol::Frame::encode(
        &SendRequest::Rooms {
            token: c.token.clone().unwrap(),
        },
        &mut bytes,
    );
    conn.write_all(&bytes, deadline()).unwrap();
    let mut out = Vec::new();
    loop {
        match conn.read::<SendReply>(deadline()).unwrap() {
            SendReply::Room {
                room,
                kind,
                role,
                members,
                ..
            } => out.push((room, kind, role, members)),
            SendReply::End => return out,
            other => panic!("{other:?}"),
        }
    }
}

fn deadline() -> std::time::Instant {
    std::time::Instant::now() + Duration::from_secs(5)
}

#[test]
fn moderators_act_downwards_only_and_mutes_and_bans_hold() {
    let server = server();
    let alice = member(&server, "alice");
    let bob = member(&server, "bob");
    let mallory = member(&server, "mallory");
    let dev = room("#dev");
    stored(create(&alice, &dev, Visibility::Public));
    stored(join(&bob, &dev));
    stored(join(&mallory, &dev));
    let token = |c: &RawClient| c.token.clone().unwrap();

    // A member cannot kick anyone, nor a moderator the owner.
    let kick = |by: &RawClient, who: &str| {
        ask(
            by,
            SendRequest::Kick {
                token: token(by),
                room: dev.clone(),
                username: user(who),
                reason: "out".into(),
            },
        )
    };
    refused(
        kick(&mallory, "bob"),
        ErrorCode::Forbidden,
        "only a moderator",
    );
    stored(ask(
        &alice,
        SendRequest::Role {
            token: token(&alice),
            room: dev.clone(),
            username: user("bob"),
            role: RoomRole::Moderator,
        },
    ));
    refused(kick(&bob, "alice"), ErrorCode::Forbidden, "ranks as high");
    refused(kick(&bob, "bob"), ErrorCode::Forbidden, "yourself");
    refused(kick(&bob, "nobody"), ErrorCode::UnknownUser, "no account");

    // A mute holds until lifted.
    stored(ask(
        &bob,
        SendRequest::Mute {
            token: token(&bob),
            room: dev.clone(),
            username: user("mallory"),
            seconds: 600,
            reason: "calm down".into(),
        },
    ));
    refused(
        msg(&mallory, Some(&dev), "!!!"),
        ErrorCode::Forbidden,
        "muted in #dev for another 10 min",
    );
    stored(msg(&mallory, None, "#general is fine"));
    stored(ask(
        &bob,
        SendRequest::Mute {
            token: token(&bob),
            room: dev.clone(),
            username: user("mallory"),
            seconds: 0,
            reason: String::new(),
        },
    ));
    stored(msg(&mallory, Some(&dev), "sorry"));

    // A ban takes her out, keeps her out, and she gets nothing of #dev any more.
    stored(ask(
        &bob,
        SendRequest::Ban {
            token: token(&bob),
            room: dev.clone(),
            username: user("mallory"),
            reason: "spam".into(),
        },
    ));
    // She is told, by the notice itself, and gets nothing of #dev after it.
    let told = mallory.receive_more(QUIET);
    assert_eq!(
        told.last().map(|r| r.body.as_str()),
        Some("mallory was banned by bob: spam"),
        "{told:?}"
    );
    refused(
        msg(&mallory, Some(&dev), "x"),
        ErrorCode::Forbidden,
        "banned from #dev",
    );
    refused(
        join(&mallory, &dev),
        ErrorCode::Forbidden,
        "banned from #dev",
    );
    stored(msg(&alice, Some(&dev), "after the ban"));
    assert!(
        drain(&mallory).iter().all(|r| r.room != dev),
        "a banned user gets nothing of the room"
    );
    let alice_saw = drain(&alice);
    assert!(
        alice_saw
            .iter()
            .any(|r| r.body == "mallory was banned by bob: spam"),
        "{alice_saw:?}"
    );
    stored(ask(
        &bob,
        SendRequest::Unban {
            token: token(&bob),
            room: dev.clone(),
            username: user("mallory"),
        },
    ));
    stored(join(&mallory, &dev));

    // The last owner cannot leave while others are in; #general cannot be left at all.
    let part = |c: &RawClient, r: &Room| {
        ask(
            c,
            SendRequest::Part {
                token: token(c),
                room: r.clone(),
            },
        )
    };
    refused(part(&alice, &dev), ErrorCode::Forbidden, "last owner");
    refused(
        part(&alice, &Room::general()),
        ErrorCode::Forbidden,
        "cannot be left",
    );
    stored(part(&mallory, &dev));
}

#[test]
fn a_direct_message_reaches_its_two_accounts_only() {
    let server = server();
    let alice = member(&server, "alice");
    let bob = member(&server, "Bob");
    let carol = member(&server, "carol");
    let dm = Room::direct(&user("alice"), &user("bob")).unwrap();
    stored(msg(&alice, Some(&dm), "psst"));
    let got = bob.receive(1);
    assert_eq!(bodies(&got), [("@alice+bob".to_owned(), "psst".to_owned())]);
    stored(msg(&bob, Some(&dm), "yes?"));
    assert_eq!(alice.receive(2).len(), 2);
    assert!(drain(&carol).is_empty());
    refused(
        msg(&carol, Some(&dm), "me too"),
        ErrorCode::NoRoom,
        "no room",
    );
    let to_nobody = Room::direct(&user("alice"), &user("nobody")).unwrap();
    refused(
        msg(&alice, Some(&to_nobody), "hello?"),
        ErrorCode::UnknownUser,
        "nobody",
    );
    let listed = rooms(&bob);
    assert!(
        listed
            .iter()
            .any(|(r, kind, ..)| *r == dm && *kind == ListedKind::Direct),
        "{listed:?}"
    );
    assert!(!rooms(&carol).iter().any(|(r, ..)| *r == dm));
}

#[test]
fn a_gc1_session_of_a_member_is_shown_general_only() {
    let server = server();
    let alice = member(&server, "alice");
    let dev = room("#dev");
    stored(create(&alice, &dev, Visibility::Public));
    // alice's second device speaks GC/1 only.
    let mut old = RawClient::new(server.target());
    assert!(matches!(
        old.login("alice", PASSWORD),
        AuthServer::Ok { .. }
    ));
    stored(msg(&alice, Some(&dev), "in dev"));
    stored(msg(&alice, None, "in general"));
    let got = old.receive(1);
    assert_eq!(got[0].body, "in general");
    assert!(drain(&old).is_empty());
}

#[test]
fn room_creation_is_limited_per_account_and_can_be_kept_to_admins() {
    let server = TestServer::start_with(|c| {
        c.rate_burst = 10_000;
        c.rate_per_sec = 10_000.0;
        c.max_rooms_per_user = 2;
    });
    let alice = member(&server, "alice");
    stored(create(&alice, &room("#one"), Visibility::Public));
    stored(create(&alice, &room("#two"), Visibility::Private));
    refused(
        create(&alice, &room("#three"), Visibility::Public),
        ErrorCode::Forbidden,
        "you own 2 rooms",
    );
    refused(
        create(&alice, &Room::general(), Visibility::Public),
        ErrorCode::Exists,
        "taken",
    );
    let dm = Room::direct(&user("alice"), &user("bob")).unwrap();
    refused(
        create(&alice, &dm, Visibility::Public),
        ErrorCode::Forbidden,
        "/msg",
    );
    // A name that breaks the rules never gets past the frame parser.
    let mut conn = alice.connect(alice.server.send);
    let line = format!(
        "Create {} #Bad public -\n",
        alice.token.clone().unwrap().as_str()
    );
    conn.write_all(line.as_bytes(), deadline()).unwrap();
    refused(conn.read(deadline()).unwrap(), ErrorCode::Malformed, "room");

    let admins_only = TestServer::start_with(|c| {
        c.room_creation = gc_server::config::RoomCreation::Admins;
    });
    let bob = member(&admins_only, "bob");
    refused(
        create(&bob, &room("#mine"), Visibility::Public),
        ErrorCode::Forbidden,
        "only its admins",
    );
}

#[test]
fn every_member_gets_every_record_of_its_rooms_once_across_a_restart() {
    let mut server = server();
    let alice = member(&server, "alice");
    let mut bob = member(&server, "bob");
    let dev = room("#dev");
    stored(create(&alice, &dev, Visibility::Public));
    stored(join(&bob, &dev));
    stored(msg(&alice, Some(&dev), "one"));
    let before: Vec<u64> = bob.receive(2).iter().map(|r| r.id).collect();
    // bob's client is away while more is said in his rooms and another.
    bob.stop_answering();
    let carol = member(&server, "carol");
    stored(create(&carol, &room("#other"), Visibility::Public));
    stored(msg(&alice, Some(&dev), "two"));
    stored(msg(&carol, Some(&room("#other")), "not for bob"));
    stored(msg(&alice, None, "three"));
    server.restart();
    // Back with his cursor: the rest of his rooms, once, in order; nothing of #other.
    bob.answer_again();
    assert!(matches!(bob.login("bob", PASSWORD), AuthServer::Ok { .. }));
    let after = bob.receive(2);
    assert_eq!(
        bodies(&after),
        [
            ("#dev".to_owned(), "two".to_owned()),
            ("#general".into(), "three".into())
        ]
    );
    assert!(after[0].id > *before.last().unwrap());
    assert!(drain(&bob).is_empty());
}

#[test]
fn an_existing_single_room_data_dir_is_general() {
    // A data dir from before rooms: database.db alone, with the original prototype's line.
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("database.db"),
        "1;1640995200.123;alice;Hello, world!\n",
    )
    .unwrap();
    let mut server = TestServer::start_with(|c| c.data_dir = dir.path().to_owned());
    let bob = member(&server, "bob");
    let got = bob.receive(1);
    assert_eq!(
        bodies(&got),
        [("#general".to_owned(), "Hello, world!".to_owned())]
    );
    let dev = room("#dev");
    stored(create(&bob, &dev, Visibility::Public));
    stored(msg(&bob, None, "still here"));
    server.stop();
    // database.db is still #general's, line for line; #dev is beside it.
    let general = std::fs::read_to_string(dir.path().join("database.db")).unwrap();
    assert!(general.starts_with("1;1640995200.123;alice;Hello, world!\n"));
    assert!(general.ends_with(";bob;still here\n"), "{general}");
    assert!(dir.path().join("rooms/dev.db").exists());
    let check = gc_store::check(dir.path()).unwrap();
    assert!(check.is_ok() && check.files.len() == 2, "{check:?}");
}
