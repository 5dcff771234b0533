//! Malformed input, error texts and round-trip properties across all frames. The byte-exact
//! tests of each port are at the bottom of its file; the helpers they share are here.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;

use super::error::thousands;
use super::*;
use crate::codes::{ErrorCode, SessionLevel};
use crate::error::FieldError;
use crate::limits::{
    MAX_BATCH_RECORDS, MAX_FRAME_BYTES, MAX_HISTORY_LIMIT, MAX_MUTE_SECONDS, MAX_REASON_BYTES,
    MAX_SCRAM_ITERATIONS, MAX_SCRAM_SALT_BYTES, MAX_TOPIC_BYTES, MIN_SCRAM_SALT_BYTES,
    SCRAM_KEY_BYTES,
};
use crate::types::{
    ClientMsgId, Fingerprint, ListedKind, ListedRole, Record, Room, RoomKind, RoomRole,
    SessionToken, Timestamp, Username, Visibility,
};
use proptest::prelude::*;

pub(super) const TOKEN: &str = "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef";

pub(super) fn tok() -> SessionToken {
    SessionToken::new(TOKEN).unwrap()
}

pub(super) fn user(name: &str) -> Username {
    Username::new(name).unwrap()
}

pub(super) fn room(name: &str) -> Room {
    Room::new(name).unwrap()
}

pub(super) fn ts(text: &str) -> Timestamp {
    Timestamp::parse(text).unwrap()
}

/// Encodes `frame`, compares with `wire` byte for byte, and parses it back.
pub(super) fn exact<F: Frame + PartialEq + std::fmt::Debug>(frame: F, wire: &str) {
    let bytes = frame.to_bytes();
    assert_eq!(String::from_utf8_lossy(&bytes), wire);
    let line = wire.strip_suffix('\n').expect("wire form ends with LF");
    assert_eq!(F::parse(line.as_bytes()).unwrap(), frame);
}

pub(super) fn rec(id: u64, t: &str, u: &str, body: &str) -> Record {
    Record {
        room: crate::types::Room::general(),
        id,
        timestamp: ts(t),
        username: user(u),
        body: body.to_owned(),
    }
}

fn malformed<F: Frame + std::fmt::Debug>(line: &[u8]) -> ParseError {
    match F::parse(line) {
        Ok(f) => panic!("{:?} parsed as {f:?}", String::from_utf8_lossy(line)),
        Err(e) => e,
    }
}

#[test]
fn rejects_structural_faults() {
    assert_eq!(malformed::<ConnectPing>(b""), ParseError::Empty);
    assert_eq!(
        malformed::<ConnectPing>(b"Ping GC/1\r"),
        ParseError::CarriageReturn
    );
    assert_eq!(
        malformed::<ConnectPing>(b"Ping\nGC/1"),
        ParseError::LineFeed
    );
    assert_eq!(malformed::<ConnectPing>(b"Ping \xff"), ParseError::NotUtf8);
    for bad in [&b"Ping  GC/1"[..], b" Ping GC/1", b"Ping GC/1 ", b" "] {
        assert_eq!(
            malformed::<ConnectPing>(bad),
            ParseError::EmptyField,
            "{bad:?}"
        );
    }
    let long = vec![b'A'; MAX_FRAME_BYTES];
    assert_eq!(malformed::<ConnectPing>(&long), ParseError::TooLong);
    assert_eq!(ParseError::TooLong.code(), ErrorCode::TooLong);
    assert_eq!(ParseError::Empty.code(), ErrorCode::Malformed);
}

#[test]
fn rejects_wrong_tokens() {
    assert!(matches!(
        malformed::<ConnectPing>(b"ping GC/1"),
        ParseError::UnexpectedToken { .. }
    ));
    assert!(matches!(
        malformed::<SendRequest>(b"Pong 1 2"),
        ParseError::UnexpectedToken { .. }
    ));
    // The token in the error is shortened and escaped.
    let long_token = format!("X{}", "\u{7}".repeat(100));
    match malformed::<SendRequest>(long_token.as_bytes()) {
        ParseError::UnexpectedToken { got, .. } => {
            assert!(got.len() < 100 && got.contains("\\u{7}"), "{got}");
        }
        other => panic!("{other:?}"),
    }
}

