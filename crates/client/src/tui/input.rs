//! The text being typed: a multi-line buffer with a cursor, readline-style editing (and the keys
//! for it, shared by the message input and the login form's fields), a history of what was sent,
//! and its layout in a box that grows to a few rows and then scrolls.

use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
use unicode_segmentation::UnicodeSegmentation as _;

use super::text::grapheme_width;
use crate::display::sanitize;

/// Most entries kept in the history of sent lines.
pub const HISTORY_MAX: usize = 500;

/// An editable text with a cursor (a byte offset on a grapheme boundary).
#[derive(Debug, Default, Clone)]
pub struct InputBox {
    text: String,
    cursor: usize,
    history: Vec<String>,
    /// Which history entry is shown while recalling (index into `history`).
    recall: Option<usize>,
    /// What was being typed before recalling began.
    draft: String,
}

impl InputBox {
    /// The text.
    pub fn text(&self) -> &str {
        &self.text
    }

    /// The cursor's byte offset.
    pub fn cursor(&self) -> usize {
        self.cursor
    }

    /// Nothing typed.
    pub fn is_empty(&self) -> bool {
        self.text.is_empty()
    }

    /// Replaces the text, cursor at the end.
    pub fn set(&mut self, text: impl Into<String>) {
        self.text = text.into();
        self.cursor = self.text.len();
    }

    /// Takes the text out, leaving the box empty, and ends recalling.
    pub fn take(&mut self) -> String {
        self.cursor = 0;
        self.recall = None;
        self.draft.clear();
        std::mem::take(&mut self.text)
    }

    /// Remembers a sent line for Up/Down (not twice in a row).
    pub fn remember(&mut self, line: &str) {
        if self.history.last().map(String::as_str) != Some(line) {
            self.history.push(line.to_owned());
            if self.history.len() > HISTORY_MAX {
                self.history.remove(0);
            }
        }
        self.recall = None;
    }

    /// Inserts text at the cursor (newlines kept; CR LF and lone CR become LF).
    pub fn insert(&mut self, s: &str) {
        let s = if s.contains('\r') {
            s.replace("\r\n", "\n").replace('\r', "\n")
        } else {
            s.to_owned()
        };
        self.text.insert_str(self.cursor, &s);
        self.cursor += s.len();
    }

    /// Replaces the text from `start` to the cursor with `with`, the cursor after it (Tab puts a
    /// completion in place of the word, or of the previous completion). Nothing happens when
    /// `start` is not a character boundary before the cursor.
    pub fn replace_before_cursor(&mut self, start: usize, with: &str) {
        if start > self.cursor || !self.text.is_char_boundary(start) {
            return;
        }
        self.text.replace_range(start..self.cursor, with);
        self.cursor = start + with.len();
    }

    /// Inserts a bracketed paste: its line ends as [`InputBox::insert`] makes them, less the
    /// final ones (see `without_final_line_ends`); the inner ones stay.
    pub fn paste(&mut self, text: &str) {
        self.insert(without_final_line_ends(text));
    }

    /// Inserts one character.
    pub fn insert_char(&mut self, c: char) {
        self.text.insert(self.cursor, c);
        self.cursor += c.len_utf8();
    }

    fn prev_boundary(&self) -> usize {
        self.text[..self.cursor]
            .grapheme_indices(true)
            .next_back()
            .map_or(0, |(i, _)| i)
    }

    fn next_boundary(&self) -> usize {
        self.text[self.cursor..]
            .graphemes(true)
            .next()
            .map_or(self.cursor, |g| self.cursor + g.len())
    }

