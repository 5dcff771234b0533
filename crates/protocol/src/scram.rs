//! SCRAM-SHA-256 (RFC 5802 with SHA-256 as in RFC 7677), both sides, unbound over plain GC/1 and
//! bound to the TLS session over TLS (SCRAM-SHA-256-PLUS with `tls-exporter`, RFC 9266).
//!
//! GC/1 carries these messages base64-encoded inside `AuthRequest`, `Auth1`, `Proof` and `Authed`;
//! this module works on the decoded text. Usernames in GC/1 never contain `,` or `=`, so the
//! `=2C`/`=3D` escaping of RFC 5802 is never needed; any message that would need it is refused as
//! malformed. Passwords are used as their UTF-8 bytes (no SASLprep normalisation).

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

use crate::limits::{MAX_SCRAM_ITERATIONS, MIN_SCRAM_ITERATIONS};

type HmacSha256 = Hmac<Sha256>;

/// The gs2 header of an unbound exchange: no channel binding, no authzid.
pub const GS2_HEADER: &str = "n,,";
/// The gs2 header of an exchange bound to its TLS session (RFC 9266), no authzid.
pub const GS2_TLS_EXPORTER: &str = "p=tls-exporter,,";
/// The label both ends of a TLS session export the channel binding with (RFC 9266 §2).
pub const TLS_EXPORTER_LABEL: &[u8] = b"EXPORTER-Channel-Binding";

/// What a SCRAM exchange is bound to.
#[derive(Clone, PartialEq, Eq)]
pub enum Binding {
    /// Nothing (`n,,`): plain GC/1, where there is no channel to bind to.
    Unbound,
    /// The TLS session: the 32 bytes its two ends export with [`TLS_EXPORTER_LABEL`] and no
    /// context. A relay that terminates TLS has two sessions with two different values, so a
    /// login relayed through it cannot verify.
    TlsExporter([u8; 32]),
}

impl std::fmt::Debug for Binding {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Unbound => "Unbound",
            Self::TlsExporter(_) => "TlsExporter(..)",
        })
    }
}

impl Binding {
    /// The gs2 header this binding is announced with.
    pub fn gs2_header(&self) -> &'static str {
        match self {
            Self::Unbound => GS2_HEADER,
            Self::TlsExporter(_) => GS2_TLS_EXPORTER,
        }
    }

    /// The `c=` value of client-final: base64 of the gs2 header and the binding data.
    fn c_value(&self) -> String {
        let mut bytes = self.gs2_header().as_bytes().to_vec();
        if let Self::TlsExporter(data) = self {
            bytes.extend_from_slice(data);
        }
        B64.encode(bytes)
    }
}

/// Why a SCRAM step failed.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ScramError {
    /// A message does not follow RFC 5802 syntax.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The gs2 header asks for a binding or an authzid this side does not use.
    #[error(
        "unsupported SCRAM gs2 header (`n,,` on plain GC/1, `p=tls-exporter,,` over TLS; no \
         authzid)"
    )]
    Gs2Header,
    /// The connection is TLS but the client's login is not bound to it (a downgrade).
    #[error(
        "this connection is TLS, so the login must be bound to it (SCRAM-SHA-256-PLUS with \
         tls-exporter), and the client's is not"
    )]
    BindingRequired,
    /// The client bound its login to a TLS session, but this side's connection is plain: TLS
    /// was terminated between them.
    #[error(
        "the client bound its login to a TLS session this server does not see: something \
         between them terminates TLS"
    )]
    UnexpectedBinding,
    /// The binding data differ: the two ends are in different TLS sessions.
    #[error(
        "the login is bound to another TLS session than this server's: something between client \
         and server terminates TLS with its own certificate (a relay)"
    )]
    BindingMismatch,
    /// The server's nonce does not extend the client's, or the client-final nonce is not the
    /// combined one.
    #[error("SCRAM nonce mismatch")]
    NonceMismatch,
    /// The iteration count is outside what this side accepts.
    #[error("SCRAM iteration count {got} is outside {min}..={max}")]
    Iterations {
        /// The count offered.
        got: u32,
        /// Lowest accepted.
        min: u32,
        /// Highest accepted.
        max: u32,
    },
    /// The client proof does not match the stored key: wrong password.
    #[error("wrong password")]
    BadProof,
    /// The server signature does not verify: this server does not know the account's secret.
    #[error(
        "the server's SCRAM signature does not verify (not the server this account was made on?)"
    )]
    BadServerSignature,
    /// The server sent `e=…` in its final message.
    #[error("the server refused the SCRAM exchange: {}", crate::sanitize::Sanitized(.0))]
    ServerError(String),
    /// The operating system's random source failed.
    #[error("no randomness available for a SCRAM nonce")]
    Random,
}

