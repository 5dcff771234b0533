//! Which server certificate the client trusts: the pin (a SHA-256 fingerprint) and where it came
//! from, the `known_servers` file that remembers pins across runs, and the probe that learns a
//! server's fingerprint on first contact so a front end can ask the user.
//!
//! Like SSH's `known_hosts`: one line per server, `<server>:<connect port> SHA256:<base64>`,
//! `#` starts a comment. A pin is never replaced silently: a server whose certificate changed is
//! refused with an error naming both fingerprints and the line to remove.

use std::fmt;
use std::fs;
use std::io::{self, Write as _};
use std::net::{IpAddr, SocketAddr};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use gc_net::tls::{ClientAuth, PeerCheck, TlsConfig};
use gc_net::{Connector, Timeouts};
use gc_protocol::signin::{self, ServerHello};
use gc_protocol::{Fingerprint, VERSION_TLS};

use crate::config::ClientConfig;
use crate::error::ClientError;
use crate::net;

/// The server certificate a client accepts, and where that pin came from (for the error that
/// says what to do when the server presents another).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ServerPin {
    /// The certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// Where it came from.
    pub source: PinSource,
}

/// Where a pin came from.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PinSource {
    /// A line of a `known_servers` file.
    KnownServers {
        /// The file.
        path: PathBuf,
        /// The line (1-based).
        line: usize,
    },
    /// Given by the user, e.g. `--trust-fingerprint`: the text names how.
    Given(String),
    /// The certificate of a server this program started itself (`--with-server`).
    LocalServer {
        /// The certificate file.
        cert: PathBuf,
    },
}

impl PinSource {
    /// Where the pin is, in words: `line 3 of ~/.local/share/gc-client/known_servers`.
    pub fn describe(&self) -> String {
        match self {
            Self::KnownServers { path, line } => format!("line {line} of {}", path.display()),
            Self::Given(how) => format!("given with {how}"),
            Self::LocalServer { cert } => format!("the local server's {}", cert.display()),
        }
    }

    /// What to do once the new fingerprint has been confirmed with the server's operator.
    pub fn fix(&self) -> String {
        match self {
            Self::KnownServers { path, line } => {
                format!(
                    "remove line {line} from {} and connect again",
                    path.display()
                )
            }
            Self::Given(how) => format!("give the new one with {how}"),
            Self::LocalServer { .. } => "start the local server again".to_owned(),
        }
    }
}

/// How a client connects: plain GC/1, or TLS (GC/2) trusting one server certificate, or one per
/// instance of a server list.
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub enum ClientTls {
    /// Plain GC/1, unencrypted (`--tls off`; servers in `optional` or `off` mode).
    #[default]
    Off,
    /// GC/2 over TLS to the server with this certificate (every instance of a list, e.g.
    /// `--trust-fingerprint`).
    Pinned(ServerPin),
    /// GC/2 over TLS, one pin per entry of the server list, in its order. An entry without one
    /// (never confirmed) is never connected to.
    PerInstance(Vec<Option<ServerPin>>),
}

/// The key of a server in `known_servers`: `host:port`, `[v6]:port`; host names in lower case.
pub fn server_key(server: &str, connect_port: u16) -> String {
    let host = server.trim();
    let bare = host
        .strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host);
    match bare.parse::<IpAddr>() {
        Ok(ip) => SocketAddr::new(ip, connect_port).to_string(),
        Err(_) => format!("{}:{connect_port}", bare.to_ascii_lowercase()),
    }
}

/// The `known_servers` file: the pins of servers trusted before.
#[derive(Clone, Debug)]
pub struct KnownServers {
    path: PathBuf,
    /// (line, key, fingerprint) of every entry, in file order.
    entries: Vec<(usize, String, Fingerprint)>,
}

const HEADER: &str = "# gc-client known servers: <server>:<connect port> <certificate fingerprint>\n\
                      # A line is added when you trust a server on first contact. If a server's key\n\
                      # was replaced, confirm the new fingerprint with its operator, then delete its line.\n";

