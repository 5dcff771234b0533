//! The per-session heartbeat thread: one cycle every interval, and at once when a message is
//! stored. A cycle pings the client's heartbeat port, learns its cursor from `Pong`, and delivers
//! what it is missing on its delivery port.

use std::sync::Arc;
use std::time::{Duration, Instant};

use gc_protocol::frame::encode_rec_frame;
use gc_protocol::limits::MAX_BATCH_RECORDS;
use gc_protocol::{
    DeliveryFrame, DeliveryReply, ErrorFrame, Frame, HeartbeatPing, HeartbeatReply,
    HeartbeatRequest, ProtocolError, Stopping, Timestamp,
};

use gc_net::KeptConn;
use gc_store::RoomSpan;

use crate::metrics::PortRole;
use crate::rooms;
use crate::state::{ServerState, Session};

/// Missed heartbeats in a row after which a session is dropped.
pub const MAX_MISSED: u32 = 3;

/// A delivery's `Thx` is read later (see [`Peer::cycle`]) only on a delivery connection that
/// answered within this time and does not look closed. A kept connection the client has closed
/// shows up only when the reply is read, and a deferred read would then resend the batch at the
/// next wake rather than at once; clients close kept connections after idling for much longer
/// than this (30 s by default), and one that closes after every reply is seen by the peek in
/// [`KeptConn::looks_open`], so a connection in steady use is safe to write to and leave.
const DEFER_WITHIN: Duration = Duration::from_secs(1);

/// Line bytes (as the store counts them) of the records of one delivery batch at most, besides
/// the protocol's 1,000 records. c16 doubles a body, so a batch's frames stay near 64 KiB (one
/// record more at most): a client far behind (its history on join, a catch-up after a long
/// absence) gets several bounded batches rather than one of up to 1 MiB, which the buffer below
/// would have to hold. Steady deliveries are far smaller.
const BATCH_LINE_BYTES: u64 = 32 * 1024;

/// The delivery buffer kept between cycles at most; one that grew past it for a large batch is
/// given back, so an idle session stays cheap.
const OUT_KEEP: usize = 4 * 1024;

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

/// A batch written to the client whose `Thx` has not been read yet.
#[derive(Debug, Clone, Copy)]
struct InFlight {
    /// The client's cursor before the batch: where to resend from if the batch was lost.
    from: u64,
    /// Whether it went out on a connection kept from an earlier exchange (which the client may
    /// have closed meanwhile: then it is resent on a fresh one, not counted as missed).
    reused: bool,
}

/// The heartbeat thread's connections to one client and what it knows of the client's cursor.
struct Peer {
    hb: KeptConn,
    dl: KeptConn,
    out: Vec<u8>,
    /// The client's cursor as it last reported it (`Pong` or `Thx`); `None` until the first
    /// `Pong` and after any error.
    cursor: Option<u64>,
    in_flight: Option<InFlight>,
    /// The session's rooms had no record after `.0` up to `.1` when last asked (GC/3: other
    /// rooms' records are not this session's), so a cursor at `.0` or beyond need not be taken
    /// further back than `.1`.
    nothing: (u64, u64),
    /// The session's rooms as last worked out, and the generations they were worked out at.
    visible: Option<Visible>,
}

/// What [`rooms::visible_from`] answered for a session, kept while nothing it depends on
/// changes: working it out at every cycle (a membership look-up, a lock, a vector) cost as much
/// as the rest of a delivery to a GC/1 session (docs/PERFORMANCE.md).
struct Visible {
    /// `(rooms generation, spans generation)` when worked out.
    at: (u64, u64),
    spans: Vec<RoomSpan>,
}