#[test]
fn rejects_missing_and_extra_fields() {
    for (line, expected, got) in [
        ("Ping".to_owned(), 1, 0),
        ("Thx 1".to_owned(), 2, 1),
        ("End x".to_owned(), 0, 1),
    ] {
        let err = if line.starts_with("Ping") {
            malformed::<ConnectPing>(line.as_bytes())
        } else {
            malformed::<SendReply>(line.as_bytes())
        };
        assert!(
            matches!(err, ParseError::Arity { expected: e, got: g, .. } if e == expected && g == got),
            "{line}: {err:?}"
        );
    }
    assert!(matches!(
        malformed::<SendReply>(b"Online"),
        ParseError::MissingField { .. }
    ));
    // A frame with an optional last field says how many it takes.
    for (line, min, max, got) in [
        (format!("Msg {TOKEN} id"), 3, 4, 2),
        (format!("Msg {TOKEN} id IGJG #dev extra"), 3, 4, 5),
    ] {
        let err = malformed::<SendRequest>(line.as_bytes());
        assert!(
            matches!(err, ParseError::ArityRange { min: a, max: b, got: g, .. } if (a, b, g) == (min, max, got)),
            "{line}: {err:?}"
        );
    }
}

#[test]
fn optional_room_fields_have_arity_texts() {
    let text = |line: String| malformed::<SendRequest>(line.as_bytes()).to_string();
    assert_eq!(
        text(format!("Msg {TOKEN} id")),
        "`Msg` takes 3 to 4 field(s) after the token, got 2"
    );
    assert_eq!(
        text(format!("Msg {TOKEN} id IGJG #dev extra")),
        "`Msg` takes 3 to 4 field(s) after the token, got 5"
    );
    assert_eq!(
        text(format!("History {TOKEN} 0")),
        "`History` takes 3 to 4 field(s) after the token, got 2"
    );
    assert_eq!(
        text(format!("History {TOKEN} 0 10 #dev x")),
        "`History` takes 3 to 4 field(s) after the token, got 5"
    );
    assert_eq!(
        text("Who".to_owned()),
        "`Who` takes 1 to 2 field(s) after the token, got 0"
    );
    assert_eq!(
        text(format!("Who {TOKEN} #dev x")),
        "`Who` takes 1 to 2 field(s) after the token, got 3"
    );
    // The room requests take exact counts.
    assert_eq!(
        text(format!("Join {TOKEN}")),
        "`Join` takes 2 field(s) after the token, got 1"
    );
    assert_eq!(
        text(format!("Mute {TOKEN} #dev bob 60")),
        "`Mute` takes 5 field(s) after the token, got 4"
    );
    assert_eq!(
        text(format!("Rooms {TOKEN} #dev")),
        "`Rooms` takes 1 field(s) after the token, got 2"
    );
    assert_eq!(
        malformed::<SendReply>(b"Room #dev public owner 1").to_string(),
        "`Room` takes 5 field(s) after the token, got 4"
    );
}

