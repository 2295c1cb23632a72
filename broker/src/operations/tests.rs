//! The broker's operations on SQLite, an in-memory store and a fake Cloud Controller.

use std::collections::HashMap;
use std::sync::Mutex;
use std::sync::atomic::{AtomicUsize, Ordering};

use gds_db::ConnectOptions;
use gds_store::{CredentialsDocument, MemoryStore};
use gds_targets::Route;
use serde_json::json;

use super::*;

const INSTANCE: &str = "si-1";
const APP: &str = "0e9c9b69-5fb6-46cf-a53f-9c94b49b1bb3";

/// A Cloud Controller that knows some apps, or is down.
#[derive(Default)]
struct FakeCc {
    apps: Mutex<HashMap<AppGuid, AppInfo>>,
    down: std::sync::atomic::AtomicBool,
    calls: AtomicUsize,
    /// When set, each look-up waits for a permit first (a slow Cloud Controller).
    gate: Mutex<Option<Arc<tokio::sync::Semaphore>>>,
}

#[async_trait]
impl AppDirectory for FakeCc {
    async fn app_info(
        &self,
        guid: &AppGuid,
        _deadline: Instant,
    ) -> Result<Option<AppInfo>, CfError> {
        self.calls.fetch_add(1, Ordering::SeqCst);
        let gate = self.gate.lock().unwrap().clone();
        if let Some(gate) = gate {
            gate.acquire().await.unwrap().forget();
        }
        if self.down.load(Ordering::SeqCst) {
            return Err(CfError::Api {
                endpoint: "GET /v3/apps/:guid".into(),
                status: 500,
                title: "CF-ServerError".into(),
                detail: "down".into(),
            });
        }
        Ok(self.apps.lock().unwrap().get(guid).cloned())
    }
}

fn app_info(state: AppState) -> AppInfo {
    AppInfo {
        guid: AppGuid::parse(APP).unwrap(),
        name: "web-shop".into(),
        state,
        instances: 2,
        org: "org".into(),
        space: "space".into(),
        routes: vec![Route {
            host: "web-shop".into(),
            domain: "apps.example.com".into(),
            path: String::new(),
            internal: false,
        }],
        start_command: None,
        exporter_label: false,
    }
}

struct World {
    broker: Broker,
    store: Arc<MemoryStore>,
    cc: Arc<FakeCc>,
    _dir: tempfile::TempDir,
}

async fn world(state: AppState) -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/b.db?mode=rwc", dir.path().display());
    let db = Db::connect(&url, ConnectOptions::default()).await.unwrap();
    let store = Arc::new(MemoryStore::new());
    let cc = Arc::new(FakeCc::default());
    cc.apps
        .lock()
        .unwrap()
        .insert(AppGuid::parse(APP).unwrap(), app_info(state));
    let broker = Broker::new(
        db,
        store.clone(),
        cc.clone(),
        CatalogIds {
            service_id: "svc".into(),
            service_name: "gds-prometheus".into(),
            plan_id: "plan".into(),
        },
        ModelConfig {
            paas_domain: "apps.example.com".into(),
        },
        BrokerMetrics::new(),
    );
    broker
        .provision(
            INSTANCE,
            &ProvisionRequest::from_json(&json!({
                "service_id": "svc", "plan_id": "plan",
                "organization_guid": "o", "space_guid": "s"
            }))
            .unwrap(),
        )
        .await
        .unwrap();
    World {
        broker,
        store,
        cc,
        _dir: dir,
    }
}

fn bind_request(params: serde_json::Value) -> BindRequest {
    BindRequest::from_json(&json!({
        "service_id": "svc", "plan_id": "plan",
        "bind_resource": {"app_guid": APP}, "parameters": params
    }))
    .unwrap()
}

fn delete_query() -> DeleteQuery {
    DeleteQuery {
        service_id: Some("svc".into()),
        plan_id: Some("plan".into()),
    }
}

fn key(state: &str) -> String {
    format!("{state}/{APP}.json")
}

/// The store's keys but the writers' record's.
fn target_keys(store: &MemoryStore) -> Vec<String> {
    let mut keys = store.raw_keys();
    keys.retain(|k| k != gds_store::RECORD_KEY);
    keys
}