/// Runs the heartbeat loop of `session` until it ends or the server stops.
///
/// A `Ping` goes out every interval; its `Pong` gives the client's cursor. When a new message
/// wakes the thread between pings and the cursor is known (from the last `Pong` or `Thx`), the
/// cycle delivers at once without pinging first: that halves the round trips of every delivery.
/// The `Thx` of a delivery is read at the start of the next cycle rather than waited for (see
/// [`Peer::cycle`]). Presence changes do not wake anyone: the new presence version rides on the
/// next ping.
pub fn run(shared: Arc<ServerState>, session: Arc<Session>) {
    let registration = shared.notifier.register(Arc::clone(&session.bell));
    let mut peer = Peer {
        hb: shared.link(&session, session.ports.heartbeat, PortRole::Heartbeat),
        dl: shared.link(&session, session.ports.delivery, PortRole::Delivery),
        out: Vec::with_capacity(256),
        cursor: None,
        in_flight: None,
        nothing: (0, 0),
        visible: None,
    };
    let interval = shared.config.heartbeat_interval;
    let mut missed = 0;
    let mut next_ping = Instant::now();
    loop {
        if session.is_ended() || shared.stopping() {
            break;
        }
        let started = Instant::now();
        let seen = shared.notifier.pulse();
        let ping = started >= next_ping || peer.cursor.is_none();
        let result = peer.cycle(&shared, &session, seen.presence_version, ping);
        peer.trim(shared.config.idle_timeout);
        match result {
            Ok(behind) => {
                missed = 0;
                if ping {
                    next_ping = started + interval;
                }
                if behind {
                    continue;
                }
                // Sleep until the next ping, a new message, or the end.
                shared
                    .notifier
                    .wait_until(registration.bell(), next_ping, |p| {
                        p.newest_id != seen.newest_id || session.is_ended()
                    });
            }
            Err(e) => {
                if session.is_ended() || shared.stopping() {
                    break;
                }
                peer.forget();
                // The store failing (a shared database away) is not the client's fault: its
                // session stays, and delivery resumes when the store answers again.
                if matches!(e, CycleError::Store(_)) {
                    tracing::warn!(session = %session.label(), "delivery postponed: {e}");
                } else {
                    missed += 1;
                    tracing::warn!(session = %session.label(), missed, "missed heartbeat: {e}");
                }
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
                    .wait_until(registration.bell(), next_ping, |_| session.is_ended());
            }
        }
    }
    // A GC/4 session that the shutdown left running is told first (the shutdown ends it anyway
    // once its short wait is over, cutting this exchange if the client is slow).
    if shared.stopping() && session.gc4 && !session.is_ended() {
        peer.tell_stopping(&session);
        shared.end_session(&session);
    }
}

impl Peer {
    /// One cycle: settle the last delivery, a `Ping` if asked for (or the cursor is unknown),
    /// then a delivery if the client is behind. Returns whether the client is still behind after
    /// a capped batch (run the next cycle at once).
    ///
    /// A delivery that is not capped, on a delivery connection in steady use, is written and
    /// left: its `Thx` is read at the start of the next cycle (the next message, or the next ping
    /// at most an interval later), by when it has normally arrived. The thread thus sleeps once
    /// per delivery instead of twice (on its doorbell, then blocked on the client's reply), which
    /// halves its context switches. There is still at most one batch unacknowledged per client,
    /// so the protocol is unchanged.
    fn cycle(
        &mut self,
        shared: &ServerState,
        session: &Session,
        presence_version: u64,
        ping: bool,
    ) -> Result<bool, CycleError> {
        self.settle()?;
        let last_id = match self.cursor {
            Some(cursor) if !ping => cursor,
            _ => {
                let last_id = self.ping(session, presence_version)?;
                self.cursor = Some(last_id);
                last_id
            }
        };
        // A client with nothing is owed the history-on-join records fixed at login.
        let mut from = if last_id == 0 {
            session.join_floor
        } else {
            last_id
        };
        if from >= self.nothing.0 {
            from = from.max(self.nothing.1);
        }
        if from >= shared.store.newest_id() {
            return Ok(false);
        }
        // Only the records of the rooms this session is shown (GC/1: #general). The store counts
        // line bytes; a `Rec` frame is at most twice what it counts (c16 doubles the body).
        // The generations are read before what they guard (see `Rooms::generation`).
        let at = (shared.rooms.generation(), shared.spans.generation());
        let visible = match &mut self.visible {
            Some(v) if v.at == at => &v.spans,
            slot => {
                let spans = rooms::visible_from(shared, &session.user, session.rooms);
                &slot.insert(Visible { at, spans }).spans
            }
        };
        let page = shared
            .store
            .after_in_from(from, visible, MAX_BATCH_RECORDS, BATCH_LINE_BYTES)
            .map_err(CycleError::Store)?;
        let records = page.records;
        if records.is_empty() {
            self.nothing = (from, page.through);
        }
        let Some(last) = records.last() else {
            return Ok(false);
        };
        let batch_last = last.id;
        self.out.clear();
        DeliveryFrame::Batch {
            token: session.token.clone(),
            n: records.len() as u32,
        }
        .encode(&mut self.out);
        for record in &records {
            encode_rec_frame(record, &mut self.out);
        }
        DeliveryFrame::End.encode(&mut self.out);
        // Counted when written (below); latency from each record's store timestamp, both UTC.
        let delivered = |shared: &ServerState| {
            let now = gc_protocol::Timestamp::now().as_micros();
            shared.metrics.deliveries.inc_by(records.len() as u64);
            for record in &records {
                let took = now.saturating_sub(record.timestamp.as_micros());
                shared.metrics.delivery_latency.observe_us(took);
            }
        };
        // Cut short by a limit, or more stored since: deliver again at once.
        let capped = page.through < shared.store.newest_id();
        if !capped && self.dl.answered_within(DEFER_WITHIN) && self.dl.looks_open() {
            let reused = self
                .dl
                .send(&self.out)
                .map_err(|e| CycleError::Delivery(e.into_protocol()))?;
            delivered(shared);
            self.in_flight = Some(InFlight {
                from: last_id,
                reused,
            });
            return Ok(false);
        }
        match self
            .dl
            .exchange::<DeliveryReply>(&self.out)
            .map_err(gc_net::NetError::into_protocol)
        {
            Ok(DeliveryReply::Thx { last_id }) => {
                delivered(shared);
                self.cursor = Some(last_id);
                // A client that did not take the whole batch is asked again next interval rather
                // than flooded at once.
                Ok(last_id >= batch_last && page.through < shared.store.newest_id())
            }
            Ok(DeliveryReply::Err(e)) => Err(CycleError::DeliveryRefused(e)),
            Err(e) => Err(CycleError::Delivery(e)),
        }
    }

