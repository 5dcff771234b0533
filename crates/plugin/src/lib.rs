//! The gc plugin ABI, shared by `gc-server`, `gc-client` and plugin authors.
//!
//! - [`abi`]: the C-compatible types, mirroring `include/gc_plugin.h` (for plugins in C).
//! - [`guest`]: writing a plugin in Rust — implement [`guest::Plugin`] and call
//!   [`declare_plugin!`]; panics are caught at the boundary.
//! - [`host`]: loading a `mods/` directory and running hooks ([`host::Plugins`]).
//! - `build` (feature `build`): compiling a C plugin from a build script.
//!
//! A plugin exports `gc_plugin_abi_version` (checked before any other symbol) and
//! `gc_plugin_describe` (name, version, optional hooks). Strings cross the boundary as UTF-8
//! pointer + length; memory is freed by the side that allocated it. See `docs/plugins.md`.

pub mod abi;
#[cfg(feature = "build")]
pub mod build;
mod files;
#[cfg(feature = "fuzzing")]
pub mod fuzzing;
pub mod guest;
pub mod host;
mod inspect;
mod pool;

pub use abi::ABI_VERSION;
pub use host::{
    Candidate, CommandInfo, CommandOutcome, HookLimits, OVERRUN_WINDOW, OVERRUNS_TO_DISABLE,
    Outcome, PluginError, PluginInfo, Plugins, Side,
};
