//! TLS 1.3 on GC/1 connections: one configuration per endpoint, built once at start, and the
//! handshake of each connection with a deadline.
//!
//! GC/1 peers do not use certificate authorities or host names: a client pins the server's
//! certificate by its fingerprint (first contact shows it and asks), and the server pins each
//! client's per-run callback certificate by the fingerprint the client announced in its login.
//! So the verifiers here accept any certificate *whose key signs the handshake*, and the pin is
//! checked right after the handshake, before a byte of GC/1 goes either way
//! ([`PeerCheck`]). The client's callback listeners also ask the connecting server for its
//! certificate (mutual TLS), so only the server the client logged in to can call it back.
//!
//! The crypto provider is aws-lc-rs (rustls' default), built from source with the C compiler
//! alone on the targets it ships bindings for (x86-64 and aarch64 Linux among them); it brings the
//! hybrid post-quantum key exchange X25519MLKEM768. Only TLS 1.3 is offered.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gc_protocol::scram::{Binding, TLS_EXPORTER_LABEL};
use gc_protocol::{ErrorFrame, Fingerprint, Frame as _};
use rustls::client::UnbufferedClientConnection;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::server::UnbufferedServerConnection;
use rustls::server::danger::{ClientCertVerified, ClientCertVerifier};
use rustls::{
    ClientConfig, ClientConnection, Connection, DigitallySignedStruct, DistinguishedName,
    ServerConfig, ServerConnection, SignatureScheme,
};

use crate::error::NetError;
use crate::identity::Identity;

mod lean;

/// The first byte of every TLS connection (a handshake record): how a server that takes both TLS
/// and plain GC/1 on one port tells them apart. No GC/1 frame starts with it (tokens are letters).
pub const TLS_HANDSHAKE_BYTE: u8 = 0x16;

/// Socket timeouts of zero mean "forever"; never set one shorter than this.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// What the peer's certificate must be, checked right after the handshake.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeerCheck {
    /// Exactly this one.
    Pinned(Fingerprint),
    /// Any (its key still has to sign the handshake): the caller learns its fingerprint from
    /// [`Stream::peer_fingerprint`] and decides (first contact), or needs none.
    Any,
}

/// An endpoint's TLS setup, built once at start and shared by all its connections.
pub struct TlsConfig {
    client: Arc<ClientConfig>,
    server: Option<Arc<ServerConfig>>,
    /// Run each handshake on a short thread of its own (see [`TlsConfig::with_handshake_threads`]).
    own_threads: bool,
}

impl fmt::Debug for TlsConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsConfig")
            .field("accepts", &self.server.is_some())
            .finish_non_exhaustive()
    }
}

/// Whether connections this endpoint accepts must present a certificate.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ClientAuth {
    /// No (the server's own ports: clients prove themselves with SCRAM).
    None,
    /// Yes (a client's callback listeners: only the server it logged in to may call).
    Required,
}

impl TlsConfig {
    /// A configuration for an endpoint with `identity` (needed to accept connections, and shown
    /// as the client certificate on connections it opens), whose accepted connections must or
    /// need not present a certificate.
    pub fn new(identity: Option<&Identity>, client_auth: ClientAuth) -> Result<Self, NetError> {
        let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
        let algorithms = provider.signature_verification_algorithms;
        let failed = |e: rustls::Error| NetError::Identity {
            path: None,
            detail: format!("cannot set up TLS: {e}"),
        };
        let verifier = Arc::new(SignedBy { algorithms });
        let client = ClientConfig::builder_with_provider(Arc::clone(&provider))
            .with_protocol_versions(&[&rustls::version::TLS13])
            .map_err(failed)?
            .dangerous()
            .with_custom_certificate_verifier(verifier.clone());
        let mut client = match identity {
            Some(id) => client
                .with_client_auth_cert(id.certs().to_vec(), id.key().clone_key())
                .map_err(failed)?,
            None => client.with_no_client_auth(),
        };
        // No session resumption, either way: connections are kept, so full handshakes are
        // rare, and every handshake then shows the peer's certificate for the pin check. (A
        // server would otherwise send tickets right after the handshake: bytes nobody asked for
        // on a connection the client may not read for a while.)
        client.resumption = rustls::client::Resumption::disabled();
        let server = match identity {
            None => None,
            Some(id) => {
                let builder = ServerConfig::builder_with_provider(provider)
                    .with_protocol_versions(&[&rustls::version::TLS13])
                    .map_err(failed)?;
                let builder = match client_auth {
                    ClientAuth::None => builder.with_no_client_auth(),
                    ClientAuth::Required => builder.with_client_cert_verifier(verifier),
                };
                let mut config = builder
                    .with_single_cert(id.certs().to_vec(), id.key().clone_key())
                    .map_err(failed)?;
                config.send_tls13_tickets = 0;
                config.session_storage = Arc::new(rustls::server::NoServerSessionStorage {});
                Some(Arc::new(config))
            }
        };
        Ok(Self {
            client: Arc::new(client),
            server,
            own_threads: false,
        })
    }

