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
//! Safety of the result: the copy is written into a temporary sibling directory, each file
//! fsynced, a `BACKUP-COMPLETE` manifest (sizes, line counts, SHA-256) written and fsynced last,
//! and only then renamed to DEST. An interrupted backup leaves no DEST (or DEST as empty as it
//! was), never a partial copy under that name.

use std::fmt::Write as _;
use std::fs::{self, File};
use std::io::{self, Read as _, Write as _};
use std::os::unix::fs::FileExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gc_protocol::types::Timestamp;
use sha2::{Digest as _, Sha256};

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
    let (sources, lock_held) = cut(dir)?;
    let mut report = BackupReport {
        dest: PathBuf::new(),
        records: 0,
        files: Vec::new(),
        lock_held,
    };
    for s in &sources {
        // Whole records only (a batch boundary ends with an LF; this also keeps out a torn
        // line a failed server left behind).
        let end = last_lf_end(&s.file, s.len, &dir.join(&s.name))?;
        let f = copy_range(&s.file, &dir.join(&s.name), end, &tmp.join(&s.name))?;
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
        report
            .files
            .push(copy_range(&file, &path, end, &tmp.join(name))?);
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
            .push(copy_range(&file, &path, len, &tmp.join(&name))?);
    }
    Ok(report)
}

/// Opens every message file and reads its length under the exclusive batch lock: a cut at a
/// batch boundary. Returns the open files (later renames do not matter to them) and how long
/// the lock was held.
fn cut(dir: &Path) -> Result<(Vec<Source>, Duration)> {
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
        Ok(sources)
    })();
    let held = locked_at.elapsed();
    if let Some(file) = lock {
        let _ = file.unlock();
    }
    Ok((taken?, held))
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

/// Copies the first `len` bytes of `src` into a new file `dest` (0600), fsynced; its size, LF
/// count and SHA-256.
fn copy_range(src: &File, src_path: &Path, len: u64, dest: &Path) -> Result<BackupFile> {
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
        name: String::new(),
        bytes: len,
        lines,
        sha256: hex(&hash.finalize()),
    }
    .named(dest))
}

impl BackupFile {
    /// Names the entry by `dest`'s last one or two components (`rooms/dev.db`).
    fn named(mut self, dest: &Path) -> Self {
        let file = dest
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default();
        let sub = dest
            .parent()
            .and_then(Path::file_name)
            .map(|n| n.to_string_lossy().into_owned());
        self.name = match sub.as_deref() {
            Some(s @ (ROOMS_DIR | "tls")) => format!("{s}/{file}"),
            _ => file,
        };
        self
    }
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
    for sub in [ROOMS_DIR, "tls", ""] {
        let d = tmp.join(sub);
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
    let mut present = vec![DATABASE_FILE.to_owned()];
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
