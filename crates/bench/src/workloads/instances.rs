//! `instances`: two instances of one service on one PostgreSQL database. Senders and some
//! receivers on instance A, the other receivers on instance B; every delivery is timed and
//! checked, and its latency counted for its instance: on A a message is delivered by the
//! instance that stored it, on B only after B's follower heard the commit's `NOTIFY` and fetched
//! the new rows (the cross-instance delivery of issue #13).

use std::time::{Duration, Instant};

use serde_json::json;

use super::{
    check_duration, check_range, deliveries, human, latency_row, merge_senders, proc_json,
};
use crate::cli::InstancesArgs;
use crate::client::KeyCache;
use crate::error::BenchError;
use crate::hist::round3;
use crate::report::RunResult;
use crate::sender::Pace;
use crate::wire::Mode;
use crate::{Ctx, Run};

/// Runs the workload once.
pub fn instances(ctx: &Ctx, mode: Mode, a: &InstancesArgs) -> Result<RunResult, BenchError> {
    check_range("--n-a", a.n_a, 1, 2500)?;
    check_range("--n-b", a.n_b, 1, 2500)?;
    check_range("--senders", a.senders, 1, a.n_a)?;
    check_range("--rate", a.rate, 0.1, 100_000.0)?;
    check_range("--body-bytes", a.body_bytes, 1, 4096)?;
    check_duration(ctx, a.duration)?;
    let n = a.n_a + a.n_b;
    let run = Run::start_pair(ctx, mode, n, n, a.n_a)?;
    let cache = KeyCache::default();
    cache.warm(&ctx.accounts);
    let slots: Vec<usize> = (0..n).collect();
    let signed_a = run.sign_in(0..a.n_a, |slot, _| slot, n, 16, Some(&cache))?;
    let signed_b = run.sign_in(a.n_a..n, |slot, _| slot, n, 16, Some(&cache))?;
    run.wait_pinged(&slots, Duration::from_secs(15))?;
    // Every delivery connection open before timing (the warm-up goes from A, so B's clients
    // get it across too).
    let (base, warm_up) = run.warm_up(&slots)?;
    let duration = Duration::from_secs_f64(a.duration);
    let jobs = (0..a.senders)
        .map(|i| {
            let pace = Pace::spread(i, a.senders, a.rate, duration);
            run.job(i, i, a.body_bytes, 32, pace)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let before = run.snapshot();
    let t0 = Instant::now();
    let reports = run.send(jobs)?;
    let sent = merge_senders(&reports);
    let caught_up = run.wait_delivered(&slots, sent.max_id, Duration::from_secs(15));
    let elapsed = t0.elapsed();
    let after = run.snapshot();
    let cpu = before.until(&after);
    let mem_a = after.server();
    let failed_byes = run.bye(0..n, 8);
    let (io, problems) = run.finish()?;
    let d = deliveries(&io, &slots, base, sent.max_id);
    let d_a = deliveries(&io, &slots[..a.n_a], base, sent.max_id);
    let d_b = deliveries(&io, &slots[a.n_a..], base, sent.max_id);
    let msgs_per_s = sent.acked as f64 / duration.as_secs_f64();
    let table = vec![
        (
            "messages/s".into(),
            format!(
                "{} acknowledged by instance A ({} senders × {}/s){}",
                human(msgs_per_s),
                a.senders,
                a.rate,
                if sent.late > 0 {
                    format!(", {} sends late by > 1 ms", sent.late)
                } else {
                    String::new()
                }
            ),
        ),
        (
            "latency on A (same)".into(),
            format!("{}   [{} clients]", latency_row(&io.latency_a), a.n_a),
        ),
        (
            "latency on B (cross)".into(),
            format!("{}   [{} clients]", latency_row(&io.latency_b), a.n_b),
        ),
        ("Msg → Thx".into(), latency_row(&sent.ack_latency)),
        (
            "first message to all".into(),
            format!(
                "{:.1} ms (untimed warm-up: opens every delivery connection)",
                warm_up.as_secs_f64() * 1000.0
            ),
        ),
        ("deliveries".into(), d.row()),
        (
            "CPU".into(),
            format!("{} (server = instance A)", cpu.describe()),
        ),
    ];
    Ok(RunResult {
        params: json!({
            "n_a": a.n_a,
            "n_b": a.n_b,
            "senders": a.senders,
            "rate_per_sender": a.rate,
            "duration_s": a.duration,
            "body_bytes": a.body_bytes,
        }),
        results: json!({
            "messages_acked": sent.acked,
            "messages_per_s": msgs_per_s.round(),
            "send_errors": sent.errors,
            "first_send_error": sent.first_error,
            "late_sends": sent.late,
            "latency": io.latency.summary_ms(),
            "latency_same": io.latency_a.summary_ms(),
            "latency_cross": io.latency_b.summary_ms(),
            "ack_latency": sent.ack_latency.summary_ms(),
            "warm_up_ms": round3(warm_up.as_secs_f64() * 1000.0),
            "deliveries": d.json(),
            "deliveries_a": d_a.json(),
            "deliveries_b": d_b.json(),
            "caught_up": caught_up.is_some(),
            "elapsed_s": round3(elapsed.as_secs_f64()),
            "cpu": cpu.to_json(),
            "server_a_mem": proc_json(mem_a),
            "sign_in_p50_ms": {
                "a": super::quantile_ms(
                    &mut signed_a.timings.iter().map(|t| t.total).collect::<Vec<_>>(), 0.5),
                "b": super::quantile_ms(
                    &mut signed_b.timings.iter().map(|t| t.total).collect::<Vec<_>>(), 0.5),
            },
            "failed_byes": failed_byes,
            "problems": problems,
        }),
        table,
        headline: vec![
            "latency_cross.p50_ms".into(),
            "latency_cross.p99_ms".into(),
            "latency_cross.max_ms".into(),
            "latency_same.p50_ms".into(),
            "latency_same.p99_ms".into(),
            "ack_latency.p50_ms".into(),
            "deliveries.lost".into(),
            "deliveries.duplicated".into(),
            "cpu.server_cores".into(),
            "cpu.machine_cores".into(),
        ],
    })
}
