//! The public API of `c16`, end to end through the C library.

use c16::{
    DecodeError, decode, decode_bytes, decode_into, decode_pair, encode, encode_byte, encode_into,
    encoded_len, intpair, pairint,
};
use proptest::prelude::*;

/// The encoding written out the slow, obvious way, to check the C code against.
fn reference_encode(bytes: &[u8]) -> String {
    bytes
        .iter()
        .flat_map(|&b| [char::from(b'A' + (b & 0x0F)), char::from(b'A' + (b >> 4))])
        .collect()
}

fn invalid(position: usize, byte: u8) -> DecodeError {
    DecodeError::InvalidLetter { position, byte }
}

// ---- worked examples ------------------------------------------------------------------------

const SINGLE_BYTES: &[(u8, &str)] = &[
    (b'A', "BE"),
    (b'a', "BG"),
    (b'z', "KH"),
    (b'0', "AD"),
    (b' ', "AC"),
    (b'\n', "KA"),
    (b';', "LD"),
    (b'\\', "MF"),
    (0xFF, "PP"),
    (0x00, "AA"),
];

#[test]
fn single_byte_examples() {
    for &(byte, letters) in SINGLE_BYTES {
        assert_eq!(encode(&[byte]), letters, "encode {byte:#04x}");
        assert_eq!(
            encode_byte(byte),
            letters.as_bytes(),
            "encode_byte {byte:#04x}"
        );
        assert_eq!(decode(letters), Ok(vec![byte]), "decode {letters}");
        let pair = [letters.as_bytes()[0], letters.as_bytes()[1]];
        assert_eq!(decode_pair(pair), Ok(byte), "decode_pair {letters}");
    }
}

#[test]
fn text_examples_from_the_protocol() {
    let examples: &[(&[u8], &str)] = &[
        (b"hi", "IGJG"),
        ("é".as_bytes(), "DMJK"),
        (b"a;b\nc", "BGLDCGKADG"),
        (b"\x1b[2J", "LBLFCDKE"),
    ];
    for &(bytes, letters) in examples {
        assert_eq!(encode(bytes), letters);
        assert_eq!(decode(letters).as_deref(), Ok(bytes));
        assert_eq!(decode_bytes(letters.as_bytes()).as_deref(), Ok(bytes));
    }
    assert_eq!(
        decode("DMJK").map(String::from_utf8),
        Ok(Ok("é".to_owned()))
    );
}

#[test]
fn empty_input() {
    assert_eq!(encode(b""), "");
    assert_eq!(encoded_len(0), 0);
    assert_eq!(decode(""), Ok(Vec::new()));
    assert_eq!(decode_bytes(b""), Ok(Vec::new()));

    let mut s = String::from("keep");
    encode_into(b"", &mut s);
    assert_eq!(s, "keep");
    let mut v = b"keep".to_vec();
    assert_eq!(decode_into(b"", &mut v), Ok(()));
    assert_eq!(v, b"keep");
}

#[test]
fn every_byte_value() {
    let all: Vec<u8> = (0..=255).collect();
    let text = encode(&all);
    assert_eq!(text, reference_encode(&all));
    assert_eq!(decode(&text), Ok(all.clone()));
    for b in 0..=255u8 {
        let letters = encode_byte(b);
        assert_eq!(letters, [b'A' + (b & 0x0F), b'A' + (b >> 4)]);
        assert_eq!(decode_pair(letters), Ok(b));
    }
}

#[test]
fn encoded_len_is_twice_the_input() {
    assert_eq!(encoded_len(1), 2);
    assert_eq!(encoded_len(1 << 20), 2 << 20);
    assert_eq!(
        encoded_len(usize::MAX),
        usize::MAX,
        "saturates rather than wraps"
    );
}

// ---- appending --------------------------------------------------------------------------------

#[test]
fn encode_into_appends() {
    let mut frame = String::from("Msg abc 1 ");
    encode_into(b"hi", &mut frame);
    encode_into(b"!", &mut frame);
    assert_eq!(frame, "Msg abc 1 IGJGBC");
}

#[test]
fn encode_into_vec_appends() {
    let mut frame = b"Msg abc 1 ".to_vec();
    c16::encode_into_vec(b"hi", &mut frame);
    c16::encode_into_vec(b"", &mut frame);
    c16::encode_into_vec(&[0x00, 0xff], &mut frame);
    assert_eq!(frame, b"Msg abc 1 IGJGAAPP");
}

