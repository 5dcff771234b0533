//! Shared files' content (GC/5, docs/files.md §6): stored once per SHA-256 under `files/` in the
//! data dir, uploads written to a partial file and moved into place only when complete and
//! verified, and `files/index.db`, one line per announcement, for quotas and for who may fetch
//! what.
//!
//! ```text
//! files/objects/<first 2 hex>/<sha256>   complete, verified content; never modified
//! files/partial/<user>.<sha256>          an upload in progress (its mtime: last touched)
//! files/index.db                         {sha256};{size};{username};{timestamp};{id};{room}
//! ```
//!
//! An upload hashes what it writes as it goes, so finishing costs no second read; a resumed one
//! (after a reconnect or a restart) hashes its partial file's prefix once when it is opened.
//! Nothing here holds a file's content in memory beyond the caller's chunk.
//!
//! The index is a [`FileIndex`]: `index.db` ([`FlatFileIndex`]) with the flat file store, a
//! table with PostgreSQL (`gc-pgstore`), where the instances share one index and one files
//! directory. An upload's partial file is locked (`flock`) while it is written, so two
//! instances sharing the directory never write one partial file at once.

use std::collections::{HashMap, HashSet};
use std::fs::File;
use std::io::{self, BufRead as _, BufReader, Read as _, Seek as _, SeekFrom, Write as _};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, SystemTime};

use gc_protocol::types::{ContentHash, Room, Timestamp, Username};
use parking_lot::Mutex;
use sha2::{Digest as _, Sha256};

use crate::error::{LineError, StoreError};
use crate::private;

/// The directory of shared files in a data dir.
pub const FILES_DIR: &str = "files";
/// The announcements' index in [`FILES_DIR`].
pub const FILE_INDEX: &str = "index.db";
const OBJECTS: &str = "objects";
const PARTIAL: &str = "partial";
/// How long content no index line announces is kept before garbage collection removes it (the
/// server's cleaner and `gc-server files gc`): an upload whose record is still being stored is
/// younger (docs/files.md §6).
pub const UNANNOUNCED_GRACE: Duration = Duration::from_secs(24 * 3600);
/// Read and hashed at a time when a partial file is resumed or an object checked.
const READ_PIECE: usize = 1024 * 1024;
/// A large file's bytes are handed to the disk every this many bytes (write-back started), ...
const WRITE_BACK_EVERY: u64 = 1024 * 1024;
/// ... and waited for every this many, so it never has more than this much unwritten. Every
/// fsync on the file system (a chat message's) flushes the disk's cache, with whatever of an
/// upload is in it: small windows keep that small (with 8/64 MiB chat p99 was 2.7-4.1x slower
/// during a 1 GiB upload, with 1/4 MiB 1.5-2.3x, at the same upload rate; docs/PERFORMANCE.md).
const SYNC_EVERY: u64 = 4 * 1024 * 1024;

/// Hands a file being written in one go (an upload here, a download in the client) to the disk
/// as it grows: write-back is started every [`WRITE_BACK_EVERY`] bytes and waited for every
/// [`SYNC_EVERY`]. Left to the kernel, a large file stays in memory and reaches the disk in one
/// fsync at its end (a gigabyte: half a second on the reference machine), which every other
/// fsync on that file system (the message store's above all) waits behind: chat would stall.
/// Written back as it comes, the final fsync has little left to do.
#[derive(Debug, Default)]
pub struct WriteBehind {
    /// Where write-back was last started, and where the file was last synced.
    kicked: u64,
    synced: u64,
}

impl WriteBehind {
    /// For a file whose first `written` bytes are there already (a resumed one).
    pub fn from(written: u64) -> Self {
        Self {
            kicked: written,
            synced: written,
        }
    }

    /// Called after each write, with how long the file is now.
    pub fn wrote(&mut self, file: &File, written: u64) -> io::Result<()> {
        if written.saturating_sub(self.kicked) < WRITE_BACK_EVERY {
            return Ok(());
        }
        // POSIX_FADV_DONTNEED starts write-back of the range's dirty pages without waiting (it
        // would drop clean ones, but these were just written: they stay cached for the reads
        // that tend to follow). Only advice: a file system that ignores it still gets the
        // periodic sync below.
        let _ = rustix::fs::fadvise(
            file,
            self.kicked,
            std::num::NonZeroU64::new(written - self.kicked),
            rustix::fs::Advice::DontNeed,
        );
        self.kicked = written;
        if written.saturating_sub(self.synced) >= SYNC_EVERY {
            file.sync_data()?;
            self.synced = written;
        }
        Ok(())
    }
}

