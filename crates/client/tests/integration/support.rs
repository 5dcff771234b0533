//! The workspace's end-to-end helpers (`tests/`), under the names these tests use.

pub use gc_tests::client::{TestClient, config, register};
pub use gc_tests::{TestServer as Server, WAIT, client_ip};
