//! The control block: what the connection thread, the callback handlers and the front end
//! coordinate on, under one lock.
//!
//! Each part is a type whose methods allow only what can happen: the client's lifetime
//! ([`Lifecycle`]), the session from the first connect to its end ([`SessionPhase`], from which the
//! public [`ConnState`] is derived, and whose transitions are checked against
//! [`ConnState::may_become`]), presence, the outbox and the queued requests. [`Control::next_work`]
//! is the connection thread's "what to do next" while a session is active: a pure function of
//! this state and the clock, tested below the way the outbox is.

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use gc_protocol::sanitize::Sanitized;
use gc_protocol::scram::ScramError;
use gc_protocol::signin::{CallbackCheck, ServerHello};
use gc_protocol::{
    Authed, CallbackReply, ClientMsgId, Room, SessionLevel, SessionToken, Username, VERSION,
    VERSION_GC4, VERSION_GC5,
};

use crate::config::Password;
use crate::error::ClientError;
use crate::event::ConnState;
use crate::outbox::{MAX_OUTBOX, Outbox, PendingMessage};
use crate::rooms::RoomRequest;

/// Requests that need the sending connection, queued for the connection thread. Each is
/// answered by an event that carries it back ([`crate::Event::History`],
/// [`crate::Event::Presence`], [`crate::Event::RoomPresence`], [`crate::Event::RoomList`],
/// [`crate::Event::RoomDone`]), or by [`crate::Event::Refused`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Command {
    /// `History`, of one room.
    History {
        /// Whose records (`#general`: the frame names no room, as in GC/1).
        room: Room,
        /// Records below this id (0: newest).
        before_id: u64,
        /// At most this many.
        limit: u32,
    },
    /// `Who`: who is online (`None`: as GC/1 asks it, answered by [`crate::Event::Presence`]),
    /// or which members of a room are (answered by [`crate::Event::RoomPresence`]).
    Who {
        /// The room, if any.
        room: Option<Room>,
    },
    /// `Rooms`: the session's rooms and the public ones.
    Rooms,
    /// A room request (`Create`, `Join`, …).
    Room(RoomRequest),
    /// GC/4: be away with this message (`Some`, may be empty), or back (`None`). Answered by
    /// [`crate::Event::AccountDone`].
    Away {
        /// The away message, or `None` for back.
        message: Option<String>,
    },
    /// GC/4: change the account's password. Answered by [`crate::Event::AccountDone`].
    Passwd(PasswordChange),
}

/// A password change: the current password (to prove), and the new one (whose verifier the
/// client derives; neither crosses the wire).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PasswordChange {
    /// The password the account has now.
    pub current: Password,
    /// The password it is to have.
    pub new: Password,
}

impl Command {
    /// Whether only a GC/4 session may ask it (`/away`, `/back`, `/passwd`).
    pub fn needs_gc4(&self) -> bool {
        matches!(self, Self::Away { .. } | Self::Passwd(_))
    }

    /// The feature a GC/4 request is, as a refusal names it (`/away`, `/passwd`).
    pub fn feature(&self) -> &'static str {
        match self {
            Self::Away { message: Some(_) } => "/away",
            Self::Away { message: None } => "/back",
            Self::Passwd(_) => "/passwd",
            _ => "this request",
        }
    }

    /// Whether only a session with rooms (GC/3) may ask it: anything naming a room other than
    /// `#general`, the room list, and the room requests.
    pub fn needs_rooms(&self) -> bool {
        match self {
            Self::History { room, .. } | Self::Who { room: Some(room) } => !room.is_general(),
            Self::Who { room: None } | Self::Away { .. } | Self::Passwd(_) => false,
            Self::Rooms | Self::Room(_) => true,
        }
    }
}

impl std::fmt::Display for Command {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::History { room, .. } => write!(f, "the history of {room}"),
            Self::Who { room: None } => f.write_str("who is online"),
            Self::Who { room: Some(room) } => write!(f, "who is online in {room}"),
            Self::Rooms => f.write_str("the list of rooms"),
            Self::Room(request) => write!(f, "to {request}"),
            Self::Away { message: Some(_) } => f.write_str("to be away"),
            Self::Away { message: None } => f.write_str("to be back"),
            Self::Passwd(_) => f.write_str("to change the password"),
        }
    }
}

/// What a client that has GC/4 only is told on a server without it: the server version, and
/// what to do.
pub fn no_gc4(what: &str, version: Option<&str>) -> String {
    let speaks = version.unwrap_or(VERSION);
    format!(
        "this server does not support {what}: it speaks {speaks}, and {what} needs \
         {VERSION_GC4}; ask the operator to update gc-server"
    )
}

/// What the version check agreed, as [`Control::agree_version`] reports it.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct VersionChange {
    /// The agreement differs from the last one (or is the first): tell the front end.
    pub changed: bool,
    /// The first session without rooms of this client: say so once.
    pub first_without_rooms: bool,
}

/// Most commands waiting at once.
pub const MAX_COMMANDS: usize = 64;

/// The client's lifetime, as the front end and the connection thread see it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Lifecycle {
    /// Logging in, logged in, or waiting to try again.
    Running,
    /// The last login failed for good; waiting for `reconnect()` or `close()`.
    GaveUp,
    /// `close()` was called; the connection thread is finishing (saying `Bye` first if asked).
    Closing {
        /// Whether to say `Bye` when logged in.
        bye: bool,
    },
    /// The connection thread has finished: nothing more will be sent.
    Closed {
        /// Whether the server acknowledged `Bye`.
        bye_sent: bool,
    },
}

/// A login waiting for the server's callback on the auth port.
#[derive(Debug)]
pub struct PendingCallback {
    /// The signature the callback must carry.
    check: CallbackCheck,
    /// A callback whose signature did not verify (kept to explain a following `Err auth`).
    refused: Option<ScramError>,
}

