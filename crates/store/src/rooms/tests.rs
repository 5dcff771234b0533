//! Unit tests of the in-memory rules; the files are tested in `tests/store/rooms.rs`.

use super::*;

fn user(name: &str) -> Username {
    Username::new(name).unwrap()
}

fn room(name: &str) -> Room {
    Room::new(name).unwrap()
}

#[test]
fn standing_text_forms() {
    let all = [
        (Standing::Role(RoomRole::Owner), "owner"),
        (Standing::Role(RoomRole::Moderator), "moderator"),
        (Standing::Role(RoomRole::Member), "member"),
        (Standing::Invited, "invited"),
        (Standing::Banned, "banned"),
    ];
    for (standing, text) in all {
        assert_eq!(standing.as_str(), text);
        assert_eq!(standing.to_string(), text);
        assert_eq!(Standing::parse(text), Some(standing));
        assert_eq!(standing.is_member(), standing.role().is_some());
    }
    for bad in ["", "Owner", "admin", "member ", "-"] {
        assert_eq!(Standing::parse(bad), None, "{bad:?}");
    }
}

#[test]
fn general_default_lines_are_not_kept() {
    let mut s = State::default();
    let general = Room::general();
    let entry = |standing, muted_until| MemberEntry {
        username: user("Ann"),
        standing,
        muted_until,
    };
    s.put(&general, "ann".into(), entry(Standing::Banned, None));
    assert_eq!(s.encode(DbFile::Members), b"#general;Ann;banned;-\n");
    s.put(
        &general,
        "ann".into(),
        entry(Standing::Role(RoomRole::Member), None),
    );
    assert!(s.members.is_empty(), "no empty inner map is left");
    assert_eq!(
        s.standing(&general, &user("ANN")),
        Some(Standing::Role(RoomRole::Member))
    );
    // In another room a plain member does have a line.
    s.rooms.insert(
        room("#dev"),
        RoomEntry {
            visibility: Some(Visibility::Public),
            created: Timestamp::from_micros(1),
            creator: user("Ann"),
            topic: String::new(),
        },
    );
    s.put(
        &room("#dev"),
        "ann".into(),
        entry(Standing::Role(RoomRole::Member), None),
    );
    assert_eq!(s.encode(DbFile::Members), b"#dev;Ann;member;-\n");
}

#[test]
fn files_are_written_sorted() {
    let mut s = State::default();
    for name in ["#b", "#a", "@x+y"] {
        s.rooms.insert(
            room(name),
            RoomEntry {
                visibility: (!name.starts_with('@')).then_some(Visibility::Private),
                created: Timestamp::from_micros(2_500_000),
                creator: user("x"),
                topic: "t".into(),
            },
        );
    }
    for (r, u) in [("#b", "Zed"), ("#a", "bob"), ("#b", "amy")] {
        s.put(
            &room(r),
            user(u).key(),
            MemberEntry {
                username: user(u),
                standing: Standing::Invited,
                muted_until: None,
            },
        );
    }
    for a in ["zz", "Aa"] {
        s.admins.insert(user(a).key(), user(a));
    }
    assert_eq!(
        String::from_utf8(s.encode(DbFile::Rooms)).unwrap(),
        "#a;private;2.5;x;t\n#b;private;2.5;x;t\n@x+y;direct;2.5;x;t\n"
    );
    assert_eq!(
        String::from_utf8(s.encode(DbFile::Members)).unwrap(),
        "#a;bob;invited;-\n#b;amy;invited;-\n#b;Zed;invited;-\n"
    );
    assert_eq!(s.encode(DbFile::Admins), b"Aa\nzz\n");
}

#[test]
fn rooms_is_send_and_sync() {
    fn check<T: Send + Sync>() {}
    check::<Rooms>();
}
