//! Reading a plugin from its file without running any of its code: for `plugins list`, so that
//! inspecting a suspicious mods directory does not execute it.
//!
//! A library says what it is in the exported data symbol `gc_plugin_static_descriptor` (the same
//! `gc_plugin_descriptor` that `gc_plugin_describe` returns, as static data). Its fields are read
//! from the ELF file: the ABI version as plain bytes, the name and version through the pointers
//! the dynamic linker would relocate (their relocation's addend, or the link-time value in place),
//! and each hook as present or not. A library without the symbol cannot be read this way.

use std::collections::HashMap;
use std::io::Read;
use std::mem::{offset_of, size_of};
use std::path::Path;

use object::{Object, ObjectSegment, ObjectSymbol, RelocationTarget};

use crate::abi::{
    ABI_VERSION, ABI_VERSION_SYMBOL, COMMANDS_SYMBOL, COMMANDS_VERSION, DESCRIBE_SYMBOL, GcCommand,
    GcCommands, GcDescriptor, GcStr, STATIC_DESCRIPTOR_SYMBOL,
};
use crate::host::{PluginError, PluginInfo, RawCommand, check_command_table, plugin_info};

/// Larger files are not read whole (no plugin is this large).
const MAX_LIBRARY_BYTES: u64 = 512 << 20;

/// Longest name or version read from a file (the hosts accept 64-byte names).
const MAX_STRING_BYTES: usize = 4096;

/// What a plugin file is, read without loading it.
pub(crate) fn inspect(path: &Path) -> Result<PluginInfo, PluginError> {
    let not_loadable = |reason: String| PluginError::Load {
        path: path.to_owned(),
        reason,
    };
    let mut file = std::fs::File::open(path).map_err(|e| not_loadable(e.to_string()))?;
    let len = file
        .metadata()
        .map_err(|e| not_loadable(e.to_string()))?
        .len();
    if len > MAX_LIBRARY_BYTES {
        return Err(not_loadable(format!(
            "{len} bytes is too large for a plugin"
        )));
    }
    let mut data = Vec::new();
    file.read_to_end(&mut data)
        .map_err(|e| not_loadable(e.to_string()))?;
    read(path, &data)
}

pub(crate) fn read(path: &Path, data: &[u8]) -> Result<PluginInfo, PluginError> {
    let not_loadable = |reason: String| PluginError::Load {
        path: path.to_owned(),
        reason,
    };
    let bad = |reason: String| PluginError::BadDescriptor {
        path: path.to_owned(),
        reason,
    };
    let elf = object::File::parse(data)
        .map_err(|e| not_loadable(format!("not an ELF shared library ({e})")))?;
    if elf.kind() != object::ObjectKind::Dynamic {
        return Err(not_loadable(format!(
            "an ELF file of kind {:?}, not a shared library",
            elf.kind()
        )));
    }
    if let Some(ours) = host_architecture()
        && elf.architecture() != ours
    {
        return Err(not_loadable(format!(
            "built for {:?}; this program runs on {ours:?}",
            elf.architecture()
        )));
    }
    // The descriptor is read with this program's layout: only a library of its word size and
    // byte order has that layout.
    if elf.is_64() != (size_of::<usize>() == 8)
        || elf.is_little_endian() != cfg!(target_endian = "little")
    {
        return Err(not_loadable(
            "built for another word size or byte order than this program".to_owned(),
        ));
    }
    let exported = |name: &[u8]| {
        elf.dynamic_symbols()
            .find(|s| !s.is_undefined() && s.name_bytes().is_ok_and(|n| n == name))
    };
    if exported(ABI_VERSION_SYMBOL).is_none() {
        return Err(PluginError::NotAPlugin {
            path: path.to_owned(),
        });
    }
    let Some(symbol) = exported(STATIC_DESCRIPTOR_SYMBOL) else {
        return Err(PluginError::NotInspectable {
            path: path.to_owned(),
        });
    };
    let image = Image::new(&elf, symbol.address(), size_of::<GcDescriptor>() as u64);
    // The ABI version first, alone: a descriptor of another version may be laid out otherwise.
    let found = image
        .bytes(symbol.address(), 4)
        .and_then(|b| Some(u32::from_ne_bytes(b.try_into().ok()?)))
        .ok_or_else(|| bad("its gc_plugin_static_descriptor cannot be read".to_owned()))?;
    if found != ABI_VERSION {
        return Err(PluginError::AbiMismatch {
            path: path.to_owned(),
            found,
            expected: ABI_VERSION,
        });
    }
    if exported(DESCRIBE_SYMBOL).is_none() {
        return Err(bad("it exports no gc_plugin_describe".to_owned()));
    }
    if symbol.size() != 0 && symbol.size() < size_of::<GcDescriptor>() as u64 {
        return Err(bad(format!(
            "its gc_plugin_static_descriptor is {} bytes, not {}",
            symbol.size(),
            size_of::<GcDescriptor>()
        )));
    }
    let base = symbol.address();
    let string = |field: usize, what: &str| image.string(base + field as u64, what, &bad);
    let name = string(offset_of!(GcDescriptor, name), "name")?;
    let version = string(offset_of!(GcDescriptor, version), "version")?;
    let (commands, on_command) = match exported(COMMANDS_SYMBOL) {
        Some(table) => commands(&elf, table.address(), &bad)?,
        None => (Vec::new(), false),
    };
    let hook = |field: usize| image.pointer(base + field as u64) != Pointer::Null;
    let hooks = [
        (
            "on_client_connect",
            hook(offset_of!(GcDescriptor, on_client_connect)),
        ),
        (
            "on_message_received",
            hook(offset_of!(GcDescriptor, on_message_received)),
        ),
        (
            "on_client_disconnect",
            hook(offset_of!(GcDescriptor, on_client_disconnect)),
        ),
        (
            "on_message_display",
            hook(offset_of!(GcDescriptor, on_message_display)),
        ),
        (
            "on_message_send",
            hook(offset_of!(GcDescriptor, on_message_send)),
        ),
        ("on_command", on_command),
    ];
    plugin_info(path, name, version, hooks, commands)
}

