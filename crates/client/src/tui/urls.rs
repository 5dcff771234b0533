//! Finding URLs in message text, the way terminals and chat clients do: a scheme
//! (`http://`, `https://`, `ftp://`, `mailto:`) at the start of a word, up to whitespace, without
//! the punctuation that ends the sentence around it (`see https://x.org/a.` links `…/a`), and
//! [`osc8_target`]: the URL as it may go into an OSC 8 hyperlink, printable ASCII only.

use std::ops::Range;

/// The schemes recognised, lower case, with what must follow the scheme name.
const SCHEMES: &[&str] = &["https://", "http://", "ftp://", "mailto:"];

/// Characters that end a URL wherever they are: whitespace, controls, the bidi controls (which
/// could make a URL read as another), and those RFC 3986 never allows unencoded (`<https://x>`
/// and `"https://x"` are how people quote a URL).
fn ends_url(c: char) -> bool {
    c.is_whitespace()
        || c.is_control()
        || matches!(c, '<' | '>' | '"' | '\u{202a}'..='\u{202e}' | '\u{2066}'..='\u{2069}')
}

/// Byte ranges of the URLs in `text`, in order.
pub fn find(text: &str) -> Vec<Range<usize>> {
    let mut found = Vec::new();
    let mut from = 0;
    while let Some(start) = next_scheme(text, from) {
        let tail = &text[start..];
        let len = tail.find(ends_url).unwrap_or(tail.len());
        let url = trim_end(&tail[..len]);
        let scheme_len = SCHEMES
            .iter()
            .find(|s| starts_with_ignore_case(tail, s))
            .map_or(0, |s| s.len());
        if url.len() > scheme_len {
            found.push(start..start + url.len());
        }
        from = start + len.max(1);
    }
    found
}

/// Where the next scheme starts at or after `from`: at the start of the text or after a
/// character that is not a letter or digit (`xhttp://` is not a URL).
fn next_scheme(text: &str, from: usize) -> Option<usize> {
    let mut prev: Option<char> = text[..from].chars().next_back();
    for (i, c) in text[from..].char_indices() {
        let at = from + i;
        if !prev.is_some_and(char::is_alphanumeric)
            && SCHEMES
                .iter()
                .any(|s| starts_with_ignore_case(&text[at..], s))
        {
            return Some(at);
        }
        prev = Some(c);
    }
    None
}

fn starts_with_ignore_case(text: &str, prefix: &str) -> bool {
    text.as_bytes()
        .get(..prefix.len())
        .is_some_and(|head| head.eq_ignore_ascii_case(prefix.as_bytes()))
}

/// Drops what ends a sentence rather than the URL: `.,;:!?'*` and closing brackets or quotes
/// without their opening one inside the URL (`(see https://x.org/a_(b))` keeps `(b)`).
fn trim_end(url: &str) -> &str {
    let mut url = url;
    loop {
        let Some(last) = url.chars().next_back() else {
            return url;
        };
        let drop = match last {
            '.' | ',' | ';' | ':' | '!' | '?' | '*' => true,
            ')' => unbalanced(url, '(', ')'),
            ']' => unbalanced(url, '[', ']'),
            '}' => unbalanced(url, '{', '}'),
            '\'' => url.matches('\'').count() % 2 == 1,
            _ => false,
        };
        if !drop {
            return url;
        }
        url = &url[..url.len() - last.len_utf8()];
    }
}

fn unbalanced(url: &str, open: char, close: char) -> bool {
    url.matches(close).count() > url.matches(open).count()
}

/// The URL as an OSC 8 target: every byte outside the printable ASCII characters a URL may hold
/// is percent-encoded (so `é` becomes `%C3%A9`), so no byte of remote text can end the escape
/// sequence early or smuggle in another one.
pub fn osc8_target(url: &str) -> String {
    let mut out = String::with_capacity(url.len());
    for b in url.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:/?#[]@!$&'()*+,;=%".contains(&b) {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn urls(text: &str) -> Vec<&str> {
        find(text).into_iter().map(|r| &text[r]).collect()
    }

    #[test]
    fn schemes_at_word_starts() {
        assert_eq!(
            urls("see https://example.com/a?b=c#d and http://x.org"),
            ["https://example.com/a?b=c#d", "http://x.org"]
        );
        assert_eq!(
            urls("ftp://files.lan/pub mailto:bob@lan.example"),
            ["ftp://files.lan/pub", "mailto:bob@lan.example"]
        );
        assert_eq!(urls("HTTPS://EXAMPLE.COM"), ["HTTPS://EXAMPLE.COM"]);
        assert_eq!(urls("(https://x.org)"), ["https://x.org"]);
        assert_eq!(urls("see:https://x.org/a"), ["https://x.org/a"]);
        assert!(urls("xhttps://x.org nohttp://y").is_empty());
        assert!(urls("https:// or mailto: alone, file:///etc").is_empty());
        assert!(urls("no links here").is_empty());
        assert_eq!(
            urls("<https://a.org><https://b.org>"),
            ["https://a.org", "https://b.org"]
        );
        assert_eq!(urls("\"https://a.org/q\""), ["https://a.org/q"]);
        // Controls end a URL: what follows them is never part of a link.
        assert_eq!(
            urls("https://a.org/x\u{1b}[31m https://b.org/\u{202e}gpj.exe"),
            ["https://a.org/x", "https://b.org/"]
        );
    }

    #[test]
    fn trailing_punctuation_is_the_sentence_not_the_url() {
        assert_eq!(urls("go to https://x.org/a."), ["https://x.org/a"]);
        assert_eq!(
            urls("https://x.org/a, https://y.org/b;"),
            ["https://x.org/a", "https://y.org/b"]
        );
        assert_eq!(urls("really https://x.org?!"), ["https://x.org"]);
        assert_eq!(urls("https://x.org/a:"), ["https://x.org/a"]);
        assert_eq!(urls("'https://x.org/a'"), ["https://x.org/a"]);
        assert_eq!(urls("[https://x.org/a]."), ["https://x.org/a"]);
        // Brackets that belong to the URL stay.
        assert_eq!(
            urls("(https://en.wikipedia.org/wiki/Rust_(language))."),
            ["https://en.wikipedia.org/wiki/Rust_(language)"]
        );
        assert_eq!(urls("https://x.org/a?q[]=1"), ["https://x.org/a?q[]=1"]);
        // Inner punctuation stays.
        assert_eq!(urls("https://x.org/a.b,c!d"), ["https://x.org/a.b,c!d"]);
    }

    #[test]
    fn non_ascii_urls_are_found_and_encoded() {
        assert_eq!(urls("https://例え.jp/パス です"), ["https://例え.jp/パス"]);
        assert_eq!(osc8_target("https://x.org/é"), "https://x.org/%C3%A9");
    }

    #[test]
    fn osc8_targets_hold_only_safe_printable_ascii() {
        // Remote text has been sanitised before (ESC shown as ␛), but the target is safe on its
        // own: nothing here can end the OSC early or start another sequence.
        let nasty = "https://x.org/\u{1b}]8;;evil\u{1b}\\\u{7}\u{9b}␛ \"<>`{|}^\\";
        let target = osc8_target(nasty);
        assert!(target.bytes().all(|b| b.is_ascii_graphic()), "{target}");
        assert!(!target.contains('\\') && !target.contains('\u{1b}'));
        assert_eq!(
            osc8_target("https://x.org/a?b=c&d=%20#e"),
            "https://x.org/a?b=c&d=%20#e"
        );
    }
}
