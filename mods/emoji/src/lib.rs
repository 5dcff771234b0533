//! A gc client plugin that shows `:smile:`-style shortcodes as emoji. Only the display changes:
//! what is stored and sent stays as typed.

use gc_plugin::guest::{Host, Plugin, Verdict};

/// Shortcodes and their emoji.
pub const SHORTCODES: &[(&str, &str)] = &[
    (":smile:", "😄"),
    (":grin:", "😁"),
    (":joy:", "😂"),
    (":wink:", "😉"),
    (":heart:", "❤️"),
    (":thumbsup:", "👍"),
    (":+1:", "👍"),
    (":thumbsdown:", "👎"),
    (":wave:", "👋"),
    (":tada:", "🎉"),
    (":fire:", "🔥"),
    (":rocket:", "🚀"),
    (":thinking:", "🤔"),
    (":cry:", "😢"),
    (":sunglasses:", "😎"),
    (":coffee:", "☕"),
    (":check:", "✅"),
    (":x:", "❌"),
    (":eyes:", "👀"),
    (":100:", "💯"),
];

/// Replaces every known shortcode in `text`; `None` when there was none.
pub fn expand(text: &str) -> Option<String> {
    if !text.contains(':') {
        return None;
    }
    let mut out = text.to_owned();
    for (code, emoji) in SHORTCODES {
        if out.contains(code) {
            out = out.replace(code, emoji);
        }
    }
    (out != text).then_some(out)
}

/// The plugin (no state).
#[derive(Debug)]
pub struct Emoji;

impl Plugin for Emoji {
    fn init(_host: Host) -> Result<Self, String> {
        Ok(Self)
    }

    fn on_message_display(&self, _user: &str, _room: &str, text: &str) -> Result<Verdict, String> {
        Ok(expand(text).map_or(Verdict::Pass, Verdict::Rewrite))
    }
}

gc_plugin::declare_plugin!(
    Emoji,
    name = "emoji",
    version = env!("CARGO_PKG_VERSION"),
    hooks = [on_message_display],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_known_codes_only() {
        assert_eq!(
            expand("hi :smile: :nope: :tada:").as_deref(),
            Some("hi 😄 :nope: 🎉")
        );
        assert_eq!(expand("no codes"), None);
        assert_eq!(expand(":unknown:"), None);
    }
}
