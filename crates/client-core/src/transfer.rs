//! File transfers (GC/5, docs/files.md): each upload or download runs on a thread of its own,
//! over a connection of its own to the server's sending port, so a large file never holds up
//! the session's messages. Both stream through one bounded buffer; both resume after a lost
//! connection (and a restart of either side) from what the other side already has; both check
//! the content's SHA-256.
//!
//! Progress and the end of each transfer arrive as [`Event::Transfer`].

use std::collections::HashMap;
use std::fs::File;
use std::io::{self, Read as _, Seek as _, SeekFrom, Write as _};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use gc_net::{Conn, Registration, Unblocker};
use gc_protocol::files::local_file_name;
use gc_protocol::limits::{MAX_CHUNK_BYTES, MAX_FILE_NAME_BYTES};
use gc_protocol::{
    ClientMsgId, ContentHash, ErrorCode, Frame as _, Room, SendReply, SendRequest, SessionToken,
};
use parking_lot::{Condvar, Mutex};
use sha2::{Digest as _, Sha256};

use crate::control::SessionPhase;
use crate::error::ClientError;
use crate::event::Event;
use crate::state::ClientState;

/// Raw bytes read or written at a time: the one buffer a transfer holds.
const PIECE: usize = 64 * 1024;
/// Progress events at most this often per transfer.
const PROGRESS_EVERY: Duration = Duration::from_millis(100);
/// Connections tried for one transfer before it gives up (each resumes where the last stopped).
const ATTEMPTS: u32 = 8;
/// The wait before the next attempt: doubles from this, up to [`MAX_RETRY_WAIT`].
const FIRST_RETRY_WAIT: Duration = Duration::from_millis(250);
const MAX_RETRY_WAIT: Duration = Duration::from_secs(8);
/// How long a transfer waits for a session before it gives up.
const SESSION_WAIT: Duration = Duration::from_secs(60);

/// Which way a transfer goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// To the server.
    Upload,
    /// From the server.
    Download,
}

/// Where a transfer stands.
#[derive(Debug)]
pub enum TransferEvent {
    /// Bytes moved so far (`done` of `total`; an upload first hashes its file: `hashing`).
    Progress {
        /// The transfer.
        id: u64,
        /// Which way.
        direction: Direction,
        /// The file's name (for display).
        name: String,
        /// Bytes done.
        done: u64,
        /// Bytes in all.
        total: u64,
        /// Still reading the file to hash it (an upload's first step).
        hashing: bool,
    },
    /// An upload is stored and announced by record `record_id`.
    Uploaded {
        /// The transfer.
        id: u64,
        /// The file's name.
        name: String,
        /// Its content hash.
        hash: ContentHash,
        /// Its size.
        size: u64,
        /// The record that announces it.
        record_id: u64,
        /// How many bytes the server held already when the upload began (what an earlier,
        /// interrupted upload of it left; they were not sent again): 0 for an upload from the
        /// start, `size` when the content was there whole.
        resumed_from: u64,
    },
    /// A download is complete, verified, and saved at `path`.
    Downloaded {
        /// The transfer.
        id: u64,
        /// Its content hash.
        hash: ContentHash,
        /// Where it was saved.
        path: PathBuf,
        /// Its size.
        size: u64,
        /// How many bytes a `.part` from before held when the download began (it went on from
        /// there): 0 for a download from the start.
        resumed_from: u64,
    },
    /// A transfer failed for good (what was done is kept for a later resume where that helps).
    Failed {
        /// The transfer.
        id: u64,
        /// Which way.
        direction: Direction,
        /// The file's name.
        name: String,
        /// Why.
        error: ClientError,
    },
    /// A transfer was cancelled ([`crate::Client::cancel_transfer`]).
    Cancelled {
        /// The transfer.
        id: u64,
        /// Which way.
        direction: Direction,
        /// The file's name.
        name: String,
    },
}

/// A transfer's handle: its thread and its cancel switch.
#[derive(Debug)]
struct Running {
    thread: JoinHandle<()>,
    cancel: Arc<Cancel>,
}

/// A transfer's cancel switch: the flag its loops check, its connection (cut at once), and a
/// condvar for its waits between attempts.
#[derive(Debug, Default)]
pub(crate) struct Cancel {
    flag: AtomicBool,
    sockets: Unblocker,
    waiting: Mutex<()>,
    cv: Condvar,
}

