//! The application state and what every input does to it. The [`App`] does no I/O: keys, pastes,
//! mouse events and client events go in; what needs the client or the terminal comes out as
//! [`Action`]s for the run loop ([`super::run_loop`]), and the screen is drawn from the state by
//! [`super::ui`]. So all of it is tested without a terminal or a server.
//!
//! Here: the dispatcher and the conversations (records routed to their room's view, the outbox,
//! scrolling and loading older pages, switching rooms, commands). It hands the login form's keys
//! to [`super::login`], `/search` to [`super::search`], the views to [`super::rooms`] and the
//! lists of people to [`super::people`], and turns what they ask for into actions.

use std::cell::Cell;
use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::{Duration, Instant};

use chrono::{DateTime, FixedOffset, Local, Utc};
use gc_protocol::files::FileNotice;
use gc_protocol::{
    ClientMsgId, ContentHash, ListedKind, ListedRole, Record, Registration, Room, RoomKind,
    Username,
};
use ratatui::crossterm::event::{
    Event as TermEvent, KeyCode, KeyEvent, KeyEventKind, KeyModifiers, MouseEvent, MouseEventKind,
};

use super::command::{self, HELP, Input};
use super::files::{self, Transfer, Transfers, human_size};
use super::input::InputBox;
use super::login::{LoginForm, Request};
use super::look::Look;
use super::marks::Marks;
use super::notify::{Alerts, Notification};
use super::passwd::{Outcome, PasswdPrompt};
use super::people::{People, SidePane};
use super::rooms::{Membership, Older, RoomView, Rooms, puts_out};
use super::scrollback::{Entry, Kind, Level, Scrollback};
use super::search::{Search, Step};
use super::urls;
use crate::display::{sanitize, utc};
use crate::error::AppError;
use gc_client_core::ClientError;
use gc_client_core::config::Password;
use gc_client_core::control::Command;
use gc_client_core::error_chain;
use gc_client_core::event::{
    AccountChange, Ack, ConnState, Event, NoticeLevel, Refusal, Rejection, Status,
};
use gc_client_core::rooms::{NO_ROOMS, RoomInfo, RoomRequest, parse_room};
use gc_client_core::trust::FirstContact;
use gc_client_core::{Direction, TransferEvent};
use gc_plugin::CommandInfo;

/// Records loaded at a time when scrolling past the top.
pub const PAGE: u32 = 200;
/// Rows one mouse wheel step scrolls.
pub const WHEEL_ROWS: usize = 3;
/// From this width on, the side panes are shown unless toggled off (F2, F3).
pub const SIDE_PANES_WIDTH: u16 = 80;

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
        /// The room or direct conversation it goes into.
        room: Room,
        /// The message body.
        body: String,
        /// What was typed (put back if it cannot be queued).
        typed: String,
    },
    /// Load `room`'s records older than `before_id` (0: the newest), from the cache or else the
    /// server, into [`App::add_older`].
    LoadOlder {
        /// Whose records.
        room: Room,
        /// The oldest id held.
        before_id: u64,
    },
    /// Ask who is online in a room (`#general`: who is online at all).
    Who {
        /// The room.
        room: Room,
    },
    /// Ask for the list of rooms (the account's, and the public ones).
    Rooms,
    /// Ask the server to change a room (join, part, kick, …).
    Room(RoomRequest),
    /// Be away with this message (`Some`), or back (`None`).
    Away(Option<String>),
    /// Change the password.
    Passwd {
        /// The password now.
        current: Password,
        /// The one to have.
        new: Password,
    },
    /// Follow the presence of these rooms (those shown in the room list).
    Watch(Vec<Room>),
    /// Log in again now.
    Reconnect,
    /// Repaint the whole terminal (Ctrl+L).
    Redraw,
    /// Keep the ignore list (lower case) in the settings file.
    SaveIgnored(Vec<String>),
    /// Share the file at `path` in `room` (GC/5); report with [`App::transfer_started`] or a
    /// notice.
    Upload {
        /// The conversation.
        room: Room,
        /// The file (`~` expanded; a relative path is from the working directory).
        path: PathBuf,
    },
    /// Save the shared file `hash` into the download directory, under a free path for `name`
    /// (or where a download of it was cut short, in this run or an earlier one: its `.part` is
    /// still there, and it goes on from it); report with [`App::transfer_started`] or a notice.
    Download {
        /// The content.
        hash: ContentHash,
        /// Its name, from its line (made safe for a path by the client).
        name: String,
        /// Its size, from its line.
        size: u64,
    },
    /// Cancel transfer `id` (Esc).
    CancelTransfer(u64),
    /// Run a plugin's command; report what it asks for with [`App::queued`],
    /// [`App::send_failed`], [`App::command_failed`] or a notice.
    Command {
        /// The room shown, where it was typed.
        room: Room,
        /// Its name (lower case, no slash).
        name: String,
        /// What was typed after it.
        args: String,
        /// The whole line (put back if the command fails).
        typed: String,
    },
}

/// A message in the outbox, shown dimmed below its room's conversation until it comes back.
#[derive(Clone, Debug)]
pub struct Pending {
    /// Its id.
    pub id: ClientMsgId,
    /// The room it was written in.
    pub room: Room,
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
    /// The conversations, from the first `ACTIVE` on (they stay through reconnections; whether
    /// the client is active now is [`StatusView::state`]).
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
    /// The instance the client is on (`host2 (2/3)`), when there are several to move between.
    pub instance: Option<String>,
    /// Whether the server serves rooms (GC/3): `None` until a version check answered.
    pub rooms: Option<bool>,
    /// The server's newest id when the session began: what it held for the session then (the
    /// backlog) goes up to it.
    pub login_latest: Option<u64>,
    /// The client has received the session's backlog (see [`Status::caught_up`]).
    pub caught_up: bool,
    /// The highest id the client holds.
    pub last_id: u64,
}

/// A typed line, understood and checked: what to do with it.
#[derive(Debug)]
enum Plan {
    Send {
        room: Room,
        body: String,
    },
    Help,
    Quit,
    Who,
    Search(String),
    Urls,
    Clear,
    Reconnect,
    /// Show view `i` (a room joined already).
    Show(usize),
    /// Open the direct conversation `room` (titled `title`) and send `text` into it if any.
    Direct {
        room: Room,
        title: String,
        text: String,
    },
    /// Close a view without asking the server (a direct conversation, a room left already).
    Close(Room),
    ShowTopic,
    Rooms,
    Request(RoomRequest),
    Away(Option<String>),
    Passwd,
    Ignore(Username),
    Unignore(Username),
    ListIgnored,
    Upload {
        room: Room,
        path: PathBuf,
    },
    Download(FileNotice),
    /// A plugin's command.
    Plugin {
        room: Room,
        name: String,
        args: String,
    },
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
    /// The conversations, one view per room, and which is shown.
    pub rooms: Rooms,
    /// What is being typed.
    pub input: InputBox,
    /// Whether the people pane is shown (F2).
    pub people_pane: SidePane,
    /// Whether the room list is shown (F3).
    pub room_pane: SidePane,
    /// The status bar's data.
    pub status: StatusView,
    /// Messages waiting to be acknowledged, oldest first.
    pub pending: Vec<Pending>,
    /// A search in progress, in the view shown.
    pub search: Option<Search>,
    /// The message pane's size at the last draw (width, height), for paging.
    pub pane: Cell<(u16, u16)>,
    /// The terminal's width at the last draw, for the side panes' toggles.
    pub width: Cell<u16>,
    /// URLs in the message pane are written as OSC 8 hyperlinks (setting `hyperlinks`).
    pub hyperlinks: bool,
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
    /// `/who` was typed in this room: its next list of people is shown as a notice.
    who_wanted: Option<Room>,
    /// `/rooms` was typed: the next room list is shown as a notice.
    rooms_wanted: bool,
    /// Rooms the account was told it is invited to (each said once).
    invited: HashSet<Room>,
    /// The rooms whose presence the client was last asked to follow.
    watched: Vec<Room>,
    /// The rooms of the last room list (for Tab after `/join`).
    listed: Vec<Room>,
    /// The Tab completion that the next Tab carries on, if nothing else came in between.
    completion: Option<Completion>,
    /// Who went off the online list, and when: "left" waits for [`LEAVE_GRACE`].
    leaving: Vec<(String, Instant)>,
    /// While a session's backlog is coming (from ACTIVE until what the server held at login is
    /// shown): the notices stamped with the time they came (the client's "logged in as …", who
    /// joined or left meanwhile), each with the room it is for. They are shown after the
    /// backlog, whose records are older, not above it (see [`App::backlog_shown`]).
    held: Option<Vec<(Room, Entry)>>,
    /// The highest record id shown.
    max_id: u64,
    /// How the message pane looks (settings `timestamp-format`, `theme`).
    look: Arc<Look>,
    /// The bell, title and notify command: what new messages call for.
    pub alerts: Alerts,
    /// The read markers: the newest record seen in each conversation.
    marks: Marks,
    /// The markers changed since they were last taken to be saved.
    marks_changed: bool,
    /// `/passwd` asking for the passwords, in place of the input line.
    pub passwd: Option<PasswdPrompt>,
    /// Who is away (GC/4), by lower-case name: their messages.
    away: HashMap<String, String>,
    /// The commands the client plugins add (none shadowing a built-in one).
    plugin_commands: Vec<CommandInfo>,
    /// Whose messages are not shown (`/ignore`), lower case, sorted.
    ignored: Vec<String>,
    /// Keep the records shown for the conversation logs (setting `log-conversations`).
    pub log_shown: bool,
    /// The records shown since last taken, for the conversation logs.
    shown: Vec<Record>,
    /// The file transfers running (GC/5), oldest first.
    pub transfers: Transfers,
}

/// The most URLs `/urls` lists (the newest).
pub const URLS_LISTED: usize = 50;

/// How long someone is off the online list before "left" is said (see `App::say_who_left`).
const LEAVE_GRACE: Duration = Duration::from_secs(10);

/// Entries of the room shown that Tab looks back over to find who wrote last.
const RECENT_SCAN: usize = 200;

/// A Tab completion in progress.
#[derive(Debug)]
struct Completion {
    /// Where the completed word starts in the input.
    start: usize,
    /// What Tab puts in, each with what follows it (`bob: `, `#dev `), in the order offered.
    candidates: Vec<String>,
    /// Several commands (or files) fit: the first Tab lists them rather than picking one.
    list_first: bool,
    /// Completing a path after `/upload`: the first Tab also puts in what all candidates
    /// share, and one candidate (a directory) is not cycled, so the next Tab goes into it.
    path: bool,
    /// The candidate in place (`None`: none yet).
    index: Option<usize>,
    /// The input as this completion left it: if it is not so at the next Tab, that starts anew.
    left_text: String,
    left_cursor: usize,
}

impl App {
    /// An app showing the login form for `server`.
    pub fn new(server: impl Into<String>, zone: Zone) -> Self {
        Self {
            screen: Screen::Login(Box::default()),
            server: server.into(),
            user: String::new(),
            rooms: Rooms::default(),
            input: InputBox::default(),
            people_pane: SidePane::Auto,
            room_pane: SidePane::Auto,
            status: StatusView::default(),
            pending: Vec::new(),
            search: None,
            pane: Cell::new((80, 20)),
            width: Cell::new(100),
            hyperlinks: true,
            now: Instant::now(),
            zone,
            clock: None,
            actions: Vec::new(),
            esc_pending: false,
            quitting: false,
            who_wanted: None,
            rooms_wanted: false,
            invited: HashSet::new(),
            watched: Vec::new(),
            listed: Vec::new(),
            completion: None,
            leaving: Vec::new(),
            held: None,
            max_id: 0,
            look: Arc::default(),
            alerts: Alerts::default(),
            marks: Marks::new(),
            marks_changed: false,
            passwd: None,
            away: HashMap::new(),
            plugin_commands: Vec::new(),
            ignored: Vec::new(),
            log_shown: false,
            shown: Vec::new(),
            transfers: Transfers::default(),
        }
    }

    /// The records shown since last taken (with `log_shown`), in the order shown.
    pub fn take_shown(&mut self) -> Vec<Record> {
        std::mem::take(&mut self.shown)
    }

    /// Whose messages are not shown (the settings file's `ignore`), before
    /// [`App::load_initial`]. Names are compared without case; your own is never ignored.
    pub fn set_ignored(&mut self, names: &[String]) {
        let mut ignored: Vec<String> = names
            .iter()
            .map(|n| n.to_ascii_lowercase())
            .filter(|n| !n.is_empty())
            .collect();
        ignored.sort();
        ignored.dedup();
        self.ignored = ignored;
    }

    /// Whose messages are not shown, lower case, sorted.
    pub fn ignored(&self) -> &[String] {
        &self.ignored
    }

    /// Whether `record` is a message of someone ignored (never a server notice, never yours).
    fn hides(&self, record: &Record) -> bool {
        !self.ignored.is_empty() && !record.username.is_reserved() && {
            let name = record.username.as_str().to_ascii_lowercase();
            name != self.user.to_ascii_lowercase() && self.ignored.binary_search(&name).is_ok()
        }
    }

    /// The away message of `name` (GC/4), if they are away.
    pub fn away_of(&self, name: &str) -> Option<&str> {
        self.away
            .get(&name.to_ascii_lowercase())
            .map(String::as_str)
    }

    /// The commands the client's plugins add (at each client start, after
    /// [`App::load_initial`]): listed in `/help`, completed by Tab, run when typed. One with the
    /// name of a built-in command (or an alias) is refused, with a warning in the log and the
    /// pane: it would never run.
    pub fn set_plugin_commands(&mut self, commands: Vec<CommandInfo>) {
        let (refused, kept): (Vec<_>, Vec<_>) = commands
            .into_iter()
            .partition(|c| command::BUILTIN_NAMES.contains(&c.name.as_str()));
        for c in refused {
            let text = format!(
                "plugin {}: its command /{} is refused: gc-client has a built-in /{}",
                sanitize(&c.plugin),
                c.name,
                c.name
            );
            tracing::warn!("{text}");
            self.notice(Level::Warning, text);
        }
        self.plugin_commands = kept;
    }

    /// The commands the plugins add, as kept.
    pub fn plugin_commands(&self) -> &[CommandInfo] {
        &self.plugin_commands
    }

    /// `/help`: the built-in commands, then those the plugins add, then the keys.
    fn help_text(&self) -> String {
        if self.plugin_commands.is_empty() {
            return HELP.to_owned();
        }
        let (commands, keys) = HELP.split_once("\nkeys:").unwrap_or((HELP, ""));
        let mut text = commands.to_owned();
        text.push_str("\nplugin commands:");
        for c in &self.plugin_commands {
            let usage = format!("/{} {}", c.name, sanitize(&c.args));
            text.push_str(&format!(
                "\n  {:<25} {} ({})",
                usage.trim_end(),
                sanitize(&c.help),
                sanitize(&c.plugin)
            ));
        }
        if !keys.is_empty() {
            text.push_str("\nkeys:");
            text.push_str(keys);
        }
        text
    }

    /// The commands (built-in, then the plugins') that `prefix` (`/` and the start of a name)
    /// begins.
    fn commands_starting(&self, prefix: &str) -> Vec<String> {
        let lower = prefix.to_ascii_lowercase();
        let mut found: Vec<String> = command::commands_starting(prefix)
            .into_iter()
            .map(str::to_owned)
            .collect();
        for c in &self.plugin_commands {
            let name = format!("/{}", c.name);
            if name.starts_with(&lower) && !found.contains(&name) {
                found.push(name);
            }
        }
        found
    }

    /// A plugin command the user typed (`/shout hi`), if `typed` is one.
    fn plugin_plan(&self, typed: &str) -> Option<Plan> {
        let (name, args) = command::name_and_args(typed)?;
        self.plugin_commands
            .iter()
            .any(|c| c.name == name)
            .then(|| Plan::Plugin {
                room: self.view().room.clone(),
                name,
                args: args.to_owned(),
            })
    }

    /// A plugin command failed (refused, or its plugin failed): say so, and give the line
    /// back if nothing else was typed.
    pub fn command_failed(&mut self, typed: String, name: &str, plugin: &str, reason: &str) {
        self.notice(
            Level::Error,
            format!(
                "/{name} (plugin {}): {}",
                sanitize(plugin),
                sanitize(reason)
            ),
        );
        if self.input.is_empty() {
            self.input.set(typed);
        }
    }

    /// What a plugin command had to say: shown, each line made harmless.
    pub fn plugin_notice(&mut self, text: &str) {
        let safe: Vec<String> = text.lines().map(sanitize).collect();
        self.notice(Level::Info, safe.join("\n"));
    }

    /// Draws the message pane as `look` says (the time column, the colours).
    pub fn set_look(&mut self, look: Look) {
        self.look = Arc::new(look);
        self.rooms = Rooms::with_look(&self.user, Arc::clone(&self.look), Marks::new());
    }

    /// How the message pane looks.
    pub fn look(&self) -> &Look {
        &self.look
    }

