//! No file content can make the store panic: every opener, check, repair and export on
//! arbitrary (and almost-valid) files returns a value or an error.

use std::fs;

use gc_store::{Accounts, ClientCache, ExportFormat, MessageStore, check, export, repair};
use proptest::prelude::*;

use crate::support::{cmid, config, user};

/// Lines that are often valid, sometimes subtly not, sometimes garbage.
fn line() -> impl Strategy<Value = Vec<u8>> {
    prop_oneof![
        (1u64..40, 0u64..3_000_000_000, "[a-zA-Z0-9_.-]{1,4}", ".{0,12}").prop_map(
            |(id, ts, u, m)| format!("{id};{ts};{u};{}", m.replace('\n', "\\n")).into_bytes()
        ),
        (0u64..40, "[a-z]{1,3}", "[a-zA-Z0-9_-]{1,3}")
            .prop_map(|(id, u, c)| format!("{id};{u};{c}").into_bytes()),
        "[a-z]{1,3};[A-Za-z0-9+/=]{0,8};[0-9]{1,3};[A-Za-z0-9+/=]{0,8};[A-Za-z0-9+/=]{0,8};[0-9.]{1,5}"
            .prop_map(String::into_bytes),
        proptest::collection::vec(any::<u8>(), 0..30),
        "[0-9;.\\\\a-z\r]{0,20}".prop_map(String::into_bytes),
    ]
}

fn file() -> impl Strategy<Value = Vec<u8>> {
    (proptest::collection::vec(line(), 0..12), any::<bool>()).prop_map(|(lines, final_lf)| {
        let mut out = lines.join(&b'\n');
        if final_lf && !out.is_empty() {
            out.push(b'\n');
        }
        out
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    #[test]
    fn nothing_in_a_file_makes_the_store_panic(db in file(), ids in file(), other in file()) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("database.db"), &db).unwrap();
        fs::write(d.join("database.msgids"), &ids).unwrap();
        let _ = check(d);
        let _ = export(d, ExportFormat::JsonLines, &mut Vec::new());
        let _ = export(d, ExportFormat::Plain, &mut Vec::new());
        match MessageStore::open(d, config(gc_store::FsyncPolicy::Never, 3)) {
            Ok((s, _)) => {
                let n = s.newest_id();
                let _ = s.after(0, 100, 200);
                let _ = s.before(n, 3);
                let _ = s.append(&user("z"), &cmid("q"), "after garbage");
            }
            Err(_) => {
                // Whatever was wrong, repair makes it openable.
                repair(d).unwrap();
                MessageStore::open(d, config(gc_store::FsyncPolicy::Never, 3)).unwrap();
            }
        }
        prop_assert!(check(d).unwrap().is_ok());

        fs::write(d.join("usernames.db"), &other).unwrap();
        let _ = Accounts::open(&d.join("usernames.db"));
        fs::write(d.join("cdatabase.db"), &other).unwrap();
        let (c, _) = ClientCache::open(&d.join("cdatabase.db")).unwrap();
        prop_assert!(c.records().windows(2).all(|w| w[0].id < w[1].id));
    }
}