/// The session, from the first connect to its end. The public [`ConnState`] is derived from it,
/// so a token exists only once the server proved itself, and heartbeat data only while active.
#[derive(Debug)]
pub enum SessionPhase {
    /// Not logged in: waiting to retry, stopped, or closed.
    Disconnected,
    /// Signing in; `step` is [`ConnState::Connecting`], [`ConnState::Connected`] or
    /// [`ConnState::Authenticating`], and `callback` is set once the proof is about to go out.
    SigningIn {
        /// Which step.
        step: ConnState,
        /// What the auth callback must prove, once expected.
        callback: Option<PendingCallback>,
    },
    /// The server proved its identity on the auth callback; waiting for `Ok`.
    Authenticated {
        /// The session token the callback carried.
        token: SessionToken,
    },
    /// Logged in.
    Active {
        /// The session token.
        token: SessionToken,
        /// The server's heartbeat interval.
        heartbeat_interval: Duration,
        /// When the last heartbeat came (or the session started).
        last_heartbeat: Instant,
    },
}

impl SessionPhase {
    /// The public state.
    pub fn state(&self) -> ConnState {
        match self {
            Self::Disconnected => ConnState::Disconnected,
            Self::SigningIn { step, .. } => *step,
            Self::Authenticated { .. } => ConnState::Authenticated,
            Self::Active { .. } => ConnState::Active,
        }
    }

    fn token(&self) -> Option<&SessionToken> {
        match self {
            Self::Authenticated { token } | Self::Active { token, .. } => Some(token),
            _ => None,
        }
    }
}

impl ConnState {
    /// Whether the state machine may go from `self` to `next`: forward one step at a time
    /// through the sign-in, or back to DISCONNECTED from anywhere. (Trying the next address of
    /// the server keeps CONNECTING.)
    pub fn may_become(self, next: ConnState) -> bool {
        use ConnState::{
            Active, Authenticated, Authenticating, Connected, Connecting, Disconnected,
        };
        matches!(
            (self, next),
            (_, Disconnected)
                | (Disconnected | Connecting, Connecting)
                | (Connecting, Connected)
                | (Connected | Authenticating, Authenticating)
                | (Authenticating, Authenticated)
                | (Authenticated, Active)
        )
    }
}

/// A transition the state machine does not allow (a bug, or a callback at the wrong time).
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("the connection cannot go from {from} to {to}")]
pub struct BadTransition {
    /// The state it was in.
    pub from: ConnState,
    /// The state asked for.
    pub to: ConnState,
}

/// Who is online: the version the last heartbeat announced, and the list as last fetched.
#[derive(Debug, Default)]
pub struct Presence {
    /// The presence version in the last heartbeat of this session.
    seen: Option<u64>,
    /// A heartbeat announced a version not fetched yet: ask `Who`.
    wanted: bool,
    /// The list as last fetched, with its version.
    fetched: Option<(u64, Vec<Username>)>,
}

impl Presence {
    /// A heartbeat announced `version`. Returns whether it is new (then `Who` is wanted).
    pub fn heartbeat(&mut self, version: u64) -> bool {
        if self.seen == Some(version) {
            return false;
        }
        self.seen = Some(version);
        self.wanted = true;
        true
    }

    /// Takes the wish for a `Who`.
    fn take_wanted(&mut self) -> bool {
        std::mem::take(&mut self.wanted)
    }

    /// A `Who` answered.
    pub fn fetched(&mut self, version: u64, users: Vec<Username>) {
        self.fetched = Some((version, users));
    }

    /// A session began or ended: the next heartbeat's version counts as new (the server's
    /// versions start again after a restart). The list stays for display.
    fn forget_seen(&mut self) {
        self.seen = None;
        self.wanted = false;
    }

    /// Whether a `Who` is wanted.
    pub fn wanted(&self) -> bool {
        self.wanted
    }

    /// The presence version the last heartbeat of this session announced.
    pub fn seen(&self) -> Option<u64> {
        self.seen
    }

    /// The list as last fetched, and its version.
    pub fn online(&self) -> (Option<u64>, &[Username]) {
        match &self.fetched {
            Some((version, users)) => (Some(*version), users),
            None => (None, &[]),
        }
    }
}

/// What the connection thread does next while a session is active.
#[derive(Debug, PartialEq, Eq)]
pub enum Work {
    /// `close()`: stop (saying `Bye` first if `bye`).
    Close {
        /// Whether to say `Bye`.
        bye: bool,
    },
    /// `reconnect()`: end this session and log in again.
    Reconnect,
    /// The session is presumed lost: log in again.
    Relogin(String),
    /// The kept sending connection has idled long enough: close it.
    CloseLink,
    /// A queued request.
    Command(Command),
    /// A presence change: ask `Who`.
    Who,
    /// A heartbeat is late: see whether the server still accepts connections.
    Probe,
    /// Send these messages (pipelined), each into its room.
    Send(Vec<PendingMessage>),
}

/// The connection thread's next step.
#[derive(Debug, PartialEq, Eq)]
pub enum Next {
    /// Do this now.
    Do(Work),
    /// Nothing to do: wait until this instant, or a notification.
    WaitUntil(Instant),
}

/// Everything the connection thread, the callback handlers and the front end coordinate on.
#[derive(Debug)]
pub struct Control {
    life: Lifecycle,
    /// `reconnect()` was called while running: the connection thread starts over as soon as it
    /// looks (at once from a backoff wait, after the exchange in progress when active).
    reconnect_asked: bool,
    session: SessionPhase,
    /// The server as it answered the last version check.
    server: Option<ServerHello>,
    /// The server's newest id when this client last logged in (`Ok <hb> <latest-id>`).
    login_latest: Option<u64>,
    /// Highest record id the server acknowledged for this client's messages.
    acked_max: u64,
    /// Who is online.
    pub presence: Presence,
    /// Messages waiting for `Thx`.
    pub outbox: Outbox,
    commands: VecDeque<Command>,
    /// The version the last version check agreed, and whether it serves rooms (GC/3).
    version: Option<(&'static str, bool)>,
    /// The first session without rooms was told so (once per client).
    told_without_rooms: bool,
    /// Rooms whose online members are asked again at each presence change.
    watched: Vec<Room>,
    /// Heartbeats of the active session since it began or last delivered new records.
    quiet_heartbeats: u32,
    /// How late a heartbeat may be before the server is probed ([`Work::Probe`]); `None`: never.
    probe_after: Option<Duration>,
    /// The heartbeat after which the last probe ran (one probe per silence).
    probed_since: Option<Instant>,
    /// GC/4: the away message the user set (`None`: not away), set again at each login.
    away: Option<String>,
    /// GC/4: the server said it stops (its text), ending the active session.
    stopping: Option<String>,
    /// The password changed with `/passwd` while running: the next logins use it.
    password: Option<Password>,
}

impl Default for Control {
    fn default() -> Self {
        Self {
            life: Lifecycle::Running,
            reconnect_asked: false,
            session: SessionPhase::Disconnected,
            server: None,
            login_latest: None,
            acked_max: 0,
            presence: Presence::default(),
            outbox: Outbox::new(),
            commands: VecDeque::new(),
            version: None,
            told_without_rooms: false,
            watched: Vec::new(),
            quiet_heartbeats: 0,
            probe_after: None,
            probed_since: None,
            away: None,
            stopping: None,
            password: None,
        }
    }
}

impl Control {
    // ───────────────────────────── lifetime ─────────────────────────────

