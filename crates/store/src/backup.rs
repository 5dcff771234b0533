//! `gc-server db backup DEST` and `db check DEST`: a consistent copy of a data dir, taken while a
//! server runs on it, and its verification.
//!
//! Consistency: the message files are only appended to, one batch at a time, and the writer
//! holds a shared `flock` on `database.msgids` while it writes a batch (`commit.rs`). The backup
//! takes that lock exclusively just long enough to list the rooms' files and read every file's
//! length, so the lengths are a cut at a batch boundary: every record below it is whole, in its
//! file, with its msgids line before it, and nothing of a later batch is. The bytes below those
//! lengths never change again (a failed batch is undone before the lock is released), so they
//! are copied afterwards without holding anything. The small files (accounts, rooms metadata,
//! decoy key, TLS identity) are replaced by rename when they change: each is read from one open
//! file, as it was at one moment.
//!
//! Shared files (`files/`, docs/files.md §6): `files/index.db` is appended to after the record
//! that announces a file is stored, so its length is read under the same lock as the message
//! files': every index line in the copy names a record in the copy (a record whose line came
//! later is what a crash at that moment leaves, and the store handles it). Then every object
//! the copied index names is copied. An object is renamed into `files/objects/` before its
//! index line is written and never changes afterwards, so each one named is there, complete,
//! whenever it is copied; objects no copied line names (an upload finishing during the backup,
//! or garbage) are left out, and `files/partial/` (uploads in progress) is copied empty. So the
//! copy needs no lock on the content, however large it is. An object named but absent, or
//! whose content is not its name's hash, is copied as it is (or not at all) and reported: the
//! backup still holds every message, and `db check` on it names the object.
//!
//! Safety of the result: the copy is written into a temporary sibling directory, each file
//! fsynced, a `BACKUP-COMPLETE` manifest (sizes, line counts, SHA-256) written and fsynced last,
//! and only then renamed to DEST. An interrupted backup leaves no DEST (or DEST as empty as it
//! was), never a partial copy under that name.

use std::collections::{BTreeSet, HashSet};
use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gc_protocol::types::{ContentHash, Timestamp};
use sha2::{Digest as _, Sha256};

use crate::content::{FILE_INDEX, FILES_DIR, parse_entry};
use crate::error::{Result, StoreError};
use crate::files::{parent_dir, sync_dir};
use crate::lock::DATABASE_FILE;
use crate::messages::{ROOMS_DIR, find_room_files};
use crate::msgids::MSGIDS_FILE;
use crate::private;

/// The manifest a complete backup holds, written last.
pub const MANIFEST_FILE: &str = "BACKUP-COMPLETE";
/// The first line of the manifest (its format's version).
const MANIFEST_HEADER: &str = "gc-backup 1";

/// The small files copied whole as they are at one moment (absent ones are skipped). Line files
/// are cut at their last LF (a writer appending to one never leaves half a line in the copy).
const SMALL_LINE_FILES: [&str; 4] = [
    crate::accounts::ACCOUNTS_FILE,
    crate::rooms::ROOMS_FILE,
    crate::rooms::MEMBERS_FILE,
    crate::rooms::ADMINS_FILE,
];
/// Binary files copied whole: the decoy secret, and the TLS identity, so that a restored server
/// shows the fingerprint its clients pinned (a new key would make every client warn).
const WHOLE_FILES: [&str; 3] = ["decoy.key", "tls/key.pem", "tls/cert.pem"];

/// One file of a backup, as the manifest lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupFile {
    /// Its path inside the backup (`database.db`, `rooms/dev.db`, `tls/key.pem`).
    pub name: String,
    /// Its size.
    pub bytes: u64,
    /// Its LF count.
    pub lines: u64,
    /// Its SHA-256, in lower-case hex.
    pub sha256: String,
}

