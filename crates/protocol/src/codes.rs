//! Tokens and error codes of GC/1.

use std::fmt;
use std::str::FromStr;

/// The protocol version of plain GC/1, as written in `Ping`/`Pong` on the connect port.
pub const VERSION: &str = "GC/1";
/// The version spoken over TLS: GC/1's frames, with the login bound to the TLS session
/// (SCRAM-SHA-256-PLUS), `AuthRequest` carrying the client's callback certificate fingerprint,
/// and the callbacks over mutual TLS.
pub const VERSION_TLS: &str = "GC/2";
/// Rooms, direct conversations and their authorization, on either transport (what TLS adds
/// applies to every TLS connection whatever the version). See docs/rooms.md.
pub const VERSION_ROOMS: &str = "GC/3";
/// GC/3 and, for the session's own account and its peers, a password change (`Challenge`,
/// `Passwd`), an away state (`Away`, `Back`, and `Away` lines in the answer to `Who`), and the
/// server's notice that it stops (`Stopping` on the heartbeat port). See docs/protocol.md §5.8.
pub const VERSION_GC4: &str = "GC/4";
/// GC/4 and file transfer on the sending port (`Offer`, `Chunk`, `Fetch`; docs/files.md).
pub const VERSION_GC5: &str = "GC/5";

/// What a session speaks beyond its transport's own version (GC/1 plain, GC/2 over TLS), as the
/// last field of `AuthRequest` says: nothing, `GC/3`, `GC/4` or `GC/5`. Each level has every frame of
/// the one before it; a session is only ever sent frames its level knows.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum SessionLevel {
    /// GC/1 (GC/2 over TLS): `#general` only.
    #[default]
    Base,
    /// GC/3: rooms.
    Rooms,
    /// GC/4: rooms, `/passwd`, `/away` and the stop notice.
    Gc4,
    /// GC/5: GC/4 and file transfer.
    Gc5,
}

impl SessionLevel {
    /// Whether the session speaks rooms (GC/3 or later).
    pub const fn rooms(self) -> bool {
        matches!(self, Self::Rooms | Self::Gc4 | Self::Gc5)
    }

    /// Whether the session speaks GC/4.
    pub const fn gc4(self) -> bool {
        matches!(self, Self::Gc4 | Self::Gc5)
    }

    /// Whether the session speaks GC/5 (file transfer).
    pub const fn files(self) -> bool {
        matches!(self, Self::Gc5)
    }

    /// The version `AuthRequest` names for it (`None`: the field is left out).
    pub const fn version(self) -> Option<&'static str> {
        match self {
            Self::Base => None,
            Self::Rooms => Some(VERSION_ROOMS),
            Self::Gc4 => Some(VERSION_GC4),
            Self::Gc5 => Some(VERSION_GC5),
        }
    }

    /// The level a version named in `Ping` or `AuthRequest` asks for (`None`: not one of
    /// GC/3, GC/4, GC/5).
    pub fn of_version(version: &str) -> Option<Self> {
        match version {
            VERSION_ROOMS => Some(Self::Rooms),
            VERSION_GC4 => Some(Self::Gc4),
            VERSION_GC5 => Some(Self::Gc5),
            _ => None,
        }
    }
}

/// Frame tokens (the first field of every frame; case-sensitive).
pub mod token {
    /// Connect request (10740) and heartbeat (8070, server → client).
    pub const PING: &str = "Ping";
    /// Connect reply (10740) and heartbeat answer (8070, client → server).
    pub const PONG: &str = "Pong";
    /// First SCRAM message (9281).
    pub const AUTH_REQUEST: &str = "AuthRequest";
    /// Server's SCRAM challenge (9281).
    pub const AUTH1: &str = "Auth1";
    /// Client's SCRAM proof (9281).
    pub const PROOF: &str = "Proof";
    /// Successful login (9281).
    pub const OK: &str = "Ok";
    /// Account creation (9281).
    pub const REGISTER: &str = "Register";
    /// Account created (9281).
    pub const REGISTERED: &str = "Registered";
    /// Auth callback (12090, server → client).
    pub const AUTHED: &str = "Authed";
    /// Acknowledgement (12090, 6090, 9980).
    pub const THX: &str = "Thx";
    /// Start of a delivery batch (6090).
    pub const BATCH: &str = "Batch";
    /// One record (6090, 9980).
    pub const REC: &str = "Rec";
    /// End of a record list (6090, 9980).
    pub const END: &str = "End";
    /// Send a message (9980).
    pub const MSG: &str = "Msg";
    /// Ask for older records (9980).
    pub const HISTORY: &str = "History";
    /// Ask who is online (9980).
    pub const WHO: &str = "Who";
    /// Presence list (9980).
    pub const ONLINE: &str = "Online";
    /// End the session (9980).
    pub const BYE: &str = "Bye";
    /// GC/3: list the session's rooms and the public ones (9980).
    pub const ROOMS: &str = "Rooms";
    /// GC/3: one room of a `Rooms` listing (9980).
    pub const ROOM: &str = "Room";
    /// GC/3: create a room (9980).
    pub const CREATE: &str = "Create";
    /// GC/3: join a room (9980).
    pub const JOIN: &str = "Join";
    /// GC/3: leave a room (9980).
    pub const PART: &str = "Part";
    /// GC/3: invite someone into a room (9980).
    pub const INVITE: &str = "Invite";
    /// GC/3: set a room's topic (9980).
    pub const TOPIC: &str = "Topic";
    /// GC/3: make a room public or private (9980).
    pub const PRIVACY: &str = "Privacy";
    /// GC/3: give a member a role in a room (9980).
    pub const ROLE: &str = "Role";
    /// GC/3: put a member out of a room (9980).
    pub const KICK: &str = "Kick";
    /// GC/3: silence a member in a room for a while (9980).
    pub const MUTE: &str = "Mute";
    /// GC/3: put a member out of a room and keep them out (9980).
    pub const BAN: &str = "Ban";
    /// GC/3: lift a ban (9980).
    pub const UNBAN: &str = "Unban";
    /// GC/4: ask for a password-change challenge (9980, both directions).
    pub const CHALLENGE: &str = "Challenge";
    /// GC/4: replace one's own password's verifier (9980).
    pub const PASSWD: &str = "Passwd";
    /// GC/4: set one's away message (9980, client → server), and one away user in the answer to
    /// `Who` (server → client).
    pub const AWAY: &str = "Away";
    /// GC/4: clear one's away state (9980).
    pub const BACK: &str = "Back";
    /// GC/4: the server stops (8070, server → client).
    pub const STOPPING: &str = "Stopping";
    /// GC/5: announce an upload (9980).
    pub const OFFER: &str = "Offer";
    /// GC/5: where an upload goes on (9980, server → client).
    pub const RESUME: &str = "Resume";
    /// GC/5: a piece of an upload, raw bytes after the line (9980).
    pub const CHUNK: &str = "Chunk";
    /// GC/5: ask for a file's content (9980).
    pub const FETCH: &str = "Fetch";
    /// GC/5: a file's content follows, raw bytes after the line (9980, server → client).
    pub const DATA: &str = "Data";
    /// Error reply (any port).
    pub const ERR: &str = "Err";
}

