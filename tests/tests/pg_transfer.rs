//! Moving data between a flat-file data dir and a real PostgreSQL (`gc-server db import
//! --from-dir` / `--from-postgres`, `db export` with `--store`): round trips with several
//! rooms, unicode, escapes and id gaps; dedupe of imported client-msg-ids; identical exports;
//! refusal of a non-empty target; a copy that differs from its source is not kept.

use std::fs;
use std::path::Path;

use gc_pgstore::{DbUrl, PgConfig, TransferError};
use gc_protocol::{ClientMsgId, Room, Timestamp, Username};
use gc_store::{
    Account, Accounts, ExportFormat, MessageLog, MessageStore, StoreConfig, StoreError,
};
use gc_tests::pg::{self, TestDb};

fn url(db: &TestDb) -> DbUrl {
    db.url.parse().expect("test URL")
}

fn account(name: &str, n: u8) -> Account {
    Account {
        username: Username::new(name).expect("name"),
        salt: vec![n; 16],
        iterations: 4096,
        stored_key: vec![n + 1; 32],
        server_key: vec![n + 2; 32],
        created: Timestamp::from_micros(1_700_000_000_000_000 + u64::from(n)),
    }
}

/// A data dir written by hand: three rooms, ids 1-9 with gaps (6 and 8 are missing: a removed
/// room's, say), unicode, `\`, LF and CR in bodies (escaped in the files), a `;`, client-msg-ids
/// for most records (one line of them invalid), two accounts.
fn flat_dir(dir: &Path) {
    fs::create_dir_all(dir.join("rooms")).expect("mkdir");
    fs::write(
        dir.join("database.db"),
        "1;1700000000.000001;alice;hello, world\n\
         2;1700000001.5;Bob;h\u{e9}llo \u{1f600} \u{65e5}\u{672c}\n\
         5;1700000005;alice;back\\\\slash and \\n newline and \\r cr; semicolon\n",
    )
    .expect("write");
    fs::write(
        dir.join("rooms/dev.db"),
        "3;1700000003.25;alice;in #dev\n7;1700000007;Bob;\\\\n is not a newline\n",
    )
    .expect("write");
    fs::write(
        dir.join("rooms/@alice+bob.db"),
        "4;1700000004;Bob;a direct one\n9;1700000009;alice;last\n",
    )
    .expect("write");
    fs::write(
        dir.join("database.msgids"),
        "1;alice;m1\n2;Bob;m2\n3;alice;m3\nnot a line\n4;Bob;m4\n7;Bob;m7\n9;alice;m9\n",
    )
    .expect("write");
    let accounts = Accounts::open(&dir.join("usernames.db")).expect("accounts");
    accounts.add(account("alice", 1)).expect("add");
    accounts.add(account("Bob", 2)).expect("add");
    // Room metadata: a public room with a topic that needs escaping, a direct conversation, an
    // admin.
    let (rooms, _) = gc_store::Rooms::open(dir).expect("rooms");
    let alice = Username::new("alice").expect("name");
    let bob = Username::new("Bob").expect("name");
    let now = Timestamp::from_micros(1_700_000_003_250_000);
    rooms
        .create(
            &Room::new("#dev").expect("room"),
            gc_protocol::Visibility::Public,
            &alice,
            "builds; tests \\ and\nlines",
            now,
        )
        .expect("create");
    rooms
        .set_standing(
            &Room::new("#dev").expect("room"),
            &bob,
            gc_store::Standing::Role(gc_protocol::RoomRole::Moderator),
        )
        .expect("standing");
    rooms.open_direct(&alice, &bob, now).expect("direct");
    rooms.set_admin(&bob, true).expect("admin");
    // Two shared files announced by records 5 and 4 (one content twice): the index goes along,
    // the content stays in the files directory.
    let files = gc_store::ContentStore::open(dir).expect("files");
    let hash = gc_protocol::ContentHash::of(b"shared");
    for (id, user, room) in [(5, &alice, "#general"), (4, &bob, "@alice+bob")] {
        files
            .announce(&gc_store::FileEntry {
                hash,
                size: 6,
                username: user.clone(),
                timestamp: Timestamp::from_micros(1_700_000_000_000_000 + id),
                id,
                room: Room::new(room).expect("room"),
            })
            .expect("announce");
    }
}

