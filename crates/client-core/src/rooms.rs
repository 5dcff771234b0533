//! Rooms as the client asks for them (GC/3, docs/rooms.md): the room requests of the sending
//! port, checked here before they are queued, and a room as the server lists it.
//!
//! Pure values, no I/O: [`crate::Client`]'s methods build a [`RoomRequest`], the connection
//! thread turns it into its frame, and the answer comes back as [`crate::Event::RoomDone`] or
//! [`crate::Event::Refused`] carrying the request, so a front end knows what was answered.

use std::fmt;

use gc_protocol::limits::{MAX_MUTE_SECONDS, MAX_REASON_BYTES, MAX_TOPIC_BYTES};
use gc_protocol::{
    ListedKind, ListedRole, Room, RoomKind, RoomRole, SendRequest, SessionToken, Username,
    Visibility,
};

use crate::error::ClientError;

/// What a session without rooms (a server older than GC/3) is told when it asks for one.
pub const NO_ROOMS: &str = "this server does not serve rooms (an older gc-server): only #general";

/// One room as `Rooms` lists it: the session's rooms, the public ones, and those it is invited
/// to ([`crate::Event::RoomList`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RoomInfo {
    /// The room's name (`#dev`, or `@alice+bob` for a direct conversation).
    pub room: Room,
    /// Public, private, or a direct conversation.
    pub kind: ListedKind,
    /// Where this account stands in it: a role, invited, or outside (a public room it is not
    /// in; a ban shows as outside too).
    pub role: ListedRole,
    /// How many members it has.
    pub members: u32,
    /// Its topic (empty: none), as the server sent it: sanitise it to show it.
    pub topic: String,
}

impl RoomInfo {
    /// Whether this account is a member (so the room's records are delivered to it).
    pub fn is_member(&self) -> bool {
        self.role.role().is_some()
    }
}

/// A request that changes a room or someone's place in it. Each is answered by the server with
/// the id of the notice record it stored in the room (`alice joined`, …), `0` when nothing
/// changed, or refused (`no-room`, `forbidden`, `exists`, `unknown-user`, `rate-limited`, …).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RoomRequest {
    /// Make a room; the creator is its owner.
    Create {
        /// Its name (`#…`).
        room: Room,
        /// Who may join.
        visibility: Visibility,
        /// Its topic (empty: none).
        topic: String,
    },
    /// Join a public room, or a private one this account is invited to.
    Join {
        /// The room.
        room: Room,
    },
    /// Leave a room (not `#general`).
    Part {
        /// The room.
        room: Room,
    },
    /// Invite someone (moderators and owners).
    Invite {
        /// The room.
        room: Room,
        /// Who.
        username: Username,
    },
    /// Set the topic (owners).
    Topic {
        /// The room.
        room: Room,
        /// The new topic (empty: clear it).
        topic: String,
    },
    /// Make the room public or private (owners).
    Privacy {
        /// The room.
        room: Room,
        /// Who may join from now on.
        visibility: Visibility,
    },
    /// Give a member a role (owners).
    Role {
        /// The room.
        room: Room,
        /// Whose role.
        username: Username,
        /// The new role.
        role: RoomRole,
    },
    /// Put a member out (moderators and owners, on lower ranks).
    Kick {
        /// The room.
        room: Room,
        /// Who.
        username: Username,
        /// Why (empty: no reason given).
        reason: String,
    },
    /// Keep a member from posting for a while; `0` seconds lifts the mute.
    Mute {
        /// The room.
        room: Room,
        /// Who.
        username: Username,
        /// How long.
        seconds: u32,
        /// Why (empty: no reason given).
        reason: String,
    },
    /// Put someone out and keep them out.
    Ban {
        /// The room.
        room: Room,
        /// Who.
        username: Username,
        /// Why (empty: no reason given).
        reason: String,
    },
    /// Lift a ban.
    Unban {
        /// The room.
        room: Room,
        /// Whose ban.
        username: Username,
    },
}

impl RoomRequest {
    /// The room it is about.
    pub fn room(&self) -> &Room {
        match self {
            Self::Create { room, .. }
            | Self::Join { room }
            | Self::Part { room }
            | Self::Invite { room, .. }
            | Self::Topic { room, .. }
            | Self::Privacy { room, .. }
            | Self::Role { room, .. }
            | Self::Kick { room, .. }
            | Self::Mute { room, .. }
            | Self::Ban { room, .. }
            | Self::Unban { room, .. } => room,
        }
    }

