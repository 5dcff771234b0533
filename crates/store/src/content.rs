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

/// What the index holds, in memory.
#[derive(Default)]
struct Index {
    entries: Vec<FileEntry>,
}

impl Index {
    fn has(&self, hash: &ContentHash, user_key: &str, id: u64) -> bool {
        self.entries
            .iter()
            .any(|e| e.hash == *hash && e.id == id && e.username.key() == user_key)
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

/// The shared files of one data dir. `Send + Sync`: one per server, shared by its transfer
/// threads.
pub struct ContentStore {
    root: PathBuf,
    index: Mutex<(Index, File)>,
    /// Uploads in progress, by (user key, hash): one at a time each.
    active: Arc<Mutex<HashSet<(String, ContentHash)>>>,
}

impl std::fmt::Debug for ContentStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ContentStore")
            .field("root", &self.root)
            .finish_non_exhaustive()
    }
}

impl ContentStore {
    /// Opens (creating if needed) the shared files under `data_dir`. An index line that is not
    /// the last and does not parse is an error naming it; a torn last line (a crash mid-append)
    /// is cut off.
    pub fn open(data_dir: &Path) -> Result<Self, StoreError> {
        let root = data_dir.join(FILES_DIR);
        for dir in [root.join(OBJECTS), root.join(PARTIAL)] {
            private::dir(&dir).map_err(io_err("create", &dir))?;
        }
        private::tighten_path(&root);
        let path = root.join(FILE_INDEX);
        let mut file = private::open(
            &path,
            private::options().read(true).append(true).create(true),
        )
        .map_err(io_err("open", &path))?;
        let (index, good_len) = read_index(&mut file, &path)?;
        if file.metadata().map_err(io_err("read", &path))?.len() != good_len {
            file.set_len(good_len).map_err(io_err("truncate", &path))?;
            file.sync_all().map_err(io_err("fsync", &path))?;
        }
        Ok(Self {
            root,
            index: Mutex::new((index, file)),
            active: Arc::default(),
        })
    }

    /// Opens the shared files under `data_dir` to read them only, changing nothing: for listings
    /// and checks while a server may run on the data dir. No directory is made, a torn last
    /// index line (a write in progress, or one the next start cuts off) is skipped and left as it
    /// is, and the index is opened read-only, so the changing methods fail. `None` when the data
    /// dir has no `files/` (nothing was ever shared).
    pub fn open_read_only(data_dir: &Path) -> Result<Option<Self>, StoreError> {
        let root = data_dir.join(FILES_DIR);
        let path = root.join(FILE_INDEX);
        let mut file = match File::open(&path) {
            Ok(file) => file,
            Err(e) if e.kind() == io::ErrorKind::NotFound && !root.exists() => return Ok(None),
            Err(e) => return Err(io_err("open", &path)(e)),
        };
        // A torn last line (a write in progress) is skipped, not cut: this opening changes
        // nothing.
        let (index, _) = read_index(&mut file, &path)?;
        Ok(Some(Self {
            root,
            index: Mutex::new((index, file)),
            active: Arc::default(),
        }))
    }

    /// Where the shared files are (`<data dir>/files`).
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

    /// The index lines announcing `hash` (whose rooms say who may fetch it).
    pub fn announcements(&self, hash: &ContentHash) -> Vec<FileEntry> {
        let guard = self.index.lock();
        guard
            .0
            .entries
            .iter()
            .filter(|e| e.hash == *hash)
            .cloned()
            .collect()
    }

    /// The bytes `user` uses: the sizes of the distinct contents they announced.
    pub fn quota_used(&self, user: &Username) -> u64 {
        let key = user.key();
        let guard = self.index.lock();
        let mut seen = HashSet::new();
        guard
            .0
            .entries
            .iter()
            .filter(|e| e.username.key() == key && seen.insert(e.hash))
            .map(|e| e.size)
            .sum()
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
        upload.file = Some(file);
        Ok(upload)
    }

    /// Appends `entry` to the index (fsynced), unless a line for the same content, user and
    /// record is there: so a retried completion adds nothing twice.
    pub fn announce(&self, entry: &FileEntry) -> Result<(), StoreError> {
        let mut guard = self.index.lock();
        let (index, file) = &mut *guard;
        if index.has(&entry.hash, &entry.username.key(), entry.id) {
            return Ok(());
        }
        let path = self.root.join(FILE_INDEX);
        file.write_all(entry.line().as_bytes())
            .and_then(|()| file.sync_data())
            .map_err(io_err("append to", &path))?;
        index.entries.push(entry.clone());
        Ok(())
    }

    /// Removes the content `hash` and its index lines (the records that announced it stay;
    /// fetching it is answered as for an unknown file). Whether it was stored.
    pub fn remove(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let mut guard = self.index.lock();
        let (index, file) = &mut *guard;
        let path = self.root.join(FILE_INDEX);
        if index.entries.iter().any(|e| e.hash == *hash) {
            let kept: Vec<FileEntry> = index
                .entries
                .iter()
                .filter(|e| e.hash != *hash)
                .cloned()
                .collect();
            let text: String = kept.iter().map(FileEntry::line).collect();
            private::replace(&path, text.as_bytes()).map_err(io_err("rewrite", &path))?;
            *file = private::open(&path, private::options().read(true).append(true))
                .map_err(io_err("open", &path))?;
            index.entries = kept;
        }
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
            if !dry_run {
                let path = self.partial_path(&user, &f.hash);
                match std::fs::remove_file(&path) {
                    Ok(()) => {}
                    Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                    Err(e) => return Err(io_err("remove", &path)(e)),
                }
            }
            report.abandoned.push(f);
        }
        let announced: HashSet<ContentHash> =
            self.index.lock().0.entries.iter().map(|e| e.hash).collect();
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
            let mut file = File::open(&path).map_err(io_err("open", &path))?;
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

    /// Index lines per content, for listings: (hash → its announcements).
    pub fn index_by_hash(&self) -> HashMap<ContentHash, Vec<FileEntry>> {
        let mut by: HashMap<ContentHash, Vec<FileEntry>> = HashMap::new();
        for e in &self.index.lock().0.entries {
            by.entry(e.hash).or_default().push(e.clone());
        }
        by
    }
}

/// Reads `files/index.db` from `file`: its entries and the length of its whole lines. A last line
/// without its LF (a crash mid-append, or an append in progress) ends the reading, logged; any
/// other line that does not parse is an error naming it.
fn read_index(file: &mut File, path: &Path) -> Result<(Index, u64), StoreError> {
    let mut index = Index::default();
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
        index.entries.push(entry);
        good_len += n as u64;
    }
    Ok((index, good_len))
}

fn read_dir(dir: &Path) -> Result<Vec<PathBuf>, StoreError> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io_err("list", dir))? {
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
        file.sync_all().map_err(io_err("fsync", &self.path))?;
        drop(file);
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
