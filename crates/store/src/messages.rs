//! The server's message store: `database.db` (records) and `database.msgids` (dedupe), with
//! group commit, an id → offset index and an in-memory tail.

use std::collections::{HashMap, VecDeque};
use std::fmt;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use gc_protocol::types::{ClientMsgId, Record, Timestamp, Username};
use parking_lot::{Condvar, Mutex, MutexGuard, RwLock};

use crate::codec::{
    MAX_BODY_BYTES, RecordFields, encode_msgid, encode_record, parse_record, split_record,
};
use crate::error::{LineError, Result, StoreError};
use crate::files::{self, FaultyLine, Line, LineReader};
use crate::lock::DataDirLock;
use crate::msgids::{self, Dedupe, KeyHasher, MSGIDS_FILE, MsgKey, MsgidsReport};

/// When the store fsyncs.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum FsyncPolicy {
    /// Every append fsyncs on its own (its msgids line, then its record) before it returns.
    Always,
    /// Group commit: concurrent appends share one fsync of each file; each returns after the
    /// fsync that covers it. As safe as `Always`, and far faster under load.
    #[default]
    Batch,
    /// Never fsync (except in [`MessageStore::sync`]): an acknowledged append survives a crash of
    /// gc-server but not of the machine.
    Never,
}

impl FsyncPolicy {
    /// The policy's name as written in configuration: `always`, `batch` or `never`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Batch => "batch",
            Self::Never => "never",
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// The text was not `always`, `batch` or `never`.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown fsync policy {0:?}: use always, batch or never")]
pub struct ParseFsyncPolicyError(pub String);

impl FromStr for FsyncPolicy {
    type Err = ParseFsyncPolicyError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "batch" => Ok(Self::Batch),
            "never" => Ok(Self::Never),
            other => Err(ParseFsyncPolicyError(other.to_owned())),
        }
    }
}

/// How a [`MessageStore`] behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoreConfig {
    /// When to fsync. Default [`FsyncPolicy::Batch`].
    pub fsync: FsyncPolicy,
    /// How many of the newest records to keep in memory for fast delivery. Default 10,000.
    pub tail_capacity: usize,
    /// How many of the newest (user, client-msg-id) pairs to remember for dedupe. Default
    /// 1,000,000. `database.msgids` is compacted to this many on open once it holds twice as many.
    pub msgid_window: usize,
}

impl Default for StoreConfig {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::Batch,
            tail_capacity: 10_000,
            msgid_window: 1_000_000,
        }
    }
}

/// What [`MessageStore::open`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OpenReport {
    /// Valid records in `database.db`.
    pub records: usize,
    /// The lowest id (0 when empty).
    pub first_id: u64,
    /// The highest id (0 when empty); the next append gets a greater one.
    pub last_id: u64,
    /// The last line was torn or invalid (a crash mid-write): it was appended to
    /// `database.db.corrupt` and cut from `database.db`.
    pub torn_tail: Option<FaultyLine>,
    /// Whether timestamps never decrease along ids. When not, [`MessageStore::range_time`] scans
    /// the in-memory index instead of binary-searching it.
    pub timestamps_monotonic: bool,
    /// What was found in `database.msgids`.
    pub msgids: MsgidsReport,
    /// How long opening took.
    pub elapsed: Duration,
}

/// The outcome of [`MessageStore::append`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Appended {
    /// The record's id.
    pub id: u64,
    /// The record's timestamp (the stored one: send it in `Thx`).
    pub timestamp: Timestamp,
    /// The (user, client-msg-id) pair was already stored: this is the first record's id and
    /// timestamp, and nothing new was stored.
    pub duplicate: bool,
}

/// How long a new group-commit leader waits, at most, for the appenders of the last batch to
/// queue again (only when fewer than half of them have). Small beside an fsync pair (~350 µs on
/// the reference machine), and only paid when the load just dropped.
const GATHER_WAIT: Duration = Duration::from_micros(100);

/// One record's place in `database.db`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct IndexEntry {
    pub id: u64,
    pub offset: u64,
    pub micros: u64,
}

