//! `broker`: see the `gds_broker` library. Configuration comes from the environment (and
//! `VCAP_SERVICES`); a missing or invalid setting prints one line naming it and exits 2.

use std::io::Write;
use std::process::ExitCode;

use gds_broker::{Application, BrokerConfig};
use gds_service::Settings;

#[actix_web::main]
async fn main() -> ExitCode {
    gds_service::telemetry::init("broker");
    let config = match Settings::from_env()
        .and_then(|settings| BrokerConfig::from_settings(&settings))
    {
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
