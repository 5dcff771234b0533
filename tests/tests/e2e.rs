//! End-to-end tests: real servers and clients over loopback. One binary; each area is a module.

#![allow(clippy::unwrap_used)] // test helpers outside #[test] fns

mod attacks;
mod client;
mod plugins;
mod process;
mod protocol_flow;

/// Not a test of its own: when `ChildServer::spawn` re-executes this binary, this runs the server.
#[test]
fn child_server() {
    gc_tests::child_server_main();
}
