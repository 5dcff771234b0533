//! Every frame of GC/1 as a typed value, with `encode` and `parse`.
//!
//! Frames are grouped by port and direction, because the same token means different things on
//! different ports (`Ping` on 10740 is a version check, on 8070 a heartbeat). Each group is a type
//! implementing [`Frame`]: `parse` takes one line *without* its LF and never panics; `encode`
//! appends the frame *with* its LF to a buffer, so a sequence of frames can go out in one write.

use std::fmt;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use crate::codes::{ErrorCode, Registration, token};
use crate::error::FieldError;
use crate::limits::{
    MAX_B64_FIELD, MAX_BATCH_RECORDS, MAX_FRAME_BYTES, MAX_HISTORY_LIMIT, MAX_SCRAM_ITERATIONS,
};
use crate::types::{
    ClientMsgId, Record, SessionToken, Timestamp, Username, parse_port, parse_u32, parse_u64,
};

/// Why a line is not a valid frame. Every variant but [`ParseError::TooLong`] maps to the wire
/// code `malformed`; the `Display` text is meant for the peer (it goes into the `Err` text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is empty.
    #[error("empty frame")]
    Empty,
    /// The line exceeds the frame size limit.
    #[error("frame is longer than {MAX_FRAME_BYTES} bytes")]
    TooLong,
    /// The line contains a CR; frames end with a bare LF.
    #[error("frame contains a CR byte (frames end with LF only)")]
    CarriageReturn,
    /// The line contains an LF (it holds more than one frame).
    #[error("frame contains an LF byte inside it")]
    LineFeed,
    /// The line is not UTF-8.
    #[error("frame is not valid UTF-8")]
    NotUtf8,
    /// Two spaces in a row, or a leading or trailing space.
    #[error("empty field (fields are separated by exactly one space)")]
    EmptyField,
    /// The token is not one expected here.
    #[error("unexpected token `{got}`, expected {expected}")]
    UnexpectedToken {
        /// The token received (shortened, control characters escaped).
        got: String,
        /// What would have been valid here.
        expected: &'static str,
    },
    /// Wrong number of fields for the token.
    #[error("`{token}` takes {expected} field(s) after the token, got {got}")]
    Arity {
        /// The frame's token.
        token: &'static str,
        /// The number of fields it takes.
        expected: usize,
        /// The number received.
        got: usize,
    },
    /// A required field is missing (frames with a variable number of fields).
    #[error("`{token}` is missing its <{field}> field")]
    MissingField {
        /// The frame's token.
        token: &'static str,
        /// The field's name.
        field: &'static str,
    },
    /// A field broke its syntax rule.
    #[error("`{token}` field <{field}>: {error}")]
    Field {
        /// The frame's token.
        token: &'static str,
        /// The field's name as in the protocol description.
        field: &'static str,
        /// What was wrong.
        error: FieldError,
    },
    /// A text field is not valid c16.
    #[error("`{token}` field <{field}> is not valid c16: {error}")]
    C16 {
        /// The frame's token.
        token: &'static str,
        /// The field's name.
        field: &'static str,
        /// The decoding error.
        error: c16::DecodeError,
    },
    /// A text field decoded to bytes that are not UTF-8.
    #[error("`{token}` field <{field}> does not decode to UTF-8 text")]
    TextNotUtf8 {
        /// The frame's token.
        token: &'static str,
        /// The field's name.
        field: &'static str,
    },
    /// A base64 field is not valid standard base64 with padding, or is too long.
    #[error("`{token}` field <{field}> is not valid base64 (standard alphabet, padded)")]
    Base64 {
        /// The frame's token.
        token: &'static str,
        /// The field's name.
        field: &'static str,
    },
    /// A field is well-formed but its value is not allowed.
    #[error("`{token}` field <{field}>: {detail}")]
    Value {
        /// The frame's token.
        token: &'static str,
        /// The field's name.
        field: &'static str,
        /// What is allowed.
        detail: &'static str,
    },
}

impl ParseError {
    /// The wire error code to answer this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLong => ErrorCode::TooLong,
            _ => ErrorCode::Malformed,
        }
    }
}

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

