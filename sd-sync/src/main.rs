//! `sd-sync`: a thin wrapper around the library (see `lib.rs`).

use std::io::Write;
use std::process::ExitCode;

use gds_service::Settings;
use sd_sync::SdSync;
use sd_sync::config::{Command, help, parse};

fn main() -> ExitCode {
    let settings = match Settings::from_env() {
        Ok(settings) => settings,
        Err(e) => {
            eprintln!("sd-sync: {e}");
            return ExitCode::from(2);
        }
    };
    let config = match parse(std::env::args().skip(1), &settings) {
        Ok(Command::Run(config)) => *config,
        Ok(Command::Help) => {
            print!("{}", help());
            return ExitCode::SUCCESS;
        }
        Err(message) => {
            eprintln!("sd-sync: {message}");
            return ExitCode::from(2);
        }
    };
    gds_service::telemetry::init("sd-sync");

    // Multi-threaded: a first full sync of thousands of objects keeps the S3 client busy
    // on more than one core (actix-web starts in this runtime and adds its own worker).
    // Few blocking threads: they only write small files, and each one would otherwise
    // grow the process by a malloc arena.
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .max_blocking_threads(8)
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("sd-sync: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    runtime.block_on(run(config))
}

async fn run(config: sd_sync::config::Config) -> ExitCode {
    let once = config.once;
    let sd_sync = match SdSync::open(config).await {
        Ok(sd_sync) => sd_sync,
        Err(e) => {
            eprintln!("sd-sync: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    if once {
        return if sd_sync.sync_once().await {
            ExitCode::SUCCESS
        } else {
            ExitCode::FAILURE
        };
    }
    let running = match sd_sync.serve() {
        Ok(running) => running,
        Err(e) => {
            eprintln!("sd-sync: {e:#}");
            return ExitCode::FAILURE;
        }
    };
    // The one line on stdout: tests and scripts read the address from it.
    println!("sd-sync listening on {}", running.local_url);
    let _ = std::io::stdout().flush();
    match running.run().await {
        Ok(()) => {
            tracing::info!("stopped");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("sd-sync: {e}");
            ExitCode::FAILURE
        }
    }
}
