//! `gc-packaging [OUT_DIR]`: renders the manual pages, shell completions and the C example plugin
//! (see the library) into OUT_DIR, by default `dist/` beside this program (`target/release/dist`
//! after `cargo build --release`), and lists what it wrote.

use std::io::Write as _;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;

/// Renders what an installation of gc needs beside the programs: manual pages (man/man1),
/// bash, zsh and fish completions (completions/) and the C example plugin (mods/libshout.so).
/// packaging/install.sh runs it.
#[derive(Debug, Parser)]
#[command(name = "gc-packaging", version)]
struct Args {
    /// Where to write [default: dist/ in this program's directory, e.g. target/release/dist].
    out_dir: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let out = match args.out_dir {
        Some(dir) => dir,
        None => match std::env::current_exe() {
            Ok(exe) => exe.parent().map(|d| d.join("dist")).unwrap_or_default(),
            Err(e) => {
                return fail(&format!(
                    "cannot tell where this program is ({e}): give OUT_DIR"
                ));
            }
        },
    };
    match gc_packaging::render(&out) {
        Ok(rendered) => {
            let mut stdout = std::io::stdout().lock();
            for path in rendered.all() {
                let _ = writeln!(stdout, "{}", path.display());
            }
            ExitCode::SUCCESS
        }
        Err(e) => {
            let mut text = e.to_string();
            if let Some(cause) = std::error::Error::source(&e) {
                text.push_str(&format!(": {cause}"));
            }
            fail(&text)
        }
    }
}

fn fail(text: &str) -> ExitCode {
    #[allow(clippy::print_stderr)]
    {
        eprintln!("gc-packaging: error: {text}");
    }
    ExitCode::FAILURE
}
