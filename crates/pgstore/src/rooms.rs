//! Room metadata in PostgreSQL: the lines of `rooms.db`, `members.db` and `admins.db` as rows
//! of `gc_rooms`, `gc_members` and `gc_admins` (one column per field), changed by
//! compare-and-swap on `gc_rooms_version` (see [`gc_store::RoomsBackend`]).

use gc_store::{RoomsBackend, RoomsFile, RoomsSnapshot, StoreError};
use parking_lot::Mutex;
use postgres::Row;

use crate::conn::Conn;
use crate::error::PgError;
use crate::url::DbUrl;

/// The channel room metadata changes are announced on.
pub(crate) const CHANNEL: &str = "gc_rooms";

/// The shared room metadata of every instance on one database.
#[derive(Debug)]
pub struct PgRooms {
    conn: Mutex<Conn>,
    shown: String,
}

impl PgRooms {
    /// The metadata in the database at `url` (connects on first use).
    pub fn new(url: &DbUrl) -> Self {
        Self {
            conn: Mutex::new(Conn::new(url)),
            shown: url.to_string(),
        }
    }
}

/// `(table, columns, how many fields a line has)` of each file.
fn table(file: RoomsFile) -> (&'static str, &'static str, usize) {
    match file {
        RoomsFile::Rooms => ("gc_rooms", "room, kind, created, creator, topic", 5),
        RoomsFile::Members => ("gc_members", "room, username, standing, muted_until", 4),
        RoomsFile::Admins => ("gc_admins", "username", 1),
    }
}

/// A row back into its line (fields joined by `;`, the last may hold `;`).
fn line(row: &Row, fields: usize) -> Result<Vec<u8>, postgres::Error> {
    let mut out = Vec::new();
    for i in 0..fields {
        if i > 0 {
            out.push(b';');
        }
        out.extend_from_slice(row.try_get::<_, &str>(i)?.as_bytes());
    }
    Ok(out)
}

/// A line into its fields: `None` if it has too few or is not UTF-8 (gc-store never writes such
/// a line; the caller refuses the change rather than store something it cannot read back).
fn fields(line: &[u8], n: usize) -> Option<Vec<&str>> {
    let text = std::str::from_utf8(line).ok()?;
    let parts: Vec<&str> = text.splitn(n, ';').collect();
    (parts.len() == n).then_some(parts)
}

/// Every line of `file` as the tables hold it, sorted.
pub(crate) fn read_lines(
    c: &mut impl postgres::GenericClient,
    file: RoomsFile,
) -> Result<Vec<Vec<u8>>, postgres::Error> {
    let (name, columns, n) = table(file);
    // The order gc-store writes the files in (names without regard to case, byte order).
    let order = match file {
        RoomsFile::Rooms => "room COLLATE \"C\"",
        RoomsFile::Members => "room COLLATE \"C\", lower(username) COLLATE \"C\"",
        RoomsFile::Admins => "lower(username) COLLATE \"C\"",
    };
    let rows = c.query(
        &format!("SELECT {columns} FROM {name} ORDER BY {order}"),
        &[],
    )?;
    rows.iter().map(|r| line(r, n)).collect()
}

/// Splits `lines` of `file` into its table's columns; a line that cannot be stored is an error
/// naming it (checked before anything is written).
pub(crate) fn split_lines(file: RoomsFile, lines: &[Vec<u8>]) -> Result<Vec<Vec<String>>, String> {
    let (_, _, n) = table(file);
    let mut columns: Vec<Vec<String>> = vec![Vec::with_capacity(lines.len()); n];
    for l in lines {
        let parts = fields(l, n).ok_or_else(|| {
            format!(
                "a {} line cannot be stored: {:?}",
                file.name(),
                String::from_utf8_lossy(l)
            )
        })?;
        for (column, part) in columns.iter_mut().zip(parts) {
            column.push(part.to_owned());
        }
    }
    Ok(columns)
}

