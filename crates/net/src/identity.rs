//! TLS identities: a certificate chain with its private key, and the SHA-256 fingerprint peers
//! pin it by.
//!
//! A server's identity is made once, on its first start, in its data directory (`tls/key.pem`,
//! mode 0600, and `tls/cert.pem`), or given by the operator (`--tls-cert`, `--tls-key`, e.g. from
//! an internal CA). A client makes a throwaway one for each run for its callback listeners.
//! Keys made here are Ed25519: small certificates, and the cheapest signatures the provider has
//! (on x86-64 about half the CPU of ECDSA P-256 to sign and two thirds to verify, which every
//! handshake does once per certificate shown). Identities made before, and an operator's, may be
//! P-256 or any other key rustls signs with; peers verify whichever they are shown.

use std::fs::{self, OpenOptions};
use std::io::{self, Write as _};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _, PermissionsExt as _};
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use base64::Engine as _;
pub use gc_protocol::Fingerprint;
use rustls::pki_types::pem::PemObject as _;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, PrivatePkcs8KeyDer};

use crate::error::NetError;

/// The directory under a data dir that holds a server's own identity.
pub const IDENTITY_DIR: &str = "tls";
/// The private key's file in [`IDENTITY_DIR`].
pub const KEY_FILE: &str = "key.pem";
/// The certificate's file in [`IDENTITY_DIR`].
pub const CERT_FILE: &str = "cert.pem";

/// A certificate chain (leaf first) and the private key of its leaf.
#[derive(Debug)]
pub struct Identity {
    certs: Vec<CertificateDer<'static>>,
    key: PrivateKeyDer<'static>,
    fingerprint: Fingerprint,
}

impl Clone for Identity {
    fn clone(&self) -> Self {
        Self {
            certs: self.certs.clone(),
            key: self.key.clone_key(),
            fingerprint: self.fingerprint,
        }
    }
}

/// Where an identity came from, for the log line at start.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Origin {
    /// Made just now in this directory.
    Created(PathBuf),
    /// Read from this directory, made at an earlier start.
    Loaded(PathBuf),
    /// The operator's files.
    Given,
}

