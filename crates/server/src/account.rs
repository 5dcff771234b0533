//! GC/4 requests about the session's own account, on the sending port: the password change
//! (`Challenge`, then `Passwd`) and the away state (`Away`, `Back`, and the `Away` lines a GC/4
//! session's `Who` is answered with after `Online`).
//!
//! A password change needs the current password, not just the session: the client proves it
//! over a nonce the server gave this session moments before (`scram::passwd_proof`), so a stolen
//! session token alone cannot change it, and a proof cannot be replayed or moved onto another
//! verifier. A wrong proof counts as a failed login for the login throttle, so a token cannot be
//! used to guess the password either (docs/security.md).

use std::net::IpAddr;
use std::time::{Duration, Instant};

use gc_protocol::scram::Verifier;
use gc_protocol::scram::{passwd_message, random_challenge_nonce, verify_passwd_proof};
use gc_protocol::{ErrorCode, ErrorFrame, Frame, SendReply, Timestamp, Username, texts};
use gc_store::{Account, StoreError};

use crate::state::{ServerState, Session};
use crate::throttle::Failure;

/// How long a `Challenge`'s nonce may be answered: ample for a client deriving two keys, short
/// enough that a nonce left unused does not linger.
const CHALLENGE_TTL: Duration = Duration::from_secs(60);

fn refuse(out: &mut Vec<u8>, code: ErrorCode, text: impl Into<String>) {
    SendReply::Err(ErrorFrame::new(code, text)).encode(out);
}

fn done(out: &mut Vec<u8>) {
    SendReply::Thx {
        id: 0,
        timestamp: Timestamp::now(),
    }
    .encode(out);
}

/// Whether `session` may ask a GC/4 request; if not, its refusal is in `out`.
fn gc4_only(session: &Session, out: &mut Vec<u8>) -> bool {
    if !session.gc4 {
        refuse(
            out,
            ErrorCode::Version,
            "this session logged in without GC/4; update gc-client to change the password or \
             set an away message",
        );
    }
    session.gc4
}

/// `Challenge` → `Challenge <nonce> <salt> <iterations>`: a fresh nonce for this session (it
/// replaces any earlier one), and the current password's salt and iteration count.
pub(crate) fn challenge(shared: &ServerState, session: &Session, out: &mut Vec<u8>) {
    if !gc4_only(session, out) {
        return;
    }
    let account = match shared.accounts.get(session.user.as_str()) {
        Ok(Some(account)) => account,
        Ok(None) => return gone(&session.user, out),
        Err(e) => return unreadable(&session.user, &e, out),
    };
    let Ok(nonce) = random_challenge_nonce() else {
        return refuse(
            out,
            ErrorCode::Internal,
            "the server has no randomness available",
        );
    };
    *session.challenge.lock() = Some((nonce.to_vec(), Instant::now()));
    SendReply::Challenge {
        nonce: nonce.to_vec(),
        salt: account.salt,
        iterations: account.iterations,
    }
    .encode(out);
}

/// `Passwd` with the new verifier and the proof of the current password: the account's
/// verifier is replaced (in the shared database, for every instance) and `Thx 0` answered. The
/// user's sessions, this one included, keep running: they were opened with the old password,
/// which only the next login needs.
pub(crate) fn passwd(
    shared: &ServerState,
    session: &Session,
    ip: IpAddr,
    new: Verifier,
    proof: &[u8],
    out: &mut Vec<u8>,
) {
    if !gc4_only(session, out) {
        return;
    }
    let user = &session.user;
    let now = Instant::now();
    // Spent whatever comes next: one proof per nonce.
    let nonce = match session.challenge.lock().take() {
        Some((nonce, at)) if now.duration_since(at) <= CHALLENGE_TTL => nonce,
        _ => {
            return refuse(
                out,
                ErrorCode::Malformed,
                "no password change was started on this session in the last minute \
                 (`Challenge`); start again",
            );
        }
    };
    let key = user.key();
    if let Err(wait) = shared.throttle.check(&key, ip, now) {
        tracing::warn!(%ip, user = %user, "password change throttled");
        return refuse(out, ErrorCode::Throttled, texts::login_throttled(wait));
    }
    let account = match shared.accounts.get(user.as_str()) {
        Ok(Some(account)) => account,
        Ok(None) => return gone(user, out),
        Err(e) => return unreadable(user, &e, out),
    };
    let Some(current) = crate::auth::verifier_of(&account) else {
        tracing::error!(user = %user, "stored account has keys of the wrong size");
        return refuse(
            out,
            ErrorCode::Internal,
            "this account's stored keys are damaged",
        );
    };
    let message = passwd_message(&key, &nonce, &new);
    if !verify_passwd_proof(&current.stored_key, &message, proof) {
        shared
            .throttle
            .record_failure(&key, ip, Failure::WrongPassword, now);
        tracing::warn!(%ip, user = %user, "password change refused: wrong current password");
        return refuse(
            out,
            ErrorCode::Auth,
            "the current password is wrong; the password was not changed",
        );
    }
    let min = shared.config.scram_min_iterations;
    if new.iterations < min {
        return refuse(
            out,
            ErrorCode::Malformed,
            texts::iterations_below_minimum(new.iterations, min),
        );
    }
    let changed = Account {
        username: account.username.clone(),
        salt: new.salt,
        iterations: new.iterations,
        stored_key: new.stored_key.to_vec(),
        server_key: new.server_key.to_vec(),
        created: account.created,
    };
    match shared.accounts.update(changed) {
        Ok(()) => {
            shared.throttle.record_success(&key, ip, now);
            tracing::info!(%ip, user = %user, session = session.id, "password changed");
            done(out);
        }
        Err(StoreError::UnknownAccount { .. }) => gone(user, out),
        Err(e) => {
            tracing::error!(user = %user, "cannot save a changed password: {e}");
            refuse(
                out,
                ErrorCode::Internal,
                "the server could not save the new password; the old one still works; try \
                 again later",
            );
        }
    }
}

fn gone(user: &Username, out: &mut Vec<u8>) {
    tracing::warn!(user = %user, "a session's account no longer exists");
    refuse(
        out,
        ErrorCode::UnknownUser,
        format!("the account {user} no longer exists"),
    );
}

fn unreadable(user: &Username, e: &StoreError, out: &mut Vec<u8>) {
    tracing::error!(user = %user, "cannot read the accounts: {e}");
    refuse(
        out,
        ErrorCode::Internal,
        "the server cannot read its accounts right now; try again later",
    );
}

/// `Away <message>` (`Some`) or `Back` (`None`) → `Thx 0`: the user's away state on this
/// instance, for all their sessions here. A change raises the presence version, so every client
/// asks `Who` again and sees it.
pub(crate) fn away(
    shared: &ServerState,
    session: &Session,
    message: Option<String>,
    out: &mut Vec<u8>,
) {
    if !gc4_only(session, out) {
        return;
    }
    let away = message.is_some();
    if shared
        .registry
        .set_away(&session.user, message, &shared.notifier)
    {
        tracing::info!(user = %session.user, away, "away state changed");
    }
    done(out);
}

/// After a GC/4 session's `Online`: an `Away` line for each listed user who is away, then
/// `End`. Older sessions get the `Online` frame alone, as before.
pub(crate) fn away_lines(
    shared: &ServerState,
    session: &Session,
    users: &[Username],
    out: &mut Vec<u8>,
) {
    if !session.gc4 {
        return;
    }
    for (username, message) in shared.registry.away_of(users) {
        SendReply::Away { username, message }.encode(out);
    }
    SendReply::End.encode(out);
}
