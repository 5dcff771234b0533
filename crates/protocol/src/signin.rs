//! The sign-in of GC/1 as an explicit state machine over streams the caller supplies.
//!
//! Signing in crosses three connections: the version check on the server's connect port, the
//! SCRAM exchange on its auth port, and the server's callback to the client's auth port, which
//! arrives while the client waits for the answer to its proof. Each step here is a function or a
//! method of the state the previous step returned, so the steps can only run in order:
//!
//! ```text
//! version_check ─▶ ServerHello              (Ping GC/1 → Pong)
//! register ─────▶ ()                        (Register → Registered; optional)
//! request_login ─▶ Challenge                (AuthRequest → Auth1)
//! Challenge::prove ─▶ Proof                 (PBKDF2: the client's CPU, no I/O)
//! Proof::callback_check ─▶ CallbackCheck    (install it where the callback port is served)
//! Proof::send ─▶ AwaitingOk                 (Proof →; the server now calls back)
//! CallbackCheck::serve/check ─▶ token       (Authed → Thx, on the client's auth port)
//! AwaitingOk::finish ─▶ SignedIn            (→ Ok <heartbeat-ms> <latest-id>)
//! ```
//!
//! The caller owns every connection: it decides where to connect from, what to time, which
//! thread serves the callback, and what a failure means. Nothing here opens a socket. The client,
//! the benchmark (which times each step) and the end-to-end tests' raw client all sign in through
//! these functions.

use std::fmt;
use std::time::{Duration, Instant};

use crate::codes::{ErrorCode, Registration, SessionLevel, VERSION, VERSION_TLS};
use crate::error::ProtocolError;
use crate::frame::{
    AuthClient, AuthServer, Authed, CallbackPorts, CallbackReply, ConnectPing, ConnectReply,
    ErrorFrame,
};
use crate::io::{FramedStream, TimeoutStream};
use crate::limits::MAX_SCRAM_ITERATIONS;
use crate::sanitize::Sanitized;
use crate::scram::{
    Binding, ClientFinal, ClientFirst, ClientKeys, ScramError, ServerChallenge, Verifier,
    derive_verifier, random_salt,
};
use crate::texts;
use crate::types::{Fingerprint, SessionToken, Username};

/// Which exchange of the sign-in a failure belongs to.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Step {
    /// `Ping` → `Pong` on the connect port.
    VersionCheck,
    /// `Register` → `Registered` on the auth port.
    Registration,
    /// `AuthRequest` … `Ok` on the auth port, and the callback.
    Login,
}

impl Step {
    /// How errors name the step: `the version check`, `the registration`, `the login`.
    pub const fn as_str(self) -> &'static str {
        match self {
            Self::VersionCheck => "the version check",
            Self::Registration => "the registration",
            Self::Login => "the login",
        }
    }
}

impl fmt::Display for Step {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Why signing in failed. What to do differs by variant: a [`SignInError::Wire`] failure may be
/// retried; a refusal or a signature that does not verify will fail the same way again.
#[derive(Debug, thiserror::Error)]
pub enum SignInError {
    /// The connection failed during `step` (closed, timed out, malformed frame); retrying on a
    /// new connection may work.
    #[error("{step} failed")]
    Wire {
        /// Where.
        step: Step,
        /// The cause, naming the peer.
        #[source]
        source: ProtocolError,
    },
    /// The server answered `Err` (wrong password, unknown user, name taken, full, …).
    #[error("the server refused {step} ({}): {}", error.code, Sanitized(&error.text))]
    Refused {
        /// Where.
        step: Step,
        /// The server's error frame.
        error: ErrorFrame,
    },
    /// The server answered with a valid frame that is not allowed at this point.
    #[error("the server at {peer} broke the protocol: {}", Sanitized(detail))]
    Unexpected {
        /// The server's address.
        peer: String,
        /// What it did.
        detail: String,
    },
    /// The server announced another protocol version in `Pong` than the one asked for.
    #[error("the server speaks {}, not {asked}", Sanitized(announced))]
    Version {
        /// What was asked for.
        asked: &'static str,
        /// What it announced.
        announced: String,
    },
    /// The server's SCRAM challenge was unacceptable (nonce, syntax, iteration count outside
    /// what this side accepts): do not send a proof.
    #[error("the login exchange with the server failed")]
    Scram(#[source] ScramError),
    /// The server's signature on the auth callback did not verify: it does not know the
    /// account's secret. Never trust that session.
    #[error("the server's signature on the auth callback does not verify")]
    ServerSignature(#[source] ScramError),
    /// The operating system's random source failed (for a nonce or a salt).
    #[error("no randomness available from the operating system")]
    Random,
}

/// What the server said on its connect port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerHello {
    /// Its display name.
    pub name: String,
    /// Whether anyone may register.
    pub registration: Registration,
}

fn wire(step: Step) -> impl FnOnce(ProtocolError) -> SignInError {
    move |source| SignInError::Wire { step, source }
}

fn unexpected<S: TimeoutStream>(conn: &FramedStream<S>, detail: String) -> SignInError {
    SignInError::Unexpected {
        peer: conn.peer().to_owned(),
        detail,
    }
}

fn due(timeout: Duration) -> Instant {
    Instant::now() + timeout
}

/// The connection a login runs on: plain GC/1, or TLS (GC/2), which binds the login to the
/// session and tells the server which certificate the client's callback listeners present.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Channel {
    /// Plain GC/1.
    Plain,
    /// GC/2 over TLS.
    Tls {
        /// The TLS session's `tls-exporter` value (both ends compute the same).
        binding: [u8; 32],
        /// The fingerprint of the client's callback certificate.
        callback_fingerprint: Fingerprint,
    },
}

impl Channel {
    /// The version spoken on it: `GC/1` plain, `GC/2` over TLS.
    pub fn version(&self) -> &'static str {
        match self {
            Self::Plain => VERSION,
            Self::Tls { .. } => VERSION_TLS,
        }
    }