/// The error codes an `Err` frame may carry (protocol.md §1).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum ErrorCode {
    /// The peer does not speak this protocol version.
    Version,
    /// The frame broke a syntax rule or came at the wrong point of an exchange.
    Malformed,
    /// The frame exceeded the frame size limit; the connection closes.
    TooLong,
    /// Wrong password, or the server's signature did not verify.
    Auth,
    /// No account has this name.
    UnknownUser,
    /// The account already exists.
    Exists,
    /// The server only accepts accounts created by its operator.
    RegistrationClosed,
    /// Too many failed logins; wait before trying again.
    Throttled,
    /// Too many messages; the text says when to retry.
    RateLimited,
    /// The message body exceeds the server's limit.
    TooLarge,
    /// A server plugin refused the message; the text gives its reason.
    Blocked,
    /// Unknown or ended session token, or no session for this address.
    Session,
    /// The server could not reach the client's callback port.
    Unreachable,
    /// The server has reached its client limit.
    Full,
    /// The server is stopping.
    ShuttingDown,
    /// The server failed internally (e.g. storage); the request may be retried.
    Internal,
    /// GC/3: no such room, or a private one the asker may not know of (the same answer, so that
    /// nothing reveals a private room).
    NoRoom,
    /// GC/3: the asker may see the room but may not do this there (not a member, muted, banned,
    /// outranked, a limit reached); the text says which.
    Forbidden,
    /// GC/5: a `Chunk` does not start where the upload stands; `Offer` again to learn where.
    Offset,
    /// GC/5: the uploaded content does not have the announced hash; the upload is discarded.
    Corrupt,
    /// GC/5: the upload would take the user over their storage quota.
    Quota,
    /// GC/5: the server keeps too little free disk space to take the upload.
    DiskFull,
    /// GC/5: no such file, or none the session may fetch (one answer for both).
    UnknownFile,
}

impl ErrorCode {
    /// Every code, in protocol order.
    pub const ALL: [ErrorCode; 23] = [
        Self::Version,
        Self::Malformed,
        Self::TooLong,
        Self::Auth,
        Self::UnknownUser,
        Self::Exists,
        Self::RegistrationClosed,
        Self::Throttled,
        Self::RateLimited,
        Self::TooLarge,
        Self::Blocked,
        Self::Session,
        Self::Unreachable,
        Self::Full,
        Self::ShuttingDown,
        Self::Internal,
        Self::NoRoom,
        Self::Forbidden,
        Self::Offset,
        Self::Corrupt,
        Self::Quota,
        Self::DiskFull,
        Self::UnknownFile,
    ];

    /// The code as written on the wire.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Version => "version",
            Self::Malformed => "malformed",
            Self::TooLong => "too-long",
            Self::Auth => "auth",
            Self::UnknownUser => "unknown-user",
            Self::Exists => "exists",
            Self::RegistrationClosed => "registration-closed",
            Self::Throttled => "throttled",
            Self::RateLimited => "rate-limited",
            Self::TooLarge => "too-large",
            Self::Blocked => "blocked",
            Self::Session => "session",
            Self::Unreachable => "unreachable",
            Self::Full => "full",
            Self::ShuttingDown => "shutting-down",
            Self::Internal => "internal",
            Self::NoRoom => "no-room",
            Self::Forbidden => "forbidden",
            Self::Offset => "offset",
            Self::Corrupt => "corrupt",
            Self::Quota => "quota",
            Self::DiskFull => "disk-full",
            Self::UnknownFile => "unknown-file",
        }
    }
}

impl fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// An unknown error code.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("unknown error code")]
pub struct UnknownErrorCode;

impl FromStr for ErrorCode {
    type Err = UnknownErrorCode;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|c| c.as_str() == s)
            .ok_or(UnknownErrorCode)
    }
}

/// Whether a server accepts `Register` from anyone (`open`) or only has operator-made accounts.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Registration {
    /// Anyone may register.
    Open,
    /// Accounts are created by the operator only.
    Closed,
}

impl Registration {
    /// As written in `Pong`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::Open => "open",
            Self::Closed => "closed",
        }
    }
}
