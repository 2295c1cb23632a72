//! Which `Authorization` a scrape of an app carries: the index of the bucket's scrape
//! credentials documents (`<root>credentials/<app_guid>.json`, see
//! [`gds_store::scrape_credentials`]) that the scrape gateway consults per request.
//!
//! Per mapping, [`CredentialsIndex::refresh`] lists `credentials/` beside the mapping's
//! `active/` prefix, reads only documents whose ETag changed, checks them, and swaps the
//! whole map in one step. sd-sync refreshes it whenever the mirror lists the mapping's
//! prefix: when the writers' record changed (the broker publishes it after every change to
//! `credentials/`), when there is none, and at every safety listing, so an idle poll costs
//! nothing more than the mirror's one conditional `GetObject` of the record. The swap is
//! atomic, so [`ScrapeCredentials::authorization`] is one read lock and a
//! hash look-up. As for target files: a malformed document installs nothing and the last
//! good one stays (counted, shown in `/health`); a failed listing changes nothing; only a
//! complete listing drops the document of an app (it then goes back to `Bearer <app
//! guid>`).
//!
//! Nothing of this ever reaches Prometheus' directory, `/targets`, `/metrics` or a log
//! line: the documents hold no secret, and the tokens derived from them live only in the
//! [`ScrapeAuthorization::Token`] handed to the gateway.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use gds_service::{Secret, error_chain};
use gds_store::{CredentialsDocument, ETag, S3Store, ScrapeTokenKey, TargetStore};
use gds_targets::{AppGuid, ScrapeAuth};
use prometheus::{IntCounterVec, IntGaugeVec, Opts, Registry};
use serde::Serialize;

use http::HeaderValue;

use crate::gateway::{Refusal, UpstreamAuthorization};

/// The authorization of a scrape of one app.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum ScrapeAuthorization {
    /// `Authorization: Bearer <app guid>` (the original's; no document, or the app's
    /// oldest binding uses it).
    AppGuid,
    /// `Authorization: Bearer <token>`: the token of the app's oldest binding.
    Token(Secret),
    /// A token is needed but cannot be made (why, for the gateway's refusal): this
    /// sd-sync has no key. The scrape must not go out with a wrong header.
    Unavailable(&'static str),
}

impl ScrapeAuthorization {
    /// The header value, `Bearer ...`, or the reason there is none.
    pub fn header_value(&self, app: &AppGuid) -> Result<Secret, &'static str> {
        match self {
            ScrapeAuthorization::AppGuid => Ok(Secret::new(format!("Bearer {app}"))),
            ScrapeAuthorization::Token(token) => {
                Ok(Secret::new(format!("Bearer {}", token.expose())))
            }
            ScrapeAuthorization::Unavailable(reason) => Err(reason),
        }
    }
}

/// What the gateway needs of one app: its oldest binding.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Oldest {
    binding_id: String,
    auth: ScrapeAuth,
}

type Snapshot = Arc<HashMap<AppGuid, Oldest>>;

/// Every mapping's index, for the gateway: cheap to clone and to query.
#[derive(Clone, Debug)]
pub struct ScrapeCredentials {
    key: Option<ScrapeTokenKey>,
    mappings: Vec<Arc<RwLock<Snapshot>>>,
}

impl ScrapeCredentials {
    /// The authorization of a scrape of `app`: from the first mapping whose documents
    /// name it, `AppGuid` when none does.
    pub fn authorization(&self, app: &AppGuid) -> ScrapeAuthorization {
        for mapping in &self.mappings {
            let snapshot = Arc::clone(&mapping.read().unwrap_or_else(|p| p.into_inner()));
            if let Some(oldest) = snapshot.get(app) {
                return match (oldest.auth, &self.key) {
                    (ScrapeAuth::AppGuid, _) => ScrapeAuthorization::AppGuid,
                    (ScrapeAuth::Token, Some(key)) => {
                        ScrapeAuthorization::Token(key.token_for(&oldest.binding_id))
                    }
                    (ScrapeAuth::Token, None) => ScrapeAuthorization::Unavailable(
                        "the app's binding uses a scrape token and sd-sync has no \
                         --scrape-token-key-file",
                    ),
                };
            }
        }
        ScrapeAuthorization::AppGuid
    }
}

