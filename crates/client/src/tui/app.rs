//! The application state and what every input does to it. The [`App`] does no I/O: keys, pastes,
//! mouse events and client events go in; what needs the client or the terminal comes out as
//! [`Action`]s for the run loop ([`super::run_loop`]), and the screen is drawn from the state by
//! [`super::ui`]. So all of it is tested without a terminal or a server.
//!
//! Here: the dispatcher and the conversation (records, outbox, scrolling and loading older
//! pages, commands). It hands the login form's keys to [`super::login`], `/search` to
//! [`super::search`] and the list of people to [`super::people`], and turns what they ask for
//! into actions.

use std::cell::Cell;
use std::collections::HashSet;
use std::time::Instant;

use chrono::{DateTime, FixedOffset, Local, Utc};
use gc_protocol::{ClientMsgId, Record, Registration};
use ratatui::crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};

use super::command::{self, HELP, Input};
use super::input::InputBox;
use super::login::{LoginForm, Request};
use super::people::{People, PeoplePane};
use super::scrollback::{Entry, Kind, Level, Scrollback};
use super::search::{Search, Step};
use crate::display::utc;
use crate::error::AppError;
use gc_client_core::ClientError;
use gc_client_core::config::Password;
use gc_client_core::error_chain;
use gc_client_core::event::{Ack, ConnState, Event, NoticeLevel, Rejection, Status};
use gc_client_core::trust::FirstContact;

/// Records loaded at a time when scrolling past the top.
pub const PAGE: u32 = 200;
/// Rows one mouse wheel step scrolls.
pub const WHEEL_ROWS: usize = 3;

/// The zone times are shown in: the local one, or a fixed offset (tests).
#[derive(Clone, Copy, Debug)]
pub enum Zone {
    /// The system's local time zone.
    Local,
    /// A fixed offset from UTC.
    Fixed(FixedOffset),
}

impl Zone {
    /// `t` in this zone.
    pub fn convert(self, t: DateTime<Utc>) -> DateTime<FixedOffset> {
        match self {
            Self::Local => t.with_timezone(&Local).fixed_offset(),
            Self::Fixed(z) => t.with_timezone(&z),
        }
    }
}

/// What the run loop must do for the app.
#[derive(Debug)]
pub enum Action {
    /// Start a client that logs in (and first registers, if `register`).
    Login {
        /// The account.
        user: String,
        /// Its password.
        password: Password,
        /// Create the account first.
        register: bool,
    },
    /// Trust the certificate the server presented on first contact, then log in as asked.
    Trust(FirstContact),
    /// Stop the client (a login failed or was cancelled).
    StopClient,
    /// The first login succeeded: remember the username.
    LoggedIn {
        /// The account.
        user: String,
    },
    /// Queue a message; report with [`App::queued`] or [`App::send_failed`].
    Send {
        /// The message body.
        body: String,
        /// What was typed (put back if it cannot be queued).
        typed: String,
    },
    /// Load records older than `before_id` (0: the newest), from the cache or else the server,
    /// into [`App::add_older`].
    LoadOlder {
        /// The oldest id held.
        before_id: u64,
    },
    /// Ask who is online.
    Who,
    /// Log in again now.
    Reconnect,
    /// Repaint the whole terminal (Ctrl+L).
    Redraw,
}

/// A message in the outbox, shown dimmed below the conversation until it comes back.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Its id.
    pub id: ClientMsgId,
    /// The text.
    pub text: String,
    /// When it was queued, in the display zone.
    pub queued: DateTime<FixedOffset>,
    /// Its record id, once the server acknowledged it.
    pub acked: Option<u64>,
}

/// Which screen is up; also how far the session got, as the screen only ever goes from the login
/// form to the conversation.
#[derive(Debug)]
pub enum Screen {
    /// Asking for the account: no login has reached `ACTIVE` yet.
    Login(Box<LoginForm>),
    /// The conversation, from the first `ACTIVE` on (it stays through reconnections; whether the
    /// client is active now is [`StatusView::state`]).
    Chat,
}

/// The connection, as the status bar shows it.
#[derive(Debug, Clone, Default)]
pub struct StatusView {
    /// State machine.
    pub state: ConnState,
    /// The server's name, once connected.
    pub server_name: Option<String>,
    /// Whether the server takes registrations.
    pub registration: Option<Registration>,
    /// When the last heartbeat came.
    pub last_heartbeat: Option<Instant>,
    /// Messages not yet acknowledged.
    pub outbox: usize,
}

/// Loading older messages, past the top of the conversation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Older {
    /// Scrolling past the top asks for a page.
    Idle,
    /// A page was asked for and has not come (from the cache or the server).
    Loading,
    /// The server had nothing older: the beginning is loaded, nothing more is asked.
    Exhausted,
}

impl Older {
    /// The page asked for came or will not come: another may be asked for. A beginning already
    /// reached stays reached.
    fn settle(&mut self) {
        if *self == Self::Loading {
            *self = Self::Idle;
        }
    }

    /// What was loaded is gone (`/clear`): the beginning is to be found again, unless a page is
    /// on its way.
    fn reopen(&mut self) {
        if *self == Self::Exhausted {
            *self = Self::Idle;
        }
    }
}

