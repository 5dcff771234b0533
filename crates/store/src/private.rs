//! Who may read what gc keeps on disk: its owner alone.
//!
//! Every file gc makes is created 0600 and every directory 0700, whatever the umask (a umask can
//! only take bits away). A file or directory of gc's that others may read, write or enter (made
//! by an older version, copied, restored from a backup) is tightened when it is opened, with a
//! warning that names it and its old mode; gc never refuses to start over it. This module is the
//! one place that policy lives: the store uses it for its files, and the server and the clients
//! for theirs (logs, settings, known servers), so that no file is left to the umask.

use std::fs::{DirBuilder, File, OpenOptions, Permissions};
use std::io;
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// The mode of every file gc creates: read and write for its owner only.
pub const FILE_MODE: u32 = 0o600;
/// The mode of every directory gc creates: its owner only.
pub const DIR_MODE: u32 = 0o700;
/// The bits that let in anyone but the owner.
const OTHERS: u32 = 0o077;

/// Options that create a file with [`FILE_MODE`]; add the access wanted (`read`, `append`, …).
pub fn options() -> OpenOptions {
    let mut options = OpenOptions::new();
    options.mode(FILE_MODE);
    options
}

/// Opens `path` with `options` (made with [`options`]: a new file is 0600) and [`tighten`]s it.
pub fn open(path: &Path, options: &OpenOptions) -> io::Result<File> {
    let file = options.open(path)?;
    tighten(&file, path);
    Ok(file)
}

/// Creates `dir` and its missing parents, each [`DIR_MODE`], and tightens `dir` if it existed
/// and others may enter it. For gc's own directories: a data dir, `rooms/`, `~/.local/state/gc-client`.
pub fn dir(dir: &Path) -> io::Result<()> {
    create_dirs(dir)?;
    tighten_path(dir);
    Ok(())
}

/// Creates `dir` and its missing parents, each [`DIR_MODE`], and leaves an existing `dir` as it
/// is: for the directory of a file the user named (`--cache /tmp/x.db` must not change `/tmp`).
pub fn create_dirs(dir: &Path) -> io::Result<()> {
    DirBuilder::new().recursive(true).mode(DIR_MODE).create(dir)
}

/// Takes the group and other bits off the open `file` at `path`, if it has any, and logs a
/// warning naming it and its old mode. Never fails: a file that cannot be changed (another
/// owner's) is warned about and used as before.
pub fn tighten(file: &File, path: &Path) {
    if let Some(warning) = tighten_quietly(file, path) {
        tracing::warn!("{warning}");
    }
}

/// Replaces the file at `path` with `bytes` atomically: written whole to `path.tmp` (0600),
/// fsynced, renamed over `path`, and the directory fsynced, so a crash leaves the old file or the
/// new one, never a short one. For the small files gc rewrites whole (settings, read markers,
/// secrets); the stores' own files go through their rewrite with its error context.
pub fn replace(path: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::io::Write as _;
    let mut tmp = path.as_os_str().to_owned();
    tmp.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp);
    let written = open(&tmp, options().write(true).create(true).truncate(true))
        .and_then(|mut file| file.write_all(bytes).and_then(|()| file.sync_all()))
        .and_then(|()| std::fs::rename(&tmp, path));
    if written.is_err() {
        let _ = std::fs::remove_file(&tmp);
        return written;
    }
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    File::open(dir).and_then(|d| d.sync_all())
}

/// [`tighten`] for a file or directory named by `path`, if it exists.
pub fn tighten_path(path: &Path) {
    let warning = match std::fs::metadata(path) {
        Ok(meta) => fix(meta.permissions().mode(), path, |p| {
            std::fs::set_permissions(path, p)
        }),
        Err(_) => None,
    };
    if let Some(warning) = warning {
        tracing::warn!("{warning}");
    }
}

/// [`tighten`], returning the warning instead of logging it: for a log file, tightened before
/// logging is set up.
pub fn tighten_quietly(file: &File, path: &Path) -> Option<String> {
    let mode = file.metadata().ok()?.permissions().mode();
    fix(mode, path, |p| file.set_permissions(p))
}

