use std::os::unix::fs::PermissionsExt as _;

use super::*;

fn user(name: &str) -> Username {
    Username::new(name).unwrap()
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 % 251) as u8).collect()
}

fn entry(hash: ContentHash, size: u64, name: &str, id: u64, room: &str) -> FileEntry {
    FileEntry {
        hash,
        size,
        username: user(name),
        timestamp: Timestamp::from_micros(1_700_000_000_000_000 + id),
        id,
        room: room.parse().unwrap(),
    }
}

fn read_object(store: &ContentStore, hash: &ContentHash) -> Vec<u8> {
    let (mut file, size) = store.open_object(hash).unwrap().expect("stored");
    let mut out = Vec::new();
    file.read_to_end(&mut out).unwrap();
    assert_eq!(out.len() as u64, size);
    out
}

#[test]
fn an_upload_in_pieces_is_stored_once_verified() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let data = content(3 * READ_PIECE + 17);
    let hash = ContentHash::of(&data);
    let mut up = store
        .begin(&user("alice"), hash, data.len() as u64)
        .unwrap();
    assert_eq!(up.offset(), 0);
    for (i, piece) in data.chunks(100_000).enumerate() {
        assert_eq!(
            store.size_of(&hash),
            None,
            "nothing offered before it is complete"
        );
        up.write((i * 100_000) as u64, piece).unwrap();
    }
    assert!(up.is_complete());
    up.finish().unwrap();
    assert_eq!(store.size_of(&hash), Some(data.len() as u64));
    assert_eq!(read_object(&store, &hash), data);
    let (objects, partial) = store.list().unwrap();
    assert_eq!(objects.len(), 1);
    assert!(partial.is_empty(), "the partial file became the object");
    // Owner only, whatever the umask.
    let object = store.object_path(&hash);
    let mode = std::fs::metadata(&object).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
    let mode = std::fs::metadata(store.root())
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o700);
}

#[test]
fn an_interrupted_upload_resumes_where_it_stopped_also_after_a_restart() {
    let dir = tempfile::tempdir().unwrap();
    let data = content(2 * READ_PIECE + 5);
    let hash = ContentHash::of(&data);
    let size = data.len() as u64;
    {
        let store = ContentStore::open(dir.path()).unwrap();
        let mut up = store.begin(&user("alice"), hash, size).unwrap();
        up.write(0, &data[..1000]).unwrap();
        drop(up); // the connection dropped
        let mut up = store.begin(&user("Alice"), hash, size).unwrap();
        assert_eq!(up.offset(), 1000, "the same account, whatever the case");
        up.write(1000, &data[1000..READ_PIECE + 3]).unwrap();
    } // the server stopped
    let store = ContentStore::open(dir.path()).unwrap();
    assert_eq!(
        store.partial_size(&user("ALICE"), &hash),
        READ_PIECE as u64 + 3
    );
    assert_eq!(store.partial_size(&user("bob"), &hash), 0);
    let mut up = store.begin(&user("alice"), hash, size).unwrap();
    assert_eq!(up.offset(), READ_PIECE as u64 + 3);
    up.write(up.offset(), &data[READ_PIECE + 3..]).unwrap();
    up.finish().unwrap();
    assert_eq!(read_object(&store, &hash), data);
}

#[test]
fn pieces_out_of_place_and_content_that_does_not_match_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let data = content(1000);
    let hash = ContentHash::of(&data);
    let mut up = store.begin(&user("bob"), hash, 1000).unwrap();
    up.write(0, &data[..10]).unwrap();
    assert!(matches!(
        up.write(5, &data[5..20]),
        Err(StoreError::UploadOffset {
            expected: 10,
            got: 5
        })
    ));
    assert!(matches!(
        up.write(10, &content(991)),
        Err(StoreError::UploadPastEnd {
            size: 1000,
            end: 1001
        })
    ));
    assert_eq!(up.offset(), 10, "a refused piece changes nothing");
    let early = store.begin(&user("carol"), hash, 1000).unwrap();
    assert!(matches!(
        early.finish(),
        Err(StoreError::UploadOffset { .. })
    ));
    // Other bytes than announced: discarded, and the next try starts from nothing.
    let mut other = data.clone();
    other[500] ^= 1;
    up.write(10, &other[10..]).unwrap();
    let err = up.finish().unwrap_err();
    assert!(matches!(err, StoreError::Corrupt { .. }), "{err}");
    assert!(err.to_string().contains("upload it again"), "{err}");
    assert_eq!(store.size_of(&hash), None);
    let up = store.begin(&user("bob"), hash, 1000).unwrap();
    assert_eq!(up.offset(), 0);
}

