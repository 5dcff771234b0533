//! Readiness for a service manager: the `sd_notify` protocol, as much of it as the server needs.
//!
//! A unit with `Type=notify` starts the server with `NOTIFY_SOCKET` naming a unix datagram
//! socket; `systemctl start` returns once the server sends `READY=1` there, which it does when its
//! ports listen. `STOPPING=1` tells the manager a stop has begun (it then waits for the exit
//! without counting it as a crash). The socket is a path, or an abstract name written with a
//! leading `@`. One datagram per state change, without the C library: the protocol is that
//! simple, and a missing or unreachable manager must never stop the server (a failure is logged
//! at debug level and forgotten).

use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::net::{SocketAddr, UnixDatagram};
use std::time::Duration;

/// The environment variable the service manager sets.
pub const NOTIFY_SOCKET: &str = "NOTIFY_SOCKET";

/// How long a send may wait for room in the manager's queue: it reads at once, and a stuck one
/// must not hold up the start or the stop.
const SEND_TIMEOUT: Duration = Duration::from_secs(1);

/// Sends `state` (e.g. `READY=1`) to the socket in `NOTIFY_SOCKET`, if the variable is set.
/// Whether a datagram went out.
pub fn notify(state: &str) -> bool {
    let Some(socket) = std::env::var_os(NOTIFY_SOCKET) else {
        return false;
    };
    match notify_to(&socket, state) {
        Ok(()) => true,
        Err(e) => {
            tracing::debug!(socket = ?socket, "cannot notify the service manager: {e}");
            false
        }
    }
}

/// Sends `state` as one datagram to `socket`: a path, or `@name` for an abstract socket.
pub fn notify_to(socket: &OsStr, state: &str) -> io::Result<()> {
    let addr = address(socket)?;
    let sender = UnixDatagram::unbound()?;
    sender.set_write_timeout(Some(SEND_TIMEOUT))?;
    let sent = sender.send_to_addr(state.as_bytes(), &addr)?;
    if sent == state.len() {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::WriteZero,
            "the notification was cut short",
        ))
    }
}

/// The socket address `NOTIFY_SOCKET` names.
fn address(socket: &OsStr) -> io::Result<SocketAddr> {
    let bytes = socket.as_bytes();
    match bytes.first() {
        Some(b'@') => abstract_address(&bytes[1..]),
        Some(b'/') => SocketAddr::from_pathname(socket),
        // systemd also knows `vsock:…` (a virtual machine's manager); the server is not run so.
        _ => Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            "NOTIFY_SOCKET is neither an absolute path nor an abstract name (@…)",
        )),
    }
}

#[cfg(any(target_os = "linux", target_os = "android"))]
fn abstract_address(name: &[u8]) -> io::Result<SocketAddr> {
    #[cfg(target_os = "android")]
    use std::os::android::net::SocketAddrExt as _;
    #[cfg(target_os = "linux")]
    use std::os::linux::net::SocketAddrExt as _;
    SocketAddr::from_abstract_name(name)
}

#[cfg(not(any(target_os = "linux", target_os = "android")))]
fn abstract_address(_name: &[u8]) -> io::Result<SocketAddr> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "abstract unix sockets exist only on Linux",
    ))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn receive(socket: &UnixDatagram) -> String {
        socket
            .set_read_timeout(Some(Duration::from_secs(5)))
            .unwrap();
        let mut buf = [0u8; 256];
        let n = socket.recv(&mut buf).unwrap();
        String::from_utf8_lossy(&buf[..n]).into_owned()
    }

    #[test]
    fn a_path_socket_gets_one_datagram() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("notify");
        let manager = UnixDatagram::bind(&path).unwrap();
        notify_to(path.as_os_str(), "READY=1").unwrap();
        notify_to(path.as_os_str(), "STOPPING=1").unwrap();
        assert_eq!(receive(&manager), "READY=1");
        assert_eq!(receive(&manager), "STOPPING=1");
    }

    #[cfg(target_os = "linux")]
    #[test]
    fn an_abstract_socket_is_written_with_an_at_sign() {
        use std::os::linux::net::SocketAddrExt as _;
        let name = format!("gc-test-notify-{}", std::process::id());
        let addr = SocketAddr::from_abstract_name(name.as_bytes()).unwrap();
        let manager = UnixDatagram::bind_addr(&addr).unwrap();
        notify_to(OsStr::new(&format!("@{name}")), "READY=1").unwrap();
        assert_eq!(receive(&manager), "READY=1");
    }

    #[test]
    fn a_bad_or_absent_socket_is_an_error_not_a_panic() {
        assert!(notify_to(OsStr::new("relative/path"), "READY=1").is_err());
        assert!(notify_to(OsStr::new(""), "READY=1").is_err());
        let dir = tempfile::tempdir().unwrap();
        let nobody = dir.path().join("nobody-listens");
        assert!(notify_to(nobody.as_os_str(), "READY=1").is_err());
    }
}
