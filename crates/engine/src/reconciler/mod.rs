//! One reconcile pass: read -> pure plan -> apply (STYLE.md, the reconciler models).
//!
//! - **Read**, all at once: the bindings (desired: which apps, with whose parameters)
//!   followed by the Cloud Controller's view of exactly those apps (batched), and the
//!   bucket listing of each state (and, in a full pass, of `credentials/`: the scrape
//!   credentials documents, which follow from the bindings alone). A failed read becomes
//!   a `None` the planner knows how to treat: nothing is deleted or moved on its account,
//!   and the pass reports failure.
//! - **Plan**: [`gds_reconcile::plan`], pure.
//! - **Apply**: each app's actions in order, under that app's database lock, with
//!   bounded concurrency across apps; one failing app is logged and counted and the rest
//!   proceeds.
//!
//! Only one pass runs at a time across every updater (and broker) sharing the database:
//! a pass holds the `reconcile` lease ([`crate::lease`]), and confirms it before every
//! write; a pass that cannot confirm it abandons the rest of its plan.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Instant, SystemTime, UNIX_EPOCH};

use gds_cf::{CfClient, Purpose};
use gds_db::Db;
use gds_reconcile::{Scope, plan};
use gds_store::{ListHint, RecordPublisher, TargetState, TargetStore};
use gds_targets::{AppGuid, ModelConfig};

use crate::lease::{Lease, LeaseTiming, Tenure};
use crate::metrics::ReconcileMetrics;
use crate::settings::ReconcileSettings;

mod apply;
mod latency;
mod read;
mod report;

pub use crate::lease::RECONCILE_LEASE;
pub use apply::{ApplyOutcome, Batch, apply};
pub use latency::ChangeTimes;
pub use read::credentials_document;
pub use report::{PassError, PassReport, PassTimings};

/// The reconcile engine: the database, the bucket, the Cloud Controller.
pub struct Reconciler {
    db: Db,
    store: Arc<dyn TargetStore>,
    cf: Arc<CfClient>,
    model: ModelConfig,
    settings: ReconcileSettings,
    metrics: ReconcileMetrics,
    /// This process' identity; each lease it takes is held as `<holder>/<n>`, so that
    /// two passes of one process (the broker's concurrent `/update-targets`) exclude
    /// each other too.
    holder: String,
    leases_taken: AtomicU64,
    /// What the previous complete listing of each state remembered, so that the next one
    /// lists its ranges concurrently ([`TargetStore::list_apps_hinted`]). Empty in a new
    /// process: the first pass (and so `--once` and `--dry-run`) lists page by page.
    list_hints: std::sync::Mutex<BTreeMap<TargetState, ListHint>>,
    /// Publishes the writers' record after passes that change `active/`.
    record: RecordPublisher,
    /// The last full pass' listing of both states, reused while the writers' record is
    /// unchanged (see `read::ListingCache`).
    listing_cache: std::sync::Mutex<Option<read::ListingCache>>,
}

impl std::fmt::Debug for Reconciler {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reconciler")
            .field("holder", &self.holder)
            .field("settings", &self.settings)
            .finish_non_exhaustive()
    }
}

impl Reconciler {
    pub fn new(
        db: Db,
        store: Arc<dyn TargetStore>,
        cf: Arc<CfClient>,
        model: ModelConfig,
        settings: ReconcileSettings,
        metrics: ReconcileMetrics,
    ) -> Self {
        Self {
            db,
            record: RecordPublisher::new(Arc::clone(&store), "updater"),
            store,
            cf,
            model,
            settings,
            metrics,
            holder: uuid::Uuid::new_v4().to_string(),
            leases_taken: AtomicU64::new(0),
            list_hints: std::sync::Mutex::default(),
            listing_cache: std::sync::Mutex::default(),
        }
    }

    pub fn db(&self) -> &Db {
        &self.db
    }

    pub fn cf(&self) -> &CfClient {
        &self.cf
    }

    pub fn metrics(&self) -> &ReconcileMetrics {
        &self.metrics
    }

    /// Reads and plans without changing anything (`--dry-run`). Takes no lease.
    pub async fn dry_run(&self, scope: &Scope) -> Result<PassReport, PassError> {
        let started = Instant::now();
        let read = self.read(scope, started).await?;
        let planning = Instant::now();
        let plan = plan(
            &read.desired,
            &read.actual,
            &self.model,
            scope,
            self.settings.limits,
        );
        let timings = PassTimings {
            planning: planning.elapsed(),
            ..read.timings
        };
        timings.log(scope_label(scope));
        Ok(PassReport {
            scope: scope_label(scope),
            plan,
            read_failures: read.failures,
            applied: BTreeMap::new(),
            superseded: Vec::new(),
            failed: Vec::new(),
            lease_lost: None,
            abandoned: Vec::new(),
            duration: started.elapsed(),
            timings,
        })
    }

    /// One pass over `scope` under the reconcile lease; [`PassError::Busy`] at once when
    /// another process holds it. Its applied actions count in
    /// `gds_updater_change_latency_seconds{source="full_pass"}`, from the pass' start.
    ///
    /// Its Cloud Controller requests count as [`Purpose::FullPass`] (a scope of apps:
    /// [`Purpose::FastPath`]); callers that pace passes wait for
    /// [`gds_cf::Budget::ready_at`] first.
    pub async fn run_pass(&self, scope: Scope) -> Result<PassReport, PassError> {
        let purpose = match scope {
            Scope::All => Purpose::FullPass,
            Scope::Apps(_) => Purpose::FastPath,
        };
        purpose
            .scope(async {
                let lease = self.lease().await?;
                let result = self.pass_locked(&scope, None, lease.tenure()).await;
                lease.release().await;
                result
            })
            .await
    }