    fn binding(&self) -> Binding {
        match self {
            Self::Plain => Binding::Unbound,
            Self::Tls { binding, .. } => Binding::TlsExporter(*binding),
        }
    }
}

/// `Ping <version>` → `Pong <version> <name> <open|closed>` on the server's connect port, with
/// `version` [`VERSION`] on plain connections and [`VERSION_TLS`] over TLS. Each write and read
/// gets `timeout`.
pub fn version_check<S: TimeoutStream>(
    conn: &mut FramedStream<S>,
    version: &'static str,
    timeout: Duration,
) -> Result<ServerHello, SignInError> {
    let ping = ConnectPing {
        version: version.to_owned(),
    };
    conn.send(&ping, due(timeout))
        .map_err(wire(Step::VersionCheck))?;
    match conn
        .read::<ConnectReply>(due(timeout))
        .map_err(wire(Step::VersionCheck))?
    {
        ConnectReply::Pong {
            version: announced, ..
        } if announced != version => Err(SignInError::Version {
            asked: version,
            announced,
        }),
        ConnectReply::Pong {
            server_name,
            registration,
            ..
        } => Ok(ServerHello {
            name: server_name,
            registration,
        }),
        ConnectReply::Err(error) => Err(SignInError::Refused {
            step: Step::VersionCheck,
            error,
        }),
    }
}

/// `Register <username> <verifier>` → `Registered` on the auth port.
pub fn register<S: TimeoutStream>(
    conn: &mut FramedStream<S>,
    username: &Username,
    verifier: &Verifier,
    timeout: Duration,
) -> Result<(), SignInError> {
    let frame = AuthClient::Register {
        username: username.clone(),
        salt: verifier.salt.clone(),
        iterations: verifier.iterations,
        stored_key: verifier.stored_key.to_vec(),
        server_key: verifier.server_key.to_vec(),
    };
    conn.send(&frame, due(timeout))
        .map_err(wire(Step::Registration))?;
    match conn
        .read::<AuthServer>(due(timeout))
        .map_err(wire(Step::Registration))?
    {
        AuthServer::Registered => Ok(()),
        AuthServer::Err(error) => Err(SignInError::Refused {
            step: Step::Registration,
            error,
        }),
        other => Err(unexpected(
            conn,
            format!("answered `Register` with {other:?}"),
        )),
    }
}

