//! The bind budget (`BROKER_OPERATION_TIMEOUT_SECONDS`) and the platform's orphan
//! mitigation: Cloud Foundry gives up on a broker call after its broker client timeout
//! (60 s by default) and then unbinds the binding it could not create. A bind must answer
//! within its budget, slow Cloud Controller and long `Retry-After` included, and an unbind
//! that arrives while its bind still runs must leave no binding and no file behind,
//! whatever the order in which the two complete.
//!
//! The tests configure a budget of a few seconds so that they run fast; the "platform" is
//! the test's HTTP client, whose request timeouts stand for the platform's.

use std::time::Duration;

use gds_store::TargetState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::*;

on_both_databases!(
    a_slow_cloud_controller_fails_the_bind_within_its_budget_and_records_nothing,
    a_retry_after_longer_than_the_budget_fails_the_bind_at_once_and_records_nothing,
    an_unbind_at_the_platforms_timeout_cancels_the_slow_bind_and_a_retry_binds_again,
    a_slow_bind_that_completes_before_the_orphan_unbind_is_undone_by_it,
);

/// The broker's budget in these tests.
const BUDGET_SECONDS: u64 = 3;

/// How long the test's client waits for a bind with a budget of [`BUDGET_SECONDS`]: the
/// budget plus generous slack for a loaded machine, far below the Cloud Controller delays
/// injected (a broker that waits those out fails the test).
const CLIENT_TIMEOUT: Duration = Duration::from_secs(BUDGET_SECONDS + 7);

async fn fixture(db: Database, budget_seconds: u64) -> Fixture {
    let f = Fixture::start_with(
        db,
        Options {
            env: vec![(
                "BROKER_OPERATION_TIMEOUT_SECONDS".into(),
                budget_seconds.to_string(),
            )],
            ..Options::default()
        },
    )
    .await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    f
}

/// A bind as the platform sends it, given up on after `timeout`.
async fn bind_within(f: &Fixture, binding: &str, timeout: Duration) -> (StatusCode, Value) {
    send(
        f.osb(Method::PUT, &binding_path("si-1", binding))
            .json(&bind_body(WEB_SHOP, Value::Null))
            .timeout(timeout),
    )
    .await
}

/// Nothing of `binding` is left: no binding row, no bind in progress, no file.
async fn assert_nothing_recorded(f: &Fixture, binding: &str) {
    let db = f.db().await;
    assert_eq!(db.binding(binding).await.unwrap(), None, "no binding row");
    assert_eq!(
        db.binding_attempt(binding).await.unwrap(),
        None,
        "no bind in progress"
    );
    assert_eq!(f.file(TargetState::Active, WEB_SHOP).await, None, "no file");
    assert!(
        f.bucket_keys().await.is_empty(),
        "{:?}",
        f.bucket_keys().await
    );
    db.close().await;
}

/// A 503 with an OSB error body whose description contains `expected`.
fn assert_clean_unavailable(status: StatusCode, body: &Value, expected: &str) {
    assert_eq!(status, StatusCode::SERVICE_UNAVAILABLE, "{body}");
    let description = body["description"].as_str().unwrap_or_default();
    assert!(description.contains(expected), "{body}");
    assert!(
        description.contains("nothing was recorded"),
        "the description says nothing was recorded: {body}"
    );
    assert!(
        !body.to_string().contains("/v3"),
        "nothing internal: {body}"
    );
}

async fn a_slow_cloud_controller_fails_the_bind_within_its_budget_and_records_nothing(
    db: Database,
) {
    let f = fixture(db, BUDGET_SECONDS).await;
    // Every Cloud Controller request answers after 30 s (a fault campaign saw binds wait
    // 90-120 s for such a Cloud Controller).
    f.sim_control(
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3", "delay_ms": 30_000, "count": 0}),
    )
    .await;
    let (status, body) = bind_within(&f, "b-1", CLIENT_TIMEOUT).await;
    assert_clean_unavailable(status, &body, "did not answer in time");
    assert_nothing_recorded(&f, "b-1").await;
    // The platform's orphan mitigation: nothing to undo.
    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::GONE, json!({})));

    // Once the Cloud Controller is back, the platform's retry binds.
    f.sim_control(Method::DELETE, "/sim/faults", json!({}))
        .await;
    assert_eq!(
        bind_within(&f, "b-1", CLIENT_TIMEOUT).await.0,
        StatusCode::CREATED
    );
    assert!(f.file(TargetState::Active, WEB_SHOP).await.is_some());
}

