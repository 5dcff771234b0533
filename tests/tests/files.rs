//! GC/5 file transfer over real sessions (docs/files.md): upload and download in chunks,
//! resume (also after a server restart), the record every client sees, and each refusal and
//! failure the issue names: wrong offsets, content past its size, a wrong hash, a path in a
//! name, unknown or unreadable content, limits, and two uploads of the same content at once.

use std::time::{Duration, Instant};

use gc_protocol::files::FileNotice;
use gc_protocol::{
    AuthServer, ClientMsgId, ContentHash, ErrorCode, Frame as _, FramedStream, Room, SendReply,
    SendRequest, SessionToken,
};
use gc_tests::{PASSWORD, RawClient, TestServer};

type Conn = FramedStream<gc_net::Stream>;

fn soon() -> Instant {
    Instant::now() + Duration::from_secs(10)
}

/// A logged-in GC/5 session of a new account.
fn session(server: &TestServer, user: &str) -> RawClient {
    let mut c = RawClient::new(server.target());
    c.speak_gc5();
    assert_eq!(c.register(user, PASSWORD), AuthServer::Registered);
    assert!(matches!(c.login(user, PASSWORD), AuthServer::Ok { .. }));
    c
}

fn token(c: &RawClient) -> SessionToken {
    c.token.clone().unwrap()
}

/// Content that is not all one byte, so an offset mistake shows in the hash.
fn content(len: usize) -> Vec<u8> {
    (0..len).map(|i| (i * 7 + i / 251) as u8).collect()
}

fn cmid(text: &str) -> ClientMsgId {
    ClientMsgId::new(text).unwrap()
}

fn write(conn: &mut Conn, frame: &SendRequest) {
    let mut bytes = Vec::new();
    frame.encode(&mut bytes);
    conn.write_all(&bytes, soon()).unwrap();
}

fn read(conn: &mut Conn) -> SendReply {
    conn.read(soon()).expect("a reply")
}

/// Sends `Offer` on a fresh connection: the connection and the answer.
fn offer(c: &RawClient, room: &Room, data: &[u8], name: &str, id: &str) -> (Conn, SendReply) {
    let mut conn = c.connect(c.server.send);
    write(
        &mut conn,
        &SendRequest::Offer {
            token: token(c),
            room: room.clone(),
            hash: ContentHash::of(data),
            size: data.len() as u64,
            name: name.into(),
            client_msg_id: cmid(id),
        },
    );
    let reply = read(&mut conn);
    (conn, reply)
}

/// Sends `data[from..to]` as chunks of at most `chunk` bytes.
fn send_chunks(c: &RawClient, conn: &mut Conn, data: &[u8], from: usize, to: usize, chunk: usize) {
    let hash = ContentHash::of(data);
    let mut at = from;
    while at < to {
        let end = (at + chunk).min(to);
        write(
            conn,
            &SendRequest::Chunk {
                token: token(c),
                hash,
                offset: at as u64,
                length: (end - at) as u64,
            },
        );
        conn.write_all(&data[at..end], soon()).unwrap();
        at = end;
    }
}

/// Uploads `data` whole: the `Thx` id.
fn upload(c: &RawClient, room: &Room, data: &[u8], name: &str, id: &str) -> u64 {
    let (mut conn, reply) = offer(c, room, data, name, id);
    let from = match reply {
        SendReply::Resume { offset, .. } => offset as usize,
        SendReply::Thx { id, .. } => return id,
        other => panic!("expected Resume, got {other:?}"),
    };
    send_chunks(c, &mut conn, data, from, data.len(), 256 * 1024);
    match read(&mut conn) {
        SendReply::Thx { id, .. } => id,
        other => panic!("expected Thx, got {other:?}"),
    }
}

/// Fetches `hash` from `offset`: the whole size and the bytes, or the server's `Err`.
fn fetch(
    c: &RawClient,
    hash: ContentHash,
    offset: u64,
) -> Result<(u64, Vec<u8>), (ErrorCode, String)> {
    let mut conn = c.connect(c.server.send);
    write(
        &mut conn,
        &SendRequest::Fetch {
            token: token(c),
            hash,
            offset,
        },
    );
    match read(&mut conn) {
        SendReply::Data {
            hash: h,
            size,
            offset: o,
        } => {
            assert_eq!((h, o), (hash, offset));
            let mut bytes = vec![0u8; (size - offset) as usize];
            let mut got = 0;
            while got < bytes.len() {
                got += conn.read_raw(&mut bytes[got..], soon()).expect("content");
            }
            Ok((size, bytes))
        }
        SendReply::Err(e) => Err((e.code, e.text)),
        other => panic!("expected Data, got {other:?}"),
    }
}