// ───────────────────────────── shared pieces ─────────────────────────────

/// `Err <code> <text:c16>`: an error reply, possible wherever a reply is expected.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ErrorFrame {
    /// What kind of error.
    pub code: ErrorCode,
    /// For humans: what happened and what to do.
    pub text: String,
}

impl ErrorFrame {
    /// An error frame with a text.
    pub fn new(code: ErrorCode, text: impl Into<String>) -> Self {
        Self {
            code,
            text: text.into(),
        }
    }

    fn encode_into(&self, out: &mut Vec<u8>) {
        let mut w = Writer::start(out, token::ERR);
        w.word(self.code.as_str());
        w.text(self.text.as_bytes());
        w.end();
    }

    fn parse_fields(mut f: Fields<'_>) -> Result<Self, ParseError> {
        f.arity(2)?;
        let code = f.next().parse().map_err(|_| ParseError::Value {
            token: token::ERR,
            field: "code",
            detail: "not a known error code",
        })?;
        let text = f.text("text")?;
        Ok(Self { code, text })
    }
}

impl fmt::Display for ErrorFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}: {}", self.code, self.text)
    }
}

impl Frame for ErrorFrame {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::ERR => Self::parse_fields(f.with_token(token::ERR)),
            _ => Err(f.unexpected("`Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        self.encode_into(out);
    }
}

/// The three ports a client listens on, sent in `AuthRequest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackPorts {
    /// Auth callback (`Authed`), default 12090.
    pub auth: u16,
    /// Heartbeat (`Ping`), default 8070.
    pub heartbeat: u16,
    /// Delivery (`Batch`), default 6090.
    pub delivery: u16,
}

fn encode_rec(record: &Record, out: &mut Vec<u8>) {
    let mut w = Writer::start(out, token::REC);
    w.num(record.id);
    w.display(&record.timestamp);
    w.word(record.username.as_str());
    w.text(record.body.as_bytes());
    w.end();
}

/// Appends a `Rec` frame for `record` to `out` (the same bytes on 6090 and 9980), so a server can
/// encode a record once and send it to many clients.
pub fn encode_rec_frame(record: &Record, out: &mut Vec<u8>) {
    encode_rec(record, out);
}

fn parse_rec(mut f: Fields<'_>) -> Result<Record, ParseError> {
    f.arity(4)?;
    let id = f.num("id")?;
    let timestamp = f.timestamp("timestamp")?;
    let username = f.username("username")?;
    let body = f.text("body")?;
    Ok(Record {
        id,
        timestamp,
        username,
        body,
    })
}

// ───────────────────────────── 10740: connect ─────────────────────────────

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

// ───────────────────────────── 9281: auth ─────────────────────────────

/// Frames a client sends on the auth port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthClient {
    /// `AuthRequest <username> <auth-port> <heartbeat-port> <delivery-port> <client-first:b64>`.
    AuthRequest {
        /// Who logs in.
        username: Username,
        /// Where the server calls back.
        ports: CallbackPorts,
        /// The SCRAM client-first message (decoded from base64).
        client_first: String,
    },
    /// `Proof <client-final:b64>`.
    Proof {
        /// The SCRAM client-final message (decoded from base64).
        client_final: String,
    },
    /// `Register <username> <salt:b64> <iterations> <stored-key:b64> <server-key:b64>`.
    Register {
        /// The account name.
        username: Username,
        /// The SCRAM salt.
        salt: Vec<u8>,
        /// PBKDF2 iterations.
        iterations: u32,
        /// SCRAM StoredKey (32 bytes).
        stored_key: Vec<u8>,
        /// SCRAM ServerKey (32 bytes).
        server_key: Vec<u8>,
    },
}

