//! Loading plugins and running their hooks: in name order, a rewrite feeding the next plugin, a
//! block stopping the chain. A plugin that fails to load is skipped with a reason; a hook that
//! fails, panics, breaks the contract or takes too long disables its plugin; the host carries on.
//! Hooks run on their plugin's worker threads ([`crate::pool`]), so a caller waits for one at
//! most [`HookLimits::limit`].

#![allow(unsafe_code)] // the host side of the C boundary

use std::collections::VecDeque;
use std::ffi::c_void;
use std::fmt;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, Instant};

use libloading::Library;

use crate::pool::{Answer, Pool};

use crate::abi::{
    ABI_VERSION, ABI_VERSION_SYMBOL, COMMANDS_SYMBOL, COMMANDS_VERSION, DESCRIBE_SYMBOL,
    GcCommands, GcDescriptor, GcHost, GcStr, GcVerdict, MAX_COMMANDS, kind, level,
};

/// Why a file in a mods directory was not loaded.
#[derive(Debug, thiserror::Error)]
pub enum PluginError {
    /// The mods directory exists but cannot be listed.
    #[error("cannot list the mods directory {path}")]
    ReadDir {
        /// The directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The dynamic loader refused the file (not a shared library, wrong architecture, missing
    /// dependencies…).
    #[error("{path}: not a loadable shared library: {reason}")]
    Load {
        /// The file.
        path: PathBuf,
        /// What the loader said.
        reason: String,
    },
    /// The library has no `gc_plugin_abi_version`: it is not a gc plugin.
    #[error("{path}: not a gc plugin (it exports no gc_plugin_abi_version)")]
    NotAPlugin {
        /// The file.
        path: PathBuf,
    },
    /// Built for another plugin ABI.
    #[error(
        "{path}: built for plugin ABI version {found}, but this program speaks version {expected}; \
         rebuild the plugin against this release's gc_plugin.h / gc-plugin crate"
    )]
    AbiMismatch {
        /// The file.
        path: PathBuf,
        /// The plugin's ABI version.
        found: u32,
        /// Ours.
        expected: u32,
    },
    /// The descriptor is missing or malformed.
    #[error("{path}: invalid plugin: {reason}")]
    BadDescriptor {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// The plugin's init refused.
    #[error("{path}: plugin {name} failed to start: {reason}")]
    Init {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// Its reason.
        reason: String,
    },
    /// A plugin of the same name was loaded before it (from an earlier file).
    #[error("{path}: skipped: a plugin named {name} is already loaded from {other}")]
    Duplicate {
        /// The file.
        path: PathBuf,
        /// The name both declare.
        name: String,
        /// The file the first one came from.
        other: PathBuf,
    },
    /// The directory or the library could be changed by someone else than the account running
    /// the program (or root): loading it would run their code.
    #[error("{path}: refused: {reason}")]
    Unsafe {
        /// The directory or file.
        path: PathBuf,
        /// What is wrong, and what to do.
        reason: String,
    },
    /// A symbolic link in the mods directory that leads out of it.
    #[error(
        "{path}: refused: a symbolic link to {target}, outside the mods directory {dir}; copy \
         the library into the mods directory instead"
    )]
    SymlinkOutside {
        /// The link.
        path: PathBuf,
        /// Where it leads.
        target: PathBuf,
        /// The mods directory (resolved).
        dir: PathBuf,
    },
    /// The library exports no `gc_plugin_static_descriptor`, so what it is cannot be read without
    /// running its code (listing only; a start loads it and finds out).
    #[error(
        "{path}: cannot be read without running its code: it exports no \
         gc_plugin_static_descriptor (built against an older gc_plugin.h?); a start loads it to \
         find out, and so does listing with --load; rebuilding it against this release's \
         gc_plugin.h / gc-plugin crate lets listing read it"
    )]
    NotInspectable {
        /// The file.
        path: PathBuf,
    },
    /// A worker thread for the plugin's hooks could not be started.
    #[error("{path}: cannot start a thread for plugin {name}: {source}")]
    Thread {
        /// The file.
        path: PathBuf,
        /// The plugin's name.
        name: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

/// How long hooks may take (the server's `plugin-hook-budget-ms` and `plugin-hook-limit-ms`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct HookLimits {
    /// A call that runs longer is logged, with the plugin and the hook;
    /// [`OVERRUNS_TO_DISABLE`] of them within [`OVERRUN_WINDOW`] disable the plugin.
    pub budget: Duration,
    /// The caller waits this long at most (queueing included). A call without an answer by then
    /// disables the plugin at once and counts as no opinion: a message being filtered is refused
    /// (it was not checked), a display rewrite keeps the text, a notification is done.
    pub limit: Duration,
}

impl Default for HookLimits {
    fn default() -> Self {
        Self {
            budget: Duration::from_millis(50),
            limit: Duration::from_secs(1),
        }
    }
}

/// Budget overruns within [`OVERRUN_WINDOW`] that disable a plugin.
pub const OVERRUNS_TO_DISABLE: usize = 3;
/// The window [`OVERRUNS_TO_DISABLE`] counts in.
pub const OVERRUN_WINDOW: Duration = Duration::from_secs(60);

/// What a plugin is, as listed by `gc-server plugins list` / `gc-client --list-plugins`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its file.
    pub path: PathBuf,
    /// The hooks it implements (`on_command` when it adds commands).
    pub hooks: Vec<&'static str>,
    /// The commands it adds (client plugins), as it declares them.
    pub commands: Vec<CommandInfo>,
}

impl fmt::Display for PluginInfo {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} {} ({}) hooks: {}",
            self.name,
            self.version,
            self.path.display(),
            if self.hooks.is_empty() {
                "none".to_owned()
            } else {
                self.hooks.join(", ")
            }
        )?;
        if !self.commands.is_empty() {
            let names: Vec<String> = self
                .commands
                .iter()
                .map(|c| format!("/{}", c.name))
                .collect();
            write!(f, "; commands: {}", names.join(", "))?;
        }
        Ok(())
    }
}

/// A command a client plugin adds: `/name args`, listed in `/help` and completed by Tab.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CommandInfo {
    /// The name without its slash, lower case (1 to 32 of `a-z 0-9 - _`, starting with a
    /// letter).
    pub name: String,
    /// The arguments' hint (`TEXT`), possibly empty.
    pub args: String,
    /// What it does, one line.
    pub help: String,
    /// The plugin that adds it.
    pub plugin: String,
}

/// Longest argument hint and help line a plugin command may declare.
const MAX_COMMAND_ARGS: usize = 64;
const MAX_COMMAND_HELP: usize = 200;

/// What running a plugin command came to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CommandOutcome {
    /// Send this text into the room, as if typed (the send hooks still run on it).
    Send(String),
    /// Show this text to the user; nothing is sent.
    Notice(String),
    /// Nothing more to do.
    Done,
    /// The plugin refused (its reason), failed, or did not answer in time.
    Failed {
        /// Which plugin.
        plugin: String,
        /// Why, for the user.
        reason: String,
    },
}

/// Which program a plugin is listed for: each runs only its own side's hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `gc-server`: `on_client_connect`, `on_message_received`, `on_client_disconnect`.
    Server,
    /// `gc-client`: `on_message_display`, `on_message_send`, `on_command`.
    Client,
}

impl Side {
    /// The hooks this side runs.
    pub fn hooks(self) -> &'static [&'static str] {
        match self {
            Self::Server => &[
                "on_client_connect",
                "on_message_received",
                "on_client_disconnect",
            ],
            Self::Client => &["on_message_display", "on_message_send", "on_command"],
        }
    }

    fn name(self) -> &'static str {
        match self {
            Self::Server => "server",
            Self::Client => "client",
        }
    }
}

/// The result of the hook chain for a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Outcome {
    /// Go ahead with this text (rewritten by plugins, or as it was).
    Deliver(String),
    /// A plugin refused the message.
    Block {
        /// Which plugin.
        plugin: String,
        /// Its reason, for the sender.
        reason: String,
    },
}

/// The loaded plugins of one host (a server or a client).
#[derive(Debug, Default)]
pub struct Plugins {
    loaded: Vec<Entry>,
    limits: HookLimits,
}

