//! The `gc-server` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::io::IsTerminal;
use std::process::ExitCode;

use clap::Parser;
use gc_server::cli::{Cli, LogSettings};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, log) = match cli.resolve() {
        Ok(resolved) => resolved,
        Err(e) => return fail(&e),
    };
    if let Err(e) = init_logging(&log) {
        return fail(&e);
    }
    match gc_server::run(cli.command.as_ref(), config) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => fail(&e),
    }
}

fn init_logging(log: &LogSettings) -> Result<(), gc_server::ServerError> {
    let filter = EnvFilter::try_new(&log.level).map_err(|e| {
        gc_server::ServerError::Logging(format!("bad log level `{}`: {e}", log.level))
    })?;
    // A failed log write must never panic a server thread (e.g. stderr closed by a supervisor).
    // Peers' text is escaped in every field: nobody can forge a log line.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .fmt_fields(gc_net::logfmt::escaped_fields())
        .log_internal_errors(false);
    match &log.file {
        Some(path) => {
            // Logs name users and addresses: the owner's alone, like the data dir.
            let file = gc_store::private::options()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| gc_server::ServerError::Io {
                    what: "open the log file",
                    path: path.clone(),
                    source,
                })?;
            let loose = gc_store::private::tighten_quietly(&file, path);
            builder
                .with_ansi(false)
                .with_writer(std::sync::Mutex::new(file))
                .init();
            if let Some(warning) = loose {
                tracing::warn!("{warning}");
            }
        }
        None => builder
            .with_ansi(std::io::stderr().is_terminal())
            .with_writer(std::io::stderr)
            .init(),
    }
    Ok(())
}

/// Prints the error and its causes, one per line, and picks the exit code.
fn fail(e: &gc_server::ServerError) -> ExitCode {
    let mut text = format!("gc-server: error: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(cause) = source {
        text.push_str(&format!("\n  caused by: {cause}"));
        source = cause.source();
    }
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{text}");
    }
    ExitCode::from(u8::try_from(e.exit_code()).unwrap_or(1))
}