async fn a_retry_after_longer_than_the_budget_fails_the_bind_at_once_and_records_nothing(
    db: Database,
) {
    let f = fixture(db, BUDGET_SECONDS).await;
    f.sim_control(
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "status": 429, "retry_after": 30, "count": 0}),
    )
    .await;
    let (status, body) = bind_within(&f, "b-1", CLIENT_TIMEOUT).await;
    assert_clean_unavailable(status, &body, "asks it to wait 30 s");
    assert_nothing_recorded(&f, "b-1").await;
    // The `Retry-After` was not waited for, so the request was not repeated either.
    let faults = f.sim_control(Method::GET, "/sim/faults", json!({})).await;
    assert_eq!(faults["faults"][0]["hits"], 1, "{faults}");
    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::GONE, json!({})));
}

async fn an_unbind_at_the_platforms_timeout_cancels_the_slow_bind_and_a_retry_binds_again(
    db: Database,
) {
    // A budget the slow Cloud Controller stays within, and a platform whose timeout
    // passes first (an operator's lower `broker_client_timeout_seconds`, or time lost
    // before the request reached the broker): the bind is still waiting for the Cloud
    // Controller when the platform gives up and unbinds.
    let f = fixture(db, 20).await;
    f.sim_control(
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "delay_ms": 4_000, "count": 1}),
    )
    .await;
    let bind = tokio::spawn(
        f.osb(Method::PUT, &binding_path("si-1", "b-1"))
            .json(&bind_body(WEB_SHOP, Value::Null))
            .send(),
    );
    // The platform's timeout passes while the bind waits for the Cloud Controller (it
    // has recorded itself as in progress by then).
    let db = f.db().await;
    for _ in 0..100 {
        if db.binding_attempt("b-1").await.unwrap().is_some() {
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(
        db.binding_attempt("b-1").await.unwrap().is_some(),
        "the bind is recorded as in progress"
    );
    db.close().await;
    // Orphan mitigation: the unbind of a binding whose bind is still running is not
    // answered 410 and forgotten.
    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::OK, json!({})));
    // The bind then gets its Cloud Controller answer, and records nothing.
    let response = bind.await.unwrap().expect("the bind answers");
    let status = response.status();
    let body: Value = response.json().await.expect("a JSON body");
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert_eq!(body["error"], "ConcurrencyError", "{body}");
    assert_nothing_recorded(&f, "b-1").await;
    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::GONE, json!({})));

    // The platform (or the user) binds the same binding again: it binds.
    assert_eq!(
        bind_within(&f, "b-1", CLIENT_TIMEOUT).await.0,
        StatusCode::CREATED
    );
    assert!(f.file(TargetState::Active, WEB_SHOP).await.is_some());
    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::OK, json!({})));
    assert_nothing_recorded(&f, "b-1").await;
}

async fn a_slow_bind_that_completes_before_the_orphan_unbind_is_undone_by_it(db: Database) {
    // The other completion order: the slow bind answers (within its budget), and only
    // then does the platform's orphan-mitigation unbind arrive.
    let f = fixture(db, BUDGET_SECONDS).await;
    f.sim_control(
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "delay_ms": 1_000, "count": 1}),
    )
    .await;
    assert_eq!(
        bind_within(&f, "b-1", CLIENT_TIMEOUT).await.0,
        StatusCode::CREATED
    );
    assert!(f.file(TargetState::Active, WEB_SHOP).await.is_some());
    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::OK, json!({})));
    assert_nothing_recorded(&f, "b-1").await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_oversized_body_is_a_413_with_an_osb_error_body() {
    let f = fixture(Database::Sqlite, BUDGET_SECONDS).await;
    let mut body = bind_body(WEB_SHOP, Value::Null);
    body["padding"] = json!("x".repeat(10 * 1024 * 1024));
    let (status, reply) = send(f.osb(Method::PUT, &binding_path("si-1", "b-1")).json(&body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
    assert!(
        reply["description"]
            .as_str()
            .is_some_and(|d| d.contains("larger than 256 KiB")),
        "{reply}"
    );
    assert_nothing_recorded(&f, "b-1").await;
    // Provision too (every OSB body goes through the same limit).
    let mut body = provision_body("space-1");
    body["padding"] = json!("x".repeat(300 * 1024));
    let (status, reply) = send(f.osb(Method::PUT, &instance_path("si-2")).json(&body)).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{reply}");
}
