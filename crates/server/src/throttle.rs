//! Failed-login throttling that slows guessing without locking anybody out (docs/security.md).
//!
//! A hard lock after N failures lets anyone lock a user out of their own account (five wrong
//! passwords from anywhere) and lets one typist lock out everybody behind the same address.
//! Instead, three rules, each answering `throttled` with the wait:
//!
//! - **Per (user, address)**: the first `free` failures cost nothing (typos); each further one
//!   doubles a wait before that address may try that user again, from 1 s up to
//!   [`MAX_PAIR_DELAY`]. A correct login clears it; [`FORGET`] without a failure forgets it.
//! - **Per address, over [`WINDOW`]**: failures for names that have no account (scanning for
//!   names) at most [`MAX_UNKNOWN_PER_ADDR`], and all failures at most [`MAX_PER_ADDR`], far
//!   above what the people behind one address (a NAT, a shared host) type.
//! - **Per user, from everywhere**: once a user collects [`USER_ALERT`] failures within
//!   [`WINDOW`] (guessing spread over many addresses), addresses that have not logged in as that
//!   user lately may try that user only once per [`USER_GATE`] between them. The addresses the
//!   user logged in from keep only their own (user, address) rule, so an attacker cannot keep
//!   the user out of the machines they use.
//!
//! An IPv6 address counts by its /64 (one host usually has all of it). Memory is bounded: each
//! map holds at most [`MAX_TRACKED`] keys, the stalest dropped first.

use std::collections::{HashMap, VecDeque};
use std::io::Read;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, Instant};

use parking_lot::Mutex;

use crate::error::ServerError;
use crate::limits::prefix;

/// The file in the data dir holding the secret decoy salts are derived from.
pub const DECOY_KEY_FILE: &str = "decoy.key";
/// Its length in bytes.
const DECOY_KEY_LEN: usize = 32;

/// A fresh random secret.
fn random_secret() -> Result<Vec<u8>, ServerError> {
    let mut secret = Vec::with_capacity(DECOY_KEY_LEN);
    while secret.len() < DECOY_KEY_LEN {
        let part = gc_protocol::scram::random_salt()
            .map_err(|_| ServerError::Config("no randomness available for the decoy key".into()))?;
        secret.extend_from_slice(&part);
    }
    secret.truncate(DECOY_KEY_LEN);
    Ok(secret)
}

/// The secret the decoy verifiers of names without an account are derived from
/// ([`gc_protocol::scram::decoy_verifier`]). Kept across restarts so a name's decoy salt never
/// changes (a salt that changed at a restart would tell it apart from a real account's): in a
/// shared store (PostgreSQL), the one all instances share, stored by the first to start; with
/// the flat files, `DATA_DIR/decoy.key`, made (0600, random) at the first start.
pub fn decoy_secret(
    data_dir: &Path,
    accounts: &dyn gc_store::AccountStore,
) -> Result<Vec<u8>, ServerError> {
    if let Some(shared) = accounts.shared_secret("decoy", &random_secret()?)? {
        if shared.len() >= DECOY_KEY_LEN {
            return Ok(shared);
        }
        return Err(ServerError::Config(format!(
            "the database's decoy secret holds {} bytes, not {DECOY_KEY_LEN}: delete its row \
             (DELETE FROM gc_secrets WHERE name = 'decoy') and start again",
            shared.len()
        )));
    }
    decoy_file(data_dir)
}

/// The flat-file decoy secret: `DATA_DIR/decoy.key`.
fn decoy_file(data_dir: &Path) -> Result<Vec<u8>, ServerError> {
    let path = data_dir.join(DECOY_KEY_FILE);
    let io = |what, source| ServerError::Io {
        what,
        path: path.clone(),
        source,
    };
    match gc_store::private::open(&path, gc_store::private::options().read(true)) {
        Ok(mut file) => {
            let mut secret = Vec::new();
            file.read_to_end(&mut secret).map_err(|e| io("read", e))?;
            if secret.len() < DECOY_KEY_LEN {
                return Err(ServerError::Config(format!(
                    "{} holds {} bytes, not {DECOY_KEY_LEN}: restore it from a backup, or remove \
                     it to make a new one (names without an account then get new decoy salts)",
                    path.display(),
                    secret.len()
                )));
            }
            Ok(secret)
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            let secret = random_secret()?;
            // Written whole under a temporary name, then renamed: a crash leaves no short file.
            gc_store::private::replace(&path, &secret).map_err(|e| io("write", e))?;
            Ok(secret)
        }
        Err(e) => Err(io("open", e)),
    }
}