    /// The read markers of the last run (from the file beside the cache): each view draws its
    /// "new since you left" line after its marker, and the markers go on from there. Before
    /// [`App::load_initial`].
    pub fn set_marks(&mut self, marks: Marks) {
        self.marks = marks;
        self.marks_changed = false;
    }

    /// The read markers, if they changed since last taken (to be saved).
    pub fn take_changed_marks(&mut self) -> Option<&Marks> {
        std::mem::take(&mut self.marks_changed).then_some(&self.marks)
    }

    /// The read markers.
    pub fn marks(&self) -> &Marks {
        &self.marks
    }

    /// The view shown has been seen when it is on screen and at its bottom: its read marker
    /// moves up to its newest record. (The run loop calls this before each draw.)
    pub fn mark_seen(&mut self) {
        if !matches!(self.screen, Screen::Chat) {
            return;
        }
        let view = self.rooms.current();
        if !view.log.following() || view.newest == 0 {
            return;
        }
        let marker = self.marks.entry(view.room.clone()).or_insert(0);
        if view.newest > *marker {
            *marker = view.newest;
            self.marks_changed = true;
        }
    }

    /// The terminal's title: `gc`, the messages unread in the views not shown (`(3)`), how many
    /// of them name you or are direct (`[1 mention]`), and the view shown.
    pub fn title(&self) -> String {
        if !matches!(self.screen, Screen::Chat) {
            return "gc".to_owned();
        }
        let (unread, mentions) = self
            .rooms
            .views()
            .iter()
            .fold((0, 0), |(u, m), v| (u + v.unread, m + v.mentions));
        let mut title = "gc".to_owned();
        if unread > 0 {
            title.push_str(&format!(" ({unread})"));
        }
        if mentions > 0 {
            let s = if mentions == 1 { "" } else { "s" };
            title.push_str(&format!(" [{mentions} mention{s}]"));
        }
        title.push(' ');
        title.push_str(&sanitize(&self.view().title));
        title
    }

