//! `memory`: server RSS and threads with no session, then with N idle sessions after a history
//! on join, a large `History` page each (on a sending connection kept open) and a few live
//! messages: what a session keeps once its large replies have gone out; and again after
//! `--idle-secs`, once the server has closed the connections that idled past its idle-timeout.

use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use gc_net::Conn;
use gc_protocol::{SendReply, SendRequest};
use serde_json::json;

use super::{check_range, deliveries, human, latency_row, merge_senders};
use crate::cli::MemoryArgs;
use crate::client::KeyCache;
use crate::error::BenchError;
use crate::report::RunResult;
use crate::sender::Pace;
use crate::wire::Mode;
use crate::{Ctx, Run, lock, procfs};

/// `History` requests in progress at once: enough to be quick, few enough that the server's
/// transient memory for them stays small beside what is measured.
const HISTORY_CONCURRENCY: usize = 4;

/// Runs the workload once.
pub fn memory(ctx: &Ctx, mode: Mode, a: &MemoryArgs) -> Result<RunResult, BenchError> {
    check_range("--n", a.n, 1, 5000)?;
    check_range("--probes", a.probes, 1, 1000)?;
    check_range("--history", a.history, 0, 100_000)?;
    check_range("--body-bytes", a.body_bytes, 64, 32_000)?;
    check_range("--idle-secs", a.idle_secs, 0, 600)?;
    check_range(
        "--history-limit",
        a.history_limit,
        0,
        gc_protocol::limits::MAX_HISTORY_LIMIT,
    )?;
    let n = a.n;
    // Slot `n` is the filler: it stores the history, then signs out before the baseline.
    let run = Run::start(ctx, mode, n + 1, n + 1, false)?;
    std::thread::sleep(Duration::from_secs(1));
    let pid = run.server.pid.map(|p| p.to_string());
    let sample = || pid.as_deref().and_then(procfs::sample);
    let started = sample();
    let cache = KeyCache::default();
    cache.warm(&ctx.accounts);
    let filled = fill(&run, n, a, &cache)?;
    // Baseline: no session, the store as full as it will be (its tail cache holds the history).
    std::thread::sleep(Duration::from_secs(1));
    let bench0 = procfs::sample("self");
    let idle = sample();
    let kernel0 = procfs::kernel_memory();
    let slots: Vec<usize> = (0..n).collect();
    run.sign_in(0..n, |slot, _| slot, n, 16, Some(&cache))?;
    run.wait_pinged(&slots, Duration::from_secs(20))?;
    // Every sign-in is owed the newest records as its history on join: wait until all have them.
    let joined = match filled {
        0 => Some(Duration::ZERO),
        id => run.wait_delivered(&slots, id, Duration::from_secs(60)),
    };
    let base = run.base_id();
    // A few messages, so every client also has its delivery connection (all receiving).
    let job = run.job(0, 0, 32, 1, Pace::Count(a.probes))?;
    let sent = merge_senders(&run.send(vec![job])?);
    let caught_up = run.wait_delivered(&slots, sent.max_id, Duration::from_secs(15));
    // Then a large page each, on a sending connection the client keeps: the server's listener
    // goes on holding that connection, idle, while the memory is measured.
    let pages = history_pages(&run, n, a.history_limit)?;
    std::thread::sleep(Duration::from_secs(1));
    let loaded = sample();
    let breakdown = pid.as_deref().and_then(procfs::rss_breakdown);
    let kernel1 = procfs::kernel_memory();
    let kdelta = |key: &str| {
        let (a, b) = (
            kernel0[key].as_u64().unwrap_or(0),
            kernel1[key].as_u64().unwrap_or(0),
        );
        (b.saturating_sub(a) * 1024) / n as u64
    };
    let kernel_per_client = json!({
        "kernel_stack_bytes": kdelta("kernel_stack_kib"),
        "slab_unreclaimable_bytes": kdelta("slab_unreclaimable_kib"),
        "tcp_buffer_bytes": kdelta("tcp_buffers_kib"),
    });
    let bench1 = procfs::sample("self");
    // Then idle: heartbeats only. The bench keeps its end of the sending connections; the
    // server closes what carried nothing for its idle-timeout, as for any idle session.
    let (settled, settled_breakdown) = match a.idle_secs {
        0 => (None, None),
        secs => {
            std::thread::sleep(Duration::from_secs(secs));
            (sample(), pid.as_deref().and_then(procfs::rss_breakdown))
        }
    };
    let history_records = pages.records;
    drop(pages);
    let failed_byes = run.bye(0..n, 8);
    let (io, problems) = run.finish()?;
    let d = deliveries(&io, &slots, base, sent.max_id);
    let per_client = |a: Option<procfs::ProcSample>, b: Option<procfs::ProcSample>| match (a, b) {
        (Some(a), Some(b)) => Some((b.rss_kib.saturating_sub(a.rss_kib) * 1024) / n as u64),
        _ => None,
    };
    let server_per_client = per_client(idle, loaded);
    let server_per_idle_client = per_client(idle, settled);
    let bench_per_client = per_client(bench0, bench1);
    let threads = |s: Option<procfs::ProcSample>| s.map_or(0, |s| s.threads);
    let rss = |s: Option<procfs::ProcSample>| s.map_or(0, |s| s.rss_kib);
    let table = vec![
        (
            "server as started".into(),
            format!("{} KiB RSS, {} threads", rss(started), threads(started)),
        ),
        (
            "server, no session".into(),
            format!(
                "{} KiB RSS, {} threads ({} messages of {} B stored)",
                rss(idle),
                threads(idle),
                a.history,
                a.body_bytes
            ),
        ),
        (
            format!("server, {n} clients"),
            format!("{} KiB RSS, {} threads", rss(loaded), threads(loaded)),
        ),
        (
            "history on join".into(),
            match joined {
                Some(t) => format!("every client has it ({:.1} s)", t.as_secs_f64()),
                None => "NOT every client has it".into(),
            },
        ),
        (
            "History pages".into(),
            format!(
                "{} clients asked for {}, {} records in all, connections kept open",
                n,
                a.history_limit,
                human(history_records as f64)
            ),
        ),
        (
            "server bytes per client".into(),
            server_per_client.map_or("n/a".into(), |b| format!("{} B", human(b as f64))),
        ),
        (
            format!("after {} s idle", a.idle_secs),
            match settled {
                Some(s) => format!(
                    "{} KiB RSS, {} threads: {} B per client",
                    s.rss_kib,
                    s.threads,
                    server_per_idle_client.map_or("n/a".into(), |b| human(b as f64))
                ),
                None => "not sampled".into(),
            },
        ),
        (
            "bench bytes per client".into(),
            bench_per_client.map_or("n/a".into(), |b| format!("{} B", human(b as f64))),
        ),
        (
            "all receiving".into(),
            format!(
                "{} ({} probe messages) · {}",
                d.row(),
                a.probes,
                if caught_up.is_some() {
                    "everyone caught up"
                } else {
                    "NOT everyone caught up"
                }
            ),
        ),
        ("probe latency".into(), latency_row(&io.latency)),
        (
            "kernel per client".into(),
            format!("{kernel_per_client} (machine-wide deltas, both ends)"),
        ),
        (
            "server RSS by kind".into(),
            breakdown.as_ref().map_or("n/a".into(), |b| b.to_string()),
        ),
        (
            "… after the idle wait".into(),
            settled_breakdown
                .as_ref()
                .map_or("n/a".into(), |b| b.to_string()),
        ),
    ];
    Ok(RunResult {
        params: json!({
            "n": n,
            "probes": a.probes,
            "history": a.history,
            "body_bytes": a.body_bytes,
            "history_limit": a.history_limit,
            "idle_secs": a.idle_secs,
        }),
        results: json!({
            "started": {"rss_kib": rss(started), "threads": threads(started)},
            "idle": {"rss_kib": rss(idle), "threads": threads(idle)},
            "history_on_join_complete": joined.is_some(),
            "history_records": history_records,
            "loaded": {"rss_kib": rss(loaded), "threads": threads(loaded)},
            "server_bytes_per_client": server_per_client,
            "loaded_breakdown": breakdown,
            "settled": settled.map(|s| json!({"rss_kib": s.rss_kib, "threads": s.threads})),
            "server_bytes_per_idle_client": server_per_idle_client,
            "settled_breakdown": settled_breakdown,
            "kernel_per_client_machine_wide": kernel_per_client,
            "bench_bytes_per_client": bench_per_client,
            "held": n,
            "all_receiving": caught_up.is_some() && d.lost == 0,
            "deliveries": d.json(),
            "latency": io.latency.summary_ms(),
            "failed_byes": failed_byes,
            "problems": problems,
        }),
        table,
        headline: vec![
            "idle.rss_kib".into(),
            "loaded.rss_kib".into(),
            "loaded.threads".into(),
            "server_bytes_per_client".into(),
            "server_bytes_per_idle_client".into(),
            "deliveries.lost".into(),
        ],
    })
}

