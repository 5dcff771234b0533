//! What `gc-server db check|repair|export` runs on a data dir's rooms' files (`database.db` for
//! `#general`, `rooms/*.db` for the others).

use std::fs::File;
use std::io::{self, Write};
use std::path::{Path, PathBuf};

use gc_protocol::types::{Record, Room};

use crate::codec::{encode_record, split_msgid};
use crate::error::{Result, StoreError};
use crate::files::{self, FaultyLine, LineReader};
use crate::lock::{DATABASE_FILE, DataDirLock, lock_file};
use crate::messages::{ROOMS_DIR, find_room_files, moved, scan_records};
use crate::msgids::MSGIDS_FILE;

/// Reports list at most this many bad lines (all of them are counted, and `repair` moves all).
pub const MAX_LISTED_BAD_LINES: usize = 1_000;

/// What [`check`] found in one room's file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileCheck {
    /// The room whose file it is.
    pub room: Room,
    /// The file (`database.db` for `#general`, `rooms/<name>.db` for the others).
    pub path: PathBuf,
    /// Lines in the file.
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
}

impl FileCheck {
    /// Whether the file holds no invalid line, a torn last line aside.
    pub fn is_ok(&self) -> bool {
        self.bad_line_count == u64::from(self.torn_tail)
    }
}

/// What [`check`] found: totals over every room's file, each file's own findings, and what
/// holds across files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CheckReport {
    /// Lines in all the rooms' files.
    pub lines: u64,
    /// Valid records in all of them.
    pub records: u64,
    /// The lowest valid id (0 when none).
    pub first_id: u64,
    /// The highest valid id (0 when none).
    pub last_id: u64,
    /// How many lines are invalid, in all files.
    pub bad_line_count: u64,
    /// The first [`MAX_LISTED_BAD_LINES`] invalid lines, file by file (`files` says whose).
    pub bad_lines: Vec<FaultyLine>,
    /// Whether some file's last line has no LF (see [`FileCheck::torn_tail`]).
    pub torn_tail: bool,
    /// Whether timestamps never decrease along ids, across all rooms.
    pub timestamps_monotonic: bool,
    /// Ids found in more than one room's file (ids are one sequence across rooms).
    pub duplicate_ids: u64,
    /// Each room's file: `#general`'s `database.db` first, then the others by name.
    pub files: Vec<FileCheck>,
    /// Lines in `database.msgids` (0 when it does not exist).
    pub msgids_lines: u64,
    /// Invalid lines in `database.msgids` (the next open drops or moves them aside).
    pub msgids_bad_lines: u64,
    /// `database.msgids` entries for ids beyond the last valid record (the next open drops them).
    pub msgids_beyond_last: u64,
    /// Lines in `usernames.db` (0 when it does not exist).
    pub accounts_lines: u64,
    /// Its invalid lines, and those naming an account an earlier line holds (the server refuses
    /// to start with any; `repair` moves them aside).
    pub accounts_bad_lines: Vec<FaultyLine>,
}

impl CheckReport {
    /// Whether every room's file holds no invalid line (a torn last line aside: that is a write
    /// in progress beside a running server, or an interrupted one, which the next open moves to
    /// `<file>.corrupt` by itself) and no id is in two files.
    pub fn is_ok(&self) -> bool {
        self.files.iter().all(FileCheck::is_ok)
            && self.duplicate_ids == 0
            && self.accounts_bad_lines.is_empty()
    }
}

/// What [`repair`] did, in all the rooms' files.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RepairReport {
    /// Lines read.
    pub lines: u64,
    /// Valid records kept.
    pub kept: u64,
    /// How many lines were moved aside.
    pub moved_count: u64,
    /// The first [`MAX_LISTED_BAD_LINES`] lines moved aside, with their original line numbers
    /// (file by file, in the order of `corrupt_paths`).
    pub moved: Vec<FaultyLine>,
    /// Where they went (`<file>.corrupt`), one per file that had any.
    pub corrupt_paths: Vec<PathBuf>,
}

/// Export formats for [`export`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ExportFormat {
    /// The `database.db` record format itself: `{id};{timestamp};{username};{escaped message}`,
    /// only the valid records (so an export of a damaged room file is a clean one). With more
    /// rooms than `#general`, each other room's records follow a `# room <name>` line (no record
    /// line starts with `#`).
    Plain,
    /// One JSON object per line:
    /// `{"id":1,"timestamp":"1640995200.123","username":"alice","message":"…"}`, with a
    /// `"room"` member for the records of rooms other than `#general`.
    JsonLines,
}

