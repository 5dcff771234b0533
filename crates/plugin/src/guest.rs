//! Writing plugins in Rust: implement [`Plugin`], then [`declare_plugin!`](crate::declare_plugin)
//! writes the C exports. Panics never cross the boundary: every hook runs under `catch_unwind`,
//! and a panic becomes a failure the host reports (and then disables the plugin).

#![allow(unsafe_code)] // the plugin side of the C boundary

use std::ffi::c_void;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::path::{Path, PathBuf};

use crate::abi::{GcDescriptor, GcHost, GcStr, GcVerdict, kind, level};

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

/// Runs `f`, turning its error or panic into a `GC_FAIL` verdict.
fn guard(f: impl FnOnce() -> Result<Verdict, String>) -> GcVerdict {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(Verdict::Pass)) => verdict(kind::PASS, String::new()),
        Ok(Ok(Verdict::Rewrite(text))) => verdict(kind::REWRITE, text),
        Ok(Ok(Verdict::Block(reason))) => verdict(kind::BLOCK, reason),
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
#[macro_export]
macro_rules! declare_plugin {
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
