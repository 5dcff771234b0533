//! Small blocking helpers: read one frame with a deadline and a size cap, write frames with a
//! deadline. The caller owns the socket (opening one is `gc-net`'s job) and decides what a
//! timeout or a bad frame means.

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use crate::error::ProtocolError;
use crate::frame::Frame;
use crate::limits::MAX_FRAME_BYTES;

/// A byte stream whose reads and writes can be bounded in time (a `TcpStream`, or a test double).
pub trait TimeoutStream: Read + Write {
    /// Sets the timeout of subsequent reads (`None`: block forever).
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
    /// Sets the timeout of subsequent writes.
    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()>;
}

impl TimeoutStream for TcpStream {
    fn set_read_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_read_timeout(self, timeout)
    }

    fn set_write_timeout(&self, timeout: Option<Duration>) -> io::Result<()> {
        TcpStream::set_write_timeout(self, timeout)
    }
}

/// Socket timeouts of zero mean "forever" to the OS; never set one shorter than this.
const MIN_TIMEOUT: Duration = Duration::from_millis(1);

/// Where a connection's buffer starts, and the capacity it shrinks back to after a large frame:
/// thousands of idle connections must stay cheap.
const SMALL_BUFFER: usize = 512;

/// How far the buffer grows when reads keep filling it (a client pipelining a window of `Msg`
/// frames): then one read takes the whole window.
const BURST_BUFFER: usize = 64 * 1024;

/// A buffer grown past [`SMALL_BUFFER`] that is empty waits only this long for the next frame
/// before it is given back: a peer that stopped after a burst exactly filled it leaves a
/// connection that may idle for long (a kept connection), and a peer still sending is not
/// slowed by a shrink between two of its reads.
const SHRINK_AFTER: Duration = Duration::from_millis(200);

/// A socket timeout is set again only when the wanted one differs from the one in force by more
/// than this: setting it costs a system call per read or write, and a deadline overshot by at most
/// this much is harmless.
const TIMEOUT_SLACK: Duration = Duration::from_millis(50);

/// A stream with a read buffer that yields whole frames.
///
/// Bytes after a frame's LF stay buffered for the next call, so pipelined frames (several `Msg`
/// back to back) are read one at a time.
#[derive(Debug)]
pub struct FramedStream<S> {
    stream: S,
    peer: String,
    buf: Vec<u8>,
    start: usize,
    end: usize,
    /// Bytes of `buf[start..end]` already known to hold no LF.
    scanned: usize,
    max_frame: usize,
    /// The last read filled all the room there was: the peer is sending faster than one buffer.
    last_read_filled: bool,
    /// The socket timeouts in force, as last set by this stream.
    read_timeout: Option<Duration>,
    write_timeout: Option<Duration>,
}

/// Whether a timeout must be set again to get `want`.
fn differs(set: Option<Duration>, want: Duration) -> bool {
    set.is_none_or(|s| s.abs_diff(want) > TIMEOUT_SLACK)
}

impl<S: TimeoutStream> FramedStream<S> {
    /// Wraps `stream`; `peer` names the other side in errors (e.g. `127.0.0.2:9980`).
    pub fn new(stream: S, peer: impl Into<String>) -> Self {
        Self::with_max_frame(stream, peer, MAX_FRAME_BYTES)
    }

    /// Like [`FramedStream::new`] with another frame size cap (bytes including the LF).
    pub fn with_max_frame(stream: S, peer: impl Into<String>, max_frame: usize) -> Self {
        Self {
            stream,
            peer: peer.into(),
            buf: Vec::new(),
            start: 0,
            end: 0,
            scanned: 0,
            max_frame: max_frame.max(2),
            last_read_filled: false,
            read_timeout: None,
            write_timeout: None,
        }
    }

    /// The name of the other side.
    pub fn peer(&self) -> &str {
        &self.peer
    }

    /// The underlying stream.
    pub fn get_ref(&self) -> &S {
        &self.stream
    }

    /// The underlying stream, mutably (bypassing the read buffer).
    pub fn get_mut(&mut self) -> &mut S {
        &mut self.stream
    }

    /// Unwraps the stream, dropping anything buffered.
    pub fn into_inner(self) -> S {
        self.stream
    }

    /// Whether bytes of a next frame are already buffered.
    pub fn has_buffered(&self) -> bool {
        self.end > self.start
    }

