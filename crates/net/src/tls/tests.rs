//! Handshakes over loopback: pins, mutual TLS, plain peers, silent peers, channel binding.

use std::io::Write as _;
use std::net::{SocketAddr, TcpListener};
use std::thread;

use gc_protocol::{ConnectPing, ConnectReply, FramedStream, Registration};

use super::*;
use crate::error::NetError;

const T: Duration = Duration::from_secs(5);

fn soon() -> Instant {
    Instant::now() + T
}

fn identity(name: &str) -> Identity {
    Identity::generate(name).unwrap()
}

fn listener() -> (TcpListener, SocketAddr) {
    let l = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = l.local_addr().unwrap();
    (l, addr)
}

/// What [`serve_once`] saw of its client: its certificate and the session's binding.
type Seen = thread::JoinHandle<Result<(Option<Fingerprint>, Binding), NetError>>;

/// A server accepting one TLS connection with `config` and `check`, answering one `Ping` with a
/// `Pong`; it returns what it saw of the client.
fn serve_once(config: TlsConfig, check: PeerCheck) -> (SocketAddr, Seen) {
    let (l, addr) = listener();
    let handle = thread::spawn(move || {
        let (tcp, peer) = l.accept().unwrap();
        let stream = config.accept(tcp, &peer.to_string(), check, soon())?;
        let seen = (stream.peer_fingerprint(), stream.binding());
        let mut conn = FramedStream::new(stream, peer.to_string());
        pong_on(&mut conn, "tls".into())?;
        Ok(seen)
    });
    (addr, handle)
}

fn ping(stream: Stream) -> ConnectReply {
    ping_on(&mut FramedStream::new(stream, "server"))
}

/// Sends a `Ping` on `conn` and reads the answer.
fn ping_on(conn: &mut FramedStream<Stream>) -> ConnectReply {
    conn.send(
        &ConnectPing {
            version: "GC/1".into(),
        },
        soon(),
    )
    .unwrap();
    conn.read(soon()).unwrap()
}

/// Reads a `Ping` on `conn` and answers it with a `Pong` naming `server_name`.
fn pong_on(
    conn: &mut FramedStream<Stream>,
    server_name: String,
) -> Result<(), gc_protocol::ProtocolError> {
    let _: ConnectPing = conn.read(soon())?;
    let pong = ConnectReply::Pong {
        version: "GC/1".into(),
        server_name,
        registration: Registration::Open,
    };
    conn.send(&pong, soon())
}

#[test]
fn a_pinned_server_is_reached_and_both_ends_share_the_binding() {
    let server_id = identity("gc-server");
    let pin = server_id.fingerprint();
    let server = TlsConfig::new(Some(&server_id), ClientAuth::None).unwrap();
    let (addr, handle) = serve_once(server, PeerCheck::Any);
    let client = TlsConfig::new(None, ClientAuth::None).unwrap();
    let tcp = TcpStream::connect(addr).unwrap();
    let stream = client
        .connect(tcp, "server", PeerCheck::Pinned(pin), soon())
        .unwrap();
    assert!(stream.is_tls());
    assert_eq!(stream.peer_fingerprint(), Some(pin));
    let client_binding = stream.binding();
    assert!(matches!(ping(stream), ConnectReply::Pong { .. }));
    let (client_cert, server_binding) = handle.join().unwrap().unwrap();
    assert_eq!(client_cert, None, "no client certificate was asked for");
    assert!(matches!(client_binding, Binding::TlsExporter(_)));
    assert_eq!(
        client_binding, server_binding,
        "the same session, the same value"
    );
}

/// A P-256 identity on disk, as servers made before identities were Ed25519 have in their data
/// directory (and as an operator's may be).
fn p256_identity(dir: &std::path::Path, name: &str) -> Identity {
    use std::os::unix::fs::PermissionsExt as _;
    let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
    let cert = rcgen::CertificateParams::new(vec![name.to_owned()])
        .unwrap()
        .self_signed(&key)
        .unwrap();
    let (cert_path, key_path) = (
        dir.join(format!("{name}.crt")),
        dir.join(format!("{name}.key")),
    );
    let pem = crate::identity::rustls_pem;
    std::fs::write(&cert_path, pem("CERTIFICATE", cert.der())).unwrap();
    std::fs::write(&key_path, pem("PRIVATE KEY", &key.serialize_der())).unwrap();
    std::fs::set_permissions(&key_path, std::fs::Permissions::from_mode(0o600)).unwrap();
    Identity::load(&cert_path, &key_path).unwrap()
}

