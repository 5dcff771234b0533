//! The exit codes of the `gc-client` binary and the error line it prints.
//!
//! 0 done; 1 an error; 2 bad usage; 3 messages left unacknowledged; 4 the server refused the login
//! or registration, or could not prove its identity; 5 the server refused a message. The terminal
//! UI also exits 128+N after signal N.

use gc_client_core::error_chain;

use crate::error::AppError;
use crate::headless::HeadlessOutcome;

/// Exit code: an error (network, files, …).
pub const EXIT_ERROR: u8 = 1;
/// Exit code: bad usage (flags, no password source, no terminal UI yet).
pub const EXIT_USAGE: u8 = 2;
/// Exit code: messages were still unacknowledged at exit.
pub const EXIT_UNSENT: u8 = 3;
/// Exit code: the server refused the login or registration, or could not prove its identity.
pub const EXIT_LOGIN_REFUSED: u8 = 4;
/// Exit code: the server refused one or more messages for good (a room the user is not in, a
/// mute, a ban, …); a script must not take them as delivered.
pub const EXIT_MESSAGE_REFUSED: u8 = 5;

/// The exit code for an error that stopped the binary: 2 for bad usage, else 1.
pub fn for_error(e: &AppError) -> u8 {
    if e.is_usage() { EXIT_USAGE } else { EXIT_ERROR }
}

/// The exit code for a headless run: 0 done, 3 messages left unacknowledged (before 5: those
/// may still go out on a later run), 4 a refused login, 5 a refused message, else as
/// [`for_error`].
pub fn for_headless(result: &Result<HeadlessOutcome, AppError>) -> u8 {
    match result {
        Ok(outcome) if outcome.unsent > 0 => EXIT_UNSENT,
        Ok(outcome) if outcome.refused > 0 => EXIT_MESSAGE_REFUSED,
        Ok(_) => 0,
        Err(e) if e.is_login_refused() => EXIT_LOGIN_REFUSED,
        Err(e) => for_error(e),
    }
}

/// The error line the binary prints: `gc-client: error: <what>: <cause>…`.
pub fn error_line(e: &AppError) -> String {
    format!("gc-client: error: {}", error_chain(e))
}

#[cfg(test)]
mod tests {
    use gc_client_core::ClientError;

    use super::*;

    #[test]
    fn exit_codes() {
        assert_eq!(for_headless(&Ok(HeadlessOutcome::default())), 0);
        let unsent = HeadlessOutcome {
            unsent: 2,
            bye_sent: true,
            refused: 0,
        };
        assert_eq!(for_headless(&Ok(unsent)), EXIT_UNSENT);
        let rejected = HeadlessOutcome {
            refused: 1,
            ..HeadlessOutcome::default()
        };
        assert_eq!(for_headless(&Ok(rejected)), EXIT_MESSAGE_REFUSED);
        // Messages that may still go out on a later run say more than refused ones.
        let both = HeadlessOutcome {
            unsent: 1,
            refused: 1,
            bye_sent: false,
        };
        assert_eq!(for_headless(&Ok(both)), EXIT_UNSENT);
        let refused = ClientError::Refused {
            during: "the login",
            code: gc_protocol::ErrorCode::Auth,
            text: "wrong password".into(),
        };
        assert_eq!(for_headless(&Err(refused.into())), EXIT_LOGIN_REFUSED);
        assert_eq!(for_headless(&Err(ClientError::Closed.into())), EXIT_ERROR);
        assert_eq!(for_error(&AppError::NoPassword("none".into())), EXIT_USAGE);
        assert_eq!(
            for_error(&ClientError::Config("bad".into()).into()),
            EXIT_USAGE
        );
    }
}