fn io_err<'a>(action: &'static str, path: &'a Path) -> impl FnOnce(io::Error) -> StoreError + 'a {
    move |source| StoreError::Io {
        action,
        path: path.to_owned(),
        source,
    }
}

/// One line of `files/index.db`: a file announced by a record.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FileEntry {
    /// The content.
    pub hash: ContentHash,
    /// Its size in bytes.
    pub size: u64,
    /// Who shared it.
    pub username: Username,
    /// When.
    pub timestamp: Timestamp,
    /// The record that announced it.
    pub id: u64,
    /// Where.
    pub room: Room,
}

impl FileEntry {
    /// The line, with its LF.
    pub fn line(&self) -> String {
        format!(
            "{};{};{};{};{};{}\n",
            self.hash, self.size, self.username, self.timestamp, self.id, self.room
        )
    }
}

fn canonical_number(text: &str) -> Option<u64> {
    let canonical = !text.is_empty()
        && text.len() <= 20
        && text.bytes().all(|b| b.is_ascii_digit())
        && (text == "0" || !text.starts_with('0'));
    canonical.then(|| text.parse().ok()).flatten()
}

/// Parses one `files/index.db` line, without its LF.
pub(crate) fn parse_entry(line: &[u8]) -> Result<FileEntry, LineError> {
    let line = std::str::from_utf8(line).map_err(|_| LineError::Utf8)?;
    let fields: Vec<&str> = line.split(';').collect();
    let [hash, size, username, timestamp, id, room] = fields[..] else {
        return Err(LineError::Fields);
    };
    Ok(FileEntry {
        hash: hash.parse().map_err(|_| LineError::ContentHash)?,
        size: canonical_number(size).ok_or(LineError::Size)?,
        username: Username::new(username).map_err(|_| LineError::Username)?,
        timestamp: Timestamp::parse(timestamp).map_err(|_| LineError::Timestamp)?,
        id: canonical_number(id)
            .filter(|&id| id > 0)
            .ok_or(LineError::Id)?,
        room: room.parse().map_err(|_| LineError::Room)?,
    })
}

/// The index of shared files: which record announced which content. It answers who may fetch
/// a content (the rooms of its announcements) and how much each user stores (the quota).
pub trait FileIndex: Send + Sync + std::fmt::Debug {
    /// The announcements of `hash`.
    fn announcements(&self, hash: &ContentHash) -> Result<Vec<FileEntry>, StoreError>;
    /// The bytes `user` uses: the sizes of the distinct contents they announced.
    fn quota_used(&self, user: &Username) -> Result<u64, StoreError>;
    /// Adds `entry` (durably), unless an entry for the same content, user and record is there:
    /// so a retried completion adds nothing twice.
    fn announce(&self, entry: &FileEntry) -> Result<(), StoreError>;
    /// Removes every announcement of `hash`; whether there was one.
    fn forget(&self, hash: &ContentHash) -> Result<bool, StoreError>;
    /// Every announcement, in the order they were made.
    fn entries(&self) -> Result<Vec<FileEntry>, StoreError>;
}

/// `files/index.db`: one line per announcement, appended and fsynced; read whole at opening.
pub struct FlatFileIndex {
    path: PathBuf,
    /// The entries, and the file to append to (`None`: opened to read only).
    inner: Mutex<(Vec<FileEntry>, Option<File>)>,
}

