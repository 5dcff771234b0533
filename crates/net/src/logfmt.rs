//! How the programs write their logs' fields: every value with its control characters escaped,
//! so text a peer chose (an `Err` a client answered, a username, a plugin's reason) can never
//! start a new log line, forge one (`…\nINFO logged in user=admin`), move the cursor or colour
//! a terminal that shows the log.
//!
//! Two shapes: text lines ([`escaped_fields`] with the usual formatter) and JSON lines
//! ([`JsonLines`], `--log-format json`), whose string values are escaped the same way before
//! JSON quotes them.

use std::borrow::Cow;
use std::fmt::Write as _;

use tracing::field::{Field, Visit};
use tracing::{Event, Subscriber};
use tracing_subscriber::field::MakeExt as _;
use tracing_subscriber::fmt::format::{Writer, debug_fn};
use tracing_subscriber::fmt::time::{FormatTime, SystemTime};
use tracing_subscriber::fmt::{FmtContext, FormatEvent, FormatFields};
use tracing_subscriber::registry::LookupSpan;

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

/// The event formatter for JSON logs, one object per line:
/// `{"timestamp":"2026-…Z","level":"INFO","target":"gc_server::auth","fields":{"message":"logged in","user":"alice",…}}`
/// (with `"spans":[…]`, the names of the spans the event is in, when there are any). The
/// timestamp is UTC. Numbers and booleans stay JSON numbers and booleans; every other value is
/// its text, escaped by [`escape_for_log`] before JSON quotes it, so a peer's text reads the same
/// in both formats and never holds a raw control, bidirectional or invisible character. Not
/// `tracing_subscriber`'s own JSON formatter: it writes strings as they are, and a field
/// formatter cannot change that.
#[derive(Debug, Clone, Copy, Default)]
pub struct JsonLines;

impl<S, N> FormatEvent<S, N> for JsonLines
where
    S: Subscriber + for<'a> LookupSpan<'a>,
    N: for<'a> FormatFields<'a> + 'static,
{
    fn format_event(
        &self,
        ctx: &FmtContext<'_, S, N>,
        mut writer: Writer<'_>,
        event: &Event<'_>,
    ) -> std::fmt::Result {
        let mut timestamp = String::new();
        SystemTime.format_time(&mut Writer::new(&mut timestamp))?;
        let meta = event.metadata();
        let mut fields = JsonFieldsVisitor::default();
        event.record(&mut fields);
        let json =
            |value: serde_json::Value| serde_json::to_string(&value).map_err(|_| std::fmt::Error);
        // Written key by key, in the order people read them (a JSON map would sort them).
        write!(
            writer,
            "{{\"timestamp\":{},\"level\":{},\"target\":{},\"fields\":{}",
            json(timestamp.into())?,
            json(meta.level().as_str().into())?,
            json(escape_for_log(meta.target()).into())?,
            fields.to_json()?,
        )?;
        if let Some(scope) = ctx.event_scope() {
            let spans: Vec<serde_json::Value> =
                scope.from_root().map(|span| span.name().into()).collect();
            write!(writer, ",\"spans\":{}", json(spans.into())?)?;
        }
        writeln!(writer, "}}")
    }
}

/// Gathers an event's fields as JSON values, in the order they come.
#[derive(Default)]
struct JsonFieldsVisitor(Vec<(&'static str, serde_json::Value)>);

impl JsonFieldsVisitor {
    fn text(&mut self, field: &Field, text: &str) {
        self.put(field, escape_for_log(text).into());
    }

    fn put(&mut self, field: &Field, value: serde_json::Value) {
        self.0.push((field.name(), value));
    }

    /// `{"message":…,"name":…,…}`: the message first, then the others as recorded.
    fn to_json(&self) -> Result<String, std::fmt::Error> {
        let mut out = String::from("{");
        let message = self.0.iter().filter(|(name, _)| *name == "message");
        let others = self.0.iter().filter(|(name, _)| *name != "message");
        for (i, (name, value)) in message.chain(others).enumerate() {
            if i > 0 {
                out.push(',');
            }
            let name = serde_json::to_string(name).map_err(|_| std::fmt::Error)?;
            let value = serde_json::to_string(value).map_err(|_| std::fmt::Error)?;
            out.push_str(&name);
            out.push(':');
            out.push_str(&value);
        }
        out.push('}');
        Ok(out)
    }
}

impl Visit for JsonFieldsVisitor {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        self.text(field, &format!("{value:?}"));
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        self.text(field, value);
    }
    fn record_error(&mut self, field: &Field, value: &(dyn std::error::Error + 'static)) {
        self.text(field, &value.to_string());
    }
    fn record_i64(&mut self, field: &Field, value: i64) {
        self.put(field, value.into());
    }
    fn record_u64(&mut self, field: &Field, value: u64) {
        self.put(field, value.into());
    }
    fn record_bool(&mut self, field: &Field, value: bool) {
        self.put(field, value.into());
    }
    fn record_f64(&mut self, field: &Field, value: f64) {
        // NaN and infinities have no JSON number: their text instead.
        match serde_json::Number::from_f64(value) {
            Some(n) => self.put(field, n.into()),
            None => self.put(field, value.to_string().into()),
        }
    }
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

    #[test]
    fn json_lines_are_one_object_each_with_peer_text_escaped() {
        let sink = Sink::default();
        let writer = sink.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_ansi(false)
            .event_format(JsonLines)
            .with_writer(move || writer.clone())
            .finish();
        tracing::subscriber::with_default(subscriber, || {
            let peer = "busy\n{\"level\":\"INFO\"}\u{1b}[2J\u{202e}";
            tracing::warn!(user = %"mallory\r", session = 7u64, ok = true, "refused: {peer}");
            let span = tracing::info_span!("session");
            let _inside = span.enter();
            tracing::info!(rate = f64::NAN, "inside");
        });
        let out = String::from_utf8(sink.0.lock().unwrap().clone()).unwrap();
        let lines: Vec<&str> = out.lines().collect();
        assert_eq!(lines.len(), 2, "one event, one line: {out}");
        let first: serde_json::Value = serde_json::from_str(lines[0]).unwrap();
        assert_eq!(first["level"], "WARN");
        assert_eq!(first["target"], module_path!());
        let ts = first["timestamp"].as_str().unwrap();
        assert!(ts.ends_with('Z') && ts.contains('T'), "UTC: {ts}");
        assert_eq!(
            first["fields"]["message"],
            r#"refused: busy\n{"level":"INFO"}\u{1b}[2J\u{202e}"#
        );
        assert_eq!(first["fields"]["user"], r"mallory\r");
        assert_eq!(first["fields"]["session"], 7);
        assert_eq!(first["fields"]["ok"], true);
        assert!(
            lines[0].starts_with(r#"{"timestamp":"#)
                && lines[0].contains(r#""fields":{"message":"#),
            "the order people read: {}",
            lines[0]
        );
        // Nothing a terminal would act on, even before a JSON reader unquotes it.
        assert!(!lines[0].contains('\u{1b}') && !lines[0].contains('\u{202e}'));
        let second: serde_json::Value = serde_json::from_str(lines[1]).unwrap();
        assert_eq!(second["spans"], serde_json::json!(["session"]));
        assert_eq!(second["fields"]["rate"], "NaN");
    }
}
