//! Flat-file storage for General Communications.
//!
//! - [`MessageStore`]: the server's messages, `database.db` (one record per line) and
//!   `database.msgids` (which client-msg-id produced which record, so retries never duplicate).
//!   Group commit, an id → offset index, an in-memory tail, crash recovery.
//! - [`Accounts`]: `usernames.db`, one SCRAM verifier per line, rewritten atomically.
//! - [`ClientCache`]: the client's `cdatabase.db`, in the record format; [`load_outbox`] and
//!   [`save_outbox`]: the messages it kept unacknowledged for its next run, beside it.
//! - [`Rooms`]: room metadata, `rooms.db`, `members.db` and `admins.db`, rewritten atomically.
//! - [`check`], [`repair`], [`export`], [`import_original`]: what `gc-server db …` runs on a
//!   data dir.
//! - [`backup`], [`verify_backup`]: `gc-server db backup` of a running server's data dir.
//! - [`Digest`], [`summary`], [`DirImport`], [`visit_records`], [`visit_msgids`]: moving a data
//!   dir's contents to another store and back, checked by count and hash.
//! - [`encode_record`], [`parse_record`]: the record line codec.
//! - [`ContentStore`]: shared files' content (`files/`), uploads verified before they are
//!   offered, and their index (GC/5, docs/files.md).
//! - [`private`]: files 0600 and directories 0700, looser ones tightened at open.
//!
//! Formats are described in the protocol notes (§4 Storage): a record line is
//! `{id};{timestamp};{username};{message}` + LF, with `\`, LF and CR in the message escaped as
//! `\\`, `\n` and `\r`.
//!
//! No file content can make this crate panic: every damaged line is reported with its file,
//! line number and the rule it broke.

#![warn(missing_docs)]

mod accounts;
mod admin;
mod backup;
mod cache;
mod codec;
mod content;
mod error;
mod files;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
mod import;
mod lock;
mod messages;
mod msgids;
mod outbox;
pub mod private;
mod rooms;
mod seam;
mod transfer;

pub use accounts::{ACCOUNTS_FILE, Account, Accounts};
pub use admin::{
    CheckReport, ExportFormat, ExportReport, FileCheck, MAX_LISTED_BAD_LINES, RepairReport, check,
    export, export_line, export_room, repair, visit_records,
};
pub use backup::{BackupCheck, BackupFile, BackupReport, MANIFEST_FILE, backup, verify_backup};
pub use cache::{CacheReport, ClientCache};
pub use codec::{
    MAX_BODY_BYTES, MAX_LINE_BYTES, encode_record, encoded_len, escape_into, parse_record, unescape,
};
pub use content::{
    ContentStore, FILE_INDEX, FILES_DIR, FileEntry, FileIndex, FlatFileIndex, GarbageReport,
    StoredFile, UNANNOUNCED_GRACE, Upload, WriteBehind,
};
pub use error::{LineError, Result, StoreError};
pub use files::FaultyLine;
pub use import::{ImportReport, MAX_LISTED_UNREAD, import_original};
pub use lock::{DATABASE_FILE, DataDirLock};
pub use messages::{
    Appended, FsyncPolicy, MessageStore, OpenReport, Page, ParseFsyncPolicyError, ROOMS_DIR,
    RoomSpan, StoreConfig,
};
pub use msgids::{MSGIDS_FILE, MsgidsReport};
pub use outbox::{KeptMessage, UnreadLine, load_outbox, outbox_path, save_outbox};
pub use rooms::{
    ADMINS_FILE, MAX_TOPIC_BYTES, MEMBERS_FILE, Member, MemberKeys, ROOMS_FILE, RoomInfo, RoomRule,
    Rooms, RoomsBackend, RoomsFile, RoomsReport, RoomsSnapshot, Standing,
};
pub use seam::{AccountStore, Arrived, MessageLog, PresenceShare, Waker};
pub use transfer::{Digest, DirImport, STAGING_DIR, Summary, summary, visit_msgids};
