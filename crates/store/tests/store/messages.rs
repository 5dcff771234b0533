//! MessageStore: open, append, recovery, locking, dedupe, concurrency, queries.

use std::collections::HashSet;
use std::fs;
use std::sync::{Arc, Barrier};
use std::thread;

use gc_protocol::types::{ClientMsgId, Record, Timestamp, Username};
use gc_store::{
    DataDirLock, FsyncPolicy, LineError, MessageStore, StoreError, check, encode_record, repair,
};

use crate::support::{cmid, config, open, read, rec, user};

fn encode_all(records: &[Record]) -> Vec<u8> {
    let mut out = Vec::new();
    for r in records {
        encode_record(r, &mut out);
    }
    out
}

#[test]
fn open_creates_dir_and_files() {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path().join("a/b");
    let (s, rep) = open(&dir);
    assert!(dir.join("database.db").exists() && dir.join("database.msgids").exists());
    assert_eq!(
        (rep.records, rep.first_id, rep.last_id, rep.torn_tail),
        (0, 0, 0, None)
    );
    assert_eq!((s.newest_id(), s.len(), s.is_empty()), (0, 0, true));
    assert!(s.after(0, 10, u64::MAX).unwrap().is_empty());
    assert!(s.before(0, 10).unwrap().is_empty());
    assert_eq!(s.get(1).unwrap(), None);
    assert_eq!(s.last_n_start(5), 0);
}

#[test]
fn ids_continue_across_reopen() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let mut seen = Vec::new();
        for round in 0..3 {
            let (s, rep) = MessageStore::open(dir.path(), config(policy, 10)).unwrap();
            assert_eq!(rep.records, round * 2);
            for i in 0..2 {
                let a = s
                    .append(&user("alice"), &cmid(&format!("r{round}m{i}")), "hi")
                    .unwrap();
                assert!(!a.duplicate);
                seen.push(a.id);
            }
        }
        assert_eq!(seen, vec![1, 2, 3, 4, 5, 6], "{policy}");
        let text = read(&dir.path().join("database.db"));
        assert_eq!(text.lines().count(), 6);
        assert!(text.lines().all(|l| l.ends_with(";alice;hi")));
    }
}

#[test]
fn append_stores_the_exact_line() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(dir.path());
    let body = "semi;colon \\ back\nslash\r\0end";
    let a = s.append(&user("Bob"), &cmid("x"), body).unwrap();
    let expect = format!(
        "1;{};Bob;semi;colon \\\\ back\\nslash\\r\0end\n",
        a.timestamp
    );
    drop(s);
    assert_eq!(read(&dir.path().join("database.db")), expect);
    assert_eq!(read(&dir.path().join("database.msgids")), "1;Bob;x\n");
    let (s, _) = open(dir.path());
    assert_eq!(s.get(1).unwrap().unwrap().body, body);
}

#[test]
fn second_open_is_locked_and_names_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(dir.path());
    let err = MessageStore::open(dir.path(), Default::default()).unwrap_err();
    let StoreError::Locked { path } = &err else {
        panic!("expected Locked, got {err:?}");
    };
    assert_eq!(path, &dir.path().join("database.db"));
    let msg = err.to_string();
    assert!(
        msg.contains("database.db") && msg.contains("another gc-server may be running"),
        "{msg}"
    );
    // Admin commands that change the data dir are refused too; check is not.
    assert!(matches!(
        DataDirLock::acquire(dir.path()),
        Err(StoreError::Locked { .. })
    ));
    assert!(matches!(repair(dir.path()), Err(StoreError::Locked { .. })));
    assert!(check(dir.path()).unwrap().is_ok());
    drop(s);
    let _again = open(dir.path());
}