fn export_flat(dir: &Path, format: ExportFormat) -> String {
    let mut out = Vec::new();
    gc_store::export(dir, format, &mut out).expect("flat export");
    String::from_utf8(out).expect("utf8")
}

fn export_pg(url: &DbUrl, room: Option<&Room>, format: ExportFormat) -> String {
    let mut out = Vec::new();
    gc_pgstore::export(url, room, format, &mut out).expect("pg export");
    String::from_utf8(out).expect("utf8")
}

fn sequence(db: &TestDb) -> (i64, i64) {
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
    let row = c
        .query_one("SELECT next_id, last_ts FROM gc_sequence", &[])
        .expect("sequence");
    (row.get(0), row.get(1))
}

#[test]
fn flat_to_postgres_and_back_keeps_everything() {
    let Some(db) = pg::database() else { return };
    let url = url(&db);
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    flat_dir(&src);
    let plain = export_flat(&src, ExportFormat::Plain);
    assert!(plain.contains("# room #dev\n"), "{plain}");

    let t = gc_pgstore::load_dir(&src, &url).expect("load");
    assert_eq!(t.source, t.target);
    assert_eq!((t.source.messages, t.source.accounts), (7, 2));
    assert_eq!(t.client_msg_ids, 6);
    assert_eq!(t.skipped_msgids, 1);
    assert_eq!(t.file_announcements, 2);
    let index = gc_pgstore::PgFileIndex::new(&url);
    let hash = gc_protocol::ContentHash::of(b"shared");
    assert_eq!(
        gc_store::FileIndex::announcements(&index, &hash)
            .expect("announcements")
            .len(),
        2,
        "the index is shared by the instances now"
    );
    assert_eq!(t.source, gc_store::summary(&src).expect("summary").0);
    assert_eq!(t.target, gc_pgstore::summary(&url).expect("summary"));
    // The room metadata is shared by the instances now.
    let (shared, report) = gc_store::Rooms::open_shared(
        tmp.path(),
        std::sync::Arc::new(gc_pgstore::PgRooms::new(&url)),
    )
    .expect("shared rooms");
    assert!(report.is_clean(), "{report:?}");
    let dev = shared.get(&Room::new("#dev").expect("room")).expect("#dev");
    assert_eq!(dev.topic, "builds; tests \\ and\nlines");
    assert!(shared.is_admin(&Username::new("bob").expect("name")));
    assert_eq!(shared.list().len(), 3, "#general, #dev, the direct one");
    // Ids go on after the highest; the newest timestamp is known.
    assert_eq!(sequence(&db), (10, 1_700_000_009_000_000));

    // The same export, byte for byte, in both formats and per room.
    assert_eq!(export_pg(&url, None, ExportFormat::Plain), plain);
    assert_eq!(
        export_pg(&url, None, ExportFormat::JsonLines),
        export_flat(&src, ExportFormat::JsonLines)
    );
    for room in ["#general", "#dev", "@alice+bob"] {
        let room = Room::new(room).expect("room");
        let mut flat = Vec::new();
        gc_store::export_room(&src, &room, ExportFormat::Plain, &mut flat).expect("room");
        assert_eq!(
            export_pg(&url, Some(&room), ExportFormat::Plain).into_bytes(),
            flat,
            "{room}"
        );
    }
    let nowhere = Room::new("#nowhere").expect("room");
    assert!(matches!(
        gc_pgstore::export(&url, Some(&nowhere), ExportFormat::Plain, &mut Vec::new()),
        Err(TransferError::NoRoom { .. })
    ));

    // And back into a new data dir: the same files' contents.
    let back = tmp.path().join("back");
    let t2 = gc_pgstore::unload_to_dir(&url, &back).expect("unload");
    assert_eq!(t2.source, t.source);
    assert_eq!(t2.target, t.source);
    assert_eq!(t2.client_msg_ids, 6);
    assert_eq!(t2.file_announcements, 2);
    assert_eq!(export_flat(&back, ExportFormat::Plain), plain);
    for file in [
        "database.db",
        "rooms/dev.db",
        "rooms/@alice+bob.db",
        "rooms.db",
        "members.db",
        "admins.db",
        "files/index.db",
    ] {
        assert_eq!(
            fs::read(src.join(file)).expect("src"),
            fs::read(back.join(file)).expect("back"),
            "{file}"
        );
    }
    assert_eq!(
        fs::read_to_string(back.join("database.msgids")).expect("msgids"),
        "1;alice;m1\n2;Bob;m2\n3;alice;m3\n4;Bob;m4\n7;Bob;m7\n9;alice;m9\n"
    );
    let accounts = Accounts::open(&back.join("usernames.db")).expect("accounts");
    assert_eq!(accounts.get("alice"), Some(account("alice", 1)));
    assert_eq!(accounts.get("bob"), Some(account("Bob", 2)));
    assert!(!back.join(gc_store::STAGING_DIR).exists());

    // The flat store opens what came back, and a retry of an imported message is a duplicate.
    let (store, _) = MessageStore::open(&back, StoreConfig::default()).expect("open back");
    let dup = store
        .append_in(
            &Room::new("#dev").expect("room"),
            &Username::new("bob").expect("name"),
            &ClientMsgId::new("m7").expect("cmid"),
            "retry",
        )
        .expect("append");
    assert!(dup.duplicate);
    assert_eq!(dup.id, 7);
    let fresh = store
        .append_in(
            &Room::general(),
            &Username::new("alice").expect("name"),
            &ClientMsgId::new("new1").expect("cmid"),
            "new",
        )
        .expect("append");
    assert_eq!((fresh.id, fresh.duplicate), (10, false));
}

