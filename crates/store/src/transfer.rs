//! Moving a data dir's messages, client-msg-ids and accounts to another store and back
//! (`gc-server db import --from-dir` / `--from-postgres`): the flat-file side.
//!
//! - [`Digest`] and [`Summary`]: the count and SHA-256 both sides of a transfer compute over the
//!   same canonical text, so a copy is checked against its source.
//! - [`visit_msgids`]: the valid lines of `database.msgids`.
//! - [`DirImport`]: writes records, client-msg-ids and accounts into an empty data dir through a
//!   staging directory, checks what it wrote, and only then moves it into place.

use std::fmt;
use std::fs::{self, File};
use std::io::{self, BufWriter, Write as _};
use std::path::{Path, PathBuf};

use gc_protocol::types::{Record, Room};
use sha2::{Digest as _, Sha256};

use crate::accounts::{ACCOUNTS_FILE, Account, Accounts};
use crate::admin::{ExportReport, visit_records};
use crate::codec::{encode_msgid, encode_record, split_msgid};
use crate::content::{FILE_INDEX, FILES_DIR, FileEntry};
use crate::error::{Result, StoreError};
use crate::files::{self, LineReader};
use crate::lock::{DATABASE_FILE, DataDirLock, lock_file};
use crate::messages::ROOMS_DIR;
use crate::msgids::MSGIDS_FILE;
use crate::private;
use crate::rooms::{ADMINS_FILE, MEMBERS_FILE, ROOMS_FILE, RoomsFile};

/// The staging directory [`DirImport`] writes into, inside the target data dir.
pub const STAGING_DIR: &str = ".import-staging";

/// What a store holds, as a transfer checks it: the number of messages and accounts, and a
/// SHA-256 over their canonical text (see [`Digest`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Messages (records of every room).
    pub messages: u64,
    /// Accounts.
    pub accounts: u64,
    /// The SHA-256, in lowercase hex.
    pub sha256: String,
}

impl fmt::Display for Summary {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} messages, {} accounts, sha256 {}",
            self.messages, self.accounts, self.sha256
        )
    }
}

/// Computes a [`Summary`]. The canonical text it hashes is:
///
/// - for each room with records, `#general` first, then the others by name (byte order): a
///   `# room NAME` line, then the room's records as `database.db` lines, in id order (what
///   `gc-server db export` writes, with the header before `#general` too);
/// - a `# accounts` line, then every account as its `usernames.db` line, ordered by name
///   without regard to case.
///
/// Records must come in that order ([`visit_records`] and the PostgreSQL export give it);
/// accounts in any order (they are sorted here).
#[derive(Debug, Default)]
pub struct Digest {
    sha: Sha256,
    room: Option<Room>,
    messages: u64,
    line: Vec<u8>,
}

impl Digest {
    /// An empty digest.
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds the next record.
    pub fn record(&mut self, record: &Record) {
        if self.room.as_ref() != Some(&record.room) {
            self.sha
                .update(format!("# room {}\n", record.room).as_bytes());
            self.room = Some(record.room.clone());
        }
        self.line.clear();
        encode_record(record, &mut self.line);
        self.sha.update(&self.line);
        self.messages += 1;
    }

    /// Adds every account (after the last record) and gives the summary.
    pub fn finish(mut self, accounts: &[Account]) -> Summary {
        let mut sorted: Vec<&Account> = accounts.iter().collect();
        sorted.sort_by_key(|a| a.username.key());
        self.sha.update(b"# accounts\n");
        for a in &sorted {
            self.line.clear();
            a.encode(&mut self.line);
            self.sha.update(&self.line);
        }
        let hash = self.sha.finalize();
        let mut sha256 = String::with_capacity(64);
        for b in hash {
            sha256.push_str(&format!("{b:02x}"));
        }
        Summary {
            messages: self.messages,
            accounts: sorted.len() as u64,
            sha256,
        }
    }
}

