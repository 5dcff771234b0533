//! The record line format of `database.db` and `cdatabase.db`, and the `database.msgids` line
//! format. Pure functions: no I/O.
//!
//! A record line is `{id};{timestamp};{username};{escaped message}` + LF. The message is escaped
//! so the record stays on one line: `\` → `\\`, LF → `\n`, CR → `\r`; every other byte is kept
//! (`;` needs no escape: the message is the last field).

use std::io::Write as _;

use gc_protocol::types::{Record, Timestamp, Username, is_valid_username, parse_u64};

use crate::error::LineError;

/// The longest line (including its LF) any of the store's files may hold. No valid record comes
/// near it (bodies are at most [`MAX_BODY_BYTES`]); it bounds the memory a damaged file can cost.
pub const MAX_LINE_BYTES: usize = 1024 * 1024;

/// The largest message body a record may hold, in bytes: the protocol's ceiling, so every stored
/// record fits in one `Rec` frame. [`crate::MessageStore::append`] and
/// [`crate::ClientCache::insert`] refuse longer ones, and a longer one in a file is a bad line.
pub const MAX_BODY_BYTES: usize = gc_protocol::limits::MAX_BODY_BYTES;

/// Appends `record` as one line (with its LF) to `out`.
pub fn encode_record(record: &Record, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{};{};{};",
        record.id, record.timestamp, record.username
    );
    escape_into(record.body.as_bytes(), out);
    out.push(b'\n');
}

/// The length of `record`'s line, LF included, without encoding it.
pub fn encoded_len(record: &Record) -> usize {
    let escapes = record
        .body
        .bytes()
        .filter(|b| matches!(b, b'\\' | b'\n' | b'\r'))
        .count();
    decimal_len(record.id)
        + record.timestamp.to_string().len()
        + record.username.as_str().len()
        + record.body.len()
        + escapes
        + 4
}

fn decimal_len(mut n: u64) -> usize {
    let mut len = 1;
    while n >= 10 {
        n /= 10;
        len += 1;
    }
    len
}

