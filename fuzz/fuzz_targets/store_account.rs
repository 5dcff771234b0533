//! A `usernames.db` line (a SCRAM verifier): no input panics, and one that parses is written
//! back as it was read.

#![no_main]

use gc_fuzz::same_fields;
use gc_store::fuzzing::account_line;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    if let Ok(written) = account_line(line) {
        same_fields(line, &written[..written.len() - 1], b';');
        let again = account_line(&written[..written.len() - 1]);
        assert_eq!(again, Ok(written.clone()), "not stable");
    }
});
