//! GC/4 over real sessions: the password change, the away state, and the server telling its
//! sessions that it stops; and that sessions of older versions see none of it.

use std::time::{Duration, Instant};

use gc_protocol::scram::{ClientKeys, derive_verifier, passwd_message, passwd_proof, random_salt};
use gc_protocol::{AuthServer, ErrorCode, SendReply, SendRequest, Username};
use gc_tests::{PASSWORD, RawClient, TestServer};

const NEW_PASSWORD: &str = "battery-staple-7";

/// A session of a new account, speaking GC/4 (`gc4`) or GC/3.
fn session(server: &TestServer, user: &str, gc4: bool) -> RawClient {
    let mut c = RawClient::new(server.target());
    if gc4 {
        c.speak_gc4();
    } else {
        c.speak_rooms();
    }
    assert_eq!(c.register(user, PASSWORD), AuthServer::Registered);
    assert!(matches!(c.login(user, PASSWORD), AuthServer::Ok { .. }));
    c
}

fn token(c: &RawClient) -> gc_protocol::SessionToken {
    c.token.clone().unwrap()
}

#[track_caller]
fn refused(reply: &SendReply, code: ErrorCode, words: &str) {
    match reply {
        SendReply::Err(e) => {
            assert_eq!(e.code, code, "{}", e.text);
            assert!(e.text.contains(words), "{:?} lacks {words:?}", e.text);
        }
        other => panic!("expected Err {code}, got {other:?}"),
    }
}

#[track_caller]
fn thx0(reply: &SendReply) {
    assert!(
        matches!(reply, SendReply::Thx { id: 0, .. }),
        "expected Thx 0, got {reply:?}"
    );
}

/// `Challenge`, then `Passwd` with a verifier of `new` proved with `current`: the replies.
fn change_password(c: &RawClient, user: &str, current: &str, new: &str) -> SendReply {
    let challenge = c.request(&[SendRequest::Challenge { token: token(c) }], 1);
    let SendReply::Challenge {
        nonce,
        salt,
        iterations,
    } = &challenge[0]
    else {
        panic!("expected Challenge, got {challenge:?}");
    };
    let keys = ClientKeys::derive(current, salt, *iterations);
    let verifier = derive_verifier(new, &random_salt().unwrap(), 4096);
    let key = Username::new(user).unwrap().key();
    let proof = passwd_proof(&keys, &passwd_message(&key, nonce, &verifier));
    let passwd = SendRequest::Passwd {
        token: token(c),
        salt: verifier.salt.clone(),
        iterations: verifier.iterations,
        stored_key: verifier.stored_key.to_vec(),
        server_key: verifier.server_key.to_vec(),
        proof: proof.to_vec(),
    };
    c.request(&[passwd], 1).remove(0)
}

fn logs_in(server: &TestServer, user: &str, password: &str) -> bool {
    let mut c = RawClient::new(server.target());
    c.speak_gc4();
    matches!(c.login(user, password), AuthServer::Ok { .. })
}

#[test]
fn a_password_change_needs_the_current_password_and_takes_at_the_next_login() {
    let server = TestServer::start();
    let alice = session(&server, "Alice", true);
    // The token alone does not do: a proof made with a guess is refused, and nothing changes.
    refused(
        &change_password(&alice, "Alice", "a-wrong-guess", NEW_PASSWORD),
        ErrorCode::Auth,
        "current password is wrong",
    );
    assert!(logs_in(&server, "alice", PASSWORD));
    // With the current password (the name in any case), it is changed.
    thx0(&change_password(&alice, "alice", PASSWORD, NEW_PASSWORD));
    assert!(!logs_in(&server, "alice", PASSWORD), "the old one is gone");
    assert!(logs_in(&server, "alice", NEW_PASSWORD));
    // The session that changed it keeps running.
    assert!(matches!(alice.send("still here"), SendReply::Thx { .. }));
    // The nonce was spent: a `Passwd` without a fresh `Challenge` is refused.
    let again = SendRequest::Passwd {
        token: token(&alice),
        salt: vec![1; 16],
        iterations: 4096,
        stored_key: vec![2; 32],
        server_key: vec![3; 32],
        proof: vec![4; 32],
    };
    refused(
        &alice.request(&[again], 1)[0],
        ErrorCode::Malformed,
        "start again",
    );
    assert!(logs_in(&server, "alice", NEW_PASSWORD));
}

#[test]
fn password_guesses_through_a_session_are_throttled_like_logins() {
    let server = TestServer::start_with(|c| c.max_login_failures = 2);
    let alice = session(&server, "alice", true);
    let mut codes = Vec::new();
    for _ in 0..4 {
        match change_password(&alice, "alice", "guess-guess", NEW_PASSWORD) {
            SendReply::Err(e) => codes.push(e.code),
            other => panic!("{other:?}"),
        }
    }
    assert!(codes.contains(&ErrorCode::Throttled), "{codes:?}");
}

#[test]
fn a_session_of_an_older_version_is_told_to_update() {
    let server = TestServer::start();
    let bob = session(&server, "bob", false);
    for request in [
        SendRequest::Challenge { token: token(&bob) },
        SendRequest::Away {
            token: token(&bob),
            message: "lunch".into(),
        },
        SendRequest::Back { token: token(&bob) },
    ] {
        refused(&bob.request(&[request], 1)[0], ErrorCode::Version, "GC/4");
    }
}

