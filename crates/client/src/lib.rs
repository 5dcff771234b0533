//! gc-client: the General Communications chat client, as a library.
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
//!   reconnect or a server restart are stored once.
//! - The server proves its identity (SCRAM server signature) before the client trusts the
//!   session.
//!
//! [`tui`] is the terminal UI of the `gc-client` binary and [`headless`] its scriptable front
//! end; [`display`] makes remote text safe for a terminal; [`settings`] is the UI's settings file;
//! [`local_server`] runs a `gc-server` next to the client (`--with-server`).

pub mod app;
pub mod cli;
pub mod config;
pub mod display;
pub mod error;
pub mod event;
pub mod headless;
pub mod local_server;
pub mod outbox;
pub mod settings;
pub mod tui;

mod backoff;
mod callbacks;
mod client;
mod conn;
mod link;
mod net;
mod records;
mod shared;

pub use backoff::Backoff;
pub use client::{Client, CloseReport, validate_message};
pub use config::{BackoffConfig, ClientConfig, ListenPorts, Password, PortChoice, ServerPorts};
pub use error::{ClientError, error_chain};
pub use event::{ConnState, Event, NoticeLevel, Status};
pub use outbox::PendingMessage;
pub use shared::EventSink;
