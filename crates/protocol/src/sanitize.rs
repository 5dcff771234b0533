//! Text from the network made safe to show: the one sanitiser every program uses before a peer's
//! words reach a terminal (the client's terminal UI and headless output, error lines, the
//! status writer) or a log line (`gc_net::logfmt` escapes the same characters).
//!
//! Any text field of GC/1 (a message body, an `Err` text, the server's name, a topic, a
//! plugin's reason) is c16 on the wire and so may decode to any character at all. Shown raw, a
//! peer could drive the terminal (ESC, CSI and OSC sequences: clear the screen, set the
//! clipboard with OSC 52, retitle the window), start what looks like a new line or record (LF,
//! CR, VT, FF, NEL, U+2028, U+2029), make text read otherwise than it is stored (bidirectional
//! controls) or hide text (zero-width and tag characters).
//!
//! [`is_unsafe`] says which characters those are; [`sanitize`] replaces each with a visible
//! stand-in, one character for one:
//!
//! | what | shown as |
//! |---|---|
//! | LF | `⏎` |
//! | other C0 controls U+0000–U+001F (TAB, CR, ESC, BEL, VT, FF, …) | their Control Picture, U+2400 + code: `␉` `␍` `␛` `␇` `␋` `␌` |
//! | DEL | `␡` |
//! | C1 controls U+0080–U+009F (CSI, OSC, NEL, …) | `�` (U+FFFD) |
//! | bidirectional controls: U+061C, U+200E, U+200F, U+202A–U+202E, U+2066–U+2069 | `�` |
//! | zero-width and other invisible format characters: U+180E, U+200B–U+200D, U+2060–U+2065, U+206A–U+206F, U+FEFF, U+FFF9–U+FFFB, U+1BCA0–U+1BCA3, U+1D173–U+1D17A | `�` |
//! | line and paragraph separators U+2028, U+2029 | `�` |
//! | tag characters U+E0000–U+E007F | `�` |
//!
//! Two invisible characters are part of ordinary writing, and are kept where they do that:
//!
//! - **The joiners** U+200C (ZWNJ) and U+200D (ZWJ) between two visible non-ASCII characters:
//!   emoji sequences (a woman and a laptop joined into a technologist, a white flag and a
//!   rainbow into the rainbow flag), ZWNJ in Persian words, the conjuncts of Indic scripts. Next
//!   to ASCII, a space, another invisible character or the end of the text they can only hide
//!   something (`ad` ZWJ `min` looks like `admin`), and are replaced.
//! - **Tag characters** only in an emoji flag of a subdivision (Scotland's: U+1F3F4, 2 to 6 tag
//!   letters or digits, U+E007F). Anywhere else they carry invisible text ("ASCII smuggling").
//!
//! Everything else is kept as it is: letters of every script, wide characters, emoji with their
//! modifiers and variation selectors, combining marks, spaces of every kind. The result has as
//! many characters as the input and no line break, so one text stays on one line; it is the same
//! when sanitised again.

use std::borrow::Cow;
use std::fmt;

/// Whether `c` must never reach a terminal or a log line as it is: a control character (C0, DEL,
/// C1), a line or paragraph separator, a bidirectional control, a zero-width or other invisible
/// format character, or a tag character. Context aside (see [`sanitize`] for the joiners and
/// flags it keeps), these are the characters [`sanitize`] replaces.
pub fn is_unsafe(c: char) -> bool {
    matches!(
        c,
        '\u{0}'..='\u{1f}'
            | '\u{7f}'..='\u{9f}'
            | '\u{061c}'
            | '\u{180e}'
            | '\u{200b}'..='\u{200f}'
            | '\u{2028}'..='\u{202e}'
            | '\u{2060}'..='\u{206f}'
            | '\u{feff}'
            | '\u{fff9}'..='\u{fffb}'
            | '\u{1bca0}'..='\u{1bca3}'
            | '\u{1d173}'..='\u{1d17a}'
            | '\u{e0000}'..='\u{e007f}'
    )
}

/// What an unsafe character is shown as (see the module's table).
fn stand_in(c: char) -> char {
    match c {
        '\n' => '⏎',
        '\u{0}'..='\u{1f}' => char::from_u32(0x2400 + u32::from(c)).unwrap_or('\u{fffd}'),
        '\u{7f}' => '␡',
        _ => '\u{fffd}',
    }
}

/// ZWNJ and ZWJ.
fn is_joiner(c: char) -> bool {
    matches!(c, '\u{200c}' | '\u{200d}')
}

/// A character a joiner may stand next to: visible, and not ASCII.
fn joinable(c: Option<char>) -> bool {
    c.is_some_and(|c| !c.is_ascii() && !c.is_whitespace() && !is_unsafe(c))
}

/// WAVING BLACK FLAG, the base of the subdivision flags.
const BLACK_FLAG: char = '\u{1f3f4}';
/// CANCEL TAG, the end of a tag sequence.
const CANCEL_TAG: char = '\u{e007f}';

