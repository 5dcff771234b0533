//! The records the client holds and its delivery cursor: the cache when there is one, else
//! memory only.
//!
//! The cache mirrors the server's files: `#general`'s records in `cdatabase.db` (so a cache from
//! before rooms opens unchanged), each other room's in `<cache dir>/rooms/<name>.db` (`dev.db`
//! for `#dev`, `@alice+bob.db` for a direct conversation; the directory 0700, the files 0600),
//! in the same line format. Room files are opened at start and made as a room's first record
//! arrives.
//!
//! The cursor is ONE number, the highest id held in any room: ids are one sequence across rooms.
//! Deliveries only ever move it up, and only records above it are new: that is the whole dedupe
//! (the server delivers every record above the `last-id` the client reports that the session may
//! see, in ascending order, so nothing above the cursor is ever skipped).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use gc_protocol::{Record, Room};
use gc_store::{CacheReport, ClientCache, ROOMS_DIR};

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
    /// Where the old rooms' caches went, if there were any and they could be moved.
    pub rooms_moved_to: Option<PathBuf>,
    /// Why the old cache could not be moved (the client then carries on in memory).
    pub move_error: Option<String>,
}

/// What [`RecordStore::open`] found.
#[derive(Debug, Default)]
pub struct OpenSummary {
    /// Distinct records held, in every room.
    pub records: usize,
    /// The files that had damaged lines (moved aside into `<file>.corrupt`).
    pub damaged: Vec<PathBuf>,
    /// Files in the rooms directory that are no room's (left alone).
    pub strays: Vec<PathBuf>,
    /// The rooms with a cache file besides `#general`.
    pub rooms: usize,
}

impl OpenSummary {
    fn add(&mut self, path: &Path, report: &CacheReport) {
        self.records += report.records;
        if report.torn_tail.is_some() || !report.moved_aside.is_empty() {
            self.damaged.push(path.to_owned());
        }
    }
}

