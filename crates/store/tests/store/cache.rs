//! ClientCache: cdatabase.db.

use std::fs;

use gc_protocol::types::Record;
use gc_store::{ClientCache, LineError, StoreError, encode_record};

use crate::support::{read, rec};

fn r(id: u64) -> Record {
    rec(
        id,
        &format!("{}", 1000 + id),
        "u",
        &format!("body {id}\n;\\"),
    )
}

fn ids(records: &[Record]) -> Vec<u64> {
    records.iter().map(|r| r.id).collect()
}

#[test]
fn insert_in_any_order_dedupes_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("client/cdatabase.db");
    {
        let (mut c, rep) = ClientCache::open(&path).unwrap();
        assert_eq!((rep.records, c.last_id(), c.is_empty()), (0, 0, true));
        assert_eq!(c.insert(&[r(10), r(11), r(12)]).unwrap(), 3);
        // An older history page, with repeats inside it and of what is held.
        assert_eq!(c.insert(&[r(5), r(3), r(4), r(5), r(11)]).unwrap(), 3);
        assert_eq!(c.insert(&[r(12)]).unwrap(), 0);
        assert_eq!(c.insert(&[]).unwrap(), 0);
        assert_eq!(ids(c.records()), vec![3, 4, 5, 10, 11, 12]);
        assert_eq!(c.last_id(), 12);
        assert!(c.contains(4) && !c.contains(6));
        assert_eq!(c.get(10), Some(&r(10)));
        assert_eq!(ids(c.before(0, 2)), vec![11, 12]);
        assert_eq!(ids(c.before(10, 10)), vec![3, 4, 5]);
        assert!(c.before(3, 10).is_empty());
        assert_eq!(ids(c.after(4, 2)), vec![5, 10]);
        c.sync().unwrap();
    }
    let (c, rep) = ClientCache::open(&path).unwrap();
    assert_eq!(rep.records, 6);
    assert_eq!(c.records(), &[r(3), r(4), r(5), r(10), r(11), r(12)]);
    // On disk in arrival order, not sorted.
    let text = read(&path);
    assert!(text.starts_with("10;"), "{text}");
}

#[test]
fn duplicate_lines_on_disk_keep_the_first() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdatabase.db");
    let mut content = Vec::new();
    encode_record(&r(2), &mut content);
    encode_record(&rec(1, "1", "u", "first"), &mut content);
    encode_record(&rec(1, "1", "u", "second"), &mut content);
    fs::write(&path, &content).unwrap();
    let (c, rep) = ClientCache::open(&path).unwrap();
    assert_eq!(
        (rep.records, rep.duplicates_ignored, rep.rewritten),
        (2, 1, false)
    );
    assert_eq!(c.records()[0].body, "first");
}

#[test]
fn second_client_on_the_same_cache_is_locked() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdatabase.db");
    let (c, _) = ClientCache::open(&path).unwrap();
    match ClientCache::open(&path) {
        Err(StoreError::Locked { path: p }) => assert_eq!(p, path),
        other => panic!("expected Locked, got {other:?}"),
    }
    drop(c);
    ClientCache::open(&path).unwrap();
}

#[test]
fn torn_tail_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdatabase.db");
    let mut content = Vec::new();
    encode_record(&r(1), &mut content);
    let good_len = content.len();
    content.extend_from_slice(b"2;1001;u;half");
    fs::write(&path, &content).unwrap();
    let (mut c, rep) = ClientCache::open(&path).unwrap();
    assert_eq!(
        rep.torn_tail.map(|t| (t.line_number, t.reason)),
        Some((2, LineError::Torn))
    );
    assert!((rep.moved_aside.is_empty(), rep.rewritten) == (true, false));
    assert_eq!(fs::metadata(&path).unwrap().len(), good_len as u64);
    assert!(read(&dir.path().join("cdatabase.db.corrupt")).ends_with("2;1001;u;half\n"));
    c.insert(&[r(2)]).unwrap();
    drop(c);
    assert_eq!(ClientCache::open(&path).unwrap().0.len(), 2);
}

#[test]
fn bad_middle_lines_are_moved_aside_and_the_lock_kept() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("cdatabase.db");
    let mut content = Vec::new();
    encode_record(&r(1), &mut content);
    content.extend_from_slice(b"garbage\n");
    encode_record(&r(3), &mut content);
    content.extend_from_slice(b"0;1;u;id zero\n");
    encode_record(&r(2), &mut content);
    fs::write(&path, &content).unwrap();
    let (mut c, rep) = ClientCache::open(&path).unwrap();
    assert_eq!(
        rep.moved_aside
            .iter()
            .map(|m| (m.line_number, m.reason))
            .collect::<Vec<_>>(),
        vec![(2, LineError::Fields), (4, LineError::Id)]
    );
    assert!(rep.torn_tail.is_none() && rep.rewritten);
    assert_eq!(ids(c.records()), vec![1, 2, 3]);
    assert!(!dir.path().join("cdatabase.db.tmp").exists());
    let corrupt = read(&dir.path().join("cdatabase.db.corrupt"));
    assert!(corrupt.contains("garbage\n") && corrupt.contains("0;1;u;id zero\n"));
    // The rewritten file is still locked by us.
    assert!(matches!(
        ClientCache::open(&path),
        Err(StoreError::Locked { .. })
    ));
    c.insert(&[r(4)]).unwrap();
    drop(c);
    let (c, rep) = ClientCache::open(&path).unwrap();
    assert_eq!(
        (ids(c.records()), rep.moved_aside.len()),
        (vec![1, 2, 3, 4], 0)
    );
}