/// Appends `text` escaped: `\` → `\\`, LF → `\n`, CR → `\r`, everything else verbatim.
pub fn escape_into(text: &[u8], out: &mut Vec<u8>) {
    let mut start = 0;
    for (i, &b) in text.iter().enumerate() {
        let esc: &[u8] = match b {
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            _ => continue,
        };
        out.extend_from_slice(&text[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&text[start..]);
}

/// Reverses [`escape_into`]: the exact original bytes, or [`LineError::Escape`] for an unknown
/// escape, a lone `\` at the end, or a raw LF.
pub fn unescape(text: &[u8]) -> Result<Vec<u8>, LineError> {
    let mut out = Vec::with_capacity(text.len());
    let mut iter = text.iter();
    while let Some(&b) = iter.next() {
        match b {
            b'\\' => match iter.next() {
                Some(b'\\') => out.push(b'\\'),
                Some(b'n') => out.push(b'\n'),
                Some(b'r') => out.push(b'\r'),
                _ => return Err(LineError::Escape),
            },
            b'\n' => return Err(LineError::Escape),
            _ => out.push(b),
        }
    }
    Ok(out)
}

/// Checks escapes like [`unescape`] without building the result.
/// Checks the escapes of a message and returns its unescaped length.
fn check_escapes(text: &[u8]) -> Result<usize, LineError> {
    let mut rest = text;
    let mut escapes = 0;
    // Most messages hold no `\` at all: jump from one to the next a word at a time.
    while let Some(i) = find_either(rest, b'\\', b'\n') {
        match (rest[i], rest.get(i + 1)) {
            (b'\\', Some(b'\\' | b'n' | b'r')) => {
                rest = &rest[i + 2..];
                escapes += 1;
            }
            _ => return Err(LineError::Escape),
        }
    }
    Ok(text.len() - escapes)
}

const LO: u64 = 0x0101_0101_0101_0101;
const HI: u64 = 0x8080_8080_8080_8080;

/// Marks the zero bytes of `x` (the lowest mark is exact; higher ones may be false positives).
#[inline]
fn zero_bytes(x: u64) -> u64 {
    x.wrapping_sub(LO) & !x & HI
}

/// The position of the first `a` or `b` in `hay`, searching eight bytes at a time.
#[inline]
pub(crate) fn find_either(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    let (pa, pb) = (LO * u64::from(a), LO * u64::from(b));
    let mut chunks = hay.chunks_exact(8);
    let mut base = 0;
    for chunk in &mut chunks {
        let Some(word) = chunk.first_chunk::<8>() else {
            break;
        };
        let w = u64::from_le_bytes(*word);
        let found = zero_bytes(w ^ pa) | zero_bytes(w ^ pb);
        if found != 0 {
            // Little-endian: the lowest marked byte is the first match.
            return Some(base + (found.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    chunks
        .remainder()
        .iter()
        .position(|&c| c == a || c == b)
        .map(|i| base + i)
}

/// The position of the first `byte` in `hay`.
#[inline]
pub(crate) fn find_byte(hay: &[u8], byte: u8) -> Option<usize> {
    find_either(hay, byte, byte)
}

/// The fields of a validated record line, borrowed from it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct RecordFields<'a> {
    pub id: u64,
    pub timestamp: Timestamp,
    pub username: &'a str,
    /// Still escaped; known to unescape cleanly into valid UTF-8.
    pub message: &'a [u8],
}

/// Strips one terminating LF, if present.
fn strip_lf(line: &[u8]) -> &[u8] {
    line.strip_suffix(b"\n").unwrap_or(line)
}

/// Validates a record line (with or without its LF) without allocating.
pub(crate) fn split_record(line: &[u8]) -> Result<RecordFields<'_>, LineError> {
    let line = strip_lf(line);
    // One UTF-8 check for the whole line; `str` searches then use the fast core `memchr`.
    // Escapes are ASCII and never split a multi-byte sequence, so the escaped message is valid
    // UTF-8 exactly when the unescaped one is.
    let Ok(text) = std::str::from_utf8(line) else {
        return Err(non_utf8_record_error(line));
    };
    let (id, rest) = text.split_once(';').ok_or(LineError::Fields)?;
    let (ts, rest) = rest.split_once(';').ok_or(LineError::Fields)?;
    let (username, message) = rest.split_once(';').ok_or(LineError::Fields)?;
    let id = parse_id(id)?;
    let timestamp = Timestamp::parse(ts).map_err(|_| LineError::Timestamp)?;
    if !is_valid_username(username) {
        return Err(LineError::Username);
    }
    if check_escapes(message.as_bytes())? > MAX_BODY_BYTES {
        return Err(LineError::BodyTooLarge);
    }
    Ok(RecordFields {
        id,
        timestamp,
        username,
        message: message.as_bytes(),
    })
}

/// A record id: canonical decimal, not 0 (ids start at 1; cursor 0 means "none").
fn parse_id(text: &str) -> Result<u64, LineError> {
    match parse_u64(text) {
        Ok(0) | Err(_) => Err(LineError::Id),
        Ok(id) => Ok(id),
    }
}

/// Which rule a record line that is not valid UTF-8 breaks first (fields are checked in order).
fn non_utf8_record_error(line: &[u8]) -> LineError {
    let mut fields = line.splitn(4, |&b| b == b';');
    let (Some(id), Some(ts), Some(user), Some(_message)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return LineError::Fields;
    };
    if std::str::from_utf8(id).map_or(true, |t| parse_id(t).is_err()) {
        LineError::Id
    } else if std::str::from_utf8(ts).map_or(true, |t| Timestamp::parse(t).is_err()) {
        LineError::Timestamp
    } else if std::str::from_utf8(user).map_or(true, |t| !is_valid_username(t)) {
        LineError::Username
    } else {
        LineError::Utf8
    }
}

impl RecordFields<'_> {
    /// Builds the owned record.
    pub(crate) fn to_record(self) -> Result<Record, LineError> {
        let body = String::from_utf8(unescape(self.message)?).map_err(|_| LineError::Utf8)?;
        Ok(Record {
            room: gc_protocol::Room::general(),
            id: self.id,
            timestamp: self.timestamp,
            username: Username::new(self.username).map_err(|_| LineError::Username)?,
            body,
        })
    }
}

/// Parses one record line. A single terminating LF is allowed and ignored; any other LF makes the
/// line invalid. The error says which rule the line broke.
pub fn parse_record(line: &[u8]) -> Result<Record, LineError> {
    split_record(line)?.to_record()
}

/// One `database.msgids` line: `{id};{username};{client-msg-id}`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct MsgidFields<'a> {
    pub id: u64,
    pub username: &'a str,
    pub client_msg_id: &'a str,
}

/// Validates a `database.msgids` line (with or without its LF).
pub(crate) fn split_msgid(line: &[u8]) -> Result<MsgidFields<'_>, LineError> {
    let line = strip_lf(line);
    let Ok(text) = std::str::from_utf8(line) else {
        // Say which field is at fault, checking them in order as below.
        let mut fields = line.splitn(3, |&b| b == b';');
        let (Some(id), Some(user), Some(_)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(LineError::Fields);
        };
        return Err(
            if std::str::from_utf8(id).map_or(true, |t| parse_id(t).is_err()) {
                LineError::Id
            } else if std::str::from_utf8(user).map_or(true, |t| !is_valid_username(t)) {
                LineError::Username
            } else {
                LineError::ClientMsgId
            },
        );
    };
    let (id, rest) = text.split_once(';').ok_or(LineError::Fields)?;
    let (username, client_msg_id) = rest.split_once(';').ok_or(LineError::Fields)?;
    let id = parse_id(id)?;
    if !is_valid_username(username) {
        return Err(LineError::Username);
    }
    if !gc_protocol::types::is_valid_client_msg_id(client_msg_id) {
        return Err(LineError::ClientMsgId);
    }
    Ok(MsgidFields {
        id,
        username,
        client_msg_id,
    })
}

/// Appends a `database.msgids` line (with its LF).
pub(crate) fn encode_msgid(id: u64, username: &str, client_msg_id: &str, out: &mut Vec<u8>) {
    let _ = writeln!(out, "{id};{username};{client_msg_id}");
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn rec(id: u64, ts: &str, user: &str, body: &str) -> Record {
        Record {
            room: gc_protocol::Room::general(),
            id,
            timestamp: Timestamp::parse(ts).unwrap(),
            username: Username::new(user).unwrap(),
            body: body.to_owned(),
        }
    }

    fn encode(r: &Record) -> Vec<u8> {
        let mut out = Vec::new();
        encode_record(r, &mut out);
        out
    }

    #[test]
    fn original_sample_parses() {
        let r = parse_record(b"1;1640995200.123;alice;Hello, world!").unwrap();
        assert_eq!(r, rec(1, "1640995200.123", "alice", "Hello, world!"));
        assert_eq!(encode(&r), b"1;1640995200.123;alice;Hello, world!\n");
    }

    #[test]
    fn encode_is_byte_exact() {
        let cases: &[(&str, &[u8])] = &[
            ("plain", b"7;1795733296.088305;Bob;plain\n"),
            ("a;b;c", b"7;1795733296.088305;Bob;a;b;c\n"),
            ("back\\slash", b"7;1795733296.088305;Bob;back\\\\slash\n"),
            ("two\nlines", b"7;1795733296.088305;Bob;two\\nlines\n"),
            ("cr\r\nlf", b"7;1795733296.088305;Bob;cr\\r\\nlf\n"),
            ("\\n", b"7;1795733296.088305;Bob;\\\\n\n"),
            ("nul\0tab\t", b"7;1795733296.088305;Bob;nul\0tab\t\n"),
            ("é😀", "7;1795733296.088305;Bob;é😀\n".as_bytes()),
            ("", b"7;1795733296.088305;Bob;\n"),
        ];
        for (body, line) in cases {
            let r = rec(7, "1795733296.088305", "Bob", body);
            assert_eq!(encode(&r), *line, "{body:?}");
            assert_eq!(encoded_len(&r), line.len(), "{body:?}");
            assert_eq!(parse_record(line).unwrap(), r, "{body:?}");
        }
    }

    #[test]
    fn lf_terminator_is_optional() {
        let a = parse_record(b"1;2;x;m\n").unwrap();
        let b = parse_record(b"1;2;x;m").unwrap();
        assert_eq!(a, b);
    }

    #[test]
    fn every_line_error_class() {
        let cases: &[(&[u8], LineError)] = &[
            (b"", LineError::Fields),
            (b"1;2;alice", LineError::Fields),
            (b"1", LineError::Fields),
            (b";1;alice;m", LineError::Id),
            (b"0;1;alice;m", LineError::Id),
            (b"\xff;1;alice;\xff", LineError::Id),
            (b"1;\xff;alice;\xff", LineError::Timestamp),
            (b"1;1;al\xffice;\xff", LineError::Username),
            (b"1;1\xff", LineError::Fields),
            (b"01;1;alice;m", LineError::Id),
            (b"-1;1;alice;m", LineError::Id),
            (b"x;1;alice;m", LineError::Id),
            (b"99999999999999999999;1;alice;m", LineError::Id),
            (b"\xff;1;alice;m", LineError::Id),
            (b"1;;alice;m", LineError::Timestamp),
            (b"1;1.;alice;m", LineError::Timestamp),
            (b"1;1.1234567;alice;m", LineError::Timestamp),
            (b"1;abc;alice;m", LineError::Timestamp),
            (b"1;1;;m", LineError::Username),
            (b"1;1;al ice;m", LineError::Username),
            (b"1;1;\xc3\xa9;m", LineError::Username),
            (b"1;1;alice;bad\\x", LineError::Escape),
            (b"1;1;alice;trailing\\", LineError::Escape),
            (b"1;1;alice;raw\nlf", LineError::Escape),
            (b"1;1;alice;\xff", LineError::Utf8),
            (b"1;1;alice;\xc3", LineError::Utf8),
            (b"1;1;alice;\xed\xa0\x80", LineError::Utf8),
        ];
        for (line, err) in cases {
            assert_eq!(
                parse_record(line),
                Err(*err),
                "{:?}",
                String::from_utf8_lossy(line)
            );
        }
        assert_eq!(unescape(b"\\"), Err(LineError::Escape));
        assert_eq!(unescape(b"\\t"), Err(LineError::Escape));
    }

    #[test]
    fn raw_cr_is_kept() {
        // Only ever written escaped, but a raw CR (say, from a hand-edited file) is harmless.
        let r = parse_record(b"1;1;a;x\r").unwrap();
        assert_eq!(r.body, "x\r");
    }

    #[test]
    fn msgid_lines() {
        let mut out = Vec::new();
        encode_msgid(42, "Alice", "abc-DEF_1", &mut out);
        assert_eq!(out, b"42;Alice;abc-DEF_1\n");
        assert_eq!(
            split_msgid(&out),
            Ok(MsgidFields {
                id: 42,
                username: "Alice",
                client_msg_id: "abc-DEF_1"
            })
        );
        assert_eq!(split_msgid(b"42;Alice"), Err(LineError::Fields));
        assert_eq!(split_msgid(b"x;Alice;a"), Err(LineError::Id));
        assert_eq!(split_msgid(b"1;A b;a"), Err(LineError::Username));
        assert_eq!(split_msgid(b"1;A;a.b"), Err(LineError::ClientMsgId));
        assert_eq!(split_msgid(b"1;A;a;b"), Err(LineError::ClientMsgId));
        assert_eq!(split_msgid(b"1;A;"), Err(LineError::ClientMsgId));
        assert_eq!(split_msgid(b"0;A;a"), Err(LineError::Id));
        assert_eq!(split_msgid(b"\xff;A;a"), Err(LineError::Id));
        assert_eq!(split_msgid(b"1;\xff;a"), Err(LineError::Username));
        assert_eq!(split_msgid(b"1;A;\xff"), Err(LineError::ClientMsgId));
        assert_eq!(split_msgid(b"1;\xff"), Err(LineError::Fields));
    }

    #[test]
    fn find_either_matches_a_naive_search() {
        let hay: Vec<u8> = (0..200u32).map(|i| (i * 37 % 251) as u8).collect();
        for len in 0..hay.len() {
            for (a, b) in [
                (b'\\', b'\n'),
                (0, 0),
                (255, 7),
                (hay[len / 2], hay[len / 3]),
            ] {
                let h = &hay[..len];
                assert_eq!(
                    find_either(h, a, b),
                    h.iter().position(|&c| c == a || c == b),
                    "{len} {a} {b}"
                );
            }
        }
    }

    proptest! {
        #[test]
        fn find_byte_matches(hay in proptest::collection::vec(any::<u8>(), 0..64), b in any::<u8>()) {
            prop_assert_eq!(find_byte(&hay, b), hay.iter().position(|&c| c == b));
        }

        #[test]
        fn round_trip_any_string(body in any::<String>(), id in 1u64.., micros in 0u64..) {
            let r = Record {
                room: gc_protocol::Room::general(),
                id,
                timestamp: Timestamp::from_micros(micros),
                username: Username::new("u_1.x-Y").unwrap(),
                body,
            };
            let line = encode(&r);
            prop_assert_eq!(line.iter().filter(|&&b| b == b'\n').count(), 1);
            prop_assert_eq!(line.len(), encoded_len(&r));
            prop_assert_eq!(parse_record(&line).unwrap(), r);
        }

        #[test]
        fn round_trip_special_chars(body in "[\\\\\n\r;\0a\u{e9}]{0,40}") {
            let r = rec(1, "1", "a", &body);
            prop_assert_eq!(parse_record(&encode(&r)).unwrap(), r);
        }

        #[test]
        fn escape_unescape_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..200)) {
            let mut esc = Vec::new();
            escape_into(&bytes, &mut esc);
            prop_assert!(!esc.contains(&b'\n') && !esc.contains(&b'\r'));
            prop_assert_eq!(unescape(&esc).unwrap(), bytes);
        }

        #[test]
        fn parse_never_panics(line in proptest::collection::vec(any::<u8>(), 0..100)) {
            let _ = parse_record(&line);
            let _ = split_msgid(&line);
        }
    }
}
