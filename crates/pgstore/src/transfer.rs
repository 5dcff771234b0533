//! Moving data between a flat-file data dir and PostgreSQL, and exporting from PostgreSQL:
//! `gc-server db export` with `--store`, `db import --from-dir DIR` and `db import
//! --from-postgres`.
//!
//! The index of shared files (`files/index.db`, `gc_files`) goes along, read back and compared
//! line for line; the files' content stays in the files directory, which both stores use.
//!
//! Both directions are checked the same way: each side's [`Summary`] (count of messages and
//! accounts, SHA-256 over the canonical export, see [`gc_store::Digest`]) is computed, the
//! source's while it is read and the target's from what was written, and the copy is kept only
//! if they are equal.
//!
//! - **Into PostgreSQL** ([`load_dir`]): one transaction, which first locks the three tables
//!   (no instance can append meanwhile) and refuses a database holding messages or accounts;
//!   records go in by `COPY … (FORMAT binary)` streamed from the room files, the client-msg-ids
//!   through a temporary table, then `gc_sequence` moves past the highest id and the target's
//!   summary is read back inside the same transaction. It commits only if the summaries agree:
//!   an error, a mismatch or a crash leaves the database as it was.
//! - **Out of PostgreSQL** ([`unload_to_dir`]): one read-only, repeatable-read transaction (a
//!   consistent snapshot while instances run), streamed through cursors, written into a staging
//!   directory of the target data dir ([`gc_store::DirImport`]) that is read back and moved
//!   into place only if it matches.
//!
//! A record that has no client-msg-id in the flat files (an imported prototype history, or one
//! whose `database.msgids` entry was compacted away) gets `.import-<id>` in PostgreSQL: a `.`
//! is never part of a real client-msg-id, so it can neither collide with nor answer a retry,
//! and it is left out when the data goes back to a data dir.

use std::io::Write;
use std::path::Path;

use gc_protocol::types::{Record, Room, is_valid_client_msg_id};
use gc_store::{
    ACCOUNTS_FILE, Account, Accounts, ContentStore, DATABASE_FILE, DataDirLock, Digest, DirImport,
    ExportFormat, ExportReport, FILE_INDEX, FILES_DIR, FaultyLine, FileEntry, RoomsFile,
    StoreError, Summary, export_line, visit_msgids, visit_records,
};
use postgres::binary_copy::BinaryCopyInWriter;
use postgres::types::Type;
use postgres::{IsolationLevel, Transaction};

use crate::accounts::account;
use crate::conn::Conn;
use crate::error::PgError;
use crate::messages::entry;
use crate::url::DbUrl;

/// Rows fetched per cursor step.
const BATCH: i32 = 1_000;

/// The prefix of the client-msg-id given to a record that had none (see the module's notes).
pub const SYNTHETIC_MSGID_PREFIX: &str = ".import-";

/// What can stop a transfer or an export.
#[derive(Debug, thiserror::Error)]
pub enum TransferError {
    /// The database failed or refused.
    #[error(transparent)]
    Database(#[from] PgError),
    /// The data dir failed, or holds something it cannot give or take.
    #[error(transparent)]
    Files(#[from] StoreError),
    /// The target database already holds data.
    #[error(
        "the database {url} is not empty ({what}): a transfer goes into an empty store only; \
         use a new database (createdb), or drop this one's gc tables if you mean to replace them"
    )]
    NotEmpty {
        /// The URL without password.
        url: String,
        /// What is in it.
        what: String,
    },
    /// What was written differs from what was read.
    #[error(
        "the copy differs from its source: source {source_summary}, target {target_summary}; \
         nothing was kept"
    )]
    Mismatch {
        /// The source's summary.
        source_summary: Summary,
        /// The target's summary.
        target_summary: Summary,
    },
    /// `--room` names a room with no messages in the database.
    #[error("the database {url} holds no messages of {room}; check the name")]
    NoRoom {
        /// The URL without password.
        url: String,
        /// The room asked for.
        room: String,
    },
    /// Writing the export failed.
    #[error("could not write the exported records: {0}")]
    Output(#[source] std::io::Error),
}

