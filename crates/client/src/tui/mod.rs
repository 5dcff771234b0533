//! The terminal UI of `gc-client` (ratatui + crossterm).
//!
//! - [`app`]: the state and what every key, paste, mouse and client event does to it; no I/O.
//!   The login form ([`login`]) handles its own keys; [`rooms`] keeps one view per room (its
//!   scrollback, people, unread count); [`command`] reads the `/commands`; [`search`] finds and
//!   steps through matches; [`people`] keeps who is online.
//! - [`ui`]: `impl Widget for &App`: draws only what is on screen.
//! - [`channel`]: one channel of [`AppEvent`]s fed by the terminal input thread, the client's
//!   threads (through its event sink) and the signal thread.
//! - [`run_loop`] / [`step`]: generic over the ratatui [`Backend`], so tests drive it with a
//!   `TestBackend`: draw, wait for events (or a one-second tick for the heartbeat age), apply
//!   them, carry out the app's [`Action`]s on the client ([`ClientDriver`]).
//! - [`run`]: owns the real terminal (`ratatui::try_init`/`restore`, whose panic hook restores it;
//!   bracketed paste and mouse-wheel reporting on top), the threads, and the client.
//!
//! - [`notify`]: the bell, the terminal's title and the notify command; [`marks`]: the read
//!   markers kept beside the cache; [`look`]: the time column and colours.
//!
//! Threads: `gc-tui-input` (terminal events), `gc-tui-signals` (SIGTERM, SIGINT, SIGHUP),
//! `gc-notify` (one per notify command running, with its `gc-notify-wait`) and the client's own;
//! all stopped and joined before [`run`] returns.

pub mod app;
pub mod channel;
pub mod command;
pub mod convlog;
pub mod files;
pub mod input;
pub mod login;
pub mod look;
pub mod marks;
pub mod notify;
pub mod passwd;
pub mod people;
pub mod rooms;
pub mod scrollback;
pub mod search;
pub mod text;
pub mod ui;
pub mod urls;

use std::fmt;
use std::io::{self, IsTerminal as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use ratatui::backend::Backend;
use ratatui::crossterm::event::{DisableBracketedPaste, EnableBracketedPaste};
use ratatui::crossterm::{Command, cursor, execute};
use ratatui::{DefaultTerminal, Terminal};

pub use app::{Action, App, Zone};
pub use channel::AppEvent;

use crate::error::AppError;
use crate::settings::{Settings, SettingsFile as _};
use crate::trust::ServerTrust;
use channel::{InputThread, SignalThread};
use gc_client_core::Client;
use gc_client_core::ClientError;
use gc_client_core::ClientTls;
use gc_client_core::Direction;
use gc_client_core::PendingMessage;
use gc_client_core::config::{ClientConfig, Password};
use gc_client_core::error_chain;
use gc_client_core::event::ConnState;
use gc_client_core::trust::FirstContact;
use gc_plugin::CommandOutcome;
use gc_protocol::{ContentHash, Room};
use scrollback::Level;

/// How often the screen is redrawn without events (the heartbeat age in the status bar).
pub const TICK: Duration = Duration::from_secs(1);
/// Records shown from the cache when a client starts, per room.
pub const INITIAL_RECORDS: usize = 1000;
/// Most events handled between two draws (a flood still gets drawn now and then).
const BATCH: usize = 1024;
/// The read markers are written at most this often while running (and at the end): seeing a
/// busy room is not a file write per message.
pub const MARKS_EVERY: Duration = Duration::from_secs(5);

/// Makes the client configuration for an account: `(user, password, register)`.
pub type ConfigFor<'a> = dyn Fn(&str, Password, bool) -> Result<ClientConfig, AppError> + 'a;

/// How the terminal UI starts.
#[derive(Debug)]
pub struct TuiOptions {
    /// The server as shown in the status bar.
    pub server_label: String,
    /// The username to start with (`--user`, or the remembered one).
    pub user: Option<String>,
    /// A password given with `--password-file` or `GC_PASSWORD`: with a user, log in at once.
    pub password: Option<Password>,
    /// Create the account (`--register`).
    pub register: bool,
    /// The settings file where the username is remembered.
    pub settings: Option<PathBuf>,
    /// How long to wait at exit for unacknowledged messages (when logged in).
    pub drain: Duration,
    /// Which server certificate to trust (on first contact the login form asks).
    pub trust: ServerTrust,
    /// Turn on mouse reporting (the wheel scrolls the messages); off leaves the mouse to the
    /// terminal.
    pub mouse: bool,
    /// Write URLs as OSC 8 hyperlinks.
    pub hyperlinks: bool,
    /// The time column and colours.
    pub look: look::Look,
    /// The bell, the title, the notify command.
    pub rules: notify::Rules,
    /// Whose messages are hidden (the settings file's `ignore`).
    pub ignore: Vec<String>,
    /// Where conversation logs go (`…/gc-client/logs`; setting `log-conversations`), `None`:
    /// none are written.
    pub logs: Option<PathBuf>,
}

/// How the terminal UI ended.
#[derive(Debug, Default)]
pub struct TuiOutcome {
    /// Messages the server never acknowledged.
    pub unsent: Vec<PendingMessage>,
    /// What ended it, when not the user (a signal).
    pub signal: Option<i32>,
}

/// The client side of the run loop: starts and stops the client for each login attempt and
/// carries out the app's actions on it.
pub struct ClientDriver<'a> {
    client: Option<Client>,
    generation: u64,
    tx: Sender<AppEvent>,
    config_for: &'a ConfigFor<'a>,
    settings: Option<PathBuf>,
    signal: Option<i32>,
    trust: ServerTrust,
    /// A login waiting for the user to trust the server's certificate (it holds the password
    /// until then).
    waiting: Option<ClientConfig>,
    /// First-contact probes (`gc-tui-probe`): each ends within the I/O timeout; joined when done,
    /// and at close.
    probes: Vec<JoinHandle<()>>,
    /// With a server list: the instance being probed (each new one is asked about in turn).
    probing: Option<usize>,
    /// Rings the bell, sets the title, runs the notify command (none: nothing is done).
    notifier: Option<notify::Notifier>,
    /// Where the read markers are kept (beside the cache; none without one).
    marks_path: Option<PathBuf>,
    /// When they were last written.
    marks_saved: Option<Instant>,
    /// Where conversation logs go (a directory per server and account is made under it).
    logs_base: Option<PathBuf>,
    /// The logs of the account logged in.
    logs: Option<convlog::ConvLogs>,
}