/// What the server stores per account: enough to check a proof and to sign, never the password.
#[derive(Clone, PartialEq, Eq)]
pub struct Verifier {
    /// PBKDF2 salt.
    pub salt: Vec<u8>,
    /// PBKDF2 iterations.
    pub iterations: u32,
    /// H(ClientKey).
    pub stored_key: [u8; 32],
    /// HMAC(SaltedPassword, "Server Key").
    pub server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Verifier")
            .field("iterations", &self.iterations)
            .finish_non_exhaustive()
    }
}

/// The keys derived from a password and salt (RFC 5802 §3). Clients may keep these to avoid
/// running PBKDF2 again for the same salt and iteration count.
#[derive(Clone, PartialEq, Eq)]
pub struct ClientKeys {
    client_key: [u8; 32],
    server_key: [u8; 32],
}

impl std::fmt::Debug for ClientKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ClientKeys(..)")
    }
}

impl ClientKeys {
    /// Runs PBKDF2-HMAC-SHA-256 over the password and derives ClientKey and ServerKey.
    pub fn derive(password: &str, salt: &[u8], iterations: u32) -> Self {
        let mut salted = [0u8; 32];
        pbkdf2::pbkdf2_hmac::<Sha256>(password.as_bytes(), salt, iterations, &mut salted);
        Self {
            client_key: hmac(&salted, b"Client Key"),
            server_key: hmac(&salted, b"Server Key"),
        }
    }

    /// StoredKey = H(ClientKey).
    pub fn stored_key(&self) -> [u8; 32] {
        Sha256::digest(self.client_key).into()
    }
}

/// Derives the verifier a `Register` frame carries.
pub fn derive_verifier(password: &str, salt: &[u8], iterations: u32) -> Verifier {
    let keys = ClientKeys::derive(password, salt, iterations);
    Verifier {
        salt: salt.to_vec(),
        iterations,
        stored_key: keys.stored_key(),
        server_key: keys.server_key,
    }
}

/// The verifier of a name that has no account, answered in its place so that a login attempt
/// cannot tell which names exist (RFC 5802 §9 suggests this): a salt and keys derived from the
/// server's `secret` and the name's `user_key` (the same on every attempt, and the same on every
/// instance that shares the secret, as a real account's are), 16 bytes of salt like a real one,
/// `iterations` like the accounts clients register. No password gives its `stored_key`, so
/// the proof fails as a wrong password does.
pub fn decoy_verifier(secret: &[u8], user_key: &str, iterations: u32) -> Verifier {
    let part = |what: &str| hmac(secret, format!("gc decoy {what}\0{user_key}").as_bytes());
    let salt = part("salt");
    Verifier {
        salt: salt[..16].to_vec(),
        iterations,
        stored_key: part("stored key"),
        server_key: part("server key"),
    }
}

/// 16 random bytes for a new account's salt.
pub fn random_salt() -> Result<[u8; 16], ScramError> {
    let mut salt = [0u8; 16];
    getrandom::fill(&mut salt).map_err(|_| ScramError::Random)?;
    Ok(salt)
}

/// A fresh nonce: 18 random bytes as 24 base64 characters (never contains `,`).
pub fn random_nonce() -> Result<String, ScramError> {
    let mut bytes = [0u8; 18];
    getrandom::fill(&mut bytes).map_err(|_| ScramError::Random)?;
    Ok(B64.encode(bytes))
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so `new_from_slice` cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(mac) => mac,
        Err(_) => unreachable!("HMAC takes keys of any length"),
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

fn printable_nonce(nonce: &str) -> bool {
    !nonce.is_empty()
        && nonce
            .bytes()
            .all(|b| (0x21..=0x7e).contains(&b) && b != b',')
}

/// Splits `a=…,b=…` attributes, checking the expected names in order; extensions are refused.
fn attributes<'a, const N: usize>(
    message: &'a str,
    names: [char; N],
    what: &'static str,
) -> Result<[&'a str; N], ScramError> {
    let mut out = [""; N];
    let mut parts = message.split(',');
    for (slot, name) in out.iter_mut().zip(names) {
        let part = parts.next().ok_or(ScramError::Malformed(what))?;
        let mut chars = part.chars();
        if chars.next() != Some(name) || chars.next() != Some('=') {
            return Err(ScramError::Malformed(what));
        }
        *slot = &part[2..];
    }
    if parts.next().is_some() {
        return Err(ScramError::Malformed(what));
    }
    Ok(out)
}

