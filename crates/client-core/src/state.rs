//! State shared by the client's threads: the control block (state machine, outbox, session,
//! requests from the UI) under one lock with one condvar, and the record store under another.
//!
//! Lock order: never hold both. Events are emitted while holding the lock of the state they
//! describe, so state changes come out in order, and so do records.

use std::collections::VecDeque;
use std::net::{Shutdown, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use gc_plugin::Plugins;
use gc_protocol::scram::{ClientFinal, ScramError};
use gc_protocol::{CallbackPorts, Record, Registration, SessionToken, Username};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::config::ClientConfig;
use crate::event::{ConnState, Event, NoticeLevel, Status};
use crate::outbox::Outbox;
use crate::records::RecordStore;

/// Where events go. Must be quick and must not call back into the [`crate::Client`].
pub type EventSink = Box<dyn Fn(Event) + Send + Sync>;

/// Requests that need the sending connection, queued for the connection thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Command {
    /// `History`.
    History {
        /// Records below this id (0: newest).
        before_id: u64,
        /// At most this many.
        limit: u32,
    },
    /// `Who`.
    Who,
}

/// Most commands waiting at once.
pub const MAX_COMMANDS: usize = 64;

/// A login waiting for its auth callback.
#[derive(Debug)]
pub struct PendingAuth {
    /// The SCRAM state holding the server signature we expect.
    pub client_final: ClientFinal,
    /// A callback whose signature did not verify (kept to explain a following `Err auth`).
    pub signature_error: Option<ScramError>,
}

/// Everything the connection thread, the callback handlers and the UI coordinate on.
#[derive(Debug, Default)]
pub struct Control {
    /// The state machine's state.
    pub state: ConnState,
    /// Messages waiting for `Thx`.
    pub outbox: Outbox,
    /// `History` / `Who` requests.
    pub commands: VecDeque<Command>,
    /// `close()` was called: `Some(send_bye)`.
    pub close: Option<bool>,
    /// The connection thread has finished (no more sending will happen).
    pub conn_done: bool,
    /// `reconnect()` was called.
    pub reconnect: bool,
    /// The last login failed fatally; the thread waits for `reconnect()` or `close()`.
    pub fatal: bool,
    /// The session token, once the server proved its identity on the auth callback.
    pub token: Option<SessionToken>,
    /// A login in progress.
    pub pending_auth: Option<PendingAuth>,
    /// The presence version seen in the last heartbeat.
    pub presence_seen: Option<u64>,
    /// A presence change asks for `Who`.
    pub presence_wanted: bool,
    /// Online users as last fetched, and their presence version.
    pub online: Vec<Username>,
    /// See `online`.
    pub presence_version: Option<u64>,
    /// When the last heartbeat of this session arrived.
    pub last_heartbeat: Option<Instant>,
    /// The server's heartbeat interval.
    pub heartbeat_interval: Option<Duration>,
    /// The server's name.
    pub server_name: Option<String>,
    /// Whether the server accepts registrations.
    pub registration: Option<Registration>,
    /// The socket the connection thread is blocked on, so `close()` can cut it short.
    pub in_flight: Option<TcpStream>,
    /// Highest record id the server acknowledged for our messages.
    pub acked_max: u64,
    /// The server's newest id when this client last logged in (`Ok <hb> <latest-id>`).
    pub login_latest: Option<u64>,
    /// Whether `Bye` was acknowledged.
    pub bye_sent: bool,
}

/// The client's shared state.
pub struct ClientState {
    /// The configuration.
    pub config: ClientConfig,
    /// The username, validated.
    pub username: Username,
    /// The ports the listeners got.
    pub ports: CallbackPorts,
    /// Client plugins (display and send hooks).
    pub plugins: Plugins,
    sink: EventSink,
    ctl: Mutex<Control>,
    cv: Condvar,
    records: Mutex<RecordStore>,
    listeners_stop: AtomicBool,
}

impl std::fmt::Debug for ClientState {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ClientState")
            .field("username", &self.username)
            .field("ports", &self.ports)
            .finish_non_exhaustive()
    }
}