#[test]
fn a_retry_of_an_imported_message_through_postgres_is_a_duplicate() {
    let Some(db) = pg::database() else { return };
    let url = url(&db);
    let tmp = tempfile::tempdir().expect("tmp");
    flat_dir(tmp.path());
    gc_pgstore::load_dir(tmp.path(), &url).expect("load");
    let (messages, accounts) = gc_pgstore::open(&url, &PgConfig::default()).expect("open");
    assert_eq!(messages.newest_id(), 9);
    assert_eq!(gc_store::AccountStore::count(&accounts).expect("count"), 2);
    // Bob's m2 (#general) and m7 (#dev), alice's m9 (a direct conversation): the first records.
    for (room, name, cmid, id) in [
        ("#general", "BOB", "m2", 2),
        ("#dev", "bob", "m7", 7),
        ("@alice+bob", "alice", "m9", 9),
    ] {
        let a = messages
            .append_in(
                &Room::new(room).expect("room"),
                &Username::new(name).expect("name"),
                &ClientMsgId::new(cmid).expect("cmid"),
                "a retry",
            )
            .expect("append");
        assert_eq!((a.id, a.duplicate), (id, true), "{cmid}");
    }
    // A record with no client-msg-id (5) answers none; a new message gets the next id.
    let a = messages
        .append_in(
            &Room::general(),
            &Username::new("alice").expect("name"),
            &ClientMsgId::new("m5").expect("cmid"),
            "new",
        )
        .expect("append");
    assert_eq!((a.id, a.duplicate), (10, false));
    messages.close();
}

