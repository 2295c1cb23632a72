//! The simulator's service resources, in-process: an old broker's offering, plans,
//! instances and bindings seeded through the control API, read back through the CC v3
//! endpoints with their shapes, filters, `fields`/`include` and pagination.

#[macro_use]
mod common;

use actix_web::test::{self, TestRequest};
use actix_web::web;
use cf_sim::{SimConfig, SimState};
use serde_json::{Value, json};

use common::{BASE, guids, path_of};

const ORG: &str = "0a000000-0000-4000-8000-000000000001";
const SPACE: &str = "0b000000-0000-4000-8000-000000000001";
const OTHER_SPACE: &str = "0b000000-0000-4000-8000-000000000002";
const APP_A: &str = "0c000000-0000-4000-8000-00000000000a";
const APP_B: &str = "0c000000-0000-4000-8000-00000000000b";
const APP_ELSEWHERE: &str = "0c000000-0000-4000-8000-00000000000e";

const SERVICE_ID: &str = "old-broker-service-id";
const PLAN_ID: &str = "old-broker-plan-id";

/// Control call that must succeed.
macro_rules! seed {
    ($app:expr, $uri:expr, $body:expr) => {{
        let r = control!($app, post, $uri, $body);
        assert!(r.status == 201 || r.status == 200, "{}: {}", $uri, r.body);
        r.body
    }};
}

fn state() -> web::Data<SimState> {
    web::Data::new(SimState::new(SimConfig::default(), BASE).unwrap())
}

/// The world the tests read: our broker's offering (one plan) and another broker's; two
/// instances of our plan, one of the other; app bindings, a service key, a binding whose
/// creation failed.
struct World {
    offering: String,
    plan: String,
    other_plan: String,
    instance_1: String,
    instance_2: String,
    other_instance: String,
    binding_a: String,
    binding_b: String,
    binding_a_2: String,
    key: String,
    failed: String,
}

macro_rules! world {
    ($app:expr) => {{
        seed!($app, "/sim/orgs", json!({"name": "org", "guid": ORG}));
        seed!(
            $app,
            "/sim/spaces",
            json!({"name": "space", "org_guid": ORG, "guid": SPACE})
        );
        seed!(
            $app,
            "/sim/spaces",
            json!({"name": "other", "org_guid": ORG, "guid": OTHER_SPACE})
        );
        for (name, guid, space) in [
            ("a", APP_A, SPACE),
            ("b", APP_B, SPACE),
            ("elsewhere", APP_ELSEWHERE, OTHER_SPACE),
        ] {
            seed!(
                $app,
                "/sim/apps",
                json!({"name": name, "space_guid": space, "guid": guid})
            );
        }
        let ours = seed!(
            $app,
            "/sim/service_offerings",
            json!({
                "name": "gds-prometheus",
                "broker_catalog_id": SERVICE_ID,
                "broker_name": "cf-app-discovery",
                "plans": [{"name": "prometheus", "broker_catalog_id": PLAN_ID}],
            })
        );
        let theirs = seed!(
            $app,
            "/sim/service_offerings",
            json!({
                "name": "postgres",
                "broker_catalog_id": "pg-id",
                "broker_name": "rds",
                "plans": [{"name": "small", "broker_catalog_id": "pg-small", "free": false}],
            })
        );
        let plan = ours["service_plans"][0]["guid"].as_str().unwrap().to_owned();
        let other_plan = theirs["service_plans"][0]["guid"]
            .as_str()
            .unwrap()
            .to_owned();
        let instance = |name: &str, plan: &str| {
            json!({"name": name, "plan_guid": plan, "space_guid": SPACE})
        };
        let instance_1 = seed!($app, "/sim/service_instances", instance("prom-1", &plan));
        let instance_2 = seed!($app, "/sim/service_instances", instance("prom-2", &plan));
        let other_instance = seed!($app, "/sim/service_instances", instance("db", &other_plan));
        let g = |v: &Value| v["guid"].as_str().unwrap().to_owned();
        let (instance_1, instance_2, other_instance) =
            (g(&instance_1), g(&instance_2), g(&other_instance));
        let bind = |instance: &str, app: &str| {
            json!({"service_instance_guid": instance, "app_guid": app})
        };
        let binding_a = seed!(
            $app,
            "/sim/service_credential_bindings",
            bind(&instance_1, APP_A)
        );
        let binding_b = seed!(
            $app,
            "/sim/service_credential_bindings",
            bind(&instance_1, APP_B)
        );
        let binding_a_2 = seed!(
            $app,
            "/sim/service_credential_bindings",
            bind(&instance_2, APP_A)
        );
        let key = seed!(
            $app,
            "/sim/service_credential_bindings",
            json!({"service_instance_guid": instance_1, "type": "key", "name": "k"})
        );
        let failed = seed!(
            $app,
            "/sim/service_credential_bindings",
            json!({
                "service_instance_guid": instance_2,
                "app_guid": APP_B,
                "last_operation": {"type": "create", "state": "failed"},
            })
        );
        seed!(
            $app,
            "/sim/service_credential_bindings",
            bind(&other_instance, APP_B)
        );
        World {
            offering: ours["service_offering"]["guid"].as_str().unwrap().to_owned(),
            plan,
            other_plan,
            instance_1,
            instance_2,
            other_instance,
            binding_a: g(&binding_a),
            binding_b: g(&binding_b),
            binding_a_2: g(&binding_a_2),
            key: g(&key),
            failed: g(&failed),
        }
    }};
}

