//! Restarts: of the client with its cache, of the server under a waiting outbox, and a server
//! whose store is not the one the cache came from.

use gc_client_core::{ConnState, NoticeLevel};

use gc_tests::client::{TestClient, cache_dir, config, register};
use gc_tests::{PASSWORD, TestServer};

#[test]
fn a_restarted_client_gets_only_what_it_missed() {
    let server = TestServer::start();
    let (_dir, cache) = cache_dir();
    let mut alice_cfg = config(&server, "alice", PASSWORD);
    alice_cfg.register = true;
    alice_cfg.cache_path = Some(cache.clone());
    let mut alice = TestClient::start(alice_cfg.clone());
    alice.wait_active();
    for i in 1..=3 {
        alice.send(&format!("first {i}"));
    }
    alice.wait_records(3);
    assert_eq!(alice.close(), 0);

    // While alice is away.
    register(&server, "bob", PASSWORD);
    let mut bob = TestClient::start(config(&server, "bob", PASSWORD));
    bob.wait_active();
    bob.send("missed 1");
    bob.send("missed 2");
    bob.wait_acked(2);

    alice_cfg.register = false;
    alice_cfg.bind_ip = Some(gc_tests::client_ip());
    let mut alice = TestClient::start(alice_cfg);
    alice.wait_records(2);
    alice.send("back");
    alice.wait_records(3);
    assert_eq!(alice.ids(), [4, 5, 6]);
    assert_eq!(alice.bodies(), ["missed 1", "missed 2", "back"]);
    // The cache holds everything, once.
    let cached: Vec<u64> = alice.client().cached(0, 100).iter().map(|r| r.id).collect();
    assert_eq!(cached, [1, 2, 3, 4, 5, 6]);
    alice.close();
    bob.close();
}

#[test]
fn messages_written_while_the_server_is_down_arrive_once_after_it_returns() {
    let mut server = TestServer::start();
    let mut alice_cfg = config(&server, "alice", PASSWORD);
    alice_cfg.register = true;
    let mut alice = TestClient::start(alice_cfg);
    alice.wait_active();
    alice.send("before");
    alice.wait_records(1);
    // Its record can come before its `Thx` is handled: wait for both, or the outbox may still
    // hold it below.
    alice.wait_acked(1);

    server.stop();
    alice.send("while down 1");
    alice.send("while down 2");
    assert_eq!(alice.client().outbox().len(), 2);
    server.restart();

    alice.wait_acked(3);
    alice.wait_records(3);
    assert_eq!(alice.bodies(), ["before", "while down 1", "while down 2"]);
    assert!(alice.client().outbox().is_empty());
    assert!(
        alice
            .states
            .iter()
            .filter(|s| **s == ConnState::Active)
            .count()
            >= 2,
        "logged in again: {:?}",
        alice.states
    );
    // Stored once each on the server.
    let lines = server.stored_lines();
    assert_eq!(lines.len(), 3, "{lines:?}");
    for body in ["before", "while down 1", "while down 2"] {
        let n = lines
            .iter()
            .filter(|l| l.ends_with(&format!(";{body}")))
            .count();
        assert_eq!(n, 1, "{body}: {lines:?}");
    }
    alice.close();
}

#[test]
fn a_cache_from_another_server_is_moved_aside() {
    let a = TestServer::start();
    let (dir, cache) = cache_dir();
    let mut cfg = config(&a, "alice", PASSWORD);
    cfg.register = true;
    cfg.cache_path = Some(cache.clone());
    let mut alice = TestClient::start(cfg.clone());
    alice.wait_active();
    for i in 1..=3 {
        alice.send(&format!("on a {i}"));
    }
    alice.wait_records(3);
    alice.close();

    // Another server (fresh store), same cache: its newest id (0) is below the cache's (3).
    let b = TestServer::start();
    let mut cfg_b = config(&b, "alice", PASSWORD);
    cfg_b.register = true;
    cfg_b.cache_path = Some(cache.clone());
    let mut alice = TestClient::start(cfg_b);
    alice.wait_active();
    assert!(
        alice
            .notices
            .iter()
            .any(|(l, t)| *l == NoticeLevel::Warning && t.contains("moved")),
        "{:?}",
        alice.notices
    );
    let old: Vec<_> = std::fs::read_dir(dir.path().join("cache"))
        .unwrap()
        .filter_map(|e| e.ok())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .filter(|n| n.starts_with("cdatabase.db.old-"))
        .collect();
    assert_eq!(old.len(), 1, "{old:?}");
    // New messages on b (ids from 1 again) are not skipped.
    alice.send("on b");
    alice.wait_records(1);
    assert_eq!(alice.ids(), [1]);
    assert_eq!(alice.bodies(), ["on b"]);
    alice.close();
}

#[test]
fn an_idle_client_logs_in_again_after_a_server_restart() {
    let mut server = TestServer::start();
    let mut cfg = config(&server, "ivan", PASSWORD);
    cfg.register = true;
    let mut ivan = TestClient::start(cfg);
    ivan.wait_active();
    server.restart();
    // No heartbeats from the old session (or a refused query, if one was due): the client
    // notices and logs in again by itself.
    ivan.wait_active();
    assert!(
        ivan.notices.iter().any(|(l, t)| *l == NoticeLevel::Warning
            && (t.contains("logging in again") || t.contains("retrying"))),
        "{:?}",
        ivan.notices
    );
    register(&server, "judy", PASSWORD);
    let mut judy = TestClient::start(config(&server, "judy", PASSWORD));
    judy.wait_active();
    judy.send("welcome back");
    ivan.wait_records(1);
    assert_eq!(ivan.bodies(), ["welcome back"]);
    judy.close();
    ivan.close();
}