#[test]
fn torn_tail_is_moved_aside_and_appends_continue() {
    let dir = tempfile::tempdir().unwrap();
    let good = encode_all(&[
        rec(1, "1640995200.1", "alice", "one"),
        rec(2, "1640995200.2", "bob", "two"),
    ]);
    let mut content = good.clone();
    content.extend_from_slice(b"3;1640995200.3;alice;thr");
    fs::write(dir.path().join("database.db"), &content).unwrap();

    let (s, rep) = open(dir.path());
    let torn = rep.torn_tail.unwrap();
    assert_eq!(
        (torn.line_number, torn.offset, torn.len),
        (3, good.len() as u64, 24)
    );
    assert_eq!(torn.reason, LineError::Torn);
    assert_eq!((rep.records, rep.last_id), (2, 2));
    let corrupt = read(&dir.path().join("database.db.corrupt"));
    assert!(corrupt.starts_with("# gc-store "), "{corrupt}");
    assert!(
        corrupt.contains("line 3 of database.db (24 bytes)"),
        "{corrupt}"
    );
    assert!(
        corrupt.ends_with("\n3;1640995200.3;alice;thr\n"),
        "{corrupt}"
    );
    let a = s.append(&user("carol"), &cmid("c"), "three").unwrap();
    assert_eq!(a.id, 3);
    assert!(a.timestamp >= Timestamp::parse("1640995200.2").unwrap());
    drop(s);
    let text = read(&dir.path().join("database.db"));
    assert!(text.starts_with(std::str::from_utf8(&good).unwrap()));
    assert!(text.ends_with(";carol;three\n"));
    assert_eq!(text.lines().count(), 3);
    assert!(check(dir.path()).unwrap().is_ok());
}

#[test]
fn invalid_last_line_with_lf_is_moved_aside_too() {
    let dir = tempfile::tempdir().unwrap();
    let mut content = encode_all(&[rec(1, "1", "a", "x")]);
    content.extend_from_slice(b"\0\0\0\0garbage\n");
    fs::write(dir.path().join("database.db"), &content).unwrap();
    let (s, rep) = open(dir.path());
    assert_eq!(
        rep.torn_tail.map(|t| (t.line_number, t.reason)),
        Some((2, LineError::Fields))
    );
    assert_eq!(s.len(), 1);
}

#[test]
fn bad_middle_line_is_an_error_and_repair_moves_it_aside() {
    let dir = tempfile::tempdir().unwrap();
    let db = dir.path().join("database.db");
    let mut content = encode_all(&[rec(1, "1", "a", "one")]);
    content.extend_from_slice(b"2;1;a;bad \\q escape\n");
    content.extend_from_slice(&encode_all(&[rec(3, "3", "a", "three")]));
    content.extend_from_slice(b"2;4;a;not increasing\n");
    content.extend_from_slice(&encode_all(&[rec(5, "5", "a", "five")]));
    fs::write(&db, &content).unwrap();

    let err = MessageStore::open(dir.path(), Default::default()).unwrap_err();
    match &err {
        StoreError::BadLine {
            path,
            line_number,
            reason,
        } => {
            assert_eq!((path, *line_number, *reason), (&db, 2, LineError::Escape));
        }
        other => panic!("expected BadLine, got {other:?}"),
    }
    let msg = err.to_string();
    assert!(
        msg.contains("line 2 of") && msg.contains("gc-server db repair"),
        "{msg}"
    );
    assert_eq!(fs::read(&db).unwrap(), content, "open changed nothing");

    let c = check(dir.path()).unwrap();
    assert_eq!((c.lines, c.records, c.bad_line_count), (5, 3, 2));
    assert_eq!(
        c.bad_lines
            .iter()
            .map(|b| (b.line_number, b.reason))
            .collect::<Vec<_>>(),
        vec![
            (2, LineError::Escape),
            (4, LineError::NotIncreasing { id: 2, previous: 3 })
        ]
    );

    let r = repair(dir.path()).unwrap();
    assert_eq!((r.lines, r.kept, r.moved_count), (5, 3, 2));
    assert_eq!(
        r.moved.iter().map(|m| m.line_number).collect::<Vec<_>>(),
        vec![2, 4]
    );
    assert!(!dir.path().join("database.db.tmp").exists());
    let corrupt = read(&dir.path().join("database.db.corrupt"));
    assert!(
        corrupt.contains("line 2 of database.db") && corrupt.contains("2;1;a;bad \\q escape\n")
    );
    assert!(
        corrupt.contains("line 4 of database.db") && corrupt.contains("2;4;a;not increasing\n")
    );
    assert_eq!(
        fs::read(&db).unwrap(),
        encode_all(&[
            rec(1, "1", "a", "one"),
            rec(3, "3", "a", "three"),
            rec(5, "5", "a", "five")
        ])
    );
    // A second repair has nothing to do.
    assert_eq!(repair(dir.path()).unwrap().moved_count, 0);

    let (s, rep) = open(dir.path());
    assert_eq!((rep.records, rep.first_id, rep.last_id), (3, 1, 5));
    // Ids have a gap now; queries do not assume contiguity.
    assert_eq!(s.get(2).unwrap(), None);
    assert_eq!(ids(&s.after(1, 10, u64::MAX).unwrap()), vec![3, 5]);
    assert_eq!(ids(&s.before(5, 10).unwrap()), vec![1, 3]);
    assert_eq!(s.last_n_start(2), 1);
    assert_eq!(s.append(&user("a"), &cmid("n"), "six").unwrap().id, 6);
}

