//! What `gc-server db check|repair|export` runs on a data dir's `database.db`.

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use gc_protocol::types::Record;

use crate::codec::{encode_record, split_msgid};
use crate::error::{Result, StoreError};
use crate::files::{self, FaultyLine, LineReader};
use crate::lock::{DATABASE_FILE, DataDirLock, lock_file};
use crate::messages::{moved, scan_records};
use crate::msgids::MSGIDS_FILE;

/// Reports list at most this many bad lines (all of them are counted, and `repair` moves all).
pub const MAX_LISTED_BAD_LINES: usize = 1_000;

/// What [`check`] found.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Lines in `database.db`.
    pub lines: u64,
    /// Valid records.
    pub records: u64,
    /// The lowest valid id (0 when none).
    pub first_id: u64,
    /// The highest valid id (0 when none).
    pub last_id: u64,
    /// How many lines are invalid.
    pub bad_line_count: u64,
    /// The first [`MAX_LISTED_BAD_LINES`] invalid lines.
    pub bad_lines: Vec<FaultyLine>,
    /// Whether the last line has no LF. While a server runs this may be a write in progress;
    /// otherwise it is a torn write, which the next open moves aside.
    pub torn_tail: bool,
    /// Whether timestamps never decrease along ids.
    pub timestamps_monotonic: bool,
    /// Lines in `database.msgids` (0 when it does not exist).
    pub msgids_lines: u64,
    /// Invalid lines in `database.msgids` (the next open drops or moves them aside).
    pub msgids_bad_lines: u64,
    /// `database.msgids` entries for ids beyond the last valid record (the next open drops them).
    pub msgids_beyond_last: u64,
}

impl CheckReport {
    /// Whether `database.db` holds no invalid line, a torn last line aside: that is a write in
    /// progress (beside a running server) or an interrupted one, which the next open moves to
    /// `database.db.corrupt` by itself.
    pub fn is_ok(&self) -> bool {
        self.bad_line_count == u64::from(self.torn_tail)
    }
}

/// What [`repair`] did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Lines read.
    pub lines: u64,
    /// Valid records kept.
    pub kept: u64,
    /// How many lines were moved aside.
    pub moved_count: u64,
    /// The first [`MAX_LISTED_BAD_LINES`] lines moved aside, with their original line numbers.
    pub moved: Vec<FaultyLine>,
    /// Where they went (`database.db.corrupt`), when any moved.
    pub corrupt_path: Option<PathBuf>,
}

/// Export formats for [`export`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// The `database.db` record format itself: `{id};{timestamp};{username};{escaped message}`,
    /// only the valid records (so an export of a damaged store is a clean store).
    Plain,
    /// One JSON object per line:
    /// `{"id":1,"timestamp":"1640995200.123","username":"alice","message":"…"}`.
    JsonLines,
}

/// What [`export`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Records written.
    pub records: u64,
    /// A torn last line (an interrupted write, or one in progress) that was left out.
    pub skipped_torn_tail: Option<FaultyLine>,
}

fn open_read(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| StoreError::io("open", path, e))
}

