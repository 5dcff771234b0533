//! gc-net: how GC/1 endpoints hold their connections, written once for the server, the client, the
//! bench and the tests.
//!
//! - [`connect`]: open a connection from a chosen local address within a deadline
//!   ([`connect_from`], [`Connector`]), listen dual-stack ([`listen`]), and wake a blocked
//!   `accept` ([`wake_accept`]); [`Timeouts`] turns the I/O timeout into deadlines.
//! - [`kept`]: [`KeptConn`], a connection to one peer kept open between exchanges, retried on a
//!   fresh connection when the kept one turns out to have been closed by the peer.
//! - [`logfmt`]: the log fields formatter both programs use, which escapes whatever a peer may
//!   have put in a field.
//! - [`unblock`]: [`Unblocker`], the sockets a shutdown (of the server, a session or a client) must
//!   cut short so that no thread waits out a deadline.
//!
//! This is the transport seam: every connection the programs open or accept is made here, so a
//! change of transport changes this crate and not the exchanges above it. The frames themselves
//! are `gc-protocol`'s and know nothing of sockets.

pub mod connect;
pub mod error;
pub mod identity;
pub mod kept;
pub mod logfmt;
pub mod tls;
pub mod unblock;

pub use connect::{
    Connector, Timeouts, connect_from, listen, lower_thread_priority, wake_accept, wake_addr,
};
pub use error::NetError;
pub use identity::{Fingerprint, Identity};
pub use kept::{KeptConn, ReadFail, Reuse};
pub use tls::{ByteCount, ClientAuth, PeerCheck, Stream, TlsConfig};
pub use unblock::{Registration, Unblocker};

/// A framed connection to a peer, as every exchange reads and writes it.
pub type Conn = gc_protocol::FramedStream<Stream>;
