//! The admin subcommands on real data files: accounts, store checks, and refusing to write while
//! a server holds the data dir.

use std::collections::VecDeque;

use gc_server::admin::{self, PasswordSource};
use gc_server::cli::{DbCommand, ExportFormat, OnOff, RoomCommand, UserCommand};
use gc_server::{Config, ServerError};

/// Passwords handed out in order, as a terminal would.
struct Scripted(VecDeque<String>);

impl PasswordSource for Scripted {
    fn new_password(&mut self, _user: &str, _from_stdin: bool) -> Result<String, ServerError> {
        self.0
            .pop_front()
            .ok_or_else(|| ServerError::Usage("no more passwords".into()))
    }
}

/// A password long enough for a new account.
const PASSWORD: &str = "correct-horse-9";

fn passwords(list: &[&str]) -> Scripted {
    Scripted(list.iter().map(|s| (*s).to_owned()).collect())
}

fn config(dir: &std::path::Path) -> Config {
    Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    }
}

fn run_user(cmd: UserCommand, config: &Config, pw: &mut Scripted) -> Result<String, ServerError> {
    let mut out = Vec::new();
    admin::user(&cmd, config, pw, &mut out)?;
    Ok(String::from_utf8(out).expect("admin output is UTF-8"))
}

#[test]
fn user_add_list_passwd_remove() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let add = |name: &str| UserCommand::Add {
        name: name.into(),
        password_stdin: true,
    };
    assert_eq!(
        run_user(add("alice"), &c, &mut passwords(&[PASSWORD])).unwrap(),
        "added alice\n"
    );
    let err = run_user(add("ALICE"), &c, &mut passwords(&[PASSWORD])).unwrap_err();
    assert!(err.to_string().contains("already exists"), "{err}");
    let err = run_user(add("bad name"), &c, &mut passwords(&[PASSWORD])).unwrap_err();
    assert!(err.to_string().contains("not a valid username"), "{err}");
    let err = run_user(add("system"), &c, &mut passwords(&[PASSWORD])).unwrap_err();
    assert!(err.to_string().contains("reserved"), "{err}");
    let err = run_user(add("bob"), &c, &mut passwords(&[""])).unwrap_err();
    assert!(err.to_string().contains("empty"), "{err}");

    let listing = run_user(UserCommand::List, &c, &mut passwords(&[])).unwrap();
    assert!(listing.starts_with("alice\tcreated "), "{listing}");
    assert!(listing.contains("4096 iterations"), "{listing}");

    let passwd = UserCommand::Passwd {
        name: "Alice".into(),
        password_stdin: true,
    };
    assert_eq!(
        run_user(passwd, &c, &mut passwords(&["a-new-password"])).unwrap(),
        "password changed for alice\n"
    );
    let remove = |n: &str| UserCommand::Remove { name: n.into() };
    assert_eq!(
        run_user(remove("ALICE"), &c, &mut passwords(&[])).unwrap(),
        "removed alice\n"
    );
    let err = run_user(remove("alice"), &c, &mut passwords(&[])).unwrap_err();
    assert!(err.to_string().contains("no account named alice"), "{err}");
}

#[test]
fn writes_are_refused_while_a_server_runs_but_reads_work() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    c.bind = [127, 0, 0, 1].into();
    c.connect_port = 0;
    c.auth_port = 0;
    c.send_port = 0;
    let server = gc_server::start(c.clone()).unwrap();
    let add = UserCommand::Add {
        name: "carol".into(),
        password_stdin: true,
    };
    let err = run_user(add, &c, &mut passwords(&[PASSWORD])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("database.db") && text.contains("running"),
        "{text}"
    );
    assert!(run_user(UserCommand::List, &c, &mut passwords(&[])).is_ok());
    let mut out = Vec::new();
    assert!(admin::db(&DbCommand::Check { backup: None }, &c, &mut out).unwrap());
    let err = admin::db(&DbCommand::Repair, &c, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("locked"), "{err}");
    server.shutdown();
}

