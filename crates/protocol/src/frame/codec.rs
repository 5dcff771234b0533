//! The helpers every frame shares: [`Writer`] appends fields to a buffer, [`Fields`] splits a line
//! and parses its fields, with the checks every frame needs done once.

use std::fmt;
use std::str::FromStr;
use std::sync::LazyLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::ParseError;
use super::error::thousands;
use crate::error::FieldError;
use crate::limits::{
    MAX_B64_FIELD, MAX_FRAME_BYTES, MAX_SCRAM_ITERATIONS, MAX_SCRAM_SALT_BYTES,
    MIN_SCRAM_SALT_BYTES, SCRAM_KEY_BYTES,
};
use crate::types::{
    ClientMsgId, Fingerprint, Room, SessionToken, Timestamp, Username, parse_port, parse_u32,
    parse_u64,
};

// The rules of a SCRAM verifier's fields (`Register`, `Passwd`, the `Challenge` answer), as the
// peer reads them. Formatted from the limits so a text cannot drift from its check, and formatted
// once, into statics, so `ParseError::Value` keeps its `&'static str` detail.
static SALT_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be {MIN_SCRAM_SALT_BYTES} to {MAX_SCRAM_SALT_BYTES} bytes"));
static ITERATIONS_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be 1 to {}", thousands(MAX_SCRAM_ITERATIONS.into())));
static KEY_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be {SCRAM_KEY_BYTES} bytes (SHA-256)"));

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
    /// The fields after the token, not yet read.
    rest: &'a str,
    remaining: usize,
}

/// What one pass over a line finds: the bytes every frame must not hold, and its fields.
#[derive(Default)]
struct Scan {
    carriage_return: bool,
    line_feed: bool,
    spaces: usize,
    /// A leading, trailing or doubled space.
    empty_field: bool,
}

/// Every byte of an 8-byte word set to `b`.
const fn splat(b: u8) -> u64 {
    u64::from_ne_bytes([b; 8])
}

impl Scan {
    /// One pass over `line`. Most of a frame is c16 text and digits, none of which is below
    /// `0x21`, so the scan tests 8 bytes at a time for one below it (space, CR, LF or another
    /// control byte) and looks at single bytes only in the words that have one. Long message
    /// bodies are thus crossed quickly, and short lines cost one loop instead of a search each.
    fn of(line: &[u8]) -> Self {
        let mut scan = Self::default();
        let mut last_space: Option<usize> = None;
        let mut at = 0;
        let mut words = line.chunks_exact(8);
        for word in words.by_ref() {
            let mut bytes = [0u8; 8];
            bytes.copy_from_slice(word);
            let x = u64::from_ne_bytes(bytes);
            // Nonzero iff some byte of `x` is below 0x21 (exact for bounds up to 0x80).
            if x.wrapping_sub(splat(0x21)) & !x & splat(0x80) != 0 {
                for (i, &b) in word.iter().enumerate() {
                    scan.byte(b, at + i, &mut last_space);
                }
            }
            at += 8;
        }
        for (i, &b) in words.remainder().iter().enumerate() {
            scan.byte(b, at + i, &mut last_space);
        }
        if line.last() == Some(&b' ') {
            scan.empty_field = true;
        }
        scan
    }

    fn byte(&mut self, b: u8, at: usize, last_space: &mut Option<usize>) {
        match b {
            b'\r' => self.carriage_return = true,
            b'\n' => self.line_feed = true,
            b' ' => {
                if at == 0 || *last_space == Some(at - 1) {
                    self.empty_field = true;
                }
                *last_space = Some(at);
                self.spaces += 1;
            }
            _ => {}
        }
    }
}

/// Splits `text` at its first space: the part before, and the rest after it (`None` when there
/// is no space). For the short fields before a frame's last one a plain loop beats a search.
fn split_at_space(text: &str) -> (&str, Option<&str>) {
    match text.bytes().position(|b| b == b' ') {
        // A space is ASCII: both sides are on character boundaries.
        Some(i) => (&text[..i], Some(&text[i + 1..])),
        None => (text, None),
    }
}