    /// The next frame if it is already buffered whole and `accept` takes it; never reads. Lets a
    /// server handle pipelined frames together (e.g. store a window of `Msg` with one commit).
    pub fn take_buffered_line(&mut self, accept: impl Fn(&[u8]) -> bool) -> Option<&[u8]> {
        let data = &self.buf[self.start..self.end];
        let pos = data.iter().position(|&b| b == b'\n')?;
        // A line over the cap is left for `read_line` to refuse.
        if pos >= self.max_frame || !accept(&data[..pos]) {
            return None;
        }
        let (line_start, line_end) = (self.start, self.start + pos);
        self.start = line_end + 1;
        self.scanned = 0;
        if self.start == self.end {
            self.start = 0;
            self.end = 0;
        }
        Some(&self.buf[line_start..line_end])
    }

    /// Reads raw bytes that follow a frame (a GC/5 `Chunk`'s or `Data`'s content) into `out`:
    /// what is buffered first, then straight from the stream, never more than `out.len()` and
    /// never past what the caller asks for, so the next frame stays where it is. At least one
    /// byte, before `deadline`; end of stream is [`ProtocolError::Closed`].
    pub fn read_raw(&mut self, out: &mut [u8], deadline: Instant) -> Result<usize, ProtocolError> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.has_buffered() {
            let n = out.len().min(self.end - self.start);
            out[..n].copy_from_slice(&self.buf[self.start..self.start + n]);
            self.start += n;
            self.scanned = self.scanned.saturating_sub(n);
            if self.start == self.end {
                self.start = 0;
                self.end = 0;
                self.scanned = 0;
            }
            return Ok(n);
        }
        loop {
            let now = Instant::now();
            if now >= deadline {
                return Err(ProtocolError::TimedOut {
                    peer: self.peer.clone(),
                });
            }
            let want = (deadline - now).max(MIN_TIMEOUT);
            if differs(self.read_timeout, want) {
                self.stream
                    .set_read_timeout(Some(want))
                    .map_err(|source| self.io_error(source))?;
                self.read_timeout = Some(want);
            }
            match self.stream.read(out) {
                Ok(0) => {
                    return Err(ProtocolError::Closed {
                        peer: self.peer.clone(),
                        partial: 0,
                    });
                }
                Ok(n) => return Ok(n),
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::Interrupted
                            | io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                    ) => {}
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(ProtocolError::Closed {
                        peer: self.peer.clone(),
                        partial: 0,
                    });
                }
                Err(source) => return Err(self.io_error(source)),
            }
        }
    }

    /// Reads one frame, which must arrive whole before `deadline`. Returns it without its LF.
    pub fn read_line(&mut self, deadline: Instant) -> Result<&[u8], ProtocolError> {
        self.read_line_idle(deadline, None)
    }

    /// Reads one frame on a kept-alive connection: waits for its first byte until `idle_deadline`,
    /// then gives the rest `frame_timeout` (when given) to arrive.
    pub fn read_line_idle(
        &mut self,
        idle_deadline: Instant,
        frame_timeout: Option<Duration>,
    ) -> Result<&[u8], ProtocolError> {
        let mut deadline = if self.has_buffered() {
            frame_timeout.map_or(idle_deadline, |t| Instant::now() + t)
        } else {
            idle_deadline
        };
        loop {
            if let Some(pos) = self.buf[self.start + self.scanned..self.end]
                .iter()
                .position(|&b| b == b'\n')
            {
                let line_start = self.start;
                let line_end = self.start + self.scanned + pos;
                // A line that arrived whole in one read has not met the check below.
                if line_end - line_start >= self.max_frame {
                    return Err(ProtocolError::TooLong {
                        peer: self.peer.clone(),
                        limit: self.max_frame,
                    });
                }
                self.start = line_end + 1;
                self.scanned = 0;
                if self.start == self.end {
                    self.start = 0;
                    self.end = 0;
                }
                return Ok(&self.buf[line_start..line_end]);
            }
            self.scanned = self.end - self.start;
            if self.scanned >= self.max_frame {
                return Err(ProtocolError::TooLong {
                    peer: self.peer.clone(),
                    limit: self.max_frame,
                });
            }
            self.make_room();
            let now = Instant::now();
            if now >= deadline {
                return Err(ProtocolError::TimedOut {
                    peer: self.peer.clone(),
                });
            }
            let was_empty = self.end == self.start;
            let idle_large = was_empty && self.buf.len() > SMALL_BUFFER;
            let mut want = (deadline - now).max(MIN_TIMEOUT);
            if idle_large {
                want = want.min(SHRINK_AFTER);
            }
            if differs(self.read_timeout, want) {
                self.stream
                    .set_read_timeout(Some(want))
                    .map_err(|source| self.io_error(source))?;
                self.read_timeout = Some(want);
            }
            let room = self.buf.len() - self.end;
            match self.stream.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    return Err(ProtocolError::Closed {
                        peer: self.peer.clone(),
                        partial: self.end - self.start,
                    });
                }
                Ok(n) => {
                    self.end += n;
                    self.last_read_filled = n == room;
                    if was_empty && let Some(t) = frame_timeout {
                        // The frame has started: from now on it must complete in time.
                        deadline = Instant::now() + t;
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) =>
                {
                    if idle_large {
                        // Silence after a burst: give the memory back before the long wait.
                        self.shrink();
                    }
                }
                // A TLS peer that closed without saying so first: closed, like end of stream.
                Err(e) if e.kind() == io::ErrorKind::UnexpectedEof => {
                    return Err(ProtocolError::Closed {
                        peer: self.peer.clone(),
                        partial: self.end - self.start,
                    });
                }
                Err(source) => return Err(self.io_error(source)),
            }
        }
    }

    /// Reads and parses one frame of type `F` before `deadline`.
    pub fn read<F: Frame>(&mut self, deadline: Instant) -> Result<F, ProtocolError> {
        let line = self.read_line(deadline)?;
        match F::parse(line) {
            Ok(frame) => Ok(frame),
            Err(error) => Err(ProtocolError::Malformed {
                peer: self.peer.clone(),
                error,
            }),
        }
    }

    /// Writes `bytes` (one or more encoded frames) in full before `deadline`.
    pub fn write_all(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), ProtocolError> {
        write_all_with(
            &mut self.stream,
            bytes,
            deadline,
            &self.peer,
            &mut self.write_timeout,
        )
    }

    /// Encodes and writes one frame before `deadline`.
    pub fn send<F: Frame>(&mut self, frame: &F, deadline: Instant) -> Result<(), ProtocolError> {
        let bytes = frame.to_bytes();
        self.write_all(&bytes, deadline)
    }

    fn make_room(&mut self) {
        if self.start > 0 {
            self.buf.copy_within(self.start..self.end, 0);
            self.end -= self.start;
            self.start = 0;
        }
        let full = self.end == self.buf.len();
        if full || (self.last_read_filled && self.buf.len() < BURST_BUFFER) {
            // No room for a frame, or the peer sends more than a buffer at a time: grow.
            let grown = (self.buf.len() * 2).clamp(SMALL_BUFFER, self.max_frame.max(BURST_BUFFER));
            self.buf.resize(grown, 0);
        } else if self.end == 0 && !self.last_read_filled && self.buf.len() > SMALL_BUFFER {
            // A large frame or a burst has gone by; give the memory back.
            self.shrink();
        }
    }

    /// Replaces an empty buffer with a small one.
    fn shrink(&mut self) {
        debug_assert_eq!(self.start, self.end);
        self.buf = vec![0; SMALL_BUFFER];
        self.start = 0;
        self.end = 0;
        self.scanned = 0;
        self.last_read_filled = false;
    }

    fn io_error(&self, source: io::Error) -> ProtocolError {
        ProtocolError::Io {
            peer: self.peer.clone(),
            source,
        }
    }
}

