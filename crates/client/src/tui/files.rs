//! File transfers as the terminal UI shows them (GC/5, docs/files.md §1): the transfers running
//! and their speed, sizes for people, the download directory, and the file-system paths Tab
//! completes after `/upload`.
//!
//! Path completion and the download directory look at the file system: the one place the
//! terminal UI's state reads it (a directory listing per Tab, at most [`MAX_LISTED`] entries).

use std::collections::VecDeque;
use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gc_client_core::transfer::Direction;
use gc_protocol::Room;

/// Directory entries one Tab looks at, at most (a huge directory stays instant).
pub const MAX_LISTED: usize = 5000;
/// Speed is measured over the progress of this long ago to now.
const SPEED_WINDOW: Duration = Duration::from_secs(3);

/// `bytes` for people: `999 B`, `2.1 kB`, `12.3 MB`, `140 MB`, `1.1 GB` (powers of 1000, as
/// the record's byte count reads).
pub fn human_size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["kB", "MB", "GB", "TB", "PB"];
    if bytes < 1000 {
        return format!("{bytes} B");
    }
    // Precision is not needed beyond the one decimal shown.
    #[allow(clippy::cast_precision_loss)]
    let mut value = bytes as f64 / 1000.0;
    let mut unit = 0;
    while value >= 999.95 && unit + 1 < UNITS.len() {
        value /= 1000.0;
        unit += 1;
    }
    if value >= 99.95 {
        format!("{value:.0} {}", UNITS[unit])
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}

/// What a `/download` that goes on from an earlier one's `.part` says when it starts (`size`
/// 0: not known, for a hash no file line shows).
pub fn resuming(name: &str, have: u64, size: u64) -> String {
    let of = if size > 0 {
        format!(" of {}", human_size(size))
    } else {
        String::new()
    };
    format!(
        "resuming {} from its .part ({}{of})",
        crate::display::sanitize(name),
        human_size(have)
    )
}

/// What the end of a transfer adds when it went on from what was there before (a `.part` here,
/// a partial upload on the server): `, resumed at 1.2 MB`; nothing when it started from the
/// beginning, or had nothing to move.
pub fn resumed_at(from: u64, size: u64) -> String {
    if from > 0 && from < size {
        format!(", resumed at {}", human_size(from))
    } else {
        String::new()
    }
}

/// The directory downloads are saved in: `$XDG_DOWNLOAD_DIR` when it names a directory, else
/// `~/Downloads` when it exists, else the home directory; `None` without any of them.
pub fn download_dir(xdg: Option<&OsStr>, home: Option<&Path>) -> Option<PathBuf> {
    if let Some(dir) = xdg.filter(|d| !d.is_empty()).map(PathBuf::from)
        && dir.is_absolute()
        && dir.is_dir()
    {
        return Some(dir);
    }
    let home = home.filter(|h| !h.as_os_str().is_empty())?;
    let downloads = home.join("Downloads");
    Some(if downloads.is_dir() {
        downloads
    } else {
        home.to_path_buf()
    })
}

/// [`download_dir`] from the environment (`XDG_DOWNLOAD_DIR`, `HOME`).
pub fn download_dir_from_env() -> Option<PathBuf> {
    let home = std::env::var_os("HOME").map(PathBuf::from);
    download_dir(
        std::env::var_os("XDG_DOWNLOAD_DIR").as_deref(),
        home.as_deref(),
    )
}

/// The home directory (`HOME`), when set.
pub fn home() -> Option<PathBuf> {
    std::env::var_os("HOME")
        .filter(|h| !h.is_empty())
        .map(PathBuf::from)
}

/// A typed path with a leading `~` (alone or before `/`) as `home`.
pub fn expand_tilde(typed: &str, home: Option<&Path>) -> PathBuf {
    match (typed, home) {
        ("~", Some(home)) => home.to_path_buf(),
        (t, Some(home)) if t.starts_with("~/") => home.join(&t[2..]),
        (t, _) => PathBuf::from(t),
    }
}