impl fmt::Debug for ClientDriver<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("ClientDriver")
            .field("client", &self.client)
            .field("generation", &self.generation)
            .finish_non_exhaustive()
    }
}

impl<'a> ClientDriver<'a> {
    /// A driver whose clients send their events to `tx`.
    pub fn new(
        tx: Sender<AppEvent>,
        config_for: &'a ConfigFor<'a>,
        settings: Option<PathBuf>,
        trust: ServerTrust,
    ) -> Self {
        Self {
            client: None,
            generation: 0,
            tx,
            config_for,
            settings,
            signal: None,
            trust,
            waiting: None,
            probes: Vec::new(),
            probing: None,
            notifier: None,
            marks_path: None,
            marks_saved: None,
            logs_base: None,
            logs: None,
        }
    }

    /// Writes the conversations to plain-text logs under `base` (`log-conversations`).
    pub fn log_conversations(&mut self, app: &mut App, base: PathBuf) {
        self.logs_base = Some(base);
        app.log_shown = true;
    }

    /// Appends what the app showed since the last call to the conversation logs. A failure is
    /// said once, in the log and the pane, and logging stops for the run.
    pub fn write_logs(&mut self, app: &mut App) {
        let shown = app.take_shown();
        let Some(logs) = &mut self.logs else {
            return;
        };
        if shown.is_empty() {
            return;
        }
        if let Err(e) = logs.write(&shown) {
            let text = format!(
                "cannot write the conversation logs in {}: {e}; they are off for this run",
                logs.dir().display()
            );
            tracing::warn!("{text}");
            app.notice(Level::Warning, text);
            self.logs = None;
        }
    }

    /// Rings the bell, sets the title and runs the notify command with `notifier`.
    pub fn set_notifier(&mut self, notifier: notify::Notifier) {
        self.notifier = Some(notifier);
    }

    /// Carries out what the app's new messages call for, and shows its title.
    pub fn notify(&mut self, app: &mut App) {
        match &mut self.notifier {
            Some(notifier) => {
                let title = app.title();
                notifier.apply(&mut app.alerts, &title);
            }
            None => {
                app.alerts.take_bell();
                app.alerts.take_calls();
            }
        }
    }

