//! The `gc-server` binary itself, for what only the process does: its open-file limit.

use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};
use std::sync::mpsc;
use std::time::Duration;

/// With a hard open-file limit too low for `--max-clients`, the server still starts and says at
/// once how many sessions it can hold and what to do.
#[test]
fn a_low_open_file_limit_is_reported_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let mut child = Command::new("sh")
        .arg("-c")
        .arg(r#"ulimit -n 400 && exec "$0" "$@""#)
        .arg(env!("CARGO_BIN_EXE_gc-server"))
        .args(["--data-dir", &dir.path().display().to_string()])
        .args(["--bind", "127.0.0.1"])
        .args([
            "--connect-port",
            "0",
            "--auth-port",
            "0",
            "--send-port",
            "0",
        ])
        .args(["--max-clients", "100"])
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
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