/// Held records and the cursor.
#[derive(Debug)]
pub struct RecordStore {
    /// `#general`'s cache file (`cdatabase.db`).
    cache: Option<ClientCache>,
    /// Where the other rooms' files go (`<cache dir>/rooms`), when there is a cache.
    rooms_dir: Option<PathBuf>,
    /// The other rooms' cache files, opened at start or at their first record.
    rooms: BTreeMap<Room, ClientCache>,
    /// Without a cache file (or for a room whose file could not be opened): the newest records,
    /// by id.
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
            rooms_dir: None,
            rooms: BTreeMap::new(),
            memory: BTreeMap::new(),
            cursor: 0,
            write_failed: false,
        }
    }

    /// Opens (and locks) the cache at `path` (`#general`'s) first, then every room's file beside
    /// it in `rooms/`: holding `path`'s lock, no other client can be opening the rooms' files.
    pub fn open(path: &Path) -> Result<(Self, OpenSummary), ClientError> {
        let mut summary = OpenSummary::default();
        let (cache, report) = ClientCache::open(path)?;
        summary.add(path, &report);
        let rooms_dir = gc_store_parent(path).join(ROOMS_DIR);
        // The rooms' files are tightened as they open; their directory here.
        gc_store::private::tighten_path(&rooms_dir);
        let mut rooms = BTreeMap::new();
        for (room, file) in room_files(&rooms_dir, &mut summary.strays)? {
            let (room_cache, report) = ClientCache::open(&file)?;
            summary.add(&file, &report);
            rooms.insert(room, room_cache);
        }
        summary.rooms = rooms.len();
        let cursor = rooms
            .values()
            .map(ClientCache::last_id)
            .fold(cache.last_id(), u64::max);
        Ok((
            Self {
                cache: Some(cache),
                rooms_dir: Some(rooms_dir),
                rooms,
                memory: BTreeMap::new(),
                cursor,
                write_failed: false,
            },
            summary,
        ))
    }

    /// The highest id held in any room (0: none): what `Pong` and delivery `Thx` report.
    pub fn cursor(&self) -> u64 {
        self.cursor
    }

    /// Flushes the cache files to disk (at close; a lost tail only means records fetched again).
    pub fn sync(&self) {
        for cache in self.cache.iter().chain(self.rooms.values()) {
            if let Err(e) = cache.sync() {
                tracing::warn!("cannot flush the cache: {e}");
            }
        }
    }

    /// The cache file (`#general`'s), if any.
    pub fn cache_path(&self) -> Option<&Path> {
        self.cache.as_ref().map(ClientCache::path)
    }

    /// The rooms of which records are held, `#general` first, then by name.
    pub fn rooms(&self) -> Vec<Room> {
        let mut rooms: Vec<Room> = self.rooms.keys().cloned().collect();
        rooms.extend(self.memory.values().map(|r| r.room.clone()));
        rooms.retain(|r| !r.is_general());
        rooms.sort();
        rooms.dedup();
        rooms.insert(0, Room::general());
        rooms
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

    /// `room`'s records held, the newest `limit` with id < `before_id` (0: the newest),
    /// ascending.
    pub fn before(&self, room: &Room, before_id: u64, limit: usize) -> Vec<Record> {
        let upper = if before_id == 0 { u64::MAX } else { before_id };
        let mut page: Vec<Record> = self
            .memory
            .range(..upper)
            .rev()
            .filter(|(_, r)| &r.room == room)
            .take(limit)
            .map(|(_, r)| r.clone())
            .collect();
        page.reverse();
        let file = if room.is_general() {
            self.cache.as_ref()
        } else {
            self.rooms.get(room)
        };
        if let Some(cache) = file {
            let held = cache.before(before_id, limit);
            if page.is_empty() {
                return in_room(held, room);
            }
            // Records the file could not take this run are in memory too: merge.
            page.extend(in_room(held, room));
            page.sort_by_key(|r| r.id);
            page.dedup_by_key(|r| r.id);
            let excess = page.len().saturating_sub(limit);
            page.drain(..excess);
        }
        page
    }

    /// After login: if the server's newest id is below the cursor this client reported when it
    /// logged in (`cursor_at_login`), this is another server or its store was reset. Moves the
    /// cache aside (`cdatabase.db.old-<unix-time>`, and the rooms' files as
    /// `rooms.old-<unix-time>`), starts a fresh one and resets the cursor to 0, so new messages
    /// are not skipped.
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
            rooms_moved_to: None,
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
        // The rooms' files, still locked, go aside as one directory; rooms start afresh as their
        // first records arrive.
        if let Some(dir) = &self.rooms_dir
            && dir.exists()
        {
            match move_aside(dir) {
                Ok(to) => reset.rooms_moved_to = Some(to),
                Err(e) => {
                    let text = format!(
                        "cannot move the rooms' cache {} aside: {e}; keeping their records in \
                         memory",
                        dir.display()
                    );
                    reset.move_error = Some(match reset.move_error.take() {
                        Some(first) => format!("{first}; {text}"),
                        None => text,
                    });
                    // Never append a new server's records to the old files.
                    self.rooms_dir = None;
                }
            }
        }
        if self.cache.is_none() {
            // Memory only from now on, for every room.
            self.rooms_dir = None;
        }
        self.rooms.clear();
        Some(reset)
    }

    fn store(&mut self, records: &[Record]) -> Option<String> {
        let mut by_room: BTreeMap<&Room, Vec<&Record>> = BTreeMap::new();
        for r in records {
            by_room.entry(&r.room).or_default().push(r);
        }
        let mut error = None;
        for (room, records) in by_room {
            let result = match self.file_for(room) {
                Ok(Some(cache)) => {
                    let owned: Vec<Record> = records.iter().map(|&r| r.clone()).collect();
                    cache.insert(&owned).map(|_| ()).map_err(|e| e.to_string())
                }
                Ok(None) => {
                    self.keep_in_memory(&records);
                    Ok(())
                }
                Err(e) => Err(e),
            };
            if let Err(e) = result {
                // Shown this run all the same, and scrollback still finds them.
                self.keep_in_memory(&records);
                if !self.write_failed {
                    self.write_failed = true;
                    error = Some(format!(
                        "cannot write to the cache ({room}): {e}; messages are still shown but \
                         may be fetched again, or be missing from the cache, after a restart"
                    ));
                }
            }
        }
        error
    }

    /// The cache file of `room`, opening (making) it if need be; `None` without a cache.
    fn file_for(&mut self, room: &Room) -> Result<Option<&mut ClientCache>, String> {
        if room.is_general() {
            return Ok(self.cache.as_mut());
        }
        let Some(dir) = &self.rooms_dir else {
            return Ok(None);
        };
        if !self.rooms.contains_key(room) {
            let path = room_file(dir, room);
            let opened = prepare_room_file(dir, &path)
                .map_err(|e| format!("cannot make {}: {e}", path.display()))
                .and_then(|()| ClientCache::open(&path).map_err(|e| e.to_string()))?;
            tracing::info!("cache for {room}: {}", path.display());
            self.rooms.insert(room.clone(), opened.0);
        }
        Ok(self.rooms.get_mut(room))
    }

    fn keep_in_memory(&mut self, records: &[&Record]) {
        for &r in records {
            self.memory.insert(r.id, r.clone());
        }
        while self.memory.len() > MEMORY_RECORDS {
            self.memory.pop_first();
        }
    }
}

