//! The C-compatible types of `include/gc_plugin.h`, field for field.

use std::ffi::{c_char, c_void};

/// The plugin ABI version this crate speaks. A plugin built for another version is refused.
pub const ABI_VERSION: u32 = 2;

/// Name of the exported function returning the plugin's ABI version.
pub const ABI_VERSION_SYMBOL: &[u8] = b"gc_plugin_abi_version";
/// Name of the exported function returning the plugin's descriptor.
pub const DESCRIBE_SYMBOL: &[u8] = b"gc_plugin_describe";
/// Name of the exported data symbol holding the descriptor (optional, but without it a listing
/// cannot tell what the library is without running it).
pub const STATIC_DESCRIPTOR_SYMBOL: &[u8] = b"gc_plugin_static_descriptor";
/// Name of the optional exported data symbol holding a client plugin's commands
/// ([`GcCommands`]). A plugin without it adds no commands; the descriptor is not changed by it,
/// so it needs no new ABI version (see `docs/plugins.md`).
pub const COMMANDS_SYMBOL: &[u8] = b"gc_plugin_static_commands";
/// The layout of [`GcCommands`] this crate reads (its own version, so that the table can grow
/// without touching the descriptor's ABI version).
pub const COMMANDS_VERSION: u32 = 1;
/// Most commands one plugin may add.
pub const MAX_COMMANDS: u32 = 32;

/// A UTF-8 string slice (`gc_str`).
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GcStr {
    /// First byte (may be dangling when `len` is 0).
    pub ptr: *const c_char,
    /// Length in bytes.
    pub len: usize,
}

impl GcStr {
    /// The empty string.
    pub const EMPTY: GcStr = GcStr {
        ptr: std::ptr::null(),
        len: 0,
    };

    /// Borrows `s` for the duration of a call.
    pub fn borrowed(s: &str) -> Self {
        Self {
            ptr: s.as_ptr().cast(),
            len: s.len(),
        }
    }
}

/// `enum gc_verdict_kind`.
pub mod kind {
    /// Carry on unchanged.
    pub const PASS: u32 = 0;
    /// Replace the text.
    pub const REWRITE: u32 = 1;
    /// Refuse the message, with a reason.
    pub const BLOCK: u32 = 2;
    /// The hook failed; the host disables the plugin.
    pub const FAIL: u32 = 3;
    /// `on_command` only: show the text to the user, send nothing.
    pub const NOTICE: u32 = 4;
}

/// `gc_verdict`: what a hook decided, with text allocated by the plugin.
#[repr(C)]
#[derive(Clone, Copy, Debug)]
pub struct GcVerdict {
    /// One of [`kind`].
    pub kind: u32,
    /// Rewrite text, block reason or failure message.
    pub text: GcStr,
}

/// `enum gc_log_level`.
pub mod level {
    /// Errors.
    pub const ERROR: u32 = 1;
    /// Warnings.
    pub const WARN: u32 = 2;
    /// Information.
    pub const INFO: u32 = 3;
    /// Debugging detail.
    pub const DEBUG: u32 = 4;
}

/// `gc_host`: what the host offers a plugin.
#[repr(C)]
#[derive(Debug)]
pub struct GcHost {
    /// The host's ABI version.
    pub abi_version: u32,
    /// The plugin's own file.
    pub plugin_path: GcStr,
    /// Passed back to `log`.
    pub ctx: *mut c_void,
    /// Writes a line to the host's log.
    pub log: unsafe extern "C" fn(ctx: *mut c_void, level: u32, message: GcStr),
}

/// `gc_plugin_descriptor`.
#[repr(C)]
#[derive(Debug)]
pub struct GcDescriptor {
    /// The plugin's ABI version, again.
    pub abi_version: u32,
    /// Plugin name.
    pub name: GcStr,
    /// Plugin version.
    pub version: GcStr,
    /// Creates the state.
    pub init:
        Option<unsafe extern "C" fn(host: *const GcHost, state: *mut *mut c_void) -> GcVerdict>,
    /// Releases the state.
    pub destroy: Option<unsafe extern "C" fn(state: *mut c_void)>,
    /// A client logged in.
    pub on_client_connect:
        Option<unsafe extern "C" fn(state: *mut c_void, user: GcStr, address: GcStr) -> GcVerdict>,
    /// A message arrived at the server (in the room named).
    pub on_message_received: Option<
        unsafe extern "C" fn(
            state: *mut c_void,
            user: GcStr,
            room: GcStr,
            text: GcStr,
        ) -> GcVerdict,
    >,
    /// A client's session ended.
    pub on_client_disconnect:
        Option<unsafe extern "C" fn(state: *mut c_void, user: GcStr) -> GcVerdict>,
    /// A client is about to show a message (of the room named).
    pub on_message_display: Option<
        unsafe extern "C" fn(
            state: *mut c_void,
            user: GcStr,
            room: GcStr,
            text: GcStr,
        ) -> GcVerdict,
    >,
    /// A client is about to send a message (into the room named).
    pub on_message_send:
        Option<unsafe extern "C" fn(state: *mut c_void, room: GcStr, text: GcStr) -> GcVerdict>,
    /// Releases verdict text.
    pub free_text: Option<unsafe extern "C" fn(text: GcStr)>,
}

/// `gc_command`: one command a client plugin adds (`/name args`).
#[repr(C)]
#[derive(Debug)]
pub struct GcCommand {
    /// The name without its slash: 1 to 32 of `a-z 0-9 - _`.
    pub name: GcStr,
    /// The arguments' hint for `/help` (`TEXT`), possibly empty.
    pub args: GcStr,
    /// What it does, one line for `/help`.
    pub help: GcStr,
}

/// `on_command`: the user typed `/name args` in `room`. Verdicts: `REWRITE` sends its text into
/// the room (through the `on_message_send` chain, as a typed message), `NOTICE` shows its text
/// and sends nothing, `BLOCK` shows its text as an error, `PASS` does nothing more, `FAIL`
/// disables the plugin.
pub type OnCommand =
    unsafe extern "C" fn(state: *mut c_void, room: GcStr, name: GcStr, args: GcStr) -> GcVerdict;

/// `gc_plugin_commands`: the commands a client plugin adds, exported as the data symbol
/// [`COMMANDS_SYMBOL`].
#[repr(C)]
#[derive(Debug)]
pub struct GcCommands {
    /// [`COMMANDS_VERSION`].
    pub version: u32,
    /// How many entries `commands` points to (at most [`MAX_COMMANDS`]).
    pub count: u32,
    /// The commands.
    pub commands: *const GcCommand,
    /// Runs one of them (required when `count` > 0).
    pub on_command: Option<OnCommand>,
}

#[allow(unsafe_code)]
// SAFETY: a command table is static, read-only data of the plugin (header contract), and its
// on_command may be called from several threads at once like every hook.
unsafe impl Sync for GcCommand {}
#[allow(unsafe_code)]
// SAFETY: as above.
unsafe impl Send for GcCommand {}
#[allow(unsafe_code)]
// SAFETY: as above.
unsafe impl Sync for GcCommands {}
#[allow(unsafe_code)]
// SAFETY: as above.
unsafe impl Send for GcCommands {}

#[allow(unsafe_code)]
// SAFETY: the descriptor is read-only after the plugin returns it, and the ABI contract (header:
// "hooks may be called from several threads at once") makes its function pointers thread-safe.
unsafe impl Sync for GcDescriptor {}
#[allow(unsafe_code)]
// SAFETY: as for Sync: plain data and thread-safe function pointers.
unsafe impl Send for GcDescriptor {}
