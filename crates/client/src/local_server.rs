//! `--with-server`: runs the `gc-server` binary that sits next to `gc-client` as a child process,
//! for trying the chat on one machine. It gets its defaults except for the ports (the client's
//! `--server-port-*`), the address (the server address given, when it is an IP) and the data
//! directory (`./gc-data` unless `--server-data-dir`); its logs go to a file, never to the
//! screen. The client waits until the connect port answers `Ping`, and on exit sends SIGTERM
//! and waits; if the server does not stop in time it is killed, and the caller is told.
//!
//! One thread, `gc-server-wait`, owns the child and waits for it to exit: both the readiness
//! check and the shutdown wait on its channel, not on a sleep.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::unix::process::CommandExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gc_net::Conn;
use gc_net::identity::{IDENTITY_DIR, Identity};
use gc_net::tls::Stream;
use gc_protocol::{Fingerprint, VERSION, signin};
use rustix::process::{Pid, Signal, kill_process};

use crate::error::AppError;
use gc_client_core::config::ServerPorts;

/// How a local server is started.
#[derive(Clone, Debug)]
pub struct LocalServerOptions {
    /// The `gc-server` executable.
    pub binary: PathBuf,
    /// Its `--data-dir`.
    pub data_dir: PathBuf,
    /// Its `--log-file` (standard output and error go there too).
    pub log_file: PathBuf,
    /// Its `--bind` (`None`: its default, all interfaces).
    pub bind: Option<IpAddr>,
    /// Its three ports.
    pub ports: ServerPorts,
    /// How long it may take to answer `Ping`.
    pub ready_timeout: Duration,
    /// Whether it speaks TLS (its default) or runs with `--tls off`.
    pub tls: bool,
}

/// How the local server ended.
#[derive(Debug)]
pub enum StopReport {
    /// It stopped after SIGTERM.
    Stopped(ExitStatus),
    /// It had exited by itself before.
    Exited(ExitStatus),
    /// It did not stop within the time given and was killed.
    Killed,
    /// Waiting for it failed.
    Unknown(String),
}

/// A running `gc-server` child process.
#[derive(Debug)]
pub struct LocalServer {
    pid: Pid,
    exited: Receiver<std::io::Result<ExitStatus>>,
    waiter: Option<JoinHandle<()>>,
    log_file: PathBuf,
    /// The log file's length when this server was started: what it wrote since starts there.
    log_start: u64,
    data_dir: PathBuf,
    tls: bool,
    done: bool,
}

/// Most of a failed server's last words repeated in the client's error.
const SAID_LINES: usize = 3;

/// What the server wrote to its log since `start` that says why it stopped: its last few
/// lines other than routine ones (its error chain comes last), as `: line; line`, or nothing.
fn said(log_file: &Path, start: u64) -> String {
    use std::io::{Read as _, Seek as _, SeekFrom};
    // A server that fails at start writes a few lines; a huge log is not read whole.
    const MOST: u64 = 64 * 1024;
    let Ok(mut file) = std::fs::File::open(log_file) else {
        return String::new();
    };
    let end = file.metadata().map_or(start, |m| m.len());
    let from = start.max(end.saturating_sub(MOST));
    let mut bytes = Vec::new();
    if file.seek(SeekFrom::Start(from)).is_err() || file.take(MOST).read_to_end(&mut bytes).is_err()
    {
        return String::new();
    }
    let text = String::from_utf8_lossy(&bytes);
    // Log lines of no concern (`TIME  INFO target: …`) are left out: the error chain is wanted.
    let routine = |l: &str| {
        l.split_whitespace()
            .nth(1)
            .is_some_and(|level| matches!(level, "INFO" | "DEBUG" | "TRACE"))
    };
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !routine(l))
        .collect();
    let last = &lines[lines.len().saturating_sub(SAID_LINES)..];
    if last.is_empty() {
        String::new()
    } else {
        format!(": {}", last.join("; "))
    }
}

/// `gc-server` in the directory of the running executable.
pub fn sibling_binary() -> Result<PathBuf, AppError> {
    let exe = std::env::current_exe().map_err(|source| AppError::Io {
        what: "find the running executable",
        path: PathBuf::from("gc-client"),
        source,
    })?;
    let binary = exe.with_file_name(format!("gc-server{}", std::env::consts::EXE_SUFFIX));
    if binary.is_file() {
        Ok(binary)
    } else {
        Err(AppError::LocalServer(format!(
            "{} does not exist; build it with `cargo build --release` (it is built next to \
             gc-client)",
            binary.display()
        )))
    }
}