/// The gateway's `Authorization` of an app's scrapes. A token that cannot be made (no
/// key) refuses the scrape: it must not go out with the wrong header.
impl UpstreamAuthorization for ScrapeCredentials {
    fn authorization(&self, app_guid: &str) -> Result<HeaderValue, Refusal> {
        let app = AppGuid::parse(app_guid).map_err(|_| Refusal::NoAuthorization)?;
        let value = ScrapeCredentials::authorization(self, &app)
            .header_value(&app)
            .map_err(|_| Refusal::NoAuthorization)?;
        let mut header =
            HeaderValue::from_str(value.expose()).map_err(|_| Refusal::NoAuthorization)?;
        header.set_sensitive(true);
        Ok(header)
    }
}

/// The metrics of the indexes (label `mapping`).
#[derive(Clone, Debug)]
pub struct CredentialsMetrics {
    documents: IntGaugeVec,
    invalid: IntCounterVec,
    listing_errors: IntCounterVec,
}

impl CredentialsMetrics {
    /// Registers `sd_sync_scrape_credentials_documents{mapping}`,
    /// `sd_sync_scrape_credentials_invalid_total{mapping}` and
    /// `sd_sync_scrape_credentials_errors_total{mapping}` in `registry`.
    pub fn registered_in(registry: &Registry) -> CredentialsMetrics {
        let documents = IntGaugeVec::new(
            Opts::new(
                "sd_sync_scrape_credentials_documents",
                "Scrape credentials documents indexed (apps with a token binding)",
            ),
            &["mapping"],
        )
        .expect("a valid metric");
        let invalid = IntCounterVec::new(
            Opts::new(
                "sd_sync_scrape_credentials_invalid_total",
                "Scrape credentials documents read and refused as malformed (the last good one stays)",
            ),
            &["mapping"],
        )
        .expect("a valid metric");
        let listing_errors = IntCounterVec::new(
            Opts::new(
                "sd_sync_scrape_credentials_errors_total",
                "Listings or reads of credentials/ that failed (the index stays as it was)",
            ),
            &["mapping"],
        )
        .expect("a valid metric");
        for metric in [
            Box::new(documents.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(invalid.clone()),
            Box::new(listing_errors.clone()),
        ] {
            registry.register(metric).expect("registered once");
        }
        CredentialsMetrics {
            documents,
            invalid,
            listing_errors,
        }
    }
}

/// What `/health` shows of one mapping's index.
#[derive(Clone, Debug, Default, Serialize, PartialEq, Eq)]
pub struct CredentialsHealth {
    /// Documents indexed.
    pub documents: usize,
    /// Apps whose current document is malformed (their last good one is used), sorted.
    pub invalid_documents: Vec<String>,
    /// The last listing's or read's failure, until a refresh succeeds.
    pub last_error: Option<String>,
}

/// One mapping's index: the store beside its `active/` prefix and the documents known.
#[derive(Debug)]
pub struct CredentialsIndex {
    name: String,
    store: Arc<dyn TargetStore>,
    /// The last good document of each app, with the ETag it was read at, and the ETag of
    /// a malformed newer one (not read again until it changes).
    known: HashMap<AppGuid, Known>,
    published: Arc<RwLock<Snapshot>>,
    health: Arc<Mutex<CredentialsHealth>>,
    metrics: CredentialsMetrics,
}

#[derive(Debug)]
struct Known {
    etag: ETag,
    /// `None`: no good version was ever read.
    good: Option<Oldest>,
    malformed: bool,
}

impl CredentialsIndex {
    /// The index of mapping `name` over `store`, whose root is the one of the mapping's
    /// `active/` prefix (the store's `credentials/` is the mapping's).
    pub fn new(
        name: impl Into<String>,
        store: Arc<dyn TargetStore>,
        metrics: CredentialsMetrics,
    ) -> CredentialsIndex {
        CredentialsIndex {
            name: name.into(),
            store,
            known: HashMap::new(),
            published: Arc::default(),
            health: Arc::default(),
            metrics,
        }
    }

