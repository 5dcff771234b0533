//! A record's text as a GC/5 client reads it for a shared file (`[file] <name> (<size> bytes)
//! sha256:<hash>`): no text panics, a text recognised as a file line is exactly what the server
//! writes for that file, and a name made for display or for the disk stays safe.

#![no_main]

use gc_protocol::files::{FileNotice, MAX_LOCAL_NAME_BYTES, display_name, local_file_name};
use gc_protocol::limits::MAX_FILE_NAME_BYTES;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Some(notice) = FileNotice::parse(text) {
        // One spelling per file line: what was read is what the server would write.
        assert_eq!(notice.text(), text);
        assert_eq!(FileNotice::parse(&notice.text()), Some(notice));
    }
    // Any text as a name: the record's name is display text without path separators or
    // controls, and stable; the local name never leaves the directory it is put in.
    let shown = display_name(text);
    assert!(!shown.is_empty() && shown.len() <= MAX_FILE_NAME_BYTES);
    assert!(!shown.contains('/') && !shown.contains('\\'), "{shown:?}");
    assert_eq!(display_name(&shown), shown, "display_name is not stable");
    let local = local_file_name(text);
    assert!(
        !local.is_empty() && local.len() <= MAX_LOCAL_NAME_BYTES,
        "{local:?}"
    );
    assert!(
        !local.contains('/') && !local.contains('\\') && !local.starts_with('.'),
        "{local:?}"
    );
    assert!(!local.contains('\0'));
});
