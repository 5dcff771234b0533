//! Room metadata: which rooms exist, who stands where in them, and who the server admins are.
//! Three small files in the data dir, beside `usernames.db`, each rewritten atomically on every
//! change (temporary file, fsync, rename, directory fsync), like the accounts file:
//!
//! - `rooms.db`: one line per room other than `#general`, direct conversations included:
//!   `{room};{kind};{created-timestamp};{creator};{topic}`, kind `public`, `private` or `direct`
//!   (`direct` exactly for an `@a+b` name), the topic escaped like a message body (`\` → `\\`,
//!   LF → `\n`, CR → `\r`; it is the last field, so it may hold `;`).
//! - `members.db`: one line per (room, user) standing:
//!   `{room};{username};{standing};{muted-until|-}`, standing `owner`, `moderator`, `member`,
//!   `invited` or `banned`, `muted-until` a timestamp or `-` (always `-` unless the standing is
//!   a role). Never a line for a direct conversation (its two members are in its name); lines
//!   for `#general` only for a non-default standing (a role above member, a mute, a ban).
//! - `admins.db`: one username per line, the server admins.
//!
//! Usernames are compared without regard to case ([`Username::key`]) and stored as given when
//! their line was first written. Files are written sorted (rooms by name, members by room then
//! username key, admins by key), created with mode 0600; a missing file is an empty one.
//!
//! The store keeps the state consistent (`#general` always exists and is public, a direct
//! conversation's membership cannot change, a room's members exist only while the room does);
//! it does not decide who may do what: that is the server's job.

mod lines;
mod load;
mod state;

use std::collections::btree_map;
use std::fmt;
use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use gc_protocol::types::{Room, RoomKind, RoomRole, Timestamp, Username, Visibility};
use parking_lot::{Mutex, RwLock};

use crate::error::{Result, StoreError};
use crate::files;
use lines::{MemberEntry, RoomEntry};
pub use load::RoomsReport;
pub use state::DbFile as RoomsFile;
use state::{DbFile, State, Table};

/// A `rooms.db`, `members.db` and `admins.db` line parsed and written back (with its LF), for
/// the fuzz targets.
#[cfg(feature = "fuzzing")]
pub(crate) mod fuzzing {
    use super::lines;
    use crate::error::LineError;

    /// A `rooms.db` line.
    pub fn room_line(line: &[u8]) -> Result<Vec<u8>, LineError> {
        let (room, entry) = lines::parse_room(line)?;
        let mut out = Vec::new();
        lines::encode_room(&room, &entry, &mut out);
        Ok(out)
    }

    /// A `members.db` line.
    pub fn member_line(line: &[u8]) -> Result<Vec<u8>, LineError> {
        let (room, member) = lines::parse_member(line)?;
        let mut out = Vec::new();
        lines::encode_member(&room, &member, &mut out);
        Ok(out)
    }

    /// An `admins.db` line.
    pub fn admin_line(line: &[u8]) -> Result<Vec<u8>, LineError> {
        let admin = lines::parse_admin(line)?;
        let mut out = Vec::new();
        lines::encode_admin(&admin, &mut out);
        Ok(out)
    }
}

/// Name of the rooms file inside a data dir.
pub const ROOMS_FILE: &str = "rooms.db";
/// Name of the room members file inside a data dir.
pub const MEMBERS_FILE: &str = "members.db";
/// Name of the server admins file inside a data dir.
pub const ADMINS_FILE: &str = "admins.db";
/// The longest room topic, in bytes (UTF-8), before escaping.
pub const MAX_TOPIC_BYTES: usize = 512;

/// Where a user stands in a room: a role (a member), invited, or banned.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Standing {
    /// A member, with this role.
    Role(RoomRole),
    /// Invited to a private room, not joined yet. Never in `#general` nor a direct conversation.
    Invited,
    /// Banned: not a member, and may not join. Never in a direct conversation.
    Banned,
}

