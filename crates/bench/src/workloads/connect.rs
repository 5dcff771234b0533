//! `connect`: full sign-ins, timed phase by phase.

use std::time::Duration;

use serde_json::{Map, Value, json};

use super::{check_range, durations_json, human, quantile_ms};
use crate::cli::{ConnectArgs, Keys};
use crate::client::KeyCache;
use crate::error::BenchError;
use crate::report::RunResult;
use crate::wire::Mode;
use crate::{Ctx, Run};

/// Runs the workload once.
pub fn connect(ctx: &Ctx, mode: Mode, a: &ConnectArgs) -> Result<RunResult, BenchError> {
    check_range("--n", a.n, 1, 5000)?;
    // The server allows 64 logins in progress (and 8 per address) by default.
    check_range("--concurrency", a.concurrency, 1, 64)?;
    let phases: &[Keys] = match a.keys {
        Keys::Both => &[Keys::Cold, Keys::Cached],
        Keys::Cold => &[Keys::Cold],
        Keys::Cached => &[Keys::Cached],
    };
    let n = a.n;
    let run = Run::start(ctx, mode, n, n * phases.len(), false)?;
    let cache = KeyCache::default();
    // A client that signed in before holds its keys for this salt already.
    cache.warm(&ctx.accounts);
    let mut results = Map::new();
    let mut table = Vec::new();
    let mut headline = Vec::new();
    for (p, &mode) in phases.iter().enumerate() {
        let name = if mode == Keys::Cold { "cold" } else { "cached" };
        let slots = p * n..(p + 1) * n;
        let keys = (mode == Keys::Cached).then_some(&cache);
        let pings0 = run
            .counters()
            .pings
            .load(std::sync::atomic::Ordering::Relaxed);
        let s = run.sign_in(slots.clone(), |slot, n| slot % n, n, a.concurrency, keys)?;
        // Every sign-in changes presence, and every online client's heartbeat thread pings it.
        let pings = run
            .counters()
            .pings
            .load(std::sync::atomic::Ordering::Relaxed)
            - pings0;
        let mut total: Vec<Duration> = s.timings.iter().map(|t| t.total).collect();
        let mut ping: Vec<Duration> = s.timings.iter().map(|t| t.ping).collect();
        let mut auth1: Vec<Duration> = s.timings.iter().map(|t| t.auth1).collect();
        let mut proof: Vec<Duration> = s.timings.iter().map(|t| t.proof).collect();
        let mut finish: Vec<Duration> = s.timings.iter().map(|t| t.finish).collect();
        let rate = n as f64 / s.wall.as_secs_f64().max(1e-9);
        let setup = durations_json(&mut total);
        table.push((
            format!("sign-in, keys {name}"),
            format!(
                "p50 {:.3} ms · p99 {:.3} ms · max {:.3} ms ({n} clients, {} at a time)",
                quantile_ms(&mut total, 0.5),
                quantile_ms(&mut total, 0.99),
                quantile_ms(&mut total, 1.0),
                a.concurrency
            ),
        ));
        table.push((
            format!("  steps p50 ({name})"),
            format!(
                "Ping/Pong {:.3} · AuthRequest/Auth1 {:.3} · proof (PBKDF2) {:.3} · \
                 Proof/callback/Ok {:.3} ms",
                quantile_ms(&mut ping, 0.5),
                quantile_ms(&mut auth1, 0.5),
                quantile_ms(&mut proof, 0.5),
                quantile_ms(&mut finish, 0.5)
            ),
        ));
        table.push((
            format!("  sign-ins/s ({name})"),
            format!("{}   [{}]", human(rate), s.cpu.describe()),
        ));
        table.push((
            format!("  heartbeats meanwhile ({name})"),
            format!(
                "{} answered ({:.1} per sign-in: presence changes wake every online session)",
                human(pings as f64),
                pings as f64 / n as f64
            ),
        ));
        results.insert(
            name.to_owned(),
            json!({
                "setup": setup,
                "steps_p50_ms": {
                    "ping": quantile_ms(&mut ping, 0.5),
                    "auth1": quantile_ms(&mut auth1, 0.5),
                    "proof": quantile_ms(&mut proof, 0.5),
                    "callback_ok": quantile_ms(&mut finish, 0.5),
                },
                "sign_ins_per_s": (rate * 10.0).round() / 10.0,
                "heartbeats_answered": pings,
                "cpu": s.cpu.to_json(),
            }),
        );
        headline.push(format!("{name}.setup.p50_ms"));
        headline.push(format!("{name}.setup.p99_ms"));
        headline.push(format!("{name}.sign_ins_per_s"));
        headline.push(format!("{name}.cpu.server_cores"));
        let failed = run.bye(slots, 8);
        if failed > 0 {
            return Err(BenchError::Refused {
                what: "Bye".into(),
                answer: format!("{failed} sessions did not end cleanly"),
            });
        }
    }
    let (_io, problems) = run.finish()?;
    results.insert("problems".into(), problems);
    Ok(RunResult {
        params: json!({
            "n": n,
            "concurrency": a.concurrency,
            "keys": format!("{:?}", a.keys).to_lowercase(),
            "scram_iterations": ctx.accounts.verifier.iterations,
        }),
        results: Value::Object(results),
        table,
        headline,
    })
}
