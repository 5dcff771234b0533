//! A disk that fills up under a file transfer (docs/files.md §6, §9), end to end: the server's
//! data dir is a small tmpfs of its own, the upload goes through the real client library.
//!
//! Mounting needs root (CI runs as root); without it the tests say why they are skipped, unless
//! `GC_REQUIRE_MOUNT` is set (as `.ci/test` sets it): then they fail.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use gc_client_core::{ClientError, TransferEvent};
use gc_protocol::files::FileNotice;
use gc_protocol::{ContentHash, ErrorCode, Room};
use gc_tests::client::{TestClient, config};
use gc_tests::relay::{Relay, Way};
use gc_tests::{PASSWORD, TestServer, WAIT};
use rustix::mount::{MountFlags, UnmountFlags};

const MIB: u64 = 1024 * 1024;

/// A tmpfs mounted on a directory of its own, unmounted (lazily, so nothing can keep it) when
/// dropped: a failing test leaves no mount behind.
struct Tmpfs {
    dir: tempfile::TempDir,
}

impl Tmpfs {
    /// A tmpfs of `bytes`, or `None` (after saying why) when this machine cannot mount one and
    /// `GC_REQUIRE_MOUNT` is unset.
    fn mount(bytes: u64) -> Option<Self> {
        let dir = tempfile::tempdir().unwrap();
        let options = std::ffi::CString::new(format!("size={bytes},mode=0700")).unwrap();
        match rustix::mount::mount(
            "gc-test",
            dir.path(),
            "tmpfs",
            MountFlags::NOSUID | MountFlags::NODEV,
            options.as_c_str(),
        ) {
            Ok(()) => Some(Self { dir }),
            Err(e) => {
                assert!(
                    std::env::var_os("GC_REQUIRE_MOUNT").is_none(),
                    "GC_REQUIRE_MOUNT is set but a tmpfs cannot be mounted ({e}): the disk-full \
                     tests need root (or CAP_SYS_ADMIN)"
                );
                #[allow(clippy::print_stderr)]
                {
                    eprintln!(
                        "skipping the disk-full test: cannot mount a tmpfs ({e}); it needs root \
                         (GC_REQUIRE_MOUNT=1 makes this a failure)"
                    );
                }
                None
            }
        }
    }

    fn path(&self) -> &Path {
        self.dir.path()
    }

    /// Makes the file system `bytes` large: the operator frees space.
    fn resize(&self, bytes: u64) {
        rustix::mount::mount_remount(
            self.path(),
            MountFlags::NOSUID | MountFlags::NODEV,
            format!("size={bytes},mode=0700").as_str(),
        )
        .unwrap();
    }

    /// (bytes used, bytes free).
    fn usage(&self) -> (u64, u64) {
        let st = rustix::fs::statvfs(self.path()).unwrap();
        (
            (st.f_blocks - st.f_bfree) * st.f_frsize,
            st.f_bavail * st.f_frsize,
        )
    }

    /// Fills what is left with a file of its own (something else on the server's disk grew):
    /// how many bytes it took.
    fn fill(&self) -> u64 {
        let mut file = std::fs::File::create(self.path().join("other-program.log")).unwrap();
        let mut taken = 0;
        for piece in [64 * 1024, 4096, 1] {
            let block = vec![0u8; piece];
            loop {
                match file.write(&block) {
                    Ok(n) => taken += n as u64,
                    Err(e) if e.kind() == std::io::ErrorKind::StorageFull => break,
                    Err(e) => panic!("filling the disk: {e}"),
                }
            }
        }
        assert_eq!(self.usage().1, 0, "the disk is full");
        taken
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        if let Err(e) = rustix::mount::unmount(self.path(), UnmountFlags::DETACH) {
            #[allow(clippy::print_stderr)]
            {
                eprintln!("cannot unmount {}: {e}", self.path().display());
            }
        }
    }
}

// ───────────────────────────── helpers ─────────────────────────────

/// A server whose data dir is `disk`, refusing no upload for the space it would leave (so only
/// a disk that fills while bytes arrive stops one), with I/O timeouts long enough for the relay
/// to hold an upload back.
fn server_on(disk: &Tmpfs) -> TestServer {
    TestServer::start_with(|c| {
        c.data_dir = disk.path().to_path_buf();
        c.min_free_disk_bytes = 0;
        c.io_timeout = Duration::from_secs(30);
        c.idle_timeout = Duration::from_secs(30);
    })
}

