//! Command-line interface: flags, subcommands, and how they combine with the config file.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};

use crate::config::{Config, FileConfig};
use crate::error::ServerError;
use crate::logging::{LogFormat, parse_log_format};

/// gc-server: the General Communications chat server.
///
/// Listens on three ports (connect 10740, auth 9281, send 9980) and calls clients back on theirs
/// (auth 12090, heartbeat 8070, delivery 6090), so clients must accept connections from the
/// server. Messages are kept in DATA_DIR/database.db, accounts in DATA_DIR/usernames.db.
/// Without a subcommand, runs the server until SIGINT or SIGTERM.
#[derive(Debug, Parser)]
#[command(name = "gc-server", version, max_term_width = 100)]
pub struct Cli {
    /// TOML file with any of the long options below as keys, without the leading dashes
    /// (`--no-reuse` is `reuse-connections = false`); flags given on the command line win.
    #[arg(long, global = true, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Directory of database.db, database.msgids and usernames.db [default: ./gc-data].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,

    /// Log level: error, warn, info, debug or trace [default: info].
    #[arg(long, global = true, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// Append logs to this file instead of standard error. SIGHUP reopens it at this path
    /// (for logrotate), and reads the log level again from --config unless --log-level is given.
    #[arg(long, global = true, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Log lines as `text` (for people) or `json` (one object per line, for log collectors)
    /// [default: text].
    #[arg(long, global = true, value_name = "text|json")]
    pub log_format: Option<String>,

    #[command(flatten)]
    pub run: RunArgs,

    #[command(subcommand)]
    pub command: Option<Command>,
}

