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

#[test]
fn generation_moves_with_every_change_and_member_keys_follow() {
    let dir = tempfile::tempdir().unwrap();
    let (rooms, _) = Rooms::open(dir.path()).unwrap();
    let now = Timestamp::from_micros(1_000_000);
    let keys = |r: &Room| {
        let mut k: Vec<String> = rooms.member_keys(r).iter().map(str::to_owned).collect();
        k.sort();
        k
    };
    let g0 = rooms.generation();
    rooms
        .create(&room("#dev"), Visibility::Private, &user("Amy"), "", now)
        .unwrap();
    let g1 = rooms.generation();
    assert!(g1 > g0);
    assert_eq!(keys(&room("#dev")), ["amy"]);
    // An invitation is not membership; joining is.
    rooms
        .set_standing(&room("#dev"), &user("Bob"), Standing::Invited)
        .unwrap();
    assert_eq!(keys(&room("#dev")), ["amy"]);
    rooms
        .set_standing(
            &room("#dev"),
            &user("Bob"),
            Standing::Role(RoomRole::Member),
        )
        .unwrap();
    rooms
        .set_standing(&room("#dev"), &user("Cy"), Standing::Banned)
        .unwrap();
    assert_eq!(keys(&room("#dev")), ["amy", "bob"]);
    let g2 = rooms.generation();
    assert!(g2 > g1);
    // A refused change changes nothing, the number included.
    assert!(
        rooms
            .create(&room("#dev"), Visibility::Public, &user("Bob"), "", now)
            .is_err()
    );
    assert_eq!(rooms.generation(), g2);
    // A direct conversation: its two accounts, once it exists.
    let dm = Room::direct(&user("Amy"), &user("Bob")).unwrap();
    assert!(keys(&dm).is_empty());
    rooms.open_direct(&user("Amy"), &user("Bob"), now).unwrap();
    assert_eq!(keys(&dm), ["amy", "bob"]);
    assert!(rooms.generation() > g2);
    // #general's members are everyone: not listed here.
    assert!(keys(&Room::general()).is_empty());
    assert!(keys(&room("#nowhere")).is_empty());
}
