//! The client core's error type: what can go wrong connecting, logging in, sending and caching.

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use gc_protocol::sanitize::{Sanitized, sanitize};
use gc_protocol::scram::ScramError;
use gc_protocol::signin::SignInError;
use gc_protocol::{
    ErrorCode, ErrorFrame, Fingerprint, ProtocolError, VERSION_GC4, VERSION_GC5, VERSION_ROOMS,
    VERSION_TLS,
};

use crate::control::BadTransition;
use crate::trust::PinSource;

/// The longest wait a server's `throttled` or `rate-limited` text is taken at: a server asking
/// for more is waited for this long, then asked again.
const MAX_RETRY_AFTER: Duration = Duration::from_secs(300);

/// Everything that can go wrong in the client. Each message says what happened and, where there
/// is something to do, what to do.
#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// A configuration value makes no sense.
    #[error("invalid configuration: {0}")]
    Config(String),

    /// A callback port could not be bound.
    #[error(
        "cannot listen on {addr} for the {role} callback: {source}; pick another port (0 lets the \
         system choose one) or stop the program using it"
    )]
    Bind {
        /// Which callback port (auth, heartbeat, delivery).
        role: &'static str,
        /// The address asked for.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// The server's name did not resolve to an address.
    #[error("cannot find the server {server}: {detail}; check the name or give an IP address")]
    Resolve {
        /// The name as given.
        server: String,
        /// What went wrong.
        detail: String,
    },

    /// A connection to the server could not be opened.
    #[error("cannot connect to {addr} ({what})")]
    Connect {
        /// Which server port.
        what: &'static str,
        /// The address.
        addr: SocketAddr,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// An exchange with the server failed on the wire (closed, timed out, malformed).
    #[error("{what} failed")]
    Protocol {
        /// Which exchange.
        what: &'static str,
        /// The cause, naming the peer.
        #[source]
        source: ProtocolError,
    },

    /// The server answered with something that is valid GC/1 but not allowed at this point.
    #[error("the server at {peer} broke the protocol: {}", Sanitized(detail))]
    Unexpected {
        /// The server's address.
        peer: String,
        /// What it did.
        detail: String,
    },

    /// The server's certificate is not the pinned one: its key was replaced, or someone is in
    /// between. Never accepted silently.
    #[error("{0}")]
    FingerprintChanged(Box<PinMismatch>),

    /// The TLS handshake with the server failed (it does not speak TLS, refused ours, or
    /// answered in plain text why).
    #[error("{what} at {peer}: {}", Sanitized(detail))]
    Handshake {
        /// Which server port.
        what: &'static str,
        /// The server's address.
        peer: String,
        /// What happened, in words.
        detail: String,
    },

    /// The `known_servers` file cannot be read or written, or a line of it is damaged.
    #[error("known servers file {path}: {detail}")]
    KnownServers {
        /// The file.
        path: PathBuf,
        /// What is wrong and what to do.
        detail: String,
    },

    /// TLS could not be set up (the per-run callback certificate, the configuration).
    #[error("cannot set up TLS: {detail}")]
    Tls {
        /// What failed.
        detail: String,
    },

    /// The server speaks another protocol version.
    #[error("the server does not speak the expected protocol: {}", Sanitized(text))]
    Version {
        /// The server's explanation (or the version it announced).
        text: String,
    },

    /// The server refused a request with an `Err` reply.
    #[error("the server refused {during} ({code}): {}", Sanitized(text))]
    Refused {
        /// What was being done (`the login`, `the registration`, …).
        during: &'static str,
        /// The error code.
        code: ErrorCode,
        /// The server's text for humans.
        text: String,
    },

    /// The server could not prove that it knows the account's secret (SCRAM mutual
    /// authentication): it is not the server the account was made on, or an impostor.
    #[error(
        "the server could not prove it knows your account's secret: it is not the server this \
         account was registered on, or someone is impersonating it; not logging in"
    )]
    ServerSignature(#[source] ScramError),

    /// A SCRAM step failed (e.g. the server offered too few iterations).
    #[error("the login exchange with the server failed")]
    Scram(#[source] ScramError),

    /// The client cache could not be opened or written.
    #[error("client cache")]
    Cache(#[from] gc_store::StoreError),

    /// A thread could not be started.
    #[error("cannot start thread {name}")]
    Thread {
        /// The thread's name.
        name: String,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// The operating system's random source failed.
    #[error("no randomness available from the operating system")]
    Random,

    /// A message cannot be sent as it is.
    #[error("cannot send this message: {0}")]
    InvalidMessage(String),

    /// A client plugin refused the message before it was queued.
    #[error(
        "the {} plugin refused the message: {}",
        Sanitized(plugin),
        Sanitized(reason)
    )]
    Blocked {
        /// Which plugin.
        plugin: String,
        /// Its reason.
        reason: String,
    },

    /// Too many messages are waiting to be sent.
    #[error("{0} messages are already waiting to be sent; wait until the server is reachable")]
    OutboxFull(usize),

    /// Too many requests are waiting for the connection.
    #[error("too many requests are waiting for the connection; try again in a moment")]
    Busy,

    /// Rooms were asked of a server that serves none (older than GC/3).
    #[error("{}", crate::rooms::NO_ROOMS)]
    NoRooms,

    /// A GC/4 request (`/passwd`, `/away`) was asked of a server without GC/4; the text says
    /// which, and what the server speaks.
    #[error("{0}")]
    NotSupported(String),

    /// A request cannot be sent as it is (a name that is no room, a topic too long, …).
    #[error("cannot ask the server this: {0}")]
    InvalidRequest(String),

    /// The client is closing or closed.
    #[error("the client is closed")]
    Closed,

    /// A local file of a transfer could not be read or written.
    #[error("cannot {action} {}", path.display())]
    File {
        /// What was being done (`open`, `read`, `write`, …).
        action: &'static str,
        /// Which file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },

    /// The server refused a file transfer (too large, over quota, disk full, unknown file, …).
    #[error("the server refused the transfer ({code}): {}", Sanitized(text))]
    FileRefused {
        /// The error code.
        code: ErrorCode,
        /// The server's text.
        text: String,
    },

    /// A download would replace a file that exists: never done.
    #[error("{} exists; not replacing it (choose another name)", .0.display())]
    FileExists(PathBuf),

    /// Another download (of this client or another process) is writing to the same `.part`:
    /// two would corrupt it.
    #[error(
        "{} is being downloaded already (by this or another gc-client); wait for that download \
         to end",
        .0.display()
    )]
    DownloadInProgress(PathBuf),

    /// A download's content does not have the hash asked for: nothing is kept.
    #[error("the file received has SHA-256 {got}, not {expected}; nothing was kept; try again")]
    FileCorrupt {
        /// The hash asked for.
        expected: gc_protocol::ContentHash,
        /// What arrived.
        got: gc_protocol::ContentHash,
    },

    /// A transfer's connection kept failing.
    #[error(
        "the transfer stopped after {attempts} attempts (last: {}); what was done is kept: \
             try again to resume",
        Sanitized(last)
    )]
    TransferGaveUp {
        /// How many connections were tried.
        attempts: u32,
        /// Why the last one stopped.
        last: String,
    },

    /// The connection's state machine refused a transition: a bug in the client. The login is
    /// tried again.
    #[error("internal error: {0}")]
    State(#[from] BadTransition),
}

