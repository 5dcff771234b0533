//! The terminal UI end to end: the real `gc-client` binary in tmux (private socket, fixed size)
//! against a real server in this process, typed at with `send-keys` and read with
//! `capture-pane`; and `--with-server`, which runs the real `gc-server` binary.

use std::net::TcpListener;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::time::{Duration, Instant};

use gc_client::tui::scrollback::Entry;
use gc_client::tui::{App, AppEvent, ClientDriver, Flow, Zone, step};
use gc_client_core::{Password, ServerPorts};
use ratatui::Terminal;
use ratatui::backend::TestBackend;
use ratatui::crossterm::event::{Event as TermEvent, KeyCode, KeyEvent, KeyModifiers};

use crate::headless::run;
use crate::support::{
    Server, TestClient, WAIT, config, connection_args, port_args, register, trust,
};

/// A tmux server of our own (`tmux -L <socket>`), killed on drop.
struct Tmux {
    socket: String,
}

impl Tmux {
    /// A session running `sh` in a 100×30 window, or `None` when tmux is not installed and not
    /// required (`GC_REQUIRE_TMUX` unset).
    fn start() -> Option<Self> {
        if Command::new("tmux").arg("-V").output().is_err() {
            assert!(
                std::env::var_os("GC_REQUIRE_TMUX").is_none(),
                "tmux is required (GC_REQUIRE_TMUX is set) but not installed: apt-get install tmux"
            );
            #[allow(clippy::print_stderr)]
            {
                eprintln!("skipping the terminal UI test: tmux is not installed");
            }
            return None;
        }
        static NEXT: AtomicU32 = AtomicU32::new(0);
        let socket = format!(
            "gc-tui-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        );
        let tmux = Self { socket };
        let out = tmux.cmd(&[
            "-f",
            "/dev/null",
            "new-session",
            "-d",
            "-x",
            "100",
            "-y",
            "30",
            "-s",
            "gc",
            "env",
            "PS1=$ ",
            "sh",
        ]);
        assert!(out.status.success(), "tmux new-session: {out:?}");
        Some(tmux)
    }

    fn cmd(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .expect("tmux runs")
    }

    /// Types `text` literally.
    fn type_text(&self, text: &str) {
        let out = self.cmd(&["send-keys", "-t", "gc", "-l", text]);
        assert!(out.status.success(), "send-keys: {out:?}");
    }

    /// Presses a key by tmux name (`Enter`, `Escape`, `M-Enter`, `C-c`, …).
    fn key(&self, key: &str) {
        let out = self.cmd(&["send-keys", "-t", "gc", key]);
        assert!(out.status.success(), "send-keys {key}: {out:?}");
    }

    fn screen(&self) -> String {
        String::from_utf8_lossy(&self.cmd(&["capture-pane", "-p", "-t", "gc"]).stdout).into_owned()
    }

    /// Whether the program in the pane asked for mouse reporting, and in SGR encoding:
    /// `"1 1"` or `"0 0"`.
    fn mouse_flags(&self) -> String {
        let out = self.cmd(&[
            "display-message",
            "-p",
            "-t",
            "gc",
            "#{mouse_standard_flag} #{mouse_sgr_flag}",
        ]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    }

    fn alternate_screen(&self) -> bool {
        let out = self.cmd(&["display-message", "-p", "-t", "gc", "#{alternate_on}"]);
        String::from_utf8_lossy(&out.stdout).trim() == "1"
    }

    /// Waits until the screen shows `text` (tmux announces nothing: it is looked at every 50 ms,
    /// for at most [`WAIT`]).
    fn wait_for(&self, text: &str, log: &Path) -> String {
        self.wait_until(&format!("{text:?} on screen"), log, |screen| {
            screen.contains(text)
        })
    }

    /// Waits until `check` holds for the screen, looked at every 50 ms for at most [`WAIT`].
    fn wait_until(&self, what: &str, log: &Path, check: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + WAIT;
        loop {
            let screen = self.screen();
            if check(&screen) {
                return screen;
            }
            assert!(
                Instant::now() < deadline,
                "timed out waiting for {what}; screen:\n{screen}\nclient log:\n{}",
                std::fs::read_to_string(log).unwrap_or_default()
            );
            std::thread::sleep(Duration::from_millis(50));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.cmd(&["kill-server"]);
    }
}

/// Quotes for `sh`.
fn sh_quote(s: &str) -> String {
    format!("'{}'", s.replace('\'', r"'\''"))
}

#[test]
fn tui_registers_sends_receives_and_restores_the_terminal() {
    let Some(tmux) = Tmux::start() else {
        return;
    };
    // A server that tells which names exist (as `--with-server` runs one): the login form can
    // offer to create the account.
    let server = Server::start_with(|c| c.tell_unknown_users = true);
    register(&server, "bob", "bob-password");
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();

    let dir = tempfile::tempdir().unwrap();
    let settings = dir.path().join("config").join("config.toml");
    let log = dir.path().join("client.log");
    let mut args = vec![
        env!("CARGO_BIN_EXE_gc-client").to_owned(),
        "127.0.0.1".into(),
    ];
    args.extend(connection_args(&server));
    args.extend([
        "--config".to_owned(),
        settings.display().to_string(),
        "--log-file".into(),
        log.display().to_string(),
    ]);
    let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    let data = sh_quote(&dir.path().join("data").display().to_string());
    tmux.type_text(&format!(
        "env -u GC_PASSWORD XDG_DATA_HOME={data} {}; echo GC-EXIT-$?",
        args.join(" ")
    ));
    tmux.key("Enter");

    // Login: the server does not know carol and takes registrations, so the UI offers to
    // create the account; the password is asked again and never shown.
    tmux.wait_for("Username", &log);
    assert!(tmux.alternate_screen());
    tmux.type_text("carol");
    tmux.key("Enter");
    tmux.type_text("pw-carol");
    tmux.key("Enter");
    let screen = tmux.wait_for("no account \"carol\"", &log);
    assert!(screen.contains("Password   ••••••••"), "{screen}");
    tmux.type_text("pw-carol");
    tmux.key("Enter");
    tmux.wait_for(" ACTIVE │ ", &log);
    let screen = tmux.wait_for("account carol created", &log);
    assert!(!screen.contains("pw-carol"), "{screen}");

    // A message typed in the UI reaches bob; a multi-line one (Alt+Enter) too.
    tmux.type_text("hello from tmux");
    tmux.key("Enter");
    tmux.type_text("first line");
    tmux.key("M-Enter");
    tmux.type_text("second line");
    tmux.key("Enter");
    bob.wait_records(2);
    assert_eq!(bob.bodies(), ["hello from tmux", "first line\nsecond line"]);
    assert_eq!(bob.records[0].username.as_str(), "carol");
    tmux.wait_for("carol: hello from tmux", &log);
    let screen = tmux.wait_for("      second line", &log);
    assert!(screen.contains("carol: first line"), "{screen}");

    // Bob's message appears, with its escape sequence shown, not obeyed.
    bob.send("hi carol \u{1b}[2J\u{1b}[31mfrom bob");
    let screen = tmux.wait_for("bob: hi carol ␛[2J␛[31mfrom bob", &log);
    assert!(
        screen.contains("carol: hello from tmux"),
        "not cleared:\n{screen}"
    );

    // A bracketed paste keeps its newlines and does not send: Enter does, as one message. The
    // paste's final line end (tmux pastes it as CR) is not part of the message.
    let out = tmux.cmd(&["set-buffer", "--", "pasted line 1\npasted line 2\n"]);
    assert!(out.status.success(), "{out:?}");
    let out = tmux.cmd(&["paste-buffer", "-p", "-t", "gc"]);
    assert!(out.status.success(), "{out:?}");
    let screen = tmux.wait_for("  pasted line 2", &log);
    assert!(screen.contains("> pasted line 1"), "{screen}");
    tmux.key("Enter");
    bob.wait_records(4);
    assert_eq!(bob.bodies()[3], "pasted line 1\npasted line 2");

    // A tab in a message is drawn as spaces to the next tab stop, not as a symbol.
    bob.send("col\tumn");
    tmux.wait_for("bob: col     umn", &log);

    // Tab completes a name, and again the next one (bob wrote last: he comes first); Shift+Tab
    // goes back.
    register(&server, "bobby", "pw-bobby");
    let mut bobby = TestClient::start(config(&server, "bobby", "pw-bobby"));
    bobby.wait_active();
    let input_is =
        |text: &'static str| move |screen: &str| screen.lines().any(|l| l.trim_end() == text);
    tmux.wait_until("bobby in the people pane", &log, |screen| {
        screen.lines().any(|l| l.trim_end().ends_with("│ bobby"))
    });
    tmux.type_text("bo");
    tmux.key("Tab");
    tmux.wait_until("bob completed", &log, input_is("> bob:"));
    tmux.key("Tab");
    tmux.wait_until("bobby completed", &log, input_is("> bobby:"));
    tmux.key("BTab");
    tmux.wait_until("back to bob", &log, input_is("> bob:"));
    tmux.key("C-u");

    // Unknown commands are never sent.
    tmux.type_text("/frobnicate");
    tmux.key("Enter");
    tmux.wait_for("unknown command /frobnicate", &log);
    tmux.key("C-u");

    // Quit: the shell is back, out of the alternate screen, in cooked mode (a typed command
    // runs, which needs ICRNL and echo back on).
    tmux.type_text("/quit");
    tmux.key("Enter");
    tmux.wait_for("GC-EXIT-0", &log);
    assert!(!tmux.alternate_screen(), "still on the alternate screen");
    tmux.type_text("echo AFTER-$((6*7))");
    tmux.key("Enter");
    tmux.wait_for("AFTER-42", &log);

    let remembered = std::fs::read_to_string(&settings).unwrap();
    assert!(remembered.contains("user = \"carol\""), "{remembered}");
    assert!(!remembered.contains("pw-carol"), "{remembered}");
    assert_eq!(bob.close(), 0);
    assert_eq!(bobby.close(), 0);
    // "/frobnicate" was never sent.
    let stored = server.stored_lines();
    assert!(
        !stored.iter().any(|l| l.contains("frobnicate")),
        "{stored:?}"
    );
}

/// For `user` (registered here with password `<user>-password`, kept in a file in `dir`): a shell
/// script that writes its pid to `dir/pid` and becomes a `gc-client` logging in at once against
/// `server` (in the foreground: it owns the terminal, so a test can signal exactly that process),
/// logging to `dir/client.log`. Returns the script, the log and the pid file.
fn password_file_client(server: &Server, user: &str, dir: &Path) -> (String, PathBuf, PathBuf) {
    password_file_client_of(server, "127.0.0.1", user, dir)
}

/// [`password_file_client`] with `server_arg` as the server argument (a list, say).
fn password_file_client_of(
    server: &Server,
    server_arg: &str,
    user: &str,
    dir: &Path,
) -> (String, PathBuf, PathBuf) {
    let password = format!("{user}-password");
    register(server, user, &password);
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("{password}\n")).expect("write the password file");
    let log = dir.join("client.log");
    let pid_file = dir.join("pid");
    let mut args = vec![
        env!("CARGO_BIN_EXE_gc-client").to_owned(),
        server_arg.into(),
        "--user".into(),
        user.into(),
        "--password-file".into(),
        pw.display().to_string(),
    ];
    args.extend(connection_args(server));
    args.extend([
        "--config".to_owned(),
        dir.join("config.toml").display().to_string(),
        "--log-file".into(),
        log.display().to_string(),
        "--no-cache".into(),
    ]);
    let args: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    let script = format!(
        "echo $$ > {}; exec {}",
        sh_quote(&pid_file.display().to_string()),
        args.join(" ")
    );
    (script, log, pid_file)
}

#[test]
fn tui_logs_in_with_a_password_file_and_stops_on_sigterm() {
    let Some(tmux) = Tmux::start() else {
        return;
    };
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (script, log, pid_file) = password_file_client(&server, "dave", dir.path());
    tmux.type_text(&format!("sh -c {}; echo GC-EXIT-$?", sh_quote(&script)));
    tmux.key("Enter");
    tmux.wait_for(" ACTIVE │ ", &log);
    let pid = std::fs::read_to_string(&pid_file).unwrap();
    let out = Command::new("kill")
        .args(["-TERM", pid.trim()])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    tmux.wait_for("GC-EXIT-143", &log);
    assert!(!tmux.alternate_screen());
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("signal 15"), "{log_text}");
    assert!(log_text.contains("session ended with Bye"), "{log_text}");
}

/// With a server list whose first instance is down, the client logs in on the second and the
/// status bar says so.
#[test]
fn tui_status_bar_names_the_instance_of_a_server_list() {
    let Some(tmux) = Tmux::start() else {
        return;
    };
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    // Nothing listens on 127.0.0.3 at the server's ports.
    let (script, log, _pid) =
        password_file_client_of(&server, "127.0.0.3,127.0.0.1", "erin", dir.path());
    tmux.type_text(&format!("sh -c {}; echo GC-EXIT-$?", sh_quote(&script)));
    tmux.key("Enter");
    let screen = tmux.wait_for("│ on 127.0.0.1 (2/2) │", &log);
    assert!(!screen.contains("127.0.0.3,"), "{screen}");
    tmux.type_text("/quit");
    tmux.key("Enter");
    tmux.wait_for("GC-EXIT-0", &log);
}

/// The mouse wheel scrolls the messages in a real terminal: the client turns on SGR mouse
/// reporting, and the wheel's escape sequences come back as scrolling (three rows a notch).
#[test]
fn tui_scrolls_with_the_mouse_wheel() {
    let Some(tmux) = Tmux::start() else {
        return;
    };
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (script, log, _) = password_file_client(&server, "wheel", dir.path());
    tmux.type_text(&format!("sh -c {}; echo GC-EXIT-$?", sh_quote(&script)));
    tmux.key("Enter");
    tmux.wait_for(" ACTIVE │ ", &log);
    assert_eq!(tmux.mouse_flags(), "1 1", "button and wheel reporting, SGR");

    // Forty rows of messages, more than the 30-row screen holds.
    register(&server, "bob", "bob-password");
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();
    for m in 1..=8 {
        let lines: Vec<String> = (1..=5).map(|l| format!("m{m} row {l}")).collect();
        bob.send(&lines.join("\n"));
    }
    tmux.wait_for("m8 row 5", &log);

    // Wheel up (SGR button 64) three notches: the last nine rows leave the screen.
    for _ in 0..3 {
        tmux.type_text("\x1b[<64;20;10M");
    }
    let screen = tmux.wait_until("the newest rows to scroll away", &log, |s| {
        !s.contains("m8 row 5") && s.contains("m7 row 1")
    });
    assert!(
        !screen.contains("[<64"),
        "the sequence was typed, not read:\n{screen}"
    );
    // Wheel down (button 65) as far: back at the bottom.
    for _ in 0..3 {
        tmux.type_text("\x1b[<65;20;10M");
    }
    tmux.wait_for("m8 row 5", &log);
    tmux.type_text("/quit");
    tmux.key("Enter");
    tmux.wait_for("GC-EXIT-0", &log);
    assert_eq!(bob.close(), 0);
}

/// `mouse = false` in the settings file leaves the mouse to the terminal; and a URL written as
/// an OSC 8 hyperlink leaves the text around it where it belongs (the sequences take no cells).
#[test]
fn tui_mouse_can_be_left_to_the_terminal_and_urls_keep_their_place() {
    let Some(tmux) = Tmux::start() else {
        return;
    };
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (script, log, _) = password_file_client(&server, "erin", dir.path());
    std::fs::write(dir.path().join("config.toml"), "mouse = false\n").unwrap();
    tmux.type_text(&format!("sh -c {}; echo GC-EXIT-$?", sh_quote(&script)));
    tmux.key("Enter");
    tmux.wait_for(" ACTIVE │ ", &log);
    assert_eq!(tmux.mouse_flags(), "0 0", "no mouse reporting");

    register(&server, "bob", "bob-password");
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();
    bob.send("see (https://example.com/a/b?c=d) then the rest");
    tmux.wait_for("bob: see (https://example.com/a/b?c=d) then the rest", &log);
    tmux.type_text("/quit");
    tmux.key("Enter");
    tmux.wait_for("GC-EXIT-0", &log);
    // The username was remembered next to the setting, which stays.
    let config = std::fs::read_to_string(dir.path().join("config.toml")).unwrap();
    assert!(config.contains("mouse = false"), "{config}");
    assert!(config.contains("user = \"erin\""), "{config}");
    assert_eq!(bob.close(), 0);
}

/// Whether process `pid` still runs (not gone, not a zombie).
fn running(pid: &str) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/status")).is_ok_and(|status| {
        !status
            .lines()
            .any(|l| l.starts_with("State:") && l.contains("Z"))
    })
}