// ───────────────────────────── client side ─────────────────────────────

/// The client after sending client-first, waiting for server-first.
#[derive(Debug)]
pub struct ClientFirst {
    message: String,
    nonce: String,
    binding: Binding,
}

impl ClientFirst {
    /// Starts an unbound exchange for `username` with a random nonce.
    pub fn new(username: &str) -> Result<Self, ScramError> {
        Self::bound(username, Binding::Unbound)
    }

    /// Starts an exchange for `username` bound to `binding`, with a random nonce.
    pub fn bound(username: &str, binding: Binding) -> Result<Self, ScramError> {
        Ok(Self::with_nonce_bound(username, &random_nonce()?, binding))
    }

    /// Starts an unbound exchange with a given nonce (tests and test vectors).
    pub fn with_nonce(username: &str, nonce: &str) -> Self {
        Self::with_nonce_bound(username, nonce, Binding::Unbound)
    }

    fn with_nonce_bound(username: &str, nonce: &str, binding: Binding) -> Self {
        Self {
            message: format!("{}n={username},r={nonce}", binding.gs2_header()),
            nonce: nonce.to_owned(),
            binding,
        }
    }

    /// The client-first message to send.
    pub fn message(&self) -> &str {
        &self.message
    }

    fn bare(&self) -> &str {
        &self.message[self.binding.gs2_header().len()..]
    }

    /// Checks server-first and computes the proof with `password`. Iteration counts outside
    /// `min_iterations..=MAX_SCRAM_ITERATIONS` are refused before any work is done.
    pub fn handle_server_first(
        self,
        server_first: &str,
        password: &str,
        min_iterations: u32,
    ) -> Result<ClientFinal, ScramError> {
        let challenge = ServerChallenge::parse(server_first)?;
        challenge.check(&self.nonce, min_iterations)?;
        let keys = ClientKeys::derive(password, &challenge.salt, challenge.iterations);
        Ok(self.finish(server_first, &challenge, &keys))
    }

    /// Like [`ClientFirst::handle_server_first`], with keys derived earlier for this salt and count.
    pub fn handle_server_first_with_keys(
        self,
        server_first: &str,
        keys: &ClientKeys,
        min_iterations: u32,
    ) -> Result<ClientFinal, ScramError> {
        let challenge = ServerChallenge::parse(server_first)?;
        challenge.check(&self.nonce, min_iterations)?;
        Ok(self.finish(server_first, &challenge, keys))
    }

    fn finish(
        &self,
        server_first: &str,
        challenge: &ServerChallenge<'_>,
        keys: &ClientKeys,
    ) -> ClientFinal {
        let without_proof = format!("c={},r={}", self.binding.c_value(), challenge.nonce);
        let auth_message = format!("{},{server_first},{without_proof}", self.bare());
        let signature = hmac(&keys.stored_key(), auth_message.as_bytes());
        let mut proof = keys.client_key;
        for (p, s) in proof.iter_mut().zip(signature) {
            *p ^= s;
        }
        ClientFinal {
            message: format!("{without_proof},p={}", B64.encode(proof)),
            server_signature: hmac(&keys.server_key, auth_message.as_bytes()),
        }
    }
}

/// Parsed server-first: `r=<nonce>,s=<salt>,i=<iterations>`.
#[derive(Debug)]
pub struct ServerChallenge<'a> {
    /// Client nonce followed by server nonce.
    pub nonce: &'a str,
    /// The account's salt.
    pub salt: Vec<u8>,
    /// The account's iteration count.
    pub iterations: u32,
}