/// Failures are counted per address and per user over this window.
pub const WINDOW: Duration = Duration::from_secs(600);
/// A (user, address) pair without a failure for this long starts afresh.
pub const FORGET: Duration = Duration::from_secs(900);
/// The longest wait one (user, address) pair is given.
pub const MAX_PAIR_DELAY: Duration = Duration::from_secs(300);
/// Failures for unknown names from one address within [`WINDOW`].
pub const MAX_UNKNOWN_PER_ADDR: usize = 30;
/// Failures of any kind from one address within [`WINDOW`].
pub const MAX_PER_ADDR: usize = 100;
/// Failures for one user from everywhere within [`WINDOW`] that start the gate for addresses
/// the user has not logged in from.
pub const USER_ALERT: usize = 20;
/// While a user is under the gate: one attempt per this long from addresses the user has not
/// logged in from, all of them together.
pub const USER_GATE: Duration = Duration::from_secs(2);
/// How long a successful login makes its address one of the user's own.
pub const KNOWN_FOR: Duration = Duration::from_secs(30 * 24 * 3600);
/// Addresses remembered per user.
const KNOWN_PER_USER: usize = 8;
/// Keys one map holds at most.
const MAX_TRACKED: usize = 100_000;

/// Why a login failed, for the counters.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Failure {
    /// A wrong password (or proof) for an existing account.
    WrongPassword,
    /// A name that has no account.
    UnknownUser,
}

#[derive(Debug)]
struct Pair {
    failures: u32,
    last: Instant,
}

#[derive(Debug, Default)]
struct Addr {
    all: VecDeque<Instant>,
    unknown: VecDeque<Instant>,
}

#[derive(Debug, Default)]
struct User {
    failures: VecDeque<Instant>,
    /// Addresses (prefixes) the user logged in from, with when.
    known: Vec<(IpAddr, Instant)>,
    /// The last attempt let through the gate.
    gate: Option<Instant>,
}

#[derive(Debug, Default)]
struct State {
    pairs: HashMap<(String, IpAddr), Pair>,
    addrs: HashMap<IpAddr, Addr>,
    users: HashMap<String, User>,
}

/// The failed-login throttle; see the module documentation.
#[derive(Debug)]
pub struct LoginThrottle {
    free: u32,
    state: Mutex<State>,
}

fn expire(times: &mut VecDeque<Instant>, now: Instant) {
    while times
        .front()
        .is_some_and(|t| now.saturating_duration_since(*t) >= WINDOW)
    {
        times.pop_front();
    }
}

/// When the oldest of `times` leaves the window, if `times` holds `max` or more.
fn full_until(times: &mut VecDeque<Instant>, now: Instant, max: usize) -> Option<Instant> {
    expire(times, now);
    if times.len() < max {
        return None;
    }
    times.front().map(|t| *t + WINDOW)
}

/// The wait after `failures` failures of one pair, of which `free` cost nothing.
fn pair_delay(failures: u32, free: u32) -> Duration {
    match failures.checked_sub(free) {
        None => Duration::ZERO,
        Some(over) => Duration::from_secs(1u64 << over.min(16)).min(MAX_PAIR_DELAY),
    }
}

/// Makes room in `map` for one more key: drops the entries `stale` says are done, and if that
/// is not enough, any.
fn make_room<K: Clone + Eq + std::hash::Hash, V>(
    map: &mut HashMap<K, V>,
    key: &K,
    stale: impl Fn(&V) -> bool,
) {
    if map.len() < MAX_TRACKED || map.contains_key(key) {
        return;
    }
    map.retain(|_, v| !stale(v));
    if map.len() >= MAX_TRACKED {
        let drop: Vec<K> = map.keys().take(MAX_TRACKED / 10).cloned().collect();
        for k in drop {
            map.remove(&k);
        }
    }
}

impl LoginThrottle {
    /// `free`: failures per (user, address) before waits begin (`max-login-failures`).
    pub fn new(free: u32) -> Self {
        Self {
            free,
            state: Mutex::new(State::default()),
        }
    }

