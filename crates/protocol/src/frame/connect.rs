//! 10740, the connect port: the version check before anything else.

use super::codec::{Fields, Writer};
use super::{ErrorFrame, Frame, ParseError};
use crate::codes::{Registration, token};

/// `Ping <version>` on the connect port (client → server).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ConnectPing {
    /// The protocol version the client speaks (`GC/1`).
    pub version: String,
}

impl Frame for ConnectPing {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let mut f = Fields::split(line)?;
        if f.token_str() != token::PING {
            return Err(f.unexpected("`Ping`"));
        }
        f = f.with_token(token::PING);
        f.arity(1)?;
        let version = f.next();
        let ok = version.len() <= 32 && version.bytes().all(|b| b.is_ascii_graphic());
        if !ok {
            return Err(ParseError::Value {
                token: token::PING,
                field: "version",
                detail: "not a version name like GC/1",
            });
        }
        Ok(Self {
            version: version.to_owned(),
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::start(out, token::PING);
        w.word(&self.version);
        w.end();
    }
}

/// Replies on the connect port (server → client).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ConnectReply {
    /// `Pong <version> <server-name:c16> <open|closed>`.
    Pong {
        /// The version the server speaks.
        version: String,
        /// The server's display name.
        server_name: String,
        /// Whether anyone may register.
        registration: Registration,
    },
    /// `Err …`, e.g. `version`.
    Err(ErrorFrame),
}

impl Frame for ConnectReply {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::PONG => {
                let mut f = f.with_token(token::PONG);
                f.arity(3)?;
                let version = f.next().to_owned();
                let server_name = f.text("server-name")?;
                let registration = match f.next() {
                    "open" => Registration::Open,
                    "closed" => Registration::Closed,
                    _ => {
                        return Err(ParseError::Value {
                            token: token::PONG,
                            field: "registration",
                            detail: "must be `open` or `closed`",
                        });
                    }
                };
                Ok(Self::Pong {
                    version,
                    server_name,
                    registration,
                })
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected("`Pong` or `Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Pong {
                version,
                server_name,
                registration,
            } => {
                let mut w = Writer::start(out, token::PONG);
                w.word(version);
                w.text(server_name.as_bytes());
                w.word(registration.as_str());
                w.end();
            }
            Self::Err(e) => e.encode_into(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ErrorCode;
    use crate::frame::tests::exact;

    #[test]
    fn connect_frames() {
        exact(
            ConnectPing {
                version: "GC/1".into(),
            },
            "Ping GC/1\n",
        );
        exact(
            ConnectReply::Pong {
                version: "GC/1".into(),
                server_name: "hi".into(),
                registration: Registration::Open,
            },
            "Pong GC/1 IGJG open\n",
        );
        exact(
            ConnectReply::Pong {
                version: "GC/1".into(),
                server_name: String::new(),
                registration: Registration::Closed,
            },
            "Pong GC/1 - closed\n",
        );
        exact(
            ConnectReply::Err(ErrorFrame::new(ErrorCode::Version, "hi")),
            "Err version IGJG\n",
        );
    }
}
