//! Texts one side formats and the other reads back: each format sits next to its parse, with a
//! round-trip test, so neither side can drift.
//!
//! - the wait in a `rate-limited` error ([`rate_limited`] / [`retry_after`]);
//! - the server's minimum SCRAM iteration count in a refused `Register`
//!   ([`iterations_below_minimum`] / [`minimum_iterations`]);
//! - the addresses a server listens on, as it announces them for tools ([`ServerAddrs`]).

use std::fmt;
use std::net::SocketAddr;
use std::str::FromStr;
use std::time::Duration;

const RETRY_IN: &str = "retry in ";
const MINIMUM_OF: &str = "minimum of ";

/// The text of `Err rate-limited`: the limits, and how long to wait (`retry in 0.2 s`).
pub fn rate_limited(burst: u32, per_sec: f64, wait: Duration) -> String {
    format!(
        "too many messages (at most {burst} at once, then {per_sec} per second); {RETRY_IN}{:.1} s",
        wait.as_secs_f64().max(0.1)
    )
}

/// The `rate-limited` text of a registration refused because the address registered `max`
/// accounts within the hour; [`retry_after`] reads the wait back.
pub fn registrations_limited(max: usize, wait: Duration) -> String {
    format!(
        "too many accounts registered from this address (at most {max} an hour); {RETRY_IN}{:.0} s",
        wait.as_secs_f64().ceil().max(1.0)
    )
}

/// The `throttled` text of a login refused until `wait` has passed; [`retry_after`] reads the
/// wait back, and clients try again then.
pub fn login_throttled(wait: Duration) -> String {
    format!(
        "too many failed logins for this user from this address; {RETRY_IN}{:.0} s",
        wait.as_secs_f64().ceil().max(1.0)
    )
}

/// The `auth` text of a failed login when the server does not tell which names exist: the same
/// for a wrong password and for a name without an account.
pub fn login_failed(username: &str) -> String {
    format!("wrong password for {username}, or no account by that name")
}

/// Reads the wait out of a `rate-limited` text such as "… retry in 0.2 s" (also `ms`).
pub fn retry_after(text: &str) -> Option<Duration> {
    let rest = &text[text.find(RETRY_IN)? + RETRY_IN.len()..];
    let number: String = rest
        .chars()
        .take_while(|c| c.is_ascii_digit() || *c == '.')
        .collect();
    let unit = rest[number.len()..].trim_start();
    let value: f64 = number.parse().ok()?;
    if !value.is_finite() || value < 0.0 {
        return None;
    }
    let secs = if unit.starts_with("ms") {
        value / 1000.0
    } else if unit.starts_with('s') {
        value
    } else {
        return None;
    };
    Duration::try_from_secs_f64(secs).ok()
}

/// The text of `Err malformed` for a `Register` whose iteration count is below the server's
/// minimum.
pub fn iterations_below_minimum(got: u32, min: u32) -> String {
    format!("{got} SCRAM iterations is below this server's {MINIMUM_OF}{min}")
}

/// Reads the server's minimum out of an [`iterations_below_minimum`] text.
pub fn minimum_iterations(text: &str) -> Option<u32> {
    let rest = &text[text.find(MINIMUM_OF)? + MINIMUM_OF.len()..];
    let digits: String = rest.chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The three addresses a server listens on. Its `Display` is the form the server logs and
/// prints for tools (`connect 127.0.0.1:10740, auth 127.0.0.1:9281, send 127.0.0.1:9980`);
/// [`ServerAddrs::from_listening_line`] finds it in a line.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct ServerAddrs {
    /// Connect / version check (10740).
    pub connect: SocketAddr,
    /// Authentication and registration (9281).
    pub auth: SocketAddr,
    /// Sending and queries (9980).
    pub send: SocketAddr,
}

/// What marks the addresses in a line: `listening: <addrs>`.
pub const LISTENING: &str = "listening: ";

impl fmt::Display for ServerAddrs {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "connect {}, auth {}, send {}",
            self.connect, self.auth, self.send
        )
    }
}

/// Text that is not `connect A, auth B, send C`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[error("not `connect ADDR, auth ADDR, send ADDR`")]
pub struct BadServerAddrs;

impl FromStr for ServerAddrs {
    type Err = BadServerAddrs;