    /// Writes the app's read markers if they changed, at most every [`MARKS_EVERY`] unless
    /// `now` (at the end). A failure is logged: it costs a "new since you left" line.
    pub fn save_marks(&mut self, app: &mut App, now: bool) {
        let Some(path) = &self.marks_path else {
            return;
        };
        if !now
            && self
                .marks_saved
                .is_some_and(|at| at.elapsed() < MARKS_EVERY)
        {
            return;
        }
        if let Some(marks) = app.take_changed_marks() {
            if let Err(e) = marks::save(path, marks) {
                tracing::warn!("cannot write the read markers {}: {e}", path.display());
            }
            self.marks_saved = Some(Instant::now());
        }
    }

    /// The running client.
    pub fn client(&self) -> Option<&Client> {
        self.client.as_ref()
    }

    fn stop_client(&mut self) {
        self.waiting = None;
        if let Some(client) = self.client.take() {
            client.close(false, None);
        }
        self.join_probes(false);
    }

    /// Joins the probe threads that are done (all of them, waiting, if `all`).
    fn join_probes(&mut self, all: bool) {
        let (done, running) = std::mem::take(&mut self.probes)
            .into_iter()
            .partition(|h| all || h.is_finished());
        self.probes = running;
        for handle in done {
            if handle.join().is_err() {
                tracing::error!("the first-contact probe thread panicked");
            }
        }
    }

    fn start_client(&mut self, app: &mut App, user: &str, password: Password, register: bool) {
        self.stop_client();
        self.generation += 1;
        let mut config = match (self.config_for)(user, password, register) {
            Ok(config) => config,
            Err(e) => return app.login_error(&e),
        };
        match self.trust.client_tls() {
            Some(tls) => config.tls = tls,
            None => return self.probe(app, config),
        }
        self.launch(app, config);
    }

    /// First contact: learns the server's certificate on a thread of its own (the screen stays
    /// live); the answer comes back as [`AppEvent::FirstContact`].
    fn probe(&mut self, app: &mut App, config: ClientConfig) {
        let (tx, generation) = (self.tx.clone(), self.generation);
        let mut probe_config = config.clone();
        // A list: its next new instance, alone.
        self.probing = self.trust.next_unknown().map(|(index, server)| {
            probe_config.server = server;
            index
        });
        let spawned = std::thread::Builder::new()
            .name("gc-tui-probe".into())
            .spawn(move || {
                let result = gc_client_core::trust::probe(&probe_config);
                let _ = tx.send(AppEvent::FirstContact { generation, result });
            });
        match spawned {
            Ok(handle) => {
                self.probes.push(handle);
                self.waiting = Some(config);
                app.checking_server();
            }
            Err(source) => app.login_error(&AppError::Thread {
                name: "gc-tui-probe".into(),
                source,
            }),
        }
    }

    /// What the server presented on first contact: trusted at once with
    /// `--trust-on-first-use`, otherwise the login form asks.
    fn first_contact(&mut self, app: &mut App, result: Result<FirstContact, ClientError>) {
        if self.waiting.is_none() {
            return; // cancelled meanwhile
        }
        match result {
            Ok(contact) if self.trust.accepts_first_use() => {
                self.trust_server(app, &contact);
            }
            Ok(contact) => app.first_contact(contact),
            Err(e) => match self.probing.take() {
                // An instance of a list that does not answer: left out of this run; the others
                // go on.
                Some(index) => {
                    let e = AppError::from(e);
                    if let Some(text) = self.trust.skip_instance(index, &e) {
                        app.notice(Level::Warning, text);
                    }
                    if self.trust.none_trusted() && self.trust.next_unknown().is_none() {
                        self.waiting = None;
                        app.login_error(&e);
                    } else {
                        self.go_on(app);
                    }
                }
                None => {
                    self.waiting = None;
                    app.login_error(&e.into());
                }
            },
        }
    }

    /// A list whose instance was just settled: the next new one is probed, or the waiting login
    /// goes on.
    fn go_on(&mut self, app: &mut App) {
        let Some(mut config) = self.waiting.take() else {
            return;
        };
        match self.trust.client_tls() {
            Some(tls) => {
                config.tls = tls;
                self.generation += 1;
                self.launch(app, config);
            }
            None => {
                self.generation += 1;
                self.probe(app, config);
            }
        }
    }

