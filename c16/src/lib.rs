//! The c16 text encoding of GC/1, implemented in C (`16.c`, `c16.h`) behind a safe Rust API.
//!
//! c16 writes every byte as **two letters from `A` to `P`, low nibble first**: the letter for a
//! nibble `v` (0–15) is `'A' + v`. Text fields of the GC/1 protocol (message bodies, error texts,
//! the server name) travel c16-encoded, so a field can never contain a space, LF, `;`, `\` or a
//! control byte. `n` bytes always become exactly `2n` letters.
//!
//! | input | bytes | c16 |
//! |---|---|---|
//! | `A` | `41` | `BE` (low nibble 1 → `B`, high nibble 4 → `E`) |
//! | `a` | `61` | `BG` |
//! | `z` | `7A` | `KH` |
//! | `0` | `30` | `AD` |
//! | space | `20` | `AC` |
//! | LF | `0A` | `KA` |
//! | NUL / `0xFF` | `00` / `FF` | `AA` / `PP` |
//! | `hi` | `68 69` | `IGJG` |
//! | `é` | `C3 A9` | `DMJK` |
//! | `a;b⏎c` | `61 3B 62 0A 63` | `BGLDCGKADG` |
//! | ESC `[2J` | `1B 5B 32 4A` | `LBLFCDKE` |
//!
//! ```
//! assert_eq!(c16::encode(b"hi"), "IGJG");
//! assert_eq!(c16::encode("é".as_bytes()), "DMJK");
//! assert_eq!(c16::decode("BGLDCGKADG")?, b"a;b\nc");
//!
//! // A receiver rejects odd lengths and letters outside A..P, and says where.
//! assert_eq!(c16::decode("IGJ"), Err(c16::DecodeError::OddLength { len: 3 }));
//! assert_eq!(
//!     c16::decode("IGQG"),
//!     Err(c16::DecodeError::InvalidLetter { position: 2, byte: b'Q' })
//! );
//! # Ok::<(), c16::DecodeError>(())
//! ```
//!
//! The protocol writes an empty text as `-`; that is the protocol's business, not this crate's:
//! here the empty input encodes to the empty string and back.
//!
//! Every function goes through the C library (the point of this crate is that the same `16.c`
//! serves Rust and C plugins alike); the Rust side only manages buffers. The C functions never
//! allocate, so nothing can leak across the boundary. Build scripts of dependent crates can find
//! `c16.h` in the directory named by the `DEP_GC16_INCLUDE` environment variable.
//!
//! The prototype's `pairint`/`intpair` helpers are kept as [`pairint`] and [`intpair`]: a pair of
//! bytes as a big-endian `u16` and back (the prototype's `intpair` was broken; this one is the
//! exact inverse).

use thiserror::Error;

/// Why a c16 text could not be decoded.
///
/// Positions are byte offsets into the text (for a `&str`, offsets into its UTF-8 bytes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// The text has an odd number of bytes, but c16 writes every byte as two letters. The text
    /// was cut short or is not c16: reject it as malformed.
    #[error(
        "c16 text has an odd length ({len} bytes): every encoded byte is exactly two letters A..P"
    )]
    OddLength {
        /// Length of the text, in bytes.
        len: usize,
    },
    /// The byte at `position` is not one of the letters `A` to `P`. The text is not c16 (wrong
    /// field, lowercase, or corrupted): reject it as malformed.
    #[error(
        "c16 text has an invalid byte {} at position {position}: only the letters A to P are allowed",
        describe(*byte)
    )]
    InvalidLetter {
        /// Offset of the first offending byte in the text.
        position: usize,
        /// The offending byte.
        byte: u8,
    },
}

/// `'Q' (0x51)`, `'\x00' (0x00)`, `'\xc3' (0xC3)`: readable whatever the byte.
fn describe(byte: u8) -> String {
    format!("'{}' (0x{byte:02X})", byte.escape_ascii())
}

/// Number of letters that `n` bytes encode to: `2 * n` (saturating at `usize::MAX`, which no real
/// buffer reaches).
///
/// ```
/// assert_eq!(c16::encoded_len(5), 10);
/// ```
#[must_use]
pub fn encoded_len(n: usize) -> usize {
    ffi::encoded_len(n)
}