impl Frame for AuthClient {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::AUTH_REQUEST => {
                let mut f = f.with_token(token::AUTH_REQUEST);
                f.arity(5)?;
                let username = f.username("username")?;
                let ports = CallbackPorts {
                    auth: f.port("auth-port")?,
                    heartbeat: f.port("heartbeat-port")?,
                    delivery: f.port("delivery-port")?,
                };
                let client_first = f.b64_text("client-first")?;
                Ok(Self::AuthRequest {
                    username,
                    ports,
                    client_first,
                })
            }
            token::PROOF => {
                let mut f = f.with_token(token::PROOF);
                f.arity(1)?;
                Ok(Self::Proof {
                    client_final: f.b64_text("client-final")?,
                })
            }
            token::REGISTER => {
                let mut f = f.with_token(token::REGISTER);
                f.arity(5)?;
                let username = f.username("username")?;
                let salt = f.b64("salt")?;
                if !(8..=64).contains(&salt.len()) {
                    return Err(f.value("salt", "must be 8 to 64 bytes"));
                }
                let iterations = f.u32("iterations")?;
                if iterations == 0 || iterations > MAX_SCRAM_ITERATIONS {
                    return Err(f.value("iterations", "must be 1 to 10,000,000"));
                }
                let stored_key = f.b64("stored-key")?;
                if stored_key.len() != 32 {
                    return Err(f.value("stored-key", "must be 32 bytes (SHA-256)"));
                }
                let server_key = f.b64("server-key")?;
                if server_key.len() != 32 {
                    return Err(f.value("server-key", "must be 32 bytes (SHA-256)"));
                }
                Ok(Self::Register {
                    username,
                    salt,
                    iterations,
                    stored_key,
                    server_key,
                })
            }
            _ => Err(f.unexpected("`AuthRequest`, `Proof` or `Register`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::AuthRequest {
                username,
                ports,
                client_first,
            } => {
                let mut w = Writer::start(out, token::AUTH_REQUEST);
                w.word(username.as_str());
                w.num(ports.auth.into());
                w.num(ports.heartbeat.into());
                w.num(ports.delivery.into());
                w.b64(client_first.as_bytes());
                w.end();
            }
            Self::Proof { client_final } => {
                let mut w = Writer::start(out, token::PROOF);
                w.b64(client_final.as_bytes());
                w.end();
            }
            Self::Register {
                username,
                salt,
                iterations,
                stored_key,
                server_key,
            } => {
                let mut w = Writer::start(out, token::REGISTER);
                w.word(username.as_str());
                w.b64(salt);
                w.num((*iterations).into());
                w.b64(stored_key);
                w.b64(server_key);
                w.end();
            }
        }
    }
}

/// Frames the server sends on the auth port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthServer {
    /// `Auth1 <server-first:b64>`.
    Auth1 {
        /// The SCRAM server-first message (decoded from base64).
        server_first: String,
    },
    /// `Ok <heartbeat-interval-ms> <latest-id>`: logged in.
    Ok {
        /// How often the server will send heartbeats.
        heartbeat_ms: u32,
        /// The newest stored message id at login.
        latest_id: u64,
    },
    /// `Registered`: the account exists now.
    Registered,
    /// `Err …`.
    Err(ErrorFrame),
}

impl Frame for AuthServer {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::AUTH1 => {
                let mut f = f.with_token(token::AUTH1);
                f.arity(1)?;
                Ok(Self::Auth1 {
                    server_first: f.b64_text("server-first")?,
                })
            }
            token::OK => {
                let mut f = f.with_token(token::OK);
                f.arity(2)?;
                Ok(Self::Ok {
                    heartbeat_ms: f.u32("heartbeat-interval-ms")?,
                    latest_id: f.num("latest-id")?,
                })
            }
            token::REGISTERED => {
                f.with_token(token::REGISTERED).arity(0)?;
                Ok(Self::Registered)
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected("`Auth1`, `Ok`, `Registered` or `Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Auth1 { server_first } => {
                let mut w = Writer::start(out, token::AUTH1);
                w.b64(server_first.as_bytes());
                w.end();
            }
            Self::Ok {
                heartbeat_ms,
                latest_id,
            } => {
                let mut w = Writer::start(out, token::OK);
                w.num((*heartbeat_ms).into());
                w.num(*latest_id);
                w.end();
            }
            Self::Registered => Writer::start(out, token::REGISTERED).end(),
            Self::Err(e) => e.encode_into(out),
        }
    }
}

// ───────────────────────────── 12090: auth callback ─────────────────────────────

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