/// The writers' record as published: (generation, active_count).
async fn record(store: &MemoryStore) -> Option<(u64, u64)> {
    let (body, _) = store.read_record().await.unwrap()?;
    let record = gds_store::WritersRecord::parse(&body).unwrap();
    assert_eq!(record.writer, "broker");
    Some((record.generation, record.active_count))
}

#[tokio::test]
async fn every_change_to_active_publishes_the_writers_record() {
    let w = world(AppState::Started).await;
    assert_eq!(record(&w.store).await, None);
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(record(&w.store).await, Some((1, 1)), "after the bind");
    // A second binding of the same app rewrites its file: published again.
    w.broker
        .bind(INSTANCE, "b-2", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(
        record(&w.store).await,
        Some((2, 1)),
        "after the second bind"
    );
    w.broker
        .unbind(INSTANCE, "b-2", &delete_query())
        .await
        .unwrap();
    assert_eq!(
        record(&w.store).await,
        Some((2, 1)),
        "an unbind that leaves the file changes nothing in active/"
    );
    w.broker
        .unbind(INSTANCE, "b-1", &delete_query())
        .await
        .unwrap();
    assert_eq!(
        record(&w.store).await,
        Some((3, 0)),
        "the last unbind empties active/ and says so"
    );
}

#[tokio::test]
async fn a_stopped_app_bound_for_the_first_time_leaves_the_record_alone() {
    let w = world(AppState::Stopped).await;
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(target_keys(&w.store), [key("inactive")]);
    assert_eq!(record(&w.store).await, None);
}

#[tokio::test]
async fn binding_a_started_app_writes_its_active_file_and_unbinding_removes_it() {
    let w = world(AppState::Started).await;
    let outcome = w
        .broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(outcome.outcome, Outcome::Created);
    assert_eq!(target_keys(&w.store), [key("active")]);
    let (body, _) = w
        .store
        .read_app(TargetState::Active, &AppGuid::parse(APP).unwrap())
        .await
        .unwrap()
        .unwrap();
    let expected = build_target_file(
        &app_info(AppState::Started),
        &ModelConfig {
            paas_domain: "apps.example.com".into(),
        },
        &BindingParams::default(),
    );
    assert_eq!(body.as_ref(), expected.to_bytes().as_slice());

    w.broker
        .unbind(INSTANCE, "b-1", &delete_query())
        .await
        .unwrap();
    assert!(target_keys(&w.store).is_empty());
}

#[tokio::test]
async fn a_stopped_app_is_written_inactive_and_its_active_file_removed() {
    let w = world(AppState::Started).await;
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(target_keys(&w.store), [key("active")]);
    // The app stops; before the updater notices, it is bound again.
    w.cc.apps
        .lock()
        .unwrap()
        .insert(AppGuid::parse(APP).unwrap(), app_info(AppState::Stopped));
    w.broker
        .bind(INSTANCE, "b-2", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(target_keys(&w.store), [key("inactive")]);
}

#[tokio::test]
async fn a_failed_store_write_leaves_no_binding_and_answers_unavailable() {
    let w = world(AppState::Started).await;
    w.store.fail_next(1);
    let err = w
        .broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::StoreUnavailable(_)), "{err:?}");
    assert_eq!(w.broker.db().binding("b-1").await.unwrap(), None);
    assert!(target_keys(&w.store).is_empty());
    // The platform's orphan-mitigation unbind finds nothing: 410.
    let err = w
        .broker
        .unbind(INSTANCE, "b-1", &delete_query())
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::BindingNotFound(_)), "{err:?}");
}

#[tokio::test]
async fn an_app_bound_twice_keeps_its_file_until_the_last_binding_goes() {
    let w = world(AppState::Started).await;
    for id in ["b-1", "b-2"] {
        w.broker
            .bind(INSTANCE, id, &bind_request(json!({})))
            .await
            .unwrap();
    }
    w.broker
        .unbind(INSTANCE, "b-1", &delete_query())
        .await
        .unwrap();
    assert_eq!(
        target_keys(&w.store),
        [key("active")],
        "one binding remains"
    );
    w.broker
        .unbind(INSTANCE, "b-2", &delete_query())
        .await
        .unwrap();
    assert!(target_keys(&w.store).is_empty());
}

