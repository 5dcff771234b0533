//! The client's connections to the server: opened from the configured source address, tracked so
//! `close()` can cut them short, and the kept connection to the server's sending port.

use std::net::{SocketAddr, TcpStream};
use std::time::{Duration, Instant};

use gc_protocol::{FramedStream, ProtocolError};

use crate::error::ClientError;
use crate::net;
use crate::state::ClientState;

/// A deadline one I/O timeout from now.
pub fn io_deadline(shared: &ClientState) -> Instant {
    Instant::now() + shared.config.io_timeout
}

/// Connects (from the configured source address) and registers the socket so `close()` can cut
/// it short.
pub fn open(
    shared: &ClientState,
    addr: SocketAddr,
    what: &'static str,
) -> Result<FramedStream<TcpStream>, ClientError> {
    let config = &shared.config;
    let stream = net::connect(addr, config.bind_ip, config.io_timeout)
        .map_err(|source| ClientError::Connect { what, addr, source })?;
    shared.track(&stream);
    Ok(FramedStream::new(stream, addr.to_string()))
}

// ───────────────────────────── the sending connection ─────────────────────────────

/// The connection to the server's sending port, kept between exchanges when reuse is on.
#[derive(Debug, Default)]
pub struct SendLink {
    addr: Option<SocketAddr>,
    conn: Option<FramedStream<TcpStream>>,
    last_used: Option<Instant>,
}

/// A failed read: the error, and whether any reply had arrived (then a retry would resend
/// requests the server has already answered).
pub type ReadFail = (ProtocolError, bool);

impl SendLink {
    /// Writes `request` and reads its replies with `read`. A kept connection found closed by the
    /// server before any reply is not an error: the exchange is retried at once on a fresh one.
    pub fn round_trip<R>(
        &mut self,
        shared: &ClientState,
        addr: SocketAddr,
        what: &'static str,
        request: &[u8],
        mut read: impl FnMut(&mut FramedStream<TcpStream>) -> Result<R, ReadFail>,
    ) -> Result<R, ClientError> {
        if self.addr != Some(addr) {
            self.close();
            self.addr = Some(addr);
        }
        if let Some(mut conn) = self.conn.take() {
            shared.track(conn.get_ref());
            let result = attempt(shared, &mut conn, request, &mut read);
            shared.untrack();
            match result {
                Ok(reply) => {
                    self.keep(shared, conn);
                    return Ok(reply);
                }
                Err((e, false)) if e.is_stale_connection() => {
                    tracing::debug!("the kept sending connection was closed ({e}); reconnecting");
                }
                Err((e, _)) => return Err(ClientError::protocol(what, e)),
            }
        }
        // A fresh connection can be cut too: the server hands it to a listener of any session
        // from this address, and cuts it if that session ends (e.g. our previous one, lingering
        // until it misses three heartbeats). Try one more before giving up.
        let mut fresh_tries = 2;
        loop {
            fresh_tries -= 1;
            let mut conn = open(shared, addr, "the server's send port")?;
            let result = attempt(shared, &mut conn, request, &mut read);
            shared.untrack();
            match result {
                Ok(reply) => {
                    self.keep(shared, conn);
                    return Ok(reply);
                }
                Err((e, false)) if e.is_stale_connection() && fresh_tries > 0 => {
                    tracing::debug!("a fresh sending connection was closed ({e}); trying again");
                }
                Err((e, _)) => return Err(ClientError::protocol(what, e)),
            }
        }
    }

    fn keep(&mut self, shared: &ClientState, conn: FramedStream<TcpStream>) {
        if shared.config.reuse_connections {
            self.conn = Some(conn);
            self.last_used = Some(Instant::now());
        }
    }

    pub fn idle_deadline(&self, idle: Duration) -> Option<Instant> {
        self.conn.as_ref()?;
        self.last_used.map(|t| t + idle)
    }

    pub fn close(&mut self) {
        self.conn = None;
        self.last_used = None;
    }
}

fn attempt<R>(
    shared: &ClientState,
    conn: &mut FramedStream<TcpStream>,
    request: &[u8],
    read: &mut impl FnMut(&mut FramedStream<TcpStream>) -> Result<R, ReadFail>,
) -> Result<R, ReadFail> {
    conn.write_all(request, io_deadline(shared))
        .map_err(|e| (e, false))?;
    read(conn)
}
