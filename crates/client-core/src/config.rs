//! What a client needs to know: where the server is, who logs in, where to listen, and timing.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use gc_protocol::limits::{
    DEFAULT_MAX_MESSAGE_BYTES, MAX_BODY_BYTES, MIN_SCRAM_ITERATIONS, check_new_password,
};
use gc_protocol::types::is_valid_username;

use crate::error::ClientError;
use crate::trust::ClientTls;

/// Default server port of the connect / version check exchange.
pub const DEFAULT_CONNECT_PORT: u16 = 10740;
/// Default server port of authentication and registration.
pub const DEFAULT_AUTH_PORT: u16 = 9281;
/// Default server port of sending and queries.
pub const DEFAULT_SEND_PORT: u16 = 9980;
/// Default client port of the auth callback.
pub const DEFAULT_CALLBACK_AUTH_PORT: u16 = 12090;
/// Default client port of heartbeats.
pub const DEFAULT_HEARTBEAT_PORT: u16 = 8070;
/// Default client port of deliveries.
pub const DEFAULT_DELIVERY_PORT: u16 = 6090;

/// The server's three ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ServerPorts {
    /// Connect / version check (10740).
    pub connect: u16,
    /// Authentication and registration (9281).
    pub auth: u16,
    /// Sending and queries (9980).
    pub send: u16,
}

impl Default for ServerPorts {
    fn default() -> Self {
        Self {
            connect: DEFAULT_CONNECT_PORT,
            auth: DEFAULT_AUTH_PORT,
            send: DEFAULT_SEND_PORT,
        }
    }
}

/// How to pick one of the client's listening ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum PortChoice {
    /// The protocol's default port for this role; if it is taken (e.g. another client on this
    /// host), an OS-chosen port, with a log line.
    #[default]
    Default,
    /// Exactly this port; an error if it is taken.
    Fixed(u16),
    /// A port chosen by the operating system.
    Any,
}

impl PortChoice {
    /// `None` → [`PortChoice::Default`], `Some(0)` → [`PortChoice::Any`], `Some(p)` → fixed.
    pub fn from_flag(port: Option<u16>) -> Self {
        match port {
            None => Self::Default,
            Some(0) => Self::Any,
            Some(p) => Self::Fixed(p),
        }
    }
}

/// The client's three listening (callback) ports.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub struct ListenPorts {
    /// Auth callback (`Authed`), default 12090.
    pub auth: PortChoice,
    /// Heartbeat (`Ping`), default 8070.
    pub heartbeat: PortChoice,
    /// Delivery (`Batch`), default 6090.
    pub delivery: PortChoice,
}

impl ListenPorts {
    /// All three chosen by the operating system (tests, several clients on one host).
    pub fn any() -> Self {
        Self {
            auth: PortChoice::Any,
            heartbeat: PortChoice::Any,
            delivery: PortChoice::Any,
        }
    }
}

/// Reconnect backoff: capped exponential with jitter.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct BackoffConfig {
    /// The first wait (before jitter).
    pub min: Duration,
    /// The longest wait.
    pub max: Duration,
}

impl Default for BackoffConfig {
    fn default() -> Self {
        Self {
            min: Duration::from_millis(200),
            max: Duration::from_secs(10),
        }
    }
}

/// A password that never shows up in `Debug` output or logs.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps a password.
    pub fn new(password: impl Into<String>) -> Self {
        Self(password.into())
    }

    /// The password itself.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Password(..)")
    }
}

impl From<&str> for Password {
    fn from(s: &str) -> Self {
        Self::new(s)
    }
}

impl From<String> for Password {
    fn from(s: String) -> Self {
        Self::new(s)
    }
}

