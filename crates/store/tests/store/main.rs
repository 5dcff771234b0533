//! Integration tests of gc-store through its public API. One test binary; each file is a module.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

mod accounts;
mod admin;
mod cache;
mod garbage;
mod messages;
mod room_records;
mod rooms;
mod support;