/// What a transfer did: both sides' summaries (equal, or it would have failed) and the
/// client-msg-ids carried over.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transfer {
    /// What the source holds.
    pub source: Summary,
    /// What the target holds now.
    pub target: Summary,
    /// Records whose client-msg-id was carried over (a retry of them is recognised).
    pub client_msg_ids: u64,
    /// Invalid `database.msgids` lines skipped (into PostgreSQL only).
    pub skipped_msgids: u64,
    /// A torn last line of a room's file, left out (into PostgreSQL only).
    pub skipped_torn_tail: Option<FaultyLine>,
    /// Announcements of shared files carried over (the index; the content stays in the files
    /// directory).
    pub file_announcements: u64,
}

fn driver<'a>(url: &'a str, what: &'static str) -> impl Fn(postgres::Error) -> PgError + 'a {
    move |e| PgError::from_driver(url, what, &e)
}

/// Every announcement of a shared file, in the order they were made.
fn read_file_index(tx: &mut Transaction<'_>, url: &str) -> Result<Vec<FileEntry>, PgError> {
    crate::files::all(tx)
        .map_err(driver(url, "the shared files' index"))?
        .iter()
        .map(|row| crate::files::entry(url, row))
        .collect()
}

/// The rooms that have records, in export order: `#general` first, then by name (byte order,
/// as the data dir's files are sorted).
fn rooms(tx: &mut Transaction<'_>, url: &str) -> Result<Vec<Room>, PgError> {
    let rows = tx
        .query("SELECT DISTINCT room FROM gc_messages", &[])
        .map_err(driver(url, "the list of rooms"))?;
    let mut rooms = Vec::with_capacity(rows.len());
    for row in rows {
        let name: String = row.try_get(0).map_err(driver(url, "the list of rooms"))?;
        rooms.push(Room::new(name.clone()).map_err(|e| PgError::BadRow {
            url: url.to_owned(),
            what: "room",
            reason: format!("{name:?}: {e}"),
        })?);
    }
    rooms.sort_by(|a, b| (!a.is_general(), a).cmp(&(!b.is_general(), b)));
    Ok(rooms)
}

/// Hands every record of `rooms` to `f`, room by room, each in id order, through a cursor.
fn each_record(
    tx: &mut Transaction<'_>,
    url: &str,
    rooms: &[Room],
    mut f: impl FnMut(&Record) -> Result<(), TransferError>,
) -> Result<(), TransferError> {
    for room in rooms {
        let portal = tx
            .bind(
                "SELECT id, ts, username, room, body, user_key, client_msg_id FROM gc_messages \
                 WHERE room = $1 ORDER BY id",
                &[&room.as_str()],
            )
            .map_err(driver(url, "the messages"))?;
        loop {
            let rows = tx
                .query_portal(&portal, BATCH)
                .map_err(driver(url, "the messages"))?;
            if rows.is_empty() {
                break;
            }
            for row in &rows {
                f(&entry(url, row)?.record)?;
            }
        }
    }
    Ok(())
}

fn all_accounts(tx: &mut Transaction<'_>, url: &str) -> Result<Vec<Account>, PgError> {
    let rows = tx
        .query(
            "SELECT username, salt, iterations, stored_key, server_key, created \
             FROM gc_accounts ORDER BY created, user_key",
            &[],
        )
        .map_err(driver(url, "the accounts"))?;
    rows.iter().map(|r| account(url, r)).collect()
}

/// The summary of what `tx` sees.
fn summary_in(tx: &mut Transaction<'_>, url: &str) -> Result<Summary, TransferError> {
    let rooms = rooms(tx, url)?;
    let mut digest = Digest::new();
    each_record(tx, url, &rooms, |r| {
        digest.record(r);
        Ok(())
    })?;
    let accounts = all_accounts(tx, url)?;
    Ok(digest.finish(&accounts))
}