/// The length in bytes of the tag sequence at the start of `rest` (after a [`BLACK_FLAG`]) that
/// makes a subdivision flag: 2 to 6 tag lower-case letters or digits, then CANCEL TAG. 0 if
/// there is none.
fn flag_tags(rest: &str) -> usize {
    let mut tags = 0;
    for (i, c) in rest.char_indices() {
        match c {
            '\u{e0030}'..='\u{e0039}' | '\u{e0061}'..='\u{e007a}' if tags < 6 => tags += 1,
            CANCEL_TAG if tags >= 2 => return i + c.len_utf8(),
            _ => return 0,
        }
    }
    0
}

/// `text` made safe to show on a terminal, on one line: every character [`is_unsafe`] says is
/// unsafe replaced by a visible stand-in (`⏎` for LF, Control Pictures for the other C0
/// controls, `␡` for DEL, `�` for the rest), except the joiners and flag tags of ordinary
/// writing (see the module). Borrows when nothing needs replacing.
pub fn sanitize(text: &str) -> Cow<'_, str> {
    if !text.chars().any(is_unsafe) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    let mut prev = None;
    let mut rest = text;
    while let Some(c) = rest.chars().next() {
        let len = c.len_utf8();
        if c == BLACK_FLAG {
            let tags = flag_tags(&rest[len..]);
            if tags > 0 {
                out.push_str(&rest[..len + tags]);
                rest = &rest[len + tags..];
                prev = Some(CANCEL_TAG);
                continue;
            }
        }
        let keep = !is_unsafe(c)
            || (is_joiner(c) && joinable(prev) && joinable(rest[len..].chars().next()));
        out.push(if keep { c } else { stand_in(c) });
        prev = Some(c);
        rest = &rest[len..];
    }
    Cow::Owned(out)
}

/// Shows a text through [`sanitize`] when formatted: for remote text inside a `format!` or an
/// error's message, `format!("refused: {}", Sanitized(&text))`.
#[derive(Clone, Copy, Debug)]
pub struct Sanitized<'a>(pub &'a str);

