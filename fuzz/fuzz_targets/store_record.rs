//! A `database.db` / `cdatabase.db` record line: no input panics; the fast validation used when
//! scanning a file (`split_record`) agrees with the full parse on every line, including the
//! error; a record that parses is written back as it was read (a raw CR in the message
//! escaped); and the word-at-a-time byte search
//! agrees with a plain one.

#![no_main]

use gc_fuzz::{raw_cr_escaped, same_fields, show};
use gc_store::fuzzing::{find_either, split_record};
use gc_store::{encode_record, encoded_len, parse_record, unescape};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|line: &[u8]| {
    let parsed = parse_record(line);
    let split = split_record(line);
    match (&parsed, &split) {
        (Ok(record), Ok((id, timestamp, username, message))) => {
            assert_eq!(
                (record.id, record.timestamp, record.username.as_str()),
                (*id, *timestamp, *username)
            );
            assert_eq!(
                unescape(message).ok().as_deref(),
                Some(record.body.as_bytes())
            );
            let mut written = Vec::new();
            encode_record(record, &mut written);
            assert_eq!(written.len(), encoded_len(record), "encoded_len");
            assert_eq!(
                parse_record(&written).as_ref(),
                Ok(record),
                "reparsing {}",
                show(&written)
            );
            let read = line.strip_suffix(b"\n").unwrap_or(line);
            same_fields(&raw_cr_escaped(read), &written[..written.len() - 1], b';');
        }
        (Err(a), Err(b)) => assert_eq!(a, b, "the fast and the full parse disagree on why"),
        _ => panic!(
            "the fast and the full parse disagree: {:?} vs {:?} on {}",
            parsed.as_ref().map(|_| ()),
            split.as_ref().map(|_| ()),
            show(line)
        ),
    }

    if line.len() >= 2 {
        let (a, b, hay) = (line[0], line[1], &line[2..]);
        let plain = hay.iter().position(|&c| c == a || c == b);
        assert_eq!(find_either(hay, a, b), plain, "find_either({a:#x}, {b:#x})");
    }
});