    /// Runs every handshake on a short thread of its own (`tls-handshake`), the caller waiting
    /// for it. A handshake's key exchange (the post-quantum part above all) touches some 40 KiB
    /// of stack; a long-lived thread that ran one keeps those pages for good, so a server whose
    /// per-session threads make connections would pay them per session. A thread costs some tens
    /// of microseconds; connections are kept, so handshakes are rare.
    pub fn with_handshake_threads(mut self) -> Self {
        self.own_threads = true;
        self
    }

    /// Runs `handshake` as configured: here, or on a thread of its own.
    fn run<F>(&self, peer: &str, handshake: F) -> Result<Stream, NetError>
    where
        F: FnOnce() -> Result<Stream, NetError> + Send,
    {
        if !self.own_threads {
            return handshake();
        }
        std::thread::scope(|scope| {
            let spawned = std::thread::Builder::new()
                .name("tls-handshake".into())
                .spawn_scoped(scope, handshake);
            match spawned {
                Ok(thread) => thread.join().unwrap_or_else(|_| {
                    Err(NetError::Tls {
                        peer: peer.to_owned(),
                        detail: "the handshake thread panicked".into(),
                    })
                }),
                Err(e) => Err(NetError::Tls {
                    peer: peer.to_owned(),
                    detail: format!("cannot start a handshake thread: {e}"),
                }),
            }
        })
    }

    /// Runs the client side of a handshake on `tcp` (to `peer`, as errors name it) before
    /// `deadline`, then checks the peer's certificate.
    pub fn connect(
        &self,
        tcp: TcpStream,
        peer: &str,
        check: PeerCheck,
        deadline: Instant,
    ) -> Result<Stream, NetError> {
        self.open(tcp, peer, check, deadline, false)
    }

    /// [`TlsConfig::connect`] for a connection that is kept open: its stream holds no buffer
    /// while it waits (rustls' unbuffered API), and has no channel binding
    /// ([`Stream::binding`] is `Unbound`), which only a login needs.
    pub fn connect_lean(
        &self,
        tcp: TcpStream,
        peer: &str,
        check: PeerCheck,
        deadline: Instant,
    ) -> Result<Stream, NetError> {
        self.open(tcp, peer, check, deadline, true)
    }

    /// The client side of a handshake, buffered or lean.
    fn open(
        &self,
        tcp: TcpStream,
        peer: &str,
        check: PeerCheck,
        deadline: Instant,
        lean: bool,
    ) -> Result<Stream, NetError> {
        let ip = tcp.peer_addr().map_err(|e| io_error(peer, e))?.ip();
        self.run(peer, || {
            if lean {
                lean_client_handshake(&self.client, ip, tcp, peer, check, deadline)
            } else {
                client_handshake(&self.client, ip, tcp, peer, check, deadline)
            }
        })
    }

    /// Runs the server side of a handshake on `tcp` before `deadline`, then checks the peer's
    /// certificate (when accepted connections must present one).
    pub fn accept(
        &self,
        tcp: TcpStream,
        peer: &str,
        check: PeerCheck,
        deadline: Instant,
    ) -> Result<Stream, NetError> {
        self.take(tcp, peer, check, deadline, false)
    }

    /// [`TlsConfig::accept`] for a connection that is kept open, as [`TlsConfig::connect_lean`].
    pub fn accept_lean(
        &self,
        tcp: TcpStream,
        peer: &str,
        check: PeerCheck,
        deadline: Instant,
    ) -> Result<Stream, NetError> {
        self.take(tcp, peer, check, deadline, true)
    }

