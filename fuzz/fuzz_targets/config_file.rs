//! The server's configuration file (`gc-server --config FILE`): no text panics the parser or the
//! settings it gives; a file that is refused says why; and a file that is accepted, applied to
//! the defaults and checked, gives settings within the bounds the server relies on.

#![no_main]

use std::time::Duration;

use gc_config::{Config, FileConfig, MAX_PLUGIN_HOOK_LIMIT};
use gc_protocol::limits::{MAX_BODY_BYTES, MAX_SCRAM_ITERATIONS, MIN_SCRAM_ITERATIONS};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    // The server reads the file as UTF-8 (anything else is refused before parsing); the lossy
    // text lets every input reach the parser.
    let text = String::from_utf8_lossy(data);
    let file = match FileConfig::parse(&text) {
        Ok(file) => file,
        Err(e) => {
            assert!(!e.to_string().is_empty(), "a refusal that says nothing");
            return;
        }
    };
    let mut config = Config::default();
    if let Err(e) = config.apply(&file) {
        assert!(!e.to_string().is_empty(), "a refusal that says nothing");
        return;
    }
    // Flags go on as a second layer of the same shape: the same layer again changes nothing.
    let mut twice = config.clone();
    assert!(
        twice.apply(&file).is_ok(),
        "a layer accepted once, refused again"
    );
    assert_eq!(
        format!("{twice:?}"),
        format!("{config:?}"),
        "applying twice differs"
    );
    if config.validate().is_err() {
        return;
    }
    accepted(&config);
});

/// What the server relies on in settings that passed their check.
fn accepted(c: &Config) {
    assert!(c.heartbeat_interval >= Duration::from_millis(10));
    assert!((1..=MAX_BODY_BYTES).contains(&c.max_message_bytes));
    assert!((MIN_SCRAM_ITERATIONS..=MAX_SCRAM_ITERATIONS).contains(&c.scram_min_iterations));
    assert!(c.max_clients >= 1 && c.max_pending_auths >= 1);
    assert!(c.max_sessions_per_user >= 1 && c.max_sessions_per_address >= 1);
    assert!(c.rate_burst >= 1 && c.rate_per_sec.is_finite() && c.rate_per_sec > 0.0);
    assert!(!c.tell_unknown_users || c.registration_open);
    assert!(c.max_login_failures >= 1);
    assert!(c.pending_timeout >= Duration::from_millis(10));
    assert!(c.io_timeout >= Duration::from_millis(10) && c.idle_timeout >= c.io_timeout);
    assert!(c.server_name.len() <= 200);
    assert!(c.plugin_hook_budget >= Duration::from_millis(1));
    assert!(c.plugin_hook_budget <= c.plugin_hook_limit);
    assert!(c.plugin_hook_limit <= MAX_PLUGIN_HOOK_LIMIT);
    assert_eq!(c.tls_cert.is_some(), c.tls_key.is_some());
    // The rate limiter's longest wait, one message at the sustained rate, is a `Duration`.
    assert!(
        Duration::try_from_secs_f64(1.0 / c.rate_per_sec).is_ok(),
        "rate-per-sec {} accepted, but a wait at that rate is no Duration",
        c.rate_per_sec
    );
}
