//! The `gc-bench` binary: parse the command line, run the workload, map errors to exit codes.

use std::io::Write as _;
use std::process::ExitCode;

use clap::Parser;
use gc_bench::cli::Cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    let stdout = std::io::stdout();
    let mut out = stdout.lock();
    let result = gc_bench::run(&cli, &mut out);
    let _ = out.flush();
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            let mut text = format!("gc-bench: error: {e}");
            let mut source = std::error::Error::source(&e);
            while let Some(cause) = source {
                text.push_str(&format!("\n  caused by: {cause}"));
                source = cause.source();
            }
            // The one place the bench talks to the terminal directly: the report goes through
            // a writer, errors go to standard error.
            #[allow(clippy::print_stderr)]
            {
                eprintln!("{text}");
            }
            ExitCode::FAILURE
        }
    }
}
