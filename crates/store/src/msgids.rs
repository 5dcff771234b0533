//! `database.msgids`: which (user, client-msg-id) produced which record, so retries stay
//! idempotent across restarts; and the in-memory dedupe map built from it.

use std::collections::{HashMap, VecDeque};
use std::fs::File;
use std::hash::{BuildHasher, BuildHasherDefault, Hasher, RandomState};
use std::path::Path;

use crate::codec::split_msgid;
use crate::error::Result;
use crate::files::{self, FaultyLine, LineReader, open_rw, push_range};
use crate::messages::{IndexEntry, moved};

/// Name of the msgids file inside a data dir.
pub const MSGIDS_FILE: &str = "database.msgids";

/// A (username, client-msg-id) pair reduced to 128 bits by two independently, randomly keyed
/// SipHash instances. Keeping hashes instead of strings cuts the map's memory roughly fivefold
/// (a million entries: about 40 MB instead of 200 MB); with random keys nobody can aim for a
/// collision, and an accidental one is about as likely as 2^-88 per million entries.
pub(crate) type MsgKey = u128;

/// Turns (username, client-msg-id) into a [`MsgKey`]; the username without regard to case.
#[derive(Debug)]
pub(crate) struct KeyHasher {
    k1: RandomState,
    k2: RandomState,
}

impl KeyHasher {
    pub fn new() -> Self {
        Self {
            k1: RandomState::new(),
            k2: RandomState::new(),
        }
    }

    pub fn key(&self, username: &str, client_msg_id: &str) -> MsgKey {
        let mut h1 = self.k1.build_hasher();
        let mut h2 = self.k2.build_hasher();
        for b in username.bytes() {
            let b = b.to_ascii_lowercase();
            h1.write_u8(b);
            h2.write_u8(b);
        }
        // `;` can appear in neither field, so it separates them unambiguously.
        h1.write_u8(b';');
        h2.write_u8(b';');
        h1.write(client_msg_id.as_bytes());
        h2.write(client_msg_id.as_bytes());
        (u128::from(h1.finish()) << 64) | u128::from(h2.finish())
    }
}

/// A hasher for keys that already are uniformly random: it uses them as they are.
#[derive(Debug, Default)]
pub(crate) struct PassThrough(u64);

impl Hasher for PassThrough {
    fn finish(&self) -> u64 {
        self.0
    }
    fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = self.0.rotate_left(8) ^ u64::from(b);
        }
    }
    fn write_u128(&mut self, i: u128) {
        self.0 = i as u64;
    }
}

/// The in-memory dedupe map: the newest `window` keys → record id.
#[derive(Debug)]
pub(crate) struct Dedupe {
    map: HashMap<MsgKey, u64, BuildHasherDefault<PassThrough>>,
    /// Keys in id order, for pruning the oldest. May hold keys already removed from `map`.
    order: VecDeque<(MsgKey, u64)>,
    window: usize,
}

impl Dedupe {
    pub fn new(window: usize, entries: Vec<(MsgKey, u64)>) -> Self {
        let keep = &entries[entries.len().saturating_sub(window)..];
        let mut map = HashMap::with_capacity_and_hasher(keep.len(), Default::default());
        for &(k, id) in keep {
            // The first record for a key wins, as it did when it was appended.
            map.entry(k).or_insert(id);
        }
        Self {
            map,
            order: keep.iter().copied().collect(),
            window,
        }
    }

    pub fn get(&self, key: MsgKey) -> Option<u64> {
        self.map.get(&key).copied()
    }

    pub fn insert(&mut self, key: MsgKey, id: u64) {
        self.map.insert(key, id);
        self.order.push_back((key, id));
        while self.order.len() > self.window {
            let Some((k, old)) = self.order.pop_front() else {
                break;
            };
            if self.map.get(&k) == Some(&old) {
                self.map.remove(&k);
            }
        }
    }

    /// Forgets `key` if it still maps to `id` (its append failed).
    pub fn remove(&mut self, key: MsgKey, id: u64) {
        if self.map.get(&key) == Some(&id) {
            self.map.remove(&key);
        }
    }
}

