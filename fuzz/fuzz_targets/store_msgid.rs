//! A `database.msgids` line: no input panics, and one that parses is written back as it was read.

#![no_main]

use gc_fuzz::same_fields;
use gc_store::fuzzing::msgid_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Ok(written) = msgid_line(line) {
        let read = line.strip_suffix(b"\n").unwrap_or(line);
        same_fields(read, &written[..written.len() - 1], b';');
        assert_eq!(msgid_line(&written), Ok(written.clone()), "not stable");
    }
});
