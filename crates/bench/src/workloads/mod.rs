//! The workloads. Each runs once against a fresh server and returns an [`RunResult`](crate::report::RunResult).

mod connect;
mod fanout;
mod files;
mod idle;
mod ingest;
mod instances;
mod memory;
mod register;

use std::time::Duration;

use serde_json::{Value, json};

pub use connect::connect;
pub use fanout::fanout;
pub use files::files;
pub use idle::idle;
pub use ingest::ingest;
pub use instances::instances;
pub use memory::memory;
pub use register::register;

use crate::Ctx;
use crate::cli::Workload;
use crate::error::BenchError;
use crate::hist::{Histogram, round3};
use crate::procfs::{CpuUsage, ProcSample};
use crate::reactor::IoReport;
use crate::report::RunResult;
use crate::sender::SenderReport;
use crate::wire::Mode;

/// Runs workload `w` once, its clients speaking `mode`.
pub fn run(ctx: &Ctx, mode: Mode, w: &Workload) -> Result<RunResult, BenchError> {
    match w {
        Workload::Connect(a) => connect(ctx, mode, a),
        Workload::Ingest(a) => ingest(ctx, mode, a),
        Workload::Fanout(a) => fanout(ctx, mode, a),
        Workload::Idle(a) => idle(ctx, mode, a),
        Workload::Memory(a) => memory(ctx, mode, a),
        Workload::Register(a) => register(ctx, mode, a),
        Workload::Instances(a) => instances(ctx, mode, a),
        Workload::Files(a) => files(ctx, mode, a),
    }
}

/// `q` quantile of durations (sorted in place), in ms.
pub(crate) fn quantile_ms(v: &mut [Duration], q: f64) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort();
    let rank = ((q * v.len() as f64).ceil() as usize).clamp(1, v.len());
    round3(v[rank - 1].as_secs_f64() * 1000.0)
}

/// p50/p99/max/mean of durations, in ms.
pub(crate) fn durations_json(v: &mut [Duration]) -> Value {
    let mean = if v.is_empty() {
        0.0
    } else {
        v.iter().map(Duration::as_secs_f64).sum::<f64>() / v.len() as f64
    };
    json!({
        "count": v.len(),
        "p50_ms": quantile_ms(v, 0.5),
        "p99_ms": quantile_ms(v, 0.99),
        "max_ms": quantile_ms(v, 1.0),
        "mean_ms": round3(mean * 1000.0),
    })
}

/// A rate as text with its CPU context.
pub(crate) fn rate_row(rate: f64, unit: &str, cpu: &CpuUsage) -> String {
    format!("{} {unit}   [{}]", human(rate), cpu.describe())
}

/// 12345.6 → "12,346".
pub(crate) fn human(x: f64) -> String {
    let n = x.round() as i64;
    let s = n.abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 { format!("-{out}") } else { out }
}

/// "p50 1.234 ms · p99 … · max …" from a latency histogram.
pub(crate) fn latency_row(h: &Histogram) -> String {
    format!(
        "p50 {:.3} ms · p99 {:.3} ms · p99.9 {:.3} ms · max {:.3} ms  ({} samples)",
        h.quantile(0.5) as f64 / 1000.0,
        h.quantile(0.99) as f64 / 1000.0,
        h.quantile(0.999) as f64 / 1000.0,
        h.max() as f64 / 1000.0,
        h.count()
    )
}

/// Server memory as JSON.
pub(crate) fn proc_json(s: Option<ProcSample>) -> Value {
    match s {
        Some(s) => json!({"rss_kib": s.rss_kib, "threads": s.threads}),
        None => Value::Null,
    }
}

/// Merges sender reports: sent, acked, errors, ids, ack latency, first send, last ack.
pub(crate) struct Sent {
    pub sent: u64,
    pub acked: u64,
    pub errors: u64,
    pub first_error: Option<String>,
    pub max_id: u64,
    pub ids: Vec<u64>,
    pub ack_latency: Histogram,
    pub span: Duration,
    pub late: u64,
    pub timed_out: bool,
}