/// What [`backup`] made.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupReport {
    /// The finished backup (DEST).
    pub dest: PathBuf,
    /// Records copied, in all the rooms' files.
    pub records: u64,
    /// Every file copied, in the manifest's order.
    pub files: Vec<BackupFile>,
    /// How long the cut's lock was held (appends waited at most this long for it).
    pub lock_held: Duration,
    /// Shared files' objects copied (each is also in [`BackupReport::files`]).
    pub objects: u64,
    /// Objects the copied `files/index.db` names that were not in the data dir (not copied).
    pub missing_objects: Vec<ContentHash>,
    /// Objects copied whose content is not their name's hash (damaged in the data dir).
    pub damaged_objects: Vec<ContentHash>,
}

impl BackupReport {
    /// Bytes copied in all.
    pub fn bytes(&self) -> u64 {
        self.files.iter().map(|f| f.bytes).sum()
    }
}

/// What [`verify_backup`] found: the manifest's files, each as found on disk.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BackupCheck {
    /// When the backup was taken (UTC), as the manifest says.
    pub taken: String,
    /// The records the manifest counts.
    pub records: u64,
    /// The files the manifest lists.
    pub files: Vec<BackupFile>,
    /// Every difference between the manifest and the directory (empty: the backup is intact).
    pub problems: Vec<String>,
}

/// Copies the data dir `dir` into `dest`, which must not exist or be an empty directory, while
/// a server may run on `dir` (see the module's notes for why the copy is consistent). On any
/// error the partial copy is removed and `dest` is left as it was.
pub fn backup(dir: &Path, dest: &Path) -> Result<BackupReport> {
    if !dir.join(DATABASE_FILE).is_file() {
        return Err(StoreError::BackupTarget {
            path: dest.to_owned(),
            why: format!("{} holds no {DATABASE_FILE}: not a data dir", dir.display()),
        });
    }
    check_dest(dest)?;
    let name = dest
        .file_name()
        .ok_or_else(|| StoreError::BackupTarget {
            path: dest.to_owned(),
            why: "it names no directory".into(),
        })?
        .to_string_lossy()
        .into_owned();
    let parent = parent_dir(dest);
    // A sibling, so that the final rename stays on one file system; its name says what it is.
    let tmp = parent.join(format!(".{name}.backup-partial"));
    if tmp.exists() {
        // Left by an interrupted backup to the same place: never a complete one.
        fs::remove_dir_all(&tmp).map_err(|e| out_err("remove the old partial copy", &tmp, e))?;
    }
    private::create_dirs(&tmp).map_err(|e| out_err("create the directory", &tmp, e))?;
    match copy_all(dir, &tmp).and_then(|report| finish(&tmp, dest, report)) {
        Ok(report) => Ok(report),
        Err(e) => {
            let _ = fs::remove_dir_all(&tmp);
            Err(e)
        }
    }
}

/// Refuses a destination that exists and is not an empty directory.
fn check_dest(dest: &Path) -> Result<()> {
    let refuse = |why: String| StoreError::BackupTarget {
        path: dest.to_owned(),
        why,
    };
    match fs::symlink_metadata(dest) {
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(refuse(format!("cannot look at it: {e}"))),
        Ok(meta) if !meta.is_dir() => Err(refuse("it exists and is not a directory".into())),
        Ok(_) => match fs::read_dir(dest) {
            Ok(mut entries) => match entries.next() {
                None => Ok(()),
                Some(_) => Err(refuse(
                    "it is not empty (a backup never overwrites anything: give a new or empty \
                     directory)"
                        .into(),
                )),
            },
            Err(e) => Err(refuse(format!("cannot list it: {e}"))),
        },
    }
}

/// An open source file and how much of it belongs to the copy.
struct Source {
    name: String,
    file: File,
    len: u64,
}