/// A pidfd of process `pid`: it turns readable when the process exits, whoever its parent is
/// (tmux's shell, here), so a test can wait for the exit instead of polling for it.
fn exit_watch(pid: &str) -> OwnedFd {
    let raw = pid.parse().expect("a process id");
    let pid = rustix::process::Pid::from_raw(raw).expect("not 0");
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty())
        .unwrap_or_else(|e| panic!("pidfd_open({raw}): {e}"))
}

/// Whether the process of `pidfd` exits (or has exited: a zombie counts) within `timeout`.
fn exited_within(pidfd: &OwnedFd, timeout: Duration) -> bool {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let deadline = Instant::now() + timeout;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let left = Timespec::try_from(left).expect("a timeout poll takes");
        let mut fds = [PollFd::new(pidfd, PollFlags::IN)];
        match poll(&mut fds, Some(&left)) {
            Ok(0) => return false,
            Ok(_) => return true,
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => panic!("poll on a pidfd: {e}"),
        }
    }
}

/// Regression: crossterm never returns from `poll` once the terminal is gone, so joining the
/// input thread hung forever at 100% CPU after the terminal closed.
#[test]
fn tui_exits_when_its_terminal_disappears() {
    let Some(tmux) = Tmux::start() else {
        return;
    };
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (script, log, pid_file) = password_file_client(&server, "gina", dir.path());
    tmux.type_text(&format!("sh -c {}", sh_quote(&script)));
    tmux.key("Enter");
    tmux.wait_for(" ACTIVE │ ", &log);
    let pid = std::fs::read_to_string(&pid_file)
        .unwrap()
        .trim()
        .to_owned();
    // Opened while it runs, so the descriptor is for this very process.
    let exit = exit_watch(&pid);
    assert!(running(&pid));

    // The terminal goes away under the client.
    let _ = tmux.cmd(&["kill-server"]);
    if !exited_within(&exit, WAIT) {
        let _ = Command::new("kill").args(["-KILL", &pid]).status();
        panic!(
            "gc-client still runs {} s after its terminal went away; log:\n{}",
            WAIT.as_secs(),
            std::fs::read_to_string(&log).unwrap_or_default()
        );
    }
    let log_text = std::fs::read_to_string(&log).unwrap();
    assert!(log_text.contains("session ended with Bye"), "{log_text}");
}

