//! The `gc-server` binary itself, for what only the process does: its open-file limit and its
//! log pipe.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// A server on `data_dir`, loopback only, OS-chosen ports, its log on a pipe.
fn with_server_args<'a>(cmd: &'a mut Command, data_dir: &std::path::Path) -> &'a mut Command {
    cmd.args(["--data-dir", &data_dir.display().to_string()])
        .args(["--bind", "127.0.0.1"])
        .args(["--connect-port", "0", "--auth-port", "0"])
        .args(["--send-port", "0"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
}

/// With a hard open-file limit too low for `--max-clients`, the server still starts and says at
/// once how many sessions it can hold and what to do.
#[test]
fn a_low_open_file_limit_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"ulimit -n 400 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_gc-server"));
    let mut child = with_server_args(&mut sh, dir.path())
        .args(["--max-clients", "100"])
        .spawn()
        .unwrap();
    let stderr = child.stderr.take().unwrap();
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines() {
            let Ok(line) = line else { return };
            let listening = line.contains("listening: ");
            let _ = tx.send(line);
            if listening {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        lines.push(line);
        if lines.last().is_some_and(|l| l.contains("listening: ")) {
            break;
        }
    }
    let _ = child.kill();
    let _ = child.wait();
    let _ = reader.join();
    let log = lines.join("\n");
    assert!(
        log.contains("listening: "),
        "the server did not start:\n{log}"
    );
    let warning = lines
        .iter()
        .find(|l| l.contains("open-file limit (400)"))
        .unwrap_or_else(|| panic!("no open-file warning:\n{log}"));
    assert!(warning.contains("WARN"), "{warning}");
    assert!(
        warning.contains("allows about 24 sessions") && warning.contains("--max-clients 100"),
        "{warning}"
    );
    assert!(warning.contains("ulimit -n"), "{warning}");
}

/// A server whose log reader has gone away (`gc-server | head -1`) drops the lines it cannot
/// write, and still stops cleanly on SIGTERM.
#[test]
fn a_closed_log_pipe_does_not_stop_the_server_from_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let mut server = Command::new(env!("CARGO_BIN_EXE_gc-server"));
    let mut child = with_server_args(&mut server, dir.path()).spawn().unwrap();
    let pid = rustix::process::Pid::from_child(&child);
    // Read up to the "listening" line, then close the pipe: every later log line hits EPIPE.
    let mut stderr = BufReader::new(child.stderr.take().unwrap());
    let mut line = String::new();
    while stderr.read_line(&mut line).unwrap_or(0) > 0 && !line.contains("listening: ") {
        line.clear();
    }
    assert!(line.contains("listening: "), "the server did not start");
    drop(stderr);
    let (tx, rx) = mpsc::channel();
    let waiter = std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
    let status = rx.recv_timeout(Duration::from_secs(20));
    if status.is_err() {
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
    }
    waiter.join().unwrap();
    let status = status
        .expect("the server stops within 20 s of SIGTERM")
        .unwrap();
    assert_eq!(status.code(), Some(0), "{status:?}");
}

/// A data dir and log file that an older version left readable by others (umask 022) are
/// tightened at start, each with a warning in the log naming it and its old mode; the server
/// starts all the same.
#[test]
fn an_old_data_dir_and_log_open_to_others_are_tightened_at_start() {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = |p: &std::path::Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o7777;
    let set = |p: &std::path::Path, m: u32| {
        std::fs::set_permissions(p, std::fs::Permissions::from_mode(m)).unwrap();
    };
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gc-data");
    std::fs::create_dir(&data).unwrap();
    set(&data, 0o755);
    let db = data.join("database.db");
    std::fs::write(&db, "1;1640995200;alice;hello\n").unwrap();
    set(&db, 0o644);
    let accounts = data.join("usernames.db");
    std::fs::write(&accounts, "").unwrap();
    set(&accounts, 0o644);
    let log = dir.path().join("gc-server.log");
    std::fs::write(&log, "an older run\n").unwrap();
    set(&log, 0o644);

    let mut sh = Command::new("sh");
    sh.arg("-c")
        .arg(r#"umask 022 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_gc-server"));
    let mut child = with_server_args(&mut sh, &data)
        .args(["--tls", "off", "--log-file", &log.display().to_string()])
        .spawn()
        .unwrap();
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    let mut text = String::new();
    while std::time::Instant::now() < deadline && !text.contains("listening: ") {
        std::thread::sleep(Duration::from_millis(50));
        text = std::fs::read_to_string(&log).unwrap_or_default();
    }
    let _ = child.kill();
    let _ = child.wait();
    assert!(
        text.contains("listening: "),
        "the server did not start:\n{text}"
    );
    for path in [&log, &db, &accounts] {
        assert_eq!(mode(path), 0o600, "{}", path.display());
        let name = path.display().to_string();
        assert!(
            text.lines()
                .any(|l| l.contains("WARN") && l.contains(&name) && l.contains("0644")),
            "no warning for {name}:\n{text}"
        );
    }
    assert_eq!(mode(&data), 0o700);
    assert!(
        text.lines().any(|l| l.contains("WARN")
            && l.contains(&format!("{} was mode 0755", data.display()))),
        "{text}"
    );
    assert_eq!(mode(&data.join("database.msgids")), 0o600, "made at start");
}

/// `gc-server user add` with a password of fewer than 8 characters from standard input: exit 2,
/// the minimum named, no account written. A long enough one is added, into a 0600 file.
#[test]
fn user_add_refuses_a_password_under_8_characters() {
    use std::io::Write as _;
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let add = |password: &str| {
        let mut child = Command::new(env!("CARGO_BIN_EXE_gc-server"))
            .args(["--data-dir", &dir.path().display().to_string()])
            .args(["user", "add", "alice", "--password-stdin"])
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut stdin = child.stdin.take().unwrap();
        stdin.write_all(format!("{password}\n").as_bytes()).unwrap();
        drop(stdin);
        child.wait_with_output().unwrap()
    };
    let accounts = dir.path().join("usernames.db");
    let out = add("short");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains("password too short: at least 8 characters; nothing was changed"),
        "{stderr}"
    );
    assert!(!accounts.exists());

    let out = add("correct-horse-9");
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout), "added alice\n");
    let mode = std::fs::metadata(&accounts).unwrap().permissions().mode() & 0o7777;
    assert_eq!(mode, 0o600);
}
