//! Room metadata: rooms.db, members.db, admins.db.

use std::fs;
use std::os::unix::fs::PermissionsExt as _;
use std::path::Path;
use std::sync::Arc;
use std::thread;

use gc_protocol::types::{Room, RoomRole, Timestamp, Visibility};
use gc_store::{
    LineError, MAX_TOPIC_BYTES, Member, RoomInfo, RoomRule, Rooms, RoomsReport, Standing,
    StoreError,
};
use proptest::prelude::*;

use crate::support::{read, user};

const OWNER: Standing = Standing::Role(RoomRole::Owner);
const MODERATOR: Standing = Standing::Role(RoomRole::Moderator);
const MEMBER: Standing = Standing::Role(RoomRole::Member);

fn room(name: &str) -> Room {
    Room::new(name).unwrap()
}

fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

fn open(dir: &Path) -> Rooms {
    let (rooms, report) = Rooms::open(dir).unwrap();
    assert!(report.is_clean(), "{report:?}");
    rooms
}

/// The three files' contents, "" for a missing one.
fn files(dir: &Path) -> [String; 3] {
    ["rooms.db", "members.db", "admins.db"].map(|f| {
        let p = dir.join(f);
        if p.exists() { read(&p) } else { String::new() }
    })
}

/// Everything a `Rooms` answers, for comparing two of them.
fn snapshot(r: &Rooms) -> (Vec<RoomInfo>, Vec<Vec<Member>>, Vec<gc_protocol::Username>) {
    let list = r.list();
    let members = list.iter().map(|i| r.members(&i.room)).collect();
    (list, members, r.admins())
}

fn names(rooms: &[Room]) -> Vec<&str> {
    rooms.iter().map(Room::as_str).collect()
}

#[test]
fn a_missing_dir_is_empty_and_the_first_change_creates_files_0600() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().join("data");
    let r = open(&d);
    assert_eq!(r.list().len(), 1, "#general only");
    assert!(!d.exists(), "opening writes nothing");
    r.create(&room("#dev"), Visibility::Public, &user("Ann"), "", ts("1"))
        .unwrap();
    r.set_admin(&user("root"), true).unwrap();
    for f in ["rooms.db", "members.db", "admins.db"] {
        let mode = fs::metadata(d.join(f)).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "{f}");
    }
    let names: Vec<_> = fs::read_dir(&d)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert_eq!(names.len(), 3, "no temporary file left: {names:?}");
}

