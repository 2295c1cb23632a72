//! The read half of a pass: desired state (the bindings, then the Cloud Controller about
//! exactly those apps) and actual state (the store's listings), all at once.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use gds_reconcile::{Actual, Desired, Scope};
use gds_store::{ETag, ListHint, RecordChange, StoreError, TargetState};
use gds_targets::{AppGuid, BindingParams};

use super::{PassError, PassTimings, Reconciler};

/// Up to this many apps, a fast-path pass reads their files instead of listing the bucket.
const SCOPED_READ_LIMIT: usize = 50;

/// The last full pass' complete listing of both states, with the version of the writers'
/// record read just before it. A later full pass reuses it instead of listing the whole
/// bucket (ceil(N/1000) LISTs per state) when the record is still that version: every
/// writer publishes after changing `active/`, so no published change happened since the
/// listing. It is forgotten whenever a pass of this process changes the bucket, and not
/// trusted longer than `UPDATER_SAFETY_LISTING_SECONDS`, which catches writes that
/// bypassed the record (and the broker's inactive-only writes, which it does not
/// publish; a stale view of them costs an idempotent rewrite or removal, never a wrong
/// deletion: deletions follow from the bindings and the Cloud Controller, read afresh).
pub(super) struct ListingCache {
    record: ETag,
    listed_at: Instant,
    active: BTreeMap<AppGuid, ETag>,
    inactive: BTreeMap<AppGuid, ETag>,
}

/// What the writers' record says about the cached listing.
enum RecordCheck {
    /// Unchanged, and the listing is recent enough: reuse it.
    Reuse(BTreeMap<AppGuid, ETag>, BTreeMap<AppGuid, ETag>),
    /// List; remember the listing with this record version (none: do not remember).
    List(Option<ETag>),
}

type Listed = (Result<BTreeMap<AppGuid, ETag>, StoreError>, Duration);

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
        let listings = async { Ok::<_, PassError>(self.listings(scope, started).await) };
        let (
            (bound, newest, cc, bindings_read, cc_read),
            ((active, active_t), (inactive, inactive_t)),
        ) = tokio::try_join!(desired, listings)?;
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

    /// Both states' listings: for a full pass, the previous one's when the writers' record
    /// is unchanged since it ([`ListingCache`]), otherwise listed.
    async fn listings(&self, scope: &Scope, started: Instant) -> (Listed, Listed) {
        let check = match scope {
            Scope::All => self.check_record().await,
            Scope::Apps(_) => RecordCheck::List(None),
        };
        let record = match check {
            RecordCheck::Reuse(active, inactive) => {
                self.metrics
                    .full_listings
                    .with_label_values(&["reused"])
                    .inc();
                tracing::debug!("the writers' record is unchanged: reusing the last listing");
                let at = started.elapsed();
                return ((Ok(active), at), (Ok(inactive), at));
            }
            RecordCheck::List(record) => record,
        };
        let listed_at = Instant::now();
        let (active, inactive) = tokio::join!(
            timed(started, self.listing(TargetState::Active, scope)),
            timed(started, self.listing(TargetState::Inactive, scope)),
        );
        if scope == &Scope::All {
            self.metrics
                .full_listings
                .with_label_values(&["listed"])
                .inc();
            let cache = match (record, &active.0, &inactive.0) {
                (Some(record), Ok(a), Ok(i)) => Some(ListingCache {
                    record,
                    listed_at,
                    active: a.clone(),
                    inactive: i.clone(),
                }),
                _ => None,
            };
            *self.cache() = cache;
        }
        (active, inactive)
    }

    /// Asks the writers' record (one conditional read) whether the cached listing is
    /// still the bucket's. When in doubt (no record, an error, no cache), list.
    async fn check_record(&self) -> RecordCheck {
        let known = self.cache().as_ref().map(|c| c.record.clone());
        match self.store.read_record_if_changed(known.as_ref()).await {
            Ok(RecordChange::Unchanged) => {
                let cache = self.cache();
                match cache.as_ref() {
                    Some(c) if c.listed_at.elapsed() < self.settings.safety_listing => {
                        RecordCheck::Reuse(c.active.clone(), c.inactive.clone())
                    }
                    Some(c) => RecordCheck::List(Some(c.record.clone())),
                    None => RecordCheck::List(None),
                }
            }
            Ok(RecordChange::Changed(_, etag)) => RecordCheck::List(Some(etag)),
            Ok(RecordChange::Absent) => RecordCheck::List(None),
            Err(e) => {
                tracing::debug!(error = %e, "cannot read the writers' record: listing");
                RecordCheck::List(None)
            }
        }
    }

    fn cache(&self) -> std::sync::MutexGuard<'_, Option<ListingCache>> {
        self.listing_cache
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
    }

    /// The next full pass lists the bucket.
    pub(super) fn forget_listing(&self) {
        *self.cache() = None;
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