impl KnownServers {
    /// Reads the file; a missing file has no entries. A line that does not parse is an error
    /// naming it (a damaged pin file must not silently trust nothing, or anything). A file that
    /// others may read is tightened to 0600 with a warning.
    pub fn load(path: &Path) -> Result<Self, ClientError> {
        let text = match fs::read_to_string(path) {
            Ok(text) => {
                // Which servers this user uses, and the pins that decide whom the client trusts.
                gc_store::private::tighten_path(path);
                text
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => String::new(),
            Err(source) => {
                return Err(ClientError::KnownServers {
                    path: path.to_owned(),
                    detail: format!("cannot read it: {source}"),
                });
            }
        };
        let mut entries = Vec::new();
        for (i, raw) in text.lines().enumerate() {
            let line = raw.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let bad = |why: &str| ClientError::KnownServers {
                path: path.to_owned(),
                detail: format!("line {}: {why}; fix or delete the line", i + 1),
            };
            let mut fields = line.split_whitespace();
            let (Some(key), Some(fp), None) = (fields.next(), fields.next(), fields.next()) else {
                return Err(bad("expected `<server>:<port> SHA256:<fingerprint>`"));
            };
            let fingerprint = fp
                .parse::<Fingerprint>()
                .map_err(|e| bad(&format!("{e}")))?;
            entries.push((i + 1, key.to_owned(), fingerprint));
        }
        Ok(Self {
            path: path.to_owned(),
            entries,
        })
    }

    /// The file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The pin for `key` (see [`server_key`]), if the server was trusted before.
    pub fn lookup(&self, key: &str) -> Option<ServerPin> {
        self.entries
            .iter()
            .find(|(_, k, _)| k == key)
            .map(|(line, _, fingerprint)| ServerPin {
                fingerprint: *fingerprint,
                source: PinSource::KnownServers {
                    path: self.path.clone(),
                    line: *line,
                },
            })
    }

    /// Trusts `fingerprint` for `key` from now on: appends a line (creating the file, 0600, and
    /// its directory, 0700) and syncs it, so a pin the user accepted is never lost.
    pub fn add(&mut self, key: &str, fingerprint: Fingerprint) -> Result<ServerPin, ClientError> {
        if let Some(pin) = self.lookup(key) {
            return Ok(pin);
        }
        let failed = |what: &str, e: io::Error| ClientError::KnownServers {
            path: self.path.clone(),
            detail: format!("cannot {what}: {e}"),
        };
        if let Some(dir) = self.path.parent().filter(|d| !d.as_os_str().is_empty()) {
            gc_store::private::create_dirs(dir).map_err(|e| failed("create its directory", e))?;
        }
        let existing = fs::read_to_string(&self.path).unwrap_or_default();
        let mut text = String::new();
        if existing.is_empty() {
            text.push_str(HEADER);
        } else if !existing.ends_with('\n') {
            text.push('\n');
        }
        text.push_str(&format!("{key} {fingerprint}\n"));
        let mut file = gc_store::private::open(
            &self.path,
            gc_store::private::options().create(true).append(true),
        )
        .map_err(|e| failed("open it", e))?;
        file.write_all(text.as_bytes())
            .and_then(|()| file.sync_all())
            .map_err(|e| failed("write it", e))?;
        let line = existing.lines().count() + text.lines().count();
        self.entries.push((line, key.to_owned(), fingerprint));
        Ok(ServerPin {
            fingerprint,
            source: PinSource::KnownServers {
                path: self.path.clone(),
                line,
            },
        })
    }
}

/// What a server presents on first contact, for the user to decide on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FirstContact {
    /// The address that answered.
    pub addr: SocketAddr,
    /// Its certificate's fingerprint.
    pub fingerprint: Fingerprint,
    /// The name it announced (`Pong`), which it chose itself: not proof of anything.
    pub name: String,
}

/// Connects to the server's connect port over TLS without a pin, and learns its certificate's
/// fingerprint and name (`Ping GC/2` → `Pong`), from the first of its addresses that answers.
/// Nothing secret is sent.
///
/// A server list is probed entry by entry, in order (the first that answers); a front end that
/// asks about each instance probes one entry at a time (a configuration whose `server` is that
/// entry).
pub fn probe(config: &ClientConfig) -> Result<FirstContact, ClientError> {
    let port = config.server_ports.connect;
    let mut last_error = None;
    let mut ips = Vec::new();
    for server in config.servers()? {
        match net::resolve(&server, port, config.bind_ip) {
            Ok(found) => ips.extend(found),
            Err(e) => last_error = Some(e),
        }
    }
    for ip in ips {
        match probe_addr(SocketAddr::new(ip, port), config.bind_ip, config.io_timeout) {
            Ok(contact) => return Ok(contact),
            Err(
                e @ (ClientError::Connect { .. }
                | ClientError::Handshake { .. }
                | ClientError::Protocol { .. }),
            ) => {
                last_error = Some(e);
            }
            Err(e) => return Err(e),
        }
    }
    Err(last_error.unwrap_or_else(|| ClientError::Resolve {
        server: config.server.clone(),
        detail: "no addresses".into(),
    }))
}

