//! `gc-server files list|remove|gc|verify`: the operator's side of shared files (GC/5,
//! docs/files.md §6 and §8), on the data dir's `files/` directly, as the other admin commands
//! work on its other files; with `--store` (PostgreSQL), on `files-dir` and the database's
//! index.
//!
//! `list` and `verify` only read (through [`ContentStore::open_read_only`], which makes no
//! directory and leaves a line being appended to the index alone), so they may run beside a
//! server. With the flat file store, `remove` and `gc` change the files and take the data
//! dir's lock first: they refuse while a server runs, which may be sending the content (and has
//! its own cleaner). With PostgreSQL the instances run on other data dirs, so nothing can be
//! refused that way; there both run beside them: an upload in progress holds its partial
//! file's lock (gc leaves it), and a removed file's fetches in progress end with an error.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

use gc_protocol::{ContentHash, Timestamp, Username};
use gc_store::{ContentStore, DataDirLock, FileEntry, StoreError, StoredFile};

use crate::cli::FilesCommand;
use crate::config::Config;
use crate::error::ServerError;

use gc_store::UNANNOUNCED_GRACE;

/// Runs `gc-server files …`, writing results to `out`. Returns whether everything was in order
/// (`verify`'s exit code).
pub fn files(
    cmd: &FilesCommand,
    config: &Config,
    out: &mut dyn Write,
) -> Result<bool, ServerError> {
    let dir = &config.data_dir;
    let shared = config.store.is_some();
    // The data dir's lock, with the flat file store (see the module's notes).
    let lock = |why: &str| (!shared).then(|| lock(dir, why)).transpose();
    let now = SystemTime::now();
    match cmd {
        FilesCommand::List { partial, user } => {
            let user = user.as_deref().map(username).transpose()?;
            let store = crate::config::open_files_read_only(config)?;
            let listing = Listing::read(store.as_ref(), user.as_ref())?;
            let text = if *partial {
                listing.partial_lines(now)
            } else {
                listing.object_lines()
            };
            let summary = listing.summary(config.user_quota_bytes);
            write_out(out, &(text + &summary))?;
            Ok(true)
        }
        FilesCommand::Remove { hash } => {
            let hash = content_hash(hash)?;
            let _lock = lock("it may be sending that file")?;
            let store = open_to_change(config)?;
            let text = remove(&store, &hash, shared)?;
            write_out(out, &text)?;
            Ok(true)
        }
        FilesCommand::Gc { dry_run } => {
            let _lock = lock("while it runs, its own cleaner removes abandoned uploads")?;
            let store = open_to_change(config)?;
            let report =
                store.collect_garbage(now, config.abandoned_upload, UNANNOUNCED_GRACE, *dry_run)?;
            let text = garbage_lines(&report, *dry_run);
            if !*dry_run {
                tracing::info!(
                    removed = report.abandoned.len() + report.unannounced.len(),
                    "shared files collected by the operator"
                );
            }
            write_out(out, &text)?;
            Ok(true)
        }
        FilesCommand::Verify => {
            let (text, healthy) = match crate::config::open_files_read_only(config)? {
                Some(store) => verify(&store)?,
                None => ("# checked 0 stored files: ok\n".to_owned(), true),
            };
            write_out(out, &text)?;
            Ok(healthy)
        }
    }
}

/// The shared files, to change them: with PostgreSQL the schema is brought up to date first
/// (as the server does at start), so the index table is there.
fn open_to_change(config: &Config) -> Result<ContentStore, ServerError> {
    if let Some(url) = &config.store {
        gc_pgstore::migrate(&crate::config::database_url(url)?)?;
    }
    crate::config::open_files(config)
}

fn write_out(out: &mut dyn Write, text: &str) -> Result<(), ServerError> {
    out.write_all(text.as_bytes())
        .map_err(|source| ServerError::Io {
            what: "write to",
            path: "standard output".into(),
            source,
        })
}

fn username(name: &str) -> Result<Username, ServerError> {
    Username::new(name).map_err(|_| {
        ServerError::Usage(format!(
            "`{name}` is not a valid username: use 1-32 characters of A-Z a-z 0-9 _ . -"
        ))
    })
}

