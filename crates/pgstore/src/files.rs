//! The index of shared files in PostgreSQL: `gc_files`, one row per announcement (the data
//! dir's `files/index.db` with the flat file store). Every instance sharing the database sees
//! every announcement at once, so a file shared through one instance may be fetched through
//! another (which reads the content from the files directory they share), and a user's quota
//! counts what they stored through all of them.

use gc_protocol::types::{ContentHash, Timestamp, Username};
use gc_store::{FileEntry, FileIndex, StoreError};
use parking_lot::Mutex;
use postgres::Row;

use crate::conn::Conn;
use crate::error::PgError;
use crate::url::DbUrl;

const COLUMNS: &str = "hash, size, username, ts, id, room";

/// The announcements of shared files of every instance on one database. Each call is one
/// statement on the index's own connection (announcements are one per upload, lookups one per
/// offer and fetch: rare next to messages), nothing cached.
#[derive(Debug)]
pub struct PgFileIndex {
    conn: Mutex<Conn>,
}

impl PgFileIndex {
    /// The index in the database at `url` (connects on first use).
    pub fn new(url: &DbUrl) -> Self {
        Self {
            conn: Mutex::new(Conn::new(url)),
        }
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// A row of `gc_files` (its [`COLUMNS`]) as an entry.
pub(crate) fn entry(url: &str, row: &Row) -> Result<FileEntry, PgError> {
    let bad = |reason: String| PgError::BadRow {
        url: url.to_owned(),
        what: "shared file's announcement",
        reason,
    };
    let get_err = |e: postgres::Error| bad(e.to_string());
    let hash: String = row.try_get(0).map_err(get_err)?;
    let size: i64 = row.try_get(1).map_err(get_err)?;
    let name: String = row.try_get(2).map_err(get_err)?;
    let ts: i64 = row.try_get(3).map_err(get_err)?;
    let id: i64 = row.try_get(4).map_err(get_err)?;
    let room: String = row.try_get(5).map_err(get_err)?;
    Ok(FileEntry {
        hash: hash
            .parse()
            .map_err(|_| bad(format!("the hash {hash:?}")))?,
        size: u64::try_from(size).map_err(|_| bad(format!("the size {size}")))?,
        username: Username::new(name.clone())
            .map_err(|e| bad(format!("the name {name:?}: {e}")))?,
        timestamp: Timestamp::from_micros(
            u64::try_from(ts).map_err(|_| bad(format!("the timestamp {ts}")))?,
        ),
        id: u64::try_from(id)
            .ok()
            .filter(|&id| id > 0)
            .ok_or_else(|| bad(format!("the record id {id}")))?,
        room: room
            .parse()
            .map_err(|_| bad(format!("the room {room:?}")))?,
    })
}

/// Inserts `e` unless a row for its content, user and record is there.
pub(crate) fn insert(
    c: &mut impl postgres::GenericClient,
    e: &FileEntry,
) -> Result<u64, postgres::Error> {
    c.execute(
        "INSERT INTO gc_files (hash, size, username, user_key, ts, id, room) \
         VALUES ($1, $2, $3, $4, $5, $6, $7) ON CONFLICT DO NOTHING",
        &[
            &e.hash.to_string(),
            &to_i64(e.size),
            &e.username.as_str(),
            &e.username.key(),
            &to_i64(e.timestamp.as_micros()),
            &to_i64(e.id),
            &e.room.to_string(),
        ],
    )
}

/// Every row, in the order they were inserted.
pub(crate) fn all(c: &mut impl postgres::GenericClient) -> Result<Vec<Row>, postgres::Error> {
    c.query(&format!("SELECT {COLUMNS} FROM gc_files ORDER BY seq"), &[])
}

impl PgFileIndex {
    fn entries_of(&self, rows: &[Row]) -> Result<Vec<FileEntry>, StoreError> {
        let url = self.conn.lock().shown();
        Ok(rows
            .iter()
            .map(|r| entry(&url, r))
            .collect::<Result<_, _>>()?)
    }
}

impl FileIndex for PgFileIndex {
    fn announcements(&self, hash: &ContentHash) -> Result<Vec<FileEntry>, StoreError> {
        let hex = hash.to_string();
        let rows = self
            .conn
            .lock()
            .run("a shared file's announcements", |c, p| {
                let s = p.get(
                    c,
                    "SELECT hash, size, username, ts, id, room FROM gc_files WHERE hash = $1 \
                 ORDER BY seq",
                )?;
                c.query(&s, &[&hex])
            })?;
        self.entries_of(&rows)
    }

    fn quota_used(&self, user: &Username) -> Result<u64, StoreError> {
        let key = user.key();
        let used: i64 = self.conn.lock().run("a user's shared bytes", |c, p| {
            // Each content once, however often the user announced it.
            let s = p.get(
                c,
                "SELECT coalesce(sum(size), 0)::bigint FROM \
                 (SELECT DISTINCT ON (hash) size FROM gc_files WHERE user_key = $1) AS mine",
            )?;
            c.query_one(&s, &[&key])?.try_get(0)
        })?;
        Ok(u64::try_from(used).unwrap_or(0))
    }

    fn announce(&self, entry: &FileEntry) -> Result<(), StoreError> {
        self.conn
            .lock()
            .run("a shared file's announcement", |c, _| insert(c, entry))?;
        Ok(())
    }

    fn forget(&self, hash: &ContentHash) -> Result<bool, StoreError> {
        let hex = hash.to_string();
        let removed = self.conn.lock().run("removing a shared file", |c, _| {
            c.execute("DELETE FROM gc_files WHERE hash = $1", &[&hex])
        })?;
        Ok(removed > 0)
    }

    fn entries(&self) -> Result<Vec<FileEntry>, StoreError> {
        let rows = self
            .conn
            .lock()
            .run("the shared files' announcements", |c, _| all(c))?;
        self.entries_of(&rows)
    }
}