/// Options of the running server.
#[derive(Debug, Default, Args)]
pub struct RunArgs {
    /// Address to listen on [default: 0.0.0.0, all interfaces].
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,
    /// Connect / version check port [default: 10740].
    #[arg(long, value_name = "PORT")]
    pub connect_port: Option<u16>,
    /// Authentication and registration port [default: 9281].
    #[arg(long, value_name = "PORT")]
    pub auth_port: Option<u16>,
    /// Sending and queries port [default: 9980].
    #[arg(long, value_name = "PORT")]
    pub send_port: Option<u16>,
    /// Name shown to clients when they connect [default: General Communications].
    #[arg(long, value_name = "NAME")]
    pub server_name: Option<String>,
    /// Heartbeat interval per client, in milliseconds; new messages are delivered at once
    /// regardless [default: 1000].
    #[arg(long, value_name = "MS")]
    pub heartbeat_interval_ms: Option<u64>,
    /// Keep messages, accounts, rooms and presence in PostgreSQL, shared by every instance given
    /// the same URL:
    /// `postgres://USER:PASSWORD@HOST:PORT/DATABASE` (the schema is created or upgraded at
    /// start). Better given in the environment (GC_STORE) or the config file than on the
    /// command line, where other users of the machine can read the password [default: the data
    /// dir's flat files].
    #[arg(long, value_name = "URL", env = "GC_STORE", hide_env_values = true)]
    pub store: Option<String>,
    /// Directory of shared files' content (GC/5). With --store, give every instance of one
    /// service the same directory (a network file system) so a file shared through one can be
    /// fetched through another; the flat file store keeps them in its data dir
    /// [default: DATA_DIR/files].
    #[arg(long, value_name = "DIR")]
    pub files_dir: Option<PathBuf>,
    /// When an acknowledged message is on disk: `always` (fsync each), `batch` (group commit,
    /// acknowledged after the fsync) or `never` (leave it to the OS) [default: batch].
    #[arg(long, value_name = "POLICY")]
    pub fsync: Option<String>,
    /// `open`: anyone may register; `closed`: only accounts made with `gc-server user add`
    /// [default: open].
    #[arg(long, value_name = "open|closed")]
    pub registration: Option<String>,
    /// A login for a name that has no account: `hide` answers it like an account (a decoy salt)
    /// and refuses it as a wrong password, so logins do not tell which names exist; `tell`
    /// answers `unknown-user`, so the client can offer to create the account (needs open
    /// registration, which tells anyway) [default: hide].
    #[arg(long, value_name = "hide|tell")]
    pub unknown_users: Option<String>,
    /// Lowest SCRAM iteration count accepted for new accounts [default: 4096].
    #[arg(long, value_name = "N")]
    pub scram_min_iterations: Option<u32>,
    /// Who may create rooms: `open` (every account) or `admins` (server admins only, see
    /// `gc-server user admin`) [default: open].
    #[arg(long, value_name = "open|admins")]
    pub room_creation: Option<String>,
    /// Most rooms one account may own; server admins are not limited [default: 20].
    #[arg(long, value_name = "N")]
    pub max_rooms_per_user: Option<usize>,
    /// Most clients logged in at once [default: 4096]. Each holds about 6 open files: the server
    /// raises its open-file limit to match, up to the hard limit (`ulimit -Hn`).
    #[arg(long, value_name = "N")]
    pub max_clients: Option<usize>,
    /// Most sessions one account may have at once [default: 16].
    #[arg(long, value_name = "N")]
    pub max_sessions_per_user: Option<usize>,
    /// Most sessions from one IP address at once [default: 256]; raise it for a big shared
    /// host or NAT.
    #[arg(long, value_name = "N")]
    pub max_sessions_per_address: Option<usize>,
    /// Most accounts one IP address (an IPv6 /64) may register per hour [default: 30]; 0: no
    /// limit (a trusted network, or a bench).
    #[arg(long, value_name = "N")]
    pub max_registrations_per_address: Option<usize>,
    /// Most logins and version checks in progress at once [default: 64]; a newcomer beyond
    /// drops one of them (a stalled one first), and 8 per address (an IPv6 /64) at most.
    #[arg(long, value_name = "N")]
    pub max_pending_auths: Option<usize>,
    /// How long a connection on the connect or auth port may stay open in all, from its
    /// accept, however steadily it sends, in milliseconds [default: 10000].
    #[arg(long, value_name = "MS")]
    pub pending_timeout_ms: Option<u64>,
    /// Largest message in bytes [default: 4096].
    #[arg(long, value_name = "BYTES")]
    pub max_message_bytes: Option<usize>,
    /// Largest shared file in bytes (GC/5) [default: 104857600, 100 MiB].
    #[arg(long, value_name = "BYTES")]
    pub max_file_bytes: Option<u64>,
    /// Bytes of distinct shared files one account may have stored; 0 for no quota
    /// [default: 1073741824, 1 GiB].
    #[arg(long, value_name = "BYTES")]
    pub user_quota_bytes: Option<u64>,
    /// Refuse an upload that would leave less free space than this on the disk of the shared
    /// files [default: 1073741824, 1 GiB].
    #[arg(long, value_name = "BYTES")]
    pub min_free_disk_bytes: Option<u64>,
    /// Remove a partial upload untouched this long (1 to 8760) [default: 24].
    #[arg(long, value_name = "HOURS")]
    pub abandoned_upload_hours: Option<u64>,
    /// Messages a user may send in a burst [default: 10].
    #[arg(long, value_name = "N")]
    pub rate_burst: Option<u32>,
    /// Sustained messages per second per user [default: 5].
    #[arg(long, value_name = "N")]
    pub rate_per_sec: Option<f64>,
    /// Failed logins of one user from one address (an IPv6 /64) that cost nothing; each further
    /// one doubles the wait before that address may try that user again, 1 s up to 5 min
    /// [default: 5].
    #[arg(long, value_name = "N")]
    pub max_login_failures: Option<u32>,
    /// Deadline of every connect, read and write, in milliseconds [default: 5000].
    #[arg(long, value_name = "MS")]
    pub io_timeout_ms: Option<u64>,
    /// How long a kept-alive connection may idle between exchanges, in milliseconds
    /// [default: 30000].
    #[arg(long, value_name = "MS")]
    pub idle_timeout_ms: Option<u64>,
    /// Newest messages delivered to a client that has none yet [default: 200].
    #[arg(long, value_name = "N")]
    pub history_on_join: Option<usize>,
    /// Directory of server plugins, loaded at start in name order [default: DATA_DIR/mods].
    #[arg(long, value_name = "DIR")]
    pub mods_dir: Option<PathBuf>,
    /// A plugin hook that runs longer is logged, naming the plugin and the hook; three such
    /// within a minute disable the plugin, in milliseconds [default: 50].
    #[arg(long, value_name = "MS")]
    pub plugin_hook_budget_ms: Option<u64>,
    /// The longest a session waits for a plugin hook, in milliseconds [default: 1000]; a hook
    /// without an answer by then is given up (a message it was checking is refused: the sender
    /// may send it again) and its plugin disabled.
    #[arg(long, value_name = "MS")]
    pub plugin_hook_limit_ms: Option<u64>,
    /// One exchange per connection, as the original prototype did (slower; for comparison).
    #[arg(long)]
    pub no_reuse: bool,
    /// TLS on every port: `required` (the default), `optional` (TLS and plain GC/1 on the same
    /// ports, for older clients; plain logins are logged as warnings) or `off` (the original
    /// plain protocol).
    #[arg(long, value_name = "MODE")]
    pub tls: Option<String>,
    /// The server certificate chain (PEM, leaf first), e.g. from an internal CA, instead of the
    /// self-signed one made in DATA_DIR/tls/ at the first start.
    #[arg(long, value_name = "FILE")]
    pub tls_cert: Option<PathBuf>,
    /// The private key of --tls-cert (PEM; readable by its owner only).
    #[arg(long, value_name = "FILE")]
    pub tls_key: Option<PathBuf>,
    /// Once the ports are bound, print `listening: connect ADDR, auth ADDR, send ADDR` on
    /// standard output (for scripts and tools that start a server on port 0).
    #[arg(long)]
    pub print_addrs: bool,
    /// Serve Prometheus metrics on `http://IP:PORT/metrics` and a health check on `/healthz`
    /// (200 while logins and store writes are taken, 503 otherwise) [default: off]. Bind it to
    /// a loopback or management address: it has no authentication.
    #[arg(long, value_name = "IP:PORT")]
    pub metrics_addr: Option<std::net::SocketAddr>,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default); takes the same options as gc-server itself.
    Run(Box<RunArgs>),
    /// Manage accounts (usernames.db, or PostgreSQL with --store). With the data dir's files,
    /// changes refuse while a server runs on it; a shared database takes them at any time.
    #[command(subcommand)]
    User(UserCommand),
    /// Check, repair, export, import or summarise the message store (database.db and every
    /// room's file, or PostgreSQL with --store for export, import and summary).
    #[command(subcommand)]
    Db(DbCommand),
    /// Manage rooms (rooms.db, members.db, or PostgreSQL with --store). With the data dir's
    /// files, changes refuse while a server runs on it; a shared database takes them at any time.
    #[command(subcommand)]
    Room(RoomCommand),
    /// Shared files (GC/5) in DATA_DIR/files: list, remove, collect garbage, verify. `list` and
    /// `verify` only read and may run while a server runs on the data dir; `remove` and `gc`
    /// refuse then. Not for --store (PostgreSQL).
    #[command(subcommand)]
    Files(FilesCommand),
    /// Plugins in the mods directory.
    #[command(subcommand)]
    Plugins(PluginsCommand),
    /// The server's TLS identity.
    #[command(subcommand)]
    Tls(TlsCommand),
}

