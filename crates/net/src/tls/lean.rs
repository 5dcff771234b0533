//! TLS streams driven through rustls' unbuffered API, for connections that are kept open.
//!
//! rustls' buffered connection keeps a 4 KiB receive buffer for as long as it lives, so each
//! kept connection of an idle session held 4 KiB that it used for a few bytes a minute (a
//! heartbeat, a delivery, a `Msg`). Here the buffers belong to the stream: a read allocates
//! one when bytes have arrived, and frees it once no part of a record is left in it; what was
//! decrypted and not yet taken, and what was encrypted and not yet sent, likewise. An idle
//! connection, waiting for its next record, holds none of them.
//!
//! The unbuffered API offers no `export_keying_material`, so a lean stream has no channel
//! binding ([`super::Stream::binding`] is `Unbound`): logins, which bind SCRAM to the TLS
//! session, use the buffered stream.

use std::fmt;
use std::io::{self, Read as _, Write as _};
use std::net::TcpStream;
use std::time::Instant;

use rustix::net::RecvFlags;
use rustls::CommonState;
use rustls::client::ClientConnectionData;
use rustls::client::UnbufferedClientConnection;
use rustls::server::ServerConnectionData;
use rustls::server::UnbufferedServerConnection;
use rustls::unbuffered::{
    ConnectionState, EncodeError, EncryptError, InsufficientSizeError, UnbufferedStatus,
};

use super::{ByteCount, Handshake, MIN_TIMEOUT, RECORDED, handshake_eof, handshake_failed};
use crate::error::NetError;

/// What one socket read asks for when no record is partly read (what rustls' own buffer takes
/// at a time).
const READ_CHUNK: usize = 4096;

/// The most plaintext one write encrypts: four full records. Bounds the send buffer.
const WRITE_CHUNK: usize = 4 * MAX_FRAGMENT;

/// A TLS record's largest plaintext.
const MAX_FRAGMENT: usize = 16 * 1024;

/// A TLS record header: content type, version, length.
const HEADER: usize = 5;

/// What a TLS 1.3 record adds to its plaintext: the header, the inner content type and the AEAD
/// tag (16 bytes for every suite rustls offers).
const RECORD_OVERHEAD: usize = HEADER + 1 + 16;

/// The largest record a peer may send (RFC 8446 §5.2: plaintext + 256); a longer length is
/// rejected by rustls, and bounds what one read allocates here.
const MAX_RECORD: usize = HEADER + MAX_FRAGMENT + 256;

/// rustls' two unbuffered connections, driven alike.
pub(super) trait Unbuffered: Send + 'static {
    type Data;
    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, Self::Data>;
    fn common(&self) -> &CommonState;
}

impl Unbuffered for UnbufferedClientConnection {
    type Data = ClientConnectionData;

    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ClientConnectionData> {
        self.process_tls_records(incoming)
    }

    fn common(&self) -> &CommonState {
        self
    }
}

impl Unbuffered for UnbufferedServerConnection {
    type Data = ServerConnectionData;

    fn records<'c, 'i>(
        &'c mut self,
        incoming: &'i mut [u8],
    ) -> UnbufferedStatus<'c, 'i, ServerConnectionData> {
        self.process_tls_records(incoming)
    }

    fn common(&self) -> &CommonState {
        self
    }
}

/// What the stream does with a failure to send while it reads.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Sends {
    /// Report it (writes, handshakes).
    Report,
    /// Leave what is unsent for the next write to send and report: a peer that stopped reading
    /// may still have sent something to read.
    Defer,
}

/// Where driving the state machine stopped.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// Nothing more to do with what has arrived: reading (or writing) may go on.
    Idle,
    /// The handshake waits for the peer's next records.
    NeedRead,
    /// Both ends have closed.
    Closed,
}

/// A TLS connection on its socket, through rustls' unbuffered API.
pub(super) struct Lean<C> {
    conn: C,
    io: Io,
}

/// A lean stream's socket and buffers.
struct Io {
    tcp: TcpStream,
    /// Records read and not processed yet: empty, and unallocated, between records.
    incoming: Vec<u8>,
    /// Decrypted bytes; those from `taken` on are the caller's still.
    plaintext: Vec<u8>,
    taken: usize,
    /// Encrypted bytes; those from `sent` on still have to go.
    outgoing: Vec<u8>,
    sent: usize,
    /// The last socket read took all there was (fewer bytes than it asked for).
    drained: bool,
    /// The peer sent its close_notify: no more data will come.
    peer_closed: bool,
    /// The connection failed (a bad record, a failed check): every later call says so.
    failed: Option<rustls::Error>,
    /// During the handshake: the first bytes received (for a peer that answers in plain text)
    /// and the bytes moved (for a count given after it).
    handshaking: bool,
    first: Vec<u8>,
    handshake: Handshake,
}

