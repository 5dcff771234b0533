//! Writing plugins in Rust: implement [`Plugin`], then [`declare_plugin!`](crate::declare_plugin)
//! writes the C exports. Panics never cross the boundary: every hook runs under `catch_unwind`,
//! and a panic becomes a failure the host reports (and then disables the plugin).

#![allow(unsafe_code)] // the plugin side of the C boundary

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use crate::abi::{GcCommand, GcCommands, GcDescriptor, GcHost, GcStr, GcVerdict, kind, level};

/// What a hook decides about a message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Verdict {
    /// Leave it as it is.
    Pass,
    /// Replace its text.
    Rewrite(String),
    /// Refuse it; the reason is shown to the sender (`Err blocked`). Only for
    /// `on_message_received` and `on_message_send`.
    Block(String),
}

/// What a plugin command (`/name args`, declared with `commands = [...]` in
/// [`declare_plugin!`](crate::declare_plugin)) asks the client to do.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Reply {
    /// Send this text into the room the command was typed in (the send hooks run on it, as on
    /// a typed message).
    Send(String),
    /// Show this text to the user; send nothing.
    Notice(String),
    /// Refuse, with a reason shown to the user as an error (e.g. how to use the command).
    Refuse(String),
    /// Nothing more to do.
    Done,
}

/// A plugin written in Rust. Every hook has a default that does nothing; list the hooks you
/// implement in [`declare_plugin!`](crate::declare_plugin). Hooks may run on several threads at
/// once. Returning `Err` (or panicking) makes the host disable the plugin with that reason.
pub trait Plugin: Sized + Send + Sync + 'static {
    /// Creates the plugin. `host` gives the plugin's own path and a log; keep it to log later.
    fn init(host: Host) -> Result<Self, String>;

    /// Server: a client logged in.
    fn on_client_connect(&self, _user: &str, _address: &str) -> Result<(), String> {
        Ok(())
    }

    /// Server: a message from `user` arrived for `room` (`#general`, `#dev`, `@alice+bob`);
    /// pass, rewrite or block it.
    fn on_message_received(
        &self,
        _user: &str,
        _room: &str,
        _text: &str,
    ) -> Result<Verdict, String> {
        Ok(Verdict::Pass)
    }

    /// Server: a client's session ended.
    fn on_client_disconnect(&self, _user: &str) -> Result<(), String> {
        Ok(())
    }

    /// Client: a message of `user` in `room` is about to be shown; pass or rewrite it.
    fn on_message_display(&self, _user: &str, _room: &str, _text: &str) -> Result<Verdict, String> {
        Ok(Verdict::Pass)
    }

    /// Client: the user is sending a message into `room`; pass, rewrite or block it.
    fn on_message_send(&self, _room: &str, _text: &str) -> Result<Verdict, String> {
        Ok(Verdict::Pass)
    }

    /// Client: the user typed `/name args` in `room`, one of the commands this plugin declares
    /// (`name` without its slash, in lower case; `args` as typed after it, leading blanks
    /// removed).
    fn on_command(&self, _room: &str, name: &str, _args: &str) -> Result<Reply, String> {
        Err(format!(
            "/{name} is declared but on_command is not implemented"
        ))
    }
}

/// The host, as a plugin sees it: its own path and the host's log.
#[derive(Debug)]
pub struct Host {
    raw: *const GcHost,
    path: PathBuf,
}

// SAFETY: the host keeps `gc_host` alive and unchanged until `destroy` returns, and its `log`
// function may be called from any thread (gc_plugin.h).
unsafe impl Send for Host {}
// SAFETY: as above; `Host` only reads through the pointer.
unsafe impl Sync for Host {}

impl Host {
    /// The plugin's own file (e.g. to find a configuration file beside it).
    pub fn plugin_path(&self) -> &Path {
        &self.path
    }

    /// The directory the plugin was loaded from.
    pub fn mods_dir(&self) -> &Path {
        self.path.parent().unwrap_or(Path::new("."))
    }

