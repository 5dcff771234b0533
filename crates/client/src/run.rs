//! What the `gc-client` binary does once its command line is parsed and logging is set up:
//! list plugins, or run the terminal UI or headless mode, optionally around a local gc-server.

use std::io::{self, BufReader, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::AppError;
use crate::cli::{Cli, TlsChoice};
use crate::exit::{self, EXIT_ERROR, EXIT_UNSENT, EXIT_USAGE};
use crate::headless;
use crate::local_server::{self, LocalServer, LocalServerOptions, StopReport};
use crate::settings::{
    Settings, SettingsFile as _, default_log_path, default_logs_dir, default_settings_path,
    tighten_default_place,
};
use crate::trust::ServerTrust;
use crate::tui::{self, TuiOptions};
use gc_client_core::ServerPorts;
use gc_client_core::config::DEFAULT_CONNECT_PORT;

/// How long messages still in the outbox may hold up quitting the terminal UI.
const QUIT_DRAIN: Duration = Duration::from_secs(3);
/// How long the local server may take to start, and to stop after SIGTERM.
const LOCAL_SERVER_WAIT: Duration = Duration::from_secs(10);

/// Runs what the command line asks for, after logging is set up: `--list-plugins`, or the
/// terminal UI / headless mode (with a local server around it for `--with-server`). Returns the
/// process exit code; errors have been reported on standard error.
pub fn run(cli: &Cli, log_file: Option<&Path>) -> u8 {
    if cli.list_plugins {
        return list_plugins(cli);
    }
    let mut server = None;
    if cli.with_server {
        match start_local_server(cli, log_file) {
            Ok(s) => server = Some(s),
            Err(e) => return error_exit(&e),
        }
    }
    let local_cert = match server.as_ref().map(LocalServer::certificate).transpose() {
        Ok(cert) => cert.flatten(),
        Err(e) => return error_exit(&e),
    };
    let code = match ServerTrust::decide(cli, local_cert) {
        Ok(trust) if cli.headless => run_headless(cli, trust),
        Ok(trust) => run_tui(cli, trust),
        Err(e) if cli.headless => headless_exit(&Err(e)),
        Err(e) => error_exit(&e),
    };
    if let Some(mut server) = server {
        match server.stop(LOCAL_SERVER_WAIT) {
            StopReport::Stopped(status) if status.success() => {}
            StopReport::Stopped(status) => print_error(&format!(
                "gc-client: the local gc-server stopped with {status}; see {}",
                server.log_file().display()
            )),
            StopReport::Exited(status) => print_error(&format!(
                "gc-client: the local gc-server had already exited ({status}); see {}",
                server.log_file().display()
            )),
            StopReport::Killed => print_error(&format!(
                "gc-client: the local gc-server did not stop within {} s of SIGTERM and was \
                 killed; see {}",
                LOCAL_SERVER_WAIT.as_secs(),
                server.log_file().display()
            )),
            StopReport::Unknown(why) => {
                print_error(&format!("gc-client: the local gc-server: {why}"));
            }
        }
    }
    code
}

fn start_local_server(cli: &Cli, log_file: Option<&Path>) -> Result<LocalServer, AppError> {
    if cli.servers()?.len() > 1 {
        return Err(AppError::Config(format!(
            "--with-server starts one local server, on one address: give one, not the list {}",
            cli.server
        )));
    }
    let binary = local_server::sibling_binary()?;
    let log_dir = log_file
        .and_then(Path::parent)
        .map(Path::to_path_buf)
        .or_else(|| {
            default_log_path(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
                .and_then(|p| p.parent().map(Path::to_path_buf))
        })
        .unwrap_or_default();
    let options = LocalServerOptions {
        binary,
        data_dir: cli
            .server_data_dir
            .clone()
            .unwrap_or_else(|| PathBuf::from("gc-data")),
        log_file: log_dir.join("gc-server.log"),
        bind: Some(bind_for(&cli.server)?),
        ports: ServerPorts {
            connect: cli.server_port_connect,
            auth: cli.server_port_auth,
            send: cli.server_port_send,
        },
        ready_timeout: LOCAL_SERVER_WAIT,
        tls: cli.tls == TlsChoice::Required,
    };
    tracing::info!(
        "starting {} (data {}, log {})",
        options.binary.display(),
        options.data_dir.display(),
        options.log_file.display()
    );
    LocalServer::start(&options)
}

/// The one address the local server listens on: SERVER's (a name is resolved, IPv4 first), so
/// `--with-server` never opens a server with open registration on every interface.
fn bind_for(server: &str) -> Result<IpAddr, AppError> {
    if let Ok(ip) = server.parse::<IpAddr>() {
        return Ok(ip);
    }
    use std::net::ToSocketAddrs as _;
    let addrs: Vec<IpAddr> = (server, 0)
        .to_socket_addrs()
        .map_err(|e| AppError::Config(format!("cannot resolve {server:?} for --with-server: {e}")))?
        .map(|a| a.ip())
        .collect();
    addrs
        .iter()
        .find(|ip| ip.is_ipv4())
        .or_else(|| addrs.first())
        .copied()
        .ok_or_else(|| {
            AppError::Config(format!(
                "{server:?} resolves to no address for --with-server"
            ))
        })
}

fn run_headless(cli: &Cli, trust: ServerTrust) -> u8 {
    let config = cli.password().and_then(|pw| {
        let mut config = cli.client_config(pw)?;
        config.tls = trust.settle_headless(&config)?;
        Ok(config)
    });
    let config = match config {
        Ok(config) => config,
        Err(e) => return headless_exit(&Err(e)),
    };
    let options = match cli.headless_options() {
        Ok(options) => options,
        Err(e) => return headless_exit(&Err(e)),
    };
    let stdout = io::stdout();
    let mut out = stdout.lock();
    let mut status = io::stderr();
    let result = headless::run(
        config,
        BufReader::new(io::stdin()),
        &mut out,
        &mut status,
        options,
    );
    let _ = out.flush();
    drop(out);
    headless_exit(&result)
}

fn run_tui(cli: &Cli, trust: ServerTrust) -> u8 {
    let settings = cli.config.clone().or_else(|| {
        default_settings_path(
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("HOME"),
        )
        .inspect(|path| tighten_default_place(path))
    });
    // A mistake in the file stops the start with what is wrong and where, rather than a
    // screen that quietly does not do what the file says.
    let loaded = match settings.as_deref().map(Settings::load).transpose() {
        Ok(loaded) => loaded.unwrap_or_default(),
        Err(e) => return error_exit(&e),
    };
    let password = match cli.given_password() {
        Ok(password) => password,
        Err(e) => return error_exit(&e),
    };
    // A list is shown as given until the client is on one of its instances (then `on host2
    // (2/3)`, see `ui.rs`).
    let server_label =
        if cli.server_port_connect == DEFAULT_CONNECT_PORT || cli.server.contains(',') {
            cli.server.clone()
        } else if cli.server.contains(':') {
            format!("[{}]:{}", cli.server, cli.server_port_connect)
        } else {
            format!("{}:{}", cli.server, cli.server_port_connect)
        };
    let options = TuiOptions {
        server_label,
        mouse: loaded.mouse_on(cli.no_mouse),
        hyperlinks: loaded.hyperlinks_on(cli.no_hyperlinks),
        look: loaded.look(),
        rules: loaded.rules(),
        ignore: loaded.ignore.clone(),
        logs: if loaded.log_conversations == Some(true) {
            match default_logs_dir(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME")) {
                Some(dir) => Some(dir),
                None => {
                    return error_exit(&AppError::Config(
                        "log-conversations: no place for the logs: neither XDG_STATE_HOME nor \
                         HOME is set"
                            .into(),
                    ));
                }
            }
        } else {
            None
        },
        user: cli.user.clone().or(loaded.user),
        password,
        register: cli.register,
        settings,
        drain: QUIT_DRAIN,
        trust,
    };
    // With rooms (GC/3) each room and direct conversation gets its own view; an older server is
    // served #general only, as before rooms, and the client says so once.
    let config_for =
        |user: &str, password, register| cli.client_config_for(user, password, register);
    match tui::run(options, &config_for) {
        Ok(outcome) => {
            if !outcome.unsent.is_empty() {
                let mut text = format!(
                    "gc-client: {} message(s) were not acknowledged by the server and may not \
                     have been sent:",
                    outcome.unsent.len()
                );
                for message in &outcome.unsent {
                    text.push_str("\n  ");
                    text.push_str(&crate::display::sanitize(&message.text));
                }
                text.push_str(
                    "\nthey are kept beside the cache and sent on the next start, once (with \
                     --no-cache they are lost)",
                );
                print_error(&text);
                return EXIT_UNSENT;
            }
            match outcome.signal {
                Some(signal) => 128 + u8::try_from(signal).unwrap_or(0),
                None => 0,
            }
        }
        Err(e) => error_exit(&e),
    }
}

/// `--list-plugins`: what the mods directory holds, one line per candidate file.
fn list_plugins(cli: &Cli) -> u8 {
    let dir = match cli.mods_dir() {
        Ok(Some(dir)) => dir,
        Ok(None) => {
            print_error("gc-client: no mods directory: HOME is not set; give --mods-dir DIR");
            return EXIT_USAGE;
        }
        Err(e) => return error_exit(&e),
    };
    let listing = if cli.load {
        gc_plugin::Plugins::listing_loading(&dir, gc_plugin::Side::Client)
    } else {
        gc_plugin::Plugins::listing(&dir, gc_plugin::Side::Client)
    };
    let lines = match listing {
        Ok(lines) => lines,
        Err(e) => {
            print_error(&format!("gc-client: error: {e}"));
            return EXIT_ERROR;
        }
    };
    let mut out = io::stdout().lock();
    for line in lines {
        // A library's descriptor names it and says what it does: its words, sanitised.
        let line = gc_protocol::sanitize::sanitize(&line);
        if writeln!(out, "{line}").is_err() {
            return EXIT_ERROR;
        }
    }
    0
}

/// Reports `e` on standard error and picks the exit code (2 for usage, 1 otherwise).
pub fn error_exit(e: &AppError) -> u8 {
    print_error(&exit::error_line(e));
    exit::for_error(e)
}

/// Reports a headless outcome on standard error and picks the exit code.
fn headless_exit(result: &Result<headless::HeadlessOutcome, AppError>) -> u8 {
    match result {
        Ok(outcome) if outcome.unsent > 0 => print_error(&format!(
            "gc-client: {} message(s) were not acknowledged by the server before the drain \
             timeout; they are kept beside the cache and sent on the next run, once (with \
             --no-cache they are lost)",
            outcome.unsent
        )),
        Ok(outcome) if outcome.refused > 0 => print_error(&format!(
            "gc-client: the server refused {} message(s) (the reasons are above); they were not \
             sent",
            outcome.refused
        )),
        Ok(_) => {}
        Err(e) => print_error(&exit::error_line(e)),
    }
    exit::for_headless(result)
}

/// Writes a line on standard error; a closed or vanished terminal is no reason to panic.
fn print_error(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_local_server_listens_on_the_servers_address_only() {
        assert_eq!(bind_for("127.0.0.1").unwrap(), IpAddr::from([127, 0, 0, 1]));
        assert_eq!(bind_for("::1").unwrap(), "::1".parse::<IpAddr>().unwrap());
        // A name: what it resolves to, never 0.0.0.0.
        // (Resolved from /etc/hosts: no lookup leaves the machine.)
        assert!(bind_for("localhost").unwrap().is_loopback());
    }
}
