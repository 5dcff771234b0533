//! Command line: global options (which server, how many runs, bounds) and one subcommand per
//! workload.

use std::net::IpAddr;
use std::path::PathBuf;

use clap::{Args, Parser, Subcommand, ValueEnum};
use gc_protocol::Fingerprint;

use crate::wire::Mode;

/// gc-bench: load generator for gc-server.
///
/// Starts a fresh gc-server child process for every run (temporary data dir, bound to
/// 127.0.0.1, OS-chosen ports, rate limits lifted), drives it with many in-process clients (each
/// on its own loopback address 127.N.x.y, N = --ip-base, with OS-chosen callback ports,
/// answering heartbeats and deliveries like a real client) and prints, per run, a table and one
/// JSON line: parameters, machine, server version, results. Server CPU, RSS and threads come from
/// /proc/PID of the server; bench CPU from /proc/self (a run where the bench saturated a core is
/// flagged: its rate is then only a lower bound).
///
/// By default (--tls both) every run goes twice, on a fresh server each time: plain GC/1 (the
/// server with --tls off), then GC/2 over TLS 1.3 (--tls required; clients pin its certificate,
/// bind their logins to the TLS session and take its callbacks over mutual TLS); a last table
/// puts the two side by side.
///
/// Build both binaries first: cargo build --release -p gc-server -p gc-bench. Many clients need
/// many descriptors: the bench raises its soft limit to the hard one (see `ulimit -Hn`).
#[derive(Debug, Parser)]
#[command(name = "gc-bench", version, max_term_width = 100)]
pub struct Cli {
    #[command(flatten)]
    pub common: CommonArgs,

    #[command(subcommand)]
    pub workload: Workload,
}

/// fsync policy of a started server.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Fsync {
    /// fsync every append.
    Always,
    /// Group commit (the server's default).
    Batch,
    /// Never fsync.
    Never,
}

impl Fsync {
    /// The server's name for it.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Always => "always",
            Self::Batch => "batch",
            Self::Never => "never",
        }
    }
}

/// Which protocol the clients speak.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Tls {
    /// Plain GC/1 only (a started server gets --tls off).
    Off,
    /// GC/2 over TLS only (a started server gets --tls required).
    On,
    /// Each run plain, then over TLS, and the figures side by side.
    Both,
}

impl Tls {
    /// The modes each run goes through, in order.
    pub fn modes(self) -> &'static [Mode] {
        match self {
            Self::Off => &[Mode::Plain],
            Self::On => &[Mode::Tls],
            Self::Both => &[Mode::Plain, Mode::Tls],
        }
    }
}

/// Where a started server keeps its messages and accounts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum StoreChoice {
    /// The data dir's flat files (the default store).
    Flat,
    /// PostgreSQL: a fresh database of the --postgres cluster per run.
    Postgres,
    /// Each run on the flat files, then on PostgreSQL, and the figures side by side.
    Both,
}

impl StoreChoice {
    /// The stores each run goes through, in order.
    pub fn stores(self) -> &'static [StoreKind] {
        match self {
            Self::Flat => &[StoreKind::Flat],
            Self::Postgres => &[StoreKind::Postgres],
            Self::Both => &[StoreKind::Flat, StoreKind::Postgres],
        }
    }
}

/// One store a run goes on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StoreKind {
    /// Flat files.
    Flat,
    /// PostgreSQL.
    Postgres,
}

impl StoreKind {
    /// Its name in reports.
    pub fn name(self) -> &'static str {
        match self {
            Self::Flat => "flat file",
            Self::Postgres => "PostgreSQL",
        }
    }

    /// Its key in JSON.
    pub fn key(self) -> &'static str {
        match self {
            Self::Flat => "flat",
            Self::Postgres => "postgres",
        }
    }
}

/// Options of every workload.
#[derive(Debug, Args)]
pub struct CommonArgs {
    /// gc-server binary to start [default: gc-server in the same directory as gc-bench].
    #[arg(long, global = true, value_name = "PATH")]
    pub server_bin: Option<PathBuf>,

    /// Drive a running server at this address instead of starting one (it needs
    /// --rate-burst/--rate-per-sec high enough for the load and open registration).
    #[arg(long, global = true, value_name = "IP")]
    pub server: Option<IpAddr>,

