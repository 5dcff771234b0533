//! The records the client holds and its delivery cursor: the cache file (`cdatabase.db`) when
//! there is one, else memory only.
//!
//! The cursor is the highest id held. Deliveries only ever move it up, and only records above it
//! are new: that is the whole dedupe (the server delivers every record above the `last-id` the
//! client reports, in ascending order, so nothing above the cursor is ever skipped).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gc_protocol::Record;
use gc_store::{CacheReport, ClientCache};

use crate::error::ClientError;

/// Records kept in memory without a cache file (the newest ones; older ones are dropped).
const MEMORY_RECORDS: usize = 10_000;

/// What [`RecordStore::check_server_latest`] did.
#[derive(Debug, PartialEq, Eq)]
pub struct Reset {
    /// The cursor before the reset.
    pub old_cursor: u64,
    /// The server's newest id.
    pub server_latest: u64,
    /// Where the old cache went, if there was one and it could be moved.
    pub moved_to: Option<PathBuf>,
    /// Why the old cache could not be moved (the client then carries on in memory).
    pub move_error: Option<String>,
}

/// Held records and the cursor.
#[derive(Debug)]
pub struct RecordStore {
    cache: Option<ClientCache>,
    /// Without a cache file: the newest records, by id.
    memory: BTreeMap<u64, Record>,
    cursor: u64,
    /// A cache write failed: warned once, carrying on in memory for the cursor.
    write_failed: bool,
}

impl RecordStore {
    /// Memory only.
    pub fn in_memory() -> Self {
        Self {
            cache: None,
            memory: BTreeMap::new(),
            cursor: 0,
            write_failed: false,
        }
    }

    /// Opens (and locks) the cache at `path`.
    pub fn open(path: &Path) -> Result<(Self, CacheReport), ClientError> {
        let (cache, report) = ClientCache::open(path)?;
        let cursor = cache.last_id();
        Ok((
            Self {
                cache: Some(cache),
                memory: BTreeMap::new(),
                cursor,
                write_failed: false,
            },
            report,
        ))
    }

    /// The highest id held (0: none): what `Pong` and delivery `Thx` report.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Flushes the cache file to disk (at close; a lost tail only means records fetched again).
    pub fn sync(&self) {
        if let Some(cache) = &self.cache
            && let Err(e) = cache.sync()
        {
            tracing::warn!("cannot flush the cache: {e}");
        }
    }

    /// The cache file, if any.
    pub fn cache_path(&self) -> Option<&Path> {
        self.cache.as_ref().map(ClientCache::path)
    }

    /// Takes a delivered batch: returns the records that are new (above the cursor), ascending and
    /// each id once, stores them and moves the cursor. The second value is a cache write error to
    /// report (once); the records are still returned and the cursor still moves.
    pub fn accept_delivery(&mut self, mut records: Vec<Record>) -> (Vec<Record>, Option<String>) {
        records.sort_by_key(|r| r.id);
        records.dedup_by_key(|r| r.id);
        let cursor = self.cursor;
        records.retain(|r| r.id > cursor);
        let Some(last) = records.last() else {
            return (records, None);
        };
        self.cursor = last.id;
        let error = self.store(&records);
        (records, error)
    }

    /// Takes a `History` page: stores the records at or below the cursor (records above it will
    /// come by delivery, and storing them would move the cursor past records not yet delivered).
    pub fn accept_history(&mut self, records: &[Record]) -> Option<String> {
        let below: Vec<Record> = records
            .iter()
            .filter(|r| r.id <= self.cursor)
            .cloned()
            .collect();
        if below.is_empty() {
            None
        } else {
            self.store(&below)
        }
    }

    /// The `before_id` to send for a history request, so pages never reach above the cursor.
    pub fn clamp_history(&self, before_id: u64) -> u64 {
        if self.cursor == 0 {
            return before_id;
        }
        let limit = self.cursor + 1;
        if before_id == 0 || before_id > limit {
            limit
        } else {
            before_id
        }
    }

