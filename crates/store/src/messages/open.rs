//! Opening the store: the data-dir lock, a validating scan of `database.db` (in parallel with
//! `database.msgids`), recovery from a torn last line, and building the index, tail and dedupe
//! map that the running store starts from. Also `scan_records` and `moved`, which `admin`,
//! `msgids` and `cache` use too.

use std::fs::File;
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use gc_protocol::types::Timestamp;
use parking_lot::{Condvar, Mutex, RwLock};

use super::commit::{AppendState, Writer};
use super::query::{IndexEntry, Published};
use super::{MessageStore, OpenReport, StoreConfig};
use crate::codec::{RecordFields, split_record};
use crate::error::{LineError, Result, StoreError};
use crate::files::{self, FaultyLine, Line, LineReader};
use crate::lock::DataDirLock;
use crate::msgids::{self, Dedupe, KeyHasher, MSGIDS_FILE};

/// Validates every line of a `database.db`-format file and hands each to `f` with its verdict.
/// Ids must increase: a line whose id is not above the last valid line's is invalid.
pub(crate) fn scan_records(
    file: &File,
    path: &Path,
    mut f: impl FnMut(&Line<'_>, Result<RecordFields<'_>, LineError>) -> Result<()>,
) -> Result<()> {
    let mut reader = LineReader::new(file, path);
    let mut previous: Option<u64> = None;
    while let Some(line) = reader.next_line()? {
        let verdict = match line.framing_error() {
            Some(e) => Err(e),
            None => split_record(line.bytes),
        }
        .and_then(|fields| match previous {
            Some(previous) if fields.id <= previous => Err(LineError::NotIncreasing {
                id: fields.id,
                previous,
            }),
            _ => Ok(fields),
        });
        if let Ok(fields) = &verdict {
            previous = Some(fields.id);
        }
        f(&line, verdict)?;
    }
    Ok(())
}

/// A [`FaultyLine`] for `line`.
pub(crate) fn moved(line: &Line<'_>, reason: LineError) -> FaultyLine {
    FaultyLine {
        line_number: line.number,
        offset: line.offset,
        len: line.len,
        reason,
    }
}

/// What scanning `database.db` found.
struct DbScan {
    index: Vec<IndexEntry>,
    /// The last line, when invalid (any other invalid line is an error).
    bad: Option<FaultyLine>,
    /// The end of the last valid line.
    end: u64,
}

/// Scans `database.db`, building the index without building records.
fn scan_db(file: &File, path: &Path) -> Result<DbScan> {
    let size = files::file_len(file, path)?;
    // Lines are rarely under 48 bytes: reserve once rather than grow through many copies.
    let mut index: Vec<IndexEntry> =
        Vec::with_capacity(usize::try_from(size / 48).unwrap_or(0).min(1 << 26));
    let mut bad: Option<FaultyLine> = None;
    let mut end = 0u64;
    scan_records(file, path, |line, verdict| {
        if let Some(b) = bad {
            // The bad line was not the last one.
            return Err(StoreError::BadLine {
                path: path.to_owned(),
                line_number: b.line_number,
                reason: b.reason,
            });
        }
        match verdict {
            Ok(f) => {
                index.push(IndexEntry {
                    id: f.id,
                    offset: line.offset,
                    micros: f.timestamp.as_micros(),
                });
                end = line.offset + line.len;
            }
            Err(reason) => bad = Some(moved(line, reason)),
        }
        Ok(())
    })?;
    index.shrink_to_fit();
    Ok(DbScan { index, bad, end })
}

impl MessageStore {
    /// Opens the store in `dir` (`database.db`, `database.msgids`), creating the directory and
    /// files if absent, and holds the data-dir lock until dropped.
    ///
    /// Every line is validated. A torn or invalid *last* line (a crash mid-write) is moved aside
    /// into `database.db.corrupt`, cut off, logged and reported; an invalid line anywhere else is
    /// [`StoreError::BadLine`] and nothing is changed. `database.msgids` entries for records that
    /// do not exist are dropped, and the file is compacted when it holds more than twice
    /// `msgid_window` entries.
    ///
    /// Fails with [`StoreError::Locked`] when another process (or another open store) holds the
    /// data dir.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<(Self, OpenReport)> {
        let started = Instant::now();
        let lock = DataDirLock::acquire(dir)?;
        let db_path = lock.path().to_owned();
        let file = lock.file();

        let keys = KeyHasher::new();
        let msgids_path = dir.join(MSGIDS_FILE);
        // The two files are independent until their entries are matched: read them in parallel.
        let (db_scan, msgids_scan) = std::thread::scope(|s| {
            let scan_msgids = || msgids::scan(&msgids_path, &keys);
            let helper = std::thread::Builder::new()
                .name("gc-store-open".into())
                .spawn_scoped(s, scan_msgids);
            let db = scan_db(file, &db_path);
            let msgids = match helper {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: read it here instead.
                Err(_) => scan_msgids(),
            };
            (db, msgids)
        });
        let DbScan { index, bad, end } = db_scan?;

        if let Some(torn) = bad {
            let corrupt = files::move_aside(file, &db_path, &[torn])?;
            file.set_len(torn.offset)
                .map_err(|e| StoreError::io("truncate", &db_path, e))?;
            file.sync_all()
                .map_err(|e| StoreError::io("fsync", &db_path, e))?;
            tracing::warn!(
                path = %db_path.display(),
                line = torn.line_number,
                bytes = torn.len,
                reason = %torn.reason,
                "the last line of the message file was torn (an interrupted write); moved it aside into {}",
                corrupt.display()
            );
        }

        let published = Published::load(file, &db_path, index, end, config.tail_capacity)?;
        let index = published.index();

        let msgids::Loaded {
            file: msgids,
            len: msgids_len,
            entries,
            report: msgids_report,
        } = msgids::finish(&msgids_path, msgids_scan?, index, config.msgid_window)?;
        let dedupe = Dedupe::new(config.msgid_window, entries);

        let last = index.last().copied();
        let last_id = last.map_or(0, |e| e.id);
        let mut report = OpenReport {
            records: index.len(),
            first_id: index.first().map_or(0, |e| e.id),
            last_id,
            torn_tail: bad,
            msgids: msgids_report,
            elapsed: Duration::ZERO,
        };
        let store = Self {
            msgids_path,
            config,
            msgids,
            keys,
            state: Mutex::new(AppendState::new(
                last_id,
                Timestamp::from_micros(last.map_or(0, |e| e.micros)),
                dedupe,
            )),
            settled: Condvar::new(),
            arrivals: Condvar::new(),
            writer: Mutex::new(Writer::new(end, msgids_len)),
            published: RwLock::new(published),
            newest: AtomicU64::new(last_id),
            #[cfg(test)]
            faults: Mutex::new(Vec::new()),
            db_path,
            lock,
        };
        report.elapsed = started.elapsed();
        tracing::debug!(records = report.records, last_id, elapsed = ?report.elapsed, "message store opened");
        Ok((store, report))
    }
}
