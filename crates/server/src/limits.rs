//! Per-user message rate (token bucket), registrations per address, and the bound on
//! connections in progress on the connect and auth ports (failed logins: `throttle.rs`).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

/// Keys tracked at most by one limiter: an attacker cycling through names or addresses cannot
/// grow the server's memory without bound. Old entries go first.
const MAX_TRACKED: usize = 100_000;

/// A token bucket per user: `burst` messages at once, then `per_sec` on average.
#[derive(Debug)]
pub struct RateLimiter {
    burst: f64,
    per_sec: f64,
    buckets: Mutex<HashMap<String, Bucket>>,
}

#[derive(Debug, Clone, Copy)]
struct Bucket {
    tokens: f64,
    at: Instant,
}

impl RateLimiter {
    /// A limiter allowing `burst` at once and `per_sec` sustained.
    pub fn new(burst: u32, per_sec: f64) -> Self {
        Self {
            burst: f64::from(burst),
            per_sec,
            buckets: Mutex::new(HashMap::new()),
        }
    }

    /// Takes one token for `user` at `now`; on refusal returns how long until one is available.
    pub fn check(&self, user: &str, now: Instant) -> Result<(), Duration> {
        let mut buckets = self.buckets.lock();
        if buckets.len() >= MAX_TRACKED && !buckets.contains_key(user) {
            // Full buckets carry no information; forget them.
            let (burst, per_sec) = (self.burst, self.per_sec);
            buckets.retain(|_, b| refill(*b, now, burst, per_sec) < burst);
        }
        let bucket = buckets.entry(user.to_owned()).or_insert(Bucket {
            tokens: self.burst,
            at: now,
        });
        let tokens = refill(*bucket, now, self.burst, self.per_sec);
        if tokens >= 1.0 {
            *bucket = Bucket {
                tokens: tokens - 1.0,
                at: now,
            };
            Ok(())
        } else {
            *bucket = Bucket { tokens, at: now };
            Err(Duration::from_secs_f64((1.0 - tokens) / self.per_sec))
        }
    }
}

fn refill(bucket: Bucket, now: Instant, burst: f64, per_sec: f64) -> f64 {
    let elapsed = now.saturating_duration_since(bucket.at).as_secs_f64();
    (bucket.tokens + elapsed * per_sec).min(burst)
}

/// Events per key over a sliding window (registrations per address).
#[derive(Debug)]
struct Window<K> {
    failures: HashMap<K, VecDeque<Instant>>,
}

impl<K: Hash + Eq + Clone> Window<K> {
    fn count(&mut self, key: &K, now: Instant, window: Duration) -> usize {
        match self.failures.get_mut(key) {
            None => 0,
            Some(times) => {
                while times
                    .front()
                    .is_some_and(|t| now.saturating_duration_since(*t) >= window)
                {
                    times.pop_front();
                }
                let n = times.len();
                if n == 0 {
                    self.failures.remove(key);
                }
                n
            }
        }
    }

    /// When `key` may try again, if it has `max` failures within the window now.
    fn blocked_until(
        &mut self,
        key: &K,
        now: Instant,
        window: Duration,
        max: usize,
    ) -> Option<Instant> {
        if self.count(key, now, window) < max {
            return None;
        }
        let oldest = self.failures.get(key)?.front()?;
        Some(*oldest + window)
    }

    fn record(&mut self, key: &K, now: Instant, window: Duration, max: usize) {
        if self.failures.len() >= MAX_TRACKED && !self.failures.contains_key(key) {
            self.failures.retain(|_, times| {
                times
                    .back()
                    .is_some_and(|t| now.saturating_duration_since(*t) < window)
            });
        }
        let times = self.failures.entry(key.clone()).or_default();
        times.push_back(now);
        // Only the newest `max` failures matter for the decision.
        while times.len() > max {
            times.pop_front();
        }
    }
}

/// Accounts registered per address over the last hour, an IPv6 address counted by its /64 (one
/// host usually has a whole /64 to pick from).
#[derive(Debug)]
pub struct RegistrationLimit {
    max: usize,
    by_addr: Mutex<Window<IpAddr>>,
}

/// The window [`RegistrationLimit`] counts over.
pub const REGISTRATION_WINDOW: Duration = Duration::from_secs(3600);

impl RegistrationLimit {
    /// At most `max` per hour and address; 0: no limit.
    pub fn new(max: usize) -> Self {
        Self {
            max,
            by_addr: Mutex::new(Window {
                failures: HashMap::new(),
            }),
        }
    }

