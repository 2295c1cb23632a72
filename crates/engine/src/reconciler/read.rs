//! The read half of a pass: desired state (the bindings, then the Cloud Controller about
//! exactly those apps) and actual state (the store's listings), all at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use gds_reconcile::{Actual, Desired, Scope};
use gds_store::{ETag, ListHint, StoreError, TargetState};
use gds_targets::{AppGuid, BindingParams};

use super::{PassError, PassTimings, Reconciler};

/// Up to this many apps, a fast-path pass reads their files instead of listing the bucket.
const SCOPED_READ_LIMIT: usize = 50;

/// What a pass read.
pub(super) struct Read {
    pub(super) desired: Desired,
    pub(super) actual: Actual,
    /// Each bound app's newest binding at the time of the read (the one whose
    /// parameters the plan used): apply re-checks it under the app's lock.
    pub(super) newest: BTreeMap<AppGuid, String>,
    pub(super) failures: Vec<String>,
    /// The read phases of [`PassTimings`].
    pub(super) timings: PassTimings,
}

impl Reconciler {
    /// Desired and actual state. The Cloud Controller is asked, once the bindings are
    /// read, about exactly the bound apps in scope (never a crawl of the foundation); the
    /// newest binding of each is what apply re-checks. The store is listed meanwhile.
    pub(super) async fn read(&self, scope: &Scope, started: Instant) -> Result<Read, PassError> {
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