/// A client of a new account `user`, sending through `send_port` when given.
fn client(server: &TestServer, user: &str, send_port: Option<u16>) -> TestClient {
    let mut cfg = config(server, user, PASSWORD);
    cfg.register = true;
    cfg.io_timeout = Duration::from_secs(30);
    cfg.idle_timeout = Duration::from_secs(30);
    if let Some(port) = send_port {
        cfg.server_ports.send = port;
    }
    let mut c = TestClient::start(cfg);
    c.wait_active();
    c
}

fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 13 + i / 4093) as u8).collect()
}

/// The server's partial file of `user`'s upload of `hash`.
fn partial(data_dir: &Path, user: &str, hash: &ContentHash) -> PathBuf {
    data_dir
        .join("files/partial")
        .join(format!("{user}.{hash}"))
}

fn object(data_dir: &Path, hash: &ContentHash) -> PathBuf {
    let hex = hash.to_string();
    data_dir.join("files/objects").join(&hex[..2]).join(hex)
}

/// The stored records (every room: these tests use `#general` only) announcing `hash`.
fn announcing(server: &TestServer, hash: &ContentHash) -> usize {
    server
        .stored_lines()
        .iter()
        .filter_map(|line| line.splitn(4, ';').nth(3).and_then(FileNotice::parse))
        .filter(|n| n.hash == *hash)
        .count()
}

/// The lines of `files/index.db` naming `hash`.
fn index_lines(data_dir: &Path, hash: &ContentHash) -> usize {
    std::fs::read_to_string(data_dir.join("files/index.db"))
        .unwrap_or_default()
        .lines()
        .filter(|l| l.starts_with(&hash.to_string()))
        .count()
}

