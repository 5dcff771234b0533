//! `gc-server db backup` of a running server under load, restored into a fresh data dir and
//! served again: every message acknowledged before the backup began is there exactly once,
//! ids are dense, and the accounts and the TLS identity came along.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex};

use gc_protocol::{AuthServer, SendReply};
use gc_server::admin;
use gc_server::cli::DbCommand;
use gc_tests::{PASSWORD, RawClient, TestServer, WAIT};

/// Every acknowledged message (id, body), and a condvar rung at each.
type Acked = Arc<(Mutex<Vec<(u64, String)>>, Condvar)>;

/// Waits until at least `n` messages are acknowledged.
fn wait_acked(acked: &Acked, n: usize) {
    let (list, rung) = &**acked;
    let (list, timeout) = rung
        .wait_timeout_while(list.lock().unwrap(), WAIT, |l| l.len() < n)
        .unwrap();
    assert!(
        !timeout.timed_out(),
        "only {} of {n} acknowledged",
        list.len()
    );
}

/// The documented restore: copy the backup's files into a new data dir (the manifest aside).
pub(crate) fn restore(backup: &Path, into: &Path) {
    for entry in std::fs::read_dir(backup).unwrap() {
        let entry = entry.unwrap();
        let to = into.join(entry.file_name());
        if entry.file_type().unwrap().is_dir() {
            std::fs::create_dir_all(&to).unwrap();
            restore(&entry.path(), &to);
        } else if entry.file_name() != gc_store::MANIFEST_FILE {
            std::fs::copy(entry.path(), &to).unwrap();
        }
    }
}

#[test]
fn a_backup_under_load_restores_every_acknowledged_message_once() {
    let server = TestServer::start_with(|c| {
        c.rate_burst = 100_000;
        c.rate_per_sec = 100_000.0;
    });
    let mut alice = RawClient::new(server.target());
    assert_eq!(alice.register("alice", PASSWORD), AuthServer::Registered);
    assert!(matches!(
        alice.login("alice", PASSWORD),
        AuthServer::Ok { .. }
    ));

    // A sender that keeps sending all through the backup; every Thx is an acknowledged message.
    let acked: Acked = Arc::default();
    let stop = Arc::new(AtomicBool::new(false));
    let sender = {
        let (acked, stop) = (Arc::clone(&acked), Arc::clone(&stop));
        std::thread::Builder::new()
            .name("test-sender".into())
            .spawn(move || {
                let mut n = 0u64;
                while !stop.load(Ordering::Relaxed) {
                    let body = format!("message {n}");
                    match alice.send(&body) {
                        SendReply::Thx { id, .. } => {
                            acked.0.lock().unwrap().push((id, body));
                            acked.1.notify_all();
                        }
                        other => panic!("not stored: {other:?}"),
                    }
                    n += 1;
                }
            })
            .unwrap()
    };
    wait_acked(&acked, 200);

    let place = tempfile::tempdir().unwrap();
    let dest = place.path().join("backup");
    let before: Vec<(u64, String)> = acked.0.lock().unwrap().clone();
    let mut out = Vec::new();
    let backup = DbCommand::Backup { dest: dest.clone() };
    assert!(admin::db(&backup, &server.config, &mut out).unwrap());
    let during = acked.0.lock().unwrap().len();
    let said = String::from_utf8(out).unwrap();
    assert!(said.starts_with("backed up "), "{said}");
    // Let the sender go on a little after, then stop it.
    wait_acked(&acked, during + 50);
    stop.store(true, Ordering::Relaxed);
    sender.join().unwrap();

    // `db check BACKUP`: the copy's lines and its manifest.
    let mut out = Vec::new();
    let check = DbCommand::Check {
        backup: Some(dest.clone()),
    };
    let healthy = admin::db(&check, &server.config, &mut out).unwrap();
    let said = String::from_utf8(out).unwrap();
    assert!(healthy && said.ends_with("ok\n"), "{said}");

    // A second backup into the same place is refused: nothing is ever overwritten.
    let e = admin::db(&backup, &server.config, &mut Vec::new()).unwrap_err();
    assert!(e.to_string().contains("not empty"), "{e}");

    // Restore into a fresh data dir and serve it.
    let fresh = tempfile::tempdir().unwrap();
    restore(&dest, fresh.path());
    let restored = TestServer::open(fresh.path());
    assert_eq!(
        restored.fingerprint(),
        server.fingerprint(),
        "same identity"
    );
    let mut again = RawClient::new(restored.target());
    assert!(
        matches!(again.login("alice", PASSWORD), AuthServer::Ok { .. }),
        "the account came along"
    );

    let mut seen: BTreeMap<u64, (String, usize)> = BTreeMap::new();
    gc_store::visit_records(fresh.path(), |r| {
        let e = seen.entry(r.id).or_insert((r.body.clone(), 0));
        e.1 += 1;
        Ok(())
    })
    .unwrap();
    let ids: Vec<u64> = seen.keys().copied().collect();
    assert_eq!(
        ids,
        (1..=ids.len() as u64).collect::<Vec<_>>(),
        "ids are dense"
    );
    assert!(seen.values().all(|(_, n)| *n == 1), "no id twice");
    for (id, body) in &before {
        assert_eq!(
            seen.get(id).map(|(b, _)| b.as_str()),
            Some(body.as_str()),
            "acknowledged message {id} is in the backup"
        );
    }
    let mut bodies: Vec<&str> = seen.values().map(|(b, _)| b.as_str()).collect();
    bodies.sort_unstable();
    bodies.dedup();
    assert_eq!(bodies.len(), seen.len(), "every message once");
    // The restored server goes on from there.
    match again.send("after the restore") {
        SendReply::Thx { id, .. } => assert_eq!(id, ids.len() as u64 + 1),
        other => panic!("not stored: {other:?}"),
    }
}