/// Everything the screen shows, and the input state.
#[derive(Debug)]
pub struct App {
    /// Login form or conversation.
    pub screen: Screen,
    /// The server as given on the command line (with its port when not the default).
    pub server: String,
    /// The account (once submitted).
    pub user: String,
    /// The conversation.
    pub log: Scrollback,
    /// What is being typed.
    pub input: InputBox,
    /// Who is online, as last heard.
    pub people: People,
    /// Whether the people pane is shown.
    pub people_pane: PeoplePane,
    /// The status bar's data.
    pub status: StatusView,
    /// Messages waiting to be acknowledged, oldest first.
    pub pending: Vec<Pending>,
    /// A search in progress.
    pub search: Option<Search>,
    /// Where loading older messages stands.
    older: Older,
    /// The message pane's size at the last draw (width, height), for paging.
    pub pane: Cell<(u16, u16)>,
    /// "Now" for the heartbeat age.
    pub now: Instant,
    zone: Zone,
    /// A fixed wall clock for notices (tests); `None`: the real one.
    clock: Option<DateTime<Utc>>,
    actions: Vec<Action>,
    /// The last key in the conversation was Esc: an Enter now adds a line (Esc as Alt).
    esc_pending: bool,
    /// The user asked to leave; never undone.
    quitting: bool,
    /// `/who` was typed: the next list of people is shown as a notice.
    who_wanted: bool,
    /// Ids shown from the cache at start: skipped if the client delivers them again.
    preloaded: HashSet<u64>,
    max_id: u64,
    /// After `/clear`: older messages are below this id.
    floor: Option<u64>,
}

impl App {
    /// An app showing the login form for `server`.
    pub fn new(server: impl Into<String>, zone: Zone) -> Self {
        Self {
            screen: Screen::Login(Box::default()),
            server: server.into(),
            user: String::new(),
            log: Scrollback::default(),
            input: InputBox::default(),
            people: People::Unknown,
            people_pane: PeoplePane::Auto,
            status: StatusView::default(),
            pending: Vec::new(),
            search: None,
            older: Older::Idle,
            pane: Cell::new((80, 20)),
            now: Instant::now(),
            zone,
            clock: None,
            actions: Vec::new(),
            esc_pending: false,
            quitting: false,
            who_wanted: false,
            preloaded: HashSet::new(),
            max_id: 0,
            floor: None,
        }
    }

    /// Uses a fixed wall clock for notices and outbox times (tests).
    pub fn with_clock(mut self, clock: DateTime<Utc>) -> Self {
        self.clock = Some(clock);
        self
    }

    /// Fills in the login form: the remembered or given username, and whether to register.
    pub fn prefill(&mut self, user: Option<&str>, register: bool) {
        if let Screen::Login(form) = &mut self.screen {
            form.prefill(user, register);
        }
    }

    /// Starts logging in with a password that was given (file or environment).
    pub fn auto_login(&mut self, user: &str, password: Password, register: bool) {
        if let Screen::Login(form) = &mut self.screen {
            form.start(user, register);
        }
        self.user = user.to_owned();
        self.actions.push(Action::Login {
            user: user.to_owned(),
            password,
            register,
        });
    }

    /// Switches to the conversation as `user` (the run loop does it on the first `ACTIVE`).
    pub fn enter_chat(&mut self, user: &str) {
        self.user = user.to_owned();
        self.screen = Screen::Chat;
    }

    /// Whether the user asked to leave.
    pub fn should_quit(&self) -> bool {
        self.quitting
    }

    /// Leaves: the run loop stops after the actions already asked for.
    fn quit(&mut self) {
        self.quitting = true;
    }

