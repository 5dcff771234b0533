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
    // A directory where the temporary file must go makes the rewrite fail.
    fs::create_dir(dir.path().join("usernames.db.tmp")).unwrap();
    let err = a.add(account("b", 1)).unwrap_err();
    assert!(err.to_string().contains("usernames.db.tmp"), "{err}");
    assert_eq!(a.len(), 1);
    assert_eq!(Accounts::open(&path).unwrap().len(), 1);
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