/// Applies `mode` without its [`OTHERS`] bits through `set`, if it has any: the warning to give.
fn fix(mode: u32, path: &Path, set: impl FnOnce(Permissions) -> io::Result<()>) -> Option<String> {
    if mode & OTHERS == 0 {
        return None;
    }
    let (old, new) = (mode & 0o7777, mode & 0o7777 & !OTHERS);
    Some(match set(Permissions::from_mode(new)) {
        Ok(()) => format!(
            "{} was mode {old:04o}, open to others; changed it to {new:04o}",
            path.display()
        ),
        Err(e) => format!(
            "{} is mode {old:04o}, open to others, and could not be changed ({e}); run \
             `chmod go= {}`",
            path.display(),
            path.display()
        ),
    })
}

#[cfg(test)]
pub(crate) mod tests {
    use std::fs;

    use gc_protocol::types::{ClientMsgId, Room, Timestamp, Username, Visibility};

    use super::*;
    use crate::{Accounts, ClientCache, MessageStore, Rooms, StoreConfig};

    /// Sets the umask most systems start with, so that anything created without an explicit mode
    /// would be readable by others. Process-wide, but only ever set to this value by tests.
    pub(crate) fn permissive_umask() {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    }

    pub(crate) fn mode(path: &Path) -> u32 {
        fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o7777)
    }

    #[test]
    fn new_files_and_directories_are_the_owners_alone() {
        permissive_umask();
        let root = tempfile::tempdir().unwrap();
        let deep = root.path().join("a").join("b");
        dir(&deep).unwrap();
        assert_eq!(mode(&root.path().join("a")), DIR_MODE);
        assert_eq!(mode(&deep), DIR_MODE);
        let path = deep.join("f");
        open(&path, options().append(true).create(true)).unwrap();
        assert_eq!(mode(&path), FILE_MODE);
    }

    #[test]
    fn looser_ones_are_tightened_and_only_gcs_own_directories() {
        let root = tempfile::tempdir().unwrap();
        let path = root.path().join("old");
        fs::write(&path, "x").unwrap();
        fs::set_permissions(&path, Permissions::from_mode(0o664)).unwrap();
        let file = open(&path, options().read(true)).unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(tighten_quietly(&file, &path), None, "nothing left to do");

        let shared = root.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, Permissions::from_mode(0o755)).unwrap();
        create_dirs(&shared).unwrap();
        assert_eq!(
            mode(&shared),
            0o755,
            "a directory the user named is left alone"
        );
        dir(&shared).unwrap();
        assert_eq!(mode(&shared), 0o700);

        fs::set_permissions(&path, Permissions::from_mode(0o644)).unwrap();
        let warning = tighten_quietly(&file, &path).unwrap();
        assert!(
            warning.contains(&path.display().to_string()) && warning.contains("0644"),
            "{warning}"
        );
        assert_eq!(mode(&path), 0o600);
    }

    fn account(name: &str) -> crate::Account {
        crate::Account {
            username: Username::new(name).unwrap(),
            salt: b"salt-bytes".to_vec(),
            iterations: 4096,
            stored_key: vec![1; 32],
            server_key: vec![2; 32],
            created: Timestamp::parse("1640995200.5").unwrap(),
        }
    }

    /// Everything in `dir`, recursively, with its mode.
    fn modes(dir: &Path) -> Vec<(String, u32)> {
        let mut out = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            out.push((path.display().to_string(), mode(&path)));
            if path.is_dir() {
                out.extend(modes(&path));
            }
        }
        out.sort();
        out
    }

    /// Fills `data` as a server does: records in `#general` and `#dev`, a room, an account, and
    /// a torn line moved aside.
    fn use_data_dir(data: &Path) {
        let (store, _) = MessageStore::open(data, StoreConfig::default()).unwrap();
        let (alice, dev) = (Username::new("alice").unwrap(), Room::new("#dev").unwrap());
        let id = |n: &str| ClientMsgId::new(n).unwrap();
        store.append(&alice, &id("m1"), "hello").unwrap();
        store.append_in(&dev, &alice, &id("m2"), "in dev").unwrap();
        store.close().unwrap();
        let accounts = Accounts::open(&data.join(crate::ACCOUNTS_FILE)).unwrap();
        accounts.add(account("alice")).unwrap();
        let (rooms, _) = Rooms::open(data).unwrap();
        let now = Timestamp::parse("1640995200").unwrap();
        rooms
            .create(&dev, Visibility::Public, &alice, "", now)
            .unwrap();
        rooms.set_admin(&alice, true).unwrap();
        let mut db = fs::OpenOptions::new()
            .append(true)
            .open(data.join(crate::DATABASE_FILE))
            .unwrap();
        std::io::Write::write_all(&mut db, b"3;1640995300;alice;torn").unwrap();
        MessageStore::open(data, StoreConfig::default()).unwrap();
    }

    #[test]
    fn a_new_data_dir_is_the_owners_alone_whatever_the_umask() {
        permissive_umask();
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("gc-data");
        use_data_dir(&data);
        assert_eq!(mode(&data), 0o700);
        let all = modes(&data);
        for name in [
            "database.db",
            "database.db.corrupt",
            "database.msgids",
            "usernames.db",
            "rooms.db",
            "admins.db",
            "rooms",
            "rooms/dev.db",
        ] {
            let path = data.join(name).display().to_string();
            assert!(
                all.iter().any(|(p, _)| *p == path),
                "{name} missing: {all:?}"
            );
        }
        for (path, mode) in &all {
            let want = if Path::new(path).is_dir() {
                0o700
            } else {
                0o600
            };
            assert_eq!(*mode, want, "{path}: {mode:04o}");
        }
    }

    #[test]
    fn an_old_data_dir_open_to_others_is_tightened_at_open() {
        let root = tempfile::tempdir().unwrap();
        let data = root.path().join("gc-data");
        use_data_dir(&data);
        // As an older version left it under umask 022.
        for (path, _) in modes(&data) {
            let loose = if Path::new(&path).is_dir() {
                0o755
            } else {
                0o644
            };
            fs::set_permissions(&path, Permissions::from_mode(loose)).unwrap();
        }
        fs::set_permissions(&data, Permissions::from_mode(0o755)).unwrap();
        // What a server opens at start.
        let (store, _) = MessageStore::open(&data, StoreConfig::default()).unwrap();
        Accounts::open(&data.join(crate::ACCOUNTS_FILE)).unwrap();
        Rooms::open(&data).unwrap();
        assert_eq!(mode(&data), 0o700);
        for (path, mode) in modes(&data) {
            let want = if Path::new(&path).is_dir() {
                0o700
            } else {
                0o600
            };
            assert_eq!(mode, want, "{path}: {mode:04o}");
        }
        drop(store);
    }

    #[test]
    fn a_client_cache_is_private_but_a_named_directory_is_left_alone() {
        permissive_umask();
        let root = tempfile::tempdir().unwrap();
        let shared = root.path().join("shared");
        fs::create_dir(&shared).unwrap();
        fs::set_permissions(&shared, Permissions::from_mode(0o755)).unwrap();
        let path = shared.join("cdatabase.db");
        ClientCache::open(&path).unwrap();
        assert_eq!((mode(&shared), mode(&path)), (0o755, 0o600));

        let made = root.path().join("new").join("sub").join("cdatabase.db");
        ClientCache::open(&made).unwrap();
        assert_eq!(mode(made.parent().unwrap()), 0o700);
        assert_eq!(mode(&root.path().join("new")), 0o700);

        let outbox = crate::outbox_path(&path);
        let kept = crate::KeptMessage {
            client_msg_id: ClientMsgId::new("a1").unwrap(),
            room: Room::general(),
            text: "later".into(),
        };
        crate::save_outbox(&outbox, std::slice::from_ref(&kept)).unwrap();
        fs::set_permissions(&outbox, Permissions::from_mode(0o644)).unwrap();
        crate::load_outbox(&outbox).unwrap();
        assert_eq!(mode(&outbox), 0o600);
    }
}