impl std::fmt::Debug for FlatFileIndex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FlatFileIndex")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl FlatFileIndex {
    /// Opens (creating if needed) `path`. A line that is not the last and does not parse is an
    /// error naming it; a torn last line (a crash mid-append) is cut off.
    pub fn open(path: &Path) -> Result<Self, StoreError> {
        let mut file = private::open(
            path,
            private::options().read(true).append(true).create(true),
        )
        .map_err(io_err("open", path))?;
        let (entries, good_len) = read_index(&mut file, path)?;
        if file.metadata().map_err(io_err("read", path))?.len() != good_len {
            file.set_len(good_len).map_err(io_err("truncate", path))?;
            file.sync_all().map_err(io_err("fsync", path))?;
        }
        Ok(Self {
            path: path.to_owned(),
            inner: Mutex::new((entries, Some(file))),
        })
    }

    /// Opens `path` to read it only: a torn last line (a write in progress) is skipped and left
    /// as it is, and the changing methods fail. A missing file reads as empty when `missing_ok`.
    fn open_read_only(path: &Path, missing_ok: bool) -> Result<Self, StoreError> {
        let entries = match File::open(path) {
            Ok(mut file) => read_index(&mut file, path)?.0,
            Err(e) if e.kind() == io::ErrorKind::NotFound && missing_ok => Vec::new(),
            Err(e) => return Err(io_err("open", path)(e)),
        };
        Ok(Self {
            path: path.to_owned(),
            inner: Mutex::new((entries, None)),
        })
    }

    fn read_only(&self, action: &'static str) -> StoreError {
        io_err(action, &self.path)(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "opened to read only",
        ))
    }
}

impl FileIndex for FlatFileIndex {
    fn announcements(&self, hash: &ContentHash) -> Result<Vec<FileEntry>, StoreError> {
        let guard = self.inner.lock();
        Ok(guard
            .0
            .iter()
            .filter(|e| e.hash == *hash)
            .cloned()
            .collect())
    }

    fn quota_used(&self, user: &Username) -> Result<u64, StoreError> {
        let key = user.key();
        let guard = self.inner.lock();
        let mut seen = HashSet::new();
        Ok(guard
            .0
            .iter()
            .filter(|e| e.username.key() == key && seen.insert(e.hash))
            .map(|e| e.size)
            .sum())
    }

    fn announce(&self, entry: &FileEntry) -> Result<(), StoreError> {
        let mut guard = self.inner.lock();
        let (entries, file) = &mut *guard;
        let key = entry.username.key();
        if entries
            .iter()
            .any(|e| e.hash == entry.hash && e.id == entry.id && e.username.key() == key)
        {
            return Ok(());
        }
        let Some(file) = file.as_mut() else {
            return Err(self.read_only("append to"));
        };
        file.write_all(entry.line().as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io_err("append to", &self.path))?;
        entries.push(entry.clone());
        Ok(())
    }

    fn forget(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let mut guard = self.inner.lock();
        let (entries, file) = &mut *guard;
        if !entries.iter().any(|e| e.hash == *hash) {
            return Ok(false);
        }
        if file.is_none() {
            return Err(self.read_only("rewrite"));
        }
        let kept: Vec<FileEntry> = entries
            .iter()
            .filter(|e| e.hash != *hash)
            .cloned()
            .collect();
        let text: String = kept.iter().map(FileEntry::line).collect();
        private::replace(&self.path, text.as_bytes()).map_err(io_err("rewrite", &self.path))?;
        *file = Some(
            private::open(&self.path, private::options().read(true).append(true))
                .map_err(io_err("open", &self.path))?,
        );
        *entries = kept;
        Ok(true)
    }

    fn entries(&self) -> Result<Vec<FileEntry>, StoreError> {
        Ok(self.inner.lock().0.clone())
    }
}

/// A partial upload's or an object's listing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredFile {
    /// The content.
    pub hash: ContentHash,
    /// Its size (for a partial upload: what has arrived so far).
    pub size: u64,
    /// For a partial upload: whose it is (the account's name in lower case).
    pub uploader: Option<String>,
    /// When it was last written.
    pub modified: SystemTime,
}

/// What [`ContentStore::collect_garbage`] removed (or, with `dry_run`, would remove).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct GarbageReport {
    /// Partial uploads untouched for longer than allowed.
    pub abandoned: Vec<StoredFile>,
    /// Objects no index line announces, older than the grace period.
    pub unannounced: Vec<StoredFile>,
}

/// The shared files of one server (or of every instance sharing a files directory). `Send +
/// Sync`: one per server, shared by its transfer threads.
pub struct ContentStore {
    root: PathBuf,
    index: Arc<dyn FileIndex>,
    /// Uploads in progress, by (user key, hash): one at a time each.
    active: Arc<Mutex<HashSet<(String, ContentHash)>>>,
}

impl std::fmt::Debug for ContentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentStore")
            .field("root", &self.root)
            .field("index", &self.index)
            .finish_non_exhaustive()
    }
}

