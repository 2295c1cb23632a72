//! The OSB API of the real broker binary, driven over HTTP as the Cloud Controller drives
//! it, with the CF simulator and a real S3-compatible server; every test runs on SQLite
//! and on PostgreSQL.

use gds_store::TargetState;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::*;

on_both_databases!(
    the_catalog_offers_the_configured_service_with_one_prometheus_plan,
    provisioning_is_created_then_identical_then_conflicting,
    provision_and_update_refuse_what_this_broker_does_not_offer,
    malformed_or_incomplete_bodies_are_refused_with_a_json_description,
    a_bound_app_gets_its_target_file_and_loses_it_on_unbind,
    rebinding_is_identical_or_conflicting_and_never_rewrites,
    binding_parameters_are_honoured_in_the_file,
    invalid_binding_parameters_are_refused_and_nothing_is_written,
    a_bind_without_an_app_requires_one,
    a_stopped_app_is_written_to_inactive,
    an_app_bound_twice_keeps_one_file_until_its_last_binding_goes,
    deleting_needs_the_service_and_plan_ids,
    deleting_what_does_not_exist_is_gone,
    deprovisioning_removes_what_the_platform_left_bound,
    every_auth_and_version_failure_is_refused,
    operations_endpoints_need_no_auth_and_count_routes_not_ids,
    the_passes_of_update_targets_show_on_the_brokers_metrics,
);

/// The credentials of a binding of `web-shop` without parameters: the original's
/// authorization (`Bearer <app guid>`), and what the app is scraped as.
fn web_shop_credentials() -> Value {
    json!({
        "auth": "app_guid",
        "job": "web-shop",
        "metrics_path": "/metrics",
        "authorization_header": format!("Bearer {WEB_SHOP}"),
    })
}

/// The file the broker must write for the demo app `web-shop` (2 instances, one route),
/// byte for byte: the original's content, pretty-printed with sorted labels.
fn web_shop_file() -> String {
    let group = |i: u32| {
        format!(
            r#"  {{
    "targets": [
      "web-shop.apps.example.com"
    ],
    "labels": {{
      "__param_cf_app_guid": "{WEB_SHOP}",
      "__param_cf_app_instance": "{WEB_SHOP}:{i}",
      "__param_cf_app_instance_index": "{i}",
      "instance": "{WEB_SHOP}:{i}",
      "job": "web-shop",
      "org": "demo-org",
      "space": "demo-space"
    }}
  }}"#
        )
    };
    format!("[\n{},\n{}\n]\n", group(0), group(1))
}

async fn the_catalog_offers_the_configured_service_with_one_prometheus_plan(db: Database) {
    let f = Fixture::start(db).await;
    let (status, catalog) = send(f.osb(Method::GET, "/v2/catalog")).await;
    assert_eq!(status, StatusCode::OK);
    let services = catalog["services"].as_array().expect("services");
    assert_eq!(services.len(), 1);
    let service = &services[0];
    assert_eq!(service["id"], SERVICE_ID);
    assert_eq!(service["name"], "gds-prometheus");
    assert_eq!(service["bindable"], true);
    assert_eq!(service["instances_retrievable"], true);
    assert_eq!(service["bindings_retrievable"], true);
    let plans = service["plans"].as_array().expect("plans");
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0]["id"], PLAN_ID);
    assert_eq!(plans[0]["name"], "prometheus");
    assert_eq!(plans[0]["free"], true);
    let schema = &plans[0]["schemas"]["service_binding"]["create"]["parameters"];
    assert_eq!(schema["type"], "object");
    assert_eq!(schema["additionalProperties"], false);
    for key in ["path", "labels", "scrape_interval"] {
        assert!(schema["properties"][key].is_object(), "{key} in {schema}");
    }
}

