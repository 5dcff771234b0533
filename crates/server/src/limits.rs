//! Per-user message rate (token bucket), registrations per address, and the bound on
//! connections in progress on the connect and auth ports (failed logins: `throttle.rs`).

use std::collections::{HashMap, VecDeque};
use std::hash::Hash;
use std::net::{IpAddr, Shutdown, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicU8, Ordering};
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
            // Saturated: a rate too low for the wait to be a `Duration` (the configuration
            // refuses one) must not panic the session.
            Err(Duration::try_from_secs_f64((1.0 - tokens) / self.per_sec).unwrap_or(Duration::MAX))
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
pub fn prefix(addr: IpAddr) -> IpAddr {
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

/// Connection threads (connect and auth ports) allowed per client address (an IPv6 /64) at once.
pub const PENDING_PER_IP: usize = 8;

/// A connection that has not sent a whole frame for this long is stalled: the first to go when
/// room is needed. A client sends its first frame one round trip after its TLS handshake, and
/// each next one a round trip after the answer; only the wait for a login's `Proof` can take
/// longer (its PBKDF2), and that wait is protected ([`PendingSlot::busy`]).
pub const STALL_GRACE: Duration = Duration::from_secs(1);

/// Connections in progress on the connect and auth ports (before a login): at most
/// [`PENDING_PER_IP`] per client address (an IPv6 /64), so one address cannot use up every slot,
/// and a configured number in all.
///
/// A full pool does not turn the newcomer away: it drops a connection already in it (see
/// [`PendingConns::begin`]), chosen so that an attacker's idle connections are the likely
/// victims and a client that is signing in is the least likely one. From half full on, a
/// newcomer drops a stalled connection with a probability that rises to 1 at the limit (the
/// random early drop of OpenSSH's `MaxStartups`), so room usually exists before anyone must be
/// dropped. Each connection also has a deadline counted from its accept, past which it is
/// dropped however steadily it sends.
#[derive(Debug)]
pub struct PendingConns {
    pool: Arc<Mutex<Pool>>,
    max_total: usize,
    /// From this many connections on, a newcomer may drop a stalled one.
    early_from: usize,
    lifetime: Duration,
}

#[derive(Debug)]
struct Pool {
    entries: HashMap<u64, Entry>,
    by_prefix: HashMap<IpAddr, usize>,
    next_id: u64,
    rng: u64,
}

#[derive(Debug)]
struct Entry {
    prefix: IpAddr,
    accepted: Instant,
    /// When the last whole frame arrived (the accept, before the first).
    progress: Instant,
    /// A login is under way (the server waits for its proof, or calls the client back).
    busy: bool,
    end: Instant,
    /// A duplicate of the socket, to cut it when the connection is dropped.
    socket: Option<TcpStream>,
    fate: Arc<AtomicU8>,
}

/// What became of a slot: still in the pool, or dropped from it.
const LIVE: u8 = 0;
/// Dropped to make room for a newcomer: its thread tells the peer `Err full`.
const DROPPED: u8 = 1;
/// Dropped past its deadline.
const EXPIRED: u8 = 2;

/// Why [`PendingConns::begin`] turned a connection away.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// Its address (an IPv6 /64) has [`PENDING_PER_IP`] connections in progress.
    Address,
    /// Every connection in progress is one the pool cannot cut (its socket could not be
    /// duplicated: out of descriptors).
    Full,
}

/// A connection let in, and how many others went to make room for it (or past their deadline).
#[derive(Debug)]
pub struct Admitted {
    /// Its place.
    pub slot: PendingSlot,
    /// Connections dropped to make room.
    pub dropped: usize,
    /// Connections dropped past their deadline.
    pub expired: usize,
}

/// A connection's place among those in progress, given back when dropped (however its thread
/// ends), or taken away when the pool drops the connection.
#[derive(Debug)]
pub struct PendingSlot {
    pool: Arc<Mutex<Pool>>,
    id: u64,
    ip: IpAddr,
    end: Instant,
    fate: Arc<AtomicU8>,
}