    /// The client's lifetime.
    pub fn life(&self) -> Lifecycle {
        self.life
    }

    /// Whether `close()` has been called.
    pub fn is_closing(&self) -> bool {
        matches!(
            self.life,
            Lifecycle::Closing { .. } | Lifecycle::Closed { .. }
        )
    }

    /// Whether the client has stopped trying to deliver (gave up after a fatal error, or the
    /// connection thread has finished): waiting for the outbox to drain is pointless then.
    pub fn stopped_trying(&self) -> bool {
        matches!(self.life, Lifecycle::GaveUp | Lifecycle::Closed { .. })
    }

    /// `close(bye)`: the first call decides whether to say `Bye`. Returns whether this call
    /// started the closing.
    pub fn request_close(&mut self, bye: bool) -> bool {
        match self.life {
            Lifecycle::Running | Lifecycle::GaveUp => {
                self.life = Lifecycle::Closing { bye };
                true
            }
            Lifecycle::Closing { .. } | Lifecycle::Closed { .. } => false,
        }
    }

    /// `reconnect()`: after a fatal error, try again; while running, start over.
    pub fn request_reconnect(&mut self) {
        match self.life {
            Lifecycle::GaveUp => self.life = Lifecycle::Running,
            Lifecycle::Running => self.reconnect_asked = true,
            Lifecycle::Closing { .. } | Lifecycle::Closed { .. } => {}
        }
    }

    /// Takes a pending `reconnect()` request.
    pub fn take_reconnect(&mut self) -> bool {
        std::mem::take(&mut self.reconnect_asked)
    }

    /// The connection thread gives up after a fatal error (unless the client is closing).
    pub fn give_up(&mut self) {
        if self.life == Lifecycle::Running {
            self.life = Lifecycle::GaveUp;
            self.reconnect_asked = false;
        }
    }

    /// The connection thread has finished.
    pub fn finished(&mut self, bye_sent: bool) {
        self.life = Lifecycle::Closed { bye_sent };
    }

    /// Whether `Bye` was acknowledged (once the connection thread has finished).
    pub fn bye_sent(&self) -> bool {
        matches!(self.life, Lifecycle::Closed { bye_sent: true })
    }

    // ───────────────────────────── session ─────────────────────────────

    /// The session.
    pub fn session(&self) -> &SessionPhase {
        &self.session
    }

    /// The public state.
    pub fn state(&self) -> ConnState {
        self.session.state()
    }

    fn go(&mut self, next: SessionPhase) -> Result<Option<ConnState>, BadTransition> {
        let (from, to) = (self.session.state(), next.state());
        if !from.may_become(to) {
            return Err(BadTransition { from, to });
        }
        self.session = next;
        Ok((from != to).then_some(to))
    }

    /// Starts a sign-in (CONNECTING).
    pub fn begin_sign_in(&mut self) -> Result<Option<ConnState>, BadTransition> {
        self.go(SessionPhase::SigningIn {
            step: ConnState::Connecting,
            callback: None,
        })
    }

    /// The server answered the version check (CONNECTED).
    pub fn connected(&mut self, hello: ServerHello) -> Result<Option<ConnState>, BadTransition> {
        let changed = self.go(SessionPhase::SigningIn {
            step: ConnState::Connected,
            callback: None,
        })?;
        self.server = Some(hello);
        Ok(changed)
    }

    /// The SCRAM login starts (AUTHENTICATING); no callback is accepted yet.
    pub fn authenticating(&mut self) -> Result<Option<ConnState>, BadTransition> {
        self.go(SessionPhase::SigningIn {
            step: ConnState::Authenticating,
            callback: None,
        })
    }

    /// The proof is about to go out: from now on a callback carrying the signature `check`
    /// expects is accepted.
    pub fn expect_callback(&mut self, check: CallbackCheck) -> Result<(), BadTransition> {
        match &mut self.session {
            SessionPhase::SigningIn {
                step: ConnState::Authenticating,
                callback,
            } => {
                *callback = Some(PendingCallback {
                    check,
                    refused: None,
                });
                Ok(())
            }
            other => Err(BadTransition {
                from: other.state(),
                to: ConnState::Authenticating,
            }),
        }
    }

    /// An `Authed` callback arrived: the token is trusted (AUTHENTICATED) only if the server's
    /// signature verifies. Returns the reply for the callback connection and, when the state
    /// changed, the new state.
    pub fn callback(&mut self, authed: Authed) -> (CallbackReply, Option<ConnState>) {
        let SessionPhase::SigningIn {
            step: ConnState::Authenticating,
            callback: Some(pending),
        } = &mut self.session
        else {
            return (
                CallbackReply::Err(gc_protocol::ErrorFrame::new(
                    gc_protocol::ErrorCode::Malformed,
                    "this client has no login in progress",
                )),
                None,
            );
        };
        let (reply, result) = pending.check.check(authed);
        match result {
            Ok(token) => {
                let changed = self
                    .go(SessionPhase::Authenticated { token })
                    .ok()
                    .flatten();
                (reply, changed)
            }
            Err(e) => {
                pending.refused = Some(e);
                (reply, None)
            }
        }
    }

