//! Failover between instances of one service (issue #13): a client given a server list moves to
//! the next instance when the one it is on stops, resuming from its cursor.
//!
//! Until the shared PostgreSQL store exists, "two instances over one store" is simulated
//! honestly with one flat-file data dir: instance A on 127.0.0.1; when it has stopped, instance
//! B on the same data dir (so the same accounts and id sequence) on 127.0.0.2, with the same
//! port numbers, which is what a client's list shares.

use std::net::{IpAddr, Ipv4Addr};

use gc_client_core::ConnState;

use gc_tests::client::{TestClient, config};
use gc_tests::{PASSWORD, TestServer};

const B_IP: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

/// Instance B: the same data dir and ports as `a` (stopped), on 127.0.0.2.
fn instance_b(a: &TestServer) -> TestServer {
    let (data_dir, ports) = (a.data_dir().to_path_buf(), a.ports());
    TestServer::start_with(|c| {
        c.bind = B_IP;
        c.data_dir = data_dir;
        c.connect_port = ports.connect;
        c.auth_port = ports.auth;
        c.send_port = ports.send;
    })
}

/// Every body in `database.db` exactly once.
fn assert_stored_once(server: &TestServer, bodies: &[String]) {
    let lines = server.stored_lines();
    for body in bodies {
        let n = lines
            .iter()
            .filter(|l| l.ends_with(&format!(";{body}")))
            .count();
        assert_eq!(n, 1, "{body:?} is stored {n} times: {lines:?}");
    }
}

#[test]
fn a_client_moves_to_the_next_instance_when_its_own_stops_mid_traffic() {
    let mut a = TestServer::start();
    let list = "127.0.0.1,127.0.0.2";
    let mut alice_cfg = config(&a, "alice", PASSWORD);
    alice_cfg.server = list.into();
    alice_cfg.register = true;
    let mut alice = TestClient::start(alice_cfg);
    alice.wait_active();
    let mut bob_cfg = config(&a, "bob", PASSWORD);
    bob_cfg.server = list.into();
    bob_cfg.register = true;
    let mut bob = TestClient::start(bob_cfg);
    bob.wait_active();
    let on = alice.client().status().instance.expect("an instance");
    assert_eq!(on.to_string(), "127.0.0.1 (1/2)");

    let mut sent = Vec::new();
    let mut send = |c: &TestClient, text: String| {
        c.send(&text);
        sent.push(text);
    };
    // Mid-traffic: A stops while messages are still going out, unacknowledged.
    for i in 1..=20 {
        send(&alice, format!("before {i}"));
    }
    alice.wait_acked(5);
    a.stop();
    for i in 1..=10 {
        send(&alice, format!("between {i}"));
    }
    let b = instance_b(&a);
    for i in 1..=10 {
        send(&alice, format!("after {i}"));
    }

    // Everything arrives, once each, in id order (`TestClient` checks every record's id is
    // above the one before).
    let n = sent.len();
    alice.wait_records(n);
    bob.wait_records(n);
    alice.wait_acked(n);
    for c in [&alice, &bob] {
        let mut bodies = c.bodies();
        assert_eq!(bodies.len(), n, "{bodies:?}");
        bodies.sort();
        bodies.dedup();
        assert_eq!(bodies.len(), n, "a record shown twice");
        let mut want = sent.clone();
        want.sort();
        assert_eq!(bodies, want);
    }
    assert_eq!(alice.ids(), (1..=n as u64).collect::<Vec<_>>());
    assert_stored_once(&b, &sent);
    assert_eq!(b.stored_lines().len(), n);

    // Both say where they are now.
    let on = alice.client().status().instance.expect("an instance");
    assert_eq!(on.to_string(), "127.0.0.2 (2/2)");
    assert_eq!(on.ip, B_IP);
    assert!(
        alice
            .notices
            .iter()
            .any(|(_, t)| t.contains("moved from 127.0.0.1 (1/2) to 127.0.0.2 (2/2)")),
        "{:?}",
        alice.notices
    );
    assert_eq!(alice.client().status().state, ConnState::Active);
    assert_eq!(alice.close(), 0);
    assert_eq!(bob.close(), 0);
}

#[test]
fn a_client_whose_first_instance_is_dead_logs_in_on_the_second() {
    let server = TestServer::start();
    // Nothing listens on 127.0.0.3 at these ports: refused at once.
    let mut cfg = config(&server, "alice", PASSWORD);
    cfg.server = "127.0.0.3,127.0.0.1".into();
    cfg.register = true;
    let mut alice = TestClient::start(cfg);
    alice.wait_active();
    let on = alice.client().status().instance.expect("an instance");
    assert_eq!(on.to_string(), "127.0.0.1 (2/2)");
    alice.send("hello");
    alice.wait_records(1);
    assert_eq!(alice.bodies(), ["hello"]);
    assert_eq!(alice.close(), 0);
}

#[test]
fn a_list_whose_names_do_not_resolve_logs_in_on_those_that_do() {
    let server = TestServer::start();
    let mut cfg = config(&server, "alice", PASSWORD);
    cfg.server = "no-such-host.invalid,127.0.0.1".into();
    cfg.register = true;
    let mut alice = TestClient::start(cfg);
    alice.wait_active();
    assert!(
        alice
            .notices
            .iter()
            .any(|(_, t)| t.contains("no-such-host.invalid") && t.contains("other servers")),
        "{:?}",
        alice.notices
    );
    assert_eq!(alice.close(), 0);
}
