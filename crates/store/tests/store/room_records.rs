//! Records in several rooms: one id sequence, one file per room in the original line format,
//! per-room queries, and recovery across the files.

use std::path::Path;

use gc_protocol::types::{Record, Room};
use gc_store::{FsyncPolicy, MessageStore, StoreError};

use crate::support::{cmid, config, open, read, user};

fn room(name: &str) -> Room {
    Room::new(name).unwrap()
}

/// The ids of `records` (owned, or shared as the store's pages hold them).
fn ids<R: std::borrow::Borrow<Record>>(records: &[R]) -> Vec<u64> {
    records.iter().map(|r| r.borrow().id).collect()
}

/// #general, #dev and a DM, interleaved: ids 1..=6.
fn fill(dir: &Path) {
    let (s, _) = open(dir);
    let dm = Room::direct(&user("alice"), &user("Bob")).unwrap();
    for (i, (r, text)) in [
        (Room::general(), "hello all"),
        (room("#dev"), "build is red"),
        (dm.clone(), "psst; a secret\nwith a newline"),
        (room("#dev"), "fixed"),
        (Room::general(), "lunch?"),
        (dm, "ok"),
    ]
    .into_iter()
    .enumerate()
    {
        let a = s
            .append_in(&r, &user("alice"), &cmid(&format!("m{i}")), text)
            .unwrap();
        assert_eq!(a.id, i as u64 + 1);
    }
    s.close().unwrap();
}

#[test]
fn each_room_has_its_own_file_in_the_original_line_format() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let general = read(&dir.path().join("database.db"));
    assert_eq!(
        general
            .lines()
            .map(|l| l.split(';').next().unwrap())
            .collect::<Vec<_>>(),
        ["1", "5"]
    );
    assert!(
        general
            .lines()
            .next()
            .unwrap()
            .ends_with(";alice;hello all")
    );
    let dev = read(&dir.path().join("rooms/dev.db"));
    assert_eq!(dev.lines().count(), 2);
    assert!(
        dev.starts_with("2;") && dev.ends_with(";alice;fixed\n"),
        "{dev}"
    );
    let dm = read(&dir.path().join("rooms/@alice+bob.db"));
    assert!(
        dm.starts_with("3;") && dm.contains(";alice;psst; a secret\\nwith a newline\n"),
        "{dm}"
    );
}