/// `room`'s file in the rooms directory `dir`: named after [`Room::file_stem`], as on the server.
fn room_file(dir: &Path, room: &Room) -> PathBuf {
    dir.join(format!("{}.db", room.file_stem()))
}

/// Makes the rooms directory (0700) and an empty `path` (0600) if they do not exist, so the
/// cache never holds a conversation readable by others.
fn prepare_room_file(dir: &Path, path: &Path) -> std::io::Result<()> {
    gc_store::private::dir(dir)?;
    match gc_store::private::options()
        .write(true)
        .create_new(true)
        .open(path)
    {
        Ok(_) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => Ok(()),
        Err(e) => Err(e),
    }
}

/// The room files in `dir` (`*.db`, named as [`room_file`] names them), by room; other files are
/// put in `strays` and left alone.
fn room_files(dir: &Path, strays: &mut Vec<PathBuf>) -> Result<Vec<(Room, PathBuf)>, ClientError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(list_error(dir, e)),
    };
    let mut rooms = Vec::new();
    for entry in entries {
        let entry = entry.map_err(|e| list_error(dir, e))?;
        let path = entry.path();
        let name = entry.file_name();
        let Some(stem) = name.to_str().and_then(|n| n.strip_suffix(".db")) else {
            // `.corrupt` files and the like: not records.
            continue;
        };
        match Room::from_file_stem(stem) {
            Ok(room) if !room.is_general() && path.is_file() => rooms.push((room, path)),
            _ => {
                tracing::warn!(
                    "{} is no room's cache file; leaving it alone",
                    path.display()
                );
                strays.push(path);
            }
        }
    }
    rooms.sort();
    Ok(rooms)
}

fn list_error(dir: &Path, e: std::io::Error) -> ClientError {
    ClientError::Cache(gc_store::StoreError::Io {
        action: "list",
        path: dir.to_owned(),
        source: e,
    })
}

/// The directory holding `path` (`.` for a bare file name).
fn gc_store_parent(path: &Path) -> &Path {
    match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    }
}

