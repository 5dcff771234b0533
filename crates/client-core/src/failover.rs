//! Several instances of one service: the order in which the client tries them, and which one it
//! is on.
//!
//! A server given as `host1,host2,host3`, or a name that resolves to several addresses, is one
//! service run by several `gc-server` instances over one shared store: the same accounts and the
//! same id sequence on each. Every login attempt tries the instances' addresses in turn, starting
//! with the one the client was last on; an address whose session just failed (stopped answering,
//! refused connections, shut down) goes last, so the next attempt starts with the next instance at
//! once. When every address failed, the connection thread backs off as it does for one server.
//!
//! Nothing else changes on a move: the client logs in again (sessions are per instance), keeps its
//! outbox (resent under the same client-msg-ids, which the shared store dedupes) and its cursor
//! (the new session delivers what is above it), so nothing is lost or shown twice.

use std::fmt;
use std::net::IpAddr;

use crate::error::ClientError;

/// The instance a client is on (or trying), for a status bar.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Instance {
    /// The entry of the server list, as given (`host2`, `127.0.0.2`).
    pub entry: String,
    /// The address the client connected to.
    pub ip: IpAddr,
    /// The entry's position in the list, from 0.
    pub index: usize,
    /// Entries in the list.
    pub count: usize,
    /// Addresses the entry resolved to.
    pub addresses: usize,
}

impl Instance {
    /// Whether there is another instance to move to: more than one entry, or an entry with
    /// several addresses.
    pub fn has_alternatives(&self) -> bool {
        self.count > 1 || self.addresses > 1
    }
}

impl fmt::Display for Instance {
    /// `host2 (2/3)` in a list; `127.0.0.2` for one address; `chat.example 10.0.0.2` for one of
    /// a name's several addresses.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let literal = self
            .entry
            .trim_matches(['[', ']'])
            .parse::<IpAddr>()
            .is_ok();
        if literal {
            f.write_str(&self.entry)?;
        } else if self.addresses > 1 || self.count == 1 {
            write!(f, "{} {}", self.entry, self.ip)?;
        } else {
            f.write_str(&self.entry)?;
        }
        if self.count > 1 {
            write!(f, " ({}/{})", self.index + 1, self.count)?;
        }
        Ok(())
    }
}

/// One address to try: the entry of the list it belongs to, and how many the entry has.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Target {
    /// The entry's position in the list.
    pub entry: usize,
    /// The address.
    pub ip: IpAddr,
    /// How many addresses the entry resolved to.
    pub addresses: usize,
}

/// The order of attempts (see the module's documentation). Owned by the connection thread.
#[derive(Debug)]
pub(crate) struct Rotation {
    entries: Vec<String>,
    /// The entry to start with: the one the client was last on.
    current: usize,
    /// An address whose session or sign-in just failed: tried last.
    avoid: Option<IpAddr>,
    /// Where the client last logged in.
    on: Option<Target>,
    /// The last round's warnings (each is given once while it holds).
    warned: Vec<String>,
}

impl Rotation {
    /// A rotation over `entries` (at least one), starting with the first.
    pub fn new(entries: Vec<String>) -> Self {
        Self {
            entries,
            current: 0,
            avoid: None,
            on: None,
            warned: Vec::new(),
        }
    }

    /// The attempts of one round: every entry from the current one on, round the list, each
    /// with the addresses `resolve` gives it, skipping those `usable` refuses (no pin for it);
    /// the address to avoid goes last. An entry that does not resolve is skipped with a warning
    /// (in the returned list) when others do; if none resolves, the first entry's error is
    /// returned.
    pub fn targets(
        &self,
        mut resolve: impl FnMut(&str) -> Result<Vec<IpAddr>, ClientError>,
        usable: impl Fn(usize) -> bool,
    ) -> Result<(Vec<Target>, Vec<String>), ClientError> {
        let n = self.entries.len();
        let mut targets = Vec::new();
        let mut warnings = Vec::new();
        let mut first_error = None;
        let mut skipped = Vec::new();
        for k in 0..n {
            let entry = (self.current + k) % n;
            if !usable(entry) {
                skipped.push(entry);
                continue;
            }
            match resolve(&self.entries[entry]) {
                Ok(ips) => {
                    let addresses = ips.len();
                    targets.extend(ips.into_iter().map(|ip| Target {
                        entry,
                        ip,
                        addresses,
                    }));
                }
                Err(e) => {
                    warnings.push(format!("{}; trying the other servers of the list", e));
                    first_error.get_or_insert(e);
                }
            }
        }
        if targets.is_empty() {
            return Err(first_error.unwrap_or_else(|| {
                ClientError::Config(format!(
                    "no server of the list {} has a trusted certificate",
                    self.entries.join(",")
                ))
            }));
        }
        if !skipped.is_empty() {
            let names: Vec<&str> = skipped.iter().map(|&i| self.entries[i].as_str()).collect();
            warnings.push(format!(
                "not trying {}: its certificate was never confirmed (connect to it once on its \
                 own, or use --trust-fingerprint or --trust-on-first-use)",
                names.join(", ")
            ));
        }
        if let Some(avoid) = self.avoid
            && let Some(at) = targets.iter().position(|t| t.ip == avoid)
        {
            let t = targets.remove(at);
            targets.push(t);
        }
        Ok((targets, warnings))
    }