#[actix_web::test]
async fn an_old_brokers_offering_and_plan_are_found_by_their_catalog_ids() {
    let app = test::init_service(cf_sim::app(state())).await;
    let w = world!(app);
    let token = admin_token!(app);

    let offerings = get!(
        app,
        token,
        format!("/v3/service_offerings?broker_catalog_ids={SERVICE_ID}")
    );
    assert_eq!(offerings.status, 200, "{}", offerings.body);
    assert_eq!(guids(&offerings.body), [w.offering.as_str()]);
    let o = &offerings.body["resources"][0];
    assert_eq!(o["name"], "gds-prometheus");
    assert_eq!(o["broker_catalog"]["id"], SERVICE_ID);
    assert_eq!(o["broker_catalog"]["features"]["bindable"], true);
    assert!(o["relationships"]["service_broker"]["data"]["guid"].is_string());
    assert_eq!(
        o["links"]["service_plans"]["href"],
        format!(
            "{BASE}/v3/service_plans?service_offering_guids={}",
            w.offering
        )
    );

    // Names are case-insensitive; filters combine; an unknown value finds nothing.
    let by_name = get!(app, token, "/v3/service_offerings?names=GDS-Prometheus");
    assert_eq!(guids(&by_name.body), [w.offering.as_str()]);
    let none = get!(app, token, "/v3/service_offerings?broker_catalog_ids=nope");
    assert_eq!(none.status, 200);
    assert_eq!(none.body["pagination"]["total_results"], 0);
    assert_eq!(none.body["resources"], json!([]));
    let brokers = get!(
        app,
        token,
        format!(
            "/v3/service_offerings?service_broker_names=cf-app-discovery&fields%5Bservice_broker%5D=name"
        )
    );
    assert_eq!(guids(&brokers.body), [w.offering.as_str()]);
    assert_eq!(
        brokers.body["included"]["service_brokers"],
        json!([{"name": "cf-app-discovery"}])
    );

    let plans = get!(
        app,
        token,
        format!(
            "/v3/service_plans?service_offering_guids={}&broker_catalog_ids={PLAN_ID}&include=service_offering",
            w.offering
        )
    );
    assert_eq!(plans.status, 200, "{}", plans.body);
    assert_eq!(guids(&plans.body), [w.plan.as_str()]);
    let p = &plans.body["resources"][0];
    assert_eq!(p["name"], "prometheus");
    assert_eq!(p["broker_catalog"]["id"], PLAN_ID);
    assert_eq!(p["free"], true);
    assert_eq!(
        p["relationships"]["service_offering"]["data"]["guid"],
        w.offering
    );
    assert_eq!(
        guids(&json!({"resources": plans.body["included"]["service_offerings"]})),
        [w.offering.as_str()]
    );
    // The plan id of another offering gives nothing.
    let crossed = get!(
        app,
        token,
        format!(
            "/v3/service_plans?service_offering_guids={}&broker_catalog_ids=pg-small",
            w.offering
        )
    );
    assert_eq!(crossed.body["resources"], json!([]));
    let of_instance = get!(
        app,
        token,
        format!(
            "/v3/service_plans?service_instance_guids={}",
            w.other_instance
        )
    );
    assert_eq!(guids(&of_instance.body), [w.other_plan.as_str()]);

    let one = get!(app, token, format!("/v3/service_plans/{}", w.plan));
    assert_eq!(one.body["broker_catalog"]["id"], PLAN_ID);
    let missing = get!(app, token, "/v3/service_offerings/nope");
    assert_eq!(missing.status, 404);
    assert_eq!(missing.body["errors"][0]["title"], "CF-ResourceNotFound");
    assert_eq!(
        missing.body["errors"][0]["detail"],
        "Service offering not found"
    );
}