    /// The user trusts what the server presented: remembered, and the waiting login goes on.
    fn trust_server(&mut self, app: &mut App, contact: &FirstContact) {
        if let Some(index) = self.probing.take() {
            if let Err(e) = self.trust.trust_instance(index, contact) {
                self.waiting = None;
                return app.login_error(&e);
            }
            return self.go_on(app);
        }
        let ServerTrust::FirstContact { known, key, .. } = &self.trust else {
            return;
        };
        let pin = match crate::trust::remember(known.clone(), key, contact) {
            Ok(pin) => pin,
            Err(e) => return app.login_error(&e),
        };
        self.trust = ServerTrust::Pinned(pin.clone());
        if let Some(mut config) = self.waiting.take() {
            config.tls = ClientTls::Pinned(pin);
            self.generation += 1;
            self.launch(app, config);
        }
    }

    /// Starts the client for a login.
    fn launch(&mut self, app: &mut App, config: ClientConfig) {
        let generation = self.generation;
        let tx = self.tx.clone();
        let sink = Box::new(move |event| {
            let _ = tx.send(AppEvent::Client { generation, event });
        });
        let marks_path = config.cache_path.as_deref().map(marks::path_for);
        if let Some(base) = &self.logs_base {
            let dir = convlog::dir_for(base, &config.server, &config.username);
            self.logs = match convlog::ConvLogs::open(dir.clone()) {
                Ok(logs) => Some(logs),
                Err(e) => {
                    let text = format!(
                        "cannot open the conversation logs in {}: {e}; they are off for this run",
                        dir.display()
                    );
                    tracing::warn!("{text}");
                    app.notice(Level::Warning, text);
                    None
                }
            };
        }
        match Client::start_with_sink(config, sink) {
            Ok(client) => {
                // Read once the cache is locked: only this client writes them.
                app.set_marks(marks_path.as_deref().map(marks::load).unwrap_or_default());
                self.marks_path = marks_path;
                let records: Vec<_> = client
                    .cached_rooms()
                    .iter()
                    .flat_map(|room| client.cached_in(room, 0, INITIAL_RECORDS))
                    .collect();
                app.load_initial(&records);
                app.set_plugin_commands(client.plugin_commands());
                self.client = Some(client);
            }
            Err(e) => app.login_error(&e.into()),
        }
    }

