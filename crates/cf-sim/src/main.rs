//! `cf-sim`: a thin wrapper around the library (see `lib.rs` for what it simulates).

use std::io::Write;
use std::process::ExitCode;

use cf_sim::Sim;
use cf_sim::config::{one_line, parse};
use tracing_subscriber::EnvFilter;

#[actix_web::main]
async fn main() -> ExitCode {
    let config = match parse(std::env::args_os()) {
        Ok(config) => config,
        // --help: clap prints it to stdout and exits 0.
        Err(e) if !e.use_stderr() => e.exit(),
        Err(e) => {
            eprintln!("cf-sim: {}", one_line(&e));
            return ExitCode::from(2);
        }
    };
    tracing_subscriber::fmt()
        .with_writer(std::io::stderr)
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .init();

    let sim = match Sim::start(config) {
        Ok(sim) => sim,
        Err(e) => {
            eprintln!("cf-sim: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The one line on stdout (two with --router-listen): tests and scripts read the
    // port from the first.
    println!("cf-sim listening on {}", sim.local_url);
    if let Some(router_url) = &sim.router_url {
        println!("cf-sim router listening on {router_url}");
    }
    let _ = std::io::stdout().flush();
    match sim.run().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("cf-sim: {e}");
            ExitCode::FAILURE
        }
    }
}