impl<C> fmt::Debug for Lean<C> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Lean")
            .field("tcp", &self.io.tcp)
            .finish_non_exhaustive()
    }
}

/// A failed connection's error, as reads and writes report it (rustls' buffered stream does the
/// same: `InvalidData` carrying the rustls error).
fn invalid(e: rustls::Error) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, e)
}

impl<C: Unbuffered> Lean<C> {
    /// Runs the handshake of `conn` on `tcp` before `deadline`. The pin is the caller's to check.
    pub(super) fn handshake(
        conn: C,
        tcp: TcpStream,
        peer: &str,
        deadline: Instant,
    ) -> Result<Self, NetError> {
        let mut lean = Self {
            conn,
            io: Io {
                tcp,
                incoming: Vec::new(),
                plaintext: Vec::new(),
                taken: 0,
                outgoing: Vec::new(),
                sent: 0,
                drained: false,
                peer_closed: false,
                failed: None,
                handshaking: true,
                first: Vec::new(),
                handshake: Handshake::default(),
            },
        };
        while lean.conn.common().is_handshaking() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(NetError::Protocol(gc_protocol::ProtocolError::TimedOut {
                    peer: peer.to_owned(),
                }));
            }
            let left = left.max(MIN_TIMEOUT);
            let tcp = &lean.io.tcp;
            tcp.set_read_timeout(Some(left))
                .and_then(|()| tcp.set_write_timeout(Some(left)))
                .map_err(|e| super::io_error(peer, e))?;
            let step = match lean.drive(None, None, Sends::Report) {
                Ok(step) => step,
                Err(e) if retry(&e) => continue,
                Err(e) => return Err(handshake_failed(peer, e, &lean.io.first)),
            };
            if step == Step::Closed || lean.io.peer_closed {
                return Err(handshake_eof(peer, &lean.io.first));
            }
            if !lean.conn.common().is_handshaking() {
                break;
            }
            match lean.io.fill(true, None) {
                Ok(0) => return Err(handshake_eof(peer, &lean.io.first)),
                Ok(_) => {}
                Err(e) if retry(&e) => {}
                Err(e) => return Err(handshake_failed(peer, e, &lean.io.first)),
            }
        }
        lean.io.handshaking = false;
        lean.io.first = Vec::new();
        Ok(lean)
    }

    /// Runs rustls' state machine on what has arrived until it has nothing more to do without
    /// the peer: records are processed (plaintext kept for the caller), handshake and alert
    /// records sent, and, with `encrypt`, that plaintext encrypted for sending once the
    /// connection can carry it.
    fn drive(
        &mut self,
        count: Option<&ByteCount>,
        mut encrypt: Option<&[u8]>,
        sends: Sends,
    ) -> io::Result<Step> {
        if let Some(e) = &self.io.failed {
            return Err(invalid(e.clone()));
        }
        loop {
            let Self { conn, io } = self;
            let UnbufferedStatus { discard, state } = conn.records(&mut io.incoming);
            let mut transmit = None;
            let outcome = match state {
                Err(e) => Err(e),
                Ok(ConnectionState::ReadTraffic(mut traffic)) => {
                    let mut result = Ok(None);
                    while let Some(record) = traffic.next_record() {
                        match record {
                            Ok(record) => io.plaintext.extend_from_slice(record.payload),
                            Err(e) => {
                                result = Err(e);
                                break;
                            }
                        }
                    }
                    result
                }
                Ok(ConnectionState::ReadEarlyData(_)) => {
                    // No configuration here accepts early data, so rustls refuses it first.
                    Err(rustls::Error::General("unexpected early data".into()))
                }
                Ok(ConnectionState::EncodeTlsData(mut data)) => {
                    append(&mut io.outgoing, |room| encode(&mut data, room));
                    Ok(None)
                }
                Ok(ConnectionState::TransmitTlsData(data)) => {
                    transmit = Some(data);
                    Ok(None)
                }
                Ok(ConnectionState::PeerClosed) => {
                    io.peer_closed = true;
                    Ok(None)
                }
                Ok(ConnectionState::Closed) => {
                    io.peer_closed = true;
                    Ok(Some(Step::Closed))
                }
                Ok(ConnectionState::BlockedHandshake) => Ok(Some(Step::NeedRead)),
                Ok(ConnectionState::WriteTraffic(mut traffic)) => match encrypt.take() {
                    None => Ok(Some(Step::Idle)),
                    Some(data) => {
                        let mut exhausted = false;
                        append(&mut io.outgoing, |room| match traffic.encrypt(data, room) {
                            Ok(n) => Ok(n),
                            Err(EncryptError::InsufficientSize(short)) => Err(Some(short)),
                            Err(EncryptError::EncryptExhausted) => {
                                exhausted = true;
                                Err(None)
                            }
                        });
                        if exhausted {
                            Err(rustls::Error::EncryptError)
                        } else {
                            Ok(Some(Step::Idle))
                        }
                    }
                },
                Ok(_) => Ok(Some(Step::Idle)),
            };
            // Sent while the state still holds the connection at this step: it is told the
            // records went only once they have.
            if let Some(data) = transmit {
                match io.send_pending(count) {
                    Ok(()) => data.done(),
                    // Not done: rustls asks for the transmission again, and the unsent rest
                    // goes then.
                    Err(e) => {
                        io.discard(discard);
                        return match sends {
                            Sends::Report => Err(e),
                            Sends::Defer => Ok(Step::Idle),
                        };
                    }
                }
            }
            io.discard(discard);
            match outcome {
                Ok(None) => {}
                Ok(Some(step)) => return Ok(step),
                Err(e) => return Err(self.fail(e, count)),
            }
        }
    }

    /// Records that the connection failed with `e`, and sends the peer the alert that says so
    /// if it can (as rustls' buffered stream does): the peer then reports why, not just a
    /// closed connection.
    fn fail(&mut self, e: rustls::Error, count: Option<&ByteCount>) -> io::Error {
        let Self { conn, io } = self;
        io.failed = Some(e.clone());
        // The alert is the one record queued (every step drains the queue first), and the
        // next step returns it before it looks at the received bytes again. One step only: a
        // second would process them again. (rustls must see the same buffer as before: its
        // handshake joiner keeps offsets into it.)
        let UnbufferedStatus { state, .. } = conn.records(&mut io.incoming);
        if let Ok(ConnectionState::EncodeTlsData(mut data)) = state {
            append(&mut io.outgoing, |room| encode(&mut data, room));
        }
        let _ = io.send_pending(count);
        io.incoming = Vec::new();
        invalid(e)
    }

    /// With some plaintext, reads on without waiting what else has arrived, up to `wanted`
    /// bytes (as the buffered stream's `take_arrived`). Whatever stops it is for the next read
    /// to find.
    fn take_arrived(&mut self, wanted: usize, count: Option<&ByteCount>) {
        while self.io.plain_left() < wanted {
            match self.io.fill(false, count) {
                Ok(n) if n > 0 => {}
                _ => return,
            }
            if self.drive(count, None, Sends::Defer).is_err() || self.io.drained {
                return;
            }
        }
    }
}

