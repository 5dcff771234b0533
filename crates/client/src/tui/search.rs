//! `/search`: which loaded entries hold a text (any case), which match is shown, and the keys that
//! move between matches (Ctrl+P older, Ctrl+N newer). Scrolling to the match is the app's.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

use super::scrollback::Entry;

/// A `/search` in progress.
#[derive(Debug, Clone)]
pub struct Search {
    /// What is searched (as typed).
    pub query: String,
    /// Indices of the matching entries, oldest first.
    pub matches: Vec<usize>,
    /// The match shown (index into `matches`).
    pub current: usize,
}

/// A move between matches.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Step {
    /// To the previous, older match (Ctrl+P).
    Older,
    /// To the next, newer match (Ctrl+N).
    Newer,
}

impl Step {
    /// The move `key` asks for, if it is one.
    pub fn for_key(key: &KeyEvent) -> Option<Self> {
        if !key.modifiers.contains(KeyModifiers::CONTROL) {
            return None;
        }
        match key.code {
            KeyCode::Char('p') => Some(Self::Older),
            KeyCode::Char('n') => Some(Self::Newer),
            _ => None,
        }
    }
}

impl Search {
    /// The entries holding `query` (any case), showing the newest match; `None` when none does.
    pub fn find(query: &str, entries: &[Entry]) -> Option<Self> {
        // Entry::matches folds an ASCII needle itself; lowering it once here saves that per entry.
        let needle = if query.is_ascii() {
            query.to_ascii_lowercase()
        } else {
            query.to_owned()
        };
        let matches: Vec<usize> = entries
            .iter()
            .enumerate()
            .filter(|(_, e)| e.matches(&needle))
            .map(|(i, _)| i)
            .collect();
        let current = matches.len().checked_sub(1)?;
        Some(Self {
            query: query.to_owned(),
            matches,
            current,
        })
    }

    /// Moves to an older or newer match; at the oldest or newest it stays.
    pub fn step(&mut self, step: Step) {
        match step {
            Step::Newer if self.current + 1 < self.matches.len() => self.current += 1,
            Step::Older if self.current > 0 => self.current -= 1,
            Step::Newer | Step::Older => {}
        }
    }

    /// The entry of the match shown.
    pub fn shown(&self) -> Option<usize> {
        self.matches.get(self.current).copied()
    }

    /// `n` older entries were put in front of those searched: the matches are `n` further on.
    pub fn shift(&mut self, n: usize) {
        for m in &mut self.matches {
            *m += n;
        }
    }
}

#[cfg(test)]
mod tests {
    use chrono::{TimeZone as _, Utc};

    use super::super::scrollback::{Kind, Level};
    use super::*;

    fn entry(text: &str) -> Entry {
        let at = Utc.timestamp_opt(0, 0).unwrap().fixed_offset();
        Entry::new(
            at,
            Kind::Notice {
                level: Level::Info,
                text: text.into(),
            },
        )
    }

    #[test]
    fn case_blind_search() {
        assert!(entry("Hello World").matches("world"));
        assert!(entry("hello world").matches("WORLD"));
        assert!(entry("abc").matches(""));
        assert!(!entry("ab").matches("abc"));
        assert!(entry("日本語 Text").matches("text"));
        assert!(entry("ÉCOLE").matches("école"));
        assert!(!entry("hello").matches("world"));
    }

    #[test]
    fn steps_stop_at_the_oldest_and_newest_match() {
        let entries: Vec<Entry> = ["a Needle", "b", "needle c", "NEEDLE", "d"]
            .into_iter()
            .map(entry)
            .collect();
        assert!(Search::find("absent", &entries).is_none());
        let mut search = Search::find("neeDle", &entries).unwrap();
        assert_eq!(search.matches, [0, 2, 3]);
        assert_eq!(search.shown(), Some(3), "the newest first");
        search.step(Step::Newer);
        assert_eq!(search.shown(), Some(3));
        for _ in 0..3 {
            search.step(Step::Older);
        }
        assert_eq!(search.shown(), Some(0));
        search.shift(10);
        assert_eq!(search.shown(), Some(10));
        search.step(Step::Newer);
        assert_eq!(search.shown(), Some(12));
    }

    #[test]
    fn ctrl_p_and_ctrl_n_are_the_steps() {
        let ctrl = |c| KeyEvent::new(KeyCode::Char(c), KeyModifiers::CONTROL);
        assert_eq!(Step::for_key(&ctrl('p')), Some(Step::Older));
        assert_eq!(Step::for_key(&ctrl('n')), Some(Step::Newer));
        assert_eq!(Step::for_key(&ctrl('j')), None);
        let plain = KeyEvent::new(KeyCode::Char('n'), KeyModifiers::NONE);
        assert_eq!(Step::for_key(&plain), None);
    }
}
