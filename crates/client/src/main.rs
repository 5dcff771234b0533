//! The `gc-client` binary: parse the command line, set up logging, optionally start a local
//! gc-server, run the terminal UI (or headless mode), map the result to an exit code.

use std::io::{self, BufReader, Write as _};
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::Duration;

use clap::Parser;
use gc_client::cli::Cli;
use gc_client::config::DEFAULT_CONNECT_PORT;
use gc_client::headless::{self, EXIT_ERROR, EXIT_UNSENT};
use gc_client::local_server::{self, LocalServer, LocalServerOptions, StopReport};
use gc_client::settings::{Settings, default_log_path, default_settings_path};
use gc_client::tui::{self, TuiOptions};
use gc_client::{ClientError, ServerPorts};
use tracing_subscriber::EnvFilter;

/// How long messages still in the outbox may hold up quitting the terminal UI.
const QUIT_DRAIN: Duration = Duration::from_secs(3);
/// How long the local server may take to start, and to stop after SIGTERM.
const LOCAL_SERVER_WAIT: Duration = Duration::from_secs(10);

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_file = match log_file(&cli) {
        Ok(path) => path,
        Err(e) => return error_exit(&e),
    };
    if let Err(e) = init_logging(&cli, log_file.as_deref()) {
        return error_exit(&e);
    }
    if cli.list_plugins {
        return list_plugins(&cli);
    }
    let mut server = None;
    if cli.with_server {
        match start_local_server(&cli, log_file.as_deref()) {
            Ok(s) => server = Some(s),
            Err(e) => return error_exit(&e),
        }
    }
    let code = if cli.headless {
        run_headless(&cli)
    } else {
        run_tui(&cli)
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

/// Where logs go: `--log-file`; the terminal UI's default file; or (headless) standard error.
fn log_file(cli: &Cli) -> Result<Option<PathBuf>, ClientError> {
    if let Some(path) = &cli.log_file {
        return Ok(Some(path.clone()));
    }
    if cli.headless {
        return Ok(None);
    }
    let path = default_log_path(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
        .ok_or_else(|| {
            ClientError::Config(
                "no place for the log file: neither XDG_STATE_HOME nor HOME is set; give \
                 --log-file FILE"
                    .into(),
            )
        })?;
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(|source| ClientError::Io {
            what: "create the log directory",
            path: dir.to_owned(),
            source,
        })?;
    }
    Ok(Some(path))
}

fn init_logging(cli: &Cli, file: Option<&Path>) -> Result<(), ClientError> {
    let default_level = if file.is_some() { "info" } else { "error" };
    let level = cli.log_level.as_deref().unwrap_or(default_level);
    let filter = EnvFilter::try_new(level)
        .map_err(|e| ClientError::Config(format!("bad log level `{level}`: {e}")))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| ClientError::Io {
                    what: "open the log file",
                    path: path.to_owned(),
                    source,
                })?;
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
        }
        // Never standard output: it carries the messages.
        None => builder.with_writer(io::stderr).init(),
    }
    Ok(())
}

fn start_local_server(cli: &Cli, log_file: Option<&Path>) -> Result<LocalServer, ClientError> {
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
        bind: cli.server.parse::<IpAddr>().ok(),
        ports: ServerPorts {
            connect: cli.server_port_connect,
            auth: cli.server_port_auth,
            send: cli.server_port_send,
        },
        ready_timeout: LOCAL_SERVER_WAIT,
    };
    tracing::info!(
        "starting {} (data {}, log {})",
        options.binary.display(),
        options.data_dir.display(),
        options.log_file.display()
    );
    LocalServer::start(&options)
}

fn run_headless(cli: &Cli) -> ExitCode {
    let config = match cli.password().and_then(|pw| cli.client_config(pw)) {
        Ok(config) => config,
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
        cli.headless_options(),
    );
    let _ = out.flush();
    drop(out);
    headless_exit(&result)
}

fn run_tui(cli: &Cli) -> ExitCode {
    let settings = cli.config.clone().or_else(|| {
        default_settings_path(
            std::env::var_os("XDG_CONFIG_HOME"),
            std::env::var_os("HOME"),
        )
    });
    let remembered = settings
        .as_deref()
        .and_then(|path| match Settings::load(path) {
            Ok(s) => s.user,
            Err(e) => {
                tracing::warn!("{}", gc_client::error_chain(&e));
                None
            }
        });
    let password = match cli.given_password() {
        Ok(password) => password,
        Err(e) => return error_exit(&e),
    };
    let server_label = if cli.server_port_connect == DEFAULT_CONNECT_PORT {
        cli.server.clone()
    } else if cli.server.contains(':') {
        format!("[{}]:{}", cli.server, cli.server_port_connect)
    } else {
        format!("{}:{}", cli.server, cli.server_port_connect)
    };
    let options = TuiOptions {
        server_label,
        user: cli.user.clone().or(remembered),
        password,
        register: cli.register,
        settings,
        drain: QUIT_DRAIN,
    };
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
                    text.push_str(&gc_client::display::sanitize(&message.text));
                }
                print_error(&text);
                return ExitCode::from(EXIT_UNSENT);
            }
            match outcome.signal {
                Some(signal) => ExitCode::from(128 + u8::try_from(signal).unwrap_or(0)),
                None => ExitCode::SUCCESS,
            }
        }
        Err(e) => error_exit(&e),
    }
}

/// `--list-plugins`: what the mods directory holds, one line per candidate file.
fn list_plugins(cli: &Cli) -> ExitCode {
    let dir = match cli.mods_dir() {
        Ok(Some(dir)) => dir,
        Ok(None) => {
            print_error("gc-client: no mods directory: HOME is not set; give --mods-dir DIR");
            return ExitCode::from(headless::EXIT_USAGE);
        }
        Err(e) => return error_exit(&e),
    };
    let lines = match gc_plugin::Plugins::listing(&dir) {
        Ok(lines) => lines,
        Err(e) => {
            print_error(&format!("gc-client: error: {e}"));
            return ExitCode::from(EXIT_ERROR);
        }
    };
    let mut out = io::stdout().lock();
    for line in lines {
        if writeln!(out, "{line}").is_err() {
            return ExitCode::from(EXIT_ERROR);
        }
    }
    ExitCode::SUCCESS
}

fn error_exit(e: &ClientError) -> ExitCode {
    print_error(&headless::error_line(e));
    match e {
        ClientError::Config(_) | ClientError::NoPassword(_) => ExitCode::from(headless::EXIT_USAGE),
        _ => ExitCode::from(EXIT_ERROR),
    }
}

/// Reports a headless outcome on standard error and picks the exit code.
fn headless_exit(result: &Result<headless::HeadlessOutcome, ClientError>) -> ExitCode {
    match result {
        Ok(outcome) if outcome.unsent > 0 => print_error(&format!(
            "gc-client: {} message(s) were not acknowledged by the server before the drain \
             timeout; they were not sent (or not confirmed)",
            outcome.unsent
        )),
        Ok(_) => {}
        Err(e) => print_error(&headless::error_line(e)),
    }
    ExitCode::from(headless::exit_code(result))
}

/// Writes a line on standard error; a closed or vanished terminal is no reason to panic.
fn print_error(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}
