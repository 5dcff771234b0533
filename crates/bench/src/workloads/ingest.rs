//! `ingest`: pipelined senders as fast as acknowledgements allow, then a check that every
//! acknowledged message is in `database.db` exactly once. With `--rooms` the senders are GC/3
//! sessions in rooms of equal size, each posting into its own room and receiving that room's
//! messages only; each message must then be in its room's file (`rooms/<name>.db`).

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::{Value, json};

use gc_protocol::Room;

use super::{check_range, deliveries, human, latency_row, merge_senders, rate_row};
use crate::cli::IngestArgs;
use crate::client::KeyCache;
use crate::error::BenchError;
use crate::hist::round3;
use crate::pg::PgDb;
use crate::report::RunResult;
use crate::rooms::{self, RoomPlan};
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
    let plan = RoomPlan::new(a.rooms, a.gc3, s)?;
    let run = Run::start_in(ctx, mode, s, s, a.sink, plan)?;
    let cache = KeyCache::default();
    cache.warm(&ctx.accounts);
    let slots: Vec<usize> = (0..s).collect();
    run.sign_in(0..s, |slot, _| slot, s, s.min(16), Some(&cache))?;
    run.wait_pinged(&slots, Duration::from_secs(10))?;
    let setup = rooms::set_up(&run, &plan, s, 8)?;
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
    let room_ids = rooms::ids_by_room(&plan, &reports);

    // Real clients receive every message of their room (their own too); give them time to
    // catch up.
    let delivered_after = if a.sink {
        None
    } else if plan.gc3() {
        let targets = rooms::targets(&plan, &slots, &room_ids);
        run.wait_delivered_each(&targets, Duration::from_secs(20))
    } else {
        run.wait_delivered(&slots, sent.max_id, Duration::from_secs(20))
    };
    let check = match (&run.server.db, &run.server.data_dir) {
        (Some(db), _) => check_database(db, &run.tag, &plan, &reports_quotas(a, s), &sent.ids)?,
        (None, Some(dir)) => check_store(dir, &run.tag, &plan, &reports_quotas(a, s), &sent.ids)?,
        (None, None) => json!({"checked": false, "why": "no data dir (pass --server-data-dir)"}),
    };
    let failed_byes = run.bye(0..s, 8);
    let (io, problems) = run.finish()?;
    let (d_row, d_json) = if plan.gc3() {
        let d = rooms::check(&io, &plan, &slots, &room_ids);
        (d.row(), d.json())
    } else {
        let d = deliveries(&io, &slots, base, sent.max_id);
        (d.row(), d.json())
    };

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
    if plan.gc3() {
        table.push((
            "rooms".into(),
            format!(
                "{} of {} senders: {} created, {} joins in {:.3} s (GC/3 sessions)",
                plan.rooms(),
                s / plan.rooms(),
                setup.created,
                setup.joined,
                setup.wall.as_secs_f64()
            ),
        ));
    }
    if !a.sink {
        table.push((
            "deliveries to the senders".into(),
            format!(
                "{} · all caught up {}",
                d_row,
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
            "fsync": if ctx.on_postgres() { "postgres" } else { ctx.spec.fsync.as_str() },
            "body_bytes": a.body_bytes,
            "sink": a.sink,
            "rooms": plan.json(s),
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
            "deliveries": if a.sink { Value::Null } else { d_json },
            "rooms_setup_s": round3(setup.wall.as_secs_f64()),
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

/// The file a room's records are in: `database.db` for `#general`, `rooms/<name>.db` else.
fn room_file(dir: &Path, room: &Room) -> PathBuf {
    if room.is_general() {
        dir.join(gc_store::DATABASE_FILE)
    } else {
        dir.join(gc_store::ROOMS_DIR)
            .join(format!("{}.db", room.file_stem()))
    }
}

/// Reads the file of `#general` and of every room of `plan` and checks that sender `i` has
/// records with seq `0..quotas[i]`, each exactly once and in the file of its room, and that
/// their ids are exactly the acknowledged ones.
fn check_store(
    dir: &Path,
    tag: &str,
    plan: &RoomPlan,
    quotas: &[u64],
    acked_ids: &[u64],
) -> Result<Value, BenchError> {
    let mut files = vec![(None, room_file(dir, &Room::general()))];
    if plan.gc3() {
        files.extend((0..plan.rooms()).map(|k| (Some(k), room_file(dir, &plan.name(k)))));
    }
    let mut tally = Tally::new(tag, plan);
    for (k, path) in &files {
        let file = std::fs::File::open(path)
            .map_err(|e| BenchError::io(format!("open {}", path.display()), e))?;
        for line in BufReader::with_capacity(1 << 20, file).split(b'\n') {
            let line = line.map_err(|e| BenchError::io(format!("read {}", path.display()), e))?;
            match gc_store::parse_record(&line) {
                Ok(record) => tally.add(*k, record.id, &record.body),
                Err(_) => tally.bad_lines += 1,
            }
        }
    }
    Ok(tally.verdict(files.len(), quotas, acked_ids))
}

/// [`check_store`] for a run on PostgreSQL: reads every row of `gc_messages` of the run's
/// database, each in its room (`#general`, or the plan's room of that name).
fn check_database(
    db: &PgDb,
    tag: &str,
    plan: &RoomPlan,
    quotas: &[u64],
    acked_ids: &[u64],
) -> Result<Value, BenchError> {
    let rows = db
        .client()?
        .query("SELECT id, room, body FROM gc_messages ORDER BY id", &[])
        .map_err(|e| BenchError::Postgres {
            what: format!("read the messages of {}", db.name),
            cause: e.to_string(),
        })?;
    let general = Room::general();
    let names: Vec<Room> = (0..plan.rooms()).map(|k| plan.name(k)).collect();
    let mut tally = Tally::new(tag, plan);
    for row in &rows {
        let (Ok(id), Ok(room), Ok(body)) = (
            row.try_get::<_, i64>(0),
            row.try_get::<_, String>(1),
            row.try_get::<_, String>(2),
        ) else {
            tally.bad_lines += 1;
            continue;
        };
        let k = if room == general.as_str() {
            None
        } else {
            // A room outside the plan counts as misplaced for bench records.
            Some(
                names
                    .iter()
                    .position(|r| r.as_str() == room)
                    .unwrap_or(usize::MAX),
            )
        };
        tally.add(k, u64::try_from(id).unwrap_or(0), &body);
    }
    let mut out = tally.verdict(1, quotas, acked_ids);
    out["database"] = json!(db.name);
    Ok(out)
}

/// Bench records found in a store, by (sender, seq), with what did not fit.
struct Tally<'a> {
    prefix: String,
    plan: &'a RoomPlan,
    seen: HashMap<(usize, u64), u32>,
    ids: Vec<u64>,
    bad_lines: u64,
    foreign: u64,
    misplaced: u64,
}

impl<'a> Tally<'a> {
    fn new(tag: &str, plan: &'a RoomPlan) -> Self {
        Self {
            prefix: format!("{tag}:"),
            plan,
            seen: HashMap::new(),
            ids: Vec::new(),
            bad_lines: 0,
            foreign: 0,
            misplaced: 0,
        }
    }

    /// A record with `id` and `body` found in room `k` (`None`: `#general`).
    fn add(&mut self, k: Option<usize>, id: u64, body: &str) {
        let Some(rest) = body.strip_prefix(&self.prefix) else {
            self.foreign += 1;
            return;
        };
        // <sent-µs>:<sender>:<seq>:
        let mut f = rest.split(':');
        let (_, Some(sender), Some(seq)) = (f.next(), f.next(), f.next()) else {
            self.bad_lines += 1;
            return;
        };
        let (Ok(sender), Ok(seq)) = (sender.parse::<usize>(), seq.parse::<u64>()) else {
            self.bad_lines += 1;
            return;
        };
        // Without rooms everything is #general's; with rooms nothing of the bench is.
        let home = self.plan.gc3().then(|| self.plan.room_of(sender));
        if k != home {
            self.misplaced += 1;
        }
        *self.seen.entry((sender, seq)).or_default() += 1;
        self.ids.push(id);
    }

    fn verdict(self, files: usize, quotas: &[u64], acked_ids: &[u64]) -> Value {
        let Self {
            seen,
            mut ids,
            bad_lines,
            foreign,
            misplaced,
            ..
        } = self;
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
        json!({
            "checked": true,
            "ok": missing == 0
                && duplicated == 0
                && unexpected == 0
                && bad_lines == 0
                && misplaced == 0
                && ids_match,
            "files": files,
            "expected": expected,
            "found": seen.len(),
            "missing": missing,
            "duplicated": duplicated,
            "unexpected": unexpected,
            "bad_lines": bad_lines,
            "other_records": foreign,
            "in_another_rooms_file": misplaced,
            "ids_match_acks": ids_match,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_protocol::{Record, Timestamp, Username};

    /// Appends records `(id, body)` to `path` in the store's line format.
    fn write(path: &Path, records: &[(u64, &str)]) {
        let mut out = Vec::new();
        for &(id, body) in records {
            gc_store::encode_record(
                &Record {
                    room: Room::general(),
                    id,
                    timestamp: Timestamp::from_micros(1_700_000_000_000_000),
                    username: Username::new("bench00001").expect("name"),
                    body: body.to_owned(),
                },
                &mut out,
            );
        }
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).expect("dir");
        }
        std::fs::write(path, out).expect("write");
    }

    #[test]
    fn every_message_once_in_its_rooms_file() {
        let dir = tempfile::tempdir().expect("temp dir");
        let plan = RoomPlan::new(2, false, 4).expect("a plan");
        let general = room_file(dir.path(), &Room::general());
        let (r0, r1) = (
            room_file(dir.path(), &plan.name(0)),
            room_file(dir.path(), &plan.name(1)),
        );
        assert!(r1.ends_with("rooms/bench-1.db"), "{}", r1.display());
        write(&general, &[(1, "someone's hello")]);
        // Senders 0 and 2 post into #bench-0, 1 and 3 into #bench-1; one seq each.
        write(
            &r0,
            &[
                (2, "bench00000 created #bench-0"),
                (5, "t:9:0:0:x"),
                (7, "t:9:2:0:x"),
            ],
        );
        write(&r1, &[(6, "t:9:1:0:x"), (8, "t:9:3:0:x")]);
        let v = check_store(dir.path(), "t", &plan, &[1, 1, 1, 1], &[5, 6, 7, 8]).expect("read");
        assert_eq!(v["ok"], true, "{v}");
        assert_eq!(
            (v["files"].as_u64(), v["other_records"].as_u64()),
            (Some(3), Some(2))
        );

        // Sender 3's message in #bench-0's file: found once, but in the wrong room.
        write(&r0, &[(5, "t:9:0:0:x"), (7, "t:9:2:0:x"), (8, "t:9:3:0:x")]);
        write(&r1, &[(6, "t:9:1:0:x")]);
        let v = check_store(dir.path(), "t", &plan, &[1, 1, 1, 1], &[5, 6, 7, 8]).expect("read");
        assert_eq!(v["ok"], false, "{v}");
        assert_eq!(v["in_another_rooms_file"], 1);
        assert_eq!(v["missing"], 0);

        // Without rooms only database.db is read, and a bench record there is at home.
        let v = check_store(dir.path(), "t", &RoomPlan::GENERAL, &[], &[]).expect("read");
        assert_eq!(
            (v["ok"].as_bool(), v["files"].as_u64()),
            (Some(true), Some(1))
        );
        write(&general, &[(1, "t:9:0:0:x")]);
        let v = check_store(dir.path(), "t", &RoomPlan::GENERAL, &[1], &[1]).expect("read");
        assert_eq!(v["ok"], true, "{v}");
    }
}
