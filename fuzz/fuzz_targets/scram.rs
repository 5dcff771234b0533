//! The four SCRAM-SHA-256 messages, as the side that receives each parses it: client-first and
//! client-final on the server, server-first and server-final on the client. No input panics; a
//! message that parses is exactly the one its fields write; and against one fixed exchange, the
//! only client-final the server accepts and the only server-final the client accepts are the
//! genuine ones (a forged proof or signature that verified would be a login bypass).

#![no_main]

use std::sync::OnceLock;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use gc_protocol::scram::{
    Binding, ClientFinal, ClientFirst, ClientHello, ClientKeys, GS2_HEADER, GS2_TLS_EXPORTER,
    ServerChallenge, ServerFirst, derive_verifier,
};
use libfuzzer_sys::fuzz_target;

/// One complete exchange: the server after server-first, the client after its proof, and what
/// each sends next.
struct Exchange {
    server: ServerFirst,
    client: ClientFinal,
    client_final: String,
    server_final: String,
}

fn exchange() -> &'static Exchange {
    static EXCHANGE: OnceLock<Exchange> = OnceLock::new();
    EXCHANGE.get_or_init(|| {
        let (salt, iterations) = (b"fuzz-salt-16byte", 1);
        let first = ClientFirst::with_nonce("alice", "client-nonce");
        let hello = ClientHello::parse(first.message()).expect("client-first parses");
        let server = ServerFirst::with_nonce(
            &hello,
            &derive_verifier("pencil", salt, iterations),
            "server-nonce",
        );
        let keys = ClientKeys::derive("pencil", salt, iterations);
        let client = first
            .handle_server_first_with_keys(server.message(), &keys, iterations)
            .expect("server-first is accepted");
        let client_final = client.message().to_owned();
        let server_final = server
            .handle_client_final(&client_final)
            .expect("the genuine proof verifies");
        Exchange {
            server,
            client,
            client_final,
            server_final,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    // Each message reaches SCRAM as the text of a base64 frame field: UTF-8, checked there.
    let Ok(message) = std::str::from_utf8(data) else {
        return;
    };

    for (binding, header) in [
        (Binding::Unbound, GS2_HEADER),
        (Binding::TlsExporter([7; 32]), GS2_TLS_EXPORTER),
    ] {
        if let Ok(hello) = ClientHello::parse_bound(message, &binding) {
            let written = format!("{header}n={},r={}", hello.username, hello.nonce);
            assert_eq!(written, message, "client-first");
        }
    }

    if let Ok(challenge) = ServerChallenge::parse(message) {
        let written = format!(
            "r={},s={},i={}",
            challenge.nonce,
            B64.encode(&challenge.salt),
            challenge.iterations
        );
        assert_eq!(written, message, "server-first");
    }

    let exchange = exchange();
    if let Ok(server_final) = exchange.server.handle_client_final(message) {
        assert_eq!(
            message, exchange.client_final,
            "a forged client-final was accepted"
        );
        assert_eq!(server_final, exchange.server_final);
    }
    if exchange.client.verify_server_final(message).is_ok() {
        assert_eq!(
            message, exchange.server_final,
            "a forged server-final was accepted"
        );
    }
});