#[test]
fn one_upload_per_user_and_content_at_a_time_and_content_stored_once() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let data = content(5000);
    let hash = ContentHash::of(&data);
    let mut a = store.begin(&user("alice"), hash, 5000).unwrap();
    assert!(matches!(
        store.begin(&user("alice"), hash, 5000),
        Err(StoreError::UploadBusy { .. })
    ));
    // Someone else uploads the same content at the same time: both finish, one object.
    let mut b = store.begin(&user("bob"), hash, 5000).unwrap();
    a.write(0, &data).unwrap();
    b.write(0, &data).unwrap();
    b.finish().unwrap();
    a.finish().unwrap();
    let (objects, partial) = store.list().unwrap();
    assert_eq!((objects.len(), partial.len()), (1, 0));
    // Known content: complete at once, whoever offers it; a wrong size is refused.
    let c = store.begin(&user("carol"), hash, 5000).unwrap();
    assert!(c.is_complete());
    c.finish().unwrap();
    assert!(matches!(
        store.begin(&user("dave"), hash, 4999),
        Err(StoreError::UploadSize { stored: 5000, .. })
    ));
    // The slot was given back each time.
    drop(store.begin(&user("alice"), hash, 5000).unwrap());
}

#[test]
fn the_index_counts_quota_once_per_content_and_survives_a_torn_line() {
    let dir = tempfile::tempdir().unwrap();
    let (h1, h2) = (ContentHash::of(b"one"), ContentHash::of(b"two"));
    {
        let store = ContentStore::open(dir.path()).unwrap();
        store
            .announce(&entry(h1, 3, "alice", 10, "#general"))
            .unwrap();
        store
            .announce(&entry(h1, 3, "alice", 10, "#general"))
            .unwrap();
        store.announce(&entry(h1, 3, "alice", 12, "#dev")).unwrap();
        store
            .announce(&entry(h2, 300, "alice", 14, "@alice+bob"))
            .unwrap();
        store
            .announce(&entry(h2, 300, "bob", 15, "#general"))
            .unwrap();
        assert_eq!(store.quota_used(&user("ALICE")).unwrap(), 303);
        assert_eq!(store.quota_used(&user("bob")).unwrap(), 300);
        assert_eq!(store.quota_used(&user("carol")).unwrap(), 0);
        let rooms: Vec<String> = store
            .announcements(&h1)
            .unwrap()
            .iter()
            .map(|e| e.room.to_string())
            .collect();
        assert_eq!(
            rooms,
            ["#general", "#dev"],
            "a retried line is not added twice"
        );
    }
    // A crash mid-append leaves a line without LF: cut off at the next open.
    let index = dir.path().join(FILES_DIR).join(FILE_INDEX);
    let mut f = std::fs::OpenOptions::new()
        .append(true)
        .open(&index)
        .unwrap();
    f.write_all(format!("{h1};3;carol;17").as_bytes()).unwrap();
    drop(f);
    let store = ContentStore::open(dir.path()).unwrap();
    assert_eq!(store.announcements(&h1).unwrap().len(), 2);
    assert_eq!(store.quota_used(&user("carol")).unwrap(), 0);
    let text = std::fs::read_to_string(&index).unwrap();
    assert!(text.ends_with('\n') && text.lines().count() == 4, "{text}");
    // Removing content takes its lines with it.
    assert!(!store.remove(&h1).unwrap(), "announced, never stored");
    assert!(store.announcements(&h1).unwrap().is_empty());
    store
        .announce(&entry(h1, 3, "carol", 20, "#general"))
        .unwrap();
    drop(store);
    let store = ContentStore::open(dir.path()).unwrap();
    assert_eq!(store.quota_used(&user("carol")).unwrap(), 3);
    assert_eq!(store.quota_used(&user("alice")).unwrap(), 300);
}

