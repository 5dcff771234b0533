use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};

use gc_protocol::types::{ClientMsgId, ContentHash, Room, Timestamp, Username};

use super::*;
use crate::{MessageStore, StoreConfig};

fn user(n: &str) -> Username {
    Username::new(n).unwrap()
}

fn cmid(n: u64) -> ClientMsgId {
    ClientMsgId::new(format!("m{n}")).unwrap()
}

/// Every record id in a data dir, sorted.
fn ids(dir: &Path) -> Vec<u64> {
    let mut ids = Vec::new();
    crate::visit_records(dir, |r| {
        ids.push(r.id);
        Ok(())
    })
    .unwrap();
    ids.sort_unstable();
    ids
}

#[test]
fn a_backup_under_appends_is_a_whole_dense_cut() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, _) = MessageStore::open(&data, StoreConfig::default()).unwrap();
    let store = Arc::new(store);
    let accounts = crate::Accounts::open(&data.join("usernames.db")).unwrap();
    accounts
        .add(crate::Account {
            username: user("alice"),
            salt: vec![1; 16],
            iterations: 4096,
            stored_key: vec![2; 32],
            server_key: vec![3; 32],
            created: gc_protocol::types::Timestamp::parse("1640995200").unwrap(),
        })
        .unwrap();
    let accounts_text = std::fs::read_to_string(data.join("usernames.db")).unwrap();
    for n in 0..30 {
        store
            .append(
                &user("bob"),
                &ClientMsgId::new(format!("b{n}")).unwrap(),
                "early",
            )
            .unwrap();
    }
    let stop = Arc::new(AtomicBool::new(false));
    // Batches spanning two rooms: the case a cut by ids alone could get wrong.
    let writer = {
        let (store, stop) = (Arc::clone(&store), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("test-appender".into())
            .spawn(move || {
                let (general, dev) = (Room::general(), Room::new("#dev").unwrap());
                let alice = user("alice");
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let (a, b, c) = (cmid(n), cmid(n + 1), cmid(n + 2));
                    let results = store.append_many_in(&[
                        (&general, &alice, &a, "one"),
                        (&dev, &alice, &b, "two"),
                        (&general, &alice, &c, "three"),
                    ]);
                    assert!(results.iter().all(Result::is_ok), "{results:?}");
                    n += 3;
                }
                n
            })
            .unwrap()
    };
    let mut last_records = 0;
    for i in 0..6 {
        let acked = store.newest_id();
        let dest = dir.path().join(format!("backup-{i}"));
        let report = backup(&data, &dest).unwrap();
        let check = verify_backup(&dest).unwrap();
        assert!(check.problems.is_empty(), "{:?}", check.problems);
        assert_eq!(check.records, report.records);
        let c = crate::check(&dest).unwrap();
        assert!(c.is_ok() && !c.torn_tail, "{c:?}");
        assert_eq!(c.msgids_beyond_last, 0, "msgids and records agree");
        assert_eq!(c.msgids_lines, c.records, "one msgids line per record");
        let got = ids(&dest);
        assert!(got.len() as u64 >= acked, "every acknowledged record is in");
        assert_eq!(got, (1..=got.len() as u64).collect::<Vec<_>>(), "dense");
        assert!(got.len() as u64 >= last_records);
        last_records = got.len() as u64;
        // A store opens on it without changing anything.
        std::fs::remove_file(dest.join(MANIFEST_FILE)).unwrap();
        let (restored, rep) = MessageStore::open(&dest, StoreConfig::default()).unwrap();
        assert_eq!((rep.records, rep.torn_tail), (got.len(), None));
        assert!(!rep.msgids.rewritten);
        assert_eq!(restored.newest_id(), got.len() as u64);
        assert_eq!(
            std::fs::read_to_string(dest.join("usernames.db")).unwrap(),
            accounts_text
        );
    }
    stop.store(true, Ordering::Relaxed);
    let sent = writer.join().unwrap();
    assert!(sent > 0);
}