#[test]
fn one_id_sequence_and_per_room_queries_survive_a_reopen() {
    let dm = Room::direct(&user("bob"), &user("alice")).unwrap();
    // A tail of 2 makes most reads go to the files.
    for tail in [2, 10_000] {
        let dir = tempfile::tempdir().unwrap();
        fill(dir.path());
        let (s, report) = MessageStore::open(dir.path(), config(FsyncPolicy::Batch, tail)).unwrap();
        assert_eq!((report.records, report.last_id), (6, 6));
        let rooms = s.rooms();
        assert_eq!(rooms[0], Room::general(), "#general first, then by name");
        let dev_at = rooms.iter().position(|r| *r == room("#dev")).unwrap();
        let dm_at = rooms.iter().position(|r| *r == dm).unwrap();
        assert!(dev_at < dm_at, "{rooms:?}");
        let all = s.after(0, 100, u64::MAX).unwrap();
        assert_eq!(ids(&all), [1, 2, 3, 4, 5, 6]);
        assert_eq!(all[2].room, dm);
        assert_eq!(all[2].body, "psst; a secret\nwith a newline");
        assert_eq!(all[3].room, room("#dev"));
        // What a session in #general and #dev sees, from any cursor.
        let seen = [Room::general(), room("#dev")];
        assert_eq!(
            ids(&s.after_in(0, &seen, 100, u64::MAX).unwrap().records),
            [1, 2, 4, 5]
        );
        assert_eq!(
            ids(&s.after_in(2, &seen, 100, u64::MAX).unwrap().records),
            [4, 5]
        );
        assert_eq!(
            ids(&s.after_in(0, &seen, 3, u64::MAX).unwrap().records),
            [1, 2, 4]
        );
        assert_eq!(
            ids(&s
                .after_in(0, std::slice::from_ref(&dm), 100, u64::MAX)
                .unwrap()
                .records),
            [3, 6]
        );
        assert!(
            s.after_in(0, &[room("#empty")], 100, u64::MAX)
                .unwrap()
                .records
                .is_empty()
        );
        // A span per room: #dev's records above 3 only, #general's up to 4.
        let spans = [
            gc_store::RoomSpan {
                room: Room::general(),
                after: 0,
                until: 4,
            },
            gc_store::RoomSpan {
                room: room("#dev"),
                after: 3,
                until: u64::MAX,
            },
        ];
        let page = s.after_in_from(0, &spans, 100, u64::MAX).unwrap();
        assert_eq!(ids(&page.records), [1, 4]);
        // How far an answer covers: to the newest id when complete, to its last record when cut.
        assert_eq!(s.after_in(0, &seen, 100, u64::MAX).unwrap().through, 6);
        assert_eq!(s.after_in(0, &seen, 3, u64::MAX).unwrap().through, 4);
        assert_eq!(s.after_in(9, &seen, 3, u64::MAX).unwrap().through, 9);
        // Every record keeps its room, from the tail or from a file.
        for r in s.after_in(0, &seen, 100, u64::MAX).unwrap().records {
            assert!(seen.contains(&r.room), "{r:?}");
        }
        // History pages per room.
        assert_eq!(ids(&s.before_in(&room("#dev"), 0, 10).unwrap()), [2, 4]);
        assert_eq!(ids(&s.before_in(&room("#dev"), 4, 10).unwrap()), [2]);
        assert_eq!(ids(&s.before_in(&Room::general(), 0, 1).unwrap()), [5]);
        assert_eq!(ids(&s.before(0, 2).unwrap()), [5, 6]);
        // The same pages read forward a piece at a time from where they start (the server
        // writes large History pages so).
        for (r, below, limit) in [
            (room("#dev"), 0, 10),
            (room("#dev"), 5, 1),
            (room("#dev"), 4, 10),
            (Room::general(), 0, 1),
            (Room::general(), 6, 2),
            (room("#none"), 0, 5),
        ] {
            let until = if below == 0 { u64::MAX } else { below - 1 };
            let span = [gc_store::RoomSpan {
                room: r.clone(),
                after: 0,
                until,
            }];
            let mut from = s.before_start_in(&r, below, limit);
            let mut got = Vec::new();
            loop {
                let piece = s.after_in_from(from, &span, 1, u64::MAX).unwrap();
                let Some(last) = piece.records.last() else {
                    break;
                };
                from = last.id;
                got.push(last.id);
            }
            assert_eq!(
                got,
                ids(&s.before_in(&r, below, limit).unwrap()),
                "{r} {below} {limit}"
            );
        }
        // History on join counts the session's rooms only.
        assert_eq!(s.last_n_start_in(&seen, 2), 2);
        assert_eq!(
            ids(&s.after_in(2, &seen, 100, u64::MAX).unwrap().records),
            [4, 5]
        );
        assert_eq!(s.last_n_start_in(&seen, 10), 0);
        assert_eq!(s.get(3).unwrap().unwrap().room, dm);
        // The sequence goes on after the highest id of any room.
        let next = s
            .append_in(&room("#new"), &user("bob"), &cmid(&format!("n{tail}")), "x")
            .unwrap();
        assert!(next.id > 6);
        s.close().unwrap();
    }
}

#[test]
fn a_retry_is_stored_once_whatever_room_it_names() {
    let dir = tempfile::tempdir().unwrap();
    let (s, _) = open(dir.path());
    let a = s
        .append_in(&room("#dev"), &user("carol"), &cmid("same"), "once")
        .unwrap();
    let b = s
        .append_in(&Room::general(), &user("Carol"), &cmid("same"), "once")
        .unwrap();
    assert!(b.duplicate);
    assert_eq!(b.id, a.id);
    assert_eq!(s.len(), 1);
}

#[test]
fn a_torn_line_in_a_room_file_is_cut_and_the_rest_stays() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let dev = dir.path().join("rooms/dev.db");
    let mut bytes = std::fs::read(&dev).unwrap();
    bytes.extend_from_slice(b"7;1795733296;alice;half a li");
    std::fs::write(&dev, bytes).unwrap();
    let (s, report) = open(dir.path());
    assert_eq!(report.records, 6);
    assert!(report.torn_tail.is_some());
    assert!(read(&dev).ends_with(";alice;fixed\n"));
    assert!(read(&dir.path().join("rooms/dev.db.corrupt")).contains("half a li"));
    assert_eq!(
        s.append_in(&room("#dev"), &user("a"), &cmid("z"), "next")
            .unwrap()
            .id,
        7
    );
}

