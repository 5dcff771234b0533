//! Notifications: the terminal's bell, its title, and the user's notify command.
//!
//! - [`Alerts`] decides (no I/O, in the [`super::App`]): which new messages ring the bell
//!   (`bell = mentions|all|off`, at most one ring per [`BELL_GAP`]) and which run the command
//!   (`notify-on`). Only messages from others that arrive live count: not the backlog of a login
//!   (what was missed is not news of now), nor older pages, nor one's own.
//! - [`Notifier`] carries it out (in the run loop): BEL and the title (`gc (3) [1 mention] #dev`,
//!   OSC 0 through crossterm's `SetTitle`) on the terminal, the title saved on the terminal's
//!   title stack at start and given back at exit; the command through [`Hooks`].
//! - [`Hooks`] runs the command on a `gc-notify` thread each, with the sender, room and text as
//!   separate arguments (never a shell), at most [`MAX_HOOKS`] at a time (more are dropped and
//!   logged), each killed with its process group after [`HOOK_TIMEOUT`]; failures are logged.

use std::io::{self, Write};
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use ratatui::crossterm::terminal::SetTitle;
use ratatui::crossterm::{Command as _, execute};

use crate::display::sanitize;
use crate::settings::{Bell, NotifyOn};

/// The least time between two rings of the bell: a busy room is not a siren.
pub const BELL_GAP: Duration = Duration::from_secs(1);
/// How long the notify command may run before it is killed.
pub const HOOK_TIMEOUT: Duration = Duration::from_secs(5);
/// How many notify commands may run at once; a notification meanwhile is dropped (and logged).
pub const MAX_HOOKS: usize = 2;
/// The most characters of a message's text given to the notify command.
pub const HOOK_TEXT_CHARS: usize = 300;
/// Notifications waiting for the run loop at most (a flood between two turns keeps the newest).
const MAX_WAITING: usize = 16;

/// The notification rules of the settings file.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Rules {
    /// Which messages ring the bell.
    pub bell: Bell,
    /// Whether the terminal's title shows the unread counts.
    pub title: bool,
    /// The notify command and its arguments, if any.
    pub command: Option<Vec<String>>,
    /// Which messages run it.
    pub command_on: NotifyOn,
}

impl Default for Rules {
    fn default() -> Self {
        Self {
            bell: Bell::Mentions,
            title: true,
            command: None,
            command_on: NotifyOn::Mentions,
        }
    }
}

/// A message to tell the notify command about.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Notification {
    /// Who wrote it.
    pub sender: String,
    /// Where: `#dev`, or `@alice+bob` for a direct conversation.
    pub room: String,
    /// The text, raw (made harmless when the command is run).
    pub text: String,
}

/// What the new messages call for, decided as they arrive, carried out by the run loop.
#[derive(Debug, Default)]
pub struct Alerts {
    rules: Rules,
    last_bell: Option<Instant>,
    bell: bool,
    calls: Vec<Notification>,
}

impl Alerts {
    /// Alerts following `rules`.
    pub fn new(rules: Rules) -> Self {
        Self {
            rules,
            ..Self::default()
        }
    }

    /// The rules.
    pub fn rules(&self) -> &Rules {
        &self.rules
    }

    /// A message from someone else arrived live at `now`; `mention` when it names the user or
    /// is a direct message.
    pub fn message(
        &mut self,
        now: Instant,
        mention: bool,
        notification: impl FnOnce() -> Notification,
    ) {
        let ring = match self.rules.bell {
            Bell::Mentions => mention,
            Bell::All => true,
            Bell::Off => false,
        };
        if ring
            && self
                .last_bell
                .is_none_or(|last| now.saturating_duration_since(last) >= BELL_GAP)
        {
            self.bell = true;
            self.last_bell = Some(now);
        }
        let call = self.rules.command.is_some()
            && match self.rules.command_on {
                NotifyOn::Mentions => mention,
                NotifyOn::All => true,
            };
        if call {
            if self.calls.len() >= MAX_WAITING {
                self.calls.remove(0);
            }
            self.calls.push(notification());
        }
    }

    /// Whether the bell is to ring now (once).
    pub fn take_bell(&mut self) -> bool {
        std::mem::take(&mut self.bell)
    }

    /// The notify command's calls waiting.
    pub fn take_calls(&mut self) -> Vec<Notification> {
        std::mem::take(&mut self.calls)
    }
}