    /// Deletes the grapheme before the cursor.
    pub fn backspace(&mut self) {
        let start = self.prev_boundary();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Deletes the grapheme after the cursor.
    pub fn delete(&mut self) {
        let end = self.next_boundary();
        self.text.replace_range(self.cursor..end, "");
    }

    /// One grapheme left.
    pub fn left(&mut self) {
        self.cursor = self.prev_boundary();
    }

    /// One grapheme right.
    pub fn right(&mut self) {
        self.cursor = self.next_boundary();
    }

    fn word_start_before(&self) -> usize {
        let before = &self.text[..self.cursor];
        let trimmed = before.trim_end_matches(char::is_whitespace);
        trimmed.rfind(char::is_whitespace).map_or(0, |i| {
            i + trimmed[i..].chars().next().map_or(1, char::len_utf8)
        })
    }

    fn word_end_after(&self) -> usize {
        let after = &self.text[self.cursor..];
        let skipped = after.len() - after.trim_start_matches(char::is_whitespace).len();
        let rest = &after[skipped..];
        self.cursor + skipped + rest.find(char::is_whitespace).unwrap_or(rest.len())
    }

    /// One word left.
    pub fn word_left(&mut self) {
        self.cursor = self.word_start_before();
    }

    /// One word right.
    pub fn word_right(&mut self) {
        self.cursor = self.word_end_after();
    }

    fn line_start(&self) -> usize {
        self.text[..self.cursor].rfind('\n').map_or(0, |i| i + 1)
    }

    fn line_end(&self) -> usize {
        self.text[self.cursor..]
            .find('\n')
            .map_or(self.text.len(), |i| self.cursor + i)
    }

    /// To the start of the current line.
    pub fn home(&mut self) {
        self.cursor = self.line_start();
    }

    /// To the end of the current line.
    pub fn end(&mut self) {
        self.cursor = self.line_end();
    }

    /// Ctrl+W: deletes the word before the cursor (and the spaces after it).
    pub fn delete_word_before(&mut self) {
        let start = self.word_start_before();
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Ctrl+U: deletes from the start of the current line to the cursor (at a line start, the
    /// newline before it).
    pub fn delete_to_line_start(&mut self) {
        let mut start = self.line_start();
        if start == self.cursor && start > 0 {
            start -= 1;
        }
        self.text.replace_range(start..self.cursor, "");
        self.cursor = start;
    }

    /// Ctrl+K: deletes from the cursor to the end of the current line.
    pub fn delete_to_line_end(&mut self) {
        let end = self.line_end();
        self.text.replace_range(self.cursor..end, "");
    }

    /// Up: to the line above; on the first line, recalls the previous sent line. False when
    /// there is nothing older.
    pub fn up(&mut self) -> bool {
        let start = self.line_start();
        if start > 0 {
            let col = self.text[start..self.cursor].graphemes(true).count();
            let prev_start = self.text[..start - 1].rfind('\n').map_or(0, |i| i + 1);
            self.cursor = advance(&self.text, prev_start, start - 1, col);
            return true;
        }
        let next = match self.recall {
            None if self.history.is_empty() => return false,
            None => {
                self.draft = self.text.clone();
                self.history.len() - 1
            }
            Some(0) => return false,
            Some(i) => i - 1,
        };
        self.recall = Some(next);
        self.set(self.history[next].clone());
        true
    }

    /// Down: to the line below; on the last line, recalls the next sent line (after the newest,
    /// what was being typed). False when there is nothing newer.
    pub fn down(&mut self) -> bool {
        let end = self.line_end();
        if end < self.text.len() {
            let start = self.line_start();
            let col = self.text[start..self.cursor].graphemes(true).count();
            let next_end = self.text[end + 1..]
                .find('\n')
                .map_or(self.text.len(), |i| end + 1 + i);
            self.cursor = advance(&self.text, end + 1, next_end, col);
            return true;
        }
        match self.recall {
            None => false,
            Some(i) if i + 1 < self.history.len() => {
                self.recall = Some(i + 1);
                self.set(self.history[i + 1].clone());
                true
            }
            Some(_) => {
                self.recall = None;
                let draft = std::mem::take(&mut self.draft);
                self.set(draft);
                true
            }
        }
    }

    /// The editing keys every text field shares: characters, deletion, and moves by character,
    /// word and line. Other keys do nothing.
    pub fn edit_key(&mut self, key: KeyEvent) {
        let ctrl = key.modifiers.contains(KeyModifiers::CONTROL);
        let alt = key.modifiers.contains(KeyModifiers::ALT);
        match key.code {
            KeyCode::Char('a') if ctrl => self.home(),
            KeyCode::Char('e') if ctrl => self.end(),
            KeyCode::Char('w') if ctrl => self.delete_word_before(),
            KeyCode::Char('u') if ctrl => self.delete_to_line_start(),
            KeyCode::Char('k') if ctrl => self.delete_to_line_end(),
            KeyCode::Char('b') if alt => self.word_left(),
            KeyCode::Char('f') if alt => self.word_right(),
            KeyCode::Backspace if ctrl || alt => self.delete_word_before(),
            KeyCode::Char(c) if !ctrl && !alt => self.insert_char(c),
            KeyCode::Backspace => self.backspace(),
            KeyCode::Delete => self.delete(),
            KeyCode::Left if ctrl || alt => self.word_left(),
            KeyCode::Right if ctrl || alt => self.word_right(),
            KeyCode::Left => self.left(),
            KeyCode::Right => self.right(),
            KeyCode::Home => self.home(),
            KeyCode::End => self.end(),
            _ => {}
        }
    }

    /// The text laid out in rows of `width` cells (the first row after a prompt of `prompt`
    /// cells, the others indented as much), made harmless for the terminal, and the cursor's
    /// (row, column).
    pub fn layout(&self, width: usize, prompt: usize) -> (Vec<String>, (usize, usize)) {
        let width = width.max(prompt + 1);
        let mut rows = vec![String::new()];
        let mut col = prompt;
        let mut cursor = (0, prompt);
        for (i, g) in self.text.grapheme_indices(true) {
            if i == self.cursor {
                cursor = (rows.len() - 1, col);
            }
            if g == "\n" || g == "\r\n" {
                rows.push(String::new());
                col = prompt;
                continue;
            }
            let shown = sanitize(g);
            let w = grapheme_width(&shown);
            if col + w > width {
                rows.push(String::new());
                col = prompt;
                if i == self.cursor {
                    cursor = (rows.len() - 1, col);
                }
            }
            if let Some(row) = rows.last_mut() {
                row.push_str(&shown);
            }
            col += w;
        }
        if self.cursor >= self.text.len() {
            if col >= width {
                rows.push(String::new());
                col = prompt;
            }
            cursor = (rows.len() - 1, col);
        }
        (rows, cursor)
    }
}

/// A paste without what copying whole lines takes along after its last line of text: the final
/// line ends (LF, CR LF, or the CR a terminal sends for one) and the blank lines among them (an
/// editor's indentation), which would be sent and stored as part of the message. The last line's
/// own trailing spaces stay, as does a paste with no line end at its end.
fn without_final_line_ends(text: &str) -> &str {
    let content = text.trim_end();
    let tail = &text[content.len()..];
    match tail.find(['\n', '\r']) {
        Some(i) => &text[..content.len() + i],
        None => text,
    }
}

/// The offset `col` graphemes after `from`, at most `limit`.
fn advance(text: &str, from: usize, limit: usize, col: usize) -> usize {
    text[from..limit]
        .grapheme_indices(true)
        .nth(col)
        .map_or(limit, |(i, _)| from + i)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn typed(s: &str) -> InputBox {
        let mut b = InputBox::default();
        b.insert(s);
        b
    }

    #[test]
    fn editing_by_grapheme() {
        let mut b = typed("ae\u{301}日");
        b.backspace();
        assert_eq!(b.text(), "ae\u{301}");
        b.left();
        assert_eq!(b.cursor(), 1);
        b.delete();
        assert_eq!(b.text(), "a");
        b.right();
        b.insert_char('👍');
        assert_eq!(b.text(), "a👍");
    }

    #[test]
    fn ctrl_w_and_ctrl_u() {
        let mut b = typed("hello big  world  ");
        b.delete_word_before();
        assert_eq!(b.text(), "hello big  ");
        b.delete_word_before();
        assert_eq!(b.text(), "hello ");
        let mut b = typed("first line\nsecond line");
        b.delete_to_line_start();
        assert_eq!(b.text(), "first line\n");
        b.delete_to_line_start();
        assert_eq!(b.text(), "first line");
        b.home();
        b.word_right();
        b.delete_to_line_end();
        assert_eq!(b.text(), "first");
    }

    #[test]
    fn replacing_the_word_before_the_cursor() {
        let mut b = typed("hi bo and");
        for _ in 0.." and".len() {
            b.left();
        }
        b.replace_before_cursor(3, "bobby ");
        assert_eq!(b.text(), "hi bobby  and");
        assert_eq!(b.cursor(), "hi bobby ".len());
        b.replace_before_cursor(3, "bob ");
        assert_eq!(b.text(), "hi bob  and");
        let mut b = typed("é");
        b.replace_before_cursor(1, "x");
        assert_eq!(b.text(), "é", "not a character boundary: left alone");
        b.replace_before_cursor(5, "x");
        assert_eq!(b.text(), "é", "after the cursor: left alone");
    }

    #[test]
    fn paste_normalises_line_ends() {
        let b = typed("a\r\nb\rc\nd");
        assert_eq!(b.text(), "a\nb\nc\nd");
    }

    #[test]
    fn a_paste_drops_its_final_line_ends() {
        for (pasted, kept) in [
            ("a\r\nb\r\n", "a\nb"),
            ("a\rb\r", "a\nb"),
            ("a\n\n", "a"),
            ("a\r\n\r\n", "a"),
            ("a\r\r", "a"),
            ("a\n\nb\n", "a\n\nb"),
            // Blank lines at the end (an editor's indentation) go too; the last line's own
            // spaces, inner blank lines and a paste without a line end stay as they are.
            ("fn x() {\n    y();\n}\n    \n", "fn x() {\n    y();\n}"),
            ("a  \n", "a  "),
            ("a  ", "a  "),
            ("a", "a"),
            ("\r\n", ""),
        ] {
            let mut b = InputBox::default();
            b.paste(pasted);
            assert_eq!(b.text(), kept, "{pasted:?}");
            assert_eq!(b.cursor(), kept.len());
        }
    }

    #[test]
    fn history_recall_keeps_the_draft() {
        let mut b = InputBox::default();
        b.remember("one");
        b.remember("two");
        b.remember("two");
        b.insert("draft");
        assert!(b.up());
        assert_eq!(b.text(), "two");
        assert!(b.up());
        assert_eq!(b.text(), "one");
        assert!(!b.up(), "nothing older");
        assert!(b.down());
        assert_eq!(b.text(), "two");
        assert!(b.down());
        assert_eq!(b.text(), "draft");
        assert!(!b.down());
    }

    #[test]
    fn up_and_down_move_between_lines_first() {
        let mut b = InputBox::default();
        b.remember("old");
        b.insert("abc\nde");
        assert!(b.up());
        assert_eq!(b.cursor(), 2, "same column on the line above");
        assert!(b.up());
        assert_eq!(b.text(), "old", "then history");
        assert!(b.down());
        assert_eq!(b.text(), "abc\nde");
        b.set("abc\nde");
        b.home();
        b.up();
        b.end();
        assert!(b.down());
        assert_eq!(
            b.cursor(),
            b.text().len(),
            "column clamped to the shorter line"
        );
    }

    #[test]
    fn layout_wraps_and_places_the_cursor() {
        let b = typed("hello world\nx");
        let (rows, cursor) = b.layout(8, 2);
        assert_eq!(rows, ["hello ", "world", "x"]);
        assert_eq!(cursor, (2, 3));
        let b = typed("日本語");
        let (rows, cursor) = b.layout(6, 2);
        assert_eq!(rows, ["日本", "語"]);
        assert_eq!(cursor, (1, 4));
        let b = typed("abcd");
        let (rows, cursor) = b.layout(6, 2);
        assert_eq!(rows, ["abcd", ""], "a full row puts the cursor on the next");
        assert_eq!(cursor, (1, 2));
        let b = typed("tab\there\u{1b}");
        assert_eq!(b.layout(40, 2).0, ["tab␉here␛"]);
    }
}
