//! The gds-prometheus updater: keeps every bound app's target file true as the app is
//! stopped, started, scaled, renamed, re-routed, redeployed or deleted, none of which the
//! platform tells the broker about (DESIGN.md section 2).
//!
//! - [`engine`]: one reconcile pass, read -> pure plan (`gds-reconcile`) -> apply, under
//!   the database lease that lets one updater reconcile at a time; also what the
//!   broker's `POST /update-targets` runs.
//! - [`lease`]: the reconcile lease as a pass holds it: renewed in the background and
//!   confirmed before every write.
//! - [`events`]: the fast path, audit events since a cursor kept in the database.
//! - [`service`]: the long-running process: the schedule, the fast path, `/health` and
//!   `/metrics`.
//! - [`import`]: `--import-bindings`, the one-off cut-over from another broker: the
//!   Cloud Controller's instances and bindings of our plan into the database.
//! - [`config`]: settings from the environment and `VCAP_SERVICES`.

pub mod config;
pub mod engine;
pub mod events;
pub mod import;
pub mod lease;
pub mod metrics;
pub mod service;

pub use config::{ReconcileSettings, Schedule, UpdaterConfig};
pub use engine::{PassError, PassReport, Reconciler};
pub use metrics::UpdaterMetrics;
