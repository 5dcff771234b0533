//! Messages in PostgreSQL, shared by every instance: `gc_messages` and `gc_sequence`.
//!
//! # Ids and order
//! An append (the database function `gc_append`, schema version 4, called once per group
//! commit) locks the one row of `gc_sequence` for the rest of its transaction: it takes its
//! ids from there, and the next appender (of any instance) gets the row only after this one
//! committed or rolled back. So ids are dense, and commit order is id order — a reader never
//! sees id N+1 while N is still to come. An instance keeps up to two group commits at the
//! database at once (two writer connections): the second waits on that lock while the first
//! flushes its WAL, so the database never idles between commits waiting for the instance.
//! Either may be answered first; their records enter the tail in id order all the same.
//!
//! # Exactly once
//! A unique index on (user, client-msg-id) is the dedupe: inside the locked transaction each
//! pair is looked up first, so a retry through any instance returns the first record.
//!
//! # Readers and wake-ups
//! Each instance keeps the newest records in memory (the tail) and serves heartbeats from it;
//! older cursors are answered by a query. A commit sends `NOTIFY gc_messages`; each instance's
//! follower thread `LISTEN`s, fetches what is new in id order, adds it to the tail and calls the
//! [`Waker`] so the heartbeat threads that are owed the records wake within milliseconds. The
//! instance that appended publishes its own records at once (after any it had not seen yet);
//! its follower reads the newest id from the notification's payload and fetches nothing when
//! the tail already has it, so a commit is not read back by the instance that made it.
//!
//! # When the database is away
//! Appends fail with [`StoreError::Unavailable`] (the client keeps the message and retries with
//! the same client-msg-id, so an append whose commit was lost in transit is not stored twice);
//! heartbeats go on from the tail; the follower reconnects with a growing pause and catches up.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gc_protocol::types::{ClientMsgId, Record, Room, Timestamp, Username};
use gc_store::{
    Appended, Arrived, MAX_BODY_BYTES, MessageLog, Page, RoomSpan, StoreError, Waker, encoded_len,
};
use parking_lot::{Condvar, Mutex, RwLock};
use postgres::fallible_iterator::FallibleIterator as _;
use postgres::{Client, Row};

use crate::conn::Conn;
use crate::error::PgError;
use crate::presence::{CHANNEL as PRESENCE_CHANNEL, PgPresence};
use crate::rooms::CHANNEL as ROOMS_CHANNEL;
use crate::url::DbUrl;

/// The channel commits are announced on.
const CHANNEL: &str = "gc_messages";
/// Records fetched per query when catching up.
const CATCH_UP_BATCH: i64 = 5_000;
/// Half the most a room field adds to a `Rec` frame, as the flat file counts it.
const ROOM_FIELD_HALF: u64 = 34;
/// The follower's longest wait for a notification: a backstop that catches up even if a
/// notification was missed (a reconnect), not the way records normally arrive.
const LISTEN_BACKSTOP: Duration = Duration::from_secs(2);
/// The follower's longest pause between reconnection attempts.
const MAX_RECONNECT_PAUSE: Duration = Duration::from_secs(5);
/// Writer connections, so group commits overlap: while one waits for its WAL flush the next
/// is already at the database, queued on the sequence row's lock, and runs the moment the
/// first commits (the lock still orders them, so ids stay dense and commit order id order).
const WRITERS: usize = 2;
/// How long an answered round waits for rounds with lower ids to publish first; a safety net
/// (each of those rounds ends on its own), after which it fetches what it lacks itself.
const PUBLISH_ORDER_WAIT: Duration = Duration::from_millis(500);
/// How long the follower, announced ids it lacks while this instance's own commits are in
/// flight, waits for them to be published instead of fetching them from the database.
const OWN_COMMIT_WAIT: Duration = Duration::from_millis(200);

const SELECT: &str =
    "SELECT id, ts, username, room, body, user_key, client_msg_id FROM gc_messages";

/// How the PostgreSQL message store behaves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PgConfig {
    /// How many of the newest records each instance keeps in memory. Default 10,000.
    pub tail_capacity: usize,
}

impl Default for PgConfig {
    fn default() -> Self {
        Self {
            tail_capacity: 10_000,
        }
    }
}

/// A record in the tail, with the pair that produced it (for [`MessageLog::lookup_msgid`]).
#[derive(Debug)]
pub(crate) struct Entry {
    pub(crate) record: Arc<Record>,
    key: (String, String),
}

/// The newest records, ascending: every record with id > `covers_from` is here.
#[derive(Debug, Default)]
struct Tail {
    entries: VecDeque<Entry>,
    covers_from: u64,
    msgids: HashMap<(String, String), (u64, Timestamp)>,
}