/// A read-only snapshot of the database, without the statement timeout the store's own
/// connections have (an export of a big table takes its time).
fn snapshot<'c>(client: &'c mut postgres::Client, url: &str) -> Result<Transaction<'c>, PgError> {
    let mut tx = client
        .build_transaction()
        .isolation_level(IsolationLevel::RepeatableRead)
        .read_only(true)
        .start()
        .map_err(driver(url, "a read-only transaction"))?;
    tx.batch_execute("SET LOCAL statement_timeout = 0")
        .map_err(driver(url, "the session settings"))?;
    Ok(tx)
}

/// `gc-server db export` on PostgreSQL: the same output as for a data dir (`#general`'s
/// records, then each other room's, in plain format after a `# room NAME` line; or JSON
/// lines), from one consistent snapshot, streamed through a cursor. With `room`, that room
/// alone (a clean `database.db`-format file of it in plain format).
pub fn export(
    url: &DbUrl,
    room: Option<&Room>,
    format: ExportFormat,
    out: &mut dyn Write,
) -> Result<ExportReport, TransferError> {
    let shown = url.to_string();
    let mut conn = Conn::connect(url)?;
    let client = conn.client()?;
    let mut tx = snapshot(client, &shown)?;
    let mut rooms = rooms(&mut tx, &shown)?;
    if let Some(room) = room {
        if !rooms.contains(room) {
            return Err(TransferError::NoRoom {
                url: shown,
                room: room.to_string(),
            });
        }
        rooms = vec![room.clone()];
    }
    let headers =
        room.is_none() && format == ExportFormat::Plain && rooms.iter().any(|r| !r.is_general());
    let mut out = std::io::BufWriter::with_capacity(1 << 16, out);
    let mut report = ExportReport::default();
    let mut line = Vec::with_capacity(256);
    let mut current: Option<Room> = None;
    each_record(&mut tx, &shown, &rooms, |r| {
        line.clear();
        if headers && current.as_ref() != Some(&r.room) {
            if !r.room.is_general() {
                line.extend_from_slice(format!("# room {}\n", r.room).as_bytes());
            }
            current = Some(r.room.clone());
        }
        export_line(r, format, &mut line);
        out.write_all(&line).map_err(TransferError::Output)?;
        report.records += 1;
        Ok(())
    })?;
    out.flush().map_err(TransferError::Output)?;
    Ok(report)
}

/// The [`Summary`] of the database at `url`, from one consistent snapshot.
pub fn summary(url: &DbUrl) -> Result<Summary, TransferError> {
    let shown = url.to_string();
    let mut conn = Conn::connect(url)?;
    let client = conn.client()?;
    let mut tx = snapshot(client, &shown)?;
    summary_in(&mut tx, &shown)
}

