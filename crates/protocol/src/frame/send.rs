//! 9980, the sending port: messages, history and who is online.

use std::sync::LazyLock;

use super::codec::{Fields, Writer};
use super::common::{encode_rec, parse_rec};
use super::{ErrorFrame, Frame, ParseError};
use crate::codes::token;
use crate::limits::MAX_HISTORY_LIMIT;
use crate::types::{ClientMsgId, Record, SessionToken, Timestamp, Username};

// The `History` limit's rule, formatted once from the constant (see auth.rs). Plain digits: the
// wire text has always read `must be at most 1000`, and clients and tests match it.
static HISTORY_LIMIT_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be at most {MAX_HISTORY_LIMIT}"));

/// Frames a client sends on the sending port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendRequest {
    /// `Msg <session-token> <client-msg-id> <body:c16>`.
    Msg {
        /// The sender's session.
        token: SessionToken,
        /// Idempotency key chosen by the client.
        client_msg_id: ClientMsgId,
        /// The body as decoded from c16. Not yet validated as text: the server checks dedupe first,
        /// then emptiness, NUL, UTF-8 and size, in that order.
        body: Vec<u8>,
    },
    /// `History <session-token> <before-id> <limit>` (limit ≤ [`MAX_HISTORY_LIMIT`];
    /// before-id 0 = newest).
    History {
        /// The session.
        token: SessionToken,
        /// Return records with ids below this (0: from the newest).
        before_id: u64,
        /// At most this many records.
        limit: u32,
    },
    /// `Who <session-token>`.
    Who {
        /// The session.
        token: SessionToken,
    },
    /// `Bye <session-token>`.
    Bye {
        /// The session to end.
        token: SessionToken,
    },
}

impl SendRequest {
    /// The session token the request carries.
    pub fn token(&self) -> &SessionToken {
        match self {
            Self::Msg { token, .. }
            | Self::History { token, .. }
            | Self::Who { token }
            | Self::Bye { token } => token,
        }
    }
}

impl Frame for SendRequest {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::MSG => {
                let mut f = f.with_token(token::MSG);
                f.arity(3)?;
                Ok(Self::Msg {
                    token: f.session_token("session-token")?,
                    client_msg_id: f.client_msg_id("client-msg-id")?,
                    body: f.c16("body")?,
                })
            }
            token::HISTORY => {
                let mut f = f.with_token(token::HISTORY);
                f.arity(3)?;
                let token = f.session_token("session-token")?;
                let before_id = f.num("before-id")?;
                let limit = f.u32("limit")?;
                if limit > MAX_HISTORY_LIMIT {
                    return Err(f.value("limit", &HISTORY_LIMIT_RULE));
                }
                Ok(Self::History {
                    token,
                    before_id,
                    limit,
                })
            }
            token::WHO => {
                let mut f = f.with_token(token::WHO);
                f.arity(1)?;
                Ok(Self::Who {
                    token: f.session_token("session-token")?,
                })
            }
            token::BYE => {
                let mut f = f.with_token(token::BYE);
                f.arity(1)?;
                Ok(Self::Bye {
                    token: f.session_token("session-token")?,
                })
            }
            _ => Err(f.unexpected("`Msg`, `History`, `Who` or `Bye`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Msg {
                token,
                client_msg_id,
                body,
            } => {
                let mut w = Writer::start(out, token::MSG);
                w.word(token.as_str());
                w.word(client_msg_id.as_str());
                w.text(body);
                w.end();
            }
            Self::History {
                token,
                before_id,
                limit,
            } => {
                let mut w = Writer::start(out, token::HISTORY);
                w.word(token.as_str());
                w.num(*before_id);
                w.num((*limit).into());
                w.end();
            }
            Self::Who { token } => {
                let mut w = Writer::start(out, token::WHO);
                w.word(token.as_str());
                w.end();
            }
            Self::Bye { token } => {
                let mut w = Writer::start(out, token::BYE);
                w.word(token.as_str());
                w.end();
            }
        }
    }
}

