//! The PostgreSQL store against a real PostgreSQL (the private cluster `.ci/test` runs): the
//! guarantees of issue #13 at the store's level — dense ids whose commit order is id order
//! across instances, exactly-once through any instance, wake-ups by LISTEN/NOTIFY, migrations.

use std::sync::mpsc;
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use gc_pgstore::{DbUrl, PgAccounts, PgConfig, PgError, PgMessages, SCHEMA_VERSION};
use gc_protocol::{ClientMsgId, Room, Timestamp, Username};
use gc_store::{Account, AccountStore, MessageLog, RoomSpan, StoreError};
use gc_tests::pg::{self, TestDb};

fn url(db: &TestDb) -> DbUrl {
    db.url.parse().expect("test URL")
}

fn open(db: &TestDb, tail: usize) -> PgMessages {
    gc_pgstore::migrate(&url(db)).expect("migrate");
    PgMessages::open(
        &url(db),
        &PgConfig {
            tail_capacity: tail,
        },
    )
    .expect("open")
}

fn user(name: &str) -> Username {
    Username::new(name).expect("name")
}

fn cmid(n: impl std::fmt::Display) -> ClientMsgId {
    ClientMsgId::new(format!("m{n}")).expect("cmid")
}

fn everything(store: &PgMessages) -> Vec<(u64, String)> {
    let page = store
        .after_in_from(
            0,
            &[
                RoomSpan::all(Room::general()),
                RoomSpan::all(Room::new("#ops").expect("room")),
            ],
            1_000_000,
            u64::MAX,
        )
        .expect("read");
    page.records
        .iter()
        .map(|r| (r.id, r.body.clone()))
        .collect()
}

fn wait_newest(store: &PgMessages, id: u64) {
    let deadline = Instant::now() + gc_tests::WAIT;
    while store.newest_id() < id {
        assert!(
            Instant::now() < deadline,
            "newest id stayed {} < {id}",
            store.newest_id()
        );
        thread::sleep(Duration::from_millis(5));
    }
}

#[test]
fn migrations_run_once_take_turns_and_refuse_a_newer_schema() {
    let Some(db) = pg::database() else { return };
    let barrier = Arc::new(Barrier::new(4));
    let reports: Vec<_> = (0..4)
        .map(|_| {
            let (u, b) = (url(&db), Arc::clone(&barrier));
            thread::spawn(move || {
                b.wait();
                gc_pgstore::migrate(&u).expect("concurrent migrate")
            })
        })
        .collect::<Vec<_>>()
        .into_iter()
        .map(|h| h.join().expect("thread"))
        .collect();
    assert_eq!(
        reports.iter().filter(|r| !r.applied.is_empty()).count(),
        1,
        "exactly one instance applies the migrations: {reports:?}"
    );
    assert!(reports.iter().all(|r| r.to == SCHEMA_VERSION));
    let again = gc_pgstore::migrate(&url(&db)).expect("again");
    assert!(again.applied.is_empty());

    let mut c = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
    c.execute(
        "INSERT INTO gc_migrations (version, name) VALUES ($1, 'from the future')",
        &[&(SCHEMA_VERSION + 1)],
    )
    .expect("insert");
    let e = gc_pgstore::migrate(&url(&db)).expect_err("newer schema");
    assert!(matches!(e, PgError::NewerSchema { .. }), "{e}");
    let text = e.to_string();
    assert!(text.contains("newer than this gc-server knows"), "{text}");
    assert!(
        !text.contains(db.url.split('@').next().unwrap_or("")),
        "password shown: {text}"
    );
}

#[test]
fn an_unreachable_database_is_a_clear_error_without_the_password() {
    // A port nothing listens on (bound, then released).
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let u: DbUrl = format!("postgres://gc:hunter22secret@127.0.0.1:{port}/gc")
        .parse()
        .expect("url");
    let e = gc_pgstore::migrate(&u).expect_err("unreachable");
    let text = e.to_string();
    assert!(e.is_unavailable(), "{text}");
    assert!(
        text.contains(&format!("postgres://gc@127.0.0.1:{port}/gc")),
        "{text}"
    );
    assert!(!text.contains("hunter22secret"), "{text}");
}