/// The [`Summary`] of the data dir `dir` (read without a lock; stop the server for a stable
/// answer), and what reading the records found.
pub fn summary(dir: &Path) -> Result<(Summary, ExportReport)> {
    let mut digest = Digest::new();
    let report = visit_records(dir, |r| {
        digest.record(r);
        Ok(())
    })?;
    let accounts = Accounts::open(&dir.join(ACCOUNTS_FILE))?.list();
    Ok((digest.finish(&accounts), report))
}

/// Hands every valid line of `dir`'s `database.msgids` to `f` as (id, username,
/// client-msg-id), in file order; invalid lines are skipped (the store drops them too) and
/// counted in the result. No file: nothing.
pub fn visit_msgids(dir: &Path, mut f: impl FnMut(u64, &str, &str) -> Result<()>) -> Result<u64> {
    let path = dir.join(MSGIDS_FILE);
    let file = match File::open(&path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(StoreError::io("open", path, e)),
    };
    let mut skipped = 0;
    let mut reader = LineReader::new(&file, &path);
    while let Some(line) = reader.next_line()? {
        let verdict = match line.framing_error() {
            Some(e) => Err(e),
            None => split_msgid(line.bytes),
        };
        match verdict {
            Ok(m) => f(m.id, m.username, m.client_msg_id)?,
            Err(_) => skipped += 1,
        }
    }
    Ok(skipped)
}

/// Refuses a data dir that holds records, client-msg-ids, room files or accounts.
fn check_empty(dir: &Path, lock: &DataDirLock) -> Result<()> {
    let refuse = |what: String| {
        Err(StoreError::TransferTarget {
            target: dir.display().to_string(),
            what,
        })
    };
    if let Some(what) = crate::import::messages_in(dir, lock)? {
        return refuse(what);
    }
    let accounts = Accounts::open(&dir.join(ACCOUNTS_FILE))?.len();
    if accounts > 0 {
        return refuse(format!("{ACCOUNTS_FILE} has {accounts} accounts"));
    }
    let index = dir.join(FILES_DIR).join(FILE_INDEX);
    if fs::metadata(&index).is_ok_and(|m| m.len() > 0) {
        return refuse(format!("{FILES_DIR}/{FILE_INDEX} announces shared files"));
    }
    Ok(())
}

/// A room's file being written.
#[derive(Debug)]
struct RoomOut {
    room: Room,
    path: PathBuf,
    w: BufWriter<File>,
    last_id: u64,
}

/// Writes a store's contents into an empty data dir: everything goes into
/// `<dir>/.import-staging/` first; [`DirImport::staged_summary`] reads it back, and
/// [`DirImport::commit`] moves it into place (`database.db` last). Dropped without a commit,
/// it removes the staging directory and leaves the data dir as it was. Holds the data-dir lock
/// throughout, so no server can open the dir meanwhile.
#[derive(Debug)]
pub struct DirImport {
    lock: DataDirLock,
    dir: PathBuf,
    staging: PathBuf,
    current: Option<RoomOut>,
    msgids: Option<BufWriter<File>>,
    line: Vec<u8>,
    committed: bool,
}

fn create(path: &Path) -> Result<BufWriter<File>> {
    let file = private::open(
        path,
        private::options().write(true).create_new(true).read(true),
    )
    .map_err(|e| StoreError::io("create", path, e))?;
    Ok(BufWriter::with_capacity(1 << 20, file))
}

fn close(w: BufWriter<File>, path: &Path) -> Result<()> {
    let file = w
        .into_inner()
        .map_err(|e| StoreError::io("write to", path, e.into_error()))?;
    file.sync_all()
        .map_err(|e| StoreError::io("fsync", path, e))
}

