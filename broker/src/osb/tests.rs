//! The OSB contract without HTTP: request bodies, the error catalogue and the status
//! mapping of every (operation, error) pair.

use super::*;

fn store_down() -> StoreError {
    StoreError::Unavailable {
        context: "test".into(),
        source: None,
    }
}

fn cf_down() -> CfError {
    CfError::Api {
        endpoint: "GET /v3/apps/:guid".into(),
        status: 503,
        title: "CF-ServiceUnavailable".into(),
        detail: "down".into(),
    }
}

/// One error of each kind, with the status every operation answers it with unless
/// listed in the exceptions below.
fn errors() -> Vec<(BrokerError, u16, Option<&'static str>)> {
    vec![
        (BrokerError::Unauthorized, 401, None),
        (BrokerError::MissingApiVersion, 412, None),
        (BrokerError::UnsupportedApiVersion("1.0".into()), 412, None),
        (BrokerError::BadRequest("bad".into()), 400, None),
        (
            BrokerError::UnknownService {
                given: "x".into(),
                expected: "y".into(),
            },
            400,
            None,
        ),
        (
            BrokerError::UnknownPlan {
                given: "x".into(),
                expected: "y".into(),
            },
            400,
            None,
        ),
        (
            BrokerError::InvalidParameters(ParamError::UnknownKeys("x".into())),
            400,
            None,
        ),
        (BrokerError::RequiresApp, 422, Some("RequiresApp")),
        (
            BrokerError::InvalidAppGuid(gds_targets::AppGuid::parse("x").unwrap_err()),
            400,
            None,
        ),
        (BrokerError::AppNotVisible("a".into()), 400, None),
        (BrokerError::InstanceConflict("i".into()), 409, None),
        (BrokerError::BindingConflict("b".into()), 409, None),
        (BrokerError::InstanceNotFound("i".into()), 404, None),
        (BrokerError::BindingNotFound("b".into()), 404, None),
        (
            BrokerError::Concurrency("busy".into()),
            422,
            Some("ConcurrencyError"),
        ),
        (
            BrokerError::CloudControllerUnavailable(cf_down()),
            503,
            None,
        ),
        (BrokerError::StoreUnavailable(store_down()), 503, None),
        // Out of time: 5xx, so that the platform's orphan mitigation unbinds.
        (
            BrokerError::CloudControllerTooSlow { budget_secs: 45 },
            503,
            None,
        ),
        (
            BrokerError::CloudControllerRateLimited {
                retry_after_secs: 30,
                budget_secs: 45,
            },
            503,
            None,
        ),
        (BrokerError::OutOfTime { budget_secs: 45 }, 503, None),
        (
            BrokerError::BindSuperseded("b".into()),
            422,
            Some("ConcurrencyError"),
        ),
        (BrokerError::PayloadTooLarge("big".into()), 413, None),
        (BrokerError::ScrapeTokensUnavailable, 422, None),
        (BrokerError::internal(anyhow::anyhow!("boom")), 500, None),
    ]
}

/// The spec's exceptions: "not found" is `410 Gone` (a success to the platform) for
/// deprovision, unbind and last-operation polls.
fn expected_status(op: Operation, err: &BrokerError, default: u16) -> u16 {
    let gone_ops = [
        Operation::Deprovision,
        Operation::Unbind,
        Operation::InstanceLastOperation,
        Operation::BindingLastOperation,
    ];
    match err {
        BrokerError::InstanceNotFound(_) | BrokerError::BindingNotFound(_)
            if gone_ops.contains(&op) =>
        {
            410
        }
        _ => default,
    }
}

#[test]
fn every_operation_and_error_pair_gets_the_status_the_spec_names() {
    for op in Operation::ALL {
        for (err, default, key) in errors() {
            let reply = reply_for(op, &err);
            let expected = expected_status(op, &err, default);
            assert_eq!(reply.status, expected, "({op:?}, {err:?})");
            assert_eq!(reply.error, key, "({op:?}, {err:?})");
            let body = reply.body();
            assert!(body.is_object(), "({op:?}, {err:?}): {body}");
            if reply.status == 410 {
                assert_eq!(body, json!({}), "410 answers an empty object");
            } else {
                assert!(
                    body["description"].as_str().is_some_and(|d| !d.is_empty()),
                    "({op:?}, {err:?}) has a description: {body}"
                );
            }
        }
    }
}

