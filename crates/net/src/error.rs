//! The errors of gc-net.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

use gc_protocol::{Fingerprint, ProtocolError};

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
    /// The TLS handshake with the peer failed (it does not speak TLS, or refused ours).
    #[error("{peer} {detail}")]
    Tls {
        /// The peer.
        peer: String,
        /// What happened, in words.
        detail: String,
    },
    /// The peer's certificate is not the one pinned for it: not the server (or client) it claims
    /// to be, or its key was replaced. Nothing was sent to it.
    #[error(
        "{peer} presented the certificate {}, not the pinned {expected}",
        presented.map_or_else(|| "(none)".to_owned(), |p| p.to_string())
    )]
    WrongPeer {
        /// The peer.
        peer: String,
        /// The pinned fingerprint.
        expected: Fingerprint,
        /// What it presented.
        presented: Option<Fingerprint>,
    },
    /// A TLS identity (certificate and key) could not be made, read or used.
    #[error("TLS identity{}: {detail}", path.as_ref().map(|p| format!(" {}", p.display())).unwrap_or_default())]
    Identity {
        /// The file concerned, if one is.
        path: Option<PathBuf>,
        /// What is wrong and what to do.
        detail: String,
    },
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
            e @ (Self::Tls { .. } | Self::WrongPeer { .. }) => {
                let peer = match &e {
                    Self::Tls { peer, .. } | Self::WrongPeer { peer, .. } => peer.clone(),
                    _ => String::new(),
                };
                ProtocolError::Io {
                    peer,
                    source: io::Error::new(io::ErrorKind::PermissionDenied, e.to_string()),
                }
            }
            Self::Identity { path, detail } => ProtocolError::Io {
                peer: path.map(|p| p.display().to_string()).unwrap_or_default(),
                source: io::Error::other(detail),
            },
        }
    }
}
