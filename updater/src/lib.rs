//! The gds-prometheus updater: keeps every bound app's target file true as the app is
//! stopped, started, scaled, renamed, re-routed, redeployed or deleted, none of which the
//! platform tells the broker about (DESIGN.md section 2).
//!
//! The reconcile pass itself, its lease and the audit-event fast path are the engine's
//! (`gds-engine`), which the broker's `POST /update-targets` runs too. Here:
//!
//! - [`daemon`]: the long-running process: the schedule, the fast path, `/health` and
//!   `/metrics`.
//! - [`import`]: `--import-bindings`, the one-off cut-over from another broker: the
//!   Cloud Controller's instances and bindings of our plan into the database.
//! - [`config`]: settings from the environment and `VCAP_SERVICES`.
//! - [`cli`], [`run`]: the command line, and what each of its modes does.

pub mod cli;
pub mod config;
pub mod daemon;
pub mod import;
pub mod run;

pub use config::{Schedule, UpdaterConfig};
