//! gc-packaging: what an installation needs beside the two programs, made from the source so it
//! never drifts from them.
//!
//! [`render`] writes, into one directory (`target/release/dist` by default, see the binary):
//!
//! - `man/man1/`: a manual page for `gc-server` and each of its subcommands
//!   (`gc-server-user-add.1`, …) and for `gc-client`, rendered from the same clap definitions
//!   `--help` prints ([`gc_server::cli::Cli`], [`gc_client::cli::Cli`]);
//! - `completions/bash/`, `completions/zsh/`, `completions/fish/`: completions for both programs,
//!   under the names each shell looks for (`gc-server`, `_gc-server`, `gc-server.fish`);
//! - `mods/`: the C example plugin, `libshout.so` (a client plugin: `/shout text`), which cargo
//!   builds inside its own build directory.
//!
//! `packaging/install.sh` runs the binary and installs the result with the programs and the
//! systemd unit. The programs themselves stay as they are: nothing here is linked into them.

use std::fs::{self, File};
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use clap::CommandFactory;
use clap_complete::Shell;

/// What can go wrong while rendering.
#[derive(Debug, thiserror::Error)]
pub enum PackagingError {
    /// A file or directory could not be written or copied.
    #[error("cannot {what} {path}")]
    Io {
        /// What was being done.
        what: &'static str,
        /// The file or directory.
        path: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
}

/// The programs, by the names they are installed under.
pub const PROGRAMS: [&str; 2] = ["gc-server", "gc-client"];

/// The shells completions are made for, and the file name each looks for.
const SHELLS: [(Shell, &str); 3] = [
    (Shell::Bash, "bash"),
    (Shell::Zsh, "zsh"),
    (Shell::Fish, "fish"),
];

/// The manual the pages belong to (their footer).
const MANUAL: &str = "General Communications";

/// Every file [`render`] wrote, by kind, with paths under its output directory.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Rendered {
    /// Manual pages (`man/man1/*.1`).
    pub man_pages: Vec<PathBuf>,
    /// Completion scripts (`completions/<shell>/…`).
    pub completions: Vec<PathBuf>,
    /// Example plugins (`mods/*.so`).
    pub plugins: Vec<PathBuf>,
}

impl Rendered {
    /// Every file, in the order written.
    pub fn all(&self) -> impl Iterator<Item = &PathBuf> {
        self.man_pages
            .iter()
            .chain(&self.completions)
            .chain(&self.plugins)
    }
}

/// The clap definition of one of [`PROGRAMS`].
fn command(program: &str) -> clap::Command {
    match program {
        "gc-server" => gc_server::cli::Cli::command(),
        _ => gc_client::cli::Cli::command(),
    }
}

/// Writes the manual pages, completions and the C example plugin under `out` (created if
/// missing; files already there are replaced).
pub fn render(out: &Path) -> Result<Rendered, PackagingError> {
    let mut rendered = Rendered::default();
    let man_dir = out.join("man").join("man1");
    create_dir(&man_dir)?;
    for program in PROGRAMS {
        let mut cmd = command(program).disable_help_subcommand(true);
        cmd.build();
        man_pages(&cmd, &man_dir, &mut rendered.man_pages)?;
    }
    for (shell, dir) in SHELLS {
        let dir = out.join("completions").join(dir);
        create_dir(&dir)?;
        for program in PROGRAMS {
            let path = dir.join(completion_file(shell, program));
            let mut cmd = command(program);
            write_file(&path, |w| {
                clap_complete::generate(shell, &mut cmd, program, w);
                Ok(())
            })?;
            rendered.completions.push(path);
        }
    }
    let mods = out.join("mods");
    create_dir(&mods)?;
    let shout = Path::new(gc_mod_shout::LIBRARY);
    let target = mods.join(shout.file_name().unwrap_or(shout.as_os_str()));
    fs::copy(shout, &target).map_err(|source| PackagingError::Io {
        what: "copy the C example plugin to",
        path: target.clone(),
        source,
    })?;
    rendered.plugins.push(target);
    Ok(rendered)
}

/// The completion file's name for `program` where `shell` looks for it.
pub fn completion_file(shell: Shell, program: &str) -> String {
    match shell {
        Shell::Zsh => format!("_{program}"),
        Shell::Fish => format!("{program}.fish"),
        _ => program.to_owned(),
    }
}