    /// The store of the mapping whose prefix is `active_prefix` in `s3`'s bucket: `s3`
    /// with the prefix's root (`eu-west-2/active/` -> `eu-west-2/`); `None` when the
    /// prefix does not end in `active/` (no credentials can be located).
    pub fn root_store(
        s3: &gds_store::S3Config,
        active_prefix: &str,
    ) -> Option<anyhow::Result<S3Store>> {
        let root = active_prefix.strip_suffix("active/")?;
        if !(root.is_empty() || root.ends_with('/')) {
            return None;
        }
        let config = s3.clone().with_prefix(root);
        Some(S3Store::new(config, |_| None).map_err(anyhow::Error::from))
    }

    /// The view for `/health`.
    pub fn health(&self) -> Arc<Mutex<CredentialsHealth>> {
        Arc::clone(&self.health)
    }

    /// Lists `credentials/`, reads what changed, and publishes the new map. Failures are
    /// logged, counted and shown in `/health`; the index then stays as it was.
    pub async fn refresh(&mut self) {
        let listed = match self.store.list_credentials().await {
            Ok(listed) => listed,
            Err(e) => {
                let error = error_chain(&e);
                tracing::warn!(mapping = %self.name, error = %error, "cannot list the scrape credentials documents: keeping the last index");
                self.metrics
                    .listing_errors
                    .with_label_values(&[&self.name])
                    .inc();
                self.lock_health().last_error = Some(error);
                return;
            }
        };
        let mut last_error = None;
        let mut next: HashMap<AppGuid, Known> = HashMap::with_capacity(listed.len());
        for entry in listed {
            let previous = self.known.remove(&entry.app_guid);
            if previous.as_ref().is_some_and(|p| p.etag == entry.etag) {
                next.insert(entry.app_guid, previous.expect("checked"));
                continue;
            }
            let read = match self.store.read_credentials(&entry.app_guid).await {
                Ok(Some((body, etag))) => Some((body, etag)),
                // Removed since the listing: as if not listed.
                Ok(None) => None,
                Err(e) => {
                    let error = error_chain(&e);
                    tracing::warn!(mapping = %self.name, app_guid = %entry.app_guid, error = %error, "cannot read a scrape credentials document: keeping its last version");
                    self.metrics
                        .listing_errors
                        .with_label_values(&[&self.name])
                        .inc();
                    last_error = Some(error);
                    if let Some(previous) = previous {
                        next.insert(entry.app_guid, previous);
                    }
                    continue;
                }
            };
            let Some((body, etag)) = read else { continue };
            match CredentialsDocument::parse(&body, &entry.app_guid) {
                Ok(doc) => {
                    let oldest = doc.oldest();
                    next.insert(
                        entry.app_guid,
                        Known {
                            etag,
                            good: Some(Oldest {
                                binding_id: oldest.binding_id.clone(),
                                auth: oldest.auth,
                            }),
                            malformed: false,
                        },
                    );
                }
                Err(reason) => {
                    tracing::warn!(mapping = %self.name, app_guid = %entry.app_guid, %reason, "refusing a malformed scrape credentials document: keeping its last good version");
                    self.metrics.invalid.with_label_values(&[&self.name]).inc();
                    next.insert(
                        entry.app_guid,
                        Known {
                            etag,
                            good: previous.and_then(|p| p.good),
                            malformed: true,
                        },
                    );
                }
            }
        }
        self.known = next;
        let snapshot: HashMap<AppGuid, Oldest> = self
            .known
            .iter()
            .filter_map(|(app, known)| Some((app.clone(), known.good.clone()?)))
            .collect();
        let documents = snapshot.len();
        *self.published.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(snapshot);
        self.metrics
            .documents
            .with_label_values(&[&self.name])
            .set(documents as i64);
        let mut invalid: Vec<String> = self
            .known
            .iter()
            .filter(|(_, k)| k.malformed)
            .map(|(app, _)| app.to_string())
            .collect();
        invalid.sort();
        *self.lock_health() = CredentialsHealth {
            documents,
            invalid_documents: invalid,
            last_error,
        };
    }