/// `gc-server tls …`
#[derive(Debug, Subcommand)]
pub enum TlsCommand {
    /// Print the SHA-256 fingerprint of the server's certificate (`SHA256:…`, as OpenSSH writes
    /// key fingerprints), for users to check against what their client shows on first contact.
    /// Without --tls-cert/--tls-key it is the identity in DATA_DIR/tls/, made now if there is
    /// none yet (the server makes the same one at its first start).
    Fingerprint {
        /// The operator's certificate chain (PEM, leaf first) instead of the data dir's.
        #[arg(long, value_name = "FILE", requires = "tls_key")]
        tls_cert: Option<PathBuf>,
        /// The private key of --tls-cert (PEM; readable by its owner only).
        #[arg(long, value_name = "FILE", requires = "tls_cert")]
        tls_key: Option<PathBuf>,
    },
}

/// `gc-server plugins …`
#[derive(Debug, Subcommand)]
pub enum PluginsCommand {
    /// Show which files in the mods directory would load, and why the others would not. The
    /// files are read, not run: no plugin code runs (a library built without
    /// gc_plugin_static_descriptor is listed as `load?`).
    List {
        /// Load each library to read it, as a start does (its initialisers run in this process;
        /// its init is not called): for libraries built before the static descriptor.
        #[arg(long)]
        load: bool,
        /// The directory the server would load from: the same option as the server's
        /// [default: DATA_DIR/mods, or `mods-dir` in the config file].
        #[arg(long, value_name = "DIR")]
        mods_dir: Option<PathBuf>,
    },
}