/// A loaded plugin and the threads its hooks run on.
#[derive(Debug)]
struct Entry {
    plugin: Arc<Loaded>,
    /// `None` for a plugin without hooks: nothing to run.
    pool: Option<Pool>,
    /// Its commands that were accepted (a name another plugin added first is refused).
    commands: Vec<CommandInfo>,
}

/// One loaded plugin. The library is never unloaded (see `Drop`), so the descriptor and code it
/// points into stay valid for the life of the process. Shared with its worker threads: the last
/// one to let go calls `destroy`, so a hook still running (left behind by a stop) never sees its
/// state freed.
pub(crate) struct Loaded {
    pub(crate) info: PluginInfo,
    desc: &'static GcDescriptor,
    /// Its command table (`gc_plugin_static_commands`), if it exports one.
    commands: Option<&'static GcCommands>,
    state: *mut c_void,
    /// Backs the `gc_host` the plugin may keep; boxed so its address is stable.
    _host: Box<HostBlock>,
    disabled: Mutex<Option<String>>,
    /// When its hooks ran over the budget, within the last [`OVERRUN_WINDOW`].
    overruns: Mutex<VecDeque<Instant>>,
    /// `None` only for the descriptors of unit tests, which live in the test binary.
    _lib: Option<ManuallyDrop<Library>>,
}

// SAFETY: the plugin contract (gc_plugin.h) requires hooks to be callable from several threads at
// once with the same state; everything else in `Loaded` is owned data or behind a Mutex.
unsafe impl Send for Loaded {}
// SAFETY: as above.
unsafe impl Sync for Loaded {}

impl fmt::Debug for Loaded {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Loaded")
            .field("info", &self.info)
            .finish_non_exhaustive()
    }
}

/// What a plugin's `gc_host` points at.
struct HostBlock {
    host: GcHost,
    name: String,
    path: String,
}

impl Drop for Loaded {
    fn drop(&mut self) {
        if let Some(destroy) = self.desc.destroy {
            // SAFETY: `state` came from this plugin's init and no hook runs any more (this is the
            // last reference: every worker has let go); destroy is called once.
            unsafe { destroy(self.state) };
        }
        // The library stays mapped: unloading a library whose code registered thread-local
        // destructors (any Rust plugin that panicked, for one) can crash the process later.
    }
}

/// The hooks a host calls while it runs (init and destroy are not among them).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Hook {
    Connect,
    Received,
    Disconnect,
    Display,
    Send,
    Command,
}

impl Hook {
    fn name(self) -> &'static str {
        match self {
            Self::Connect => "on_client_connect",
            Self::Received => "on_message_received",
            Self::Disconnect => "on_client_disconnect",
            Self::Display => "on_message_display",
            Self::Send => "on_message_send",
            Self::Command => "on_command",
        }
    }
}