    /// The clock the bell's rate limit counts with: the real one, or [`App::now`] with a fixed
    /// wall clock (tests).
    fn instant(&self) -> Instant {
        if self.clock.is_some() {
            self.now
        } else {
            Instant::now()
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

    /// Takes what the run loop has to do. The rooms whose presence is followed are brought up
    /// to date with the room list first.
    pub fn take_actions(&mut self) -> Vec<Action> {
        self.sync_watch();
        std::mem::take(&mut self.actions)
    }

    /// Updates "now" (heartbeat age, who left for good).
    pub fn set_now(&mut self, now: Instant) {
        self.now = now;
        self.say_who_left();
    }

    fn wall(&self) -> DateTime<FixedOffset> {
        self.zone.convert(self.clock.unwrap_or_else(Utc::now))
    }

    /// Says "… left" for those gone from the online list for [`LEAVE_GRACE`]: a client that
    /// reconnects (a server restart, a network blip) is back within it, and its leaving and
    /// joining again are not news.
    fn say_who_left(&mut self) {
        let now = self.now;
        let (gone, waiting): (Vec<_>, Vec<_>) = std::mem::take(&mut self.leaving)
            .into_iter()
            .partition(|(_, since)| now.saturating_duration_since(*since) >= LEAVE_GRACE);
        self.leaving = waiting;
        for (name, _) in gone {
            self.session_notice(0, Level::Info, format!("{} left", sanitize(&name)));
        }
    }

    /// A message just written by someone the online list does not have yet: they are online
    /// (they just sent it), and the list learns so only at the next heartbeat's presence
    /// version, up to a second later, which put their "joined" after their first words. Said
    /// now, before the message, and the later list then finds nothing new. Only for a message
    /// written in the last minute (not history, not a backlog), and only once the list is known.
    fn arrived_by_message(&mut self, record: &Record) {
        const RECENT_SECS: i64 = 60;
        if record.username.is_reserved()
            || record.username.as_str().eq_ignore_ascii_case(&self.user)
        {
            return;
        }
        let age = self.wall().with_timezone(&Utc) - utc(record.timestamp);
        if age.num_seconds().abs() > RECENT_SECS {
            return;
        }
        let name = record.username.as_str();
        let People::Known(online) = &mut self.rooms.general_mut().people else {
            return;
        };
        if online.iter().any(|u| u.eq_ignore_ascii_case(name)) {
            return;
        }
        online.push(name.to_owned());
        online.sort_by_key(|u| u.to_ascii_lowercase());
        match self.leaving.iter().position(|(n, _)| n == name) {
            // Back before their "left" was said.
            Some(i) => {
                self.leaving.remove(i);
            }
            None => self.notice_at(0, Level::Info, format!("{} joined", sanitize(name))),
        }
    }

    /// The messages and notices of the view shown.
    pub fn log(&self) -> &Scrollback {
        &self.rooms.current().log
    }

    /// Who is online in the view shown.
    pub fn people(&self) -> &People {
        &self.rooms.current().people
    }

    /// The view shown.
    pub fn view(&self) -> &RoomView {
        self.rooms.current()
    }

    /// Whether the server is known to serve rooms.
    pub fn has_rooms(&self) -> bool {
        self.status.rooms == Some(true)
    }

    /// Adds a notice to the view shown.
    pub fn notice(&mut self, level: Level, text: impl Into<String>) {
        let i = self.rooms.index();
        self.notice_at(i, level, text);
    }

    /// `/urls`: the URLs in the loaded messages of the room shown, numbered, newest last (at
    /// most [`URLS_LISTED`]), each on a line of its own so it can be selected and copied.
    fn urls_listing(&self) -> String {
        let view = self.view();
        let mut found: Vec<(String, &str)> = Vec::new();
        for entry in view.log.entries() {
            let (text, who) = match &entry.kind {
                Kind::Message { user, body, .. } => (body.as_str(), user.as_str()),
                Kind::System { text, .. } => (text.as_str(), "server"),
                // The client's own words: earlier listings would repeat themselves.
                Kind::Notice { .. } => continue,
            };
            for range in urls::find(text) {
                let when = entry.time.format("%H:%M");
                found.push((format!("{who} {when}"), &text[range]));
            }
        }
        if found.is_empty() {
            return format!("no URLs in the loaded messages of {}", view.title);
        }
        let total = found.len();
        let skipped = total.saturating_sub(URLS_LISTED);
        let mut out = format!("URLs in {} (newest last):", view.title);
        if skipped > 0 {
            out.push_str(&format!(" the last {URLS_LISTED} of {total}"));
        }
        for (n, (from, url)) in found.iter().enumerate().skip(skipped) {
            out.push_str(&format!("\n{:>3}  {url}  ({from})", n + 1));
        }
        out
    }

    /// A notice of what happened to the session or the people online (stamped now): to view
    /// `i` at once, or after the backlog while a session's backlog is coming.
    fn session_notice(&mut self, i: usize, level: Level, text: String) {
        let room = self.rooms.views().get(i).map(|v| v.room.clone());
        let now = self.wall();
        match (&mut self.held, room) {
            (Some(held), Some(room)) => {
                held.push((room, Entry::new(now, Kind::Notice { level, text })));
            }
            _ => self.notice_at(i, level, text),
        }
    }

    /// A session began (ACTIVE): what the server held for it when it logged in, the backlog,
    /// comes now, and its records are older than the session. The notices of now wait for it
    /// (when the status says where it ends).
    fn session_began(&mut self) {
        self.show_held();
        if self.status.login_latest.is_some() {
            self.held = Some(Vec::new());
            self.check_backlog();
        }
    }

    /// Whether the session's backlog is shown: the server's newest id at login is (the records
    /// up to it are all there, in id order), or the client says it received the whole backlog
    /// (with rooms the newest id may be of a room the account is not in, which never comes) and
    /// every record it holds is shown (the status runs ahead of the events).
    fn backlog_shown(&self) -> bool {
        let status = &self.status;
        status
            .login_latest
            .is_some_and(|latest| self.max_id >= latest)
            || (status.caught_up && status.last_id <= self.max_id)
    }

    /// Shows the held notices once the backlog is shown.
    fn check_backlog(&mut self) {
        if self.held.is_some() && self.backlog_shown() {
            self.show_held();
        }
    }

    /// Shows the held notices, with the time they came, in their rooms (closed meanwhile: the
    /// one shown), and holds no more.
    fn show_held(&mut self) {
        for (room, entry) in self.held.take().unwrap_or_default() {
            let i = self.rooms.find(&room).unwrap_or_else(|| self.rooms.index());
            if let Some(view) = self.rooms.at_mut(i) {
                view.log.push(entry);
            }
        }
    }

    /// Adds a notice to view `i`.
    fn notice_at(&mut self, i: usize, level: Level, text: impl Into<String>) {
        let entry = Entry::new(
            self.wall(),
            Kind::Notice {
                level,
                text: text.into(),
            },
        );
        if let Some(view) = self.rooms.at_mut(i) {
            view.log.push(entry);
        }
    }

    /// A record as shown: a message, or the server's notice when it is from `System`.
    fn entry_for(&self, record: &Record) -> Entry {
        let time = self.zone.convert(utc(record.timestamp));
        if record.username.is_reserved() {
            return Entry::new(
                time,
                Kind::System {
                    id: record.id,
                    text: record.body.clone(),
                },
            );
        }
        let user = record.username.as_str();
        let own = user.eq_ignore_ascii_case(&self.user);
        Entry::new(
            time,
            Kind::Message {
                id: record.id,
                user: user.to_owned(),
                body: record.body.clone(),
                own,
                mention: !own && mentions(&record.body, &self.user),
            },
        )
    }

    /// Shows records from the cache at start (replacing whatever was shown): each room's, in
    /// ascending order per room, each into its view (`#general` first, the others in the order
    /// they come). The server's room list confirms them or drops those the account left.
    pub fn load_initial(&mut self, records: &[Record]) {
        self.rooms = Rooms::with_look(&self.user, Arc::clone(&self.look), self.marks.clone());
        self.search = None;
        for record in records {
            self.max_id = self.max_id.max(record.id);
            if self.hides(record) {
                // Kept in the cache; its view pages below it (a conversation of nothing but
                // ignored messages is not opened).
                if let Some(view) = self.rooms.get_mut(&record.room) {
                    view.hid(record.id);
                }
                continue;
            }
            let entry = self.entry_for(record);
            let (i, _) = self
                .rooms
                .open(&record.room, &self.user, Membership::Cached);
            if let Some(view) = self.rooms.at_mut(i) {
                if view.has_record(record.id) {
                    continue;
                }
                if record.username.is_reserved() {
                    view.topic_from_notice(&record.body);
                }
                view.saw(&record.username);
                view.push(entry, true);
                if self.log_shown {
                    self.shown.push(record.clone());
                }
            }
        }
    }

    /// Adds new records (ascending) at the bottom of their rooms' views; a record of a room
    /// without a view (a new direct conversation, a room joined elsewhere) opens one at the end
    /// of the list. Records of views not shown count as unread.
    pub fn add_records(&mut self, records: &[Record]) {
        let mut joined = Vec::new();
        let mut put_out = Vec::new();
        let now = self.instant();
        for record in records {
            if self.held.is_some()
                && self
                    .status
                    .login_latest
                    .is_some_and(|latest| record.id > latest)
            {
                // Written after the login: the backlog is in.
                self.show_held();
            }
            self.max_id = self.max_id.max(record.id);
            if self.hides(record) {
                // Not shown, not counted, no bell: kept in the cache (the client stored it).
                if let Some(view) = self.rooms.get_mut(&record.room)
                    && view.history_after.is_some_and(|id| record.id >= id)
                {
                    view.history_after = None;
                    let i = self.rooms.find(&record.room).unwrap_or(0);
                    joined.push(i);
                }
                continue;
            }
            self.arrived_by_message(record);
            let out = record.username.is_reserved() && puts_out(&record.body, &self.user);
            if out && self.rooms.find(&record.room).is_none() {
                // The notice of a part whose view is closed already: nothing to reopen.
                continue;
            }
            let entry = self.entry_for(record);
            let (i, _) = self
                .rooms
                .open(&record.room, &self.user, Membership::Joined);
            let shown = i == self.rooms.index();
            if let Some(view) = self.rooms.at_mut(i) {
                if view.has_record(record.id) {
                    continue;
                }
                // Delivered: the account is in the room, unless this says it is no more.
                view.membership = Membership::Joined;
                if out {
                    view.membership = Membership::Left;
                    view.people = People::Unknown;
                    put_out.push(i);
                }
                if record.username.is_reserved() {
                    view.topic_from_notice(&record.body);
                }
                // Written by someone else after the login: news now (the backlog of a login
                // is what was missed, not what is happening).
                let live = self
                    .status
                    .login_latest
                    .is_some_and(|latest| record.id > latest);
                if live
                    && let Kind::Message {
                        own: false,
                        mention,
                        ..
                    } = &entry.kind
                {
                    let mention = *mention || view.is_direct();
                    self.alerts.message(now, mention, || Notification {
                        sender: record.username.to_string(),
                        room: record.room.to_string(),
                        text: record.body.clone(),
                    });
                }
                view.saw(&record.username);
                view.push(entry, shown);
                if self.log_shown {
                    self.shown.push(record.clone());
                }
                if view.history_after.is_some_and(|id| record.id >= id) {
                    view.history_after = None;
                    joined.push(i);
                }
            }
        }
        for i in joined {
            self.load_older_at(i);
        }
        for i in put_out {
            let still_out = self
                .rooms
                .views()
                .get(i)
                .filter(|v| v.membership == Membership::Left);
            if let Some(room) = still_out.map(|v| v.room.clone()) {
                self.notice_at(
                    i,
                    Level::Info,
                    format!("/join {room} to go back in, /part to close this view"),
                );
            }
        }
        let max = self.max_id;
        self.pending.retain(|p| p.acked.is_none_or(|id| id > max));
        self.check_backlog();
    }

    /// Adds older records of `room` (ascending) at the top of its view; `from_server` with
    /// nothing new means the beginning of the conversation was reached.
    pub fn add_older(&mut self, room: &Room, records: &[Record], from_server: bool) {
        let Some(i) = self.rooms.find(room) else {
            return; // closed meanwhile
        };
        let (older, hidden): (Vec<Entry>, Option<u64>) = {
            let view = &self.rooms.views()[i];
            let limit = view.oldest_loaded();
            let new: Vec<&Record> = records
                .iter()
                .filter(|r| limit.is_none_or(|l| r.id < l))
                .collect();
            let hidden = new.iter().filter(|r| self.hides(r)).map(|r| r.id).min();
            let older = new
                .into_iter()
                .filter(|r| !self.hides(r))
                .map(|r| self.entry_for(r))
                .collect();
            (older, hidden)
        };
        let shown = i == self.rooms.index();
        let Some(view) = self.rooms.at_mut(i) else {
            return;
        };
        view.older.settle();
        if let Some(id) = hidden {
            view.hid(id);
        }
        if older.is_empty() {
            if from_server && hidden.is_none() {
                view.older = Older::Exhausted;
            }
            return;
        }
        let n = older.len();
        if let Some(newest) = older.iter().filter_map(Entry::message_id).max() {
            view.newest = view.newest.max(newest);
        }
        view.log.prepend(older);
        if shown && let Some(search) = &mut self.search {
            search.shift(n);
        }
    }

    /// The page of `room` asked for with [`Action::LoadOlder`] will not come (no client, or the
    /// request could not be sent): scrolling past the top may ask again.
    pub fn load_older_failed(&mut self, room: &Room) {
        if let Some(view) = self.rooms.get_mut(room) {
            view.older.settle();
        }
    }

    /// Older messages of the view shown are being fetched.
    pub fn loading_older(&self) -> bool {
        self.view().older == Older::Loading
    }

    /// The server had nothing older: the beginning of the view shown is loaded.
    pub fn history_done(&self) -> bool {
        self.view().older == Older::Exhausted
    }

    /// A message for `room` was queued with id `id`.
    pub fn queued(&mut self, id: ClientMsgId, room: Room, text: String) {
        let queued = self.wall();
        self.pending.push(Pending {
            id,
            room,
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
        self.status.instance = status
            .instance
            .as_ref()
            .filter(|i| i.has_alternatives())
            .map(|i| format!("on {i}"));
        self.status.login_latest = status.login_latest;
        self.status.caught_up = status.caught_up;
        self.status.last_id = status.last_id;
        if let Some(rooms) = status.rooms {
            self.set_rooms(rooms);
        }
        self.check_backlog();
    }

    /// Whether the server serves rooms. Without them (an older server) only `#general` is
    /// shown: views of other rooms (from a cache of a newer server) are closed.
    fn set_rooms(&mut self, available: bool) {
        if self.status.rooms == Some(available) {
            return;
        }
        self.status.rooms = Some(available);
        if !available {
            let others: Vec<Room> = self.rooms.views()[1..]
                .iter()
                .map(|v| v.room.clone())
                .collect();
            for room in &others {
                self.rooms.remove(room);
            }
            if !others.is_empty() {
                self.search = None;
            }
        }
    }

    /// Asks the client to follow the presence of the rooms listed, when they changed; and, once
    /// logged in, who is in the rooms new to the list (later changes come by themselves).
    fn sync_watch(&mut self) {
        if !self.has_rooms() {
            return;
        }
        let rooms = self.rooms.watched();
        if rooms == self.watched {
            return;
        }
        if self.status.state == ConnState::Active {
            for room in rooms.iter().filter(|r| !self.watched.contains(r)) {
                self.actions.push(Action::Who { room: room.clone() });
            }
        }
        self.watched.clone_from(&rooms);
        self.actions.push(Action::Watch(rooms));
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
                if state == ConnState::Active {
                    self.session_began();
                } else {
                    // A session that ended before its backlog came: its notices before what
                    // follows.
                    self.show_held();
                }
                self.status.state = state;
                // The first ACTIVE ends the login form; later ones are reconnections.
                if state == ConnState::Active && matches!(self.screen, Screen::Login(_)) {
                    let user = self.user.clone();
                    self.enter_chat(&user);
                    self.actions.push(Action::LoggedIn { user });
                }
                if state == ConnState::Active && self.has_rooms() {
                    // Which rooms the account is in now (joins, kicks while away).
                    self.actions.push(Action::Rooms);
                }
            }
            Event::Version { rooms, .. } => self.set_rooms(rooms),
            Event::Records(records) => self.add_records(&records),
            Event::History { room, records, .. } => self.add_older(&room, &records, true),
            Event::Presence { users, .. } => {
                self.presence(users.iter().map(ToString::to_string));
                if self.has_rooms() {
                    // Presence changes with every join, part, kick and ban too: one may be ours.
                    self.actions.push(Action::Rooms);
                }
            }
            Event::RoomPresence { room, users, .. } => self.room_presence(&room, &users),
            Event::Away(list) => {
                self.away = list
                    .into_iter()
                    .map(|(user, message)| (user.key(), message))
                    .collect();
            }
            Event::AccountDone(change) => {
                let text = match change {
                    AccountChange::Away(message) if message.is_empty() => {
                        "you are away (/back when you are back)".to_owned()
                    }
                    AccountChange::Away(message) => {
                        format!(
                            "you are away: {} (/back when you are back)",
                            sanitize(&message)
                        )
                    }
                    AccountChange::Back => "you are back".to_owned(),
                    AccountChange::Password => {
                        "password changed: the next logins use the new one".to_owned()
                    }
                };
                self.notice(Level::Info, text);
            }
            Event::RoomList(list) => self.room_list(&list),
            Event::RoomDone { request, notice_id } => self.room_done(request, notice_id),
            Event::Refused(refusal) => self.refused(&refusal),
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
            Event::Rejected(Rejection {
                client_msg_id,
                room,
                code,
                text,
            }) => {
                let message = self
                    .pending
                    .iter()
                    .position(|p| p.id == client_msg_id)
                    .map(|i| self.pending.remove(i).text);
                let place = if room == self.view().room {
                    String::new()
                } else {
                    format!(
                        " in {}",
                        self.rooms.find(&room).map_or_else(
                            || room.to_string(),
                            |i| self.rooms.views()[i].title.clone(),
                        )
                    )
                };
                self.notice(
                    Level::Error,
                    format!(
                        "the server refused your message{place} ({code}): {}",
                        sanitize(&text)
                    ),
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
                // One line from the core, sanitised there already; and here again, as the
                // scrollback would take a line break for a new row.
                let text = sanitize(&text);
                if let Screen::Login(form) = &mut self.screen {
                    form.progress(level, &text);
                }
                if level == Level::Info {
                    // "logged in as …": after the backlog it came before.
                    let i = self.rooms.index();
                    self.session_notice(i, level, text);
                    self.check_backlog();
                } else {
                    self.notice(level, text);
                }
            }
            Event::Fatal(error) => self.fatal(&error),
            Event::Transfer(event) => self.transfer(event),
        }
    }

    /// A file transfer moved on: its progress goes to the status area, its end into the
    /// conversation it was started in.
    fn transfer(&mut self, event: TransferEvent) {
        let now = self.instant();
        // (the transfer, how it is said, what)
        let (id, level, text) = match event {
            TransferEvent::Progress {
                id,
                direction,
                name,
                done,
                total,
                hashing,
            } => {
                match self.transfers.get_mut(id) {
                    Some(t) => t.progress(done, total, hashing, now),
                    None => {
                        let mut t =
                            Transfer::new(id, direction, name, total, self.view().room.clone());
                        t.progress(done, total, hashing, now);
                        self.transfers.start(t);
                    }
                }
                return;
            }
            TransferEvent::Uploaded {
                id,
                name,
                size,
                resumed_from,
                ..
            } => (
                id,
                Level::Info,
                format!(
                    "shared {} ({}{})",
                    sanitize(&name),
                    human_size(size),
                    files::resumed_at(resumed_from, size)
                ),
            ),
            TransferEvent::Downloaded {
                id,
                path,
                size,
                resumed_from,
                ..
            } => (
                id,
                Level::Info,
                format!(
                    "saved {} ({}{}) to {}",
                    sanitize(&path.file_name().unwrap_or_default().to_string_lossy()),
                    human_size(size),
                    files::resumed_at(resumed_from, size),
                    sanitize(&path.display().to_string())
                ),
            ),
            TransferEvent::Failed {
                id,
                direction,
                name,
                error,
            } => (
                id,
                Level::Error,
                format!(
                    "{} of {} failed: {}",
                    way(direction),
                    sanitize(&name),
                    sanitize(&gc_client_core::error_chain(&error))
                ),
            ),
            TransferEvent::Cancelled {
                id,
                direction,
                name,
            } => (
                id,
                Level::Info,
                format!(
                    "{} of {} cancelled (starting it again goes on from where it stopped)",
                    way(direction),
                    sanitize(&name)
                ),
            ),
        };
        let ended = self.transfers.end(id);
        let i = ended
            .and_then(|t| self.rooms.find(&t.room))
            .unwrap_or(self.rooms.index());
        self.notice_at(i, level, text);
    }

    /// A transfer the run loop started for an [`Action::Upload`] or [`Action::Download`]: its
    /// progress is shown from now on.
    pub fn transfer_started(&mut self, transfer: Transfer) {
        self.transfers.start(transfer);
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

    /// Who is online at all: `#general`'s people; logins and logouts are notices there.
    fn presence(&mut self, users: impl Iterator<Item = String>) {
        let changes = self.rooms.general_mut().people.update(users.collect());
        for name in changes.joined {
            match self.leaving.iter().position(|(n, _)| *n == name) {
                // Back before their "left" was said: a reconnect, not news.
                Some(i) => {
                    self.leaving.remove(i);
                }
                None => {
                    self.session_notice(0, Level::Info, format!("{} joined", sanitize(&name)));
                }
            }
        }
        let now = self.now;
        self.leaving
            .extend(changes.left.into_iter().map(|name| (name, now)));
        self.say_who_left();
        if self.who_wanted.as_ref().is_some_and(Room::is_general) {
            self.who_wanted = None;
            let names = self.rooms.views()[0].people.names();
            let shown: Vec<String> = names.iter().map(|n| self.with_away(n)).collect();
            let text = format!("online ({}): {}", names.len(), shown.join(", "));
            self.notice(Level::Info, text);
        }
    }

    /// A name as `/who` lists it: `bob (away: at lunch)` when away.
    fn with_away(&self, name: &str) -> String {
        match self.away_of(name) {
            Some("") => format!("{name} (away)"),
            Some(message) => format!("{name} (away: {})", sanitize(message)),
            None => name.to_owned(),
        }
    }

    /// Who is online in a room (its joins and parts are the server's notices, so the list
    /// changes quietly).
    fn room_presence(&mut self, room: &Room, users: &[Username]) {
        let Some(view) = self.rooms.get_mut(room) else {
            return;
        };
        view.people
            .update(users.iter().map(ToString::to_string).collect());
        if self.who_wanted.as_ref() == Some(room) {
            self.who_wanted = None;
            let (title, names) = (view.title.clone(), view.people.names().to_vec());
            let shown: Vec<String> = names.iter().map(|n| self.with_away(n)).collect();
            let text = format!("online in {title} ({}): {}", names.len(), shown.join(", "));
            self.notice(Level::Info, text);
        }
    }

    /// The server's room list: views for the rooms the account is in, topics, rooms it was put
    /// out of, invitations; shown as a notice after `/rooms`.
    fn room_list(&mut self, list: &[RoomInfo]) {
        self.listed = list.iter().map(|r| r.room.clone()).collect();
        let mut member: HashSet<&Room> = HashSet::new();
        let mut invitations = Vec::new();
        for info in list {
            if info.is_member() || info.kind == ListedKind::Direct {
                member.insert(&info.room);
                let (i, _) = self.rooms.open(&info.room, &self.user, Membership::Joined);
                if let Some(view) = self.rooms.at_mut(i) {
                    view.membership = Membership::Joined;
                    if info.kind != ListedKind::Direct {
                        view.topic.clone_from(&info.topic);
                    }
                }
            } else if info.role == ListedRole::Invited && self.invited.insert(info.room.clone()) {
                invitations.push(info.room.clone());
            }
        }
        // Rooms the list does not have the account in: from the cache (left long ago, dropped
        // unless shown), or put out of since (kept to read, marked).
        let current = self.rooms.index();
        let mut gone = Vec::new();
        let mut put_out = Vec::new();
        for (i, view) in self.rooms.views_mut().iter_mut().enumerate() {
            if view.room.is_general()
                || view.room.kind() == RoomKind::Direct
                || member.contains(&view.room)
            {
                continue;
            }
            match view.membership {
                Membership::Cached if i != current => gone.push(view.room.clone()),
                Membership::Cached | Membership::Joined => {
                    view.membership = Membership::Left;
                    view.people = People::Unknown;
                    put_out.push(i);
                }
                Membership::Left => {}
            }
        }
        for i in put_out {
            let name = self.rooms.views()[i].room.clone();
            self.notice_at(
                i,
                Level::Warning,
                format!(
                    "you are not in {name} any more (put out, or left elsewhere): /join {name} \
                     to go back, /part to close it"
                ),
            );
        }
        for room in gone {
            self.rooms.remove(&room);
        }
        for room in invitations {
            self.notice(
                Level::Info,
                format!("you are invited to {room}: /join {room} to go in"),
            );
        }
        if std::mem::take(&mut self.rooms_wanted) {
            let text = rooms_text(list, &self.user);
            self.notice(Level::Info, text);
        }
    }

    /// The server did a room request of this UI.
    fn room_done(&mut self, request: RoomRequest, notice_id: u64) {
        match &request {
            RoomRequest::Join { room } | RoomRequest::Create { room, .. } => {
                self.invited.remove(room);
                let (i, _) = self.rooms.open(room, &self.user, Membership::Joined);
                if let Some(view) = self.rooms.at_mut(i) {
                    view.membership = Membership::Joined;
                    // Scrolling up may find more now that the account is in.
                    view.older.reopen();
                    if notice_id > view.newest {
                        view.history_after = Some(notice_id);
                    }
                }
                self.show(i);
                // Its topic and kind.
                self.actions.push(Action::Rooms);
            }
            RoomRequest::Part { room } => {
                if self.rooms.find(room) == Some(self.rooms.index()) {
                    self.search = None;
                }
                self.rooms.remove(room);
            }
            RoomRequest::Topic { room, topic } => {
                if let Some(view) = self.rooms.get_mut(room) {
                    view.topic.clone_from(topic);
                }
            }
            _ => {}
        }
        if notice_id == 0 {
            self.notice(
                Level::Info,
                format!("nothing to change: {request} is so already"),
            );
        }
    }

    /// A request was refused: the server's words, in the view shown.
    fn refused(&mut self, refusal: &Refusal) {
        match &refusal.command {
            Command::History { room, .. } => {
                self.load_older_failed(room);
                self.notice(Level::Warning, refusal.to_string());
            }
            Command::Who { room } => {
                let room = room.clone().unwrap_or_else(Room::general);
                if self.who_wanted.as_ref() == Some(&room) {
                    self.who_wanted = None;
                    self.notice(Level::Warning, refusal.to_string());
                } else {
                    tracing::debug!("{refusal}");
                }
            }
            Command::Rooms => {
                if std::mem::take(&mut self.rooms_wanted) {
                    self.notice(Level::Warning, refusal.to_string());
                } else {
                    tracing::debug!("{refusal}");
                }
            }
            Command::Room(_) | Command::Away { .. } | Command::Passwd(_) => {
                self.notice(Level::Error, refusal.to_string());
            }
        }
    }

    /// Handles a pasted text: inserted as it is, inner newlines included, less its final line
    /// ends; never sends.
    pub fn handle_paste(&mut self, text: &str) {
        self.esc_pending = false;
        self.completion = None;
        match &mut self.screen {
            Screen::Login(form) => form.paste(text),
            Screen::Chat => match &mut self.passwd {
                Some(prompt) => prompt.paste(text),
                None => self.input.paste(text),
            },
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
        if self.passwd.is_some() {
            self.passwd_key(key);
            return;
        }
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        let esc_before = std::mem::take(&mut self.esc_pending);
        if !matches!(key.code, KeyCode::Tab | KeyCode::BackTab) {
            // Any other key ends a Tab cycle: the next Tab completes afresh.
            self.completion = None;
        }
        if let Some(step) = Step::for_key(&key) {
            // Ctrl+P / Ctrl+N step through a search's matches; otherwise they switch rooms.
            if self.search.is_some() {
                self.search_step(step);
            } else {
                let i = self.rooms.neighbour(step == Step::Newer);
                self.show(i);
            }
            return;
        }
        match key.code {
            KeyCode::Char(c @ '1'..='9') if alt && !ctrl => {
                if let Some(n) = c.to_digit(10).and_then(|n| usize::try_from(n).ok()) {
                    self.show(n - 1);
                }
            }
            // Esc ends a search; else, with nothing typed (where Esc Enter would only start the
            // line with a line break), it cancels the newest transfer; else it is Alt for Enter.
            KeyCode::Esc => {
                if self.search.is_none()
                    && self.input.is_empty()
                    && let Some(id) = self.transfers.cancel_newest()
                {
                    self.actions.push(Action::CancelTransfer(id));
                } else {
                    self.esc_pending = true;
                    self.search = None;
                }
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
                if self
                    .rooms
                    .current_mut()
                    .log
                    .scroll_to_top(w, usize::from(h))
                {
                    self.load_older();
                }
            }
            KeyCode::End if !ctrl => self.rooms.current_mut().log.scroll_to_bottom(),
            KeyCode::F(2) => {
                let wide = self.width.get() >= SIDE_PANES_WIDTH;
                self.people_pane.toggle(wide);
            }
            KeyCode::F(3) => {
                let auto = self.width.get() >= SIDE_PANES_WIDTH && self.has_rooms();
                self.room_pane.toggle(auto);
            }
            KeyCode::Up => {
                self.input.up();
            }
            KeyCode::Down => {
                self.input.down();
            }
            KeyCode::Tab => self.complete(true),
            KeyCode::BackTab => self.complete(false),
            _ => self.input.edit_key(key),
        }
    }

    /// Shows view `i` (if there is one): a search ends, and a view with fewer entries than the
    /// pane has rows loads older messages, as scrolling up would.
    fn show(&mut self, i: usize) {
        if i >= self.rooms.views().len() {
            return;
        }
        if self.rooms.switch(i) {
            self.search = None;
        }
        let rows = usize::from(self.pane.get().1);
        let view = self.rooms.current();
        if view.membership != Membership::Left
            && view.history_after.is_none()
            && view.log.len() < rows
        {
            self.load_older();
        }
    }

    fn page_rows(&self) -> usize {
        usize::from(self.pane.get().1.saturating_sub(1)).max(1)
    }

    fn scroll_up(&mut self, rows: usize) {
        let (w, h) = self.pane.get();
        if self
            .rooms
            .current_mut()
            .log
            .scroll_up(rows, w, usize::from(h))
        {
            self.load_older();
        }
    }

    fn scroll_down(&mut self, rows: usize) {
        let w = self.pane.get().0;
        self.rooms.current_mut().log.scroll_down(rows, w);
    }

    /// Asks for a page of older records of the view shown, unless one is on its way or the
    /// beginning was reached.
    fn load_older(&mut self) {
        self.load_older_at(self.rooms.index());
    }

    /// Asks for a page of older records of view `i`.
    fn load_older_at(&mut self, i: usize) {
        let Some(view) = self.rooms.at_mut(i) else {
            return;
        };
        if view.older != Older::Idle {
            return;
        }
        let before_id =
            view.oldest_loaded()
                .unwrap_or(if view.newest > 0 { view.newest + 1 } else { 0 });
        if before_id == 1 {
            view.older = Older::Exhausted;
            return;
        }
        view.older = Older::Loading;
        let room = view.room.clone();
        self.actions.push(Action::LoadOlder { room, before_id });
    }

    /// Tab (`forward`) or Shift+Tab: completes the word before the cursor: a command at the
    /// start of a line, a room after `/join` or `/part` (or a word starting with `#`), else the
    /// name of someone online here or anywhere. Pressed again (nothing else in between), it puts
    /// the next candidate (Shift+Tab: the previous one) in place of the last, round the list.
    /// When several commands fit, the first Tab lists them and puts none in yet.
    fn complete(&mut self, forward: bool) {
        let resumed = self.completion.take().filter(|c| {
            // Anything that changed the input since (a paste, a reply coming back) ends it too.
            c.left_text == self.input.text() && c.left_cursor == self.input.cursor()
        });
        let mut cycle = match resumed {
            Some(cycle) => cycle,
            None => {
                let Some(mut cycle) = self.new_completion() else {
                    return;
                };
                if cycle.list_first && cycle.candidates.len() > 1 {
                    let text = if cycle.path {
                        // What all of them share goes in at once, as a shell does.
                        let shared = files::common_prefix(&cycle.candidates).to_owned();
                        self.input.replace_before_cursor(cycle.start, &shared);
                        self.input.text().clone_into(&mut cycle.left_text);
                        cycle.left_cursor = self.input.cursor();
                        files_listing(&cycle.candidates)
                    } else {
                        let names: Vec<&str> =
                            cycle.candidates.iter().map(|c| c.trim_end()).collect();
                        format!("commands: {}", names.join(" "))
                    };
                    self.notice(Level::Info, text);
                    self.completion = Some(cycle);
                    return;
                }
                cycle
            }
        };
        let n = cycle.candidates.len();
        let i = match (cycle.index, forward) {
            (None, true) => 0,
            (None, false) => n - 1,
            (Some(i), true) => (i + 1) % n,
            (Some(i), false) => (i + n - 1) % n,
        };
        cycle.index = Some(i);
        self.input
            .replace_before_cursor(cycle.start, &cycle.candidates[i]);
        self.input.text().clone_into(&mut cycle.left_text);
        cycle.left_cursor = self.input.cursor();
        if !(cycle.path && n == 1) {
            self.completion = Some(cycle);
        }
    }

    /// What Tab can put in place of the word before the cursor, or `None` when nothing fits.
    fn new_completion(&self) -> Option<Completion> {
        let before = &self.input.text()[..self.input.cursor()];
        if let Some(start) = command::upload_path_start(before) {
            let candidates = files::path_candidates(&before[start..], files::home().as_deref());
            return (!candidates.is_empty()).then(|| Completion {
                start,
                list_first: candidates.len() > 1,
                candidates,
                path: true,
                index: None,
                left_text: self.input.text().to_owned(),
                left_cursor: self.input.cursor(),
            });
        }
        // The word starts after the last whitespace (which may be wider than a byte).
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| c.is_whitespace())
            .map_or(0, |(i, c)| i + c.len_utf8());
        let prefix = &before[start..];
        if prefix.is_empty() {
            return None;
        }
        let command_line = before.starts_with('/');
        let (candidates, list_first): (Vec<String>, bool) = if start == 0 && command_line {
            let fits = self.commands_starting(prefix);
            (fits.iter().map(|c| format!("{c} ")).collect(), true)
        } else if prefix.starts_with('#') || command::takes_room(before) {
            let rooms = self.room_candidates(prefix);
            (rooms.iter().map(|r| format!("{r} ")).collect(), false)
        } else {
            let suffix = if start == 0 { ": " } else { " " };
            let names = self.name_candidates(prefix);
            (
                names.iter().map(|n| format!("{n}{suffix}")).collect(),
                false,
            )
        };
        (!candidates.is_empty()).then(|| Completion {
            start,
            candidates,
            list_first,
            path: false,
            index: None,
            left_text: self.input.text().to_owned(),
            left_cursor: self.input.cursor(),
        })
    }

    /// The rooms `prefix` begins (with or without its `#`), in the room list's order, then
    /// those of the last `/rooms` list.
    fn room_candidates(&self, prefix: &str) -> Vec<&str> {
        let lower = prefix.to_ascii_lowercase();
        let mut found: Vec<&str> = Vec::new();
        let rooms = self
            .rooms
            .views()
            .iter()
            .map(|v| &v.room)
            .chain(self.listed.iter())
            .filter(|r| r.kind() == RoomKind::Room)
            .map(Room::as_str);
        for r in rooms {
            let bare = r.strip_prefix('#').unwrap_or(r);
            if (r.starts_with(&lower) || bare.starts_with(&lower)) && !found.contains(&r) {
                found.push(r);
            }
        }
        found
    }

    /// The people online whose names `prefix` begins (any case): those who wrote last in the
    /// room shown first (the usual ones to answer), then those in the room, then the others
    /// online, each alphabetically; your own name last.
    fn name_candidates(&self, prefix: &str) -> Vec<&str> {
        let here = self.people().matching(prefix);
        let everyone = self
            .rooms
            .views()
            .first()
            .map(|general| general.people.matching(prefix))
            .unwrap_or_default();
        let mut names: Vec<(&str, bool)> = Vec::new();
        for (name, is_here) in here
            .into_iter()
            .map(|n| (n, true))
            .chain(everyone.into_iter().map(|n| (n, false)))
        {
            if !names.iter().any(|(n, _)| *n == name) {
                names.push((name, is_here));
            }
        }
        let recent = self.recent_writers();
        names.sort_by_cached_key(|(name, is_here)| {
            (
                name.eq_ignore_ascii_case(&self.user),
                recent
                    .iter()
                    .position(|r| r.eq_ignore_ascii_case(name))
                    .unwrap_or(usize::MAX),
                !is_here,
                name.to_ascii_lowercase(),
            )
        });
        names.into_iter().map(|(n, _)| n).collect()
    }

    /// Who wrote the newest messages of the room shown, newest first (looking back over the
    /// last [`RECENT_SCAN`] entries only, so Tab stays instant in a long history).
    fn recent_writers(&self) -> Vec<&str> {
        let mut writers: Vec<&str> = Vec::new();
        for entry in self.log().entries().iter().rev().take(RECENT_SCAN) {
            if let Kind::Message { user, .. } = &entry.kind
                && !writers.contains(&user.as_str())
            {
                writers.push(user);
            }
        }
        writers
    }

    fn submit(&mut self) {
        let typed = self.input.text().to_owned();
        if typed.trim().is_empty() {
            // Enter on the file line a search shows downloads it.
            if let Some(file) = self.searched_file() {
                self.carry_out(Plan::Download(file), typed);
            }
            return;
        }
        // Checked before the input is cleared: a mistake stays there to be fixed. A name the
        // built-in commands do not know may be a plugin's.
        let planned = match command::parse(&typed) {
            Input::Unknown(name) => match self.plugin_plan(&typed) {
                Some(plan) => Ok(plan),
                None => self.plan(Input::Unknown(name)),
            },
            input => self.plan(input),
        };
        let plan = match planned {
            Ok(plan) => plan,
            Err(problem) => {
                self.notice(Level::Error, problem);
                return;
            }
        };
        self.input.remember(&typed);
        self.input.take();
        self.carry_out(plan, typed);
    }

    /// What a typed line asks for, with its names checked; or what is wrong with it.
    fn plan(&self, input: Input) -> Result<Plan, String> {
        let here = self.view();
        let room = here.room.clone();
        Ok(match input {
            Input::Usage(usage) => return Err(format!("usage: {usage}")),
            Input::Unknown(name) => {
                return Err(format!(
                    "unknown command {name}: /help lists the commands; to send a message \
                     that starts with /, type // (//{} sends {name}…)",
                    name.trim_start_matches('/')
                ));
            }
            Input::Message(_) if here.membership == Membership::Left => {
                return Err(format!(
                    "you are not in {} any more: /join {} to go back",
                    here.title, here.room
                ));
            }
            Input::Message(body) => Plan::Send { room, body },
            Input::Help => Plan::Help,
            Input::Quit => Plan::Quit,
            Input::Who => Plan::Who,
            Input::Search(query) => Plan::Search(query),
            Input::Urls => Plan::Urls,
            Input::Clear => Plan::Clear,
            Input::Reconnect => Plan::Reconnect,
            Input::Rooms => Plan::Rooms,
            Input::Away(message) => Plan::Away(Some(message)),
            Input::Back => Plan::Away(None),
            Input::Passwd => Plan::Passwd,
            Input::Ignore(None) => Plan::ListIgnored,
            Input::Ignore(Some(name)) => {
                let user = user_arg(&name)?;
                if user.as_str().eq_ignore_ascii_case(&self.user) {
                    return Err("that is you: you cannot ignore yourself".to_owned());
                }
                Plan::Ignore(user)
            }
            Input::Unignore(name) => Plan::Unignore(user_arg(&name)?),
            Input::Upload(_) if here.membership == Membership::Left => {
                return Err(format!(
                    "you are not in {} any more: /join {} to go back",
                    here.title, here.room
                ));
            }
            Input::Upload(path) => Plan::Upload {
                room,
                path: files::expand_tilde(&path, files::home().as_deref()),
            },
            Input::Download(which) => Plan::Download(self.file_to_download(which.as_deref())?),
            Input::Join(name) => {
                let room = room_arg(&name)?;
                if room.kind() == RoomKind::Direct {
                    return Err(format!(
                        "{room} is a direct conversation: /msg NAME opens one"
                    ));
                }
                match self.rooms.find(&room) {
                    Some(i) if self.rooms.views()[i].membership != Membership::Left => {
                        Plan::Show(i)
                    }
                    _ => Plan::Request(RoomRequest::Join { room }),
                }
            }
            Input::Part(name) => {
                let room = match name {
                    Some(name) => room_arg(&name)?,
                    None => room,
                };
                let view = self.rooms.find(&room).map(|i| &self.rooms.views()[i]);
                match view {
                    Some(v) if v.is_direct() || v.membership == Membership::Left => {
                        Plan::Close(room)
                    }
                    _ => Plan::Request(RoomRequest::Part { room }),
                }
            }
            Input::Msg { user, text } => {
                if self.status.rooms == Some(false) {
                    return Err(NO_ROOMS.to_owned());
                }
                let other = user_arg(&user)?;
                let me = Username::new(self.user.as_str())
                    .map_err(|_| format!("`{}` is not a username", sanitize(&self.user)))?;
                let room = Room::direct(&me, &other)
                    .map_err(|_| "that is you: a direct conversation is with someone else")?;
                Plan::Direct {
                    room,
                    title: other.into_string(),
                    text,
                }
            }
            Input::Invite(user) => Plan::Request(RoomRequest::Invite {
                room,
                username: user_arg(&user)?,
            }),
            Input::Topic(None) => Plan::ShowTopic,
            Input::Topic(Some(topic)) => Plan::Request(RoomRequest::Topic { room, topic }),
            Input::Kick { user, reason } => Plan::Request(RoomRequest::Kick {
                room,
                username: user_arg(&user)?,
                reason,
            }),
            Input::Mute {
                user,
                minutes,
                reason,
            } => Plan::Request(RoomRequest::Mute {
                room,
                username: user_arg(&user)?,
                // Too long for the server either way: the request's check says how long may be.
                seconds: minutes.saturating_mul(60),
                reason,
            }),
            Input::Ban { user, reason } => Plan::Request(RoomRequest::Ban {
                room,
                username: user_arg(&user)?,
                reason,
            }),
            Input::Unban(user) => Plan::Request(RoomRequest::Unban {
                room,
                username: user_arg(&user)?,
            }),
            Input::Role { user, role } => Plan::Request(RoomRequest::Role {
                room,
                username: user_arg(&user)?,
                role,
            }),
            Input::Privacy(visibility) => Plan::Request(RoomRequest::Privacy { room, visibility }),
            Input::Create { room, visibility } => Plan::Request(RoomRequest::Create {
                room: room_arg(&room)?,
                visibility,
                topic: String::new(),
            }),
        })
    }

    fn carry_out(&mut self, plan: Plan, typed: String) {
        match plan {
            Plan::Send { room, body } => {
                self.rooms.current_mut().log.scroll_to_bottom();
                self.actions.push(Action::Send { room, body, typed });
            }
            Plan::Help => {
                let text = self.help_text();
                self.notice(Level::Info, text);
            }
            Plan::ListIgnored => {
                let text = if self.ignored.is_empty() {
                    "you ignore no one (/ignore USER hides USER's messages)".to_owned()
                } else {
                    format!(
                        "ignored ({}): {}",
                        self.ignored.len(),
                        self.ignored.join(", ")
                    )
                };
                self.notice(Level::Info, text);
            }
            Plan::Ignore(user) => self.ignore(&user),
            Plan::Upload { room, path } => self.actions.push(Action::Upload { room, path }),
            Plan::Download(file) => self.actions.push(Action::Download {
                hash: file.hash,
                name: file.name,
                size: file.size,
            }),
            Plan::Unignore(user) => self.unignore(&user),
            Plan::Plugin { room, name, args } => {
                self.rooms.current_mut().log.scroll_to_bottom();
                self.actions.push(Action::Command {
                    room,
                    name,
                    args,
                    typed,
                });
            }
            Plan::Urls => {
                let text = self.urls_listing();
                self.notice(Level::Info, text);
            }
            Plan::Quit => self.quit(),
            Plan::Who => {
                let room = self.view().room.clone();
                self.who_wanted = Some(room.clone());
                self.actions.push(Action::Who { room });
            }
            Plan::Search(query) => self.start_search(query),
            Plan::Clear => {
                let view = self.rooms.current_mut();
                view.floor = view.oldest_loaded().map(|_| view.newest + 1);
                view.oldest_hidden = None;
                view.log.clear();
                view.older.reopen();
                self.search = None;
            }
            Plan::Reconnect => {
                self.notice(Level::Info, "logging in again…");
                self.actions.push(Action::Reconnect);
            }
            Plan::Show(i) => self.show(i),
            Plan::Direct { room, title, text } => {
                let (i, made) = self.rooms.open(&room, &self.user, Membership::Joined);
                if made && let Some(view) = self.rooms.at_mut(i) {
                    view.title = title;
                }
                self.show(i);
                if !text.is_empty() {
                    self.rooms.current_mut().log.scroll_to_bottom();
                    self.actions.push(Action::Send {
                        room,
                        body: text,
                        typed,
                    });
                }
            }
            Plan::Close(room) => {
                self.search = None;
                self.rooms.remove(&room);
            }
            Plan::ShowTopic => {
                let view = self.view();
                let text = if view.is_direct() {
                    format!("a direct conversation with {} has no topic", view.title)
                } else if view.topic.is_empty() {
                    format!("{} has no topic", view.title)
                } else {
                    // The topic is the server's text: on this notice's one line.
                    format!("the topic of {}: {}", view.title, sanitize(&view.topic))
                };
                self.notice(Level::Info, text);
            }
            Plan::Rooms => {
                self.rooms_wanted = true;
                self.actions.push(Action::Rooms);
            }
            Plan::Request(request) => self.actions.push(Action::Room(request)),
            Plan::Away(message) => self.actions.push(Action::Away(message)),
            Plan::Passwd => {
                self.notice(
                    Level::Info,
                    "changing your password: type the current one, then the new one twice \
                     (nothing shows; Esc cancels)",
                );
                self.passwd = Some(PasswdPrompt::default());
            }
        }
    }

    /// A key while `/passwd` asks.
    fn passwd_key(&mut self, key: KeyEvent) {
        let Some(prompt) = &mut self.passwd else {
            return;
        };
        match prompt.key(key) {
            Outcome::Asking => {}
            Outcome::Done { current, new } => {
                self.passwd = None;
                self.notice(Level::Info, "changing the password…");
                self.actions.push(Action::Passwd { current, new });
            }
            Outcome::Cancelled => {
                self.passwd = None;
                self.notice(Level::Info, "the password was not changed");
            }
            Outcome::Again(problem) => {
                self.notice(Level::Error, format!("{problem}; type the new one again"));
            }
        }
    }

    /// `/ignore USER`: their messages leave every view now and are not shown from now on (the
    /// cache keeps them); the list is saved in the settings file.
    fn ignore(&mut self, user: &Username) {
        let name = user.as_str().to_ascii_lowercase();
        let Err(at) = self.ignored.binary_search(&name) else {
            self.notice(Level::Info, format!("you already ignore {user}"));
            return;
        };
        self.ignored.insert(at, name.clone());
        self.search = None;
        for i in 0..self.rooms.views().len() {
            if let Some(view) = self.rooms.at_mut(i) {
                let removed = view.log.remove_where(|e| {
                    matches!(&e.kind, Kind::Message { user, .. } if user.eq_ignore_ascii_case(&name))
                });
                if let Some(&id) = removed.iter().min() {
                    view.hid(id);
                }
            }
        }
        self.notice(
            Level::Info,
            format!(
                "ignoring {user}: their messages are hidden (the cache keeps them); /unignore \
                 {user} shows them again"
            ),
        );
        self.actions.push(Action::SaveIgnored(self.ignored.clone()));
    }

    /// `/unignore USER`: their messages are shown from now on; those hidden before come back
    /// with the views' next load from the cache (the next start).
    fn unignore(&mut self, user: &Username) {
        let name = user.as_str().to_ascii_lowercase();
        let Ok(at) = self.ignored.binary_search(&name) else {
            self.notice(Level::Error, format!("you do not ignore {user}"));
            return;
        };
        self.ignored.remove(at);
        self.notice(
            Level::Info,
            format!(
                "no longer ignoring {user}: their new messages are shown; those hidden so far \
                 come back from the cache at the next start"
            ),
        );
        self.actions.push(Action::SaveIgnored(self.ignored.clone()));
    }

    fn start_search(&mut self, query: String) {
        if query.is_empty() {
            self.search = None;
            return;
        }
        self.search = Search::find(&query, self.log().entries());
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
            self.rooms.current_mut().log.show(i, w, usize::from(h));
        }
    }

    /// The file line a search shows, if it shows one.
    fn searched_file(&self) -> Option<FileNotice> {
        let i = self.highlighted()?;
        self.log().entries().get(i).and_then(file_of)
    }

    /// Which file `/download` means: the one a search shows, else the newest here (`None`); the
    /// `N`th newest here (`N` of at most 7 digits); a hash (`sha256:` before it or not), or a
    /// start of one of at least 4 hex digits, of a file shown in any conversation.
    fn file_to_download(&self, which: Option<&str>) -> Result<FileNotice, String> {
        let here = || self.log().entries().iter().rev().filter_map(file_of);
        let none_here = || {
            format!(
                "no file shared in {} is loaded (PgUp loads older messages; /download HASH \
                 takes any)",
                self.view().title
            )
        };
        let Some(which) = which else {
            return self
                .searched_file()
                .or_else(|| here().next())
                .ok_or_else(none_here);
        };
        if which.len() < 8 && which.bytes().all(|b| b.is_ascii_digit()) {
            let n: usize = which.parse().unwrap_or(0);
            let count = here().count();
            if count == 0 {
                return Err(none_here());
            }
            return n.checked_sub(1).and_then(|i| here().nth(i)).ok_or_else(|| {
                format!(
                    "/download N: N from 1 (the newest) to {count}, the files shared in {} \
                         that are loaded",
                    self.view().title
                )
            });
        }
        let hex = which
            .strip_prefix("sha256:")
            .unwrap_or(which)
            .to_ascii_lowercase();
        if hex.len() < 4 || hex.len() > 64 || !hex.bytes().all(|b| b.is_ascii_hexdigit()) {
            return Err(
                "usage: /download [N|HASH]: N a number (1: the newest file here), HASH the \
                 file's sha256 or a start of it (4 hex digits or more)"
                    .to_owned(),
            );
        }
        // The files shown anywhere, the room shown first.
        let current = self.rooms.index();
        let views = self.rooms.views();
        let shown = std::iter::once(&views[current])
            .chain(
                views
                    .iter()
                    .enumerate()
                    .filter(|(i, _)| *i != current)
                    .map(|(_, v)| v),
            )
            .flat_map(|v| v.log.entries().iter().rev().filter_map(file_of));
        let mut found: Vec<FileNotice> = Vec::new();
        for file in shown {
            if file.hash.to_string().starts_with(&hex) && !found.iter().any(|f| f.hash == file.hash)
            {
                found.push(file);
            }
        }
        match (found.len(), hex.parse::<ContentHash>()) {
            (1, _) => Ok(found.remove(0)),
            // A whole hash of a file not loaded: saved under the hash's start.
            (0, Ok(hash)) => Ok(FileNotice {
                name: format!("sha256-{}", &hex[..16]),
                size: 0,
                hash,
            }),
            (0, Err(_)) => Err(format!(
                "no file shown here starts with sha256:{hex} (give the whole hash to fetch one \
                 not loaded)"
            )),
            (n, _) => Err(format!(
                "{n} files start with sha256:{hex}: type more of the hash"
            )),
        }
    }

    /// The search match to highlight.
    pub fn highlighted(&self) -> Option<usize> {
        self.search.as_ref().and_then(Search::shown)
    }
}

/// Most names a Tab after `/upload` lists.
const FILES_LISTED: usize = 40;

/// The candidates of a path completion as Tab lists them: their names, without the directory.
fn files_listing(candidates: &[String]) -> String {
    let names: Vec<&str> = candidates
        .iter()
        .take(FILES_LISTED)
        .map(|c| {
            let bare = c.strip_suffix('/').unwrap_or(c);
            bare.rfind('/').map_or(c.as_str(), |i| &c[i + 1..])
        })
        .collect();
    let more = candidates.len().saturating_sub(FILES_LISTED);
    let mut text = format!("files: {}", sanitize(&names.join("  ")));
    if more > 0 {
        text.push_str(&format!("  … {more} more"));
    }
    text
}

/// The file an entry announces, if it is a file line.
fn file_of(entry: &Entry) -> Option<FileNotice> {
    match &entry.kind {
        Kind::Message { body, .. } => FileNotice::parse(body),
        Kind::System { .. } | Kind::Notice { .. } => None,
    }
}

/// A transfer's way, for its notices.
fn way(direction: Direction) -> &'static str {
    match direction {
        Direction::Upload => "upload",
        Direction::Download => "download",
    }
}

/// A room name as typed (`#dev`, `dev`), or what is wrong with it.
fn room_arg(name: &str) -> Result<Room, String> {
    parse_room(name).map_err(|e| match e {
        ClientError::InvalidRequest(text) => text,
        other => other.to_string(),
    })
}

/// A username as typed (an `@` before it is allowed), or what is wrong with it.
fn user_arg(name: &str) -> Result<Username, String> {
    let bare = name.strip_prefix('@').unwrap_or(name);
    Username::new(bare).map_err(|_| {
        format!(
            "`{}` is not a username: 1 to 32 of A-Z a-z 0-9 _ . -",
            sanitize(name)
        )
    })
}

/// `/rooms`' answer as a notice: one line per room, with its kind, where the account stands,
/// its members and topic.
fn rooms_text(list: &[RoomInfo], me: &str) -> String {
    let name = |info: &RoomInfo| match info.kind {
        ListedKind::Direct => format!("{} (direct)", super::rooms::title(&info.room, me)),
        _ => info.room.to_string(),
    };
    let width = list.iter().map(|i| name(i).len()).max().unwrap_or(0);
    let mut text = format!("rooms ({}):", list.len());
    for info in list {
        let standing = match info.role {
            ListedRole::Outside => "-",
            role => role.as_str(),
        };
        let s = if info.members == 1 { "" } else { "s" };
        text.push_str(&format!(
            "\n  {:<width$}  {:<7}  {:<9}  {:>3} member{s}",
            name(info),
            info.kind.as_str(),
            standing,
            info.members,
        ));
        if !info.topic.is_empty() {
            text.push_str(" · ");
            // The server's text, on its room's line.
            text.push_str(&sanitize(&info.topic));
        }
        if info.role == ListedRole::Invited {
            text.push_str(&format!(" · invited: /join {}", info.room));
        }
    }
    if list.is_empty() {
        text.push_str(" none");
    }
    text
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
    use super::super::marks::Marks;
    use super::*;
    use crate::tui::login::Field;
    use chrono::TimeZone as _;
    use gc_protocol::ErrorCode;
    use gc_protocol::{Room, Timestamp, Username};

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
        app.log()
            .entries()
            .iter()
            .rev()
            .find_map(|e| match &e.kind {
                Kind::Notice { text, .. } => Some(text.clone()),
                Kind::Message { .. } | Kind::System { .. } => None,
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
        app.handle_terminal(TermEvent::Paste("line 1\r\nline 2".into()));
        assert_eq!(app.input.text(), "line 1\nline 2");
        assert!(sent(&mut app).is_empty());
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(sent(&mut app), ["line 1\nline 2"]);
    }

    #[test]
    fn a_paste_loses_its_final_line_ends() {
        let mut app = chat();
        app.handle_terminal(TermEvent::Paste(
            "fn main() {\r\n    run();\r\n}\r\n".into(),
        ));
        assert_eq!(app.input.text(), "fn main() {\n    run();\n}");
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(sent(&mut app), ["fn main() {\n    run();\n}"]);
        // Every final line end goes (a terminal's CR counts as one), so none is sent.
        for (pasted, kept) in [
            ("one\n", "one"),
            ("one\r", "one"),
            ("two\n\n", "two"),
            ("two\r\r", "two"),
            ("\n", ""),
        ] {
            app.input.take();
            app.handle_terminal(TermEvent::Paste(pasted.into()));
            assert_eq!(app.input.text(), kept, "{pasted:?}");
        }
    }

    #[test]
    fn passwd_asks_without_echo_and_hands_the_passwords_on() {
        let mut app = chat();
        type_str(&mut app, "/passwd");
        app.handle_key(key(KeyCode::Enter));
        assert!(app.passwd.is_some());
        assert!(app.take_actions().is_empty());
        for typed in ["old-password", "new-password-1", "new-password-1"] {
            type_str(&mut app, typed);
            // Nothing typed reaches the input line.
            assert_eq!(app.input.text(), "");
            app.handle_key(key(KeyCode::Enter));
        }
        assert!(app.passwd.is_none());
        let actions = app.take_actions();
        assert!(
            matches!(
                &actions[..],
                [Action::Passwd { current, new }]
                    if current.expose() == "old-password" && new.expose() == "new-password-1"
            ),
            "{actions:?}"
        );
        // Nor the input history: Up recalls nothing of it.
        app.handle_key(key(KeyCode::Up));
        assert_eq!(app.input.text(), "/passwd");
        // A password on the command line is refused, and Esc cancels.
        app.input.take();
        type_str(&mut app, "/passwd secret");
        app.handle_key(key(KeyCode::Enter));
        assert!(last_notice(&app).contains("usage: /passwd alone"));
        app.input.take();
        type_str(&mut app, "/passwd");
        app.handle_key(key(KeyCode::Enter));
        app.handle_key(key(KeyCode::Esc));
        assert!(app.passwd.is_none());
        assert_eq!(last_notice(&app), "the password was not changed");
        assert!(app.take_actions().is_empty());
    }

    #[test]
    fn away_and_back_are_asked_and_who_shows_the_away() {
        let mut app = chat();
        type_str(&mut app, "/away at lunch");
        app.handle_key(key(KeyCode::Enter));
        type_str(&mut app, "/back");
        app.handle_key(key(KeyCode::Enter));
        let actions = app.take_actions();
        assert!(
            matches!(
                &actions[..],
                [Action::Away(Some(m)), Action::Away(None)] if m == "at lunch"
            ),
            "{actions:?}"
        );
        app.handle_client(Event::AccountDone(AccountChange::Away("at lunch".into())));
        assert_eq!(
            last_notice(&app),
            "you are away: at lunch (/back when you are back)"
        );
        type_str(&mut app, "/who");
        app.handle_key(key(KeyCode::Enter));
        app.handle_client(Event::Away(vec![(
            Username::new("bob").unwrap(),
            "at lunch".into(),
        )]));
        app.handle_client(Event::Presence {
            version: 1,
            users: vec![
                Username::new("alice").unwrap(),
                Username::new("bob").unwrap(),
            ],
        });
        assert_eq!(last_notice(&app), "online (2): alice, bob (away: at lunch)");
        assert_eq!(app.away_of("BOB"), Some("at lunch"));
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
        assert!(matches!(app.take_actions()[..], [Action::Who { .. }]));
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
        assert!(app.log().is_empty());

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
        assert!(!app.log().following(), "scrolled to the older match");
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
        app.queued(id.clone(), Room::general(), "hi".into());
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
        app.queued(id.clone(), Room::general(), "again".into());
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
        app.queued(id.clone(), Room::general(), "too big".into());
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
            .log()
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
            matches!(actions[..], [Action::LoadOlder { before_id: 100, .. }]),
            "{actions:?}"
        );
        app.add_older(
            &Room::general(),
            &(50..100)
                .map(|i| record(i, "bob", "old"))
                .collect::<Vec<_>>(),
            false,
        );
        assert_eq!(app.log().oldest_id(), Some(50));
        app.handle_key(key(KeyCode::Home));
        assert!(matches!(
            app.take_actions()[..],
            [Action::LoadOlder { before_id: 50, .. }]
        ));
        app.add_older(&Room::general(), &[], true);
        app.handle_key(key(KeyCode::Home));
        assert!(app.take_actions().is_empty(), "the beginning was reached");
        app.handle_key(key(KeyCode::End));
        assert!(app.log().following());
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
            [Action::LoadOlder { before_id: 100, .. }]
        ));
        app.handle_key(key(KeyCode::Home));
        assert!(app.take_actions().is_empty(), "one request at a time");
        app.load_older_failed(&Room::general());
        assert!(!app.loading_older());
        app.handle_key(key(KeyCode::Home));
        assert!(matches!(
            app.take_actions()[..],
            [Action::LoadOlder { before_id: 100, .. }]
        ));
        app.add_older(&Room::general(), &[], true);
        assert!(app.history_done() && !app.loading_older());
        app.load_older_failed(&Room::general());
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
            [Action::LoadOlder { before_id: 151, .. }]
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
        assert!(!app.log().following());
        app.handle_mouse(MouseEvent {
            kind: MouseEventKind::ScrollDown,
            column: 0,
            row: 0,
            modifiers: KeyModifiers::NONE,
        });
        assert!(app.log().following());
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
        type_str(&mut app, "correct-horse-9");
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
            ("bob", "correct-horse-9", false)
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
        type_str(&mut app, "correct-horse-9");
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
        app.auto_login("bob", Password::new("correct-horse-9"), false);
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
        assert!(app.log().is_empty(), "the first list is not news");
        app.handle_client(Event::Presence {
            version: 2,
            users: names(&["alice", "carol"]),
        });
        let notes: Vec<&str> = app.log().entries().iter().map(Entry::searchable).collect();
        assert_eq!(notes, ["carol joined"], "a leaving is said after a grace");
        assert_eq!(app.people().names(), ["alice", "carol"]);
        let t0 = app.now;
        app.set_now(t0 + LEAVE_GRACE);
        let notes: Vec<&str> = app.log().entries().iter().map(Entry::searchable).collect();
        assert_eq!(notes, ["carol joined", "bob left"]);
    }