/// [`probe`] of one address, connecting from `bind` (if set), each step within `timeout`.
pub fn probe_addr(
    addr: SocketAddr,
    bind: Option<IpAddr>,
    timeout: Duration,
) -> Result<FirstContact, ClientError> {
    let tls = TlsConfig::new(None, ClientAuth::None).map_err(|e| ClientError::Tls {
        detail: e.to_string(),
    })?;
    let connector = Connector::new(bind, Timeouts::new(timeout)).with_tls(Arc::new(tls));
    let mut conn = connector
        .connect(addr, PeerCheck::Any)
        .map_err(|e| crate::connection::connect_error(None, "the server's connect port", e))?;
    let fingerprint = conn
        .get_ref()
        .peer_fingerprint()
        .ok_or_else(|| ClientError::Unexpected {
            peer: addr.to_string(),
            detail: "no certificate in the TLS handshake".into(),
        })?;
    let ServerHello { name, .. } = signin::version_check(&mut conn, VERSION_TLS, timeout)?;
    Ok(FirstContact {
        addr,
        fingerprint,
        name,
    })
}

impl fmt::Display for FirstContact {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{} (\"{}\") presents the certificate {}",
            self.addr,
            gc_protocol::sanitize::Sanitized(&self.name),
            self.fingerprint
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fp(byte: u8) -> Fingerprint {
        Fingerprint::of_der(&[byte])
    }

    #[test]
    fn keys() {
        assert_eq!(server_key("192.168.1.5", 10740), "192.168.1.5:10740");
        assert_eq!(server_key(" ::1 ", 10740), "[::1]:10740");
        assert_eq!(server_key("[::1]", 1), "[::1]:1");
        assert_eq!(server_key("Chat.Example", 10740), "chat.example:10740");
    }

    #[test]
    fn add_then_load_finds_the_same_line() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("sub").join("known_servers");
        let mut known = KnownServers::load(&path).unwrap();
        assert!(known.lookup("a:1").is_none());
        let a = known.add("a:1", fp(1)).unwrap();
        let b = known.add("b:2", fp(2)).unwrap();
        assert_eq!(known.add("a:1", fp(9)).unwrap(), a, "an existing pin stays");
        let again = KnownServers::load(&path).unwrap();
        assert_eq!(again.lookup("a:1"), Some(a.clone()));
        assert_eq!(again.lookup("b:2"), Some(b.clone()));
        let text = fs::read_to_string(&path).unwrap();
        let PinSource::KnownServers { line, .. } = b.source else {
            panic!("{b:?}");
        };
        assert_eq!(
            text.lines().nth(line - 1).unwrap(),
            format!("b:2 {}", fp(2))
        );
        assert!(a.source.fix().contains("remove line"), "{}", a.source.fix());
    }

    #[test]
    fn the_file_is_the_users_alone() {
        use std::os::unix::fs::PermissionsExt as _;
        let mode = |p: &Path| fs::metadata(p).unwrap().permissions().mode() & 0o7777;
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("gc-client").join("known_servers");
        KnownServers::load(&path)
            .unwrap()
            .add("a:1", fp(1))
            .unwrap();
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // One an older version wrote under the umask is tightened when read.
        fs::set_permissions(&path, fs::Permissions::from_mode(0o644)).unwrap();
        KnownServers::load(&path).unwrap();
        assert_eq!(mode(&path), 0o600);
    }

    #[test]
    fn a_damaged_line_is_an_error_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("known_servers");
        fs::write(&path, format!("# c\n\na:1 {}\nb:2 SHA256:nope\n", fp(1))).unwrap();
        let err = KnownServers::load(&path).unwrap_err().to_string();
        assert!(err.contains("line 4"), "{err}");
        fs::write(&path, "a:1\n").unwrap();
        assert!(KnownServers::load(&path).is_err());
    }
}