impl ClientState {
    /// ClientState state for a client.
    pub fn new(
        config: ClientConfig,
        username: Username,
        ports: CallbackPorts,
        records: RecordStore,
        sink: EventSink,
        plugins: Plugins,
    ) -> Self {
        Self {
            plugins,
            config,
            username,
            ports,
            sink,
            ctl: Mutex::new(Control::default()),
            cv: Condvar::new(),
            records: Mutex::new(records),
            listeners_stop: AtomicBool::new(false),
        }
    }

    /// Records as the user should see them: each body through the plugins' `on_message_display`
    /// (the cache keeps what the server sent).
    pub fn for_display(&self, mut records: Vec<Record>) -> Vec<Record> {
        if !self.plugins.is_empty() {
            for r in &mut records {
                r.body = self.plugins.message_display(r.username.as_str(), &r.body);
            }
        }
        records
    }

    /// Locks the control block.
    pub fn ctl(&self) -> MutexGuard<'_, Control> {
        self.ctl.lock()
    }

    /// Locks the record store.
    pub fn records(&self) -> MutexGuard<'_, RecordStore> {
        self.records.lock()
    }

    /// Wakes everyone waiting on the control block.
    pub fn notify(&self) {
        self.cv.notify_all();
    }

    /// Waits on the control block until `deadline` (or a notification).
    pub fn wait_until(&self, guard: &mut MutexGuard<'_, Control>, deadline: Instant) {
        if Instant::now() < deadline {
            let _ = self.cv.wait_until(guard, deadline);
        }
    }

    /// Waits on the control block until notified.
    pub fn wait(&self, guard: &mut MutexGuard<'_, Control>) {
        self.cv.wait(guard);
    }

    /// Hands an event to the UI.
    pub fn emit(&self, event: Event) {
        (self.sink)(event);
    }

    /// Logs and emits a notice.
    pub fn notice(&self, level: NoticeLevel, text: impl Into<String>) {
        let text = text.into();
        match level {
            NoticeLevel::Info => tracing::info!("{text}"),
            NoticeLevel::Warning => tracing::warn!("{text}"),
        }
        self.emit(Event::Notice { level, text });
    }

    /// Moves the state machine (emitting the change) while the caller holds the control block.
    pub fn set_state(&self, ctl: &mut Control, state: ConnState) {
        if ctl.state != state {
            tracing::debug!("state {} -> {state}", ctl.state);
            ctl.state = state;
            self.emit(Event::State(state));
            self.cv.notify_all();
        }
    }

    /// Whether the client is closing.
    pub fn closing(&self) -> bool {
        self.ctl.lock().close.is_some()
    }

    /// Tells the accept threads to stop.
    pub fn stop_listeners(&self) {
        self.listeners_stop.store(true, Ordering::Release);
        self.cv.notify_all();
    }

    /// Whether the accept threads should stop.
    pub fn listeners_stopping(&self) -> bool {
        self.listeners_stop.load(Ordering::Acquire)
    }

    /// Waits up to `timeout` unless the listeners are stopping (an accept error backoff).
    pub fn pause_listener(&self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        let mut ctl = self.ctl.lock();
        while !self.listeners_stopping() && Instant::now() < deadline {
            let _ = self.cv.wait_until(&mut ctl, deadline);
        }
    }

    /// Registers the socket the connection thread is about to block on; if the client is closing
    /// without `Bye` it is cut at once.
    pub fn track(&self, stream: &TcpStream) {
        let mut ctl = self.ctl.lock();
        ctl.in_flight = stream.try_clone().ok();
        if ctl.close == Some(false)
            && let Some(s) = &ctl.in_flight
        {
            let _ = s.shutdown(Shutdown::Both);
        }
    }

    /// Forgets the tracked socket.
    pub fn untrack(&self) {
        self.ctl.lock().in_flight = None;
    }

    /// A snapshot for a status bar.
    pub fn status(&self) -> Status {
        let last_id = self.records.lock().cursor();
        let ctl = self.ctl.lock();
        Status {
            state: ctl.state,
            server_name: ctl.server_name.clone(),
            registration: ctl.registration,
            last_heartbeat: ctl.last_heartbeat,
            heartbeat_interval: ctl.heartbeat_interval,
            online: ctl.online.clone(),
            presence_version: ctl.presence_version,
            last_id,
            outbox_len: ctl.outbox.len(),
            login_latest: ctl.login_latest,
            ports: self.ports,
        }
    }
}