    fn log(&self, level: u32, message: &str) {
        // SAFETY: `raw` is valid until destroy (see the Send impl); `log` takes a string slice
        // valid for the call.
        unsafe {
            let host = &*self.raw;
            (host.log)(host.ctx, level, GcStr::borrowed(message));
        }
    }

    /// Logs an informational line in the host's log, tagged with the plugin's name.
    pub fn info(&self, message: &str) {
        self.log(level::INFO, message);
    }

    /// Logs a warning.
    pub fn warn(&self, message: &str) {
        self.log(level::WARN, message);
    }
}

/// Hook bits for [`descriptor`]; [`declare_plugin!`](crate::declare_plugin) names them.
#[allow(non_upper_case_globals)]
pub mod hook {
    /// `on_client_connect`.
    pub const on_client_connect: u32 = 1;
    /// `on_message_received`.
    pub const on_message_received: u32 = 1 << 1;
    /// `on_client_disconnect`.
    pub const on_client_disconnect: u32 = 1 << 2;
    /// `on_message_display`.
    pub const on_message_display: u32 = 1 << 3;
    /// `on_message_send`.
    pub const on_message_send: u32 = 1 << 4;
}

/// Builds the descriptor of plugin type `T` with the hooks in `hooks` (bits of [`hook`]).
pub const fn descriptor<T: Plugin>(
    name: &'static str,
    version: &'static str,
    hooks: u32,
) -> GcDescriptor {
    const fn has(hooks: u32, bit: u32) -> bool {
        hooks & bit != 0
    }
    GcDescriptor {
        abi_version: crate::abi::ABI_VERSION,
        name: GcStr {
            ptr: name.as_ptr().cast(),
            len: name.len(),
        },
        version: GcStr {
            ptr: version.as_ptr().cast(),
            len: version.len(),
        },
        init: Some(init::<T>),
        destroy: Some(destroy::<T>),
        on_client_connect: if has(hooks, hook::on_client_connect) {
            Some(on_client_connect::<T>)
        } else {
            None
        },
        on_message_received: if has(hooks, hook::on_message_received) {
            Some(on_message_received::<T>)
        } else {
            None
        },
        on_client_disconnect: if has(hooks, hook::on_client_disconnect) {
            Some(on_client_disconnect::<T>)
        } else {
            None
        },
        on_message_display: if has(hooks, hook::on_message_display) {
            Some(on_message_display::<T>)
        } else {
            None
        },
        on_message_send: if has(hooks, hook::on_message_send) {
            Some(on_message_send::<T>)
        } else {
            None
        },
        free_text: Some(free_text),
    }
}

/// Builds the command table of plugin type `T` over `commands` (a static list the macro
/// writes).
pub const fn command_table<T: Plugin>(commands: &'static [GcCommand]) -> GcCommands {
    GcCommands {
        version: crate::abi::COMMANDS_VERSION,
        // The host refuses more than MAX_COMMANDS; a count that does not fit is refused too.
        count: if commands.len() > u32::MAX as usize {
            u32::MAX
        } else {
            commands.len() as u32
        },
        commands: commands.as_ptr(),
        on_command: Some(on_command::<T>),
    }
}

/// One entry of a command table: `/name args`, with its help line.
pub const fn command(name: &'static str, args: &'static str, help: &'static str) -> GcCommand {
    const fn s(text: &'static str) -> GcStr {
        GcStr {
            ptr: text.as_ptr().cast(),
            len: text.len(),
        }
    }
    GcCommand {
        name: s(name),
        args: s(args),
        help: s(help),
    }
}

/// Runs `f`, turning its error or panic into a `GC_FAIL` verdict.
fn guard(f: impl FnOnce() -> Result<Verdict, String>) -> GcVerdict {
    guard_kind(|| {
        f().map(|v| match v {
            Verdict::Pass => (kind::PASS, String::new()),
            Verdict::Rewrite(text) => (kind::REWRITE, text),
            Verdict::Block(reason) => (kind::BLOCK, reason),
        })
    })
}

