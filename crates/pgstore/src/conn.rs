//! One database connection that reconnects when it broke, with its prepared statements.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use postgres::{Client, NoTls, Statement};

use crate::error::PgError;
use crate::url::DbUrl;

/// After a failed connect, requests fail at once for this long instead of each waiting for a
/// connect timeout of its own: a database that is away costs the chat nothing but a clear error.
const RECONNECT_PAUSE: Duration = Duration::from_secs(1);

/// How long one statement may run: a lock held by a stuck instance, or a database under
/// pressure, shows up as an error rather than a thread that hangs for good.
const STATEMENT_TIMEOUT_MS: u32 = 15_000;

/// A connection, made on first use and again after it broke.
pub(crate) struct Conn {
    url: DbUrl,
    client: Option<Client>,
    statements: HashMap<&'static str, Statement>,
    pause_until: Option<Instant>,
}

impl std::fmt::Debug for Conn {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Conn")
            .field("url", &self.url)
            .field("connected", &self.client.is_some())
            .finish_non_exhaustive()
    }
}

impl Conn {
    /// A connection to `url`, not yet made.
    pub(crate) fn new(url: &DbUrl) -> Self {
        Self {
            url: url.clone(),
            client: None,
            statements: HashMap::new(),
            pause_until: None,
        }
    }

    /// A connection to `url`, made now.
    pub(crate) fn connect(url: &DbUrl) -> Result<Self, PgError> {
        let mut conn = Self::new(url);
        conn.client()?;
        Ok(conn)
    }

    /// The URL without password, for errors.
    pub(crate) fn shown(&self) -> String {
        self.url.to_string()
    }

    /// The client, connecting first if there is none (or it broke).
    pub(crate) fn client(&mut self) -> Result<&mut Client, PgError> {
        if self.client.as_ref().is_some_and(Client::is_closed) {
            self.reset();
        }
        if self.client.is_none() {
            if let Some(until) = self.pause_until
                && Instant::now() < until
            {
                return Err(PgError::Unreachable {
                    url: self.shown(),
                    cause: "the last connection attempt failed a moment ago".into(),
                });
            }
            let mut client = match self.url.config().connect(NoTls) {
                Ok(client) => client,
                Err(e) => {
                    self.pause_until = Some(Instant::now() + RECONNECT_PAUSE);
                    return Err(PgError::from_driver(&self.shown(), "the connection", &e));
                }
            };
            // Timestamps are numbers of microseconds, so the session's time zone does not
            // matter; the statement timeout keeps a stuck lock from hanging a thread; notices
            // ("already exists, skipping") are not worth a log line.
            if let Err(e) = client.batch_execute(&format!(
                "SET statement_timeout = {STATEMENT_TIMEOUT_MS}; SET lock_timeout = {STATEMENT_TIMEOUT_MS}; \
                 SET client_min_messages = warning"
            )) {
                self.pause_until = Some(Instant::now() + RECONNECT_PAUSE);
                return Err(PgError::from_driver(&self.shown(), "the session settings", &e));
            }
            self.pause_until = None;
            self.client = Some(client);
        }
        let url = self.shown();
        self.client.as_mut().ok_or(PgError::Unreachable {
            url,
            cause: "no connection".into(),
        })
    }

    /// Runs `f` on the client; an error that broke the connection drops it, so the next use
    /// reconnects.
    pub(crate) fn run<T>(
        &mut self,
        what: &'static str,
        f: impl FnOnce(&mut Client, &mut Prepared<'_>) -> Result<T, postgres::Error>,
    ) -> Result<T, PgError> {
        self.client()?;
        let Some(client) = self.client.as_mut() else {
            return Err(PgError::Unreachable {
                url: self.url.to_string(),
                cause: "no connection".into(),
            });
        };
        let mut prepared = Prepared {
            statements: &mut self.statements,
        };
        match f(client, &mut prepared) {
            Ok(v) => Ok(v),
            Err(e) => {
                let error = PgError::from_driver(&self.url.to_string(), what, &e);
                if e.as_db_error().is_none() || client.is_closed() {
                    self.reset();
                }
                Err(error)
            }
        }
    }

    /// Drops the connection (and its statements).
    pub(crate) fn reset(&mut self) {
        self.client = None;
        self.statements.clear();
    }
}

/// The statements prepared on one connection, by their text.
pub(crate) struct Prepared<'a> {
    statements: &'a mut HashMap<&'static str, Statement>,
}

impl Prepared<'_> {
    /// `sql` prepared on `client` (once per connection).
    pub(crate) fn get(
        &mut self,
        client: &mut impl postgres::GenericClient,
        sql: &'static str,
    ) -> Result<Statement, postgres::Error> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        let s = client.prepare(sql)?;
        self.statements.insert(sql, s.clone());
        Ok(s)
    }
}
