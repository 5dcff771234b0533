//! The server's configuration: built-in defaults, overridden by an optional TOML file, overridden
//! by command-line flags. Here are the settings, their checks and the file's format, without any
//! I/O: gc-server reads the file and takes the flags, and the fuzz targets (`fuzz/`) parse file
//! texts without building the server's TLS, PostgreSQL and metrics dependencies.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use gc_protocol::limits::{MAX_BODY_BYTES, MAX_SCRAM_ITERATIONS, MIN_SCRAM_ITERATIONS};
use gc_store::FsyncPolicy;
use serde::Deserialize;

/// What is wrong with a configuration.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value is out of range or names nothing known.
    #[error("invalid configuration: {0}")]
    Invalid(String),
    /// The file's text is not TOML, or has a key or value type the file does not take.
    #[error("{0}")]
    Parse(String),
}

/// Default port of the connect / version check exchange.
pub const DEFAULT_CONNECT_PORT: u16 = 10740;
/// Default port of authentication and registration.
pub const DEFAULT_AUTH_PORT: u16 = 9281;
/// Default port of sending and queries.
pub const DEFAULT_SEND_PORT: u16 = 9980;
/// Lowest `rate-per-sec`: one message in 1,000 s. A wait at a rate much lower is longer than a
/// `Duration` holds (`1e-300` was accepted, and the rate limiter panicked on it).
pub const MIN_RATE_PER_SEC: f64 = 0.001;
/// Longest `plugin-hook-limit-ms`: a session waits no longer than this for a plugin.
pub const MAX_PLUGIN_HOOK_LIMIT: Duration = Duration::from_secs(600);
/// The longest `abandoned-upload-hours` (a year).
pub const MAX_ABANDONED_UPLOAD_HOURS: u64 = 24 * 365;
const MIB: u64 = 1024 * 1024;

/// Whether the server's ports speak TLS.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum TlsMode {
    /// TLS only: a plain GC/1 client is told to update (`Err version`).
    #[default]
    Required,
    /// TLS and plain GC/1 on the same ports (told apart by the first byte), for older clients;
    /// every plain login is logged as a warning.
    Optional,
    /// Plain GC/1 only, as the original protocol (measurements, the faithful mode).
    Off,
}

impl TlsMode {
    /// As written in flags and files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Required => "required",
            Self::Optional => "optional",
            Self::Off => "off",
        }
    }
}

/// Parses `required`, `optional` or `off`.
pub fn parse_tls_mode(text: &str) -> Result<TlsMode, ConfigError> {
    match text {
        "required" => Ok(TlsMode::Required),
        "optional" => Ok(TlsMode::Optional),
        "off" => Ok(TlsMode::Off),
        other => Err(ConfigError::Invalid(format!(
            "tls must be `required`, `optional` or `off`, not `{other}`"
        ))),
    }
}

