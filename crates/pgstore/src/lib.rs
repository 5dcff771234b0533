//! PostgreSQL storage for General Communications: several `gc-server` instances share one
//! history, one set of accounts and one dedupe through an existing database engine.
//!
//! - [`PgMessages`]: the messages ([`gc_store::MessageLog`]), with one dense id sequence whose
//!   commit order is id order, exactly-once by (user, client-msg-id) across instances, an
//!   in-memory tail per instance and `LISTEN/NOTIFY` wake-ups.
//! - [`PgAccounts`]: the accounts ([`gc_store::AccountStore`]).
//! - [`PgFileIndex`]: the announcements of shared files ([`gc_store::FileIndex`]).
//! - [`export`], [`load_dir`], [`unload_to_dir`], [`summary`]: `gc-server db export` on the
//!   database, and moving a data dir's contents into it and back, checked by count and hash.
//! - [`migrate`]: versioned schema migrations (run at start and by `gc-server db migrate`).
//!
//! Everything goes through the synchronous `postgres` crate, so the server's thread-per-client
//! design stays as it is.

#![warn(missing_docs)]

mod accounts;
mod conn;
mod error;
mod files;
mod messages;
mod migrate;
mod presence;
mod rooms;
mod transfer;
mod url;

pub use accounts::PgAccounts;
pub use error::PgError;
pub use files::PgFileIndex;
pub use messages::{PgConfig, PgMessages};
pub use migrate::{MigrateReport, SCHEMA_VERSION};
pub use presence::{LEASE, PgPresence};
pub use rooms::PgRooms;
pub use transfer::{
    SYNTHETIC_MSGID_PREFIX, Transfer, TransferError, export, load_dir, summary, unload_to_dir,
};
pub use url::DbUrl;

/// Connects to the database at `url` and brings its schema to [`SCHEMA_VERSION`] (two
/// instances doing this at once is safe: they take turns). Refuses a newer schema.
pub fn migrate(url: &DbUrl) -> Result<MigrateReport, PgError> {
    let mut conn = conn::Conn::connect(url)?;
    let shown = conn.shown();
    let client = conn.client()?;
    migrate::migrate(client, &shown)
}

/// Migrates, then opens the messages and accounts of the database at `url`.
pub fn open(url: &DbUrl, config: &PgConfig) -> Result<(PgMessages, PgAccounts), PgError> {
    migrate(url)?;
    Ok((PgMessages::open(url, config)?, PgAccounts::new(url)))
}
