//! What every gds-prometheus service shares at its edges: logging set-up, settings from
//! the environment and `VCAP_SERVICES` with their one error type, the `PORT`, secrets,
//! the one-line error chain, metrics exposition and shutdown. The libraries use it too
//! (`Secret`, `SettingsError`), so it depends on no crate of ours.
//!
//! Nothing here knows about brokers, targets or buckets.

#[cfg(feature = "cli")]
pub mod cli;
pub mod declared;
pub mod metrics;
pub mod secret;
pub mod settings;
pub mod telemetry;

pub use secret::{Secret, error_chain};
pub use settings::{Settings, SettingsError};

/// The settings every service reads through this crate: `PORT` ([`Settings::port`]),
/// `VCAP_SERVICES` ([`Settings`], set by Cloud Foundry), `RUST_LOG` and `LOG_FORMAT`
/// ([`telemetry::init`]). Each service's own list adds to these (see [`declared`]).
pub const SETTINGS: &[&str] = &["LOG_FORMAT", "PORT", "RUST_LOG", "VCAP_SERVICES"];

/// Resolves when the process is asked to stop (Ctrl-C or SIGTERM, which Cloud Foundry and
/// systemd send).
pub async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {},
        () = term => {},
    }
}
