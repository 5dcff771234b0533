//! `register`: registrations one after the other on one connection to a started server whose
//! accounts file already holds `--existing` accounts; registrations per second.

use std::time::Instant;

use serde_json::json;

use super::{check_range, human};
use crate::Ctx;
use crate::cli::RegisterArgs;
use crate::error::BenchError;
use crate::report::RunResult;
use crate::server::Server;
use crate::wire::Mode;

/// Runs the workload once.
pub fn register(ctx: &Ctx, mode: Mode, a: &RegisterArgs) -> Result<RunResult, BenchError> {
    check_range("--n", a.n, 1, 100_000)?;
    check_range("--existing", a.existing, 0, 1_000_000)?;
    if ctx.spec.external.is_some() {
        return Err(BenchError::Invalid(
            "register measures a started server with a prepared accounts file".into(),
        ));
    }
    let mut server = Server::start(&ctx.spec, mode, &ctx.accounts, a.existing)?;
    let wire = ctx.wire(mode, &server)?;
    let t0 = Instant::now();
    let result = ctx.accounts.register_range(
        &server.addrs,
        &wire,
        ctx.ip(0),
        a.existing..a.existing + a.n,
    );
    let took = t0.elapsed();
    server.stop();
    result?;
    let (warnings, errors, first) = server.problems();
    let rate = a.n as f64 / took.as_secs_f64().max(1e-9);
    Ok(RunResult {
        params: json!({"n": a.n, "existing": a.existing}),
        results: json!({
            "registrations_per_s": rate.round(),
            "seconds": took.as_secs_f64(),
            "problems": {
                "server_warnings": warnings,
                "server_errors": errors,
                "server_first_problems": first,
            },
        }),
        table: vec![
            (
                "registrations".into(),
                format!(
                    "{} after {} existing accounts, in {:.3} s",
                    a.n,
                    a.existing,
                    took.as_secs_f64()
                ),
            ),
            ("rate".into(), format!("{}/s", human(rate))),
        ],
        headline: vec!["registrations_per_s".into()],
    })
}
