//! Loading the three metadata files: every line validated, bad ones moved aside.

use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::path::Path;

use gc_protocol::types::Room;

use super::lines;
use super::state::{DbFile, State};
use crate::error::{LineError, Result, StoreError};
use crate::files::{self, FaultyLine, LineReader};

/// What [`super::Rooms::open`] found and did.
///
/// Each list holds the lines of one file that were moved aside into `<file>.corrupt` (each after
/// a `#` line naming its line number and reason); the file was then rewritten without them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomsReport {
    /// Rooms loaded (direct conversations included, `#general` not: it has no line).
    pub rooms: usize,
    /// `members.db` lines loaded.
    pub member_lines: usize,
    /// Admins loaded.
    pub admins: usize,
    /// Lines moved aside from `rooms.db`.
    pub rooms_db: Vec<FaultyLine>,
    /// Lines moved aside from `members.db`, including those of rooms `rooms.db` does not hold.
    pub members_db: Vec<FaultyLine>,
    /// Lines moved aside from `admins.db`.
    pub admins_db: Vec<FaultyLine>,
}

impl RoomsReport {
    /// Whether every line was valid (nothing was moved aside or rewritten).
    pub fn is_clean(&self) -> bool {
        self.rooms_db.is_empty() && self.members_db.is_empty() && self.admins_db.is_empty()
    }
}

/// What hands each line of one file, with its number, to a check, and returns the lines the
/// check refused.
type Accept<'a> = &'a mut dyn FnMut(u64, &[u8]) -> Result<(), LineError>;

/// Reads the three files of `dir` into a state, moving bad lines aside (the caller rewrites the
/// files that had some).
pub(super) fn load(dir: &Path) -> Result<(State, RoomsReport)> {
    build(|file, accept| scan(&dir.join(file.name()), accept))
}

/// Reads the three files' lines as a shared store holds them ([`super::RoomsSnapshot`]). Bad
/// lines are left out and listed in the report (there is no file to move them aside into).
pub(super) fn load_lines(snapshot: &super::RoomsSnapshot) -> (State, RoomsReport) {
    let result = build(|file, accept| {
        let mut bad = Vec::new();
        for (i, line) in snapshot.lines(file).iter().enumerate() {
            if let Err(reason) = accept(i as u64 + 1, line) {
                tracing::warn!(
                    file = file.name(),
                    line = i + 1,
                    %reason,
                    "left out an invalid room metadata line of the shared store"
                );
                bad.push(FaultyLine {
                    line_number: i as u64 + 1,
                    offset: 0,
                    len: line.len() as u64,
                    reason,
                });
            }
        }
        Ok(bad)
    });
    // `build` fails only when a source does, and these never do.
    result.unwrap_or_default()
}

fn build(
    mut scan: impl FnMut(DbFile, Accept<'_>) -> Result<Vec<FaultyLine>>,
) -> Result<(State, RoomsReport)> {
    let mut state = State::default();
    let mut report = RoomsReport::default();

    let mut first_room_line: HashMap<Room, u64> = HashMap::new();
    report.rooms_db = scan(DbFile::Rooms, &mut |number, bytes| {
        let (room, entry) = lines::parse_room(bytes)?;
        if let Some(&first_line) = first_room_line.get(&room) {
            return Err(LineError::Duplicate { first_line });
        }
        first_room_line.insert(room.clone(), number);
        state.rooms.insert(room, entry);
        Ok(())
    })?;

    let mut first_member_line: HashMap<(Room, String), u64> = HashMap::new();
    report.members_db = scan(DbFile::Members, &mut |number, bytes| {
        let (room, member) = lines::parse_member(bytes)?;
        if !room.is_general() && !state.rooms.contains_key(&room) {
            return Err(LineError::UnknownRoom);
        }
        let key = member.username.key();
        let seen = (room, key);
        if let Some(&first_line) = first_member_line.get(&seen) {
            return Err(LineError::Duplicate { first_line });
        }
        let (room, key) = seen;
        // A `#general` line for a plain unmuted member says what no line says: not kept.
        state.put(&room, key.clone(), member);
        first_member_line.insert((room, key), number);
        Ok(())
    })?;

    let mut first_admin_line: HashMap<String, u64> = HashMap::new();
    report.admins_db = scan(DbFile::Admins, &mut |number, bytes| {
        let admin = lines::parse_admin(bytes)?;
        let key = admin.key();
        if let Some(&first_line) = first_admin_line.get(&key) {
            return Err(LineError::Duplicate { first_line });
        }
        first_admin_line.insert(key.clone(), number);
        state.admins.insert(key, admin);
        Ok(())
    })?;

    report.rooms = state.rooms.len();
    report.member_lines = state.members.values().map(|m| m.len()).sum();
    report.admins = state.admins.len();
    Ok((state, report))
}

/// Hands each line of `path` (if it exists) to `accept` with its number; moves those it refuses,
/// and those too long to read, aside into `<path>.corrupt`, and returns them.
fn scan(path: &Path, accept: Accept<'_>) -> Result<Vec<FaultyLine>> {
    let file = match File::open(path) {
        Ok(file) => {
            crate::private::tighten(&file, path);
            files::tighten_corrupt(path);
            file
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(StoreError::io("open", path, e)),
    };
    let mut bad = Vec::new();
    let mut reader = LineReader::new(&file, path);
    while let Some(line) = reader.next_line()? {
        // A missing LF after the last line is accepted (a hand-edited file): these files are
        // only ever replaced whole, never appended to, so it cannot be a torn write.
        let verdict = if line.too_long {
            Err(LineError::TooLong)
        } else {
            accept(line.number, line.bytes)
        };
        if let Err(reason) = verdict {
            bad.push(FaultyLine {
                line_number: line.number,
                offset: line.offset,
                len: line.len,
                reason,
            });
        }
    }
    if !bad.is_empty() {
        let corrupt = files::move_aside(&file, path, &bad)?;
        for b in &bad {
            tracing::warn!(
                path = %path.display(),
                line = b.line_number,
                reason = %b.reason,
                "moved an invalid room metadata line aside into {}",
                corrupt.display()
            );
        }
    }
    Ok(bad)
}