/// Everything the running server needs to know.
#[derive(Clone, Debug)]
pub struct Config {
    /// Address the three listening ports bind to.
    pub bind: IpAddr,
    /// Connect / version check port (10740).
    pub connect_port: u16,
    /// Authentication port (9281).
    pub auth_port: u16,
    /// Sending and queries port (9980).
    pub send_port: u16,
    /// Where `database.db`, `database.msgids` and `usernames.db` live.
    pub data_dir: PathBuf,
    /// Name shown to clients in `Pong`.
    pub server_name: String,
    /// How often each session's heartbeat runs when nothing else wakes it.
    pub heartbeat_interval: Duration,
    /// When an acknowledged message is on disk.
    pub fsync: FsyncPolicy,
    /// Whether anyone may register over the network.
    pub registration_open: bool,
    /// Whether a login for a name without an account is told so (`unknown-user`) or answered
    /// like an account with a decoy salt and refused at the proof (`auth`), so that logins do
    /// not reveal which names exist. Telling needs open registration (registering reveals it
    /// anyway).
    pub tell_unknown_users: bool,
    /// Who may create rooms (GC/3).
    pub room_creation: RoomCreation,
    /// Most rooms one account may own (server admins are not limited).
    pub max_rooms_per_user: usize,
    /// Lowest SCRAM iteration count accepted for new accounts (and used by `user add`).
    pub scram_min_iterations: u32,
    /// Most sessions at once (`Err full` beyond).
    pub max_clients: usize,
    /// Most sessions of one account at once (`Err full` beyond): one account cannot take every
    /// slot.
    pub max_sessions_per_user: usize,
    /// Most sessions from one address at once (`Err full` beyond).
    pub max_sessions_per_address: usize,
    /// Most accounts registered from one address (an IPv6 /64) per hour (`Err rate-limited`
    /// beyond); 0: no limit.
    pub max_registrations_per_address: usize,
    /// Most connections in progress at once on the connect and auth ports (version checks,
    /// registrations, logins). A newcomer beyond drops one of them, a stalled one first
    /// (`limits::PendingConns`).
    pub max_pending_auths: usize,
    /// How long a connection on the connect or auth port may stay open in all, from its accept,
    /// however steadily it sends: a sign-in takes milliseconds.
    pub pending_timeout: Duration,
    /// Largest message body in bytes (`Err too-large` beyond).
    pub max_message_bytes: usize,
    /// Largest shared file in bytes (GC/5; `Err too-large` at its `Offer`).
    pub max_file_bytes: u64,
    /// Bytes of distinct shared files one account may have stored (`Err quota`); 0: no quota.
    pub user_quota_bytes: u64,
    /// An upload is refused (`Err disk-full`) when the disk holding the shared files would have
    /// less free space than this after it.
    pub min_free_disk_bytes: u64,
    /// A partial upload untouched this long is removed (by the server's cleaner and by
    /// `gc-server files gc`).
    pub abandoned_upload: Duration,
    /// Messages a user may send at once before the rate applies.
    pub rate_burst: u32,
    /// Sustained messages per second per user.
    pub rate_per_sec: f64,
    /// Failed logins of one user from one address that cost nothing before waits begin (see
    /// `throttle.rs`).
    pub max_login_failures: u32,
    /// Deadline of every connect, read and write.
    pub io_timeout: Duration,
    /// How long a kept-alive connection may sit idle between exchanges.
    pub idle_timeout: Duration,
    /// Records owed to a session that starts with no cursor.
    pub history_on_join: usize,
    /// Keep heartbeat, delivery and sending connections open between exchanges.
    pub reuse_connections: bool,
    /// Records kept in memory for delivery.
    pub tail_capacity: usize,
    /// Where messages and accounts live: `None` for the flat files of the data dir, or a
    /// `postgres://` URL shared by several instances (issue #13).
    pub store: Option<String>,
    /// Where shared files' content is kept (`None`: `<data dir>/files`). With PostgreSQL, every
    /// instance of one service is given the same directory (a network file system), so a file
    /// shared through one can be fetched through another; the flat file store keeps its files in
    /// its data dir.
    pub files_dir: Option<PathBuf>,
    /// Where server plugins are loaded from (`None`: `<data dir>/mods`).
    pub mods_dir: Option<PathBuf>,
    /// A plugin hook running longer is logged; three such within a minute disable the plugin.
    pub plugin_hook_budget: Duration,
    /// How long a session waits for a plugin hook at most: then the hook is given up (a message
    /// it was checking is refused) and its plugin disabled.
    pub plugin_hook_limit: Duration,
    /// Print the listening addresses on standard output once bound (`--print-addrs`; only
    /// [`crate::run_until_signal`] does).
    pub print_addrs: bool,
    /// Where to serve `/metrics` and `/healthz` over HTTP (`None`: nowhere, the default).
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// Whether the ports speak TLS.
    pub tls: TlsMode,
    /// The operator's certificate chain (PEM) instead of the data dir's own identity.
    pub tls_cert: Option<PathBuf>,
    /// The private key of `tls_cert` (PEM, readable by its owner only).
    pub tls_key: Option<PathBuf>,
}

impl Config {
    /// The shared files' directory in effect.
    pub fn files_dir(&self) -> PathBuf {
        self.files_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("files"))
    }

    /// The plugin directory in effect.
    pub fn mods_dir(&self) -> PathBuf {
        self.mods_dir
            .clone()
            .unwrap_or_else(|| self.data_dir.join("mods"))
    }
}

