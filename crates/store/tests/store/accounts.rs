//! Accounts: usernames.db.

use std::fs;
use std::sync::Arc;
use std::thread;

use gc_protocol::types::Timestamp;
use gc_store::{Account, Accounts, LineError, StoreError};

use crate::support::user;

fn account(name: &str, iterations: u32) -> Account {
    Account {
        username: user(name),
        salt: vec![7; 16],
        iterations,
        stored_key: vec![1; 32],
        server_key: vec![2; 32],
        created: Timestamp::parse("1640995200.25").unwrap(),
    }
}

fn no_tmp_left(dir: &std::path::Path) {
    let names: Vec<_> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(
        names,
        vec!["usernames.db".to_owned()],
        "only the accounts file"
    );
}

#[test]
fn add_get_exists_remove_update_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usernames.db");
    let a = Accounts::open(&path).unwrap();
    assert!(a.is_empty());
    assert!(
        !path.exists(),
        "a missing file is created by the first change"
    );

    a.add(account("Alice", 4096)).unwrap();
    a.add(account("bob", 5000)).unwrap();
    assert_eq!(a.get("ALICE").unwrap().username.as_str(), "Alice");
    assert_eq!(a.get("alice"), Some(account("Alice", 4096)));
    assert_eq!(a.get("carol"), None);
    match a.add(account("aLiCe", 1)) {
        Err(e @ StoreError::Exists { .. }) => assert!(e.to_string().contains("\"Alice\""), "{e}"),
        other => panic!("expected Exists, got {other:?}"),
    }
    no_tmp_left(dir.path());

    a.update(account("BOB", 9999)).unwrap();
    assert_eq!(a.get("bob").unwrap().iterations, 9999);
    assert!(matches!(
        a.update(account("nobody", 1)),
        Err(StoreError::UnknownAccount { .. })
    ));

    a.add(account("carol", 4096)).unwrap();
    let removed = a.remove("CAROL").unwrap();
    assert_eq!(removed.username.as_str(), "carol");
    assert!(matches!(
        a.remove("carol"),
        Err(StoreError::UnknownAccount { .. })
    ));
    assert_eq!(
        a.list()
            .iter()
            .map(|x| x.username.to_string())
            .collect::<Vec<_>>(),
        ["Alice", "BOB"]
    );
    no_tmp_left(dir.path());

    let b = Accounts::open(&path).unwrap();
    assert_eq!(b.list(), a.list());
    assert_eq!(b.len(), 2);
    let text = fs::read_to_string(&path).unwrap();
    assert_eq!(text.lines().count(), 2);
    assert!(
        text.starts_with("Alice;BwcHBwcHBwcHBwcHBwcHBw==;4096;"),
        "{text}"
    );
    assert!(text.ends_with(";1640995200.25\n"), "{text}");
}

#[test]
fn bad_line_is_reported_with_its_number() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usernames.db");
    let good = "a;c2FsdA==;4096;AQ==;Ag==;1\n";
    fs::write(&path, format!("{good}b;c2FsdA==;many;AQ==;Ag==;1\n")).unwrap();
    match Accounts::open(&path) {
        Err(
            e @ StoreError::BadLine {
                line_number: 2,
                reason: LineError::Iterations,
                ..
            },
        ) => {
            let msg = e.to_string();
            assert!(
                msg.contains("line 2 of") && msg.contains("usernames.db"),
                "{msg}"
            );
        }
        other => panic!("expected BadLine, got {other:?}"),
    }
    fs::write(&path, format!("{good}\n")).unwrap();
    assert!(matches!(
        Accounts::open(&path),
        Err(StoreError::BadLine {
            line_number: 2,
            reason: LineError::Fields,
            ..
        })
    ));
    // A hand-edited file without a final LF is fine.
    fs::write(&path, good.trim_end()).unwrap();
    assert_eq!(Accounts::open(&path).unwrap().len(), 1);
}

#[test]
fn duplicate_names_ignoring_case_are_an_error() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usernames.db");
    fs::write(
        &path,
        "Ann;AA==;1;AQ==;Ag==;1\nx;AA==;1;AQ==;Ag==;1\nANN;AA==;1;AQ==;Ag==;1\n",
    )
    .unwrap();
    match Accounts::open(&path) {
        Err(StoreError::DuplicateAccount {
            first_line: 1,
            line_number: 3,
            username,
            ..
        }) => {
            assert_eq!(username, "ANN");
        }
        other => panic!("expected DuplicateAccount, got {other:?}"),
    }
}

#[test]
fn failed_write_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usernames.db");
    let a = Accounts::open(&path).unwrap();
    a.add(account("a", 1)).unwrap();
    // A directory where the temporary file must go makes the rewrite fail (a registration
    // appends, so the rewrite is a changed verifier's).
    fs::create_dir(dir.path().join("usernames.db.tmp")).unwrap();
    let err = a.update(account("a", 2)).unwrap_err();
    assert!(err.to_string().contains("usernames.db.tmp"), "{err}");
    assert_eq!(a.get("a").unwrap().iterations, 1);
    assert_eq!(
        Accounts::open(&path).unwrap().get("a").unwrap().iterations,
        1
    );
}

#[test]
fn failed_append_changes_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usernames.db");
    let a = Accounts::open(&path).unwrap();
    a.add(account("a", 1)).unwrap();
    // A directory in the file's place: the append cannot open it.
    let text = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    fs::create_dir(&path).unwrap();
    let err = a.add(account("b", 1)).unwrap_err();
    assert!(err.to_string().contains("usernames.db"), "{err}");
    assert_eq!(a.len(), 1);
    assert_eq!(a.get("b"), None);
    fs::remove_dir(&path).unwrap();
    fs::write(&path, text).unwrap();
    a.add(account("b", 1)).unwrap();
    assert_eq!(Accounts::open(&path).unwrap().len(), 2);
}

