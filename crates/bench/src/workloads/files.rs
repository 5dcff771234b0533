//! `files`: shared files (GC/5, docs/files.md) through the real client library
//! (`gc_client_core::Client::upload` and `download`), against the goals of issue #14.
//!
//! Each run writes a test file of pseudo-random bytes (streamed: never the whole file in memory),
//! then:
//!
//! 1. on a fresh server, one client uploads it and downloads it again to a new path, each timed
//!    (MB/s, 1 MB = 10^6 bytes) with the server's RSS sampled before and all through it (its
//!    growth); the copy's SHA-256 is checked against the source's;
//! 2. on a fresh server, N clients online and S senders at a fixed rate, as `fanout` does, with
//!    the transferring client signed in and idle: the delivery latency without a transfer;
//! 3. on a fresh server, the same while that client uploads the file and then downloads it back
//!    to back: the senders start once the upload's bytes flow, and the transfers go on until
//!    the senders stop (the last one is then cancelled). The report says for how much of the
//!    sending window a transfer's bytes were in flight.
//!
//! The content differs at every run, so an external server that already holds an earlier run's
//! file cannot answer the upload at once. The test file and the downloads live in a temporary
//! directory (the downloads in one under `--download-dir`, if given), removed when the run
//! ends, also on an error.

use std::fs::File;
use std::io::{Read as _, Write as _};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use gc_client_core::{
    Client, ClientConfig, ClientTls, ConnState, Direction, Event, ListenPorts, PinSource,
    ServerPin, ServerPorts, TransferEvent, part_path,
};
use gc_protocol::{ContentHash, Room};
use serde_json::{Value, json};
use sha2::{Digest as _, Sha256};

use super::{
    Deliveries, check_duration, check_range, deliveries, human, latency_row, merge_senders,
};
use crate::cli::FilesArgs;
use crate::client::KeyCache;
use crate::error::BenchError;
use crate::hist::{Histogram, round3};
use crate::procfs::{self, CpuUsage, RssPeak, RssWindow};
use crate::report::RunResult;
use crate::sender::{Pace, SenderJob, SenderReport};
use crate::server::BenchAccounts;
use crate::wire::Mode;
use crate::{Ctx, Run};

/// Issue #14: each way at least this many MB/s (10^6 bytes a second).
const GOAL_MB_PER_S: f64 = 200.0;
/// Issue #14: the server's RSS grows by at most this during a transfer.
const GOAL_RSS_GROWTH_KIB: u64 = 16 * 1024;
/// Issue #14: fanout p99 during a transfer at most this many times that without one.
const GOAL_P99_RATIO: f64 = 2.0;

/// 1 MiB.
const MIB: u64 = 1 << 20;
/// The test file is written and read back in pieces of this size.
const PIECE: usize = 1 << 20;
/// How long the client library may take to log in.
const SIGN_IN_WAIT: Duration = Duration::from_secs(20);
/// A pause after the login before the first transfer, so its heartbeat and presence are done.
const SETTLE: Duration = Duration::from_millis(500);
/// How often a transfer's wait looks at its stop flag and deadline.
const POLL: Duration = Duration::from_millis(20);
/// How long a cancelled transfer may take to say it stopped.
const CANCEL_WAIT: Duration = Duration::from_secs(10);
/// At most this many downloads follow the upload during the fanout (a small file goes fast).
const MAX_DOWNLOADS: usize = 10_000;
/// Unacknowledged messages per sender (as `fanout`'s default).
const WINDOW: usize = 32;
/// The server's heartbeat threads and the file-transfer threads compete for the same cores;
/// catching up after the sending window may take this long.
const CATCH_UP: Duration = Duration::from_secs(15);

/// Runs the workload once.
pub fn files(ctx: &Ctx, mode: Mode, a: &FilesArgs) -> Result<RunResult, BenchError> {
    check_range("--file-mib", a.file_mib, 1, 64 * 1024)?;
    check_range("--n", a.n, 0, 5000)?;
    if a.n > 0 {
        check_range("--senders", a.senders, 1, a.n)?;
        check_range("--rate", a.rate, 0.1, 100_000.0)?;
        check_range("--body-bytes", a.body_bytes, 1, 4096)?;
        check_duration(ctx, a.duration)?;
    }
    let bytes = a.file_mib * MIB;
    let ctx = &with_file_limits(ctx, bytes)?;
    let mut builder = tempfile::Builder::new();
    builder.prefix("gc-bench-files-");
    let dir = match &ctx.spec.data_parent {
        Some(parent) => builder.tempdir_in(parent),
        None => builder.tempdir(),
    }
    .map_err(|e| BenchError::io("create a temporary directory for the test file", e))?;
    let seed = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
        ^ u64::from(std::process::id());
    let downloads = a
        .download_dir
        .as_ref()
        .map(|parent| {
            tempfile::Builder::new()
                .prefix("gc-bench-downloads-")
                .tempdir_in(parent)
                .map_err(|e| {
                    BenchError::io(format!("create a directory in {}", parent.display()), e)
                })
        })
        .transpose()?;
    let down_dir = downloads.as_ref().map_or(dir.path(), |d| d.path());
    let path = dir.path().join(format!("gc-bench-{}mib.bin", a.file_mib));
    let t0 = Instant::now();
    let file = TestFile::write(&path, bytes, seed)?;
    let write_s = t0.elapsed().as_secs_f64();

    let alone = transfers_alone(ctx, mode, &file, down_dir)?;
    let (chat_alone, chat_during) = if a.n > 0 {
        (
            Some(chat(ctx, mode, a, None)?),
            Some(chat(ctx, mode, a, Some((&file, down_dir)))?),
        )
    } else {
        (None, None)
    };
    // Everything written goes with the directories (here, or by their drop on an error above).
    if let Some(d) = downloads {
        d.close()
            .map_err(|e| BenchError::io("remove the downloads' directory", e))?;
    }
    dir.close()
        .map_err(|e| BenchError::io("remove the test file's directory", e))?;
    Ok(report(
        ctx,
        a,
        &file,
        write_s,
        &alone,
        chat_alone.as_ref(),
        chat_during.as_ref(),
    ))
}

