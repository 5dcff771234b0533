//! The `gc-client` binary's error type: the core's [`ClientError`], plus what only the front ends
//! and the command line meet (the terminal, standard input and output, passwords, files, the
//! local server of `--with-server`).

use std::io;
use std::path::PathBuf;

use gc_client_core::ClientError;

/// Everything that can stop the `gc-client` binary. Each message says what happened and, where
/// there is something to do, what to do.
#[derive(Debug, thiserror::Error)]
pub enum AppError {
    /// The client core failed (connecting, logging in, the cache, …).
    #[error(transparent)]
    Client(#[from] ClientError),

    /// A command-line or settings value makes no sense.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A file operation failed.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// A thread could not be started.
    #[error("cannot start thread {name}")]
    Thread {
        /// The thread's name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// Headless mode ended its input but never got logged in.
    #[error(
        "could not log in within {} s (last problem: {last}); check the server address and ports",
        waited.as_secs()
    )]
    NotConnected {
        /// How long it waited.
        waited: std::time::Duration,
        /// The last warning seen.
        last: String,
    },

    /// No password was available.
    #[error("no password: {0}")]
    NoPassword(String),

    /// Standard input could not be read.
    #[error("cannot read standard input")]
    Stdin(#[source] io::Error),

    /// Output could not be written.
    #[error("cannot write the output")]
    Output(#[source] io::Error),

    /// The terminal could not be set up, read or drawn on (the terminal UI needs one: run it in a
    /// terminal, or use --headless).
    #[error("cannot use the terminal (run gc-client in a terminal, or use --headless)")]
    Terminal(#[source] io::Error),

    /// A server seen for the first time, and nothing says to trust it (headless).
    #[error(
        "first contact with {contact}; compare it with what the server's operator sees \
         (gc-server tls fingerprint), then run again with --trust-fingerprint {} (this run) or \
         --trust-on-first-use (remembered in {})",
        contact.fingerprint,
        known.display()
    )]
    Untrusted {
        /// What the server presented.
        contact: gc_client_core::trust::FirstContact,
        /// The known servers file.
        known: PathBuf,
    },

    /// `--room`/`--to` with a server that serves no rooms.
    #[error(
        "{}: cannot write into {room}; leave out --room and --to to write in #general",
        gc_client_core::NO_ROOMS
    )]
    NoRooms {
        /// The room asked for.
        room: gc_protocol::Room,
    },

    /// The local server of `--with-server` could not be run.
    #[error("--with-server: {0}")]
    LocalServer(String),
}

impl AppError {
    /// Whether the server refused the login or registration, or could not prove its identity
    /// (the exit code 4).
    pub fn is_login_refused(&self) -> bool {
        matches!(self, Self::Client(e) if e.is_login_refused())
    }

    /// Whether the command line was wrong (the exit code 2).
    pub fn is_usage(&self) -> bool {
        matches!(
            self,
            Self::Config(_)
                | Self::NoPassword(_)
                | Self::Untrusted { .. }
                | Self::Client(ClientError::Config(_))
        )
    }
}
