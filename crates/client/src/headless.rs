//! Headless mode: messages from standard input, records to standard output, one per line.
//!
//! - Each input line is one message; a line ending in `\` continues on the next line (the `\` is
//!   dropped and the lines are joined with a LF). Empty messages are not sent. A CR before the LF
//!   is dropped.
//! - Each received record is printed once, in id order: `[YYYY-MM-DD HH:MM:SS] user: text` in
//!   local time with control characters made visible and tabs as spaces
//!   ([`crate::display::plain_text`]), or one JSON object per line (`--json`, the text exact).
//!   Records of rooms other than `#general` (with a GC/3 server, every room the account is in)
//!   name their room: `[…] #dev user: text`, and a `"room"` member in JSON.
//! - With a room (`--room`, `--to`), the messages go into it. Nothing is sent before the server
//!   is known to serve rooms; one that serves none (an older gc-server) ends the run with an
//!   error, nothing sent.
//! - Status and warnings go to the status writer (standard error), never to the output, one
//!   sanitised line each.
//! - At the end of input: wait until logged in, caught up with what the server held at login,
//!   and every message is acknowledged and has come back, bounded by the drain timeout; say
//!   `Bye`, and report what was never acknowledged.

use std::collections::VecDeque;
use std::io::{self, BufRead, Write};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::thread;
use std::time::{Duration, Instant};

use gc_protocol::{Record, Room};

use crate::display::{format_json, format_line};
use crate::error::AppError;
use gc_client_core::config::ClientConfig;
use gc_client_core::event::{ConnState, Event, NoticeLevel, Rejection};
use gc_client_core::{Client, ClientError, TransferEvent};

/// How often the end of input looks whether everything is drained, between events.
const DRAIN_POLL: Duration = Duration::from_millis(100);

/// How headless mode prints and ends, and where it writes.
#[derive(Clone, Debug)]
pub struct HeadlessOptions {
    /// One JSON object per record instead of text lines.
    pub json: bool,
    /// How long to wait at the end of input for the outbox to be acknowledged.
    pub drain_timeout: Duration,
    /// Where the input's messages go: a room or a direct conversation (`--room`, `--to`);
    /// `None` (or `#general`): `#general`.
    pub room: Option<Room>,
    /// The output is a terminal: text lines are wrapped to its width with indented continuation
    /// rows ([`crate::display::wrap_rows`]).
    pub terminal: bool,
    /// Share or fetch one file instead of sending standard input's lines (`--upload`,
    /// `--download`).
    pub transfer: Option<Transfer>,
}

/// The one file transfer of a headless run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Transfer {
    /// Share this file (in `--room`/`--to`, else `#general`).
    Upload(std::path::PathBuf),
    /// Save the shared file with this hash at `output` (which must not exist).
    Download {
        /// The content.
        hash: gc_protocol::ContentHash,
        /// Where to save it.
        output: std::path::PathBuf,
    },
}

impl Default for HeadlessOptions {
    fn default() -> Self {
        Self {
            json: false,
            drain_timeout: Duration::from_secs(60),
            room: None,
            terminal: false,
            transfer: None,
        }
    }
}

/// How a headless run ended (without a fatal error).
#[derive(Debug, Default)]
pub struct HeadlessOutcome {
    /// Messages never acknowledged.
    pub unsent: usize,
    /// Whether `Bye` was acknowledged.
    pub bye_sent: bool,
    /// Messages the server refused for good (not a member of the room, muted, banned, …): not
    /// sent, and not to be retried as they are.
    pub refused: usize,
}

/// Joins continued lines into messages.
#[derive(Debug, Default)]
pub struct LineAssembler {
    pending: Option<String>,
}

impl LineAssembler {
    /// Takes one input line (without its LF); returns a message when one is complete.
    pub fn push(&mut self, line: &str) -> Option<String> {
        let line = line.strip_suffix('\r').unwrap_or(line);
        let (part, continues) = match line.strip_suffix('\\') {
            Some(part) => (part, true),
            None => (line, false),
        };
        let message = match self.pending.take() {
            Some(mut joined) => {
                joined.push('\n');
                joined.push_str(part);
                joined
            }
            None => part.to_owned(),
        };
        if continues {
            self.pending = Some(message);
            None
        } else {
            Some(message).filter(|m| !m.is_empty())
        }
    }