impl ClientError {
    /// Whether retrying cannot help: the client stops reconnecting and reports the error.
    ///
    /// Fatal: wrong password (`auth`), `unknown-user`, `exists`, `registration-closed`,
    /// `malformed` (the server finds our frames wrong: retrying sends the same),
    /// `version`, a server signature that does not verify, SCRAM failures, a cache that cannot be
    /// opened, bad configuration. Everything else (connection refused, reset, timeouts, `full`,
    /// `shutting-down`, `internal`, `unreachable`, `session`, a server breaking the protocol) is
    /// transient: reconnect with backoff; `throttled` too, after the wait it states
    /// ([`ClientError::retry_after`]).
    pub fn is_fatal(&self) -> bool {
        match self {
            // A refused login, or frames the server finds wrong (sending them again changes
            // nothing).
            // `throttled` says when to try again: the client waits that long and does
            // (docs/security.md), rather than give up for good.
            Self::Refused {
                code: ErrorCode::Throttled,
                ..
            } => false,
            Self::Refused { code, .. } => {
                self.is_login_refused()
                    || matches!(
                        code,
                        ErrorCode::Malformed | ErrorCode::Version | ErrorCode::TooLong
                    )
            }
            Self::Version { .. }
            | Self::ServerSignature(_)
            | Self::Scram(_)
            | Self::FingerprintChanged(_)
            | Self::KnownServers { .. }
            | Self::Tls { .. }
            | Self::Config(_)
            | Self::Bind { .. }
            | Self::Cache(_)
            | Self::Thread { .. }
            | Self::Random => true,
            Self::Resolve { .. }
            | Self::Unexpected { .. }
            | Self::Connect { .. }
            | Self::Handshake { .. }
            | Self::Protocol { .. }
            | Self::InvalidMessage(_)
            | Self::OutboxFull(_)
            | Self::Blocked { .. }
            | Self::Busy
            | Self::NoRooms
            | Self::NotSupported(_)
            | Self::InvalidRequest(_)
            | Self::Closed
            | Self::File { .. }
            | Self::FileRefused { .. }
            | Self::FileExists(_)
            | Self::DownloadInProgress(_)
            | Self::FileCorrupt { .. }
            | Self::TransferGaveUp { .. }
            | Self::State(_) => false,
        }
    }

