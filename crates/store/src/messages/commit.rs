//! The write side: appends get their id, timestamp and dedupe verdict under one small mutex and
//! queue; one appender at a time leads a group commit (msgids lines written and fsynced before
//! the records), publishes the batch to readers and wakes the rest. Also what a failed write or
//! fsync does to the store, and the fault points tests inject.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gc_protocol::types::{ClientMsgId, Record, Room, Timestamp, Username};
use parking_lot::MutexGuard;

use super::query::IndexEntry;
use super::{Appended, FsyncPolicy, MessageStore};
use crate::codec::{MAX_BODY_BYTES, encode_msgid, encode_record};
use crate::error::{Result, StoreError};
use crate::files;
use crate::msgids::{Dedupe, MsgKey};
use crate::private;

/// How long a new group-commit leader waits, at most, for the appenders of the last batch to
/// queue again (only when fewer than half of them have). Small beside an fsync pair (~350 µs on
/// the reference machine), and only paid when the load just dropped.
const GATHER_WAIT: Duration = Duration::from_micros(100);

/// An append waiting to be written.
#[derive(Debug)]
struct Pending {
    key: MsgKey,
    client_msg_id: ClientMsgId,
    record: Record,
}

/// Why a batch failed, shared by its appenders.
#[derive(Debug)]
struct FailInfo {
    action: &'static str,
    path: PathBuf,
    kind: io::ErrorKind,
    message: String,
}

impl FailInfo {
    fn new(action: &'static str, path: &Path, e: &io::Error) -> Self {
        Self {
            action,
            path: path.to_owned(),
            kind: e.kind(),
            message: e.to_string(),
        }
    }

    fn to_error(&self) -> StoreError {
        StoreError::io(
            self.action,
            &self.path,
            io::Error::new(self.kind, self.message.clone()),
        )
    }
}

struct CommitFailure {
    info: Arc<FailInfo>,
    /// The files' state is unknown: refuse later appends.
    fatal: bool,
}

/// The appenders' meeting point.
#[derive(Debug)]
pub(super) struct AppendState {
    next_id: u64,
    last_ts: Timestamp,
    /// Whether `next_id` may still be given (false once `u64::MAX` itself was).
    ids_left: bool,
    dedupe: Dedupe,
    /// Queued appends in id order.
    pending: Vec<Pending>,
    /// An appender is writing a batch.
    leader: bool,
    /// The leader is waiting for the queue to fill up (see [`GATHER_WAIT`]).
    gathering: bool,
    /// The size of the last batch written.
    last_batch: usize,
    /// Every id up to this one is settled: durable and published, or failed.
    committed: u64,
    /// Appends whose batch failed, until their appenders collect the error.
    failed_ids: HashMap<u64, Arc<FailInfo>>,
    /// Set when the store refuses appends for good.
    failed: Option<String>,
}

impl AppendState {
    /// The state of a store whose last record has `last_id` and `last_ts` (0 when empty).
    pub(super) fn new(last_id: u64, last_ts: Timestamp, dedupe: Dedupe) -> Self {
        Self {
            // After u64::MAX, ids are used up: append refuses (see there).
            next_id: last_id.saturating_add(1),
            ids_left: last_id < u64::MAX,
            last_ts,
            dedupe,
            pending: Vec::new(),
            leader: false,
            gathering: false,
            last_batch: 0,
            committed: last_id,
            failed_ids: HashMap::new(),
            failed: None,
        }
    }
}

/// One room's file as the leader writes it.
#[derive(Debug)]
pub(super) struct RoomFile {
    pub file: Arc<File>,
    pub path: PathBuf,
    /// The length of its durable (or, under `never`, written) lines.
    pub len: u64,
    /// This batch's lines for it.
    buf: Vec<u8>,
}

impl RoomFile {
    pub(super) fn new(file: Arc<File>, path: PathBuf, len: u64) -> Self {
        Self {
            file,
            path,
            len,
            buf: Vec::new(),
        }
    }
}

