//! GC/1, the General Communications wire protocol.
//!
//! Pure encode/parse functions for every frame, the protocol's limits and error codes, SCRAM-SHA-256
//! helpers, and small blocking helpers that read or write one frame with a deadline. No socket
//! policy lives here: callers decide whom to connect to, when to retry and when to give up.

pub mod error;
pub mod limits;
pub mod types;

pub use error::{FieldError, ProtocolError};
pub use types::{ClientMsgId, Record, SessionToken, Timestamp, Username};