/// `gc-server user …`
#[derive(Debug, Subcommand)]
pub enum UserCommand {
    /// Create an account. Asks for the password twice (hidden), or reads one line from
    /// standard input with --password-stdin. A password has at least 8 characters.
    Add {
        /// Username: 1-32 characters of A-Z a-z 0-9 _ . -
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Delete an account (its messages stay in the store).
    Remove {
        /// The account to delete.
        name: String,
    },
    /// List accounts with their creation time (UTC).
    List,
    /// Set a new password (at least 8 characters).
    Passwd {
        /// The account.
        name: String,
        /// Read the password from the first line of standard input.
        #[arg(long)]
        password_stdin: bool,
    },
    /// Make an account a server admin (`on`: may do everything in every room, and create rooms
    /// when --room-creation is `admins`) or take that away (`off`).
    Admin {
        /// The account.
        name: String,
        /// `on` or `off`.
        #[arg(value_enum)]
        state: OnOff,
    },
}

/// `on` / `off`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum OnOff {
    /// Yes.
    On,
    /// No.
    Off,
}

/// `gc-server room …`
#[derive(Debug, Subcommand)]
pub enum RoomCommand {
    /// Create a room, owned by an existing account.
    Add {
        /// `#` and 1-32 of a-z 0-9 _ . -
        #[arg(value_parser = parse_room)]
        room: gc_protocol::Room,
        /// The account that owns it.
        #[arg(long, value_name = "USER")]
        owner: String,
        /// Invite only, and unlisted for others (default: anyone may join).
        #[arg(long)]
        private: bool,
        /// Its topic.
        #[arg(long, value_name = "TEXT", default_value = "")]
        topic: String,
    },
    /// Remove a room: its members and settings go; its messages are kept aside in
    /// rooms/NAME.db.removed-TIME, out of every client's reach, and a notice in #general says so.
    Remove {
        /// The room (a direct conversation too, as @a+b).
        #[arg(value_parser = parse_room)]
        room: gc_protocol::Room,
    },
    /// List every room and direct conversation with its kind, members and topic.
    List,
    /// List a room's members and standings (owner, moderator, member, invited, banned; mutes).
    Members {
        /// The room.
        #[arg(value_parser = parse_room)]
        room: gc_protocol::Room,
    },
}

