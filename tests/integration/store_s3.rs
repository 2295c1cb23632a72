//! The S3 target store against a real S3-compatible server (moto, started by
//! `scripts/s3-test-server.sh`): the shared conformance suite, then what only S3 has
//! (key prefixes, the raw key layout, error classification).
//!
//! Every test uses its own fresh bucket, so tests run concurrently. The helpers here are
//! `pub` for other integration tests that need a bucket.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use gds_store::conformance::{Backend, new_app};
use gds_store::{ETag, S3Config, S3Store, StoreError, StoredTarget, TargetState, TargetStore};

/// The S3-compatible test server's endpoint, from `GDS_TEST_S3_ENDPOINT`.
pub fn s3_endpoint() -> String {
    std::env::var("GDS_TEST_S3_ENDPOINT")
        .ok()
        .filter(|endpoint| !endpoint.is_empty())
        .unwrap_or_else(|| {
            panic!(
                "GDS_TEST_S3_ENDPOINT is not set: run the tests through `make test` \
                 (scripts/s3-test-server.sh starts the S3-compatible server), e.g. \
                 `scripts/s3-test-server.sh cargo test -p gds-tests --test integration`"
            )
        })
}

/// A valid bucket name (lowercase, 3–63 characters) that no other test uses.
pub fn unique_bucket_name() -> String {
    static COUNTER: AtomicUsize = AtomicUsize::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("the clock is after 1970")
        .as_nanos();
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    format!("t-{}-{nanos}-{n}", std::process::id())
}

/// The configuration of `bucket` on the test server (which accepts any keys).
pub fn test_s3_config(bucket: &str) -> S3Config {
    S3Config::new(bucket, "us-east-1")
        .with_endpoint(s3_endpoint())
        .with_credentials("test", "test")
}

/// A store on a fresh, empty bucket of the test server, under `prefix`.
pub async fn fresh_s3_store(prefix: &str) -> S3Store {
    let config = test_s3_config(&unique_bucket_name()).with_prefix(prefix);
    let store = S3Store::new(config, |_| None).expect("a valid test configuration");
    store
        .create_bucket_if_missing()
        .await
        .unwrap_or_else(|e| panic!("creating the test bucket {}: {e}", store.bucket()));
    store
}

/// Every key in the store's bucket, sorted.
async fn bucket_keys(store: &S3Store) -> Vec<String> {
    let listing = store
        .client()
        .list_objects_v2()
        .bucket(store.bucket())
        .send()
        .await
        .expect("listing the bucket");
    let mut keys: Vec<String> = listing
        .contents()
        .iter()
        .filter_map(|o| o.key().map(str::to_owned))
        .collect();
    keys.sort();
    keys
}

/// An [`S3Store`] under a prefix, with raw access through its client.
struct S3Backend(S3Store);

impl Backend for S3Backend {
    fn store(&self) -> &dyn TargetStore {
        &self.0
    }

    async fn put_raw(&self, key: &str, body: &[u8]) {
        let key = format!("{}{key}", self.0.prefix());
        self.0
            .client()
            .put_object()
            .bucket(self.0.bucket())
            .key(&key)
            .body(body.to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("raw put of {key}: {e:?}"));
    }

    async fn exists_raw(&self, key: &str) -> bool {
        let key = format!("{}{key}", self.0.prefix());
        match self
            .0
            .client()
            .head_object()
            .bucket(self.0.bucket())
            .key(&key)
            .send()
            .await
        {
            Ok(_) => true,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_not_found()) => false,
            Err(e) => panic!("raw head of {key}: {e:?}"),
        }
    }
}

mod conformance {
    use super::*;

    // Under a prefix, so that the prefix is exercised by every check.
    gds_store::target_store_conformance_tests!(S3Backend(fresh_s3_store("eu-west-1/").await));
}