    /// Whether the server refused the login or registration itself (wrong password, unknown
    /// user, …) or could not prove its identity: the binary's exit code 4.
    pub fn is_login_refused(&self) -> bool {
        match self {
            Self::Refused { code, .. } => matches!(
                code,
                ErrorCode::Auth
                    | ErrorCode::UnknownUser
                    | ErrorCode::Exists
                    | ErrorCode::RegistrationClosed
                    | ErrorCode::Throttled
            ),
            Self::Version { .. }
            | Self::ServerSignature(_)
            | Self::Scram(_)
            | Self::FingerprintChanged(_) => true,
            _ => false,
        }
    }

    /// How long the server asked to wait before trying again (`throttled`, `rate-limited`).
    pub fn retry_after(&self) -> Option<Duration> {
        match self {
            Self::Refused {
                code: ErrorCode::Throttled | ErrorCode::RateLimited,
                text,
                ..
            } => gc_protocol::texts::retry_after(text).map(|w| w.min(MAX_RETRY_AFTER)),
            _ => None,
        }
    }

    /// The wire error code, when the server refused something.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Self::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }

    /// The server's `Err` refusing `during`: a version mismatch, or a refusal with its code.
    pub(crate) fn from_refusal(during: &'static str, e: ErrorFrame) -> Self {
        match e.code {
            ErrorCode::Version => Self::Version { text: e.text },
            code => Self::Refused {
                during,
                code,
                text: e.text,
            },
        }
    }
}

