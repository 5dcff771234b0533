//! The server under test: a `gc-server` child process on a fresh temporary data dir (the default),
//! or an external server given by address (and pid, for CPU and memory figures).
//!
//! A child process rather than an in-process server keeps the figures clean: its CPU, RSS and
//! thread count are exactly `/proc/<pid>`, with none of the bench's own threads or allocations
//! mixed in.

use std::collections::VecDeque;
use std::io::{BufRead, BufReader, Write as _};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gc_net::Identity;
use gc_net::identity::{CERT_FILE, IDENTITY_DIR, KEY_FILE};
use gc_protocol::scram::{Verifier, derive_verifier};
use gc_protocol::signin::{self, SignInError};
use gc_protocol::texts::ServerAddrs;
use gc_protocol::{ErrorCode, Fingerprint, Timestamp, Username};

use crate::error::BenchError;
use crate::pg::{PgCluster, PgDb};
use crate::wire::{Mode, Wire};

/// A server someone else started.
#[derive(Clone, Debug)]
pub struct External {
    /// Its address.
    pub ip: IpAddr,
    /// Connect, auth and send ports.
    pub ports: [u16; 3],
    /// Its pid, for /proc figures.
    pub pid: Option<u32>,
    /// Its data dir, for the ingest store check.
    pub data_dir: Option<PathBuf>,
    /// Its certificate's fingerprint, for TLS runs.
    pub fingerprint: Option<Fingerprint>,
}

/// How to get a server.
#[derive(Clone, Debug)]
pub struct ServerSpec {
    /// The gc-server binary to start (ignored with `external`).
    pub bin: PathBuf,
    /// Use this running server instead of starting one.
    pub external: Option<External>,
    /// fsync policy of a started server.
    pub fsync: String,
    /// Heartbeat interval of a started server.
    pub heartbeat_ms: u64,
    /// More arguments for a started server.
    pub extra_args: Vec<String>,
    /// Where temporary data dirs go (default: the system temporary directory).
    pub data_parent: Option<PathBuf>,
    /// Store the messages and accounts in PostgreSQL (a fresh database of this cluster per
    /// run) instead of the data dir's flat files.
    pub postgres: Option<PgCluster>,
}

impl ServerSpec {
    /// The version string of the server: `gc-server --version` of the binary, and for an
    /// external server the same when the binary is there (it is only a hint then).
    pub fn version(&self) -> String {
        let out = Command::new(&self.bin).arg("--version").output();
        let version = match out {
            Ok(o) if o.status.success() => String::from_utf8_lossy(&o.stdout).trim().to_owned(),
            _ => "unknown".to_owned(),
        };
        if self.external.is_some() {
            format!("external (local binary: {version})")
        } else {
            version
        }
    }

    /// The arguments a started server bound to `bind` gets for a run in `mode`.
    pub fn args(&self, data_dir: &Path, mode: Mode, bind: IpAddr) -> Vec<String> {
        let mut args: Vec<String> = [
            "--data-dir",
            &data_dir.display().to_string(),
            "--bind",
            &bind.to_string(),
            "--connect-port",
            "0",
            "--auth-port",
            "0",
            "--send-port",
            "0",
            "--fsync",
            &self.fsync,
            "--heartbeat-interval-ms",
            &self.heartbeat_ms.to_string(),
            // The bench sends far faster than a person; the per-user limit would refuse it.
            "--rate-burst",
            "1000000",
            "--rate-per-sec",
            "1000000",
            "--log-level",
            "info",
            // The listening line on standard output: the ports are OS-chosen.
            "--print-addrs",
            "--tls",
            mode.server_tls(),
        ]
        .iter()
        .map(|s| (*s).to_owned())
        .collect();
        // Every bench client comes from 127.0.0.1: lift the per-address session cap, on servers
        // that have one (the bench also drives older binaries, which would refuse the flag).
        if self.knows_flag("--max-sessions-per-address") {
            args.extend([
                "--max-sessions-per-address".to_owned(),
                "1000000".to_owned(),
            ]);
        }
        // The bench registers its accounts from one address too.
        if self.knows_flag("--max-registrations-per-address") {
            args.extend(["--max-registrations-per-address".to_owned(), "0".to_owned()]);
        }
        args.extend(self.extra_args.iter().cloned());
        args
    }

