//! The simulator's HTTP behaviour, in-process (`actix_web::test`, no socket).

#[macro_use]
mod common;

use std::collections::HashSet;

use actix_web::test::{self, TestRequest};
use actix_web::web;
use base64::Engine;
use cf_sim::{SimConfig, SimState};
use serde_json::{Value, json};

use common::{BASE, Reply, guids, path_of};

fn state(config: SimConfig) -> web::Data<SimState> {
    web::Data::new(SimState::new(config, BASE).unwrap())
}

fn seeded(apps: usize, spaces: usize) -> SimConfig {
    SimConfig {
        seed_apps: apps,
        seed_spaces: Some(spaces),
        ..SimConfig::default()
    }
}

/// A client_credentials token of the broker client (global auditor).
macro_rules! client_token {
    ($app:expr) => {{
        let basic = base64::engine::general_purpose::STANDARD
            .encode("gds-prometheus:gds-prometheus-secret");
        let r = call!(
            $app,
            TestRequest::post()
                .uri("/oauth/token")
                .insert_header(("Authorization", format!("Basic {basic}")))
                .set_payload("grant_type=client_credentials")
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"].as_str().unwrap().to_string()
    }};
}

macro_rules! send {
    ($app:expr, $method:ident, $token:expr, $uri:expr, $body:expr) => {
        call!(
            $app,
            TestRequest::$method()
                .uri(&$uri)
                .insert_header(("Authorization", format!("bearer {}", $token)))
                .insert_header(("Content-Type", "application/json"))
                .set_payload($body.to_string())
        )
    };
}

fn error_of(r: &Reply) -> (u16, &str, i64) {
    let e = &r.body["errors"][0];
    (
        r.status,
        e["title"].as_str().unwrap_or(""),
        e["code"].as_i64().unwrap_or(-1),
    )
}

#[actix_web::test]
async fn list_pages_link_absolutely_repeat_filters_and_end_with_null() {
    let s = state(seeded(12, 3));
    let app = test::init_service(cf_sim::app(s.clone())).await;
    let token = admin_token!(app);
    let spaces = get!(app, token, "/v3/spaces?order_by=name");
    let sg = guids(&spaces.body);
    assert_eq!(sg.len(), 3);

    let first = get!(
        app,
        token,
        format!(
            "/v3/apps?space_guids={},{}&per_page=3&order_by=created_at",
            sg[0], sg[1]
        )
    );
    assert_eq!(first.status, 200);
    let p = &first.body["pagination"];
    assert_eq!(p["total_results"], 8); // apps 1,2,4,5,7,8,10,11
    assert_eq!(p["total_pages"], 3);
    assert_eq!(p["previous"], Value::Null);
    assert_eq!(
        p["next"]["href"],
        format!(
            "{BASE}/v3/apps?order_by=created_at&page=2&per_page=3&space_guids={}%2C{}",
            sg[0], sg[1]
        )
    );
    assert!(
        p["first"]["href"]
            .as_str()
            .unwrap()
            .contains("page=1&per_page=3")
    );
    assert!(
        p["last"]["href"]
            .as_str()
            .unwrap()
            .contains("page=3&per_page=3")
    );

    let mut seen = guids(&first.body);
    let mut next = p["next"].clone();
    let mut pages = 1;
    while !next.is_null() {
        let page = get!(app, token, path_of(&next));
        assert_eq!(page.status, 200);
        assert!(!page.body["pagination"]["previous"].is_null());
        seen.extend(guids(&page.body));
        next = page.body["pagination"]["next"].clone();
        pages += 1;
    }
    assert_eq!(pages, 3);
    let names: Vec<String> = {
        let all = get!(app, token, format!("/v3/apps?guids={}", seen.join(",")));
        all.body["resources"]
            .as_array()
            .unwrap()
            .iter()
            .map(|a| a["name"].as_str().unwrap().to_string())
            .collect()
    };
    assert_eq!(
        names,
        [
            "app-00001",
            "app-00002",
            "app-00004",
            "app-00005",
            "app-00007",
            "app-00008",
            "app-00010",
            "app-00011"
        ]
    );
}

#[actix_web::test]
async fn per_page_bounds_and_unknown_parameters_are_400_bad_query_parameter() {
    let app = test::init_service(cf_sim::app(state(seeded(3, 1)))).await;
    let token = admin_token!(app);
    for bad in ["0", "5001"] {
        let r = get!(app, token, format!("/v3/apps?per_page={bad}"));
        assert_eq!(error_of(&r), (400, "CF-BadQueryParameter", 10005));
        assert!(
            r.body["errors"][0]["detail"]
                .as_str()
                .unwrap()
                .contains("Per page must be between 1 and 5000")
        );
    }
    assert_eq!(get!(app, token, "/v3/apps?per_page=5000").status, 200);

    let r = get!(app, token, "/v3/processes?foo=bar");
    assert_eq!(error_of(&r), (400, "CF-BadQueryParameter", 10005));
    let detail = r.body["errors"][0]["detail"].as_str().unwrap();
    assert!(
        detail.contains(
            "Unknown query parameter(s): 'foo'. Valid parameters are: 'guids', 'types', 'app_guids'"
        ),
        "{detail}"
    );
    assert_eq!(get!(app, token, "/v3/apps/x?per_page=2").status, 400);
}

#[actix_web::test]
async fn include_space_organization_adds_only_the_pages_spaces_and_orgs() {
    let app = test::init_service(cf_sim::app(state(SimConfig {
        seed_apps: 40,
        seed_spaces: Some(20),
        seed_orgs: Some(10),
        ..SimConfig::default()
    })))
    .await;
    let token = admin_token!(app);
    let r = get!(app, token, "/v3/apps?per_page=4&include=space.organization");
    let page_spaces: HashSet<&str> = r.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| {
            a["relationships"]["space"]["data"]["guid"]
                .as_str()
                .unwrap()
        })
        .collect();
    let included = &r.body["included"];
    let spaces = included["spaces"].as_array().unwrap();
    assert_eq!(spaces.len(), 4);
    assert!(
        spaces
            .iter()
            .all(|s| page_spaces.contains(s["guid"].as_str().unwrap()))
    );
    let org_guids: HashSet<&str> = spaces
        .iter()
        .map(|s| {
            s["relationships"]["organization"]["data"]["guid"]
                .as_str()
                .unwrap()
        })
        .collect();
    let orgs = included["organizations"].as_array().unwrap();
    assert_eq!(orgs.len(), org_guids.len());
    assert!(
        orgs.iter()
            .all(|o| org_guids.contains(o["guid"].as_str().unwrap()))
    );

    let r = get!(app, token, "/v3/apps?per_page=4&include=space");
    assert!(r.body["included"]["spaces"].is_array());
    assert!(r.body["included"].get("organizations").is_none());
    let r = get!(app, token, "/v3/apps?per_page=4");
    assert!(r.body.get("included").is_none());

    let one = guids(&get!(app, token, "/v3/apps?per_page=1").body).remove(0);
    let r = get!(
        app,
        token,
        format!("/v3/apps/{one}?include=space.organization")
    );
    assert_eq!(r.body["guid"], one);
    assert_eq!(r.body["included"]["spaces"].as_array().unwrap().len(), 1);
    assert_eq!(
        r.body["included"]["organizations"]
            .as_array()
            .unwrap()
            .len(),
        1
    );
}

