//! 9980, the sending port: messages, history and who is online; with GC/3, rooms and their
//! moderation.

use std::sync::LazyLock;

use super::codec::{Fields, Writer};
use super::common::{encode_rec, parse_rec};
use super::error::thousands;
use super::{ErrorFrame, Frame, ParseError};
use crate::codes::token;
use crate::limits::{
    CHALLENGE_NONCE_BYTES, MAX_AWAY_BYTES, MAX_CHUNK_BYTES, MAX_FILE_NAME_BYTES, MAX_HISTORY_LIMIT,
    MAX_MUTE_SECONDS, MAX_REASON_BYTES, MAX_TOPIC_BYTES,
};
use crate::types::{
    ClientMsgId, ContentHash, ListedKind, ListedRole, Record, Room, RoomKind, RoomRole,
    SessionToken, Timestamp, Username, Visibility,
};

// The rules the peer reads when a field breaks a limit, formatted once from the constants (see
// auth.rs). Plain digits for `History`: the wire text has always read `must be at most 1000`, and
// clients and tests match it.
static HISTORY_LIMIT_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be at most {MAX_HISTORY_LIMIT}"));
static TOPIC_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be at most {MAX_TOPIC_BYTES} bytes"));
static REASON_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be at most {MAX_REASON_BYTES} bytes"));
static MUTE_RULE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "must be at most {} seconds",
        thousands(MAX_MUTE_SECONDS.into())
    )
});
static AWAY_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be at most {MAX_AWAY_BYTES} bytes"));
static NONCE_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be {CHALLENGE_NONCE_BYTES} bytes"));
static FILE_NAME_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be 1 to {MAX_FILE_NAME_BYTES} bytes of UTF-8 without NUL"));
static CHUNK_RULE: LazyLock<String> =
    LazyLock::new(|| format!("must be 1 to {} bytes", thousands(MAX_CHUNK_BYTES)));
const DATA_OFFSET_RULE: &str = "must be at most the size";
const KIND_RULE: &str =
    "must be direct for a direct conversation (@...), public or private for a room (#...)";