impl DirImport {
    /// Takes `dir`'s lock (creating the dir if missing; [`StoreError::Locked`] while a server
    /// runs on it), checks that it holds no messages, client-msg-ids or accounts
    /// ([`StoreError::TransferTarget`] otherwise), and starts a fresh staging directory.
    pub fn begin(dir: &Path) -> Result<Self> {
        let lock = DataDirLock::acquire(dir)?;
        check_empty(dir, &lock)?;
        let staging = dir.join(STAGING_DIR);
        // A staging dir left by an interrupted import: never moved into place, so stale.
        match fs::remove_dir_all(&staging) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("remove the leftover", staging, e)),
        }
        private::dir(&staging.join(ROOMS_DIR))
            .map_err(|e| StoreError::io("create the directory", staging.join(ROOMS_DIR), e))?;
        // #general's file exists even when empty: it is what makes a data dir.
        close(create(&staging.join(DATABASE_FILE))?, &staging)?;
        Ok(Self {
            lock,
            dir: dir.to_owned(),
            staging,
            current: None,
            msgids: None,
            line: Vec::with_capacity(256),
            committed: false,
        })
    }

    /// The staging directory.
    pub fn staging(&self) -> &Path {
        &self.staging
    }

    /// Writes the next record. Records come room by room (each room once), each room's in
    /// increasing id order, as a data dir keeps them.
    pub fn record(&mut self, record: &Record) -> Result<()> {
        if self.current.as_ref().is_none_or(|c| c.room != record.room) {
            self.finish_room()?;
            let path = if record.room.is_general() {
                self.staging.join(DATABASE_FILE)
            } else {
                self.staging
                    .join(ROOMS_DIR)
                    .join(format!("{}.db", record.room.file_stem()))
            };
            let w = if record.room.is_general() {
                let file = private::open(&path, private::options().append(true))
                    .map_err(|e| StoreError::io("open", &path, e))?;
                BufWriter::with_capacity(1 << 20, file)
            } else {
                // create_new: a room seen twice is an error, not a file written over.
                create(&path)?
            };
            self.current = Some(RoomOut {
                room: record.room.clone(),
                path,
                w,
                last_id: 0,
            });
        }
        let Some(c) = self.current.as_mut() else {
            return Ok(());
        };
        if record.id <= c.last_id {
            return Err(StoreError::Transfer {
                what: format!(
                    "write {}: record {} comes after record {} (the source is not in id order)",
                    c.path.display(),
                    record.id,
                    c.last_id
                ),
            });
        }
        c.last_id = record.id;
        self.line.clear();
        encode_record(record, &mut self.line);
        c.w.write_all(&self.line)
            .map_err(|e| StoreError::io("write to", &c.path, e))
    }

    fn finish_room(&mut self) -> Result<()> {
        match self.current.take() {
            Some(c) => close(c.w, &c.path),
            None => Ok(()),
        }
    }

    /// Writes a `database.msgids` line: the record `id` came from `username`'s message with
    /// `client_msg_id` (so a retry of it is recognised). In id order, as the store writes them.
    pub fn msgid(&mut self, id: u64, username: &str, client_msg_id: &str) -> Result<()> {
        let path = self.staging.join(MSGIDS_FILE);
        if self.msgids.is_none() {
            self.msgids = Some(create(&path)?);
        }
        self.line.clear();
        encode_msgid(id, username, client_msg_id, &mut self.line);
        match self.msgids.as_mut() {
            Some(w) => w
                .write_all(&self.line)
                .map_err(|e| StoreError::io("write to", &path, e)),
            None => Ok(()),
        }
    }

    /// Writes `usernames.db` with these accounts.
    pub fn accounts(&mut self, accounts: &[Account]) -> Result<()> {
        let path = self.staging.join(ACCOUNTS_FILE);
        let mut w = create(&path)?;
        for a in accounts {
            self.line.clear();
            a.encode(&mut self.line);
            w.write_all(&self.line)
                .map_err(|e| StoreError::io("write to", &path, e))?;
        }
        close(w, &path)
    }

    /// Writes one room metadata file (`rooms.db`, `members.db`, `admins.db`) from its lines.
    pub fn room_metadata(&mut self, file: RoomsFile, lines: &[Vec<u8>]) -> Result<()> {
        let path = self.staging.join(file.name());
        let mut w = create(&path)?;
        for line in lines {
            w.write_all(line)
                .and_then(|()| w.write_all(b"\n"))
                .map_err(|e| StoreError::io("write to", &path, e))?;
        }
        close(w, &path)
    }

    /// Writes the index of shared files (`files/index.db`) from its entries; the files' content
    /// is not copied (it stays in the files directory).
    pub fn file_index(&mut self, entries: &[FileEntry]) -> Result<()> {
        let dir = self.staging.join(FILES_DIR);
        private::dir(&dir).map_err(|e| StoreError::io("create the directory", &dir, e))?;
        let path = dir.join(FILE_INDEX);
        let mut w = create(&path)?;
        for e in entries {
            w.write_all(e.line().as_bytes())
                .map_err(|e| StoreError::io("write to", &path, e))?;
        }
        close(w, &path)
    }

    /// Flushes and fsyncs everything written, then reads it back from the staging directory:
    /// what the data dir will hold once committed.
    pub fn staged_summary(&mut self) -> Result<Summary> {
        self.finish_room()?;
        if let Some(w) = self.msgids.take() {
            close(w, &self.staging.join(MSGIDS_FILE))?;
        }
        let (summary, report) = summary(&self.staging)?;
        if let Some(torn) = report.skipped_torn_tail {
            return Err(StoreError::Transfer {
                what: format!(
                    "read back {}: line {} is torn ({})",
                    self.staging.display(),
                    torn.line_number,
                    torn.reason
                ),
            });
        }
        Ok(summary)
    }

    /// Moves the staged files into the data dir: the rooms' files, `database.msgids`,
    /// `usernames.db`, the room metadata files, `files/index.db`, and last `database.db` (locked before it takes the old one's name, so
    /// the data dir stays locked), then removes the staging directory.
    pub fn commit(mut self) -> Result<()> {
        self.staged_summary()?;
        let rooms = self.dir.join(ROOMS_DIR);
        let staged_rooms = self.staging.join(ROOMS_DIR);
        let entries =
            fs::read_dir(&staged_rooms).map_err(|e| StoreError::io("list", &staged_rooms, e))?;
        let mut any_room = false;
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &staged_rooms, e))?;
            if !any_room {
                private::dir(&rooms)
                    .map_err(|e| StoreError::io("create the directory", &rooms, e))?;
                any_room = true;
            }
            let to = rooms.join(entry.file_name());
            fs::rename(entry.path(), &to).map_err(|e| StoreError::io("move into place", to, e))?;
        }
        if any_room {
            files::sync_dir(&rooms)?;
        }
        for name in [
            MSGIDS_FILE,
            ACCOUNTS_FILE,
            ROOMS_FILE,
            MEMBERS_FILE,
            ADMINS_FILE,
        ] {
            let from = self.staging.join(name);
            if from.exists() {
                let to = self.dir.join(name);
                fs::rename(&from, &to).map_err(|e| StoreError::io("move into place", to, e))?;
            }
        }
        let index = self.staging.join(FILES_DIR).join(FILE_INDEX);
        if index.exists() {
            let shared = self.dir.join(FILES_DIR);
            private::dir(&shared)
                .map_err(|e| StoreError::io("create the directory", &shared, e))?;
            let to = shared.join(FILE_INDEX);
            fs::rename(&index, &to).map_err(|e| StoreError::io("move into place", &to, e))?;
            files::sync_dir(&shared)?;
        }
        let general = self.staging.join(DATABASE_FILE);
        let file = File::open(&general).map_err(|e| StoreError::io("open", &general, e))?;
        lock_file(&file, &general)?;
        let target = self.dir.join(DATABASE_FILE);
        fs::rename(&general, &target).map_err(|e| StoreError::io("move into place", &target, e))?;
        files::sync_dir(&self.dir)?;
        self.lock = DataDirLock::from_locked(file, &target);
        self.committed = true;
        fs::remove_dir_all(&self.staging)
            .map_err(|e| StoreError::io("remove", &self.staging, e))?;
        Ok(())
    }
}

