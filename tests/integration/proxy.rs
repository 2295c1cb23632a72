//! The shipped nginx forward proxy (`manifests/nginx/forward-proxy.conf`), run by a real
//! nginx in front of the simulator's gorouter: query parameters in, platform headers out.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::harness::{Running, group_members, spawn_group, start_sim, stop_group};

const WEB_SHOP: &str = "0e9c9b69-5fb6-46cf-a53f-9c94b49b1bb3";
const API: &str = "139fd468-5bcc-4d31-baff-0ae3f7945053";

/// A running nginx with the shipped forward-proxy server block: its master and worker in
/// a process group of their own, killed whole on drop.
pub struct Nginx {
    child: Child,
    pub url: String,
    _dir: tempfile::TempDir,
}

impl Nginx {
    /// The master's process id, which is also the process group's.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

fn nginx_binary() -> PathBuf {
    ["/usr/sbin/nginx", "/usr/local/sbin/nginx", "/usr/bin/nginx"]
        .iter()
        .map(PathBuf::from)
        .find(|p| p.exists())
        .expect("nginx is missing: run the tests through `make test` (scripts/deps/nginx.sh installs it)")
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// The shipped configuration, with its listen address and upstream pointed at this test's
/// servers. Fails if those lines changed, so the test always runs the real file.
pub fn forward_proxy_config(listen_port: u16, router_url: &str) -> String {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/nginx/forward-proxy.conf");
    let shipped = std::fs::read_to_string(&path).unwrap();
    for line in ["listen 127.0.0.1:8080;", "set $gds_upstream https://$host;"] {
        assert!(
            shipped.contains(line),
            "{} no longer contains {line:?}",
            path.display()
        );
    }
    shipped
        .replace(
            "listen 127.0.0.1:8080;",
            &format!("listen 127.0.0.1:{listen_port};"),
        )
        .replace(
            "set $gds_upstream https://$host;",
            &format!("set $gds_upstream {router_url};"),
        )
}

/// How nginx runs around the shipped server block (the benchmark's differ from a test's).
pub struct NginxSettings<'a> {
    /// `worker_processes`: a number or `auto` (one per core, Debian's default).
    pub worker_processes: &'a str,
    pub worker_connections: u32,
    /// More directives inside `http {}`, before the shipped server block.
    pub http: &'a str,
}

/// A test's: one worker, 64 connections.
const TEST_NGINX: NginxSettings<'static> = NginxSettings {
    worker_processes: "1",
    worker_connections: 64,
    http: "",
};

/// Starts nginx with `server_block` inside a minimal `http {}` in a private directory.
pub fn start_nginx(router_url: &str) -> Nginx {
    start_nginx_with(router_url, &TEST_NGINX)
}

