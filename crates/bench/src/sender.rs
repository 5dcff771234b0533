//! Sending clients: one kept connection to the sending port per sender, `Msg` frames pipelined up
//! to a window, every `Thx` matched to its `Msg` in order.
//!
//! A body is `<tag>:<sent-µs>:<sender>:<seq>:` padded with `x` to the body size; its
//! client-msg-id is `<tag>-<sender>-<seq>`. The receivers read the send time back out of the body
//! (latency), and the ingest check finds every (sender, seq) in the store.
//!
//! Over TLS the connection is a [`Pipe`] running its own rustls session: the sender waits for
//! replies with `poll`, which cannot see replies already read and decrypted, so it asks the pipe
//! first.

use std::collections::VecDeque;
use std::io::{Read, Write};
use std::net::IpAddr;
use std::time::{Duration, Instant};

use gc_protocol::texts::ServerAddrs;
use gc_protocol::{ClientMsgId, ErrorCode, Frame, Room, SendReply, SendRequest, SessionToken};

use crate::error::BenchError;
use crate::hist::Histogram;
use crate::wire::{Pipe, Wire};

/// How much a sender sends.
#[derive(Debug, Clone, Copy)]
pub enum Pace {
    /// Exactly this many messages, as fast as the window allows.
    Count(u64),
    /// `per_sec` messages a second for `duration`, on a fixed schedule (open loop).
    Rate {
        /// Messages per second.
        per_sec: f64,
        /// For how long.
        duration: Duration,
        /// Delay of this sender's schedule, to spread senders over the period.
        offset: Duration,
    },
    /// As fast as the window allows, for `duration`.
    Max(Duration),
}

impl Pace {
    /// Sender `i` of `senders`, each at `per_sec` messages a second for `duration`, their
    /// schedules spread over the period, as independent people's would be.
    pub fn spread(i: usize, senders: usize, per_sec: f64, duration: Duration) -> Self {
        Self::Rate {
            per_sec,
            duration,
            offset: Duration::from_secs_f64(i as f64 / senders as f64 / per_sec),
        }
    }
}

/// One sender's job.
#[derive(Debug, Clone)]
pub struct SenderJob {
    /// The server.
    pub addrs: ServerAddrs,
    /// Plain or TLS.
    pub wire: Wire,
    /// Which sender this is (in bodies and ids).
    pub index: usize,
    /// Its client's address.
    pub ip: IpAddr,
    /// Its session.
    pub token: SessionToken,
    /// The run's body prefix.
    pub tag: String,
    /// Where send times count from.
    pub epoch: Instant,
    /// Body size in bytes (at least the prefix).
    pub body_bytes: usize,
    /// Most `Msg` frames awaiting `Thx`.
    pub window: usize,
    /// How much to send.
    pub pace: Pace,
    /// GC/3: the room its messages go to (`None`: `#general`, a GC/1 `Msg`).
    pub room: Option<Room>,
    /// Give up at this instant.
    pub deadline: Instant,
}

/// What a sender did.
#[derive(Debug, Clone, Default)]
pub struct SenderReport {
    /// Which sender this was ([`SenderJob::index`]).
    pub index: usize,
    /// `Msg` frames written.
    pub sent: u64,
    /// `Thx` received.
    pub acked: u64,
    /// `Err` received.
    pub errors: u64,
    /// The first error text.
    pub first_error: Option<String>,
    /// The ids of acknowledged messages, in order.
    pub ids: Vec<u64>,
    /// `Msg` → `Thx` time.
    pub ack_latency: Histogram,
    /// When the first `Msg` went out.
    pub first_send: Option<Instant>,
    /// When the last `Thx` came in.
    pub last_ack: Option<Instant>,
    /// Rate mode: sends more than 1 ms behind their schedule.
    pub late: u64,
    /// Stopped by the deadline with messages unacknowledged or unsent.
    pub timed_out: bool,
}

