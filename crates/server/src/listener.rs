//! The per-session listener thread: serves connections on the sending port handed to it by the
//! accept thread — `Msg`, `History`, `Who` and `Bye`, several frames per connection.

use std::net::{IpAddr, Shutdown};
use std::sync::Arc;
use std::time::Instant;

use gc_protocol::frame::encode_rec_frame;
use gc_protocol::limits::MAX_FRAME_BYTES;
use gc_protocol::{
    ClientMsgId, ErrorCode, ErrorFrame, Frame, ParseError, ProtocolError, SendReply, SendRequest,
    Timestamp,
};

use gc_plugin::Outcome;

use crate::state::{Conn, NextConn, Session, Shared};

/// Runs the listener of `session` until it ends or the server stops.
///
/// The accept thread only knows the peer's address, so a connection may first land at another
/// session of the same address; the first frame's token tells whose it is, and the connection is
/// then handed to that session's listener. Each listener thus serves its own client, and ending a
/// session never cuts a connection that another session's client is using.
pub fn run(shared: Arc<Shared>, session: Arc<Session>) {
    while let NextConn::Conn(conn) = session.slot.next() {
        let forward = serve(&shared, &session, conn);
        session.slot.release();
        if let Some((target, conn)) = forward
            && let Err(conn) = target.slot.offer(conn)
        {
            let _ = conn.get_ref().shutdown(Shutdown::Both);
        }
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
}

/// Serves `conn` until it closes, idles out, or turns out to belong to another session (then it is
/// returned with that session, to be handed over).
fn serve(shared: &Shared, session: &Session, mut conn: Conn) -> Option<(Arc<Session>, Conn)> {
    let Ok(peer) = conn.get_ref().peer_addr() else {
        return None;
    };
    let mut out = Vec::with_capacity(256);
    loop {
        if !session.slot.set_idle() {
            break;
        }
        let idle_deadline = Instant::now() + shared.config.idle_timeout;
        out.clear();
        let after = match conn.read_line_idle(idle_deadline, Some(shared.config.io_timeout)) {
            Ok(line) => {
                session.slot.set_busy();
                handle(shared, session, peer.ip(), line, &mut out)
            }
            Err(ProtocolError::TooLong { limit, .. }) => {
                tracing::warn!(%peer, "frame over {limit} bytes on the sending port; closing");
                ErrorFrame::new(
                    ErrorCode::TooLong,
                    format!("frame longer than {limit} bytes; closing the connection"),
                )
                .encode(&mut out);
                After::Close
            }
            Err(_) => break,
        };
        if !out.is_empty() && conn.write_all(&out, shared.io_deadline()).is_err() {
            break;
        }
        match after {
            After::Continue => {}
            After::Close => break,
            After::End(s) => {
                tracing::info!(user = %s.user, addr = %s.ip, "session ended by Bye");
                shared.end_session(&s);
            }
            After::Forward(target) => return Some((target, conn)),
        }
    }
    let _ = conn.get_ref().shutdown(Shutdown::Both);
    None
}

/// Handles one request frame from `ip`, arrived at the listener of `own`, appending the reply to
/// `out`.
fn handle(shared: &Shared, own: &Session, ip: IpAddr, line: &[u8], out: &mut Vec<u8>) -> After {
    let request = match SendRequest::parse(line) {
        Ok(r) => r,
        Err(e) => {
            tracing::warn!(%ip, "malformed frame on the sending port: {e}");
            error(out, e.code(), e.to_string());
            return if e == ParseError::TooLong {
                After::Close
            } else {
                After::Continue
            };
        }
    };
    if shared.stopping() {
        error(
            out,
            ErrorCode::ShuttingDown,
            "the server is shutting down; your client will reconnect when it is back",
        );
        return After::Close;
    }
    let Some(session) = shared.registry.by_token(request.token(), ip) else {
        tracing::warn!(%ip, "request with an unknown or foreign session token");
        error(
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
            ..
        } => handle_msg(shared, &session, &client_msg_id, body, out),
        SendRequest::History {
            before_id, limit, ..
        } => match shared.store.before(before_id, limit as usize) {
            Ok(records) => {
                for r in &records {
                    encode_rec_frame(r, out);
                }
                SendReply::End.encode(out);
            }
            Err(e) => {
                tracing::error!("history query failed: {e}");
                error(
                    out,
                    ErrorCode::Internal,
                    "could not read the history; try again",
                );
            }
        },
        SendRequest::Who { .. } => encode_online(shared, out),
        SendRequest::Bye { .. } => {
            SendReply::Thx {
                id: 0,
                timestamp: Timestamp::now(),
            }
            .encode(out);
            return After::End(session);
        }
    }
    after
}

/// `Msg`: dedupe first, then the body, then plugins, then the rate, then store (protocol.md §3.6).
fn handle_msg(
    shared: &Shared,
    session: &Session,
    client_msg_id: &ClientMsgId,
    body: Vec<u8>,
    out: &mut Vec<u8>,
) {
    let user = &session.user;
    if let Some((id, timestamp)) = shared.store.lookup_msgid(user, client_msg_id) {
        SendReply::Thx { id, timestamp }.encode(out);
        return;
    }
    if body.is_empty() {
        return error(
            out,
            ErrorCode::Malformed,
            "empty message; type something first",
        );
    }
    if body.contains(&0) {
        return error(out, ErrorCode::Malformed, "message contains a NUL byte");
    }
    let Ok(text) = String::from_utf8(body) else {
        return error(out, ErrorCode::Malformed, "message is not valid UTF-8");
    };
    let max = shared.config.max_message_bytes;
    if text.len() > max {
        return error(out, ErrorCode::TooLarge, too_large(text.len(), max));
    }
    let text = match shared.plugins.message_received(user.as_str(), &text) {
        Outcome::Deliver(text) if text.len() > max => {
            // A plugin's rewrite must still fit what this server stores.
            return error(out, ErrorCode::TooLarge, too_large(text.len(), max));
        }
        Outcome::Deliver(text) => text,
        Outcome::Block { plugin, reason } => {
            tracing::info!(user = %user, plugin, "message blocked: {reason}");
            return error(out, ErrorCode::Blocked, reason);
        }
    };
    if let Err(wait) = shared.rate.check(&user.key(), Instant::now()) {
        let c = &shared.config;
        return error(
            out,
            ErrorCode::RateLimited,
            format!(
                "too many messages (at most {} at once, then {} per second); retry in {:.1} s",
                c.rate_burst,
                c.rate_per_sec,
                wait.as_secs_f64().max(0.1)
            ),
        );
    }
    match shared.store.append(user, client_msg_id, &text) {
        Ok(appended) => {
            SendReply::Thx {
                id: appended.id,
                timestamp: appended.timestamp,
            }
            .encode(out);
            if !appended.duplicate {
                shared.notifier.new_message(appended.id);
            }
        }
        Err(e) => {
            tracing::error!(user = %user, "cannot store a message: {e}");
            error(
                out,
                ErrorCode::Internal,
                "the server could not store your message; it was not sent; retry later",
            );
        }
    }
}

fn too_large(len: usize, max: usize) -> String {
    format!("message is {len} bytes; this server takes at most {max}; split it into parts")
}

/// `Online <pv> <user>…`, shortened to fit one frame if there are very many users.
fn encode_online(shared: &Shared, out: &mut Vec<u8>) {
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
            return;
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

fn error(out: &mut Vec<u8>, code: ErrorCode, text: impl Into<String>) {
    SendReply::Err(ErrorFrame::new(code, text)).encode(out);
}