/// Encodes `bytes` as c16 text: two letters `A`..`P` per byte, low nibble first.
///
/// ```
/// assert_eq!(c16::encode(b"A"), "BE");
/// assert_eq!(c16::encode(b""), "");
/// ```
#[must_use]
pub fn encode(bytes: &[u8]) -> String {
    let mut out = String::with_capacity(encoded_len(bytes.len()));
    ffi::encode_into(bytes, &mut out);
    out
}

/// Appends the c16 encoding of `bytes` to `out`, so a caller can build a frame in one buffer
/// without a temporary `String`.
///
/// ```
/// let mut frame = String::from("Msg token 7 ");
/// c16::encode_into(b"hi", &mut frame);
/// assert_eq!(frame, "Msg token 7 IGJG");
/// ```
pub fn encode_into(bytes: &[u8], out: &mut String) {
    ffi::encode_into(bytes, out);
}

/// Appends the c16 encoding of `bytes` to a byte buffer (frames are built as `Vec<u8>`).
///
/// ```
/// let mut frame = b"Rec 1 1 bob ".to_vec();
/// c16::encode_into_vec(b"x", &mut frame);
/// assert_eq!(frame, b"Rec 1 1 bob IH");
/// ```
pub fn encode_into_vec(bytes: &[u8], out: &mut Vec<u8>) {
    ffi::encode_into_vec(bytes, out);
}

/// Decodes c16 text into bytes.
///
/// # Errors
///
/// [`DecodeError::OddLength`] when the text has an odd length (checked first), and
/// [`DecodeError::InvalidLetter`] with the position of the first byte that is not `A`..`P`.
///
/// ```
/// assert_eq!(c16::decode("IGJG")?, b"hi");
/// # Ok::<(), c16::DecodeError>(())
/// ```
pub fn decode(text: &str) -> Result<Vec<u8>, DecodeError> {
    decode_bytes(text.as_bytes())
}

/// Decodes c16 text given as raw bytes (e.g. a field sliced out of a received frame).
///
/// # Errors
///
/// As [`decode`].
pub fn decode_bytes(text: &[u8]) -> Result<Vec<u8>, DecodeError> {
    let mut out = Vec::new();
    ffi::decode_into(text, &mut out)?;
    Ok(out)
}

/// Appends the bytes that c16 `text` decodes to onto `out`. On error `out` is left as it was.
///
/// # Errors
///
/// As [`decode`].
///
/// ```
/// let mut body = b"> ".to_vec();
/// c16::decode_into(b"IGJG", &mut body)?;
/// assert_eq!(body, b"> hi");
/// # Ok::<(), c16::DecodeError>(())
/// ```
pub fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
    ffi::decode_into(text, out)
}

/// Encodes one byte as its two letters, as ASCII bytes (`encode_B` of the prototype).
///
/// ```
/// assert_eq!(c16::encode_byte(b'A'), *b"BE");
/// ```
#[must_use]
pub fn encode_byte(b: u8) -> [u8; 2] {
    ffi::encode_byte(b)
}

/// Decodes two letters into one byte (`decode_B` of the prototype).
///
/// # Errors
///
/// [`DecodeError::InvalidLetter`] at position 0 or 1 for the first letter outside `A`..`P`.
///
/// ```
/// assert_eq!(c16::decode_pair(*b"BE"), Ok(b'A'));
/// assert!(c16::decode_pair(*b"BQ").is_err());
/// ```
pub fn decode_pair(pair: [u8; 2]) -> Result<u8, DecodeError> {
    ffi::decode_pair(pair)
}

/// A pair of bytes as a big-endian 16-bit integer: `p[0] << 8 | p[1]`.
///
/// ```
/// assert_eq!(c16::pairint([0x12, 0x34]), 0x1234);
/// ```
#[must_use]
pub fn pairint(p: [u8; 2]) -> u16 {
    ffi::pairint(p)
}

/// The inverse of [`pairint`]: `[v >> 8, v & 0xFF]`, so `intpair(pairint(p)) == p`.
///
/// ```
/// assert_eq!(c16::intpair(0x1234), [0x12, 0x34]);
/// ```
#[must_use]
pub fn intpair(v: u16) -> [u8; 2] {
    ffi::intpair(v)
}

/// The boundary with `16.c`: the only place with `unsafe` code. The raw declarations stay private;
/// everything above uses the safe wrappers.
#[allow(unsafe_code)]
mod ffi {
    use std::ffi::{c_char, c_int, c_uchar, c_void};

    use crate::DecodeError;

    // Status codes of c16.h.
    const GC16_OK: c_int = 0;
    const GC16_ERR_ODD_LENGTH: c_int = 1;
    const GC16_ERR_INVALID_LETTER: c_int = 2;
    #[cfg(test)]
    const GC16_ERR_NULL: c_int = 3;