#[test]
fn room_fields_name_the_broken_rule() {
    let request = |line: String| malformed::<SendRequest>(line.as_bytes()).to_string();
    let not_a_room = FieldError::Room.to_string();
    for (token, line) in [
        ("Msg", format!("Msg {TOKEN} id IGJG extra")),
        ("Msg", format!("Msg {TOKEN} id IGJG #Dev")),
        ("History", format!("History {TOKEN} 0 10 dev")),
        ("Who", format!("Who {TOKEN} #a/b")),
        ("Create", format!("Create {TOKEN} general public -")),
        ("Join", format!("Join {TOKEN} #")),
        ("Part", format!("Part {TOKEN} @alice")),
        ("Invite", format!("Invite {TOKEN} #a;b bob")),
        ("Topic", format!("Topic {TOKEN} #{} -", "a".repeat(33))),
        ("Privacy", format!("Privacy {TOKEN} #é public")),
        ("Role", format!("Role {TOKEN} @bob+alice bob owner")),
        ("Kick", format!("Kick {TOKEN} @alice+alice bob -")),
        ("Mute", format!("Mute {TOKEN} @Alice+bob bob 1 -")),
        ("Ban", format!("Ban {TOKEN} - bob -")),
        ("Unban", format!("Unban {TOKEN} #a+b bob")),
    ] {
        assert_eq!(
            request(line),
            format!("`{token}` field <room>: {not_a_room}")
        );
    }
    assert_eq!(
        malformed::<SendReply>(b"Room dev public owner 1 -").to_string(),
        format!("`Room` field <room>: {not_a_room}")
    );

    // The enumerated fields.
    assert_eq!(
        request(format!("Create {TOKEN} #dev Public -")),
        "`Create` field <visibility>: not public or private"
    );
    assert_eq!(
        request(format!("Privacy {TOKEN} #dev secret")),
        "`Privacy` field <visibility>: not public or private"
    );
    assert_eq!(
        request(format!("Role {TOKEN} #dev bob admin")),
        "`Role` field <role>: not a room role (member, moderator or owner)"
    );
    assert_eq!(
        request(format!("Role {TOKEN} #dev bob invited")),
        "`Role` field <role>: not a room role (member, moderator or owner)"
    );
    assert_eq!(
        request(format!("Invite {TOKEN} #dev a;b")),
        format!("`Invite` field <username>: {}", FieldError::Username)
    );
    assert_eq!(
        request(format!("Mute {TOKEN} #dev bob -1 -")),
        format!("`Mute` field <seconds>: {}", FieldError::Number)
    );
    let reply = |line: &str| malformed::<SendReply>(line.as_bytes()).to_string();
    assert_eq!(
        reply("Room #dev room owner 1 -"),
        "`Room` field <kind>: not a kind of room (public, private or direct)"
    );
    assert_eq!(
        reply("Room #dev public banned 1 -"),
        "`Room` field <role>: not a role in a room listing (owner, moderator, member, invited or -)"
    );
    assert_eq!(
        reply("Room #dev public owner 01 -"),
        format!("`Room` field <members>: {}", FieldError::Number)
    );
    // The kind agrees with the name.
    let kind = "`Room` field <kind>: must be direct for a direct conversation (@...), public or \
                private for a room (#...)";
    assert_eq!(reply("Room #dev direct member 1 -"), kind);
    assert_eq!(reply("Room @alice+bob public member 2 -"), kind);

    // Text fields: valid c16 of UTF-8.
    assert!(matches!(
        malformed::<SendRequest>(format!("Topic {TOKEN} #dev PP").as_bytes()),
        ParseError::TextNotUtf8 { field: "topic", .. }
    ));
    assert!(matches!(
        malformed::<SendRequest>(format!("Kick {TOKEN} #dev bob IGJ").as_bytes()),
        ParseError::C16 {
            field: "reason",
            ..
        }
    ));
}

fn topic_of(bytes: usize) -> String {
    c16::encode(&vec![b'a'; bytes])
}

/// The text a peer reads for each room limit broken just past its edge: the topic of `Create`,
/// `Topic` and `Room`, the reason of `Kick`, `Mute` and `Ban`, and the seconds of a `Mute`.
fn room_limit_errors() -> Vec<String> {
    let request = |line: String| malformed::<SendRequest>(line.as_bytes()).to_string();
    let topic = topic_of(MAX_TOPIC_BYTES + 1);
    let reason = topic_of(MAX_REASON_BYTES + 1);
    vec![
        request(format!("Create {TOKEN} #dev public {topic}")),
        request(format!("Topic {TOKEN} #dev {topic}")),
        malformed::<SendReply>(format!("Room #dev public owner 1 {topic}").as_bytes()).to_string(),
        request(format!("Kick {TOKEN} #dev bob {reason}")),
        request(format!("Mute {TOKEN} #dev bob 1 {reason}")),
        request(format!("Ban {TOKEN} #dev bob {reason}")),
        request(format!("Mute {TOKEN} #dev bob {} -", MAX_MUTE_SECONDS + 1)),
        // Beyond u32 too: still the limit's text, not the number rule's.
        request(format!("Mute {TOKEN} #dev bob {} -", u64::MAX)),
    ]
}