#[test]
fn msgids_beyond_the_last_record_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    {
        let (s, _) = open(dir.path());
        s.append(&user("alice"), &cmid("m1"), "one").unwrap();
        s.append(&user("alice"), &cmid("m2"), "two").unwrap();
    }
    // As after a crash between the msgids fsync and the record write.
    let msgids = dir.path().join("database.msgids");
    let mut text = read(&msgids);
    text.push_str("3;alice;m3\n4;alice;m4\n5;ali");
    fs::write(&msgids, text).unwrap();

    let (s, rep) = open(dir.path());
    assert_eq!(rep.msgids.dropped_beyond_last, 2);
    assert_eq!(rep.msgids.dropped_torn.map(|t| t.line_number), Some(5));
    assert!(rep.msgids.rewritten);
    assert_eq!(read(&msgids), "1;alice;m1\n2;alice;m2\n");
    // m3 never became a record: sending it again stores it.
    let a = s.append(&user("alice"), &cmid("m3"), "three").unwrap();
    assert_eq!((a.id, a.duplicate), (3, false));
    assert_eq!(s.append(&user("alice"), &cmid("m2"), "two").unwrap().id, 2);
}

#[test]
fn dedupe_survives_reopen_and_ignores_username_case() {
    let dir = tempfile::tempdir().unwrap();
    let first = {
        let (s, _) = open(dir.path());
        let a = s.append(&user("Alice"), &cmid("k1"), "hello").unwrap();
        // Same process: a retry is a duplicate, and stores nothing.
        let b = s
            .append(&user("alice"), &cmid("k1"), "hello again")
            .unwrap();
        assert_eq!((b.id, b.timestamp, b.duplicate), (a.id, a.timestamp, true));
        // Another user with the same client-msg-id is another message.
        assert!(!s.append(&user("bob"), &cmid("k1"), "x").unwrap().duplicate);
        assert_eq!(s.len(), 2);
        a
    };
    let (s, _) = open(dir.path());
    let b = s.append(&user("ALICE"), &cmid("k1"), "hello").unwrap();
    assert_eq!(
        (b.id, b.timestamp, b.duplicate),
        (first.id, first.timestamp, true)
    );
    assert_eq!(
        s.lookup_msgid(&user("aLiCe"), &cmid("k1")),
        Some((first.id, first.timestamp))
    );
    assert_eq!(s.lookup_msgid(&user("alice"), &cmid("K1")), None);
    assert_eq!(s.len(), 2);
}

#[test]
fn msgid_window_limits_memory_and_compacts_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = |w| gc_store::StoreConfig {
        msgid_window: w,
        ..config(FsyncPolicy::Never, 10)
    };
    {
        let (s, _) = MessageStore::open(dir.path(), cfg(3)).unwrap();
        for i in 0..7 {
            s.append(&user("u"), &cmid(&format!("c{i}")), "b").unwrap();
        }
        // Only the newest 3 are remembered.
        assert_eq!(s.lookup_msgid(&user("u"), &cmid("c3")), None);
        assert!(s.lookup_msgid(&user("u"), &cmid("c4")).is_some());
    }
    let (s, rep) = MessageStore::open(dir.path(), cfg(3)).unwrap();
    assert_eq!((rep.msgids.compacted, rep.msgids.kept), (4, 3));
    assert_eq!(read(&dir.path().join("database.msgids")).lines().count(), 3);
    assert!(s.append(&user("u"), &cmid("c6"), "b").unwrap().duplicate);
    assert!(!s.append(&user("u"), &cmid("c0"), "b").unwrap().duplicate);
}