    // SAFETY: these declarations match the prototypes in c16.h (size_t is usize, uint16_t is u16);
    // the functions marked `safe` take no pointers and have no preconditions.
    unsafe extern "C" {
        safe fn gc16_encoded_len(n: usize) -> usize;
        fn gc16_encode(bytes: *const c_void, n: usize, out: *mut c_char) -> c_int;
        fn gc16_decode(
            text: *const c_char,
            len: usize,
            out: *mut c_uchar,
            err_pos: *mut usize,
        ) -> c_int;
        #[allow(non_snake_case)]
        fn gc16_encode_B(s: *const c_char, out: *mut c_char) -> c_int;
        #[allow(non_snake_case)]
        fn gc16_decode_B(s: *const c_char, out: *mut c_uchar, err_pos: *mut usize) -> c_int;
        fn gc16_pairint(p: *const c_uchar) -> u16;
        fn gc16_intpair(v: u16, out: *mut c_uchar);
    }

    pub(crate) fn encoded_len(n: usize) -> usize {
        gc16_encoded_len(n)
    }

    pub(crate) fn encode_into(bytes: &[u8], out: &mut String) {
        // SAFETY: encode_into_vec only appends the letters A..P (ASCII), so the String stays
        // valid UTF-8; if it panics before `set_len`, the length is unchanged.
        let vec = unsafe { out.as_mut_vec() };
        encode_into_vec(bytes, vec);
    }

    pub(crate) fn encode_into_vec(bytes: &[u8], vec: &mut Vec<u8>) {
        let n = bytes.len();
        // A slice holds at most isize::MAX bytes, so 2n fits in usize.
        let letters = gc16_encoded_len(n);
        vec.reserve(letters);
        let start = vec.len();
        let spare = vec.spare_capacity_mut();
        assert!(spare.len() >= letters, "reserve gave too little room");
        // SAFETY: `bytes` is valid for `n` reads; `spare` is valid for `letters` = 2n writes
        // (checked above) and does not overlap `bytes`, which is borrowed immutably elsewhere.
        let status = unsafe { gc16_encode(bytes.as_ptr().cast(), n, spare.as_mut_ptr().cast()) };
        assert_eq!(status, GC16_OK, "gc16_encode failed on valid buffers");
        // SAFETY: gc16_encode returned GC16_OK, so it initialised all `letters` bytes after
        // `start`, and they are within the capacity reserved above.
        unsafe { vec.set_len(start + letters) };
    }

    pub(crate) fn decode_into(text: &[u8], out: &mut Vec<u8>) -> Result<(), DecodeError> {
        let len = text.len();
        let n = len / 2;
        if len.is_multiple_of(2) {
            out.reserve(n);
        }
        let start = out.len();
        let spare = out.spare_capacity_mut();
        let mut err_pos = usize::MAX;
        // SAFETY: `text` is valid for `len` reads. gc16_decode checks the length first and
        // writes nothing for an odd `len`; otherwise it writes at most len / 2 = n bytes, and
        // `spare` has room for n (reserved above). The buffers do not overlap (`text` is a
        // shared borrow, `out` a unique one). `err_pos` is a valid, exclusive usize.
        let status = unsafe {
            gc16_decode(
                text.as_ptr().cast(),
                len,
                spare.as_mut_ptr().cast(),
                &raw mut err_pos,
            )
        };
        match status {
            GC16_OK => {
                // SAFETY: on GC16_OK all n bytes after `start` were initialised, within capacity.
                unsafe { out.set_len(start + n) };
                Ok(())
            }
            _ => Err(decode_error(status, err_pos, text)),
        }
    }

    pub(crate) fn encode_byte(b: u8) -> [u8; 2] {
        let mut out = [0u8; 3];
        // SAFETY: gc16_encode_B reads only s[0] (one byte, `b`) and writes three bytes to `out`,
        // which has exactly three.
        let status = unsafe { gc16_encode_B((&raw const b).cast(), out.as_mut_ptr().cast()) };
        assert_eq!(status, GC16_OK, "gc16_encode_B failed on valid buffers");
        [out[0], out[1]]
    }