/// The leader's files' lengths and buffers.
#[derive(Debug)]
pub(super) struct Writer {
    msgids_len: u64,
    msgids_buf: Vec<u8>,
    /// Every room's file, by number (0: `#general`'s `database.db`).
    rooms: Vec<RoomFile>,
    numbers: HashMap<Room, u32>,
    /// Where rooms' files are made (`<data dir>/rooms`).
    rooms_dir: PathBuf,
    /// Something may have been written since the last fsync of every file: the next
    /// [`MessageStore::sync`] has work to do. True at open (whatever opening changed is synced
    /// once more at the end), false after a commit that fsynced what it wrote.
    pub(super) unsynced: bool,
}

impl Writer {
    /// `rooms` in number order, `#general` first.
    pub(super) fn new(rooms: Vec<(Room, RoomFile)>, msgids_len: u64, rooms_dir: PathBuf) -> Self {
        let numbers = rooms
            .iter()
            .enumerate()
            .map(|(n, (room, _))| (room.clone(), n as u32))
            .collect();
        Self {
            msgids_len,
            msgids_buf: Vec::new(),
            rooms: rooms.into_iter().map(|(_, f)| f).collect(),
            numbers,
            rooms_dir,
            unsynced: true,
        }
    }

    /// Every room file's handle and path (for [`MessageStore::sync`]).
    pub(super) fn files(&self) -> impl Iterator<Item = (&File, &Path)> {
        self.rooms.iter().map(|r| (&*r.file, r.path.as_path()))
    }
}

/// Makes `room`'s file in `dir` (and `dir` itself, the first time), durable before it is used:
/// a record is acknowledged only once the file holding it cannot vanish in a crash.
fn make_room_file(dir: &Path, room: &Room) -> Result<(PathBuf, File)> {
    if !dir.is_dir() {
        private::create_dirs(dir).map_err(|e| StoreError::io("make the directory", dir, e))?;
        files::sync_dir(files::parent_dir(dir))?;
    }
    let path = dir.join(format!("{}.db", room.file_stem()));
    let file = private::options()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .map_err(|e| StoreError::io("make", &path, e))?;
    files::sync_dir(dir)?;
    Ok((path, file))
}

/// A shared `flock` on `database.msgids` held while one batch is written (released on drop).
/// `db backup` takes it exclusively for a moment to read a consistent cut of every file.
struct BatchLock<'a>(Option<&'a File>);

impl<'a> BatchLock<'a> {
    fn take(file: &'a File, path: &Path) -> Self {
        match file.lock_shared() {
            Ok(()) => Self(Some(file)),
            Err(e) => {
                // Only a backup taken now loses its guarantee; the messages go on being stored.
                tracing::debug!(path = %path.display(), error = %e, "cannot take the batch lock");
                Self(None)
            }
        }
    }
}

impl Drop for BatchLock<'_> {
    fn drop(&mut self) {
        if let Some(file) = self.0 {
            let _ = file.unlock();
        }
    }
}

/// Places where tests inject I/O failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum Fault {
    MsgidsWrite,
    MsgidsSync,
    DbWrite,
    /// The write to the second or a later room file of a batch.
    LaterRoomWrite,
    DbSync,
    Truncate,
}

impl MessageStore {
    /// Stores a message from `username` unless this (user, client-msg-id) pair is already stored
    /// (users compared without case), and returns once it is as durable as the fsync policy
    /// promises. A known pair returns the first record's id and timestamp with `duplicate: true`
    /// and stores nothing; two concurrent appends of one pair store exactly one record.
    ///
    /// The record gets the next id and the current time, never earlier than the previous
    /// record's. It becomes visible to readers once durable, never before, and in id order.
    ///
    /// Errors: [`StoreError::TooLarge`] for a body over [`MAX_BODY_BYTES`]; [`StoreError::Io`]
    /// when writing failed (nothing was stored, and a retry may succeed); [`StoreError::Failed`]
    /// once the store refuses appends after an fsync failure.
    pub fn append(
        &self,
        username: &Username,
        client_msg_id: &ClientMsgId,
        body: &str,
    ) -> Result<Appended> {
        self.append_in(&Room::general(), username, client_msg_id, body)
    }

    /// [`MessageStore::append`] into `room` (its file is made at its first record). Ids are one
    /// sequence across all rooms; a (user, client-msg-id) pair is stored once whatever the room.
    pub fn append_in(
        &self,
        room: &Room,
        username: &Username,
        client_msg_id: &ClientMsgId,
        body: &str,
    ) -> Result<Appended> {
        let pending = self.prepare(room, username, client_msg_id, body)?;
        self.append_one(pending)
    }

