//! `gc-server db import --original FILE`: brings in a `database.db` written by the original
//! Python prototype, the one on-disk contract the two share.
//!
//! The prototype wrote the same `{id};{timestamp};{username};{message}` lines, but not by this
//! format's rules: its timestamps are `time.time()` with up to 7 decimals, the file may start
//! with a blank line and end without a line feed, and its ids started again at 2 on every
//! server start (so they repeat). The import reads each line tolerantly, gives the records new
//! ids 1, 2, 3, … in the file's order (which is the order they were written), keeps timestamp
//! (to the microsecond), name and text, and writes them as `#general`'s `database.db` of an
//! empty data dir, atomically and under the data-dir lock. Whatever it cannot read is left
//! out and reported line by line, with why.

use std::fs;
use std::io::{self, Read as _, Write as _};
use std::path::Path;

use gc_protocol::types::{Record, Room, Timestamp, Username, is_valid_username};

use crate::codec::{MAX_BODY_BYTES, encode_record};
use crate::error::{Result, StoreError};
use crate::files;
use crate::lock::{DataDirLock, lock_file};
use crate::messages::ROOMS_DIR;
use crate::msgids::MSGIDS_FILE;

/// The largest original file read: the prototype cut messages at 1,024 bytes, so this is
/// millions of records; it bounds what a wrong file can make the import allocate.
const MAX_SOURCE_BYTES: u64 = 4 << 30;

/// How many unreadable lines [`ImportReport::unread`] lists (all are counted).
pub const MAX_LISTED_UNREAD: usize = 100;

/// What [`import_original`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ImportReport {
    /// Lines in the original file (a last line without a line feed included).
    pub lines: u64,
    /// Empty lines, skipped (the prototype's file starts with one).
    pub blank: u64,
    /// Records written.
    pub imported: u64,
    /// Records whose id changed (all but those whose original id happened to be the new one).
    pub renumbered: u64,
    /// Original ids that an earlier line already had (the prototype restarted its ids).
    pub repeated_ids: u64,
    /// Timestamps earlier than the line before's (kept as they were: the prototype's clock).
    pub earlier_timestamps: u64,
    /// Timestamps with more than six decimals, cut to the microsecond.
    pub truncated_timestamps: u64,
    /// Backslashes not followed by `\`, `n` or `r`, kept as written.
    pub kept_backslashes: u64,
    /// Whether the last line had no line feed (it was read all the same).
    pub no_final_newline: bool,
    /// How many lines could not be read.
    pub unread_count: u64,
    /// The first [`MAX_LISTED_UNREAD`] of them: line number and why.
    pub unread: Vec<(u64, String)>,
}

/// Imports the original prototype's `database.db` at `source` into the data dir `dir`, which
/// must hold no messages yet ([`StoreError::ImportTarget`] otherwise; [`StoreError::Locked`]
/// while a server runs on it).
pub fn import_original(dir: &Path, source: &Path) -> Result<ImportReport> {
    let lock = DataDirLock::acquire(dir)?;
    check_empty(dir, &lock)?;
    let file = fs::File::open(source).map_err(|e| StoreError::io("open", source, e))?;
    let mut bytes = Vec::new();
    file.take(MAX_SOURCE_BYTES)
        .read_to_end(&mut bytes)
        .map_err(|e| StoreError::io("read", source, e))?;
    let (records, report) = convert(&bytes);
    let path = lock.path().to_owned();
    let new_file = files::atomic_rewrite(
        &path,
        |w| {
            let mut line = Vec::with_capacity(256);
            for r in &records {
                line.clear();
                encode_record(r, &mut line);
                w.write_all(&line)?;
            }
            Ok(())
        },
        // The replacement is locked before it takes the old file's name (as `repair` does).
        |tmp| lock_file(&tmp, &path).map(|()| tmp),
    )?;
    drop(new_file);
    drop(lock);
    Ok(report)
}

/// Refuses a data dir that holds records, or a `database.msgids` (its entries would name the
/// imported records' ids).
fn check_empty(dir: &Path, lock: &DataDirLock) -> Result<()> {
    match messages_in(dir, lock)? {
        Some(what) => Err(StoreError::ImportTarget {
            dir: dir.to_owned(),
            what,
        }),
        None => Ok(()),
    }
}