    fn from_str(text: &str) -> Result<Self, Self::Err> {
        let mut parts = text.trim_end().split(", ");
        let mut next = |name: &str| -> Result<SocketAddr, BadServerAddrs> {
            let part = parts.next().ok_or(BadServerAddrs)?;
            let addr = part
                .strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .ok_or(BadServerAddrs)?;
            addr.parse().map_err(|_| BadServerAddrs)
        };
        let addrs = Self {
            connect: next("connect")?,
            auth: next("auth")?,
            send: next("send")?,
        };
        match parts.next() {
            None => Ok(addrs),
            Some(_) => Err(BadServerAddrs),
        }
    }
}

impl ServerAddrs {
    /// The line a server writes once its ports are bound: `listening: <addrs>`.
    pub fn listening_line(&self) -> String {
        format!("{LISTENING}{self}")
    }

    /// Finds `listening: <addrs>` anywhere in `line` (a log line has a time and level before
    /// it).
    pub fn from_listening_line(line: &str) -> Option<Self> {
        let at = line.find(LISTENING)?;
        line[at + LISTENING.len()..].parse().ok()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_registration_limit_says_when_to_retry() {
        let text = registrations_limited(30, Duration::from_millis(1_200_500));
        assert_eq!(
            text,
            "too many accounts registered from this address (at most 30 an hour); retry in 1201 s"
        );
        assert_eq!(retry_after(&text), Some(Duration::from_secs(1201)));
    }

    #[test]
    fn the_rate_limit_wait_round_trips() {
        for ms in [0u64, 100, 200, 1500, 60_000] {
            let text = rate_limited(10, 5.0, Duration::from_millis(ms));
            let read = retry_after(&text).unwrap();
            // Written with one decimal, at least 0.1 s.
            let expected = Duration::from_millis(ms.max(100)).as_secs_f64();
            assert!((read.as_secs_f64() - expected).abs() < 0.051, "{text}");
        }
        assert_eq!(
            rate_limited(10, 5.0, Duration::from_millis(200)),
            "too many messages (at most 10 at once, then 5 per second); retry in 0.2 s"
        );
    }

    #[test]
    fn retry_times_in_other_forms() {
        for (text, ms) in [
            ("retry in 3 s", 3000),
            ("retry in 250 ms", 250),
            ("retry in 100000 s", 100_000_000),
        ] {
            assert_eq!(retry_after(text), Some(Duration::from_millis(ms)), "{text}");
        }
        for text in [
            "",
            "slow down",
            "retry in soon",
            "retry in 1.2.3 s",
            "retry in 5 min",
            "retry in 1e400 s",
        ] {
            assert_eq!(retry_after(text), None, "{text}");
        }
    }

    #[test]
    fn the_iteration_minimum_round_trips() {
        for (got, min) in [(1, 4096), (4096, 8192), (0, u32::MAX)] {
            let text = iterations_below_minimum(got, min);
            assert_eq!(minimum_iterations(&text), Some(min), "{text}");
        }
        assert_eq!(
            iterations_below_minimum(4096, 8192),
            "4096 SCRAM iterations is below this server's minimum of 8192"
        );
        assert_eq!(minimum_iterations("bad username"), None);
        assert_eq!(minimum_iterations("minimum of lots"), None);
    }

    #[test]
    fn server_addrs_round_trip_through_the_listening_line() {
        let addrs = ServerAddrs {
            connect: "127.0.0.1:10740".parse().unwrap(),
            auth: "[::1]:9281".parse().unwrap(),
            send: "10.0.0.5:9980".parse().unwrap(),
        };
        let line = addrs.listening_line();
        assert_eq!(
            line,
            "listening: connect 127.0.0.1:10740, auth [::1]:9281, send 10.0.0.5:9980"
        );
        assert_eq!(ServerAddrs::from_listening_line(&line), Some(addrs));
        // Inside a log line, with a newline after it.
        let logged = format!("2026-01-01T00:00:00Z  INFO gc_server::server: {line}\n");
        assert_eq!(ServerAddrs::from_listening_line(&logged), Some(addrs));
        for bad in [
            "listening: connect 127.0.0.1:1, auth 127.0.0.1:2",
            "listening: connect 127.0.0.1:1, auth 127.0.0.1:2, send x",
            "listening: auth 127.0.0.1:1, connect 127.0.0.1:2, send 127.0.0.1:3",
            "listening: connect 127.0.0.1:1, auth 127.0.0.1:2, send 127.0.0.1:3, more 1.1.1.1:1",
            "connect 127.0.0.1:1, auth 127.0.0.1:2, send 127.0.0.1:3",
        ] {
            assert_eq!(ServerAddrs::from_listening_line(bad), None, "{bad}");
        }
    }
}