    #[test]
    fn a_reconnect_is_not_told_as_left_and_joined() {
        let mut app = chat();
        let names = |n: &[&str]| n.iter().map(|u| Username::new(*u).unwrap()).collect();
        let t0 = app.now;
        app.handle_client(Event::Presence {
            version: 1,
            users: names(&["alice", "bob", "carol"]),
        });
        // A server restart: everyone drops off, and comes back within seconds.
        app.handle_client(Event::Presence {
            version: 2,
            users: names(&["alice"]),
        });
        app.set_now(t0 + Duration::from_secs(3));
        app.handle_client(Event::Presence {
            version: 3,
            users: names(&["alice", "bob"]),
        });
        // Carol is back by her first message.
        app.add_records(&[record(1, "carol", "back")]);
        app.set_now(t0 + LEAVE_GRACE * 3);
        let notes: Vec<&str> = app.log().entries().iter().map(Entry::searchable).collect();
        assert_eq!(notes, ["back"], "no churn");
        // Someone gone for good is still told, once the grace has passed.
        app.handle_client(Event::Presence {
            version: 4,
            users: names(&["alice", "carol"]),
        });
        app.set_now(t0 + LEAVE_GRACE * 5);
        let notes: Vec<&str> = app.log().entries().iter().map(Entry::searchable).collect();
        assert_eq!(notes, ["back", "bob left"]);
    }