#[test]
fn round_trip_through_reopen_with_exact_files() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = open(d);
    let topic = "semi;colon back\\slash new\nline cr\r é 😀 \\n";
    let dev = r
        .create(
            &room("#dev"),
            Visibility::Public,
            &user("Ann"),
            topic,
            ts("1795733296.088305"),
        )
        .unwrap();
    assert_eq!(
        dev,
        RoomInfo {
            room: room("#dev"),
            visibility: Some(Visibility::Public),
            created: ts("1795733296.088305"),
            creator: Some(user("Ann")),
            topic: topic.to_owned(),
        }
    );
    assert_eq!(dev.kind_name(), "public");
    r.create(
        &room("#ops"),
        Visibility::Private,
        &user("bob"),
        "",
        ts("2"),
    )
    .unwrap();
    let (dm, opened) = r
        .open_direct(&user("Bob"), &user("Ann"), ts("3.5"))
        .unwrap();
    assert!(opened);
    assert_eq!(dm.room, room("@ann+bob"));
    assert_eq!((dm.visibility, dm.kind_name()), (None, "direct"));
    assert_eq!(dm.creator, Some(user("Bob")));
    r.set_standing(&room("#dev"), &user("Carl"), MODERATOR)
        .unwrap();
    r.set_standing(&room("#ops"), &user("Dee"), Standing::Invited)
        .unwrap();
    r.set_standing(&room("#dev"), &user("Eve"), Standing::Banned)
        .unwrap();
    r.set_muted(&room("#dev"), &user("carl"), Some(ts("1800000000.25")))
        .unwrap();
    r.set_standing(&Room::general(), &user("Ann"), OWNER)
        .unwrap();
    r.set_muted(&Room::general(), &user("Fay"), Some(ts("1900000000")))
        .unwrap();
    r.set_admin(&user("Root"), true).unwrap();

    assert_eq!(
        files(d),
        [
            format!(
                "#dev;public;1795733296.088305;Ann;{}\n#ops;private;2;bob;\n@ann+bob;direct;3.5;Bob;\n",
                "semi;colon back\\\\slash new\\nline cr\\r é 😀 \\\\n"
            ),
            "#dev;Ann;owner;-\n#dev;Carl;moderator;1800000000.25\n#dev;Eve;banned;-\n\
             #general;Ann;owner;-\n#general;Fay;member;1900000000\n\
             #ops;bob;owner;-\n#ops;Dee;invited;-\n"
                .to_owned(),
            "Root\n".to_owned(),
        ]
    );

    let (again, report) = Rooms::open(d).unwrap();
    assert_eq!(
        report,
        RoomsReport {
            rooms: 3,
            member_lines: 7,
            admins: 1,
            ..RoomsReport::default()
        }
    );
    assert_eq!(snapshot(&again), snapshot(&r));
    assert_eq!(again.get(&room("#dev")).unwrap().topic, topic);
    assert_eq!(
        again.members(&room("#dev")),
        vec![
            Member {
                username: user("Ann"),
                standing: OWNER,
                muted_until: None
            },
            Member {
                username: user("Carl"),
                standing: MODERATOR,
                muted_until: Some(ts("1800000000.25"))
            },
            Member {
                username: user("Eve"),
                standing: Standing::Banned,
                muted_until: None
            },
        ]
    );
    // Reopening changes nothing on disk.
    let before = files(d);
    drop(again);
    let _ = open(d);
    assert_eq!(files(d), before);
}

#[test]
fn every_mutation_is_persisted() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = open(d);
    let dev = room("#dev");
    let ann = user("ann");
    let bob = user("bob");

    r.create(&dev, Visibility::Public, &ann, "first", ts("1"))
        .unwrap();
    assert_eq!(open(d).standing(&dev, &ann), Some(OWNER));

    r.set_topic(&dev, "second").unwrap();
    assert_eq!(open(d).get(&dev).unwrap().topic, "second");

    r.set_visibility(&dev, Visibility::Private).unwrap();
    assert_eq!(
        open(d).get(&dev).unwrap().visibility,
        Some(Visibility::Private)
    );

    assert_eq!(r.set_standing(&dev, &bob, Standing::Invited).unwrap(), None);
    assert_eq!(open(d).standing(&dev, &bob), Some(Standing::Invited));
    assert!(!open(d).is_member(&dev, &bob));

    assert_eq!(
        r.set_standing(&dev, &bob, MEMBER).unwrap(),
        Some(Standing::Invited)
    );
    assert!(open(d).is_member(&dev, &bob));

    r.set_muted(&dev, &bob, Some(ts("99"))).unwrap();
    assert_eq!(open(d).muted_until(&dev, &bob), Some(ts("99")));
    // A role change keeps the mute; a ban lifts it.
    r.set_standing(&dev, &bob, MODERATOR).unwrap();
    assert_eq!(open(d).muted_until(&dev, &bob), Some(ts("99")));
    r.set_muted(&dev, &bob, None).unwrap();
    assert_eq!(open(d).muted_until(&dev, &bob), None);
    r.set_muted(&dev, &bob, Some(ts("100"))).unwrap();
    r.set_standing(&dev, &bob, Standing::Banned).unwrap();
    let reopened = open(d);
    assert_eq!(reopened.standing(&dev, &bob), Some(Standing::Banned));
    assert_eq!(reopened.muted_until(&dev, &bob), None);

    assert_eq!(r.remove_member(&dev, &bob).unwrap(), Some(Standing::Banned));
    assert_eq!(open(d).standing(&dev, &bob), None);
    assert_eq!(r.remove_member(&dev, &bob).unwrap(), None, "a no-op");

    let (_, opened) = r.open_direct(&ann, &bob, ts("5")).unwrap();
    assert!(opened);
    assert!(open(d).get(&room("@ann+bob")).is_some());

    assert!(r.set_admin(&bob, true).unwrap());
    assert!(open(d).is_admin(&user("BOB")));
    assert!(!r.set_admin(&user("Bob"), true).unwrap(), "already one");
    assert!(r.set_admin(&user("BOB"), false).unwrap());
    assert!(!open(d).is_admin(&bob));
    assert!(!r.set_admin(&bob, false).unwrap());

    r.set_standing(&dev, &bob, MEMBER).unwrap();
    let removed = r.remove(&dev).unwrap();
    assert_eq!(removed.topic, "second");
    let reopened = open(d);
    assert_eq!(reopened.get(&dev), None);
    assert!(reopened.members(&dev).is_empty());
    assert_eq!(files(d)[1], "", "its members' lines went with it");

    assert!(r.remove(&room("@ann+bob")).is_ok());
    assert_eq!(files(d), [String::new(), String::new(), String::new()]);
    // A removed room can be created again, with none of its old standings.
    r.create(&dev, Visibility::Public, &bob, "", ts("6"))
        .unwrap();
    assert_eq!(open(d).members(&dev).len(), 1);
}