#[test]
fn concurrent_batch_appenders_get_unique_contiguous_ids() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = MessageStore::open(dir.path(), config(FsyncPolicy::Batch, 100)).unwrap();
    let s = Arc::new(s);
    let (threads, per) = (16, 150);
    let handles: Vec<_> = (0..threads)
        .map(|t| {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                let mut got = Vec::new();
                let mut last = 0;
                for i in 0..per {
                    let a = s
                        .append(
                            &user(&format!("u{t}")),
                            &cmid(&format!("m{i}")),
                            &format!("{t}/{i}"),
                        )
                        .unwrap();
                    assert!(a.id > last, "one thread's ids increase");
                    // Acknowledged means visible.
                    assert!(s.newest_id() >= a.id);
                    last = a.id;
                    got.push(a.id);
                }
                got
            })
        })
        .collect();
    let mut all: Vec<u64> = handles
        .into_iter()
        .flat_map(|h| h.join().unwrap())
        .collect();
    all.sort_unstable();
    assert_eq!(all, (1..=(threads * per) as u64).collect::<Vec<_>>());
    let records = s.after(0, usize::MAX, u64::MAX).unwrap();
    assert_eq!(records.len(), threads * per);
    assert!(
        records
            .windows(2)
            .all(|w| w[0].id < w[1].id && w[0].timestamp <= w[1].timestamp)
    );
    drop(s);
    let c = check(dir.path()).unwrap();
    assert!(c.is_ok() && c.records == (threads * per) as u64 && c.timestamps_monotonic);
    assert_eq!(c.msgids_lines, c.records);
    assert_eq!(open(dir.path()).1.records, threads * per);
}

#[test]
fn concurrent_duplicates_store_one_record() {
    for policy in [FsyncPolicy::Batch, FsyncPolicy::Always, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = MessageStore::open(dir.path(), config(policy, 100)).unwrap();
        let s = Arc::new(s);
        for round in 0..10 {
            let threads = 8;
            let barrier = Arc::new(Barrier::new(threads));
            let handles: Vec<_> = (0..threads)
                .map(|t| {
                    let (s, barrier) = (Arc::clone(&s), Arc::clone(&barrier));
                    // The same user in different spellings.
                    let name = if t % 2 == 0 { "Dup" } else { "dUP" };
                    thread::spawn(move || {
                        barrier.wait();
                        s.append(&user(name), &cmid(&format!("same{round}")), "x")
                            .unwrap()
                    })
                })
                .collect();
            let results: Vec<_> = handles.into_iter().map(|h| h.join().unwrap()).collect();
            assert_eq!(
                results.iter().filter(|a| !a.duplicate).count(),
                1,
                "{policy}"
            );
            assert_eq!(
                results
                    .iter()
                    .map(|a| (a.id, a.timestamp))
                    .collect::<HashSet<_>>()
                    .len(),
                1
            );
        }
        assert_eq!(s.len(), 10, "{policy}");
    }
}

/// The ids of `records` (owned, or shared as the store's pages hold them).
fn ids<R: std::borrow::Borrow<Record>>(records: &[R]) -> Vec<u64> {
    records.iter().map(|r| r.borrow().id).collect()
}

