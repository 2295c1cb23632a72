//! The Cloud Controller client against the real `cf-sim` binary.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use gds_cf::{CfClient, CfConfig, UaaCredentials};
use gds_service::Secret;
use gds_targets::{AppGuid, BindingParams, ModelConfig, build_target_file};
use serde_json::{Value, json};

use crate::harness::{Running, start_sim};

pub(crate) fn sim(args: &[&str]) -> Running {
    start_sim(args)
}

pub(crate) fn client_for(sim: &Running) -> CfClient {
    let mut config = CfConfig::new(
        sim.base_url.parse().unwrap(),
        UaaCredentials::Password {
            client_id: "cf".into(),
            client_secret: Secret::new(""),
            username: "admin".into(),
            password: Secret::new("admin"),
        },
    );
    config.verify_token_signature = true;
    CfClient::new(config).unwrap()
}

pub(crate) async fn control(
    sim: &Running,
    method: reqwest::Method,
    path: &str,
    body: Value,
) -> Value {
    let response = reqwest::Client::new()
        .request(method, format!("{}{path}", sim.base_url))
        .json(&body)
        .send()
        .await
        .unwrap();
    assert!(
        response.status().is_success(),
        "{path}: {}",
        response.status()
    );
    response.json().await.unwrap_or(Value::Null)
}