impl Default for Config {
    fn default() -> Self {
        Self {
            bind: IpAddr::from([0, 0, 0, 0]),
            connect_port: DEFAULT_CONNECT_PORT,
            auth_port: DEFAULT_AUTH_PORT,
            send_port: DEFAULT_SEND_PORT,
            data_dir: PathBuf::from("gc-data"),
            server_name: "General Communications".to_owned(),
            heartbeat_interval: Duration::from_millis(1000),
            fsync: FsyncPolicy::Batch,
            registration_open: true,
            tell_unknown_users: false,
            room_creation: RoomCreation::Open,
            max_rooms_per_user: 20,
            scram_min_iterations: MIN_SCRAM_ITERATIONS,
            max_clients: 4096,
            max_sessions_per_user: 16,
            max_sessions_per_address: 256,
            max_registrations_per_address: 30,
            max_pending_auths: 64,
            pending_timeout: Duration::from_secs(10),
            max_message_bytes: gc_protocol::limits::DEFAULT_MAX_MESSAGE_BYTES,
            max_file_bytes: 100 * MIB,
            user_quota_bytes: 1024 * MIB,
            min_free_disk_bytes: 1024 * MIB,
            abandoned_upload: Duration::from_secs(24 * 3600),
            rate_burst: 10,
            rate_per_sec: 5.0,
            max_login_failures: 5,
            io_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(30),
            history_on_join: 200,
            reuse_connections: true,
            tail_capacity: 10_000,
            store: None,
            files_dir: None,
            mods_dir: None,
            plugin_hook_budget: Duration::from_millis(50),
            plugin_hook_limit: Duration::from_secs(1),
            print_addrs: false,
            metrics_addr: None,
            // Until the client and the tests speak TLS (issue #11 lands in steps).
            tls: TlsMode::Required,
            tls_cert: None,
            tls_key: None,
        }
    }
}

impl Config {
    /// Checks values that parse but make no sense, with a message that says what is allowed.
    /// (A `store` URL is checked by gc-server, which has the PostgreSQL store that parses it.)
    pub fn validate(&self) -> Result<(), ConfigError> {
        let bad = |what: &str| Err(ConfigError::Invalid(what.to_owned()));
        if self.heartbeat_interval < Duration::from_millis(10) {
            return bad("heartbeat-interval-ms must be at least 10");
        }
        if !(1..=MAX_BODY_BYTES).contains(&self.max_message_bytes) {
            return bad(&format!("max-message-bytes must be 1 to {MAX_BODY_BYTES}"));
        }
        if self.max_file_bytes == 0 {
            return bad("max-file-bytes must be at least 1");
        }
        if self.abandoned_upload < Duration::from_secs(3600)
            || self.abandoned_upload > Duration::from_secs(MAX_ABANDONED_UPLOAD_HOURS * 3600)
        {
            return bad(&format!(
                "abandoned-upload-hours must be 1 to {MAX_ABANDONED_UPLOAD_HOURS}"
            ));
        }
        if !(MIN_SCRAM_ITERATIONS..=MAX_SCRAM_ITERATIONS).contains(&self.scram_min_iterations) {
            return bad(&format!(
                "scram-min-iterations must be {MIN_SCRAM_ITERATIONS} to {MAX_SCRAM_ITERATIONS}"
            ));
        }
        if self.max_clients == 0
            || self.max_pending_auths == 0
            || self.max_sessions_per_user == 0
            || self.max_sessions_per_address == 0
        {
            return bad(
                "max-clients, max-sessions-per-user, max-sessions-per-address and \
                 max-pending-auths must be at least 1",
            );
        }
        if self.rate_burst == 0
            || !(self.rate_per_sec >= MIN_RATE_PER_SEC && self.rate_per_sec.is_finite())
        {
            return bad(&format!(
                "rate-burst must be at least 1 and rate-per-sec at least {MIN_RATE_PER_SEC}"
            ));
        }
        if self.tell_unknown_users && !self.registration_open {
            return bad(
                "unknown-users = tell needs registration = open: with registration closed, \
                 nobody needs to learn which names are free, so logins never tell",
            );
        }
        if self.max_login_failures == 0 {
            return bad("max-login-failures must be at least 1");
        }
        if self.pending_timeout < Duration::from_millis(10) {
            return bad("pending-timeout-ms must be at least 10");
        }
        if self.io_timeout < Duration::from_millis(10) || self.idle_timeout < self.io_timeout {
            return bad(
                "io-timeout-ms must be at least 10 and idle-timeout-ms at least io-timeout-ms",
            );
        }
        if self.server_name.len() > 200 {
            return bad("server-name must be at most 200 bytes");
        }
        if self.plugin_hook_budget < Duration::from_millis(1)
            || self.plugin_hook_limit < self.plugin_hook_budget
            || self.plugin_hook_limit > MAX_PLUGIN_HOOK_LIMIT
        {
            return bad(&format!(
                "plugin-hook-budget-ms must be at least 1, and plugin-hook-limit-ms at least \
                 plugin-hook-budget-ms and at most {}",
                MAX_PLUGIN_HOOK_LIMIT.as_millis()
            ));
        }
        if self.tls_cert.is_some() != self.tls_key.is_some() {
            return bad("tls-cert and tls-key go together: give both, or neither");
        }
        Ok(())
    }
}

