//! The server's message store: `database.db` (`#general`'s records), `rooms/<name>.db` (each
//! other room's) and `database.msgids` (dedupe), with group commit across them, one id sequence,
//! an id → (room, offset) index and an in-memory tail.
//!
//! This file holds the public types, the [`MessageStore`] itself and its life cycle (sync,
//! close). The work is split by concern:
//! - `open`: opening and recovery (validating scan, torn tail, building the index and dedupe map);
//! - `commit`: appends and group commit, and what a failed write or fsync does;
//! - `query`: the index and tail readers see, and the queries on them.

mod commit;
mod open;
mod query;

use std::fmt;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::str::FromStr;
use std::sync::atomic::AtomicU64;
use std::time::Duration;

use gc_protocol::types::Timestamp;
use parking_lot::{Condvar, Mutex, RwLock};

use crate::error::{Result, StoreError};
use crate::files::FaultyLine;
use crate::lock::DataDirLock;
use crate::msgids::{KeyHasher, MsgidsReport};
#[cfg(test)]
use commit::Fault;
use commit::{AppendState, Writer};
pub(crate) use open::{find_room_files, moved, scan_records};
pub(crate) use query::IndexEntry;
use query::Published;
pub use query::{Page, RoomSpan};

/// The directory (in the data dir) holding every room's file but `#general`'s.
pub const ROOMS_DIR: &str = "rooms";

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
    /// What was found in `database.msgids`.
    pub msgids: MsgidsReport,
    /// How far the newest record's timestamp is ahead of this machine's clock, when more than a
    /// minute (a clock that was wrong, or a hand-edited line): new records get that timestamp
    /// until the clock passes it, since timestamps never go backwards. Logged as a warning.
    pub newest_ahead: Option<Duration>,
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

/// The server's message store: `database.db`, the rooms' files and `database.msgids` in a data
/// dir, with the data-dir lock held while it is open. `Send + Sync`: share it with `Arc`.
///
/// Every room's records are in its own file, in the record line format; ids are one sequence
/// across all of them, so one cursor covers every room.
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
/// one fsync of `database.msgids`, then one write and one fsync of each room file the batch
/// touches, before any record of it is published. A new leader whose queue holds at most half as many appends as the last batch waits up
/// to 100 µs for more, since the last batch's appenders are usually about to queue again.
///
/// # Failures
///
/// A failed *write* (say, a full disk) is undone: every file is truncated back to its last
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
    /// Holds the data-dir lock (on `database.db`) for the store's life.
    _lock: DataDirLock,
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

impl MessageStore {
    /// The path of `database.db`.
    pub fn path(&self) -> &Path {
        &self.db_path
    }

    /// The configuration the store was opened with.
    pub fn config(&self) -> &StoreConfig {
        &self.config
    }

    /// Fsyncs every file, if anything was written since they last were (with
    /// [`FsyncPolicy::Never`] this is the only fsync; call it at shutdown). A failed fsync is not
    /// tried again: a second one could report success for pages the kernel dropped after the
    /// first failed.
    pub fn sync(&self) -> Result<()> {
        let mut w = self.writer.lock();
        if !w.unsynced {
            return Ok(());
        }
        w.unsynced = false;
        self.msgids
            .sync_all()
            .map_err(|e| StoreError::io("fsync", &self.msgids_path, e))?;
        for (file, path) in w.files() {
            file.sync_all()
                .map_err(|e| StoreError::io("fsync", path, e))?;
        }
        Ok(())
    }

    /// Fsyncs and closes the store, releasing the data-dir lock. Dropping the store fsyncs too,
    /// but can only log a failure; this returns it.
    pub fn close(self) -> Result<()> {
        // The final fsync, even when it fails: dropping finds nothing left to sync.
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

#[cfg(test)]
mod tests {
    use super::*;

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
}
