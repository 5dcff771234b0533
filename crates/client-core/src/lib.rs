//! gc-client-core: the General Communications client without a user interface.
//!
//! [`Client::start`] binds the three callback listeners (auth, heartbeat, delivery) *before* it
//! logs in, then a connection thread runs the GC/1 state machine
//! (DISCONNECTED → CONNECTING → CONNECTED → AUTHENTICATING → AUTHENTICATED → ACTIVE) and
//! reconnects with backoff after transient failures. Everything the client learns arrives as
//! [`Event`]s on one channel; a user interface drives it with method calls
//! ([`Client::send`], [`Client::history`], [`Client::who`], [`Client::close`], …).
//!
//! - Records are delivered in id order, each id once, whatever happens to connections; they are
//!   kept in a cache file (`cdatabase.db`) so a restart only fetches what was missed.
//! - Messages go through an outbox: each has a client-msg-id chosen once, so resends after a
//!   reconnect or a server restart are stored once, in the room it was written to.
//! - Rooms (GC/3): the client asks for them first and falls back to GC/1 (GC/2 over TLS) with
//!   an older server ([`Event::Version`]). Records of every room the account is in arrive in one
//!   stream, each naming its room; [`Client::send_to`], [`Client::history_in`],
//!   [`Client::who_in`], [`Client::cached_in`] and the room requests ([`Client::rooms`],
//!   [`Client::join`], [`Client::kick`], …) take a room. The cache keeps one file per room and
//!   one cursor across them.
//! - The server proves its identity (SCRAM server signature) before the client trusts the
//!   session.
//!
//! The front ends (the terminal UI and headless mode) and the `gc-client` binary live in the
//! `gc-client` crate; nothing here knows about terminals or standard input.
//!
//! Modules: [`client`] is the handle a front end holds; `connection` the connection thread
//! (sign-in through `gc_protocol::signin`, the active session's sending link); `callbacks` the
//! three listeners; `state` what those threads share, and [`control`] the part of it under one
//! lock (lifecycle, session state machine, presence, outbox, requests, and the connection
//! thread's "what next"); [`outbox`], `records` and [`backoff`] are bookkeeping without I/O.

pub mod backoff;
pub mod client;
pub mod config;
pub mod control;
pub mod error;
pub mod event;
pub mod failover;
pub mod outbox;
pub mod rooms;
pub mod transfer;
pub mod trust;

mod callbacks;
mod connection;
mod net;
mod records;
mod state;

pub use backoff::Backoff;
pub use client::{Client, CloseReport, validate_message};
pub use config::{BackoffConfig, ClientConfig, ListenPorts, Password, PortChoice, ServerPorts};
pub use control::{Command, PasswordChange};
pub use error::{ClientError, error_chain};
pub use event::{AccountChange, Ack, ConnState, Event, NoticeLevel, Refusal, Rejection, Status};
pub use failover::Instance;
pub use outbox::PendingMessage;
pub use rooms::{NO_ROOMS, RoomInfo, RoomRequest, parse_room};
pub use state::EventSink;
pub use transfer::{Direction, SavePath, TransferEvent, download_path, part_path};
pub use trust::{ClientTls, KnownServers, PinSource, ServerPin};