/// Runs every query at its boundaries; the answers must not depend on the tail capacity.
fn query_answers(s: &MessageStore) -> Vec<Vec<Record>> {
    let n = s.newest_id();
    let mut out = vec![
        s.after(n, 10, u64::MAX).unwrap(),
        s.after(0, 100, u64::MAX).unwrap(),
        s.after(0, 5, u64::MAX).unwrap(),
        s.after(n - 3, 100, u64::MAX).unwrap(),
        s.after(7, 4, u64::MAX).unwrap(),
        s.after(7, 0, u64::MAX).unwrap(),
        s.after(0, 100, 1).unwrap(),
        s.after(n - 1, 100, 1).unwrap(),
        s.after(u64::MAX, 10, u64::MAX).unwrap(),
        s.before(0, 3).unwrap(),
        s.before(0, 100).unwrap(),
        s.before(1, 10).unwrap(),
        s.before(2, 10).unwrap(),
        s.before(10, 4).unwrap(),
        s.before(10, 0).unwrap(),
        s.before(u64::MAX, 2).unwrap(),
        s.after(s.last_n_start(5), 100, u64::MAX).unwrap(),
        s.after(s.last_n_start(0), 100, u64::MAX).unwrap(),
        s.after(s.last_n_start(1000), 100, u64::MAX).unwrap(),
    ];
    for id in [0, 1, 10, n, n + 1] {
        out.push(s.get(id).unwrap().into_iter().collect());
    }
    out
}

#[test]
fn queries_at_boundaries_tail_and_file_agree() {
    let dir = tempfile::tempdir().unwrap();
    let records: Vec<Record> = (1..=20)
        .map(|i| {
            rec(
                i,
                &format!("{}", 1000 + i - 1),
                "u",
                &format!("message {i}\nline"),
            )
        })
        .collect();
    fs::write(dir.path().join("database.db"), encode_all(&records)).unwrap();
    let line_len = encode_all(&records[..1]).len() as u64;

    let mut answers = Vec::new();
    for tail in [0, 3, 20, 1000] {
        let (s, rep) = MessageStore::open(dir.path(), config(FsyncPolicy::Never, tail)).unwrap();
        assert_eq!((rep.records, rep.last_id), (20, 20));
        let a = query_answers(&s);
        assert!(a[0].is_empty(), "after(newest) is empty");
        assert_eq!(a[1], records, "after(0) is everything");
        assert_eq!(ids(&a[2]), vec![1, 2, 3, 4, 5]);
        assert_eq!(ids(&a[3]), vec![18, 19, 20]);
        assert_eq!(ids(&a[4]), vec![8, 9, 10, 11]);
        assert!(a[5].is_empty(), "max_records 0");
        assert_eq!(
            ids(&a[6]),
            vec![1],
            "max_bytes below one line still gives one"
        );
        assert_eq!(ids(&a[7]), vec![20]);
        assert!(a[8].is_empty());
        assert_eq!(ids(&a[9]), vec![18, 19, 20], "before(0) is the newest");
        assert_eq!(a[10], records);
        assert!(a[11].is_empty(), "before(1) is empty");
        assert_eq!(ids(&a[12]), vec![1]);
        assert_eq!(ids(&a[13]), vec![6, 7, 8, 9]);
        assert!(a[14].is_empty(), "limit 0");
        assert_eq!(ids(&a[15]), vec![19, 20]);
        assert_eq!(ids(&a[16]), vec![16, 17, 18, 19, 20], "last_n_start(5)");
        assert!(a[17].is_empty());
        assert_eq!(a[18].len(), 20);
        assert_eq!(
            a[19..24].iter().map(|v| ids(v)).collect::<Vec<_>>(),
            vec![vec![], vec![1], vec![10], vec![20], vec![]]
        );
        // max_bytes counts whole lines.
        assert_eq!(s.after(0, 100, line_len * 3).unwrap().len(), 3);
        assert_eq!(s.after(0, 100, line_len * 3 - 1).unwrap().len(), 2);
        answers.push(a);
    }
    assert!(answers.windows(2).all(|w| w[0] == w[1]));
}

#[test]
fn appended_records_are_queryable_from_tail_and_file() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = MessageStore::open(dir.path(), config(FsyncPolicy::Never, 2)).unwrap();
    for i in 0..6 {
        s.append(&user("u"), &cmid(&format!("m{i}")), &format!("b{i}"))
            .unwrap();
    }
    let all = s.after(0, 100, u64::MAX).unwrap();
    assert_eq!(
        all.iter().map(|r| r.body.as_str()).collect::<Vec<_>>(),
        ["b0", "b1", "b2", "b3", "b4", "b5"]
    );
    assert_eq!(s.before(0, 2).unwrap(), all[4..].to_vec());
    assert_eq!(s.before(5, 3).unwrap(), all[1..4].to_vec());
    assert_eq!(s.get(1).unwrap().as_ref(), Some(&all[0]));
    assert_eq!(s.get(6).unwrap().as_ref(), Some(&all[5]));
}