// ───────────────────────────── 8070: heartbeat ─────────────────────────────

/// `Ping <session-token> <server-time> <presence-version>` (server → client on the heartbeat port).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct HeartbeatPing {
    /// The session this heartbeat belongs to.
    pub token: SessionToken,
    /// The server's clock.
    pub server_time: Timestamp,
    /// Changes whenever the set of online users changes.
    pub presence_version: u64,
}

impl Frame for HeartbeatPing {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        if f.token_str() != token::PING {
            return Err(f.unexpected("`Ping`"));
        }
        let mut f = f.with_token(token::PING);
        f.arity(3)?;
        Ok(Self {
            token: f.session_token("session-token")?,
            server_time: f.timestamp("server-time")?,
            presence_version: f.num("presence-version")?,
        })
    }

    fn encode(&self, out: &mut Vec<u8>) {
        let mut w = Writer::start(out, token::PING);
        w.word(self.token.as_str());
        w.display(&self.server_time);
        w.num(self.presence_version);
        w.end();
    }
}

/// The client's answer to a heartbeat.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum HeartbeatReply {
    /// `Pong <last-id> <client-time>`.
    Pong {
        /// The highest message id the client holds: the delivery cursor.
        last_id: u64,
        /// The client's clock.
        client_time: Timestamp,
    },
    /// `Err …`, e.g. `session` for a token that is not the client's.
    Err(ErrorFrame),
}

impl Frame for HeartbeatReply {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::PONG => {
                let mut f = f.with_token(token::PONG);
                f.arity(2)?;
                Ok(Self::Pong {
                    last_id: f.num("last-id")?,
                    client_time: f.timestamp("client-time")?,
                })
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected("`Pong` or `Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Pong {
                last_id,
                client_time,
            } => {
                let mut w = Writer::start(out, token::PONG);
                w.num(*last_id);
                w.display(client_time);
                w.end();
            }
            Self::Err(e) => e.encode_into(out),
        }
    }
}

// ───────────────────────────── 6090: delivery ─────────────────────────────

/// Frames the server sends on the delivery port: `Batch`, then `n` × `Rec`, then `End`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryFrame {
    /// `Batch <session-token> <n>`, 1 ≤ n ≤ 1000.
    Batch {
        /// The session the batch is for.
        token: SessionToken,
        /// How many `Rec` frames follow.
        n: u32,
    },
    /// `Rec <id> <timestamp> <username> <body:c16>`.
    Rec(Record),
    /// `End`.
    End,
}

impl Frame for DeliveryFrame {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::BATCH => {
                let mut f = f.with_token(token::BATCH);
                f.arity(2)?;
                let token = f.session_token("session-token")?;
                let n = f.u32("n")?;
                if n == 0 || n as usize > MAX_BATCH_RECORDS {
                    return Err(f.value("n", "must be 1 to 1000"));
                }
                Ok(Self::Batch { token, n })
            }
            token::REC => parse_rec(f.with_token(token::REC)).map(Self::Rec),
            token::END => {
                f.with_token(token::END).arity(0)?;
                Ok(Self::End)
            }
            _ => Err(f.unexpected("`Batch`, `Rec` or `End`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Batch { token, n } => {
                let mut w = Writer::start(out, token::BATCH);
                w.word(token.as_str());
                w.num((*n).into());
                w.end();
            }
            Self::Rec(r) => encode_rec(r, out),
            Self::End => Writer::start(out, token::END).end(),
        }
    }
}

/// The client's answer to a batch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeliveryReply {
    /// `Thx <last-id>`: the client now holds everything up to `last_id`.
    Thx {
        /// The client's cursor after the batch.
        last_id: u64,
    },
    /// `Err …`.
    Err(ErrorFrame),
}

impl Frame for DeliveryReply {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::THX => {
                let mut f = f.with_token(token::THX);
                f.arity(1)?;
                Ok(Self::Thx {
                    last_id: f.num("last-id")?,
                })
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected("`Thx` or `Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Thx { last_id } => {
                let mut w = Writer::start(out, token::THX);
                w.num(*last_id);
                w.end();
            }
            Self::Err(e) => e.encode_into(out),
        }
    }
}

