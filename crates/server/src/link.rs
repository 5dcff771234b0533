//! Outgoing connections from the server to a client's callback ports, kept open between exchanges
//! when reuse is on.

use std::net::{Shutdown, SocketAddr, TcpStream};

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
}

impl Link {
    /// A link to `addr` using entry `slot` of the session's socket table; nothing is connected
    /// until the first exchange.
    pub fn new(addr: SocketAddr, slot: usize) -> Self {
        Self {
            addr,
            slot,
            conn: None,
        }
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
        if let Some(mut conn) = self.conn.take() {
            match Self::round_trip(shared, &mut conn, request) {
                Ok(reply) => {
                    self.conn = Some(conn);
                    return Ok(reply);
                }
                Err(e) if e.is_stale_connection() => self.close(session),
                Err(e) => {
                    self.close(session);
                    return Err(e);
                }
            }
        }
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
        self.conn = Some(FramedStream::new(stream, self.addr.to_string()));
        let result = match self.conn.as_mut() {
            Some(conn) => Self::round_trip(shared, conn, request),
            None => unreachable!("just connected"),
        };
        if result.is_err() || !shared.config.reuse_connections {
            // One exchange per connection, or a failed one: the connector closes.
            self.close(session);
        }
        result
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
    }
}
