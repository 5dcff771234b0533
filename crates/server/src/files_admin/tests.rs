use std::fs::File;
use std::time::Duration;

use gc_protocol::Room;

use super::*;

fn config(dir: &Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    }
}

fn user(name: &str) -> Username {
    Username::new(name).unwrap()
}

/// Stores `data` as `who`'s upload and announces it in `room` by record `id`.
fn share(store: &ContentStore, who: &str, data: &[u8], id: u64, room: &str) -> ContentHash {
    let hash = ContentHash::of(data);
    let mut up = store.begin(&user(who), hash, data.len() as u64).unwrap();
    if !up.is_complete() {
        up.write(0, data).unwrap();
    }
    up.finish().unwrap();
    store
        .announce(&FileEntry {
            hash,
            size: data.len() as u64,
            username: user(who),
            // 2023-11-14T22:13:20Z, a second per id later.
            timestamp: Timestamp::from_micros((1_700_000_000 + id) * 1_000_000),
            id,
            room: Room::new(room).unwrap(),
        })
        .unwrap();
    hash
}

fn run(cmd: FilesCommand, config: &Config) -> (bool, String) {
    let mut out = Vec::new();
    let ok = files(&cmd, config, &mut out).unwrap();
    (ok, String::from_utf8(out).unwrap())
}

fn list(config: &Config, partial: bool, user: Option<&str>) -> String {
    run(
        FilesCommand::List {
            partial,
            user: user.map(str::to_owned),
        },
        config,
    )
    .1
}

fn object_path(dir: &Path, hash: &ContentHash) -> std::path::PathBuf {
    let hex = hash.to_string();
    dir.join("files/objects").join(&hex[..2]).join(hex)
}

fn set_mtime(path: &Path, ago: Duration) {
    File::options()
        .write(true)
        .open(path)
        .unwrap()
        .set_modified(SystemTime::now() - ago)
        .unwrap();
}

#[test]
fn sizes_read_in_binary_units() {
    assert_eq!(human_size(0), "0 B");
    assert_eq!(human_size(1023), "1023 B");
    assert_eq!(human_size(1024), "1.0 KiB");
    assert_eq!(human_size(1536), "1.5 KiB");
    assert_eq!(human_size(1_482_213), "1.4 MiB");
    assert_eq!(human_size(1024 * 1024 * 1024), "1.0 GiB");
    assert_eq!(human_size(u64::MAX), "16.0 EiB");
}

#[test]
fn hashes_are_taken_as_lists_and_records_show_them() {
    let h = ContentHash::of(b"x");
    assert_eq!(content_hash(&h.to_string()).unwrap(), h);
    assert_eq!(content_hash(&format!("sha256:{h}")).unwrap(), h);
    assert_eq!(
        content_hash(&h.to_string().to_ascii_uppercase()).unwrap(),
        h
    );
    for bad in ["", "abc", &h.to_string()[1..], &format!("{h}0")] {
        let e = content_hash(bad).unwrap_err();
        assert!(
            matches!(e, ServerError::Usage(_)) && e.to_string().contains("64 hex digits"),
            "{e}"
        );
    }
}

#[test]
fn a_data_dir_without_files_lists_nothing_and_is_left_alone() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let said = list(&c, false, None);
    assert_eq!(
        said,
        "# total: 0 files, 0 bytes (0 B), 0 announcements, 0 not announced; 0 partial uploads, 0 \
         bytes (0 B)\n"
    );
    let (ok, said) = run(FilesCommand::Verify, &c);
    assert!(ok && said.ends_with(": ok\n"), "{said}");
    assert!(!dir.path().join("files").exists(), "reading made nothing");
}