    /// At the end of input: what was still being continued, if anything.
    pub fn finish(&mut self) -> Option<String> {
        self.pending.take().filter(|m| !m.is_empty())
    }
}

/// Prints records as text lines (local time) or JSON.
#[derive(Debug, Clone, Copy)]
pub struct Printer {
    json: bool,
    terminal: bool,
}

impl Printer {
    /// A printer for `--json` or text.
    pub fn new(json: bool) -> Self {
        Self {
            json,
            terminal: false,
        }
    }

    /// The same, for output to a terminal (text is wrapped to its width, read at each print).
    pub fn on_terminal(mut self, terminal: bool) -> Self {
        self.terminal = terminal;
        self
    }

    /// Writes each record on its own line and flushes.
    pub fn print(&self, out: &mut dyn Write, records: &[Record]) -> io::Result<()> {
        for record in records {
            let line = if self.json {
                format_json(record)
            } else {
                let line = format_line(record, &chrono::Local);
                match self.terminal.then(ratatui::crossterm::terminal::size) {
                    Some(Ok((width, _))) => crate::display::wrap_rows(&line, usize::from(width)),
                    _ => line,
                }
            };
            out.write_all(line.as_bytes())?;
            out.write_all(b"\n")?;
        }
        out.flush()
    }
}

enum Input {
    Line(String),
    Eof,
    ReadError(io::Error),
    Event(Event),
}

