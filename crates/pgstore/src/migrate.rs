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
    (
        4,
        "gc_append: a group commit in one round trip; shared secrets",
        "
    -- One group commit as one statement (SELECT * FROM gc_append(...) in its own implicit
    -- transaction): the sequence's lock, the dedupe lookup, the rows, the sequence's advance and
    -- the notification, run by the database without waiting for the instance between them.
    -- On a busy host each round trip waits for the database process to get a core, so this is
    -- what makes a commit quick (docs/PERFORMANCE.md). The caller removes repeats of one
    -- (user_key, client_msg_id) pair within a batch; p_now is its clock (microseconds, UTC).
    -- Returns one row per input element: its ordinal (1-based), id, timestamp, and whether it
    -- was stored before (then id and ts are the earlier record's).
    -- Secrets every instance must share, e.g. the one the decoy salts of names without an
    -- account derive from (the first instance to start stores its own).
    CREATE TABLE gc_secrets (
        name text PRIMARY KEY,
        value bytea NOT NULL
    );

    CREATE FUNCTION gc_append(
        p_names text[], p_keys text[], p_rooms text[], p_msgids text[], p_bodies text[],
        p_now bigint
    ) RETURNS TABLE (n bigint, id bigint, ts bigint, duplicate boolean)
    LANGUAGE plpgsql VOLATILE AS $fn$
    DECLARE
        v_next bigint;
        v_last bigint;
        v_ts bigint;
        v_newest bigint;
    BEGIN
        SELECT s.next_id, s.last_ts INTO v_next, v_last FROM gc_sequence s FOR UPDATE;
        IF NOT FOUND THEN
            RAISE EXCEPTION 'gc_sequence has no row: the schema is damaged';
        END IF;
        v_ts := greatest(p_now, v_last);
        -- A statement of its own after the lock: under read committed a volatile function's
        -- statements each take a fresh snapshot, so the lookup sees every row committed by
        -- whoever held the lock before.
        RETURN QUERY
        WITH t AS (
            SELECT * FROM unnest(p_names, p_keys, p_rooms, p_msgids, p_bodies)
                WITH ORDINALITY AS t(u, k, r, c, b, n)
        ), old AS (
            SELECT t.n, m.id, m.ts FROM t
            JOIN gc_messages m ON m.user_key = t.k AND m.client_msg_id = t.c
        ), fresh AS (
            SELECT t.*, v_next - 1 + row_number() OVER (ORDER BY t.n) AS id FROM t
            WHERE NOT EXISTS (SELECT 1 FROM old WHERE old.n = t.n)
        ), ins AS (
            INSERT INTO gc_messages (id, ts, username, user_key, room, client_msg_id, body)
            SELECT fresh.id, v_ts, fresh.u, fresh.k, fresh.r, fresh.c, fresh.b FROM fresh
        )
        SELECT old.n, old.id, old.ts, true FROM old
        UNION ALL
        SELECT fresh.n, fresh.id, v_ts, false FROM fresh;
        -- The new rows are this transaction's own, visible to the next statement.
        SELECT max(m.id) INTO v_newest FROM gc_messages m WHERE m.id >= v_next;
        IF v_newest IS NOT NULL THEN
            UPDATE gc_sequence SET next_id = v_newest + 1, last_ts = v_ts;
            PERFORM pg_notify('gc_messages', v_newest::text);
        END IF;
    END
    $fn$;
    ",
    ),
    (
        5,
        "the index of shared files",
        "
    -- The data dir's files/index.db as a table: one row per announcement of a shared file
    -- (GC/5, docs/files.md §6), for quotas and for who may fetch what. The content itself stays
    -- in the files directory every instance shares. hash is the SHA-256 in lower-case hex, ts
    -- microseconds since the Unix epoch (UTC), id the record that announced the file.
    CREATE TABLE gc_files (
        hash text NOT NULL CHECK (hash ~ '^[0-9a-f]{64}$'),
        size bigint NOT NULL CHECK (size >= 0),
        username text NOT NULL,
        user_key text NOT NULL,
        ts bigint NOT NULL,
        id bigint NOT NULL CHECK (id > 0),
        room text NOT NULL,
        seq bigserial NOT NULL,
        PRIMARY KEY (hash, user_key, id)
    );
    CREATE INDEX gc_files_user ON gc_files (user_key);
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