/// Three ports free right now (for a server that must be told its ports in advance).
fn free_ports() -> [u16; 3] {
    let listeners: Vec<TcpListener> = (0..3)
        .map(|_| TcpListener::bind("127.0.0.1:0").expect("a free port"))
        .collect();
    let ports: Vec<u16> = listeners
        .iter()
        .map(|l| l.local_addr().expect("bound").port())
        .collect();
    [ports[0], ports[1], ports[2]]
}

fn server_binary() -> PathBuf {
    Path::new(env!("CARGO_BIN_EXE_gc-client")).with_file_name("gc-server")
}

#[test]
fn with_server_runs_and_stops_the_gc_server_binary() {
    if !server_binary().is_file() {
        // `cargo test -p gc-client` alone does not build gc-server's binary; the workspace run
        // (`cargo test --workspace`, as CI does) does.
        assert!(
            std::env::var_os("CI").is_none(),
            "{} was not built",
            server_binary().display()
        );
        #[allow(clippy::print_stderr)]
        {
            eprintln!("skipping: {} is not built", server_binary().display());
        }
        return;
    }
    // Inherited by gc-client and its gc-server: files made without a mode would be 0644.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "erin-password\n").unwrap();
    let log = dir.path().join("logs").join("client.log");
    std::fs::create_dir_all(log.parent().unwrap()).unwrap();
    let [connect, auth, send] = free_ports();
    let mut args = vec![
        "127.0.0.1".to_owned(),
        "--with-server".into(),
        "--server-data-dir".into(),
        dir.path().join("server-data").display().to_string(),
        "--headless".into(),
        "--register".into(),
        "--user".into(),
        "erin".into(),
        "--password-file".into(),
        pw.display().to_string(),
    ];
    args.extend(port_args(ServerPorts {
        connect,
        auth,
        send,
    }));
    args.extend([
        "--no-cache".to_owned(),
        "--log-file".into(),
        log.display().to_string(),
    ]);
    let out = run(&args, "hello local server\n");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let server_log =
        std::fs::read_to_string(dir.path().join("logs").join("gc-server.log")).unwrap_or_default();
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}\nserver log:\n{server_log}"
    );
    assert!(stdout.contains("] erin: hello local server"), "{stdout}");
    assert!(stderr.is_empty() || !stderr.contains("killed"), "{stderr}");
    // Stopped by SIGTERM, gracefully; its data is where it was told.
    assert!(server_log.contains("server stopped"), "{server_log}");
    assert!(dir.path().join("server-data").join("database.db").is_file());
    // Both logs and the data dir are the user's alone, whatever the umask (022, set above).
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        assert_eq!(mode(&log), 0o600);
        assert_eq!(mode(&dir.path().join("logs").join("gc-server.log")), 0o600);
        assert_eq!(mode(&dir.path().join("server-data")), 0o700);
    }
    // Nobody answers on its port any more.
    let addr = format!("127.0.0.1:{connect}").parse().unwrap();
    assert!(!gc_client::local_server::ping(addr, true));
}

