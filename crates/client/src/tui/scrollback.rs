//! The message pane's contents: entries (messages and notices) in order, their wrapped heights
//! cached per width, and a scroll anchor, so that drawing and scrolling only ever look at the
//! entries on screen, however many are loaded.
//!
//! Position is kept as an [`Anchor`]: the entry and row shown on the pane's bottom line, or
//! nothing to follow the newest. Scrolling walks entry heights from the anchor; drawing walks up
//! from it until the pane is full. Older entries put in front shift the anchor; newer ones
//! appended while scrolled up are counted for the "new messages below" marker.

use std::cell::Cell;
use std::sync::Arc;

use chrono::{DateTime, FixedOffset, NaiveDate};
use ratatui::style::{Modifier, Style};
use ratatui::text::{Line, Span};

use gc_protocol::ContentHash;
use gc_protocol::files::FileNotice;

use super::files::human_size;
use super::look::{Look, Theme};
use super::text::{Row, Wrapper, text_width};
use super::urls;
use crate::display::sanitize;

/// Cells before a message's text on continuation rows with the default time column (`HH:MM `;
/// another `timestamp-format` makes it [`super::look::TimeColumn::indent`]).
pub const INDENT: usize = 6;

/// The line drawn before the first record that came since the user last saw a conversation.
pub const NEW_SINCE_LEFT: &str = " new since you left ";

/// How a notice is shown.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Level {
    /// Joins, leaves, help, "account created": dimmed.
    Info,
    /// Connection trouble: yellow.
    Warning,
    /// Refused messages, failed commands: red.
    Error,
}

/// What an entry shows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Kind {
    /// A record from the server.
    Message {
        /// The record id.
        id: u64,
        /// Who wrote it.
        user: String,
        /// The raw body (made harmless when laid out).
        body: String,
        /// Written by the user of this client.
        own: bool,
        /// Mentions the user of this client.
        mention: bool,
    },
    /// A notice the server stored as a record from `System` (`bob joined`, `mallory was banned
    /// by bob: spam`): shown like the client's own notices, but it has a record id (so paging
    /// older messages counts it) and the server's words.
    System {
        /// The record id.
        id: u64,
        /// The server's text (made harmless when laid out).
        text: String,
    },
    /// Something the client says.
    Notice {
        /// How it is shown.
        level: Level,
        /// The text (may hold newlines).
        text: String,
    },
}

/// One line of conversation (it may wrap over several rows).
#[derive(Debug)]
pub struct Entry {
    /// When, in the display zone.
    pub time: DateTime<FixedOffset>,
    /// What.
    pub kind: Kind,
    /// (width, rows of the body) of the last measurement; width 0 when none.
    cache: Cell<(u16, u32)>,
    /// The text with ASCII letters in lower case, when that differs from the text: `/search`
    /// compares with `str::contains` (fast enough for 100,000 messages in one key press).
    folded: Option<Box<str>>,
}

impl Entry {
    /// An entry.
    pub fn new(time: DateTime<FixedOffset>, kind: Kind) -> Self {
        let text = match &kind {
            Kind::Message { body, .. } => body,
            Kind::System { text, .. } | Kind::Notice { text, .. } => text,
        };
        let folded = text
            .bytes()
            .any(|b| b.is_ascii_uppercase())
            .then(|| text.to_ascii_lowercase().into_boxed_str());
        Self {
            time,
            kind,
            cache: Cell::new((0, 0)),
            folded,
        }
    }

    /// The record id of a message or of a server's notice.
    pub fn message_id(&self) -> Option<u64> {
        match self.kind {
            Kind::Message { id, .. } | Kind::System { id, .. } => Some(id),
            Kind::Notice { .. } => None,
        }
    }

    fn day(&self) -> NaiveDate {
        self.time.date_naive()
    }

    /// The text searched by `/search`.
    pub fn searchable(&self) -> &str {
        match &self.kind {
            Kind::Message { body, .. } => body,
            Kind::System { text, .. } | Kind::Notice { text, .. } => text,
        }
    }

