//! The simulated gorouter and app instances, in-process (`actix_web::test`, no socket),
//! driven through the control API and the CC API of the same state.

use actix_web::http::header::HeaderMap;
use actix_web::test::{self, TestRequest};
use actix_web::web;
use cf_sim::seed::demo_app_guid;
use cf_sim::{SimConfig, SimState};
use serde_json::{Value, json};

const ORG: &str = "0a000000-0000-4000-8000-000000000001";
const SPACE: &str = "5a000000-0000-4000-8000-000000000001";
const FRONT: &str = "aa000000-0000-4000-8000-000000000001";
const METRICS: &str = "bb000000-0000-4000-8000-000000000002";
const APEX: &str = "cc000000-0000-4000-8000-000000000003";
const HIDDEN: &str = "dd000000-0000-4000-8000-000000000004";

struct Reply {
    status: u16,
    headers: HeaderMap,
    body: String,
}

impl Reply {
    fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }

    fn json(&self) -> Value {
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {}", self.body))
    }

    /// The `instance_index` label of `cf_sim_instance_info`, and its app guid.
    fn instance(&self) -> (String, u32) {
        let line = self
            .body
            .lines()
            .find(|l| l.starts_with("cf_sim_instance_info{"))
            .unwrap_or_else(|| panic!("no info line: {:?}", self.body));
        let label = |name: &str| {
            let start = line.find(&format!("{name}=\"")).unwrap() + name.len() + 2;
            line[start..].split('"').next().unwrap().to_string()
        };
        (label("app_guid"), label("instance_index").parse().unwrap())
    }
}

macro_rules! call {
    ($app:expr, $req:expr) => {{
        let res = test::call_service(&$app, $req.to_request()).await;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = test::read_body(res).await;
        Reply {
            status,
            headers,
            body: String::from_utf8_lossy(&bytes).into_owned(),
        }
    }};
}

/// `POST` a JSON body to the control API; asserts success.
macro_rules! control {
    ($sim:expr, $path:expr, $body:expr) => {{
        let r = call!(
            $sim,
            TestRequest::post()
                .uri($path)
                .insert_header(("Content-Type", "application/json"))
                .set_payload(serde_json::to_vec(&$body).unwrap())
        );
        assert!(r.status < 300, "{} -> {} {}", $path, r.status, r.body);
        r.json()
    }};
}

/// A GET through the router with `Host: host` and optional extra headers.
macro_rules! get {
    ($router:expr, $host:expr, $path:expr) => {
        get!($router, $host, $path, [])
    };
    ($router:expr, $host:expr, $path:expr, [$($h:expr),* $(,)?]) => {{
        #[allow(unused_mut)]
        let mut req = TestRequest::get().uri($path).insert_header(("Host", $host));
        $(req = req.insert_header($h);)*
        call!($router, req)
    }};
}

fn bearer(guid: &str) -> (&'static str, String) {
    ("Authorization", format!("Bearer {guid}"))
}

fn instance(guid: &str, index: u32) -> (&'static str, String) {
    ("X-CF-APP-INSTANCE", format!("{guid}:{index}"))
}

fn state(demo: bool) -> web::Data<SimState> {
    web::Data::new(
        SimState::new(
            SimConfig {
                demo,
                ..SimConfig::default()
            },
            "http://cf.test",
        )
        .unwrap(),
    )
}