#[test]
fn with_server_explains_a_missing_binary() {
    // A copy of gc-client alone in a directory: no gc-server next to it.
    let dir = tempfile::tempdir().unwrap();
    let lonely = dir.path().join("gc-client");
    std::fs::hard_link(env!("CARGO_BIN_EXE_gc-client"), &lonely)
        .or_else(|_| std::fs::copy(env!("CARGO_BIN_EXE_gc-client"), &lonely).map(|_| ()))
        .unwrap();
    let out = Command::new(&lonely)
        .args(["127.0.0.1", "--with-server", "--headless", "--user", "x"])
        .env("HOME", dir.path())
        .env_remove("XDG_STATE_HOME")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("cargo build --release"), "{stderr}");
}

/// Turns the run loop until `done` holds (bounded by [`WAIT`]).
fn pump(
    terminal: &mut Terminal<TestBackend>,
    app: &mut App,
    driver: &mut ClientDriver<'_>,
    rx: &Receiver<AppEvent>,
    what: &str,
    done: impl Fn(&App) -> bool,
) {
    let deadline = Instant::now() + WAIT;
    while !done(app) {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        let flow = step(terminal, app, driver, rx, Duration::from_millis(50)).expect("step");
        assert_eq!(flow, Flow::Continue, "quit while waiting for {what}");
    }
}

fn press(tx: &Sender<AppEvent>, code: KeyCode, modifiers: KeyModifiers) {
    tx.send(AppEvent::Terminal(TermEvent::Key(KeyEvent::new(
        code, modifiers,
    ))))
    .expect("loop listening");
}

fn type_keys(tx: &Sender<AppEvent>, text: &str) {
    for c in text.chars() {
        press(tx, KeyCode::Char(c), KeyModifiers::NONE);
    }
}

fn messages(app: &App) -> usize {
    app.log()
        .entries()
        .iter()
        .filter(|e| e.message_id().is_some())
        .count()
}

fn screen(terminal: &Terminal<TestBackend>) -> Vec<String> {
    let buf = terminal.backend().buffer();
    (0..buf.area.height)
        .map(|y| {
            (0..buf.area.width)
                .map(|x| buf[(x, y)].symbol())
                .collect::<String>()
                .trim_end()
                .to_owned()
        })
        .collect()
}

#[test]
fn run_loop_logs_in_loads_older_history_and_sends() {
    let server = Server::start_with(|c| {
        c.history_on_join = 20;
        c.rate_burst = 1000;
        c.rate_per_sec = 1000.0;
    });
    register(&server, "bob", "bob-password");
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();
    for i in 1..=300 {
        bob.send(&format!("old {i}"));
    }
    bob.wait_acked(300);

    let (tx, rx) = mpsc::channel();
    let config_for = |user: &str, password: Password, register: bool| {
        let mut c = config(&server, user, password.expose());
        c.register = register;
        Ok(c)
    };
    let mut driver = ClientDriver::new(tx.clone(), &config_for, None, trust(&server));
    let mut app = App::new("127.0.0.1", Zone::Local);
    app.auto_login("carol", Password::new("pw-carol"), true);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    let t = &mut terminal;

    // Logged in (registering first): the newest 20 arrive.
    pump(t, &mut app, &mut driver, &rx, "20 records", |a| {
        matches!(a.screen, gc_client::tui::app::Screen::Chat) && messages(a) == 20
    });
    assert_eq!(app.log().oldest_id(), Some(281));

    // Past the top: older pages come from the server (no cache here), 200 at a time.
    press(&tx, KeyCode::Home, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "220 records", |a| {
        messages(a) == 220
    });
    press(&tx, KeyCode::Home, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "300 records", |a| {
        messages(a) == 300
    });
    press(&tx, KeyCode::Home, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "the top", |a| {
        a.history_done() && a.log().anchor().is_some_and(|top| top.entry < 30)
    });
    // One more turn draws what the last event did.
    step(t, &mut app, &mut driver, &rx, Duration::ZERO).expect("step");
    let ids: Vec<u64> = app
        .log()
        .entries()
        .iter()
        .filter_map(Entry::message_id)
        .collect();
    assert_eq!(ids, (1..=300).collect::<Vec<u64>>(), "in order, each once");
    let rows = screen(&terminal);
    assert!(rows[1].contains(" bob: old 1 "), "{rows:?}");
    assert!(rows[22].ends_with("│ outbox 0"), "{:?}", rows[22]);

    // A message typed in the loop reaches bob and comes back; the outbox empties.
    let t = &mut terminal;
    press(&tx, KeyCode::End, KeyModifiers::NONE);
    type_keys(&tx, "hello from the loop");
    press(&tx, KeyCode::Enter, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "the message back", |a| {
        messages(a) == 301 && a.pending.is_empty()
    });
    bob.wait_records(301);
    assert_eq!(
        bob.bodies().last().map(String::as_str),
        Some("hello from the loop")
    );

    // /who answers with a notice.
    type_keys(&tx, "/who");
    press(&tx, KeyCode::Enter, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "/who", |a| {
        a.log()
            .entries()
            .iter()
            .any(|e| e.searchable() == "online (2): bob, carol")
    });

    press(&tx, KeyCode::Char('c'), KeyModifiers::CONTROL);
    let flow = step(&mut terminal, &mut app, &mut driver, &rx, WAIT).expect("step");
    assert_eq!(flow, Flow::Quit);
    assert!(driver.close(Duration::from_secs(5)).is_empty());
    bob.close();
}

/// A client plugin's command (the C `shout` example) in the terminal UI: `/shout hi` is sent
/// as `HI!`, `/help` lists it, Tab completes it, and a refusal comes back as an error with the
/// line given back (issue #18).
#[test]
fn run_loop_runs_a_plugin_command_lists_it_and_completes_it() {
    let server = Server::start();
    register(&server, "bob", "bob-password");
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();
    let mods = tempfile::tempdir().unwrap();
    std::fs::copy(gc_tests::shout_library(), mods.path().join("libshout.so")).unwrap();

    let (tx, rx) = mpsc::channel();
    let config_for = |user: &str, password: Password, register: bool| {
        let mut c = config(&server, user, password.expose());
        c.register = register;
        c.mods_dir = Some(mods.path().to_owned());
        Ok(c)
    };
    let mut driver = ClientDriver::new(tx.clone(), &config_for, None, trust(&server));
    let mut app = App::new("127.0.0.1", Zone::Local);
    app.auto_login("carol", Password::new("pw-carol"), true);
    let mut terminal = Terminal::new(TestBackend::new(100, 30)).expect("test terminal");
    let t = &mut terminal;
    pump(t, &mut app, &mut driver, &rx, "the conversation", |a| {
        matches!(a.screen, gc_client::tui::app::Screen::Chat)
            && a.status.state == gc_client_core::ConnState::Active
    });
    let names: Vec<&str> = app
        .plugin_commands()
        .iter()
        .map(|c| c.name.as_str())
        .collect();
    assert_eq!(names, ["shout"]);

    // Tab completes the plugin's command.
    type_keys(&tx, "/sh");
    press(&tx, KeyCode::Tab, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "/sh completed", |a| {
        a.input.text() == "/shout "
    });
    // Typed: the plugin makes the message, and it is sent (and comes back) as any other.
    type_keys(&tx, "hi");
    press(&tx, KeyCode::Enter, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "HI! back", |a| {
        messages(a) == 1 && a.pending.is_empty()
    });
    bob.wait_records(1);
    assert_eq!(bob.bodies(), ["HI!"]);

    // /help lists it.
    type_keys(&tx, "/help");
    press(&tx, KeyCode::Enter, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "/help", |a| {
        a.log().entries().iter().any(|e| {
            e.searchable().contains("plugin commands:")
                && e.searchable().contains("/shout TEXT")
                && e.searchable()
                    .contains("send TEXT in capitals, with a ! (shout)")
        })
    });

    // Refused by the plugin: said, nothing sent, the line given back to fix.
    type_keys(&tx, "/shout");
    press(&tx, KeyCode::Enter, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "the refusal", |a| {
        a.log()
            .entries()
            .iter()
            .any(|e| e.searchable() == "/shout (plugin shout): /shout needs something to shout")
    });
    assert_eq!(app.input.text(), "/shout");
    assert_eq!(messages(&app), 1);

    press(&tx, KeyCode::Char('c'), KeyModifiers::CONTROL);
    let flow = step(&mut terminal, &mut app, &mut driver, &rx, WAIT).expect("step");
    assert_eq!(flow, Flow::Quit);
    assert!(driver.close(Duration::from_secs(5)).is_empty());
    bob.close();
}

