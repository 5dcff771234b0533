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
    // A plugin of the ABI before rooms reached the hooks (and before the static descriptor):
    // the file does not say which version it is, and listing runs no code to find out...
    let old = line("a_old_abi.so");
    assert!(old.starts_with("load?") && old.contains("rebuild"), "{old}");
    // ...unless asked to load it: refused, with what to do, as a start refuses it.
    let mut out = Vec::new();
    gc_server::admin::plugins_list_loading(&config, &mut out).unwrap();
    let loaded = String::from_utf8(out).unwrap();
    let old = loaded
        .lines()
        .find(|l| l.contains("a_old_abi.so"))
        .unwrap_or_else(|| panic!("a_old_abi.so not listed:\n{loaded}"));
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

// ───────────────────── hook time limits (issue #16) ─────────────────────

fn expect_blocked(reply: SendReply) -> String {
    match reply {
        SendReply::Err(e) if e.code == ErrorCode::Blocked => e.text,
        other => panic!("expected Err blocked, got {other:?}"),
    }
}

#[test]
fn a_hook_that_never_returns_is_given_up_and_the_session_goes_on() {
    gc_tests::capture_logs();
    let mods = tempfile::tempdir().unwrap();
    install(
        mods.path(),
        &fixture_library("slow_hooks"),
        "libslow_hooks.so",
    );
    let limit = std::time::Duration::from_millis(300);
    let server = TestServer::start_with(|c| {
        c.mods_dir = Some(mods.path().to_owned());
        c.plugin_hook_limit = limit;
    });
    let alice = logged_in(&server, "alice");
    // The hook hangs for an hour: the message it was checking is refused, promptly, saying why.
    let sent = std::time::Instant::now();
    let reason = expect_blocked(alice.send("please hang"));
    let waited = sent.elapsed();
    assert!(
        waited >= limit && waited < limit + std::time::Duration::from_secs(2),
        "answered after {waited:?}"
    );
    assert!(
        reason.contains("slow-hooks") && reason.contains("send it again"),
        "{reason}"
    );
    let logs = gc_tests::captured_logs();
    assert!(logs.contains("on_message_received hangs"), "{logs}");
    assert!(
        logs.contains("plugin disabled: on_message_received: did not return within 300 ms")
            && logs.contains("plugin=slow-hooks"),
        "{logs}"
    );
    // While the hook still hangs, the session's messages go through at once, without the
    // plugin (a "slow" message is no longer rewritten), and the refused one can be sent again.
    let sent = std::time::Instant::now();
    assert!(matches!(alice.send("hello again"), SendReply::Thx { .. }));
    assert!(matches!(alice.send("slow now"), SendReply::Thx { .. }));
    assert!(matches!(alice.send("please hang"), SendReply::Thx { .. }));
    assert!(
        sent.elapsed() < std::time::Duration::from_secs(1),
        "{:?}",
        sent.elapsed()
    );
    let bodies: Vec<_> = alice.receive(3).into_iter().map(|r| r.body).collect();
    assert_eq!(bodies, ["hello again", "slow now", "please hang"]);
    // Another session is not held either.
    let bob = logged_in(&server, "bob");
    assert!(matches!(bob.send("hi"), SendReply::Thx { .. }));
    // Stopping the server does not wait for the stuck hook beyond the limit.
    let mut server = server;
    let stopping = std::time::Instant::now();
    server.stop();
    assert!(
        stopping.elapsed() < limit + std::time::Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    assert!(
        gc_tests::captured_logs().contains(
            "plugin slow-hooks: 1 hook call(s) still running at the stop are left behind"
        ),
        "the stop does not account for the stuck hook"
    );
}

#[test]
fn slow_hooks_are_logged_and_three_in_a_minute_disable_the_plugin() {
    gc_tests::capture_logs();
    let mods = tempfile::tempdir().unwrap();
    install(
        mods.path(),
        &fixture_library("slow_hooks"),
        "libslow_hooks.so",
    );
    // The fixture's slow hook takes 150 ms: over the default 50 ms budget, within the limit.
    let server = TestServer::start_with(|c| c.mods_dir = Some(mods.path().to_owned()));
    let alice = logged_in(&server, "alice");
    for n in 1..=3 {
        assert!(matches!(
            alice.send(&format!("slow {n}")),
            SendReply::Thx { .. }
        ));
    }
    let logs = gc_tests::captured_logs();
    let overruns = logs
        .lines()
        .filter(|l| {
            l.contains("plugin slow-hooks: on_message_received took")
                && l.contains("over the 50 ms budget")
        })
        .count();
    assert_eq!(overruns, 3, "{logs}");
    assert!(
        logs.contains(
            "plugin disabled: on_message_received: ran over the 50 ms budget for a hook 3 times \
             within a minute"
        ),
        "{logs}"
    );
    // Disabled: the fourth is neither slowed nor rewritten.
    let sent = std::time::Instant::now();
    assert!(matches!(alice.send("slow 4"), SendReply::Thx { .. }));
    assert!(sent.elapsed() < std::time::Duration::from_millis(150));
    let bodies: Vec<_> = alice.receive(4).into_iter().map(|r| r.body).collect();
    // The three slow ones answered within the limit: their rewrites count.
    assert_eq!(
        bodies,
        [
            "slow 1 (slowly)",
            "slow 2 (slowly)",
            "slow 3 (slowly)",
            "slow 4"
        ]
    );
}

#[test]
fn a_disconnect_hook_that_hangs_does_not_hold_bye_or_the_stop() {
    gc_tests::capture_logs();
    let mods = tempfile::tempdir().unwrap();
    install(
        mods.path(),
        &fixture_library("stall_on_disconnect"),
        "libstall_on_disconnect.so",
    );
    let limit = std::time::Duration::from_millis(300);
    let mut server = TestServer::start_with(|c| {
        c.mods_dir = Some(mods.path().to_owned());
        c.plugin_hook_limit = limit;
    });
    let c = logged_in(&server, "leaver");
    let sent = std::time::Instant::now();
    let reply = c.request(
        &[SendRequest::Bye {
            token: c.token.clone().unwrap(),
        }],
        1,
    );
    assert!(
        matches!(reply[..], [SendReply::Thx { id: 0, .. }]),
        "{reply:?}"
    );
    assert!(
        sent.elapsed() < limit + std::time::Duration::from_secs(2),
        "{:?}",
        sent.elapsed()
    );
    // A second session, open when the server stops: its disconnect hook is not run (disabled).
    let _open = logged_in(&server, "stayer");
    let stopping = std::time::Instant::now();
    server.stop();
    assert!(
        stopping.elapsed() < limit + std::time::Duration::from_secs(5),
        "{:?}",
        stopping.elapsed()
    );
    assert!(
        gc_tests::captured_logs()
            .contains("plugin disabled: on_client_disconnect: did not return within 300 ms")
    );
}

// ───────────────────── listing and loading safely (issue #17) ─────────────────────

#[cfg(unix)]
fn chmod(path: &Path, mode: u32) {
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
}

fn listing(m: &Path) -> String {
    let mut config = gc_tests::test_config(Path::new("/nonexistent"));
    config.mods_dir = Some(m.to_owned());
    let mut out = Vec::new();
    gc_server::admin::plugins_list(&config, &mut out).unwrap();
    String::from_utf8(out).unwrap()
}

fn line_of(listing: &str, file: &str) -> String {
    listing
        .lines()
        .find(|l| l.contains(file))
        .unwrap_or_else(|| panic!("{file} not listed:\n{listing}"))
        .to_owned()
}

#[test]
fn listing_reads_plugins_from_their_files_without_running_them() {
    let mods = tempfile::tempdir().unwrap();
    let m = mods.path();
    install(m, &fixture_library("runs_on_load"), "librun.so");
    install(m, &fixture_library("slow_hooks"), "libslow.so");
    install(m, &plugin_library("word_filter"), "libword_filter.so");
    install(m, &fixture_library("old_abi"), "libold.so");
    let marker = m.join("librun.so.ran");

    let listing = listing(m);
    assert!(
        !marker.exists(),
        "listing ran the library's constructor:\n{listing}"
    );
    // Everything a start needs to know, from the ELF file: name, version, hooks.
    let run = line_of(&listing, "librun.so");
    assert!(
        run.starts_with("load  runs-on-load 2.3.4") && run.contains("hooks: on_client_connect"),
        "{run}"
    );
    let slow = line_of(&listing, "libslow.so");
    assert!(
        slow.starts_with("load  slow-hooks 0.0.1") && slow.contains("hooks: on_message_received"),
        "{slow}"
    );
    let filter = line_of(&listing, "libword_filter.so");
    assert!(
        filter.starts_with("load  word-filter ") && filter.contains("hooks: on_message_received"),
        "{filter}"
    );
    // A library built before the static descriptor cannot be read without running it: said so.
    let old = line_of(&listing, "libold.so");
    assert!(
        old.starts_with("load?") && old.contains("cannot be read without running its code"),
        "{old}"
    );

    // `--load` reads it by loading, and says that it did: the constructor ran.
    let mut config = gc_tests::test_config(Path::new("/nonexistent"));
    config.mods_dir = Some(m.to_owned());
    let mut out = Vec::new();
    gc_server::admin::plugins_list_loading(&config, &mut out).unwrap();
    let loaded = String::from_utf8(out).unwrap();
    assert!(
        loaded.lines().next().unwrap().contains("initialisers ran"),
        "{loaded}"
    );
    assert!(marker.exists(), "--load did not load");
    assert_eq!(
        line_of(&loaded, "librun.so"),
        run,
        "the file and the loaded library disagree"
    );
    assert_eq!(line_of(&loaded, "libslow.so"), slow);
    assert_eq!(line_of(&loaded, "libword_filter.so"), filter);
    let old = line_of(&loaded, "libold.so");
    assert!(
        old.starts_with("skip") && old.contains("version 1,"),
        "{old}"
    );
}

/// The `shout` example adds `/shout` through its command table (issue #18): a start runs it, and
/// a listing reads it from the file, as the loaded library says it, without running it.
#[test]
fn a_plugin_command_is_read_from_the_file_and_run_when_loaded() {
    let mods = tempfile::tempdir().unwrap();
    let m = mods.path();
    install(m, Path::new(gc_mod_shout::LIBRARY), "libshout.so");
    let client = gc_plugin::Plugins::listing(m, gc_plugin::Side::Client).unwrap();
    assert_eq!(client.len(), 1, "{client:?}");
    assert!(
        client[0].starts_with("load  shout 1.0.0")
            && client[0].contains("hooks: on_message_send, on_command; commands: /shout"),
        "{client:?}"
    );
    let loading = gc_plugin::Plugins::listing_loading(m, gc_plugin::Side::Client).unwrap();
    assert_eq!(
        loading[1], client[0],
        "the file and the loaded library disagree"
    );
    // The server has no commands: the plugin does nothing there.
    let server = listing(m);
    assert!(
        line_of(&server, "libshout.so").contains("no server hooks"),
        "{server}"
    );

    let (plugins, _) = gc_plugin::Plugins::load_dir(m);
    let commands = plugins.commands();
    assert_eq!(commands.len(), 1);
    assert_eq!(
        (commands[0].name.as_str(), commands[0].args.as_str()),
        ("shout", "TEXT")
    );
    assert_eq!(
        plugins.run_command("#general", "shout", "hello, wörld"),
        Some(gc_plugin::CommandOutcome::Send("HELLO, WöRLD!".into()))
    );
    match plugins.run_command("#general", "shout", "") {
        Some(gc_plugin::CommandOutcome::Failed { plugin, reason }) => {
            assert_eq!(plugin, "shout");
            assert!(reason.contains("something to shout"), "{reason}");
        }
        other => panic!("{other:?}"),
    }
    assert_eq!(plugins.run_command("#general", "whisper", "x"), None);
    assert!(plugins.disabled().is_empty());
}

#[test]
fn a_second_plugin_of_one_name_is_listed_as_skipped_as_a_start_skips_it() {
    gc_tests::capture_logs();
    let mods = tempfile::tempdir().unwrap();
    let m = mods.path();
    install(m, &plugin_library("greeter"), "a_greeter.so");
    install(m, &plugin_library("greeter"), "b_greeter_again.so");
    let listing = listing(m);
    assert!(
        line_of(&listing, "a_greeter.so").starts_with("load  greeter"),
        "{listing}"
    );
    let second = line_of(&listing, "b_greeter_again.so");
    assert!(
        second.starts_with("skip")
            && second.contains("a plugin named greeter is already loaded from")
            && second.contains("a_greeter.so"),
        "{second}"
    );
    let (plugins, report) = gc_plugin::Plugins::load_dir(m);
    assert_eq!(plugins.infos().len(), 1);
    let start = report[1].result.as_ref().unwrap_err().to_string();
    assert_eq!(second, format!("skip  {start}"));
}

#[cfg(unix)]
#[test]
fn writable_mods_and_links_out_of_the_directory_are_refused_by_listing_and_start() {
    gc_tests::capture_logs();
    let outside = tempfile::tempdir().unwrap();
    let elsewhere = outside.path().join("libelsewhere.so");
    std::fs::copy(plugin_library("greeter"), &elsewhere).unwrap();
    let mods = tempfile::tempdir().unwrap();
    let m = mods.path();
    install(m, &plugin_library("word_filter"), "a_word_filter.so");
    std::fs::write(m.join("word-filter.txt"), "replace bad good\n").unwrap();
    install(m, &fixture_library("runs_on_load"), "b_writable.so");
    chmod(&m.join("b_writable.so"), 0o666);
    std::os::unix::fs::symlink(&elsewhere, m.join("c_link_out.so")).unwrap();
    std::os::unix::fs::symlink(m.join("a_word_filter.so"), m.join("d_link_in.so")).unwrap();

    let listing = listing(m);
    let writable = line_of(&listing, "b_writable.so");
    assert!(
        writable.starts_with("skip")
            && writable.contains("writable by its group and by others (mode 0666)")
            && writable.contains("chmod go-w"),
        "{writable}"
    );
    let out = line_of(&listing, "c_link_out.so");
    assert!(
        out.starts_with("skip") && out.contains("outside the mods directory"),
        "{out}"
    );
    // A link inside is followed: the same plugin again, so skipped by name.
    assert!(
        line_of(&listing, "d_link_in.so").contains("already loaded from"),
        "{listing}"
    );
    assert!(
        line_of(&listing, "a_word_filter.so").starts_with("load"),
        "{listing}"
    );

    // The server starts with the one it may load, and says why not the others.
    let server = TestServer::start_with(|c| c.mods_dir = Some(m.to_owned()));
    let alice = logged_in(&server, "alice");
    assert!(matches!(alice.send("a bad day"), SendReply::Thx { .. }));
    assert_eq!(alice.receive(1)[0].body, "a good day");
    assert!(
        !m.join("b_writable.so.ran").exists(),
        "a writable library was loaded"
    );
    let logs = gc_tests::captured_logs();
    assert!(logs.contains("b_writable.so: refused"), "{logs}");
    assert!(logs.contains("c_link_out.so: refused"), "{logs}");
    drop(server);

    // A mods directory others may write is refused as a whole, by both.
    chmod(m, 0o777);
    let mut config = gc_tests::test_config(Path::new("/nonexistent"));
    config.mods_dir = Some(m.to_owned());
    let e = gc_server::admin::plugins_list(&config, &mut Vec::new()).unwrap_err();
    assert!(
        e.to_string()
            .contains("the mods directory is writable by its group and by others"),
        "{e}"
    );
    let (plugins, _) = gc_plugin::Plugins::load_dir(m);
    assert!(plugins.is_empty());
    chmod(m, 0o700);
}

/// A file offer passes `on_message_received` as the record it would become, before any byte:
/// a plugin refuses a file by its name, size or type as it refuses a message.
#[test]
fn a_plugin_refuses_a_file_before_its_bytes_are_sent() {
    let mods = tempfile::tempdir().unwrap();
    install(
        mods.path(),
        &plugin_library("word_filter"),
        "libword_filter.so",
    );
    std::fs::write(mods.path().join("word-filter.txt"), "block \\.exe \\(\n").unwrap();
    let server = TestServer::start_with(|c| c.mods_dir = Some(mods.path().to_owned()));
    let mut alice = RawClient::new(server.target());
    alice.speak_gc5();
    assert_eq!(alice.register("alice", PASSWORD), AuthServer::Registered);
    assert!(matches!(
        alice.login("alice", PASSWORD),
        AuthServer::Ok { .. }
    ));
    let offer = |name: &str, id: &str| SendRequest::Offer {
        token: alice.token.clone().unwrap(),
        room: gc_protocol::Room::general(),
        hash: gc_protocol::ContentHash::of(b"MZ"),
        size: 2,
        name: name.into(),
        client_msg_id: gc_protocol::ClientMsgId::new(id).unwrap(),
    };
    match &alice.request(&[offer("setup.exe", "f1")], 1)[0] {
        SendReply::Err(e) => {
            assert_eq!(e.code, ErrorCode::Blocked);
            assert!(e.text.contains("blocked pattern"), "{}", e.text);
        }
        other => panic!("{other:?}"),
    }
    assert!(matches!(
        alice.request(&[offer("notes.txt", "f2")], 1)[0],
        SendReply::Resume { offset: 0, .. }
    ));
}
