//! The line formats of `rooms.db`, `members.db` and `admins.db`. Pure functions: no I/O.
//!
//! These check what one line can say on its own; what depends on other lines (a member of a room
//! that exists, duplicates) is checked while loading, in `load.rs`.

use std::io::Write as _;

use gc_protocol::types::{Room, RoomKind, Timestamp, Username, Visibility};

use super::{MAX_TOPIC_BYTES, Standing};
use crate::codec::{escape_into, unescape};
use crate::error::LineError;

/// What a `rooms.db` line holds besides the name.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct RoomEntry {
    /// `None` for a direct conversation.
    pub visibility: Option<Visibility>,
    pub created: Timestamp,
    pub creator: Username,
    pub topic: String,
}

/// A `members.db` line, without its room.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) struct MemberEntry {
    /// As written (compared by [`Username::key`]).
    pub username: Username,
    pub standing: Standing,
    pub muted_until: Option<Timestamp>,
}

/// The file form of a kind: `public`, `private` or `direct`.
pub(super) fn kind_name(visibility: Option<Visibility>) -> &'static str {
    visibility.map_or("direct", Visibility::as_str)
}

/// Whether `topic` may be stored; the reason if not.
pub(super) fn topic_fault(topic: &str) -> Option<crate::StoreError> {
    if topic.len() > MAX_TOPIC_BYTES {
        Some(crate::StoreError::TopicTooLong {
            bytes: topic.len(),
            limit: MAX_TOPIC_BYTES,
        })
    } else if topic.contains('\0') {
        Some(crate::StoreError::TopicNul)
    } else {
        None
    }
}

/// `{room};{kind};{created};{creator};{escaped topic}` + LF.
pub(super) fn encode_room(room: &Room, entry: &RoomEntry, out: &mut Vec<u8>) {
    // Writing to a Vec cannot fail.
    let _ = write!(
        out,
        "{room};{};{};{};",
        kind_name(entry.visibility),
        entry.created,
        entry.creator
    );
    escape_into(entry.topic.as_bytes(), out);
    out.push(b'\n');
}

/// Parses a `rooms.db` line (without its LF).
pub(super) fn parse_room(line: &[u8]) -> Result<(Room, RoomEntry), LineError> {
    // Escapes are ASCII: the escaped topic is valid UTF-8 exactly when the topic is.
    let text = std::str::from_utf8(line).map_err(|_| LineError::Utf8)?;
    let mut fields = text.splitn(5, ';');
    let (Some(room), Some(kind), Some(created), Some(creator), Some(topic)) = (
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
        fields.next(),
    ) else {
        return Err(LineError::Fields);
    };
    let room = Room::new(room).map_err(|_| LineError::Room)?;
    if room.is_general() {
        return Err(LineError::GeneralLine);
    }
    let visibility = match (kind, room.kind()) {
        ("public", RoomKind::Room) => Some(Visibility::Public),
        ("private", RoomKind::Room) => Some(Visibility::Private),
        ("direct", RoomKind::Direct) => None,
        _ => return Err(LineError::Kind),
    };
    let created = Timestamp::parse(created).map_err(|_| LineError::Timestamp)?;
    let creator = Username::new(creator).map_err(|_| LineError::Username)?;
    let topic = String::from_utf8(unescape(topic.as_bytes())?).map_err(|_| LineError::Utf8)?;
    if topic_fault(&topic).is_some() {
        return Err(LineError::Topic);
    }
    Ok((
        room,
        RoomEntry {
            visibility,
            created,
            creator,
            topic,
        },
    ))
}

/// `{room};{username};{standing};{muted-until|-}` + LF.
pub(super) fn encode_member(room: &Room, member: &MemberEntry, out: &mut Vec<u8>) {
    let _ = write!(out, "{room};{};{};", member.username, member.standing);
    match member.muted_until {
        Some(t) => {
            let _ = writeln!(out, "{t}");
        }
        None => out.extend_from_slice(b"-\n"),
    }
}