impl Drop for DirImport {
    fn drop(&mut self) {
        if !self.committed {
            self.current = None;
            self.msgids = None;
            if let Err(e) = fs::remove_dir_all(&self.staging)
                && e.kind() != io::ErrorKind::NotFound
            {
                tracing::warn!(
                    "cannot remove the staging directory {}: {e}; delete it by hand",
                    self.staging.display()
                );
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_protocol::types::{Timestamp, Username};

    fn rec(room: &str, id: u64, body: &str) -> Record {
        Record {
            room: Room::new(room).unwrap(),
            id,
            timestamp: Timestamp::from_micros(1_640_995_200_000_000 + id),
            username: Username::new("alice").unwrap(),
            body: body.to_owned(),
        }
    }

    #[test]
    fn the_digest_sees_rooms_bodies_and_accounts() {
        let sum = |records: &[Record]| {
            let mut d = Digest::new();
            for r in records {
                d.record(r);
            }
            d.finish(&[])
        };
        let a = sum(&[rec("#general", 1, "hi"), rec("#dev", 2, "x")]);
        assert_eq!((a.messages, a.accounts, a.sha256.len()), (2, 0, 64));
        assert_eq!(a, sum(&[rec("#general", 1, "hi"), rec("#dev", 2, "x")]));
        // The same lines in another room, another body, another id: another hash.
        assert_ne!(a, sum(&[rec("#general", 1, "hi"), rec("#ops", 2, "x")]));
        assert_ne!(a, sum(&[rec("#general", 1, "hi"), rec("#dev", 2, "y")]));
        assert_ne!(a, sum(&[rec("#general", 1, "hi"), rec("#dev", 3, "x")]));
        // A room boundary is part of the text: not the same as both in one room.
        assert_ne!(
            sum(&[rec("#dev", 1, "a"), rec("#ops", 2, "b")]).sha256,
            sum(&[rec("#dev", 1, "a"), rec("#dev", 2, "b")]).sha256
        );
        assert!(a.to_string().starts_with("2 messages, 0 accounts, sha256 "));
    }

    #[test]
    fn accounts_are_hashed_in_name_order() {
        let acct = |name: &str| Account {
            username: Username::new(name).unwrap(),
            salt: vec![1, 2],
            iterations: 4096,
            stored_key: vec![3; 32],
            server_key: vec![4; 32],
            created: Timestamp::from_micros(5),
        };
        let one = Digest::new().finish(&[acct("Bob"), acct("alice")]);
        let two = Digest::new().finish(&[acct("alice"), acct("Bob")]);
        assert_eq!(one, two);
        assert_eq!(one.accounts, 2);
        assert_ne!(one, Digest::new().finish(&[acct("alice")]));
    }

    #[test]
    fn an_import_dropped_before_commit_leaves_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let mut w = DirImport::begin(dir.path()).unwrap();
        w.record(&rec("#general", 1, "a")).unwrap();
        w.record(&rec("#dev", 2, "b\\c\nd")).unwrap();
        w.msgid(2, "alice", "m2").unwrap();
        assert!(w.record(&rec("#dev", 2, "again")).is_err());
        let staged = w.staged_summary().unwrap();
        assert_eq!(staged.messages, 2);
        drop(w);
        assert!(!dir.path().join(STAGING_DIR).exists());
        assert_eq!(
            fs::metadata(dir.path().join(DATABASE_FILE)).unwrap().len(),
            0
        );
        assert!(!dir.path().join(ROOMS_DIR).join("dev.db").exists());

        let mut w = DirImport::begin(dir.path()).unwrap();
        w.record(&rec("#general", 1, "a")).unwrap();
        w.record(&rec("#dev", 2, "b\\c\nd")).unwrap();
        w.msgid(2, "alice", "m2").unwrap();
        w.commit().unwrap();
        assert_eq!(summary(dir.path()).unwrap().0, staged);
        assert_eq!(
            fs::read_to_string(dir.path().join(MSGIDS_FILE)).unwrap(),
            "2;alice;m2\n"
        );
        // Not empty any more.
        assert!(matches!(
            DirImport::begin(dir.path()),
            Err(StoreError::TransferTarget { .. })
        ));
    }
}
