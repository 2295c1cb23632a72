use gds_targets::AppState;
use serde_json::json;

use super::*;

const A: &str = "11111111-1111-4111-8111-111111111111";
const B: &str = "22222222-2222-4222-8222-222222222222";
const GONE: &str = "33333333-3333-4333-8333-333333333333";

fn guid(s: &str) -> AppGuid {
    AppGuid::parse(s).unwrap()
}

fn from<T: DeserializeOwned>(v: serde_json::Value) -> T {
    serde_json::from_value(v).unwrap()
}

fn app(guid: &str, name: &str, state: &str, space: &str, labels: serde_json::Value) -> v3::App {
    from(json!({"guid": guid, "name": name, "state": state,
        "relationships": {"space": {"data": {"guid": space}}}, "metadata": {"labels": labels}}))
}

fn web(app: &str, instances: u32) -> v3::Process {
    from(
        json!({"type": "web", "instances": instances, "relationships": {"app": {"data": {"guid": app}}}}),
    )
}

fn route(host: &str, path: &str, domain: &str, apps: &[(&str, &str)]) -> v3::Route {
    let destinations: Vec<_> = apps
        .iter()
        .map(|(g, t)| json!({"app": {"guid": g, "process": {"type": t}}, "port": 8080}))
        .collect();
    from(
        json!({"host": host, "path": path, "port": null, "protocol": "http", "destinations": destinations,
        "relationships": {"domain": {"data": {"guid": domain}}}}),
    )
}

fn world() -> Resources {
    Resources {
        apps: vec![
            app(A, "shop", "STARTED", "s1", json!({})),
            app(
                B,
                "exporter",
                "STOPPED",
                "s1",
                json!({"prometheus.gds/exporter": "true"}),
            ),
        ],
        spaces: vec![from(
            json!({"guid": "s1", "name": "prod", "relationships": {"organization": {"data": {"guid": "o1"}}}}),
        )],
        orgs: vec![from(json!({"guid": "o1", "name": "gds"}))],
        processes: vec![
            web(A, 2),
            web(A, 3),
            web(B, 1),
            from(json!({"type": "worker", "instances": 9,
            "relationships": {"app": {"data": {"guid": A}}}})),
        ],
        routes: vec![
            route("shop", "", "d1", &[(A, "web")]),
            route("shop", "/metrics", "d1", &[(A, "worker")]),
            route("shop", "", "internal", &[(A, "web")]),
            from(
                json!({"host": "", "path": "", "port": 1024, "protocol": "tcp",
                "destinations": [{"app": {"guid": A, "process": {"type": "web"}}}],
                "relationships": {"domain": {"data": {"guid": "tcp"}}}}),
            ),
        ],
        domains: vec![
            from(json!({"guid": "d1", "name": "apps.example.com", "internal": false})),
            from(json!({"guid": "internal", "name": "apps.internal", "internal": true})),
            from(json!({"guid": "tcp", "name": "tcp.example.com", "internal": false})),
        ],
    }
}

#[test]
fn apps_are_joined_with_their_space_org_instances_and_web_routes() {
    let wanted = BTreeSet::from([guid(A), guid(B), guid(GONE)]);
    let s = assemble(&wanted, world(), "prometheus.gds/exporter");
    let shop = &s.apps[&guid(A)];
    assert_eq!(
        (shop.name.as_str(), shop.org.as_str(), shop.space.as_str()),
        ("shop", "gds", "prod")
    );
    assert_eq!(shop.state, AppState::Started);
    // Two web processes (a rolling deploy): the larger count; the worker process is ignored.
    assert_eq!(shop.instances, 3);
    // The worker-only route and the TCP route are dropped; the internal one is kept, flagged.
    let hosts: Vec<_> = shop
        .routes
        .iter()
        .map(|r| (r.domain.as_str(), r.path.as_str(), r.internal))
        .collect();
    assert_eq!(
        hosts,
        [("apps.example.com", "", false), ("apps.internal", "", true)]
    );
    assert!(!shop.exporter_label);

    let exporter = &s.apps[&guid(B)];
    assert!(exporter.exporter_label);
    assert_eq!(exporter.state, AppState::Stopped);
    assert!(exporter.routes.is_empty());

    assert_eq!(s.missing, BTreeSet::from([guid(GONE)]));
    assert!(s.failed.is_empty());
}

#[test]
fn apps_that_were_not_asked_for_are_left_out() {
    let s = assemble(
        &BTreeSet::from([guid(B)]),
        world(),
        "prometheus.gds/exporter",
    );
    assert_eq!(s.apps.keys().cloned().collect::<Vec<_>>(), [guid(B)]);
    assert!(s.missing.is_empty());
}

#[test]
fn an_app_whose_space_is_missing_fails_alone_and_is_not_reported_missing() {
    let mut w = world();
    w.spaces.clear();
    let s = assemble(&BTreeSet::from([guid(A)]), w, "prometheus.gds/exporter");
    assert!(s.apps.is_empty());
    assert!(
        s.missing.is_empty(),
        "a failed read must never look like a deleted app"
    );
    assert!(s.failed[&guid(A)].contains("space"));
}

#[test]
fn strategy_lists_everything_only_when_that_takes_fewer_requests() {
    // 10,000 bound of 10,000 visible: 100 filtered chunks versus 2 pages + 1 count.
    assert_eq!(
        Strategy::choose(10_000, 10_000, 5000, 100),
        Strategy::ListAll
    );
    // 50 bound of 20,000 visible: one chunk versus 4 pages + 1 count.
    assert_eq!(Strategy::choose(50, 20_000, 5000, 100), Strategy::Filter);
    // 1,000 bound among 100,000 visible: 10 chunks versus 20 pages + 1.
    assert_eq!(
        Strategy::choose(1_000, 100_000, 5000, 100),
        Strategy::Filter
    );
}

#[test]
fn endpoints_are_named_without_guids() {
    assert_eq!(
        endpoint_of("GET", &format!("/v3/apps/{A}")),
        "GET /v3/apps/:guid"
    );
    assert_eq!(endpoint_of("GET", "/v3/routes"), "GET /v3/routes");
}

#[test]
fn retry_after_prefers_the_header_then_the_reset_time() {
    let mut h = HeaderMap::new();
    h.insert("retry-after", "7".parse().unwrap());
    assert_eq!(retry_after(&h), Some(Duration::from_secs(7)));
    let mut h = HeaderMap::new();
    h.insert(
        "x-ratelimit-reset",
        (now_secs() + 30).to_string().parse().unwrap(),
    );
    let wait = retry_after(&h).unwrap();
    assert!(
        (Duration::from_secs(29)..=Duration::from_secs(30)).contains(&wait),
        "{wait:?}"
    );
    assert_eq!(retry_after(&HeaderMap::new()), None);
}

#[test]
fn backoff_grows_and_is_capped() {
    assert!(backoff(0) >= Duration::from_millis(250) && backoff(0) < Duration::from_millis(320));
    assert!(backoff(3) >= Duration::from_millis(2000));
    assert!(backoff(30) <= Duration::from_millis(10_000));
}

#[test]
fn cloud_controller_error_bodies_are_read() {
    let (title, detail) =
        error_parts(br#"{"errors":[{"detail":"Invalid Auth Token","title":"CF-InvalidAuthToken","code":1000}]}"#);
    assert_eq!(
        (title.as_str(), detail.as_str()),
        ("CF-InvalidAuthToken", "Invalid Auth Token")
    );
    let (title, detail) = error_parts(b"502 Bad Gateway");
    assert_eq!((title.as_str(), detail.as_str()), ("", "502 Bad Gateway"));
}

mod waits;