impl LocalServer {
    /// Starts the server and waits until it answers `Ping` on its connect port.
    pub fn start(options: &LocalServerOptions) -> Result<Self, AppError> {
        if let Some(dir) = options
            .log_file
            .parent()
            .filter(|d| !d.as_os_str().is_empty())
        {
            gc_store::private::create_dirs(dir).map_err(|source| AppError::Io {
                what: "create the directory of",
                path: options.log_file.clone(),
                source,
            })?;
        }
        let log = gc_store::private::open(
            &options.log_file,
            gc_store::private::options().create(true).append(true),
        )
        .map_err(|source| AppError::Io {
            what: "open the server's log file",
            path: options.log_file.clone(),
            source,
        })?;
        let log_start = log.metadata().map_or(0, |m| m.len());
        let log_err = log.try_clone().map_err(|source| AppError::Io {
            what: "open the server's log file",
            path: options.log_file.clone(),
            source,
        })?;
        let mut command = Command::new(&options.binary);
        command
            .arg("--data-dir")
            .arg(&options.data_dir)
            .arg("--log-file")
            .arg(&options.log_file)
            .arg("--connect-port")
            .arg(options.ports.connect.to_string())
            .arg("--auth-port")
            .arg(options.ports.auth.to_string())
            .arg("--send-port")
            .arg(options.ports.send.to_string())
            // The user runs this server for themselves, with open registration (which tells
            // which names are taken anyway): a login for a new name is told so, and the login
            // form offers to create the account.
            .arg("--unknown-users")
            .arg("tell")
            .stdin(Stdio::null())
            .stdout(log)
            .stderr(log_err)
            // A process group of its own: signals from the terminal (SIGHUP when it closes,
            // SIGINT) reach the client only, which says Bye first and then stops the server.
            .process_group(0);
        if let Some(ip) = options.bind {
            command.arg("--bind").arg(ip.to_string());
        }
        if !options.tls {
            command.arg("--tls").arg("off");
        }
        let mut child = command.spawn().map_err(|source| AppError::Io {
            what: "start",
            path: options.binary.clone(),
            source,
        })?;
        let pid = Pid::from_child(&child);
        let (tx, exited) = mpsc::channel();
        let waiter = thread::Builder::new()
            .name("gc-server-wait".into())
            .spawn(move || {
                let _ = tx.send(child.wait());
            })
            .map_err(|source| AppError::Thread {
                name: "gc-server-wait".into(),
                source,
            })?;
        let mut server = Self {
            pid,
            exited,
            waiter: Some(waiter),
            log_file: options.log_file.clone(),
            log_start,
            data_dir: options.data_dir.clone(),
            tls: options.tls,
            done: false,
        };
        let probe_ip = match options.bind {
            Some(ip) if !ip.is_unspecified() => ip,
            _ => IpAddr::V4(Ipv4Addr::LOCALHOST),
        };
        let probe = SocketAddr::new(probe_ip, options.ports.connect);
        match server.wait_ready(probe, options.ready_timeout) {
            Ok(()) => Ok(server),
            Err(e) => {
                server.stop(Duration::from_secs(5));
                Err(e)
            }
        }
    }

    /// Pings until the server answers, it exits, or `timeout` passes.
    fn wait_ready(&mut self, addr: SocketAddr, timeout: Duration) -> Result<(), AppError> {
        let deadline = Instant::now() + timeout;
        loop {
            if ping(addr, self.tls) {
                return Ok(());
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(AppError::LocalServer(format!(
                    "gc-server did not answer on {addr} within {} s; see its log {}",
                    timeout.as_secs(),
                    self.log_file.display()
                )));
            }
            // Nothing announces that the port is open: try again shortly, unless the process
            // exits first (which the waiter thread reports at once).
            match self
                .exited
                .recv_timeout(left.min(Duration::from_millis(50)))
            {
                Ok(status) => {
                    self.done = true;
                    self.join();
                    let status = status.map_or_else(|e| e.to_string(), |s| s.to_string());
                    return Err(AppError::LocalServer(format!(
                        "gc-server exited at once ({status}){}; see its log {}",
                        said(&self.log_file, self.log_start),
                        self.log_file.display()
                    )));
                }
                Err(RecvTimeoutError::Timeout) => {}
                Err(RecvTimeoutError::Disconnected) => {
                    self.done = true;
                    self.join();
                    return Err(AppError::LocalServer("lost track of gc-server".into()));
                }
            }
        }
    }