pub(crate) fn merge_senders(reports: &[SenderReport]) -> Sent {
    let mut ack_latency = Histogram::new();
    let mut ids = Vec::new();
    for r in reports {
        ack_latency.merge(&r.ack_latency);
        ids.extend_from_slice(&r.ids);
    }
    let first = reports.iter().filter_map(|r| r.first_send).min();
    let last = reports.iter().filter_map(|r| r.last_ack).max();
    let span = match (first, last) {
        (Some(a), Some(b)) => b.saturating_duration_since(a),
        _ => Duration::ZERO,
    };
    Sent {
        sent: reports.iter().map(|r| r.sent).sum(),
        acked: reports.iter().map(|r| r.acked).sum(),
        errors: reports.iter().map(|r| r.errors).sum(),
        first_error: reports.iter().find_map(|r| r.first_error.clone()),
        max_id: ids.iter().copied().max().unwrap_or(0),
        ids,
        ack_latency,
        span,
        late: reports.iter().map(|r| r.late).sum(),
        timed_out: reports.iter().any(|r| r.timed_out),
    }
}

/// Lost and duplicated deliveries of ids in `(base, top]` over the clients of `slots`.
pub(crate) struct Deliveries {
    pub expected: u64,
    pub received: u64,
    pub lost: u64,
    pub dups: u64,
    pub old: u64,
    pub clients_missing: usize,
    /// Bench messages whose `Rec` named a room (a GC/1 session must never see one).
    pub mislabelled: u64,
}

pub(crate) fn deliveries(io: &IoReport, slots: &[usize], base: u64, top: u64) -> Deliveries {
    let per = top.saturating_sub(base);
    let mut d = Deliveries {
        expected: per * slots.len() as u64,
        received: 0,
        lost: 0,
        dups: 0,
        old: 0,
        clients_missing: 0,
        mislabelled: 0,
    };
    for &s in slots {
        match io.clients.iter().find(|c| c.slot == s) {
            Some(c) => {
                let got = c.received_in(base, top);
                d.received += got;
                d.lost += per - got;
                d.dups += c.dups;
                d.old += c.old;
                d.mislabelled += c.mislabelled;
                if got < per {
                    d.clients_missing += 1;
                }
            }
            None => {
                d.lost += per;
                d.clients_missing += 1;
            }
        }
    }
    d
}

impl Deliveries {
    pub(crate) fn json(&self) -> Value {
        json!({
            "expected": self.expected,
            "received": self.received,
            "lost": self.lost,
            "duplicated": self.dups,
            "history_deliveries": self.old,
            "clients_missing_some": self.clients_missing,
            "mislabelled": self.mislabelled,
        })
    }

    pub(crate) fn row(&self) -> String {
        format!(
            "{} of {} received · lost {} · duplicated {}{}{}",
            human(self.received as f64),
            human(self.expected as f64),
            self.lost,
            self.dups,
            if self.mislabelled > 0 {
                format!(" · {} in a room", self.mislabelled)
            } else {
                String::new()
            },
            if self.lost == 0 && self.dups == 0 && self.mislabelled == 0 {
                " ✔"
            } else {
                " ✘"
            }
        )
    }
}

/// Checks a numeric argument's range.
/// `--duration` of a sending window: above 0, and leaving the run 20 s of `--timeout` for its
/// setup and catch-up.
pub(crate) fn check_duration(ctx: &crate::Ctx, duration: f64) -> Result<(), BenchError> {
    let limit = ctx.timeout.as_secs_f64() - 20.0;
    if !(duration > 0.0 && duration <= limit) {
        return Err(BenchError::Invalid(format!(
            "--duration must be above 0 and at most --timeout minus 20 s ({limit} s)"
        )));
    }
    Ok(())
}

pub(crate) fn check_range<T: PartialOrd + std::fmt::Display>(
    name: &str,
    v: T,
    lo: T,
    hi: T,
) -> Result<(), BenchError> {
    if v < lo || v > hi {
        return Err(BenchError::Invalid(format!(
            "{name} must be {lo} to {hi}, not {v}"
        )));
    }
    Ok(())
}
