//! Crash test: a child process (this test binary, re-executed in child mode) appends with fsync
//! `always` and prints each acknowledged id; the parent kills it with SIGKILL at random moments,
//! reopens the store, and checks that every acknowledged record is there exactly once with its
//! body, that the files validate, that ids go on increasing, and that dedupe survived. A second
//! run appends into three rooms in turn (three files, one id sequence), with SIGKILL only.

// Test helpers outside #[test] functions may unwrap too.
#![allow(clippy::unwrap_used)]

use std::collections::HashSet;
use std::io::{BufRead as _, BufReader, Write as _};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use gc_protocol::types::{ClientMsgId, Room, Username};
use gc_store::{FsyncPolicy, MessageStore, StoreConfig, StoreError, check};

/// Selects child mode; holds `{data dir}|{round}|{rooms}`.
const CHILD_ENV: &str = "GC_STORE_CRASH_CHILD";
/// The test that runs in the child.
const CHILD_TEST: &str = "crash_child";
const ROUNDS: u64 = 8;

fn config() -> StoreConfig {
    StoreConfig {
        fsync: FsyncPolicy::Always,
        tail_capacity: 16,
        ..StoreConfig::default()
    }
}

fn user() -> Username {
    Username::new("Crash.Tester").unwrap()
}

fn cmid(round: u64, i: u64) -> ClientMsgId {
    ClientMsgId::new(format!("r{round}-m{i}")).unwrap()
}

/// The room of message `i` in the rooms run (`#general` in the other).
fn room_of(rooms: bool, i: u64) -> Room {
    match (rooms, i % 3) {
        (false, _) | (true, 0) => Room::general(),
        (true, 1) => Room::new("#crash").unwrap(),
        _ => Room::new("@crash.tester+other").unwrap(),
    }
}

fn body(round: u64, i: u64) -> String {
    format!(
        "round {round} message {i}: semi;colon \\ back\nslash\r {}",
        "x".repeat((i % 97) as usize)
    )
}

/// In child mode: append until killed (bounded, in case the parent is gone). Otherwise: nothing.
#[test]
fn crash_child() {
    let Ok(spec) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut parts = spec.rsplitn(3, '|');
    let rooms = parts.next().unwrap() == "rooms";
    let round: u64 = parts.next().unwrap().parse().unwrap();
    let dir = parts.next().unwrap();
    let (store, _) = MessageStore::open(Path::new(dir), config()).unwrap();
    let started = Instant::now();
    let mut out = std::io::stdout().lock();
    for i in 0..100_000 {
        let a = store
            .append_in(
                &room_of(rooms, i),
                &user(),
                &cmid(round, i),
                &body(round, i),
            )
            .unwrap();
        // Printed only after append returned: this id is acknowledged.
        writeln!(out, "ACK {round} {i} {}", a.id).unwrap();
        out.flush().unwrap();
        if started.elapsed() > Duration::from_secs(20) {
            break;
        }
    }
}

/// A small xorshift generator; the seed is printed in every failure message.
struct Rng(u64);

impl Rng {
    fn next(&mut self, below: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % below
    }
}

fn parse_ack(line: &str) -> Option<(u64, u64, u64)> {
    let mut f = line.strip_prefix("ACK ")?.split(' ');
    Some((
        f.next()?.parse().ok()?,
        f.next()?.parse().ok()?,
        f.next()?.parse().ok()?,
    ))
}

/// The end offset of the line for `id` in a file of `{id};…` lines (0 for id 0 or not found).
fn end_of_line_with_id(content: &[u8], id: u64) -> usize {
    let mut offset = 0;
    for line in content.split_inclusive(|&b| b == b'\n') {
        offset += line.len();
        let first = line.split(|&b| b == b';').next().unwrap_or_default();
        if line.ends_with(b"\n") && first == id.to_string().as_bytes() {
            return offset;
        }
    }
    0
}

/// Simulates a power cut after the kill: bytes not yet fsynced may be lost, in part. Those are
/// the bytes after the last acknowledged record; cut `database.db` somewhere among them, then
/// `database.msgids` somewhere after the entry of the last record still complete (msgids lines
/// are durable before their records are written, so that one must stay).
fn power_cut(dir: &Path, last_acked: u64, rng: &mut Rng) {
    let db_path = dir.join("database.db");
    let ids_path = dir.join("database.msgids");
    // A child killed while it was opening a new store may not have made both files yet; then
    // nothing was appended, and there is nothing a power cut could take.
    if !db_path.exists() || !ids_path.exists() {
        return;
    }
    let db = std::fs::read(&db_path).unwrap();
    let keep = end_of_line_with_id(&db, last_acked);
    let cut = keep + rng.next((db.len() - keep) as u64 + 1) as usize;
    std::fs::write(&db_path, &db[..cut]).unwrap();
    let last_complete = db[..cut]
        .split_inclusive(|&b| b == b'\n')
        .rev()
        .find(|l| l.ends_with(b"\n"))
        .and_then(|l| {
            std::str::from_utf8(l.split(|&b| b == b';').next()?)
                .ok()?
                .parse()
                .ok()
        })
        .unwrap_or(0);
    let ids = std::fs::read(&ids_path).unwrap();
    let keep = end_of_line_with_id(&ids, last_complete);
    let cut = keep + rng.next((ids.len() - keep) as u64 + 1) as usize;
    std::fs::write(&ids_path, &ids[..cut]).unwrap();
}