/// Registers with a verifier derived here from `password` (which never leaves the client) with a
/// fresh salt and `iterations`. A server that wants more iterations says so in its refusal; that
/// is met once. Returns the iteration count the account was made with.
pub fn register_with_password<S: TimeoutStream>(
    conn: &mut FramedStream<S>,
    username: &Username,
    password: &str,
    iterations: u32,
    timeout: Duration,
) -> Result<u32, SignInError> {
    let mut iterations = iterations;
    for attempt in 0..2 {
        let salt = random_salt().map_err(|_| SignInError::Random)?;
        let verifier = derive_verifier(password, &salt, iterations);
        match register(conn, username, &verifier, timeout) {
            Ok(()) => return Ok(iterations),
            Err(SignInError::Refused { error, .. })
                if error.code == ErrorCode::Malformed && attempt == 0 =>
            {
                let wanted = texts::minimum_iterations(&error.text)
                    .filter(|&n| n > iterations && n <= MAX_SCRAM_ITERATIONS);
                match wanted {
                    Some(n) => iterations = n,
                    None => {
                        return Err(SignInError::Refused {
                            step: Step::Registration,
                            error,
                        });
                    }
                }
            }
            Err(e) => return Err(e),
        }
    }
    Err(unexpected(
        conn,
        "refused the registration twice over the iteration count".to_owned(),
    ))
}

/// `AuthRequest <username> <callback ports> <client-first>[ <callback-fingerprint>][ GC/3|GC/4]`
/// → `Auth1 <server-first>` on the auth port: the start of a SCRAM login, bound to `channel`.
/// `level` asks for a GC/3 session (rooms) or a GC/4 one; only a server that answered `Ping` of
/// that version with its `Pong` takes it.
pub fn request_login<S: TimeoutStream>(
    conn: &mut FramedStream<S>,
    username: &Username,
    ports: CallbackPorts,
    channel: &Channel,
    level: SessionLevel,
    timeout: Duration,
) -> Result<Challenge, SignInError> {
    let first = ClientFirst::bound(username.as_str(), channel.binding())
        .map_err(|_| SignInError::Random)?;
    let callback_fingerprint = match channel {
        Channel::Plain => None,
        Channel::Tls {
            callback_fingerprint,
            ..
        } => Some(*callback_fingerprint),
    };
    let request = AuthClient::AuthRequest {
        username: username.clone(),
        ports,
        client_first: first.message().to_owned(),
        callback_fingerprint,
        level,
    };
    conn.send(&request, due(timeout))
        .map_err(wire(Step::Login))?;
    match conn
        .read::<AuthServer>(due(timeout))
        .map_err(wire(Step::Login))?
    {
        AuthServer::Auth1 { server_first } => Ok(Challenge {
            first,
            server_first,
        }),
        AuthServer::Err(error) => Err(SignInError::Refused {
            step: Step::Login,
            error,
        }),
        other => Err(unexpected(
            conn,
            format!("answered `AuthRequest` with {other:?}"),
        )),
    }
}

/// The server's SCRAM challenge, waiting for the client's proof.
#[derive(Debug)]
pub struct Challenge {
    first: ClientFirst,
    server_first: String,
}

impl Challenge {
    /// The account's salt and iteration count, for a client that keeps derived keys
    /// ([`Challenge::prove_with_keys`]).
    pub fn salt_and_iterations(&self) -> Result<(Vec<u8>, u32), SignInError> {
        let challenge = ServerChallenge::parse(&self.server_first).map_err(SignInError::Scram)?;
        Ok((challenge.salt, challenge.iterations))
    }

    /// Computes the proof from `password` (PBKDF2). An iteration count outside
    /// `min_iterations..=MAX_SCRAM_ITERATIONS` is refused before any work is done, so a hostile
    /// server cannot make the client spin.
    pub fn prove(self, password: &str, min_iterations: u32) -> Result<Proof, SignInError> {
        let client_final = self
            .first
            .handle_server_first(&self.server_first, password, min_iterations)
            .map_err(SignInError::Scram)?;
        Ok(Proof { client_final })
    }

    /// Like [`Challenge::prove`] with keys derived earlier for this salt and iteration count.
    pub fn prove_with_keys(
        self,
        keys: &ClientKeys,
        min_iterations: u32,
    ) -> Result<Proof, SignInError> {
        let client_final = self
            .first
            .handle_server_first_with_keys(&self.server_first, keys, min_iterations)
            .map_err(SignInError::Scram)?;
        Ok(Proof { client_final })
    }
}

/// The client's proof, not sent yet.
#[derive(Debug)]
pub struct Proof {
    client_final: ClientFinal,
}

impl Proof {
    /// What the auth callback must prove. Install it wherever the callback port is served
    /// *before* [`Proof::send`]: the server calls back as soon as it has read the proof.
    pub fn callback_check(&self) -> CallbackCheck {
        CallbackCheck {
            client_final: self.client_final.clone(),
        }
    }