#[test]
fn a_destination_must_be_new_or_empty() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(MessageStore::open(&data, StoreConfig::default()).unwrap());
    let full = dir.path().join("full");
    std::fs::create_dir(&full).unwrap();
    std::fs::write(full.join("x"), "keep me").unwrap();
    let e = backup(&data, &full).unwrap_err();
    assert!(matches!(e, StoreError::BackupTarget { .. }), "{e}");
    assert!(e.to_string().contains("not empty"), "{e}");
    assert_eq!(std::fs::read_to_string(full.join("x")).unwrap(), "keep me");

    let empty = dir.path().join("empty");
    std::fs::create_dir(&empty).unwrap();
    backup(&data, &empty).unwrap();
    assert!(verify_backup(&empty).unwrap().problems.is_empty());

    let e = backup(&dir.path().join("nothing"), &dir.path().join("b")).unwrap_err();
    assert!(e.to_string().contains("not a data dir"), "{e}");
}

#[test]
fn a_full_destination_keeps_nothing_and_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, _) = MessageStore::open(&data, StoreConfig::default()).unwrap();
    for n in 0..100 {
        store.append(&user("bob"), &cmid(n), "some text").unwrap();
    }
    let dest = dir.path().join("b");
    BUDGET.set(Some(1000));
    let e = backup(&data, &dest).unwrap_err();
    BUDGET.set(None);
    let text = e.to_string();
    assert!(
        matches!(e, StoreError::BackupOutput { .. }) && text.contains("the destination is full"),
        "{text}"
    );
    assert!(text.contains("nothing was kept"), "{text}");
    assert!(!dest.exists());
    let left: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
    assert_eq!(left.len(), 1, "no partial copy is left beside: {left:?}");
    // The store is untouched and a later backup works.
    backup(&data, &dest).unwrap();
    assert_eq!(verify_backup(&dest).unwrap().records, 100);
}

#[test]
fn a_read_only_destination_is_a_clear_error() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(MessageStore::open(&data, StoreConfig::default()).unwrap());
    let ro = dir.path().join("ro");
    std::fs::create_dir(&ro).unwrap();
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o500)).unwrap();
    if std::fs::write(ro.join("probe"), "").is_err() {
        let e = backup(&data, &ro.join("b")).unwrap_err();
        let text = e.to_string();
        assert!(text.contains("no permission to write there"), "{text}");
        assert!(!ro.join("b").exists());
    } else {
        // Privileged (root ignores modes, and mounting a read-only file system needs more):
        // the file system's own answer, EROFS, is simulated at the first write instead.
        eprintln!("this user may write into a 0500 directory: simulating a read-only one");
        FAILS_AS.set(io::ErrorKind::ReadOnlyFilesystem);
        BUDGET.set(Some(0));
        let e = backup(&data, &dir.path().join("b"));
        BUDGET.set(None);
        FAILS_AS.set(io::ErrorKind::StorageFull);
        let text = e.unwrap_err().to_string();
        assert!(text.contains("the destination is read-only"), "{text}");
        assert!(!dir.path().join("b").exists());
    }
    std::fs::set_permissions(&ro, std::fs::Permissions::from_mode(0o700)).unwrap();
}