    /// Whether the text contains `needle`, ignoring case (ASCII letters compared through the
    /// folded copy, others through `to_lowercase`).
    pub fn matches(&self, needle: &str) -> bool {
        if needle.is_ascii() {
            let text = self.folded.as_deref().unwrap_or(self.searchable());
            if needle.bytes().any(|b| b.is_ascii_uppercase()) {
                text.contains(&needle.to_ascii_lowercase())
            } else {
                text.contains(needle)
            }
        } else {
            self.searchable()
                .to_lowercase()
                .contains(&needle.to_lowercase())
        }
    }
}

/// The `/me` prefix: a body starting with it is an action, shown as `* user rest`.
pub const ME_PREFIX: &str = "/me ";

/// Lays out one message or notice (without its date separator) into `w`, its time as `look`
/// says.
pub fn layout_entry(w: &mut Wrapper, entry: &Entry, dim: bool, look: &Look) {
    let time = look.time.stamp(entry.time);
    let theme = &look.theme;
    let time_style = theme.dim;
    match &entry.kind {
        Kind::Message {
            user,
            body,
            own,
            mention,
            ..
        } => layout_message(w, &time, user, body, *own, *mention, dim, theme),
        Kind::System { text, .. } => {
            let style = notice_style(Level::Info, theme);
            w.push(&time, time_style);
            w.push("-- ", style);
            push_paragraphs(w, text, style);
        }
        Kind::Notice { level, text } => {
            let (mark, style) = match level {
                Level::Info => ("-- ", notice_style(Level::Info, theme)),
                Level::Warning | Level::Error => ("!! ", notice_style(*level, theme)),
            };
            w.push(&time, time_style);
            w.push(mark, style);
            push_paragraphs(w, text, style);
        }
    }
}

/// How a notice of `level` is drawn: dimmed, yellow, red (in the default theme).
pub fn notice_style(level: Level, theme: &Theme) -> Style {
    match level {
        Level::Info => theme.dim.add_modifier(Modifier::DIM),
        Level::Warning => theme.warning,
        Level::Error => theme.error,
    }
}

/// Lays out a message: `HH:MM user: text`, or `HH:MM * user action` for `/me`.
#[allow(clippy::too_many_arguments)]
pub fn layout_message(
    w: &mut Wrapper,
    time: &str,
    user: &str,
    body: &str,
    own: bool,
    mention: bool,
    dim: bool,
    theme: &Theme,
) {
    let time_style = theme.dim;
    let mut nick = theme.nick(user);
    if own {
        nick = nick.add_modifier(Modifier::REVERSED);
    }
    let mut text = Style::default();
    if mention && !own {
        text = theme.mention;
    }
    if dim {
        nick = nick.add_modifier(Modifier::DIM);
        text = text.add_modifier(Modifier::DIM | Modifier::ITALIC);
    }
    w.push(time, time_style);
    let user = sanitize(user);
    if let Some(file) = FileNotice::parse(body) {
        w.push(&user, nick);
        w.push(": ", Style::default());
        w.mark_origin();
        layout_file(w, &file, text, theme);
    } else if let Some(action) = body.strip_prefix(ME_PREFIX) {
        let text = text.add_modifier(Modifier::ITALIC);
        w.push("* ", text);
        w.push(&user, nick);
        w.push(" ", text);
        push_paragraphs(w, action, text);
    } else {
        w.push(&user, nick);
        w.push(": ", Style::default());
        push_paragraphs(w, body, text);
    }
}

/// The marker before a shared file's name.
pub const FILE_MARK: &str = "📎 ";

/// A file shared (a record [`FileNotice::parse`] recognises): `📎 report.pdf (2.1 MB)
/// sha256:3f5c…e1a9`, the name highlighted, the size for people, the hash shortened and dimmed
/// (`/download` takes the line itself, or a start of the hash).
fn layout_file(w: &mut Wrapper, file: &FileNotice, text: Style, theme: &Theme) {
    w.push(FILE_MARK, text);
    w.push(&sanitize(&file.name), theme.file.patch(text));
    w.push(&format!(" ({})", human_size(file.size)), text);
    w.push(
        &format!(" sha256:{}", short_hash(&file.hash)),
        theme.dim.patch(text),
    );
}

/// A content hash as lines show it: its first and last four hex digits (`3f5c…e1a9`).
pub fn short_hash(hash: &ContentHash) -> String {
    let hex = hash.to_string();
    format!("{}…{}", &hex[..4], &hex[hex.len() - 4..])
}

