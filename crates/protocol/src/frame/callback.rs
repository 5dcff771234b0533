//! 12090, the auth callback port: the server hands the client its session.

use super::codec::{Fields, Writer};
use super::{ErrorFrame, Frame, ParseError};
use crate::codes::token;
use crate::types::SessionToken;

/// `Authed <server-final:b64> <session-token>` (server → client on the auth callback port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Authed {
    /// The SCRAM server-final message (decoded from base64), carrying the server signature.
    pub server_final: String,
    /// The new session's token.
    pub token: SessionToken,
}

impl Frame for Authed {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        if f.token_str() != token::AUTHED {
            return Err(f.unexpected("`Authed`"));
        }
        let mut f = f.with_token(token::AUTHED);
        f.arity(2)?;
        Ok(Self {
            server_final: f.b64_text("server-final")?,
            token: f.session_token("session-token")?,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::start(out, token::AUTHED);
        w.b64(self.server_final.as_bytes());
        w.word(self.token.as_str());
        w.end();
    }
}

/// The client's answer on the auth callback port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum CallbackReply {
    /// `Thx`: the client accepts the session.
    Thx,
    /// `Err …`: e.g. `auth` when the server signature did not verify.
    Err(ErrorFrame),
}

impl Frame for CallbackReply {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::THX => {
                f.with_token(token::THX).arity(0)?;
                Ok(Self::Thx)
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected("`Thx` or `Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Thx => Writer::start(out, token::THX).end(),
            Self::Err(e) => e.encode_into(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ErrorCode;
    use crate::frame::tests::{TOKEN, exact, tok};

    #[test]
    fn callback_frames() {
        exact(
            Authed {
                server_final: "v=x".into(),
                token: tok(),
            },
            &format!("Authed dj14 {TOKEN}\n"),
        );
        exact(CallbackReply::Thx, "Thx\n");
        exact(
            CallbackReply::Err(ErrorFrame::new(ErrorCode::Auth, "a")),
            "Err auth BG\n",
        );
    }
}
