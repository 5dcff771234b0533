//! Named threads with an owner: every thread the server starts belongs to a [`ThreadGroup`] that
//! joins it, either lazily once it has finished or at shutdown.

use std::io;
use std::thread::{self, JoinHandle};

use parking_lot::Mutex;

use crate::error::ServerError;

/// Stack size of per-connection and per-session threads. They run shallow code (frame handling,
/// store calls); a small stack keeps thousands of sessions cheap.
pub const SMALL_STACK: usize = 256 * 1024;

/// A set of threads owned by one part of the server.
#[derive(Debug, Default)]
pub struct ThreadGroup {
    handles: Mutex<Vec<JoinHandle<()>>>,
}

impl ThreadGroup {
    /// Starts a named thread in this group, first joining members that have finished.
    pub fn spawn(
        &self,
        name: String,
        f: impl FnOnce() + Send + 'static,
    ) -> Result<(), ServerError> {
        let handle = thread::Builder::new()
            .name(name.clone())
            .stack_size(SMALL_STACK)
            .spawn(f)
            .map_err(|source: io::Error| ServerError::Thread { name, source })?;
        let mut handles = self.handles.lock();
        let mut i = 0;
        while i < handles.len() {
            if handles[i].is_finished() {
                join_logged(handles.swap_remove(i));
            } else {
                i += 1;
            }
        }
        handles.push(handle);
        Ok(())
    }

    /// Joins every thread of the group, including ones added while joining.
    pub fn join_all(&self) {
        loop {
            let batch = std::mem::take(&mut *self.handles.lock());
            if batch.is_empty() {
                return;
            }
            for handle in batch {
                join_logged(handle);
            }
        }
    }
}

fn join_logged(handle: JoinHandle<()>) {
    let name = handle.thread().name().unwrap_or("unnamed").to_owned();
    if handle.join().is_err() {
        tracing::error!(thread = %name, "thread panicked");
    }
}