/// `gc-server files …`
#[derive(Debug, Subcommand)]
pub enum FilesCommand {
    /// List the stored files (or the uploads in progress) and each user's quota use.
    ///
    /// One line per stored file, tab-separated: SHA256, BYTES, SIZE (the same, for people: 1.4 MiB), USERS (who announced it, by commas),
    /// ROOMS (where, by commas), FIRST (the first announcement, UTC, 2026-01-02T12:04:05Z) and
    /// ANNOUNCEMENTS (how many records shared it). Content no record announces shows `-` for
    /// USERS, ROOMS and FIRST and 0 announcements (`files gc` removes it a day after it was
    /// stored). With --partial, the uploads in progress instead: SHA256, USER, BYTES (arrived so
    /// far), SIZE, TOUCHED (last written, UTC) and AGE. Then summary lines, each starting with
    /// `# ` (`grep -v '^#'` leaves the files): the totals, and for each user the bytes of distinct
    /// content they shared against --user-quota-bytes. Only reads: safe while a server runs.
    List {
        /// The uploads in progress (files/partial/) instead of the stored files.
        #[arg(long)]
        partial: bool,
        /// Only what this account announced (or, with --partial, is uploading).
        #[arg(long, value_name = "NAME")]
        user: Option<String>,
    },
    /// Remove a stored file's content and its lines in files/index.db (stop the server first).
    ///
    /// With --store (PostgreSQL), its rows of the database's index; the instances may run.
    /// The records that announced it stay in their conversations, and fetching it is then
    /// answered `unknown-file`; its uploader's quota no longer counts it.
    Remove {
        /// The content's SHA-256: 64 hex digits, as `files list` shows (`sha256:` before it, as
        /// in a record, is fine).
        #[arg(value_name = "HASH")]
        hash: String,
    },
    /// Remove abandoned uploads and unannounced content (stop the server first).
    ///
    /// Removes partial uploads untouched for longer than --abandoned-upload-hours and stored
    /// content that no line of files/index.db announces, stored more than a day ago (a crash
    /// between storing and announcing leaves such). Prints one line per file, tab-separated:
    /// KIND (`partial` or `unannounced`), SHA256, USER (`-` for content), BYTES, TOUCHED (UTC),
    /// then a `# ` line with the count and the bytes freed. Stop the server first: while it
    /// runs, its own cleaner removes abandoned uploads. (With --store, the database's index and
    /// --files-dir; the instances may run: an upload in progress is left alone.)
    Gc {
        /// Only print what would be removed.
        #[arg(long)]
        dry_run: bool,
    },
    /// Re-hash every stored file; exit code 1 if one is damaged or missing.
    ///
    /// Reads every stored file and checks that its content has its name's SHA-256, and that
    /// every content files/index.db announces is stored. Prints tab-separated lines `damaged`,
    /// SHA256, PATH and `missing`, SHA256, ANNOUNCEMENTS, then a `# ` summary; exit code 1 if
    /// there is any. Only reads: safe while a server runs.
    Verify,
}

/// `gc-server db …`
#[derive(Debug, Subcommand)]
pub enum DbCommand {
    /// Create or upgrade the PostgreSQL schema of --store (also done at every start; two
    /// instances doing it at once take turns). Refuses a schema made by a newer gc-server.
    Migrate,
    /// Validate every line of every room's file (database.db for #general, rooms/*.db for
    /// the others); safe while the server runs. Exit code 1 if a line is bad. With BACKUP, the
    /// same on a backup made by `db backup`, and every file against its BACKUP-COMPLETE
    /// manifest (size and SHA-256), each shared file's content against its name's SHA-256 and
    /// every line of files/index.db against a copied file; exit code 1 if anything differs or
    /// the manifest is missing.
    Check {
        /// A backup directory to check instead of the data dir.
        #[arg(value_name = "BACKUP")]
        backup: Option<PathBuf>,
    },
    /// Copy the data dir into BACKUP (new, or an empty directory) while the server runs: every
    /// room's messages, database.msgids, the accounts, the rooms metadata, decoy.key, the
    /// TLS identity and the shared files (files/index.db and the content it names; not the
    /// uploads in progress), as one consistent snapshot. Written beside BACKUP and renamed into place
    /// once complete and on disk; check it with `db check BACKUP`. Not for --store (PostgreSQL):
    /// use pg_dump.
    Backup {
        /// Where the copy goes (must not exist, or be an empty directory).
        #[arg(value_name = "BACKUP")]
        dest: PathBuf,
    },
    /// Move bad lines of every room's file to <file>.corrupt and rewrite the rest (stop the
    /// server first).
    Repair,
    /// Write every record to standard output (or --output): #general's, then each other
    /// room's (in plain format after a `# room NAME` line). From the PostgreSQL store when
    /// --store is given (one consistent snapshot, streamed), else from the data dir.
    Export {
        /// `plain` (the database.db line format) or `json` (one JSON object per line).
        #[arg(long, value_enum, default_value_t = ExportFormat::Plain)]
        format: ExportFormat,
        /// Write to this file instead of standard output.
        #[arg(long, value_name = "FILE")]
        output: Option<PathBuf>,
        /// Only this room (e.g. `#dev`, or `@alice+bob` for a direct conversation); in plain
        /// format the output is then a clean file of that room.
        #[arg(long, value_name = "ROOM", value_parser = parse_room)]
        room: Option<gc_protocol::Room>,
    },
    /// Bring data in: the original prototype's history (--original FILE), a flat-file data
    /// dir into the PostgreSQL store of --store (--from-dir DIR), or that PostgreSQL store into
    /// the data dir (--from-postgres). The target must hold no messages or accounts; stop the
    /// servers on it first. A transfer prints `N messages, M accounts, sha256 …` for source and
    /// target and keeps nothing unless they are equal.
    #[command(group(clap::ArgGroup::new("source").required(true)))]
    Import {
        /// The original Python prototype's database.db: it becomes #general's history
        /// (7-decimal timestamps, repeated ids, a leading blank line, no final newline are all
        /// fine), renumbered 1, 2, 3, … in the file's order, into the data dir. Lines that
        /// cannot be read are left out and listed with why.
        #[arg(long, value_name = "FILE", group = "source")]
        original: Option<PathBuf>,
        /// A flat-file data dir (stopped) to load into the PostgreSQL store given by --store,
        /// GC_STORE or `store =` (an empty database; its schema is created): every room's
        /// messages with their ids and timestamps, the client-msg-ids (so retries of them stay
        /// duplicates), the accounts. One transaction, committed only if the database then
        /// holds what DIR holds.
        #[arg(long, value_name = "DIR", group = "source")]
        from_dir: Option<PathBuf>,
        /// Copy the PostgreSQL store given by --store, GC_STORE or `store =` (a consistent
        /// snapshot; instances may run) into the data dir (--data-dir), which must hold no
        /// messages or accounts. Staged in DATA_DIR/.import-staging, checked, then moved into
        /// place.
        #[arg(long, group = "source")]
        from_postgres: bool,
    },
    /// Print what the message store holds: `N messages, M accounts, sha256 …`, the hash taken
    /// over the canonical export (a `# room NAME` line before each room's records, #general
    /// first, then the accounts). The PostgreSQL store with --store, else the data dir. Equal
    /// lines mean equal contents: compare a data dir and a database after a move.
    Summary,
}

