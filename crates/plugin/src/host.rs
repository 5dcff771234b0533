//! Loading plugins and running their hooks: in name order, a rewrite feeding the next plugin, a
//! block stopping the chain. A plugin that fails to load is skipped with a reason; a hook that
//! fails, panics or breaks the contract disables its plugin; the host carries on.

#![allow(unsafe_code)] // the host side of the C boundary

use std::ffi::c_void;
use std::fmt;
use std::mem::ManuallyDrop;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use libloading::Library;

use crate::abi::{
    ABI_VERSION, ABI_VERSION_SYMBOL, DESCRIBE_SYMBOL, GcDescriptor, GcHost, GcStr, GcVerdict, kind,
    level,
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
}

/// What a plugin is, as listed by `gc-server plugins list` / `gc-client --list-plugins`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PluginInfo {
    /// Its name.
    pub name: String,
    /// Its version.
    pub version: String,
    /// Its file.
    pub path: PathBuf,
    /// The hooks it implements.
    pub hooks: Vec<&'static str>,
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
        )
    }
}

/// Which program a plugin is listed for: each runs only its own side's hooks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Side {
    /// `gc-server`: `on_client_connect`, `on_message_received`, `on_client_disconnect`.
    Server,
    /// `gc-client`: `on_message_display`, `on_message_send`.
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
            Self::Client => &["on_message_display", "on_message_send"],
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
    loaded: Vec<Loaded>,
}

/// One loaded plugin. The library is never unloaded (see `Drop`), so the descriptor and code it
/// points into stay valid for the life of the process.
struct Loaded {
    info: PluginInfo,
    desc: &'static GcDescriptor,
    state: *mut c_void,
    /// Backs the `gc_host` the plugin may keep; boxed so its address is stable.
    _host: Box<HostBlock>,
    disabled: Mutex<Option<String>>,
    _lib: ManuallyDrop<Library>,
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
            // SAFETY: `state` came from this plugin's init and no hook runs any more (we own
            // `self` mutably); destroy is called once.
            unsafe { destroy(self.state) };
        }
        // The library stays mapped: unloading a library whose code registered thread-local
        // destructors (any Rust plugin that panicked, for one) can crash the process later.
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

/// A library file's candidates in `dir`: files with the platform's shared-library extension, in
/// name order.
fn candidates(dir: &Path) -> Result<Vec<PathBuf>, PluginError> {
    let entries = match std::fs::read_dir(dir) {
        Ok(entries) => entries,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(source) => {
            return Err(PluginError::ReadDir {
                path: dir.to_owned(),
                source,
            });
        }
    };
    let mut files: Vec<PathBuf> = entries
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.is_file()
                && p.extension()
                    .is_some_and(|e| e == std::env::consts::DLL_EXTENSION)
        })
        .collect();
    files.sort();
    Ok(files)
}

/// Opens a library and checks it is a plugin of our ABI; returns it with its descriptor.
fn open(path: &Path) -> Result<(Library, &'static GcDescriptor, PluginInfo), PluginError> {
    // SAFETY: loading runs the library's initialisers; a file in the mods directory is trusted
    // code by the operator's choice (documented in docs/plugins.md).
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
    let name = String::from_utf8(name).map_err(|_| bad("its name is not UTF-8"))?;
    let version = String::from_utf8(version).map_err(|_| bad("its version is not UTF-8"))?;
    if name.is_empty() || name.len() > 64 || name.chars().any(char::is_control) {
        return Err(bad("its name must be 1 to 64 printable characters"));
    }
    let hooks = [
        ("on_client_connect", desc.on_client_connect.is_some()),
        ("on_message_received", desc.on_message_received.is_some()),
        ("on_client_disconnect", desc.on_client_disconnect.is_some()),
        ("on_message_display", desc.on_message_display.is_some()),
        ("on_message_send", desc.on_message_send.is_some()),
    ]
    .into_iter()
    .filter_map(|(n, present)| present.then_some(n))
    .collect();
    let info = PluginInfo {
        name,
        version,
        path: path.to_owned(),
        hooks,
    };
    Ok((lib, desc, info))
}