#[actix_web::test]
async fn demo_apps_have_the_documented_shapes() {
    let app = test::init_service(cf_sim::app(state(SimConfig {
        demo: true,
        ..SimConfig::default()
    })))
    .await;
    let token = client_token!(app);
    let apps = get!(app, token, "/v3/apps?order_by=name");
    let names: Vec<&str> = apps.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        names,
        [
            "api",
            "batch-worker",
            "orders-venerable",
            "paas-metric-exporter",
            "web-shop"
        ]
    );
    let api = cf_sim::seed::demo_app_guid("api").unwrap();
    let a = get!(app, token, format!("/v3/apps/{api}"));
    assert_eq!(a.body["state"], "STARTED");
    assert_eq!(
        a.body["links"]["self"]["href"],
        format!("{BASE}/v3/apps/{api}")
    );
    assert_eq!(a.body["created_at"], "2025-01-01T00:02:00Z");

    let exporters = get!(
        app,
        token,
        "/v3/apps?label_selector=prometheus.gds/exporter=true"
    );
    assert_eq!(
        exporters.body["resources"][0]["name"],
        "paas-metric-exporter"
    );
    assert_eq!(
        exporters.body["resources"][0]["metadata"]["labels"]["prometheus.gds/exporter"],
        "true"
    );
    let exporter = exporters.body["resources"][0]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let procs = get!(app, token, format!("/v3/processes?app_guids={exporter}"));
    assert_eq!(
        procs.body["resources"][0]["command"],
        "[PRIVATE DATA HIDDEN IN LISTS]"
    );
    let pg = procs.body["resources"][0]["guid"]
        .as_str()
        .unwrap()
        .to_string();
    let proc_ = get!(app, token, format!("/v3/processes/{pg}"));
    assert_eq!(proc_.body["command"], "./bin/paas-metric-exporter");

    let routes = get!(
        app,
        token,
        format!("/v3/routes?app_guids={api}&include=domain")
    );
    let rs = routes.body["resources"].as_array().unwrap();
    let urls: Vec<&str> = rs.iter().map(|r| r["url"].as_str().unwrap()).collect();
    assert_eq!(
        urls,
        [
            "api.apps.example.com",
            "api.apps.example.com/internal/metrics"
        ]
    );
    let r0 = &rs[0];
    assert_eq!(r0["host"], "api");
    assert_eq!(r0["path"], "");
    assert!(r0.get("options").is_none());
    let d = &r0["destinations"][0];
    assert_eq!(d["app"]["guid"], api.as_str());
    assert_eq!(d["app"]["process"]["type"], "web");
    assert_eq!(
        (d["port"].as_u64(), d["protocol"].as_str()),
        (Some(8080), Some("http1"))
    );
    let domains = routes.body["included"]["domains"].as_array().unwrap();
    assert_eq!(domains.len(), 1);
    assert_eq!(domains[0]["name"], "apps.example.com");
    assert_eq!(domains[0]["internal"], false);

    let app_routes = get!(app, token, format!("/v3/apps/{api}/routes"));
    assert_eq!(app_routes.body["pagination"]["total_results"], 2);
    let domains = get!(app, token, "/v3/domains");
    let internal: Vec<bool> = domains.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|d| d["internal"].as_bool().unwrap())
        .collect();
    assert_eq!(internal, [false, true]);
}

