//! Opening connections and listening: from a chosen local address, within a deadline, with
//! Nagle's algorithm off, dual-stack where the address is `::`.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

use crate::Conn;
use crate::error::NetError;
use crate::tls::{ByteCount, PeerCheck, Stream, TlsConfig};
use crate::unblock::{Registration, Unblocker};

/// Socket timeouts of zero mean "forever" to the OS; never set one shorter than this.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// How long waking a blocked `accept` may take (a connection to our own listener).
const WAKE_TIMEOUT: Duration = Duration::from_millis(500);

/// How long connects and exchanges may take.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Timeouts {
    /// Opening a connection.
    pub connect: Duration,
    /// Each exchange (writing a request and reading its reply) once connected.
    pub io: Duration,
}

impl Timeouts {
    /// The same timeout for connecting and for each exchange.
    pub fn new(io: Duration) -> Self {
        Self { connect: io, io }
    }

    /// A deadline one I/O timeout from now: what every read and write of an exchange gets.
    pub fn deadline(&self) -> Instant {
        Instant::now() + self.io
    }
}

/// Opens a TCP connection to `addr` within `timeout`, from `local` (port chosen by the OS) when
/// given, with Nagle's algorithm off: GC/1 exchanges are small request/reply frames, and Nagle
/// plus delayed ACKs would add ~40 ms stalls.
pub fn connect_from(
    local: Option<IpAddr>,
    addr: SocketAddr,
    timeout: Duration,
) -> io::Result<TcpStream> {
    let timeout = timeout.max(MIN_TIMEOUT);
    let stream = match local {
        None => TcpStream::connect_timeout(&addr, timeout)?,
        Some(local) => {
            if local.is_ipv4() != addr.is_ipv4() {
                return Err(io::Error::new(
                    io::ErrorKind::InvalidInput,
                    format!(
                        "the local address {local} and the server address {addr} are of \
                         different IP families"
                    ),
                ));
            }
            let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
            socket.bind(&SocketAddr::new(local, 0).into())?;
            socket.connect_timeout(&addr.into(), timeout)?;
            socket.into()
        }
    };
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// How one endpoint opens its connections: from which local address, within which timeouts,
/// plain or over TLS. Built once at start and shared by everything that connects.
#[derive(Clone, Debug)]
pub struct Connector {
    /// The source address (`None`: the OS picks).
    pub local: Option<IpAddr>,
    /// Connect and I/O timeouts.
    pub timeouts: Timeouts,
    /// TLS for every connection it opens, or plain GC/1.
    tls: Option<Arc<TlsConfig>>,
    /// Where its connections count the bytes crossing their sockets, if anywhere.
    count: Option<Arc<ByteCount>>,
    /// Its TLS connections are lean ([`TlsConfig::connect_lean`]).
    lean: bool,
}

impl Connector {
    /// A plain connector from `local` with `timeouts`.
    pub fn new(local: Option<IpAddr>, timeouts: Timeouts) -> Self {
        Self {
            local,
            timeouts,
            tls: None,
            count: None,
            lean: false,
        }
    }

    /// The same connector, over TLS.
    pub fn with_tls(mut self, tls: Arc<TlsConfig>) -> Self {
        self.tls = Some(tls);
        self
    }

    /// The same connector, its TLS connections lean ([`TlsConfig::connect_lean`]): for an
    /// endpoint whose connections are kept open and never carry a login.
    pub fn lean(mut self) -> Self {
        self.lean = true;
        self
    }

    /// The same connector, its connections counting the bytes crossing their sockets (TLS
    /// handshake included) into `count`.
    pub fn with_count(mut self, count: Arc<ByteCount>) -> Self {
        self.count = Some(count);
        self
    }

    /// Whether its connections are TLS.
    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a framed connection to `addr` (named `peer` in errors), its peer checked by `check`
    /// when it is TLS.
    pub fn connect(&self, addr: SocketAddr, check: PeerCheck) -> Result<Conn, NetError> {
        self.open(addr, check, &Unblocker::new())
            .map(|(conn, _)| conn)
    }

    /// Opens a framed connection to `addr` and registers it with `unblocker` (before its TLS
    /// handshake, which a stop can then cut short too), so whoever stops that unblocker cuts it;
    /// it stays registered while the registration lives.
    pub fn open(
        &self,
        addr: SocketAddr,
        check: PeerCheck,
        unblocker: &Unblocker,
    ) -> Result<(Conn, Registration), NetError> {
        self.open_named(addr, &addr.to_string(), check, unblocker)
    }

    /// [`Connector::open`] with the peer's name given (callers that keep it formatted).
    pub fn open_named(
        &self,
        addr: SocketAddr,
        peer: &str,
        check: PeerCheck,
        unblocker: &Unblocker,
    ) -> Result<(Conn, Registration), NetError> {
        let tcp = connect_from(self.local, addr, self.timeouts.connect)
            .map_err(|source| NetError::Connect { addr, source })?;
        let registration = unblocker.register(&tcp);
        let mut stream = match &self.tls {
            None => Stream::plain(tcp),
            Some(tls) if self.lean => tls.connect_lean(tcp, peer, check, self.deadline())?,
            Some(tls) => tls.connect(tcp, peer, check, self.deadline())?,
        };
        if let Some(count) = &self.count {
            stream.count_into(Arc::clone(count));
        }
        Ok((Conn::new(stream, peer.to_owned()), registration))
    }

    /// A deadline one I/O timeout from now.
    pub fn deadline(&self) -> Instant {
        self.timeouts.deadline()
    }
}

/// Binds a listener to `addr` with SO_REUSEADDR (a restarted program can listen again at once,
/// even while old connections linger in TIME_WAIT). On `::` it is dual-stack (IPv6 and
/// IPv4-mapped connections), or, where the host has no IPv6, an IPv4 listener on `0.0.0.0`
/// instead.
pub fn listen(addr: SocketAddr, backlog: i32) -> io::Result<TcpListener> {
    let bind = |addr: SocketAddr, dual: bool| -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
        if dual {
            socket.set_only_v6(false)?;
        }
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(backlog)?;
        Ok(socket.into())
    };
    if addr.ip() != IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        return bind(addr, false);
    }
    match bind(addr, true) {
        Err(e) if e.kind() != io::ErrorKind::AddrInUse => {
            tracing::debug!("no IPv6 listener on {addr} ({e}); listening on IPv4 only");
            bind(
                SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port()),
                false,
            )
        }
        other => other,
    }
}