#[test]
fn room_limits_are_their_constants() {
    // The edges parse: topics and reasons counted in bytes, not characters.
    let topic = topic_of(MAX_TOPIC_BYTES);
    let wide = c16::encode("é".repeat(MAX_TOPIC_BYTES / 2).as_bytes());
    let reason = topic_of(MAX_REASON_BYTES);
    for line in [
        format!("Create {TOKEN} #dev public {topic}"),
        format!("Topic {TOKEN} #dev {wide}"),
        format!("Kick {TOKEN} #dev bob {reason}"),
        format!("Mute {TOKEN} #dev bob {MAX_MUTE_SECONDS} {reason}"),
        format!("Ban {TOKEN} #dev bob {reason}"),
    ] {
        SendRequest::parse(line.as_bytes()).unwrap();
    }
    SendReply::parse(format!("Room #dev public owner 1 {topic}").as_bytes()).unwrap();
    let wider = c16::encode("é".repeat(MAX_TOPIC_BYTES / 2 + 1).as_bytes());
    assert_eq!(
        malformed::<SendRequest>(format!("Topic {TOKEN} #dev {wider}").as_bytes()).to_string(),
        format!("`Topic` field <topic>: must be at most {MAX_TOPIC_BYTES} bytes")
    );

    let topic =
        |token: &str| format!("`{token}` field <topic>: must be at most {MAX_TOPIC_BYTES} bytes");
    let reason =
        |token: &str| format!("`{token}` field <reason>: must be at most {MAX_REASON_BYTES} bytes");
    let seconds = format!(
        "`Mute` field <seconds>: must be at most {} seconds",
        thousands(MAX_MUTE_SECONDS.into())
    );
    assert_eq!(
        room_limit_errors(),
        [
            topic("Create"),
            topic("Topic"),
            topic("Room"),
            reason("Kick"),
            reason("Mute"),
            reason("Ban"),
            seconds.clone(),
            seconds,
        ]
    );
    // As the peer reads them.
    assert_eq!(
        room_limit_errors(),
        [
            "`Create` field <topic>: must be at most 512 bytes",
            "`Topic` field <topic>: must be at most 512 bytes",
            "`Room` field <topic>: must be at most 512 bytes",
            "`Kick` field <reason>: must be at most 512 bytes",
            "`Mute` field <reason>: must be at most 512 bytes",
            "`Ban` field <reason>: must be at most 512 bytes",
            "`Mute` field <seconds>: must be at most 31,536,000 seconds",
            "`Mute` field <seconds>: must be at most 31,536,000 seconds",
        ]
    );
}

#[test]
fn rejects_bad_field_values() {
    let field = |line: String| malformed::<SendRequest>(line.as_bytes());
    assert!(matches!(
        field(format!("Msg {} id IGJG", &TOKEN[1..])),
        ParseError::Field {
            error: FieldError::SessionToken,
            ..
        }
    ));
    assert!(matches!(
        field(format!("Msg {} id IGJG", TOKEN.to_uppercase())),
        ParseError::Field {
            error: FieldError::SessionToken,
            ..
        }
    ));
    assert!(matches!(
        field(format!("Msg {TOKEN} a.b IGJG")),
        ParseError::Field {
            error: FieldError::ClientMsgId,
            ..
        }
    ));
    assert!(matches!(
        field(format!("Msg {TOKEN} id IGJ")),
        ParseError::C16 { .. }
    ));
    assert!(matches!(
        field(format!("Msg {TOKEN} id igjg")),
        ParseError::C16 { .. }
    ));
    assert!(matches!(
        field(format!("History {TOKEN} 01 10")),
        ParseError::Field {
            error: FieldError::Number,
            ..
        }
    ));
    assert!(matches!(
        field(format!("History {TOKEN} -1 10")),
        ParseError::Field {
            error: FieldError::Number,
            ..
        }
    ));
    assert!(matches!(
        field(format!("History {TOKEN} 0 1001")),
        ParseError::Value { field: "limit", .. }
    ));
    let parse = |line: &str| AuthClient::parse(line.as_bytes());
    assert!(matches!(
        parse("AuthRequest alice 0 8070 6090 YQ=="),
        Err(ParseError::Field {
            error: FieldError::Port,
            ..
        })
    ));
    assert!(matches!(
        parse("AuthRequest al;ice 1 2 3 YQ=="),
        Err(ParseError::Field {
            error: FieldError::Username,
            ..
        })
    ));
    assert!(matches!(
        parse("AuthRequest alice 1 2 3 YQ"),
        Err(ParseError::Base64 { .. })
    ));
    assert!(matches!(
        parse("AuthRequest alice 1 2 3 /w=="),
        Err(ParseError::TextNotUtf8 { .. })
    ));
    assert!(matches!(
        parse(
            "Register bob AAAA 4096 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE= AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="
        ),
        Err(ParseError::Value { field: "salt", .. })
    ));
    assert!(matches!(
        parse("Register bob AAAAAAAAAAA= 4096 AQEB AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI="),
        Err(ParseError::Value {
            field: "stored-key",
            ..
        })
    ));
    assert!(matches!(
        DeliveryFrame::parse(format!("Batch {TOKEN} 0").as_bytes()),
        Err(ParseError::Value { field: "n", .. })
    ));
    assert!(matches!(
        DeliveryFrame::parse(format!("Batch {TOKEN} 1001").as_bytes()),
        Err(ParseError::Value { field: "n", .. })
    ));
    assert!(matches!(
        DeliveryFrame::parse(b"Rec 1 1.1234567 bob IH"),
        Err(ParseError::Field {
            error: FieldError::Timestamp,
            ..
        })
    ));
    assert!(matches!(
        DeliveryFrame::parse(b"Rec 1 1 bob PP"),
        Err(ParseError::TextNotUtf8 { .. })
    ));
    assert!(matches!(
        ErrorFrame::parse(b"Err nope -"),
        Err(ParseError::Value { field: "code", .. })
    ));
    assert!(matches!(
        ConnectReply::parse(b"Pong GC/1 - maybe"),
        Err(ParseError::Value {
            field: "registration",
            ..
        })
    ));
    assert!(matches!(
        ConnectPing::parse(b"Ping GC/1\x01"),
        Err(ParseError::Value {
            field: "version",
            ..
        })
    ));
}