    /// Records held, newest `limit` with id < `before_id` (0: the newest), ascending.
    pub fn before(&self, before_id: u64, limit: usize) -> Vec<Record> {
        match &self.cache {
            Some(cache) => cache.before(before_id, limit).to_vec(),
            None => {
                let upper = if before_id == 0 { u64::MAX } else { before_id };
                let mut page: Vec<Record> = self
                    .memory
                    .range(..upper)
                    .rev()
                    .take(limit)
                    .map(|(_, r)| r.clone())
                    .collect();
                page.reverse();
                page
            }
        }
    }

    /// After login: if the server's newest id is below the cursor this client reported when it
    /// logged in (`cursor_at_login`), this is another server or its store was reset. Moves the
    /// cache aside (`cdatabase.db.old-<unix-time>`), starts a fresh one and resets the cursor to
    /// 0, so new messages are not skipped.
    ///
    /// The comparison is with the cursor from before the login, not the current one: the server
    /// takes its newest id before the session starts, and the session's first deliveries can
    /// arrive before `Ok` is read, so the current cursor may already be above it legitimately.
    pub fn check_server_latest(
        &mut self,
        server_latest: u64,
        cursor_at_login: u64,
    ) -> Option<Reset> {
        if server_latest >= cursor_at_login {
            return None;
        }
        let mut reset = Reset {
            old_cursor: self.cursor,
            server_latest,
            moved_to: None,
            move_error: None,
        };
        self.cursor = 0;
        self.memory.clear();
        if let Some(cache) = self.cache.take() {
            let path = cache.path().to_owned();
            match move_aside(&path) {
                // The old file is still locked by `cache` (the lock follows the file); open the
                // fresh one at the old name before letting go of it, so no other client can slip
                // in between.
                Ok(to) => match ClientCache::open(&path) {
                    Ok((fresh, _)) => {
                        self.cache = Some(fresh);
                        reset.moved_to = Some(to);
                    }
                    Err(e) => {
                        reset.moved_to = Some(to);
                        reset.move_error = Some(format!(
                            "cannot open a fresh cache at {}: {e}; keeping records in memory",
                            path.display()
                        ));
                    }
                },
                Err(e) => {
                    reset.move_error = Some(format!(
                        "cannot move the cache {} aside: {e}; keeping records in memory",
                        path.display()
                    ));
                }
            }
            drop(cache);
        }
        Some(reset)
    }

    fn store(&mut self, records: &[Record]) -> Option<String> {
        match &mut self.cache {
            Some(cache) => match cache.insert(records) {
                Ok(_) => None,
                Err(e) if !self.write_failed => {
                    self.write_failed = true;
                    Some(format!(
                        "cannot write to the cache: {e}; messages are still shown but may be \
                         fetched again after a restart"
                    ))
                }
                Err(_) => None,
            },
            None => {
                for r in records {
                    self.memory.insert(r.id, r.clone());
                }
                while self.memory.len() > MEMORY_RECORDS {
                    self.memory.pop_first();
                }
                None
            }
        }
    }
}