#[test]
fn refusals_change_nothing() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = open(d);
    let dev = room("#dev");
    let general = Room::general();
    let ann = user("ann");
    r.create(&dev, Visibility::Public, &ann, "t", ts("1"))
        .unwrap();
    r.open_direct(&ann, &user("bob"), ts("2")).unwrap();
    let dm = room("@ann+bob");
    let before = files(d);
    let snap = snapshot(&r);

    let rule_of = |e: StoreError| match e {
        StoreError::RoomRule { rule, room } => (room, rule),
        other => panic!("expected RoomRule, got {other:?}"),
    };
    assert!(matches!(
        r.create(&dev, Visibility::Private, &user("x"), "", ts("3")),
        Err(StoreError::RoomExists { room }) if room == "#dev"
    ));
    assert_eq!(
        rule_of(
            r.create(&general, Visibility::Public, &ann, "", ts("3"))
                .unwrap_err()
        ),
        ("#general".to_owned(), RoomRule::GeneralExists)
    );
    assert_eq!(
        rule_of(
            r.create(&dm, Visibility::Public, &ann, "", ts("3"))
                .unwrap_err()
        )
        .1,
        RoomRule::DirectCreate
    );
    assert_eq!(
        rule_of(r.remove(&general).unwrap_err()).1,
        RoomRule::GeneralExists
    );
    assert_eq!(
        rule_of(r.set_visibility(&general, Visibility::Private).unwrap_err()).1,
        RoomRule::GeneralPublic
    );
    r.set_visibility(&general, Visibility::Public).unwrap();
    assert_eq!(
        rule_of(r.set_topic(&general, "x").unwrap_err()).1,
        RoomRule::GeneralTopic
    );
    assert_eq!(
        rule_of(
            r.set_standing(&general, &ann, Standing::Invited)
                .unwrap_err()
        )
        .1,
        RoomRule::GeneralMembers
    );
    assert_eq!(
        rule_of(r.remove_member(&general, &ann).unwrap_err()).1,
        RoomRule::GeneralMembers
    );
    for standing in [MEMBER, OWNER, Standing::Invited, Standing::Banned] {
        assert_eq!(
            rule_of(r.set_standing(&dm, &ann, standing).unwrap_err()).1,
            RoomRule::DirectMembers
        );
        assert_eq!(
            rule_of(r.set_standing(&dm, &user("carl"), standing).unwrap_err()).1,
            RoomRule::DirectMembers
        );
    }
    assert_eq!(
        rule_of(r.remove_member(&dm, &ann).unwrap_err()).1,
        RoomRule::DirectMembers
    );
    assert_eq!(
        rule_of(r.set_muted(&dm, &ann, Some(ts("9"))).unwrap_err()).1,
        RoomRule::DirectMembers
    );
    assert_eq!(
        rule_of(r.set_visibility(&dm, Visibility::Public).unwrap_err()).1,
        RoomRule::DirectVisibility
    );

    let nowhere = room("#nowhere");
    let unknown = |res: Result<(), StoreError>| {
        assert!(
            matches!(&res, Err(StoreError::UnknownRoom { room }) if room == "#nowhere" || room == "@ann+carl"),
            "{res:?}"
        );
    };
    unknown(r.remove(&nowhere).map(drop));
    unknown(r.set_standing(&nowhere, &ann, MEMBER).map(drop));
    unknown(r.remove_member(&nowhere, &ann).map(drop));
    unknown(r.set_muted(&nowhere, &ann, None));
    unknown(r.set_topic(&nowhere, "x"));
    unknown(r.set_visibility(&nowhere, Visibility::Public));
    unknown(r.set_standing(&room("@ann+carl"), &ann, MEMBER).map(drop));

    assert!(matches!(
        r.set_muted(&dev, &user("stranger"), Some(ts("9"))),
        Err(StoreError::NotRoomMember { .. })
    ));
    r.set_standing(&dev, &user("inv"), Standing::Invited)
        .unwrap();
    assert!(matches!(
        r.set_muted(&dev, &user("INV"), Some(ts("9"))),
        Err(StoreError::NotRoomMember { .. })
    ));
    r.remove_member(&dev, &user("inv")).unwrap();

    let long = "x".repeat(MAX_TOPIC_BYTES + 1);
    assert!(matches!(
        r.set_topic(&dev, &long),
        Err(StoreError::TopicTooLong {
            bytes: 513,
            limit: 512
        })
    ));
    assert!(matches!(
        r.create(&room("#new"), Visibility::Public, &ann, &long, ts("3")),
        Err(StoreError::TopicTooLong { .. })
    ));
    assert!(matches!(
        r.set_topic(&dev, "a\0b"),
        Err(StoreError::TopicNul)
    ));
    r.set_topic(&dev, &"é".repeat(MAX_TOPIC_BYTES / 2)).unwrap();
    r.set_topic(&dev, "t").unwrap();
    assert!(matches!(
        r.open_direct(&ann, &user("ANN"), ts("3")),
        Err(StoreError::DirectWithSelf { .. })
    ));

    assert_eq!(files(d), before);
    assert_eq!(snapshot(&r), snap);
    // The messages say what happened.
    let e = r.remove(&general).unwrap_err().to_string();
    assert!(
        e.contains("#general") && e.contains("cannot be created or removed"),
        "{e}"
    );
    let e = r.set_standing(&dm, &ann, MEMBER).unwrap_err().to_string();
    assert!(e.starts_with("@ann+bob: a direct conversation"), "{e}");
}