#[test]
fn error_messages_say_which_rule() {
    let err = SendRequest::parse(format!("History {TOKEN} 0 5000").as_bytes()).unwrap_err();
    assert_eq!(
        err.to_string(),
        "`History` field <limit>: must be at most 1000"
    );
    let err = SendRequest::parse(format!("Msg {TOKEN} id IGJ").as_bytes()).unwrap_err();
    assert!(err.to_string().contains("<body>"), "{err}");
    let err = DeliveryFrame::parse(b"Rec 4 3 carol IH #Dev").unwrap_err();
    assert!(
        err.to_string()
            .starts_with("`Rec` field <room>: not a room name"),
        "{err}"
    );
    let err = DeliveryFrame::parse(b"Rec 4 3 carol IH #dev x").unwrap_err();
    assert_eq!(
        err.to_string(),
        "`Rec` takes 4 to 5 field(s) after the token, got 6"
    );
}

fn history(limit: u32) -> Vec<u8> {
    format!("History {TOKEN} 0 {limit}").into_bytes()
}

fn batch(n: usize) -> Vec<u8> {
    format!("Batch {TOKEN} {n}").into_bytes()
}

/// A `Register` line, valid but for the sizes given.
fn register(salt: usize, iterations: u32, stored_key: usize, server_key: usize) -> Vec<u8> {
    format!(
        "Register bob {} {iterations} {} {}",
        B64.encode(vec![0; salt]),
        B64.encode(vec![1; stored_key]),
        B64.encode(vec![2; server_key]),
    )
    .into_bytes()
}

/// The text a peer reads for each limit broken just past its edge: `History` limit, `Batch` size
/// (too big, zero), `Register` salt (short, long), iterations (too many, zero), stored-key,
/// server-key.
fn limit_errors() -> Vec<String> {
    let (salt, iterations, key) = (MIN_SCRAM_SALT_BYTES, MAX_SCRAM_ITERATIONS, SCRAM_KEY_BYTES);
    let auth = |line: Vec<u8>| malformed::<AuthClient>(&line).to_string();
    let delivery = |line: Vec<u8>| malformed::<DeliveryFrame>(&line).to_string();
    vec![
        malformed::<SendRequest>(&history(MAX_HISTORY_LIMIT + 1)).to_string(),
        delivery(batch(MAX_BATCH_RECORDS + 1)),
        delivery(batch(0)),
        auth(register(salt - 1, iterations, key, key)),
        auth(register(MAX_SCRAM_SALT_BYTES + 1, iterations, key, key)),
        auth(register(salt, iterations + 1, key, key)),
        auth(register(salt, 0, key, key)),
        auth(register(salt, iterations, key - 1, key)),
        auth(register(salt, iterations, key, key + 1)),
    ]
}

