//! Opening the store: the data-dir lock, a validating scan of `database.db` (in parallel with
//! `database.msgids`), recovery from a torn last line, and building the index, tail and dedupe
//! map that the running store starts from. Also `scan_records` and `moved`, which `admin`,
//! `msgids` and `cache` use too.

use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicU64;
use std::time::{Duration, Instant};

use gc_protocol::types::{Room, Timestamp};
use parking_lot::{Condvar, Mutex, RwLock};

use super::commit::{AppendState, RoomFile, Writer};
use super::query::{IndexEntry, Published, RoomView};
use super::{MessageStore, OpenReport, ROOMS_DIR, StoreConfig};
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

/// Scans one room's file (room number `room`), building its index without building records.
fn scan_db(file: &File, path: &Path, room: u32) -> Result<DbScan> {
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
                    room,
                    // A valid line is at most MAX_LINE_BYTES (1 MiB).
                    len: u32::try_from(line.len).unwrap_or(u32::MAX),
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

/// The rooms' files in `dir` (`<data dir>/rooms`), sorted by room; none if it does not exist.
pub(crate) fn find_room_files(dir: &Path) -> Result<Vec<(Room, PathBuf)>> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("list", dir, e)),
    };
    let mut rooms = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| StoreError::io("list", dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".db")) else {
            // `.corrupt` files, temporary files: not records.
            continue;
        };
        match Room::from_file_stem(stem) {
            // `#general`'s records are in `database.db`, never here.
            Ok(room) if !room.is_general() => rooms.push((room, path)),
            _ => return Err(StoreError::StrayRoomFile { path }),
        }
    }
    rooms.sort();
    Ok(rooms)
}

/// Moves a torn last line aside and cuts it off its file.
fn cut_torn(file: &File, path: &Path, torn: FaultyLine) -> Result<()> {
    let corrupt = files::move_aside(file, path, &[torn])?;
    file.set_len(torn.offset)
        .map_err(|e| StoreError::io("truncate", path, e))?;
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", path, e))?;
    tracing::warn!(
        path = %path.display(),
        line = torn.line_number,
        bytes = torn.len,
        reason = %torn.reason,
        "the last line of a message file was torn (an interrupted write); moved it aside into {}",
        corrupt.display()
    );
    Ok(())
}

/// Merges the rooms' indexes into one in id order, refusing an id held by two files.
fn merge(mut parts: Vec<Vec<IndexEntry>>, paths: &[PathBuf]) -> Result<Vec<IndexEntry>> {
    if parts.len() == 1 {
        return Ok(parts.pop().unwrap_or_default());
    }
    let mut index: Vec<IndexEntry> = parts.concat();
    index.sort_unstable_by_key(|e| e.id);
    for pair in index.windows(2) {
        if pair[0].id == pair[1].id {
            let path = |e: &IndexEntry| paths.get(e.room as usize).cloned().unwrap_or_default();
            return Err(StoreError::DuplicateId {
                id: pair[0].id,
                first: path(&pair[0]),
                second: path(&pair[1]),
            });
        }
    }
    Ok(index)
}

