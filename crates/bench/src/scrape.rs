//! `--scrape ADDR`: a Prometheus-like scraper that fetches `http://ADDR/metrics` every 100 ms
//! while a workload runs, to measure what serving metrics costs the server (issue #15).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::mpsc::{self, RecvTimeoutError, Sender};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use serde_json::{Value, json};

use crate::error::BenchError;

/// How often a scrape starts (ten times as often as Prometheus's shortest usual interval).
pub const INTERVAL: Duration = Duration::from_millis(100);
/// Deadline of each scrape's connect, write and read.
const TIMEOUT: Duration = Duration::from_secs(2);

/// The scraper's thread; [`Scraper::finish`] stops it and returns its counts.
#[derive(Debug)]
pub struct Scraper {
    stop: Sender<()>,
    thread: JoinHandle<Counts>,
}

#[derive(Debug, Default)]
struct Counts {
    ok: u64,
    failed: u64,
    bytes: u64,
    slowest: Duration,
}

impl Scraper {
    /// Starts scraping `addr`. Scrapes before the server listens count as failed.
    pub fn start(addr: SocketAddr) -> Result<Self, BenchError> {
        let (stop, stopped) = mpsc::channel::<()>();
        let thread = thread::Builder::new()
            .name("scraper".into())
            .spawn(move || {
                let mut counts = Counts::default();
                let mut next = Instant::now();
                loop {
                    let started = Instant::now();
                    match scrape(addr) {
                        Ok(n) => {
                            counts.ok += 1;
                            counts.bytes += n;
                            counts.slowest = counts.slowest.max(started.elapsed());
                        }
                        Err(_) => counts.failed += 1,
                    }
                    next += INTERVAL;
                    let wait = next.saturating_duration_since(Instant::now());
                    // The channel is the clock and the stop signal at once.
                    match stopped.recv_timeout(wait) {
                        Err(RecvTimeoutError::Timeout) => {}
                        Ok(()) | Err(RecvTimeoutError::Disconnected) => return counts,
                    }
                }
            })
            .map_err(|source| BenchError::Io {
                what: "cannot start the scraper thread".into(),
                source,
            })?;
        Ok(Self { stop, thread })
    }

    /// Stops the scraper; what it did, for the run's JSON line.
    pub fn finish(self) -> Value {
        let _ = self.stop.send(());
        let counts = self.thread.join().unwrap_or_default();
        json!({
            "interval_ms": INTERVAL.as_millis() as u64,
            "ok": counts.ok,
            "failed": counts.failed,
            "bytes": counts.bytes,
            "slowest_ms": counts.slowest.as_secs_f64() * 1e3,
        })
    }
}

/// One `GET /metrics`; the bytes of a `200` answer.
fn scrape(addr: SocketAddr) -> std::io::Result<u64> {
    let mut s = TcpStream::connect_timeout(&addr, TIMEOUT)?;
    s.set_read_timeout(Some(TIMEOUT))?;
    s.set_write_timeout(Some(TIMEOUT))?;
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: gc\r\n\r\n")?;
    let mut answer = Vec::new();
    s.read_to_end(&mut answer)?;
    if answer.starts_with(b"HTTP/1.1 200 ") {
        Ok(answer.len() as u64)
    } else {
        Err(std::io::Error::other("not 200"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::TcpListener;

    #[test]
    fn it_scrapes_every_interval_until_finished() {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        let (served, scrapes) = mpsc::channel();
        let server = thread::Builder::new()
            .name("fake-metrics".into())
            .spawn(move || {
                for _ in 0..3 {
                    let (mut s, _) = listener.accept().expect("accept");
                    let mut buf = [0u8; 256];
                    let _ = s.read(&mut buf);
                    let _ = s.write_all(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok");
                    drop(s);
                    let _ = served.send(());
                }
            })
            .expect("spawn");
        let scraper = Scraper::start(addr).expect("starts");
        for _ in 0..3 {
            scrapes
                .recv_timeout(Duration::from_secs(5))
                .expect("a scrape within 5 s");
        }
        server.join().expect("server");
        let counts = scraper.finish();
        assert_eq!(counts["ok"], 3, "{counts}");
        assert_eq!(counts["interval_ms"], 100);
    }
}
