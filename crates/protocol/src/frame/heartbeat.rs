//! 8070, the heartbeat port: the server's ping, the client's delivery cursor.

use super::codec::{Fields, Writer};
use super::{ErrorFrame, Frame, ParseError};
use crate::codes::token;
use crate::types::{SessionToken, Timestamp};

/// `Ping <session-token> <server-time> <presence-version>` (server → client on the heartbeat port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatPing {
    /// The session this heartbeat belongs to.
    pub token: SessionToken,
    /// The server's clock.
    pub server_time: Timestamp,
    /// Changes whenever the set of online users changes.
    pub presence_version: u64,
}

impl Frame for HeartbeatPing {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        if f.token_str() != token::PING {
            return Err(f.unexpected("`Ping`"));
        }
        let mut f = f.with_token(token::PING);
        f.arity(3)?;
        Ok(Self {
            token: f.session_token("session-token")?,
            server_time: f.timestamp("server-time")?,
            presence_version: f.num("presence-version")?,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::start(out, token::PING);
        w.word(self.token.as_str());
        w.display(&self.server_time);
        w.num(self.presence_version);
        w.end();
    }
}

/// GC/4 `Stopping <session-token> <text:c16>` (server → client on the heartbeat port): the server
/// is stopping and this session ends now; the client answers `Pong` as to a heartbeat, and
/// should log in again later (with its backoff), or at once on another instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Stopping {
    /// The session that ends.
    pub token: SessionToken,
    /// For a human: why, and what to expect.
    pub text: String,
}

/// What a client may be sent on its heartbeat port: a heartbeat, or (GC/4 sessions only) the
/// notice that the server stops.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatRequest {
    /// `Ping …`.
    Ping(HeartbeatPing),
    /// `Stopping …`.
    Stopping(Stopping),
}

impl HeartbeatRequest {
    /// The session the frame is for.
    pub fn token(&self) -> &SessionToken {
        match self {
            Self::Ping(p) => &p.token,
            Self::Stopping(s) => &s.token,
        }
    }
}

impl Frame for HeartbeatRequest {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::PING => HeartbeatPing::parse(line).map(Self::Ping),
            token::STOPPING => {
                let mut f = f.with_token(token::STOPPING);
                f.arity(2)?;
                Ok(Self::Stopping(Stopping {
                    token: f.session_token("session-token")?,
                    text: f.text("text")?,
                }))
            }
            _ => Err(f.unexpected("`Ping` or `Stopping`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Ping(p) => p.encode(out),
            Self::Stopping(s) => {
                let mut w = Writer::start(out, token::STOPPING);
                w.word(s.token.as_str());
                w.text(s.text.as_bytes());
                w.end();
            }
        }
    }
}

/// The client's answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatReply {
    /// `Pong <last-id> <client-time>`.
    Pong {
        /// The highest message id the client holds: the delivery cursor.
        last_id: u64,
        /// The client's clock.
        client_time: Timestamp,
    },
    /// `Err …`, e.g. `session` for a token that is not the client's.
    Err(ErrorFrame),
}

impl Frame for HeartbeatReply {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::PONG => {
                let mut f = f.with_token(token::PONG);
                f.arity(2)?;
                Ok(Self::Pong {
                    last_id: f.num("last-id")?,
                    client_time: f.timestamp("client-time")?,
                })
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected("`Pong` or `Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Pong {
                last_id,
                client_time,
            } => {
                let mut w = Writer::start(out, token::PONG);
                w.num(*last_id);
                w.display(client_time);
                w.end();
            }
            Self::Err(e) => e.encode_into(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ErrorCode;
    use crate::frame::tests::{TOKEN, exact, tok, ts};

    #[test]
    fn heartbeat_frames() {
        exact(
            HeartbeatPing {
                token: tok(),
                server_time: ts("1795733296.088305"),
                presence_version: 7,
            },
            &format!("Ping {TOKEN} 1795733296.088305 7\n"),
        );
        exact(
            HeartbeatReply::Pong {
                last_id: 0,
                client_time: ts("1640995200.123"),
            },
            "Pong 0 1640995200.123\n",
        );
        exact(
            HeartbeatReply::Err(ErrorFrame::new(ErrorCode::Session, "")),
            "Err session -\n",
        );
    }

    #[test]
    fn stopping_is_a_gc4_heartbeat_frame() {
        exact(
            HeartbeatRequest::Stopping(Stopping {
                token: tok(),
                text: "hi".into(),
            }),
            &format!("Stopping {TOKEN} IGJG\n"),
        );
        // A ping reads the same either way.
        let ping = HeartbeatPing {
            token: tok(),
            server_time: ts("1795733296.088305"),
            presence_version: 7,
        };
        exact(
            HeartbeatRequest::Ping(ping),
            &format!("Ping {TOKEN} 1795733296.088305 7\n"),
        );
        // A GC/1 client's parser does not take it.
        assert!(HeartbeatPing::parse(format!("Stopping {TOKEN} -").as_bytes()).is_err());
        assert_eq!(
            HeartbeatRequest::parse(b"Pong 1 2")
                .unwrap_err()
                .to_string(),
            "unexpected token `Pong`, expected `Ping` or `Stopping`"
        );
    }
}