// ───────────────────────────── 9980: sending and queries ─────────────────────────────

/// Frames a client sends on the sending port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendRequest {
    /// `Msg <session-token> <client-msg-id> <body:c16>`.
    Msg {
        /// The sender's session.
        token: SessionToken,
        /// Idempotency key chosen by the client.
        client_msg_id: ClientMsgId,
        /// The body as decoded from c16. Not yet validated as text: the server checks dedupe first,
        /// then emptiness, NUL, UTF-8 and size, in that order.
        body: Vec<u8>,
    },
    /// `History <session-token> <before-id> <limit>` (limit ≤ 1000; before-id 0 = newest).
    History {
        /// The session.
        token: SessionToken,
        /// Return records with ids below this (0: from the newest).
        before_id: u64,
        /// At most this many records.
        limit: u32,
    },
    /// `Who <session-token>`.
    Who {
        /// The session.
        token: SessionToken,
    },
    /// `Bye <session-token>`.
    Bye {
        /// The session to end.
        token: SessionToken,
    },
}

impl SendRequest {
    /// The session token the request carries.
    pub fn token(&self) -> &SessionToken {
        match self {
            Self::Msg { token, .. }
            | Self::History { token, .. }
            | Self::Who { token }
            | Self::Bye { token } => token,
        }
    }
}

impl Frame for SendRequest {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::MSG => {
                let mut f = f.with_token(token::MSG);
                f.arity(3)?;
                Ok(Self::Msg {
                    token: f.session_token("session-token")?,
                    client_msg_id: f.client_msg_id("client-msg-id")?,
                    body: f.c16("body")?,
                })
            }
            token::HISTORY => {
                let mut f = f.with_token(token::HISTORY);
                f.arity(3)?;
                let token = f.session_token("session-token")?;
                let before_id = f.num("before-id")?;
                let limit = f.u32("limit")?;
                if limit > MAX_HISTORY_LIMIT {
                    return Err(f.value("limit", "must be at most 1000"));
                }
                Ok(Self::History {
                    token,
                    before_id,
                    limit,
                })
            }
            token::WHO => {
                let mut f = f.with_token(token::WHO);
                f.arity(1)?;
                Ok(Self::Who {
                    token: f.session_token("session-token")?,
                })
            }
            token::BYE => {
                let mut f = f.with_token(token::BYE);
                f.arity(1)?;
                Ok(Self::Bye {
                    token: f.session_token("session-token")?,
                })
            }
            _ => Err(f.unexpected("`Msg`, `History`, `Who` or `Bye`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Msg {
                token,
                client_msg_id,
                body,
            } => {
                let mut w = Writer::start(out, token::MSG);
                w.word(token.as_str());
                w.word(client_msg_id.as_str());
                w.text(body);
                w.end();
            }
            Self::History {
                token,
                before_id,
                limit,
            } => {
                let mut w = Writer::start(out, token::HISTORY);
                w.word(token.as_str());
                w.num(*before_id);
                w.num((*limit).into());
                w.end();
            }
            Self::Who { token } => {
                let mut w = Writer::start(out, token::WHO);
                w.word(token.as_str());
                w.end();
            }
            Self::Bye { token } => {
                let mut w = Writer::start(out, token::BYE);
                w.word(token.as_str());
                w.end();
            }
        }
    }
}

/// Frames the server sends on the sending port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendReply {
    /// `Thx <id> <timestamp>`: stored (or, after `Bye`, `Thx 0 <timestamp>`).
    Thx {
        /// The stored record's id (0 after `Bye`).
        id: u64,
        /// The stored record's timestamp.
        timestamp: Timestamp,
    },
    /// `Rec …` in a `History` reply.
    Rec(Record),
    /// `End` of a `History` reply.
    End,
    /// `Online <presence-version> <username> …`.
    Online {
        /// The presence version this list belongs to.
        presence_version: u64,
        /// Who is online, each user once.
        users: Vec<Username>,
    },
    /// `Err …`.
    Err(ErrorFrame),
}