impl Cancel {
    fn cancel(&self) {
        self.flag.store(true, Ordering::Release);
        self.sockets.stop();
        let _guard = self.waiting.lock();
        self.cv.notify_all();
    }

    fn is_set(&self) -> bool {
        self.flag.load(Ordering::Acquire)
    }

    /// Waits `timeout` unless cancelled first; whether it was cancelled.
    fn wait(&self, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.waiting.lock();
        while !self.is_set() {
            if self.cv.wait_until(&mut guard, deadline).timed_out() {
                break;
            }
        }
        self.is_set()
    }
}

/// The transfers of one client.
#[derive(Debug, Default)]
pub(crate) struct Transfers {
    running: Mutex<HashMap<u64, Running>>,
    next: Mutex<u64>,
}

impl Transfers {
    /// Starts `job` on a thread of its own: its id.
    pub(crate) fn start(
        &self,
        shared: &Arc<ClientState>,
        direction: Direction,
        job: impl FnOnce(&ClientState, u64, &Cancel) + Send + 'static,
    ) -> Result<u64, ClientError> {
        let id = {
            let mut next = self.next.lock();
            *next += 1;
            *next
        };
        let cancel = Arc::new(Cancel::default());
        let name = match direction {
            Direction::Upload => format!("gc-upload-{id}"),
            Direction::Download => format!("gc-download-{id}"),
        };
        let (sh, c) = (Arc::clone(shared), Arc::clone(&cancel));
        let thread = std::thread::Builder::new()
            .name(name.clone())
            .spawn(move || {
                // The screen and the chat's own exchanges come first.
                gc_net::lower_thread_priority();
                job(&sh, id, &c);
            })
            .map_err(|source| ClientError::Thread { name, source })?;
        let mut running = self.running.lock();
        // Join what has finished, so the map stays as small as what runs.
        let done: Vec<u64> = running
            .iter()
            .filter(|(_, r)| r.thread.is_finished())
            .map(|(id, _)| *id)
            .collect();
        for id in done {
            if let Some(r) = running.remove(&id) {
                let _ = r.thread.join();
            }
        }
        running.insert(id, Running { thread, cancel });
        Ok(id)
    }

    /// Cancels transfer `id`; whether it was running.
    pub(crate) fn cancel(&self, id: u64) -> bool {
        match self.running.lock().get(&id) {
            Some(r) if !r.thread.is_finished() => {
                r.cancel.cancel();
                true
            }
            _ => false,
        }
    }

    /// Cancels every transfer and joins its thread (the client closes).
    pub(crate) fn stop(&self) {
        let running: Vec<Running> = self.running.lock().drain().map(|(_, r)| r).collect();
        for r in &running {
            r.cancel.cancel();
        }
        for r in running {
            if r.thread.join().is_err() {
                tracing::error!("a transfer thread panicked");
            }
        }
    }
}

/// Why one attempt stopped.
enum Stop {
    /// For good, with this error.
    Fail(ClientError),
    /// The connection broke: try again (resuming).
    Retry(String),
    /// Cancelled.
    Cancelled,
}

fn file_error(action: &'static str, path: &Path, source: io::Error) -> ClientError {
    ClientError::File {
        action,
        path: path.to_owned(),
        source,
    }
}

/// Waits for a GC/5 session: its token and the server's sending port.
fn session(shared: &ClientState, cancel: &Cancel) -> Result<(SessionToken, SocketAddr), Stop> {
    let deadline = Instant::now() + SESSION_WAIT;
    let mut ctl = shared.ctl();
    loop {
        if cancel.is_set() {
            return Err(Stop::Cancelled);
        }
        if ctl.is_closing() || ctl.stopped_trying() {
            return Err(Stop::Fail(ClientError::Closed));
        }
        ctl.check_files().map_err(Stop::Fail)?;
        if let SessionPhase::Active { token, .. } = ctl.session()
            && ctl.files() == Some(true)
            && let Some(instance) = shared.instance()
        {
            let addr = SocketAddr::new(instance.ip, shared.config.server_ports.send);
            return Ok((token.clone(), addr));
        }
        if Instant::now() >= deadline {
            return Err(Stop::Retry("not logged in".into()));
        }
        // Woken by every state change; bounded so a cancel is seen soon.
        shared.wait_until(
            &mut ctl,
            (Instant::now() + PROGRESS_EVERY * 5).min(deadline),
        );
    }
}

