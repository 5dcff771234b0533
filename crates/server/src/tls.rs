//! The server's TLS identity: the operator's certificate and key, or the self-signed pair made in
//! the data directory at the first start.

use std::sync::Arc;

use gc_net::identity::{IDENTITY_DIR, Identity, Origin};
use gc_net::tls::{ClientAuth, TlsConfig};
use gc_protocol::Fingerprint;

use crate::config::{Config, TlsMode};
use crate::error::ServerError;

/// The identity the server presents: `tls_cert`/`tls_key` when configured, otherwise the one in
/// `DATA_DIR/tls/`, made now if there is none.
pub fn identity(config: &Config) -> Result<Identity, ServerError> {
    if let (Some(cert), Some(key)) = (&config.tls_cert, &config.tls_key) {
        return Ok(Identity::load(cert, key)?);
    }
    let (identity, origin) =
        Identity::load_or_create(&config.data_dir.join(IDENTITY_DIR), "gc-server")?;
    if let Origin::Created(dir) = origin {
        tracing::info!("made a new TLS identity in {}", dir.display());
    }
    Ok(identity)
}

/// The server's TLS setup for its mode, and its certificate's fingerprint: `None` with
/// `--tls off`.
pub fn server_config(
    config: &Config,
) -> Result<Option<(Arc<TlsConfig>, Fingerprint)>, ServerError> {
    if config.tls == TlsMode::Off {
        return Ok(None);
    }
    let identity = identity(config)?;
    // The server never checks client certificates on its own ports: clients prove who they are
    // with SCRAM, bound to the TLS session. It is the client's callback listeners that demand a
    // certificate (the server's, pinned at login).
    // Handshakes on threads of their own: the session threads that make callback connections
    // (and take 9980 ones) live as long as their sessions and would keep a handshake's stack.
    let tls = TlsConfig::new(Some(&identity), ClientAuth::None)?.with_handshake_threads();
    let fingerprint = identity.fingerprint();
    tracing::info!(
        "TLS {}: server certificate fingerprint {fingerprint}",
        config.tls.as_str()
    );
    Ok(Some((Arc::new(tls), fingerprint)))
}