    /// Takes the reconcile lease, renewed in the background until released.
    pub(crate) async fn lease(&self) -> Result<Lease, PassError> {
        let n = self.leases_taken.fetch_add(1, Ordering::Relaxed);
        let holder = format!("{}/{n}", self.holder);
        let timing = LeaseTiming::for_ttl(self.settings.lease_ttl);
        match Lease::acquire(&self.db, holder, timing).await {
            Ok(Some(lease)) => Ok(lease),
            Ok(None) => {
                self.metrics
                    .passes
                    .with_label_values(&["any", "busy"])
                    .inc();
                Err(PassError::Busy)
            }
            Err(e) => {
                self.metrics
                    .pass_failures
                    .with_label_values(&["database"])
                    .inc();
                Err(e.into())
            }
        }
    }

    /// A pass, with the lease already held. `audit_events`: for a fast-path pass, when
    /// the newest audit event naming each app was created (what the change latency of
    /// its actions is measured from); `None` measures from the start of the pass.
    #[tracing::instrument(skip_all, fields(scope = scope_label(scope)))]
    pub(crate) async fn pass_locked(
        &self,
        scope: &Scope,
        audit_events: Option<BTreeMap<AppGuid, SystemTime>>,
        tenure: &Tenure,
    ) -> Result<PassReport, PassError> {
        let started = Instant::now();
        let changes = match audit_events {
            Some(times) => ChangeTimes::AuditEvents(times),
            None => ChangeTimes::PassStart(SystemTime::now()),
        };
        let label = scope_label(scope);
        let read = match self.read(scope, started).await {
            Ok(read) => read,
            Err(e) => {
                self.metrics
                    .pass_failures
                    .with_label_values(&[e.kind()])
                    .inc();
                self.metrics
                    .passes
                    .with_label_values(&[label, "failed"])
                    .inc();
                return Err(e);
            }
        };
        let planning = Instant::now();
        let plan = plan(
            &read.desired,
            &read.actual,
            &self.model,
            scope,
            self.settings.limits,
        );
        let mut timings = PassTimings {
            planning: planning.elapsed(),
            ..read.timings
        };
        if !plan.held_back.is_empty() {
            tracing::warn!(
                held_back = plan.held_back.len(),
                targets = read.actual.active.as_ref().map_or(0, BTreeMap::len)
                    + read.actual.inactive.as_ref().map_or(0, BTreeMap::len),
                "too many deletions or deactivations at once: held back (set \
                 ALLOW_MASS_DELETION=true to let them through)"
            );
        }
        self.metrics.held_back.set(plan.held_back.len() as i64);
        for action in &plan.held_back {
            tracing::warn!(app_guid = %action.app(), action = %action, "held back");
        }
        if !plan.actions.is_empty() || !plan.orphaned.is_empty() {
            tracing::info!(plan = %plan, "applying");
        }
        let applying = Instant::now();
        if !plan.actions.is_empty() {
            // This pass changes the bucket: the next full pass lists it again.
            self.forget_listing();
        }
        let outcome = self.apply(&plan, &read.newest, &changes, tenure).await;
        // Abandoned writes, or a lease that lapsed after the last write: either way this
        // pass no longer knows it was alone, so it is not a success.
        let lease_lost = outcome.lease_lost.or_else(|| tenure.confirm().err());
        if let Some(lost) = lease_lost {
            self.metrics
                .pass_failures
                .with_label_values(&["lease_lost"])
                .inc();
            tracing::error!(
                reason = lost.reason(),
                abandoned_apps = outcome.abandoned.len(),
                "{lost}: the pass stopped writing and abandoned the rest of its plan"
            );
        }
        if !plan.orphaned.is_empty() || scope == &Scope::All {
            match self.db.orphaned_binding_count().await {
                Ok(n) => self.metrics.orphaned_bindings.set(n as i64),
                Err(e) => tracing::warn!(error = %e, "cannot count orphaned bindings"),
            }
        }
        // A pass that lost its lease writes nothing more, not even the record (which
        // would be safe: a publication lists what is there); the new holder publishes.
        if lease_lost.is_none() {
            self.publish_record(scope, &plan, read.actual.active.as_ref())
                .await;
        }
        timings.applying = applying.elapsed();
        timings.log(label);
        self.metrics.observe_cf_requests(&self.cf.request_stats());
        let report = PassReport {
            scope: label,
            plan,
            read_failures: read.failures,
            applied: outcome.applied,
            superseded: outcome.superseded,
            failed: outcome.failed,
            lease_lost,
            abandoned: outcome.abandoned,
            duration: started.elapsed(),
            timings,
        };
        self.metrics
            .pass_duration
            .with_label_values(&[label])
            .observe(report.duration.as_secs_f64());
        if !report.failed.is_empty() {
            self.metrics
                .pass_failures
                .with_label_values(&["apply"])
                .inc();
        }
        if report.succeeded() {
            self.metrics.passes.with_label_values(&[label, "ok"]).inc();
            self.metrics.last_success.set(unix_seconds());
            tracing::info!("{}", report.summary());
        } else {
            self.metrics
                .passes
                .with_label_values(&[label, "failed"])
                .inc();
            tracing::warn!("{}", report.summary());
        }
        Ok(report)
    }
}

fn scope_label(scope: &Scope) -> &'static str {
    match scope {
        Scope::All => "full",
        Scope::Apps(_) => "apps",
    }
}

fn unix_seconds() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0.0, |d| d.as_secs_f64())
}

#[cfg(test)]
mod tests;
