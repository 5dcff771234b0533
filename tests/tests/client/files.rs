//! File transfer through the client library (GC/5): an upload announced to another client,
//! whose download is saved and verified; a download that must not replace a file; a server
//! without GC/5; an upload resumed after the server restarted mid-way; a download cut short
//! that a new run of the client resumes from its `.part`.

use std::path::Path;

use std::time::{Duration, Instant};

use gc_client_core::{ClientError, Event, SavePath, TransferEvent, download_path, part_path};
use gc_protocol::files::FileNotice;
use gc_protocol::{ContentHash, Room};
use gc_tests::client::{OlderConnectPort, TestClient, config, register};
use gc_tests::relay::{Relay, Way};
use gc_tests::{PASSWORD, TestServer, WAIT};

fn started(server: &TestServer, user: &str) -> TestClient {
    let mut cfg = config(server, user, PASSWORD);
    cfg.register = true;
    let mut c = TestClient::start(cfg);
    c.wait_active();
    c
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 31 + i / 509) as u8).collect()
}

fn write_file(dir: &Path, name: &str, data: &[u8]) -> std::path::PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, data).unwrap();
    path
}

#[test]
fn a_shared_file_reaches_another_client_and_is_saved_verified_without_replacing_anything() {
    let server = TestServer::start();
    let mut alice = started(&server, "alice");
    let mut bob = started(&server, "bob");
    assert_eq!(alice.client().files_available(), Some(true));
    let dir = tempfile::tempdir().unwrap();
    let data = content(2 * 1024 * 1024 + 3);
    let path = write_file(dir.path(), "report.pdf", &data);
    let id = alice.client().upload(Room::general(), &path).unwrap();
    let TransferEvent::Uploaded {
        hash, size, name, ..
    } = alice.finished_transfer(id)
    else {
        panic!("upload failed: {:?}", alice.others);
    };
    assert_eq!(
        (hash, size, name.as_str()),
        (ContentHash::of(&data), data.len() as u64, "report.pdf")
    );
    // Bob sees the record and fetches what it names.
    bob.wait_records(1);
    let notice = FileNotice::parse(&bob.records.last().unwrap().body).expect("a [file] record");
    assert_eq!(notice.hash, hash);
    let downloads = tempfile::tempdir().unwrap();
    let target = download_path(downloads.path(), &notice.name, &notice.hash).path;
    let id = bob.client().download(notice.hash, &target).unwrap();
    let TransferEvent::Downloaded { path, size, .. } = bob.finished_transfer(id) else {
        panic!("download failed: {:?}", bob.others);
    };
    assert_eq!(
        (path.as_path(), size),
        (target.as_path(), data.len() as u64)
    );
    assert!(std::fs::read(&target).unwrap() == data);
    assert!(!part_path(&target, &hash).exists());
    // The next download of it goes beside, never over it.
    let again = download_path(downloads.path(), &notice.name, &notice.hash);
    assert_ne!(again.path, target);
    assert_eq!(again.resumes, None);
    assert!(matches!(
        bob.client().download(notice.hash, &target),
        Err(ClientError::FileExists(_))
    ));
    // An unknown hash: refused by the server, nothing left behind.
    let missing = downloads.path().join("missing.bin");
    let id = bob
        .client()
        .download(ContentHash::of(b"nothing"), &missing)
        .unwrap();
    let TransferEvent::Failed { error, .. } = bob.finished_transfer(id) else {
        panic!("expected a failure");
    };
    assert!(
        matches!(&error, ClientError::FileRefused { code, .. } if *code == gc_protocol::ErrorCode::UnknownFile),
        "{error}"
    );
    assert!(!missing.exists());
}

#[test]
fn a_download_resumes_from_its_part_file_and_a_wrong_one_is_not_kept() {
    let server = TestServer::start();
    let mut alice = started(&server, "alice");
    let dir = tempfile::tempdir().unwrap();
    let data = content(300_000);
    let path = write_file(dir.path(), "a.bin", &data);
    let id = alice.client().upload(Room::general(), &path).unwrap();
    assert!(matches!(
        alice.finished_transfer(id),
        TransferEvent::Uploaded { .. }
    ));
    // What an interrupted run left: the first 100,000 bytes, which the next run finds.
    let hash = ContentHash::of(&data);
    std::fs::write(
        part_path(&dir.path().join("copy.bin"), &hash),
        &data[..100_000],
    )
    .unwrap();
    let save = download_path(dir.path(), "copy.bin", &hash);
    assert_eq!(save.resumes, Some(100_000));
    let target = save.path;
    assert_eq!(target, dir.path().join("copy.bin"));
    let id = alice.client().download(hash, &target).unwrap();
    let TransferEvent::Downloaded { resumed_from, .. } = alice.finished_transfer(id) else {
        panic!("download failed: {:?}", alice.others);
    };
    assert_eq!(resumed_from, 100_000);
    assert!(std::fs::read(&target).unwrap() == data);
    assert!(!part_path(&target, &hash).exists());
    // A part file that is not a prefix of the content: the result fails its hash, nothing kept.
    let wrong = dir.path().join("wrong.bin");
    let mut bad = data[..100_000].to_vec();
    bad[5] ^= 0xff;
    std::fs::write(part_path(&wrong, &hash), &bad).unwrap();
    let id = alice
        .client()
        .download(ContentHash::of(&data), &wrong)
        .unwrap();
    let TransferEvent::Failed { error, .. } = alice.finished_transfer(id) else {
        panic!("expected a failure");
    };
    assert!(matches!(error, ClientError::FileCorrupt { .. }), "{error}");
    assert!(!wrong.exists() && !part_path(&wrong, &hash).exists());
}

