//! The command line of `gc-client`, and how it becomes a [`ClientConfig`].

use std::ffi::OsString;
use std::io::BufRead as _;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use clap::Parser;

use crate::error::AppError;
use crate::headless::{HeadlessOptions, Transfer};
use gc_client_core::config::{
    ClientConfig, DEFAULT_AUTH_PORT, DEFAULT_CONNECT_PORT, DEFAULT_SEND_PORT, ListenPorts,
    Password, PortChoice, ServerPorts,
};
use gc_protocol::{Fingerprint, Room, Username};

/// The environment variable a password may come from.
pub const PASSWORD_ENV: &str = "GC_PASSWORD";

const AFTER_HELP: &str = "\
TERMINAL UI
  Without --headless, gc-client opens a full-screen terminal UI. It asks for the username and
  password (hidden) unless --user and a password (--password-file, GC_PASSWORD) are given, and
  offers to create the account when the server does not know it and takes registrations. The
  last username that logged in is remembered in the settings file (--config; never the
  password). Logs go to --log-file, never to the screen.
  Keys: Enter send · Alt+Enter or Esc then Enter new line · Up/Down recall sent lines ·
  PgUp/PgDn or mouse wheel scroll (past the top loads older messages) · Home/End oldest/newest ·
  Tab complete a name, command or room (again: the next one; Shift+Tab back) · F2 people pane ·
  F3 room list · Alt+1…9 or Ctrl+N/Ctrl+P switch rooms · Ctrl+W/Ctrl+U delete word/line ·
  Ctrl+C quit.
  Commands: /help /who /me ACTION /search TEXT (Ctrl+P/Ctrl+N older/newer match) /urls /clear
  /ignore [USER] /unignore USER /reconnect /quit; client plugins may add more (in /help); with rooms /rooms /join /part /msg /invite /topic /kick /mute /ban (see
  /help); //TEXT sends TEXT starting with one /. A message starting with \"/me \" is an action,
  shown as \"* user ACTION\".
  Files (GC/5): /upload PATH shares a file in the room shown (Tab completes the path; a row
  above the status bar shows progress and speed; Esc with nothing typed cancels the newest
  transfer). Shared files show as \"📎 NAME (SIZE) sha256:3f5c…e1a9\"; /download saves the
  newest (or the one a search shows; /download N the Nth newest, /download HASH by hash) into
  $XDG_DOWNLOAD_DIR, else ~/Downloads, else ~, never over an existing file.
  URLs are underlined and written as OSC 8 hyperlinks (--no-hyperlinks, or hyperlinks = false in
  the settings file, turns that off); /urls lists those of the room shown. The mouse wheel needs
  mouse reporting, so selecting text takes Shift+drag in most terminals; --no-mouse (or
  mouse = false in the settings file) leaves the mouse to the terminal.
  SETTINGS FILE (--config; every key optional):
    user = \"alice\"                the last username that logged in (written by gc-client)
    mouse = false                 leave the mouse to the terminal (--no-mouse)
    hyperlinks = false            URLs as plain text (--no-hyperlinks)
    bell = \"mentions\"             ring the terminal's bell (BEL) for a message naming you or a
                                  direct message; \"all\": any message from someone else;
                                  \"off\". Live messages only (not those missed while away),
                                  at most once a second
    title = true                  the terminal's title shows unread counts: gc (3) [1 mention]
                                  #dev; the one before is restored at exit
    notify-command = [\"notify-send\", \"--\", \"{sender} in {room}\", \"{text}\"]
                                  run for each notification, never through a shell: a program
                                  alone gets the sender, room and text as three arguments; in
                                  a list, {sender} {room} {text} are replaced.
                                  Killed after 5 s; at most 2 at once; failures are logged
    notify-on = \"mentions\"        which messages run it: \"mentions\" or \"all\"
    timestamp-format = \"%H:%M\"    the time column (strftime; \"%H:%M:%S\" adds seconds)
    theme = \"default\"             colours: \"default\" (dark background), \"light\", \"mono\"
    ignore = [\"mallory\"]          whose messages are hidden (/ignore and /unignore write it);
                                  they are still kept in the cache. Headless output is not
                                  filtered
    log-conversations = true      append each message shown to a plain-text log per room,
                                  $XDG_STATE_HOME/gc-client/logs/SERVER-USER/ROOM.log:
                                  \"YYYY-MM-DD HH:MM:SS <user> text\", UTC, one line each
  A mistake in the file stops the start with what is wrong. Read markers (the newest message
  seen in each room, kept in CACHE.read) put a \"new since you left\" line in each room.
  With --with-server, the gc-server next to gc-client is started first (data in ./gc-data or
  --server-data-dir, logs in a file) and stopped at exit: a local try-out in one command.

PASSWORD
  Taken from --password-file (its first line), else the GC_PASSWORD environment variable, else
  asked for on the terminal (/dev/tty, not standard input, which carries messages). The password
  never crosses the network: the login is SCRAM-SHA-256, and the client checks that the server,
  too, knows the account's secret before it trusts it.

HEADLESS MODE
  Each line of standard input is sent as a message; a line ending in \\ continues on the next
  line (the \\ is dropped, the lines are joined with a newline); empty lines are not sent. Each
  received message is printed on standard output once, in order, as
      [YYYY-MM-DD HH:MM:SS] user: text
  in local time, with newlines shown as ⏎ and control characters as visible symbols (ESC as ␛),
  or as one JSON object per line with --json:
      {\"id\":1,\"timestamp\":\"1700000000.5\",\"time\":\"2023-11-14T22:13:20.5Z\",\"username\":\"alice\",\"message\":\"hi\"}
  With a server that serves rooms (GC/3), the messages of every room the account is in are
  printed; those of rooms other than #general name their room, before the user in text
      [YYYY-MM-DD HH:MM:SS] #dev user: text
  and as a last \"room\":\"#dev\" member in JSON (a direct conversation is @alice+bob).
  --room NAME sends the input into that room instead of #general (NAME or #NAME; a direct
  conversation as @alice+bob); --to USER into the direct conversation with USER. The account
  must be in the room (the server's refusal is printed otherwise); with a server older than
  rooms nothing is sent and gc-client exits with an error.
  Status and warnings go to standard error. At the end of input the client waits (up to
  --drain-timeout) until it has received everything the server held when it logged in, and the
  server has acknowledged every message and sent it back; then it says Bye and exits. So
  `gc-client … --headless < /dev/null` prints what was missed since the last run.

EXIT CODES
  0  input ended and every message was acknowledged
  1  an error: files, cache in use by another gc-client, output closed, never logged in, …
  2  bad usage: unknown flag, no password available (headless), no username (headless), a
     server seen for the first time without --trust-fingerprint or --trust-on-first-use
     (headless; its fingerprint is printed)
  3  messages were still unacknowledged when the drain timeout passed (their number is printed);
     they are kept beside the cache (FILE.outbox) and sent on the next run under the same ids,
     so the server stores each once (not with --no-cache)
  4  the server refused the login or registration (wrong password, unknown user, name taken,
     registration closed, too many failures), could not prove it knows the account's secret,
     or presented a certificate other than the pinned one
  5  the server refused one or more messages for good (a room you are not in, a mute, a ban,
     a message too long, …), or refused the file of --upload/--download (too large, over the
     quota, its disk full, no such file where you can read); each refusal and its reason is
     printed

The terminal UI exits 0 when quit, 1 on an error (e.g. no terminal), 3 when messages were still
unacknowledged after 3 s (their text is printed), 128+N after signal N (SIGTERM, SIGHUP).

Errors are printed on standard error as one line: `gc-client: error: <what>: <cause>`.

ENCRYPTION
  Every connection, both ways, is TLS 1.3 (--tls off: plain GC/1, for servers without TLS). The
  client trusts one certificate per server, by its SHA-256 fingerprint, kept in the known servers
  file (--known-servers). On first contact the terminal UI shows the server's fingerprint and asks;
  compare it with what the server's operator sees (`gc-server tls fingerprint`). Headless mode
  needs --trust-fingerprint SHA256:… (this run) or --trust-on-first-use (remembered). A server
  whose certificate changed is refused with both fingerprints and the line to remove. The login is
  bound to the TLS session, so a relay with its own certificate cannot complete it; the server
  calls back over TLS to a certificate this client makes for each run and announces at login.
  With --with-server the client trusts the server it started (its DATA_DIR/tls/cert.pem).

SEVERAL SERVERS
  SERVER may list several instances of one service, separated by commas: gc-client
  host1,host2,10.0.0.7 (no spaces inside an entry; an empty or repeated entry is an error). A name
  that resolves to several addresses is treated the same way. The instances must share one store
  (the same accounts and one id sequence), and all use the --server-port-* ports. The client logs
  in on the first that answers; when the one it is on stops answering (a late heartbeat finds its
  port closed, or no heartbeat for three intervals), it logs in on the next one at once, going
  round the list, and backs off as for one server when none answers. Nothing is lost or shown
  twice: waiting messages are resent under their ids (the store keeps each once) and delivery
  resumes after the last message held. The status bar shows the instance (on host2 (2/3));
  headless mode prints a line on standard error when the client moves. An entry that does not
  resolve is skipped with a warning while others do.
  Certificates: each instance has its own line in the known servers file. --trust-fingerprint
  applies to every instance; --trust-on-first-use remembers each new instance that answers at
  start; without it headless mode refuses a new one (its fingerprint is printed) and the terminal
  UI asks about each new instance in turn. A new instance that does not answer at start is left
  out of that run (with a warning), never trusted blindly. A changed certificate on any instance
  is refused as for one server.
  The cache is shared by the instances of a list: its directory is named after the entries,
  sorted, joined with + (one server keeps its usual name).

PORTS
  The server listens on 10740 (version check), 9281 (login) and 9980 (messages). The client
  listens on 12090 (login callback), 8070 (heartbeat) and 6090 (delivery), and the server must be
  able to connect to them: open them in the firewall. When a default client port is taken (another
  client on this host), an OS-chosen port is used instead; a port given with a flag must be free;
  0 lets the system choose.";

/// gc-client: the General Communications chat client.
///
/// Logs in to a gc-server (SCRAM-SHA-256, with the server proving its identity back), receives
/// every message in order exactly once, and keeps them in a local cache so a restart only fetches
/// what was missed. Messages written while the server is unreachable wait in an outbox and are
/// sent, once, when it is back.
///
/// Opens a terminal UI; --headless reads messages from standard input instead.
#[derive(Debug, Parser)]
#[command(name = "gc-client", version, max_term_width = 100, after_long_help = AFTER_HELP)]
pub struct Cli {
    /// The server: a host name or an IP address; or several instances of one service, separated
    /// by commas (host1,host2,10.0.0.7: see SEVERAL SERVERS below).
    #[arg(
        required_unless_present = "list_plugins",
        default_value = "",
        hide_default_value = true
    )]
    pub server: String,

    /// Directory of client plugins, loaded at start in file-name order [default:
    /// $XDG_DATA_HOME/gc-client/mods, or ~/.local/share/gc-client/mods].
    #[arg(long, value_name = "DIR")]
    pub mods_dir: Option<PathBuf>,

    /// Show which files in the mods directory would load as plugins (and why the others would
    /// not), then exit. The files are read, not run: no plugin code runs (a library built
    /// without gc_plugin_static_descriptor is listed as `load?`).
    #[arg(long)]
    pub list_plugins: bool,

    /// With --list-plugins: load each library to read it, as a start does (its initialisers run
    /// in this process), for libraries built before the static descriptor.
    #[arg(long, requires = "list_plugins")]
    pub load: bool,

    /// Read messages from standard input and print received messages on standard output
    /// (for scripts, bots and tests).
    #[arg(long)]
    pub headless: bool,

    /// The account name (1-32 characters of A-Z a-z 0-9 _ . -). The terminal UI asks for it
    /// when it is not given (starting with the last one that logged in).
    #[arg(long, short = 'u', value_name = "NAME")]
    pub user: Option<String>,

    /// Read the password from the first line of this file.
    #[arg(long, value_name = "FILE")]
    pub password_file: Option<PathBuf>,

    /// Create the account first (fails if the name is taken or the server's registration is
    /// closed).
    #[arg(long)]
    pub register: bool,

    /// Print one JSON object per received message instead of text lines.
    #[arg(long)]
    pub json: bool,

    /// Headless: send the input's messages into this room (`dev` or `#dev`; a direct
    /// conversation as `@alice+bob`) instead of #general.
    #[arg(
        long,
        value_name = "NAME",
        requires = "headless",
        conflicts_with = "to"
    )]
    pub room: Option<String>,

    /// Headless: send the input's messages to USER, in your direct conversation.
    #[arg(long, value_name = "USER", requires = "headless")]
    pub to: Option<String>,

    /// Headless: share FILE (in --room/--to, else #general) instead of sending standard input;
    /// prints `shared NAME (SIZE bytes) sha256:HASH as message ID` when the server has it.
    #[arg(
        long,
        value_name = "FILE",
        requires = "headless",
        conflicts_with = "download"
    )]
    pub upload: Option<PathBuf>,

    /// Headless: save the shared file whose SHA-256 is HASH (64 hex digits, as its `[file]`
    /// line shows them) at --output; prints `saved PATH (SIZE bytes)`. An interrupted download
    /// resumes on the next run from `PATH.<the hash's first 16 hex digits>.part`, which it writes
    /// to until the file is complete and verified.
    #[arg(long, value_name = "HASH", requires_all = ["headless", "output"])]
    pub download: Option<String>,

    /// Where --download saves the file; an existing file is never replaced.
    #[arg(long, value_name = "PATH", requires = "download")]
    pub output: Option<PathBuf>,

    /// At the end of input, wait at most this long for the server to acknowledge the messages
    /// still waiting.
    #[arg(long, value_name = "SECS", default_value_t = 60)]
    pub drain_timeout: u64,

    /// Local IP address to listen on and to connect from (the server calls this address back).
    /// Default: listen on all interfaces, connect from whatever the system picks.
    #[arg(long, value_name = "IP")]
    pub bind: Option<IpAddr>,

    /// Port for the server's login callback [default: 12090, or any free port if taken; 0: any].
    #[arg(long, value_name = "PORT")]
    pub port_auth: Option<u16>,

    /// Port for the server's heartbeats [default: 8070, or any free port if taken; 0: any].
    #[arg(long, value_name = "PORT")]
    pub port_heartbeat: Option<u16>,

    /// Port for message delivery [default: 6090, or any free port if taken; 0: any].
    #[arg(long, value_name = "PORT")]
    pub port_delivery: Option<u16>,

    /// The server's version check port.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_CONNECT_PORT)]
    pub server_port_connect: u16,

    /// The server's login and registration port.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_AUTH_PORT)]
    pub server_port_auth: u16,

    /// The server's message port.
    #[arg(long, value_name = "PORT", default_value_t = DEFAULT_SEND_PORT)]
    pub server_port_send: u16,

    /// The message cache [default: $XDG_DATA_HOME/gc-client/SERVER-USER/cdatabase.db, or
    /// ~/.local/share/gc-client/… without XDG_DATA_HOME].
    #[arg(long, value_name = "FILE", conflicts_with = "no_cache")]
    pub cache: Option<PathBuf>,

    /// Keep no cache: every start is a fresh client (it gets the newest 200 messages).
    #[arg(long)]
    pub no_cache: bool,

    /// Open a new connection for every exchange instead of keeping one open (for measurements).
    #[arg(long)]
    pub no_reuse: bool,

    /// Append logs to this file [default: headless mode, errors only, on standard error; terminal
    /// UI, $XDG_STATE_HOME/gc-client/gc-client.log or ~/.local/state/gc-client/gc-client.log].
    #[arg(long, value_name = "FILE")]
    pub log_file: Option<PathBuf>,

    /// Log level: error, warn, info, debug, trace, or a filter like `gc_client=debug`
    /// [default: info with --log-file or the terminal UI, else error].
    #[arg(long, value_name = "LEVEL")]
    pub log_level: Option<String>,

    /// The terminal UI's settings file: the last username, and the choices listed under
    /// SETTINGS FILE below [default: $XDG_CONFIG_HOME/gc-client/config.toml or
    /// ~/.config/gc-client/config.toml].
    #[arg(long, value_name = "FILE")]
    pub config: Option<PathBuf>,

    /// Terminal UI: leave the mouse to the terminal (plain drag selects text, the wheel scrolls
    /// the terminal); PgUp/PgDn still scroll the messages. Also `mouse = false` in the settings
    /// file.
    #[arg(long)]
    pub no_mouse: bool,

    /// Terminal UI: do not write URLs as OSC 8 hyperlinks (for a terminal that shows the escape
    /// sequences instead of obeying them). Also `hyperlinks = false` in the settings file.
    #[arg(long)]
    pub no_hyperlinks: bool,

    /// Start the gc-server that sits next to this gc-client first (its defaults, the ports of
    /// --server-port-*, listening on SERVER's address only: a name is resolved, never all
    /// interfaces), and stop it at exit: for trying things out on one machine. Refused with a
    /// server list: it starts one server, on one address.
    #[arg(long)]
    pub with_server: bool,

    /// With --with-server: the server's data directory [default: ./gc-data].
    #[arg(long, value_name = "DIR", requires = "with_server")]
    pub server_data_dir: Option<PathBuf>,

    /// `required`: TLS (GC/2) with the server's certificate pinned, the login bound to the TLS
    /// session. `off`: plain, unencrypted GC/1, for servers run with --tls off or optional.
    #[arg(long, value_name = "MODE", value_enum, default_value_t = TlsChoice::Required)]
    pub tls: TlsChoice,

    /// Trust the server presenting this certificate (`SHA256:…`, as `gc-server tls fingerprint`
    /// prints it), for this run; a different pin already in the known servers file is an error.
    #[arg(
        long,
        value_name = "FINGERPRINT",
        conflicts_with = "trust_on_first_use"
    )]
    pub trust_fingerprint: Option<Fingerprint>,

    /// On first contact, trust the certificate the server presents and remember it in the known
    /// servers file, without asking. A server whose certificate later changes is still refused.
    #[arg(long)]
    pub trust_on_first_use: bool,

    /// The pins of servers trusted before, one `<server>:<port> SHA256:…` per line [default:
    /// $XDG_DATA_HOME/gc-client/known_servers or ~/.local/share/gc-client/known_servers].
    #[arg(long, value_name = "FILE")]
    pub known_servers: Option<PathBuf>,
}