/// Parses a `members.db` line (without its LF): its syntax, and the rules that need no other
/// line (no `invited` in `#general`, no mute on a non-member). Whether the room exists is the
/// caller's check.
pub(super) fn parse_member(line: &[u8]) -> Result<(Room, MemberEntry), LineError> {
    let text = std::str::from_utf8(line).map_err(|_| LineError::Utf8)?;
    let fields: Vec<&str> = text.split(';').collect();
    let [room, username, standing, muted] = fields[..] else {
        return Err(LineError::Fields);
    };
    let room = Room::new(room).map_err(|_| LineError::Room)?;
    let username = Username::new(username).map_err(|_| LineError::Username)?;
    let standing = Standing::parse(standing).ok_or(LineError::Standing)?;
    let muted_until = match muted {
        "-" => None,
        t => Some(Timestamp::parse(t).map_err(|_| LineError::Timestamp)?),
    };
    if room.kind() == RoomKind::Direct {
        return Err(LineError::DirectMember);
    }
    if room.is_general() && standing == Standing::Invited {
        return Err(LineError::Standing);
    }
    if muted_until.is_some() && !standing.is_member() {
        return Err(LineError::Mute);
    }
    Ok((
        room,
        MemberEntry {
            username,
            standing,
            muted_until,
        },
    ))
}

/// `{username}` + LF.
pub(super) fn encode_admin(username: &Username, out: &mut Vec<u8>) {
    let _ = writeln!(out, "{username}");
}

/// Parses an `admins.db` line (without its LF).
pub(super) fn parse_admin(line: &[u8]) -> Result<Username, LineError> {
    let text = std::str::from_utf8(line).map_err(|_| LineError::Utf8)?;
    Username::new(text).map_err(|_| LineError::Username)
}

#[cfg(test)]
mod tests {
    use gc_protocol::types::RoomRole;
    use proptest::prelude::*;

    use super::*;

    fn room(name: &str) -> Room {
        Room::new(name).unwrap()
    }

    fn user(name: &str) -> Username {
        Username::new(name).unwrap()
    }

    fn entry(visibility: Option<Visibility>, topic: &str) -> RoomEntry {
        RoomEntry {
            visibility,
            created: Timestamp::parse("1795733296.088305").unwrap(),
            creator: user("Alice"),
            topic: topic.to_owned(),
        }
    }