impl Identity {
    /// A fresh key and a self-signed certificate for `name`, valid from a day ago for about a
    /// hundred years: a pinned certificate needs no expiry to be replaced at.
    pub fn generate(name: &str) -> Result<Self, NetError> {
        let failed = |e: rcgen::Error| NetError::Identity {
            path: None,
            detail: format!("cannot make a key and certificate: {e}"),
        };
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ED25519).map_err(failed)?;
        let mut params = rcgen::CertificateParams::new(vec![name.to_owned()]).map_err(failed)?;
        params.distinguished_name = rcgen::DistinguishedName::new();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, name);
        let now = SystemTime::now();
        params.not_before = (now - Duration::from_secs(86_400)).into();
        params.not_after = (now + Duration::from_secs(100 * 365 * 86_400)).into();
        let cert = params.self_signed(&key).map_err(failed)?;
        let key = PrivateKeyDer::Pkcs8(PrivatePkcs8KeyDer::from(key.serialize_der()));
        Ok(Self::new(vec![cert.der().clone()], key))
    }

    fn new(certs: Vec<CertificateDer<'static>>, key: PrivateKeyDer<'static>) -> Self {
        // Callers never pass an empty chain (`read_certs` refuses one).
        let fingerprint = Fingerprint::of_der(certs.first().map_or(&[][..], |c| c.as_ref()));
        Self {
            certs,
            key,
            fingerprint,
        }
    }

    /// The chain, leaf first.
    pub fn certs(&self) -> &[CertificateDer<'static>] {
        &self.certs
    }

    /// The leaf's private key.
    pub fn key(&self) -> &PrivateKeyDer<'static> {
        &self.key
    }

    /// The leaf's fingerprint: what peers pin.
    pub fn fingerprint(&self) -> Fingerprint {
        self.fingerprint
    }

    /// Reads an operator's certificate chain (PEM, leaf first) and private key (PEM). Refuses a
    /// key that others may read, and a leaf certificate that has expired or is not valid yet.
    pub fn load(cert: &Path, key: &Path) -> Result<Self, NetError> {
        check_private(key)?;
        let certs = read_certs(cert)?;
        let key = PrivateKeyDer::from_pem_file(key).map_err(|e| NetError::Identity {
            path: Some(key.to_owned()),
            detail: format!("not a readable PEM private key ({e})"),
        })?;
        let identity = Self::new(certs, key);
        check_validity(&identity.certs[0], cert, SystemTime::now())?;
        Ok(identity)
    }

    /// The identity kept in `dir` (a data dir's [`IDENTITY_DIR`]): read it, or on the first start
    /// make it (the directory and any missing parent 0700, the key and certificate 0600, written
    /// with `O_EXCL` so two starts cannot both make one). A key file without its certificate, or
    /// the other way round, is an error, and so is a key others may read; a directory or
    /// certificate others may read is tightened with a warning.
    pub fn load_or_create(dir: &Path, name: &str) -> Result<(Self, Origin), NetError> {
        let (key_path, cert_path) = (dir.join(KEY_FILE), dir.join(CERT_FILE));
        match (key_path.exists(), cert_path.exists()) {
            (true, true) => {
                tighten(dir);
                tighten(&cert_path);
                return Self::load(&cert_path, &key_path)
                    .map(|id| (id, Origin::Loaded(dir.to_owned())));
            }
            (false, false) => {}
            (true, false) | (false, true) => {
                let (present, missing) = if key_path.exists() {
                    (&key_path, &cert_path)
                } else {
                    (&cert_path, &key_path)
                };
                return Err(NetError::Identity {
                    path: Some(missing.clone()),
                    detail: format!(
                        "is missing while {} exists; restore it, or move both away to make a \
                         new identity (clients that pinned the old one will refuse the new one)",
                        present.display()
                    ),
                });
            }
        }
        let io_err = |path: &Path| {
            let path = path.to_owned();
            move |e: io::Error| NetError::Identity {
                path: Some(path),
                detail: e.to_string(),
            }
        };
        // The data dir too, when this comes first (`gc-server tls fingerprint`).
        fs::DirBuilder::new()
            .recursive(true)
            .mode(DIR_MODE)
            .create(dir)
            .map_err(io_err(dir))?;
        tighten(dir);
        let identity = Self::generate(name)?;
        let key_pem = rustls_pem("PRIVATE KEY", identity.key.secret_der());
        let cert_pem = rustls_pem("CERTIFICATE", identity.certs[0].as_ref());
        let write = |path: &Path, text: &str, mode: u32| -> io::Result<()> {
            let mut file = OpenOptions::new()
                .write(true)
                .create_new(true)
                .mode(mode)
                .open(path)?;
            file.write_all(text.as_bytes())?;
            file.sync_all()
        };
        match write(&key_path, &key_pem, FILE_MODE) {
            Ok(()) => {}
            // Another start made it meanwhile: use that one.
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {
                return Self::load(&cert_path, &key_path)
                    .map(|id| (id, Origin::Loaded(dir.to_owned())));
            }
            Err(e) => return Err(io_err(&key_path)(e)),
        }
        write(&cert_path, &cert_pem, FILE_MODE).map_err(io_err(&cert_path))?;
        if let Ok(d) = fs::File::open(dir) {
            let _ = d.sync_all();
        }
        Ok((identity, Origin::Created(dir.to_owned())))
    }
}

/// The mode of the files of a data dir's identity (as of every file gc makes).
const FILE_MODE: u32 = 0o600;
/// The mode of [`IDENTITY_DIR`] (as of every directory gc makes).
const DIR_MODE: u32 = 0o700;

/// Takes the group and other bits off a file or directory of a data dir's identity that has
/// them (made by hand, or copied), with a warning naming it and its old mode. Never fails: what
/// cannot be changed is warned about. (The key is the exception: [`check_private`] refuses it.)
fn tighten(path: &Path) {
    let Ok(meta) = fs::metadata(path) else {
        return;
    };
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 == 0 {
        return;
    }
    let new = mode & !0o077;
    match fs::set_permissions(path, fs::Permissions::from_mode(new)) {
        Ok(()) => tracing::warn!(
            "{} was mode {mode:04o}, open to others; changed it to {new:04o}",
            path.display()
        ),
        Err(e) => tracing::warn!(
            "{} is mode {mode:04o}, open to others, and could not be changed ({e}); run \
             `chmod go= {}`",
            path.display(),
            path.display()
        ),
    }
}