/// Everything a [`crate::Client`] needs.
#[derive(Clone, Debug)]
pub struct ClientConfig {
    /// The server: an IP address or a host name (resolved at every login attempt), or several
    /// instances of one service separated by commas (`host1,host2,10.0.0.7`), which the client
    /// moves between when the one it is on stops answering (see [`crate::failover`]).
    pub server: String,
    /// The server's ports.
    pub server_ports: ServerPorts,
    /// Local address: when set, the three listeners bind to it and every outgoing connection uses
    /// it as its source address (the server calls back the source address of the login, and
    /// accepts sends only from it). `None`: listen on all interfaces, let the OS pick the source.
    pub bind_ip: Option<IpAddr>,
    /// The three callback ports.
    pub listen_ports: ListenPorts,
    /// Who logs in (1–32 characters of `A-Z a-z 0-9 _ . -`).
    pub username: String,
    /// The account's password (never sent: SCRAM-SHA-256).
    pub password: Password,
    /// Create the account first (once per client run); the password must then have at least
    /// [`gc_protocol::limits::MIN_PASSWORD_CHARS`] characters.
    pub register: bool,
    /// The cache file (`cdatabase.db`); `None` keeps records and the cursor in memory only.
    pub cache_path: Option<PathBuf>,
    /// Deadline of every connect, read and write within an exchange.
    pub io_timeout: Duration,
    /// How long a kept connection may stay idle between exchanges.
    pub idle_timeout: Duration,
    /// Keep the sending connection open between exchanges and pipeline messages on it; `false`
    /// sends one exchange per connection.
    pub reuse_connections: bool,
    /// Reconnect backoff.
    pub backoff: BackoffConfig,
    /// Lowest SCRAM iteration count accepted from the server, and the count used to register.
    pub min_scram_iterations: u32,
    /// Largest message body accepted by [`crate::Client::send`], in bytes.
    pub max_message_bytes: usize,
    /// Where client plugins are loaded from (`None`: no plugins).
    pub mods_dir: Option<PathBuf>,
    /// Plain GC/1, or TLS (GC/2) to the server with the pinned certificate. [`ClientConfig::new`]
    /// starts plain: a pin cannot be guessed; front ends choose it (see [`crate::trust`]).
    pub tls: ClientTls,
    /// Ask for rooms (GC/3) first, falling back to the transport's old version when the server
    /// is older (the default); `false` speaks GC/1 (GC/2 over TLS) only: a session shown
    /// `#general` alone, for a front end that shows no rooms.
    pub rooms: bool,
}

impl ClientConfig {
    /// A configuration with the protocol's defaults.
    pub fn new(
        server: impl Into<String>,
        username: impl Into<String>,
        password: impl Into<Password>,
    ) -> Self {
        Self {
            server: server.into(),
            server_ports: ServerPorts::default(),
            bind_ip: None,
            listen_ports: ListenPorts::default(),
            username: username.into(),
            password: password.into(),
            register: false,
            cache_path: None,
            io_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            reuse_connections: true,
            backoff: BackoffConfig::default(),
            min_scram_iterations: MIN_SCRAM_ITERATIONS,
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            mods_dir: None,
            tls: ClientTls::Off,
            rooms: true,
        }
    }

    /// The server's instances: the entries of [`ClientConfig::server`] (one for a single server).
    pub fn servers(&self) -> Result<Vec<String>, ClientError> {
        parse_server_list(&self.server)
    }

    /// Checks values that would make no sense, with a message saying what is allowed.
    pub fn validate(&self) -> Result<(), ClientError> {
        let bad = |what: String| Err(ClientError::Config(what));
        if self.server.trim().is_empty() {
            return bad("the server address is empty".into());
        }
        self.servers()?;
        if !is_valid_username(&self.username) {
            return bad(format!(
                "`{}` is not a valid username: use 1 to 32 characters of A-Z a-z 0-9 _ . -",
                self.username.escape_debug()
            ));
        }
        // Only a new account's: the server cannot check what it never sees (SCRAM), and an
        // older, shorter password must still log in.
        if self.register {
            check_new_password(self.password.expose()).or_else(bad)?;
        }
        if self.io_timeout < Duration::from_millis(10) {
            return bad("the I/O timeout must be at least 10 ms".into());
        }
        if self.idle_timeout < self.io_timeout {
            return bad("the idle timeout must be at least the I/O timeout".into());
        }
        if self.backoff.min.is_zero() || self.backoff.max < self.backoff.min {
            return bad("the backoff must have 0 < min <= max".into());
        }
        if self.min_scram_iterations < MIN_SCRAM_ITERATIONS {
            return bad(format!(
                "the SCRAM iteration count must be at least {MIN_SCRAM_ITERATIONS}"
            ));
        }
        if !(1..=MAX_BODY_BYTES).contains(&self.max_message_bytes) {
            return bad(format!(
                "the largest message must be 1 to {MAX_BODY_BYTES} bytes"
            ));
        }
        for (port, what) in [
            (self.server_ports.connect, "connect"),
            (self.server_ports.auth, "auth"),
            (self.server_ports.send, "send"),
        ] {
            if port == 0 {
                return bad(format!("the server's {what} port cannot be 0"));
            }
        }
        Ok(())
    }
}

