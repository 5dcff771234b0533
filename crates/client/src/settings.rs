//! The terminal UI's settings file and its other default places (XDG base directories):
//!
//! - `$XDG_CONFIG_HOME/gc-client/config.toml` (or `~/.config/…`): remembers the last username,
//!   and holds the user's choices: `mouse = false`, `hyperlinks = false`, the notification rules
//!   (`bell`, `title`, `notify-command`, `notify-on`), `timestamp-format` and `theme`. Never a
//!   password: the only way to keep one on disk is a file the user made and passes with
//!   `--password-file`.
//! - `$XDG_STATE_HOME/gc-client/gc-client.log` (or `~/.local/state/…`): the log while the
//!   terminal UI owns the screen; and with `log-conversations = true`, the conversation logs in
//!   `logs/` beside it ([`crate::tui::convlog`]).
//!
//! Files gc-client writes are 0600 and the directories it makes 0700 ([`gc_store::private`]);
//! [`tighten_default_place`] fixes the `gc-client` directories an older version left open.
//!
//! The settings' keys, their checks and the file's text are the `gc-client-settings` crate's
//! (re-exported here), so the fuzz targets reach them without the terminal; reading and writing
//! the file, and what the terminal UI makes of it, are [`SettingsFile`]'s.

use std::ffi::OsString;
use std::io::Write as _;
use std::path::{Path, PathBuf};

pub use gc_client_settings::{
    Bell, FILE_HEADER, NotifyCommand, NotifyOn, Settings, SettingsError, ThemeName,
};

use crate::error::AppError;
use crate::tui::look::{Look, Theme};
use crate::tui::notify::Rules;

/// `$XDG_CONFIG_HOME/gc-client/config.toml`, or `$HOME/.config/gc-client/config.toml`.
pub fn default_settings_path(
    xdg_config_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    xdg_base(xdg_config_home, home, &[".config"]).map(|d| d.join("gc-client").join("config.toml"))
}

/// `$XDG_STATE_HOME/gc-client/gc-client.log`, or `$HOME/.local/state/gc-client/gc-client.log`.
pub fn default_log_path(
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    xdg_base(xdg_state_home, home, &[".local", "state"])
        .map(|d| d.join("gc-client").join("gc-client.log"))
}

/// `$XDG_STATE_HOME/gc-client/logs`, or `$HOME/.local/state/gc-client/logs`: where conversation
/// logs go.
pub fn default_logs_dir(
    xdg_state_home: Option<OsString>,
    home: Option<OsString>,
) -> Option<PathBuf> {
    xdg_base(xdg_state_home, home, &[".local", "state"]).map(|d| d.join("gc-client").join("logs"))
}

/// Tightens the directories of `path`, a default place under a `gc-client` directory (log,
/// settings, cache, known servers), from that `gc-client` directory down, where an older version
/// left them open to others (with a warning each). A path the user gave is never passed here:
/// its directories are the user's business.
pub fn tighten_default_place(path: &Path) {
    for dir in path.ancestors().skip(1) {
        gc_store::private::tighten_path(dir);
        if dir.file_name().is_some_and(|n| n == "gc-client") {
            return;
        }
    }
}

/// An XDG base directory: the variable if it is an absolute path (the spec ignores relative
/// ones), else `$HOME/<fallback>`.
fn xdg_base(var: Option<OsString>, home: Option<OsString>, fallback: &[&str]) -> Option<PathBuf> {
    match (var, home) {
        (Some(v), _) if Path::new(&v).is_absolute() => Some(PathBuf::from(v)),
        (_, Some(h)) if !h.is_empty() => {
            let mut p = PathBuf::from(h);
            p.extend(fallback);
            Some(p)
        }
        _ => None,
    }
}

/// What gc-client does with [`Settings`] (the keys, their checks and the text are the
/// `gc-client-settings` crate's): reads and writes the file, and makes the terminal UI's look
/// and notification rules of them.
pub trait SettingsFile: Sized {
    /// Reads the file; a missing file is empty settings. A file others may read is tightened.
    fn load(path: &Path) -> Result<Self, AppError>;
    /// Writes the file (0600, creating its directory, 0700), replacing it atomically.
    fn save(&self, path: &Path) -> Result<(), AppError>;
    /// Keeps `ignored` as the file's `ignore` list (lower case), keeping every other choice. A
    /// file that cannot be read is left alone (rewriting it would lose what the user wrote).
    fn save_ignored(path: &Path, ignored: &[String]) -> Result<(), AppError>;
    /// Remembers `user` in the file at `path` (a failure is logged: it only costs typing). A file
    /// that cannot be read is left alone: it holds the user's choices, and rewriting it would
    /// lose them.
    fn remember_user(path: &Path, user: &str);
    /// How the message pane looks: the time column and the colours.
    fn look(&self) -> Look;
    /// The notification rules: the bell, the title, and the command.
    fn rules(&self) -> Rules;
}