    /// The client logged in through `target`: start there next time. Returns the instance it
    /// was on before, if any.
    pub fn logged_in(&mut self, target: Target) -> Option<Instance> {
        self.current = target.entry;
        self.avoid = None;
        self.on.replace(target).map(|before| self.instance(before))
    }

    /// Whether there is more than one address to try: several entries, or an entry (the last
    /// logged in) with several addresses.
    pub fn has_alternatives(&self) -> bool {
        self.entries.len() > 1 || self.on.is_some_and(|t| t.addresses > 1)
    }

    /// Of `warnings`, those not given in the round before (the others were already shown).
    pub fn fresh_warnings(&mut self, warnings: Vec<String>) -> Vec<String> {
        let fresh = warnings
            .iter()
            .filter(|w| !self.warned.contains(w))
            .cloned()
            .collect();
        self.warned = warnings;
        fresh
    }

    /// The session or sign-in at `ip` failed: try it last next time.
    pub fn failed(&mut self, ip: IpAddr) {
        self.avoid = Some(ip);
    }

    /// What a status bar shows for `target`.
    pub fn instance(&self, target: Target) -> Instance {
        Instance {
            entry: self.entries[target.entry].clone(),
            ip: target.ip,
            index: target.entry,
            count: self.entries.len(),
            addresses: target.addresses,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([127, 0, 0, last])
    }

    /// `a` → .1, `b` → .2, `c` → .3, `multi` → .4 and .5, anything else does not resolve.
    fn resolve(name: &str) -> Result<Vec<IpAddr>, ClientError> {
        match name {
            "a" => Ok(vec![ip(1)]),
            "b" => Ok(vec![ip(2)]),
            "c" => Ok(vec![ip(3)]),
            "multi" => Ok(vec![ip(4), ip(5)]),
            other => Err(ClientError::Resolve {
                server: other.into(),
                detail: "no such host".into(),
            }),
        }
    }

    fn rotation(entries: &[&str]) -> Rotation {
        Rotation::new(entries.iter().map(|e| (*e).to_owned()).collect())
    }

    fn order(r: &Rotation) -> Vec<IpAddr> {
        r.targets(resolve, |_| true)
            .unwrap()
            .0
            .iter()
            .map(|t| t.ip)
            .collect()
    }

    #[test]
    fn the_list_is_tried_in_order_then_from_where_the_client_was() {
        let mut r = rotation(&["a", "b", "c"]);
        assert_eq!(order(&r), [ip(1), ip(2), ip(3)]);
        // On b; b fails: c, a, then b last.
        let (targets, _) = r.targets(resolve, |_| true).unwrap();
        r.logged_in(targets[1]);
        assert_eq!(order(&r), [ip(2), ip(3), ip(1)]);
        r.failed(ip(2));
        assert_eq!(order(&r), [ip(3), ip(1), ip(2)]);
        // A round where all failed keeps that order; a login clears the avoidance.
        assert_eq!(order(&r), [ip(3), ip(1), ip(2)]);
        r.logged_in(targets[2]);
        assert_eq!(order(&r), [ip(3), ip(1), ip(2)]);
    }

    #[test]
    fn a_name_with_several_addresses_moves_to_its_next_address_first() {
        let mut r = rotation(&["multi", "a"]);
        assert_eq!(order(&r), [ip(4), ip(5), ip(1)]);
        r.failed(ip(4));
        assert_eq!(order(&r), [ip(5), ip(1), ip(4)]);
        let one = rotation(&["multi"]);
        let (targets, _) = one.targets(resolve, |_| true).unwrap();
        let shown = one.instance(targets[1]);
        assert!(shown.has_alternatives());
        assert_eq!(shown.to_string(), "multi 127.0.0.5");
    }

    #[test]
    fn unresolvable_and_untrusted_entries_are_skipped_with_a_warning() {
        let r = rotation(&["a", "nowhere", "b"]);
        let (targets, warnings) = r.targets(resolve, |_| true).unwrap();
        assert_eq!(targets.len(), 2);
        assert_eq!(warnings.len(), 1);
        assert!(warnings[0].contains("nowhere"), "{warnings:?}");
        let (targets, warnings) = r.targets(resolve, |entry| entry != 0).unwrap();
        assert_eq!(targets.iter().map(|t| t.ip).collect::<Vec<_>>(), [ip(2)]);
        assert!(
            warnings.iter().any(|w| w.contains("not trying a")),
            "{warnings:?}"
        );
        // None resolves: the first one's error.
        let none = rotation(&["x", "y"]);
        let e = none.targets(resolve, |_| true).unwrap_err();
        assert!(e.to_string().contains('x'), "{e}");
        // None trusted.
        let e = r.targets(resolve, |_| false).unwrap_err();
        assert!(e.to_string().contains("trusted"), "{e}");
    }

    #[test]
    fn status_labels() {
        let r = rotation(&["host1", "host2", "127.0.0.3"]);
        let label = |entry, ip| {
            r.instance(Target {
                entry,
                ip,
                addresses: 1,
            })
            .to_string()
        };
        assert_eq!(label(1, ip(2)), "host2 (2/3)");
        assert_eq!(label(2, ip(3)), "127.0.0.3 (3/3)");
        let single = rotation(&["127.0.0.2"]);
        let i = single.instance(Target {
            entry: 0,
            ip: ip(2),
            addresses: 1,
        });
        assert!(!i.has_alternatives());
        assert_eq!(i.to_string(), "127.0.0.2");
    }
}