#[actix_web::test]
async fn stats_are_running_rows_when_started_and_reduced_down_rows_when_stopped() {
    let app = test::init_service(cf_sim::app(state(SimConfig {
        demo: true,
        ..SimConfig::default()
    })))
    .await;
    let token = admin_token!(app);
    let shop = cf_sim::seed::demo_app_guid("web-shop").unwrap();
    let procs = get!(app, token, format!("/v3/apps/{shop}/processes"));
    let web = procs.body["resources"][0]["guid"]
        .as_str()
        .unwrap()
        .to_string();

    let stats = get!(app, token, format!("/v3/processes/{web}/stats"));
    let rows = stats.body["resources"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["index"], 1);
    assert!(
        rows.iter()
            .all(|r| r["state"] == "RUNNING" && r["instance_guid"].is_string())
    );
    assert!(stats.body.get("pagination").is_none());

    let stopped = send!(
        app,
        post,
        token,
        format!("/v3/apps/{shop}/actions/stop"),
        ""
    );
    assert_eq!(
        (stopped.status, stopped.body["state"].as_str()),
        (200, Some("STOPPED"))
    );
    let p = get!(app, token, format!("/v3/processes/{web}"));
    assert_eq!(p.body["instances"], 2, "stop leaves instances intact");
    let stats = get!(app, token, format!("/v3/apps/{shop}/processes/web/stats"));
    let rows = stats.body["resources"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    for row in rows {
        let mut keys: Vec<&str> = row
            .as_object()
            .unwrap()
            .keys()
            .map(String::as_str)
            .collect();
        keys.sort();
        assert_eq!(
            keys,
            [
                "details",
                "index",
                "isolation_segment",
                "routable",
                "state",
                "type",
                "uptime"
            ]
        );
        assert_eq!(row["state"], "DOWN");
        assert_eq!(row["uptime"], 0);
    }

    let scaled = send!(
        app,
        post,
        token,
        format!("/v3/apps/{shop}/processes/web/actions/scale"),
        json!({"instances": 0})
    );
    assert_eq!(scaled.status, 202);
    let stats = get!(app, token, format!("/v3/processes/{web}/stats"));
    assert_eq!(stats.body["resources"], json!([]));
}

#[actix_web::test]
async fn a_rolling_deploy_shows_two_web_processes_until_it_finishes() {
    let app = test::init_service(cf_sim::app(state(SimConfig {
        demo: true,
        ..SimConfig::default()
    })))
    .await;
    let token = client_token!(app);
    let api = cf_sim::seed::demo_app_guid("api").unwrap();
    let new = control!(
        app,
        post,
        format!("/sim/apps/{api}/rolling-deploy"),
        json!({"instances": 1})
    );
    assert_eq!(new.status, 200, "{}", new.body);
    let new_guid = new.body["guid"].as_str().unwrap().to_string();

    let procs = get!(
        app,
        token,
        format!("/v3/processes?app_guids={api}&types=web")
    );
    let rows = procs.body["resources"].as_array().unwrap();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[1]["guid"], new_guid.as_str());
    assert!(rows[1]["created_at"].as_str() > rows[0]["created_at"].as_str());
    assert_eq!(
        (rows[0]["instances"].as_u64(), rows[1]["instances"].as_u64()),
        (Some(3), Some(1))
    );

    let events = get!(
        app,
        token,
        format!("/v3/audit_events?target_guids={api}&types=audit.app.deployment.create")
    );
    assert_eq!(events.body["pagination"]["total_results"], 1);

    let done = control!(
        app,
        post,
        format!("/sim/apps/{api}/rolling-deploy/finish"),
        ""
    );
    assert_eq!(done.body["guid"], new_guid.as_str());
    let procs = get!(
        app,
        token,
        format!("/v3/processes?app_guids={api}&types=web")
    );
    assert_eq!(guids(&procs.body), [new_guid]);
}