/// Writes all of `bytes` to `stream` before `deadline`, setting the write timeout only when it
/// differs from `timeout_set`.
fn write_all_with<S: TimeoutStream>(
    stream: &mut S,
    bytes: &[u8],
    deadline: Instant,
    peer: &str,
    timeout_set: &mut Option<Duration>,
) -> Result<(), ProtocolError> {
    let mut written = 0;
    while written < bytes.len() {
        let now = Instant::now();
        if now >= deadline {
            return Err(ProtocolError::TimedOut {
                peer: peer.to_owned(),
            });
        }
        let io_err = |source| ProtocolError::Io {
            peer: peer.to_owned(),
            source,
        };
        let want = (deadline - now).max(MIN_TIMEOUT);
        if differs(*timeout_set, want) {
            stream.set_write_timeout(Some(want)).map_err(io_err)?;
            *timeout_set = Some(want);
        }
        match stream.write(&bytes[written..]) {
            Ok(0) => {
                return Err(ProtocolError::Closed {
                    peer: peer.to_owned(),
                    partial: 0,
                });
            }
            Ok(n) => written += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) => {}
            Err(source) => return Err(io_err(source)),
        }
    }
    // A stream that buffers (TLS) may still hold some of it: send it, within the deadline.
    loop {
        match stream.flush() {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) =>
            {
                if Instant::now() >= deadline {
                    return Err(ProtocolError::TimedOut {
                        peer: peer.to_owned(),
                    });
                }
            }
            Err(source) => {
                return Err(ProtocolError::Io {
                    peer: peer.to_owned(),
                    source,
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{ConnectPing, SendRequest};
    use std::collections::VecDeque;

    /// A scripted stream: each read returns the next chunk; an empty chunk means "timed out".
    #[derive(Default)]
    struct Script {
        chunks: VecDeque<Vec<u8>>,
        written: Vec<u8>,
        timeouts_set: std::cell::Cell<usize>,
    }

    impl Read for Script {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            match self.chunks.pop_front() {
                None => Ok(0),
                Some(chunk) if chunk.is_empty() => {
                    std::thread::sleep(Duration::from_millis(2));
                    Err(io::ErrorKind::WouldBlock.into())
                }
                Some(mut chunk) => {
                    let n = chunk.len().min(buf.len());
                    buf[..n].copy_from_slice(&chunk[..n]);
                    if n < chunk.len() {
                        self.chunks.push_front(chunk.split_off(n));
                    }
                    Ok(n)
                }
            }
        }
    }

    impl Write for Script {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            self.written.extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> io::Result<()> {
            Ok(())
        }
    }

    impl TimeoutStream for Script {
        fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            self.timeouts_set.set(self.timeouts_set.get() + 1);
            Ok(())
        }
        fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
            self.timeouts_set.set(self.timeouts_set.get() + 1);
            Ok(())
        }
    }

    fn script(chunks: &[&[u8]]) -> FramedStream<Script> {
        FramedStream::new(
            Script {
                chunks: chunks.iter().map(|c| c.to_vec()).collect(),
                ..Script::default()
            },
            "test-peer",
        )
    }

    fn soon() -> Instant {
        Instant::now() + Duration::from_secs(5)
    }

    #[test]
    fn raw_bytes_come_from_the_buffer_then_the_stream_and_leave_the_next_frame() {
        let mut s = script(&[b"Chunk a\nxyz", b"uvw", b"Ping GC/1\n"]);
        assert_eq!(s.read_line(soon()).unwrap(), b"Chunk a");
        let mut raw = [0u8; 6];
        let mut got = 0;
        while got < raw.len() {
            got += s.read_raw(&mut raw[got..], soon()).unwrap();
        }
        assert_eq!(&raw, b"xyzuvw");
        assert_eq!(s.read_line(soon()).unwrap(), b"Ping GC/1");
        assert!(matches!(
            s.read_raw(&mut raw, soon()),
            Err(ProtocolError::Closed { .. })
        ));
        // Buffered bytes beyond what is asked for stay for the next frame.
        let mut s = script(&[b"Data\nabPong\n"]);
        assert_eq!(s.read_line(soon()).unwrap(), b"Data");
        let mut two = [0u8; 2];
        assert_eq!(s.read_raw(&mut two, soon()).unwrap(), 2);
        assert_eq!(&two, b"ab");
        assert_eq!(s.read_line(soon()).unwrap(), b"Pong");
    }

    #[test]
    fn reads_frames_split_and_pipelined() {
        let mut s = script(&[b"Pi", b"ng GC/1\nPing G", b"C/2\n"]);
        assert_eq!(s.read_line(soon()).unwrap(), b"Ping GC/1");
        let f: ConnectPing = s.read(soon()).unwrap();
        assert_eq!(f.version, "GC/2");
        assert!(matches!(
            s.read_line(soon()),
            Err(ProtocolError::Closed { partial: 0, .. })
        ));
    }

    #[test]
    fn half_frame_then_close_reports_partial() {
        let mut s = script(&[b"Ping GC"]);
        assert!(matches!(
            s.read_line(soon()),
            Err(ProtocolError::Closed { partial: 7, .. })
        ));
    }

    #[test]
    fn silence_times_out() {
        let mut s = script(&[b"Ping", b"", b"", b"", b""]);
        let deadline = Instant::now() + Duration::from_millis(5);
        assert!(matches!(
            s.read_line(deadline),
            Err(ProtocolError::TimedOut { .. })
        ));
    }

    #[test]
    fn too_long_without_lf() {
        let big = vec![b'A'; MAX_FRAME_BYTES + 10];
        let mut s = script(&[&big]);
        assert!(matches!(
            s.read_line(soon()),
            Err(ProtocolError::TooLong { limit, .. }) if limit == MAX_FRAME_BYTES
        ));
        // Exactly at the limit (65,535 bytes + LF) is fine.
        let mut ok = vec![b'A'; MAX_FRAME_BYTES - 1];
        ok.push(b'\n');
        let mut s = script(&[&ok]);
        assert_eq!(s.read_line(soon()).unwrap().len(), MAX_FRAME_BYTES - 1);
    }

    #[test]
    fn a_smaller_cap_holds_when_the_line_arrives_in_one_read() {
        // Found by fuzzing (`fuzz/`, target `framed`): the cap was checked only while a line
        // was incomplete, so one that arrived whole with its LF in one read passed any cap
        // below the buffer's size.
        let capped = |cap| {
            FramedStream::with_max_frame(
                Script {
                    chunks: VecDeque::from([b"Ping GC/1\nPong\n".to_vec()]),
                    ..Script::default()
                },
                "test-peer",
                cap,
            )
        };
        let mut s = capped(9);
        assert!(matches!(
            s.read_line(soon()),
            Err(ProtocolError::TooLong { limit: 9, .. })
        ));
        let mut s = capped(9);
        assert_eq!(s.read_line(soon()).ok(), None);
        assert_eq!(s.take_buffered_line(|_| true), None);
        // Exactly at the cap (9 bytes + LF) is fine, read or taken while buffered.
        let mut s = capped(10);
        assert_eq!(s.read_line(soon()).unwrap(), b"Ping GC/1");
        assert_eq!(s.take_buffered_line(|_| true), Some(&b"Pong"[..]));
    }

    #[test]
    fn malformed_frame_is_reported_with_peer() {
        let mut s = script(&[b"Hello there\n"]);
        let err = s.read::<SendRequest>(soon()).unwrap_err();
        assert!(matches!(err, ProtocolError::Malformed { .. }));
        assert!(err.to_string().contains("test-peer"), "{err}");
    }

    #[test]
    fn buffer_shrinks_after_a_big_frame() {
        let mut big = vec![b'A'; 40_000];
        big.push(b'\n');
        let mut s = script(&[&big, b"x\n"]);
        assert_eq!(s.read_line(soon()).unwrap().len(), 40_000);
        assert_eq!(s.read_line(soon()).unwrap(), b"x");
        assert!(s.buf.len() <= SMALL_BUFFER);
    }

    #[test]
    fn buffer_shrinks_while_idle_after_bursts_that_filled_it() {
        // Each burst fills the buffer exactly and ends with a whole frame, so the buffer grows
        // for the next one; then the peer goes quiet (a kept connection, idle).
        let mut bursts = Vec::new();
        let mut size = SMALL_BUFFER;
        while size <= BURST_BUFFER {
            let mut burst = vec![b'A'; size - 1];
            burst.push(b'\n');
            bursts.push(burst);
            size *= 2;
        }
        let mut chunks: Vec<&[u8]> = bursts.iter().map(Vec::as_slice).collect();
        chunks.push(b"");
        chunks.push(b"x\n");
        let mut s = script(&chunks);
        for burst in &bursts {
            assert_eq!(s.read_line(soon()).unwrap().len(), burst.len() - 1);
        }
        assert_eq!(s.read_line(soon()).unwrap(), b"x");
        assert!(
            s.buf.len() <= SMALL_BUFFER,
            "{} bytes kept after the peer went quiet",
            s.buf.len()
        );
    }

    #[test]
    fn buffered_frames_are_taken_without_reading() {
        let mut s = script(&[b"Msg a\nMsg b\nWho c\nMsg d"]);
        assert_eq!(s.read_line(soon()).unwrap(), b"Msg a");
        let is_msg = |l: &[u8]| l.starts_with(b"Msg ");
        assert_eq!(s.take_buffered_line(is_msg), Some(&b"Msg b"[..]));
        // Not accepted: stays for the next read.
        assert_eq!(s.take_buffered_line(is_msg), None);
        assert_eq!(s.read_line(soon()).unwrap(), b"Who c");
        // Incomplete: never taken.
        assert_eq!(s.take_buffered_line(is_msg), None);
    }

    #[test]
    fn socket_timeouts_are_set_only_when_they_change() {
        let lines: Vec<Vec<u8>> = (0..50)
            .map(|i| format!("Ping {i}\n").into_bytes())
            .collect();
        let chunks: Vec<&[u8]> = lines.iter().map(Vec::as_slice).collect();
        let mut s = script(&chunks);
        let deadline = soon();
        for _ in 0..50 {
            s.read_line(deadline).unwrap();
            s.write_all(b"Pong\n", deadline).unwrap();
        }
        // One read timeout and one write timeout for 50 exchanges with the same deadline.
        assert_eq!(s.get_ref().timeouts_set.get(), 2);
    }

    #[test]
    fn writes_frames() {
        let mut s = script(&[]);
        s.send(
            &ConnectPing {
                version: "GC/1".into(),
            },
            soon(),
        )
        .unwrap();
        assert_eq!(s.get_ref().written, b"Ping GC/1\n");
    }
}