pub(crate) async fn sim_requests(sim: &Running) -> Value {
    reqwest::get(format!("{}/sim/requests", sim.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Every app GUID the simulator holds, read straight from its v3 API.
pub(crate) async fn all_guids(sim: &Running) -> BTreeSet<AppGuid> {
    crate::harness::sim_app_guids(&sim.base_url)
        .await
        .iter()
        .map(|g| AppGuid::parse(g).unwrap())
        .collect()
}

#[tokio::test]
async fn ten_thousand_apps_in_a_thousand_spaces_take_at_most_twenty_requests() {
    let sim = sim(&["--seed-apps", "10000", "--seed-spaces", "1000"]);
    let wanted = all_guids(&sim).await;
    assert_eq!(wanted.len(), 10_000);
    control(&sim, reqwest::Method::DELETE, "/sim/requests", json!({})).await;

    let client = client_for(&sim);
    let snapshot = client.apps_info(&wanted).await.unwrap();

    assert_eq!(
        snapshot.apps.len(),
        10_000,
        "failed: {:?}",
        snapshot.failed.iter().next()
    );
    assert!(snapshot.missing.is_empty() && snapshot.failed.is_empty());
    let counts = sim_requests(&sim).await;
    let total = counts["total_cc"].as_u64().unwrap() + counts["total_uaa"].as_u64().unwrap();
    eprintln!(
        "10,000 apps fetched with {total} requests: {}",
        counts["by_endpoint"]
    );
    assert!(total <= 20, "{total} requests: {counts}");
    // The client's own count agrees with the server's (transport failures, status 0, never
    // reached the server: an idle keep-alive connection closed under our feet is retried).
    let stats = client.request_stats();
    let answered: u64 = stats
        .by_endpoint
        .iter()
        .filter(|((_, status), _)| *status != 0)
        .map(|(_, n)| n)
        .sum();
    assert_eq!(answered, counts["total_cc"].as_u64().unwrap(), "{stats:?}");

    // Everything needed to build every target file is there.
    let model = ModelConfig {
        paas_domain: "apps.example.com".into(),
    };
    let files: usize = snapshot
        .apps
        .values()
        .map(|app| {
            build_target_file(app, &model, &BindingParams::default())
                .groups
                .len()
        })
        .sum();
    let instances: u32 = snapshot.apps.values().map(|a| a.instances).sum();
    assert_eq!(files, instances as usize);
    assert!(snapshot.apps.values().any(|a| !a.routes.is_empty()));
    assert!(snapshot.apps.values().any(|a| a.exporter_label));
}

#[tokio::test]
async fn a_few_bound_apps_among_many_are_fetched_by_guid_filter() {
    let sim = sim(&["--seed-apps", "3000", "--seed-spaces", "300"]);
    let everything = all_guids(&sim).await;
    let wanted: BTreeSet<AppGuid> = everything.iter().step_by(20).cloned().collect();
    let gone = AppGuid::parse("00000000-0000-4000-8000-00000000dead").unwrap();
    let mut asked = wanted.clone();
    asked.insert(gone.clone());
    control(&sim, reqwest::Method::DELETE, "/sim/requests", json!({})).await;

    let client = client_for(&sim);
    let snapshot = client.apps_info(&asked).await.unwrap();

    assert_eq!(
        snapshot.apps.keys().cloned().collect::<BTreeSet<_>>(),
        wanted
    );
    assert_eq!(snapshot.missing, BTreeSet::from([gone]));
    let counts = sim_requests(&sim).await;
    // 151 GUIDs = 2 chunks x (apps, processes, routes), one count, one token, one root.
    assert!(
        counts["by_endpoint"]["GET /v3/apps"].as_u64().unwrap() <= 3,
        "{counts}"
    );
}

#[tokio::test]
async fn a_single_app_is_looked_up_for_a_bind() {
    let sim = sim(&["--demo"]);
    let client = client_for(&sim);
    let guids = all_guids(&sim).await;
    let mut found = Vec::new();
    for guid in &guids {
        found.push(
            client
                .app_info(guid)
                .await
                .unwrap()
                .expect("demo app exists"),
        );
    }
    let api = found
        .iter()
        .find(|a| a.name == "api")
        .expect("demo app `api`");
    assert_eq!(api.instances, 3);
    assert_eq!(
        (api.org.as_str(), api.space.as_str()),
        ("demo-org", "demo-space")
    );
    let file = build_target_file(
        api,
        &ModelConfig {
            paas_domain: "apps.example.com".into(),
        },
        &BindingParams::default(),
    );
    assert_eq!(
        file.endpoint.metrics_path.as_deref(),
        Some("/internal/metrics")
    );

    let unknown = AppGuid::parse("00000000-0000-4000-8000-00000000dead").unwrap();
    assert_eq!(client.app_info(&unknown).await.unwrap(), None);
}

#[tokio::test]
async fn an_expired_token_is_replaced_without_the_caller_noticing() {
    let sim = sim(&["--demo", "--token-ttl", "2"]);
    let client = client_for(&sim);
    let guids = all_guids(&sim).await;
    let guid = guids.iter().next().unwrap();
    control(&sim, reqwest::Method::DELETE, "/sim/requests", json!({})).await;

    client.app_info(guid).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(2500)).await;
    client.app_info(guid).await.unwrap().unwrap();

    let counts = sim_requests(&sim).await;
    assert_eq!(counts["by_endpoint"]["POST /oauth/token"], 2, "{counts}");
    assert!(
        !client
            .request_stats()
            .by_endpoint
            .keys()
            .any(|(_, status)| *status == 401)
    );
}

#[tokio::test]
async fn a_revoked_token_is_refused_once_then_replaced_and_retried() {
    let sim = sim(&["--demo"]);
    let client = client_for(&sim);
    let guids = all_guids(&sim).await;
    let guid = guids.iter().next().unwrap();
    client.app_info(guid).await.unwrap().unwrap();

    control(&sim, reqwest::Method::POST, "/sim/uaa/revoke", json!({})).await;
    let app = client.app_info(guid).await.unwrap();

    assert!(app.is_some());
    let stats = client.request_stats();
    assert!(
        stats.by_endpoint.keys().any(|(_, status)| *status == 401),
        "{stats:?}"
    );
}

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_not_surfaced() {
    let sim = sim(&["--demo"]);
    let client = client_for(&sim);
    let guids = all_guids(&sim).await;
    let guid = guids.iter().next().unwrap();
    control(
        &sim,
        reqwest::Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "status": 429, "retry_after": 1, "count": 1}),
    )
    .await;

    let started = Instant::now();
    let app = client.app_info(guid).await.unwrap();

    assert!(app.is_some());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "Retry-After was not honoured"
    );
    let stats = client.request_stats();
    assert_eq!(
        stats
            .by_endpoint
            .get(&("GET /v3/apps/:guid".to_owned(), 429)),
        Some(&1),
        "{stats:?}"
    );
}