/// `gc-server db import --from-dir DIR`: loads the data dir `dir` (messages of every room with
/// their ids and timestamps, client-msg-ids, accounts) into the empty database at `url` (its
/// schema is migrated first), in one transaction that commits only if the database's summary
/// then equals the data dir's. Holds `dir`'s lock throughout ([`StoreError::Locked`] while a
/// server runs on it).
pub fn load_dir(dir: &Path, url: &DbUrl) -> Result<Transfer, TransferError> {
    let shown = url.to_string();
    let general = dir.join(DATABASE_FILE);
    if !general.is_file() {
        return Err(StoreError::Io {
            action: "open the data dir's",
            path: general,
            source: std::io::ErrorKind::NotFound.into(),
        }
        .into());
    }
    let _lock = DataDirLock::acquire(dir)?;
    crate::migrate(url)?;
    let mut conn = Conn::connect(url)?;
    let client = conn.client()?;
    let mut tx = client
        .transaction()
        .map_err(driver(&shown, "a transaction"))?;
    // No instance appends or registers until this commits; a busy one makes the lock wait
    // time out (lock_timeout) rather than hang.
    tx.batch_execute(
        "SET LOCAL statement_timeout = 0; \
         LOCK TABLE gc_sequence, gc_messages, gc_accounts, gc_rooms_version, gc_files \
         IN EXCLUSIVE MODE",
    )
    .map_err(driver(&shown, "the table locks"))?;
    let row = tx
        .query_one(
            "SELECT (SELECT count(*) FROM gc_messages), (SELECT count(*) FROM gc_accounts), \
             (SELECT count(*) FROM gc_rooms) + (SELECT count(*) FROM gc_members) \
             + (SELECT count(*) FROM gc_admins), (SELECT count(*) FROM gc_files)",
            &[],
        )
        .map_err(driver(&shown, "the row counts"))?;
    let messages: i64 = row.try_get(0).map_err(driver(&shown, "the row counts"))?;
    let accounts: i64 = row.try_get(1).map_err(driver(&shown, "the row counts"))?;
    let metadata: i64 = row.try_get(2).map_err(driver(&shown, "the row counts"))?;
    let announced: i64 = row.try_get(3).map_err(driver(&shown, "the row counts"))?;
    if messages > 0 || accounts > 0 || metadata > 0 || announced > 0 {
        return Err(TransferError::NotEmpty {
            url: shown,
            what: format!(
                "{messages} messages, {accounts} accounts, {metadata} room metadata rows, \
                 {announced} shared files' announcements"
            ),
        });
    }

    // The records, streamed from the room files.
    let mut digest = Digest::new();
    let (mut max_id, mut max_ts) = (0i64, 0i64);
    let mut failed: Option<TransferError> = None;
    let report = {
        let sink = tx
            .copy_in(
                "COPY gc_messages (id, ts, username, user_key, room, client_msg_id, body) \
                 FROM STDIN (FORMAT binary)",
            )
            .map_err(driver(&shown, "the messages"))?;
        let mut w = BinaryCopyInWriter::new(
            sink,
            &[
                Type::INT8,
                Type::INT8,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
                Type::TEXT,
            ],
        );
        let report = visit_records(dir, |r| {
            let out_of_range = |what: &str| StoreError::Transfer {
                what: format!("record {} of {}: its {what} is out of range", r.id, r.room),
            };
            let id = i64::try_from(r.id).map_err(|_| out_of_range("id"))?;
            let ts =
                i64::try_from(r.timestamp.as_micros()).map_err(|_| out_of_range("timestamp"))?;
            digest.record(r);
            max_id = max_id.max(id);
            max_ts = max_ts.max(ts);
            let synthetic = format!("{SYNTHETIC_MSGID_PREFIX}{id}");
            w.write(&[
                &id,
                &ts,
                &r.username.as_str(),
                &r.username.key(),
                &r.room.as_str(),
                &synthetic,
                &r.body.as_str(),
            ])
            .map_err(|e| {
                failed = Some(PgError::from_driver(&shown, "the messages", &e).into());
                StoreError::Transfer {
                    what: format!("record {} of {} was refused", r.id, r.room),
                }
            })
        });
        if let Some(e) = failed.take() {
            return Err(e);
        }
        let report = report?;
        w.finish().map_err(driver(&shown, "the messages"))?;
        report
    };

    // The client-msg-ids: through a temporary table, so the database matches them to their
    // records (same id, same user); a pair given twice keeps its newest record, as the data
    // dir's dedupe does.
    tx.batch_execute(
        "CREATE TEMPORARY TABLE gc_import_msgids (id bigint NOT NULL, user_key text NOT NULL, \
         client_msg_id text NOT NULL) ON COMMIT DROP",
    )
    .map_err(driver(&shown, "a temporary table"))?;
    let skipped_msgids = {
        let sink = tx
            .copy_in(
                "COPY gc_import_msgids (id, user_key, client_msg_id) FROM STDIN (FORMAT binary)",
            )
            .map_err(driver(&shown, "the client-msg-ids"))?;
        let mut w = BinaryCopyInWriter::new(sink, &[Type::INT8, Type::TEXT, Type::TEXT]);
        let skipped = visit_msgids(dir, |id, user, cmid| {
            let Ok(id) = i64::try_from(id) else {
                return Ok(());
            };
            w.write(&[&id, &user.to_ascii_lowercase(), &cmid])
                .map_err(|e| {
                    failed = Some(PgError::from_driver(&shown, "the client-msg-ids", &e).into());
                    StoreError::Transfer {
                        what: format!("the client-msg-id of record {id} was refused"),
                    }
                })
        });
        if let Some(e) = failed.take() {
            return Err(e);
        }
        let skipped = skipped?;
        w.finish().map_err(driver(&shown, "the client-msg-ids"))?;
        skipped
    };
    let client_msg_ids = tx
        .execute(
            "UPDATE gc_messages m SET client_msg_id = s.client_msg_id \
             FROM (SELECT DISTINCT ON (user_key, client_msg_id) id, user_key, client_msg_id \
                   FROM gc_import_msgids ORDER BY user_key, client_msg_id, id DESC) s \
             WHERE m.id = s.id AND m.user_key = s.user_key",
            &[],
        )
        .map_err(driver(&shown, "the client-msg-ids"))?;

    // The accounts.
    let accounts = Accounts::open(&dir.join(ACCOUNTS_FILE))?.list();
    for a in &accounts {
        let iterations = i32::try_from(a.iterations).map_err(|_| StoreError::Transfer {
            what: format!(
                "the account {}: {} iterations is more than the database holds",
                a.username, a.iterations
            ),
        })?;
        let created = i64::try_from(a.created.as_micros()).unwrap_or(i64::MAX);
        tx.execute(
            "INSERT INTO gc_accounts \
             (user_key, username, salt, iterations, stored_key, server_key, created) \
             VALUES ($1, $2, $3, $4, $5, $6, $7)",
            &[
                &a.username.key(),
                &a.username.as_str(),
                &a.salt,
                &iterations,
                &a.stored_key,
                &a.server_key,
                &created,
            ],
        )
        .map_err(driver(&shown, "an account"))?;
    }
    let source = digest.finish(&accounts);

    // The room metadata, line for line, read back before it counts.
    for file in [RoomsFile::Rooms, RoomsFile::Members, RoomsFile::Admins] {
        let path = dir.join(file.name());
        let mut lines: Vec<Vec<u8>> = match std::fs::read(&path) {
            Ok(bytes) => bytes
                .split(|&b| b == b'\n')
                .filter(|l| !l.is_empty())
                .map(<[u8]>::to_vec)
                .collect(),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
            Err(source) => {
                return Err(StoreError::Io {
                    action: "read",
                    path,
                    source,
                }
                .into());
            }
        };
        let columns = crate::rooms::split_lines(file, &lines)
            .map_err(|what| StoreError::Transfer { what })?;
        crate::rooms::write_columns(&mut tx, file, &columns)
            .map_err(driver(&shown, "the room metadata"))?;
        let mut stored =
            crate::rooms::read_lines(&mut tx, file).map_err(driver(&shown, "the room metadata"))?;
        lines.sort();
        stored.sort();
        if stored != lines {
            return Err(StoreError::Transfer {
                what: format!("{} did not read back as written", file.name()),
            }
            .into());
        }
    }
    crate::rooms::bump_version(&mut tx).map_err(driver(&shown, "the room metadata version"))?;

    // The index of shared files, read back before it counts (the content stays where it is:
    // the files directory of the instances, by default the data dir's files/).
    let mut announcements = match ContentStore::open_read_only(dir)? {
        Some(files) => files.index().entries()?,
        None => Vec::new(),
    };
    for e in &announcements {
        crate::files::insert(&mut tx, e).map_err(driver(&shown, "the shared files' index"))?;
    }
    let mut stored = read_file_index(&mut tx, &shown)?;
    let line = |e: &FileEntry| e.line();
    announcements.sort_by_key(line);
    announcements.dedup();
    stored.sort_by_key(line);
    if stored != announcements {
        return Err(StoreError::Transfer {
            what: format!(
                "{FILES_DIR}/{FILE_INDEX} did not read back as written ({} lines, {} rows)",
                announcements.len(),
                stored.len()
            ),
        }
        .into());
    }

    // Ids go on after the highest imported one (never backwards).
    tx.execute(
        "UPDATE gc_sequence SET next_id = GREATEST(next_id, $1), last_ts = GREATEST(last_ts, $2)",
        &[&(max_id + 1), &max_ts],
    )
    .map_err(driver(&shown, "the id sequence"))?;

    let target = summary_in(&mut tx, &shown)?;
    if target != source {
        // Dropping the transaction rolls it back.
        return Err(TransferError::Mismatch {
            source_summary: source,
            target_summary: target,
        });
    }
    // Instances already running catch up at once.
    tx.execute(
        "SELECT pg_notify('gc_messages', $1)",
        &[&max_id.to_string()],
    )
    .map_err(driver(&shown, "the notification"))?;
    tx.commit().map_err(driver(&shown, "the import"))?;
    Ok(Transfer {
        source,
        target,
        client_msg_ids,
        skipped_msgids,
        skipped_torn_tail: report.skipped_torn_tail,
        file_announcements: stored.len() as u64,
    })
}