impl fmt::Display for Hook {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// One hook call with its arguments, owned: it runs on a worker thread that may outlive the
/// caller's wait.
#[derive(Debug)]
pub(crate) enum Call {
    Connect {
        user: String,
        address: String,
    },
    Disconnect {
        user: String,
    },
    Received {
        user: String,
        room: String,
        text: String,
    },
    Display {
        user: String,
        room: String,
        text: String,
    },
    Send {
        room: String,
        text: String,
    },
    Command {
        room: String,
        name: String,
        args: String,
    },
}

impl Call {
    pub(crate) fn hook(&self) -> Hook {
        match self {
            Self::Connect { .. } => Hook::Connect,
            Self::Disconnect { .. } => Hook::Disconnect,
            Self::Received { .. } => Hook::Received,
            Self::Display { .. } => Hook::Display,
            Self::Send { .. } => Hook::Send,
            Self::Command { .. } => Hook::Command,
        }
    }
}

extern "C" fn host_log(ctx: *mut c_void, lvl: u32, message: GcStr) {
    if ctx.is_null() {
        return;
    }
    // SAFETY: `ctx` is the HostBlock of a loaded plugin, alive until its destroy returns, which is
    // as long as the plugin may call log.
    let block = unsafe { &*ctx.cast::<HostBlock>() };
    // SAFETY: the plugin passes a string valid for the call.
    let text = unsafe { copy(message) };
    let text = String::from_utf8_lossy(&text);
    let plugin = block.name.as_str();
    match lvl {
        level::ERROR => tracing::error!(plugin, "{text}"),
        level::WARN => tracing::warn!(plugin, "{text}"),
        level::DEBUG => tracing::debug!(plugin, "{text}"),
        _ => tracing::info!(plugin, "{text}"),
    }
}

/// Copies a plugin string.
///
/// # Safety
/// `s` must point to `s.len` readable bytes.
unsafe fn copy(s: GcStr) -> Vec<u8> {
    if s.len == 0 || s.ptr.is_null() {
        return Vec::new();
    }
    // SAFETY: guaranteed by the caller.
    unsafe { std::slice::from_raw_parts(s.ptr.cast::<u8>(), s.len) }.to_vec()
}

/// Opens a library and checks it is a plugin of our ABI; returns it with its descriptor. This
/// runs the library's code (its initialisers, `gc_plugin_abi_version`, `gc_plugin_describe`).
#[allow(clippy::type_complexity)]
fn open(
    path: &Path,
) -> Result<
    (
        Library,
        &'static GcDescriptor,
        Option<&'static GcCommands>,
        PluginInfo,
    ),
    PluginError,
> {
    // SAFETY: loading runs the library's initialisers; a file in the mods directory is trusted
    // code by the operator's choice (documented in docs/plugins.md), and `files::candidates`
    // refused it if anyone else could have changed it.
    let lib = unsafe { Library::new(path) }.map_err(|e| PluginError::Load {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    // The ABI version first, before any other symbol is touched.
    // SAFETY: the symbol is declared in gc_plugin.h as `uint32_t (void)`.
    let version_fn = unsafe { lib.get::<unsafe extern "C" fn() -> u32>(ABI_VERSION_SYMBOL) }
        .map_err(|_| PluginError::NotAPlugin {
            path: path.to_owned(),
        })?;
    // SAFETY: calling the plugin's declared `uint32_t gc_plugin_abi_version(void)`.
    let found = unsafe { version_fn() };
    if found != ABI_VERSION {
        return Err(PluginError::AbiMismatch {
            path: path.to_owned(),
            found,
            expected: ABI_VERSION,
        });
    }
    let bad = |reason: &str| PluginError::BadDescriptor {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    // SAFETY: declared in gc_plugin.h as `const gc_plugin_descriptor *(void)`.
    let describe =
        unsafe { lib.get::<unsafe extern "C" fn() -> *const GcDescriptor>(DESCRIBE_SYMBOL) }
            .map_err(|_| bad("it exports no gc_plugin_describe"))?;
    // SAFETY: calling the plugin's declared describe function.
    let desc_ptr = unsafe { describe() };
    if desc_ptr.is_null() {
        return Err(bad("gc_plugin_describe returned NULL"));
    }
    // SAFETY: a non-null descriptor points into the library's static data, which stays mapped for
    // the life of the process because libraries are never unloaded (see `Loaded`).
    let desc: &'static GcDescriptor = unsafe { &*desc_ptr };
    if desc.abi_version != ABI_VERSION {
        return Err(PluginError::AbiMismatch {
            path: path.to_owned(),
            found: desc.abi_version,
            expected: ABI_VERSION,
        });
    }
    // SAFETY: name and version are static strings of the plugin (header contract).
    let (name, version) = unsafe { (copy(desc.name), copy(desc.version)) };
    // The command table is its own exported symbol, not a descriptor field: a library built
    // before it existed simply lacks the symbol, and its descriptor is never read past its end.
    // SAFETY: declared in gc_plugin.h as `const gc_plugin_commands gc_plugin_static_commands`;
    // the symbol's address is the table's.
    let table = unsafe { lib.get::<*const GcCommands>(COMMANDS_SYMBOL) }
        .ok()
        .map(|symbol| *symbol)
        .filter(|p| !p.is_null())
        // SAFETY: a non-null table is the plugin's static data, mapped as long as the
        // descriptor (libraries are never unloaded).
        .map(|p| unsafe { &*p });
    let (commands, on_command) = match table {
        Some(table) => (
            // SAFETY: the table is the plugin's static data, its list and strings too (header
            // contract); read_commands checks the count and pointer before following them.
            unsafe { read_commands(table) }.map_err(|r| bad(&r))?,
            table.on_command.is_some(),
        ),
        None => (Vec::new(), false),
    };
    let hooks = [
        ("on_client_connect", desc.on_client_connect.is_some()),
        ("on_message_received", desc.on_message_received.is_some()),
        ("on_client_disconnect", desc.on_client_disconnect.is_some()),
        ("on_message_display", desc.on_message_display.is_some()),
        ("on_message_send", desc.on_message_send.is_some()),
        ("on_command", on_command),
    ];
    let info = plugin_info(path, name, version, hooks, commands)?;
    Ok((lib, desc, table, info))
}

/// A command as declared: name, argument hint and help, as bytes.
pub(crate) type RawCommand = (Vec<u8>, Vec<u8>, Vec<u8>);

/// Copies the commands out of a plugin's table, checking its version, size and pointers.
///
/// # Safety
/// `table` must be a plugin's `gc_plugin_commands`, whose `commands` (when `count` is within
/// bounds and it is not NULL) points to `count` entries with valid strings.
unsafe fn read_commands(table: &GcCommands) -> Result<Vec<RawCommand>, String> {
    if table.version != COMMANDS_VERSION {
        return Err(format!(
            "its gc_plugin_static_commands is version {}, but this program reads version \
             {COMMANDS_VERSION}",
            table.version
        ));
    }
    check_command_table(
        table.count,
        table.commands.is_null(),
        table.on_command.is_some(),
    )?;
    if table.count == 0 {
        return Ok(Vec::new());
    }
    let count = usize::try_from(table.count).map_err(|_| "too many commands".to_owned())?;
    // SAFETY: guaranteed by the caller; `count` is at most MAX_COMMANDS and the pointer is not
    // NULL (checked above).
    let entries = unsafe { std::slice::from_raw_parts(table.commands, count) };
    Ok(entries
        .iter()
        // SAFETY: the entries' strings are the plugin's static data (header contract).
        .map(|c| unsafe { (copy(c.name), copy(c.args), copy(c.help)) })
        .collect())
}

/// The shape of a command table, as every reader checks it.
pub(crate) fn check_command_table(
    count: u32,
    commands_null: bool,
    on_command: bool,
) -> Result<(), String> {
    if count > MAX_COMMANDS {
        return Err(format!(
            "it declares {count} commands; at most {MAX_COMMANDS} are allowed"
        ));
    }
    if count > 0 && commands_null {
        return Err("its command table has commands but a NULL list".to_owned());
    }
    if count > 0 && !on_command {
        return Err("it declares commands but no on_command to run them".to_owned());
    }
    Ok(())
}

/// A plugin's description from its descriptor's fields (read by loading it, or from its file),
/// checked as every host checks it.
pub(crate) fn plugin_info(
    path: &Path,
    name: Vec<u8>,
    version: Vec<u8>,
    hooks: [(&'static str, bool); 6],
    commands: Vec<RawCommand>,
) -> Result<PluginInfo, PluginError> {
    let bad = |reason: &str| PluginError::BadDescriptor {
        path: path.to_owned(),
        reason: reason.to_owned(),
    };
    let name = String::from_utf8(name).map_err(|_| bad("its name is not UTF-8"))?;
    let version = String::from_utf8(version).map_err(|_| bad("its version is not UTF-8"))?;
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(bad("its name must be 1 to 64 printable characters"));
    }
    let mut infos: Vec<CommandInfo> = Vec::with_capacity(commands.len());
    for (cname, args, help) in commands {
        let command = command_info(&name, cname, args, help).map_err(|r| bad(&r))?;
        if infos.iter().any(|c| c.name == command.name) {
            return Err(bad(&format!(
                "it declares the command /{} twice",
                command.name
            )));
        }
        infos.push(command);
    }
    Ok(PluginInfo {
        name,
        version,
        path: path.to_owned(),
        hooks: hooks
            .into_iter()
            .filter_map(|(n, present)| present.then_some(n))
            .collect(),
        commands: infos,
    })
}

/// One declared command, checked: a name of `a-z 0-9 - _` (1 to 32, starting with a letter: it
/// is typed, and completed, after a slash), a hint and a help line of printable text.
fn command_info(
    plugin: &str,
    name: Vec<u8>,
    args: Vec<u8>,
    help: Vec<u8>,
) -> Result<CommandInfo, String> {
    let name = String::from_utf8(name).map_err(|_| "a command name is not UTF-8".to_owned())?;
    let valid = (1..=32).contains(&name.len())
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-' || c == '_');
    if !valid {
        return Err(format!(
            "the command name {:?} is not 1 to 32 of a-z 0-9 - _ starting with a letter",
            name.escape_debug().to_string()
        ));
    }
    let text = |bytes: Vec<u8>, what: &str, max: usize| -> Result<String, String> {
        let text =
            String::from_utf8(bytes).map_err(|_| format!("the {what} of /{name} is not UTF-8"))?;
        if text.len() > max || text.chars().any(char::is_control) {
            return Err(format!(
                "the {what} of /{name} must be at most {max} bytes of printable text on one line"
            ));
        }
        Ok(text)
    };
    Ok(CommandInfo {
        args: text(args, "argument hint", MAX_COMMAND_ARGS)?,
        help: text(help, "help", MAX_COMMAND_HELP)?,
        plugin: plugin.to_owned(),
        name,
    })
}

/// One file of a mods directory and what became of it.
#[derive(Debug)]
pub struct Candidate {
    /// The file.
    pub path: PathBuf,
    /// The plugin, or why it was skipped.
    pub result: Result<PluginInfo, PluginError>,
}

/// The second and later plugins of one name are skipped, as a start skips them.
fn mark_duplicates(candidates: Vec<Candidate>) -> Vec<Candidate> {
    let mut first: Vec<(String, PathBuf)> = Vec::new();
    candidates
        .into_iter()
        .map(|c| match c.result {
            Ok(info) => {
                if let Some((_, other)) = first.iter().find(|(n, _)| *n == info.name) {
                    let result = Err(PluginError::Duplicate {
                        path: c.path.clone(),
                        name: info.name,
                        other: other.clone(),
                    });
                    return Candidate { result, ..c };
                }
                first.push((info.name.clone(), c.path.clone()));
                Candidate {
                    result: Ok(info),
                    ..c
                }
            }
            Err(e) => Candidate {
                result: Err(e),
                ..c
            },
        })
        .collect()
}

impl Plugins {
    /// No plugins.
    pub fn none() -> Self {
        Self::default()
    }

    /// [`Plugins::load_dir_with`] with the default [`HookLimits`].
    pub fn load_dir(dir: &Path) -> (Self, Vec<Candidate>) {
        Self::load_dir_with(dir, HookLimits::default())
    }

    /// Loads every plugin in `dir` (absent: none), in file-name order, and starts each, its
    /// hooks held to `limits`. A directory or file someone else could have changed is refused;
    /// files that are not plugins, have another ABI, fail to load or refuse to start are skipped
    /// with a warning; the report lists every candidate file.
    pub fn load_dir_with(dir: &Path, limits: HookLimits) -> (Self, Vec<Candidate>) {
        let mut plugins = Self {
            loaded: Vec::new(),
            limits,
        };
        let files = match crate::files::candidates(dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!("{e}; no plugins loaded");
                return (plugins, Vec::new());
            }
        };
        let mut report = Vec::new();
        for (path, allowed) in files {
            let result = allowed.and_then(|()| plugins.load_one(&path));
            match &result {
                Ok(info) => tracing::info!("loaded plugin {info}"),
                Err(e) => tracing::warn!("skipped {e}"),
            }
            report.push(Candidate { path, result });
        }
        (plugins, report)
    }

    /// What `load_dir` would load, read from the files without running any of their code (the
    /// ELF symbol table and the exported `gc_plugin_static_descriptor`): for `plugins list`. A
    /// library without that descriptor is reported as [`PluginError::NotInspectable`].
    pub fn inspect_dir(dir: &Path) -> Result<Vec<Candidate>, PluginError> {
        let candidates = crate::files::candidates(dir)?
            .into_iter()
            .map(|(path, allowed)| {
                let result = allowed.and_then(|()| crate::inspect::inspect(&path));
                Candidate { path, result }
            })
            .collect();
        Ok(mark_duplicates(candidates))
    }

    /// As [`Plugins::inspect_dir`], but by loading each library the checks allow (running its
    /// initialisers, `gc_plugin_abi_version` and `gc_plugin_describe`, not `init`): for
    /// `plugins list --load`, which also reads libraries built before the static descriptor.
    pub fn inspect_dir_loading(dir: &Path) -> Result<Vec<Candidate>, PluginError> {
        let candidates = crate::files::candidates(dir)?
            .into_iter()
            .map(|(path, allowed)| {
                let result = allowed.and_then(|()| {
                    open(&path).map(|(lib, _, _, info)| {
                        // Never unloaded, as at a start (see `Loaded`).
                        let _ = ManuallyDrop::new(lib);
                        info
                    })
                });
                Candidate { path, result }
            })
            .collect();
        Ok(mark_duplicates(candidates))
    }

    /// `inspect_dir` as text for people, for the program on `side`: one `load  …` or `skip  …`
    /// line per candidate file (a plugin with none of `side`'s hooks loads but does nothing
    /// there, which the line says; `load? …` for a library that cannot be read without running
    /// it), or one line saying the directory holds none. No plugin code runs.
    pub fn listing(dir: &Path, side: Side) -> Result<Vec<String>, PluginError> {
        Ok(Self::lines(dir, Self::inspect_dir(dir)?, side))
    }

    /// `listing` by loading the libraries (`--load`); its first line says that their code ran.
    pub fn listing_loading(dir: &Path, side: Side) -> Result<Vec<String>, PluginError> {
        let candidates = Self::inspect_dir_loading(dir)?;
        let mut lines = vec![format!(
            "(--load: the libraries below were loaded to read them, so their initialisers ran \
             in this process; their init was not called)"
        )];
        lines.extend(Self::lines(dir, candidates, side));
        Ok(lines)
    }

    fn lines(dir: &Path, candidates: Vec<Candidate>, side: Side) -> Vec<String> {
        if candidates.is_empty() {
            return vec![format!(
                "no plugins in {} (put .{} files there)",
                dir.display(),
                std::env::consts::DLL_EXTENSION
            )];
        }
        // As a start does: a command another plugin added first is refused.
        let mut added: Vec<(String, String)> = Vec::new();
        candidates
            .into_iter()
            .map(|c| match c.result {
                Ok(info) if !info.hooks.iter().any(|h| side.hooks().contains(h)) => format!(
                    "load  {info} — no {side} hooks: it does nothing in the {side}",
                    side = side.name()
                ),
                Ok(info) => {
                    let mut line = format!("load  {info}");
                    for command in &info.commands {
                        match added.iter().find(|(n, _)| *n == command.name) {
                            Some((_, first)) => line.push_str(&format!(
                                " — /{} is refused: plugin {first} adds it first",
                                command.name
                            )),
                            None => added.push((command.name.clone(), info.name.clone())),
                        }
                    }
                    line
                }
                Err(e @ PluginError::NotInspectable { .. }) => format!("load? {e}"),
                Err(e) => format!("skip  {e}"),
            })
            .collect()
    }

    fn load_one(&mut self, path: &Path) -> Result<PluginInfo, PluginError> {
        let (lib, desc, commands, info) = open(path)?;
        let lib = ManuallyDrop::new(lib);
        if let Some(other) = self.loaded.iter().find(|e| e.plugin.info.name == info.name) {
            return Err(PluginError::Duplicate {
                path: path.to_owned(),
                name: info.name,
                other: other.plugin.info.path.clone(),
            });
        }
        let mut block = Box::new(HostBlock {
            host: GcHost {
                abi_version: ABI_VERSION,
                plugin_path: GcStr::EMPTY,
                ctx: std::ptr::null_mut(),
                log: host_log,
            },
            name: info.name.clone(),
            path: path.to_string_lossy().into_owned(),
        });
        // Self-references inside the box: its address does not move when the box does.
        block.host.plugin_path = GcStr::borrowed(&block.path);
        block.host.ctx = std::ptr::from_mut::<HostBlock>(&mut block).cast();
        let mut state: *mut c_void = std::ptr::null_mut();
        if let Some(init) = desc.init {
            // SAFETY: `host` and `state` are valid for the call; the HostBlock lives as long as
            // the plugin (it is dropped after destroy).
            let verdict = unsafe { init(&block.host, &mut state) };
            // SAFETY: verdict text comes from this plugin, released by its free_text.
            let (kind, text) = unsafe { take(desc, verdict) };
            if kind != kind::PASS {
                let reason = text.unwrap_or_else(|| "init returned an unknown verdict".into());
                return Err(PluginError::Init {
                    path: path.to_owned(),
                    name: info.name,
                    reason,
                });
            }
        }
        self.start(path, info, desc, commands, state, block, Some(lib))
    }

    /// Adds an initialised plugin and starts the threads its hooks run on. Its commands that
    /// another plugin added first are refused, with a warning.
    #[allow(clippy::too_many_arguments)]
    fn start(
        &mut self,
        path: &Path,
        info: PluginInfo,
        desc: &'static GcDescriptor,
        commands: Option<&'static GcCommands>,
        state: *mut c_void,
        block: Box<HostBlock>,
        lib: Option<ManuallyDrop<Library>>,
    ) -> Result<PluginInfo, PluginError> {
        let plugin = Arc::new(Loaded {
            info: info.clone(),
            desc,
            commands,
            state,
            _host: block,
            disabled: Mutex::new(None),
            overruns: Mutex::new(VecDeque::new()),
            _lib: lib,
        });
        let hooks = [
            Hook::Connect,
            Hook::Received,
            Hook::Disconnect,
            Hook::Display,
            Hook::Send,
            Hook::Command,
        ];
        let pool = if hooks.iter().any(|&h| plugin.has(h)) {
            // On an error, dropping `plugin` (the only reference) destroys it.
            let pool = Pool::start(&plugin, crate::pool::pool_size(), self.limits.budget).map_err(
                |source| PluginError::Thread {
                    path: path.to_owned(),
                    name: info.name.clone(),
                    source,
                },
            )?;
            Some(pool)
        } else {
            None
        };
        let mut accepted = Vec::new();
        for command in &info.commands {
            match self.command(&command.name) {
                Some((_, first)) => tracing::warn!(
                    plugin = %info.name,
                    "plugin {}: its command /{} is refused: plugin {} adds it first",
                    info.name,
                    command.name,
                    first.plugin
                ),
                None => accepted.push(command.clone()),
            }
        }
        self.loaded.push(Entry {
            plugin,
            pool,
            commands: accepted,
        });
        Ok(info)
    }

    /// The plugin and entry of the accepted command `name` (lower case, no slash).
    fn command(&self, name: &str) -> Option<(&Entry, &CommandInfo)> {
        self.loaded
            .iter()
            .find_map(|e| e.commands.iter().find(|c| c.name == name).map(|c| (e, c)))
    }

    /// The commands the plugins add (client side), in load order; a name a plugin added first
    /// is not listed again for a later one. Those of plugins disabled since are left out.
    pub fn commands(&self) -> Vec<CommandInfo> {
        self.loaded
            .iter()
            .filter(|e| !e.plugin.is_disabled())
            .flat_map(|e| e.commands.iter().cloned())
            .collect()
    }

    /// Client: runs the plugin command `/name args` typed in `room` (`name` without its slash,
    /// any case). `None`: no plugin adds it. A plugin that refuses, fails, breaks the contract
    /// or does not answer within the limit comes back as [`CommandOutcome::Failed`] (all but a
    /// refusal also disable it).
    pub fn run_command(&self, room: &str, name: &str, args: &str) -> Option<CommandOutcome> {
        let name = name.to_ascii_lowercase();
        let (entry, command) = self.command(&name)?;
        let p = &entry.plugin;
        let failed = |reason: String| CommandOutcome::Failed {
            plugin: p.info.name.clone(),
            reason,
        };
        if let Some(why) = p.disabled.lock().ok().and_then(|d| d.clone()) {
            return Some(failed(format!(
                "plugin {} is disabled ({why}); /{} is not available until gc-client restarts",
                p.info.name, command.name
            )));
        }
        let call = Call::Command {
            room: room.to_owned(),
            name: command.name.clone(),
            args: args.to_owned(),
        };
        let Some(verdict) = self.ask(entry, call) else {
            return Some(failed(format!(
                "plugin {} did not answer /{} in time and is now disabled",
                p.info.name, command.name
            )));
        };
        let hook = Hook::Command;
        Some(match verdict {
            (kind::PASS, _) => CommandOutcome::Done,
            (kind::REWRITE, Some(text)) if !text.is_empty() => CommandOutcome::Send(text),
            (kind::NOTICE, Some(text)) => CommandOutcome::Notice(text),
            (kind::NOTICE, None) => CommandOutcome::Done,
            (kind::BLOCK, reason) => failed(reason.unwrap_or_else(|| "refused".to_owned())),
            (kind, text) => {
                let why = match (kind, text) {
                    (kind::REWRITE, _) => "asked to send nothing".to_owned(),
                    (kind::FAIL, reason) => reason.unwrap_or_else(|| "failed".to_owned()),
                    (u32::MAX, Some(why)) => why,
                    (kind, _) => format!("returned verdict {kind}, not allowed here"),
                };
                p.disable(hook, why.clone());
                failed(format!(
                    "plugin {} failed and is now disabled: {why}",
                    p.info.name
                ))
            }
        })
    }

    /// The plugins loaded (including ones disabled since).
    pub fn infos(&self) -> Vec<PluginInfo> {
        self.loaded.iter().map(|e| e.plugin.info.clone()).collect()
    }

    /// Plugins disabled since loading, with the reason.
    pub fn disabled(&self) -> Vec<(String, String)> {
        self.loaded
            .iter()
            .filter_map(|e| {
                let reason = e.plugin.disabled.lock().ok()?.clone()?;
                Some((e.plugin.info.name.clone(), reason))
            })
            .collect()
    }

    /// Whether no plugin is loaded.
    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty()
    }

    /// The limits hooks are held to.
    pub fn limits(&self) -> HookLimits {
        self.limits
    }

    /// Server: a client logged in.
    pub fn client_connected(&self, user: &str, address: &str) {
        self.notify(Hook::Connect, || Call::Connect {
            user: user.to_owned(),
            address: address.to_owned(),
        });
    }

    /// Server: a client's session ended.
    pub fn client_disconnected(&self, user: &str) {
        self.notify(Hook::Disconnect, || Call::Disconnect {
            user: user.to_owned(),
        });
    }

    /// Server: runs `on_message_received` through the chain (a message from `user` to `room`,
    /// its wire name: `#general`, `#dev`, `@alice+bob`).
    pub fn message_received(&self, user: &str, room: &str, text: &str) -> Outcome {
        self.chain(Hook::Received, text, true, |text| Call::Received {
            user: user.to_owned(),
            room: room.to_owned(),
            text: text.to_owned(),
        })
    }

    /// Client: runs `on_message_display` (a message of `user` in `room`); the text to show.
    pub fn message_display(&self, user: &str, room: &str, text: &str) -> String {
        let shown = self.chain(Hook::Display, text, false, |text| Call::Display {
            user: user.to_owned(),
            room: room.to_owned(),
            text: text.to_owned(),
        });
        match shown {
            Outcome::Deliver(text) => text,
            Outcome::Block { .. } => text.to_owned(),
        }
    }

    /// Client: runs `on_message_send` through the chain (a message into `room`).
    pub fn message_send(&self, room: &str, text: &str) -> Outcome {
        self.chain(Hook::Send, text, true, |text| Call::Send {
            room: room.to_owned(),
            text: text.to_owned(),
        })
    }

    /// The plugins that are not disabled and implement `hook`.
    fn active(&self, hook: Hook) -> impl Iterator<Item = &Entry> {
        self.loaded
            .iter()
            .filter(move |e| e.plugin.has(hook) && !e.plugin.is_disabled())
    }

    /// Runs `call` on `entry`'s workers. `None`: no answer within the limit (or no workers left),
    /// and the plugin is disabled.
    fn ask(&self, entry: &Entry, call: Call) -> Option<(u32, Option<String>)> {
        let hook = call.hook();
        // Every plugin with a hook has workers; one without has nothing to say.
        let Some(pool) = entry.pool.as_ref() else {
            return Some((kind::PASS, None));
        };
        match pool.ask(call, self.limits.limit) {
            Answer::Verdict(kind, text) => Some((kind, text)),
            Answer::TimedOut => {
                entry.plugin.disable(
                    hook,
                    format!(
                        "did not return within {} ms; the call was given up, and the thread \
                         running it is left to it",
                        self.limits.limit.as_millis()
                    ),
                );
                None
            }
            Answer::Gone => {
                entry
                    .plugin
                    .disable(hook, "its worker threads are gone".to_owned());
                None
            }
        }
    }

    /// Runs a hook that may only pass (a notification) on every active plugin in order.
    fn notify(&self, hook: Hook, call: impl Fn() -> Call) {
        for e in self.active(hook) {
            // No answer in time: nothing was to be decided, so carry on (`ask` disabled it).
            if let Some(verdict) = self.ask(e, call()) {
                e.plugin.expect_pass(hook, verdict);
            }
        }
    }

    /// Runs a text hook over every active plugin in order: a rewrite feeds the next one, a block
    /// stops the chain (where `can_block`).
    fn chain(
        &self,
        hook: Hook,
        text: &str,
        can_block: bool,
        call: impl Fn(&str) -> Call,
    ) -> Outcome {
        let mut current = text.to_owned();
        for e in self.active(hook) {
            let p = &e.plugin;
            let Some((kind, text)) = self.ask(e, call(&current)) else {
                // No verdict in time. A filter that can block has not approved the message:
                // refuse it (the sender can send it again, and it goes on without the now
                // disabled plugin), since a stored and delivered message cannot be recalled. A
                // display rewrite just does not happen.
                if can_block {
                    return Outcome::Block {
                        plugin: p.info.name.clone(),
                        reason: format!(
                            "plugin {} did not check the message in time and is now disabled; \
                             the message was not sent: send it again",
                            p.info.name
                        ),
                    };
                }
                continue;
            };
            match (kind, text) {
                (kind::PASS, None) => {}
                (kind::REWRITE, Some(new)) if !new.is_empty() => current = new,
                (kind::REWRITE, _) => p.disable(hook, "rewrote the message to nothing".into()),
                (kind::BLOCK, reason) if can_block => {
                    return Outcome::Block {
                        plugin: p.info.name.clone(),
                        reason: reason.unwrap_or_else(|| "blocked by a plugin".to_owned()),
                    };
                }
                (kind::FAIL, reason) => {
                    p.disable(hook, reason.unwrap_or_else(|| "failed".to_owned()));
                }
                (kind, Some(text)) if kind == u32::MAX => p.disable(hook, text),
                (kind, _) => p.disable(hook, format!("returned verdict {kind}, not allowed here")),
            }
        }
        Outcome::Deliver(current)
    }
}

impl Drop for Plugins {
    /// Stops the workers, waiting at most the hook limit for calls still running; a worker inside
    /// a hook that has not returned by then is left behind (no thread can be stopped from
    /// outside), and its plugin's `destroy` waits for it (it may never come).
    fn drop(&mut self) {
        for e in &mut self.loaded {
            if let Some(pool) = &mut e.pool {
                pool.close();
            }
        }
        let deadline = Instant::now() + self.limits.limit;
        for e in &mut self.loaded {
            let Some(pool) = &mut e.pool else {
                continue;
            };
            let left = pool.stop_until(deadline);
            if left > 0 {
                let name = &e.plugin.info.name;
                tracing::warn!(
                    plugin = %name,
                    "plugin {name}: {left} hook call(s) still running at the stop are left \
                     behind on their threads; its destroy waits until they return"
                );
            }
        }
        // Dropping the entries now destroys each plugin no hook holds any more (`Loaded::drop`).
    }
}

impl Loaded {
    /// Whether the plugin implements `hook`.
    fn has(&self, hook: Hook) -> bool {
        let d = self.desc;
        match hook {
            Hook::Connect => d.on_client_connect.is_some(),
            Hook::Received => d.on_message_received.is_some(),
            Hook::Disconnect => d.on_client_disconnect.is_some(),
            Hook::Display => d.on_message_display.is_some(),
            Hook::Send => d.on_message_send.is_some(),
            Hook::Command => self.commands.is_some_and(|c| c.on_command.is_some()),
        }
    }

    fn is_disabled(&self) -> bool {
        self.disabled.lock().map(|d| d.is_some()).unwrap_or(true)
    }

    /// Calls the hook of `call` (on a worker thread) and takes its verdict's text out of plugin
    /// memory. A hook the plugin lacks passes.
    pub(crate) fn run(&self, call: &Call) -> (u32, Option<String>) {
        let s = GcStr::borrowed;
        let d = self.desc;
        // SAFETY: `state` came from this plugin's init, and destroy has not run (it runs only
        // once every worker has let go of the plugin); the strings are owned by `call`, alive for
        // the call; each pointer is the hook the plugin declared with this signature.
        let verdict = unsafe {
            match call {
                Call::Connect { user, address } => d
                    .on_client_connect
                    .map(|hook| hook(self.state, s(user), s(address))),
                Call::Disconnect { user } => {
                    d.on_client_disconnect.map(|hook| hook(self.state, s(user)))
                }
                Call::Received { user, room, text } => d
                    .on_message_received
                    .map(|hook| hook(self.state, s(user), s(room), s(text))),
                Call::Display { user, room, text } => d
                    .on_message_display
                    .map(|hook| hook(self.state, s(user), s(room), s(text))),
                Call::Send { room, text } => d
                    .on_message_send
                    .map(|hook| hook(self.state, s(room), s(text))),
                Call::Command { room, name, args } => self
                    .commands
                    .and_then(|c| c.on_command)
                    .map(|hook| hook(self.state, s(room), s(name), s(args))),
            }
        };
        match verdict {
            // SAFETY: the verdict comes from this plugin's hook.
            Some(v) => unsafe { take(d, v) },
            None => (kind::PASS, None),
        }
    }

    /// A hook ran for `took`, over `budget`: logged; the third time within a minute disables
    /// the plugin.
    pub(crate) fn overran(&self, hook: Hook, took: Duration, budget: Duration) {
        if self.is_disabled() {
            return;
        }
        let now = Instant::now();
        let recent = {
            let mut overruns = self.overruns.lock().unwrap_or_else(PoisonError::into_inner);
            while overruns
                .front()
                .is_some_and(|t| now.duration_since(*t) >= OVERRUN_WINDOW)
            {
                overruns.pop_front();
            }
            overruns.push_back(now);
            overruns.len()
        };
        let name = &self.info.name;
        tracing::warn!(
            plugin = %name,
            "plugin {name}: {hook} took {} ms, over the {} ms budget for a hook ({recent} of \
             {OVERRUNS_TO_DISABLE} within a minute disable it)",
            took.as_millis(),
            budget.as_millis()
        );
        if recent >= OVERRUNS_TO_DISABLE {
            self.disable(
                hook,
                format!(
                    "ran over the {} ms budget for a hook {recent} times within a minute",
                    budget.as_millis()
                ),
            );
        }
    }

    fn expect_pass(&self, hook: Hook, verdict: (u32, Option<String>)) {
        match verdict {
            (kind::PASS, _) => {}
            (kind::FAIL, reason) => {
                self.disable(hook, reason.unwrap_or_else(|| "failed".to_owned()));
            }
            (u32::MAX, Some(why)) => self.disable(hook, why),
            (kind, _) => self.disable(hook, format!("returned verdict {kind}, not allowed here")),
        }
    }

    fn disable(&self, hook: Hook, reason: String) {
        if let Ok(mut d) = self.disabled.lock()
            && d.is_none()
        {
            tracing::warn!(
                plugin = %self.info.name,
                path = %self.info.path.display(),
                "plugin disabled: {hook}: {reason}"
            );
            *d = Some(format!("{hook}: {reason}"));
        }
    }
}

/// Takes a verdict's text out of plugin memory (releasing it with the plugin's free_text).
/// Contract breaches (text that is not UTF-8, text without a free_text) come back as kind
/// `u32::MAX` with an explanation, so the caller disables the plugin.
///
/// # Safety
/// `verdict` must come from a hook of the plugin `desc` describes.
unsafe fn take(desc: &GcDescriptor, verdict: GcVerdict) -> (u32, Option<String>) {
    if verdict.text.len == 0 {
        return (verdict.kind, None);
    }
    if verdict.text.ptr.is_null() {
        return (u32::MAX, Some("returned text with a NULL pointer".into()));
    }
    // SAFETY: the plugin's text is readable for its length until freed (header contract).
    let bytes = unsafe { copy(verdict.text) };
    match desc.free_text {
        // SAFETY: releasing the plugin's own allocation once, with its own function.
        Some(free) => unsafe { free(verdict.text) },
        None => return (u32::MAX, Some("returned text but has no free_text".into())),
    }
    match String::from_utf8(bytes) {
        Ok(text) => (verdict.kind, Some(text)),
        Err(_) => (
            u32::MAX,
            Some("returned text that is not valid UTF-8".into()),
        ),
    }
}

#[cfg(test)]
mod tests {
    //! Hook time limits with descriptors of this test binary (no library to load): a hook that
    //! hangs until the test lets it go, one that is slow, one that is quick.

    use std::ffi::c_char;
    use std::sync::Condvar;

    use crate::abi::{GcCommands, MAX_COMMANDS};
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;

    /// What the test hooks share with a test: a gate a hanging hook waits at, and what happened.
    #[derive(Default)]
    struct State {
        open: Mutex<bool>,
        opened: Condvar,
        destroyed: Mutex<bool>,
        destroyed_cv: Condvar,
        calls: AtomicUsize,
    }

    impl State {
        fn let_go(&self) {
            *self.open.lock().expect("gate") = true;
            self.opened.notify_all();
        }

        fn wait_destroyed(&self, within: Duration) -> bool {
            let d = self.destroyed.lock().expect("destroyed");
            *self
                .destroyed_cv
                .wait_timeout_while(d, within, |d| !*d)
                .expect("destroyed")
                .0
        }
    }

    const SLOW: Duration = Duration::from_millis(40);

    /// Hangs (until let go) on "hang", takes [`SLOW`] on "slow", passes at once otherwise.
    ///
    /// # Safety
    /// `state` is a `State` that outlives the plugin; `text` is valid for the call.
    unsafe fn behave(state: *mut c_void, text: GcStr) -> GcVerdict {
        // SAFETY: see the function's contract.
        let (state, text) = unsafe { (&*state.cast::<State>(), copy(text)) };
        state.calls.fetch_add(1, Ordering::SeqCst);
        if text.windows(4).any(|w| w == b"hang") {
            let open = state.open.lock().expect("gate");
            drop(state.opened.wait_while(open, |o| !*o).expect("gate"));
        } else if text.windows(4).any(|w| w == b"slow") {
            std::thread::sleep(SLOW);
        }
        GcVerdict {
            kind: kind::PASS,
            text: GcStr::EMPTY,
        }
    }

    unsafe extern "C" fn connect(state: *mut c_void, user: GcStr, _address: GcStr) -> GcVerdict {
        // SAFETY: the host passes the state and a string valid for the call.
        unsafe { behave(state, user) }
    }
    unsafe extern "C" fn received(
        state: *mut c_void,
        _user: GcStr,
        _room: GcStr,
        text: GcStr,
    ) -> GcVerdict {
        // SAFETY: as above.
        unsafe { behave(state, text) }
    }
    unsafe extern "C" fn display(
        state: *mut c_void,
        _user: GcStr,
        _room: GcStr,
        text: GcStr,
    ) -> GcVerdict {
        // SAFETY: as above.
        unsafe { behave(state, text) }
    }
    unsafe extern "C" fn send(state: *mut c_void, _room: GcStr, text: GcStr) -> GcVerdict {
        // SAFETY: as above.
        unsafe { behave(state, text) }
    }
    unsafe extern "C" fn destroy(state: *mut c_void) {
        // SAFETY: the state outlives the plugin.
        let state = unsafe { &*state.cast::<State>() };
        *state.destroyed.lock().expect("destroyed") = true;
        state.destroyed_cv.notify_all();
    }

    static DESCRIPTOR: GcDescriptor = GcDescriptor {
        abi_version: ABI_VERSION,
        name: GcStr::EMPTY,
        version: GcStr::EMPTY,
        init: None,
        destroy: Some(destroy),
        on_client_connect: Some(connect),
        on_message_received: Some(received),
        on_client_disconnect: None,
        on_message_display: Some(display),
        on_message_send: Some(send),
        free_text: None,
    };

    /// One test plugin named `timed`, with its own state (leaked: a hung hook may outlive the
    /// test's plugins).
    fn plugins(limits: HookLimits) -> (Plugins, &'static State) {
        let mut plugins = Plugins {
            loaded: Vec::new(),
            limits,
        };
        let state = add(&mut plugins, "timed", &DESCRIPTOR, None);
        (plugins, state)
    }

    /// Adds a test plugin named `name` with its own (leaked) state.
    fn add(
        plugins: &mut Plugins,
        name: &str,
        desc: &'static GcDescriptor,
        commands: Option<&'static GcCommands>,
    ) -> &'static State {
        let state: &'static State = Box::leak(Box::default());
        let path = Path::new("timed.so");
        let declared = match commands {
            // SAFETY: the tables of these tests are static data of this binary.
            Some(table) => unsafe { read_commands(table) }.expect("a valid table"),
            None => Vec::new(),
        };
        let info = plugin_info(
            path,
            name.as_bytes().to_vec(),
            b"1".to_vec(),
            only_commands(commands.is_some()),
            declared,
        )
        .expect("valid");
        let block = Box::new(HostBlock {
            host: GcHost {
                abi_version: ABI_VERSION,
                plugin_path: GcStr::EMPTY,
                ctx: std::ptr::null_mut(),
                log: host_log,
            },
            name: info.name.clone(),
            path: String::new(),
        });
        let raw = std::ptr::from_ref(state).cast_mut().cast();
        plugins
            .start(path, info, desc, commands, raw, block, None)
            .expect("start");
        state
    }

    /// The hook list of a plugin that has (or not) `on_command` and no other hook.
    fn only_commands(present: bool) -> [(&'static str, bool); 6] {
        [
            ("on_client_connect", false),
            ("on_message_received", false),
            ("on_client_disconnect", false),
            ("on_message_display", false),
            ("on_message_send", false),
            ("on_command", present),
        ]
    }

    /// Text a test hook hands back: boxed, released by [`free`].
    fn give(kind: u32, text: &str) -> GcVerdict {
        let boxed: Box<[u8]> = text.as_bytes().into();
        let len = boxed.len();
        GcVerdict {
            kind,
            text: GcStr {
                ptr: Box::into_raw(boxed).cast::<c_char>().cast_const(),
                len,
            },
        }
    }

    unsafe extern "C" fn free(text: GcStr) {
        // SAFETY: made by `give` from a boxed slice of exactly this pointer and length.
        drop(unsafe {
            Box::from_raw(std::ptr::slice_from_raw_parts_mut(
                text.ptr.cast_mut().cast::<u8>(),
                text.len,
            ))
        });
    }

    /// `/NAME ARGS`: hangs on `hang`, shows a notice naming the room on `notice`, refuses on
    /// `refuse`, fails on `fail`, asks to send nothing on `nothing`, does nothing on `done`,
    /// else sends `NAME: ARGS` in capitals.
    unsafe extern "C" fn command(
        state: *mut c_void,
        room: GcStr,
        name: GcStr,
        args: GcStr,
    ) -> GcVerdict {
        // SAFETY: the host passes strings valid for the call.
        let (room, name, text) = unsafe { (copy(room), copy(name), copy(args)) };
        let (room, name, text) = (
            String::from_utf8_lossy(&room),
            String::from_utf8_lossy(&name),
            String::from_utf8_lossy(&text),
        );
        match &*text {
            // SAFETY: as for the other hooks.
            "hang" => unsafe { behave(state, args) },
            "notice" => give(kind::NOTICE, &format!("you are in {room}")),
            "refuse" => give(kind::BLOCK, &format!("usage: /{name} TEXT")),
            "fail" => give(kind::FAIL, "broken"),
            "nothing" => give(kind::REWRITE, ""),
            "done" => give(kind::PASS, ""),
            _ => give(kind::REWRITE, &format!("{name}: {text}").to_uppercase()),
        }
    }

    static WITH_FREE: GcDescriptor = GcDescriptor {
        abi_version: ABI_VERSION,
        name: GcStr::EMPTY,
        version: GcStr::EMPTY,
        init: None,
        destroy: Some(destroy),
        on_client_connect: None,
        on_message_received: None,
        on_client_disconnect: None,
        on_message_display: None,
        on_message_send: None,
        free_text: Some(free),
    };

    const fn text(s: &'static str) -> GcStr {
        GcStr {
            ptr: s.as_ptr().cast(),
            len: s.len(),
        }
    }

    const LIST: &[crate::abi::GcCommand] = &[
        crate::abi::GcCommand {
            name: text("yell"),
            args: text("TEXT"),
            help: text("say TEXT loudly"),
        },
        crate::abi::GcCommand {
            name: text("whisper"),
            args: GcStr::EMPTY,
            help: text("say it quietly"),
        },
    ];

    static COMMANDS: GcCommands = GcCommands {
        version: COMMANDS_VERSION,
        count: 2,
        commands: LIST.as_ptr(),
        on_command: Some(command),
    };

    #[test]
    fn plugin_commands_are_listed_run_and_answer_in_every_way() {
        let mut plugins = Plugins {
            loaded: Vec::new(),
            limits: limits(1000, 300),
        };
        let state = add(&mut plugins, "loud", &WITH_FREE, Some(&COMMANDS));
        let listed: Vec<(String, String, String, String)> = plugins
            .commands()
            .into_iter()
            .map(|c| (c.name, c.args, c.help, c.plugin))
            .collect();
        assert_eq!(
            listed,
            [
                (
                    "yell".into(),
                    "TEXT".into(),
                    "say TEXT loudly".into(),
                    "loud".into()
                ),
                (
                    "whisper".into(),
                    String::new(),
                    "say it quietly".into(),
                    "loud".into()
                ),
            ]
        );
        assert_eq!(plugins.run_command("#dev", "nope", "x"), None);
        // Any case, as the built-in commands.
        assert_eq!(
            plugins.run_command("#dev", "YELL", "hi there"),
            Some(CommandOutcome::Send("YELL: HI THERE".into()))
        );
        assert_eq!(
            plugins.run_command("@a+b", "yell", "notice"),
            Some(CommandOutcome::Notice("you are in @a+b".into()))
        );
        assert_eq!(
            plugins.run_command("#dev", "whisper", "done"),
            Some(CommandOutcome::Done)
        );
        assert_eq!(
            plugins.run_command("#dev", "yell", "refuse"),
            Some(CommandOutcome::Failed {
                plugin: "loud".into(),
                reason: "usage: /yell TEXT".into()
            })
        );
        assert!(plugins.disabled().is_empty(), "a refusal is an answer");
        // Asking to send nothing breaks the contract: disabled, and its commands go away.
        match plugins.run_command("#dev", "yell", "nothing") {
            Some(CommandOutcome::Failed { reason, .. }) => {
                assert!(reason.contains("asked to send nothing"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(plugins.commands().is_empty());
        match plugins.run_command("#dev", "yell", "hi") {
            Some(CommandOutcome::Failed { reason, .. }) => {
                assert!(reason.contains("is disabled"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        drop(plugins);
        assert!(state.wait_destroyed(Duration::from_secs(10)));
    }

    #[test]
    fn a_command_that_fails_or_hangs_disables_its_plugin() {
        let mut plugins = Plugins {
            loaded: Vec::new(),
            limits: limits(1000, 200),
        };
        add(&mut plugins, "loud", &WITH_FREE, Some(&COMMANDS));
        match plugins.run_command("#dev", "yell", "fail") {
            Some(CommandOutcome::Failed { plugin, reason }) => {
                assert_eq!(plugin, "loud");
                assert!(reason.contains("broken"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert_eq!(plugins.disabled().len(), 1);

        let mut plugins = Plugins {
            loaded: Vec::new(),
            limits: limits(1000, 200),
        };
        let state = add(&mut plugins, "loud", &WITH_FREE, Some(&COMMANDS));
        let asked = Instant::now();
        match plugins.run_command("#dev", "yell", "hang") {
            Some(CommandOutcome::Failed { reason, .. }) => {
                assert!(reason.contains("did not answer /yell in time"), "{reason}");
            }
            other => panic!("{other:?}"),
        }
        assert!(asked.elapsed() < Duration::from_secs(2));
        assert!(plugins.disabled()[0].1.contains("on_command"));
        state.let_go();
    }

    #[test]
    fn a_command_another_plugin_added_first_is_refused() {
        let mut plugins = Plugins {
            loaded: Vec::new(),
            limits: limits(1000, 1000),
        };
        add(&mut plugins, "first", &WITH_FREE, Some(&COMMANDS));
        add(&mut plugins, "second", &WITH_FREE, Some(&COMMANDS));
        let owners: Vec<(String, String)> = plugins
            .commands()
            .into_iter()
            .map(|c| (c.name, c.plugin))
            .collect();
        assert_eq!(
            owners,
            [
                ("yell".into(), "first".into()),
                ("whisper".into(), "first".into())
            ]
        );
        // The second plugin still loaded, and lists what it declares.
        assert_eq!(plugins.infos()[1].commands.len(), 2);
    }

    #[test]
    fn declared_commands_are_checked() {
        let info = |commands: Vec<RawCommand>| {
            plugin_info(
                Path::new("x.so"),
                b"x".to_vec(),
                b"1".to_vec(),
                only_commands(true),
                commands,
            )
        };
        let cmd = |n: &str, a: &str, h: &str| (n.into(), a.into(), h.into());
        let ok = info(vec![
            cmd("shout", "TEXT", "send TEXT in capitals"),
            cmd("a-b_2", "", ""),
        ])
        .expect("valid");
        assert_eq!(ok.commands[1].name, "a-b_2");
        assert!(
            ok.to_string().ends_with("; commands: /shout, /a-b_2"),
            "{ok}"
        );
        for (bad, says) in [
            (cmd("Shout", "", ""), "not 1 to 32"),
            (cmd("/shout", "", ""), "not 1 to 32"),
            (cmd("", "", ""), "not 1 to 32"),
            (cmd("2x", "", ""), "not 1 to 32"),
            (cmd(&"x".repeat(33), "", ""), "not 1 to 32"),
            (cmd("x", "A\nB", ""), "argument hint"),
            (cmd("x", "", "two\nlines"), "help"),
            (cmd("x", "", &"h".repeat(201)), "help"),
        ] {
            let e = info(vec![bad]).expect_err("refused").to_string();
            assert!(e.contains(says), "{e}");
        }
        let twice = info(vec![cmd("x", "", ""), cmd("x", "", "")]).expect_err("refused");
        assert!(twice.to_string().contains("/x twice"), "{twice}");
        assert!(check_command_table(MAX_COMMANDS + 1, false, true).is_err());
        assert!(check_command_table(1, true, true).is_err());
        assert!(check_command_table(1, false, false).is_err());
        assert!(check_command_table(0, true, false).is_ok());
    }

    fn limits(budget_ms: u64, limit_ms: u64) -> HookLimits {
        HookLimits {
            budget: Duration::from_millis(budget_ms),
            limit: Duration::from_millis(limit_ms),
        }
    }

    #[test]
    fn plugins_can_be_shared_between_threads() {
        fn shared<T: Send + Sync>() {}
        shared::<Plugins>();
    }

    #[test]
    fn a_filter_that_never_returns_is_given_up_at_the_limit_and_refuses_that_message_only() {
        let (plugins, state) = plugins(limits(20, 200));
        let asked = Instant::now();
        let outcome = plugins.message_received("alice", "#general", "please hang");
        let waited = asked.elapsed();
        assert!(
            waited >= Duration::from_millis(200) && waited < Duration::from_secs(2),
            "{waited:?}"
        );
        match outcome {
            Outcome::Block { plugin, reason } => {
                assert_eq!(plugin, "timed");
                assert!(
                    reason.contains("did not check the message in time"),
                    "{reason}"
                );
            }
            other => panic!("{other:?}"),
        }
        let disabled = plugins.disabled();
        assert_eq!(disabled.len(), 1);
        assert!(
            disabled[0]
                .1
                .contains("on_message_received: did not return within 200 ms"),
            "{disabled:?}"
        );
        // The next message goes through at once, without the plugin.
        let calls = state.calls.load(Ordering::SeqCst);
        let asked = Instant::now();
        assert_eq!(
            plugins.message_received("alice", "#general", "hello"),
            Outcome::Deliver("hello".to_owned())
        );
        assert!(asked.elapsed() < Duration::from_millis(100));
        assert_eq!(state.calls.load(Ordering::SeqCst), calls);

        // Stopping does not wait for the stuck hook beyond the limit, and does not destroy the
        // state it still uses; once the hook returns, its thread ends and destroys the plugin.
        let stopping = Instant::now();
        drop(plugins);
        assert!(stopping.elapsed() < Duration::from_secs(2));
        assert!(!*state.destroyed.lock().expect("destroyed"));
        state.let_go();
        assert!(state.wait_destroyed(Duration::from_secs(10)));
    }

    #[test]
    fn each_hook_kind_gets_a_safe_answer_when_it_times_out() {
        let (plugins, state) = plugins(limits(20, 100));
        // A send filter refuses the message it did not check.
        assert!(matches!(
            plugins.message_send("#general", "hang on"),
            Outcome::Block { .. }
        ));
        state.let_go();
        let (plugins, state) = self::plugins(limits(20, 100));
        // A display rewrite that does not come shows the text as it was.
        assert_eq!(
            plugins.message_display("bob", "#general", "hang on"),
            "hang on"
        );
        state.let_go();
        let (plugins, state) = self::plugins(limits(20, 100));
        // A notification just ends.
        let asked = Instant::now();
        plugins.client_connected("hang", "127.0.0.1");
        assert!(asked.elapsed() < Duration::from_secs(2));
        assert_eq!(plugins.disabled().len(), 1);
        state.let_go();
        drop(plugins);
        assert!(state.wait_destroyed(Duration::from_secs(10)));
    }

    #[test]
    fn three_overruns_within_a_minute_disable_the_plugin_and_quick_calls_do_not_count() {
        let (plugins, state) = plugins(limits(10, 2000));
        for _ in 0..5 {
            plugins.message_received("alice", "#general", "quick");
        }
        for n in 1..=OVERRUNS_TO_DISABLE {
            assert!(plugins.disabled().is_empty(), "disabled before overrun {n}");
            // A slow hook's verdict still counts: it answered within the limit.
            assert_eq!(
                plugins.message_received("alice", "#general", "slow"),
                Outcome::Deliver("slow".to_owned())
            );
        }
        let disabled = plugins.disabled();
        assert_eq!(disabled.len(), 1, "{disabled:?}");
        assert!(
            disabled[0]
                .1
                .contains("ran over the 10 ms budget for a hook 3 times within a minute"),
            "{disabled:?}"
        );
        let calls = state.calls.load(Ordering::SeqCst);
        plugins.message_received("alice", "#general", "slow");
        assert_eq!(
            state.calls.load(Ordering::SeqCst),
            calls,
            "a disabled plugin ran"
        );
        drop(plugins);
        assert!(state.wait_destroyed(Duration::from_secs(10)));
    }

    #[test]
    fn hooks_of_one_plugin_run_in_parallel() {
        let (plugins, state) = plugins(limits(1000, 5000));
        let plugins = Arc::new(plugins);
        let started = Instant::now();
        let threads: Vec<_> = (0..crate::pool::pool_size())
            .map(|i| {
                let plugins = Arc::clone(&plugins);
                std::thread::Builder::new()
                    .name(format!("caller-{i}"))
                    .spawn(move || plugins.message_received("a", "#general", "slow"))
                    .expect("spawn")
            })
            .collect();
        for t in threads {
            assert!(matches!(t.join().expect("join"), Outcome::Deliver(_)));
        }
        // Serialised, they would take pool_size × SLOW.
        if crate::pool::pool_size() > 1 {
            assert!(
                started.elapsed() < SLOW * u32::try_from(crate::pool::pool_size()).unwrap_or(1),
                "{:?}",
                started.elapsed()
            );
        }
        drop(plugins);
        assert!(state.wait_destroyed(Duration::from_secs(10)));
    }
}
