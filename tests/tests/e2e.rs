//! End-to-end tests: real servers and clients over loopback. One binary; each area is a module.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod attacks;
mod backup;
mod client;
mod disk_full;
mod files;
mod files_admin;
mod flood;
mod gc4;
mod plugins;
mod process;
mod protocol_flow;
mod rooms;
mod tls;