    #[test]
    fn a_first_message_follows_its_writers_joined_notice() {
        let mut app = chat();
        let names = |n: &[&str]| n.iter().map(|u| Username::new(*u).unwrap()).collect();
        app.handle_client(Event::Presence {
            version: 1,
            users: names(&["alice"]),
        });
        // Bob logs in and speaks at once: his message comes before the next presence list.
        app.add_records(&[record(1, "bob", "hi all")]);
        app.handle_client(Event::Presence {
            version: 2,
            users: names(&["alice", "bob"]),
        });
        let notes: Vec<&str> = app.log().entries().iter().map(Entry::searchable).collect();
        assert_eq!(notes, ["bob joined", "hi all"], "once, and first");
        // An old record (history, a backlog) says nothing about who is online now.
        let mut old = record(2, "carol", "said long ago");
        old.timestamp = Timestamp::parse("1600000000").unwrap();
        app.add_records(&[old]);
        assert!(
            !app.log()
                .entries()
                .iter()
                .any(|e| e.searchable() == "carol joined")
        );
    }

    /// The client's status in a session that logged in when the server's newest id was
    /// `latest`, holding up to `last_id`.
    fn session_status(latest: u64, last_id: u64, caught_up: bool) -> Status {
        Status {
            state: ConnState::Active,
            server_name: Some("gc".into()),
            registration: None,
            last_heartbeat: None,
            heartbeat_interval: None,
            online: Vec::new(),
            presence_version: None,
            last_id,
            outbox_len: 0,
            login_latest: Some(latest),
            caught_up,
            ports: gc_protocol::CallbackPorts {
                auth: 0,
                heartbeat: 0,
                delivery: 0,
            },
            rooms: None,
            version: None,
            instance: None,
        }
    }

    fn logged_in(app: &mut App) {
        app.handle_client(Event::State(ConnState::Active));
        app.handle_client(Event::Notice {
            level: NoticeLevel::Info,
            text: "logged in as alice on gc".into(),
        });
    }

    fn shown(app: &App) -> Vec<&str> {
        app.log().entries().iter().map(Entry::searchable).collect()
    }