/// PEM text of one DER object.
pub(crate) fn rustls_pem(label: &str, der: &[u8]) -> String {
    let b64 = base64::engine::general_purpose::STANDARD.encode(der);
    let mut out = format!("-----BEGIN {label}-----\n");
    for line in b64.as_bytes().chunks(64) {
        out.push_str(&String::from_utf8_lossy(line));
        out.push('\n');
    }
    out.push_str(&format!("-----END {label}-----\n"));
    out
}

/// Refuses a key file that anyone but its owner may read or write.
fn check_private(key: &Path) -> Result<(), NetError> {
    let meta = fs::metadata(key).map_err(|e| NetError::Identity {
        path: Some(key.to_owned()),
        detail: e.to_string(),
    })?;
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(NetError::Identity {
            path: Some(key.to_owned()),
            detail: format!(
                "the private key may be read by others (mode {mode:04o}); run `chmod 600 {}`, \
                 and make a new key if others may already have read it",
                key.display()
            ),
        });
    }
    Ok(())
}

fn read_certs(path: &Path) -> Result<Vec<CertificateDer<'static>>, NetError> {
    let bad = |detail: String| NetError::Identity {
        path: Some(path.to_owned()),
        detail,
    };
    let certs = CertificateDer::pem_file_iter(path)
        .map_err(|e| bad(format!("cannot read it ({e})")))?
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| bad(format!("not a PEM certificate chain ({e})")))?;
    if certs.is_empty() {
        return Err(bad("holds no PEM certificate".into()));
    }
    Ok(certs)
}

/// Refuses a certificate outside its validity period at `now`.
fn check_validity(cert: &CertificateDer<'_>, path: &Path, now: SystemTime) -> Result<(), NetError> {
    let bad = |detail: String| NetError::Identity {
        path: Some(path.to_owned()),
        detail,
    };
    let (not_before, not_after) =
        validity(cert.as_ref()).ok_or_else(|| bad("not an X.509 certificate".into()))?;
    let now = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs()) as i64;
    if now > not_after {
        return Err(bad(format!(
            "the certificate expired at {} UTC; replace it (a server's own self-signed one is \
             made anew when both tls/ files are moved away)",
            utc(not_after)
        )));
    }
    if now < not_before {
        return Err(bad(format!(
            "the certificate is not valid before {} UTC (is this host's clock right?)",
            utc(not_before)
        )));
    }
    Ok(())
}

fn utc(secs: i64) -> String {
    gc_protocol::Timestamp::from_micros(u64::try_from(secs).unwrap_or(0) * 1_000_000).utc_datetime()
}

// ───────────────────────────── the validity period, read from DER ─────────────────────────────

/// One DER element: its tag and contents, and what follows it.
fn der_element(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
    let (&tag, rest) = input.split_first()?;
    let (&first, rest) = rest.split_first()?;
    let (len, rest) = if first < 0x80 {
        (usize::from(first), rest)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 || rest.len() < n {
            return None;
        }
        let len = rest[..n]
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b));
        (len, &rest[n..])
    };
    (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
}

/// `notBefore` and `notAfter` of an X.509 certificate, as Unix seconds.
fn validity(der: &[u8]) -> Option<(i64, i64)> {
    const SEQUENCE: u8 = 0x30;
    let (tag, cert, _) = der_element(der)?;
    if tag != SEQUENCE {
        return None;
    }
    let (tag, mut tbs, _) = der_element(cert)?;
    if tag != SEQUENCE {
        return None;
    }
    // [0] version (optional), serialNumber, signature, issuer, then validity.
    let (tag, _, rest) = der_element(tbs)?;
    if tag == 0xa0 {
        tbs = rest;
        let (_, _, rest) = der_element(tbs)?; // serialNumber
        tbs = rest;
    } else {
        tbs = rest; // that was serialNumber
    }
    let (_, _, rest) = der_element(tbs)?; // signature algorithm
    let (_, _, rest) = der_element(rest)?; // issuer
    let (tag, validity, _) = der_element(rest)?;
    if tag != SEQUENCE {
        return None;
    }
    let (t1, before, rest) = der_element(validity)?;
    let (t2, after, _) = der_element(rest)?;
    Some((der_time(t1, before)?, der_time(t2, after)?))
}

