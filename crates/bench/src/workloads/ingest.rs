//! `ingest`: pipelined senders as fast as acknowledgements allow, then a check that every
//! acknowledged message is in `database.db` exactly once.

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::time::Duration;

use serde_json::{Value, json};

use super::{check_range, deliveries, human, latency_row, merge_senders, rate_row};
use crate::cli::IngestArgs;
use crate::client::KeyCache;
use crate::error::BenchError;
use crate::hist::round3;
use crate::report::RunResult;
use crate::sender::Pace;
use crate::wire::Mode;
use crate::{Ctx, Run};

/// Runs the workload once.
pub fn ingest(ctx: &Ctx, mode: Mode, a: &IngestArgs) -> Result<RunResult, BenchError> {
    check_range("--senders", a.senders, 1, 1000)?;
    check_range("--messages", a.messages, a.senders as u64, 5_000_000)?;
    check_range("--window", a.window, 1, 4096)?;
    check_range("--body-bytes", a.body_bytes, 1, 4096)?;
    let s = a.senders;
    let run = Run::start(ctx, mode, s, s, a.sink)?;
    let cache = KeyCache::default();
    cache.warm(&ctx.accounts);
    let slots: Vec<usize> = (0..s).collect();
    run.sign_in(0..s, |slot, _| slot, s, s.min(16), Some(&cache))?;
    run.wait_pinged(&slots, Duration::from_secs(10))?;
    let base = run.base_id();

    let jobs = (0..s)
        .map(|i| {
            let quota = a.messages / s as u64 + u64::from((i as u64) < a.messages % s as u64);
            run.job(i, i, a.body_bytes, a.window, Pace::Count(quota))
        })
        .collect::<Result<Vec<_>, _>>()?;
    let before = run.snapshot();
    let reports = run.send(jobs)?;
    let cpu = before.until(&run.snapshot());
    let sent = merge_senders(&reports);
    let rate = sent.acked as f64 / sent.span.as_secs_f64().max(1e-9);

    // Real clients receive every message (their own too); give them time to catch up.
    let delivered_after = if a.sink {
        None
    } else {
        run.wait_delivered(&slots, sent.max_id, Duration::from_secs(20))
    };
    let check = match &run.server.data_dir {
        Some(dir) => check_store(dir, &run.tag, &reports_quotas(a, s), &sent.ids)?,
        None => json!({"checked": false, "why": "no data dir (pass --server-data-dir)"}),
    };
    let failed_byes = run.bye(0..s, 8);
    let (io, problems) = run.finish()?;
    let d = deliveries(&io, &slots, base, sent.max_id);

    let ok = check["ok"].as_bool() == Some(true);
    let mut table = vec![
        ("acknowledged".into(), rate_row(rate, "messages/s", &cpu)),
        (
            "messages".into(),
            format!(
                "{} acknowledged of {} in {:.3} s ({} errors{})",
                human(sent.acked as f64),
                human(a.messages as f64),
                sent.span.as_secs_f64(),
                sent.errors,
                sent.first_error
                    .as_deref()
                    .map(|e| format!(", first: {e}"))
                    .unwrap_or_default()
            ),
        ),
        ("Msg → Thx".into(), latency_row(&sent.ack_latency)),
        (
            "store check".into(),
            format!(
                "{} · {}",
                if ok {
                    "every message once ✔"
                } else {
                    "FAILED ✘"
                },
                check
            ),
        ),
    ];
    if !a.sink {
        table.push((
            "deliveries to the senders".into(),
            format!(
                "{} · all caught up {}",
                d.row(),
                delivered_after.map_or("no (timed out)".into(), |t| format!(
                    "{:.3} s after the last Thx",
                    t.as_secs_f64()
                ))
            ),
        ));
    }
    Ok(RunResult {
        params: json!({
            "senders": s,
            "messages": a.messages,
            "window": a.window,
            "fsync": ctx.spec.fsync,
            "body_bytes": a.body_bytes,
            "sink": a.sink,
        }),
        results: json!({
            "acked_per_s": rate.round(),
            "acked": sent.acked,
            "errors": sent.errors,
            "timed_out": sent.timed_out,
            "span_s": round3(sent.span.as_secs_f64()),
            "ack_latency": sent.ack_latency.summary_ms(),
            "cpu": cpu.to_json(),
            "store": check,
            "deliveries": if a.sink { Value::Null } else { d.json() },
            "caught_up_after_s": delivered_after.map(|t| round3(t.as_secs_f64())),
            "failed_byes": failed_byes,
            "problems": problems,
        }),
        table,
        headline: vec![
            "acked_per_s".into(),
            "ack_latency.p50_ms".into(),
            "ack_latency.p99_ms".into(),
            "cpu.server_cores".into(),
            "cpu.bench_cores".into(),
        ],
    })
}

fn reports_quotas(a: &IngestArgs, s: usize) -> Vec<u64> {
    (0..s)
        .map(|i| a.messages / s as u64 + u64::from((i as u64) < a.messages % s as u64))
        .collect()
}

/// Reads `database.db` and checks that sender `i` has records with seq `0..quotas[i]`, each
/// exactly once, and that their ids are exactly the acknowledged ones.
fn check_store(
    dir: &Path,
    tag: &str,
    quotas: &[u64],
    acked_ids: &[u64],
) -> Result<Value, BenchError> {
    let path = dir.join(gc_store::DATABASE_FILE);
    let file = std::fs::File::open(&path)
        .map_err(|e| BenchError::io(format!("open {}", path.display()), e))?;
    let prefix = format!("{tag}:");
    let mut seen: HashMap<(usize, u64), u32> = HashMap::new();
    let mut ids = Vec::new();
    let (mut bad_lines, mut foreign) = (0u64, 0u64);
    for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
        let line = line.map_err(|e| BenchError::io(format!("read {}", path.display()), e))?;
        let Ok(record) = gc_store::parse_record(&line) else {
            bad_lines += 1;
            continue;
        };
        let Some(rest) = record.body.strip_prefix(&prefix) else {
            foreign += 1;
            continue;
        };
        // <sent-µs>:<sender>:<seq>:
        let mut f = rest.split(':');
        let (_, Some(sender), Some(seq)) = (f.next(), f.next(), f.next()) else {
            bad_lines += 1;
            continue;
        };
        let (Ok(sender), Ok(seq)) = (sender.parse::<usize>(), seq.parse::<u64>()) else {
            bad_lines += 1;
            continue;
        };
        *seen.entry((sender, seq)).or_default() += 1;
        ids.push(record.id);
    }
    let expected: u64 = quotas.iter().sum();
    let mut missing = 0u64;
    for (i, &q) in quotas.iter().enumerate() {
        for seq in 0..q {
            if !seen.contains_key(&(i, seq)) {
                missing += 1;
            }
        }
    }
    let duplicated: u64 = seen.values().map(|&c| u64::from(c.saturating_sub(1))).sum();
    let unexpected = seen
        .keys()
        .filter(|(i, seq)| quotas.get(*i).is_none_or(|q| seq >= q))
        .count();
    ids.sort_unstable();
    let mut acked = acked_ids.to_vec();
    acked.sort_unstable();
    let ids_match = ids == acked;
    Ok(json!({
        "checked": true,
        "ok": missing == 0 && duplicated == 0 && unexpected == 0 && bad_lines == 0 && ids_match,
        "expected": expected,
        "found": seen.len(),
        "missing": missing,
        "duplicated": duplicated,
        "unexpected": unexpected,
        "bad_lines": bad_lines,
        "other_records": foreign,
        "ids_match_acks": ids_match,
    }))
}