#[test]
fn a_failed_write_leaves_memory_and_files_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = open(d);
    let dev = room("#dev");
    r.create(&dev, Visibility::Public, &user("ann"), "t", ts("1"))
        .unwrap();
    r.set_admin(&user("root"), true).unwrap();
    let before = files(d);
    let snap = snapshot(&r);
    // A directory where a temporary file must go makes that file's rewrite fail.
    let block = |f: &str| fs::create_dir(d.join(format!("{f}.tmp"))).unwrap();
    let unblock = |f: &str| fs::remove_dir(d.join(format!("{f}.tmp"))).unwrap();

    block("rooms.db");
    let e = r.set_topic(&dev, "new").unwrap_err();
    assert!(e.to_string().contains("rooms.db.tmp"), "{e}");
    assert!(r.set_visibility(&dev, Visibility::Private).is_err());
    assert!(r.open_direct(&user("a"), &user("b"), ts("2")).is_err());
    // create writes members.db, then rooms.db: members.db is restored.
    let e = r
        .create(&room("#new"), Visibility::Public, &user("bob"), "", ts("2"))
        .unwrap_err();
    assert!(e.to_string().contains("rooms.db.tmp"), "{e}");
    // remove writes rooms.db first, so fails at once.
    assert!(r.remove(&dev).is_err());
    assert_eq!(files(d), before);
    assert_eq!(snapshot(&r), snap);
    unblock("rooms.db");

    block("members.db");
    assert!(r.set_standing(&dev, &user("bob"), MEMBER).is_err());
    assert!(r.set_muted(&dev, &user("ann"), Some(ts("5"))).is_err());
    assert!(r.remove_member(&dev, &user("ann")).is_err());
    assert!(
        r.create(&room("#new"), Visibility::Public, &user("bob"), "", ts("2"))
            .is_err()
    );
    // remove writes rooms.db, then members.db: rooms.db is restored.
    let e = r.remove(&dev).unwrap_err();
    assert!(e.to_string().contains("members.db.tmp"), "{e}");
    assert_eq!(files(d), before);
    assert_eq!(snapshot(&r), snap);
    unblock("members.db");

    block("admins.db");
    assert!(r.set_admin(&user("root"), false).is_err());
    assert!(r.set_admin(&user("other"), true).is_err());
    assert_eq!(files(d), before);
    assert_eq!(snapshot(&r), snap);
    // A change that changes nothing writes nothing, so cannot fail.
    assert!(!r.set_admin(&user("ROOT"), true).unwrap());
    unblock("admins.db");

    assert_eq!(snapshot(&open(d)), snap);
    r.remove(&dev).unwrap();
    assert_eq!(open(d).list().len(), 1);
}

