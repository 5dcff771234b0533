//! The `gc-client` binary: parse the command line, set up logging, run headless mode, map the
//! result to an exit code.

use std::io::{self, BufReader, Write as _};
use std::process::ExitCode;

use clap::Parser;
use gc_client::ClientError;
use gc_client::cli::Cli;
use gc_client::headless::{self, EXIT_USAGE};
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if !cli.headless {
        print_error(
            "gc-client: the terminal UI is not available yet; run with --headless (see --help)",
        );
        return ExitCode::from(EXIT_USAGE);
    }
    if let Err(e) = init_logging(&cli) {
        return fail(&Err(e));
    }
    let config = match cli.password().and_then(|pw| cli.client_config(pw)) {
        Ok(config) => config,
        Err(e) => return fail(&Err(e)),
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
    fail(&result)
}

fn init_logging(cli: &Cli) -> Result<(), ClientError> {
    let default_level = if cli.log_file.is_some() {
        "info"
    } else {
        "error"
    };
    let level = cli.log_level.as_deref().unwrap_or(default_level);
    let filter = EnvFilter::try_new(level)
        .map_err(|e| ClientError::Config(format!("bad log level `{level}`: {e}")))?;
    let builder = tracing_subscriber::fmt().with_env_filter(filter);
    match &cli.log_file {
        Some(path) => {
            let file = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path)
                .map_err(|source| ClientError::Io {
                    what: "open the log file",
                    path: path.clone(),
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

/// Reports the outcome on standard error and picks the exit code.
fn fail(result: &Result<headless::HeadlessOutcome, ClientError>) -> ExitCode {
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

fn print_error(line: &str) {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{line}");
    }
}