impl Tail {
    fn push(&mut self, entry: Entry, capacity: usize) {
        let r = &entry.record;
        self.msgids.insert(entry.key.clone(), (r.id, r.timestamp));
        self.entries.push_back(entry);
        while self.entries.len() > capacity.max(1) {
            if let Some(old) = self.entries.pop_front() {
                self.covers_from = old.record.id;
                self.msgids.remove(&old.key);
            }
        }
    }

    fn newest(&self) -> u64 {
        self.entries
            .back()
            .map_or(self.covers_from, |e| e.record.id)
    }
}

/// One caller's messages waiting for the group commit, and where their results go.
struct Job {
    items: Vec<Item>,
    results: Option<Vec<Result<Appended, StoreError>>>,
}

struct Item {
    room: Room,
    user: Username,
    cmid: ClientMsgId,
    body: String,
}

#[derive(Default)]
struct Group {
    jobs: Vec<(u64, Job)>,
    done: HashMap<u64, Vec<Result<Appended, StoreError>>>,
    next_ticket: u64,
    /// Which writer connections a round is using (sent, answer not read yet).
    busy: [bool; WRITERS],
    /// The first ids of rounds answered but not yet published to the tail.
    unpublished: Vec<u64>,
}

impl Group {
    /// Rounds sent whose answer has not come back yet.
    fn awaiting(&self) -> usize {
        self.busy.iter().filter(|b| **b).count()
    }
}

struct Inner {
    shown: String,
    capacity: usize,
    writers: [Mutex<Conn>; WRITERS],
    reader: Mutex<Conn>,
    tail: RwLock<Tail>,
    /// The newest visible id (the tail's newest), read without a lock.
    newest: AtomicU64,
    count: AtomicUsize,
    /// Serialises publishing into the tail, so records enter it in id order and once.
    publishing: Mutex<()>,
    waker: RwLock<Option<Waker>>,
    rooms_waker: RwLock<Option<Arc<dyn Fn() + Send + Sync>>>,
    presence_waker: RwLock<Option<Arc<dyn Fn() + Send + Sync>>>,
    presence: RwLock<Option<Arc<PgPresence>>>,
    group: Mutex<Group>,
    settled: Condvar,
    stop: Mutex<bool>,
    stop_cv: Condvar,
    stop_channel: String,
}

impl std::fmt::Debug for Inner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PgMessages")
            .field("db", &self.shown)
            .field("newest", &self.newest.load(Ordering::Relaxed))
            .finish_non_exhaustive()
    }
}

/// The messages of every instance sharing one database. `Send + Sync`; its follower thread
/// stops when it is dropped.
#[derive(Debug)]
pub struct PgMessages {
    inner: Arc<Inner>,
    follower: Mutex<Option<JoinHandle<()>>>,
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(crate) fn entry(url: &str, row: &Row) -> Result<Entry, PgError> {
    let bad = |reason: String| PgError::BadRow {
        url: url.to_owned(),
        what: "message",
        reason,
    };
    let get_err = |e: postgres::Error| bad(e.to_string());
    let id: i64 = row.try_get(0).map_err(get_err)?;
    let ts: i64 = row.try_get(1).map_err(get_err)?;
    let username: String = row.try_get(2).map_err(get_err)?;
    let room: String = row.try_get(3).map_err(get_err)?;
    let body: String = row.try_get(4).map_err(get_err)?;
    let user_key: String = row.try_get(5).map_err(get_err)?;
    let cmid: String = row.try_get(6).map_err(get_err)?;
    let record = Record {
        id: u64::try_from(id).map_err(|_| bad(format!("id {id}")))?,
        room: Room::new(room.clone())
            .map_err(|e| bad(format!("record {id}: room {room:?}: {e}")))?,
        timestamp: Timestamp::from_micros(to_u64(ts)),
        username: Username::new(username.clone())
            .map_err(|e| bad(format!("record {id}: name {username:?}: {e}")))?,
        body,
    };
    Ok(Entry {
        record: Arc::new(record),
        key: (user_key, cmid),
    })
}

/// What a record counts against a delivery's byte budget (as the flat file counts it).
fn cost(r: &Record) -> u64 {
    encoded_len(r) as u64
        + if r.room.is_general() {
            0
        } else {
            ROOM_FIELD_HALF
        }
}

fn in_spans(r: &Record, spans: &[RoomSpan]) -> bool {
    spans
        .iter()
        .any(|s| s.room == r.room && s.after < r.id && r.id <= s.until)
}

impl PgMessages {
    /// Opens the messages of the database at `url` (whose schema is migrated): loads the
    /// newest records and starts the follower thread.
    pub fn open(url: &DbUrl, config: &PgConfig) -> Result<Self, PgError> {
        let shown = url.to_string();
        let mut reader = Conn::connect(url)?;
        let capacity = config.tail_capacity.max(1);
        let (tail, count) = reader.run("the newest messages", |c, _| {
            let rows = c.query(
                &format!("{SELECT} ORDER BY id DESC LIMIT $1"),
                &[&(capacity as i64)],
            )?;
            let count: i64 = c
                .query_one("SELECT count(*) FROM gc_messages", &[])?
                .try_get(0)?;
            Ok((rows, count))
        })?;
        let mut loaded = Tail::default();
        let full = tail.len() >= capacity;
        let mut entries = tail
            .iter()
            .map(|r| entry(&shown, r))
            .collect::<Result<Vec<_>, _>>()?;
        entries.reverse();
        if full && let Some(first) = entries.first() {
            loaded.covers_from = first.record.id - 1;
        }
        for e in entries {
            loaded.push(e, capacity);
        }
        let newest = loaded.newest();
        let inner = Arc::new(Inner {
            shown,
            capacity,
            writers: std::array::from_fn(|_| Mutex::new(Conn::new(url))),
            reader: Mutex::new(reader),
            tail: RwLock::new(loaded),
            newest: AtomicU64::new(newest),
            count: AtomicUsize::new(usize::try_from(count).unwrap_or(0)),
            publishing: Mutex::new(()),
            waker: RwLock::new(None),
            rooms_waker: RwLock::new(None),
            presence_waker: RwLock::new(None),
            presence: RwLock::new(None),
            group: Mutex::new(Group::default()),
            settled: Condvar::new(),
            stop: Mutex::new(false),
            stop_cv: Condvar::new(),
            stop_channel: format!("gc_stop_{}_{:x}", std::process::id(), unique()),
        });
        let mut listen = Conn::connect(url)?;
        listen.run("LISTEN", |c, _| c.batch_execute(&listen_sql(&inner)))?;
        *inner.presence.write() = Some(Arc::new(PgPresence::new(url)?));
        let follower = {
            let inner = Arc::clone(&inner);
            thread::Builder::new()
                .name("pg-follower".into())
                .spawn(move || follow(&inner, listen))
                .map_err(PgError::Thread)?
        };
        Ok(Self {
            inner,
            follower: Mutex::new(Some(follower)),
        })
    }