/// Runs one sender to completion (its own thread).
pub fn run(job: &SenderJob) -> Result<SenderReport, BenchError> {
    let mut stream = job.wire.pipe_to(job.ip, job.addrs.send, job.deadline)?;
    let tcp = stream.tcp();
    tcp.set_write_timeout(Some(Duration::from_secs(10)))
        .and_then(|()| tcp.set_read_timeout(Some(Duration::from_secs(10))))
        .map_err(|e| BenchError::io("set socket timeouts", e))?;
    let mut s = State {
        job,
        report: SenderReport {
            index: job.index,
            ..SenderReport::default()
        },
        outstanding: VecDeque::with_capacity(job.window),
        wbuf: Vec::with_capacity(job.window * (job.body_bytes * 2 + 120)),
        rbuf: vec![0; 64 * 1024],
        start: 0,
        end: 0,
        seq: 0,
    };
    let begin = Instant::now();
    loop {
        let now = Instant::now();
        if now >= job.deadline {
            s.report.timed_out = true;
            break;
        }
        let (due, done_sending, next_due) = s.schedule(begin, now);
        while s.seq < due && s.outstanding.len() < job.window {
            if let Pace::Rate {
                per_sec, offset, ..
            } = job.pace
            {
                // Goes out more than 1 ms after its slot: the window was full, or this thread
                // was not scheduled in time.
                let slot = begin + offset + Duration::from_secs_f64(s.seq as f64 / per_sec);
                if now.saturating_duration_since(slot) > Duration::from_millis(1) {
                    s.report.late += 1;
                }
            }
            s.encode(now)?;
        }
        if !s.wbuf.is_empty() {
            stream
                .write_all(&s.wbuf)
                .and_then(|()| stream.flush())
                .map_err(|e| BenchError::io(format!("sender {}: write", job.index), e))?;
            s.wbuf.clear();
        }
        if done_sending && s.outstanding.is_empty() {
            break;
        }
        // Wait for replies, but not past the next scheduled send.
        let until = next_due.map_or(job.deadline, |t| t.min(job.deadline));
        s.read_replies(&mut stream, until)?;
    }
    Ok(s.report)
}

struct State<'a> {
    job: &'a SenderJob,
    report: SenderReport,
    outstanding: VecDeque<Instant>,
    wbuf: Vec<u8>,
    rbuf: Vec<u8>,
    start: usize,
    end: usize,
    seq: u64,
}