    /// Connect, auth and send ports of --server.
    #[arg(
        long,
        global = true,
        value_name = "C,A,S",
        default_value = "10740,9281,9980"
    )]
    pub server_ports: String,

    /// Certificate fingerprint of --server, which TLS clients pin (`gc-server tls fingerprint`
    /// prints it); needed with --tls on or both.
    #[arg(long, global = true, value_name = "SHA256:…")]
    pub server_fingerprint: Option<Fingerprint>,

    /// Process id of --server, for its CPU, RSS and threads (not measured without it).
    #[arg(long, global = true, value_name = "PID")]
    pub server_pid: Option<u32>,

    /// Data dir of --server, for the ingest store check.
    #[arg(long, global = true, value_name = "DIR")]
    pub server_data_dir: Option<PathBuf>,

    /// Extra argument for a started gc-server, e.g. --server-arg=--no-reuse (repeatable).
    #[arg(
        long = "server-arg",
        global = true,
        value_name = "ARG",
        allow_hyphen_values = true
    )]
    pub server_args: Vec<String>,

    /// Fetch http://ADDR/metrics every 100 ms during each run (give the server
    /// --server-arg=--metrics-addr=ADDR), to measure what scraping costs; the counts are in the
    /// run's JSON line under `scrapes`.
    #[arg(long, global = true, value_name = "IP:PORT")]
    pub scrape: Option<std::net::SocketAddr>,

    /// Heartbeat interval of a started server, in milliseconds.
    #[arg(long, global = true, value_name = "MS", default_value_t = 1000)]
    pub heartbeat_ms: u64,

    /// Plain GC/1, GC/2 over TLS, or both: then each run goes plain, then over TLS (a fresh
    /// server each), and a table puts the figures side by side.
    #[arg(long, global = true, value_enum, default_value_t = Tls::Both)]
    pub tls: Tls,

    /// fsync policy of a started server (its flat files; on PostgreSQL the database's own
    /// settings decide).
    #[arg(long, global = true, value_enum, default_value_t = Fsync::Batch)]
    pub fsync: Fsync,

    /// A PostgreSQL cluster for runs on the shared store: the URL of a role that may create
    /// databases (each run gets a fresh one, dropped at its end). `source .ci/postgres &&
    /// GC_PG_FSYNC=on gc_pg_start` starts a private one and exports its URL as
    /// GC_TEST_POSTGRES.
    #[arg(
        long,
        global = true,
        value_name = "URL",
        env = "GC_BENCH_POSTGRES",
        hide_env_values = true
    )]
    pub postgres: Option<String>,

    /// Flat files, PostgreSQL, or both: then each run goes on the flat files, then on
    /// PostgreSQL (a fresh server and database each), and a table puts the figures side by side
    /// [default: both with --postgres, else flat].
    #[arg(long, global = true, value_enum, value_name = "STORE")]
    pub store: Option<StoreChoice>,

    /// Threads serving all clients' heartbeat and delivery connections (epoll).
    #[arg(long, global = true, value_name = "N", default_value_t = 2)]
    pub io_threads: usize,

    /// Repeat the workload this many times (a fresh server each time) and print the medians.
    #[arg(long, global = true, value_name = "N", default_value_t = 1)]
    pub runs: usize,

    /// Give up a run after this many seconds.
    #[arg(long, global = true, value_name = "S", default_value_t = 60)]
    pub timeout: u64,

    /// Second octet of the clients' loopback addresses (127.N.x.y).
    #[arg(long, global = true, value_name = "N", default_value_t = 20)]
    pub ip_base: u8,

    /// Directory for the started server's temporary data dir [default: the system temp dir].
    #[arg(long, global = true, value_name = "DIR")]
    pub data_parent: Option<PathBuf>,

    /// Print only the JSON lines, not the tables.
    #[arg(long, global = true)]
    pub json_only: bool,
}