    pub(crate) fn decode_pair(pair: [u8; 2]) -> Result<u8, DecodeError> {
        let mut byte = 0u8;
        let mut err_pos = usize::MAX;
        // SAFETY: gc16_decode_B reads at most two bytes of `pair` (which has two) and writes one
        // byte to `byte` and one usize to `err_pos`, all valid and exclusive.
        let status =
            unsafe { gc16_decode_B(pair.as_ptr().cast(), &raw mut byte, &raw mut err_pos) };
        match status {
            GC16_OK => Ok(byte),
            _ => Err(decode_error(status, err_pos, &pair)),
        }
    }

    pub(crate) fn pairint(p: [u8; 2]) -> u16 {
        // SAFETY: gc16_pairint reads exactly two bytes, and `p` has two.
        unsafe { gc16_pairint(p.as_ptr()) }
    }

    pub(crate) fn intpair(v: u16) -> [u8; 2] {
        let mut out = [0u8; 2];
        // SAFETY: gc16_intpair writes exactly two bytes, and `out` has two.
        unsafe { gc16_intpair(v, out.as_mut_ptr()) };
        out
    }

    /// Turns a failed status of gc16_decode / gc16_decode_B into the Rust error.
    fn decode_error(status: c_int, err_pos: usize, text: &[u8]) -> DecodeError {
        match status {
            GC16_ERR_ODD_LENGTH => DecodeError::OddLength { len: text.len() },
            GC16_ERR_INVALID_LETTER => match text.get(err_pos) {
                Some(&byte) => DecodeError::InvalidLetter {
                    position: err_pos,
                    byte,
                },
                None => panic!("16.c reported an invalid letter at {err_pos}, past the end"),
            },
            _ => panic!("16.c returned an unexpected status {status} for valid buffers"),
        }
    }

    /// Calls across the boundary directly: the C entry points, their error codes and NULL
    /// handling, and the prototype's names.
    #[cfg(test)]
    mod tests {
        use std::ffi::CStr;
        use std::ptr;

        use super::*;

        // SAFETY: these declarations match c16.h.
        unsafe extern "C" {
            safe fn gc16_decoded_len(len: usize) -> usize;
            fn gc16_strerror(status: c_int) -> *const c_char;
            #[allow(non_snake_case)]
            fn encode_B(s: *const c_char, out: *mut c_char) -> c_int;
            #[allow(non_snake_case)]
            fn decode_B(s: *const c_char, out: *mut c_uchar, err_pos: *mut usize) -> c_int;
            fn pairint(p: *const c_uchar) -> u16;
            fn intpair(v: u16, out: *mut c_uchar);
        }

        fn strerror(status: c_int) -> String {
            // SAFETY: gc16_strerror returns a pointer to a static NUL-terminated string.
            unsafe { CStr::from_ptr(gc16_strerror(status)) }
                .to_string_lossy()
                .into_owned()
        }

        #[test]
        fn original_names_are_exported() {
            let mut out = [0 as c_char; 3];
            // SAFETY: a NUL-terminated string and a three-byte buffer.
            let status = unsafe { encode_B(c"A".as_ptr(), out.as_mut_ptr()) };
            assert_eq!(status, GC16_OK);
            // SAFETY: encode_B NUL-terminated `out`.
            assert_eq!(unsafe { CStr::from_ptr(out.as_ptr()) }, c"BE");

            let mut byte = 0u8;
            let mut pos = 99usize;
            // SAFETY: a NUL-terminated two-letter string; valid out-pointers.
            let status = unsafe { decode_B(c"BE".as_ptr(), &raw mut byte, &raw mut pos) };
            assert_eq!((status, byte, pos), (GC16_OK, b'A', 99));

            let mut pair = [0u8; 2];
            // SAFETY: two-byte buffers.
            unsafe { intpair(0xBEEF, pair.as_mut_ptr()) };
            assert_eq!(pair, [0xBE, 0xEF]);
            // SAFETY: a two-byte buffer.
            assert_eq!(unsafe { pairint(pair.as_ptr()) }, 0xBEEF);
        }

        #[test]
        fn encode_b_reads_the_first_byte_of_a_string() {
            let mut out = [0 as c_char; 3];
            // SAFETY: NUL-terminated strings and a three-byte buffer.
            unsafe {
                assert_eq!(gc16_encode_B(c"hi".as_ptr(), out.as_mut_ptr()), GC16_OK);
                assert_eq!(CStr::from_ptr(out.as_ptr()), c"IG");
                // The empty string's first byte is its NUL.
                assert_eq!(gc16_encode_B(c"".as_ptr(), out.as_mut_ptr()), GC16_OK);
                assert_eq!(CStr::from_ptr(out.as_ptr()), c"AA");
            }
        }