impl ContentStore {
    /// Opens (creating if needed) the shared files under `data_dir`, with the data dir's own
    /// index (`files/index.db`, see [`FlatFileIndex::open`]).
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join(FILES_DIR);
        Self::make_dirs(&root)?;
        let index = FlatFileIndex::open(&root.join(FILE_INDEX))?;
        Ok(Self::with_index(root, Arc::new(index)))
    }

    /// Opens (creating if needed) the shared files in the directory `root`, announced in
    /// `index` (the database's, shared by several instances).
    pub fn open_shared(root: &Path, index: Arc<dyn FileIndex>) -> Result<Self, StoreError> {
        Self::make_dirs(root)?;
        Ok(Self::with_index(root.to_owned(), index))
    }

    /// The shared files in `root`, announced in `index`, to read only: no directory is made (a
    /// missing one lists as empty).
    pub fn open_shared_read_only(root: &Path, index: Arc<dyn FileIndex>) -> Self {
        Self::with_index(root.to_owned(), index)
    }

    fn make_dirs(root: &Path) -> Result<(), StoreError> {
        for dir in [root.join(OBJECTS), root.join(PARTIAL)] {
            private::dir(&dir).map_err(io_err("create", &dir))?;
        }
        private::tighten_path(root);
        Ok(())
    }

    fn with_index(root: PathBuf, index: Arc<dyn FileIndex>) -> Self {
        Self {
            root,
            index,
            active: Arc::default(),
        }
    }

    /// Opens the shared files under `data_dir` to read them only, changing nothing: for listings
    /// and checks while a server may run on the data dir. No directory is made, a torn last
    /// index line (a write in progress, or one the next start cuts off) is skipped and left as it
    /// is, and the index is opened read-only, so the changing methods fail. `None` when the data
    /// dir has no `files/` (nothing was ever shared).
    pub fn open_read_only(data_dir: &Path) -> Result<Option<Self>, StoreError> {
        let root = data_dir.join(FILES_DIR);
        if !root.exists() {
            return Ok(None);
        }
        // `files/` without its index: nothing was announced yet (the server makes the
        // directories before the index).
        let index = FlatFileIndex::open_read_only(&root.join(FILE_INDEX), true)?;
        Ok(Some(Self::with_index(root, Arc::new(index))))
    }

    /// The index in use.
    pub fn index(&self) -> &Arc<dyn FileIndex> {
        &self.index
    }

    /// Where the shared files are (`<data dir>/files`, or the shared files directory).
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn object_path(&self, hash: &ContentHash) -> PathBuf {
        let hex = hash.to_string();
        self.root.join(OBJECTS).join(&hex[..2]).join(hex)
    }

    fn partial_path(&self, user_key: &str, hash: &ContentHash) -> PathBuf {
        self.root.join(PARTIAL).join(format!("{user_key}.{hash}"))
    }

    /// The size of the stored content `hash`, if it is stored.
    pub fn size_of(&self, hash: &ContentHash) -> Option<u64> {
        std::fs::metadata(self.object_path(hash))
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map(|m| m.len())
    }

    /// How many bytes of `user`'s upload of `hash` are kept in its partial file (0: none), so
    /// the server can tell how much a resumed upload still needs.
    pub fn partial_size(&self, user: &Username, hash: &ContentHash) -> u64 {
        std::fs::metadata(self.partial_path(&user.key(), hash))
            .ok()
            .filter(std::fs::Metadata::is_file)
            .map_or(0, |m| m.len())
    }

    /// The stored content `hash`, opened for reading, and its size; `None` if it is not stored.
    pub fn open_object(&self, hash: &ContentHash) -> Result<Option<(File, u64)>, StoreError> {
        let path = self.object_path(hash);
        match File::open(&path) {
            Ok(file) => {
                let size = file.metadata().map_err(io_err("read", &path))?.len();
                Ok(Some((file, size)))
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(io_err("open", &path)(e)),
        }
    }

    /// The announcements of `hash` (whose rooms say who may fetch it).
    pub fn announcements(&self, hash: &ContentHash) -> Result<Vec<FileEntry>, StoreError> {
        self.index.announcements(hash)
    }

    /// The bytes `user` uses: the sizes of the distinct contents they announced.
    pub fn quota_used(&self, user: &Username) -> Result<u64, StoreError> {
        self.index.quota_used(user)
    }

    /// Starts or resumes `user`'s upload of `size` bytes with content `hash`. If the content is
    /// stored already, the upload is complete at once ([`Upload::offset`] = `size`). A partial
    /// file longer than `size` (another announcement's) starts again from nothing.
    pub fn begin(
        &self,
        user: &Username,
        hash: ContentHash,
        size: u64,
    ) -> Result<Upload, StoreError> {
        let key = user.key();
        if !self.active.lock().insert((key.clone(), hash)) {
            return Err(StoreError::UploadBusy {
                hash: hash.to_string(),
            });
        }
        // From here the slot is the upload's: it is given back when the upload is dropped.
        let mut upload = Upload {
            store_root: self.root.clone(),
            active: Arc::clone(&self.active),
            key,
            hash,
            size,
            offset: 0,
            hasher: Sha256::new(),
            behind: WriteBehind::default(),
            file: None,
            path: self.partial_path(&user.key(), &hash),
            object: self.object_path(&hash),
        };
        if let Some(stored) = self.size_of(&hash) {
            if stored != size {
                return Err(StoreError::UploadSize {
                    hash: hash.to_string(),
                    announced: size,
                    stored,
                });
            }
            upload.offset = size;
            return Ok(upload);
        }
        let path = upload.path.clone();
        let mut file = private::open(
            &path,
            private::options().read(true).write(true).create(true),
        )
        .map_err(io_err("open", &path))?;
        // Another instance sharing the files directory may be writing this partial file (this
        // process's own uploads are kept apart by `active`); the lock ends with the handle.
        if !lock_partial(&file, &path) {
            return Err(StoreError::UploadBusy {
                hash: hash.to_string(),
            });
        }
        let mut have = file.metadata().map_err(io_err("read", &path))?.len();
        if have > size {
            file.set_len(0).map_err(io_err("truncate", &path))?;
            have = 0;
        }
        // Hash what is there already, a piece at a time.
        let mut buf = vec![0u8; READ_PIECE.min(usize::try_from(have).unwrap_or(READ_PIECE))];
        let mut left = have;
        while left > 0 {
            let want = usize::try_from(left.min(buf.len() as u64)).unwrap_or(buf.len());
            file.read_exact(&mut buf[..want])
                .map_err(io_err("read", &path))?;
            upload.hasher.update(&buf[..want]);
            left -= want as u64;
        }
        file.seek(SeekFrom::Start(have))
            .map_err(io_err("seek in", &path))?;
        upload.offset = have;
        upload.behind = WriteBehind::from(have);
        upload.file = Some(file);
        Ok(upload)
    }

    /// Adds `entry` to the index (durably), unless an entry for the same content, user and
    /// record is there: so a retried completion adds nothing twice.
    pub fn announce(&self, entry: &FileEntry) -> Result<(), StoreError> {
        self.index.announce(entry)
    }

    /// Removes the content `hash` and its announcements (the records that announced it stay;
    /// fetching it is answered as for an unknown file). Whether it was stored.
    pub fn remove(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        self.index.forget(hash)?;
        let object = self.object_path(hash);
        match std::fs::remove_file(&object) {
            Ok(()) => Ok(true),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
            Err(e) => Err(io_err("remove", &object)(e)),
        }
    }

    /// Every stored object and every partial upload.
    pub fn list(&self) -> Result<(Vec<StoredFile>, Vec<StoredFile>), StoreError> {
        let mut objects = Vec::new();
        let dir = self.root.join(OBJECTS);
        for shard in read_dir(&dir)? {
            if !shard.is_dir() {
                continue;
            }
            for path in read_dir(&shard)? {
                if let Some(f) = listed(&path, None)? {
                    objects.push(f);
                }
            }
        }
        let mut partial = Vec::new();
        for path in read_dir(&self.root.join(PARTIAL))? {
            let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
            let Some((user, hash)) = name.rsplit_once('.') else {
                continue;
            };
            if hash.parse::<ContentHash>().is_ok()
                && let Some(f) = listed(&path, Some(user.to_owned()))?
            {
                partial.push(f);
            }
        }
        objects.sort_by_key(|f| f.hash);
        partial.sort_by(|a, b| (a.hash, &a.uploader).cmp(&(b.hash, &b.uploader)));
        Ok((objects, partial))
    }

    /// Removes partial uploads untouched for `abandoned_after` (unless one is in progress) and
    /// objects no index line announces that are older than `grace` (an upload whose record is
    /// still being stored is younger). With `dry_run`, only says what it would remove.
    pub fn collect_garbage(
        &self,
        now: SystemTime,
        abandoned_after: Duration,
        grace: Duration,
        dry_run: bool,
    ) -> Result<GarbageReport, StoreError> {
        let (objects, partial) = self.list()?;
        let older = |f: &StoredFile, age: Duration| {
            now.duration_since(f.modified)
                .is_ok_and(|elapsed| elapsed > age)
        };
        let mut report = GarbageReport::default();
        for f in partial {
            let user = f.uploader.clone().unwrap_or_default();
            if !older(&f, abandoned_after) || self.active.lock().contains(&(user.clone(), f.hash)) {
                continue;
            }
            let path = self.partial_path(&user, &f.hash);
            // Written by another instance right now (its lock is held): not abandoned.
            let in_use = File::open(&path).is_ok_and(|file| !lock_partial(&file, &path));
            if in_use {
                continue;
            }
            if !dry_run {
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
            }
            report.abandoned.push(f);
        }
        let announced: HashSet<ContentHash> =
            self.index.entries()?.iter().map(|e| e.hash).collect();
        for f in objects {
            if announced.contains(&f.hash) || !older(&f, grace) {
                continue;
            }
            if !dry_run {
                let path = self.object_path(&f.hash);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
            }
            report.unannounced.push(f);
        }
        Ok(report)
    }

    /// Checks that every object's content has its name's hash: the damaged ones.
    pub fn verify(&self) -> Result<Vec<ContentHash>, StoreError> {
        let (objects, _) = self.list()?;
        let mut damaged = Vec::new();
        let mut buf = vec![0u8; READ_PIECE];
        for f in objects {
            let path = self.object_path(&f.hash);
            let mut file = match File::open(&path) {
                Ok(file) => file,
                // Removed since it was listed (the server's cleaner, `files remove`): not
                // damaged, just gone.
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(io_err("open", &path)(e)),
            };
            let mut hasher = Sha256::new();
            loop {
                let n = file.read(&mut buf).map_err(io_err("read", &path))?;
                if n == 0 {
                    break;
                }
                hasher.update(&buf[..n]);
            }
            if ContentHash::from_digest(hasher.finalize().into()) != f.hash {
                damaged.push(f.hash);
            }
        }
        Ok(damaged)
    }

    /// Announcements per content, for listings: (hash → its announcements).
    pub fn index_by_hash(&self) -> Result<HashMap<ContentHash, Vec<FileEntry>>, StoreError> {
        let mut by: HashMap<ContentHash, Vec<FileEntry>> = HashMap::new();
        for e in self.index.entries()? {
            by.entry(e.hash).or_default().push(e);
        }
        Ok(by)
    }
}