#[test]
fn the_list_has_one_line_per_file_and_the_quota_of_each_user() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let log = share(&store, "Alice", &vec![1u8; 1_482_213], 1, "#general");
    share(&store, "bob", &vec![1u8; 1_482_213], 2, "#dev");
    share(&store, "alice", &vec![1u8; 1_482_213], 3, "#dev");
    let small = share(&store, "bob", b"small", 4, "#dev");
    let orphan = ContentHash::of(b"orphan");
    let mut up = store.begin(&user("carol"), orphan, 6).unwrap();
    up.write(0, b"orphan").unwrap();
    up.finish().unwrap();
    let mut up = store
        .begin(&user("dave"), ContentHash::of(b"half done"), 9)
        .unwrap();
    up.write(0, b"half").unwrap();
    drop(up);
    let mut c = config(dir.path());
    c.user_quota_bytes = 2 * 1024 * 1024;

    let said = list(&c, false, None);
    let lines: Vec<&str> = said.lines().collect();
    let mut expected = vec![
        format!("{log}\t1482213\t1.4 MiB\tAlice,bob\t#dev,#general\t2023-11-14T22:13:21Z\t3"),
        format!("{small}\t5\t5 B\tbob\t#dev\t2023-11-14T22:13:24Z\t1"),
        format!("{orphan}\t6\t6 B\t-\t-\t-\t0"),
    ];
    expected.sort();
    assert_eq!(lines[..3], expected, "{said}");
    assert_eq!(
        lines[3..],
        [
            "# total: 3 files, 1482224 bytes (1.4 MiB), 4 announcements, 1 not announced; 1 \
             partial upload, 4 bytes (4 B)",
            "# quota Alice: 1482213 bytes (1.4 MiB) of 2097152 (2.0 MiB), 70.6%",
            "# quota bob: 1482218 bytes (1.4 MiB) of 2097152 (2.0 MiB), 70.6%",
        ],
        "{said}"
    );

    // One user's: what they announced, their quota only.
    let said = list(&c, false, Some("ALICE"));
    assert!(said.starts_with(&format!("{log}\t")), "{said}");
    assert_eq!(said.lines().filter(|l| !l.starts_with('#')).count(), 1);
    assert!(said.contains("# quota Alice: 1482213 bytes"), "{said}");
    assert!(!said.contains("bob:"), "{said}");
    let said = list(&c, false, Some("nobody"));
    assert!(said.contains("# quota nobody: 0 bytes (0 B)"), "{said}");

    // The uploads in progress.
    let said = list(&c, true, None);
    let first = said.lines().next().unwrap();
    let fields: Vec<&str> = first.split('\t').collect();
    assert_eq!(
        fields[..4],
        [
            ContentHash::of(b"half done").to_string().as_str(),
            "dave",
            "4",
            "4 B"
        ],
        "{said}"
    );
    assert!(
        fields[4].ends_with('Z') && fields[5].ends_with('s'),
        "{said}"
    );
    assert!(list(&c, true, Some("bob")).starts_with("# total"));

    // No quota: said so.
    c.user_quota_bytes = 0;
    assert!(
        list(&c, false, Some("bob")).contains("# quota bob: 1482218 bytes (1.4 MiB), no quota")
    );

    let e = files(
        &FilesCommand::List {
            partial: false,
            user: Some("no one".into()),
        },
        &c,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("not a valid username"), "{e}");
}

