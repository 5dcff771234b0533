//! How a run's clients talk to the server: plain GC/1, or GC/2 over TLS 1.3 ([`Mode`]).
//!
//! With TLS the clients do what `gc-client` does: they pin the server's certificate on every
//! connection to its ports, say `Ping GC/2`, bind the SCRAM login to the TLS session and announce
//! the fingerprint of their callback certificate, and take the server's callbacks over mutual TLS,
//! demanding the server's certificate. One callback identity serves every client of an invocation
//! ([`ClientTls`]): the server only checks that a callback presents the fingerprint its client
//! announced.
//!
//! Sign-ins block, one exchange after another, and use gc-net's handshakes ([`Wire::connect`],
//! [`Wire::accept`]). The io threads and the senders wait for their sockets with epoll and poll,
//! which cannot see bytes a TLS library has already taken from the socket and decrypted; so they
//! run rustls themselves through a [`Pipe`], which reads and writes like the socket under it and
//! says what it holds ([`Pipe::buffered`], [`Pipe::wants_write`]).

use std::io::{self, Read, Write};
use std::net::{IpAddr, SocketAddr, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use gc_net::tls::{PeerCheck, Stream, TlsConfig, presented_fingerprint};
use gc_net::{ClientAuth, Conn, Identity};
use gc_protocol::scram::Binding;
use gc_protocol::signin::Channel;
use gc_protocol::{Fingerprint, VERSION, VERSION_TLS};
use rustls::pki_types::ServerName;
use rustls::{ClientConnection, Connection, ServerConfig, ServerConnection};

use crate::client::{STEP, connect_from};
use crate::error::BenchError;

/// Socket timeouts of zero mean "forever"; never set one shorter than this.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// The protocol a run's clients speak.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Plain GC/1 (a started server gets `--tls off`).
    Plain,
    /// GC/2 over TLS 1.3 (a started server gets `--tls required`).
    Tls,
}

impl Mode {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "plain",
            Self::Tls => "TLS",
        }
    }

    /// Whether it is TLS.
    pub fn is_tls(self) -> bool {
        self == Self::Tls
    }

    /// The `--tls` value a started server gets.
    pub fn server_tls(self) -> &'static str {
        match self {
            Self::Plain => "off",
            Self::Tls => "required",
        }
    }
}

/// The bench clients' callback identity and TLS setup, made once per invocation.
pub struct ClientTls {
    /// Connects to the server's ports; accepts callbacks demanding a certificate.
    config: TlsConfig,
    /// The same acceptor, for sessions the io threads run themselves.
    callbacks: Arc<ServerConfig>,
    /// What every client announces at login.
    fingerprint: Fingerprint,
}

impl std::fmt::Debug for ClientTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientTls")
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

impl ClientTls {
    /// A fresh callback identity (an Ed25519 key and a self-signed certificate) and its setup.
    pub fn new() -> Result<Self, BenchError> {
        let failed = |source| BenchError::Tls {
            what: "set up the clients' TLS".into(),
            source,
        };
        let identity = Identity::generate("gc-bench-client").map_err(failed)?;
        let config = TlsConfig::new(Some(&identity), ClientAuth::Required).map_err(failed)?;
        let callbacks = config.server_config().ok_or_else(|| BenchError::Tls {
            what: "set up the clients' TLS".into(),
            source: gc_net::NetError::Identity {
                path: None,
                detail: "no acceptor for the callbacks".into(),
            },
        })?;
        Ok(Self {
            config,
            callbacks,
            fingerprint: identity.fingerprint(),
        })
    }

    /// The fingerprint of the callback certificate, which clients announce at login.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }
}

/// The TLS side of a [`Wire`]: the clients' setup and the certificate of the run's server.
#[derive(Clone, Debug)]
struct Pinned {
    client: Arc<ClientTls>,
    server: Fingerprint,
}

/// How one run's clients reach its server: plain, or TLS pinned to the server's certificate.
#[derive(Clone, Debug, Default)]
pub struct Wire {
    tls: Option<Pinned>,
}

impl Wire {
    /// Plain GC/1.
    pub fn plain() -> Self {
        Self::default()
    }

    /// GC/2 over TLS to the server whose certificate has the fingerprint `server`.
    pub fn tls(client: Arc<ClientTls>, server: Fingerprint) -> Self {
        Self {
            tls: Some(Pinned { client, server }),
        }
    }