#[track_caller]
fn refused(reply: &SendReply, code: ErrorCode, words: &str) {
    match reply {
        SendReply::Err(e) => {
            assert_eq!(e.code, code, "{}", e.text);
            assert!(e.text.contains(words), "{:?} lacks {words:?}", e.text);
        }
        other => panic!("expected Err {code}, got {other:?}"),
    }
}

/// Whether the connection was closed by the server (what follows a refusal mid-upload).
fn closed(conn: &mut Conn) -> bool {
    conn.read::<SendReply>(soon()).is_err()
}

#[test]
fn a_file_goes_up_in_chunks_is_announced_to_everyone_and_comes_down_whole() {
    let server = TestServer::start();
    let alice = session(&server, "alice");
    let bob = session(&server, "bob");
    // An old client sees the record too, as text.
    let mut old = RawClient::new(server.target());
    assert_eq!(old.register("carol", PASSWORD), AuthServer::Registered);
    assert!(matches!(
        old.login("carol", PASSWORD),
        AuthServer::Ok { .. }
    ));
    let data = content(3 * 1024 * 1024 + 17);
    let id = upload(&alice, &Room::general(), &data, "build log.txt", "up-1");
    let expected = FileNotice {
        name: "build log.txt".into(),
        size: data.len() as u64,
        hash: ContentHash::of(&data),
    }
    .text();
    for c in [&alice, &bob, &old] {
        let records = c.receive(1);
        assert_eq!(records[0].id, id);
        assert_eq!(records[0].body, expected);
        assert_eq!(
            FileNotice::parse(&records[0].body).unwrap().size,
            data.len() as u64
        );
    }
    let (size, bytes) = fetch(&bob, ContentHash::of(&data), 0).unwrap();
    assert_eq!(size, data.len() as u64);
    assert!(bytes == data, "the content comes back byte for byte");
    // A download resumes from what the client has.
    let (_, tail) = fetch(&bob, ContentHash::of(&data), 1_000_000).unwrap();
    assert!(tail == data[1_000_000..]);
    // Stored once, under its hash; no partial file is left.
    let objects = server.data_dir().join("files/objects");
    let hex = ContentHash::of(&data).to_string();
    assert!(objects.join(&hex[..2]).join(&hex).is_file());
    assert_eq!(
        std::fs::read_dir(server.data_dir().join("files/partial"))
            .unwrap()
            .count(),
        0
    );
    // A session still sends messages meanwhile and after.
    assert!(matches!(
        alice.send("after the file"),
        SendReply::Thx { .. }
    ));
}

#[test]
fn a_retried_offer_after_the_thx_stores_nothing_twice() {
    let server = TestServer::start();
    let alice = session(&server, "alice");
    let data = content(10_000);
    let first = upload(&alice, &Room::general(), &data, "a.bin", "same-id");
    let (_, again) = offer(&alice, &Room::general(), &data, "a.bin", "same-id");
    assert!(
        matches!(again, SendReply::Thx { id, .. } if id == first),
        "{again:?}"
    );
    // The same content under a new id: a new record, and no byte sent (the server has it).
    let (_, other) = offer(&alice, &Room::general(), &data, "copy.bin", "other-id");
    assert!(
        matches!(other, SendReply::Thx { id, .. } if id > first),
        "{other:?}"
    );
    let records = alice.receive(2);
    assert_eq!(records.len(), 2);
    assert!(alice.receive_more(Duration::from_millis(300)).is_empty());
}

#[test]
fn an_interrupted_upload_resumes_where_it_stopped_even_after_a_restart() {
    let mut server = TestServer::start();
    let mut alice = session(&server, "alice");
    let data = content(2 * 1024 * 1024);
    let (mut conn, reply) = offer(&alice, &Room::general(), &data, "big.bin", "resume-1");
    assert!(
        matches!(reply, SendReply::Resume { offset: 0, .. }),
        "{reply:?}"
    );
    send_chunks(&alice, &mut conn, &data, 0, 700_000, 100_000);
    // The client dies mid-transfer; its next Offer takes the upload over.
    drop(conn);
    let (mut conn, reply) = offer(&alice, &Room::general(), &data, "big.bin", "resume-1");
    let SendReply::Resume { offset, .. } = reply else {
        panic!("expected Resume, got {reply:?}");
    };
    // What arrived before the cut is kept (how much of it the server read first varies).
    assert!(offset <= 700_000, "resumes at {offset}");
    send_chunks(
        &alice,
        &mut conn,
        &data,
        offset as usize,
        1_500_000,
        100_000,
    );
    drop(conn);
    let (conn, probe) = offer(&alice, &Room::general(), &data, "big.bin", "resume-1");
    let SendReply::Resume { offset: had, .. } = probe else {
        panic!("expected Resume, got {probe:?}");
    };
    assert!(had >= offset && had <= 1_500_000, "resumes at {had}");
    drop(conn);
    // A restart loses nothing the server had.
    server.restart();
    assert!(matches!(
        alice.login("alice", PASSWORD),
        AuthServer::Ok { .. }
    ));
    let (mut conn, reply) = offer(&alice, &Room::general(), &data, "big.bin", "resume-1");
    assert!(
        matches!(reply, SendReply::Resume { offset, .. } if offset == had),
        "{reply:?}, had {had}"
    );
    send_chunks(&alice, &mut conn, &data, had as usize, data.len(), 100_000);
    assert!(matches!(read(&mut conn), SendReply::Thx { .. }));
    let (_, bytes) = fetch(&alice, ContentHash::of(&data), 0).unwrap();
    assert!(bytes == data);
}