fn parse_room(s: &str) -> Result<gc_protocol::Room, String> {
    gc_protocol::Room::new(s).map_err(|e| e.to_string())
}

/// Export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ExportFormat {
    /// `{id};{timestamp};{username};{message}` lines.
    Plain,
    /// JSON lines.
    Json,
}

pub use crate::logging::LogSettings;

impl Cli {
    /// Combines defaults, the config file and flags, in that order of precedence (flags win).
    pub fn resolve(&self) -> Result<(Config, LogSettings), ServerError> {
        let file = match &self.config {
            Some(path) => crate::config::load_file(path)?,
            None => FileConfig::default(),
        };
        let r = match &self.command {
            Some(Command::Run(args)) => args,
            _ => &self.run,
        };
        // The flags in the file's shape, applied over it.
        let flags = FileConfig {
            bind: r.bind,
            connect_port: r.connect_port,
            auth_port: r.auth_port,
            send_port: r.send_port,
            data_dir: self.data_dir.clone(),
            server_name: r.server_name.clone(),
            heartbeat_interval_ms: r.heartbeat_interval_ms,
            fsync: r.fsync.clone(),
            store: r.store.clone(),
            files_dir: r.files_dir.clone(),
            registration: r.registration.clone(),
            unknown_users: r.unknown_users.clone(),
            room_creation: r.room_creation.clone(),
            max_rooms_per_user: r.max_rooms_per_user,
            scram_min_iterations: r.scram_min_iterations,
            max_clients: r.max_clients,
            max_sessions_per_user: r.max_sessions_per_user,
            max_sessions_per_address: r.max_sessions_per_address,
            max_registrations_per_address: r.max_registrations_per_address,
            max_pending_auths: r.max_pending_auths,
            pending_timeout_ms: r.pending_timeout_ms,
            max_message_bytes: r.max_message_bytes,
            max_file_bytes: r.max_file_bytes,
            user_quota_bytes: r.user_quota_bytes,
            min_free_disk_bytes: r.min_free_disk_bytes,
            abandoned_upload_hours: r.abandoned_upload_hours,
            rate_burst: r.rate_burst,
            rate_per_sec: r.rate_per_sec,
            max_login_failures: r.max_login_failures,
            io_timeout_ms: r.io_timeout_ms,
            idle_timeout_ms: r.idle_timeout_ms,
            history_on_join: r.history_on_join,
            reuse_connections: r.no_reuse.then_some(false),
            mods_dir: match &self.command {
                Some(Command::Plugins(PluginsCommand::List {
                    mods_dir: Some(dir),
                    ..
                })) => Some(dir.clone()),
                _ => r.mods_dir.clone(),
            },
            plugin_hook_budget_ms: r.plugin_hook_budget_ms,
            plugin_hook_limit_ms: r.plugin_hook_limit_ms,
            metrics_addr: r.metrics_addr,
            tls: r.tls.clone(),
            tls_cert: r.tls_cert.clone(),
            tls_key: r.tls_key.clone(),
            log_level: None,
            log_file: None,
            log_format: None,
        };
        let mut c = Config::default();
        c.apply(&file)?;
        c.apply(&flags)?;
        c.print_addrs = r.print_addrs;
        crate::config::check(&c)?;
        let log = LogSettings {
            level: self
                .log_level
                .clone()
                .or(file.log_level)
                .unwrap_or_else(|| "info".to_owned()),
            file: self.log_file.clone().or(file.log_file),
            format: match self.log_format.as_deref().or(file.log_format.as_deref()) {
                Some(format) => parse_log_format(format)?,
                None => LogFormat::Text,
            },
            level_from: match self.log_level {
                Some(_) => None,
                None => self.config.clone(),
            },
        };
        Ok((c, log))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;
    use std::time::Duration;

    #[test]
    fn cli_is_well_formed() {
        Cli::command().debug_assert();
    }

    #[test]
    fn flags_override_file_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc.toml");
        std::fs::write(
            &path,
            "send-port = 1\nauth-port = 2\nregistration = \"closed\"\nfsync = \"never\"\n",
        )
        .unwrap();
        let cli = Cli::parse_from([
            "gc-server",
            "--config",
            path.to_str().unwrap(),
            "--send-port",
            "3",
        ]);
        let (c, log) = cli.resolve().unwrap();
        assert_eq!(c.send_port, 3);
        assert_eq!(c.auth_port, 2);
        assert_eq!(c.connect_port, 10740);
        assert!(!c.registration_open);
        assert_eq!(c.fsync, gc_store::FsyncPolicy::Never);
        assert_eq!(log.level, "info");
    }

