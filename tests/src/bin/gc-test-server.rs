//! `gc-test-server DATA_DIR`: a gc-server with the end-to-end tests' configuration
//! (`gc_tests::child_config`), for tests that need a server in a process of its own (SIGKILL, real
//! signals). It runs until SIGINT or SIGTERM, through the same `run_until_signal` as `gc-server`,
//! and prints its listening line on standard output once bound.

use std::path::PathBuf;
use std::process::ExitCode;

fn main() -> ExitCode {
    let Some(dir) = std::env::args_os().nth(1).map(PathBuf::from) else {
        #[allow(clippy::print_stderr)]
        {
            eprintln!("usage: gc-test-server DATA_DIR");
        }
        return ExitCode::from(2);
    };
    let _ = tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_ansi(false)
        .try_init();
    match gc_server::run_until_signal(gc_tests::child_config(&dir)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("gc-test-server: {e}");
            }
            ExitCode::FAILURE
        }
    }
}