/// What says that the data dir (whose lock is `lock`) holds messages: bytes in `database.db` or
/// `database.msgids`, or room files. `None` when it holds none.
pub(crate) fn messages_in(dir: &Path, lock: &DataDirLock) -> Result<Option<String>> {
    let len = lock
        .file()
        .metadata()
        .map_err(|e| StoreError::io("read the size of", lock.path(), e))?
        .len();
    if len > 0 {
        return Ok(Some(format!("database.db has {len} bytes")));
    }
    let msgids = dir.join(MSGIDS_FILE);
    match fs::metadata(&msgids) {
        Ok(m) if m.len() > 0 => return Ok(Some(format!("{MSGIDS_FILE} has {} bytes", m.len()))),
        Ok(_) => {}
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("look at", msgids, e)),
    }
    match fs::read_dir(dir.join(ROOMS_DIR)) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Ok(Some(format!("{ROOMS_DIR}/ has room files")));
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("list", dir.join(ROOMS_DIR), e)),
    }
    Ok(None)
}

/// The records of an original file's bytes, numbered from 1, and the report.
fn convert(bytes: &[u8]) -> (Vec<Record>, ImportReport) {
    let mut report = ImportReport {
        no_final_newline: !bytes.is_empty() && !bytes.ends_with(b"\n"),
        ..ImportReport::default()
    };
    let mut records: Vec<Record> = Vec::new();
    let mut seen_ids = std::collections::HashSet::new();
    let mut last_micros = 0u64;
    for (i, raw) in bytes.split_inclusive(|&b| b == b'\n').enumerate() {
        report.lines += 1;
        let line = raw.strip_suffix(b"\n").unwrap_or(raw);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            report.blank += 1;
            continue;
        }
        let parsed = match parse_line(line, &mut report) {
            Ok(p) => p,
            Err(why) => {
                report.unread_count += 1;
                if report.unread.len() < MAX_LISTED_UNREAD {
                    report.unread.push((i as u64 + 1, why));
                }
                continue;
            }
        };
        let (old_id, timestamp, username, body) = parsed;
        let id = records.len() as u64 + 1;
        if !seen_ids.insert(old_id) {
            report.repeated_ids += 1;
        }
        if old_id != id {
            report.renumbered += 1;
        }
        if timestamp.as_micros() < last_micros {
            report.earlier_timestamps += 1;
        }
        last_micros = timestamp.as_micros();
        records.push(Record {
            id,
            room: Room::general(),
            timestamp,
            username,
            body,
        });
    }
    report.imported = records.len() as u64;
    (records, report)
}

/// One original line: its id, timestamp, name and text, or why it cannot be read.
fn parse_line(
    line: &[u8],
    report: &mut ImportReport,
) -> std::result::Result<(u64, Timestamp, Username, String), String> {
    let mut fields = line.splitn(4, |&b| b == b';');
    let (Some(id), Some(ts), Some(user), Some(message)) =
        (fields.next(), fields.next(), fields.next(), fields.next())
    else {
        return Err("fewer than four ';'-separated fields".into());
    };
    let id: u64 = text(id, "id")?
        .parse()
        .map_err(|_| "the id is not a whole number".to_owned())?;
    let (timestamp, truncated) = parse_seconds(text(ts, "timestamp")?).ok_or_else(|| {
        "the timestamp is not seconds since 1970 (like 1733400000.1234567)".to_owned()
    })?;
    report.truncated_timestamps += u64::from(truncated);
    let user = text(user, "username")?;
    if !is_valid_username(user) {
        return Err(format!(
            "the username {user:?} is not 1-32 characters of A-Z a-z 0-9 _ . -"
        ));
    }
    let username = Username::new(user).map_err(|e| e.to_string())?;
    let (body, kept) = unescape_tolerant(message);
    report.kept_backslashes += kept;
    let body = String::from_utf8(body).map_err(|_| "the message is not UTF-8".to_owned())?;
    if body.is_empty() {
        return Err("the message is empty".into());
    }
    if body.contains('\0') {
        return Err("the message holds a NUL".into());
    }
    if body.len() > MAX_BODY_BYTES {
        return Err(format!(
            "the message is {} bytes, more than the {MAX_BODY_BYTES} a record may hold",
            body.len()
        ));
    }
    Ok((id, timestamp, username, body))
}

/// A field as text, without surrounding blanks.
fn text<'a>(field: &'a [u8], what: &str) -> std::result::Result<&'a str, String> {
    std::str::from_utf8(field)
        .map(str::trim)
        .map_err(|_| format!("the {what} is not UTF-8"))
}