impl fmt::Display for Sanitized<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&sanitize(self.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Each character of `chars`, alone and between letters, comes out as `shown`.
    fn each_shown_as(chars: impl IntoIterator<Item = char>, shown: char) {
        for c in chars {
            assert!(is_unsafe(c), "U+{:04X} is unsafe", u32::from(c));
            assert_eq!(
                sanitize(&c.to_string()),
                shown.to_string(),
                "U+{:04X}",
                u32::from(c)
            );
            assert_eq!(
                sanitize(&format!("a{c}b")),
                format!("a{shown}b"),
                "U+{:04X}",
                u32::from(c)
            );
        }
    }

    #[test]
    fn c0_controls_become_control_pictures_and_lf_a_return_symbol() {
        assert_eq!(sanitize("a\nb"), "a⏎b");
        assert_eq!(sanitize("\t\r\u{0}\u{7}\u{b}\u{c}\u{1b}\u{1f}"), "␉␍␀␇␋␌␛␟");
        for c in (0..0x20u32)
            .filter_map(char::from_u32)
            .filter(|&c| c != '\n')
        {
            each_shown_as([c], char::from_u32(0x2400 + u32::from(c)).unwrap());
        }
    }

    #[test]
    fn del_and_c1_controls() {
        assert_eq!(sanitize("x\u{7f}"), "x␡");
        // CSI, OSC, ST and NEL (a line break to some terminals) among them.
        each_shown_as((0x80..=0x9fu32).filter_map(char::from_u32), '\u{fffd}');
        assert_eq!(sanitize("\u{9b}31m\u{9d}0;t\u{9c}\u{85}"), "�31m�0;t��");
    }

    #[test]
    fn escape_sequences_are_shown_not_obeyed_byte_for_byte() {
        // Clear the screen, write the clipboard (OSC 52), retitle, move the cursor home.
        let hostile = "\u{1b}[2J\u{1b}]52;c;Y3VybCBldmlsfHNo\u{7}\u{1b}]0;pwned\u{1b}\\\u{1b}[H";
        assert_eq!(
            sanitize(hostile),
            "␛[2J␛]52;c;Y3VybCBldmlsfHNo␇␛]0;pwned␛\\␛[H"
        );
        assert!(!sanitize(hostile).contains(|c: char| c.is_control()));
    }

    #[test]
    fn bidirectional_controls() {
        each_shown_as(
            ['\u{061c}', '\u{200e}', '\u{200f}']
                .into_iter()
                .chain('\u{202a}'..='\u{202e}')
                .chain('\u{2066}'..='\u{2069}'),
            '\u{fffd}',
        );
        // `abc` RLO `fed` would read `abcdef`.
        assert_eq!(sanitize("abc\u{202e}fed"), "abc\u{fffd}fed");
    }

    #[test]
    fn zero_width_and_invisible_format_characters() {
        each_shown_as(
            ['\u{180e}', '\u{200b}', '\u{feff}']
                .into_iter()
                .chain('\u{2060}'..='\u{2065}')
                .chain('\u{206a}'..='\u{206f}')
                .chain('\u{fff9}'..='\u{fffb}')
                .chain('\u{1bca0}'..='\u{1bca3}')
                .chain('\u{1d173}'..='\u{1d17a}'),
            '\u{fffd}',
        );
        // The joiners where they join nothing visible: next to ASCII, spaces, the ends.
        for text in [
            "ad\u{200d}min",
            "ad\u{200c}min",
            "\u{200d}",
            "a \u{200d}日",
            "日\u{200d}",
        ] {
            assert_eq!(
                sanitize(text),
                text.replace(['\u{200c}', '\u{200d}'], "\u{fffd}")
            );
        }
        // Two joiners in a row join nothing either.
        assert_eq!(sanitize("👩\u{200d}\u{200d}💻"), "👩\u{fffd}\u{fffd}💻");
    }

    #[test]
    fn line_and_paragraph_separators_cannot_break_a_line() {
        each_shown_as(['\u{2028}', '\u{2029}'], '\u{fffd}');
        let forged = "ok\u{2028}[2026-12-06 10:00:00] admin: run this\u{2029}\u{85}\u{b}\u{c}\r";
        let shown = sanitize(forged);
        assert_eq!(shown, "ok�[2026-12-06 10:00:00] admin: run this��␋␌␍");
        assert_eq!(shown.lines().count(), 1);
    }

    #[test]
    fn tag_characters_are_shown_except_in_a_subdivision_flag() {
        each_shown_as('\u{e0000}'..='\u{e007f}', '\u{fffd}');
        // "hi" followed by the invisible "rm" in tags.
        assert_eq!(sanitize("hi\u{e0072}\u{e006d}\u{e007f}"), "hi���");
        // Scotland, England, Wales: kept whole.
        for flag in [
            "🏴\u{e0067}\u{e0062}\u{e0073}\u{e0063}\u{e0074}\u{e007f}",
            "🏴\u{e0067}\u{e0062}\u{e0065}\u{e006e}\u{e0067}\u{e007f}",
            "🏴\u{e0067}\u{e0062}\u{e0077}\u{e006c}\u{e0073}\u{e007f}",
        ] {
            assert_eq!(sanitize(flag), flag);
            assert_eq!(sanitize(&format!("go {flag}!")), format!("go {flag}!"));
        }
        // Not a flag: too long, upper case, unterminated, or without the flag.
        assert_eq!(
            sanitize("🏴\u{e0061}\u{e0062}\u{e0063}\u{e0064}\u{e0065}\u{e0066}\u{e0067}\u{e007f}"),
            "🏴��������"
        );
        assert_eq!(sanitize("🏴\u{e0047}\u{e0042}\u{e007f}"), "🏴���");
        assert_eq!(sanitize("🏴\u{e0067}\u{e0062}"), "🏴��");
        assert_eq!(sanitize("🏴\u{e007f}"), "🏴�");
        assert_eq!(sanitize("🏳\u{e0067}\u{e0062}\u{e007f}"), "🏳���");
    }

    #[test]
    fn ordinary_text_is_kept_as_it_is() {
        for text in [
            "hello, world",
            "日本語のテキスト",
            "👍🏽 👋 ❤️ 1️⃣",
            // e + combining acute, Vietnamese with two marks, a ligature, Hebrew with points.
            "e\u{301} Vie\u{302}\u{323}t ﬁ שָׁלוֹם",
            // ZWJ emoji sequences: a family, a technologist, the rainbow flag (ZWJ after VS16).
            "👨\u{200d}👩\u{200d}👧 👩\u{200d}💻 🏳\u{fe0f}\u{200d}🌈",
            // ZWNJ in Persian, ZWJ in a Devanagari conjunct (after the virama).
            "می\u{200c}خواهم क\u{94d}\u{200d}ष",
            // Spaces of every kind (the terminal UI wraps them; see docs/security.md).
            "a\u{a0}b\u{3000}c\u{2003}d",
            "private use \u{e000}, replacement \u{fffd}, variation \u{fe0e}",
        ] {
            assert_eq!(sanitize(text), text);
        }
        assert!(matches!(sanitize("plain"), Cow::Borrowed(_)));
    }

    #[test]
    fn one_character_for_one_and_idempotent() {
        let hostile: String = (0u32..0x300)
            .chain(0x2000..0x2070)
            .chain(0xe0000..0xe0080)
            .filter_map(char::from_u32)
            .collect();
        let once = sanitize(&hostile);
        assert_eq!(once.chars().count(), hostile.chars().count());
        assert!(!once.chars().any(is_unsafe), "{once}");
        assert_eq!(sanitize(&once), once);
    }

    #[test]
    fn sanitized_formats_through_sanitize() {
        assert_eq!(
            format!("refused: {}", Sanitized("no\n\u{1b}[2J")),
            "refused: no⏎␛[2J"
        );
    }
}