/// Frames the server sends on the sending port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendReply {
    /// `Thx <id> <timestamp>`: stored (or, after `Bye`, `Thx 0 <timestamp>`).
    Thx {
        /// The stored record's id (0 after `Bye`).
        id: u64,
        /// The stored record's timestamp.
        timestamp: Timestamp,
    },
    /// `Rec …` in a `History` reply.
    Rec(Record),
    /// `End` of a `History` reply.
    End,
    /// `Online <presence-version> <username> …`.
    Online {
        /// The presence version this list belongs to.
        presence_version: u64,
        /// Who is online, each user once.
        users: Vec<Username>,
    },
    /// `Err …`.
    Err(ErrorFrame),
}

impl Frame for SendReply {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::THX => {
                let mut f = f.with_token(token::THX);
                f.arity(2)?;
                Ok(Self::Thx {
                    id: f.num("id")?,
                    timestamp: f.timestamp("timestamp")?,
                })
            }
            token::REC => parse_rec(f.with_token(token::REC)).map(Self::Rec),
            token::END => {
                f.with_token(token::END).arity(0)?;
                Ok(Self::End)
            }
            token::ONLINE => {
                let mut f = f.with_token(token::ONLINE);
                if f.remaining() == 0 {
                    return Err(ParseError::MissingField {
                        token: token::ONLINE,
                        field: "presence-version",
                    });
                }
                let presence_version = f.num("presence-version")?;
                let mut users = Vec::with_capacity(f.remaining());
                while f.remaining() > 0 {
                    users.push(f.username("username")?);
                }
                Ok(Self::Online {
                    presence_version,
                    users,
                })
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected("`Thx`, `Rec`, `End`, `Online` or `Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Thx { id, timestamp } => {
                let mut w = Writer::start(out, token::THX);
                w.num(*id);
                w.display(timestamp);
                w.end();
            }
            Self::Rec(r) => encode_rec(r, out),
            Self::End => Writer::start(out, token::END).end(),
            Self::Online {
                presence_version,
                users,
            } => {
                let mut w = Writer::start(out, token::ONLINE);
                w.num(*presence_version);
                for u in users {
                    w.word(u.as_str());
                }
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
    use crate::frame::tests::{TOKEN, exact, rec, tok, ts, user};

    #[test]
    fn send_frames() {
        exact(
            SendRequest::Msg {
                token: tok(),
                client_msg_id: ClientMsgId::new("m-1").unwrap(),
                body: b"hi".to_vec(),
            },
            &format!("Msg {TOKEN} m-1 IGJG\n"),
        );
        exact(
            SendRequest::History {
                token: tok(),
                before_id: 0,
                limit: 1000,
            },
            &format!("History {TOKEN} 0 1000\n"),
        );
        exact(SendRequest::Who { token: tok() }, &format!("Who {TOKEN}\n"));
        exact(SendRequest::Bye { token: tok() }, &format!("Bye {TOKEN}\n"));
        exact(
            SendReply::Thx {
                id: 5,
                timestamp: ts("1795733296.5"),
            },
            "Thx 5 1795733296.5\n",
        );
        exact(
            SendReply::Rec(rec(4, "3", "carol", "x")),
            "Rec 4 3 carol IH\n",
        );
        let mut in_room = rec(4, "3", "carol", "x");
        in_room.room = crate::types::Room::new("#dev").unwrap();
        exact(SendReply::Rec(in_room), "Rec 4 3 carol IH #dev\n");
        exact(SendReply::End, "End\n");
        exact(
            SendReply::Online {
                presence_version: 3,
                users: vec![user("alice"), user("bob")],
            },
            "Online 3 alice bob\n",
        );
        exact(
            SendReply::Online {
                presence_version: 0,
                users: vec![],
            },
            "Online 0\n",
        );
        exact(
            SendReply::Err(ErrorFrame::new(ErrorCode::RateLimited, "wait")),
            "Err rate-limited HHBGJGEH\n",
        );
    }

    #[test]
    fn msg_body_keeps_raw_bytes_for_later_checks() {
        // NUL and invalid UTF-8 are frame-valid: the server rejects them after its dedupe check.
        let line = format!("Msg {TOKEN} x AAPP");
        match SendRequest::parse(line.as_bytes()).unwrap() {
            SendRequest::Msg { body, .. } => assert_eq!(body, vec![0x00, 0xff]),
            other => panic!("{other:?}"),
        }
        let line = format!("Msg {TOKEN} x -");
        assert!(matches!(
            SendRequest::parse(line.as_bytes()).unwrap(),
            SendRequest::Msg { body, .. } if body.is_empty()
        ));
    }
}
