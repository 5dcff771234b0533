//! Wakes the threads that wait for "something changed": a message became durable, a session
//! ended, the server is stopping.
//!
//! Every waiting thread has its own [`Doorbell`] and registers it with the [`Notifier`]; a new
//! message rings each registered bell whose thread is asleep. The first version had every thread
//! wait on one condvar and woke them with `notify_all`: the woken threads then took the one mutex
//! in turn, so with 200 sessions the last one started its delivery only after 199 hand-offs (a
//! convoy of several milliseconds on two busy cores, see docs/PERFORMANCE.md). With a bell each,
//! the committing thread makes every sleeper runnable at once and nobody shares a lock afterwards.
//! The state itself (newest id, presence version, shutdown) is atomics, read without a lock.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Instant;

use parking_lot::{Condvar, Mutex};

/// What a waiting thread may wait for, as last published.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Pulse {
    /// Newest durable message id.
    pub newest_id: u64,
    /// Presence version.
    pub presence_version: u64,
    /// Shutdown has begun.
    pub shutdown: bool,
}

/// One thread's wake-up: a flag saying it sleeps, and the condvar it sleeps on.
#[derive(Debug, Default)]
pub struct Doorbell {
    sleeping: Mutex<bool>,
    cv: Condvar,
    /// Tests only: notified whenever the owner goes to sleep, so a test that checks that a ring
    /// wakes a sleeper can wait until the owner sleeps instead of sleeping itself and hoping.
    #[cfg(test)]
    fell_asleep: Condvar,
}

impl Doorbell {
    /// Wakes the owner if it is asleep (no system call otherwise). The owner re-checks its
    /// condition either way, so a ring is never lost: it checks while holding the lock that this
    /// takes.
    pub fn ring(&self) {
        let mut sleeping = self.sleeping.lock();
        if *sleeping {
            *sleeping = false;
            self.cv.notify_one();
        }
    }
}

/// The registered bells, replaced as a whole on every change so ringing works on a snapshot
/// without holding the lock (registrations are rare, rings are per message).
#[derive(Debug, Default)]
struct Bells {
    next_id: u64,
    list: Arc<Vec<(u64, Arc<Doorbell>)>>,
}

/// The shared "something changed" state and the bells of the threads that wait for it.
#[derive(Debug, Default)]
pub struct Notifier {
    newest_id: AtomicU64,
    presence_version: AtomicU64,
    shutdown: AtomicBool,
    bells: Mutex<Bells>,
}

/// Keeps a bell registered while alive.
#[derive(Debug)]
pub struct Registration<'a> {
    notifier: &'a Notifier,
    id: u64,
    bell: Arc<Doorbell>,
}

impl Registration<'_> {
    /// The registered bell.
    pub fn bell(&self) -> &Doorbell {
        &self.bell
    }
}

impl Drop for Registration<'_> {
    fn drop(&mut self) {
        let mut bells = self.notifier.bells.lock();
        let list: Vec<_> = bells
            .list
            .iter()
            .filter(|(id, _)| *id != self.id)
            .cloned()
            .collect();
        bells.list = Arc::new(list);
    }
}

impl Notifier {
    /// Starts with the store's newest id.
    pub fn new(newest_id: u64) -> Self {
        Self {
            newest_id: AtomicU64::new(newest_id),
            ..Self::default()
        }
    }

    /// The current state.
    pub fn pulse(&self) -> Pulse {
        Pulse {
            newest_id: self.newest_id.load(Ordering::Acquire),
            presence_version: self.presence_version.load(Ordering::Acquire),
            shutdown: self.shutdown.load(Ordering::Acquire),
        }
    }

    /// Whether shutdown has begun.
    pub fn is_shutdown(&self) -> bool {
        self.shutdown.load(Ordering::Acquire)
    }