/// What [`export`] wrote.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ExportReport {
    /// Records written.
    pub records: u64,
    /// A torn last line (an interrupted write, or one in progress) that was left out (the first
    /// such, if several rooms' files have one).
    pub skipped_torn_tail: Option<FaultyLine>,
}

fn open_read(path: &Path) -> Result<File> {
    File::open(path).map_err(|e| StoreError::io("open", path, e))
}

/// Every room's file in `dir`: `#general`'s `database.db` first, then `rooms/*.db` by name.
fn room_files(dir: &Path) -> Result<Vec<(Room, PathBuf)>> {
    let mut all = vec![(Room::general(), dir.join(DATABASE_FILE))];
    all.extend(find_room_files(&dir.join(ROOMS_DIR))?);
    Ok(all)
}

/// Validates one room's file; with `ids`, collects each valid record's (id, microseconds).
fn check_file(
    room: Room,
    path: PathBuf,
    mut ids: Option<&mut Vec<(u64, u64)>>,
) -> Result<(FileCheck, bool)> {
    let file = open_read(&path)?;
    let mut c = FileCheck {
        room,
        lines: 0,
        records: 0,
        first_id: 0,
        last_id: 0,
        bad_line_count: 0,
        bad_lines: Vec::new(),
        torn_tail: false,
        path,
    };
    let mut monotonic = true;
    let mut last_micros = 0;
    scan_records(&file, &c.path.clone(), |line, verdict| {
        c.lines += 1;
        c.torn_tail = !line.has_lf;
        match verdict {
            Ok(f) => {
                if c.records == 0 {
                    c.first_id = f.id;
                }
                c.records += 1;
                c.last_id = f.id;
                let micros = f.timestamp.as_micros();
                monotonic &= micros >= last_micros;
                last_micros = micros;
                if let Some(ids) = ids.as_deref_mut() {
                    ids.push((f.id, micros));
                }
            }
            Err(reason) => {
                c.bad_line_count += 1;
                if c.bad_lines.len() < MAX_LISTED_BAD_LINES {
                    c.bad_lines.push(moved(line, reason));
                }
            }
        }
        Ok(())
    })?;
    Ok((c, monotonic))
}

/// Validates every room's file (`database.db`, `rooms/*.db`) and `database.msgids` of `dir`
/// without changing anything and without taking the data-dir lock, so it can run beside a
/// server.
pub fn check(dir: &Path) -> Result<CheckReport> {
    let rooms = room_files(dir)?;
    let several = rooms.len() > 1;
    let mut report = CheckReport {
        timestamps_monotonic: true,
        ..CheckReport::default()
    };
    // Across files only when there are several: ids and times of every record, merged.
    let mut ids: Vec<(u64, u64)> = Vec::new();
    for (room, path) in rooms {
        let (c, monotonic) = check_file(room, path, several.then_some(&mut ids))?;
        report.timestamps_monotonic &= monotonic;
        report.lines += c.lines;
        report.records += c.records;
        if c.records > 0 {
            report.first_id = if report.first_id == 0 {
                c.first_id
            } else {
                report.first_id.min(c.first_id)
            };
            report.last_id = report.last_id.max(c.last_id);
        }
        report.bad_line_count += c.bad_line_count;
        let room_for = MAX_LISTED_BAD_LINES.saturating_sub(report.bad_lines.len());
        report
            .bad_lines
            .extend(c.bad_lines.iter().take(room_for).copied());
        report.torn_tail |= c.torn_tail;
        report.files.push(c);
    }
    if several {
        ids.sort_unstable();
        let mut last_micros = 0;
        for (i, &(id, micros)) in ids.iter().enumerate() {
            if i > 0 && ids[i - 1].0 == id {
                report.duplicate_ids += 1;
            }
            report.timestamps_monotonic &= micros >= last_micros;
            last_micros = micros;
        }
    }

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
    if let Some((_, scan)) =
        crate::accounts::scan_accounts(&dir.join(crate::accounts::ACCOUNTS_FILE))?
    {
        report.accounts_lines = scan.lines;
        report.accounts_bad_lines = scan.bad;
    }
    Ok(report)
}

