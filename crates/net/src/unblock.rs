//! [`Unblocker`]: the sockets one owner (the server, a session, a client, a set of connection
//! threads) must be able to cut short when it stops, so that no thread blocked on one of them
//! waits out its deadline.
//!
//! A socket is registered by a duplicate of its descriptor, held until the [`Registration`] is
//! dropped. Stopping the unblocker shuts every registered socket down, and any socket registered
//! afterwards at once: a thread that connects just as its owner stops is never missed.

use std::net::{Shutdown, TcpStream};
use std::sync::Arc;

use parking_lot::Mutex;

#[derive(Debug, Default)]
struct Sockets {
    /// A list, not a map: a set holds a handful of sockets (a session's links and its listener's
    /// connection; a server's connections in progress), and every session has one.
    open: Vec<(u64, TcpStream)>,
    next_id: u64,
    stopped: bool,
}

/// A set of sockets to shut down together. Cheap to clone: clones share the set.
#[derive(Clone, Debug, Default)]
pub struct Unblocker {
    sockets: Arc<Mutex<Sockets>>,
}

/// Keeps a socket registered with an [`Unblocker`] until dropped.
#[derive(Debug)]
pub struct Registration {
    sockets: Arc<Mutex<Sockets>>,
    id: u64,
}

impl Unblocker {
    /// An empty set.
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `stream` until the returned registration is dropped. If the set has already been
    /// stopped, the socket is shut down at once. A socket whose descriptor cannot be duplicated
    /// (out of descriptors) is left unregistered: its own deadline still bounds it.
    pub fn register(&self, stream: &TcpStream) -> Registration {
        let mut s = self.sockets.lock();
        s.next_id += 1;
        let id = s.next_id;
        if s.stopped {
            let _ = stream.shutdown(Shutdown::Both);
        } else if let Ok(clone) = stream.try_clone() {
            s.open.push((id, clone));
        }
        Registration {
            sockets: Arc::clone(&self.sockets),
            id,
        }
    }

    /// Shuts down every registered socket, and every one registered from now on.
    pub fn stop(&self) {
        let open = {
            let mut s = self.sockets.lock();
            s.stopped = true;
            std::mem::take(&mut s.open)
        };
        for (_, socket) in &open {
            let _ = socket.shutdown(Shutdown::Both);
        }
    }

    /// Whether [`Unblocker::stop`] has been called.
    pub fn is_stopped(&self) -> bool {
        self.sockets.lock().stopped
    }

    /// Sockets registered now.
    pub fn len(&self) -> usize {
        self.sockets.lock().open.len()
    }

    /// Whether no socket is registered.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Registration {
    /// Shuts this one socket down (`Read`: the thread reading it sees the end of the stream and
    /// moves on; `Both`: the connection is cut).
    pub fn shutdown(&self, how: Shutdown) {
        if let Some((_, socket)) = self
            .sockets
            .lock()
            .open
            .iter()
            .find(|(id, _)| *id == self.id)
        {
            let _ = socket.shutdown(how);
        }
    }
}

impl Drop for Registration {
    fn drop(&mut self) {
        let mut s = self.sockets.lock();
        if let Some(i) = s.open.iter().position(|(id, _)| *id == self.id) {
            s.open.swap_remove(i);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::Read as _;
    use std::net::TcpListener;
    use std::thread;
    use std::time::{Duration, Instant};

    use super::*;

    fn pair() -> (TcpStream, TcpStream) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let a = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        let (b, _) = l.accept().unwrap();
        (a, b)
    }

    #[test]
    fn stop_unblocks_a_blocked_read() {
        let unblocker = Unblocker::new();
        let (mut ours, _theirs) = pair();
        let registration = unblocker.register(&ours);
        assert_eq!(unblocker.len(), 1);
        let reader = thread::spawn(move || {
            ours.set_read_timeout(Some(Duration::from_secs(30)))
                .unwrap();
            let started = Instant::now();
            let mut byte = [0u8; 1];
            let n = ours.read(&mut byte).unwrap_or(0);
            (n, started.elapsed())
        });
        // Whether the reader is already blocked or not, the read ends with end of stream.
        unblocker.stop();
        let (n, waited) = reader.join().unwrap();
        assert_eq!(n, 0);
        assert!(waited < Duration::from_secs(30));
        drop(registration);
        assert!(unblocker.is_empty());
    }

    #[test]
    fn a_socket_registered_after_stop_is_cut_at_once() {
        let unblocker = Unblocker::new();
        unblocker.stop();
        assert!(unblocker.is_stopped());
        let (mut ours, _theirs) = pair();
        let _registration = unblocker.register(&ours);
        let mut byte = [0u8; 1];
        assert_eq!(ours.read(&mut byte).unwrap(), 0);
        assert!(unblocker.is_empty(), "nothing is kept for a stopped set");
    }

    #[test]
    fn one_socket_can_be_cut_alone_and_dropping_unregisters() {
        let unblocker = Unblocker::new();
        let (mut a, _a_peer) = pair();
        let (b, mut b_peer) = pair();
        let ra = unblocker.register(&a);
        let rb = unblocker.register(&b);
        ra.shutdown(Shutdown::Read);
        let mut byte = [0u8; 1];
        assert_eq!(a.read(&mut byte).unwrap(), 0);
        drop(rb);
        assert_eq!(unblocker.len(), 1);
        // `b` is no longer registered: stopping the set leaves it open.
        unblocker.stop();
        b_peer
            .set_read_timeout(Some(Duration::from_millis(50)))
            .unwrap();
        let err = b_peer.read(&mut byte).unwrap_err();
        assert!(matches!(
            err.kind(),
            std::io::ErrorKind::WouldBlock | std::io::ErrorKind::TimedOut
        ));
        drop(b);
    }
}