/// The TOML configuration file: every key optional, names as the long flags.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct FileConfig {
    /// See [`Config::bind`].
    pub bind: Option<IpAddr>,
    /// See [`Config::connect_port`].
    pub connect_port: Option<u16>,
    /// See [`Config::auth_port`].
    pub auth_port: Option<u16>,
    /// See [`Config::send_port`].
    pub send_port: Option<u16>,
    /// See [`Config::data_dir`].
    pub data_dir: Option<PathBuf>,
    /// See [`Config::server_name`].
    pub server_name: Option<String>,
    /// See [`Config::heartbeat_interval`].
    pub heartbeat_interval_ms: Option<u64>,
    /// See [`Config::fsync`].
    pub fsync: Option<String>,
    /// See [`Config::store`].
    pub store: Option<String>,
    /// `open` or `closed`.
    pub registration: Option<String>,
    /// `hide` or `tell` (see [`Config::tell_unknown_users`]).
    pub unknown_users: Option<String>,
    /// `open` or `admins` (see [`Config::room_creation`]).
    pub room_creation: Option<String>,
    /// See [`Config::max_rooms_per_user`].
    pub max_rooms_per_user: Option<usize>,
    /// See [`Config::scram_min_iterations`].
    pub scram_min_iterations: Option<u32>,
    /// See [`Config::max_clients`].
    pub max_clients: Option<usize>,
    /// See [`Config::max_sessions_per_user`].
    pub max_sessions_per_user: Option<usize>,
    /// See [`Config::max_sessions_per_address`].
    pub max_sessions_per_address: Option<usize>,
    /// See [`Config::max_registrations_per_address`].
    pub max_registrations_per_address: Option<usize>,
    /// See [`Config::max_pending_auths`].
    pub max_pending_auths: Option<usize>,
    /// See [`Config::pending_timeout`].
    pub pending_timeout_ms: Option<u64>,
    /// See [`Config::max_message_bytes`].
    pub max_message_bytes: Option<usize>,
    /// See [`Config::max_file_bytes`].
    pub max_file_bytes: Option<u64>,
    /// See [`Config::user_quota_bytes`].
    pub user_quota_bytes: Option<u64>,
    /// See [`Config::min_free_disk_bytes`].
    pub min_free_disk_bytes: Option<u64>,
    /// See [`Config::abandoned_upload`].
    pub abandoned_upload_hours: Option<u64>,
    /// See [`Config::rate_burst`].
    pub rate_burst: Option<u32>,
    /// See [`Config::rate_per_sec`].
    pub rate_per_sec: Option<f64>,
    /// See [`Config::max_login_failures`].
    pub max_login_failures: Option<u32>,
    /// See [`Config::io_timeout`].
    pub io_timeout_ms: Option<u64>,
    /// See [`Config::idle_timeout`].
    pub idle_timeout_ms: Option<u64>,
    /// See [`Config::history_on_join`].
    pub history_on_join: Option<usize>,
    /// See [`Config::reuse_connections`].
    pub reuse_connections: Option<bool>,
    /// See [`Config::files_dir`].
    pub files_dir: Option<PathBuf>,
    /// See [`Config::mods_dir`].
    pub mods_dir: Option<PathBuf>,
    /// See [`Config::plugin_hook_budget`].
    pub plugin_hook_budget_ms: Option<u64>,
    /// See [`Config::plugin_hook_limit`].
    pub plugin_hook_limit_ms: Option<u64>,
    /// See [`Config::metrics_addr`].
    pub metrics_addr: Option<std::net::SocketAddr>,
    /// `required`, `optional` or `off` (see [`Config::tls`]).
    pub tls: Option<String>,
    /// See [`Config::tls_cert`].
    pub tls_cert: Option<PathBuf>,
    /// See [`Config::tls_key`].
    pub tls_key: Option<PathBuf>,
    /// Log level (`error`, `warn`, `info`, `debug`, `trace`).
    pub log_level: Option<String>,
    /// Log file (default: standard error).
    pub log_file: Option<PathBuf>,
    /// `text` or `json` (default: text).
    pub log_format: Option<String>,
}