/// Takes the cut (under the batch lock) and copies everything into `tmp`.
fn copy_all(dir: &Path, tmp: &Path) -> Result<BackupReport> {
    let (sources, index, lock_held) = cut(dir)?;
    let mut report = BackupReport {
        dest: PathBuf::new(),
        records: 0,
        files: Vec::new(),
        lock_held,
        objects: 0,
        missing_objects: Vec::new(),
        damaged_objects: Vec::new(),
    };
    for s in &sources {
        // Whole records only (a batch boundary ends with an LF; this also keeps out a torn
        // line a failed server left behind).
        let end = last_lf_end(&s.file, s.len, &dir.join(&s.name))?;
        let f = copy_range(&s.file, &dir.join(&s.name), end, tmp, &s.name)?;
        if s.name != MSGIDS_FILE {
            report.records += f.lines;
        }
        report.files.push(f);
    }
    for name in SMALL_LINE_FILES.iter().chain(WHOLE_FILES.iter()) {
        let Some(file) = open_source(&dir.join(name))? else {
            continue;
        };
        let path = dir.join(name);
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("read the metadata of", &path, e))?
            .len();
        let end = if SMALL_LINE_FILES.contains(name) {
            last_lf_end(&file, len, &path)?
        } else {
            len
        };
        report.files.push(copy_range(&file, &path, end, tmp, name)?);
    }
    // What the server set aside: kept with the data, as the operations notes promise.
    for (sub, extra) in aside_files(dir)? {
        let path = dir.join(&sub).join(&extra);
        let Some(file) = open_source(&path)? else {
            continue;
        };
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("read the metadata of", &path, e))?
            .len();
        let name = if sub.is_empty() {
            extra
        } else {
            format!("{sub}/{extra}")
        };
        report
            .files
            .push(copy_range(&file, &path, len, tmp, &name)?);
    }
    if let Some(index) = index {
        copy_shared_files(dir, tmp, &index, &mut report)?;
    }
    Ok(report)
}

/// The path of an object inside a data dir or a backup, relative to it.
fn object_name(hash: &ContentHash) -> String {
    let hex = hash.to_string();
    format!("{FILES_DIR}/objects/{}/{hex}", &hex[..2])
}

/// The hashes `files/index.db` text names, each once, in order.
fn named_objects(text: &[u8]) -> BTreeSet<ContentHash> {
    text.split(|&b| b == b'\n')
        .filter_map(|line| parse_entry(line).ok())
        .map(|e| e.hash)
        .collect()
}

/// Copies `files/index.db` up to the cut's length (whole lines), then every object it names
/// (see the module's notes for why that is consistent).
fn copy_shared_files(
    dir: &Path,
    tmp: &Path,
    index: &Source,
    report: &mut BackupReport,
) -> Result<()> {
    let index_path = dir.join(&index.name);
    let end = last_lf_end(&index.file, index.len, &index_path)?;
    report
        .files
        .push(copy_range(&index.file, &index_path, end, tmp, &index.name)?);
    // The whole layout, empty where nothing is copied, as the store expects to find it.
    for sub in ["objects", "partial"] {
        let d = tmp.join(FILES_DIR).join(sub);
        private::create_dirs(&d).map_err(|e| out_err("create the directory", &d, e))?;
    }
    let copied = tmp.join(&index.name);
    let text = fs::read(&copied).map_err(|e| out_err("read back", &copied, e))?;
    for hash in named_objects(&text) {
        let name = object_name(&hash);
        let path = dir.join(&name);
        let Some(file) = open_source(&path)? else {
            report.missing_objects.push(hash);
            continue;
        };
        let len = file
            .metadata()
            .map_err(|e| StoreError::io("read the metadata of", &path, e))?
            .len();
        let f = copy_range(&file, &path, len, tmp, &name)?;
        if f.sha256 != hash.to_string() {
            report.damaged_objects.push(hash);
        }
        report.objects += 1;
        report.files.push(f);
    }
    Ok(())
}