/// A lean stream, whichever end of the handshake it took: what [`super::Stream`] asks of it.
pub(super) trait LeanStream: Send + fmt::Debug {
    /// The socket underneath.
    fn tcp(&self) -> &TcpStream;
    /// rustls' view of the connection (the peer's certificates).
    fn common(&self) -> &CommonState;
    /// What the handshake moved, once (for the first count given).
    fn take_handshake(&mut self) -> Handshake;
    /// Reads plaintext, as `Read::read` on a socket would.
    fn read_counted(&mut self, buf: &mut [u8], count: Option<&ByteCount>) -> io::Result<usize>;
    /// Takes plaintext to send, as `Write::write` on a socket would.
    fn write_counted(&mut self, buf: &[u8], count: Option<&ByteCount>) -> io::Result<usize>;
    /// Sends what is still unsent.
    fn flush_counted(&mut self, count: Option<&ByteCount>) -> io::Result<()>;
    /// The bytes its buffers hold (allocated), for the tests.
    #[cfg(test)]
    fn held(&self) -> usize;
}

impl<C: Unbuffered> LeanStream for Lean<C> {
    #[cfg(test)]
    fn held(&self) -> usize {
        let io = &self.io;
        io.incoming.capacity() + io.plaintext.capacity() + io.outgoing.capacity()
    }

