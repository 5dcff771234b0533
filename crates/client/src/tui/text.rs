//! Laying out text in terminal cells: graphemes measured exactly as ratatui measures them (so a
//! wrapped line never overflows or leaves a gap), word wrap with a hard break for words longer than
//! a line, and a stable colour per username.

use std::sync::Arc;

use ratatui::buffer::CellWidth as _;
use ratatui::style::{Color, Style};
use ratatui::text::{Line, Span};
use unicode_segmentation::UnicodeSegmentation as _;

/// The cells a grapheme takes. Graphemes holding a control character take none (ratatui drops
/// them; [`crate::display::sanitize`] has replaced them before they get here anyway).
pub fn grapheme_width(g: &str) -> usize {
    if g.contains(char::is_control) {
        0
    } else {
        usize::from(g.cell_width())
    }
}

/// The cells a string takes.
pub fn text_width(s: &str) -> usize {
    s.graphemes(true).map(grapheme_width).sum()
}

/// Cuts `s` to at most `max` cells.
pub fn truncate(s: &str, max: usize) -> &str {
    let mut used = 0;
    for (i, g) in s.grapheme_indices(true) {
        let w = grapheme_width(g);
        if used + w > max {
            return &s[..i];
        }
        used += w;
    }
    s
}

/// Stable per-user colours: readable on dark and light backgrounds.
const PALETTE: [Color; 12] = [
    Color::Red,
    Color::Green,
    Color::Yellow,
    Color::Blue,
    Color::Magenta,
    Color::Cyan,
    Color::LightRed,
    Color::LightGreen,
    Color::LightYellow,
    Color::LightBlue,
    Color::LightMagenta,
    Color::LightCyan,
];

/// The colour of a username: FNV-1a of its lower-case form (names are unique without case), so
/// it is the same on every run and every machine.
pub fn user_color(name: &str) -> Color {
    let mut hash: u32 = 0x811c_9dc5;
    for b in name.bytes() {
        hash ^= u32::from(b.to_ascii_lowercase());
        hash = hash.wrapping_mul(0x0100_0193);
    }
    PALETTE[(hash % PALETTE.len() as u32) as usize]
}

/// Cells between tab stops in a message's text.
pub const TAB_WIDTH: usize = 8;

/// Cells `start..end` of a row show part of the URL `url` (which may go on over other rows).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Link {
    /// The first cell.
    pub start: usize,
    /// The cell after the last.
    pub end: usize,
    /// The whole URL, as shown.
    pub url: Arc<str>,
}

/// A laid-out row: what it shows, and which of its cells are links.
#[derive(Clone, Debug, Default)]
pub struct Row {
    /// The text.
    pub line: Line<'static>,
    /// The links, left to right.
    pub links: Vec<Link>,
}

/// Greedy word wrap into rows of at most `width` cells. Rows after the first start with `indent`
/// spaces. Spaces where a row breaks are dropped; a word longer than a row is broken between
/// graphemes (which is also how CJK text, which has no spaces, wraps).
///
/// With `build` false only the rows are counted (for the height cache), nothing is allocated.
#[derive(Debug)]
pub struct Wrapper {
    width: usize,
    indent: usize,
    build: bool,
    rows: usize,
    col: usize,
    lines: Vec<Line<'static>>,
    spans: Vec<Span<'static>>,
    run: String,
    run_style: Style,
    /// The current row holds nothing but its indent.
    fresh: bool,
    /// The column tab stops count from on the current row: where its text starts.
    origin: usize,
    /// The URL being put, while [`Wrapper::push_link`] runs.
    link: Option<Arc<str>>,
    /// The links of the rows done, and of the current row.
    links: Vec<Vec<Link>>,
    row_links: Vec<Link>,
}

impl Wrapper {
    /// A wrapper for rows of `width` cells (at least 1).
    pub fn new(width: usize, indent: usize, build: bool) -> Self {
        let width = width.max(1);
        Self {
            width,
            indent: if indent * 2 > width { 0 } else { indent },
            build,
            rows: 1,
            col: 0,
            lines: Vec::new(),
            spans: Vec::new(),
            run: String::new(),
            run_style: Style::default(),
            fresh: true,
            origin: 0,
            link: None,
            links: Vec::new(),
            row_links: Vec::new(),
        }
    }

    /// Adds text (no control characters; newlines are [`Wrapper::break_line`]).
    pub fn push(&mut self, text: &str, style: Style) {
        let mut rest = text;
        while !rest.is_empty() {
            let space = rest.starts_with(' ');
            let end = rest
                .find(|c: char| (c == ' ') != space)
                .unwrap_or(rest.len());
            let (token, tail) = rest.split_at(end);
            rest = tail;
            let w = text_width(token);
            if space {
                if self.col + w <= self.width {
                    self.put(token, w, style);
                } else {
                    // Spaces at a break vanish.
                    self.new_row();
                }
            } else if self.col + w <= self.width {
                self.put(token, w, style);
            } else if !self.fresh && w <= self.width - self.indent {
                self.new_row();
                self.put(token, w, style);
            } else {
                for g in token.graphemes(true) {
                    let gw = grapheme_width(g);
                    if self.col + gw > self.width && !self.fresh {
                        self.new_row();
                    }
                    self.put(g, gw, style);
                }
            }
        }
    }