/// `--tls`: how the client talks to the server.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum TlsChoice {
    /// TLS 1.3 with a pinned server certificate (GC/2).
    Required,
    /// Plain GC/1, unencrypted.
    Off,
}

impl Cli {
    /// The username, required in headless mode.
    pub fn username(&self) -> Result<&str, AppError> {
        self.user
            .as_deref()
            .ok_or_else(|| AppError::Config("no account name: give --user NAME".into()))
    }

    /// The client configuration these flags describe.
    pub fn client_config(&self, password: Password) -> Result<ClientConfig, AppError> {
        self.client_config_for(self.username()?, password, self.register)
    }

    /// The client configuration these flags describe, for account `user` (the terminal UI asks
    /// for it), registering first if `register`. The default cache's directories are tightened
    /// if an older version left them open to others.
    pub fn client_config_for(
        &self,
        user: &str,
        password: Password,
        register: bool,
    ) -> Result<ClientConfig, AppError> {
        let mut config = ClientConfig::new(self.server.clone(), user, password);
        config.server_ports = ServerPorts {
            connect: self.server_port_connect,
            auth: self.server_port_auth,
            send: self.server_port_send,
        };
        config.bind_ip = self.bind;
        config.listen_ports = ListenPorts {
            auth: PortChoice::from_flag(self.port_auth),
            heartbeat: PortChoice::from_flag(self.port_heartbeat),
            delivery: PortChoice::from_flag(self.port_delivery),
        };
        config.register = register;
        config.reuse_connections = !self.no_reuse;
        config.cache_path = if self.no_cache {
            None
        } else if let Some(path) = &self.cache {
            Some(path.clone())
        } else {
            let path = default_cache_path(
                &self.server,
                self.server_port_connect,
                user,
                std::env::var_os("XDG_DATA_HOME"),
                std::env::var_os("HOME"),
            )?;
            crate::settings::tighten_default_place(&path);
            Some(path)
        };
        config.mods_dir = self.mods_dir()?;
        config.validate()?;
        Ok(config)
    }