    #[test]
    fn logged_in_follows_the_backlog_it_came_before() {
        // Alice is back a day later: her cache holds 1; 2 and 3 were written while she was away.
        let now = 1_700_000_000 + 86_400;
        let mut app = chat().with_clock(Utc.timestamp_opt(now, 0).unwrap());
        app.load_initial(&[record(1, "bob", "cached")]);
        app.set_status(&session_status(3, 1, false));
        logged_in(&mut app);
        // The client has them already (the status says so) but the UI has not shown them yet.
        app.set_status(&session_status(3, 3, true));
        app.handle_client(Event::Records(vec![
            record(2, "bob", "missed"),
            record(3, "carol", "missed too"),
        ]));
        let mut live = record(4, "bob", "live");
        live.timestamp = Timestamp::parse(&format!("{}", now + 5)).unwrap();
        app.handle_client(Event::Records(vec![live]));
        assert_eq!(
            shown(&app),
            [
                "cached",
                "missed",
                "missed too",
                "logged in as alice on gc",
                "live"
            ],
            "what was missed, then the login, then what came since"
        );
        let times: Vec<_> = app.log().entries().iter().map(|e| e.time).collect();
        assert!(
            times.is_sorted(),
            "each at its own time, in order (one date line per day): {times:?}"
        );
        assert_eq!(times[3].timestamp(), now, "the notice keeps its time");
    }

    #[test]
    fn logged_in_is_shown_once_nothing_more_of_the_backlog_comes() {
        // Nothing missed: at once.
        let mut app = chat();
        app.load_initial(&[record(1, "bob", "cached")]);
        app.set_status(&session_status(1, 1, true));
        logged_in(&mut app);
        assert_eq!(shown(&app), ["cached", "logged in as alice on gc"]);

        // The newest record is of a room the account is not in: it never comes, and the
        // client's word that it caught up (a quiet heartbeat cycle) shows the notice, once the
        // records it holds are shown.
        let mut app = chat();
        app.set_status(&session_status(9, 0, false));
        logged_in(&mut app);
        assert!(shown(&app).is_empty(), "held while the backlog comes");
        app.set_status(&session_status(9, 2, true));
        assert!(shown(&app).is_empty(), "record 2 is not shown yet");
        app.handle_client(Event::Records(vec![record(2, "bob", "missed")]));
        app.set_status(&session_status(9, 2, true));
        assert_eq!(shown(&app), ["missed", "logged in as alice on gc"]);

        // A record newer than the login goes after it.
        let mut app = chat();
        app.set_status(&session_status(9, 0, false));
        logged_in(&mut app);
        app.handle_client(Event::Records(vec![
            record(8, "bob", "missed"),
            record(10, "bob", "new"),
        ]));
        assert_eq!(shown(&app), ["missed", "logged in as alice on gc", "new"]);

        // A session that ends before its backlog is in: said before what follows.
        let mut app = chat();
        app.set_status(&session_status(9, 0, false));
        logged_in(&mut app);
        app.handle_client(Event::State(ConnState::Disconnected));
        app.handle_client(Event::Notice {
            level: NoticeLevel::Warning,
            text: "connection lost".into(),
        });
        assert_eq!(shown(&app), ["logged in as alice on gc", "connection lost"]);
    }

    #[test]
    fn who_came_while_away_is_told_after_the_backlog() {
        let names = |n: &[&str]| n.iter().map(|u| Username::new(*u).unwrap()).collect();
        let mut app = chat();
        app.handle_client(Event::Presence {
            version: 1,
            users: names(&["alice", "bob"]),
        });
        // A reconnect: the new session's first list has carol, who came meanwhile.
        app.set_status(&session_status(5, 0, false));
        logged_in(&mut app);
        app.handle_client(Event::Presence {
            version: 2,
            users: names(&["alice", "bob", "carol"]),
        });
        app.handle_client(Event::Records(vec![record(5, "bob", "missed")]));
        assert_eq!(
            shown(&app),
            ["missed", "logged in as alice on gc", "carol joined"]
        );
    }