/// Opens a connection for a transfer, cut by `cancel` while its registration lives.
fn connect(
    shared: &ClientState,
    addr: SocketAddr,
    cancel: &Cancel,
) -> Result<(Conn, Registration), Stop> {
    let opened = shared
        .connector
        .open(addr, shared.server_check(), &cancel.sockets);
    match opened {
        Ok(opened) => Ok(opened),
        Err(e) if cancel.is_set() => {
            tracing::debug!("transfer connection after cancel: {e}");
            Err(Stop::Cancelled)
        }
        Err(e) => Err(Stop::Retry(e.to_string())),
    }
}

/// Sends `bytes` (frames or content) within the I/O timeout.
fn write(shared: &ClientState, conn: &mut Conn, bytes: &[u8], cancel: &Cancel) -> Result<(), Stop> {
    conn.write_all(bytes, shared.connector.deadline())
        .map_err(|e| gone(cancel, &e.to_string()))
}

fn gone(cancel: &Cancel, why: &str) -> Stop {
    if cancel.is_set() {
        Stop::Cancelled
    } else {
        Stop::Retry(why.to_owned())
    }
}

/// Reads the server's reply within the I/O timeout (`wait`: longer, for a reply that comes after
/// the server has checked a whole upload).
fn read(
    shared: &ClientState,
    conn: &mut Conn,
    wait: Duration,
    cancel: &Cancel,
) -> Result<SendReply, Stop> {
    let deadline = Instant::now() + shared.config.io_timeout.max(wait);
    conn.read::<SendReply>(deadline)
        .map_err(|e| gone(cancel, &e.to_string()))
}

/// What a server's `Err` means for a transfer: try again later, or stop.
fn refusal(code: ErrorCode, text: String) -> Stop {
    match code {
        // The session ended under us, the server stops, or is busy: the next attempt logs in
        // again or waits. `internal` too (its database away, a write that failed), as a message
        // is sent again: an upload's retry carries the same client-msg-id, so a record stored
        // before the failure is answered, not stored twice.
        ErrorCode::Session
        | ErrorCode::ShuttingDown
        | ErrorCode::Full
        | ErrorCode::RateLimited
        | ErrorCode::Internal => Stop::Retry(text),
        code => Stop::Fail(ClientError::FileRefused { code, text }),
    }
}

/// Throttled progress reports.
struct Progress<'a> {
    shared: &'a ClientState,
    id: u64,
    direction: Direction,
    name: &'a str,
    total: u64,
    last: Option<Instant>,
}

impl Progress<'_> {
    fn report(&mut self, done: u64, hashing: bool) {
        let now = Instant::now();
        if done < self.total && self.last.is_some_and(|t| now - t < PROGRESS_EVERY) {
            return;
        }
        self.last = Some(now);
        self.shared.emit(Event::Transfer(TransferEvent::Progress {
            id: self.id,
            direction: self.direction,
            name: self.name.to_owned(),
            done,
            total: self.total,
            hashing,
        }));
    }
}

/// Runs `attempt` until it succeeds, fails for good, is cancelled, or has been tried
/// [`ATTEMPTS`] times; waits between attempts (cut short by a cancel).
fn with_retries<T>(
    cancel: &Cancel,
    mut attempt: impl FnMut() -> Result<T, Stop>,
) -> Result<T, Option<ClientError>> {
    let mut wait = FIRST_RETRY_WAIT;
    let mut last = String::new();
    for n in 1..=ATTEMPTS {
        match attempt() {
            Ok(v) => return Ok(v),
            Err(Stop::Fail(e)) => return Err(Some(e)),
            Err(Stop::Cancelled) => return Err(None),
            Err(Stop::Retry(why)) => {
                tracing::info!("transfer attempt {n} of {ATTEMPTS} stopped: {why}");
                last = why;
            }
        }
        if cancel.wait(wait) {
            return Err(None);
        }
        wait = (wait * 2).min(MAX_RETRY_WAIT);
    }
    Err(Some(ClientError::TransferGaveUp {
        attempts: ATTEMPTS,
        last,
    }))
}

/// Hashes `file` from its start to its end: the hash's state (to go on with, or finish) and the
/// length, reporting progress.
fn hash_file(
    file: &mut File,
    path: &Path,
    cancel: &Cancel,
    mut progress: impl FnMut(u64),
) -> Result<(Sha256, u64), Stop> {
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; PIECE];
    let mut len = 0u64;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| Stop::Fail(file_error("read", path, e)))?;
    loop {
        if cancel.is_set() {
            return Err(Stop::Cancelled);
        }
        let n = file
            .read(&mut buf)
            .map_err(|e| Stop::Fail(file_error("read", path, e)))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
        progress(len);
    }
    Ok((hasher, len))
}

