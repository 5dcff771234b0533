//! The frame reader (`FramedStream`) over a stream that hands out the input in chunks of
//! input-chosen sizes, with an input-chosen frame cap: it yields exactly the input's lines, in
//! order, whether read one by one or taken while buffered; it refuses a line only when the line
//! is longer than the cap allows, never a shorter one; and at the end it reports the unfinished
//! line's length.

#![no_main]

use std::io::{self, Read, Write};
use std::time::{Duration, Instant};

use gc_fuzz::show;
use gc_protocol::ProtocolError;
use gc_protocol::io::{FramedStream, TimeoutStream};
use libfuzzer_sys::fuzz_target;

/// Reads `data` in chunks whose sizes come from a small generator; a zero size is an
/// interrupted read.
struct Chunked<'a> {
    data: &'a [u8],
    state: u32,
}

impl Chunked<'_> {
    fn next_size(&mut self) -> usize {
        // xorshift32: cheap, and the same input always gives the same chunks.
        self.state ^= self.state << 13;
        self.state ^= self.state >> 17;
        self.state ^= self.state << 5;
        match self.state % 16 {
            0 => 0,
            1 => 70_000,
            2 => 700,
            n => n as usize * 3,
        }
    }
}

impl Read for Chunked<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let size = self.next_size();
        if size == 0 && !self.data.is_empty() {
            return Err(io::ErrorKind::Interrupted.into());
        }
        let n = size.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

impl Write for Chunked<'_> {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl TimeoutStream for Chunked<'_> {
    fn set_read_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
    fn set_write_timeout(&self, _: Option<Duration>) -> io::Result<()> {
        Ok(())
    }
}

fuzz_target!(|data: &[u8]| {
    let [cap, seed, modes, payload @ ..] = data else {
        return;
    };
    // Caps from tiny to the protocol's own (MAX_FRAME_BYTES, through `new`).
    let max_frame = match cap {
        255 => gc_protocol::limits::MAX_FRAME_BYTES,
        c => 2 + usize::from(*c) * 4,
    };
    let stream = Chunked {
        data: payload,
        state: u32::from(*seed) | 0x100,
    };
    let mut framed = if *cap == 255 {
        FramedStream::new(stream, "fuzz")
    } else {
        FramedStream::with_max_frame(stream, "fuzz", max_frame)
    };
    let deadline = Instant::now() + Duration::from_secs(60);

    let mut expected = payload.split(|&b| b == b'\n');
    let mut rest = payload.len();
    for i in 0.. {
        let want = expected.next().unwrap_or_default();
        let complete = rest > want.len();
        // Now and then take a buffered line instead of reading.
        if modes >> (i % 8) & 1 == 1
            && framed.has_buffered()
            && let Some(line) = framed.take_buffered_line(|_| true)
        {
            assert_eq!(show(line), show(want), "taken line {i}");
            rest -= want.len() + 1;
            continue;
        }
        match framed.read_line(deadline) {
            Ok(line) => {
                assert!(complete, "a line without its LF: {}", show(line));
                assert!(
                    line.len() < max_frame,
                    "a line of {} bytes passed a cap of {max_frame}",
                    line.len() + 1
                );
                assert_eq!(show(line), show(want), "line {i}");
                rest -= want.len() + 1;
            }
            Err(ProtocolError::TooLong { limit, .. }) => {
                assert_eq!(limit, max_frame);
                assert!(
                    want.len() + 1 > max_frame,
                    "line {i} of {} bytes refused under a cap of {max_frame}",
                    want.len() + 1
                );
                break;
            }
            Err(ProtocolError::Closed { partial, .. }) => {
                assert!(!complete, "closed before line {i} of {}", show(want));
                assert_eq!(partial, want.len(), "partial line");
                break;
            }
            Err(e) => panic!("{e}"),
        }
    }
});