impl FileConfig {
    /// Parses a configuration file's text.
    pub fn parse(text: &str) -> Result<Self, ConfigError> {
        toml::from_str(text).map_err(|e| ConfigError::Parse(e.to_string()))
    }
}

impl Config {
    /// Takes every setting `file` gives (all but the log settings, which are not the server's),
    /// the words parsed; what it leaves out stays as it was. So the file applied to the defaults,
    /// then the flags (in the same shape) applied over it, give the flags precedence.
    pub fn apply(&mut self, file: &FileConfig) -> Result<(), ConfigError> {
        let ms = Duration::from_millis;
        set(&mut self.bind, file.bind);
        set(&mut self.connect_port, file.connect_port);
        set(&mut self.auth_port, file.auth_port);
        set(&mut self.send_port, file.send_port);
        set(&mut self.data_dir, file.data_dir.clone());
        set(&mut self.server_name, file.server_name.clone());
        set(
            &mut self.heartbeat_interval,
            file.heartbeat_interval_ms.map(ms),
        );
        if let Some(f) = &file.fsync {
            self.fsync = parse_fsync(f)?;
        }
        if let Some(url) = &file.store {
            self.store = Some(url.clone());
        }
        if let Some(reg) = &file.registration {
            self.registration_open = parse_registration(reg)?;
        }
        if let Some(u) = &file.unknown_users {
            self.tell_unknown_users = parse_unknown_users(u)?;
        }
        if let Some(rc) = &file.room_creation {
            self.room_creation = parse_room_creation(rc)?;
        }
        set(&mut self.max_rooms_per_user, file.max_rooms_per_user);
        set(&mut self.scram_min_iterations, file.scram_min_iterations);
        set(&mut self.max_clients, file.max_clients);
        set(&mut self.max_sessions_per_user, file.max_sessions_per_user);
        set(
            &mut self.max_sessions_per_address,
            file.max_sessions_per_address,
        );
        set(
            &mut self.max_registrations_per_address,
            file.max_registrations_per_address,
        );
        set(&mut self.max_pending_auths, file.max_pending_auths);
        set(&mut self.pending_timeout, file.pending_timeout_ms.map(ms));
        set(&mut self.max_message_bytes, file.max_message_bytes);
        set(&mut self.max_file_bytes, file.max_file_bytes);
        set(&mut self.user_quota_bytes, file.user_quota_bytes);
        set(&mut self.min_free_disk_bytes, file.min_free_disk_bytes);
        set(
            &mut self.abandoned_upload,
            file.abandoned_upload_hours
                .map(|h| Duration::from_secs(h.saturating_mul(3600))),
        );
        set(&mut self.rate_burst, file.rate_burst);
        set(&mut self.rate_per_sec, file.rate_per_sec);
        set(&mut self.max_login_failures, file.max_login_failures);
        set(&mut self.io_timeout, file.io_timeout_ms.map(ms));
        set(&mut self.idle_timeout, file.idle_timeout_ms.map(ms));
        set(&mut self.history_on_join, file.history_on_join);
        set(&mut self.reuse_connections, file.reuse_connections);
        if let Some(dir) = &file.files_dir {
            self.files_dir = Some(dir.clone());
        }
        if let Some(dir) = &file.mods_dir {
            self.mods_dir = Some(dir.clone());
        }
        set(
            &mut self.plugin_hook_budget,
            file.plugin_hook_budget_ms.map(ms),
        );
        set(
            &mut self.plugin_hook_limit,
            file.plugin_hook_limit_ms.map(ms),
        );
        if let Some(addr) = file.metrics_addr {
            self.metrics_addr = Some(addr);
        }
        if let Some(mode) = &file.tls {
            self.tls = parse_tls_mode(mode)?;
        }
        if let Some(cert) = &file.tls_cert {
            self.tls_cert = Some(cert.clone());
        }
        if let Some(key) = &file.tls_key {
            self.tls_key = Some(key.clone());
        }
        Ok(())
    }
}

