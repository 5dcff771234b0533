//! The per-session listener thread: serves connections on the sending port handed to it by the
//! accept thread — `Msg`, `History`, `Who` and `Bye`, and with GC/3 the room requests (see
//! `rooms`), several frames per connection.

use std::net::{IpAddr, Shutdown};
use std::sync::Arc;
use std::time::Instant;

use gc_protocol::frame::encode_rec_frame;
use gc_protocol::limits::MAX_FRAME_BYTES;
use gc_protocol::{
    ClientMsgId, ErrorCode, ErrorFrame, Frame, ParseError, ProtocolError, Room, SendReply,
    SendRequest, SessionToken, Timestamp, Username, texts,
};

use gc_plugin::Outcome;
use gc_protocol::scram::Verifier;

use gc_net::Conn;

use crate::metrics::PortRole;
use crate::state::{Incoming, NextConn, ServerState, Session};
use crate::warnings::peer_warn;
use crate::{account, rooms};

/// Runs the listener of `session` until it ends or the server stops.
///
/// The accept thread only knows the peer's address, so a connection may first land at another
/// session of the same address; the first frame's token tells whose it is, and the connection is
/// then handed to that session's listener. Each listener thus serves its own client, and ending a
/// session never cuts a connection that another session's client is using.
pub fn run(shared: Arc<ServerState>, session: Arc<Session>) {
    while let NextConn::Conn(incoming) = session.slot.next() {
        let conn = match incoming {
            // The TLS handshake (if any) runs here: the slot has registered the socket, so the
            // session's end cuts a stalling one.
            Incoming::Accepted(tcp, peer) => {
                let name = peer.to_string();
                shared
                    .accept(tcp, peer, PortRole::Send, shared.io_deadline())
                    .map(|stream| Conn::new(stream, name))
            }
            Incoming::Framed(conn) => Some(*conn),
        };
        let forward = conn.and_then(|conn| serve(&shared, &session, conn));
        session.slot.release();
        if let Some((target, conn)) = forward
            && let Err(Incoming::Framed(conn)) = target.slot.offer(Incoming::Framed(Box::new(conn)))
        {
            let _ = conn.get_ref().tcp().shutdown(Shutdown::Both);
        }
    }
}

/// Who sent a request: the address, and whether over TLS. A session opened over TLS takes
/// requests over TLS only, so nothing of it ever crosses the network in the clear.
#[derive(Clone, Copy)]
struct Sender {
    ip: IpAddr,
    tls: bool,
}

impl Sender {
    /// The live session `token` names, if it is this sender's.
    fn session(self, shared: &ServerState, token: &SessionToken) -> Option<Arc<Session>> {
        shared
            .registry
            .by_token(token, self.ip)
            .filter(|s| self.tls || s.callback_pin.is_none())
    }
}

/// What to do after a reply has been written.
enum After {
    /// Read the next frame.
    Continue,
    /// Close this connection.
    Close,
    /// End this session (after `Bye`), then carry on.
    End(Arc<Session>),
    /// The connection belongs to another session of this address: hand it over.
    Forward(Arc<Session>),
    /// A file transfer (GC/5) of this session starts: the connection goes to a transfer thread.
    Transfer(Arc<Session>, SendRequest),
}

/// A `History` page is read from the store and written in pieces of at most this many records
/// and this many line bytes (as the store counts them; c16 doubles a body, so a piece's frames
/// stay near 64 KiB), each written before the next is read. A page of 1,000 large records thus
/// never needs all of its records (up to 32 MB) or its reply (up to 64 MB) in memory at once,
/// however many sessions ask at the same time; and malloc, which keeps the memory of large
/// transient allocations in its arenas, has none to keep.
const PIECE_RECORDS: usize = 64;
/// See [`PIECE_RECORDS`].
const PIECE_LINE_BYTES: u64 = 32 * 1024;

/// The reply buffer kept between requests at most: one that grew past it for a large reply is
/// given back, so a connection kept open idle stays cheap (thousands of sessions keep one).
const REPLY_KEEP: usize = 4 * 1024;