    /// Gives back what an idle session need not keep: a delivery buffer that grew for a large
    /// batch (see [`OUT_KEEP`]), and the delivery connection once nothing has gone over it for
    /// `idle` (the server's `idle-timeout`, as on its sending port). A kept TLS connection costs
    /// a few KB (its keys, the peer's certificate, a socket); a session that receives nothing
    /// for that long does without it, and the next delivery opens a fresh one. The heartbeat
    /// connection is in use every interval and stays.
    fn trim(&mut self, idle: Duration) {
        self.out.clear();
        if self.out.capacity() > OUT_KEEP {
            self.out = Vec::with_capacity(256);
        }
        if self.in_flight.is_none()
            && self
                .dl
                .idle_deadline(idle)
                .is_some_and(|at| Instant::now() >= at)
        {
            self.dl.close();
        }
    }

    /// Reads the `Thx` of a delivery left in flight by the last cycle.
    fn settle(&mut self) -> Result<(), CycleError> {
        let Some(in_flight) = self.in_flight.take() else {
            return Ok(());
        };
        match self.dl.receive::<DeliveryReply>() {
            Ok(DeliveryReply::Thx { last_id }) => self.cursor = Some(last_id),
            Ok(DeliveryReply::Err(e)) => return Err(CycleError::DeliveryRefused(e)),
            // The client had closed the kept connection: deliver again on a fresh one.
            Err(e) if in_flight.reused && e.is_stale_connection() => {
                self.cursor = Some(in_flight.from);
            }
            Err(e) => return Err(CycleError::Delivery(e)),
        }
        Ok(())
    }

    /// Pings the client; returns the cursor from its `Pong`.
    fn ping(&mut self, session: &Session, presence_version: u64) -> Result<u64, CycleError> {
        self.out.clear();
        HeartbeatPing {
            token: session.token.clone(),
            server_time: Timestamp::now(),
            presence_version,
        }
        .encode(&mut self.out);
        match self
            .hb
            .exchange::<HeartbeatReply>(&self.out)
            .map_err(gc_net::NetError::into_protocol)
        {
            Ok(HeartbeatReply::Pong { last_id, .. }) => Ok(last_id),
            Ok(HeartbeatReply::Err(e)) => Err(CycleError::HeartbeatRefused(e)),
            Err(e) => Err(CycleError::Heartbeat(e)),
        }
    }

    /// GC/4: `Stopping` on the heartbeat connection (the kept one if open), answered `Pong`.
    /// Whatever the client answers, the session ends next.
    fn tell_stopping(&mut self, session: &Session) {
        self.out.clear();
        HeartbeatRequest::Stopping(Stopping {
            token: session.token.clone(),
            text: "the server is stopping; your client will log in again when it is back".into(),
        })
        .encode(&mut self.out);
        match self.hb.exchange::<HeartbeatReply>(&self.out) {
            Ok(_) => tracing::debug!(session = %session.label(), "told that the server stops"),
            Err(e) => {
                tracing::debug!(session = %session.label(), "could not tell that the server stops: {e}");
            }
        }
    }

    /// After an error: forget the cursor and any delivery in flight, and close both connections
    /// (the next cycle starts with a ping on fresh ones).
    fn forget(&mut self) {
        self.cursor = None;
        self.nothing = (0, 0);
        self.in_flight = None;
        self.hb.close();
        self.dl.close();
    }
}
