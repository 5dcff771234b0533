//! The `gc-server` binary: parse the command line, set up logging, run, map errors to exit codes.

use std::process::ExitCode;

use clap::Parser;
use gc_server::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let (config, log) = match cli.resolve() {
        Ok(resolved) => resolved,
        Err(e) => return fail(&e),
    };
    if let Err(e) = gc_server::logging::init(&log) {
        return fail(&e);
    }
    match gc_server::run(cli.command.as_ref(), config) {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => fail(&e),
    }
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
