//! GC/5 file transfers on the sending port (docs/files.md §4): an `Offer` or `Fetch` arriving at
//! a session's listener hands its connection to a transfer thread of its own, so a large file
//! never holds up the session's messages; the thread serves transfers on that connection until
//! it idles out, then closes it.
//!
//! Content is streamed: an upload is written chunk by chunk into the content store's partial
//! file through one bounded buffer, a download read from the object file the same way. Nothing
//! holds a whole file in memory.

use std::collections::HashMap;
use std::io::{self, Read as _, Seek as _, SeekFrom};
use std::net::{Shutdown, TcpStream};
use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use gc_net::Conn;
use gc_plugin::Outcome;
use gc_protocol::files::{FileNotice, display_name};
use gc_protocol::limits::MAX_CHUNK_BYTES;
use gc_protocol::{
    ClientMsgId, ContentHash, ErrorCode, ErrorFrame, Frame as _, ProtocolError, Room, SendReply,
    SendRequest, texts,
};
use gc_store::{ContentStore, FileEntry, StoreError, UNANNOUNCED_GRACE, Upload};
use parking_lot::{Condvar, Mutex};

use crate::listener::wake_for;
use crate::rooms;
use crate::state::{ServerState, Session};

/// Transfers one session may run at once (each on its own connection and thread).
pub const MAX_PER_SESSION: usize = 4;
/// Transfers the server runs at once.
pub const MAX_TRANSFERS: usize = 256;
/// Raw bytes moved per read or write: the one buffer a transfer holds.
const PIECE: usize = 64 * 1024;
/// How long a new `Offer` waits for the connection it takes over (the same user's upload of the
/// same content) to let go of the partial file.
const TAKEOVER_WAIT: Duration = Duration::from_secs(2);
/// The direction labels of `gc_file_transfers`.
const UPLOAD: &str = "upload";
const DOWNLOAD: &str = "download";
/// How often the cleaner looks for abandoned partial uploads.
const CLEAN_EVERY: Duration = Duration::from_secs(3600);

/// The transfers in progress, their connections (cut at shutdown, or when a newer `Offer` takes
/// an upload over) and the cleaner's stop signal.
#[derive(Debug, Default)]
pub struct Transfers {
    inner: Mutex<Inner>,
    /// Notified when an upload lets go of its content, and at stop.
    changed: Condvar,
}

#[derive(Debug, Default)]
struct Inner {
    /// Transfers per session id.
    per_session: HashMap<u64, usize>,
    total: usize,
    /// Uploads by (user key, content): the connection serving each, and its transfer number.
    uploads: HashMap<(String, ContentHash), (u64, TcpStream)>,
    /// Every transfer's connection, by transfer number.
    conns: HashMap<u64, TcpStream>,
    next: u64,
    stopped: bool,
}

/// A transfer's place: given back when dropped (on the transfer thread, or where a thread
/// could not be started).
struct Ticket {
    shared: Arc<ServerState>,
    session: u64,
    number: u64,
}

impl Drop for Ticket {
    fn drop(&mut self) {
        self.shared.metrics.file_transfer_connections.dec();
        let mut s = self.shared.transfers.inner.lock();
        s.total = s.total.saturating_sub(1);
        if let Some(n) = s.per_session.get_mut(&self.session) {
            *n = n.saturating_sub(1);
            if *n == 0 {
                s.per_session.remove(&self.session);
            }
        }
        s.conns.remove(&self.number);
    }
}