#[test]
fn damaged_lines_are_moved_aside_and_reported() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    fs::write(
        d.join("rooms.db"),
        "#dev;public;1;ann;topic; with \\\\ and \\n\n\
         #bad name;public;1;ann;\n\
         #ops;secret;1;ann;\n\
         #dev;private;2;bob;again\n\
         #general;public;1;ann;\n\
         #lost;public;1;ann;bad\\q\n\
         @ann+bob;direct;3;bob;",
    )
    .unwrap();
    fs::write(
        d.join("members.db"),
        "#dev;Ann;owner;-\n\
         #dev;ANN;member;-\n\
         #lost;ann;owner;-\n\
         #dev;bob;owner\n\
         @ann+bob;ann;member;-\n\
         #general;carl;invited;-\n\
         #general;carl;banned;-\n\
         #general;dee;member;-\n\
         #dev;eve;invited;7\n\
         \n\
         #dev;fay;moderator;8\n",
    )
    .unwrap();
    fs::write(d.join("admins.db"), "root\nRoot\nnot valid\n").unwrap();

    let (r, report) = Rooms::open(d).unwrap();
    let got = |lines: &[gc_store::FaultyLine]| {
        lines
            .iter()
            .map(|l| (l.line_number, l.reason))
            .collect::<Vec<_>>()
    };
    assert_eq!(
        got(&report.rooms_db),
        [
            (2, LineError::Room),
            (3, LineError::Kind),
            (4, LineError::Duplicate { first_line: 1 }),
            (5, LineError::GeneralLine),
            (6, LineError::Escape),
        ]
    );
    assert_eq!(
        got(&report.members_db),
        [
            (2, LineError::Duplicate { first_line: 1 }),
            (3, LineError::UnknownRoom),
            (4, LineError::Fields),
            (5, LineError::DirectMember),
            (6, LineError::Standing),
            (9, LineError::Mute),
            (10, LineError::Fields),
        ]
    );
    assert_eq!(
        got(&report.admins_db),
        [
            (2, LineError::Duplicate { first_line: 1 }),
            (3, LineError::Username),
        ]
    );
    // #general;dee;member;- is the default: loaded, not kept.
    assert_eq!(
        (report.rooms, report.member_lines, report.admins),
        (2, 3, 1)
    );
    assert!(!report.is_clean());

    // What was kept.
    assert_eq!(r.get(&room("#dev")).unwrap().topic, "topic; with \\ and \n");
    assert!(
        r.get(&room("@ann+bob")).is_some(),
        "a last line without LF is fine"
    );
    assert_eq!(r.standing(&room("#dev"), &user("ann")), Some(OWNER));
    assert_eq!(
        r.standing(&Room::general(), &user("carl")),
        Some(Standing::Banned)
    );
    assert_eq!(r.muted_until(&room("#dev"), &user("fay")), Some(ts("8")));
    assert_eq!(r.admins(), [user("root")]);

    // The files were rewritten without the bad lines…
    assert_eq!(
        files(d),
        [
            "#dev;public;1;ann;topic; with \\\\ and \\n\n@ann+bob;direct;3;bob;\n".to_owned(),
            "#dev;Ann;owner;-\n#dev;fay;moderator;8\n#general;carl;banned;-\n".to_owned(),
            "root\n".to_owned(),
        ]
    );
    // …which are in the .corrupt files, each after a line saying where it was and why.
    let corrupt = read(&d.join("rooms.db.corrupt"));
    assert!(
        corrupt.contains("line 2 of rooms.db (") && corrupt.contains("#bad name;public;1;ann;\n"),
        "{corrupt}"
    );
    assert!(corrupt.contains("line 4 of rooms.db") && corrupt.contains("repeats line 1"));
    assert!(corrupt.contains("#lost;public;1;ann;bad\\q\n"), "{corrupt}");
    let corrupt = read(&d.join("members.db.corrupt"));
    assert!(
        corrupt.contains("line 3 of members.db") && corrupt.contains("#lost;ann;owner;-\n"),
        "{corrupt}"
    );
    assert!(corrupt.contains("line 10 of members.db"), "{corrupt}");
    let corrupt = read(&d.join("admins.db.corrupt"));
    assert!(
        corrupt.contains("Root\n") && corrupt.contains("not valid\n"),
        "{corrupt}"
    );
    let mode = fs::metadata(d.join("admins.db.corrupt"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o600);

    // Opening again finds nothing more to move.
    drop(r);
    let _ = open(d);
    assert_eq!(
        read(&d.join("admins.db.corrupt"))
            .matches("# gc-store")
            .count(),
        2
    );
}