/// The commands of the table `gc_plugin_static_commands` at `address`, and whether it has an
/// `on_command`.
fn commands(
    elf: &object::File<'_>,
    address: u64,
    bad: &dyn Fn(String) -> PluginError,
) -> Result<(Vec<RawCommand>, bool), PluginError> {
    let image = Image::new(elf, address, size_of::<GcCommands>() as u64);
    let unreadable = || bad("its gc_plugin_static_commands cannot be read".to_owned());
    let u32_at = |field: usize| {
        image
            .bytes(address + field as u64, 4)
            .and_then(|b| Some(u32::from_ne_bytes(b.try_into().ok()?)))
            .ok_or_else(unreadable)
    };
    let version = u32_at(offset_of!(GcCommands, version))?;
    if version != COMMANDS_VERSION {
        return Err(bad(format!(
            "its gc_plugin_static_commands is version {version}, but this program reads version \
             {COMMANDS_VERSION}"
        )));
    }
    let count = u32_at(offset_of!(GcCommands, count))?;
    let list = image.pointer(address + offset_of!(GcCommands, commands) as u64);
    let on_command =
        image.pointer(address + offset_of!(GcCommands, on_command) as u64) != Pointer::Null;
    check_command_table(count, list == Pointer::Null, on_command).map_err(bad)?;
    if count == 0 {
        return Ok((Vec::new(), on_command));
    }
    let Pointer::At(list) = list else {
        return Err(unreadable());
    };
    let size = size_of::<GcCommand>() as u64;
    let entries = Image::new(elf, list, size * u64::from(count));
    let mut out = Vec::new();
    for i in 0..u64::from(count) {
        let at = |field: usize| list + i * size + field as u64;
        out.push((
            entries.string(at(offset_of!(GcCommand, name)), "command name", bad)?,
            entries.string(
                at(offset_of!(GcCommand, args)),
                "command argument hint",
                bad,
            )?,
            entries.string(at(offset_of!(GcCommand, help)), "command help", bad)?,
        ));
    }
    Ok((out, on_command))
}

/// The architecture this program runs on, as `object` names it (`None`: not checked).
fn host_architecture() -> Option<object::Architecture> {
    use object::Architecture as A;
    match std::env::consts::ARCH {
        "x86_64" => Some(A::X86_64),
        "aarch64" => Some(A::Aarch64),
        "x86" => Some(A::I386),
        "arm" => Some(A::Arm),
        "riscv64" => Some(A::Riscv64),
        _ => None,
    }
}

