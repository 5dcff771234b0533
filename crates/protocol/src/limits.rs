//! Limits of GC/1 as named constants (protocol.md §1, §3), and the shortest password gc takes
//! for a new account ([`MIN_PASSWORD_CHARS`]).

/// Largest frame, in bytes, including its terminating LF.
pub const MAX_FRAME_BYTES: usize = 65_536;
/// Shortest and longest username, in characters (all ASCII, so also bytes).
pub const USERNAME_MIN: usize = 1;
/// See [`USERNAME_MIN`].
pub const USERNAME_MAX: usize = 32;
/// Shortest and longest client-msg-id.
pub const CLIENT_MSG_ID_MIN: usize = 1;
/// See [`CLIENT_MSG_ID_MIN`].
pub const CLIENT_MSG_ID_MAX: usize = 32;
/// Default largest message body in bytes (after c16 decoding). Servers may configure another value,
/// but never more than [`MAX_BODY_BYTES`].
pub const DEFAULT_MAX_MESSAGE_BYTES: usize = 4_096;
/// Hard ceiling for a body: a `Rec` or `Msg` frame carrying it must still fit in one frame.
/// `Msg` + token (64) + client-msg-id (32) + three spaces + LF leave room for 32,700 body bytes.
pub const MAX_BODY_BYTES: usize = 32_000;
/// Most records a `History` request may ask for, and most records in one delivery `Batch`.
pub const MAX_HISTORY_LIMIT: u32 = 1_000;
/// Most records in one `Batch`.
pub const MAX_BATCH_RECORDS: usize = 1_000;
/// Most bytes of `Rec` frames (including their LFs) in one `Batch`.
pub const MAX_BATCH_BYTES: usize = 1024 * 1024;
/// Length of a session token: 32 random bytes as lowercase hex.
pub const SESSION_TOKEN_LEN: usize = 64;
/// The username reserved for notices written by the server itself.
pub const RESERVED_USERNAME: &str = "System";
/// Most digits accepted in a decimal number field (u64::MAX has 20).
pub const MAX_NUMBER_DIGITS: usize = 20;
/// Lowest SCRAM iteration count a client or server should ever accept (RFC 7677 recommends 4096).
pub const MIN_SCRAM_ITERATIONS: u32 = 4_096;
/// Highest SCRAM iteration count accepted, so a hostile server cannot make a client spin for minutes.
pub const MAX_SCRAM_ITERATIONS: u32 = 10_000_000;
/// Shortest and longest SCRAM salt a `Register` may carry, in bytes.
pub const MIN_SCRAM_SALT_BYTES: usize = 8;
/// See [`MIN_SCRAM_SALT_BYTES`].
pub const MAX_SCRAM_SALT_BYTES: usize = 64;
/// Length of a SCRAM StoredKey or ServerKey in `Register`: one SHA-256 digest.
pub const SCRAM_KEY_BYTES: usize = 32;
/// Longest base64 field (SCRAM messages, salts, keys) accepted in a frame.
pub const MAX_B64_FIELD: usize = 4_096;
/// The longest room name after its `#`.
pub const ROOM_NAME_MAX: usize = 32;
/// The room every account is in and GC/1 sessions see.
pub const GENERAL_ROOM: &str = "#general";
/// Longest room topic, in bytes of UTF-8 (after c16 decoding): `Create` and `Topic`, and the
/// topic a `Room` listing carries.
pub const MAX_TOPIC_BYTES: usize = 512;
/// Longest reason for a `Kick`, `Mute` or `Ban`, in bytes of UTF-8 (after c16 decoding).
pub const MAX_REASON_BYTES: usize = 512;
/// Longest mute a `Mute` may set, in seconds: one year (365 days). `0` lifts a mute.
pub const MAX_MUTE_SECONDS: u32 = 31_536_000;
/// The length of a server's password-change nonce (GC/4 `Challenge`), in bytes (24 characters of
/// base64).
pub const CHALLENGE_NONCE_BYTES: usize = 18;
/// Longest away message (GC/4 `Away`), in bytes of UTF-8 (after c16 decoding).
pub const MAX_AWAY_BYTES: usize = 256;
/// Most content bytes one GC/5 `Chunk` carries (1 MiB): large enough that the header is noise
/// at hundreds of MB/s, small enough that a reader's buffer stays bounded.
pub const MAX_CHUNK_BYTES: u64 = 1024 * 1024;
/// Longest file name in a GC/5 `Offer`, in bytes of UTF-8 (after c16 decoding), as most file
/// systems allow.
pub const MAX_FILE_NAME_BYTES: usize = 255;
/// Shortest password for a new account or a password change, in characters (Unicode scalar
/// values, not bytes). Checked where the password is known: by `gc-server user add` and
/// `user passwd`, and by the client before it registers. A `Register` carries only the SCRAM
/// verifier (the password never crosses the wire), so the server cannot check what clients
/// register; a server whose every password must meet it runs with registration closed.
/// Logging in with an older, shorter password still works.
pub const MIN_PASSWORD_CHARS: usize = 8;

/// Whether `password` may be chosen for a new account or a password change: `Err` with the
/// message to show (`password too short: at least 8 characters`).
pub fn check_new_password(password: &str) -> Result<(), String> {
    if password.chars().count() < MIN_PASSWORD_CHARS {
        return Err(format!(
            "password too short: at least {MIN_PASSWORD_CHARS} characters"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn passwords_are_counted_in_characters_not_bytes() {
        assert_eq!(
            check_new_password("seven-7"),
            Err("password too short: at least 8 characters".into())
        );
        check_new_password("eight-88").unwrap();
        // Seven characters, fourteen bytes: too short.
        assert!(check_new_password("ééééééé").is_err());
        check_new_password("éééééééé").unwrap();
        assert!(check_new_password("").is_err());
    }
}
