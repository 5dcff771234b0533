//! The workspace's end-to-end helpers (`tests/`), under the names these tests use.

pub use gc_tests::client::{TestClient, config, register};
pub use gc_tests::{PASSWORD, TestServer as Server, WAIT, client_ip};

/// The flags that point a `gc-client` binary at `server` on 127.0.0.1, from a fresh loopback
/// address of its own with OS-chosen callback ports, trusting the server's certificate (or plain,
/// when it runs with `--tls off`).
pub fn connection_args(server: &Server) -> Vec<String> {
    let mut args = port_args(server.ports());
    match server.fingerprint() {
        Some(fingerprint) => args.extend(["--trust-fingerprint".into(), fingerprint.to_string()]),
        None => args.extend(["--tls".into(), "off".into()]),
    }
    args
}

/// The flags that point a `gc-client` binary at a server on 127.0.0.1 with these ports, from a
/// fresh loopback address of its own with OS-chosen callback ports.
pub fn port_args(ports: gc_client_core::ServerPorts) -> Vec<String> {
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

/// What a terminal UI started by a test trusts: `server`'s certificate (or plain GC/1).
pub fn trust(server: &Server) -> gc_client::trust::ServerTrust {
    use gc_client::trust::ServerTrust;
    use gc_client_core::{PinSource, ServerPin};
    match server.fingerprint() {
        Some(fingerprint) => ServerTrust::Pinned(ServerPin {
            fingerprint,
            source: PinSource::Given("the test's pin".into()),
        }),
        None => ServerTrust::Off,
    }
}
