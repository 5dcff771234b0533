//! The TLS 1.3 cipher suites with a cheaper key schedule.
//!
//! rustls' aws-lc-rs suites derive every handshake secret through aws-lc-rs' HKDF, which keeps
//! the salt and secret of an extract and runs extract *and* expand (a fresh HMAC key each time)
//! for every label expanded from it. A handshake expands some fifteen labels, so with SHA-384
//! (the preferred AES-256-GCM suite) that was about a tenth of a server's handshake CPU.
//! rustls' own HKDF over an HMAC ([`HkdfUsingHmac`]) extracts once and keys the HMAC once per
//! secret; each label is then one HMAC from a copied context. The HMAC is still aws-lc-rs', and
//! the suites, record protection and wire bytes are exactly rustls' (RFC 5869 defines HKDF by
//! HMAC, so the derived keys are the same; the tests compare them).

use std::sync::OnceLock;

use aws_lc_rs::hmac as lc;
use rustls::crypto::hash::HashAlgorithm;
use rustls::crypto::hmac::{Hmac, Key, Tag};
use rustls::crypto::tls13::HkdfUsingHmac;
use rustls::crypto::{CipherSuiteCommon, CryptoProvider};
use rustls::{SupportedCipherSuite, Tls13CipherSuite};

/// aws-lc-rs' HMAC with one hash, as rustls' [`Hmac`].
struct AwsLcHmac(lc::Algorithm);

impl Hmac for AwsLcHmac {
    fn with_key(&self, key: &[u8]) -> Box<dyn Key> {
        Box::new(AwsLcKey(lc::Key::new(self.0, key)))
    }

    fn hash_output_len(&self) -> usize {
        self.0.digest_algorithm().output_len()
    }
}

/// A keyed HMAC: its context is keyed once, and each tag starts from a copy of it.
struct AwsLcKey(lc::Key);

impl Key for AwsLcKey {
    fn sign_concat(&self, first: &[u8], middle: &[&[u8]], last: &[u8]) -> Tag {
        let mut context = lc::Context::with_key(&self.0);
        context.update(first);
        for part in middle {
            context.update(part);
        }
        context.update(last);
        Tag::new(context.sign().as_ref())
    }

    fn tag_len(&self) -> usize {
        self.0.algorithm().digest_algorithm().output_len()
    }
}

static HMAC_SHA256: AwsLcHmac = AwsLcHmac(lc::HMAC_SHA256);
static HMAC_SHA384: AwsLcHmac = AwsLcHmac(lc::HMAC_SHA384);
static HKDF_SHA256: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA256);
static HKDF_SHA384: HkdfUsingHmac<'static> = HkdfUsingHmac(&HMAC_SHA384);

/// rustls' aws-lc-rs TLS 1.3 suites whose hash has an HMAC above, with the HKDF over it.
static SUITES: OnceLock<Vec<Tls13CipherSuite>> = OnceLock::new();

/// `provider` (rustls' aws-lc-rs one) with its TLS 1.3 suites' key schedule on
/// [`HkdfUsingHmac`], in the same order; any other suite stays as it is.
pub(super) fn with_cheaper_key_schedule(mut provider: CryptoProvider) -> CryptoProvider {
    let suites = SUITES.get_or_init(|| {
        rustls::crypto::aws_lc_rs::ALL_CIPHER_SUITES
            .iter()
            .filter_map(|suite| suite.tls13().and_then(rehashed))
            .collect()
    });
    for wanted in &mut provider.cipher_suites {
        if let Some(ours) = suites
            .iter()
            .find(|ours| ours.common.suite == wanted.suite())
        {
            *wanted = SupportedCipherSuite::Tls13(ours);
        }
    }
    provider
}

/// `suite` with its HKDF replaced by the one over the same hash (`None`: no HMAC above for it).
fn rehashed(suite: &Tls13CipherSuite) -> Option<Tls13CipherSuite> {
    let hkdf: &'static HkdfUsingHmac<'static> = match suite.common.hash_provider.algorithm() {
        HashAlgorithm::SHA256 => &HKDF_SHA256,
        HashAlgorithm::SHA384 => &HKDF_SHA384,
        _ => return None,
    };
    Some(Tls13CipherSuite {
        common: CipherSuiteCommon {
            suite: suite.common.suite,
            hash_provider: suite.common.hash_provider,
            confidentiality_limit: suite.common.confidentiality_limit,
        },
        hkdf_provider: hkdf,
        aead_alg: suite.aead_alg,
        quic: suite.quic,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::crypto::tls13::{Hkdf, OkmBlock};

    /// Each of rustls' suites beside ours: every derivation a handshake makes gives the same
    /// bytes (so peers built with rustls' own key schedule agree with ours).
    #[test]
    fn the_key_schedule_derives_what_rustls_own_does() {
        let ours = with_cheaper_key_schedule(rustls::crypto::aws_lc_rs::default_provider());
        let theirs = rustls::crypto::aws_lc_rs::default_provider();
        assert_eq!(ours.cipher_suites.len(), theirs.cipher_suites.len());
        for (o, t) in ours.cipher_suites.iter().zip(&theirs.cipher_suites) {
            assert_eq!(o.suite(), t.suite(), "same order");
            let (o, t) = (o.tls13().unwrap(), t.tls13().unwrap());
            assert!(!std::ptr::eq(o, t), "{:?} was replaced", o.common.suite);
            let (o, t): (&dyn Hkdf, &dyn Hkdf) = (o.hkdf_provider, t.hkdf_provider);
            let len = t.extract_from_zero_ikm(None).hash_len();
            let salt = vec![7u8; len];
            for salt in [None, Some(&salt[..])] {
                let pairs = [
                    (o.extract_from_zero_ikm(salt), t.extract_from_zero_ikm(salt)),
                    (
                        o.extract_from_secret(salt, b"shared secret"),
                        t.extract_from_secret(salt, b"shared secret"),
                    ),
                ];
                for (o_exp, t_exp) in pairs {
                    let info: [&[u8]; 3] = [b"\x00\x30", b"\x0dtls13 derived", b"\x00"];
                    let (ob, tb) = (o_exp.expand_block(&info), t_exp.expand_block(&info));
                    assert_eq!(ob.as_ref(), tb.as_ref());
                    // Longer than one hash (several HMAC blocks), and shorter.
                    for n in [12, 32, 3 * len] {
                        let (mut a, mut b) = (vec![0u8; n], vec![0u8; n]);
                        o_exp.expand_slice(&info, &mut a).unwrap();
                        t_exp.expand_slice(&info, &mut b).unwrap();
                        assert_eq!(a, b, "{n} bytes");
                    }
                    let okm = OkmBlock::new(tb.as_ref());
                    let (oo, to) = (o.expander_for_okm(&okm), t.expander_for_okm(&okm));
                    assert_eq!(
                        oo.expand_block(&[b"key"]).as_ref(),
                        to.expand_block(&[b"key"]).as_ref()
                    );
                    assert_eq!(
                        o.hmac_sign(&okm, b"transcript hash").as_ref(),
                        t.hmac_sign(&okm, b"transcript hash").as_ref()
                    );
                }
            }
        }
    }
}