    /// Refuses what the server could only refuse as a malformed frame (a topic or reason too
    /// long, a mute too long), and what makes no sense whatever the server (creating `#general`
    /// or a direct conversation), with a text saying what is allowed.
    pub fn check(&self) -> Result<(), ClientError> {
        let bad = |text: String| Err(ClientError::InvalidRequest(text));
        let too_long = |what: &str, text: &str, max: usize| {
            bad(format!(
                "the {what} is {} bytes; at most {max} bytes are allowed",
                text.len()
            ))
        };
        match self {
            Self::Create { room, topic, .. } => {
                if room.kind() == RoomKind::Direct {
                    return bad(format!(
                        "{room} is a direct conversation: it is opened by its first message, \
                         not created"
                    ));
                }
                if room.is_general() {
                    return bad("#general exists on every server".into());
                }
                if topic.len() > MAX_TOPIC_BYTES {
                    return too_long("topic", topic, MAX_TOPIC_BYTES);
                }
            }
            Self::Topic { topic, .. } if topic.len() > MAX_TOPIC_BYTES => {
                return too_long("topic", topic, MAX_TOPIC_BYTES);
            }
            Self::Kick { reason, .. } | Self::Ban { reason, .. } | Self::Mute { reason, .. }
                if reason.len() > MAX_REASON_BYTES =>
            {
                return too_long("reason", reason, MAX_REASON_BYTES);
            }
            Self::Mute { seconds, .. } if *seconds > MAX_MUTE_SECONDS => {
                return bad(format!(
                    "a mute lasts at most {MAX_MUTE_SECONDS} seconds (a year); {seconds} is longer"
                ));
            }
            _ => {}
        }
        Ok(())
    }

    /// The frame asking for it in `token`'s session.
    pub(crate) fn frame(&self, token: SessionToken) -> SendRequest {
        match self.clone() {
            Self::Create {
                room,
                visibility,
                topic,
            } => SendRequest::Create {
                token,
                room,
                visibility,
                topic,
            },
            Self::Join { room } => SendRequest::Join { token, room },
            Self::Part { room } => SendRequest::Part { token, room },
            Self::Invite { room, username } => SendRequest::Invite {
                token,
                room,
                username,
            },
            Self::Topic { room, topic } => SendRequest::Topic { token, room, topic },
            Self::Privacy { room, visibility } => SendRequest::Privacy {
                token,
                room,
                visibility,
            },
            Self::Role {
                room,
                username,
                role,
            } => SendRequest::Role {
                token,
                room,
                username,
                role,
            },
            Self::Kick {
                room,
                username,
                reason,
            } => SendRequest::Kick {
                token,
                room,
                username,
                reason,
            },
            Self::Mute {
                room,
                username,
                seconds,
                reason,
            } => SendRequest::Mute {
                token,
                room,
                username,
                seconds,
                reason,
            },
            Self::Ban {
                room,
                username,
                reason,
            } => SendRequest::Ban {
                token,
                room,
                username,
                reason,
            },
            Self::Unban { room, username } => SendRequest::Unban {
                token,
                room,
                username,
            },
        }
    }
}

/// What was asked, as a person says it: `join #dev`, `kick bob from #dev`.
impl fmt::Display for RoomRequest {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Create {
                room, visibility, ..
            } => write!(f, "create {room} ({visibility})"),
            Self::Join { room } => write!(f, "join {room}"),
            Self::Part { room } => write!(f, "leave {room}"),
            Self::Invite { room, username } => write!(f, "invite {username} to {room}"),
            Self::Topic { room, .. } => write!(f, "set the topic of {room}"),
            Self::Privacy { room, visibility } => write!(f, "make {room} {visibility}"),
            Self::Role {
                room,
                username,
                role,
            } => write!(f, "make {username} {role} of {room}"),
            Self::Kick { room, username, .. } => write!(f, "kick {username} from {room}"),
            Self::Mute {
                room,
                username,
                seconds: 0,
                ..
            } => write!(f, "lift the mute of {username} in {room}"),
            Self::Mute { room, username, .. } => write!(f, "mute {username} in {room}"),
            Self::Ban { room, username, .. } => write!(f, "ban {username} from {room}"),
            Self::Unban { room, username } => write!(f, "unban {username} from {room}"),
        }
    }
}