/// Back after a while: what was written meanwhile comes first, then "logged in", each at its
/// own time, then what is written after the login.
#[test]
fn run_loop_says_logged_in_after_the_messages_missed() {
    let server = Server::start();
    register(&server, "bob", "bob-password");
    let (_dir, cache) = gc_tests::client::cache_dir();
    let (tx, rx) = mpsc::channel();
    let base = config(&server, "carol", "pw-carol-1");
    let config_for = move |user: &str, password: Password, register: bool| {
        let mut c = base.clone();
        c.username = user.to_owned();
        c.password = password;
        c.register = register;
        c.cache_path = Some(cache.clone());
        Ok(c)
    };
    let logged_in = |a: &App| {
        a.log()
            .entries()
            .iter()
            .any(|e| e.searchable().starts_with("logged in as carol"))
    };
    // Carol's first run: she registers and leaves.
    let mut driver = ClientDriver::new(tx.clone(), &config_for, None, trust(&server));
    let mut app = App::new("127.0.0.1", Zone::Local);
    app.auto_login("carol", Password::new("pw-carol-1"), true);
    let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
    let t = &mut terminal;
    pump(t, &mut app, &mut driver, &rx, "logged in", logged_in);
    assert!(driver.close(Duration::from_secs(5)).is_empty());

    // Meanwhile bob writes.
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();
    for i in 1..=3 {
        bob.send(&format!("while carol was away {i}"));
    }
    bob.wait_acked(3);

    // Her second run (the same cache).
    let mut driver = ClientDriver::new(tx.clone(), &config_for, None, trust(&server));
    let mut app = App::new("127.0.0.1", Zone::Local);
    app.auto_login("carol", Password::new("pw-carol-1"), false);
    let t = &mut terminal;
    pump(t, &mut app, &mut driver, &rx, "logged in", logged_in);
    bob.send("after carol came back");
    pump(t, &mut app, &mut driver, &rx, "the new message", |a| {
        messages(a) == 4
    });
    let entries = app.log().entries();
    let shown: Vec<&str> = entries
        .iter()
        .map(Entry::searchable)
        .filter(|e| !e.ends_with(" joined"))
        .collect();
    assert_eq!(
        shown,
        [
            "while carol was away 1",
            "while carol was away 2",
            "while carol was away 3",
            "logged in as carol on General Communications",
            "after carol came back"
        ]
    );
    let times: Vec<_> = entries.iter().map(|e| e.time).collect();
    assert!(times.is_sorted(), "{times:?}");
    assert!(driver.close(Duration::from_secs(5)).is_empty());
    bob.close();
}

#[test]
fn run_loop_keeps_unsent_messages_across_a_server_restart() {
    let mut server = Server::start();
    let (tx, rx) = mpsc::channel();
    // Made before: the closure must not borrow the server, which restarts below.
    let base = config(&server, "frank", "pw-frank");
    let config_for = move |user: &str, password: Password, register: bool| {
        let mut c = base.clone();
        c.username = user.to_owned();
        c.password = password;
        c.register = register;
        Ok(c)
    };
    let mut driver = ClientDriver::new(tx.clone(), &config_for, None, trust(&server));
    let mut app = App::new("127.0.0.1", Zone::Local);
    app.auto_login("frank", Password::new("pw-frank"), true);
    let mut terminal = Terminal::new(TestBackend::new(100, 24)).expect("test terminal");
    let t = &mut terminal;
    pump(t, &mut app, &mut driver, &rx, "logged in", |a| {
        matches!(a.screen, gc_client::tui::app::Screen::Chat)
            && a.status.state == gc_client_core::ConnState::Active
    });

    server.stop();
    pump(t, &mut app, &mut driver, &rx, "disconnected", |a| {
        a.status.state != gc_client_core::ConnState::Active
    });
    type_keys(&tx, "written while the server was down");
    press(&tx, KeyCode::Enter, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "the outbox", |a| {
        a.pending.len() == 1
    });
    step(t, &mut app, &mut driver, &rx, Duration::ZERO).expect("step");
    let rows = screen(&terminal);
    assert!(
        rows.iter()
            .any(|r| r.contains("frank: written while the server was down (not sent yet)")),
        "{rows:?}"
    );

    server.restart();
    let t = &mut terminal;
    pump(
        t,
        &mut app,
        &mut driver,
        &rx,
        "the message delivered",
        |a| a.pending.is_empty() && messages(a) == 1,
    );
    let stored: Vec<String> = server
        .stored_lines()
        .into_iter()
        .filter(|l| l.contains("written while the server was down"))
        .collect();
    assert_eq!(stored.len(), 1, "stored once: {stored:?}");
    assert!(driver.close(Duration::from_secs(5)).is_empty());
}

/// First contact in the terminal UI: the login form shows the server's fingerprint and waits for
/// `y` or `n`; `n` logs nobody in and remembers nothing, `y` remembers the pin and logs in.
#[test]
fn tui_first_contact_shows_the_fingerprint_and_asks() {
    let Some(tmux) = Tmux::start() else {
        return;
    };
    let server = Server::start();
    let fingerprint = server.fingerprint().expect("TLS").to_string();
    let dir = tempfile::tempdir().unwrap();
    register(&server, "fay", "fay-password");
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "fay-password\n").unwrap();
    let known = dir.path().join("known_servers");
    let log = dir.path().join("client.log");
    let mut args = vec![
        env!("CARGO_BIN_EXE_gc-client").to_owned(),
        "127.0.0.1".into(),
        "--user".into(),
        "fay".into(),
        "--password-file".into(),
        pw.display().to_string(),
        "--no-cache".into(),
        "--known-servers".into(),
        known.display().to_string(),
        "--config".into(),
        dir.path().join("config.toml").display().to_string(),
        "--log-file".into(),
        log.display().to_string(),
    ];
    args.extend(port_args(server.ports()));
    let command: Vec<String> = args.iter().map(|a| sh_quote(a)).collect();
    let command = format!("{}; echo GC-EXIT-$?", command.join(" "));

    // Not trusted: nothing is remembered, nobody logs in.
    tmux.type_text(&command);
    tmux.key("Enter");
    let screen = tmux.wait_for("y trust and log in", &log);
    assert!(screen.contains(&fingerprint), "{screen}");
    assert!(
        screen.contains("server's operator sees (gc-server"),
        "{screen}"
    );
    tmux.key("Enter"); // does not trust
    tmux.key("n");
    tmux.wait_for("Not trusted", &log);
    assert!(!known.exists());
    assert_eq!(server.sessions(), 0);
    tmux.key("Escape");
    tmux.wait_for("GC-EXIT-0", &log);

    // Trusted: remembered, and the login goes on.
    tmux.type_text("clear");
    tmux.key("Enter");
    tmux.type_text(&command);
    tmux.key("Enter");
    tmux.wait_for("y trust and log in", &log);
    tmux.key("y");
    tmux.wait_for(" ACTIVE │ ", &log);
    let file = std::fs::read_to_string(&known).unwrap();
    assert!(
        file.contains(&format!(
            "127.0.0.1:{} {fingerprint}",
            server.ports().connect
        )),
        "{file}"
    );
    tmux.type_text("/quit");
    tmux.key("Enter");
    tmux.wait_for("GC-EXIT-0", &log);
}