fn set<T>(slot: &mut T, value: Option<T>) {
    if let Some(v) = value {
        *slot = v;
    }
}

/// Who may create rooms.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoomCreation {
    /// Every account (up to [`Config::max_rooms_per_user`] owned rooms).
    Open,
    /// Server admins only (`gc-server user admin NAME on`).
    Admins,
}

/// Parses `open` / `admins`.
pub fn parse_room_creation(text: &str) -> Result<RoomCreation, ConfigError> {
    match text {
        "open" => Ok(RoomCreation::Open),
        "admins" => Ok(RoomCreation::Admins),
        other => Err(ConfigError::Invalid(format!(
            "room-creation must be `open` or `admins`, not `{other}`"
        ))),
    }
}

/// Parses `open` / `closed`.
pub fn parse_registration(text: &str) -> Result<bool, ConfigError> {
    match text {
        "open" => Ok(true),
        "closed" => Ok(false),
        other => Err(ConfigError::Invalid(format!(
            "registration must be `open` or `closed`, not `{other}`"
        ))),
    }
}

/// Parses `unknown-users`: whether a login for a name without an account is told so.
pub fn parse_unknown_users(text: &str) -> Result<bool, ConfigError> {
    match text {
        "hide" => Ok(false),
        "tell" => Ok(true),
        other => Err(ConfigError::Invalid(format!(
            "unknown-users must be `hide` or `tell`, not `{other}`"
        ))),
    }
}

/// Parses an fsync policy name.
pub fn parse_fsync(text: &str) -> Result<FsyncPolicy, ConfigError> {
    text.parse().map_err(|_| {
        ConfigError::Invalid(format!(
            "fsync must be `always`, `batch` or `never`, not `{text}`"
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(text: &str) -> Result<Config, ConfigError> {
        let mut c = Config::default();
        c.apply(&FileConfig::parse(text)?)?;
        c.validate()?;
        Ok(c)
    }

    #[test]
    fn the_documented_example_is_accepted() {
        let c = with("max-clients = 100\nrate-per-sec = 0.5\ntls = \"off\"\n").unwrap();
        assert_eq!(c.max_clients, 100);
        assert_eq!(c.tls, TlsMode::Off);
    }

    // Caught by the `config_file` fuzz target's check: a rate this low was accepted, and the rate
    // limiter's wait (one message at that rate, 1e300 s) then panicked in
    // `Duration::from_secs_f64`.
    #[test]
    fn a_rate_too_low_for_a_wait_is_refused() {
        for rate in ["1e-300", "0.0", "-1.0", "nan", "inf", "0.0009"] {
            let err = with(&format!("rate-per-sec = {rate}\n")).unwrap_err();
            assert!(err.to_string().contains("rate-per-sec"), "{rate}: {err}");
        }
        let c = with("rate-per-sec = 0.001\n").unwrap();
        assert!(Duration::try_from_secs_f64(1.0 / c.rate_per_sec).is_ok());
    }

    #[test]
    fn unknown_keys_and_bad_words_are_errors() {
        assert!(matches!(with("sendport = 1\n"), Err(ConfigError::Parse(_))));
        assert!(matches!(
            with("fsync = \"sometimes\"\n"),
            Err(ConfigError::Invalid(_))
        ));
        assert!(matches!(with("\u{0}"), Err(ConfigError::Parse(_))));
    }

    #[test]
    fn a_second_layer_wins_and_leaves_the_rest() {
        let mut c = Config::default();
        c.apply(&FileConfig::parse("send-port = 1\nauth-port = 2\n").unwrap())
            .unwrap();
        c.apply(&FileConfig::parse("send-port = 3\n").unwrap())
            .unwrap();
        assert_eq!((c.send_port, c.auth_port), (3, 2));
    }
}