/// Org, space and four apps: `front` (3 instances) on `shop`, `metrics-app` on
/// `shop/metrics`, `apex` on the bare apps domain and `hidden` only on `apps.internal`.
macro_rules! world {
    ($sim:expr) => {{
        control!($sim, "/sim/orgs", json!({"name": "o", "guid": ORG}));
        control!(
            $sim,
            "/sim/spaces",
            json!({"name": "s", "org_guid": ORG, "guid": SPACE})
        );
        for (guid, name, instances) in [
            (FRONT, "front", 3),
            (METRICS, "metrics-app", 1),
            (APEX, "apex", 1),
            (HIDDEN, "hidden", 1),
        ] {
            control!(
                $sim,
                "/sim/apps",
                json!({"name": name, "space_guid": SPACE, "guid": guid, "instances": instances})
            );
        }
        for (host, path, domain, app) in [
            ("shop", "", "apps.example.com", FRONT),
            ("shop", "/metrics", "apps.example.com", METRICS),
            ("", "", "apps.example.com", APEX),
            ("hidden", "", "apps.internal", HIDDEN),
        ] {
            control!(
                $sim,
                "/sim/routes",
                json!({"host": host, "path": path, "domain": domain, "app_guid": app})
            );
        }
    }};
}

#[actix_web::test]
async fn routes_by_host_and_longest_path_prefix() {
    let s = state(false);
    let sim = test::init_service(cf_sim::app(s.clone())).await;
    let router = test::init_service(cf_sim::router_app(s.clone())).await;
    world!(sim);

    for (host, path, app) in [
        ("shop.apps.example.com", "/", FRONT),
        ("shop.apps.example.com", "/anything/else", FRONT),
        ("shop.apps.example.com", "/metricsx", FRONT),
        ("shop.apps.example.com", "/metrics", METRICS),
        ("shop.apps.example.com", "/metrics/", METRICS),
        ("shop.apps.example.com", "/metrics/deeper?x=1", METRICS),
        ("SHOP.Apps.Example.com:8080", "/METRICS", METRICS),
        ("apps.example.com", "/metrics", APEX),
    ] {
        let r = get!(router, host, path, [bearer(app)]);
        assert_eq!(r.status, 200, "{host}{path}: {}", r.body);
        assert_eq!(r.instance().0, app, "{host}{path}");
        assert_eq!(
            r.header("content-type"),
            Some("text/plain; version=0.0.4; charset=utf-8")
        );
        assert_eq!(r.header("x-cf-routererror"), None);
    }

    // Internal domains are not routed; unknown hosts neither.
    for host in [
        "hidden.apps.internal",
        "nope.apps.example.com",
        "shop.apps.example.org",
    ] {
        let r = get!(router, host, "/metrics", [bearer(HIDDEN)]);
        assert_eq!(r.status, 404, "{host}");
        assert_eq!(r.header("x-cf-routererror"), Some("unknown_route"));
        assert_eq!(r.header("cache-control"), Some("no-cache, no-store"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(
            r.body,
            format!("404 Not Found: Requested route ('{host}') does not exist.\n")
        );
    }
    // The message names the Host as sent (gorouter prints `r.Host`).
    let r = get!(router, "nope.apps.example.com:8080", "/");
    assert_eq!(
        r.body,
        "404 Not Found: Requested route ('nope.apps.example.com:8080') does not exist.\n"
    );

    // Without X-CF-APP-INSTANCE the instances take turns.
    let mut seen: Vec<u32> = Vec::new();
    for _ in 0..6 {
        let r = get!(router, "shop.apps.example.com", "/", [bearer(FRONT)]);
        seen.push(r.instance().1);
    }
    assert_eq!(seen, [0, 1, 2, 0, 1, 2]);

    // Unmapping the path route sends /metrics to the shorter prefix at once.
    let routes = call!(sim, TestRequest::get().uri("/sim"));
    assert_eq!(routes.json()["router_url"], Value::Null);
    let metrics_route = {
        let st = s.world();
        st.routes
            .iter()
            .find(|r| r.path == "/metrics")
            .unwrap()
            .guid
            .clone()
    };
    let r = call!(
        sim,
        TestRequest::delete().uri(&format!(
            "/sim/routes/{metrics_route}/destinations/{METRICS}"
        ))
    );
    assert_eq!(r.status, 200, "{}", r.body);
    let r = get!(
        router,
        "shop.apps.example.com",
        "/metrics",
        [bearer(FRONT), instance(FRONT, 0)]
    );
    assert_eq!((r.status, r.instance()), (200, (FRONT.to_string(), 0)));
}

#[actix_web::test]
async fn malformed_instance_headers_are_400_before_any_lookup() {
    let s = state(false);
    let sim = test::init_service(cf_sim::app(s.clone())).await;
    let router = test::init_service(cf_sim::router_app(s.clone())).await;
    world!(sim);
    for (host, value) in [
        ("shop.apps.example.com", format!("{FRONT}%3A0")),
        (
            "shop.apps.example.com",
            format!("{}:0", FRONT.to_uppercase()),
        ),
        ("shop.apps.example.com", format!("{FRONT}:")),
        ("shop.apps.example.com", "front:0".to_string()),
        ("nope.apps.example.com", format!("{FRONT}:x")),
    ] {
        let r = get!(
            router,
            host,
            "/metrics",
            [bearer(FRONT), ("X-CF-APP-INSTANCE", value.clone())]
        );
        assert_eq!(r.status, 400, "{value}");
        assert_eq!(
            r.header("x-cf-routererror"),
            Some("invalid_cf_app_instance_header")
        );
        assert_eq!(r.header("cache-control"), Some("no-cache, no-store"));
        assert_eq!(r.header("content-type"), Some("text/plain; charset=utf-8"));
        assert_eq!(
            r.body,
            "400 Bad Request: Invalid X-CF-App-Instance Header\n"
        );
    }
    // An empty header counts as absent (nginx sends none for an empty value anyway).
    let r = get!(
        router,
        "shop.apps.example.com",
        "/",
        [bearer(FRONT), ("X-CF-APP-INSTANCE", "")]
    );
    assert_eq!(r.status, 200, "{}", r.body);
    // No Host at all (or the caller's own IP) is gorouter's empty_host.
    let r = call!(router, TestRequest::get().uri("/"));
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-cf-routererror"), Some("empty_host"));
    assert_eq!(r.body, "400 Bad Request: Request had empty Host header\n");
}

#[actix_web::test]
async fn instances_that_do_not_exist_are_400_unknown_route() {
    let s = state(false);
    let sim = test::init_service(cf_sim::app(s.clone())).await;
    let router = test::init_service(cf_sim::router_app(s.clone())).await;
    world!(sim);
    let host = "shop.apps.example.com";
    let unknown = |guid: &str, index: &str, host: &str| {
        format!(
            "400 Bad Request: Requested instance ('{index}') with guid ('{guid}') does not exist for route ('{host}')\n"
        )
    };

    for i in 0..3 {
        let r = get!(
            router,
            host,
            "/metrics-not",
            [bearer(FRONT), instance(FRONT, i)]
        );
        assert_eq!((r.status, r.instance()), (200, (FRONT.to_string(), i)));
    }
    // Index too high.
    let r = get!(router, host, "/", [bearer(FRONT), instance(FRONT, 3)]);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-cf-routererror"), Some("unknown_route"));
    assert_eq!(r.header("cache-control"), Some("no-cache, no-store"));
    assert_eq!(r.body, unknown(FRONT, "3", host));
    // Indices are compared as strings, like gorouter.
    let r = get!(
        router,
        host,
        "/",
        [bearer(FRONT), ("X-CF-APP-INSTANCE", format!("{FRONT}:01"))]
    );
    assert_eq!(r.body, unknown(FRONT, "01", host));
    // Another app's guid, on this route or none.
    let r = get!(router, host, "/", [bearer(APEX), instance(APEX, 0)]);
    assert_eq!(r.body, unknown(APEX, "0", host));
    let r = get!(router, "nope.apps.example.com", "/", [instance(FRONT, 0)]);
    assert_eq!(r.status, 400);
    assert_eq!(r.body, unknown(FRONT, "0", "nope.apps.example.com"));

    // Scale down through the control API: index 2 goes at once.
    control!(
        sim,
        &format!("/sim/apps/{FRONT}/scale"),
        json!({"instances": 2})
    );
    let r = get!(router, host, "/", [bearer(FRONT), instance(FRONT, 2)]);
    assert_eq!((r.status, r.body.clone()), (400, unknown(FRONT, "2", host)));
    let r = get!(router, host, "/", [bearer(FRONT), instance(FRONT, 1)]);
    assert_eq!(r.status, 200);

    // Scale through the CC API: the same world.
    let token = call!(
        sim,
        TestRequest::post()
            .uri("/oauth/token")
            .insert_header(("Authorization", "Basic Y2Y6"))
            .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
            .set_payload("grant_type=password&username=admin&password=admin")
    )
    .json()["access_token"]
        .as_str()
        .unwrap()
        .to_string();
    let r = call!(
        sim,
        TestRequest::post()
            .uri(&format!("/v3/apps/{FRONT}/processes/web/actions/scale"))
            .insert_header(("Authorization", format!("bearer {token}")))
            .insert_header(("Content-Type", "application/json"))
            .set_payload(r#"{"instances": 1}"#)
    );
    assert_eq!(r.status, 202, "{}", r.body);
    let r = get!(router, host, "/", [bearer(FRONT), instance(FRONT, 1)]);
    assert_eq!(r.status, 400);
    let r = get!(router, host, "/", [bearer(FRONT), instance(FRONT, 0)]);
    assert_eq!(r.status, 200);
}

#[actix_web::test]
async fn stopped_scaled_to_zero_and_deleted_apps() {
    let s = state(false);
    let sim = test::init_service(cf_sim::app(s.clone())).await;
    let router = test::init_service(cf_sim::router_app(s.clone())).await;
    world!(sim);
    let host = "shop.apps.example.com";

    control!(sim, &format!("/sim/apps/{FRONT}/stop"), json!({}));
    let r = get!(router, host, "/", [bearer(FRONT)]);
    assert_eq!(r.status, 503);
    assert_eq!(r.header("x-cf-routererror"), Some("no_endpoints"));
    assert_eq!(r.header("cache-control"), Some("public,max-age=2"));
    assert_eq!(
        r.body,
        "503 Service Unavailable: Requested route ('shop.apps.example.com') has no available endpoints.\n"
    );
    // A stopped app's instance does not exist either.
    let r = get!(router, host, "/", [bearer(FRONT), instance(FRONT, 0)]);
    assert_eq!(r.status, 400);
    assert_eq!(r.header("x-cf-routererror"), Some("unknown_route"));
    // The other app on the same host still answers on its path.
    let r = get!(router, host, "/metrics", [bearer(METRICS)]);
    assert_eq!(r.status, 200);

    control!(sim, &format!("/sim/apps/{FRONT}/start"), json!({}));
    assert_eq!(get!(router, host, "/", [bearer(FRONT)]).status, 200);

    control!(
        sim,
        &format!("/sim/apps/{FRONT}/scale"),
        json!({"instances": 0})
    );
    let r = get!(router, host, "/", [bearer(FRONT)]);
    assert_eq!(r.status, 503);

    // Deleting the app drops its destinations (the route stays): unknown route.
    let r = call!(
        sim,
        TestRequest::delete().uri(&format!("/sim/apps/{FRONT}"))
    );
    assert_eq!(r.status, 200);
    let r = get!(router, host, "/", [bearer(FRONT)]);
    assert_eq!(r.status, 404);
    assert_eq!(r.header("x-cf-routererror"), Some("unknown_route"));
}

#[actix_web::test]
async fn instances_want_their_own_app_guid_as_bearer_token() {
    let s = state(true);
    let sim = test::init_service(cf_sim::app(s.clone())).await;
    let router = test::init_service(cf_sim::router_app(s.clone())).await;
    let shop = demo_app_guid("web-shop").unwrap();
    let api = demo_app_guid("api").unwrap();
    let host = "web-shop.apps.example.com";

    for auth in [
        None,
        Some(format!("Bearer {api}")),
        Some(format!("bearer {shop}")),
        Some(shop.clone()),
    ] {
        let mut req = TestRequest::get()
            .uri("/metrics")
            .insert_header(("Host", host))
            .insert_header(instance(&shop, 1));
        if let Some(auth) = &auth {
            req = req.insert_header(("Authorization", auth.clone()));
        }
        let r = call!(router, req);
        assert_eq!(r.status, 401, "{auth:?}");
        assert_eq!(r.header("x-cf-routererror"), None);
    }

    let r = get!(
        router,
        host,
        "/metrics",
        [bearer(&shop), instance(&shop, 1)]
    );
    assert_eq!(r.status, 200);
    assert!(
        r.body.contains(&format!(
            "cf_sim_instance_info{{app_guid=\"{shop}\",app_name=\"web-shop\",instance_index=\"1\","
        )),
        "{}",
        r.body
    );
    assert!(
        r.body.contains("\ncf_sim_instance_scrapes_total 1\n"),
        "{}",
        r.body
    );
    assert!(
        r.body
            .contains("# TYPE cf_sim_instance_scrapes_total counter\n")
    );
    let r = get!(
        router,
        host,
        "/metrics",
        [bearer(&shop), instance(&shop, 1)]
    );
    assert!(
        r.body.contains("\ncf_sim_instance_scrapes_total 2\n"),
        "{}",
        r.body
    );
    let r = get!(
        router,
        host,
        "/metrics",
        [bearer(&shop), instance(&shop, 0)]
    );
    assert!(
        r.body.contains("\ncf_sim_instance_scrapes_total 1\n"),
        "{}",
        r.body
    );

    // The demo's path route and X-CF-APP-INSTANCE on a 3-instance app.
    let r = get!(
        router,
        "api.apps.example.com",
        "/internal/metrics",
        [bearer(&api), instance(&api, 2)]
    );
    assert_eq!((r.status, r.instance()), (200, (api.clone(), 2)));

    // Per app, the check can be waived (and restored).
    let r = control!(
        sim,
        &format!("/sim/apps/{shop}/metrics-auth"),
        json!({"required": false})
    );
    assert_eq!(r, json!({"app_guid": shop, "required": false, "tokens": 0}));
    assert_eq!(get!(router, host, "/metrics").status, 200);
    assert_eq!(get!(router, "api.apps.example.com", "/metrics").status, 401);
    control!(
        sim,
        &format!("/sim/apps/{shop}/metrics-auth"),
        json!({"required": true})
    );
    assert_eq!(get!(router, host, "/metrics").status, 401);

    // Tokens of its own (its bindings' credentials) replace its guid; the answer counts
    // them without echoing them.
    let r = control!(
        sim,
        &format!("/sim/apps/{shop}/metrics-auth"),
        json!({"tokens": ["old-token", "new-token"]})
    );
    assert_eq!(r, json!({"app_guid": shop, "required": true, "tokens": 2}));
    assert_eq!(
        get!(router, host, "/metrics", [bearer("new-token")]).status,
        200
    );
    assert_eq!(
        get!(router, host, "/metrics", [bearer("old-token")]).status,
        200
    );
    assert_eq!(
        get!(router, host, "/metrics", [bearer("other")]).status,
        401
    );
    assert_eq!(get!(router, host, "/metrics", [bearer(&shop)]).status, 401);
    control!(
        sim,
        &format!("/sim/apps/{shop}/metrics-auth"),
        json!({"required": true})
    );
    assert_eq!(
        get!(router, host, "/metrics", [bearer("new-token")]).status,
        401
    );
    assert_eq!(get!(router, host, "/metrics", [bearer(&shop)]).status, 200);
    let r = call!(
        sim,
        TestRequest::post()
            .uri("/sim/apps/no-such-app/metrics-auth")
            .insert_header(("Content-Type", "application/json"))
            .set_payload(r#"{"required": false}"#)
    );
    assert_eq!(r.status, 404, "{}", r.body);

    // Only GET and HEAD are served.
    let r = call!(
        router,
        TestRequest::post()
            .uri("/metrics")
            .insert_header(("Host", host))
            .insert_header(bearer(&shop))
    );
    assert_eq!(r.status, 405);
}

#[actix_web::test]
async fn router_requests_are_counted_by_app_instance_path_and_status() {
    let s = state(true);
    let sim = test::init_service(cf_sim::app(s.clone())).await;
    let router = test::init_service(cf_sim::router_app(s.clone())).await;
    let api = demo_app_guid("api").unwrap();
    let host = "api.apps.example.com";

    for _ in 0..2 {
        get!(
            router,
            host,
            "/internal/metrics?cf_app_guid=x",
            [bearer(&api), instance(&api, 1)]
        );
    }
    get!(router, host, "/metrics", [instance(&api, 0)]);
    get!(router, host, "/metrics", [instance(&api, 7)]);
    get!(router, "nope.apps.example.com", "/metrics");

    let r = call!(sim, TestRequest::get().uri("/sim/router/requests"));
    assert_eq!(r.status, 200);
    let body = r.json();
    assert_eq!(body["total"], 5);
    let rows = body["requests"].as_array().unwrap();
    let find = |path: &str, status: u16| {
        rows.iter()
            .find(|row| row["path"] == path && row["status"] == status)
            .unwrap_or_else(|| panic!("no {path} {status} in {rows:?}"))
            .clone()
    };
    let scrape = find("/internal/metrics", 200);
    assert_eq!(
        scrape,
        json!({"app_guid": api, "instance_index": 1, "path": "/internal/metrics", "status": 200,
               "host": host, "method": "GET", "count": 2})
    );
    assert_eq!(find("/metrics", 401)["instance_index"], 0);
    assert_eq!(find("/metrics", 400)["instance_index"], 7);
    assert_eq!(find("/metrics", 400)["app_guid"], api);
    assert_eq!(find("/metrics", 404)["app_guid"], Value::Null);

    // The CC request counters do not see router traffic.
    let cc = call!(sim, TestRequest::get().uri("/sim/requests")).json();
    assert_eq!(cc["total_cc"], 0);

    let r = call!(sim, TestRequest::delete().uri("/sim/router/requests"));
    assert_eq!(r.json(), json!({"total": 0, "requests": []}));
    // Scrape counters belong to the instances and survive that...
    let r = get!(
        router,
        host,
        "/internal/metrics",
        [bearer(&api), instance(&api, 1)]
    );
    assert!(
        r.body.contains("\ncf_sim_instance_scrapes_total 3\n"),
        "{}",
        r.body
    );
    // ...but not a reset.
    control!(sim, "/sim/reset", json!({}));
    let r = call!(sim, TestRequest::get().uri("/sim/router/requests"));
    assert_eq!(r.json()["total"], 0);
    let r = get!(
        router,
        host,
        "/internal/metrics",
        [bearer(&api), instance(&api, 1)]
    );
    assert!(
        r.body.contains("\ncf_sim_instance_scrapes_total 1\n"),
        "{}",
        r.body
    );
}

#[actix_web::test]
async fn every_demo_route_is_reachable() {
    let s = state(true);
    let router = test::init_service(cf_sim::router_app(s.clone())).await;
    for (host, path, app) in [
        ("web-shop.apps.example.com", "/metrics", "web-shop"),
        ("api.apps.example.com", "/metrics", "api"),
        ("api.apps.example.com", "/internal/metrics", "api"),
        (
            "paas-metric-exporter.apps.example.com",
            "/metrics",
            "paas-metric-exporter",
        ),
        ("orders.apps.example.com", "/metrics", "orders-venerable"),
    ] {
        let guid = demo_app_guid(app).unwrap();
        let r = get!(router, host, path, [bearer(&guid), instance(&guid, 0)]);
        assert_eq!(r.status, 200, "{host}{path}: {}", r.body);
        assert_eq!(r.instance(), (guid, 0));
    }
}