    /// Stores several messages, waiting once: every new one joins the queue before the first
    /// commit, so one group commit can cover them all (a client pipelining a window of messages
    /// costs one pair of fsyncs, not one per message). Each item is treated exactly as
    /// [`MessageStore::append`] would treat it, in order; results come in the order of `items`.
    pub fn append_many(&self, items: &[(&Username, &ClientMsgId, &str)]) -> Vec<Result<Appended>> {
        let general = Room::general();
        let items: Vec<_> = items
            .iter()
            .map(|&(user, cmid, body)| (&general, user, cmid, body))
            .collect();
        self.append_many_in(&items)
    }

    /// [`MessageStore::append_many`] with each message's room.
    pub fn append_many_in(
        &self,
        items: &[(&Room, &Username, &ClientMsgId, &str)],
    ) -> Vec<Result<Appended>> {
        /// What became of an item while the state was locked.
        enum Slot {
            Queued(u64, Timestamp),
            /// Too large: refused before the lock was taken.
            Refused(StoreError),
            /// Everything else (a duplicate, an in-flight duplicate, a refusal) goes through
            /// `append_one` once this call's own records are settled.
            Single(Box<Pending>),
        }
        let prepared: Vec<Result<Pending>> = items
            .iter()
            .map(|(room, user, cmid, body)| self.prepare(room, user, cmid, body))
            .collect();
        let mut slots = Vec::with_capacity(items.len());
        let mut last_queued = None;
        let mut st = self.state.lock();
        for item in prepared {
            let slot = match item {
                Err(e) => Slot::Refused(e),
                Ok(p) if st.dedupe.get(p.key).is_some() || self.refusal(&st).is_some() => {
                    Slot::Single(Box::new(p))
                }
                Ok(p) => {
                    let (id, timestamp) = enqueue(&mut st, p);
                    last_queued = Some(id);
                    Slot::Queued(id, timestamp)
                }
            };
            slots.push(slot);
        }
        if let Some(last) = last_queued {
            self.settle(&mut st, last);
        }
        // Each item's answer now, or (Err) the append it still needs.
        let answers: Vec<Result<Result<Appended>, Box<Pending>>> = slots
            .into_iter()
            .map(|slot| match slot {
                Slot::Queued(id, timestamp) => Ok(self.outcome(&mut st, id, timestamp)),
                Slot::Refused(e) => Ok(Err(e)),
                Slot::Single(pending) => Err(pending),
            })
            .collect();
        drop(st);
        // This call's own records are settled, so a duplicate among them is answered at once.
        answers
            .into_iter()
            .map(|answer| answer.unwrap_or_else(|pending| self.append_one(*pending)))
            .collect()
    }