/// Reads `files/index.db` from `file`: its entries and the length of its whole lines. A last line
/// without its LF (a crash mid-append, or an append in progress) ends the reading, logged; any
/// other line that does not parse is an error naming it.
fn read_index(file: &mut File, path: &Path) -> Result<(Vec<FileEntry>, u64), StoreError> {
    let mut index = Vec::new();
    let mut good_len = 0u64;
    let mut reader = BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0u64;
    loop {
        line.clear();
        let n = reader
            .read_until(b'\n', &mut line)
            .map_err(io_err("read", path))?;
        if n == 0 {
            break;
        }
        number += 1;
        let Some(content) = line.strip_suffix(b"\n") else {
            tracing::warn!(
                "{}: line {number} has no LF (an interrupted write)",
                path.display()
            );
            break;
        };
        let entry = parse_entry(content).map_err(|reason| StoreError::BadLine {
            path: path.to_owned(),
            line_number: number,
            reason,
        })?;
        index.push(entry);
        good_len += n as u64;
    }
    Ok((index, good_len))
}

/// Takes `file`'s exclusive lock without waiting: false if another process holds it. A file
/// system without locks counts as unlocked (uploads are still one at a time per process).
fn lock_partial(file: &File, path: &Path) -> bool {
    match file.try_lock() {
        Ok(()) => true,
        Err(std::fs::TryLockError::WouldBlock) => false,
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::debug!("cannot lock {}: {e}", path.display());
            true
        }
    }
}

