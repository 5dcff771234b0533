//! `memory`: server RSS and threads with no clients and with N clients that all receive.

use std::time::Duration;

use serde_json::json;

use super::{check_range, deliveries, human, latency_row, merge_senders};
use crate::cli::MemoryArgs;
use crate::client::KeyCache;
use crate::error::BenchError;
use crate::procfs;
use crate::report::RunResult;
use crate::sender::Pace;
use crate::wire::Mode;
use crate::{Ctx, Run};

/// Runs the workload once.
pub fn memory(ctx: &Ctx, mode: Mode, a: &MemoryArgs) -> Result<RunResult, BenchError> {
    check_range("--n", a.n, 1, 5000)?;
    check_range("--probes", a.probes, 1, 1000)?;
    let n = a.n;
    let run = Run::start(ctx, mode, n, n, false)?;
    // Idle baseline: the server as started, with no session.
    std::thread::sleep(Duration::from_secs(1));
    let pid = run.server.pid.map(|p| p.to_string());
    let sample = || pid.as_deref().and_then(procfs::sample);
    let bench0 = procfs::sample("self");
    let idle = sample();
    let kernel0 = procfs::kernel_memory();
    let cache = KeyCache::default();
    cache.warm(&ctx.accounts);
    let slots: Vec<usize> = (0..n).collect();
    run.sign_in(0..n, |slot, _| slot, n, 16, Some(&cache))?;
    run.wait_pinged(&slots, Duration::from_secs(20))?;
    let base = run.base_id();
    // A few messages, so every client also has its delivery connection (all receiving).
    let job = run.job(0, 0, 32, 1, Pace::Count(a.probes))?;
    let sent = merge_senders(&run.send(vec![job])?);
    let caught_up = run.wait_delivered(&slots, sent.max_id, Duration::from_secs(15));
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
    let failed_byes = run.bye(0..n, 8);
    let (io, problems) = run.finish()?;
    let d = deliveries(&io, &slots, base, sent.max_id);
    let per_client = |a: Option<procfs::ProcSample>, b: Option<procfs::ProcSample>| match (a, b) {
        (Some(a), Some(b)) => Some((b.rss_kib.saturating_sub(a.rss_kib) * 1024) / n as u64),
        _ => None,
    };
    let server_per_client = per_client(idle, loaded);
    let bench_per_client = per_client(bench0, bench1);
    let threads = |s: Option<procfs::ProcSample>| s.map_or(0, |s| s.threads);
    let rss = |s: Option<procfs::ProcSample>| s.map_or(0, |s| s.rss_kib);
    let table = vec![
        (
            "server, no clients".into(),
            format!("{} KiB RSS, {} threads", rss(idle), threads(idle)),
        ),
        (
            format!("server, {n} clients"),
            format!("{} KiB RSS, {} threads", rss(loaded), threads(loaded)),
        ),
        (
            "server bytes per client".into(),
            server_per_client.map_or("n/a".into(), |b| format!("{} B", human(b as f64))),
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
    ];
    Ok(RunResult {
        params: json!({"n": n, "probes": a.probes}),
        results: json!({
            "idle": {"rss_kib": rss(idle), "threads": threads(idle)},
            "loaded": {"rss_kib": rss(loaded), "threads": threads(loaded)},
            "server_bytes_per_client": server_per_client,
            "loaded_breakdown": breakdown,
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
            "deliveries.lost".into(),
        ],
    })
}