impl Standing {
    /// The file form: `owner`, `moderator`, `member`, `invited` or `banned`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Role(role) => role.as_str(),
            Self::Invited => "invited",
            Self::Banned => "banned",
        }
    }

    /// Parses the file form (exact, lower case).
    pub fn parse(text: &str) -> Option<Self> {
        match text {
            "invited" => Some(Self::Invited),
            "banned" => Some(Self::Banned),
            role => role.parse().ok().map(Self::Role),
        }
    }

    /// Whether this standing is a membership (a role), not an invitation or a ban.
    pub fn is_member(self) -> bool {
        matches!(self, Self::Role(_))
    }

    /// The role, for a member.
    pub fn role(self) -> Option<RoomRole> {
        match self {
            Self::Role(role) => Some(role),
            Self::Invited | Self::Banned => None,
        }
    }
}

impl fmt::Display for Standing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A room as [`Rooms::get`] and [`Rooms::list`] describe it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomInfo {
    /// Its name.
    pub room: Room,
    /// `public` or `private` for a room (`#general` is public); `None` for a direct
    /// conversation, which is neither.
    pub visibility: Option<Visibility>,
    /// When it was created (a direct conversation: opened). The epoch for `#general`, which has
    /// always existed.
    pub created: Timestamp,
    /// Who created (or opened) it, as given then; `None` for `#general`.
    pub creator: Option<Username>,
    /// Its topic (unescaped; at most [`MAX_TOPIC_BYTES`], no NUL). Empty for `#general` and for a
    /// direct conversation until one is set.
    pub topic: String,
}

impl RoomInfo {
    /// The kind as the files and the `Room` frame write it: `public`, `private` or `direct`.
    pub fn kind_name(&self) -> &'static str {
        lines::kind_name(self.visibility)
    }

    fn general() -> Self {
        Self {
            room: Room::general(),
            visibility: Some(Visibility::Public),
            created: Timestamp::default(),
            creator: None,
            topic: String::new(),
        }
    }

    fn of(room: &Room, entry: &RoomEntry) -> Self {
        Self {
            room: room.clone(),
            visibility: entry.visibility,
            created: entry.created,
            creator: Some(entry.creator.clone()),
            topic: entry.topic.clone(),
        }
    }
}

/// One user's standing in a room, as [`Rooms::members`] lists it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Member {
    /// The user, spelled as when their line was written (a direct conversation's two members:
    /// in lower case, as in its name).
    pub username: Username,
    /// Where they stand.
    pub standing: Standing,
    /// Muted until then, as stored (it may be past: the caller compares it with the time).
    pub muted_until: Option<Timestamp>,
}

/// A rule of rooms that a change would break, whoever asks (see [`StoreError::RoomRule`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum RoomRule {
    /// `#general` cannot be created or removed.
    #[error("#general exists on every server: it cannot be created or removed")]
    GeneralExists,
    /// `#general` cannot be made private.
    #[error("#general is public: it cannot be made private")]
    GeneralPublic,
    /// `#general` has no line in `rooms.db`, hence no stored topic.
    #[error("#general has no stored topic")]
    GeneralTopic,
    /// Nobody is invited to `#general` or removed from it.
    #[error("every account is in #general: nobody is invited to it or removed from it")]
    GeneralMembers,
    /// A direct conversation's members are its name's two accounts, members, without roles,
    /// mutes or bans.
    #[error(
        "a direct conversation's two members are in its name: nobody can be invited to it, \
         removed, banned, muted or given a role in it"
    )]
    DirectMembers,
    /// A direct conversation is neither public nor private.
    #[error("a direct conversation is neither public nor private")]
    DirectVisibility,
    /// A direct conversation is opened with [`Rooms::open_direct`], not created.
    #[error("a direct conversation is opened by its first message, not created")]
    DirectCreate,
}

/// The room metadata of a data dir, loaded in memory. `Send + Sync`; readers never wait for a
/// disk write.
///
/// Every change rewrites the files it concerns atomically before it returns, and changes memory
/// only once they are written: if a write fails, memory and files stay as they were (a change to
/// two files restores the first if the second cannot be written; see [`Rooms::create`]).
///
/// It takes no lock on the data dir itself: the server opens it while holding the message
/// store's lock; admin commands should hold a [`crate::DataDirLock`].
#[derive(Debug)]
pub struct Rooms {
    dir: PathBuf,
    /// Serialises changes (each rewrites whole files).
    writing: Mutex<()>,
    table: RwLock<Arc<Table>>,
    /// Raised by every change, before readers can see it (see [`Rooms::generation`]).
    generation: AtomicU64,
    /// Where the metadata lives when it is shared by several instances (a database), with the
    /// version of it that `table` holds; `None`: the data dir's files.
    shared: Option<(Arc<dyn RoomsBackend>, Mutex<u64>)>,
}

