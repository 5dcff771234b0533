//! Messages waiting for the server's `Thx`: order, retry gates and what each reply means.
//!
//! Pure bookkeeping, no I/O: the connection thread asks for the next batch, sends it pipelined,
//! and feeds the replies back in order. Each message remembers its room and is resent into that
//! same room; one batch may hold messages of several rooms (each `Msg` names its own).

use std::collections::VecDeque;
use std::time::{Duration, Instant, SystemTime};

use gc_protocol::{ClientMsgId, ErrorCode, ErrorFrame, Room, Timestamp, texts};

use crate::event::{Ack, Rejection};

/// Most messages sent in one pipelined write.
pub const MAX_PIPELINE: usize = 32;
/// Most messages waiting at once.
pub const MAX_OUTBOX: usize = 10_000;
/// The wait after `rate-limited` when the server's text gives no time.
pub const DEFAULT_RATE_WAIT: Duration = Duration::from_secs(1);
/// The longest wait taken from a server's `rate-limited` text.
const MAX_RATE_WAIT: Duration = Duration::from_secs(60);

/// A message not yet acknowledged by the server.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct PendingMessage {
    /// Its idempotency key: every resend uses the same one, so the server stores it once.
    pub client_msg_id: ClientMsgId,
    /// Where it goes: `#general`, another room, or a direct conversation.
    pub room: Room,
    /// The text.
    pub text: String,
    /// When it was queued.
    pub queued_at: SystemTime,
    /// How many times it has been sent so far.
    pub attempts: u32,
}

/// What the server answered to one `Msg`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum MsgReply {
    /// `Thx <id> <timestamp>`.
    Thx {
        /// The record id.
        id: u64,
        /// The stored timestamp.
        timestamp: Timestamp,
    },
    /// `Err …`.
    Err(ErrorFrame),
}

/// What the connection thread should do after a reply, beyond the outbox bookkeeping.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ReplyEffect {
    /// Acknowledged: tell the UI.
    Acked(Ack),
    /// Refused for good: tell the UI.
    Rejected(Rejection),
    /// Rate-limited: the outbox waits, then resends with the same id.
    RateLimited(Duration),
    /// The session is gone: log in again, then resend.
    Session,
    /// The server cannot take it now (`shutting-down`, `internal`, …): keep it and retry later.
    Retry {
        /// The code.
        code: ErrorCode,
        /// The server's text.
        text: String,
    },
}

/// The outbox: FIFO, so messages are stored in the order they were written.
#[derive(Debug)]
pub struct Outbox {
    items: VecDeque<PendingMessage>,
    /// No sending before this (after `rate-limited` or a server-side failure).
    gate: Option<Instant>,
    /// After a rate limit, send one at a time until a round goes through.
    cautious: bool,
}

impl Default for Outbox {
    fn default() -> Self {
        Self::new()
    }
}

impl Outbox {
    /// An empty outbox.
    pub fn new() -> Self {
        Self {
            items: VecDeque::new(),
            gate: None,
            cautious: false,
        }
    }

    /// Queues a message for `room` under a fresh id.
    pub fn push(&mut self, client_msg_id: ClientMsgId, room: Room, text: String) {
        self.items.push_back(PendingMessage {
            client_msg_id,
            room,
            text,
            queued_at: SystemTime::now(),
            attempts: 0,
        });
    }

    /// Messages waiting.
    pub fn len(&self) -> usize {
        self.items.len()
    }

