//! Everything the run loop reacts to arrives as one [`AppEvent`] on one channel: terminal input
//! (from the `gc-tui-input` thread), client events (from the client's threads, through its
//! sink) and signals (from the `gc-tui-signals` thread). Both threads here are owned by a
//! handle that stops and joins them.

use std::io;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::Duration;

use ratatui::crossterm::event as term;
use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
use signal_hook::iterator::{Handle, Signals};

use crate::error::AppError;
use gc_client_core::ClientError;
use gc_client_core::event::Event;
use gc_client_core::trust::FirstContact;

/// How long the input thread waits for the terminal before it looks at its stop flag: the bound
/// on how long stopping it takes (the terminal cannot be woken any other way).
pub const INPUT_POLL: Duration = Duration::from_millis(100);

/// How long [`InputThread::stop`] waits for the thread before leaving it behind. crossterm 0.29
/// never returns from `poll` once the terminal is gone (it re-reads the dead tty forever,
/// crossterm issue #793): then the thread cannot be joined, and it ends with the process.
pub const INPUT_STOP_WAIT: Duration = Duration::from_millis(500);

/// Something for the run loop.
#[derive(Debug)]
pub enum AppEvent {
    /// A key, paste, mouse or resize event.
    Terminal(term::Event),
    /// The terminal could not be read (it is gone).
    TerminalError(io::Error),
    /// An event of the client started for login number `generation`.
    Client {
        /// Which client (events of a stopped one are dropped).
        generation: u64,
        /// What it said.
        event: Event,
    },
    /// What the server presented on first contact, for login number `generation` (or why it
    /// could not be asked).
    FirstContact {
        /// Which login.
        generation: u64,
        /// The server's certificate and name.
        result: Result<FirstContact, ClientError>,
    },
    /// SIGTERM, SIGINT or SIGHUP.
    Signal(i32),
}

/// The thread that reads the terminal.
#[derive(Debug)]
pub struct InputThread {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<()>>,
    /// Disconnected when the thread has returned.
    finished: Receiver<()>,
}

impl InputThread {
    /// Starts reading terminal events into `tx`.
    pub fn start(tx: Sender<AppEvent>) -> Result<Self, AppError> {
        let stop = Arc::new(AtomicBool::new(false));
        let flag = Arc::clone(&stop);
        let (finished_tx, finished) = mpsc::channel::<()>();
        let handle = thread::Builder::new()
            .name("gc-tui-input".into())
            .spawn(move || {
                let _finished = finished_tx;
                read_terminal(&flag, &tx);
            })
            .map_err(|source| AppError::Thread {
                name: "gc-tui-input".into(),
                source,
            })?;
        Ok(Self {
            stop,
            handle: Some(handle),
            finished,
        })
    }

    /// Stops and joins the thread (within [`INPUT_POLL`]). If it does not return within
    /// [`INPUT_STOP_WAIT`] the terminal is gone and crossterm is stuck: the thread is left to end
    /// with the process, which is about to exit.
    pub fn stop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let Some(handle) = self.handle.take() else {
            return;
        };
        match self.finished.recv_timeout(INPUT_STOP_WAIT) {
            Err(RecvTimeoutError::Timeout) => {
                tracing::warn!(
                    "the terminal input thread is stuck reading a terminal that is gone; \
                     leaving it to end with the process"
                );
            }
            Ok(()) | Err(RecvTimeoutError::Disconnected) => {
                if handle.join().is_err() {
                    tracing::error!("the terminal input thread panicked");
                }
            }
        }
    }
}

impl Drop for InputThread {
    fn drop(&mut self) {
        self.stop();
    }
}

fn read_terminal(stop: &AtomicBool, tx: &Sender<AppEvent>) {
    while !stop.load(Ordering::Acquire) {
        let ready = match term::poll(INPUT_POLL) {
            Ok(ready) => ready,
            Err(e) => {
                let _ = tx.send(AppEvent::TerminalError(e));
                return;
            }
        };
        if !ready {
            continue;
        }
        let event = match term::read() {
            Ok(event) => AppEvent::Terminal(event),
            Err(e) => {
                let _ = tx.send(AppEvent::TerminalError(e));
                return;
            }
        };
        if tx.send(event).is_err() {
            return;
        }
    }
}

/// The thread that turns SIGTERM, SIGINT and SIGHUP into events, so the terminal is restored
/// and the client says `Bye` before the process ends.
#[derive(Debug)]
pub struct SignalThread {
    handle: Handle,
    thread: Option<JoinHandle<()>>,
}

impl SignalThread {
    /// Starts listening.
    pub fn start(tx: Sender<AppEvent>) -> Result<Self, AppError> {
        let mut signals =
            Signals::new([SIGTERM, SIGINT, SIGHUP]).map_err(|source| AppError::Thread {
                name: "gc-tui-signals (signal handlers)".into(),
                source,
            })?;
        let handle = signals.handle();
        let thread = thread::Builder::new()
            .name("gc-tui-signals".into())
            .spawn(move || {
                for signal in signals.forever() {
                    if tx.send(AppEvent::Signal(signal)).is_err() {
                        break;
                    }
                }
            })
            .map_err(|source| AppError::Thread {
                name: "gc-tui-signals".into(),
                source,
            })?;
        Ok(Self {
            handle,
            thread: Some(thread),
        })
    }

    /// Stops and joins the thread. The signals stay caught (and are ignored) until the process
    /// exits, which it is about to.
    pub fn stop(&mut self) {
        self.handle.close();
        if let Some(thread) = self.thread.take()
            && thread.join().is_err()
        {
            tracing::error!("the signal thread panicked");
        }
    }
}

impl Drop for SignalThread {
    fn drop(&mut self) {
        self.stop();
    }
}
