//! Errors of the protocol crate.

use std::io;

/// A field that broke its syntax rule.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum FieldError {
    /// Not a canonical decimal number (digits only, no sign, no leading zeros) or out of range.
    #[error("not a canonical decimal number in range")]
    Number,
    /// Not a port number 1–65535.
    #[error("not a port number (1-65535)")]
    Port,
    /// Not `SECONDS[.FRACTION]` with at most six decimals.
    #[error("not a timestamp (seconds since the epoch, up to six decimals)")]
    Timestamp,
    /// Not 1–32 characters of `A-Z a-z 0-9 _ . -`.
    #[error("not a valid username (1-32 characters of A-Z a-z 0-9 _ . -)")]
    Username,
    /// Not 1–32 characters of `A-Z a-z 0-9 _ -`.
    #[error("not a valid client-msg-id (1-32 characters of A-Z a-z 0-9 _ -)")]
    ClientMsgId,
    /// Not 64 lowercase hex digits.
    #[error("not a session token (64 lowercase hex digits)")]
    SessionToken,
    /// Not `SHA256:` and 43 characters of base64.
    #[error("not a certificate fingerprint (SHA256: and 43 characters of base64)")]
    Fingerprint,
    /// Neither a room (`#` and 1-32 of `a-z 0-9 _ . -`) nor a direct conversation (`@` and two
    /// different lower-case usernames in order, joined by `+`).
    #[error(
        "not a room name (# and 1-32 characters of a-z 0-9 _ . -, or @name+name for a direct conversation)"
    )]
    Room,
    /// Not `public` or `private`.
    #[error("not public or private")]
    Visibility,
    /// Not `member`, `moderator` or `owner`.
    #[error("not a room role (member, moderator or owner)")]
    RoomRole,
    /// Not `public`, `private` or `direct`.
    #[error("not a kind of room (public, private or direct)")]
    ListedKind,
    /// Not `owner`, `moderator`, `member`, `invited` or `-`.
    #[error("not a role in a room listing (owner, moderator, member, invited or -)")]
    ListedRole,
    /// Not 64 lowercase hex digits (a SHA-256).
    #[error("not a content hash (64 lowercase hex digits of a SHA-256)")]
    ContentHash,
}

/// Errors reading or writing frames on a stream. Every variant names the peer concerned.
#[derive(Debug, thiserror::Error)]
pub enum ProtocolError {
    /// The peer sent more than the frame limit without an LF.
    #[error("frame from {peer} is longer than {limit} bytes")]
    TooLong {
        /// Who sent it.
        peer: String,
        /// The limit that was exceeded.
        limit: usize,
    },
    /// The peer closed the connection before a whole frame arrived (`partial` bytes were read).
    #[error("{peer} closed the connection{}", if *partial > 0 { " in the middle of a frame" } else { "" })]
    Closed {
        /// Who closed.
        peer: String,
        /// Bytes of the unfinished frame.
        partial: usize,
    },
    /// No whole frame arrived before the deadline.
    #[error("timed out waiting for {peer}")]
    TimedOut {
        /// Who was silent.
        peer: String,
    },
    /// A whole frame arrived but broke a syntax rule.
    #[error("malformed frame from {peer}: {error}")]
    Malformed {
        /// Who sent it.
        peer: String,
        /// Which rule it broke.
        #[source]
        error: crate::frame::ParseError,
    },
    /// Any other I/O failure.
    #[error("I/O error with {peer}")]
    Io {
        /// The peer concerned.
        peer: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

impl ProtocolError {
    /// Whether this error, met on a connection kept open from an earlier exchange, only means the
    /// peer had closed that connection meanwhile (end of stream before any byte of the reply, or
    /// a reset/broken pipe). The exchange should then be retried at once on a fresh connection;
    /// it is not a failure of the peer.
    pub fn is_stale_connection(&self) -> bool {
        use io::ErrorKind::{BrokenPipe, ConnectionAborted, ConnectionReset};
        match self {
            Self::Closed { partial: 0, .. } => true,
            Self::Io { source, .. } => {
                matches!(
                    source.kind(),
                    BrokenPipe | ConnectionReset | ConnectionAborted
                )
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stale_connections() {
        let closed = ProtocolError::Closed {
            peer: "x".into(),
            partial: 0,
        };
        assert!(closed.is_stale_connection());
        let half = ProtocolError::Closed {
            peer: "x".into(),
            partial: 3,
        };
        assert!(!half.is_stale_connection());
        let timeout = ProtocolError::TimedOut { peer: "x".into() };
        assert!(!timeout.is_stale_connection());
        let reset = ProtocolError::Io {
            peer: "x".into(),
            source: io::ErrorKind::ConnectionReset.into(),
        };
        assert!(reset.is_stale_connection());
    }
}
