//! GC/4 through the client library: the server's stop notice ends the session at once,
//! `/passwd` and `/away` work and survive a new login, and a client configured without rooms
//! (speaking GC/1, as an older client does) is left as it was.

use std::time::{Duration, Instant};

use gc_client_core::{AccountChange, ClientError, ConnState, Event, NoticeLevel, Password};
use gc_tests::client::{OlderConnectPort, TestClient, config, register};
use gc_tests::{PASSWORD, TestServer};

const NEW_PASSWORD: &str = "battery-staple-7";

/// A server whose heartbeats are slow: a client that is not told it stopped notices late.
fn slow_heartbeats() -> TestServer {
    TestServer::start_with(|c| c.heartbeat_interval = Duration::from_secs(3))
}

fn started(server: &TestServer, user: &str, rooms: bool) -> TestClient {
    let mut cfg = config(server, user, PASSWORD);
    cfg.register = true;
    cfg.rooms = rooms;
    let mut c = TestClient::start(cfg);
    c.wait_active();
    // The first heartbeat's presence is fetched: no exchange is under way when a test goes on.
    c.wait_other("who is online", |e| {
        matches!(e, Event::Presence { .. }).then_some(())
    });
    c
}

/// How long after the server's shutdown began the client left ACTIVE (the shutdown included).
fn left_active_after_stop(server: &mut TestServer, c: &mut TestClient) -> Duration {
    let since = c.states.len();
    let started = Instant::now();
    server.stop();
    let state = c.wait_state_other_than(since, ConnState::Active);
    assert_eq!(state, ConnState::Disconnected);
    started.elapsed()
}

#[test]
fn a_stopping_server_makes_the_client_disconnect_at_once_and_log_in_again_when_back() {
    let mut server = slow_heartbeats();
    let mut c = started(&server, "alice", true);
    let took = left_active_after_stop(&mut server, &mut c);
    assert!(
        took < Duration::from_secs(1),
        "ACTIVE for {took:?} after the server stopped"
    );
    assert_eq!(
        c.wait_notice("the server is stopping"),
        NoticeLevel::Warning
    );
    // It logs in again, with its backoff, once the server is back.
    server.restart();
    c.wait_active();
}

#[test]
fn a_client_without_gc4_is_not_told_and_notices_only_later() {
    let mut server = slow_heartbeats();
    let mut c = started(&server, "bob", false);
    assert_eq!(c.client().gc4_available(), Some(false));
    let took = left_active_after_stop(&mut server, &mut c);
    // Its probe after a heartbeat and a half finds the port closed: well after the notice would
    // have come, and before the watchdog.
    assert!(took >= Duration::from_secs(1), "{took:?}");
    assert!(
        !c.notices
            .iter()
            .any(|(_, t)| t.contains("the server is stopping")),
        "{:?}",
        c.notices
    );
}

#[test]
fn passwd_changes_the_password_and_the_next_login_uses_it() {
    let server = TestServer::start();
    let mut c = started(&server, "carol", true);
    // A wrong current password is refused by the server, and nothing changes.
    c.client()
        .passwd(Password::new("not-it-at-all"), Password::new(NEW_PASSWORD))
        .unwrap();
    let refusal = c.wait_other("the refusal", |e| match e {
        Event::Refused(r) => Some(r.to_string()),
        _ => None,
    });
    assert!(
        refusal.contains("could not to change the password (auth)"),
        "{refusal}"
    );
    // Too short: refused before anything is sent.
    assert!(matches!(
        c.client()
            .passwd(Password::new(PASSWORD), Password::new("short")),
        Err(ClientError::InvalidRequest(_))
    ));
    c.client()
        .passwd(Password::new(PASSWORD), Password::new(NEW_PASSWORD))
        .unwrap();
    c.wait_other("the change", |e| {
        matches!(e, Event::AccountDone(AccountChange::Password)).then_some(())
    });
    // Logging in again (same client) takes the new password.
    c.client().reconnect();
    c.wait_active();
    // A client with the old one is refused; with the new one it logs in.
    let mut old = TestClient::start(config(&server, "carol", PASSWORD));
    assert!(old.wait_fatal().is_login_refused());
    let mut new = TestClient::start(config(&server, "carol", NEW_PASSWORD));
    new.wait_active();
}

#[test]
fn away_is_seen_by_others_until_back_and_set_again_after_a_new_login() {
    let mut server = TestServer::start();
    let mut alice = started(&server, "alice", true);
    let mut bob = started(&server, "bob", true);
    alice.client().away("in a meeting").unwrap();
    alice.wait_other("away done", |e| {
        matches!(e, Event::AccountDone(AccountChange::Away(m)) if m == "in a meeting").then_some(())
    });
    let seen = |e: &Event| match e {
        Event::Away(list) => Some(
            list.iter()
                .map(|(u, m)| (u.to_string(), m.clone()))
                .collect::<Vec<_>>(),
        ),
        _ => None,
    };
    let away_list = |c: &mut TestClient, want: &[(&str, &str)]| {
        let want: Vec<(String, String)> = want
            .iter()
            .map(|(u, m)| ((*u).to_owned(), (*m).to_owned()))
            .collect();
        c.wait_other("the away list", |e| seen(e).filter(|l| *l == want));
        c.others.clear();
    };
    away_list(&mut bob, &[("alice", "in a meeting")]);
    // After a server restart both log in again; alice's client sets it again.
    server.restart();
    alice.wait_active();
    bob.wait_active();
    away_list(&mut bob, &[("alice", "in a meeting")]);
    alice.client().back().unwrap();
    away_list(&mut bob, &[]);
    assert_eq!(alice.client().away_message(), None);
}

#[test]
fn against_a_gc3_server_the_client_keeps_its_rooms_and_says_what_is_not_supported() {
    let server = TestServer::start();
    register(&server, "dave", PASSWORD);
    let older = OlderConnectPort::start_gc3(&server);
    let mut cfg = config(&server, "dave", PASSWORD);
    cfg.server_ports.connect = older.port;
    let mut dave = TestClient::start(cfg);
    dave.wait_active();
    assert_eq!(older.asked(), ["GC/5", "GC/4", "GC/3"]);
    assert_eq!(dave.client().status().version, Some("GC/3"));
    assert_eq!(dave.client().rooms_available(), Some(true));
    assert_eq!(dave.client().gc4_available(), Some(false));
    for refused in [
        dave.client().away("lunch"),
        dave.client().back(),
        dave.client()
            .passwd(Password::new(PASSWORD), Password::new(NEW_PASSWORD)),
    ] {
        let text = refused.unwrap_err().to_string();
        assert!(
            text.starts_with("this server does not support /") && text.contains("speaks GC/3"),
            "{text}"
        );
    }
    // The rest works as against any GC/3 server.
    dave.send("hello");
    dave.wait_acked(1);
}