/// What readers see: only durable records, in id order.
#[derive(Debug)]
struct Published {
    index: Vec<IndexEntry>,
    /// The newest records (at most `tail_capacity`), matching the end of `index`.
    tail: VecDeque<Record>,
    /// Length of `database.db` covered by `index`.
    end: u64,
    monotonic: bool,
}

impl Published {
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
        Plan::Read(vec![(start, offset, self.line_end(end - 1) - offset)])
    }

    /// How to fetch the records at `positions` (ascending).
    fn plan_scattered(&self, positions: &[usize]) -> Plan {
        let ts = self.tail_start();
        if positions.first().is_some_and(|&p| p >= ts) {
            return Plan::Done(
                positions
                    .iter()
                    .map(|&p| self.tail[p - ts].clone())
                    .collect(),
            );
        }
        let mut ranges: Vec<(usize, u64, u64)> = Vec::new();
        for &p in positions {
            let (offset, len) = (self.index[p].offset, self.line_len(p));
            match ranges.last_mut() {
                Some(last) if last.1 + last.2 == offset => last.2 += len,
                _ => ranges.push((p, offset, len)),
            }
        }
        Plan::Read(ranges)
    }
}

/// Records to return, or file ranges (first index position, offset, length) to read them from.
enum Plan {
    Done(Vec<Record>),
    Read(Vec<(usize, u64, u64)>),
}

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
struct AppendState {
    next_id: u64,
    last_ts: Timestamp,
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

/// The leader's files' lengths and buffers.
#[derive(Debug)]
struct Writer {
    db_len: u64,
    msgids_len: u64,
    msgids_buf: Vec<u8>,
    db_buf: Vec<u8>,
}

/// Places where tests inject I/O failures.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fault {
    MsgidsWrite,
    MsgidsSync,
    DbWrite,
    DbSync,
    Truncate,
}

