//! The storage seam: what the server asks of whatever holds its messages and accounts. The
//! flat files of this crate are one implementation; the PostgreSQL store (`gc-pgstore`) is the
//! other. The server holds `Arc<dyn MessageLog>` and `Arc<dyn AccountStore>` and never asks
//! which one it has.

use std::fmt;
use std::sync::Arc;

use gc_protocol::types::{ClientMsgId, Record, Room, Timestamp, Username};

use crate::accounts::{Account, Accounts};
use crate::error::Result;
use crate::messages::{Appended, MessageStore, Page, RoomSpan};

/// Records that became visible without passing through this process's own appends (another
/// instance stored them): the newest id and the rooms they are in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Arrived {
    /// The newest id now visible.
    pub newest: u64,
    /// The rooms the new records are in (each once).
    pub rooms: Vec<Room>,
}

/// Called with every [`Arrived`]: the server wakes the heartbeat threads that are owed them.
pub type Waker = Arc<dyn Fn(&Arrived) + Send + Sync>;

/// The server's messages: one id sequence across rooms, exactly-once by (user, client-msg-id),
/// records visible to readers in id order and only once durable.
pub trait MessageLog: Send + Sync + fmt::Debug {
    /// Where the messages are, for logs and errors (a path, or a URL without password).
    fn describe(&self) -> String;
    /// The highest id visible to readers, 0 when empty.
    fn newest_id(&self) -> u64;
    /// The number of records.
    fn len(&self) -> usize;
    /// Whether no record is stored.
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    /// Stores one message (see [`MessageStore::append_in`]).
    fn append_in(
        &self,
        room: &Room,
        username: &Username,
        client_msg_id: &ClientMsgId,
        body: &str,
    ) -> Result<Appended>;
    /// Stores several with one commit where possible, results in the order of `items`.
    fn append_many_in(
        &self,
        items: &[(&Room, &Username, &ClientMsgId, &str)],
    ) -> Vec<Result<Appended>>;
    /// The record a (user, client-msg-id) pair produced, if it is known and visible.
    fn lookup_msgid(
        &self,
        username: &Username,
        client_msg_id: &ClientMsgId,
    ) -> Option<(u64, Timestamp)>;
    /// Records of `rooms` after `id` (see [`MessageStore::after_in_from`]).
    fn after_in_from(
        &self,
        id: u64,
        rooms: &[RoomSpan],
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Page>;
    /// The newest `limit` records of `room` below `id` (0: the newest), ascending.
    fn before_in(&self, room: &Room, id: u64, limit: usize) -> Result<Vec<Record>>;
    /// The cursor from which the page [`MessageLog::before_in`] gives starts, so that
    /// [`MessageLog::after_in_from`] can yield it a piece at a time (see
    /// [`MessageStore::before_start_in`]). By default it reads the page to learn its first id.
    fn before_start_in(&self, room: &Room, id: u64, limit: usize) -> Result<u64> {
        Ok(self
            .before_in(room, id, limit)?
            .first()
            .map_or(0, |r| r.id.saturating_sub(1)))
    }
    /// The cursor from which `rooms` have their newest `n` records.
    fn last_n_start_in(&self, rooms: &[Room], n: usize) -> u64;
    /// Makes everything acknowledged durable (at shutdown).
    fn sync(&self) -> Result<()>;
    /// Stops the store's own threads, if it has any (at shutdown; reads still work after).
    fn stop(&self) {}
    /// Registers what to call when records arrive from elsewhere (another instance). A store
    /// that only this process writes never calls it: the server announces its own appends.
    fn set_waker(&self, _waker: Waker) {}
    /// Registers what to call when another instance may have changed the shared room metadata
    /// (the caller reloads it if it did). A store only this process writes never calls it.
    fn set_rooms_waker(&self, _waker: Arc<dyn Fn() + Send + Sync>) {}
    /// Who is online through the other instances sharing this store, if it is shared.
    fn presence(&self) -> Option<Arc<dyn PresenceShare>> {
        None
    }
    /// Registers what to call when another instance's online users may have changed.
    fn set_presence_waker(&self, _waker: Arc<dyn Fn() + Send + Sync>) {}
}

impl MessageLog for MessageStore {
    fn describe(&self) -> String {
        self.path().display().to_string()
    }
    fn newest_id(&self) -> u64 {
        MessageStore::newest_id(self)
    }
    fn len(&self) -> usize {
        MessageStore::len(self)
    }
    fn append_in(
        &self,
        room: &Room,
        username: &Username,
        client_msg_id: &ClientMsgId,
        body: &str,
    ) -> Result<Appended> {
        MessageStore::append_in(self, room, username, client_msg_id, body)
    }
    fn append_many_in(
        &self,
        items: &[(&Room, &Username, &ClientMsgId, &str)],
    ) -> Vec<Result<Appended>> {
        MessageStore::append_many_in(self, items)
    }
    fn lookup_msgid(
        &self,
        username: &Username,
        client_msg_id: &ClientMsgId,
    ) -> Option<(u64, Timestamp)> {
        MessageStore::lookup_msgid(self, username, client_msg_id)
    }
    fn after_in_from(
        &self,
        id: u64,
        rooms: &[RoomSpan],
        max_records: usize,
        max_bytes: u64,
    ) -> Result<Page> {
        MessageStore::after_in_from(self, id, rooms, max_records, max_bytes)
    }
    fn before_in(&self, room: &Room, id: u64, limit: usize) -> Result<Vec<Record>> {
        MessageStore::before_in(self, room, id, limit)
    }
    fn before_start_in(&self, room: &Room, id: u64, limit: usize) -> Result<u64> {
        Ok(MessageStore::before_start_in(self, room, id, limit))
    }
    fn last_n_start_in(&self, rooms: &[Room], n: usize) -> u64 {
        MessageStore::last_n_start_in(self, rooms, n)
    }
    fn sync(&self) -> Result<()> {
        MessageStore::sync(self)
    }
}

/// Presence across instances: each publishes who is online through it, under a lease it renews;
/// an instance that stops renewing (killed, cut off) drops out of everyone's list when the lease
/// runs out.
pub trait PresenceShare: Send + Sync + fmt::Debug {
    /// Renews this instance's lease, publishes `local` (this instance's online users) if it
    /// changed since the last call, and returns the online users of the other live instances.
    fn exchange(&self, local: &[Username]) -> Result<Vec<Username>>;
    /// Withdraws this instance at once (at shutdown).
    fn withdraw(&self);
    /// How long an instance that stopped renewing still counts as online.
    fn lease(&self) -> std::time::Duration;
}

/// The accounts: SCRAM verifiers by name, names unique without regard to case.
pub trait AccountStore: Send + Sync + fmt::Debug {
    /// The account with this name (without regard to case).
    fn get(&self, name: &str) -> Result<Option<Account>>;
    /// Every account.
    fn list(&self) -> Result<Vec<Account>>;
    /// The number of accounts.
    fn count(&self) -> Result<usize>;
    /// Adds one; [`crate::StoreError::Exists`] if the name is taken.
    fn add(&self, account: Account) -> Result<()>;
    /// Replaces the one of the same name; [`crate::StoreError::UnknownAccount`] if none.
    fn update(&self, account: Account) -> Result<()>;
    /// Removes and returns it; [`crate::StoreError::UnknownAccount`] if none.
    fn remove(&self, name: &str) -> Result<Account>;
    /// The secret named `name` that every instance sharing this store uses: the one stored,
    /// or `offer` stored now if there is none yet (whoever offers first wins). `None`: the store
    /// is one instance's own and keeps no secrets (the server keeps them in its data dir).
    fn shared_secret(&self, name: &str, offer: &[u8]) -> Result<Option<Vec<u8>>> {
        let _ = (name, offer);
        Ok(None)
    }
}

impl AccountStore for Accounts {
    fn get(&self, name: &str) -> Result<Option<Account>> {
        Ok(Accounts::get(self, name))
    }
    fn list(&self) -> Result<Vec<Account>> {
        Ok(Accounts::list(self))
    }
    fn count(&self) -> Result<usize> {
        Ok(Accounts::len(self))
    }
    fn add(&self, account: Account) -> Result<()> {
        Accounts::add(self, account)
    }
    fn update(&self, account: Account) -> Result<()> {
        Accounts::update(self, account)
    }
    fn remove(&self, name: &str) -> Result<Account> {
        Accounts::remove(self, name)
    }
}