#[test]
fn an_id_in_two_files_and_a_stray_file_are_refused_by_name() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let dev = dir.path().join("rooms/dev.db");
    let before = read(&dev);
    // Id 5 is #general's: a copy in #dev breaks the one sequence.
    std::fs::write(&dev, format!("{before}5;1795733296;alice;copied\n")).unwrap();
    match MessageStore::open(dir.path(), config(FsyncPolicy::Never, 10)).unwrap_err() {
        StoreError::DuplicateId { id, first, second } => {
            assert_eq!(id, 5);
            let names = [first, second].map(|p| p.file_name().unwrap().to_owned());
            assert!(names.contains(&"database.db".into()), "{names:?}");
            assert!(names.contains(&"dev.db".into()), "{names:?}");
        }
        other => panic!("{other}"),
    }
    std::fs::write(&dev, before).unwrap();
    for stray in ["General.db", "general.db", "no+at.db", "@bob+alice.db"] {
        let path = dir.path().join("rooms").join(stray);
        std::fs::write(&path, "").unwrap();
        let err = MessageStore::open(dir.path(), config(FsyncPolicy::Never, 10)).unwrap_err();
        assert!(
            matches!(&err, StoreError::StrayRoomFile { path: p } if *p == path),
            "{stray}: {err}"
        );
        assert!(err.to_string().contains("move it out"), "{err}");
        std::fs::remove_file(&path).unwrap();
    }
    // Other files (moved-aside lines, notes) are left alone.
    std::fs::write(dir.path().join("rooms/dev.db.corrupt"), "x").unwrap();
    std::fs::write(dir.path().join("rooms/README"), "x").unwrap();
    assert_eq!(open(dir.path()).1.records, 6);
}

#[test]
fn room_files_are_private() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode(&dir.path().join("rooms")), 0o700);
    assert_eq!(mode(&dir.path().join("rooms/dev.db")), 0o600);
}

#[test]
fn check_repair_and_export_cover_every_room() {
    let dir = tempfile::tempdir().unwrap();
    fill(dir.path());
    let c = gc_store::check(dir.path()).unwrap();
    assert!(c.is_ok(), "{c:?}");
    assert_eq!((c.records, c.first_id, c.last_id), (6, 1, 6));
    assert_eq!(c.files.len(), 3);
    assert_eq!(c.files[0].room, Room::general());
    assert_eq!(c.files[1].room, room("#dev"));
    assert_eq!((c.files[1].records, c.files[1].last_id), (2, 4));
    assert!(c.timestamps_monotonic);

    // A bad line in the middle of #dev's file, and an id that #general already has.
    let dev = dir.path().join("rooms/dev.db");
    let text = read(&dev);
    std::fs::write(&dev, format!("garbage\n{text}")).unwrap();
    let c = gc_store::check(dir.path()).unwrap();
    assert!(!c.is_ok());
    assert_eq!((c.bad_line_count, c.files[1].bad_line_count), (1, 1));
    assert_eq!(c.files[1].bad_lines[0].line_number, 1);

    let r = gc_store::repair(dir.path()).unwrap();
    assert_eq!((r.kept, r.moved_count), (6, 1));
    assert_eq!(r.corrupt_paths, [dir.path().join("rooms/dev.db.corrupt")]);
    assert_eq!(read(&dev), text);
    assert!(gc_store::check(dir.path()).unwrap().is_ok());

    std::fs::write(&dev, format!("{text}5;1795733296;alice;copied\n")).unwrap();
    let c = gc_store::check(dir.path()).unwrap();
    assert_eq!(c.duplicate_ids, 1);
    assert!(!c.is_ok());
    std::fs::write(&dev, &text).unwrap();

    // Export: every room, #general first; plain marks where each other room starts.
    let mut plain = Vec::new();
    let rep = gc_store::export(dir.path(), gc_store::ExportFormat::Plain, &mut plain).unwrap();
    assert_eq!(rep.records, 6);
    let plain = String::from_utf8(plain).unwrap();
    let heads: Vec<&str> = plain.lines().filter(|l| l.starts_with('#')).collect();
    assert_eq!(heads, ["# room #dev", "# room @alice+bob"]);
    let mut json = Vec::new();
    gc_store::export(dir.path(), gc_store::ExportFormat::JsonLines, &mut json).unwrap();
    let json = String::from_utf8(json).unwrap();
    assert!(
        json.lines()
            .next()
            .unwrap()
            .ends_with("\"message\":\"hello all\"}")
    );
    assert!(
        json.contains(",\"message\":\"fixed\",\"room\":\"#dev\"}"),
        "{json}"
    );
    // One room alone is a clean file of it.
    let mut one = Vec::new();
    gc_store::export_room(
        dir.path(),
        &room("#dev"),
        gc_store::ExportFormat::Plain,
        &mut one,
    )
    .unwrap();
    assert_eq!(String::from_utf8(one).unwrap(), text);
    let err = gc_store::export_room(
        dir.path(),
        &room("#nope"),
        gc_store::ExportFormat::Plain,
        &mut Vec::new(),
    )
    .unwrap_err();
    assert!(err.to_string().contains("#nope"), "{err}");
}