#[test]
fn p256_identities_from_before_ed25519_still_serve_and_call_back() {
    let dir = tempfile::tempdir().unwrap();
    let old_server = p256_identity(dir.path(), "gc-server");
    for kind in KINDS {
        // An older server's identity, reached by a client pinning it.
        let server = TlsConfig::new(Some(&old_server), ClientAuth::None).unwrap();
        let (addr, handle) = serve_once(server, PeerCheck::Any);
        let client = TlsConfig::new(None, ClientAuth::None).unwrap();
        let pin = PeerCheck::Pinned(old_server.fingerprint());
        let stream = connect_as(kind, &client, addr, pin, soon()).unwrap();
        assert_eq!(stream.peer_fingerprint(), Some(old_server.fingerprint()));
        assert!(matches!(ping(stream), ConnectReply::Pong { .. }));
        handle.join().unwrap().unwrap();
        // The same server calling back a client whose listener is Ed25519 (mutual TLS: each
        // verifies the other's kind of signature).
        let listener_id = identity("gc-client");
        let accept = TlsConfig::new(Some(&listener_id), ClientAuth::Required).unwrap();
        let (addr, handle) = serve_once(accept, pin);
        let caller = TlsConfig::new(Some(&old_server), ClientAuth::None).unwrap();
        let check = PeerCheck::Pinned(listener_id.fingerprint());
        let stream = connect_as(kind, &caller, addr, check, soon()).unwrap();
        assert!(matches!(ping(stream), ConnectReply::Pong { .. }));
        let (seen, _) = handle.join().unwrap().unwrap();
        assert_eq!(seen, Some(old_server.fingerprint()));
    }
}

#[test]
fn another_certificate_than_the_pinned_one_is_refused_before_any_frame() {
    for kind in KINDS {
        let server = TlsConfig::new(Some(&identity("impostor")), ClientAuth::None).unwrap();
        let (addr, handle) = serve_once(server, PeerCheck::Any);
        let pinned = identity("gc-server").fingerprint();
        let client = TlsConfig::new(None, ClientAuth::None).unwrap();
        let err = connect_as(kind, &client, addr, PeerCheck::Pinned(pinned), soon()).unwrap_err();
        match &err {
            NetError::WrongPeer {
                expected,
                presented,
                ..
            } => {
                assert_eq!(*expected, pinned);
                assert!(presented.is_some_and(|p| p != pinned));
            }
            other => panic!("{kind:?}: {other:?}"),
        }
        assert!(err.to_string().contains(&pinned.to_string()), "{err}");
        // The impostor never got its Ping.
        assert!(handle.join().unwrap().is_err());
    }
}

#[test]
fn a_callback_listener_takes_only_the_certificate_it_pinned() {
    let listener_id = identity("gc-client");
    let server_id = identity("gc-server");
    let accept = TlsConfig::new(Some(&listener_id), ClientAuth::Required).unwrap();
    // The server calls back with its own certificate: accepted.
    let (addr, handle) = serve_once(accept, PeerCheck::Pinned(server_id.fingerprint()));
    let caller = TlsConfig::new(Some(&server_id), ClientAuth::None).unwrap();
    let stream = caller
        .connect(
            TcpStream::connect(addr).unwrap(),
            "client",
            PeerCheck::Pinned(listener_id.fingerprint()),
            soon(),
        )
        .unwrap();
    assert!(matches!(ping(stream), ConnectReply::Pong { .. }));
    let (seen, _) = handle.join().unwrap().unwrap();
    assert_eq!(seen, Some(server_id.fingerprint()));
    // Anyone else, with a certificate or without, is refused.
    for caller_id in [Some(identity("someone")), None] {
        let accept = TlsConfig::new(Some(&listener_id), ClientAuth::Required).unwrap();
        let (addr, handle) = serve_once(accept, PeerCheck::Pinned(server_id.fingerprint()));
        let caller = TlsConfig::new(caller_id.as_ref(), ClientAuth::None).unwrap();
        let tcp = TcpStream::connect(addr).unwrap();
        // The caller may finish its side of the handshake before the listener refuses: what
        // matters is that nothing it sends is taken.
        if let Ok(stream) = caller.connect(tcp, "client", PeerCheck::Any, soon()) {
            let mut conn = FramedStream::new(stream, "client");
            let _ = conn.send(
                &ConnectPing {
                    version: "GC/1".into(),
                },
                soon(),
            );
            assert!(conn.read::<ConnectReply>(soon()).is_err());
        }
        assert!(handle.join().unwrap().is_err());
    }
}