    fn tcp(&self) -> &TcpStream {
        &self.io.tcp
    }

    fn common(&self) -> &CommonState {
        self.conn.common()
    }

    fn take_handshake(&mut self) -> Handshake {
        std::mem::take(&mut self.io.handshake)
    }

    /// What has arrived, up to `buf`'s length, waiting (up to the socket's timeout) only when
    /// nothing has. `Ok(0)` after the peer's close_notify; a close without one is
    /// `UnexpectedEof`, as rustls' buffered stream reports it.
    fn read_counted(&mut self, buf: &mut [u8], count: Option<&ByteCount>) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Whether this call has read the socket (and so knows whether it left anything there).
        let mut fresh = false;
        loop {
            if self.io.plain_left() > 0 {
                if self.io.plain_left() < buf.len() && !(fresh && self.io.drained) {
                    self.take_arrived(buf.len(), count);
                }
                return Ok(self.io.take_plain(buf));
            }
            if self.io.peer_closed {
                return Ok(0);
            }
            self.drive(count, None, Sends::Defer)?;
            if self.io.plain_left() > 0 || self.io.peer_closed {
                continue;
            }
            if self.io.fill(true, count)? == 0 {
                return Err(io::Error::new(
                    io::ErrorKind::UnexpectedEof,
                    "peer closed connection without sending TLS close_notify",
                ));
            }
            fresh = true;
        }
    }

    /// Encrypts up to [`WRITE_CHUNK`] bytes of `buf` and sends them.
    fn write_counted(&mut self, buf: &[u8], count: Option<&ByteCount>) -> io::Result<usize> {
        if buf.is_empty() {
            return Ok(0);
        }
        // Records still unsent from before go first (an error here has taken nothing).
        self.io.send_pending(count)?;
        let data = &buf[..buf.len().min(WRITE_CHUNK)];
        self.io.outgoing.reserve_exact(sealed_len(data.len()));
        match self.drive(count, Some(data), Sends::Report)? {
            Step::Idle => {}
            Step::Closed => return Err(io::ErrorKind::BrokenPipe.into()),
            Step::NeedRead => return Err(invalid(rustls::Error::HandshakeNotComplete)),
        }
        // The data is taken now: a failure to send it yet must not be reported as a failure to
        // take it, or the caller would send it twice. `flush`, or the next write, sends the rest
        // and reports what is wrong.
        let _ = self.io.send_pending(count);
        Ok(data.len())
    }

    /// Sends what is still unsent.
    fn flush_counted(&mut self, count: Option<&ByteCount>) -> io::Result<()> {
        self.io.send_pending(count)
    }
}

impl Io {
    /// Counts `n` bytes received from the socket.
    fn received(&mut self, n: usize, count: Option<&ByteCount>) {
        if self.handshaking {
            self.handshake.received += n as u64;
        } else if let Some(count) = count {
            count.add_received(n as u64);
        }
    }

    /// Counts `n` bytes sent to the socket.
    fn sent_bytes(&mut self, n: usize, count: Option<&ByteCount>) {
        if self.handshaking {
            self.handshake.sent += n as u64;
        } else if let Some(count) = count {
            count.add_sent(n as u64);
        }
    }

    /// How many bytes of plaintext the caller has still to take.
    fn plain_left(&self) -> usize {
        self.plaintext.len() - self.taken
    }

    /// Copies plaintext into `buf`; the buffer is freed once all of it is taken.
    fn take_plain(&mut self, buf: &mut [u8]) -> usize {
        let have = &self.plaintext[self.taken..];
        let n = have.len().min(buf.len());
        buf[..n].copy_from_slice(&have[..n]);
        self.taken += n;
        if self.taken == self.plaintext.len() {
            self.plaintext = Vec::new();
            self.taken = 0;
        }
        n
    }

