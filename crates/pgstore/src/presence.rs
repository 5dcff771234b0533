//! Presence across instances: `gc_instances` (a lease per instance, renewed on the database's
//! clock) and `gc_presence` (who is online through each). See [`gc_store::PresenceShare`].

use std::time::Duration;

use gc_protocol::types::Username;
use gc_store::{PresenceShare, StoreError};
use parking_lot::Mutex;

use crate::conn::Conn;
use crate::error::PgError;
use crate::url::DbUrl;

/// The channel presence changes are announced on.
pub(crate) const CHANNEL: &str = "gc_presence";

/// How long an instance that stopped renewing still counts: a crashed instance's users leave
/// everyone's list within this (plus one renewal interval of the others).
pub const LEASE: Duration = Duration::from_secs(15);

/// After how long a dead instance's rows are deleted (by whichever instance renews next).
const FORGET_AFTER: Duration = Duration::from_secs(120);

/// This instance's entry in the shared presence.
#[derive(Debug)]
pub struct PgPresence {
    conn: Mutex<Conn>,
    instance: String,
    lease: Duration,
    /// What was last published (so an unchanged list costs no write).
    published: Mutex<Option<Vec<String>>>,
}

impl PgPresence {
    /// An entry for a new instance (its name is made by the database: unique across hosts).
    pub fn new(url: &DbUrl) -> Result<Self, PgError> {
        Self::with_lease(url, LEASE)
    }

    /// [`PgPresence::new`] with another lease (every instance of a database must use the same).
    pub fn with_lease(url: &DbUrl, lease: Duration) -> Result<Self, PgError> {
        let mut conn = Conn::connect(url)?;
        let instance: String = conn.run("an instance name", |c, _| {
            c.query_one("SELECT gen_random_uuid()::text", &[])?
                .try_get(0)
        })?;
        Ok(Self {
            conn: Mutex::new(conn),
            instance,
            lease,
            published: Mutex::new(None),
        })
    }

    /// This instance's name in `gc_instances`.
    pub fn instance(&self) -> &str {
        &self.instance
    }
}

impl PresenceShare for PgPresence {
    fn exchange(&self, local: &[Username]) -> Result<Vec<Username>, StoreError> {
        let mut keys: Vec<String> = local.iter().map(Username::key).collect();
        let names: Vec<&str> = local.iter().map(Username::as_str).collect();
        keys.sort_unstable();
        let mut published = self.published.lock();
        let changed = published.as_ref() != Some(&keys);
        let lease = self.lease.as_secs_f64();
        let forget = FORGET_AFTER.as_secs_f64();
        let me = &self.instance;
        let others: Vec<String> = self.conn.lock().run("the presence", |c, _| {
            let mut tx = c.transaction()?;
            tx.execute(
                "INSERT INTO gc_instances (instance, seen) \
                 VALUES ($1, extract(epoch FROM clock_timestamp())::float8) \
                 ON CONFLICT (instance) DO UPDATE SET seen = excluded.seen",
                &[me],
            )?;
            if changed {
                let local_keys: Vec<String> = local.iter().map(Username::key).collect();
                tx.execute("DELETE FROM gc_presence WHERE instance = $1", &[me])?;
                tx.execute(
                    "INSERT INTO gc_presence (instance, user_key, username) \
                     SELECT $1, k, u FROM unnest($2::text[], $3::text[]) AS t(k, u) \
                     ON CONFLICT DO NOTHING",
                    &[me, &local_keys, &names],
                )?;
                tx.execute(&format!("NOTIFY {CHANNEL}"), &[])?;
            }
            tx.execute(
                "DELETE FROM gc_instances \
                 WHERE seen < extract(epoch FROM clock_timestamp())::float8 - $1::float8",
                &[&forget],
            )?;
            let rows = tx.query(
                "SELECT DISTINCT p.username FROM gc_presence p JOIN gc_instances i USING (instance) \
                 WHERE p.instance <> $1 AND i.seen >= extract(epoch FROM clock_timestamp())::float8 - $2::float8",
                &[me, &lease],
            )?;
            let names = rows
                .iter()
                .map(|r| r.try_get::<_, String>(0))
                .collect::<Result<Vec<_>, _>>()?;
            tx.commit()?;
            Ok(names)
        })?;
        if changed {
            *published = Some(keys);
        }
        Ok(others
            .into_iter()
            .filter_map(|n| Username::new(n).ok())
            .collect())
    }

    fn withdraw(&self) {
        let me = &self.instance;
        let r = self.conn.lock().run("the presence withdrawal", |c, _| {
            c.execute("DELETE FROM gc_instances WHERE instance = $1", &[me])?;
            c.execute(&format!("NOTIFY {CHANNEL}"), &[])
        });
        if let Err(e) = r {
            tracing::warn!("cannot withdraw this instance's presence (it expires by itself): {e}");
        }
    }

    fn lease(&self) -> Duration {
        self.lease
    }
}