impl PendingConns {
    /// At most `max_total` in all; each connection lives at most `lifetime` from its accept.
    pub fn new(max_total: usize, lifetime: Duration) -> Self {
        Self::with_seed(max_total, lifetime, random_seed())
    }

    /// [`PendingConns::new`] with a fixed seed for the random early drop (tests).
    pub fn with_seed(max_total: usize, lifetime: Duration, seed: u64) -> Self {
        Self {
            pool: Arc::new(Mutex::new(Pool {
                entries: HashMap::new(),
                by_prefix: HashMap::new(),
                next_id: 0,
                rng: seed | 1,
            })),
            max_total: max_total.max(1),
            early_from: max_total / 2,
            lifetime,
        }
    }

    /// A place for `socket`, accepted from `ip` at `now`, unless its address (an IPv6 /64) is at
    /// its limit.
    ///
    /// Connections past their deadline go first. Then, with `n` connections in progress out of
    /// at most `max`, from `n = max/2` on the newcomer drops a stalled one (no whole frame for
    /// [`STALL_GRACE`], no login under way) with probability `(n − max/2 + 1) / (max − max/2 + 1)`;
    /// at `n = max` it always drops one, stalled or not. The victim: not in a login before one
    /// that is; stalled before active; from the address with the most connections in progress
    /// before one from an address with fewer; the oldest first. A dropped connection's socket is
    /// shut down for reading, so its thread ends at once (telling the peer `Err full`).
    pub fn begin(&self, socket: &TcpStream, ip: IpAddr, now: Instant) -> Result<Admitted, Refusal> {
        let prefix = prefix(ip);
        let mut pool = self.pool.lock();
        let expired = pool.drop_expired(now);
        if pool.by_prefix.get(&prefix).copied().unwrap_or(0) >= PENDING_PER_IP {
            return Err(Refusal::Address);
        }
        let n = pool.entries.len();
        let mut dropped = 0;
        if n >= self.max_total {
            // Full: someone goes. Refusing the newcomer instead would hand the pool to whoever
            // keeps it full.
            while pool.entries.len() >= self.max_total {
                let Some(victim) = pool.victim(now, false) else {
                    break;
                };
                pool.drop_entry(victim, DROPPED);
                dropped += 1;
            }
        } else if n >= self.early_from {
            let range = (self.max_total - self.early_from + 1) as u64;
            let chance = (n - self.early_from + 1) as u64;
            if pool.next_random() % range < chance
                && let Some(victim) = pool.victim(now, true)
            {
                pool.drop_entry(victim, DROPPED);
                dropped += 1;
            }
        }
        if pool.entries.len() >= self.max_total {
            // Only connections whose socket could not be duplicated are left: they cannot be cut.
            return Err(Refusal::Full);
        }
        pool.next_id += 1;
        let id = pool.next_id;
        let end = now + self.lifetime;
        let fate = Arc::new(AtomicU8::new(LIVE));
        pool.entries.insert(
            id,
            Entry {
                prefix,
                accepted: now,
                progress: now,
                busy: false,
                end,
                socket: socket.try_clone().ok(),
                fate: Arc::clone(&fate),
            },
        );
        *pool.by_prefix.entry(prefix).or_insert(0) += 1;
        Ok(Admitted {
            slot: PendingSlot {
                pool: Arc::clone(&self.pool),
                id,
                ip,
                end,
                fate,
            },
            dropped,
            expired,
        })
    }

    /// Connections in progress now.
    pub fn total(&self) -> usize {
        self.pool.lock().entries.len()
    }
}

impl Pool {
    /// Drops every connection past its deadline; returns how many. Their threads normally end
    /// them first (every read has the deadline); this catches one stuck elsewhere.
    fn drop_expired(&mut self, now: Instant) -> usize {
        let expired: Vec<u64> = self
            .entries
            .iter()
            .filter(|(_, e)| now >= e.end + STALL_GRACE && e.socket.is_some())
            .map(|(id, _)| *id)
            .collect();
        for id in &expired {
            self.drop_entry(*id, EXPIRED);
        }
        expired.len()
    }