#[test]
fn a_target_that_holds_data_is_refused_and_left_alone() {
    let Some(db) = pg::database() else { return };
    let url = url(&db);
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    flat_dir(&src);
    gc_pgstore::load_dir(&src, &url).expect("load");
    let before = gc_pgstore::summary(&url).expect("summary");
    let e = gc_pgstore::load_dir(&src, &url).expect_err("second load");
    assert!(matches!(e, TransferError::NotEmpty { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("7 messages, 2 accounts"), "{text}");
    assert!(!text.contains(&db.url), "the password is not shown: {text}");
    assert_eq!(gc_pgstore::summary(&url).expect("summary"), before);

    // A data dir with accounts only is not empty either.
    let other = tmp.path().join("other");
    Accounts::open(&other.join("usernames.db"))
        .and_then(|a| a.add(account("carol", 3)))
        .expect("account");
    let e = gc_pgstore::unload_to_dir(&url, &other).expect_err("into a dir with accounts");
    assert!(
        matches!(e, TransferError::Files(StoreError::TransferTarget { .. })),
        "{e}"
    );
    // And one with messages (the source itself).
    let e = gc_pgstore::unload_to_dir(&url, &src).expect_err("into the source");
    assert!(
        matches!(e, TransferError::Files(StoreError::TransferTarget { .. })),
        "{e}"
    );
    assert!(!src.join(gc_store::STAGING_DIR).exists());

    // A database with accounts only is refused too.
    let Some(db2) = pg::database() else { return };
    let url2: DbUrl = db2.url.parse().expect("test URL");
    let (_m, accounts) = gc_pgstore::open(&url2, &PgConfig::default()).expect("open");
    gc_store::AccountStore::add(&accounts, account("dave", 4)).expect("add");
    let e = gc_pgstore::load_dir(&src, &url2).expect_err("into accounts");
    assert!(matches!(e, TransferError::NotEmpty { .. }), "{e}");
}

#[test]
fn a_copy_that_differs_from_its_source_is_not_kept() {
    let Some(db) = pg::database() else { return };
    let url = url(&db);
    let tmp = tempfile::tempdir().expect("tmp");
    flat_dir(tmp.path());
    gc_pgstore::migrate(&url).expect("migrate");
    // Something between the import and the table changes a body on its way in.
    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
    c.batch_execute(
        "CREATE FUNCTION gc_test_tamper() RETURNS trigger AS $$ \
         BEGIN IF NEW.id = 7 THEN NEW.body := NEW.body || '!'; END IF; RETURN NEW; END \
         $$ LANGUAGE plpgsql; \
         CREATE TRIGGER gc_test_tamper BEFORE INSERT ON gc_messages \
         FOR EACH ROW EXECUTE FUNCTION gc_test_tamper();",
    )
    .expect("trigger");
    let e = gc_pgstore::load_dir(tmp.path(), &url).expect_err("tampered");
    let TransferError::Mismatch {
        source_summary,
        target_summary,
    } = &e
    else {
        panic!("not a mismatch: {e}");
    };
    assert_eq!(source_summary.messages, target_summary.messages);
    assert_ne!(source_summary.sha256, target_summary.sha256);
    assert!(e.to_string().contains("nothing was kept"), "{e}");
    // Rolled back: nothing stored, the sequence untouched.
    let n: i64 = c
        .query_one("SELECT count(*) FROM gc_messages", &[])
        .expect("count")
        .get(0);
    assert_eq!(n, 0);
    assert_eq!(sequence(&db), (1, 0));
}

#[test]
fn an_empty_store_moves_too() {
    let Some(db) = pg::database() else { return };
    let url = url(&db);
    let tmp = tempfile::tempdir().expect("tmp");
    let src = tmp.path().join("src");
    gc_store::DataDirLock::acquire(&src).expect("empty data dir");
    let t = gc_pgstore::load_dir(&src, &url).expect("load");
    assert_eq!((t.target.messages, t.target.accounts), (0, 0));
    assert_eq!(export_pg(&url, None, ExportFormat::Plain), "");
    let back = tmp.path().join("back");
    let t2 = gc_pgstore::unload_to_dir(&url, &back).expect("unload");
    assert_eq!(t2.target, t.target);
    assert_eq!(fs::read(back.join("database.db")).expect("db").len(), 0);
    // A data dir that is not one is named as such.
    let e = gc_pgstore::load_dir(&tmp.path().join("missing"), &url).expect_err("missing");
    assert!(e.to_string().contains("database.db"), "{e}");
}
