//! What the client tells its user interface: one [`Event`] stream, plus a [`Status`] snapshot for a
//! status bar.

use std::fmt;
use std::time::{Duration, Instant};

use gc_protocol::{
    CallbackPorts, ClientMsgId, ErrorCode, Record, Registration, Timestamp, Username,
};

use crate::error::ClientError;

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
#[derive(Debug)]
pub enum Event {
    /// The connection state changed.
    State(ConnState),
    /// New records from the server, ascending by id, each id once (own messages included).
    Records(Vec<Record>),
    /// The answer to [`crate::Client::history`]: older records, ascending. May overlap records
    /// already shown; a UI merges by id.
    History {
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
    /// The server stored a message from the outbox.
    Acked(Ack),
    /// The server refused a message for good; it has left the outbox.
    Rejected(Rejection),
    /// Something for a human to read.
    Notice {
        /// How much it matters.
        level: NoticeLevel,
        /// The text.
        text: String,
    },
    /// The client stopped trying: wrong password, unknown user, server signature mismatch, …
    /// [`crate::Client::reconnect`] tries again.
    Fatal(ClientError),
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
    /// Why (`too-large`, `blocked`, `malformed`, …).
    pub code: ErrorCode,
    /// The server's explanation.
    pub text: String,
}

/// A snapshot of the connection for a status bar.
#[derive(Clone, Debug)]
pub struct Status {
    /// The state.
    pub state: ConnState,
    /// The server's name as it announced it (once connected).
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
    /// The server's newest id at the last login: once `last_id` reaches it, the client has caught
    /// up with everything that existed when it logged in.
    pub login_latest: Option<u64>,
    /// The ports the client listens on.
    pub ports: CallbackPorts,
}
