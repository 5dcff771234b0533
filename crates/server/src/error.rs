//! The server crate's error type.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;

/// Everything that can stop the server from starting or an admin command from completing.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    /// A configuration value is out of range.
    #[error("invalid configuration: {0}")]
    Config(String),
    /// The configuration file does not parse.
    #[error("invalid configuration file {path}: {message}")]
    ConfigFile {
        /// The file.
        path: PathBuf,
        /// What the TOML parser said.
        message: String,
    },
    /// A listening port could not be bound.
    #[error(
        "cannot listen on {addr} ({role} port): {source}; is another gc-server running, or is the port in use?"
    )]
    Bind {
        /// The address.
        addr: SocketAddr,
        /// Which port (connect, auth, send, metrics).
        role: &'static str,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// A file operation failed.
    #[error("cannot {what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The store failed.
    #[error(transparent)]
    Store(#[from] gc_store::StoreError),
    /// The shared database (PostgreSQL) failed.
    #[error(transparent)]
    Database(#[from] gc_pgstore::PgError),
    /// Moving data between a data dir and PostgreSQL, or exporting from it, failed.
    #[error(transparent)]
    Transfer(#[from] gc_pgstore::TransferError),
    /// The TLS identity could not be made or read.
    #[error(transparent)]
    Tls(#[from] gc_net::NetError),
    /// A thread could not be started.
    #[error("cannot start thread {name}")]
    Thread {
        /// The thread's name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// Signal handlers could not be installed.
    #[error("cannot install signal handlers")]
    Signals(#[source] io::Error),
    /// An admin command was given something it cannot use.
    #[error("{0}")]
    Usage(String),
    /// Logging could not be set up.
    #[error("cannot set up logging: {0}")]
    Logging(String),
}

impl ServerError {
    /// The process exit code for this error: 2 for usage and configuration, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::Config(_) | Self::ConfigFile { .. } | Self::Usage(_) => 2,
            _ => 1,
        }
    }
}