impl Frame for SendReply {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::THX => {
                let mut f = f.with_token(token::THX);
                f.arity(2)?;
                Ok(Self::Thx {
                    id: f.num("id")?,
                    timestamp: f.timestamp("timestamp")?,
                })
            }
            token::REC => parse_rec(f.with_token(token::REC)).map(Self::Rec),
            token::END => {
                f.with_token(token::END).arity(0)?;
                Ok(Self::End)
            }
            token::ONLINE => {
                let mut f = f.with_token(token::ONLINE);
                if f.remaining == 0 {
                    return Err(ParseError::MissingField {
                        token: token::ONLINE,
                        field: "presence-version",
                    });
                }
                let presence_version = f.num("presence-version")?;
                let mut users = Vec::with_capacity(f.remaining);
                while f.remaining > 0 {
                    users.push(f.username("username")?);
                }
                Ok(Self::Online {
                    presence_version,
                    users,
                })
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected("`Thx`, `Rec`, `End`, `Online` or `Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Thx { id, timestamp } => {
                let mut w = Writer::start(out, token::THX);
                w.num(*id);
                w.display(timestamp);
                w.end();
            }
            Self::Rec(r) => encode_rec(r, out),
            Self::End => Writer::start(out, token::END).end(),
            Self::Online {
                presence_version,
                users,
            } => {
                let mut w = Writer::start(out, token::ONLINE);
                w.num(*presence_version);
                for u in users {
                    w.word(u.as_str());
                }
                w.end();
            }
            Self::Err(e) => e.encode_into(out),
        }
    }
}

// ───────────────────────────── encoding helper ─────────────────────────────

struct Writer<'a> {
    out: &'a mut Vec<u8>,
}

impl<'a> Writer<'a> {
    fn start(out: &'a mut Vec<u8>, token: &str) -> Self {
        out.extend_from_slice(token.as_bytes());
        Self { out }
    }

    fn word(&mut self, word: &str) {
        self.out.push(b' ');
        self.out.extend_from_slice(word.as_bytes());
    }

    fn num(&mut self, n: u64) {
        self.out.push(b' ');
        // Digits backwards into a small stack buffer: no allocation, no formatting machinery.
        let mut buf = [0u8; 20];
        let mut i = buf.len();
        let mut n = n;
        loop {
            i -= 1;
            buf[i] = b'0' + (n % 10) as u8;
            n /= 10;
            if n == 0 {
                break;
            }
        }
        self.out.extend_from_slice(&buf[i..]);
    }

    fn display(&mut self, value: &dyn fmt::Display) {
        use std::io::Write as _;
        self.out.push(b' ');
        // Writing into a Vec cannot fail.
        let _ = write!(self.out, "{value}");
    }

    fn text(&mut self, bytes: &[u8]) {
        self.out.push(b' ');
        if bytes.is_empty() {
            self.out.push(b'-');
        } else {
            c16::encode_into_vec(bytes, self.out);
        }
    }

    fn b64(&mut self, bytes: &[u8]) {
        self.out.push(b' ');
        // Only auth frames carry base64; they are rare enough that a temporary String is fine.
        self.out.extend_from_slice(B64.encode(bytes).as_bytes());
    }

    fn end(self) {
        self.out.push(b'\n');
    }
}

// ───────────────────────────── parsing helper ─────────────────────────────

/// A line split into its token and fields, with the checks every frame shares done up front.
struct Fields<'a> {
    token: &'static str,
    first: &'a str,
    rest: std::str::Split<'a, char>,
    remaining: usize,
}

impl<'a> Fields<'a> {
    fn split(line: &'a [u8]) -> Result<Self, ParseError> {
        if line.is_empty() {
            return Err(ParseError::Empty);
        }
        if line.len() >= MAX_FRAME_BYTES {
            return Err(ParseError::TooLong);
        }
        if line.contains(&b'\r') {
            return Err(ParseError::CarriageReturn);
        }
        if line.contains(&b'\n') {
            return Err(ParseError::LineFeed);
        }
        let text = std::str::from_utf8(line).map_err(|_| ParseError::NotUtf8)?;
        let spaces = text.bytes().filter(|&b| b == b' ').count();
        let mut rest = text.split(' ');
        let first = rest.next().unwrap_or_default();
        if text.starts_with(' ') || text.ends_with(' ') || text.contains("  ") {
            return Err(ParseError::EmptyField);
        }
        Ok(Self {
            token: "",
            first,
            rest,
            remaining: spaces,
        })
    }

