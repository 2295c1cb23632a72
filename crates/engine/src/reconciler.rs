//! One reconcile pass: read -> pure plan -> apply (STYLE.md, the reconciler models).
//!
//! - **Read**, all at once: the bindings (desired: which apps, with whose parameters)
//!   followed by the Cloud Controller's view of exactly those apps (batched), and the
//!   bucket listing of each state. A failed read becomes a `None` the planner knows how to treat: nothing is deleted
//!   or moved on its account, and the pass reports failure.
//! - **Plan**: [`gds_reconcile::plan`], pure.
//! - **Apply**: each app's actions in order, under that app's database lock, with
//!   bounded concurrency across apps; one failing app is logged and counted and the rest
//!   proceeds.
//!
//! Only one pass runs at a time across every updater (and broker) sharing the database:
//! a pass holds the `reconcile` lease ([`crate::lease`]), and confirms it before every
//! write; a pass that cannot confirm it abandons the rest of its plan.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, PoisonError};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::stream::{self, StreamExt};
use gds_cf::CfClient;
use gds_db::{Db, DbError};
use gds_reconcile::{Action, Actual, Desired, Plan, Scope, plan};
use gds_service::error_chain;
use gds_store::{
    Bytes, ETag, ListHint, RecordPublisher, StoreError, TargetState, TargetStore, WritersRecord,
};
use gds_targets::{AppGuid, BindingParams, ModelConfig};

use crate::lease::{Lease, LeaseLost, LeaseTiming, Tenure};
use crate::metrics::ReconcileMetrics;
use crate::settings::ReconcileSettings;

pub use crate::lease::RECONCILE_LEASE;

/// Up to this many apps, a fast-path pass reads their files instead of listing the bucket.
const SCOPED_READ_LIMIT: usize = 50;

/// Why a pass did not run, or stopped before planning.
#[derive(Debug, thiserror::Error)]
pub enum PassError {
    /// Another updater (or a broker's `/update-targets`) is reconciling right now.
    #[error("another updater is reconciling (the reconcile lease is held)")]
    Busy,
    /// The bindings (or the lease) could not be read: nothing can be planned safely.
    #[error("the database failed: {0}")]
    Database(#[from] DbError),
    /// The fast path could not read the audit events.
    #[error("reading audit events failed: {0}")]
    AuditEvents(#[source] gds_cf::CfError),
}

impl PassError {
    /// The `kind` label of `gds_updater_pass_failures_total`.
    pub fn kind(&self) -> &'static str {
        match self {
            PassError::Busy => "busy",
            PassError::Database(_) => "database",
            PassError::AuditEvents(_) => "audit_events",
        }
    }
}

/// What a pass did.
#[derive(Debug)]
pub struct PassReport {
    /// `full` or `apps`.
    pub scope: &'static str,
    /// The plan that was applied (or, in a dry run, only printed).
    pub plan: Plan,
    /// Reads that failed (what the planner was told it could not see).
    pub read_failures: Vec<String>,
    /// Actions applied, by kind.
    pub applied: BTreeMap<&'static str, u64>,
    /// Apps whose actions were dropped because the broker changed their bindings while
    /// the pass ran (it wrote or removed their files itself).
    pub superseded: Vec<AppGuid>,
    /// Apps whose actions failed, with the reason.
    pub failed: Vec<(AppGuid, String)>,
    /// Set when the pass could not confirm its lease before a write (or at its end):
    /// it stopped writing there, and does not count as a success.
    pub lease_lost: Option<LeaseLost>,
    /// Apps whose actions (all or the rest) were not applied because the lease was lost.
    pub abandoned: Vec<AppGuid>,
    pub duration: Duration,
    /// Where the time went.
    pub timings: PassTimings,
}

/// Where a pass' time went, each measured from the start of the pass (the reads overlap,
/// so their times are not to be added up). Logged at debug level (`pass phases`), for
/// operators and the benchmark.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct PassTimings {
    /// The bindings were read from the database.
    pub bindings_read: Duration,
    /// The Cloud Controller had answered (it is asked once the bindings are known).
    pub cloud_controller_read: Duration,
    /// The listing of `active/` was complete.
    pub active_listed: Duration,
    /// The listing of `inactive/` was complete.
    pub inactive_listed: Duration,
    /// Every read was done (the latest of the four above).
    pub reads_done: Duration,
    /// Time spent planning.
    pub planning: Duration,
    /// Time spent applying the plan (and updating the orphan count).
    pub applying: Duration,
}

