//! [`KeptConn`]: a connection to one peer port, kept open between exchanges.
//!
//! GC/1 connections are short-lived by design, but both sides may keep one open for the next
//! exchange (the client's link to the server's sending port; the server's links to a client's
//! heartbeat and delivery ports). The peer may close a kept connection at any time (its idle
//! limit, a restart): that shows as end of stream or a reset before any byte of the reply, and
//! is not a failure. The exchange is then sent again at once on a fresh connection.

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use gc_protocol::{Frame, ProtocolError};

use crate::Conn;
use crate::connect::Connector;
use crate::error::NetError;
use crate::tls::PeerCheck;
use crate::unblock::{Registration, Unblocker};

/// Whether a connection stays open after an exchange.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Reuse {
    /// Keep it for the next exchange.
    Keep,
    /// Close it after every exchange, as the original prototype did (`--no-reuse`).
    CloseAfterEach,
}

/// A failed read: the error, and whether any reply had arrived before it (then sending the
/// request again would repeat requests the peer has already answered).
pub type ReadFail = (ProtocolError, bool);

#[derive(Debug)]
struct Open {
    conn: Conn,
    /// Lets whoever owns the unblocker cut this connection short.
    _registration: Registration,
    /// When the connection last carried a reply (or was opened).
    replied_at: Instant,
}

/// A connection to one peer port that is kept between exchanges (see the module docs).
#[derive(Debug)]
pub struct KeptConn {
    addr: SocketAddr,
    /// What the peer's certificate must be, when the connector speaks TLS.
    check: PeerCheck,
    /// `addr` as errors name it, formatted once rather than at every connect (which also kept
    /// the formatting machinery off the deepest point of a server heartbeat thread's stack).
    peer: String,
    connector: Connector,
    unblocker: Unblocker,
    reuse: Reuse,
    fresh_attempts: u32,
    open: Option<Open>,
}

impl KeptConn {
    /// A link to `addr`; nothing is connected until the first exchange. Every connection it opens
    /// is registered with `unblocker`.
    pub fn new(addr: SocketAddr, connector: Connector, unblocker: Unblocker, reuse: Reuse) -> Self {
        Self {
            addr,
            check: PeerCheck::Any,
            peer: addr.to_string(),
            connector,
            unblocker,
            reuse,
            fresh_attempts: 1,
            open: None,
        }
    }

    /// Lets an exchange open up to `n` fresh connections when each is closed by the peer before
    /// any reply. A client needs 2: the server may hand a new connection to a session of the
    /// same address that is just ending, which cuts it.
    pub fn with_fresh_attempts(mut self, n: u32) -> Self {
        self.fresh_attempts = n.max(1);
        self
    }

    /// The peer.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Points the link at another address (closing the kept connection if it changes).
    pub fn set_addr(&mut self, addr: SocketAddr) {
        if addr != self.addr {
            self.close();
            self.addr = addr;
            self.peer = addr.to_string();
        }
    }

    /// Makes every TLS connection it opens check its peer so (closing the kept connection if
    /// the check changes).
    pub fn set_check(&mut self, check: PeerCheck) {
        if check != self.check {
            self.close();
            self.check = check;
        }
    }

    /// The same link, its TLS peers checked so.
    pub fn with_check(mut self, check: PeerCheck) -> Self {
        self.check = check;
        self
    }