/// A download cut short (cancelled half way, the relay holding the rest back) leaves its `.part`,
/// named after the content; the next run of the client finds it with `download_path`, as the
/// terminal UI's `/download` does, and goes on from it under the same name.
#[test]
fn a_download_cut_short_goes_on_from_its_part_after_the_client_restarts() {
    let server = TestServer::start();
    let mut alice = started(&server, "alice");
    let dir = tempfile::tempdir().unwrap();
    let data = content(2 * 1024 * 1024);
    let path = write_file(dir.path(), "big.bin", &data);
    let id = alice.client().upload(Room::general(), &path).unwrap();
    let TransferEvent::Uploaded { hash, .. } = alice.finished_transfer(id) else {
        panic!("upload failed: {:?}", alice.others);
    };
    // Bob's first run fetches through a relay that lets 512 KiB come, then holds the rest.
    let relay = Relay::start(server.addrs().send);
    let mut cfg = config(&server, "bob", PASSWORD);
    cfg.register = true;
    cfg.server_ports.send = relay.port;
    let mut bob = TestClient::start(cfg.clone());
    bob.wait_active();
    let downloads = tempfile::tempdir().unwrap();
    let first = download_path(downloads.path(), "big.bin", &hash);
    assert_eq!(first.resumes, None);
    relay.limit(Way::Down, 512 * 1024);
    let id = bob.client().download(hash, &first.path).unwrap();
    relay.wait_holding(Way::Down);
    let part = part_path(&first.path, &hash);
    let deadline = Instant::now() + WAIT;
    while std::fs::metadata(&part).map_or(0, |m| m.len()) < 256 * 1024 {
        assert!(
            Instant::now() < deadline,
            "nothing arrived in {}",
            part.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(bob.client().cancel_transfer(id));
    assert!(matches!(
        bob.finished_transfer(id),
        TransferEvent::Cancelled { .. }
    ));
    bob.close();
    drop(bob);
    relay.open();
    let kept = std::fs::metadata(&part).unwrap().len();
    assert!(kept < data.len() as u64, "{kept} bytes kept");

    // The next run: the same name, on from the kept bytes.
    cfg.register = false;
    let mut bob = TestClient::start(cfg);
    bob.wait_active();
    let again = download_path(downloads.path(), "big.bin", &hash);
    assert_eq!(
        again,
        SavePath {
            path: first.path.clone(),
            resumes: Some(kept),
        }
    );
    let id = bob.client().download(hash, &again.path).unwrap();
    let TransferEvent::Downloaded { resumed_from, .. } = bob.finished_transfer(id) else {
        panic!("download failed: {:?}", bob.others);
    };
    assert_eq!(resumed_from, kept);
    assert!(std::fs::read(&first.path).unwrap() == data);
    assert!(!part.exists());
    assert_eq!(std::fs::read_dir(downloads.path()).unwrap().count(), 1);
}

#[test]
fn an_upload_survives_a_server_restart() {
    let mut server = TestServer::start();
    let mut alice = started(&server, "alice");
    let dir = tempfile::tempdir().unwrap();
    let data = content(8 * 1024 * 1024);
    let path = write_file(dir.path(), "big.bin", &data);
    let id = alice.client().upload(Room::general(), &path).unwrap();
    // Some bytes move, then the server goes away and comes back.
    alice.wait_other("some progress", |e| match e {
        Event::Transfer(TransferEvent::Progress {
            done,
            hashing: false,
            ..
        }) if *done > 0 => Some(()),
        _ => None,
    });
    server.restart();
    let TransferEvent::Uploaded { size, .. } = alice.finished_transfer(id) else {
        panic!("upload failed: {:?}", alice.others);
    };
    assert_eq!(size, data.len() as u64);
    let hex = ContentHash::of(&data).to_string();
    assert!(
        server
            .data_dir()
            .join("files/objects")
            .join(&hex[..2])
            .join(&hex)
            .is_file()
    );
}

#[test]
fn a_server_without_gc5_is_told_apart() {
    let server = TestServer::start();
    register(&server, "dave", PASSWORD);
    let older = OlderConnectPort::start_gc3(&server);
    let mut cfg = config(&server, "dave", PASSWORD);
    cfg.server_ports.connect = older.port;
    let mut dave = TestClient::start(cfg);
    dave.wait_active();
    assert_eq!(dave.client().files_available(), Some(false));
    let dir = tempfile::tempdir().unwrap();
    let path = write_file(dir.path(), "x", b"x");
    let err = dave.client().upload(Room::general(), &path).unwrap_err();
    assert!(err.to_string().contains("GC/5"), "{err}");
}
