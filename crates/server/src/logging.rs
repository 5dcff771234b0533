//! Where the server's logs go, in which shape, and what a SIGHUP changes about them.
//!
//! [`init`] installs the process's one subscriber: text lines (peers' text escaped,
//! `gc_net::logfmt`) or JSON lines, to standard error or appended to a file. [`reload`] is what
//! SIGHUP does: it reopens the log file at its path (after `logrotate` renamed it, the next line
//! goes to a new file there) and reads the log level again from the configuration file, unless
//! `--log-level` fixed it on the command line. Nothing else is reloaded: the format, the log
//! file's path and every other setting take a restart.

use std::fs::File;
use std::io::{self, IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, OnceLock};

use parking_lot::{Mutex, MutexGuard};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::fmt::writer::BoxMakeWriter;
use tracing_subscriber::layer::SubscriberExt as _;
use tracing_subscriber::util::SubscriberInitExt as _;
use tracing_subscriber::{EnvFilter, Registry, reload as filter_reload};

use crate::error::ServerError;

/// The shape of log lines.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LogFormat {
    /// `2026-…Z  INFO gc_server::auth: logged in user=alice …`, for people.
    #[default]
    Text,
    /// One JSON object per line (`gc_net::logfmt::JsonLines`), for log collectors.
    Json,
}

impl LogFormat {
    /// As written in flags and files.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Text => "text",
            Self::Json => "json",
        }
    }
}

/// Parses `text` or `json`.
pub fn parse_log_format(text: &str) -> Result<LogFormat, ServerError> {
    match text {
        "text" => Ok(LogFormat::Text),
        "json" => Ok(LogFormat::Json),
        other => Err(ServerError::Config(format!(
            "log-format must be `text` or `json`, not `{other}`"
        ))),
    }
}

/// Where logs go, how much and in which shape.
#[derive(Debug, Clone, Default)]
pub struct LogSettings {
    /// Level filter (`info`, or any `EnvFilter` directive such as `gc_server::auth=debug`).
    pub level: String,
    /// File to append to (standard error if none).
    pub file: Option<PathBuf>,
    /// Text or JSON lines.
    pub format: LogFormat,
    /// The configuration file to read the level from again on SIGHUP: the `--config` file when
    /// `--log-level` was not given (a flag wins over the file, then as at the start).
    pub level_from: Option<PathBuf>,
}

/// What [`reload`] needs, kept by [`init`].
struct Reloadable {
    file: Option<LogFile>,
    filter: filter_reload::Handle<EnvFilter, Registry>,
    level: Mutex<String>,
    level_from: Option<PathBuf>,
}

static RELOADABLE: OnceLock<Reloadable> = OnceLock::new();

/// Installs the subscriber `settings` describe as the process's global one. Fails on a bad level,
/// a log file that cannot be opened, or a second call.
pub fn init(settings: &LogSettings) -> Result<(), ServerError> {
    let filter = parse_level(&settings.level)?;
    let (filter, handle) = filter_reload::Layer::new(filter);
    let (writer, ansi, file, loose) = match &settings.file {
        Some(path) => {
            let (file, loose) = LogFile::open(path)?;
            (BoxMakeWriter::new(file.clone()), false, Some(file), loose)
        }
        None => (
            BoxMakeWriter::new(io::stderr),
            io::stderr().is_terminal(),
            None,
            None,
        ),
    };
    // A failed log write must never panic a server thread (e.g. stderr closed by a supervisor).
    let layer = tracing_subscriber::fmt::layer()
        .with_writer(writer)
        .with_ansi(ansi && settings.format == LogFormat::Text)
        .log_internal_errors(false);
    let installed = match settings.format {
        // Peers' text is escaped in every field: nobody can forge a log line.
        LogFormat::Text => Registry::default()
            .with(filter)
            .with(layer.fmt_fields(gc_net::logfmt::escaped_fields()))
            .try_init(),
        LogFormat::Json => Registry::default()
            .with(filter)
            .with(layer.event_format(gc_net::logfmt::JsonLines))
            .try_init(),
    };
    installed.map_err(|e| ServerError::Logging(e.to_string()))?;
    let _ = RELOADABLE.set(Reloadable {
        file,
        filter: handle,
        level: Mutex::new(settings.level.clone()),
        level_from: settings.level_from.clone(),
    });
    if let Some(warning) = loose {
        tracing::warn!("{warning}");
    }
    Ok(())
}

