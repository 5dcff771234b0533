//! Everything that can stop a benchmark run, with enough context to act on it.

use std::io;
use std::path::PathBuf;
use std::time::Duration;

use gc_protocol::ProtocolError;

/// Why a run could not be completed.
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// A command-line value makes no sense.
    #[error("invalid arguments: {0}")]
    Invalid(String),
    /// The gc-server binary to start is not there.
    #[error(
        "gc-server binary not found at {0}; build it next to gc-bench with \
         `cargo build --release -p gc-server -p gc-bench`, or pass --server-bin"
    )]
    ServerBinary(PathBuf),
    /// Starting the server process failed.
    #[error("cannot start {path}: {source}")]
    SpawnServer {
        /// The binary.
        path: PathBuf,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// The server did not report its ports in time (or exited).
    #[error("gc-server did not report its ports within {after:?}; its last log lines:\n{log}")]
    ServerStart {
        /// How long we waited.
        after: Duration,
        /// The end of its log.
        log: String,
    },
    /// A local I/O operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A GC/1 exchange failed.
    #[error("{what}: {source}")]
    Protocol {
        /// What was being done.
        what: String,
        /// The protocol error.
        #[source]
        source: ProtocolError,
    },
    /// A TLS setup or handshake failed (the cause, shown after it, says why).
    #[error("{what}")]
    Tls {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: gc_net::NetError,
    },
    /// The server answered with something other than what the exchange expects.
    #[error("{what}: the server answered `{answer}`")]
    Refused {
        /// What was being done.
        what: String,
        /// The server's answer.
        answer: String,
    },
    /// A PostgreSQL operation of the bench itself failed (creating a run's database, reading
    /// it back for the store check).
    #[error("PostgreSQL: {what}: {cause}")]
    Postgres {
        /// What was being done.
        what: String,
        /// The driver's error (never the password).
        cause: String,
    },
    /// The server refused a message because of its rate limit.
    #[error(
        "the server rate-limits the bench's messages ({0}); a started server gets \
         --rate-burst/--rate-per-sec 1000000, start an external one with the same"
    )]
    RateLimited(String),
    /// The client library (gc-client-core) failed: starting, logging in, or a transfer.
    #[error("{what}")]
    Client {
        /// What was being done.
        what: String,
        /// Why.
        #[source]
        source: gc_client_core::ClientError,
    },
    /// A thread could not be started.
    #[error("cannot start thread {name}: {source}")]
    Thread {
        /// The thread's name.
        name: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// A thread panicked.
    #[error("thread {0} panicked")]
    Panicked(String),
    /// A bounded wait ran out.
    #[error("timed out after {after:?} waiting for {what}")]
    Timeout {
        /// What we waited for.
        what: String,
        /// How long.
        after: Duration,
    },
    /// Writing the report failed.
    #[error("cannot write the report: {0}")]
    Output(#[source] io::Error),
}

impl BenchError {
    /// An [`BenchError::Io`] with a description.
    pub fn io(what: impl Into<String>, source: io::Error) -> Self {
        Self::Io {
            what: what.into(),
            source,
        }
    }

    /// A [`BenchError::Client`] with a description.
    pub fn client(what: impl Into<String>, source: gc_client_core::ClientError) -> Self {
        Self::Client {
            what: what.into(),
            source,
        }
    }

    /// A [`BenchError::Protocol`] with a description.
    pub fn protocol(what: impl Into<String>, source: ProtocolError) -> Self {
        Self::Protocol {
            what: what.into(),
            source,
        }
    }
}
