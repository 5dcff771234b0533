//! The client's settings file (`$XDG_CONFIG_HOME/gc-client/config.toml`): no text panics the
//! parser or its checks; a file that is refused says why; a file that is accepted gives settings
//! the terminal UI can use (a time column within its width whatever the time shown, usernames in
//! `ignore`, a program to run), and what gc-client writes back for them (it rewrites the file to
//! remember the username and the ignore list) reads back as the same settings.

#![no_main]

use std::sync::OnceLock;

use chrono::{DateTime, FixedOffset, TimeZone as _, Timelike as _, Utc};
use gc_client_settings::{MAX_TIME_WIDTH, Settings, text_width};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // gc-client reads the file as UTF-8 (anything else is refused before parsing); the lossy
    // text lets every input reach the parser.
    let text = String::from_utf8_lossy(data);
    let settings = match Settings::parse(&text) {
        Ok(settings) => settings,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "a refusal that says nothing");
            return;
        }
    };
    accepted(&settings);
    written_back(&settings);
    // `/ignore` and `/unignore` write the list back in lower case; that must load too.
    let mut lowered = settings.clone();
    lowered.ignore = lowered
        .ignore
        .iter()
        .map(|n| n.to_ascii_lowercase())
        .collect();
    written_back(&lowered);
    // Remembering a username keeps every other choice.
    let mut remembered = settings;
    remembered.user = Some("alice".into());
    written_back(&remembered);
});

/// What the terminal UI relies on in settings that passed their check.
fn accepted(s: &Settings) {
    assert!(s.check().is_ok(), "accepted settings fail their own check");
    let column = s.time_column().expect("checked at parse");
    assert!(column.width() <= MAX_TIME_WIDTH);
    assert_eq!(column.indent(), column.width() + 1);
    // Every row's text starts in the same column: no time the pane shows is wider than it.
    for t in instants() {
        let stamp = column.stamp(*t);
        assert!(!stamp.contains(char::is_control), "{stamp:?}");
        assert_eq!(
            text_width(&stamp),
            column.indent(),
            "{:?} stamps {t} as {stamp:?}, not {} cells and a space",
            s.timestamp_format,
            column.width()
        );
    }
    // And no time at all panics it: far ahead (a wrong clock, a server's timestamp up to the
    // latest chrono holds) the column may be too narrow (`%s` has more digits after 2286, `%Y`
    // after 9999), but it stamps.
    for offset in [0, 14 * 3600, -12 * 3600] {
        if let Some(z) = FixedOffset::east_opt(offset) {
            let _ = column.stamp(DateTime::<Utc>::MAX_UTC.with_timezone(&z));
            let _ = column.stamp(DateTime::<Utc>::UNIX_EPOCH.with_timezone(&z));
            if let Some(t) = z.with_ymd_and_hms(9999, 12, 31, 23, 59, 59).single() {
                let _ = column.stamp(t);
            }
        }
    }
    for name in &s.ignore {
        assert!(
            gc_protocol::Username::new(name.as_str()).is_ok(),
            "{name:?}"
        );
    }
    if let Some(command) = &s.notify_command {
        let argv = command.argv();
        assert!(
            argv.first().is_some_and(|p| !p.trim().is_empty()),
            "{argv:?}"
        );
    }
}

/// What gc-client writes for `s` reads back as `s`, and is written the same again.
fn written_back(s: &Settings) {
    let text = s.to_text().expect("accepted settings can be written");
    let again = Settings::parse(&text)
        .unwrap_or_else(|e| panic!("what gc-client wrote does not load ({e}):\n{text}"));
    assert_eq!(&again, s, "written and read back differs:\n{text}");
    assert_eq!(again.to_text().ok().as_deref(), Some(text.as_str()));
}

/// Times a message can carry (microseconds, any day of the month, any offset), from 1970 to this
/// century's end: the time column's width holds for them.
fn instants() -> &'static [DateTime<FixedOffset>] {
    static INSTANTS: OnceLock<Vec<DateTime<FixedOffset>>> = OnceLock::new();
    INSTANTS.get_or_init(|| {
        let mut all = Vec::new();
        for (offset, (y, mo, d), (h, mi, sec), micros) in [
            (0, (1970, 1, 1), (0, 0, 0), 0),
            (0, (2023, 11, 14), (9, 5, 7), 0),
            (19_800, (2023, 12, 31), (23, 59, 59), 999_999),
            (-28_800, (2024, 2, 29), (12, 0, 0), 123_456),
            (3600, (2024, 9, 10), (1, 2, 3), 120_000),
            (-3600, (2038, 1, 19), (3, 14, 8), 500_000),
            (50_400, (2099, 5, 28), (13, 30, 0), 1),
            (0, (2099, 12, 31), (23, 59, 59), 999_999),
        ] {
            if let Some(t) = FixedOffset::east_opt(offset)
                .and_then(|z| z.with_ymd_and_hms(y, mo, d, h, mi, sec).single())
                .and_then(|t| t.with_nanosecond(micros * 1000))
            {
                all.push(t);
            }
        }
        all
    })
}