/// An upload's plan: the file, what it is, where it goes.
pub(crate) struct UploadJob {
    pub path: PathBuf,
    pub room: Room,
}

/// The name a file is shared under: its file name, cut to what the protocol takes.
fn shared_name(path: &Path) -> String {
    let name = path
        .file_name()
        .map_or_else(|| "file".to_owned(), |n| n.to_string_lossy().into_owned());
    let mut cut = name.replace('\0', "");
    while cut.len() > MAX_FILE_NAME_BYTES {
        cut.pop();
    }
    if cut.is_empty() { "file".into() } else { cut }
}

/// Runs an upload to its end, reporting it.
pub(crate) fn upload(shared: &ClientState, id: u64, cancel: &Cancel, job: UploadJob) {
    let name = shared_name(&job.path);
    let outcome = upload_inner(shared, id, cancel, &job, &name);
    let event = match outcome {
        Ok(Sent {
            hash,
            size,
            record_id,
            resumed_from,
        }) => TransferEvent::Uploaded {
            id,
            name,
            hash,
            size,
            record_id,
            resumed_from,
        },
        Err(None) => TransferEvent::Cancelled {
            id,
            direction: Direction::Upload,
            name,
        },
        Err(Some(error)) => TransferEvent::Failed {
            id,
            direction: Direction::Upload,
            name,
            error,
        },
    };
    shared.emit(Event::Transfer(event));
}

/// A finished upload.
struct Sent {
    hash: ContentHash,
    size: u64,
    record_id: u64,
    resumed_from: u64,
}

fn upload_inner(
    shared: &ClientState,
    id: u64,
    cancel: &Cancel,
    job: &UploadJob,
    name: &str,
) -> Result<Sent, Option<ClientError>> {
    let path = &job.path;
    let mut file = File::open(path).map_err(|e| Some(file_error("open", path, e)))?;
    let meta = file
        .metadata()
        .map_err(|e| Some(file_error("read", path, e)))?;
    if !meta.is_file() {
        return Err(Some(ClientError::InvalidRequest(format!(
            "{} is not a regular file",
            path.display()
        ))));
    }
    let mut progress = Progress {
        shared,
        id,
        direction: Direction::Upload,
        name,
        total: meta.len(),
        last: None,
    };
    let (hasher, size) = hash_file(&mut file, path, cancel, |done| progress.report(done, true))
        .map_err(|stop| match stop {
            Stop::Fail(e) => Some(e),
            _ => None,
        })?;
    let hash = ContentHash::from_digest(hasher.finalize().into());
    progress.total = size;
    let client_msg_id = ClientMsgId::random().map_err(|_| Some(ClientError::Random))?;
    let mut buf = vec![0u8; PIECE];
    // Where the server stood when the first attempt asked.
    let mut resumed_from = None;
    let record_id = with_retries(cancel, || {
        let (token, addr) = session(shared, cancel)?;
        let (mut conn, _cut_on_cancel) = connect(shared, addr, cancel)?;
        let mut out = Vec::new();
        SendRequest::Offer {
            token: token.clone(),
            room: job.room.clone(),
            hash,
            size,
            name: name.to_owned(),
            client_msg_id: client_msg_id.clone(),
        }
        .encode(&mut out);
        write(shared, &mut conn, &out, cancel)?;
        let offset = match read(shared, &mut conn, Duration::ZERO, cancel)? {
            SendReply::Thx { id, .. } => {
                resumed_from.get_or_insert(size);
                return Ok(id);
            }
            SendReply::Resume { hash: h, offset } if h == hash && offset <= size => {
                resumed_from.get_or_insert(offset);
                offset
            }
            SendReply::Err(e) => return Err(refusal(e.code, e.text)),
            other => {
                return Err(Stop::Fail(ClientError::Unexpected {
                    peer: conn.peer().to_owned(),
                    detail: format!("{other:?} in answer to Offer"),
                }));
            }
        };
        file.seek(SeekFrom::Start(offset))
            .map_err(|e| Stop::Fail(file_error("read", path, e)))?;
        let mut at = offset;
        progress.report(at, false);
        while at < size {
            let length = (size - at).min(MAX_CHUNK_BYTES);
            out.clear();
            SendRequest::Chunk {
                token: token.clone(),
                hash,
                offset: at,
                length,
            }
            .encode(&mut out);
            write(shared, &mut conn, &out, cancel)?;
            let mut left = length;
            while left > 0 {
                if cancel.is_set() {
                    return Err(Stop::Cancelled);
                }
                let want = usize::try_from(left.min(PIECE as u64)).unwrap_or(PIECE);
                let n = file
                    .read(&mut buf[..want])
                    .map_err(|e| Stop::Fail(file_error("read", path, e)))?;
                if n == 0 {
                    return Err(Stop::Fail(ClientError::InvalidRequest(format!(
                        "{} got shorter while it was being sent; send it again",
                        path.display()
                    ))));
                }
                write(shared, &mut conn, &buf[..n], cancel)?;
                left -= n as u64;
                at += n as u64;
                progress.report(at, false);
            }
        }
        // The server fsyncs, verifies and stores before it answers.
        match read(shared, &mut conn, Duration::from_secs(60), cancel)? {
            SendReply::Thx { id, .. } => Ok(id),
            SendReply::Err(e) if e.code == ErrorCode::Corrupt => {
                Err(Stop::Fail(ClientError::FileRefused {
                    code: e.code,
                    text: format!("{} (did the file change while it was being sent?)", e.text),
                }))
            }
            SendReply::Err(e) => Err(refusal(e.code, e.text)),
            other => Err(Stop::Fail(ClientError::Unexpected {
                peer: conn.peer().to_owned(),
                detail: format!("{other:?} at the end of an upload"),
            })),
        }
    })?;
    Ok(Sent {
        hash,
        size,
        record_id,
        resumed_from: resumed_from.unwrap_or(0),
    })
}

