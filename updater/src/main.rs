//! `updater`: a thin shell over the `gds_updater` library (`updater --help` says what
//! it does). Configuration comes from the environment (and `VCAP_SERVICES`); a wrong
//! argument, or a missing or invalid setting, prints one line naming it and exits 2.

use std::process::ExitCode;

use gds_service::Settings;
use gds_updater::cli::Cli;

#[tokio::main]
async fn main() -> ExitCode {
    let cli: Cli = match gds_service::cli::parse(&gds_updater::config::settings()) {
        Ok(cli) => cli,
        Err(stop) => return stop.exit(),
    };
    gds_service::telemetry::init("updater");
    gds_updater::run::run(cli.mode(), Settings::from_env()).await
}