/// Splits `host1,host2,…` into its entries (spaces around an entry are dropped). An empty entry
/// and an entry given twice (`Host` and `host`, `::1` and `[::1]` are the same) are errors naming
/// the entry: a list with a typo in it should not quietly lose an instance.
pub fn parse_server_list(text: &str) -> Result<Vec<String>, ClientError> {
    let mut entries: Vec<String> = Vec::new();
    let mut seen: Vec<String> = Vec::new();
    let count = text.split(',').count();
    for (i, raw) in text.split(',').enumerate() {
        let entry = raw.trim();
        if entry.is_empty() {
            return Err(ClientError::Config(if count == 1 {
                "the server address is empty".into()
            } else {
                format!(
                    "entry {} of the server list `{}` is empty: separate servers with one comma",
                    i + 1,
                    text.escape_debug()
                )
            }));
        }
        if entry.chars().any(char::is_whitespace) {
            return Err(ClientError::Config(format!(
                "`{}` in the server list is not a host name or an IP address (separate servers \
                 with commas, without spaces inside a name)",
                entry.escape_debug()
            )));
        }
        let key = crate::trust::server_key(entry, 0);
        if seen.contains(&key) {
            return Err(ClientError::Config(format!(
                "`{}` is in the server list twice",
                entry.escape_debug()
            )));
        }
        seen.push(key);
        entries.push(entry.to_owned());
    }
    Ok(entries)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn server_lists() {
        assert_eq!(parse_server_list("host").unwrap(), ["host"]);
        assert_eq!(
            parse_server_list("a, 127.0.0.2 ,[::1]").unwrap(),
            ["a", "127.0.0.2", "[::1]"]
        );
        for (bad, says) in [
            ("a,,b", "entry 2"),
            ("a,", "entry 2"),
            (",a", "entry 1"),
            ("", "empty"),
            ("a,b,A", "twice"),
            ("::1,[::1]", "twice"),
            ("127.0.0.1,127.0.0.1", "twice"),
            ("a b,c", "not a host name"),
        ] {
            let e = parse_server_list(bad).unwrap_err().to_string();
            assert!(e.contains(says), "{bad:?}: {e}");
        }
        let mut c = ClientConfig::new("a,,b", "alice", "correct-horse-9");
        assert!(c.validate().is_err());
        c.server = "a,b".into();
        c.validate().unwrap();
        assert_eq!(c.servers().unwrap(), ["a", "b"]);
    }

    #[test]
    fn password_is_not_printed() {
        let c = ClientConfig::new("host", "alice", "secret-pw");
        let text = format!("{c:?}");
        assert!(!text.contains("secret-pw"), "{text}");
        assert!(text.contains("Password(..)"));
    }

    #[test]
    fn a_new_account_needs_8_characters_an_old_one_logs_in_with_fewer() {
        let mut c = ClientConfig::new("host", "alice", "seven-7");
        c.validate().unwrap();
        c.register = true;
        let err = c.validate().unwrap_err();
        assert!(matches!(err, ClientError::Config(_)), "{err:?}");
        assert!(
            err.to_string()
                .contains("password too short: at least 8 characters"),
            "{err}"
        );
        c.password = Password::new("eight-88");
        c.validate().unwrap();
    }

    #[test]
    fn validation() {
        let ok = ClientConfig::new("host", "alice", "correct-horse-9");
        ok.validate().unwrap();
        let mut c = ok.clone();
        c.username = "bad name".into();
        assert!(
            c.validate()
                .unwrap_err()
                .to_string()
                .contains("not a valid username")
        );
        let mut c = ok.clone();
        c.max_message_bytes = 0;
        assert!(c.validate().is_err());
        let mut c = ok;
        c.server_ports.send = 0;
        assert!(c.validate().is_err());
    }

    #[test]
    fn port_flags() {
        assert_eq!(PortChoice::from_flag(None), PortChoice::Default);
        assert_eq!(PortChoice::from_flag(Some(0)), PortChoice::Any);
        assert_eq!(PortChoice::from_flag(Some(7)), PortChoice::Fixed(7));
    }
}