/// Moves every invalid line of every room's file of `dir` (torn, malformed, or with an id not
/// above the previous valid one) aside into `<file>.corrupt`, each with its line number and
/// reason, and rewrites the file atomically (temporary file, fsync, rename, directory fsync)
/// with the valid lines, byte for byte. Takes the data-dir lock: fails with
/// [`StoreError::Locked`] while a server runs. `database.msgids` entries of moved records are
/// dropped by the next open. An id in two files is not something it can decide: [`check`]
/// reports it, and the store refuses to open until one of the lines is removed.
pub fn repair(dir: &Path) -> Result<RepairReport> {
    let lock = DataDirLock::acquire(dir)?;
    let mut report = RepairReport::default();
    repair_accounts(dir, &mut report)?;
    for (room, path) in room_files(dir)? {
        if room.is_general() {
            // The data-dir lock is on database.db: its replacement is locked before it takes
            // the old one's name, so no server can slip in between.
            repair_file(lock.file(), &path, &mut report, |tmp| {
                lock_file(&tmp, &path).map(|()| tmp)
            })?;
        } else {
            let file = files::open_rw(&path)?;
            repair_file(&file, &path, &mut report, Ok)?;
        }
    }
    drop(lock);
    Ok(report)
}

/// Moves `usernames.db`'s bad lines aside into `usernames.db.corrupt` and rewrites it with the
/// others (under the data-dir lock the caller holds).
fn repair_accounts(dir: &Path, report: &mut RepairReport) -> Result<()> {
    let path = dir.join(crate::accounts::ACCOUNTS_FILE);
    let Some((file, scan)) = crate::accounts::scan_accounts(&path)? else {
        return Ok(());
    };
    report.lines += scan.lines;
    report.kept += scan.good.len() as u64;
    if scan.bad.is_empty() {
        return Ok(());
    }
    let corrupt = files::move_aside(&file, &path, &scan.bad)?;
    files::atomic_rewrite(
        &path,
        |w| {
            for line in &scan.good {
                w.write_all(line)?;
                w.write_all(b"\n")?;
            }
            Ok(())
        },
        |_| Ok(()),
    )?;
    report.moved_count += scan.bad.len() as u64;
    let room_for = MAX_LISTED_BAD_LINES.saturating_sub(report.moved.len());
    report.moved.extend(scan.bad.iter().take(room_for).copied());
    report.corrupt_paths.push(corrupt);
    Ok(())
}

