//! File descriptors for many sessions: the open-file limit, and the descriptor table grown once
//! at startup.
//!
//! A session holds about [`FDS_PER_SESSION`] descriptors. The usual soft limit of 1,024 would
//! stop a server at about 170 sessions, so the server raises it to the hard limit, as most
//! servers do, and says so when even that is below what `max-clients` needs.
//!
//! The kernel grows a process's descriptor table by doubling it, and in a multi-threaded process
//! each growth waits for an RCU grace period: with sessions arriving one by one, the sign-in that
//! crossed 256, 512, 1,024… descriptors took 10–30 ms instead of 1 (docs/PERFORMANCE.md). Taking
//! a descriptor at the highest number the server will need, once at startup, grows the table to
//! its final size before anyone waits for it (the table never shrinks).

use std::fs::File;
use std::os::fd::AsRawFd;

use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};

/// Descriptors a session holds: its sending connection and the slot's clone of it, and the
/// heartbeat and delivery connections, each with the clone kept to shut it down.
pub const FDS_PER_SESSION: u64 = 6;

/// Descriptors beside the sessions: listeners, the store's files, logs, short-lived auth and
/// connect connections.
const FDS_BASE: u64 = 256;

/// What [`prepare`] found and did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FdReport {
    /// The soft limit on open files now in force (`None`: unlimited or unknown).
    pub limit: Option<u64>,
    /// Descriptors `max_clients` sessions need.
    pub wanted: u64,
    /// The descriptor table was grown to hold this many.
    pub table: Option<u64>,
}

impl FdReport {
    /// Sessions the limit allows, when it is below what `max_clients` needs.
    pub fn sessions_allowed(&self) -> Option<u64> {
        let limit = self.limit?;
        (limit < self.wanted).then(|| limit.saturating_sub(FDS_BASE) / FDS_PER_SESSION)
    }

    /// The most sessions to allow: `max_clients`, or what the limit allows when that is fewer
    /// (at least 1). Past the limit a login would fail for want of a descriptor, with errors
    /// that point elsewhere (an unreachable client, an internal error); `Err full` says it.
    pub fn max_clients(&self, max_clients: usize) -> usize {
        match self.sessions_allowed() {
            Some(allowed) => usize::try_from(allowed)
                .unwrap_or(usize::MAX)
                .clamp(1, max_clients),
            None => max_clients,
        }
    }
}

/// Descriptors `max_clients` sessions need.
pub fn wanted(max_clients: usize) -> u64 {
    FDS_BASE + FDS_PER_SESSION.saturating_mul(max_clients as u64)
}

/// Raises the soft open-file limit to the hard one (not beyond what `max_clients` needs), and
/// grows the descriptor table to that size. Failures are not errors: the server runs with what
/// it has, and the report says what that is.
pub fn prepare(max_clients: usize) -> FdReport {
    let wanted = wanted(max_clients);
    let lim = getrlimit(Resource::Nofile);
    let mut limit = lim.current;
    if let Some(current) = lim.current
        && current < wanted
    {
        let raised = lim.maximum.map_or(wanted, |hard| hard.min(wanted));
        if raised > current
            && setrlimit(
                Resource::Nofile,
                Rlimit {
                    current: Some(raised),
                    maximum: lim.maximum,
                },
            )
            .is_ok()
        {
            limit = Some(raised);
        }
    }
    let size = limit.map_or(wanted, |l| l.min(wanted));
    FdReport {
        limit,
        wanted,
        table: grow_table(size),
    }
}

/// Takes (and closes again) a descriptor numbered just below `size`, which makes the kernel size
/// the table for `size` descriptors. Returns the size reached.
fn grow_table(size: u64) -> Option<u64> {
    let file = File::open("/dev/null").ok()?;
    if (file.as_raw_fd() as u64) + 1 >= size {
        return Some(size);
    }
    let top = i32::try_from(size.saturating_sub(1)).ok()?;
    let high = rustix::io::fcntl_dupfd_cloexec(&file, top).ok()?;
    Some(high.as_raw_fd() as u64 + 1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_limit_covers_max_clients_when_the_hard_limit_allows_it() {
        let hard = getrlimit(Resource::Nofile).maximum;
        let report = prepare(100);
        assert_eq!(report.wanted, wanted(100));
        let now = getrlimit(Resource::Nofile).current;
        assert_eq!(report.limit, now);
        if hard.is_none_or(|h| h >= report.wanted) {
            assert!(now.is_none_or(|l| l >= report.wanted), "{report:?}");
            assert_eq!(report.sessions_allowed(), None);
        }
        let table = report.table.expect("the table grows");
        assert!(table >= report.wanted.min(now.unwrap_or(u64::MAX)));
    }

    #[test]
    fn a_low_limit_is_reported_with_the_sessions_it_allows() {
        let report = FdReport {
            limit: Some(1024),
            wanted: wanted(4096),
            table: Some(1024),
        };
        assert_eq!(
            report.sessions_allowed(),
            Some((1024 - FDS_BASE) / FDS_PER_SESSION)
        );
        let enough = FdReport {
            limit: Some(100_000),
            ..report
        };
        assert_eq!(enough.sessions_allowed(), None);
        assert_eq!(report.max_clients(4096), 128);
        assert_eq!(enough.max_clients(4096), 4096);
        let tiny = FdReport {
            limit: Some(100),
            ..report
        };
        assert_eq!(tiny.max_clients(4096), 1, "never 0");
    }
}
