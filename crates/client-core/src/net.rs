//! Sockets: resolving the server, connecting from a chosen source address, binding the callback
//! listeners.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, TcpStream, ToSocketAddrs};
use std::time::Duration;

use socket2::{Domain, Protocol, Socket, Type};

use crate::config::PortChoice;
use crate::error::ClientError;

/// Resolves `server` (an IP address or a host name) to its addresses, keeping only those of the
/// family of `bind` when it is set.
pub fn resolve(server: &str, port: u16, bind: Option<IpAddr>) -> Result<Vec<IpAddr>, ClientError> {
    let host = server.trim();
    // `[::1]` style as well as bare IPv6.
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    let found: Vec<IpAddr> = match bare.parse::<IpAddr>() {
        Ok(ip) => vec![ip],
        Err(_) => (bare, port)
            .to_socket_addrs()
            .map_err(|e| ClientError::Resolve {
                server: server.to_owned(),
                detail: e.to_string(),
            })?
            .map(|a| a.ip())
            .collect(),
    };
    let mut ips: Vec<IpAddr> = Vec::new();
    for ip in found {
        let family_ok = bind.is_none_or(|b| b.is_ipv4() == ip.is_ipv4());
        if family_ok && !ips.contains(&ip) {
            ips.push(ip);
        }
    }
    if ips.is_empty() {
        return Err(ClientError::Resolve {
            server: server.to_owned(),
            detail: match bind {
                Some(b) => format!("no address of the same family as the local address {b}"),
                None => "no addresses".to_owned(),
            },
        });
    }
    Ok(ips)
}