#[test]
fn a_line_too_long_is_moved_aside() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let huge = "x".repeat(gc_store::MAX_LINE_BYTES + 10);
    fs::write(
        d.join("rooms.db"),
        format!("#a;public;1;ann;\n#b;public;1;ann;{huge}\n#c;public;1;ann;\n"),
    )
    .unwrap();
    let (r, report) = Rooms::open(d).unwrap();
    assert_eq!(report.rooms_db.len(), 1);
    assert_eq!(
        (report.rooms_db[0].line_number, report.rooms_db[0].reason),
        (2, LineError::TooLong)
    );
    assert_eq!(r.list().len(), 3);
}

#[test]
fn usernames_compare_without_case_and_keep_their_spelling() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = open(d);
    let dev = room("#dev");
    r.create(&dev, Visibility::Public, &user("AnnE"), "", ts("1"))
        .unwrap();
    assert_eq!(r.standing(&dev, &user("anne")), Some(OWNER));
    assert_eq!(r.owned_count(&user("ANNE")), 1);
    assert_eq!(
        r.set_standing(&dev, &user("ANNE"), MODERATOR).unwrap(),
        Some(OWNER)
    );
    r.set_muted(&dev, &user("anne"), Some(ts("4"))).unwrap();
    assert_eq!(r.muted_until(&dev, &user("aNNe")), Some(ts("4")));
    let members = open(d).members(&dev);
    assert_eq!(members.len(), 1, "one line, whatever the case");
    assert_eq!(
        members[0].username.as_str(),
        "AnnE",
        "stored as first given"
    );
    assert_eq!(files(d)[1], "#dev;AnnE;moderator;4\n");

    r.set_admin(&user("Root"), true).unwrap();
    assert!(r.is_admin(&user("rOOT")));
    assert_eq!(r.admins(), [user("Root")]);
    assert_eq!(
        names(&open(d).rooms_of(&user("anne"))),
        ["#general", "#dev"]
    );
}