#[test]
fn tls_and_plain_are_told_apart_by_the_first_byte() {
    let (l, addr) = listener();
    let mut plain = TcpStream::connect(addr).unwrap();
    plain.write_all(b"Ping GC/1\n").unwrap();
    let (accepted, _) = l.accept().unwrap();
    assert_eq!(starts_with_tls(&accepted, soon()).unwrap(), Some(false));
    // Looking did not take the byte.
    let mut conn = FramedStream::new(accepted, "plain");
    let ping: ConnectPing = conn.read(soon()).unwrap();
    assert_eq!(ping.version, "GC/1");

    let client = TlsConfig::new(None, ClientAuth::None).unwrap();
    let tls_side = thread::spawn(move || {
        let tcp = TcpStream::connect(addr).unwrap();
        let _ = client.connect(tcp, "server", PeerCheck::Any, Instant::now() + T);
    });
    let (accepted, _) = l.accept().unwrap();
    assert_eq!(starts_with_tls(&accepted, soon()).unwrap(), Some(true));
    drop(accepted);
    tls_side.join().unwrap();

    let closed = TcpStream::connect(addr).unwrap();
    let (accepted, _) = l.accept().unwrap();
    drop(closed);
    assert_eq!(starts_with_tls(&accepted, soon()).unwrap(), None);
}

#[test]
fn a_plain_server_gets_a_clear_error_not_a_hang() {
    for kind in KINDS {
        let (l, addr) = listener();
        let plain_server = thread::spawn(move || {
            let (mut tcp, _) = l.accept().unwrap();
            let mut buf = [0u8; 512];
            let _ = std::io::Read::read(&mut tcp, &mut buf);
            // What an old server answers to anything that is not a frame.
            let answer = gc_protocol::ErrorFrame::new(gc_protocol::ErrorCode::Malformed, "what?");
            let _ = tcp.write_all(&gc_protocol::Frame::to_bytes(&answer));
        });
        let client = TlsConfig::new(None, ClientAuth::None).unwrap();
        let err = connect_as(kind, &client, addr, PeerCheck::Any, soon()).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("answered in plain text instead of TLS: `Err malformed`: what?"),
            "{kind:?}: {text}"
        );
        plain_server.join().unwrap();
    }
}

#[test]
fn a_silent_peer_times_out_the_handshake() {
    for kind in KINDS {
        let (l, addr) = listener();
        let client = TlsConfig::new(None, ClientAuth::None).unwrap();
        let started = Instant::now();
        let err = connect_as(
            kind,
            &client,
            addr,
            PeerCheck::Any,
            Instant::now() + Duration::from_millis(200),
        )
        .unwrap_err();
        assert!(
            matches!(
                err,
                NetError::Protocol(gc_protocol::ProtocolError::TimedOut { .. })
            ),
            "{kind:?}: {err:?}"
        );
        assert!(started.elapsed() < T);
        drop(l);
    }
}

#[test]
fn two_sessions_export_two_bindings() {
    let server_id = identity("gc-server");
    let mut seen = Vec::new();
    for _ in 0..2 {
        let server = TlsConfig::new(Some(&server_id), ClientAuth::None).unwrap();
        let (addr, handle) = serve_once(server, PeerCheck::Any);
        let client = TlsConfig::new(None, ClientAuth::None).unwrap();
        let stream = client
            .connect(
                TcpStream::connect(addr).unwrap(),
                "server",
                PeerCheck::Any,
                soon(),
            )
            .unwrap();
        seen.push(stream.binding());
        ping(stream);
        handle.join().unwrap().unwrap();
    }
    assert_ne!(seen[0], seen[1], "what a relay's two sessions would show");
}