/// UTCTime (`YYMMDDHHMMSSZ`) or GeneralizedTime (`YYYYMMDDHHMMSSZ`) as Unix seconds.
fn der_time(tag: u8, text: &[u8]) -> Option<i64> {
    let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
    let (year, rest) = match tag {
        0x17 if text.len() == 12 => {
            let yy: i64 = text[..2].parse().ok()?;
            (if yy < 50 { 2000 + yy } else { 1900 + yy }, &text[2..])
        }
        0x18 if text.len() == 14 => (text[..4].parse().ok()?, &text[4..]),
        _ => return None,
    };
    let field = |i: usize| -> Option<i64> { rest.get(i..i + 2)?.parse().ok() };
    let (month, day, hour, min, sec) = (field(0)?, field(2)?, field(4)?, field(6)?, field(8)?);
    if !(1..=12).contains(&month) || !(1..=31).contains(&day) {
        return None;
    }
    Some(days_from_civil(year, month, day) * 86_400 + hour * 3600 + min * 60 + sec)
}

/// Days since 1970-01-01 of a proleptic Gregorian date (H. Hinnant's algorithm).
fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mode(path: &Path) -> u32 {
        fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn fingerprints_round_trip_as_ssh_writes_them() {
        let id = Identity::generate("gc-test").unwrap();
        let text = id.fingerprint().to_string();
        assert!(
            text.starts_with("SHA256:") && text.len() == 7 + 43,
            "{text}"
        );
        assert_eq!(text.parse::<Fingerprint>().unwrap(), id.fingerprint());
        assert_eq!(
            format!("{text}=").parse::<Fingerprint>().unwrap(),
            id.fingerprint()
        );
        for bad in ["", "SHA256:", "sha256:abc", "SHA256:AAAA", &text[7..]] {
            assert!(bad.parse::<Fingerprint>().is_err(), "{bad}");
        }
        assert_ne!(
            Identity::generate("gc-test").unwrap().fingerprint(),
            id.fingerprint(),
            "a fresh key each time"
        );
    }

    #[test]
    fn a_data_dir_identity_is_made_once_with_private_files() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join(IDENTITY_DIR);
        let (first, origin) = Identity::load_or_create(&tls, "gc-server").unwrap();
        assert_eq!(origin, Origin::Created(tls.clone()));
        assert_eq!(mode(&tls), 0o700);
        assert_eq!(mode(&tls.join(KEY_FILE)), 0o600);
        let (again, origin) = Identity::load_or_create(&tls, "gc-server").unwrap();
        assert_eq!(origin, Origin::Loaded(tls.clone()));
        assert_eq!(again.fingerprint(), first.fingerprint());
        assert_eq!(again.certs(), first.certs());
    }

    #[test]
    fn an_identity_and_its_data_dir_are_the_owners_alone_whatever_the_umask() {
        rustix::process::umask(rustix::fs::Mode::from_raw_mode(0o022));
        let dir = tempfile::tempdir().unwrap();
        let data = dir.path().join("gc-data");
        let tls = data.join(IDENTITY_DIR);
        Identity::load_or_create(&tls, "gc-server").unwrap();
        assert_eq!(mode(&data), 0o700, "made first by `tls fingerprint`");
        assert_eq!(mode(&tls), 0o700);
        assert_eq!(mode(&tls.join(KEY_FILE)), 0o600);
        assert_eq!(mode(&tls.join(CERT_FILE)), 0o600);
        // As an older version, or a copy, left them: tightened at the next start.
        fs::set_permissions(&tls, fs::Permissions::from_mode(0o755)).unwrap();
        fs::set_permissions(tls.join(CERT_FILE), fs::Permissions::from_mode(0o644)).unwrap();
        Identity::load_or_create(&tls, "gc-server").unwrap();
        assert_eq!(mode(&tls), 0o700);
        assert_eq!(mode(&tls.join(CERT_FILE)), 0o600);
    }

    #[test]
    fn a_key_others_can_read_is_refused_with_the_fix() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join(IDENTITY_DIR);
        Identity::load_or_create(&tls, "gc-server").unwrap();
        let key = tls.join(KEY_FILE);
        fs::set_permissions(&key, fs::Permissions::from_mode(0o644)).unwrap();
        let err = Identity::load_or_create(&tls, "gc-server")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("read by others") && err.contains("0644"),
            "{err}"
        );
        assert!(
            err.contains("chmod 600") && err.contains(&key.display().to_string()),
            "{err}"
        );
    }

    #[test]
    fn half_an_identity_is_an_error_that_names_the_missing_file() {
        let dir = tempfile::tempdir().unwrap();
        let tls = dir.path().join(IDENTITY_DIR);
        Identity::load_or_create(&tls, "gc-server").unwrap();
        fs::remove_file(tls.join(CERT_FILE)).unwrap();
        let err = Identity::load_or_create(&tls, "gc-server")
            .unwrap_err()
            .to_string();
        assert!(err.contains(CERT_FILE) && err.contains("missing"), "{err}");
    }

    #[test]
    fn unreadable_files_are_named() {
        let dir = tempfile::tempdir().unwrap();
        let (cert, key) = (dir.path().join("c.pem"), dir.path().join("k.pem"));
        fs::write(&cert, "not a certificate").unwrap();
        fs::write(&key, "not a key").unwrap();
        fs::set_permissions(&key, fs::Permissions::from_mode(0o600)).unwrap();
        let err = Identity::load(&cert, &key).unwrap_err().to_string();
        assert!(
            err.contains("c.pem") && err.contains("no PEM certificate"),
            "{err}"
        );
        let err = Identity::load(&dir.path().join("nope.pem"), &key)
            .unwrap_err()
            .to_string();
        assert!(err.contains("nope.pem"), "{err}");
    }

    #[test]
    fn identities_made_here_are_ed25519() {
        let id = Identity::generate("x").unwrap();
        let key = rustls::crypto::aws_lc_rs::sign::any_supported_type(id.key()).unwrap();
        assert_eq!(key.algorithm(), rustls::SignatureAlgorithm::ED25519);
    }

    /// A certificate valid only between two instants.
    fn cert_valid(from: SystemTime, to: SystemTime) -> CertificateDer<'static> {
        let key = rcgen::KeyPair::generate_for(&rcgen::PKCS_ECDSA_P256_SHA256).unwrap();
        let mut params = rcgen::CertificateParams::new(vec!["x".to_owned()]).unwrap();
        params.not_before = from.into();
        params.not_after = to.into();
        params.self_signed(&key).unwrap().der().clone()
    }

    #[test]
    fn the_validity_period_is_read_and_enforced() {
        let now = SystemTime::now();
        let day = Duration::from_secs(86_400);
        let path = Path::new("cert.pem");
        let old = cert_valid(now - day * 30, now - day);
        let err = check_validity(&old, path, now).unwrap_err().to_string();
        assert!(err.contains("expired") && err.contains("cert.pem"), "{err}");
        let future = cert_valid(now + day, now + day * 30);
        let err = check_validity(&future, path, now).unwrap_err().to_string();
        assert!(err.contains("not valid before"), "{err}");
        check_validity(&cert_valid(now - day, now + day), path, now).unwrap();
        // Both encodings of a time: UTCTime before 2050, GeneralizedTime after.
        let long = cert_valid(
            now - day,
            UNIX_EPOCH + Duration::from_secs(4_102_444_800 + 5),
        );
        let (_, after) = validity(long.as_ref()).unwrap();
        assert_eq!(after, 4_102_444_805, "2100-01-01 00:00:05");
        assert_eq!(days_from_civil(1970, 1, 1), 0);
        assert_eq!(days_from_civil(2000, 3, 1), 11_017);
        assert_eq!(validity(b"\x30\x03\x02\x01\x00"), None);
    }
}