impl<'a> Fields<'a> {
    pub(super) fn split(line: &'a [u8]) -> Result<Self, ParseError> {
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        if line.len() >= MAX_FRAME_BYTES {
            return Err(ParseError::TooLong);
        }
        let scan = Scan::of(line);
        if scan.carriage_return {
            return Err(ParseError::CarriageReturn);
        }
        if scan.line_feed {
            return Err(ParseError::LineFeed);
        }
        let text = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
        if scan.empty_field {
            return Err(ParseError::EmptyField);
        }
        let (first, rest) = split_at_space(text);
        Ok(Self {
            token: "",
            first,
            rest: rest.unwrap_or_default(),
            remaining: scan.spaces,
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

    /// Checks that there are `min` to `max` fields after the token, and says how many of the
    /// optional ones (the last `max - min`) are there.
    pub(super) fn arity_between(&self, min: usize, max: usize) -> Result<usize, ParseError> {
        if (min..=max).contains(&self.remaining) {
            Ok(self.remaining - min)
        } else {
            Err(ParseError::ArityRange {
                token: self.token,
                min,
                max,
                got: self.remaining,
            })
        }
    }

    /// The next field. Callers check the arity first, so a missing field reads as empty and
    /// fails that field's own rule rather than panicking. The last field (a message body, most
    /// often) is taken whole, without looking at its bytes again.
    pub(super) fn next(&mut self) -> &'a str {
        match self.remaining {
            0 => "",
            1 => {
                self.remaining = 0;
                std::mem::take(&mut self.rest)
            }
            _ => {
                self.remaining -= 1;
                let (field, rest) = split_at_space(self.rest);
                self.rest = rest.unwrap_or_default();
                field
            }
        }
    }

    /// The next field, left to be read: for a frame whose optional fields are told apart by
    /// their shape.
    pub(super) fn peek(&self) -> &'a str {
        match self.remaining {
            0 => "",
            1 => self.rest,
            _ => split_at_space(self.rest).0,
        }
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

    pub(super) fn room(&mut self, field: &'static str) -> Result<Room, ParseError> {
        let s = self.next();
        Room::new(s).map_err(|e| self.field_err(field, e))
    }

    /// A field of a type with a text form of its own (a visibility, a role, …).
    pub(super) fn parsed<T: FromStr<Err = FieldError>>(
        &mut self,
        field: &'static str,
    ) -> Result<T, ParseError> {
        let s = self.next();
        s.parse().map_err(|e| self.field_err(field, e))
    }

    pub(super) fn client_msg_id(&mut self, field: &'static str) -> Result<ClientMsgId, ParseError> {
        let s = self.next();
        ClientMsgId::new(s).map_err(|e| self.field_err(field, e))
    }

    pub(super) fn fingerprint(&mut self, field: &'static str) -> Result<Fingerprint, ParseError> {
        let s = self.next();
        s.parse()
            .map_err(|_| self.field_err(field, FieldError::Fingerprint))
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

    /// A text field of at most `max` bytes; `rule` says so to the peer when it is longer.
    pub(super) fn text_at_most(
        &mut self,
        field: &'static str,
        max: usize,
        rule: &'static str,
    ) -> Result<String, ParseError> {
        let text = self.text(field)?;
        if text.len() > max {
            return Err(self.value(field, rule));
        }
        Ok(text)
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

    /// A SCRAM salt: base64 of [`MIN_SCRAM_SALT_BYTES`] to [`MAX_SCRAM_SALT_BYTES`] bytes.
    pub(super) fn scram_salt(&mut self, field: &'static str) -> Result<Vec<u8>, ParseError> {
        let salt = self.b64(field)?;
        if !(MIN_SCRAM_SALT_BYTES..=MAX_SCRAM_SALT_BYTES).contains(&salt.len()) {
            return Err(self.value(field, &SALT_RULE));
        }
        Ok(salt)
    }

    /// A SCRAM iteration count: 1 to [`MAX_SCRAM_ITERATIONS`].
    pub(super) fn scram_iterations(&mut self, field: &'static str) -> Result<u32, ParseError> {
        let iterations = self.u32(field)?;
        if iterations == 0 || iterations > MAX_SCRAM_ITERATIONS {
            return Err(self.value(field, &ITERATIONS_RULE));
        }
        Ok(iterations)
    }

    /// A SCRAM key or proof: base64 of exactly [`SCRAM_KEY_BYTES`] bytes.
    pub(super) fn scram_key(&mut self, field: &'static str) -> Result<Vec<u8>, ParseError> {
        let key = self.b64(field)?;
        if key.len() != SCRAM_KEY_BYTES {
            return Err(self.value(field, &KEY_RULE));
        }
        Ok(key)
    }

    pub(super) fn b64_text(&mut self, field: &'static str) -> Result<String, ParseError> {
        let bytes = self.b64(field)?;
        String::from_utf8(bytes).map_err(|_| ParseError::TextNotUtf8 {
            token: self.token,
            field,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    /// What splitting must give, written the plain way: a search per rule, in the order of the
    /// rules (CR, LF, UTF-8, empty fields), then the fields.
    fn reference(line: &[u8]) -> Result<Vec<String>, ParseError> {
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
        if text.starts_with(' ') || text.ends_with(' ') || text.contains("  ") {
            return Err(ParseError::EmptyField);
        }
        Ok(text.split(' ').map(str::to_owned).collect())
    }

    fn fields(line: &[u8]) -> Result<Vec<String>, ParseError> {
        let mut f = Fields::split(line)?;
        let mut out = vec![f.token_str().to_owned()];
        let n = f.remaining();
        for _ in 0..n {
            out.push(f.next().to_owned());
        }
        assert_eq!(f.next(), "", "nothing after the last field");
        Ok(out)
    }

    #[test]
    fn the_scan_sees_every_rule_at_every_position() {
        // Each special byte at each offset of a line that spans several 8-byte words.
        let base = b"Rec 12 1700000000.5 alice BEGEHGHGIGJGKGLGMG".to_vec();
        for at in 0..base.len() {
            for special in [b' ', b'\r', b'\n', b'\t', 0u8, 0x20, 0x21, 0x80, 0xC3] {
                let mut line = base.clone();
                line[at] = special;
                assert_eq!(fields(&line), reference(&line), "{special:#x} at {at}");
                let mut line = base.clone();
                line.insert(at, special);
                assert_eq!(
                    fields(&line),
                    reference(&line),
                    "{special:#x} inserted at {at}"
                );
            }
        }
    }

    #[test]
    fn the_last_field_is_taken_whole() {
        let mut line = b"Msg t id ".to_vec();
        line.extend(std::iter::repeat_n(b'A', 40_000));
        let got = fields(&line).unwrap();
        assert_eq!(got.len(), 4);
        assert_eq!(got[3].len(), 40_000);
    }

    proptest! {
        #[test]
        fn splitting_agrees_with_the_plain_rules(
            line in proptest::collection::vec(
                prop_oneof![
                    Just(b' '), Just(b'\r'), Just(b'\n'), Just(b'A'), Just(b'P'), Just(b'7'),
                    Just(0xC3u8), Just(0xA9u8), Just(0x09u8), any::<u8>(),
                ],
                0..80,
            )
        ) {
            prop_assert_eq!(fields(&line), reference(&line));
        }
    }
}
