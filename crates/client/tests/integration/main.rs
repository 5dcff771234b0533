//! Integration tests of the gc-client binary: headless mode and the terminal UI, against real
//! servers in this process, over loopback only. (The client library's own end-to-end tests live
//! in the workspace's `tests/` package, whose helpers these tests share.)

mod headless;
mod support;
mod tui;