    /// The server side of a handshake, buffered or lean.
    fn take(
        &self,
        tcp: TcpStream,
        peer: &str,
        check: PeerCheck,
        deadline: Instant,
        lean: bool,
    ) -> Result<Stream, NetError> {
        let Some(server) = &self.server else {
            return Err(NetError::Identity {
                path: None,
                detail: "this endpoint has no TLS identity to accept connections with".into(),
            });
        };
        self.run(peer, || {
            if lean {
                lean_server_handshake(server, tcp, peer, check, deadline)
            } else {
                server_handshake(server, tcp, peer, check, deadline)
            }
        })
    }

    /// The rustls configuration of the connections this endpoint opens, for a caller that runs
    /// a `rustls::ClientConnection` itself (non-blocking I/O, as gc-bench's load generator does)
    /// instead of [`TlsConfig::connect`]. Its verifier takes any certificate whose key signs the
    /// handshake: such a caller must check the pin itself once the handshake is over
    /// ([`presented_fingerprint`]), before a byte of GC/1 goes either way.
    pub fn client_config(&self) -> Arc<ClientConfig> {
        Arc::clone(&self.client)
    }

    /// The rustls configuration of the connections this endpoint accepts (`None` without an
    /// identity), for a caller that runs a `rustls::ServerConnection` itself instead of
    /// [`TlsConfig::accept`]. With [`ClientAuth::Required`] the handshake demands a certificate
    /// whose key signs it, any certificate: the caller checks the pin ([`presented_fingerprint`]).
    pub fn server_config(&self) -> Option<Arc<ServerConfig>> {
        self.server.clone()
    }
}

/// The fingerprint of the certificate the peer of a finished handshake presented (its leaf), or
/// `None` if it presented none: what a [`PeerCheck::Pinned`] is compared with.
pub fn presented_fingerprint(conn: &rustls::CommonState) -> Option<Fingerprint> {
    conn.peer_certificates()
        .and_then(|certs| certs.first())
        .map(|leaf| Fingerprint::of_der(leaf.as_ref()))
}

/// Whether the connection on `tcp` starts a TLS handshake: waits (until `deadline`) for its
/// first byte and looks at it without taking it. `Ok(None)`: the peer closed without a byte.
pub fn starts_with_tls(tcp: &TcpStream, deadline: Instant) -> io::Result<Option<bool>> {
    let mut byte = [0u8; 1];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        tcp.set_read_timeout(Some(left.max(MIN_TIMEOUT)))?;
        match tcp.peek(&mut byte) {
            Ok(0) => return Ok(None),
            Ok(_) => return Ok(Some(byte[0] == TLS_HANDSHAKE_BYTE)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) => return Err(e),
        }
    }
}

fn io_error(peer: &str, source: io::Error) -> NetError {
    NetError::Protocol(gc_protocol::ProtocolError::Io {
        peer: peer.to_owned(),
        source,
    })
}

fn tls_error(peer: &str, e: &rustls::Error) -> NetError {
    NetError::Tls {
        peer: peer.to_owned(),
        detail: e.to_string(),
    }
}

/// The client side of a handshake. Never inlined: its locals (the connection, kilobytes of
/// them) are then only on the stack of the thread that runs it, not in the frame of
/// [`TlsConfig::connect`] on the thread that waits, whose touched stack pages stay resident for
/// as long as that thread lives (a session's heartbeat thread: the session's whole life).
#[inline(never)]
fn client_handshake(
    config: &Arc<ClientConfig>,
    ip: std::net::IpAddr,
    tcp: TcpStream,
    peer: &str,
    check: PeerCheck,
    deadline: Instant,
) -> Result<Stream, NetError> {
    // The key shares are made here: part of the handshake's stack.
    let conn = ClientConnection::new(Arc::clone(config), ServerName::IpAddress(ip.into()))
        .map_err(|e| tls_error(peer, &e))?;
    finish(Connection::Client(conn), tcp, peer, check, deadline)
}

/// The server side of a handshake; never inlined, as [`client_handshake`].
#[inline(never)]
fn server_handshake(
    config: &Arc<ServerConfig>,
    tcp: TcpStream,
    peer: &str,
    check: PeerCheck,
    deadline: Instant,
) -> Result<Stream, NetError> {
    let conn = ServerConnection::new(Arc::clone(config)).map_err(|e| tls_error(peer, &e))?;
    finish(Connection::Server(conn), tcp, peer, check, deadline)
}

