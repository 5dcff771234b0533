//! How the message pane looks, as the settings file chooses: the time column's format
//! (`timestamp-format`) and the colours (`theme`). One [`Look`] is shared by every view's
//! scrollback and by the drawing code. The time column ([`TimeColumn`]) and the theme's name are
//! the `gc-client-settings` crate's, which checks the settings file.

use ratatui::style::{Color, Modifier, Style};

pub use gc_client_settings::{DEFAULT_TIME_FORMAT, MAX_TIME_WIDTH, ThemeName, TimeColumn};

use super::text::user_color;

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
    /// A shared file's name in its line, and the bar of a transfer in the status area.
    pub file: Style,
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
                file: plain.fg(Color::LightCyan).add_modifier(Modifier::BOLD),
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
                file: plain.fg(Color::Green).add_modifier(Modifier::BOLD),
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
                file: plain.add_modifier(Modifier::BOLD),
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