/// A download's plan.
pub(crate) struct DownloadJob {
    pub hash: ContentHash,
    /// Where to save it: a file path that must not exist yet.
    pub target: PathBuf,
}

/// Hex digits of the content's hash in a `.part` file's name: enough to tell contents apart (a
/// clash only costs a download that fails its hash check and starts again), short enough that
/// `<a 200-byte name> (99).<hex>.part` stays within the usual 255 bytes of a file name.
const PART_HASH_HEX: usize = 16;
const PART_SUFFIX: &str = ".part";

/// The path beside `target` that a download of content `hash` writes to until it is complete
/// and verified: `<target's name>.<the hash's first 16 hex digits>.part`, so a later download of
/// the same content (in this run or another) recognises it and goes on from it.
pub fn part_path(target: &Path, hash: &ContentHash) -> PathBuf {
    let mut name = target
        .file_name()
        .map(std::ffi::OsStr::to_os_string)
        .unwrap_or_default();
    let hex = hash.to_string();
    name.push(format!(".{}{PART_SUFFIX}", &hex[..PART_HASH_HEX]));
    target.with_file_name(name)
}

/// Where a download is saved: see [`download_path`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SavePath {
    /// The file it is saved as (its [`part_path`] beside it until it is complete).
    pub path: PathBuf,
    /// The bytes the `.part` of an earlier download of the same content holds, there already:
    /// the download goes on from them. `None`: it starts from nothing.
    pub resumes: Option<u64>,
}