    /// Whether `addr` may register now; if not, how long until it may.
    pub fn check(&self, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        if self.max == 0 {
            return Ok(());
        }
        match self
            .by_addr
            .lock()
            .blocked_until(&prefix(addr), now, REGISTRATION_WINDOW, self.max)
        {
            Some(until) => Err(until.saturating_duration_since(now)),
            None => Ok(()),
        }
    }

    /// Counts a registration made from `addr`.
    pub fn record(&self, addr: IpAddr, now: Instant) {
        if self.max > 0 {
            self.by_addr
                .lock()
                .record(&prefix(addr), now, REGISTRATION_WINDOW, self.max);
        }
    }
}

/// The address an IPv4 client is counted by, or the /64 of an IPv6 one.
pub(crate) fn prefix(addr: IpAddr) -> IpAddr {
    match addr {
        IpAddr::V4(_) => addr,
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => IpAddr::V4(v4),
            None => IpAddr::V6(std::net::Ipv6Addr::from(
                u128::from(v6) & !u128::from(u64::MAX),
            )),
        },
    }
}

/// Connection threads (connect and auth ports) allowed per client address at once.
pub const PENDING_PER_IP: usize = 8;

/// Connections in progress on the connect and auth ports: at most [`PENDING_PER_IP`] per client
/// address, so one address cannot use up every slot, and a configured number in all.
#[derive(Debug)]
pub struct PendingConns {
    counts: Arc<Mutex<PendingCounts>>,
    max_total: usize,
}

#[derive(Debug, Default)]
struct PendingCounts {
    by_ip: HashMap<IpAddr, usize>,
    total: usize,
}

/// A connection's place among those in progress, given back when dropped (however its thread
/// ends).
#[derive(Debug)]
pub struct PendingSlot {
    counts: Arc<Mutex<PendingCounts>>,
    ip: IpAddr,
}

impl PendingConns {
    /// At most `max_total` in all.
    pub fn new(max_total: usize) -> Self {
        Self {
            counts: Arc::default(),
            max_total,
        }
    }

    /// A place for a connection from `ip`, or `None` when its address or the server is at its
    /// limit.
    pub fn begin(&self, ip: IpAddr) -> Option<PendingSlot> {
        let mut counts = self.counts.lock();
        let here = counts.by_ip.get(&ip).copied().unwrap_or(0);
        if here >= PENDING_PER_IP || counts.total >= self.max_total {
            return None;
        }
        counts.by_ip.insert(ip, here + 1);
        counts.total += 1;
        Some(PendingSlot {
            counts: Arc::clone(&self.counts),
            ip,
        })
    }

    /// Connections in progress now.
    pub fn total(&self) -> usize {
        self.counts.lock().total
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        let mut counts = self.counts.lock();
        counts.total = counts.total.saturating_sub(1);
        if let Some(n) = counts.by_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                counts.by_ip.remove(&self.ip);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bucket_allows_burst_then_rate() {
        let rl = RateLimiter::new(10, 5.0);
        let t0 = Instant::now();
        for _ in 0..10 {
            rl.check("alice", t0).unwrap();
        }
        let wait = rl.check("alice", t0).unwrap_err();
        assert!(
            wait <= Duration::from_millis(200) && wait > Duration::ZERO,
            "{wait:?}"
        );
        // Another user has their own bucket.
        rl.check("bob", t0).unwrap();
        // 200 ms later one more token is there, not two.
        let t1 = t0 + Duration::from_millis(200);
        rl.check("alice", t1).unwrap();
        assert!(rl.check("alice", t1).is_err());
        // After a long pause, the bucket is full again but not beyond the burst.
        let t2 = t1 + Duration::from_secs(60);
        for _ in 0..10 {
            rl.check("alice", t2).unwrap();
        }
        assert!(rl.check("alice", t2).is_err());
    }

    #[test]
    fn pending_connections_are_bounded_per_address_and_in_all() {
        let pending = PendingConns::new(10);
        let a: IpAddr = "127.0.0.2".parse().unwrap();
        let b: IpAddr = "127.0.0.3".parse().unwrap();
        let mut slots: Vec<_> = (0..PENDING_PER_IP)
            .map(|_| pending.begin(a).unwrap())
            .collect();
        assert!(pending.begin(a).is_none(), "per address");
        slots.push(pending.begin(b).unwrap());
        slots.push(pending.begin(b).unwrap());
        assert_eq!(pending.total(), 10);
        assert!(pending.begin(b).is_none(), "in all");
        slots.truncate(1);
        assert_eq!(pending.total(), 1);
        assert!(pending.begin(a).is_some());
        drop(slots);
        assert_eq!(pending.total(), 0);
        assert!(
            pending.counts.lock().by_ip.is_empty(),
            "no entry left behind"
        );
    }
}