impl PassTimings {
    fn log(&self, scope: &'static str) {
        let ms = |d: Duration| d.as_secs_f64() * 1000.0;
        tracing::debug!(
            scope,
            bindings_read_ms = ms(self.bindings_read),
            cloud_controller_read_ms = ms(self.cloud_controller_read),
            active_listed_ms = ms(self.active_listed),
            inactive_listed_ms = ms(self.inactive_listed),
            reads_done_ms = ms(self.reads_done),
            planning_ms = ms(self.planning),
            applying_ms = ms(self.applying),
            "pass phases"
        );
    }
}

impl PassReport {
    /// Complete reads and every action applied (or superseded), under the lease
    /// throughout.
    pub fn succeeded(&self) -> bool {
        self.plan.complete && self.failed.is_empty() && self.lease_lost.is_none()
    }

    /// One line for the log, the `--once` output and `/update-targets`.
    pub fn summary(&self) -> String {
        let applied: u64 = self.applied.values().sum();
        let kinds: Vec<String> = self
            .applied
            .iter()
            .map(|(k, n)| format!("{k} {n}"))
            .collect();
        let mut line = format!(
            "{} pass {} in {} ms: {applied} action(s) applied{}",
            self.scope,
            if self.succeeded() {
                "succeeded"
            } else {
                "failed"
            },
            self.duration.as_millis(),
            if kinds.is_empty() {
                String::new()
            } else {
                format!(" ({})", kinds.join(", "))
            },
        );
        for (what, n) in [
            ("superseded by the broker", self.superseded.len()),
            ("failed", self.failed.len()),
            ("held back", self.plan.held_back.len()),
            ("skipped", self.plan.skipped.len()),
            ("orphaned", self.plan.orphaned.len()),
        ] {
            if n > 0 {
                line.push_str(&format!(", {n} {what}"));
            }
        }
        if let Some(lost) = self.lease_lost {
            line.push_str(&format!(
                "; {lost}: stopped writing, {} app(s) abandoned",
                self.abandoned.len()
            ));
        }
        if let Some((app, why)) = self.failed.first() {
            line.push_str(&format!("; first failure: {app}: {why}"));
        }
        if !self.read_failures.is_empty() {
            line.push_str(&format!(
                "; incomplete reads, nothing deleted: {}",
                self.read_failures.join("; ")
            ));
        }
        line
    }
}