#[test]
fn limit_texts_follow_their_constants() {
    // The edges themselves parse, so the numbers in each text are the bounds its check uses.
    let key = SCRAM_KEY_BYTES;
    SendRequest::parse(&history(MAX_HISTORY_LIMIT)).unwrap();
    DeliveryFrame::parse(&batch(1)).unwrap();
    DeliveryFrame::parse(&batch(MAX_BATCH_RECORDS)).unwrap();
    for salt in [MIN_SCRAM_SALT_BYTES, MAX_SCRAM_SALT_BYTES] {
        for iterations in [1, MAX_SCRAM_ITERATIONS] {
            AuthClient::parse(&register(salt, iterations, key, key)).unwrap();
        }
    }

    let batch = format!("`Batch` field <n>: must be 1 to {MAX_BATCH_RECORDS}");
    let salt = format!(
        "`Register` field <salt>: must be {MIN_SCRAM_SALT_BYTES} to {MAX_SCRAM_SALT_BYTES} bytes"
    );
    let iterations = format!(
        "`Register` field <iterations>: must be 1 to {}",
        thousands(MAX_SCRAM_ITERATIONS.into())
    );
    assert_eq!(
        limit_errors(),
        [
            format!("`History` field <limit>: must be at most {MAX_HISTORY_LIMIT}"),
            batch.clone(),
            batch,
            salt.clone(),
            salt,
            iterations.clone(),
            iterations,
            format!("`Register` field <stored-key>: must be {SCRAM_KEY_BYTES} bytes (SHA-256)"),
            format!("`Register` field <server-key>: must be {SCRAM_KEY_BYTES} bytes (SHA-256)"),
        ]
    );
}

#[test]
fn limit_texts_are_unchanged_on_the_wire() {
    // Clients and tests match these texts: building them from the constants must not move a byte.
    assert_eq!(
        limit_errors(),
        [
            "`History` field <limit>: must be at most 1000",
            "`Batch` field <n>: must be 1 to 1000",
            "`Batch` field <n>: must be 1 to 1000",
            "`Register` field <salt>: must be 8 to 64 bytes",
            "`Register` field <salt>: must be 8 to 64 bytes",
            "`Register` field <iterations>: must be 1 to 10,000,000",
            "`Register` field <iterations>: must be 1 to 10,000,000",
            "`Register` field <stored-key>: must be 32 bytes (SHA-256)",
            "`Register` field <server-key>: must be 32 bytes (SHA-256)",
        ]
    );
}

// ───────────── properties ─────────────

fn arb_username() -> impl Strategy<Value = Username> {
    "[A-Za-z0-9_.-]{1,32}".prop_map(|s| Username::new(s).unwrap())
}

fn arb_timestamp() -> impl Strategy<Value = Timestamp> {
    (0u64..=4_000_000_000_000_000).prop_map(Timestamp::from_micros)
}

fn arb_token() -> impl Strategy<Value = SessionToken> {
    "[0-9a-f]{64}".prop_map(|s| SessionToken::new(s).unwrap())
}

fn arb_room() -> impl Strategy<Value = Room> {
    prop_oneof![
        "#[a-z0-9_.-]{1,32}".prop_map(|s| Room::new(s).unwrap()),
        (arb_username(), arb_username())
            .prop_filter_map("two accounts", |(a, b)| Room::direct(&a, &b).ok()),
    ]
}

fn arb_record() -> impl Strategy<Value = Record> {
    (any::<u64>(), arb_timestamp(), arb_username(), ".{0,200}").prop_map(
        |(id, timestamp, username, body)| Record {
            room: crate::types::Room::general(),
            id,
            timestamp,
            username,
            body,
        },
    )
}

fn round_trip<F: Frame + PartialEq + std::fmt::Debug>(frame: F) -> Result<(), TestCaseError> {
    let bytes = frame.to_bytes();
    prop_assert_eq!(bytes.last(), Some(&b'\n'));
    prop_assert!(!bytes[..bytes.len() - 1].contains(&b'\n'));
    prop_assert!(!bytes.contains(&b'\r'));
    prop_assert_eq!(F::parse(&bytes[..bytes.len() - 1]).unwrap(), frame);
    Ok(())
}