/// Runs headless mode: starts a client with `config`, sends what `input` brings, prints records
/// to `out`, status to `status`. Returns when the input has ended and the outbox is drained (or
/// the drain timeout passed), or with the fatal error that stopped the client.
pub fn run<R>(
    config: ClientConfig,
    input: R,
    out: &mut dyn Write,
    status: &mut dyn Write,
    options: HeadlessOptions,
) -> Result<HeadlessOutcome, AppError>
where
    R: BufRead + Send + 'static,
{
    let (tx, rx) = mpsc::channel::<Input>();
    let events = tx.clone();
    let client = Client::start_with_sink(
        config,
        Box::new(move |event| {
            let _ = events.send(Input::Event(event));
        }),
    )?;
    // A transfer run reads no input: it shares or fetches its file, then ends.
    let mut transfer_done = true;
    if let Some(transfer) = &options.transfer {
        let started = match transfer {
            Transfer::Upload(path) => client.upload(
                options.room.clone().unwrap_or_else(Room::general),
                path.clone(),
            ),
            Transfer::Download { hash, output } => client.download(*hash, output.clone()),
        };
        if let Err(e) = started {
            client.close(false, None);
            return Err(e.into());
        }
        transfer_done = false;
    }
    // Standard input cannot be interrupted portably while a read blocks: this thread is joined
    // once the input has ended; if the client stops first (fatal error), it is left to end with
    // the process.
    let reader = if options.transfer.is_none() {
        Some(
            thread::Builder::new()
                .name("gc-stdin".into())
                .spawn(move || read_input(input, &tx))
                .map_err(|source| AppError::Thread {
                    name: "gc-stdin".into(),
                    source,
                })?,
        )
    } else {
        drop((input, tx));
        None
    };

    let printer = Printer::new(options.json).on_terminal(options.terminal);
    // A room other than #general: its messages wait until the server is known to serve rooms.
    let room = options.room.clone().filter(|r| !r.is_general());
    let mut may_send = room.is_none();
    let mut refused = 0;
    let mut held: VecDeque<String> = VecDeque::new();
    let mut no_rooms = None;
    let mut eof = options.transfer.is_some();
    let mut deadline: Option<Instant> = None;
    let mut transfer_error = None;
    let mut shown_percent = None;
    let mut ever_active = false;
    let mut last_warning: Option<String> = None;
    let mut fatal = None;
    let mut output_error = None;
    loop {
        if eof && ever_active && held.is_empty() && transfer_done && drained(&client) {
            break;
        }
        let input = match deadline {
            None => match rx.recv() {
                Ok(i) => i,
                Err(_) => break,
            },
            // Draining: look again now and then, as catching up can come without an event (a
            // quiet heartbeat cycle, see `Status::caught_up`).
            Some(d) => {
                match rx.recv_timeout(d.saturating_duration_since(Instant::now()).min(DRAIN_POLL)) {
                    Ok(i) => i,
                    Err(RecvTimeoutError::Timeout) if Instant::now() < d => continue,
                    Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => break,
                }
            }
        };
        match input {
            Input::Line(text) if may_send => send(&client, room.as_ref(), text, status),
            Input::Line(text) => held.push_back(text),
            Input::Eof => {
                eof = true;
                deadline = Some(Instant::now() + options.drain_timeout);
            }
            Input::ReadError(e) => {
                say(
                    status,
                    &format!("cannot read standard input: {e}; treating it as its end"),
                );
                eof = true;
                deadline = Some(Instant::now() + options.drain_timeout);
            }
            // A transfer run prints its result only.
            Input::Event(Event::Records(_)) if options.transfer.is_some() => {}
            Input::Event(Event::Records(records)) => {
                if let Err(e) = printer.print(out, &records) {
                    output_error = Some(e);
                    break;
                }
            }
            Input::Event(Event::Transfer(event)) => {
                let end = match event {
                    TransferEvent::Progress {
                        name,
                        done,
                        total,
                        hashing,
                        ..
                    } => {
                        // A line each tenth, not one per event.
                        let percent = (done * 10).checked_div(total).unwrap_or(10) * 10;
                        if shown_percent != Some((hashing, percent)) {
                            shown_percent = Some((hashing, percent));
                            let doing = if hashing { "hashing" } else { "sending" };
                            say(
                                status,
                                &format!("{name}: {doing} {percent}% of {total} bytes"),
                            );
                        }
                        None
                    }
                    TransferEvent::Uploaded {
                        name,
                        hash,
                        size,
                        record_id,
                        resumed_from,
                        ..
                    } => {
                        say_resumed(status, &name, resumed_from, size);
                        Some(writeln!(
                            out,
                            "shared {} ({size} bytes) sha256:{hash} as message {record_id}",
                            gc_protocol::sanitize::sanitize(&name)
                        ))
                    }
                    TransferEvent::Downloaded {
                        path,
                        size,
                        resumed_from,
                        ..
                    } => {
                        let name = path.file_name().unwrap_or_default().to_string_lossy();
                        say_resumed(status, &name, resumed_from, size);
                        Some(writeln!(out, "saved {} ({size} bytes)", path.display()))
                    }
                    TransferEvent::Failed { error, .. } => {
                        if let ClientError::FileRefused { .. } = &error {
                            say(status, &error.to_string());
                            refused += 1;
                        } else {
                            transfer_error = Some(error);
                        }
                        Some(Ok(()))
                    }
                    TransferEvent::Cancelled { name, .. } => {
                        say(status, &format!("{name}: cancelled"));
                        Some(Ok(()))
                    }
                };
                if let Some(written) = end {
                    transfer_done = true;
                    if let Err(e) = written.and_then(|()| out.flush()) {
                        output_error = Some(e);
                        break;
                    }
                    if transfer_error.is_some() {
                        break;
                    }
                    deadline = Some(Instant::now() + options.drain_timeout);
                }
            }
            Input::Event(Event::Fatal(e)) => {
                fatal = Some(e);
                break;
            }
            Input::Event(Event::State(state)) => {
                tracing::debug!("state {state}");
                if state == ConnState::Active {
                    ever_active = true;
                }
            }
            Input::Event(Event::Notice { level, text }) => {
                let prefix = match level {
                    NoticeLevel::Info => "",
                    NoticeLevel::Warning => "warning: ",
                };
                say(status, &format!("{prefix}{text}"));
                if level == NoticeLevel::Warning {
                    last_warning = Some(text);
                }
            }
            Input::Event(Event::Version { rooms, .. }) => {
                if let Some(room) = &room {
                    if !rooms {
                        no_rooms = Some(room.clone());
                        break;
                    }
                    may_send = true;
                    for text in held.drain(..) {
                        send(&client, Some(room), text, status);
                    }
                }
            }
            Input::Event(Event::Rejected(Rejection {
                client_msg_id,
                room,
                code,
                text,
            })) => {
                refused += 1;
                let place = if room.is_general() {
                    String::new()
                } else {
                    format!(" in {room}")
                };
                say(
                    status,
                    &format!("the server refused message {client_msg_id}{place} ({code}): {text}"),
                );
            }
            Input::Event(Event::Refused(refusal)) => say(status, &refusal.to_string()),
            Input::Event(Event::Acked(ack)) => tracing::debug!("message {} acknowledged", ack.id),
            Input::Event(Event::Presence { users, .. }) => {
                tracing::debug!("online: {}", users.len());
            }
            Input::Event(
                Event::History { .. }
                | Event::RoomPresence { .. }
                | Event::RoomList(_)
                | Event::RoomDone { .. }
                | Event::Away(_)
                | Event::AccountDone(_),
            ) => {}
        }
    }

    let report = client.close(fatal.is_none() && output_error.is_none(), None);
    // Records that arrived after the loop ended are in the cache (the cursor is past them): print
    // them now, or they would never be shown (a transfer run prints its result only).
    if output_error.is_none() && options.transfer.is_none() {
        for input in rx.try_iter() {
            if let Input::Event(Event::Records(records)) = input
                && let Err(e) = printer.print(out, &records)
            {
                output_error = Some(e);
                break;
            }
        }
    }
    if eof && let Some(reader) = reader {
        let _ = reader.join();
    }
    if let Some(e) = fatal.or(transfer_error) {
        return Err(e.into());
    }
    if let Some(room) = no_rooms {
        return Err(AppError::NoRooms { room });
    }
    if let Some(e) = output_error {
        return Err(AppError::Output(e));
    }
    let unsent = report.unsent.len();
    if unsent == 0 && !ever_active && eof {
        return Err(AppError::NotConnected {
            waited: options.drain_timeout,
            last: last_warning.unwrap_or_else(|| "no answer yet".into()),
        });
    }
    Ok(HeadlessOutcome {
        unsent,
        bye_sent: report.bye_sent,
        refused,
    })
}