/// The entries of `dir`; none if it does not exist (nothing was stored there yet).
fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(out),
        Err(e) => return Err(io_err("list", dir)(e)),
    };
    for entry in entries {
        out.push(entry.map_err(io_err("list", dir))?.path());
    }
    Ok(out)
}

fn listed(path: &Path, uploader: Option<String>) -> Result<Option<StoredFile>, StoreError> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("");
    let hash_text = name.rsplit('.').next().unwrap_or("");
    let Ok(hash) = hash_text.parse::<ContentHash>() else {
        return Ok(None);
    };
    let meta = match std::fs::metadata(path) {
        Ok(m) if m.is_file() => m,
        Ok(_) => return Ok(None),
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(io_err("read", path)(e)),
    };
    Ok(Some(StoredFile {
        hash,
        size: meta.len(),
        uploader,
        modified: meta.modified().unwrap_or(SystemTime::UNIX_EPOCH),
    }))
}

/// One user's upload of one content, in progress. Its slot (one upload per user and content) is
/// given back when it is dropped; its partial file stays for a resume unless it was finished or
/// found corrupt.
pub struct Upload {
    store_root: PathBuf,
    active: Arc<Mutex<HashSet<(String, ContentHash)>>>,
    key: String,
    hash: ContentHash,
    size: u64,
    offset: u64,
    hasher: Sha256,
    /// Hands the partial file to the disk as it grows.
    behind: WriteBehind,
    /// The partial file; `None` when the content was stored already.
    file: Option<File>,
    path: PathBuf,
    object: PathBuf,
}

