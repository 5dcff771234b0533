//! How the message pane looks, as the settings file chooses: the time column's format
//! (`timestamp-format`) and the colours (`theme`). One [`Look`] is shared by every view's
//! scrollback and by the drawing code.

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, TimeZone as _};
use ratatui::style::{Color, Modifier, Style};
use serde::{Deserialize, Serialize};

use super::text::{text_width, user_color};

/// The time column's default format: hours and minutes.
pub const DEFAULT_TIME_FORMAT: &str = "%H:%M";
/// The widest time column allowed, in cells: the text must keep most of a narrow pane.
pub const MAX_TIME_WIDTH: usize = 20;

/// The time column: a strftime format and the cells it takes (the widest it can be, so every
/// row's text starts in the same column).
#[derive(Clone, Debug)]
pub struct TimeColumn {
    items: Vec<Item<'static>>,
    width: usize,
}

impl Default for TimeColumn {
    fn default() -> Self {
        // The default format is valid: this cannot fail.
        Self::parse(DEFAULT_TIME_FORMAT).unwrap_or(Self {
            items: Vec::new(),
            width: 0,
        })
    }
}

impl TimeColumn {
    /// `format` (strftime, as chrono knows it), checked: every field known, the result on one
    /// line and at most [`MAX_TIME_WIDTH`] cells. The error says what is wrong.
    pub fn parse(format: &str) -> Result<Self, String> {
        if format.is_empty() {
            return Err("timestamp-format is empty (e.g. \"%H:%M\" or \"%H:%M:%S\")".into());
        }
        let items = StrftimeItems::new(format)
            .parse_to_owned()
            .map_err(|_| bad_format(format))?;
        let mut column = Self { items, width: 0 };
        // Names of days and months differ in length: the widest of a year's worth of samples.
        let mut width = 0;
        for month in 1..=12 {
            for day in 1..=7 {
                let sample = FixedOffset::east_opt(0)
                    .and_then(|z| z.with_ymd_and_hms(2023, month, day, 23, 59, 59).single())
                    .ok_or_else(|| bad_format(format))?;
                let text = column.format(sample).ok_or_else(|| bad_format(format))?;
                if text.chars().any(char::is_control) {
                    return Err(format!(
                        "timestamp-format {format:?} must stay on one line (no %n, %t or control \
                         characters)"
                    ));
                }
                width = width.max(text_width(&text));
            }
        }
        if width > MAX_TIME_WIDTH {
            return Err(format!(
                "timestamp-format {format:?} is {width} cells wide; at most {MAX_TIME_WIDTH}"
            ));
        }
        column.width = width;
        Ok(column)
    }

    fn format(&self, t: DateTime<FixedOffset>) -> Option<String> {
        let mut out = String::new();
        write!(out, "{}", t.format_with_items(self.items.iter())).ok()?;
        Some(out)
    }

    /// The column's cells, without the space after it.
    pub fn width(&self) -> usize {
        self.width
    }

    /// Where the text of a row after an entry's first starts: under the text of its first.
    pub fn indent(&self) -> usize {
        self.width + 1
    }

    /// `t` as the column shows it: padded to the column's width, and a space.
    pub fn stamp(&self, t: DateTime<FixedOffset>) -> String {
        let mut text = self.format(t).unwrap_or_default();
        let pad = self.width.saturating_sub(text_width(&text)) + 1;
        text.extend(std::iter::repeat_n(' ', pad));
        text
    }
}

fn bad_format(format: &str) -> String {
    format!(
        "timestamp-format {format:?} is not a valid strftime format (e.g. \"%H:%M\", \"%H:%M:%S\", \
         \"%a %H:%M\"; see chrono's strftime fields)"
    )
}

/// The colour sets (`theme` in the settings file).
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

/// Name colours readable on a light background.
const LIGHT_NAMES: [Color; 6] = [
    Color::Red,
    Color::Green,
    Color::Blue,
    Color::Magenta,
    Color::Cyan,
    Color::Black,
];

/// The styles the message pane, room list and status bar are drawn with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Theme {
    /// Which set this is.
    pub name: ThemeName,
    /// Times, date lines, borders, the client's and server's notices, messages not sent yet.
    pub dim: Style,
    /// Warnings (connection trouble).
    pub warning: Style,
    /// Errors (refusals, failed commands).
    pub error: Style,
    /// A message that names you, and the `!` of a room holding one.
    pub mention: Style,
    /// The status bar.
    pub bar: Style,
    /// The state in the status bar: ACTIVE, DISCONNECTED, on the way.
    pub state_ok: Style,
    /// See `state_ok`.
    pub state_down: Style,
    /// See `state_ok`.
    pub state_wait: Style,
    /// The bars across the message pane: a search, "new messages below", "new since you left".
    pub marker: Style,
}

impl Default for Theme {
    fn default() -> Self {
        Self::new(ThemeName::Default)
    }
}