/// Issue #12 in a real terminal: two users in tmux, one creates a room and the other joins it,
/// they talk there; one goes to `#general` and back with Alt+1 / Alt+2 and writes to the other
/// with `/msg`; the other sees the direct conversation appear in the room list with a mention
/// mark, goes to it with Ctrl+N and reads it there, not in the rooms.
#[test]
fn tui_two_users_talk_in_a_room_and_write_directly() {
    let (Some(alice), Some(bob)) = (Tmux::start(), Tmux::start()) else {
        return;
    };
    let server = Server::start();
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (script_a, log_a, _) = password_file_client(&server, "alice", dir_a.path());
    let (script_b, log_b, _) = password_file_client(&server, "bob", dir_b.path());
    alice.type_text(&format!("sh -c {}; echo GC-EXIT-$?", sh_quote(&script_a)));
    alice.key("Enter");
    bob.type_text(&format!("sh -c {}; echo GC-EXIT-$?", sh_quote(&script_b)));
    bob.key("Enter");
    alice.wait_for(" ACTIVE │ #general │ ", &log_a);
    let screen = bob.wait_for(" ACTIVE │ #general │ ", &log_b);
    assert!(screen.contains(" 1 #general"), "the room list:\n{screen}");

    // Alice makes #dev and is shown it; bob joins and is shown it with what was said before.
    alice.type_text("/create #dev");
    alice.key("Enter");
    let screen = alice.wait_for(" ACTIVE │ #dev │ ", &log_a);
    assert!(screen.contains(" 2 #dev"), "{screen}");
    alice.type_text("/topic the dev room");
    alice.key("Enter");
    alice.wait_for(" ACTIVE │ #dev: the dev room │ ", &log_a);
    bob.type_text("/join dev");
    bob.key("Enter");
    let screen = bob.wait_for(" ACTIVE │ #dev: the dev room │ ", &log_b);
    assert!(screen.contains(" 2 #dev"), "{screen}");
    bob.wait_for("-- alice created #dev (public)", &log_b);
    bob.wait_for("-- bob joined", &log_b);
    alice.wait_for("-- bob joined", &log_a);

    // They talk in #dev.
    alice.type_text("hello dev");
    alice.key("Enter");
    bob.wait_for("alice: hello dev", &log_b);
    bob.type_text("hi alice");
    bob.key("Enter");
    alice.wait_for("bob: hi alice", &log_a);

    // Alice looks at #general (where none of it is) and comes back.
    alice.key("M-1");
    let screen = alice.wait_for(" ACTIVE │ #general │ ", &log_a);
    assert!(
        !screen.contains("hello dev"),
        "#general shows its own:\n{screen}"
    );
    alice.key("M-2");
    let screen = alice.wait_for(" ACTIVE │ #dev: the dev room │ ", &log_a);
    assert!(screen.contains("bob: hi alice"), "{screen}");

    // A direct message: alice is shown the conversation with bob.
    alice.type_text("/msg bob psst, a secret");
    alice.key("Enter");
    let screen = alice.wait_for(" ACTIVE │ bob (direct) │ ", &log_a);
    assert!(screen.contains(" 3 bob"), "{screen}");
    alice.wait_for("alice: psst, a secret", &log_a);
    // Bob, still in #dev, sees it arrive in the list: unread, with a mention mark.
    let screen = bob.wait_until("the direct conversation in bob's list", &log_b, |s| {
        s.lines()
            .any(|l| l.starts_with(" 3 alice") && l.contains("!1 │"))
    });
    assert!(!screen.contains("psst"), "not in #dev:\n{screen}");
    bob.key("C-n");
    let screen = bob.wait_for(" ACTIVE │ alice (direct) │ ", &log_b);
    assert!(screen.contains("alice: psst, a secret"), "{screen}");
    assert!(
        !screen
            .lines()
            .any(|l| l.starts_with(" 3 alice") && l.contains('!')),
        "read now:\n{screen}"
    );
    bob.type_text("got it");
    bob.key("Enter");
    alice.wait_for("bob: got it", &log_a);
    bob.key("M-1");
    let screen = bob.wait_for(" ACTIVE │ #general │ ", &log_b);
    assert!(!screen.contains("psst"), "{screen}");

    for (tmux, log) in [(&alice, &log_a), (&bob, &log_b)] {
        tmux.type_text("/quit");
        tmux.key("Enter");
        tmux.wait_for("GC-EXIT-0", log);
    }
}

/// Against a server older than rooms the terminal UI is what it was: `#general` alone, no room
/// list, no room in the status bar, messages go and come, and it says once that there are no
/// rooms.
#[test]
fn run_loop_with_a_server_older_than_rooms_shows_general_alone() {
    let server = Server::start();
    let older = gc_tests::client::OlderConnectPort::start(&server);
    register(&server, "bob", "bob-password");
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();
    let (tx, rx) = mpsc::channel();
    let config_for = |user: &str, password: Password, register: bool| {
        let mut c = config(&server, user, password.expose());
        c.server_ports.connect = older.port;
        c.register = register;
        Ok(c)
    };
    let mut driver = ClientDriver::new(tx.clone(), &config_for, None, trust(&server));
    let mut app = App::new("127.0.0.1", Zone::Local);
    app.auto_login("olga", Password::new("olga-password"), true);
    let mut terminal = Terminal::new(TestBackend::new(100, 12)).expect("test terminal");
    let t = &mut terminal;
    pump(t, &mut app, &mut driver, &rx, "logged in", |a| {
        matches!(a.screen, gc_client::tui::app::Screen::Chat)
            && a.status.state == gc_client_core::ConnState::Active
    });
    type_keys(&tx, "hello from an old session");
    press(&tx, KeyCode::Enter, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "the message back", |a| {
        messages(a) == 1 && a.pending.is_empty()
    });
    bob.wait_records(1);
    assert_eq!(bob.bodies(), ["hello from an old session"]);
    // Alt+2 and Ctrl+N have nowhere to go; /msg says why.
    press(&tx, KeyCode::Char('2'), KeyModifiers::ALT);
    press(&tx, KeyCode::Char('n'), KeyModifiers::CONTROL);
    type_keys(&tx, "/msg bob hi");
    press(&tx, KeyCode::Enter, KeyModifiers::NONE);
    let said = |a: &App| {
        a.log()
            .entries()
            .iter()
            .filter(|e| e.searchable() == gc_client_core::NO_ROOMS)
            .count()
    };
    pump(t, &mut app, &mut driver, &rx, "the /msg refused", |a| {
        said(a) == 2
    });
    // No files either (GC/5): /upload says so on one line, the library's words.
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, b"notes").unwrap();
    // (The refused /msg is still in the input, to be fixed.)
    press(&tx, KeyCode::Char('u'), KeyModifiers::CONTROL);
    type_keys(&tx, &format!("/upload {}", file.display()));
    press(&tx, KeyCode::Enter, KeyModifiers::NONE);
    pump(t, &mut app, &mut driver, &rx, "the /upload refused", |a| {
        a.log().entries().iter().any(|e| {
            e.searchable()
                .starts_with("cannot upload notes.txt: the server does not share files (it speaks ")
                && e.searchable().contains("file transfer needs GC/5")
        })
    });
    assert!(app.transfers.is_empty());
    step(t, &mut app, &mut driver, &rx, Duration::ZERO).expect("step");
    let rows = screen(&terminal);
    assert!(rows[0].starts_with("──"), "no room list: {rows:?}");
    assert!(
        rows[10].starts_with(" ACTIVE │ 127.0.0.1 (an older server) │ olga │ "),
        "no room in the status bar: {:?}",
        rows[10]
    );
    assert_eq!(app.rooms.views().len(), 1);
    assert!(
        older.asked().iter().any(|v| v == "GC/3"),
        "{:?}",
        older.asked()
    );
    press(&tx, KeyCode::Char('c'), KeyModifiers::CONTROL);
    let flow = step(&mut terminal, &mut app, &mut driver, &rx, WAIT).expect("step");
    assert_eq!(flow, Flow::Quit);
    assert!(driver.close(Duration::from_secs(5)).is_empty());
    bob.close();
}

