//! `broker`: a thin shell over the `gds_broker` library. Configuration comes from the
//! environment (and `VCAP_SERVICES`); a wrong argument, or a missing or invalid setting,
//! prints one line naming it and exits 2.

use std::io::Write;
use std::process::ExitCode;

use clap::Parser;
use gds_broker::{Application, BrokerConfig};
use gds_service::Settings;

/// The gds-prometheus service broker: the Open Service Broker API on PORT, recording
/// instances and bindings in the database and writing each bound app's Prometheus target
/// file; `POST /update-targets` runs a reconcile pass.
#[derive(Debug, Parser)]
#[command(name = "broker", version)]
struct Cli {}

#[actix_web::main]
async fn main() -> ExitCode {
    if let Err(stop) = gds_service::cli::parse::<Cli>(&gds_broker::config::settings()) {
        return stop.exit();
    }
    gds_service::telemetry::init("broker");
    let config =
        match Settings::from_env().and_then(|settings| BrokerConfig::from_settings(&settings)) {
            Ok(config) => config,
            Err(e) => {
                eprintln!("broker: invalid configuration: {e}");
                return ExitCode::from(2);
            }
        };
    let app = match Application::build(config).await {
        Ok(app) => app,
        Err(e) => {
            eprintln!("broker: cannot start: {e:#}");
            return ExitCode::from(1);
        }
    };
    // The ready line: tests and scripts wait for it (and read the port from it).
    println!("broker listening on http://{}", app.local_addr());
    let _ = std::io::stdout().flush();
    match app.run_until_stopped().await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("broker: server failed: {e}");
            ExitCode::from(1)
        }
    }
}
