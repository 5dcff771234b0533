//! The client's cache, `cdatabase.db`: the records it has received, in the record line format,
//! so it restarts with its history and its delivery cursor.

use std::os::unix::fs::FileExt as _;
use std::path::Path;

use gc_protocol::types::Record;

use crate::codec::{MAX_BODY_BYTES, encode_record, parse_record};
use crate::error::{Result, StoreError};
use crate::files::{self, FaultyLine, LineReader};
use crate::lock::{DataDirLock, lock_file};
use crate::messages::moved;

/// What [`ClientCache::open`] found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct CacheReport {
    /// Distinct records held.
    pub records: usize,
    /// Lines whose id another line already had (the first one is kept; the file is left as is).
    pub duplicates_ignored: usize,
    /// The torn or invalid last line, moved aside into `<file>.corrupt`.
    pub torn_tail: Option<FaultyLine>,
    /// Invalid lines before the last, moved aside into `<file>.corrupt` (it is only a cache:
    /// the server can send them again).
    pub moved_aside: Vec<FaultyLine>,
    /// Whether the file was rewritten without the moved lines.
    pub rewritten: bool,
}

/// The client's record cache, held in memory in id order and appended to on disk.
///
/// The file is locked exclusively while open: a second client on the same cache gets
/// [`StoreError::Locked`]. Lines may be in any id order on disk (older history pages arrive
/// later); duplicates by id are ignored.
#[derive(Debug)]
pub struct ClientCache {
    lock: DataDirLock,
    len: u64,
    records: Vec<Record>,
}

impl ClientCache {
    /// Opens (creating it, 0600, and its directories, 0700, if absent) and locks the cache at
    /// `path`; a cache that others may read is tightened. Invalid lines are moved aside into
    /// `<path>.corrupt` with a warning and reported, never fatal.
    pub fn open(path: &Path) -> Result<(Self, CacheReport)> {
        let dir = files::parent_dir(path);
        // The user may have named the directory (`--cache /tmp/x.db`): only made, never changed.
        crate::private::create_dirs(dir)
            .map_err(|e| StoreError::io("create the directory", dir, e))?;
        let mut lock = DataDirLock::acquire_file(path)?;
        let mut report = CacheReport::default();
        let mut records = Vec::new();
        let mut good = Vec::new();
        let mut bad: Vec<FaultyLine> = Vec::new();
        {
            let file = lock.file();
            let mut reader = LineReader::new(file, path);
            while let Some(line) = reader.next_line()? {
                let verdict = match line.framing_error() {
                    Some(e) => Err(e),
                    None => parse_record(line.bytes),
                };
                match verdict {
                    Ok(r) if r.id > 0 => {
                        records.push(r);
                        files::push_range(&mut good, line.offset, line.len);
                    }
                    Ok(_) => bad.push(moved(&line, crate::LineError::Id)),
                    Err(reason) => bad.push(moved(&line, reason)),
                }
            }
        }
        let last_is_bad = bad
            .last()
            .is_some_and(|b| good.last().is_none_or(|g| b.offset > g.0));
        if last_is_bad {
            report.torn_tail = bad.last().copied();
        }
        report.moved_aside = bad[..bad.len() - usize::from(last_is_bad)].to_vec();

        if !bad.is_empty() {
            let file = lock.file();
            let corrupt = files::move_aside(file, path, &bad)?;
            for b in &bad {
                tracing::warn!(path = %path.display(), line = b.line_number, reason = %b.reason,
                    "moved a bad cache line aside into {}", corrupt.display());
            }
            if let (true, Some(torn)) = (report.moved_aside.is_empty(), report.torn_tail) {
                // Only the tail: cutting it off is enough.
                file.set_len(torn.offset)
                    .and_then(|()| file.sync_all())
                    .map_err(|e| StoreError::io("truncate", path, e))?;
            } else {
                let new_file = files::atomic_rewrite(
                    path,
                    |w| files::copy_ranges(file, &good, w),
                    |tmp| lock_file(&tmp, path).map(|()| tmp),
                )?;
                lock = DataDirLock::from_locked(new_file, path);
                report.rewritten = true;
            }
        }
        let len = files::file_len(lock.file(), path)?;

        let before = records.len();
        // Stable: the first line for an id wins.
        records.sort_by_key(|r| r.id);
        records.dedup_by_key(|r| r.id);
        report.duplicates_ignored = before - records.len();
        report.records = records.len();
        Ok((Self { lock, len, records }, report))
    }

