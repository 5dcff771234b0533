//! The per-session heartbeat thread: one cycle every interval, and at once when a message is
//! stored. A cycle pings the client's heartbeat port, learns its cursor from `Pong`, and delivers
//! what it is missing on its delivery port.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Instant;

use gc_protocol::frame::encode_rec_frame;
use gc_protocol::limits::{MAX_BATCH_BYTES, MAX_BATCH_RECORDS};
use gc_protocol::{
    DeliveryFrame, DeliveryReply, ErrorFrame, Frame, HeartbeatPing, HeartbeatReply, ProtocolError,
    Timestamp,
};

use crate::link::Link;
use crate::state::{Session, Shared};

/// Missed heartbeats in a row after which a session is dropped.
pub const MAX_MISSED: u32 = 3;

/// Why a cycle failed (counts as a missed heartbeat).
#[derive(Debug, thiserror::Error)]
enum CycleError {
    #[error("heartbeat: {0}")]
    Heartbeat(#[source] ProtocolError),
    #[error("heartbeat answered with an error: {0}")]
    HeartbeatRefused(ErrorFrame),
    #[error("delivery: {0}")]
    Delivery(#[source] ProtocolError),
    #[error("delivery answered with an error: {0}")]
    DeliveryRefused(ErrorFrame),
    #[error("reading the store: {0}")]
    Store(#[source] gc_store::StoreError),
}

/// The outcome of a good cycle.
struct Cycle {
    /// The client's cursor as it last reported it (`Pong` or `Thx`).
    cursor: u64,
    /// Whether the client is still behind after a capped batch (run the next cycle at once).
    behind: bool,
}

/// Runs the heartbeat loop of `session` until it ends or the server stops.
///
/// A `Ping` goes out every interval; its `Pong` gives the client's cursor. When a new message
/// wakes the thread between pings and the cursor is known (from the last `Pong` or `Thx`), the
/// cycle delivers at once without pinging first: that halves the round trips of every delivery.
/// Presence changes do not wake anyone: the new presence version rides on the next ping.
pub fn run(shared: Arc<Shared>, session: Arc<Session>) {
    let mut hb = Link::new(SocketAddr::new(session.ip, session.ports.heartbeat), 0);
    let mut dl = Link::new(SocketAddr::new(session.ip, session.ports.delivery), 1);
    let interval = shared.config.heartbeat_interval;
    let mut missed = 0;
    let mut out = Vec::with_capacity(256);
    let mut cursor: Option<u64> = None;
    let mut next_ping = Instant::now();
    loop {
        if session.is_ended() || shared.stopping() {
            break;
        }
        let started = Instant::now();
        let seen = shared.notifier.pulse();
        let ping = started >= next_ping || cursor.is_none();
        let known = if ping { None } else { cursor };
        match cycle(
            &shared,
            &session,
            &mut hb,
            &mut dl,
            &mut out,
            seen.presence_version,
            known,
        ) {
            Ok(done) => {
                missed = 0;
                cursor = Some(done.cursor);
                if ping {
                    next_ping = started + interval;
                }
                if done.behind {
                    continue;
                }
                // Sleep until the next ping, a new message, or the end.
                shared.notifier.wait_until(next_ping, |p| {
                    p.newest_id != seen.newest_id || session.is_ended()
                });
            }
            Err(e) => {
                if session.is_ended() || shared.stopping() {
                    break;
                }
                cursor = None;
                missed += 1;
                hb.close(&session);
                dl.close(&session);
                tracing::warn!(session = %session.label(), missed, "missed heartbeat: {e}");
                if missed >= MAX_MISSED {
                    tracing::info!(
                        user = %session.user, addr = %session.ip,
                        "dropping session after {MAX_MISSED} missed heartbeats"
                    );
                    shared.end_session(&session);
                    break;
                }
                // A failing client is retried at the interval, not on every new message.
                next_ping = started + interval;
                shared
                    .notifier
                    .wait_until(next_ping, |_| session.is_ended());
            }
        }
    }
}

/// One cycle: a `Ping` (unless the client's cursor is `known`), then a delivery if the client
/// is behind.
fn cycle(
    shared: &Shared,
    session: &Session,
    hb: &mut Link,
    dl: &mut Link,
    out: &mut Vec<u8>,
    presence_version: u64,
    known: Option<u64>,
) -> Result<Cycle, CycleError> {
    let last_id = match known {
        Some(cursor) => cursor,
        None => {
            out.clear();
            HeartbeatPing {
                token: session.token.clone(),
                server_time: Timestamp::now(),
                presence_version,
            }
            .encode(out);
            match hb.exchange::<HeartbeatReply>(shared, session, out) {
                Ok(HeartbeatReply::Pong { last_id, .. }) => last_id,
                Ok(HeartbeatReply::Err(e)) => return Err(CycleError::HeartbeatRefused(e)),
                Err(e) => return Err(CycleError::Heartbeat(e)),
            }
        }
    };
    let idle = Cycle {
        cursor: last_id,
        behind: false,
    };
    // A client with nothing is owed the history-on-join records fixed at login.
    let cursor = if last_id == 0 {
        session.join_floor
    } else {
        last_id
    };
    if cursor >= shared.store.newest_id() {
        return Ok(idle);
    }
    // The store counts line bytes; a `Rec` frame is at most twice its line (c16 doubles the body).
    let records = shared
        .store
        .after(cursor, MAX_BATCH_RECORDS, (MAX_BATCH_BYTES / 2) as u64)
        .map_err(CycleError::Store)?;
    let Some(last) = records.last() else {
        return Ok(idle);
    };
    let batch_last = last.id;
    out.clear();
    DeliveryFrame::Batch {
        token: session.token.clone(),
        n: records.len() as u32,
    }
    .encode(out);
    for record in &records {
        encode_rec_frame(record, out);
    }
    DeliveryFrame::End.encode(out);
    match dl.exchange::<DeliveryReply>(shared, session, out) {
        Ok(DeliveryReply::Thx { last_id }) => {
            // A client that did not take the whole batch is asked again next interval rather than
            // flooded at once.
            let behind = last_id >= batch_last && batch_last < shared.store.newest_id();
            Ok(Cycle {
                cursor: last_id,
                behind,
            })
        }
        Ok(DeliveryReply::Err(e)) => Err(CycleError::DeliveryRefused(e)),
        Err(e) => Err(CycleError::Delivery(e)),
    }
}