impl MessageStore {
    /// Opens the store in `dir` (`database.db`, `rooms/*.db`, `database.msgids`), creating the
    /// directory (0700) and files (0600) if absent, and holds the data-dir lock until dropped.
    /// Any of them (or `rooms/`, or a `.corrupt` file beside them) that others may read or enter
    /// is tightened, with a warning naming it and its old mode.
    ///
    /// Every line of every room's file is validated. A torn or invalid *last* line (a crash
    /// mid-write) is moved aside into `<file>.corrupt`, cut off, logged and reported; an invalid
    /// line anywhere else is [`StoreError::BadLine`], an id in two files
    /// [`StoreError::DuplicateId`], a file in `rooms/` not named after a room
    /// [`StoreError::StrayRoomFile`], and then nothing is changed. `database.msgids` entries
    /// for records that do not exist are dropped, and the file is compacted when it holds more
    /// than twice `msgid_window` entries.
    ///
    /// Fails with [`StoreError::Locked`] when another process (or another open store) holds the
    /// data dir.
    pub fn open(dir: &Path, config: StoreConfig) -> Result<(Self, OpenReport)> {
        let started = Instant::now();
        // Files made now exist for sure only once the directory is fsynced too.
        let fresh =
            !dir.join(crate::lock::DATABASE_FILE).exists() || !dir.join(MSGIDS_FILE).exists();
        let lock = DataDirLock::acquire(dir)?;
        let db_path = lock.path().to_owned();
        let rooms_dir = dir.join(ROOMS_DIR);
        crate::private::tighten_path(&rooms_dir);

        // #general's database.db first, then the other rooms by name: room numbers.
        let general = lock
            .file()
            .try_clone()
            .map_err(|e| StoreError::io("open", &db_path, e))?;
        let mut rooms: Vec<(Room, PathBuf, Arc<File>)> =
            vec![(Room::general(), db_path.clone(), Arc::new(general))];
        for (room, path) in find_room_files(&rooms_dir)? {
            let file = files::open_rw(&path)?;
            rooms.push((room, path, Arc::new(file)));
        }

        let keys = KeyHasher::new();
        let msgids_path = dir.join(MSGIDS_FILE);
        // The files are independent until their entries are matched: read msgids in parallel.
        let (scans, msgids_scan) = std::thread::scope(|s| {
            let scan_msgids = || msgids::scan(&msgids_path, &keys);
            let helper = std::thread::Builder::new()
                .name("gc-store-open".into())
                .spawn_scoped(s, scan_msgids);
            let scans: Vec<Result<DbScan>> = rooms
                .iter()
                .enumerate()
                .map(|(n, (_, path, file))| scan_db(file, path, n as u32))
                .collect();
            let msgids = match helper {
                Ok(h) => h
                    .join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic)),
                // No thread to be had: read it here instead.
                Err(_) => scan_msgids(),
            };
            (scans, msgids)
        });
        let scans = scans.into_iter().collect::<Result<Vec<_>>>()?;

        let mut torn_tail = None;
        let mut parts = Vec::with_capacity(scans.len());
        let mut lens = Vec::with_capacity(scans.len());
        for (scan, (_, path, file)) in scans.into_iter().zip(&rooms) {
            if let Some(torn) = scan.bad {
                cut_torn(file, path, torn)?;
                // Reported for #general, as before; any room's is logged.
                if torn_tail.is_none() {
                    torn_tail = Some(torn);
                }
            }
            parts.push(scan.index);
            lens.push(scan.end);
        }
        let paths: Vec<PathBuf> = rooms.iter().map(|(_, p, _)| p.clone()).collect();
        let index = merge(parts, &paths)?;

        let views = rooms
            .iter()
            .map(|(room, path, file)| RoomView {
                room: room.clone(),
                path: path.clone(),
                file: Arc::clone(file),
                positions: Vec::new(),
            })
            .collect();
        let published = Published::load(index, views, config.tail_capacity)?;
        let index = published.index();

        let msgids::Loaded {
            file: msgids,
            len: msgids_len,
            entries,
            report: msgids_report,
        } = msgids::finish(&msgids_path, msgids_scan?, index, config.msgid_window)?;
        let dedupe = Dedupe::new(config.msgid_window, entries);

        let last = index.last().copied();
        if fresh {
            files::sync_dir(dir)?;
        }
        let last_id = last.map_or(0, |e| e.id);
        let last_ts = Timestamp::from_micros(last.map_or(0, |e| e.micros));
        let ahead = Duration::from_micros(
            last_ts
                .as_micros()
                .saturating_sub(Timestamp::now().as_micros()),
        );
        let newest_ahead = (ahead > Duration::from_secs(60)).then_some(ahead);
        if let Some(ahead) = newest_ahead {
            tracing::warn!(
                id = last_id,
                timestamp = %last_ts,
                "the newest record's timestamp is {} s ahead of this machine's clock: new \
                 messages get that timestamp until the clock passes it (timestamps never go \
                 backwards); check the system clock, and that record's line in {}",
                ahead.as_secs(),
                db_path.display()
            );
        }
        let mut report = OpenReport {
            records: index.len(),
            first_id: index.first().map_or(0, |e| e.id),
            last_id,
            torn_tail,
            msgids: msgids_report,
            newest_ahead,
            elapsed: Duration::ZERO,
        };
        let writer_rooms = rooms
            .into_iter()
            .zip(lens)
            .map(|((room, path, file), len)| (room, RoomFile::new(file, path, len)))
            .collect();
        let store = Self {
            msgids_path,
            config,
            msgids,
            keys,
            state: Mutex::new(AppendState::new(last_id, last_ts, dedupe)),
            settled: Condvar::new(),
            arrivals: Condvar::new(),
            writer: Mutex::new(Writer::new(writer_rooms, msgids_len, rooms_dir)),
            published: RwLock::new(published),
            newest: AtomicU64::new(last_id),
            #[cfg(test)]
            faults: Mutex::new(Vec::new()),
            db_path,
            _lock: lock,
        };
        report.elapsed = started.elapsed();
        tracing::debug!(records = report.records, last_id, elapsed = ?report.elapsed, "message store opened");
        Ok((store, report))
    }
}
