//! The write half of a pass: the plan's actions, app by app under each app's lock and
//! the lease, then the writers' record.

use std::collections::{BTreeMap, BTreeSet};
use std::time::SystemTime;

use futures::stream::{self, StreamExt};
use gds_db::Db;
use gds_reconcile::{Action, Plan, Scope};
use gds_service::error_chain;
use gds_store::{Bytes, ETag, StoreError, TargetState, TargetStore};
use gds_targets::AppGuid;

use super::read::credentials_document;
use super::{ChangeTimes, Reconciler};
use crate::lease::{LeaseLost, Tenure};
use crate::metrics::ReconcileMetrics;

impl Reconciler {
    /// Publishes the writers' record (DESIGN.md section 5) after a pass that planned a
    /// change to `active/` or `credentials/` (sd-sync re-reads both when the record
    /// changes), and after a full pass whose listing of `active/` the record
    /// does not match (no record yet, a writer that could not publish, a file changed by
    /// hand): sd-sync applies a mass deletion only when the record agrees. A failure is
    /// logged and counted, not a failed pass: the files are right, and until the next
    /// publication sd-sync only holds mass deletions back.
    pub(super) async fn publish_record(
        &self,
        scope: &Scope,
        plan: &Plan,
        active_listing: Option<&BTreeMap<AppGuid, ETag>>,
    ) {
        let changed = plan.actions.iter().any(is_published);
        if !changed {
            let Some(listing) = active_listing.filter(|_| scope == &Scope::All) else {
                return;
            };
            match self.record.counts(listing.len()).await {
                Ok(true) => return,
                Ok(false) => {}
                Err(e) => {
                    tracing::warn!(error = %error_chain(&e), "cannot read the writers' record");
                    self.count_record_publication(false);
                    return;
                }
            }
        }
        let published = self.record.publish_after_change().await;
        self.count_record_publication(published.is_ok());
    }

    fn count_record_publication(&self, ok: bool) {
        self.metrics
            .record_publications
            .with_label_values(&[if ok { "ok" } else { "error" }])
            .inc();
    }

    pub(super) async fn apply(
        &self,
        plan: &Plan,
        newest: &BTreeMap<AppGuid, String>,
        changes: &ChangeTimes,
        tenure: &Tenure,
    ) -> ApplyOutcome {
        apply(
            &self.db,
            self.store.as_ref(),
            Batch {
                plan,
                newest,
                changes,
            },
            self.settings.concurrency,
            &self.metrics,
            tenure,
        )
        .await
    }
}

/// Whether `action` adds, changes or removes a file in `active/` or `credentials/`: what
/// writers publish the record after.
fn is_published(action: &Action) -> bool {
    match action {
        Action::Write { state, .. } | Action::Remove { state, .. } => *state == TargetState::Active,
        Action::Move { from, to, .. } => *from == TargetState::Active || *to == TargetState::Active,
        Action::WriteCredentials { .. } | Action::RemoveCredentials { .. } => true,
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

/// What a pass hands to [`apply`]: the plan, what it was computed from, and when the
/// changes it follows happened.
#[derive(Debug, Clone, Copy)]
pub struct Batch<'a> {
    pub plan: &'a Plan,
    /// Each app's newest binding id as the pass read it.
    pub newest: &'a BTreeMap<AppGuid, String>,
    /// What `gds_updater_change_latency_seconds` measures each applied action from.
    pub changes: &'a ChangeTimes,
}

/// An action applied, and when.
type Done = (&'static str, SystemTime);

enum AppResult {
    Applied(Vec<Done>),
    Superseded,
    Failed(String, Vec<Done>, Vec<&'static str>),
    /// The lease could not be confirmed: the actions done, the ones left.
    Abandoned(LeaseLost, Vec<Done>, Vec<&'static str>),
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
///   removal): the file is the bind's; skipped as well;
/// - for an app with a credentials document action, bindings whose document is not the
///   one planned (e.g. an unbind of an older binding, which leaves the newest alone):
///   the broker rewrote or removed the document itself; skipped as well.
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
///
/// Each applied action (only those: not superseded, failed or abandoned ones) is
/// observed once in `gds_updater_change_latency_seconds`, from `batch.changes` to the
/// moment its last store request returned.
pub async fn apply(
    db: &Db,
    store: &dyn TargetStore,
    batch: Batch<'_>,
    concurrency: usize,
    metrics: &ReconcileMetrics,
    tenure: &Tenure,
) -> ApplyOutcome {
    let Batch {
        plan,
        newest,
        changes,
    } = batch;
    let latency = metrics
        .change_latency
        .with_label_values(&[changes.source()]);
    let applied = |outcome: &mut ApplyOutcome, app: &AppGuid, (kind, at): Done| {
        *outcome.applied.entry(kind).or_default() += 1;
        metrics.actions.with_label_values(&[kind, "applied"]).inc();
        if let Some(took) = changes.latency(app, at) {
            latency.observe(took.as_secs_f64());
        }
    };
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
            AppResult::Applied(done) => {
                for done in done {
                    applied(&mut outcome, &app, done);
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
                for done in done {
                    applied(&mut outcome, &app, done);
                }
                for kind in failed {
                    metrics.actions.with_label_values(&[kind, "failed"]).inc();
                }
                outcome.failed.push((app, why));
            }
            AppResult::Abandoned(lost, done, left) => {
                for done in done {
                    applied(&mut outcome, &app, done);
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
    let bindings = match tx.bindings().await {
        Ok(bindings) => bindings,
        Err(e) => return AppResult::Failed(error_chain(&e), Vec::new(), kinds()),
    };
    let current = bindings.first().map(|b| &b.binding_id);
    if current != expected {
        tracing::info!(
            planned_binding = expected.map(String::as_str),
            current_binding = current.map(String::as_str),
            "the app's bindings changed during the pass: leaving its files to the broker"
        );
        return AppResult::Superseded;
    }
    if !credentials_still_planned(app, actions, &bindings) {
        tracing::info!(
            "the app's bindings changed during the pass: leaving its credentials document to the broker"
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
        done.push((action.kind(), SystemTime::now()));
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

/// Whether the app's `bindings`, read under its lock, still call for the credentials
/// document actions among `actions` (true when there are none).
fn credentials_still_planned(
    app: &AppGuid,
    actions: &[&Action],
    bindings: &[gds_db::Binding],
) -> bool {
    let mut planned = actions
        .iter()
        .filter(|a| {
            matches!(
                a,
                Action::WriteCredentials { .. } | Action::RemoveCredentials { .. }
            )
        })
        .peekable();
    if planned.peek().is_none() {
        return true;
    }
    let wanted = credentials_document(app, bindings).map(|doc| doc.to_bytes());
    planned.all(|action| match action {
        Action::WriteCredentials { body, .. } => wanted.as_ref() == Some(body),
        _ => wanted.is_none(),
    })
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
        Action::WriteCredentials { app, body, .. } => {
            store
                .write_credentials(app, Bytes::from(body.clone()))
                .await?;
            Ok(())
        }
        Action::RemoveCredentials { app, .. } => Ok(store.remove_credentials(app).await?),
    }
}
