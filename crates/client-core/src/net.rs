//! Resolving the server and binding the callback listeners (connections themselves are
//! `gc-net`'s).

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, TcpListener, ToSocketAddrs};

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

/// The address listeners bind to when no local address is configured: every IPv4 interface for
/// a server given as an IPv4 address; otherwise (an IPv6 address, or a host name that may resolve
/// to either family) `::`, which [`bind_listener`] makes accept IPv4 as well.
pub fn unspecified_like(server: Option<IpAddr>) -> IpAddr {
    match server {
        Some(IpAddr::V4(_)) => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
        _ => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
    }
}

/// Pending callback connections the kernel queues per listener.
const LISTEN_BACKLOG: i32 = 128;

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
        gc_net::listen(addr, LISTEN_BACKLOG).map_err(|source| (addr, source))
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
        // `::` listens for both families (gc_net::listen's own test checks that IPv4 and IPv6
        // reach it), or on hosts without IPv6 it becomes `0.0.0.0`.
        let l = bind_listener(ip, PortChoice::Any, 0, "delivery").unwrap();
        assert!(l.local_addr().unwrap().ip().is_unspecified());
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
}
