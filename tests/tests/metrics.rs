//! `--metrics-addr`: the Prometheus endpoint and `/healthz` of a real server over loopback
//! (issue #15).

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::time::{Duration, Instant};

use gc_server::ServerError;
use gc_tests::client::{TestClient, config, register};
use gc_tests::{TestServer, test_config};

const PASSWORD: &str = "correct horse battery";
/// Deadline of each HTTP exchange and of each wait for a counter.
const WAIT: Duration = Duration::from_secs(10);

/// One HTTP request; the status and body. Every step has a timeout: a hang fails the test.
fn http(addr: SocketAddr, request: &[u8]) -> std::io::Result<(u16, String)> {
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    s.set_write_timeout(Some(Duration::from_secs(5)))?;
    s.write_all(request)?;
    let mut text = String::new();
    s.read_to_string(&mut text)?;
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|code| code.parse().ok())
        .unwrap_or(0);
    let body = text
        .split_once("\r\n\r\n")
        .map(|(_, b)| b.to_owned())
        .unwrap_or_default();
    Ok((status, body))
}

fn get(addr: SocketAddr, path: &str) -> (u16, String) {
    http(
        addr,
        format!("GET {path} HTTP/1.1\r\nHost: gc\r\n\r\n").as_bytes(),
    )
    .unwrap()
}

/// The value of the sample line `name` (with its labels, exactly) in an exposition.
fn sample(text: &str, name: &str) -> Option<f64> {
    text.lines().find_map(|l| {
        l.strip_prefix(name)
            .and_then(|rest| rest.strip_prefix(' '))
            .and_then(|v| v.parse().ok())
    })
}

/// Scrapes until `done` holds for the exposition (counters of a delivery are counted when the
/// client's `Thx` is read, just after the client has the records), or the deadline passes.
fn scrape_until(addr: SocketAddr, done: impl Fn(&str) -> bool) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let (status, body) = get(addr, "/metrics");
        assert_eq!(status, 200, "{body}");
        if done(&body) || Instant::now() >= deadline {
            return body;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn with_metrics(config: &mut gc_server::Config) {
    config.metrics_addr = Some(SocketAddr::from(([127, 0, 0, 1], 0)));
}

#[test]
fn the_counters_follow_logins_messages_and_deliveries() {
    let server = TestServer::start_with(with_metrics);
    let addr = server.metrics_addr().expect("metrics served");

    let (status, body) = get(addr, "/metrics");
    assert_eq!(status, 200);
    assert_eq!(sample(&body, "gc_sessions"), Some(0.0), "{body}");
    assert_eq!(sample(&body, "gc_messages_stored_total"), Some(0.0));

    let mut alice_cfg = config(&server, "alice", PASSWORD);
    alice_cfg.register = true;
    let mut alice = TestClient::start(alice_cfg);
    alice.wait_active();
    register(&server, "bob", PASSWORD);
    // A wrong password: one failed login, answered `auth`.
    let mut mallory = TestClient::start(config(&server, "bob", "wrong password"));
    mallory.wait_fatal();
    let mut bob = TestClient::start(config(&server, "bob", PASSWORD));
    bob.wait_active();
    for i in 0..3 {
        alice.send(&format!("hello {i}"));
    }
    alice.wait_acked(3);
    bob.wait_records(3);

    // Alice and Bob each get the three records.
    let body = scrape_until(addr, |b| {
        sample(b, "gc_deliveries_total").is_some_and(|n| n >= 6.0)
    });
    assert_eq!(sample(&body, "gc_sessions"), Some(2.0), "{body}");
    // Alice, Bob's registration (which logs in once) and Bob.
    assert_eq!(
        sample(&body, "gc_logins_total{reason=\"ok\"}"),
        Some(3.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "gc_logins_total{reason=\"auth\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "gc_errors_total{code=\"auth\"}"),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, "gc_messages_stored_total"),
        Some(3.0),
        "{body}"
    );
    let deliveries = sample(&body, "gc_deliveries_total").unwrap();
    assert!(deliveries >= 6.0, "{body}");
    assert_eq!(
        sample(&body, "gc_delivery_latency_seconds_count"),
        Some(deliveries),
        "{body}"
    );
    let commits = sample(&body, "gc_store_commit_seconds_count").unwrap();
    assert!(commits >= 1.0, "{body}");
    // Cumulative buckets: the last is every observation.
    assert_eq!(
        sample(&body, "gc_store_commit_seconds_bucket{le=\"+Inf\"}"),
        Some(commits),
        "{body}"
    );
    assert!(
        sample(&body, "gc_open_fds").is_some_and(|n| n > 0.0),
        "{body}"
    );
    assert!(
        sample(&body, "gc_threads").is_some_and(|n| n > 0.0),
        "{body}"
    );

    // Only the two paths, only GET, and a bounded request.
    assert_eq!(get(addr, "/").0, 404);
    assert_eq!(
        http(addr, b"POST /metrics HTTP/1.1\r\n\r\n").unwrap().0,
        405
    );
    let huge = format!("GET /metrics HTTP/1.1\r\nX: {}\r\n\r\n", "a".repeat(10_000));
    // Refused with 400, or cut while the rest is still being written: never served.
    if let Ok((status, _)) = http(addr, huge.as_bytes()) {
        assert_eq!(status, 400);
    }
    alice.close();
    bob.close();
}

#[test]
fn a_silent_or_trickling_connection_delays_a_scrape_by_at_most_its_deadline() {
    let server = TestServer::start_with(with_metrics);
    let addr = server.metrics_addr().expect("metrics served");
    // A connection that sends one byte of its head a second: the endpoint answers one request at
    // a time, so this one is dropped at its 2 s deadline rather than kept for a timeout per byte.
    let trickle = std::thread::Builder::new()
        .name("trickle".into())
        .spawn(move || {
            let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(2)).unwrap();
            s.set_write_timeout(Some(Duration::from_secs(2))).unwrap();
            for b in b"GET /metrics HTTP/1.1" {
                if s.write_all(&[*b]).is_err() {
                    return;
                }
                std::thread::sleep(Duration::from_millis(500));
            }
        })
        .unwrap();
    // Give the trickler the thread first.
    std::thread::sleep(Duration::from_millis(200));
    let started = Instant::now();
    assert_eq!(get(addr, "/healthz").0, 200);
    assert!(
        started.elapsed() < Duration::from_secs(4),
        "{:?}",
        started.elapsed()
    );
    trickle.join().unwrap();
}