/// Runs `f`, whose answer is a verdict kind and its text, turning its error or panic into a
/// `GC_FAIL` verdict.
fn guard_kind(f: impl FnOnce() -> Result<(u32, String), String>) -> GcVerdict {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok((kind, text))) => verdict(kind, text),
        Ok(Err(reason)) => verdict(kind::FAIL, reason),
        Err(payload) => {
            let what = payload
                .downcast_ref::<&str>()
                .map(|s| (*s).to_owned())
                .or_else(|| payload.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".to_owned());
            verdict(kind::FAIL, format!("panicked: {what}"))
        }
    }
}

/// A verdict whose text the host frees with [`free_text`].
fn verdict(kind: u32, text: String) -> GcVerdict {
    if text.is_empty() {
        return GcVerdict {
            kind,
            text: GcStr::EMPTY,
        };
    }
    let boxed: Box<[u8]> = text.into_bytes().into_boxed_slice();
    let len = boxed.len();
    GcVerdict {
        kind,
        text: GcStr {
            ptr: Box::into_raw(boxed).cast::<u8>().cast_const().cast(),
            len,
        },
    }
}

extern "C" fn free_text(text: GcStr) {
    if text.len == 0 || text.ptr.is_null() {
        return;
    }
    // SAFETY: non-empty verdict text is only ever made by `verdict`, from a `Box<[u8]>` of exactly
    // this pointer and length; the host calls free_text once per verdict.
    drop(unsafe {
        Box::from_raw(std::ptr::slice_from_raw_parts_mut(
            text.ptr.cast_mut().cast::<u8>(),
            text.len,
        ))
    });
}

/// Borrows a host string for the call.
///
/// # Safety
/// `s` must point to `s.len` readable bytes that stay valid for `'a` (the host guarantees this
/// for the duration of a hook call).
unsafe fn borrow<'a>(s: GcStr) -> Result<&'a str, String> {
    if s.len == 0 {
        return Ok("");
    }
    // SAFETY: guaranteed by the caller.
    let bytes = unsafe { std::slice::from_raw_parts(s.ptr.cast::<u8>(), s.len) };
    std::str::from_utf8(bytes).map_err(|_| "the host passed text that is not UTF-8".to_owned())
}

/// # Safety
/// `state` must be the pointer this plugin's `init::<T>` produced, not yet destroyed.
unsafe fn state<'a, T>(state: *mut c_void) -> Result<&'a T, String> {
    if state.is_null() {
        return Err("hook called without the state init returned".to_owned());
    }
    // SAFETY: guaranteed by the caller.
    Ok(unsafe { &*state.cast::<T>() })
}

extern "C" fn init<T: Plugin>(host: *const GcHost, out: *mut *mut c_void) -> GcVerdict {
    guard(|| {
        if host.is_null() || out.is_null() {
            return Err("init called with a null pointer".to_owned());
        }
        // SAFETY: the host passes a gc_host valid until destroy, whose plugin_path is valid for
        // at least this call.
        let path = unsafe { borrow((*host).plugin_path)? };
        let plugin = T::init(Host {
            raw: host,
            path: PathBuf::from(path),
        })?;
        // SAFETY: `out` is a valid place for the state pointer (checked non-null above).
        unsafe { *out = Box::into_raw(Box::new(plugin)).cast() };
        Ok(Verdict::Pass)
    })
}

extern "C" fn destroy<T: Plugin>(state: *mut c_void) {
    if state.is_null() {
        return;
    }
    // A panicking Drop must not unwind into the host.
    let _ = catch_unwind(AssertUnwindSafe(|| {
        // SAFETY: `state` came from `init::<T>` and the host destroys it once, after every hook.
        drop(unsafe { Box::from_raw(state.cast::<T>()) });
    }));
}

extern "C" fn on_client_connect<T: Plugin>(s: *mut c_void, user: GcStr, addr: GcStr) -> GcVerdict {
    guard(|| {
        // SAFETY: host contract: valid state and strings for the call.
        let (p, user, addr) = unsafe { (state::<T>(s)?, borrow(user)?, borrow(addr)?) };
        p.on_client_connect(user, addr).map(|()| Verdict::Pass)
    })
}