/// Serves `conn` until it closes, idles out, or turns out to belong to another session (then it is
/// returned with that session, to be handed over).
fn serve(
    shared: &Arc<ServerState>,
    session: &Session,
    mut conn: Conn,
) -> Option<(Arc<Session>, Conn)> {
    let Ok(peer) = conn.get_ref().tcp().peer_addr() else {
        return None;
    };
    let from = Sender {
        ip: peer.ip(),
        tls: conn.get_ref().is_tls(),
    };
    let mut out = Vec::with_capacity(256);
    let mut page = None;
    loop {
        if !session.slot.set_idle() {
            break;
        }
        let idle_deadline = Instant::now() + shared.config.idle_timeout;
        out.clear();
        if out.capacity() > REPLY_KEEP {
            out = Vec::with_capacity(256);
        }
        let mut stored = Stored::default();
        let after = match conn.read_line_idle(idle_deadline, Some(shared.config.io_timeout)) {
            Ok(line) if line.starts_with(b"Msg ") => {
                session.slot.set_busy();
                // A client may pipeline a window of `Msg` frames: take every one already here and
                // store them with one commit instead of one commit each.
                let mut lines = vec![line.to_vec()];
                while lines.len() < MAX_MSGS_PER_COMMIT {
                    match conn.take_buffered_line(|l| l.starts_with(b"Msg ")) {
                        Some(l) => lines.push(l.to_vec()),
                        None => break,
                    }
                }
                handle_msgs(shared, session, from, &lines, &mut out, &mut stored)
            }
            Ok(line) => {
                session.slot.set_busy();
                handle(
                    shared,
                    session,
                    from,
                    line,
                    &mut out,
                    &mut stored,
                    &mut page,
                )
            }
            Err(ProtocolError::TooLong { limit, .. }) => {
                peer_warn!(shared, peer.ip(), %peer, "frame over {limit} bytes on the sending port; closing");
                ErrorFrame::new(
                    ErrorCode::TooLong,
                    format!("frame longer than {limit} bytes; closing the connection"),
                )
                .encode(&mut out);
                After::Close
            }
            Err(_) => break,
        };
        if let After::End(s) = &after {
            // End the session before answering: a client that closes its listeners as soon as it
            // has the reply must not find a heartbeat of this session still on its way. Ending our
            // own session would shut down this connection too, so the slot lets go of it first; the
            // loop then stops after the reply, as the slot is closed.
            if s.id == session.id {
                session.slot.release();
            }
            tracing::info!(user = %s.user, addr = %s.ip, "session ended by Bye");
            shared.end_session(s);
        }
        let mut written = out.is_empty() || conn.write_all(&out, shared.io_deadline()).is_ok();
        if let Some(page) = page.take() {
            written = written && write_page(shared, &mut conn, &page, &mut out);
        }
        // The heartbeat threads are rung after the sender has its `Thx`: ringing a few hundred
        // of them takes a while, and a sender pipelining a window waits for its replies. A
        // sender that does not read its replies can only delay its own messages this way, and
        // by at most a heartbeat interval (each cycle also looks at the store's newest id).
        stored.announce(shared);
        if !written {
            break;
        }
        match after {
            After::Continue | After::End(_) => {}
            After::Close => break,
            After::Forward(target) => return Some((target, conn)),
            After::Transfer(owner, request) => {
                crate::transfer::start(shared, owner, conn, request);
                return None;
            }
        }
    }
    let _ = conn.get_ref().tcp().shutdown(Shutdown::Both);
    None
}

/// What a round of requests stored, to announce once the replies are written: the newest id,
/// and the rooms it went to.
#[derive(Debug, Default)]
pub(crate) struct Stored {
    newest: u64,
    rooms: Vec<Room>,
    /// Users to wake besides the rooms' members (one just put out of a room, owed its notice).
    users: Vec<String>,
}

impl Stored {
    /// Record `id` was stored in `room`.
    pub(crate) fn add(&mut self, id: u64, room: &Room) {
        self.newest = self.newest.max(id);
        if !self.rooms.contains(room) {
            self.rooms.push(room.clone());
        }
    }

    /// Someone who is no longer a member must hear of it: wake their sessions too.
    pub(crate) fn add_user(&mut self, user: &Username) {
        self.users.push(user.key());
    }