    /// Whether the server binary's `--help` lists `flag`.
    pub(crate) fn knows_flag(&self, flag: &str) -> bool {
        Command::new(&self.bin)
            .arg("--help")
            .output()
            .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).contains(flag))
    }
}

/// Log lines of the server, summarised.
#[derive(Debug, Default)]
struct LogState {
    warnings: u64,
    errors: u64,
    first_problems: Vec<String>,
    recent: VecDeque<String>,
}

/// A running server.
#[derive(Debug)]
pub struct Server {
    /// Where it listens.
    pub addrs: ServerAddrs,
    /// Its pid, when known.
    pub pid: Option<u32>,
    /// Its data dir, when known.
    pub data_dir: Option<PathBuf>,
    /// Its certificate's fingerprint, in a TLS run.
    pub fingerprint: Option<Fingerprint>,
    /// Its PostgreSQL database, on the shared store (dropped after the last server using it).
    pub db: Option<Arc<PgDb>>,
    child: Option<Child>,
    log: Arc<Mutex<LogState>>,
    drain: Option<JoinHandle<()>>,
    _dir: Option<tempfile::TempDir>,
}

/// The accounts every run uses: one password and salt, so the verifier is derived once.
#[derive(Debug, Clone)]
pub struct BenchAccounts {
    /// The password of every bench account.
    pub password: String,
    /// Their verifier (salt, iterations, keys).
    pub verifier: Verifier,
}

impl BenchAccounts {
    /// Derives the verifier with `iterations` (the server's minimum, 4,096, by default).
    pub fn new(iterations: u32) -> Self {
        let password = "gc-bench-password".to_owned();
        let salt = *b"gc-bench-salt-16";
        Self {
            verifier: derive_verifier(&password, &salt, iterations),
            password,
        }
    }

    /// The name of account `i`.
    pub fn name(i: usize) -> String {
        format!("bench{i:05}")
    }

    /// Writes `usernames.db` with accounts `0..n` into a fresh data dir (the documented format,
    /// one line each), which is much faster than registering thousands over the network: every
    /// `Register` rewrites the whole file.
    pub fn write_file(&self, dir: &Path, n: usize) -> Result<(), BenchError> {
        let v = &self.verifier;
        let (salt, stored, server) = (
            B64.encode(&v.salt),
            B64.encode(v.stored_key),
            B64.encode(v.server_key),
        );
        let now = Timestamp::now();
        let mut text = Vec::with_capacity(n * 140);
        for i in 0..n {
            let _ = writeln!(
                text,
                "{};{salt};{};{stored};{server};{now}",
                Self::name(i),
                v.iterations
            );
        }
        let path = dir.join(gc_store::ACCOUNTS_FILE);
        std::fs::write(&path, text)
            .map_err(|e| BenchError::io(format!("write {}", path.display()), e))
    }

    /// Registers accounts `0..n` over the network (external servers); existing ones are fine.
    pub fn register(
        &self,
        addrs: &ServerAddrs,
        wire: &Wire,
        ip: IpAddr,
        n: usize,
    ) -> Result<(), BenchError> {
        self.register_range(addrs, wire, ip, 0..n)
    }

    /// Registers accounts `range` over the network, one after the other on one connection;
    /// existing ones are fine.
    pub fn register_range(
        &self,
        addrs: &ServerAddrs,
        wire: &Wire,
        ip: IpAddr,
        range: std::ops::Range<usize>,
    ) -> Result<(), BenchError> {
        let mut conn = wire.connect(ip, addrs.auth, &format!("connect to {}", addrs.auth))?;
        for i in range {
            let name = Self::name(i);
            let username =
                Username::new(name.clone()).map_err(|e| BenchError::Invalid(e.to_string()))?;
            match signin::register(
                &mut conn,
                &username,
                &self.verifier,
                Duration::from_secs(10),
            ) {
                Ok(()) => {}
                Err(SignInError::Refused { error, .. }) if error.code == ErrorCode::Exists => {}
                Err(SignInError::Wire { source, .. }) => {
                    return Err(BenchError::protocol(format!("register {name}"), source));
                }
                Err(other) => {
                    return Err(BenchError::Refused {
                        what: format!("register {name}"),
                        answer: format!("{other:?}"),
                    });
                }
            }
        }
        Ok(())
    }
}

