//! The server as an operator runs it, in a process of its own (`gc-test-server`, which sets up
//! logging and signals as `gc-server` does): readiness and stopping told to a service manager,
//! a log file renamed by logrotate and reopened on SIGHUP, the log level read again, JSON logs,
//! no secret in any log at any level, and the install script.
//!
//! A binary of its own: it captures this process's logs (the client library's) at TRACE.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

use std::io::{Read as _, Write as _};
use std::net::TcpStream;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::mpsc;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gc_protocol::{AuthServer, ConnectReply, ErrorCode};
use gc_tests::client::{TestClient, config_for};
use gc_tests::{ChildServer, PASSWORD, RawClient, WAIT};

/// The package's `gc-test-server` binary.
fn test_server() -> &'static Path {
    Path::new(env!("CARGO_BIN_EXE_gc-test-server"))
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ───────────────────────────── metrics ─────────────────────────────

#[test]
fn a_taken_metrics_port_ends_the_process_with_a_clear_error_before_it_listens() {
    use std::process::{Command, Stdio};

    let taken = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = taken.local_addr().unwrap();
    let dir = tempfile::tempdir().unwrap();
    let child = Command::new(test_server())
        .arg(dir.path())
        .arg(format!("--metrics-addr={addr}"))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // Waited for on a thread, so that a server that keeps running fails the test in time
    // instead of hanging it.
    let (done, exited) = std::sync::mpsc::channel();
    let waiter = std::thread::Builder::new()
        .name("wait-child".into())
        .spawn(move || {
            let _ = done.send(child.wait_with_output());
        })
        .unwrap();
    let output = exited
        .recv_timeout(WAIT)
        .expect("the server exits at once")
        .unwrap();
    waiter.join().unwrap();
    assert!(!output.status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains(&format!("cannot listen on {addr} (metrics port)")),
        "{stderr}"
    );
    // It never said it listens: no half-started server.
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(!stdout.contains("listening"), "{stdout}");
    drop(taken);
}

// ───────────────────────────── readiness ─────────────────────────────

#[test]
fn readiness_and_stopping_reach_the_service_manager() {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let dir = tempfile::tempdir().unwrap();
    // The abstract form (`@name`), as systemd passes it; a path is tested beside the code.
    let name = format!("gc-service-test-{}", std::process::id());
    let manager =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    manager.set_read_timeout(Some(WAIT)).unwrap();
    let receive = || {
        let mut buf = [0u8; 512];
        let n = manager.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let socket = format!("@{name}");
    let mut server = ChildServer::spawn_args(
        test_server(),
        dir.path(),
        std::iter::empty::<&str>(),
        &[("NOTIFY_SOCKET", &socket)],
    );
    let ready = receive();
    assert_eq!(
        ready,
        format!("READY=1\nSTATUS={}", server.addrs.listening_line()),
        "ready once bound, saying where"
    );
    // Ready means a client may come.
    assert!(matches!(
        RawClient::new(server.target).ping(),
        ConnectReply::Pong { .. }
    ));
    server.signal("TERM");
    assert_eq!(receive(), "STOPPING=1");
    assert!(server.wait_exit(WAIT).is_some_and(|s| s.success()));
    manager.set_nonblocking(true).unwrap();
    let mut buf = [0u8; 64];
    assert!(manager.recv(&mut buf).is_err(), "each said once");
}

#[test]
fn without_a_service_manager_nothing_changes() {
    // An unreachable socket is no reason not to serve (logged at debug level only).
    let dir = tempfile::tempdir().unwrap();
    let mut server = ChildServer::spawn_args(
        test_server(),
        dir.path(),
        std::iter::empty::<&str>(),
        &[("NOTIFY_SOCKET", "/nonexistent/notify")],
    );
    assert!(matches!(
        RawClient::new(server.target).ping(),
        ConnectReply::Pong { .. }
    ));
    server.signal("TERM");
    assert!(server.wait_exit(WAIT).is_some_and(|s| s.success()));
}

// ───────────────────────────── log files ─────────────────────────────

/// Speaks plain text to a server that requires TLS: it logs a warning naming the address, then
/// answers `Err version` and closes, so once this returns the warning is in the log.
fn provoke_a_warning(server: &ChildServer) {
    let mut tcp = TcpStream::connect(server.addrs.connect).unwrap();
    tcp.set_read_timeout(Some(WAIT)).unwrap();
    tcp.set_write_timeout(Some(WAIT)).unwrap();
    tcp.write_all(b"Ping 1\n").unwrap();
    let mut answer = String::new();
    let _ = tcp.read_to_string(&mut answer);
    assert!(answer.contains("version"), "{answer:?}");
}

#[test]
fn sighup_reopens_a_renamed_log_file_and_reads_the_level_again() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("gc-server.log");
    let rotated = dir.path().join("gc-server.log.1");
    let config = dir.path().join("gc-server.toml");
    std::fs::write(&config, "log-level = \"warn\"\n").unwrap();
    let mut server = ChildServer::spawn_args(
        test_server(),
        &data,
        [
            "--config".as_ref(),
            config.as_os_str(),
            "--log-file".as_ref(),
            log.as_os_str(),
        ],
        &[],
    );
    provoke_a_warning(&server);
    // What logrotate does: rename, then tell the server. The operator also asked for more.
    std::fs::rename(&log, &rotated).unwrap();
    std::fs::write(&config, "log-level = \"info\"\n").unwrap();
    // HUP before TERM: pending together, the lower signal is handled first.
    server.signal("HUP");
    server.signal("TERM");
    assert!(server.wait_exit(WAIT).is_some_and(|s| s.success()));

    let old = read(&rotated);
    assert!(old.contains("a plain GC/1 client"), "{old}");
    assert!(!old.contains(" INFO "), "warn level at first: {old}");
    assert!(!old.contains("server stopped"), "{old}");
    let new = read(&log);
    assert!(
        new.contains("SIGHUP: log level changed") && new.contains("from=warn to=info"),
        "{new}"
    );
    assert!(new.contains("server stopped"), "{new}");
    assert!(!new.contains("a plain GC/1 client"), "{new}");
    let mode = std::fs::metadata(&log).unwrap().permissions().mode();
    assert_eq!(
        mode & 0o077,
        0,
        "the new file is the server user's: {mode:o}"
    );
}