/// The server's message store: `database.db` and `database.msgids` in a data dir, with the
/// data-dir lock held while it is open. `Send + Sync`: share it with `Arc`.
///
/// # Concurrency
///
/// Every method takes `&self`. Appends meet in one small mutex (`state`): there each gets its id
/// and timestamp, is checked against the dedupe map and queued. One appender at a time is the
/// *leader*: it takes the queue, writes and fsyncs outside the mutex, publishes the records to
/// readers, and wakes the others (a condvar). Readers use a separate read-write lock holding the
/// index and the tail, and never wait for a disk write: a leader takes it only briefly to publish.
///
/// Under [`FsyncPolicy::Batch`] the leader takes everything queued (group commit): one write and
/// one fsync of `database.msgids`, then one write and one fsync of `database.db`, for the whole
/// batch. A new leader whose queue holds at most half as many appends as the last batch waits up
/// to 100 µs for more, since the last batch's appenders are usually about to queue again.
///
/// # Failures
///
/// A failed *write* (say, a full disk) is undone: both files are truncated back to their last
/// good length, the batch's appenders get the error, their ids are never used (ids may skip, but
/// never repeat), and later appends go on normally. A failed *fsync*, or a failed undo, leaves the
/// files' state unknown (after a failed fsync the kernel may have dropped the dirty pages), so the
/// store then refuses every later append with [`StoreError::Failed`]; reads go on. Restarting
/// revalidates the files. Nothing is ever acknowledged or shown to readers unless it is durable as
/// the fsync policy promises.
#[derive(Debug)]
pub struct MessageStore {
    db_path: PathBuf,
    msgids_path: PathBuf,
    config: StoreConfig,
    /// Holds the data-dir lock and the open `database.db`.
    lock: DataDirLock,
    msgids: File,
    keys: KeyHasher,
    state: Mutex<AppendState>,
    settled: Condvar,
    /// Wakes a gathering leader once the queue is full enough.
    arrivals: Condvar,
    writer: Mutex<Writer>,
    published: RwLock<Published>,
    newest: AtomicU64,
    #[cfg(test)]
    faults: Mutex<Vec<Fault>>,
}

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
    monotonic: bool,
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
    let mut monotonic = true;
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
                let micros = f.timestamp.as_micros();
                monotonic &= index.last().is_none_or(|e| e.micros <= micros);
                index.push(IndexEntry {
                    id: f.id,
                    offset: line.offset,
                    micros,
                });
                end = line.offset + line.len;
            }
            Err(reason) => bad = Some(moved(line, reason)),
        }
        Ok(())
    })?;
    index.shrink_to_fit();
    Ok(DbScan {
        index,
        monotonic,
        bad,
        end,
    })
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
        let DbScan {
            index,
            monotonic,
            bad,
            end,
        } = db_scan?;

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

        // Only the tail is built into records; the rest stays on disk behind the index.
        let tail_len = index.len().min(config.tail_capacity);
        let mut tail = VecDeque::with_capacity(config.tail_capacity.min(1 << 20));
        if tail_len > 0 {
            let first = index.len() - tail_len;
            let offset = index[first].offset;
            tail.extend(read_records(file, &db_path, first, offset, end - offset)?);
        }

        let msgids::Loaded {
            file: msgids,
            len: msgids_len,
            entries,
            report: msgids_report,
        } = msgids::finish(&msgids_path, msgids_scan?, &index, config.msgid_window)?;
        let dedupe = Dedupe::new(config.msgid_window, entries);

        let last = index.last().copied();
        let last_id = last.map_or(0, |e| e.id);
        let mut report = OpenReport {
            records: index.len(),
            first_id: index.first().map_or(0, |e| e.id),
            last_id,
            torn_tail: bad,
            timestamps_monotonic: monotonic,
            msgids: msgids_report,
            elapsed: Duration::ZERO,
        };
        let store = Self {
            msgids_path,
            config,
            msgids,
            keys,
            state: Mutex::new(AppendState {
                // At u64::MAX, ids are used up: append refuses (see there).
                next_id: last_id.saturating_add(1),
                last_ts: Timestamp::from_micros(last.map_or(0, |e| e.micros)),
                dedupe,
                pending: Vec::new(),
                leader: false,
                gathering: false,
                last_batch: 0,
                committed: last_id,
                failed_ids: HashMap::new(),
                failed: None,
            }),
            settled: Condvar::new(),
            arrivals: Condvar::new(),
            writer: Mutex::new(Writer {
                db_len: end,
                msgids_len,
                msgids_buf: Vec::new(),
                db_buf: Vec::new(),
            }),
            published: RwLock::new(Published {
                index,
                tail,
                end,
                monotonic,
            }),
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

    /// The path of `database.db`.
    pub fn path(&self) -> &Path {
        &self.db_path
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    fn db(&self) -> &File {
        self.lock.file()
    }

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
        if body.len() > MAX_BODY_BYTES {
            return Err(StoreError::TooLarge {
                bytes: body.len(),
                limit: MAX_BODY_BYTES,
            });
        }
        let key = self.keys.key(username.as_str(), client_msg_id.as_str());
        // Allocate before taking the lock.
        let mut pending = Pending {
            key,
            client_msg_id: client_msg_id.clone(),
            record: Record {
                id: 0,
                timestamp: Timestamp::default(),
                username: username.clone(),
                body: body.to_owned(),
            },
        };

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
        if let Some(cause) = &st.failed {
            return Err(self.failed_error(cause));
        }
        let id = st.next_id;
        if id == u64::MAX {
            // Only a file whose last id is u64::MAX gets here; no id is left to give.
            return Err(self.failed_error("every record id up to 18446744073709551615 is used"));
        }
        st.next_id += 1;
        let timestamp = Timestamp::now().max(st.last_ts);
        st.last_ts = timestamp;
        pending.record.id = id;
        pending.record.timestamp = timestamp;
        st.dedupe.insert(key, id);
        st.pending.push(pending);
        if st.gathering && st.pending.len() >= st.last_batch {
            self.arrivals.notify_one();
        }

        loop {
            if st.committed >= id {
                return match st.failed_ids.remove(&id) {
                    Some(info) => Err(info.to_error()),
                    None => Ok(Appended {
                        id,
                        timestamp,
                        duplicate: false,
                    }),
                };
            }
            if let Some(cause) = &st.failed {
                return Err(self.failed_error(cause));
            }
            if st.leader {
                self.settled.wait(&mut st);
                continue;
            }
            self.lead(&mut st);
        }
    }

    /// Stores several messages, waiting once: every new one joins the queue before the first
    /// commit, so one group commit can cover them all (a client pipelining a window of messages
    /// costs one pair of fsyncs, not one per message). Each item is treated exactly as
    /// [`MessageStore::append`] would treat it, in order; results come in the order of `items`.
    pub fn append_many(&self, items: &[(&Username, &ClientMsgId, &str)]) -> Vec<Result<Appended>> {
        /// What became of an item while the state was locked.
        enum Slot {
            Queued(u64, Timestamp),
            /// Everything else (a duplicate, an in-flight duplicate, a refusal) goes through
            /// `append` once this call's own records are settled.
            Single,
        }
        let mut slots = Vec::with_capacity(items.len());
        let mut last_queued = None;
        let mut st = self.state.lock();
        for (user, cmid, body) in items {
            let key = self.keys.key(user.as_str(), cmid.as_str());
            if body.len() > MAX_BODY_BYTES
                || st.failed.is_some()
                || st.dedupe.get(key).is_some()
                || st.next_id == u64::MAX
            {
                slots.push(Slot::Single);
                continue;
            }
            let id = st.next_id;
            st.next_id += 1;
            let timestamp = Timestamp::now().max(st.last_ts);
            st.last_ts = timestamp;
            st.dedupe.insert(key, id);
            st.pending.push(Pending {
                key,
                client_msg_id: (*cmid).clone(),
                record: Record {
                    id,
                    timestamp,
                    username: (*user).clone(),
                    body: (*body).to_owned(),
                },
            });
            slots.push(Slot::Queued(id, timestamp));
            last_queued = Some(id);
        }
        if let Some(last) = last_queued {
            if st.gathering && st.pending.len() >= st.last_batch {
                self.arrivals.notify_one();
            }
            while st.committed < last && st.failed.is_none() {
                if st.leader {
                    self.settled.wait(&mut st);
                } else {
                    self.lead(&mut st);
                }
            }
        }
        let mut out: Vec<Option<Result<Appended>>> = slots
            .iter()
            .map(|slot| match *slot {
                Slot::Queued(id, timestamp) => Some(match st.failed_ids.remove(&id) {
                    Some(info) => Err(info.to_error()),
                    None if st.committed >= id => Ok(Appended {
                        id,
                        timestamp,
                        duplicate: false,
                    }),
                    None => Err(self.failed_error(st.failed.as_deref().unwrap_or("not stored"))),
                }),
                Slot::Single => None,
            })
            .collect();
        drop(st);
        // This call's own records are settled, so a duplicate among them is answered at once.
        for ((user, cmid, body), result) in items.iter().zip(&mut out) {
            if result.is_none() {
                *result = Some(self.append(user, cmid, body));
            }
        }
        out.into_iter().flatten().collect()
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

    /// Writes `batch` (msgids first, then records), fsyncs per policy, and publishes it.
    fn commit(&self, batch: &mut Vec<Pending>) -> Result<(), CommitFailure> {
        let mut guard = self.writer.lock();
        let w = &mut *guard;
        w.msgids_buf.clear();
        w.db_buf.clear();
        let mut entries = Vec::with_capacity(batch.len());
        for p in batch.iter() {
            let r = &p.record;
            encode_msgid(
                r.id,
                r.username.as_str(),
                p.client_msg_id.as_str(),
                &mut w.msgids_buf,
            );
            entries.push(IndexEntry {
                id: r.id,
                offset: w.db_len + w.db_buf.len() as u64,
                micros: r.timestamp.as_micros(),
            });
            encode_record(r, &mut w.db_buf);
        }
        let sync = self.config.fsync != FsyncPolicy::Never;

        // The msgids lines are durable before their records are written: a durable record
        // whose msgid was lost would let a client's retry store it twice.
        if let Err(e) = self.write_at(
            &self.msgids,
            &w.msgids_buf,
            w.msgids_len,
            Fault::MsgidsWrite,
        ) {
            return Err(self.undo(w, FailInfo::new("write to", &self.msgids_path, &e)));
        }
        if sync && let Err(e) = self.sync_file(&self.msgids, Fault::MsgidsSync) {
            return Err(fatal(FailInfo::new("fsync", &self.msgids_path, &e)));
        }
        if let Err(e) = self.write_at(self.db(), &w.db_buf, w.db_len, Fault::DbWrite) {
            return Err(self.undo(w, FailInfo::new("write to", &self.db_path, &e)));
        }
        if sync && let Err(e) = self.sync_file(self.db(), Fault::DbSync) {
            return Err(fatal(FailInfo::new("fsync", &self.db_path, &e)));
        }
        w.msgids_len += w.msgids_buf.len() as u64;
        w.db_len += w.db_buf.len() as u64;

        let mut p = self.published.write();
        p.index.extend_from_slice(&entries);
        p.end = w.db_len;
        let cap = self.config.tail_capacity;
        for pending in batch.drain(..) {
            if cap > 0 {
                if p.tail.len() == cap {
                    p.tail.pop_front();
                }
                p.tail.push_back(pending.record);
            }
        }
        if let Some(last) = entries.last() {
            self.newest.store(last.id, Ordering::Release);
        }
        Ok(())
    }

    /// After a failed write: cut both files back to their last good length, so no half line is
    /// left for later appends to follow. Fatal if that fails too.
    fn undo(&self, w: &Writer, info: FailInfo) -> CommitFailure {
        let sync = self.config.fsync != FsyncPolicy::Never;
        let undone = self
            .truncate(self.db(), w.db_len)
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
    pub(crate) fn inject(&self, point: Fault) {
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

    fn timestamp_of(&self, id: u64) -> Option<Timestamp> {
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

    /// The first `limit` records with `from <= timestamp <= to`, ascending.
    pub fn range_time(&self, from: Timestamp, to: Timestamp, limit: usize) -> Result<Vec<Record>> {
        let (from, to) = (from.as_micros(), to.as_micros());
        let p = self.published.read();
        let plan = if from > to || limit == 0 {
            Plan::Done(Vec::new())
        } else if p.monotonic {
            let start = p.index.partition_point(|e| e.micros < from);
            let end = p.index[start..].partition_point(|e| e.micros <= to) + start;
            p.plan(start, end.min(start.saturating_add(limit)))
        } else {
            // The file's timestamps went backwards somewhere: binary search would be wrong.
            let positions: Vec<usize> = (0..p.index.len())
                .filter(|&i| (from..=to).contains(&p.index[i].micros))
                .take(limit)
                .collect();
            p.plan_scattered(&positions)
        };
        drop(p);
        self.run(plan)
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
            Plan::Read(ranges) => {
                let mut out = Vec::new();
                for (first, offset, len) in ranges {
                    out.extend(read_records(self.db(), &self.db_path, first, offset, len)?);
                }
                Ok(out)
            }
        }
    }

    /// Fsyncs both files. With [`FsyncPolicy::Never`] this is the only fsync; call it at shutdown.
    pub fn sync(&self) -> Result<()> {
        let _w = self.writer.lock();
        self.msgids
            .sync_all()
            .map_err(|e| StoreError::io("fsync", &self.msgids_path, e))?;
        self.db()
            .sync_all()
            .map_err(|e| StoreError::io("fsync", &self.db_path, e))
    }

    /// Fsyncs and closes the store, releasing the data-dir lock.
    pub fn close(self) -> Result<()> {
        self.sync()
    }
}

impl Drop for MessageStore {
    fn drop(&mut self) {
        if let Err(e) = self.sync() {
            tracing::error!(error = %e, "could not fsync the message store while closing it");
        }
    }
}

fn fatal(info: FailInfo) -> CommitFailure {
    CommitFailure {
        info: Arc::new(info),
        fatal: true,
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

#[cfg(test)]
mod tests {
    use super::*;

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
    fn policy_text_forms() {
        for p in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
            assert_eq!(p.to_string().parse::<FsyncPolicy>(), Ok(p));
        }
        assert_eq!(FsyncPolicy::default(), FsyncPolicy::Batch);
        let e = "sometimes".parse::<FsyncPolicy>().unwrap_err();
        assert!(e.to_string().contains("always, batch or never"));
    }

    #[test]
    fn store_is_send_and_sync() {
        fn check<T: Send + Sync>() {}
        check::<MessageStore>();
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