/// The page of `cmd` (a built command) and of each of its subcommands, recursively.
fn man_pages(
    cmd: &clap::Command,
    dir: &Path,
    written: &mut Vec<PathBuf>,
) -> Result<(), PackagingError> {
    let man = clap_mangen::Man::new(cmd.clone())
        .manual(MANUAL)
        .source(format!("gc {}", env!("CARGO_PKG_VERSION")));
    let path = dir.join(man.get_filename());
    write_file(&path, |w| man.render(w))?;
    written.push(path);
    for sub in cmd.get_subcommands().filter(|s| !s.is_hide_set()) {
        man_pages(sub, dir, written)?;
    }
    Ok(())
}

fn create_dir(dir: &Path) -> Result<(), PackagingError> {
    fs::create_dir_all(dir).map_err(|source| PackagingError::Io {
        what: "create the directory",
        path: dir.to_owned(),
        source,
    })
}

/// Writes a file through `fill`, buffered, and reports the path with any failure.
fn write_file(
    path: &Path,
    fill: impl FnOnce(&mut dyn Write) -> io::Result<()>,
) -> Result<(), PackagingError> {
    let wrap = |source| PackagingError::Io {
        what: "write",
        path: path.to_owned(),
        source,
    };
    let mut w = BufWriter::new(File::create(path).map_err(wrap)?);
    fill(&mut w).map_err(wrap)?;
    w.flush().map_err(wrap)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read(path: &Path) -> String {
        fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
    }

    #[test]
    fn renders_pages_completions_and_the_c_plugin() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("dist");
        let rendered = render(&out).unwrap();
        let man = out.join("man/man1");

        // A page per program and per subcommand, nested ones too.
        for page in [
            "gc-server.1",
            "gc-server-run.1",
            "gc-server-user.1",
            "gc-server-user-add.1",
            "gc-server-user-passwd.1",
            "gc-server-db.1",
            "gc-server-db-export.1",
            "gc-server-room-add.1",
            "gc-server-plugins-list.1",
            "gc-server-tls-fingerprint.1",
            "gc-client.1",
        ] {
            assert!(
                rendered.man_pages.contains(&man.join(page)),
                "{page} missing from {:?}",
                rendered.man_pages
            );
        }
        assert!(!man.join("gc-server-help.1").exists(), "no page for `help`");

        let server = read(&man.join("gc-server.1"));
        assert!(
            server.starts_with(".ie \\n(.g") || server.contains(".TH"),
            "roff"
        );
        for key in [
            ".TH gc-server 1",
            "General Communications",
            "\\-\\-data\\-dir",
            "\\-\\-log\\-format",
            "\\-\\-log\\-file",
            "\\-\\-max\\-clients",
            "\\-\\-mods\\-dir",
            "GC_STORE",
            "gc\\-server\\-user(1)",
            "gc\\-server\\-db(1)",
            "gc\\-server\\-plugins(1)",
        ] {
            assert!(server.contains(key), "gc-server.1 lacks {key}:\n{server}");
        }
        let list = read(&man.join("gc-server-plugins-list.1"));
        assert!(list.contains("\\-\\-mods\\-dir"), "{list}");
        let add = read(&man.join("gc-server-user-add.1"));
        assert!(add.contains("\\-\\-password\\-stdin"), "{add}");
        let client = read(&man.join("gc-client.1"));
        for key in ["\\-\\-headless", "\\-\\-list\\-plugins", "\\-\\-mods\\-dir"] {
            assert!(client.contains(key), "gc-client.1 lacks {key}");
        }

        // Completions know the subcommands and the options, in each shell's file.
        for (shell, dir) in SHELLS {
            let server = read(
                &out.join("completions")
                    .join(dir)
                    .join(completion_file(shell, "gc-server")),
            );
            for key in ["plugins", "passwd", "fingerprint", "log-format", "mods-dir"] {
                assert!(server.contains(key), "{dir} gc-server lacks {key}");
            }
            let client = read(
                &out.join("completions")
                    .join(dir)
                    .join(completion_file(shell, "gc-client")),
            );
            assert!(client.contains("headless"), "{dir} gc-client");
        }
        assert!(read(&out.join("completions/zsh/_gc-server")).starts_with("#compdef gc-server"));

        // The C example plugin, as the build made it: a shared library.
        let shout = out.join("mods").join(format!(
            "{}shout.{}",
            std::env::consts::DLL_PREFIX,
            std::env::consts::DLL_EXTENSION
        ));
        assert_eq!(rendered.plugins, vec![shout.clone()]);
        let bytes = fs::read(&shout).unwrap();
        assert_eq!(bytes.get(..4), Some(&b"\x7fELF"[..]));

        // Rendering again replaces the files in place.
        let again = render(&out).unwrap();
        assert_eq!(again, rendered);
        assert!(rendered.all().all(|p| p.starts_with(&out) && p.is_file()));
    }
}