    /// Checks the body's size and allocates the append, before the state lock is taken.
    fn prepare(
        &self,
        room: &Room,
        username: &Username,
        client_msg_id: &ClientMsgId,
        body: &str,
    ) -> Result<Pending> {
        if body.len() > MAX_BODY_BYTES {
            return Err(StoreError::TooLarge {
                bytes: body.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        Ok(Pending {
            key: self.keys.key(username.as_str(), client_msg_id.as_str()),
            client_msg_id: client_msg_id.clone(),
            record: Record {
                room: room.clone(),
                id: 0,
                timestamp: Timestamp::default(),
                username: username.clone(),
                body: body.to_owned(),
            },
        })
    }

    /// One append, whatever the dedupe map says: a duplicate of a durable record is answered,
    /// one still in flight is waited for; otherwise it is queued and committed.
    fn append_one(&self, pending: Pending) -> Result<Appended> {
        let key = pending.key;
        let mut st = self.state.lock();
        while let Some(first) = st.dedupe.get(key) {
            if first <= st.committed {
                drop(st);
                if let Some(timestamp) = self.timestamp_of(first) {
                    return Ok(Appended {
                        id: first,
                        timestamp,
                        duplicate: true,
                    });
                }
                // Cannot happen (open drops entries without records); store it anew.
                st = self.state.lock();
                st.dedupe.remove(key, first);
                continue;
            }
            if let Some(cause) = &st.failed {
                return Err(self.failed_error(cause));
            }
            // The first append of this pair is in flight: wait for its outcome.
            self.settled.wait(&mut st);
        }
        if let Some(e) = self.refusal(&st) {
            return Err(e);
        }
        let (id, timestamp) = enqueue(&mut st, pending);
        self.settle(&mut st, id);
        self.outcome(&mut st, id, timestamp)
    }

    /// Why nothing can be queued, if so: the store refuses appends for good, or ids are used up.
    fn refusal(&self, st: &AppendState) -> Option<StoreError> {
        if let Some(cause) = &st.failed {
            return Some(self.failed_error(cause));
        }
        // Only once u64::MAX itself is given: no id is left.
        (!st.ids_left)
            .then(|| self.failed_error("every record id up to 18446744073709551615 is used"))
    }

    /// After queueing: returns once every id up to `last` is settled or the store failed,
    /// leading a commit whenever no one else is.
    fn settle(&self, st: &mut MutexGuard<'_, AppendState>, last: u64) {
        if st.gathering && st.pending.len() >= st.last_batch {
            self.arrivals.notify_one();
        }
        while st.committed < last && st.failed.is_none() {
            if st.leader {
                self.settled.wait(st);
            } else {
                self.lead(st);
            }
        }
    }

    /// What became of the queued append `id`, once [`Self::settle`] returned.
    fn outcome(&self, st: &mut AppendState, id: u64, timestamp: Timestamp) -> Result<Appended> {
        match st.failed_ids.remove(&id) {
            Some(info) => Err(info.to_error()),
            None if st.committed >= id => Ok(Appended {
                id,
                timestamp,
                duplicate: false,
            }),
            None => Err(self.failed_error(st.failed.as_deref().unwrap_or("not stored"))),
        }
    }

    /// Writes one batch of the queue as leader, then settles it and wakes everyone.
    fn lead(&self, st: &mut MutexGuard<'_, AppendState>) {
        st.leader = true;
        if self.config.fsync == FsyncPolicy::Batch && st.pending.len() <= st.last_batch / 2 {
            // The appenders of the last batch are probably on their way back with their next
            // messages (a thread per client appends, answers, then appends again). Writing
            // whoever came back first alone would make batches alternate between tiny and big
            // and halve throughput; wait a moment for the rest.
            st.gathering = true;
            let deadline = Instant::now() + GATHER_WAIT;
            while st.pending.len() < st.last_batch
                && !self.arrivals.wait_until(st, deadline).timed_out()
            {}
            st.gathering = false;
        }
        // `always` writes one append per fsync pair, by definition.
        let take = if self.config.fsync == FsyncPolicy::Always {
            st.pending.len().min(1)
        } else {
            st.pending.len()
        };
        let mut batch: Vec<Pending> = st.pending.drain(..take).collect();
        let Some(last_id) = batch.last().map(|p| p.record.id) else {
            st.leader = false;
            return;
        };
        st.last_batch = batch.len();
        let outcome = MutexGuard::unlocked(st, || self.commit(&mut batch));
        st.leader = false;
        st.committed = last_id;
        if let Err(failure) = outcome {
            for p in &batch {
                st.dedupe.remove(p.key, p.record.id);
                st.failed_ids.insert(p.record.id, Arc::clone(&failure.info));
            }
            if failure.fatal {
                let cause = failure.info.to_error().to_string();
                tracing::error!(path = %self.db_path.display(), %cause,
                    "the message store stops accepting messages");
                st.failed = Some(cause);
                let queued = std::mem::take(&mut st.pending);
                for p in &queued {
                    st.dedupe.remove(p.key, p.record.id);
                }
            }
        }
        self.settled.notify_all();
    }

    /// Writes `batch` (msgids first, then each room's records), fsyncs per policy, and
    /// publishes it.
    fn commit(&self, batch: &mut Vec<Pending>) -> Result<(), CommitFailure> {
        let mut guard = self.writer.lock();
        let w = &mut *guard;
        // `db backup` (another process) takes this lock exclusively for the moment it reads the
        // files' lengths: it then sees every file at a batch boundary, never half a batch.
        let _cut = BatchLock::take(&self.msgids, &self.msgids_path);
        w.msgids_buf.clear();
        let mut touched: Vec<u32> = Vec::new();
        let mut entries = Vec::with_capacity(batch.len());
        for p in batch.iter() {
            let r = &p.record;
            let n = match self.room_number(w, &r.room) {
                Ok(n) => n,
                // Nothing is written yet: the batch fails as a write would, and later ones go on.
                Err(e) => return Err(self.room_failure(w, &touched, e)),
            };
            encode_msgid(
                r.id,
                r.username.as_str(),
                p.client_msg_id.as_str(),
                &mut w.msgids_buf,
            );
            let file = &mut w.rooms[n as usize];
            if file.buf.is_empty() {
                touched.push(n);
            }
            let offset = file.len + file.buf.len() as u64;
            encode_record(r, &mut file.buf);
            let len = file.len + file.buf.len() as u64 - offset;
            entries.push(IndexEntry {
                id: r.id,
                offset,
                micros: r.timestamp.as_micros(),
                room: n,
                // A line is at most MAX_LINE_BYTES (1 MiB).
                len: u32::try_from(len).unwrap_or(u32::MAX),
            });
        }
        let sync = self.config.fsync != FsyncPolicy::Never;
        // From the first byte written until every file is fsynced.
        w.unsynced = true;

        // The msgids lines are durable before their records are written: a durable record
        // whose msgid was lost would let a client's retry store it twice.
        if let Err(e) = self.write_at(
            &self.msgids,
            &w.msgids_buf,
            w.msgids_len,
            Fault::MsgidsWrite,
        ) {
            return Err(self.undo(
                w,
                &touched,
                FailInfo::new("write to", &self.msgids_path, &e),
            ));
        }
        if sync && let Err(e) = self.sync_file(&self.msgids, Fault::MsgidsSync) {
            return Err(fatal(FailInfo::new("fsync", &self.msgids_path, &e)));
        }
        for (i, &n) in touched.iter().enumerate() {
            let f = &w.rooms[n as usize];
            let point = if i == 0 {
                Fault::DbWrite
            } else {
                Fault::LaterRoomWrite
            };
            if let Err(e) = self.write_at(&f.file, &f.buf, f.len, point) {
                let info = FailInfo::new("write to", &f.path, &e);
                return Err(self.undo(w, &touched, info));
            }
        }
        // Every file of the batch is durable before any of its records is published or
        // acknowledged: commit order stays id order across rooms.
        if sync {
            for &n in &touched {
                let f = &w.rooms[n as usize];
                if let Err(e) = self.sync_file(&f.file, Fault::DbSync) {
                    return Err(fatal(FailInfo::new("fsync", &f.path, &e)));
                }
            }
        }
        w.msgids_len += w.msgids_buf.len() as u64;
        for &n in &touched {
            let f = &mut w.rooms[n as usize];
            f.len += f.buf.len() as u64;
            f.buf.clear();
        }
        // Under `never` the writes wait for `sync`; otherwise every file was just fsynced.
        w.unsynced = !sync;

        // The records are wrapped before the readers' lock is taken: it is held only to publish.
        let records: Vec<Arc<Record>> = batch.drain(..).map(|p| Arc::new(p.record)).collect();
        self.published
            .write()
            .publish(&entries, records.into_iter(), self.config.tail_capacity);
        if let Some(last) = entries.last() {
            self.newest.store(last.id, Ordering::Release);
        }
        Ok(())
    }

    /// The number of `room`'s file, making the file if the room has none yet (and showing it to
    /// readers, still empty, so the leader's and the readers' numbers always agree).
    fn room_number(&self, w: &mut Writer, room: &Room) -> Result<u32> {
        if let Some(&n) = w.numbers.get(room) {
            return Ok(n);
        }
        let (path, file) = make_room_file(&w.rooms_dir, room)?;
        let file = Arc::new(file);
        let n = self
            .published
            .write()
            .add_room(room.clone(), path.clone(), Arc::clone(&file));
        debug_assert_eq!(n as usize, w.rooms.len());
        w.rooms.push(RoomFile::new(file, path, 0));
        w.numbers.insert(room.clone(), n);
        Ok(n)
    }

    /// A room's file could not be made before anything of the batch was written.
    fn room_failure(&self, w: &mut Writer, touched: &[u32], e: StoreError) -> CommitFailure {
        for &n in touched {
            w.rooms[n as usize].buf.clear();
        }
        let (action, path, kind, message) = match &e {
            StoreError::Io {
                action,
                path,
                source,
            } => (*action, path.clone(), source.kind(), source.to_string()),
            other => (
                "make",
                w.rooms_dir.clone(),
                io::ErrorKind::Other,
                other.to_string(),
            ),
        };
        tracing::warn!(path = %path.display(), error = %message,
            "cannot make a room's file; the messages were not stored");
        CommitFailure {
            info: Arc::new(FailInfo {
                action,
                path,
                kind,
                message,
            }),
            fatal: false,
        }
    }

    /// After a failed write: cut every file of the batch back to its last good length, so no
    /// half line is left for later appends to follow. Fatal if that fails too.
    fn undo(&self, w: &mut Writer, touched: &[u32], info: FailInfo) -> CommitFailure {
        let sync = self.config.fsync != FsyncPolicy::Never;
        let mut undone = Ok(());
        for &n in touched {
            let f = &mut w.rooms[n as usize];
            f.buf.clear();
            if undone.is_ok() {
                undone = self.truncate(&f.file, f.len);
            }
        }
        let undone = undone
            .and_then(|()| self.truncate(&self.msgids, w.msgids_len))
            .and_then(|()| {
                if sync {
                    self.msgids.sync_data()
                } else {
                    Ok(())
                }
            });
        match undone {
            Ok(()) => {
                tracing::warn!(path = %info.path.display(), error = %info.message,
                    "a write to the message store failed; the messages were not stored");
                CommitFailure {
                    info: Arc::new(info),
                    fatal: false,
                }
            }
            Err(e) => {
                tracing::error!(error = %e, "could not undo a failed write");
                fatal(info)
            }
        }
    }

    fn write_at(&self, file: &File, buf: &[u8], offset: u64, point: Fault) -> io::Result<()> {
        if self.injected(point) {
            // Like a disk filling up mid-write: half the bytes land.
            file.write_all_at(&buf[..buf.len() / 2], offset)?;
            return Err(io::Error::new(io::ErrorKind::StorageFull, "injected fault"));
        }
        file.write_all_at(buf, offset)
    }

    fn sync_file(&self, file: &File, point: Fault) -> io::Result<()> {
        if self.injected(point) {
            return Err(io::Error::other("injected fsync fault"));
        }
        file.sync_data()
    }

    fn truncate(&self, file: &File, len: u64) -> io::Result<()> {
        if self.injected(Fault::Truncate) {
            return Err(io::Error::other("injected truncate fault"));
        }
        file.set_len(len)
    }

    #[cfg(test)]
    fn injected(&self, point: Fault) -> bool {
        let mut faults = self.faults.lock();
        match faults.iter().position(|&f| f == point) {
            Some(i) => {
                faults.remove(i);
                true
            }
            None => false,
        }
    }

    #[cfg(not(test))]
    #[inline]
    fn injected(&self, _point: Fault) -> bool {
        false
    }

    /// Makes the next I/O at `point` fail (tests only).
    #[cfg(test)]
    pub(super) fn inject(&self, point: Fault) {
        self.faults.lock().push(point);
    }

    fn failed_error(&self, cause: &str) -> StoreError {
        StoreError::Failed {
            path: self.db_path.clone(),
            cause: cause.to_owned(),
        }
    }

    /// The id and timestamp of the durable record stored for this (user, client-msg-id) pair, if
    /// it is among the newest `msgid_window` remembered. An append still in flight is not shown.
    pub fn lookup_msgid(
        &self,
        username: &Username,
        client_msg_id: &ClientMsgId,
    ) -> Option<(u64, Timestamp)> {
        let key = self.keys.key(username.as_str(), client_msg_id.as_str());
        let id = {
            let st = self.state.lock();
            st.dedupe.get(key).filter(|&id| id <= st.committed)?
        };
        self.timestamp_of(id).map(|ts| (id, ts))
    }
}

/// Gives `pending` the next id and a timestamp no earlier than the last record's, enters it in
/// the dedupe map and queues it. The caller has checked that the pair is new and the store takes
/// appends.
fn enqueue(st: &mut AppendState, mut pending: Pending) -> (u64, Timestamp) {
    let id = st.next_id;
    if id == u64::MAX {
        st.ids_left = false;
    } else {
        st.next_id += 1;
    }
    let timestamp = Timestamp::now().max(st.last_ts);
    st.last_ts = timestamp;
    pending.record.id = id;
    pending.record.timestamp = timestamp;
    st.dedupe.insert(pending.key, id);
    st.pending.push(pending);
    (id, timestamp)
}

fn fatal(info: FailInfo) -> CommitFailure {
    CommitFailure {
        info: Arc::new(info),
        fatal: true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::messages::StoreConfig;

    fn user(n: &str) -> Username {
        Username::new(n).unwrap()
    }
    fn cmid(n: &str) -> ClientMsgId {
        ClientMsgId::new(n).unwrap()
    }
    fn open(dir: &Path, fsync: FsyncPolicy) -> MessageStore {
        let config = StoreConfig {
            fsync,
            tail_capacity: 4,
            ..StoreConfig::default()
        };
        MessageStore::open(dir, config).unwrap().0
    }

    #[test]
    fn a_far_future_timestamp_is_reported_and_a_sane_one_is_not() {
        let dir = tempfile::tempdir().unwrap();
        let future = Timestamp::now().as_secs() + 86_400 * 365;
        std::fs::write(
            dir.path().join("database.db"),
            format!("1;1700000000;alice;old\n2;{future};alice;from the future\n"),
        )
        .unwrap();
        let (s, report) = MessageStore::open(dir.path(), StoreConfig::default()).unwrap();
        let ahead = report.newest_ahead.expect("reported");
        assert!(ahead.as_secs() > 86_400 * 364, "{ahead:?}");
        // Never backwards: the next record gets that timestamp (the warning says so).
        let next = s.append(&user("bob"), &cmid("n"), "now").unwrap();
        assert_eq!(next.timestamp.as_secs(), future);
        drop(s);
        let dir = tempfile::tempdir().unwrap();
        let (s, report) = MessageStore::open(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!(report.newest_ahead, None);
        s.append(&user("bob"), &cmid("n"), "now").unwrap();
        drop(s);
        let (_, report) = MessageStore::open(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!(report.newest_ahead, None);
    }

    #[test]
    fn the_last_id_u64_max_is_given_then_appends_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("database.db"),
            format!("{};1700000000;alice;almost full\n", u64::MAX - 1),
        )
        .unwrap();
        let s = open(dir.path(), FsyncPolicy::Batch);
        let last = s
            .append(&user("alice"), &cmid("a"), "the last one")
            .unwrap();
        assert_eq!(last.id, u64::MAX);
        let e = s
            .append(&user("alice"), &cmid("b"), "one too many")
            .unwrap_err();
        assert!(e.to_string().contains("is used"), "{e}");
        assert_eq!(s.newest_id(), u64::MAX);
    }

    #[test]
    fn failed_write_is_undone_and_store_continues() {
        for (fault, policy) in [
            (Fault::DbWrite, FsyncPolicy::Batch),
            (Fault::MsgidsWrite, FsyncPolicy::Batch),
            (Fault::DbWrite, FsyncPolicy::Never),
            (Fault::DbWrite, FsyncPolicy::Always),
        ] {
            let dir = tempfile::tempdir().unwrap();
            let s = open(dir.path(), policy);
            let a = s.append(&user("a"), &cmid("m1"), "one").unwrap();
            s.inject(fault);
            let err = s.append(&user("a"), &cmid("m2"), "two").unwrap_err();
            assert!(matches!(err, StoreError::Io { .. }), "{err}");
            assert!(err.to_string().contains("injected fault"), "{err}");
            assert_eq!(s.newest_id(), a.id);
            assert_eq!(s.lookup_msgid(&user("a"), &cmid("m2")), None);
            // A retry stores it, with a fresh id (the failed one is never used).
            let b = s.append(&user("a"), &cmid("m2"), "two").unwrap();
            assert!(!b.duplicate);
            assert_eq!(b.id, a.id + 2);
            drop(s);
            let db = std::fs::read_to_string(dir.path().join("database.db")).unwrap();
            assert_eq!(db.lines().count(), 2, "{db:?}");
            assert!(db.ends_with(";a;two\n"));
            let ids = std::fs::read_to_string(dir.path().join("database.msgids")).unwrap();
            assert_eq!(ids, format!("1;a;m1\n3;a;m2\n"));
            let (s, rep) = MessageStore::open(dir.path(), StoreConfig::default()).unwrap();
            assert_eq!(
                (rep.records, rep.torn_tail, rep.msgids.rewritten),
                (2, None, false)
            );
            assert_eq!(
                s.lookup_msgid(&user("A"), &cmid("m2")).map(|x| x.0),
                Some(3)
            );
        }
    }

    #[test]
    fn a_failed_write_to_one_room_undoes_the_whole_batch() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), FsyncPolicy::Batch);
        let dev = Room::new("#dev").unwrap();
        let general = Room::general();
        s.append_in(&dev, &user("a"), &cmid("m0"), "zero").unwrap();
        // One batch for #general and #dev; the second file's write fails half way.
        s.inject(Fault::LaterRoomWrite);
        let results = s.append_many_in(&[
            (&general, &user("a"), &cmid("m1"), "one"),
            (&dev, &user("a"), &cmid("m2"), "two"),
        ]);
        assert!(results.iter().all(|r| r.is_err()), "{results:?}");
        assert_eq!(s.newest_id(), 1);
        // Both files are back to their last good length; the store goes on.
        let ok = s.append_in(&dev, &user("a"), &cmid("m2"), "two").unwrap();
        assert_eq!(ok.id, 4);
        drop(s);
        let dev_file = std::fs::read_to_string(dir.path().join("rooms/dev.db")).unwrap();
        assert_eq!(dev_file.lines().count(), 2, "{dev_file:?}");
        assert!(dev_file.ends_with(";a;two\n"));
        let general_file = std::fs::read_to_string(dir.path().join("database.db")).unwrap();
        assert_eq!(general_file, "");
        let (s, rep) = MessageStore::open(dir.path(), StoreConfig::default()).unwrap();
        assert_eq!((rep.records, rep.torn_tail), (2, None));
        assert_eq!(s.after(0, 10, u64::MAX).unwrap().len(), 2);
    }

    #[test]
    fn failed_fsync_stops_appends_but_not_reads() {
        for fault in [Fault::DbSync, Fault::MsgidsSync] {
            let dir = tempfile::tempdir().unwrap();
            let s = open(dir.path(), FsyncPolicy::Batch);
            s.append(&user("a"), &cmid("m1"), "one").unwrap();
            s.inject(fault);
            let err = s.append(&user("a"), &cmid("m2"), "two").unwrap_err();
            assert!(
                matches!(
                    err,
                    StoreError::Io {
                        action: "fsync",
                        ..
                    }
                ),
                "{err}"
            );
            let err = s.append(&user("a"), &cmid("m3"), "three").unwrap_err();
            assert!(matches!(err, StoreError::Failed { .. }), "{err}");
            assert!(err.to_string().contains("restart gc-server"), "{err}");
            // A duplicate of a durable record is still answered.
            assert!(s.append(&user("a"), &cmid("m1"), "one").unwrap().duplicate);
            assert_eq!(s.newest_id(), 1);
            assert_eq!(s.after(0, 10, u64::MAX).unwrap().len(), 1);
        }
    }

    #[test]
    fn failed_undo_is_fatal() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), FsyncPolicy::Batch);
        s.inject(Fault::DbWrite);
        s.inject(Fault::Truncate);
        assert!(matches!(
            s.append(&user("a"), &cmid("m1"), "x"),
            Err(StoreError::Io { .. })
        ));
        assert!(matches!(
            s.append(&user("a"), &cmid("m2"), "y"),
            Err(StoreError::Failed { .. })
        ));
        drop(s);
        // The half line left behind is a torn tail on reopen.
        let (s, rep) = MessageStore::open(dir.path(), StoreConfig::default()).unwrap();
        assert!(rep.torn_tail.is_some());
        assert_eq!(s.len(), 0);
        assert!(s.append(&user("a"), &cmid("m1"), "x").is_ok());
    }

    #[test]
    fn too_large_body_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let s = open(dir.path(), FsyncPolicy::Never);
        let body = "x".repeat(MAX_BODY_BYTES + 1);
        assert!(matches!(
            s.append(&user("a"), &cmid("m"), &body),
            Err(StoreError::TooLarge { .. })
        ));
        assert!(s.append(&user("a"), &cmid("m"), &body[1..]).is_ok());
    }
}