    /// The entries of the server argument: one server, or the instances of a list.
    pub fn servers(&self) -> Result<Vec<String>, AppError> {
        Ok(gc_client_core::config::parse_server_list(&self.server)?)
    }

    /// The known servers file in effect (the default's directory tightened if open to others).
    pub fn known_servers_path(&self) -> Result<PathBuf, AppError> {
        if let Some(path) = &self.known_servers {
            return Ok(path.clone());
        }
        data_home(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
            .map(|base| base.join("gc-client").join("known_servers"))
            .inspect(|path| crate::settings::tighten_default_place(path))
            .ok_or_else(|| {
                AppError::Config(
                    "no place for the known servers file: neither XDG_DATA_HOME nor HOME is \
                     set; give --known-servers FILE, or --trust-fingerprint"
                        .into(),
                )
            })
    }

    /// The plugin directory in effect (`None`: no HOME to put the default under).
    pub fn mods_dir(&self) -> Result<Option<PathBuf>, AppError> {
        if let Some(dir) = &self.mods_dir {
            return Ok(Some(dir.clone()));
        }
        Ok(
            data_home(std::env::var_os("XDG_DATA_HOME"), std::env::var_os("HOME"))
                .map(|base| base.join("gc-client").join("mods")),
        )
    }

    /// Headless printing, draining, and where the messages go.
    pub fn headless_options(&self) -> Result<HeadlessOptions, AppError> {
        Ok(HeadlessOptions {
            json: self.json,
            drain_timeout: Duration::from_secs(self.drain_timeout),
            room: self.target_room()?,
            terminal: std::io::IsTerminal::is_terminal(&std::io::stdout()),
            transfer: self.transfer()?,
        })
    }

    /// The file of `--upload`, or the hash and path of `--download`/`--output`.
    pub fn transfer(&self) -> Result<Option<Transfer>, AppError> {
        if let Some(path) = &self.upload {
            return Ok(Some(Transfer::Upload(path.clone())));
        }
        let (Some(hash), Some(output)) = (&self.download, &self.output) else {
            return Ok(None);
        };
        let text = hash.trim();
        let text = text.strip_prefix("sha256:").unwrap_or(text);
        let hash = text.to_ascii_lowercase().parse().map_err(|_| {
            AppError::Config(format!(
                "--download: `{}` is not a SHA-256: 64 hex digits, as a [file] line shows them",
                hash.escape_debug()
            ))
        })?;
        Ok(Some(Transfer::Download {
            hash,
            output: output.clone(),
        }))
    }

    /// The room of `--room NAME`, or the direct conversation of `--to USER`.
    pub fn target_room(&self) -> Result<Option<Room>, AppError> {
        if let Some(name) = &self.room {
            return gc_client_core::parse_room(name)
                .map(Some)
                .map_err(|e| AppError::Config(format!("--room: {e}")));
        }
        let Some(to) = &self.to else {
            return Ok(None);
        };
        let bad = |what: String| AppError::Config(format!("--to: {what}"));
        let me = Username::new(self.username()?)
            .map_err(|_| bad("your own account name is not valid".into()))?;
        let them = Username::new(to.as_str()).map_err(|_| {
            bad(format!(
                "`{}` is not a username: 1 to 32 characters of A-Z a-z 0-9 _ . -",
                to.escape_debug()
            ))
        })?;
        Room::direct(&me, &them).map(Some).map_err(|_| {
            bad(format!(
                "{them} is your own account: a direct conversation is between two accounts"
            ))
        })
    }

    /// A password given without asking: `--password-file`, else `GC_PASSWORD`.
    pub fn given_password(&self) -> Result<Option<Password>, AppError> {
        if let Some(path) = &self.password_file {
            return read_password_file(path).map(Some);
        }
        match std::env::var_os(PASSWORD_ENV) {
            Some(value) => value
                .into_string()
                .map(|v| Some(Password::new(v)))
                .map_err(|_| AppError::NoPassword(format!("{PASSWORD_ENV} is not valid UTF-8"))),
            None => Ok(None),
        }
    }

    /// The password: `--password-file`, else `GC_PASSWORD`, else a prompt on the terminal.
    pub fn password(&self) -> Result<Password, AppError> {
        if let Some(password) = self.given_password()? {
            return Ok(password);
        }
        let user = self.username()?;
        let prompt = format!("Password for {user} on {}: ", self.server);
        let first = rpassword::prompt_password(&prompt).map_err(|e| {
            AppError::NoPassword(format!(
                "cannot ask on the terminal ({e}); give --password-file FILE or set {PASSWORD_ENV}"
            ))
        })?;
        if self.register {
            let again = rpassword::prompt_password("Repeat the password: ")
                .map_err(|e| AppError::NoPassword(format!("cannot ask on the terminal ({e})")))?;
            if again != first {
                return Err(AppError::NoPassword(
                    "the two passwords differ; try again".into(),
                ));
            }
        }
        Ok(Password::new(first))
    }
}

/// The first line of `path`, without its line ending.
pub fn read_password_file(path: &Path) -> Result<Password, AppError> {
    let file = std::fs::File::open(path).map_err(|source| AppError::Io {
        what: "open the password file",
        path: path.to_owned(),
        source,
    })?;
    let mut line = String::new();
    std::io::BufReader::new(file)
        .read_line(&mut line)
        .map_err(|source| AppError::Io {
            what: "read the password file",
            path: path.to_owned(),
            source,
        })?;
    let password = line.strip_suffix('\n').unwrap_or(&line);
    let password = password.strip_suffix('\r').unwrap_or(password);
    if password.is_empty() {
        return Err(AppError::NoPassword(format!(
            "the first line of {} is empty",
            path.display()
        )));
    }
    Ok(Password::new(password))
}

/// The XDG data directory: `$XDG_DATA_HOME` if absolute, else `$HOME/.local/share`.
fn data_home(xdg_data_home: Option<OsString>, home: Option<OsString>) -> Option<PathBuf> {
    match (xdg_data_home, home) {
        (Some(x), _) if Path::new(&x).is_absolute() => Some(PathBuf::from(x)),
        (_, Some(h)) if !h.is_empty() => Some(Path::new(&h).join(".local").join("share")),
        _ => None,
    }
}

/// `$XDG_DATA_HOME/gc-client/<server>-<user>/cdatabase.db`, or `$HOME/.local/share/…`. The
/// server part keeps `A-Z a-z 0-9 . -` (others become `_`) and gets `_<port>` when the connect
/// port is not the default; the user part is lower-cased (names are unique without case). A
/// server list `b,a` is `a+b`: its instances share one store, so they share one cache, whatever
/// their order.
pub fn default_cache_path(
    server: &str,
    connect_port: u16,
    user: &str,
    xdg_data_home: Option<OsString>,
    home: Option<OsString>,
) -> Result<PathBuf, AppError> {
    let Some(base) = data_home(xdg_data_home, home) else {
        return Err(AppError::Config(
            "no place for the cache: neither XDG_DATA_HOME nor HOME is set; give --cache FILE \
             or --no-cache"
                .into(),
        ));
    };
    // One server: as it always was, so existing caches still load. A list (instances sharing
    // one store, so one history): its entries sorted and joined with `+` (which no single
    // server's part has), the same cache in whatever order they are given.
    let mut host = if server.contains(',') {
        let mut entries: Vec<String> = server
            .split(',')
            .map(str::trim)
            .filter(|e| !e.is_empty())
            .map(|e| sanitize_host(&e.to_ascii_lowercase()))
            .collect();
        entries.sort();
        entries.join("+")
    } else {
        sanitize_host(server)
    };
    if connect_port != DEFAULT_CONNECT_PORT {
        host.push_str(&format!("_{connect_port}"));
    }
    Ok(base
        .join("gc-client")
        .join(format!("{host}-{}", user.to_ascii_lowercase()))
        .join("cdatabase.db"))
}

/// A host in a file name: `A-Z a-z 0-9 . -` kept, others `_`.
fn sanitize_host(server: &str) -> String {
    server
        .trim()
        .chars()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn help_is_consistent() {
        Cli::command().debug_assert();
        let help = Cli::command().render_long_help().to_string();
        assert!(help.contains("EXIT CODES"));
        assert!(help.contains("--drain-timeout"));
        assert!(help.contains("SEVERAL SERVERS") && help.contains("host1,host2"));
        assert!(help.contains("--no-mouse") && help.contains("mouse = false"));
        assert!(help.contains("--no-hyperlinks") && help.contains("hyperlinks = false"));
        for key in [
            "bell = ",
            "title = ",
            "notify-command = ",
            "notify-on = ",
            "timestamp-format = ",
            "theme = ",
            "ignore = ",
            "log-conversations = ",
            "new since you left",
        ] {
            assert!(help.contains(key), "{key} in --help");
        }
        let cli = Cli::parse_from(["gc-client", "h", "--no-mouse", "--no-hyperlinks"]);
        assert!(cli.no_mouse && cli.no_hyperlinks);
        let cli = Cli::parse_from(["gc-client", "h"]);
        assert!(!cli.no_mouse && !cli.no_hyperlinks);
    }

    #[test]
    fn flags_become_a_config() {
        let cli = Cli::parse_from([
            "gc-client",
            "chat.example",
            "--headless",
            "--user",
            "Alice",
            "--bind",
            "127.0.0.7",
            "--port-auth",
            "0",
            "--port-heartbeat",
            "9000",
            "--server-port-send",
            "1234",
            "--cache",
            "/tmp/x.db",
            "--no-reuse",
            "--register",
        ]);
        let short = cli.client_config(Password::new("seven-7")).unwrap_err();
        assert!(
            short
                .to_string()
                .contains("password too short: at least 8 characters"),
            "{short}"
        );
        assert_eq!(crate::exit::for_error(&short), crate::exit::EXIT_USAGE);
        let c = cli.client_config(Password::new("correct-horse-9")).unwrap();
        assert_eq!(c.username, "Alice");
        assert_eq!(c.bind_ip, Some("127.0.0.7".parse().unwrap()));
        assert_eq!(c.listen_ports.auth, PortChoice::Any);
        assert_eq!(c.listen_ports.heartbeat, PortChoice::Fixed(9000));
        assert_eq!(c.listen_ports.delivery, PortChoice::Default);
        assert_eq!(c.server_ports.send, 1234);
        assert_eq!(c.server_ports.connect, DEFAULT_CONNECT_PORT);
        assert_eq!(c.cache_path, Some(PathBuf::from("/tmp/x.db")));
        assert!(!c.reuse_connections && c.register);
        let no_cache = Cli::parse_from(["gc-client", "h", "-u", "bob", "--no-cache"]);
        assert_eq!(
            no_cache
                .client_config(Password::new("correct-horse-9"))
                .unwrap()
                .cache_path,
            None
        );
        assert!(Cli::try_parse_from(["gc-client", "h", "--cache", "x", "--no-cache"]).is_err());
        let no_user = Cli::parse_from(["gc-client", "h"]);
        assert!(
            no_user
                .client_config(Password::new("correct-horse-9"))
                .is_err()
        );
    }

    #[test]
    fn rooms_and_direct_conversations_to_write_to() {
        let room = |args: &[&str]| {
            let mut all = vec!["gc-client", "h", "--headless", "-u", "Alice"];
            all.extend_from_slice(args);
            Cli::parse_from(all).headless_options().map(|o| o.room)
        };
        let dev = Room::new("#dev").unwrap();
        assert_eq!(room(&[]).unwrap(), None);
        assert_eq!(room(&["--room", "dev"]).unwrap(), Some(dev.clone()));
        assert_eq!(room(&["--room", "#dev"]).unwrap(), Some(dev));
        assert_eq!(
            room(&["--room", "@alice+bob"]).unwrap(),
            Some(Room::new("@alice+bob").unwrap())
        );
        assert_eq!(
            room(&["--to", "Bob"]).unwrap(),
            Some(Room::new("@alice+bob").unwrap())
        );
        for bad in [
            &["--room", "Dev"][..],
            &["--room", "@bob+alice"],
            &["--to", "alice"],
            &["--to", "no body"],
        ] {
            let e = room(bad).unwrap_err();
            assert!(e.is_usage(), "{bad:?}: {e}");
        }
        assert!(
            Cli::try_parse_from(["gc-client", "h", "--headless", "--room", "a", "--to", "b"])
                .is_err()
        );
        assert!(Cli::try_parse_from(["gc-client", "h", "--room", "a"]).is_err());
    }

    #[test]
    fn default_cache_paths() {
        let p = default_cache_path(
            "chat.example",
            DEFAULT_CONNECT_PORT,
            "Alice",
            None,
            Some("/home/a".into()),
        )
        .unwrap();
        assert_eq!(
            p,
            PathBuf::from("/home/a/.local/share/gc-client/chat.example-alice/cdatabase.db")
        );
        let p = default_cache_path(
            "::1",
            7000,
            "bob",
            Some("/data".into()),
            Some("/home/b".into()),
        )
        .unwrap();
        assert_eq!(
            p,
            PathBuf::from("/data/gc-client/__1_7000-bob/cdatabase.db")
        );
        // A relative XDG_DATA_HOME is ignored, as the spec says.
        let p = default_cache_path(
            "h",
            DEFAULT_CONNECT_PORT,
            "c",
            Some("rel".into()),
            Some("/h".into()),
        )
        .unwrap();
        assert!(p.starts_with("/h/.local/share"));
        assert!(default_cache_path("h", 1, "c", None, None).is_err());
        // A list: one cache for its instances, in any order; one server's key is unchanged.
        let home = || Some("/h".into());
        let list = default_cache_path("host2, Host1,::1", 1, "c", None, home()).unwrap();
        assert_eq!(
            list,
            PathBuf::from("/h/.local/share/gc-client/__1+host1+host2_1-c/cdatabase.db")
        );
        let reordered = default_cache_path("::1,host2,host1", 1, "c", None, home()).unwrap();
        assert_eq!(list, reordered);
        let one = default_cache_path("host1", DEFAULT_CONNECT_PORT, "c", None, home()).unwrap();
        assert_eq!(
            one,
            PathBuf::from("/h/.local/share/gc-client/host1-c/cdatabase.db")
        );
    }

    #[test]
    fn password_file_first_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("pw");
        std::fs::write(&path, "s3cret pass\r\nsecond line\n").unwrap();
        assert_eq!(read_password_file(&path).unwrap().expose(), "s3cret pass");
        std::fs::write(&path, "\n").unwrap();
        assert!(read_password_file(&path).is_err());
        let missing = read_password_file(&dir.path().join("nope")).unwrap_err();
        assert!(missing.to_string().contains("password file"), "{missing}");
    }
}