    /// Whether a login for `user_key` from `addr` may go ahead now; if not, how long to wait.
    pub fn check(&self, user_key: &str, addr: IpAddr, now: Instant) -> Result<(), Duration> {
        let addr = prefix(addr);
        let mut s = self.state.lock();
        let mut until: Option<Instant> = None;
        let mut later = |t: Option<Instant>| {
            if let Some(t) = t.filter(|t| *t > now) {
                until = Some(until.map_or(t, |u| u.max(t)));
            }
        };
        let pair_key = (user_key.to_owned(), addr);
        if let Some(p) = s.pairs.get(&pair_key)
            && now.saturating_duration_since(p.last) < FORGET
        {
            later(Some(p.last + pair_delay(p.failures, self.free)));
        }
        if let Some(a) = s.addrs.get_mut(&addr) {
            later(full_until(&mut a.all, now, MAX_PER_ADDR));
            later(full_until(&mut a.unknown, now, MAX_UNKNOWN_PER_ADDR));
        }
        if let Some(u) = s.users.get_mut(user_key) {
            expire(&mut u.failures, now);
            u.known
                .retain(|(_, at)| now.saturating_duration_since(*at) < KNOWN_FOR);
            let known = u.known.iter().any(|(a, _)| *a == addr);
            if !known && u.failures.len() >= USER_ALERT {
                match u.gate {
                    Some(last) if now.saturating_duration_since(last) < USER_GATE => {
                        later(Some(last + USER_GATE));
                    }
                    // Let this one through and close the gate behind it (only when nothing
                    // else holds the attempt back, or a refused attempt would use it up).
                    _ if until.is_none() => u.gate = Some(now),
                    _ => {}
                }
            }
        }
        match until {
            Some(t) => Err(t.saturating_duration_since(now)),
            None => Ok(()),
        }
    }

    /// Counts a failed login for `user_key` from `addr`.
    pub fn record_failure(&self, user_key: &str, addr: IpAddr, failure: Failure, now: Instant) {
        let addr = prefix(addr);
        let mut s = self.state.lock();
        let pair_key = (user_key.to_owned(), addr);
        make_room(&mut s.pairs, &pair_key, |p| {
            now.saturating_duration_since(p.last) >= FORGET
        });
        let pair = s.pairs.entry(pair_key).or_insert(Pair {
            failures: 0,
            last: now,
        });
        if now.saturating_duration_since(pair.last) >= FORGET {
            pair.failures = 0;
        }
        pair.failures = pair.failures.saturating_add(1);
        pair.last = now;
        make_room(&mut s.addrs, &addr, |a| {
            a.all
                .back()
                .is_none_or(|t| now.saturating_duration_since(*t) >= WINDOW)
        });
        let a = s.addrs.entry(addr).or_default();
        a.all.push_back(now);
        while a.all.len() > MAX_PER_ADDR {
            a.all.pop_front();
        }
        if failure == Failure::UnknownUser {
            a.unknown.push_back(now);
            while a.unknown.len() > MAX_UNKNOWN_PER_ADDR {
                a.unknown.pop_front();
            }
            // A name with no account has no owner to protect: no per-user count.
            return;
        }
        let key = user_key.to_owned();
        make_room(&mut s.users, &key, |u| {
            u.failures
                .back()
                .is_none_or(|t| now.saturating_duration_since(*t) >= WINDOW)
                && u.known.is_empty()
        });
        let u = s.users.entry(key).or_default();
        u.failures.push_back(now);
        while u.failures.len() > USER_ALERT {
            u.failures.pop_front();
        }
    }