impl<'a> ServerChallenge<'a> {
    /// Parses a server-first message.
    pub fn parse(server_first: &'a str) -> Result<Self, ScramError> {
        const WHAT: &str = "server-first must be r=…,s=…,i=…";
        let [nonce, salt, iterations] = attributes(server_first, ['r', 's', 'i'], WHAT)?;
        if !printable_nonce(nonce) {
            return Err(ScramError::Malformed(WHAT));
        }
        let salt = B64.decode(salt).map_err(|_| ScramError::Malformed(WHAT))?;
        if salt.is_empty() {
            return Err(ScramError::Malformed(WHAT));
        }
        let iterations = crate::types::parse_u32(iterations)
            .map_err(|_| ScramError::Malformed("server-first iteration count"))?;
        Ok(Self {
            nonce,
            salt,
            iterations,
        })
    }

    fn check(&self, client_nonce: &str, min_iterations: u32) -> Result<(), ScramError> {
        if !self.nonce.starts_with(client_nonce) || self.nonce.len() == client_nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        if !(min_iterations..=MAX_SCRAM_ITERATIONS).contains(&self.iterations) {
            return Err(ScramError::Iterations {
                got: self.iterations,
                min: min_iterations,
                max: MAX_SCRAM_ITERATIONS,
            });
        }
        Ok(())
    }
}

/// The client after computing its proof, holding the signature it expects from the server.
#[derive(Clone, Debug)]
pub struct ClientFinal {
    message: String,
    server_signature: [u8; 32],
}

impl ClientFinal {
    /// The client-final message to send.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Verifies server-final (`v=<signature>`): mutual authentication. Must pass before the client
    /// trusts the session.
    pub fn verify_server_final(&self, server_final: &str) -> Result<(), ScramError> {
        if let Some(error) = server_final.strip_prefix("e=") {
            return Err(ScramError::ServerError(
                error.chars().take(200).collect::<String>(),
            ));
        }
        let [v] = attributes(server_final, ['v'], "server-final must be v=…")?;
        let signature = B64
            .decode(v)
            .map_err(|_| ScramError::Malformed("server-final signature is not base64"))?;
        if ct_eq(&signature, &self.server_signature) {
            Ok(())
        } else {
            Err(ScramError::BadServerSignature)
        }
    }
}

// ───────────────────────────── server side ─────────────────────────────

/// A parsed client-first message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ClientHello {
    /// The SCRAM username (`n=`).
    pub username: String,
    /// The client's nonce.
    pub nonce: String,
    bare: String,
    /// The `c=` value client-final must carry.
    c_value: String,
    /// Whether that value binds the exchange to a TLS session.
    bound: bool,
}

impl ClientHello {
    /// Parses an unbound client-first: `n,,n=<user>,r=<nonce>`.
    pub fn parse(client_first: &str) -> Result<Self, ScramError> {
        Self::parse_bound(client_first, &Binding::Unbound)
    }

    /// Parses client-first on a connection whose binding is `expected` (its TLS session's
    /// exported value, or none on plain GC/1). A client that does not bind on TLS, or binds on a
    /// plain connection, is refused: either is what a relay in between would cause.
    pub fn parse_bound(client_first: &str, expected: &Binding) -> Result<Self, ScramError> {
        const WHAT: &str = "client-first must be n,,n=…,r=…";
        let header = expected.gs2_header();
        let Some(bare) = client_first.strip_prefix(header) else {
            let tls = matches!(expected, Binding::TlsExporter(_));
            return Err(
                if tls && (client_first.starts_with("n,") || client_first.starts_with("y,")) {
                    ScramError::BindingRequired
                } else if !tls && client_first.starts_with(GS2_TLS_EXPORTER) {
                    ScramError::UnexpectedBinding
                } else {
                    ScramError::Gs2Header
                },
            );
        };
        let [username, nonce] = attributes(bare, ['n', 'r'], WHAT)?;
        if username.is_empty() || username.contains('=') || !printable_nonce(nonce) {
            return Err(ScramError::Malformed(WHAT));
        }
        Ok(Self {
            username: username.to_owned(),
            nonce: nonce.to_owned(),
            bare: bare.to_owned(),
            c_value: expected.c_value(),
            bound: matches!(expected, Binding::TlsExporter(_)),
        })
    }
}

/// The server after sending server-first, waiting for client-final.
#[derive(Debug)]
pub struct ServerFirst {
    message: String,
    auth_prefix: String,
    nonce: String,
    c_value: String,
    bound: bool,
    stored_key: [u8; 32],
    server_key: [u8; 32],
}