#[test]
fn decode_into_appends_and_leaves_the_buffer_alone_on_error() {
    let mut out = b"> ".to_vec();
    assert_eq!(decode_into(b"IGJG", &mut out), Ok(()));
    assert_eq!(out, b"> hi");
    assert_eq!(decode_into(b"IGJQ", &mut out), Err(invalid(3, b'Q')));
    assert_eq!(
        decode_into(b"IGJ", &mut out),
        Err(DecodeError::OddLength { len: 3 })
    );
    assert_eq!(out, b"> hi");
}

// ---- invalid input ----------------------------------------------------------------------------

#[test]
fn odd_lengths_are_rejected() {
    for text in ["A", "B", "AAA", "IGJ", "AAAAA"] {
        assert_eq!(
            decode(text),
            Err(DecodeError::OddLength { len: text.len() }),
            "{text:?}"
        );
    }
    let long = "A".repeat(100_001);
    assert_eq!(decode(&long), Err(DecodeError::OddLength { len: 100_001 }));
}

#[test]
fn odd_length_is_reported_before_bad_letters() {
    assert_eq!(decode("Q"), Err(DecodeError::OddLength { len: 1 }));
    assert_eq!(decode("a;b"), Err(DecodeError::OddLength { len: 3 }));
}

/// Bytes just outside `A`..`P` and other classes that must never be taken for letters.
const NOT_LETTERS: &[u8] = &[
    b'@', b'Q', b'Z', b'[', b'a', b'p', b'q', b'0', b'5', b'9', b' ', b'\n', b';', b'\\', b'-',
    0x00, 0x7F, 0x80, 0xC1, 0xFF,
];

#[test]
fn letters_just_outside_the_range_are_rejected() {
    assert!(decode_pair(*b"@A").is_err(), "'@' is 'A' - 1");
    assert!(decode_pair(*b"AQ").is_err(), "'Q' is 'P' + 1");
    for &bad in NOT_LETTERS {
        assert_eq!(
            decode_bytes(&[bad, b'A']),
            Err(invalid(0, bad)),
            "{bad:#04x} first"
        );
        assert_eq!(
            decode_bytes(&[b'A', bad]),
            Err(invalid(1, bad)),
            "{bad:#04x} second"
        );
        assert_eq!(decode_pair([bad, b'A']), Err(invalid(0, bad)));
        assert_eq!(decode_pair([b'A', bad]), Err(invalid(1, bad)));
    }
}

#[test]
fn lowercase_is_not_c16() {
    assert_eq!(decode("be"), Err(invalid(0, b'b')));
    assert_eq!(decode("BEbe"), Err(invalid(2, b'b')));
}

#[test]
fn non_ascii_utf8_is_rejected_at_its_first_byte() {
    // 'É' is C3 89 in UTF-8.
    assert_eq!(decode("AAÉ"), Err(invalid(2, 0xC3)));
    assert_eq!(decode("ÉAA"), Err(invalid(0, 0xC3)));
    assert_eq!(decode("é"), Err(invalid(0, 0xC3)));
}

#[test]
fn invalid_letter_position_first_middle_last() {
    let valid = encode(b"General Communications");
    let len = valid.len();
    for position in [0, 1, len / 2, len / 2 + 1, len - 2, len - 1] {
        let mut text = valid.clone().into_bytes();
        text[position] = b'Q';
        assert_eq!(
            decode_bytes(&text),
            Err(invalid(position, b'Q')),
            "at {position}"
        );
    }
}

#[test]
fn the_first_of_several_bad_letters_is_reported() {
    assert_eq!(decode("AA0AQA"), Err(invalid(2, b'0')));
    assert_eq!(decode("AAAAA@Q "), Err(invalid(5, b'@')));
}

#[test]
fn bad_letters_in_long_inputs_are_located_exactly() {
    // Long enough for the vectorised loop and its tail; positions on and off vector boundaries.
    let bytes: Vec<u8> = (0..5000u32).map(|i| (i * 7 + 3) as u8).collect();
    let valid = encode(&bytes);
    for position in [0, 15, 16, 31, 32, 33, 4095, 4096, 7777, 9998, 9999] {
        let mut text = valid.clone().into_bytes();
        text[position] = 0xFF;
        assert_eq!(
            decode_bytes(&text),
            Err(invalid(position, 0xFF)),
            "at {position}"
        );
    }
}

