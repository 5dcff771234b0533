//! Store benchmarks: appends/s under each fsync policy and concurrency, open + recovery of a
//! 1,000,000-record file, and queries at 1,000,000 records from the tail and from the file.
//!
//! `cargo bench -p gc-store --bench store` (filter with e.g. `-- append/batch`). Files live in
//! the system temporary directory, so fsync figures are that disk's.

#![allow(clippy::unwrap_used)]

use std::hint::black_box;
use std::io::Write as _;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Barrier};
use std::time::{Duration, Instant};

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use gc_protocol::types::{ClientMsgId, Record, Timestamp, Username};
use gc_store::{FsyncPolicy, MessageStore, StoreConfig, encode_record};

const BODY: &str = "a typical chat message of about sixty bytes, give or take!";

/// Unique client-msg-ids across every run.
static NEXT: AtomicU64 = AtomicU64::new(0);

/// Runs `iters` appends spread over `threads` threads; returns the wall time they took.
fn appends(store: &MessageStore, users: &[Username], threads: usize, iters: u64) -> Duration {
    let per = iters.div_ceil(threads as u64);
    let barrier = Barrier::new(threads + 1);
    std::thread::scope(|s| {
        for t in 0..threads {
            let (barrier, user) = (&barrier, &users[t % users.len()]);
            s.spawn(move || {
                let ids: Vec<ClientMsgId> = (0..per)
                    .map(|_| {
                        let n = NEXT.fetch_add(1, Ordering::Relaxed);
                        ClientMsgId::new(format!("b{n}")).unwrap()
                    })
                    .collect();
                barrier.wait();
                for id in &ids {
                    black_box(store.append(user, id, BODY).unwrap());
                }
            });
        }
        barrier.wait();
        let started = Instant::now();
        // The scope joins every appender before it returns.
        started
    })
    .elapsed()
}

fn bench_appends(c: &mut Criterion) {
    let users: Vec<Username> = (0..64)
        .map(|i| Username::new(format!("user{i}")).unwrap())
        .collect();
    let mut g = c.benchmark_group("append");
    g.throughput(Throughput::Elements(1))
        .sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(3));
    let cases = [
        ("always/1", FsyncPolicy::Always, 1),
        ("always/16", FsyncPolicy::Always, 16),
        ("batch/1", FsyncPolicy::Batch, 1),
        ("batch/16", FsyncPolicy::Batch, 16),
        ("batch/32", FsyncPolicy::Batch, 32),
        ("batch/64", FsyncPolicy::Batch, 64),
        ("never/1", FsyncPolicy::Never, 1),
        ("never/16", FsyncPolicy::Never, 16),
    ];
    for (name, fsync, threads) in cases {
        let dir = tempfile::tempdir().unwrap();
        let config = StoreConfig {
            fsync,
            ..StoreConfig::default()
        };
        let (store, _) = MessageStore::open(dir.path(), config).unwrap();
        let store = Arc::new(store);
        g.bench_function(name, |b| {
            b.iter_custom(|iters| appends(&store, &users, threads, iters))
        });
    }
    g.finish();
}

/// Writes `n` records (and their msgids lines) straight into `dir`.
fn make_store(dir: &Path, n: u64) {
    let mut db = std::io::BufWriter::new(std::fs::File::create(dir.join("database.db")).unwrap());
    let mut ids =
        std::io::BufWriter::new(std::fs::File::create(dir.join("database.msgids")).unwrap());
    let start = Timestamp::parse("1700000000").unwrap().as_micros();
    let mut line = Vec::new();
    for id in 1..=n {
        let user = format!("user{}", id % 50);
        let record = Record {
            room: gc_protocol::Room::general(),
            id,
            timestamp: Timestamp::from_micros(start + id * 1_234),
            username: Username::new(user.as_str()).unwrap(),
            body: format!("{BODY} #{id}"),
        };
        line.clear();
        encode_record(&record, &mut line);
        db.write_all(&line).unwrap();
        writeln!(ids, "{id};{user};c{id:x}AbCdEfGhIjKlMnOp").unwrap();
    }
    db.flush().unwrap();
    ids.flush().unwrap();
}

fn bench_open_and_queries(c: &mut Criterion) {
    const N: u64 = 1_000_000;
    let dir = tempfile::tempdir().unwrap();
    make_store(dir.path(), N);

    let mut g = c.benchmark_group("open");
    g.sample_size(10)
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(8));
    g.bench_function("1m_records", |b| {
        b.iter(|| {
            let (store, report) = MessageStore::open(dir.path(), StoreConfig::default()).unwrap();
            assert_eq!(report.records, N as usize);
            assert!(report.torn_tail.is_none() && !report.msgids.rewritten);
            drop(store);
        })
    });
    g.finish();

    let (store, _) = MessageStore::open(dir.path(), StoreConfig::default()).unwrap();
    let mut g = c.benchmark_group("query_1m");
    g.sample_size(20)
        .warm_up_time(Duration::from_millis(300))
        .measurement_time(Duration::from_secs(2));
    let cap = 512 * 1024;
    g.bench_function("after/tail/100", |b| {
        b.iter(|| black_box(store.after(N - 100, 100, cap).unwrap()))
    });
    g.bench_function("after/file/100", |b| {
        b.iter(|| black_box(store.after(N / 2, 100, cap).unwrap()))
    });
    g.bench_function("after/file/1000", |b| {
        b.iter(|| black_box(store.after(N / 2, 1000, cap).unwrap()))
    });
    g.bench_function("before/tail/100", |b| {
        b.iter(|| black_box(store.before(0, 100).unwrap()))
    });
    g.bench_function("before/file/100", |b| {
        b.iter(|| black_box(store.before(N / 2, 100).unwrap()))
    });
    g.bench_function("get/file", |b| {
        b.iter(|| black_box(store.get(123_456).unwrap()))
    });
    g.bench_function("newest_id", |b| b.iter(|| black_box(store.newest_id())));
    g.finish();
}

criterion_group!(benches, bench_appends, bench_open_and_queries);
criterion_main!(benches);