/// What opening `database.msgids` found and did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct MsgidsReport {
    /// Entries kept in the file.
    pub kept: usize,
    /// Entries for ids beyond the last valid record (their records never became durable), dropped.
    pub dropped_beyond_last: usize,
    /// Entries for ids below the last record that no record has (moved aside by a repair), dropped.
    pub dropped_unknown: usize,
    /// The last line was torn or invalid (an interrupted write) and was dropped.
    pub dropped_torn: Option<FaultyLine>,
    /// Invalid lines before the last, moved aside into `database.msgids.corrupt`.
    pub moved_aside: Vec<FaultyLine>,
    /// Entries dropped because the file held more than twice the dedupe window.
    pub compacted: usize,
    /// Whether the file was rewritten.
    pub rewritten: bool,
}

/// Finds ids in an ascending slice; msgids lines come in id order, so searching on from the last
/// hit keeps each search short.
struct IdFinder<'a> {
    ids: &'a [IndexEntry],
    cursor: usize,
}

impl IdFinder<'_> {
    fn contains(&mut self, id: u64) -> bool {
        if self.ids.get(self.cursor).is_none_or(|x| x.id > id) {
            self.cursor = 0;
        }
        let rest = &self.ids[self.cursor..];
        let pos = rest.partition_point(|x| x.id < id);
        self.cursor += pos;
        rest.get(pos).is_some_and(|x| x.id == id)
    }
}

/// Whether the second pass keeps `line`: the same verdict as the first pass and [`finish`].
fn keeps(line: &files::Line<'_>, last_id: u64, finder: &mut IdFinder<'_>) -> bool {
    line.framing_error().is_none()
        && split_msgid(line.bytes).is_ok_and(|f| f.id <= last_id && finder.contains(f.id))
}

/// An opened, validated `database.msgids`.
#[derive(Debug)]
pub(crate) struct Loaded {
    pub file: File,
    /// The file's length.
    pub len: u64,
    /// The kept entries, in file order.
    pub entries: Vec<(MsgKey, u64)>,
    pub report: MsgidsReport,
}

/// The first pass over `database.msgids`, which needs no record ids and so can run while
/// `database.db` is scanned: every valid line's key and id, and the invalid lines.
#[derive(Debug)]
pub(crate) struct Scanned {
    file: File,
    entries: Vec<(MsgKey, u64)>,
    bad: Vec<FaultyLine>,
    last_is_bad: bool,
}

/// Opens (creating if absent) and reads `database.msgids`.
pub(crate) fn scan(path: &Path, hasher: &KeyHasher) -> Result<Scanned> {
    let file = open_rw(path)?;
    let size = files::file_len(&file, path)?;
    // About 30 bytes a line: reserve once rather than grow through many copies.
    let mut entries = Vec::with_capacity(usize::try_from(size / 30).unwrap_or(0).min(1 << 26));
    let mut bad = Vec::new();
    let mut last_is_bad = false;
    {
        let mut reader = LineReader::new(&file, path);
        while let Some(line) = reader.next_line()? {
            let verdict = match line.framing_error() {
                Some(e) => Err(e),
                None => split_msgid(line.bytes),
            };
            last_is_bad = verdict.is_err();
            match verdict {
                Ok(f) => entries.push((hasher.key(f.username, f.client_msg_id), f.id)),
                Err(reason) => bad.push(moved(&line, reason)),
            }
        }
    }
    Ok(Scanned {
        file,
        entries,
        bad,
        last_is_bad,
    })
}

