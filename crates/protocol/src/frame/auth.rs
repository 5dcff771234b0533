//! 9281, the auth port: SCRAM login and registration.

use std::sync::LazyLock;

use super::codec::{Fields, Writer};
use super::{ErrorFrame, Frame, ParseError};
use crate::codes::{SessionLevel, VERSION_GC4, VERSION_GC5, VERSION_ROOMS, token};

use crate::types::Fingerprint;
use crate::types::Username;

// What `AuthRequest`'s last optional field may hold, when it holds something else.
static VERSION_RULE: LazyLock<String> = LazyLock::new(|| {
    format!(
        "must be {VERSION_ROOMS}, {VERSION_GC4} or {VERSION_GC5}; the optional fields are a \
         callback fingerprint (SHA256:...), then {VERSION_ROOMS}, {VERSION_GC4} or {VERSION_GC5}"
    )
});

/// How a callback fingerprint starts; [`VERSION_ROOMS`] and [`VERSION_GC4`] do not, so the optional fields of
/// `AuthRequest` are told apart by shape.
const FINGERPRINT_PREFIX: &str = "SHA256:";

/// The three ports a client listens on, sent in `AuthRequest`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct CallbackPorts {
    /// Auth callback (`Authed`), default 12090.
    pub auth: u16,
    /// Heartbeat (`Ping`), default 8070.
    pub heartbeat: u16,
    /// Delivery (`Batch`), default 6090.
    pub delivery: u16,
}

/// Frames a client sends on the auth port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthClient {
    /// `AuthRequest <username> <auth-port> <heartbeat-port> <delivery-port> <client-first:b64>
    /// [<callback-fingerprint>] [GC/3|GC/4]`: over TLS (GC/2) the callback fingerprint, and for
    /// a session with rooms the version `GC/3` (or `GC/4`, rooms and the GC/4 frames), each
    /// written only when there is one (the fingerprint starts with `SHA256:`, so each optional
    /// field is known by its shape).
    AuthRequest {
        /// Who logs in.
        username: Username,
        /// Where the server calls back.
        ports: CallbackPorts,
        /// The SCRAM client-first message (decoded from base64).
        client_first: String,
        /// GC/2: the fingerprint of the certificate the client's callback listeners present; the
        /// server calls back only a listener presenting it.
        callback_fingerprint: Option<Fingerprint>,
        /// What the session speaks beyond its transport's version (the last field, `GC/3` or
        /// `GC/4`). Without it ([`SessionLevel::Base`]) the session sees `#general` only.
        level: SessionLevel,
    },
    /// `Proof <client-final:b64>`.
    Proof {
        /// The SCRAM client-final message (decoded from base64).
        client_final: String,
    },
    /// `Register <username> <salt:b64> <iterations> <stored-key:b64> <server-key:b64>`.
    Register {
        /// The account name.
        username: Username,
        /// The SCRAM salt, [`MIN_SCRAM_SALT_BYTES`](crate::limits::MIN_SCRAM_SALT_BYTES) to [`MAX_SCRAM_SALT_BYTES`](crate::limits::MAX_SCRAM_SALT_BYTES) bytes.
        salt: Vec<u8>,
        /// PBKDF2 iterations.
        iterations: u32,
        /// SCRAM StoredKey ([`SCRAM_KEY_BYTES`](crate::limits::SCRAM_KEY_BYTES) bytes).
        stored_key: Vec<u8>,
        /// SCRAM ServerKey ([`SCRAM_KEY_BYTES`](crate::limits::SCRAM_KEY_BYTES) bytes).
        server_key: Vec<u8>,
    },
}