    /// The connection to drop: see [`PendingConns::begin`]. `stalled_only`: only a stalled one
    /// with no login under way (the random early drop), else anyone.
    fn victim(&self, now: Instant, stalled_only: bool) -> Option<u64> {
        self.entries
            .iter()
            .filter(|(_, e)| e.socket.is_some())
            .map(|(id, e)| {
                let stalled = now.saturating_duration_since(e.progress) >= STALL_GRACE;
                let crowd = self.by_prefix.get(&e.prefix).copied().unwrap_or(0);
                let age = now.saturating_duration_since(e.accepted);
                (id, (!e.busy, stalled, crowd, age))
            })
            .filter(|(_, (idle, stalled, _, _))| !stalled_only || (*idle && *stalled))
            .max_by_key(|(_, key)| *key)
            .map(|(id, _)| *id)
    }

    /// Takes `id` out of the pool and cuts its socket for reading: its thread sees the end of
    /// the stream at once.
    fn drop_entry(&mut self, id: u64, fate: u8) {
        if let Some(e) = self.remove(id) {
            e.fate.store(fate, Ordering::SeqCst);
            if let Some(socket) = &e.socket {
                let _ = socket.shutdown(Shutdown::Read);
            }
        }
    }

    fn remove(&mut self, id: u64) -> Option<Entry> {
        let e = self.entries.remove(&id)?;
        if let Some(n) = self.by_prefix.get_mut(&e.prefix) {
            *n -= 1;
            if *n == 0 {
                self.by_prefix.remove(&e.prefix);
            }
        }
        Some(e)
    }

    /// xorshift64: enough for the early drop's coin (an attacker gains nothing by predicting
    /// it: a dropped stalled connection is his own, most likely).
    fn next_random(&mut self) -> u64 {
        let mut x = self.rng;
        x ^= x << 13;
        x ^= x >> 7;
        x ^= x << 17;
        self.rng = x;
        x
    }
}

/// A seed that differs between runs, without another dependency: the standard library's
/// randomly keyed hasher.
fn random_seed() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u64(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64),
    );
    h.finish()
}

impl PendingSlot {
    /// The peer's address.
    pub fn ip(&self) -> IpAddr {
        self.ip
    }

    /// When the connection must be closed, however steadily it sends.
    pub fn end(&self) -> Instant {
        self.end
    }

    /// A read deadline for this connection: `deadline`, or its end if sooner.
    pub fn within(&self, deadline: Instant) -> Instant {
        deadline.min(self.end)
    }

    /// A whole, valid frame arrived: the connection is not stalled.
    pub fn progress(&self) {
        self.progress_at(Instant::now());
    }

    fn progress_at(&self, now: Instant) {
        if let Some(e) = self.pool.lock().entries.get_mut(&self.id) {
            e.progress = now;
        }
    }

    /// A login is under way until the guard is dropped: the connection is the last to be
    /// dropped for room (its client is working out its proof, or being called back).
    pub fn busy(&self) -> BusyGuard<'_> {
        self.set_busy(true);
        BusyGuard { slot: self }
    }

    fn set_busy(&self, busy: bool) {
        if let Some(e) = self.pool.lock().entries.get_mut(&self.id) {
            e.busy = busy;
        }
    }

    /// Whether the pool dropped this connection to make room for another: its peer is told
    /// `Err full`.
    pub fn dropped(&self) -> bool {
        self.fate.load(Ordering::SeqCst) == DROPPED
    }
}

/// Marks a login under way ([`PendingSlot::busy`]).
#[derive(Debug)]
pub struct BusyGuard<'a> {
    slot: &'a PendingSlot,
}

impl Drop for BusyGuard<'_> {
    fn drop(&mut self) {
        self.slot.set_busy(false);
    }
}