    /// Wakes the heartbeat threads that have something new: everyone's for `#general`, else
    /// only those of the rooms' members (with 50 rooms, a message wakes one fiftieth of the
    /// sessions). The others see the new id at their next interval and find nothing for them.
    fn announce(&mut self, shared: &ServerState) {
        if self.newest == 0 {
            return;
        }
        wake_for(shared, self.newest, &self.rooms, &self.users);
        *self = Self::default();
    }
}

/// Wakes the heartbeat threads owed records up to `newest` in `rooms` (and those of `users`):
/// everyone's for `#general`, else only the rooms' members' (with 50 rooms, a message wakes one
/// fiftieth of the sessions). The others see the new id at their next interval and find nothing
/// for them. For this instance's own appends and for those another instance stored.
pub(crate) fn wake_for(shared: &ServerState, newest: u64, rooms: &[Room], users: &[String]) {
    if rooms.iter().any(Room::is_general) {
        shared.notifier.new_message(newest);
    } else {
        let members: Vec<_> = rooms.iter().map(|r| shared.rooms.member_keys(r)).collect();
        let mut bells = Vec::new();
        shared.registry.gc3_bells_of(
            members
                .iter()
                .flat_map(|m| m.iter())
                .chain(users.iter().map(String::as_str)),
            &mut bells,
        );
        shared
            .notifier
            .new_message_for(newest, bells.iter().map(|b| &**b));
    }
}

/// A `Msg` not yet checked: its client-msg-id, raw body and room.
type PendingMsg = (ClientMsgId, Vec<u8>, Room);

/// Pipelined `Msg` frames stored with one commit at most (the rest wait for the next round).
const MAX_MSGS_PER_COMMIT: usize = 256;

/// Handles pipelined `Msg` lines `from` a client, arrived at the listener of `own`: runs of frames of one
/// session are stored together; anything else (a bad frame, an unknown token, shutdown) is
/// answered as [`handle`] answers it, in order.
fn handle_msgs(
    shared: &ServerState,
    own: &Session,
    from: Sender,
    lines: &[Vec<u8>],
    out: &mut Vec<u8>,
    stored: &mut Stored,
) -> After {
    let mut after = After::Continue;
    let mut run: Option<(Arc<Session>, Vec<PendingMsg>)> = None;
    for line in lines {
        let msg = match SendRequest::parse(line) {
            Ok(SendRequest::Msg {
                token,
                client_msg_id,
                body,
                room,
            }) if !shared.stopping() => from
                .session(shared, &token)
                .map(|s| (s, (client_msg_id, body, room.unwrap_or_else(Room::general)))),
            _ => None,
        };
        match msg {
            Some((session, msg)) => {
                if session.id != own.id {
                    after = After::Forward(Arc::clone(&session));
                }
                match &mut run {
                    Some((s, msgs)) if s.id == session.id => msgs.push(msg),
                    _ => {
                        if let Some((s, msgs)) = run.take() {
                            store_msgs(shared, &s, msgs, out, stored);
                        }
                        run = Some((session, vec![msg]));
                    }
                }
            }
            None => {
                if let Some((s, msgs)) = run.take() {
                    store_msgs(shared, &s, msgs, out, stored);
                }
                // Answered with its error (malformed, session, shutting-down); a line that
                // starts with `Msg ` is never a `History`, so no page comes back.
                let mut no_page = None;
                if let After::Close = handle(shared, own, from, line, out, stored, &mut no_page) {
                    return After::Close;
                }
            }
        }
    }
    if let Some((s, msgs)) = run {
        store_msgs(shared, &s, msgs, out, stored);
    }
    after
}

/// The answer to file-transfer frames from a session that did not log in with GC/5.
const NO_FILES: &str = "this session did not log in with GC/5, which file transfer needs; \
                        update gc-client";

