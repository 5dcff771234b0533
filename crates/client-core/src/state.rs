//! State shared by the client's threads: the control block ([`Control`]: lifecycle, session,
//! presence, outbox, requests) under one lock with one condvar, and the record store under
//! another.
//!
//! Lock order: never hold both. Events are emitted while holding the lock of the state they
//! describe, so state changes come out in order, and so do records.

use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use std::sync::Arc;

use gc_net::identity::Identity;
use gc_net::tls::{ClientAuth, PeerCheck, TlsConfig};
use gc_net::{Connector, Timeouts, Unblocker};
use gc_plugin::Plugins;
use gc_protocol::{CallbackPorts, Fingerprint, Record, Username};
use parking_lot::{Condvar, Mutex, MutexGuard};

use crate::config::ClientConfig;
use crate::control::{BadTransition, Control};
use crate::error::ClientError;
use crate::event::{ConnState, Event, NoticeLevel, Status};
use crate::failover::Instance;
use crate::records::RecordStore;
use crate::trust::ServerPin;

/// A TLS client's setup, made once per run.
#[derive(Debug)]
pub struct ClientTlsState {
    /// Connections to the server and the callback listeners' side of the handshake.
    pub config: Arc<TlsConfig>,
    /// The per-run certificate the callback listeners present, announced at login.
    pub callback_fingerprint: Fingerprint,
    /// The server certificate accepted on every connection, both ways: one for all instances, or
    /// one per entry of the server list.
    pub pins: Pins,
}

/// The server certificates a TLS client accepts.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Pins {
    /// The same for every instance.
    All(ServerPin),
    /// One per entry of the server list (`None`: not trusted, never tried).
    Each(Vec<Option<ServerPin>>),
}

impl Pins {
    /// The pin of the list's entry `entry`.
    pub fn get(&self, entry: usize) -> Option<&ServerPin> {
        match self {
            Self::All(pin) => Some(pin),
            Self::Each(pins) => pins.get(entry).and_then(Option::as_ref),
        }
    }
}

impl ClientTlsState {
    /// A fresh per-run identity for the callback listeners, trusting the servers of `pins`.
    pub fn new(pins: Pins) -> Result<Self, ClientError> {
        let failed = |e: gc_net::NetError| ClientError::Tls {
            detail: e.to_string(),
        };
        let identity = Identity::generate("gc-client").map_err(failed)?;
        // The callback listeners demand the connecting server's certificate: only the server
        // this client logged in to may call it back.
        let config = TlsConfig::new(Some(&identity), ClientAuth::Required).map_err(failed)?;
        Ok(Self {
            config: Arc::new(config),
            callback_fingerprint: identity.fingerprint(),
            pins,
        })
    }
}