/// [`start_nginx`] with `settings`.
pub fn start_nginx_with(router_url: &str, settings: &NginxSettings<'_>) -> Nginx {
    let dir = tempfile::tempdir().unwrap();
    let port = free_port();
    let root = dir.path().display().to_string();
    std::fs::write(
        dir.path().join("forward-proxy.conf"),
        forward_proxy_config(port, router_url),
    )
    .unwrap();
    let is_root = Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| o.stdout.starts_with(b"0\n"));
    let conf = format!(
        "{user}worker_processes {processes};\ndaemon off;\npid {root}/nginx.pid;\nerror_log {root}/error.log warn;\n\
         events {{ worker_connections {connections}; }}\n\
         http {{\n  access_log off;\n  {extra}\n  client_body_temp_path {root}/body;\n  proxy_temp_path {root}/proxy;\n  \
         fastcgi_temp_path {root}/fastcgi;\n  uwsgi_temp_path {root}/uwsgi;\n  scgi_temp_path {root}/scgi;\n  \
         include {root}/forward-proxy.conf;\n}}\n",
        user = if is_root { "user root;\n" } else { "" },
        processes = settings.worker_processes,
        connections = settings.worker_connections,
        extra = settings.http,
    );
    std::fs::write(dir.path().join("nginx.conf"), conf).unwrap();
    let child = spawn_group(
        Command::new(nginx_binary())
            .args(["-p", &root, "-c", &format!("{root}/nginx.conf")])
            .stdout(Stdio::null())
            .stderr(Stdio::inherit()),
        "nginx",
    );
    // Built at once, so that a panic below stops nginx too.
    let nginx = Nginx {
        child,
        url: format!("http://127.0.0.1:{port}"),
        _dir: dir,
    };
    let deadline = Instant::now() + Duration::from_secs(10);
    while std::net::TcpStream::connect(("127.0.0.1", port)).is_err() {
        assert!(
            Instant::now() < deadline,
            "nginx did not listen on {port}: {}",
            std::fs::read_to_string(nginx._dir.path().join("error.log")).unwrap_or_default()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
    nginx
}

/// The simulated gorouter's URL (`cf-sim --router-listen`), from `GET /sim`.
pub async fn router_url(sim: &Running) -> String {
    let index: Value = reqwest::get(format!("{}/sim", sim.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    index["router_url"]
        .as_str()
        .expect("router_url")
        .trim_end_matches('/')
        .to_owned()
}

/// A scrape as Prometheus sends it through `proxy_url`.
async fn scrape(
    nginx: &Nginx,
    host: &str,
    path: &str,
    guid: &str,
    instance: &str,
) -> reqwest::Response {
    let client = reqwest::Client::builder()
        .proxy(reqwest::Proxy::http(&nginx.url).unwrap())
        .build()
        .unwrap();
    client
        .get(format!(
            "http://{host}{path}?cf_app_guid={guid}&cf_app_instance={instance}&cf_app_instance_index=0"
        ))
        .send()
        .await
        .unwrap()
}

#[tokio::test]
async fn the_forward_proxy_turns_scrape_parameters_into_instance_and_bearer_headers() {
    let sim = start_sim(&["--router-listen", "127.0.0.1:0", "--demo"]);
    let nginx = start_nginx(&router_url(&sim).await);

    // Prometheus encodes the colon; the proxy decodes it for the gorouter.
    let ok = scrape(
        &nginx,
        "web-shop.apps.example.com",
        "/metrics",
        WEB_SHOP,
        &format!("{WEB_SHOP}%3A1"),
    )
    .await;
    assert_eq!(ok.status(), 200);
    let body = ok.text().await.unwrap();
    assert!(
        body.contains(&format!("app_guid=\"{WEB_SHOP}\"")) && body.contains("instance_index=\"1\""),
        "{body}"
    );

    // A plain colon works too, and the path reaches the app without the cf_* parameters.
    let api = scrape(
        &nginx,
        "api.apps.example.com",
        "/internal/metrics",
        API,
        &format!("{API}:2"),
    )
    .await;
    assert_eq!(api.status(), 200);
    let seen: Value = reqwest::get(format!("{}/sim/router/requests", sim.base_url))
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let paths: Vec<&str> = seen["requests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|r| r["path"].as_str())
        .collect();
    assert!(
        paths.contains(&"/internal/metrics") && paths.contains(&"/metrics"),
        "{seen}"
    );

    // An instance the app does not have: the gorouter's 400 comes back to Prometheus.
    let gone = scrape(
        &nginx,
        "web-shop.apps.example.com",
        "/metrics",
        WEB_SHOP,
        &format!("{WEB_SHOP}%3A7"),
    )
    .await;
    assert_eq!(gone.status(), 400);
    assert_eq!(gone.headers()["x-cf-routererror"], "unknown_route");

    // The bearer token is the app guid from cf_app_guid: another guid is refused by the app.
    let wrong = scrape(
        &nginx,
        "web-shop.apps.example.com",
        "/metrics",
        API,
        &format!("{WEB_SHOP}%3A0"),
    )
    .await;
    assert_eq!(wrong.status(), 401);
}

#[test]
fn dropping_the_forward_proxy_leaves_no_nginx_process_running() {
    // Nothing listens there: nginx starts without reaching its upstream.
    let nginx = start_nginx("http://127.0.0.1:9");
    let group = nginx.pid();
    // The master forks its worker after binding the port: wait for both.
    let deadline = Instant::now() + Duration::from_secs(10);
    while group_members(group).len() < 2 {
        assert!(
            Instant::now() < deadline,
            "nginx's group never had a master and a worker: {:?}",
            group_members(group)
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    drop(nginx);
    assert_eq!(
        group_members(group),
        Vec::<u32>::new(),
        "nginx processes outlived the fixture"
    );
}