#[test]
fn db_check_repair_export() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    std::fs::write(
        dir.path().join("database.db"),
        "1;1640995200.123;alice;Hello, world!\nnot a record\n2;1640995201;bob;a\\nb\n3;1;al",
    )
    .unwrap();
    let mut out = Vec::new();
    assert!(!admin::db(&DbCommand::Check { backup: None }, &c, &mut out).unwrap());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("bad line 2"), "{text}");
    assert!(text.contains("1 bad lines; stop the server"), "{text}");

    let mut out = Vec::new();
    admin::db(&DbCommand::Repair, &c, &mut out).unwrap();
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("kept 2 records") && text.contains("database.db.corrupt"),
        "{text}"
    );

    let mut out = Vec::new();
    assert!(admin::db(&DbCommand::Check { backup: None }, &c, &mut out).unwrap());
    let export = |format| {
        let mut out = Vec::new();
        admin::db(
            &DbCommand::Export {
                format,
                output: None,
                room: None,
            },
            &c,
            &mut out,
        )
        .unwrap();
        String::from_utf8(out).unwrap()
    };
    assert_eq!(
        export(ExportFormat::Plain),
        "1;1640995200.123;alice;Hello, world!\n2;1640995201;bob;a\\nb\n"
    );
    assert!(export(ExportFormat::Json).contains(r#""message":"a\nb""#));

    // A second room: check and export cover it, and --room exports it alone.
    std::fs::create_dir(dir.path().join("rooms")).unwrap();
    std::fs::write(
        dir.path().join("rooms/dev.db"),
        "5;1640995300;carol;in dev\n",
    )
    .unwrap();
    let mut out = Vec::new();
    assert!(admin::db(&DbCommand::Check { backup: None }, &c, &mut out).unwrap());
    let text = String::from_utf8(out).unwrap();
    assert!(
        text.contains("dev.db (#dev): 1 lines, 1 records, ids 5..5"),
        "{text}"
    );
    assert_eq!(
        export(ExportFormat::Plain),
        "1;1640995200.123;alice;Hello, world!\n2;1640995201;bob;a\\nb\n# room #dev\n\
         5;1640995300;carol;in dev\n"
    );
    let mut out = Vec::new();
    let room = Some(gc_protocol::Room::new("#dev").unwrap());
    admin::db(
        &DbCommand::Export {
            format: ExportFormat::Plain,
            output: None,
            room,
        },
        &c,
        &mut out,
    )
    .unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "5;1640995300;carol;in dev\n"
    );
}

#[test]
fn tls_fingerprint_is_made_once_and_printed_the_same() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let print = |given: Option<(&std::path::Path, &std::path::Path)>| {
        let mut c = c.clone();
        c.tls_cert = given.map(|(cert, _)| cert.to_owned());
        c.tls_key = given.map(|(_, key)| key.to_owned());
        let mut out = Vec::new();
        admin::tls_fingerprint(&c, &mut out).map(|()| String::from_utf8(out).unwrap())
    };
    let first = print(None).unwrap();
    assert!(
        first.starts_with("SHA256:") && first.ends_with('\n'),
        "{first}"
    );
    assert_eq!(
        print(None).unwrap(),
        first,
        "the same identity at every call"
    );
    // The operator's own files give their fingerprint, which is the data dir's here.
    let tls = dir.path().join("tls");
    let given = print(Some((&tls.join("cert.pem"), &tls.join("key.pem")))).unwrap();
    assert_eq!(given, first);
    // A key others may read is refused, saying how to fix it.
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::set_permissions(tls.join("key.pem"), std::fs::Permissions::from_mode(0o640)).unwrap();
    let err = print(None).unwrap_err();
    assert!(err.to_string().contains("chmod 600"), "{err}");
    assert_eq!(err.exit_code(), 1);
}

fn run_room(cmd: RoomCommand, config: &Config) -> Result<String, ServerError> {
    let mut out = Vec::new();
    admin::room(&cmd, config, &mut out)?;
    Ok(String::from_utf8(out).expect("admin output is UTF-8"))
}