/// `ctx` with the file settings a started server needs for a file of `bytes`: that size
/// allowed, no quota, and no free-space floor (the run's own files take about three times the
/// file; the operator's `--server-arg`s come after these, so they win).
fn with_file_limits(ctx: &Ctx, bytes: u64) -> Result<Ctx, BenchError> {
    let mut ctx = ctx.clone();
    if ctx.spec.external.is_none() {
        if !ctx.spec.knows_flag("--max-file-bytes") {
            return Err(BenchError::Invalid(format!(
                "{} does not share files (its --help has no --max-file-bytes): build a gc-server \
                 with GC/5, or pass --server-bin",
                ctx.spec.bin.display()
            )));
        }
        let mut args = vec![
            format!("--max-file-bytes={bytes}"),
            "--user-quota-bytes=0".to_owned(),
            "--min-free-disk-bytes=0".to_owned(),
        ];
        args.append(&mut ctx.spec.extra_args);
        ctx.spec.extra_args = args;
    }
    Ok(ctx)
}

/// A fast pseudo-random generator for the test file's bytes (SplitMix64): content that no
/// layer can compress or find twice, at memory speed. Not for anything secret.
#[derive(Debug)]
struct SplitMix64(u64);

impl SplitMix64 {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    fn fill(&mut self, buf: &mut [u8]) {
        for chunk in buf.chunks_mut(8) {
            let v = self.next().to_le_bytes();
            chunk.copy_from_slice(&v[..chunk.len()]);
        }
    }
}

/// The file the run moves.
#[derive(Debug)]
struct TestFile {
    path: PathBuf,
    bytes: u64,
    hash: ContentHash,
}

impl TestFile {
    /// Writes `bytes` pseudo-random bytes from `seed` to a new file at `path`, a piece at a time,
    /// hashing them as they go, and fsyncs it (so its write-back does not land in a
    /// measurement).
    fn write(path: &Path, bytes: u64, seed: u64) -> Result<Self, BenchError> {
        let what = || format!("write the test file {}", path.display());
        let mut out = File::create_new(path).map_err(|e| BenchError::io(what(), e))?;
        let mut rng = SplitMix64(seed);
        let mut buf = vec![0u8; PIECE];
        let mut hasher = Sha256::new();
        let mut left = bytes;
        while left > 0 {
            let n = usize::try_from(left.min(PIECE as u64)).unwrap_or(PIECE);
            rng.fill(&mut buf[..n]);
            hasher.update(&buf[..n]);
            out.write_all(&buf[..n])
                .map_err(|e| BenchError::io(what(), e))?;
            left -= n as u64;
        }
        out.sync_all().map_err(|e| BenchError::io(what(), e))?;
        Ok(Self {
            path: path.to_owned(),
            bytes,
            hash: ContentHash::from_digest(hasher.finalize().into()),
        })
    }
}

