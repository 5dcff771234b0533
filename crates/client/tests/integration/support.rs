//! The workspace's end-to-end helpers (`tests/`), under the names these tests use.

pub use gc_tests::client::{TestClient, config, register};
pub use gc_tests::{TestServer as Server, WAIT, client_ip};

/// The flags that point a `gc-client` binary at a server on 127.0.0.1 with these ports, from a
/// fresh loopback address of its own with OS-chosen callback ports.
pub fn connection_args(ports: gc_client_core::ServerPorts) -> Vec<String> {
    [
        "--bind".to_owned(),
        client_ip().to_string(),
        "--port-auth".into(),
        "0".into(),
        "--port-heartbeat".into(),
        "0".into(),
        "--port-delivery".into(),
        "0".into(),
        "--server-port-connect".into(),
        ports.connect.to_string(),
        "--server-port-auth".into(),
        ports.auth.to_string(),
        "--server-port-send".into(),
        ports.send.to_string(),
    ]
    .into()
}
