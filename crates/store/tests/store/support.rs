//! Helpers shared by the integration tests.

use std::path::Path;

use gc_protocol::types::{ClientMsgId, Record, Timestamp, Username};
use gc_store::{FsyncPolicy, MessageStore, OpenReport, StoreConfig};

pub fn user(name: &str) -> Username {
    Username::new(name).unwrap()
}

pub fn cmid(id: &str) -> ClientMsgId {
    ClientMsgId::new(id).unwrap()
}

pub fn rec(id: u64, ts: &str, user_name: &str, body: &str) -> Record {
    Record {
        room: gc_protocol::Room::general(),
        id,
        timestamp: Timestamp::parse(ts).unwrap(),
        username: user(user_name),
        body: body.to_owned(),
    }
}

pub fn config(fsync: FsyncPolicy, tail_capacity: usize) -> StoreConfig {
    StoreConfig {
        fsync,
        tail_capacity,
        ..StoreConfig::default()
    }
}

pub fn open(dir: &Path) -> (MessageStore, OpenReport) {
    MessageStore::open(dir, config(FsyncPolicy::Never, 10_000)).unwrap()
}

pub fn read(path: &Path) -> String {
    String::from_utf8(std::fs::read(path).unwrap()).unwrap()
}