    /// Adds a URL (no spaces, no control characters). Like a word, it goes to the next row when
    /// it does not fit on this one but does on a row of its own, so terminals that find URLs in
    /// the text see it whole; only a URL longer than a row is broken. Its cells are recorded as
    /// a [`Link`] on each row it takes.
    pub fn push_link(&mut self, url: &str, style: Style) {
        if self.build {
            self.link = Some(Arc::from(url));
        }
        self.push(url, style);
        self.link = None;
    }

    /// Ends the row: what follows starts on the next one (after the indent).
    pub fn break_line(&mut self) {
        self.new_row();
    }

    /// Tab stops on this row count from here (after `HH:MM user: `); on the next rows, from the
    /// indent.
    pub fn mark_origin(&mut self) {
        self.origin = self.col;
    }

    /// A tab: spaces up to the next stop, every [`TAB_WIDTH`] cells from the origin. Like other
    /// spaces they vanish where the row breaks (the next row starts on a stop anyway).
    pub fn tab(&mut self, style: Style) {
        let n = TAB_WIDTH - self.col.saturating_sub(self.origin) % TAB_WIDTH;
        self.push(&" ".repeat(n), style);
    }

    fn put(&mut self, s: &str, w: usize, style: Style) {
        if let Some(url) = &self.link {
            match self.row_links.last_mut() {
                Some(last) if last.end == self.col && Arc::ptr_eq(&last.url, url) => last.end += w,
                _ => self.row_links.push(Link {
                    start: self.col,
                    end: self.col + w,
                    url: Arc::clone(url),
                }),
            }
        }
        if self.build {
            if style != self.run_style && !self.run.is_empty() {
                self.flush_run();
            }
            self.run_style = style;
            self.run.push_str(s);
        }
        self.col += w;
        if w > 0 {
            self.fresh = false;
        }
    }

    fn flush_run(&mut self) {
        if !self.run.is_empty() {
            let text = std::mem::take(&mut self.run);
            self.spans.push(Span::styled(text, self.run_style));
        }
    }

    fn new_row(&mut self) {
        self.rows += 1;
        if self.build {
            self.flush_run();
            self.lines.push(Line::from(std::mem::take(&mut self.spans)));
            self.links.push(std::mem::take(&mut self.row_links));
            if self.indent > 0 {
                self.spans.push(Span::raw(" ".repeat(self.indent)));
            }
        }
        self.col = self.indent;
        self.origin = self.indent;
        self.fresh = true;
    }