/// The client side of a lean handshake; never inlined, as [`client_handshake`].
#[inline(never)]
fn lean_client_handshake(
    config: &Arc<ClientConfig>,
    ip: std::net::IpAddr,
    tcp: TcpStream,
    peer: &str,
    check: PeerCheck,
    deadline: Instant,
) -> Result<Stream, NetError> {
    let conn =
        UnbufferedClientConnection::new(Arc::clone(config), ServerName::IpAddress(ip.into()))
            .map_err(|e| tls_error(peer, &e))?;
    let lean = lean::Lean::handshake(conn, tcp, peer, deadline)?;
    checked(Inner::Lean(Box::new(lean)), peer, check)
}

/// The server side of a lean handshake; never inlined, as [`client_handshake`].
#[inline(never)]
fn lean_server_handshake(
    config: &Arc<ServerConfig>,
    tcp: TcpStream,
    peer: &str,
    check: PeerCheck,
    deadline: Instant,
) -> Result<Stream, NetError> {
    let conn =
        UnbufferedServerConnection::new(Arc::clone(config)).map_err(|e| tls_error(peer, &e))?;
    let lean = lean::Lean::handshake(conn, tcp, peer, deadline)?;
    checked(Inner::Lean(Box::new(lean)), peer, check)
}

/// Completes the handshake before `deadline`, then applies `check`.
fn finish(
    mut conn: Connection,
    tcp: TcpStream,
    peer: &str,
    check: PeerCheck,
    deadline: Instant,
) -> Result<Stream, NetError> {
    // The first bytes the peer sends are kept: a peer that answers in plain GC/1 (a server with
    // `--tls off`, or one refusing the connection before any handshake) says why in words.
    let mut io = Recording {
        tcp,
        first: Vec::new(),
        handshake: Handshake::default(),
    };
    while conn.is_handshaking() {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(NetError::Protocol(gc_protocol::ProtocolError::TimedOut {
                peer: peer.to_owned(),
            }));
        }
        let left = left.max(MIN_TIMEOUT);
        io.tcp
            .set_read_timeout(Some(left))
            .and_then(|()| io.tcp.set_write_timeout(Some(left)))
            .map_err(|e| io_error(peer, e))?;
        match conn.complete_io(&mut io) {
            Ok((0, 0)) if conn.is_handshaking() && conn.wants_read() => {
                return Err(handshake_eof(peer, &io.first));
            }
            Ok(_) => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(handshake_failed(peer, e, &io.first)),
        }
    }
    let inner = Inner::Tls(Box::new(TlsStream {
        conn,
        tcp: io.tcp,
        handshake: io.handshake,
    }));
    checked(inner, peer, check)
}

/// The stream of a finished handshake, if its peer's certificate passes `check`.
fn checked(inner: Inner, peer: &str, check: PeerCheck) -> Result<Stream, NetError> {
    let stream = Stream { inner, count: None };
    if let PeerCheck::Pinned(expected) = check {
        match stream.peer_fingerprint() {
            Some(presented) if presented == expected => {}
            presented => {
                return Err(NetError::WrongPeer {
                    peer: peer.to_owned(),
                    expected,
                    presented,
                });
            }
        }
    }
    Ok(stream)
}

/// The socket during a handshake, keeping the first bytes read from it.
struct Recording {
    tcp: TcpStream,
    first: Vec<u8>,
    handshake: Handshake,
}

/// The bytes a handshake moved over the socket, added to a [`ByteCount`] given later.
#[derive(Clone, Copy, Debug, Default)]
struct Handshake {
    received: u64,
    sent: u64,
}

/// How much of a plain-text answer is kept for the error message.
const RECORDED: usize = 512;

impl Read for Recording {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.tcp.read(buf)?;
        let keep = n.min(RECORDED.saturating_sub(self.first.len()));
        self.first.extend_from_slice(&buf[..keep]);
        self.handshake.received += n as u64;
        Ok(n)
    }
}

impl Write for Recording {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.tcp.write(buf)?;
        self.handshake.sent += n as u64;
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.tcp.flush()
    }
}

