//! gc-client: the General Communications chat client's front ends and binary, as a library.
//!
//! The connection itself (sign-in, callbacks, delivery, outbox, events) is the `gc-client-core`
//! crate; this crate puts a face on it:
//!
//! - [`tui`]: the full-screen terminal UI;
//! - [`headless`]: messages from standard input, records to standard output, for scripts and bots;
//! - [`display`]: makes remote text safe for a terminal (both front ends use it);
//!
//! and holds what only the binary needs: [`cli`] (the command line and how it becomes a
//! [`gc_client_core::ClientConfig`]), [`settings`] (the terminal UI's settings file and default
//! paths), [`trust`] (which server certificate to trust), [`local_server`] (`--with-server`), [`exit`] (exit codes) and [`run`] (what `main`
//! calls once the command line is parsed). [`error::AppError`] wraps the core's error with the
//! failures only these meet.

pub mod cli;
pub mod display;
pub mod error;
pub mod exit;
pub mod headless;
pub mod local_server;
pub mod run;
pub mod settings;
pub mod trust;
pub mod tui;

pub use error::AppError;
