//! Integration tests: real gc-servers in this process, real clients, over loopback only.
//! One test binary; each area is a module.

mod auth;
mod headless;
mod restart;
mod session;
mod support;
mod tui;