impl ServerFirst {
    /// Answers a client-first for the account `verifier` with a random server nonce.
    pub fn new(hello: &ClientHello, verifier: &Verifier) -> Result<Self, ScramError> {
        Ok(Self::with_nonce(hello, verifier, &random_nonce()?))
    }

    /// Answers with a given server nonce (tests and test vectors).
    pub fn with_nonce(hello: &ClientHello, verifier: &Verifier, server_nonce: &str) -> Self {
        let nonce = format!("{}{server_nonce}", hello.nonce);
        let message = format!(
            "r={nonce},s={},i={}",
            B64.encode(&verifier.salt),
            verifier.iterations
        );
        Self {
            auth_prefix: format!("{},{message}", hello.bare),
            message,
            nonce,
            c_value: hello.c_value.clone(),
            bound: hello.bound,
            stored_key: verifier.stored_key,
            server_key: verifier.server_key,
        }
    }

    /// The server-first message to send.
    pub fn message(&self) -> &str {
        &self.message
    }

    /// Checks client-final. On a valid proof returns server-final (`v=<signature>`).
    pub fn handle_client_final(&self, client_final: &str) -> Result<String, ScramError> {
        const WHAT: &str = "client-final must be c=…,r=…,p=…";
        let [binding, nonce, proof] = attributes(client_final, ['c', 'r', 'p'], WHAT)?;
        // Constant time like the other comparisons, though whoever could time it already
        // knows both TLS sessions' exporter values (it is an end of each).
        if !ct_eq(binding.as_bytes(), self.c_value.as_bytes()) {
            // Same header, other data: the client's TLS session is not this one.
            return Err(if self.bound {
                ScramError::BindingMismatch
            } else {
                ScramError::Gs2Header
            });
        }
        if nonce != self.nonce {
            return Err(ScramError::NonceMismatch);
        }
        let proof = B64
            .decode(proof)
            .map_err(|_| ScramError::Malformed("client proof is not base64"))?;
        if proof.len() != 32 {
            return Err(ScramError::Malformed("client proof must be 32 bytes"));
        }
        // Everything before ",p=" is client-final-without-proof.
        let without_proof = &client_final[..client_final.len() - proof_suffix_len(client_final)];
        let auth_message = format!("{},{without_proof}", self.auth_prefix);
        let signature = hmac(&self.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for ((k, p), s) in client_key.iter_mut().zip(&proof).zip(signature) {
            *k = p ^ s;
        }
        let stored: [u8; 32] = Sha256::digest(client_key).into();
        if !ct_eq(&stored, &self.stored_key) {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.server_key, auth_message.as_bytes());
        Ok(format!("v={}", B64.encode(server_signature)))
    }
}

// ───────────────────────────── password change (GC/4) ─────────────────────────────

/// A fresh nonce for a password change's `Challenge`.
pub fn random_challenge_nonce() -> Result<[u8; crate::limits::CHALLENGE_NONCE_BYTES], ScramError> {
    let mut nonce = [0u8; crate::limits::CHALLENGE_NONCE_BYTES];
    getrandom::fill(&mut nonce).map_err(|_| ScramError::Random)?;
    Ok(nonce)
}

/// What a password change's proof covers: the account (its case-folded name), the server's
/// single-use nonce, and the whole new verifier. A proof thus counts for that one change only:
/// it cannot be replayed (the nonce is spent), nor moved onto another verifier.
pub fn passwd_message(user_key: &str, nonce: &[u8], new: &Verifier) -> String {
    format!(
        "gc-passwd,n={user_key},r={},s={},i={},k={},v={}",
        B64.encode(nonce),
        B64.encode(&new.salt),
        new.iterations,
        B64.encode(new.stored_key),
        B64.encode(new.server_key)
    )
}

/// The proof of the current password for a password change: as a SCRAM proof (RFC 5802 §3),
/// `ClientKey XOR HMAC(StoredKey, message)` with the keys of the current password and
/// [`passwd_message`] as the AuthMessage.
pub fn passwd_proof(current: &ClientKeys, message: &str) -> [u8; 32] {
    let signature = hmac(&current.stored_key(), message.as_bytes());
    let mut proof = current.client_key;
    for (p, s) in proof.iter_mut().zip(signature) {
        *p ^= s;
    }
    proof
}

/// Whether `proof` proves the password whose StoredKey is `stored_key` over `message`: the
/// ClientKey it gives back hashes to the StoredKey (compared in constant time). Only someone
/// who knows the password (or its ClientKey) can make one; the StoredKey the server holds is
/// not enough.
pub fn verify_passwd_proof(stored_key: &[u8; 32], message: &str, proof: &[u8]) -> bool {
    if proof.len() != 32 {
        return false;
    }
    let signature = hmac(stored_key, message.as_bytes());
    let client_key: Vec<u8> = proof.iter().zip(signature).map(|(p, s)| p ^ s).collect();
    let digest: [u8; 32] = Sha256::digest(&client_key).into();
    ct_eq(&digest, stored_key)
}

/// Length of the `,p=…` suffix of a client-final message that `attributes` accepted.
fn proof_suffix_len(client_final: &str) -> usize {
    client_final
        .rfind(",p=")
        .map_or(0, |i| client_final.len() - i)
}

/// The iteration count the server requires at least (configurable upwards).
pub const DEFAULT_MIN_ITERATIONS: u32 = MIN_SCRAM_ITERATIONS;

#[cfg(test)]
mod tests {
    use super::*;