#[test]
fn a_registration_appends_one_line_and_does_not_rewrite() {
    use std::os::unix::fs::{MetadataExt as _, PermissionsExt as _};
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usernames.db");
    let a = Accounts::open(&path).unwrap();
    a.add(account("a", 1)).unwrap();
    let first = fs::metadata(&path).unwrap();
    assert_eq!(first.permissions().mode() & 0o777, 0o600);
    let before = fs::read_to_string(&path).unwrap();
    a.add(account("b", 2)).unwrap();
    let after = fs::metadata(&path).unwrap();
    // The same file, grown by one line: a rewrite would have renamed a new one over it.
    assert_eq!(after.ino(), first.ino());
    assert_eq!(after.permissions().mode() & 0o777, 0o600);
    let text = fs::read_to_string(&path).unwrap();
    assert!(text.starts_with(&before), "{text}");
    assert_eq!(text.lines().count(), 2);
    assert!(text.ends_with(";1640995200.25\n"), "{text}");
    no_tmp_left(dir.path());
    // A removal rewrites it whole, with one line per account still.
    a.remove("a").unwrap();
    assert_ne!(fs::metadata(&path).unwrap().ino(), first.ino());
    a.add(account("c", 3)).unwrap();
    let b = Accounts::open(&path).unwrap();
    assert_eq!(
        b.list()
            .iter()
            .map(|x| x.username.to_string())
            .collect::<Vec<_>>(),
        ["b", "c"]
    );
    assert_eq!(fs::read_to_string(&path).unwrap().lines().count(), 2);
}

#[test]
fn an_append_after_a_last_line_without_lf_adds_the_lf_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usernames.db");
    fs::write(&path, "a;c2FsdA==;4096;AQ==;Ag==;1").unwrap();
    let a = Accounts::open(&path).unwrap();
    a.add(account("b", 1)).unwrap();
    let b = Accounts::open(&path).unwrap();
    assert_eq!(b.len(), 2);
    assert!(
        fs::read_to_string(&path)
            .unwrap()
            .starts_with("a;c2FsdA==;4096;AQ==;Ag==;1\nb;")
    );
}

/// Two accounts, then the first bytes of a third without its LF: a crash in the middle of its
/// append.
fn with_torn_tail(path: &std::path::Path) -> String {
    let dir = tempfile::tempdir().unwrap();
    let a = Accounts::open(&dir.path().join("usernames.db")).unwrap();
    a.add(account("a", 1)).unwrap();
    a.add(account("b", 1)).unwrap();
    let good = fs::read_to_string(dir.path().join("usernames.db")).unwrap();
    fs::write(path, format!("{good}carol;BwcHBwcHBwc")).unwrap();
    good
}

#[test]
fn a_torn_last_line_is_left_out_and_moved_aside_by_the_lock_holder() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usernames.db");
    let good = with_torn_tail(&path);
    let torn_file = fs::read_to_string(&path).unwrap();
    // Opening only reads: a reader without the data-dir lock may see an append in progress.
    let a = Accounts::open(&path).unwrap();
    assert_eq!(a.len(), 2);
    assert_eq!(fs::read_to_string(&path).unwrap(), torn_file);
    // The lock holder moves it aside and cuts it off.
    let torn = a.recover().unwrap().expect("a torn line");
    assert_eq!((torn.line_number, torn.reason), (3, LineError::Fields));
    assert_eq!(fs::read_to_string(&path).unwrap(), good);
    let corrupt = fs::read_to_string(dir.path().join("usernames.db.corrupt")).unwrap();
    assert!(
        corrupt.contains("line 3 of usernames.db") && corrupt.ends_with("carol;BwcHBwcHBwc\n"),
        "{corrupt}"
    );
    assert_eq!(a.recover().unwrap(), None);
    a.add(account("carol", 1)).unwrap();
    assert_eq!(Accounts::open(&path).unwrap().len(), 3);
}

#[test]
fn the_next_change_cuts_a_torn_tail_first() {
    for change in ["add", "update", "remove"] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("usernames.db");
        with_torn_tail(&path);
        let a = Accounts::open(&path).unwrap();
        let expected = match change {
            "add" => a.add(account("dave", 1)).map(|()| 3),
            "update" => a.update(account("a", 7)).map(|()| 2),
            _ => a.remove("b").map(|_| 1),
        };
        let b = Accounts::open(&path).unwrap();
        assert_eq!(b.len(), expected.unwrap(), "{change}");
        assert!(
            fs::read_to_string(dir.path().join("usernames.db.corrupt"))
                .unwrap()
                .contains("carol;BwcHBwcHBwc"),
            "{change}"
        );
        assert_eq!(b.recover().unwrap(), None, "{change}");
    }
}

#[test]
fn an_invalid_complete_last_line_is_still_refused() {
    // With its LF the line was written whole: damage, not an interrupted append.
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usernames.db");
    fs::write(&path, "a;c2FsdA==;4096;AQ==;Ag==;1\ncarol;BwcHBwcHBwc\n").unwrap();
    assert!(matches!(
        Accounts::open(&path),
        Err(StoreError::BadLine { line_number: 2, .. })
    ));
}

#[test]
fn concurrent_adds_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("usernames.db");
    let a = Arc::new(Accounts::open(&path).unwrap());
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let a = Arc::clone(&a);
            thread::spawn(move || {
                for i in 0..10 {
                    a.add(account(&format!("u{t}-{i}"), 1)).unwrap();
                    assert!(a.get(&format!("U{t}-{i}")).is_some());
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    assert_eq!(Accounts::open(&path).unwrap().len(), 40);
}