/// What the peer said, if it answered in plain GC/1 (`Err <code> <text>`): `code: text`.
fn plain_answer(first: &[u8]) -> Option<String> {
    let line = first.split(|&b| b == b'\n').next()?;
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    ErrorFrame::parse(line)
        .ok()
        .map(|e| format!("`Err {}`: {}", e.code, e.text))
}

const NOT_TLS: &str = "does it speak TLS? a plain GC/1 peer, or a server with --tls off, does not";

/// The peer closed during the handshake: say what it most likely is.
fn handshake_eof(peer: &str, first: &[u8]) -> NetError {
    NetError::Tls {
        peer: peer.to_owned(),
        detail: match plain_answer(first) {
            Some(line) => format!("answered in plain text instead of TLS: {line}"),
            None => format!("closed the connection during the TLS handshake ({NOT_TLS})"),
        },
    }
}

/// A handshake error, in words: rustls reports it as `InvalidData` carrying its own error.
fn handshake_failed(peer: &str, e: io::Error, first: &[u8]) -> NetError {
    let detail = match e
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
    {
        Some(rustls::Error::InvalidMessage(_))
        | Some(rustls::Error::InappropriateMessage { .. }) => match plain_answer(first) {
            Some(line) => format!("answered in plain text instead of TLS: {line}"),
            None => format!("did not answer with TLS ({NOT_TLS})"),
        },
        Some(inner) => format!("TLS handshake failed: {inner}"),
        None => format!("TLS handshake failed: {e}"),
    };
    NetError::Tls {
        peer: peer.to_owned(),
        detail,
    }
}

// ───────────────────────────── verifiers ─────────────────────────────

/// Accepts any certificate whose key signs the handshake (TLS 1.3 only); the fingerprint pin is
/// checked after the handshake ([`PeerCheck`]).
#[derive(Debug)]
struct SignedBy {
    algorithms: WebPkiSupportedAlgorithms,
}

impl SignedBy {
    fn verify13(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.algorithms)
    }
}

impl ServerCertVerifier for SignedBy {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

impl ClientCertVerifier for SignedBy {
    fn root_hint_subjects(&self) -> &[DistinguishedName] {
        &[]
    }