/// Opens every message file and reads its length under the exclusive batch lock: a cut at a
/// batch boundary. Returns the open files (later renames do not matter to them) and how long
/// the lock was held.
fn cut(dir: &Path) -> Result<(Vec<Source>, Option<Source>, Duration)> {
    let msgids_path = dir.join(MSGIDS_FILE);
    let msgids = locked_msgids(&msgids_path)?;
    let lock = msgids.as_ref();
    let locked_at = Instant::now();
    let taken = (|| {
        let mut sources = Vec::new();
        let mut push = |name: String, file: File| -> Result<()> {
            let len = file
                .metadata()
                .map_err(|e| StoreError::io("read the metadata of", dir.join(&name), e))?
                .len();
            sources.push(Source { name, file, len });
            Ok(())
        };
        if let Some(file) = open_source(&dir.join(DATABASE_FILE))? {
            push(DATABASE_FILE.to_owned(), file)?;
        }
        for (_, path) in find_room_files(&dir.join(ROOMS_DIR))? {
            let Some(stem) = path.file_name() else {
                continue;
            };
            let name = format!("{ROOMS_DIR}/{}", stem.to_string_lossy());
            if let Some(file) = open_source(&path)? {
                push(name, file)?;
            }
        }
        if let Some(file) = &msgids {
            let copy = file
                .try_clone()
                .map_err(|e| StoreError::io("open", &msgids_path, e))?;
            push(MSGIDS_FILE.to_owned(), copy)?;
        }
        // Last: a line appended after its record was stored is in only if that record is.
        let index_name = format!("{FILES_DIR}/{FILE_INDEX}");
        let index_path = dir.join(&index_name);
        let index = match open_source(&index_path)? {
            Some(file) => {
                let len = file
                    .metadata()
                    .map_err(|e| StoreError::io("read the metadata of", &index_path, e))?
                    .len();
                Some(Source {
                    name: index_name,
                    file,
                    len,
                })
            }
            None => None,
        };
        Ok((sources, index))
    })();
    let held = locked_at.elapsed();
    if let Some(file) = lock {
        let _ = file.unlock();
    }
    let (sources, index) = taken?;
    Ok((sources, index, held))
}

/// `database.msgids`, opened and locked exclusively (waiting for the batch being written, if
/// any: a few fsyncs at most); `None` when no server ever opened this data dir (it makes the
/// file at once), so there is no writer to wait for. A server starting up may replace the file
/// (a compaction, by rename) after it was opened here: the lock is then on a file no writer
/// uses, so it is taken again on the one at the path.
fn locked_msgids(path: &Path) -> Result<Option<File>> {
    use std::os::unix::fs::MetadataExt as _;
    let id = |m: &fs::Metadata| (m.dev(), m.ino());
    loop {
        let Some(file) = open_source(path)? else {
            return Ok(None);
        };
        file.lock().map_err(|e| StoreError::io("lock", path, e))?;
        let held = file
            .metadata()
            .map_err(|e| StoreError::io("read the metadata of", path, e))?;
        match fs::metadata(path) {
            Ok(now) if id(&now) == id(&held) => return Ok(Some(file)),
            // Replaced meanwhile: drop this lock and take the new file's.
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(StoreError::io("read the metadata of", path, e)),
        }
    }
}

/// The `.corrupt` files and removed rooms' files (`rooms/NAME.db.removed-TIME`): `(sub dir, name)`.
fn aside_files(dir: &Path) -> Result<Vec<(String, String)>> {
    let mut found = Vec::new();
    for sub in ["", ROOMS_DIR] {
        let d = dir.join(sub);
        let entries = match fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io("list", &d, e)),
        };
        for entry in entries {
            let entry = entry.map_err(|e| StoreError::io("list", &d, e))?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
                continue;
            };
            let is_file = entry.file_type().is_ok_and(|t| t.is_file());
            if is_file && (name.ends_with(".corrupt") || name.contains(".db.removed-")) {
                found.push((sub.to_owned(), name));
            }
        }
    }
    found.sort();
    Ok(found)
}

/// Opens a source file for reading; `None` when it does not exist.
fn open_source(path: &Path) -> Result<Option<File>> {
    match File::open(path) {
        Ok(f) => Ok(Some(f)),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io("open", path, e)),
    }
}

/// The offset just past the last LF in the first `len` bytes of `file` (0 if none).
fn last_lf_end(file: &File, len: u64, path: &Path) -> Result<u64> {
    let mut buf = vec![0u8; 1 << 16];
    let mut end = len;
    while end > 0 {
        let start = end.saturating_sub(buf.len() as u64);
        let chunk = &mut buf[..usize::try_from(end - start).unwrap_or(0)];
        file.read_exact_at(chunk, start)
            .map_err(|e| StoreError::io("read", path, e))?;
        if let Some(i) = chunk.iter().rposition(|&b| b == b'\n') {
            return Ok(start + i as u64 + 1);
        }
        end = start;
    }
    Ok(0)
}