    fn token_str(&self) -> &'a str {
        self.first
    }

    fn with_token(mut self, token: &'static str) -> Self {
        self.token = token;
        self
    }

    fn unexpected(&self, expected: &'static str) -> ParseError {
        let got: String = self
            .first
            .chars()
            .flat_map(char::escape_debug)
            .take(48)
            .collect();
        ParseError::UnexpectedToken { got, expected }
    }

    /// Checks the exact number of fields after the token.
    fn arity(&self, expected: usize) -> Result<(), ParseError> {
        if self.remaining == expected {
            Ok(())
        } else {
            Err(ParseError::Arity {
                token: self.token,
                expected,
                got: self.remaining,
            })
        }
    }

    /// The next field. Callers check the arity first, so a missing field reads as empty and
    /// fails that field's own rule rather than panicking.
    fn next(&mut self) -> &'a str {
        self.remaining = self.remaining.saturating_sub(1);
        self.rest.next().unwrap_or_default()
    }

    fn field_err(&self, field: &'static str, error: FieldError) -> ParseError {
        ParseError::Field {
            token: self.token,
            field,
            error,
        }
    }

    fn value(&self, field: &'static str, detail: &'static str) -> ParseError {
        ParseError::Value {
            token: self.token,
            field,
            detail,
        }
    }

    fn num(&mut self, field: &'static str) -> Result<u64, ParseError> {
        let s = self.next();
        parse_u64(s).map_err(|e| self.field_err(field, e))
    }

    fn u32(&mut self, field: &'static str) -> Result<u32, ParseError> {
        let s = self.next();
        parse_u32(s).map_err(|e| self.field_err(field, e))
    }

    fn port(&mut self, field: &'static str) -> Result<u16, ParseError> {
        let s = self.next();
        parse_port(s).map_err(|e| self.field_err(field, e))
    }

    fn timestamp(&mut self, field: &'static str) -> Result<Timestamp, ParseError> {
        let s = self.next();
        Timestamp::parse(s).map_err(|e| self.field_err(field, e))
    }

    fn username(&mut self, field: &'static str) -> Result<Username, ParseError> {
        let s = self.next();
        Username::new(s).map_err(|e| self.field_err(field, e))
    }

    fn client_msg_id(&mut self, field: &'static str) -> Result<ClientMsgId, ParseError> {
        let s = self.next();
        ClientMsgId::new(s).map_err(|e| self.field_err(field, e))
    }

    fn session_token(&mut self, field: &'static str) -> Result<SessionToken, ParseError> {
        let s = self.next();
        SessionToken::new(s).map_err(|e| self.field_err(field, e))
    }

    fn c16(&mut self, field: &'static str) -> Result<Vec<u8>, ParseError> {
        let s = self.next();
        if s == "-" {
            return Ok(Vec::new());
        }
        c16::decode(s).map_err(|error| ParseError::C16 {
            token: self.token,
            field,
            error,
        })
    }

    fn text(&mut self, field: &'static str) -> Result<String, ParseError> {
        let bytes = self.c16(field)?;
        String::from_utf8(bytes).map_err(|_| ParseError::TextNotUtf8 {
            token: self.token,
            field,
        })
    }

    fn b64(&mut self, field: &'static str) -> Result<Vec<u8>, ParseError> {
        let s = self.next();
        let err = || ParseError::Base64 {
            token: self.token,
            field,
        };
        if s.len() > MAX_B64_FIELD {
            return Err(err());
        }
        B64.decode(s).map_err(|_| err())
    }

    fn b64_text(&mut self, field: &'static str) -> Result<String, ParseError> {
        let bytes = self.b64(field)?;
        String::from_utf8(bytes).map_err(|_| ParseError::TextNotUtf8 {
            token: self.token,
            field,
        })
    }
}

#[cfg(test)]
mod tests;