#[test]
fn appends_after_timestamps_that_went_backwards_never_go_back_in_time() {
    let dir = tempfile::tempdir().unwrap();
    let records = [
        rec(1, "100", "u", "a"),
        rec(2, "300", "u", "b"),
        rec(3, "200", "u", "c"),
        rec(4, "250", "u", "d"),
    ];
    fs::write(dir.path().join("database.db"), encode_all(&records)).unwrap();
    let (s, _) = MessageStore::open(dir.path(), config(FsyncPolicy::Never, 1)).unwrap();
    let t = |x: &str| Timestamp::parse(x).unwrap();
    // Appends never go back in time from the last record.
    let a = s.append(&user("u"), &cmid("x"), "new").unwrap();
    assert!(a.timestamp >= t("250"));
}

#[test]
fn timestamps_never_decrease_even_if_the_clock_is_behind() {
    let dir = tempfile::tempdir().unwrap();
    // A last record from far in the future (a clock that was wrong, then fixed).
    fs::write(
        dir.path().join("database.db"),
        encode_all(&[rec(1, "4000000000.5", "u", "future")]),
    )
    .unwrap();
    let (s, _) = open(dir.path());
    let a = s.append(&user("u"), &cmid("a"), "x").unwrap();
    let b = s.append(&user("u"), &cmid("b"), "y").unwrap();
    assert_eq!(a.timestamp, Timestamp::parse("4000000000.5").unwrap());
    assert!(b.timestamp >= a.timestamp);
}

#[test]
fn readers_see_records_in_id_order_without_gaps() {
    for tail in [0, 8] {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = MessageStore::open(dir.path(), config(FsyncPolicy::Batch, tail)).unwrap();
        let s = Arc::new(s);
        let (threads, per) = (8, 100);
        let total = (threads * per) as u64;
        let reader = {
            let s = Arc::clone(&s);
            thread::spawn(move || {
                let mut cursor = 0;
                let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
                while cursor < total {
                    assert!(
                        std::time::Instant::now() < deadline,
                        "reader stuck at {cursor}"
                    );
                    let newest = s.newest_id();
                    let before = cursor;
                    for r in s.after(cursor, 7, u64::MAX).unwrap() {
                        // Visible in id order: the next record is always cursor + 1.
                        assert_eq!(r.id, cursor + 1, "tail {tail}");
                        cursor = r.id;
                    }
                    // Whatever newest_id announced can be read.
                    assert!(cursor >= newest.min(before + 7), "tail {tail}");
                    thread::yield_now();
                }
            })
        };
        let writers: Vec<_> = (0..threads)
            .map(|t| {
                let s = Arc::clone(&s);
                thread::spawn(move || {
                    for i in 0..per {
                        s.append(&user("w"), &cmid(&format!("t{t}i{i}")), "x")
                            .unwrap();
                    }
                })
            })
            .collect();
        for w in writers {
            w.join().unwrap();
        }
        reader.join().unwrap();
    }
}

#[test]
fn the_last_possible_id_refuses_appends_without_panicking() {
    let dir = tempfile::tempdir().unwrap();
    fs::write(
        dir.path().join("database.db"),
        encode_all(&[rec(u64::MAX, "1", "u", "last")]),
    )
    .unwrap();
    let (s, rep) = open(dir.path());
    assert_eq!(rep.last_id, u64::MAX);
    let err = s.append(&user("u"), &cmid("a"), "x").unwrap_err();
    assert!(matches!(err, StoreError::Failed { .. }), "{err}");
    assert_eq!(s.last_n_start(0), u64::MAX);
    assert!(s.after(u64::MAX, 10, u64::MAX).unwrap().is_empty());
    assert_eq!(s.before(0, 10).unwrap().len(), 1);
}