#[test]
fn remove_takes_the_content_and_its_lines_and_says_what_stays() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let gone = share(&store, "alice", b"to remove", 1, "#general");
    share(&store, "bob", b"to remove", 2, "#dev");
    let kept = share(&store, "bob", b"to keep", 3, "#dev");
    drop(store);
    let c = config(dir.path());

    let (ok, said) = run(
        FilesCommand::Remove {
            hash: format!("sha256:{gone}"),
        },
        &c,
    );
    assert!(ok);
    assert_eq!(
        said,
        format!(
            "removed {gone}: 9 bytes (9 B) and its 2 lines in files/index.db\nthe 2 records that \
             announced it stay; fetching it is now answered unknown-file\n"
        )
    );
    assert!(!object_path(dir.path(), &gone).exists());
    let said = list(&c, false, None);
    assert!(!said.contains(&gone.to_string()) && said.contains(&kept.to_string()));
    assert!(!said.contains("alice"), "no quota used: {said}");

    let e = files(
        &FilesCommand::Remove {
            hash: gone.to_string(),
        },
        &c,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(
        matches!(e, ServerError::Usage(_)) && e.to_string().contains("no shared file has"),
        "{e}"
    );

    // Refused while a server holds the data dir.
    let held = DataDirLock::acquire(dir.path()).unwrap();
    let e = files(
        &FilesCommand::Remove {
            hash: kept.to_string(),
        },
        &c,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(e.to_string().contains("a gc-server is running"), "{e}");
    assert!(object_path(dir.path(), &kept).exists());
    // Reading is not.
    assert!(list(&c, false, None).contains(&kept.to_string()));
    drop(held);
}

#[test]
fn gc_removes_abandoned_uploads_and_old_unannounced_content_and_dry_run_only_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let announced = share(&store, "alice", b"announced", 1, "#general");
    let stored = |data: &[u8]| {
        let hash = ContentHash::of(data);
        let mut up = store.begin(&user("bob"), hash, data.len() as u64).unwrap();
        up.write(0, data).unwrap();
        up.finish().unwrap();
        hash
    };
    let old = stored(b"old and unannounced");
    let young = stored(b"young and unannounced");
    let partial = |data: &[u8]| {
        let hash = ContentHash::of(data);
        let mut up = store.begin(&user("carol"), hash, 100).unwrap();
        up.write(0, data).unwrap();
        hash
    };
    let abandoned = partial(b"abandoned");
    let fresh = partial(b"fresh");
    drop(store);
    let day = Duration::from_secs(24 * 3600);
    set_mtime(&object_path(dir.path(), &announced), 30 * day);
    set_mtime(
        &object_path(dir.path(), &old),
        day + Duration::from_secs(60),
    );
    let partial_dir = dir.path().join("files/partial");
    set_mtime(&partial_dir.join(format!("carol.{abandoned}")), 2 * day);
    let mut c = config(dir.path());
    c.abandoned_upload = day;

    let (ok, said) = run(FilesCommand::Gc { dry_run: true }, &c);
    assert!(ok);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(lines.len(), 3, "{said}");
    assert!(
        lines[0].starts_with(&format!("partial\t{abandoned}\tcarol\t9\t")),
        "{said}"
    );
    assert!(
        lines[1].starts_with(&format!("unannounced\t{old}\t-\t19\t")),
        "{said}"
    );
    assert_eq!(
        lines[2],
        "# dry run: would remove 2 files and free 28 bytes (28 B); nothing was changed"
    );
    assert!(object_path(dir.path(), &old).exists());

    let (_, removed) = run(FilesCommand::Gc { dry_run: false }, &c);
    assert_eq!(removed.lines().take(2).collect::<Vec<_>>(), lines[..2]);
    assert!(
        removed.ends_with("# removed 2 files, freed 28 bytes (28 B)\n"),
        "{removed}"
    );
    assert!(!object_path(dir.path(), &old).exists());
    assert!(!partial_dir.join(format!("carol.{abandoned}")).exists());
    for kept in [announced, young] {
        assert!(object_path(dir.path(), &kept).exists());
    }
    assert!(partial_dir.join(format!("carol.{fresh}")).exists());
    let (_, again) = run(FilesCommand::Gc { dry_run: false }, &c);
    assert_eq!(again, "# removed 0 files, freed 0 bytes (0 B)\n");

    let _held = DataDirLock::acquire(dir.path()).unwrap();
    let e = files(&FilesCommand::Gc { dry_run: true }, &c, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("its own cleaner"), "{e}");
}

#[test]
fn verify_names_damaged_and_missing_content() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let good = share(&store, "alice", b"good", 1, "#general");
    let rotten = share(&store, "alice", b"rotten", 2, "#general");
    let gone = share(&store, "bob", b"gone", 3, "#dev");
    drop(store);
    let c = config(dir.path());
    let (ok, said) = run(FilesCommand::Verify, &c);
    assert!(ok, "{said}");
    assert_eq!(said, "# checked 3 stored files (14 bytes, 14 B): ok\n");

    std::fs::write(object_path(dir.path(), &rotten), b"rotted").unwrap();
    std::fs::remove_file(object_path(dir.path(), &gone)).unwrap();
    let (ok, said) = run(FilesCommand::Verify, &c);
    assert!(!ok);
    let lines: Vec<&str> = said.lines().collect();
    assert_eq!(
        lines[0],
        format!(
            "damaged\t{rotten}\t{}",
            object_path(dir.path(), &rotten).display()
        )
    );
    assert_eq!(lines[1], format!("missing\t{gone}\t1"));
    assert!(
        lines[2].starts_with("# checked 2 stored files (10 bytes, 10 B): 1 damaged, 1 announced")
            && !said.contains(&good.to_string()),
        "{said}"
    );
}

#[test]
fn with_postgresql_an_unreachable_database_is_named_without_its_password() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    // A port nothing listens on (the tests with a real database are in tests/tests/postgres.rs).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .unwrap()
        .port();
    c.store = Some(format!("postgres://gc:secret@127.0.0.1:{port}/gc"));
    let e = files(&FilesCommand::Verify, &c, &mut Vec::new()).unwrap_err();
    let text = e.to_string();
    assert!(text.contains(&format!("127.0.0.1:{port}")), "{text}");
    assert!(!text.contains("secret"), "{text}");
}