    /// Takes what the run loop has to do.
    pub fn take_actions(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.actions)
    }

    /// Updates "now" (heartbeat age).
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
    }

    fn wall(&self) -> DateTime<FixedOffset> {
        self.zone.convert(self.clock.unwrap_or_else(Utc::now))
    }

    /// Adds a notice to the conversation.
    pub fn notice(&mut self, level: Level, text: impl Into<String>) {
        let entry = Entry::new(
            self.wall(),
            Kind::Notice {
                level,
                text: text.into(),
            },
        );
        self.log.push(entry);
    }

    fn message_entry(&self, record: &Record) -> Entry {
        let user = record.username.as_str();
        let own = user.eq_ignore_ascii_case(&self.user);
        Entry::new(
            self.zone.convert(utc(record.timestamp)),
            Kind::Message {
                id: record.id,
                user: user.to_owned(),
                body: record.body.clone(),
                own,
                mention: !own && mentions(&record.body, &self.user),
            },
        )
    }

    /// Shows records from the cache at start (replacing whatever was shown).
    pub fn load_initial(&mut self, records: &[Record]) {
        self.log.clear();
        self.search = None;
        self.preloaded = records.iter().map(|r| r.id).collect();
        for record in records {
            self.max_id = self.max_id.max(record.id);
            let entry = self.message_entry(record);
            self.log.push(entry);
        }
    }

    /// Adds new records (ascending) at the bottom.
    pub fn add_records(&mut self, records: &[Record]) {
        for record in records {
            if !self.preloaded.is_empty() {
                if self.preloaded.contains(&record.id) {
                    continue;
                }
                // Past what the cache held: no more duplicates can come.
                self.preloaded.clear();
            }
            self.max_id = self.max_id.max(record.id);
            let entry = self.message_entry(record);
            self.log.push(entry);
        }
        let max = self.max_id;
        self.pending.retain(|p| p.acked.is_none_or(|id| id > max));
    }

    /// Adds older records (ascending) at the top; `from_server` with nothing new means the
    /// beginning of the conversation was reached.
    pub fn add_older(&mut self, records: &[Record], from_server: bool) {
        self.older.settle();
        let limit = self.log.oldest_id().or(self.floor);
        let older: Vec<Entry> = records
            .iter()
            .filter(|r| limit.is_none_or(|l| r.id < l))
            .map(|r| self.message_entry(r))
            .collect();
        if older.is_empty() {
            if from_server {
                self.older = Older::Exhausted;
            }
            return;
        }
        let n = older.len();
        self.log.prepend(older);
        if let Some(search) = &mut self.search {
            search.shift(n);
        }
    }

    /// The page asked for with [`Action::LoadOlder`] will not come (no client, or the request
    /// could not be sent): scrolling past the top may ask again.
    pub fn load_older_failed(&mut self) {
        self.older.settle();
    }

    /// Older messages are being fetched.
    pub fn loading_older(&self) -> bool {
        self.older == Older::Loading
    }

    /// The server had nothing older: the beginning of the conversation is loaded.
    pub fn history_done(&self) -> bool {
        self.older == Older::Exhausted
    }

    /// A message was queued with id `id`.
    pub fn queued(&mut self, id: ClientMsgId, text: String) {
        let queued = self.wall();
        self.pending.push(Pending {
            id,
            text,
            queued,
            acked: None,
        });
    }

    /// A message could not be queued: say why, and give the text back if nothing else was typed.
    pub fn send_failed(&mut self, typed: String, error: &ClientError) {
        self.notice(Level::Error, format!("not sent: {}", error_chain(error)));
        if self.input.is_empty() {
            self.input.set(typed);
        }
    }

    /// The client could not be started for a login.
    pub fn login_error(&mut self, error: &AppError) {
        if let Screen::Login(form) = &mut self.screen {
            form.start_failed(error_chain(error));
        }
    }

    /// The server was seen for the first time: the login form asks whether to trust what it
    /// presents.
    pub fn first_contact(&mut self, contact: FirstContact) {
        if let Screen::Login(form) = &mut self.screen {
            form.ask_trust(contact);
        }
    }

    /// A login is waiting for the server's certificate to be looked at.
    pub fn checking_server(&mut self) {
        if let Screen::Login(form) = &mut self.screen {
            form.progress(
                Level::Info,
                "First contact with this server: fetching its certificate…",
            );
        }
    }

    /// Copies the client's status snapshot.
    pub fn set_status(&mut self, status: &Status) {
        self.status.state = status.state;
        self.status.server_name.clone_from(&status.server_name);
        self.status.registration = status.registration;
        self.status.last_heartbeat = status.last_heartbeat;
        self.status.outbox = status.outbox_len;
    }

    // ─────────────────────────────── events ───────────────────────────────

    /// Handles something from the terminal.
    pub fn handle_terminal(&mut self, event: TermEvent) {
        match event {
            TermEvent::Key(key) if key.kind == KeyEventKind::Press => self.handle_key(key),
            TermEvent::Paste(text) => self.handle_paste(&text),
            TermEvent::Mouse(mouse) => self.handle_mouse(mouse),
            _ => {}
        }
    }

    /// Handles something from the client.
    pub fn handle_client(&mut self, event: Event) {
        match event {
            Event::State(state) => {
                self.status.state = state;
                // The first ACTIVE ends the login form; later ones are reconnections.
                if state == ConnState::Active && matches!(self.screen, Screen::Login(_)) {
                    let user = self.user.clone();
                    self.enter_chat(&user);
                    self.actions.push(Action::LoggedIn { user });
                }
            }
            Event::Records(records) => self.add_records(&records),
            Event::History { records, .. } => self.add_older(&records, true),
            Event::Presence { users, .. } => self.presence(users.iter().map(|u| u.to_string())),
            Event::Acked(Ack {
                client_msg_id, id, ..
            }) => {
                let max = self.max_id;
                self.pending.retain_mut(|p| {
                    if p.id == client_msg_id {
                        p.acked = Some(id);
                        id > max
                    } else {
                        true
                    }
                });
            }
            // `room`: the terminal UI logs in without rooms for now (run.rs), so it is #general.
            Event::Rejected(Rejection {
                client_msg_id,
                code,
                text,
                ..
            }) => {
                let message = self
                    .pending
                    .iter()
                    .position(|p| p.id == client_msg_id)
                    .map(|i| self.pending.remove(i).text);
                self.notice(
                    Level::Error,
                    format!("the server refused your message ({code}): {text}"),
                );
                if let Some(message) = message
                    && self.input.is_empty()
                {
                    self.input.set(message);
                }
            }
            Event::Notice { level, text } => {
                let level = match level {
                    NoticeLevel::Info => Level::Info,
                    NoticeLevel::Warning => Level::Warning,
                };
                if let Screen::Login(form) = &mut self.screen {
                    form.progress(level, &text);
                }
                self.notice(level, text);
            }
            Event::Fatal(error) => self.fatal(&error),
            // A refused `History` or `Who` (a notice, as before rooms came).
            Event::Refused(refusal) => self.notice(Level::Warning, refusal.to_string()),
            // Rooms (GC/3): not shown by the terminal UI yet, which logs in without them.
            Event::Version { .. }
            | Event::RoomPresence { .. }
            | Event::RoomList(_)
            | Event::RoomDone { .. } => {}
        }
    }

    fn fatal(&mut self, error: &ClientError) {
        if let Screen::Login(form) = &mut self.screen {
            form.client_failed(error, &self.user, self.status.registration);
            self.actions.push(Action::StopClient);
        } else {
            self.notice(
                Level::Error,
                format!(
                    "{}; the client stopped trying: /reconnect to try again",
                    error_chain(error)
                ),
            );
        }
    }

    fn presence(&mut self, users: impl Iterator<Item = String>) {
        for note in self.people.update(users.collect()) {
            self.notice(Level::Info, note);
        }
        if std::mem::take(&mut self.who_wanted) {
            let names = self.people.names();
            let text = format!("online ({}): {}", names.len(), names.join(", "));
            self.notice(Level::Info, text);
        }
    }

    /// Handles a pasted text: inserted as it is, newlines included; never sends.
    pub fn handle_paste(&mut self, text: &str) {
        self.esc_pending = false;
        match &mut self.screen {
            Screen::Login(form) => form.paste(text),
            Screen::Chat => self.input.insert(text),
        }
    }

    /// Handles the mouse: the wheel scrolls.
    pub fn handle_mouse(&mut self, mouse: MouseEvent) {
        if !matches!(self.screen, Screen::Chat) {
            return;
        }
        match mouse.kind {
            MouseEventKind::ScrollUp => self.scroll_up(WHEEL_ROWS),
            MouseEventKind::ScrollDown => self.scroll_down(WHEEL_ROWS),
            _ => {}
        }
    }

    /// Handles a key press.
    pub fn handle_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        if ctrl && matches!(key.code, KeyCode::Char('c' | 'd')) {
            if key.code == KeyCode::Char('c') || self.input.is_empty() {
                self.quit();
            }
            return;
        }
        if ctrl && key.code == KeyCode::Char('l') {
            self.actions.push(Action::Redraw);
            return;
        }
        if matches!(self.screen, Screen::Login(_)) {
            self.login_key(key);
        } else {
            self.chat_key(key);
        }
    }

    fn login_key(&mut self, key: KeyEvent) {
        let Screen::Login(form) = &mut self.screen else {
            return;
        };
        match form.key(key) {
            None => {}
            Some(Request::LogIn {
                user,
                password,
                register,
            }) => {
                self.user.clone_from(&user);
                self.actions.push(Action::Login {
                    user,
                    password,
                    register,
                });
            }
            Some(Request::Trust(contact)) => self.actions.push(Action::Trust(contact)),
            Some(Request::Cancel) => self.actions.push(Action::StopClient),
            Some(Request::Quit) => self.quit(),
        }
    }

    fn chat_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let esc_before = std::mem::take(&mut self.esc_pending);
        if let Some(step) = Step::for_key(&key) {
            self.search_step(step);
            return;
        }
        match key.code {
            KeyCode::Esc => {
                self.esc_pending = true;
                self.search = None;
            }
            KeyCode::Enter if esc_before || alt || key.modifiers.contains(KeyModifiers::SHIFT) => {
                self.input.insert_char('\n');
            }
            KeyCode::Char('j') if ctrl => self.input.insert_char('\n'),
            KeyCode::Enter => self.submit(),
            KeyCode::PageUp => {
                let rows = self.page_rows();
                self.scroll_up(rows);
            }
            KeyCode::PageDown => {
                let rows = self.page_rows();
                self.scroll_down(rows);
            }
            KeyCode::Home if !ctrl => {
                let (w, h) = self.pane.get();
                if self.log.scroll_to_top(w, usize::from(h)) {
                    self.load_older();
                }
            }
            KeyCode::End if !ctrl => self.log.scroll_to_bottom(),
            KeyCode::F(2) => {
                let wide = self.pane.get().0 >= 60;
                self.people_pane.toggle(wide);
            }
            KeyCode::Up => {
                self.input.up();
            }
            KeyCode::Down => {
                self.input.down();
            }
            KeyCode::Tab => self.complete_name(),
            _ => self.input.edit_key(key),
        }
    }

    fn page_rows(&self) -> usize {
        usize::from(self.pane.get().1.saturating_sub(1)).max(1)
    }

    fn scroll_up(&mut self, rows: usize) {
        let (w, h) = self.pane.get();
        if self.log.scroll_up(rows, w, usize::from(h)) {
            self.load_older();
        }
    }

    fn scroll_down(&mut self, rows: usize) {
        let w = self.pane.get().0;
        self.log.scroll_down(rows, w);
    }

    fn load_older(&mut self) {
        if self.older != Older::Idle {
            return;
        }
        let before_id = self
            .log
            .oldest_id()
            .or(self.floor)
            .unwrap_or(if self.max_id > 0 { self.max_id + 1 } else { 0 });
        if before_id == 1 {
            self.older = Older::Exhausted;
            return;
        }
        self.older = Older::Loading;
        self.actions.push(Action::LoadOlder { before_id });
    }

    /// Tab: completes the username being typed before the cursor.
    fn complete_name(&mut self) {
        let text = &self.input.text()[..self.input.cursor()];
        let start = text.rfind(|c: char| c.is_whitespace()).map_or(0, |i| i + 1);
        let prefix = &text[start..];
        if prefix.is_empty() {
            return;
        }
        let Some(name) = self.people.complete(prefix).map(str::to_owned) else {
            return;
        };
        let suffix = if start == 0 { ": " } else { " " };
        let typed = prefix.chars().count();
        for _ in 0..typed {
            self.input.backspace();
        }
        self.input.insert(&format!("{name}{suffix}"));
    }

    fn submit(&mut self) {
        let typed = self.input.text().to_owned();
        if typed.trim().is_empty() {
            return;
        }
        let parsed = command::parse(&typed);
        match parsed {
            Input::Usage(usage) => {
                self.notice(Level::Error, format!("usage: {usage}"));
                return;
            }
            Input::Unknown(name) => {
                self.notice(
                    Level::Error,
                    format!(
                        "unknown command {name}: /help lists the commands; to send a message \
                         that starts with /, type // (//{} sends {name}…)",
                        name.trim_start_matches('/')
                    ),
                );
                return;
            }
            _ => {}
        }
        self.input.remember(&typed);
        self.input.take();
        match parsed {
            Input::Message(body) => {
                self.log.scroll_to_bottom();
                self.actions.push(Action::Send { body, typed });
            }
            Input::Help => self.notice(Level::Info, HELP),
            Input::Quit => self.quit(),
            Input::Who => {
                self.who_wanted = true;
                self.actions.push(Action::Who);
            }
            Input::Search(query) => self.start_search(query),
            Input::Clear => {
                self.floor = self.log.oldest_id().or(self.floor).map(|_| self.max_id + 1);
                self.log.clear();
                self.search = None;
                self.older.reopen();
            }
            Input::Reconnect => {
                self.notice(Level::Info, "logging in again…");
                self.actions.push(Action::Reconnect);
            }
            Input::Usage(_) | Input::Unknown(_) => {}
        }
    }

    fn start_search(&mut self, query: String) {
        if query.is_empty() {
            self.search = None;
            return;
        }
        self.search = Search::find(&query, self.log.entries());
        if self.search.is_none() {
            self.notice(
                Level::Error,
                format!("no match for \"{query}\" in the loaded messages (PgUp loads older ones)"),
            );
            return;
        }
        self.show_match();
    }

    fn search_step(&mut self, step: Step) {
        let Some(search) = &mut self.search else {
            return;
        };
        search.step(step);
        self.show_match();
    }

    fn show_match(&mut self) {
        if let Some(i) = self.highlighted() {
            let (w, h) = self.pane.get();
            self.log.show(i, w, usize::from(h));
        }
    }

    /// The search match to highlight.
    pub fn highlighted(&self) -> Option<usize> {
        self.search.as_ref().and_then(Search::shown)
    }
}