/// The three files' lines as a shared store holds them, at one version.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct RoomsSnapshot {
    /// Raised by every change of any of them.
    pub version: u64,
    /// `rooms.db`'s lines (no LF).
    pub rooms: Vec<Vec<u8>>,
    /// `members.db`'s lines.
    pub members: Vec<Vec<u8>>,
    /// `admins.db`'s lines.
    pub admins: Vec<Vec<u8>>,
}

impl RoomsSnapshot {
    /// The lines of `file`.
    pub fn lines(&self, file: RoomsFile) -> &[Vec<u8>] {
        match file {
            RoomsFile::Rooms => &self.rooms,
            RoomsFile::Members => &self.members,
            RoomsFile::Admins => &self.admins,
        }
    }
}

/// Room metadata kept where several instances share it (PostgreSQL), as the lines of the three
/// files, changed with compare-and-swap on a version: an instance whose copy is stale reloads
/// and applies its change again, so two instances never overwrite each other's changes.
pub trait RoomsBackend: Send + Sync + fmt::Debug {
    /// Where it is, for logs and errors (no password).
    fn describe(&self) -> String;
    /// Everything, at one version.
    fn load(&self) -> Result<RoomsSnapshot>;
    /// The current version (cheap: to tell whether [`RoomsBackend::load`] is needed).
    fn version(&self) -> Result<u64>;
    /// Replaces the lines of each file in `changed` if the stored version is still `version`,
    /// atomically: `Some(new version)`, or `None` if another instance changed it first.
    fn replace(&self, version: u64, changed: &[(RoomsFile, Vec<Vec<u8>>)]) -> Result<Option<u64>>;
}

/// How many times a change is tried against a shared store that others keep changing first.
const MAX_SHARED_TRIES: usize = 20;

/// A room's member keys as of one moment ([`Rooms::member_keys`]).
#[derive(Debug)]
pub struct MemberKeys {
    table: Arc<Table>,
    room: Room,
}

impl MemberKeys {
    /// The keys, in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = &str> {
        let state = &self.table.state;
        let direct = match self.room.direct_members() {
            Some(pair) if state.rooms.contains_key(&self.room) => Some(pair),
            _ => None,
        };
        let listed = match self.room.kind() {
            RoomKind::Room if !self.room.is_general() => state.members.get(&self.room),
            _ => None,
        };
        direct.into_iter().flat_map(|(a, b)| [a, b]).chain(
            listed
                .into_iter()
                .flatten()
                .filter(|(_, m)| m.standing.is_member())
                .map(|(key, _)| key.as_str()),
        )
    }
}

impl Rooms {
    /// Loads `rooms.db`, `members.db` and `admins.db` from `dir` (missing ones are empty; they
    /// are created by the first change). A missing LF after a file's last line is accepted.
    ///
    /// Invalid lines never stop it: each is appended to `<file>.corrupt` after a `#` line naming
    /// its line number and the rule it broke, logged, listed in the report, and the file is
    /// rewritten without it. So are lines that repeat an earlier room, (room, user) pair or admin
    /// (the first is kept) and `members.db` lines for a room `rooms.db` does not hold (left by a
    /// removal interrupted by a crash, or whose room line was itself invalid). An error is only
    /// an I/O failure.
    pub fn open(dir: &Path) -> Result<(Self, RoomsReport)> {
        let (state, report) = load::load(dir)?;
        let rooms = Self {
            dir: dir.to_owned(),
            writing: Mutex::new(()),
            table: RwLock::new(Arc::new(Table::new(state))),
            generation: AtomicU64::new(0),
            shared: None,
        };
        if !report.is_clean() {
            // Write the files without the lines moved aside.
            let _writing = rooms.writing.lock();
            let table = Arc::clone(&rooms.table.read());
            for (file, bad) in [
                (DbFile::Rooms, &report.rooms_db),
                (DbFile::Members, &report.members_db),
                (DbFile::Admins, &report.admins_db),
            ] {
                if !bad.is_empty() {
                    rooms.write(file, &table.state.encode(file))?;
                }
            }
        }
        Ok((rooms, report))
    }