    fn verify_client_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _now: UnixTime,
    ) -> Result<ClientCertVerified, rustls::Error> {
        Ok(ClientCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::PeerIncompatible(
            rustls::PeerIncompatible::Tls12NotOffered,
        ))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.verify13(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

// ───────────────────────────── the stream ─────────────────────────────

/// A connection's byte stream: plain TCP, or TLS over it. The framing above reads and writes
/// both the same way. With a [`ByteCount`] ([`Stream::count_into`]) it adds up the bytes that
/// cross its socket: one atomic add per socket read or write, ciphertext under TLS.
#[derive(Debug)]
pub struct Stream {
    inner: Inner,
    count: Option<Arc<ByteCount>>,
}

#[derive(Debug)]
enum Inner {
    /// Plain GC/1.
    Plain(TcpStream),
    /// TLS 1.3, after its handshake.
    Tls(Box<TlsStream>),
    /// TLS 1.3 on a kept connection, through rustls' unbuffered API (see `lean`).
    Lean(Box<dyn lean::LeanStream>),
}

/// Bytes that crossed the sockets of the streams counted into it, each way: shared by many
/// streams, and read at any time (a metrics scrape).
#[derive(Debug, Default)]
pub struct ByteCount {
    received: AtomicU64,
    sent: AtomicU64,
}

impl ByteCount {
    /// Bytes read from the sockets so far.
    pub fn received(&self) -> u64 {
        self.received.load(Ordering::Relaxed)
    }

    /// Bytes written to the sockets so far.
    pub fn sent(&self) -> u64 {
        self.sent.load(Ordering::Relaxed)
    }

    fn add_received(&self, n: u64) {
        self.received.fetch_add(n, Ordering::Relaxed);
    }

    fn add_sent(&self, n: u64) {
        self.sent.fetch_add(n, Ordering::Relaxed);
    }
}

/// A TLS connection and its socket.
pub struct TlsStream {
    conn: Connection,
    tcp: TcpStream,
    /// What the handshake moved, for the count given after it.
    handshake: Handshake,
}

impl fmt::Debug for TlsStream {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsStream")
            .field("tcp", &self.tcp)
            .finish_non_exhaustive()
    }
}

impl Stream {
    /// Plain GC/1 on `tcp`.
    pub fn plain(tcp: TcpStream) -> Self {
        Self {
            inner: Inner::Plain(tcp),
            count: None,
        }
    }

    /// Counts the bytes crossing the socket from now on into `count` (instead of any count
    /// given before), and those of the TLS handshake not counted yet.
    pub fn count_into(&mut self, count: Arc<ByteCount>) {
        if let Inner::Tls(tls) = &mut self.inner {
            // Taken, so that a second count_into does not count the handshake twice.
            let handshake = std::mem::take(&mut tls.handshake);
            count.add_received(handshake.received);
            count.add_sent(handshake.sent);
        }
        if let Inner::Lean(lean) = &mut self.inner {
            let handshake = lean.take_handshake();
            count.add_received(handshake.received);
            count.add_sent(handshake.sent);
        }
        self.count = Some(count);
    }

    /// The socket underneath (for its addresses, timeouts, and shutting it down).
    pub fn tcp(&self) -> &TcpStream {
        match &self.inner {
            Inner::Plain(tcp) => tcp,
            Inner::Tls(tls) => &tls.tcp,
            Inner::Lean(lean) => lean.tcp(),
        }
    }

    /// Whether it is TLS.
    pub fn is_tls(&self) -> bool {
        !matches!(self.inner, Inner::Plain(_))
    }

    /// The fingerprint of the certificate the peer presented (TLS only, and only when it
    /// presented one).
    pub fn peer_fingerprint(&self) -> Option<Fingerprint> {
        match &self.inner {
            Inner::Plain(_) => None,
            Inner::Tls(tls) => presented_fingerprint(&tls.conn),
            Inner::Lean(lean) => presented_fingerprint(lean.common()),
        }
    }

    /// What a SCRAM login on this connection is bound to: its TLS session's `tls-exporter`
    /// value, or nothing on plain GC/1 and on a lean stream (which cannot export it).
    pub fn binding(&self) -> Binding {
        match &self.inner {
            Inner::Plain(_) | Inner::Lean(_) => Binding::Unbound,
            Inner::Tls(tls) => tls
                .conn
                .export_keying_material([0u8; 32], TLS_EXPORTER_LABEL, None)
                .map_or(Binding::Unbound, Binding::TlsExporter),
        }
    }
}

#[cfg(test)]
impl Stream {
    /// What a lean stream's buffers hold (`None`: not a lean stream).
    fn lean_held(&self) -> Option<usize> {
        match &self.inner {
            Inner::Lean(lean) => Some(lean.held()),
            _ => None,
        }
    }
}

impl Read for Stream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let count = self.count.as_deref();
        match &mut self.inner {
            Inner::Plain(tcp) => {
                let n = tcp.read(buf)?;
                if let Some(count) = count {
                    count.add_received(n as u64);
                }
                Ok(n)
            }
            Inner::Tls(tls) => tls.read_counted(buf, count),
            Inner::Lean(lean) => lean.read_counted(buf, count),
        }
    }
}

impl Write for Stream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let count = self.count.as_deref();
        match &mut self.inner {
            Inner::Plain(tcp) => {
                let n = tcp.write(buf)?;
                if let Some(count) = count {
                    count.add_sent(n as u64);
                }
                Ok(n)
            }
            Inner::Tls(tls) => tls.write_counted(buf, count),
            Inner::Lean(lean) => lean.write_counted(buf, count),
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        let count = self.count.as_deref();
        match &mut self.inner {
            Inner::Plain(tcp) => tcp.flush(),
            Inner::Tls(tls) => tls.flush_counted(count),
            Inner::Lean(lean) => lean.flush_counted(count),
        }
    }
}

impl gc_protocol::io::TimeoutStream for Stream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_read_timeout(timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.tcp().set_write_timeout(timeout)
    }
}

impl TlsStream {
    /// Sends what the TLS layer has queued (records, alerts).
    fn push(&mut self, count: Option<&ByteCount>) -> io::Result<()> {
        while self.conn.wants_write() {
            let n = self.conn.write_tls(&mut self.tcp)?;
            if let Some(count) = count {
                count.add_sent(n as u64);
            }
        }
        Ok(())
    }

