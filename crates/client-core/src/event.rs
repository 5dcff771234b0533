//! What the client tells its user interface: one [`Event`] stream, plus a [`Status`] snapshot for a
//! status bar.

use std::fmt;
use std::time::{Duration, Instant};

use gc_protocol::sanitize::Sanitized;
use gc_protocol::{
    CallbackPorts, ClientMsgId, ErrorCode, Record, Registration, Room, Timestamp, Username,
};

use crate::control::Command;
use crate::error::ClientError;
use crate::rooms::{RoomInfo, RoomRequest};

/// The connection state machine (the original design's states).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, Default)]
pub enum ConnState {
    /// Not connected: waiting to retry, stopped after a fatal error, or closed.
    #[default]
    Disconnected,
    /// Checking the server's version on its connect port.
    Connecting,
    /// The server answered; registering or about to log in.
    Connected,
    /// SCRAM login in progress (waiting for the auth callback).
    Authenticating,
    /// The server proved its identity on the auth callback; waiting for `Ok`.
    Authenticated,
    /// Logged in: heartbeats, deliveries and sending run.
    Active,
}

impl ConnState {
    /// The state's name in capitals, as a status bar shows it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Disconnected => "DISCONNECTED",
            Self::Connecting => "CONNECTING",
            Self::Connected => "CONNECTED",
            Self::Authenticating => "AUTHENTICATING",
            Self::Authenticated => "AUTHENTICATED",
            Self::Active => "ACTIVE",
        }
    }
}

impl fmt::Display for ConnState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// How much a notice matters.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum NoticeLevel {
    /// Worth showing (e.g. "account created").
    Info,
    /// Something is wrong but the client carries on (e.g. "server unreachable, retrying").
    Warning,
}

/// Something the user interface should know about. Events come in the order they happened;
/// [`Event::Records`] are in ascending id order and each id comes at most once per client run
/// (unless the server turns out to be another one, or its store was reset: then a warning notice
/// says so and ids start again). Records may arrive just before [`ConnState::Active`]: the
/// server's first delivery can overtake its `Ok`.
///
/// With rooms (GC/3, see [`Event::Version`]) records of every room the account is in come in
/// one stream, in id order across rooms; each [`Record::room`] says where it belongs. Joins,
/// parts, kicks and other changes of a room arrive as records from `System` in that room.
#[derive(Debug)]
pub enum Event {
    /// The connection state changed.
    State(ConnState),
    /// The version check agreed on a protocol version: with rooms (`GC/3`) or without (an older
    /// server: `GC/2` over TLS, `GC/1` plain; only `#general` then). Sent before
    /// [`ConnState::Connected`] at the first login, and again only when the agreement changes
    /// (the server was replaced by an older or a newer one).
    Version {
        /// `GC/3`, `GC/2` or `GC/1`.
        version: &'static str,
        /// Whether the server serves rooms: the room methods of [`crate::Client`] work.
        rooms: bool,
    },
    /// New records from the server, ascending by id, each id once (own messages included), of
    /// every room the account is in.
    Records(Vec<Record>),
    /// The answer to [`crate::Client::history`] or [`crate::Client::history_in`]: older records
    /// of one room, ascending. May overlap records already shown; a UI merges by id.
    History {
        /// The room asked for.
        room: Room,
        /// The `before_id` asked for.
        before_id: u64,
        /// The page, ascending.
        records: Vec<Record>,
    },
    /// Who is online (after a presence change, or [`crate::Client::who`]).
    Presence {
        /// The server's presence version.
        version: u64,
        /// Each online user once.
        users: Vec<Username>,
    },
    /// Which members of a room are online (the answer to [`crate::Client::who_in`], and after
    /// each presence change for the rooms given to [`crate::Client::watch_presence`]).
    RoomPresence {
        /// The room.
        room: Room,
        /// The server's presence version.
        version: u64,
        /// Each online member once.
        users: Vec<Username>,
    },
    /// GC/4: who of those online is away, and their messages (right before each
    /// [`Event::Presence`] of a GC/4 session; an empty list: nobody).
    Away(Vec<(Username, String)>),
    /// GC/4: the server did an account request ([`crate::Client::away`],
    /// [`crate::Client::back`], [`crate::Client::passwd`]).
    AccountDone(AccountChange),
    /// The answer to [`crate::Client::rooms`]: the account's rooms and direct conversations,
    /// the public rooms, and those it is invited to, in the server's order.
    RoomList(Vec<RoomInfo>),
    /// The server did a room request ([`crate::Client::join`], [`crate::Client::kick`], …).
    RoomDone {
        /// What was asked.
        request: RoomRequest,
        /// The id of the notice record the server stored in the room (it arrives as a record
        /// to the room's members, e.g. `alice joined`); `0` when nothing had to change (inviting
        /// someone invited already, lifting a ban that was not there, …).
        notice_id: u64,
    },
    /// A request other than a message was refused: by the server (`no-room`, `forbidden`,
    /// `exists`, `unknown-user`, `rate-limited`, …, with its text), or by the client when the
    /// session has no rooms (`version`).
    Refused(Refusal),
    /// The server stored a message from the outbox.
    Acked(Ack),
    /// The server refused a message for good; it has left the outbox.
    Rejected(Rejection),
    /// Something for a human to read.
    Notice {
        /// How much it matters.
        level: NoticeLevel,
        /// The text: one line, sanitised (`gc_protocol::sanitize`) as it may quote the server.
        text: String,
    },
    /// The client stopped trying: wrong password, unknown user, server signature mismatch, …
    /// [`crate::Client::reconnect`] tries again.
    Fatal(ClientError),
    /// A file transfer (GC/5) moved on: progress, done, failed or cancelled.
    Transfer(crate::transfer::TransferEvent),
}

