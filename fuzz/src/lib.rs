//! What the fuzz targets share: the round-trip checks.
//!
//! Every parser here has an encoder, and the formats are canonical except that a timestamp's
//! fraction may carry trailing zeros (`1.50` reads as `1.5`). So for an input that parses, the
//! targets check that writing the value back gives the input again, field for field, with only
//! timestamps allowed to differ in form (not in value), and that parsing what was written gives
//! the same value.

use std::fmt::Debug;

use gc_protocol::frame::Frame;
use gc_protocol::{Fingerprint, Timestamp};

/// Parses `line` as a frame of type `F`; when it parses, checks that it encodes back to `line`
/// (see the crate doc) and that the encoding parses to the same frame.
pub fn frame_round_trip<F: Frame + PartialEq + Debug>(line: &[u8]) {
    let Ok(frame) = F::parse(line) else {
        return;
    };
    let wire = frame.to_bytes();
    let Some(encoded) = wire.strip_suffix(b"\n") else {
        panic!("{frame:?} encodes without its LF: {}", show(&wire));
    };
    assert_eq!(
        F::parse(encoded).as_ref(),
        Ok(&frame),
        "reparsing {}",
        show(encoded)
    );
    same_fields(line, encoded, b' ');
}

/// Checks that `written`, a line written back from what `line` parsed to, has the same fields
/// (split at `sep`) as `line`: equal bytes, or equal timestamps or fingerprints.
pub fn same_fields(line: &[u8], written: &[u8], sep: u8) {
    fn fields(line: &[u8], sep: u8) -> Vec<&[u8]> {
        line.split(|&b| b == sep).collect()
    }
    let (a, b) = (fields(line, sep), fields(written, sep));
    let same = a.len() == b.len() && a.iter().zip(&b).all(|(x, y)| x == y || same_value(x, y));
    assert!(
        same,
        "not written back as read:\n  read    {}\n  written {}",
        show(line),
        show(written)
    );
}

/// Whether `a` and `b` are two forms of one timestamp or of one fingerprint.
fn same_value(a: &[u8], b: &[u8]) -> bool {
    let (Ok(a), Ok(b)) = (std::str::from_utf8(a), std::str::from_utf8(b)) else {
        return false;
    };
    let timestamp = |t| Timestamp::parse(t).ok();
    let fingerprint = |t: &str| t.parse::<Fingerprint>().ok();
    (timestamp(a).is_some() && timestamp(a) == timestamp(b))
        || (fingerprint(a).is_some() && fingerprint(a) == fingerprint(b))
}

/// `line` with each raw CR escaped as the store writes it (`\r`). The store's escaped fields (a
/// message, a topic) accept a raw CR from a hand-edited file; no other field accepts a CR at all.
pub fn raw_cr_escaped(line: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(line.len());
    for &b in line {
        if b == b'\r' {
            out.extend_from_slice(b"\\r");
        } else {
            out.push(b);
        }
    }
    out
}

/// Bytes for a failure message: escaped, and cut short when long.
pub fn show(bytes: &[u8]) -> String {
    let text: String = bytes.escape_ascii().to_string();
    if text.len() > 400 {
        format!("{}… ({} bytes)", &text[..400], bytes.len())
    } else {
        text
    }
}