#[actix_web::test]
async fn instances_of_a_plan_come_with_their_space_and_organization_as_fields() {
    let app = test::init_service(cf_sim::app(state())).await;
    let w = world!(app);
    let token = admin_token!(app);

    let list = get!(
        app,
        token,
        format!(
            "/v3/service_instances?service_plan_guids={}&fields%5Bspace%5D=guid,relationships.organization&fields%5Bspace.organization%5D=guid",
            w.plan
        )
    );
    assert_eq!(list.status, 200, "{}", list.body);
    assert_eq!(
        guids(&list.body),
        [w.instance_1.as_str(), w.instance_2.as_str()]
    );
    let i = &list.body["resources"][0];
    assert_eq!(i["name"], "prom-1");
    assert_eq!(i["type"], "managed");
    assert_eq!(i["relationships"]["service_plan"]["data"]["guid"], w.plan);
    assert_eq!(i["relationships"]["space"]["data"]["guid"], SPACE);
    assert_eq!(i["last_operation"]["type"], "create");
    assert_eq!(i["last_operation"]["state"], "succeeded");
    assert_eq!(
        list.body["included"],
        json!({
            "spaces": [{"guid": SPACE, "relationships": {"organization": {"data": {"guid": ORG}}}}],
            "organizations": [{"guid": ORG}],
        })
    );

    // Filters: an unknown plan or space finds nothing; type user-provided neither.
    for query in [
        "service_plan_guids=nope".to_owned(),
        format!("service_plan_guids={}&space_guids={OTHER_SPACE}", w.plan),
        "type=user-provided".to_owned(),
    ] {
        let r = get!(app, token, format!("/v3/service_instances?{query}"));
        assert_eq!(r.status, 200, "{query}: {}", r.body);
        assert_eq!(r.body["resources"], json!([]), "{query}");
    }
    let by_org = get!(
        app,
        token,
        format!("/v3/service_instances?organization_guids={ORG}&service_plan_names=small")
    );
    assert_eq!(guids(&by_org.body), [w.other_instance.as_str()]);

    // Bad `fields` and `type` are 400s, as in the CC.
    for query in [
        "fields%5Bapp%5D=guid",
        "fields%5Bspace%5D=guid,quota",
        "type=ghost",
        "service_offering_guids=x",
    ] {
        let r = get!(app, token, format!("/v3/service_instances?{query}"));
        assert_eq!(r.status, 400, "{query}: {}", r.body);
        assert_eq!(r.body["errors"][0]["title"], "CF-BadQueryParameter");
    }

    let one = get!(
        app,
        token,
        format!(
            "/v3/service_instances/{}?fields%5Bspace%5D=name",
            w.instance_2
        )
    );
    assert_eq!(one.body["name"], "prom-2");
    assert_eq!(one.body["included"]["spaces"], json!([{"name": "space"}]));
}

