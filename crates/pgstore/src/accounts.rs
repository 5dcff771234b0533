//! Accounts in PostgreSQL: `gc_accounts`, one SCRAM-SHA-256 verifier per row.

use gc_protocol::types::{Timestamp, Username};
use gc_store::{Account, AccountStore, StoreError};
use parking_lot::Mutex;
use postgres::Row;

use crate::conn::Conn;
use crate::error::PgError;
use crate::url::DbUrl;

const COLUMNS: &str = "username, salt, iterations, stored_key, server_key, created";

/// The accounts of every instance sharing the database. Each call is one statement on the
/// store's own connection (logins are rare next to messages; nothing is cached, so a password
/// changed through one instance counts at once on all).
#[derive(Debug)]
pub struct PgAccounts {
    conn: Mutex<Conn>,
}

impl PgAccounts {
    /// Accounts in the database at `url` (connects on first use).
    pub fn new(url: &DbUrl) -> Self {
        Self {
            conn: Mutex::new(Conn::new(url)),
        }
    }
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(crate) fn account(url: &str, row: &Row) -> Result<Account, PgError> {
    let bad = |reason: String| PgError::BadRow {
        url: url.to_owned(),
        what: "account",
        reason,
    };
    let name: String = row.try_get(0).map_err(|e| bad(e.to_string()))?;
    let iterations: i32 = row.try_get(2).map_err(|e| bad(e.to_string()))?;
    let created: i64 = row.try_get(5).map_err(|e| bad(e.to_string()))?;
    Ok(Account {
        username: Username::new(name.clone())
            .map_err(|e| bad(format!("the name {name:?}: {e}")))?,
        salt: row.try_get(1).map_err(|e| bad(e.to_string()))?,
        iterations: u32::try_from(iterations)
            .map_err(|_| bad(format!("{name}: iteration count {iterations}")))?,
        stored_key: row.try_get(3).map_err(|e| bad(e.to_string()))?,
        server_key: row.try_get(4).map_err(|e| bad(e.to_string()))?,
        created: Timestamp::from_micros(u64::try_from(created).unwrap_or(0)),
    })
}

impl AccountStore for PgAccounts {
    fn shared_secret(&self, name: &str, offer: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        let mut conn = self.conn.lock();
        let row = conn.run("a shared secret", |c, _| {
            c.execute(
                "INSERT INTO gc_secrets (name, value) VALUES ($1, $2) ON CONFLICT (name) DO NOTHING",
                &[&name, &offer],
            )?;
            c.query_one("SELECT value FROM gc_secrets WHERE name = $1", &[&name])
        })?;
        let url = conn.shown();
        let value: Vec<u8> = row.try_get(0).map_err(|e| PgError::BadRow {
            url,
            what: "secret",
            reason: e.to_string(),
        })?;
        Ok(Some(value))
    }

    fn get(&self, name: &str) -> Result<Option<Account>, StoreError> {
        let mut conn = self.conn.lock();
        let url = conn.shown();
        let key = name.to_ascii_lowercase();
        let row = conn.run("an account lookup", |c, p| {
            let s = p.get(
                c,
                "SELECT username, salt, iterations, stored_key, server_key, created \
                 FROM gc_accounts WHERE user_key = $1",
            )?;
            c.query_opt(&s, &[&key])
        })?;
        Ok(row.map(|r| account(&url, &r)).transpose()?)
    }

    fn list(&self) -> Result<Vec<Account>, StoreError> {
        let mut conn = self.conn.lock();
        let url = conn.shown();
        let rows = conn.run("the account list", |c, _| {
            c.query(
                &format!("SELECT {COLUMNS} FROM gc_accounts ORDER BY created, user_key"),
                &[],
            )
        })?;
        Ok(rows
            .iter()
            .map(|r| account(&url, r))
            .collect::<Result<_, _>>()?)
    }

    fn count(&self) -> Result<usize, StoreError> {
        let n: i64 = self.conn.lock().run("the account count", |c, _| {
            c.query_one("SELECT count(*) FROM gc_accounts", &[])?
                .try_get(0)
        })?;
        Ok(usize::try_from(n).unwrap_or(0))
    }

    fn add(&self, account: Account) -> Result<(), StoreError> {
        let mut conn = self.conn.lock();
        let key = account.username.key();
        let iterations = i32::try_from(account.iterations).unwrap_or(i32::MAX);
        let created = to_i64(account.created.as_micros());
        let existing: Option<String> = conn.run("a new account", |c, _| {
            let inserted = c.execute(
                &format!(
                    "INSERT INTO gc_accounts (user_key, {COLUMNS}) VALUES ($1, $2, $3, $4, $5, $6, $7) \
                     ON CONFLICT (user_key) DO NOTHING"
                ),
                &[
                    &key,
                    &account.username.as_str(),
                    &account.salt,
                    &iterations,
                    &account.stored_key,
                    &account.server_key,
                    &created,
                ],
            )?;
            if inserted == 1 {
                return Ok(None);
            }
            c.query_opt("SELECT username FROM gc_accounts WHERE user_key = $1", &[&key])?
                .map(|r| r.try_get(0))
                .transpose()
        })?;
        match existing {
            None => Ok(()),
            Some(username) => Err(StoreError::Exists { username }),
        }
    }

    fn update(&self, account: Account) -> Result<(), StoreError> {
        let key = account.username.key();
        let iterations = i32::try_from(account.iterations).unwrap_or(i32::MAX);
        let created = to_i64(account.created.as_micros());
        let changed = self.conn.lock().run("an account change", |c, _| {
            c.execute(
                "UPDATE gc_accounts SET username = $2, salt = $3, iterations = $4, \
                 stored_key = $5, server_key = $6, created = $7 WHERE user_key = $1",
                &[
                    &key,
                    &account.username.as_str(),
                    &account.salt,
                    &iterations,
                    &account.stored_key,
                    &account.server_key,
                    &created,
                ],
            )
        })?;
        if changed == 0 {
            return Err(StoreError::UnknownAccount {
                username: account.username.to_string(),
            });
        }
        Ok(())
    }

    fn remove(&self, name: &str) -> Result<Account, StoreError> {
        let mut conn = self.conn.lock();
        let url = conn.shown();
        let key = name.to_ascii_lowercase();
        let row = conn.run("an account removal", |c, _| {
            c.query_opt(
                &format!("DELETE FROM gc_accounts WHERE user_key = $1 RETURNING {COLUMNS}"),
                &[&key],
            )
        })?;
        match row {
            Some(r) => Ok(account(&url, &r)?),
            None => Err(StoreError::UnknownAccount {
                username: name.to_owned(),
            }),
        }
    }
}