/// Where to save content `hash`, a file called `name` (made safe with [`local_file_name`]), in
/// `dir`, never over an existing file. Where a download of the same content was cut short (in
/// this run or an earlier one: its `.part` is there, no download is writing it, and the file
/// is not there) under `name` or one of the names below, it goes on there. Otherwise the first
/// of `name`, `name (1)`, `name (2)`, … that is neither a file nor the name of a download in
/// progress or cut short (of any content: a `.part` file).
pub fn download_path(dir: &Path, name: &str, hash: &ContentHash) -> SavePath {
    let safe = local_file_name(name);
    let (stem, ext) = match safe.rsplit_once('.') {
        Some((stem, ext)) if !stem.is_empty() => (stem.to_owned(), format!(".{ext}")),
        _ => (safe.clone(), String::new()),
    };
    let candidate = |n: u32| {
        if n == 0 {
            safe.clone()
        } else {
            format!("{stem} ({n}){ext}")
        }
    };
    // The number of the candidate `base` is, if it is one.
    let number = |base: &str| -> Option<u32> {
        if base == safe {
            return Some(0);
        }
        let digits = base
            .strip_prefix(stem.as_str())?
            .strip_prefix(" (")?
            .strip_suffix(ext.as_str())?
            .strip_suffix(')')?;
        let canonical = !digits.is_empty()
            && !digits.starts_with('0')
            && digits.bytes().all(|b| b.is_ascii_digit());
        canonical.then(|| digits.parse().ok()).flatten()
    };
    let exists = |p: &Path| std::fs::symlink_metadata(p).is_ok();
    let parts = parts_in(dir);
    let hex = hash.to_string();
    let tag = &hex[..PART_HASH_HEX];
    let mut ours: Vec<(u32, &str)> = parts
        .iter()
        .filter(|(_, tags)| tags.iter().any(|t| t.as_deref() == Some(tag)))
        .filter_map(|(base, _)| number(base).map(|n| (n, base.as_str())))
        .collect();
    ours.sort_unstable();
    for (_, base) in ours {
        let path = dir.join(base);
        if exists(&path) {
            // Finished (a `.part` left beside a saved file): never written over.
            continue;
        }
        let part = part_path(&path, hash);
        if let Ok(meta) = std::fs::metadata(&part)
            && meta.is_file()
            && !being_written(&part)
        {
            return SavePath {
                path,
                resumes: Some(meta.len()),
            };
        }
    }
    let path = (0u32..)
        .map(candidate)
        .find(|c| !parts.contains_key(c) && !exists(&dir.join(c)))
        .map_or_else(|| dir.join(&safe), |c| dir.join(c));
    SavePath {
        path,
        resumes: None,
    }
}

/// Whether a download (of this process or another) is writing the `.part` at `path` now: each
/// holds a lock on its `.part` until it is saved.
fn being_written(path: &Path) -> bool {
    File::open(path).is_ok_and(|f| matches!(f.try_lock(), Err(std::fs::TryLockError::WouldBlock)))
}

/// The downloads in progress in `dir`, by the name each is to be saved as: the hash digits of
/// each of its `.part` files (`None` for a `.part` without them, as older clients named them).
/// Names that are not UTF-8 are left out: no name [`download_path`] makes is one of them.
fn parts_in(dir: &Path) -> HashMap<String, Vec<Option<String>>> {
    let mut parts: HashMap<String, Vec<Option<String>>> = HashMap::new();
    let Ok(entries) = std::fs::read_dir(dir) else {
        return parts;
    };
    for entry in entries.flatten() {
        let Ok(name) = entry.file_name().into_string() else {
            continue;
        };
        let Some(rest) = name.strip_suffix(PART_SUFFIX) else {
            continue;
        };
        let tagged = rest
            .len()
            .checked_sub(PART_HASH_HEX + 1)
            .filter(|&dot| rest.is_char_boundary(dot) && rest[dot..].starts_with('.'))
            .map(|dot| (&rest[..dot], &rest[dot + 1..]))
            .filter(|(_, hex)| {
                hex.bytes()
                    .all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
            });
        let (base, tag) = match tagged {
            Some((base, hex)) => (base, Some(hex.to_owned())),
            None => (rest, None),
        };
        parts.entry(base.to_owned()).or_default().push(tag);
    }
    parts
}

/// Runs a download to its end, reporting it.
pub(crate) fn download(shared: &ClientState, id: u64, cancel: &Cancel, job: DownloadJob) {
    let name = job.target.file_name().map_or_else(
        || job.hash.to_string(),
        |n| n.to_string_lossy().into_owned(),
    );
    let outcome = download_inner(shared, id, cancel, &job, &name);
    let event = match outcome {
        Ok((size, resumed_from)) => TransferEvent::Downloaded {
            id,
            hash: job.hash,
            path: job.target.clone(),
            size,
            resumed_from,
        },
        Err(None) => TransferEvent::Cancelled {
            id,
            direction: Direction::Download,
            name,
        },
        Err(Some(error)) => TransferEvent::Failed {
            id,
            direction: Direction::Download,
            name,
            error,
        },
    };
    shared.emit(Event::Transfer(event));
}