#[actix_web::test]
async fn app_bindings_of_instances_page_through_with_their_filters() {
    let app = test::init_service(cf_sim::app(state())).await;
    let w = world!(app);
    let token = admin_token!(app);

    // Every credential binding of our two instances: 3 app bindings, a key, a failed one.
    let all = get!(
        app,
        token,
        format!(
            "/v3/service_credential_bindings?service_instance_guids={},{}",
            w.instance_1, w.instance_2
        )
    );
    assert_eq!(all.body["pagination"]["total_results"], 5, "{}", all.body);

    // type=app, two per page: the links repeat the filters and lead through every page.
    let mut page = get!(
        app,
        token,
        format!(
            "/v3/service_credential_bindings?service_instance_guids={},{}&type=app&per_page=2",
            w.instance_1, w.instance_2
        )
    );
    assert_eq!(page.status, 200, "{}", page.body);
    assert_eq!(page.body["pagination"]["total_results"], 4);
    assert_eq!(page.body["pagination"]["total_pages"], 2);
    let next = &page.body["pagination"]["next"]["href"];
    assert!(
        next.as_str().unwrap().contains("type=app"),
        "the next link repeats the filters: {next}"
    );
    let mut seen = guids(&page.body);
    while !page.body["pagination"]["next"].is_null() {
        page = get!(app, token, path_of(&page.body["pagination"]["next"]));
        assert_eq!(page.status, 200);
        seen.extend(guids(&page.body));
    }
    assert_eq!(
        seen,
        [
            w.binding_a.as_str(),
            w.binding_b.as_str(),
            w.binding_a_2.as_str(),
            w.failed.as_str()
        ]
    );

    let first = get!(
        app,
        token,
        format!("/v3/service_credential_bindings/{}", w.binding_a)
    );
    assert_eq!(first.body["type"], "app");
    assert_eq!(first.body["name"], Value::Null);
    assert_eq!(first.body["relationships"]["app"]["data"]["guid"], APP_A);
    assert_eq!(
        first.body["relationships"]["service_instance"]["data"]["guid"],
        w.instance_1
    );
    assert_eq!(first.body["last_operation"]["state"], "succeeded");
    let failed = get!(
        app,
        token,
        format!("/v3/service_credential_bindings/{}", w.failed)
    );
    assert_eq!(failed.body["last_operation"]["state"], "failed");
    let key = get!(
        app,
        token,
        format!("/v3/service_credential_bindings/{}", w.key)
    );
    assert_eq!(key.body["type"], "key");
    assert_eq!(key.body["name"], "k");
    assert!(key.body["relationships"].get("app").is_none());

    // Other filters, include=app, and errors.
    let of_app = get!(
        app,
        token,
        format!("/v3/service_credential_bindings?app_guids={APP_A}&include=app,service_instance")
    );
    assert_eq!(
        guids(&of_app.body),
        [w.binding_a.as_str(), w.binding_a_2.as_str()]
    );
    assert_eq!(
        guids(&json!({"resources": of_app.body["included"]["apps"]})),
        [APP_A]
    );
    assert_eq!(
        of_app.body["included"]["service_instances"]
            .as_array()
            .unwrap()
            .len(),
        2
    );
    let by_offering = get!(
        app,
        token,
        "/v3/service_credential_bindings?service_offering_names=postgres"
    );
    assert_eq!(by_offering.body["pagination"]["total_results"], 1);
    let keys = get!(app, token, "/v3/service_credential_bindings?type=key");
    assert_eq!(guids(&keys.body), [w.key.as_str()]);
    let nothing = get!(
        app,
        token,
        "/v3/service_credential_bindings?service_instance_guids=nope&type=app"
    );
    assert_eq!(nothing.status, 200);
    assert_eq!(nothing.body["resources"], json!([]));
    let bad = get!(app, token, "/v3/service_credential_bindings?type=route");
    assert_eq!(bad.status, 400);
    let unauthenticated = call!(
        app,
        TestRequest::get().uri("/v3/service_credential_bindings")
    );
    assert_eq!(unauthenticated.status, 401);
}