    /// Carries out one action.
    pub fn apply<B: Backend>(
        &mut self,
        action: Action,
        app: &mut App,
        terminal: &mut Terminal<B>,
    ) -> Result<(), AppError> {
        match action {
            Action::Login {
                user,
                password,
                register,
            } => self.start_client(app, &user, password, register),
            Action::Trust(contact) => self.trust_server(app, &contact),
            Action::StopClient => {
                self.stop_client();
                app.transfers.clear();
            }
            Action::LoggedIn { user } => {
                tracing::info!("logged in as {user}");
                if let Some(path) = &self.settings {
                    Settings::remember_user(path, &user);
                }
            }
            Action::Send { room, body, typed } => match &self.client {
                Some(client) => match client.send_to(room.clone(), body.clone()) {
                    Ok(id) => app.queued(id, room, body),
                    Err(e) => app.send_failed(typed, &e),
                },
                None => app.send_failed(typed, &ClientError::Closed),
            },
            Action::Upload { room, path } => self.upload(app, room, &path),
            Action::Download { hash, name, size } => self.download(app, hash, &name, size),
            Action::CancelTransfer(id) => {
                if let Some(client) = &self.client {
                    client.cancel_transfer(id);
                }
            }
            Action::SaveIgnored(ignored) => {
                if let Some(path) = &self.settings
                    && let Err(e) = Settings::save_ignored(path, &ignored)
                {
                    let text = format!(
                        "cannot keep the ignore list in the settings file (it holds for this \
                         run): {}",
                        error_chain(&e)
                    );
                    tracing::warn!("{text}");
                    app.notice(Level::Warning, text);
                }
            }
            Action::Command {
                room,
                name,
                args,
                typed,
            } => match &self.client {
                Some(client) => match client.run_command(&room, &name, &args) {
                    // What the command makes is sent as a typed message is: through the send
                    // hooks and the outbox.
                    Some(CommandOutcome::Send(text)) => {
                        match client.send_to(room.clone(), text.clone()) {
                            Ok(id) => app.queued(id, room, text),
                            Err(e) => app.send_failed(typed, &e),
                        }
                    }
                    Some(CommandOutcome::Notice(text)) => app.plugin_notice(&text),
                    Some(CommandOutcome::Done) => {}
                    Some(CommandOutcome::Failed { plugin, reason }) => {
                        app.command_failed(typed, &name, &plugin, &reason);
                    }
                    None => app.command_failed(typed, &name, "?", "no plugin adds it any more"),
                },
                None => app.send_failed(typed, &ClientError::Closed),
            },
            Action::LoadOlder { room, before_id } => match &self.client {
                Some(client) => {
                    let cached = client.cached_in(&room, before_id, app::PAGE as usize);
                    if !cached.is_empty() {
                        app.add_older(&room, &cached, false);
                    } else if let Err(e) = client.history_in(room.clone(), before_id, app::PAGE) {
                        app.load_older_failed(&room);
                        app.notice(Level::Error, format!("cannot load older messages: {e}"));
                    }
                }
                None => app.load_older_failed(&room),
            },
            Action::Who { room } => {
                let asked = self.client.as_ref().map(|client| {
                    if room.is_general() {
                        client.who()
                    } else {
                        client.who_in(room.clone())
                    }
                });
                if let Some(Err(e)) = asked {
                    app.notice(Level::Error, format!("cannot ask who is online: {e}"));
                }
            }
            Action::Rooms => {
                if let Some(Err(e)) = self.client.as_ref().map(Client::rooms) {
                    app.notice(Level::Error, format!("cannot ask for the rooms: {e}"));
                }
            }
            Action::Room(request) => {
                let what = request.to_string();
                if let Some(Err(e)) = self.client.as_ref().map(|c| c.room_request(request)) {
                    app.notice(Level::Error, format!("could not {what}: {e}"));
                }
            }
            Action::Away(message) => {
                let asked = self.client.as_ref().map(|client| match message {
                    Some(message) => client.away(message),
                    None => client.back(),
                });
                if let Some(Err(e)) = asked {
                    app.notice(Level::Error, e.to_string());
                }
            }
            Action::Passwd { current, new } => {
                if let Some(Err(e)) = self.client.as_ref().map(|c| c.passwd(current, new)) {
                    app.notice(Level::Error, format!("could not change the password: {e}"));
                }
            }
            Action::Watch(rooms) => {
                if let Some(client) = &self.client {
                    client.watch_presence(rooms);
                }
            }
            Action::Reconnect => {
                if let Some(client) = &self.client {
                    client.reconnect();
                }
            }
            Action::Redraw => terminal
                .clear()
                .map_err(|e| AppError::Terminal(io::Error::other(e.to_string())))?,
        }
        Ok(())
    }

    /// `/upload`: starts sharing the file at `path` in `room`.
    fn upload(&self, app: &mut App, room: Room, path: &Path) {
        let Some(client) = &self.client else {
            return app.notice(
                Level::Error,
                format!("cannot upload: {}", ClientError::Closed),
            );
        };
        let name = path.file_name().map_or_else(
            || path.display().to_string(),
            |n| n.to_string_lossy().into_owned(),
        );
        match client.upload(room.clone(), path) {
            Ok(id) => {
                app.transfer_started(files::Transfer::new(id, Direction::Upload, name, 0, room))
            }
            Err(e) => app.notice(Level::Error, cannot("upload", &name, &e)),
        }
    }

    /// `/download`: starts saving the file `hash` into the download directory: where a download
    /// of it was cut short (its `.part` is still there, from this run or an earlier one), going on
    /// from there, else under a name no file has there yet.
    fn download(&self, app: &mut App, hash: ContentHash, name: &str, size: u64) {
        let Some(client) = &self.client else {
            return app.notice(
                Level::Error,
                format!("cannot download: {}", ClientError::Closed),
            );
        };
        let Some(dir) = files::download_dir_from_env() else {
            return app.notice(
                Level::Error,
                "cannot download: no download directory (set XDG_DOWNLOAD_DIR or HOME)",
            );
        };
        let save = gc_client_core::download_path(&dir, name, &hash);
        let target = save.path;
        let shown = target
            .file_name()
            .map_or_else(|| name.to_owned(), |n| n.to_string_lossy().into_owned());
        match client.download(hash, target) {
            Ok(id) => {
                if let Some(have) = save.resumes.filter(|&have| have > 0) {
                    app.notice(Level::Info, files::resuming(&shown, have, size));
                }
                let room = app.view().room.clone();
                app.transfer_started(files::Transfer::new(
                    id,
                    Direction::Download,
                    shown,
                    size,
                    room,
                ));
            }
            Err(e) => app.notice(Level::Error, cannot("download", &shown, &e)),
        }
    }