/// Where events go. Must be quick and must not call back into the [`crate::Client`].
pub type EventSink = Box<dyn Fn(Event) + Send + Sync>;

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
    /// How the connection thread connects to the server (the configured source address and
    /// timeouts).
    pub connector: Connector,
    /// The connection thread's connections to the server, cut at once when the client closes
    /// without `Bye`.
    pub sockets: Unblocker,
    /// TLS (GC/2): the per-run callback certificate and the server's pin; `None` for plain GC/1.
    pub tls: Option<ClientTlsState>,
    sink: EventSink,
    ctl: Mutex<Control>,
    cv: Condvar,
    records: Mutex<RecordStore>,
    listeners_stop: AtomicBool,
    /// The instance of the server list the client is on, or trying (its pin is the one
    /// connections and callbacks check).
    instance: Mutex<Option<Instance>>,
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
    /// What the server's certificate must be on every connection, both ways: the pin of the
    /// instance the client is on.
    pub fn server_check(&self) -> PeerCheck {
        self.server_check_for(self.instance_entry())
    }

    /// What the certificate of the server list's entry `entry` must be.
    pub fn server_check_for(&self, entry: usize) -> PeerCheck {
        match &self.tls {
            Some(tls) => match tls.pins.get(entry) {
                Some(pin) => PeerCheck::Pinned(pin.fingerprint),
                // No certificate has this fingerprint: an entry never confirmed is not tried
                // (see `Rotation::targets`), and were it tried, nothing it presents would do.
                None => PeerCheck::Pinned(Fingerprint::of_der(&[])),
            },
            None => PeerCheck::Any,
        }
    }

    /// The pin of the instance the client is on (`None` for plain GC/1).
    pub fn server_pin(&self) -> Option<&ServerPin> {
        let entry = self.instance_entry();
        self.tls.as_ref().and_then(|tls| tls.pins.get(entry))
    }

    /// Whether the server list's entry `entry` may be connected to (it has a pin, or TLS is off).
    pub fn usable(&self, entry: usize) -> bool {
        self.tls
            .as_ref()
            .is_none_or(|tls| tls.pins.get(entry).is_some())
    }

    /// The instance the client is on, or trying.
    pub fn instance(&self) -> Option<Instance> {
        self.instance.lock().clone()
    }

    fn instance_entry(&self) -> usize {
        self.instance.lock().as_ref().map_or(0, |i| i.index)
    }

    /// The client moves to (or tries) `instance`; returns the one it was on.
    pub fn set_instance(&self, instance: Instance) -> Option<Instance> {
        self.instance.lock().replace(instance)
    }

    /// The shared state of a client about to start.
    pub fn new(
        config: ClientConfig,
        username: Username,
        ports: CallbackPorts,
        records: RecordStore,
        sink: EventSink,
        plugins: Plugins,
        tls: Option<ClientTlsState>,
    ) -> Self {
        let connector = Connector::new(config.bind_ip, Timeouts::new(config.io_timeout));
        Self {
            plugins,
            connector: match &tls {
                Some(tls) => connector.with_tls(Arc::clone(&tls.config)),
                None => connector,
            },
            tls,
            sockets: Unblocker::new(),
            config,
            username,
            ports,
            sink,
            ctl: Mutex::new(Control::default()),
            cv: Condvar::new(),
            records: Mutex::new(records),
            listeners_stop: AtomicBool::new(false),
            instance: Mutex::new(None),
        }
    }

    /// Records as the user should see them: each body through the plugins' `on_message_display`
    /// (the cache keeps what the server sent).
    pub fn for_display(&self, mut records: Vec<Record>) -> Vec<Record> {
        if !self.plugins.is_empty() {
            for r in &mut records {
                r.body =
                    self.plugins
                        .message_display(r.username.as_str(), r.room.as_str(), &r.body);
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

    /// Logs and emits a notice. A notice is one line, and often quotes the server (its name, an
    /// `Err` text): it is sanitised here, once for every front end.
    pub fn notice(&self, level: NoticeLevel, text: impl Into<String>) {
        let text = text.into();
        let text = match gc_protocol::sanitize::sanitize(&text) {
            std::borrow::Cow::Borrowed(_) => text,
            std::borrow::Cow::Owned(safe) => safe,
        };
        match level {
            NoticeLevel::Info => tracing::info!("{text}"),
            NoticeLevel::Warning => tracing::warn!("{text}"),
        }
        self.emit(Event::Notice { level, text });
    }

    /// Reports a change of the state machine (a transition's result) while the caller holds the
    /// control block: the event goes out in order, and waiters wake. A transition the machine
    /// refused is a bug somewhere; it is logged and nothing changes.
    pub fn report(&self, changed: Result<Option<ConnState>, BadTransition>) {
        match changed {
            Ok(Some(state)) => {
                tracing::debug!("state -> {state}");
                self.emit(Event::State(state));
                self.cv.notify_all();
            }
            Ok(None) => {}
            Err(e) => tracing::error!("{e}"),
        }
    }

    /// Runs a transition on the control block and reports it (see [`ClientState::report`]).
    pub fn transition(
        &self,
        step: impl FnOnce(&mut Control) -> Result<Option<ConnState>, BadTransition>,
    ) -> Result<(), BadTransition> {
        let mut ctl = self.ctl.lock();
        let changed = step(&mut ctl);
        let result = changed.map(|_| ());
        self.report(changed);
        result
    }

    /// Whether the client is closing.
    pub fn closing(&self) -> bool {
        self.ctl.lock().is_closing()
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

    /// A snapshot for a status bar.
    pub fn status(&self) -> Status {
        let last_id = self.records.lock().cursor();
        let ctl = self.ctl.lock();
        let (last_heartbeat, heartbeat_interval) = match ctl.session() {
            crate::control::SessionPhase::Active {
                last_heartbeat,
                heartbeat_interval,
                ..
            } => (Some(*last_heartbeat), Some(*heartbeat_interval)),
            _ => (None, None),
        };
        let (presence_version, online) = ctl.presence.online();
        Status {
            state: ctl.state(),
            server_name: ctl.server().map(|s| s.name.clone()),
            registration: ctl.server().map(|s| s.registration),
            last_heartbeat,
            heartbeat_interval,
            online: online.to_vec(),
            presence_version,
            last_id,
            outbox_len: ctl.outbox.len(),
            login_latest: ctl.login_latest(),
            caught_up: ctl.caught_up(last_id),
            ports: self.ports,
            rooms: ctl.rooms(),
            version: ctl.version(),
            instance: self.instance(),
        }
    }
}