extern "C" fn on_message_received<T: Plugin>(
    s: *mut c_void,
    user: GcStr,
    room: GcStr,
    text: GcStr,
) -> GcVerdict {
    guard(|| {
        // SAFETY: host contract: valid state and strings for the call.
        let (p, user, room, text) =
            unsafe { (state::<T>(s)?, borrow(user)?, borrow(room)?, borrow(text)?) };
        p.on_message_received(user, room, text)
    })
}

extern "C" fn on_client_disconnect<T: Plugin>(s: *mut c_void, user: GcStr) -> GcVerdict {
    guard(|| {
        // SAFETY: host contract: valid state and strings for the call.
        let (p, user) = unsafe { (state::<T>(s)?, borrow(user)?) };
        p.on_client_disconnect(user).map(|()| Verdict::Pass)
    })
}

extern "C" fn on_message_display<T: Plugin>(
    s: *mut c_void,
    user: GcStr,
    room: GcStr,
    text: GcStr,
) -> GcVerdict {
    guard(|| {
        // SAFETY: host contract: valid state and strings for the call.
        let (p, user, room, text) =
            unsafe { (state::<T>(s)?, borrow(user)?, borrow(room)?, borrow(text)?) };
        p.on_message_display(user, room, text)
    })
}

extern "C" fn on_command<T: Plugin>(
    s: *mut c_void,
    room: GcStr,
    name: GcStr,
    args: GcStr,
) -> GcVerdict {
    guard_kind(|| {
        // SAFETY: host contract: valid state and strings for the call.
        let (p, room, name, args) =
            unsafe { (state::<T>(s)?, borrow(room)?, borrow(name)?, borrow(args)?) };
        Ok(match p.on_command(room, name, args)? {
            Reply::Send(text) => (kind::REWRITE, text),
            Reply::Notice(text) => (kind::NOTICE, text),
            Reply::Refuse(reason) => (kind::BLOCK, reason),
            Reply::Done => (kind::PASS, String::new()),
        })
    })
}

extern "C" fn on_message_send<T: Plugin>(s: *mut c_void, room: GcStr, text: GcStr) -> GcVerdict {
    guard(|| {
        // SAFETY: host contract: valid state and strings for the call.
        let (p, room, text) = unsafe { (state::<T>(s)?, borrow(room)?, borrow(text)?) };
        p.on_message_send(room, text)
    })
}

/// Declares a Rust type as a gc plugin: writes the C exports (`gc_plugin_abi_version`,
/// `gc_plugin_describe`, and the descriptor itself as `gc_plugin_static_descriptor`, which
/// listings read without running the library) with a descriptor listing the hooks the type
/// implements.
///
/// ```ignore
/// use gc_plugin::guest::{Host, Plugin, Verdict};
///
/// struct Upper;
/// impl Plugin for Upper {
///     fn init(_host: Host) -> Result<Self, String> { Ok(Upper) }
///     fn on_message_send(&self, _room: &str, text: &str) -> Result<Verdict, String> {
///         Ok(Verdict::Rewrite(text.to_uppercase()))
///     }
/// }
///
/// gc_plugin::declare_plugin!(Upper, name = "upper", version = "1.0.0", hooks = [on_message_send]);
/// ```
///
/// A client plugin may add commands: `commands = [("shout", "TEXT", "send TEXT in capitals")]`
/// (name without its slash, argument hint, one help line) after the hooks, and implement
/// [`Plugin::on_command`]. They are exported as `gc_plugin_static_commands`, a symbol of its
/// own that older hosts do not look for.
#[macro_export]
macro_rules! declare_plugin {
    (
        $ty:ty,
        name = $name:expr,
        version = $version:expr,
        hooks = [$($hook:ident),* $(,)?],
        commands = [$(($cname:expr, $cargs:expr, $chelp:expr)),* $(,)?] $(,)?
    ) => {
        $crate::declare_plugin!($ty, name = $name, version = $version, hooks = [$($hook),*]);

        /// The commands this plugin adds, as exported data (read by loading and by listings).
        #[allow(unsafe_code, non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static gc_plugin_static_commands: $crate::abi::GcCommands = {
            const LIST: &[$crate::abi::GcCommand] =
                &[$($crate::guest::command($cname, $cargs, $chelp)),*];
            $crate::guest::command_table::<$ty>(LIST)
        };
    };
    ($ty:ty, name = $name:expr, version = $version:expr, hooks = [$($hook:ident),* $(,)?] $(,)?) => {
        /// This plugin's descriptor as exported data, so that a host can read it from the file
        /// without running the library (`plugins list`).
        #[allow(unsafe_code, non_upper_case_globals)]
        #[unsafe(no_mangle)]
        pub static gc_plugin_static_descriptor: $crate::abi::GcDescriptor =
            $crate::guest::descriptor::<$ty>($name, $version, 0 $(| $crate::guest::hook::$hook)*);

        /// The plugin ABI version this library was built for.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn gc_plugin_abi_version() -> u32 {
            $crate::abi::ABI_VERSION
        }

        /// This plugin's descriptor.
        #[allow(unsafe_code)]
        #[unsafe(no_mangle)]
        pub extern "C" fn gc_plugin_describe() -> *const $crate::abi::GcDescriptor {
            &gc_plugin_static_descriptor
        }
    };
}

