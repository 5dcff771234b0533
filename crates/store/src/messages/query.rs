//! The read side: the id index and the in-memory tail that readers see (durable records only,
//! in id order, across every room's file), and the queries on them. A commit extends both under
//! the write lock; queries take the read lock only to plan, then read the files (if they must)
//! without it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;

use gc_protocol::types::{Record, Room, Timestamp};

use super::MessageStore;
use crate::codec::parse_record;
use crate::error::{Result, StoreError};

/// Half the most a room field adds to a `Rec` frame (` @` + 32 + `+` + 32 characters).
const ROOM_FIELD_HALF: u64 = 34;

/// One record's place: which room's file, where in it, and how long its line is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub id: u64,
    pub offset: u64,
    pub micros: u64,
    /// The room's number (see [`RoomView`]); 0 is `#general`.
    pub room: u32,
    /// The line's length, LF included.
    pub len: u32,
}

/// A room's file as readers see it.
#[derive(Debug)]
pub(super) struct RoomView {
    pub room: Room,
    pub path: PathBuf,
    pub file: Arc<File>,
    /// The positions (in the global index) of this room's records, ascending.
    pub positions: Vec<usize>,
}

/// What readers see: only durable records, in id order.
#[derive(Debug)]
pub(super) struct Published {
    index: Vec<IndexEntry>,
    /// The newest records (at most `tail_capacity`), matching the end of `index`. Shared: a
    /// delivery to a thousand sessions takes a thousand references, not a thousand copies.
    tail: VecDeque<Arc<Record>>,
    /// Every room with a file, by number.
    rooms: Vec<RoomView>,
    numbers: HashMap<Room, u32>,
}

impl Published {
    /// The index of the opened files (`rooms`, numbered by position; each view's `positions`
    /// is rebuilt here), with the newest `tail_capacity` records read into the tail. Only those
    /// are built into records; the rest stays on disk behind the index.
    pub(super) fn load(
        index: Vec<IndexEntry>,
        mut rooms: Vec<RoomView>,
        tail_capacity: usize,
    ) -> Result<Self> {
        for view in &mut rooms {
            view.positions.clear();
        }
        for (pos, e) in index.iter().enumerate() {
            if let Some(view) = rooms.get_mut(e.room as usize) {
                view.positions.push(pos);
            }
        }
        let numbers = rooms
            .iter()
            .enumerate()
            .map(|(n, v)| (v.room.clone(), n as u32))
            .collect();
        let mut published = Self {
            index,
            tail: VecDeque::with_capacity(tail_capacity.min(1 << 20)),
            rooms,
            numbers,
        };
        let tail_len = published.index.len().min(tail_capacity);
        if tail_len > 0 {
            let start = published.index.len() - tail_len;
            let positions: Vec<usize> = (start..published.index.len()).collect();
            let plan = published.plan(&positions);
            let records = plan.run()?;
            published.tail.extend(records);
        }
        Ok(published)
    }

    pub(super) fn index(&self) -> &[IndexEntry] {
        &self.index
    }

    /// The number of `room`, if it has a file.
    pub(super) fn number(&self, room: &Room) -> Option<u32> {
        self.numbers.get(room).copied()
    }

    /// Adds a room whose file was just made (numbered next).
    pub(super) fn add_room(&mut self, room: Room, path: PathBuf, file: Arc<File>) -> u32 {
        let n = self.rooms.len() as u32;
        self.numbers.insert(room.clone(), n);
        self.rooms.push(RoomView {
            room,
            path,
            file,
            positions: Vec::new(),
        });
        n
    }

    /// Makes a durable batch visible: its index entries and its records into the tail (oldest
    /// dropped beyond `tail_capacity`).
    pub(super) fn publish(
        &mut self,
        entries: &[IndexEntry],
        records: impl Iterator<Item = Arc<Record>>,
        tail_capacity: usize,
    ) {
        for e in entries {
            let pos = self.index.len();
            self.index.push(*e);
            if let Some(view) = self.rooms.get_mut(e.room as usize) {
                view.positions.push(pos);
            }
        }
        for record in records {
            if tail_capacity > 0 {
                if self.tail.len() == tail_capacity {
                    self.tail.pop_front();
                }
                self.tail.push_back(record);
            }
        }
    }

