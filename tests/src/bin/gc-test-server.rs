//! `gc-test-server DATA_DIR [GC-SERVER OPTIONS] [SUBCOMMAND]`: a gc-server with the end-to-end
//! tests' configuration (`gc_tests::child_config`), for tests that need a server in a process of
//! its own (SIGKILL, real signals, a service manager's socket). It runs until SIGINT or SIGTERM,
//! through the same `run_until_signal` as `gc-server`, and prints its listening line on standard
//! output once bound.
//!
//! Options after DATA_DIR are gc-server's own. Only `--metrics-addr` and those about logs
//! (`--log-file`, `--log-format`, `--log-level`, and `--config` for the level SIGHUP reads again)
//! change anything: given any, logging is set up by `gc_server::logging`, as gc-server does it. A
//! subcommand (`user passwd NAME --password-stdin`) runs as gc-server would run it on DATA_DIR.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser as _;
use gc_server::cli::{Cli, Command};

fn main() -> ExitCode {
    let mut args = std::env::args_os().skip(1);
    let Some(dir) = args.next().map(PathBuf::from) else {
        return usage("usage: gc-test-server DATA_DIR [GC-SERVER OPTIONS] [SUBCOMMAND]");
    };
    let rest: Vec<_> = args.collect();
    let cli = match Cli::try_parse_from(std::iter::once("gc-server".into()).chain(rest.clone())) {
        Ok(cli) => cli,
        Err(e) => return usage(&e.to_string()),
    };
    if rest.is_empty() {
        let _ = tracing_subscriber::fmt()
            .with_writer(std::io::stderr)
            .with_ansi(false)
            .try_init();
    } else {
        let log = match cli.resolve() {
            Ok((_, log)) => log,
            Err(e) => return usage(&e.to_string()),
        };
        if let Err(e) = gc_server::logging::init(&log) {
            return usage(&e.to_string());
        }
    }
    let mut config = gc_tests::child_config(&dir);
    // The metrics endpoint, for the tests of a taken port and of a scrape in a real process.
    config.metrics_addr = cli.run.metrics_addr;
    let result = match &cli.command {
        None | Some(Command::Run(_)) => gc_server::run_until_signal(config).map(|()| 0),
        Some(command) => gc_server::run(Some(command), config),
    };
    match result {
        Ok(code) => ExitCode::from(u8::try_from(code).unwrap_or(1)),
        Err(e) => {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("gc-test-server: {e}");
            }
            ExitCode::FAILURE
        }
    }
}

fn usage(text: &str) -> ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("{text}");
    }
    ExitCode::from(2)
}
