//! Threads for handshakes, kept for the next one.
//!
//! A handshake runs on a thread of its own so that the 40 KiB of stack its key exchange touches
//! is not left resident on a long-lived session thread (see [`TlsConfig::with_handshake_threads`]).
//! Starting and ending a thread per handshake cost more than the handshake's cryptography on a
//! virtual machine: the ending thread gives its stack pages back (`madvise`), which flushes the
//! TLB of every core the process runs on, and its alternate signal stack is unmapped. So a
//! thread that has finished a handshake waits a while for the next one, and at most a few wait.
//!
//! It is a pool that never queues: a handshake that finds no thread waiting starts one, as
//! before, so a peer that stalls its handshake (for up to the I/O timeout) holds up nobody else's.
//!
//! [`TlsConfig::with_handshake_threads`]: super::TlsConfig::with_handshake_threads

use std::collections::{HashMap, VecDeque};
use std::panic::{self, AssertUnwindSafe};
use std::sync::Arc;
use std::sync::mpsc;
use std::thread::{self, JoinHandle};
use std::time::Duration;

use parking_lot::{Condvar, Mutex};

/// Work for a thread: a handshake, and sending its result to the caller that waits for it.
type Job = Box<dyn FnOnce() + Send + 'static>;

/// The owner of the handshake threads: they end when it is stopped or dropped (each after the
/// handshake it may be running, which has its deadline), and it joins them.
pub(super) struct Workers {
    shared: Arc<Shared>,
    /// Threads waiting for work at most at once; more end as they finish.
    keep: usize,
    /// How long a thread waits for work before it ends.
    linger: Duration,
}

struct Shared {
    state: Mutex<State>,
    /// Work queued, or the owner dropped.
    wake: Condvar,
}

#[derive(Default)]
struct State {
    /// Work given to a waiting thread, not yet taken.
    queue: VecDeque<Job>,
    /// Threads waiting for work.
    waiting: usize,
    /// The owner is gone: every thread ends.
    stopping: bool,
    /// Every thread started and not yet joined, by number.
    threads: HashMap<u64, JoinHandle<()>>,
    /// Threads that have ended on their own (idle too long, or too many waiting): the owner joins
    /// them the next time it starts work.
    ended: Vec<u64>,
    next: u64,
}

/// Why [`Workers::run`] has no result.
#[derive(Debug)]
pub(super) enum WorkerError {
    /// No thread could be started (the system's limit).
    Spawn(std::io::Error),
    /// The work panicked.
    Panicked,
    /// The owner has stopped its threads.
    Stopped,
}

impl Workers {
    /// Threads named `name`; at most `keep` wait for work at once, each for up to `linger`.
    pub(super) fn new(keep: usize, linger: Duration) -> Self {
        Self {
            shared: Arc::new(Shared {
                state: Mutex::new(State::default()),
                wake: Condvar::new(),
            }),
            keep,
            linger,
        }
    }

    /// Runs `work` on a handshake thread (a waiting one, or a new one) and waits for its result.
    pub(super) fn run<T, F>(&self, work: F) -> Result<T, WorkerError>
    where
        T: Send + 'static,
        F: FnOnce() -> T + Send + 'static,
    {
        let (tx, rx) = mpsc::sync_channel(1);
        let job: Job = Box::new(move || {
            // The caller may have gone (it cannot: it waits below), so a failed send is moot.
            let _ = tx.send(work());
        });
        self.start(job)?;
        // The sender is dropped without a result only if the work panicked.
        rx.recv().map_err(|_| WorkerError::Panicked)
    }

    fn start(&self, job: Job) -> Result<(), WorkerError> {
        let mut state = self.shared.state.lock();
        // Threads that ended on their own have returned or are returning: joining is prompt.
        for id in std::mem::take(&mut state.ended) {
            if let Some(thread) = state.threads.remove(&id) {
                let _ = thread.join();
            }
        }
        if state.stopping {
            return Err(WorkerError::Stopped);
        }
        if state.waiting > state.queue.len() {
            state.queue.push_back(job);
            self.shared.wake.notify_one();
            return Ok(());
        }
        let id = state.next;
        state.next += 1;
        let shared = Arc::clone(&self.shared);
        let (keep, linger) = (self.keep, self.linger);
        let thread = thread::Builder::new()
            .name("tls-handshake".into())
            .spawn(move || work_loop(&shared, id, job, keep, linger))
            .map_err(WorkerError::Spawn)?;
        // Inserted under the lock the new thread needs before it can report itself ended.
        state.threads.insert(id, thread);
        Ok(())
    }

    /// Threads started and not yet joined (for tests).
    #[cfg(test)]
    pub(super) fn threads(&self) -> usize {
        self.shared.state.lock().threads.len()
    }
}

