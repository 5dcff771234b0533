//! TLS handshakes over loopback, one at a time: what a sign-in pays per connection it opens.
//!
//! `cargo bench -p gc-net --bench handshake`. Each iteration opens a TCP connection, runs the
//! whole TLS 1.3 handshake (X25519MLKEM768, Ed25519 certificates, the pin checked) and one byte
//! back from the server, so the time is both ends' work plus the hand-offs between them:
//!
//! - `server`: the server's ports (a lean server stream, on the server's handshake threads);
//! - `login`: the auth port (a buffered stream both ends, for its channel binding);
//! - `callback`: the server calling a client's listener back (mutual TLS, lean).
//!
//! `handshake/…` is wall time per handshake; `handshake-cpu/…` is the CPU time of the whole
//! process (both ends, their handshake threads, their system calls) per handshake, which the
//! machine's wake-up latencies do not blur.

#![allow(clippy::unwrap_used)]

use std::io::{Read as _, Write as _};
use std::net::{TcpListener, TcpStream};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant};

use criterion::{Criterion, criterion_group, criterion_main};
use gc_net::tls::{ClientAuth, PeerCheck, TlsConfig};
use gc_net::{Identity, Stream};

/// How the two ends of one kind of connection are set up.
struct Pair {
    /// The end that accepts (and its certificate's pin).
    acceptor: TlsConfig,
    /// The end that connects, and its certificate's pin when the acceptor asks for one.
    connector: TlsConfig,
    client_pin: PeerCheck,
    server_pin: PeerCheck,
    lean: bool,
}

fn pair(kind: &str) -> Pair {
    let server = Identity::generate("server").unwrap();
    let client = Identity::generate("client").unwrap();
    match kind {
        "server" | "login" => Pair {
            acceptor: TlsConfig::new(Some(&server), ClientAuth::None)
                .unwrap()
                .with_handshake_threads(),
            connector: TlsConfig::new(None, ClientAuth::None).unwrap(),
            client_pin: PeerCheck::Any,
            server_pin: PeerCheck::Pinned(server.fingerprint()),
            lean: kind == "server",
        },
        _ => Pair {
            // The client's listener accepts; the server connects, showing its certificate.
            acceptor: TlsConfig::new(Some(&client), ClientAuth::Required).unwrap(),
            connector: TlsConfig::new(Some(&server), ClientAuth::None)
                .unwrap()
                .with_handshake_threads(),
            client_pin: PeerCheck::Pinned(server.fingerprint()),
            server_pin: PeerCheck::Pinned(client.fingerprint()),
            lean: true,
        },
    }
}

/// CPU time used by this process so far, all threads together.
fn process_cpu() -> Duration {
    let t = rustix::time::clock_gettime(rustix::time::ClockId::ProcessCPUTime);
    Duration::new(t.tv_sec as u64, t.tv_nsec as u32)
}

fn handshakes(c: &mut Criterion) {
    for (group, cpu) in [("handshake", false), ("handshake-cpu", true)] {
        run_group(c, group, cpu);
    }
}

fn run_group(c: &mut Criterion, group: &str, cpu: bool) {
    let mut group = c.benchmark_group(group);
    group.measurement_time(Duration::from_secs(10));
    for kind in ["server", "login", "callback"] {
        let Pair {
            acceptor,
            connector,
            client_pin,
            server_pin,
            lean,
        } = pair(kind);
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let done = Arc::new(AtomicBool::new(false));
        let accepting = {
            let done = Arc::clone(&done);
            thread::spawn(move || {
                for tcp in listener.incoming() {
                    if done.load(Ordering::Relaxed) {
                        break;
                    }
                    let tcp = tcp.unwrap();
                    tcp.set_nodelay(true).unwrap();
                    let deadline = Instant::now() + Duration::from_secs(5);
                    let accepted = if lean {
                        acceptor.accept_lean(tcp, "bench", client_pin, deadline)
                    } else {
                        acceptor.accept(tcp, "bench", client_pin, deadline)
                    };
                    let mut stream: Stream = accepted.unwrap();
                    stream.write_all(b"!").unwrap();
                }
            })
        };
        let one = || {
            let tcp = TcpStream::connect(addr).unwrap();
            tcp.set_nodelay(true).unwrap();
            let deadline = Instant::now() + Duration::from_secs(5);
            let mut stream = if lean {
                connector.connect_lean(tcp, "bench", server_pin, deadline)
            } else {
                connector.connect(tcp, "bench", server_pin, deadline)
            }
            .unwrap();
            let mut byte = [0u8; 1];
            stream.read_exact(&mut byte).unwrap();
        };
        group.bench_function(kind, |b| {
            if cpu {
                b.iter_custom(|iters| {
                    let start = process_cpu();
                    for _ in 0..iters {
                        one();
                    }
                    process_cpu().saturating_sub(start)
                });
            } else {
                b.iter(one);
            }
        });
        done.store(true, Ordering::Relaxed);
        let _ = TcpStream::connect(addr);
        accepting.join().unwrap();
    }
    group.finish();
}

criterion_group!(benches, handshakes);
criterion_main!(benches);