/// Runs the handshake of a hand-driven rustls connection on a blocking socket.
fn handshake_by_hand<C, S>(conn: &mut C, tcp: &mut TcpStream)
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    tcp.set_read_timeout(Some(T)).unwrap();
    while conn.is_handshaking() {
        conn.complete_io(tcp).unwrap();
    }
}

/// Reads one line of plaintext from a hand-driven connection.
fn read_line_by_hand<C, S>(conn: &mut C, tcp: &mut TcpStream) -> Vec<u8>
where
    C: std::ops::DerefMut<Target = rustls::ConnectionCommon<S>>,
    S: rustls::SideData,
{
    let mut line = Vec::new();
    let mut byte = [0u8; 1];
    let mut stream = rustls::Stream::new(conn, tcp);
    while line.last() != Some(&b'\n') {
        assert_eq!(std::io::Read::read(&mut stream, &mut byte).unwrap(), 1);
        line.push(byte[0]);
    }
    line
}

#[test]
fn the_rustls_configurations_drive_connections_by_hand() {
    // A callback listener that runs its ServerConnection itself: the handshake demands the
    // caller's certificate, and `presented_fingerprint` is the one the caller has.
    let listener_id = identity("gc-client");
    let caller_id = identity("gc-server");
    let accepting = TlsConfig::new(Some(&listener_id), ClientAuth::Required).unwrap();
    let server_config = accepting.server_config().expect("an identity accepts");
    let (l, addr) = listener();
    let by_hand = thread::spawn(move || {
        let (mut tcp, _) = l.accept().unwrap();
        let mut conn = ServerConnection::new(server_config).unwrap();
        handshake_by_hand(&mut conn, &mut tcp);
        let seen = presented_fingerprint(&conn);
        let ping = read_line_by_hand(&mut conn, &mut tcp);
        let pong = ConnectReply::Pong {
            version: "GC/1".into(),
            server_name: "by hand".into(),
            registration: Registration::Open,
        };
        let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
        stream
            .write_all(&gc_protocol::Frame::to_bytes(&pong))
            .unwrap();
        stream.flush().unwrap();
        (seen, ping)
    });
    let caller = TlsConfig::new(Some(&caller_id), ClientAuth::None).unwrap();
    let stream = caller
        .connect(
            TcpStream::connect(addr).unwrap(),
            "listener",
            PeerCheck::Pinned(listener_id.fingerprint()),
            soon(),
        )
        .unwrap();
    assert!(matches!(ping(stream), ConnectReply::Pong { .. }));
    let (seen, ping_line) = by_hand.join().unwrap();
    assert_eq!(seen, Some(caller_id.fingerprint()));
    assert!(ping_line.starts_with(b"Ping "), "{ping_line:?}");

    // A client that runs its ClientConnection itself: `presented_fingerprint` is the server's.
    let server_id = identity("gc-server");
    let server = TlsConfig::new(Some(&server_id), ClientAuth::None).unwrap();
    let (addr, handle) = serve_once(server, PeerCheck::Any);
    let client_config = TlsConfig::new(None, ClientAuth::None)
        .unwrap()
        .client_config();
    let name = ServerName::IpAddress(addr.ip().into());
    let mut conn = ClientConnection::new(client_config, name).unwrap();
    let mut tcp = TcpStream::connect(addr).unwrap();
    handshake_by_hand(&mut conn, &mut tcp);
    assert_eq!(presented_fingerprint(&conn), Some(server_id.fingerprint()));
    let ping = ConnectPing {
        version: "GC/1".into(),
    };
    let mut stream = rustls::Stream::new(&mut conn, &mut tcp);
    stream
        .write_all(&gc_protocol::Frame::to_bytes(&ping))
        .unwrap();
    stream.flush().unwrap();
    let pong = read_line_by_hand(&mut conn, &mut tcp);
    assert!(pong.starts_with(b"Pong "), "{pong:?}");
    let (client_cert, _) = handle.join().unwrap().unwrap();
    assert_eq!(client_cert, None);
}

