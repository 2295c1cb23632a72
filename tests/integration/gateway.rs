//! sd-sync's scrape gateway (`--scrape-listen`), the real binary, in front of the real
//! simulated gorouter serving TLS with a CA made by the test (and of a TLS test upstream
//! where the gorouter cannot show something: gzip bodies, slow or huge answers). The
//! targets come from a real S3-compatible bucket (moto).
//!
//! "No outbound connection" is proven with [`CountingProxy`]: the gateway is pinned to it
//! (`--scrape-router`), and it counts every connection it accepts before relaying it;
//! with one per mapping, it also shows which router each mapping's scrapes go through.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::{Running, start_sim};
use crate::proxy::router_url;
use crate::sd_sync::{Bucket, SdSync, TargetDirs, eventually, sd_sync_command};
use crate::store_s3::s3_endpoint;
use crate::tls::TestPki;

/// The demo world's apps (`cf-sim --demo`): web-shop (2 instances, `/metrics`) and api
/// (3 instances, a route `/internal/metrics`).
pub const WEB_SHOP: &str = "0e9c9b69-5fb6-46cf-a53f-9c94b49b1bb3";
pub const API: &str = "139fd468-5bcc-4d31-baff-0ae3f7945053";

/// A TCP listener that counts the connections it accepts and relays each to `target`
/// (or closes it, without one).
pub struct CountingProxy {
    pub addr: SocketAddr,
    accepted: Arc<AtomicUsize>,
    acceptor: JoinHandle<()>,
}