fn download_inner(
    shared: &ClientState,
    id: u64,
    cancel: &Cancel,
    job: &DownloadJob,
    name: &str,
) -> Result<(u64, u64), Option<ClientError>> {
    let target = &job.target;
    if target.exists() {
        return Err(Some(ClientError::FileExists(target.clone())));
    }
    let part = part_path(target, &job.hash);
    let mut file = std::fs::OpenOptions::new()
        .read(true)
        .append(true)
        .create(true)
        .open(&part)
        .map_err(|e| Some(file_error("create", &part, e)))?;
    // Held until the file is saved: a second download of the same content to the same place
    // (a `/download` while this one runs, another process) would append to it as well.
    match file.try_lock() {
        Ok(()) => {}
        Err(std::fs::TryLockError::WouldBlock) => {
            return Err(Some(ClientError::DownloadInProgress(target.clone())));
        }
        // A file system without locks: go on unguarded.
        Err(std::fs::TryLockError::Error(e)) => {
            tracing::debug!("cannot lock {}: {e}", part.display());
        }
    }
    let mut progress = Progress {
        shared,
        id,
        direction: Direction::Download,
        name,
        total: 0,
        last: None,
    };
    let mut buf = vec![0u8; PIECE];
    // What an earlier run left: hashed once, then extended as bytes arrive.
    let (mut hasher, mut have) =
        hash_file(&mut file, &part, cancel, |_| {}).map_err(|stop| match stop {
            Stop::Fail(e) => Some(e),
            _ => None,
        })?;
    let mut resumed_from = have;
    // To the disk as it arrives, so the fsync at the end does not hold up this machine's other
    // writers (a local server's message store, say) with a whole gigabyte at once.
    let mut behind = gc_store::WriteBehind::from(have);
    let size = with_retries(cancel, || {
        let (token, addr) = session(shared, cancel)?;
        let (mut conn, _cut_on_cancel) = connect(shared, addr, cancel)?;
        let mut out = Vec::new();
        SendRequest::Fetch {
            token,
            hash: job.hash,
            offset: have,
        }
        .encode(&mut out);
        write(shared, &mut conn, &out, cancel)?;
        let size = match read(shared, &mut conn, Duration::ZERO, cancel)? {
            SendReply::Data { hash, size, offset } if hash == job.hash && offset == have => size,
            SendReply::Err(e) if e.code == ErrorCode::Offset => {
                // We hold more than the file has: what we have is not a prefix of it.
                file.set_len(0)
                    .map_err(|e| Stop::Fail(file_error("truncate", &part, e)))?;
                have = 0;
                resumed_from = 0;
                hasher = Sha256::new();
                behind = gc_store::WriteBehind::default();
                return Err(Stop::Retry(e.text));
            }
            SendReply::Err(e) => return Err(refusal(e.code, e.text)),
            other => {
                return Err(Stop::Fail(ClientError::Unexpected {
                    peer: conn.peer().to_owned(),
                    detail: format!("{other:?} in answer to Fetch"),
                }));
            }
        };
        progress.total = size;
        progress.report(have, false);
        while have < size {
            if cancel.is_set() {
                return Err(Stop::Cancelled);
            }
            let want = usize::try_from((size - have).min(PIECE as u64)).unwrap_or(PIECE);
            let n = conn
                .read_raw(&mut buf[..want], shared.connector.deadline())
                .map_err(|e| gone(cancel, &e.to_string()))?;
            file.write_all(&buf[..n])
                .map_err(|e| Stop::Fail(file_error("write", &part, e)))?;
            hasher.update(&buf[..n]);
            have += n as u64;
            behind
                .wrote(&file, have)
                .map_err(|e| Stop::Fail(file_error("fsync", &part, e)))?;
            progress.report(have, false);
        }
        Ok(size)
    })?;
    let got = ContentHash::from_digest(std::mem::take(&mut hasher).finalize().into());
    if got != job.hash {
        drop(file);
        let _ = std::fs::remove_file(&part);
        return Err(Some(ClientError::FileCorrupt {
            expected: job.hash,
            got,
        }));
    }
    file.sync_all()
        .map_err(|e| Some(file_error("fsync", &part, e)))?;
    drop(file);
    // A hard link never replaces an existing file (unlike a rename): a file that appeared at
    // the target meanwhile is left alone, and the download keeps its .part name.
    match std::fs::hard_link(&part, target) {
        Ok(()) => {
            let _ = std::fs::remove_file(&part);
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
            return Err(Some(ClientError::FileExists(target.clone())));
        }
        Err(e) => return Err(Some(file_error("save", target, e))),
    }
    Ok((size, resumed_from))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn new_at(path: PathBuf) -> SavePath {
        SavePath {
            path,
            resumes: None,
        }
    }

    #[test]
    fn a_new_download_never_names_an_existing_file_or_a_download_in_progress() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let hash = ContentHash::of(b"notes");
        let other = ContentHash::of(b"other notes");
        let first = download_path(d, "notes.txt", &hash);
        assert_eq!(first, new_at(d.join("notes.txt")));
        std::fs::write(&first.path, b"x").unwrap();
        let second = download_path(d, "notes.txt", &hash);
        assert_eq!(second, new_at(d.join("notes (1).txt")));
        // Another content's download in progress there, and one as older clients named it.
        std::fs::write(part_path(&second.path, &other), b"x").unwrap();
        std::fs::write(d.join("notes (2).txt.part"), b"x").unwrap();
        assert_eq!(
            download_path(d, "notes.txt", &hash),
            new_at(d.join("notes (3).txt"))
        );
        // A name with a path in it stays in the directory.
        let p = download_path(d, "../../etc/passwd", &hash).path;
        assert_eq!(p.parent(), Some(d));
    }

    #[test]
    fn a_download_of_the_same_content_goes_on_from_the_part_an_earlier_one_left() {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        let hash = ContentHash::of(b"report");
        let other = ContentHash::of(b"another report");
        // `report.pdf` is another file; an earlier run was saving ours as `report (2).pdf`.
        std::fs::write(d.join("report.pdf"), b"someone else's").unwrap();
        std::fs::write(part_path(&d.join("report (1).pdf"), &other), b"o").unwrap();
        std::fs::write(part_path(&d.join("report (2).pdf"), &hash), b"12345").unwrap();
        assert_eq!(
            download_path(d, "report.pdf", &hash),
            SavePath {
                path: d.join("report (2).pdf"),
                resumes: Some(5),
            }
        );
        // Another content of the same name does not take it over.
        assert_eq!(
            download_path(d, "report.pdf", &ContentHash::of(b"third")),
            new_at(d.join("report (3).pdf"))
        );
        // Freed names are not preferred to the leftover: it still goes on there.
        std::fs::remove_file(d.join("report.pdf")).unwrap();
        assert_eq!(
            download_path(d, "report.pdf", &hash).resumes,
            Some(5),
            "resumed, not started again under the freed name"
        );
        // A leftover beside a finished file is never a reason to write over the file.
        std::fs::write(d.join("report (2).pdf"), b"done").unwrap();
        assert_eq!(
            download_path(d, "report.pdf", &hash),
            new_at(d.join("report.pdf"))
        );
        // Another name for the same content starts afresh (its own name is what was asked).
        assert_eq!(
            download_path(d, "summary.pdf", &hash),
            new_at(d.join("summary.pdf"))
        );
        // A `.part` a download is writing now (it holds its lock) is left to it.
        let running = part_path(&d.join("summary.pdf"), &hash);
        let writer = File::create(&running).unwrap();
        writer.lock().unwrap();
        assert_eq!(
            download_path(d, "summary.pdf", &hash),
            new_at(d.join("summary (1).pdf"))
        );
        drop(writer);
        assert_eq!(download_path(d, "summary.pdf", &hash).resumes, Some(0));
    }

    #[test]
    fn shared_names_are_cut_to_what_the_protocol_takes() {
        assert_eq!(shared_name(Path::new("/tmp/a.txt")), "a.txt");
        let long = "é".repeat(200);
        let name = shared_name(Path::new(&long));
        assert!(name.len() <= MAX_FILE_NAME_BYTES && !name.is_empty());
        assert_eq!(shared_name(Path::new("/")), "file");
    }

    #[test]
    fn part_paths_sit_beside_the_target_and_name_the_content() {
        let hash: ContentHash = "3f5c0e1a9b7d2c4f6e8a0b1c2d3e4f5061728394a5b6c7d8e9f00112233445e1"
            .parse()
            .unwrap();
        assert_eq!(
            part_path(Path::new("/d/x.bin"), &hash),
            PathBuf::from("/d/x.bin.3f5c0e1a9b7d2c4f.part")
        );
        // The longest name a download is given, numbered, still fits a file system's 255 bytes.
        let longest = format!(
            "{} (99).txt",
            "é".repeat(gc_protocol::files::MAX_LOCAL_NAME_BYTES / 2)
        );
        let part = part_path(Path::new(&longest), &hash);
        assert!(part.as_os_str().len() <= 255, "{}", part.display());
    }
}