/// A content hash as an operator may give it: 64 hex digits, either case, `sha256:` before
/// them allowed (as a record shows it).
fn content_hash(text: &str) -> Result<ContentHash, ServerError> {
    let hex = text.trim();
    let hex = hex.strip_prefix("sha256:").unwrap_or(hex);
    hex.to_ascii_lowercase().parse().map_err(|_| {
        ServerError::Usage(format!(
            "`{text}` is not a file's SHA-256: give the 64 hex digits `gc-server files list` \
             shows"
        ))
    })
}

/// The data dir's lock, or a refusal saying that a server runs and `why` that matters.
fn lock(dir: &Path, why: &str) -> Result<DataDirLock, ServerError> {
    DataDirLock::acquire(dir).map_err(|e| match e {
        StoreError::Locked { path } => ServerError::Usage(format!(
            "{} is locked: a gc-server is running on this data dir, and {why}; stop it first",
            path.display()
        )),
        other => other.into(),
    })
}

/// `1.4 MiB`: a size for people, in binary units, one decimal.
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 6] = ["KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
    if bytes < 1024 {
        return format!("{bytes} B");
    }
    // Tenths of the unit, in integers: exact, and no float to round.
    let mut unit = 0;
    let mut scale: u128 = 1024;
    while unit + 1 < UNITS.len() && u128::from(bytes) >= scale * 1024 {
        scale *= 1024;
        unit += 1;
    }
    let tenths = (u128::from(bytes) * 10 + scale / 2) / scale;
    format!("{}.{} {}", tenths / 10, tenths % 10, UNITS[unit])
}

/// `2026-01-02T12:04:05Z`, to the second.
fn iso(micros: u64) -> String {
    Timestamp::from_micros(micros / 1_000_000 * 1_000_000)
        .utc_datetime()
        .replacen(' ', "T", 1)
        + "Z"
}

fn micros_of(t: SystemTime) -> u64 {
    t.duration_since(UNIX_EPOCH)
        .map(|d| u64::try_from(d.as_micros()).unwrap_or(u64::MAX))
        .unwrap_or(0)
}

/// `3d 4h`, `2h 5m`, `7m`, `12s`: how long ago, for people.
fn age(since: SystemTime, now: SystemTime) -> String {
    let s = now.duration_since(since).unwrap_or_default().as_secs();
    match s {
        0..60 => format!("{s}s"),
        60..3600 => format!("{}m", s / 60),
        3600..86_400 => format!("{}h {}m", s / 3600, s / 60 % 60),
        _ => format!("{}d {}h", s / 86_400, s / 3600 % 24),
    }
}

/// `a, b` joined by commas, or `-` when there is nothing.
fn joined(items: impl IntoIterator<Item = String>) -> String {
    let all: Vec<String> = items.into_iter().collect();
    if all.is_empty() {
        "-".to_owned()
    } else {
        all.join(",")
    }
}