#[tokio::test]
async fn unbinding_needs_no_cloud_controller() {
    let w = world(AppState::Started).await;
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    w.cc.down.store(true, Ordering::SeqCst);
    let calls = w.cc.calls.load(Ordering::SeqCst);
    w.broker
        .unbind(INSTANCE, "b-1", &delete_query())
        .await
        .unwrap();
    assert_eq!(w.cc.calls.load(Ordering::SeqCst), calls);
    assert!(target_keys(&w.store).is_empty());
}

#[tokio::test]
async fn a_repeated_bind_is_answered_without_the_cloud_controller() {
    let w = world(AppState::Started).await;
    let params = json!({"path": "/internal/metrics"});
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(params.clone()))
        .await
        .unwrap();
    w.cc.down.store(true, Ordering::SeqCst);
    let again = w
        .broker
        .bind(INSTANCE, "b-1", &bind_request(params))
        .await
        .unwrap();
    assert_eq!(again.outcome, Outcome::AlreadyExists);
    let conflict = w
        .broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap_err();
    assert!(matches!(conflict, BrokerError::BindingConflict(_)));
    assert_eq!(w.cc.calls.load(Ordering::SeqCst), 1);
}

#[tokio::test]
async fn a_cloud_controller_failure_records_nothing() {
    let w = world(AppState::Started).await;
    w.cc.down.store(true, Ordering::SeqCst);
    let err = w
        .broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::CloudControllerUnavailable(_)),
        "{err:?}"
    );
    assert_eq!(w.broker.db().binding("b-1").await.unwrap(), None);
    assert!(target_keys(&w.store).is_empty());
}

#[tokio::test]
async fn deprovisioning_a_bound_instance_unbinds_first() {
    let w = world(AppState::Started).await;
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    w.broker
        .deprovision(INSTANCE, &delete_query())
        .await
        .unwrap();
    assert!(target_keys(&w.store).is_empty());
    assert_eq!(w.broker.db().binding("b-1").await.unwrap(), None);
    assert!(matches!(
        w.broker.deprovision(INSTANCE, &delete_query()).await,
        Err(BrokerError::InstanceNotFound(_))
    ));
}

