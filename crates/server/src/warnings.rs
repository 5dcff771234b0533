//! How many warnings one address can put in the log: a peer without an account must not be able
//! to grow the log at the speed it can open connections (500 KB of garbage once grew it by
//! 37 MB). Each address gets a few warnings a minute; the next one logged after a pause says how
//! many were left out. An IPv6 address counts by its /64, which one host usually has to pick
//! from.

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Warnings logged per address per window.
const PER_WINDOW: u32 = 10;
/// The window.
const WINDOW: Duration = Duration::from_secs(60);
/// Addresses remembered at once; beyond, warnings from new addresses are left out until old
/// windows pass (a flood from more addresses than this is a flood: its first warnings say so).
const MAX_ADDRESSES: usize = 10_000;

#[derive(Debug)]
struct Window {
    start: Instant,
    logged: u32,
    /// Left out since the last one logged.
    suppressed: u64,
}

/// Per-address warning budget for peers that have not signed in.
#[derive(Debug, Default)]
pub struct WarnLimiter {
    windows: Mutex<HashMap<IpAddr, Window>>,
}

impl WarnLimiter {
    /// Whether a warning about `ip` may be logged now: `Some(n)` with the number left out since
    /// the last one logged (to say so in this one), or `None` to leave it out.
    pub fn allow(&self, ip: IpAddr, now: Instant) -> Option<u64> {
        let ip = crate::limits::prefix(ip);
        let mut windows = self.windows.lock();
        if windows.len() >= MAX_ADDRESSES && !windows.contains_key(&ip) {
            windows.retain(|_, w| now.saturating_duration_since(w.start) < WINDOW);
            if windows.len() >= MAX_ADDRESSES {
                return None;
            }
        }
        let w = windows.entry(ip).or_insert(Window {
            start: now,
            logged: 0,
            suppressed: 0,
        });
        if now.saturating_duration_since(w.start) >= WINDOW {
            w.start = now;
            w.logged = 0;
        }
        if w.logged >= PER_WINDOW {
            w.suppressed += 1;
            return None;
        }
        w.logged += 1;
        Some(std::mem::take(&mut w.suppressed))
    }
}

/// Connections in progress that the pool dropped for room (or past their deadline): said in one
/// warning a minute at most, with the count since the last one, however hard the flood.
#[derive(Debug, Default)]
pub struct DropNotice {
    state: Mutex<DropState>,
}

#[derive(Debug, Default)]
struct DropState {
    last: Option<Instant>,
    dropped: u64,
    expired: u64,
}

impl DropNotice {
    /// Counts `dropped` and `expired` connections; `Some` with the counts since the last warning
    /// when one is due now.
    pub fn add(&self, dropped: usize, expired: usize, now: Instant) -> Option<(u64, u64)> {
        let mut s = self.state.lock();
        s.dropped += dropped as u64;
        s.expired += expired as u64;
        if s.dropped + s.expired == 0
            || s.last
                .is_some_and(|t| now.saturating_duration_since(t) < WINDOW)
        {
            return None;
        }
        s.last = Some(now);
        Some((
            std::mem::take(&mut s.dropped),
            std::mem::take(&mut s.expired),
        ))
    }
}

/// What to add to a warning that comes after `suppressed` were left out.
pub fn suppressed_note(suppressed: u64) -> String {
    if suppressed == 0 {
        String::new()
    } else {
        format!(" ({suppressed} more warnings about this address were left out)")
    }
}

/// Logs a warning about an address that has not signed in, within its budget
/// ([`WarnLimiter`]); the message is a format string and its arguments, as for `tracing::warn!`.
macro_rules! peer_warn {
    ($shared:expr, $ip:expr, $($field:tt)*) => {
        if let Some(suppressed) = $shared.peer_warnings.allow($ip, std::time::Instant::now()) {
            let note = $crate::warnings::suppressed_note(suppressed);
            tracing::warn!($($field)*);
            if !note.is_empty() {
                tracing::warn!(ip = %$ip, "{}", note.trim_start());
            }
        }
    };
}
pub(crate) use peer_warn;

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_few_per_minute_per_address_then_a_count() {
        let limiter = WarnLimiter::default();
        let (a, b) = (IpAddr::from([10, 0, 0, 1]), IpAddr::from([10, 0, 0, 2]));
        let t0 = Instant::now();
        for _ in 0..PER_WINDOW {
            assert_eq!(limiter.allow(a, t0), Some(0));
        }
        for _ in 0..5 {
            assert_eq!(limiter.allow(a, t0), None);
        }
        assert_eq!(limiter.allow(b, t0), Some(0), "other addresses keep theirs");
        assert_eq!(
            limiter.allow(a, t0 + WINDOW),
            Some(5),
            "and then says how many"
        );
        assert_eq!(limiter.allow(a, t0 + WINDOW), Some(0));
    }

    #[test]
    fn an_ipv6_host_counts_by_its_64() {
        let limiter = WarnLimiter::default();
        let t0 = Instant::now();
        let host = |i: u16| IpAddr::from([0x2001, 0xdb8, 0, 1, 0, 0, 0, i]);
        for i in 0..PER_WINDOW as u16 {
            assert_eq!(limiter.allow(host(i), t0), Some(0));
        }
        assert_eq!(limiter.allow(host(999), t0), None, "same /64");
        let other = IpAddr::from([0x2001, 0xdb8, 0, 2, 0, 0, 0, 1]);
        assert_eq!(limiter.allow(other, t0), Some(0), "another /64");
    }

    #[test]
    fn drops_are_told_once_a_minute_with_the_count() {
        let notice = DropNotice::default();
        let t0 = Instant::now();
        assert_eq!(notice.add(0, 0, t0), None, "nothing to tell");
        assert_eq!(notice.add(1, 0, t0), Some((1, 0)));
        assert_eq!(notice.add(5, 1, t0 + WINDOW / 2), None);
        assert_eq!(notice.add(2, 0, t0 + WINDOW), Some((7, 1)));
    }

    #[test]
    fn memory_is_bounded() {
        let limiter = WarnLimiter::default();
        let t0 = Instant::now();
        for i in 0..MAX_ADDRESSES as u32 {
            assert!(limiter.allow(IpAddr::from(i.to_be_bytes()), t0).is_some());
        }
        let late = IpAddr::from([255, 255, 255, 255]);
        assert_eq!(limiter.allow(late, t0), None, "full: left out");
        assert_eq!(limiter.windows.lock().len(), MAX_ADDRESSES);
        assert_eq!(
            limiter.allow(late, t0 + WINDOW),
            Some(0),
            "old windows make room"
        );
    }
}