    fn encoded_room(name: &str, e: &RoomEntry) -> String {
        let mut out = Vec::new();
        encode_room(&room(name), e, &mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn room_lines_are_byte_exact() {
        let cases = [
            (
                "#dev",
                entry(Some(Visibility::Public), "plain"),
                "#dev;public;1795733296.088305;Alice;plain\n",
            ),
            (
                "#ops",
                entry(Some(Visibility::Private), "a;b\\c\nd\re"),
                "#ops;private;1795733296.088305;Alice;a;b\\\\c\\nd\\re\n",
            ),
            (
                "@alice+bob",
                entry(None, ""),
                "@alice+bob;direct;1795733296.088305;Alice;\n",
            ),
        ];
        for (name, e, line) in cases {
            assert_eq!(encoded_room(name, &e), line);
            assert_eq!(
                parse_room(line.trim_end_matches('\n').as_bytes()),
                Ok((room(name), e))
            );
        }
    }

    #[test]
    fn room_line_errors_name_the_rule() {
        let cases: &[(&[u8], LineError)] = &[
            (b"", LineError::Fields),
            (b"#dev;public;1;alice", LineError::Fields),
            (b"dev;public;1;alice;", LineError::Room),
            (b"#Dev;public;1;alice;", LineError::Room),
            (b"@bob+alice;direct;1;alice;", LineError::Room),
            (b"#general;public;1;alice;", LineError::GeneralLine),
            (b"#dev;secret;1;alice;", LineError::Kind),
            (b"#dev;direct;1;alice;", LineError::Kind),
            (b"@alice+bob;public;1;alice;", LineError::Kind),
            (b"#dev;public;x;alice;", LineError::Timestamp),
            (b"#dev;public;1;al ice;", LineError::Username),
            (b"#dev;public;1;alice;bad\\x", LineError::Escape),
            (b"#dev;public;1;alice;\xff", LineError::Utf8),
            (b"#dev;public;1;alice;nul\0", LineError::Topic),
        ];
        for (line, err) in cases {
            assert_eq!(
                parse_room(line).map(|_| ()),
                Err(*err),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
        let long = format!("#dev;public;1;alice;{}", "x".repeat(MAX_TOPIC_BYTES + 1));
        assert_eq!(
            parse_room(long.as_bytes()).map(|_| ()),
            Err(LineError::Topic)
        );
        let longest = format!("#dev;public;1;alice;{}", "é".repeat(MAX_TOPIC_BYTES / 2));
        assert!(parse_room(longest.as_bytes()).is_ok());
    }

    #[test]
    fn member_lines_are_byte_exact() {
        let cases = [
            (
                "#dev",
                MemberEntry {
                    username: user("Bob"),
                    standing: Standing::Role(RoomRole::Owner),
                    muted_until: None,
                },
                "#dev;Bob;owner;-\n",
            ),
            (
                "#general",
                MemberEntry {
                    username: user("carol"),
                    standing: Standing::Role(RoomRole::Member),
                    muted_until: Some(Timestamp::parse("1700000000.5").unwrap()),
                },
                "#general;carol;member;1700000000.5\n",
            ),
            (
                "#dev",
                MemberEntry {
                    username: user("d"),
                    standing: Standing::Banned,
                    muted_until: None,
                },
                "#dev;d;banned;-\n",
            ),
        ];
        for (name, m, line) in cases {
            let mut out = Vec::new();
            encode_member(&room(name), &m, &mut out);
            assert_eq!(String::from_utf8(out).unwrap(), line);
            assert_eq!(
                parse_member(line.trim_end_matches('\n').as_bytes()),
                Ok((room(name), m))
            );
        }
    }

    #[test]
    fn member_line_errors_name_the_rule() {
        let cases: &[(&[u8], LineError)] = &[
            (b"#dev;bob;owner", LineError::Fields),
            (b"#dev;bob;owner;-;x", LineError::Fields),
            (b"dev;bob;owner;-", LineError::Room),
            (b"#dev;b b;owner;-", LineError::Username),
            (b"#dev;bob;admin;-", LineError::Standing),
            (b"#dev;bob;Owner;-", LineError::Standing),
            (b"#dev;bob;owner;", LineError::Timestamp),
            (b"#dev;bob;owner;soon", LineError::Timestamp),
            (b"@alice+bob;bob;member;-", LineError::DirectMember),
            (b"#general;bob;invited;-", LineError::Standing),
            (b"#dev;bob;invited;5", LineError::Mute),
            (b"#dev;bob;banned;5", LineError::Mute),
            (b"#dev;\xff;owner;-", LineError::Utf8),
        ];
        for (line, err) in cases {
            assert_eq!(
                parse_member(line).map(|_| ()),
                Err(*err),
                "{}",
                String::from_utf8_lossy(line)
            );
        }
    }

    #[test]
    fn admin_lines() {
        let mut out = Vec::new();
        encode_admin(&user("Root.1"), &mut out);
        assert_eq!(out, b"Root.1\n");
        assert_eq!(parse_admin(b"Root.1"), Ok(user("Root.1")));
        assert_eq!(parse_admin(b"a;b"), Err(LineError::Username));
        assert_eq!(parse_admin(b""), Err(LineError::Username));
        assert_eq!(parse_admin(b"\xff"), Err(LineError::Utf8));
    }

    proptest! {
        #[test]
        fn any_topic_round_trips(topic in "[\\\\\n\r;a\u{e9}\u{1F600}-]{0,60}") {
            let e = entry(Some(Visibility::Private), &topic);
            let line = encoded_room("#x", &e);
            prop_assert_eq!(line.matches('\n').count(), 1);
            prop_assert_eq!(parse_room(line.trim_end_matches('\n').as_bytes()), Ok((room("#x"), e)));
        }

        #[test]
        fn parsers_never_panic(line in proptest::collection::vec(any::<u8>(), 0..80)) {
            let _ = parse_room(&line);
            let _ = parse_member(&line);
            let _ = parse_admin(&line);
        }
    }
}