/// What Tab can put in place of `typed` (a path being typed): the entries of its directory
/// whose names it begins (hidden ones only when it begins with `.`), each written as typed so
/// far (a `~/` kept) with the name after it, and a `/` after a directory's; in name order. `~`
/// alone completes to `~/`.
pub fn path_candidates(typed: &str, home: Option<&Path>) -> Vec<String> {
    if typed == "~" {
        return if home.is_some() {
            vec!["~/".to_owned()]
        } else {
            Vec::new()
        };
    }
    let (dir_part, prefix) = match typed.rfind('/') {
        Some(i) => typed.split_at(i + 1),
        None => ("", typed),
    };
    let dir = if dir_part.is_empty() {
        PathBuf::from(".")
    } else {
        expand_tilde(dir_part, home)
    };
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Vec::new();
    };
    let mut found: Vec<String> = entries
        .take(MAX_LISTED)
        .filter_map(Result::ok)
        .filter_map(|entry| {
            let name = entry.file_name().into_string().ok()?;
            if !name.starts_with(prefix) || (name.starts_with('.') && !prefix.starts_with('.')) {
                return None;
            }
            // Through a link to a directory too.
            let is_dir = std::fs::metadata(entry.path()).is_ok_and(|m| m.is_dir());
            Some(format!("{dir_part}{name}{}", if is_dir { "/" } else { "" }))
        })
        .collect();
    found.sort();
    found
}

/// The longest start every candidate shares (on a character boundary).
pub fn common_prefix(candidates: &[String]) -> &str {
    let Some(first) = candidates.first() else {
        return "";
    };
    let mut end = first.len();
    for c in &candidates[1..] {
        end = first
            .char_indices()
            .zip(c.chars())
            .find(|((_, a), b)| a != b)
            .map_or(end.min(c.len()), |((i, _), _)| i.min(end));
    }
    &first[..end]
}

/// A transfer running, as the status area shows it.
#[derive(Debug, Clone)]
pub struct Transfer {
    /// Its id in the client.
    pub id: u64,
    /// Which way.
    pub direction: Direction,
    /// The file's name.
    pub name: String,
    /// Bytes done (hashed, while `hashing`).
    pub done: u64,
    /// Bytes in all (0: not known yet).
    pub total: u64,
    /// An upload still reading its file to hash it.
    pub hashing: bool,
    /// Esc was pressed for it: its end is awaited.
    pub cancelling: bool,
    /// The conversation it was started in: its end is said there.
    pub room: Room,
    /// Recent progress, for the speed: (when, bytes done), oldest first.
    samples: VecDeque<(Instant, u64)>,
}

impl Transfer {
    /// A transfer just started.
    pub fn new(id: u64, direction: Direction, name: String, total: u64, room: Room) -> Self {
        Self {
            id,
            direction,
            name,
            done: 0,
            total,
            hashing: direction == Direction::Upload,
            cancelling: false,
            room,
            samples: VecDeque::new(),
        }
    }

    /// Progress came at `now`.
    pub fn progress(&mut self, done: u64, total: u64, hashing: bool, now: Instant) {
        if hashing != self.hashing {
            // Hashing and sending are measured apart.
            self.samples.clear();
        }
        self.done = done;
        self.total = total;
        self.hashing = hashing;
        self.samples.push_back((now, done));
        while self.samples.len() > 2
            && self
                .samples
                .get(1)
                .is_some_and(|(t, _)| now.saturating_duration_since(*t) >= SPEED_WINDOW)
        {
            self.samples.pop_front();
        }
    }

    /// How far, 0.0 to 1.0 (0 when the size is not known).
    pub fn fraction(&self) -> f64 {
        if self.total == 0 {
            return 0.0;
        }
        // Display only.
        #[allow(clippy::cast_precision_loss)]
        let f = self.done as f64 / self.total as f64;
        f.clamp(0.0, 1.0)
    }