/// Each line of `text` made harmless, on its own row; tabs as spaces to the next tab stop,
/// counted from where the text starts on its row (so pasted code keeps its columns).
fn push_paragraphs(w: &mut Wrapper, text: &str, style: Style) {
    w.mark_origin();
    for (i, line) in text.split('\n').enumerate() {
        if i > 0 {
            w.break_line();
        }
        for (j, part) in line.split('\t').enumerate() {
            if j > 0 {
                w.tab(style);
            }
            push_text(w, part, style);
        }
    }
}

/// `text` made harmless, its URLs underlined and laid out as links.
fn push_text(w: &mut Wrapper, text: &str, style: Style) {
    let mut at = 0;
    for url in urls::find(text) {
        w.push(&sanitize(&text[at..url.start]), style);
        // A URL holds no control characters (they end it): sanitising changes nothing, but
        // costs nothing either.
        w.push_link(
            &sanitize(&text[url.clone()]),
            style.add_modifier(Modifier::UNDERLINED),
        );
        at = url.end;
    }
    w.push(&sanitize(&text[at..]), style);
}

/// The date separator row.
pub fn separator(day: NaiveDate, width: usize, theme: &Theme) -> Line<'static> {
    let label = format!(" {} ", day.format("%a %-d %b %Y"));
    rule(&label, width, theme.dim)
}

/// A row of `─` with `label` in its middle.
fn rule(label: &str, width: usize, style: Style) -> Line<'static> {
    let side = width.saturating_sub(text_width(label)) / 2;
    let rest = width.saturating_sub(text_width(label) + side);
    Line::from(Span::styled(
        format!("{}{label}{}", "─".repeat(side), "─".repeat(rest)),
        style,
    ))
}

/// The "new since you left" row.
pub fn read_line(width: usize, theme: &Theme) -> Line<'static> {
    rule(NEW_SINCE_LEFT, width, theme.mention)
}

/// The bottom row shown: `row` of `entry`, counting its date separator.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Anchor {
    /// The entry's index.
    pub entry: usize,
    /// The row within the entry.
    pub row: usize,
}

/// Entries with cached heights and a scroll position.
#[derive(Debug, Default)]
pub struct Scrollback {
    entries: Vec<Entry>,
    anchor: Option<Anchor>,
    unseen: usize,
    /// How many entries were measured or laid out (work done: tests check it stays O(screen)).
    work: Cell<u64>,
    /// The time column and colours.
    look: Arc<Look>,
    /// The read marker of the last run: the "new since you left" line goes before the first
    /// record above it.
    read_line: Option<u64>,
}

impl Scrollback {
    /// An empty scrollback drawn as `look` says.
    pub fn with_look(look: Arc<Look>) -> Self {
        Self {
            look,
            ..Self::default()
        }
    }

    /// How it is drawn.
    pub fn look(&self) -> &Look {
        &self.look
    }

    /// Draws the "new since you left" line before the first record above `seen` (`None`: no
    /// line). (The cached heights are of the entries' own rows: they stay right.)
    pub fn set_read_line(&mut self, seen: Option<u64>) {
        self.read_line = seen;
    }

    /// The read marker the "new since you left" line is drawn after.
    pub fn read_line(&self) -> Option<u64> {
        self.read_line
    }

    /// Whether the "new since you left" line goes before entry `i`: it is the first record
    /// above the marker (the record before it, if any is loaded, is not).
    fn has_read_line(&self, i: usize) -> bool {
        let Some(seen) = self.read_line else {
            return false;
        };
        if self.entries[i].message_id().is_none_or(|id| id <= seen) {
            return false;
        }
        self.entries[..i]
            .iter()
            .rev()
            .find_map(Entry::message_id)
            .is_none_or(|before| before <= seen)
    }
    /// The entries, oldest first.
    pub fn entries(&self) -> &[Entry] {
        &self.entries
    }

    /// How many entries.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// No entries.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// Entries measured or laid out so far.
    pub fn work(&self) -> u64 {
        self.work.get()
    }

    /// Messages added below while scrolled up.
    pub fn unseen(&self) -> usize {
        self.unseen
    }

