//! Outgoing connections from the server to a client's callback ports, kept open between exchanges
//! when reuse is on.

use std::net::{Shutdown, SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gc_protocol::io::connect;
use gc_protocol::{Frame, FramedStream, ProtocolError};

use crate::state::{Session, Shared};

/// A connection to one of a client's ports, reused across exchanges.
#[derive(Debug)]
pub struct Link {
    addr: SocketAddr,
    /// Which entry of the session's `hb_sockets` mirrors this link's connection.
    slot: usize,
    conn: Option<FramedStream<TcpStream>>,
    /// When the kept connection last carried a reply.
    answered_at: Option<Instant>,
}

impl Link {
    /// A link to `addr` using entry `slot` of the session's socket table; nothing is connected
    /// until the first exchange.
    pub fn new(addr: SocketAddr, slot: usize) -> Self {
        Self {
            addr,
            slot,
            conn: None,
            answered_at: None,
        }
    }

    /// Whether the kept connection carried a reply within `within`: then the client is taken to
    /// still have it open (clients close kept connections only after idling much longer).
    pub fn answered_within(&self, within: Duration) -> bool {
        self.conn.is_some() && self.answered_at.is_some_and(|t| t.elapsed() < within)
    }

    /// Sends `request` (one or more encoded frames) and reads one reply frame.
    ///
    /// A kept connection that turns out to be closed by the client is not a failure: the exchange
    /// is retried at once on a fresh connection.
    pub fn exchange<R: Frame>(
        &mut self,
        shared: &Shared,
        session: &Session,
        request: &[u8],
    ) -> Result<R, ProtocolError> {
        if let Some(result) = self.on_kept(session, |conn| Self::round_trip(shared, conn, request))
        {
            if result.is_ok() {
                self.answered_at = Some(Instant::now());
            }
            return result;
        }
        let conn = self.connect(shared, session)?;
        let result = Self::round_trip(shared, conn, request);
        if result.is_err() || !shared.config.reuse_connections {
            // One exchange per connection, or a failed one: the connector closes.
            self.close(session);
        } else {
            self.answered_at = Some(Instant::now());
        }
        result
    }

    /// Sends `request` without waiting for the reply, which [`Link::receive`] reads later; the
    /// connection stays open in between. Only for kept connections (reuse on).
    ///
    /// Returns whether it went out on a connection kept from an earlier exchange: if that one
    /// turns out to have been closed by the client meanwhile (a stale error in `receive`), the
    /// request should be sent again on a fresh connection, as [`Link::exchange`] does. A kept
    /// connection already known to be closed is replaced here at once.
    pub fn send(
        &mut self,
        shared: &Shared,
        session: &Session,
        request: &[u8],
    ) -> Result<bool, ProtocolError> {
        if let Some(result) = self.on_kept(session, |conn| {
            conn.write_all(request, shared.io_deadline())
        }) {
            return result.map(|()| true);
        }
        let conn = self.connect(shared, session)?;
        let result = conn.write_all(request, shared.io_deadline());
        if result.is_err() {
            self.close(session);
        }
        result.map(|()| false)
    }

    /// Whether the kept connection still looks open: not closed or reset by the client as far as
    /// this side can tell without waiting (a non-blocking peek). A client that closes its end
    /// right after each reply is caught here, before a request is written and left on a dead
    /// connection.
    pub fn looks_open(&self) -> bool {
        let Some(conn) = self.conn.as_ref() else {
            return false;
        };
        let mut byte = [0u8; 1];
        match rustix::net::recv(
            conn.get_ref(),
            &mut byte[..],
            rustix::net::RecvFlags::PEEK | rustix::net::RecvFlags::DONTWAIT,
        ) {
            Err(e) => e == rustix::io::Errno::AGAIN,
            // Data nobody asked for is left for the next read to report; 0 bytes is end of stream.
            Ok((received, _)) => received > 0,
        }
    }

    /// Reads the reply to the last [`Link::send`]. Any error closes the connection.
    pub fn receive<R: Frame>(
        &mut self,
        shared: &Shared,
        session: &Session,
    ) -> Result<R, ProtocolError> {
        let result = match self.conn.as_mut() {
            Some(conn) => conn.read(shared.io_deadline()),
            // Only after an error, which closed the link: nothing can have been sent on it.
            None => Err(ProtocolError::Closed {
                peer: self.addr.to_string(),
                partial: 0,
            }),
        };
        if result.is_err() {
            self.close(session);
        } else {
            self.answered_at = Some(Instant::now());
        }
        result
    }

    /// Runs `op` on the kept connection, if there is one. `None` when there is none or the client
    /// had closed it (a stale error): the caller then goes on with a fresh connection. Any other
    /// error closes it and is returned.
    fn on_kept<T>(
        &mut self,
        session: &Session,
        op: impl FnOnce(&mut FramedStream<TcpStream>) -> Result<T, ProtocolError>,
    ) -> Option<Result<T, ProtocolError>> {
        let mut conn = self.conn.take()?;
        match op(&mut conn) {
            Ok(value) => {
                self.conn = Some(conn);
                Some(Ok(value))
            }
            Err(e) => {
                self.close(session);
                (!e.is_stale_connection()).then_some(Err(e))
            }
        }
    }

    /// Opens a fresh connection, mirrored in the session's socket table.
    fn connect(
        &mut self,
        shared: &Shared,
        session: &Session,
    ) -> Result<&mut FramedStream<TcpStream>, ProtocolError> {
        let stream =
            connect(self.addr, shared.connect_timeout()).map_err(|source| ProtocolError::Io {
                peer: self.addr.to_string(),
                source,
            })?;
        // A clone lets the session's end unblock this thread at once.
        if let Some(entry) = session.hb_sockets.lock().get_mut(self.slot) {
            *entry = stream.try_clone().ok();
        }
        if session.is_ended() {
            let _ = stream.shutdown(Shutdown::Both);
        }
        Ok(self
            .conn
            .insert(FramedStream::new(stream, self.addr.to_string())))
    }

    fn round_trip<R: Frame>(
        shared: &Shared,
        conn: &mut FramedStream<TcpStream>,
        request: &[u8],
    ) -> Result<R, ProtocolError> {
        let deadline = shared.io_deadline();
        conn.write_all(request, deadline)?;
        conn.read(deadline)
    }

    /// Closes the kept connection, if any (both descriptors: ours and the session's clone).
    pub fn close(&mut self, session: &Session) {
        if let Some(entry) = session.hb_sockets.lock().get_mut(self.slot) {
            *entry = None;
        }
        self.conn = None;
        self.answered_at = None;
    }
}