    // RFC 7677 §3.
    const USER: &str = "user";
    const PASSWORD: &str = "pencil";
    const CLIENT_NONCE: &str = "rOprNGfwEbeRWgbNEkqO";
    const SERVER_NONCE: &str = "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0";
    const SALT_B64: &str = "W22ZaJ0SNY7soEsUEjb6gQ==";
    const CLIENT_FIRST: &str = "n,,n=user,r=rOprNGfwEbeRWgbNEkqO";
    const SERVER_FIRST: &str =
        "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
    const CLIENT_FINAL: &str = "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=";
    const SERVER_FINAL: &str = "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=";

    fn verifier() -> Verifier {
        derive_verifier(PASSWORD, &B64.decode(SALT_B64).unwrap(), 4096)
    }

    #[test]
    fn a_password_change_is_proved_by_the_current_password_only() {
        let salt = B64.decode(SALT_B64).unwrap();
        let current = verifier();
        let new = derive_verifier("new password", b"another salt 16b", 4096);
        let message = passwd_message("user", b"nonce", &new);
        assert_eq!(
            message,
            format!(
                "gc-passwd,n=user,r=bm9uY2U=,s=YW5vdGhlciBzYWx0IDE2Yg==,i=4096,k={},v={}",
                B64.encode(new.stored_key),
                B64.encode(new.server_key)
            )
        );
        let keys = ClientKeys::derive(PASSWORD, &salt, 4096);
        let proof = passwd_proof(&keys, &message);
        assert!(verify_passwd_proof(&current.stored_key, &message, &proof));
        // Another password, another nonce, another new verifier, a cut proof: refused.
        let wrong = passwd_proof(&ClientKeys::derive("guess", &salt, 4096), &message);
        assert!(!verify_passwd_proof(&current.stored_key, &message, &wrong));
        let replayed = passwd_message("user", b"other", &new);
        assert!(!verify_passwd_proof(&current.stored_key, &replayed, &proof));
        let swapped = derive_verifier("mallory's", b"another salt 16b", 4096);
        let moved = passwd_message("user", b"nonce", &swapped);
        assert!(!verify_passwd_proof(&current.stored_key, &moved, &proof));
        assert!(!verify_passwd_proof(
            &current.stored_key,
            &message,
            &proof[..31]
        ));
        // The StoredKey alone (what the server holds) does not make a proof: without the
        // ClientKey, the best guess is the signature itself, which is refused.
        let from_stored = hmac(&current.stored_key, message.as_bytes());
        assert!(!verify_passwd_proof(
            &current.stored_key,
            &message,
            &from_stored
        ));
    }

    #[test]
    fn rfc7677_client_side() {
        let first = ClientFirst::with_nonce(USER, CLIENT_NONCE);
        assert_eq!(first.message(), CLIENT_FIRST);
        let fin = first
            .handle_server_first(SERVER_FIRST, PASSWORD, 4096)
            .unwrap();
        assert_eq!(fin.message(), CLIENT_FINAL);
        fin.verify_server_final(SERVER_FINAL).unwrap();
    }

    #[test]
    fn rfc7677_server_side() {
        let hello = ClientHello::parse(CLIENT_FIRST).unwrap();
        assert_eq!(hello.username, USER);
        let server = ServerFirst::with_nonce(&hello, &verifier(), SERVER_NONCE);
        assert_eq!(server.message(), SERVER_FIRST);
        assert_eq!(
            server.handle_client_final(CLIENT_FINAL).unwrap(),
            SERVER_FINAL
        );
    }