/// What a pass read.
struct Read {
    desired: Desired,
    actual: Actual,
    /// Each bound app's newest binding at the time of the read (the one whose
    /// parameters the plan used): apply re-checks it under the app's lock.
    newest: BTreeMap<AppGuid, String>,
    failures: Vec<String>,
    /// The read phases of [`PassTimings`].
    timings: PassTimings,
}

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
    /// another process holds it.
    pub async fn run_pass(&self, scope: Scope) -> Result<PassReport, PassError> {
        let lease = self.lease().await?;
        let result = self.pass_locked(&scope, lease.tenure()).await;
        lease.release().await;
        result
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

    /// A pass, with the lease already held.
    #[tracing::instrument(skip_all, fields(scope = scope_label(scope)))]
    pub(crate) async fn pass_locked(
        &self,
        scope: &Scope,
        tenure: &Tenure,
    ) -> Result<PassReport, PassError> {
        let started = Instant::now();
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
        let outcome = self.apply(&plan, &read.newest, tenure).await;
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

    /// Desired and actual state. The Cloud Controller is asked, once the bindings are
    /// read, about exactly the bound apps in scope (never a crawl of the foundation); the
    /// newest binding of each is what apply re-checks. The store is listed meanwhile.
    async fn read(&self, scope: &Scope, started: Instant) -> Result<Read, PassError> {
        // The bindings, then the Cloud Controller about exactly those apps; meanwhile the
        // two listings, which need neither. The order of the reads does not matter for
        // safety: whatever a bind or unbind changes between them, apply re-checks each
        // app's newest binding under the app's lock before touching its files ([`apply`]).
        let desired = async {
            let bindings = self.db.all_bindings().await?;
            let bindings_read = started.elapsed();
            let (bound, newest) = newest_bindings(bindings);
            let wanted: BTreeSet<AppGuid> = match scope {
                Scope::All => bound.keys().cloned().collect(),
                Scope::Apps(apps) => apps
                    .iter()
                    .filter(|a| bound.contains_key(*a))
                    .cloned()
                    .collect(),
            };
            let (cc, cc_read) = timed(started, self.cf.apps_info(&wanted)).await;
            Ok::<_, PassError>((bound, newest, cc, bindings_read, cc_read))
        };
        // A database failure ends the pass at once (the listings are dropped).
        let listed = |state| async move {
            Ok::<_, PassError>(timed(started, self.listing(state, scope)).await)
        };
        let (
            (bound, newest, cc, bindings_read, cc_read),
            (active, active_t),
            (inactive, inactive_t),
        ) = tokio::try_join!(
            desired,
            listed(TargetState::Active),
            listed(TargetState::Inactive)
        )?;
        let timings = PassTimings {
            bindings_read,
            cloud_controller_read: cc_read,
            active_listed: active_t,
            inactive_listed: inactive_t,
            reads_done: started.elapsed(),
            ..PassTimings::default()
        };
        let mut failures = Vec::new();
        let cc = cc
            .map_err(|e| {
                self.metrics
                    .pass_failures
                    .with_label_values(&["cloud_controller"])
                    .inc();
                tracing::warn!(error = %e, "Cloud Controller read failed: nothing is deleted or moved this pass");
                failures.push(format!("Cloud Controller: {e}"));
            })
            .ok();
        let mut listed =
            |state: TargetState, result: Result<BTreeMap<AppGuid, ETag>, StoreError>| {
                result
                .map_err(|e| {
                    self.metrics
                        .pass_failures
                        .with_label_values(&["store_listing"])
                        .inc();
                    tracing::warn!(%state, error = %e, "store listing failed: nothing is deleted or moved this pass");
                    failures.push(format!("listing {state}/: {e}"));
                })
                .ok()
            };
        let active = listed(TargetState::Active, active);
        let inactive = listed(TargetState::Inactive, inactive);
        Ok(Read {
            desired: Desired { bound, cc },
            actual: Actual { active, inactive },
            newest,
            failures,
            timings,
        })
    }

    /// One state's listing, with ETags, as far as `scope` needs it.
    ///
    /// A full pass lists the whole state (ceil(N/1000) requests; from the second pass of
    /// the process on, all pages at once, using the previous listing's keys as range
    /// boundaries: see `list_hints`). A fast-path pass over a few apps reads just their
    /// files instead (one request per app and state): listing 10,000 targets to rewrite
    /// one would cost seconds. The planner only looks at apps in scope, so the two are
    /// equivalent for it.
    async fn listing(
        &self,
        state: TargetState,
        scope: &Scope,
    ) -> Result<BTreeMap<AppGuid, ETag>, StoreError> {
        if let Scope::Apps(apps) = scope
            && apps.len() <= SCOPED_READ_LIMIT
        {
            let store = self.store.as_ref();
            let found = futures::future::try_join_all(apps.iter().map(|app| async move {
                Ok::<_, StoreError>(
                    store
                        .read_app(state, app)
                        .await?
                        .map(|(_, etag)| (app.clone(), etag)),
                )
            }))
            .await?;
            return Ok(found.into_iter().flatten().collect());
        }
        // Passes never overlap (the lease), so the hint is the previous pass' listing's.
        // A failed listing keeps the old hint: a stale hint costs requests, never
        // correctness.
        let hints = || {
            self.list_hints
                .lock()
                .unwrap_or_else(PoisonError::into_inner)
        };
        let hint = hints().get(&state).cloned();
        let (entries, next) = self.store.list_apps_hinted(state, hint.as_ref()).await?;
        tracing::debug!(
            %state,
            ranges = hint.as_ref().map_or(1, ListHint::ranges),
            targets = entries.len(),
            "listed"
        );
        match next {
            Some(next) => hints().insert(state, next),
            None => hints().remove(&state),
        };
        if scope == &Scope::All {
            self.metrics
                .targets
                .with_label_values(&[state.dir_name()])
                .set(entries.len() as i64);
        }
        Ok(entries.into_iter().map(|t| (t.app_guid, t.etag)).collect())
    }

    /// Publishes the writers' record (DESIGN.md section 5) after a pass that planned a
    /// change to `active/`, and after a full pass whose listing of `active/` the record
    /// does not match (no record yet, a writer that could not publish, a file changed by
    /// hand): sd-sync applies a mass deletion only when the record agrees. A failure is
    /// logged and counted, not a failed pass: the files are right, and until the next
    /// publication sd-sync only holds mass deletions back.
    async fn publish_record(
        &self,
        scope: &Scope,
        plan: &Plan,
        active_listing: Option<&BTreeMap<AppGuid, ETag>>,
    ) {
        let changed_active = plan.actions.iter().any(touches_active);
        if !changed_active {
            let Some(listing) = active_listing.filter(|_| scope == &Scope::All) else {
                return;
            };
            match self.store.read_record().await {
                Ok(Some((body, _))) => match WritersRecord::parse(&body) {
                    Ok(record) if record.active_count == listing.len() as u64 => return,
                    _ => {}
                },
                Ok(None) => {}
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot read the writers' record");
                    self.metrics
                        .record_publications
                        .with_label_values(&["error"])
                        .inc();
                    return;
                }
            }
        }
        match self.record.publish_after_change().await {
            Ok(published) => {
                if let Some(record) = published {
                    tracing::info!(
                        generation = record.generation,
                        active_count = record.active_count,
                        "published the writers' record"
                    );
                }
                self.metrics
                    .record_publications
                    .with_label_values(&["ok"])
                    .inc();
            }
            Err(e) => {
                tracing::warn!(
                    error = %error_chain(&e),
                    "cannot publish the writers' record: sd-sync holds mass deletions back \
                     until a later publication"
                );
                self.metrics
                    .record_publications
                    .with_label_values(&["error"])
                    .inc();
            }
        }
    }

    async fn apply(
        &self,
        plan: &Plan,
        newest: &BTreeMap<AppGuid, String>,
        tenure: &Tenure,
    ) -> ApplyOutcome {
        apply(
            &self.db,
            self.store.as_ref(),
            plan,
            newest,
            self.settings.concurrency,
            &self.metrics,
            tenure,
        )
        .await
    }
}