impl From<SignInError> for ClientError {
    fn from(e: SignInError) -> Self {
        match e {
            SignInError::Wire { step, source } => Self::Protocol {
                what: step.as_str(),
                source,
            },
            SignInError::Refused { step, error } => Self::from_refusal(step.as_str(), error),
            SignInError::Unexpected { peer, detail } => Self::Unexpected { peer, detail },
            SignInError::Version { asked, announced } => Self::Version {
                text: if asked == VERSION_ROOMS || asked == VERSION_GC4 || asked == VERSION_GC5 {
                    // Asked for GC/3 or GC/4, a server answers that version or `Err version`:
                    // anything else could be someone rewriting the answer to keep the client from
                    // what it asked.
                    format!(
                        "it answered {announced} when asked for {asked}, instead of {asked} or \
                         `Err version`; refusing (over TLS this would be a downgrade); update the \
                         server"
                    )
                } else if asked == VERSION_TLS {
                    // A server that answers over TLS but does not bind logins to it: refused, or a
                    // relay could downgrade the login.
                    format!(
                        "it answered {announced} over TLS, not {VERSION_TLS} (a login bound to the \
                         TLS session); refusing a downgrade; update the server"
                    )
                } else {
                    format!(
                        "it answered {announced}, not {asked}; use a gc-client that matches the \
                         server"
                    )
                },
            },
            SignInError::Scram(e) => Self::Scram(e),
            SignInError::ServerSignature(e) => Self::ServerSignature(e),
            SignInError::Random => Self::Random,
        }
    }
}

/// A server certificate other than the pinned one.
#[derive(Debug, thiserror::Error)]
#[error(
    "{peer} presented the certificate {}, but {expected} is pinned for this server ({}): \
     someone may be intercepting the connection, or the server's key was replaced; confirm the \
     new fingerprint with its operator (gc-server tls fingerprint), then {}",
    presented.map_or_else(|| "(none)".to_owned(), |p| p.to_string()),
    pin.describe(),
    pin.fix()
)]
pub struct PinMismatch {
    /// The server's address.
    pub peer: String,
    /// The pinned fingerprint.
    pub expected: Fingerprint,
    /// What it presented.
    pub presented: Option<Fingerprint>,
    /// Where the pin came from.
    pub pin: PinSource,
}

/// Formats an error and its chain of causes on one line: `a: b: c`, sanitised (any cause may
/// quote a peer: an `Err` text, what a non-TLS server answered, an I/O error's message), so the
/// line is safe to print on a terminal as it is.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        let cause_text = cause.to_string();
        // Some errors repeat their source's text; don't print it twice.
        if !text.ends_with(&cause_text) {
            text.push_str(": ");
            text.push_str(&cause_text);
        }
        source = cause.source();
    }
    match sanitize(&text) {
        std::borrow::Cow::Borrowed(_) => text,
        std::borrow::Cow::Owned(safe) => safe,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chain_joins_causes() {
        let e = ClientError::Connect {
            what: "connect port",
            addr: "127.0.0.1:10740".parse().unwrap(),
            source: io::Error::new(io::ErrorKind::ConnectionRefused, "connection refused"),
        };
        assert_eq!(
            error_chain(&e),
            "cannot connect to 127.0.0.1:10740 (connect port): connection refused"
        );
        assert!(!e.is_fatal());
    }

    #[test]
    fn fatal_codes() {
        let refused = |code| ClientError::Refused {
            during: "the login",
            code,
            text: String::new(),
        };
        for code in [
            ErrorCode::Auth,
            ErrorCode::UnknownUser,
            ErrorCode::Exists,
            ErrorCode::RegistrationClosed,
        ] {
            assert!(refused(code).is_fatal(), "{code}");
            assert!(refused(code).is_login_refused(), "{code}");
        }
        // Throttled: a refused login, but one to try again after the wait the server states.
        let throttled = ClientError::Refused {
            during: "the login",
            code: ErrorCode::Throttled,
            text: gc_protocol::texts::login_throttled(Duration::from_secs(4)),
        };
        assert!(!throttled.is_fatal() && throttled.is_login_refused());
        assert_eq!(throttled.retry_after(), Some(Duration::from_secs(4)));
        assert_eq!(refused(ErrorCode::Throttled).retry_after(), None);
        for code in [
            ErrorCode::Full,
            ErrorCode::ShuttingDown,
            ErrorCode::Internal,
            ErrorCode::Unreachable,
            ErrorCode::Session,
        ] {
            assert!(!refused(code).is_fatal(), "{code}");
        }
    }
}