#[test]
fn general_defaults() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = open(d);
    let g = Room::general();
    let anyone = user("anyone");
    let info = r.get(&g).unwrap();
    assert_eq!(
        (info.visibility, info.creator.clone(), info.topic.as_str()),
        (Some(Visibility::Public), None, "")
    );
    assert_eq!(r.list(), [info]);
    assert_eq!(r.standing(&g, &anyone), Some(MEMBER));
    assert!(r.is_member(&g, &anyone));
    assert_eq!(names(&r.rooms_of(&anyone)), ["#general"]);
    assert!(
        r.members(&g).is_empty(),
        "only non-default standings are listed"
    );
    assert_eq!(r.muted_until(&g, &anyone), None);

    // Non-default standings get a line; going back to the default drops it.
    assert_eq!(
        r.set_standing(&g, &user("mod"), MODERATOR).unwrap(),
        Some(MEMBER)
    );
    r.set_muted(&g, &anyone, Some(ts("10"))).unwrap();
    r.set_standing(&g, &user("troll"), Standing::Banned)
        .unwrap();
    assert!(!r.is_member(&g, &user("troll")));
    assert!(
        r.rooms_of(&user("troll")).is_empty(),
        "banned from #general"
    );
    assert_eq!(
        files(d)[1],
        "#general;anyone;member;10\n#general;mod;moderator;-\n#general;troll;banned;-\n"
    );
    assert_eq!(r.owned_count(&user("mod")), 0);
    r.set_standing(&g, &user("mod"), OWNER).unwrap();
    assert_eq!(r.owned_count(&user("mod")), 0, "#general is not counted");

    r.set_muted(&g, &anyone, None).unwrap();
    r.set_standing(&g, &user("troll"), MEMBER).unwrap();
    r.set_standing(&g, &user("mod"), MEMBER).unwrap();
    assert_eq!(files(d)[1], "");
    assert!(r.members(&g).is_empty());
    assert_eq!(r.standing(&g, &user("troll")), Some(MEMBER));
}

#[test]
fn direct_conversations() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    let r = open(d);
    let (ann, bob, carl) = (user("Ann"), user("bob"), user("carl"));
    let dm = room("@ann+bob");
    assert_eq!(r.get(&dm), None);
    assert_eq!(r.standing(&dm, &ann), None, "not opened yet");
    assert!(r.members(&dm).is_empty());

    let (info, opened) = r.open_direct(&ann, &bob, ts("7")).unwrap();
    assert!(opened);
    assert_eq!(
        info,
        RoomInfo {
            room: dm.clone(),
            visibility: None,
            created: ts("7"),
            creator: Some(ann.clone()),
            topic: String::new(),
        }
    );
    let before = files(d);
    // Idempotent, in either order, whatever the case.
    let (again, opened) = r.open_direct(&user("BOB"), &user("ann"), ts("8")).unwrap();
    assert!(!opened);
    assert_eq!(again, info);
    assert_eq!(files(d), before);
    assert_eq!(before[0], "@ann+bob;direct;7;Ann;\n");
    assert_eq!(before[1], "", "a DM's members have no lines");

    assert_eq!(r.standing(&dm, &user("ANN")), Some(MEMBER));
    assert_eq!(r.standing(&dm, &bob), Some(MEMBER));
    assert_eq!(r.standing(&dm, &carl), None);
    assert!(r.is_member(&dm, &bob) && !r.is_member(&dm, &carl));
    assert_eq!(
        r.members(&dm)
            .iter()
            .map(|m| (m.username.as_str(), m.standing))
            .collect::<Vec<_>>(),
        [("ann", MEMBER), ("bob", MEMBER)]
    );
    assert_eq!(r.owned_count(&ann), 0);
    r.open_direct(&carl, &ann, ts("9")).unwrap();
    assert_eq!(
        names(&r.rooms_of(&ann)),
        ["#general", "@ann+bob", "@ann+carl"]
    );
    assert_eq!(names(&r.rooms_of(&bob)), ["#general", "@ann+bob"]);
    r.set_topic(&dm, "our plans").unwrap();
    let reopened = open(d);
    assert_eq!(reopened.get(&dm).unwrap().topic, "our plans");
    assert_eq!(
        names(&reopened.rooms_of(&user("CARL"))),
        ["#general", "@ann+carl"]
    );
    assert_eq!(reopened.list().len(), 3);
}