#[test]
fn verification_finds_a_missing_manifest_a_cut_one_and_a_changed_file() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, _) = MessageStore::open(&data, StoreConfig::default()).unwrap();
    for n in 0..10 {
        store
            .append_in(&Room::new("#dev").unwrap(), &user("bob"), &cmid(n), "x")
            .unwrap();
    }
    let dest = dir.path().join("b");
    let report = backup(&data, &dest).unwrap();
    assert_eq!(report.records, 10);
    assert!(report.files.iter().any(|f| f.name == "rooms/dev.db"));

    let manifest = dest.join(MANIFEST_FILE);
    let text = std::fs::read_to_string(&manifest).unwrap();
    std::fs::write(&manifest, &text[..text.len() - 8]).unwrap();
    let e = verify_backup(&dest).unwrap_err();
    assert!(e.to_string().contains("cut short") || e.to_string().contains("unexpected"));
    std::fs::write(&manifest, &text).unwrap();

    let dev = dest.join("rooms/dev.db");
    let mut body = std::fs::read(&dev).unwrap();
    body[0] = b'9';
    std::fs::write(&dev, body).unwrap();
    let found = verify_backup(&dest).unwrap().problems;
    assert!(
        found.len() == 1 && found[0].contains("rooms/dev.db: SHA-256"),
        "{found:?}"
    );

    std::fs::write(dest.join("rooms/extra.db"), "").unwrap();
    let found = verify_backup(&dest).unwrap().problems;
    assert!(
        found
            .iter()
            .any(|p| p.contains("rooms/extra.db is not in the manifest"))
    );

    std::fs::remove_file(&manifest).unwrap();
    let e = verify_backup(&dest).unwrap_err();
    assert!(e.to_string().contains("no BACKUP-COMPLETE"), "{e}");
}

#[test]
fn a_backup_killed_half_way_is_never_taken_for_one() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let (store, _) = MessageStore::open(&data, StoreConfig::default()).unwrap();
    for n in 0..20 {
        store.append(&user("bob"), &cmid(n), "text").unwrap();
    }
    // What a backup killed while copying leaves: the sibling, some files, no manifest.
    let dest = dir.path().join("b");
    let partial = dir.path().join(".b.backup-partial");
    std::fs::create_dir(&partial).unwrap();
    let db = std::fs::read(data.join(DATABASE_FILE)).unwrap();
    std::fs::write(partial.join(DATABASE_FILE), &db[..db.len() / 2]).unwrap();
    assert!(!dest.exists(), "no DEST until the copy is complete");
    let e = verify_backup(&partial).unwrap_err();
    assert!(matches!(e, StoreError::NotABackup { .. }), "{e}");
    // The next backup to the same place starts afresh.
    let report = backup(&data, &dest).unwrap();
    assert_eq!(report.records, 20);
    assert!(!partial.exists());
    assert!(verify_backup(&dest).unwrap().problems.is_empty());
}

/// Stores `data` as `who`'s upload and announces it in `room` by record `id`.
fn share(files: &crate::ContentStore, who: &str, data: &[u8], id: u64, room: &str) -> ContentHash {
    let hash = ContentHash::of(data);
    let mut up = files.begin(&user(who), hash, data.len() as u64).unwrap();
    let offset = up.offset();
    up.write(offset, &data[usize::try_from(offset).unwrap()..])
        .unwrap();
    up.finish().unwrap();
    files
        .announce(&crate::FileEntry {
            hash,
            size: data.len() as u64,
            username: user(who),
            timestamp: Timestamp::from_micros(1_700_000_000_000_000 + id),
            id,
            room: Room::new(room).unwrap(),
        })
        .unwrap();
    hash
}

