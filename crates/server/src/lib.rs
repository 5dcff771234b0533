//! gc-server: the General Communications chat server.
//!
//! A thread-per-client server speaking GC/1 over six ports (see `docs/protocol.md`): it listens on
//! the connect, auth and send ports, and calls each client back on its auth, heartbeat and delivery
//! ports. [`start`] runs it in-process (tests do this); [`run`] is what the binary calls.

pub mod admin;
pub mod cli;
pub mod config;
pub mod error;
pub mod files_admin;
pub mod limits;
pub mod logging;
pub mod metrics;
pub mod paths;
pub mod sd_notify;
pub mod server;

mod account;
mod auth;
mod fds;
mod heartbeat;
mod listener;
mod notify;
mod presence;
mod rooms;
mod state;
mod threads;
mod throttle;
mod tls;
mod transfer;
mod warnings;

use std::io::Write;
use std::sync::Arc;

use parking_lot::Mutex;

pub use config::Config;
pub use error::ServerError;
pub use gc_protocol::texts::ServerAddrs;
pub use server::{ServerHandle, Stopper, start};

use cli::Command;

/// Runs what the command line asked for: the server (until SIGINT/SIGTERM) or an admin command.
/// Returns the process exit code for commands that report a state (`db check`, `files verify`).
pub fn run(command: Option<&Command>, config: Config) -> Result<i32, ServerError> {
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let code = match command {
        None | Some(Command::Run(_)) => {
            run_until_signal(config)?;
            0
        }
        Some(Command::User(cmd)) => {
            admin::user(cmd, &config, &mut admin::Terminal, &mut out)?;
            0
        }
        Some(Command::Plugins(cli::PluginsCommand::List { load, .. })) => {
            if *load {
                admin::plugins_list_loading(&config, &mut out)?;
            } else {
                admin::plugins_list(&config, &mut out)?;
            }
            0
        }
        Some(Command::Tls(cli::TlsCommand::Fingerprint { tls_cert, tls_key })) => {
            let mut config = config;
            if let (Some(cert), Some(key)) = (tls_cert, tls_key) {
                config.tls_cert = Some(cert.clone());
                config.tls_key = Some(key.clone());
            }
            admin::tls_fingerprint(&config, &mut out)?;
            0
        }
        Some(Command::Room(cmd)) => {
            admin::room(cmd, &config, &mut out)?;
            0
        }
        Some(Command::Files(cmd)) => {
            if files_admin::files(cmd, &config, &mut out)? {
                0
            } else {
                1
            }
        }
        Some(Command::Db(cmd)) => {
            if admin::db(cmd, &config, &mut out)? {
                0
            } else {
                1
            }
        }
    };
    let _ = out.flush();
    Ok(code)
}

/// Starts the server and stops it on the first SIGINT or SIGTERM, through the same shutdown the
/// tests use. A second signal exits at once, even while the shutdown hangs in a plugin hook.
/// SIGHUP reloads what can be reloaded ([`logging::reload`]: the log file is reopened, the log
/// level read again). A service manager waiting in `NOTIFY_SOCKET` is told `READY=1` once the
/// ports listen and `STOPPING=1` when the stop begins ([`sd_notify`]).
pub fn run_until_signal(config: Config) -> Result<(), ServerError> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    use signal_hook::iterator::Signals;
    use std::sync::atomic::{AtomicBool, Ordering};
    use std::thread::{Builder, JoinHandle};

    let mut signals = Signals::new([SIGINT, SIGTERM, SIGHUP]).map_err(ServerError::Signals)?;
    let signal_handle = signals.handle();
    let mut config = config;
    config.max_clients = prepare_fds(config.max_clients);
    let print_addrs = config.print_addrs;
    let server = start(config)?;
    let listening = server.addrs().listening_line();
    if print_addrs {
        // For tools that start a server on port 0: one line on standard output, flushed now.
        let mut out = std::io::stdout().lock();
        let _ = writeln!(out, "{listening}");
        let _ = out.flush();
    }
    // After the listening line: whoever waits for either may connect at once.
    sd_notify::notify(&format!("READY=1\nSTATUS={listening}"));
    // Said once, whether a signal or the server itself (a failed store) ends the run.
    let told_stopping = Arc::new(AtomicBool::new(false));
    let tell_stopping = {
        let told = Arc::clone(&told_stopping);
        move || {
            if !told.swap(true, Ordering::SeqCst) {
                sd_notify::notify("STOPPING=1");
            }
        }
    };
    let stopper = server.stopper();
    // The thread that runs the shutdown a signal asked for. The shutdown runs plugin hooks (each
    // session's end), and one that hangs must not keep the watcher from seeing a second signal.
    let stopping: Arc<Mutex<Option<JoinHandle<()>>>> = Arc::default();
    let watcher = {
        let stopping = Arc::clone(&stopping);
        let tell_stopping = tell_stopping.clone();
        Builder::new()
            .name("signals".into())
            .spawn(move || {
                let mut received = 0;
                for signal in signals.forever() {
                    if signal == SIGHUP {
                        logging::reload();
                        continue;
                    }
                    received += 1;
                    if received == 1 {
                        tell_stopping();
                        // Held while spawning, so the main thread, woken by this very shutdown,
                        // finds the handle.
                        let mut slot = stopping.lock();
                        let stop = stopper.clone();
                        match Builder::new()
                            .name("stopping".into())
                            .spawn(move || stop.stop())
                        {
                            Ok(handle) => *slot = Some(handle),
                            Err(_) => {
                                drop(slot);
                                stopper.stop();
                            }
                        }
                        tracing::info!(signal, "stopping (send the signal again to exit at once)");
                    } else {
                        tracing::warn!(signal, "second signal: exiting without a clean shutdown");
                        std::process::exit(130);
                    }
                }
            })
            .map_err(|source| ServerError::Thread {
                name: "signals".into(),
                source,
            })?
    };
    server.wait();
    tell_stopping();
    // Waits for a plugin hook still running the shutdown while the watcher still listens, so a
    // second signal can end the process here.
    let running = stopping.lock().take();
    if let Some(handle) = running {
        let _ = handle.join();
    }
    signal_handle.close();
    let _ = watcher.join();
    Ok(())
}

/// Raises the open-file limit and sizes the descriptor table for `max_clients` (fds.rs), says
/// what the limit allows, and returns the number of sessions to allow: fewer than
/// `max_clients` when the limit cannot hold them.
fn prepare_fds(max_clients: usize) -> usize {
    let fds = fds::prepare(max_clients);
    let allowed_clients = fds.max_clients(max_clients);
    match (fds.sessions_allowed(), fds.limit) {
        // A warning when it bites: below 1,000 sessions (a default max-clients of 4,096 on a
        // host with a hard limit of 20,000 is no problem on a LAN: said at info).
        (Some(allowed), Some(limit)) if allowed < (max_clients as u64).min(1000) => {
            tracing::warn!(
                "the open-file limit ({limit}) allows about {allowed} sessions, fewer than \
                 --max-clients {max_clients}: serving at most {allowed_clients} (beyond, logins \
                 get `Err full`); raise the limit (ulimit -n, or LimitNOFILE= for a systemd \
                 service) to serve more"
            );
        }
        (Some(allowed), Some(limit)) => tracing::info!(
            "the open-file limit ({limit}) allows about {allowed} sessions: serving at most \
             {allowed_clients} (--max-clients {max_clients})"
        ),
        _ => tracing::debug!(
            limit = ?fds.limit, table = ?fds.table,
            "open-file limit and descriptor table ready for {max_clients} sessions"
        ),
    }
    allowed_clients
}