#[test]
fn rooms_of_and_owned_count() {
    let dir = tempfile::tempdir().unwrap();
    let r = open(dir.path());
    let ann = user("ann");
    for name in ["#c", "#a", "#b"] {
        r.create(&room(name), Visibility::Public, &ann, "", ts("1"))
            .unwrap();
    }
    r.create(&room("#z"), Visibility::Private, &user("bob"), "", ts("1"))
        .unwrap();
    assert_eq!(r.owned_count(&ann), 3);
    r.set_standing(&room("#z"), &ann, Standing::Invited)
        .unwrap();
    assert_eq!(names(&r.rooms_of(&ann)), ["#general", "#a", "#b", "#c"]);
    r.set_standing(&room("#z"), &ann, MEMBER).unwrap();
    r.set_standing(&room("#b"), &ann, MODERATOR).unwrap();
    assert_eq!(r.owned_count(&ann), 2);
    assert_eq!(
        names(&r.rooms_of(&ann)),
        ["#general", "#a", "#b", "#c", "#z"]
    );
    r.remove(&room("#a")).unwrap();
    assert_eq!(r.owned_count(&ann), 1);
    assert_eq!(names(&r.rooms_of(&ann)), ["#general", "#b", "#c", "#z"]);
    assert_eq!(
        r.list().iter().map(|i| i.room.as_str()).collect::<Vec<_>>(),
        ["#general", "#b", "#c", "#z"]
    );
}

#[test]
fn concurrent_changes_and_reads() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path().to_owned();
    let r = Arc::new(open(&d));
    let handles: Vec<_> = (0..4)
        .map(|t| {
            let r = Arc::clone(&r);
            thread::spawn(move || {
                for i in 0..8 {
                    let name = room(&format!("#r{t}-{i}"));
                    let owner = user(&format!("u{t}"));
                    r.create(&name, Visibility::Public, &owner, "", ts("1"))
                        .unwrap();
                    r.set_standing(&name, &user("shared"), MEMBER).unwrap();
                    assert!(r.is_member(&name, &user("SHARED")));
                    r.open_direct(&owner, &user("shared"), ts("2")).unwrap();
                }
            })
        })
        .collect();
    for h in handles {
        h.join().unwrap();
    }
    let again = open(&d);
    assert_eq!(again.list().len(), 1 + 32 + 4);
    assert_eq!(again.rooms_of(&user("shared")).len(), 1 + 32 + 4);
    assert_eq!(again.owned_count(&user("u2")), 8);
}

fn garbage_line() -> impl Strategy<Value = String> {
    prop_oneof![
        "[#@][a-z+]{1,5};(public|private|direct|x);[0-9.]{1,4};[a-zA-Z]{1,3};[a-z;\\\\n]{0,6}",
        "(#general|#a|#b|@a+b);[a-zA-Z]{1,2};(owner|member|invited|banned|x);(-|[0-9]{1,2})",
        "[a-zA-Z ;]{0,6}",
        ".{0,12}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Nothing in the files makes opening fail or panic, and after one open the files are clean.
    #[test]
    fn any_file_content_opens(
        rooms in proptest::collection::vec(garbage_line(), 0..8),
        members in proptest::collection::vec(garbage_line(), 0..8),
        admins in proptest::collection::vec(garbage_line(), 0..4),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let d = dir.path();
        fs::write(d.join("rooms.db"), rooms.join("\n")).unwrap();
        fs::write(d.join("members.db"), members.join("\n")).unwrap();
        fs::write(d.join("admins.db"), admins.join("\n")).unwrap();
        let (r, _) = Rooms::open(d).unwrap();
        let snap = snapshot(&r);
        drop(r);
        let (again, report) = Rooms::open(d).unwrap();
        prop_assert!(report.is_clean(), "{:?}", report);
        prop_assert_eq!(snapshot(&again), snap);
    }
}