/// The room field to write on the wire: none for `#general`, so its frames stay byte for byte
/// GC/1's (and an older server, which knows no room field, takes them).
pub(crate) fn wire_room(room: &Room) -> Option<Room> {
    (!room.is_general()).then(|| room.clone())
}

/// Reads a room name as a person types it: `#dev` or `dev` (a shell takes a word starting with
/// `#` for a comment), or a direct conversation `@alice+bob`.
pub fn parse_room(name: &str) -> Result<Room, ClientError> {
    let name = name.trim();
    let full = if name.starts_with('#') || name.starts_with('@') {
        name.to_owned()
    } else {
        format!("#{name}")
    };
    Room::new(full.clone()).map_err(|_| {
        ClientError::InvalidRequest(if full.starts_with('@') {
            format!(
                "`{}` is not a direct conversation: write @ and the two usernames in lower case, \
                 in order, joined by + (e.g. @alice+bob)",
                full.escape_debug()
            )
        } else {
            format!(
                "`{}` is not a room name: # and 1 to 32 of a-z 0-9 _ . - (lower case)",
                full.escape_debug()
            )
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn room(name: &str) -> Room {
        Room::new(name).unwrap()
    }

    fn user(name: &str) -> Username {
        Username::new(name).unwrap()
    }

    #[test]
    fn names_as_people_type_them() {
        assert_eq!(parse_room("dev").unwrap(), room("#dev"));
        assert_eq!(parse_room("#dev").unwrap(), room("#dev"));
        assert_eq!(parse_room(" @alice+bob ").unwrap(), room("@alice+bob"));
        let e = parse_room("Dev").unwrap_err().to_string();
        assert!(e.contains("lower case"), "{e}");
        let e = parse_room("@bob+alice").unwrap_err().to_string();
        assert!(e.contains("in order"), "{e}");
        assert!(parse_room("").is_err());
    }

    #[test]
    fn general_is_never_named_on_the_wire() {
        assert_eq!(wire_room(&Room::general()), None);
        assert_eq!(wire_room(&room("#dev")), Some(room("#dev")));
    }

    #[test]
    fn what_the_server_would_refuse_as_malformed_is_refused_here() {
        let ok = RoomRequest::Topic {
            room: room("#dev"),
            topic: "x".repeat(MAX_TOPIC_BYTES),
        };
        ok.check().unwrap();
        let long = RoomRequest::Topic {
            room: room("#dev"),
            topic: "x".repeat(MAX_TOPIC_BYTES + 1),
        };
        assert!(long.check().unwrap_err().to_string().contains("topic"));
        let mute = RoomRequest::Mute {
            room: room("#dev"),
            username: user("bob"),
            seconds: MAX_MUTE_SECONDS + 1,
            reason: String::new(),
        };
        assert!(mute.check().is_err());
        let reason = RoomRequest::Ban {
            room: room("#dev"),
            username: user("bob"),
            reason: "r".repeat(MAX_REASON_BYTES + 1),
        };
        assert!(reason.check().unwrap_err().to_string().contains("reason"));
        for r in [Room::general(), room("@a+b")] {
            let create = RoomRequest::Create {
                room: r,
                visibility: Visibility::Public,
                topic: String::new(),
            };
            assert!(create.check().is_err());
        }
    }

    #[test]
    fn requests_become_their_frames() {
        let token = SessionToken::new("a".repeat(64)).unwrap();
        let mute = RoomRequest::Mute {
            room: room("#dev"),
            username: user("bob"),
            seconds: 60,
            reason: "calm".into(),
        };
        assert_eq!(
            mute.frame(token.clone()),
            SendRequest::Mute {
                token: token.clone(),
                room: room("#dev"),
                username: user("bob"),
                seconds: 60,
                reason: "calm".into(),
            }
        );
        assert_eq!(mute.to_string(), "mute bob in #dev");
        let join = RoomRequest::Join { room: room("#dev") };
        assert_eq!(
            join.frame(token.clone()),
            SendRequest::Join {
                token,
                room: room("#dev")
            }
        );
        assert_eq!(join.room(), &room("#dev"));
    }
}