    /// Whether nothing is waiting.
    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }

    /// A copy of what is waiting, oldest first.
    pub fn snapshot(&self) -> Vec<PendingMessage> {
        self.items.iter().cloned().collect()
    }

    /// Removes and returns everything (at shutdown).
    pub fn take_all(&mut self) -> Vec<PendingMessage> {
        self.items.drain(..).collect()
    }

    /// Removes and returns the messages for rooms other than `#general` (a session without
    /// rooms cannot send them), oldest first.
    pub fn take_rooms(&mut self) -> Vec<PendingMessage> {
        let (general, rooms) = self.items.drain(..).partition(|m| m.room.is_general());
        self.items = general;
        rooms.into()
    }

    /// When sending may resume, if it is held back.
    pub fn gate(&self) -> Option<Instant> {
        self.gate
    }

    /// Holds sending back until `until` (never shortens an existing gate).
    pub fn hold_until(&mut self, until: Instant) {
        self.gate = Some(self.gate.map_or(until, |g| g.max(until)));
    }

    /// Whether a batch could be sent at `now`.
    pub fn ready(&self, now: Instant) -> bool {
        !self.items.is_empty() && self.gate.is_none_or(|g| now >= g)
    }

    /// The next messages to send (oldest first, at most `max`, fewer after a rate limit), or none
    /// while gated. Counts an attempt for each.
    pub fn next_batch(&mut self, now: Instant, max: usize) -> Vec<PendingMessage> {
        if !self.ready(now) {
            return Vec::new();
        }
        self.gate = None;
        let n = if self.cautious { 1 } else { max.max(1) };
        self.items
            .iter_mut()
            .take(n)
            .map(|m| {
                m.attempts += 1;
                m.clone()
            })
            .collect()
    }

    /// Applies the server's reply to one message.
    pub fn apply(
        &mut self,
        now: Instant,
        client_msg_id: &ClientMsgId,
        reply: MsgReply,
    ) -> ReplyEffect {
        match reply {
            MsgReply::Thx { id, timestamp } => {
                self.remove(client_msg_id);
                ReplyEffect::Acked(Ack {
                    client_msg_id: client_msg_id.clone(),
                    id,
                    timestamp,
                })
            }
            MsgReply::Err(e) => match e.code {
                ErrorCode::RateLimited => {
                    let wait = parse_retry_after(&e.text).unwrap_or(DEFAULT_RATE_WAIT);
                    self.hold_until(now + wait);
                    self.cautious = true;
                    ReplyEffect::RateLimited(wait)
                }
                ErrorCode::Session => ReplyEffect::Session,
                ErrorCode::ShuttingDown | ErrorCode::Internal | ErrorCode::Full => {
                    ReplyEffect::Retry {
                        code: e.code,
                        text: e.text,
                    }
                }
                code => {
                    // too-large, malformed, blocked, no-room, forbidden (muted, banned, not in
                    // the room), version, or a code that makes no sense here: resending the same
                    // bytes cannot help.
                    let room = self
                        .remove(client_msg_id)
                        .map_or_else(Room::general, |m| m.room);
                    ReplyEffect::Rejected(Rejection {
                        client_msg_id: client_msg_id.clone(),
                        room,
                        code,
                        text: e.text,
                    })
                }
            },
        }
    }

    /// A round went through without a rate limit: send whole batches again.
    pub fn round_ok(&mut self) {
        self.cautious = false;
    }

    fn remove(&mut self, client_msg_id: &ClientMsgId) -> Option<PendingMessage> {
        let i = self
            .items
            .iter()
            .position(|m| &m.client_msg_id == client_msg_id)?;
        self.items.remove(i)
    }
}

