//! What can go wrong with the database.

use gc_store::StoreError;

/// An error of the PostgreSQL store.
#[derive(Debug, thiserror::Error)]
pub enum PgError {
    /// The URL could not be parsed.
    #[error("bad database URL: {reason}")]
    BadUrl {
        /// Why.
        reason: String,
    },

    /// The database could not be reached, or the connection broke.
    #[error(
        "cannot reach the database {url}: {cause}; check that PostgreSQL runs there and that the \
         URL's host, port, user, password and database are right"
    )]
    Unreachable {
        /// The URL without password.
        url: String,
        /// The driver's error.
        cause: String,
    },

    /// The database answered with an error.
    #[error("the database {url} refused {what}: {cause}")]
    Refused {
        /// The URL without password.
        url: String,
        /// What was asked.
        what: &'static str,
        /// Its answer.
        cause: String,
    },

    /// The schema was made by a newer gc-server.
    #[error(
        "the database {url} has schema version {found}, newer than this gc-server knows \
         ({known}); run the newer gc-server, or restore a backup made before the upgrade"
    )]
    NewerSchema {
        /// The URL without password.
        url: String,
        /// The version found.
        found: i32,
        /// The newest this build knows.
        known: i32,
    },

    /// The database is out of disk space (SQLSTATE 53100, `disk_full`).
    #[error("the database {url} is out of disk space ({what}): {cause}")]
    Full {
        /// The URL without password.
        url: String,
        /// What was asked.
        what: &'static str,
        /// Its answer.
        cause: String,
    },

    /// A value read from the database breaks a rule gc relies on.
    #[error("the database {url} holds an invalid {what}: {reason}")]
    BadRow {
        /// The URL without password.
        url: String,
        /// What was read.
        what: &'static str,
        /// Which rule it broke.
        reason: String,
    },

    /// A thread could not be started.
    #[error("cannot start the database thread: {0}")]
    Thread(#[source] std::io::Error),
}

impl PgError {
    /// Whether retrying later may succeed (the database or the network is away).
    pub fn is_unavailable(&self) -> bool {
        matches!(self, Self::Unreachable { .. })
    }

    /// From a driver error: a closed connection or I/O failure is [`PgError::Unreachable`],
    /// anything the server answered is [`PgError::Refused`].
    pub(crate) fn from_driver(url: &str, what: &'static str, e: &postgres::Error) -> Self {
        match e.as_db_error() {
            Some(db) if *db.code() == postgres::error::SqlState::DISK_FULL => Self::Full {
                url: url.to_owned(),
                what,
                cause: db.message().to_owned(),
            },
            Some(db) => Self::Refused {
                url: url.to_owned(),
                what,
                cause: format!("{} ({})", db.message(), db.code().code()),
            },
            // A broken or impossible connection; anything else (a value the driver could
            // not convert, say) is a refusal that retrying does not fix.
            None if e.is_closed() || io_cause(e) => Self::Unreachable {
                url: url.to_owned(),
                cause: e.to_string(),
            },
            None => Self::Refused {
                url: url.to_owned(),
                what,
                cause: e.to_string(),
            },
        }
    }
}

/// Whether an I/O error is among the causes of `e` (the network, not the request).
fn io_cause(e: &postgres::Error) -> bool {
    let mut cause = std::error::Error::source(e);
    while let Some(c) = cause {
        if c.is::<std::io::Error>() {
            return true;
        }
        cause = c.source();
    }
    // The driver reports a connect or read timeout without an io::Error source.
    let text = e.to_string();
    text.contains("timeout") || text.contains("timed out") || text.contains("connect")
}

impl PgError {
    /// As the storage seam's error.
    pub(crate) fn into_store(self) -> StoreError {
        self.into()
    }
}

impl From<PgError> for StoreError {
    fn from(e: PgError) -> Self {
        match e {
            PgError::Unreachable { url, cause } => StoreError::Unavailable { store: url, cause },
            PgError::Refused { url, what, cause } => StoreError::Database {
                store: url,
                cause: format!("{what}: {cause}"),
            },
            PgError::Full { url, what, cause } => StoreError::DatabaseFull {
                store: url,
                cause: format!("{what}: {cause}"),
            },
            other @ (PgError::NewerSchema { .. }
            | PgError::BadRow { .. }
            | PgError::BadUrl { .. }
            | PgError::Thread(_)) => StoreError::Database {
                store: String::new(),
                cause: other.to_string(),
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_database_is_told_apart_from_a_refusal() {
        let full = PgError::Full {
            url: "postgres://gc@db/gc".into(),
            what: "store a file's record",
            cause: "could not extend file \"base/16384/16390\": No space left on device".into(),
        };
        assert!(!full.is_unavailable(), "retrying at once does not help");
        let e = StoreError::from(full);
        assert!(matches!(e, StoreError::DatabaseFull { .. }), "{e:?}");
        let text = e.to_string();
        assert!(text.contains("out of disk space"), "{text}");
        assert!(text.contains("free space on its host"), "{text}");
    }
}