#[test]
fn a_metrics_port_already_taken_stops_the_start_before_anything_opens() {
    let taken = TcpListener::bind("127.0.0.1:0").unwrap();
    let taken_addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut cfg = test_config(dir.path());
    cfg.metrics_addr = Some(taken_addr);
    let err = gc_server::start(cfg.clone()).expect_err("the port is taken");
    assert!(
        matches!(err, ServerError::Bind { role: "metrics", addr, .. } if addr == taken_addr),
        "{err:?}"
    );
    let text = err.to_string();
    assert!(
        text.contains(&taken_addr.to_string()) && text.contains("metrics"),
        "{text}"
    );
    // Nothing was left behind: the data dir is not locked, and the same configuration starts
    // once the port is free.
    drop(taken);
    let server = gc_server::start(cfg).expect("starts once the port is free");
    assert_eq!(server.metrics_addr(), Some(taken_addr));
    server.shutdown();
}

#[test]
fn healthz_says_200_while_serving_then_503_during_shutdown_and_never_hangs() {
    let mut server = TestServer::start_with(with_metrics);
    let addr = server.metrics_addr().expect("metrics served");
    let (status, body) = get(addr, "/healthz");
    assert_eq!((status, body.as_str()), (200, "ok\n"));

    let mut alice_cfg = config(&server, "alice", PASSWORD);
    alice_cfg.register = true;
    let mut alice = TestClient::start(alice_cfg);
    alice.wait_active();

    server.begin_shutdown();
    let (status, body) = get(addr, "/healthz");
    assert_eq!(status, 503, "{body}");
    // The metrics still answer while the shutdown runs.
    assert_eq!(get(addr, "/metrics").0, 200);

    server.stop();
    // Stopped: the connection is refused (or closed), at once.
    let started = Instant::now();
    match http(addr, b"GET /healthz HTTP/1.1\r\n\r\n") {
        Err(_) => {}
        Ok((status, _)) => assert_ne!(status, 200),
    }
    assert!(started.elapsed() < Duration::from_secs(2));
    alice.close();
}

/// `gc_bytes_{received,sent}_total{port="…"}` in an exposition (0 when absent).
fn bytes(text: &str, way: &str, port: &str) -> f64 {
    sample(text, &format!("gc_bytes_{way}_total{{port=\"{port}\"}}")).unwrap_or(0.0)
}