#[tokio::test]
async fn by_a_deadline_a_longer_retry_after_fails_at_once_and_a_slow_answer_is_cut_short() {
    let sim = sim(&["--demo"]);
    let client = client_for(&sim);
    let guids = all_guids(&sim).await;
    let guid = guids.iter().next().unwrap();
    control(
        &sim,
        reqwest::Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "status": 429, "retry_after": 30, "count": 0}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    let err = client.app_info_by(guid, Some(deadline)).await.unwrap_err();
    assert!(
        matches!(err, gds_cf::CfError::RateLimited(wait) if wait == Duration::from_secs(30)),
        "{err:?}"
    );
    let stats = client.request_stats();
    assert_eq!(
        stats
            .by_endpoint
            .get(&("GET /v3/apps/:guid".to_owned(), 429)),
        Some(&1),
        "asked once, not retried: {stats:?}"
    );

    // A Cloud Controller that answers after 30 s: the request ends with the deadline.
    control(&sim, reqwest::Method::DELETE, "/sim/faults", json!({})).await;
    control(
        &sim,
        reqwest::Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "delay_ms": 30_000, "count": 0}),
    )
    .await;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(2);
    let err = tokio::time::timeout(
        Duration::from_secs(15),
        client.app_info_by(guid, Some(deadline)),
    )
    .await
    .expect("the look-up ends by its deadline, not the Cloud Controller's answer")
    .unwrap_err();
    assert!(err.is_transient(), "{err:?}");
}

#[tokio::test]
async fn server_errors_are_retried_and_persistent_ones_reported() {
    let sim = sim(&["--demo"]);
    let client = client_for(&sim);
    let guids = all_guids(&sim).await;
    let guid = guids.iter().next().unwrap();

    control(
        &sim,
        reqwest::Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/routes", "status": 503, "count": 2}),
    )
    .await;
    assert!(client.app_info(guid).await.unwrap().is_some());

    control(
        &sim,
        reqwest::Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/routes", "status": 500, "count": 0}),
    )
    .await;
    let err = client.apps_info(&guids).await.unwrap_err();
    assert!(err.to_string().contains("500"), "{err}");
}

#[tokio::test]
async fn a_rolling_deploy_counts_the_larger_web_process() {
    let sim = sim(&["--demo"]);
    let client = client_for(&sim);
    let guids = all_guids(&sim).await;
    let before = client.apps_info(&guids).await.unwrap();
    let (guid, web_shop) = before
        .apps
        .iter()
        .find(|(_, a)| a.name == "web-shop")
        .unwrap();
    assert_eq!(web_shop.instances, 2);

    control(
        &sim,
        reqwest::Method::POST,
        &format!("/sim/apps/{guid}/rolling-deploy"),
        json!({"instances": 4}),
    )
    .await;
    let during = client.app_info(guid).await.unwrap().unwrap();
    assert_eq!(during.instances, 4);
    assert_eq!(during.routes, web_shop.routes);
}

#[tokio::test]
async fn audit_events_since_a_second_include_that_second() {
    let sim = sim(&["--demo"]);
    let client = client_for(&sim);
    let guids = all_guids(&sim).await;
    let guid = guids.iter().next().unwrap();
    control(
        &sim,
        reqwest::Method::POST,
        &format!("/sim/apps/{guid}/stop"),
        json!({}),
    )
    .await;
    control(
        &sim,
        reqwest::Method::POST,
        &format!("/sim/apps/{guid}/scale"),
        json!({"instances": 5}),
    )
    .await;

    let events = client
        .audit_events(
            &["audit.app.stop", "audit.app.process.scale"],
            "2000-01-01T00:00:00Z",
        )
        .await
        .unwrap();
    let kinds: Vec<_> = events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(kinds, ["audit.app.stop", "audit.app.process.scale"]);
    assert!(
        events
            .iter()
            .all(|e| e.target.as_ref().unwrap().guid == guid.as_str())
    );

    // Polling again from the newest event's second returns it again (gte): callers dedupe.
    let again = client
        .audit_events(
            &["audit.app.stop", "audit.app.process.scale"],
            &events[1].created_at,
        )
        .await
        .unwrap();
    assert!(again.iter().any(|e| e.guid == events[1].guid));
}