/// An account request the server did (GC/4).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AccountChange {
    /// Away, with this message, for as long as the client runs (it is set again after each
    /// login) or until [`crate::Client::back`].
    Away(String),
    /// No longer away.
    Back,
    /// The password was changed; the next logins use the new one.
    Password,
}

/// The server stored a message from the outbox.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Ack {
    /// The id [`crate::Client::send`] returned.
    pub client_msg_id: ClientMsgId,
    /// The record's id.
    pub id: u64,
    /// The record's timestamp (UTC).
    pub timestamp: Timestamp,
}

/// The server refused a message for good.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rejection {
    /// The id [`crate::Client::send`] returned.
    pub client_msg_id: ClientMsgId,
    /// The room it was for.
    pub room: Room,
    /// Why (`too-large`, `blocked`, `malformed`, `forbidden`, `no-room`, …).
    pub code: ErrorCode,
    /// The server's explanation, as it wrote it: sanitise it to show it.
    pub text: String,
}

/// A request refused ([`Event::Refused`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    /// What was asked.
    pub command: Command,
    /// Why: the server's error code (`version` when the client refused it itself, on a session
    /// without rooms); `None` when the server answered something else than the request allows.
    pub code: Option<ErrorCode>,
    /// The explanation for a human: the server's text, as it wrote it (sanitised when the
    /// refusal is formatted).
    pub text: String,
}

/// `could not get the list of rooms (forbidden): …`, as a front end shows it.
impl fmt::Display for Refusal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let what = match &self.command {
            Command::Room(request) => format!("could not {request}"),
            command @ (Command::Away { .. } | Command::Passwd(_)) => format!("could not {command}"),
            other => format!("could not get {other}"),
        };
        match self.code {
            Some(code) => write!(f, "{what} ({code}): {}", Sanitized(&self.text)),
            None => write!(f, "{what}: {}", Sanitized(&self.text)),
        }
    }
}

/// A snapshot of the connection for a status bar.
#[derive(Clone, Debug)]
pub struct Status {
    /// The state.
    pub state: ConnState,
    /// The server's name as it announced it (once connected): any text, sanitise it to show it.
    pub server_name: Option<String>,
    /// Whether the server accepts registrations.
    pub registration: Option<Registration>,
    /// When the last heartbeat arrived (in this session).
    pub last_heartbeat: Option<Instant>,
    /// The server's heartbeat interval (once logged in).
    pub heartbeat_interval: Option<Duration>,
    /// Who is online, as last fetched.
    pub online: Vec<Username>,
    /// The presence version of `online`.
    pub presence_version: Option<u64>,
    /// Highest record id held: the delivery cursor.
    pub last_id: u64,
    /// Messages waiting to be acknowledged.
    pub outbox_len: usize,
    /// The server's newest id at the last login.
    pub login_latest: Option<u64>,
    /// Whether the session has received everything that existed for it when it logged in:
    /// `last_id` reached `login_latest`, or (with rooms, whose newest records may be of rooms
    /// this account is not in, which never arrive) a whole heartbeat cycle brought nothing more.
    pub caught_up: bool,
    /// The ports the client listens on.
    pub ports: CallbackPorts,
    /// Whether the server serves rooms (GC/3): `None` until a version check answered.
    pub rooms: Option<bool>,
    /// The protocol version the last version check agreed on (`GC/3`, `GC/2`, `GC/1`).
    pub version: Option<&'static str>,
    /// The instance of the server (list) the client is on, or trying.
    pub instance: Option<crate::failover::Instance>,
}