fn repair_file(
    file: &File,
    path: &Path,
    report: &mut RepairReport,
    before_rename: impl FnOnce(File) -> Result<File>,
) -> Result<()> {
    let mut good = Vec::new();
    let mut bad = Vec::new();
    scan_records(file, path, |line, verdict| {
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
        return Ok(());
    }
    let corrupt = files::move_aside(file, path, &bad)?;
    let new_file =
        files::atomic_rewrite(path, |w| files::copy_ranges(file, &good, w), before_rename)?;
    for b in &bad {
        tracing::warn!(path = %path.display(), line = b.line_number, reason = %b.reason,
            "moved a bad line aside into {}", corrupt.display());
    }
    drop(new_file);
    report.moved_count += bad.len() as u64;
    let room_for = MAX_LISTED_BAD_LINES.saturating_sub(report.moved.len());
    report.moved.extend(bad.into_iter().take(room_for));
    report.corrupt_paths.push(corrupt);
    Ok(())
}

/// Writes every record of every room of `dir` to `out` in `format`: `#general`'s first, then
/// each other room's, each in id order. Takes no lock (it only reads), so it can run beside a
/// server. A torn last line is left out and reported; an invalid line elsewhere stops the
/// export with [`StoreError::BadLine`] (run [`repair`] first).
pub fn export(dir: &Path, format: ExportFormat, out: &mut dyn Write) -> Result<ExportReport> {
    let rooms = room_files(dir)?;
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let mut report = ExportReport::default();
    let headers = rooms.len() > 1 && format == ExportFormat::Plain;
    for (room, path) in rooms {
        if headers && !room.is_general() {
            writeln!(out, "# room {room}").map_err(|source| StoreError::ExportOutput { source })?;
        }
        export_file(&room, &path, format, &mut out, &mut report)?;
    }
    out.flush()
        .map_err(|source| StoreError::ExportOutput { source })?;
    Ok(report)
}

/// [`export`] of one room: with [`ExportFormat::Plain`], a clean file of that room.
pub fn export_room(
    dir: &Path,
    room: &Room,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<ExportReport> {
    let path = room_files(dir)?
        .into_iter()
        .find(|(r, _)| r == room)
        .map(|(_, p)| p)
        .ok_or_else(|| StoreError::NoRoomFile {
            room: room.to_string(),
            dir: dir.to_owned(),
        })?;
    let mut out = io::BufWriter::with_capacity(1 << 16, out);
    let mut report = ExportReport::default();
    export_file(room, &path, format, &mut out, &mut report)?;
    out.flush()
        .map_err(|source| StoreError::ExportOutput { source })?;
    Ok(report)
}

fn export_file(
    room: &Room,
    path: &Path,
    format: ExportFormat,
    out: &mut impl Write,
    report: &mut ExportReport,
) -> Result<()> {
    let mut line_buf = Vec::new();
    visit_file(room, path, report, |record| {
        line_buf.clear();
        export_line(record, format, &mut line_buf);
        out.write_all(&line_buf)
            .map_err(|source| StoreError::ExportOutput { source })
    })
}

/// Hands every valid record of one room's file to `f`, in id order, counting them in `report`.
/// A torn last line is left out (noted in `report`); an invalid line elsewhere is
/// [`StoreError::BadLine`].
fn visit_file(
    room: &Room,
    path: &Path,
    report: &mut ExportReport,
    mut f: impl FnMut(&Record) -> Result<()>,
) -> Result<()> {
    let file = open_read(path)?;
    let mut pending_bad: Option<FaultyLine> = None;
    scan_records(&file, path, |line, verdict| {
        if let Some(b) = pending_bad {
            return Err(StoreError::BadLine {
                path: path.to_owned(),
                line_number: b.line_number,
                reason: b.reason,
            });
        }
        match verdict.and_then(|f| f.to_record()) {
            Ok(mut record) => {
                record.room = room.clone();
                f(&record)?;
                report.records += 1;
            }
            Err(reason) => pending_bad = Some(moved(line, reason)),
        }
        Ok(())
    })?;
    if report.skipped_torn_tail.is_none() {
        report.skipped_torn_tail = pending_bad;
    }
    Ok(())
}

/// Hands every valid record of every room of `dir` to `f`, in [`export`]'s order (`#general`'s
/// first, then each other room's by name, each in id order), with the same rules: a torn last
/// line is left out and reported, an invalid line elsewhere stops with
/// [`StoreError::BadLine`]. Takes no lock.
pub fn visit_records(dir: &Path, mut f: impl FnMut(&Record) -> Result<()>) -> Result<ExportReport> {
    let mut report = ExportReport::default();
    for (room, path) in room_files(dir)? {
        visit_file(&room, &path, &mut report, &mut f)?;
    }
    Ok(report)
}

/// One record as [`export`] writes it in `format` (with its LF), appended to `out`; the room
/// header lines of [`ExportFormat::Plain`] are the caller's.
pub fn export_line(record: &Record, format: ExportFormat, out: &mut Vec<u8>) {
    match format {
        ExportFormat::Plain => encode_record(record, out),
        ExportFormat::JsonLines => write_json(record, out),
    }
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
    if !r.room.is_general() {
        out.extend_from_slice(b",\"room\":");
        json_string(r.room.as_str(), out);
    }
    out.extend_from_slice(b"}\n");
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_protocol::types::{Timestamp, Username};

    #[test]
    fn check_and_repair_cover_the_accounts_file() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join(DATABASE_FILE), "").unwrap();
        let path = dir.path().join(crate::accounts::ACCOUNTS_FILE);
        let accounts = crate::Accounts::open(&path).unwrap();
        accounts
            .add(crate::Account {
                username: Username::new("alice").unwrap(),
                salt: vec![1; 16],
                iterations: 4096,
                stored_key: vec![2; 32],
                server_key: vec![3; 32],
                created: Timestamp::parse("1640995200").unwrap(),
            })
            .unwrap();
        drop(accounts);
        let good = std::fs::read_to_string(&path).unwrap();
        let alice_again = good.replacen("alice", "ALICE", 1);
        std::fs::write(&path, format!("{good}garbage line\n{alice_again}")).unwrap();
        assert!(
            crate::Accounts::open(&path).is_err(),
            "the server would refuse to start"
        );

        let r = check(dir.path()).unwrap();
        assert_eq!(r.accounts_lines, 3);
        assert_eq!(
            r.accounts_bad_lines
                .iter()
                .map(|b| b.line_number)
                .collect::<Vec<_>>(),
            vec![2, 3]
        );
        assert!(!r.is_ok());

        let fixed = repair(dir.path()).unwrap();
        assert_eq!(fixed.moved_count, 2);
        assert_eq!(std::fs::read_to_string(&path).unwrap(), good);
        let corrupt = std::fs::read_to_string(dir.path().join("usernames.db.corrupt")).unwrap();
        assert!(
            corrupt.contains("garbage line") && corrupt.contains("ALICE"),
            "{corrupt}"
        );
        assert!(check(dir.path()).unwrap().is_ok());
        assert_eq!(crate::Accounts::open(&path).unwrap().len(), 1);
    }

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