#[test]
fn chunks_out_of_place_past_the_end_or_with_the_wrong_content_are_refused() {
    let server = TestServer::start();
    let alice = session(&server, "alice");
    let data = content(50_000);
    let hash = ContentHash::of(&data);
    // A gap.
    let (mut conn, _) = offer(&alice, &Room::general(), &data, "a", "bad-1");
    send_chunks(&alice, &mut conn, &data, 1000, 2000, 1000);
    refused(&read(&mut conn), ErrorCode::Offset, "starts at 1000");
    assert!(closed(&mut conn));
    // Past the announced size.
    let (mut conn, reply) = offer(&alice, &Room::general(), &data, "a", "bad-1");
    assert!(
        matches!(reply, SendReply::Resume { offset: 0, .. }),
        "{reply:?}"
    );
    write(
        &mut conn,
        &SendRequest::Chunk {
            token: token(&alice),
            hash,
            offset: 0,
            length: 50_001,
        },
    );
    refused(
        &read(&mut conn),
        ErrorCode::TooLarge,
        "past the 50000 announced",
    );
    assert!(closed(&mut conn));
    // Other content than the hash says: refused at the end, nothing kept or announced.
    let mut wrong = data.clone();
    wrong[40_000] ^= 1;
    let (mut conn, _) = offer(&alice, &Room::general(), &data, "a", "bad-1");
    write(
        &mut conn,
        &SendRequest::Chunk {
            token: token(&alice),
            hash,
            offset: 0,
            length: wrong.len() as u64,
        },
    );
    conn.write_all(&wrong, soon()).unwrap();
    refused(&read(&mut conn), ErrorCode::Corrupt, "SHA-256");
    assert_eq!(
        fetch(&alice, hash, 0).unwrap_err().0,
        ErrorCode::UnknownFile
    );
    // It starts again from nothing, and the right content goes through.
    let (_, reply) = offer(&alice, &Room::general(), &data, "a", "bad-1");
    assert!(
        matches!(reply, SendReply::Resume { offset: 0, .. }),
        "{reply:?}"
    );
    upload(&alice, &Room::general(), &data, "a", "bad-1");
    // A Chunk with no upload: refused and closed, its raw bytes never read as frames.
    let mut conn = alice.connect(alice.server.send);
    write(
        &mut conn,
        &SendRequest::Chunk {
            token: token(&alice),
            hash,
            offset: 0,
            length: 6,
        },
    );
    conn.write_all(b"Bye x\n", soon()).unwrap();
    refused(&read(&mut conn), ErrorCode::Malformed, "send Offer first");
    assert!(closed(&mut conn));
    assert!(matches!(alice.send("still here"), SendReply::Thx { .. }));
}

#[test]
fn names_are_display_text_and_a_message_cannot_pose_as_a_file() {
    let server = TestServer::start();
    let alice = session(&server, "alice");
    let data = content(100);
    upload(
        &alice,
        &Room::general(),
        &data,
        "../../etc/pass\u{1b}[2Jwd",
        "n-1",
    );
    let record = &alice.receive(1)[0];
    let notice = FileNotice::parse(&record.body).expect("a file notice");
    assert!(
        !notice.name.contains('/') && !notice.name.contains('\u{1b}'),
        "{:?}",
        notice.name
    );
    refused(
        &alice.send(&record.body),
        ErrorCode::Malformed,
        "cannot start with [file]",
    );
}