impl Transfers {
    /// Takes a place for a transfer of `session` on `tcp`, unless too many run: its number.
    fn admit(&self, session: u64, tcp: &TcpStream) -> Result<u64, &'static str> {
        let mut s = self.inner.lock();
        if s.stopped {
            return Err("the server is shutting down");
        }
        if s.total >= MAX_TRANSFERS {
            return Err(
                "the server is running as many file transfers as it allows; try again \
                        in a moment",
            );
        }
        let mine = s.per_session.get(&session).copied().unwrap_or(0);
        if mine >= MAX_PER_SESSION {
            return Err(
                "this session runs as many file transfers as it may at once; wait for \
                        one to finish",
            );
        }
        s.total += 1;
        *s.per_session.entry(session).or_default() += 1;
        s.next += 1;
        let number = s.next;
        if let Ok(clone) = tcp.try_clone() {
            s.conns.insert(number, clone);
        }
        Ok(number)
    }

    /// Cuts every transfer's connection and wakes the cleaner: shutdown.
    pub fn stop(&self) {
        let mut s = self.inner.lock();
        s.stopped = true;
        for tcp in s.conns.values() {
            let _ = tcp.shutdown(Shutdown::Both);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// Registers the upload of `key` on the connection of transfer `number`. Another connection
    /// uploading the same content for the same user is cut (its client gave up on it, or was
    /// killed and started again), and waited for up to [`TAKEOVER_WAIT`].
    fn claim(&self, key: &(String, ContentHash), number: u64, tcp: &TcpStream) {
        let mut s = self.inner.lock();
        let deadline = Instant::now() + TAKEOVER_WAIT;
        while let Some((owner, old)) = s.uploads.get(key) {
            if *owner == number {
                return;
            }
            let _ = old.shutdown(Shutdown::Both);
            if self.changed.wait_until(&mut s, deadline).timed_out() {
                break;
            }
        }
        if let Ok(clone) = tcp.try_clone() {
            s.uploads.insert(key.clone(), (number, clone));
        }
    }

    /// The upload of `key` on transfer `number` is over (its [`Upload`] dropped).
    fn release(&self, key: &(String, ContentHash), number: u64) {
        let mut s = self.inner.lock();
        if s.uploads
            .get(key)
            .is_some_and(|(owner, _)| *owner == number)
        {
            s.uploads.remove(key);
        }
        drop(s);
        self.changed.notify_all();
    }

    /// Waits up to `timeout` for [`Transfers::stop`]; whether it came.
    fn wait_stop(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut s = self.inner.lock();
        while !s.stopped {
            if self.changed.wait_until(&mut s, deadline).timed_out() {
                break;
            }
        }
        s.stopped
    }
}

/// Hands `conn`, whose first request is `request` (an `Offer` or `Fetch` of `session`), to a
/// transfer thread. Too many transfers, or no thread: the client is told, and the connection
/// closed.
pub(crate) fn start(
    shared: &Arc<ServerState>,
    session: Arc<Session>,
    mut conn: Conn,
    request: SendRequest,
) {
    let refuse = |conn: &mut Conn, code, text: &str| {
        let mut out = Vec::new();
        shared.metrics.error(code);
        SendReply::Err(ErrorFrame::new(code, text)).encode(&mut out);
        let _ = conn.write_all(&out, shared.io_deadline());
        let _ = conn.get_ref().tcp().shutdown(Shutdown::Both);
    };
    let number = match shared.transfers.admit(session.id, conn.get_ref().tcp()) {
        Ok(number) => number,
        Err(text) => {
            tracing::info!(user = %session.user, "file transfer refused: {text}");
            refuse(&mut conn, ErrorCode::Full, text);
            return;
        }
    };
    shared.metrics.file_transfer_connections.inc();
    let ticket = Ticket {
        shared: Arc::clone(shared),
        session: session.id,
        number,
    };
    let name = format!("xfer-{}", session.label());
    let spawned = shared.conn_threads.spawn(name, move || {
        // A file must not slow the conversation: heartbeat and delivery threads come first.
        gc_net::lower_thread_priority();
        serve(&ticket.shared, &session, &mut conn, request, ticket.number);
        let _ = conn.get_ref().tcp().shutdown(Shutdown::Both);
        drop(ticket);
    });
    // No thread: the closure (with the ticket and the connection) is dropped, which gives the
    // place back and closes the connection.
    if let Err(e) = spawned {
        tracing::error!("cannot start a transfer thread: {e}");
    }
}

/// What to do after a transfer.
enum Next {
    /// Wait for the next `Offer` or `Fetch` on this connection.
    Continue,
    /// Close the connection (the stream is out of step, or the peer is gone).
    Close,
}

/// Serves transfers on `conn` until it idles out, closes, or goes out of step.
fn serve(
    shared: &ServerState,
    session: &Session,
    conn: &mut Conn,
    first: SendRequest,
    number: u64,
) {
    let mut next = Some(first);
    let mut buf = Vec::new();
    loop {
        let request = match next.take() {
            Some(r) => r,
            None => {
                let idle = Instant::now() + shared.config.idle_timeout;
                let line = match conn.read_line_idle(idle, Some(shared.config.io_timeout)) {
                    Ok(line) => line,
                    Err(_) => return,
                };
                match SendRequest::parse(line) {
                    Ok(r) => r,
                    Err(e) => {
                        reply_err(shared, conn, e.code(), &e.to_string());
                        return;
                    }
                }
            }
        };
        if shared.stopping() {
            reply_err(
                shared,
                conn,
                ErrorCode::ShuttingDown,
                "the server is shutting down; resume the transfer when it is back",
            );
            return;
        }
        if *request.token() != session.token || session.is_ended() {
            reply_err(
                shared,
                conn,
                ErrorCode::Session,
                "unknown or ended session for this connection; log in again",
            );
            return;
        }
        let after = match request {
            SendRequest::Offer {
                room,
                hash,
                size,
                name,
                client_msg_id,
                ..
            } => {
                let offer = Offer {
                    room,
                    hash,
                    size,
                    name,
                    client_msg_id,
                };
                upload(shared, session, conn, &offer, number, &mut buf)
            }
            SendRequest::Fetch { hash, offset, .. } => {
                download(shared, session, conn, hash, offset, &mut buf)
            }
            SendRequest::Chunk { .. } => {
                reply_err(
                    shared,
                    conn,
                    ErrorCode::Malformed,
                    "a Chunk with no upload in progress on this connection; send Offer first",
                );
                Next::Close
            }
            _ => {
                reply_err(
                    shared,
                    conn,
                    ErrorCode::Malformed,
                    "this connection carries file transfers only (Offer, Chunk, Fetch); send \
                     other requests on another connection",
                );
                Next::Close
            }
        };
        if buf.capacity() > PIECE {
            buf = Vec::new();
        }
        if let Next::Close = after {
            return;
        }
    }
}

fn reply_err(shared: &ServerState, conn: &mut Conn, code: ErrorCode, text: &str) {
    shared.metrics.error(code);
    let mut out = Vec::new();
    SendReply::Err(ErrorFrame::new(code, text)).encode(&mut out);
    let _ = conn.write_all(&out, shared.io_deadline());
}

fn reply(shared: &ServerState, conn: &mut Conn, reply: &SendReply) -> Next {
    let mut out = Vec::new();
    reply.encode(&mut out);
    match conn.write_all(&out, shared.io_deadline()) {
        Ok(()) => Next::Continue,
        Err(_) => Next::Close,
    }
}

/// An upload's announcement.
struct Offer {
    room: Room,
    hash: ContentHash,
    size: u64,
    name: String,
    client_msg_id: ClientMsgId,
}

impl Offer {
    /// The record that announces the file, its name made display text.
    fn record_text(&self) -> String {
        FileNotice {
            name: display_name(&self.name),
            size: self.size,
            hash: self.hash,
        }
        .text()
    }
}

/// The answer to an `Offer` that refuses it before any byte moves, in the order of
/// docs/files.md §4; `Ok(Some(reply))` when the record exists already (a retry after a lost
/// `Thx`).
fn check_offer(
    shared: &ServerState,
    session: &Session,
    files: &ContentStore,
    offer: &Offer,
) -> Result<Option<SendReply>, (ErrorCode, String)> {
    let user = &session.user;
    if let Some((id, timestamp)) = shared.store.lookup_msgid(user, &offer.client_msg_id) {
        // Stored before: make sure the index has its line (a crash between the two), answer
        // as the first time.
        let entry = FileEntry {
            hash: offer.hash,
            size: offer.size,
            username: user.clone(),
            timestamp,
            id,
            room: offer.room.clone(),
        };
        if files.size_of(&offer.hash) == Some(offer.size)
            && let Err(e) = files.announce(&entry)
        {
            tracing::error!(user = %user, "cannot index a shared file: {e}");
        }
        return Ok(Some(SendReply::Thx { id, timestamp }));
    }
    rooms::may_post(shared, session, &offer.room).map_err(|r| match r.reply(session) {
        SendReply::Err(e) => (e.code, e.text),
        _ => (ErrorCode::Forbidden, "you may not post there".to_owned()),
    })?;
    let max = shared.config.max_file_bytes;
    if offer.size > max {
        return Err((
            ErrorCode::TooLarge,
            format!(
                "the file is {} bytes; this server takes files of at most {max} bytes",
                offer.size
            ),
        ));
    }
    let quota = shared.config.user_quota_bytes;
    let have = files.size_of(&offer.hash);
    let announced_by_user = files
        .announcements(&offer.hash)
        .map_err(index_failed)?
        .iter()
        .any(|e| e.username.key() == user.key());
    if quota > 0 && !announced_by_user {
        let used = files.quota_used(user).map_err(index_failed)?;
        if used.saturating_add(offer.size) > quota {
            return Err((
                ErrorCode::Quota,
                format!(
                    "your shared files take {used} of your {quota} bytes; this one ({} bytes) \
                     does not fit; ask an operator to remove old ones",
                    offer.size
                ),
            ));
        }
    }
    if have.is_none() {
        // What a partial file kept from before (a lost connection, a full disk) holds is on the
        // disk already: only the rest must fit.
        let kept = files.partial_size(user, &offer.hash);
        let kept = if kept <= offer.size { kept } else { 0 };
        let missing = offer.size - kept;
        let reserve = shared.config.min_free_disk_bytes;
        match free_bytes(files.root()) {
            Ok(free) if free < missing.saturating_add(reserve) => {
                let what = if kept > 0 {
                    format!(
                        "the {missing} bytes this file still needs ({kept} of its {} are kept \
                         from before)",
                        offer.size
                    )
                } else {
                    format!("this file ({} bytes)", offer.size)
                };
                return Err((
                    ErrorCode::DiskFull,
                    format!(
                        "the server's disk has {free} bytes free and keeps {reserve} in reserve; \
                         {what} does not fit; tell the operator, and send it again once they \
                         have freed space"
                    ),
                ));
            }
            Ok(_) => {}
            Err(e) => tracing::warn!("cannot read the free space of the shared files' disk: {e}"),
        }
    }
    // Plugins see the offer as the record it will become (`[file] name (size) sha256:…`), in
    // `on_message_received`, before any byte moves: one may refuse a file by its size or type
    // as it refuses a message. The record's text is the server's: a rewrite is not taken.
    let text = offer.record_text();
    let hook_started = Instant::now();
    let outcome = shared
        .plugins
        .message_received(user.as_str(), offer.room.as_str(), &text);
    shared.metrics.hook(
        crate::metrics::HookKind::MessageReceived,
        hook_started.elapsed(),
    );
    if let Outcome::Block { plugin, reason } = outcome {
        tracing::info!(user = %user, plugin, "file blocked: {reason}");
        return Err((ErrorCode::Blocked, reason));
    }
    if let Err(wait) = shared.rate.check(&user.key(), Instant::now()) {
        let c = &shared.config;
        return Err((
            ErrorCode::RateLimited,
            texts::rate_limited(c.rate_burst, c.rate_per_sec, wait),
        ));
    }
    Ok(None)
}

/// The answer when the index of shared files cannot be read (the database is away): `internal`,
/// as for a message the store cannot take.
fn index_failed(e: StoreError) -> (ErrorCode, String) {
    tracing::error!("cannot read the index of shared files: {e}");
    (
        ErrorCode::Internal,
        "the server cannot read its index of shared files right now; try again later".into(),
    )
}

/// Free bytes for an unprivileged user on the file system holding `path`.
fn free_bytes(path: &Path) -> io::Result<u64> {
    let st = rustix::fs::statvfs(path)?;
    Ok(st.f_bavail.saturating_mul(st.f_frsize))
}

/// Whether `e` says the disk is full: the files directory's, or the database's.
fn is_disk_full(e: &StoreError) -> bool {
    match e {
        StoreError::Io { source, .. } => matches!(
            source.kind(),
            io::ErrorKind::StorageFull | io::ErrorKind::QuotaExceeded
        ),
        StoreError::DatabaseFull { .. } => true,
        _ => false,
    }
}

/// Serves one `Offer`: checks, `Resume`, the chunks, then the record and `Thx`.
fn upload(
    shared: &ServerState,
    session: &Session,
    conn: &mut Conn,
    offer: &Offer,
    number: u64,
    buf: &mut Vec<u8>,
) -> Next {
    let files = &shared.files;
    match check_offer(shared, session, files, offer) {
        Ok(Some(thx)) => {
            shared.metrics.transfer(UPLOAD, "completed");
            return reply(shared, conn, &thx);
        }
        Ok(None) => {}
        Err((code, text)) => {
            tracing::info!(user = %session.user, hash = %offer.hash, "upload refused: {text}");
            shared.metrics.transfer(UPLOAD, "refused");
            reply_err(shared, conn, code, &text);
            return Next::Continue;
        }
    }
    let key = (session.user.key(), offer.hash);
    shared.transfers.claim(&key, number, conn.get_ref().tcp());
    let result = receive(shared, session, conn, offer, buf);
    shared.transfers.release(&key, number);
    match result {
        Ok(upload) => finish(shared, session, conn, offer, upload),
        Err(Failed::Reply(code, text)) => {
            tracing::info!(user = %session.user, hash = %offer.hash, "upload ended: {text}");
            shared.metrics.transfer(UPLOAD, "failed");
            reply_err(shared, conn, code, &text);
            Next::Close
        }
        Err(Failed::Gone) => {
            shared.metrics.transfer(UPLOAD, "interrupted");
            Next::Close
        }
    }
}

/// Why an upload stopped before its end.
enum Failed {
    /// Tell the client, then close.
    Reply(ErrorCode, String),
    /// The connection is gone (closed, timed out, cut).
    Gone,
}

fn store_failed(e: &StoreError) -> Failed {
    if is_disk_full(e) {
        tracing::error!("the shared files' disk is full: {e}");
        return Failed::Reply(
            ErrorCode::DiskFull,
            "the server's disk is full; what arrived is kept: tell the operator, and send the \
             file again once they have freed space (it goes on from where it stopped)"
                .into(),
        );
    }
    match e {
        StoreError::UploadSize {
            announced, stored, ..
        } => Failed::Reply(
            ErrorCode::Corrupt,
            format!("content with this hash is {stored} bytes, not {announced}"),
        ),
        StoreError::Corrupt { .. } => Failed::Reply(
            ErrorCode::Corrupt,
            "the content's SHA-256 is not the hash announced; nothing was kept; send the file \
             again"
                .into(),
        ),
        StoreError::UploadBusy { .. } => Failed::Reply(
            ErrorCode::Full,
            "another connection is uploading this file for you; try again in a moment".into(),
        ),
        other => {
            tracing::error!("a shared file could not be stored: {other}");
            Failed::Reply(
                ErrorCode::Internal,
                "the server could not store the file; what arrived is kept: resume later".into(),
            )
        }
    }
}

/// Begins (or resumes) the upload, says where to start, and takes chunks until every byte is
/// there.
fn receive(
    shared: &ServerState,
    session: &Session,
    conn: &mut Conn,
    offer: &Offer,
    buf: &mut Vec<u8>,
) -> Result<Upload, Failed> {
    let mut upload = shared
        .files
        .begin(&session.user, offer.hash, offer.size)
        .map_err(|e| store_failed(&e))?;
    if upload.is_complete() {
        return Ok(upload);
    }
    if let Next::Close = reply(
        shared,
        conn,
        &SendReply::Resume {
            hash: offer.hash,
            offset: upload.offset(),
        },
    ) {
        return Err(Failed::Gone);
    }
    buf.resize(PIECE, 0);
    while !upload.is_complete() {
        // Chunks come back to back: each header within the I/O timeout of the last.
        let line = match conn.read_line(shared.io_deadline()) {
            Ok(line) => line,
            Err(ProtocolError::TooLong { .. }) => {
                return Err(Failed::Reply(ErrorCode::TooLong, "frame too long".into()));
            }
            Err(_) => return Err(Failed::Gone),
        };
        let (hash, offset, length) = match SendRequest::parse(line) {
            Ok(SendRequest::Chunk {
                token,
                hash,
                offset,
                length,
            }) if token == session.token => (hash, offset, length),
            Ok(SendRequest::Chunk { .. }) => {
                return Err(Failed::Reply(
                    ErrorCode::Session,
                    "a Chunk of another session on this upload's connection".into(),
                ));
            }
            Ok(_) => {
                return Err(Failed::Reply(
                    ErrorCode::Malformed,
                    "an upload is in progress on this connection: only Chunk frames until its \
                     last byte"
                        .into(),
                ));
            }
            Err(e) => return Err(Failed::Reply(e.code(), e.to_string())),
        };
        if hash != offer.hash {
            return Err(Failed::Reply(
                ErrorCode::Malformed,
                format!("a Chunk of {hash} on the upload of {}", offer.hash),
            ));
        }
        if offset != upload.offset() {
            return Err(Failed::Reply(
                ErrorCode::Offset,
                format!(
                    "the chunk starts at {offset}, the upload is at {}; send Offer again to \
                     resume",
                    upload.offset()
                ),
            ));
        }
        if length == 0 || length > MAX_CHUNK_BYTES {
            return Err(Failed::Reply(
                ErrorCode::Malformed,
                format!("a chunk has 1 to {MAX_CHUNK_BYTES} bytes, not {length}"),
            ));
        }
        if offset.saturating_add(length) > offer.size {
            return Err(Failed::Reply(
                ErrorCode::TooLarge,
                format!(
                    "the chunk ends at byte {}, past the {} announced",
                    offset.saturating_add(length),
                    offer.size
                ),
            ));
        }
        let deadline = shared.io_deadline();
        let mut left = length;
        let mut at = offset;
        while left > 0 {
            let want = usize::try_from(left.min(PIECE as u64)).unwrap_or(PIECE);
            let n = conn
                .read_raw(&mut buf[..want], deadline)
                .map_err(|_| Failed::Gone)?;
            upload.write(at, &buf[..n]).map_err(|e| store_failed(&e))?;
            shared.metrics.file_bytes_received.inc_by(n as u64);
            at += n as u64;
            left -= n as u64;
        }
    }
    Ok(upload)
}

/// Every byte is there: verify and keep the content, store the record, index it, answer `Thx`.
fn finish(
    shared: &ServerState,
    session: &Session,
    conn: &mut Conn,
    offer: &Offer,
    upload: Upload,
) -> Next {
    // Any early return is a failure; the end counts a completion.
    let failed = || shared.metrics.transfer(UPLOAD, "failed");
    if let Err(e) = upload.finish() {
        failed();
        let Failed::Reply(code, text) = store_failed(&e) else {
            return Next::Close;
        };
        tracing::warn!(user = %session.user, hash = %offer.hash, "upload failed: {text}");
        reply_err(shared, conn, code, &text);
        return Next::Close;
    }
    let user = &session.user;
    let text = offer.record_text();
    let started = Instant::now();
    let result = shared
        .store
        .append_many_in(&[(&offer.room, user, &offer.client_msg_id, text.as_str())])
        .into_iter()
        .next();
    shared.metrics.store_commit.observe(started.elapsed());
    let appended = match result {
        Some(Ok(a)) => a,
        Some(Err(e)) => {
            failed();
            shared.metrics.store_wrote(false);
            tracing::error!(user = %user, "cannot store a shared file's record: {e}");
            // The message store took nothing (a failed write is undone), and the content is
            // kept: sending the file again stores the record and moves no byte.
            let (code, text) = if is_disk_full(&e) {
                (
                    ErrorCode::DiskFull,
                    "the server's disk is full: the file arrived and is kept, but its message \
                     could not be stored; tell the operator, and send the file again once they \
                     have freed space (no byte needs to move again)",
                )
            } else {
                (
                    ErrorCode::Internal,
                    "the file is kept but its message could not be stored; send it again later",
                )
            };
            reply_err(shared, conn, code, text);
            return Next::Close;
        }
        None => {
            failed();
            return Next::Close;
        }
    };
    shared.metrics.store_wrote(true);
    let entry = FileEntry {
        hash: offer.hash,
        size: offer.size,
        username: user.clone(),
        timestamp: appended.timestamp,
        id: appended.id,
        room: offer.room.clone(),
    };
    if let Err(e) = shared.files.announce(&entry) {
        // The record is stored: the retried `Offer` (same client-msg-id) adds the line.
        failed();
        tracing::error!(user = %user, "cannot index a shared file: {e}");
        reply_err(
            shared,
            conn,
            ErrorCode::Internal,
            "the file and its message are stored but not indexed; send Offer again",
        );
        return Next::Close;
    }
    tracing::info!(user = %user, room = %offer.room, hash = %offer.hash, size = offer.size, id = appended.id, "file shared");
    shared.metrics.transfer(UPLOAD, "completed");
    let next = reply(
        shared,
        conn,
        &SendReply::Thx {
            id: appended.id,
            timestamp: appended.timestamp,
        },
    );
    if !appended.duplicate {
        shared.metrics.messages_stored.inc();
        wake_for(shared, appended.id, std::slice::from_ref(&offer.room), &[]);
    }
    next
}

/// Serves one `Fetch`: `Data` and the content from `offset`, or `Err unknown-file` for content
/// this session may not see (the same answer as for content that does not exist).
fn download(
    shared: &ServerState,
    session: &Session,
    conn: &mut Conn,
    hash: ContentHash,
    offset: u64,
    buf: &mut Vec<u8>,
) -> Next {
    let (next, outcome) = send_file(shared, session, conn, hash, offset, buf);
    shared.metrics.transfer(DOWNLOAD, outcome);
    next
}

/// [`download`]'s work, and how it ended (the outcome label of `gc_file_transfers`).
fn send_file(
    shared: &ServerState,
    session: &Session,
    conn: &mut Conn,
    hash: ContentHash,
    offset: u64,
    buf: &mut Vec<u8>,
) -> (Next, &'static str) {
    let unknown = |conn: &mut Conn| {
        reply_err(
            shared,
            conn,
            ErrorCode::UnknownFile,
            "no file with this hash is shared where you can read",
        );
        Next::Continue
    };
    let announcements = match shared.files.announcements(&hash) {
        Ok(entries) => entries,
        Err(e) => {
            let (code, text) = index_failed(e);
            reply_err(shared, conn, code, &text);
            return (Next::Continue, "failed");
        }
    };
    let visible = announcements
        .iter()
        .any(|e| rooms::may_read(shared, session, &e.room).is_ok());
    if !visible {
        return (unknown(conn), "refused");
    }
    let (mut file, size) = match shared.files.open_object(&hash) {
        Ok(Some(found)) => found,
        Ok(None) => return (unknown(conn), "refused"),
        Err(e) => {
            tracing::error!("cannot open a shared file: {e}");
            reply_err(
                shared,
                conn,
                ErrorCode::Internal,
                "the server could not read the file; try again later",
            );
            return (Next::Continue, "failed");
        }
    };
    if offset > size {
        reply_err(
            shared,
            conn,
            ErrorCode::Offset,
            &format!("the file has {size} bytes; you asked from byte {offset}"),
        );
        return (Next::Continue, "refused");
    }
    if file.seek(SeekFrom::Start(offset)).is_err() {
        reply_err(
            shared,
            conn,
            ErrorCode::Internal,
            "the server could not read the file; try again later",
        );
        return (Next::Continue, "failed");
    }
    if let Next::Close = reply(shared, conn, &SendReply::Data { hash, size, offset }) {
        return (Next::Close, "interrupted");
    }
    buf.resize(PIECE, 0);
    let mut left = size - offset;
    while left > 0 {
        let want = usize::try_from(left.min(PIECE as u64)).unwrap_or(PIECE);
        let n = match file.read(&mut buf[..want]) {
            Ok(0) | Err(_) => {
                // The object shrank under us (removed by an operator): the client sees the
                // stream end early and asks again.
                tracing::error!(%hash, "a shared file ended before its size while being sent");
                return (Next::Close, "failed");
            }
            Ok(n) => n,
        };
        if conn.write_all(&buf[..n], shared.io_deadline()).is_err() {
            return (Next::Close, "interrupted");
        }
        shared.metrics.file_bytes_sent.inc_by(n as u64);
        left -= n as u64;
    }
    tracing::debug!(user = %session.user, %hash, from = offset, size, "file sent");
    (Next::Continue, "completed")
}

/// Starts the thread that removes partial uploads abandoned for longer than the setting, once
/// an hour (and once at start), until [`Transfers::stop`].
pub(crate) fn start_cleaner(shared: &Arc<ServerState>) -> Result<(), crate::error::ServerError> {
    let sh = Arc::clone(shared);
    shared
        .session_threads
        .spawn("files-cleaner".into(), move || {
            loop {
                match sh.files.collect_garbage(
                    SystemTime::now(),
                    sh.config.abandoned_upload,
                    UNANNOUNCED_GRACE,
                    false,
                ) {
                    Ok(report) => {
                        for f in &report.abandoned {
                            tracing::info!(hash = %f.hash, bytes = f.size, "removed an abandoned partial upload");
                        }
                        for f in &report.unannounced {
                            tracing::info!(hash = %f.hash, bytes = f.size, "removed a shared file no message announces");
                        }
                    }
                    Err(e) => tracing::warn!("cannot clean up the shared files: {e}"),
                }
                if sh.transfers.wait_stop(CLEAN_EVERY) {
                    return;
                }
            }
        })
}

/// Whether a `Msg` body would pass for a shared file's record.
pub(crate) fn looks_like_file_notice(body: &str) -> bool {
    body.starts_with(gc_protocol::files::NOTICE_PREFIX)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_full_database_counts_as_a_full_disk() {
        let database_full = StoreError::DatabaseFull {
            store: "postgres://gc@db/gc".into(),
            cause: "store a file's record: No space left on device".into(),
        };
        assert!(is_disk_full(&database_full));
        let disk_full = StoreError::Io {
            action: "write to",
            path: "files/x.part".into(),
            source: io::ErrorKind::StorageFull.into(),
        };
        assert!(is_disk_full(&disk_full));
        let refused = StoreError::Database {
            store: "postgres://gc@db/gc".into(),
            cause: "a violated constraint".into(),
        };
        assert!(!is_disk_full(&refused));
    }
}