    /// What the auth callback gave, once the server has answered the proof: the token that
    /// verified, why the signature was refused, or nothing.
    pub fn callback_outcome(&self) -> Option<Result<SessionToken, ScramError>> {
        match &self.session {
            SessionPhase::Authenticated { token } => Some(Ok(token.clone())),
            SessionPhase::SigningIn {
                callback:
                    Some(PendingCallback {
                        refused: Some(e), ..
                    }),
                ..
            } => Some(Err(e.clone())),
            _ => None,
        }
    }

    /// `Ok` arrived (ACTIVE): heartbeats are expected every `heartbeat_interval` from `now`.
    pub fn activate(
        &mut self,
        heartbeat_interval: Duration,
        latest_id: u64,
        now: Instant,
    ) -> Result<Option<ConnState>, BadTransition> {
        let SessionPhase::Authenticated { token } = &self.session else {
            return Err(BadTransition {
                from: self.state(),
                to: ConnState::Active,
            });
        };
        let token = token.clone();
        let changed = self.go(SessionPhase::Active {
            token,
            heartbeat_interval,
            last_heartbeat: now,
        })?;
        self.login_latest = Some(latest_id);
        self.quiet_heartbeats = 0;
        self.presence.forget_seen();
        self.stopping = None;
        // The away state is the user's, not the session's: a new GC/4 session is told again.
        if self.gc4() == Some(true)
            && let Some(message) = &self.away
        {
            let away = Command::Away {
                message: Some(message.clone()),
            };
            if !self.commands.contains(&away) {
                self.commands.push_front(away);
            }
        }
        Ok(changed)
    }

    /// GC/4: the server said on the heartbeat port that it stops (`text`, its words): the
    /// active session ends at once ([`Control::next_work`]). Only the current session's notice
    /// counts (the caller checked the token).
    pub fn server_stopping(&mut self, text: String) {
        if matches!(self.session, SessionPhase::Active { .. }) {
            self.stopping = Some(text);
        }
    }

    /// Takes the server's stop notice, if one came for this session.
    pub fn take_stopping(&mut self) -> Option<String> {
        self.stopping.take()
    }

    /// The away message the user set last (`None`: not away).
    pub fn away(&self) -> Option<&str> {
        self.away.as_deref()
    }

    /// An away or back request the server did: kept, to set again after each login.
    pub fn away_done(&mut self, message: Option<String>) {
        self.away = message;
    }

    /// The password to log in with: the one `/passwd` changed to, else the configured one.
    pub fn password<'a>(&'a self, configured: &'a Password) -> &'a Password {
        self.password.as_ref().unwrap_or(configured)
    }

    /// `/passwd` succeeded: log in with `new` from now on.
    pub fn password_changed(&mut self, new: Password) {
        self.password = Some(new);
    }

    /// The session ended, or the sign-in failed (DISCONNECTED): its token is refused from now on.
    pub fn disconnect(&mut self) -> Option<ConnState> {
        self.presence.forget_seen();
        self.go(SessionPhase::Disconnected).ok().flatten()
    }

    /// Whether `token` is the current session's.
    pub fn owns(&self, token: &SessionToken) -> bool {
        self.session.token().is_some_and(|t| t.ct_eq(token))
    }

    /// Probes the server once a heartbeat is `after` late (see [`Work::Probe`]): a server that
    /// died is seen in about that time instead of at the watchdog.
    pub fn probe_when_late(&mut self, after: Duration) {
        self.probe_after = Some(after);
    }

    /// A heartbeat for this session arrived at `now`, announcing `presence_version`. Returns
    /// whether a `Who` is now wanted.
    pub fn heartbeat(&mut self, now: Instant, presence_version: u64) -> bool {
        if let SessionPhase::Active { last_heartbeat, .. } = &mut self.session {
            *last_heartbeat = now;
            self.quiet_heartbeats = self.quiet_heartbeats.saturating_add(1);
        }
        self.presence.heartbeat(presence_version)
    }

    /// A delivery brought new records.
    pub fn records_arrived(&mut self) {
        self.quiet_heartbeats = 0;
    }

    /// Whether this session has received everything the server held for it when it logged in,
    /// with `cursor` the highest id held: the cursor reached the server's newest id at login,
    /// or two heartbeats came without new records since. (With rooms the newest records may be
    /// of rooms this account is not in: they never arrive, and the cursor stays below them. The
    /// server delivers within the heartbeat cycle that follows a `Pong`, and settles a delivery
    /// before its next `Ping`, so a whole cycle without records means there was nothing more.)
    pub fn caught_up(&self, cursor: u64) -> bool {
        let SessionPhase::Active { .. } = self.session else {
            return false;
        };
        self.login_latest.is_some_and(|latest| cursor >= latest) || self.quiet_heartbeats >= 2
    }

    /// The server as it answered the last version check.
    pub fn server(&self) -> Option<&ServerHello> {
        self.server.as_ref()
    }

    /// The server's newest id when this client last logged in.
    pub fn login_latest(&self) -> Option<u64> {
        self.login_latest
    }

    /// The version check agreed on `version`, with rooms (GC/3) or without. Kept until the next
    /// version check, so a front end's room list stays put while the client reconnects.
    pub fn agree_version(&mut self, version: &'static str, rooms: bool) -> VersionChange {
        let changed = self.version != Some((version, rooms));
        self.version = Some((version, rooms));
        let first_without_rooms = !rooms && !std::mem::replace(&mut self.told_without_rooms, true);
        VersionChange {
            changed,
            first_without_rooms,
        }
    }

    /// Whether the server speaks GC/4 (`/passwd`, `/away`, the stop notice): `None` until a
    /// version check answered.
    pub fn gc4(&self) -> Option<bool> {
        self.version
            .map(|(version, _)| SessionLevel::of_version(version).is_some_and(SessionLevel::gc4))
    }

