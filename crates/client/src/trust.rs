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
    /// A server list without `--trust-fingerprint`: one pin per instance, from the known servers
    /// file; an instance not seen before is probed, and trusted (the user agreed, or
    /// `--trust-on-first-use`) or left out of this run (it did not answer).
    List {
        /// The known servers file, to remember new pins in.
        known: KnownServers,
        /// The list's entries, in order.
        entries: Vec<ListEntry>,
        /// Trust new instances without asking (`--trust-on-first-use`).
        accept: bool,
    },
}

/// One instance of a server list, and whether its certificate is trusted.
#[derive(Clone, Debug)]
pub struct ListEntry {
    /// The entry as given.
    pub server: String,
    /// Its key in the known servers file.
    pub key: String,
    /// Its pin, once trusted.
    pub pin: Option<ServerPin>,
    /// Probed this run without a pin coming of it (it did not answer): left out.
    pub skipped: bool,
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
        let servers = cli.servers()?;
        if servers.len() > 1 {
            return Self::decide_list(cli, &servers);
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

    /// [`ServerTrust::decide`] for a server list: `--trust-fingerprint` pins every instance (each
    /// checked against the known servers file as for one server); otherwise each instance has
    /// its own pin.
    fn decide_list(cli: &Cli, servers: &[String]) -> Result<Self, AppError> {
        let path = cli.known_servers_path();
        let port = cli.server_port_connect;
        if let Some(fingerprint) = cli.trust_fingerprint {
            if let Ok(path) = &path {
                let known = KnownServers::load(path)?;
                for server in servers {
                    if let Some(pin) = known
                        .lookup(&server_key(server, port))
                        .filter(|pin| pin.fingerprint != fingerprint)
                    {
                        return Err(AppError::Config(format!(
                            "--trust-fingerprint {fingerprint} differs from {} of {server} on \
                             {}; if that server's key was replaced, {}",
                            pin.fingerprint,
                            pin.source.describe(),
                            pin.source.fix()
                        )));
                    }
                }
            }
            return Ok(Self::Pinned(ServerPin {
                fingerprint,
                source: PinSource::Given("--trust-fingerprint".into()),
            }));
        }
        let known = KnownServers::load(&path?)?;
        let entries = servers
            .iter()
            .map(|server| {
                let key = server_key(server, port);
                ListEntry {
                    server: server.clone(),
                    pin: known.lookup(&key),
                    key,
                    skipped: false,
                }
            })
            .collect();
        Ok(Self::List {
            known,
            entries,
            accept: cli.trust_on_first_use,
        })
    }

    /// What the client core is told, when the decision is made (`None` on first contact; for a
    /// list, while an instance is still to be probed).
    pub fn client_tls(&self) -> Option<ClientTls> {
        match self {
            Self::Off => Some(ClientTls::Off),
            Self::Pinned(pin) => Some(ClientTls::Pinned(pin.clone())),
            Self::FirstContact { .. } => None,
            Self::List { entries, .. } => {
                if entries.iter().any(|e| e.pin.is_none() && !e.skipped) {
                    return None;
                }
                Some(ClientTls::PerInstance(
                    entries.iter().map(|e| e.pin.clone()).collect(),
                ))
            }
        }
    }

    /// The next instance of a list to probe (not trusted, not yet tried): its position and
    /// entry.
    pub fn next_unknown(&self) -> Option<(usize, String)> {
        match self {
            Self::List { entries, .. } => entries
                .iter()
                .position(|e| e.pin.is_none() && !e.skipped)
                .map(|i| (i, entries[i].server.clone())),
            _ => None,
        }
    }

    /// Whether a new server (or instance) is trusted without asking (`--trust-on-first-use`).
    pub fn accepts_first_use(&self) -> bool {
        matches!(
            self,
            Self::FirstContact { accept: true, .. } | Self::List { accept: true, .. }
        )
    }

    /// Trusts what instance `index` of a list presented: remembered in the known servers file.
    pub fn trust_instance(
        &mut self,
        index: usize,
        contact: &FirstContact,
    ) -> Result<ServerPin, AppError> {
        let Self::List { known, entries, .. } = self else {
            return Err(AppError::Config(
                "no server list to trust an instance of".into(),
            ));
        };
        let entry = entries
            .get_mut(index)
            .ok_or_else(|| AppError::Config(format!("no instance {index} in the list")))?;
        let pin = known.add(&entry.key, contact.fingerprint)?;
        tracing::info!(
            "trusting {} ({contact}) from now on: {}",
            entry.key,
            pin.source.describe()
        );
        entry.pin = Some(pin.clone());
        Ok(pin)
    }

    /// Instance `index` of a list did not answer the probe: left out of this run, with a
    /// warning that says so.
    pub fn skip_instance(&mut self, index: usize, why: &AppError) -> Option<String> {
        let Self::List { entries, .. } = self else {
            return None;
        };
        let entry = entries.get_mut(index)?;
        entry.skipped = true;
        let text = format!(
            "{} is not trusted yet and could not be reached to check its certificate ({}); it \
             is not used in this run",
            entry.server,
            gc_client_core::error_chain(why)
        );
        tracing::warn!("{text}");
        Some(text)
    }

    /// Whether a list has no trusted instance at all.
    pub fn none_trusted(&self) -> bool {
        matches!(self, Self::List { entries, .. } if entries.iter().all(|e| e.pin.is_none()))
    }

    /// Headless mode: a pin now, probing the server on first contact. Without
    /// `--trust-on-first-use` a new server is refused, naming its fingerprint and the flags.
    pub fn settle_headless(mut self, config: &ClientConfig) -> Result<ClientTls, AppError> {
        if matches!(self, Self::List { .. }) {
            // Each new instance in turn: refused (naming its fingerprint) unless trusted on
            // first use; one that does not answer is left out of this run.
            let mut last_error = None;
            while let Some((index, server)) = self.next_unknown() {
                let mut one = config.clone();
                one.server = server;
                match trust::probe(&one) {
                    Ok(contact) if self.accepts_first_use() => {
                        self.trust_instance(index, &contact)?;
                    }
                    Ok(contact) => {
                        let Self::List { known, .. } = &self else {
                            break;
                        };
                        return Err(AppError::Untrusted {
                            contact,
                            known: known.path().to_owned(),
                        });
                    }
                    Err(e) => {
                        let e = AppError::from(e);
                        if let Some(text) = self.skip_instance(index, &e) {
                            use std::io::Write as _;
                            // A closed standard error is no reason to fail.
                            let _ =
                                writeln!(std::io::stderr().lock(), "gc-client: warning: {text}");
                        }
                        last_error = Some(e);
                    }
                }
            }
            if self.none_trusted() {
                return Err(last_error.unwrap_or_else(|| {
                    AppError::Config("no server of the list has a trusted certificate".into())
                }));
            }
            return Ok(self.client_tls().unwrap_or_default());
        }
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

        // A list: each instance its own pin; a new one is first contact; the flag pins all,
        // and still contradicts a known instance's pin loudly.
        let list = |extra: &[&str]| {
            let mut args = vec![
                "gc-client",
                "10.0.0.5,10.0.0.6",
                "--known-servers",
                path.to_str().unwrap(),
            ];
            args.extend(extra);
            ServerTrust::decide(&Cli::parse_from(args), None)
        };
        let first = list(&[]).unwrap();
        assert!(first.client_tls().is_none(), "10.0.0.6 is new");
        assert_eq!(first.next_unknown(), Some((1, "10.0.0.6".to_owned())));
        let mut settled = first.clone();
        let why = AppError::Config("down".into());
        assert!(settled.skip_instance(1, &why).unwrap().contains("10.0.0.6"));
        assert!(matches!(
            settled.client_tls(),
            Some(ClientTls::PerInstance(ref pins)) if pins[0].is_some() && pins[1].is_none()
        ));
        let contradicts = list(&["--trust-fingerprint", &b.to_string()]).unwrap_err();
        assert!(
            contradicts.to_string().contains("of 10.0.0.5"),
            "{contradicts}"
        );
        assert!(matches!(
            list(&["--trust-fingerprint", &a.to_string()]),
            Ok(ServerTrust::Pinned(_))
        ));

        // The local server of --with-server wins over the file: a fresh try-out key is no attack.
        let local = decide(&[], Some((PathBuf::from("gc-data/tls/cert.pem"), b))).unwrap();
        assert!(
            matches!(local, ServerTrust::Pinned(ServerPin { fingerprint, source: PinSource::LocalServer { .. } }) if fingerprint == b)
        );
    }
}