/// Push the terminal's title on its stack (xterm's window operation 22; tmux and most terminals
/// know it, others ignore it).
const PUSH_TITLE: &str = "\x1b[22;0t";
/// Pop it back (23).
const POP_TITLE: &str = "\x1b[23;0t";

/// Rings the bell and sets the title on the terminal, and runs the notify command.
pub struct Notifier {
    out: Box<dyn Write + Send>,
    title: bool,
    shown: Option<String>,
    hooks: Option<Hooks>,
}

impl std::fmt::Debug for Notifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Notifier")
            .field("title", &self.title)
            .field("shown", &self.shown)
            .field("hooks", &self.hooks)
            .finish_non_exhaustive()
    }
}

impl Notifier {
    /// Writes to `out` (the terminal) as `rules` say, and runs their command if any.
    pub fn new(out: Box<dyn Write + Send>, rules: &Rules) -> Self {
        Self {
            out,
            title: rules.title,
            shown: None,
            hooks: rules.command.clone().map(Hooks::new),
        }
    }

    /// Carries out what `alerts` call for, and shows `title` if it changed.
    pub fn apply(&mut self, alerts: &mut Alerts, title: &str) {
        let mut written = Ok(());
        if alerts.take_bell() {
            written = self.out.write_all(b"\x07");
        }
        if self.title && self.shown.as_deref() != Some(title) {
            if self.shown.is_none() {
                written = written.and_then(|()| self.out.write_all(PUSH_TITLE.as_bytes()));
            }
            written = written.and_then(|()| execute!(self.out, SetTitle(title)));
            self.shown = Some(title.to_owned());
        }
        if let Err(e) = written.and_then(|()| self.out.flush()) {
            tracing::debug!("cannot ring the bell or set the title: {e}");
        }
        let calls = alerts.take_calls();
        if let Some(hooks) = &mut self.hooks {
            for call in &calls {
                hooks.run(call);
            }
        }
    }

    /// At exit: the title is cleared and the one before restored (where the terminal keeps a
    /// stack); running commands are stopped and their threads joined.
    pub fn finish(&mut self) {
        if self.shown.take().is_some() {
            let mut clear = String::new();
            let _ = SetTitle("").write_ansi(&mut clear);
            clear.push_str(POP_TITLE);
            let _ = self
                .out
                .write_all(clear.as_bytes())
                .and_then(|()| self.out.flush());
        }
        if let Some(hooks) = &mut self.hooks {
            hooks.stop();
        }
    }
}

impl Drop for Notifier {
    fn drop(&mut self) {
        if let Some(hooks) = &mut self.hooks {
            hooks.stop();
        }
    }
}

/// What a notify command's thread hears: the command ended, or stop.
enum HookMsg {
    Exited(io::Result<ExitStatus>),
    Stop,
}

struct Running {
    stop: Sender<HookMsg>,
    handle: JoinHandle<()>,
}

/// The notify command's runs.
pub struct Hooks {
    argv: Vec<String>,
    timeout: Duration,
    running: Vec<Running>,
}

impl std::fmt::Debug for Hooks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hooks")
            .field("argv", &self.argv)
            .field("running", &self.running.len())
            .finish_non_exhaustive()
    }
}

impl Hooks {
    /// Runs of `argv` (program first), each killed after [`HOOK_TIMEOUT`].
    pub fn new(argv: Vec<String>) -> Self {
        Self::with_timeout(argv, HOOK_TIMEOUT)
    }

    /// Runs of `argv`, each killed after `timeout`.
    pub fn with_timeout(argv: Vec<String>, timeout: Duration) -> Self {
        Self {
            argv,
            timeout,
            running: Vec::new(),
        }
    }

    /// How many runs are going on.
    pub fn running(&mut self) -> usize {
        self.reap();
        self.running.len()
    }

    /// Runs the command for `n` on a thread of its own, unless [`MAX_HOOKS`] are running.
    pub fn run(&mut self, n: &Notification) {
        self.reap();
        if self.running.len() >= MAX_HOOKS {
            tracing::info!(
                "notify-command: {MAX_HOOKS} still running; the notification of {}'s message \
                 in {} is dropped",
                n.sender,
                n.room
            );
            return;
        }
        let argv = arguments(&self.argv, n);
        let timeout = self.timeout;
        let (tx, rx) = mpsc::channel();
        let exited = tx.clone();
        let spawned = thread::Builder::new()
            .name("gc-notify".into())
            .spawn(move || run_one(&argv, timeout, &exited, &rx));
        match spawned {
            Ok(handle) => self.running.push(Running { stop: tx, handle }),
            Err(e) => tracing::warn!("notify-command: cannot start a thread: {e}"),
        }
    }