    /// Index position of the first record held in `tail`.
    fn tail_start(&self) -> usize {
        self.index.len() - self.tail.len()
    }

    /// How to fetch the records at `positions` (ascending): from the tail, or as runs of
    /// adjacent lines of one file each.
    fn plan(&self, positions: &[usize]) -> Plan {
        let ts = self.tail_start();
        let mut steps: Vec<Step> = Vec::new();
        for &pos in positions {
            if pos >= ts {
                steps.push(Step::Tail(Arc::clone(&self.tail[pos - ts])));
                continue;
            }
            let e = self.index[pos];
            if let Some(Step::Read(run)) = steps.last_mut()
                && run.room == e.room
                && run.offset + run.len == e.offset
            {
                run.len += u64::from(e.len);
                continue;
            }
            let Some(view) = self.rooms.get(e.room as usize) else {
                continue;
            };
            // For error messages: the line number of the run's first line in its file.
            let rank = view.positions.partition_point(|&p| p < pos);
            steps.push(Step::Read(Run {
                room: e.room,
                file: Arc::clone(&view.file),
                path: view.path.clone(),
                name: view.room.clone(),
                first_line: rank as u64 + 1,
                offset: e.offset,
                len: u64::from(e.len),
            }));
        }
        Plan { steps }
    }

    /// Positions of the records with id > `id` in `rooms` (all rooms when `None`), ascending,
    /// within `max_records` and `max_bytes` (at least one record if any).
    fn after_positions(
        &self,
        id: u64,
        rooms: Option<&[RoomSpan]>,
        max_records: usize,
        max_bytes: u64,
    ) -> (Vec<usize>, bool) {
        let mut out = Vec::new();
        // Whether a limit stopped the scan (more records may follow the last one).
        let mut cut = false;
        let mut bytes = 0u64;
        let mut take = |pos: usize, out: &mut Vec<usize>| -> bool {
            if out.len() >= max_records {
                return false;
            }
            let e = &self.index[pos];
            // A record of another room than #general carries its room in `Rec` too (at most 67
            // bytes): counted at half, as the line is (see `after`).
            let len = u64::from(e.len) + if e.room == 0 { 0 } else { ROOM_FIELD_HALF };
            if !out.is_empty() && bytes + len > max_bytes {
                return false;
            }
            bytes += len;
            out.push(pos);
            true
        };
        match rooms {
            None => {
                let start = self.index.partition_point(|e| e.id <= id);
                for pos in start..self.index.len() {
                    if !take(pos, &mut out) {
                        cut = true;
                        break;
                    }
                }
            }
            Some(rooms) => {
                // A merge of the rooms' own position lists: the work is the records returned
                // (and a binary search per room), however many other rooms there are.
                let mut heads: Vec<&[usize]> = rooms
                    .iter()
                    .filter_map(|span| Some((self.number(&span.room)?, span)))
                    .map(|(n, span)| {
                        let list = &self.rooms[n as usize].positions;
                        let from = id.max(span.after);
                        let start = list.partition_point(|&p| self.index[p].id <= from);
                        let end = list.partition_point(|&p| self.index[p].id <= span.until);
                        &list[start..end.max(start)]
                    })
                    .collect();
                heads.sort_unstable_by_key(|h| h.first().copied());
                heads.dedup_by_key(|h| h.first().copied());
                loop {
                    let next = heads
                        .iter_mut()
                        .filter(|h| !h.is_empty())
                        .min_by_key(|h| h[0]);
                    let Some(head) = next else { break };
                    let pos = head[0];
                    *head = &head[1..];
                    if !take(pos, &mut out) {
                        cut = true;
                        break;
                    }
                }
            }
        }
        (out, cut)
    }
}

