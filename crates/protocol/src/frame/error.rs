//! Why a line is not a valid frame.

use crate::codes::ErrorCode;
use crate::error::FieldError;
use crate::limits::MAX_FRAME_BYTES;

/// Why a line is not a valid frame. Every variant but [`ParseError::TooLong`] maps to the wire
/// code `malformed`; the `Display` text is meant for the peer (it goes into the `Err` text).
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The line is empty.
    #[error("empty frame")]
    Empty,
    /// The line exceeds the frame size limit.
    #[error("frame is longer than {MAX_FRAME_BYTES} bytes")]
    TooLong,
    /// The line contains a CR; frames end with a bare LF.
    #[error("frame contains a CR byte (frames end with LF only)")]
    CarriageReturn,
    /// The line contains an LF (it holds more than one frame).
    #[error("frame contains an LF byte inside it")]
    LineFeed,
    /// The line is not UTF-8.
    #[error("frame is not valid UTF-8")]
    NotUtf8,
    /// Two spaces in a row, or a leading or trailing space.
    #[error("empty field (fields are separated by exactly one space)")]
    EmptyField,
    /// The token is not one expected here.
    #[error("unexpected token `{got}`, expected {expected}")]
    UnexpectedToken {
        /// The token received (shortened, control characters escaped).
        got: String,
        /// What would have been valid here.
        expected: &'static str,
    },
    /// Wrong number of fields for the token.
    #[error("`{token}` takes {expected} field(s) after the token, got {got}")]
    Arity {
        /// The frame's token.
        token: &'static str,
        /// The number of fields it takes.
        expected: usize,
        /// The number received.
        got: usize,
    },
    /// Wrong number of fields for a token that takes optional trailing fields.
    #[error("`{token}` takes {min} to {max} field(s) after the token, got {got}")]
    ArityRange {
        /// The frame's token.
        token: &'static str,
        /// Without the optional fields.
        min: usize,
        /// With all of them.
        max: usize,
        /// The number received.
        got: usize,
    },
    /// A required field is missing (frames with a variable number of fields).
    #[error("`{token}` is missing its <{field}> field")]
    MissingField {
        /// The frame's token.
        token: &'static str,
        /// The field's name.
        field: &'static str,
    },
    /// A field broke its syntax rule.
    #[error("`{token}` field <{field}>: {error}")]
    Field {
        /// The frame's token.
        token: &'static str,
        /// The field's name as in the protocol description.
        field: &'static str,
        /// What was wrong.
        error: FieldError,
    },
    /// A text field is not valid c16.
    #[error("`{token}` field <{field}> is not valid c16: {error}")]
    C16 {
        /// The frame's token.
        token: &'static str,
        /// The field's name.
        field: &'static str,
        /// The decoding error.
        error: c16::DecodeError,
    },
    /// A text field decoded to bytes that are not UTF-8.
    #[error("`{token}` field <{field}> does not decode to UTF-8 text")]
    TextNotUtf8 {
        /// The frame's token.
        token: &'static str,
        /// The field's name.
        field: &'static str,
    },
    /// A base64 field is not valid standard base64 with padding, or is too long.
    #[error("`{token}` field <{field}> is not valid base64 (standard alphabet, padded)")]
    Base64 {
        /// The frame's token.
        token: &'static str,
        /// The field's name.
        field: &'static str,
    },
    /// A field is well-formed but its value is not allowed.
    #[error("`{token}` field <{field}>: {detail}")]
    Value {
        /// The frame's token.
        token: &'static str,
        /// The field's name.
        field: &'static str,
        /// What is allowed.
        detail: &'static str,
    },
}

/// `n` in decimal with a `,` between groups of three digits (`10,000,000`), as the limit texts
/// write large numbers.
pub(crate) fn thousands(n: u64) -> String {
    let digits = n.to_string();
    let mut out = String::with_capacity(digits.len() + digits.len() / 3);
    for (i, digit) in digits.chars().enumerate() {
        if i > 0 && (digits.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(digit);
    }
    out
}

impl ParseError {
    /// The wire error code to answer this with.
    pub fn code(&self) -> ErrorCode {
        match self {
            Self::TooLong => ErrorCode::TooLong,
            _ => ErrorCode::Malformed,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::thousands;

    #[test]
    fn thousands_groups_by_three() {
        for (n, text) in [
            (0, "0"),
            (7, "7"),
            (999, "999"),
            (1_000, "1,000"),
            (65_536, "65,536"),
            (100_000, "100,000"),
            (1_000_000, "1,000,000"),
            (10_000_000, "10,000,000"),
            (u64::MAX, "18,446,744,073,709,551,615"),
        ] {
            assert_eq!(thousands(n), text);
        }
    }
}