/// The workloads.
#[derive(Debug, Subcommand)]
pub enum Workload {
    /// Full sign-in (Ping/Pong, SCRAM-SHA-256, callback, Ok) of N clients, at most C at a time:
    /// p50/p99/max setup time and sign-ins/s, with keys derived at every sign-in (cold) and
    /// cached per salt (cached).
    Connect(ConnectArgs),
    /// S senders pipeline up to W unacknowledged Msg frames each on one kept connection until K
    /// messages are acknowledged; then every message is checked to be in database.db once.
    Ingest(IngestArgs),
    /// N clients online, S of them sending at a fixed rate or as fast as they can; every delivery
    /// is timed and checked (lost and duplicated deliveries).
    Fanout(FanoutArgs),
    /// N clients connected and silent for T seconds: server CPU, RSS, threads, connections/s.
    Idle(IdleArgs),
    /// Server RSS and threads with no session, then with N idle sessions that have each had a
    /// history-on-join delivery, a large `History` page (on a sending connection still open) and
    /// a few live messages: bytes per session.
    Memory(MemoryArgs),
    /// Registrations one after the other on one connection, with E accounts there already:
    /// registrations per second.
    Register(RegisterArgs),
    /// Two instances of one service on one PostgreSQL database (needs --postgres): senders on
    /// instance A, receivers on A and on instance B; the latency of every delivery, on A
    /// (same instance) and on B (across instances, through LISTEN/NOTIFY).
    Instances(InstancesArgs),
    /// Shared files (GC/5) through the real client library: a test file of --file-mib MiB
    /// uploaded, then downloaded to a new path and its SHA-256 checked against the source's
    /// (MB/s, 1 MB = 10^6 bytes), with the server's RSS growth during each transfer; then the
    /// fanout of N clients without a transfer and during one (an upload, then downloads back to
    /// back): its p99 latency in both, and their ratio.
    ///
    /// Each run (plain, then TLS) starts three servers, each with --max-file-bytes the file's
    /// size, --user-quota-bytes 0 and --min-free-disk-bytes 0 (--server-arg comes after, and
    /// wins): one for the upload and the download alone, one for the fanout alone, one for the
    /// fanout during a transfer; the client that transfers is signed in on both fanout servers.
    /// --timeout bounds each server's part and each transfer. The test file and the downloads go
    /// in a temporary directory beside the servers' data dirs (--data-parent, else the system
    /// temp dir; the downloads under --download-dir if given), removed at the end: a run needs
    /// about three times --file-mib free there.
    Files(FilesArgs),
}

impl Workload {
    /// Its name in reports.
    pub fn name(&self) -> &'static str {
        match self {
            Self::Connect(_) => "connect",
            Self::Ingest(_) => "ingest",
            Self::Fanout(_) => "fanout",
            Self::Idle(_) => "idle",
            Self::Memory(_) => "memory",
            Self::Register(_) => "register",
            Self::Instances(_) => "instances",
            Self::Files(_) => "files",
        }
    }
}

/// Which sign-ins to time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Keys {
    /// PBKDF2 at every sign-in.
    Cold,
    /// Keys derived once per salt and reused.
    Cached,
    /// Cold, then cached (two phases on the same server).
    Both,
}

/// `connect` options.
#[derive(Debug, Args)]
pub struct ConnectArgs {
    /// Clients to sign in.
    #[arg(long, default_value_t = 100)]
    pub n: usize,
    /// Sign-ins in progress at once.
    #[arg(long, value_name = "C", default_value_t = 1)]
    pub concurrency: usize,
    /// Derive SCRAM keys at every sign-in, reuse them, or measure both.
    #[arg(long, value_enum, default_value_t = Keys::Both)]
    pub keys: Keys,
}

/// `ingest` options.
#[derive(Debug, Args)]
pub struct IngestArgs {
    /// Sending clients (each its own session and connection).
    #[arg(long, value_name = "S", default_value_t = 16)]
    pub senders: usize,
    /// Messages in all.
    #[arg(long, value_name = "K", default_value_t = 20_000)]
    pub messages: u64,
    /// Unacknowledged messages per sender.
    #[arg(long, value_name = "W", default_value_t = 64)]
    pub window: usize,
    /// Message body size in bytes.
    #[arg(long, value_name = "B", default_value_t = 32)]
    pub body_bytes: usize,
    /// Clients report a cursor far ahead of the store, so the server delivers nothing: measures
    /// ingest alone. Without it every sender also receives every message, as real clients do.
    #[arg(long)]
    pub sink: bool,
    /// Split the senders into N rooms of equal size (GC/3 sessions; sender i in #bench-<i % N>,
    /// posting there): each receives its room's messages only, and the store check finds each
    /// message in its room's file. 1: everything in #general, GC/1 sign-ins.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub rooms: usize,
    /// GC/3 sessions in created rooms even with --rooms 1 (one room #bench-0 instead of
    /// #general).
    #[arg(long)]
    pub gc3: bool,
}

/// Fanout modes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FanoutMode {
    /// Each sender sends --rate messages a second.
    Rate,
    /// Each sender sends as fast as its window allows.
    Max,
}

