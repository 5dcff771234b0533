//! GC/1, the General Communications wire protocol.
//!
//! Pure encode/parse functions for every frame ([`frame`]), the protocol's limits ([`limits`]),
//! tokens and error codes ([`codes`]), SCRAM-SHA-256 ([`scram`]), and small blocking helpers that
//! read or write frames with a deadline ([`io`]). No socket policy lives here: callers decide whom
//! to connect to, when to retry and when to give up.
//!
//! Every text field may decode to any character: [`sanitize`] is the one place that makes a peer's
//! text safe to show on a terminal or in a log, for the client and the server alike.

pub mod codes;
pub mod error;
pub mod files;
pub mod frame;
pub mod io;
pub mod limits;
pub mod sanitize;
pub mod scram;
pub mod signin;
pub mod texts;
pub mod types;

pub use codes::{
    ErrorCode, Registration, SessionLevel, VERSION, VERSION_GC4, VERSION_GC5, VERSION_ROOMS,
    VERSION_TLS,
};
pub use error::{FieldError, ProtocolError};
pub use frame::{
    AuthClient, AuthServer, Authed, CallbackPorts, CallbackReply, ConnectPing, ConnectReply,
    DeliveryFrame, DeliveryReply, ErrorFrame, Frame, HeartbeatPing, HeartbeatReply,
    HeartbeatRequest, ParseError, SendReply, SendRequest, Stopping,
};
pub use io::FramedStream;
pub use types::{
    ClientMsgId, ContentHash, Fingerprint, ListedKind, ListedRole, Record, Room, RoomKind,
    RoomRole, SessionToken, Timestamp, Username, Visibility,
};