    /// Copies the client's status into the app.
    pub fn refresh(&self, app: &mut App) {
        if let Some(client) = &self.client {
            app.set_status(&client.status());
        }
    }

    /// Closes the client: says `Bye` and, when logged in, waits up to `drain` for the outbox.
    pub fn close(&mut self, drain: Duration) -> Vec<PendingMessage> {
        self.waiting = None;
        self.join_probes(true);
        if let Some(notifier) = &mut self.notifier {
            notifier.finish();
        }
        let Some(client) = self.client.take() else {
            return Vec::new();
        };
        let drain = (client.state() == ConnState::Active && client.status().outbox_len > 0)
            .then_some(drain);
        client.close(true, drain).unsent
    }
}

/// Why a transfer did not start, for the pane, on one line: the library's words (for a server
/// without GC/5, its `NotSupported` text says what the server speaks).
fn cannot(what: &str, name: &str, error: &ClientError) -> String {
    crate::display::sanitize(&format!("cannot {what} {name}: {}", error_chain(error)))
}

/// Draws, waits for events, applies them, and carries out the actions, until the user quits, a
/// signal comes, or the terminal fails. Generic over the backend: tests use a `TestBackend`.
pub fn run_loop<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    driver: &mut ClientDriver<'_>,
    rx: &Receiver<AppEvent>,
) -> Result<(), AppError> {
    while step(terminal, app, driver, rx, TICK)? == Flow::Continue {}
    Ok(())
}

/// Whether the run loop goes on.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Keep going.
    Continue,
    /// The user quit, a signal came, or every event source is gone.
    Quit,
}

/// One turn of the run loop: carry out pending actions, draw, ring and title, wait up to `wait`
/// for events, and handle those that have come (at most 1024 before the next draw). The read
/// markers are written now and then, and when the loop ends.
pub fn step<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    driver: &mut ClientDriver<'_>,
    rx: &Receiver<AppEvent>,
    wait: Duration,
) -> Result<Flow, AppError> {
    let flow = turn(terminal, app, driver, rx, wait);
    driver.write_logs(app);
    driver.save_marks(app, !matches!(flow, Ok(Flow::Continue)));
    flow
}

fn turn<B: Backend>(
    terminal: &mut Terminal<B>,
    app: &mut App,
    driver: &mut ClientDriver<'_>,
    rx: &Receiver<AppEvent>,
    wait: Duration,
) -> Result<Flow, AppError> {
    for action in app.take_actions() {
        driver.apply(action, app, terminal)?;
    }
    if app.should_quit() {
        return Ok(Flow::Quit);
    }
    driver.refresh(app);
    app.set_now(Instant::now());
    app.mark_seen();
    terminal
        .draw(|frame| ui::draw(frame, app))
        .map_err(|e| AppError::Terminal(io::Error::other(e.to_string())))?;
    driver.notify(app);
    let first = match rx.recv_timeout(wait) {
        Ok(event) => event,
        Err(RecvTimeoutError::Timeout) => return Ok(Flow::Continue),
        Err(RecvTimeoutError::Disconnected) => return Ok(Flow::Quit),
    };
    let batch: Vec<AppEvent> = std::iter::once(first)
        .chain(rx.try_iter().take(BATCH))
        .collect();
    for event in batch {
        match event {
            AppEvent::Terminal(event) => app.handle_terminal(event),
            AppEvent::TerminalError(e) => return Err(AppError::Terminal(e)),
            AppEvent::Client { generation, event } => {
                if generation == driver.generation {
                    // The client publishes its status before the events that follow from it
                    // (the server's registration policy before a refused login): refresh it
                    // here, not only once per draw, or such an event meets a stale snapshot.
                    driver.refresh(app);
                    app.handle_client(event);
                }
            }
            AppEvent::FirstContact { generation, result } => {
                if generation == driver.generation {
                    driver.first_contact(app, result);
                }
            }
            AppEvent::Signal(signal) => {
                tracing::info!("signal {signal}: quitting");
                driver.signal = Some(signal);
                return Ok(Flow::Quit);
            }
        }
        for action in app.take_actions() {
            driver.apply(action, app, terminal)?;
        }
        if app.should_quit() {
            return Ok(Flow::Quit);
        }
    }
    Ok(Flow::Continue)
}