impl SettingsFile for Settings {
    fn load(path: &Path) -> Result<Self, AppError> {
        let text = match std::fs::read_to_string(path) {
            Ok(text) => {
                gc_store::private::tighten_path(path);
                text
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Self::default()),
            Err(source) => {
                return Err(AppError::Io {
                    what: "read the settings file",
                    path: path.to_owned(),
                    source,
                });
            }
        };
        Self::parse(&text).map_err(|e| {
            AppError::Config(format!("{}: {e}; fix or delete the file", path.display()))
        })
    }

    fn save(&self, path: &Path) -> Result<(), AppError> {
        let io = |what: &'static str| {
            let path = path.to_owned();
            move |source| AppError::Io { what, path, source }
        };
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            gc_store::private::create_dirs(dir).map_err(io("create the directory of"))?;
        }
        let text = self
            .to_text()
            .map_err(|e| AppError::Config(e.to_string()))?;
        let mut tmp = path.as_os_str().to_owned();
        tmp.push(".tmp");
        let tmp = PathBuf::from(tmp);
        let mut file = gc_store::private::open(
            &tmp,
            gc_store::private::options()
                .write(true)
                .create(true)
                .truncate(true),
        )
        .map_err(io("create the settings file"))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(io("write the settings file"))?;
        std::fs::rename(&tmp, path).map_err(io("replace the settings file"))
    }

    fn save_ignored(path: &Path, ignored: &[String]) -> Result<(), AppError> {
        let mut settings = Self::load(path)?;
        settings.ignore = ignored.iter().map(|n| n.to_ascii_lowercase()).collect();
        settings.save(path)
    }

    fn remember_user(path: &Path, user: &str) {
        let mut settings = match Self::load(path) {
            Ok(settings) => settings,
            Err(e) => {
                tracing::warn!(
                    "cannot remember the username: {}",
                    gc_client_core::error_chain(&e)
                );
                return;
            }
        };
        if settings.user.as_deref() == Some(user) {
            return;
        }
        settings.user = Some(user.to_owned());
        if let Err(e) = settings.save(path) {
            tracing::warn!(
                "cannot remember the username: {}",
                gc_client_core::error_chain(&e)
            );
        }
    }

    fn look(&self) -> Look {
        Look {
            // Checked at load: a file that got here has a valid format.
            time: self.time_column().unwrap_or_default(),
            theme: Theme::new(self.theme.unwrap_or_default()),
        }
    }

    fn rules(&self) -> Rules {
        Rules {
            bell: self.bell.unwrap_or_default(),
            title: self.title.unwrap_or(true),
            command: self.notify_command.as_ref().map(NotifyCommand::argv),
            command_on: self.notify_on.unwrap_or_default(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_places() {
        assert_eq!(
            default_settings_path(None, Some("/home/a".into())),
            Some(PathBuf::from("/home/a/.config/gc-client/config.toml"))
        );
        assert_eq!(
            default_settings_path(Some("/cfg".into()), Some("/home/a".into())),
            Some(PathBuf::from("/cfg/gc-client/config.toml"))
        );
        assert_eq!(
            default_log_path(Some("relative".into()), Some("/h".into())),
            Some(PathBuf::from("/h/.local/state/gc-client/gc-client.log"))
        );
        assert_eq!(default_log_path(None, None), None);
    }

    #[test]
    fn the_file_is_the_users_alone_and_old_default_places_are_tightened() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        let set = |p: &Path, m: u32| {
            std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
        };
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc-client").join("config.toml");
        Settings::remember_user(&path, "alice");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);

        // As an older version left a cache: `…/gc-client/<server>-<user>/cdatabase.db`.
        let base = dir.path().join("share");
        let server_dir = base.join("gc-client").join("h-alice");
        std::fs::create_dir_all(&server_dir).unwrap();
        for d in [&base, &base.join("gc-client"), &server_dir] {
            set(d, 0o755);
        }
        tighten_default_place(&server_dir.join("cdatabase.db"));
        assert_eq!(mode(&server_dir), 0o700);
        assert_eq!(mode(&base.join("gc-client")), 0o700);
        assert_eq!(mode(&base), 0o755, "above gc-client is not ours");
    }

    #[test]
    fn save_load_and_remember() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("config.toml");
        assert_eq!(Settings::load(&path).unwrap(), Settings::default());
        Settings::remember_user(&path, "alice");
        assert_eq!(
            Settings::load(&path).unwrap().user.as_deref(),
            Some("alice")
        );
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("user = \"alice\""), "{text}");
        std::fs::write(&path, "user = 3\n").unwrap();
        let err = Settings::load(&path).unwrap_err().to_string();
        assert!(err.contains("config.toml"), "{err}");
        // Unknown keys (a newer version's) are ignored.
        std::fs::write(&path, "user = \"bob\"\ncolour-scheme = \"dark\"\n").unwrap();
        assert_eq!(Settings::load(&path).unwrap().user.as_deref(), Some("bob"));
    }

    #[test]
    fn the_ignore_list_is_kept_with_the_other_choices_and_checked() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        std::fs::write(&path, "theme = \"mono\"\nuser = \"alice\"\n").unwrap();
        Settings::save_ignored(&path, &["Bob".into(), "mallory".into()]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("ignore = [\"bob\", \"mallory\"]"), "{text}");
        let again = Settings::load(&path).unwrap();
        assert_eq!(again.ignore, ["bob", "mallory"]);
        assert_eq!(
            (again.user.as_deref(), again.theme),
            (Some("alice"), Some(ThemeName::Mono))
        );
        // Remembering the username keeps it.
        Settings::remember_user(&path, "carol");
        assert_eq!(Settings::load(&path).unwrap().ignore, ["bob", "mallory"]);
        // Emptied: the key goes.
        Settings::save_ignored(&path, &[]).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(!text.contains("ignore ="), "{text}");
        // A name that cannot be one is a mistake in the file, said at load.
        std::fs::write(&path, "ignore = [\"no body\"]\n").unwrap();
        let e = Settings::load(&path).unwrap_err().to_string();
        assert!(e.contains("ignore: `no body` is not a username"), "{e}");
        assert!(Settings::save_ignored(&path, &["bob".into()]).is_err());
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "ignore = [\"no body\"]\n",
            "not rewritten"
        );
    }

    #[test]
    fn mouse_and_hyperlinks_are_on_unless_turned_off() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let unset = Settings::load(&path).unwrap();
        assert!(unset.mouse_on(false) && unset.hyperlinks_on(false));
        assert!(
            !unset.mouse_on(true) && !unset.hyperlinks_on(true),
            "the flags win"
        );

        std::fs::write(&path, "mouse = false\nhyperlinks = false\n").unwrap();
        let off = Settings::load(&path).unwrap();
        assert!(!off.mouse_on(false) && !off.hyperlinks_on(false));
        // Remembering the username keeps the choices; unset ones are not written.
        Settings::remember_user(&path, "alice");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(text.contains("mouse = false"), "{text}");
        let again = Settings::load(&path).unwrap();
        assert_eq!(
            (again.user.as_deref(), again.mouse, again.hyperlinks),
            (Some("alice"), Some(false), Some(false))
        );
        std::fs::write(&path, "user = \"bob\"\n").unwrap();
        Settings::remember_user(&path, "carol");
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            !text.contains("mouse") && !text.contains("hyperlinks"),
            "{text}"
        );

        // A file with a mistake is not rewritten (it would lose what the user wrote).
        std::fs::write(&path, "user = \"bob\"\nmouse = \"no\"\n").unwrap();
        assert!(Settings::load(&path).is_err());
        Settings::remember_user(&path, "dave");
        assert_eq!(
            std::fs::read_to_string(&path).unwrap(),
            "user = \"bob\"\nmouse = \"no\"\n"
        );
    }

    #[test]
    fn notification_time_and_theme_settings_are_read_checked_and_kept() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.toml");
        let unset = Settings::load(&path).unwrap();
        assert_eq!(unset.rules(), Rules::default());
        assert_eq!(unset.look().time.indent(), 6);
        assert_eq!(unset.look().theme, Theme::default());

        std::fs::write(
            &path,
            "bell = \"all\"\ntitle = false\nnotify-command = [\"notify-send\", \"--\", \
             \"{sender} in {room}\", \"{text}\"]\nnotify-on = \"all\"\n\
             timestamp-format = \"%H:%M:%S\"\ntheme = \"mono\"\n",
        )
        .unwrap();
        let set = Settings::load(&path).unwrap();
        let rules = set.rules();
        assert_eq!(
            (rules.bell, rules.title, rules.command_on),
            (Bell::All, false, NotifyOn::All)
        );
        assert_eq!(
            rules.command.unwrap(),
            ["notify-send", "--", "{sender} in {room}", "{text}"]
        );
        assert_eq!(set.look().time.indent(), 9);
        assert_eq!(set.look().theme, Theme::new(ThemeName::Mono));
        // Remembering the username keeps every choice.
        Settings::remember_user(&path, "alice");
        let again = Settings::load(&path).unwrap();
        assert_eq!(
            again,
            Settings {
                user: Some("alice".into()),
                ..set
            }
        );

        // A program alone is a program, not a command line to split.
        std::fs::write(&path, "notify-command = \"notify-send -u critical\"\n").unwrap();
        assert_eq!(
            Settings::load(&path).unwrap().rules().command.unwrap(),
            ["notify-send -u critical"]
        );

        // Mistakes are refused at load, saying where and what (each key's checks are tested in
        // gc-client-settings; here, that loading keeps what they say and adds the file).
        for (text, says) in [
            ("bell = \"loud\"\n", "unknown variant"),
            ("notify-command = []\n", "names no program"),
        ] {
            std::fs::write(&path, text).unwrap();
            let e = Settings::load(&path).unwrap_err().to_string();
            assert!(e.contains(says) && e.contains("config.toml"), "{text}: {e}");
        }
    }
}