#[test]
fn room_add_list_members_remove_and_user_admin() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let add_user = |name: &str| UserCommand::Add {
        name: name.into(),
        password_stdin: true,
    };
    run_user(add_user("alice"), &c, &mut passwords(&[PASSWORD])).unwrap();
    let room = |name: &str| gc_protocol::Room::new(name).unwrap();
    let add = |name: &str, owner: &str| RoomCommand::Add {
        room: room(name),
        owner: owner.into(),
        private: true,
        topic: "plans; and more".into(),
    };
    assert_eq!(
        run_room(add("#dev", "Alice"), &c).unwrap(),
        "added #dev (private), owned by alice\n"
    );
    let err = run_room(add("#dev", "alice"), &c).unwrap_err();
    assert!(err.to_string().contains("exists already"), "{err}");
    let err = run_room(add("#ops", "nobody"), &c).unwrap_err();
    assert!(err.to_string().contains("no account named nobody"), "{err}");
    let err = run_room(add("#general", "alice"), &c).unwrap_err();
    assert!(err.to_string().contains("#general"), "{err}");

    let list = run_room(RoomCommand::List, &c).unwrap();
    assert!(list.starts_with("#general\tpublic\t1 members"), "{list}");
    assert!(
        list.contains("#dev\tprivate\t1 members\tby alice at "),
        "{list}"
    );
    let members = run_room(RoomCommand::Members { room: room("#dev") }, &c).unwrap();
    assert_eq!(members, "alice\towner\n");

    assert_eq!(
        run_user(
            UserCommand::Admin {
                name: "ALICE".into(),
                state: OnOff::On
            },
            &c,
            &mut passwords(&[])
        )
        .unwrap(),
        "alice is now a server admin\n"
    );
    let err = run_user(
        UserCommand::Admin {
            name: "nobody".into(),
            state: OnOff::On,
        },
        &c,
        &mut passwords(&[]),
    )
    .unwrap_err();
    assert!(err.to_string().contains("no account"), "{err}");

    // Removing a room keeps its messages aside and says so in #general, so ids go on upward.
    {
        let (store, _) =
            gc_store::MessageStore::open(dir.path(), gc_store::StoreConfig::default()).unwrap();
        let a = store
            .append_in(
                &room("#dev"),
                &gc_protocol::Username::new("alice").unwrap(),
                &gc_protocol::ClientMsgId::new("m1").unwrap(),
                "secret",
            )
            .unwrap();
        assert_eq!(a.id, 1);
    }
    let out = run_room(RoomCommand::Remove { room: room("#dev") }, &c).unwrap();
    assert!(
        out.starts_with("removed #dev; its messages are kept in "),
        "{out}"
    );
    assert!(!dir.path().join("rooms/dev.db").exists());
    let (store, _) =
        gc_store::MessageStore::open(dir.path(), gc_store::StoreConfig::default()).unwrap();
    let all = store.after(0, 10, u64::MAX).unwrap();
    assert_eq!(all.len(), 1);
    assert_eq!(
        (all[0].id, all[0].body.as_str()),
        (2, "the operator removed #dev")
    );
    // While the store is open (as a server holds it), changes are refused.
    let err = run_room(RoomCommand::Remove { room: room("#ops") }, &c).unwrap_err();
    assert!(err.to_string().contains("stop it first"), "{err}");
    let err = run_room(add("#ops", "alice"), &c).unwrap_err();
    assert!(err.to_string().contains("stop it first"), "{err}");
    drop(store);
    let list = run_room(RoomCommand::List, &c).unwrap();
    assert!(!list.contains("#dev"), "{list}");
}

#[test]
fn db_import_brings_in_a_prototype_history_once() {
    let dir = tempfile::tempdir().unwrap();
    let original = dir.path().join("original.db");
    // Shaped like the prototype's file: a blank first line, time.time() with 7 decimals, ids
    // restarting at 2, an unreadable line, no final newline.
    std::fs::write(
        &original,
        "\n2;1640995200.1234567;Bob;Hello\\nthere\n3;1640995201.25;Bob;second; with a semicolon\n\
         2;1640995300.0000001;Bob;after a restart\n3;not-a-time;Bob;lost\n4;1640995400;Bob;the end",
    )
    .unwrap();
    let data = dir.path().join("data");
    let c = config(&data);
    let import = DbCommand::Import {
        original: Some(original.clone()),
        from_dir: None,
        from_postgres: false,
    };
    let mut out = Vec::new();
    assert!(admin::db(&import, &c, &mut out).unwrap());
    let text = String::from_utf8(out).unwrap();
    assert!(text.contains("imported 4 of 6 lines"), "{text}");
    assert!(text.contains("1 original ids repeated"), "{text}");
    assert!(
        text.contains("line 5: the timestamp is not seconds"),
        "{text}"
    );
    assert!(text.contains("no newline"), "{text}");

    let mut out = Vec::new();
    assert!(admin::db(&DbCommand::Check { backup: None }, &c, &mut out).unwrap());
    let export = DbCommand::Export {
        format: ExportFormat::Plain,
        output: None,
        room: None,
    };
    let mut out = Vec::new();
    admin::db(&export, &c, &mut out).unwrap();
    assert_eq!(
        String::from_utf8(out).unwrap(),
        "1;1640995200.123456;Bob;Hello\\nthere\n\
         2;1640995201.25;Bob;second; with a semicolon\n\
         3;1640995300;Bob;after a restart\n\
         4;1640995400;Bob;the end\n"
    );
    // A server opens it; a second import refuses to mix histories.
    let mut running = c.clone();
    running.bind = [127, 0, 0, 1].into();
    running.connect_port = 0;
    running.auth_port = 0;
    running.send_port = 0;
    gc_server::start(running).unwrap().shutdown();
    let err = admin::db(&import, &c, &mut Vec::new()).unwrap_err();
    assert!(err.to_string().contains("already holds messages"), "{err}");
}

