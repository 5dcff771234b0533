//! Entry points for the fuzz targets in `fuzz/`: the crate's line parsers, which are private,
//! each with the encoder that writes what it parsed back. Built only with the `fuzzing` feature;
//! not an API.

use gc_protocol::types::Timestamp;

use crate::accounts::Account;
use crate::codec;
use crate::error::LineError;

pub use crate::rooms::fuzzing::{admin_line, member_line, room_line};

/// The fields of a record line as the fast validation (used when scanning `database.db`) sees
/// them: id, timestamp, username, and the message still escaped.
pub fn split_record(line: &[u8]) -> Result<(u64, Timestamp, &str, &[u8]), LineError> {
    let f = codec::split_record(line)?;
    Ok((f.id, f.timestamp, f.username, f.message))
}

/// The position of the first `a` or `b` in `hay`, as the word-at-a-time search finds it.
pub fn find_either(hay: &[u8], a: u8, b: u8) -> Option<usize> {
    codec::find_either(hay, a, b)
}

/// A `database.msgids` line parsed and written back (with its LF).
pub fn msgid_line(line: &[u8]) -> Result<Vec<u8>, LineError> {
    let f = codec::split_msgid(line)?;
    let mut out = Vec::new();
    codec::encode_msgid(f.id, f.username, f.client_msg_id, &mut out);
    Ok(out)
}

/// A `usernames.db` line parsed and written back (with its LF).
pub fn account_line(line: &[u8]) -> Result<Vec<u8>, LineError> {
    let account = Account::parse(line)?;
    let mut out = Vec::new();
    account.encode(&mut out);
    Ok(out)
}
