//! A would-be plugin library read for `plugins list` without running it (its ELF file, its
//! static descriptor): no input panics, and what it reads is within the descriptor's limits.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Some(info) = gc_plugin::fuzzing::inspect_bytes(data) {
        assert!(!info.name.is_empty(), "a plugin has a name");
        assert!(
            info.name.len() <= 4096 && info.version.len() <= 4096,
            "bounded strings"
        );
    }
});