/// Frames a client sends on the sending port.
///
/// GC/3 adds an optional last `<room>` field to `Msg`, `History` and `Who` (absent: `#general`,
/// so `#general`'s frames stay byte for byte GC/1's) and the room requests from `Rooms` on. The
/// parser checks each field's syntax only; what a session may do in which room (a direct
/// conversation cannot be joined, `#general` cannot be left, …) is the server's to decide.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SendRequest {
    /// `Msg <session-token> <client-msg-id> <body:c16> [<room>]`.
    Msg {
        /// The sender's session.
        token: SessionToken,
        /// Idempotency key chosen by the client.
        client_msg_id: ClientMsgId,
        /// The body as decoded from c16. Not yet validated as text: the server checks dedupe first,
        /// then emptiness, NUL, UTF-8 and size, in that order.
        body: Vec<u8>,
        /// GC/3: where to post (`None`: `#general`). Written only when `Some`.
        room: Option<Room>,
    },
    /// `History <session-token> <before-id> <limit> [<room>]` (limit ≤ [`MAX_HISTORY_LIMIT`];
    /// before-id 0 = newest).
    History {
        /// The session.
        token: SessionToken,
        /// Return records with ids below this (0: from the newest).
        before_id: u64,
        /// At most this many records.
        limit: u32,
        /// GC/3: whose records (`None`: `#general`'s). Written only when `Some`.
        room: Option<Room>,
    },
    /// `Who <session-token> [<room>]`.
    Who {
        /// The session.
        token: SessionToken,
        /// GC/3: the room whose online members to list (`None`: `#general`). Written only when
        /// `Some`.
        room: Option<Room>,
    },
    /// `Bye <session-token>`.
    Bye {
        /// The session to end.
        token: SessionToken,
    },
    /// GC/3 `Rooms <session-token>`: the session's rooms and the public ones, answered with a
    /// [`SendReply::Room`] per room and [`SendReply::End`].
    Rooms {
        /// The session.
        token: SessionToken,
    },
    /// GC/3 `Create <session-token> <room> <public|private> <topic:c16>`.
    Create {
        /// The session.
        token: SessionToken,
        /// The new room's name.
        room: Room,
        /// Who may join it.
        visibility: Visibility,
        /// Its topic (at most [`MAX_TOPIC_BYTES`]; empty: none).
        topic: String,
    },
    /// GC/3 `Join <session-token> <room>`.
    Join {
        /// The session.
        token: SessionToken,
        /// The room to join.
        room: Room,
    },
    /// GC/3 `Part <session-token> <room>`: leave a room.
    Part {
        /// The session.
        token: SessionToken,
        /// The room to leave.
        room: Room,
    },
    /// GC/3 `Invite <session-token> <room> <username>`.
    Invite {
        /// The session.
        token: SessionToken,
        /// The room.
        room: Room,
        /// Who is invited.
        username: Username,
    },
    /// GC/3 `Topic <session-token> <room> <topic:c16>`.
    Topic {
        /// The session.
        token: SessionToken,
        /// The room.
        room: Room,
        /// The new topic (at most [`MAX_TOPIC_BYTES`]; empty: none).
        topic: String,
    },
    /// GC/3 `Privacy <session-token> <room> <public|private>`.
    Privacy {
        /// The session.
        token: SessionToken,
        /// The room.
        room: Room,
        /// Who may join it from now on.
        visibility: Visibility,
    },
    /// GC/3 `Role <session-token> <room> <username> <member|moderator|owner>`.
    Role {
        /// The session.
        token: SessionToken,
        /// The room.
        room: Room,
        /// Whose role changes.
        username: Username,
        /// The new role.
        role: RoomRole,
    },
    /// GC/3 `Kick <session-token> <room> <username> <reason:c16>`.
    Kick {
        /// The session.
        token: SessionToken,
        /// The room.
        room: Room,
        /// Who is put out.
        username: Username,
        /// Why (at most [`MAX_REASON_BYTES`]; empty: none given).
        reason: String,
    },
    /// GC/3 `Mute <session-token> <room> <username> <seconds> <reason:c16>`.
    Mute {
        /// The session.
        token: SessionToken,
        /// The room.
        room: Room,
        /// Who is muted.
        username: Username,
        /// For how long, at most [`MAX_MUTE_SECONDS`]; `0` lifts the mute.
        seconds: u32,
        /// Why (at most [`MAX_REASON_BYTES`]; empty: none given).
        reason: String,
    },
    /// GC/3 `Ban <session-token> <room> <username> <reason:c16>`.
    Ban {
        /// The session.
        token: SessionToken,
        /// The room.
        room: Room,
        /// Who is banned.
        username: Username,
        /// Why (at most [`MAX_REASON_BYTES`]; empty: none given).
        reason: String,
    },
    /// GC/3 `Unban <session-token> <room> <username>`.
    Unban {
        /// The session.
        token: SessionToken,
        /// The room.
        room: Room,
        /// Whose ban is lifted.
        username: Username,
    },
    /// GC/4 `Challenge <session-token>`: the start of a password change, answered with
    /// [`SendReply::Challenge`].
    Challenge {
        /// The session.
        token: SessionToken,
    },
    /// GC/4 `Passwd <session-token> <salt:b64> <iterations> <stored-key:b64> <server-key:b64>
    /// <proof:b64>`: replace the account's verifier with this one (derived by the client; the
    /// password never crosses the wire), proved with the current password over the nonce of the
    /// last `Challenge` (`gc_protocol::scram::passwd_proof`).
    Passwd {
        /// The session.
        token: SessionToken,
        /// The new salt, [`MIN_SCRAM_SALT_BYTES`](crate::limits::MIN_SCRAM_SALT_BYTES) to [`MAX_SCRAM_SALT_BYTES`](crate::limits::MAX_SCRAM_SALT_BYTES) bytes.
        salt: Vec<u8>,
        /// The new PBKDF2 iteration count.
        iterations: u32,
        /// The new StoredKey ([`SCRAM_KEY_BYTES`](crate::limits::SCRAM_KEY_BYTES) bytes).
        stored_key: Vec<u8>,
        /// The new ServerKey ([`SCRAM_KEY_BYTES`](crate::limits::SCRAM_KEY_BYTES) bytes).
        server_key: Vec<u8>,
        /// The proof of the current password ([`SCRAM_KEY_BYTES`](crate::limits::SCRAM_KEY_BYTES) bytes).
        proof: Vec<u8>,
    },
    /// GC/4 `Away <session-token> <message:c16>`: the account is away (the message may be
    /// empty, at most [`MAX_AWAY_BYTES`]).
    Away {
        /// The session.
        token: SessionToken,
        /// What others see beside the name.
        message: String,
    },
    /// GC/4 `Back <session-token>`: the account is no longer away.
    Back {
        /// The session.
        token: SessionToken,
    },
    /// GC/5 `Offer <session-token> <room> <sha256> <size> <name:c16> <client-msg-id>`: the
    /// start (or resumption) of an upload into `room`, answered `Resume`, or `Thx` when nothing
    /// is left to send (docs/files.md §4).
    Offer {
        /// The session.
        token: SessionToken,
        /// Where the file is shared.
        room: Room,
        /// The SHA-256 of the whole content.
        hash: ContentHash,
        /// The content's length in bytes (0 allowed).
        size: u64,
        /// The file's name: display text only (1–[`MAX_FILE_NAME_BYTES`] bytes, no NUL).
        name: String,
        /// The idempotency key of the record that will announce the file.
        client_msg_id: ClientMsgId,
    },
    /// GC/5 `Chunk <session-token> <sha256> <offset> <length>`: the header of a piece of an
    /// upload. Exactly `length` raw bytes (1–[`MAX_CHUNK_BYTES`]) follow the line; the reader
    /// takes them itself, so they are neither scanned for LF nor decoded.
    Chunk {
        /// The session.
        token: SessionToken,
        /// The upload's content hash.
        hash: ContentHash,
        /// Where in the content these bytes go.
        offset: u64,
        /// How many raw bytes follow.
        length: u64,
    },
    /// GC/5 `Fetch <session-token> <sha256> <offset>`: a file's content from `offset` on,
    /// answered `Data` and the bytes.
    Fetch {
        /// The session.
        token: SessionToken,
        /// The content asked for.
        hash: ContentHash,
        /// Where to start (what the client has already).
        offset: u64,
    },
}

impl SendRequest {
    /// The session token the request carries.
    pub fn token(&self) -> &SessionToken {
        match self {
            Self::Msg { token, .. }
            | Self::History { token, .. }
            | Self::Who { token, .. }
            | Self::Bye { token }
            | Self::Rooms { token }
            | Self::Create { token, .. }
            | Self::Join { token, .. }
            | Self::Part { token, .. }
            | Self::Invite { token, .. }
            | Self::Topic { token, .. }
            | Self::Privacy { token, .. }
            | Self::Role { token, .. }
            | Self::Kick { token, .. }
            | Self::Mute { token, .. }
            | Self::Ban { token, .. }
            | Self::Unban { token, .. }
            | Self::Challenge { token }
            | Self::Passwd { token, .. }
            | Self::Away { token, .. }
            | Self::Back { token }
            | Self::Offer { token, .. }
            | Self::Chunk { token, .. }
            | Self::Fetch { token, .. } => token,
        }
    }
}

/// The optional last `<room>` of `Msg`, `History` and `Who`, once the arity said it is there.
fn optional_room(f: &mut Fields<'_>, present: bool) -> Result<Option<Room>, ParseError> {
    if present {
        f.room("room").map(Some)
    } else {
        Ok(None)
    }
}

/// Starts a request: its token, then the session's.
fn start<'a>(out: &'a mut Vec<u8>, name: &str, token: &SessionToken) -> Writer<'a> {
    let mut w = Writer::start(out, name);
    w.word(token.as_str());
    w
}