/// Handles one request frame `from` a client, arrived at the listener of `own`, appending the
/// reply to `out`.
///
/// A `History` page is left in `page`, for the caller to read and write after `out` a piece
/// at a time ([`write_page`]); anything else is answered in `out`.
fn handle(
    shared: &ServerState,
    own: &Session,
    from: Sender,
    line: &[u8],
    out: &mut Vec<u8>,
    stored: &mut Stored,
    page: &mut Option<rooms::HistoryPage>,
) -> After {
    let request = match SendRequest::parse(line) {
        Ok(r) => r,
        Err(e) => {
            peer_warn!(shared, from.ip, ip = %from.ip, "malformed frame on the sending port: {e}");
            error(shared, out, e.code(), e.to_string());
            return if e == ParseError::TooLong {
                After::Close
            } else {
                After::Continue
            };
        }
    };
    if shared.stopping() {
        error(
            shared,
            out,
            ErrorCode::ShuttingDown,
            "the server is shutting down; your client will reconnect when it is back",
        );
        return After::Close;
    }
    let Some(session) = from.session(shared, request.token()) else {
        peer_warn!(shared, from.ip, ip = %from.ip, "request with an unknown or foreign session token");
        error(
            shared,
            out,
            ErrorCode::Session,
            "unknown or ended session for this address; log in again",
        );
        return After::Continue;
    };
    let after = if session.id == own.id {
        After::Continue
    } else {
        After::Forward(Arc::clone(&session))
    };
    match request {
        SendRequest::Msg {
            client_msg_id,
            body,
            room,
            ..
        } => {
            let room = room.unwrap_or_else(Room::general);
            store_msgs(
                shared,
                &session,
                vec![(client_msg_id, body, room)],
                out,
                stored,
            );
        }
        SendRequest::History {
            before_id,
            limit,
            room,
            ..
        } => {
            let room = room.unwrap_or_else(Room::general);
            *page = rooms::history(shared, &session, &room, before_id, limit, out);
        }
        SendRequest::Who { room: None, .. } => {
            let users = encode_online(shared, out);
            account::away_lines(shared, &session, &users, out);
        }
        SendRequest::Who {
            room: Some(room), ..
        } => {
            if let Some(users) = rooms::who(shared, &session, &room, out) {
                account::away_lines(shared, &session, &users, out);
            }
        }
        SendRequest::Bye { .. } => {
            SendReply::Thx {
                id: 0,
                timestamp: Timestamp::now(),
            }
            .encode(out);
            return After::End(session);
        }
        request @ (SendRequest::Rooms { .. }
        | SendRequest::Create { .. }
        | SendRequest::Join { .. }
        | SendRequest::Part { .. }
        | SendRequest::Invite { .. }
        | SendRequest::Topic { .. }
        | SendRequest::Privacy { .. }
        | SendRequest::Role { .. }
        | SendRequest::Kick { .. }
        | SendRequest::Mute { .. }
        | SendRequest::Ban { .. }
        | SendRequest::Unban { .. }) => rooms::handle(shared, &session, request, out, stored),
        SendRequest::Challenge { .. } => account::challenge(shared, &session, out),
        SendRequest::Passwd {
            salt,
            iterations,
            stored_key,
            server_key,
            proof,
            ..
        } => match (stored_key.try_into(), server_key.try_into()) {
            (Ok(stored_key), Ok(server_key)) => {
                let new = Verifier {
                    salt,
                    iterations,
                    stored_key,
                    server_key,
                };
                account::passwd(shared, &session, from.ip, new, &proof, out);
            }
            // The parser took exactly 32 bytes each: unreachable, but answered all the same.
            _ => error(shared, out, ErrorCode::Malformed, "keys must be 32 bytes"),
        },
        SendRequest::Away { message, .. } => account::away(shared, &session, Some(message), out),
        SendRequest::Back { .. } => account::away(shared, &session, None, out),
        // A transfer runs on a thread of its own (docs/files.md §4), so a large file never
        // holds up this session's messages.
        request @ (SendRequest::Offer { .. } | SendRequest::Fetch { .. }) if session.files => {
            return After::Transfer(session, request);
        }
        SendRequest::Offer { .. } | SendRequest::Fetch { .. } => {
            error(shared, out, ErrorCode::Version, NO_FILES);
        }
        SendRequest::Chunk { .. } => {
            // Raw bytes follow the header: the rest of the stream is not frames.
            let text = if session.files {
                "a Chunk with no upload in progress on this connection; send Offer first"
            } else {
                NO_FILES
            };
            let code = if session.files {
                ErrorCode::Malformed
            } else {
                ErrorCode::Version
            };
            error(shared, out, code, text);
            return After::Close;
        }
    }
    after
}