/// Stores `a.history` messages of `a.body_bytes` from the filler client (slot `filler`), then
/// ends its session; returns the newest id stored (0: none).
fn fill(run: &Run<'_>, filler: usize, a: &MemoryArgs, cache: &KeyCache) -> Result<u64, BenchError> {
    if a.history == 0 {
        return Ok(0);
    }
    run.sign_in(
        filler..filler + 1,
        |slot, _| slot,
        filler + 1,
        1,
        Some(cache),
    )?;
    let mut job = run.job(filler, filler, a.body_bytes, 32, Pace::Count(a.history))?;
    // Not this run's tag: the receivers do not time history.
    job.tag = "fill".into();
    let sent = merge_senders(&run.send(vec![job])?);
    if sent.acked < a.history {
        return Err(BenchError::Refused {
            what: "storing the history".into(),
            answer: sent
                .first_error
                .unwrap_or_else(|| format!("{} of {} acknowledged", sent.acked, a.history)),
        });
    }
    if run.bye(filler..filler + 1, 1) > 0 {
        return Err(BenchError::Refused {
            what: "the filler's Bye".into(),
            answer: "no Thx".into(),
        });
    }
    Ok(sent.max_id)
}

/// The sending connections kept open after their `History` page, and the records they brought.
struct Pages {
    _conns: Vec<Conn>,
    records: u64,
}