/// `secs[.fraction]` with any number of decimals (Python's `time.time()` prints up to 7), cut
/// to the microsecond; the flag says whether decimals were cut.
fn parse_seconds(text: &str) -> Option<(Timestamp, bool)> {
    let (secs, frac) = text.split_once('.').unwrap_or((text, ""));
    if secs.is_empty() || !secs.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut micros = 0u64;
    for (i, b) in frac.bytes().take(6).enumerate() {
        micros += u64::from(b - b'0') * 10u64.pow(5 - i as u32);
    }
    let total = secs.checked_mul(1_000_000)?.checked_add(micros)?;
    Some((Timestamp::from_micros(total), frac.len() > 6))
}

/// The prototype's escapes undone (`\\`, `\n`, `\r`); any other backslash is kept as written
/// (counted), so no text is lost to a rule the prototype did not follow.
fn unescape_tolerant(text: &[u8]) -> (Vec<u8>, u64) {
    let mut out = Vec::with_capacity(text.len());
    let mut kept = 0;
    let mut i = 0;
    while i < text.len() {
        match (text[i], text.get(i + 1)) {
            (b'\\', Some(b'\\')) => out.push(b'\\'),
            (b'\\', Some(b'n')) => out.push(b'\n'),
            (b'\\', Some(b'r')) => out.push(b'\r'),
            (b'\\', _) => {
                kept += 1;
                out.push(b'\\');
                i += 1;
                continue;
            }
            (b, _) => {
                out.push(b);
                i += 1;
                continue;
            }
        }
        i += 2;
    }
    (out, kept)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A file shaped like the prototype's: a blank first line, 7-decimal timestamps, ids that
    /// start again at 2 after a restart, escapes, a `;` in a message, no final line feed.
    const ORIGINAL: &str = "\n\
        2;1640995200.1234567;Bob;Hello, world!\n\
        3;1640995201.5;Bob;two\\nlines and a \\\\ backslash\n\
        2;1640995300.0000001;Bob;after a restart; with a semicolon\n\
        x;1640995301;Bob;bad id\n\
        4;yesterday;Bob;bad time\n\
        5;1640995302;not a name;bad user\n\
        6;1640995303;Bob\n\
        7;1640995304;alice;C:\\temp stays\n\
        8;1640995305;alice;last, without a newline";

    #[test]
    fn a_prototype_file_converts_record_for_record() {
        let (records, r) = convert(ORIGINAL.as_bytes());
        let got: Vec<(u64, u64, &str, &str)> = records
            .iter()
            .map(|r| {
                (
                    r.id,
                    r.timestamp.as_micros(),
                    r.username.as_str(),
                    r.body.as_str(),
                )
            })
            .collect();
        assert_eq!(
            got,
            [
                (1, 1_640_995_200_123_456, "Bob", "Hello, world!"),
                (
                    2,
                    1_640_995_201_500_000,
                    "Bob",
                    "two\nlines and a \\ backslash"
                ),
                (
                    3,
                    1_640_995_300_000_000,
                    "Bob",
                    "after a restart; with a semicolon"
                ),
                (4, 1_640_995_304_000_000, "alice", "C:\\temp stays"),
                (5, 1_640_995_305_000_000, "alice", "last, without a newline"),
            ]
        );
        assert_eq!(r.lines, 10);
        assert_eq!(r.blank, 1);
        assert_eq!(r.imported, 5);
        assert_eq!(r.repeated_ids, 1);
        assert_eq!(r.renumbered, 5);
        assert_eq!(r.truncated_timestamps, 2);
        assert_eq!(r.kept_backslashes, 1);
        assert!(r.no_final_newline);
        assert_eq!(r.unread_count, 4);
        let lines: Vec<u64> = r.unread.iter().map(|(n, _)| *n).collect();
        assert_eq!(lines, [5, 6, 7, 8]);
        assert!(r.unread[1].1.contains("timestamp"), "{:?}", r.unread);
        assert!(r.unread[2].1.contains("not a name"), "{:?}", r.unread);
        assert!(r.unread[3].1.contains("four"), "{:?}", r.unread);
    }

    #[test]
    fn seconds_with_any_decimals() {
        let micros = |t: &str| parse_seconds(t).map(|(ts, cut)| (ts.as_micros(), cut));
        assert_eq!(micros("1"), Some((1_000_000, false)));
        assert_eq!(micros("1.5"), Some((1_500_000, false)));
        assert_eq!(micros("1.1234567"), Some((1_123_456, true)));
        assert_eq!(micros("1."), Some((1_000_000, false)));
        for bad in ["", ".5", "-1", "1e9", "1.2.3", "a"] {
            assert_eq!(micros(bad), None, "{bad}");
        }
    }
}