    /// The rows so far.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// The rows, built.
    pub fn finish(self) -> Vec<Line<'static>> {
        self.finish_rows().into_iter().map(|row| row.line).collect()
    }

    /// The rows, built, with their links.
    pub fn finish_rows(mut self) -> Vec<Row> {
        self.flush_run();
        self.lines.push(Line::from(std::mem::take(&mut self.spans)));
        self.links.push(std::mem::take(&mut self.row_links));
        self.lines
            .into_iter()
            .zip(self.links)
            .map(|(line, links)| Row { line, links })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The time column is measured by `gc-client-settings` (which checks `timestamp-format`
    /// without ratatui): its measure must be ratatui's, or the column would be padded wrong.
    #[test]
    fn the_settings_measure_text_as_ratatui_does() {
        let mut s = String::new();
        for c in (0..=0x10_FFFF).filter_map(char::from_u32) {
            s.clear();
            s.push(c);
            assert_eq!(gc_client_settings::text_width(&s), text_width(&s), "{c:?}");
        }
        for s in [
            "e\u{301}",
            "ｶﾞﾟ",
            "\u{1F468}\u{200D}\u{1F469}\u{200D}\u{1F467}",
            "\u{2764}\u{FE0F}",
            "\u{1F1EB}\u{1F1F7}",
            "水曜日 23:59",
            "a\r\nb",
            "\u{1100}\u{1161}\u{11A8}",
        ] {
            assert_eq!(gc_client_settings::text_width(s), text_width(s), "{s:?}");
        }
    }

    fn wrap(text: &str, width: usize, indent: usize) -> Vec<String> {
        let mut w = Wrapper::new(width, indent, true);
        for (i, part) in text.split('\n').enumerate() {
            if i > 0 {
                w.break_line();
            }
            w.push(part, Style::default());
        }
        let rows = w.rows();
        let lines: Vec<String> = w.finish().iter().map(ToString::to_string).collect();
        assert_eq!(lines.len(), rows, "counted rows match built rows");
        let mut counter = Wrapper::new(width, indent, false);
        for (i, part) in text.split('\n').enumerate() {
            if i > 0 {
                counter.break_line();
            }
            counter.push(part, Style::default());
        }
        assert_eq!(counter.rows(), rows, "measuring matches building");
        lines
    }

    #[test]
    fn words_wrap_at_spaces() {
        assert_eq!(
            wrap("the quick brown fox jumps", 10, 0),
            ["the quick ", "brown fox ", "jumps"]
        );
        assert_eq!(wrap("short", 10, 0), ["short"]);
        assert_eq!(wrap("", 10, 0), [""]);
    }

    #[test]
    fn continuation_rows_are_indented() {
        assert_eq!(
            wrap("aaaa bbbb cccc dddd", 10, 2),
            ["aaaa bbbb ", "  cccc ", "  dddd"]
        );
        assert_eq!(wrap("one\ntwo", 10, 3), ["one", "   two"]);
    }

    #[test]
    fn long_words_break_hard() {
        assert_eq!(
            wrap("abcdefghijklmnopqrstuvwxyz", 10, 0),
            ["abcdefghij", "klmnopqrst", "uvwxyz"]
        );
        // A word longer than a row fills the rest of the current row first.
        assert_eq!(wrap("x abcdefghijkl", 5, 0), ["x abc", "defgh", "ijkl"]);
    }

    #[test]
    fn wide_characters_never_straddle_a_row() {
        // Each ideograph is 2 cells: 4 fit in 9 cells, the 5th goes to the next row.
        let rows = wrap("日本語日本語", 9, 0);
        assert_eq!(rows, ["日本語日", "本語"]);
        for row in &rows {
            assert!(text_width(row) <= 9);
        }
        assert_eq!(text_width("👍🏽"), 2);
        assert_eq!(text_width("e\u{301}"), 1);
        assert_eq!(wrap("ab 👍👍👍", 5, 0), ["ab 👍", "👍👍"]);
    }

    #[test]
    fn tabs_go_to_the_next_stop_from_the_origin() {
        let build = |width: usize| {
            let mut w = Wrapper::new(width, 2, true);
            w.push("> ", Style::default());
            w.mark_origin();
            for (i, part) in ["a", "bcdefgh", "12345678", "x"].iter().enumerate() {
                if i > 0 {
                    w.tab(Style::default());
                }
                w.push(part, Style::default());
            }
            w.break_line();
            w.tab(Style::default());
            w.push("y", Style::default());
            let rows = w.rows();
            let lines: Vec<String> = w.finish().iter().map(ToString::to_string).collect();
            assert_eq!(lines.len(), rows);
            lines
        };
        // `a` then 7 spaces; `bcdefgh` then 1; `12345678` fills its 8 and the tab takes 8 more.
        assert_eq!(
            build(40),
            ["> a       bcdefgh 12345678        x", "          y"]
        );
        // A tab that would cross the edge breaks the row and vanishes, like a space.
        assert_eq!(
            build(30),
            ["> a       bcdefgh 12345678", "  x", "          y"]
        );
    }

    #[test]
    fn links_record_their_cells_on_every_row() {
        let mut w = Wrapper::new(12, 2, true);
        w.push("ab ", Style::default());
        w.push_link("http://x.y/z", Style::default());
        w.push(" c", Style::default());
        // 12 cells: longer than a row after the indent (10), so it is broken like a long word,
        // filling the first row.
        let rows = w.finish_rows();
        let texts: Vec<String> = rows.iter().map(|r| r.line.to_string()).collect();
        assert_eq!(texts, ["ab http://x.", "  y/z c"]);
        let url: Arc<str> = Arc::from("http://x.y/z");
        assert_eq!(
            rows[0].links,
            [Link {
                start: 3,
                end: 12,
                url: Arc::clone(&url)
            }]
        );
        assert_eq!(
            rows[1].links,
            [Link {
                start: 2,
                end: 5,
                url
            }]
        );

        // One that fits on a row of its own moves there whole.
        let mut w = Wrapper::new(20, 2, true);
        w.push("see ", Style::default());
        w.push_link("https://x.org/abc", Style::default());
        let rows = w.finish_rows();
        let texts: Vec<String> = rows.iter().map(|r| r.line.to_string()).collect();
        assert_eq!(texts, ["see ", "  https://x.org/abc"]);
        assert_eq!((rows[1].links[0].start, rows[1].links[0].end), (2, 19));
    }

    #[test]
    fn truncation_by_cells() {
        assert_eq!(truncate("日本語", 5), "日本");
        assert_eq!(truncate("abc", 5), "abc");
        assert_eq!(truncate("abc", 0), "");
    }

    #[test]
    fn user_colours_are_stable_and_case_blind() {
        // Pinned: a changed hash or palette would give everyone new colours between versions.
        for (name, colour) in [
            ("alice", Color::LightCyan),
            ("bob", Color::LightYellow),
            ("carol", Color::Yellow),
            ("dave", Color::LightGreen),
            ("eve", Color::LightBlue),
            ("mallory", Color::Green),
        ] {
            assert_eq!(user_color(name), colour, "{name}");
        }
        assert_eq!(user_color("alice"), user_color("ALICE"));
        assert_eq!(user_color("MalLory"), Color::Green, "case-blind");
        let distinct: std::collections::HashSet<_> = ["alice", "bob", "carol", "dave", "eve"]
            .iter()
            .map(|n| format!("{:?}", user_color(n)))
            .collect();
        assert!(distinct.len() >= 3, "names spread over the palette");
    }
}
