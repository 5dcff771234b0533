//! `timestamp-format`: the time column of the message pane, a strftime format checked so that
//! every row's text starts in the same column.

use std::fmt::Write as _;

use chrono::format::{Item, StrftimeItems};
use chrono::{DateTime, FixedOffset, TimeZone as _, Timelike as _};
use unicode_segmentation::UnicodeSegmentation as _;
use unicode_width::UnicodeWidthStr as _;

use crate::SettingsError;

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
    pub fn parse(format: &str) -> Result<Self, SettingsError> {
        if format.is_empty() {
            return Err(SettingsError::TimestampFormat(
                "timestamp-format is empty (e.g. \"%H:%M\" or \"%H:%M:%S\")".into(),
            ));
        }
        let items = StrftimeItems::new(format)
            .parse_to_owned()
            .map_err(|_| bad_format(format))?;
        let mut column = Self { items, width: 0 };
        // Names of days and months differ in length, and so do unpadded numbers (`%-d`) and
        // fractions of a second (`%.f`): the widest of a year's worth of samples, each month's
        // first seven days (every weekday) and a two-digit day with nine digits of fraction.
        let mut width = 0;
        for month in 1..=12 {
            for (day, nanos) in (1..=7).map(|d| (d, 0)).chain([(28, 999_999_999)]) {
                let sample = FixedOffset::east_opt(0)
                    .and_then(|z| z.with_ymd_and_hms(2023, month, day, 23, 59, 59).single())
                    .and_then(|t| t.with_nanosecond(nanos))
                    .ok_or_else(|| bad_format(format))?;
                let text = column.format(sample).ok_or_else(|| bad_format(format))?;
                if text.chars().any(char::is_control) {
                    return Err(SettingsError::TimestampFormat(format!(
                        "timestamp-format {format:?} must stay on one line (no %n, %t or control \
                         characters)"
                    )));
                }
                width = width.max(text_width(&text));
            }
        }
        if width > MAX_TIME_WIDTH {
            return Err(SettingsError::TimestampFormat(format!(
                "timestamp-format {format:?} is {width} cells wide; at most {MAX_TIME_WIDTH}"
            )));
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

fn bad_format(format: &str) -> SettingsError {
    SettingsError::TimestampFormat(format!(
        "timestamp-format {format:?} is not a valid strftime format (e.g. \"%H:%M\", \"%H:%M:%S\", \
         \"%a %H:%M\"; see chrono's strftime fields)"
    ))
}

/// The cells a text takes on the terminal, measured as ratatui draws it (ratatui-core's
/// `CellWidth` for `str`, grapheme by grapheme): a grapheme holding a control character none, a
/// one-byte grapheme one, any other its Unicode width plus one per halfwidth (semi-)voiced sound
/// mark (U+FF9E, U+FF9F), which terminals draw as a character of its own. gc-client draws with
/// ratatui itself; its tests check that this measure agrees with ratatui's.
pub fn text_width(s: &str) -> usize {
    s.graphemes(true).map(grapheme_width).sum()
}

/// The cells one grapheme takes (see [`text_width`]).
pub fn grapheme_width(g: &str) -> usize {
    if g.contains(char::is_control) {
        0
    } else if g.len() == 1 {
        1
    } else {
        g.width()
            + g.chars()
                .filter(|c| matches!(c, '\u{FF9E}' | '\u{FF9F}'))
                .count()
    }
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

    /// Found by the `client_settings` fuzz target's check that every stamp fits the column (on
    /// inputs written after reading how the width was sampled): only the first seven days of
    /// each month at a whole second were measured, so a two-digit day (`%-d`) or a fraction of
    /// a second (`%.f`, up to nine digits) stamped wider than the column, and the text of those
    /// rows started later than the rows it wraps under.
    #[test]
    fn unpadded_days_and_fractions_of_a_second_fit_the_column() {
        let late = FixedOffset::east_opt(0)
            .and_then(|z| z.with_ymd_and_hms(2023, 12, 31, 23, 59, 59).single())
            .and_then(|t| t.with_nanosecond(123_456_789))
            .unwrap();
        for (format, widest) in [
            ("%-d %H:%M", "31 23:59"),
            ("%H:%M:%S%.f", "23:59:59.123456789"),
            ("%-j", "365"),
        ] {
            let t = TimeColumn::parse(format).unwrap();
            assert_eq!(t.width(), widest.len(), "{format:?}");
            assert_eq!(t.stamp(late), format!("{widest} "), "{format:?}");
            assert_eq!(t.stamp(at(9, 5, 7)).len(), t.indent(), "{format:?}");
        }
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
            let e = TimeColumn::parse(format).unwrap_err().to_string();
            assert!(e.contains(says), "{format:?}: {e}");
        }
    }

    #[test]
    fn widths_as_a_terminal_draws_them() {
        assert_eq!(text_width("12:05"), 5);
        assert_eq!(text_width("水曜日"), 6);
        assert_eq!(
            text_width("e\u{301}"),
            1,
            "a combining accent takes no cell"
        );
        assert_eq!(text_width("a\u{7}b"), 2, "a control character takes none");
    }
}