    /// Whether the newest entries are shown (no anchor).
    pub fn following(&self) -> bool {
        self.anchor.is_none()
    }

    /// The scroll position.
    pub fn anchor(&self) -> Option<Anchor> {
        self.anchor
    }

    /// Appends an entry.
    pub fn push(&mut self, entry: Entry) {
        if self.anchor.is_some() && matches!(entry.kind, Kind::Message { .. }) {
            self.unseen += 1;
        }
        self.entries.push(entry);
    }

    /// Puts older entries (oldest first) in front; the view stays where it was.
    pub fn prepend(&mut self, older: Vec<Entry>) {
        let n = older.len();
        if n == 0 {
            return;
        }
        let mut entries = older;
        entries.append(&mut self.entries);
        self.entries = entries;
        if let Some(a) = &mut self.anchor {
            a.entry += n;
        }
    }

    /// Removes everything.
    pub fn clear(&mut self) {
        self.entries.clear();
        self.anchor = None;
        self.unseen = 0;
    }

    /// Removes the entries `hide` picks (`/ignore`), keeping the view where it was: the anchor
    /// moves with its entry, or to the next one kept when its own goes. Returns the record ids
    /// removed.
    pub fn remove_where(&mut self, hide: impl Fn(&Entry) -> bool) -> Vec<u64> {
        let mut removed = Vec::new();
        let mut kept = Vec::with_capacity(self.entries.len());
        let mut anchor = self.anchor;
        for (i, entry) in std::mem::take(&mut self.entries).into_iter().enumerate() {
            if hide(&entry) {
                removed.extend(entry.message_id());
                if let Some(a) = &mut anchor {
                    if a.entry == i {
                        // Its rows are gone: the bottom line is now the next entry's first.
                        a.row = 0;
                    } else if a.entry > i {
                        a.entry -= 1;
                    }
                }
                continue;
            }
            // A separator or read line may have come or gone with a neighbour: measure again.
            entry.cache.set((0, 0));
            kept.push(entry);
        }
        self.entries = kept;
        self.anchor = anchor.filter(|a| a.entry < self.entries.len());
        removed
    }

    /// The oldest record id held.
    pub fn oldest_id(&self) -> Option<u64> {
        self.entries.iter().find_map(Entry::message_id)
    }

    fn has_separator(&self, i: usize) -> bool {
        i == 0 || self.entries[i - 1].day() != self.entries[i].day()
    }

    /// Rows entry `i` takes at `width`, separator included (cached).
    pub fn rows(&self, i: usize, width: u16) -> usize {
        let entry = &self.entries[i];
        let (w, rows) = entry.cache.get();
        let body = if w == width {
            rows as usize
        } else {
            self.work.set(self.work.get() + 1);
            let mut wrapper = Wrapper::new(usize::from(width), self.look.time.indent(), false);
            layout_entry(&mut wrapper, entry, false, &self.look);
            let rows = wrapper.rows();
            entry
                .cache
                .set((width, u32::try_from(rows).unwrap_or(u32::MAX)));
            rows
        };
        body + usize::from(self.has_separator(i)) + usize::from(self.has_read_line(i))
    }