/// Validates `<dir>/database.db` and `<dir>/database.msgids` without changing anything and
/// without taking the data-dir lock, so it can run beside a server.
pub fn check(dir: &Path) -> Result<CheckReport> {
    let path = dir.join(DATABASE_FILE);
    let file = open_read(&path)?;
    let mut report = CheckReport {
        timestamps_monotonic: true,
        ..CheckReport::default()
    };
    let mut last_micros = 0;
    scan_records(&file, &path, |line, verdict| {
        report.lines += 1;
        report.torn_tail = !line.has_lf;
        match verdict {
            Ok(f) => {
                if report.records == 0 {
                    report.first_id = f.id;
                }
                report.records += 1;
                report.last_id = f.id;
                let micros = f.timestamp.as_micros();
                report.timestamps_monotonic &= micros >= last_micros;
                last_micros = micros;
            }
            Err(reason) => {
                report.bad_line_count += 1;
                if report.bad_lines.len() < MAX_LISTED_BAD_LINES {
                    report.bad_lines.push(moved(line, reason));
                }
            }
        }
        Ok(())
    })?;

    let msgids_path = dir.join(MSGIDS_FILE);
    match File::open(&msgids_path) {
        Ok(file) => {
            let mut reader = LineReader::new(&file, &msgids_path);
            while let Some(line) = reader.next_line()? {
                report.msgids_lines += 1;
                let verdict = match line.framing_error() {
                    Some(e) => Err(e),
                    None => split_msgid(line.bytes),
                };
                match verdict {
                    Ok(f) if f.id > report.last_id => report.msgids_beyond_last += 1,
                    Ok(_) => {}
                    Err(_) => report.msgids_bad_lines += 1,
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => return Err(StoreError::io("open", &msgids_path, e)),
    }
    Ok(report)
}

/// Moves every invalid line of `<dir>/database.db` (torn, malformed, or with an id not above
/// the previous valid one) aside into `database.db.corrupt`, each with its line number and
/// reason, and rewrites `database.db` atomically (temporary file, fsync, rename, directory
/// fsync) with the valid lines, byte for byte. Takes the data-dir lock: fails with
/// [`StoreError::Locked`] while a server runs. `database.msgids` entries of moved records are
/// dropped by the next open.
pub fn repair(dir: &Path) -> Result<RepairReport> {
    let lock = DataDirLock::acquire(dir)?;
    let path = lock.path().to_owned();
    let file = lock.file();
    let mut report = RepairReport::default();
    let mut good = Vec::new();
    let mut bad = Vec::new();
    scan_records(file, &path, |line, verdict| {
        report.lines += 1;
        match verdict {
            Ok(_) => {
                report.kept += 1;
                files::push_range(&mut good, line.offset, line.len);
            }
            Err(reason) => bad.push(moved(line, reason)),
        }
        Ok(())
    })?;
    if bad.is_empty() {
        return Ok(report);
    }
    let corrupt = files::move_aside(file, &path, &bad)?;
    // Lock the new file before it takes the old one's name, so no server can slip in between.
    let new_file = files::atomic_rewrite(
        &path,
        |w| files::copy_ranges(file, &good, w),
        |tmp| lock_file(&tmp, &path).map(|()| tmp),
    )?;
    for b in &bad {
        tracing::warn!(path = %path.display(), line = b.line_number, reason = %b.reason,
            "moved a bad line aside into {}", corrupt.display());
    }
    drop(new_file);
    report.moved_count = bad.len() as u64;
    bad.truncate(MAX_LISTED_BAD_LINES);
    report.moved = bad;
    report.corrupt_path = Some(corrupt);
    Ok(report)
}

/// Writes every record of `<dir>/database.db` to `out` in `format`. Takes no lock (it only
/// reads), so it can run beside a server. A torn last line is left out and reported; an invalid
/// line elsewhere stops the export with [`StoreError::BadLine`] (run [`repair`] first).
pub fn export(dir: &Path, format: ExportFormat, out: &mut dyn Write) -> Result<ExportReport> {
    let path = dir.join(DATABASE_FILE);
    let file = open_read(&path)?;
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let mut report = ExportReport::default();
    let mut pending_bad: Option<FaultyLine> = None;
    let mut line_buf = Vec::new();
    scan_records(&file, &path, |line, verdict| {
        if let Some(b) = pending_bad {
            return Err(StoreError::BadLine {
                path: path.clone(),
                line_number: b.line_number,
                reason: b.reason,
            });
        }
        match verdict.and_then(|f| f.to_record()) {
            Ok(record) => {
                line_buf.clear();
                match format {
                    ExportFormat::Plain => encode_record(&record, &mut line_buf),
                    ExportFormat::JsonLines => write_json(&record, &mut line_buf),
                }
                out.write_all(&line_buf)
                    .map_err(|source| StoreError::ExportOutput { source })?;
                report.records += 1;
            }
            Err(reason) => pending_bad = Some(moved(line, reason)),
        }
        Ok(())
    })?;
    out.flush()
        .map_err(|source| StoreError::ExportOutput { source })?;
    report.skipped_torn_tail = pending_bad;
    Ok(report)
}

/// Appends `text` as a JSON string literal.
fn json_string(text: &str, out: &mut Vec<u8>) {
    out.push(b'"');
    let bytes = text.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let esc: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0..=0x1f => {
                out.extend_from_slice(&bytes[start..i]);
                let _ = write!(out, "\\u{b:04x}");
                start = i + 1;
                continue;
            }
            _ => continue,
        };
        out.extend_from_slice(&bytes[start..i]);
        out.extend_from_slice(esc);
        start = i + 1;
    }
    out.extend_from_slice(&bytes[start..]);
    out.push(b'"');
}

fn write_json(r: &Record, out: &mut Vec<u8>) {
    let _ = write!(
        out,
        "{{\"id\":{},\"timestamp\":\"{}\",\"username\":",
        r.id, r.timestamp
    );
    json_string(r.username.as_str(), out);
    out.extend_from_slice(b",\"message\":");
    json_string(&r.body, out);
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_protocol::types::{Timestamp, Username};

    fn rec(body: &str) -> Record {
        Record {
            room: gc_protocol::Room::general(),
            id: 7,
            timestamp: Timestamp::parse("1640995200.123").unwrap(),
            username: Username::new("alice").unwrap(),
            body: body.to_owned(),
        }
    }

    #[test]
    fn plain_is_the_record_format() {
        let mut out = Vec::new();
        encode_record(&rec("a\\b\nc;d"), &mut out);
        assert_eq!(out, b"7;1640995200.123;alice;a\\\\b\\nc;d\n");
    }

    #[test]
    fn json_escapes_every_control() {
        let body: String = (0u8..0x20)
            .map(char::from)
            .chain("\"\\/é😀\u{7f}".chars())
            .collect();
        let mut out = Vec::new();
        write_json(&rec(&body), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(
            text,
            "{\"id\":7,\"timestamp\":\"1640995200.123\",\"username\":\"alice\",\"message\":\
             \"\\u0000\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\b\\t\\n\\u000b\\f\\r\
             \\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016\\u0017\\u0018\
             \\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\\\"\\\\/é😀\u{7f}\"}\n"
        );
        assert!(!text[..text.len() - 1].bytes().any(|b| b < 0x20));
    }
}