/// Which of a room's records a reader is owed: those with `after < id <= until`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomSpan {
    /// The room.
    pub room: Room,
    /// Records with ids above this (0: from the first).
    pub after: u64,
    /// Records with ids up to this (`u64::MAX`: to the last).
    pub until: u64,
}

impl RoomSpan {
    /// All of `room`'s records.
    pub fn all(room: Room) -> Self {
        Self {
            room,
            after: 0,
            until: u64::MAX,
        }
    }
}

/// Records of some rooms after a cursor ([`MessageStore::after_in`]).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Page {
    /// The records, ascending (shared with the store's tail where they come from it).
    pub records: Vec<Arc<Record>>,
    /// The rooms have no record after the cursor up to this id but those in `records`.
    pub through: u64,
}

/// How to fetch a list of records, in order.
struct Plan {
    steps: Vec<Step>,
}

enum Step {
    Tail(Arc<Record>),
    Read(Run),
}

/// Adjacent lines of one room's file.
struct Run {
    room: u32,
    file: Arc<File>,
    path: PathBuf,
    name: Room,
    first_line: u64,
    offset: u64,
    len: u64,
}

impl Plan {
    fn run(self) -> Result<Vec<Arc<Record>>> {
        let mut out = Vec::with_capacity(self.steps.len());
        for step in self.steps {
            match step {
                Step::Tail(r) => out.push(r),
                Step::Read(run) => {
                    let records =
                        read_records(&run.file, &run.path, run.first_line, run.offset, run.len)?;
                    out.extend(records.into_iter().map(|mut r| {
                        r.room = run.name.clone();
                        Arc::new(r)
                    }));
                }
            }
        }
        Ok(out)
    }

    /// [`Plan::run`] for callers that own their records (a record still in the tail is copied).
    fn run_owned(self) -> Result<Vec<Record>> {
        Ok(self.run()?.into_iter().map(Arc::unwrap_or_clone).collect())
    }
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

    /// The number of durable records, in all rooms.
    pub fn len(&self) -> usize {
        self.published.read().index.len()
    }

    /// Whether no record is stored.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The rooms that have a file (`#general` first, then in the order their files were made
    /// or found).
    pub fn rooms(&self) -> Vec<Room> {
        self.published
            .read()
            .rooms
            .iter()
            .map(|v| v.room.clone())
            .collect()
    }

    /// Records of every room with id > `id`, ascending: at most `max_records`, and no more than
    /// `max_bytes` of record lines (LF included; a record of a room other than `#general` counts
    /// 34 bytes more, for its room field) — but at least one record if any exists. A `Rec`
    /// frame is never longer than twice what is counted for it, so
    /// `max_bytes = MAX_BATCH_BYTES / 2` keeps a delivery batch within the protocol's limit.
    /// `max_records == 0` returns nothing.
    pub fn after(&self, id: u64, max_records: usize, max_bytes: u64) -> Result<Vec<Record>> {
        let p = self.published.read();
        let (positions, _) = p.after_positions(id, None, max_records, max_bytes);
        let plan = p.plan(&positions);
        drop(p);
        plan.run_owned()
    }