    /// A correct login of `user_key` from `addr`: its (user, address) count starts afresh, and
    /// the address is one of the user's own for [`KNOWN_FOR`].
    pub fn record_success(&self, user_key: &str, addr: IpAddr, now: Instant) {
        let addr = prefix(addr);
        let mut s = self.state.lock();
        s.pairs.remove(&(user_key.to_owned(), addr));
        let key = user_key.to_owned();
        make_room(&mut s.users, &key, |u| {
            u.failures
                .back()
                .is_none_or(|t| now.saturating_duration_since(*t) >= WINDOW)
                && u.known.is_empty()
        });
        let u = s.users.entry(key).or_default();
        u.known.retain(|(a, _)| *a != addr);
        u.known.push((addr, now));
        if u.known.len() > KNOWN_PER_USER {
            u.known.remove(0);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        [127, 0, 0, last].into()
    }

    #[test]
    fn typos_are_free_then_waits_double_for_that_pair_only() {
        let th = LoginThrottle::new(5);
        let t0 = Instant::now();
        for _ in 0..5 {
            th.check("alice", ip(2), t0).unwrap();
            th.record_failure("alice", ip(2), Failure::WrongPassword, t0);
        }
        // The sixth attempt from this address waits 1 s; then 2 s, 4 s …
        assert_eq!(th.check("alice", ip(2), t0), Err(Duration::from_secs(1)));
        let t1 = t0 + Duration::from_secs(1);
        th.check("alice", ip(2), t1).unwrap();
        th.record_failure("alice", ip(2), Failure::WrongPassword, t1);
        assert_eq!(th.check("alice", ip(2), t1), Err(Duration::from_secs(2)));
        // Alice from her own machine, and Bob behind the same address, are not held back.
        th.check("alice", ip(3), t1).unwrap();
        th.check("bob", ip(2), t1).unwrap();
        // A correct login clears the pair.
        th.record_success("alice", ip(2), t1);
        th.check("alice", ip(2), t1).unwrap();
    }

    #[test]
    fn the_wait_is_capped_and_forgotten() {
        assert_eq!(pair_delay(4, 5), Duration::ZERO);
        assert_eq!(pair_delay(5, 5), Duration::from_secs(1));
        assert_eq!(pair_delay(8, 5), Duration::from_secs(8));
        assert_eq!(pair_delay(40, 5), MAX_PAIR_DELAY);
        let th = LoginThrottle::new(1);
        let t0 = Instant::now();
        for i in 0..30 {
            th.record_failure(
                "alice",
                ip(2),
                Failure::WrongPassword,
                t0 + Duration::from_millis(i),
            );
        }
        assert!(th.check("alice", ip(2), t0).is_err());
        th.check("alice", ip(2), t0 + FORGET + Duration::from_secs(1))
            .unwrap();
    }

    #[test]
    fn an_address_scanning_names_or_failing_far_above_typing_waits() {
        let th = LoginThrottle::new(5);
        let t0 = Instant::now();
        for i in 0..MAX_UNKNOWN_PER_ADDR {
            th.record_failure(&format!("nobody{i}"), ip(9), Failure::UnknownUser, t0);
        }
        assert_eq!(th.check("carol", ip(9), t0), Err(WINDOW));
        th.check("carol", ip(8), t0).unwrap();
        let t1 = t0 + WINDOW;
        th.check("carol", ip(9), t1).unwrap();
        for i in 0..MAX_PER_ADDR {
            th.record_failure(&format!("user{i}"), ip(9), Failure::WrongPassword, t1);
        }
        assert!(th.check("carol", ip(9), t1).is_err());
    }

    #[test]
    fn guessing_from_many_addresses_cannot_lock_the_user_out_of_their_own() {
        let th = LoginThrottle::new(5);
        let t0 = Instant::now();
        th.record_success("alice", ip(2), t0);
        // Five wrong passwords from each of five other addresses: the old hard lock.
        for a in 10..15 {
            for _ in 0..5 {
                th.record_failure("alice", ip(a), Failure::WrongPassword, t0);
            }
        }
        th.check("alice", ip(2), t0).unwrap();
        // Many more, spread over many addresses: new addresses pass the gate one per USER_GATE,
        // Alice's own address is never held back.
        for a in 20..60 {
            th.record_failure("alice", ip(a), Failure::WrongPassword, t0);
        }
        th.check("alice", ip(100), t0).unwrap();
        assert_eq!(th.check("alice", ip(101), t0), Err(USER_GATE));
        th.check("alice", ip(2), t0).unwrap();
        th.check("alice", ip(101), t0 + USER_GATE).unwrap();
        // Bob is not concerned.
        th.check("bob", ip(101), t0).unwrap();
    }

    #[test]
    fn an_ipv6_host_counts_by_its_prefix() {
        let th = LoginThrottle::new(1);
        let t0 = Instant::now();
        let a: IpAddr = "2001:db8::1".parse().unwrap();
        let b: IpAddr = "2001:db8::ffff:2".parse().unwrap();
        th.record_failure("alice", a, Failure::WrongPassword, t0);
        assert!(th.check("alice", b, t0).is_err());
    }

    #[test]
    fn memory_stays_bounded() {
        let th = LoginThrottle::new(5);
        let t0 = Instant::now();
        for i in 0..(MAX_TRACKED as u32 + 10) {
            let a = IpAddr::from(std::net::Ipv4Addr::from(0x0a00_0000 + i));
            th.record_failure("alice", a, Failure::WrongPassword, t0);
        }
        let s = th.state.lock();
        assert!(s.pairs.len() <= MAX_TRACKED && s.addrs.len() <= MAX_TRACKED);
    }
}