async fn provisioning_is_created_then_identical_then_conflicting(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await, (StatusCode::CREATED, json!({})));
    assert_eq!(f.provision("si-1").await, (StatusCode::OK, json!({})));

    let (status, body) = send(
        f.osb(Method::PUT, &instance_path("si-1"))
            .json(&provision_body("another-space")),
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT);
    assert!(body["description"].as_str().is_some(), "{body}");

    let (status, body) = send(f.osb(Method::GET, &instance_path("si-1"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["service_id"], SERVICE_ID);
    assert_eq!(body["plan_id"], PLAN_ID);

    let (status, body) = send(f.osb(
        Method::GET,
        &format!(
            "{}/last_operation?operation=provision",
            instance_path("si-1")
        ),
    ))
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"state": "succeeded"}))
    );

    let (status, body) = send(
        f.osb(Method::PATCH, &instance_path("si-1"))
            .json(&json!({"service_id": SERVICE_ID, "plan_id": PLAN_ID, "parameters": {}})),
    )
    .await;
    assert_eq!((status, body), (StatusCode::OK, json!({})));

    let (status, body) = send(f.osb(Method::GET, &instance_path("si-unknown"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(body["description"].is_string(), "{body}");
}

async fn provision_and_update_refuse_what_this_broker_does_not_offer(db: Database) {
    let f = Fixture::start(db).await;
    let mut unknown_service = provision_body("space-1");
    unknown_service["service_id"] = json!("not-ours");
    let (status, body) = send(
        f.osb(Method::PUT, &instance_path("si-1"))
            .json(&unknown_service),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["description"].as_str().unwrap().contains("service_id"),
        "{body}"
    );

    let mut unknown_plan = provision_body("space-1");
    unknown_plan["plan_id"] = json!("not-ours");
    let (status, body) = send(
        f.osb(Method::PUT, &instance_path("si-1"))
            .json(&unknown_plan),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    assert!(
        body["description"].as_str().unwrap().contains("plan_id"),
        "{body}"
    );
    // Nothing was recorded.
    let (status, _) = send(f.osb(Method::GET, &instance_path("si-1"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    let (status, _) = send(
        f.osb(Method::PATCH, &instance_path("si-1"))
            .json(&json!({"service_id": SERVICE_ID, "plan_id": "not-ours"})),
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let (status, _) = send(
        f.osb(Method::PATCH, &instance_path("si-2"))
            .json(&json!({"service_id": SERVICE_ID})),
    )
    .await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn malformed_or_incomplete_bodies_are_refused_with_a_json_description(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    let cases: Vec<(Method, String, Option<&str>, &str)> = vec![
        (
            Method::PUT,
            instance_path("si-2"),
            Some("{not json"),
            "not valid JSON",
        ),
        (
            Method::PUT,
            instance_path("si-2"),
            Some(""),
            "not valid JSON",
        ),
        (
            Method::PUT,
            instance_path("si-2"),
            Some(r#"{"service_id": "x", "plan_id": "y"}"#),
            "organization_guid",
        ),
        (
            Method::PUT,
            instance_path("si-2"),
            Some(r#"{"service_id": 7}"#),
            "service_id",
        ),
        (
            Method::PUT,
            binding_path("si-1", "b-1"),
            Some("[]"),
            "invalid request body",
        ),
        (
            Method::PUT,
            binding_path("si-1", "b-1"),
            Some(r#"{"plan_id": "p"}"#),
            "service_id",
        ),
        (
            Method::PATCH,
            instance_path("si-1"),
            Some("{}"),
            "service_id",
        ),
    ];
    for (method, path, body, expected) in cases {
        let mut request = f.osb(method.clone(), &path);
        if let Some(body) = body {
            request = request
                .header("Content-Type", "application/json")
                .body(body.to_owned());
        }
        let (status, answer) = send(request).await;
        assert_eq!(
            status,
            StatusCode::BAD_REQUEST,
            "{method} {path} {body:?}: {answer}"
        );
        let description = answer["description"].as_str().unwrap_or_default();
        assert!(
            description.contains(expected),
            "{method} {path} {body:?}: {description:?} should mention {expected:?}"
        );
    }
    // Without a content type, JSON is still read (and unknown fields are ignored).
    let mut body = provision_body("space-1");
    body["unknown_field"] = json!({"anything": [1, 2]});
    let (status, _) = send(
        f.osb(Method::PUT, &instance_path("si-3"))
            .body(body.to_string()),
    )
    .await;
    assert_eq!(status, StatusCode::CREATED);
}

async fn a_bound_app_gets_its_target_file_and_loses_it_on_unbind(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);

    let (status, body) = f.bind("si-1", "b-1", WEB_SHOP, Value::Null).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::CREATED,
            json!({"credentials": web_shop_credentials()})
        )
    );
    let file = f
        .file(TargetState::Active, WEB_SHOP)
        .await
        .expect("the active file exists");
    assert_eq!(String::from_utf8(file).unwrap(), web_shop_file());
    assert_eq!(
        f.bucket_keys().await,
        [format!("test-region/active/{WEB_SHOP}.json")],
        "exactly the original's key layout, under the bucket prefix"
    );

    let (status, body) = send(f.osb(Method::GET, &binding_path("si-1", "b-1"))).await;
    assert_eq!(
        (status, body),
        (
            StatusCode::OK,
            json!({"credentials": web_shop_credentials(), "parameters": {}})
        )
    );
    let (status, body) = send(f.osb(
        Method::GET,
        &format!("{}/last_operation", binding_path("si-1", "b-1")),
    ))
    .await;
    assert_eq!(
        (status, body),
        (StatusCode::OK, json!({"state": "succeeded"}))
    );

    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::OK, json!({})));
    assert_eq!(f.file(TargetState::Active, WEB_SHOP).await, None);
    assert!(f.bucket_keys().await.is_empty());
    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::GONE, json!({})));
    let (status, body) = send(f.osb(
        Method::GET,
        &format!("{}/last_operation", binding_path("si-1", "b-1")),
    ))
    .await;
    assert_eq!((status, body), (StatusCode::GONE, json!({})));
    let (status, _) = send(f.osb(Method::GET, &binding_path("si-1", "b-1"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    assert_eq!(f.deprovision("si-1").await, (StatusCode::OK, json!({})));
    assert_eq!(f.deprovision("si-1").await, (StatusCode::GONE, json!({})));
    let (status, body) = send(f.osb(
        Method::GET,
        &format!("{}/last_operation", instance_path("si-1")),
    ))
    .await;
    assert_eq!((status, body), (StatusCode::GONE, json!({})));
}

async fn rebinding_is_identical_or_conflicting_and_never_rewrites(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    let params = json!({"path": "/custom/metrics"});
    assert_eq!(
        f.bind("si-1", "b-1", WEB_SHOP, params.clone()).await.0,
        StatusCode::CREATED
    );
    let before = f.file(TargetState::Active, WEB_SHOP).await.unwrap();

    assert_eq!(
        f.bind("si-1", "b-1", WEB_SHOP, params.clone()).await,
        (
            StatusCode::OK,
            json!({"credentials": {
                "auth": "app_guid",
                "job": "web-shop",
                "metrics_path": "/custom/metrics",
                "authorization_header": format!("Bearer {WEB_SHOP}"),
            }})
        ),
        "identical"
    );
    let (status, body) = f
        .bind("si-1", "b-1", WEB_SHOP, json!({"path": "/other"}))
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "other parameters: {body}");
    assert!(body["description"].is_string());
    let (status, _) = f.bind("si-1", "b-1", API_APP, params.clone()).await;
    assert_eq!(status, StatusCode::CONFLICT, "another app");
    assert_eq!(f.file(TargetState::Active, API_APP).await, None);
    assert_eq!(f.file(TargetState::Active, WEB_SHOP).await.unwrap(), before);

    let (status, body) = send(f.osb(Method::GET, &binding_path("si-1", "b-1"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body["parameters"], params);
    // A binding is found only under its own instance.
    let (status, _) = send(f.osb(Method::GET, &binding_path("si-other", "b-1"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
}

async fn binding_parameters_are_honoured_in_the_file(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    let params = json!({
        "path": "/custom",
        "labels": {"team": "observability", "tier": "gold"},
        "scrape_interval": "30s"
    });
    assert_eq!(
        f.bind("si-1", "b-1", API_APP, params.clone()).await.0,
        StatusCode::CREATED
    );
    let file: Value =
        serde_json::from_slice(&f.file(TargetState::Active, API_APP).await.unwrap()).unwrap();
    let groups = file.as_array().expect("an array of groups");
    assert_eq!(groups.len(), 3, "one group per instance of `api`");
    for (i, group) in groups.iter().enumerate() {
        assert_eq!(
            group,
            &json!({
                // `api` has a route with path /internal/metrics; it wins the host choice.
                "targets": ["api.apps.example.com"],
                "labels": {
                    "__metrics_path__": "/custom",
                    "__param_cf_app_guid": API_APP,
                    "__param_cf_app_instance": format!("{API_APP}:{i}"),
                    "__param_cf_app_instance_index": i.to_string(),
                    "__scrape_interval__": "30s",
                    "instance": format!("{API_APP}:{i}"),
                    "job": "api",
                    "org": "demo-org",
                    "space": "demo-space",
                    "team": "observability",
                    "tier": "gold"
                }
            })
        );
    }
    let (_, body) = send(f.osb(Method::GET, &binding_path("si-1", "b-1"))).await;
    assert_eq!(body["parameters"], params);
}

async fn invalid_binding_parameters_are_refused_and_nothing_is_written(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    for (params, named) in [
        (json!({"path": "metrics"}), "path"),
        (json!({"path": 7}), "path"),
        (json!({"labels": {"job": "mine"}}), "labels.job"),
        (
            json!({"labels": {"__address__": "x"}}),
            "labels.__address__",
        ),
        (json!({"labels": {"bad-name": "x"}}), "labels.bad-name"),
        (json!({"labels": ["a"]}), "labels"),
        (json!({"scrape_interval": "often"}), "scrape_interval"),
        (json!({"interval": "30s"}), "interval"),
        (json!("path=/metrics"), "JSON object"),
    ] {
        let (status, body) = f.bind("si-1", "b-1", WEB_SHOP, params.clone()).await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{params}: {body}");
        let description = body["description"].as_str().unwrap_or_default();
        assert!(
            description.contains(named),
            "{params}: {description:?} should name {named:?}"
        );
    }
    assert!(f.bucket_keys().await.is_empty(), "nothing was written");
    let (status, _) = send(f.osb(Method::GET, &binding_path("si-1", "b-1"))).await;
    assert_eq!(status, StatusCode::NOT_FOUND, "nothing was recorded");
}

async fn a_bind_without_an_app_requires_one(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    let (status, body) = send(
        f.osb(Method::PUT, &binding_path("si-1", "b-1"))
            .json(&json!({
                "service_id": SERVICE_ID,
                "plan_id": PLAN_ID,
                "bind_resource": {"route": "some-route.apps.example.com"}
            })),
    )
    .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY);
    assert_eq!(body["error"], "RequiresApp");
    assert!(body["description"].is_string());

    let (status, body) = f.bind("si-1", "b-1", "not-a-guid", Value::Null).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");

    // An app the Cloud Controller does not show the broker.
    let (status, body) = f
        .bind(
            "si-1",
            "b-1",
            "11111111-2222-4333-8444-555555555555",
            Value::Null,
        )
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("not visible"),
        "{body}"
    );
    // And binding to an instance that does not exist.
    let (status, _) = f.bind("si-unknown", "b-1", WEB_SHOP, Value::Null).await;
    assert_eq!(status, StatusCode::NOT_FOUND);
    assert!(f.bucket_keys().await.is_empty());
}

async fn a_stopped_app_is_written_to_inactive(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    assert_eq!(
        f.bind("si-1", "b-1", BATCH_WORKER, Value::Null).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        f.bucket_keys().await,
        [format!("test-region/inactive/{BATCH_WORKER}.json")]
    );
    assert_eq!(f.unbind("si-1", "b-1").await.0, StatusCode::OK);
    assert!(f.bucket_keys().await.is_empty());
}

async fn an_app_bound_twice_keeps_one_file_until_its_last_binding_goes(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    assert_eq!(f.provision("si-2").await.0, StatusCode::CREATED);
    // Through two instances, and twice through one (`cf bind-service --strategy multiple`).
    for (instance, binding) in [("si-1", "b-1"), ("si-2", "b-2"), ("si-1", "b-3")] {
        assert_eq!(
            f.bind(instance, binding, WEB_SHOP, Value::Null).await.0,
            StatusCode::CREATED,
            "{binding}"
        );
    }
    let one_file = [format!("test-region/active/{WEB_SHOP}.json")];
    assert_eq!(f.bucket_keys().await, one_file);
    assert_eq!(f.unbind("si-1", "b-1").await.0, StatusCode::OK);
    assert_eq!(f.bucket_keys().await, one_file);
    assert_eq!(f.unbind("si-2", "b-2").await.0, StatusCode::OK);
    assert_eq!(f.bucket_keys().await, one_file);
    assert_eq!(
        String::from_utf8(f.file(TargetState::Active, WEB_SHOP).await.unwrap()).unwrap(),
        web_shop_file()
    );
    assert_eq!(f.unbind("si-1", "b-3").await.0, StatusCode::OK);
    assert!(f.bucket_keys().await.is_empty());
}

async fn deleting_needs_the_service_and_plan_ids(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    assert_eq!(
        f.bind("si-1", "b-1", WEB_SHOP, Value::Null).await.0,
        StatusCode::CREATED
    );
    for query in [
        String::new(),
        "?service_id=".to_owned() + SERVICE_ID,
        "?plan_id=".to_owned() + PLAN_ID,
        format!("?service_id=nope&plan_id={PLAN_ID}"),
        format!("?service_id={SERVICE_ID}&plan_id=nope"),
    ] {
        for path in [instance_path("si-1"), binding_path("si-1", "b-1")] {
            let (status, body) = send(f.osb(Method::DELETE, &format!("{path}{query}"))).await;
            assert_eq!(
                status,
                StatusCode::BAD_REQUEST,
                "DELETE {path}{query}: {body}"
            );
            assert!(body["description"].is_string(), "{body}");
        }
    }
    // Still there.
    assert!(f.file(TargetState::Active, WEB_SHOP).await.is_some());
    assert_eq!(
        send(f.osb(Method::GET, &binding_path("si-1", "b-1")))
            .await
            .0,
        StatusCode::OK
    );
}

async fn deleting_what_does_not_exist_is_gone(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(
        f.deprovision("si-never").await,
        (StatusCode::GONE, json!({}))
    );
    assert_eq!(
        f.unbind("si-never", "b-never").await,
        (StatusCode::GONE, json!({}))
    );
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    assert_eq!(
        f.unbind("si-1", "b-never").await,
        (StatusCode::GONE, json!({}))
    );
    // A binding exists, but under another instance.
    assert_eq!(f.provision("si-2").await.0, StatusCode::CREATED);
    assert_eq!(
        f.bind("si-2", "b-1", WEB_SHOP, Value::Null).await.0,
        StatusCode::CREATED
    );
    assert_eq!(f.unbind("si-1", "b-1").await, (StatusCode::GONE, json!({})));
    assert!(f.file(TargetState::Active, WEB_SHOP).await.is_some());
}

async fn deprovisioning_removes_what_the_platform_left_bound(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    assert_eq!(f.provision("si-2").await.0, StatusCode::CREATED);
    assert_eq!(
        f.bind("si-1", "b-1", WEB_SHOP, Value::Null).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        f.bind("si-1", "b-2", API_APP, Value::Null).await.0,
        StatusCode::CREATED
    );
    assert_eq!(
        f.bind("si-2", "b-3", API_APP, Value::Null).await.0,
        StatusCode::CREATED
    );
    assert_eq!(f.deprovision("si-1").await, (StatusCode::OK, json!({})));
    assert_eq!(
        f.bucket_keys().await,
        [format!("test-region/active/{API_APP}.json")],
        "web-shop's only binding went with si-1; api is still bound through si-2"
    );
    let db = f.db().await;
    let left: Vec<String> = db
        .all_bindings()
        .await
        .unwrap()
        .into_iter()
        .map(|b| b.binding_id)
        .collect();
    assert_eq!(left, ["b-3"]);
}

async fn every_auth_and_version_failure_is_refused(db: Database) {
    let f = Fixture::start(db).await;
    let url = |path: &str| format!("{}{path}", f.broker.base_url);
    let version = ("X-Broker-API-Version", API_VERSION);

    // Authentication comes first, on every OSB route and on /update-targets.
    let unauthenticated = [
        (Method::GET, "/v2/catalog".to_owned()),
        (Method::PUT, instance_path("si-1")),
        (Method::GET, instance_path("si-1")),
        (Method::PATCH, instance_path("si-1")),
        (Method::DELETE, instance_path("si-1")),
        (
            Method::GET,
            format!("{}/last_operation", instance_path("si-1")),
        ),
        (Method::PUT, binding_path("si-1", "b-1")),
        (Method::GET, binding_path("si-1", "b-1")),
        (Method::DELETE, binding_path("si-1", "b-1")),
        (Method::POST, "/update-targets".to_owned()),
    ];
    for (method, path) in &unauthenticated {
        let response = f
            .http
            .request(method.clone(), url(path))
            .header(version.0, version.1)
            .json(&provision_body("s"))
            .send()
            .await
            .unwrap();
        assert_eq!(
            response.status(),
            StatusCode::UNAUTHORIZED,
            "{method} {path}"
        );
        assert!(
            response
                .headers()
                .get("www-authenticate")
                .is_some_and(|v| v.to_str().unwrap().starts_with("Basic")),
            "{method} {path}"
        );
        let body: Value = response.json().await.unwrap();
        assert!(body["description"].is_string(), "{body}");
    }

    let wrong_credentials = [
        (Some(USERNAME), Some("wrong")),
        (Some("someone"), Some(PASSWORD)),
        (Some(USERNAME), None),
        (Some(""), Some("")),
    ];
    for (user, password) in wrong_credentials {
        let (status, body) = send(
            f.http
                .get(url("/v2/catalog"))
                .header(version.0, version.1)
                .basic_auth(user.unwrap(), password),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{user:?}/{password:?}");
        assert!(body["description"].is_string());
    }
    for header in ["Bearer abc", "Basic !!!", "Basic", "Digest username=x"] {
        let (status, _) = send(
            f.http
                .get(url("/v2/catalog"))
                .header(version.0, version.1)
                .header("Authorization", header),
        )
        .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{header}");
    }
    // Without both, it is the authentication that is refused.
    let (status, _) = send(f.http.get(url("/v2/catalog"))).await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // Authenticated, the API version must be 2.13 or a later 2.x.
    for bad in [
        None,
        Some("1.0"),
        Some("3.0"),
        Some("2.12"),
        Some("two"),
        Some("2"),
    ] {
        let mut request = f
            .http
            .get(url("/v2/catalog"))
            .basic_auth(USERNAME, Some(PASSWORD));
        if let Some(v) = bad {
            request = request.header("X-Broker-API-Version", v);
        }
        let (status, body) = send(request).await;
        assert_eq!(status, StatusCode::PRECONDITION_FAILED, "{bad:?}");
        assert!(
            body["description"]
                .as_str()
                .unwrap()
                .contains("X-Broker-API-Version"),
            "{body}"
        );
    }
    for good in ["2.13", "2.14", "2.15", "2.16", "2.17"] {
        let (status, _) = send(
            f.http
                .get(url("/v2/catalog"))
                .basic_auth(USERNAME, Some(PASSWORD))
                .header("X-Broker-API-Version", good),
        )
        .await;
        assert_eq!(status, StatusCode::OK, "{good}");
    }
    // /update-targets needs auth but no API version (the original's clock had none).
    let (status, _) = send(
        f.http
            .post(url("/update-targets"))
            .basic_auth(USERNAME, Some(PASSWORD)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED);
}

async fn operations_endpoints_need_no_auth_and_count_routes_not_ids(db: Database) {
    let f = Fixture::start(db).await;
    let (status, body) = send(f.http.get(format!("{}/health", f.broker.base_url))).await;
    assert_eq!((status, body), (StatusCode::OK, json!({"status": "ok"})));

    assert_eq!(f.provision("si-metrics").await.0, StatusCode::CREATED);
    assert_eq!(
        f.bind("si-metrics", "b-metrics", WEB_SHOP, Value::Null)
            .await
            .0,
        StatusCode::CREATED
    );
    // The platform's request identity comes back.
    let response = f
        .http
        .get(format!("{}/v2/catalog", f.broker.base_url))
        .basic_auth(USERNAME, Some(PASSWORD))
        .header("X-Broker-API-Version", API_VERSION)
        .header(
            "X-Broker-API-Request-Identity",
            "e26cea65-6d4b-4ac5-a2c1-07a6cb1a1c02",
        )
        .header(
            "X-Broker-API-Originating-Identity",
            "cloudfoundry eyJ1c2VyX2lkIjoiNjgzZWE3NDgtMzA5Mi00ZmY0LWI2NTYtMzljYWNjNGQ1MzYwIn0=",
        )
        .send()
        .await
        .unwrap();
    assert_eq!(
        response.headers()["x-broker-api-request-identity"],
        "e26cea65-6d4b-4ac5-a2c1-07a6cb1a1c02"
    );

    let response = f
        .http
        .get(format!("{}/metrics", f.broker.base_url))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), StatusCode::OK);
    assert!(
        response.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain")
    );
    let text = response.text().await.unwrap();
    for line in [
        r#"observe_broker_http_requests_total{code="201",method="put",path="/v2/service_instances/{instance_id}"} 1"#,
        r#"observe_broker_http_requests_total{code="201",method="put",path="/v2/service_instances/{instance_id}/service_bindings/{binding_id}"} 1"#,
        r#"observe_broker_http_requests_total{code="200",method="get",path="/health"} 1"#,
        r#"observe_broker_binding_changes_total{change="created"} 1"#,
        r#"observe_broker_target_latency_seconds_count{operation="bind"} 1"#,
        r#"observe_broker_target_latency_seconds_count{operation="unbind"} 0"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    assert!(
        text.contains("observe_broker_http_request_duration_seconds_bucket"),
        "{text}"
    );
    for raw in ["si-metrics", "b-metrics", WEB_SHOP] {
        assert!(!text.contains(raw), "raw id {raw} in metrics:\n{text}");
    }
}

/// `POST /update-targets` runs the updater's pass in the broker: its `gds_updater_*`
/// metrics are on the broker's `/metrics`, next to the broker's own.
async fn the_passes_of_update_targets_show_on_the_brokers_metrics(db: Database) {
    use gds_store::TargetStore;

    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    assert_eq!(
        f.bind("si-1", "b-1", WEB_SHOP, Value::Null).await.0,
        StatusCode::CREATED
    );
    // A file nobody is bound to: the pass removes it.
    f.store
        .write_app(
            TargetState::Active,
            &gds_targets::AppGuid::parse(API_APP).unwrap(),
            "[]".into(),
        )
        .await
        .unwrap();

    let (status, body) = send(
        f.http
            .post(format!("{}/update-targets", f.broker.base_url))
            .basic_auth(USERNAME, Some(PASSWORD)),
    )
    .await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    assert!(
        body["description"]
            .as_str()
            .unwrap_or_default()
            .starts_with("full pass succeeded"),
        "{body}"
    );
    assert_eq!(f.file(TargetState::Active, API_APP).await, None);

    let text = f
        .http
        .get(format!("{}/metrics", f.broker.base_url))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    for line in [
        r#"gds_updater_passes_total{outcome="ok",scope="full"} 1"#,
        r#"gds_updater_pass_duration_seconds_count{scope="full"} 1"#,
        r#"gds_updater_actions_total{kind="remove",outcome="applied"} 1"#,
        // As listed, before the removal.
        r#"gds_updater_targets{state="active"} 2"#,
        r#"gds_updater_held_back_deletions 0"#,
        r#"observe_broker_http_requests_total{code="202",method="post",path="/update-targets"} 1"#,
    ] {
        assert!(text.contains(line), "{line} missing from:\n{text}");
    }
    // The Cloud Controller client is shared with the binds: its counters are current.
    assert!(
        text.contains(
            r#"gds_updater_cf_requests_total{endpoint="GET /v3/apps/:guid",status="200"}"#
        ),
        "{text}"
    );
    assert!(
        text.contains("gds_updater_last_success_timestamp_seconds 1"),
        "{text}"
    );
}
