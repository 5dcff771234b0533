//! The terminal UI's settings file (`$XDG_CONFIG_HOME/gc-client/config.toml`): its keys, their
//! checks, and the TOML text read from and written to it. No I/O here: gc-client reads and
//! writes the file (`gc_client::settings`, which re-exports this crate), and the fuzz targets
//! (`fuzz/`) parse file texts without building the client's terminal and TLS dependencies.
//!
//! The file remembers the last username and holds the user's choices: `mouse = false`,
//! `hyperlinks = false`, the notification rules (`bell`, `title`, `notify-command`,
//! `notify-on`), `timestamp-format`, `theme`, `log-conversations` and the `ignore` list. Never a
//! password.

mod time;

use serde::{Deserialize, Serialize};

pub use time::{DEFAULT_TIME_FORMAT, MAX_TIME_WIDTH, TimeColumn, grapheme_width, text_width};

/// What is wrong with a settings file (gc-client adds where the file is).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SettingsError {
    /// The text is not TOML, or a key has a value of the wrong type or an unknown name.
    #[error("{0}")]
    Toml(String),
    /// `timestamp-format` is not a format the time column can use.
    #[error("{0}")]
    TimestampFormat(String),
    /// A name in the `ignore` list cannot be a username.
    #[error("ignore: `{}` is not a username (1 to 32 of A-Z a-z 0-9 _ . -)", .0.escape_debug())]
    NotAUsername(String),
    /// `notify-command` is empty, or its program is blank.
    #[error("notify-command names no program")]
    NoProgram,
    /// The settings could not be written as TOML.
    #[error("cannot write settings: {0}")]
    Write(String),
}

/// The comment the file starts with when gc-client writes it.
pub const FILE_HEADER: &str = "# Written by gc-client: the last username that logged in and the \
                               ignore list (your other settings are kept).\n";

/// What the settings file holds. Every choice is written back only when the user set it.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, rename_all = "kebab-case")]
pub struct Settings {
    /// The last username that logged in: the login form starts with it.
    pub user: Option<String>,
    /// `false`: no mouse reporting, so the terminal keeps the mouse (drag selects, the wheel
    /// scrolls the terminal's own history). Unset means on. Written only when the user set it.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub mouse: Option<bool>,
    /// `false`: URLs are not written as OSC 8 hyperlinks (for a terminal that shows the escape
    /// sequences instead of obeying them). Unset means on.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub hyperlinks: Option<bool>,
    /// When to ring the terminal's bell: `mentions` (a message naming you, or a direct
    /// message; the default), `all` (every message from someone else), `off`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bell: Option<Bell>,
    /// `false`: the terminal's title is left alone. Unset means on (`gc (3) #dev`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<bool>,
    /// A program run for each notification, with the sender, the room and the text as
    /// arguments (see [`NotifyCommand`]); never through a shell. Unset: none.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_command: Option<NotifyCommand>,
    /// Which messages `notify-command` is run for: `mentions` (the default) or `all`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub notify_on: Option<NotifyOn>,
    /// The time column's strftime format (default `%H:%M`; `%H:%M:%S` adds seconds).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp_format: Option<String>,
    /// The colours: `default` (dark backgrounds), `light`, `mono`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub theme: Option<ThemeName>,
    /// `true`: the terminal UI writes each conversation to a plain-text log under
    /// `$XDG_STATE_HOME/gc-client/logs/`. Unset means off.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub log_conversations: Option<bool>,
    /// Whose messages the terminal UI hides (`/ignore`, `/unignore` write it), lower case.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub ignore: Vec<String>,
}

/// `bell`: which messages ring the terminal's bell.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Bell {
    /// A message naming you, or a direct message.
    #[default]
    Mentions,
    /// Every message from someone else.
    All,
    /// Never.
    Off,
}

/// `notify-on`: which messages run `notify-command`.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum NotifyOn {
    /// A message naming you, or a direct message.
    #[default]
    Mentions,
    /// Every message from someone else.
    All,
}

/// `notify-command`: a program (`"notify-send"`), or a program and its arguments
/// (`["notify-send", "--", "{sender} in {room}", "{text}"]`). In the arguments `{sender}`,
/// `{room}` and `{text}` are replaced; when none of them names one, the three are added at the
/// end as separate arguments. Nothing is split or given to a shell.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum NotifyCommand {
    /// The program alone.
    Program(String),
    /// The program and its arguments.
    Argv(Vec<String>),
}

impl NotifyCommand {
    /// The program and its arguments, as given.
    pub fn argv(&self) -> Vec<String> {
        match self {
            Self::Program(p) => vec![p.clone()],
            Self::Argv(v) => v.clone(),
        }
    }
}

/// `theme`: the colour sets.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ThemeName {
    /// For dark backgrounds (the terminal's usual).
    #[default]
    Default,
    /// For light backgrounds: no yellow or pale colours.
    Light,
    /// No colours at all: bold, dim, underline and reverse only.
    Mono,
}

impl Settings {
    /// The settings a file's text holds, checked ([`Settings::check`]). Keys this version does
    /// not know (a newer version's) are ignored.
    pub fn parse(text: &str) -> Result<Self, SettingsError> {
        let settings: Self =
            toml::from_str(text).map_err(|e| SettingsError::Toml(e.message().to_owned()))?;
        settings.check()?;
        Ok(settings)
    }