#[tokio::test]
async fn objects_use_the_cf_app_discovery_key_layout_with_a_json_content_type() {
    let store = fresh_s3_store("eu-west-1").await;
    let app = new_app();
    store
        .write_app(TargetState::Active, &app, "[]".into())
        .await
        .unwrap();
    assert_eq!(
        bucket_keys(&store).await,
        [format!("eu-west-1/active/{app}.json")]
    );

    store
        .move_app(TargetState::Active, TargetState::Inactive, &app)
        .await
        .unwrap();
    let key = format!("eu-west-1/inactive/{app}.json");
    assert_eq!(bucket_keys(&store).await, std::slice::from_ref(&key));
    let head = store
        .client()
        .head_object()
        .bucket(store.bucket())
        .key(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(head.content_type(), Some("application/json"));
    assert_eq!(
        head.e_tag().map(ETag::from_store),
        Some(ETag::of(b"[]")),
        "the object's ETag is the MD5 of its content"
    );
}

#[tokio::test]
async fn stores_under_different_prefixes_of_one_bucket_do_not_see_each_other() {
    let west1 = fresh_s3_store("eu-west-1/").await;
    let bucket = west1.bucket().to_owned();
    let open =
        |prefix: &str| S3Store::new(test_s3_config(&bucket).with_prefix(prefix), |_| None).unwrap();
    let west2 = open("eu-west-2/");
    let unprefixed = open("");

    let (a, b, c) = (new_app(), new_app(), new_app());
    let etag_a = west1
        .write_app(TargetState::Active, &a, "[1]".into())
        .await
        .unwrap();
    let etag_b = west2
        .write_app(TargetState::Active, &b, "[2]".into())
        .await
        .unwrap();
    let etag_c = unprefixed
        .write_app(TargetState::Active, &c, "[3]".into())
        .await
        .unwrap();

    for (store, app, etag) in [
        (&west1, a, etag_a),
        (&west2, b, etag_b),
        (&unprefixed, c, etag_c),
    ] {
        let listed = store.list_apps(TargetState::Active).await.unwrap();
        let expected = [StoredTarget {
            app_guid: app,
            state: TargetState::Active,
            etag,
        }];
        assert_eq!(listed, expected, "{store:?} sees another prefix's files");
    }
}

#[tokio::test]
async fn a_missing_bucket_fails_listing_and_check_as_a_rejection_not_as_empty() {
    let config = test_s3_config(&unique_bucket_name());
    let store = S3Store::new(config, |_| None).unwrap();

    let listed = store.list_apps(TargetState::Active).await;
    match &listed {
        Err(e @ StoreError::Rejected { .. }) => {
            assert!(!e.is_transient());
            assert!(e.to_string().contains(store.bucket()), "{e}");
        }
        other => panic!("listing a missing bucket must be Rejected, got {other:?}"),
    }
    let checked = store.check().await;
    assert!(
        matches!(checked, Err(StoreError::Rejected { .. })),
        "checking a missing bucket must be Rejected, got {checked:?}"
    );
}

#[tokio::test]
async fn an_unreachable_endpoint_is_a_transient_failure() {
    // Port 1 on loopback: nothing listens there, so connections are refused at once.
    let config = S3Config::new(unique_bucket_name(), "us-east-1")
        .with_endpoint("http://127.0.0.1:1")
        .with_credentials("test", "test");
    let store = S3Store::new(config, |_| None).unwrap();
    let checked = store.check().await;
    match &checked {
        Err(e @ StoreError::Unavailable { .. }) => assert!(e.is_transient()),
        other => panic!("an unreachable endpoint must be Unavailable, got {other:?}"),
    }
}

#[tokio::test]
async fn creating_a_bucket_outside_us_east_1_is_idempotent() {
    let config = S3Config {
        region: "eu-west-2".into(),
        ..test_s3_config(&unique_bucket_name())
    };
    let store = S3Store::new(config, |_| None).unwrap();
    store.create_bucket_if_missing().await.unwrap();
    store
        .create_bucket_if_missing()
        .await
        .expect("creating an existing bucket of ours again is Ok");
    store.check().await.unwrap();
    assert!(
        store
            .list_apps(TargetState::Inactive)
            .await
            .unwrap()
            .is_empty()
    );
}

/// Every request the store's client sends is counted by operation, at the HTTP level:
/// what S3 bills (`get_not_modified` is a conditional read answered 304).
#[tokio::test]
async fn the_store_counts_its_s3_requests_by_operation() {
    use gds_store::{RecordChange, S3Operation};
    let store = fresh_s3_store("").await;
    let requests = store.s3_requests().expect("an S3 store counts");
    let before = requests.snapshot();
    let app = new_app();
    let body = gds_store::Bytes::from_static(b"[]");
    store
        .write_app(TargetState::Active, &app, body)
        .await
        .unwrap();
    store
        .move_app(TargetState::Active, TargetState::Inactive, &app)
        .await
        .unwrap();
    store.list_apps(TargetState::Inactive).await.unwrap();
    gds_store::record::publish(&store, "test").await.unwrap();
    let etag = match store.read_record_if_changed(None).await.unwrap() {
        RecordChange::Changed(_, etag) => etag,
        other => panic!("{other:?}"),
    };
    for _ in 0..3 {
        assert_eq!(
            store.read_record_if_changed(Some(&etag)).await.unwrap(),
            RecordChange::Unchanged
        );
    }
    store.check().await.unwrap();
    let counted: Vec<(S3Operation, u64)> = requests
        .snapshot()
        .into_iter()
        .zip(before)
        .map(|((operation, after), (_, before))| (operation, after - before))
        .collect();
    use S3Operation::*;
    assert_eq!(
        counted,
        vec![
            // The listing of inactive/, and publish's listing of active/.
            (List, 2),
            // publish's read of the (absent) record, then the unconditional poll.
            (Get, 2),
            (GetNotModified, 3),
            // The file, and the record.
            (Put, 2),
            (Copy, 1),
            (Delete, 1),
            (Head, 1),
            (Other, 0),
        ]
    );
}

/// Two brokers and an updater (three clients, each with its own coalescing publisher)
/// change `active/` and publish at the same time, and one of them loses the store half
/// way (its publications fail, its background retries take over). Once they are done,
/// the record counts exactly what `active/` holds: racing writers never leave it behind,
/// so sd-sync, which lists only when the record changes, sees every change.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn racing_writers_and_a_failed_publication_never_leave_the_record_behind_the_bucket() {
    use std::sync::Arc;
    use std::time::Duration;

    use gds_store::{RecordPublisher, WritersRecord};

    const TASKS: usize = 8;
    const CHANGES: usize = 6;
    let reference = fresh_s3_store("").await;
    let bucket = reference.bucket().to_owned();
    let proxy = crate::sd_sync::FlakyProxy::start(true).await;
    let writer = |endpoint: String, name: &'static str| {
        let config = test_s3_config(&bucket).with_endpoint(endpoint);
        let store: Arc<dyn TargetStore> = Arc::new(S3Store::new(config, |_| None).unwrap());
        (store.clone(), RecordPublisher::new(store, name))
    };
    let writers = [
        writer(s3_endpoint(), "broker"),
        writer(s3_endpoint(), "broker"),
        writer(proxy.url.clone(), "updater"),
    ];
    let mut race = tokio::task::JoinSet::new();
    for (w, (store, publisher)) in writers.iter().enumerate() {
        for t in 0..TASKS {
            let (store, publisher) = (store.clone(), publisher.clone());
            race.spawn(async move {
                let mut mine = Vec::new();
                for change in 0..CHANGES {
                    // Mostly writes; every third change removes one of this task's files.
                    if change % 3 == 2 {
                        if let Some(app) = mine.pop() {
                            let _ = store.remove_app(TargetState::Active, &app).await;
                        }
                    } else {
                        let app = new_app();
                        let body = gds_store::Bytes::from(format!("[{w},{t},{change}]"));
                        if store
                            .write_app(TargetState::Active, &app, body)
                            .await
                            .is_ok()
                        {
                            mine.push(app);
                        }
                    }
                    let _ = publisher.publish_after_change().await;
                }
            });
        }
    }
    let outage = async {
        tokio::time::sleep(Duration::from_millis(300)).await;
        proxy.set_up(false);
        tokio::time::sleep(Duration::from_millis(1500)).await;
        proxy.set_up(true);
    };
    let ((), results) = tokio::join!(outage, race.join_all());
    assert_eq!(results.len(), 3 * TASKS);
    // Whatever failed is retried in the background; wait for the publishers to be done.
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while writers.iter().any(|(_, publisher)| publisher.pending()) {
        assert!(
            std::time::Instant::now() < deadline,
            "publications still pending"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let listed = reference
        .list_apps(TargetState::Active)
        .await
        .unwrap()
        .len();
    let (body, _) = reference.read_record().await.unwrap().expect("a record");
    let record = WritersRecord::parse(&body).unwrap();
    assert_eq!(
        record.active_count, listed as u64,
        "the record is behind the bucket: {record:?}"
    );
    assert!(listed > 0);

    // The failure case alone: the updater's change is stored, its publication fails, and
    // nobody else publishes. Its background retry brings the record up to date.
    let (store, publisher) = &writers[2];
    let app = new_app();
    store
        .write_app(
            TargetState::Active,
            &app,
            gds_store::Bytes::from_static(b"[]"),
        )
        .await
        .unwrap();
    proxy.set_up(false);
    assert!(publisher.publish_after_change().await.is_err());
    assert!(publisher.pending());
    proxy.set_up(true);
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while publisher.pending() {
        assert!(std::time::Instant::now() < deadline, "never retried");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (body, _) = reference.read_record().await.unwrap().expect("a record");
    let retried = WritersRecord::parse(&body).unwrap();
    assert_eq!(retried.active_count, listed as u64 + 1, "{retried:?}");
    assert_eq!(retried.writer, "updater");
}