#[actix_web::test]
async fn tokens_are_checked_like_the_cloud_controller_does() {
    let s = state(seeded(2, 1));
    let app = test::init_service(cf_sim::app(s.clone())).await;

    let r = call!(app, TestRequest::get().uri("/v3/apps"));
    assert_eq!(error_of(&r), (401, "CF-NotAuthenticated", 10002));
    let r = get!(app, "not-a-jwt", "/v3/apps");
    assert_eq!(error_of(&r), (401, "CF-InvalidAuthToken", 1000));
    assert_eq!(r.body["errors"][0]["detail"], "Invalid Auth Token");

    let token = admin_token!(app);
    assert_eq!(get!(app, token, "/v3/apps").status, 200);
    let revoked = control!(app, post, "/sim/uaa/revoke", "");
    assert_eq!(revoked.body["revoked"], 1);
    let r = get!(app, token, "/v3/apps");
    assert_eq!(error_of(&r), (401, "CF-InvalidAuthToken", 1000));
    let fresh = admin_token!(app);
    assert_eq!(get!(app, fresh, "/v3/apps").status, 200);

    // A write-only token cannot read; a read-only client cannot write.
    let r = call!(
        app,
        TestRequest::post()
            .uri("/oauth/token")
            .insert_header(("Authorization", "Basic Y2Y6"))
            .set_payload(
                "grant_type=password&username=admin&password=admin&scope=cloud_controller.write"
            )
    );
    let write_only = r.body["access_token"].as_str().unwrap().to_string();
    assert_eq!(
        error_of(&get!(app, write_only, "/v3/apps")),
        (403, "CF-NotAuthorized", 10003)
    );
    let auditor = client_token!(app);
    let g = guids(&get!(app, auditor, "/v3/apps").body).remove(0);
    let r = send!(app, post, auditor, format!("/v3/apps/{g}/actions/stop"), "");
    assert_eq!(error_of(&r), (403, "CF-NotAuthorized", 10003));

    let r = get!(app, fresh, "/v3/apps/00000000-0000-4000-8000-000000000000");
    assert_eq!(error_of(&r), (404, "CF-ResourceNotFound", 10010));
    assert_eq!(r.body["errors"][0]["detail"], "App not found");
}

#[actix_web::test]
async fn uaa_publishes_keys_that_verify_its_tokens() {
    let app = test::init_service(cf_sim::app(state(SimConfig::default()))).await;
    let token = admin_token!(app);
    let keys = call!(app, TestRequest::get().uri("/token_keys"));
    let key = &keys.body["keys"][0];
    assert_eq!(
        (
            key["kty"].as_str(),
            key["alg"].as_str(),
            key["kid"].as_str(),
            key["e"].as_str()
        ),
        (Some("RSA"), Some("RS256"), Some("key-1"), Some("AQAB"))
    );
    assert!(
        key["value"]
            .as_str()
            .unwrap()
            .starts_with("-----BEGIN PUBLIC KEY-----")
    );
    let single = call!(app, TestRequest::get().uri("/token_key"));
    assert_eq!(&single.body, key);
    let oidc = call!(
        app,
        TestRequest::get().uri("/.well-known/openid-configuration")
    );
    assert_eq!(oidc.body["issuer"], format!("{BASE}/oauth/token"));
    assert_eq!(oidc.body["jwks_uri"], format!("{BASE}/token_keys"));

    for decoding in [
        jsonwebtoken::DecodingKey::from_rsa_components(
            key["n"].as_str().unwrap(),
            key["e"].as_str().unwrap(),
        )
        .unwrap(),
        jsonwebtoken::DecodingKey::from_rsa_pem(key["value"].as_str().unwrap().as_bytes()).unwrap(),
    ] {
        let mut v = jsonwebtoken::Validation::new(jsonwebtoken::Algorithm::RS256);
        v.set_audience(&["cloud_controller"]);
        v.set_issuer(&[oidc.body["issuer"].as_str().unwrap()]);
        let data = jsonwebtoken::decode::<Value>(&token, &decoding, &v).unwrap();
        assert_eq!(data.header.kid.as_deref(), Some("key-1"));
        assert_eq!(
            data.header.jku.as_deref(),
            Some("http://cf.test/token_keys")
        );
        assert!(data.claims["scope"].is_array());
    }

    let bad = call!(
        app,
        TestRequest::post()
            .uri("/oauth/token")
            .insert_header(("Authorization", "Basic Y2Y6"))
            .set_payload("grant_type=password&username=admin&password=wrong")
    );
    assert_eq!(bad.status, 401);
    assert_eq!(
        bad.body,
        json!({"error": "unauthorized", "error_description": "Bad credentials"})
    );

    control!(app, post, "/sim/uaa/down", json!({"down": true}));
    let down = call!(
        app,
        TestRequest::post()
            .uri("/oauth/token")
            .insert_header(("Authorization", "Basic Y2Y6"))
            .set_payload("grant_type=password&username=admin&password=admin")
    );
    assert_eq!(down.status, 503);
    control!(app, post, "/sim/uaa/down", json!({"down": false}));
    admin_token!(app);
}