impl Frame for AuthClient {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::AUTH_REQUEST => {
                let mut f = f.with_token(token::AUTH_REQUEST);
                let mut optional = f.arity_between(5, 7)?;
                let username = f.username("username")?;
                let ports = CallbackPorts {
                    auth: f.port("auth-port")?,
                    heartbeat: f.port("heartbeat-port")?,
                    delivery: f.port("delivery-port")?,
                };
                let client_first = f.b64_text("client-first")?;
                // Both optional fields: the fingerprint first. One: whichever its shape says.
                let callback_fingerprint = if optional == 2
                    || (optional == 1 && f.peek().starts_with(FINGERPRINT_PREFIX))
                {
                    optional -= 1;
                    Some(f.fingerprint("callback-fingerprint")?)
                } else {
                    None
                };
                let level = if optional == 1 {
                    SessionLevel::of_version(f.next())
                        .ok_or_else(|| f.value("version", &VERSION_RULE))?
                } else {
                    SessionLevel::Base
                };
                Ok(Self::AuthRequest {
                    username,
                    ports,
                    client_first,
                    callback_fingerprint,
                    level,
                })
            }
            token::PROOF => {
                let mut f = f.with_token(token::PROOF);
                f.arity(1)?;
                Ok(Self::Proof {
                    client_final: f.b64_text("client-final")?,
                })
            }
            token::REGISTER => {
                let mut f = f.with_token(token::REGISTER);
                f.arity(5)?;
                let username = f.username("username")?;
                Ok(Self::Register {
                    username,
                    salt: f.scram_salt("salt")?,
                    iterations: f.scram_iterations("iterations")?,
                    stored_key: f.scram_key("stored-key")?,
                    server_key: f.scram_key("server-key")?,
                })
            }
            _ => Err(f.unexpected("`AuthRequest`, `Proof` or `Register`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::AuthRequest {
                username,
                ports,
                client_first,
                callback_fingerprint,
                level,
            } => {
                let mut w = Writer::start(out, token::AUTH_REQUEST);
                w.word(username.as_str());
                w.num(ports.auth.into());
                w.num(ports.heartbeat.into());
                w.num(ports.delivery.into());
                w.b64(client_first.as_bytes());
                if let Some(fp) = callback_fingerprint {
                    w.display(fp);
                }
                if let Some(version) = level.version() {
                    w.word(version);
                }
                w.end();
            }
            Self::Proof { client_final } => {
                let mut w = Writer::start(out, token::PROOF);
                w.b64(client_final.as_bytes());
                w.end();
            }
            Self::Register {
                username,
                salt,
                iterations,
                stored_key,
                server_key,
            } => {
                let mut w = Writer::start(out, token::REGISTER);
                w.word(username.as_str());
                w.b64(salt);
                w.num((*iterations).into());
                w.b64(stored_key);
                w.b64(server_key);
                w.end();
            }
        }
    }
}

/// Frames the server sends on the auth port.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum AuthServer {
    /// `Auth1 <server-first:b64>`.
    Auth1 {
        /// The SCRAM server-first message (decoded from base64).
        server_first: String,
    },
    /// `Ok <heartbeat-interval-ms> <latest-id>`: logged in.
    Ok {
        /// How often the server will send heartbeats.
        heartbeat_ms: u32,
        /// The newest stored message id at login.
        latest_id: u64,
    },
    /// `Registered`: the account exists now.
    Registered,
    /// `Err …`.
    Err(ErrorFrame),
}

impl Frame for AuthServer {
    fn parse(line: &[u8]) -> Result<Self, ParseError> {
        let f = Fields::split(line)?;
        match f.token_str() {
            token::AUTH1 => {
                let mut f = f.with_token(token::AUTH1);
                f.arity(1)?;
                Ok(Self::Auth1 {
                    server_first: f.b64_text("server-first")?,
                })
            }
            token::OK => {
                let mut f = f.with_token(token::OK);
                f.arity(2)?;
                Ok(Self::Ok {
                    heartbeat_ms: f.u32("heartbeat-interval-ms")?,
                    latest_id: f.num("latest-id")?,
                })
            }
            token::REGISTERED => {
                f.with_token(token::REGISTERED).arity(0)?;
                Ok(Self::Registered)
            }
            token::ERR => ErrorFrame::parse_fields(f.with_token(token::ERR)).map(Self::Err),
            _ => Err(f.unexpected("`Auth1`, `Ok`, `Registered` or `Err`")),
        }
    }