    /// The cache file's path.
    pub fn path(&self) -> &Path {
        self.lock.path()
    }

    /// Stores the records not held yet (any order; ids already held, and repeats within
    /// `records`, are ignored) with one write, and returns how many were new. Does not fsync:
    /// call [`ClientCache::sync`] after a batch when it must survive a power cut. Records with
    /// id 0 or a body over [`MAX_BODY_BYTES`] cannot be stored and are skipped with a warning.
    pub fn insert(&mut self, records: &[Record]) -> Result<usize> {
        let mut new: Vec<&Record> = Vec::new();
        for r in records {
            if r.id == 0 || r.body.len() > MAX_BODY_BYTES {
                tracing::warn!(
                    id = r.id,
                    bytes = r.body.len(),
                    "record not cacheable; skipped"
                );
                continue;
            }
            if !self.contains(r.id) {
                new.push(r);
            }
        }
        new.sort_by_key(|r| r.id);
        new.dedup_by_key(|r| r.id);
        if new.is_empty() {
            return Ok(0);
        }
        let mut buf = Vec::new();
        for r in &new {
            encode_record(r, &mut buf);
        }
        let file = self.lock.file();
        if let Err(e) = file.write_all_at(&buf, self.len) {
            // Leave no half line behind for the next write to follow.
            let _ = file.set_len(self.len);
            return Err(StoreError::io("write to", self.path(), e));
        }
        self.len += buf.len() as u64;
        let in_order = self.records.last().is_none_or(|l| l.id < new[0].id);
        self.records.extend(new.iter().map(|&r| r.clone()));
        if !in_order {
            // Two sorted runs: the stable sort merges them in linear time.
            self.records.sort_by_key(|r| r.id);
        }
        Ok(new.len())
    }

    /// Fsyncs the cache file.
    pub fn sync(&self) -> Result<()> {
        self.lock
            .file()
            .sync_data()
            .map_err(|e| StoreError::io("fsync", self.path(), e))
    }

    /// The highest id held, 0 when empty: the client's delivery cursor.
    pub fn last_id(&self) -> u64 {
        self.records.last().map_or(0, |r| r.id)
    }

    /// Whether a record with this id is held.
    pub fn contains(&self, id: u64) -> bool {
        self.records.binary_search_by_key(&id, |r| r.id).is_ok()
    }

    /// The record with this id.
    pub fn get(&self, id: u64) -> Option<&Record> {
        let i = self.records.binary_search_by_key(&id, |r| r.id).ok()?;
        Some(&self.records[i])
    }

    /// Every record held, ascending by id.
    pub fn records(&self) -> &[Record] {
        &self.records
    }

    /// The number of records held.
    pub fn len(&self) -> usize {
        self.records.len()
    }

    /// Whether no record is held.
    pub fn is_empty(&self) -> bool {
        self.records.is_empty()
    }

    /// The newest `limit` records with id < `id` (`id == 0`: the newest), ascending.
    pub fn before(&self, id: u64, limit: usize) -> &[Record] {
        let end = if id == 0 {
            self.records.len()
        } else {
            self.records.partition_point(|r| r.id < id)
        };
        &self.records[end.saturating_sub(limit)..end]
    }

    /// The oldest `limit` records with id > `id`, ascending.
    pub fn after(&self, id: u64, limit: usize) -> &[Record] {
        let start = self.records.partition_point(|r| r.id <= id);
        let end = start.saturating_add(limit).min(self.records.len());
        &self.records[start..end]
    }
}
