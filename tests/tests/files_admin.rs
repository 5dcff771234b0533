//! The operator's side of shared files, as an operator runs it (the `gc-test-server` binary,
//! which runs gc-server's subcommands): `files list|remove|gc|verify` on a data dir whose
//! content was made with `gc_store::ContentStore`, beside a running server and without one, and
//! `db backup` / `db check` / a restore carrying the shared files.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use gc_protocol::{ContentHash, Room, Timestamp, Username};
use gc_store::{ContentStore, FileEntry};
use gc_tests::{TestServer, WAIT};

/// Runs `gc-server --data-dir DIR ARGS…` (through `gc-test-server DIR ARGS…`).
fn gc_server(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_gc-test-server"))
        .arg(dir)
        .args(args)
        .output()
        .unwrap()
}

/// As [`gc_server`], for a command that takes the data dir's lock just after a server on it
/// stopped: a child process another test forked meanwhile may hold a copy of that server's lock
/// until it execs, for a moment.
fn gc_server_locking(dir: &Path, args: &[&str]) -> Output {
    let deadline = Instant::now() + WAIT;
    loop {
        let out = gc_server(dir, args);
        if out.status.success()
            || !text(&out.stderr).contains("is locked")
            || Instant::now() > deadline
        {
            return out;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn stdout_ok(out: &Output) -> String {
    assert!(out.status.success(), "{out:?}");
    text(&out.stdout)
}

/// Stores `data` as `who`'s upload and announces it in `room` by record `id`.
fn share(store: &ContentStore, who: &str, data: &[u8], id: u64, room: &str) -> ContentHash {
    let who = Username::new(who).unwrap();
    let hash = ContentHash::of(data);
    let mut up = store.begin(&who, hash, data.len() as u64).unwrap();
    if !up.is_complete() {
        up.write(0, data).unwrap();
    }
    up.finish().unwrap();
    store
        .announce(&FileEntry {
            hash,
            size: data.len() as u64,
            username: who,
            timestamp: Timestamp::now(),
            id,
            room: Room::new(room).unwrap(),
        })
        .unwrap();
    hash
}

fn object(dir: &Path, hash: &ContentHash) -> PathBuf {
    let hex = hash.to_string();
    dir.join("files/objects").join(&hex[..2]).join(hex)
}

/// A data dir with two shared files (one announced twice) and an upload in progress.
fn data_dir_with_files(dir: &Path) -> (ContentHash, ContentHash) {
    // A data dir the server made, so that it has its message files.
    drop(TestServer::open(dir));
    let store = ContentStore::open(dir).unwrap();
    let big: Vec<u8> = (0..2_500_000u32).map(|i| (i % 251) as u8).collect();
    let log = share(&store, "alice", &big, 1, "#general");
    share(&store, "bob", &big, 2, "#dev");
    let notes = share(&store, "bob", b"meeting notes", 3, "#dev");
    let mut up = store
        .begin(
            &Username::new("carol").unwrap(),
            ContentHash::of(b"slow"),
            4,
        )
        .unwrap();
    up.write(0, b"sl").unwrap();
    (log, notes)
}

#[test]
fn files_commands_list_beside_a_server_and_change_only_without_one() {
    let dir = tempfile::tempdir().unwrap();
    let (log, notes) = data_dir_with_files(dir.path());

    let server = TestServer::open(dir.path());
    let listed = stdout_ok(&gc_server(dir.path(), &["files", "list"]));
    let lines: Vec<&str> = listed.lines().collect();
    let mut first: Vec<String> = vec![
        format!("{log}\t2500000\t2.4 MiB\talice,bob\t#dev,#general"),
        format!("{notes}\t13\t13 B\tbob\t#dev"),
    ];
    first.sort();
    for (line, start) in lines.iter().zip(&first) {
        assert!(line.starts_with(start.as_str()), "{line} / {start}");
    }
    assert_eq!(
        lines[2],
        "# total: 2 files, 2500013 bytes (2.4 MiB), 3 announcements, 0 not announced; 1 partial upload, 2 bytes (2 B)"
    );
    assert_eq!(
        lines[3],
        "# quota alice: 2500000 bytes (2.4 MiB) of 1073741824 (1.0 GiB), 0.2%"
    );
    assert_eq!(
        lines[4],
        "# quota bob: 2500013 bytes (2.4 MiB) of 1073741824 (1.0 GiB), 0.2%"
    );
    let partial = stdout_ok(&gc_server(
        dir.path(),
        &["files", "list", "--partial", "--user", "Carol"],
    ));
    assert!(
        partial.starts_with(&format!("{}\tcarol\t2\t2 B\t", ContentHash::of(b"slow"))),
        "{partial}"
    );
    assert!(stdout_ok(&gc_server(dir.path(), &["files", "verify"])).ends_with(": ok\n"));

    // Changes wait for the server to stop.
    for args in [
        &["files", "remove", &notes.to_string()][..],
        &["files", "gc", "--dry-run"][..],
    ] {
        let out = gc_server(dir.path(), args);
        assert!(!out.status.success(), "{args:?}: {out:?}");
        let said = text(&out.stderr);
        assert!(
            said.contains("a gc-server is running on this data dir") && said.contains("stop it"),
            "{said}"
        );
    }
    assert!(object(dir.path(), &notes).exists());
    drop(server);

    let out = gc_server(dir.path(), &["files", "remove", "sha256:123"]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("64 hex digits"), "{out:?}");
    let unknown = ContentHash::of(b"never shared");
    let out = gc_server_locking(dir.path(), &["files", "remove", &unknown.to_string()]);
    assert!(!out.status.success());
    assert!(text(&out.stderr).contains("no shared file has"), "{out:?}");

    let removed = stdout_ok(&gc_server_locking(
        dir.path(),
        &["files", "remove", &format!("sha256:{notes}")],
    ));
    assert!(
        removed.starts_with(&format!("removed {notes}: 13 bytes (13 B)"))
            && removed.contains("answered unknown-file"),
        "{removed}"
    );
    assert!(!object(dir.path(), &notes).exists());
    let listed = stdout_ok(&gc_server(dir.path(), &["files", "list"]));
    assert!(!listed.contains(&notes.to_string()), "{listed}");
    assert!(listed.contains("# quota bob: 2500000 bytes"), "{listed}");

    // Nothing is old enough for gc yet.
    let gc = stdout_ok(&gc_server_locking(dir.path(), &["files", "gc"]));
    assert_eq!(gc, "# removed 0 files, freed 0 bytes (0 B)\n");

    // Damage is found and named, with a failing exit code.
    let path = object(dir.path(), &log);
    let mut body = std::fs::read(&path).unwrap();
    body[12345] ^= 0x20;
    std::fs::write(&path, body).unwrap();
    let out = gc_server(dir.path(), &["files", "verify"]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = text(&out.stdout);
    assert!(
        said.starts_with(&format!("damaged\t{log}\t{}", path.display())),
        "{said}"
    );
}

#[test]
fn a_backup_holds_the_shared_files_checks_them_and_restores_them() {
    let dir = tempfile::tempdir().unwrap();
    let (log, notes) = data_dir_with_files(dir.path());
    let listed = stdout_ok(&gc_server(dir.path(), &["files", "list"]));
    let place = tempfile::tempdir().unwrap();
    let dest = place.path().join("backup");
    let dest_arg = dest.to_str().unwrap();

    // Made while the server runs, as a backup is.
    let server = TestServer::open(dir.path());
    let said = stdout_ok(&gc_server(dir.path(), &["db", "backup", dest_arg]));
    assert!(
        said.contains("shared files: files/index.db and the 2 stored files it names"),
        "{said}"
    );
    drop(server);
    let partial = std::fs::read_dir(dest.join("files/partial")).unwrap();
    assert_eq!(partial.count(), 0, "uploads in progress stay behind");
    let checked = stdout_ok(&gc_server(dir.path(), &["db", "check", dest_arg]));
    assert!(checked.ends_with("ok\n"), "{checked}");

    // The documented restore; the files list as they did.
    let fresh = tempfile::tempdir().unwrap();
    crate::backup::restore(&dest, fresh.path());
    let restored = stdout_ok(&gc_server(fresh.path(), &["files", "list"]));
    let files = |listing: &str| -> Vec<String> {
        listing
            .lines()
            .filter(|l| !l.starts_with("# total"))
            .map(str::to_owned)
            .collect()
    };
    assert_eq!(files(&restored), files(&listed));
    assert!(restored.contains("0 partial uploads"), "{restored}");
    assert!(stdout_ok(&gc_server(fresh.path(), &["files", "verify"])).ends_with(": ok\n"));
    drop(TestServer::open(fresh.path()));

    // One object damaged in the backup: the check fails and names it.
    let damaged = object(&dest, &notes);
    std::fs::write(&damaged, b"meeting nodes").unwrap();
    let out = gc_server(dir.path(), &["db", "check", dest_arg]);
    assert_eq!(out.status.code(), Some(1), "{out:?}");
    let said = text(&out.stdout);
    let hex = notes.to_string();
    assert!(
        said.contains(&format!("files/objects/{}/{hex}: SHA-256", &hex[..2]))
            && said.contains("do not restore from it"),
        "{said}"
    );
    assert!(
        !said.contains(&log.to_string()),
        "only the damaged one: {said}"
    );
}