#[test]
fn file_transfer_frames_are_refused_to_a_session_without_gc5() {
    let server = TestServer::start();
    let alice = session(&server, "alice", true);
    let hash: gc_protocol::ContentHash = gc_protocol::ContentHash::of(b"content");
    let offer = SendRequest::Offer {
        token: token(&alice),
        room: gc_protocol::Room::general(),
        hash,
        size: 7,
        name: "notes.txt".into(),
        client_msg_id: gc_protocol::ClientMsgId::new("f1").unwrap(),
    };
    let fetch = SendRequest::Fetch {
        token: token(&alice),
        hash,
        offset: 0,
    };
    let replies = alice.request(&[offer, fetch], 2);
    for reply in &replies {
        refused(reply, ErrorCode::Version, "did not log in with GC/5");
    }
    // A `Chunk` header is followed by raw bytes that are not frames: refused, then closed, so
    // they are never read as requests.
    let mut conn = alice.connect(alice.server.send);
    let mut bytes = Vec::new();
    gc_protocol::Frame::encode(
        &SendRequest::Chunk {
            token: token(&alice),
            hash,
            offset: 0,
            length: 7,
        },
        &mut bytes,
    );
    bytes.extend_from_slice(b"Bye x\n");
    let soon = || Instant::now() + Duration::from_secs(5);
    conn.write_all(&bytes, soon()).unwrap();
    let reply: SendReply = conn.read(soon()).unwrap();
    refused(&reply, ErrorCode::Version, "GC/5");
    assert!(
        conn.read::<SendReply>(soon()).is_err(),
        "closed after the refusal"
    );
    // The session itself goes on.
    assert!(matches!(alice.send("still here"), SendReply::Thx { .. }));
}

/// `Who` of a GC/4 session: the `Online` list and each away user's message.
fn who(c: &RawClient) -> (Vec<String>, Vec<(String, String)>) {
    let soon = || Instant::now() + Duration::from_secs(5);
    let mut conn = c.connect(c.server.send);
    let mut bytes = Vec::new();
    gc_protocol::Frame::encode(
        &SendRequest::Who {
            token: token(c),
            room: None,
        },
        &mut bytes,
    );
    conn.write_all(&bytes, soon()).unwrap();
    let SendReply::Online { users, .. } = conn.read(soon()).unwrap() else {
        panic!("expected Online");
    };
    let online = users.iter().map(|u| u.to_string()).collect();
    let mut away = Vec::new();
    loop {
        match conn.read::<SendReply>(soon()) {
            Ok(SendReply::Away { username, message }) => away.push((username.to_string(), message)),
            Ok(SendReply::End) => break,
            other => panic!("{other:?}"),
        }
    }
    (online, away)
}

#[test]
fn away_is_shown_to_gc4_sessions_until_back_and_older_ones_see_the_old_answer() {
    let server = TestServer::start();
    let alice = session(&server, "alice", true);
    let bob = session(&server, "bob", true);
    let carol = session(&server, "carol", false);
    thx0(
        &alice.request(
            &[SendRequest::Away {
                token: token(&alice),
                message: "at lunch".into(),
            }],
            1,
        )[0],
    );
    let (online, away) = who(&bob);
    assert_eq!(online, ["alice", "bob", "carol"]);
    assert_eq!(away, [("alice".to_owned(), "at lunch".to_owned())]);
    // A GC/3 session's `Who` is answered with `Online` alone: the next request's reply follows
    // it directly.
    let replies = carol.request(
        &[
            SendRequest::Who {
                token: token(&carol),
                room: None,
            },
            SendRequest::Bye {
                token: token(&carol),
            },
        ],
        2,
    );
    assert!(
        matches!(replies[0], SendReply::Online { .. }),
        "{replies:?}"
    );
    assert!(matches!(replies[1], SendReply::Thx { .. }), "{replies:?}");
    // Sending a message does not clear it; `Back` does.
    assert!(matches!(alice.send("back soon"), SendReply::Thx { .. }));
    assert_eq!(who(&bob).1.len(), 1);
    thx0(
        &alice.request(
            &[SendRequest::Back {
                token: token(&alice),
            }],
            1,
        )[0],
    );
    assert_eq!(who(&bob).1, []);
}

#[test]
fn a_stopping_server_tells_its_gc4_sessions_and_nobody_else_and_does_not_wait_long() {
    let mut server = TestServer::start();
    let new = session(&server, "alice", true);
    let gc3 = session(&server, "bob", false);
    let mut plain = RawClient::new(server.target());
    assert_eq!(plain.register("carol", PASSWORD), AuthServer::Registered);
    assert!(matches!(
        plain.login("carol", PASSWORD),
        AuthServer::Ok { .. }
    ));
    // A GC/4 client that hung: the shutdown does not wait for it for long.
    let hung = session(&server, "dave", true);
    hung.stop_answering();
    let started = Instant::now();
    server.stop();
    let took = started.elapsed();
    assert!(took < Duration::from_secs(3), "the shutdown took {took:?}");
    let text = new.stop_notice(Duration::from_secs(2));
    assert!(
        text.as_deref().is_some_and(|t| t.contains("stopping")),
        "{text:?}"
    );
    assert_eq!(gc3.stop_notice(Duration::from_millis(200)), None);
    assert_eq!(plain.stop_notice(Duration::from_millis(200)), None);
}