    /// The rows of entry `i`, separator included; `highlight` marks a search match.
    pub fn lines(&self, i: usize, width: u16, highlight: bool) -> Vec<Line<'static>> {
        self.laid_out(i, width, highlight)
            .into_iter()
            .map(|row| row.line)
            .collect()
    }

    /// The rows of entry `i` with their links, separator included; `highlight` marks a search
    /// match.
    pub fn laid_out(&self, i: usize, width: u16, highlight: bool) -> Vec<Row> {
        self.work.set(self.work.get() + 1);
        let entry = &self.entries[i];
        let mut wrapper = Wrapper::new(usize::from(width), self.look.time.indent(), true);
        layout_entry(&mut wrapper, entry, false, &self.look);
        let mut body = wrapper.finish_rows();
        if highlight {
            for row in &mut body {
                for span in &mut row.line.spans {
                    span.style = span.style.add_modifier(Modifier::REVERSED);
                }
            }
        }
        let mut rows = Vec::with_capacity(body.len() + 2);
        if self.has_separator(i) {
            rows.push(Row {
                line: separator(entry.day(), usize::from(width), &self.look.theme),
                links: Vec::new(),
            });
        }
        if self.has_read_line(i) {
            rows.push(Row {
                line: read_line(usize::from(width), &self.look.theme),
                links: Vec::new(),
            });
        }
        rows.append(&mut body);
        rows
    }

    fn bottom(&self, width: u16) -> Option<Anchor> {
        let last = self.entries.len().checked_sub(1)?;
        Some(Anchor {
            entry: last,
            row: self.rows(last, width) - 1,
        })
    }

    fn clamp(&self, a: Anchor, width: u16) -> Anchor {
        let entry = a.entry.min(self.entries.len().saturating_sub(1));
        Anchor {
            entry,
            row: a.row.min(self.rows(entry, width) - 1),
        }
    }

    /// Up to `height` rows ending at the anchor (or the newest row), top to bottom.
    /// `highlight` is the index of a search match to mark.
    pub fn visible(
        &self,
        width: u16,
        height: usize,
        highlight: Option<usize>,
    ) -> Vec<Line<'static>> {
        self.visible_rows(width, height, highlight)
            .into_iter()
            .map(|row| row.line)
            .collect()
    }

    /// [`Scrollback::visible`], with the links of each row.
    pub fn visible_rows(&self, width: u16, height: usize, highlight: Option<usize>) -> Vec<Row> {
        let start = match self.anchor {
            Some(a) if !self.entries.is_empty() => self.clamp(a, width),
            _ => match self.bottom(width) {
                Some(a) => a,
                None => return Vec::new(),
            },
        };
        let mut out: Vec<Row> = Vec::with_capacity(height);
        let mut i = start.entry;
        let mut last_row = Some(start.row);
        while out.len() < height {
            let mut lines = self.laid_out(i, width, highlight == Some(i));
            if let Some(row) = last_row.take() {
                lines.truncate(row + 1);
            }
            while out.len() < height {
                match lines.pop() {
                    Some(line) => out.push(line),
                    None => break,
                }
            }
            if i == 0 {
                break;
            }
            i -= 1;
        }
        out.reverse();
        out
    }

    /// Total rows from the top through `a`, counting at most `cap`.
    fn rows_through(&self, a: Anchor, width: u16, cap: usize) -> usize {
        let mut total = a.row + 1;
        let mut i = a.entry;
        while total < cap && i > 0 {
            i -= 1;
            total += self.rows(i, width);
        }
        total
    }

    /// The anchor whose row is the `n`th from the top (0-based), if there are that many rows.
    fn row_from_top(&self, n: usize, width: u16) -> Option<Anchor> {
        let mut left = n;
        for i in 0..self.entries.len() {
            let rows = self.rows(i, width);
            if left < rows {
                return Some(Anchor {
                    entry: i,
                    row: left,
                });
            }
            left -= rows;
        }
        None
    }

    fn settle(&mut self, a: Anchor, width: u16, height: usize) -> bool {
        // Not past the top: the pane stays full.
        let mut at_top = false;
        let a = if self.rows_through(a, width, height) < height {
            at_top = true;
            match self.row_from_top(height.saturating_sub(1), width) {
                Some(top) => top,
                None => {
                    // Everything fits on one screen.
                    self.anchor = None;
                    self.unseen = 0;
                    return true;
                }
            }
        } else {
            a
        };
        if Some(a) == self.bottom(width) {
            self.anchor = None;
            self.unseen = 0;
        } else {
            self.anchor = Some(a);
        }
        at_top
    }

    /// Scrolls `n` rows towards older entries; true when the top was reached (time to load more).
    pub fn scroll_up(&mut self, n: usize, width: u16, height: usize) -> bool {
        let Some(mut a) = self.anchor.or_else(|| self.bottom(width)) else {
            return true;
        };
        a = self.clamp(a, width);
        let mut n = n;
        loop {
            if a.row >= n {
                a.row -= n;
                break;
            }
            n -= a.row + 1;
            if a.entry == 0 {
                a.row = 0;
                break;
            }
            a.entry -= 1;
            a.row = self.rows(a.entry, width) - 1;
        }
        self.settle(a, width, height)
    }

    /// Scrolls `n` rows towards newer entries; back to following at the bottom.
    pub fn scroll_down(&mut self, n: usize, width: u16) {
        let Some(a) = self.anchor else {
            return;
        };
        let mut a = self.clamp(a, width);
        a.row += n;
        loop {
            let rows = self.rows(a.entry, width);
            if a.row < rows {
                break;
            }
            a.row -= rows;
            a.entry += 1;
            if a.entry >= self.entries.len() {
                self.anchor = None;
                self.unseen = 0;
                return;
            }
        }
        if Some(a) == self.bottom(width) {
            self.anchor = None;
            self.unseen = 0;
        } else {
            self.anchor = Some(a);
        }
    }

    /// Shows the oldest entries; true (always: the top was reached).
    pub fn scroll_to_top(&mut self, width: u16, height: usize) -> bool {
        if self.entries.is_empty() {
            return true;
        }
        let a = Anchor { entry: 0, row: 0 };
        self.settle(a, width, height)
    }

    /// Follows the newest entries again.
    pub fn scroll_to_bottom(&mut self) {
        self.anchor = None;
        self.unseen = 0;
    }

    /// Scrolls so that entry `i` is on screen, about in the middle.
    pub fn show(&mut self, i: usize, width: u16, height: usize) {
        if i >= self.entries.len() {
            return;
        }
        let a = Anchor {
            entry: i,
            row: self.rows(i, width) - 1,
        };
        self.settle(a, width, height);
        if self.anchor.is_some() {
            self.scroll_down(height / 2, width);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use chrono::TimeZone as _;

    fn at(secs: i64) -> DateTime<FixedOffset> {
        FixedOffset::east_opt(0)
            .and_then(|z| z.timestamp_opt(1_700_000_000 + secs, 0).single())
            .unwrap()
    }

    fn msg(id: u64, body: &str) -> Entry {
        Entry::new(
            at(id as i64),
            Kind::Message {
                id,
                user: "bob".into(),
                body: body.into(),
                own: false,
                mention: false,
            },
        )
    }

    fn filled(n: u64) -> Scrollback {
        let mut s = Scrollback::default();
        for id in 1..=n {
            s.push(msg(id, &format!("m{id}")));
        }
        s
    }

    fn texts(lines: &[Line<'_>]) -> Vec<String> {
        lines.iter().map(ToString::to_string).collect()
    }

    #[test]
    fn follows_the_newest_and_shows_a_separator_first() {
        let s = filled(3);
        let v = texts(&s.visible(30, 10, None));
        assert_eq!(v.len(), 4);
        assert!(v[0].contains("Tue 14 Nov 2023"), "{v:?}");
        assert_eq!(v[1], "22:13 bob: m1");
        assert_eq!(v[3], "22:13 bob: m3");
        let v = texts(&s.visible(30, 2, None));
        assert_eq!(v, ["22:13 bob: m2", "22:13 bob: m3"]);
    }

    #[test]
    fn scrolling_moves_by_rows_and_returns_to_following() {
        let mut s = filled(20);
        assert!(!s.scroll_up(3, 30, 5));
        assert_eq!(texts(&s.visible(30, 5, None))[4], "22:13 bob: m17");
        s.push(msg(21, "new"));
        assert_eq!(s.unseen(), 1);
        s.scroll_down(2, 30);
        assert_eq!(texts(&s.visible(30, 5, None))[4], "22:13 bob: m19");
        s.scroll_down(100, 30);
        assert!(s.following());
        assert_eq!(s.unseen(), 0);
        assert_eq!(texts(&s.visible(30, 5, None))[4], "22:13 bob: new");
    }

    #[test]
    fn the_top_is_a_limit_and_reports_itself() {
        let mut s = filled(20);
        assert!(s.scroll_up(1000, 30, 5));
        let v = texts(&s.visible(30, 5, None));
        assert!(v[0].contains("2023"), "separator on top: {v:?}");
        assert_eq!(v[1], "22:13 bob: m1");
        // Older entries in front keep the view on the same entries.
        s.prepend(vec![msg(0, "older")]);
        let again = texts(&s.visible(30, 5, None));
        assert_eq!(again[1..], v[1..]);
        assert!(s.scroll_up(100, 30, 5));
        assert_eq!(texts(&s.visible(30, 5, None))[1], "22:13 bob: older");
    }

    #[test]
    fn everything_on_one_screen_stays_following() {
        let mut s = filled(2);
        assert!(s.scroll_up(5, 30, 10));
        assert!(s.following());
    }

    #[test]
    fn wrapped_rows_count_and_cache_per_width() {
        let mut s = Scrollback::default();
        s.push(msg(1, "aaaa bbbb cccc dddd eeee"));
        // "22:13 bob: " takes 11 cells: at 20 the text wraps onto indented rows.
        let rows = s.rows(0, 20);
        let lines = texts(&s.lines(0, 20, false));
        assert_eq!(
            rows, 3,
            "the day's separator and two rows of text: {lines:?}"
        );
        assert_eq!(rows, lines.len());
        assert_eq!(lines[1], "22:13 bob: aaaa bbbb");
        assert_eq!(lines[2], "      cccc dddd eeee");
        let work = s.work();
        assert_eq!(s.rows(0, 20), rows);
        assert_eq!(s.work(), work, "cached");
        assert!(s.rows(0, 60) < rows);
        assert_eq!(s.work(), work + 1, "measured again for a new width");
    }

    #[test]
    fn a_url_is_not_broken_when_it_fits_on_a_row() {
        let mut s = Scrollback::default();
        // `this:https://…` is one word too long for what is left of the first row: it used to
        // be broken at the edge, cutting the URL in two. The URL fits on a row of its own.
        s.push(msg(1, "read this:https://example.com/some/long/path."));
        let rows = s.laid_out(0, 40, false);
        let lines: Vec<String> = rows.iter().map(|r| r.line.to_string()).collect();
        assert_eq!(
            lines[1..],
            [
                "22:13 bob: read this:",
                "      https://example.com/some/long/path",
                "      ."
            ]
        );
        assert_eq!(s.rows(0, 40), rows.len(), "measured as laid out");
        assert_eq!(rows[2].links.len(), 1);
        assert_eq!(&*rows[2].links[0].url, "https://example.com/some/long/path");
        assert_eq!((rows[2].links[0].start, rows[2].links[0].end), (6, 40));
        assert!(rows[1].links.is_empty() && rows[3].links.is_empty());
        let underlined = rows[2].line.spans.iter().any(|span| {
            span.content.starts_with("https://")
                && span.style.add_modifier.contains(Modifier::UNDERLINED)
        });
        assert!(underlined, "{:?}", rows[2].line);

        // Longer than a row: broken, every piece a link to the whole URL.
        let long = format!("https://example.com/{}", "a".repeat(40));
        s.push(msg(2, &format!("x {long}")));
        let rows = s.laid_out(1, 40, false);
        assert_eq!(rows.len(), 2);
        for row in &rows {
            assert_eq!(row.links.len(), 1, "{row:?}");
            assert_eq!(&*row.links[0].url, long);
        }
        assert_eq!(rows[0].links[0].start, 13, "after `22:13 bob: x `");
    }

    #[test]
    fn day_changes_get_separators() {
        let mut s = Scrollback::default();
        s.push(msg(1, "a"));
        s.push(Entry::new(
            at(86_400 * 2),
            Kind::Notice {
                level: Level::Info,
                text: "later".into(),
            },
        ));
        let v = texts(&s.visible(40, 10, None));
        assert_eq!(v.len(), 4, "{v:?}");
        assert!(v[2].contains("Thu 16 Nov 2023"), "{v:?}");
        assert_eq!(v[3], "22:13 -- later");
    }

    #[test]
    fn work_is_bounded_by_the_screen() {
        let mut s = filled(100_000);
        let before = s.work();
        let _ = s.visible(80, 40, None);
        assert!(s.work() - before < 100, "{}", s.work() - before);
        let before = s.work();
        for _ in 0..50 {
            s.scroll_up(39, 80, 40);
        }
        let _ = s.visible(80, 40, None);
        assert!(s.work() - before < 50 * 100, "{}", s.work() - before);
        let before = s.work();
        s.scroll_to_top(80, 40);
        let _ = s.visible(80, 40, None);
        assert!(s.work() - before < 200, "{}", s.work() - before);
    }
}