/// The SHA-256 and length of the file at `path`, read a piece at a time.
fn hash_file(path: &Path) -> Result<(ContentHash, u64), BenchError> {
    let what = || format!("read {}", path.display());
    let mut file = File::open(path).map_err(|e| BenchError::io(what(), e))?;
    let mut buf = vec![0u8; PIECE];
    let mut hasher = Sha256::new();
    let mut len = 0u64;
    loop {
        let n = file.read(&mut buf).map_err(|e| BenchError::io(what(), e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((ContentHash::from_digest(hasher.finalize().into()), len))
}

/// Removes a download of `hash` and its `.part` (a cancelled one leaves that), if there.
fn remove_download(target: &Path, hash: &ContentHash) -> Result<(), BenchError> {
    for p in [target.to_owned(), part_path(target, hash)] {
        match std::fs::remove_file(&p) {
            Ok(()) => {}
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => return Err(BenchError::io(format!("remove {}", p.display()), e)),
        }
    }
    Ok(())
}

/// One transfer, as the client library's events told it.
#[derive(Debug, Clone, Copy)]
struct Moved {
    direction: Direction,
    /// When it was asked for.
    asked: Instant,
    /// When its bytes began to flow: an upload's hashing pass done (the client hashes the file
    /// before it offers it); a download's when asked.
    flowing: Instant,
    /// When it ended: an upload stored, verified and announced; a download received, verified,
    /// fsynced and in place (or cancelled).
    ended: Instant,
    /// Bytes moved (a cancelled one's: as far as its last progress report).
    bytes: u64,
    /// Completed (else cancelled, at the end of the fanout's window).
    completed: bool,
    /// The content's SHA-256, as the client library reported it at the end.
    hash: Option<ContentHash>,
}

impl Moved {
    /// The rate from the first byte to the end.
    fn flowing_mb_per_s(&self) -> f64 {
        mb_per_s(
            self.bytes,
            self.ended.saturating_duration_since(self.flowing),
        )
    }

    /// The rate from asking to the end.
    fn whole_mb_per_s(&self) -> f64 {
        mb_per_s(self.bytes, self.whole())
    }

    fn whole(&self) -> Duration {
        self.ended.saturating_duration_since(self.asked)
    }

    fn hashing(&self) -> Duration {
        self.flowing.saturating_duration_since(self.asked)
    }

    fn sending(&self) -> Duration {
        self.ended.saturating_duration_since(self.flowing)
    }
}

/// MB (10^6 bytes) per second.
fn mb_per_s(bytes: u64, took: Duration) -> f64 {
    bytes as f64 / took.as_secs_f64().max(1e-9) / 1e6
}

/// The share of `window` covered by `spans` (which do not overlap each other), 0 to 1.
fn coverage(window: (Instant, Instant), spans: &[(Instant, Instant)]) -> f64 {
    let len = window.1.saturating_duration_since(window.0).as_secs_f64();
    if len <= 0.0 {
        return 0.0;
    }
    let covered: f64 = spans
        .iter()
        .map(|&(a, b)| {
            b.min(window.1)
                .saturating_duration_since(a.max(window.0))
                .as_secs_f64()
        })
        .sum();
    (covered / len).min(1.0)
}

/// The real client (gc-client-core) that moves the file, and its events.
#[derive(Debug)]
struct Lib {
    client: Client,
    events: Receiver<Event>,
}

impl Lib {
    /// Starts the client library as bench account `account`, from the address of slot `slot`,
    /// and waits until it is logged in to a server that shares files.
    fn start(run: &Run<'_>, mode: Mode, account: usize, slot: usize) -> Result<Self, BenchError> {
        let addrs = run.server.addrs;
        let mut config = ClientConfig::new(
            addrs.connect.ip().to_string(),
            BenchAccounts::name(account),
            run.ctx.accounts.password.as_str(),
        );
        config.server_ports = ServerPorts {
            connect: addrs.connect.port(),
            auth: addrs.auth.port(),
            send: addrs.send.port(),
        };
        config.bind_ip = Some(run.ctx.ip(slot));
        config.listen_ports = ListenPorts::any();
        config.tls = match (mode, run.server.fingerprint) {
            (Mode::Plain, _) => ClientTls::Off,
            (Mode::Tls, Some(fingerprint)) => ClientTls::Pinned(ServerPin {
                fingerprint,
                source: PinSource::Given("gc-bench (the server's own certificate)".into()),
            }),
            (Mode::Tls, None) => {
                return Err(BenchError::Invalid(
                    "a TLS run without the server's certificate".into(),
                ));
            }
        };
        let (client, events) =
            Client::start(config).map_err(|e| BenchError::client("start the client library", e))?;
        let lib = Self { client, events };
        lib.wait_active()?;
        match lib.client.files_available() {
            Some(true) => Ok(lib),
            _ => Err(BenchError::Invalid(
                "the server does not share files (GC/5): build a gc-server with file transfer"
                    .into(),
            )),
        }
    }

    fn wait_active(&self) -> Result<(), BenchError> {
        let deadline = Instant::now() + SIGN_IN_WAIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.events.recv_timeout(left) {
                Ok(Event::State(ConnState::Active)) => return Ok(()),
                Ok(Event::Fatal(e)) => {
                    return Err(BenchError::client("the client library's login", e));
                }
                Ok(_) => {}
                Err(RecvTimeoutError::Timeout) => {
                    return Err(BenchError::Timeout {
                        what: "the client library to log in".into(),
                        after: SIGN_IN_WAIT,
                    });
                }
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(BenchError::Invalid(
                        "the client library stopped before it logged in".into(),
                    ));
                }
            }
        }
    }

    /// Drops the events that piled up (the records it received), at most a bounded number.
    fn drain(&self) {
        for _ in 0..1_000_000 {
            if self.events.try_recv().is_err() {
                return;
            }
        }
    }

    /// Uploads `file` into `#general` and follows it to its end (see [`Lib::follow`]).
    fn upload(
        &self,
        file: &TestFile,
        timeout: Duration,
        stop: Option<&AtomicBool>,
        flowing: impl FnMut(Instant),
    ) -> Result<Moved, BenchError> {
        let asked = Instant::now();
        let id = self
            .client
            .upload(Room::general(), &file.path)
            .map_err(|e| BenchError::client("start the upload", e))?;
        self.follow(id, Direction::Upload, asked, timeout, stop, flowing)
    }

    /// Downloads `hash` to `target` and follows it to its end.
    fn download(
        &self,
        hash: ContentHash,
        target: &Path,
        timeout: Duration,
        stop: Option<&AtomicBool>,
    ) -> Result<Moved, BenchError> {
        let asked = Instant::now();
        let id = self
            .client
            .download(hash, target)
            .map_err(|e| BenchError::client("start the download", e))?;
        self.follow(id, Direction::Download, asked, timeout, stop, |_| {})
    }

    /// Follows transfer `id` (asked at `asked`) through its events to its end, within
    /// `timeout`; cancels it when `stop` is set (it then ends as not completed). `flowing` is
    /// called once, when its bytes begin to flow.
    fn follow(
        &self,
        id: u64,
        direction: Direction,
        asked: Instant,
        timeout: Duration,
        stop: Option<&AtomicBool>,
        mut flowing: impl FnMut(Instant),
    ) -> Result<Moved, BenchError> {
        let what = match direction {
            Direction::Upload => "the upload",
            Direction::Download => "the download",
        };
        let mut deadline = asked + timeout;
        let (mut cancelled, mut timed_out) = (false, false);
        let mut flowed = (direction == Direction::Download).then_some(asked);
        if let Some(at) = flowed {
            flowing(at);
        }
        let mut flow = |flowed: &mut Option<Instant>| {
            if flowed.is_none() {
                let at = Instant::now();
                *flowed = Some(at);
                flowing(at);
            }
        };
        let mut bytes = 0;
        loop {
            let now = Instant::now();
            if !cancelled && (now >= deadline || stop.is_some_and(|s| s.load(Ordering::Acquire))) {
                timed_out = now >= deadline;
                self.client.cancel_transfer(id);
                cancelled = true;
                deadline = now + CANCEL_WAIT;
            } else if cancelled && now >= deadline {
                return Err(BenchError::Timeout {
                    what: format!("{what} to stop once cancelled"),
                    after: CANCEL_WAIT,
                });
            }
            let ended = |bytes, completed, hash, flowed: Option<Instant>| Moved {
                direction,
                asked,
                flowing: flowed.unwrap_or(asked),
                ended: Instant::now(),
                bytes,
                completed,
                hash,
            };
            let wait = deadline.saturating_duration_since(now).min(POLL);
            let event = match self.events.recv_timeout(wait) {
                Ok(Event::Transfer(event)) => event,
                Ok(Event::Fatal(e)) => {
                    return Err(BenchError::client(
                        format!("the client library stopped during {what}"),
                        e,
                    ));
                }
                Ok(_) | Err(RecvTimeoutError::Timeout) => continue,
                Err(RecvTimeoutError::Disconnected) => {
                    return Err(BenchError::Invalid(format!(
                        "the client library's events ended during {what}"
                    )));
                }
            };
            match event {
                TransferEvent::Progress {
                    id: t,
                    done,
                    total,
                    hashing,
                    ..
                } if t == id => {
                    if !hashing {
                        bytes = done;
                    }
                    if !hashing || done >= total {
                        flow(&mut flowed);
                    }
                }
                TransferEvent::Uploaded {
                    id: t, hash, size, ..
                }
                | TransferEvent::Downloaded {
                    id: t, hash, size, ..
                } if t == id => {
                    flow(&mut flowed);
                    return Ok(ended(size, true, Some(hash), flowed));
                }
                TransferEvent::Failed { id: t, error, .. } if t == id => {
                    return Err(BenchError::client(format!("{what} failed"), error));
                }
                TransferEvent::Cancelled { id: t, .. } if t == id => {
                    if timed_out {
                        return Err(BenchError::Timeout {
                            what: format!("{what} (cancelled)"),
                            after: timeout,
                        });
                    }
                    return Ok(ended(bytes, false, None, flowed));
                }
                _ => {}
            }
        }
    }

    /// Says `Bye` and stops the client library's threads.
    fn close(self) {
        let _ = self.client.close(true, Some(Duration::from_secs(2)));
    }
}

/// A transfer measured alone: what it did, the server's and the bench's RSS, and the CPU.
struct Measured {
    moved: Moved,
    server_rss: Option<RssWindow>,
    bench_rss: Option<RssWindow>,
    cpu: CpuUsage,
}

/// Part 1: the upload and the download alone, on a fresh server.
struct Alone {
    upload: Measured,
    download: Measured,
    /// The downloaded copy's SHA-256 and length, read back by the bench.
    copy: (ContentHash, u64),
    problems: Value,
}

fn measure(
    run: &Run<'_>,
    transfer: impl FnOnce() -> Result<Moved, BenchError>,
) -> Result<Measured, BenchError> {
    let peak = RssPeak::start(run.server.pid)?;
    let before = run.snapshot();
    let moved = transfer()?;
    let cpu = before.until(&run.snapshot());
    let (server_rss, bench_rss) = peak.finish()?;
    Ok(Measured {
        moved,
        server_rss,
        bench_rss,
        cpu,
    })
}

fn transfers_alone(
    ctx: &Ctx,
    mode: Mode,
    file: &TestFile,
    dir: &Path,
) -> Result<Alone, BenchError> {
    let run = Run::start(ctx, mode, 1, 1, false)?;
    let lib = Lib::start(&run, mode, 0, 0)?;
    thread::sleep(SETTLE);
    let timeout = ctx.timeout;
    let upload = measure(&run, || lib.upload(file, timeout, None, |_| {}))?;
    if upload.moved.hash != Some(file.hash) {
        return Err(BenchError::Invalid(format!(
            "the client library uploaded {:?}, the bench wrote {}",
            upload.moved.hash, file.hash
        )));
    }
    let target = dir.join("downloaded.bin");
    let download = measure(&run, || lib.download(file.hash, &target, timeout, None))?;
    let copy = hash_file(&target)?;
    remove_download(&target, &file.hash)?;
    lib.close();
    let (_io, problems) = run.finish()?;
    Ok(Alone {
        upload,
        download,
        copy,
        problems,
    })
}

/// Part 2 or 3: the fanout, without a transfer or during one.
struct Chat {
    latency: Histogram,
    ack_latency: Histogram,
    deliveries: Deliveries,
    acked: u64,
    send_errors: u64,
    late: u64,
    caught_up: bool,
    window: Duration,
    cpu: CpuUsage,
    /// During a transfer: the transfers, and the share of the sending window they covered.
    transfers: Option<(Vec<Moved>, f64)>,
    failed_byes: usize,
    problems: Value,
}

/// The fanout of `a.n` clients on a fresh server, the transferring client (account and slot
/// `a.n`) signed in beside them; with `during`, while it moves that file.
fn chat(
    ctx: &Ctx,
    mode: Mode,
    a: &FilesArgs,
    during: Option<(&TestFile, &Path)>,
) -> Result<Chat, BenchError> {
    let n = a.n;
    let run = Run::start(ctx, mode, n + 1, n, false)?;
    let mut lib = Lib::start(&run, mode, n, n)?;
    let cache = KeyCache::default();
    cache.warm(&ctx.accounts);
    let slots: Vec<usize> = (0..n).collect();
    run.sign_in(0..n, |slot, _| slot, n, 16, Some(&cache))?;
    run.wait_pinged(&slots, Duration::from_secs(15))?;
    // Every delivery connection open before timing (see `fanout`).
    let (base, _) = run.warm_up(&slots)?;
    lib.drain();
    let duration = Duration::from_secs_f64(a.duration);
    let jobs = (0..a.senders)
        .map(|i| {
            let pace = Pace::spread(i, a.senders, a.rate, duration);
            run.job(i, i, a.body_bytes, WINDOW, pace)
        })
        .collect::<Result<Vec<_>, _>>()?;
    let before = run.snapshot();
    let (reports, moved) = match during {
        None => (run.send(jobs)?, None),
        Some((file, dir)) => {
            let (reports, moved) = concurrently(&run, &mut lib, file, dir, jobs)?;
            (reports, Some(moved))
        }
    };
    let sent = merge_senders(&reports);
    let caught_up = run.wait_delivered(&slots, sent.max_id, CATCH_UP).is_some();
    let cpu = before.until(&run.snapshot());
    let first = reports.iter().filter_map(|r| r.first_send).min();
    let last = reports.iter().filter_map(|r| r.last_ack).max();
    let now = Instant::now();
    let window = first.zip(last).unwrap_or((now, now));
    let transfers = moved.map(|m| {
        let spans: Vec<(Instant, Instant)> = m.iter().map(|t| (t.flowing, t.ended)).collect();
        let share = coverage(window, &spans);
        (m, share)
    });
    let failed_byes = run.bye(0..n, 8);
    lib.close();
    let (io, problems) = run.finish()?;
    let d = deliveries(&io, &slots, base, sent.max_id);
    Ok(Chat {
        latency: io.latency,
        ack_latency: sent.ack_latency,
        deliveries: d,
        acked: sent.acked,
        send_errors: sent.errors,
        late: sent.late,
        caught_up,
        window: window.1.saturating_duration_since(window.0),
        cpu,
        transfers,
        failed_byes,
        problems,
    })
}

/// Sends `jobs` while the client library uploads `file` and then downloads it back to back
/// (`bc-transfer`); the senders start once the upload's bytes flow, and the transfers stop when
/// the senders are done.
fn concurrently(
    run: &Run<'_>,
    lib: &mut Lib,
    file: &TestFile,
    dir: &Path,
    jobs: Vec<SenderJob>,
) -> Result<(Vec<SenderReport>, Vec<Moved>), BenchError> {
    let timeout = run.ctx.timeout;
    let stop = AtomicBool::new(false);
    let (tx, rx) = mpsc::channel::<Instant>();
    thread::scope(|scope| {
        let name = "bc-transfer".to_owned();
        let stop = &stop;
        // The thread takes the client (and its event receiver) for the while.
        let handle = thread::Builder::new()
            .name(name.clone())
            .spawn_scoped(scope, move || {
                let r = transfer_loop(&*lib, file, dir, timeout, stop, &tx);
                procfs::thread_done();
                r
            })
            .map_err(|source| BenchError::Thread {
                name: name.clone(),
                source,
            })?;
        let sent = match rx.recv_timeout(timeout) {
            Ok(_) => run.send(jobs),
            Err(_) => Err(BenchError::Timeout {
                what: "the upload's bytes to flow (the client's hashing pass to end)".into(),
                after: timeout,
            }),
        };
        stop.store(true, Ordering::Release);
        // The transfer's error first: a sender's wait that ran out is its consequence.
        let moved = handle.join().map_err(|_| BenchError::Panicked(name))??;
        Ok((sent?, moved))
    })
}

/// The upload of `file`, then downloads of it until `stop` (the one in flight is cancelled),
/// each removed once done; `flowing` is told when the upload's bytes begin to flow.
fn transfer_loop(
    lib: &Lib,
    file: &TestFile,
    dir: &Path,
    timeout: Duration,
    stop: &AtomicBool,
    flowing: &mpsc::Sender<Instant>,
) -> Result<Vec<Moved>, BenchError> {
    let mut moved = vec![lib.upload(file, timeout, Some(stop), |at| {
        let _ = flowing.send(at);
    })?];
    for k in 0..MAX_DOWNLOADS {
        if stop.load(Ordering::Acquire) {
            break;
        }
        let target = dir.join(format!("during-{k}.bin"));
        let m = lib.download(file.hash, &target, timeout, Some(stop));
        remove_download(&target, &file.hash)?;
        moved.push(m?);
    }
    Ok(moved)
}

fn goal(met: bool) -> &'static str {
    if met { "✔" } else { "✘" }
}

