//! `fanout`: N clients online, S of them sending; every delivery timed and checked. With
//! `--rooms` the clients are GC/3 sessions in rooms of equal size (see [`crate::rooms`]), each
//! sender posts into its own room, and every member must get every record of its room once and
//! none of another room.

use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use serde_json::json;

use super::{check_range, deliveries, human, latency_row, merge_senders, proc_json};
use crate::cli::{FanoutArgs, FanoutMode};
use crate::client::KeyCache;
use crate::error::BenchError;
use crate::hist::round3;
use crate::procfs::CpuUsage;
use crate::report::RunResult;
use crate::rooms::{self, RoomPlan};
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
    check_range("--idle-window", a.idle_window, 0.0, 60.0)?;
    let limit = ctx.timeout.as_secs_f64() - 20.0 - a.idle_window;
    if !(a.duration > 0.0 && a.duration <= limit) {
        return Err(BenchError::Invalid(format!(
            "--duration must be above 0 and at most --timeout minus 20 s minus --idle-window \
             ({limit} s)"
        )));
    }
    let n = a.n;
    let plan = RoomPlan::new(a.rooms, a.gc3, n)?;
    let receivers = n / plan.rooms();
    let run = Run::start_in(ctx, mode, n, n, false, plan)?;
    let cache = KeyCache::default();
    cache.warm(&ctx.accounts);
    let slots: Vec<usize> = (0..n).collect();
    let signed = run.sign_in(0..n, |slot, _| slot, n, 16, Some(&cache))?;
    run.wait_pinged(&slots, Duration::from_secs(15))?;
    let setup = rooms::set_up(&run, &plan, n, 8)?;
    // Every delivery connection open before timing: over TLS the first delivery to each receiver
    // waits for a full handshake, which would otherwise land in the first messages' latency.
    // (Into #general, where everyone is; with rooms it also follows every join's notice.)
    let (base, warm_up) = run.warm_up(&slots)?;
    // The server's cost of N clients online doing nothing (heartbeats), to take out of the cost
    // per delivery.
    let idle = (a.idle_window > 0.0).then(|| {
        let before = run.snapshot();
        std::thread::sleep(Duration::from_secs_f64(a.idle_window));
        before.until(&run.snapshot())
    });
    let duration = Duration::from_secs_f64(a.duration);
    let jobs = (0..a.senders)
        .map(|i| {
            let pace = match a.mode {
                FanoutMode::Rate => Pace::spread(i, a.senders, a.rate, duration),
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
    // Each room's message ids (without rooms: one room, every message).
    let room_ids = rooms::ids_by_room(&plan, &reports);
    let caught_up = if plan.gc3() {
        let targets = rooms::targets(&plan, &slots, &room_ids);
        run.wait_delivered_each(&targets, Duration::from_secs(15))
    } else {
        run.wait_delivered(&slots, sent.max_id, Duration::from_secs(15))
    };
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
    // Without rooms, every id above the warm-up to everyone (as before rooms); with rooms, each
    // room's ids to its members and to no one else.
    let (received, check_row, check_json) = if plan.gc3() {
        let d = rooms::check(&io, &plan, &slots, &room_ids);
        (d.received, d.row(), d.json())
    } else {
        let d = deliveries(&io, &slots, base, sent.max_id);
        (d.received, d.row(), d.json())
    };
    let per_s = received as f64 / elapsed.as_secs_f64().max(1e-9);
    let msgs_per_s = sent.acked as f64 / duration.as_secs_f64();
    let cost = DeliveryCost::new(&cpu, idle.as_ref(), received);
    let lat = &io.latency;
    let mut table = vec![
        (
            "deliveries/s".into(),
            format!(
                "{}   ({} messages × {receivers} receivers{} in {:.3} s)   [{}]",
                human(per_s),
                human(sent.acked as f64),
                if plan.rooms() > 1 {
                    format!(" of its room ({} rooms)", plan.rooms())
                } else if plan.gc3() {
                    " of #bench-0".to_owned()
                } else {
                    String::new()
                },
                elapsed.as_secs_f64(),
                cpu.describe()
            ),
        ),
        ("server CPU per delivery".into(), cost.row()),
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
        ("deliveries".into(), check_row),
        (
            "server cycles".into(),
            format!(
                "{} heartbeats + {} batches answered ({:.1} records a batch, {:.2} cycles per \
                 receiver per message)",
                human(pings as f64),
                human(batches as f64),
                records as f64 / batches.max(1) as f64,
                pings as f64 / (sent.acked.max(1) as f64 * receivers as f64)
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
    if plan.gc3() {
        table.push((
            "rooms".into(),
            format!(
                "{} of {receivers} members: {} created, {} joins in {:.3} s (GC/3 sessions)",
                plan.rooms(),
                setup.created,
                setup.joined,
                setup.wall.as_secs_f64()
            ),
        ));
    }
    Ok(RunResult {
        params: json!({
            "n": n,
            "rooms": plan.json(n),
            "idle_window_s": a.idle_window,
            "mode": format!("{:?}", a.mode).to_lowercase(),
            "senders": a.senders,
            "rate_per_sender": if a.mode == FanoutMode::Rate { json!(a.rate) } else { json!(null) },
            "duration_s": a.duration,
            "window": a.window,
            "body_bytes": a.body_bytes,
            "fsync": if ctx.on_postgres() { "postgres" } else { ctx.spec.fsync.as_str() },
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
            "deliveries": check_json,
            "server_cpu_us_per_delivery": cost.gross_us,
            "server_cpu_us_per_delivery_net_of_idle": cost.net_us,
            "server_hb_cpu_us_per_delivery": cost.hb_us,
            "server_hb_cpu_us_per_delivery_net_of_idle": cost.hb_net_us,
            "idle_cpu": idle.as_ref().map(CpuUsage::to_json),
            "rooms_setup_s": round3(setup.wall.as_secs_f64()),
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
            "server_cpu_us_per_delivery".into(),
            "server_cpu_us_per_delivery_net_of_idle".into(),
            "server_hb_cpu_us_per_delivery_net_of_idle".into(),
        ],
    })
}

/// The server's heartbeat threads are named `hb-<user>` (crates/server/src/auth.rs).
const HEARTBEAT_THREADS: &str = "hb";

/// The server's CPU per delivery over the measured window: all of it (`gross_us`), and without
/// what the same clients cost it doing nothing (`net_us`, with an idle window). The delivery
/// path alone (`hb_us`, `hb_net_us`): the heartbeat threads' CPU, which wake, read the store,
/// encode and send, without the listeners' (checking and storing each message once, whatever
/// the number of receivers), so that figures with different receivers per message compare.
#[derive(Debug, Clone, Copy, PartialEq)]
struct DeliveryCost {
    gross_us: Option<f64>,
    net_us: Option<f64>,
    idle_cores: Option<f64>,
    hb_us: Option<f64>,
    hb_net_us: Option<f64>,
}

impl DeliveryCost {
    fn new(cpu: &CpuUsage, idle: Option<&CpuUsage>, deliveries: u64) -> Self {
        let per = |cores: f64| {
            (deliveries > 0).then(|| round3(cores * cpu.wall_s / deliveries as f64 * 1e6))
        };
        let idle_cores = idle.and_then(|i| i.server_cores);
        let hb = cpu.server_kind_cores(HEARTBEAT_THREADS);
        let idle_hb = idle.and_then(|i| i.server_kind_cores(HEARTBEAT_THREADS));
        Self {
            gross_us: cpu.server_cores.and_then(per),
            net_us: cpu
                .server_cores
                .zip(idle_cores)
                .and_then(|(c, i)| per((c - i).max(0.0))),
            idle_cores,
            hb_us: hb.and_then(per),
            hb_net_us: hb.zip(idle_hb).and_then(|(c, i)| per((c - i).max(0.0))),
        }
    }

    fn row(&self) -> String {
        let us = |v: Option<f64>| v.map_or("n/a".to_owned(), |v| format!("{v:.2} µs"));
        let all = match self.idle_cores {
            Some(idle) => format!(
                "{} ({} net of the {:.1} % of a core it takes idle)",
                us(self.gross_us),
                us(self.net_us),
                idle * 100.0
            ),
            None => us(self.gross_us),
        };
        match (self.hb_us, self.hb_net_us) {
            (Some(_), Some(_)) => format!(
                "{all}; heartbeat threads {} ({} net)",
                us(self.hb_us),
                us(self.hb_net_us)
            ),
            (Some(_), None) => format!("{all}; heartbeat threads {}", us(self.hb_us)),
            _ => all,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn usage(server_cores: Option<f64>, wall_s: f64) -> CpuUsage {
        CpuUsage {
            wall_s,
            server_cores,
            server_sys_cores: None,
            bench_sys_cores: 0.0,
            bench_cores: 0.0,
            bench_busiest: (String::new(), 0.0),
            bench_by_kind: Vec::new(),
            server_by_kind: Vec::new(),
            machine_cores: 0.0,
            nproc: 2,
        }
    }

    #[test]
    fn cost_per_delivery_gross_and_net_of_idle() {
        // 1.2 cores for 10 s over 500,000 deliveries: 24 µs each; idle 0.2 cores: 20 µs net.
        let cpu = usage(Some(1.2), 10.0);
        let idle = usage(Some(0.2), 3.0);
        let c = DeliveryCost::new(&cpu, Some(&idle), 500_000);
        assert_eq!((c.gross_us, c.net_us), (Some(24.0), Some(20.0)));
        assert!(c.row().starts_with("24.00 µs (20.00 µs net"), "{}", c.row());
        let c = DeliveryCost::new(&cpu, None, 500_000);
        assert_eq!(
            (c.gross_us, c.net_us, c.row().as_str()),
            (Some(24.0), None, "24.00 µs")
        );
        // The heartbeat threads' share: 0.6 cores busy, 0.1 idle: 12 and 10 µs.
        let mut cpu = usage(Some(1.2), 10.0);
        cpu.server_by_kind = vec![("listen".into(), 0.5), ("hb".into(), 0.6)];
        let mut idle = usage(Some(0.2), 3.0);
        idle.server_by_kind = vec![("hb".into(), 0.1)];
        let c = DeliveryCost::new(&cpu, Some(&idle), 500_000);
        assert_eq!((c.hb_us, c.hb_net_us), (Some(12.0), Some(10.0)));
        assert!(
            c.row()
                .ends_with("; heartbeat threads 12.00 µs (10.00 µs net)"),
            "{}",
            c.row()
        );
        let cpu = usage(Some(1.2), 10.0);
        // Nothing delivered, or no server to measure: no figure.
        assert_eq!(DeliveryCost::new(&cpu, Some(&idle), 0).gross_us, None);
        assert_eq!(DeliveryCost::new(&usage(None, 10.0), None, 9).row(), "n/a");
    }
}
