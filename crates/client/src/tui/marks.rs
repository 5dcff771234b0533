//! Read markers: for each conversation, the newest record the user has seen, kept across
//! restarts in `<cache>.read` beside the cache (none with `--no-cache`). One line per room,
//! `ROOM ID` (`#general 1234`, `@alice+bob 1200`); written whole to a temporary file (0600)
//! that replaces the old one, so a crash leaves the old file or the new, never half of one.
//! The cache's lock keeps it to one client at a time.

use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};

use gc_protocol::Room;

/// Newest record id seen, per room.
pub type Marks = BTreeMap<Room, u64>;

/// The markers file of the cache at `cache`: `<cache>.read`.
pub fn path_for(cache: &Path) -> PathBuf {
    let mut path = cache.as_os_str().to_owned();
    path.push(".read");
    PathBuf::from(path)
}

/// Reads the markers at `path`: none when it does not exist; a line that is not `ROOM ID` is
/// skipped with a warning (the rest still count).
pub fn load(path: &Path) -> Marks {
    let text = match std::fs::read_to_string(path) {
        Ok(text) => {
            gc_store::private::tighten_path(path);
            text
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Marks::new(),
        Err(e) => {
            tracing::warn!("cannot read the read markers {}: {e}", path.display());
            return Marks::new();
        }
    };
    let mut marks = Marks::new();
    for (n, line) in text.lines().enumerate() {
        // A room's name has no space: `# ` starts a comment.
        if line.is_empty() || line.starts_with("# ") {
            continue;
        }
        let parsed = line
            .split_once(' ')
            .and_then(|(room, id)| Some((Room::new(room).ok()?, id.parse::<u64>().ok()?)));
        match parsed {
            Some((room, id)) => {
                marks.insert(room, id);
            }
            None => tracing::warn!("{} line {}: not `ROOM ID`; skipped", path.display(), n + 1),
        }
    }
    marks
}

/// Writes `marks` to `path` (0600, its directory made 0700 if missing), replacing the file
/// atomically.
pub fn save(path: &Path, marks: &Marks) -> io::Result<()> {
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        gc_store::private::create_dirs(dir)?;
    }
    let mut text = String::from("# gc-client read markers: ROOM NEWEST-ID-SEEN\n");
    for (room, id) in marks {
        text.push_str(&format!("{room} {id}\n"));
    }
    gc_store::private::replace(path, text.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt as _;

    #[test]
    fn markers_round_trip_privately_and_bad_lines_are_skipped() {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let dir = tempfile::tempdir().unwrap();
        let cache = dir.path().join("h-alice").join("cdatabase.db");
        let path = path_for(&cache);
        assert_eq!(path, dir.path().join("h-alice").join("cdatabase.db.read"));
        assert!(load(&path).is_empty(), "none yet");
        let mut marks = Marks::new();
        marks.insert(Room::general(), 1234);
        marks.insert(Room::new("#dev").unwrap(), 7);
        marks.insert(Room::new("@alice+bob").unwrap(), 99);
        save(&path, &marks).unwrap();
        assert_eq!(load(&path), marks);
        let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let dir_mode = std::fs::metadata(path.parent().unwrap())
            .unwrap()
            .permissions()
            .mode()
            & 0o777;
        assert_eq!(dir_mode, 0o700);
        assert!(!path.with_extension("read.tmp").exists(), "renamed");

        std::fs::write(
            &path,
            "#general 5\nnonsense\n#Bad 3\n#dev x\n\n@alice+bob 6\n",
        )
        .unwrap();
        let loaded = load(&path);
        assert_eq!(loaded.len(), 2, "{loaded:?}");
        assert_eq!(loaded[&Room::general()], 5);
        assert_eq!(loaded[&Room::new("@alice+bob").unwrap()], 6);
    }
}