    /// The metadata of a shared store (PostgreSQL): loaded now, changed there, reloaded by
    /// [`Rooms::refresh`] when another instance changed it. `dir` is only for messages.
    pub fn open_shared(dir: &Path, backend: Arc<dyn RoomsBackend>) -> Result<(Self, RoomsReport)> {
        let snapshot = backend.load()?;
        let (state, report) = load::load_lines(&snapshot);
        Ok((
            Self {
                dir: dir.to_owned(),
                writing: Mutex::new(()),
                table: RwLock::new(Arc::new(Table::new(state))),
                generation: AtomicU64::new(0),
                shared: Some((backend, Mutex::new(snapshot.version))),
            },
            report,
        ))
    }

    /// Reloads a shared store's metadata if another instance changed it (a no-op for files):
    /// whether anything changed.
    pub fn refresh(&self) -> Result<bool> {
        let Some((backend, version)) = &self.shared else {
            return Ok(false);
        };
        let _writing = self.writing.lock();
        let mut held = version.lock();
        if backend.version()? == *held {
            return Ok(false);
        }
        let snapshot = backend.load()?;
        let (state, _) = load::load_lines(&snapshot);
        self.publish(state);
        *held = snapshot.version;
        Ok(true)
    }

    /// Makes `state` what readers see, raising the generation under the lock they take: a reader
    /// that reads the new number cannot then read the old table.
    fn publish(&self, state: State) {
        let next = Arc::new(Table::new(state));
        let mut table = self.table.write();
        self.generation.fetch_add(1, Ordering::AcqRel);
        *table = next;
    }

