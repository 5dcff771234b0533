//! The `gc-client` binary: parse the command line, set up logging, run the client
//! (`gc_client::run::run`), exit with its code.

use std::io::{self, IsTerminal};
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use clap::Parser;
use gc_client::AppError;
use gc_client::cli::Cli;
use gc_client::settings::{default_log_path, tighten_default_place};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let log_file = match log_file(&cli) {
        Ok(path) => path,
        Err(e) => return ExitCode::from(gc_client::run::error_exit(&e)),
    };
    match init_logging(&cli, log_file.as_deref()) {
        // Only now can the log say that its file was open to others.
        Ok(loose) => {
            if let Some(warning) = loose {
                tracing::warn!("{warning}");
            }
            if cli.log_file.is_none()
                && let Some(path) = &log_file
            {
                tighten_default_place(path);
            }
        }
        Err(e) => return ExitCode::from(gc_client::run::error_exit(&e)),
    }
    ExitCode::from(gc_client::run::run(&cli, log_file.as_deref()))
}

/// Where logs go: `--log-file`; the terminal UI's default file; or (headless) standard error.
fn log_file(cli: &Cli) -> Result<Option<PathBuf>, AppError> {
    if let Some(path) = &cli.log_file {
        return Ok(Some(path.clone()));
    }
    if cli.headless {
        return Ok(None);
    }
    let path = default_log_path(std::env::var_os("XDG_STATE_HOME"), std::env::var_os("HOME"))
        .ok_or_else(|| {
            AppError::Config(
                "no place for the log file: neither XDG_STATE_HOME nor HOME is set; give \
                 --log-file FILE"
                    .into(),
            )
        })?;
    if let Some(dir) = path.parent() {
        gc_store::private::create_dirs(dir).map_err(|source| AppError::Io {
            what: "create the log directory",
            path: dir.to_owned(),
            source,
        })?;
    }
    Ok(Some(path))
}

/// Sets up logging; returns the warning to log once it is up, if the log file was open to
/// others.
fn init_logging(cli: &Cli, file: Option<&Path>) -> Result<Option<String>, AppError> {
    let default_level = if file.is_some() { "info" } else { "error" };
    let level = cli.log_level.as_deref().unwrap_or(default_level);
    let filter = EnvFilter::try_new(level)
        .map_err(|e| AppError::Config(format!("bad log level `{level}`: {e}")))?;
    // A failed log write (e.g. a closed stderr) must never panic a client thread.
    // Peers' text is escaped in every field: nobody can forge a log line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(gc_net::logfmt::escaped_fields())
        .log_internal_errors(false);
    match file {
        Some(path) => {
            let file = gc_store::private::options()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| AppError::Io {
                    what: "open the log file",
                    path: path.to_owned(),
                    source,
                })?;
            let loose = gc_store::private::tighten_quietly(&file, path);
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
            Ok(loose)
        }
        // Never standard output: it carries the messages.
        None => {
            builder
                .with_ansi(io::stderr().is_terminal())
                .with_writer(io::stderr)
                .init();
            Ok(None)
        }
    }
}