fn topic(f: &mut Fields<'_>) -> Result<String, ParseError> {
    f.text_at_most("topic", MAX_TOPIC_BYTES, &TOPIC_RULE)
}

fn reason(f: &mut Fields<'_>) -> Result<String, ParseError> {
    f.text_at_most("reason", MAX_REASON_BYTES, &REASON_RULE)
}

fn away_message(f: &mut Fields<'_>) -> Result<String, ParseError> {
    f.text_at_most("message", MAX_AWAY_BYTES, &AWAY_RULE)
}

impl Frame for SendRequest {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::MSG => {
                let mut f = f.with_token(token::MSG);
                let with_room = f.arity_between(3, 4)? == 1;
                Ok(Self::Msg {
                    token: f.session_token("session-token")?,
                    client_msg_id: f.client_msg_id("client-msg-id")?,
                    body: f.c16("body")?,
                    room: optional_room(&mut f, with_room)?,
                })
            }
            token::HISTORY => {
                let mut f = f.with_token(token::HISTORY);
                let with_room = f.arity_between(3, 4)? == 1;
                let token = f.session_token("session-token")?;
                let before_id = f.num("before-id")?;
                let limit = f.u32("limit")?;
                if limit > MAX_HISTORY_LIMIT {
                    return Err(f.value("limit", &HISTORY_LIMIT_RULE));
                }
                Ok(Self::History {
                    token,
                    before_id,
                    limit,
                    room: optional_room(&mut f, with_room)?,
                })
            }
            token::WHO => {
                let mut f = f.with_token(token::WHO);
                let with_room = f.arity_between(1, 2)? == 1;
                Ok(Self::Who {
                    token: f.session_token("session-token")?,
                    room: optional_room(&mut f, with_room)?,
                })
            }
            token::BYE => {
                let mut f = f.with_token(token::BYE);
                f.arity(1)?;
                Ok(Self::Bye {
                    token: f.session_token("session-token")?,
                })
            }
            token::ROOMS => {
                let mut f = f.with_token(token::ROOMS);
                f.arity(1)?;
                Ok(Self::Rooms {
                    token: f.session_token("session-token")?,
                })
            }
            token::CREATE => {
                let mut f = f.with_token(token::CREATE);
                f.arity(4)?;
                Ok(Self::Create {
                    token: f.session_token("session-token")?,
                    room: f.room("room")?,
                    visibility: f.parsed("visibility")?,
                    topic: topic(&mut f)?,
                })
            }
            token::JOIN => {
                let mut f = f.with_token(token::JOIN);
                f.arity(2)?;
                Ok(Self::Join {
                    token: f.session_token("session-token")?,
                    room: f.room("room")?,
                })
            }
            token::PART => {
                let mut f = f.with_token(token::PART);
                f.arity(2)?;
                Ok(Self::Part {
                    token: f.session_token("session-token")?,
                    room: f.room("room")?,
                })
            }
            token::INVITE => {
                let mut f = f.with_token(token::INVITE);
                f.arity(3)?;
                Ok(Self::Invite {
                    token: f.session_token("session-token")?,
                    room: f.room("room")?,
                    username: f.username("username")?,
                })
            }
            token::TOPIC => {
                let mut f = f.with_token(token::TOPIC);
                f.arity(3)?;
                Ok(Self::Topic {
                    token: f.session_token("session-token")?,
                    room: f.room("room")?,
                    topic: topic(&mut f)?,
                })
            }
            token::PRIVACY => {
                let mut f = f.with_token(token::PRIVACY);
                f.arity(3)?;
                Ok(Self::Privacy {
                    token: f.session_token("session-token")?,
                    room: f.room("room")?,
                    visibility: f.parsed("visibility")?,
                })
            }
            token::ROLE => {
                let mut f = f.with_token(token::ROLE);
                f.arity(4)?;
                Ok(Self::Role {
                    token: f.session_token("session-token")?,
                    room: f.room("room")?,
                    username: f.username("username")?,
                    role: f.parsed("role")?,
                })
            }
            token::KICK => {
                let mut f = f.with_token(token::KICK);
                f.arity(4)?;
                Ok(Self::Kick {
                    token: f.session_token("session-token")?,
                    room: f.room("room")?,
                    username: f.username("username")?,
                    reason: reason(&mut f)?,
                })
            }
            token::MUTE => {
                let mut f = f.with_token(token::MUTE);
                f.arity(5)?;
                let token = f.session_token("session-token")?;
                let room = f.room("room")?;
                let username = f.username("username")?;
                // Any number is read first, so one too large gets the limit's text, not the
                // number rule's.
                let seconds = u32::try_from(f.num("seconds")?)
                    .ok()
                    .filter(|&s| s <= MAX_MUTE_SECONDS)
                    .ok_or_else(|| f.value("seconds", &MUTE_RULE))?;
                Ok(Self::Mute {
                    token,
                    room,
                    username,
                    seconds,
                    reason: reason(&mut f)?,
                })
            }
            token::BAN => {
                let mut f = f.with_token(token::BAN);
                f.arity(4)?;
                Ok(Self::Ban {
                    token: f.session_token("session-token")?,
                    room: f.room("room")?,
                    username: f.username("username")?,
                    reason: reason(&mut f)?,
                })
            }
            token::UNBAN => {
                let mut f = f.with_token(token::UNBAN);
                f.arity(3)?;
                Ok(Self::Unban {
                    token: f.session_token("session-token")?,
                    room: f.room("room")?,
                    username: f.username("username")?,
                })
            }
            token::CHALLENGE => {
                let mut f = f.with_token(token::CHALLENGE);
                f.arity(1)?;
                Ok(Self::Challenge {
                    token: f.session_token("session-token")?,
                })
            }
            token::PASSWD => {
                let mut f = f.with_token(token::PASSWD);
                f.arity(6)?;
                let token = f.session_token("session-token")?;
                Ok(Self::Passwd {
                    token,
                    salt: f.scram_salt("salt")?,
                    iterations: f.scram_iterations("iterations")?,
                    stored_key: f.scram_key("stored-key")?,
                    server_key: f.scram_key("server-key")?,
                    proof: f.scram_key("proof")?,
                })
            }
            token::AWAY => {
                let mut f = f.with_token(token::AWAY);
                f.arity(2)?;
                Ok(Self::Away {
                    token: f.session_token("session-token")?,
                    message: away_message(&mut f)?,
                })
            }
            token::BACK => {
                let mut f = f.with_token(token::BACK);
                f.arity(1)?;
                Ok(Self::Back {
                    token: f.session_token("session-token")?,
                })
            }
            token::OFFER => {
                let mut f = f.with_token(token::OFFER);
                f.arity(6)?;
                let token = f.session_token("session-token")?;
                let room = f.room("room")?;
                let hash = f.parsed("sha256")?;
                let size = f.num("size")?;
                let name = f.text_at_most("name", MAX_FILE_NAME_BYTES, &FILE_NAME_RULE)?;
                if name.is_empty() || name.contains('\0') {
                    return Err(f.value("name", &FILE_NAME_RULE));
                }
                Ok(Self::Offer {
                    token,
                    room,
                    hash,
                    size,
                    name,
                    client_msg_id: f.client_msg_id("client-msg-id")?,
                })
            }
            token::CHUNK => {
                let mut f = f.with_token(token::CHUNK);
                f.arity(4)?;
                let token = f.session_token("session-token")?;
                let hash = f.parsed("sha256")?;
                let offset = f.num("offset")?;
                let length = f.num("length")?;
                if !(1..=MAX_CHUNK_BYTES).contains(&length) {
                    return Err(f.value("length", &CHUNK_RULE));
                }
                Ok(Self::Chunk {
                    token,
                    hash,
                    offset,
                    length,
                })
            }
            token::FETCH => {
                let mut f = f.with_token(token::FETCH);
                f.arity(3)?;
                Ok(Self::Fetch {
                    token: f.session_token("session-token")?,
                    hash: f.parsed("sha256")?,
                    offset: f.num("offset")?,
                })
            }
            _ => Err(f.unexpected(
                "`Msg`, `History`, `Who`, `Bye`, `Rooms`, `Create`, `Join`, `Part`, `Invite`, \
                 `Topic`, `Privacy`, `Role`, `Kick`, `Mute`, `Ban`, `Unban`, `Challenge`, \
                 `Passwd`, `Away`, `Back`, `Offer`, `Chunk` or `Fetch`",
            )),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Msg {
                token,
                client_msg_id,
                body,
                room,
            } => {
                let mut w = start(out, token::MSG, token);
                w.word(client_msg_id.as_str());
                w.text(body);
                if let Some(room) = room {
                    w.word(room.as_str());
                }
                w.end();
            }
            Self::History {
                token,
                before_id,
                limit,
                room,
            } => {
                let mut w = start(out, token::HISTORY, token);
                w.num(*before_id);
                w.num((*limit).into());
                if let Some(room) = room {
                    w.word(room.as_str());
                }
                w.end();
            }
            Self::Who { token, room } => {
                let mut w = start(out, token::WHO, token);
                if let Some(room) = room {
                    w.word(room.as_str());
                }
                w.end();
            }
            Self::Bye { token } => start(out, token::BYE, token).end(),
            Self::Rooms { token } => start(out, token::ROOMS, token).end(),
            Self::Create {
                token,
                room,
                visibility,
                topic,
            } => {
                let mut w = start(out, token::CREATE, token);
                w.word(room.as_str());
                w.word(visibility.as_str());
                w.text(topic.as_bytes());
                w.end();
            }
            Self::Join { token, room } => {
                let mut w = start(out, token::JOIN, token);
                w.word(room.as_str());
                w.end();
            }
            Self::Part { token, room } => {
                let mut w = start(out, token::PART, token);
                w.word(room.as_str());
                w.end();
            }
            Self::Invite {
                token,
                room,
                username,
            } => {
                let mut w = start(out, token::INVITE, token);
                w.word(room.as_str());
                w.word(username.as_str());
                w.end();
            }
            Self::Topic { token, room, topic } => {
                let mut w = start(out, token::TOPIC, token);
                w.word(room.as_str());
                w.text(topic.as_bytes());
                w.end();
            }
            Self::Privacy {
                token,
                room,
                visibility,
            } => {
                let mut w = start(out, token::PRIVACY, token);
                w.word(room.as_str());
                w.word(visibility.as_str());
                w.end();
            }
            Self::Role {
                token,
                room,
                username,
                role,
            } => {
                let mut w = start(out, token::ROLE, token);
                w.word(room.as_str());
                w.word(username.as_str());
                w.word(role.as_str());
                w.end();
            }
            Self::Kick {
                token,
                room,
                username,
                reason,
            } => {
                let mut w = start(out, token::KICK, token);
                w.word(room.as_str());
                w.word(username.as_str());
                w.text(reason.as_bytes());
                w.end();
            }
            Self::Mute {
                token,
                room,
                username,
                seconds,
                reason,
            } => {
                let mut w = start(out, token::MUTE, token);
                w.word(room.as_str());
                w.word(username.as_str());
                w.num((*seconds).into());
                w.text(reason.as_bytes());
                w.end();
            }
            Self::Ban {
                token,
                room,
                username,
                reason,
            } => {
                let mut w = start(out, token::BAN, token);
                w.word(room.as_str());
                w.word(username.as_str());
                w.text(reason.as_bytes());
                w.end();
            }
            Self::Unban {
                token,
                room,
                username,
            } => {
                let mut w = start(out, token::UNBAN, token);
                w.word(room.as_str());
                w.word(username.as_str());
                w.end();
            }
            Self::Challenge { token } => start(out, token::CHALLENGE, token).end(),
            Self::Passwd {
                token,
                salt,
                iterations,
                stored_key,
                server_key,
                proof,
            } => {
                let mut w = start(out, token::PASSWD, token);
                w.b64(salt);
                w.num((*iterations).into());
                w.b64(stored_key);
                w.b64(server_key);
                w.b64(proof);
                w.end();
            }
            Self::Away { token, message } => {
                let mut w = start(out, token::AWAY, token);
                w.text(message.as_bytes());
                w.end();
            }
            Self::Back { token } => start(out, token::BACK, token).end(),
            Self::Offer {
                token,
                room,
                hash,
                size,
                name,
                client_msg_id,
            } => {
                let mut w = start(out, token::OFFER, token);
                w.word(room.as_str());
                w.display(hash);
                w.num(*size);
                w.text(name.as_bytes());
                w.word(client_msg_id.as_str());
                w.end();
            }
            Self::Chunk {
                token,
                hash,
                offset,
                length,
            } => {
                let mut w = start(out, token::CHUNK, token);
                w.display(hash);
                w.num(*offset);
                w.num(*length);
                w.end();
            }
            Self::Fetch {
                token,
                hash,
                offset,
            } => {
                let mut w = start(out, token::FETCH, token);
                w.display(hash);
                w.num(*offset);
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
    /// `End` of a `History` or a `Rooms` reply.
    End,
    /// `Online <presence-version> <username> …`.
    Online {
        /// The presence version this list belongs to.
        presence_version: u64,
        /// Who is online, each user once.
        users: Vec<Username>,
    },
    /// GC/3 `Room <room> <public|private|direct> <role> <members> <topic:c16>`: one room of a
    /// `Rooms` reply. The kind agrees with the name: `direct` for `@…`, `public` or `private`
    /// for `#…`.
    Room {
        /// The room's name.
        room: Room,
        /// Public, private or a direct conversation.
        kind: ListedKind,
        /// Where the asking session's account stands in it (`owner|moderator|member|invited|-`).
        role: ListedRole,
        /// How many members it has.
        members: u32,
        /// Its topic (at most [`MAX_TOPIC_BYTES`]; empty: none).
        topic: String,
    },
    /// GC/4 `Challenge <nonce:b64> <salt:b64> <iterations>`: the answer to
    /// [`SendRequest::Challenge`]: a fresh single-use nonce, and the salt and iteration count of
    /// the account's current password (to derive the keys that prove it).
    Challenge {
        /// [`CHALLENGE_NONCE_BYTES`] random bytes.
        nonce: Vec<u8>,
        /// The current verifier's salt.
        salt: Vec<u8>,
        /// The current verifier's iteration count.
        iterations: u32,
    },
    /// GC/4 `Away <username> <message:c16>`: in the answer to `Who` of a GC/4 session, after
    /// `Online`, one per listed user who is away; then `End`.
    Away {
        /// Who is away.
        username: Username,
        /// Their away message (may be empty).
        message: String,
    },
    /// GC/5 `Resume <sha256> <offset>`: the answer to `Offer`: send the content from
    /// `offset` on (0: all of it).
    Resume {
        /// The upload's content hash.
        hash: ContentHash,
        /// How many bytes the server already has.
        offset: u64,
    },
    /// GC/5 `Data <sha256> <size> <offset>`: the answer to `Fetch`; exactly `size − offset`
    /// raw bytes follow the line, which the reader takes itself.
    Data {
        /// The content's hash.
        hash: ContentHash,
        /// The whole content's length.
        size: u64,
        /// Where the bytes that follow start (at most `size`).
        offset: u64,
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
                if f.remaining() == 0 {
                    return Err(ParseError::MissingField {
                        token: token::ONLINE,
                        field: "presence-version",
                    });
                }
                let presence_version = f.num("presence-version")?;
                let mut users = Vec::with_capacity(f.remaining());
                while f.remaining() > 0 {
                    users.push(f.username("username")?);
                }
                Ok(Self::Online {
                    presence_version,
                    users,
                })
            }
            token::ROOM => {
                let mut f = f.with_token(token::ROOM);
                f.arity(5)?;
                let room = f.room("room")?;
                let kind: ListedKind = f.parsed("kind")?;
                if (kind == ListedKind::Direct) != (room.kind() == RoomKind::Direct) {
                    return Err(f.value("kind", KIND_RULE));
                }
                Ok(Self::Room {
                    room,
                    kind,
                    role: f.parsed("role")?,
                    members: f.u32("members")?,
                    topic: topic(&mut f)?,
                })
            }
            token::CHALLENGE => {
                let mut f = f.with_token(token::CHALLENGE);
                f.arity(3)?;
                let nonce = f.b64("nonce")?;
                if nonce.len() != CHALLENGE_NONCE_BYTES {
                    return Err(f.value("nonce", &NONCE_RULE));
                }
                Ok(Self::Challenge {
                    nonce,
                    salt: f.scram_salt("salt")?,
                    iterations: f.scram_iterations("iterations")?,
                })
            }
            token::AWAY => {
                let mut f = f.with_token(token::AWAY);
                f.arity(2)?;
                Ok(Self::Away {
                    username: f.username("username")?,
                    message: away_message(&mut f)?,
                })
            }
            token::RESUME => {
                let mut f = f.with_token(token::RESUME);
                f.arity(2)?;
                Ok(Self::Resume {
                    hash: f.parsed("sha256")?,
                    offset: f.num("offset")?,
                })
            }
            token::DATA => {
                let mut f = f.with_token(token::DATA);
                f.arity(3)?;
                let hash = f.parsed("sha256")?;
                let size = f.num("size")?;
                let offset = f.num("offset")?;
                if offset > size {
                    return Err(f.value("offset", DATA_OFFSET_RULE));
                }
                Ok(Self::Data { hash, size, offset })
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected(
                "`Thx`, `Rec`, `End`, `Online`, `Room`, `Challenge`, `Away`, `Resume`, `Data` \
                 or `Err`",
            )),
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
            Self::Room {
                room,
                kind,
                role,
                members,
                topic,
            } => {
                let mut w = Writer::start(out, token::ROOM);
                w.word(room.as_str());
                w.word(kind.as_str());
                w.word(role.as_str());
                w.num((*members).into());
                w.text(topic.as_bytes());
                w.end();
            }
            Self::Challenge {
                nonce,
                salt,
                iterations,
            } => {
                let mut w = Writer::start(out, token::CHALLENGE);
                w.b64(nonce);
                w.b64(salt);
                w.num((*iterations).into());
                w.end();
            }
            Self::Away { username, message } => {
                let mut w = Writer::start(out, token::AWAY);
                w.word(username.as_str());
                w.text(message.as_bytes());
                w.end();
            }
            Self::Resume { hash, offset } => {
                let mut w = Writer::start(out, token::RESUME);
                w.display(hash);
                w.num(*offset);
                w.end();
            }
            Self::Data { hash, size, offset } => {
                let mut w = Writer::start(out, token::DATA);
                w.display(hash);
                w.num(*size);
                w.num(*offset);
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
    use crate::frame::tests::{TOKEN, exact, rec, room, tok, ts, user};

    #[test]
    fn send_frames() {
        exact(
            SendRequest::Msg {
                token: tok(),
                client_msg_id: ClientMsgId::new("m-1").unwrap(),
                body: b"hi".to_vec(),
                room: None,
            },
            &format!("Msg {TOKEN} m-1 IGJG\n"),
        );
        exact(
            SendRequest::History {
                token: tok(),
                before_id: 0,
                limit: 1000,
                room: None,
            },
            &format!("History {TOKEN} 0 1000\n"),
        );
        exact(
            SendRequest::Who {
                token: tok(),
                room: None,
            },
            &format!("Who {TOKEN}\n"),
        );
        exact(SendRequest::Bye { token: tok() }, &format!("Bye {TOKEN}\n"));
        exact(
            SendReply::Thx {
                id: 5,
                timestamp: ts("1795733296.5"),
            },
            "Thx 5 1795733296.5\n",
        );
        exact(
            SendReply::Rec(rec(4, "3", "carol", "x")),
            "Rec 4 3 carol IH\n",
        );
        let mut in_room = rec(4, "3", "carol", "x");
        in_room.room = crate::types::Room::new("#dev").unwrap();
        exact(SendReply::Rec(in_room), "Rec 4 3 carol IH #dev\n");
        exact(SendReply::End, "End\n");
        exact(
            SendReply::Online {
                presence_version: 3,
                users: vec![user("alice"), user("bob")],
            },
            "Online 3 alice bob\n",
        );
        exact(
            SendReply::Online {
                presence_version: 0,
                users: vec![],
            },
            "Online 0\n",
        );
        exact(
            SendReply::Err(ErrorFrame::new(ErrorCode::RateLimited, "wait")),
            "Err rate-limited HHBGJGEH\n",
        );
    }

    #[test]
    fn msg_body_keeps_raw_bytes_for_later_checks() {
        // NUL and invalid UTF-8 are frame-valid: the server rejects them after its dedupe check.
        let line = format!("Msg {TOKEN} x AAPP");
        match SendRequest::parse(line.as_bytes()).unwrap() {
            SendRequest::Msg { body, .. } => assert_eq!(body, vec![0x00, 0xff]),
            other => panic!("{other:?}"),
        }
        let line = format!("Msg {TOKEN} x -");
        assert!(matches!(
            SendRequest::parse(line.as_bytes()).unwrap(),
            SendRequest::Msg { body, .. } if body.is_empty()
        ));
    }

    #[test]
    fn msg_history_and_who_name_a_room_last() {
        exact(
            SendRequest::Msg {
                token: tok(),
                client_msg_id: ClientMsgId::new("m-1").unwrap(),
                body: b"hi".to_vec(),
                room: Some(room("#dev")),
            },
            &format!("Msg {TOKEN} m-1 IGJG #dev\n"),
        );
        exact(
            SendRequest::Msg {
                token: tok(),
                client_msg_id: ClientMsgId::new("m-2").unwrap(),
                body: Vec::new(),
                room: Some(room("@alice+bob")),
            },
            &format!("Msg {TOKEN} m-2 - @alice+bob\n"),
        );
        exact(
            SendRequest::History {
                token: tok(),
                before_id: 7,
                limit: 50,
                room: Some(room("#dev")),
            },
            &format!("History {TOKEN} 7 50 #dev\n"),
        );
        exact(
            SendRequest::Who {
                token: tok(),
                room: Some(room("#dev")),
            },
            &format!("Who {TOKEN} #dev\n"),
        );
        // Naming #general is allowed, and kept as written.
        exact(
            SendRequest::Who {
                token: tok(),
                room: Some(room("#general")),
            },
            &format!("Who {TOKEN} #general\n"),
        );
    }

    #[test]
    fn room_requests() {
        exact(
            SendRequest::Rooms { token: tok() },
            &format!("Rooms {TOKEN}\n"),
        );
        exact(
            SendRequest::Create {
                token: tok(),
                room: room("#dev"),
                visibility: Visibility::Private,
                topic: "hi".into(),
            },
            &format!("Create {TOKEN} #dev private IGJG\n"),
        );
        exact(
            SendRequest::Create {
                token: tok(),
                room: room("#dev"),
                visibility: Visibility::Public,
                topic: String::new(),
            },
            &format!("Create {TOKEN} #dev public -\n"),
        );
        exact(
            SendRequest::Join {
                token: tok(),
                room: room("#dev"),
            },
            &format!("Join {TOKEN} #dev\n"),
        );
        // A direct conversation's name is a room to the parser; the server says what it allows.
        exact(
            SendRequest::Join {
                token: tok(),
                room: room("@a+b"),
            },
            &format!("Join {TOKEN} @a+b\n"),
        );
        exact(
            SendRequest::Part {
                token: tok(),
                room: room("#dev"),
            },
            &format!("Part {TOKEN} #dev\n"),
        );
        exact(
            SendRequest::Invite {
                token: tok(),
                room: room("#dev"),
                username: user("Bob"),
            },
            &format!("Invite {TOKEN} #dev Bob\n"),
        );
        exact(
            SendRequest::Topic {
                token: tok(),
                room: room("#dev"),
                topic: "é".into(),
            },
            &format!("Topic {TOKEN} #dev DMJK\n"),
        );
        exact(
            SendRequest::Topic {
                token: tok(),
                room: room("#dev"),
                topic: String::new(),
            },
            &format!("Topic {TOKEN} #dev -\n"),
        );
        exact(
            SendRequest::Privacy {
                token: tok(),
                room: room("#dev"),
                visibility: Visibility::Public,
            },
            &format!("Privacy {TOKEN} #dev public\n"),
        );
        for (role, word) in [
            (RoomRole::Member, "member"),
            (RoomRole::Moderator, "moderator"),
            (RoomRole::Owner, "owner"),
        ] {
            exact(
                SendRequest::Role {
                    token: tok(),
                    room: room("#dev"),
                    username: user("bob"),
                    role,
                },
                &format!("Role {TOKEN} #dev bob {word}\n"),
            );
        }
        exact(
            SendRequest::Kick {
                token: tok(),
                room: room("#dev"),
                username: user("bob"),
                reason: "x".into(),
            },
            &format!("Kick {TOKEN} #dev bob IH\n"),
        );
        exact(
            SendRequest::Mute {
                token: tok(),
                room: room("#dev"),
                username: user("bob"),
                seconds: 600,
                reason: String::new(),
            },
            &format!("Mute {TOKEN} #dev bob 600 -\n"),
        );
        exact(
            SendRequest::Mute {
                token: tok(),
                room: room("#dev"),
                username: user("bob"),
                seconds: 0,
                reason: "A".into(),
            },
            &format!("Mute {TOKEN} #dev bob 0 BE\n"),
        );
        exact(
            SendRequest::Ban {
                token: tok(),
                room: room("#dev"),
                username: user("bob"),
                reason: "hi".into(),
            },
            &format!("Ban {TOKEN} #dev bob IGJG\n"),
        );
        exact(
            SendRequest::Unban {
                token: tok(),
                room: room("#dev"),
                username: user("bob"),
            },
            &format!("Unban {TOKEN} #dev bob\n"),
        );
    }

    #[test]
    fn every_request_names_its_session() {
        let other = SessionToken::new("f".repeat(64)).unwrap();
        let (r, u) = (room("#dev"), user("bob"));
        let requests = [
            SendRequest::Rooms {
                token: other.clone(),
            },
            SendRequest::Create {
                token: other.clone(),
                room: r.clone(),
                visibility: Visibility::Public,
                topic: String::new(),
            },
            SendRequest::Join {
                token: other.clone(),
                room: r.clone(),
            },
            SendRequest::Part {
                token: other.clone(),
                room: r.clone(),
            },
            SendRequest::Invite {
                token: other.clone(),
                room: r.clone(),
                username: u.clone(),
            },
            SendRequest::Topic {
                token: other.clone(),
                room: r.clone(),
                topic: String::new(),
            },
            SendRequest::Privacy {
                token: other.clone(),
                room: r.clone(),
                visibility: Visibility::Private,
            },
            SendRequest::Role {
                token: other.clone(),
                room: r.clone(),
                username: u.clone(),
                role: RoomRole::Owner,
            },
            SendRequest::Kick {
                token: other.clone(),
                room: r.clone(),
                username: u.clone(),
                reason: String::new(),
            },
            SendRequest::Mute {
                token: other.clone(),
                room: r.clone(),
                username: u.clone(),
                seconds: 1,
                reason: String::new(),
            },
            SendRequest::Ban {
                token: other.clone(),
                room: r.clone(),
                username: u.clone(),
                reason: String::new(),
            },
            SendRequest::Unban {
                token: other.clone(),
                room: r,
                username: u,
            },
        ];
        for request in requests {
            assert_eq!(request.token(), &other, "{request:?}");
        }
    }

    #[test]
    fn gc4_requests_and_replies() {
        exact(
            SendRequest::Challenge { token: tok() },
            &format!("Challenge {TOKEN}\n"),
        );
        exact(
            SendReply::Challenge {
                nonce: vec![0; CHALLENGE_NONCE_BYTES],
                salt: b"salt-bytes".to_vec(),
                iterations: 4096,
            },
            "Challenge AAAAAAAAAAAAAAAAAAAAAAAA c2FsdC1ieXRlcw== 4096\n",
        );
        exact(
            SendRequest::Passwd {
                token: tok(),
                salt: vec![0; 8],
                iterations: 4096,
                stored_key: vec![1; 32],
                server_key: vec![2; 32],
                proof: vec![3; 32],
            },
            &format!(
                "Passwd {TOKEN} AAAAAAAAAAA= 4096 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE= \
                 AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI= \
                 AwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwMDAwM=\n"
            ),
        );
        exact(
            SendRequest::Away {
                token: tok(),
                message: "hi".into(),
            },
            &format!("Away {TOKEN} IGJG\n"),
        );
        exact(
            SendRequest::Away {
                token: tok(),
                message: String::new(),
            },
            &format!("Away {TOKEN} -\n"),
        );
        exact(
            SendRequest::Back { token: tok() },
            &format!("Back {TOKEN}\n"),
        );
        exact(
            SendReply::Away {
                username: user("bob"),
                message: "hi".into(),
            },
            "Away bob IGJG\n",
        );
        exact(
            SendReply::Away {
                username: user("bob"),
                message: String::new(),
            },
            "Away bob -\n",
        );
    }

    const HASH: &str = "e3b0c44298fc1c149afbf4c8996fb92427ae41e4649b934ca495991b7852b855";

    #[test]
    fn gc5_file_frames() {
        let hash: ContentHash = HASH.parse().unwrap();
        exact(
            SendRequest::Offer {
                token: tok(),
                room: room("#dev"),
                hash,
                size: 1_482_213,
                name: "hi".into(),
                client_msg_id: ClientMsgId::new("up-1").unwrap(),
            },
            &format!("Offer {TOKEN} #dev {HASH} 1482213 IGJG up-1\n"),
        );
        exact(
            SendRequest::Chunk {
                token: tok(),
                hash,
                offset: 1_048_576,
                length: 4096,
            },
            &format!("Chunk {TOKEN} {HASH} 1048576 4096\n"),
        );
        exact(
            SendRequest::Fetch {
                token: tok(),
                hash,
                offset: 0,
            },
            &format!("Fetch {TOKEN} {HASH} 0\n"),
        );
        exact(
            SendReply::Resume { hash, offset: 42 },
            &format!("Resume {HASH} 42\n"),
        );
        exact(
            SendReply::Data {
                hash,
                size: 10,
                offset: 10,
            },
            &format!("Data {HASH} 10 10\n"),
        );
        exact(
            SendReply::Err(ErrorFrame::new(ErrorCode::UnknownFile, "no such file")),
            &format!("Err unknown-file {}\n", c16::encode(b"no such file")),
        );
        assert_eq!(
            tok(),
            *SendRequest::Fetch {
                token: tok(),
                hash,
                offset: 0
            }
            .token()
        );
    }

    #[test]
    fn gc5_fields_keep_their_limits() {
        let error = |line: String| SendRequest::parse(line.as_bytes()).unwrap_err().to_string();
        let name = |text: &[u8]| c16::encode(text);
        assert_eq!(
            error(format!("Chunk {TOKEN} {HASH} 0 0")),
            "`Chunk` field <length>: must be 1 to 1,048,576 bytes"
        );
        assert_eq!(
            error(format!("Chunk {TOKEN} {HASH} 0 1048577")),
            "`Chunk` field <length>: must be 1 to 1,048,576 bytes"
        );
        assert!(SendRequest::parse(format!("Chunk {TOKEN} {HASH} 0 1048576").as_bytes()).is_ok());
        assert_eq!(
            error(format!("Offer {TOKEN} #dev {HASH} 1 - up-1")),
            "`Offer` field <name>: must be 1 to 255 bytes of UTF-8 without NUL"
        );
        assert_eq!(
            error(format!(
                "Offer {TOKEN} #dev {HASH} 1 {} up-1",
                name(b"a\0b")
            )),
            "`Offer` field <name>: must be 1 to 255 bytes of UTF-8 without NUL"
        );
        assert_eq!(
            error(format!(
                "Offer {TOKEN} #dev {HASH} 1 {} up-1",
                name(&[b'x'; 256])
            )),
            "`Offer` field <name>: must be 1 to 255 bytes of UTF-8 without NUL"
        );
        assert!(
            SendRequest::parse(
                format!("Offer {TOKEN} #dev {HASH} 0 {} up-1", name(&[b'x'; 255])).as_bytes()
            )
            .is_ok()
        );
        for bad_hash in [&HASH[1..], &HASH.to_uppercase()] {
            assert!(
                error(format!("Fetch {TOKEN} {bad_hash} 0")).contains("not a content hash"),
                "{bad_hash}"
            );
        }
        assert_eq!(
            SendReply::parse(format!("Data {HASH} 10 11").as_bytes())
                .unwrap_err()
                .to_string(),
            "`Data` field <offset>: must be at most the size"
        );
        // Every new code reads back as itself.
        for code in [
            ErrorCode::Offset,
            ErrorCode::Corrupt,
            ErrorCode::Quota,
            ErrorCode::DiskFull,
            ErrorCode::UnknownFile,
        ] {
            assert_eq!(code.as_str().parse::<ErrorCode>(), Ok(code));
        }
    }

    #[test]
    fn gc4_fields_keep_their_limits() {
        let error = |line: String| SendRequest::parse(line.as_bytes()).unwrap_err().to_string();
        let long = "A".repeat(2 * (MAX_AWAY_BYTES + 1));
        assert_eq!(
            error(format!("Away {TOKEN} {long}")),
            "`Away` field <message>: must be at most 256 bytes"
        );
        let key = "AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE=";
        assert_eq!(
            error(format!("Passwd {TOKEN} AAAAAAAAAAA= 4096 {key} {key} AQ==")),
            "`Passwd` field <proof>: must be 32 bytes (SHA-256)"
        );
        assert_eq!(
            error(format!("Passwd {TOKEN} AAAA 4096 {key} {key} {key}")),
            "`Passwd` field <salt>: must be 8 to 64 bytes"
        );
        assert_eq!(
            error(format!("Passwd {TOKEN} AAAAAAAAAAA= 0 {key} {key} {key}")),
            "`Passwd` field <iterations>: must be 1 to 10,000,000"
        );
        let reply = SendReply::parse(b"Challenge AAAA c2FsdC1ieXRlcw== 4096").unwrap_err();
        assert_eq!(
            reply.to_string(),
            "`Challenge` field <nonce>: must be 18 bytes"
        );
    }

    #[test]
    fn room_listing() {
        exact(
            SendReply::Room {
                room: room("#dev"),
                kind: ListedKind::Public,
                role: ListedRole::Owner,
                members: 12,
                topic: "hi".into(),
            },
            "Room #dev public owner 12 IGJG\n",
        );
        exact(
            SendReply::Room {
                room: room("#ops"),
                kind: ListedKind::Private,
                role: ListedRole::Invited,
                members: 3,
                topic: String::new(),
            },
            "Room #ops private invited 3 -\n",
        );
        exact(
            SendReply::Room {
                room: room("#lobby"),
                kind: ListedKind::Public,
                role: ListedRole::Outside,
                members: 0,
                topic: String::new(),
            },
            "Room #lobby public - 0 -\n",
        );
        for (role, word) in [
            (ListedRole::Moderator, "moderator"),
            (ListedRole::Member, "member"),
        ] {
            exact(
                SendReply::Room {
                    room: room("@alice+bob"),
                    kind: ListedKind::Direct,
                    role,
                    members: 2,
                    topic: String::new(),
                },
                &format!("Room @alice+bob direct {word} 2 -\n"),
            );
        }
    }
}