#[test]
fn a_damaged_index_line_is_an_error_that_names_it() {
    let dir = tempfile::tempdir().unwrap();
    drop(ContentStore::open(dir.path()).unwrap());
    let index = dir.path().join(FILES_DIR).join(FILE_INDEX);
    let h = ContentHash::of(b"x");
    std::fs::write(
        &index,
        format!(
            "{}{h};01;bob;1.5;3;#general\n{}",
            entry(h, 1, "bob", 2, "#general").line(),
            entry(h, 1, "bob", 4, "#general").line()
        ),
    )
    .unwrap();
    let err = ContentStore::open(dir.path()).unwrap_err();
    assert!(
        matches!(
            err,
            StoreError::BadLine {
                line_number: 2,
                reason: LineError::Size,
                ..
            }
        ),
        "{err}"
    );
}

#[test]
fn index_lines_parse_only_in_their_one_spelling() {
    let h = ContentHash::of(b"x");
    let good = entry(h, 42, "bob", 7, "#dev");
    let line = good.line();
    assert_eq!(
        parse_entry(line.trim_end_matches('\n').as_bytes()),
        Ok(good)
    );
    for (bad, why) in [
        (format!("{h};42;bob;1.5;7"), LineError::Fields),
        (format!("{h};42;bob;1.5;7;#dev;x"), LineError::Fields),
        (
            format!("{};42;bob;1.5;7;#dev", h.to_string().to_uppercase()),
            LineError::ContentHash,
        ),
        (format!("{h};042;bob;1.5;7;#dev"), LineError::Size),
        (format!("{h};-1;bob;1.5;7;#dev"), LineError::Size),
        (format!("{h};42;b b;1.5;7;#dev"), LineError::Username),
        (format!("{h};42;bob;soon;7;#dev"), LineError::Timestamp),
        (format!("{h};42;bob;1.5;0;#dev"), LineError::Id),
        (format!("{h};42;bob;1.5;7;dev"), LineError::Room),
    ] {
        assert_eq!(parse_entry(bad.as_bytes()), Err(why), "{bad}");
    }
    assert_eq!(parse_entry(b"\xff"), Err(LineError::Utf8));
}

#[test]
fn garbage_is_abandoned_partials_and_old_unannounced_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let upload = |name: &str, data: &[u8], finish: bool| {
        let hash = ContentHash::of(data);
        let mut up = store.begin(&user(name), hash, data.len() as u64).unwrap();
        if finish {
            up.write(0, data).unwrap();
            up.finish().unwrap();
        } else {
            up.write(0, &data[..1]).unwrap();
        }
        hash
    };
    let kept = upload("alice", b"announced", true);
    store
        .announce(&entry(kept, 9, "alice", 1, "#general"))
        .unwrap();
    let orphan = upload("alice", b"never announced", true);
    let young = upload("alice", b"just finished", true);
    let abandoned = upload("bob", b"half of it", false);
    let active = ContentHash::of(b"in progress");
    let mut in_progress = store.begin(&user("carol"), active, 11).unwrap();
    in_progress.write(0, b"in").unwrap();
    let day = Duration::from_secs(86_400);
    let old = SystemTime::now() - 2 * day;
    for path in [
        store.object_path(&kept),
        store.object_path(&orphan),
        store.partial_path("bob", &abandoned),
        store.partial_path("carol", &active),
    ] {
        File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(old)
            .unwrap();
    }
    let now = SystemTime::now();
    let dry = store.collect_garbage(now, day, day, true).unwrap();
    let hashes = |files: &[StoredFile]| files.iter().map(|f| f.hash).collect::<Vec<_>>();
    assert_eq!(hashes(&dry.abandoned), [abandoned]);
    assert_eq!(hashes(&dry.unannounced), [orphan]);
    assert_eq!(
        store.list().unwrap().0.len(),
        3,
        "a dry run removes nothing"
    );
    let done = store.collect_garbage(now, day, day, false).unwrap();
    assert_eq!(done, dry);
    let (objects, partial) = store.list().unwrap();
    let mut left = hashes(&objects);
    left.sort();
    let mut want = vec![kept, young];
    want.sort();
    assert_eq!(left, want);
    assert_eq!(hashes(&partial), [active], "the upload in progress stays");
    assert_eq!(partial[0].uploader.as_deref(), Some("carol"));
    drop(in_progress);
}