/// Records read from `room`'s file, which has no room field: they are `room`'s.
fn in_room(records: &[Record], room: &Room) -> Vec<Record> {
    records
        .iter()
        .map(|r| Record {
            room: room.clone(),
            ..r.clone()
        })
        .collect()
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
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;
    use gc_protocol::{Timestamp, Username};

    fn rec(id: u64) -> Record {
        rec_in("#general", id)
    }

    fn rec_in(room: &str, id: u64) -> Record {
        Record {
            room: Room::new(room).unwrap(),
            id,
            timestamp: Timestamp::from_micros(1_700_000_000_000_000 + id),
            username: Username::new("alice").unwrap(),
            body: format!("message {id}"),
        }
    }

    fn general() -> Room {
        Room::general()
    }

    fn room(name: &str) -> Room {
        Room::new(name).unwrap()
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
        assert_eq!(ids(&s.before(&general(), 0, 2)), [3, 4]);
        assert_eq!(ids(&s.before(&general(), 3, 10)), [1, 2]);
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
        assert_eq!(ids(&s.before(&general(), 0, 10)), [5, 6, 10, 11]);
        // Nothing held yet: ask as given.
        assert_eq!(RecordStore::in_memory().clamp_history(0), 0);
    }

    #[test]
    fn one_cursor_across_rooms_and_pages_per_room_in_memory() {
        let mut s = RecordStore::in_memory();
        let (new, _) =
            s.accept_delivery(vec![rec(1), rec_in("#dev", 2), rec_in("@a+b", 3), rec(4)]);
        assert_eq!(ids(&new), [1, 2, 3, 4]);
        assert_eq!(s.cursor(), 4);
        // A room's record below the cursor that arrives late is not new: one cursor.
        let (new, _) = s.accept_delivery(vec![rec_in("#dev", 3)]);
        assert!(new.is_empty());
        assert_eq!(ids(&s.before(&general(), 0, 10)), [1, 4]);
        assert_eq!(ids(&s.before(&room("#dev"), 0, 10)), [2]);
        assert_eq!(ids(&s.before(&room("@a+b"), 0, 10)), [3]);
        assert!(s.before(&room("#ops"), 0, 10).is_empty());
        assert_eq!(s.rooms(), [general(), room("#dev"), room("@a+b")]);
    }

    #[test]
    fn cache_keeps_cursor_across_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("cdatabase.db");
        {
            let (mut s, summary) = RecordStore::open(&path).unwrap();
            assert_eq!(summary.records, 0);
            s.accept_delivery(vec![rec(1), rec(2)]);
            s.accept_history(&[rec(1)]);
        }
        let (s, summary) = RecordStore::open(&path).unwrap();
        assert_eq!(summary.records, 2);
        assert_eq!(s.cursor(), 2);
        // A second client on the same cache is refused.
        let err = RecordStore::open(&path).unwrap_err();
        assert!(err.to_string().contains("client cache"), "{err}");
    }

    #[test]
    fn each_room_has_its_file_and_the_cursor_is_the_highest_of_all() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdatabase.db");
        {
            let (mut s, _) = RecordStore::open(&path).unwrap();
            s.accept_delivery(vec![rec(1), rec_in("#dev", 2), rec_in("@a+b", 3)]);
            // The newest record is a room's: the cursor comes back from its file.
            s.accept_delivery(vec![rec_in("#dev", 5)]);
            s.accept_history(&[rec_in("#dev", 4)]);
        }
        let rooms = dir.path().join("rooms");
        assert_eq!(
            std::fs::metadata(&rooms).unwrap().permissions().mode() & 0o777,
            0o700
        );
        for (file, lines) in [("dev.db", 3), ("@a+b.db", 1)] {
            let meta = std::fs::metadata(rooms.join(file)).unwrap();
            assert_eq!(meta.permissions().mode() & 0o777, 0o600, "{file}");
            let text = std::fs::read_to_string(rooms.join(file)).unwrap();
            assert_eq!(text.lines().count(), lines, "{file}: {text}");
            // The line format of database.db: no room field.
            assert!(text.lines().all(|l| l.split(';').count() == 4), "{text}");
        }
        let general_text = std::fs::read_to_string(&path).unwrap();
        assert_eq!(general_text.lines().count(), 1, "{general_text}");
        // A stray file is left alone.
        std::fs::write(rooms.join("general.db"), "x").unwrap();
        let (s, summary) = RecordStore::open(&path).unwrap();
        assert_eq!(s.cursor(), 5);
        assert_eq!(summary.records, 5);
        assert_eq!(summary.rooms, 2);
        assert_eq!(summary.strays, [rooms.join("general.db")]);
        let dev = s.before(&room("#dev"), 0, 10);
        assert_eq!(ids(&dev), [2, 4, 5]);
        assert!(dev.iter().all(|r| r.room == room("#dev")), "{dev:?}");
        assert_eq!(ids(&s.before(&room("@a+b"), 0, 10)), [3]);
        assert_eq!(ids(&s.before(&general(), 0, 10)), [1]);
        assert_eq!(s.rooms(), [general(), room("#dev"), room("@a+b")]);
    }

    #[test]
    fn a_cache_an_older_version_left_open_to_others_is_tightened() {
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdatabase.db");
        {
            let (mut s, _) = RecordStore::open(&path).unwrap();
            s.accept_delivery(vec![rec(1), rec_in("#dev", 2)]);
        }
        let (rooms, dev) = (dir.path().join("rooms"), dir.path().join("rooms/dev.db"));
        set(&path, 0o644);
        set(&rooms, 0o755);
        set(&dev, 0o664);
        RecordStore::open(&path).unwrap();
        assert_eq!(
            (mode(&path), mode(&rooms), mode(&dev)),
            (0o600, 0o700, 0o600)
        );
    }

    #[test]
    fn a_cache_from_before_rooms_opens_unchanged() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdatabase.db");
        std::fs::write(
            &path,
            "1;1640995200.123;alice;Hello, world!\n2;1640995201;bob;hi\n",
        )
        .unwrap();
        let (s, summary) = RecordStore::open(&path).unwrap();
        assert_eq!((summary.records, summary.rooms), (2, 0));
        assert_eq!(s.cursor(), 2);
        assert_eq!(ids(&s.before(&general(), 0, 10)), [1, 2]);
        assert!(
            !dir.path().join("rooms").exists(),
            "nothing made until a room's record"
        );
    }

    #[test]
    fn lower_server_latest_moves_the_cache_aside() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("cdatabase.db");
        let (mut s, _) = RecordStore::open(&path).unwrap();
        s.accept_delivery(vec![rec(7), rec_in("#dev", 8)]);
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
                .contains("message 7")
        );
        let rooms_moved = reset.rooms_moved_to.unwrap();
        assert!(
            std::fs::read_to_string(rooms_moved.join("dev.db"))
                .unwrap()
                .contains("message 8")
        );
        assert_eq!(s.cursor(), 0);
        assert!(s.before(&room("#dev"), 0, 10).is_empty());
        // The fresh cache takes the new server's records with the same ids.
        let (new, _) = s.accept_delivery(vec![rec(1), rec_in("#dev", 2)]);
        assert_eq!(ids(&new), [1, 2]);
        drop(s);
        let (s, summary) = RecordStore::open(&path).unwrap();
        assert_eq!(summary.records, 2);
        assert_eq!(s.cursor(), 2);
        assert_eq!(ids(&s.before(&room("#dev"), 0, 10)), [2]);
    }

    #[test]
    fn memory_reset() {
        let mut s = RecordStore::in_memory();
        s.accept_delivery(vec![rec(5), rec_in("#dev", 6)]);
        let reset = s.check_server_latest(0, 6).unwrap();
        assert_eq!(reset.moved_to, None);
        assert_eq!(s.cursor(), 0);
        assert!(s.before(&general(), 0, 10).is_empty());
        assert!(s.before(&room("#dev"), 0, 10).is_empty());
    }
}