/// Validates the scanned entries against the records' ids (ascending), and rewrites the file
/// when lines must go: entries whose record does not exist, a torn last line, invalid lines
/// (moved aside into `database.msgids.corrupt`), or more than twice `window` entries.
pub(crate) fn finish(
    path: &Path,
    scanned: Scanned,
    ids: &[IndexEntry],
    window: usize,
) -> Result<Loaded> {
    let last_id = ids.last().map_or(0, |e| e.id);
    let Scanned {
        file,
        mut entries,
        mut bad,
        last_is_bad,
    } = scanned;
    let mut report = MsgidsReport::default();
    if last_is_bad {
        report.dropped_torn = bad.pop();
    }
    report.moved_aside = bad;
    let mut finder = IdFinder { ids, cursor: 0 };
    entries.retain(|&(_, id)| {
        if id > last_id {
            report.dropped_beyond_last += 1;
            false
        } else if !finder.contains(id) {
            report.dropped_unknown += 1;
            false
        } else {
            true
        }
    });
    // Compacting keeps the newest `window` entries, not 2x: the file then grows for a while
    // before the next compaction.
    let skip = if entries.len() > window.saturating_mul(2) {
        entries.len() - window
    } else {
        0
    };
    report.compacted = skip;
    report.kept = entries.len() - skip;

    let must_rewrite = !report.moved_aside.is_empty()
        || report.dropped_torn.is_some()
        || report.dropped_beyond_last > 0
        || report.dropped_unknown > 0
        || skip > 0;
    if !must_rewrite {
        let len = files::file_len(&file, path)?;
        return Ok(Loaded {
            file,
            len,
            entries,
            report,
        });
    }

    if !report.moved_aside.is_empty() {
        files::move_aside(&file, path, &report.moved_aside)?;
        for m in &report.moved_aside {
            tracing::warn!(
                path = %path.display(),
                line = m.line_number,
                reason = %m.reason,
                "invalid msgids line moved aside into {}.corrupt",
                path.display()
            );
        }
    }
    if let Some(t) = &report.dropped_torn {
        tracing::warn!(path = %path.display(), line = t.line_number, reason = %t.reason,
            "dropped the torn last line of the msgids file (an interrupted write)");
    }
    if report.dropped_beyond_last + report.dropped_unknown > 0 {
        tracing::warn!(
            path = %path.display(),
            beyond_last = report.dropped_beyond_last,
            unknown = report.dropped_unknown,
            "dropped msgids entries whose records do not exist (never became durable, or were moved aside)"
        );
    }

    // Second pass: the same classification decides which line ranges to copy.
    let mut ranges = Vec::new();
    {
        let mut finder = IdFinder { ids, cursor: 0 };
        let mut reader = LineReader::new(&file, path);
        let mut seen = 0usize;
        while let Some(line) = reader.next_line()? {
            if keeps(&line, last_id, &mut finder) {
                if seen >= skip {
                    push_range(&mut ranges, line.offset, line.len);
                }
                seen += 1;
            }
        }
    }
    let new_file = files::atomic_rewrite(path, |w| files::copy_ranges(&file, &ranges, w), Ok)?;
    report.rewritten = true;
    let len = files::file_len(&new_file, path)?;
    entries.drain(..skip);
    Ok(Loaded {
        file: new_file,
        len,
        entries,
        report,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_ignore_username_case_only() {
        let h = KeyHasher::new();
        assert_eq!(h.key("Alice", "x1"), h.key("aLICE", "x1"));
        assert_ne!(h.key("alice", "x1"), h.key("alice", "X1"));
        assert_ne!(h.key("alice", "x1"), h.key("bob", "x1"));
        assert_ne!(h.key("ab", "c"), h.key("a", "bc"));
        // Two hashers have different random keys.
        assert_ne!(KeyHasher::new().key("a", "b"), h.key("a", "b"));
    }

    #[test]
    fn dedupe_window_prunes_oldest() {
        let mut d = Dedupe::new(2, vec![(1, 10), (2, 11), (3, 12)]);
        assert_eq!(d.get(1), None);
        assert_eq!(d.get(2), Some(11));
        d.insert(4, 13);
        assert_eq!((d.get(2), d.get(3), d.get(4)), (None, Some(12), Some(13)));
        d.remove(4, 99);
        assert_eq!(d.get(4), Some(13));
        d.remove(4, 13);
        assert_eq!(d.get(4), None);
    }

    fn ix(ids: &[u64]) -> Vec<IndexEntry> {
        ids.iter()
            .map(|&id| IndexEntry {
                id,
                offset: 0,
                micros: 0,
                room: 0,
                len: 0,
            })
            .collect()
    }

    fn load(path: &Path, ids: &[IndexEntry], window: usize, h: &KeyHasher) -> Result<Loaded> {
        finish(path, scan(path, h)?, ids, window)
    }

    fn write(dir: &Path, content: &str) -> std::path::PathBuf {
        let p = dir.join(MSGIDS_FILE);
        std::fs::write(&p, content).unwrap();
        p
    }

    #[test]
    fn load_drops_beyond_unknown_torn_and_moves_bad() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(
            dir.path(),
            "1;a;m1\n2;a;m2\nbad line\n4;b;m4\n9;a;m9\n5;a;m5-torn",
        );
        let h = KeyHasher::new();
        let Loaded {
            len,
            entries,
            report: rep,
            ..
        } = load(&p, &ix(&[1, 2, 4, 5, 6]), 100, &h).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.1).collect::<Vec<_>>(),
            vec![1, 2, 4]
        );
        assert_eq!(entries[0].0, h.key("A", "m1"));
        assert_eq!(rep.dropped_beyond_last, 1);
        assert_eq!(rep.dropped_unknown, 0);
        assert_eq!(rep.moved_aside.len(), 1);
        assert_eq!(rep.moved_aside[0].line_number, 3);
        assert_eq!(rep.dropped_torn.map(|t| t.line_number), Some(6));
        assert!(rep.rewritten);
        let text = std::fs::read_to_string(&p).unwrap();
        assert_eq!(text, "1;a;m1\n2;a;m2\n4;b;m4\n");
        assert_eq!(len, text.len() as u64);
        let corrupt = std::fs::read_to_string(dir.path().join("database.msgids.corrupt")).unwrap();
        assert!(corrupt.contains("line 3 of database.msgids"), "{corrupt}");
        assert!(corrupt.ends_with("bad line\n"));

        // id 3 has no record (say a repair moved it aside): dropped as unknown.
        let p = write(dir.path(), "1;a;m1\n3;a;m3\n");
        let Loaded {
            entries,
            report: rep,
            ..
        } = load(&p, &ix(&[1, 2, 4]), 100, &h).unwrap();
        assert_eq!(entries.len(), 1);
        assert_eq!(rep.dropped_unknown, 1);
    }

    #[test]
    fn load_compacts_beyond_twice_the_window() {
        let dir = tempfile::tempdir().unwrap();
        let content: String = (1..=7).map(|i| format!("{i};u;c{i}\n")).collect();
        let p = write(dir.path(), &content);
        let h = KeyHasher::new();
        let ids = ix(&(1..=7).collect::<Vec<_>>());
        // 7 entries, window 4: not over 2x, untouched.
        let Loaded {
            entries,
            report: rep,
            ..
        } = load(&p, &ids, 4, &h).unwrap();
        assert_eq!((entries.len(), rep.rewritten), (7, false));
        // window 3: over 2x (6), compacted to the newest 3.
        let Loaded {
            entries,
            report: rep,
            ..
        } = load(&p, &ids, 3, &h).unwrap();
        assert_eq!(
            entries.iter().map(|e| e.1).collect::<Vec<_>>(),
            vec![5, 6, 7]
        );
        assert_eq!((rep.compacted, rep.rewritten), (4, true));
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "5;u;c5\n6;u;c6\n7;u;c7\n"
        );
    }

    #[test]
    fn clean_file_is_not_rewritten() {
        let dir = tempfile::tempdir().unwrap();
        let p = write(dir.path(), "1;a;m1\n");
        let Loaded {
            len,
            entries,
            report: rep,
            ..
        } = load(&p, &ix(&[1]), 10, &KeyHasher::new()).unwrap();
        assert_eq!((len, entries.len(), rep.rewritten), (7, 1, false));
    }
}