#[test]
fn only_an_endpoint_with_an_identity_has_a_server_configuration() {
    assert!(
        TlsConfig::new(None, ClientAuth::None)
            .unwrap()
            .server_config()
            .is_none()
    );
    let id = identity("gc-client");
    assert!(
        TlsConfig::new(Some(&id), ClientAuth::Required)
            .unwrap()
            .server_config()
            .is_some()
    );
}

#[test]
fn a_read_returns_what_has_arrived_not_only_what_was_left_over() {
    // A peer pipelining: three records that have all arrived when the reader reads.
    for kind in KINDS {
        let server_id = identity("gc-server");
        let server = TlsConfig::new(Some(&server_id), ClientAuth::None).unwrap();
        let (l, addr) = listener();
        let (sent_tx, sent) = std::sync::mpsc::channel();
        let (close_tx, close) = std::sync::mpsc::channel::<()>();
        let writer = thread::spawn(move || {
            let client = TlsConfig::new(None, ClientAuth::None).unwrap();
            let mut stream = connect_as(kind, &client, addr, PeerCheck::Any, soon()).unwrap();
            for record in [b'a', b'b', b'c'] {
                stream.write_all(&[record; 3000]).unwrap();
                stream.flush().unwrap();
            }
            sent_tx.send(()).unwrap();
            // Keep the connection open until the reader is done.
            let _ = close.recv_timeout(T);
        });
        let mut stream = accept_as(kind, &server, &l, PeerCheck::Any).unwrap();
        sent.recv_timeout(T).unwrap();
        // Let the three records arrive whole.
        thread::sleep(Duration::from_millis(100));
        // A small read leaves most of the first record's plaintext behind.
        let mut small = [0u8; 100];
        assert_eq!(std::io::Read::read(&mut stream, &mut small).unwrap(), 100);
        // A large one returns the rest of everything that has arrived, not just that leftover.
        let mut large = vec![0u8; 64 * 1024];
        let n = std::io::Read::read(&mut stream, &mut large).unwrap();
        assert_eq!(n, 9000 - 100, "{kind:?}");
        assert!(large[..2900].iter().all(|&b| b == b'a'));
        assert!(large[5900..n].iter().all(|&b| b == b'c'));
        // The peer goes without a close_notify (as GC/1 peers do): the next read says so.
        close_tx.send(()).unwrap();
        writer.join().unwrap();
        let err = std::io::Read::read(&mut stream, &mut large).unwrap_err();
        assert_eq!(
            err.kind(),
            std::io::ErrorKind::UnexpectedEof,
            "{kind:?}: {err}"
        );
    }
}

#[test]
fn handshakes_on_threads_of_their_own_check_the_same_pins() {
    // Mutual TLS, both ends running their handshakes on `tls-handshake` threads.
    let server_id = identity("gc-server");
    let client_id = identity("gc-client");
    let server = TlsConfig::new(Some(&server_id), ClientAuth::Required)
        .unwrap()
        .with_handshake_threads();
    let (addr, handle) = serve_once(server, PeerCheck::Pinned(client_id.fingerprint()));
    let client = TlsConfig::new(Some(&client_id), ClientAuth::None)
        .unwrap()
        .with_handshake_threads();
    let stream = client
        .connect(
            TcpStream::connect(addr).unwrap(),
            "server",
            PeerCheck::Pinned(server_id.fingerprint()),
            soon(),
        )
        .unwrap();
    assert_eq!(stream.peer_fingerprint(), Some(server_id.fingerprint()));
    assert!(matches!(ping(stream), ConnectReply::Pong { .. }));
    let (seen, _) = handle.join().unwrap().unwrap();
    assert_eq!(seen, Some(client_id.fingerprint()));

    // A wrong pin is refused the same way.
    let (l, addr) = listener();
    let other = TlsConfig::new(Some(&identity("other")), ClientAuth::None).unwrap();
    let accepting = thread::spawn(move || {
        let (tcp, peer) = l.accept().unwrap();
        let _ = other.accept(tcp, &peer.to_string(), PeerCheck::Any, soon());
    });
    let err = client
        .connect(
            TcpStream::connect(addr).unwrap(),
            "server",
            PeerCheck::Pinned(server_id.fingerprint()),
            soon(),
        )
        .unwrap_err();
    assert!(matches!(err, NetError::WrongPeer { .. }), "{err}");
    accepting.join().unwrap();
}