impl Server {
    /// Starts a server for a run in `mode` with accounts `0..accounts` in its accounts file, or
    /// attaches to the external one (whose accounts the caller registers: see
    /// [`Server::is_external`]).
    pub fn start(
        spec: &ServerSpec,
        mode: Mode,
        bench_accounts: &BenchAccounts,
        accounts: usize,
    ) -> Result<Self, BenchError> {
        Self::start_on(
            spec,
            mode,
            bench_accounts,
            accounts,
            Ipv4Addr::LOCALHOST.into(),
            None,
        )
    }

    /// [`Server::start`] bound to `bind`; on PostgreSQL (`spec.postgres`) over `db` when given
    /// (another instance of the same service), else over a fresh database with the accounts.
    pub fn start_on(
        spec: &ServerSpec,
        mode: Mode,
        bench_accounts: &BenchAccounts,
        accounts: usize,
        bind: IpAddr,
        db: Option<Arc<PgDb>>,
    ) -> Result<Self, BenchError> {
        if let Some(ext) = &spec.external {
            let at = |port| SocketAddr::new(ext.ip, port);
            let addrs = ServerAddrs {
                connect: at(ext.ports[0]),
                auth: at(ext.ports[1]),
                send: at(ext.ports[2]),
            };
            let fingerprint = match mode {
                Mode::Plain => None,
                Mode::Tls => Some(ext.fingerprint.ok_or_else(|| {
                    BenchError::Invalid(
                        "TLS runs against --server need its --server-fingerprint (`gc-server \
                         tls fingerprint` prints it), or --tls off"
                            .into(),
                    )
                })?),
            };
            return Ok(Self {
                addrs,
                pid: ext.pid,
                data_dir: ext.data_dir.clone(),
                fingerprint,
                db: None,
                child: None,
                log: Arc::default(),
                drain: None,
                _dir: None,
            });
        }
        if !spec.bin.is_file() {
            return Err(BenchError::ServerBinary(spec.bin.clone()));
        }
        let mut builder = tempfile::Builder::new();
        builder.prefix("gc-bench-");
        let dir = match &spec.data_parent {
            Some(parent) => builder.tempdir_in(parent),
            None => builder.tempdir(),
        }
        .map_err(|e| BenchError::io("create a temporary data dir", e))?;
        let data_dir = dir.path().to_path_buf();
        bench_accounts.write_file(&data_dir, accounts)?;
        let db = match (&spec.postgres, db) {
            (Some(_), Some(db)) => Some(db),
            (Some(cluster), None) => Some(Arc::new(cluster.create(bench_accounts, accounts)?)),
            (None, _) => None,
        };
        let mut command = Command::new(&spec.bin);
        command.args(spec.args(&data_dir, mode, bind));
        // Through the environment, not the command line, which any local user can read.
        match &db {
            Some(db) => command.env("GC_STORE", &db.url),
            None => command.env_remove("GC_STORE"),
        };
        let mut child = command
            .env("NO_COLOR", "1")
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .map_err(|source| BenchError::SpawnServer {
                path: spec.bin.clone(),
                source,
            })?;
        let pid = child.id();
        let log = Arc::new(Mutex::new(LogState::default()));
        let (tx, rx) = mpsc::channel();
        let drain = match (child.stdout.take(), child.stderr.take()) {
            (Some(stdout), Some(stderr)) => {
                let log = Arc::clone(&log);
                let spawned = thread::Builder::new()
                    .name("bc-server-log".into())
                    .spawn(move || drain_output(stdout, stderr, &log, &tx));
                match spawned {
                    Ok(h) => Some(h),
                    Err(source) => {
                        let _ = child.kill();
                        let _ = child.wait();
                        return Err(BenchError::Thread {
                            name: "bc-server-log".into(),
                            source,
                        });
                    }
                }
            }
            _ => None,
        };
        let mut server = Self {
            addrs: ServerAddrs {
                connect: SocketAddr::new(bind, 0),
                auth: SocketAddr::new(bind, 0),
                send: SocketAddr::new(bind, 0),
            },
            pid: Some(pid),
            data_dir: Some(data_dir.clone()),
            fingerprint: None,
            db,
            child: Some(child),
            log,
            drain,
            _dir: Some(dir),
        };
        let wait = Duration::from_secs(20);
        match rx.recv_timeout(wait) {
            Ok(addrs) => {
                server.addrs = addrs;
                if mode.is_tls() {
                    // Made in the data dir at the start, before the server listens.
                    server.fingerprint = Some(fingerprint_in(&data_dir)?);
                }
                Ok(server)
            }
            Err(_) => {
                server.stop();
                Err(BenchError::ServerStart {
                    after: wait,
                    log: server.recent_log(),
                })
            }
        }
    }

