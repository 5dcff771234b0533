//! How the programs write their logs' fields: every value with its control characters escaped,
//! so text a peer chose (an `Err` a client answered, a username, a plugin's reason) can never
//! start a new log line, forge one (`…\nINFO logged in user=admin`), move the cursor or colour
//! a terminal that shows the log.

use std::borrow::Cow;
use std::fmt::Write as _;

use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::FormatFields;
use tracing_subscriber::fmt::format::debug_fn;

/// The fields formatter for `tracing_subscriber::fmt().fmt_fields(…)`: the message first, then
/// `name=value` pairs, separated by spaces, each escaped by [`escape_for_log`].
pub fn escaped_fields() -> impl for<'w> FormatFields<'w> + Send + Sync + 'static {
    debug_fn(|w, field, value| {
        let text = format!("{value:?}");
        let text = escape_for_log(&text);
        if field.name() == "message" {
            w.write_str(&text)
        } else {
            write!(w, "{}={text}", field.name())
        }
    })
    .delimited(" ")
}

/// `text` with every character that could change how a log line reads escaped: line breaks as
/// `\n` and `\r`, other control characters (C0, DEL, C1: escape sequences start with ESC or
/// CSI) and the characters that reorder or hide text (bidirectional controls, zero-width
/// characters, line and paragraph separators, tag characters) as `\u{…}`: the characters
/// [`gc_protocol::sanitize::is_unsafe`] names, which the client shows as stand-ins. A backslash
/// that could be read as the start of such an escape is written `\\`. Tabs and printable text
/// stay.
pub fn escape_for_log(text: &str) -> Cow<'_, str> {
    if !text.chars().any(needs_escape) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\\' => out.push_str("\\\\"),
            c if needs_escape(c) => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

/// The characters [`gc_protocol::sanitize`] neutralises for a terminal, less the tab (a lone
/// backslash is harmless: it is only doubled when something else is escaped). In a log even a
/// joiner inside an emoji is written out.
fn needs_escape(c: char) -> bool {
    c != '\t' && gc_protocol::sanitize::is_unsafe(c)
}

#[cfg(test)]
mod tests {
    use std::io;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn control_and_invisible_characters_are_escaped() {
        assert!(matches!(escape_for_log("plain text\tok"), Cow::Borrowed(_)));
        assert!(matches!(escape_for_log(r"C:\temp"), Cow::Borrowed(_)));
        assert_eq!(
            escape_for_log("a\nb\r\u{1b}[2J\u{7}\u{9b}\u{202e}\u{200b}\u{2028}\u{e0041}\\"),
            r"a\nb\r\u{1b}[2J\u{7}\u{9b}\u{202e}\u{200b}\u{2028}\u{e0041}\\"
        );
        // Every character the terminal sanitiser replaces, from the same list.
        assert_eq!(
            escape_for_log("\u{61c}\u{180e}\u{2066}\u{206f}\u{fff9}\u{1d173}\u{85}"),
            r"\u{61c}\u{180e}\u{2066}\u{206f}\u{fff9}\u{1d173}\u{85}"
        );
    }

    /// Collects what the subscriber writes.
    #[derive(Clone, Default)]
    struct Sink(Arc<Mutex<Vec<u8>>>);

    impl io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner)
                .extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_forged_line_stays_inside_its_event() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .fmt_fields(escaped_fields())
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let peer = "busy\n2026-12-05T00:00:00Z  INFO gc_server::auth: logged in user=admin";
            tracing::warn!(user = %"mallory\r", reason = peer, "refused: {peer}");
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        assert_eq!(out.matches('\n').count(), 1, "one event, one line: {out}");
        assert!(out.contains(r"refused: busy\n2026"), "{out}");
        assert!(out.contains(r"user=mallory\r"), "{out}");
        assert!(out.contains(r#"reason="busy\n2026"#), "{out}");
    }
}