/// What SIGHUP does (see the module's description); logs what it did. Safe to call when
/// [`init`] was not (a server started by a test): there is nothing to reload then.
pub fn reload() {
    let Some(r) = RELOADABLE.get() else {
        tracing::info!("SIGHUP: nothing to reload (logging was not set up by the server)");
        return;
    };
    if let Some(file) = &r.file {
        match file.reopen() {
            Ok(loose) => {
                tracing::info!(path = %file.path().display(), "SIGHUP: reopened the log file");
                if let Some(warning) = loose {
                    tracing::warn!("{warning}");
                }
            }
            Err(e) => tracing::warn!(
                path = %file.path().display(),
                "SIGHUP: cannot reopen the log file ({e}); logging on to the file already open"
            ),
        }
    }
    let Some(path) = &r.level_from else {
        return;
    };
    let level = match crate::config::load_file(path) {
        Ok(config) => config.log_level.unwrap_or_else(|| "info".to_owned()),
        Err(e) => {
            tracing::warn!("SIGHUP: the log level stays as it was: {e}");
            return;
        }
    };
    let filter = match parse_level(&level) {
        Ok(filter) => filter,
        Err(e) => {
            tracing::warn!("SIGHUP: the log level stays as it was: {e}");
            return;
        }
    };
    let mut current = r.level.lock();
    if *current == level {
        return;
    }
    match r.filter.reload(filter) {
        Ok(()) => {
            tracing::info!(from = %current, to = %level, "SIGHUP: log level changed");
            *current = level;
        }
        Err(e) => tracing::warn!("SIGHUP: cannot change the log level: {e}"),
    }
}

fn parse_level(level: &str) -> Result<EnvFilter, ServerError> {
    EnvFilter::try_new(level)
        .map_err(|e| ServerError::Logging(format!("bad log level `{level}`: {e}")))
}

/// The log file: appended to, reopened at its path on SIGHUP. Writers take the lock for one
/// event's line, so a reopen never splits a line between the old file and the new.
#[derive(Debug, Clone)]
struct LogFile(Arc<LogFileInner>);

#[derive(Debug)]
struct LogFileInner {
    path: PathBuf,
    file: Mutex<File>,
}

impl LogFile {
    /// Opens `path` for appending; also the warning to log once logging works, if the file was
    /// open to others.
    fn open(path: &Path) -> Result<(Self, Option<String>), ServerError> {
        let (file, loose) = open_log(path).map_err(|source| ServerError::Io {
            what: "open the log file",
            path: path.to_owned(),
            source,
        })?;
        let inner = LogFileInner {
            path: path.to_owned(),
            file: Mutex::new(file),
        };
        Ok((Self(Arc::new(inner)), loose))
    }

    fn path(&self) -> &Path {
        &self.0.path
    }

    /// Opens the path again and writes there from now on; the old file is closed. On failure the
    /// old file stays in use.
    fn reopen(&self) -> io::Result<Option<String>> {
        let (file, loose) = open_log(&self.0.path)?;
        let old = std::mem::replace(&mut *self.0.file.lock(), file);
        drop(old);
        Ok(loose)
    }
}

/// Logs name users and addresses: the owner's alone, like the data dir (a new file is 0600, an
/// older one open to others is tightened, with the warning returned).
fn open_log(path: &Path) -> io::Result<(File, Option<String>)> {
    let file = gc_store::private::options()
        .create(true)
        .append(true)
        .open(path)?;
    let loose = gc_store::private::tighten_quietly(&file, path);
    Ok((file, loose))
}

impl<'a> MakeWriter<'a> for LogFile {
    type Writer = LogFileWriter<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        LogFileWriter(self.0.file.lock())
    }
}

/// One event's hold on the log file.
#[derive(Debug)]
pub struct LogFileWriter<'a>(MutexGuard<'a, File>);

impl Write for LogFileWriter<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_parse_and_name_themselves() {
        for format in [LogFormat::Text, LogFormat::Json] {
            assert_eq!(parse_log_format(format.as_str()).unwrap(), format);
        }
        let err = parse_log_format("xml").unwrap_err().to_string();
        assert!(err.contains("xml") && err.contains("json"), "{err}");
    }

    #[test]
    fn a_reopened_log_file_writes_at_its_path_again() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc-server.log");
        let (log, loose) = LogFile::open(&path).unwrap();
        assert!(loose.is_none());
        log.make_writer().write_all(b"before\n").unwrap();
        let rotated = dir.path().join("gc-server.log.1");
        std::fs::rename(&path, &rotated).unwrap();
        log.make_writer().write_all(b"still old\n").unwrap();
        log.reopen().unwrap();
        log.make_writer().write_all(b"after\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(&rotated).unwrap(),
            "before\nstill old\n"
        );
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "after\n");
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&path).unwrap().permissions().mode();
        assert_eq!(mode & 0o077, 0, "the new file is the owner's: {mode:o}");
    }

    #[test]
    fn a_failed_reopen_keeps_the_old_file() {
        let dir = tempfile::tempdir().unwrap();
        let sub = dir.path().join("logs");
        std::fs::create_dir(&sub).unwrap();
        let path = sub.join("gc-server.log");
        let (log, _) = LogFile::open(&path).unwrap();
        let moved = dir.path().join("moved");
        std::fs::rename(&sub, &moved).unwrap();
        assert!(log.reopen().is_err(), "its directory is gone");
        log.make_writer().write_all(b"kept\n").unwrap();
        assert_eq!(
            std::fs::read_to_string(moved.join("gc-server.log")).unwrap(),
            "kept\n"
        );
    }
}