/// Queues `text` for `room` (`None`: `#general`); says why when it cannot be.
fn send(client: &Client, room: Option<&Room>, text: String, status: &mut dyn Write) {
    let queued = match room {
        Some(room) => client.send_to(room.clone(), text),
        None => client.send(text),
    };
    if let Err(e) = queued {
        say(status, &format!("not sent: {e}"));
    }
}

/// Everything sent is acknowledged and has come back (so it is printed too), and everything that
/// existed at login has arrived.
fn drained(client: &Client) -> bool {
    let status = client.status();
    status.outbox_len == 0 && status.caught_up && status.last_id >= client.acked_max()
}

/// Writes one status line. Most quote the server (an `Err` text, a refusal, its name): the whole
/// line is sanitised, so nothing in it can drive the terminal or start another line.
/// On the status stream: a transfer went on from what was there before (a partial upload on
/// the server, a `.part` here), not from its first byte.
fn say_resumed(status: &mut dyn Write, name: &str, from: u64, size: u64) {
    if from > 0 && from < size {
        say(
            status,
            &format!("{name}: resumed at {from} of {size} bytes"),
        );
    }
}

fn say(status: &mut dyn Write, text: &str) {
    let text = gc_protocol::sanitize::sanitize(text);
    let _ = writeln!(status, "gc-client: {text}");
    let _ = status.flush();
}