#[actix_web::test]
async fn a_429_fault_has_the_real_rate_limit_shape_then_clears() {
    let app = test::init_service(cf_sim::app(state(seeded(2, 1)))).await;
    let token = admin_token!(app);
    let f = control!(
        app,
        post,
        "/sim/faults",
        json!({"path_prefix": "/v3/routes", "method": "GET", "status": 429, "retry_after": 7})
    );
    assert_eq!(f.status, 201);
    let r = get!(app, token, "/v3/routes");
    assert_eq!(r.status, 429);
    assert_eq!(r.header("retry-after"), Some("7"));
    assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("0"));
    assert!(r.header("x-ratelimit-limit").is_some() && r.header("x-ratelimit-reset").is_some());
    // JSON under text/plain, like CCNG's rate limiter.
    assert_eq!(
        r.body,
        json!({"errors": [{"detail": "Rate Limit Exceeded", "title": "CF-RateLimitExceeded", "code": 10013}]})
    );
    assert_eq!(
        get!(app, token, "/v3/routes").status,
        200,
        "count defaults to 1"
    );

    control!(
        app,
        post,
        "/sim/faults",
        json!({"path_prefix": "/v3/apps", "status": 502, "count": 0})
    );
    for _ in 0..3 {
        let r = get!(app, token, "/v3/apps");
        assert_eq!(r.status, 502);
        assert!(r.body.as_str().unwrap().starts_with("502 Bad Gateway"));
    }
    control!(
        app,
        post,
        "/sim/faults",
        json!({"path_prefix": "/v3/processes", "status": 503})
    );
    assert_eq!(
        error_of(&get!(app, token, "/v3/processes")),
        (503, "CF-ServiceUnavailable", 10015)
    );
    let cleared = control!(app, delete, "/sim/faults", "");
    assert_eq!(cleared.body["cleared"], 1);
    assert_eq!(get!(app, token, "/v3/apps").status, 200);

    control!(
        app,
        post,
        "/sim/faults",
        json!({"path_prefix": "/v3/domains", "delay_ms": 300})
    );
    let started = std::time::Instant::now();
    assert_eq!(get!(app, token, "/v3/domains").status, 200);
    assert!(started.elapsed() >= std::time::Duration::from_millis(300));
}

#[actix_web::test]
async fn rate_limiting_counts_per_subject_with_headers_on_every_response() {
    let app = test::init_service(cf_sim::app(state(SimConfig {
        seed_apps: 2,
        rate_limit: 10,
        rate_limit_window: 60,
        ..SimConfig::default()
    })))
    .await;
    let token = client_token!(app);
    let r = get!(app, token, "/v3/apps");
    assert_eq!(r.header("x-ratelimit-limit"), Some("10"));
    assert_eq!(r.header("x-ratelimit-remaining"), Some("9"));
    let reset: i64 = r.header("x-ratelimit-reset").unwrap().parse().unwrap();
    assert!(reset > cf_sim::util::now());
    for _ in 0..9 {
        assert_eq!(get!(app, token, "/v3/apps").status, 200);
    }
    let r = get!(app, token, "/v3/apps");
    assert_eq!(error_of(&r), (429, "CF-RateLimitExceeded", 10013));
    assert!(r.header("retry-after").unwrap().parse::<i64>().unwrap() > 0);
    // Unauthenticated roots and UAA are not limited; admin tokens are exempt (CCNG's
    // default), without rate-limit headers.
    assert_eq!(call!(app, TestRequest::get().uri("/")).status, 200);
    let admin = admin_token!(app);
    let r = get!(app, admin, "/v3/apps");
    assert_eq!(r.status, 200);
    assert_eq!(r.header("x-ratelimit-limit"), None);
    let counted = control!(app, get, "/sim/requests", "");
    assert_eq!(counted.body["rate_limited"], 1);
}

#[actix_web::test]
async fn v3_info_reports_the_rate_limits_only_when_the_limiter_is_on() {
    let off = test::init_service(cf_sim::app(state(SimConfig::default()))).await;
    let r = call!(off, TestRequest::get().uri("/v3/info"));
    assert_eq!(r.status, 200);
    assert_eq!(r.body["rate_limits"], Value::Null, "{}", r.body);

    let on = test::init_service(cf_sim::app(state(SimConfig {
        rate_limit: 2000,
        rate_limit_window: 3600,
        ..SimConfig::default()
    })))
    .await;
    let r = call!(on, TestRequest::get().uri("/v3/info"));
    assert_eq!(
        r.body["rate_limits"],
        json!({"enabled": true, "general_limit": 2000, "reset_interval_in_minutes": 60})
    );
    // With a token it is counted like any other call.
    let token = client_token!(on);
    let r = get!(on, token, "/v3/info");
    assert_eq!(r.header("x-ratelimit-limit"), Some("2000"));

    let scaled = test::init_service(cf_sim::app(state(SimConfig {
        rate_limit: 60,
        rate_limit_window: 20,
        ..SimConfig::default()
    })))
    .await;
    let r = call!(scaled, TestRequest::get().uri("/v3/info"));
    let minutes = r.body["rate_limits"]["reset_interval_in_minutes"]
        .as_f64()
        .unwrap();
    assert!((minutes - 20.0 / 60.0).abs() < 1e-9, "{minutes}");
}