fn mode(path: &std::path::Path) -> u32 {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o7777)
}

#[test]
fn accounts_and_exports_are_the_owners_alone_whatever_the_umask() {
    // What most systems start with: files made without a mode would be readable by all.
    rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
    let dir = tempfile::tempdir().unwrap();
    let data = dir.path().join("gc-data");
    let c = config(&data);
    let add = UserCommand::Add {
        name: "alice".into(),
        password_stdin: true,
    };
    run_user(add, &c, &mut passwords(&[PASSWORD])).unwrap();
    assert_eq!(mode(&data), 0o700);
    assert_eq!(mode(&data.join("usernames.db")), 0o600);
    assert_eq!(mode(&data.join("database.db")), 0o600);

    let output = dir.path().join("export.txt");
    let export = DbCommand::Export {
        format: ExportFormat::Plain,
        output: Some(output.clone()),
        room: None,
    };
    admin::db(&export, &c, &mut Vec::new()).unwrap();
    assert_eq!(mode(&output), 0o600);

    // An accounts file left readable by an older version is tightened by the next command.
    use std::os::unix::fs::PermissionsExt as _;
    let loose = std::fs::Permissions::from_mode(0o644);
    std::fs::set_permissions(data.join("usernames.db"), loose.clone()).unwrap();
    std::fs::set_permissions(&output, loose).unwrap();
    run_user(UserCommand::List, &c, &mut passwords(&[])).unwrap();
    assert_eq!(mode(&data.join("usernames.db")), 0o600);
    admin::db(&export, &c, &mut Vec::new()).unwrap();
    assert_eq!(mode(&output), 0o600);
}

#[test]
fn a_password_shorter_than_8_characters_is_refused_and_nothing_changes() {
    let dir = tempfile::tempdir().unwrap();
    let c = config(dir.path());
    let add = |name: &str| UserCommand::Add {
        name: name.into(),
        password_stdin: true,
    };
    // Seven characters (fourteen bytes) is too short; eight are enough.
    let err = run_user(add("alice"), &c, &mut passwords(&["ééééééé"])).unwrap_err();
    let text = err.to_string();
    assert!(
        text.contains("password too short: at least 8 characters"),
        "{text}"
    );
    assert!(text.contains("nothing was changed"), "{text}");
    assert_eq!(err.exit_code(), 2);
    assert!(!dir.path().join("usernames.db").exists());
    let listing = run_user(UserCommand::List, &c, &mut passwords(&[])).unwrap();
    assert!(listing.starts_with("no accounts"), "{listing}");

    run_user(add("alice"), &c, &mut passwords(&["éééééééé"])).unwrap();
    let before = std::fs::read(dir.path().join("usernames.db")).unwrap();
    let passwd = UserCommand::Passwd {
        name: "alice".into(),
        password_stdin: true,
    };
    let err = run_user(passwd, &c, &mut passwords(&["short"])).unwrap_err();
    assert!(
        err.to_string()
            .contains("password too short: at least 8 characters"),
        "{err}"
    );
    assert_eq!(
        std::fs::read(dir.path().join("usernames.db")).unwrap(),
        before,
        "the old password stays"
    );
}

#[test]
fn db_backup_refuses_a_postgresql_store_and_points_to_pg_dump() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = config(dir.path());
    // Never connected to: the refusal comes first.
    c.store = Some("postgres://gc@127.0.0.1:1/gc".into());
    let dest = dir.path().join("b");
    let e = admin::db(
        &DbCommand::Backup { dest: dest.clone() },
        &c,
        &mut Vec::new(),
    )
    .unwrap_err();
    let text = e.to_string();
    assert!(matches!(e, ServerError::Usage(_)), "{text}");
    assert!(text.contains("pg_dump"), "{text}");
    assert!(!dest.exists());
}
