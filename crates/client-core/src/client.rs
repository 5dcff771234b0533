//! The handle a user interface holds: start, send, query, close.

use std::path::Path;
use std::sync::Arc;
use std::sync::mpsc::{self, Receiver};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gc_plugin::{Outcome, Plugins};
use gc_protocol::{CallbackPorts, ClientMsgId, Record, Room, RoomRole, Username, Visibility};
use gc_store::{KeptMessage, load_outbox, outbox_path, save_outbox};

use crate::callbacks::{CallbackServer, Listeners};
use crate::config::{ClientConfig, Password};
use crate::connection;
use crate::control::{Command, Lifecycle, PasswordChange};
use crate::error::ClientError;
use crate::event::{ConnState, Event, NoticeLevel, Status};
use crate::outbox::PendingMessage;
use crate::records::RecordStore;
use crate::rooms::RoomRequest;
use crate::state::{ClientState, ClientTlsState, EventSink, Pins};
use crate::trust::ClientTls;

/// What [`Client::close`] leaves behind.
#[derive(Debug, Default)]
pub struct CloseReport {
    /// Messages the server never acknowledged, oldest first.
    pub unsent: Vec<PendingMessage>,
    /// Whether `Bye` was acknowledged.
    pub bye_sent: bool,
}

/// A running client: three callback listeners and a connection thread that logs in, stays
/// logged in, and sends the outbox. Events arrive on the channel (or sink) given at start.
///
/// Threads: `gc-conn` (state machine and sending), `gc-accept-{auth,heartbeat,delivery}` (one
/// per listener), and one short-lived `gc-{role}-{peer}` thread per accepted connection. All stop
/// and are joined by [`Client::close`] (or on drop).
#[derive(Debug)]
pub struct Client {
    shared: Arc<ClientState>,
    conn_thread: Option<JoinHandle<()>>,
    callbacks: Option<CallbackServer>,
    transfers: crate::transfer::Transfers,
}

impl Client {
    /// Binds the three listeners, opens the cache, and starts logging in. Events go to the
    /// returned channel.
    pub fn start(config: ClientConfig) -> Result<(Self, Receiver<Event>), ClientError> {
        let (tx, rx) = mpsc::channel();
        let client = Self::start_with_sink(
            config,
            Box::new(move |event| {
                // A UI that dropped its receiver no longer wants events.
                let _ = tx.send(event);
            }),
        )?;
        Ok((client, rx))
    }

    /// Like [`Client::start`], handing each event to `sink` instead (e.g. to merge them into a
    /// UI's own channel). The sink runs on the client's threads: it must be quick and must not
    /// call back into the client.
    pub fn start_with_sink(config: ClientConfig, sink: EventSink) -> Result<Self, ClientError> {
        config.validate()?;
        let servers = config.servers()?;
        let username = Username::new(config.username.clone())
            .map_err(|e| ClientError::Config(e.to_string()))?;
        // Listeners first: the server's first callback can never race them.
        let (listeners, ports) = Listeners::bind(&config)?;
        let records = match &config.cache_path {
            Some(path) => {
                let (store, summary) = RecordStore::open(path)?;
                for damaged in &summary.damaged {
                    tracing::warn!(
                        "the cache {} had damaged lines; they were moved to {}.corrupt",
                        damaged.display(),
                        damaged.display()
                    );
                }
                tracing::info!(
                    "cache {}: {} records in {} room(s), cursor {}",
                    path.display(),
                    summary.records,
                    summary.rooms + 1,
                    store.cursor()
                );
                store
            }
            None => RecordStore::in_memory(),
        };
        tracing::info!(
            "listening for callbacks on ports {} (auth), {} (heartbeat), {} (delivery)",
            ports.auth,
            ports.heartbeat,
            ports.delivery
        );
        let plugins = match &config.mods_dir {
            Some(dir) => Plugins::load_dir(dir).0,
            None => Plugins::none(),
        };
        let tls = match &config.tls {
            ClientTls::Off => None,
            ClientTls::Pinned(pin) => Some(ClientTlsState::new(Pins::All(pin.clone()))?),
            ClientTls::PerInstance(pins) => {
                if pins.len() != servers.len() {
                    return Err(ClientError::Config(format!(
                        "{} certificate pins for {} servers",
                        pins.len(),
                        servers.len()
                    )));
                }
                Some(ClientTlsState::new(Pins::Each(pins.clone()))?)
            }
        };
        let kept = config
            .cache_path
            .as_deref()
            .map(load_kept)
            .unwrap_or_default();
        let shared = Arc::new(ClientState::new(
            config, username, ports, records, sink, plugins, tls,
        ));
        if !kept.is_empty() {
            // First in the outbox, under their first ids: the server stores each once, also one
            // whose earlier attempt did reach it.
            let mut ctl = shared.ctl();
            let n = kept.len();
            for m in kept {
                if let Err(e) = ctl.queue_message(m.client_msg_id, m.room, m.text) {
                    tracing::warn!("a message kept from the last run cannot be queued: {e}");
                }
            }
            drop(ctl);
            shared.notice(
                NoticeLevel::Info,
                format!("{n} message(s) kept unacknowledged by the last run will be sent now"),
            );
        }
        let mut callbacks = CallbackServer::start(&shared, listeners)?;
        let sh = Arc::clone(&shared);
        let conn_thread = thread::Builder::new()
            .name("gc-conn".into())
            .spawn(move || connection::run(&sh));
        let conn_thread = match conn_thread {
            Ok(h) => h,
            Err(source) => {
                callbacks.stop(&shared);
                return Err(ClientError::Thread {
                    name: "gc-conn".into(),
                    source,
                });
            }
        };
        Ok(Self {
            shared,
            conn_thread: Some(conn_thread),
            callbacks: Some(callbacks),
            transfers: crate::transfer::Transfers::default(),
        })
    }

