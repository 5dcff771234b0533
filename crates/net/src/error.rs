//! The errors of gc-net.

use std::io;
use std::net::SocketAddr;

use gc_protocol::ProtocolError;

/// Why an exchange on a connection failed.
#[derive(Debug, thiserror::Error)]
pub enum NetError {
    /// No connection could be opened (refused, unreachable, timed out). Nothing was sent.
    #[error("cannot connect to {addr}")]
    Connect {
        /// Where to.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The connection was open but the exchange failed on the wire (closed, timed out,
    /// malformed); the error names the peer.
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl NetError {
    /// The same failure as a protocol error naming the peer (for callers that do not tell a
    /// failed connect from a failed exchange).
    pub fn into_protocol(self) -> ProtocolError {
        match self {
            Self::Connect { addr, source } => ProtocolError::Io {
                peer: addr.to_string(),
                source,
            },
            Self::Protocol(e) => e,
        }
    }
}