fn rss_row(w: Option<&RssWindow>) -> String {
    match w {
        Some(w) => format!(
            "{} → peak {} KiB (+{} KiB){}",
            human(w.before_kib as f64),
            human(w.peak_kib as f64),
            human(w.growth_kib() as f64),
            w.hwm_kib.map_or(String::new(), |h| format!(
                "; kernel's peak {}",
                human(h as f64)
            ))
        ),
        None => "n/a (no server pid)".to_owned(),
    }
}

fn rss_json(w: Option<&RssWindow>) -> Value {
    w.map_or(Value::Null, RssWindow::to_json)
}

fn chat_json(c: &Chat) -> Value {
    let mut v = json!({
        "latency": c.latency.summary_ms(),
        "ack_latency": c.ack_latency.summary_ms(),
        "messages_acked": c.acked,
        "send_errors": c.send_errors,
        "late_sends": c.late,
        "window_s": round3(c.window.as_secs_f64()),
        "deliveries": c.deliveries.json(),
        "caught_up": c.caught_up,
        "cpu": c.cpu.to_json(),
        "failed_byes": c.failed_byes,
    });
    if let Some((moved, share)) = &c.transfers {
        v["transfers"] = transfers_json(moved, *share);
    }
    v
}

fn transfers_json(moved: &[Moved], share: f64) -> Value {
    let list: Vec<Value> = moved
        .iter()
        .map(|m| {
            json!({
                "direction": match m.direction {
                    Direction::Upload => "upload",
                    Direction::Download => "download",
                },
                "completed": m.completed,
                "bytes": m.bytes,
                "s": round3(m.sending().as_secs_f64()),
                "mb_per_s": round3(m.flowing_mb_per_s()),
            })
        })
        .collect();
    json!({
        "coverage_pct": round3(share * 100.0),
        "bytes": moved.iter().map(|m| m.bytes).sum::<u64>(),
        "each": list,
    })
}