    fn lock_health(&self) -> std::sync::MutexGuard<'_, CredentialsHealth> {
        self.health.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// The gateway's view of `indexes`, deriving tokens with `key`.
pub fn scrape_credentials(
    indexes: &[&CredentialsIndex],
    key: Option<ScrapeTokenKey>,
) -> ScrapeCredentials {
    ScrapeCredentials {
        key,
        mappings: indexes.iter().map(|i| Arc::clone(&i.published)).collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gds_store::{BindingAuth, Bytes, MemoryStore};

    const KEY: &str = "0123456789abcdef0123456789abcdef";

    fn app(n: u8) -> AppGuid {
        AppGuid::parse(&format!("{n:08x}-fb05-47e1-b541-c34179ddc446")).unwrap()
    }

    fn doc(app: &AppGuid, bindings: &[(&str, ScrapeAuth)]) -> Bytes {
        let bindings = bindings
            .iter()
            .map(|(id, auth)| BindingAuth {
                binding_id: (*id).into(),
                auth: *auth,
                created_at: "2026-12-07T12:00:00.000Z".into(),
            })
            .collect();
        Bytes::from(
            CredentialsDocument::for_bindings(app, bindings)
                .unwrap()
                .to_bytes(),
        )
    }

    fn index(store: &Arc<MemoryStore>) -> (CredentialsIndex, Registry) {
        let registry = Registry::new();
        let metrics = CredentialsMetrics::registered_in(&registry);
        let store: Arc<dyn TargetStore> = store.clone();
        (CredentialsIndex::new("m", store, metrics), registry)
    }

    fn key() -> ScrapeTokenKey {
        ScrapeTokenKey::parse(KEY).unwrap()
    }

    #[tokio::test]
    async fn the_oldest_bindings_authorization_applies_and_follows_the_bucket() {
        let store = Arc::new(MemoryStore::new());
        let (mut index, _registry) = index(&store);
        let view = scrape_credentials(&[&index], Some(key()));
        assert_eq!(view.authorization(&app(1)), ScrapeAuthorization::AppGuid);

        store
            .write_credentials(
                &app(1),
                doc(
                    &app(1),
                    &[("b-1", ScrapeAuth::Token), ("b-2", ScrapeAuth::AppGuid)],
                ),
            )
            .await
            .unwrap();
        store
            .write_credentials(
                &app(2),
                doc(
                    &app(2),
                    &[("b-3", ScrapeAuth::AppGuid), ("b-4", ScrapeAuth::Token)],
                ),
            )
            .await
            .unwrap();
        index.refresh().await;
        assert_eq!(
            view.authorization(&app(1)),
            ScrapeAuthorization::Token(key().token_for("b-1"))
        );
        assert_eq!(view.authorization(&app(2)), ScrapeAuthorization::AppGuid);

        // b-1 unbound: b-2 is now the oldest.
        store
            .write_credentials(
                &app(1),
                doc(
                    &app(1),
                    &[("b-2", ScrapeAuth::AppGuid), ("b-5", ScrapeAuth::Token)],
                ),
            )
            .await
            .unwrap();
        store.remove_credentials(&app(2)).await.unwrap();
        index.refresh().await;
        assert_eq!(view.authorization(&app(1)), ScrapeAuthorization::AppGuid);
        assert_eq!(view.authorization(&app(2)), ScrapeAuthorization::AppGuid);
        assert_eq!(index.health().lock().unwrap().documents, 1);
    }

    #[tokio::test]
    async fn the_gateway_gets_a_sensitive_header_and_a_refusal_without_a_key() {
        let store = Arc::new(MemoryStore::new());
        let (mut index, _registry) = index(&store);
        store
            .write_credentials(&app(1), doc(&app(1), &[("b-1", ScrapeAuth::Token)]))
            .await
            .unwrap();
        index.refresh().await;
        let gateway: &dyn UpstreamAuthorization = &scrape_credentials(&[&index], Some(key()));
        let header = gateway.authorization(app(1).as_str()).unwrap();
        let want = format!("Bearer {}", key().token_for("b-1").expose());
        assert_eq!(header.to_str().unwrap(), want);
        assert!(header.is_sensitive());
        let guid = gateway.authorization(app(2).as_str()).unwrap();
        assert_eq!(guid.to_str().unwrap(), format!("Bearer {}", app(2)));
        let keyless: &dyn UpstreamAuthorization = &scrape_credentials(&[&index], None);
        assert_eq!(
            keyless.authorization(app(1).as_str()),
            Err(Refusal::NoAuthorization)
        );
    }

    #[tokio::test]
    async fn a_malformed_document_keeps_the_last_good_one_and_is_counted() {
        let store = Arc::new(MemoryStore::new());
        let (mut index, registry) = index(&store);
        let view = scrape_credentials(&[&index], Some(key()));
        store
            .write_credentials(&app(1), doc(&app(1), &[("b-1", ScrapeAuth::Token)]))
            .await
            .unwrap();
        index.refresh().await;
        store
            .write_credentials(&app(1), Bytes::from_static(b"{\"format\":1"))
            .await
            .unwrap();
        index.refresh().await;
        index.refresh().await;
        assert_eq!(
            view.authorization(&app(1)),
            ScrapeAuthorization::Token(key().token_for("b-1"))
        );
        let health = index.health().lock().unwrap().clone();
        assert_eq!(health.invalid_documents, [app(1).to_string()]);
        let text = gds_service::metrics::render(&registry);
        assert!(
            text.contains(r#"sd_sync_scrape_credentials_invalid_total{mapping="m"} 1"#),
            "read once per version: {text}"
        );
        // Fixed: the new version applies and the app is no longer listed as invalid.
        store
            .write_credentials(&app(1), doc(&app(1), &[("b-9", ScrapeAuth::Token)]))
            .await
            .unwrap();
        index.refresh().await;
        assert_eq!(
            view.authorization(&app(1)),
            ScrapeAuthorization::Token(key().token_for("b-9"))
        );
        assert!(index.health().lock().unwrap().invalid_documents.is_empty());
    }

    #[tokio::test]
    async fn a_store_that_is_down_changes_nothing() {
        let store = Arc::new(MemoryStore::new());
        let (mut index, _registry) = index(&store);
        let view = scrape_credentials(&[&index], Some(key()));
        store
            .write_credentials(&app(1), doc(&app(1), &[("b-1", ScrapeAuth::Token)]))
            .await
            .unwrap();
        index.refresh().await;
        store.set_unavailable(true);
        index.refresh().await;
        assert_eq!(
            view.authorization(&app(1)),
            ScrapeAuthorization::Token(key().token_for("b-1"))
        );
        assert!(index.health().lock().unwrap().last_error.is_some());
    }

    #[tokio::test]
    async fn without_a_key_a_token_binding_is_unavailable_never_the_app_guid() {
        let store = Arc::new(MemoryStore::new());
        let (mut index, _registry) = index(&store);
        let view = scrape_credentials(&[&index], None);
        store
            .write_credentials(&app(1), doc(&app(1), &[("b-1", ScrapeAuth::Token)]))
            .await
            .unwrap();
        index.refresh().await;
        assert!(matches!(
            view.authorization(&app(1)),
            ScrapeAuthorization::Unavailable(_)
        ));
        assert_eq!(
            ScrapeAuthorization::AppGuid
                .header_value(&app(1))
                .unwrap()
                .expose(),
            format!("Bearer {}", app(1))
        );
    }
}