/// The wait a `rate-limited` text asks for ([`texts::retry_after`]), at most a minute: a server
/// cannot park the outbox for longer.
pub fn parse_retry_after(text: &str) -> Option<Duration> {
    texts::retry_after(text).map(|wait| wait.min(MAX_RATE_WAIT))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> ClientMsgId {
        ClientMsgId::new(s).unwrap()
    }

    fn outbox(n: usize) -> Outbox {
        let mut o = Outbox::new();
        for i in 0..n {
            o.push(id(&format!("m{i}")), Room::general(), format!("text {i}"));
        }
        o
    }

    fn err(code: ErrorCode, text: &str) -> MsgReply {
        MsgReply::Err(ErrorFrame::new(code, text))
    }

    #[test]
    fn batches_are_fifo_and_acks_remove() {
        let now = Instant::now();
        let mut o = outbox(5);
        let batch = o.next_batch(now, 3);
        let ids: Vec<_> = batch.iter().map(|m| m.client_msg_id.as_str()).collect();
        assert_eq!(ids, ["m0", "m1", "m2"]);
        let out = o.apply(
            now,
            &id("m1"),
            MsgReply::Thx {
                id: 9,
                timestamp: Timestamp::from_micros(1),
            },
        );
        assert!(matches!(out, ReplyEffect::Acked(Ack { id: 9, .. })));
        let left: Vec<_> = o.snapshot().into_iter().map(|m| m.text).collect();
        assert_eq!(left, ["text 0", "text 2", "text 3", "text 4"]);
        // Resent messages keep their id and count attempts.
        let again = o.next_batch(now, 10);
        assert_eq!(again[0].client_msg_id, id("m0"));
        assert_eq!(o.snapshot()[0].attempts, 2);
    }

    #[test]
    fn rate_limit_gates_then_sends_one_at_a_time() {
        let now = Instant::now();
        let mut o = outbox(4);
        o.next_batch(now, 10);
        let out = o.apply(
            now,
            &id("m0"),
            err(ErrorCode::RateLimited, "too many messages; retry in 0.3 s"),
        );
        assert_eq!(out, ReplyEffect::RateLimited(Duration::from_millis(300)));
        assert_eq!(o.len(), 4, "kept");
        assert!(o.next_batch(now, 10).is_empty(), "gated");
        assert!(!o.ready(now + Duration::from_millis(299)));
        let later = now + Duration::from_millis(300);
        let batch = o.next_batch(later, 10);
        assert_eq!(batch.len(), 1, "cautious after a rate limit");
        assert_eq!(batch[0].client_msg_id, id("m0"), "same id resent");
        o.round_ok();
        assert_eq!(o.next_batch(later, 10).len(), 4);
    }

    #[test]
    fn permanent_refusals_leave_and_transient_ones_stay() {
        let now = Instant::now();
        let mut o = outbox(4);
        for (i, code) in [
            ErrorCode::TooLarge,
            ErrorCode::Blocked,
            ErrorCode::Malformed,
        ]
        .into_iter()
        .enumerate()
        {
            let out = o.apply(now, &id(&format!("m{i}")), err(code, "no"));
            assert!(matches!(out, ReplyEffect::Rejected(Rejection { code: c, .. }) if c == code));
        }
        assert_eq!(o.len(), 1);
        assert_eq!(
            o.apply(now, &id("m3"), err(ErrorCode::Session, "")),
            ReplyEffect::Session
        );
        assert!(matches!(
            o.apply(now, &id("m3"), err(ErrorCode::Internal, "disk")),
            ReplyEffect::Retry { .. }
        ));
        assert_eq!(o.len(), 1);
        assert_eq!(o.take_all().len(), 1);
        assert!(o.is_empty());
    }

    #[test]
    fn each_message_keeps_its_room_through_resends_and_refusals() {
        let now = Instant::now();
        let dev = Room::new("#dev").unwrap();
        let dm = Room::new("@alice+bob").unwrap();
        let mut o = Outbox::new();
        o.push(id("g"), Room::general(), "in general".into());
        o.push(id("d"), dev.clone(), "in dev".into());
        o.push(id("p"), dm.clone(), "to bob".into());
        let rooms = |batch: &[PendingMessage]| -> Vec<Room> {
            batch.iter().map(|m| m.room.clone()).collect()
        };
        let first = o.next_batch(now, 10);
        assert_eq!(rooms(&first), [Room::general(), dev.clone(), dm.clone()]);
        // Cut before any reply: the resend names the same rooms with the same ids.
        let again = o.next_batch(now, 10);
        assert_eq!(rooms(&again), rooms(&first));
        assert_eq!(again[1].client_msg_id, id("d"));
        // A refusal says which room it was for.
        let out = o.apply(
            now,
            &id("d"),
            err(
                ErrorCode::Forbidden,
                "you are muted in #dev for another 10 min",
            ),
        );
        assert!(
            matches!(&out, ReplyEffect::Rejected(r) if r.room == dev && r.code == ErrorCode::Forbidden),
            "{out:?}"
        );
        // A session without rooms takes the rooms' messages out, keeping #general's.
        let taken = o.take_rooms();
        assert_eq!(rooms(&taken), [dm]);
        assert_eq!(rooms(&o.snapshot()), [Room::general()]);
    }

    #[test]
    fn gates_never_shorten() {
        let now = Instant::now();
        let mut o = outbox(1);
        o.hold_until(now + Duration::from_secs(5));
        o.hold_until(now + Duration::from_secs(1));
        assert_eq!(o.gate(), Some(now + Duration::from_secs(5)));
    }

    #[test]
    fn rate_waits_are_read_from_the_text_and_capped_at_a_minute() {
        // The text's forms are gc_protocol::texts' own tests; the cap is the outbox's.
        let cases = [
            (
                "too many messages (at most 10 at once, then 5 per second); retry in 0.2 s",
                Some(200),
            ),
            ("retry in 100000 s", Some(60_000)),
            ("slow down", None),
        ];
        for (text, ms) in cases {
            assert_eq!(
                parse_retry_after(text),
                ms.map(Duration::from_millis),
                "{text}"
            );
        }
    }
}