#[test]
fn verify_finds_damaged_objects() {
    let dir = tempfile::tempdir().unwrap();
    let store = ContentStore::open(dir.path()).unwrap();
    let data = content(10_000);
    let hash = ContentHash::of(&data);
    let mut up = store.begin(&user("alice"), hash, 10_000).unwrap();
    up.write(0, &data).unwrap();
    up.finish().unwrap();
    assert!(store.verify().unwrap().is_empty());
    let mut damaged = data.clone();
    damaged[9_999] ^= 0x80;
    std::fs::write(store.object_path(&hash), &damaged).unwrap();
    assert_eq!(store.verify().unwrap(), [hash]);
}

#[test]
fn a_read_only_store_lists_without_changing_anything() {
    let dir = tempfile::tempdir().unwrap();
    assert!(ContentStore::open_read_only(dir.path()).unwrap().is_none());
    assert!(!dir.path().join(FILES_DIR).exists(), "nothing made");

    let store = ContentStore::open(dir.path()).unwrap();
    let data = content(1000);
    let hash = ContentHash::of(&data);
    let mut up = store.begin(&user("alice"), hash, 1000).unwrap();
    up.write(0, &data).unwrap();
    up.finish().unwrap();
    store
        .announce(&entry(hash, 1000, "alice", 1, "#general"))
        .unwrap();
    // A line being written (or torn): skipped, and left as it is.
    let index = dir.path().join(FILES_DIR).join(FILE_INDEX);
    let mut file = std::fs::OpenOptions::new()
        .append(true)
        .open(&index)
        .unwrap();
    file.write_all(b"0123").unwrap();
    let before = std::fs::read(&index).unwrap();

    let read = ContentStore::open_read_only(dir.path()).unwrap().unwrap();
    assert_eq!(read.announcements(&hash).unwrap().len(), 1);
    assert_eq!(read.list().unwrap().0.len(), 1);
    assert!(read.verify().unwrap().is_empty());
    assert!(
        read.announce(&entry(hash, 1000, "bob", 2, "#general"))
            .is_err(),
        "read only"
    );
    assert_eq!(
        std::fs::read(&index).unwrap(),
        before,
        "the index is untouched"
    );
}

/// Two stores on one directory with one index stand for two instances sharing a files
/// directory: a partial file one of them writes is neither written nor collected by the other.
#[test]
fn instances_sharing_a_directory_never_write_one_partial_file_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("shared");
    let index: Arc<dyn FileIndex> =
        Arc::new(FlatFileIndex::open(&dir.path().join("index.db")).unwrap());
    let reader = ContentStore::open_shared_read_only(&root, Arc::clone(&index));
    assert_eq!(
        reader.list().unwrap(),
        (vec![], vec![]),
        "a directory not made yet lists as empty"
    );
    let one = ContentStore::open_shared(&root, Arc::clone(&index)).unwrap();
    let two = ContentStore::open_shared(&root, Arc::clone(&index)).unwrap();
    let data = content(1000);
    let hash = ContentHash::of(&data);
    let mut up = one.begin(&user("alice"), hash, 1000).unwrap();
    up.write(0, &data[..10]).unwrap();
    assert!(
        matches!(
            two.begin(&user("alice"), hash, 1000),
            Err(StoreError::UploadBusy { .. })
        ),
        "the other instance's upload holds the partial file"
    );
    let later = SystemTime::now() + Duration::from_secs(10 * 86_400);
    let day = Duration::from_secs(86_400);
    let report = two.collect_garbage(later, day, day, false).unwrap();
    assert!(report.abandoned.is_empty(), "a partial file in use is kept");
    drop(up);
    let mut up = two.begin(&user("alice"), hash, 1000).unwrap();
    assert_eq!(
        up.offset(),
        10,
        "the other instance resumes it once it is free"
    );
    up.write(10, &data[10..]).unwrap();
    up.finish().unwrap();
    two.announce(&entry(hash, 1000, "alice", 1, "#general"))
        .unwrap();
    assert_eq!(one.announcements(&hash).unwrap().len(), 1, "one index");
    assert_eq!(read_object(&one, &hash), data);
}