    /// The file's text for these settings, as gc-client writes it: [`FILE_HEADER`], then the
    /// keys that are set.
    pub fn to_text(&self) -> Result<String, SettingsError> {
        let text = toml::to_string(self).map_err(|e| SettingsError::Write(e.to_string()))?;
        Ok(format!("{FILE_HEADER}{text}"))
    }

    /// What the file says that cannot be used: a timestamp format chrono does not know (or one
    /// that would break the time column), a name in `ignore` that cannot be a username, an empty
    /// notify command.
    pub fn check(&self) -> Result<(), SettingsError> {
        self.time_column()?;
        if let Some(bad) = self
            .ignore
            .iter()
            .find(|n| gc_protocol::Username::new(n.as_str()).is_err())
        {
            return Err(SettingsError::NotAUsername(bad.clone()));
        }
        if let Some(command) = &self.notify_command
            && command.argv().first().is_none_or(|p| p.trim().is_empty())
        {
            return Err(SettingsError::NoProgram);
        }
        Ok(())
    }

    /// The time column `timestamp-format` asks for (`%H:%M` when unset).
    pub fn time_column(&self) -> Result<TimeColumn, SettingsError> {
        match &self.timestamp_format {
            Some(format) => TimeColumn::parse(format),
            None => Ok(TimeColumn::default()),
        }
    }

    /// Whether the terminal UI reports the mouse: not with `--no-mouse` (`no_flag`), else as the
    /// file says, on by default.
    pub fn mouse_on(&self, no_flag: bool) -> bool {
        !no_flag && self.mouse.unwrap_or(true)
    }

    /// Whether URLs are written as hyperlinks: not with `--no-hyperlinks` (`no_flag`), else as
    /// the file says, on by default.
    pub fn hyperlinks_on(&self, no_flag: bool) -> bool {
        !no_flag && self.hyperlinks.unwrap_or(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_key_is_read_and_written_back() {
        let text = "user = \"alice\"\nmouse = false\nhyperlinks = false\nbell = \"all\"\n\
                    title = false\nnotify-command = [\"notify-send\", \"--\", \
                    \"{sender} in {room}\", \"{text}\"]\nnotify-on = \"all\"\n\
                    timestamp-format = \"%H:%M:%S\"\ntheme = \"mono\"\n\
                    log-conversations = true\nignore = [\"bob\", \"mallory\"]\n";
        let set = Settings::parse(text).unwrap();
        assert_eq!(
            set,
            Settings {
                user: Some("alice".into()),
                mouse: Some(false),
                hyperlinks: Some(false),
                bell: Some(Bell::All),
                title: Some(false),
                notify_command: Some(NotifyCommand::Argv(vec![
                    "notify-send".into(),
                    "--".into(),
                    "{sender} in {room}".into(),
                    "{text}".into()
                ])),
                notify_on: Some(NotifyOn::All),
                timestamp_format: Some("%H:%M:%S".into()),
                theme: Some(ThemeName::Mono),
                log_conversations: Some(true),
                ignore: vec!["bob".into(), "mallory".into()],
            }
        );
        let written = set.to_text().unwrap();
        assert!(written.starts_with(FILE_HEADER), "{written}");
        assert_eq!(Settings::parse(&written).unwrap(), set);
        // Unset choices are not written.
        assert_eq!(
            Settings::default().to_text().unwrap(),
            FILE_HEADER,
            "nothing but the header"
        );
    }

    #[test]
    fn unknown_keys_are_ignored() {
        let set = Settings::parse("user = \"bob\"\ncolour-scheme = \"dark\"\n").unwrap();
        assert_eq!(set.user.as_deref(), Some("bob"));
    }

    #[test]
    fn a_program_alone_is_not_split() {
        let set = Settings::parse("notify-command = \"notify-send -u critical\"\n").unwrap();
        assert_eq!(
            set.notify_command.unwrap().argv(),
            ["notify-send -u critical"]
        );
    }

    #[test]
    fn mistakes_are_refused_saying_what() {
        for (text, says) in [
            ("user = 3\n", "invalid type"),
            (
                "timestamp-format = \"%H:%Q\"\n",
                "not a valid strftime format",
            ),
            ("timestamp-format = \"%H%n%M\"\n", "one line"),
            ("bell = \"loud\"\n", "unknown variant"),
            ("notify-on = \"none\"\n", "unknown variant"),
            ("theme = \"dark\"\n", "unknown variant"),
            ("notify-command = []\n", "names no program"),
            ("notify-command = \" \"\n", "names no program"),
            ("title = \"yes\"\n", "invalid type"),
            ("mouse = \"no\"\n", "invalid type"),
            (
                "ignore = [\"no body\"]\n",
                "ignore: `no body` is not a username",
            ),
            ("user = \"a\"\nuser = \"b\"\n", "duplicate key"),
        ] {
            let e = Settings::parse(text).unwrap_err().to_string();
            assert!(e.contains(says), "{text}: {e}");
        }
    }

    #[test]
    fn the_switches_are_on_unless_turned_off() {
        let unset = Settings::default();
        assert!(unset.mouse_on(false) && unset.hyperlinks_on(false));
        assert!(
            !unset.mouse_on(true) && !unset.hyperlinks_on(true),
            "the flags win"
        );
        let off = Settings::parse("mouse = false\nhyperlinks = false\n").unwrap();
        assert!(!off.mouse_on(false) && !off.hyperlinks_on(false));
    }
}
