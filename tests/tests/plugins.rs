//! Plugins loaded by a real server: the examples' hooks seen end to end, and broken plugins
//! refused or disabled while the server keeps working.

use std::path::Path;

use gc_protocol::{AuthServer, ErrorCode, SendReply, SendRequest};
use gc_tests::{PASSWORD, RawClient, TestServer, fixture_library, plugin_library};

fn install(mods: &Path, library: &Path, as_name: &str) {
    std::fs::create_dir_all(mods).unwrap();
    std::fs::copy(library, mods.join(as_name)).unwrap();
}

fn logged_in(server: &TestServer, user: &str) -> RawClient {
    let mut c = RawClient::new(server.target());
    assert_eq!(c.register(user, PASSWORD), AuthServer::Registered);
    assert!(matches!(c.login(user, PASSWORD), AuthServer::Ok { .. }));
    c
}

#[test]
fn word_filter_rewrites_what_is_stored_and_blocks_what_matches() {
    let mods = tempfile::tempdir().unwrap();
    install(
        mods.path(),
        &plugin_library("word_filter"),
        "libword_filter.so",
    );
    std::fs::write(
        mods.path().join("word-filter.txt"),
        "replace darn d**n\nblock (?i)buy now\n",
    )
    .unwrap();
    let server = TestServer::start_with(|c| c.mods_dir = Some(mods.path().to_owned()));
    let alice = logged_in(&server, "alice");
    assert!(matches!(
        alice.send("Darn, it works"),
        SendReply::Thx { id: 1, .. }
    ));
    match alice.send("BUY NOW, cheap") {
        SendReply::Err(e) => {
            assert_eq!(e.code, ErrorCode::Blocked);
            assert!(e.text.contains("blocked pattern"), "{}", e.text);
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(alice.receive(1)[0].body, "d**n, it works");
    let lines = server.stored_lines();
    assert_eq!(lines.len(), 1);
    assert!(lines[0].ends_with(";alice;d**n, it works"), "{}", lines[0]);
}

#[test]
fn greeter_logs_connects_and_disconnects() {
    gc_tests::capture_logs();
    let mods = tempfile::tempdir().unwrap();
    install(mods.path(), &plugin_library("greeter"), "libgreeter.so");
    let server = TestServer::start_with(|c| c.mods_dir = Some(mods.path().to_owned()));
    // The server runs the connect hook before it answers the login with `Ok`, and the
    // disconnect hook before it acknowledges `Bye`; the hook logs synchronously. So each line is
    // there as soon as the answer is.
    let c = logged_in(&server, "greetme");
    assert!(
        gc_tests::captured_logs().contains("welcome, greetme (from 127."),
        "no welcome line by the time the login was answered"
    );
    let bye = SendRequest::Bye {
        token: c.token.clone().unwrap(),
    };
    let reply = c.request(&[bye], 1);
    assert!(
        matches!(reply[..], [SendReply::Thx { id: 0, .. }]),
        "{reply:?}"
    );
    assert!(
        gc_tests::captured_logs().contains("goodbye, greetme"),
        "no goodbye line by the time Bye was acknowledged"
    );
}

#[test]
fn broken_plugins_are_refused_or_disabled_and_the_server_keeps_working() {
    gc_tests::capture_logs();
    let mods = tempfile::tempdir().unwrap();
    let m = mods.path();
    install(m, &fixture_library("bad_abi"), "a_bad_abi.so");
    install(m, &fixture_library("old_abi"), "a_old_abi.so");
    install(m, &fixture_library("no_symbols"), "b_no_symbols.so");
    std::fs::write(m.join("c_random.so"), b"this is not an ELF file at all").unwrap();
    install(m, &plugin_library("panicky"), "d_panicky.so");
    install(m, &fixture_library("bad_utf8"), "e_bad_utf8.so");
    install(m, &plugin_library("word_filter"), "f_word_filter.so");
    std::fs::write(m.join("word-filter.txt"), "replace bad good\n").unwrap();
    std::fs::write(m.join("notes.txt"), "not a library, ignored").unwrap();
    // A client plugin in the server's mods directory: it loads and does nothing there.
    install(m, Path::new(gc_mod_shout::LIBRARY), "g_shout.so");

    // `gc-server plugins list` explains each file.
    let mut config = gc_tests::test_config(Path::new("/nonexistent"));
    config.mods_dir = Some(m.to_owned());
    let mut out = Vec::new();
    gc_server::admin::plugins_list(&config, &mut out).unwrap();
    let listing = String::from_utf8(out).unwrap();
    let line = |file: &str| {
        listing
            .lines()
            .find(|l| l.contains(file))
            .unwrap_or_else(|| panic!("{file} not listed:\n{listing}"))
            .to_owned()
    };
    let abi = line("a_bad_abi.so");
    assert!(
        abi.starts_with("skip") && abi.contains("version 99") && abi.contains("version 2"),
        "{abi}"
    );
    // A plugin of the ABI before rooms reached the hooks: refused, with what to do.
    let old = line("a_old_abi.so");
    assert!(
        old.starts_with("skip") && old.contains("version 1,") && old.contains("rebuild"),
        "{old}"
    );
    assert!(
        line("b_no_symbols.so").contains("not a gc plugin"),
        "{listing}"
    );
    assert!(
        line("c_random.so").contains("not a loadable shared library"),
        "{listing}"
    );
    assert!(line("d_panicky.so").starts_with("load"), "{listing}");
    let filter = line("f_word_filter.so");
    assert!(
        filter.starts_with("load") && !filter.contains("does nothing"),
        "{listing}"
    );
    let shout = line("g_shout.so");
    assert!(
        shout.starts_with("load") && shout.contains("no server hooks: it does nothing"),
        "{shout}"
    );
    assert!(!listing.contains("notes.txt"));

    // The server starts with the good ones; the panicking and the non-UTF-8 hooks get their
    // plugins disabled on the first message, which still goes through the rest of the chain.
    let server = TestServer::start_with(|c| c.mods_dir = Some(m.to_owned()));
    let alice = logged_in(&server, "alice");
    assert!(matches!(alice.send("a bad day"), SendReply::Thx { .. }));
    assert!(matches!(
        alice.send("another bad one"),
        SendReply::Thx { .. }
    ));
    let got = alice.receive(2);
    assert_eq!(got[0].body, "a good day");
    assert_eq!(got[1].body, "another good one");
    let logs = gc_tests::captured_logs();
    assert!(
        logs.contains("plugin disabled: on_message_received: panicked: this fixture panics"),
        "{logs}"
    );
    assert!(
        logs.contains("returned text that is not valid UTF-8"),
        "{logs}"
    );
}

#[test]
fn client_plugins_rewrite_what_is_sent_and_what_is_shown() {
    use gc_client_core::{Client, ClientError, Event};
    let mods = tempfile::tempdir().unwrap();
    install(mods.path(), &plugin_library("emoji"), "libemoji.so");
    install(
        mods.path(),
        std::path::Path::new(gc_mod_shout::LIBRARY),
        "libshout.so",
    );
    let server = TestServer::start();
    let mut config = gc_tests::client::config(&server, "dora", PASSWORD);
    config.register = true;
    config.mods_dir = Some(mods.path().to_owned());
    let (client, events) = Client::start(config).unwrap();
    client.send("/shout hello there").unwrap();
    client.send("party :tada: time").unwrap();
    match client.send("/shout ") {
        Err(ClientError::Blocked { plugin, reason }) => {
            assert_eq!(plugin, "shout");
            assert!(reason.contains("something to shout"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    let mut shown = Vec::new();
    let deadline = std::time::Instant::now() + gc_tests::WAIT;
    while shown.len() < 2 {
        let left = deadline.saturating_duration_since(std::time::Instant::now());
        match events.recv_timeout(left) {
            Ok(Event::Records(records)) => shown.extend(records.into_iter().map(|r| r.body)),
            Ok(_) => {}
            Err(e) => panic!("no records ({e}); shown so far: {shown:?}"),
        }
    }
    // Shown: shouted (rewritten before sending) and with the emoji (rewritten for display).
    assert_eq!(shown, ["HELLO THERE!", "party 🎉 time"]);
    // Stored: the shout as sent, the shortcode as typed.
    let lines = server.stored_lines();
    assert!(lines[0].ends_with(";dora;HELLO THERE!"), "{lines:?}");
    assert!(lines[1].ends_with(";dora;party :tada: time"), "{lines:?}");
    client.close(true, Some(std::time::Duration::from_secs(5)));
}
