//! The database URL: parsed once, shown without its password.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

use postgres::config::Host;

use crate::error::PgError;

/// How long connecting may take before the database counts as unreachable.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// How long an unacknowledged write to the database may hang before the connection counts as
/// dead (TCP_USER_TIMEOUT), so a vanished database host cannot stall a thread for minutes.
pub const IO_TIMEOUT: Duration = Duration::from_secs(10);

/// A `postgres://` URL (or a libpq key=value string), with the timeouts gc needs.
#[derive(Clone)]
pub struct DbUrl {
    config: postgres::Config,
    shown: String,
}

impl fmt::Debug for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl fmt::Display for DbUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.shown)
    }
}

impl FromStr for DbUrl {
    type Err = PgError;

    fn from_str(text: &str) -> Result<Self, PgError> {
        let mut config: postgres::Config = text.parse().map_err(|e| PgError::BadUrl {
            reason: format!("{e}"),
        })?;
        if config.get_hosts().is_empty() {
            return Err(PgError::BadUrl {
                reason: "no host: write postgres://USER:PASSWORD@HOST:PORT/DATABASE".into(),
            });
        }
        if config.get_connect_timeout().is_none() {
            config.connect_timeout(CONNECT_TIMEOUT);
        }
        config
            .keepalives(true)
            .keepalives_idle(Duration::from_secs(10))
            .tcp_user_timeout(IO_TIMEOUT)
            .application_name("gc-server");
        let shown = show(&config);
        Ok(Self { config, shown })
    }
}

impl DbUrl {
    /// The parsed configuration.
    pub(crate) fn config(&self) -> &postgres::Config {
        &self.config
    }
}

/// `postgres://user@host:port/db`: what logs and errors may show (never the password).
fn show(config: &postgres::Config) -> String {
    let hosts: Vec<String> = config
        .get_hosts()
        .iter()
        .enumerate()
        .map(|(i, h)| {
            let host = match h {
                Host::Tcp(name) if name.contains(':') => format!("[{name}]"),
                Host::Tcp(name) => name.clone(),
                Host::Unix(path) => path.display().to_string(),
            };
            match config.get_ports().get(i).or(config.get_ports().first()) {
                Some(port) => format!("{host}:{port}"),
                None => host,
            }
        })
        .collect();
    let user = config
        .get_user()
        .map(|u| format!("{u}@"))
        .unwrap_or_default();
    let db = config.get_dbname().unwrap_or_default();
    format!("postgres://{user}{}/{db}", hosts.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_password_is_never_shown() {
        let url: DbUrl = "postgres://gc:s3cret@127.0.0.1:5433/chat".parse().unwrap();
        assert_eq!(url.to_string(), "postgres://gc@127.0.0.1:5433/chat");
        assert_eq!(format!("{url:?}"), "postgres://gc@127.0.0.1:5433/chat");
        let kv: DbUrl = "host=db.lan port=5432 user=gc password=x dbname=gc"
            .parse()
            .unwrap();
        assert_eq!(kv.to_string(), "postgres://gc@db.lan:5432/gc");
    }

    #[test]
    fn a_url_without_host_or_of_another_kind_is_refused() {
        assert!("postgres:///chat".parse::<DbUrl>().is_err());
        assert!("mysql://x".parse::<DbUrl>().is_err());
        let e = "postgres://gc:pw@host:notaport/db"
            .parse::<DbUrl>()
            .unwrap_err()
            .to_string();
        assert!(!e.contains("pw@"), "{e}");
    }
}
