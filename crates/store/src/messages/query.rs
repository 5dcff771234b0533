//! The read side: the id index and the in-memory tail that readers see (durable records only,
//! in id order), and the queries on them. A commit extends both under the write lock; queries
//! take the read lock only to plan, then read the file (if they must) without it.

use std::collections::VecDeque;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::Path;
use std::sync::atomic::Ordering;

use gc_protocol::types::{Record, Timestamp};

use super::MessageStore;
use crate::codec::parse_record;
use crate::error::{Result, StoreError};

/// One record's place in `database.db`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub id: u64,
    pub offset: u64,
    pub micros: u64,
}

/// What readers see: only durable records, in id order.
#[derive(Debug)]
pub(super) struct Published {
    index: Vec<IndexEntry>,
    /// The newest records (at most `tail_capacity`), matching the end of `index`.
    tail: VecDeque<Record>,
    /// Length of `database.db` covered by `index`.
    end: u64,
}

impl Published {
    /// The index of an opened `database.db` (whose lines end at `end`), with its newest
    /// `tail_capacity` records read into the tail. Only those are built into records; the rest
    /// stays on disk behind the index.
    pub(super) fn load(
        file: &File,
        path: &Path,
        index: Vec<IndexEntry>,
        end: u64,
        tail_capacity: usize,
    ) -> Result<Self> {
        let tail_len = index.len().min(tail_capacity);
        let mut tail = VecDeque::with_capacity(tail_capacity.min(1 << 20));
        if tail_len > 0 {
            let first = index.len() - tail_len;
            let offset = index[first].offset;
            tail.extend(read_records(file, path, first, offset, end - offset)?);
        }
        Ok(Self { index, tail, end })
    }

    pub(super) fn index(&self) -> &[IndexEntry] {
        &self.index
    }

    /// Makes a durable batch visible: its index entries, the new end of the file, and its
    /// records into the tail (oldest dropped beyond `tail_capacity`).
    pub(super) fn publish(
        &mut self,
        entries: &[IndexEntry],
        end: u64,
        records: impl Iterator<Item = Record>,
        tail_capacity: usize,
    ) {
        self.index.extend_from_slice(entries);
        self.end = end;
        for record in records {
            if tail_capacity > 0 {
                if self.tail.len() == tail_capacity {
                    self.tail.pop_front();
                }
                self.tail.push_back(record);
            }
        }
    }

    fn line_end(&self, pos: usize) -> u64 {
        self.index.get(pos + 1).map_or(self.end, |e| e.offset)
    }

    fn line_len(&self, pos: usize) -> u64 {
        self.line_end(pos) - self.index[pos].offset
    }

    /// Index position of the first record held in `tail`.
    fn tail_start(&self) -> usize {
        self.index.len() - self.tail.len()
    }

    /// How to fetch the records at positions `start..end`.
    fn plan(&self, start: usize, end: usize) -> Plan {
        if start >= end {
            return Plan::Done(Vec::new());
        }
        let ts = self.tail_start();
        if start >= ts {
            return Plan::Done(self.tail.range(start - ts..end - ts).cloned().collect());
        }
        let offset = self.index[start].offset;
        Plan::Read {
            first: start,
            offset,
            len: self.line_end(end - 1) - offset,
        }
    }
}

/// Records to return, or the range of `database.db` to read them from (its first line at index
/// position `first`).
enum Plan {
    Done(Vec<Record>),
    Read { first: usize, offset: u64, len: u64 },
}

impl MessageStore {
    /// The timestamp of the durable record with this id.
    pub(super) fn timestamp_of(&self, id: u64) -> Option<Timestamp> {
        let p = self.published.read();
        let pos = p.index.binary_search_by_key(&id, |e| e.id).ok()?;
        Some(Timestamp::from_micros(p.index[pos].micros))
    }

    /// The highest durable id, 0 when empty.
    pub fn newest_id(&self) -> u64 {
        self.newest.load(Ordering::Acquire)
    }

    /// The number of durable records.
    pub fn len(&self) -> usize {
        self.published.read().index.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Records with id > `id`, ascending: at most `max_records`, and no more than `max_bytes` of
    /// `database.db` lines (LF included) — but at least one record if any exists. A `Rec` frame is
    /// never longer than twice its record's line, so `max_bytes = MAX_BATCH_BYTES / 2` keeps a
    /// delivery batch within the protocol's limit. `max_records == 0` returns nothing.
    pub fn after(&self, id: u64, max_records: usize, max_bytes: u64) -> Result<Vec<Record>> {
        let p = self.published.read();
        let n = p.index.len();
        let start = p.index.partition_point(|e| e.id <= id);
        let mut end = start;
        let mut bytes = 0u64;
        while end < n && end - start < max_records {
            let len = p.line_len(end);
            if end > start && bytes + len > max_bytes {
                break;
            }
            bytes += len;
            end += 1;
        }
        let plan = p.plan(start, end);
        drop(p);
        self.run(plan)
    }

    /// The newest `limit` records with id < `id` (`id == 0`: the newest records), ascending.
    pub fn before(&self, id: u64, limit: usize) -> Result<Vec<Record>> {
        let p = self.published.read();
        let end = if id == 0 {
            p.index.len()
        } else {
            p.index.partition_point(|e| e.id < id)
        };
        let plan = p.plan(end.saturating_sub(limit), end);
        drop(p);
        self.run(plan)
    }

    /// The record with this id, if stored.
    pub fn get(&self, id: u64) -> Result<Option<Record>> {
        let p = self.published.read();
        let Ok(pos) = p.index.binary_search_by_key(&id, |e| e.id) else {
            return Ok(None);
        };
        let plan = p.plan(pos, pos + 1);
        drop(p);
        Ok(self.run(plan)?.pop())
    }

    /// The cursor `c` such that `after(c, ..)` yields the newest `n` records (0 when there are
    /// no more than `n`). The server uses it for history-on-join.
    pub fn last_n_start(&self, n: usize) -> u64 {
        let p = self.published.read();
        let len = p.index.len();
        if n >= len { 0 } else { p.index[len - n - 1].id }
    }

    fn run(&self, plan: Plan) -> Result<Vec<Record>> {
        match plan {
            Plan::Done(records) => Ok(records),
            Plan::Read { first, offset, len } => {
                read_records(self.db(), &self.db_path, first, offset, len)
            }
        }
    }
}

/// Reads and parses the lines in `offset..offset + len` of `file`; the first is at index
/// position `first` (so line number `first + 1`).
fn read_records(
    file: &File,
    path: &Path,
    first: usize,
    offset: u64,
    len: u64,
) -> Result<Vec<Record>> {
    let size = usize::try_from(len)
        .map_err(|_| StoreError::io("read", path, io::Error::other("range larger than memory")))?;
    let mut buf = vec![0u8; size];
    file.read_exact_at(&mut buf, offset)
        .map_err(|e| StoreError::io("read", path, e))?;
    let mut out = Vec::new();
    for (i, line) in buf.split_inclusive(|&b| b == b'\n').enumerate() {
        let record = parse_record(line).map_err(|reason| StoreError::BadLine {
            path: path.to_owned(),
            line_number: (first + i + 1) as u64,
            reason,
        })?;
        out.push(record);
    }
    Ok(out)
}
