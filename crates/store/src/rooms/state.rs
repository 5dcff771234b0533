//! The metadata in memory: what the three files hold, the rules of `#general` and of direct
//! conversations that need no I/O, and a by-user index.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use gc_protocol::types::{Room, RoomKind, RoomRole, Username};

use super::lines::{self, MemberEntry, RoomEntry};
use super::{ADMINS_FILE, MEMBERS_FILE, ROOMS_FILE, Standing};
use crate::error::{Result, StoreError};

/// The three metadata files (or, in a shared store, the three tables that hold their lines).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum DbFile {
    /// `rooms.db`.
    Rooms,
    /// `members.db`.
    Members,
    /// `admins.db`.
    Admins,
}

impl DbFile {
    /// The file's name in a data dir.
    pub fn name(self) -> &'static str {
        match self {
            Self::Rooms => ROOMS_FILE,
            Self::Members => MEMBERS_FILE,
            Self::Admins => ADMINS_FILE,
        }
    }
}

/// Everything the files hold.
#[derive(Clone, Debug, Default)]
pub(super) struct State {
    /// Every room but `#general`, direct conversations included.
    pub rooms: BTreeMap<Room, RoomEntry>,
    /// Standings by room, then username key: `#general` (non-default ones only) and rooms in
    /// `rooms`, never a direct conversation; no empty inner map.
    pub members: BTreeMap<Room, BTreeMap<String, MemberEntry>>,
    /// Admins by username key.
    pub admins: BTreeMap<String, Username>,
}

impl State {
    pub(super) fn encode(&self, file: DbFile) -> Vec<u8> {
        let mut out = Vec::new();
        match file {
            DbFile::Rooms => {
                for (room, entry) in &self.rooms {
                    lines::encode_room(room, entry, &mut out);
                }
            }
            DbFile::Members => {
                for (room, members) in &self.members {
                    for member in members.values() {
                        lines::encode_member(room, member, &mut out);
                    }
                }
            }
            DbFile::Admins => {
                for admin in self.admins.values() {
                    lines::encode_admin(admin, &mut out);
                }
            }
        }
        out
    }

    /// Refuses a room that is neither `#general` nor in `rooms`.
    pub(super) fn known(&self, room: &Room) -> Result<()> {
        if room.is_general() || self.rooms.contains_key(room) {
            Ok(())
        } else {
            Err(StoreError::UnknownRoom {
                room: room.to_string(),
            })
        }
    }

    /// The stored line of `user` in `room` (never one for a direct conversation).
    pub(super) fn line(&self, room: &Room, user: &Username) -> Option<&MemberEntry> {
        self.members.get(room)?.get(&user.key())
    }

    pub(super) fn standing(&self, room: &Room, user: &Username) -> Option<Standing> {
        if room.is_general() {
            return Some(
                self.line(room, user)
                    .map_or(Standing::Role(RoomRole::Member), |m| m.standing),
            );
        }
        if !self.rooms.contains_key(room) {
            return None;
        }
        if room.kind() == RoomKind::Direct {
            return room
                .is_direct_member(user)
                .then_some(Standing::Role(RoomRole::Member));
        }
        self.line(room, user).map(|m| m.standing)
    }

    /// Stores `entry` for `room` (not a direct conversation), or drops the line when it says
    /// what having no line says (`#general`: a plain member, unmuted).
    pub(super) fn put(&mut self, room: &Room, key: String, entry: MemberEntry) {
        let default = room.is_general()
            && entry.standing == Standing::Role(RoomRole::Member)
            && entry.muted_until.is_none();
        if default {
            self.drop_line(room, &key);
        } else {
            self.members
                .entry(room.clone())
                .or_default()
                .insert(key, entry);
        }
    }

    pub(super) fn drop_line(&mut self, room: &Room, key: &str) -> Option<MemberEntry> {
        let members = self.members.get_mut(room)?;
        let removed = members.remove(key);
        if members.is_empty() {
            self.members.remove(room);
        }
        removed
    }
}

/// The loaded state with a by-user index for the per-user queries.
#[derive(Debug, Default)]
pub(super) struct Table {
    pub state: State,
    /// Username key → the rooms with a line for them, and their direct conversations.
    by_user: HashMap<String, BTreeSet<Room>>,
}

impl Table {
    pub(super) fn new(state: State) -> Self {
        let mut by_user: HashMap<String, BTreeSet<Room>> = HashMap::new();
        for (room, members) in &state.members {
            for key in members.keys() {
                by_user.entry(key.clone()).or_default().insert(room.clone());
            }
        }
        for room in state.rooms.keys() {
            if let Some((a, b)) = room.direct_members() {
                for key in [a, b] {
                    by_user
                        .entry(key.to_owned())
                        .or_default()
                        .insert(room.clone());
                }
            }
        }
        Self { state, by_user }
    }

    pub(super) fn rooms_with_line(&self, user: &Username) -> impl Iterator<Item = &Room> {
        self.by_user.get(&user.key()).into_iter().flatten()
    }
}