    /// The data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn table(&self) -> Arc<Table> {
        Arc::clone(&self.table.read())
    }

    /// A number that changes with every change of rooms, memberships or admins, so a reader can
    /// keep what it derived (a session's rooms) until it changes. Read it before what it guards:
    /// it is raised under the lock that publishes the change, so whoever reads the new number
    /// sees the change, and a number read before a change only makes a reader work it out
    /// again.
    pub fn generation(&self) -> u64 {
        self.generation.load(Ordering::Acquire)
    }

    /// The username keys of `room`'s members (owners, moderators and members; not the invited or
    /// banned): for a direct conversation that exists, its two accounts. Not for `#general`,
    /// whose members are every account. Read without copying a name: a message to a room
    /// wakes its members through this.
    pub fn member_keys(&self, room: &Room) -> MemberKeys {
        MemberKeys {
            table: self.table(),
            room: room.clone(),
        }
    }

    /// The room with this name: `#general` always; a direct conversation once opened.
    pub fn get(&self, room: &Room) -> Option<RoomInfo> {
        if room.is_general() {
            return Some(RoomInfo::general());
        }
        let t = self.table();
        t.state.rooms.get(room).map(|e| RoomInfo::of(room, e))
    }

    /// Every room: `#general` first, then the others (direct conversations included) by name.
    pub fn list(&self) -> Vec<RoomInfo> {
        let t = self.table();
        std::iter::once(RoomInfo::general())
            .chain(t.state.rooms.iter().map(|(r, e)| RoomInfo::of(r, e)))
            .collect()
    }

    /// Where `user` stands in `room`: in `#general`, a member unless a line says otherwise; in a
    /// direct conversation that exists, a member for its two accounts; in another room, what
    /// its line says. `None` for no standing, and for a room that does not exist.
    pub fn standing(&self, room: &Room, user: &Username) -> Option<Standing> {
        self.table().state.standing(room, user)
    }

    /// The standings in `room`, by username key: for `#general` only the non-default ones (every
    /// other account is a plain, unmuted member); for a direct conversation that exists, its two
    /// members; empty for a room that does not exist.
    pub fn members(&self, room: &Room) -> Vec<Member> {
        let t = self.table();
        if room.kind() == RoomKind::Direct {
            let (true, Some((a, b))) = (t.state.rooms.contains_key(room), room.direct_members())
            else {
                return Vec::new();
            };
            return [a, b]
                .into_iter()
                .filter_map(|key| Username::new(key).ok())
                .map(|username| Member {
                    username,
                    standing: Standing::Role(RoomRole::Member),
                    muted_until: None,
                })
                .collect();
        }
        t.state.members.get(room).map_or_else(Vec::new, |members| {
            members
                .values()
                .map(|m| Member {
                    username: m.username.clone(),
                    standing: m.standing,
                    muted_until: m.muted_until,
                })
                .collect()
        })
    }

    /// The rooms `user` is a member of ([`Rooms::is_member`]): `#general` first (unless banned
    /// there), then by name, their direct conversations included. Rooms they are only invited
    /// to are not listed.
    pub fn rooms_of(&self, user: &Username) -> Vec<Room> {
        let t = self.table();
        let general = Room::general();
        let mut rooms = Vec::new();
        if t.state
            .standing(&general, user)
            .is_some_and(Standing::is_member)
        {
            rooms.push(general);
        }
        rooms.extend(
            t.rooms_with_line(user)
                .filter(|r| !r.is_general())
                .filter(|r| t.state.standing(r, user).is_some_and(Standing::is_member))
                .cloned(),
        );
        rooms
    }

    /// Whether `user` is a member of `room` (owner, moderator or member; not invited, not
    /// banned, not a room that does not exist).
    pub fn is_member(&self, room: &Room, user: &Username) -> bool {
        self.standing(room, user).is_some_and(Standing::is_member)
    }

    /// Until when `user` is muted in `room`, as stored (possibly past: compare with the time).
    pub fn muted_until(&self, room: &Room, user: &Username) -> Option<Timestamp> {
        self.table().state.line(room, user)?.muted_until
    }

    /// How many rooms `user` owns (`#general` not counted: the limit on owned rooms is about the
    /// rooms people create).
    pub fn owned_count(&self, user: &Username) -> usize {
        let t = self.table();
        let owner = Some(Standing::Role(RoomRole::Owner));
        t.rooms_with_line(user)
            .filter(|r| !r.is_general() && t.state.line(r, user).map(|m| m.standing) == owner)
            .count()
    }

    /// Whether `user` is a server admin.
    pub fn is_admin(&self, user: &Username) -> bool {
        self.table().state.admins.contains_key(&user.key())
    }

    /// The server admins, by username key.
    pub fn admins(&self) -> Vec<Username> {
        self.table().state.admins.values().cloned().collect()
    }

    /// Creates `room` with `creator` as its owner, and returns it. Refuses `#general`
    /// ([`RoomRule::GeneralExists`]), a direct conversation ([`RoomRule::DirectCreate`]: see
    /// [`Rooms::open_direct`]), an existing room ([`StoreError::RoomExists`]) and a topic longer
    /// than [`MAX_TOPIC_BYTES`] or holding a NUL.
    ///
    /// Writes `members.db`, then `rooms.db`: a crash between the two leaves an owner line for a
    /// room that does not exist, which the next [`Rooms::open`] moves aside, so the room was
    /// not created. If `rooms.db` cannot be written, `members.db` is restored.
    pub fn create(
        &self,
        room: &Room,
        visibility: Visibility,
        creator: &Username,
        topic: &str,
        now: Timestamp,
    ) -> Result<RoomInfo> {
        check_topic(topic)?;
        self.change(&[DbFile::Members, DbFile::Rooms], |s| {
            if room.is_general() {
                return Err(rule(room, RoomRule::GeneralExists));
            }
            if room.kind() == RoomKind::Direct {
                return Err(rule(room, RoomRule::DirectCreate));
            }
            if s.rooms.contains_key(room) {
                return Err(StoreError::RoomExists {
                    room: room.to_string(),
                });
            }
            let entry = RoomEntry {
                visibility: Some(visibility),
                created: now,
                creator: creator.clone(),
                topic: topic.to_owned(),
            };
            let info = RoomInfo::of(room, &entry);
            s.rooms.insert(room.clone(), entry);
            // No line can be left from an earlier room of this name: removal drops them.
            s.members.remove(room);
            s.put(
                room,
                creator.key(),
                MemberEntry {
                    username: creator.clone(),
                    standing: Standing::Role(RoomRole::Owner),
                    muted_until: None,
                },
            );
            Ok(info)
        })
    }

    /// The direct conversation between `a` and `b`, opened (by `a`, at `now`) if it did not
    /// exist; the flag says whether it was opened now. Idempotent. Refuses `a` and `b` being one
    /// account ([`StoreError::DirectWithSelf`]); whether both accounts exist is the caller's
    /// check.
    pub fn open_direct(
        &self,
        a: &Username,
        b: &Username,
        now: Timestamp,
    ) -> Result<(RoomInfo, bool)> {
        let room = Room::direct(a, b).map_err(|_| StoreError::DirectWithSelf {
            username: a.to_string(),
        })?;
        if let Some(info) = self.get(&room) {
            return Ok((info, false));
        }
        self.change(&[DbFile::Rooms], |s| {
            if let Some(entry) = s.rooms.get(&room) {
                // Opened by another thread meanwhile.
                return Ok((RoomInfo::of(&room, entry), false));
            }
            let entry = RoomEntry {
                visibility: None,
                created: now,
                creator: a.clone(),
                topic: String::new(),
            };
            let info = RoomInfo::of(&room, &entry);
            s.rooms.insert(room.clone(), entry);
            Ok((info, true))
        })
    }

    /// Removes `room` and every standing in it, and returns what it was. Refuses `#general`
    /// ([`RoomRule::GeneralExists`]) and a room that does not exist. A direct conversation may
    /// be removed (it is opened again by the next message).
    ///
    /// Writes `rooms.db`, then `members.db`: a crash between the two leaves lines for a room
    /// that no longer exists, which the next [`Rooms::open`] moves aside, so the room is gone
    /// either way. If `members.db` cannot be written, `rooms.db` is restored. Its messages are
    /// not this store's concern.
    pub fn remove(&self, room: &Room) -> Result<RoomInfo> {
        self.change(&[DbFile::Rooms, DbFile::Members], |s| {
            if room.is_general() {
                return Err(rule(room, RoomRule::GeneralExists));
            }
            let entry = s
                .rooms
                .remove(room)
                .ok_or_else(|| StoreError::UnknownRoom {
                    room: room.to_string(),
                })?;
            s.members.remove(room);
            Ok(RoomInfo::of(room, &entry))
        })
    }

    /// Sets where `user` stands in `room`, and returns where they stood before (as
    /// [`Rooms::standing`] said). A member keeps their mute when their role changes; an invitation
    /// or a ban lifts it. Refuses a direct conversation ([`RoomRule::DirectMembers`]), an
    /// invitation to `#general` ([`RoomRule::GeneralMembers`]) and a room that does not exist.
    /// `Standing::Role(Member)` in `#general` (unmuted) drops the user's line: the default.
    pub fn set_standing(
        &self,
        room: &Room,
        user: &Username,
        standing: Standing,
    ) -> Result<Option<Standing>> {
        self.change(&[DbFile::Members], |s| {
            check_members_change(s, room)?;
            if room.is_general() && standing == Standing::Invited {
                return Err(rule(room, RoomRule::GeneralMembers));
            }
            let before = s.standing(room, user);
            let old = s.line(room, user);
            let entry = MemberEntry {
                username: old.map_or_else(|| user.clone(), |m| m.username.clone()),
                standing,
                muted_until: old
                    .and_then(|m| m.muted_until)
                    .filter(|_| standing.is_member()),
            };
            s.put(room, user.key(), entry);
            Ok(before)
        })
    }

    /// Removes `user`'s standing in `room` (leaving, a kick, an invitation withdrawn, a ban
    /// lifted), and returns it; `None` (and nothing written) if they had none. Refuses
    /// `#general` ([`RoomRule::GeneralMembers`]: set the standing to a plain member instead), a
    /// direct conversation ([`RoomRule::DirectMembers`]) and a room that does not exist.
    pub fn remove_member(&self, room: &Room, user: &Username) -> Result<Option<Standing>> {
        self.change(&[DbFile::Members], |s| {
            check_members_change(s, room)?;
            if room.is_general() {
                return Err(rule(room, RoomRule::GeneralMembers));
            }
            Ok(s.drop_line(room, &user.key()).map(|m| m.standing))
        })
    }

    /// Mutes `user` in `room` until `until`, or lifts the mute (`None`). Only a member can be
    /// muted ([`StoreError::NotRoomMember`]); refuses a direct conversation
    /// ([`RoomRule::DirectMembers`]) and a room that does not exist.
    pub fn set_muted(&self, room: &Room, user: &Username, until: Option<Timestamp>) -> Result<()> {
        self.change(&[DbFile::Members], |s| {
            check_members_change(s, room)?;
            let Some(standing @ Standing::Role(_)) = s.standing(room, user) else {
                return Err(StoreError::NotRoomMember {
                    room: room.to_string(),
                    username: user.to_string(),
                });
            };
            let username = s
                .line(room, user)
                .map_or_else(|| user.clone(), |m| m.username.clone());
            s.put(
                room,
                user.key(),
                MemberEntry {
                    username,
                    standing,
                    muted_until: until,
                },
            );
            Ok(())
        })
    }

    /// Sets `room`'s topic (at most [`MAX_TOPIC_BYTES`], no NUL). Refuses `#general`
    /// ([`RoomRule::GeneralTopic`]) and a room that does not exist; a direct conversation may
    /// have one.
    pub fn set_topic(&self, room: &Room, topic: &str) -> Result<()> {
        check_topic(topic)?;
        self.change(&[DbFile::Rooms], |s| {
            if room.is_general() {
                return Err(rule(room, RoomRule::GeneralTopic));
            }
            let entry = s
                .rooms
                .get_mut(room)
                .ok_or_else(|| StoreError::UnknownRoom {
                    room: room.to_string(),
                })?;
            topic.clone_into(&mut entry.topic);
            Ok(())
        })
    }

    /// Makes `room` public or private. `#general` stays public (making it public again is
    /// accepted; private is [`RoomRule::GeneralPublic`]); refuses a direct conversation
    /// ([`RoomRule::DirectVisibility`]) and a room that does not exist. Standings are kept: in a
    /// room made public, the invited stay invited (they may join either way).
    pub fn set_visibility(&self, room: &Room, visibility: Visibility) -> Result<()> {
        self.change(&[DbFile::Rooms], |s| {
            if room.is_general() {
                return match visibility {
                    Visibility::Public => Ok(()),
                    Visibility::Private => Err(rule(room, RoomRule::GeneralPublic)),
                };
            }
            if room.kind() == RoomKind::Direct && s.rooms.contains_key(room) {
                return Err(rule(room, RoomRule::DirectVisibility));
            }
            let entry = s
                .rooms
                .get_mut(room)
                .ok_or_else(|| StoreError::UnknownRoom {
                    room: room.to_string(),
                })?;
            entry.visibility = Some(visibility);
            Ok(())
        })
    }

    /// Makes `user` a server admin or not, and returns whether that changed anything. A new
    /// admin is stored as spelled here; an existing one keeps their spelling.
    pub fn set_admin(&self, user: &Username, admin: bool) -> Result<bool> {
        self.change(&[DbFile::Admins], |s| {
            let key = user.key();
            Ok(if admin {
                match s.admins.entry(key) {
                    btree_map::Entry::Occupied(_) => false,
                    btree_map::Entry::Vacant(slot) => {
                        slot.insert(user.clone());
                        true
                    }
                }
            } else {
                s.admins.remove(&key).is_some()
            })
        })
    }

    /// Applies `f` to a copy of the state, writes those of `files` whose content changed, in that
    /// order, then publishes the copy. If `f` refuses or a write fails, memory does not change;
    /// a file already written is restored.
    fn change<T>(&self, files: &[DbFile], f: impl FnMut(&mut State) -> Result<T>) -> Result<T> {
        match &self.shared {
            Some((backend, version)) => self.change_shared(&**backend, version, files, f),
            None => self.change_files(files, f),
        }
    }

    /// [`Rooms::change`] on a shared store: compare-and-swap on its version; on a conflict,
    /// reload and apply `f` again to the newer state.
    fn change_shared<T>(
        &self,
        backend: &dyn RoomsBackend,
        version: &Mutex<u64>,
        files: &[DbFile],
        mut f: impl FnMut(&mut State) -> Result<T>,
    ) -> Result<T> {
        let _writing = self.writing.lock();
        let mut held = version.lock();
        // Rules are checked against the state the change applies to: make it the newest (a
        // room made through another instance a moment ago exists here too).
        if backend.version()? != *held {
            let snapshot = backend.load()?;
            let (state, _) = load::load_lines(&snapshot);
            self.publish(state);
            *held = snapshot.version;
        }
        for _ in 0..MAX_SHARED_TRIES {
            let current = self.table();
            let mut next = current.state.clone();
            let out = f(&mut next)?;
            let changed: Vec<(DbFile, Vec<Vec<u8>>)> = files
                .iter()
                .filter(|&&file| current.state.encode(file) != next.encode(file))
                .map(|&file| {
                    let lines = next
                        .encode(file)
                        .split(|&b| b == b'\n')
                        .filter(|l| !l.is_empty())
                        .map(<[u8]>::to_vec)
                        .collect();
                    (file, lines)
                })
                .collect();
            if changed.is_empty() {
                return Ok(out);
            }
            if let Some(v) = backend.replace(*held, &changed)? {
                self.publish(next);
                *held = v;
                return Ok(out);
            }
            // Another instance changed it first: start again from what it holds now.
            let snapshot = backend.load()?;
            let (state, _) = load::load_lines(&snapshot);
            self.publish(state);
            *held = snapshot.version;
        }
        Err(StoreError::Database {
            store: backend.describe(),
            cause: format!(
                "the room metadata kept changing under this change ({MAX_SHARED_TRIES} tries); \
                 try again"
            ),
        })
    }

    fn change_files<T>(
        &self,
        files: &[DbFile],
        f: impl FnOnce(&mut State) -> Result<T>,
    ) -> Result<T> {
        let _writing = self.writing.lock();
        let current = self.table();
        let mut next = current.state.clone();
        let out = f(&mut next)?;
        let mut written: Vec<(DbFile, Vec<u8>)> = Vec::new();
        for &file in files {
            let old = current.state.encode(file);
            let new = next.encode(file);
            if old == new {
                continue;
            }
            if let Err(e) = self.write(file, &new) {
                for (done, old) in written.iter().rev() {
                    if let Err(undo) = self.write(*done, old) {
                        tracing::error!(
                            file = %self.dir.join(done.name()).display(),
                            error = %undo,
                            "could not restore a room metadata file after a failed change: \
                             it holds the change, memory does not; fix the cause and restart"
                        );
                    }
                }
                return Err(e);
            }
            written.push((file, old));
        }
        if !written.is_empty() {
            self.publish(next);
        }
        Ok(out)
    }

    /// Rewrites `file` atomically with `content`, mode 0600.
    fn write(&self, file: DbFile, content: &[u8]) -> Result<()> {
        let path = self.dir.join(file.name());
        crate::private::create_dirs(&self.dir)
            .map_err(|e| StoreError::io("create the directory", &self.dir, e))?;
        files::atomic_rewrite(&path, |w| w.write_all(content), |_| Ok(()))
    }
}

fn rule(room: &Room, rule: RoomRule) -> StoreError {
    StoreError::RoomRule {
        room: room.to_string(),
        rule,
    }
}

fn check_topic(topic: &str) -> Result<()> {
    lines::topic_fault(topic).map_or(Ok(()), Err)
}

/// Refuses a change of standing in a direct conversation or in a room that does not exist.
fn check_members_change(s: &State, room: &Room) -> Result<()> {
    s.known(room)?;
    if room.kind() == RoomKind::Direct {
        return Err(rule(room, RoomRule::DirectMembers));
    }
    Ok(())
}

#[cfg(test)]
mod tests;