/// One file of a mods directory and what became of it.
#[derive(Debug)]
pub struct Candidate {
    /// The file.
    pub path: PathBuf,
    /// The plugin, or why it was skipped.
    pub result: Result<PluginInfo, PluginError>,
}

impl Plugins {
    /// No plugins.
    pub fn none() -> Self {
        Self::default()
    }

    /// Loads every plugin in `dir` (absent: none), in file-name order, and starts each. Files that
    /// are not plugins, have another ABI, fail to load or refuse to start are skipped with a
    /// warning; the report lists every candidate file.
    pub fn load_dir(dir: &Path) -> (Self, Vec<Candidate>) {
        let mut plugins = Self::default();
        let files = match candidates(dir) {
            Ok(files) => files,
            Err(e) => {
                tracing::warn!("{e}; no plugins loaded");
                return (plugins, Vec::new());
            }
        };
        let mut report = Vec::new();
        for path in files {
            let result = plugins.load_one(&path);
            match &result {
                Ok(info) => tracing::info!("loaded plugin {info}"),
                Err(e) => tracing::warn!("skipped {e}"),
            }
            report.push(Candidate { path, result });
        }
        (plugins, report)
    }

    /// What `load_dir` would load, without starting anything: for `plugins list`.
    pub fn inspect_dir(dir: &Path) -> Result<Vec<Candidate>, PluginError> {
        Ok(candidates(dir)?
            .into_iter()
            .map(|path| {
                let result = open(&path).map(|(lib, _, info)| {
                    let _ = ManuallyDrop::new(lib);
                    info
                });
                Candidate { path, result }
            })
            .collect())
    }

    /// `inspect_dir` as text for people, for the program on `side`: one `load  …` or `skip  …`
    /// line per candidate file (a plugin with none of `side`'s hooks loads but does nothing
    /// there, which the line says), or one line saying the directory holds none.
    pub fn listing(dir: &Path, side: Side) -> Result<Vec<String>, PluginError> {
        let candidates = Self::inspect_dir(dir)?;
        if candidates.is_empty() {
            return Ok(vec![format!(
                "no plugins in {} (put .{} files there)",
                dir.display(),
                std::env::consts::DLL_EXTENSION
            )]);
        }
        Ok(candidates
            .into_iter()
            .map(|c| match c.result {
                Ok(info) if !info.hooks.iter().any(|h| side.hooks().contains(h)) => format!(
                    "load  {info} — no {side} hooks: it does nothing in the {side}",
                    side = side.name()
                ),
                Ok(info) => format!("load  {info}"),
                Err(e) => format!("skip  {e}"),
            })
            .collect())
    }