/// `fanout` options.
#[derive(Debug, Args)]
pub struct FanoutArgs {
    /// Clients online (all receive every message).
    #[arg(long, default_value_t = 200)]
    pub n: usize,
    /// Fixed rate or as fast as possible.
    #[arg(long, value_enum, default_value_t = FanoutMode::Rate)]
    pub mode: FanoutMode,
    /// Sending clients (among the N).
    #[arg(long, value_name = "S", default_value_t = 5)]
    pub senders: usize,
    /// Messages per second per sender (rate mode).
    #[arg(long, value_name = "R", default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, value_name = "T", default_value_t = 10.0)]
    pub duration: f64,
    /// Unacknowledged messages per sender.
    #[arg(long, value_name = "W", default_value_t = 32)]
    pub window: usize,
    /// Message body size in bytes.
    #[arg(long, value_name = "B", default_value_t = 32)]
    pub body_bytes: usize,
    /// Split the N clients into this many rooms of equal size (GC/3 sessions; client i in
    /// #bench-<i % rooms>, created by its lowest client and joined by the others): each sender
    /// posts into its own room, and every delivery is checked to reach exactly that room's
    /// members. 1: everything in #general, GC/1 sign-ins, as before rooms.
    #[arg(long, value_name = "N", default_value_t = 1)]
    pub rooms: usize,
    /// GC/3 sessions in created rooms even with --rooms 1 (all N clients in #bench-0 instead of
    /// #general), to tell a created room's cost from #general's.
    #[arg(long)]
    pub gc3: bool,
    /// Measure the server's CPU for this many seconds with everyone online and nothing sent,
    /// before sending, and report its CPU per delivery also net of that idle rate (heartbeats).
    #[arg(long, value_name = "S", default_value_t = 0.0)]
    pub idle_window: f64,
}

/// `instances` options.
#[derive(Debug, Args)]
pub struct InstancesArgs {
    /// Clients on instance A (the senders among them).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub n_a: usize,
    /// Clients on instance B (receivers only).
    #[arg(long, value_name = "N", default_value_t = 50)]
    pub n_b: usize,
    /// Sending clients (the first of instance A's).
    #[arg(long, value_name = "S", default_value_t = 1)]
    pub senders: usize,
    /// Messages per second per sender.
    #[arg(long, value_name = "R", default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of sending.
    #[arg(long, value_name = "T", default_value_t = 10.0)]
    pub duration: f64,
    /// Message body size in bytes.
    #[arg(long, value_name = "B", default_value_t = 32)]
    pub body_bytes: usize,
}

/// `files` options.
#[derive(Debug, Args)]
pub struct FilesArgs {
    /// Size of the test file in MiB (1 MiB = 1,048,576 bytes) of pseudo-random bytes, written
    /// (and fsynced) before each run; the rates are in MB/s, 1 MB = 10^6 bytes.
    #[arg(long, value_name = "MIB", default_value_t = 1024)]
    pub file_mib: u64,
    /// Clients online in the two fanout runs (all receive every message; the transferring
    /// client is one more, in both); 0 skips the fanout part.
    #[arg(long, default_value_t = 200)]
    pub n: usize,
    /// Sending clients (among the N).
    #[arg(long, value_name = "S", default_value_t = 5)]
    pub senders: usize,
    /// Messages per second per sender.
    #[arg(long, value_name = "R", default_value_t = 100.0)]
    pub rate: f64,
    /// Seconds of sending in each fanout run. During the transfer, the senders start once the
    /// upload's bytes flow (after the client's hashing pass), and downloads follow the upload
    /// back to back until the senders stop (the last one is then cancelled).
    #[arg(long, value_name = "T", default_value_t = 10.0)]
    pub duration: f64,
    /// Message body size in bytes.
    #[arg(long, value_name = "B", default_value_t = 32)]
    pub body_bytes: usize,
    /// Where the client library saves its downloads (in a temporary directory made there)
    /// [default: beside the test file]. A directory on another disk, or a tmpfs such as
    /// /dev/shm, keeps the client's writes and fsync off the server's disk, as when client and
    /// server are different machines.
    #[arg(long, value_name = "DIR")]
    pub download_dir: Option<PathBuf>,
}

/// `idle` options.
#[derive(Debug, Args)]
pub struct IdleArgs {
    /// Clients connected.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Seconds measured (after every client answered a heartbeat and 1 s of settling).
    #[arg(long, value_name = "T", default_value_t = 10.0)]
    pub seconds: f64,
}