#[actix_web::test]
async fn cc_mutations_record_audit_events_found_with_created_ats_gte() {
    let app = test::init_service(cf_sim::app(state(SimConfig {
        demo: true,
        ..SimConfig::default()
    })))
    .await;
    let token = admin_token!(app);
    let since = cf_sim::util::format_ts(cf_sim::util::now() - 1);
    let shop = cf_sim::seed::demo_app_guid("web-shop").unwrap();

    assert_eq!(
        send!(
            app,
            post,
            token,
            format!("/v3/apps/{shop}/actions/stop"),
            ""
        )
        .status,
        200
    );
    assert_eq!(
        send!(
            app,
            post,
            token,
            format!("/v3/apps/{shop}/actions/start"),
            ""
        )
        .status,
        200
    );
    let renamed = send!(
        app,
        patch,
        token,
        format!("/v3/apps/{shop}"),
        json!({"name": "web-shop-2"})
    );
    assert_eq!(renamed.body["name"], "web-shop-2");
    let scaled = send!(
        app,
        post,
        token,
        format!("/v3/apps/{shop}/processes/web/actions/scale"),
        json!({"instances": 4})
    );
    assert_eq!(
        (scaled.status, scaled.body["instances"].as_u64()),
        (202, Some(4))
    );

    let events = get!(
        app,
        token,
        format!(
            "/v3/audit_events?created_ats[gte]={since}&target_guids={shop}&order_by=created_at"
        )
    );
    let types: Vec<&str> = events.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "audit.app.stop",
            "audit.app.start",
            "audit.app.update",
            "audit.app.process.scale"
        ]
    );
    let scale = &events.body["resources"][3];
    assert_eq!(scale["target"]["type"], "app");
    assert_eq!(scale["target"]["name"], "web-shop-2");
    assert_eq!(scale["actor"]["name"], "admin");
    assert_eq!(scale["data"]["request"]["instances"], 4);
    assert_eq!(scale["data"]["process_type"], "web");
    assert!(scale["space"]["guid"].is_string() && scale["organization"]["guid"].is_string());
    assert_eq!(
        events.body["resources"][2]["data"],
        json!({"request": {"name": "web-shop-2"}})
    );
    let next_link = events.body["pagination"]["first"]["href"].as_str().unwrap();
    assert!(
        next_link.contains(&format!(
            "created_ats%5Bgte%5D={}",
            since.replace(':', "%3A")
        )),
        "{next_link}"
    );

    let future = cf_sim::util::format_ts(cf_sim::util::now() + 3600);
    let none = get!(
        app,
        token,
        format!("/v3/audit_events?created_ats[gt]={future}")
    );
    assert_eq!(none.body["pagination"]["total_results"], 0);

    // Delete: 202 + Location of a COMPLETE job; the app goes, its routes stay unmapped.
    let routes_before = get!(app, token, format!("/v3/apps/{shop}/routes"));
    let route = guids(&routes_before.body).remove(0);
    let deleted = send!(app, delete, token, format!("/v3/apps/{shop}"), "");
    assert_eq!(deleted.status, 202);
    let location = deleted.header("location").unwrap().to_string();
    assert!(location.starts_with(&format!("{BASE}/v3/jobs/")));
    let job = get!(app, token, location.strip_prefix(BASE).unwrap());
    assert_eq!(job.body["state"], "COMPLETE");
    let gone = get!(app, token, format!("/v3/apps/{shop}"));
    assert_eq!(error_of(&gone), (404, "CF-ResourceNotFound", 10010));
    let r = get!(app, token, format!("/v3/routes/{route}"));
    assert_eq!(r.body["destinations"], json!([]));
    let events = get!(
        app,
        token,
        format!(
            "/v3/audit_events?target_guids={shop}&types=audit.app.unmap-route,audit.app.delete-request"
        )
    );
    assert_eq!(events.body["pagination"]["total_results"], 2);
    let others = get!(
        app,
        token,
        format!("/v3/audit_events?target_guids[not]={shop}")
    );
    assert_eq!(others.body["pagination"]["total_results"], 0);
}