        #[test]
        fn decode_b_stops_at_the_nul_of_a_short_string() {
            let mut byte = 7u8;
            let mut pos = 99usize;
            // SAFETY: NUL-terminated strings; gc16_decode_B does not read past the first bad
            // letter, so the one- and zero-letter strings are not over-read.
            unsafe {
                let s = gc16_decode_B(c"B".as_ptr(), &raw mut byte, &raw mut pos);
                assert_eq!((s, pos), (GC16_ERR_INVALID_LETTER, 1));
                let s = gc16_decode_B(c"".as_ptr(), &raw mut byte, &raw mut pos);
                assert_eq!((s, pos), (GC16_ERR_INVALID_LETTER, 0));
                // err_pos may be NULL.
                let s = gc16_decode_B(c"QA".as_ptr(), &raw mut byte, ptr::null_mut());
                assert_eq!(s, GC16_ERR_INVALID_LETTER);
            }
            assert_eq!(byte, 7, "out is written only on success");
        }

        #[test]
        fn null_pointers_give_an_error_not_a_crash() {
            let mut buf = [0u8; 4];
            let mut pos = 0usize;
            // SAFETY: the C side checks for NULL before dereferencing; the non-NULL pointers are
            // valid for the lengths given.
            unsafe {
                assert_eq!(
                    gc16_encode(ptr::null(), 2, buf.as_mut_ptr().cast()),
                    GC16_ERR_NULL
                );
                assert_eq!(
                    gc16_encode(buf.as_ptr().cast(), 2, ptr::null_mut()),
                    GC16_ERR_NULL
                );
                assert_eq!(gc16_encode(ptr::null(), 0, ptr::null_mut()), GC16_OK);
                assert_eq!(
                    gc16_decode(ptr::null(), 2, buf.as_mut_ptr(), &raw mut pos),
                    GC16_ERR_NULL
                );
                assert_eq!(
                    gc16_decode(c"AA".as_ptr(), 2, ptr::null_mut(), ptr::null_mut()),
                    GC16_ERR_NULL
                );
                assert_eq!(
                    gc16_decode(ptr::null(), 0, ptr::null_mut(), &raw mut pos),
                    GC16_OK
                );
                assert_eq!(
                    gc16_encode_B(ptr::null(), buf.as_mut_ptr().cast()),
                    GC16_ERR_NULL
                );
                assert_eq!(
                    gc16_decode_B(c"AA".as_ptr(), ptr::null_mut(), ptr::null_mut()),
                    GC16_ERR_NULL
                );
                assert_eq!(gc16_pairint(ptr::null()), 0);
                gc16_intpair(1, ptr::null_mut());
            }
        }

        #[test]
        fn decode_reports_odd_length_before_letters_and_tolerates_null_err_pos() {
            let mut buf = [0u8; 4];
            let mut pos = 0usize;
            // SAFETY: `text` is valid for the lengths given, `buf` has room for len / 2 bytes.
            unsafe {
                let s = gc16_decode(c"Q".as_ptr(), 1, buf.as_mut_ptr(), &raw mut pos);
                assert_eq!((s, pos), (GC16_ERR_ODD_LENGTH, 1));
                let s = gc16_decode(c"AAQ".as_ptr(), 3, buf.as_mut_ptr(), ptr::null_mut());
                assert_eq!(s, GC16_ERR_ODD_LENGTH);
                let s = gc16_decode(c"AAQA".as_ptr(), 4, buf.as_mut_ptr(), ptr::null_mut());
                assert_eq!(s, GC16_ERR_INVALID_LETTER);
            }
        }

        #[test]
        fn lengths_and_messages() {
            assert_eq!(gc16_encoded_len(3), 6);
            assert_eq!(gc16_encoded_len(usize::MAX / 2), usize::MAX - 1);
            assert_eq!(
                gc16_encoded_len(usize::MAX / 2 + 1),
                usize::MAX,
                "saturates"
            );
            assert_eq!(gc16_decoded_len(7), 3);
            assert_eq!(strerror(GC16_OK), "success");
            assert!(strerror(GC16_ERR_ODD_LENGTH).contains("odd"));
            assert!(strerror(GC16_ERR_INVALID_LETTER).contains("A..P"));
            assert!(strerror(GC16_ERR_NULL).contains("null"));
            assert_eq!(strerror(-1), "unknown c16 status");
        }
    }
}
