//! The read half of a pass: desired state (the bindings, then the Cloud Controller about
//! exactly those apps) and actual state (the store's listings), all at once.
//!
//! The bindings also give each app's scrape credentials document; a full pass lists
//! `credentials/` beside `active/` and `inactive/` (the fast path does not).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::PoisonError;
use std::time::{Duration, Instant};

use gds_reconcile::{Actual, Desired, Scope};
use gds_store::scrape_credentials::rfc3339_millis;
use gds_store::{
    BindingAuth, CredentialsDocument, ETag, ListHint, RecordChange, StoreError, TargetState,
};
use gds_targets::{AppGuid, BindingParams, ScrapeAuth};

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
/// The same holds for `credentials/`: every writer publishes after changing it too.
pub(super) struct ListingCache {
    record: ETag,
    listed_at: Instant,
    listings: Listings<BTreeMap<AppGuid, ETag>>,
}

/// What the writers' record says about the cached listing.
enum RecordCheck {
    /// Unchanged, and the listing is recent enough: reuse it.
    Reuse(Listings<BTreeMap<AppGuid, ETag>>),
    /// List; remember the listing with this record version (none: do not remember).
    List(Option<ETag>),
}

/// One listing of each directory a pass reads; `credentials` only in a full pass.
#[derive(Clone)]
struct Listings<T> {
    active: T,
    inactive: T,
    credentials: Option<T>,
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
            let Bound {
                bound,
                newest,
                credentials,
            } = bound_apps(bindings);
            let wanted: BTreeSet<AppGuid> = match scope {
                Scope::All => bound.keys().cloned().collect(),
                Scope::Apps(apps) => apps
                    .iter()
                    .filter(|a| bound.contains_key(*a))
                    .cloned()
                    .collect(),
            };
            let (cc, cc_read) = timed(started, self.cf.apps_info(&wanted)).await;
            Ok::<_, PassError>((bound, newest, credentials, cc, bindings_read, cc_read))
        };
        // A database failure ends the pass at once (the listings are dropped).
        let listings = async { Ok::<_, PassError>(self.listings(scope, started).await) };
        let ((bound, newest, credentials, cc, bindings_read, cc_read), listed) =
            tokio::try_join!(desired, listings)?;
        let timings = PassTimings {
            bindings_read,
            cloud_controller_read: cc_read,
            active_listed: listed.active.1,
            inactive_listed: listed.inactive.1,
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
        let mut ok = |dir: &str, result: Result<BTreeMap<AppGuid, ETag>, StoreError>| {
            result
                .map_err(|e| {
                    self.metrics
                        .pass_failures
                        .with_label_values(&["store_listing"])
                        .inc();
                    tracing::warn!(dir, error = %e, "store listing failed: nothing is deleted or moved this pass");
                    failures.push(format!("listing {dir}/: {e}"));
                })
                .ok()
        };
        let active = ok(TargetState::Active.dir_name(), listed.active.0);
        let inactive = ok(TargetState::Inactive.dir_name(), listed.inactive.0);
        let listed_credentials = listed
            .credentials
            .and_then(|(result, _)| ok("credentials", result));
        Ok(Read {
            desired: Desired {
                bound,
                cc,
                credentials,
            },
            actual: Actual {
                active,
                inactive,
                credentials: listed_credentials,
            },
            newest,
            failures,
            timings,
        })
    }

    /// Both states' listings, and for a full pass that of `credentials/`: the previous
    /// full pass' when the writers' record is unchanged since it ([`ListingCache`]),
    /// otherwise listed.
    async fn listings(&self, scope: &Scope, started: Instant) -> Listings<Listed> {
        let check = match scope {
            Scope::All => self.check_record().await,
            Scope::Apps(_) => RecordCheck::List(None),
        };
        let record = match check {
            RecordCheck::Reuse(cached) => {
                self.metrics
                    .full_listings
                    .with_label_values(&["reused"])
                    .inc();
                tracing::debug!("the writers' record is unchanged: reusing the last listing");
                let at = started.elapsed();
                return Listings {
                    active: (Ok(cached.active), at),
                    inactive: (Ok(cached.inactive), at),
                    credentials: cached.credentials.map(|c| (Ok(c), at)),
                };
            }
            RecordCheck::List(record) => record,
        };
        let listed_at = Instant::now();
        let full = scope == &Scope::All;
        let (active, inactive, credentials) = tokio::join!(
            timed(started, self.listing(TargetState::Active, scope)),
            timed(started, self.listing(TargetState::Inactive, scope)),
            async {
                if full {
                    Some(timed(started, self.credentials_listing()).await)
                } else {
                    None
                }
            },
        );
        if full {
            self.metrics
                .full_listings
                .with_label_values(&["listed"])
                .inc();
            let cache = match (record, &active.0, &inactive.0, &credentials) {
                (Some(record), Ok(a), Ok(i), Some((Ok(c), _))) => Some(ListingCache {
                    record,
                    listed_at,
                    listings: Listings {
                        active: a.clone(),
                        inactive: i.clone(),
                        credentials: Some(c.clone()),
                    },
                }),
                _ => None,
            };
            *self.cache() = cache;
        }
        Listings {
            active,
            inactive,
            credentials,
        }
    }

    /// The listing of `credentials/` (ceil(N/1000) requests).
    async fn credentials_listing(&self) -> Result<BTreeMap<AppGuid, ETag>, StoreError> {
        let listed = self.store.list_credentials().await?;
        tracing::debug!(documents = listed.len(), "listed credentials/");
        Ok(listed.into_iter().map(|c| (c.app_guid, c.etag)).collect())
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
                        RecordCheck::Reuse(c.listings.clone())
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

/// What the bindings say about the bound apps.
struct Bound {
    /// Each bound app's parameters: its newest binding's (DESIGN.md 3a).
    bound: BTreeMap<AppGuid, BindingParams>,
    /// Each bound app's newest binding.
    newest: BTreeMap<AppGuid, String>,
    /// The credentials document of each bound app that should have one.
    credentials: BTreeMap<AppGuid, CredentialsDocument>,
}

/// [`Bound`], from `bindings` ordered by app and newest first (as
/// [`gds_db::Db::all_bindings`] gives them).
fn bound_apps(bindings: Vec<gds_db::Binding>) -> Bound {
    let mut bound = BTreeMap::new();
    let mut newest = BTreeMap::new();
    let mut credentials = BTreeMap::new();
    for group in bindings.chunk_by(|a, b| a.app_guid == b.app_guid) {
        let app = &group[0].app_guid;
        if let Some(doc) = credentials_document(app, group) {
            credentials.insert(app.clone(), doc);
        }
    }
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
    Bound {
        bound,
        newest,
        credentials,
    }
}

/// The credentials document of `app` for its `bindings` (newest first, as the database
/// gives them), `None` when none of them uses a token. The broker's bind and unbind and
/// the updater's passes all build it here, so they write the same bytes.
pub fn credentials_document(
    app: &AppGuid,
    bindings: &[gds_db::Binding],
) -> Option<CredentialsDocument> {
    let oldest_first = bindings
        .iter()
        .rev()
        .map(|b| BindingAuth {
            binding_id: b.binding_id.clone(),
            auth: ScrapeAuth::of_stored(&b.parameters_json()),
            created_at: rfc3339_millis(b.created_at),
        })
        .collect();
    CredentialsDocument::for_bindings(app, oldest_first)
}

/// `read`'s output, and the time since `started` at which it was done.
async fn timed<T>(started: Instant, read: impl Future<Output = T>) -> (T, Duration) {
    let result = read.await;
    (result, started.elapsed())
}