/// Waits until the file at `path` holds at least `lines` lines (another process writes it:
/// looked at every 50 ms, for at most [`WAIT`]).
fn wait_lines(path: &Path, lines: usize, log: &Path) -> String {
    let deadline = Instant::now() + WAIT;
    loop {
        let text = std::fs::read_to_string(path).unwrap_or_default();
        if text.lines().count() >= lines {
            return text;
        }
        assert!(
            Instant::now() < deadline,
            "timed out waiting for {lines} lines in {}: {text:?}\nclient log:\n{}",
            path.display(),
            std::fs::read_to_string(log).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// In a real terminal: a mention rings the bell (tmux counts it) and runs the notify command
/// with separate arguments, while a plain message and one's own do not; the title counts what
/// is unread elsewhere, and the title from before comes back at exit.
#[test]
fn tui_rings_for_mentions_runs_the_notify_command_and_titles_the_terminal() {
    let Some(tmux) = Tmux::start() else {
        return;
    };
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let (script, log, _) = password_file_client(&server, "erin", dir.path());
    let bells = dir.path().join("bells");
    let hook_out = dir.path().join("hook-out");
    let hook = dir.path().join("hook.sh");
    std::fs::write(
        &hook,
        format!(
            "#!/bin/sh\nfor a in \"$@\"; do printf '%s\\n' \"$a\" >> {}; done\n",
            sh_quote(&hook_out.display().to_string())
        ),
    )
    .unwrap();
    {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::set_permissions(&hook, std::fs::Permissions::from_mode(0o700)).unwrap();
    }
    std::fs::write(
        dir.path().join("config.toml"),
        format!("notify-command = {:?}\n", hook.display().to_string()),
    )
    .unwrap();
    let out = tmux.cmd(&[
        "set-hook",
        "-t",
        "gc",
        "alert-bell",
        &format!(
            "run-shell {}",
            sh_quote(&format!(
                "echo bell >> {}",
                sh_quote(&bells.display().to_string())
            ))
        ),
    ]);
    assert!(out.status.success(), "{out:?}");
    let pane_title = || {
        let out = tmux.cmd(&["display-message", "-p", "-t", "gc", "#{pane_title}"]);
        String::from_utf8_lossy(&out.stdout).trim().to_owned()
    };
    tmux.type_text(&format!(
        "printf '\\033]2;before gc\\033\\\\'; sh -c {}; echo GC-EXIT-$?",
        sh_quote(&script)
    ));
    tmux.key("Enter");
    tmux.wait_for(" ACTIVE │ ", &log);
    tmux.wait_until("the title", &log, |_| pane_title() == "gc #general");

    register(&server, "bob", "bob-password");
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();
    // Neither a plain message nor one's own naming oneself rings.
    bob.send("hello everyone");
    tmux.wait_for("bob: hello everyone", &log);
    tmux.type_text("erin here, talking to myself");
    tmux.key("Enter");
    tmux.wait_for("erin: erin here, talking to myself", &log);
    // A mention does, once; the command gets sender, room and text as three arguments, the
    // escape sequence shown, not passed on.
    bob.send("erin: lunch? $(touch pwned) \u{1b}[2J");
    let rang = wait_lines(&bells, 1, &log);
    assert_eq!(rang, "bell\n");
    let told = wait_lines(&hook_out, 3, &log);
    assert_eq!(told, "bob\n#general\nerin: lunch? $(touch pwned) ␛[2J\n");

    // A direct message, while #general is shown: counted in the title.
    let direct = gc_protocol::Room::new("@bob+erin").unwrap();
    bob.client().send_to(direct, "psst").expect("queued");
    tmux.wait_until("the title to count it", &log, |_| {
        pane_title() == "gc (1) [1 mention] #general"
    });

    tmux.type_text("/quit");
    tmux.key("Enter");
    tmux.wait_for("GC-EXIT-0", &log);
    assert_eq!(pane_title(), "before gc", "the title from before is back");
    assert_eq!(bob.close(), 0);
}

/// Read, quit, messages come meanwhile, start again (the same cache): the "new since you left"
/// line stands between what was read and what was missed; the markers file is the user's alone.
#[test]
fn run_loop_marks_what_is_new_since_the_last_run() {
    let server = Server::start();
    register(&server, "bob", "bob-password");
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();
    for i in 1..=2 {
        bob.send(&format!("read before {i}"));
    }
    bob.wait_acked(2);
    let (_dir, cache) = gc_tests::client::cache_dir();
    let marks_file = gc_client::tui::marks::path_for(&cache);
    let (tx, rx) = mpsc::channel();
    let base = config(&server, "carol", "pw-carol-1");
    let config_for = move |user: &str, password: Password, register: bool| {
        let mut c = base.clone();
        c.username = user.to_owned();
        c.password = password;
        c.register = register;
        c.cache_path = Some(cache.clone());
        Ok(c)
    };
    let run = |register: bool, until: &str, done: &dyn Fn(&App) -> bool| {
        let mut driver = ClientDriver::new(tx.clone(), &config_for, None, trust(&server));
        let mut app = App::new("127.0.0.1", Zone::Local);
        app.auto_login("carol", Password::new("pw-carol-1"), register);
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
        pump(&mut terminal, &mut app, &mut driver, &rx, until, done);
        // One more turn draws (and so sees) what came last; then Ctrl+C ends the loop.
        step(&mut terminal, &mut app, &mut driver, &rx, Duration::ZERO).expect("step");
        let shown = screen(&terminal);
        press(&tx, KeyCode::Char('c'), KeyModifiers::CONTROL);
        let flow = step(&mut terminal, &mut app, &mut driver, &rx, WAIT).expect("step");
        assert_eq!(flow, Flow::Quit);
        assert!(driver.close(Duration::from_secs(5)).is_empty());
        shown
    };
    // The first run reads both (a first run has no marker, so no line).
    let first = run(true, "2 messages", &|a| messages(a) == 2);
    assert!(!first.iter().any(|r| r.contains("new since")), "{first:#?}");
    let saved = std::fs::read_to_string(&marks_file).expect("the markers were written");
    assert!(saved.lines().any(|l| l.starts_with("#general ")), "{saved}");
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = std::fs::metadata(&marks_file).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
    }

    for i in 1..=2 {
        bob.send(&format!("while away {i}"));
    }
    bob.wait_acked(4);
    let second = run(false, "4 messages", &|a| messages(a) == 4);
    let line = second
        .iter()
        .position(|r| r.contains(" new since you left "))
        .unwrap_or_else(|| panic!("no line: {second:#?}"));
    assert!(
        second[line - 1].contains("bob: read before 2"),
        "{second:#?}"
    );
    assert!(
        second[line + 1].contains("bob: while away 1"),
        "{second:#?}"
    );
    bob.close();
}

/// `log-conversations`: each record shown goes once to its conversation's plain-text log; a
/// restart that shows the cached backlog again writes only what is new (issue #18).
#[test]
fn run_loop_logs_each_conversation_once_across_a_restart() {
    let server = Server::start();
    register(&server, "bob", "bob-password");
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();
    bob.send("first\nof two lines");
    bob.wait_acked(1);
    let (_dir, cache) = gc_tests::client::cache_dir();
    let logs = tempfile::tempdir().unwrap();
    let (tx, rx) = mpsc::channel();
    let base = config(&server, "carol", "pw-carol-1");
    let server_name = base.server.clone();
    let config_for = move |user: &str, password: Password, register: bool| {
        let mut c = base.clone();
        c.username = user.to_owned();
        c.password = password;
        c.register = register;
        c.cache_path = Some(cache.clone());
        Ok(c)
    };
    let run = |register: bool, until: &str, done: &dyn Fn(&App) -> bool| {
        let mut driver = ClientDriver::new(tx.clone(), &config_for, None, trust(&server));
        let mut app = App::new("127.0.0.1", Zone::Local);
        driver.log_conversations(&mut app, logs.path().to_owned());
        app.auto_login("carol", Password::new("pw-carol-1"), register);
        let mut terminal = Terminal::new(TestBackend::new(80, 24)).expect("test terminal");
        pump(&mut terminal, &mut app, &mut driver, &rx, until, done);
        press(&tx, KeyCode::Char('c'), KeyModifiers::CONTROL);
        let flow = step(&mut terminal, &mut app, &mut driver, &rx, WAIT).expect("step");
        assert_eq!(flow, Flow::Quit);
        assert!(driver.close(Duration::from_secs(5)).is_empty());
    };
    run(true, "1 message", &|a| messages(a) == 1);
    bob.send("second");
    bob.wait_acked(2);
    run(false, "2 messages", &|a| messages(a) == 2);

    let dir = gc_client::tui::convlog::dir_for(logs.path(), &server_name, "carol");
    let text = std::fs::read_to_string(dir.join("general.log")).expect("the log");
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 2, "each record once:\n{text}");
    assert!(lines[0].ends_with(" <bob> first⏎of two lines"), "{text}");
    assert!(lines[1].ends_with(" <bob> second"), "{text}");
    // `YYYY-MM-DD HH:MM:SS ` first.
    assert_eq!(lines[0].as_bytes()[4], b'-');
    assert_eq!(lines[0].as_bytes()[19], b' ');
    {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode(&dir.join("general.log")), 0o600);
        assert_eq!(mode(&dir), 0o700);
    }
    bob.close();
}