/// "1 upload (312 MB/s) + 3 downloads (402 MB/s on average) + 1 cancelled at the end".
fn transfers_row(moved: &[Moved], share: f64, window: Duration) -> String {
    let done = |d: Direction| {
        moved
            .iter()
            .filter(|m| m.direction == d && m.completed)
            .collect::<Vec<_>>()
    };
    let each = |v: &[&Moved], what: &str| {
        let mean = v.iter().map(|m| m.flowing_mb_per_s()).sum::<f64>() / v.len().max(1) as f64;
        match v.len() {
            0 => None,
            1 => Some(format!("1 {what} ({mean:.0} MB/s)")),
            n => Some(format!("{n} {what}s ({mean:.0} MB/s on average)")),
        }
    };
    let mut parts: Vec<String> = [
        each(&done(Direction::Upload), "upload"),
        each(&done(Direction::Download), "download"),
    ]
    .into_iter()
    .flatten()
    .collect();
    parts.extend(moved.iter().filter(|m| !m.completed).map(|m| {
        format!(
            "{} cancelled at the end after {} MB ({:.0} MB/s)",
            match m.direction {
                Direction::Upload => "an upload",
                Direction::Download => "a download",
            },
            human(m.bytes as f64 / 1e6),
            m.flowing_mb_per_s()
        )
    }));
    format!(
        "{}; a transfer's bytes in flight for {:.0} % of the {:.1} s sending window",
        parts.join(", then "),
        share * 100.0,
        window.as_secs_f64()
    )
}

