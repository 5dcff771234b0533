//! Presence across instances: one thread that tells the shared store who is online through
//! this instance and learns who is online through the others (see
//! [`gc_store::PresenceShare`]). Only with a shared store (PostgreSQL).
//!
//! It renews this instance's lease every [`RENEW`], and at once when the local list changes
//! (a login or logout here raises the presence version, which wakes it) or another instance
//! announces a change (the store's presence waker pokes it). While the store cannot be reached
//! the other instances' users stay listed for one lease, then are dropped: nobody is shown
//! online on the strength of a stale answer.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use gc_store::PresenceShare;

use crate::error::ServerError;
use crate::notify::Doorbell;
use crate::state::ServerState;

/// How often the lease is renewed (well within the store's lease, so a slow round does not
/// make this instance look dead).
pub const RENEW: Duration = Duration::from_secs(3);

/// Starts the presence thread if the store is shared; it ends at shutdown, after withdrawing
/// this instance.
pub fn start(shared: &Arc<ServerState>) -> Result<Option<JoinHandle<()>>, ServerError> {
    let Some(share) = shared.store.presence() else {
        return Ok(None);
    };
    let bell = Arc::new(Doorbell::default());
    let poked = Arc::new(AtomicBool::new(false));
    {
        let (bell, poked) = (Arc::clone(&bell), Arc::clone(&poked));
        shared.store.set_presence_waker(Arc::new(move || {
            poked.store(true, Ordering::Release);
            bell.ring();
        }));
    }
    let sh = Arc::clone(shared);
    thread::Builder::new()
        .name("presence".into())
        .spawn(move || run(&sh, &*share, &bell, &poked))
        .map(Some)
        .map_err(|source| ServerError::Thread {
            name: "presence".into(),
            source,
        })
}

fn run(shared: &ServerState, share: &dyn PresenceShare, bell: &Arc<Doorbell>, poked: &AtomicBool) {
    let registration = shared.notifier.register(Arc::clone(bell));
    let mut last_ok = Instant::now();
    let mut failing = false;
    while !shared.stopping() {
        let local = shared.registry.local_online();
        match share.exchange(&local) {
            Ok(remote) => {
                if failing {
                    tracing::info!("shared presence works again");
                    failing = false;
                }
                last_ok = Instant::now();
                shared.registry.set_remote(remote, &shared.notifier);
            }
            Err(e) => {
                if !failing {
                    tracing::warn!("cannot exchange presence with the other instances: {e}");
                    failing = true;
                }
                if last_ok.elapsed() > share.lease() {
                    shared.registry.set_remote(Vec::new(), &shared.notifier);
                }
            }
        }
        let seen = shared.notifier.pulse().presence_version;
        shared
            .notifier
            .wait_until(registration.bell(), Instant::now() + RENEW, |p| {
                p.presence_version != seen || poked.swap(false, Ordering::AcqRel)
            });
    }
    share.withdraw();
}
