//! A gc server plugin that greets: it logs every login and logout in the server's log.

use std::sync::atomic::{AtomicUsize, Ordering};

use gc_plugin::guest::{Host, Plugin};

/// The greeter's state: the host (for its log) and a count of greetings.
#[derive(Debug)]
pub struct Greeter {
    host: Host,
    greeted: AtomicUsize,
}

impl Plugin for Greeter {
    fn init(host: Host) -> Result<Self, String> {
        Ok(Self {
            host,
            greeted: AtomicUsize::new(0),
        })
    }

    fn on_client_connect(&self, user: &str, address: &str) -> Result<(), String> {
        let n = self.greeted.fetch_add(1, Ordering::Relaxed) + 1;
        self.host
            .info(&format!("welcome, {user} (from {address}); greeting #{n}"));
        Ok(())
    }

    fn on_client_disconnect(&self, user: &str) -> Result<(), String> {
        self.host.info(&format!("goodbye, {user}"));
        Ok(())
    }
}

gc_plugin::declare_plugin!(
    Greeter,
    name = "greeter",
    version = env!("CARGO_PKG_VERSION"),
    hooks = [on_client_connect, on_client_disconnect],
);
