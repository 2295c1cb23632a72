//! `updater`: see the `gds_updater` library.
//!
//!     updater              run: a full pass at start and on the schedule, plus the
//!                          audit-event fast path; /health and /metrics on PORT
//!     updater --once       one full pass; exit 0 when it succeeded, 1 otherwise
//!     updater --dry-run    print the plan of a full pass; change nothing
//!     updater --import-bindings [--dry-run]
//!                          record the instances and bindings of our plan that the Cloud
//!                          Controller has and the database lacks (the cut-over from
//!                          another broker, see gds_updater::import); with --dry-run,
//!                          list them
//!
//! Configuration comes from the environment (and `VCAP_SERVICES`); a missing or invalid
//! setting prints one line naming it and exits 2.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use gds_engine::CatalogIds;
use gds_engine::PassError;
use gds_reconcile::Scope;
use gds_service::Settings;
use gds_service::error_chain;
use gds_updater::UpdaterConfig;
use gds_updater::import;
use gds_updater::service::{Service, build_reconciler};

const USAGE: &str = "usage: updater [--once | --dry-run | --import-bindings [--dry-run]]";

/// How long `--once` waits for another updater's pass to finish.
const ONCE_LEASE_WAIT: Duration = Duration::from_secs(60);

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    Once,
    DryRun,
    Import { dry_run: bool },
}

#[tokio::main]
async fn main() -> ExitCode {
    let mut mode = Mode::Serve;
    for arg in std::env::args().skip(1) {
        mode = match (arg.as_str(), mode) {
            ("--once", Mode::Serve | Mode::Once) => Mode::Once,
            ("--dry-run", Mode::Import { .. }) => Mode::Import { dry_run: true },
            ("--dry-run", _) => Mode::DryRun,
            ("--once", Mode::DryRun) => Mode::DryRun,
            ("--import-bindings", Mode::Serve | Mode::Import { .. }) => {
                Mode::Import { dry_run: false }
            }
            ("--import-bindings", Mode::DryRun) => Mode::Import { dry_run: true },
            ("--once", Mode::Import { .. }) | ("--import-bindings", Mode::Once) => {
                eprintln!("updater: --once and --import-bindings do not combine; {USAGE}");
                return ExitCode::from(2);
            }
            ("-h" | "--help", _) => {
                println!("{USAGE}");
                return ExitCode::SUCCESS;
            }
            (other, _) => {
                eprintln!("updater: unknown argument {other:?}; {USAGE}");
                return ExitCode::from(2);
            }
        };
    }
    gds_service::telemetry::init("updater");
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("updater: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match UpdaterConfig::from_settings(&settings) {
        Ok(config) => config,
        Err(e) => {
            eprintln!("updater: invalid configuration: {e}");
            return ExitCode::from(2);
        }
    };
    match mode {
        Mode::Serve => serve(config).await,
        Mode::Once => once(config).await,
        Mode::DryRun => dry_run(config).await,
        Mode::Import { dry_run } => match CatalogIds::from_settings(&settings) {
            Ok(ids) => import_bindings(config, ids, dry_run).await,
            Err(e) => {
                eprintln!("updater: invalid configuration: {e}");
                ExitCode::from(2)
            }
        },
    }
}

async fn serve(config: UpdaterConfig) -> ExitCode {
    let service = match Service::build(config).await {
        Ok(service) => service,
        Err(e) => {
            eprintln!("updater: cannot start: {e:#}");
            return ExitCode::from(1);
        }
    };
    // The ready line: tests and scripts wait for it (and read the port from it).
    println!("updater listening on http://{}", service.local_addr());
    let _ = std::io::stdout().flush();
    match service.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("updater: {e:#}");
            ExitCode::from(1)
        }
    }
}

async fn once(config: UpdaterConfig) -> ExitCode {
    let reconciler = match build_reconciler(&config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("updater: cannot start: {e:#}");
            return ExitCode::from(1);
        }
    };
    let started = Instant::now();
    let result = loop {
        match reconciler.run_pass(Scope::All).await {
            Err(PassError::Busy) if started.elapsed() < ONCE_LEASE_WAIT => {
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            other => break other,
        }
    };
    reconciler.db().close().await;
    match result {
        Ok(report) if report.succeeded() => {
            println!("updater: {}", report.summary());
            ExitCode::SUCCESS
        }
        Ok(report) => {
            eprintln!("updater: {}", report.summary());
            ExitCode::from(1)
        }
        Err(e) => {
            eprintln!("updater: pass failed: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

async fn dry_run(config: UpdaterConfig) -> ExitCode {
    let reconciler = match build_reconciler(&config).await {
        Ok(r) => r,
        Err(e) => {
            eprintln!("updater: cannot start: {e:#}");
            return ExitCode::from(1);
        }
    };
    let result = reconciler.dry_run(&Scope::All).await;
    reconciler.db().close().await;
    match result {
        Ok(report) => {
            print!("{}", report.plan);
            let _ = std::io::stdout().flush();
            if report.plan.complete {
                ExitCode::SUCCESS
            } else {
                eprintln!(
                    "updater: dry run: incomplete reads: {}",
                    report.read_failures.join("; ")
                );
                ExitCode::from(1)
            }
        }
        Err(e) => {
            eprintln!("updater: dry run failed: {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}

/// `--import-bindings`: reads the Cloud Controller, then records what the database lacks
/// (or, with `--dry-run`, lists it). Needs the database and the Cloud Controller, not the
/// store.
async fn import_bindings(config: UpdaterConfig, ids: CatalogIds, dry_run: bool) -> ExitCode {
    let db = match config.engine.database.connect().await {
        Ok(db) => db,
        Err(e) => {
            eprintln!("updater: cannot start: {e:#}");
            return ExitCode::from(1);
        }
    };
    let cf = match config.engine.cf_client() {
        Ok(cf) => cf,
        Err(e) => {
            eprintln!("updater: cannot start: {e:#}");
            return ExitCode::from(1);
        }
    };
    let result = import::run(&db, &cf, &ids, dry_run).await;
    db.close().await;
    match result {
        Ok(report) => {
            print!("{report}");
            let _ = std::io::stdout().flush();
            ExitCode::SUCCESS
        }
        Err(e) => {
            let outcome = if e.recorded_nothing() {
                "nothing was recorded"
            } else {
                "what was recorded stays (it is correct); run the import again for the rest"
            };
            eprintln!("updater: import failed ({outcome}): {}", error_chain(&e));
            ExitCode::from(1)
        }
    }
}
