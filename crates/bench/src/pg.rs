//! PostgreSQL for runs on the shared store (`gc-server --store postgres://…`): a fresh database
//! per run in a cluster given by a superuser URL (`--postgres`, e.g. the private cluster of
//! `.ci/postgres`), its schema migrated and the bench accounts written before the server
//! starts, and dropped when the run ends, so runs never see each other's data.

use std::sync::atomic::{AtomicU32, Ordering};

use gc_protocol::Timestamp;
use postgres::{Client, NoTls};
use serde_json::{Value, json};

use crate::error::BenchError;
use crate::server::BenchAccounts;

/// A cluster the bench may create databases in.
#[derive(Clone)]
pub struct PgCluster {
    /// Superuser URL (with password: never shown).
    admin: String,
    /// The same without the password, for reports and errors.
    pub shown: String,
}

impl std::fmt::Debug for PgCluster {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.shown)
    }
}

fn pg_error(what: impl Into<String>, e: &postgres::Error) -> BenchError {
    BenchError::Postgres {
        what: what.into(),
        // The driver's Display of a server error is just "db error".
        cause: match e.as_db_error() {
            Some(db) => format!("{}: {}", db.code().code(), db.message()),
            None => e.to_string(),
        },
    }
}

impl PgCluster {
    /// Checks `url` (a `postgres://` URL of a role that may create databases) by connecting.
    pub fn new(url: &str) -> Result<Self, BenchError> {
        let shown = url
            .parse::<gc_pgstore::DbUrl>()
            .map_err(|e| BenchError::Invalid(format!("--postgres: {e}")))?
            .to_string();
        if url.rsplit_once('/').is_none_or(|(b, _)| b.ends_with('/')) {
            return Err(BenchError::Invalid(
                "--postgres takes postgres://USER:PASSWORD@HOST:PORT/DATABASE".into(),
            ));
        }
        let cluster = Self {
            admin: url.to_owned(),
            shown,
        };
        cluster.client()?;
        Ok(cluster)
    }

    fn client(&self) -> Result<Client, BenchError> {
        Client::connect(&self.admin, NoTls)
            .map_err(|e| pg_error(format!("connect to {}", self.shown), &e))
    }

    /// The settings that decide what a commit costs, and the server's version, for reports.
    pub fn settings(&self) -> Result<Value, BenchError> {
        let mut c = self.client()?;
        let mut out = serde_json::Map::new();
        out.insert("url".into(), json!(self.shown));
        for name in [
            "server_version",
            "fsync",
            "synchronous_commit",
            "wal_sync_method",
            "full_page_writes",
            "commit_delay",
            "shared_buffers",
            "max_connections",
        ] {
            let v: String = c
                .query_one(&format!("SHOW {name}"), &[])
                .and_then(|r| r.try_get(0))
                .map_err(|e| pg_error(format!("SHOW {name}"), &e))?;
            out.insert(name.into(), json!(v));
        }
        Ok(Value::Object(out))
    }

    /// A fresh database with the schema migrated and accounts `0..accounts` of `bench`.
    pub fn create(&self, bench: &BenchAccounts, accounts: usize) -> Result<PgDb, BenchError> {
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let name = format!(
            "gc_bench_{}_{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let mut c = self.client()?;
        // A name this process used before is gone by now; still, start from nothing. One
        // statement each: neither may run inside a transaction block.
        for sql in [
            format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"),
            format!("CREATE DATABASE {name}"),
        ] {
            c.batch_execute(&sql)
                .map_err(|e| pg_error(format!("create the database {name}"), &e))?;
        }
        let db = PgDb {
            cluster: self.clone(),
            url: match self.admin.rsplit_once('/') {
                Some((base, _)) => format!("{base}/{name}"),
                None => unreachable!("checked in PgCluster::new"),
            },
            name,
        };
        let url: gc_pgstore::DbUrl = db
            .url
            .parse()
            .map_err(|e| BenchError::Invalid(format!("--postgres: {e}")))?;
        gc_pgstore::migrate(&url).map_err(|e| BenchError::Postgres {
            what: format!("migrate {}", db.name),
            cause: e.to_string(),
        })?;
        db.add_accounts(bench, accounts)?;
        Ok(db)
    }
}

/// A database made for one run (shared by the instances of a run), dropped with it.
#[derive(Debug)]
pub struct PgDb {
    cluster: PgCluster,
    /// Its URL (with password), what `gc-server --store` gets.
    pub url: String,
    /// Its name.
    pub name: String,
}

impl PgDb {
    /// A connection to it.
    pub fn client(&self) -> Result<Client, BenchError> {
        Client::connect(&self.url, NoTls)
            .map_err(|e| pg_error(format!("connect to {}", self.name), &e))
    }

    /// Writes accounts `0..n` in one statement (as the flat-file runs write `usernames.db`):
    /// registering thousands over the network would take a commit each.
    fn add_accounts(&self, bench: &BenchAccounts, n: usize) -> Result<(), BenchError> {
        let v = &bench.verifier;
        let names: Vec<String> = (0..n).map(BenchAccounts::name).collect();
        let keys: Vec<String> = names.iter().map(|s| s.to_ascii_lowercase()).collect();
        let iterations = i32::try_from(v.iterations).unwrap_or(i32::MAX);
        let created = i64::try_from(Timestamp::now().as_micros()).unwrap_or(i64::MAX);
        self.client()?
            .execute(
                "INSERT INTO gc_accounts \
                 (user_key, username, salt, iterations, stored_key, server_key, created) \
                 SELECT k, u, $3, $4, $5, $6, $7 FROM unnest($1::text[], $2::text[]) AS t(k, u)",
                &[
                    &keys,
                    &names,
                    &v.salt,
                    &iterations,
                    &v.stored_key.as_slice(),
                    &v.server_key.as_slice(),
                    &created,
                ],
            )
            .map_err(|e| pg_error(format!("write the accounts into {}", self.name), &e))?;
        Ok(())
    }
}

impl Drop for PgDb {
    fn drop(&mut self) {
        if let Ok(mut c) = self.cluster.client() {
            let _ = c.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
