//! Failures of what the broker depends on: a bind fails cleanly (a 5xx, no binding row, no
//! file), so the platform's orphan-mitigation unbind finds a consistent state; an unbind
//! never needs the Cloud Controller.

use gds_store::TargetState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::*;

on_both_databases!(
    a_failing_cloud_controller_fails_bind_cleanly_but_unbind_still_succeeds,
    a_failing_store_fails_bind_cleanly_and_says_nothing_internal,
);

async fn a_failing_cloud_controller_fails_bind_cleanly_but_unbind_still_succeeds(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    assert_eq!(
        f.bind("si-1", "b-1", WEB_SHOP, Value::Null).await.0,
        StatusCode::CREATED
    );

    // From now on every Cloud Controller request answers 500.
    f.sim_control(
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3", "status": 500, "count": 0}),
    )
    .await;
    let (status, body) = f.bind("si-1", "b-2", API_APP, Value::Null).await;
    assert!(status.is_server_error(), "{status}: {body}");
    assert!(body["description"].is_string(), "{body}");
    assert!(
        !body.to_string().contains("/v3"),
        "nothing internal reaches the caller: {body}"
    );
    let db = f.db().await;
    assert_eq!(db.binding("b-2").await.unwrap(), None, "no binding row");
    assert_eq!(f.file(TargetState::Active, API_APP).await, None, "no file");
    assert_eq!(
        send(f.osb(Method::GET, &binding_path("si-1", "b-2")))
            .await
            .0,
        StatusCode::NOT_FOUND
    );
    // The platform's orphan mitigation then unbinds: nothing to do.
    assert_eq!(f.unbind("si-1", "b-2").await, (StatusCode::GONE, json!({})));

    // An existing binding still unbinds, from the database alone.
    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::OK, json!({})));
    assert!(f.bucket_keys().await.is_empty());
    assert_eq!(db.binding("b-1").await.unwrap(), None);

    // And a bound app the Cloud Controller has since deleted unbinds too.
    f.sim_control(Method::DELETE, "/sim/faults", json!({}))
        .await;
    assert_eq!(
        f.bind("si-1", "b-3", API_APP, Value::Null).await.0,
        StatusCode::CREATED
    );
    f.sim_control(Method::DELETE, &format!("/sim/apps/{API_APP}"), json!({}))
        .await;
    assert_eq!(f.unbind("si-1", "b-3").await, (StatusCode::OK, json!({})));
    assert!(f.bucket_keys().await.is_empty());
}

async fn a_failing_store_fails_bind_cleanly_and_says_nothing_internal(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    // The bucket disappears (e.g. a misconfiguration): every write fails.
    f.store
        .client()
        .delete_bucket()
        .bucket(f.store.bucket())
        .send()
        .await
        .expect("deleting the empty test bucket");

    let (status, body) = f.bind("si-1", "b-1", WEB_SHOP, Value::Null).await;
    assert!(status.is_server_error(), "{status}: {body}");
    assert!(
        !body.to_string().contains(f.store.bucket()),
        "nothing internal reaches the caller: {body}"
    );
    let db = f.db().await;
    assert_eq!(db.binding("b-1").await.unwrap(), None, "no binding row");
    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::GONE, json!({})));

    // Once the bucket is back, the platform's retry succeeds.
    f.store
        .create_bucket_if_missing()
        .await
        .expect("recreating the test bucket");
    assert_eq!(
        f.bind("si-1", "b-1", WEB_SHOP, Value::Null).await.0,
        StatusCode::CREATED
    );
    assert!(f.file(TargetState::Active, WEB_SHOP).await.is_some());
}