    /// Reads plaintext, as `Read::read` on a socket would.
    fn read_counted(&mut self, buf: &mut [u8], count: Option<&ByteCount>) -> io::Result<usize> {
        // Plaintext left over from before, less than the caller takes: what has arrived since
        // goes with it, as it would from a plain socket.
        if let Ok(state) = self.conn.process_new_packets() {
            let have = state.plaintext_bytes_to_read();
            if have > 0 && have < buf.len() {
                self.take_arrived(have, buf.len(), count);
            }
        }
        loop {
            match self.conn.reader().read(buf) {
                Ok(n) => return Ok(n),
                // No plaintext yet: read more records.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                Err(e) => return Err(e),
            }
            // Queued records (an alert, a key update) go first; a peer that stopped reading
            // may still have sent something to read, so a failure here is for the next write
            // to report.
            let _ = self.push(count);
            let mut socket = SocketRead::waiting(&self.tcp);
            let n = self.conn.read_tls(&mut socket)?;
            if let Some(count) = count {
                count.add_received(n as u64);
            }
            if n == 0 {
                // The peer closed; the reader now reports whether it said so first.
                self.conn
                    .process_new_packets()
                    .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
                return match self.conn.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    other => other,
                };
            }
            let drained = socket.drained;
            let have = self
                .conn
                .process_new_packets()
                .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?
                .plaintext_bytes_to_read();
            if have > 0 && have < buf.len() && !drained {
                self.take_arrived(have, buf.len(), count);
            }
        }
    }
}

impl TlsStream {
    /// With `have` bytes of plaintext, reads on without waiting what else has arrived, up to
    /// `wanted` bytes: one socket read takes a few KiB of records, and a peer that pipelines
    /// sends more at a time. So a read returns what has arrived, as on a plain socket (the
    /// server stores every `Msg` one read brings with one commit, and sizes its buffer by
    /// whether reads fill it). Whatever stops it (nothing more yet, the end, an error, rustls'
    /// plaintext limit) is for the next read to find.
    fn take_arrived(&mut self, mut have: usize, wanted: usize, count: Option<&ByteCount>) {
        while have < wanted {
            let mut socket = SocketRead::arrived(&self.tcp);
            match self.conn.read_tls(&mut socket) {
                Ok(n) if n > 0 => {
                    if let Some(count) = count {
                        count.add_received(n as u64);
                    }
                }
                _ => return,
            }
            match self.conn.process_new_packets() {
                Ok(state) => have = state.plaintext_bytes_to_read(),
                Err(_) => return,
            }
            if socket.drained {
                return;
            }
        }
    }
}

/// One socket read for rustls, waiting as the socket does or not at all, that tells whether it
/// took all there was (fewer bytes than asked for).
struct SocketRead<'a> {
    tcp: &'a TcpStream,
    wait: bool,
    drained: bool,
}

impl<'a> SocketRead<'a> {
    /// A read that waits (up to the socket's timeout).
    fn waiting(tcp: &'a TcpStream) -> Self {
        Self {
            tcp,
            wait: true,
            drained: false,
        }
    }

    /// A read of what has arrived only (`WouldBlock` if nothing has).
    fn arrived(tcp: &'a TcpStream) -> Self {
        Self {
            tcp,
            wait: false,
            drained: false,
        }
    }
}

impl Read for SocketRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let asked = buf.len();
        let n = if self.wait {
            (&mut &*self.tcp).read(buf)?
        } else {
            rustix::net::recv(self.tcp, &mut *buf, rustix::net::RecvFlags::DONTWAIT)
                .map(|(received, _)| received)
                .map_err(io::Error::from)?
        };
        self.drained = n < asked;
        Ok(n)
    }
}

impl TlsStream {
    /// Takes plaintext to send, as `Write::write` on a socket would.
    fn write_counted(&mut self, buf: &[u8], count: Option<&ByteCount>) -> io::Result<usize> {
        // Records still queued from before go first (an error here has taken nothing).
        self.push(count)?;
        let n = self.conn.writer().write(buf)?;
        // The data is taken now: a failure to send it yet must not be reported as a failure to
        // take it, or the caller would send it twice. `flush`, or the next write, sends the rest
        // and reports what is wrong.
        let _ = self.push(count);
        Ok(n)
    }

    fn flush_counted(&mut self, count: Option<&ByteCount>) -> io::Result<()> {
        self.conn.writer().flush()?;
        self.push(count)
    }
}

#[cfg(test)]
mod tests;
