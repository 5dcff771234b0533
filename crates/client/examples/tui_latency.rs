//! Input latency of the terminal UI with a long scrollback: 100,000 messages loaded, a 120×40
//! screen (ratatui `TestBackend`), and for each key press the time of `App::handle_key` plus a
//! full draw (layout, render, diff). Prints p50 / p99 / max per kind of key.
//!
//! ```text
//! cargo run --release -p gc-client --example tui_latency
//! ```

use std::convert::Infallible;
use std::io::{self, Write as _};
use std::time::{Duration, Instant};

use chrono::{FixedOffset, TimeZone as _, Utc};
use gc_client::tui::{App, Zone, ui};
use gc_protocol::{Record, Timestamp, Username};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{KeyCode, KeyEvent, KeyModifiers};

const MESSAGES: u64 = 100_000;
const WIDTH: u16 = 120;
const HEIGHT: u16 = 40;

fn records() -> Vec<Record> {
    let users: Vec<Username> = (0..20)
        .map(|i| Username::new(format!("user{i}")).unwrap_or_else(|_| unreachable!()))
        .collect();
    let bodies = [
        "ok",
        "see you at the meeting tomorrow, I will bring the slides",
        "日本語のメッセージと絵文字 👍🏽 を含む長めのテキストです。折り返しが必要になるかもしれません。",
        "a long line that goes on and on so that it has to wrap over at least two rows of a \
         hundred and twenty column terminal, with some more words at the end for good measure",
        "multi\nline\nmessage",
        "hey alice, did you see this?",
    ];
    (1..=MESSAGES)
        .map(|id| Record {
            room: gc_protocol::Room::general(),
            id,
            timestamp: Timestamp::parse(&format!("{}", 1_700_000_000 + id * 7))
                .unwrap_or_else(|_| unreachable!()),
            username: users[(id % 20) as usize].clone(),
            body: bodies[(id % bodies.len() as u64) as usize].to_owned(),
        })
        .collect()
}

/// A `TestBackend` never fails.
fn infallible<T>(result: Result<T, Infallible>) -> T {
    match result {
        Ok(t) => t,
        Err(never) => match never {},
    }
}

fn key(code: KeyCode) -> KeyEvent {
    KeyEvent::new(code, KeyModifiers::NONE)
}

fn stats(name: &str, mut samples: Vec<Duration>, out: &mut impl io::Write) -> io::Result<()> {
    samples.sort();
    let at = |q: f64| samples[((samples.len() - 1) as f64 * q).round() as usize];
    writeln!(
        out,
        "{name:<34} {:>6} keys  p50 {:>8.3} ms  p99 {:>8.3} ms  max {:>8.3} ms",
        samples.len(),
        at(0.5).as_secs_f64() * 1e3,
        at(0.99).as_secs_f64() * 1e3,
        samples.last().copied().unwrap_or_default().as_secs_f64() * 1e3,
    )
}

fn main() -> io::Result<()> {
    let zone = Zone::Fixed(FixedOffset::east_opt(0).unwrap_or_else(|| unreachable!()));
    let mut app = App::new("127.0.0.1", zone).with_clock(
        Utc.timestamp_opt(1_700_000_000, 0)
            .single()
            .unwrap_or_else(|| unreachable!()),
    );
    app.enter_chat("alice");
    let load = Instant::now();
    app.add_records(&records());
    let load = load.elapsed();
    let mut terminal = infallible(Terminal::new(TestBackend::new(WIDTH, HEIGHT)));
    let first = Instant::now();
    infallible(terminal.draw(|f| ui::draw(f, &app)));
    let first = first.elapsed();

    let mut press = |app: &mut App, k: KeyEvent| -> Duration {
        let t = Instant::now();
        app.handle_key(k);
        let _ = app.take_actions();
        infallible(terminal.draw(|f| ui::draw(f, app)));
        t.elapsed()
    };

    let mut typing = Vec::new();
    for round in 0..20 {
        for c in "the quick brown fox jumps over the lazy dog ".chars() {
            typing.push(press(&mut app, key(KeyCode::Char(c))));
        }
        for _ in 0..10 {
            typing.push(press(&mut app, key(KeyCode::Backspace)));
        }
        if round % 5 == 4 {
            typing.push(press(&mut app, key(KeyCode::Enter)));
        }
    }
    let mut paging = Vec::new();
    for _ in 0..500 {
        paging.push(press(&mut app, key(KeyCode::PageUp)));
    }
    for _ in 0..500 {
        paging.push(press(&mut app, key(KeyCode::PageDown)));
    }
    let mut jumps = Vec::new();
    for _ in 0..50 {
        jumps.push(press(&mut app, key(KeyCode::Home)));
        jumps.push(press(&mut app, key(KeyCode::End)));
    }
    let mut recall = Vec::new();
    for _ in 0..100 {
        recall.push(press(&mut app, key(KeyCode::Up)));
        recall.push(press(&mut app, key(KeyCode::Down)));
    }
    // `/search` scans every loaded message: the one key whose cost grows with the scrollback.
    let mut search = Vec::new();
    let mut step = Vec::new();
    for _ in 0..20 {
        for c in "/search Meeting".chars() {
            app.handle_key(key(KeyCode::Char(c)));
        }
        search.push(press(&mut app, key(KeyCode::Enter)));
        for _ in 0..5 {
            step.push(press(
                &mut app,
                KeyEvent::new(KeyCode::Char('p'), KeyModifiers::CONTROL),
            ));
        }
        app.handle_key(key(KeyCode::Esc));
    }

    let mut out = io::stdout().lock();
    writeln!(
        out,
        "{MESSAGES} messages loaded in {:.0} ms; first draw {:.1} ms; screen {WIDTH}x{HEIGHT}; \
         entries laid out so far: {}",
        load.as_secs_f64() * 1e3,
        first.as_secs_f64() * 1e3,
        app.log().work()
    )?;
    let mut all = Vec::new();
    for (name, samples) in [
        ("typing (char, Backspace, Enter)", typing),
        ("PgUp / PgDn", paging),
        ("Home / End", jumps),
        ("Up / Down (history recall)", recall),
        ("/search Enter (scans all 100k)", search),
        ("Ctrl+P (previous match)", step),
    ] {
        all.extend(samples.iter().copied());
        stats(name, samples, &mut out)?;
    }
    stats("all keys", all, &mut out)
}