impl Drop for PendingSlot {
    fn drop(&mut self) {
        self.pool.lock().remove(self.id);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    // The `config_file` fuzz target's check caught such a rate accepted by the configuration; the
    // wait (1e300 s) then panicked here. The configuration refuses it now; the limiter saturates.
    #[test]
    fn a_rate_too_low_for_a_wait_saturates() {
        let rl = RateLimiter::new(1, 1e-300);
        let now = Instant::now();
        assert!(rl.check("a", now).is_ok());
        assert_eq!(rl.check("a", now), Err(Duration::MAX));
    }

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

    /// A connected socket (the server's side) and its peer, kept open.
    fn socket() -> (TcpStream, TcpStream) {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let peer = TcpStream::connect(l.local_addr().unwrap()).unwrap();
        (l.accept().unwrap().0, peer)
    }

    fn ip(s: &str) -> IpAddr {
        s.parse().unwrap()
    }

    const LONG: Duration = Duration::from_secs(3600);

    #[test]
    fn pending_connections_are_bounded_per_address_and_per_64() {
        let pending = PendingConns::new(100, LONG);
        let (s, _peer) = socket();
        let t0 = Instant::now();
        let a = ip("127.0.0.2");
        let mut slots: Vec<_> = (0..PENDING_PER_IP)
            .map(|_| pending.begin(&s, a, t0).unwrap().slot)
            .collect();
        assert_eq!(
            pending.begin(&s, a, t0).unwrap_err(),
            Refusal::Address,
            "per address"
        );
        // One IPv6 host has a whole /64 to pick from: counted as one.
        for i in 0..PENDING_PER_IP {
            let v6 = IpAddr::from([0x2001, 0xdb8, 0, 7, 0, 0, 0, i as u16 + 1]);
            slots.push(pending.begin(&s, v6, t0).unwrap().slot);
        }
        let same_64 = ip("2001:db8:0:7:ffff:ffff:ffff:ffff");
        assert_eq!(
            pending.begin(&s, same_64, t0).unwrap_err(),
            Refusal::Address
        );
        slots.push(pending.begin(&s, ip("2001:db8:0:8::1"), t0).unwrap().slot);
        assert_eq!(pending.total(), 2 * PENDING_PER_IP + 1);
        slots.truncate(1);
        assert_eq!(pending.total(), 1);
        assert!(pending.begin(&s, a, t0).is_ok());
        drop(slots);
        assert_eq!(pending.total(), 0);
        assert!(
            pending.pool.lock().by_prefix.is_empty(),
            "no entry left behind"
        );
    }

    #[test]
    fn a_full_pool_drops_the_likeliest_attacker_not_the_newcomer() {
        let pending = PendingConns::new(4, LONG);
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        let begin_on =
            |s: &TcpStream, addr: &str, at: Instant| pending.begin(s, ip(addr), at).unwrap();
        let begin = |addr: &str, at: Instant| begin_on(&socket().0, addr, at);
        // A login under way from one address, two idle connections from another, one from a
        // third: the pool is full.
        let login = begin("127.0.0.2", t0).slot;
        login.set_busy(true);
        let (crowd_old_socket, _crowd_old_peer) = socket();
        let crowd_old = begin_on(&crowd_old_socket, "127.0.0.3", t0).slot;
        let crowd_new = begin("127.0.0.3", t0 + ms(1)).slot;
        let lone = begin("127.0.0.4", t0 + ms(2)).slot;
        // Two seconds on, all are stalled: the newcomer drops the older of the crowded address's.
        let t1 = t0 + Duration::from_secs(2);
        let first = begin("127.0.0.5", t1);
        assert_eq!(first.dropped, 1);
        assert!(
            crowd_old.dropped(),
            "the crowded address's oldest goes first"
        );
        assert!(!crowd_new.dropped() && !lone.dropped() && !login.dropped());
        assert_eq!(pending.total(), 4);
        // Its socket was cut for reading: its thread sees the end of the stream at once.
        let mut byte = [0u8; 1];
        assert_eq!(
            std::io::Read::read(&mut &crowd_old_socket, &mut byte).unwrap(),
            0,
            "cut"
        );
        // Now each address has one: the oldest stalled goes (not the fresh newcomer).
        let second = begin("127.0.0.6", t1);
        assert_eq!(second.dropped, 1);
        assert!(crowd_new.dropped());
        // A connection that just sent a whole frame is not stalled: a stalled one goes first,
        // however young.
        lone.progress_at(t1 + ms(900));
        first.slot.progress_at(t1 + ms(900));
        let t2 = t1 + Duration::from_millis(1500);
        let third = begin("127.0.0.7", t2);
        assert_eq!(third.dropped, 1);
        assert!(second.slot.dropped(), "the stalled one");
        assert!(!lone.dropped() && !first.slot.dropped());
        // With none stalled, the oldest goes; the login under way stays while others can go.
        let fourth = begin("127.0.0.8", t2);
        assert!(lone.dropped(), "the oldest of the active");
        assert!(!login.dropped());
        let later: Vec<_> = [(9, 10), (10, 20), (11, 30)]
            .into_iter()
            .map(|(host, after)| begin(&format!("127.0.0.{host}"), t2 + ms(after)))
            .collect();
        assert!(!login.dropped(), "a login under way goes last");
        assert!(first.slot.dropped() && third.slot.dropped() && fourth.slot.dropped());
        // When every connection is in a login, the oldest login goes.
        for admitted in &later {
            admitted.slot.set_busy(true);
        }
        let last = begin("127.0.0.12", t2 + ms(40));
        assert!(login.dropped(), "…but it does go when nothing else can");
        assert!(later.iter().all(|a| !a.slot.dropped()));
        // A dropped slot gave its place back once.
        drop((login, crowd_old, crowd_new, lone));
        assert_eq!(pending.total(), 4);
        drop((later, last));
        assert_eq!(pending.total(), 0);
    }

    #[test]
    fn from_half_full_a_newcomer_may_drop_a_stalled_one() {
        let (s, _peer) = socket();
        let t0 = Instant::now();
        let stalled = t0 + STALL_GRACE;
        // `n` connections from as many addresses, then a newcomer at `at`: whether it dropped one.
        let trial = |seed: u64, n: usize, at: Instant| {
            let pending = PendingConns::with_seed(10, LONG, seed);
            let _slots: Vec<_> = (0..n)
                .map(|i| {
                    pending
                        .begin(&s, IpAddr::from([10, 0, 0, i as u8]), t0)
                        .unwrap()
                })
                .collect();
            pending.begin(&s, ip("10.0.1.1"), at).unwrap().dropped
        };
        for seed in 0..50 {
            assert_eq!(trial(seed, 4, stalled), 0, "below half full: never");
            assert_eq!(trial(seed, 9, t0), 0, "none stalled: none dropped early");
            assert_eq!(trial(seed, 10, t0), 1, "full: always");
        }
        // Between half full and full the chance rises: 1/6 at 5 of 10, 5/6 at 9 of 10.
        let rate = |n| {
            (0..600)
                .filter(|&seed| trial(seed, n, stalled) == 1)
                .count()
        };
        let (low, high) = (rate(5), rate(9));
        assert!((50..=160).contains(&low), "{low} of 600 at 5/10");
        assert!((440..=550).contains(&high), "{high} of 600 at 9/10");
    }

    #[test]
    fn a_connection_past_its_deadline_is_dropped_at_the_next_accept() {
        let pending = PendingConns::new(10, Duration::from_secs(10));
        let (s, _peer) = socket();
        let t0 = Instant::now();
        let old = pending.begin(&s, ip("127.0.0.2"), t0).unwrap().slot;
        assert_eq!(old.end(), t0 + Duration::from_secs(10));
        assert_eq!(old.within(t0 + LONG), old.end());
        let early = pending
            .begin(&s, ip("127.0.0.3"), t0 + Duration::from_secs(10))
            .unwrap();
        assert_eq!(early.expired, 0, "its own thread closes it at its end");
        let late = t0 + Duration::from_secs(10) + STALL_GRACE;
        let next = pending.begin(&s, ip("127.0.0.4"), late).unwrap();
        assert_eq!(next.expired, 1);
        assert!(
            !old.dropped(),
            "expired, not dropped for room: no `Err full` for it"
        );
        assert_eq!(pending.total(), 2);
    }
}