    /// Whether the server shares files (GC/5): `None` until a version check answered.
    pub fn files(&self) -> Option<bool> {
        self.version
            .map(|(version, _)| SessionLevel::of_version(version).is_some_and(SessionLevel::files))
    }

    /// Whether the server serves rooms: `None` until a version check answered, then whether
    /// the last one agreed on GC/3 (or GC/4).
    pub fn rooms(&self) -> Option<bool> {
        self.version.map(|(_, rooms)| rooms)
    }

    /// The protocol version the last version check agreed on.
    pub fn version(&self) -> Option<&'static str> {
        self.version.map(|(version, _)| version)
    }

    /// Refuses what needs rooms once the server is known to have none.
    fn check_rooms(&self, needs_rooms: bool) -> Result<(), ClientError> {
        if needs_rooms && self.rooms() == Some(false) {
            return Err(ClientError::NoRooms);
        }
        Ok(())
    }

    /// Refuses a file transfer once the server is known to lack GC/5.
    pub fn check_files(&self) -> Result<(), ClientError> {
        if self.files() == Some(false) {
            return Err(ClientError::NotSupported(format!(
                "the server does not share files (it speaks {}; file transfer needs \
                 {VERSION_GC5}); ask the operator to update gc-server",
                self.version().unwrap_or("an older version")
            )));
        }
        Ok(())
    }

    /// Refuses what needs GC/4 once the server is known to lack it.
    fn check_gc4(&self, command: &Command) -> Result<(), ClientError> {
        if command.needs_gc4() && self.gc4() == Some(false) {
            return Err(ClientError::NotSupported(no_gc4(
                command.feature(),
                self.version(),
            )));
        }
        Ok(())
    }

    /// Asks again who is online in `rooms` (besides `#general`) at each presence change.
    pub fn watch(&mut self, rooms: Vec<Room>) {
        self.watched = rooms;
        self.watched.retain(|r| !r.is_general());
        self.watched.sort();
        self.watched.dedup();
    }

    // ───────────────────────────── sending ─────────────────────────────

    /// Queues a message for `room` (refused once closing, when the outbox is full, or for a
    /// room other than `#general` once the server is known to serve none).
    pub fn queue_message(
        &mut self,
        id: ClientMsgId,
        room: Room,
        text: String,
    ) -> Result<(), ClientError> {
        if self.is_closing() {
            return Err(ClientError::Closed);
        }
        self.check_rooms(!room.is_general())?;
        if self.outbox.len() >= MAX_OUTBOX {
            return Err(ClientError::OutboxFull(self.outbox.len()));
        }
        self.outbox.push(id, room, text);
        Ok(())
    }

    /// Queues a request (refused once closing, when too many wait, or when it needs rooms and
    /// the server is known to serve none).
    pub fn queue_command(&mut self, command: Command) -> Result<(), ClientError> {
        if self.is_closing() {
            return Err(ClientError::Closed);
        }
        self.check_gc4(&command)?;
        self.check_rooms(command.needs_rooms())?;
        if self.commands.len() >= MAX_COMMANDS {
            return Err(ClientError::Busy);
        }
        self.commands.push_back(command);
        Ok(())
    }

    /// Puts a request that could not be answered (the session ended under it) first in line
    /// again, for the next session.
    pub fn requeue_command(&mut self, command: Command) {
        if !self.is_closing() {
            self.commands.push_front(command);
        }
    }

    /// The server stored one of our messages as record `id`.
    pub fn acked(&mut self, id: u64) {
        self.acked_max = self.acked_max.max(id);
    }

    /// Highest record id the server acknowledged for this client's messages (0: none).
    pub fn acked_max(&self) -> u64 {
        self.acked_max
    }

    // ───────────────────────────── the active session ─────────────────────────────

