//! What each mode of the command line does ([`crate::cli::Mode`]): each prints its
//! outcome and gives the process' exit code.

use std::io::Write;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use gds_engine::{CatalogIds, PassError};
use gds_reconcile::Scope;
use gds_service::{Settings, error_chain};

use crate::UpdaterConfig;
use crate::cli::Mode;
use crate::daemon::{Daemon, build_reconciler};
use crate::import;

/// How long `--once` waits for another updater's pass to finish.
const ONCE_LEASE_WAIT: Duration = Duration::from_secs(60);

/// Reads the configuration from `settings` and runs `mode`. A missing or invalid setting
/// prints one line naming it and exits 2.
pub async fn run(mode: Mode, settings: Result<Settings, gds_service::SettingsError>) -> ExitCode {
    let (settings, config) = match settings
        .and_then(|settings| UpdaterConfig::from_settings(&settings).map(|c| (settings, c)))
    {
        Ok(read) => read,
        Err(e) => return invalid_configuration(&e),
    };
    match mode {
        Mode::Serve => serve(config).await,
        Mode::Once => once(config).await,
        Mode::DryRun => dry_run(config).await,
        Mode::Import { dry_run } => match CatalogIds::from_settings(&settings) {
            Ok(ids) => import_bindings(config, ids, dry_run).await,
            Err(e) => invalid_configuration(&e),
        },
    }
}

fn invalid_configuration(e: &gds_service::SettingsError) -> ExitCode {
    eprintln!("updater: invalid configuration: {e}");
    ExitCode::from(2)
}

async fn serve(config: UpdaterConfig) -> ExitCode {
    let daemon = match Daemon::build(config).await {
        Ok(daemon) => daemon,
        Err(e) => {
            eprintln!("updater: cannot start: {e:#}");
            return ExitCode::from(1);
        }
    };
    // The ready line: tests and scripts wait for it (and read the port from it).
    println!("updater listening on http://{}", daemon.local_addr());
    let _ = std::io::stdout().flush();
    match daemon.run_until_stopped().await {
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