/// Reads a `History` page from the store and writes its `Rec` frames and its `End`, a piece
/// ([`PIECE_RECORDS`]) at a time, each written (within its own I/O deadline) before the next is
/// read; `out` is the buffer, empty before and after. Whether all of it was written. A store
/// error before anything was written is answered with `Err internal`; after, the connection is
/// closed (the client asks again).
fn write_page(
    shared: &ServerState,
    conn: &mut Conn,
    page: &rooms::HistoryPage,
    out: &mut Vec<u8>,
) -> bool {
    let spans = std::slice::from_ref(&page.span);
    let mut from = page.from;
    let mut left = page.limit;
    let mut started = false;
    out.clear();
    while left > 0 {
        let piece =
            match shared
                .store
                .after_in_from(from, spans, PIECE_RECORDS.min(left), PIECE_LINE_BYTES)
            {
                Ok(piece) => piece,
                Err(e) => {
                    tracing::error!("history query failed: {e}");
                    if started {
                        return false;
                    }
                    rooms::history_failed(out);
                    let written = conn.write_all(out, shared.io_deadline()).is_ok();
                    out.clear();
                    return written;
                }
            };
        let Some(last) = piece.records.last() else {
            break;
        };
        from = last.id;
        left = left.saturating_sub(piece.records.len());
        for record in &piece.records {
            encode_rec_frame(record, out);
        }
        // A piece cut short by its caps ends at its last record; one that is not reaches past.
        let more = piece.through == from && from < page.span.until && left > 0;
        if !more {
            break;
        }
        started = true;
        if conn.write_all(out, shared.io_deadline()).is_err() {
            return false;
        }
        out.clear();
    }
    SendReply::End.encode(out);
    let written = conn.write_all(out, shared.io_deadline()).is_ok();
    out.clear();
    written
}

/// `Msg` frames of one session, in order: each is checked (dedupe first, then the body, then
/// plugins, then the rate: protocol.md §3.6), then all that passed are stored with one group
/// commit, and the replies are appended to `out` in request order. `stored` is raised to the
/// newest id stored, for the caller to announce once the replies are written.
fn store_msgs(
    shared: &ServerState,
    session: &Session,
    msgs: Vec<PendingMsg>,
    out: &mut Vec<u8>,
    stored: &mut Stored,
) {
    let user = &session.user;
    let mut replies: Vec<Option<SendReply>> = Vec::with_capacity(msgs.len());
    let mut to_store: Vec<(usize, ClientMsgId, String, Room)> = Vec::new();
    for (i, (client_msg_id, body, room)) in msgs.into_iter().enumerate() {
        match check_msg(shared, session, &client_msg_id, body, &room) {
            Ok(text) => {
                to_store.push((i, client_msg_id, text, room));
                replies.push(None);
            }
            Err(reply) => replies.push(Some(reply)),
        }
    }
    if !to_store.is_empty() {
        let items: Vec<_> = to_store
            .iter()
            .map(|(_, id, text, room)| (room, user, id, text.as_str()))
            .collect();
        let commit_started = Instant::now();
        let results = shared.store.append_many_in(&items);
        shared
            .metrics
            .store_commit
            .observe(commit_started.elapsed());
        for ((i, _, _, room), result) in to_store.iter().zip(results) {
            shared.metrics.store_wrote(result.is_ok());
            replies[*i] = Some(match result {
                Ok(appended) => {
                    if !appended.duplicate {
                        stored.add(appended.id, room);
                        shared.metrics.messages_stored.inc();
                    }
                    SendReply::Thx {
                        id: appended.id,
                        timestamp: appended.timestamp,
                    }
                }
                Err(e) => {
                    tracing::error!(user = %user, "cannot store a message: {e}");
                    // `internal` (not a new code) so that every client, old ones included,
                    // keeps the message and sends it again.
                    let text = if matches!(e, gc_store::StoreError::Unavailable { .. }) {
                        "the message store is unavailable; your message was not stored yet; \
                         retry later"
                    } else {
                        "the server could not store your message; it was not sent; retry later"
                    };
                    SendReply::Err(ErrorFrame::new(ErrorCode::Internal, text))
                }
            });
        }
    }
    for reply in replies.into_iter().flatten() {
        if let SendReply::Err(e) = &reply {
            shared.metrics.error(e.code);
        }
        reply.encode(out);
    }
}