#[test]
fn shared_files_are_copied_by_the_index_and_checked_by_their_hashes() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(MessageStore::open(&data, StoreConfig::default()).unwrap());
    let files = crate::ContentStore::open(&data).unwrap();
    let a = share(&files, "alice", b"the build log", 1, "#general");
    let b = share(&files, "bob", &vec![7u8; 3 * 1024 * 1024 + 5], 2, "#dev");
    share(&files, "carol", b"the build log", 3, "#dev");
    // An upload in progress, and an object no line announces: neither is copied.
    let mut up = files
        .begin(&user("dave"), ContentHash::of(b"half"), 4)
        .unwrap();
    up.write(0, b"ha").unwrap();
    drop(up);
    let orphan = ContentHash::of(b"orphan");
    let mut up = files.begin(&user("erin"), orphan, 6).unwrap();
    up.write(0, b"orphan").unwrap();
    up.finish().unwrap();

    let dest = dir.path().join("b");
    let report = backup(&data, &dest).unwrap();
    assert_eq!(report.objects, 2);
    assert!(report.missing_objects.is_empty() && report.damaged_objects.is_empty());
    let names: Vec<&str> = report.files.iter().map(|f| f.name.as_str()).collect();
    assert!(names.contains(&"files/index.db"), "{names:?}");
    for hash in [a, b] {
        let name = object_name(&hash);
        assert!(names.contains(&name.as_str()), "{name} in {names:?}");
        assert_eq!(
            std::fs::read(dest.join(&name)).unwrap(),
            std::fs::read(data.join(&name)).unwrap()
        );
    }
    assert!(!dest.join(object_name(&orphan)).exists(), "not announced");
    let partial = std::fs::read_dir(dest.join("files/partial")).unwrap();
    assert_eq!(partial.count(), 0, "uploads in progress stay");
    assert_eq!(
        std::fs::read(dest.join("files/index.db")).unwrap(),
        std::fs::read(data.join("files/index.db")).unwrap()
    );
    let check = verify_backup(&dest).unwrap();
    assert!(check.problems.is_empty(), "{:?}", check.problems);

    // A damaged object in the copy is named.
    let damaged = dest.join(object_name(&b));
    let mut body = std::fs::read(&damaged).unwrap();
    body[1000] ^= 1;
    std::fs::write(&damaged, &body).unwrap();
    let found = verify_backup(&dest).unwrap().problems;
    assert!(
        found.len() == 1 && found[0].contains(&format!("{}: SHA-256", object_name(&b))),
        "{found:?}"
    );
    // A missing one too.
    std::fs::remove_file(&damaged).unwrap();
    let found = verify_backup(&dest).unwrap().problems;
    assert!(
        found.len() == 1 && found[0].starts_with(&format!("{}: ", object_name(&b))),
        "{found:?}"
    );
    // An object that was not part of the copy.
    body[1000] ^= 1;
    std::fs::write(&damaged, &body).unwrap();
    let extra = dest
        .join(object_name(&a))
        .with_file_name(orphan.to_string());
    std::fs::write(&extra, b"orphan").unwrap();
    let found = verify_backup(&dest).unwrap().problems;
    assert!(
        found
            .iter()
            .any(|p| p.ends_with("is not in the manifest") && p.contains(&orphan.to_string())),
        "{found:?}"
    );
}

#[test]
fn an_announced_object_missing_or_damaged_in_the_data_dir_is_reported_not_fatal() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(MessageStore::open(&data, StoreConfig::default()).unwrap());
    let files = crate::ContentStore::open(&data).unwrap();
    let gone = share(&files, "alice", b"removed by hand", 1, "#general");
    let rotten = share(&files, "alice", b"bit rot", 2, "#general");
    std::fs::remove_file(data.join(object_name(&gone))).unwrap();
    std::fs::write(data.join(object_name(&rotten)), b"bit rut").unwrap();

    let dest = dir.path().join("b");
    let report = backup(&data, &dest).unwrap();
    assert_eq!(report.missing_objects, vec![gone]);
    assert_eq!(report.damaged_objects, vec![rotten]);
    let found = verify_backup(&dest).unwrap().problems;
    assert_eq!(found.len(), 2, "{found:?}");
    assert!(
        found
            .iter()
            .any(|p| p.contains("line 1 names") && p.contains(&gone.to_string()))
    );
    assert!(
        found
            .iter()
            .any(|p| p.starts_with(&object_name(&rotten)) && p.contains("damaged in the data dir")),
        "{found:?}"
    );
}

#[test]
fn a_data_dir_without_shared_files_backs_up_as_before() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    drop(MessageStore::open(&data, StoreConfig::default()).unwrap());
    let dest = dir.path().join("b");
    let report = backup(&data, &dest).unwrap();
    assert_eq!(report.objects, 0);
    assert!(report.files.iter().all(|f| !f.name.starts_with("files/")));
    assert!(!dest.join("files").exists());
    assert!(verify_backup(&dest).unwrap().problems.is_empty());
}