/// Every client of `0..n` asks for a `History` page of `limit` records (the newest) on a fresh
/// sending connection, reads it whole, and keeps the connection open.
fn history_pages(run: &Run<'_>, n: usize, limit: u32) -> Result<Pages, BenchError> {
    if limit == 0 {
        return Ok(Pages {
            _conns: Vec::new(),
            records: 0,
        });
    }
    let next = AtomicUsize::new(0);
    let conns = Mutex::new(Vec::with_capacity(n));
    let records = AtomicUsize::new(0);
    let first_error: Mutex<Option<BenchError>> = Mutex::new(None);
    thread::scope(|scope| -> Result<(), BenchError> {
        let mut handles = Vec::new();
        for k in 0..HISTORY_CONCURRENCY.min(n) {
            let name = format!("bc-history-{k}");
            let (next, conns, records, first_error) = (&next, &conns, &records, &first_error);
            let h = thread::Builder::new()
                .name(name.clone())
                .spawn_scoped(scope, move || {
                    loop {
                        let slot = next.fetch_add(1, Ordering::Relaxed);
                        if slot >= n || lock(first_error).is_some() {
                            procfs::thread_done();
                            return;
                        }
                        match history_page(run, slot, limit) {
                            Ok((conn, got)) => {
                                records.fetch_add(got, Ordering::Relaxed);
                                lock(conns).push(conn);
                            }
                            Err(e) => {
                                lock(first_error).get_or_insert(e);
                            }
                        }
                    }
                })
                .map_err(|source| BenchError::Thread { name, source })?;
            handles.push(h);
        }
        for h in handles {
            let name = h.thread().name().unwrap_or("bc-history").to_owned();
            h.join().map_err(|_| BenchError::Panicked(name))?;
        }
        Ok(())
    })?;
    if let Some(e) = lock(&first_error).take() {
        return Err(e);
    }
    Ok(Pages {
        _conns: conns.into_inner().unwrap_or_else(|p| p.into_inner()),
        records: records.into_inner() as u64,
    })
}

/// One client's `History <token> 0 <limit>`: the connection, left open, and the records read.
fn history_page(run: &Run<'_>, slot: usize, limit: u32) -> Result<(Conn, usize), BenchError> {
    let held = run
        .held(slot)
        .ok_or_else(|| BenchError::Invalid(format!("client {slot} is not signed in")))?;
    let addrs = &run.server_of(slot).addrs;
    let mut conn = run
        .wire
        .connect(held.ip, addrs.send, "connect (9980) for History")?;
    let deadline = Instant::now() + Duration::from_secs(20);
    let request = SendRequest::History {
        token: held.token,
        before_id: 0,
        limit,
        room: None,
    };
    conn.send(&request, deadline)
        .map_err(|e| BenchError::protocol("send History", e))?;
    let mut got = 0;
    loop {
        match conn.read::<SendReply>(deadline) {
            Ok(SendReply::Rec(_)) => got += 1,
            Ok(SendReply::End) => return Ok((conn, got)),
            Ok(other) => {
                return Err(BenchError::Refused {
                    what: "History".into(),
                    answer: format!("{other:?}"),
                });
            }
            Err(e) => return Err(BenchError::protocol("read the History page", e)),
        }
    }
}