    /// Its mode.
    pub fn mode(&self) -> Mode {
        if self.tls.is_some() {
            Mode::Tls
        } else {
            Mode::Plain
        }
    }

    /// The version clients say in `Ping`.
    pub fn version(&self) -> &'static str {
        match self.tls {
            None => VERSION,
            Some(_) => VERSION_TLS,
        }
    }

    /// A framed connection to `to` from `ip` (with TLS: after the handshake, pinned), or an error
    /// about `what`.
    pub fn connect(&self, ip: IpAddr, to: SocketAddr, what: &str) -> Result<Conn, BenchError> {
        let tcp = connect_from(ip, to).map_err(|e| BenchError::io(what, e))?;
        let stream = match &self.tls {
            None => Stream::plain(tcp),
            Some(t) => t
                .client
                .config
                .connect(
                    tcp,
                    &to.to_string(),
                    PeerCheck::Pinned(t.server),
                    Instant::now() + STEP,
                )
                .map_err(|source| BenchError::Tls {
                    what: what.to_owned(),
                    source,
                })?,
        };
        Ok(Conn::new(stream, to.to_string()))
    }

    /// The channel a login on `conn` (from [`Wire::connect`]) is bound to.
    pub fn channel(&self, conn: &Conn) -> Result<Channel, BenchError> {
        let Some(t) = &self.tls else {
            return Ok(Channel::Plain);
        };
        match conn.get_ref().binding() {
            Binding::TlsExporter(binding) => Ok(Channel::Tls {
                binding,
                callback_fingerprint: t.client.fingerprint,
            }),
            Binding::Unbound => Err(BenchError::Invalid(
                "a TLS connection without a tls-exporter value".into(),
            )),
        }
    }

    /// A callback connection the server opened to a client's listener (the auth callback): with
    /// TLS after the handshake, which demands the server's certificate.
    pub fn accept(&self, tcp: TcpStream, peer: SocketAddr, what: &str) -> Result<Conn, BenchError> {
        let stream = match &self.tls {
            None => Stream::plain(tcp),
            Some(t) => t
                .client
                .config
                .accept(
                    tcp,
                    &peer.to_string(),
                    PeerCheck::Pinned(t.server),
                    Instant::now() + STEP,
                )
                .map_err(|source| BenchError::Tls {
                    what: what.to_owned(),
                    source,
                })?,
        };
        Ok(Conn::new(stream, peer.to_string()))
    }

    /// A connection to `to` from `ip` for a sender: with TLS after a handshake run here, before
    /// `deadline`, pinned. The socket blocks (for at most [`STEP`] until the caller sets its
    /// own timeouts).
    pub fn pipe_to(
        &self,
        ip: IpAddr,
        to: SocketAddr,
        deadline: Instant,
    ) -> Result<Pipe, BenchError> {
        let what = format!("connect to {to}");
        let tcp = connect_from(ip, to).map_err(|e| BenchError::io(&what, e))?;
        let Some(t) = &self.tls else {
            return Ok(Pipe::plain(tcp));
        };
        let name = ServerName::IpAddress(to.ip().into());
        let conn = ClientConnection::new(t.client.config.client_config(), name)
            .map_err(|e| BenchError::io(&what, io::Error::other(e)))?;
        let mut pipe = Pipe::tls(tcp, Connection::Client(conn), t.server);
        pipe.handshake(deadline.min(Instant::now() + STEP))
            .map_err(|e| BenchError::io(format!("TLS handshake with {to}"), e))?;
        Ok(pipe)
    }

    /// A callback connection the server opened, for the io threads: with TLS the handshake
    /// happens as its bytes come ([`Pipe`]'s reads).
    pub fn pipe_from(&self, tcp: TcpStream) -> io::Result<Pipe> {
        let Some(t) = &self.tls else {
            return Ok(Pipe::plain(tcp));
        };
        let conn =
            ServerConnection::new(Arc::clone(&t.client.callbacks)).map_err(io::Error::other)?;
        Ok(Pipe::tls(tcp, Connection::Server(conn), t.server))
    }
}

/// A socket carrying plain GC/1, or TLS driven here. Reads and writes behave as on the socket,
/// blocking or not: a read returns plaintext, `Ok(0)` at the end, `WouldBlock` when a
/// non-blocking socket has nothing; a write takes what it can (with TLS: all it takes is
/// encrypted, and what the socket does not take yet waits in [`Pipe::wants_write`] for the next
/// write or `flush`). TLS errors and a peer that is not the pinned one are `InvalidData`.
#[derive(Debug)]
pub struct Pipe {
    tcp: TcpStream,
    tls: Option<Box<HandTls>>,
}

