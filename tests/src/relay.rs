//! A TCP relay in front of a server's sending port, for tests that need a transfer to stop at a
//! known point: a client's `server_ports.send` names the relay, each connection goes on to the
//! server from the client's own address (the server finds a session by address, so it sees the
//! client as if it had come straight), and what either side sends may be held back after an
//! allowance until the test lets it go.

#![allow(clippy::expect_used)]

use std::io::{Read as _, Write as _};
use std::net::{IpAddr, Shutdown, SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Condvar, Mutex, MutexGuard, PoisonError};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::WAIT;

/// Which way bytes go through the relay.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Way {
    /// From the client to the server (an upload's content).
    Up,
    /// From the server to the client (a download's content).
    Down,
}

/// A relay; stopped (every connection cut, every thread joined) when dropped.
#[derive(Debug)]
pub struct Relay {
    /// The port it listens on, on the server's address.
    pub port: u16,
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: Option<JoinHandle<()>>,
}

#[derive(Debug, Default)]
struct Shared {
    gate: Mutex<Gate>,
    changed: Condvar,
    /// Both sockets of every relayed connection, shut down when the relay stops.
    sockets: Mutex<Vec<TcpStream>>,
    pumps: Mutex<Vec<JoinHandle<()>>>,
}

#[derive(Debug, Default)]
struct Gate {
    /// Bytes that may still go up and down; `None`: no limit.
    allowance: [Option<u64>; 2],
    /// Bytes wait for more allowance, up and down.
    holding: [bool; 2],
    stopped: bool,
}

/// A lock, also after a thread panicked holding it (the relay's state stays usable).
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

fn index(way: Way) -> usize {
    match way {
        Way::Up => 0,
        Way::Down => 1,
    }
}

impl Relay {
    /// A relay to `server` (a sending port), on the same address.
    pub fn start(server: SocketAddr) -> Self {
        let listener = TcpListener::bind((server.ip(), 0)).expect("relay binds");
        let addr = listener.local_addr().expect("relay address");
        let port = addr.port();
        let shared = Arc::new(Shared::default());
        let sh = Arc::clone(&shared);
        let accept = std::thread::Builder::new()
            .name("relay-accept".into())
            .spawn(move || {
                for client in listener.incoming() {
                    if lock(&sh.gate).stopped {
                        return;
                    }
                    let Ok(client) = client else { continue };
                    if let Err(e) = relay(&sh, client, server) {
                        #[allow(clippy::print_stderr)]
                        {
                            eprintln!("relay: {e}");
                        }
                    }
                }
            })
            .expect("relay thread");
        Self {
            port,
            addr,
            shared,
            accept: Some(accept),
        }
    }

    /// From now on, `bytes` more may go `way`; then they wait for [`Relay::open`].
    pub fn limit(&self, way: Way, bytes: u64) {
        let mut gate = lock(&self.shared.gate);
        gate.allowance[index(way)] = Some(bytes);
        gate.holding[index(way)] = false;
    }

    /// Waits (up to [`WAIT`]) until bytes going `way` are held back: their allowance is spent.
    pub fn wait_holding(&self, way: Way) {
        let deadline = Instant::now() + WAIT;
        let mut gate = lock(&self.shared.gate);
        while !gate.holding[index(way)] {
            let left = deadline.saturating_duration_since(Instant::now());
            assert!(!left.is_zero(), "the relay never held anything back");
            gate = self
                .shared
                .changed
                .wait_timeout(gate, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
    }

    /// Lets everything through, both ways.
    pub fn open(&self) {
        lock(&self.shared.gate).allowance = [None, None];
        self.shared.changed.notify_all();
    }
}

impl Shared {
    /// Takes up to `want` bytes of `way`'s allowance, waiting (up to [`WAIT`]) while there is
    /// none: how many may go (`None`: the relay stops, or waited too long).
    fn take(&self, way: Way, want: u64) -> Option<u64> {
        let deadline = Instant::now() + WAIT;
        let i = index(way);
        let mut gate = lock(&self.gate);
        loop {
            if gate.stopped {
                return None;
            }
            match gate.allowance[i] {
                None => return Some(want),
                Some(0) => {
                    gate.holding[i] = true;
                    self.changed.notify_all();
                    let left = deadline.saturating_duration_since(Instant::now());
                    if left.is_zero() {
                        return None;
                    }
                    gate = self
                        .changed
                        .wait_timeout(gate, left)
                        .unwrap_or_else(PoisonError::into_inner)
                        .0;
                }
                Some(left) => {
                    let k = left.min(want);
                    gate.allowance[i] = Some(left - k);
                    return Some(k);
                }
            }
        }
    }
}

/// Connects to `server` from the client's address and starts a pump each way.
fn relay(shared: &Arc<Shared>, client: TcpStream, server: SocketAddr) -> std::io::Result<()> {
    let from = client.peer_addr()?.ip();
    let domain = match from {
        IpAddr::V4(_) => socket2::Domain::IPV4,
        IpAddr::V6(_) => socket2::Domain::IPV6,
    };
    let socket = socket2::Socket::new(domain, socket2::Type::STREAM, None)?;
    socket.bind(&SocketAddr::new(from, 0).into())?;
    socket.connect_timeout(&server.into(), Duration::from_secs(5))?;
    let upstream: TcpStream = socket.into();
    {
        let mut sockets = lock(&shared.sockets);
        sockets.push(client.try_clone()?);
        sockets.push(upstream.try_clone()?);
    }
    let n = lock(&shared.pumps).len();
    let mut pumps = Vec::new();
    for (name, from, to, way) in [
        (
            format!("relay-up-{n}"),
            client.try_clone()?,
            upstream.try_clone()?,
            Way::Up,
        ),
        (format!("relay-down-{n}"), upstream, client, Way::Down),
    ] {
        let sh = Arc::clone(shared);
        pumps.push(
            std::thread::Builder::new()
                .name(name)
                .spawn(move || pump(&sh, from, to, way))?,
        );
    }
    lock(&shared.pumps).extend(pumps);
    Ok(())
}

/// Copies `from` to `to` through `way`'s gate until either end closes, then closes both.
fn pump(shared: &Shared, mut from: TcpStream, mut to: TcpStream, way: Way) {
    let mut buf = vec![0u8; 16 * 1024];
    'copy: loop {
        let n = match from.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut at = 0;
        while at < n {
            let Some(k) = shared.take(way, (n - at) as u64) else {
                break 'copy;
            };
            // At most `n - at`, which is a usize.
            let k = usize::try_from(k).unwrap_or(n - at);
            if to.write_all(&buf[at..at + k]).is_err() {
                break 'copy;
            }
            at += k;
        }
    }
    let _ = from.shutdown(Shutdown::Both);
    let _ = to.shutdown(Shutdown::Both);
}

impl Drop for Relay {
    fn drop(&mut self) {
        lock(&self.shared.gate).stopped = true;
        self.shared.changed.notify_all();
        // Wake the accept loop (if that cannot be done, it is left to end with the process
        // rather than waited for).
        let woken = TcpStream::connect_timeout(&self.addr, Duration::from_secs(5)).is_ok();
        for s in lock(&self.shared.sockets).iter() {
            let _ = s.shutdown(Shutdown::Both);
        }
        if let Some(t) = self.accept.take()
            && woken
        {
            let _ = t.join();
        }
        let pumps: Vec<_> = lock(&self.shared.pumps).drain(..).collect();
        for t in pumps {
            let _ = t.join();
        }
    }
}