#[test]
fn every_pair_of_bytes_decodes_or_fails_correctly() {
    let is_letter = |c: u8| (b'A'..=b'P').contains(&c);
    for lo in 0..=255u8 {
        for hi in 0..=255u8 {
            let expected = match (is_letter(lo), is_letter(hi)) {
                (true, true) => Ok((lo - b'A') | ((hi - b'A') << 4)),
                (false, _) => Err(invalid(0, lo)),
                (true, false) => Err(invalid(1, hi)),
            };
            assert_eq!(decode_pair([lo, hi]), expected, "{lo:#04x} {hi:#04x}");
        }
    }
}

#[test]
fn error_messages_say_what_is_wrong() {
    let odd = DecodeError::OddLength { len: 3 }.to_string();
    assert!(
        odd.contains("odd length") && odd.contains('3') && odd.contains("two letters"),
        "{odd}"
    );

    let bad = invalid(7, b'Q').to_string();
    assert!(
        bad.contains("'Q'") && bad.contains("0x51") && bad.contains("position 7"),
        "{bad}"
    );
    assert!(bad.contains("A to P"), "{bad}");

    let nul = invalid(0, 0).to_string();
    assert!(nul.contains(r"'\x00' (0x00)"), "{nul}");
}

// ---- pairint / intpair ------------------------------------------------------------------------

#[test]
fn pairint_is_big_endian() {
    assert_eq!(pairint([0x12, 0x34]), 0x1234);
    assert_eq!(pairint([0x00, 0xFF]), 0x00FF);
    assert_eq!(pairint([0xFF, 0x00]), 0xFF00);
    assert_eq!(pairint([0xFF, 0xFF]), 0xFFFF);
}

/// The prototype's `intpair` wrote the low byte into both places (an operator-precedence bug).
#[test]
fn regression_intpair_writes_the_high_byte_first() {
    assert_eq!(intpair(0x1234), [0x12, 0x34]);
    assert_eq!(intpair(0xFF00), [0xFF, 0x00]);
}

#[test]
fn pairint_and_intpair_round_trip_over_all_values() {
    for v in 0..=u16::MAX {
        let p = intpair(v);
        assert_eq!(p, v.to_be_bytes());
        assert_eq!(pairint(p), v);
    }
    for a in 0..=255u8 {
        for b in 0..=255u8 {
            assert_eq!(intpair(pairint([a, b])), [a, b]);
        }
    }
}

// ---- properties -------------------------------------------------------------------------------

proptest! {
    #[test]
    fn round_trip(bytes in proptest::collection::vec(any::<u8>(), 0..2048)) {
        let text = encode(&bytes);
        prop_assert_eq!(text.len(), 2 * bytes.len());
        prop_assert!(text.bytes().all(|c| (b'A'..=b'P').contains(&c)));
        prop_assert_eq!(&text, &reference_encode(&bytes));
        prop_assert_eq!(decode(&text), Ok(bytes));
    }

    #[test]
    fn encode_into_matches_encode(prefix in ".{0,8}", bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
        let mut out = prefix.clone();
        encode_into(&bytes, &mut out);
        prop_assert_eq!(out, prefix + &encode(&bytes));
    }

    #[test]
    fn every_even_letter_string_is_an_encoding(text in "([A-P][A-P]){0,300}") {
        let bytes = decode(&text);
        prop_assert!(bytes.is_ok());
        prop_assert_eq!(encode(&bytes.unwrap_or_default()), text);
    }

    #[test]
    fn a_planted_bad_byte_is_found(
        bytes in proptest::collection::vec(any::<u8>(), 1..600),
        index in any::<prop::sample::Index>(),
        bad in any::<u8>().prop_filter("not a letter", |c| !(b'A'..=b'P').contains(c)),
    ) {
        let mut text = encode(&bytes).into_bytes();
        let position = index.index(text.len());
        text[position] = bad;
        prop_assert_eq!(decode_bytes(&text), Err(invalid(position, bad)));
    }

    #[test]
    fn decode_never_panics(text in proptest::collection::vec(any::<u8>(), 0..64)) {
        let _ = decode_bytes(&text);
    }
}