/// The refusal a failed transfer ended with.
#[track_caller]
fn refusal(event: TransferEvent) -> (ErrorCode, String) {
    match event {
        TransferEvent::Failed {
            error: ClientError::FileRefused { code, text },
            ..
        } => (code, text),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

/// Checks that `event` is a `disk-full` refusal that tells the user what to do.
fn told_disk_full(event: TransferEvent) {
    let (code, text) = refusal(event);
    assert_eq!(code, ErrorCode::DiskFull, "{text}");
    assert!(
        text.contains("tell the operator") && text.contains("again"),
        "the client is told what to do: {text}"
    );
}

/// Downloads `hash` into a fresh directory (not the small disk): the bytes saved.
fn download(c: &mut TestClient, hash: ContentHash) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("copy.bin");
    let id = c.client().download(hash, &target).unwrap();
    match c.finished_transfer(id) {
        TransferEvent::Downloaded { .. } => std::fs::read(&target).unwrap(),
        other => panic!("download failed: {other:?}"),
    }
}

/// Waits until `path` holds at least `bytes` (the server writes what arrives as it comes; no
/// event says so, so it is looked at every 10 ms).
fn wait_size(path: &Path, bytes: u64) {
    let deadline = Instant::now() + WAIT;
    loop {
        let len = std::fs::metadata(path).map_or(0, |m| m.len());
        if len >= bytes {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "{} holds {len} bytes, never {bytes}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(10));
    }
}

// ───────────────────────────── the tests ─────────────────────────────

/// The disk fills while an upload is under way (another program takes the space after the
/// server accepted the `Offer`): the client is told `disk-full` and what to do, nothing is
/// announced or offered, and what arrived is kept. Once the operator frees space (the file
/// system grows, by no more than what the upload still needs) the same upload goes on from the
/// kept offset, not from 0, and completes: one record, the exact bytes.
#[test]
fn a_disk_filling_up_mid_upload_keeps_what_arrived_and_the_upload_resumes_once_there_is_room() {
    let Some(disk) = Tmpfs::mount(4 * MIB) else {
        return;
    };
    let server = server_on(&disk);
    let relay = Relay::start(server.addrs().send);
    let mut alice = client(&server, "alice", Some(relay.port));
    let dir = tempfile::tempdir().unwrap();
    let data = content(3 * MIB as usize);
    let hash = ContentHash::of(&data);
    let path = dir.path().join("big.bin");
    std::fs::write(&path, &data).unwrap();
    let (_, free) = disk.usage();
    assert!(
        free > data.len() as u64,
        "the upload fits when it is offered"
    );

    // About a MiB goes through, then the client is held back while the disk fills up.
    relay.limit(Way::Up, MIB + 64 * 1024);
    let id = alice.client().upload(Room::general(), &path).unwrap();
    let kept_path = partial(disk.path(), "alice", &hash);
    wait_size(&kept_path, MIB / 2);
    relay.wait_holding(Way::Up);
    disk.fill();
    relay.open();

    told_disk_full(alice.finished_transfer(id));
    // Nothing announced, nothing offered: the content is unknown to a fetch.
    assert_eq!(announcing(&server, &hash), 0);
    assert_eq!(index_lines(disk.path(), &hash), 0);
    assert!(!object(disk.path(), &hash).exists());
    let missing = tempfile::tempdir().unwrap();
    let id = alice
        .client()
        .download(hash, missing.path().join("x"))
        .unwrap();
    let (code, text) = refusal(alice.finished_transfer(id));
    assert_eq!(code, ErrorCode::UnknownFile, "{text}");
    // What arrived is kept: a prefix of the content.
    let kept = std::fs::read(&kept_path).unwrap();
    assert!(
        kept.len() >= (MIB / 2) as usize && kept.len() < data.len(),
        "{} bytes kept",
        kept.len()
    );
    assert!(
        kept[..] == data[..kept.len()],
        "the kept bytes are the content's start"
    );

    // The operator frees space: the file system grows by what the upload still needs (and a
    // little for the record), less than the whole file.
    let still_needed = (data.len() - kept.len()) as u64;
    let (used, _) = disk.usage();
    disk.resize(used + still_needed + 256 * 1024);
    assert!(disk.usage().1 < data.len() as u64);
    let id = alice.client().upload(Room::general(), &path).unwrap();
    let TransferEvent::Uploaded {
        size, resumed_from, ..
    } = alice.finished_transfer(id)
    else {
        panic!("the upload did not resume: {:?}", alice.others);
    };
    assert_eq!(size, data.len() as u64);
    assert_eq!(
        resumed_from,
        kept.len() as u64,
        "it went on from the kept offset"
    );
    assert!(!kept_path.exists(), "the partial file became the object");
    assert!(
        download(&mut alice, hash) == data,
        "the bytes come back exactly"
    );
    assert_eq!(announcing(&server, &hash), 1);
    assert_eq!(index_lines(disk.path(), &hash), 1);
    alice.wait_records(1);
    let notices: Vec<FileNotice> = alice
        .records
        .iter()
        .filter_map(|r| FileNotice::parse(&r.body))
        .collect();
    assert_eq!(notices.len(), 1, "{:?}", alice.bodies());
    assert_eq!(notices[0].hash, hash);
}

/// The content fills the disk to its last byte, so the record that would announce it cannot be
/// written: the client is told `disk-full` (not an internal error), nothing is announced, the
/// message store takes nothing half and goes on working; once there is room, sending the file
/// again moves no byte and stores exactly one record.
#[test]
fn a_disk_too_full_for_the_record_announces_nothing_and_sending_again_stores_it_once() {
    let Some(disk) = Tmpfs::mount(4 * MIB) else {
        return;
    };
    let server = server_on(&disk);
    let mut alice = client(&server, "alice", None);
    let (_, free) = disk.usage();
    // Exactly what is free: the content takes every page, the record finds none.
    let data = content(free as usize);
    let hash = ContentHash::of(&data);
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("exact.bin");
    std::fs::write(&path, &data).unwrap();
    let id = alice.client().upload(Room::general(), &path).unwrap();
    told_disk_full(alice.finished_transfer(id));
    assert_eq!(announcing(&server, &hash), 0);
    assert_eq!(index_lines(disk.path(), &hash), 0);
    assert!(object(disk.path(), &hash).is_file(), "the content is kept");
    let id = alice.client().download(hash, dir.path().join("x")).unwrap();
    assert_eq!(
        refusal(alice.finished_transfer(id)).0,
        ErrorCode::UnknownFile
    );

    disk.resize(32 * MIB);
    let id = alice.client().upload(Room::general(), &path).unwrap();
    let TransferEvent::Uploaded { resumed_from, .. } = alice.finished_transfer(id) else {
        panic!("sending again failed: {:?}", alice.others);
    };
    assert_eq!(resumed_from, data.len() as u64, "no byte moved again");
    assert_eq!(announcing(&server, &hash), 1);
    assert_eq!(index_lines(disk.path(), &hash), 1);
    // The message store goes on: a message after the file.
    alice.send("still here");
    alice.wait_records(2);
    assert_eq!(alice.bodies()[1], "still here");
    assert!(download(&mut alice, hash) == data);
}