    #[test]
    fn tab_completes_names() {
        let mut app = chat();
        app.rooms.current_mut().people = People::Known(vec!["bob".into(), "carol".into()]);
        type_str(&mut app, "ca");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "carol: ");
        type_str(&mut app, "ask b");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "carol: ask bob ");
    }

    #[test]
    fn tab_cycles_through_every_name_with_your_own_last() {
        let mut app = chat();
        app.rooms.current_mut().people = People::Known(vec![
            "alice".into(),
            "Albert".into(),
            "bob".into(),
            "bobby".into(),
        ]);
        type_str(&mut app, "bo");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "bob: ");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "bobby: ", "Tab again: the next name");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "bob: ", "round the list");
        app.handle_key(key(KeyCode::BackTab));
        assert_eq!(app.input.text(), "bobby: ", "Shift+Tab goes back");
        // Another key ends the cycle; the next Tab completes the new word.
        type_str(&mut app, "a");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "bobby: Albert ", "your own name last");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "bobby: alice ");
        app.handle_key(key(KeyCode::Left));
        app.handle_key(key(KeyCode::Right));
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "bobby: alice ", "the cycle ended at Left");
        // A word after a space wider than a byte.
        app.input.take();
        type_str(&mut app, "hi\u{3000}bobb");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "hi\u{3000}bobby ");
    }

    #[test]
    fn tab_offers_who_wrote_last_first() {
        let mut app = chat();
        app.rooms.current_mut().people =
            People::Known(vec!["bob".into(), "bobby".into(), "boris".into()]);
        app.add_records(&[record(1, "bob", "one"), record(2, "bobby", "two")]);
        type_str(&mut app, "bo");
        for expected in ["bobby: ", "bob: ", "boris: ", "bobby: "] {
            app.handle_key(key(KeyCode::Tab));
            assert_eq!(app.input.text(), expected);
        }
    }

    // ─────────────────────────────── rooms ───────────────────────────────

    fn room(name: &str) -> Room {
        Room::new(name).unwrap()
    }

    fn record_in(id: u64, room_name: &str, user: &str, body: &str) -> Record {
        Record {
            room: room(room_name),
            ..record(id, user, body)
        }
    }

    /// A conversation with a server that serves rooms, logged in.
    fn rooms_chat() -> App {
        let mut app = chat();
        app.handle_client(Event::Version {
            version: "GC/3",
            rooms: true,
        });
        app.handle_client(Event::State(ConnState::Active));
        app.take_actions();
        app
    }

    fn titles(app: &App) -> Vec<String> {
        app.rooms.views().iter().map(|v| v.title.clone()).collect()
    }

    fn alt(c: char) -> KeyEvent {
        with(KeyCode::Char(c), KeyModifiers::ALT)
    }

    fn ctrl(c: char) -> KeyEvent {
        with(KeyCode::Char(c), KeyModifiers::CONTROL)
    }

    fn submit(app: &mut App, line: &str) -> Vec<Action> {
        type_str(app, line);
        app.handle_key(key(KeyCode::Enter));
        app.take_actions()
    }

    #[test]
    fn slash_urls_lists_the_urls_of_the_room_shown() {
        let mut app = rooms_chat();
        assert!(
            submit(&mut app, "/urls").is_empty(),
            "nothing asked of the server"
        );
        assert_eq!(
            last_notice(&app),
            "no URLs in the loaded messages of #general"
        );
        app.add_records(&[
            record(
                1,
                "bob",
                "see https://a.example/x, and (https://b.example/y).",
            ),
            record_in(2, "#dev", "bob", "https://dev.example/ only in #dev"),
            record(
                3,
                "System",
                "carol set the topic: notes at https://wiki.example/2.4",
            ),
            record(4, "carol", "no link here, just mailto:carol@lan.example!"),
        ]);
        submit(&mut app, "/urls");
        assert_eq!(
            last_notice(&app),
            "URLs in #general (newest last):\n  \
               1  https://a.example/x  (bob 22:13)\n  \
               2  https://b.example/y  (bob 22:13)\n  \
               3  https://wiki.example/2.4  (server 22:13)\n  \
               4  mailto:carol@lan.example  (carol 22:13)"
        );
        // The listing itself is a notice: listing again does not count its URLs twice.
        submit(&mut app, "/urls");
        assert_eq!(last_notice(&app).lines().count(), 5);

        app.handle_key(alt('2'));
        submit(&mut app, "/urls");
        assert!(last_notice(&app).contains("1  https://dev.example/  (bob"));
        assert_eq!(last_notice(&app).lines().count(), 2);

        // Only the newest are listed, numbered as they count.
        let many: Vec<Record> = (10..=70)
            .map(|i| record_in(i, "#dev", "bob", &format!("https://x.example/{i}")))
            .collect();
        app.add_records(&many);
        submit(&mut app, "/urls");
        let text = last_notice(&app);
        assert!(
            text.starts_with("URLs in #dev (newest last): the last 50 of 62"),
            "{text}"
        );
        assert!(
            text.ends_with(" 62  https://x.example/70  (bob 22:14)"),
            "{text}"
        );
        assert!(text.contains("\n 13  https://x.example/21  "), "{text}");
        assert_eq!(text.lines().count(), 51);
    }

    #[test]
    fn records_go_to_their_rooms_and_count_as_unread_elsewhere() {
        let mut app = rooms_chat();
        app.add_records(&[
            record(1, "bob", "in general"),
            record_in(2, "#dev", "bob", "a build is red"),
            record_in(3, "#dev", "bob", "alice: can you look?"),
            record_in(4, "#dev", "System", "carol joined"),
            record_in(5, "#dev", "alice", "my own, from another client"),
            record_in(6, "@alice+bob", "Bob", "psst"),
        ]);
        assert_eq!(titles(&app), ["#general", "#dev", "Bob"]);
        assert_eq!(app.log().len(), 1, "#general holds its own only");
        let dev = &app.rooms.views()[1];
        assert_eq!(
            (dev.unread, dev.mention),
            (2, true),
            "notices and own words are read"
        );
        let direct = &app.rooms.views()[2];
        assert_eq!(
            (direct.unread, direct.mention),
            (1, true),
            "a direct message is for you"
        );

        app.handle_key(alt('2'));
        assert_eq!(app.view().room, room("#dev"));
        assert_eq!((app.view().unread, app.view().mention), (0, false));
        let kinds: Vec<&Kind> = app.log().entries().iter().map(|e| &e.kind).collect();
        assert!(
            matches!(kinds[2], Kind::System { id: 4, text } if text == "carol joined"),
            "the server's notice is a notice: {kinds:?}"
        );
        // Shown: what comes now is read.
        app.add_records(&[record_in(7, "#dev", "bob", "thanks")]);
        assert_eq!(app.view().unread, 0);
        app.add_records(&[record(8, "bob", "general again")]);
        assert_eq!(app.rooms.views()[0].unread, 1);

        // Ctrl+N / Ctrl+P go round; Alt+9 with no ninth room does nothing.
        app.handle_key(ctrl('n'));
        assert_eq!(app.view().title, "Bob");
        app.handle_key(ctrl('n'));
        assert_eq!(app.view().room, Room::general());
        assert_eq!(app.view().unread, 0);
        app.handle_key(ctrl('p'));
        assert_eq!(app.view().title, "Bob");
        app.handle_key(alt('9'));
        assert_eq!(app.view().title, "Bob");
        assert!(app.input.is_empty(), "Alt+digit types nothing");
    }

    #[test]
    fn each_room_keeps_its_scroll_position() {
        let mut app = rooms_chat();
        app.pane.set((40, 10));
        let many: Vec<Record> = (1..=50)
            .map(|i| record_in(i, "#dev", "bob", &format!("m{i}")))
            .collect();
        app.add_records(&many);
        app.add_records(&(51..=60).map(|i| record(i, "bob", "g")).collect::<Vec<_>>());
        app.handle_key(alt('2'));
        app.handle_key(key(KeyCode::PageUp));
        let anchor = app.log().anchor();
        assert!(anchor.is_some(), "scrolled up");
        app.handle_key(alt('1'));
        assert!(app.log().following(), "#general still follows");
        app.handle_key(alt('2'));
        assert_eq!(app.log().anchor(), anchor, "back where it was");
    }

    #[test]
    fn ctrl_n_and_ctrl_p_step_a_search_and_otherwise_switch_rooms() {
        let mut app = rooms_chat();
        app.add_records(&[
            record(1, "bob", "needle one"),
            record(2, "bob", "needle two"),
            record_in(3, "#dev", "bob", "x"),
        ]);
        submit(&mut app, "/search needle");
        assert_eq!(app.highlighted(), Some(1));
        app.handle_key(ctrl('p'));
        assert_eq!(app.highlighted(), Some(0), "a step, not a switch");
        assert_eq!(app.view().room, Room::general());
        app.handle_key(key(KeyCode::Esc));
        app.handle_key(ctrl('n'));
        assert_eq!(app.view().room, room("#dev"));
        submit(&mut app, "/search x");
        app.handle_key(alt('1'));
        assert!(app.search.is_none(), "a switch ends the search");
    }

    #[test]
    fn messages_go_into_the_room_shown_and_msg_opens_a_direct_conversation() {
        let mut app = rooms_chat();
        app.add_records(&[record_in(1, "#dev", "bob", "x")]);
        app.handle_key(alt('2'));
        app.take_actions();
        let actions = submit(&mut app, "hi dev");
        assert!(
            matches!(&actions[..], [Action::Send { room, body, .. }] if *room == self::room("#dev") && body == "hi dev"),
            "{actions:?}"
        );
        app.queued(
            ClientMsgId::random().unwrap(),
            room("#dev"),
            "hi dev".into(),
        );

        let actions = submit(&mut app, "/msg Carol lunch at 12?");
        assert_eq!(app.view().room, room("@alice+carol"));
        assert_eq!(app.view().title, "Carol");
        let sends: Vec<_> = actions
            .iter()
            .filter_map(|a| match a {
                Action::Send { room, body, typed } => Some((room, body, typed)),
                _ => None,
            })
            .collect();
        assert_eq!(
            sends,
            [(
                &room("@alice+carol"),
                &"lunch at 12?".to_owned(),
                &"/msg Carol lunch at 12?".to_owned()
            )]
        );
        // Only open it: switches, sends nothing.
        app.handle_key(alt('1'));
        assert!(
            submit(&mut app, "/msg carol")
                .iter()
                .all(|a| !matches!(a, Action::Send { .. }))
        );
        assert_eq!(app.view().room, room("@alice+carol"));
        assert_eq!(app.rooms.views().len(), 3, "the same conversation");

        // Mistakes stay in the input.
        submit(&mut app, "/msg alice hi");
        assert!(
            last_notice(&app).contains("that is you"),
            "{}",
            last_notice(&app)
        );
        assert_eq!(app.input.take(), "/msg alice hi");
        submit(&mut app, "/msg b/d hi");
        assert!(
            last_notice(&app).contains("not a username"),
            "{}",
            last_notice(&app)
        );
        assert_eq!(app.input.take(), "/msg b/d hi");
    }

    #[test]
    fn room_commands_ask_the_server_about_the_room_shown() {
        let mut app = rooms_chat();
        app.add_records(&[record_in(1, "#dev", "bob", "x")]);
        app.handle_key(alt('2'));
        app.take_actions();
        let request = |app: &mut App, line: &str| {
            let actions = submit(app, line);
            match &actions[..] {
                [Action::Room(request)] => request.clone(),
                other => panic!("{line}: {other:?}"),
            }
        };
        let bob = Username::new("bob").unwrap();
        let dev = room("#dev");
        assert_eq!(
            request(&mut app, "/join ops"),
            RoomRequest::Join { room: room("#ops") }
        );
        assert_eq!(
            request(&mut app, "/kick bob spam"),
            RoomRequest::Kick {
                room: dev.clone(),
                username: bob.clone(),
                reason: "spam".into()
            }
        );
        assert_eq!(
            request(&mut app, "/mute @bob 5 calm down"),
            RoomRequest::Mute {
                room: dev.clone(),
                username: bob.clone(),
                seconds: 300,
                reason: "calm down".into()
            }
        );
        assert_eq!(
            request(&mut app, "/ban bob"),
            RoomRequest::Ban {
                room: dev.clone(),
                username: bob.clone(),
                reason: String::new()
            }
        );
        assert_eq!(
            request(&mut app, "/unban bob"),
            RoomRequest::Unban {
                room: dev.clone(),
                username: bob.clone()
            }
        );
        assert_eq!(
            request(&mut app, "/invite carol"),
            RoomRequest::Invite {
                room: dev.clone(),
                username: Username::new("carol").unwrap()
            }
        );
        assert_eq!(
            request(&mut app, "/topic ship it"),
            RoomRequest::Topic {
                room: dev.clone(),
                topic: "ship it".into()
            }
        );
        assert_eq!(
            request(&mut app, "/create #ops private"),
            RoomRequest::Create {
                room: room("#ops"),
                visibility: gc_protocol::Visibility::Private,
                topic: String::new()
            }
        );
        assert_eq!(
            request(&mut app, "/part"),
            RoomRequest::Part { room: dev.clone() }
        );
        // A room shown already: /join only switches to it.
        app.handle_key(alt('1'));
        let actions = submit(&mut app, "/join #dev");
        assert!(
            actions.iter().all(|a| !matches!(a, Action::Room(_))),
            "{actions:?}"
        );
        assert_eq!(app.view().room, dev);
        submit(&mut app, "/topic");
        assert_eq!(last_notice(&app), "#dev has no topic");
        // Not a room name: said, and kept.
        assert!(submit(&mut app, "/join Dev!").is_empty());
        assert!(
            last_notice(&app).contains("not a room name"),
            "{}",
            last_notice(&app)
        );
        app.input.take();
        // /rooms: the answer is shown.
        assert!(matches!(submit(&mut app, "/rooms")[..], [Action::Rooms]));
        app.handle_client(Event::RoomList(vec![RoomInfo {
            room: dev.clone(),
            kind: ListedKind::Public,
            role: ListedRole::Owner,
            members: 3,
            topic: "ship it".into(),
        }]));
        let text = last_notice(&app);
        assert!(text.starts_with("rooms (1):"), "{text}");
        assert!(
            text.contains("#dev  public   owner        3 members · ship it"),
            "{text}"
        );
        assert_eq!(app.view().topic, "ship it");
    }

    #[test]
    fn the_servers_answers_open_close_and_explain() {
        let mut app = rooms_chat();
        app.handle_client(Event::RoomDone {
            request: RoomRequest::Join { room: room("#ops") },
            notice_id: 9,
        });
        assert_eq!(app.view().room, room("#ops"), "joined: shown");
        let actions = app.take_actions();
        assert!(actions.iter().any(|a| matches!(a, Action::Rooms)));
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Watch(rooms) if *rooms == [self::room("#ops")])),
            "{actions:?}"
        );
        assert!(
            actions
                .iter()
                .any(|a| matches!(a, Action::Who { room } if *room == self::room("#ops")))
        );
        // What was said before is asked for once the join's notice is there (the client asks
        // history only below the records it holds).
        assert!(
            !actions
                .iter()
                .any(|a| matches!(a, Action::LoadOlder { .. })),
            "{actions:?}"
        );
        app.add_records(&[record_in(9, "#ops", "System", "alice joined")]);
        let actions = app.take_actions();
        assert!(
            matches!(&actions[..], [Action::LoadOlder { room, before_id: 9 }] if *room == self::room("#ops")),
            "{actions:?}"
        );
        app.add_older(
            &room("#ops"),
            &[record_in(5, "#ops", "System", "bob created #ops (public)")],
            true,
        );
        assert_eq!(app.log().len(), 2);
        // The notice first, then the answer: asked at once.
        app.add_records(&[record_in(11, "#web", "System", "alice joined")]);
        app.handle_client(Event::RoomDone {
            request: RoomRequest::Join { room: room("#web") },
            notice_id: 11,
        });
        assert!(app.take_actions().iter().any(
            |a| matches!(a, Action::LoadOlder { room, before_id: 11 } if *room == self::room("#web"))
        ));
        app.handle_key(alt('2'));

        app.handle_client(Event::Refused(Refusal {
            command: Command::Room(RoomRequest::Ban {
                room: room("#ops"),
                username: Username::new("bob").unwrap(),
                reason: String::new(),
            }),
            code: Some(ErrorCode::Forbidden),
            text: "only a moderator of #ops can ban".into(),
        }));
        assert_eq!(
            last_notice(&app),
            "could not ban bob from #ops (forbidden): only a moderator of #ops can ban"
        );
        app.handle_client(Event::RoomDone {
            request: RoomRequest::Invite {
                room: room("#ops"),
                username: Username::new("carol").unwrap(),
            },
            notice_id: 0,
        });
        assert!(
            last_notice(&app).contains("nothing to change"),
            "{}",
            last_notice(&app)
        );

        app.handle_client(Event::RoomDone {
            request: RoomRequest::Part { room: room("#ops") },
            notice_id: 12,
        });
        assert_eq!(titles(&app), ["#general", "#web"]);
        assert_eq!(app.view().room, Room::general(), "the one before");
    }

    #[test]
    fn the_room_list_confirms_drops_and_marks_rooms() {
        let mut app = chat();
        app.load_initial(&[
            record(1, "bob", "g"),
            record_in(2, "#old", "bob", "long ago"),
            record_in(3, "#dev", "System", "bob set the topic: from the cache"),
        ]);
        assert_eq!(titles(&app), ["#general", "#old", "#dev"]);
        assert_eq!(app.rooms.views()[2].topic, "from the cache");
        app.handle_client(Event::Version {
            version: "GC/3",
            rooms: true,
        });
        let listed = |dev: bool| {
            let mut list = vec![
                RoomInfo {
                    room: Room::general(),
                    kind: ListedKind::Public,
                    role: ListedRole::Member,
                    members: 4,
                    topic: String::new(),
                },
                RoomInfo {
                    room: room("#old"),
                    kind: ListedKind::Public,
                    role: ListedRole::Outside,
                    members: 2,
                    topic: String::new(),
                },
                RoomInfo {
                    room: room("#secret"),
                    kind: ListedKind::Private,
                    role: ListedRole::Invited,
                    members: 2,
                    topic: String::new(),
                },
                RoomInfo {
                    room: room("@alice+bob"),
                    kind: ListedKind::Direct,
                    role: ListedRole::Outside,
                    members: 2,
                    topic: String::new(),
                },
            ];
            if dev {
                list.push(RoomInfo {
                    room: room("#dev"),
                    kind: ListedKind::Public,
                    role: ListedRole::Member,
                    members: 2,
                    topic: "now".into(),
                });
            }
            list
        };
        app.handle_client(Event::RoomList(listed(true)));
        assert_eq!(
            titles(&app),
            ["#general", "#dev", "bob"],
            "#old was left long ago"
        );
        assert_eq!(app.rooms.views()[1].topic, "now");
        assert_eq!(app.rooms.views()[1].membership, Membership::Joined);
        assert_eq!(
            last_notice(&app),
            "you are invited to #secret: /join #secret to go in"
        );
        app.handle_client(Event::RoomList(listed(true)));
        let invitations = app
            .log()
            .entries()
            .iter()
            .filter(|e| e.searchable().contains("invited"))
            .count();
        assert_eq!(invitations, 1, "said once");

        // Put out of #dev: the view stays to read, marked; writing there is refused here.
        app.handle_client(Event::RoomList(listed(false)));
        let dev = &app.rooms.views()[1];
        assert_eq!(dev.membership, Membership::Left);
        assert!(
            dev.log
                .entries()
                .last()
                .unwrap()
                .searchable()
                .contains("not in #dev any more")
        );
        app.handle_key(alt('2'));
        let actions = submit(&mut app, "still here?");
        assert!(
            actions.iter().all(|a| !matches!(a, Action::Send { .. })),
            "{actions:?}"
        );
        assert_eq!(app.input.take(), "still here?");
        // /part closes it without asking.
        let actions = submit(&mut app, "/part");
        assert!(
            actions.iter().all(|a| !matches!(a, Action::Room(_))),
            "{actions:?}"
        );
        assert_eq!(titles(&app), ["#general", "bob"]);
    }

    #[test]
    fn the_notice_that_puts_you_out_marks_the_room_at_once() {
        let mut app = rooms_chat();
        app.add_records(&[
            record_in(1, "#dev", "bob", "x"),
            record_in(2, "#dev", "System", "alice was banned by bob: spam"),
        ]);
        let dev = &app.rooms.views()[1];
        assert_eq!(dev.membership, Membership::Left);
        assert!(
            dev.log
                .entries()
                .last()
                .unwrap()
                .searchable()
                .contains("/join #dev")
        );
        assert_eq!(dev.unread, 1, "the message counts, the notices do not");
        // Its own part: the notice may come after the view is closed; it does not reopen it.
        app.add_records(&[record_in(3, "#ops", "bob", "y")]);
        app.handle_client(Event::RoomDone {
            request: RoomRequest::Part { room: room("#ops") },
            notice_id: 4,
        });
        app.add_records(&[record_in(4, "#ops", "System", "alice left")]);
        assert_eq!(titles(&app), ["#general", "#dev"]);
    }

    #[test]
    fn an_older_server_shows_general_alone() {
        let mut app = chat();
        app.load_initial(&[record(1, "bob", "g"), record_in(2, "#dev", "bob", "x")]);
        app.handle_client(Event::Version {
            version: "GC/2",
            rooms: false,
        });
        app.handle_client(Event::State(ConnState::Active));
        assert_eq!(titles(&app), ["#general"]);
        let actions = app.take_actions();
        assert!(
            actions
                .iter()
                .all(|a| !matches!(a, Action::Rooms | Action::Watch(_) | Action::Who { .. })),
            "{actions:?}"
        );
        submit(&mut app, "/msg bob hi");
        assert_eq!(last_notice(&app), NO_ROOMS);
        app.input.take();
        let actions = submit(&mut app, "hello");
        assert!(matches!(&actions[..], [Action::Send { room, .. }] if room.is_general()));
        // Presence is #general's, with its notices, as before rooms.
        app.handle_client(Event::Presence {
            version: 1,
            users: vec![Username::new("bob").unwrap()],
        });
        assert!(app.take_actions().is_empty(), "no room list to ask for");
    }

    #[test]
    fn presence_is_per_room() {
        let mut app = rooms_chat();
        app.add_records(&[record_in(1, "#dev", "bob", "x")]);
        let names = |n: &[&str]| {
            n.iter()
                .map(|u| Username::new(*u).unwrap())
                .collect::<Vec<_>>()
        };
        app.handle_client(Event::Presence {
            version: 1,
            users: names(&["alice", "bob", "carol"]),
        });
        let actions = app.take_actions();
        assert!(
            actions.iter().any(|a| matches!(a, Action::Rooms)),
            "membership may have changed"
        );
        app.handle_client(Event::RoomPresence {
            room: room("#dev"),
            version: 1,
            users: names(&["bob", "alice"]),
        });
        assert_eq!(app.people().names().len(), 3, "#general: everyone online");
        app.handle_key(alt('2'));
        assert_eq!(app.people().names(), ["alice", "bob"]);
        let actions = submit(&mut app, "/who");
        assert!(matches!(&actions[..], [Action::Who { room }] if *room == self::room("#dev")));
        app.handle_client(Event::RoomPresence {
            room: room("#dev"),
            version: 2,
            users: names(&["bob"]),
        });
        assert_eq!(last_notice(&app), "online in #dev (1): bob");
        // Logins and logouts are told in #general only.
        app.handle_client(Event::Presence {
            version: 3,
            users: names(&["alice", "bob"]),
        });
        let later = app.now + LEAVE_GRACE;
        app.set_now(later);
        assert_eq!(last_notice(&app), "online in #dev (1): bob");
        assert_eq!(
            app.rooms.views()[0]
                .log
                .entries()
                .last()
                .unwrap()
                .searchable(),
            "carol left"
        );
    }

    #[test]
    fn tab_completes_commands_and_rooms() {
        let mut app = rooms_chat();
        app.add_records(&[record_in(1, "#dev", "bob", "x")]);
        type_str(&mut app, "/jo");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/join ");
        type_str(&mut app, "d");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/join #dev ");
        app.input.take();
        type_str(&mut app, "/m");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/m", "several fit: listed");
        assert_eq!(last_notice(&app), "commands: /me /msg /mute");
        type_str(&mut app, "s");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/msg ");
        // After /msg, names of people online anywhere.
        app.rooms.general_mut().people = People::Known(vec!["bob".into(), "carol".into()]);
        type_str(&mut app, "ca");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/msg carol ");
    }

    fn bodies(app: &App) -> Vec<String> {
        app.log()
            .entries()
            .iter()
            .filter_map(|e| match &e.kind {
                Kind::Message { body, .. } => Some(body.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn ignored_people_are_hidden_not_you_and_the_list_is_saved() {
        let mut app = rooms_chat();
        app.set_ignored(&["Mallory".into()]);
        assert_eq!(app.ignored(), ["mallory"]);
        app.add_records(&[
            record(1, "bob", "hi"),
            record(2, "MALLORY", "spam"),
            record(3, "alice", "mine"),
        ]);
        assert_eq!(bodies(&app), ["hi", "mine"], "any case");
        // No bell, no unread count, no view for a conversation of nothing but theirs.
        app.add_records(&[record_in(4, "@alice+mallory", "mallory", "psst")]);
        assert_eq!(titles(&app), ["#general"]);

        // /ignore: their messages leave the views now, and the list is to be saved.
        let actions = submit(&mut app, "/ignore BOB");
        assert!(
            matches!(&actions[..], [Action::SaveIgnored(list)] if list == &["bob", "mallory"]),
            "{actions:?}"
        );
        assert_eq!(bodies(&app), ["mine"]);
        assert!(last_notice(&app).starts_with("ignoring BOB: their messages are hidden"));
        app.add_records(&[record(5, "bob", "still here")]);
        assert_eq!(bodies(&app), ["mine"]);
        assert!(submit(&mut app, "/ignore bob").is_empty());
        assert_eq!(last_notice(&app), "you already ignore bob");
        // Never yourself.
        assert!(submit(&mut app, "/ignore Alice").is_empty());
        assert_eq!(last_notice(&app), "that is you: you cannot ignore yourself");
        assert_eq!(app.input.text(), "/ignore Alice", "left to fix");
        app.input.take();
        submit(&mut app, "/ignore");
        assert_eq!(last_notice(&app), "ignored (2): bob, mallory");

        // /unignore: their new messages are shown again.
        let actions = submit(&mut app, "/unignore bob");
        assert!(
            matches!(&actions[..], [Action::SaveIgnored(list)] if list == &["mallory"]),
            "{actions:?}"
        );
        app.add_records(&[record(6, "bob", "back")]);
        assert_eq!(bodies(&app), ["mine", "back"]);
        assert!(submit(&mut app, "/unignore bob").is_empty());
        assert_eq!(last_notice(&app), "you do not ignore bob");
    }

    #[test]
    fn a_page_of_ignored_messages_is_not_the_beginning_of_the_conversation() {
        let mut app = rooms_chat();
        app.set_ignored(&["mallory".into()]);
        app.add_records(&[record(300, "bob", "newest")]);
        app.handle_key(key(KeyCode::Home));
        let asked = |app: &mut App| {
            app.take_actions().into_iter().find_map(|a| match a {
                Action::LoadOlder { before_id, .. } => Some(before_id),
                _ => None,
            })
        };
        assert_eq!(asked(&mut app), Some(300));
        // A whole page from mallory: nothing shown, but the next page is asked below it.
        let page: Vec<Record> = (100..300).map(|id| record(id, "mallory", "x")).collect();
        app.add_older(&Room::general(), &page, true);
        assert!(!app.history_done());
        app.handle_key(key(KeyCode::Home));
        assert_eq!(asked(&mut app), Some(100));
        app.add_older(&Room::general(), &[record(1, "bob", "first")], true);
        assert_eq!(bodies(&app), ["first", "newest"]);
        app.add_older(&Room::general(), &[], true);
        assert!(app.history_done());
    }

    fn plugin_command(name: &str, args: &str, help: &str, plugin: &str) -> CommandInfo {
        CommandInfo {
            name: name.into(),
            args: args.into(),
            help: help.into(),
            plugin: plugin.into(),
        }
    }

    #[test]
    fn plugin_commands_run_are_in_help_and_complete_and_never_shadow_built_ins() {
        let mut app = rooms_chat();
        app.set_plugin_commands(vec![
            plugin_command("shout", "TEXT", "send TEXT in capitals", "shout"),
            plugin_command("help", "", "my own help", "rogue"),
            plugin_command("j", "", "an alias too", "rogue"),
        ]);
        // Refused at load, with a warning: built-in names and aliases stay built in.
        let names: Vec<&str> = app
            .plugin_commands()
            .iter()
            .map(|c| c.name.as_str())
            .collect();
        assert_eq!(names, ["shout"]);
        assert!(
            last_notice(&app).contains("plugin rogue: its command /j is refused"),
            "{}",
            last_notice(&app)
        );

        // Typed (any case): run by the plugin, in the room shown.
        let actions = submit(&mut app, "/SHOUT  hi there");
        match &actions[..] {
            [
                Action::Command {
                    room,
                    name,
                    args,
                    typed,
                },
            ] => {
                assert_eq!(room, &Room::general());
                assert_eq!((name.as_str(), args.as_str()), ("shout", "hi there"));
                assert_eq!(typed, "/SHOUT  hi there");
            }
            other => panic!("{other:?}"),
        }
        assert!(app.input.is_empty());
        // `//` still sends the text as it is.
        assert_eq!(sent(&mut app), Vec::<String>::new());
        type_str(&mut app, "//shout hi");
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(sent(&mut app), ["/shout hi"]);
        // A built-in name runs the built-in command.
        submit(&mut app, "/help");
        let help = last_notice(&app);
        assert!(help.starts_with("commands:"), "{help}");
        assert!(
            help.contains("\nplugin commands:\n  /shout TEXT               send TEXT in capitals (shout)\nkeys:"),
            "{help}"
        );
        assert!(!help.contains("my own help"), "{help}");

        // Tab completes it, and lists it among others that fit.
        type_str(&mut app, "/sh");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/shout ");
        app.input.take();
        type_str(&mut app, "/s");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(last_notice(&app), "commands: /search /shout");

        // A failure says which plugin, and gives the line back.
        app.input.take();
        app.command_failed(
            "/shout".into(),
            "shout",
            "shout",
            "/shout needs something to shout",
        );
        assert_eq!(
            last_notice(&app),
            "/shout (plugin shout): /shout needs something to shout"
        );
        assert_eq!(app.input.text(), "/shout");
        // Unknown to the plugins too: still unknown.
        app.input.take();
        assert!(submit(&mut app, "/frobnicate").is_empty());
        assert!(last_notice(&app).starts_with("unknown command /frobnicate"));
        // A plugin's notice is shown line by line, made harmless.
        app.plugin_notice("one\ntwo\u{1b}[31m");
        assert_eq!(last_notice(&app), "one\ntwo␛[31m");
    }

    #[test]
    fn tab_cycles_through_commands_and_rooms() {
        let mut app = rooms_chat();
        app.add_records(&[
            record_in(1, "#dev", "bob", "x"),
            record_in(2, "#devops", "bob", "y"),
        ]);
        type_str(&mut app, "/m");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/m", "several fit: listed first");
        assert_eq!(last_notice(&app), "commands: /me /msg /mute");
        for expected in ["/me ", "/msg ", "/mute ", "/me "] {
            app.handle_key(key(KeyCode::Tab));
            assert_eq!(app.input.text(), expected);
        }
        app.handle_key(key(KeyCode::BackTab));
        assert_eq!(app.input.text(), "/mute ");
        app.input.take();
        type_str(&mut app, "/join d");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/join #dev ");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/join #devops ");
        // A paste ends the cycle too.
        app.handle_paste("x");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/join #devops x");
    }

    /// A rooms chat with these notification rules, logged in when the server's newest id was
    /// `latest` (records up to it are the login's backlog).
    fn notifying(rules: super::super::notify::Rules, latest: u64) -> App {
        let mut app = rooms_chat();
        app.alerts = Alerts::new(rules);
        app.set_status(&session_status(latest, latest, true));
        app
    }

    #[test]
    fn live_mentions_and_direct_messages_ring_once_a_second_and_the_backlog_does_not() {
        use super::super::notify::Rules;
        let mut app = notifying(
            Rules {
                command: Some(vec!["notify".into()]),
                ..Rules::default()
            },
            10,
        );
        // The login's backlog (ids up to 10): missed, not news; no bell, no command.
        app.add_records(&[
            record(9, "bob", "alice: while you were away"),
            record_in(10, "@alice+bob", "bob", "psst"),
        ]);
        assert!(!app.alerts.take_bell());
        assert!(app.alerts.take_calls().is_empty());
        // Live: a plain message and one's own do nothing; a mention rings and is told.
        app.add_records(&[
            record(11, "bob", "hello all"),
            record(12, "alice", "alice here"),
            record(13, "carol", "ALICE: look \u{1b}[2J"),
        ]);
        assert!(app.alerts.take_bell());
        let calls = app.alerts.take_calls();
        assert_eq!(calls.len(), 1, "{calls:?}");
        assert_eq!(
            (calls[0].sender.as_str(), calls[0].room.as_str()),
            ("carol", "#general")
        );
        assert_eq!(
            calls[0].text, "ALICE: look \u{1b}[2J",
            "raw: made harmless when run"
        );
        // A direct message half a second later is told, but the bell waits a second.
        app.now += Duration::from_millis(500);
        app.add_records(&[record_in(14, "@alice+bob", "bob", "are you there?")]);
        assert!(!app.alerts.take_bell(), "at most once a second");
        assert_eq!(app.alerts.take_calls()[0].room, "@alice+bob");
        app.now += Duration::from_millis(500);
        app.add_records(&[record_in(15, "@alice+bob", "bob", "hello?")]);
        assert!(app.alerts.take_bell());
        assert_eq!(app.alerts.take_calls().len(), 1);
        // A record seen already (delivered again) and older pages are not news.
        app.add_records(&[record_in(15, "@alice+bob", "bob", "hello?")]);
        app.add_older(&Room::general(), &[record(5, "bob", "alice: old")], true);
        app.now += Duration::from_secs(5);
        assert!(!app.alerts.take_bell());
        assert!(app.alerts.take_calls().is_empty());

        // bell = all: every live message from someone else; off: none.
        let mut all = notifying(
            Rules {
                bell: crate::settings::Bell::All,
                ..Rules::default()
            },
            0,
        );
        all.add_records(&[record(1, "alice", "mine")]);
        assert!(!all.alerts.take_bell(), "not one's own");
        all.add_records(&[record(2, "bob", "hi")]);
        assert!(all.alerts.take_bell());
        let mut off = notifying(
            Rules {
                bell: crate::settings::Bell::Off,
                ..Rules::default()
            },
            0,
        );
        off.add_records(&[record(1, "bob", "alice!")]);
        assert!(!off.alerts.take_bell());
    }

    #[test]
    fn the_title_counts_what_is_unread_elsewhere() {
        let mut app = notifying(super::super::notify::Rules::default(), 0);
        assert_eq!(app.title(), "gc #general");
        app.add_records(&[
            record_in(1, "#dev", "bob", "hi"),
            record_in(2, "#dev", "bob", "alice: ping"),
            record_in(3, "@alice+bob", "bob", "psst"),
            record(4, "bob", "here, shown"),
        ]);
        assert_eq!(app.title(), "gc (3) [2 mentions] #general");
        app.handle_key(alt('2'));
        assert_eq!(app.title(), "gc (1) [1 mention] #dev");
        app.handle_key(alt('3'));
        assert_eq!(app.title(), "gc bob");
        let mut login = App::new("h", Zone::Local);
        login.prefill(Some("x\u{1b}"), false);
        assert_eq!(
            login.title(),
            "gc",
            "nothing remote before the conversation"
        );
    }

    #[test]
    fn the_read_marker_moves_when_the_view_is_seen_at_its_bottom() {
        let mut app = chat();
        let mut marks = Marks::new();
        marks.insert(Room::general(), 3);
        marks.insert(room("#dev"), 2);
        app.set_marks(marks);
        app.load_initial(&(1..=5).map(|i| record(i, "bob", "x")).collect::<Vec<_>>());
        // The line goes before the first record above the marker.
        assert_eq!(app.log().read_line(), Some(3));
        app.add_records(&[record_in(6, "#dev", "bob", "new in dev")]);
        let dev = app.rooms.find(&room("#dev")).unwrap();
        assert_eq!(
            app.rooms.views()[dev].log.read_line(),
            Some(2),
            "a view made later too"
        );
        assert!(app.take_changed_marks().is_none());

        // Shown and at the bottom: seen.
        app.mark_seen();
        assert_eq!(
            app.take_changed_marks().map(|m| m[&Room::general()]),
            Some(5)
        );
        assert!(app.take_changed_marks().is_none(), "taken");
        // Scrolled up, newer records are not seen.
        app.add_records(
            &(7..=60)
                .map(|i| record(i, "bob", "more"))
                .collect::<Vec<_>>(),
        );
        app.handle_key(key(KeyCode::PageUp));
        app.mark_seen();
        assert!(app.take_changed_marks().is_none());
        app.handle_key(key(KeyCode::End));
        app.mark_seen();
        assert_eq!(app.marks()[&Room::general()], 60);
        assert_eq!(app.marks()[&room("#dev")], 2, "not shown: not seen");
        // Leaving a view it was seen in takes its line away; the other keeps its own.
        app.show(dev);
        assert_eq!(app.rooms.views()[0].log.read_line(), None);
        assert_eq!(app.log().read_line(), Some(2));
        app.mark_seen();
        assert_eq!(app.marks()[&room("#dev")], 6);
    }

    fn file_line(name: &str, size: &str, hash: &ContentHash) -> String {
        format!("[file] {name} ({size} bytes) sha256:{hash}")
    }

    fn downloads(actions: Vec<Action>) -> Vec<(String, String, u64)> {
        actions
            .into_iter()
            .filter_map(|a| match a {
                Action::Download { hash, name, size } => Some((hash.to_string(), name, size)),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn upload_asks_for_the_file_in_the_room_shown_and_tab_completes_its_path() {
        let dir = tempfile::tempdir().unwrap();
        let base = dir.path().display().to_string();
        std::fs::create_dir(dir.path().join("docs")).unwrap();
        std::fs::write(dir.path().join("docs").join("report 2024.pdf"), b"x").unwrap();
        std::fs::write(dir.path().join("docs").join("report.txt"), b"x").unwrap();
        let mut app = rooms_chat();
        app.add_records(&[record_in(1, "#dev", "bob", "x")]);
        app.handle_key(alt('2'));
        assert_eq!(app.view().room, room("#dev"));
        app.take_actions();
        type_str(&mut app, &format!("/upload {base}/d"));
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), format!("/upload {base}/docs/"));
        // Into the directory at the next Tab: two fit, what they share goes in, they are listed.
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), format!("/upload {base}/docs/report"));
        assert_eq!(last_notice(&app), "files: report 2024.pdf  report.txt");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(
            app.input.text(),
            format!("/upload {base}/docs/report 2024.pdf")
        );
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), format!("/upload {base}/docs/report.txt"));
        app.handle_key(key(KeyCode::BackTab));
        let actions = submit(&mut app, "");
        let [Action::Upload { room: r, path }] = &actions[..] else {
            panic!("{actions:?}");
        };
        assert_eq!(*r, room("#dev"));
        assert_eq!(*path, dir.path().join("docs").join("report 2024.pdf"));
        assert!(matches!(
            &submit(&mut app, "/upload")[..],
            [] if last_notice(&app).starts_with("usage: /upload PATH")
        ));
        app.input.take();
        // Tab completes the command names too.
        type_str(&mut app, "/up");
        app.handle_key(key(KeyCode::Tab));
        assert_eq!(app.input.text(), "/upload ");
    }

    /// `/download …` typed: what it asks for (the line cleared even when refused).
    fn dl(app: &mut App, line: &str) -> Vec<(String, String, u64)> {
        let actions = submit(app, line);
        app.input.take();
        downloads(actions)
    }

    #[test]
    fn download_takes_the_newest_file_here_the_nth_a_hash_or_the_one_a_search_shows() {
        let a = ContentHash::of(b"a");
        let b = ContentHash::of(b"b");
        let elsewhere = ContentHash::of(b"c");
        let mut app = rooms_chat();
        assert!(dl(&mut app, "/download").is_empty());
        assert!(last_notice(&app).starts_with("no file shared in #general is loaded"));
        app.add_records(&[
            record_in(1, "#general", "bob", &file_line("a.txt", "1", &a)),
            record_in(2, "#general", "bob", "not a file"),
            record_in(3, "#general", "carol", &file_line("b.bin", "2,000", &b)),
            record_in(4, "#dev", "carol", &file_line("c.iso", "3", &elsewhere)),
        ]);
        let newest = (b.to_string(), "b.bin".to_owned(), 2000);
        assert_eq!(dl(&mut app, "/download"), std::slice::from_ref(&newest));
        assert_eq!(dl(&mut app, "/download 1"), std::slice::from_ref(&newest));
        assert_eq!(
            dl(&mut app, "/download 2"),
            [(a.to_string(), "a.txt".to_owned(), 1)]
        );
        assert!(dl(&mut app, "/download 3").is_empty());
        assert!(last_notice(&app).contains("N from 1 (the newest) to 2"));
        // A hash, whole or its start, of a file shown in any conversation.
        let c = (elsewhere.to_string(), "c.iso".to_owned(), 3);
        let start = &elsewhere.to_string()[..10];
        assert_eq!(
            dl(&mut app, &format!("/download sha256:{start}")),
            std::slice::from_ref(&c)
        );
        assert_eq!(
            dl(
                &mut app,
                &format!("/download {}", elsewhere.to_string().to_uppercase())
            ),
            [c]
        );
        // A whole hash not shown: saved under its start.
        let other = ContentHash::of(b"d").to_string();
        assert_eq!(
            dl(&mut app, &format!("/download {other}")),
            [(other.clone(), format!("sha256-{}", &other[..16]), 0)]
        );
        assert!(dl(&mut app, "/download xyz!").is_empty());
        assert!(last_notice(&app).starts_with("usage: /download [N|HASH]"));
        assert!(dl(&mut app, &format!("/download {}", &other[..12])).is_empty());
        assert!(last_notice(&app).starts_with("no file shown here starts with"));
        // A search that shows a file line: /download and Enter take that one.
        submit(&mut app, "/search a.txt");
        let a_line = (a.to_string(), "a.txt".to_owned(), 1);
        assert_eq!(dl(&mut app, "/download"), std::slice::from_ref(&a_line));
        submit(&mut app, "/search a.txt");
        assert_eq!(dl(&mut app, ""), [a_line]);
        // Enter on an empty line does nothing otherwise.
        submit(&mut app, "/search not a file");
        assert!(submit(&mut app, "").is_empty());
    }

    #[test]
    fn esc_cancels_the_newest_transfer_only_when_nothing_else_wants_it() {
        let mut app = rooms_chat();
        for (id, name) in [(1, "one"), (2, "two")] {
            app.transfer_started(Transfer::new(
                id,
                Direction::Upload,
                name.into(),
                10,
                Room::general(),
            ));
        }
        let cancels = |app: &mut App| -> Vec<u64> {
            app.take_actions()
                .into_iter()
                .filter_map(|a| match a {
                    Action::CancelTransfer(id) => Some(id),
                    _ => None,
                })
                .collect()
        };
        app.add_records(&[record_in(1, "#general", "bob", "hello")]);
        // A search: Esc ends it, and cancels nothing.
        submit(&mut app, "/search hello");
        app.handle_key(key(KeyCode::Esc));
        assert!(app.search.is_none());
        assert!(cancels(&mut app).is_empty());
        // Something typed: Esc stays Alt for Enter.
        type_str(&mut app, "draft");
        app.handle_key(key(KeyCode::Esc));
        app.handle_key(key(KeyCode::Enter));
        assert_eq!(app.input.text(), "draft\n");
        assert!(cancels(&mut app).is_empty());
        app.input.take();
        // Nothing typed: the newest transfer, then the next.
        app.handle_key(key(KeyCode::Esc));
        assert_eq!(cancels(&mut app), [2]);
        app.handle_key(key(KeyCode::Esc));
        assert_eq!(cancels(&mut app), [1]);
        app.handle_key(key(KeyCode::Esc));
        assert!(cancels(&mut app).is_empty());
        assert!(app.input.is_empty());
    }

    #[test]
    fn a_transfers_end_is_said_where_it_began_and_a_resumed_one_says_so() {
        let hash = ContentHash::of(b"x");
        let mut app = rooms_chat();
        app.add_records(&[record_in(1, "#dev", "bob", &file_line("x.bin", "1", &hash))]);
        app.handle_key(alt('2'));
        app.transfer_started(Transfer::new(
            7,
            Direction::Upload,
            "up.txt".into(),
            0,
            room("#dev"),
        ));
        app.transfer_started(Transfer::new(
            8,
            Direction::Download,
            "x.bin".into(),
            1,
            room("#dev"),
        ));
        app.handle_key(alt('1'));
        app.handle_client(Event::Transfer(TransferEvent::Uploaded {
            id: 7,
            name: "up.txt".into(),
            hash,
            size: 2_100_000,
            record_id: 9,
            resumed_from: 0,
        }));
        app.handle_client(Event::Transfer(TransferEvent::Failed {
            id: 8,
            direction: Direction::Download,
            name: "x.bin".into(),
            error: ClientError::Closed,
        }));
        assert!(app.transfers.is_empty());
        let dev = &app.rooms.views()[1];
        let said: Vec<&str> = dev.log.entries().iter().map(Entry::searchable).collect();
        assert_eq!(said[1], "shared up.txt (2.1 MB)");
        assert!(
            said[2].starts_with("download of x.bin failed: "),
            "{said:?}"
        );
        // Transfers that went on from what was there before say from where.
        app.handle_client(Event::Transfer(TransferEvent::Downloaded {
            id: 9,
            hash,
            path: PathBuf::from("/tmp/dl/x.bin"),
            size: 1_500_000,
            resumed_from: 600_000,
        }));
        assert_eq!(
            last_notice(&app),
            "saved x.bin (1.5 MB, resumed at 600 kB) to /tmp/dl/x.bin"
        );
        app.handle_client(Event::Transfer(TransferEvent::Uploaded {
            id: 10,
            name: "big.bin".into(),
            hash,
            size: 3_100_000,
            record_id: 11,
            resumed_from: 1_000_000,
        }));
        assert_eq!(
            last_notice(&app),
            "shared big.bin (3.1 MB, resumed at 1.0 MB)"
        );
        // Content the server had whole moved nothing: nothing to say about resuming.
        app.handle_client(Event::Transfer(TransferEvent::Uploaded {
            id: 12,
            name: "big.bin".into(),
            hash,
            size: 3_100_000,
            record_id: 13,
            resumed_from: 3_100_000,
        }));
        assert_eq!(last_notice(&app), "shared big.bin (3.1 MB)");
    }
}