    #[test]
    fn metrics_addr_is_off_unless_a_flag_or_the_file_sets_it() {
        let (c, _) = Cli::parse_from(["gc-server"]).resolve().unwrap();
        assert_eq!(c.metrics_addr, None);
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc.toml");
        std::fs::write(&path, "metrics-addr = \"127.0.0.1:9100\"\n").unwrap();
        let config = path.to_str().unwrap();
        let (c, _) = Cli::parse_from(["gc-server", "--config", config])
            .resolve()
            .unwrap();
        assert_eq!(c.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
        let (c, _) = Cli::parse_from([
            "gc-server",
            "--config",
            config,
            "--metrics-addr",
            "[::1]:9200",
        ])
        .resolve()
        .unwrap();
        assert_eq!(c.metrics_addr, Some("[::1]:9200".parse().unwrap()));
        // An address without a port is refused by the parser, naming the flag.
        assert!(Cli::try_parse_from(["gc-server", "--metrics-addr", "127.0.0.1"]).is_err());
    }

    #[test]
    fn run_takes_the_options_too() {
        let cli = Cli::parse_from(["gc-server", "run", "--send-port", "4", "--no-reuse"]);
        let (c, _) = cli.resolve().unwrap();
        assert_eq!(c.send_port, 4);
        assert!(!c.reuse_connections);
    }

    #[test]
    fn bad_file_keys_and_values_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc.toml");
        std::fs::write(&path, "sendport = 1\n").unwrap();
        let cli = Cli::parse_from(["gc-server", "--config", path.to_str().unwrap()]);
        let err = cli.resolve().unwrap_err().to_string();
        assert!(err.contains("sendport") && err.contains("gc.toml"), "{err}");
        let cli = Cli::parse_from(["gc-server", "--registration", "maybe"]);
        let err = cli.resolve().unwrap_err().to_string();
        assert!(err.contains("open") && err.contains("maybe"), "{err}");
        let cli = Cli::parse_from(["gc-server", "--max-message-bytes", "0"]);
        assert!(cli.resolve().is_err());
        let cli = Cli::parse_from(["gc-server", "--log-format", "xml"]);
        let err = cli.resolve().unwrap_err().to_string();
        assert!(err.contains("xml") && err.contains("json"), "{err}");
    }