/// Where to connect to reach a listener bound to `addr`: a wildcard address is reached on
/// loopback. A listener on `::` is dual-stack ([`listen`]), so IPv4 loopback reaches it even
/// where `::1` is disabled.
pub fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let ip = if addr.ip().is_unspecified() {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        addr.ip()
    };
    SocketAddr::new(ip, addr.port())
}

/// Wakes a thread blocked in `accept` on a listener bound to `addr` by connecting to it; the
/// thread then sees that it should stop. On Linux, shutting the listening socket down (when the
/// caller holds it) wakes it too; this works wherever the listener is.
pub fn wake_accept(addr: SocketAddr) {
    let _ = TcpStream::connect_timeout(&wake_addr(addr), WAKE_TIMEOUT);
}

/// How much lower than chat a bulk transfer's thread runs (a nice value: with the CPU taken,
/// such a thread gets about a tenth of what a chat thread gets; with the CPU free, all of it).
pub const BULK_NICENESS: i32 = 10;

/// Lowers the calling thread's CPU priority by [`BULK_NICENESS`], for a thread that moves a
/// file: a big transfer must not slow the conversation down, on the server (heartbeat and
/// delivery threads) or in a client (its screen). On Linux a nice value is a thread's own, so
/// nothing else of the process changes. Only a preference: if it cannot be set, the thread
/// goes on as it is.
pub fn lower_thread_priority() {
    let tid = rustix::thread::gettid();
    let now = rustix::process::getpriority_process(Some(tid)).unwrap_or(0);
    if let Err(e) = rustix::process::setpriority_process(Some(tid), now + BULK_NICENESS) {
        tracing::debug!("cannot lower a transfer thread's priority: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn connects_from_the_chosen_source() {
        let l = TcpListener::bind((LOCAL, 0)).unwrap();
        let src: IpAddr = "127.0.0.9".parse().unwrap();
        let s = connect_from(Some(src), l.local_addr().unwrap(), Duration::from_secs(2)).unwrap();
        assert_eq!(s.local_addr().unwrap().ip(), src);
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer.ip(), src);
        assert!(s.nodelay().unwrap());
        let any = connect_from(None, l.local_addr().unwrap(), Duration::ZERO).unwrap();
        assert!(any.nodelay().unwrap());
    }

    #[test]
    fn a_source_of_another_family_is_refused_before_connecting() {
        let l = TcpListener::bind((LOCAL, 0)).unwrap();
        let v6: IpAddr = Ipv6Addr::LOCALHOST.into();
        let err =
            connect_from(Some(v6), l.local_addr().unwrap(), Duration::from_secs(1)).unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
        assert!(err.to_string().contains("different IP families"), "{err}");
    }

    #[test]
    fn a_refused_connect_names_the_address() {
        let l = TcpListener::bind((LOCAL, 0)).unwrap();
        let addr = l.local_addr().unwrap();
        drop(l);
        let connector = Connector::new(None, Timeouts::new(Duration::from_secs(1)));
        let err = connector
            .connect(addr, crate::tls::PeerCheck::Any)
            .unwrap_err();
        assert!(matches!(err, NetError::Connect { addr: a, .. } if a == addr));
        assert!(err.to_string().contains(&addr.to_string()), "{err}");
    }

    #[test]
    fn a_wildcard_listener_takes_both_families_and_can_be_woken() {
        let l = listen(SocketAddr::new(Ipv6Addr::UNSPECIFIED.into(), 0), 8).unwrap();
        let port = l.local_addr().unwrap().port();
        let from_v4 = TcpStream::connect((LOCAL, port)).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(
            peer.ip().to_canonical(),
            from_v4.local_addr().unwrap().ip().to_canonical()
        );
        wake_accept(l.local_addr().unwrap());
        l.accept().unwrap();
        if l.local_addr().unwrap().is_ipv6()
            && let Ok(from_v6) = TcpStream::connect((Ipv6Addr::LOCALHOST, port))
        {
            let (_, peer) = l.accept().unwrap();
            assert_eq!(peer.ip(), from_v6.local_addr().unwrap().ip());
        }
    }

    #[test]
    fn wake_addresses() {
        let v4: SocketAddr = "0.0.0.0:7".parse().unwrap();
        let v6: SocketAddr = "[::]:7".parse().unwrap();
        let fixed: SocketAddr = "127.0.0.5:7".parse().unwrap();
        assert_eq!(wake_addr(v4), "127.0.0.1:7".parse().unwrap());
        assert_eq!(wake_addr(v6), "127.0.0.1:7".parse().unwrap());
        assert_eq!(wake_addr(fixed), fixed);
    }

    #[test]
    fn a_transfer_thread_runs_below_the_others() {
        // The nice value of a thread, as the kernel shows it (field 19 of its stat line).
        fn nice(tid: rustix::process::Pid) -> i32 {
            let stat =
                std::fs::read_to_string(format!("/proc/self/task/{}/stat", tid.as_raw_nonzero()))
                    .unwrap();
            let after = &stat[stat.rfind(')').unwrap() + 2..];
            after.split(' ').nth(16).unwrap().parse().unwrap()
        }
        let before = nice(rustix::thread::gettid());
        let lowered = std::thread::spawn(|| {
            lower_thread_priority();
            nice(rustix::thread::gettid())
        })
        .join()
        .unwrap();
        assert_eq!(lowered, (before + BULK_NICENESS).min(19));
        assert_eq!(
            nice(rustix::thread::gettid()),
            before,
            "the other threads keep theirs"
        );
    }
}