    /// Bytes per second over the last few seconds' progress; `None` until there are two
    /// samples apart in time.
    pub fn speed(&self) -> Option<f64> {
        let (t0, d0) = *self.samples.front()?;
        let (t1, d1) = *self.samples.back()?;
        let secs = t1.saturating_duration_since(t0).as_secs_f64();
        // Display only.
        #[allow(clippy::cast_precision_loss)]
        let bytes = d1.saturating_sub(d0) as f64;
        (secs >= 0.05).then(|| bytes / secs)
    }
}

/// The transfers running, in the order they started.
#[derive(Debug, Default, Clone)]
pub struct Transfers {
    running: Vec<Transfer>,
}

impl Transfers {
    /// Adds a transfer just started.
    pub fn start(&mut self, transfer: Transfer) {
        self.running.retain(|t| t.id != transfer.id);
        self.running.push(transfer);
    }

    /// The transfer `id`, if it runs.
    pub fn get_mut(&mut self, id: u64) -> Option<&mut Transfer> {
        self.running.iter_mut().find(|t| t.id == id)
    }

    /// Takes transfer `id` out (it ended).
    pub fn end(&mut self, id: u64) -> Option<Transfer> {
        let i = self.running.iter().position(|t| t.id == id)?;
        Some(self.running.remove(i))
    }

    /// The newest transfer: the one the status area shows.
    pub fn newest(&self) -> Option<&Transfer> {
        self.running.last()
    }

    /// How many run.
    pub fn len(&self) -> usize {
        self.running.len()
    }

    /// None runs.
    pub fn is_empty(&self) -> bool {
        self.running.is_empty()
    }

    /// Marks the newest transfer not being cancelled yet as being cancelled; its id.
    pub fn cancel_newest(&mut self) -> Option<u64> {
        let t = self.running.iter_mut().rev().find(|t| !t.cancelling)?;
        t.cancelling = true;
        Some(t.id)
    }