    /// Writes `request` (one or more encoded frames) and reads the replies with `read`.
    ///
    /// On a kept connection that turns out to have been closed by the peer before any reply, the
    /// exchange is sent again at once on a fresh one. Any other failure closes the connection
    /// and is returned.
    pub fn exchange_with<R>(
        &mut self,
        request: &[u8],
        mut read: impl FnMut(&mut Conn) -> Result<R, ReadFail>,
    ) -> Result<R, NetError> {
        if let Some(mut open) = self.open.take() {
            match self.attempt(&mut open.conn, request, &mut read) {
                Ok(reply) => {
                    self.keep(open);
                    return Ok(reply);
                }
                Err((e, false)) if e.is_stale_connection() => {
                    tracing::debug!(peer = %self.addr, "the kept connection was closed ({e}); reconnecting");
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
        let mut attempts = self.fresh_attempts;
        loop {
            attempts -= 1;
            let mut open = self.connect()?;
            match self.attempt(&mut open.conn, request, &mut read) {
                Ok(reply) => {
                    self.keep(open);
                    return Ok(reply);
                }
                Err((e, false)) if e.is_stale_connection() && attempts > 0 => {
                    tracing::debug!(peer = %self.addr, "a fresh connection was closed ({e}); trying again");
                }
                Err((e, _)) => return Err(e.into()),
            }
        }
    }

    /// Writes `request` and reads one reply frame of type `R`.
    pub fn exchange<R: Frame>(&mut self, request: &[u8]) -> Result<R, NetError> {
        let timeouts = self.connector.timeouts;
        self.exchange_with(request, |conn| {
            conn.read(timeouts.deadline()).map_err(|e| (e, false))
        })
    }

    /// Writes `request` without waiting for the reply, which [`KeptConn::receive`] reads later;
    /// the connection stays open in between (only with [`Reuse::Keep`]).
    ///
    /// Returns whether it went out on a connection kept from an earlier exchange: if that one
    /// turns out to have been closed by the peer meanwhile (a stale error in `receive`), the
    /// request should be sent again on a fresh connection, as [`KeptConn::exchange`] does.
    pub fn send(&mut self, request: &[u8]) -> Result<bool, NetError> {
        let deadline = self.connector.deadline();
        if let Some(mut open) = self.open.take() {
            match open.conn.write_all(request, deadline) {
                Ok(()) => {
                    self.open = Some(open);
                    return Ok(true);
                }
                Err(e) if e.is_stale_connection() => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut open = self.connect()?;
        open.conn.write_all(request, self.connector.deadline())?;
        self.open = Some(open);
        Ok(false)
    }

    /// Reads the reply to the last [`KeptConn::send`]. Any error closes the connection.
    pub fn receive<R: Frame>(&mut self) -> Result<R, ProtocolError> {
        let Some(open) = self.open.as_mut() else {
            // Only after an error, which closed the link: nothing can have been sent on it.
            return Err(ProtocolError::Closed {
                peer: self.peer.clone(),
                partial: 0,
            });
        };
        match open.conn.read(self.connector.deadline()) {
            Ok(reply) => {
                open.replied_at = Instant::now();
                Ok(reply)
            }
            Err(e) => {
                self.close();
                Err(e)
            }
        }
    }

    /// Whether a connection is kept open now.
    pub fn is_open(&self) -> bool {
        self.open.is_some()
    }

    /// Whether the kept connection carried a reply within `within`: then the peer is taken to
    /// still have it open (peers close kept connections only after idling much longer).
    pub fn answered_within(&self, within: Duration) -> bool {
        self.open
            .as_ref()
            .is_some_and(|o| o.replied_at.elapsed() < within)
    }

    /// When the kept connection will have been idle for `idle` (`None`: nothing is kept).
    pub fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        self.open.as_ref().map(|o| o.replied_at + idle)
    }

    /// Whether the kept connection still looks open: not closed or reset by the peer as far as
    /// this side can tell without waiting (a non-blocking peek). A peer that closes its end right
    /// after each reply is caught here, before a request is written and left on a dead
    /// connection.
    pub fn looks_open(&self) -> bool {
        let Some(open) = self.open.as_ref() else {
            return false;
        };
        let mut byte = [0u8; 1];
        match rustix::net::recv(
            open.conn.get_ref().tcp(),
            &mut byte[..],
            rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
        ) {
            Err(e) => e == rustix::io::Errno::AGAIN,
            // Data nobody asked for is left for the next read to report; 0 bytes is end of stream.
            Ok((received, _)) => received > 0,
        }
    }

    /// Closes the kept connection, if any.
    pub fn close(&mut self) {
        self.open = None;
    }

    fn connect(&self) -> Result<Open, NetError> {
        let (conn, registration) =
            self.connector
                .open_named(self.addr, &self.peer, self.check, &self.unblocker)?;
        Ok(Open {
            conn,
            _registration: registration,
            replied_at: Instant::now(),
        })
    }

    fn attempt<R>(
        &self,
        conn: &mut Conn,
        request: &[u8],
        read: &mut impl FnMut(&mut Conn) -> Result<R, ReadFail>,
    ) -> Result<R, ReadFail> {
        conn.write_all(request, self.connector.deadline())
            .map_err(|e| (e, false))?;
        read(conn)
    }

    /// After a successful exchange: keep the connection, or close it.
    fn keep(&mut self, mut open: Open) {
        if self.reuse == Reuse::Keep {
            open.replied_at = Instant::now();
            self.open = Some(open);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::io::{BufRead as _, BufReader, Write as _};
    use std::net::{TcpListener, TcpStream};
    use std::sync::mpsc;
    use std::thread;

    use gc_protocol::CallbackReply;

    use super::*;
    use crate::connect::Timeouts;

    /// A peer that answers each line with `Thx`, and closes each connection after `replies`
    /// answers; it reports each connection it accepted.
    fn peer(replies: usize) -> (SocketAddr, mpsc::Receiver<()>) {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let (tx, rx) = mpsc::channel();
        thread::spawn(move || {
            for stream in l.incoming() {
                let Ok(stream) = stream else { return };
                let _ = tx.send(());
                let tx_conn = stream.try_clone().unwrap();
                thread::spawn(move || serve(stream, tx_conn, replies));
            }
        });
        (addr, rx)
    }

    fn serve(stream: TcpStream, mut out: TcpStream, replies: usize) {
        let mut lines = BufReader::new(stream).lines();
        for _ in 0..replies {
            match lines.next() {
                Some(Ok(_)) => {
                    if out.write_all(b"Thx\n").is_err() {
                        return;
                    }
                }
                _ => return,
            }
        }
    }

    fn link(addr: SocketAddr, reuse: Reuse) -> KeptConn {
        let connector = Connector::new(None, Timeouts::new(Duration::from_secs(5)));
        KeptConn::new(addr, connector, Unblocker::new(), reuse)
    }

    fn accepted(rx: &mpsc::Receiver<()>) -> usize {
        rx.try_iter().count()
    }

    #[test]
    fn a_kept_connection_carries_many_exchanges() {
        let (addr, rx) = peer(usize::MAX);
        let mut link = link(addr, Reuse::Keep);
        for _ in 0..3 {
            let reply: CallbackReply = link.exchange(b"x\n").unwrap();
            assert_eq!(reply, CallbackReply::Thx);
        }
        assert!(link.is_open());
        assert!(link.answered_within(Duration::from_secs(5)));
        assert!(link.looks_open());
        let _ = rx.recv_timeout(Duration::from_secs(5));
        assert_eq!(accepted(&rx), 0, "one connection in all");
    }

    #[test]
    fn a_kept_connection_closed_by_the_peer_is_replaced_without_an_error() {
        // The peer answers once per connection, then closes it.
        let (addr, rx) = peer(1);
        let mut link = link(addr, Reuse::Keep);
        for _ in 0..3 {
            let reply: CallbackReply = link.exchange(b"x\n").unwrap();
            assert_eq!(reply, CallbackReply::Thx);
        }
        let mut n = 0;
        while rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            n += 1;
        }
        assert_eq!(n, 3, "a fresh connection per exchange");
    }

    #[test]
    fn without_reuse_every_exchange_has_its_own_connection() {
        let (addr, rx) = peer(usize::MAX);
        let mut link = link(addr, Reuse::CloseAfterEach);
        for _ in 0..2 {
            let _: CallbackReply = link.exchange(b"x\n").unwrap();
            assert!(!link.is_open());
            assert_eq!(link.idle_deadline(Duration::from_secs(1)), None);
        }
        let mut n = 0;
        while rx.recv_timeout(Duration::from_millis(200)).is_ok() {
            n += 1;
        }
        assert_eq!(n, 2);
    }

    #[test]
    fn a_failure_that_is_not_a_closed_connection_is_returned() {
        // A peer that never answers: the read times out, which is not retried.
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let connector = Connector::new(None, Timeouts::new(Duration::from_millis(100)));
        let mut link = KeptConn::new(addr, connector, Unblocker::new(), Reuse::Keep);
        let err = link.exchange::<CallbackReply>(b"x\n").unwrap_err();
        assert!(
            matches!(err, NetError::Protocol(ProtocolError::TimedOut { .. })),
            "{err:?}"
        );
        assert!(!link.is_open());
        drop(l);
        let err = link.exchange::<CallbackReply>(b"x\n").unwrap_err();
        assert!(matches!(err, NetError::Connect { .. }), "{err:?}");
    }

    #[test]
    fn a_reply_read_later_keeps_the_connection() {
        let (addr, _rx) = peer(usize::MAX);
        let mut link = link(addr, Reuse::Keep);
        assert!(!link.send(b"x\n").unwrap(), "fresh connection");
        assert_eq!(link.receive::<CallbackReply>().unwrap(), CallbackReply::Thx);
        assert!(link.send(b"x\n").unwrap(), "the kept one");
        assert_eq!(link.receive::<CallbackReply>().unwrap(), CallbackReply::Thx);
        link.close();
        assert!(matches!(
            link.receive::<CallbackReply>(),
            Err(ProtocolError::Closed { partial: 0, .. })
        ));
    }

    #[test]
    fn stopping_the_unblocker_cuts_a_waiting_exchange() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = l.local_addr().unwrap();
        let unblocker = Unblocker::new();
        let connector = Connector::new(None, Timeouts::new(Duration::from_secs(30)));
        let mut link = KeptConn::new(addr, connector, unblocker.clone(), Reuse::Keep);
        let waiter = thread::spawn(move || {
            let started = Instant::now();
            let result = link.exchange::<CallbackReply>(b"x\n");
            (result.is_err(), started.elapsed())
        });
        let (_conn, _) = l.accept().unwrap();
        // Whether the exchange has registered its connection yet or not: a registration after
        // the stop is cut at once.
        unblocker.stop();
        let (failed, waited) = waiter.join().unwrap();
        assert!(failed);
        assert!(waited < Duration::from_secs(30));
    }
}