    fn encode(&self, out: &mut Vec<u8>) {
        match self {
            Self::Auth1 { server_first } => {
                let mut w = Writer::start(out, token::AUTH1);
                w.b64(server_first.as_bytes());
                w.end();
            }
            Self::Ok {
                heartbeat_ms,
                latest_id,
            } => {
                let mut w = Writer::start(out, token::OK);
                w.num((*heartbeat_ms).into());
                w.num(*latest_id);
                w.end();
            }
            Self::Registered => Writer::start(out, token::REGISTERED).end(),
            Self::Err(e) => e.encode_into(out),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::codes::ErrorCode;
    use crate::frame::tests::{exact, user};

    #[test]
    fn auth_frames() {
        exact(
            AuthClient::AuthRequest {
                username: user("alice"),
                ports: CallbackPorts {
                    auth: 12090,
                    heartbeat: 8070,
                    delivery: 6090,
                },
                client_first: "n,,n=alice,r=abc".into(),
                callback_fingerprint: None,
                level: SessionLevel::Base,
            },
            "AuthRequest alice 12090 8070 6090 biwsbj1hbGljZSxyPWFiYw==\n",
        );
        // GC/2 (over TLS): the callback certificate's fingerprint as a sixth field.
        let fp = Fingerprint::of_der(b"certificate");
        exact(
            AuthClient::AuthRequest {
                username: user("alice"),
                ports: CallbackPorts {
                    auth: 12090,
                    heartbeat: 8070,
                    delivery: 6090,
                },
                client_first: "p=tls-exporter,,n=alice,r=abc".into(),
                callback_fingerprint: Some(fp),
                level: SessionLevel::Base,
            },
            &format!(
                "AuthRequest alice 12090 8070 6090 cD10bHMtZXhwb3J0ZXIsLG49YWxpY2Uscj1hYmM= {fp}\n"
            ),
        );
        let bad = b"AuthRequest alice 12090 8070 6090 biws SHA256:nope";
        assert!(matches!(
            AuthClient::parse(bad),
            Err(ParseError::Field {
                field: "callback-fingerprint",
                ..
            })
        ));
        // GC/3: the version as the last field, plain and over TLS.
        exact(
            AuthClient::AuthRequest {
                username: user("alice"),
                ports: CallbackPorts {
                    auth: 12090,
                    heartbeat: 8070,
                    delivery: 6090,
                },
                client_first: "n,,n=alice,r=abc".into(),
                callback_fingerprint: None,
                level: SessionLevel::Rooms,
            },
            "AuthRequest alice 12090 8070 6090 biwsbj1hbGljZSxyPWFiYw== GC/3\n",
        );
        exact(
            AuthClient::AuthRequest {
                username: user("alice"),
                ports: CallbackPorts {
                    auth: 12090,
                    heartbeat: 8070,
                    delivery: 6090,
                },
                client_first: "p=tls-exporter,,n=alice,r=abc".into(),
                callback_fingerprint: Some(fp),
                level: SessionLevel::Rooms,
            },
            &format!(
                "AuthRequest alice 12090 8070 6090 cD10bHMtZXhwb3J0ZXIsLG49YWxpY2Uscj1hYmM= {fp} GC/3\n"
            ),
        );
        // GC/4: the same place, the newer version.
        exact(
            AuthClient::AuthRequest {
                username: user("alice"),
                ports: CallbackPorts {
                    auth: 12090,
                    heartbeat: 8070,
                    delivery: 6090,
                },
                client_first: "n,,n=alice,r=abc".into(),
                callback_fingerprint: None,
                level: SessionLevel::Gc4,
            },
            "AuthRequest alice 12090 8070 6090 biwsbj1hbGljZSxyPWFiYw== GC/4\n",
        );
        exact(
            AuthClient::AuthRequest {
                username: user("alice"),
                ports: CallbackPorts {
                    auth: 12090,
                    heartbeat: 8070,
                    delivery: 6090,
                },
                client_first: "p=tls-exporter,,n=alice,r=abc".into(),
                callback_fingerprint: Some(fp),
                level: SessionLevel::Gc4,
            },
            &format!(
                "AuthRequest alice 12090 8070 6090 cD10bHMtZXhwb3J0ZXIsLG49YWxpY2Uscj1hYmM= {fp} GC/4\n"
            ),
        );
        exact(
            AuthClient::Proof {
                client_final: "c=biws".into(),
            },
            "Proof Yz1iaXdz\n",
        );
        exact(
            AuthClient::Register {
                username: user("bob"),
                salt: vec![0; 8],
                iterations: 4096,
                stored_key: vec![1; 32],
                server_key: vec![2; 32],
            },
            "Register bob AAAAAAAAAAA= 4096 AQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQEBAQE= AgICAgICAgICAgICAgICAgICAgICAgICAgICAgICAgI=\n",
        );
        exact(
            AuthServer::Auth1 {
                server_first: "r=abc,s=QQ==,i=4096".into(),
            },
            "Auth1 cj1hYmMscz1RUT09LGk9NDA5Ng==\n",
        );
        exact(
            AuthServer::Ok {
                heartbeat_ms: 1000,
                latest_id: 42,
            },
            "Ok 1000 42\n",
        );
        exact(AuthServer::Registered, "Registered\n");
        exact(
            AuthServer::Err(ErrorFrame::new(ErrorCode::UnknownUser, "")),
            "Err unknown-user -\n",
        );
    }

    fn parse(tail: &str) -> Result<AuthClient, ParseError> {
        AuthClient::parse(format!("AuthRequest alice 1 2 3 biws{tail}").as_bytes())
    }

    fn error(tail: &str) -> String {
        match parse(tail) {
            Ok(frame) => panic!("{tail:?} parsed as {frame:?}"),
            Err(e) => e.to_string(),
        }
    }

    #[test]
    fn each_optional_field_is_known_by_its_shape() {
        let fp = Fingerprint::of_der(b"certificate");
        for (tail, fingerprint, level) in [
            (String::new(), None, SessionLevel::Base),
            (format!(" {fp}"), Some(fp), SessionLevel::Base),
            (" GC/3".to_owned(), None, SessionLevel::Rooms),
            (format!(" {fp} GC/3"), Some(fp), SessionLevel::Rooms),
            (" GC/4".to_owned(), None, SessionLevel::Gc4),
            (format!(" {fp} GC/4"), Some(fp), SessionLevel::Gc4),
            (" GC/5".to_owned(), None, SessionLevel::Gc5),
            (format!(" {fp} GC/5"), Some(fp), SessionLevel::Gc5),
        ] {
            match parse(&tail) {
                Ok(AuthClient::AuthRequest {
                    callback_fingerprint,
                    level: l,
                    ..
                }) => assert_eq!((callback_fingerprint, l), (fingerprint, level), "{tail}"),
                other => panic!("{tail}: {other:?}"),
            }
        }
    }

    #[test]
    fn any_other_optional_field_is_refused_by_name() {
        let fp = Fingerprint::of_der(b"certificate");
        let version = "`AuthRequest` field <version>: must be GC/3, GC/4 or GC/5; the optional \
                       fields are a callback fingerprint (SHA256:...), then GC/3, GC/4 or GC/5";
        // A sixth field that is neither a fingerprint nor the version.
        for tail in [" GC/2", " gc/3", " GC/3.0", " GC/6", " -"] {
            assert_eq!(error(tail), version, "{tail}");
        }
        // The version after a fingerprint, and nothing else there.
        assert_eq!(error(&format!(" {fp} GC/2")), version);
        assert_eq!(error(&format!(" {fp} {fp}")), version);
        // Shaped as a fingerprint but not one, alone or first.
        let not_a_fingerprint = "`AuthRequest` field <callback-fingerprint>: not a certificate \
                                 fingerprint (SHA256: and 43 characters of base64)";
        assert_eq!(error(" SHA256:nope"), not_a_fingerprint);
        assert_eq!(error(" SHA256:nope GC/3"), not_a_fingerprint);
        // Both, in the wrong order: the first of two must be the fingerprint.
        assert_eq!(error(&format!(" GC/3 {fp}")), not_a_fingerprint);
    }

    #[test]
    fn arity_texts_name_the_optional_fields() {
        let fp = Fingerprint::of_der(b"certificate");
        assert_eq!(
            error(&format!(" {fp} GC/3 x")),
            "`AuthRequest` takes 5 to 7 field(s) after the token, got 8"
        );
        assert_eq!(
            AuthClient::parse(b"AuthRequest alice 1 2 3")
                .unwrap_err()
                .to_string(),
            "`AuthRequest` takes 5 to 7 field(s) after the token, got 4"
        );
    }
}