#[cfg(test)]
mod tests {
    //! The command table a Rust plugin exports, called as a host calls it.

    use super::*;

    struct Loud;

    impl Plugin for Loud {
        fn init(_host: Host) -> Result<Self, String> {
            Ok(Loud)
        }

        fn on_command(&self, room: &str, name: &str, args: &str) -> Result<Reply, String> {
            match args {
                "" => Ok(Reply::Refuse(format!("usage: /{name} TEXT"))),
                "where" => Ok(Reply::Notice(format!("in {room}"))),
                "quiet" => Ok(Reply::Done),
                "panic" => panic!("boom"),
                text => Ok(Reply::Send(text.to_uppercase())),
            }
        }
    }

    // As `declare_plugin!` writes it (without exporting anything from the test binary).
    static TABLE: GcCommands = {
        const LIST: &[GcCommand] = &[command("yell", "TEXT", "say TEXT loudly")];
        command_table::<Loud>(LIST)
    };

    /// Calls `/yell args` in `#dev` and takes the verdict's text out (freeing it as a host does).
    fn yell(args: &str) -> (u32, String) {
        let mut plugin = Loud;
        let state = std::ptr::from_mut(&mut plugin).cast::<c_void>();
        let on_command = TABLE.on_command.expect("on_command");
        // SAFETY: the state is a `Loud`, the strings are valid for the call.
        let v = unsafe {
            on_command(
                state,
                GcStr::borrowed("#dev"),
                GcStr::borrowed("yell"),
                GcStr::borrowed(args),
            )
        };
        let text = if v.text.len == 0 {
            String::new()
        } else {
            // SAFETY: the plugin's text is readable for its length until freed.
            let bytes = unsafe { std::slice::from_raw_parts(v.text.ptr.cast::<u8>(), v.text.len) };
            String::from_utf8(bytes.to_vec()).expect("UTF-8")
        };
        free_text(v.text);
        (v.kind, text)
    }

    #[test]
    fn commands_are_exported_as_a_table_and_each_reply_is_a_verdict() {
        assert_eq!(TABLE.version, crate::abi::COMMANDS_VERSION);
        assert_eq!(TABLE.count, 1);
        // SAFETY: the table's list is static data of one entry.
        let first = unsafe { &*TABLE.commands };
        assert_eq!(first.name.len, 4);
        assert_eq!(yell("hi"), (kind::REWRITE, "HI".into()));
        assert_eq!(yell("where"), (kind::NOTICE, "in #dev".into()));
        assert_eq!(yell(""), (kind::BLOCK, "usage: /yell TEXT".into()));
        assert_eq!(yell("quiet"), (kind::PASS, String::new()));
        let (k, why) = yell("panic");
        assert_eq!(k, kind::FAIL);
        assert!(why.contains("boom"), "{why}");
    }
}
