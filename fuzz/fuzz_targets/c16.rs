//! The c16 decoder (C, through the safe Rust API): no input crashes it, text decodes exactly
//! when it is of even length and all `A`..`P` (the error says where it is not), what decodes
//! encodes back to the same text, and `decode_into` appends without touching what was there.

#![no_main]

use c16::DecodeError;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|text: &[u8]| {
    let valid = text.len().is_multiple_of(2) && text.iter().all(|b| (b'A'..=b'P').contains(b));
    match c16::decode_bytes(text) {
        Ok(bytes) => {
            assert!(valid, "decoded invalid text");
            assert_eq!(bytes.len(), text.len() / 2);
            assert_eq!(c16::encode(&bytes).as_bytes(), text, "not encoded back");
            let mut out = b"kept".to_vec();
            c16::decode_into(text, &mut out).expect("decodes a second time");
            assert_eq!(&out[..4], b"kept");
            assert_eq!(&out[4..], &bytes[..]);
        }
        Err(error) => {
            assert!(!valid, "refused valid text: {error:?}");
            let mut out = b"kept".to_vec();
            assert!(c16::decode_into(text, &mut out).is_err());
            assert_eq!(out, b"kept", "a failed decode changed the buffer");
            if let DecodeError::InvalidLetter { position, .. } = error {
                let first_bad = text.iter().position(|b| !(b'A'..=b'P').contains(b));
                assert_eq!(Some(position), first_bad, "wrong position");
            }
        }
    }
    for pair in text.chunks_exact(2) {
        let pair = [pair[0], pair[1]];
        if let Ok(byte) = c16::decode_pair(pair) {
            assert_eq!(c16::encode_byte(byte), pair);
        }
    }
});