impl std::fmt::Debug for Upload {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upload")
            .field("hash", &self.hash)
            .field("offset", &self.offset)
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

impl Drop for Upload {
    fn drop(&mut self) {
        self.active.lock().remove(&(self.key.clone(), self.hash));
    }
}

impl Upload {
    /// How many bytes are stored: where the next chunk must start.
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// The announced size.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// Whether every byte has arrived.
    pub fn is_complete(&self) -> bool {
        self.offset == self.size
    }

    /// Appends `bytes`, which must start at `offset` (the current [`Upload::offset`]) and not go
    /// past the announced size.
    pub fn write(&mut self, offset: u64, bytes: &[u8]) -> Result<(), StoreError> {
        if offset != self.offset {
            return Err(StoreError::UploadOffset {
                expected: self.offset,
                got: offset,
            });
        }
        let end = offset.saturating_add(bytes.len() as u64);
        if end > self.size {
            return Err(StoreError::UploadPastEnd {
                size: self.size,
                end,
            });
        }
        let Some(file) = self.file.as_mut() else {
            // Stored already: complete, so any byte is past the end (caught above).
            return Ok(());
        };
        file.write_all(bytes)
            .map_err(io_err("write to", &self.path))?;
        self.hasher.update(bytes);
        self.offset = end;
        self.behind
            .wrote(file, end)
            .map_err(io_err("fsync", &self.path))?;
        Ok(())
    }

    /// Completes the upload once every byte is there: fsyncs the partial file, checks the
    /// content's hash, and moves it into the object store (fsyncing the directories). Content
    /// with another hash is removed (the upload starts again from nothing) and reported as
    /// [`StoreError::Corrupt`]. Stored already: nothing to do.
    pub fn finish(mut self) -> Result<(), StoreError> {
        if self.offset != self.size {
            return Err(StoreError::UploadOffset {
                expected: self.size,
                got: self.offset,
            });
        }
        let Some(file) = self.file.take() else {
            return Ok(());
        };
        // The handle (and its lock) is kept until the file is renamed, so no other instance
        // starts on it in between.
        file.sync_all().map_err(io_err("fsync", &self.path))?;
        let digest = std::mem::take(&mut self.hasher).finalize();
        if ContentHash::from_digest(digest.into()) != self.hash {
            let _ = std::fs::remove_file(&self.path);
            return Err(StoreError::Corrupt {
                hash: self.hash.to_string(),
            });
        }
        let shard = self
            .object
            .parent()
            .map_or_else(|| self.store_root.join(OBJECTS), Path::to_path_buf);
        private::dir(&shard).map_err(io_err("create", &shard))?;
        if self.object.exists() {
            // Another user's upload of the same content finished first.
            let _ = std::fs::remove_file(&self.path);
            return Ok(());
        }
        std::fs::rename(&self.path, &self.object).map_err(io_err("rename into", &self.object))?;
        drop(file);
        for dir in [&shard, &self.store_root.join(PARTIAL)] {
            File::open(dir)
                .and_then(|d| d.sync_all())
                .map_err(io_err("fsync", dir))?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