/// `gc-server db import --from-postgres`: writes the database at `url` (one consistent
/// snapshot) into the data dir `dir`, which must hold no messages, client-msg-ids or accounts.
/// Everything is staged, read back and compared first; the data dir changes only if the copy
/// matches.
pub fn unload_to_dir(url: &DbUrl, dir: &Path) -> Result<Transfer, TransferError> {
    let shown = url.to_string();
    let mut writer = DirImport::begin(dir)?;
    let mut conn = Conn::connect(url)?;
    let client = conn.client()?;
    let mut tx = snapshot(client, &shown)?;
    let rooms = rooms(&mut tx, &shown)?;
    let mut digest = Digest::new();
    each_record(&mut tx, &shown, &rooms, |r| {
        digest.record(r);
        writer.record(r)?;
        Ok(())
    })?;

    let mut client_msg_ids = 0;
    let portal = tx
        .bind(
            "SELECT id, username, client_msg_id FROM gc_messages \
             WHERE client_msg_id NOT LIKE '.%' ORDER BY id",
            &[],
        )
        .map_err(driver(&shown, "the client-msg-ids"))?;
    loop {
        let rows = tx
            .query_portal(&portal, BATCH)
            .map_err(driver(&shown, "the client-msg-ids"))?;
        if rows.is_empty() {
            break;
        }
        for row in &rows {
            let get = driver(&shown, "the client-msg-ids");
            let id: i64 = row.try_get(0).map_err(&get)?;
            let user: String = row.try_get(1).map_err(&get)?;
            let cmid: String = row.try_get(2).map_err(&get)?;
            if let Ok(id) = u64::try_from(id)
                && is_valid_client_msg_id(&cmid)
            {
                writer.msgid(id, &user, &cmid)?;
                client_msg_ids += 1;
            }
        }
    }
    let accounts = all_accounts(&mut tx, &shown)?;
    writer.accounts(&accounts)?;
    for file in [RoomsFile::Rooms, RoomsFile::Members, RoomsFile::Admins] {
        let lines =
            crate::rooms::read_lines(&mut tx, file).map_err(driver(&shown, "the room metadata"))?;
        writer.room_metadata(file, &lines)?;
    }
    let announcements = read_file_index(&mut tx, &shown)?;
    if !announcements.is_empty() {
        writer.file_index(&announcements)?;
    }
    let source = digest.finish(&accounts);
    drop(tx);

    let target = writer.staged_summary()?;
    if target != source {
        // Dropping the writer removes the staging directory.
        return Err(TransferError::Mismatch {
            source_summary: source,
            target_summary: target,
        });
    }
    writer.commit()?;
    Ok(Transfer {
        source,
        target,
        client_msg_ids,
        skipped_msgids: 0,
        skipped_torn_tail: None,
        file_announcements: announcements.len() as u64,
    })
}