impl Theme {
    /// The styles of `name`.
    pub fn new(name: ThemeName) -> Self {
        let plain = Style::default();
        match name {
            ThemeName::Default => Self {
                name,
                dim: plain.fg(Color::DarkGray),
                warning: plain.fg(Color::Yellow),
                error: plain.fg(Color::Red),
                mention: plain.fg(Color::Yellow).add_modifier(Modifier::BOLD),
                bar: plain.fg(Color::White).bg(Color::DarkGray),
                state_ok: plain.fg(Color::LightGreen),
                state_down: plain.fg(Color::LightRed),
                state_wait: plain.fg(Color::LightYellow),
                marker: plain.fg(Color::Black).bg(Color::Yellow),
            },
            ThemeName::Light => Self {
                name,
                dim: plain.fg(Color::DarkGray),
                warning: plain.fg(Color::Magenta),
                error: plain.fg(Color::Red),
                mention: plain.fg(Color::Blue).add_modifier(Modifier::BOLD),
                bar: plain.fg(Color::Black).bg(Color::Gray),
                state_ok: plain.fg(Color::Green),
                state_down: plain.fg(Color::Red),
                state_wait: plain.fg(Color::Magenta),
                marker: plain.fg(Color::White).bg(Color::Blue),
            },
            ThemeName::Mono => Self {
                name,
                dim: plain.add_modifier(Modifier::DIM),
                warning: plain.add_modifier(Modifier::BOLD),
                error: plain.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
                mention: plain.add_modifier(Modifier::BOLD | Modifier::UNDERLINED),
                bar: plain.add_modifier(Modifier::REVERSED),
                state_ok: plain,
                state_down: plain.add_modifier(Modifier::UNDERLINED),
                state_wait: plain,
                marker: plain.add_modifier(Modifier::REVERSED),
            },
        }
    }

    /// The style of a username: its own stable colour (none in `mono`), bold.
    pub fn nick(&self, name: &str) -> Style {
        let style = Style::default().add_modifier(Modifier::BOLD);
        match self.name {
            ThemeName::Default => style.fg(user_color(name)),
            ThemeName::Light => style.fg(light_color(name)),
            ThemeName::Mono => style,
        }
    }

    /// A username outside a message (the people pane): its colour, not bold.
    pub fn name(&self, name: &str) -> Style {
        self.nick(name).remove_modifier(Modifier::BOLD)
    }
}

/// [`user_color`]'s choice mapped onto [`LIGHT_NAMES`] (still stable per name).
fn light_color(name: &str) -> Color {
    let i = match user_color(name) {
        Color::Red | Color::LightRed => 0,
        Color::Green | Color::LightGreen => 1,
        Color::Blue | Color::LightBlue => 2,
        Color::Magenta | Color::LightMagenta => 3,
        Color::Cyan | Color::LightCyan => 4,
        _ => 5,
    };
    LIGHT_NAMES[i]
}

/// The time column and the colours.
#[derive(Clone, Debug, Default)]
pub struct Look {
    /// The time column.
    pub time: TimeColumn,
    /// The colours.
    pub theme: Theme,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(h: u32, m: u32, s: u32) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(0)
            .and_then(|z| z.with_ymd_and_hms(2023, 11, 14, h, m, s).single())
            .unwrap()
    }

    #[test]
    fn the_default_time_column_is_hours_and_minutes() {
        let t = TimeColumn::default();
        assert_eq!((t.width(), t.indent()), (5, 6));
        assert_eq!(t.stamp(at(9, 5, 7)), "09:05 ");
    }

    #[test]
    fn seconds_and_names_make_a_wider_column_every_row_shares() {
        let t = TimeColumn::parse("%H:%M:%S").unwrap();
        assert_eq!(t.stamp(at(22, 13, 20)), "22:13:20 ");
        assert_eq!(t.indent(), 9);
        // Day names differ in length: padded to the longest (Wednesday).
        let t = TimeColumn::parse("%A %-H:%M").unwrap();
        assert_eq!(t.width(), "Wednesday 23:59".len());
        assert_eq!(t.stamp(at(9, 5, 0)), "Tuesday 9:05    ");
    }

    #[test]
    fn bad_formats_are_refused_with_a_reason() {
        for (format, says) in [
            ("%Q", "not a valid strftime"),
            ("%H:%", "not a valid strftime"),
            ("", "empty"),
            ("%H%n%M", "one line"),
            ("%H\t%M", "one line"),
            ("%A %B %d %Y %H:%M:%S", "cells wide"),
        ] {
            let e = TimeColumn::parse(format).unwrap_err();
            assert!(e.contains(says), "{format:?}: {e}");
        }
    }

    #[test]
    fn themes_differ_where_they_should() {
        let dark = Theme::new(ThemeName::Default);
        let light = Theme::new(ThemeName::Light);
        let mono = Theme::new(ThemeName::Mono);
        assert_eq!(dark.nick("bob").fg, Some(user_color("bob")));
        assert_eq!(dark, Theme::default());
        // Nothing pale or yellow on a light background.
        for name in ["alice", "bob", "carol", "dave", "erin", "frank", "grace"] {
            let fg = light.nick(name).fg.unwrap();
            assert!(LIGHT_NAMES.contains(&fg), "{name}: {fg:?}");
        }
        assert_ne!(light.mention.fg, Some(Color::Yellow));
        // Mono: no colour anywhere.
        for style in [
            mono.dim,
            mono.warning,
            mono.error,
            mono.mention,
            mono.bar,
            mono.state_ok,
            mono.state_down,
            mono.state_wait,
            mono.marker,
            mono.nick("bob"),
        ] {
            assert_eq!((style.fg, style.bg), (None, None), "{style:?}");
        }
    }
}