/// Files (GC/5) in the terminal UI: alice types `/upload` and a start of the path, Tab
/// completes it, and the conversation says it was shared; bob sees the file line, `/download`
/// saves it into his download directory (`XDG_DOWNLOAD_DIR`) with the same bytes, going on from
/// the `.part` an earlier run left there, and a second `/download` does not overwrite it but
/// saves beside it.
#[test]
fn tui_uploads_with_tab_completion_and_downloads_a_file_line() {
    let (Some(alice), Some(bob)) = (Tmux::start(), Tmux::start()) else {
        return;
    };
    let server = Server::start();
    let dir_a = tempfile::tempdir().unwrap();
    let dir_b = tempfile::tempdir().unwrap();
    let (script_a, log_a, _) = password_file_client(&server, "alice", dir_a.path());
    let (script_b, log_b, _) = password_file_client(&server, "bob", dir_b.path());
    let files = dir_a.path().join("files");
    std::fs::create_dir(&files).unwrap();
    let data: Vec<u8> = (0..1_500_000u32).map(|i| (i % 253) as u8).collect();
    std::fs::write(files.join("report.bin"), &data).unwrap();
    std::fs::write(files.join("notes.txt"), b"other").unwrap();
    let downloads = dir_b.path().join("downloads");
    std::fs::create_dir(&downloads).unwrap();
    alice.type_text(&format!("sh -c {}; echo GC-EXIT-$?", sh_quote(&script_a)));
    alice.key("Enter");
    bob.type_text(&format!(
        "XDG_DOWNLOAD_DIR={} sh -c {}; echo GC-EXIT-$?",
        sh_quote(&downloads.display().to_string()),
        sh_quote(&script_b)
    ));
    bob.key("Enter");
    alice.wait_for(" ACTIVE │ #general │ ", &log_a);
    bob.wait_for(" ACTIVE │ #general │ ", &log_b);

    // The command name and the path complete with Tab.
    alice.type_text("/uplo");
    alice.key("Tab");
    alice.type_text(&format!("{}/re", files.display()));
    alice.key("Tab");
    let typed = format!("> /upload {}/report.bin", files.display());
    alice.wait_for(&typed, &log_a);
    alice.key("Enter");
    alice.wait_for("-- shared report.bin (1.5 MB)", &log_a);
    // Its record comes like any message (the upload's answer may come first).
    alice.wait_for("alice: 📎 report.bin (1.5 MB) sha256:", &log_a);
    // Bob sees the file line, and saves it.
    let hash = gc_protocol::ContentHash::of(&data).to_string();
    let short = format!("sha256:{}…{}", &hash[..4], &hash[60..]);
    let screen = bob.wait_for("alice: 📎 report.bin (1.5 MB)", &log_b);
    assert!(screen.contains(&short), "{screen}");
    // An earlier run of bob's was cut short saving it: its `.part` holds the first 600 kB. The
    // download goes on from there, under the same name, and says so.
    let saved = downloads.join("report.bin");
    let content = gc_protocol::ContentHash::of(&data);
    let part = gc_client_core::part_path(&saved, &content);
    std::fs::write(&part, &data[..600_000]).unwrap();
    bob.type_text("/download");
    bob.key("Enter");
    bob.wait_for(
        "-- resuming report.bin from its .part (600 kB of 1.5 MB)",
        &log_b,
    );
    bob.wait_for(
        "-- saved report.bin (1.5 MB, resumed at 600 kB) to ",
        &log_b,
    );
    assert!(std::fs::read(&saved).unwrap() == data);
    assert!(!part.exists());
    // Again: beside it, never over it.
    bob.type_text(&format!("/download {}", &hash[..12]));
    bob.key("Enter");
    bob.wait_for("-- saved report (1).bin (1.5 MB) to ", &log_b);
    assert!(std::fs::read(downloads.join("report (1).bin")).unwrap() == data);
    assert!(std::fs::read(&saved).unwrap() == data);
    // A file that is not there: said on one line, nothing starts.
    alice.type_text(&format!("/upload {}/missing.bin", files.display()));
    alice.key("Enter");
    let screen = alice.wait_for("!! cannot upload missing.bin: ", &log_a);
    assert!(!screen.contains("▕"), "no transfer runs:\n{screen}");

    for (tmux, log) in [(&alice, &log_a), (&bob, &log_b)] {
        tmux.type_text("/quit");
        tmux.key("Enter");
        tmux.wait_for("GC-EXIT-0", log);
    }
}