fn plural(n: usize, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// What `files list` shows, read once.
struct Listing {
    /// Stored objects with their announcements (filtered by user when one is asked).
    objects: Vec<(StoredFile, Vec<FileEntry>)>,
    /// Uploads in progress (filtered by user).
    partial: Vec<StoredFile>,
    /// Announcements whose content is not stored: (hash, lines).
    not_stored: Vec<(ContentHash, usize)>,
    /// For each user (by key): the name as first written, and the bytes of distinct content.
    quota: BTreeMap<String, (Username, u64)>,
}

impl Listing {
    fn read(store: Option<&ContentStore>, user: Option<&Username>) -> Result<Self, ServerError> {
        let mut listing = Self {
            objects: Vec::new(),
            partial: Vec::new(),
            not_stored: Vec::new(),
            quota: BTreeMap::new(),
        };
        let key = user.map(Username::key);
        if let Some(store) = store {
            listing.fill(store, key.as_ref())?;
        }
        if let Some(user) = user {
            // Named as the index spells it when they shared anything, else as asked.
            listing
                .quota
                .entry(user.key())
                .or_insert_with(|| (user.clone(), 0));
        }
        Ok(listing)
    }

    /// Reads `store` into the listing, keeping only what the user keyed `key` has to do with.
    fn fill(&mut self, store: &ContentStore, key: Option<&String>) -> Result<(), ServerError> {
        let (objects, partial) = store.list()?;
        let mut index = store.index_by_hash()?;
        let mine = |e: &FileEntry| key.is_none_or(|k| e.username.key() == *k);
        for entries in index.values() {
            let mut counted = BTreeSet::new();
            for e in entries.iter().filter(|e| mine(e)) {
                let (_, used) = self
                    .quota
                    .entry(e.username.key())
                    .or_insert_with(|| (e.username.clone(), 0));
                if counted.insert(e.username.key()) {
                    *used += e.size;
                }
            }
        }
        for f in objects {
            let entries = index.remove(&f.hash).unwrap_or_default();
            if key.is_none() || entries.iter().any(&mine) {
                self.objects.push((f, entries));
            }
        }
        self.not_stored = index
            .into_iter()
            .filter(|(_, entries)| entries.iter().any(&mine))
            .map(|(hash, entries)| (hash, entries.len()))
            .collect();
        self.not_stored.sort();
        self.partial = partial
            .into_iter()
            .filter(|f| key.is_none() || f.uploader.as_ref() == key)
            .collect();
        Ok(())
    }

    fn object_lines(&self) -> String {
        let mut text = String::new();
        for (f, entries) in &self.objects {
            let mut users: Vec<&Username> = Vec::new();
            for e in entries {
                if !users.iter().any(|u| u.key() == e.username.key()) {
                    users.push(&e.username);
                }
            }
            users.sort_by_key(|u| u.key());
            let rooms: BTreeSet<String> = entries.iter().map(|e| e.room.to_string()).collect();
            let first = entries
                .iter()
                .map(|e| e.timestamp.as_micros())
                .min()
                .map_or_else(|| "-".to_owned(), iso);
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{first}\t{}\n",
                f.hash,
                f.size,
                human_size(f.size),
                joined(users.iter().map(ToString::to_string)),
                joined(rooms),
                entries.len()
            ));
        }
        text
    }

    fn partial_lines(&self, now: SystemTime) -> String {
        let mut text = String::new();
        for f in &self.partial {
            text.push_str(&format!(
                "{}\t{}\t{}\t{}\t{}\t{}\n",
                f.hash,
                f.uploader.as_deref().unwrap_or("-"),
                f.size,
                human_size(f.size),
                iso(micros_of(f.modified)),
                age(f.modified, now)
            ));
        }
        text
    }

    fn summary(&self, quota: u64) -> String {
        let bytes: u64 = self.objects.iter().map(|(f, _)| f.size).sum();
        let announcements: usize = self.objects.iter().map(|(_, e)| e.len()).sum();
        let unannounced = self.objects.iter().filter(|(_, e)| e.is_empty()).count();
        let partial_bytes: u64 = self.partial.iter().map(|f| f.size).sum();
        let mut text = format!(
            "# total: {}, {bytes} bytes ({}), {}, {unannounced} not announced; {}, {partial_bytes} \
             bytes ({})\n",
            plural(self.objects.len(), "file", "files"),
            human_size(bytes),
            plural(announcements, "announcement", "announcements"),
            plural(self.partial.len(), "partial upload", "partial uploads"),
            human_size(partial_bytes)
        );
        if !self.not_stored.is_empty() {
            let lines: usize = self.not_stored.iter().map(|(_, n)| n).sum();
            text.push_str(&format!(
                "# {} of the index name content that is not stored ({}): fetching it is \
                 answered unknown-file; `gc-server files remove HASH` drops the lines\n",
                plural(lines, "line", "lines"),
                joined(self.not_stored.iter().map(|(h, _)| h.to_string()))
            ));
        }
        for (name, used) in self.quota.values() {
            let of = if quota == 0 {
                ", no quota".to_owned()
            } else {
                let tenths = u128::from(*used) * 1000 / u128::from(quota);
                let over = if *used > quota { ", over quota" } else { "" };
                format!(
                    " of {quota} ({}), {}.{}%{over}",
                    human_size(quota),
                    tenths / 10,
                    tenths % 10
                )
            };
            text.push_str(&format!(
                "# quota {name}: {used} bytes ({}){of}\n",
                human_size(*used)
            ));
        }
        text
    }
}