/// The platform gives up on a slow bind and unbinds (orphan mitigation) while the bind is
/// still looking the app up: the unbind succeeds, the bind then records nothing, and the
/// platform's later retry of the same bind works.
#[tokio::test]
async fn an_unbind_during_a_slow_bind_cancels_it_and_a_retry_binds_again() {
    let w = world(AppState::Started).await;
    let gate = Arc::new(tokio::sync::Semaphore::new(0));
    *w.cc.gate.lock().unwrap() = Some(gate.clone());
    let request = bind_request(json!({}));
    let bind = w.broker.bind(INSTANCE, "b-1", &request);
    let unbind_while_looking_up = async {
        while w.cc.calls.load(Ordering::SeqCst) == 0 {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        assert!(
            w.broker
                .db()
                .binding_attempt("b-1")
                .await
                .unwrap()
                .is_some(),
            "the bind is recorded as in progress"
        );
        let unbound = w.broker.unbind(INSTANCE, "b-1", &delete_query()).await;
        gate.add_permits(1);
        unbound
    };
    let (bound, unbound) = tokio::join!(bind, unbind_while_looking_up);
    unbound.expect("the unbind of a bind in progress succeeds (not 410)");
    let err = bound.unwrap_err();
    assert!(matches!(err, BrokerError::BindSuperseded(_)), "{err:?}");
    assert_eq!(w.broker.db().binding("b-1").await.unwrap(), None);
    assert_eq!(w.broker.db().binding_attempt("b-1").await.unwrap(), None);
    assert!(target_keys(&w.store).is_empty(), "{:?}", w.store.raw_keys());
    assert_eq!(
        w.broker
            .metrics()
            .binding_changes
            .with_label_values(&["cancelled"])
            .get(),
        1
    );
    assert_eq!(
        (
            latency_count(&w.broker, "bind"),
            latency_count(&w.broker, "unbind")
        ),
        (0, 0),
        "a cancelled bind wrote nothing and its unbind removed nothing"
    );

    // The platform retries the same bind later: it is a new bind.
    gate.add_permits(1);
    let outcome = w.broker.bind(INSTANCE, "b-1", &request).await.unwrap();
    assert_eq!(outcome.outcome, Outcome::Created);
    assert_eq!(target_keys(&w.store), [key("active")]);
    assert_eq!(w.broker.db().binding_attempt("b-1").await.unwrap(), None);
    assert_eq!(latency_count(&w.broker, "bind"), 1);
}

/// A bind left recorded as in progress by a broker that crashed blocks nothing: the
/// platform's retry of the same bind succeeds.
#[tokio::test]
async fn a_bind_left_in_progress_by_a_crash_does_not_block_its_retry() {
    let w = world(AppState::Started).await;
    let app = AppGuid::parse(APP).unwrap();
    let new = NewBinding {
        binding_id: "b-1".into(),
        instance_id: INSTANCE.into(),
        parameters: "{}".into(),
    };
    w.broker
        .db()
        .start_binding_attempt(&app, &new, "crashed")
        .await
        .unwrap();
    let outcome = w
        .broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(outcome.outcome, Outcome::Created);
    assert_eq!(w.broker.db().binding_attempt("b-1").await.unwrap(), None);
    // A different request for the same id after a crash takes it over too.
    w.broker
        .db()
        .start_binding_attempt(
            &app,
            &NewBinding {
                binding_id: "b-2".into(),
                ..new
            },
            "crashed",
        )
        .await
        .unwrap();
    let outcome = w
        .broker
        .bind(INSTANCE, "b-2", &bind_request(json!({"path": "/m"})))
        .await
        .unwrap();
    assert_eq!(outcome.outcome, Outcome::Created);
}

/// How many times `observe_broker_target_latency_seconds{operation}` was observed.
fn latency_count(broker: &Broker, operation: &str) -> u64 {
    broker
        .metrics()
        .target_latency
        .with_label_values(&[operation])
        .get_sample_count()
}

#[tokio::test]
async fn the_target_latency_is_observed_once_per_file_written_or_removed() {
    let w = world(AppState::Started).await;
    let counts = |w: &World| {
        (
            latency_count(&w.broker, "bind"),
            latency_count(&w.broker, "unbind"),
        )
    };
    assert_eq!(counts(&w), (0, 0));

    w.cc.down.store(true, Ordering::SeqCst);
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap_err();
    assert_eq!(counts(&w), (0, 0), "a bind the Cloud Controller failed");
    w.cc.down.store(false, Ordering::SeqCst);
    w.store.fail_next(1);
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap_err();
    assert_eq!(counts(&w), (0, 0), "a bind whose store write failed");

    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(counts(&w), (1, 0), "a bind that wrote the file");
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(counts(&w), (1, 0), "a repeated bind writes nothing");
    w.broker
        .bind(INSTANCE, "b-2", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(counts(&w), (2, 0), "a second binding rewrites the file");

    w.broker
        .unbind(INSTANCE, "b-2", &delete_query())
        .await
        .unwrap();
    assert_eq!(counts(&w), (2, 0), "an unbind that leaves the file");
    w.broker
        .unbind(INSTANCE, "b-1", &delete_query())
        .await
        .unwrap();
    assert_eq!(counts(&w), (2, 1), "the last unbind removed the files");
    w.broker
        .unbind(INSTANCE, "b-1", &delete_query())
        .await
        .unwrap_err();
    assert_eq!(counts(&w), (2, 1), "an unbind of an unknown binding");
}

#[tokio::test]
async fn a_stopped_app_bound_observes_the_bind_latency_too() {
    let w = world(AppState::Stopped).await;
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(target_keys(&w.store), [key("inactive")]);
    assert_eq!(latency_count(&w.broker, "bind"), 1);
}

// Scrape credentials (issue 14): the `auth` parameter, the token, the bucket document.

const SCRAPE_KEY: &str = "0123456789abcdef0123456789abcdef";

async fn world_with_key(state: AppState) -> World {
    let mut w = world(state).await;
    w.broker = w
        .broker
        .with_scrape_token_key(Some(ScrapeTokenKey::parse(SCRAPE_KEY).unwrap()));
    w
}

fn credentials_key() -> String {
    format!("credentials/{APP}.json")
}

/// The app's credentials document, parsed.
async fn document(store: &MemoryStore) -> Option<CredentialsDocument> {
    let app = AppGuid::parse(APP).unwrap();
    let (body, _) = store.read_credentials(&app).await.unwrap()?;
    Some(CredentialsDocument::parse(&body, &app).unwrap())
}

fn listed(doc: &CredentialsDocument) -> Vec<(&str, ScrapeAuth)> {
    doc.bindings
        .iter()
        .map(|b| (b.binding_id.as_str(), b.auth))
        .collect()
}

#[tokio::test]
async fn a_default_bind_answers_the_app_guid_authorization_and_writes_no_document() {
    let w = world_with_key(AppState::Started).await;
    let bound = w
        .broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    assert_eq!(
        bound.credentials,
        json!({
            "auth": "app_guid",
            "job": "web-shop",
            "metrics_path": "/metrics",
            "authorization_header": format!("Bearer {APP}"),
        })
    );
    assert_eq!(target_keys(&w.store), [key("active")]);
}

#[tokio::test]
async fn a_token_bind_answers_the_derived_token_and_the_document_lists_it() {
    let w = world_with_key(AppState::Started).await;
    let bound = w
        .broker
        .bind(
            INSTANCE,
            "b-1",
            &bind_request(json!({"auth": "token", "path": "/internal/metrics"})),
        )
        .await
        .unwrap();
    let token = ScrapeTokenKey::parse(SCRAPE_KEY)
        .unwrap()
        .token_for("b-1")
        .expose()
        .to_owned();
    assert_eq!(
        bound.credentials,
        json!({
            "auth": "token",
            "job": "web-shop",
            "metrics_path": "/internal/metrics",
            "token": token,
            "authorization_header": format!("Bearer {token}"),
        })
    );
    assert_eq!(target_keys(&w.store), [key("active"), credentials_key()]);
    let doc = document(&w.store).await.unwrap();
    assert_eq!(listed(&doc), [("b-1", ScrapeAuth::Token)]);
    for k in w.store.raw_keys() {
        let body = w.store.read_raw(&k).unwrap();
        assert!(
            !String::from_utf8_lossy(&body).contains(&token),
            "the token is in {k}"
        );
    }
}

#[tokio::test]
async fn an_identical_rebind_and_a_fetch_answer_the_same_credentials() {
    let w = world_with_key(AppState::Started).await;
    let request = bind_request(json!({"auth": "token"}));
    let first = w.broker.bind(INSTANCE, "b-1", &request).await.unwrap();
    // The Cloud Controller is not asked again: the credentials come from the token key
    // and the stored target file.
    w.cc.down.store(true, Ordering::SeqCst);
    let again = w.broker.bind(INSTANCE, "b-1", &request).await.unwrap();
    assert_eq!(again.outcome, Outcome::AlreadyExists);
    assert_eq!(again.credentials, first.credentials);
    let fetched = w.broker.fetch_binding(INSTANCE, "b-1").await.unwrap();
    assert_eq!(fetched["credentials"], first.credentials);
    assert_eq!(fetched["parameters"], json!({"auth": "token"}));
    // A new binding (a rebind) gets another token.
    w.cc.down.store(false, Ordering::SeqCst);
    let other = w.broker.bind(INSTANCE, "b-2", &request).await.unwrap();
    assert_ne!(other.credentials["token"], first.credentials["token"]);
}

#[tokio::test]
async fn a_token_bind_without_a_key_is_refused_naming_the_setting_and_records_nothing() {
    let w = world(AppState::Started).await;
    let err = w
        .broker
        .bind(INSTANCE, "b-1", &bind_request(json!({"auth": "token"})))
        .await
        .unwrap_err();
    assert!(
        matches!(err, BrokerError::ScrapeTokensUnavailable),
        "{err:?}"
    );
    assert!(err.to_string().contains("SCRAPE_TOKEN_KEY"), "{err}");
    assert_eq!(
        crate::osb::reply_for(crate::osb::Operation::Bind, &err).status,
        422
    );
    assert!(target_keys(&w.store).is_empty());
    assert!(w.broker.db().binding("b-1").await.unwrap().is_none());
}

#[tokio::test]
async fn unbinding_one_of_two_bindings_keeps_the_document_of_the_other() {
    let w = world_with_key(AppState::Started).await;
    for (binding, auth) in [("b-1", "token"), ("b-2", "app_guid"), ("b-3", "token")] {
        w.broker
            .bind(INSTANCE, binding, &bind_request(json!({"auth": auth})))
            .await
            .unwrap();
    }
    let doc = document(&w.store).await.unwrap();
    assert_eq!(
        listed(&doc),
        [
            ("b-1", ScrapeAuth::Token),
            ("b-2", ScrapeAuth::AppGuid),
            ("b-3", ScrapeAuth::Token)
        ]
    );
    assert_eq!(doc.oldest().binding_id, "b-1");

    w.broker
        .unbind(INSTANCE, "b-1", &delete_query())
        .await
        .unwrap();
    let doc = document(&w.store).await.unwrap();
    assert_eq!(
        listed(&doc),
        [("b-2", ScrapeAuth::AppGuid), ("b-3", ScrapeAuth::Token)]
    );
    assert!(w.store.contains_raw(&key("active")), "the target went");

    w.broker
        .unbind(INSTANCE, "b-3", &delete_query())
        .await
        .unwrap();
    assert_eq!(
        document(&w.store).await,
        None,
        "no token binding is left, yet the document stays"
    );
    assert_eq!(target_keys(&w.store), [key("active")]);

    w.broker
        .unbind(INSTANCE, "b-2", &delete_query())
        .await
        .unwrap();
    assert!(target_keys(&w.store).is_empty());
}

#[tokio::test]
async fn unbinding_the_last_token_binding_removes_the_target_and_the_document() {
    let w = world_with_key(AppState::Started).await;
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({"auth": "token"})))
        .await
        .unwrap();
    w.broker
        .bind(INSTANCE, "b-2", &bind_request(json!({"auth": "token"})))
        .await
        .unwrap();
    w.broker
        .unbind(INSTANCE, "b-2", &delete_query())
        .await
        .unwrap();
    assert_eq!(
        listed(&document(&w.store).await.unwrap()),
        [("b-1", ScrapeAuth::Token)]
    );
    let generation_before = record(&w.store).await.unwrap().0;
    w.broker
        .unbind(INSTANCE, "b-1", &delete_query())
        .await
        .unwrap();
    assert!(target_keys(&w.store).is_empty(), "{:?}", w.store.raw_keys());
    assert!(record(&w.store).await.unwrap().0 > generation_before);
}