impl State<'_> {
    /// How many messages should have been sent by `now`, whether sending is over, and when the
    /// next one is due (rate mode).
    fn schedule(&mut self, begin: Instant, now: Instant) -> (u64, bool, Option<Instant>) {
        match self.job.pace {
            Pace::Count(n) => (n, self.seq >= n, None),
            Pace::Max(d) => {
                let over = now >= begin + d;
                (if over { self.seq } else { u64::MAX }, over, None)
            }
            Pace::Rate {
                per_sec,
                duration,
                offset,
            } => {
                let t0 = begin + offset;
                let total = (duration.as_secs_f64() * per_sec).round() as u64;
                if now < t0 {
                    return (0, false, Some(t0));
                }
                let elapsed = (now - t0).as_secs_f64();
                let due = ((elapsed * per_sec).floor() as u64 + 1).min(total);
                let next =
                    (due < total).then(|| t0 + Duration::from_secs_f64(due as f64 / per_sec));
                (due, due >= total && self.seq >= total, next)
            }
        }
    }

    fn encode(&mut self, now: Instant) -> Result<(), BenchError> {
        let job = self.job;
        let sent_us = now.saturating_duration_since(job.epoch).as_micros();
        let mut body = format!("{}:{sent_us}:{}:{}:", job.tag, job.index, self.seq);
        while body.len() < job.body_bytes {
            body.push('x');
        }
        let id = format!("{}-{}-{}", job.tag, job.index, self.seq);
        let client_msg_id = ClientMsgId::new(id.as_str())
            .map_err(|e| BenchError::Invalid(format!("client-msg-id `{id}`: {e}")))?;
        SendRequest::Msg {
            token: job.token.clone(),
            client_msg_id,
            body: body.into_bytes(),
            room: job.room.clone(),
        }
        .encode(&mut self.wbuf);
        self.outstanding.push_back(now);
        self.report.sent += 1;
        self.seq += 1;
        if self.report.first_send.is_none() {
            self.report.first_send = Some(now);
        }
        Ok(())
    }

    /// Reads until at least one reply arrived or `until` passed, then handles every complete line.
    fn read_replies(&mut self, stream: &mut Pipe, until: Instant) -> Result<(), BenchError> {
        let buffered = stream
            .buffered()
            .map_err(|e| BenchError::io(format!("sender {}: read", self.job.index), e))?;
        if buffered || self.wait_readable(stream, until)? {
            self.read_some(stream)?;
        }
        Ok(())
    }

    /// Waits until the socket is readable (true) or `until` passed.
    fn wait_readable(&self, stream: &Pipe, until: Instant) -> Result<bool, BenchError> {
        let now = Instant::now();
        if until <= now {
            return Ok(false);
        }
        // Socket receive timeouts count in kernel ticks (several ms), far too coarse for a send
        // schedule: wait with ppoll, which sleeps to the microsecond.
        let wait = (until - now).max(Duration::from_micros(20));
        let timeout = rustix::event::Timespec {
            tv_sec: wait.as_secs() as i64,
            tv_nsec: i64::from(wait.subsec_nanos()),
        };
        let mut fds = [rustix::event::PollFd::new(
            stream.tcp(),
            rustix::event::PollFlags::IN,
        )];
        match rustix::event::poll(&mut fds, Some(&timeout)) {
            Ok(0) | Err(rustix::io::Errno::INTR) => Ok(false),
            Ok(_) => Ok(true),
            Err(e) => Err(BenchError::io(
                format!("sender {}: poll", self.job.index),
                e.into(),
            )),
        }
    }

    /// Reads once (replies are there), then handles every complete line.
    fn read_some(&mut self, stream: &mut Pipe) -> Result<(), BenchError> {
        if self.end == self.rbuf.len() {
            self.rbuf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        match stream.read(&mut self.rbuf[self.end..]) {
            Ok(0) => {
                return Err(BenchError::Refused {
                    what: format!("sender {}", self.job.index),
                    answer: "the server closed the sending connection".into(),
                });
            }
            Ok(n) => self.end += n,
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock
                        | std::io::ErrorKind::TimedOut
                        | std::io::ErrorKind::Interrupted
                ) =>
            {
                return Ok(());
            }
            Err(e) => {
                return Err(BenchError::io(
                    format!("sender {}: read", self.job.index),
                    e,
                ));
            }
        }
        let now = Instant::now();
        while let Some(pos) = self.rbuf[self.start..self.end]
            .iter()
            .position(|&b| b == b'\n')
        {
            let line = &self.rbuf[self.start..self.start + pos];
            self.start += pos + 1;
            let Some(sent) = self.outstanding.pop_front() else {
                return Err(BenchError::Refused {
                    what: format!("sender {}", self.job.index),
                    answer: format!("unsolicited `{}`", String::from_utf8_lossy(line)),
                });
            };
            match SendReply::parse(line) {
                Ok(SendReply::Thx { id, .. }) => {
                    self.report.acked += 1;
                    self.report.ids.push(id);
                    self.report
                        .ack_latency
                        .record(now.saturating_duration_since(sent).as_micros() as u64);
                    self.report.last_ack = Some(now);
                }
                Ok(SendReply::Err(e)) => {
                    if e.code == ErrorCode::RateLimited {
                        return Err(BenchError::RateLimited(e.to_string()));
                    }
                    self.report.errors += 1;
                    self.report.first_error.get_or_insert_with(|| e.to_string());
                }
                _ => {
                    return Err(BenchError::Refused {
                        what: format!("sender {}: Msg", self.job.index),
                        answer: String::from_utf8_lossy(line).into_owned(),
                    });
                }
            }
        }
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Ok(())
    }
}