/// `files remove`: the content and its index lines (in the database's index when `shared`);
/// what was done, for the operator.
fn remove(store: &ContentStore, hash: &ContentHash, shared: bool) -> Result<String, ServerError> {
    let announcements = store.announcements(hash)?;
    let size = store.size_of(hash);
    if size.is_none() && announcements.is_empty() {
        return Err(ServerError::Usage(format!(
            "no shared file has the SHA-256 {hash} in {}: `gc-server files list` shows them",
            store.root().display()
        )));
    }
    let index = if shared {
        "the database's index"
    } else {
        "files/index.db"
    };
    let (_, partial) = store.list()?;
    store.remove(hash)?;
    tracing::info!(%hash, lines = announcements.len(), "shared file removed by the operator");
    let lines = match announcements.len() {
        1 => "line".to_owned(),
        n => format!("{n} lines"),
    };
    let mut text = match size {
        Some(size) => format!(
            "removed {hash}: {size} bytes ({}) and its {lines} in {index}\n",
            human_size(size)
        ),
        None => format!("removed the {lines} of {hash} in {index} (its content was not stored)\n"),
    };
    match announcements.len() {
        0 => {}
        1 => text.push_str(
            "the record that announced it stays; fetching it is now answered unknown-file\n",
        ),
        n => text.push_str(&format!(
            "the {n} records that announced it stay; fetching it is now answered unknown-file\n"
        )),
    }
    let uploading: Vec<String> = partial
        .iter()
        .filter(|f| f.hash == *hash)
        .filter_map(|f| f.uploader.clone())
        .collect();
    if !uploading.is_empty() {
        text.push_str(&format!(
            "note: {} of it in progress ({}) would store it again if completed; `gc-server \
             files gc` removes it once abandoned\n",
            plural(uploading.len(), "upload", "uploads"),
            uploading.join(",")
        ));
    }
    Ok(text)
}

/// `files gc`'s lines: one per file removed (or, dry, to remove), then the bytes freed.
fn garbage_lines(report: &gc_store::GarbageReport, dry_run: bool) -> String {
    let mut text = String::new();
    let kinds = [
        ("partial", &report.abandoned),
        ("unannounced", &report.unannounced),
    ];
    for (kind, files) in kinds {
        for f in files {
            text.push_str(&format!(
                "{kind}\t{}\t{}\t{}\t{}\n",
                f.hash,
                f.uploader.as_deref().unwrap_or("-"),
                f.size,
                iso(micros_of(f.modified))
            ));
        }
    }
    let count = report.abandoned.len() + report.unannounced.len();
    let bytes: u64 = report
        .abandoned
        .iter()
        .chain(&report.unannounced)
        .map(|f| f.size)
        .sum();
    let files = plural(count, "file", "files");
    text.push_str(&if dry_run {
        format!(
            "# dry run: would remove {files} and free {bytes} bytes ({}); nothing was changed\n",
            human_size(bytes)
        )
    } else {
        format!(
            "# removed {files}, freed {bytes} bytes ({})\n",
            human_size(bytes)
        )
    });
    text
}

/// `files verify`: the damaged and missing contents, and whether there were none.
fn verify(store: &ContentStore) -> Result<(String, bool), ServerError> {
    let (objects, _) = store.list()?;
    let damaged = store.verify()?;
    let mut text = String::new();
    for hash in &damaged {
        let hex = hash.to_string();
        let path = store.root().join("objects").join(&hex[..2]).join(&hex);
        text.push_str(&format!("damaged\t{hash}\t{}\n", path.display()));
    }
    let stored: BTreeSet<ContentHash> = objects.iter().map(|f| f.hash).collect();
    let mut missing: Vec<(ContentHash, usize)> = store
        .index_by_hash()?
        .into_iter()
        .filter(|(hash, _)| !stored.contains(hash))
        .map(|(hash, entries)| (hash, entries.len()))
        .collect();
    missing.sort();
    for (hash, n) in &missing {
        text.push_str(&format!("missing\t{hash}\t{n}\n"));
    }
    let bytes: u64 = objects.iter().map(|f| f.size).sum();
    let checked = format!(
        "checked {} ({bytes} bytes, {})",
        plural(objects.len(), "stored file", "stored files"),
        human_size(bytes)
    );
    let healthy = damaged.is_empty() && missing.is_empty();
    if healthy {
        text.push_str(&format!("# {checked}: ok\n"));
    } else {
        text.push_str(&format!(
            "# {checked}: {} damaged, {} announced but not stored. Restore those from a backup \
             (stop the server, copy files/objects/XX/HASH back), or stop the server and \
             `gc-server files remove HASH` (fetching it is then answered unknown-file; its \
             uploader may share it again)\n",
            damaged.len(),
            missing.len()
        ));
    }
    Ok((text, healthy))
}

#[cfg(test)]
mod tests;
