//! The helpers every frame shares: [`Writer`] appends fields to a buffer, [`Fields`] splits a line
//! and parses its fields, with the checks every frame needs done once.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::ParseError;
use crate::error::FieldError;
use crate::limits::{MAX_B64_FIELD, MAX_FRAME_BYTES};
use crate::types::{
    ClientMsgId, SessionToken, Timestamp, Username, parse_port, parse_u32, parse_u64,
};

/// Appends one frame to a buffer, field by field: `start` writes the token, each field adds its
/// separating space, `end` the LF.
pub(super) struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    pub(super) fn start(out: &'a mut Vec<u8>, token: &str) -> Self {
        out.extend_from_slice(token.as_bytes());
        Self { out }
    }

    pub(super) fn word(&mut self, word: &str) {
        self.out.push(b' ');
        self.out.extend_from_slice(word.as_bytes());
    }

    pub(super) fn num(&mut self, n: u64) {
        self.out.push(b' ');
        // Digits backwards into a small stack buffer: no allocation, no formatting machinery.
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut n = n;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&buf[i..]);
    }

    pub(super) fn display(&mut self, value: &dyn fmt::Display) {
        use std::io::Write as _;
        self.out.push(b' ');
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{value}");
    }

    pub(super) fn text(&mut self, bytes: &[u8]) {
        self.out.push(b' ');
        if bytes.is_empty() {
            self.out.push(b'-');
        } else {
            c16::encode_into_vec(bytes, self.out);
        }
    }

    pub(super) fn b64(&mut self, bytes: &[u8]) {
        self.out.push(b' ');
        // Only auth frames carry base64; they are rare enough that a temporary String is fine.
        self.out.extend_from_slice(B64.encode(bytes).as_bytes());
    }

    pub(super) fn end(self) {
        self.out.push(b'\n');
    }
}

/// A line split into its token and fields, with the checks every frame shares done up front.
pub(super) struct Fields<'a> {
    token: &'static str,
    first: &'a str,
    rest: std::str::Split<'a, char>,
    remaining: usize,
}

impl<'a> Fields<'a> {
    pub(super) fn split(line: &'a [u8]) -> Result<Self, ParseError> {
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        if line.len() >= MAX_FRAME_BYTES {
            return Err(ParseError::TooLong);
        }
        if line.contains(&b'\r') {
            return Err(ParseError::CarriageReturn);
        }
        if line.contains(&b'\n') {
            return Err(ParseError::LineFeed);
        }
        let text = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
        let spaces = text.bytes().filter(|&b| b == b' ').count();
        let mut rest = text.split(' ');
        let first = rest.next().unwrap_or_default();
        if text.starts_with(' ') || text.ends_with(' ') || text.contains("  ") {
            return Err(ParseError::EmptyField);
        }
        Ok(Self {
            token: "",
            first,
            rest,
            remaining: spaces,
        })
    }

    pub(super) fn token_str(&self) -> &'a str {
        self.first
    }

    /// How many fields are left to read.
    pub(super) fn remaining(&self) -> usize {
        self.remaining
    }

    pub(super) fn with_token(mut self, token: &'static str) -> Self {
        self.token = token;
        self
    }

    pub(super) fn unexpected(&self, expected: &'static str) -> ParseError {
        let got: String = self
            .first
            .chars()
            .flat_map(char::escape_debug)
            .take(48)
            .collect();
        ParseError::UnexpectedToken { got, expected }
    }

    /// Checks the exact number of fields after the token.
    pub(super) fn arity(&self, expected: usize) -> Result<(), ParseError> {
        if self.remaining == expected {
            Ok(())
        } else {
            Err(ParseError::Arity {
                token: self.token,
                expected,
                got: self.remaining,
            })
        }
    }

    /// The next field. Callers check the arity first, so a missing field reads as empty and
    /// fails that field's own rule rather than panicking.
    pub(super) fn next(&mut self) -> &'a str {
        self.remaining = self.remaining.saturating_sub(1);
        self.rest.next().unwrap_or_default()
    }

    fn field_err(&self, field: &'static str, error: FieldError) -> ParseError {
        ParseError::Field {
            token: self.token,
            field,
            error,
        }
    }

    pub(super) fn value(&self, field: &'static str, detail: &'static str) -> ParseError {
        ParseError::Value {
            token: self.token,
            field,
            detail,
        }
    }

    pub(super) fn num(&mut self, field: &'static str) -> Result<u64, ParseError> {
        let s = self.next();
        parse_u64(s).map_err(|e| self.field_err(field, e))
    }

    pub(super) fn u32(&mut self, field: &'static str) -> Result<u32, ParseError> {
        let s = self.next();
        parse_u32(s).map_err(|e| self.field_err(field, e))
    }

    pub(super) fn port(&mut self, field: &'static str) -> Result<u16, ParseError> {
        let s = self.next();
        parse_port(s).map_err(|e| self.field_err(field, e))
    }

    pub(super) fn timestamp(&mut self, field: &'static str) -> Result<Timestamp, ParseError> {
        let s = self.next();
        Timestamp::parse(s).map_err(|e| self.field_err(field, e))
    }

    pub(super) fn username(&mut self, field: &'static str) -> Result<Username, ParseError> {
        let s = self.next();
        Username::new(s).map_err(|e| self.field_err(field, e))
    }

    pub(super) fn client_msg_id(&mut self, field: &'static str) -> Result<ClientMsgId, ParseError> {
        let s = self.next();
        ClientMsgId::new(s).map_err(|e| self.field_err(field, e))
    }

    pub(super) fn session_token(
        &mut self,
        field: &'static str,
    ) -> Result<SessionToken, ParseError> {
        let s = self.next();
        SessionToken::new(s).map_err(|e| self.field_err(field, e))
    }

    pub(super) fn c16(&mut self, field: &'static str) -> Result<Vec<u8>, ParseError> {
        let s = self.next();
        if s == "-" {
            return Ok(Vec::new());
        }
        c16::decode(s).map_err(|error| ParseError::C16 {
            token: self.token,
            field,
            error,
        })
    }

    pub(super) fn text(&mut self, field: &'static str) -> Result<String, ParseError> {
        let bytes = self.c16(field)?;
        String::from_utf8(bytes).map_err(|_| ParseError::TextNotUtf8 {
            token: self.token,
            field,
        })
    }

    pub(super) fn b64(&mut self, field: &'static str) -> Result<Vec<u8>, ParseError> {
        let s = self.next();
        let err = || ParseError::Base64 {
            token: self.token,
            field,
        };
        if s.len() > MAX_B64_FIELD {
            return Err(err());
        }
        B64.decode(s).map_err(|_| err())
    }

    pub(super) fn b64_text(&mut self, field: &'static str) -> Result<String, ParseError> {
        let bytes = self.b64(field)?;
        String::from_utf8(bytes).map_err(|_| ParseError::TextNotUtf8 {
            token: self.token,
            field,
        })
    }
}