/// Whether `action` adds, changes or removes a file in `active/`.
fn touches_active(action: &Action) -> bool {
    match action {
        Action::Write { state, .. } | Action::Remove { state, .. } => *state == TargetState::Active,
        Action::Move { from, to, .. } => *from == TargetState::Active || *to == TargetState::Active,
    }
}

/// What apply did.
#[derive(Debug, Default)]
pub struct ApplyOutcome {
    pub applied: BTreeMap<&'static str, u64>,
    pub superseded: Vec<AppGuid>,
    pub failed: Vec<(AppGuid, String)>,
    /// Why writing stopped, if the lease could not be confirmed.
    pub lease_lost: Option<LeaseLost>,
    /// Apps with actions left unapplied because the lease could not be confirmed.
    pub abandoned: Vec<AppGuid>,
}

enum AppResult {
    Applied(Vec<&'static str>),
    Superseded,
    Failed(String, Vec<&'static str>, Vec<&'static str>),
    /// The lease could not be confirmed: the actions done, the ones left.
    Abandoned(LeaseLost, Vec<&'static str>, Vec<&'static str>),
}

/// Applies `plan`: each app's actions in plan order, apps `concurrency` at a time.
///
/// **No lost updates against the broker.** Each app's actions run inside
/// [`Db::lock_app`], the same per-app transaction the broker holds while it changes the
/// app's bindings and writes or deletes its files. Under that lock the app's newest
/// binding is read again and compared with `newest` (what the plan was computed from):
///
/// - no binding any more where the plan saw one: an unbind won while the pass ran and
///   removed the files; writing would resurrect them, so the app is skipped;
/// - a different newest binding (a bind, or an unbind of the newest of several): the
///   broker wrote the app's file itself from a fresher Cloud Controller read, with the
///   parameters that now apply; overwriting it with the plan's would lose that, so the
///   app is skipped;
/// - a binding where the plan saw none (a bind after a stray file was planned for
///   removal): the file is the bind's; skipped as well.
///
/// A skipped app is counted as `superseded`, not failed: the next pass starts from the
/// new bindings. Why the lock and not a conditional store write (`If-Match`): the
/// directory backend and older S3-compatible stores have no conditional writes, a
/// condition on the file cannot see an unbind that already removed it and a re-bind
/// that wrote it again, and the bindings are the source of truth, so that is what is
/// checked, atomically with the write.
///
/// **No writes without the lease.** `tenure` is confirmed before each app is locked,
/// once its lock is held, and before every store write; the first failure stops the
/// app, and every app after it is left alone (`abandoned`).
pub async fn apply(
    db: &Db,
    store: &dyn TargetStore,
    plan: &Plan,
    newest: &BTreeMap<AppGuid, String>,
    concurrency: usize,
    metrics: &ReconcileMetrics,
    tenure: &Tenure,
) -> ApplyOutcome {
    // Group by app, keeping plan order within each app (e.g. write active/, then remove
    // the stale copy in inactive/); orphaned apps need their bindings marked even when
    // their files are already gone.
    let mut groups: BTreeMap<&AppGuid, Vec<&Action>> = BTreeMap::new();
    for action in &plan.actions {
        groups.entry(action.app()).or_default().push(action);
    }
    for app in &plan.orphaned {
        groups.entry(app).or_default();
    }
    let orphaned: BTreeSet<&AppGuid> = plan.orphaned.iter().collect();
    let results: Vec<(AppGuid, AppResult)> = stream::iter(groups)
        .map(|(app, actions)| {
            let expected = newest.get(app);
            let orphan = orphaned.contains(app);
            async move {
                let result = apply_app(db, store, app, &actions, expected, orphan, tenure).await;
                (app.clone(), result)
            }
        })
        .buffer_unordered(concurrency.max(1))
        .collect()
        .await;

    let mut outcome = ApplyOutcome::default();
    for (app, result) in results {
        match result {
            AppResult::Applied(kinds) => {
                for kind in kinds {
                    *outcome.applied.entry(kind).or_default() += 1;
                    metrics.actions.with_label_values(&[kind, "applied"]).inc();
                }
            }
            AppResult::Superseded => {
                for action in plan.actions.iter().filter(|a| a.app() == &app) {
                    metrics
                        .actions
                        .with_label_values(&[action.kind(), "superseded"])
                        .inc();
                }
                outcome.superseded.push(app);
            }
            AppResult::Failed(why, done, failed) => {
                tracing::error!(app_guid = %app, error = %why, "applying the app's actions failed");
                for kind in done {
                    *outcome.applied.entry(kind).or_default() += 1;
                    metrics.actions.with_label_values(&[kind, "applied"]).inc();
                }
                for kind in failed {
                    metrics.actions.with_label_values(&[kind, "failed"]).inc();
                }
                outcome.failed.push((app, why));
            }
            AppResult::Abandoned(lost, done, left) => {
                for kind in done {
                    *outcome.applied.entry(kind).or_default() += 1;
                    metrics.actions.with_label_values(&[kind, "applied"]).inc();
                }
                for kind in left {
                    metrics
                        .actions
                        .with_label_values(&[kind, "abandoned"])
                        .inc();
                }
                outcome.lease_lost.get_or_insert(lost);
                outcome.abandoned.push(app);
            }
        }
    }
    outcome.failed.sort();
    outcome.superseded.sort();
    outcome.abandoned.sort();
    outcome
}

#[tracing::instrument(skip_all, fields(app_guid = %app))]
async fn apply_app(
    db: &Db,
    store: &dyn TargetStore,
    app: &AppGuid,
    actions: &[&Action],
    expected: Option<&String>,
    orphan: bool,
    tenure: &Tenure,
) -> AppResult {
    let kinds = || actions.iter().map(|a| a.kind()).collect::<Vec<_>>();
    if let Err(lost) = tenure.confirm() {
        return AppResult::Abandoned(lost, Vec::new(), kinds());
    }
    let mut tx = match db.lock_app(app).await {
        Ok(tx) => tx,
        Err(e) => return AppResult::Failed(error_chain(&e), Vec::new(), kinds()),
    };
    let current = match tx.bindings().await {
        Ok(bindings) => bindings.into_iter().next().map(|b| b.binding_id),
        Err(e) => return AppResult::Failed(error_chain(&e), Vec::new(), kinds()),
    };
    if current.as_ref() != expected {
        tracing::info!(
            planned_binding = expected.map(String::as_str),
            current_binding = current.as_deref(),
            "the app's bindings changed during the pass: leaving its files to the broker"
        );
        return AppResult::Superseded;
    }
    let mut done = Vec::new();
    for (i, action) in actions.iter().enumerate() {
        let left = || actions[i..].iter().map(|a| a.kind()).collect();
        match apply_action(store, action, tenure).await {
            Ok(()) => {}
            // Dropping `tx` rolls back: nothing of the app's rows changed.
            Err(ActionError::Store(e)) => {
                return AppResult::Failed(
                    format!("{}: {}", action.kind(), error_chain(&e)),
                    done,
                    left(),
                );
            }
            Err(ActionError::LeaseLost(lost)) => return AppResult::Abandoned(lost, done, left()),
        }
        tracing::info!(action = %action, "applied");
        done.push(action.kind());
    }
    if orphan {
        if let Err(lost) = tenure.confirm() {
            return AppResult::Abandoned(lost, done, Vec::new());
        }
        match tx.mark_orphaned().await {
            Ok(0) => {}
            Ok(n) => tracing::warn!(
                bindings = n,
                "the Cloud Controller no longer knows the app: its bindings are marked orphaned"
            ),
            Err(e) => return AppResult::Failed(error_chain(&e), done, Vec::new()),
        }
    }
    match tx.commit().await {
        Ok(()) => AppResult::Applied(done),
        Err(e) => AppResult::Failed(error_chain(&e), done, Vec::new()),
    }
}

enum ActionError {
    Store(StoreError),
    LeaseLost(LeaseLost),
}

impl From<StoreError> for ActionError {
    fn from(e: StoreError) -> Self {
        ActionError::Store(e)
    }
}

/// One action; the lease is confirmed before each store request.
async fn apply_action(
    store: &dyn TargetStore,
    action: &Action,
    tenure: &Tenure,
) -> Result<(), ActionError> {
    let confirm = || tenure.confirm().map(drop).map_err(ActionError::LeaseLost);
    confirm()?;
    match action {
        Action::Write {
            app, state, body, ..
        } => {
            store
                .write_app(*state, app, Bytes::from(body.clone()))
                .await?;
            Ok(())
        }
        // Write the destination with current content first, then remove the source: the
        // app is never without a file (STYLE.md; `TargetStore::move_app` has the same
        // order but would carry stale content).
        Action::Move {
            app,
            from,
            to,
            body,
            ..
        } => {
            store.write_app(*to, app, Bytes::from(body.clone())).await?;
            confirm()?;
            Ok(store.remove_app(*from, app).await?)
        }
        Action::Remove { app, state, .. } => Ok(store.remove_app(*state, app).await?),
    }
}

/// Each bound app's parameters and newest binding, from `bindings` ordered by app and
/// newest first (the first one seen decides, DESIGN.md 3a).
fn newest_bindings(
    bindings: Vec<gds_db::Binding>,
) -> (BTreeMap<AppGuid, BindingParams>, BTreeMap<AppGuid, String>) {
    let mut bound = BTreeMap::new();
    let mut newest = BTreeMap::new();
    for binding in bindings {
        if newest.contains_key(&binding.app_guid) {
            continue;
        }
        let params = match BindingParams::from_json(Some(&binding.parameters_json())) {
            Ok(params) => params,
            Err(e) => {
                // Validated on bind, so only a hand-edited row gets here.
                tracing::warn!(binding_id = %binding.binding_id, error = %e,
                    "stored binding parameters no longer validate: using none");
                BindingParams::default()
            }
        };
        newest.insert(binding.app_guid.clone(), binding.binding_id.clone());
        bound.insert(binding.app_guid, params);
    }
    (bound, newest)
}

/// `read`'s output, and the time since `started` at which it was done.
async fn timed<T>(started: Instant, read: impl Future<Output = T>) -> (T, Duration) {
    let result = read.await;
    (result, started.elapsed())
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