#[tokio::test]
async fn the_document_is_written_before_the_target_file() {
    let w = world_with_key(AppState::Started).await;
    // The first store call of the bind (the document's write) fails: nothing is recorded
    // and no target file appears without its document.
    w.store.fail_next(1);
    let err = w
        .broker
        .bind(INSTANCE, "b-1", &bind_request(json!({"auth": "token"})))
        .await
        .unwrap_err();
    assert!(matches!(err, BrokerError::StoreUnavailable(_)), "{err:?}");
    assert!(target_keys(&w.store).is_empty(), "{:?}", w.store.raw_keys());
    assert!(w.broker.db().binding("b-1").await.unwrap().is_none());
}

#[tokio::test]
async fn changing_the_document_publishes_the_writers_record() {
    let w = world_with_key(AppState::Started).await;
    w.broker
        .bind(INSTANCE, "b-1", &bind_request(json!({})))
        .await
        .unwrap();
    w.broker
        .bind(INSTANCE, "b-2", &bind_request(json!({"auth": "token"})))
        .await
        .unwrap();
    let before = record(&w.store).await.unwrap().0;
    // Only the document changes when b-2 goes: the record still moves on.
    w.broker
        .unbind(INSTANCE, "b-2", &delete_query())
        .await
        .unwrap();
    assert_eq!(document(&w.store).await, None);
    assert_eq!(record(&w.store).await.unwrap().0, before + 1);
}
