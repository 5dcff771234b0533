//! Showing records to people: text from the network made harmless for a terminal, local time,
//! and the JSON form for scripts.

use chrono::{DateTime, SecondsFormat, TimeZone, Utc};
use gc_protocol::{Record, Timestamp};
use serde::Serialize;

/// Makes remote text safe to print on a terminal, one line:
/// - LF becomes `⏎`;
/// - other C0 controls become their Control Pictures (U+2400 + code: ESC → `␛`, TAB → `␉`,
///   CR → `␍`), DEL becomes `␡`;
/// - C1 controls (U+0080–U+009F, which some terminals obey like ESC sequences) and the bidi
///   embedding, override and isolate controls (which can make text read differently than it
///   is) become `�`.
///
/// Everything else, wide characters and emoji included, is kept as is.
pub fn sanitize(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        out.push(match c {
            '\n' => '⏎',
            '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + u32::from(c)).unwrap_or('�'),
            '\u{7f}' => '␡',
            '\u{80}'..='\u{9f}' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}' => '�',
            c => c,
        });
    }
    out
}

/// A record's time as a UTC date-time.
pub fn utc(timestamp: Timestamp) -> DateTime<Utc> {
    let micros = i64::try_from(timestamp.as_micros()).unwrap_or(i64::MAX);
    DateTime::from_timestamp_micros(micros).unwrap_or(DateTime::<Utc>::MAX_UTC)
}

/// `[YYYY-MM-DD HH:MM:SS] user: text` with the time in `tz` (the local zone in the program) and
/// the text made harmless by [`sanitize`]; a record of another room than `#general` names it
/// before the user: `[…] #dev user: text` (`@alice+bob` for a direct conversation).
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
        sanitize(&record.body)
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
        for s in sanitize("\u{1b}]0;title\u{7}\u{9d}\u{84}").chars() {
            assert!(!s.is_control(), "{s:?} is a control character");
        }
    }

    #[test]
    fn wide_characters_and_emoji_are_kept() {
        let text = "日本語 👍🏽 e\u{301} ﬁ";
        assert_eq!(sanitize(text), text);
    }

    #[test]
    fn line_format_in_a_given_zone() {
        let r = rec("hello\nworld\u{1b}[31m");
        assert_eq!(
            format_line(&r, &Utc),
            "[2023-11-14 22:13:20] alice: hello⏎world␛[31m"
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