#[test]
fn append_many_stores_a_window_in_order_with_append_semantics() {
    for policy in [FsyncPolicy::Always, FsyncPolicy::Batch, FsyncPolicy::Never] {
        let dir = tempfile::tempdir().unwrap();
        let (s, _) = MessageStore::open(dir.path(), config(policy, 10_000)).unwrap();
        let (alice, bob) = (user("alice"), user("bob"));
        let first = s.append(&alice, &cmid("old"), "stored before").unwrap();
        let ids: Vec<ClientMsgId> = (0..50).map(|i| cmid(&format!("m{i}"))).collect();
        let bodies: Vec<String> = (0..50).map(|i| format!("message {i}")).collect();
        let big = "x".repeat(gc_store::MAX_BODY_BYTES + 1);
        let mut items: Vec<(&Username, &ClientMsgId, &str)> = ids
            .iter()
            .zip(&bodies)
            .map(|(id, b)| (&alice, id, b.as_str()))
            .collect();
        let old = cmid("old");
        let dup = cmid("m3");
        items.insert(10, (&alice, &old, "a retry of an earlier message"));
        items.insert(20, (&alice, &dup, "a retry inside the same window"));
        items.insert(30, (&bob, &dup, "same id, other user: a new message"));
        items.insert(40, (&alice, &ids[0], big.as_str()));
        let results = s.append_many(&items);
        assert_eq!(results.len(), items.len());
        // The retry of an earlier message gets its first answer back.
        let r = results[10].as_ref().unwrap();
        assert_eq!((r.id, r.duplicate), (first.id, true));
        // A retry of one in this window gets that one's answer.
        let m3 = results[3].as_ref().unwrap();
        let r = results[20].as_ref().unwrap();
        assert_eq!(
            (r.id, r.timestamp, r.duplicate),
            (m3.id, m3.timestamp, true)
        );
        assert!(!results[30].as_ref().unwrap().duplicate);
        // A body over the limit is refused before anything else, as `append` refuses it.
        assert!(matches!(
            results[40],
            Err(gc_store::StoreError::TooLarge { .. })
        ));
        // New records: ids in item order, contiguous after the first.
        let new_ids: Vec<u64> = results
            .iter()
            .filter_map(|r| r.as_ref().ok())
            .filter(|a| !a.duplicate)
            .map(|a| a.id)
            .collect();
        assert_eq!(new_ids, (2..=52).collect::<Vec<_>>(), "{policy}");
        assert_eq!(s.newest_id(), 52);
        // Stored in item order.
        let stored: Vec<String> = s
            .after(1, 1000, u64::MAX)
            .unwrap()
            .into_iter()
            .map(|r| r.body)
            .collect();
        let expected: Vec<&str> = items
            .iter()
            .enumerate()
            .filter(|(i, _)| ![10, 20, 40].contains(i))
            .map(|(_, (_, _, body))| *body)
            .collect();
        assert_eq!(stored, expected);
    }
}

#[test]
fn append_many_beside_concurrent_appenders_keeps_ids_unique() {
    let dir = tempfile::tempdir().unwrap();
    let s = std::sync::Arc::new(
        MessageStore::open(dir.path(), config(FsyncPolicy::Batch, 10_000))
            .unwrap()
            .0,
    );
    let threads: Vec<_> = (0..8)
        .map(|t| {
            let s = std::sync::Arc::clone(&s);
            std::thread::spawn(move || {
                let u = user(&format!("u{t}"));
                let mut ids = Vec::new();
                for w in 0..20 {
                    if t % 2 == 0 {
                        let c: Vec<ClientMsgId> =
                            (0..8).map(|i| cmid(&format!("w{w}i{i}"))).collect();
                        let items: Vec<_> = c.iter().map(|c| (&u, c, "batched")).collect();
                        for r in s.append_many(&items) {
                            ids.push(r.unwrap().id);
                        }
                    } else {
                        ids.push(s.append(&u, &cmid(&format!("w{w}")), "single").unwrap().id);
                    }
                }
                ids
            })
        })
        .collect();
    let mut all: Vec<u64> = threads
        .into_iter()
        .flat_map(|t| t.join().unwrap())
        .collect();
    all.sort_unstable();
    let n = all.len() as u64;
    assert_eq!(all, (1..=n).collect::<Vec<_>>());
    assert_eq!(n, 4 * 20 * 8 + 4 * 20);
}