    /// Joins the threads whose command ended.
    fn reap(&mut self) {
        let (done, running): (Vec<_>, Vec<_>) = std::mem::take(&mut self.running)
            .into_iter()
            .partition(|r| r.handle.is_finished());
        self.running = running;
        for r in done {
            if r.handle.join().is_err() {
                tracing::error!("a notify-command thread panicked");
            }
        }
    }

    /// Waits for every run to end by itself (or at its timeout).
    #[cfg(test)]
    fn join(&mut self) {
        for r in self.running.drain(..) {
            let _ = r.handle.join();
        }
    }

    /// Kills the commands still running and joins their threads.
    pub fn stop(&mut self) {
        for r in &self.running {
            let _ = r.stop.send(HookMsg::Stop);
        }
        for r in self.running.drain(..) {
            if r.handle.join().is_err() {
                tracing::error!("a notify-command thread panicked");
            }
        }
    }
}

/// The command line for `n`: `{sender}`, `{room}` and `{text}` replaced in the arguments, or,
/// when none names one, the three added at the end. The text is made harmless (no control
/// characters: the command may well put it on a terminal) and cut to [`HOOK_TEXT_CHARS`].
pub fn arguments(argv: &[String], n: &Notification) -> Vec<String> {
    let text: String = sanitize(&n.text).chars().take(HOOK_TEXT_CHARS).collect();
    let values = [
        ("{sender}", sanitize(&n.sender)),
        ("{room}", sanitize(&n.room)),
        ("{text}", text),
    ];
    let placed = argv
        .iter()
        .skip(1)
        .any(|a| values.iter().any(|(key, _)| a.contains(key)));
    let mut out: Vec<String> = argv
        .iter()
        .enumerate()
        .map(|(i, a)| if i == 0 { a.clone() } else { fill(a, &values) })
        .collect();
    if !placed {
        out.extend(values.into_iter().map(|(_, v)| v));
    }
    out
}

/// `arg` with each placeholder replaced, in one pass (a value is never looked into again).
fn fill(arg: &str, values: &[(&str, String)]) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    while let Some(i) = rest.find('{') {
        out.push_str(&rest[..i]);
        let tail = &rest[i..];
        match values.iter().find(|(key, _)| tail.starts_with(key)) {
            Some((key, value)) => {
                out.push_str(value);
                rest = &tail[key.len()..];
            }
            None => {
                out.push('{');
                rest = &tail[1..];
            }
        }
    }
    out.push_str(rest);
    out
}

