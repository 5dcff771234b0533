//! Where hooks run: each plugin has a few worker threads of its own, fed by a channel, so that a
//! caller (a server session, the client's send path) waits for a hook with a time limit instead
//! of running it on its own thread. A hook that never returns then holds one of its plugin's
//! workers, not the caller: a thread cannot be stopped from outside in-process, so such a worker
//! is left behind, and counted, when the plugins stop.

use std::collections::BTreeSet;
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex, PoisonError};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use crate::host::{Call, Loaded};

/// What became of one hook call.
#[derive(Debug)]
pub(crate) enum Answer {
    /// The hook returned this verdict (kind, text), taken out of plugin memory.
    Verdict(u32, Option<String>),
    /// No answer within the limit: the hook still runs on a worker, which is left to it.
    TimedOut,
    /// The workers are gone (a worker ended unexpectedly, or the pool is stopping).
    Gone,
}

struct Job {
    call: Call,
    reply: mpsc::SyncSender<(u32, Option<String>)>,
}

/// The worker threads of one plugin.
pub(crate) struct Pool {
    /// Closed (`None`) to stop the workers: each leaves its loop when the channel is empty.
    jobs: Option<mpsc::Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    /// Each worker sends its index as its last act, so a stop can wait for them with a deadline
    /// (`JoinHandle::join` has none). In a Mutex only to make the pool `Sync`: only a stop reads.
    exited: Mutex<mpsc::Receiver<usize>>,
}

impl std::fmt::Debug for Pool {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pool")
            .field("workers", &self.workers.len())
            .finish_non_exhaustive()
    }
}

/// Worker threads per plugin: hooks of one plugin may run in parallel (the ABI allows it), up
/// to this many at once.
pub(crate) fn pool_size() -> usize {
    thread::available_parallelism().map_or(2, |n| n.get().clamp(1, 4))
}

impl Pool {
    /// Starts `size` workers for `plugin`; a hook running longer than `budget` is reported to the
    /// plugin (`Loaded::overran`).
    pub(crate) fn start(
        plugin: &Arc<Loaded>,
        size: usize,
        budget: Duration,
    ) -> std::io::Result<Self> {
        let (jobs, queue) = mpsc::channel::<Job>();
        let queue = Arc::new(Mutex::new(queue));
        let (exited_tx, exited) = mpsc::channel();
        let mut pool = Self {
            jobs: Some(jobs),
            workers: Vec::with_capacity(size),
            exited: Mutex::new(exited),
        };
        for index in 0..size {
            let (plugin, queue, exited) =
                (Arc::clone(plugin), Arc::clone(&queue), exited_tx.clone());
            let spawned = thread::Builder::new()
                .name(format!("plugin-{}-{index}", plugin.info.name))
                .spawn(move || {
                    work(&plugin, &queue, budget);
                    // Release the plugin before saying so: the last reference destroys it.
                    drop(plugin);
                    let _ = exited.send(index);
                });
            match spawned {
                Ok(handle) => pool.workers.push(handle),
                Err(e) => {
                    // The ones started are idle: they end at once when the channel closes.
                    pool.stop(Duration::from_secs(1));
                    return Err(e);
                }
            }
        }
        Ok(pool)
    }

    /// Runs `call` on a worker and waits at most `limit` for its verdict.
    pub(crate) fn ask(&self, call: Call, limit: Duration) -> Answer {
        let Some(jobs) = &self.jobs else {
            return Answer::Gone;
        };
        let (reply, answer) = mpsc::sync_channel(1);
        if jobs.send(Job { call, reply }).is_err() {
            return Answer::Gone;
        }
        match answer.recv_timeout(limit) {
            Ok((kind, text)) => Answer::Verdict(kind, text),
            Err(RecvTimeoutError::Timeout) => Answer::TimedOut,
            Err(RecvTimeoutError::Disconnected) => Answer::Gone,
        }
    }

    /// Closes the channel: idle workers end, busy ones after their hook returns.
    pub(crate) fn close(&mut self) {
        self.jobs = None;
    }

    /// Closes the channel and joins the workers that end by `deadline`; the others (inside a
    /// hook that has not returned) are left running, detached. Returns how many were left.
    pub(crate) fn stop_until(&mut self, deadline: Instant) -> usize {
        self.close();
        let mut done = BTreeSet::new();
        let exited = self
            .exited
            .get_mut()
            .unwrap_or_else(PoisonError::into_inner);
        while done.len() < self.workers.len() {
            let left = deadline.saturating_duration_since(Instant::now());
            match exited.recv_timeout(left) {
                Ok(index) => {
                    done.insert(index);
                }
                Err(_) => break,
            }
        }
        let mut left_behind = 0;
        for (index, handle) in std::mem::take(&mut self.workers).into_iter().enumerate() {
            if done.contains(&index) {
                // It said it was done: this join returns at once.
                if handle.join().is_err() {
                    tracing::error!("a plugin worker thread panicked");
                }
            } else {
                // Dropping the handle detaches the thread; it ends if its hook ever returns.
                left_behind += 1;
            }
        }
        left_behind
    }

    fn stop(&mut self, within: Duration) -> usize {
        self.stop_until(Instant::now() + within)
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        if !self.workers.is_empty() {
            self.stop(Duration::from_secs(1));
        }
    }
}

/// A worker's loop: one job at a time until the channel closes.
fn work(plugin: &Loaded, queue: &Mutex<mpsc::Receiver<Job>>, budget: Duration) {
    loop {
        // Holding the lock while waiting is fine: the other idle workers have nothing to do.
        let job = queue.lock().unwrap_or_else(PoisonError::into_inner).recv();
        let Ok(job) = job else {
            return;
        };
        let hook = job.call.hook();
        let started = Instant::now();
        let verdict = plugin.run(&job.call);
        let took = started.elapsed();
        // Counted before answering, so that the call that disables the plugin returns after it
        // is disabled.
        if took > budget {
            plugin.overran(hook, took, budget);
        }
        // The caller may have stopped waiting (it timed out): the verdict's text was still taken
        // out of plugin memory and freed by `run`.
        let _ = job.reply.send(verdict);
    }
}