#[actix_web::test]
async fn control_api_builds_worlds_and_maps_routes_with_events() {
    let app = test::init_service(cf_sim::app(state(SimConfig::default()))).await;
    let token = client_token!(app);
    let org = control!(app, post, "/sim/orgs", json!({"name": "o1"}));
    assert_eq!(org.status, 201);
    let space = control!(
        app,
        post,
        "/sim/spaces",
        json!({"name": "s1", "org_guid": org.body["guid"]})
    );
    let fixed = "11111111-2222-4333-8444-555555555555";
    let a = control!(
        app,
        post,
        "/sim/apps",
        json!({
            "name": "my-app", "space_guid": space.body["guid"], "instances": 3,
            "labels": {"team": "x"}, "guid": fixed, "state": "STOPPED"
        })
    );
    assert_eq!(a.status, 201, "{}", a.body);
    assert_eq!(a.body["guid"], fixed);
    assert_eq!(a.body["state"], "STOPPED");
    let dup = control!(
        app,
        post,
        "/sim/apps",
        json!({"name": "my-app", "space_guid": space.body["guid"]})
    );
    assert_eq!(dup.status, 422);

    let r = control!(
        app,
        post,
        "/sim/routes",
        json!({"host": "", "app_guid": fixed})
    );
    assert_eq!(r.status, 201, "{}", r.body);
    assert_eq!(r.body["url"], "apps.example.com");
    let r2 = control!(
        app,
        post,
        "/sim/routes",
        json!({"host": "my-app", "path": "/metrics", "space_guid": space.body["guid"]})
    );
    assert_eq!(r2.body["destinations"], json!([]));
    let route2 = r2.body["guid"].as_str().unwrap().to_string();
    let mapped = control!(
        app,
        post,
        format!("/sim/routes/{route2}/destinations"),
        json!({"app_guid": fixed})
    );
    assert_eq!(mapped.body["destinations"][0]["app"]["guid"], fixed);
    let internal = control!(
        app,
        post,
        "/sim/routes",
        json!({"host": "my-app", "domain": "apps.internal", "app_guid": fixed})
    );
    assert_eq!(internal.body["url"], "my-app.apps.internal");
    let unmapped = control!(
        app,
        delete,
        format!("/sim/routes/{route2}/destinations/{fixed}"),
        ""
    );
    assert_eq!(unmapped.body["destinations"], json!([]));
    let bad = control!(
        app,
        post,
        "/sim/routes",
        json!({"host": "x", "path": "/", "app_guid": fixed})
    );
    assert_eq!(bad.status, 422);

    assert_eq!(
        control!(app, post, format!("/sim/apps/{fixed}/start"), "").body["state"],
        "STARTED"
    );
    assert_eq!(
        control!(
            app,
            post,
            format!("/sim/apps/{fixed}/scale"),
            json!({"instances": 5})
        )
        .body["instances"],
        5
    );
    assert_eq!(
        control!(
            app,
            post,
            format!("/sim/apps/{fixed}/rename"),
            json!({"name": "my-app-venerable"})
        )
        .body["name"],
        "my-app-venerable"
    );
    assert_eq!(
        control!(app, post, format!("/sim/apps/{fixed}/stop"), "").body["state"],
        "STOPPED"
    );

    let events = get!(app, token, format!("/v3/audit_events?target_guids={fixed}"));
    let types: Vec<&str> = events.body["resources"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["type"].as_str().unwrap())
        .collect();
    assert_eq!(
        types,
        [
            "audit.app.create",
            "audit.app.map-route",
            "audit.app.map-route",
            "audit.app.map-route",
            "audit.app.unmap-route",
            "audit.app.start",
            "audit.app.process.scale",
            "audit.app.update",
            "audit.app.stop",
        ]
    );
    let del = control!(app, delete, format!("/sim/apps/{fixed}"), "");
    assert_eq!(del.status, 200);
    assert_eq!(get!(app, token, format!("/v3/apps/{fixed}")).status, 404);
    assert_eq!(
        control!(app, delete, format!("/sim/apps/{fixed}"), "").status,
        404
    );

    let idx = call!(app, TestRequest::get().uri("/sim"));
    assert!(idx.body["endpoints"]["POST /sim/faults"].is_string());
    assert_eq!(idx.body["world"]["organizations"], 1);
}

#[actix_web::test]
async fn seeding_is_deterministic_and_reset_restores_start_up_state() {
    let a = test::init_service(cf_sim::app(state(SimConfig::default()))).await;
    let b = test::init_service(cf_sim::app(state(SimConfig::default()))).await;
    let seed = json!({"apps": 250, "spaces": 5});
    assert_eq!(control!(a, post, "/sim/seed", seed).body["apps"], 250);
    control!(b, post, "/sim/seed", seed);
    let (ta, tb) = (admin_token!(a), admin_token!(b));
    let pa = get!(a, ta, "/v3/routes?per_page=5000&include=domain");
    let pb = get!(b, tb, "/v3/routes?per_page=5000&include=domain");
    assert_eq!(pa.body, pb.body, "same seed, same API output");
    assert_eq!(control!(a, post, "/sim/seed", seed).status, 422);

    let reset = control!(a, post, "/sim/reset", json!({"empty": true}));
    assert_eq!(reset.status, 200);
    assert_eq!(
        get!(a, ta, "/v3/apps").body["pagination"]["total_results"],
        0,
        "tokens survive a reset"
    );
    assert_eq!(control!(a, post, "/sim/seed", seed).status, 200);
}

#[actix_web::test]
async fn request_counters_are_keyed_by_method_and_route_pattern() {
    let app = test::init_service(cf_sim::app(state(seeded(3, 1)))).await;
    let token = admin_token!(app);
    let g = guids(&get!(app, token, "/v3/apps").body).remove(0);
    get!(app, token, format!("/v3/apps/{g}"));
    get!(app, token, format!("/v3/apps/{g}/processes/web/stats"));
    get!(app, token, "/v3/apps");
    call!(app, TestRequest::get().uri("/v2/apps"));
    call!(app, TestRequest::get().uri("/token_keys"));
    let counts = call!(app, TestRequest::get().uri("/sim/requests"));
    let by = &counts.body["by_endpoint"];
    assert_eq!(by["GET /v3/apps"], 2);
    assert_eq!(by["GET /v3/apps/:guid"], 1);
    assert_eq!(by["GET /v3/apps/:guid/processes/:type/stats"], 1);
    assert_eq!(by["POST /oauth/token"], 1);
    assert_eq!(by["GET /v2/*"], 1);
    assert_eq!(by["GET /sim/requests"], 1);
    assert_eq!(counts.body["total_cc"], 5); // /v2/* counts as CC
    assert_eq!(counts.body["total_uaa"], 2);
    let cleared = call!(app, TestRequest::delete().uri("/sim/requests"));
    assert_eq!(cleared.body["total_cc"], 0);
}