    /// Stops the follower thread (also done on drop).
    pub fn close(&self) {
        {
            let mut stop = self.inner.stop.lock();
            if *stop {
                return;
            }
            *stop = true;
            self.inner.stop_cv.notify_all();
        }
        // Wake the follower from its wait for a notification (best effort: when the database
        // is away it is waiting on `stop_cv`, or its wait times out).
        let channel = self.inner.stop_channel.clone();
        let _ = self.inner.writers[0]
            .lock()
            .run("the stop notification", |c, _| {
                c.execute("SELECT pg_notify($1, '')", &[&channel])
            });
        if let Some(handle) = self.follower.lock().take() {
            // The follower itself may drop the last reference (through its waker): it ends on
            // its own then, and must not wait for itself.
            if handle.thread().id() != thread::current().id() && handle.join().is_err() {
                tracing::error!("the database follower thread panicked");
            }
        }
    }
}

impl Drop for PgMessages {
    fn drop(&mut self) {
        self.close();
    }
}

/// A number that differs between stores of one process.
fn unique() -> u64 {
    static NEXT: AtomicU64 = AtomicU64::new(1);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl Inner {
    fn stopping(&self) -> bool {
        *self.stop.lock()
    }

    /// Adds `entries` (ascending, fetched or just committed) to the tail, skipping those it
    /// has; the caller holds `publishing`. Returns the rooms of what was added.
    fn publish(&self, entries: Vec<Entry>) -> Vec<Room> {
        let mut rooms: Vec<Room> = Vec::new();
        let mut tail = self.tail.write();
        let mut newest = tail.newest();
        let mut added = 0;
        for e in entries {
            if e.record.id <= newest {
                continue;
            }
            newest = e.record.id;
            if !rooms.contains(&e.record.room) {
                rooms.push(e.record.room.clone());
            }
            tail.push(e, self.capacity);
            added += 1;
        }
        self.newest.store(newest, Ordering::Release);
        drop(tail);
        self.count.fetch_add(added, Ordering::Relaxed);
        rooms
    }

    fn wake(&self, rooms: Vec<Room>) {
        if rooms.is_empty() {
            return;
        }
        let arrived = Arrived {
            newest: self.newest.load(Ordering::Acquire),
            rooms,
        };
        if let Some(waker) = self.waker.read().as_ref() {
            waker(&arrived);
        }
    }

    /// Fetches the records with `after < id <= through` (`through` 0: all), ascending.
    fn fetch(conn: &mut Conn, after: u64, through: u64) -> Result<Vec<Entry>, PgError> {
        let url = conn.shown();
        let through = if through == 0 {
            i64::MAX
        } else {
            to_i64(through)
        };
        let rows = conn.run("the new messages", |c, p| {
            let s = p.get(
                c,
                "SELECT id, ts, username, room, body, user_key, client_msg_id FROM gc_messages \
                 WHERE id > $1 AND id <= $2 ORDER BY id LIMIT $3",
            )?;
            c.query(&s, &[&to_i64(after), &through, &CATCH_UP_BATCH])
        })?;
        rows.iter().map(|r| entry(&url, r)).collect()
    }

    /// Brings the tail up to everything committed, through `conn`; wakes for what it added.
    fn catch_up(&self, conn: &mut Conn) -> Result<(), PgError> {
        loop {
            let guard = self.publishing.lock();
            let newest = self.newest.load(Ordering::Acquire);
            let entries = Self::fetch(conn, newest, 0)?;
            let n = entries.len();
            let rooms = self.publish(entries);
            drop(guard);
            if n > 0 {
                // A round waiting to publish after these ids may go now.
                self.settled.notify_all();
            }
            self.wake(rooms);
            if (n as i64) < CATCH_UP_BATCH {
                return Ok(());
            }
        }
    }

    /// Whether an answered round whose records start at `first` may enter the tail now: the
    /// tail reaches just before them, or no round of ours that could hold lower ids is left
    /// (then what is missing is another instance's, which [`Self::publish_own`] fetches).
    fn may_publish(&self, g: &Group, first: u64) -> bool {
        self.newest.load(Ordering::Acquire) + 1 >= first
            || (g.awaiting() == 0 && !g.unpublished.iter().any(|&f| f < first))
    }

    /// Whether the tail still lacks records through `announced` once this instance's own
    /// rounds in flight are published: the follower fetches only then, so a commit of ours is
    /// not read back from the database by every instance including this one.
    fn lacks(&self, announced: u64) -> bool {
        let deadline = Instant::now() + OWN_COMMIT_WAIT;
        let mut g = self.group.lock();
        loop {
            if self.newest.load(Ordering::Acquire) >= announced {
                return false;
            }
            if g.awaiting() == 0 && g.unpublished.is_empty() {
                return true;
            }
            if self.settled.wait_until(&mut g, deadline).timed_out() {
                return self.newest.load(Ordering::Acquire) < announced;
            }
        }
    }

    /// Publishes records this instance just committed, after any committed before them that
    /// the tail lacks (so the tail stays in id order). If those cannot be fetched now, the
    /// follower publishes everything once the database answers again.
    fn publish_own(&self, own: Vec<Entry>) {
        let Some(first) = own.first().map(|e| e.record.id) else {
            return;
        };
        let guard = self.publishing.lock();
        let newest = self.newest.load(Ordering::Acquire);
        let mut foreign = Vec::new();
        if newest + 1 < first {
            match Self::fetch(&mut self.reader.lock(), newest, first - 1) {
                Ok(entries) if entries.last().is_none_or(|e| e.record.id == first - 1) => {
                    foreign = entries;
                }
                Ok(_) => {
                    // More than one batch behind: leave it to the follower, in order.
                    return;
                }
                Err(e) => {
                    tracing::warn!("cannot fetch the messages before our own yet: {e}");
                    return;
                }
            }
        }
        let foreign_rooms = self.publish(foreign);
        self.publish(own);
        drop(guard);
        self.wake(foreign_rooms);
    }

    /// One group commit through writer connection `slot`: stores `items` in one transaction.
    /// Per item: its outcome.
    fn commit(&self, slot: usize, items: &[&Item]) -> Result<Committed, PgError> {
        let mut writer = self.writers[slot].lock();
        let answer = writer.run("the messages", |c, p| commit_batch(c, p, items))?;
        answer.map_err(|reason| PgError::BadRow {
            url: writer.shown(),
            what: "answer of gc_append",
            reason,
        })
    }
}

/// Per item its outcome, and the records stored (in id order).
type Committed = (Vec<Appended>, Vec<Entry>);

/// One group commit in one round trip: `gc_append` (schema version 4) takes the sequence's
/// lock, looks up earlier copies, stores the rest, advances the sequence and notifies, in its
/// own implicit transaction (see the module documentation for why that is correct). Each round
/// trip waits for the database process to be scheduled, which on a busy host costs more than
/// the work: fewer is faster.
fn commit_batch(
    c: &mut Client,
    p: &mut crate::conn::Prepared<'_>,
    items: &[&Item],
) -> Result<Result<Committed, String>, postgres::Error> {
    // Repeats of one (user, client-msg-id) pair within the batch are answered here, with the
    // outcome of its first occurrence; the function sees each pair once.
    let keys: Vec<String> = items.iter().map(|i| i.user.key()).collect();
    let mut first: HashMap<(&str, &str), usize> = HashMap::new();
    let mut unique: Vec<usize> = Vec::with_capacity(items.len());
    let mut slot: Vec<usize> = Vec::with_capacity(items.len());
    for (i, (item, key)) in items.iter().zip(&keys).enumerate() {
        let n = *first
            .entry((key.as_str(), item.cmid.as_str()))
            .or_insert_with(|| {
                unique.push(i);
                unique.len() - 1
            });
        slot.push(n);
    }
    let names: Vec<&str> = unique.iter().map(|&i| items[i].user.as_str()).collect();
    let user_keys: Vec<&str> = unique.iter().map(|&i| keys[i].as_str()).collect();
    let rooms: Vec<&str> = unique.iter().map(|&i| items[i].room.as_str()).collect();
    let msgids: Vec<&str> = unique.iter().map(|&i| items[i].cmid.as_str()).collect();
    let bodies: Vec<&str> = unique.iter().map(|&i| items[i].body.as_str()).collect();
    let now = to_i64(Timestamp::now().as_micros());
    let append = p.get(
        c,
        "SELECT n, id, ts, duplicate FROM gc_append($1, $2, $3, $4, $5, $6)",
    )?;
    let rows = c.query(
        &append,
        &[&names, &user_keys, &rooms, &msgids, &bodies, &now],
    )?;
    let mut outcome: Vec<Option<Appended>> = vec![None; unique.len()];
    for row in rows {
        let n: i64 = row.try_get(0)?;
        let id: i64 = row.try_get(1)?;
        let ts: i64 = row.try_get(2)?;
        let duplicate: bool = row.try_get(3)?;
        if let Some(o) = usize::try_from(n - 1).ok().and_then(|n| outcome.get_mut(n)) {
            *o = Some(Appended {
                id: to_u64(id),
                timestamp: Timestamp::from_micros(to_u64(ts)),
                duplicate,
            });
        }
    }
    let mut results = Vec::with_capacity(items.len());
    let mut entries = Vec::new();
    for (i, (item, key)) in items.iter().zip(keys).enumerate() {
        let Some(Some(stored)) = outcome.get(slot[i]).copied() else {
            // The function answers every element; a missing one means a schema that is not
            // ours. The transaction is committed, so report it rather than guess.
            return Ok(Err(format!("no row for element {}", slot[i] + 1)));
        };
        let first_time = !stored.duplicate && unique[slot[i]] == i;
        results.push(Appended {
            duplicate: !first_time,
            ..stored
        });
        if first_time {
            entries.push(Entry {
                record: Arc::new(Record {
                    id: stored.id,
                    room: item.room.clone(),
                    timestamp: stored.timestamp,
                    username: item.user.clone(),
                    body: item.body.clone(),
                }),
                key: (key, item.cmid.as_str().to_owned()),
            });
        }
    }
    // Rows come back in no particular order; the tail wants id order.
    entries.sort_by_key(|e| e.record.id);
    Ok(Ok((results, entries)))
}

/// What the follower listens to: new messages, room metadata changes, and its stop signal.
fn listen_sql(inner: &Inner) -> String {
    format!(
        "LISTEN {CHANNEL}; LISTEN {ROOMS_CHANNEL}; LISTEN {PRESENCE_CHANNEL}; LISTEN {}",
        inner.stop_channel
    )
}

/// What the follower's wait for notifications brought.
struct Noted {
    /// The room metadata changed (or the wait timed out: asking is cheap).
    rooms: bool,
    /// Presence changed.
    presence: bool,
    /// Whether the tail may lack committed records: the backstop timed out, or a commit was
    /// announced with a newest id the tail does not have (or a payload that is not an id).
    behind: bool,
}

/// The follower thread: waits for commit notifications and catches the tail up; reconnects
/// with a growing pause while the database is away.
fn follow(inner: &Inner, mut conn: Conn) {
    let mut pause = Duration::from_millis(100);
    let mut listening = true;
    let mut behind = true;
    while !inner.stopping() {
        if !listening {
            let r = conn.run("LISTEN", |c, _| c.batch_execute(&listen_sql(inner)));
            if let Err(e) = r {
                tracing::warn!(
                    "database follower: {e}; retrying in {} ms",
                    pause.as_millis()
                );
                let mut stop = inner.stop.lock();
                if !*stop {
                    inner.stop_cv.wait_for(&mut stop, pause);
                }
                pause = (pause * 2).min(MAX_RECONNECT_PAUSE);
                continue;
            }
            tracing::info!("database follower: listening again on {}", inner.shown);
            listening = true;
            behind = true;
        }
        // Catch up first: whatever was committed before LISTEN took effect is fetched here,
        // whatever after is announced to this connection.
        if behind {
            if let Err(e) = inner.catch_up(&mut conn) {
                tracing::warn!("database follower: {e}");
                conn.reset();
                listening = false;
                continue;
            }
            pause = Duration::from_millis(100);
        }
        let waited = conn.run("the notifications", |c, _| {
            let mut notes = c.notifications();
            let Some(first) = notes.timeout_iter(LISTEN_BACKSTOP).next()? else {
                return Ok(Noted {
                    rooms: true,
                    presence: false,
                    behind: true,
                });
            };
            // Drain whatever else is pending: one catch-up covers them all.
            let mut noted = Noted {
                rooms: false,
                presence: false,
                behind: false,
            };
            // The newest id announced; `u64::MAX` when a payload is not an id.
            let mut announced = 0u64;
            let mut note = |n: &postgres::Notification| {
                let channel = n.channel();
                noted.rooms |= channel == ROOMS_CHANNEL;
                noted.presence |= channel == PRESENCE_CHANNEL;
                if channel == CHANNEL {
                    announced = announced.max(n.payload().parse().unwrap_or(u64::MAX));
                }
            };
            note(&first);
            let mut more = notes.iter();
            while let Some(n) = more.next()? {
                note(&n);
            }
            noted.behind = announced > 0 && inner.lacks(announced);
            Ok(noted)
        });
        match waited {
            Ok(noted) => {
                behind = noted.behind;
                if noted.rooms
                    && let Some(waker) = inner.rooms_waker.read().as_ref()
                {
                    waker();
                }
                if noted.presence
                    && let Some(waker) = inner.presence_waker.read().as_ref()
                {
                    waker();
                }
            }
            Err(e) => {
                tracing::warn!("database follower: {e}");
                conn.reset();
                listening = false;
            }
        }
    }
}

impl MessageLog for PgMessages {
    fn describe(&self) -> String {
        self.inner.shown.clone()
    }

    fn newest_id(&self) -> u64 {
        self.inner.newest.load(Ordering::Acquire)
    }

    fn len(&self) -> usize {
        self.inner.count.load(Ordering::Relaxed)
    }

    fn append_in(
        &self,
        room: &Room,
        username: &Username,
        client_msg_id: &ClientMsgId,
        body: &str,
    ) -> Result<Appended, StoreError> {
        self.append_many_in(&[(room, username, client_msg_id, body)])
            .pop()
            .unwrap_or_else(|| {
                Err(StoreError::Database {
                    store: self.inner.shown.clone(),
                    cause: "no result for an append".into(),
                })
            })
    }

    fn append_many_in(
        &self,
        items: &[(&Room, &Username, &ClientMsgId, &str)],
    ) -> Vec<Result<Appended, StoreError>> {
        let inner = &self.inner;
        // Refusals that need no database come back in place; the rest join the group commit.
        let mut out: Vec<Option<Result<Appended, StoreError>>> = Vec::with_capacity(items.len());
        let mut queued = Vec::new();
        for &(room, user, cmid, body) in items {
            if body.len() > MAX_BODY_BYTES {
                out.push(Some(Err(StoreError::TooLarge {
                    bytes: body.len(),
                    limit: MAX_BODY_BYTES,
                })));
            } else if body.contains('\0') {
                out.push(Some(Err(StoreError::Database {
                    store: inner.shown.clone(),
                    cause: "a message with a NUL character cannot be stored".into(),
                })));
            } else {
                out.push(None);
                queued.push(Item {
                    room: room.clone(),
                    user: user.clone(),
                    cmid: cmid.clone(),
                    body: body.to_owned(),
                });
            }
        }
        if !queued.is_empty() {
            let mut results = self.group_commit(queued).into_iter();
            for slot in out.iter_mut().filter(|s| s.is_none()) {
                *slot = results.next();
            }
        }
        out.into_iter()
            .map(|r| {
                r.unwrap_or_else(|| {
                    Err(StoreError::Database {
                        store: inner.shown.clone(),
                        cause: "no result for an append".into(),
                    })
                })
            })
            .collect()
    }

    fn lookup_msgid(
        &self,
        username: &Username,
        client_msg_id: &ClientMsgId,
    ) -> Option<(u64, Timestamp)> {
        // Only the tail's pairs: an older retry is still stored once, by the append's own
        // lookup inside its transaction.
        let key = (username.key(), client_msg_id.as_str().to_owned());
        self.inner.tail.read().msgids.get(&key).copied()
    }

    fn after_in_from(
        &self,
        id: u64,
        rooms: &[RoomSpan],
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Page, StoreError> {
        let inner = &self.inner;
        let newest = {
            let tail = inner.tail.read();
            let newest = tail.newest();
            if id >= tail.covers_from {
                let start = tail.entries.partition_point(|e| e.record.id <= id);
                let mut records = Vec::new();
                let mut bytes = 0;
                let mut cut = false;
                for e in tail.entries.range(start..) {
                    if !in_spans(&e.record, rooms) {
                        continue;
                    }
                    let c = cost(&e.record);
                    if records.len() >= max_records
                        || (!records.is_empty() && bytes + c > max_bytes)
                    {
                        cut = true;
                        break;
                    }
                    bytes += c;
                    records.push(Arc::clone(&e.record));
                }
                let through = match records.last() {
                    Some(last) if cut => last.id,
                    _ => newest.max(id),
                };
                return Ok(Page { records, through });
            }
            newest
        };
        if max_records == 0 || rooms.is_empty() {
            return Ok(Page {
                records: Vec::new(),
                through: newest.max(id),
            });
        }
        // Older than the tail: ask the database, up to what this instance has published.
        let names: Vec<&str> = rooms.iter().map(|s| s.room.as_str()).collect();
        let afters: Vec<i64> = rooms.iter().map(|s| to_i64(s.after)).collect();
        let untils: Vec<i64> = rooms.iter().map(|s| to_i64(s.until)).collect();
        let limit = i64::try_from(max_records).unwrap_or(i64::MAX);
        let mut reader = inner.reader.lock();
        let url = reader.shown();
        let rows = reader.run("older messages", |c, p| {
            let s = p.get(
                c,
                "SELECT m.id, m.ts, m.username, m.room, m.body, m.user_key, m.client_msg_id \
                 FROM gc_messages m JOIN unnest($2::text[], $3::int8[], $4::int8[]) \
                 AS s(room, lo, hi) ON m.room = s.room AND m.id > s.lo AND m.id <= s.hi \
                 WHERE m.id > $1 AND m.id <= $5 ORDER BY m.id LIMIT $6",
            )?;
            c.query(
                &s,
                &[
                    &to_i64(id),
                    &names,
                    &afters,
                    &untils,
                    &to_i64(newest),
                    &limit,
                ],
            )
        })?;
        drop(reader);
        let mut records = Vec::with_capacity(rows.len());
        let mut bytes = 0;
        let mut cut = rows.len() >= max_records;
        for row in &rows {
            let e = entry(&url, row)?;
            let c = cost(&e.record);
            if !records.is_empty() && bytes + c > max_bytes {
                cut = true;
                break;
            }
            bytes += c;
            records.push(e.record);
        }
        let through = match records.last() {
            Some(last) if cut => last.id,
            _ => newest.max(id),
        };
        Ok(Page { records, through })
    }

    fn before_in(&self, room: &Room, id: u64, limit: usize) -> Result<Vec<Record>, StoreError> {
        let inner = &self.inner;
        let newest = inner.newest.load(Ordering::Acquire);
        let below = if id == 0 {
            newest.saturating_add(1)
        } else {
            id
        };
        let mut reader = inner.reader.lock();
        let url = reader.shown();
        let rows = reader.run("a history page", |c, p| {
            let s = p.get(
                c,
                "SELECT id, ts, username, room, body, user_key, client_msg_id FROM gc_messages \
                 WHERE room = $1 AND id < $2 ORDER BY id DESC LIMIT $3",
            )?;
            c.query(
                &s,
                &[
                    &room.as_str(),
                    &to_i64(below.min(newest.saturating_add(1))),
                    &i64::try_from(limit).unwrap_or(i64::MAX),
                ],
            )
        });
        drop(reader);
        match rows {
            Ok(rows) => {
                let mut out = rows
                    .iter()
                    .map(|r| entry(&url, r).map(|e| Arc::unwrap_or_clone(e.record)))
                    .collect::<Result<Vec<_>, _>>()?;
                out.reverse();
                Ok(out)
            }
            Err(e) if e.is_unavailable() => {
                // What this instance holds is still worth showing.
                tracing::warn!("history from memory only: {e}");
                let tail = inner.tail.read();
                let mut out: Vec<Record> = tail
                    .entries
                    .iter()
                    .rev()
                    .map(|e| &e.record)
                    .filter(|r| r.room == *room && r.id < below)
                    .take(limit)
                    .map(|r| Record::clone(r))
                    .collect();
                out.reverse();
                Ok(out)
            }
            Err(e) => Err(e.into()),
        }
    }

    fn last_n_start_in(&self, rooms: &[Room], n: usize) -> u64 {
        let inner = &self.inner;
        let newest = inner.newest.load(Ordering::Acquire);
        if n == 0 {
            return newest;
        }
        let covers_from = {
            let tail = inner.tail.read();
            let mut seen = 0;
            for e in tail.entries.iter().rev() {
                if rooms.contains(&e.record.room) {
                    seen += 1;
                    if seen > n {
                        return e.record.id;
                    }
                }
            }
            if tail.covers_from == 0 {
                return 0;
            }
            tail.covers_from
        };
        let names: Vec<&str> = rooms.iter().map(Room::as_str).collect();
        let found = inner.reader.lock().run("the history start", |c, _| {
            c.query_opt(
                "SELECT id FROM gc_messages WHERE room = ANY($1) AND id <= $2 \
                 ORDER BY id DESC OFFSET $3 LIMIT 1",
                &[
                    &names,
                    &to_i64(newest),
                    &i64::try_from(n).unwrap_or(i64::MAX),
                ],
            )?
            .map(|r| r.try_get::<_, i64>(0))
            .transpose()
        });
        match found {
            Ok(id) => id.map_or(0, to_u64),
            Err(e) => {
                tracing::warn!("history on join from memory only: {e}");
                covers_from
            }
        }
    }

    fn sync(&self) -> Result<(), StoreError> {
        // Every acknowledged append was committed; PostgreSQL made it durable then.
        Ok(())
    }

    fn stop(&self) {
        self.close();
    }

    fn set_waker(&self, waker: Waker) {
        *self.inner.waker.write() = Some(waker);
    }

    fn set_rooms_waker(&self, waker: Arc<dyn Fn() + Send + Sync>) {
        *self.inner.rooms_waker.write() = Some(waker);
    }

    fn presence(&self) -> Option<Arc<dyn gc_store::PresenceShare>> {
        let p = self.inner.presence.read().clone()?;
        Some(p)
    }

    fn set_presence_waker(&self, waker: Arc<dyn Fn() + Send + Sync>) {
        *self.inner.presence_waker.write() = Some(waker);
    }
}

impl PgMessages {
    /// Queues `items` for the next group commit and waits for their outcome. A caller that
    /// finds queued work and a free writer connection leads a round: it commits everything
    /// queued, while the others wait. Up to [`WRITERS`] rounds are at the database at once.
    fn group_commit(&self, items: Vec<Item>) -> Vec<Result<Appended, StoreError>> {
        let inner = &self.inner;
        let mut g = inner.group.lock();
        let ticket = g.next_ticket;
        g.next_ticket += 1;
        g.jobs.push((
            ticket,
            Job {
                items,
                results: None,
            },
        ));
        loop {
            if let Some(done) = g.done.remove(&ticket) {
                return done;
            }
            if !g.jobs.is_empty()
                && let Some(slot) = g.busy.iter().position(|busy| !busy)
            {
                g.busy[slot] = true;
                let mut jobs = std::mem::take(&mut g.jobs);
                drop(g);
                g = self.commit_round(slot, &mut jobs);
                for (t, job) in jobs {
                    g.done.insert(t, job.results.unwrap_or_default());
                }
                inner.settled.notify_all();
                continue;
            }
            inner.settled.wait(&mut g);
        }
    }

    /// Commits `jobs` through writer `slot` (which the caller marked busy), publishes what it
    /// stored in id order with the other rounds, and fills in each job's results. Returns with
    /// the group locked again.
    fn commit_round(
        &self,
        slot: usize,
        jobs: &mut [(u64, Job)],
    ) -> parking_lot::MutexGuard<'_, Group> {
        let inner = &self.inner;
        let items: Vec<&Item> = jobs.iter().flat_map(|(_, j)| j.items.iter()).collect();
        let outcome = inner.commit(slot, &items);
        let mut g = inner.group.lock();
        g.busy[slot] = false;
        match outcome {
            Ok((results, entries)) => {
                if let Some(first) = entries.first().map(|e| e.record.id) {
                    g.unpublished.push(first);
                    // Into the tail in id order: a round answered first may hold the later
                    // ids (the other one's backend got the sequence's lock first).
                    let deadline = Instant::now() + PUBLISH_ORDER_WAIT;
                    while !inner.may_publish(&g, first)
                        && !inner.settled.wait_until(&mut g, deadline).timed_out()
                    {
                    }
                    drop(g);
                    inner.publish_own(entries);
                    g = inner.group.lock();
                    g.unpublished.retain(|&f| f != first);
                }
                let mut results = results.into_iter();
                for (_, job) in jobs.iter_mut() {
                    job.results = Some(results.by_ref().take(job.items.len()).map(Ok).collect());
                }
            }
            Err(e) => {
                tracing::error!("cannot store {} messages: {e}", items.len());
                let error: StoreError = e.into();
                for (_, job) in jobs.iter_mut() {
                    job.results =
                        Some(job.items.iter().map(|_| Err(clone_error(&error))).collect());
                }
            }
        }
        g
    }
}

fn clone_error(e: &StoreError) -> StoreError {
    match e {
        StoreError::Unavailable { store, cause } => StoreError::Unavailable {
            store: store.clone(),
            cause: cause.clone(),
        },
        StoreError::DatabaseFull { store, cause } => StoreError::DatabaseFull {
            store: store.clone(),
            cause: cause.clone(),
        },
        other => StoreError::Database {
            store: String::new(),
            cause: other.to_string(),
        },
    }
}