/// Whether `body` names `user` as a word (not inside a longer name).
pub fn mentions(body: &str, user: &str) -> bool {
    if user.is_empty() {
        return false;
    }
    let is_name = |c: char| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-');
    let lower = body.to_ascii_lowercase();
    let name = user.to_ascii_lowercase();
    let mut from = 0;
    while let Some(i) = lower[from..].find(&name) {
        let start = from + i;
        let end = start + name.len();
        let before = lower[..start].chars().next_back();
        let after = lower[end..].chars().next();
        // A trailing dot ends a sentence, not a name.
        let after_ok = match after {
            None => true,
            Some('.') => lower[end + 1..].chars().next().is_none_or(|c| !is_name(c)),
            Some(c) => !is_name(c),
        };
        if before.is_none_or(|c| !is_name(c)) && after_ok {
            return true;
        }
        from = end;
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tui::login::Field;
    use chrono::TimeZone as _;
    use gc_protocol::ErrorCode;
    use gc_protocol::{Timestamp, Username};

    pub(crate) fn key(code: KeyCode) -> KeyEvent {
        KeyEvent::new(code, KeyModifiers::NONE)
    }

    fn with(code: KeyCode, modifiers: KeyModifiers) -> KeyEvent {
        KeyEvent::new(code, modifiers)
    }

    fn type_str(app: &mut App, s: &str) {
        for c in s.chars() {
            app.handle_key(key(KeyCode::Char(c)));
        }
    }

    fn chat() -> App {
        let mut app = App::new("127.0.0.1", Zone::Fixed(FixedOffset::east_opt(0).unwrap()))
            .with_clock(Utc.timestamp_opt(1_700_000_000, 0).unwrap());
        app.enter_chat("alice");
        app
    }

    fn record(id: u64, user: &str, body: &str) -> Record {
        Record {
            room: gc_protocol::Room::general(),
            id,
            timestamp: Timestamp::parse(&format!("{}", 1_700_000_000 + id)).unwrap(),
            username: Username::new(user).unwrap(),
            body: body.into(),
        }
    }

    fn sent(app: &mut App) -> Vec<String> {
        app.take_actions()
            .into_iter()
            .filter_map(|a| match a {
                Action::Send { body, .. } => Some(body),
                _ => None,
            })
            .collect()
    }

    fn last_notice(app: &App) -> String {
        app.log
            .entries()
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                Kind::Notice { text, .. } => Some(text.clone()),
                Kind::Message { .. } => None,
            })
            .unwrap_or_default()
    }

    #[test]
    fn enter_sends_and_alt_enter_or_esc_enter_add_a_line() {
        let mut app = chat();
        type_str(&mut app, "one");
        app.handle_key(with(KeyCode::Enter, KeyModifiers::ALT));
        type_str(&mut app, "two");
        app.handle_key(key(KeyCode::Esc));
        app.handle_key(key(KeyCode::Enter));
        type_str(&mut app, "three");
        app.handle_key(with(KeyCode::Char('j'), KeyModifiers::CONTROL));
        type_str(&mut app, "four");
        assert_eq!(app.input.text(), "one\ntwo\nthree\nfour");
        assert!(sent(&mut app).is_empty());
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(sent(&mut app), ["one\ntwo\nthree\nfour"]);
        assert!(app.input.is_empty());
        // Esc followed by something else is forgotten.
        app.handle_key(key(KeyCode::Esc));
        type_str(&mut app, "x");
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(sent(&mut app), ["x"]);
    }

    #[test]
    fn paste_keeps_newlines_and_never_sends() {
        let mut app = chat();
        app.handle_terminal(TermEvent::Paste("line 1\r\nline 2\n".into()));
        assert_eq!(app.input.text(), "line 1\nline 2\n");
        assert!(sent(&mut app).is_empty());
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(sent(&mut app), ["line 1\nline 2\n"]);
    }

    #[test]
    fn blank_input_is_not_sent() {
        let mut app = chat();
        app.handle_key(key(KeyCode::Enter));
        type_str(&mut app, "   ");
        app.handle_key(key(KeyCode::Enter));
        assert!(sent(&mut app).is_empty());
    }

    #[test]
    fn up_and_down_recall_sent_messages() {
        let mut app = chat();
        for m in ["first", "second"] {
            type_str(&mut app, m);
            app.handle_key(key(KeyCode::Enter));
        }
        type_str(&mut app, "draft");
        app.handle_key(key(KeyCode::Up));
        assert_eq!(app.input.text(), "second");
        app.handle_key(key(KeyCode::Up));
        assert_eq!(app.input.text(), "first");
        app.handle_key(key(KeyCode::Down));
        app.handle_key(key(KeyCode::Down));
        assert_eq!(app.input.text(), "draft");
    }

    #[test]
    fn ctrl_w_and_ctrl_u_edit() {
        let mut app = chat();
        type_str(&mut app, "hello there world");
        app.handle_key(with(KeyCode::Char('w'), KeyModifiers::CONTROL));
        assert_eq!(app.input.text(), "hello there ");
        app.handle_key(with(KeyCode::Char('u'), KeyModifiers::CONTROL));
        assert_eq!(app.input.text(), "");
    }

    #[test]
    fn commands() {
        let mut app = chat();
        type_str(&mut app, "/me waves");
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(sent(&mut app), ["/me waves"]);
        type_str(&mut app, "//slash");
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(sent(&mut app), ["/slash"]);

        type_str(&mut app, "/nope");
        app.handle_key(key(KeyCode::Enter));
        assert!(sent(&mut app).is_empty(), "unknown commands are never sent");
        assert_eq!(app.input.text(), "/nope", "kept for fixing");
        assert!(last_notice(&app).contains("unknown command /nope"));
        app.input.take();

        type_str(&mut app, "/help");
        app.handle_key(key(KeyCode::Enter));
        assert!(last_notice(&app).contains("/search TEXT"));

        type_str(&mut app, "/who");
        app.handle_key(key(KeyCode::Enter));
        assert!(matches!(app.take_actions()[..], [Action::Who]));
        app.handle_client(Event::Presence {
            version: 1,
            users: vec![
                Username::new("bob").unwrap(),
                Username::new("alice").unwrap(),
            ],
        });
        assert_eq!(last_notice(&app), "online (2): alice, bob");

        type_str(&mut app, "/reconnect");
        app.handle_key(key(KeyCode::Enter));
        assert!(matches!(app.take_actions()[..], [Action::Reconnect]));

        type_str(&mut app, "/clear");
        app.handle_key(key(KeyCode::Enter));
        assert!(app.log.is_empty());

        type_str(&mut app, "/quit");
        app.handle_key(key(KeyCode::Enter));
        assert!(app.should_quit());
    }

    #[test]
    fn search_moves_between_matches() {
        let mut app = chat();
        let records: Vec<Record> = (1..=200)
            .map(|i| {
                record(
                    i,
                    "bob",
                    &format!("msg {i} {}", if i % 40 == 0 { "needle" } else { "" }),
                )
            })
            .collect();
        app.add_records(&records);
        type_str(&mut app, "/search NEEDLE");
        app.handle_key(key(KeyCode::Enter));
        let s = app.search.clone().unwrap();
        assert_eq!(s.matches.len(), 5);
        assert_eq!(app.highlighted(), Some(199));
        app.handle_key(with(KeyCode::Char('p'), KeyModifiers::CONTROL));
        assert_eq!(app.highlighted(), Some(159));
        assert!(!app.log.following(), "scrolled to the older match");
        app.handle_key(with(KeyCode::Char('n'), KeyModifiers::CONTROL));
        app.handle_key(with(KeyCode::Char('n'), KeyModifiers::CONTROL));
        assert_eq!(app.highlighted(), Some(199));
        app.handle_key(key(KeyCode::Esc));
        assert!(app.search.is_none());
        type_str(&mut app, "/search absent");
        app.handle_key(key(KeyCode::Enter));
        assert!(last_notice(&app).contains("no match"));
    }

    #[test]
    fn outbox_entries_leave_when_their_record_arrives() {
        let mut app = chat();
        let id = ClientMsgId::random().unwrap();
        app.queued(id.clone(), "hi".into());
        assert_eq!(app.pending.len(), 1);
        app.handle_client(Event::Acked(Ack {
            client_msg_id: id,
            id: 7,
            timestamp: Timestamp::parse("1700000007").unwrap(),
        }));
        assert_eq!(
            app.pending.len(),
            1,
            "still shown until the record is there"
        );
        app.add_records(&[record(7, "alice", "hi")]);
        assert!(app.pending.is_empty());

        // Record first, then the acknowledgement.
        let id = ClientMsgId::random().unwrap();
        app.queued(id.clone(), "again".into());
        app.add_records(&[record(8, "alice", "again")]);
        app.handle_client(Event::Acked(Ack {
            client_msg_id: id,
            id: 8,
            timestamp: Timestamp::parse("1700000008").unwrap(),
        }));
        assert!(app.pending.is_empty());
    }

    #[test]
    fn rejected_text_comes_back_to_the_input() {
        let mut app = chat();
        let id = ClientMsgId::random().unwrap();
        app.queued(id.clone(), "too big".into());
        app.handle_client(Event::Rejected(Rejection {
            client_msg_id: id,
            room: gc_protocol::Room::general(),
            code: ErrorCode::TooLarge,
            text: "message too large".into(),
        }));
        assert!(app.pending.is_empty());
        assert_eq!(app.input.text(), "too big");
        assert!(last_notice(&app).contains("refused"));
    }

    #[test]
    fn cached_records_are_not_shown_twice() {
        let mut app = chat();
        app.load_initial(&[record(1, "bob", "a"), record(2, "bob", "b")]);
        app.add_records(&[record(2, "bob", "b"), record(3, "bob", "c")]);
        let ids: Vec<u64> = app
            .log
            .entries()
            .iter()
            .filter_map(Entry::message_id)
            .collect();
        assert_eq!(ids, [1, 2, 3]);
    }

    #[test]
    fn scrolling_past_the_top_asks_for_older_records_once() {
        let mut app = chat();
        app.add_records(
            &(100..=150)
                .map(|i| record(i, "bob", "x"))
                .collect::<Vec<_>>(),
        );
        app.handle_key(key(KeyCode::PageUp));
        assert!(app.take_actions().is_empty());
        for _ in 0..5 {
            app.handle_key(key(KeyCode::PageUp));
        }
        let actions = app.take_actions();
        assert!(
            matches!(actions[..], [Action::LoadOlder { before_id: 100 }]),
            "{actions:?}"
        );
        app.add_older(
            &(50..100)
                .map(|i| record(i, "bob", "old"))
                .collect::<Vec<_>>(),
            false,
        );
        assert_eq!(app.log.oldest_id(), Some(50));
        app.handle_key(key(KeyCode::Home));
        assert!(matches!(
            app.take_actions()[..],
            [Action::LoadOlder { before_id: 50 }]
        ));
        app.add_older(&[], true);
        app.handle_key(key(KeyCode::Home));
        assert!(app.take_actions().is_empty(), "the beginning was reached");
        app.handle_key(key(KeyCode::End));
        assert!(app.log.following());
    }

    #[test]
    fn a_failed_load_or_clear_lets_scrolling_ask_again() {
        let mut app = chat();
        app.add_records(
            &(100..=150)
                .map(|i| record(i, "bob", "x"))
                .collect::<Vec<_>>(),
        );
        app.handle_key(key(KeyCode::Home));
        assert!(app.loading_older());
        assert!(matches!(
            app.take_actions()[..],
            [Action::LoadOlder { before_id: 100 }]
        ));
        app.handle_key(key(KeyCode::Home));
        assert!(app.take_actions().is_empty(), "one request at a time");
        app.load_older_failed();
        assert!(!app.loading_older());
        app.handle_key(key(KeyCode::Home));
        assert!(matches!(
            app.take_actions()[..],
            [Action::LoadOlder { before_id: 100 }]
        ));
        app.add_older(&[], true);
        assert!(app.history_done() && !app.loading_older());
        app.load_older_failed();
        assert!(
            app.history_done(),
            "a late failure does not forget the beginning"
        );
        type_str(&mut app, "/clear");
        app.handle_key(key(KeyCode::Enter));
        assert!(!app.history_done());
        app.handle_key(key(KeyCode::Home));
        assert!(matches!(
            app.take_actions()[..],
            [Action::LoadOlder { before_id: 151 }]
        ));
    }

    #[test]
    fn mouse_wheel_scrolls() {
        let mut app = chat();
        app.add_records(&(1..=100).map(|i| record(i, "bob", "x")).collect::<Vec<_>>());
        app.handle_mouse(MouseEvent {
            kind: MouseEventKind::ScrollUp,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        });
        assert!(!app.log.following());
        app.handle_mouse(MouseEvent {
            kind: MouseEventKind::ScrollDown,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        });
        assert!(app.log.following());
    }

    #[test]
    fn mentions_are_whole_names() {
        assert!(mentions("hi alice!", "alice"));
        assert!(mentions("ALICE: look", "alice"));
        assert!(mentions("thanks alice.", "alice"));
        assert!(!mentions("malice", "alice"));
        assert!(!mentions("alice_2 there", "alice"));
        assert!(!mentions("alice.b", "alice"));
        assert!(!mentions("anything", ""));
    }

    #[test]
    fn login_form_flow() {
        let mut app = App::new("srv", Zone::Local);
        type_str(&mut app, "bob");
        app.handle_key(key(KeyCode::Enter));
        assert!(app.take_actions().is_empty());
        type_str(&mut app, "secret");
        app.handle_key(key(KeyCode::Enter));
        let actions = app.take_actions();
        let [
            Action::Login {
                user,
                password,
                register,
            },
        ] = &actions[..]
        else {
            panic!("{actions:?}");
        };
        assert_eq!(
            (user.as_str(), password.expose(), *register),
            ("bob", "secret", false)
        );
        // Keys are ignored while logging in; Esc cancels.
        type_str(&mut app, "zz");
        let Screen::Login(form) = &app.screen else {
            panic!()
        };
        assert!(form.busy);
        assert_eq!(form.user.text(), "bob");

        // The server does not know bob and takes registrations: offer to create the account.
        app.status.registration = Some(Registration::Open);
        app.handle_client(Event::Fatal(ClientError::Refused {
            during: "the login",
            code: ErrorCode::UnknownUser,
            text: "no such user".into(),
        }));
        assert!(matches!(app.take_actions()[..], [Action::StopClient]));
        let Screen::Login(form) = &app.screen else {
            panic!()
        };
        assert!(form.register && !form.busy);
        assert_eq!(form.focused(), Field::Repeat);
        type_str(&mut app, "wrong");
        app.handle_key(key(KeyCode::Enter));
        assert!(app.take_actions().is_empty(), "passwords differ");
        type_str(&mut app, "secret");
        app.handle_key(key(KeyCode::Enter));
        let actions = app.take_actions();
        assert!(
            matches!(&actions[..], [Action::Login { register: true, .. }]),
            "{actions:?}"
        );
        app.handle_client(Event::State(ConnState::Active));
        assert!(matches!(app.screen, Screen::Chat));
        assert!(matches!(&app.take_actions()[..], [Action::LoggedIn { user }] if user == "bob"));
    }

    #[test]
    fn only_the_first_active_is_a_login() {
        let mut app = App::new("srv", Zone::Local);
        app.auto_login("bob", Password::new("pw"), false);
        assert!(matches!(app.take_actions()[..], [Action::Login { .. }]));
        app.handle_client(Event::State(ConnState::Connecting));
        assert!(matches!(app.screen, Screen::Login(_)));
        app.handle_client(Event::State(ConnState::Active));
        assert!(matches!(&app.take_actions()[..], [Action::LoggedIn { user }] if user == "bob"));
        // A reconnection: the conversation stays, the username is not remembered again.
        app.handle_client(Event::State(ConnState::Disconnected));
        app.handle_client(Event::State(ConnState::Active));
        assert!(matches!(app.screen, Screen::Chat));
        assert!(app.take_actions().is_empty());
    }

    #[test]
    fn wrong_password_clears_the_password_field() {
        let mut app = App::new("srv", Zone::Local);
        app.prefill(Some("bob"), false);
        type_str(&mut app, "bad");
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(app.take_actions().len(), 1);
        app.handle_client(Event::Fatal(ClientError::Refused {
            during: "the login",
            code: ErrorCode::Auth,
            text: "wrong password".into(),
        }));
        let Screen::Login(form) = &app.screen else {
            panic!()
        };
        assert!(form.password.is_empty());
        assert_eq!(form.focused(), Field::Password);
        assert!(form.message.as_ref().unwrap().1.contains("wrong password"));
        app.handle_key(key(KeyCode::Esc));
        assert!(app.should_quit());
    }

    #[test]
    fn presence_changes_become_notices() {
        let mut app = chat();
        let names = |n: &[&str]| n.iter().map(|u| Username::new(*u).unwrap()).collect();
        app.handle_client(Event::Presence {
            version: 1,
            users: names(&["alice", "bob"]),
        });
        assert!(app.log.is_empty(), "the first list is not news");
        app.handle_client(Event::Presence {
            version: 2,
            users: names(&["alice", "carol"]),
        });
        let notes: Vec<&str> = app.log.entries().iter().map(Entry::searchable).collect();
        assert_eq!(notes, ["carol joined", "bob left"]);
        assert_eq!(app.people.names(), ["alice", "carol"]);
    }

    #[test]
    fn tab_completes_names() {
        let mut app = chat();
        app.people = People::Known(vec!["bob".into(), "carol".into()]);
        type_str(&mut app, "ca");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "carol: ");
        type_str(&mut app, "ask b");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "carol: ask bob ");
    }
}
