//! A fresh PostgreSQL database per test, in the private cluster `.ci/test` starts
//! (`GC_TEST_POSTGRES`: its superuser URL). Without that variable the tests that need one are
//! skipped with a note, unless `GC_REQUIRE_POSTGRES=1` (as in CI): then they fail.

use std::sync::atomic::{AtomicU32, Ordering};

/// A database made for one test and dropped after it.
#[derive(Debug)]
pub struct TestDb {
    /// Its URL (with password: tests only).
    pub url: String,
    admin: String,
    name: String,
}

/// A new empty database, or `None` (after a note) when no cluster is configured and none is
/// required.
pub fn database() -> Option<TestDb> {
    let Ok(admin) = std::env::var("GC_TEST_POSTGRES") else {
        assert!(
            std::env::var("GC_REQUIRE_POSTGRES").as_deref() != Ok("1"),
            "GC_REQUIRE_POSTGRES=1 but GC_TEST_POSTGRES is not set: run the tests with `bash .ci/test`"
        );
        // The test harness shows a test's stderr: the skip is visible, not silent.
        #[allow(clippy::print_stderr)]
        {
            eprintln!("skipped: no PostgreSQL (GC_TEST_POSTGRES); `bash .ci/test` starts one");
        }
        return None;
    };
    static NEXT: AtomicU32 = AtomicU32::new(0);
    let name = format!(
        "gc_test_{}_{}",
        std::process::id(),
        NEXT.fetch_add(1, Ordering::Relaxed)
    );
    let mut client = postgres::Client::connect(&admin, postgres::NoTls)
        .unwrap_or_else(|e| panic!("cannot reach the test cluster at GC_TEST_POSTGRES: {e}"));
    client
        .batch_execute(&format!("CREATE DATABASE {name}"))
        .unwrap_or_else(|e| panic!("cannot create the test database {name}: {e}"));
    let url = match admin.rsplit_once('/') {
        Some((base, _)) => format!("{base}/{name}"),
        None => panic!("GC_TEST_POSTGRES is not a postgres:// URL"),
    };
    Some(TestDb { url, admin, name })
}

impl Drop for TestDb {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin, postgres::NoTls) {
            let _ = client.batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}
