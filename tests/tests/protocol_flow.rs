//! The GC/1 exchanges driven frame by frame against a real server.

use gc_protocol::{AuthServer, ConnectReply, ErrorCode, Registration, SendReply, SendRequest};
use gc_tests::{RawClient, TestServer};

#[test]
fn register_login_send_and_receive() {
    let server = TestServer::start();
    let mut alice = RawClient::new(server.addrs());
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

    let mut bob = RawClient::new(server.addrs());
    assert_eq!(bob.register("bob", "pw-bob"), AuthServer::Registered);
    assert!(matches!(bob.login("bob", "pw-bob"), AuthServer::Ok { .. }));

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
    let mut c = RawClient::new(server.addrs());
    assert_eq!(c.register("carol", "right"), AuthServer::Registered);
    match c.login("carol", "wrong") {
        AuthServer::Err(e) => assert_eq!(e.code, ErrorCode::Auth),
        other => panic!("{other:?}"),
    }
    match c.login("nobody", "x") {
        AuthServer::Err(e) => assert_eq!(e.code, ErrorCode::UnknownUser),
        other => panic!("{other:?}"),
    }
}