    /// The ports the client listens on.
    pub fn ports(&self) -> CallbackPorts {
        self.shared.ports
    }

    /// The cache file, if there is one (it may have been replaced after a server reset).
    pub fn cache_path(&self) -> Option<std::path::PathBuf> {
        self.shared
            .records()
            .cache_path()
            .map(std::path::Path::to_path_buf)
    }

    /// The username, as configured.
    pub fn username(&self) -> &Username {
        &self.shared.username
    }

    /// Queues a message for `#general` and returns its id: [`Client::send_to`] `#general`.
    pub fn send(&self, text: impl Into<String>) -> Result<ClientMsgId, ClientError> {
        self.send_to(Room::general(), text)
    }

    /// Queues a message for `room` (a room, or a direct conversation: see
    /// [`Client::direct_room`]) and returns its id (the same id is used for every resend, into
    /// the same room, so the server stores it once). The plugins' `on_message_send` may rewrite
    /// or block it first; then it is checked: not empty, no NUL, at most the configured size.
    /// A room other than `#general` on a server known to serve none is refused
    /// ([`ClientError::NoRooms`]); one queued before the server's version was known is given up
    /// with [`crate::Event::Rejected`] (`version`) if the session turns out to have no rooms.
    /// The server's refusals (not in the room, muted, banned, no such room) arrive as
    /// [`crate::Event::Rejected`] with its text.
    pub fn send_to(&self, room: Room, text: impl Into<String>) -> Result<ClientMsgId, ClientError> {
        let text = match self
            .shared
            .plugins
            .message_send(room.as_str(), &text.into())
        {
            Outcome::Deliver(text) => text,
            Outcome::Block { plugin, reason } => {
                return Err(ClientError::Blocked { plugin, reason });
            }
        };
        validate_message(&text, self.shared.config.max_message_bytes)?;
        let id = ClientMsgId::random().map_err(|_| ClientError::Random)?;
        self.shared.ctl().queue_message(id.clone(), room, text)?;
        self.shared.notify();
        Ok(id)
    }

    /// Shares the file at `path` in `room` (GC/5): hashes it, uploads it on a connection of its
    /// own (resuming after a lost connection), and the server announces it with a record.
    /// Returns the transfer's id; progress and the outcome arrive as [`Event::Transfer`].
    pub fn upload(
        &self,
        room: Room,
        path: impl Into<std::path::PathBuf>,
    ) -> Result<u64, ClientError> {
        let path = path.into();
        let meta = std::fs::metadata(&path).map_err(|source| ClientError::File {
            action: "read",
            path: path.clone(),
            source,
        })?;
        if !meta.is_file() {
            return Err(ClientError::InvalidRequest(format!(
                "{} is not a regular file",
                path.display()
            )));
        }
        self.check_files()?;
        let job = crate::transfer::UploadJob { path, room };
        self.transfers.start(
            &self.shared,
            crate::transfer::Direction::Upload,
            move |shared, id, cancel| crate::transfer::upload(shared, id, cancel, job),
        )
    }