    fn load_one(&mut self, path: &Path) -> Result<PluginInfo, PluginError> {
        let (lib, desc, info) = open(path)?;
        let lib = ManuallyDrop::new(lib);
        if let Some(other) = self.loaded.iter().find(|p| p.info.name == info.name) {
            return Err(PluginError::BadDescriptor {
                path: path.to_owned(),
                reason: format!(
                    "a plugin named {} is already loaded from {}",
                    info.name,
                    other.info.path.display()
                ),
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
        self.loaded.push(Loaded {
            info: info.clone(),
            desc,
            state,
            _host: block,
            disabled: Mutex::new(None),
            _lib: lib,
        });
        Ok(info)
    }

    /// The plugins loaded (including ones disabled since).
    pub fn infos(&self) -> Vec<PluginInfo> {
        self.loaded.iter().map(|p| p.info.clone()).collect()
    }

    /// Plugins disabled since loading, with the reason.
    pub fn disabled(&self) -> Vec<(String, String)> {
        self.loaded
            .iter()
            .filter_map(|p| {
                let reason = p.disabled.lock().ok()?.clone()?;
                Some((p.info.name.clone(), reason))
            })
            .collect()
    }

    /// Whether no plugin is loaded.
    pub fn is_empty(&self) -> bool {
        self.loaded.is_empty()
    }

    /// Server: a client logged in.
    pub fn client_connected(&self, user: &str, address: &str) {
        for p in self.active() {
            if let Some(hook) = p.desc.on_client_connect {
                // SAFETY: state from init; strings valid for the call.
                let v = unsafe { hook(p.state, GcStr::borrowed(user), GcStr::borrowed(address)) };
                p.expect_pass("on_client_connect", v);
            }
        }
    }

    /// Server: a client's session ended.
    pub fn client_disconnected(&self, user: &str) {
        for p in self.active() {
            if let Some(hook) = p.desc.on_client_disconnect {
                // SAFETY: state from init; string valid for the call.
                let v = unsafe { hook(p.state, GcStr::borrowed(user)) };
                p.expect_pass("on_client_disconnect", v);
            }
        }
    }

    /// Server: runs `on_message_received` through the chain (a message from `user` to `room`,
    /// its wire name: `#general`, `#dev`, `@alice+bob`).
    pub fn message_received(&self, user: &str, room: &str, text: &str) -> Outcome {
        self.chain("on_message_received", text, true, |p, text| {
            let hook = p.desc.on_message_received?;
            let (user, room, text) = (
                GcStr::borrowed(user),
                GcStr::borrowed(room),
                GcStr::borrowed(text),
            );
            // SAFETY: state from init; strings valid for the call.
            Some(unsafe { hook(p.state, user, room, text) })
        })
    }

    /// Client: runs `on_message_display` (a message of `user` in `room`); the text to show.
    pub fn message_display(&self, user: &str, room: &str, text: &str) -> String {
        match self.chain("on_message_display", text, false, |p, text| {
            let hook = p.desc.on_message_display?;
            let (user, room, text) = (
                GcStr::borrowed(user),
                GcStr::borrowed(room),
                GcStr::borrowed(text),
            );
            // SAFETY: state from init; strings valid for the call.
            Some(unsafe { hook(p.state, user, room, text) })
        }) {
            Outcome::Deliver(text) => text,
            Outcome::Block { .. } => text.to_owned(),
        }
    }

    /// Client: runs `on_message_send` through the chain (a message into `room`).
    pub fn message_send(&self, room: &str, text: &str) -> Outcome {
        self.chain("on_message_send", text, true, |p, text| {
            let hook = p.desc.on_message_send?;
            // SAFETY: state from init; strings valid for the call.
            Some(unsafe { hook(p.state, GcStr::borrowed(room), GcStr::borrowed(text)) })
        })
    }

    fn active(&self) -> impl Iterator<Item = &Loaded> {
        self.loaded
            .iter()
            .filter(|p| p.disabled.lock().map(|d| d.is_none()).unwrap_or(false))
    }

    /// Runs a text hook over every active plugin in order: a rewrite feeds the next one, a block
    /// stops the chain (where `can_block`).
    fn chain(
        &self,
        hook: &'static str,
        text: &str,
        can_block: bool,
        call: impl Fn(&Loaded, &str) -> Option<GcVerdict>,
    ) -> Outcome {
        let mut current = text.to_owned();
        for p in self.active() {
            let Some(verdict) = call(p, &current) else {
                continue;
            };
            // SAFETY: the verdict comes from this plugin's hook.
            let (kind, text) = unsafe { take(p.desc, verdict) };
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

impl Loaded {
    fn expect_pass(&self, hook: &'static str, verdict: GcVerdict) {
        // SAFETY: the verdict comes from this plugin's hook.
        match unsafe { take(self.desc, verdict) } {
            (kind::PASS, _) => {}
            (kind::FAIL, reason) => {
                self.disable(hook, reason.unwrap_or_else(|| "failed".to_owned()));
            }
            (u32::MAX, Some(why)) => self.disable(hook, why),
            (kind, _) => self.disable(hook, format!("returned verdict {kind}, not allowed here")),
        }
    }

    fn disable(&self, hook: &str, reason: String) {
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