#[actix_web::test]
async fn the_control_api_keeps_the_ccs_rules_and_deleting_an_app_unbinds_it() {
    let s = state();
    let app = test::init_service(cf_sim::app(s.clone())).await;
    let w = world!(app);
    let token = admin_token!(app);

    // An app binding needs an app in the instance's space; a key needs a unique name.
    for (body, why) in [
        (
            json!({"service_instance_guid": w.instance_1, "app_guid": APP_ELSEWHERE}),
            "different spaces",
        ),
        (
            json!({"service_instance_guid": w.instance_1}),
            "needs an app_guid",
        ),
        (
            json!({"service_instance_guid": "nope", "app_guid": APP_A}),
            "could not be found",
        ),
        (
            json!({"service_instance_guid": w.instance_1, "type": "key", "name": "k"}),
            "must be unique",
        ),
    ] {
        let r = control!(app, post, "/sim/service_credential_bindings", body);
        assert_eq!(r.status, 422, "{body}: {}", r.body);
        let detail = r.body["errors"][0]["detail"].as_str().unwrap();
        assert!(detail.contains(why), "{detail}");
    }
    let taken = control!(
        app,
        post,
        "/sim/service_instances",
        json!({"name": "prom-1", "plan_guid": w.plan, "space_guid": SPACE})
    );
    assert_eq!(taken.status, 422, "{}", taken.body);
    let duplicate = control!(
        app,
        post,
        "/sim/service_offerings",
        json!({"name": "gds-prometheus", "broker_catalog_id": SERVICE_ID, "broker_name": "cf-app-discovery",
               "plans": [{"name": "prometheus", "broker_catalog_id": PLAN_ID}]})
    );
    assert_eq!(duplicate.status, 422, "{}", duplicate.body);

    let index = call!(app, TestRequest::get().uri("/sim"));
    assert_eq!(index.body["world"]["service_instances"], 3);
    assert!(index.body["endpoints"]["POST /sim/service_credential_bindings"].is_string());

    // `cf delete` of app a: its two bindings go, b's stay.
    let deleted = control!(app, delete, format!("/sim/apps/{APP_A}"), json!({}));
    assert_eq!(deleted.status, 200, "{}", deleted.body);
    let left = get!(
        app,
        token,
        format!(
            "/v3/service_credential_bindings?service_instance_guids={},{}&type=app",
            w.instance_1, w.instance_2
        )
    );
    assert_eq!(guids(&left.body), [w.binding_b.as_str(), w.failed.as_str()]);

    // Deleting a binding, then an instance (with its remaining bindings).
    let gone = control!(
        app,
        delete,
        format!("/sim/service_credential_bindings/{}", w.failed),
        json!({})
    );
    assert_eq!(gone.status, 204);
    let again = control!(
        app,
        delete,
        format!("/sim/service_credential_bindings/{}", w.failed),
        json!({})
    );
    assert_eq!(again.status, 404);
    let gone = control!(
        app,
        delete,
        format!("/sim/service_instances/{}", w.instance_1),
        json!({})
    );
    assert_eq!(gone.status, 204);
    let left = get!(
        app,
        token,
        format!(
            "/v3/service_credential_bindings?service_instance_guids={}",
            w.instance_1
        )
    );
    assert_eq!(left.body["resources"], json!([]));

    // A reset forgets every service resource.
    let reset = control!(app, post, "/sim/reset", json!({}));
    assert_eq!(reset.status, 200, "{}", reset.body);
    let token = admin_token!(app);
    let none = get!(app, token, "/v3/service_instances");
    assert_eq!(none.body["resources"], json!([]));
}
