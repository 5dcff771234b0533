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