#[actix_web::test]
async fn the_root_points_at_itself_for_uaa_and_v2_is_disabled() {
    let app = test::init_service(cf_sim::app(state(SimConfig::default()))).await;
    let root = call!(app, TestRequest::get().uri("/"));
    let links = &root.body["links"];
    assert_eq!(links["uaa"]["href"], BASE);
    assert_eq!(links["login"]["href"], BASE);
    assert_eq!(links["self"]["href"], BASE);
    assert_eq!(links["cloud_controller_v3"]["href"], format!("{BASE}/v3"));
    assert!(links["cloud_controller_v3"]["meta"]["version"].is_string());
    assert!(links.get("cloud_controller_v2").is_none());
    let v2 = call!(app, TestRequest::get().uri("/v2/apps"));
    assert_eq!(v2.status, 404);
    assert_eq!(v2.header("content-type"), Some("text/plain; charset=utf-8"));
    let info = call!(app, TestRequest::get().uri("/v2/info"));
    assert_eq!(info.body["support"], "CF API v2 is disabled");
    let token = admin_token!(app);
    let unknown = get!(app, token, "/v3/nonsense");
    assert_eq!(error_of(&unknown), (404, "CF-NotFound", 10000));
}

/// The big lists serve resources from a cache of presented JSON (`SimState::presented`):
/// a page from the cache is the same as the first one, and every change to the world
/// (through the v3 API, the control API, a reset) shows in the next page.
#[actix_web::test]
async fn cached_list_pages_follow_every_change_to_the_world() {
    let app = test::init_service(cf_sim::app(state(SimConfig {
        demo: true,
        ..SimConfig::default()
    })))
    .await;
    let token = admin_token!(app);
    let shop = cf_sim::seed::demo_app_guid("web-shop").unwrap();
    // The app's row in an apps page, or its web process' row in a processes page.
    let row = |page: &Value| -> Value {
        page["resources"]
            .as_array()
            .unwrap()
            .iter()
            .find(|r| r["guid"] == shop || r["relationships"]["app"]["data"]["guid"] == shop)
            .cloned()
            .unwrap_or(Value::Null)
    };
    let lists = async || {
        (
            get!(
                app,
                token,
                "/v3/apps?include=space.organization&per_page=5000"
            )
            .body,
            get!(app, token, "/v3/processes?types=web&per_page=5000").body,
            get!(app, token, "/v3/routes?include=domain&per_page=5000").body,
        )
    };
    let first = lists().await;
    assert_eq!(lists().await, first);
    let (apps, processes, routes) = &first;
    for page in [apps, processes, routes] {
        assert!(
            page["pagination"]["total_results"].as_u64().unwrap() > 0,
            "{page}"
        );
    }
    assert!(
        apps["included"]["spaces"]
            .as_array()
            .is_some_and(|s| !s.is_empty())
    );
    assert!(
        routes["included"]["domains"]
            .as_array()
            .is_some_and(|d| !d.is_empty())
    );
    assert_eq!(
        (&row(apps)["name"], &row(apps)["state"]),
        (&json!("web-shop"), &json!("STARTED"))
    );
    assert_eq!(row(processes)["instances"], 2);

    let renamed = send!(
        app,
        patch,
        token,
        format!("/v3/apps/{shop}"),
        json!({"name": "web-shop-2"})
    );
    assert_eq!(renamed.status, 200, "{}", renamed.body);
    let (apps, _, _) = lists().await;
    assert_eq!(row(&apps)["name"], "web-shop-2");

    let scaled = control!(
        app,
        post,
        format!("/sim/apps/{shop}/scale"),
        json!({"instances": 5})
    );
    assert_eq!(scaled.status, 200, "{}", scaled.body);
    let stopped = control!(app, post, format!("/sim/apps/{shop}/stop"), "");
    assert_eq!(stopped.status, 200, "{}", stopped.body);
    let (apps, processes, _) = lists().await;
    assert_eq!(row(&apps)["state"], "STOPPED");
    assert_eq!(row(&processes)["instances"], 5);

    let reset = control!(app, post, "/sim/reset", json!({"empty": true}));
    assert_eq!(reset.status, 200, "{}", reset.body);
    let (apps, processes, routes) = lists().await;
    for page in [&apps, &processes, &routes] {
        assert_eq!(page["pagination"]["total_results"], 0, "{page}");
    }
    control!(app, post, "/sim/reset", json!({}));
    assert_eq!(lists().await, first);
}