/// A TLS session over a socket the [`Pipe`] owns, and the certificate its peer must have.
struct HandTls {
    conn: Connection,
    pin: Fingerprint,
    /// The peer's certificate was checked (the handshake is over).
    checked: bool,
    /// The last socket read took all there was.
    drained: bool,
}

impl std::fmt::Debug for HandTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HandTls")
            .field("pin", &self.pin)
            .field("checked", &self.checked)
            .finish_non_exhaustive()
    }
}

fn invalid(e: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e.to_string())
}

impl HandTls {
    /// Once the handshake is over, checks the peer's certificate (once): nothing it sends is
    /// read, and nothing is written to it, before.
    fn check(&mut self) -> io::Result<()> {
        if self.checked || self.conn.is_handshaking() {
            return Ok(());
        }
        match presented_fingerprint(&self.conn) {
            Some(presented) if presented == self.pin => {
                self.checked = true;
                Ok(())
            }
            presented => Err(invalid(format!(
                "the peer presented the certificate {}, not the pinned {}",
                presented.map_or_else(|| "(none)".to_owned(), |p| p.to_string()),
                self.pin
            ))),
        }
    }

    /// Processes the records read so far.
    fn process(&mut self) -> io::Result<rustls::IoState> {
        self.conn.process_new_packets().map_err(invalid)
    }

    /// Writes queued records until there are none or the socket takes no more.
    fn push(&mut self, tcp: &mut TcpStream) -> io::Result<()> {
        while self.conn.wants_write() {
            self.conn.write_tls(tcp)?;
        }
        Ok(())
    }
}

impl Pipe {
    /// Plain GC/1 on `tcp`.
    pub fn plain(tcp: TcpStream) -> Self {
        Self { tcp, tls: None }
    }

    /// TLS on `tcp` with `conn`, whose peer must present the certificate `pin`.
    fn tls(tcp: TcpStream, conn: Connection, pin: Fingerprint) -> Self {
        Self {
            tcp,
            tls: Some(Box::new(HandTls {
                conn,
                pin,
                checked: false,
                drained: false,
            })),
        }
    }

    /// The socket (for epoll, poll, options).
    pub fn tcp(&self) -> &TcpStream {
        &self.tcp
    }

    /// Whether TLS records wait for the socket to take them (the handshake's, or data the last
    /// writes encrypted): wait for it to be writable, then `flush`.
    pub fn wants_write(&self) -> bool {
        self.tls.as_ref().is_some_and(|t| t.conn.wants_write())
    }

    /// Whether the last read took all the socket had (it returned fewer bytes than asked for, or
    /// with TLS the socket read under it did): a reader woken by a level-triggered epoll may stop
    /// there instead of reading again only to hear `WouldBlock`. `short` says whether the last
    /// read returned fewer bytes than asked for.
    pub fn drained(&self, short: bool) -> bool {
        short && self.tls.as_ref().is_none_or(|t| t.drained)
    }

    /// Whether plaintext was read from the socket and not taken yet: a reader must read before it
    /// waits for the socket, which will not announce these bytes again.
    pub fn buffered(&mut self) -> io::Result<bool> {
        match &mut self.tls {
            None => Ok(false),
            Some(tls) => Ok(tls.process()?.plaintext_bytes_to_read() > 0),
        }
    }

    /// Runs a client handshake to its end on a blocking socket, before `deadline`, and checks
    /// the server's certificate. Nothing to do on plain GC/1.
    fn handshake(&mut self, deadline: Instant) -> io::Result<()> {
        let Some(tls) = &mut self.tls else {
            return Ok(());
        };
        while tls.conn.is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(io::ErrorKind::TimedOut.into());
            }
            let left = left.max(MIN_TIMEOUT);
            self.tcp.set_read_timeout(Some(left))?;
            self.tcp.set_write_timeout(Some(left))?;
            match tls.conn.complete_io(&mut self.tcp) {
                Ok((0, 0)) if tls.conn.is_handshaking() && tls.conn.wants_read() => {
                    return Err(io::Error::new(
                        io::ErrorKind::UnexpectedEof,
                        "the server closed the connection during the TLS handshake",
                    ));
                }
                Ok(_) => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) => {}
                Err(e) => return Err(e),
            }
        }
        tls.check()
    }
}

