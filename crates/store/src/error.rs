//! The crate's error type, and the reasons a stored line can be invalid.

use std::io;
use std::path::PathBuf;

/// Which rule a stored line broke. Used for `database.db`, `cdatabase.db`, `database.msgids` and
/// `usernames.db` lines alike; each names the field at fault so an operator can fix the line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum LineError {
    /// Fewer (or, for fixed-width formats, more) `;`-separated fields than the format has.
    #[error("wrong number of ';'-separated fields")]
    Fields,
    /// The id is not a canonical decimal number (digits, no leading zeros) of at most 20 digits.
    #[error("the id is not a canonical decimal number")]
    Id,
    /// The id is not greater than the id of the valid line before it.
    #[error("id {id} is not greater than the previous record's id {previous}")]
    NotIncreasing {
        /// The id on this line.
        id: u64,
        /// The id of the last valid line before it.
        previous: u64,
    },
    /// The timestamp is not `SECONDS[.FRACTION]` with at most six decimals.
    #[error("the timestamp is not seconds since the epoch with up to six decimals")]
    Timestamp,
    /// The username is not 1–32 characters of `A-Z a-z 0-9 _ . -`.
    #[error("the username is not 1-32 characters of A-Z a-z 0-9 _ . -")]
    Username,
    /// The message holds an unknown escape (only `\\`, `\n` and `\r` exist), a lone `\` at its
    /// end, or a raw LF.
    #[error("the message holds an invalid escape (only \\\\, \\n and \\r exist) or a raw LF")]
    Escape,
    /// The message (or another text field) is not valid UTF-8.
    #[error("the text is not valid UTF-8")]
    Utf8,
    /// The line is longer than [`crate::MAX_LINE_BYTES`]; no valid line can be.
    #[error("the line is longer than the 1 MiB a line may hold")]
    TooLong,
    /// The message is longer than [`crate::MAX_BODY_BYTES`], so it could not be delivered in one
    /// frame.
    #[error("the message is longer than the 32,000 bytes a record may hold")]
    BodyTooLarge,
    /// Not 64 lowercase hex digits (a file's SHA-256).
    #[error("the content hash is not 64 lowercase hex digits")]
    ContentHash,
    /// The size is not a canonical decimal number.
    #[error("the size is not a canonical decimal number")]
    Size,
    /// The file's last line has no terminating LF: a write was interrupted (a crash mid-write).
    #[error("the last line has no terminating LF (an interrupted write)")]
    Torn,
    /// The client-msg-id is not 1–32 characters of `A-Z a-z 0-9 _ -`.
    #[error("the client-msg-id is not 1-32 characters of A-Z a-z 0-9 _ -")]
    ClientMsgId,
    /// A base64 field (salt, stored key or server key) is not standard base64 with padding.
    #[error("the {field} is not standard base64 with padding")]
    Base64 {
        /// Which field.
        field: &'static str,
    },
    /// The iteration count is not a canonical decimal number from 1 to 4294967295.
    #[error("the iteration count is not a number from 1 to 4294967295")]
    Iterations,
    /// The room name is neither a room's `#name` (1–32 of `a-z 0-9 _ . -`) nor a direct
    /// conversation's `@a+b` (two different lower-case usernames in order).
    #[error(
        "the room is neither #name (1-32 of a-z 0-9 _ . -) nor @a+b (two lower-case usernames in order)"
    )]
    Room,
    /// A `rooms.db` line for `#general`, which exists on every server and has no line there.
    #[error("#general exists on every server and has no line in rooms.db")]
    GeneralLine,
    /// The kind is not `public`, `private` or `direct`, or does not fit the name (`direct` is
    /// the kind of an `@a+b` name and of no other).
    #[error(
        "the kind is not public, private or direct, or does not fit the name (direct exactly for @a+b)"
    )]
    Kind,
    /// The topic is longer than [`crate::MAX_TOPIC_BYTES`] or holds a NUL.
    #[error("the topic is longer than 512 bytes or holds a NUL")]
    Topic,
    /// The standing is not `owner`, `moderator`, `member`, `invited` or `banned`, or is
    /// `invited` in `#general` (every account is in it).
    #[error(
        "the standing is not owner, moderator, member, invited or banned (and nobody is invited to #general)"
    )]
    Standing,
    /// A mute on an invited or banned user: only members can be muted, so their line ends in `-`.
    #[error(
        "a mute on an invited or banned user (only members can be muted: the last field must be -)"
    )]
    Mute,
    /// A `members.db` line for a room `rooms.db` does not hold (removed, or its line was moved
    /// aside).
    #[error("the room has no line in rooms.db")]
    UnknownRoom,
    /// A `members.db` line for a direct conversation, whose two members are implied by its name.
    #[error("a direct conversation's members are implied by its name and have no lines")]
    DirectMember,
    /// The line names the same thing (room, member of a room, or admin) as an earlier line,
    /// which is the one kept.
    #[error("it repeats line {first_line}, which is kept")]
    Duplicate {
        /// The line kept.
        first_line: u64,
    },
}