#[test]
fn both_ends_count_the_same_socket_bytes_handshake_included() {
    // Plain, then TLS with both ends buffered, then both lean.
    for tls in [None, Some(Kind::Buffered), Some(Kind::Lean)] {
        let server_id = identity("gc-server");
        let server = TlsConfig::new(Some(&server_id), ClientAuth::None).unwrap();
        let (l, addr) = listener();
        let server_count = Arc::new(ByteCount::default());
        let counted = Arc::clone(&server_count);
        let handle = thread::spawn(move || {
            let mut stream = match tls {
                Some(kind) => accept_as(kind, &server, &l, PeerCheck::Any).unwrap(),
                None => Stream::plain(l.accept().unwrap().0),
            };
            stream.count_into(Arc::clone(&counted));
            // A second count_into does not count the handshake again.
            stream.count_into(counted);
            let mut conn = FramedStream::new(stream, "client");
            pong_on(&mut conn, "x".repeat(100)).unwrap();
            conn
        });
        let client_count = Arc::new(ByteCount::default());
        let mut connector = crate::Connector::new(None, crate::Timeouts::new(T))
            .with_count(Arc::clone(&client_count));
        if let Some(kind) = tls {
            let client = TlsConfig::new(None, ClientAuth::None).unwrap();
            connector = connector.with_tls(Arc::new(client));
            if kind == Kind::Lean {
                connector = connector.lean();
            }
        }
        let mut conn = connector
            .connect(addr, PeerCheck::Pinned(server_id.fingerprint()))
            .unwrap();
        assert!(matches!(ping_on(&mut conn), ConnectReply::Pong { .. }));
        // Both ends still open: nothing more is on its way.
        let _server_conn = handle.join().unwrap();
        assert_eq!(server_count.received(), client_count.sent(), "tls {tls:?}");
        assert_eq!(server_count.sent(), client_count.received(), "tls {tls:?}");
        assert!(server_count.sent() > 100, "tls {tls:?}");
        if tls.is_some() {
            // Ciphertext, with the handshake: far more than the two frames' plaintext.
            assert!(server_count.sent() > 1000, "{}", server_count.sent());
        }
    }
}

// ───────────────────────────── lean streams ─────────────────────────────

/// Which of the two streams an end of a connection uses.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Buffered,
    Lean,
}

const KINDS: [Kind; 2] = [Kind::Buffered, Kind::Lean];

fn connect_as(
    kind: Kind,
    config: &TlsConfig,
    addr: SocketAddr,
    check: PeerCheck,
    deadline: Instant,
) -> Result<Stream, NetError> {
    let tcp = TcpStream::connect(addr).unwrap();
    match kind {
        Kind::Buffered => config.connect(tcp, "server", check, deadline),
        Kind::Lean => config.connect_lean(tcp, "server", check, deadline),
    }
}

fn accept_as(
    kind: Kind,
    config: &TlsConfig,
    l: &TcpListener,
    check: PeerCheck,
) -> Result<Stream, NetError> {
    let (tcp, peer) = l.accept().unwrap();
    match kind {
        Kind::Buffered => config.accept(tcp, &peer.to_string(), check, soon()),
        Kind::Lean => config.accept_lean(tcp, &peer.to_string(), check, soon()),
    }
}

/// Bytes that show where each came from: a transfer that drops, repeats or reorders any fails.
fn pattern(n: usize) -> Vec<u8> {
    (0..n).map(|i| (i % 251) as u8).collect()
}

