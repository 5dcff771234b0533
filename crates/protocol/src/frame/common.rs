//! Frames more than one port shares: `Err` (a possible reply everywhere) and `Rec` (on delivery
//! and on sending, the same bytes).

use std::fmt;

use super::codec::{Fields, Writer};
use super::{Frame, ParseError};
use crate::codes::{ErrorCode, token};
use crate::sanitize::Sanitized;
use crate::types::{Record, Room};

/// `Err <code> <text:c16>`: an error reply, possible wherever a reply is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    /// What kind of error.
    pub code: ErrorCode,
    /// For humans: what happened and what to do.
    pub text: String,
}

impl ErrorFrame {
    /// An error frame with a text.
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    pub(super) fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Writer::start(out, token::ERR);
        w.word(self.code.as_str());
        w.text(self.text.as_bytes());
        w.end();
    }

    pub(super) fn parse_fields(mut f: Fields<'_>) -> Result<Self, ParseError> {
        f.arity(2)?;
        let code = f.next().parse().map_err(|_| ParseError::Value {
            token: token::ERR,
            field: "code",
            detail: "not a known error code",
        })?;
        let text = f.text("text")?;
        Ok(Self { code, text })
    }
}

impl fmt::Display for ErrorFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The text is the peer's: shown safely wherever the frame is formatted.
        write!(f, "{}: {}", self.code, Sanitized(&self.text))
    }
}

impl Frame for ErrorFrame {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::ERR => Self::parse_fields(f.with_token(token::ERR)),
            _ => Err(f.unexpected("`Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_into(out);
    }
}

/// `Rec <id> <timestamp> <username> <body:c16> [<room>]`: the room is written only when it is not
/// `#general`, so `#general`'s records are byte for byte GC/1's (and a GC/1 session, which is
/// only ever sent those, never sees the field).
pub(super) fn encode_rec(record: &Record, out: &mut Vec<u8>) {
    let mut w = Writer::start(out, token::REC);
    w.num(record.id);
    w.display(&record.timestamp);
    w.word(record.username.as_str());
    w.text(record.body.as_bytes());
    if !record.room.is_general() {
        w.word(record.room.as_str());
    }
    w.end();
}

/// Appends a `Rec` frame for `record` to `out` (the same bytes on 6090 and 9980), so a server can
/// encode a record once and send it to many clients.
pub fn encode_rec_frame(record: &Record, out: &mut Vec<u8>) {
    encode_rec(record, out);
}

pub(super) fn parse_rec(mut f: Fields<'_>) -> Result<Record, ParseError> {
    let with_room = f.arity_between(4, 5)? == 1;
    let id = f.num("id")?;
    let timestamp = f.timestamp("timestamp")?;
    let username = f.username("username")?;
    let body = f.text("body")?;
    let room = if with_room {
        f.room("room")?
    } else {
        Room::general()
    };
    Ok(Record {
        id,
        room,
        timestamp,
        username,
        body,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::tests::rec;
    use crate::frame::{DeliveryFrame, SendReply};

    #[test]
    fn every_error_code_round_trips() {
        for code in ErrorCode::ALL {
            let frame = ErrorFrame::new(code, "what to do");
            let bytes = frame.to_bytes();
            assert_eq!(ErrorFrame::parse(&bytes[..bytes.len() - 1]).unwrap(), frame);
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        }
    }

    #[test]
    fn rec_frame_encoder_matches_frame_encoding() {
        let r = rec(9, "1.5", "zed", "hello");
        let mut a = Vec::new();
        encode_rec_frame(&r, &mut a);
        assert_eq!(a, DeliveryFrame::Rec(r.clone()).to_bytes());
        assert_eq!(a, SendReply::Rec(r).to_bytes());
    }
}