impl Read for Pipe {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.tcp.read(buf);
        };
        loop {
            tls.check()?;
            match tls.conn.reader().read(buf) {
                // No plaintext yet: read more records.
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {}
                // Plaintext, the end (`close_notify`, or a close without it: `UnexpectedEof`).
                other => return other,
            }
            // Records read are processed at once, so a complete record never waits unseen.
            let mut socket = SocketRead {
                tcp: &self.tcp,
                drained: false,
            };
            let n = tls.conn.read_tls(&mut socket)?;
            tls.drained = socket.drained;
            tls.process()?;
            if n == 0 {
                tls.check()?;
                return match tls.conn.reader().read(buf) {
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => Ok(0),
                    other => other,
                };
            }
        }
    }
}

/// A socket read that tells whether it took all there was (fewer bytes than asked for).
struct SocketRead<'a> {
    tcp: &'a TcpStream,
    drained: bool,
}

impl Read for SocketRead<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = (&mut &*self.tcp).read(buf)?;
        self.drained = n < buf.len();
        Ok(n)
    }
}

impl Write for Pipe {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        let Some(tls) = &mut self.tls else {
            return self.tcp.write(data);
        };
        tls.check()?;
        // Records still queued go first; if the socket takes none of them, nothing is taken.
        tls.push(&mut self.tcp)?;
        let n = tls.conn.writer().write(data)?;
        // Taken now: what the socket does not take yet goes at the next write or flush, which
        // report what is wrong (reporting it here would have the caller send the data twice).
        let _ = tls.push(&mut self.tcp);
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        match &mut self.tls {
            None => Ok(()),
            Some(tls) => tls.push(&mut self.tcp),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::TcpListener;
    use std::thread;

    use super::*;

    const T: Duration = Duration::from_secs(5);

    fn soon() -> Instant {
        Instant::now() + T
    }

    /// The server's side as gc-net runs it: its identity, and a TLS setup for its ports and its
    /// callbacks (it presents its certificate when a client's listener asks for one).
    fn server_tls() -> (TlsConfig, Fingerprint) {
        let id = Identity::generate("gc-server").expect("identity");
        let config = TlsConfig::new(Some(&id), ClientAuth::None).expect("config");
        (config, id.fingerprint())
    }

    fn listener() -> (TcpListener, SocketAddr) {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = l.local_addr().expect("addr");
        (l, addr)
    }

    /// Reads from a non-blocking pipe until `want` bytes came (or `T` passed), flushing
    /// handshake records as they are due (a test's loopback: the socket takes them at once).
    fn read_nonblocking(pipe: &mut Pipe, want: usize) -> io::Result<Vec<u8>> {
        let deadline = soon();
        let mut got = Vec::new();
        let mut buf = [0u8; 256];
        while got.len() < want && Instant::now() < deadline {
            match pipe.read(&mut buf) {
                Ok(0) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                    // Until the socket has more (or a while passed).
                    let mut fds = [rustix::event::PollFd::new(
                        pipe.tcp(),
                        rustix::event::PollFlags::IN,
                    )];
                    let wait = rustix::event::Timespec {
                        tv_sec: 0,
                        tv_nsec: 100_000_000,
                    };
                    let _ = rustix::event::poll(&mut fds, Some(&wait));
                }
                Err(e) => return Err(e),
            }
            match pipe.flush() {
                Err(e) if e.kind() != io::ErrorKind::WouldBlock => return Err(e),
                _ => {}
            }
        }
        Ok(got)
    }

    #[test]
    fn modes_name_the_servers_tls_setting() {
        assert_eq!(Mode::Plain.server_tls(), "off");
        assert_eq!(Mode::Tls.server_tls(), "required");
        assert!(Mode::Tls.is_tls() && !Mode::Plain.is_tls());
        assert_eq!(Wire::plain().mode(), Mode::Plain);
        assert_eq!(Wire::plain().version(), VERSION);
    }