#[test]
fn content_is_fetched_only_where_it_was_shared_and_unknown_hashes_look_alike() {
    let server = TestServer::start();
    let alice = session(&server, "alice");
    let bob = session(&server, "bob");
    let carol = session(&server, "carol");
    let dm = Room::direct(
        &gc_protocol::Username::new("alice").unwrap(),
        &gc_protocol::Username::new("bob").unwrap(),
    )
    .unwrap();
    let data = content(5000);
    upload(&alice, &dm, &data, "secret.txt", "dm-1");
    assert!(fetch(&bob, ContentHash::of(&data), 0).is_ok());
    let hidden = fetch(&carol, ContentHash::of(&data), 0).unwrap_err();
    let unknown = fetch(&carol, ContentHash::of(b"never shared"), 0).unwrap_err();
    assert_eq!(
        hidden, unknown,
        "one answer for both, so hashes cannot be probed"
    );
    assert_eq!(hidden.0, ErrorCode::UnknownFile);
    // An offset past the end.
    let (code, _) = fetch(&bob, ContentHash::of(&data), 5001).unwrap_err();
    assert_eq!(code, ErrorCode::Offset);
}

#[test]
fn limits_are_refused_before_any_byte_is_sent() {
    let server = TestServer::start_with(|c| {
        c.max_file_bytes = 10_000;
        c.user_quota_bytes = 15_000;
    });
    let alice = session(&server, "alice");
    let (_, reply) = offer(&alice, &Room::general(), &content(10_001), "big", "l-1");
    refused(&reply, ErrorCode::TooLarge, "at most 10000 bytes");
    upload(&alice, &Room::general(), &content(9_000), "one", "l-2");
    let (_, reply) = offer(&alice, &Room::general(), &content(8_000), "two", "l-3");
    refused(&reply, ErrorCode::Quota, "9000 of your 15000");
    // Announcing content one already shares costs no quota.
    let (_, reply) = offer(&alice, &Room::general(), &content(9_000), "again", "l-4");
    assert!(matches!(reply, SendReply::Thx { .. }), "{reply:?}");
    let full = TestServer::start_with(|c| c.min_free_disk_bytes = u64::MAX / 4);
    let bob = session(&full, "bob");
    let (_, reply) = offer(&bob, &Room::general(), &content(10), "x", "d-1");
    refused(&reply, ErrorCode::DiskFull, "free");
}

#[test]
fn two_users_uploading_the_same_content_at_once_both_finish_and_it_is_stored_once() {
    let server = TestServer::start();
    let alice = session(&server, "alice");
    let bob = session(&server, "bob");
    let data = content(1_500_000);
    let (mut a, ra) = offer(&alice, &Room::general(), &data, "same", "s-a");
    let (mut b, rb) = offer(&bob, &Room::general(), &data, "same", "s-b");
    assert!(matches!(ra, SendReply::Resume { offset: 0, .. }), "{ra:?}");
    assert!(matches!(rb, SendReply::Resume { offset: 0, .. }), "{rb:?}");
    // Interleaved halves.
    send_chunks(&alice, &mut a, &data, 0, 700_000, 100_000);
    send_chunks(&bob, &mut b, &data, 0, 700_000, 100_000);
    send_chunks(&alice, &mut a, &data, 700_000, data.len(), 100_000);
    send_chunks(&bob, &mut b, &data, 700_000, data.len(), 100_000);
    assert!(matches!(read(&mut a), SendReply::Thx { .. }));
    assert!(matches!(read(&mut b), SendReply::Thx { .. }));
    let hex = ContentHash::of(&data).to_string();
    let shard = server.data_dir().join("files/objects").join(&hex[..2]);
    assert_eq!(std::fs::read_dir(&shard).unwrap().count(), 1);
    assert_eq!(
        std::fs::read_dir(server.data_dir().join("files/partial"))
            .unwrap()
            .count(),
        0
    );
    assert!(fetch(&alice, ContentHash::of(&data), 0).unwrap().1 == data);
}

#[test]
fn an_upload_does_not_hold_up_the_uploaders_messages() {
    let server = TestServer::start();
    let alice = session(&server, "alice");
    let data = content(1_000_000);
    let (mut conn, _) = offer(&alice, &Room::general(), &data, "slow", "slow-1");
    send_chunks(&alice, &mut conn, &data, 0, 300_000, 100_000);
    // Mid-upload, with the transfer connection open and silent, messages still go through.
    for i in 0..3 {
        assert!(matches!(
            alice.send(&format!("meanwhile {i}")),
            SendReply::Thx { .. }
        ));
    }
    send_chunks(&alice, &mut conn, &data, 300_000, data.len(), 100_000);
    assert!(matches!(read(&mut conn), SendReply::Thx { .. }));
}