/// Opens a TCP connection to `addr` within `timeout`, from `bind` (port chosen by the OS) when
/// given, with Nagle's algorithm off.
pub fn connect(addr: SocketAddr, bind: Option<IpAddr>, timeout: Duration) -> io::Result<TcpStream> {
    let timeout = timeout.max(Duration::from_millis(1));
    let Some(local) = bind else {
        return gc_protocol::io::connect(addr, timeout);
    };
    if local.is_ipv4() != addr.is_ipv4() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "the local address {local} and the server address {addr} are of different IP families"
            ),
        ));
    }
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.bind(&SocketAddr::new(local, 0).into())?;
    socket.connect_timeout(&addr.into(), timeout)?;
    let stream: TcpStream = socket.into();
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// The address listeners bind to when no local address is configured: every IPv4 interface for
/// a server given as an IPv4 address; otherwise (an IPv6 address, or a host name that may resolve
/// to either family) `::`, which [`bind_listener`] makes accept IPv4 as well.
pub fn unspecified_like(server: Option<IpAddr>) -> IpAddr {
    match server {
        Some(IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Binds a listener to `addr`. On `::` it is dual-stack (IPv6 and IPv4-mapped connections), or,
/// where the host has no IPv6, an IPv4 listener on `0.0.0.0` instead.
fn listen_on(addr: SocketAddr) -> io::Result<TcpListener> {
    if addr.ip() != IpAddr::V6(Ipv6Addr::UNSPECIFIED) {
        return TcpListener::bind(addr);
    }
    let dual = || -> io::Result<TcpListener> {
        let socket = Socket::new(Domain::IPV6, Type::STREAM, Some(Protocol::TCP))?;
        socket.set_only_v6(false)?;
        // As `TcpListener::bind` does on Unix: a restarted client can take its ports again at once.
        socket.set_reuse_address(true)?;
        socket.bind(&addr.into())?;
        socket.listen(128)?;
        Ok(socket.into())
    };
    match dual() {
        Err(e) if e.kind() != io::ErrorKind::AddrInUse => {
            tracing::debug!("no IPv6 listener on {addr} ({e}); listening on IPv4 only");
            TcpListener::bind(SocketAddr::new(Ipv4Addr::UNSPECIFIED.into(), addr.port()))
        }
        other => other,
    }
}

/// Binds one callback listener. [`PortChoice::Default`] falls back to an OS-chosen port when the
/// default one is taken (with a log line); a fixed port that is taken is an error.
pub fn bind_listener(
    ip: IpAddr,
    choice: PortChoice,
    default_port: u16,
    role: &'static str,
) -> Result<TcpListener, ClientError> {
    let bind = |port: u16| {
        let addr = SocketAddr::new(ip, port);
        listen_on(addr).map_err(|source| (addr, source))
    };
    let result = match choice {
        PortChoice::Fixed(port) => bind(port),
        PortChoice::Any => bind(0),
        PortChoice::Default => match bind(default_port) {
            Err((addr, e)) if e.kind() == io::ErrorKind::AddrInUse => {
                let fallback = bind(0);
                if let Ok(l) = &fallback {
                    let port = l.local_addr().map_or(0, |a| a.port());
                    tracing::info!(
                        "the default {role} port {addr} is taken (another client on this host?); \
                         listening on port {port} instead"
                    );
                }
                fallback
            }
            other => other,
        },
    };
    result.map_err(|(addr, source)| ClientError::Bind { role, addr, source })
}

/// Where to connect to wake an `accept` blocked on a listener bound to `addr`. A listener on `::`
/// is dual-stack ([`bind_listener`]), so IPv4 loopback reaches it even where `::1` is disabled.
pub fn wake_addr(addr: SocketAddr) -> SocketAddr {
    let ip = match addr.ip() {
        IpAddr::V4(v4) if v4.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        IpAddr::V6(v6) if v6.is_unspecified() => IpAddr::V4(Ipv4Addr::LOCALHOST),
        ip => ip,
    };
    SocketAddr::new(ip, addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOCAL: IpAddr = IpAddr::V4(Ipv4Addr::LOCALHOST);

    #[test]
    fn a_host_name_gets_a_listener_for_both_families() {
        let ip = unspecified_like(None);
        assert_eq!(ip, IpAddr::V6(Ipv6Addr::UNSPECIFIED));
        assert_eq!(
            unspecified_like(Some(LOCAL)),
            IpAddr::V4(Ipv4Addr::UNSPECIFIED)
        );
        let l = bind_listener(ip, PortChoice::Any, 0, "delivery").unwrap();
        let port = l.local_addr().unwrap().port();
        // IPv4 reaches it (as an IPv4-mapped peer when the listener is dual-stack), and so does
        // the address that wakes its accept thread.
        let from_v4 = TcpStream::connect((LOCAL, port)).unwrap();
        let (_, peer) = l.accept().unwrap();
        assert_eq!(
            peer.ip().to_canonical(),
            from_v4.local_addr().unwrap().ip().to_canonical()
        );
        let wake = wake_addr(l.local_addr().unwrap());
        let _woken = TcpStream::connect(wake).unwrap();
        l.accept().unwrap();
        // IPv6, where this host has it.
        if l.local_addr().unwrap().is_ipv6()
            && let Ok(from_v6) = TcpStream::connect((Ipv6Addr::LOCALHOST, port))
        {
            let (_, peer) = l.accept().unwrap();
            assert_eq!(peer.ip(), from_v6.local_addr().unwrap().ip());
        }
    }

    #[test]
    fn default_port_falls_back_fixed_port_fails() {
        let taken = TcpListener::bind((LOCAL, 0)).unwrap();
        let port = taken.local_addr().unwrap().port();
        let l = bind_listener(LOCAL, PortChoice::Default, port, "heartbeat").unwrap();
        assert_ne!(l.local_addr().unwrap().port(), port);
        let err = bind_listener(LOCAL, PortChoice::Fixed(port), port, "heartbeat").unwrap_err();
        let text = err.to_string();
        assert!(text.contains("heartbeat"), "{text}");
        assert!(text.contains(&port.to_string()), "{text}");
        let any = bind_listener(LOCAL, PortChoice::Any, port, "auth").unwrap();
        assert_ne!(any.local_addr().unwrap().port(), 0);
    }

    #[test]
    fn resolves_literals_and_filters_families() {
        assert_eq!(resolve("127.0.0.1", 1, None).unwrap(), [LOCAL]);
        assert_eq!(
            resolve("[::1]", 1, None).unwrap(),
            [IpAddr::V6(Ipv6Addr::LOCALHOST)]
        );
        let err = resolve("::1", 1, Some(LOCAL)).unwrap_err();
        assert!(err.to_string().contains("same family"), "{err}");
    }

    #[test]
    fn connects_from_the_chosen_source() {
        let l = TcpListener::bind((LOCAL, 0)).unwrap();
        let src: IpAddr = "127.0.0.9".parse().unwrap();
        let s = connect(l.local_addr().unwrap(), Some(src), Duration::from_secs(2)).unwrap();
        assert_eq!(s.local_addr().unwrap().ip(), src);
        let (_, peer) = l.accept().unwrap();
        assert_eq!(peer.ip(), src);
        assert!(s.nodelay().unwrap());
    }
}
