//! `idle`: N clients connected and silent; what heartbeats cost the server.

use std::sync::atomic::Ordering;
use std::time::Duration;

use serde_json::json;

use super::{check_range, human, proc_json};
use crate::cli::IdleArgs;
use crate::client::KeyCache;
use crate::error::BenchError;
use crate::hist::round3;
use crate::report::RunResult;
use crate::wire::Mode;
use crate::{Ctx, Run};

/// Runs the workload once.
pub fn idle(ctx: &Ctx, mode: Mode, a: &IdleArgs) -> Result<RunResult, BenchError> {
    check_range("--n", a.n, 1, 5000)?;
    let limit = ctx.timeout.as_secs_f64() - 20.0;
    if !(a.seconds >= 1.0 && a.seconds <= limit) {
        return Err(BenchError::Invalid(format!(
            "--seconds must be 1 to --timeout minus 20 s ({limit} s)"
        )));
    }
    let n = a.n;
    let run = Run::start(ctx, mode, n, n, false)?;
    let cache = KeyCache::default();
    cache.warm(&ctx.accounts);
    let slots: Vec<usize> = (0..n).collect();
    run.sign_in(0..n, |slot, _| slot, n, 16, Some(&cache))?;
    run.wait_pinged(&slots, Duration::from_secs(15))?;
    // Let the sign-in wave settle (presence changes wake every heartbeat thread).
    std::thread::sleep(Duration::from_secs(1));
    let counters = run.counters();
    let counters = || {
        (
            counters.hb_accepts.load(Ordering::Relaxed)
                + counters.dl_accepts.load(Ordering::Relaxed),
            counters.pings.load(Ordering::Relaxed),
        )
    };
    let before = run.snapshot();
    let (acc0, pings0) = counters();
    std::thread::sleep(Duration::from_secs_f64(a.seconds));
    let after = run.snapshot();
    let (acc1, pings1) = counters();
    let cpu = before.until(&after);
    let mem = after.server();
    let failed_byes = run.bye(0..n, 8);
    let (_io, problems) = run.finish()?;
    let wall = cpu.wall_s;
    let conns_per_s = (acc1 - acc0) as f64 / wall;
    let pings_per_s = (pings1 - pings0) as f64 / wall;
    let expected = n as f64 * 1000.0 / ctx.spec.heartbeat_ms as f64;
    let server_pct = cpu.server_cores.map(|c| c * 100.0);
    let table = vec![
        (
            "server CPU".into(),
            format!(
                "{} of one core   [{}]",
                server_pct.map_or("n/a".into(), |p| format!("{p:.1} %")),
                cpu.describe()
            ),
        ),
        (
            "heartbeats answered".into(),
            format!(
                "{}/s (expected {} at {} ms)",
                human(pings_per_s),
                human(expected),
                ctx.spec.heartbeat_ms
            ),
        ),
        (
            "connections opened by the server".into(),
            format!("{conns_per_s:.2}/s"),
        ),
        (
            "server memory".into(),
            format!(
                "{} KiB RSS, {} threads",
                mem.map_or(0, |m| m.rss_kib),
                mem.map_or(0, |m| m.threads)
            ),
        ),
    ];
    Ok(RunResult {
        params: json!({"n": n, "seconds": a.seconds, "heartbeat_ms": ctx.spec.heartbeat_ms}),
        results: json!({
            "server_cpu_pct": server_pct.map(round3),
            "pings_per_s": round3(pings_per_s),
            "expected_pings_per_s": round3(expected),
            "connections_per_s": round3(conns_per_s),
            "cpu": cpu.to_json(),
            "server_mem": proc_json(mem),
            "failed_byes": failed_byes,
            "problems": problems,
        }),
        table,
        headline: vec![
            "server_cpu_pct".into(),
            "pings_per_s".into(),
            "connections_per_s".into(),
            "server_mem.rss_kib".into(),
            "server_mem.threads".into(),
        ],
    })
}