    /// Registers `bell` to be rung on new messages and at shutdown, until the registration drops.
    pub fn register(&self, bell: Arc<Doorbell>) -> Registration<'_> {
        let mut bells = self.bells.lock();
        bells.next_id += 1;
        let id = bells.next_id;
        let mut list = Vec::with_capacity(bells.list.len() + 1);
        list.extend(bells.list.iter().cloned());
        list.push((id, Arc::clone(&bell)));
        bells.list = Arc::new(list);
        drop(bells);
        // A shutdown that began before the registration must not be missed.
        if self.is_shutdown() {
            bell.ring();
        }
        Registration {
            notifier: self,
            id,
            bell,
        }
    }

    /// A message up to `id` is durable: wake every registered thread.
    pub fn new_message(&self, id: u64) {
        if self.newest_id.fetch_max(id, Ordering::AcqRel) < id {
            self.ring_all();
        }
    }

    /// A message up to `id` is durable, of interest to the owners of `bells` only (the members
    /// of its room): ring those. The others see the new id at their next interval.
    ///
    /// Rung even when `id` is not the newest: another room's later record may have been
    /// announced first, without waking these members. (A woken thread whose pulse has not changed
    /// sleeps again: it already delivered this record with that later one, as ids are published
    /// in order.)
    pub fn new_message_for<'a>(&self, id: u64, bells: impl IntoIterator<Item = &'a Doorbell>) {
        self.newest_id.fetch_max(id, Ordering::AcqRel);
        for bell in bells {
            bell.ring();
        }
    }

    /// The set of online users changed. Nobody is woken: the version goes out with each
    /// session's next interval ping (waking every heartbeat thread at every login would cost a
    /// round trip per online client per login).
    pub fn presence_changed(&self, version: u64) {
        self.presence_version.fetch_max(version, Ordering::AcqRel);
    }

    /// Shutdown has begun: wake everyone.
    pub fn shutdown(&self) {
        self.shutdown.store(true, Ordering::Release);
        self.ring_all();
    }

    fn ring_all(&self) {
        let snapshot = Arc::clone(&self.bells.lock().list);
        for (_, bell) in snapshot.iter() {
            bell.ring();
        }
    }

    /// Waits on `bell` until `wake(&pulse)` is true, shutdown begins, or `deadline` passes;
    /// returns the latest state. `wake` may also look at state of the caller's that is rung on
    /// the same bell (a session's end).
    pub fn wait_until(
        &self,
        bell: &Doorbell,
        deadline: Instant,
        mut wake: impl FnMut(&Pulse) -> bool,
    ) -> Pulse {
        let mut sleeping = bell.sleeping.lock();
        loop {
            // Checked under the bell's lock: a ring after this check finds `sleeping` set and
            // notifies; a change before it is seen here.
            let pulse = self.pulse();
            if pulse.shutdown || wake(&pulse) {
                *sleeping = false;
                return pulse;
            }
            *sleeping = true;
            #[cfg(test)]
            bell.fell_asleep.notify_all();
            if bell.cv.wait_until(&mut sleeping, deadline).timed_out() {
                *sleeping = false;
                return self.pulse();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use std::thread;
    use std::time::Duration;

    use super::*;

    /// How long a test waits for a waiter to fall asleep before failing.
    const ASLEEP: Duration = Duration::from_secs(5);

    impl Doorbell {
        /// Waits up to `timeout` until the owner sleeps on this bell; false if it does not. Seeing
        /// `sleeping` set while holding the bell's lock means the owner is blocked in its wait: it
        /// sets the flag under the lock and lets go of the lock only by waiting (parking_lot's
        /// condvars do not wake spuriously), and a ring clears the flag.
        fn wait_asleep(&self, timeout: Duration) -> bool {
            let deadline = Instant::now() + timeout;
            let mut sleeping = self.sleeping.lock();
            while !*sleeping {
                if self
                    .fell_asleep
                    .wait_until(&mut sleeping, deadline)
                    .timed_out()
                {
                    return *sleeping;
                }
            }
            true
        }
    }

    #[test]
    fn a_new_message_wakes_every_registered_waiter() {
        let notifier = Arc::new(Notifier::new(5));
        let (tx, rx) = std::sync::mpsc::channel();
        let mut handles = Vec::new();
        for _ in 0..8 {
            let notifier = Arc::clone(&notifier);
            let tx = tx.clone();
            let bell = Arc::new(Doorbell::default());
            let own = Arc::clone(&bell);
            handles.push(thread::spawn(move || {
                let reg = notifier.register(own);
                let deadline = Instant::now() + Duration::from_secs(10);
                let pulse = notifier.wait_until(reg.bell(), deadline, |p| p.newest_id > 5);
                let _ = tx.send(pulse.newest_id);
            }));
            // Registered and asleep, so it is the ring that has to wake it.
            assert!(bell.wait_asleep(ASLEEP), "the waiter sleeps");
        }
        notifier.new_message(7);
        for _ in 0..8 {
            assert_eq!(rx.recv_timeout(Duration::from_secs(5)).unwrap(), 7);
        }
        for h in handles {
            h.join().unwrap();
        }
        assert!(notifier.bells.lock().list.is_empty(), "registrations drop");
    }

    #[test]
    fn an_older_id_wakes_nobody_and_a_timeout_returns() {
        let notifier = Notifier::new(10);
        notifier.new_message(3);
        assert_eq!(notifier.pulse().newest_id, 10);
        let reg = notifier.register(Arc::new(Doorbell::default()));
        let start = Instant::now();
        let pulse = notifier.wait_until(reg.bell(), start + Duration::from_millis(50), |p| {
            p.newest_id > 10
        });
        assert_eq!(pulse.newest_id, 10);
        assert!(start.elapsed() >= Duration::from_millis(50));
    }

    #[test]
    fn shutdown_wakes_waiters_and_later_registrations_do_not_sleep() {
        let notifier = Arc::new(Notifier::new(0));
        let bell = Arc::new(Doorbell::default());
        let waiter = {
            let notifier = Arc::clone(&notifier);
            let bell = Arc::clone(&bell);
            thread::spawn(move || {
                let reg = notifier.register(bell);
                let deadline = Instant::now() + Duration::from_secs(10);
                let pulse = notifier.wait_until(reg.bell(), deadline, |_| false);
                // Shutdown is set by then either way: only returning before the deadline shows
                // that the ring woke it.
                (pulse.shutdown, Instant::now() < deadline)
            })
        };
        // Asleep, so it is the shutdown's ring that has to wake it (a shutdown that comes first
        // is seen by the check before sleeping: the second half of this test).
        assert!(bell.wait_asleep(ASLEEP), "the waiter sleeps");
        notifier.shutdown();
        let (shutdown, woken) = waiter.join().unwrap();
        assert!(shutdown && woken, "the shutdown woke the waiter");
        let reg = notifier.register(Arc::new(Doorbell::default()));
        let start = Instant::now();
        let pulse = notifier.wait_until(reg.bell(), start + Duration::from_secs(10), |_| false);
        assert!(pulse.shutdown && start.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn a_ring_for_the_callers_own_condition_wakes_it() {
        let notifier = Arc::new(Notifier::new(0));
        let bell = Arc::new(Doorbell::default());
        let ended = Arc::new(AtomicBool::new(false));
        let waiter = {
            let (notifier, bell, ended) =
                (Arc::clone(&notifier), Arc::clone(&bell), Arc::clone(&ended));
            thread::spawn(move || {
                let start = Instant::now();
                notifier.wait_until(&bell, start + Duration::from_secs(10), |_| {
                    ended.load(Ordering::Acquire)
                });
                start.elapsed()
            })
        };
        assert!(bell.wait_asleep(ASLEEP), "the waiter sleeps");
        ended.store(true, Ordering::Release);
        bell.ring();
        assert!(waiter.join().unwrap() < Duration::from_secs(5));
    }
}