proptest! {
    #[test]
    fn send_requests_round_trip(
        token in arb_token(),
        cmid in "[A-Za-z0-9_-]{1,32}",
        body in proptest::collection::vec(any::<u8>(), 0..300),
        before_id in any::<u64>(),
        limit in 0u32..=1000,
        room in proptest::option::of(arb_room()),
    ) {
        round_trip(SendRequest::Msg {
            token: token.clone(),
            client_msg_id: ClientMsgId::new(cmid).unwrap(),
            body,
            room: room.clone(),
        })?;
        round_trip(SendRequest::History { token: token.clone(), before_id, limit, room: room.clone() })?;
        round_trip(SendRequest::Who { token: token.clone(), room })?;
        round_trip(SendRequest::Bye { token })?;
    }

    #[test]
    fn room_requests_round_trip(
        token in arb_token(),
        room in arb_room(),
        username in arb_username(),
        public in any::<bool>(),
        role in prop::sample::select(vec![RoomRole::Member, RoomRole::Moderator, RoomRole::Owner]),
        text in ".{0,128}",
        seconds in 0..=MAX_MUTE_SECONDS,
    ) {
        let visibility = if public { Visibility::Public } else { Visibility::Private };
        let (t, r, u) = (token, room, username);
        round_trip(SendRequest::Rooms { token: t.clone() })?;
        round_trip(SendRequest::Create { token: t.clone(), room: r.clone(), visibility, topic: text.clone() })?;
        round_trip(SendRequest::Join { token: t.clone(), room: r.clone() })?;
        round_trip(SendRequest::Part { token: t.clone(), room: r.clone() })?;
        round_trip(SendRequest::Invite { token: t.clone(), room: r.clone(), username: u.clone() })?;
        round_trip(SendRequest::Topic { token: t.clone(), room: r.clone(), topic: text.clone() })?;
        round_trip(SendRequest::Privacy { token: t.clone(), room: r.clone(), visibility })?;
        round_trip(SendRequest::Role { token: t.clone(), room: r.clone(), username: u.clone(), role })?;
        round_trip(SendRequest::Kick { token: t.clone(), room: r.clone(), username: u.clone(), reason: text.clone() })?;
        round_trip(SendRequest::Mute { token: t.clone(), room: r.clone(), username: u.clone(), seconds, reason: text.clone() })?;
        round_trip(SendRequest::Ban { token: t.clone(), room: r.clone(), username: u.clone(), reason: text })?;
        round_trip(SendRequest::Unban { token: t, room: r, username: u })?;
    }

    #[test]
    fn room_listings_round_trip(
        room in arb_room(),
        public in any::<bool>(),
        role in prop::sample::select(vec![ListedRole::Owner, ListedRole::Moderator, ListedRole::Member,
            ListedRole::Invited, ListedRole::Outside]),
        members in any::<u32>(),
        topic in ".{0,128}",
    ) {
        let kind = match (room.kind(), public) {
            (RoomKind::Direct, _) => ListedKind::Direct,
            (RoomKind::Room, true) => ListedKind::Public,
            (RoomKind::Room, false) => ListedKind::Private,
        };
        round_trip(SendReply::Room { room, kind, role, members, topic })?;
    }

    #[test]
    fn replies_round_trip(
        record in arb_record(),
        id in any::<u64>(),
        timestamp in arb_timestamp(),
        users in proptest::collection::vec(arb_username(), 0..20),
        pv in any::<u64>(),
        text in ".{0,100}",
        code in 0usize..16,
    ) {
        round_trip(SendReply::Rec(record.clone()))?;
        round_trip(DeliveryFrame::Rec(record))?;
        round_trip(SendReply::Thx { id, timestamp })?;
        round_trip(SendReply::Online { presence_version: pv, users })?;
        round_trip(SendReply::Err(ErrorFrame::new(ErrorCode::ALL[code], text)))?;
    }

    #[test]
    fn auth_and_heartbeat_round_trip(
        username in arb_username(),
        ports in (1u16.., 1u16.., 1u16..),
        scram in "[ -~]{1,300}",
        token in arb_token(),
        t in arb_timestamp(),
        n in any::<u64>(),
        ms in any::<u32>(),
        salt in proptest::collection::vec(any::<u8>(), 8..=64),
        iterations in 1u32..=10_000_000,
        certificate in proptest::option::of(proptest::collection::vec(any::<u8>(), 1..64)),
        level in prop_oneof![Just(SessionLevel::Base), Just(SessionLevel::Rooms), Just(SessionLevel::Gc4), Just(SessionLevel::Gc5)],
    ) {
        let ports = CallbackPorts { auth: ports.0, heartbeat: ports.1, delivery: ports.2 };
        let callback_fingerprint = certificate.map(|der| Fingerprint::of_der(&der));
        round_trip(AuthClient::AuthRequest { username: username.clone(), ports, client_first: scram.clone(), callback_fingerprint, level })?;
        round_trip(AuthClient::Proof { client_final: scram.clone() })?;
        round_trip(AuthClient::Register {
            username, salt, iterations, stored_key: vec![7; 32], server_key: vec![9; 32],
        })?;
        round_trip(AuthServer::Auth1 { server_first: scram.clone() })?;
        round_trip(AuthServer::Ok { heartbeat_ms: ms, latest_id: n })?;
        round_trip(Authed { server_final: scram, token: token.clone() })?;
        round_trip(HeartbeatPing { token, server_time: t, presence_version: n })?;
        round_trip(HeartbeatReply::Pong { last_id: n, client_time: t })?;
        round_trip(DeliveryReply::Thx { last_id: n })?;
    }

    #[test]
    fn parsing_arbitrary_bytes_never_panics(line in proptest::collection::vec(any::<u8>(), 0..200)) {
        let _ = ConnectPing::parse(&line);
        let _ = ConnectReply::parse(&line);
        let _ = AuthClient::parse(&line);
        let _ = AuthServer::parse(&line);
        let _ = Authed::parse(&line);
        let _ = CallbackReply::parse(&line);
        let _ = HeartbeatPing::parse(&line);
        let _ = HeartbeatReply::parse(&line);
        let _ = DeliveryFrame::parse(&line);
        let _ = DeliveryReply::parse(&line);
        let _ = SendRequest::parse(&line);
        let _ = SendReply::parse(&line);
    }

    #[test]
    fn parsing_room_frames_with_plausible_fields_never_panics(
        token in prop::sample::select(vec!["Msg", "History", "Who", "Rooms", "Create", "Join",
            "Part", "Invite", "Topic", "Privacy", "Role", "Kick", "Mute", "Ban", "Unban"]),
        fields in proptest::collection::vec(
            prop_oneof![
                "[ -~]{0,12}",
                "#[a-z.]{1,4}",
                "@[a-c]{1,2}\\+[b-d]{1,2}",
                "[A-P]{1,8}",
                "[0-9]{1,11}",
                prop::sample::select(vec!["-", "public", "private", "direct", "owner",
                    "moderator", "member", "invited", "GC/3"]).prop_map(str::to_owned),
            ],
            0..7,
        ),
    ) {
        // A valid session token first, so the fields after it are reached.
        let fields = fields.join(" ");
        let _ = SendRequest::parse(format!("{token} {TOKEN} {fields}").as_bytes());
        let _ = SendReply::parse(format!("Room {fields}").as_bytes());
        let _ = SendReply::parse(format!("Room #dev {fields}").as_bytes());
    }

    #[test]
    fn parsing_token_shaped_lines_never_panics(
        token in prop::sample::select(vec!["Ping", "Pong", "AuthRequest", "Auth1", "Proof", "Ok",
            "Register", "Registered", "Authed", "Thx", "Batch", "Rec", "End", "Msg", "History",
            "Who", "Online", "Bye", "Err", "Rooms", "Room", "Create", "Join", "Part", "Invite",
            "Topic", "Privacy", "Role", "Kick", "Mute", "Ban", "Unban"]),
        fields in proptest::collection::vec("[ -~]{0,12}", 0..9),
    ) {
        let line = std::iter::once(token.to_owned()).chain(fields).collect::<Vec<_>>().join(" ");
        let line = line.as_bytes();
        let _ = ConnectReply::parse(line);
        let _ = AuthClient::parse(line);
        let _ = AuthServer::parse(line);
        let _ = HeartbeatPing::parse(line);
        let _ = DeliveryFrame::parse(line);
        let _ = SendRequest::parse(line);
        let _ = SendReply::parse(line);
    }
}