    /// Whether someone else started it (its accounts are registered over the network).
    pub fn is_external(&self) -> bool {
        self._dir.is_none()
    }

    /// Warnings and errors the server logged so far, with the first few.
    pub fn problems(&self) -> (u64, u64, Vec<String>) {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        (log.warnings, log.errors, log.first_problems.clone())
    }

    fn recent_log(&self) -> String {
        let log = self.log.lock().unwrap_or_else(|p| p.into_inner());
        log.recent.iter().cloned().collect::<Vec<_>>().join("\n")
    }

    /// Stops a started server (SIGTERM, then SIGKILL after 10 s) and joins the log thread.
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let pid = rustix::process::Pid::from_raw(child.id() as i32);
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
            }
            let deadline = Instant::now() + Duration::from_secs(10);
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if Instant::now() < deadline => {
                        thread::sleep(Duration::from_millis(10));
                    }
                    _ => {
                        let _ = child.kill();
                        let _ = child.wait();
                        break;
                    }
                }
            }
        }
        if let Some(h) = self.drain.take() {
            let _ = h.join();
        }
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop();
    }
}

/// The fingerprint of the TLS identity a server made in `data_dir`.
pub fn fingerprint_in(data_dir: &Path) -> Result<Fingerprint, BenchError> {
    let dir = data_dir.join(IDENTITY_DIR);
    Identity::load(&dir.join(CERT_FILE), &dir.join(KEY_FILE))
        .map(|id| id.fingerprint())
        .map_err(|source| BenchError::Tls {
            what: format!("read the server's certificate in {}", dir.display()),
            source,
        })
}

/// Removes ANSI colour sequences (in case the server colours its log anyway).
fn strip_ansi(line: &str) -> String {
    let mut out = String::with_capacity(line.len());
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        if c == '\u{1b}' {
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// Reads the server's listening line (`--print-addrs`, on standard output), then summarises its
/// log (standard error) until it exits.
fn drain_output(
    stdout: std::process::ChildStdout,
    stderr: std::process::ChildStderr,
    log: &Mutex<LogState>,
    tx: &mpsc::Sender<ServerAddrs>,
) {
    let mut first = String::new();
    if BufReader::new(stdout).read_line(&mut first).is_ok()
        && let Some(addrs) = ServerAddrs::from_listening_line(&first)
    {
        let _ = tx.send(addrs);
    }
    for line in BufReader::new(stderr).lines() {
        let Ok(line) = line else { return };
        let line = strip_ansi(&line);
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        let warn = line.contains(" WARN ");
        let error = line.contains(" ERROR ");
        if warn {
            log.warnings += 1;
        }
        if error {
            log.errors += 1;
        }
        if (warn || error) && log.first_problems.len() < 10 {
            log.first_problems.push(line.clone());
        }
        if log.recent.len() == 30 {
            log.recent.pop_front();
        }
        log.recent.push_back(line);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn colour_sequences_are_stripped_from_log_lines() {
        let line = "\u{1b}[2m2026-01-01T00:00:00Z\u{1b}[0m \u{1b}[32m INFO\u{1b}[0m gc_server: hi";
        assert_eq!(strip_ansi(line), "2026-01-01T00:00:00Z  INFO gc_server: hi");
    }

    #[test]
    fn a_started_server_gets_the_runs_tls_mode_before_the_extra_arguments() {
        let spec = ServerSpec {
            bin: PathBuf::from("gc-server"),
            external: None,
            fsync: "batch".into(),
            heartbeat_ms: 1000,
            extra_args: vec!["--tls".into(), "optional".into()],
            data_parent: None,
            postgres: None,
        };
        for (mode, tls) in [(Mode::Plain, "off"), (Mode::Tls, "required")] {
            let args = spec.args(Path::new("/tmp/d"), mode, Ipv4Addr::LOCALHOST.into());
            let at = args.iter().position(|a| a == "--tls").expect("--tls");
            assert_eq!(args[at + 1], tls);
            // What the operator adds comes last, so it wins.
            assert_eq!(&args[args.len() - 2..], ["--tls", "optional"]);
        }
    }
}