    /// Downloads the shared file `hash` to `target` (GC/5), which must not exist: it is written
    /// to [`crate::part_path`] beside it (`target.<16 hex digits of the hash>.part`) and renamed
    /// when complete and verified; a `.part` an earlier download of it left there, in this run or
    /// another, is resumed ([`crate::download_path`] finds one). Returns the transfer's id; progress and the outcome arrive as
    /// [`Event::Transfer`].
    pub fn download(
        &self,
        hash: gc_protocol::ContentHash,
        target: impl Into<std::path::PathBuf>,
    ) -> Result<u64, ClientError> {
        let target = target.into();
        if target.exists() {
            return Err(ClientError::FileExists(target));
        }
        self.check_files()?;
        let job = crate::transfer::DownloadJob { hash, target };
        self.transfers.start(
            &self.shared,
            crate::transfer::Direction::Download,
            move |shared, id, cancel| crate::transfer::download(shared, id, cancel, job),
        )
    }

    /// Cancels transfer `id` (an upload keeps what the server has, a download its `.part`, for
    /// a later resume); whether it was running.
    pub fn cancel_transfer(&self, id: u64) -> bool {
        self.transfers.cancel(id)
    }

    /// Whether the server shares files (GC/5): `None` until a version check answered.
    pub fn files_available(&self) -> Option<bool> {
        self.shared.ctl().files()
    }

    fn check_files(&self) -> Result<(), ClientError> {
        self.shared.ctl().check_files()
    }

    /// The commands the client plugins add (`/shout TEXT`), in load order: for a front end's
    /// help and completion. A front end that has commands of its own keeps those first (a
    /// plugin's command of the same name is never run).
    pub fn plugin_commands(&self) -> Vec<gc_plugin::CommandInfo> {
        self.shared.plugins.commands()
    }

    /// Runs the plugin command `/name args` typed in `room` (`name` without its slash): `None`
    /// when no plugin adds it. What it asks for is for the front end to do: a
    /// [`gc_plugin::CommandOutcome::Send`] text goes through [`Client::send_to`] like a typed
    /// message. Waits for the plugin at most its hook limit.
    pub fn run_command(
        &self,
        room: &Room,
        name: &str,
        args: &str,
    ) -> Option<gc_plugin::CommandOutcome> {
        self.shared.plugins.run_command(room.as_str(), name, args)
    }

    /// The direct conversation between this account and `user` (`/msg user text` is
    /// `send_to(direct_room(user)?, text)`); an error for this account itself.
    pub fn direct_room(&self, user: &Username) -> Result<Room, ClientError> {
        Room::direct(&self.shared.username, user).map_err(|_| {
            ClientError::InvalidRequest(format!(
                "{user} is this account: a direct conversation is between two accounts"
            ))
        })
    }

    /// Asks for up to `limit` (at most 1000) records of `#general` older than `before_id` (0:
    /// the newest held ones and older): [`Client::history_in`] `#general`.
    pub fn history(&self, before_id: u64, limit: u32) -> Result<(), ClientError> {
        self.history_in(Room::general(), before_id, limit)
    }

    /// Asks for up to `limit` (at most 1000) records of `room` older than `before_id` (0: the
    /// newest held ones and older; never above the cursor: newer ones come by delivery). The
    /// answer comes as [`crate::Event::History`] once logged in; records at or below the cursor
    /// go to the room's cache. A front end asks this when it opens a room it has just joined
    /// (what was said before the join is history, not delivered).
    pub fn history_in(&self, room: Room, before_id: u64, limit: u32) -> Result<(), ClientError> {
        self.command(Command::History {
            room,
            before_id,
            limit,
        })
    }

    /// Asks who is online. The answer comes as [`crate::Event::Presence`] once logged in.
    pub fn who(&self) -> Result<(), ClientError> {
        self.command(Command::Who { room: None })
    }

    /// Asks which members of `room` are online. The answer comes as
    /// [`crate::Event::RoomPresence`] once logged in.
    pub fn who_in(&self, room: Room) -> Result<(), ClientError> {
        self.command(Command::Who { room: Some(room) })
    }

