//! The reconcile engine below the broker and the updater: one pass reads desired and
//! actual state, plans with the pure planner (`gds-reconcile`) and applies the plan,
//! under the database lease that lets one process reconcile at a time (DESIGN.md
//! section 2). The updater runs it on a schedule and from audit events; the broker's
//! `POST /update-targets` runs the same pass.
//!
//! - [`reconciler`]: one pass, read -> plan -> apply ([`Reconciler`]).
//! - [`lease`]: the reconcile lease as a pass holds it: renewed in the background and
//!   confirmed before every write.
//! - [`events`]: the fast path, audit events since a cursor kept in the database.
//! - [`settings`]: what a pass reads from the environment ([`ReconcileSettings`]).
//! - [`connect`]: what both services read and connect to at start: the database, the
//!   store, the Cloud Controller ([`EngineConfig`]); [`catalog`]: the catalog ids.
//! - [`metrics`]: the passes' metrics (`gds_updater_*`, [`ReconcileMetrics`]);
//!   [`cf_metrics`]: Cloud Controller requests by purpose and the rate-limit budget
//!   ([`CfMetrics`], under each service's prefix).

pub mod catalog;
pub mod cf_metrics;
pub mod connect;
pub mod events;
pub mod lease;
pub mod metrics;
pub mod reconciler;
pub mod settings;

pub use catalog::CatalogIds;
pub use cf_metrics::CfMetrics;
pub use connect::{Connections, DEFAULT_DATABASE_URL, DatabaseConfig, EngineConfig};
pub use metrics::{ReconcileMetrics, S3RequestsCollector};
pub use reconciler::{PassError, PassReport, Reconciler};
pub use settings::ReconcileSettings;