fn read_input<R: BufRead>(mut input: R, tx: &mpsc::Sender<Input>) {
    let mut assembler = LineAssembler::default();
    let mut buf = Vec::new();
    loop {
        buf.clear();
        match input.read_until(b'\n', &mut buf) {
            Ok(0) => {
                if let Some(message) = assembler.finish() {
                    let _ = tx.send(Input::Line(message));
                }
                let _ = tx.send(Input::Eof);
                return;
            }
            Ok(_) => {
                if buf.last() == Some(&b'\n') {
                    buf.pop();
                }
                let line = match std::str::from_utf8(&buf) {
                    Ok(s) => s.to_owned(),
                    Err(_) => {
                        tracing::warn!("an input line is not valid UTF-8; invalid bytes replaced");
                        String::from_utf8_lossy(&buf).into_owned()
                    }
                };
                if let Some(message) = assembler.push(&line)
                    && tx.send(Input::Line(message)).is_err()
                {
                    return;
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                let _ = tx.send(Input::ReadError(e));
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gc_protocol::{Timestamp, Username};

    fn assemble(lines: &[&str]) -> Vec<String> {
        let mut a = LineAssembler::default();
        let mut out: Vec<String> = lines.iter().filter_map(|l| a.push(l)).collect();
        out.extend(a.finish());
        out
    }

    #[test]
    fn lines_become_messages() {
        assert_eq!(assemble(&["hello", "", "world"]), ["hello", "world"]);
        assert_eq!(
            assemble(&["multi\\", "line\\", "message", "next"]),
            ["multi\nline\nmessage", "next"]
        );
        assert_eq!(assemble(&["trailing\\", ""]), ["trailing\n"]);
        assert_eq!(assemble(&["crlf\r", "a\\\r", "b\r"]), ["crlf", "a\nb"]);
        assert_eq!(assemble(&["unfinished\\"]), ["unfinished"]);
        assert_eq!(assemble(&["\\", ""]), ["\n"]);
        assert!(assemble(&["", "", "\\"]).is_empty());
        assert_eq!(assemble(&["  spaces  "]), ["  spaces  "]);
    }

    #[test]
    fn reader_sends_lines_then_eof() {
        let (tx, rx) = mpsc::channel();
        read_input(io::Cursor::new(b"one\ntwo\\\nthree\n\nfour".to_vec()), &tx);
        let got: Vec<String> = rx
            .try_iter()
            .map(|i| match i {
                Input::Line(l) => l,
                Input::Eof => "<eof>".into(),
                _ => "<other>".into(),
            })
            .collect();
        assert_eq!(got, ["one", "two\nthree", "four", "<eof>"]);
    }

    #[test]
    fn printer_writes_one_line_per_record() {
        let records: Vec<Record> = (1..=2)
            .map(|id| Record {
                room: gc_protocol::Room::general(),
                id,
                timestamp: Timestamp::parse("1700000000.5").unwrap(),
                username: Username::new("bob").unwrap(),
                body: format!("m{id}\n\u{1b}"),
            })
            .collect();
        let mut out = Vec::new();
        Printer::new(false).print(&mut out, &records).unwrap();
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 2);
        assert!(
            lines[0].starts_with('[') && lines[0].ends_with("] bob: m1⏎␛"),
            "{}",
            lines[0]
        );
        let mut out = Vec::new();
        Printer::new(true).print(&mut out, &records).unwrap();
        let text = String::from_utf8(out).unwrap();
        let first: serde_json::Value = serde_json::from_str(text.lines().next().unwrap()).unwrap();
        assert_eq!(first["id"], 1);
        assert_eq!(first["message"], "m1\n\u{1b}");
        assert!(
            first.get("room").is_none(),
            "#general's objects are as before rooms"
        );
        // Another room's record says where it was said.
        let dev = Record {
            room: Room::new("#dev").unwrap(),
            ..records[0].clone()
        };
        let mut out = Vec::new();
        Printer::new(true)
            .print(&mut out, std::slice::from_ref(&dev))
            .unwrap();
        let value: serde_json::Value = serde_json::from_slice(&out).unwrap();
        assert_eq!(value["room"], "#dev");
        let mut out = Vec::new();
        Printer::new(false).print(&mut out, &[dev]).unwrap();
        let line = String::from_utf8(out).unwrap();
        assert!(line.contains("] #dev bob: m1"), "{line}");
    }
}