#[test]
fn failures_on_our_side_tell_the_caller_nothing_internal() {
    let secret = "password authentication failed for user broker at 10.0.0.5";
    let err = BrokerError::internal(anyhow::anyhow!(secret));
    let reply = reply_for(Operation::Bind, &err);
    assert_eq!(reply.status, 500);
    assert!(reply.is_opaque());
    assert!(!reply.body().to_string().contains("10.0.0.5"));
    let store = reply_for(
        Operation::Bind,
        &BrokerError::StoreUnavailable(store_down()),
    );
    assert!(!store.body().to_string().contains("test"));
}

#[test]
fn the_error_chain_reaches_the_root() {
    let err =
        BrokerError::internal(anyhow::anyhow!("connection refused").context("inserting a binding"));
    assert_eq!(
        gds_service::error_chain(&err),
        "internal error: inserting a binding: connection refused"
    );
}

#[test]
fn operations_are_recognised_by_method_and_route() {
    let binding = "/v2/service_instances/{instance_id}/service_bindings/{binding_id}";
    assert_eq!(Operation::of("PUT", Some(binding)), Operation::Bind);
    assert_eq!(Operation::of("DELETE", Some(binding)), Operation::Unbind);
    assert_eq!(Operation::of("GET", Some(binding)), Operation::FetchBinding);
    assert_eq!(Operation::of("POST", Some(binding)), Operation::Other);
    assert_eq!(Operation::of("GET", None), Operation::Other);
}

#[test]
fn the_app_comes_from_bind_resource_or_the_deprecated_field() {
    let both = BindRequest::from_json(&json!({
        "service_id": "s", "plan_id": "p", "app_guid": "old",
        "bind_resource": {"app_guid": "new"}, "unknown": true
    }))
    .unwrap();
    assert_eq!(both.app_guid(), Some("new"));
    let old =
        BindRequest::from_json(&json!({"service_id": "s", "plan_id": "p", "app_guid": "old"}))
            .unwrap();
    assert_eq!(old.app_guid(), Some("old"));
    let route = BindRequest::from_json(&json!({
        "service_id": "s", "plan_id": "p", "bind_resource": {"route": "r.example.com"}
    }))
    .unwrap();
    assert_eq!(route.app_guid(), None);
}

#[test]
fn bad_request_bodies_are_described_by_field() {
    let cases = [
        (json!([]), "expected a JSON object, got an array"),
        (json!({"plan_id": "p"}), "`service_id` is required"),
        (
            json!({"service_id": 7, "plan_id": "p"}),
            "`service_id` must be a string, got a number",
        ),
        (
            json!({"service_id": "s", "plan_id": "p", "bind_resource": []}),
            "`bind_resource` must be a JSON object",
        ),
        (
            json!({"service_id": "s", "plan_id": "p", "bind_resource": {"app_guid": 1}}),
            "`bind_resource.app_guid` must be a string",
        ),
    ];
    for (body, expected) in cases {
        let err = BindRequest::from_json(&body).unwrap_err().to_string();
        assert!(err.contains(expected), "{body}: {err}");
    }
    let err = ProvisionRequest::from_json(
        &json!({"service_id": "s", "plan_id": "p", "organization_guid": "o"}),
    )
    .unwrap_err()
    .to_string();
    assert!(err.contains("`space_guid` is required"), "{err}");
    let err = UpdateRequest::from_json(&json!({"service_id": "s", "parameters": "x"}))
        .unwrap_err()
        .to_string();
    assert!(err.contains("`parameters` must be a JSON object"), "{err}");
}

#[test]
fn the_catalog_offers_one_bindable_service_with_the_prometheus_plan() {
    let ids = CatalogIds {
        service_id: "svc".into(),
        service_name: "gds-prometheus".into(),
        plan_id: "plan".into(),
    };
    let c = catalog(&ids);
    let service = &c["services"][0];
    assert_eq!(service["id"], "svc");
    assert_eq!(service["name"], "gds-prometheus");
    assert_eq!(service["bindable"], true);
    assert_eq!(service["instances_retrievable"], true);
    assert_eq!(service["bindings_retrievable"], true);
    let plans = service["plans"].as_array().unwrap();
    assert_eq!(plans.len(), 1);
    assert_eq!(plans[0]["name"], "prometheus");
    assert_eq!(plans[0]["free"], true);
    let schema = &plans[0]["schemas"]["service_binding"]["create"]["parameters"];
    assert_eq!(schema["$schema"], "http://json-schema.org/draft-04/schema#");
    let props: Vec<&String> = schema["properties"].as_object().unwrap().keys().collect();
    assert_eq!(props, ["auth", "labels", "path", "scrape_interval"]);
    assert_eq!(
        schema["properties"]["auth"]["enum"],
        json!(["app_guid", "token"])
    );
}