/// A pointer field of static data, as the dynamic linker would set it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Pointer {
    Null,
    /// An address in the library (before the load address is added).
    At(u64),
    /// Bound to a symbol at load time: present, but not followed here.
    Symbol,
}

/// The library's file-backed memory image, with the dynamic relocations of one range.
struct Image<'a, 'data> {
    elf: &'a object::File<'data>,
    /// Relocations in the range, by the address they patch: whether against a symbol, the
    /// addend, and whether the addend is the value in place (REL) rather than the one given.
    relocations: HashMap<u64, (bool, i64, bool)>,
}

impl<'a, 'data> Image<'a, 'data> {
    fn new(elf: &'a object::File<'data>, start: u64, len: u64) -> Self {
        let end = start.saturating_add(len);
        let relocations = elf
            .dynamic_relocations()
            .into_iter()
            .flatten()
            .filter(|(at, _)| (start..end).contains(at))
            .map(|(at, r)| {
                let symbolic = !matches!(r.target(), RelocationTarget::Absolute);
                (at, (symbolic, r.addend(), r.has_implicit_addend()))
            })
            .collect();
        Self { elf, relocations }
    }

    /// `len` bytes at `address`, if the file holds them.
    fn bytes(&self, address: u64, len: usize) -> Option<&'data [u8]> {
        let len = u64::try_from(len).ok()?;
        self.elf
            .segments()
            .find_map(|s| s.data_range(address, len).ok().flatten())
    }

    /// The machine word at `address`, as stored in the file.
    fn word(&self, address: u64) -> Option<u64> {
        let bytes = self.bytes(address, size_of::<usize>())?;
        Some(match bytes.len() {
            8 => u64::from_ne_bytes(bytes.try_into().ok()?),
            4 => u64::from(u32::from_ne_bytes(bytes.try_into().ok()?)),
            _ => return None,
        })
    }

    /// The bytes of the `gc_str` at `address` (its pointer followed as relocated), at most
    /// [`MAX_STRING_BYTES`].
    fn string(
        &self,
        address: u64,
        what: &str,
        bad: &dyn Fn(String) -> PluginError,
    ) -> Result<Vec<u8>, PluginError> {
        let unreadable = || bad(format!("its {what} cannot be read from the file"));
        let len = self
            .word(address + offset_of!(GcStr, len) as u64)
            .ok_or_else(unreadable)?;
        let len = usize::try_from(len).map_err(|_| unreadable())?;
        if len == 0 {
            return Ok(Vec::new());
        }
        if len > MAX_STRING_BYTES {
            return Err(bad(format!("its {what} is {len} bytes long")));
        }
        match self.pointer(address + offset_of!(GcStr, ptr) as u64) {
            Pointer::At(target) => self
                .bytes(target, len)
                .map(<[u8]>::to_vec)
                .ok_or_else(unreadable),
            Pointer::Null | Pointer::Symbol => Err(unreadable()),
        }
    }

    /// The pointer at `address` once relocated: a relative relocation's target, or the value in
    /// place when there is none (packed RELR relocations, or a non-PIC library).
    fn pointer(&self, address: u64) -> Pointer {
        let in_place = self.word(address).unwrap_or(0);
        match self.relocations.get(&address) {
            Some((true, _, _)) => Pointer::Symbol,
            Some(&(false, addend, implicit)) => {
                let target = if implicit {
                    in_place.wrapping_add_signed(addend)
                } else {
                    addend.cast_unsigned()
                };
                if target == 0 {
                    Pointer::Null
                } else {
                    Pointer::At(target)
                }
            }
            None if in_place == 0 => Pointer::Null,
            None => Pointer::At(in_place),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_file_that_is_not_elf_is_not_loadable() {
        let e = read(Path::new("x.so"), b"this is not an ELF file at all").expect_err("refused");
        assert!(
            e.to_string().contains("not a loadable shared library"),
            "{e}"
        );
    }

    #[test]
    fn an_empty_file_is_not_loadable() {
        let e = read(Path::new("x.so"), b"").expect_err("refused");
        assert!(matches!(e, PluginError::Load { .. }), "{e}");
    }
}