    /// The certificate the server presents (made in its data directory at its first start) and
    /// its fingerprint; `None` with `--tls off`.
    pub fn certificate(&self) -> Result<Option<(PathBuf, Fingerprint)>, AppError> {
        if !self.tls {
            return Ok(None);
        }
        let dir = self.data_dir.join(IDENTITY_DIR);
        let cert = dir.join("cert.pem");
        let identity = Identity::load(&cert, &dir.join("key.pem")).map_err(|e| {
            AppError::LocalServer(format!("cannot read the local server's certificate: {e}"))
        })?;
        Ok(Some((cert, identity.fingerprint())))
    }

    /// The server's log file.
    pub fn log_file(&self) -> &Path {
        &self.log_file
    }

    /// Sends SIGTERM and waits up to `within`; kills it if it is still running then.
    pub fn stop(&mut self, within: Duration) -> StopReport {
        if self.done {
            return StopReport::Unknown("already stopped".into());
        }
        self.done = true;
        if let Ok(status) = self.exited.try_recv() {
            self.join();
            return match status {
                Ok(s) => StopReport::Exited(s),
                Err(e) => StopReport::Unknown(e.to_string()),
            };
        }
        if let Err(e) = kill_process(self.pid, Signal::TERM) {
            tracing::warn!("cannot send SIGTERM to gc-server: {e}");
        }
        let report = match self.exited.recv_timeout(within) {
            Ok(Ok(status)) => StopReport::Stopped(status),
            Ok(Err(e)) => StopReport::Unknown(e.to_string()),
            Err(_) => {
                let _ = kill_process(self.pid, Signal::KILL);
                // SIGKILL cannot be refused: the waiter thread returns right away.
                let _ = self.exited.recv_timeout(within);
                StopReport::Killed
            }
        };
        self.join();
        report
    }

    fn join(&mut self) {
        if let Some(waiter) = self.waiter.take()
            && waiter.join().is_err()
        {
            tracing::error!("the gc-server-wait thread panicked");
        }
    }
}

impl Drop for LocalServer {
    fn drop(&mut self) {
        if !self.done {
            self.stop(Duration::from_secs(5));
        }
    }
}

/// Whether a gc-server answers the version check at `addr` (within a second), over TLS or plain.
pub fn ping(addr: SocketAddr, tls: bool) -> bool {
    let timeout = Duration::from_secs(1);
    if tls {
        // Its certificate is checked at login, against the one in its data directory.
        return gc_client_core::trust::probe_addr(addr, None, timeout).is_ok();
    }
    let Ok(stream) = gc_net::connect_from(None, addr, timeout) else {
        return false;
    };
    let mut conn = Conn::new(Stream::plain(stream), addr.to_string());
    signin::version_check(&mut conn, VERSION, timeout).is_ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_failed_servers_last_lines_since_its_start_are_repeated() {
        let dir = tempfile::tempdir().unwrap();
        let log = dir.path().join("gc-server.log");
        std::fs::write(&log, "an older run's line\n").unwrap();
        let start = std::fs::metadata(&log).unwrap().len();
        assert_eq!(said(&log, start), "", "nothing new: nothing said");
        let mut more = std::fs::OpenOptions::new().append(true).open(&log).unwrap();
        std::io::Write::write_all(
            &mut more,
            b"2026-12-06T21:33:22Z  INFO gc_server: routine\n2026-12-06T21:33:22Z  WARN \
              gc_server: odd\n\ngc-server: cannot open gc-data\n  caused by: locked\n",
        )
        .unwrap();
        assert_eq!(
            said(&log, start),
            ": 2026-12-06T21:33:22Z  WARN gc_server: odd; gc-server: cannot open gc-data; caused \
             by: locked"
        );
        assert_eq!(said(&dir.path().join("missing.log"), 0), "");
    }
}