    /// Reads from the socket into `incoming`: waiting (up to the socket's timeout) or only what
    /// has arrived. Returns the bytes read (0: the peer closed), and notes whether that was all
    /// there was (`drained`). A wait that finds nothing waits for the first byte without a
    /// buffer, so that a connection waiting for its next record holds none.
    fn fill(&mut self, wait: bool, count: Option<&ByteCount>) -> io::Result<usize> {
        let have = self.incoming.len();
        let want = self.rest_of_record().max(READ_CHUNK);
        self.incoming.resize(have + want, 0);
        let mut got = if wait && have > 0 {
            // A record is partly here: its rest is worth waiting for.
            (&self.tcp).read(&mut self.incoming[have..])
        } else {
            recv(&self.tcp, &mut self.incoming[have..], RecvFlags::DONTWAIT)
        };
        if wait
            && have == 0
            && got
                .as_ref()
                .is_err_and(|e| e.kind() == io::ErrorKind::WouldBlock)
        {
            self.incoming = Vec::new();
            let mut probe = [0u8; 1];
            if recv(&self.tcp, &mut probe, RecvFlags::PEEK)? == 0 {
                self.drained = true;
                return Ok(0);
            }
            self.incoming.resize(want, 0);
            got = (&self.tcp).read(&mut self.incoming);
        }
        let n = match got {
            Ok(n) => n,
            Err(e) => {
                self.incoming.truncate(have);
                if have == 0 {
                    self.incoming = Vec::new();
                }
                return Err(e);
            }
        };
        self.incoming.truncate(have + n);
        if self.handshaking && self.first.len() < RECORDED {
            let keep = n.min(RECORDED - self.first.len());
            self.first
                .extend_from_slice(&self.incoming[have..have + keep]);
        }
        self.received(n, count);
        if self.incoming.is_empty() {
            self.incoming = Vec::new();
        }
        self.drained = n < want;
        Ok(n)
    }

    /// The bytes still missing of the record whose header starts `incoming`.
    fn rest_of_record(&self) -> usize {
        match self.incoming.get(..HEADER) {
            Some(header) => {
                let len = usize::from(u16::from_be_bytes([header[3], header[4]]));
                (HEADER + len)
                    .min(MAX_RECORD)
                    .saturating_sub(self.incoming.len())
            }
            None => 0,
        }
    }

    /// Drops `n` processed bytes from the front of `incoming` (freeing it once empty).
    fn discard(&mut self, n: usize) {
        if n >= self.incoming.len() {
            self.incoming = Vec::new();
        } else if n > 0 {
            self.incoming.drain(..n);
        }
    }

    /// Sends what is encrypted and unsent (freeing the buffer once it has all gone). On failure
    /// the rest stays for the next call.
    fn send_pending(&mut self, count: Option<&ByteCount>) -> io::Result<()> {
        while self.sent < self.outgoing.len() {
            match (&self.tcp).write(&self.outgoing[self.sent..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => {
                    self.sent += n;
                    self.sent_bytes(n, count);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        self.outgoing = Vec::new();
        self.sent = 0;
        Ok(())
    }
}

/// Encodes a handshake or alert record into `room` (see [`append`]).
fn encode<Data>(
    data: &mut rustls::unbuffered::EncodeTlsData<'_, Data>,
    room: &mut [u8],
) -> Result<usize, Option<InsufficientSizeError>> {
    match data.encode(room) {
        Ok(n) => Ok(n),
        Err(EncodeError::InsufficientSize(short)) => Err(Some(short)),
        Err(EncodeError::AlreadyEncoded) => Err(None),
    }
}

/// One `recv` with `flags`, as an `io::Result`.
fn recv(tcp: &TcpStream, buf: &mut [u8], flags: RecvFlags) -> io::Result<usize> {
    rustix::net::recv(tcp, buf, flags)
        .map(|(received, _)| received)
        .map_err(io::Error::from)
}

/// A wait that ran out or was interrupted: the handshake loop checks its deadline and goes on.
fn retry(e: &io::Error) -> bool {
    matches!(
        e.kind(),
        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
    )
}

/// The encrypted size of `n` bytes of plaintext.
fn sealed_len(n: usize) -> usize {
    n + n.div_ceil(MAX_FRAGMENT).max(1) * RECORD_OVERHEAD
}

/// Appends what `encode` writes to `out`, growing it to the size `encode` asks for (`Err(Some)`);
/// `Err(None)`: nothing to append.
fn append(
    out: &mut Vec<u8>,
    mut encode: impl FnMut(&mut [u8]) -> Result<usize, Option<InsufficientSizeError>>,
) {
    let at = out.len();
    let mut room = out.capacity() - at;
    loop {
        out.resize(at + room, 0);
        match encode(&mut out[at..]) {
            Ok(n) => {
                out.truncate(at + n);
                return;
            }
            Err(Some(InsufficientSizeError { required_size })) if required_size > room => {
                room = required_size;
            }
            Err(_) => {
                out.truncate(at);
                return;
            }
        }
    }
}