/// Mouse reporting of buttons and the wheel only (1000, SGR encoding 1006): crossterm's
/// `EnableMouseCapture` also reports every motion, which would wake the app for nothing.
#[derive(Debug, Clone, Copy)]
struct WheelReporting(bool);

impl Command for WheelReporting {
    fn write_ansi(&self, f: &mut impl fmt::Write) -> fmt::Result {
        f.write_str(if self.0 {
            "\x1b[?1000h\x1b[?1006h"
        } else {
            "\x1b[?1006l\x1b[?1000l"
        })
    }

    #[cfg(windows)]
    fn execute_winapi(&self) -> io::Result<()> {
        Ok(())
    }
}

/// Undoes what [`TerminalGuard::enter`] added on top of ratatui's setup (turning off mouse
/// reporting that was never on is harmless).
fn leave_extras() {
    let _ = execute!(
        io::stdout(),
        DisableBracketedPaste,
        WheelReporting(false),
        cursor::Show
    );
}

/// The real terminal, restored on drop (and by the panic hook).
struct TerminalGuard {
    terminal: Option<DefaultTerminal>,
}

impl TerminalGuard {
    fn enter(mouse: bool) -> Result<Self, AppError> {
        // Raw mode, alternate screen, and ratatui's panic hook that restores them.
        let terminal = ratatui::try_init().map_err(AppError::Terminal)?;
        let guard = Self {
            terminal: Some(terminal),
        };
        execute!(io::stdout(), EnableBracketedPaste).map_err(AppError::Terminal)?;
        if mouse {
            execute!(io::stdout(), WheelReporting(true)).map_err(AppError::Terminal)?;
        }
        // Ours runs first, then ratatui's (restore, then the default message).
        let ratatui_hook = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            leave_extras();
            ratatui_hook(info);
        }));
        Ok(guard)
    }

    fn leave(&mut self) {
        if self.terminal.take().is_some() {
            leave_extras();
            // Not `ratatui::restore`: it prints its error with `eprintln!`, which panics when the
            // terminal is gone (EIO).
            if let Err(e) = ratatui::try_restore() {
                tracing::warn!("cannot restore the terminal: {e}");
            }
            let _ = io::stdout().flush();
        }
    }
}

impl Drop for TerminalGuard {
    fn drop(&mut self) {
        self.leave();
    }
}

/// Runs the terminal UI until the user quits (or a signal, or the terminal fails), then restores
/// the terminal and closes the client (saying `Bye`, waiting up to `options.drain` for messages
/// still in the outbox).
pub fn run(options: TuiOptions, config_for: &ConfigFor<'_>) -> Result<TuiOutcome, AppError> {
    // crossterm would fall back to /dev/tty: never take over a terminal that is not ours.
    if !io::stdin().is_terminal() || !io::stdout().is_terminal() {
        return Err(AppError::Terminal(io::Error::other(
            "standard input and output are not a terminal",
        )));
    }
    let (tx, rx) = mpsc::channel();
    let mut signals = SignalThread::start(tx.clone())?;
    let mut guard = TerminalGuard::enter(options.mouse)?;
    let mut input = InputThread::start(tx.clone())?;
    let mut app = App::new(options.server_label, Zone::Local);
    app.hyperlinks = options.hyperlinks;
    app.set_look(options.look);
    app.alerts = notify::Alerts::new(options.rules.clone());
    app.set_ignored(&options.ignore);
    app.prefill(options.user.as_deref(), options.register);
    if let (Some(user), Some(password)) = (&options.user, options.password) {
        app.auto_login(user, password, options.register);
    }
    let mut driver = ClientDriver::new(tx, config_for, options.settings, options.trust);
    if let Some(base) = options.logs {
        driver.log_conversations(&mut app, base);
    }
    driver.set_notifier(notify::Notifier::new(
        Box::new(io::stdout()),
        &options.rules,
    ));
    let result = match guard.terminal.as_mut() {
        Some(terminal) => run_loop(terminal, &mut app, &mut driver, &rx),
        None => Ok(()),
    };
    input.stop();
    guard.leave();
    let unsent = driver.close(options.drain);
    signals.stop();
    if let Err(e) = &result {
        tracing::error!("terminal UI: {}", error_chain(e));
    }
    result.map(|()| TuiOutcome {
        unsent,
        signal: driver.signal,
    })
}
