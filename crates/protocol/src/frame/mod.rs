//! Every frame of GC/1 as a typed value, with `encode` and `parse`.
//!
//! Frames are grouped by port and direction, because the same token means different things on
//! different ports (`Ping` on 10740 is a version check, on 8070 a heartbeat). Each group is a type
//! implementing [`Frame`]: `parse` takes one line *without* its LF and never panics; `encode`
//! appends the frame *with* its LF to a buffer, so a sequence of frames can go out in one write.
//!
//! One file per port (`connect`, `auth`, `callback`, `heartbeat`, `delivery`, `send`); `common`
//! holds `Err` and `Rec`, which several ports share, and `codec` the field-level helpers all of
//! them encode and parse with.

mod auth;
mod callback;
mod codec;
mod common;
mod connect;
mod delivery;
mod error;
mod heartbeat;
mod send;

pub use auth::{AuthClient, AuthServer, CallbackPorts};
pub use callback::{Authed, CallbackReply};
pub use common::{ErrorFrame, encode_rec_frame};
pub use connect::{ConnectPing, ConnectReply};
pub use delivery::{DeliveryFrame, DeliveryReply};
pub use error::ParseError;
pub(crate) use error::thousands;
pub use heartbeat::{HeartbeatPing, HeartbeatReply, HeartbeatRequest, Stopping};
pub use send::{SendReply, SendRequest};

/// A typed group of frames that can be parsed from and encoded to one line.
pub trait Frame: Sized {
    /// Parses one line, without its terminating LF.
    fn parse(line: &[u8]) -> Result<Self, ParseError>;

    /// Appends the frame, with its LF, to `out`.
    fn encode(&self, out: &mut Vec<u8>);

    /// The frame as bytes, with its LF.
    fn to_bytes(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64);
        self.encode(&mut out);
        out
    }
}

#[cfg(test)]
mod tests;