fn report(
    ctx: &Ctx,
    a: &FilesArgs,
    file: &TestFile,
    write_s: f64,
    alone: &Alone,
    chat_alone: Option<&Chat>,
    chat_during: Option<&Chat>,
) -> RunResult {
    let (up, down) = (&alone.upload, &alone.download);
    let up_mb = up.moved.whole_mb_per_s();
    let up_sending_mb = up.moved.flowing_mb_per_s();
    let down_mb = down.moved.whole_mb_per_s();
    let hash_ok = alone.copy == (file.hash, file.bytes);
    let growth = |m: &Measured| m.server_rss.map(|w| w.growth_kib());
    let rss_ok = [growth(up), growth(down)]
        .iter()
        .all(|g| g.is_some_and(|g| g <= GOAL_RSS_GROWTH_KIB));
    let p99 = |c: Option<&Chat>| c.map(|c| c.latency.quantile(0.99));
    let ratio = match (p99(chat_alone), p99(chat_during)) {
        (Some(a), Some(d)) if a > 0 => Some(d as f64 / a as f64),
        _ => None,
    };
    let mut table = vec![
        (
            "test file".into(),
            format!(
                "{} bytes ({} MiB) of pseudo-random bytes, written and fsynced in {:.2} s; \
                 sha256 {}",
                human(file.bytes as f64),
                a.file_mib,
                write_s,
                file.hash
            ),
        ),
        (
            "upload".into(),
            format!(
                "{:.0} MB/s whole ({:.2} s: the client's hashing pass {:.2} s, then {:.2} s \
                 sending = {:.0} MB/s, to the server's Thx after fsync and verify) · goal \
                 ≥ {GOAL_MB_PER_S:.0} MB/s {}   [{}]",
                up_mb,
                up.moved.whole().as_secs_f64(),
                up.moved.hashing().as_secs_f64(),
                up.moved.sending().as_secs_f64(),
                up_sending_mb,
                goal(up_mb >= GOAL_MB_PER_S),
                up.cpu.describe()
            ),
        ),
        (
            "download".into(),
            format!(
                "{:.0} MB/s ({:.2} s: receive, hash, fsync, link into place) · goal ≥ \
                 {GOAL_MB_PER_S:.0} MB/s {}   [{}]",
                down_mb,
                down.moved.whole().as_secs_f64(),
                goal(down_mb >= GOAL_MB_PER_S),
                down.cpu.describe()
            ),
        ),
        (
            "copy's SHA-256".into(),
            if hash_ok {
                "equals the source's ✔".to_owned()
            } else {
                format!(
                    "{} ({} bytes), NOT the source's ✘",
                    alone.copy.0,
                    human(alone.copy.1 as f64)
                )
            },
        ),
        ("server RSS, upload".into(), rss_row(up.server_rss.as_ref())),
        (
            "server RSS, download".into(),
            format!(
                "{} · goal growth ≤ {} MiB {}",
                rss_row(down.server_rss.as_ref()),
                GOAL_RSS_GROWTH_KIB / 1024,
                goal(rss_ok)
            ),
        ),
        (
            "bench RSS (client library)".into(),
            format!(
                "+{} KiB during the upload, +{} KiB during the download",
                up.bench_rss.map_or(0, |w| w.growth_kib()),
                down.bench_rss.map_or(0, |w| w.growth_kib())
            ),
        ),
    ];
    if let (Some(ca), Some(cd)) = (chat_alone, chat_during) {
        table.extend([
            (
                format!("fanout, N={}, alone", a.n),
                latency_row(&ca.latency),
            ),
            (
                format!("fanout, N={}, during", a.n),
                latency_row(&cd.latency),
            ),
            (
                "p99 during / alone".into(),
                match ratio {
                    Some(r) => format!(
                        "{r:.2}× · goal ≤ {GOAL_P99_RATIO:.0}× {}",
                        goal(r <= GOAL_P99_RATIO)
                    ),
                    None => "n/a".into(),
                },
            ),
            (
                "transfers during".into(),
                cd.transfers.as_ref().map_or("none".into(), |(m, share)| {
                    transfers_row(m, *share, cd.window)
                }),
            ),
            (
                "deliveries".into(),
                format!(
                    "alone: {} · during: {}{}",
                    ca.deliveries.row(),
                    cd.deliveries.row(),
                    if ca.caught_up && cd.caught_up {
                        ""
                    } else {
                        " · NOT everyone caught up"
                    }
                ),
            ),
            ("fanout CPU, alone".into(), ca.cpu.describe()),
            ("fanout CPU, during".into(), cd.cpu.describe()),
        ]);
    }
    let moved_json = |m: &Measured, with_hashing: bool| {
        let mut v = json!({
            "bytes": m.moved.bytes,
            "mb_per_s": round3(m.moved.whole_mb_per_s()),
            "s": round3(m.moved.whole().as_secs_f64()),
            "server_rss": rss_json(m.server_rss.as_ref()),
            "bench_rss": rss_json(m.bench_rss.as_ref()),
            "cpu": m.cpu.to_json(),
        });
        if with_hashing {
            v["hashing_s"] = json!(round3(m.moved.hashing().as_secs_f64()));
            v["sending_s"] = json!(round3(m.moved.sending().as_secs_f64()));
            v["sending_mb_per_s"] = json!(round3(m.moved.flowing_mb_per_s()));
        }
        v
    };
    let fanout = match (chat_alone, chat_during) {
        (Some(ca), Some(cd)) => json!({
            "alone": chat_json(ca),
            "during_transfer": chat_json(cd),
            "p99_ratio": ratio.map(round3),
        }),
        _ => Value::Null,
    };
    RunResult {
        params: json!({
            "file_mib": a.file_mib,
            "file_bytes": file.bytes,
            "n": a.n,
            "senders": a.senders,
            "rate_per_sender": a.rate,
            "duration_s": a.duration,
            "body_bytes": a.body_bytes,
            "download_dir": a.download_dir.as_ref().map(|d| d.display().to_string()),
            "fsync": if ctx.on_postgres() { "postgres" } else { ctx.spec.fsync.as_str() },
            "mb": "10^6 bytes",
        }),
        results: json!({
            "file": {
                "bytes": file.bytes,
                "sha256": file.hash.to_string(),
                "write_s": round3(write_s),
            },
            "upload": moved_json(up, true),
            "download": moved_json(down, false),
            "sha256_match": hash_ok,
            "fanout": fanout,
            "goals": {
                "upload_mb_per_s": up_mb >= GOAL_MB_PER_S,
                "download_mb_per_s": down_mb >= GOAL_MB_PER_S,
                "server_rss_growth": rss_ok,
                "fanout_p99_ratio": ratio.map(|r| r <= GOAL_P99_RATIO),
            },
            "problems": {
                "transfers": alone.problems,
                "fanout_alone": chat_alone.map(|c| c.problems.clone()),
                "fanout_during_transfer": chat_during.map(|c| c.problems.clone()),
            },
        }),
        table,
        headline: vec![
            "upload.mb_per_s".into(),
            "upload.sending_mb_per_s".into(),
            "download.mb_per_s".into(),
            "upload.server_rss.growth_kib".into(),
            "download.server_rss.growth_kib".into(),
            "fanout.alone.latency.p99_ms".into(),
            "fanout.during_transfer.latency.p99_ms".into(),
            "fanout.p99_ratio".into(),
            "fanout.during_transfer.transfers.coverage_pct".into(),
            "fanout.during_transfer.deliveries.lost".into(),
        ],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_test_file_is_streamed_hashed_and_differs_by_seed() {
        let dir = tempfile::tempdir().expect("temp dir");
        // Not a whole number of pieces, nor of 8-byte words.
        let bytes = 2 * MIB + 13;
        let a = TestFile::write(&dir.path().join("a"), bytes, 1).expect("written");
        assert_eq!(std::fs::metadata(&a.path).expect("there").len(), bytes);
        let content = std::fs::read(&a.path).expect("read");
        assert_eq!(a.hash, ContentHash::of(&content));
        assert_eq!(hash_file(&a.path).expect("hashed"), (a.hash, bytes));
        let again = TestFile::write(&dir.path().join("b"), bytes, 1).expect("written");
        assert_eq!(again.hash, a.hash, "one seed, one content");
        let other = TestFile::write(&dir.path().join("c"), bytes, 2).expect("written");
        assert_ne!(other.hash, a.hash);
        // Never over an existing file.
        assert!(TestFile::write(&a.path, 1, 3).is_err());
        remove_download(&a.path, &a.hash).expect("removed");
        remove_download(&a.path, &a.hash).expect("gone already is fine");
    }

    #[test]
    fn coverage_counts_only_what_falls_in_the_window() {
        let t = Instant::now();
        let s = |x: u64| t + Duration::from_millis(x);
        let window = (s(1000), s(3000));
        assert_eq!(coverage(window, &[]), 0.0);
        // Before, across the start, inside, across the end.
        let spans = [(s(0), s(500)), (s(500), s(1500)), (s(2000), s(2500))];
        assert!((coverage(window, &spans) - 0.5).abs() < 1e-9);
        assert!((coverage(window, &[(s(0), s(9000))]) - 1.0).abs() < 1e-9);
        assert_eq!(coverage((s(5), s(5)), &spans), 0.0);
    }

    #[test]
    fn rates_are_in_decimal_megabytes() {
        assert!((mb_per_s(500_000_000, Duration::from_secs(2)) - 250.0).abs() < 1e-9);
    }
}