/// An error writing the backup.
fn out_err(action: &'static str, path: &Path, source: io::Error) -> StoreError {
    StoreError::BackupOutput {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Copies the first `len` bytes of `src` into a new file `name` (0600) under `tmp`, fsynced;
/// its manifest entry: name, size, LF count and SHA-256.
fn copy_range(src: &File, src_path: &Path, len: u64, tmp: &Path, name: &str) -> Result<BackupFile> {
    let dest = &tmp.join(name);
    let dir = parent_dir(dest);
    private::create_dirs(dir).map_err(|e| out_err("create the directory", dir, e))?;
    let out = private::options()
        .write(true)
        .create_new(true)
        .open(dest)
        .map_err(|e| out_err("create", dest, e))?;
    let mut out = Budgeted(&out);
    let mut hash = Sha256::new();
    let mut lines = 0u64;
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0u64;
    while offset < len {
        let n = usize::try_from(len - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let chunk = &mut buf[..n];
        src.read_exact_at(chunk, offset)
            .map_err(|e| StoreError::io("read", src_path, e))?;
        hash.update(&*chunk);
        lines += chunk.iter().filter(|&&b| b == b'\n').count() as u64;
        out.write_all(chunk)
            .map_err(|e| out_err("write to", dest, e))?;
        offset += n as u64;
    }
    out.0.sync_all().map_err(|e| out_err("fsync", dest, e))?;
    Ok(BackupFile {
        name: name.to_owned(),
        bytes: len,
        lines,
        sha256: hex(&hash.finalize()),
    })
}

/// Writes through to the file; in unit tests, fails like a full disk once a set number of
/// bytes is written (a real full disk cannot be made without privileges).
struct Budgeted<'a>(&'a File);

#[cfg(test)]
thread_local! {
    /// Bytes the backup may still write in this thread before it fails, and how.
    static BUDGET: std::cell::Cell<Option<u64>> = const { std::cell::Cell::new(None) };
    static FAILS_AS: std::cell::Cell<io::ErrorKind> =
        const { std::cell::Cell::new(io::ErrorKind::StorageFull) };
}

impl io::Write for Budgeted<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        #[cfg(test)]
        if let Some(left) = BUDGET.get() {
            if left == 0 {
                return Err(io::Error::new(FAILS_AS.get(), "simulated in a unit test"));
            }
            let n = buf.len().min(usize::try_from(left).unwrap_or(usize::MAX));
            BUDGET.set(Some(left - n as u64));
            return io::Write::write(&mut self.0, &buf[..n]);
        }
        io::Write::write(&mut self.0, buf)
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

fn hex(bytes: &[u8]) -> String {
    let mut s = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        let _ = write!(s, "{b:02x}");
    }
    s
}

/// Writes the manifest last, fsyncs the directories and renames the copy into place.
fn finish(tmp: &Path, dest: &Path, mut report: BackupReport) -> Result<BackupReport> {
    let mut text = format!(
        "{MANIFEST_HEADER}\ntaken\t{} UTC\nrecords\t{}\n",
        Timestamp::now().utc_datetime(),
        report.records
    );
    for f in &report.files {
        let _ = writeln!(
            text,
            "file\t{}\t{}\t{}\t{}",
            f.name, f.bytes, f.lines, f.sha256
        );
    }
    // The count of file lines: a manifest cut short is told from a complete one.
    let _ = writeln!(text, "end\t{}", report.files.len());
    let manifest = tmp.join(MANIFEST_FILE);
    let file = private::options()
        .write(true)
        .create_new(true)
        .open(&manifest)
        .map_err(|e| out_err("create", &manifest, e))?;
    Budgeted(&file)
        .write_all(text.as_bytes())
        .and_then(|()| file.sync_all())
        .map_err(|e| out_err("write to", &manifest, e))?;
    let mut dirs: Vec<PathBuf> = [ROOMS_DIR, "tls"].iter().map(|s| tmp.join(s)).collect();
    let objects = tmp.join(FILES_DIR).join("objects");
    if let Ok(shards) = fs::read_dir(&objects) {
        dirs.extend(shards.filter_map(|e| e.ok()).map(|e| e.path()));
    }
    dirs.extend([objects, tmp.join(FILES_DIR), tmp.to_owned()]);
    for d in dirs {
        if d.is_dir() {
            sync_dir(&d).map_err(|e| match e {
                StoreError::Io { source, .. } => out_err("fsync the directory", &d, source),
                other => other,
            })?;
        }
    }
    // Renaming over an empty directory replaces it; anything else was refused before.
    fs::rename(tmp, dest).map_err(|e| out_err("rename the finished copy to", dest, e))?;
    let parent = parent_dir(dest);
    File::open(parent)
        .and_then(|d| d.sync_all())
        .map_err(|e| out_err("fsync the directory", parent, e))?;
    report.dest = dest.to_owned();
    Ok(report)
}

/// Checks `dir` against its `BACKUP-COMPLETE` manifest: every listed file present with its size
/// and SHA-256, and no message file left out. [`StoreError::NotABackup`] when there is no
/// readable, complete manifest; differences are listed in [`BackupCheck::problems`].
pub fn verify_backup(dir: &Path) -> Result<BackupCheck> {
    let not = |why: String| StoreError::NotABackup {
        path: dir.to_owned(),
        why,
    };
    let manifest = dir.join(MANIFEST_FILE);
    let mut text = String::new();
    match File::open(&manifest) {
        Ok(mut f) => f
            .read_to_string(&mut text)
            .map_err(|e| not(format!("cannot read its {MANIFEST_FILE}: {e}")))?,
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            return Err(not(format!(
                "it has no {MANIFEST_FILE} manifest (an interrupted backup, or not a backup)"
            )));
        }
        Err(e) => return Err(not(format!("cannot open its {MANIFEST_FILE}: {e}"))),
    };
    let mut lines = text.lines();
    if lines.next() != Some(MANIFEST_HEADER) {
        return Err(not(format!(
            "its {MANIFEST_FILE} does not start with `{MANIFEST_HEADER}`"
        )));
    }
    let mut check = BackupCheck {
        taken: String::new(),
        records: 0,
        files: Vec::new(),
        problems: Vec::new(),
    };
    let mut ended = false;
    for line in lines {
        let fields: Vec<&str> = line.split('\t').collect();
        match fields.as_slice() {
            ["taken", t] => check.taken = (*t).to_owned(),
            ["records", n] => {
                check.records = n
                    .parse()
                    .map_err(|_| not(format!("bad records line: {line}")))?;
            }
            ["file", name, bytes, lines, sha] => {
                let bad = || not(format!("bad file line: {line}"));
                // A listed name never leaves the backup directory.
                if name
                    .split('/')
                    .any(|c| c.is_empty() || c == "." || c == "..")
                {
                    return Err(bad());
                }
                check.files.push(BackupFile {
                    name: (*name).to_owned(),
                    bytes: bytes.parse().map_err(|_| bad())?,
                    lines: lines.parse().map_err(|_| bad())?,
                    sha256: (*sha).to_owned(),
                });
            }
            ["end", n] if *n == check.files.len().to_string() => ended = true,
            _ => return Err(not(format!("unexpected manifest line: {line}"))),
        }
    }
    if !ended {
        return Err(not(format!("its {MANIFEST_FILE} is cut short")));
    }
    for f in &check.files {
        let path = dir.join(&f.name);
        match File::open(&path) {
            Ok(file) => {
                let len = file.metadata().map(|m| m.len()).unwrap_or(u64::MAX);
                if len != f.bytes {
                    check.problems.push(format!(
                        "{}: {len} bytes, the manifest says {}",
                        f.name, f.bytes
                    ));
                    continue;
                }
                let got = sha256_of(&file, len, &path)?;
                if got != f.sha256 {
                    check.problems.push(format!(
                        "{}: SHA-256 {got}, the manifest says {}",
                        f.name, f.sha256
                    ));
                }
            }
            Err(e) => check.problems.push(format!("{}: {e}", f.name)),
        }
    }
    // A message file the manifest does not know was not part of the copy.
    let listed: Vec<&str> = check.files.iter().map(|f| f.name.as_str()).collect();
    check_shared_files(dir, &check.files, &mut check.problems);
    let mut present = vec![
        DATABASE_FILE.to_owned(),
        format!("{FILES_DIR}/{FILE_INDEX}"),
    ];
    if let Ok(rooms) = find_room_files(&dir.join(ROOMS_DIR)) {
        for (_, path) in rooms {
            if let Some(n) = path.file_name() {
                present.push(format!("{ROOMS_DIR}/{}", n.to_string_lossy()));
            }
        }
    }
    for name in present {
        if !listed.contains(&name.as_str()) && dir.join(&name).exists() {
            check
                .problems
                .push(format!("{name} is not in the manifest"));
        }
    }
    Ok(check)
}