    /// Forgets them all (the client that ran them is gone).
    pub fn clear(&mut self) {
        self.running.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_resumed_download_says_how_much_was_there() {
        assert_eq!(
            resuming("report.bin", 600_000, 1_500_000),
            "resuming report.bin from its .part (600 kB of 1.5 MB)"
        );
        assert_eq!(
            resuming("x", 2_000, 0),
            "resuming x from its .part (2.0 kB)"
        );
        assert_eq!(resumed_at(0, 10), "");
        assert_eq!(resumed_at(10, 10), "");
        assert_eq!(resumed_at(1_200, 5_000), ", resumed at 1.2 kB");
    }

    #[test]
    fn sizes_read_like_people_write_them() {
        assert_eq!(human_size(0), "0 B");
        assert_eq!(human_size(999), "999 B");
        assert_eq!(human_size(1000), "1.0 kB");
        assert_eq!(human_size(2_100_000), "2.1 MB");
        assert_eq!(human_size(1_482_213), "1.5 MB");
        assert_eq!(human_size(99_960_000), "100 MB");
        assert_eq!(human_size(140_000_000), "140 MB");
        assert_eq!(human_size(999_999_999), "1.0 GB");
        assert_eq!(human_size(u64::MAX), "18447 PB");
    }

    #[test]
    fn the_download_directory_is_xdg_then_downloads_then_home() {
        let home = tempfile::tempdir().unwrap();
        let xdg = tempfile::tempdir().unwrap();
        // Neither set: nowhere.
        assert_eq!(download_dir(None, None), None);
        // Home without Downloads: home.
        assert_eq!(
            download_dir(None, Some(home.path())),
            Some(home.path().to_path_buf())
        );
        std::fs::create_dir(home.path().join("Downloads")).unwrap();
        assert_eq!(
            download_dir(None, Some(home.path())),
            Some(home.path().join("Downloads"))
        );
        // XDG_DOWNLOAD_DIR wins when it is a directory; not when missing, empty or relative.
        assert_eq!(
            download_dir(Some(xdg.path().as_os_str()), Some(home.path())),
            Some(xdg.path().to_path_buf())
        );
        for bad in [
            xdg.path().join("missing").into_os_string(),
            "".into(),
            "rel".into(),
        ] {
            assert_eq!(
                download_dir(Some(&bad), Some(home.path())),
                Some(home.path().join("Downloads")),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn tab_completes_paths_with_a_slash_after_directories() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path();
        std::fs::create_dir(base.join("reports")).unwrap();
        std::fs::write(base.join("report.pdf"), b"x").unwrap();
        std::fs::write(base.join("readme"), b"x").unwrap();
        std::fs::write(base.join(".hidden"), b"x").unwrap();
        std::fs::write(base.join("reports").join("q1 final.txt"), b"x").unwrap();
        let b = base.display().to_string();
        assert_eq!(
            path_candidates(&format!("{b}/rep"), None),
            [format!("{b}/report.pdf"), format!("{b}/reports/")]
        );
        assert_eq!(
            path_candidates(&format!("{b}/"), None),
            [
                format!("{b}/readme"),
                format!("{b}/report.pdf"),
                format!("{b}/reports/")
            ],
            "hidden files only when asked for"
        );
        assert_eq!(
            path_candidates(&format!("{b}/.h"), None),
            [format!("{b}/.hidden")]
        );
        assert_eq!(
            path_candidates(&format!("{b}/reports/q"), None),
            [format!("{b}/reports/q1 final.txt")],
            "names with spaces"
        );
        assert!(path_candidates(&format!("{b}/nothing"), None).is_empty());
        assert!(path_candidates(&format!("{b}/missing/x"), None).is_empty());
        // `~` is the home directory, and stays `~` in what is put in.
        assert_eq!(path_candidates("~", Some(base)), ["~/"]);
        assert!(path_candidates("~", None).is_empty());
        assert_eq!(
            path_candidates("~/reports/", Some(base)),
            ["~/reports/q1 final.txt"]
        );
        assert_eq!(expand_tilde("~/a", Some(base)), base.join("a"));
        assert_eq!(expand_tilde("~", Some(base)), base);
        assert_eq!(expand_tilde("~x/a", Some(base)), PathBuf::from("~x/a"));
        assert_eq!(expand_tilde("/a", Some(base)), PathBuf::from("/a"));
        let found = path_candidates(&format!("{b}/re"), None);
        assert_eq!(common_prefix(&found), format!("{b}/re"));
        let found = path_candidates(&format!("{b}/rep"), None);
        assert_eq!(common_prefix(&found), format!("{b}/report"));
        assert_eq!(common_prefix(&[]), "");
        assert_eq!(common_prefix(&["é1".into(), "é2".into()]), "é");
    }

    #[test]
    fn speed_is_measured_over_the_last_seconds_and_cancel_takes_the_newest() {
        let room = Room::general();
        let t0 = Instant::now();
        let mut t = Transfer::new(1, Direction::Upload, "a".into(), 1000, room.clone());
        assert!(t.hashing);
        t.progress(500, 1000, true, t0);
        t.progress(1000, 1000, true, t0 + Duration::from_millis(100));
        t.progress(0, 1000, false, t0 + Duration::from_millis(200));
        assert_eq!(t.speed(), None, "sending is measured apart from hashing");
        t.progress(100, 1000, false, t0 + Duration::from_millis(1200));
        assert!((t.speed().unwrap() - 100.0).abs() < 1e-6);
        assert!((t.fraction() - 0.1).abs() < 1e-9);
        let mut all = Transfers::default();
        all.start(t);
        all.start(Transfer::new(2, Direction::Download, "b".into(), 0, room));
        assert_eq!(all.newest().map(|t| t.id), Some(2));
        assert_eq!(all.cancel_newest(), Some(2));
        assert_eq!(all.cancel_newest(), Some(1));
        assert_eq!(all.cancel_newest(), None);
        assert_eq!(all.end(2).map(|t| t.id), Some(2));
        assert_eq!(all.len(), 1);
    }
}