/// `memory` options.
#[derive(Debug, Args)]
pub struct MemoryArgs {
    /// Clients connected.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Messages sent once everyone is online; every client must receive each.
    #[arg(long, default_value_t = 5)]
    pub probes: u64,
    /// Messages stored before the clients sign in (by one more client, signed out again before
    /// the baseline is taken), so each sign-in gets a full history-on-join delivery (0: none).
    #[arg(long, value_name = "K", default_value_t = 1000)]
    pub history: u64,
    /// Body size of those messages, in bytes (the server's default maximum).
    #[arg(long, value_name = "B", default_value_t = 4096)]
    pub body_bytes: usize,
    /// Then every client asks `History <token> 0 <L>` on a sending connection it keeps open
    /// while the memory is measured (0: no request).
    #[arg(long, value_name = "L", default_value_t = 1000)]
    pub history_limit: u32,
    /// Then every session idles this long (heartbeats only) and the RSS is sampled again: past
    /// the server's idle-timeout (30 s by default) it has closed the sending and delivery
    /// connections that carried nothing, as it does for any idle session (0: no second sample).
    #[arg(long, value_name = "S", default_value_t = 32)]
    pub idle_secs: u64,
}

/// `register` options.
#[derive(Debug, Args)]
pub struct RegisterArgs {
    /// Accounts to register.
    #[arg(long, default_value_t = 1000)]
    pub n: usize,
    /// Accounts in the accounts file before the start.
    #[arg(long, value_name = "E", default_value_t = 0)]
    pub existing: usize,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("gc-bench").chain(args.iter().copied()))
    }

    #[test]
    fn runs_go_plain_then_tls_unless_told() {
        let cli = parse(&["connect"]).expect("parses");
        assert_eq!(cli.common.tls.modes(), [Mode::Plain, Mode::Tls]);
        let cli = parse(&["connect", "--tls", "off"]).expect("a global option");
        assert_eq!(cli.common.tls.modes(), [Mode::Plain]);
        let cli = parse(&["--tls", "on", "memory"]).expect("parses");
        assert_eq!(cli.common.tls.modes(), [Mode::Tls]);
        assert!(parse(&["--tls", "maybe", "idle"]).is_err());
    }

    #[test]
    fn rooms_default_to_general() {
        let cli = parse(&["fanout"]).expect("parses");
        let Workload::Fanout(a) = cli.workload else {
            panic!("fanout")
        };
        assert_eq!((a.rooms, a.gc3, a.idle_window), (1, false, 0.0));
        let cli = parse(&[
            "fanout",
            "--n",
            "1000",
            "--rooms",
            "50",
            "--idle-window",
            "3",
        ])
        .expect("parses");
        let Workload::Fanout(a) = cli.workload else {
            panic!("fanout")
        };
        assert_eq!((a.n, a.rooms, a.idle_window), (1000, 50, 3.0));
        let cli = parse(&["ingest", "--rooms", "4", "--gc3"]).expect("parses");
        let Workload::Ingest(a) = cli.workload else {
            panic!("ingest")
        };
        assert_eq!((a.rooms, a.gc3), (4, true));
    }

    #[test]
    fn files_move_a_gibibyte_beside_the_fanouts_defaults() {
        let cli = parse(&["files"]).expect("parses");
        assert_eq!(cli.workload.name(), "files");
        let Workload::Files(a) = cli.workload else {
            panic!("files")
        };
        assert_eq!(
            (a.file_mib, a.n, a.senders, a.body_bytes),
            (1024, 200, 5, 32)
        );
        assert_eq!((a.rate, a.duration), (100.0, 10.0));
        let cli = parse(&["--tls", "off", "files", "--file-mib", "8", "--n", "0"]).expect("parses");
        let Workload::Files(a) = cli.workload else {
            panic!("files")
        };
        assert_eq!((a.file_mib, a.n), (8, 0));
    }

    #[test]
    fn a_server_fingerprint_must_be_one() {
        let fp = "SHA256:47DEQpj8HBSa+/TImW+5JCeuQeRkm5NMpJWZG3hSuFU";
        let cli =
            parse(&["--server", "10.0.0.1", "--server-fingerprint", fp, "idle"]).expect("parses");
        assert_eq!(
            cli.common
                .server_fingerprint
                .map(|f| f.to_string())
                .as_deref(),
            Some(fp)
        );
        assert!(parse(&["--server-fingerprint", "SHA256:nope", "idle"]).is_err());
    }
}