    /// Asks again which members of these rooms are online whenever presence changes (a login,
    /// a logout, someone joining or leaving a room), as [`crate::Event::RoomPresence`]: the
    /// rooms a front end shows. Replaces the rooms given before; `#general` is always followed
    /// ([`crate::Event::Presence`]).
    pub fn watch_presence(&self, rooms: Vec<Room>) {
        self.shared.ctl().watch(rooms);
    }

    /// Asks for the list of rooms: this account's rooms and direct conversations, the public
    /// rooms, and those it is invited to. The answer comes as [`crate::Event::RoomList`].
    pub fn rooms(&self) -> Result<(), ClientError> {
        self.command(Command::Rooms)
    }

    /// Asks the server for a room request (the methods below are shorthands). It is checked
    /// first ([`RoomRequest::check`]); the answer comes as [`crate::Event::RoomDone`] or
    /// [`crate::Event::Refused`] (with the server's code and text: `no-room`, `forbidden`,
    /// `exists`, `unknown-user`, `rate-limited`, …). On a server known to serve no rooms:
    /// [`ClientError::NoRooms`].
    pub fn room_request(&self, request: RoomRequest) -> Result<(), ClientError> {
        request.check()?;
        self.command(Command::Room(request))
    }

    /// Creates `room`, public or private, with `topic` (empty: none); this account owns it.
    pub fn create(
        &self,
        room: Room,
        visibility: Visibility,
        topic: impl Into<String>,
    ) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Create {
            room,
            visibility,
            topic: topic.into(),
        })
    }

    /// Joins a public room, or a private one this account is invited to. Its records are
    /// delivered from now on; what was said before is [`Client::history_in`].
    pub fn join(&self, room: Room) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Join { room })
    }

    /// Leaves `room` (never `#general`).
    pub fn part(&self, room: Room) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Part { room })
    }

    /// Invites `user` into `room` (moderators and owners).
    pub fn invite(&self, room: Room, user: Username) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Invite {
            room,
            username: user,
        })
    }

    /// Sets `room`'s topic (owners); empty clears it.
    pub fn topic(&self, room: Room, topic: impl Into<String>) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Topic {
            room,
            topic: topic.into(),
        })
    }

    /// Makes `room` public or private (owners).
    pub fn privacy(&self, room: Room, visibility: Visibility) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Privacy { room, visibility })
    }

    /// Gives `user` a role in `room` (owners).
    pub fn role(&self, room: Room, user: Username, role: RoomRole) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Role {
            room,
            username: user,
            role,
        })
    }

    /// Puts `user` out of `room` (moderators and owners, on lower ranks); `reason` may be empty.
    pub fn kick(
        &self,
        room: Room,
        user: Username,
        reason: impl Into<String>,
    ) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Kick {
            room,
            username: user,
            reason: reason.into(),
        })
    }

    /// Keeps `user` from posting in `room` for `seconds` (at most a year); `0` lifts the mute.
    pub fn mute(
        &self,
        room: Room,
        user: Username,
        seconds: u32,
        reason: impl Into<String>,
    ) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Mute {
            room,
            username: user,
            seconds,
            reason: reason.into(),
        })
    }

    /// Puts `user` out of `room` and keeps them out.
    pub fn ban(
        &self,
        room: Room,
        user: Username,
        reason: impl Into<String>,
    ) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Ban {
            room,
            username: user,
            reason: reason.into(),
        })
    }

    /// Lifts `user`'s ban from `room`.
    pub fn unban(&self, room: Room, user: Username) -> Result<(), ClientError> {
        self.room_request(RoomRequest::Unban {
            room,
            username: user,
        })
    }

    /// GC/4: marks the account away with `message` (may be empty; at most 256 bytes), shown
    /// beside the name in everyone's `Who`. Kept and set again after each login until
    /// [`Client::back`]; sending a message does not clear it. The answer comes as
    /// [`crate::Event::AccountDone`]; on a server without GC/4, [`ClientError::NotSupported`]
    /// (or [`crate::Event::Refused`] when that was not known yet).
    pub fn away(&self, message: impl Into<String>) -> Result<(), ClientError> {
        let message = message.into();
        if message.len() > gc_protocol::limits::MAX_AWAY_BYTES {
            return Err(ClientError::InvalidRequest(format!(
                "an away message is at most {} bytes",
                gc_protocol::limits::MAX_AWAY_BYTES
            )));
        }
        self.command(Command::Away {
            message: Some(message),
        })
    }

    /// GC/4: the account is no longer away (see [`Client::away`]).
    pub fn back(&self) -> Result<(), ClientError> {
        self.command(Command::Away { message: None })
    }

    /// GC/4: changes the account's password from `current` to `new` over the session: the
    /// client derives the new verifier (fresh salt) and proves `current` over a nonce of the
    /// server's; neither password is sent. `new` must have at least 8 characters. The answer
    /// comes as [`crate::Event::AccountDone`] (the next logins use `new`) or
    /// [`crate::Event::Refused`] (`auth`: `current` is wrong). Other sessions of the account
    /// keep running.
    pub fn passwd(&self, current: Password, new: Password) -> Result<(), ClientError> {
        gc_protocol::limits::check_new_password(new.expose())
            .map_err(ClientError::InvalidRequest)?;
        self.command(Command::Passwd(PasswordChange { current, new }))
    }

    /// The away message set with [`Client::away`] (`None`: not away).
    pub fn away_message(&self) -> Option<String> {
        self.shared.ctl().away().map(str::to_owned)
    }

    /// Whether the server speaks GC/4 (`/passwd`, `/away`): `None` until the first version
    /// check answered.
    pub fn gc4_available(&self) -> Option<bool> {
        self.shared.ctl().gc4()
    }

    /// Whether the server serves rooms (GC/3): `None` until the first version check answered
    /// (then [`crate::Event::Version`] says so too).
    pub fn rooms_available(&self) -> Option<bool> {
        self.shared.ctl().rooms()
    }

    fn command(&self, command: Command) -> Result<(), ClientError> {
        self.shared.ctl().queue_command(command)?;
        self.shared.notify();
        Ok(())
    }

    /// The messages waiting for acknowledgement, oldest first (a UI shows them dimmed).
    pub fn outbox(&self) -> Vec<PendingMessage> {
        self.shared.ctl().outbox.snapshot()
    }

    /// Drops the session and logs in again now; after a fatal error, tries again.
    pub fn reconnect(&self) {
        self.shared.ctl().request_reconnect();
        self.shared.notify();
    }

    /// The connection state.
    pub fn state(&self) -> ConnState {
        self.shared.ctl().state()
    }

    /// A snapshot for a status bar.
    pub fn status(&self) -> Status {
        self.shared.status()
    }

    /// `#general`'s records already held: [`Client::cached_in`] `#general`.
    pub fn cached(&self, before_id: u64, limit: usize) -> Vec<Record> {
        self.cached_in(&Room::general(), before_id, limit)
    }

    /// `room`'s records already held (from the cache), newest `limit` below `before_id` (0: the
    /// newest), ascending: scrollback without asking the server.
    pub fn cached_in(&self, room: &Room, before_id: u64, limit: usize) -> Vec<Record> {
        let records = self.shared.records().before(room, before_id, limit);
        self.shared.for_display(records)
    }

    /// The rooms of which records are held, `#general` first: what a room list can show before
    /// the server answers [`Client::rooms`].
    pub fn cached_rooms(&self) -> Vec<Room> {
        self.shared.records().rooms()
    }

    /// Highest record id the server acknowledged for this client's messages (0: none).
    pub fn acked_max(&self) -> u64 {
        self.shared.ctl().acked_max()
    }

    /// Waits until the outbox is empty, up to `timeout`, or until the client gives up (fatal
    /// error, closed). Returns whether it is empty.
    pub fn wait_outbox_empty(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut ctl = self.shared.ctl();
        loop {
            if ctl.outbox.is_empty() {
                return true;
            }
            if ctl.stopped_trying() || Instant::now() >= deadline {
                return false;
            }
            self.shared.wait_until(&mut ctl, deadline);
        }
    }

    /// Closes the client: optionally waits up to `drain` for the outbox to empty, says `Bye` if
    /// `bye` and logged in, stops and joins every thread, and returns what was never
    /// acknowledged.
    pub fn close(mut self, bye: bool, drain: Option<Duration>) -> CloseReport {
        if let Some(timeout) = drain {
            self.wait_outbox_empty(timeout);
        }
        self.stop(bye)
    }

    /// [`Client::close`] with `Bye` and no drain.
    pub fn shutdown(self) -> CloseReport {
        self.close(true, None)
    }

    fn stop(&mut self, bye: bool) -> CloseReport {
        // Transfers first: they use the session, and each keeps what it did for a resume.
        self.transfers.stop();
        {
            let mut ctl = self.shared.ctl();
            ctl.request_close(bye);
            if ctl.life() == (Lifecycle::Closing { bye: false }) {
                // No `Bye` to say: cut whatever the connection thread is waiting on.
                self.shared.sockets.stop();
            }
            self.shared.notify();
        }
        if let Some(handle) = self.conn_thread.take()
            && handle.join().is_err()
        {
            tracing::error!("the connection thread panicked");
        }
        if let Some(mut callbacks) = self.callbacks.take() {
            callbacks.stop(&self.shared);
        }
        self.shared.records().sync();
        let mut ctl = self.shared.ctl();
        let unsent = ctl.outbox.take_all();
        if !unsent.is_empty() {
            tracing::warn!("{} message(s) were never acknowledged", unsent.len());
        }
        if let Some(cache) = &self.shared.config.cache_path {
            keep(cache, &unsent);
        }
        CloseReport {
            unsent,
            bye_sent: ctl.bye_sent(),
        }
    }

    /// Emits a notice as if the client had (for front ends that report their own problems in
    /// the same stream).
    pub fn notice(&self, level: NoticeLevel, text: impl Into<String>) {
        self.shared.notice(level, text);
    }
}