#[test]
fn json_logs_are_one_object_per_line() {
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let log = dir.path().join("gc-server.json");
    let mut server = ChildServer::spawn_args(
        test_server(),
        &data,
        [
            "--log-format".as_ref(),
            "json".as_ref(),
            "--log-file".as_ref(),
            log.as_os_str(),
        ],
        &[],
    );
    provoke_a_warning(&server);
    let mut raw = RawClient::new(server.target);
    assert!(matches!(
        raw.register("alice", PASSWORD),
        AuthServer::Registered
    ));
    assert!(
        matches!(raw.login("alice", "not-the-password"), AuthServer::Err(ref e) if e.code == ErrorCode::Auth)
    );
    server.signal("TERM");
    assert!(server.wait_exit(WAIT).is_some_and(|s| s.success()));

    let text = read(&log);
    let lines: Vec<serde_json::Value> = text
        .lines()
        .map(|line| serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")))
        .collect();
    assert!(lines.len() >= 5, "{text}");
    for line in &lines {
        let ts = line["timestamp"].as_str().expect("a timestamp");
        assert!(ts.ends_with('Z'), "UTC: {ts}");
        assert!(
            line["level"].is_string() && line["target"].is_string(),
            "{line}"
        );
        assert!(line["fields"]["message"].is_string(), "{line}");
    }
    let find = |text: &str| {
        lines
            .iter()
            .find(|l| {
                l["fields"]["message"]
                    .as_str()
                    .is_some_and(|m| m.contains(text))
            })
            .unwrap_or_else(|| panic!("no line with {text}: {lines:#?}"))
    };
    let refused = find("wrong password");
    assert_eq!(refused["level"], "WARN");
    assert_eq!(refused["fields"]["user"], "alice");
    assert_eq!(find("a plain GC/1 client")["level"], "WARN");
    assert_eq!(find("server stopped")["level"], "INFO");
}

// ───────────────────────────── no secrets ─────────────────────────────

/// This process's log lines (the client library's), at every level.
fn capture_client_logs() -> std::sync::Arc<std::sync::Mutex<Vec<u8>>> {
    #[derive(Clone)]
    struct Sink(std::sync::Arc<std::sync::Mutex<Vec<u8>>>);
    impl std::io::Write for Sink {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            if let Ok(mut b) = self.0.lock() {
                b.extend_from_slice(buf);
            }
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let buffer = std::sync::Arc::default();
    let sink = Sink(std::sync::Arc::clone(&buffer));
    tracing_subscriber::fmt()
        .with_max_level(tracing_subscriber::filter::LevelFilter::TRACE)
        .fmt_fields(gc_net::logfmt::escaped_fields())
        .with_ansi(false)
        .with_writer(move || sink.clone())
        .try_init()
        .expect("the only subscriber of this test binary");
    buffer
}

/// The secret fields of `user`'s line in `usernames.db`: salt, stored key, server key (base64).
fn verifier_fields(data: &Path, user: &str) -> Vec<String> {
    let accounts = read(&data.join("usernames.db"));
    let line = accounts
        .lines()
        .find(|l| l.starts_with(&format!("{user};")))
        .unwrap_or_else(|| panic!("no {user} in {accounts}"));
    let fields: Vec<&str> = line.split(';').collect();
    vec![fields[1].into(), fields[3].into(), fields[4].into()]
}

/// Runs `gc-test-server DATA_DIR args…` to its end with `stdin` as its standard input; its exit
/// status, or a failure after [`WAIT`].
fn run_admin(data: &Path, args: &[&std::ffi::OsStr], stdin: &str) -> std::process::ExitStatus {
    let mut child = Command::new(test_server())
        .arg(data)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rx.recv_timeout(WAIT)
        .expect("the admin command ends")
        .unwrap()
}

/// `text` holds a SCRAM attribute (`p=` proof, `v=` server signature, `s=` salt) with a value
/// long enough to be one.
fn scram_attribute(text: &str) -> Option<&str> {
    ["p=", "v=", "s="].into_iter().find(|attr| {
        text.match_indices(attr).any(|(at, _)| {
            let value = &text[at + attr.len()..];
            value
                .bytes()
                .take_while(|b| b.is_ascii_alphanumeric() || matches!(b, b'+' | b'/' | b'='))
                .count()
                >= 20
        })
    })
}

#[test]
fn no_secret_in_any_log_at_trace() {
    let client_logs = capture_client_logs();
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("data");
    let server_log = dir.path().join("server.log");
    let admin_log = dir.path().join("admin.log");
    let trace = |log: &Path| -> Vec<std::ffi::OsString> {
        vec![
            "--log-level".into(),
            "trace".into(),
            "--log-file".into(),
            log.as_os_str().to_owned(),
        ]
    };
    let mut server = ChildServer::spawn_args(test_server(), &data, trace(&server_log), &[]);

    let bob_password = "bobs-own-secret-42";
    let wrong = "a-wrong-guess-17";
    let new_password = "alices-next-secret-99";
    // Registration and a login by the client library (its logs are this process's).
    let mut c = config_for(&server.target, "bob", bob_password);
    c.register = true;
    let mut bob = TestClient::start(c);
    bob.wait_active();
    bob.send("hello from bob");
    bob.wait_acked(1);
    bob.close();
    // A wrong password, through the client library too.
    let mut guess = TestClient::start(config_for(&server.target, "bob", wrong));
    assert_eq!(guess.wait_fatal().code(), Some(ErrorCode::Auth));
    // A raw registration and login, to know the token and salt the server handed out.
    let mut raw = RawClient::new(server.target);
    assert!(matches!(
        raw.register("alice", PASSWORD),
        AuthServer::Registered
    ));
    let (salt, _) = RawClient::new(server.target).challenge("alice").unwrap();
    let login = raw.login("alice", PASSWORD);
    assert!(matches!(login, AuthServer::Ok { .. }), "{login:?}");
    let token = raw
        .token
        .clone()
        .expect("a session token")
        .as_str()
        .to_owned();
    let mut other = RawClient::new(server.target);
    assert!(
        matches!(other.login("alice", wrong), AuthServer::Err(ref e) if e.code == ErrorCode::Auth)
    );
    raw.send("hello from alice");
    server.signal("TERM");
    assert!(server.wait_exit(WAIT).is_some_and(|s| s.success()));
    let mut secrets = verifier_fields(&data, "alice");
    secrets.extend(verifier_fields(&data, "bob"));

    // The operator's password change, with the server stopped (the data dir's rule).
    let mut args = trace(&admin_log);
    args.extend(["user", "passwd", "alice", "--password-stdin"].map(Into::into));
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    assert!(run_admin(&data, &args, &format!("{new_password}\n")).success());
    let changed = verifier_fields(&data, "alice");
    assert_ne!(changed, secrets[..3], "the password did change");
    secrets.extend(changed);

    // Every encoding a secret could take in a log line.
    let mut forbidden: Vec<(String, String)> = [PASSWORD, bob_password, wrong, new_password]
        .into_iter()
        .map(|p| ("a password".to_owned(), p.to_owned()))
        .collect();
    forbidden.push(("the session token".into(), token.clone()));
    forbidden.push(("the token past its prefix".into(), token[32..].to_owned()));
    forbidden.push(("the salt".into(), B64.encode(&salt)));
    forbidden.push(("the salt (hex)".into(), hex(&salt)));
    for field in secrets {
        let bytes = B64.decode(&field).unwrap();
        forbidden.push(("a verifier field".into(), field));
        forbidden.push(("a verifier field (hex)".into(), hex(&bytes)));
    }

    let client = String::from_utf8_lossy(&client_logs.lock().unwrap()).into_owned();
    for (name, log) in [
        ("server", read(&server_log)),
        ("admin", read(&admin_log)),
        ("client", client),
    ] {
        // The logs are there and detailed: a check of an empty log would prove nothing.
        let expected = match name {
            "server" => ["logged in", "wrong password"],
            "admin" => ["password changed by the operator", "user=alice"],
            _ => ["connected to", "giving up"],
        };
        for text in expected {
            assert!(log.contains(text), "{name} log lacks {text:?}:\n{log}");
        }
        for (what, secret) in &forbidden {
            assert!(
                !log.contains(secret.as_str()),
                "the {name} log holds {what} ({secret}):\n{log}"
            );
        }
        assert_eq!(scram_attribute(&log), None, "{name} log:\n{log}");
    }
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

// ───────────────────────────── install script ─────────────────────────────

/// The repository's root.
fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("tests/ is in the repository")
        .to_path_buf()
}

/// Runs `script` with bash and `envs`, to its end; its output, or a failure after [`WAIT`].
fn run_script(script: &Path, envs: &[(&str, &std::ffi::OsStr)]) -> std::process::Output {
    let child = Command::new("bash")
        .arg(script)
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(WAIT).expect("the script ends").unwrap()
}

/// A stand-in for `cargo build --release`'s output directory: the programs the script installs
/// (here the test server's binary under both names: the script copies programs whatever they
/// are) and a Rust example plugin's library, with what `gc-packaging` renders beside them.
fn build_dir(dir: &Path) -> (PathBuf, PathBuf) {
    let build = dir.join("build");
    std::fs::create_dir_all(&build).unwrap();
    for program in ["gc-server", "gc-client"] {
        std::fs::copy(test_server(), build.join(program)).unwrap();
    }
    std::fs::copy(
        gc_tests::plugin_library("word_filter"),
        build.join("libword_filter.so"),
    )
    .unwrap();
    let dist = build.join("dist");
    gc_packaging::render(&dist).unwrap();
    (build, dist)
}

#[test]
fn install_script_puts_everything_in_place_under_destdir() {
    let dir = tempfile::tempdir().unwrap();
    let (build, dist) = build_dir(dir.path());
    let dest = dir.path().join("root");
    let envs = |prefix: &'static str| {
        vec![
            ("DESTDIR", dest.as_os_str().to_owned()),
            ("PREFIX", prefix.into()),
            ("BUILD_DIR", build.as_os_str().to_owned()),
            ("DIST_DIR", dist.as_os_str().to_owned()),
        ]
    };
    let run = |script: &str, envs: &[(&str, std::ffi::OsString)]| {
        let envs: Vec<(&str, &std::ffi::OsStr)> =
            envs.iter().map(|(k, v)| (*k, v.as_os_str())).collect();
        let out = run_script(&repo().join("packaging").join(script), &envs);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{script}: {text}");
        text
    };

    let said = run("install.sh", &envs("/usr/local"));
    assert!(said.contains("no account made"), "{said}");
    let at = |path: &str| dest.join(path.trim_start_matches('/'));
    let mode = |path: &str| {
        std::fs::metadata(at(path))
            .unwrap_or_else(|e| panic!("{path}: {e}"))
            .permissions()
            .mode()
            & 0o7777
    };
    for program in ["gc-server", "gc-client"] {
        let installed = format!("/usr/local/bin/{program}");
        assert_eq!(mode(&installed), 0o755);
        assert_eq!(
            std::fs::read(at(&installed)).unwrap(),
            std::fs::read(build.join(program)).unwrap()
        );
    }
    let unit = read(&at("/usr/local/lib/systemd/system/gc-server.service"));
    for line in [
        "Type=notify",
        "ExecStart=/usr/local/bin/gc-server --config /etc/gc/gc-server.toml",
        "ExecReload=/bin/kill -HUP $MAINPID",
        "User=gc",
        "StateDirectory=gc",
        "ProtectSystem=strict",
        "NoNewPrivileges=yes",
        "RestrictAddressFamilies=AF_INET AF_INET6 AF_UNIX",
        "CapabilityBoundingSet=\n",
        "SystemCallFilter=@system-service",
        "LimitNOFILE=",
    ] {
        assert!(unit.contains(line), "the unit lacks {line:?}");
    }
    for page in [
        "gc-server.1",
        "gc-server-plugins-list.1",
        "gc-server-user-passwd.1",
        "gc-client.1",
    ] {
        assert_eq!(mode(&format!("/usr/local/share/man/man1/{page}")), 0o644);
    }
    for completion in [
        "/usr/local/share/bash-completion/completions/gc-server",
        "/usr/local/share/bash-completion/completions/gc-client",
        "/usr/local/share/zsh/site-functions/_gc-server",
        "/usr/local/share/fish/vendor_completions.d/gc-client.fish",
    ] {
        assert!(read(&at(completion)).contains("gc-"), "{completion}");
    }
    // The C example (a client plugin) and the Rust one the build made, inactive until copied
    // into a mods directory.
    let shout = read_bytes(&at("/usr/local/lib/gc/plugins/client/libshout.so"));
    assert_eq!(shout.get(..4), Some(&b"\x7fELF"[..]));
    assert!(at("/usr/local/lib/gc/plugins/server/libword_filter.so").is_file());
    assert!(at("/usr/local/lib/gc/plugins/server/word-filter.txt").is_file());
    assert!(at("/usr/local/share/doc/gc/operations.md").is_file());
    assert!(read(&at("/etc/logrotate.d/gc-server")).contains("systemctl reload gc-server"));
    // The default configuration is one the server accepts, readable by its group only.
    let config = at("/etc/gc/gc-server.toml");
    assert_eq!(mode("/etc/gc/gc-server.toml"), 0o640);
    let cli = <gc_server::cli::Cli as clap::Parser>::parse_from([
        "gc-server".as_ref(),
        "--config".as_ref(),
        config.as_os_str(),
    ]);
    let (resolved, log) = cli.resolve().unwrap();
    assert_eq!(resolved.data_dir, Path::new("/var/lib/gc"));
    assert_eq!((log.level.as_str(), log.file), ("info", None));

    if let Some(verify) = systemd_analyze() {
        // The unit as systemd reads it, with its programs where this test put them.
        let unit_copy = dir.path().join("gc-server.service");
        let bin = at("/usr/local/bin/");
        std::fs::write(
            &unit_copy,
            unit.replace("/usr/local/bin/", &bin.to_string_lossy()),
        )
        .unwrap();
        let out = Command::new(verify)
            .arg("verify")
            .arg(&unit_copy)
            .env("MANPATH", at("/usr/local/share/man"))
            .output()
            .unwrap();
        assert!(
            out.status.success() && out.stderr.is_empty(),
            "systemd-analyze verify: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    // Again: the operator's configuration stays as they left it.
    std::fs::write(&config, "data-dir = \"/srv/gc\"\n").unwrap();
    let said = run("install.sh", &envs("/usr/local"));
    assert!(said.contains("kept"), "{said}");
    assert_eq!(read(&config), "data-dir = \"/srv/gc\"\n");

    // Another prefix: the unit starts the programs there.
    let other = dir.path().join("other");
    let mut usr = envs("/usr");
    usr[0].1 = other.as_os_str().to_owned();
    run("install.sh", &usr);
    let unit = read(&other.join("usr/lib/systemd/system/gc-server.service"));
    assert!(unit.contains("ExecStart=/usr/bin/gc-server --config /etc/gc/gc-server.toml"));
    assert!(other.join("usr/bin/gc-server").is_file());

    // Uninstall takes the installed files away and keeps the operator's.
    let said = run("uninstall.sh", &envs("/usr/local"));
    assert!(said.contains("kept"), "{said}");
    for gone in [
        "/usr/local/bin/gc-server",
        "/usr/local/bin/gc-client",
        "/usr/local/lib/systemd/system/gc-server.service",
        "/usr/local/share/man/man1/gc-server.1",
        "/usr/local/share/man/man1/gc-server-user-add.1",
        "/usr/local/share/zsh/site-functions/_gc-server",
        "/usr/local/lib/gc",
        "/usr/local/share/doc/gc",
        "/etc/logrotate.d/gc-server",
    ] {
        assert!(!at(gone).exists(), "{gone} is still there");
    }
    assert_eq!(read(&config), "data-dir = \"/srv/gc\"\n");
}

fn read_bytes(path: &Path) -> Vec<u8> {
    std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// `systemd-analyze`, where the machine has it.
fn systemd_analyze() -> Option<PathBuf> {
    ["/usr/bin/systemd-analyze", "/bin/systemd-analyze"]
        .into_iter()
        .map(PathBuf::from)
        .find(|p| p.is_file())
}

/// The directory of the real programs (`gc-server`, `gc-client`, `gc-packaging`) that
/// `GC_BIN_DIR` names (`.ci/test` builds them and sets it), or `None` when it is not set and not
/// required (`GC_REQUIRE_INSTALL` unset): then the installed-server test is skipped with a note.
fn real_programs() -> Option<PathBuf> {
    let Some(dir) = std::env::var_os("GC_BIN_DIR").map(PathBuf::from) else {
        assert!(
            std::env::var_os("GC_REQUIRE_INSTALL").is_none(),
            "GC_REQUIRE_INSTALL is set but GC_BIN_DIR is not: run the tests with `bash .ci/test`, \
             or build the programs (cargo build --workspace --bins --locked) and point \
             GC_BIN_DIR at them"
        );
        #[allow(clippy::print_stderr)]
        {
            eprintln!(
                "skipping the installed-server test: GC_BIN_DIR does not name the built programs"
            );
        }
        return None;
    };
    for program in ["gc-server", "gc-client", "gc-packaging"] {
        assert!(
            dir.join(program).is_file(),
            "GC_BIN_DIR={} has no {program}: build it (cargo build --workspace --bins --locked)",
            dir.display()
        );
    }
    Some(dir)
}

/// A server process started by a test, killed if the test ends (fails) before it exits.
struct Running {
    pid: u32,
    exited: bool,
}

impl Running {
    /// Sends a signal with kill(1); whether it was sent.
    fn signal(&self, name: &str) -> bool {
        Command::new("kill")
            .args(["-s", name, &self.pid.to_string()])
            .stderr(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !self.exited {
            self.signal("KILL");
        }
    }
}

/// Runs an installed program to its end with `stdin`; its output, or a failure after [`WAIT`].
fn run_installed(program: &Path, args: &[&std::ffi::OsStr], stdin: &str) -> std::process::Output {
    let mut child = Command::new(program)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("{}: {e}", program.display()));
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    rx.recv_timeout(WAIT)
        .unwrap_or_else(|_| panic!("{} ends in time", program.display()))
        .unwrap()
}

#[test]
fn the_installed_server_starts_serves_and_stops_as_a_service() {
    use std::os::linux::net::SocketAddrExt as _;
    use std::os::unix::net::{SocketAddr, UnixDatagram};

    let Some(bin) = real_programs() else { return };
    let dir = tempfile::tempdir().unwrap();
    let dest = dir.path().join("root");
    let envs = [
        ("DESTDIR", dest.as_os_str()),
        ("PREFIX", "/usr/local".as_ref()),
        ("BUILD_DIR", bin.as_os_str()),
    ];
    // The script renders the pages, completions and C example with the real gc-packaging.
    let run = |script: &str| {
        let out = run_script(&repo().join("packaging").join(script), &envs);
        let text = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(out.status.success(), "{script}: {text}");
    };
    run("install.sh");
    let at = |path: &str| dest.join(path.trim_start_matches('/'));
    let server_bin = at("/usr/local/bin/gc-server");
    for program in ["gc-server", "gc-client"] {
        assert_eq!(
            read_bytes(&at(&format!("/usr/local/bin/{program}"))),
            read_bytes(&bin.join(program)),
            "the real {program} is installed"
        );
    }
    let version = run_installed(&at("/usr/local/bin/gc-client"), &["--version".as_ref()], "");
    assert!(version.status.success(), "{version:?}");

    // The installed configuration, changed only where a test must differ from a machine's
    // service: its data dir, loopback, ports the OS picks, a log file.
    let config = at("/etc/gc/gc-server.toml");
    let data = dir.path().join("data");
    let log = dir.path().join("gc-server.log");
    let installed = read(&config);
    assert!(
        installed.contains("data-dir = \"/var/lib/gc\""),
        "{installed}"
    );
    let adjusted = installed.replace(
        "data-dir = \"/var/lib/gc\"",
        &format!(
            "data-dir = {:?}\nbind = \"127.0.0.1\"\nconnect-port = 0\nauth-port = 0\n\
             send-port = 0\nlog-file = {:?}",
            data.display().to_string(),
            log.display().to_string()
        ),
    );
    std::fs::write(&config, adjusted).unwrap();
    let with_config = |args: &[&str]| -> Vec<std::ffi::OsString> {
        let mut all: Vec<std::ffi::OsString> = vec!["--config".into(), config.clone().into()];
        all.extend(args.iter().map(Into::into));
        all
    };

    // An account made as an operator makes one, with the installed program.
    let args = with_config(&["user", "add", "alice", "--password-stdin"]);
    let args: Vec<&std::ffi::OsStr> = args.iter().map(|a| a.as_os_str()).collect();
    let added = run_installed(&server_bin, &args, &format!("{PASSWORD}\n"));
    assert!(added.status.success(), "user add: {added:?}");

    // Started as systemd starts it (Type=notify), with a notify socket.
    let name = format!("gc-installed-test-{}", std::process::id());
    let manager =
        UnixDatagram::bind_addr(&SocketAddr::from_abstract_name(name.as_bytes()).unwrap()).unwrap();
    manager.set_read_timeout(Some(WAIT)).unwrap();
    let receive = || {
        let mut buf = [0u8; 512];
        let n = manager.recv(&mut buf).expect("a notification in time");
        String::from_utf8_lossy(&buf[..n]).into_owned()
    };
    let child = Command::new(&server_bin)
        .args(with_config(&[]))
        .env("NOTIFY_SOCKET", format!("@{name}"))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let pid = child.id();
    let (tx, exited) = mpsc::channel();
    std::thread::Builder::new()
        .name("wait-installed-server".into())
        .spawn(move || {
            let _ = tx.send(child.wait_with_output());
        })
        .unwrap();
    let mut running = Running { pid, exited: false };

    let ready = receive();
    let status = ready
        .strip_prefix("READY=1\nSTATUS=")
        .unwrap_or_else(|| panic!("ready first, saying where: {ready:?}"));
    let addrs = gc_protocol::texts::ServerAddrs::from_listening_line(status)
        .unwrap_or_else(|| panic!("the listening line: {status:?}"));
    let target = gc_tests::Target {
        addrs,
        fingerprint: gc_tests::fingerprint_in(&data),
    };
    assert!(target.fingerprint.is_some(), "TLS with its own certificate");
    assert!(matches!(
        RawClient::new(target).ping(),
        ConnectReply::Pong { .. }
    ));
    let mut alice = TestClient::start(config_for(&target, "alice", PASSWORD));
    alice.wait_active();
    alice.send("hello from the installed server's test");
    alice.wait_acked(1);
    alice.wait_records(1);
    drop(alice);

    assert!(running.signal("TERM"), "SIGTERM sent");
    assert_eq!(receive(), "STOPPING=1");
    let output = exited
        .recv_timeout(WAIT)
        .expect("the server exits after SIGTERM")
        .unwrap();
    running.exited = true;
    assert!(
        output.status.success(),
        "a clean exit: {:?} {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(read(&log).contains("listening"), "it logged to its file");

    run("uninstall.sh");
    for gone in [
        "/usr/local/bin/gc-server",
        "/usr/local/bin/gc-client",
        "/usr/local/lib/systemd/system/gc-server.service",
    ] {
        assert!(!at(gone).exists(), "{gone} is still there");
    }
}
