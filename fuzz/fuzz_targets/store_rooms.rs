//! The lines of `rooms.db`, `members.db` and `admins.db`: no input panics, and one that parses is
//! written back as it was read (a raw CR in a topic escaped).

#![no_main]

use gc_fuzz::{raw_cr_escaped, same_fields};
use gc_store::LineError;
use gc_store::fuzzing::{admin_line, member_line, room_line};
use libfuzzer_sys::fuzz_target;

fn check(parse: fn(&[u8]) -> Result<Vec<u8>, LineError>, line: &[u8]) {
    if let Ok(written) = parse(line) {
        let written = &written[..written.len() - 1];
        same_fields(&raw_cr_escaped(line), written, b';');
        assert_eq!(
            parse(written).as_deref(),
            Ok(&[written, b"\n"].concat()[..]),
            "not stable"
        );
    }
}

fuzz_target!(|line: &[u8]| {
    check(room_line, line);
    check(member_line, line);
    check(admin_line, line);
});