/// The checks of one `Msg` before it is stored, in protocol order. `Ok`: the text to store (as
/// plugins left it); `Err`: the reply instead (the first answer for a retry, or a refusal).
fn check_msg(
    shared: &ServerState,
    session: &Session,
    client_msg_id: &ClientMsgId,
    body: Vec<u8>,
    room: &Room,
) -> Result<String, SendReply> {
    let refuse = |code, text: String| Err(SendReply::Err(ErrorFrame::new(code, text)));
    let user = &session.user;
    if let Some((id, timestamp)) = shared.store.lookup_msgid(user, client_msg_id) {
        return Err(SendReply::Thx { id, timestamp });
    }
    // Only a member who is not muted posts (a direct conversation opens here).
    rooms::may_post(shared, session, room).map_err(|r| r.reply(session))?;
    if body.is_empty() {
        return refuse(
            ErrorCode::Malformed,
            "empty message; type something first".into(),
        );
    }
    if body.contains(&0) {
        return refuse(ErrorCode::Malformed, "message contains a NUL byte".into());
    }
    let Ok(text) = String::from_utf8(body) else {
        return refuse(ErrorCode::Malformed, "message is not valid UTF-8".into());
    };
    // Only a completed, verified upload writes a file's record (docs/files.md §5).
    if crate::transfer::looks_like_file_notice(&text) {
        return refuse(
            ErrorCode::Malformed,
            "a message cannot start with [file]: use /upload to share a file".into(),
        );
    }
    let max = shared.config.max_message_bytes;
    if text.len() > max {
        return refuse(ErrorCode::TooLarge, too_large(text.len(), max));
    }
    let hook_started = Instant::now();
    let outcome = shared
        .plugins
        .message_received(user.as_str(), room.as_str(), &text);
    shared.metrics.hook(
        crate::metrics::HookKind::MessageReceived,
        hook_started.elapsed(),
    );
    let text = match outcome {
        // A plugin's rewrite must still fit what this server stores.
        Outcome::Deliver(text) if text.len() > max => {
            return refuse(ErrorCode::TooLarge, too_large(text.len(), max));
        }
        Outcome::Deliver(text) => text,
        Outcome::Block { plugin, reason } => {
            tracing::info!(user = %user, plugin, "message blocked: {reason}");
            return refuse(ErrorCode::Blocked, reason);
        }
    };
    if let Err(wait) = shared.rate.check(&user.key(), Instant::now()) {
        let c = &shared.config;
        return refuse(
            ErrorCode::RateLimited,
            texts::rate_limited(c.rate_burst, c.rate_per_sec, wait),
        );
    }
    Ok(text)
}

fn too_large(len: usize, max: usize) -> String {
    format!("message is {len} bytes; this server takes at most {max}; split it into parts")
}

/// `Online <pv> <user>…`, shortened to fit one frame if there are very many users; returns the
/// users it lists.
fn encode_online(shared: &ServerState, out: &mut Vec<u8>) -> Vec<Username> {
    let (presence_version, mut users) = shared.registry.online();
    let start = out.len();
    loop {
        out.truncate(start);
        SendReply::Online {
            presence_version,
            users: users.clone(),
        }
        .encode(out);
        if out.len() - start <= MAX_FRAME_BYTES {
            return users;
        }
        let excess = out.len() - start - MAX_FRAME_BYTES;
        // Each name costs its length plus a space; drop enough of the tail at once.
        let mut freed = 0;
        while freed < excess {
            match users.pop() {
                Some(u) => freed += u.as_str().len() + 1,
                None => break,
            }
        }
        tracing::warn!("presence list too long for one frame; sending a shortened list");
    }
}

fn error(shared: &ServerState, out: &mut Vec<u8>, code: ErrorCode, text: impl Into<String>) {
    shared.metrics.error(code);
    SendReply::Err(ErrorFrame::new(code, text)).encode(out);
}
