//! `fanout`: N clients online, S of them sending; every delivery timed and checked.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{check_range, deliveries, human, latency_row, merge_senders, proc_json};
use crate::cli::{FanoutArgs, FanoutMode};
use crate::client::KeyCache;
use crate::error::BenchError;
use crate::hist::round3;
use crate::report::RunResult;
use crate::sender::Pace;
use crate::wire::Mode;
use crate::{Ctx, Run};

/// Runs the workload once.
pub fn fanout(ctx: &Ctx, mode: Mode, a: &FanoutArgs) -> Result<RunResult, BenchError> {
    check_range("--n", a.n, 1, 5000)?;
    check_range("--senders", a.senders, 1, a.n)?;
    check_range("--rate", a.rate, 0.1, 100_000.0)?;
    check_range("--window", a.window, 1, 4096)?;
    check_range("--body-bytes", a.body_bytes, 1, 4096)?;
    let limit = ctx.timeout.as_secs_f64() - 20.0;
    if !(a.duration > 0.0 && a.duration <= limit) {
        return Err(BenchError::Invalid(format!(
            "--duration must be above 0 and at most --timeout minus 20 s ({limit} s)"
        )));
    }
    let n = a.n;
    let run = Run::start(ctx, mode, n, n, false)?;
    let cache = KeyCache::default();
    cache.warm(&ctx.accounts);
    let slots: Vec<usize> = (0..n).collect();
    let signed = run.sign_in(0..n, |slot, _| slot, n, 16, Some(&cache))?;
    run.wait_pinged(&slots, Duration::from_secs(15))?;
    // Every delivery connection open before timing: over TLS the first delivery to each receiver
    // waits for a full handshake, which would otherwise land in the first messages' latency.
    let (base, warm_up) = run.warm_up(&slots)?;
    let duration = Duration::from_secs_f64(a.duration);
    let jobs = (0..a.senders)
        .map(|i| {
            let pace = match a.mode {
                FanoutMode::Rate => Pace::Rate {
                    per_sec: a.rate,
                    duration,
                    // Spread the senders over the period, as independent people would be.
                    offset: Duration::from_secs_f64(i as f64 / a.senders as f64 / a.rate),
                },
                FanoutMode::Max => Pace::Max(duration),
            };
            run.job(i, i, a.body_bytes, a.window, pace)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let counters = run.counters();
    let counts = || {
        (
            counters.pings.load(Ordering::Relaxed),
            counters.batches.load(Ordering::Relaxed),
            counters.records.load(Ordering::Relaxed),
        )
    };
    let before = run.snapshot();
    let (pings0, batches0, records0) = counts();
    let t0 = Instant::now();
    let reports = run.send(jobs)?;
    let sent = merge_senders(&reports);
    let caught_up = run.wait_delivered(&slots, sent.max_id, Duration::from_secs(15));
    let elapsed = t0.elapsed();
    let after = run.snapshot();
    let (pings1, batches1, records1) = counts();
    let cpu = before.until(&after);
    let mem = after.server();
    let accepts =
        counters.hb_accepts.load(Ordering::Relaxed) + counters.dl_accepts.load(Ordering::Relaxed);
    let (pings, batches, records) = (pings1 - pings0, batches1 - batches0, records1 - records0);
    let failed_byes = run.bye(0..n, 8);
    let (io, problems) = run.finish()?;
    let d = deliveries(&io, &slots, base, sent.max_id);
    let per_s = d.received as f64 / elapsed.as_secs_f64().max(1e-9);
    let msgs_per_s = sent.acked as f64 / duration.as_secs_f64();
    let lat = &io.latency;
    let table = vec![
        (
            "deliveries/s".into(),
            format!(
                "{}   ({} messages × {n} receivers in {:.3} s)   [{}]",
                human(per_s),
                human(sent.acked as f64),
                elapsed.as_secs_f64(),
                cpu.describe()
            ),
        ),
        (
            "messages/s".into(),
            format!(
                "{} acknowledged ({} senders{}){}",
                human(msgs_per_s),
                a.senders,
                match a.mode {
                    FanoutMode::Rate => format!(" × {}/s", a.rate),
                    FanoutMode::Max => format!(", window {}", a.window),
                },
                if sent.late > 0 {
                    format!(", {} sends late by > 1 ms", sent.late)
                } else {
                    String::new()
                }
            ),
        ),
        ("end-to-end latency".into(), latency_row(lat)),
        (
            "first message to all".into(),
            format!(
                "{:.1} ms (untimed warm-up: opens every delivery connection)",
                warm_up.as_secs_f64() * 1000.0
            ),
        ),
        ("Msg → Thx".into(), latency_row(&sent.ack_latency)),
        ("deliveries".into(), d.row()),
        (
            "server cycles".into(),
            format!(
                "{} heartbeats + {} batches answered ({:.1} records a batch, {:.2} cycles per \
                 receiver per message)",
                human(pings as f64),
                human(batches as f64),
                records as f64 / batches.max(1) as f64,
                pings as f64 / (sent.acked.max(1) as f64 * n as f64)
            ),
        ),
        (
            "server".into(),
            format!(
                "{} KiB RSS, {} threads; {} connections opened to clients",
                mem.map_or(0, |m| m.rss_kib),
                mem.map_or(0, |m| m.threads),
                accepts
            ),
        ),
    ];
    Ok(RunResult {
        params: json!({
            "n": n,
            "mode": format!("{:?}", a.mode).to_lowercase(),
            "senders": a.senders,
            "rate_per_sender": if a.mode == FanoutMode::Rate { json!(a.rate) } else { json!(null) },
            "duration_s": a.duration,
            "window": a.window,
            "body_bytes": a.body_bytes,
            "fsync": ctx.spec.fsync,
        }),
        results: json!({
            "deliveries_per_s": per_s.round(),
            "messages_sent": sent.sent,
            "messages_acked": sent.acked,
            "messages_per_s": msgs_per_s.round(),
            "send_errors": sent.errors,
            "first_send_error": sent.first_error,
            "late_sends": sent.late,
            "latency": lat.summary_ms(),
            "warm_up_ms": round3(warm_up.as_secs_f64() * 1000.0),
            "ack_latency": sent.ack_latency.summary_ms(),
            "deliveries": d.json(),
            "caught_up": caught_up.is_some(),
            "elapsed_s": round3(elapsed.as_secs_f64()),
            "cpu": cpu.to_json(),
            "server_mem": proc_json(mem),
            "connections_opened_to_clients": accepts,
            "heartbeats_answered": pings,
            "batches_answered": batches,
            "records_per_batch": round3(records as f64 / batches.max(1) as f64),
            "sign_in_p50_ms": super::quantile_ms(
                &mut signed.timings.iter().map(|t| t.total).collect::<Vec<_>>(), 0.5),
            "failed_byes": failed_byes,
            "problems": problems,
        }),
        table,
        headline: vec![
            "deliveries_per_s".into(),
            "messages_per_s".into(),
            "latency.p50_ms".into(),
            "latency.p99_ms".into(),
            "latency.max_ms".into(),
            "deliveries.lost".into(),
            "deliveries.duplicated".into(),
            "cpu.server_cores".into(),
            "cpu.bench_cores".into(),
        ],
    })
}