/// Runs `argv` and waits for it: at most `timeout`, or until told to stop; then it is killed
/// with its process group (a script's children too). Its output goes nowhere: the terminal is
/// the UI's.
fn run_one(
    argv: &[String],
    timeout: Duration,
    exited: &Sender<HookMsg>,
    rx: &mpsc::Receiver<HookMsg>,
) {
    let Some((program, args)) = argv.split_first() else {
        return;
    };
    let spawned = Command::new(program)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        // Its own process group: killed as one, and away from the terminal's foreground group.
        .process_group(0)
        .spawn();
    let mut child = match spawned {
        Ok(child) => child,
        Err(e) => {
            tracing::warn!("notify-command {program:?} cannot be run: {e}");
            return;
        }
    };
    let pid = i32::try_from(child.id())
        .ok()
        .and_then(rustix::process::Pid::from_raw);
    let exited = exited.clone();
    let waiter = thread::Builder::new()
        .name("gc-notify-wait".into())
        .spawn(move || {
            let _ = exited.send(HookMsg::Exited(child.wait()));
        });
    let waiter = match waiter {
        Ok(waiter) => waiter,
        Err(e) => {
            tracing::warn!("notify-command: cannot start a thread: {e}");
            // Not waited for: killed at once so it does not outlive its timeout unseen.
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            return;
        }
    };
    let status = match rx.recv_timeout(timeout) {
        Ok(HookMsg::Exited(status)) => Some(status),
        Ok(HookMsg::Stop) | Err(RecvTimeoutError::Disconnected) => None,
        Err(RecvTimeoutError::Timeout) => {
            tracing::warn!(
                "notify-command {program:?} still ran after {} s: killed",
                timeout.as_secs_f32()
            );
            None
        }
    };
    let status = match status {
        Some(status) => status,
        None => {
            // Not reaped yet (the waiter has not sent its status), so the pid is still the
            // child's and names its group.
            if let Some(pid) = pid {
                let _ = rustix::process::kill_process_group(pid, rustix::process::Signal::KILL);
            }
            loop {
                match rx.recv() {
                    Ok(HookMsg::Exited(status)) => break status,
                    Ok(HookMsg::Stop) => {}
                    Err(_) => break Err(io::Error::other("no status")),
                }
            }
        }
    };
    if waiter.join().is_err() {
        tracing::error!("the notify-command waiter panicked");
    }
    match status {
        Ok(status) if status.success() => {}
        Ok(status) => tracing::warn!("notify-command {program:?} ended with {status}"),
        Err(e) => tracing::warn!("notify-command {program:?}: {e}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn n(text: &str) -> Notification {
        Notification {
            sender: "bob".into(),
            room: "#dev".into(),
            text: text.into(),
        }
    }

    fn rules(bell: Bell) -> Rules {
        Rules {
            bell,
            ..Rules::default()
        }
    }

    #[test]
    fn the_bell_rings_for_mentions_at_most_once_a_second() {
        let t0 = Instant::now();
        let mut a = Alerts::new(rules(Bell::Mentions));
        a.message(t0, false, || n("hi"));
        assert!(!a.take_bell(), "not a mention");
        a.message(t0, true, || n("alice: hi"));
        assert!(a.take_bell());
        assert!(!a.take_bell(), "once");
        a.message(t0 + Duration::from_millis(500), true, || n("alice!"));
        assert!(!a.take_bell(), "too soon");
        a.message(t0 + Duration::from_millis(1000), true, || n("alice?"));
        assert!(a.take_bell(), "a second later");

        let mut all = Alerts::new(rules(Bell::All));
        all.message(t0, false, || n("hi"));
        assert!(all.take_bell());
        let mut off = Alerts::new(rules(Bell::Off));
        off.message(t0, true, || n("alice"));
        assert!(!off.take_bell());
        assert!(off.take_calls().is_empty(), "no command, no calls");
    }

    #[test]
    fn the_command_follows_notify_on() {
        let t0 = Instant::now();
        let mut a = Alerts::new(Rules {
            command: Some(vec!["x".into()]),
            bell: Bell::Off,
            ..Rules::default()
        });
        a.message(t0, false, || n("plain"));
        a.message(t0, true, || n("alice: look"));
        assert_eq!(a.take_calls(), [n("alice: look")]);
        let mut all = Alerts::new(Rules {
            command: Some(vec!["x".into()]),
            command_on: NotifyOn::All,
            ..Rules::default()
        });
        for i in 0..40 {
            all.message(t0, false, || n(&format!("m{i}")));
        }
        let calls = all.take_calls();
        assert_eq!(calls.len(), MAX_WAITING, "bounded");
        assert_eq!(calls.last().unwrap().text, "m39", "the newest kept");
    }

    #[test]
    fn arguments_are_separate_and_harmless() {
        let argv = |v: &[&str]| v.iter().map(|s| (*s).to_owned()).collect::<Vec<_>>();
        let hostile = "hi $(rm -rf ~) `x`; \u{1b}]0;pwned\u{7}\nnext";
        // Added at the end, one argument each, nothing interpreted; control characters shown.
        assert_eq!(
            arguments(&argv(&["notify-send"]), &n(hostile)),
            [
                "notify-send",
                "bob",
                "#dev",
                "hi $(rm -rf ~) `x`; ␛]0;pwned␇⏎next"
            ]
        );
        // Placed where the arguments say; a value is never expanded again.
        let n2 = Notification {
            text: "{sender} {room}".into(),
            ..n("")
        };
        assert_eq!(
            arguments(
                &argv(&[
                    "notify-send",
                    "-a",
                    "gc",
                    "--",
                    "{sender} in {room}",
                    "{text}",
                    "{x}"
                ]),
                &n2
            ),
            [
                "notify-send",
                "-a",
                "gc",
                "--",
                "bob in #dev",
                "{sender} {room}",
                "{x}"
            ]
        );
        let long = "é".repeat(1000);
        let args = arguments(&argv(&["p"]), &n(&long));
        assert_eq!(args[3].chars().count(), HOOK_TEXT_CHARS);
    }

    /// A writer the test can read back.
    #[derive(Clone, Default)]
    struct Shared(Arc<Mutex<Vec<u8>>>);

    impl Write for Shared {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl Shared {
        fn take(&self) -> String {
            String::from_utf8(std::mem::take(&mut *self.0.lock().unwrap())).unwrap()
        }
    }

    #[test]
    fn the_notifier_writes_bel_and_the_title_once_each_and_restores_it() {
        let out = Shared::default();
        let mut notifier = Notifier::new(Box::new(out.clone()), &Rules::default());
        let mut alerts = Alerts::new(Rules::default());
        notifier.apply(&mut alerts, "gc #general");
        assert_eq!(out.take(), "\x1b[22;0t\x1b]0;gc #general\x07");
        alerts.message(Instant::now(), true, || n("alice"));
        notifier.apply(&mut alerts, "gc #general");
        assert_eq!(out.take(), "\x07", "the bell; the title has not changed");
        notifier.apply(&mut alerts, "gc (1) #general");
        assert_eq!(out.take(), "\x1b]0;gc (1) #general\x07");
        notifier.finish();
        assert_eq!(out.take(), "\x1b]0;\x07\x1b[23;0t");

        let quiet = Shared::default();
        let mut notifier = Notifier::new(
            Box::new(quiet.clone()),
            &Rules {
                title: false,
                ..Rules::default()
            },
        );
        notifier.apply(&mut alerts, "gc (1) #general");
        notifier.finish();
        assert_eq!(quiet.take(), "", "title = false leaves it alone");
    }

    /// Waits (bounded) until `path` holds `lines` lines.
    fn wait_lines(path: &std::path::Path, lines: usize) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let text = std::fs::read_to_string(path).unwrap_or_default();
            if text.lines().count() >= lines {
                return text;
            }
            assert!(Instant::now() < deadline, "timed out: {text:?}");
            // A file written by another process: nothing to wait on but the file itself.
            thread::sleep(Duration::from_millis(20));
        }
    }

    #[test]
    fn hooks_get_separate_arguments_run_bounded_and_are_killed_on_time() {
        let dir = tempfile::tempdir().unwrap();
        let out = dir.path().join("out");
        let script = dir.path().join("hook.sh");
        // Each argument on a line of its own: a shell would have split or run something.
        std::fs::write(
            &script,
            format!(
                "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> '{}'; done\n",
                out.display()
            ),
        )
        .unwrap();
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&script, std::fs::Permissions::from_mode(0o700)).unwrap();
        let mut hooks = Hooks::new(vec![script.display().to_string()]);
        hooks.run(&n("hi $(touch pwned) `x`; a b"));
        let text = wait_lines(&out, 3);
        assert_eq!(text, "bob\n#dev\nhi $(touch pwned) `x`; a b\n");
        assert!(!std::path::Path::new("pwned").exists());
        hooks.stop();

        // A command that does not end is killed at its timeout; no more than MAX_HOOKS run.
        // (`{sender}` is the script's `$0`: nothing is added after it.)
        let slow_argv = ["sh", "-c", "sleep 30", "{sender}"]
            .map(String::from)
            .to_vec();
        let mut slow = Hooks::with_timeout(slow_argv, Duration::from_millis(300));
        let started = Instant::now();
        for _ in 0..5 {
            slow.run(&n("x"));
        }
        assert_eq!(slow.running(), MAX_HOOKS);
        slow.stop();
        assert!(started.elapsed() < Duration::from_secs(10));
        for _ in 0..MAX_HOOKS {
            slow.run(&n("x"));
        }
        // Not stopped: the timeout kills them, and their threads end by themselves.
        let started = Instant::now();
        slow.join();
        let took = started.elapsed();
        assert!(
            took >= Duration::from_millis(250) && took < Duration::from_secs(10),
            "{took:?}"
        );

        // A program that does not exist is logged, not a crash.
        let mut missing = Hooks::new(vec!["/nonexistent/gc-notify".into()]);
        missing.run(&n("x"));
        missing.stop();
    }
}