/// The shared files' part of a backup's check: each object the manifest lists has its name's
/// hash (its content was held to the manifest's SHA-256 already), every object
/// `files/index.db` names is in the backup, and no object is there that the manifest does not
/// list. Differences go to `problems`.
fn check_shared_files(dir: &Path, files: &[BackupFile], problems: &mut Vec<String>) {
    let prefix = format!("{FILES_DIR}/objects/");
    let names: HashSet<&str> = files.iter().map(|f| f.name.as_str()).collect();
    let mut listed = HashSet::new();
    for f in files {
        let Some(rest) = f.name.strip_prefix(&prefix) else {
            continue;
        };
        match rest.rsplit('/').next().map(str::parse::<ContentHash>) {
            Some(Ok(hash)) if object_name(&hash) == f.name => {
                if f.sha256 != hash.to_string() {
                    problems.push(format!(
                        "{}: its content's SHA-256 is {}, not its name: it was damaged in the \
                         data dir before the backup (`gc-server files verify` there lists such)",
                        f.name, f.sha256
                    ));
                }
                listed.insert(hash);
            }
            _ => problems.push(format!("{}: not the name of an object", f.name)),
        }
    }
    let index_name = format!("{FILES_DIR}/{FILE_INDEX}");
    match fs::read(dir.join(&index_name)) {
        Ok(text) => {
            let mut reported = HashSet::new();
            for (i, line) in text.split_inclusive(|&b| b == b'\n').enumerate() {
                let number = i + 1;
                let Some(line) = line.strip_suffix(b"\n") else {
                    problems.push(format!("{index_name}: line {number} has no LF"));
                    continue;
                };
                match parse_entry(line) {
                    Ok(e) if !listed.contains(&e.hash) && reported.insert(e.hash) => {
                        problems.push(format!(
                            "{index_name} line {number} names {}, which the backup does not \
                             hold (it was missing from the data dir when the backup was made): \
                             after a restore it cannot be fetched",
                            e.hash
                        ));
                    }
                    Ok(_) => {}
                    Err(reason) => {
                        problems.push(format!("{index_name} line {number}: {reason}"));
                    }
                }
            }
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => {}
        Err(e) => problems.push(format!("{index_name}: {e}")),
    }
    // Objects in the directory that were not part of the copy.
    let objects = dir.join(FILES_DIR).join("objects");
    let mut found = Vec::new();
    if let Ok(shards) = fs::read_dir(&objects) {
        for shard in shards.filter_map(|e| e.ok()) {
            if let Ok(entries) = fs::read_dir(shard.path()) {
                for entry in entries.filter_map(|e| e.ok()) {
                    found.push(format!(
                        "{prefix}{}/{}",
                        shard.file_name().to_string_lossy(),
                        entry.file_name().to_string_lossy()
                    ));
                }
            }
        }
    }
    found.sort();
    for name in found {
        if !names.contains(name.as_str()) {
            problems.push(format!("{name} is not in the manifest"));
        }
    }
}

fn sha256_of(file: &File, len: u64, path: &Path) -> Result<String> {
    let mut hash = Sha256::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut offset = 0;
    while offset < len {
        let n = usize::try_from(len - offset)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        file.read_exact_at(&mut buf[..n], offset)
            .map_err(|e| StoreError::io("read", path, e))?;
        hash.update(&buf[..n]);
        offset += n as u64;
    }
    Ok(hex(&hash.finalize()))
}

#[cfg(test)]
mod tests;