/// Renames `path` to `<path>.old-<unix-time>` (with a counter if that exists already).
fn move_aside(path: &Path) -> std::io::Result<PathBuf> {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let base = format!("{}.old-{secs}", path.display());
    let mut target = PathBuf::from(&base);
    let mut n = 1;
    while target.exists() {
        target = PathBuf::from(format!("{base}-{n}"));
        n += 1;
    }
    std::fs::rename(path, &target)?;
    Ok(target)
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_protocol::{Timestamp, Username};

    fn rec(id: u64) -> Record {
        Record {
            room: gc_protocol::Room::general(),
            id,
            timestamp: Timestamp::from_micros(1_700_000_000_000_000 + id),
            username: Username::new("alice").unwrap(),
            body: format!("message {id}"),
        }
    }

    fn ids(records: &[Record]) -> Vec<u64> {
        records.iter().map(|r| r.id).collect()
    }

    #[test]
    fn delivery_dedupes_sorts_and_moves_the_cursor() {
        let mut s = RecordStore::in_memory();
        let (new, err) = s.accept_delivery(vec![rec(3), rec(1), rec(2), rec(2)]);
        assert_eq!(ids(&new), [1, 2, 3]);
        assert!(err.is_none());
        assert_eq!(s.cursor(), 3);
        // A repeated or overlapping batch only yields what is new.
        let (new, _) = s.accept_delivery(vec![rec(2), rec(3), rec(4)]);
        assert_eq!(ids(&new), [4]);
        let (new, _) = s.accept_delivery(vec![rec(4)]);
        assert!(new.is_empty());
        assert_eq!(s.cursor(), 4);
        assert_eq!(ids(&s.before(0, 2)), [3, 4]);
        assert_eq!(ids(&s.before(3, 10)), [1, 2]);
    }

    #[test]
    fn history_never_moves_the_cursor() {
        let mut s = RecordStore::in_memory();
        s.accept_delivery(vec![rec(10), rec(11)]);
        assert_eq!(s.clamp_history(0), 12);
        assert_eq!(s.clamp_history(50), 12);
        assert_eq!(s.clamp_history(10), 10);
        s.accept_history(&[rec(5), rec(6), rec(20)]);
        assert_eq!(s.cursor(), 11);
        assert_eq!(ids(&s.before(0, 10)), [5, 6, 10, 11]);
        // Nothing held yet: ask as given.
        assert_eq!(RecordStore::in_memory().clamp_history(0), 0);
    }

    #[test]
    fn cache_keeps_cursor_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("cdatabase.db");
        {
            let (mut s, report) = RecordStore::open(&path).unwrap();
            assert_eq!(report.records, 0);
            s.accept_delivery(vec![rec(1), rec(2)]);
            s.accept_history(&[rec(1)]);
        }
        let (s, report) = RecordStore::open(&path).unwrap();
        assert_eq!(report.records, 2);
        assert_eq!(s.cursor(), 2);
        // A second client on the same cache is refused.
        let err = RecordStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("client cache"), "{err}");
    }

    #[test]
    fn lower_server_latest_moves_the_cache_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdatabase.db");
        let (mut s, _) = RecordStore::open(&path).unwrap();
        s.accept_delivery(vec![rec(7), rec(8)]);
        assert!(s.check_server_latest(8, 8).is_none());
        assert!(s.check_server_latest(100, 8).is_none());
        // Deliveries of this session moved the cursor past the `Ok` latest-id: no reset.
        assert!(s.check_server_latest(7, 6).is_none());
        assert_eq!(s.cursor(), 8);
        let reset = s.check_server_latest(2, 8).unwrap();
        assert_eq!(reset.old_cursor, 8);
        assert!(reset.move_error.is_none(), "{:?}", reset.move_error);
        let moved = reset.moved_to.unwrap();
        assert!(
            moved
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with("cdatabase.db.old-")
        );
        assert!(
            std::fs::read_to_string(&moved)
                .unwrap()
                .contains("message 8")
        );
        assert_eq!(s.cursor(), 0);
        // The fresh cache takes the new server's records with the same ids.
        let (new, _) = s.accept_delivery(vec![rec(1), rec(2)]);
        assert_eq!(ids(&new), [1, 2]);
        drop(s);
        let (s, report) = RecordStore::open(&path).unwrap();
        assert_eq!(report.records, 2);
        assert_eq!(s.cursor(), 2);
    }

    #[test]
    fn memory_reset() {
        let mut s = RecordStore::in_memory();
        s.accept_delivery(vec![rec(5)]);
        let reset = s.check_server_latest(0, 5).unwrap();
        assert_eq!(reset.moved_to, None);
        assert_eq!(s.cursor(), 0);
        assert!(s.before(0, 10).is_empty());
    }
}