#[test]
fn appends_get_dense_ids_dedupe_and_read_back_in_every_way() {
    let Some(db) = pg::database() else { return };
    let store = open(&db, 8);
    let (alice, general, ops) = (
        user("Alice"),
        Room::general(),
        Room::new("#ops").expect("room"),
    );
    let bodies: Vec<String> = (1..=20)
        .map(|i| format!("line {i}\nwith; semicolons \\"))
        .collect();
    let ids: Vec<ClientMsgId> = (1..=20).map(cmid).collect();
    let items: Vec<_> = (0..20)
        .map(|i| {
            let room = if i % 4 == 3 { &ops } else { &general };
            (room, &alice, &ids[i], bodies[i].as_str())
        })
        .collect();
    let results: Vec<_> = store
        .append_many_in(&items)
        .into_iter()
        .map(|r| r.expect("append"))
        .collect();
    assert_eq!(
        results.iter().map(|a| a.id).collect::<Vec<_>>(),
        (1..=20).collect::<Vec<u64>>()
    );
    assert!(results.iter().all(|a| !a.duplicate));
    assert_eq!(store.newest_id(), 20);
    assert_eq!(store.len(), 20);

    // A retry, even with another spelling of the name, is the first record.
    let again = store
        .append_in(&general, &user("ALICE"), &ids[4], "other text")
        .expect("retry");
    assert_eq!(
        (again.id, again.duplicate, again.timestamp),
        (5, true, results[4].timestamp)
    );
    assert_eq!(store.lookup_msgid(&alice, &ids[19]).map(|x| x.0), Some(20));
    assert_eq!(store.newest_id(), 20, "nothing new stored");

    // Everything, from the tail (cursor 15) and from the database (cursor 0: older than the tail).
    let all = everything(&store);
    assert_eq!(all.len(), 20);
    assert_eq!(all[6].1, bodies[6], "the text comes back exactly");
    let general_only = store
        .after_in_from(15, &[RoomSpan::all(general.clone())], 100, u64::MAX)
        .expect("tail read");
    assert_eq!(
        general_only
            .records
            .iter()
            .map(|r| r.id)
            .collect::<Vec<_>>(),
        vec![17, 18, 19]
    );
    assert_eq!(general_only.through, 20);
    let capped = store
        .after_in_from(0, &[RoomSpan::all(general.clone())], 4, u64::MAX)
        .expect("database read");
    assert_eq!(
        capped.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![1, 2, 3, 5]
    );
    assert_eq!(
        capped.through, 5,
        "cut by the limit: through the last one returned"
    );
    let spans = [RoomSpan {
        room: ops.clone(),
        after: 4,
        until: 12,
    }];
    let span = store.after_in_from(0, &spans, 100, u64::MAX).expect("span");
    assert_eq!(
        span.records.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![8, 12]
    );
    let one = store
        .after_in_from(0, &[RoomSpan::all(general.clone())], 100, 1)
        .expect("byte limit");
    assert_eq!(
        one.records.len(),
        1,
        "at least one record, even over the byte budget"
    );

    let history = store.before_in(&ops, 0, 2).expect("history");
    assert_eq!(
        history.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![16, 20]
    );
    let older = store.before_in(&ops, 16, 10).expect("history");
    assert_eq!(
        older.iter().map(|r| r.id).collect::<Vec<_>>(),
        vec![4, 8, 12]
    );
    assert_eq!(store.last_n_start_in(std::slice::from_ref(&ops), 2), 12);
    assert_eq!(store.last_n_start_in(std::slice::from_ref(&ops), 5), 0);
    assert_eq!(
        store.last_n_start_in(std::slice::from_ref(&general), 3),
        15,
        "from the tail"
    );
    assert_eq!(
        store.last_n_start_in(std::slice::from_ref(&general), 14),
        1,
        "from the database"
    );

    // Reopened (a restart): the same records.
    drop(store);
    let store = open(&db, 8);
    assert_eq!(store.newest_id(), 20);
    assert_eq!(everything(&store), all);
    let next = store
        .append_in(&general, &alice, &cmid(21), "after restart")
        .expect("append");
    assert_eq!(next.id, 21);
    assert!(next.timestamp >= results[19].timestamp);
}