impl CountingProxy {
    pub async fn start(target: Option<SocketAddr>) -> CountingProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let accepted = Arc::new(AtomicUsize::new(0));
        let acceptor = tokio::spawn({
            let accepted = accepted.clone();
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    accepted.fetch_add(1, Ordering::SeqCst);
                    let Some(target) = target else {
                        continue;
                    };
                    tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        CountingProxy {
            addr,
            accepted,
            acceptor,
        }
    }

    /// Connections accepted so far.
    pub fn accepted(&self) -> usize {
        self.accepted.load(Ordering::SeqCst)
    }
}

impl Drop for CountingProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

/// A target file: one group per instance of `guid` on `host`, scraped at `path`
/// (`None`: no `__metrics_path__`, Prometheus' `/metrics`).
pub fn scrape_target_file(host: &str, guid: &str, instances: u32, path: Option<&str>) -> String {
    let groups: Vec<Value> = (0..instances)
        .map(|i| {
            let mut labels = BTreeMap::from([
                ("__param_cf_app_guid".to_owned(), guid.to_owned()),
                ("__param_cf_app_instance_index".to_owned(), i.to_string()),
                ("__param_cf_app_instance".to_owned(), format!("{guid}:{i}")),
                ("instance".to_owned(), format!("{guid}:{i}")),
                ("job".to_owned(), "app".to_owned()),
            ]);
            if let Some(path) = path {
                labels.insert("__metrics_path__".to_owned(), path.to_owned());
            }
            serde_json::json!({"targets": [host], "labels": labels})
        })
        .collect();
    serde_json::to_string(&groups).unwrap()
}

/// An sd-sync with its scrape gateway.
pub struct GatewaySdSync {
    pub sd_sync: SdSync,
    /// `http://127.0.0.1:PORT`: Prometheus' `proxy_url`.
    pub proxy_url: String,
    pub addr: SocketAddr,
    _dirs: TargetDirs,
    pub dir: PathBuf,
}

/// Starts sd-sync mirroring `bucket`'s `active/` with the gateway on a free loopback port
/// and `gateway_args` (`--scrape-router`, `--scrape-ca-file`, ...); its stderr goes to
/// `log` when given. Returns once it listens.
pub async fn start_gateway(
    bucket: &Bucket,
    gateway_args: &[String],
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> GatewaySdSync {
    start_gateway_mappings(&[(bucket, "targets")], gateway_args, env, log).await
}

/// [`start_gateway`] with one mapping per `(bucket, name)`: the bucket's `active/` into a
/// directory named `name`, which names the mapping (`--scrape-router NAME=...`); `dir` is
/// the first's.
pub async fn start_gateway_mappings(
    mappings: &[(&Bucket, &str)],
    gateway_args: &[String],
    env: &[(&str, &str)],
    log: Option<&Path>,
) -> GatewaySdSync {
    let dirs = TargetDirs::new();
    let dir = dirs.dir(mappings[0].1);
    let mut args = Vec::new();
    for (bucket, name) in mappings {
        args.push("--mapping".to_owned());
        args.push(format!(
            "s3://{}/active={}",
            bucket.name(),
            dirs.dir(name).display()
        ));
    }
    args.extend([
        "--s3-endpoint".to_owned(),
        s3_endpoint(),
        "--interval".to_owned(),
        "200ms".to_owned(),
        "--listen".to_owned(),
        "127.0.0.1:0".to_owned(),
        "--scrape-listen".to_owned(),
        "127.0.0.1:0".to_owned(),
    ]);
    args.extend(gateway_args.iter().cloned());
    let stderr = match log {
        Some(path) => std::process::Stdio::from(std::fs::File::create(path).unwrap()),
        None => std::process::Stdio::inherit(),
    };
    let (child, base_url) =
        crate::harness::spawn_ready_with_stderr(sd_sync_command(&args, env), "sd-sync", stderr);
    let pid = child.id();
    let sd_sync = SdSync {
        child,
        base_url,
        pid,
        authorization: None,
    };
    let (_, health) = sd_sync.health().await;
    let addr: SocketAddr = health["gateway"]["address"]
        .as_str()
        .unwrap_or_else(|| panic!("no gateway in /health: {health}"))
        .parse()
        .unwrap();
    assert_eq!(health["gateway"]["listening"], true, "{health}");
    GatewaySdSync {
        sd_sync,
        proxy_url: format!("http://{addr}"),
        addr,
        _dirs: dirs,
        dir,
    }
}

impl GatewaySdSync {
    /// Waits until the gateway forwards to `targets` installed targets.
    pub async fn wait_for_targets(&self, targets: u64) {
        eventually(
            &format!("the gateway has {targets} targets"),
            Duration::from_secs(20),
            async || self.sd_sync.health().await.1["gateway"]["targets"] == targets,
        )
        .await;
    }

    /// A scrape as Prometheus sends it through `proxy_url`, with `headers`.
    pub async fn scrape(
        &self,
        host: &str,
        path: &str,
        guid: &str,
        index: u32,
        headers: &[(&str, &str)],
    ) -> reqwest::Response {
        let client = reqwest::Client::builder()
            .proxy(reqwest::Proxy::http(&self.proxy_url).unwrap())
            .build()
            .unwrap();
        let mut request = client.get(format!("http://{host}{path}?{}", query(guid, index)));
        for (name, value) in headers {
            request = request.header(*name, *value);
        }
        request.send().await.unwrap()
    }

    /// `sd_sync_gateway_requests_total{outcome, reason}`, summed over mappings.
    pub async fn requests(&self, outcome: &str, reason: &str) -> f64 {
        gateway_requests(&self.sd_sync, None, outcome, reason).await
    }

    /// `sd_sync_gateway_requests_total{mapping, outcome, reason}`.
    pub async fn mapping_requests(&self, mapping: &str, outcome: &str, reason: &str) -> f64 {
        gateway_requests(&self.sd_sync, Some(mapping), outcome, reason).await
    }
}

/// `sd_sync_gateway_requests_total` of `sd_sync` with this outcome and reason, of one
/// mapping or summed over all.
pub async fn gateway_requests(
    sd_sync: &SdSync,
    mapping: Option<&str>,
    outcome: &str,
    reason: &str,
) -> f64 {
    let text = sd_sync.get("/metrics").await.text().await.unwrap();
    let wanted = [
        format!("outcome=\"{outcome}\""),
        format!("reason=\"{reason}\""),
    ];
    text.lines()
        .filter_map(|line| line.strip_prefix("sd_sync_gateway_requests_total{"))
        .filter_map(|line| line.split_once("} "))
        .filter(|(labels, _)| {
            let labels: Vec<&str> = labels.split(',').collect();
            wanted.iter().all(|w| labels.contains(&w.as_str()))
                && mapping.is_none_or(|m| labels.contains(&format!("mapping=\"{m}\"").as_str()))
        })
        .map(|(_, value)| value.trim().parse::<f64>().unwrap())
        .sum()
}

/// The query Prometheus sends: `__param_*` labels sorted, the colon encoded.
pub fn query(guid: &str, index: u32) -> String {
    format!("cf_app_guid={guid}&cf_app_instance={guid}%3A{index}&cf_app_instance_index={index}")
}

/// Sends `head` (a request line and headers, without the blank line) on a new
/// connection, with `Connection: close`; the status and the body.
pub async fn raw_request(addr: SocketAddr, head: &str) -> (u16, String) {
    let mut stream = TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(format!("{head}\r\nConnection: close\r\n\r\n").as_bytes())
        .await
        .unwrap();
    let mut response = Vec::new();
    stream.read_to_end(&mut response).await.unwrap();
    let response = String::from_utf8_lossy(&response).into_owned();
    let status = response
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("no status line: {response:?}"));
    let body = response
        .split_once("\r\n\r\n")
        .map(|(_, body)| body.to_owned())
        .unwrap_or_default();
    (status, body)
}

/// The demo world with its router serving HTTPS with `pki`'s certificate.
fn start_tls_sim(pki: &TestPki) -> Running {
    let mut args = vec!["--router-listen", "127.0.0.1:0", "--demo"];
    let tls = pki.router_args();
    args.extend(tls.iter().map(String::as_str));
    start_sim(&args)
}

fn router_addr(url: &str) -> SocketAddr {
    url.trim_start_matches("https://").parse().unwrap()
}

#[tokio::test]
async fn the_gateway_forwards_only_installed_targets_and_refuses_the_rest_without_connecting() {
    let pki = TestPki::platform();
    let sim = start_tls_sim(&pki);
    let router = router_url(&sim).await;
    assert!(router.starts_with("https://"), "{router}");
    let counting = CountingProxy::start(Some(router_addr(&router))).await;
    let bucket = Bucket::new().await;
    bucket
        .put(
            &format!("active/{WEB_SHOP}.json"),
            &scrape_target_file("web-shop.apps.example.com", WEB_SHOP, 2, None),
        )
        .await;
    bucket
        .put(
            &format!("active/{API}.json"),
            &scrape_target_file("api.apps.example.com", API, 1, Some("/internal/metrics")),
        )
        .await;
    let gateway = start_gateway(
        &bucket,
        &[
            "--scrape-router".into(),
            counting.addr.to_string(),
            "--scrape-ca-file".into(),
            pki.ca_file.display().to_string(),
        ],
        &[],
        None,
    )
    .await;
    gateway.wait_for_targets(3).await;

    // Every refusal: 403, one line naming the reason, counted, and no connection.
    let web = "web-shop.apps.example.com";
    let q0 = query(WEB_SHOP, 0);
    let refusals: Vec<(String, &str)> = vec![
        (
            format!("GET http://evil.example.com/metrics?{q0} HTTP/1.1\r\nHost: evil.example.com"),
            "unregistered_host",
        ),
        (
            format!(
                "GET http://{web}/metrics?{} HTTP/1.1\r\nHost: {web}",
                query(API, 0)
            ),
            "unknown_app",
        ),
        (
            format!(
                "GET http://{web}/metrics?{} HTTP/1.1\r\nHost: {web}",
                query(WEB_SHOP, 2)
            ),
            "wrong_instance",
        ),
        (
            format!("GET http://{web}/admin?{q0} HTTP/1.1\r\nHost: {web}"),
            "wrong_path",
        ),
        (
            format!("GET http://127.0.0.1/metrics?{q0} HTTP/1.1\r\nHost: 127.0.0.1"),
            "ip_literal",
        ),
        (
            format!("GET http://{web}:8443/metrics?{q0} HTTP/1.1\r\nHost: {web}:8443"),
            "port",
        ),
        (
            format!("GET /metrics?{q0} HTTP/1.1\r\nHost: {web}"),
            "not_absolute",
        ),
        (
            format!("CONNECT {web}:443 HTTP/1.1\r\nHost: {web}:443"),
            "connect",
        ),
        (
            format!("POST http://{web}/metrics?{q0} HTTP/1.1\r\nHost: {web}\r\nContent-Length: 0"),
            "method",
        ),
        (
            format!(
                "GET http://{web}/metrics?cf_app_guid={WEB_SHOP}&cf_app_instance={WEB_SHOP}%3A0%0D%0AX-Injected:%201&cf_app_instance_index=0 HTTP/1.1\r\nHost: {web}"
            ),
            "header_injection",
        ),
        (
            format!(
                "GET http://{web}/metrics?cf_app_guid={WEB_SHOP}&cf_app_instance={WEB_SHOP}%3A1&cf_app_instance_index=0 HTTP/1.1\r\nHost: {web}"
            ),
            "inconsistent_instance",
        ),
    ];
    for (head, reason) in &refusals {
        let (status, body) = raw_request(gateway.addr, head).await;
        assert_eq!(status, 403, "{reason}: {body}");
        assert!(
            body.starts_with("sd-sync gateway: ") && body.trim_end().lines().count() == 1,
            "{reason}: {body:?}"
        );
        assert_eq!(gateway.requests("refused", reason).await, 1.0, "{reason}");
    }
    assert_eq!(
        counting.accepted(),
        0,
        "a refused scrape opened a connection"
    );

    // A registered target: forwarded over TLS to the pinned router, which routes on the
    // Host and X-CF-APP-INSTANCE; the app checks `Bearer <guid>` (Prometheus' own
    // Authorization stays at the gateway, or the app would answer 401).
    let ok = gateway
        .scrape(
            web,
            "/metrics",
            WEB_SHOP,
            1,
            &[("authorization", "Bearer prometheus")],
        )
        .await;
    assert_eq!(ok.status(), 200);
    let body = ok.text().await.unwrap();
    assert!(
        body.contains(&format!("app_guid=\"{WEB_SHOP}\"")) && body.contains("instance_index=\"1\""),
        "{body}"
    );
    let api = gateway
        .scrape("api.apps.example.com", "/internal/metrics", API, 0, &[])
        .await;
    assert_eq!(api.status(), 200);
    assert!(counting.accepted() >= 1);
    let seen: Value = reqwest::get(format!("{}/sim/router/requests", sim.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let requests = seen["requests"].as_array().unwrap();
    assert!(
        requests
            .iter()
            .any(|r| r["path"] == "/internal/metrics" && r["status"] == 200),
        "the path reaches the app without the cf_* parameters: {seen}"
    );
    assert_eq!(seen["total"], 2, "{seen}");
    assert_eq!(gateway.requests("forwarded", "").await, 2.0);

    // The bucket loses the api: refused from the sync that removes it on.
    bucket.delete(&format!("active/{API}.json")).await;
    let addr = gateway.addr;
    let head = format!(
        "GET http://api.apps.example.com/internal/metrics?{} HTTP/1.1\r\nHost: api.apps.example.com",
        query(API, 0)
    );
    eventually(
        "the removed target is refused",
        Duration::from_secs(20),
        async || raw_request(addr, &head).await.0 == 403,
    )
    .await;
    assert!(!gateway.dir.join(format!("{API}.json")).exists());
    assert_eq!(gateway.requests("refused", "unregistered_host").await, 2.0);
    // Every forwarded scrape (the polls above included) observed its upstream latency.
    let forwarded = gateway.requests("forwarded", "").await;
    let metrics = gateway.sd_sync.get("/metrics").await.text().await.unwrap();
    for name in [
        &format!(
            "sd_sync_gateway_upstream_duration_seconds_count{{mapping=\"targets\"}} {forwarded}"
        )[..],
        "sd_sync_gateway_upstream_connections_total",
        "sd_sync_gateway_response_bytes_total",
        "sd_sync_gateway_requests_in_flight 0",
    ] {
        assert!(metrics.contains(name), "{name}: {metrics}");
    }
}

#[tokio::test]
async fn a_certificate_from_an_unknown_ca_fails_the_scrape_with_502_and_the_gateway_stays_up() {
    let pki = TestPki::platform();
    let other = TestPki::new("another CA", &["*.apps.example.com"]);
    let sim = start_tls_sim(&pki);
    let router = router_url(&sim).await;
    let bucket = Bucket::new().await;
    bucket
        .put(
            &format!("active/{WEB_SHOP}.json"),
            &scrape_target_file("web-shop.apps.example.com", WEB_SHOP, 1, None),
        )
        .await;
    let gateway = start_gateway(
        &bucket,
        &[
            "--scrape-router".into(),
            router_addr(&router).to_string(),
            "--scrape-ca-file".into(),
            other.ca_file.display().to_string(),
        ],
        &[],
        None,
    )
    .await;
    gateway.wait_for_targets(1).await;
    for _ in 0..2 {
        let failed = gateway
            .scrape("web-shop.apps.example.com", "/metrics", WEB_SHOP, 0, &[])
            .await;
        assert_eq!(failed.status(), 502);
        let body = failed.text().await.unwrap();
        assert!(
            body.starts_with("sd-sync gateway: upstream tls: "),
            "{body}"
        );
    }
    assert_eq!(gateway.requests("upstream_failed", "tls").await, 2.0);
    let seen: Value = reqwest::get(format!("{}/sim/router/requests", sim.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["total"], 0, "no request got through: {seen}");
    assert_eq!(gateway.sd_sync.health().await.0, 200);
}

#[tokio::test]
async fn a_route_host_resolving_to_loopback_is_refused_without_a_pin_and_without_connecting() {
    // What the connection would reach: the gateway's upstream port on loopback.
    let counting = CountingProxy::start(None).await;
    let bucket = Bucket::new().await;
    let guid = "aaaaaaaa-1111-4222-8333-444444444444";
    bucket
        .put(
            &format!("active/{guid}.json"),
            &scrape_target_file("localhost", guid, 1, None),
        )
        .await;
    let gateway = start_gateway(
        &bucket,
        &[
            "--scrape-upstream-port".into(),
            counting.addr.port().to_string(),
        ],
        &[],
        None,
    )
    .await;
    gateway.wait_for_targets(1).await;
    let refused = gateway.scrape("localhost", "/metrics", guid, 0, &[]).await;
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.unwrap();
    assert!(body.contains("does not connect to"), "{body}");
    assert_eq!(gateway.requests("refused", "forbidden_address").await, 1.0);
    assert_eq!(counting.accepted(), 0);
}

#[tokio::test]
async fn each_mapping_scrapes_through_its_own_router_and_an_unpinned_one_through_filtered_dns() {
    // Two foundations' routers, each a counting relay in front of the TLS router (which
    // knows every demo route): a scrape reaching the wrong one would be counted there.
    let pki = TestPki::platform();
    let sim = start_tls_sim(&pki);
    let router = router_addr(&router_url(&sim).await);
    let ireland_router = CountingProxy::start(Some(router)).await;
    let london_router = CountingProxy::start(Some(router)).await;
    // Where an unpinned mapping's route host resolving to loopback would connect.
    let loopback = CountingProxy::start(None).await;
    let (ireland, london, paris) = (
        Bucket::new().await,
        Bucket::new().await,
        Bucket::new().await,
    );
    ireland
        .put(
            &format!("active/{WEB_SHOP}.json"),
            &scrape_target_file("web-shop.apps.example.com", WEB_SHOP, 2, None),
        )
        .await;
    london
        .put(
            &format!("active/{API}.json"),
            &scrape_target_file("api.apps.example.com", API, 1, Some("/internal/metrics")),
        )
        .await;
    let local = "aaaaaaaa-1111-4222-8333-444444444444";
    paris
        .put(
            &format!("active/{local}.json"),
            &scrape_target_file("localhost", local, 1, None),
        )
        .await;
    let gateway = start_gateway_mappings(
        &[
            (&ireland, "ireland"),
            (&london, "london"),
            (&paris, "paris"),
        ],
        &[
            "--scrape-ca-file".into(),
            pki.ca_file.display().to_string(),
            // No idle connection kept: every scrape opens one, counted where it goes.
            "--scrape-pool-max-idle".into(),
            "0".into(),
            // The unpinned mapping's addresses: within these CIDRs (and never loopback).
            "--scrape-allow-cidr".into(),
            "10.0.0.0/8".into(),
            "--scrape-upstream-port".into(),
            loopback.addr.port().to_string(),
        ],
        // Paris has no router of its own, and there is no default.
        &[(
            "SD_SYNC_SCRAPE_ROUTER",
            &format!(
                "ireland={},london={}",
                ireland_router.addr, london_router.addr
            ),
        )],
        None,
    )
    .await;
    gateway.wait_for_targets(4).await;

    for index in [0, 1, 0] {
        let ok = gateway
            .scrape(
                "web-shop.apps.example.com",
                "/metrics",
                WEB_SHOP,
                index,
                &[],
            )
            .await;
        assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    }
    assert_eq!(
        (ireland_router.accepted(), london_router.accepted()),
        (3, 0),
        "Ireland's scrapes go to Ireland's router only"
    );
    for _ in 0..2 {
        let ok = gateway
            .scrape("api.apps.example.com", "/internal/metrics", API, 0, &[])
            .await;
        assert_eq!(ok.status(), 200, "{}", ok.text().await.unwrap());
    }
    assert_eq!(
        (ireland_router.accepted(), london_router.accepted()),
        (3, 2),
        "London's scrapes go to London's router only"
    );

    // The unpinned mapping: its route host's DNS decides, filtered: loopback is refused,
    // with no connection anywhere.
    let refused = gateway.scrape("localhost", "/metrics", local, 0, &[]).await;
    assert_eq!(refused.status(), 403);
    let body = refused.text().await.unwrap();
    assert!(body.contains("does not connect to"), "{body}");
    assert_eq!(gateway.requests("refused", "forbidden_address").await, 1.0);
    assert_eq!(
        (
            ireland_router.accepted(),
            london_router.accepted(),
            loopback.accepted()
        ),
        (3, 2, 0)
    );
    assert_eq!(gateway.requests("forwarded", "").await, 5.0);
    // Counted by mapping, so that an operator sees which foundation's router fails.
    for (mapping, outcome, reason, count) in [
        ("ireland", "forwarded", "", 3.0),
        ("london", "forwarded", "", 2.0),
        ("paris", "forwarded", "", 0.0),
        ("paris", "refused", "forbidden_address", 1.0),
        ("ireland", "refused", "forbidden_address", 0.0),
        ("london", "upstream_failed", "connect", 0.0),
    ] {
        assert_eq!(
            gateway.mapping_requests(mapping, outcome, reason).await,
            count,
            "{mapping} {outcome} {reason}"
        );
    }
    let metrics = gateway.sd_sync.get("/metrics").await.text().await.unwrap();
    for series in [
        r#"sd_sync_gateway_upstream_duration_seconds_count{mapping="ireland"} 3"#,
        r#"sd_sync_gateway_upstream_duration_seconds_count{mapping="london"} 2"#,
        r#"sd_sync_gateway_requests_total{mapping="",outcome="refused",reason="unregistered_host"} 0"#,
    ] {
        assert!(metrics.lines().any(|l| l == series), "{series}: {metrics}");
    }
    let seen: Value = reqwest::get(format!("{}/sim/router/requests", sim.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(seen["total"], 5, "{seen}");
}

/// What the test upstream saw of each request: path and headers (lowercase names).
type Seen = Arc<Mutex<Vec<(String, BTreeMap<String, String>)>>>;

/// Bytes that are not text, sent as `Content-Encoding: gzip`: the gateway must pass them
/// on as they are.
fn opaque_body() -> Vec<u8> {
    (0..5_000u32)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect()
}

async fn upstream(req: HttpRequest, seen: web::Data<Seen>) -> HttpResponse {
    let headers = req
        .headers()
        .iter()
        .map(|(n, v)| (n.as_str().to_owned(), v.to_str().unwrap_or("?").to_owned()))
        .collect();
    seen.lock().unwrap().push((req.path().to_owned(), headers));
    match req.path() {
        "/gzip" => HttpResponse::Ok()
            .insert_header((
                "content-type",
                "application/openmetrics-text; version=1.0.0",
            ))
            .insert_header(("content-encoding", "gzip"))
            .insert_header(("x-upstream", "yes"))
            .body(opaque_body()),
        "/slow" => {
            tokio::time::sleep(Duration::from_secs(10)).await;
            HttpResponse::Ok().body("late")
        }
        "/big" => HttpResponse::Ok().body(vec![b'x'; 16384]),
        "/big-chunked" => HttpResponse::Ok().streaming(futures_stream(16384)),
        _ => HttpResponse::NotFound().finish(),
    }
}

/// `len` bytes in chunks of 512, without a Content-Length.
fn futures_stream(
    len: usize,
) -> impl futures::Stream<Item = Result<actix_web::web::Bytes, std::io::Error>> {
    let chunks: Vec<Result<actix_web::web::Bytes, std::io::Error>> = (0..len / 512)
        .map(|_| Ok(actix_web::web::Bytes::from(vec![b'y'; 512])))
        .collect();
    futures::stream::iter(chunks)
}

/// A TLS upstream with `pki`'s certificate on a free loopback port (see [`upstream`]).
fn start_upstream(pki: &TestPki) -> (SocketAddr, Seen, actix_web::dev::ServerHandle) {
    let seen: Seen = Arc::default();
    let data = web::Data::new(seen.clone());
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let server = HttpServer::new(move || {
        App::new()
            .app_data(data.clone())
            .default_service(web::to(upstream))
    })
    .workers(1)
    .listen_rustls_0_23(listener, pki.server_config())
    .unwrap()
    .run();
    let handle = server.handle();
    tokio::spawn(server);
    (addr, seen, handle)
}

#[tokio::test]
async fn bodies_stream_through_unchanged_within_the_timeout_and_the_cap_and_no_token_is_logged() {
    let pki = TestPki::platform();
    let (addr, seen, upstream) = start_upstream(&pki);
    let host = "metrics.apps.example.com";
    let guids = [
        ("/gzip", "aaaaaaaa-0000-4000-8000-000000000001"),
        ("/slow", "aaaaaaaa-0000-4000-8000-000000000002"),
        ("/big", "aaaaaaaa-0000-4000-8000-000000000003"),
        ("/big-chunked", "aaaaaaaa-0000-4000-8000-000000000004"),
    ];
    let bucket = Bucket::new().await;
    for (path, guid) in guids {
        bucket
            .put(
                &format!("active/{guid}.json"),
                &scrape_target_file(host, guid, 1, Some(path)),
            )
            .await;
    }
    let logs = tempfile::tempdir().unwrap();
    let log = logs.path().join("sd-sync.log");
    let gateway = start_gateway(
        &bucket,
        &[
            "--scrape-router".into(),
            addr.to_string(),
            "--scrape-ca-file".into(),
            pki.ca_file.display().to_string(),
            "--scrape-max-body-bytes".into(),
            "8192".into(),
        ],
        &[("RUST_LOG", "debug")],
        Some(&log),
    )
    .await;
    gateway.wait_for_targets(4).await;

    // Compressed bytes and their headers pass through untouched, both ways.
    let (path, guid) = guids[0];
    let response = gateway
        .scrape(
            host,
            path,
            guid,
            0,
            &[
                (
                    "accept",
                    "application/openmetrics-text;version=1.0.0,text/plain;q=0.5",
                ),
                ("accept-encoding", "gzip"),
                ("authorization", "Bearer prometheus-own"),
                ("proxy-authorization", "Basic cHJvbTpzZWNyZXQ="),
                ("x-prometheus-scrape-timeout-seconds", "5"),
            ],
        )
        .await;
    assert_eq!(response.status(), 200);
    let headers = response.headers().clone();
    assert_eq!(headers["content-encoding"], "gzip");
    assert_eq!(
        headers["content-type"],
        "application/openmetrics-text; version=1.0.0"
    );
    assert_eq!(headers["x-upstream"], "yes");
    assert_eq!(response.bytes().await.unwrap().to_vec(), opaque_body());
    let (seen_path, seen_headers) = seen.lock().unwrap()[0].clone();
    assert_eq!(seen_path, "/gzip");
    assert_eq!(seen_headers["host"], host);
    assert_eq!(seen_headers["x-cf-app-instance"], format!("{guid}:0"));
    assert_eq!(seen_headers["authorization"], format!("Bearer {guid}"));
    assert_eq!(seen_headers["accept-encoding"], "gzip");
    assert_eq!(
        seen_headers["accept"],
        "application/openmetrics-text;version=1.0.0,text/plain;q=0.5"
    );
    assert_eq!(seen_headers["x-prometheus-scrape-timeout-seconds"], "5");
    assert!(
        !seen_headers.contains_key("proxy-authorization"),
        "{seen_headers:?}"
    );
    assert_eq!(
        gateway
            .sd_sync
            .metric("sd_sync_gateway_response_bytes_total")
            .await,
        5_000.0
    );

    // Slower than Prometheus' scrape timeout: 504 (the upstream would answer in 10 s).
    let (path, guid) = guids[1];
    let slow = gateway
        .scrape(
            host,
            path,
            guid,
            0,
            &[("x-prometheus-scrape-timeout-seconds", "0.5")],
        )
        .await;
    assert_eq!(slow.status(), 504);
    assert_eq!(gateway.requests("upstream_failed", "timeout").await, 1.0);

    // Over the cap (8192 bytes): announced -> 502; streamed -> cut, so that Prometheus
    // sees the scrape fail.
    let (path, guid) = guids[2];
    let big = gateway.scrape(host, path, guid, 0, &[]).await;
    assert_eq!(big.status(), 502);
    assert!(big.text().await.unwrap().contains("body_too_large"));
    let (path, guid) = guids[3];
    let cut = gateway.scrape(host, path, guid, 0, &[]).await;
    assert_eq!(cut.status(), 200, "the head was on its way before the cap");
    assert!(
        cut.bytes().await.is_err(),
        "a cut body is an error, not a short scrape"
    );
    assert_eq!(
        gateway.requests("upstream_failed", "body_too_large").await,
        2.0
    );
    upstream.stop(false).await;

    // At debug level, not one line holds an authorization value.
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("gateway: forwarded a scrape"), "{text}");
    for secret in ["Bearer", "prometheus-own", "cHJvbTpzZWNyZXQ="] {
        assert!(!text.contains(secret), "{secret} in the log: {text}");
    }
}

#[tokio::test]
async fn an_upstream_that_is_down_answers_502_and_the_gateway_stays_up() {
    // A port nothing listens on any more.
    let down = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let bucket = Bucket::new().await;
    bucket
        .put(
            &format!("active/{WEB_SHOP}.json"),
            &scrape_target_file("web-shop.apps.example.com", WEB_SHOP, 1, None),
        )
        .await;
    let gateway = start_gateway(
        &bucket,
        &["--scrape-router".into(), down.to_string()],
        &[],
        None,
    )
    .await;
    gateway.wait_for_targets(1).await;
    let failed = gateway
        .scrape("web-shop.apps.example.com", "/metrics", WEB_SHOP, 0, &[])
        .await;
    assert_eq!(failed.status(), 502);
    let body = failed.text().await.unwrap();
    assert!(
        body.starts_with("sd-sync gateway: upstream connect: "),
        "{body}"
    );
    assert_eq!(gateway.requests("upstream_failed", "connect").await, 1.0);
    assert_eq!(gateway.sd_sync.health().await.0, 200);
}

#[tokio::test]
async fn insecure_skip_verify_accepts_a_certificate_no_root_vouches_for() {
    let pki = TestPki::platform();
    let sim = start_tls_sim(&pki);
    let router = router_url(&sim).await;
    let bucket = Bucket::new().await;
    bucket
        .put(
            &format!("active/{WEB_SHOP}.json"),
            &scrape_target_file("web-shop.apps.example.com", WEB_SHOP, 1, None),
        )
        .await;
    let gateway = start_gateway(
        &bucket,
        &[
            "--scrape-router".into(),
            router_addr(&router).to_string(),
            "--scrape-insecure-skip-verify".into(),
        ],
        &[],
        None,
    )
    .await;
    gateway.wait_for_targets(1).await;
    let ok = gateway
        .scrape("web-shop.apps.example.com", "/metrics", WEB_SHOP, 0, &[])
        .await;
    assert_eq!(ok.status(), 200);
}
