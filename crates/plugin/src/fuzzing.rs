//! What the fuzz targets (`fuzz/`) call: the reader of a library's static descriptor, on bytes.

use std::path::Path;

use crate::host::PluginInfo;

/// Reads the static descriptor out of `data`, the bytes of a would-be plugin library, as a
/// listing does with a file (no code of it runs).
pub fn inspect_bytes(data: &[u8]) -> Option<PluginInfo> {
    crate::inspect::read(Path::new("fuzz.so"), data).ok()
}
