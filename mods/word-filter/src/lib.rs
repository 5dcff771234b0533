//! A gc server plugin that rewrites listed words and blocks messages matching patterns.
//!
//! Configured by `word-filter.txt` beside the library (see the example in this crate): lines
//! `replace WORD WITH` and `block PATTERN` (a regular expression); `#` starts a comment. Without
//! the file the filter lets everything through and says so in the server log.

use gc_plugin::guest::{Host, Plugin, Verdict};
use regex::Regex;

/// The name of the configuration file, looked up beside the plugin.
pub const CONFIG_FILE: &str = "word-filter.txt";

/// The loaded rules.
#[derive(Debug)]
pub struct WordFilter {
    replace: Vec<(Regex, String)>,
    block: Vec<Regex>,
}

impl WordFilter {
    /// Parses the configuration text; errors name the line.
    pub fn parse(text: &str) -> Result<Self, String> {
        let mut filter = Self {
            replace: Vec::new(),
            block: Vec::new(),
        };
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: String| format!("{CONFIG_FILE} line {}: {why}", n + 1);
            match line.split_once(char::is_whitespace) {
                Some(("replace", rest)) => {
                    let (word, with) = rest
                        .trim()
                        .split_once(char::is_whitespace)
                        .ok_or_else(|| bad("`replace` needs a word and its replacement".into()))?;
                    let re = Regex::new(&format!(r"(?i)\b{}\b", regex::escape(word)))
                        .map_err(|e| bad(e.to_string()))?;
                    filter.replace.push((re, with.trim().to_owned()));
                }
                Some(("block", pattern)) => {
                    let re = Regex::new(pattern.trim()).map_err(|e| bad(e.to_string()))?;
                    filter.block.push(re);
                }
                _ => return Err(bad(format!("expected `replace` or `block`, got `{line}`"))),
            }
        }
        Ok(filter)
    }

    /// Applies the rules to a message.
    pub fn check(&self, text: &str) -> Verdict {
        if let Some(re) = self.block.iter().find(|re| re.is_match(text)) {
            return Verdict::Block(format!(
                "your message matches a blocked pattern ({re}); rephrase it"
            ));
        }
        let mut out = text.to_owned();
        for (re, with) in &self.replace {
            out = re.replace_all(&out, regex::NoExpand(with)).into_owned();
        }
        if out == text {
            Verdict::Pass
        } else {
            Verdict::Rewrite(out)
        }
    }
}

impl Plugin for WordFilter {
    fn init(host: Host) -> Result<Self, String> {
        let path = host.mods_dir().join(CONFIG_FILE);
        match std::fs::read_to_string(&path) {
            Ok(text) => {
                let filter = Self::parse(&text)?;
                host.info(&format!(
                    "{} replacements, {} block patterns from {}",
                    filter.replace.len(),
                    filter.block.len(),
                    path.display()
                ));
                Ok(filter)
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                host.warn(&format!("no {} found; filtering nothing", path.display()));
                Self::parse("")
            }
            Err(e) => Err(format!("cannot read {}: {e}", path.display())),
        }
    }

    fn on_message_received(&self, _user: &str, _room: &str, text: &str) -> Result<Verdict, String> {
        Ok(self.check(text))
    }
}

gc_plugin::declare_plugin!(
    WordFilter,
    name = "word-filter",
    version = env!("CARGO_PKG_VERSION"),
    hooks = [on_message_received],
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_whole_words_in_any_case_and_blocks_patterns() {
        let f = WordFilter::parse(include_str!("../word-filter.txt")).unwrap();
        assert_eq!(
            f.check("Darn it, darnation, DARN"),
            Verdict::Rewrite("d**n it, darnation, d**n".into())
        );
        assert_eq!(f.check("hello"), Verdict::Pass);
        assert!(matches!(f.check("Buy Now! cheap"), Verdict::Block(_)));
    }

    #[test]
    fn bad_lines_are_named() {
        let err = WordFilter::parse("replace\n").unwrap_err();
        assert!(err.contains("line 1"), "{err}");
        let err = WordFilter::parse("# c\nblock (\n").unwrap_err();
        assert!(err.contains("line 2"), "{err}");
        assert!(WordFilter::parse("frobnicate x").is_err());
    }
}