    /// Sends `Proof <client-final>`. The server now checks it, calls back, and then answers.
    pub fn send<S: TimeoutStream>(
        self,
        conn: &mut FramedStream<S>,
        timeout: Duration,
    ) -> Result<AwaitingOk, SignInError> {
        let proof = AuthClient::Proof {
            client_final: self.client_final.message().to_owned(),
        };
        conn.send(&proof, due(timeout)).map_err(wire(Step::Login))?;
        Ok(AwaitingOk { _sent: () })
    }
}

/// The signature the server's `Authed` callback must carry.
#[derive(Clone, Debug)]
pub struct CallbackCheck {
    client_final: ClientFinal,
}

impl CallbackCheck {
    /// The check for a proof computed with the SCRAM primitives directly (see
    /// [`Proof::callback_check`] for the usual way).
    pub fn new(client_final: ClientFinal) -> Self {
        Self { client_final }
    }

    /// Checks an `Authed` callback: the token is trusted only if the server's signature proves
    /// that it knows the account's secret. Returns the reply to send on the callback connection
    /// (`Thx`, or `Err auth` saying why) and the token or the reason it is not trusted.
    pub fn check(&self, authed: Authed) -> (CallbackReply, Result<SessionToken, ScramError>) {
        match self.client_final.verify_server_final(&authed.server_final) {
            Ok(()) => (CallbackReply::Thx, Ok(authed.token)),
            Err(e) => {
                let text = format!(
                    "{e}; this client does not trust this server with its account; not logging in"
                );
                (
                    CallbackReply::Err(ErrorFrame::new(ErrorCode::Auth, text)),
                    Err(e),
                )
            }
        }
    }

    /// Serves one callback connection: reads `Authed`, checks it, answers. Returns the session
    /// token once the server has proved itself.
    pub fn serve<S: TimeoutStream>(
        &self,
        conn: &mut FramedStream<S>,
        timeout: Duration,
    ) -> Result<SessionToken, SignInError> {
        let authed = conn
            .read::<Authed>(due(timeout))
            .map_err(wire(Step::Login))?;
        let (reply, result) = self.check(authed);
        conn.send(&reply, due(timeout)).map_err(wire(Step::Login))?;
        result.map_err(SignInError::ServerSignature)
    }
}

/// The proof is sent; the server's answer comes after its callback.
#[derive(Debug)]
pub struct AwaitingOk {
    _sent: (),
}

/// A finished sign-in.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SignedIn {
    /// The session token the callback carried.
    pub token: SessionToken,
    /// How often the server will send heartbeats.
    pub heartbeat_ms: u32,
    /// The newest message id at login.
    pub latest_id: u64,
}

impl AwaitingOk {
    /// Reads the answer to the proof (within `timeout`: it comes after the callback, which has a
    /// connect and an exchange of its own). Once it is read, `callback` is asked what the auth
    /// callback gave: a token that verified, why it did not, or nothing. By then the callback has
    /// come if it ever will, as the server answers only after it; the argument says whether the
    /// answer is `Ok` (if not, a caller still waiting for a callback can stop waiting).
    pub fn finish<S: TimeoutStream>(
        self,
        conn: &mut FramedStream<S>,
        timeout: Duration,
        callback: impl FnOnce(bool) -> Option<Result<SessionToken, ScramError>>,
    ) -> Result<SignedIn, SignInError> {
        let answer = conn
            .read::<AuthServer>(due(timeout))
            .map_err(wire(Step::Login));
        let callback = callback(matches!(answer, Ok(AuthServer::Ok { .. })));
        match answer? {
            AuthServer::Ok {
                heartbeat_ms,
                latest_id,
            } => match callback {
                Some(Ok(token)) => Ok(SignedIn {
                    token,
                    heartbeat_ms,
                    latest_id,
                }),
                _ => Err(unexpected(
                    conn,
                    "it answered `Ok` but never proved its identity on the auth callback"
                        .to_owned(),
                )),
            },
            // The server relays the client's refusal of its signature as `Err auth`: say why.
            AuthServer::Err(error) if error.code == ErrorCode::Auth => match callback {
                Some(Err(signature)) => Err(SignInError::ServerSignature(signature)),
                _ => Err(SignInError::Refused {
                    step: Step::Login,
                    error,
                }),
            },
            AuthServer::Err(error) => Err(SignInError::Refused {
                step: Step::Login,
                error,
            }),
            other => Err(unexpected(conn, format!("answered `Proof` with {other:?}"))),
        }
    }
}

#[cfg(test)]
mod tests;