/// Everything that can go wrong in the store. Each variant's message says what happened, names the
/// file concerned, and says what to do about it.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// An operating-system call on a file or directory failed. Check the path's permissions, the
    /// free disk space, and the underlying error.
    #[error("could not {action} {}: {source}", path.display())]
    Io {
        /// What the store was doing, as a verb phrase ("read", "fsync", "write to", …).
        action: &'static str,
        /// The file or directory concerned.
        path: PathBuf,
        /// The operating system's error.
        #[source]
        source: io::Error,
    },

    /// Another process (or another handle in this process) holds the exclusive lock.
    #[error(
        "{} is locked by another process: another gc-server may be running on this data dir \
         (or, for a client cache, another gc-client is using it); stop it or use another directory",
        path.display()
    )]
    Locked {
        /// The locked file.
        path: PathBuf,
    },

    /// A line that is not the file's last is invalid. Nothing was changed; run
    /// `gc-server db check` to list the bad lines and `gc-server db repair` to move them aside.
    #[error(
        "line {line_number} of {} is invalid: {reason}; nothing was changed — run `gc-server db check` \
         to list bad lines and `gc-server db repair` to move them aside (or fix the line by hand)",
        path.display()
    )]
    BadLine {
        /// The file.
        path: PathBuf,
        /// 1-based line number.
        line_number: u64,
        /// Which rule the line broke.
        reason: LineError,
    },

    /// Two rooms' files hold the same record id (ids are one sequence across all rooms: an id
    /// names one record, in one room). Nothing was changed.
    #[error(
        "record id {id} is in both {} and {}; ids are one sequence across all rooms — run \
         `gc-server db check`, and remove the line that does not belong (or restore the files from \
         a backup)",
        first.display(),
        second.display()
    )]
    DuplicateId {
        /// The id.
        id: u64,
        /// One file holding it.
        first: PathBuf,
        /// The other.
        second: PathBuf,
    },

    /// A room asked for by name has no file in the data dir.
    #[error("the room {room} has no records in {} (no file for it); check the name", dir.display())]
    NoRoomFile {
        /// The room.
        room: String,
        /// The data dir.
        dir: PathBuf,
    },

    /// An import needs a data dir without messages.
    #[error(
        "{} already holds messages ({what}): import into a new, empty data dir (--data-dir), \
         then move it into place",
        dir.display()
    )]
    ImportTarget {
        /// The data dir.
        dir: PathBuf,
        /// What is in it.
        what: String,
    },

    /// A transfer's target (a data dir, or a database) already holds data.
    #[error(
        "{target} is not empty ({what}): a transfer goes into an empty store only; use a new \
         data dir (--data-dir) or a new database"
    )]
    TransferTarget {
        /// The data dir or database (without password).
        target: String,
        /// What is in it.
        what: String,
    },

    /// A transfer's source gave something a data dir cannot hold as it came.
    #[error("cannot transfer: {what}")]
    Transfer {
        /// What, and where.
        what: String,
    },

    /// A transfer's target does not hold what its source holds (count or hash differ).
    #[error(
        "the copy differs from its source: {source_summary} (source) against {target_summary} \
         (target); nothing was kept"
    )]
    TransferMismatch {
        /// What the source holds.
        source_summary: String,
        /// What the target holds.
        target_summary: String,
    },

    /// A file in the `rooms` directory is not named after a room.
    #[error(
        "{} is not a room's file (rooms/NAME.db, for the room #NAME or the direct conversation \
         @a+b); move it out of the rooms directory",
        path.display()
    )]
    StrayRoomFile {
        /// The file.
        path: PathBuf,
    },

    /// Two lines of `usernames.db` name the same account (usernames are compared without case).
    #[error(
        "lines {first_line} and {line_number} of {} both hold the account {username:?} (names are \
         compared without regard to case); remove one of them",
        path.display()
    )]
    DuplicateAccount {
        /// The accounts file.
        path: PathBuf,
        /// The line of the first occurrence.
        first_line: u64,
        /// The line of the duplicate.
        line_number: u64,
        /// The name as written on the duplicate line.
        username: String,
    },

    /// An account with this name (compared without case) already exists.
    #[error(
        "an account named {username:?} already exists (names are compared without regard to case)"
    )]
    Exists {
        /// The existing account's name as registered.
        username: String,
    },

    /// No account has this name.
    #[error("there is no account named {username:?}")]
    UnknownAccount {
        /// The name asked for.
        username: String,
    },

    /// The message store stopped accepting appends after a write or fsync failed in a way that
    /// left the files' state uncertain. Restart gc-server once the cause is fixed; the files are
    /// validated and repaired on open.
    #[error(
        "the message store in {} stopped accepting messages after an earlier error ({cause}); \
         fix the cause (e.g. free disk space) and restart gc-server",
        path.display()
    )]
    Failed {
        /// The data file concerned.
        path: PathBuf,
        /// The error that stopped it.
        cause: String,
    },

    /// The same user is uploading the same content on another connection already.
    #[error(
        "an upload of {hash} by the same user is in progress on another connection; wait for it \
         to end (or to time out) and offer the file again"
    )]
    UploadBusy {
        /// The content.
        hash: String,
    },

    /// The content is stored with another size than the one announced: the announcement is
    /// wrong.
    #[error("{hash} is stored with {stored} bytes, not the {announced} announced")]
    UploadSize {
        /// The content.
        hash: String,
        /// The size announced.
        announced: u64,
        /// The size stored.
        stored: u64,
    },

    /// A piece of an upload does not start where the upload stands.
    #[error(
        "the upload stands at byte {expected}, not {got}; offer the file again to resume from \
         where it stands"
    )]
    UploadOffset {
        /// Where the upload stands.
        expected: u64,
        /// Where the piece starts.
        got: u64,
    },

    /// A piece of an upload goes past the announced size.
    #[error("the upload goes past its announced size of {size} bytes (to byte {end})")]
    UploadPastEnd {
        /// The announced size.
        size: u64,
        /// Where the piece ends.
        end: u64,
    },

    /// An upload's content does not have the announced hash; what arrived was discarded.
    #[error(
        "the uploaded content is not {hash} (it was damaged or is another file); it was \
             discarded: upload it again"
    )]
    Corrupt {
        /// The announced hash.
        hash: String,
    },

    /// A shared database (PostgreSQL) cannot be reached or failed a request. Messages are not
    /// lost: the client keeps what was not acknowledged and sends it again.
    #[error("the database {store} is unavailable: {cause}")]
    Unavailable {
        /// The database, its URL without password.
        store: String,
        /// What failed.
        cause: String,
    },

    /// A shared database refused what it was asked in a way retrying does not fix (a schema
    /// from a newer gc-server, a violated constraint).
    #[error("the database {store} refused: {cause}")]
    Database {
        /// The database, its URL without password.
        store: String,
        /// What it said.
        cause: String,
    },

    /// A shared database (PostgreSQL) ran out of disk space (SQLSTATE 53100): as a full disk
    /// under the flat store, the request can succeed once space is freed on the database host.
    #[error("the database {store} is out of disk space: {cause}; free space on its host")]
    DatabaseFull {
        /// The database, its URL without password.
        store: String,
        /// What it said.
        cause: String,
    },

    /// A message too large to store as one line.
    #[error("a message of {bytes} bytes is larger than the store accepts ({limit} bytes)")]
    TooLarge {
        /// The body's size.
        bytes: usize,
        /// The largest accepted body.
        limit: usize,
    },

    /// Writing exported records to the output failed (the output belongs to the caller, so its
    /// name is not known here).
    #[error("could not write the exported records: {source}")]
    ExportOutput {
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A room with this name already exists.
    #[error("the room {room} already exists")]
    RoomExists {
        /// The room's name.
        room: String,
    },

    /// No room has this name (for a direct conversation: it was never opened).
    #[error("there is no room {room}")]
    UnknownRoom {
        /// The name asked for.
        room: String,
    },

    /// The change would break one of the rules every room, `#general` and direct conversation
    /// keep, whoever asks. Nothing was changed.
    #[error("{room}: {rule}")]
    RoomRule {
        /// The room concerned.
        room: String,
        /// The rule.
        rule: crate::rooms::RoomRule,
    },

    /// The user is not a member of the room (invited, banned, or no standing at all), and the
    /// change (a mute) is for members only.
    #[error("{username} is not a member of {room}")]
    NotRoomMember {
        /// The room.
        room: String,
        /// The user, as given.
        username: String,
    },

    /// A direct conversation was asked for between an account and itself.
    #[error("a direct conversation needs two different accounts, not {username} twice")]
    DirectWithSelf {
        /// The account named twice.
        username: String,
    },

    /// A room topic longer than the store accepts.
    #[error("a topic of {bytes} bytes is longer than the {limit} bytes a topic may hold")]
    TopicTooLong {
        /// The topic's size.
        bytes: usize,
        /// The longest accepted topic.
        limit: usize,
    },

    /// A room topic holding a NUL byte.
    #[error("a topic may not hold a NUL byte")]
    TopicNul,

    /// A backup cannot be made at this destination (it is not empty, not a directory, …).
    /// Nothing was written.
    #[error("cannot back up into {}: {why}", path.display())]
    BackupTarget {
        /// The destination given.
        path: PathBuf,
        /// Why not.
        why: String,
    },

    /// Writing the backup failed (a full or read-only destination, …). The partial copy was
    /// removed; the destination was left as it was.
    #[error(
        "could not {action} {} while backing up: {source}{}; nothing was kept (the partial copy \
         was removed)",
        path.display(),
        backup_hint(source)
    )]
    BackupOutput {
        /// What was being done.
        action: &'static str,
        /// The file or directory written.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A directory given as a backup is not a complete, intact one.
    #[error("{} is not a complete backup: {why}", path.display())]
    NotABackup {
        /// The directory.
        path: PathBuf,
        /// What is missing or differs.
        why: String,
    },
}

/// What a backup's write error most likely means, in the operator's words.
fn backup_hint(e: &io::Error) -> &'static str {
    match e.kind() {
        io::ErrorKind::StorageFull => " (the destination is full)",
        io::ErrorKind::QuotaExceeded => " (over the disk quota there)",
        io::ErrorKind::ReadOnlyFilesystem => " (the destination is read-only)",
        io::ErrorKind::PermissionDenied => " (no permission to write there)",
        _ => "",
    }
}

impl StoreError {
    /// An [`StoreError::Io`] for `path`.
    pub(crate) fn io(action: &'static str, path: impl Into<PathBuf>, source: io::Error) -> Self {
        Self::Io {
            action,
            path: path.into(),
            source,
        }
    }
}

/// Shorthand for results of this crate.
pub type Result<T, E = StoreError> = std::result::Result<T, E>;
