//! 6090, the delivery port: batches of records pushed to the client.

use std::sync::LazyLock;

use super::codec::{Fields, Writer};
use super::common::{encode_rec, parse_rec};
use super::{ErrorFrame, Frame, ParseError};
use crate::codes::token;
use crate::limits::MAX_BATCH_RECORDS;
use crate::types::{Record, SessionToken};

// The `Batch` size's rule, formatted once from the constant (see auth.rs). Plain digits: the wire
// text has always read `must be 1 to 1000`.
static BATCH_SIZE_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be 1 to {MAX_BATCH_RECORDS}"));

/// Frames the server sends on the delivery port: `Batch`, then `n` × `Rec`, then `End`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryFrame {
    /// `Batch <session-token> <n>`, 1 ≤ n ≤ [`MAX_BATCH_RECORDS`].
    Batch {
        /// The session the batch is for.
        token: SessionToken,
        /// How many `Rec` frames follow.
        n: u32,
    },
    /// `Rec <id> <timestamp> <username> <body:c16>`.
    Rec(Record),
    /// `End`.
    End,
}

impl Frame for DeliveryFrame {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::BATCH => {
                let mut f = f.with_token(token::BATCH);
                f.arity(2)?;
                let token = f.session_token("session-token")?;
                let n = f.u32("n")?;
                if n == 0 || n as usize > MAX_BATCH_RECORDS {
                    return Err(f.value("n", &BATCH_SIZE_RULE));
                }
                Ok(Self::Batch { token, n })
            }
            token::REC => parse_rec(f.with_token(token::REC)).map(Self::Rec),
            token::END => {
                f.with_token(token::END).arity(0)?;
                Ok(Self::End)
            }
            _ => Err(f.unexpected("`Batch`, `Rec` or `End`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Batch { token, n } => {
                let mut w = Writer::start(out, token::BATCH);
                w.word(token.as_str());
                w.num((*n).into());
                w.end();
            }
            Self::Rec(r) => encode_rec(r, out),
            Self::End => Writer::start(out, token::END).end(),
        }
    }
}

/// The client's answer to a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryReply {
    /// `Thx <last-id>`: the client now holds everything up to `last_id`.
    Thx {
        /// The client's cursor after the batch.
        last_id: u64,
    },
    /// `Err …`.
    Err(ErrorFrame),
}

impl Frame for DeliveryReply {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::THX => {
                let mut f = f.with_token(token::THX);
                f.arity(1)?;
                Ok(Self::Thx {
                    last_id: f.num("last-id")?,
                })
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected("`Thx` or `Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Thx { last_id } => {
                let mut w = Writer::start(out, token::THX);
                w.num(*last_id);
                w.end();
            }
            Self::Err(e) => e.encode_into(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::tests::{TOKEN, exact, rec, tok};

    #[test]
    fn delivery_frames() {
        exact(
            DeliveryFrame::Batch { token: tok(), n: 2 },
            &format!("Batch {TOKEN} 2\n"),
        );
        exact(
            DeliveryFrame::Rec(rec(1, "1640995200.123", "alice", "a;b\nc")),
            "Rec 1 1640995200.123 alice BGLDCGKADG\n",
        );
        exact(
            DeliveryFrame::Rec(rec(2, "1", "bob", "é")),
            "Rec 2 1 bob DMJK\n",
        );
        exact(
            DeliveryFrame::Rec(rec(3, "2", "bob", "\u{1b}[2J")),
            "Rec 3 2 bob LBLFCDKE\n",
        );
        exact(DeliveryFrame::End, "End\n");
        exact(DeliveryReply::Thx { last_id: 2 }, "Thx 2\n");
    }
}