    /// What the connection thread does next while the session is active, at `now`: in this order,
    /// closing, a reconnect request, a lost session (no heartbeat for `watchdog`), a queued
    /// request, a presence change, the outbox (at most `batch_max` messages), closing the
    /// sending connection idle since `link_idle_at`; otherwise wait until the earliest of those
    /// deadlines.
    pub fn next_work(
        &mut self,
        now: Instant,
        watchdog: Duration,
        link_idle_at: Option<Instant>,
        batch_max: usize,
    ) -> Next {
        if let Lifecycle::Closing { bye } = self.life {
            return Next::Do(Work::Close { bye });
        }
        if self.take_reconnect() {
            return Next::Do(Work::Reconnect);
        }
        if let Some(text) = self.stopping.take() {
            return Next::Do(Work::Relogin(format!(
                "the server is stopping ({})",
                Sanitized(&text)
            )));
        }
        let last_heartbeat = match &self.session {
            SessionPhase::Active { last_heartbeat, .. } => *last_heartbeat,
            _ => now,
        };
        let dead_at = last_heartbeat + watchdog;
        if now >= dead_at {
            return Next::Do(Work::Relogin(format!(
                "no heartbeat from the server for {:.1} s: the session is presumed lost",
                watchdog.as_secs_f64()
            )));
        }
        let probe_at = self.probe_after.and_then(|after| {
            let active = matches!(self.session, SessionPhase::Active { .. });
            (active && self.probed_since != Some(last_heartbeat)).then_some(last_heartbeat + after)
        });
        if probe_at.is_some_and(|t| now >= t) {
            self.probed_since = Some(last_heartbeat);
            return Next::Do(Work::Probe);
        }
        if let Some(command) = self.commands.pop_front() {
            return Next::Do(Work::Command(command));
        }
        if self.presence.take_wanted() {
            if self.rooms() == Some(true) {
                // The watched rooms' lists follow #general's.
                for room in &self.watched {
                    let who = Command::Who {
                        room: Some(room.clone()),
                    };
                    if self.commands.len() < MAX_COMMANDS && !self.commands.contains(&who) {
                        self.commands.push_back(who);
                    }
                }
            }
            return Next::Do(Work::Who);
        }
        if self.outbox.ready(now) {
            return Next::Do(Work::Send(self.outbox.next_batch(now, batch_max)));
        }
        if link_idle_at.is_some_and(|t| now >= t) {
            return Next::Do(Work::CloseLink);
        }
        let mut deadline = probe_at.map_or(dead_at, |t| dead_at.min(t));
        if !self.outbox.is_empty()
            && let Some(gate) = self.outbox.gate()
        {
            deadline = deadline.min(gate);
        }
        if let Some(t) = link_idle_at {
            deadline = deadline.min(t);
        }
        Next::WaitUntil(deadline)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use gc_protocol::scram::{ClientFirst, ClientHello, ServerFirst, derive_verifier};
    use gc_protocol::{ErrorCode, Registration};

    use super::*;

    const ALL: [ConnState; 6] = [
        ConnState::Disconnected,
        ConnState::Connecting,
        ConnState::Connected,
        ConnState::Authenticating,
        ConnState::Authenticated,
        ConnState::Active,
    ];

    fn token(c: char) -> SessionToken {
        SessionToken::new(c.to_string().repeat(64)).unwrap()
    }

    fn hello() -> ServerHello {
        ServerHello {
            name: "test".into(),
            registration: Registration::Open,
        }
    }

    /// A control block signed in as far as AUTHENTICATING, expecting a callback; returns the
    /// genuine server-final the real server would send.
    fn expecting_callback(c: &mut Control) -> String {
        let (check, genuine) = scram_exchange();
        c.begin_sign_in().unwrap();
        c.connected(hello()).unwrap();
        c.authenticating().unwrap();
        c.expect_callback(check).unwrap();
        genuine
    }

    /// A real SCRAM exchange up to the proof: the check the client keeps, and the server-final
    /// the genuine server would send.
    pub(crate) fn scram_exchange() -> (CallbackCheck, String) {
        let verifier = derive_verifier("right", b"0123456789abcdef", 4096);
        let first = ClientFirst::new("alice").unwrap();
        let hello_msg = ClientHello::parse(first.message()).unwrap();
        let server = ServerFirst::new(&hello_msg, &verifier).unwrap();
        let client_final = first
            .handle_server_first(server.message(), "right", 4096)
            .unwrap();
        let genuine = server.handle_client_final(client_final.message()).unwrap();
        (CallbackCheck::new(client_final), genuine)
    }

    fn active(c: &mut Control, now: Instant) {
        let genuine = expecting_callback(c);
        let (reply, _) = c.callback(Authed {
            server_final: genuine,
            token: token('a'),
        });
        assert_eq!(reply, CallbackReply::Thx);
        c.activate(Duration::from_secs(1), 5, now).unwrap();
    }

    #[test]
    fn a_late_heartbeat_asks_for_one_probe_then_the_watchdog_decides() {
        let t0 = Instant::now();
        let watchdog = Duration::from_secs(13);
        let mut c = Control::default();
        active(&mut c, t0);
        c.probe_when_late(Duration::from_millis(1500));
        // Until then: wait for the probe's time, not the watchdog's.
        assert_eq!(
            c.next_work(t0, watchdog, None, 32),
            Next::WaitUntil(t0 + Duration::from_millis(1500))
        );
        let late = t0 + Duration::from_secs(2);
        assert_eq!(c.next_work(late, watchdog, None, 32), Next::Do(Work::Probe));
        // One probe per silence: then the watchdog.
        assert_eq!(
            c.next_work(late, watchdog, None, 32),
            Next::WaitUntil(t0 + watchdog)
        );
        // A heartbeat starts a new silence.
        c.heartbeat(late, 0);
        let later = late + Duration::from_secs(2);
        assert!(matches!(
            c.next_work(later, watchdog, None, 32),
            Next::Do(Work::Probe | Work::Who)
        ));
    }

    #[test]
    fn the_state_machine_moves_one_step_at_a_time_or_drops_to_disconnected() {
        let allowed: Vec<(ConnState, ConnState)> = ALL
            .iter()
            .flat_map(|&a| ALL.iter().map(move |&b| (a, b)))
            .filter(|(a, b)| a.may_become(*b))
            .collect();
        use ConnState::*;
        let mut expected = vec![
            (Disconnected, Connecting),
            (Connecting, Connecting),
            (Connecting, Connected),
            (Connected, Authenticating),
            (Authenticating, Authenticating),
            (Authenticating, Authenticated),
            (Authenticated, Active),
        ];
        expected.extend(ALL.iter().map(|&s| (s, Disconnected)));
        let mut allowed_sorted: Vec<String> = allowed.iter().map(|p| format!("{p:?}")).collect();
        let mut expected_sorted: Vec<String> = expected.iter().map(|p| format!("{p:?}")).collect();
        allowed_sorted.sort();
        expected_sorted.sort();
        assert_eq!(allowed_sorted, expected_sorted);
    }

    #[test]
    fn skipping_a_step_is_refused_and_changes_nothing() {
        let mut c = Control::default();
        assert_eq!(
            c.authenticating(),
            Err(BadTransition {
                from: ConnState::Disconnected,
                to: ConnState::Authenticating
            })
        );
        assert_eq!(
            c.activate(Duration::from_secs(1), 0, Instant::now()),
            Err(BadTransition {
                from: ConnState::Disconnected,
                to: ConnState::Active
            })
        );
        assert_eq!(c.state(), ConnState::Disconnected);
        assert_eq!(c.begin_sign_in(), Ok(Some(ConnState::Connecting)));
        assert!(c.expect_callback_refused());
        assert_eq!(c.state(), ConnState::Connecting);
    }

    impl Control {
        /// Whether a callback expectation is refused in this state (tests only).
        fn expect_callback_refused(&mut self) -> bool {
            self.expect_callback(scram_exchange().0).is_err()
        }
    }

    #[test]
    fn a_token_is_trusted_only_after_its_signature_verifies() {
        let mut c = Control::default();
        // No login in progress: refused.
        let (reply, changed) = c.callback(Authed {
            server_final: "v=AAAA".into(),
            token: token('0'),
        });
        assert!(matches!(reply, CallbackReply::Err(e) if e.code == ErrorCode::Malformed));
        assert_eq!(changed, None);
        let genuine = expecting_callback(&mut c);
        let (reply, changed) = c.callback(Authed {
            server_final: "v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=".into(),
            token: token('f'),
        });
        assert!(matches!(reply, CallbackReply::Err(e) if e.code == ErrorCode::Auth));
        assert_eq!(changed, None);
        assert!(!c.owns(&token('f')), "a forged token is never trusted");
        assert!(matches!(c.callback_outcome(), Some(Err(_))));
        let (reply, changed) = c.callback(Authed {
            server_final: genuine,
            token: token('b'),
        });
        assert_eq!(reply, CallbackReply::Thx);
        assert_eq!(changed, Some(ConnState::Authenticated));
        assert!(c.owns(&token('b')));
        assert!(matches!(c.callback_outcome(), Some(Ok(t)) if t == token('b')));
        // Another callback now: no login in progress.
        let (reply, _) = c.callback(Authed {
            server_final: "v=AAAA".into(),
            token: token('c'),
        });
        assert!(matches!(reply, CallbackReply::Err(_)));
        assert!(c.owns(&token('b')));
        assert_eq!(c.disconnect(), Some(ConnState::Disconnected));
        assert!(!c.owns(&token('b')), "an ended session's token is refused");
    }

    #[test]
    fn closing_and_giving_up() {
        let mut c = Control::default();
        c.request_reconnect();
        assert!(c.take_reconnect());
        assert!(!c.take_reconnect(), "taken once");
        c.give_up();
        assert_eq!(c.life(), Lifecycle::GaveUp);
        assert!(c.stopped_trying());
        c.request_reconnect();
        assert_eq!(c.life(), Lifecycle::Running);
        assert!(
            !c.take_reconnect(),
            "a retry after giving up is not a second request"
        );
        assert!(c.request_close(true));
        assert!(!c.request_close(false), "the first close decides");
        assert_eq!(c.life(), Lifecycle::Closing { bye: true });
        assert!(c.is_closing() && !c.stopped_trying());
        c.give_up();
        assert_eq!(c.life(), Lifecycle::Closing { bye: true }, "closing wins");
        assert!(matches!(
            c.queue_message(ClientMsgId::new("m").unwrap(), Room::general(), "x".into()),
            Err(ClientError::Closed)
        ));
        assert!(matches!(c.queue_command(who()), Err(ClientError::Closed)));
        c.finished(true);
        assert!(c.bye_sent() && c.stopped_trying());
    }

    #[test]
    fn requests_are_bounded() {
        let mut c = Control::default();
        for _ in 0..MAX_COMMANDS {
            c.queue_command(who()).unwrap();
        }
        assert!(matches!(c.queue_command(who()), Err(ClientError::Busy)));
    }

    fn id(s: &str) -> ClientMsgId {
        ClientMsgId::new(s).unwrap()
    }

    fn who() -> Command {
        Command::Who { room: None }
    }

    fn room(name: &str) -> Room {
        Room::new(name).unwrap()
    }

    #[test]
    fn gc4_requests_say_plainly_that_an_older_server_does_not_support_them() {
        let mut c = Control::default();
        let away = Command::Away {
            message: Some("lunch".into()),
        };
        // Not known yet: queued, and the connection thread answers once it knows.
        c.queue_command(away.clone()).unwrap();
        c.agree_version("GC/3", true);
        assert_eq!(c.gc4(), Some(false));
        let e = c.queue_command(away).unwrap_err();
        assert_eq!(
            e.to_string(),
            "this server does not support /away: it speaks GC/3, and /away needs GC/4; ask the \
             operator to update gc-server"
        );
        let passwd = Command::Passwd(PasswordChange {
            current: Password::new("a"),
            new: Password::new("b"),
        });
        assert!(
            c.queue_command(passwd)
                .unwrap_err()
                .to_string()
                .contains("does not support /passwd")
        );
        c.agree_version("GC/4", true);
        assert_eq!(c.gc4(), Some(true));
        c.queue_command(Command::Away { message: None }).unwrap();
    }

    #[test]
    fn a_stop_notice_ends_the_active_session_and_the_away_state_is_set_again_at_each_login() {
        let mut c = Control::default();
        c.agree_version("GC/4", true);
        active(&mut c, Instant::now());
        c.away_done(Some("lunch".into()));
        c.server_stopping("bye".into());
        let now = Instant::now();
        assert_eq!(
            c.next_work(now, Duration::from_secs(60), None, 32),
            Next::Do(Work::Relogin("the server is stopping (bye)".into()))
        );
        // The next session is told the away state first; a notice for no session is ignored.
        c.disconnect();
        c.server_stopping("late".into());
        active(&mut c, now);
        assert_eq!(
            c.next_work(now, Duration::from_secs(60), None, 32),
            Next::Do(Work::Command(Command::Away {
                message: Some("lunch".into())
            }))
        );
        assert!(matches!(
            c.next_work(now, Duration::from_secs(60), None, 32),
            Next::Do(Work::Who) | Next::WaitUntil(_)
        ));
    }

    #[test]
    fn rooms_are_refused_once_the_server_is_known_to_serve_none() {
        let mut c = Control::default();
        let join = Command::Room(RoomRequest::Join { room: room("#dev") });
        // Not known yet: queued, and the connection thread answers once it knows.
        c.queue_command(join.clone()).unwrap();
        c.queue_message(id("m0"), room("#dev"), "x".into()).unwrap();
        assert_eq!(
            c.agree_version("GC/2", false),
            VersionChange {
                changed: true,
                first_without_rooms: true
            }
        );
        assert!(matches!(c.queue_command(join), Err(ClientError::NoRooms)));
        assert!(matches!(
            c.queue_command(Command::Rooms),
            Err(ClientError::NoRooms)
        ));
        assert!(matches!(
            c.queue_message(id("m1"), room("@a+b"), "x".into()),
            Err(ClientError::NoRooms)
        ));
        // #general needs no rooms, even named.
        c.queue_message(id("m2"), Room::general(), "x".into())
            .unwrap();
        c.queue_command(Command::History {
            room: Room::general(),
            before_id: 0,
            limit: 10,
        })
        .unwrap();
        c.queue_command(Command::Who {
            room: Some(Room::general()),
        })
        .unwrap();
        // Said once per client; a server that comes back with rooms is news again.
        assert_eq!(
            c.agree_version("GC/2", false),
            VersionChange {
                changed: false,
                first_without_rooms: false
            }
        );
        assert_eq!(c.rooms(), Some(false));
        assert!(c.agree_version("GC/3", true).changed);
        assert_eq!(c.rooms(), Some(true));
        assert!(!c.agree_version("GC/2", false).first_without_rooms);
    }

    #[test]
    fn a_presence_change_asks_for_the_watched_rooms_too() {
        let t0 = Instant::now();
        let watchdog = Duration::from_secs(3);
        let mut c = Control::default();
        c.agree_version("GC/3", true);
        active(&mut c, t0);
        c.watch(vec![
            room("#dev"),
            Room::general(),
            room("#dev"),
            room("@a+b"),
        ]);
        assert!(c.heartbeat(t0, 4));
        assert_eq!(c.next_work(t0, watchdog, None, 32), Next::Do(Work::Who));
        for r in ["#dev", "@a+b"] {
            assert_eq!(
                c.next_work(t0, watchdog, None, 32),
                Next::Do(Work::Command(Command::Who {
                    room: Some(room(r))
                }))
            );
        }
        assert!(matches!(
            c.next_work(t0, watchdog, None, 32),
            Next::WaitUntil(_)
        ));
    }

    #[test]
    fn next_work_goes_by_priority() {
        let t0 = Instant::now();
        let watchdog = Duration::from_secs(3);
        let mut c = Control::default();
        active(&mut c, t0);
        // Nothing to do: wait for the watchdog.
        assert_eq!(
            c.next_work(t0, watchdog, None, 32),
            Next::WaitUntil(t0 + watchdog)
        );
        // An idle sending connection is closed when its time comes, and woken for before.
        let idle_at = t0 + Duration::from_secs(1);
        assert_eq!(
            c.next_work(t0, watchdog, Some(idle_at), 32),
            Next::WaitUntil(idle_at)
        );
        assert_eq!(
            c.next_work(idle_at, watchdog, Some(idle_at), 32),
            Next::Do(Work::CloseLink)
        );
        // Messages before closing the link; at most `batch_max`.
        for i in 0..3 {
            c.queue_message(id(&format!("m{i}")), Room::general(), format!("{i}"))
                .unwrap();
        }
        match c.next_work(idle_at, watchdog, Some(idle_at), 2) {
            Next::Do(Work::Send(batch)) => assert_eq!(batch.len(), 2),
            other => panic!("{other:?}"),
        }
        // A presence change before messages; a queued request before that.
        assert!(c.heartbeat(t0, 7));
        c.queue_command(Command::History {
            room: Room::general(),
            before_id: 0,
            limit: 50,
        })
        .unwrap();
        assert!(matches!(
            c.next_work(t0, watchdog, None, 32),
            Next::Do(Work::Command(Command::History { .. }))
        ));
        assert_eq!(c.next_work(t0, watchdog, None, 32), Next::Do(Work::Who));
        assert!(matches!(
            c.next_work(t0, watchdog, None, 32),
            Next::Do(Work::Send(_))
        ));
        // The same presence version again asks for nothing.
        assert!(!c.heartbeat(t0, 7));
        // A lost session before any of that.
        c.queue_command(who()).unwrap();
        let late = t0 + watchdog;
        assert!(matches!(
            c.next_work(late, watchdog, None, 32),
            Next::Do(Work::Relogin(why)) if why.contains("3.0 s")
        ));
        // A heartbeat keeps it alive.
        c.heartbeat(late, 7);
        assert_eq!(
            c.next_work(late, watchdog, None, 32),
            Next::Do(Work::Command(who()))
        );
        // A reconnect request before that, and closing before everything.
        c.request_reconnect();
        c.queue_command(who()).unwrap();
        assert_eq!(
            c.next_work(late, watchdog, None, 32),
            Next::Do(Work::Reconnect)
        );
        c.request_reconnect();
        c.request_close(false);
        assert_eq!(
            c.next_work(late, watchdog, None, 32),
            Next::Do(Work::Close { bye: false })
        );
    }

    #[test]
    fn a_gated_outbox_is_waited_for() {
        let t0 = Instant::now();
        let watchdog = Duration::from_secs(3);
        let mut c = Control::default();
        active(&mut c, t0);
        c.queue_message(id("m"), Room::general(), "x".into())
            .unwrap();
        let gate = t0 + Duration::from_millis(300);
        c.outbox.hold_until(gate);
        assert_eq!(c.next_work(t0, watchdog, None, 32), Next::WaitUntil(gate));
        assert!(matches!(
            c.next_work(gate, watchdog, None, 32),
            Next::Do(Work::Send(batch)) if batch.len() == 1
        ));
    }

    #[test]
    fn caught_up_at_the_newest_id_or_after_a_quiet_heartbeat_cycle() {
        let t0 = Instant::now();
        let mut c = Control::default();
        assert!(!c.caught_up(100), "not logged in");
        active(&mut c, t0); // the server's newest id at login: 5
        assert!(!c.caught_up(4));
        assert!(c.caught_up(5));
        // The newest records are a room's this account is not in: two heartbeats without news.
        c.heartbeat(t0, 1);
        c.records_arrived();
        c.heartbeat(t0, 1);
        assert!(!c.caught_up(4));
        c.heartbeat(t0, 1);
        assert!(c.caught_up(4));
        c.disconnect();
        assert!(!c.caught_up(5));
    }

    #[test]
    fn presence_counts_a_restarted_servers_versions_as_new() {
        let mut c = Control::default();
        active(&mut c, Instant::now());
        assert!(c.heartbeat(Instant::now(), 9));
        c.presence.fetched(9, vec![Username::new("bob").unwrap()]);
        c.disconnect();
        // A new session: its first heartbeat asks for `Who` even at an old version, and the
        // last list stays shown meanwhile.
        assert!(c.presence.heartbeat(2));
        assert_eq!(c.presence.online().0, Some(9));
        assert_eq!(c.presence.online().1.len(), 1);
    }
}
