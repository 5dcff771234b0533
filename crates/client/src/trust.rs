//! Which server certificate this run trusts, from the command line, the known servers file and
//! `--with-server`; and what a front end does on first contact (headless: trust on first use, or
//! refuse with the fingerprint to check; the terminal UI asks, see `tui::ClientDriver`).

use std::path::PathBuf;

use gc_client_core::trust::{self, FirstContact, server_key};
use gc_client_core::{ClientConfig, ClientTls, KnownServers, PinSource, ServerPin};
use gc_protocol::Fingerprint;

use crate::cli::{Cli, TlsChoice};
use crate::error::AppError;

/// What the client trusts before it connects.
#[derive(Clone, Debug)]
pub enum ServerTrust {
    /// Plain GC/1 (`--tls off`).
    Off,
    /// This certificate only.
    Pinned(ServerPin),
    /// A server not seen before: its certificate is learned with a probe, then trusted (the user
    /// agreed, or `--trust-on-first-use`) and remembered in `known`.
    FirstContact {
        /// The known servers file, to remember the pin in.
        known: KnownServers,
        /// The server's key in it.
        key: String,
        /// Trust without asking (`--trust-on-first-use`).
        accept: bool,
    },
}

impl ServerTrust {
    /// The decision of the command line: `--tls off`; the local server's certificate
    /// (`local_cert`, with `--with-server`); `--trust-fingerprint`; the known servers file;
    /// otherwise first contact.
    pub fn decide(cli: &Cli, local_cert: Option<(PathBuf, Fingerprint)>) -> Result<Self, AppError> {
        if cli.tls == TlsChoice::Off {
            return Ok(Self::Off);
        }
        if let Some((cert, fingerprint)) = local_cert {
            // Never the known servers file: a local data dir made afresh has a new key, which
            // must not look like an attack.
            return Ok(Self::Pinned(ServerPin {
                fingerprint,
                source: PinSource::LocalServer { cert },
            }));
        }
        let key = server_key(&cli.server, cli.server_port_connect);
        let path = cli.known_servers_path();
        if let Some(fingerprint) = cli.trust_fingerprint {
            // Without a place for the file there is nothing to contradict the flag.
            if let Ok(path) = &path
                && let Some(pin) = KnownServers::load(path)?
                    .lookup(&key)
                    .filter(|pin| pin.fingerprint != fingerprint)
            {
                return Err(AppError::Config(format!(
                    "--trust-fingerprint {fingerprint} differs from {} on {}; if the server's \
                     key was replaced, {}",
                    pin.fingerprint,
                    pin.source.describe(),
                    pin.source.fix()
                )));
            }
            return Ok(Self::Pinned(ServerPin {
                fingerprint,
                source: PinSource::Given("--trust-fingerprint".into()),
            }));
        }
        let known = KnownServers::load(&path?)?;
        Ok(match known.lookup(&key) {
            Some(pin) => Self::Pinned(pin),
            None => Self::FirstContact {
                known,
                key,
                accept: cli.trust_on_first_use,
            },
        })
    }

    /// What the client core is told, when the decision is made (`None` on first contact).
    pub fn client_tls(&self) -> Option<ClientTls> {
        match self {
            Self::Off => Some(ClientTls::Off),
            Self::Pinned(pin) => Some(ClientTls::Pinned(pin.clone())),
            Self::FirstContact { .. } => None,
        }
    }

    /// Headless mode: a pin now, probing the server on first contact. Without
    /// `--trust-on-first-use` a new server is refused, naming its fingerprint and the flags.
    pub fn settle_headless(self, config: &ClientConfig) -> Result<ClientTls, AppError> {
        let Self::FirstContact { known, key, accept } = self else {
            return Ok(self.client_tls().unwrap_or_default());
        };
        let contact = trust::probe(config)?;
        if !accept {
            return Err(AppError::Untrusted {
                contact,
                known: known.path().to_owned(),
            });
        }
        Ok(ClientTls::Pinned(remember(known, &key, &contact)?))
    }
}

/// Trusts what the server presented on first contact from now on: a line in the known servers
/// file, logged.
pub fn remember(
    mut known: KnownServers,
    key: &str,
    contact: &FirstContact,
) -> Result<ServerPin, AppError> {
    let pin = known.add(key, contact.fingerprint)?;
    tracing::info!(
        "trusting {key} ({contact}) from now on: {}",
        pin.source.describe()
    );
    Ok(pin)
}

#[cfg(test)]
mod tests {
    use clap::Parser as _;

    use super::*;

    fn cli(known: &std::path::Path, extra: &[&str]) -> Cli {
        let mut args = vec![
            "gc-client",
            "10.0.0.5",
            "--known-servers",
            known.to_str().unwrap(),
        ];
        args.extend(extra);
        Cli::parse_from(args)
    }

    #[test]
    fn what_decides_whom_to_trust() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        let (a, b) = (Fingerprint::of_der(b"a"), Fingerprint::of_der(b"b"));
        let decide = |extra: &[&str], local| ServerTrust::decide(&cli(&path, extra), local);

        assert!(matches!(
            decide(&["--tls", "off"], None),
            Ok(ServerTrust::Off)
        ));
        assert!(matches!(
            decide(&[], None),
            Ok(ServerTrust::FirstContact { accept: false, ref key, .. }) if key == "10.0.0.5:10740"
        ));
        assert!(matches!(
            decide(&["--trust-on-first-use"], None),
            Ok(ServerTrust::FirstContact { accept: true, .. })
        ));
        let given = decide(&["--trust-fingerprint", &a.to_string()], None).unwrap();
        assert!(
            matches!(given, ServerTrust::Pinned(ServerPin { fingerprint, source: PinSource::Given(_) }) if fingerprint == a)
        );

        KnownServers::load(&path)
            .unwrap()
            .add("10.0.0.5:10740", a)
            .unwrap();
        let known = decide(&["--trust-on-first-use"], None).unwrap();
        assert!(
            matches!(known, ServerTrust::Pinned(ServerPin { fingerprint, source: PinSource::KnownServers { .. } }) if fingerprint == a)
        );
        let contradicts = decide(&["--trust-fingerprint", &b.to_string()], None).unwrap_err();
        assert!(
            contradicts.to_string().contains("differs from"),
            "{contradicts}"
        );

        // The local server of --with-server wins over the file: a fresh try-out key is no attack.
        let local = decide(&[], Some((PathBuf::from("gc-data/tls/cert.pem"), b))).unwrap();
        assert!(
            matches!(local, ServerTrust::Pinned(ServerPin { fingerprint, source: PinSource::LocalServer { .. } }) if fingerprint == b)
        );
    }
}