impl Workers {
    /// Ends every thread (a waiting one at once, a busy one after its handshake) and joins them;
    /// work given afterwards is refused.
    pub(super) fn stop(&self) {
        let threads = {
            let mut state = self.shared.state.lock();
            state.stopping = true;
            self.shared.wake.notify_all();
            std::mem::take(&mut state.threads)
        };
        for (_, thread) in threads {
            let _ = thread.join();
        }
    }
}

impl Drop for Workers {
    fn drop(&mut self) {
        self.stop();
    }
}

/// A handshake thread: runs `job`, then the work it is given while it waits, until it has waited
/// `linger` for nothing, `keep` others are waiting already, or the owner is gone.
fn work_loop(shared: &Shared, id: u64, first: Job, keep: usize, linger: Duration) {
    let mut job = first;
    loop {
        // A panic reaches the caller as a closed channel; the thread goes on.
        let _ = panic::catch_unwind(AssertUnwindSafe(job));
        let mut state = shared.state.lock();
        if state.stopping || state.waiting >= keep {
            state.ended.push(id);
            return;
        }
        state.waiting += 1;
        let next = loop {
            if let Some(next) = state.queue.pop_front() {
                break Some(next);
            }
            if state.stopping || shared.wake.wait_for(&mut state, linger).timed_out() {
                // Work queued at the last moment is still this thread's (it was counted).
                break state.queue.pop_front();
            }
        };
        state.waiting -= 1;
        match next {
            Some(next) => job = next,
            None => {
                state.ended.push(id);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Barrier;
    use std::time::Instant;

    #[test]
    fn a_finished_thread_takes_the_next_work() {
        let workers = Workers::new(2, Duration::from_secs(30));
        let first = workers.run(|| thread::current().id()).unwrap();
        let second = workers.run(|| thread::current().id()).unwrap();
        assert_eq!(first, second);
        assert_eq!(workers.threads(), 1);
        assert_ne!(first, thread::current().id());
    }

    #[test]
    fn work_never_waits_for_a_busy_thread() {
        let workers = Arc::new(Workers::new(1, Duration::from_secs(30)));
        // Three at once, each waiting for the other two: only three threads can finish them.
        let all = Arc::new(Barrier::new(3));
        let callers: Vec<_> = (0..3)
            .map(|_| {
                let (workers, all) = (Arc::clone(&workers), Arc::clone(&all));
                thread::spawn(move || workers.run(move || all.wait().is_leader()).unwrap())
            })
            .collect();
        let leaders = callers
            .into_iter()
            .map(|c| c.join().unwrap())
            .filter(|&leader| leader)
            .count();
        assert_eq!(leaders, 1);
        // Only `keep` (1) of the three stays; the others end, and the next start joins them.
        let waited = Instant::now();
        while workers.shared.state.lock().ended.len() < 2 {
            assert!(waited.elapsed() < Duration::from_secs(10), "never ended");
            thread::sleep(Duration::from_millis(5));
        }
        workers.run(|| ()).unwrap();
        assert_eq!(workers.threads(), 1);
    }

    #[test]
    fn an_idle_thread_ends_after_lingering() {
        let workers = Workers::new(2, Duration::from_millis(20));
        let first = workers.run(|| thread::current().id()).unwrap();
        let waited = Instant::now();
        while workers.shared.state.lock().ended.is_empty() {
            assert!(waited.elapsed() < Duration::from_secs(10), "never ended");
            thread::sleep(Duration::from_millis(5));
        }
        let second = workers.run(|| thread::current().id()).unwrap();
        assert_ne!(first, second);
        assert_eq!(workers.threads(), 1);
    }

    #[test]
    fn a_panic_is_an_error_and_the_thread_goes_on() {
        let workers = Workers::new(2, Duration::from_secs(30));
        let first = workers.run(|| thread::current().id()).unwrap();
        let panicked = workers.run(|| -> u8 { panic!("on purpose") });
        assert!(matches!(panicked, Err(WorkerError::Panicked)));
        assert_eq!(workers.run(|| thread::current().id()).unwrap(), first);
    }

    #[test]
    fn stopped_threads_are_joined_and_take_no_more_work() {
        let workers = Workers::new(4, Duration::from_secs(30));
        workers.run(|| ()).unwrap();
        assert_eq!(workers.threads(), 1);
        workers.stop();
        assert_eq!(workers.threads(), 0);
        assert!(matches!(workers.run(|| ()), Err(WorkerError::Stopped)));
    }

    #[test]
    fn dropping_the_owner_joins_every_thread() {
        let workers = Workers::new(4, Duration::from_secs(30));
        let seen = Arc::new(Mutex::new(Vec::new()));
        for _ in 0..3 {
            let seen = Arc::clone(&seen);
            workers
                .run(move || seen.lock().push(thread::current().id()))
                .unwrap();
        }
        let started = Instant::now();
        drop(workers);
        // Waiting threads are woken, not left to linger out their 30 s.
        assert!(started.elapsed() < Duration::from_secs(5));
        assert_eq!(seen.lock().len(), 3);
    }
}