#[test]
fn acknowledged_appends_survive_sigkill() {
    run(false);
}

#[test]
fn acknowledged_appends_in_rooms_survive_sigkill() {
    run(true);
}

/// The parent: `ROUNDS` children killed at random moments (`rooms`: appending into three rooms in
/// turn; otherwise into `#general`, with simulated power cuts too).
fn run(rooms: bool) {
    let seed = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
        | 1;
    let mut rng = Rng(seed);
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let exe = std::env::current_exe().unwrap();
    // (round, i, id) of every acknowledged append.
    let mut acked: Vec<(u64, u64, u64)> = Vec::new();
    let mut max_seen = 0u64;
    let (mut torn_tails, mut msgids_dropped, mut unacked_kept) = (0, 0, 0);

    for round in 0..ROUNDS {
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(
                CHILD_ENV,
                format!(
                    "{}|{round}|{}",
                    dir.display(),
                    if rooms { "rooms" } else { "general" }
                ),
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .unwrap();
        let stdout = child.stdout.take().unwrap();
        let (tx, rx) = mpsc::channel();
        let reader = thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if let Some(ack) = parse_ack(&line)
                    && tx.send(ack).is_err()
                {
                    break;
                }
            }
        });

        // Some rounds die early (perhaps while opening); most after a random number of acks.
        let target = if rng.next(4) == 0 {
            0
        } else {
            1 + rng.next(80)
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        let mut got = 0;
        while got < target {
            let left = deadline.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(ack) => {
                    acked.push(ack);
                    got += 1;
                    if got == 1 {
                        // Another process holds the store: a second opener is refused.
                        match MessageStore::open(dir, config()) {
                            Err(StoreError::Locked { .. }) => {}
                            other => panic!("seed {seed}: expected Locked, got {other:?}"),
                        }
                    }
                }
                Err(e) => panic!("seed {seed}: round {round}: only {got} of {target} acks: {e}"),
            }
        }
        thread::sleep(Duration::from_micros(rng.next(if target == 0 {
            30_000
        } else {
            2_000
        })));
        child.kill().unwrap();
        child.wait().unwrap();
        reader.join().unwrap();
        // Acks printed before the kill landed count too.
        acked.extend(rx.try_iter());
        // (The power cut is simulated on `database.db` alone, so only when everything is there.)
        if !rooms && rng.next(2) == 0 {
            let last_acked = acked.iter().map(|a| a.2).max().unwrap_or(0).max(max_seen);
            power_cut(dir, last_acked, &mut rng);
        }

        let (store, report) = MessageStore::open(dir, config())
            .unwrap_or_else(|e| panic!("seed {seed}: round {round}: reopen failed: {e}"));
        torn_tails += usize::from(report.torn_tail.is_some());
        msgids_dropped +=
            report.msgids.dropped_beyond_last + usize::from(report.msgids.dropped_torn.is_some());
        unacked_kept += report
            .last_id
            .saturating_sub(acked.last().map_or(0, |a| a.2).max(max_seen));
        let all = store.after(0, usize::MAX, u64::MAX).unwrap();
        assert_eq!(all.len(), report.records);
        let mut bodies = HashSet::new();
        for r in &all {
            assert!(
                bodies.insert(r.body.clone()),
                "seed {seed}: stored twice: {:?}",
                r.body
            );
        }
        for &(r, i, id) in &acked {
            let rec = store
                .get(id)
                .unwrap()
                .unwrap_or_else(|| panic!("seed {seed}: acknowledged id {id} lost"));
            assert_eq!(rec.body, body(r, i), "seed {seed}: id {id}");
            assert_eq!(rec.room, room_of(rooms, i), "seed {seed}: id {id}");
            assert_eq!(rec.username, user());
            assert_eq!(
                store.lookup_msgid(&user(), &cmid(r, i)).map(|x| x.0),
                Some(id)
            );
        }
        max_seen = max_seen.max(report.last_id);
        // A client retrying its last acknowledged message after the crash gets the same id.
        if let Some(&(r, i, id)) = acked.last() {
            let retry = store
                .append_in(&room_of(rooms, i), &user(), &cmid(r, i), &body(r, i))
                .unwrap();
            assert_eq!((retry.id, retry.duplicate), (id, true), "seed {seed}");
        }
        let fresh = store
            .append(
                &user(),
                &ClientMsgId::new(format!("parent{round}")).unwrap(),
                &format!("parent {round}"),
            )
            .unwrap();
        assert!(
            !fresh.duplicate && fresh.id > max_seen,
            "seed {seed}: id {} reused",
            fresh.id
        );
        max_seen = fresh.id;
        drop(store);
        let c = check(dir).unwrap();
        assert!(
            c.is_ok() && c.msgids_bad_lines == 0 && c.msgids_beyond_last == 0,
            "seed {seed}: {c:?}"
        );
    }
    assert!(
        acked.len() as u64 >= ROUNDS / 2,
        "seed {seed}: too few acks to mean much"
    );
    // What the kills hit, for whoever reads the test output (`--nocapture`).
    let _ = writeln!(
        std::io::stderr(),
        "crash test (seed {seed}, rooms: {rooms}): {ROUNDS} kills, {} acks, {torn_tails} torn tails moved aside, \
         {msgids_dropped} msgids lines dropped, {unacked_kept} unacknowledged records kept",
        acked.len()
    );
}