#[test]
fn bytes_in_and_out_follow_a_login_and_a_message_on_each_port() {
    let server = TestServer::start_with(with_metrics);
    let addr = server.metrics_addr().expect("metrics served");
    let (_, before) = get(addr, "/metrics");
    for port in [
        "connect",
        "auth",
        "send",
        "callback",
        "heartbeat",
        "delivery",
    ] {
        for way in ["received", "sent"] {
            assert_eq!(bytes(&before, way, port), 0.0, "{way} {port}\n{before}");
        }
    }

    let mut alice_cfg = config(&server, "alice", PASSWORD);
    alice_cfg.register = true;
    let mut alice = TestClient::start(alice_cfg);
    alice.wait_active();
    let (_, logged_in) = get(addr, "/metrics");
    // The login's exchanges: the connect port, the auth port and the callback to the client,
    // each way; a TLS handshake alone is a few hundred bytes.
    for port in ["connect", "auth", "callback"] {
        for way in ["received", "sent"] {
            assert!(
                bytes(&logged_in, way, port) > 0.0,
                "{way} {port}\n{logged_in}"
            );
        }
    }

    // A body (near the 4096-byte default limit) far larger than any frame the login or a
    // heartbeat exchanges, so what the message adds is told apart from what runs beside it.
    let body = "x".repeat(4000);
    // On the wire a body is c16: two bytes per byte.
    let body_len = 2.0 * body.len() as f64;
    alice.send(&body);
    alice.wait_acked(1);
    alice.wait_records(1);
    // Heartbeats go every 100 ms in tests: some have been answered by now, or soon.
    let after = scrape_until(addr, |b| {
        bytes(b, "sent", "delivery") >= body_len && bytes(b, "received", "heartbeat") > 0.0
    });
    let grew = |way: &str, port: &str| bytes(&after, way, port) - bytes(&logged_in, way, port);
    assert!(
        grew("received", "send") >= body_len,
        "the send port took the message: {}\n{after}",
        grew("received", "send")
    );
    assert!(
        grew("sent", "send") > 0.0,
        "the send port answered\n{after}"
    );
    assert!(
        grew("sent", "delivery") >= body_len,
        "the delivery port got the record: {}\n{after}",
        grew("sent", "delivery")
    );
    // Plausible: the message crosses each way once (framing, TLS records and the send
    // connection's handshake add a little), not many times over.
    assert!(grew("received", "send") < 2.0 * body_len, "{after}");
    assert!(grew("sent", "delivery") < 2.0 * body_len, "{after}");
    assert!(
        bytes(&after, "sent", "heartbeat") > 0.0 && bytes(&after, "received", "heartbeat") > 0.0,
        "heartbeats went out and were answered\n{after}"
    );
}

/// GC/5 transfers are counted by direction and outcome, with their content bytes.
#[test]
fn file_transfers_are_counted_by_outcome_with_their_bytes() {
    use gc_client_core::TransferEvent;

    let server = TestServer::start_with(with_metrics);
    let addr = server.metrics_addr().expect("metrics served");
    let mut cfg = config(&server, "alice", PASSWORD);
    cfg.register = true;
    let mut alice = TestClient::start(cfg);
    alice.wait_active();
    let dir = tempfile::tempdir().unwrap();
    let data: Vec<u8> = (0..700_001u32).map(|i| (i % 253) as u8).collect();
    let path = dir.path().join("notes.bin");
    std::fs::write(&path, &data).unwrap();
    let id = alice
        .client()
        .upload(gc_protocol::Room::general(), &path)
        .unwrap();
    let TransferEvent::Uploaded { hash, .. } = alice.finished_transfer(id) else {
        panic!("upload failed: {:?}", alice.others);
    };
    let target = dir.path().join("copy.bin");
    let id = alice.client().download(hash, &target).unwrap();
    assert!(matches!(
        alice.finished_transfer(id),
        TransferEvent::Downloaded { .. }
    ));
    let unknown = gc_protocol::ContentHash::of(b"never shared");
    let id = alice
        .client()
        .download(unknown, dir.path().join("none.bin"))
        .unwrap();
    assert!(matches!(
        alice.finished_transfer(id),
        TransferEvent::Failed { .. }
    ));
    let line = |direction: &str, outcome: &str| {
        format!("gc_file_transfers_total{{direction=\"{direction}\",outcome=\"{outcome}\"}}")
    };
    let body = scrape_until(addr, |b| {
        sample(b, &line("download", "refused")) == Some(1.0)
            && sample(b, "gc_file_transfer_connections") == Some(0.0)
    });
    assert_eq!(
        sample(&body, &line("upload", "completed")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, &line("download", "completed")),
        Some(1.0),
        "{body}"
    );
    assert_eq!(
        sample(&body, &line("download", "refused")),
        Some(1.0),
        "{body}"
    );
    let size = data.len() as f64;
    assert_eq!(
        sample(&body, "gc_file_bytes_received_total"),
        Some(size),
        "{body}"
    );
    assert_eq!(
        sample(&body, "gc_file_bytes_sent_total"),
        Some(size),
        "{body}"
    );
    assert_eq!(
        sample(&body, "gc_file_transfer_connections"),
        Some(0.0),
        "{body}"
    );
}