    /// [`MessageStore::after`] for the records of `rooms` only: what one session may see. The
    /// cost is that of the records returned, not of the other rooms' traffic. Also says how far
    /// the answer covers: `through` is the last id returned when a limit cut the answer short,
    /// or else the newest id stored when it was taken (the rooms have nothing more up to there).
    pub fn after_in(
        &self,
        id: u64,
        rooms: &[Room],
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Page> {
        let rooms: Vec<RoomSpan> = rooms.iter().cloned().map(RoomSpan::all).collect();
        self.after_in_from(id, &rooms, max_records, max_bytes)
    }

    /// [`MessageStore::after_in`] with a span per room: of each room, only the records its
    /// [`RoomSpan`] covers (what a member is owed of a room they joined, or left, meanwhile).
    pub fn after_in_from(
        &self,
        id: u64,
        rooms: &[RoomSpan],
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Page> {
        let p = self.published.read();
        let (positions, cut) = p.after_positions(id, Some(rooms), max_records, max_bytes);
        let through = match positions.last() {
            Some(&last) if cut => p.index[last].id,
            _ => p.index.last().map_or(0, |e| e.id).max(id),
        };
        let plan = p.plan(&positions);
        drop(p);
        Ok(Page {
            records: plan.run()?,
            through,
        })
    }

    /// The newest `limit` records of every room with id < `id` (`id == 0`: the newest
    /// records), ascending.
    pub fn before(&self, id: u64, limit: usize) -> Result<Vec<Record>> {
        let p = self.published.read();
        let end = if id == 0 {
            p.index.len()
        } else {
            p.index.partition_point(|e| e.id < id)
        };
        let positions: Vec<usize> = (end.saturating_sub(limit)..end).collect();
        let plan = p.plan(&positions);
        drop(p);
        plan.run_owned()
    }

    /// [`MessageStore::before`] in one room: its history page.
    pub fn before_in(&self, room: &Room, id: u64, limit: usize) -> Result<Vec<Record>> {
        let p = self.published.read();
        let Some(n) = p.number(room) else {
            return Ok(Vec::new());
        };
        let list = &p.rooms[n as usize].positions;
        let end = if id == 0 {
            list.len()
        } else {
            list.partition_point(|&pos| p.index[pos].id < id)
        };
        let plan = p.plan(&list[end.saturating_sub(limit)..end]);
        drop(p);
        plan.run_owned()
    }

    /// The cursor from which `room`'s newest `limit` records below `id` (0: the newest) start:
    /// [`MessageStore::after_in_from`] from it, up to `id`, yields the page
    /// [`MessageStore::before_in`] does, a piece at a time (the server writes a large
    /// `History` page so, never holding all of it).
    pub fn before_start_in(&self, room: &Room, id: u64, limit: usize) -> u64 {
        let p = self.published.read();
        let Some(n) = p.number(room) else {
            return 0;
        };
        let list = &p.rooms[n as usize].positions;
        let end = if id == 0 {
            list.len()
        } else {
            list.partition_point(|&pos| p.index[pos].id < id)
        };
        match end.saturating_sub(limit) {
            0 => 0,
            start => p.index[list[start - 1]].id,
        }
    }

    /// The record with this id, if stored.
    pub fn get(&self, id: u64) -> Result<Option<Record>> {
        let p = self.published.read();
        let Ok(pos) = p.index.binary_search_by_key(&id, |e| e.id) else {
            return Ok(None);
        };
        let plan = p.plan(&[pos]);
        drop(p);
        Ok(plan.run_owned()?.pop())
    }

    /// The cursor `c` such that `after(c, ..)` yields the newest `n` records (0 when there are
    /// no more than `n`). The server uses it for history-on-join.
    pub fn last_n_start(&self, n: usize) -> u64 {
        let p = self.published.read();
        let len = p.index.len();
        if n >= len { 0 } else { p.index[len - n - 1].id }
    }

    /// [`MessageStore::last_n_start`] counting the records of `rooms` only: `after_in(c, rooms,
    /// ..)` yields their newest `n`.
    pub fn last_n_start_in(&self, rooms: &[Room], n: usize) -> u64 {
        if n == 0 {
            return self.newest_id();
        }
        let p = self.published.read();
        // The n-th newest of the rooms' records together: each room's newest n, merged.
        let mut ids: Vec<u64> = rooms
            .iter()
            .filter_map(|r| p.number(r))
            .flat_map(|k| {
                let list = &p.rooms[k as usize].positions;
                list[list.len().saturating_sub(n + 1)..]
                    .iter()
                    .map(|&pos| p.index[pos].id)
            })
            .collect();
        ids.sort_unstable();
        ids.dedup();
        if n >= ids.len() {
            0
        } else {
            ids[ids.len() - n - 1]
        }
    }
}

/// Reads and parses the lines in `offset..offset + len` of `file`; the first is line number
/// `first_line`.
pub(super) fn read_records(
    file: &File,
    path: &Path,
    first_line: u64,
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
            line_number: first_line + i as u64,
            reason,
        })?;
        out.push(record);
    }
    Ok(out)
}