    #[test]
    fn log_settings_from_flags_and_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc.toml");
        std::fs::write(&path, "log-format = \"json\"\nlog-level = \"debug\"\n").unwrap();
        let config = path.to_str().unwrap();
        let (_, log) = Cli::parse_from(["gc-server", "--config", config])
            .resolve()
            .unwrap();
        assert_eq!(log.format, LogFormat::Json);
        assert_eq!(log.level, "debug");
        // SIGHUP reads the level from the file again, unless a flag fixed it.
        assert_eq!(log.level_from.as_deref(), Some(path.as_path()));
        let (_, log) = Cli::parse_from([
            "gc-server",
            "--config",
            config,
            "--log-level",
            "warn",
            "--log-format",
            "text",
        ])
        .resolve()
        .unwrap();
        assert_eq!((log.format, log.level.as_str()), (LogFormat::Text, "warn"));
        assert_eq!(log.level_from, None);
        let (_, log) = Cli::parse_from(["gc-server"]).resolve().unwrap();
        assert_eq!((log.format, log.level_from), (LogFormat::Text, None));
    }

    #[test]
    fn plugins_list_takes_the_servers_mods_dir() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc.toml");
        std::fs::write(&path, "mods-dir = \"/from/file\"\n").unwrap();
        let config = path.to_str().unwrap();
        let mods = |args: &[&str]| {
            let mut all = vec!["gc-server", "--config", config];
            all.extend_from_slice(args);
            Cli::parse_from(all).resolve().unwrap().0.mods_dir
        };
        let dir = |d: &str| Some(PathBuf::from(d));
        assert_eq!(mods(&["plugins", "list"]), dir("/from/file"));
        assert_eq!(
            mods(&["--mods-dir", "/before", "plugins", "list"]),
            dir("/before")
        );
        assert_eq!(
            mods(&["plugins", "list", "--mods-dir", "/after"]),
            dir("/after")
        );
        let (c, _) = Cli::parse_from(["gc-server", "--data-dir", "/d", "plugins", "list"])
            .resolve()
            .unwrap();
        assert_eq!(c.mods_dir(), PathBuf::from("/d/mods"));
    }

    #[test]
    fn plugin_hook_times_come_from_flags_or_the_file_and_must_make_sense() {
        let (c, _) = Cli::parse_from(["gc-server"]).resolve().unwrap();
        assert_eq!(c.plugin_hook_budget, Duration::from_millis(50));
        assert_eq!(c.plugin_hook_limit, Duration::from_secs(1));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc.toml");
        std::fs::write(
            &path,
            "plugin-hook-budget-ms = 20\nplugin-hook-limit-ms = 300\n",
        )
        .unwrap();
        let file = path.to_str().unwrap();
        let (c, _) = Cli::parse_from(["gc-server", "--config", file])
            .resolve()
            .unwrap();
        assert_eq!(
            crate::config::plugin_hook_limits(&c),
            gc_plugin::HookLimits {
                budget: Duration::from_millis(20),
                limit: Duration::from_millis(300)
            }
        );
        let cli = Cli::parse_from([
            "gc-server",
            "--config",
            file,
            "--plugin-hook-limit-ms",
            "400",
        ]);
        assert_eq!(
            cli.resolve().unwrap().0.plugin_hook_limit,
            Duration::from_millis(400)
        );
        for bad in [
            ["--plugin-hook-budget-ms", "0"],
            ["--plugin-hook-limit-ms", "10"],
            ["--plugin-hook-limit-ms", "600001"],
        ] {
            let err = Cli::parse_from(["gc-server", bad[0], bad[1]])
                .resolve()
                .unwrap_err()
                .to_string();
            assert!(err.contains("plugin-hook-limit-ms"), "{err}");
        }
    }
}