#[test]
fn lean_and_buffered_streams_talk_to_each_other_both_ways() {
    let server_id = identity("gc-server");
    let client_id = identity("gc-client");
    // More than a few records, written in pieces of every size up to more than a record.
    let sent = pattern(300_000);
    for client_kind in KINDS {
        for server_kind in KINDS {
            let server = TlsConfig::new(Some(&server_id), ClientAuth::Required).unwrap();
            let (l, addr) = listener();
            let client_pin = client_id.fingerprint();
            let expected = sent.clone();
            let echo = thread::spawn(move || {
                let mut stream =
                    accept_as(server_kind, &server, &l, PeerCheck::Pinned(client_pin)).unwrap();
                assert_eq!(stream.peer_fingerprint(), Some(client_pin));
                let mut got = vec![0u8; expected.len()];
                std::io::Read::read_exact(&mut stream, &mut got).unwrap();
                assert!(got == expected, "{server_kind:?} received other bytes");
                stream.write_all(&got).unwrap();
                stream.flush().unwrap();
                stream
            });
            let client = TlsConfig::new(Some(&client_id), ClientAuth::None).unwrap();
            let mut stream = connect_as(
                client_kind,
                &client,
                addr,
                PeerCheck::Pinned(server_id.fingerprint()),
                soon(),
            )
            .unwrap();
            assert!(stream.is_tls());
            assert_eq!(stream.peer_fingerprint(), Some(server_id.fingerprint()));
            let mut at = 0;
            let mut piece = 1;
            while at < sent.len() {
                let end = (at + piece).min(sent.len());
                stream.write_all(&sent[at..end]).unwrap();
                at = end;
                piece = piece * 3 % 40_000 + 1;
            }
            stream.flush().unwrap();
            let mut back = vec![0u8; sent.len()];
            std::io::Read::read_exact(&mut stream, &mut back).unwrap();
            assert!(
                back == sent,
                "{client_kind:?} → {server_kind:?}: the echo differs"
            );
            let server_stream = echo.join().unwrap();
            let expect_binding = |kind: Kind, stream: &Stream| match kind {
                Kind::Buffered => assert!(matches!(stream.binding(), Binding::TlsExporter(_))),
                Kind::Lean => assert_eq!(stream.binding(), Binding::Unbound),
            };
            expect_binding(client_kind, &stream);
            expect_binding(server_kind, &server_stream);
        }
    }
}

#[test]
fn a_waiting_lean_stream_holds_no_buffer() {
    let server_id = identity("gc-server");
    let server = TlsConfig::new(Some(&server_id), ClientAuth::None).unwrap();
    let (l, addr) = listener();
    let (done_tx, done) = std::sync::mpsc::channel::<()>();
    let peer = thread::spawn(move || {
        let stream = accept_as(Kind::Lean, &server, &l, PeerCheck::Any).unwrap();
        let mut conn = FramedStream::new(stream, "client");
        pong_on(&mut conn, "lean".into()).unwrap();
        let held = conn.get_ref().lean_held();
        // Until the client has looked at its end too.
        let _ = done.recv_timeout(T);
        held
    });
    let client = TlsConfig::new(None, ClientAuth::None).unwrap();
    let stream = connect_as(Kind::Lean, &client, addr, PeerCheck::Any, soon()).unwrap();
    let mut conn = FramedStream::new(stream, "server");
    assert!(matches!(ping_on(&mut conn), ConnectReply::Pong { .. }));
    // Both ends have read and written, and now wait for more: no receive, plaintext or send
    // buffer is kept for that.
    assert_eq!(conn.get_ref().lean_held(), Some(0));
    drop(done_tx);
    assert_eq!(peer.join().unwrap(), Some(0));
}

#[test]
fn a_lean_end_that_refuses_a_handshake_tells_the_other_why() {
    let listener_id = identity("gc-client");
    // A listener that requires a certificate, and a caller without one.
    for (caller_kind, listener_kind) in [(Kind::Lean, Kind::Lean), (Kind::Buffered, Kind::Lean)] {
        let accept = TlsConfig::new(Some(&listener_id), ClientAuth::Required).unwrap();
        let (l, addr) = listener();
        let refusing = thread::spawn(move || {
            accept_as(listener_kind, &accept, &l, PeerCheck::Any).map(|_| ())
        });
        let caller = TlsConfig::new(None, ClientAuth::None).unwrap();
        let err = match connect_as(caller_kind, &caller, addr, PeerCheck::Any, soon()) {
            // TLS 1.3: the caller may finish its side first; its first read learns of it.
            Ok(mut stream) => std::io::Read::read(&mut stream, &mut [0u8; 16])
                .unwrap_err()
                .to_string(),
            Err(e) => e.to_string(),
        };
        assert!(
            err.contains("CertificateRequired"),
            "{caller_kind:?} → {listener_kind:?}: {err}"
        );
        let refused = refusing.join().unwrap().unwrap_err().to_string();
        assert!(refused.contains("no certificates"), "{refused}");
    }
}
