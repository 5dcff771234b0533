//! Versioned schema migrations, run at start and by `gc-server db migrate`.
//!
//! Each migration runs once, in order, inside one transaction that first takes a
//! transaction-scoped advisory lock: two instances starting at once migrate one after the
//! other (the second finds nothing left to do), and a failed migration leaves nothing behind.
//! A database whose schema is newer than this build is refused rather than guessed at.

use postgres::Client;

use crate::error::PgError;

/// The advisory lock key that serialises migrations (any constant unlikely to clash).
const MIGRATION_LOCK: i64 = 0x6763_5f6d_6967_7261; // "gc_migra"

/// The migrations, in order: (version, what it adds, SQL).
const MIGRATIONS: &[(i32, &str, &str)] = &[
    (
        1,
        "messages with dedupe, the id sequence, accounts",
        "
    -- One row: the next id and the newest timestamp. Every append locks it until commit, so
    -- ids are dense and commit order is id order, across all instances.
    CREATE TABLE gc_sequence (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        next_id bigint NOT NULL CHECK (next_id > 0),
        last_ts bigint NOT NULL CHECK (last_ts >= 0)
    );
    INSERT INTO gc_sequence (next_id, last_ts) VALUES (1, 0);

    -- The records; ts is microseconds since the Unix epoch (UTC). A (user, client-msg-id)
    -- pair is stored once: the unique index is the dedupe.
    CREATE TABLE gc_messages (
        id bigint PRIMARY KEY CHECK (id > 0),
        ts bigint NOT NULL,
        username text NOT NULL,
        user_key text NOT NULL,
        room text NOT NULL,
        client_msg_id text NOT NULL,
        body text NOT NULL
    );
    CREATE UNIQUE INDEX gc_messages_msgid ON gc_messages (user_key, client_msg_id);
    CREATE INDEX gc_messages_room ON gc_messages (room, id);

    -- SCRAM-SHA-256 verifiers; user_key is the name in lower case (names are unique without
    -- regard to case).
    CREATE TABLE gc_accounts (
        user_key text PRIMARY KEY,
        username text NOT NULL,
        salt bytea NOT NULL,
        iterations integer NOT NULL CHECK (iterations > 0),
        stored_key bytea NOT NULL,
        server_key bytea NOT NULL,
        created bigint NOT NULL
    );
    ",
    ),
    (
        2,
        "room metadata: rooms, members, server admins",
        "
    -- One row: raised by every change of the three tables below. A change locks it, checks
    -- that it still has the version its instance loaded, and raises it: instances never
    -- overwrite each other's changes (compare-and-swap), and NOTIFY gc_rooms tells the others.
    CREATE TABLE gc_rooms_version (
        one boolean PRIMARY KEY DEFAULT true CHECK (one),
        version bigint NOT NULL
    );
    INSERT INTO gc_rooms_version (version) VALUES (0);

    -- The fields of the data dir's rooms.db, members.db and admins.db lines (docs/rooms.md),
    -- as text exactly as in the files (the topic escaped), so both stores share one validator.
    CREATE TABLE gc_rooms (
        room text PRIMARY KEY,
        kind text NOT NULL,
        created text NOT NULL,
        creator text NOT NULL,
        topic text NOT NULL
    );
    CREATE TABLE gc_members (
        room text NOT NULL,
        username text NOT NULL,
        standing text NOT NULL,
        muted_until text NOT NULL,
        PRIMARY KEY (room, username)
    );
    CREATE TABLE gc_admins (
        username text PRIMARY KEY
    );
    ",
    ),
    (
        3,
        "presence: instances with leases, and who is online through each",
        "
    -- seen is the database's clock (seconds since the epoch), so instances on hosts whose
    -- clocks differ still agree on whose lease ran out.
    CREATE TABLE gc_instances (
        instance text PRIMARY KEY,
        seen double precision NOT NULL
    );
    CREATE TABLE gc_presence (
        instance text NOT NULL REFERENCES gc_instances ON DELETE CASCADE,
        user_key text NOT NULL,
        username text NOT NULL,
        PRIMARY KEY (instance, user_key)
    );
    ",
    ),
];

/// The newest schema version this build knows.
pub const SCHEMA_VERSION: i32 = MIGRATIONS[MIGRATIONS.len() - 1].0;

/// What [`migrate`] found and did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MigrateReport {
    /// The schema version before.
    pub from: i32,
    /// The schema version now.
    pub to: i32,
    /// The migrations applied: (version, what it adds).
    pub applied: Vec<(i32, &'static str)>,
}

/// Brings the schema to [`SCHEMA_VERSION`]. `url` is for errors.
pub(crate) fn migrate(client: &mut Client, url: &str) -> Result<MigrateReport, PgError> {
    let fail = |what| move |e: postgres::Error| PgError::from_driver(url, what, &e);
    let mut tx = client.transaction().map_err(fail("a transaction"))?;
    tx.execute("SELECT pg_advisory_xact_lock($1)", &[&MIGRATION_LOCK])
        .map_err(fail("the migration lock"))?;
    tx.batch_execute(
        "CREATE TABLE IF NOT EXISTS gc_migrations (
            version integer PRIMARY KEY,
            name text NOT NULL,
            applied_at timestamptz NOT NULL DEFAULT now()
        )",
    )
    .map_err(fail("the migrations table"))?;
    let from: i32 = tx
        .query_one("SELECT coalesce(max(version), 0) FROM gc_migrations", &[])
        .and_then(|row| row.try_get(0))
        .map_err(fail("the schema version"))?;
    if from > SCHEMA_VERSION {
        return Err(PgError::NewerSchema {
            url: url.to_owned(),
            found: from,
            known: SCHEMA_VERSION,
        });
    }
    let mut applied = Vec::new();
    for &(version, name, sql) in MIGRATIONS.iter().filter(|m| m.0 > from) {
        tx.batch_execute(sql).map_err(fail("a schema migration"))?;
        tx.execute(
            "INSERT INTO gc_migrations (version, name) VALUES ($1, $2)",
            &[&version, &name],
        )
        .map_err(fail("the schema version"))?;
        applied.push((version, name));
    }
    tx.commit().map_err(fail("the migration"))?;
    if !applied.is_empty() {
        tracing::info!(from, to = SCHEMA_VERSION, "database schema migrated");
    }
    Ok(MigrateReport {
        from,
        to: SCHEMA_VERSION,
        applied,
    })
}