    #[test]
    fn a_callback_pipe_takes_the_pinned_server_without_blocking() {
        let client = Arc::new(ClientTls::new().expect("client TLS"));
        let (server, server_fp) = server_tls();
        let wire = Wire::tls(Arc::clone(&client), server_fp);
        assert_eq!((wire.mode(), wire.version()), (Mode::Tls, VERSION_TLS));
        let (l, addr) = listener();
        let caller = thread::spawn(move || {
            let tcp = TcpStream::connect(addr).expect("connect");
            let mut stream = server
                .connect(tcp, "client", PeerCheck::Pinned(client.fingerprint), soon())
                .expect("handshake");
            stream.write_all(b"Ping one\n").expect("write");
            let mut reply = [0u8; 5];
            stream.read_exact(&mut reply).expect("read");
            reply
        });
        let (tcp, _) = l.accept().expect("accept");
        tcp.set_nonblocking(true).expect("nonblocking");
        let mut pipe = wire.pipe_from(tcp).expect("pipe");
        let got = read_nonblocking(&mut pipe, 9).expect("the caller's line");
        assert_eq!(got, b"Ping one\n");
        assert!(!pipe.buffered().expect("buffered"));
        assert_eq!(pipe.write(b"Pong\n").expect("write"), 5);
        pipe.flush().expect("flush");
        assert_eq!(&caller.join().expect("caller"), b"Pong\n");
    }

    #[test]
    fn a_callback_pipe_refuses_another_caller_before_reading_a_byte() {
        let client = Arc::new(ClientTls::new().expect("client TLS"));
        let (_, server_fp) = server_tls();
        let (impostor, _) = server_tls();
        let wire = Wire::tls(Arc::clone(&client), server_fp);
        let (l, addr) = listener();
        let caller = thread::spawn(move || {
            let tcp = TcpStream::connect(addr).expect("connect");
            if let Ok(mut stream) =
                impostor.connect(tcp, "client", PeerCheck::Pinned(client.fingerprint), soon())
            {
                let _ = stream.write_all(b"Ping one\n");
                let _ = stream.flush();
                let mut byte = [0u8; 1];
                let _ = stream.read(&mut byte);
            }
        });
        let (tcp, _) = l.accept().expect("accept");
        tcp.set_nonblocking(true).expect("nonblocking");
        let mut pipe = wire.pipe_from(tcp).expect("pipe");
        let err = read_nonblocking(&mut pipe, 1).expect_err("refused");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(err.to_string().contains("not the pinned"), "{err}");
        drop(pipe);
        caller.join().expect("caller");
    }

    #[test]
    fn a_sender_pipe_pins_the_server_and_shows_what_it_holds() {
        let client = Arc::new(ClientTls::new().expect("client TLS"));
        let (server, server_fp) = server_tls();
        let (l, addr) = listener();
        // The server answers one line with three, in one write.
        let accepting = thread::spawn(move || {
            let (tcp, peer) = l.accept().expect("accept");
            let mut stream = server
                .accept(tcp, &peer.to_string(), PeerCheck::Any, soon())
                .expect("handshake");
            let mut line = [0u8; 4];
            stream.read_exact(&mut line).expect("read");
            stream.write_all(b"one\ntwo\nsix\n").expect("write");
            stream.flush().expect("flush");
            line
        });
        let wire = Wire::tls(Arc::clone(&client), server_fp);
        let mut pipe = wire
            .pipe_to(addr.ip(), addr, soon())
            .expect("handshake with the pinned server");
        pipe.write_all(b"Msg\n").expect("write");
        pipe.flush().expect("flush");
        assert_eq!(&accepting.join().expect("server"), b"Msg\n");
        // A small buffer leaves plaintext behind, which the socket will not announce.
        let mut four = [0u8; 4];
        pipe.read_exact(&mut four).expect("read");
        assert_eq!(&four, b"one\n");
        assert!(pipe.buffered().expect("buffered"));
        let mut rest = [0u8; 8];
        pipe.read_exact(&mut rest).expect("read");
        assert_eq!(&rest, b"two\nsix\n");
        assert!(!pipe.buffered().expect("buffered"));

        // Another server: refused at the handshake.
        let (impostor, _) = server_tls();
        let (l, addr) = listener();
        let accepting = thread::spawn(move || {
            let (tcp, peer) = l.accept().expect("accept");
            let _ = impostor.accept(tcp, &peer.to_string(), PeerCheck::Any, soon());
        });
        let err = wire
            .pipe_to(addr.ip(), addr, soon())
            .expect_err("another certificate");
        assert!(err.to_string().contains("not the pinned"), "{err}");
        accepting.join().expect("server");
    }
}