/// Replaces every row of `file`'s table with `columns` (from [`split_lines`]).
pub(crate) fn write_columns(
    c: &mut impl postgres::GenericClient,
    file: RoomsFile,
    columns: &[Vec<String>],
) -> Result<(), postgres::Error> {
    let (name, list, n) = table(file);
    c.execute(&format!("DELETE FROM {name}"), &[])?;
    let params: Vec<&(dyn postgres::types::ToSql + Sync)> = columns
        .iter()
        .map(|c| c as &(dyn postgres::types::ToSql + Sync))
        .collect();
    let unnest: Vec<String> = (1..=n).map(|i| format!("${i}::text[]")).collect();
    c.execute(
        &format!(
            "INSERT INTO {name} ({list}) SELECT * FROM unnest({})",
            unnest.join(", ")
        ),
        &params,
    )?;
    Ok(())
}

/// Raises the metadata version and tells the instances (inside the caller's transaction).
pub(crate) fn bump_version(c: &mut impl postgres::GenericClient) -> Result<i64, postgres::Error> {
    let v: i64 = c
        .query_one(
            "UPDATE gc_rooms_version SET version = version + 1 RETURNING version",
            &[],
        )?
        .try_get(0)?;
    c.execute(&format!("NOTIFY {CHANNEL}"), &[])?;
    Ok(v)
}

impl RoomsBackend for PgRooms {
    fn describe(&self) -> String {
        self.shown.clone()
    }

    fn load(&self) -> Result<RoomsSnapshot, StoreError> {
        let snapshot = self.conn.lock().run("the room metadata", |c, _| {
            // One snapshot of all four tables.
            let mut tx = c
                .build_transaction()
                .isolation_level(postgres::IsolationLevel::RepeatableRead)
                .read_only(true)
                .start()?;
            let version: i64 = tx
                .query_one("SELECT version FROM gc_rooms_version", &[])?
                .try_get(0)?;
            let mut snapshot = RoomsSnapshot {
                version: u64::try_from(version).unwrap_or(0),
                ..RoomsSnapshot::default()
            };
            snapshot.rooms = read_lines(&mut tx, RoomsFile::Rooms)?;
            snapshot.members = read_lines(&mut tx, RoomsFile::Members)?;
            snapshot.admins = read_lines(&mut tx, RoomsFile::Admins)?;
            tx.commit()?;
            Ok(snapshot)
        })?;
        Ok(snapshot)
    }

    fn version(&self) -> Result<u64, StoreError> {
        let v: i64 = self.conn.lock().run("the room metadata version", |c, p| {
            let s = p.get(c, "SELECT version FROM gc_rooms_version")?;
            c.query_one(&s, &[])?.try_get(0)
        })?;
        Ok(u64::try_from(v).unwrap_or(0))
    }

    fn replace(
        &self,
        version: u64,
        changed: &[(RoomsFile, Vec<Vec<u8>>)],
    ) -> Result<Option<u64>, StoreError> {
        // Split every line first: a line that cannot be stored is refused before anything is.
        let mut columns_of: Vec<(RoomsFile, Vec<Vec<String>>)> = Vec::new();
        for (file, lines) in changed {
            let columns = split_lines(*file, lines).map_err(|cause| StoreError::Database {
                store: self.shown.clone(),
                cause,
            })?;
            columns_of.push((*file, columns));
        }
        let expected = i64::try_from(version).unwrap_or(i64::MAX);
        let done = self.conn.lock().run("a room metadata change", |c, _| {
            let mut tx = c.transaction()?;
            let now: i64 = tx
                .query_one("SELECT version FROM gc_rooms_version FOR UPDATE", &[])?
                .try_get(0)?;
            if now != expected {
                tx.rollback()?;
                return Ok(None);
            }
            for (file, columns) in &columns_of {
                write_columns(&mut tx, *file, columns)?;
            }
            let next = bump_version(&mut tx)?;
            tx.commit()?;
            Ok(Some(next))
        });
        let done = done.map_err(PgError::into_store)?;
        Ok(done.map(|v| u64::try_from(v).unwrap_or(0)))
    }
}