    #[test]
    fn wrong_password_is_bad_proof() {
        let hello = ClientHello::parse(CLIENT_FIRST).unwrap();
        let server = ServerFirst::with_nonce(&hello, &verifier(), SERVER_NONCE);
        let fin = ClientFirst::with_nonce(USER, CLIENT_NONCE)
            .handle_server_first(server.message(), "pencil2", 4096)
            .unwrap();
        assert_eq!(
            server.handle_client_final(fin.message()),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn a_decoy_looks_like_an_account_and_takes_no_password() {
        let decoy = decoy_verifier(b"secret", "nobody", 4096);
        assert_eq!(
            decoy,
            decoy_verifier(b"secret", "nobody", 4096),
            "the same every time"
        );
        assert_eq!((decoy.salt.len(), decoy.iterations), (16, 4096));
        assert_ne!(decoy.salt, decoy_verifier(b"secret", "nobody2", 4096).salt);
        assert_ne!(decoy.salt, decoy_verifier(b"other", "nobody", 4096).salt);
        let hello = ClientHello::parse(CLIENT_FIRST).unwrap();
        let server = ServerFirst::with_nonce(&hello, &decoy, SERVER_NONCE);
        let fin = ClientFirst::with_nonce(USER, CLIENT_NONCE)
            .handle_server_first(server.message(), PASSWORD, 4096)
            .unwrap();
        assert_eq!(
            server.handle_client_final(fin.message()),
            Err(ScramError::BadProof),
            "fails as a wrong password does"
        );
    }

    #[test]
    fn impostor_server_fails_mutual_auth() {
        // A server that does not know the real verifier cannot produce the signature.
        let fin = ClientFirst::with_nonce(USER, CLIENT_NONCE)
            .handle_server_first(SERVER_FIRST, PASSWORD, 4096)
            .unwrap();
        assert_eq!(
            fin.verify_server_final("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(ScramError::BadServerSignature)
        );
        assert!(matches!(
            fin.verify_server_final("e=other-error"),
            Err(ScramError::ServerError(_))
        ));
        assert!(matches!(
            fin.verify_server_final("x=1"),
            Err(ScramError::Malformed(_))
        ));
    }

    #[test]
    fn random_round_trip() {
        let salt = random_salt().unwrap();
        let v = derive_verifier("s3cret é", &salt, 4096);
        let first = ClientFirst::new("alice").unwrap();
        let hello = ClientHello::parse(first.message()).unwrap();
        let server = ServerFirst::new(&hello, &v).unwrap();
        let fin = first
            .handle_server_first(server.message(), "s3cret é", 4096)
            .unwrap();
        let server_final = server.handle_client_final(fin.message()).unwrap();
        fin.verify_server_final(&server_final).unwrap();
    }

    #[test]
    fn client_refuses_weak_or_foreign_challenges() {
        let first = || ClientFirst::with_nonce(USER, CLIENT_NONCE);
        let low = "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=1000";
        assert!(matches!(
            first().handle_server_first(low, PASSWORD, 4096),
            Err(ScramError::Iterations { got: 1000, .. })
        ));
        let huge = "r=rOprNGfwEbeRWgbNEkqOxyz,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4000000000";
        assert!(matches!(
            first().handle_server_first(huge, PASSWORD, 4096),
            Err(ScramError::Iterations { .. })
        ));
        let foreign = "r=someoneelse,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(
            first()
                .handle_server_first(foreign, PASSWORD, 4096)
                .unwrap_err(),
            ScramError::NonceMismatch
        );
        let same = "r=rOprNGfwEbeRWgbNEkqO,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(
            first()
                .handle_server_first(same, PASSWORD, 4096)
                .unwrap_err(),
            ScramError::NonceMismatch
        );
        for bad in [
            "",
            "r=x",
            "s=a,r=b,i=1",
            "r=rOprNGfwEbeRWgbNEkqOx,s=!!,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=,i=4096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=04096",
            "r=rOprNGfwEbeRWgbNEkqOx,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096,x=1",
        ] {
            assert!(
                matches!(
                    first().handle_server_first(bad, PASSWORD, 4096),
                    Err(ScramError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn server_refuses_bad_client_messages() {
        assert_eq!(
            ClientHello::parse("y,,n=user,r=abc"),
            Err(ScramError::Gs2Header)
        );
        assert_eq!(
            ClientHello::parse("p=tls-unique,,n=user,r=abc"),
            Err(ScramError::Gs2Header)
        );
        for bad in [
            "n,,",
            "n,,n=,r=abc",
            "n,,r=abc,n=user",
            "n,,n=user",
            "n,,n=us=2Cer,r=abc",
            "n,,n=user,r=a,b",
            "n,,n=user,r=abc,m=ext",
        ] {
            assert!(
                matches!(ClientHello::parse(bad), Err(ScramError::Malformed(_))),
                "{bad:?}"
            );
        }
        let hello = ClientHello::parse(CLIENT_FIRST).unwrap();
        let server = ServerFirst::with_nonce(&hello, &verifier(), SERVER_NONCE);
        let cases = [
            (
                "c=eSws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                ScramError::Gs2Header,
            ),
            (
                "c=biws,r=rOprNGfwEbeRWgbNEkqO,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=",
                ScramError::NonceMismatch,
            ),
        ];
        for (msg, err) in cases {
            assert_eq!(server.handle_client_final(msg), Err(err), "{msg:?}");
        }
        for bad in [
            "",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=!!",
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=AAAA",
        ] {
            assert!(
                matches!(
                    server.handle_client_final(bad),
                    Err(ScramError::Malformed(_))
                ),
                "{bad:?}"
            );
        }
    }

    fn bound_exchange(client: Binding, server: &Binding, password: &str) -> Result<(), ScramError> {
        let first = ClientFirst::bound(USER, client)?;
        let hello = ClientHello::parse_bound(first.message(), server)?;
        let server_first = ServerFirst::new(&hello, &verifier())?;
        let fin = first.handle_server_first(server_first.message(), password, 4096)?;
        let server_final = server_first.handle_client_final(fin.message())?;
        fin.verify_server_final(&server_final)
    }

    #[test]
    fn a_login_bound_to_the_same_tls_session_verifies() {
        let session = Binding::TlsExporter([7; 32]);
        bound_exchange(session.clone(), &session, PASSWORD).unwrap();
        let first = ClientFirst::bound(USER, session).unwrap();
        assert!(first.message().starts_with("p=tls-exporter,,n=user,r="));
        // A wrong password is still just that.
        assert_eq!(
            bound_exchange(
                Binding::TlsExporter([7; 32]),
                &Binding::TlsExporter([7; 32]),
                "x"
            ),
            Err(ScramError::BadProof)
        );
    }

    #[test]
    fn a_relayed_login_fails_whatever_the_relay_does() {
        // The relay terminates TLS: two sessions, two exported values.
        assert_eq!(
            bound_exchange(
                Binding::TlsExporter([1; 32]),
                &Binding::TlsExporter([2; 32]),
                PASSWORD
            ),
            Err(ScramError::BindingMismatch)
        );
        // It strips the binding (a downgrade) towards a TLS server…
        assert_eq!(
            bound_exchange(Binding::Unbound, &Binding::TlsExporter([2; 32]), PASSWORD),
            Err(ScramError::BindingRequired)
        );
        // …or forwards a bound login to the server over plain TCP.
        assert_eq!(
            bound_exchange(Binding::TlsExporter([1; 32]), &Binding::Unbound, PASSWORD),
            Err(ScramError::UnexpectedBinding)
        );
        // The `y` flag ("I could bind, but you seem not to") is a downgrade too.
        assert_eq!(
            ClientHello::parse_bound("y,,n=user,r=abc", &Binding::TlsExporter([2; 32])),
            Err(ScramError::BindingRequired)
        );
        // A client-final claiming another session's data under the right header.
        let session = Binding::TlsExporter([3; 32]);
        let hello = ClientHello::parse_bound("p=tls-exporter,,n=user,r=abc", &session).unwrap();
        let server_first = ServerFirst::with_nonce(&hello, &verifier(), "xyz");
        let forged_c = Binding::TlsExporter([4; 32]).c_value();
        let client_final = format!("c={forged_c},r=abcxyz,p={}", B64.encode([0u8; 32]));
        assert_eq!(
            server_first.handle_client_final(&client_final),
            Err(ScramError::BindingMismatch)
        );
    }
}