impl Drop for Client {
    fn drop(&mut self) {
        if self.conn_thread.is_some() || self.callbacks.is_some() {
            self.stop(false);
        }
    }
}

/// The messages the last run on the cache at `cache` kept unacknowledged (none if it kept none
/// or its file cannot be read: that is said in the log, and the file is left as it is).
fn load_kept(cache: &Path) -> Vec<KeptMessage> {
    let path = outbox_path(cache);
    match load_outbox(&path) {
        Ok((kept, unread)) => {
            for line in &unread {
                tracing::warn!(
                    "{} line {}: {}; that message is not sent again",
                    path.display(),
                    line.line_number,
                    line.reason
                );
            }
            kept
        }
        Err(e) => {
            tracing::warn!("the messages kept from the last run cannot be read: {e}");
            Vec::new()
        }
    }
}

/// Keeps `unsent` beside the cache at `cache` for the next run (or forgets what was kept when
/// everything went out).
fn keep(cache: &Path, unsent: &[PendingMessage]) {
    let kept: Vec<KeptMessage> = unsent
        .iter()
        .map(|m| KeptMessage {
            client_msg_id: m.client_msg_id.clone(),
            room: m.room.clone(),
            text: m.text.clone(),
        })
        .collect();
    let path = outbox_path(cache);
    match save_outbox(&path, &kept) {
        Ok(()) if !kept.is_empty() => tracing::info!(
            "{} unacknowledged message(s) kept in {} for the next run",
            kept.len(),
            path.display()
        ),
        Ok(()) => {}
        Err(e) => tracing::error!("cannot keep the unacknowledged messages for the next run: {e}"),
    }
}

/// Checks a message before it is queued.
pub fn validate_message(text: &str, max_bytes: usize) -> Result<(), ClientError> {
    if text.is_empty() {
        return Err(ClientError::InvalidMessage(
            "it is empty; type something first".into(),
        ));
    }
    if text.contains('\0') {
        return Err(ClientError::InvalidMessage(
            "it contains a NUL character, which the server refuses".into(),
        ));
    }
    if text.len() > max_bytes {
        return Err(ClientError::InvalidMessage(format!(
            "it is {} bytes; at most {max_bytes} bytes fit in one message; split it into parts",
            text.len()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn message_validation() {
        validate_message("hi", 10).unwrap();
        validate_message(&"x".repeat(10), 10).unwrap();
        assert!(
            validate_message("", 10)
                .unwrap_err()
                .to_string()
                .contains("empty")
        );
        assert!(
            validate_message("a\0b", 10)
                .unwrap_err()
                .to_string()
                .contains("NUL")
        );
        let err = validate_message(&"é".repeat(6), 10)
            .unwrap_err()
            .to_string();
        assert!(err.contains("12 bytes"), "{err}");
    }
}