#[test]
fn instances_share_one_sequence_exactly_once_and_commit_order_is_id_order() {
    let Some(db) = pg::database() else { return };
    let a = Arc::new(open(&db, 10_000));
    let b = Arc::new(open(&db, 10_000));
    let (woke_tx, woke_rx) = mpsc::channel::<(Instant, u64)>();
    let woke_tx = std::sync::Mutex::new(woke_tx);
    b.set_waker(Arc::new(move |arrived: &gc_store::Arrived| {
        if let Ok(tx) = woke_tx.lock() {
            let _ = tx.send((Instant::now(), arrived.newest));
        }
    }));

    // A wake-up within milliseconds of a commit elsewhere (LISTEN/NOTIFY, not the backstop).
    let before = Instant::now();
    let first = a
        .append_in(&Room::general(), &user("alice"), &cmid("w"), "wake")
        .expect("append");
    let (at, newest) = woke_rx.recv_timeout(gc_tests::WAIT).expect("b woke");
    assert!(newest >= first.id);
    assert!(
        at - before < Duration::from_millis(500),
        "woke after {:?}",
        at - before
    );
    assert_eq!(b.newest_id(), first.id);

    // Writers on both instances, each message sent through both (a retry through the other
    // instance); a reader on b checks that ids appear in order with no hole ever.
    const PER_WRITER: usize = 150;
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let reader = {
        let (b, stop) = (Arc::clone(&b), Arc::clone(&stop));
        thread::spawn(move || {
            let mut cursor = 0;
            let mut seen = Vec::new();
            loop {
                let done = stop.load(std::sync::atomic::Ordering::Acquire);
                let page = b
                    .after_in_from(cursor, &[RoomSpan::all(Room::general())], 64, u64::MAX)
                    .expect("read");
                for r in &page.records {
                    assert_eq!(r.id, cursor + 1, "id {} appeared after {cursor}", r.id);
                    cursor = r.id;
                    seen.push(r.id);
                }
                if done && page.records.is_empty() {
                    return seen;
                }
                thread::yield_now();
            }
        })
    };
    let writers: Vec<_> = (0..4)
        .map(|w| {
            let (first, second) = if w % 2 == 0 {
                (Arc::clone(&a), Arc::clone(&b))
            } else {
                (Arc::clone(&b), Arc::clone(&a))
            };
            thread::spawn(move || {
                let me = user(&format!("writer{w}"));
                let mut ids = Vec::new();
                for i in 0..PER_WRITER {
                    let id = cmid(format!("{w}-{i}"));
                    let one = first
                        .append_in(&Room::general(), &me, &id, &format!("{w}/{i}"))
                        .expect("append");
                    let two = second
                        .append_in(&Room::general(), &me, &id, &format!("{w}/{i}"))
                        .expect("retry");
                    assert_eq!(
                        (two.id, two.duplicate),
                        (one.id, true),
                        "retried through the other instance"
                    );
                    ids.push(one.id);
                }
                ids
            })
        })
        .collect();
    let mut ids: Vec<u64> = writers
        .into_iter()
        .flat_map(|h| h.join().expect("writer"))
        .collect();
    ids.sort_unstable();
    let total = 1 + 4 * PER_WRITER as u64;
    assert_eq!(
        ids,
        (2..=total).collect::<Vec<u64>>(),
        "dense, each message once"
    );
    wait_newest(&a, total);
    wait_newest(&b, total);
    stop.store(true, std::sync::atomic::Ordering::Release);
    let seen = reader.join().expect("reader");
    assert_eq!(seen, (1..=total).collect::<Vec<u64>>());
    assert_eq!(
        everything(&a),
        everything(&b),
        "both instances show the same history"
    );
}

#[test]
fn accounts_are_shared_and_unique_without_regard_to_case() {
    let Some(db) = pg::database() else { return };
    gc_pgstore::migrate(&url(&db)).expect("migrate");
    let (one, two) = (PgAccounts::new(&url(&db)), PgAccounts::new(&url(&db)));
    let account = |name: &str, salt: u8| Account {
        username: user(name),
        salt: vec![salt; 16],
        iterations: 4096,
        stored_key: vec![1; 32],
        server_key: vec![2; 32],
        created: Timestamp::from_micros(1_700_000_000_000_000),
    };
    one.add(account("Alice", 1)).expect("add");
    let e = two.add(account("alice", 2)).expect_err("taken");
    assert!(
        matches!(e, StoreError::Exists { ref username } if username == "Alice"),
        "{e}"
    );
    let got = two.get("ALICE").expect("get").expect("found");
    assert_eq!(got, account("Alice", 1));
    two.update(account("Alice", 3)).expect("update");
    assert_eq!(
        one.get("alice").expect("get").map(|a| a.salt),
        Some(vec![3; 16])
    );
    assert!(matches!(
        one.update(account("bob", 1)),
        Err(StoreError::UnknownAccount { .. })
    ));
    one.add(account("bob", 4)).expect("add");
    assert_eq!(two.count().expect("count"), 2);
    assert_eq!(two.list().expect("list").len(), 2);
    assert_eq!(one.remove("BOB").expect("remove").username.as_str(), "bob");
    assert!(two.get("bob").expect("get").is_none());
}
