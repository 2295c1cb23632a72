//! Prints the target file of every app the configured Cloud Foundry user can see, as the
//! broker would write it. Used by `make demo`; handy against a real foundation too:
//!
//! ```sh
//! API_ENDPOINT=https://api.example.org UAA_USERNAME=.. UAA_PASSWORD=.. PAAS_DOMAIN=example.org \
//!   cargo run -p gds-cf --example print-targets
//! ```

use gds_cf::{CfClient, CfConfig};
use gds_targets::{AppState, BindingParams, ModelConfig, build_target_file};

#[tokio::main(flavor = "current_thread")]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let config = CfConfig::from_lookup(|k| std::env::var(k).ok())?;
    let paas_domain = std::env::var("PAAS_DOMAIN").map_err(|_| "PAAS_DOMAIN: is required")?;
    let model = ModelConfig { paas_domain };
    let client = CfClient::new(config)?;
    let snapshot = client.visible_apps().await?;
    for app in snapshot.apps.values() {
        let file = build_target_file(app, &model, &BindingParams::default());
        let folder = match app.state {
            AppState::Started => "active",
            AppState::Stopped => "inactive",
        };
        let guessed = if file.endpoint.guessed {
            "  (no public route: hostname guessed)"
        } else {
            ""
        };
        println!(
            "== {} ({} instances) -> {folder}/{}.json{guessed}",
            app.name, app.instances, app.guid
        );
        print!("{}", String::from_utf8_lossy(&file.to_bytes()));
    }
    let stats = client.request_stats();
    println!(
        "== {} apps, {} Cloud Controller requests",
        snapshot.apps.len(),
        stats.total()
    );
    Ok(())
}
