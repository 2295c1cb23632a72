//! A real Prometheus (Debian's package, installed by scripts/deps/prometheus.sh) discovers
//! a target written to the bucket through sd-sync, by file_sd and by http_sd.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};
use std::time::Duration;

use serde_json::Value;

use super::*;

/// The `prometheus` (or `promtool`) binary: `GDS_TEST_PROMETHEUS_DIR/NAME`, else PATH.
/// Missing is a failure, not a skip.
fn prometheus_tool(name: &str) -> PathBuf {
    let candidates = std::env::var_os("GDS_TEST_PROMETHEUS_DIR")
        .map(|dir| vec![PathBuf::from(dir)])
        .unwrap_or_else(|| {
            std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).collect())
                .unwrap_or_default()
        });
    candidates
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run scripts/install-test-deps.sh (it installs \
                 Debian's prometheus package), or set GDS_TEST_PROMETHEUS_DIR"
            )
        })
}

/// A Prometheus process of our own, on a free loopback port, killed on drop.
struct Prometheus {
    child: Child,
    url: String,
    log: PathBuf,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Prometheus {
    fn start(config: &Path, data: &Path) -> Prometheus {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let log = data.with_extension("log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = Command::new(prometheus_tool("prometheus"))
            .arg(format!("--config.file={}", config.display()))
            .arg(format!("--storage.tsdb.path={}", data.display()))
            .arg(format!("--web.listen-address=127.0.0.1:{port}"))
            .stdout(log_file.try_clone().unwrap())
            .stderr(log_file)
            .spawn()
            .expect("prometheus starts");
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
        }
    }

    fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    async fn active_targets(&self) -> Vec<Value> {
        let Ok(response) = reqwest::get(format!("{}/api/v1/targets?state=active", self.url)).await
        else {
            return Vec::new();
        };
        let body: Value = response.json().await.unwrap_or(Value::Null);
        body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_written_to_the_bucket_reaches_prometheus_through_file_sd_and_http_sd() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("eu-west-1-targets");
    let sd_sync = start_sd_sync(&args(&[(&bucket, "active/", &dir)], &s3_endpoint()));

    // The scrape settings of manifests/prometheus/: through the forward proxy (here a
    // port where nothing listens: targets are down, which does not matter for discovery).
    let config = dirs.root().join("prometheus.yml");
    std::fs::write(
        &config,
        format!(
            r#"global:
  scrape_interval: 1m
scrape_configs:
  - job_name: cf-file-sd
    scheme: http
    proxy_url: http://127.0.0.1:1
    file_sd_configs:
      - files: ['{dir}/*.json']
        refresh_interval: 1s
  - job_name: cf-http-sd
    scheme: http
    proxy_url: http://127.0.0.1:1
    http_sd_configs:
      - url: '{sd_sync}/targets/eu-west-1-targets'
        refresh_interval: 1s
"#,
            dir = dir.display(),
            sd_sync = sd_sync.base_url,
        ),
    )
    .unwrap();
    let prometheus = Prometheus::start(&config, &dirs.root().join("prometheus-data"));
    eventually("Prometheus is ready", Duration::from_secs(30), async || {
        reqwest::get(format!("{}/-/ready", prometheus.url))
            .await
            .is_ok_and(|r| r.status().is_success())
    })
    .await;

    let app = guid(42);
    bucket
        .put(
            &format!("active/{app}.json"),
            &target_file(&app, "my-app", 2),
        )
        .await;

    let discovered = |targets: &[Value], pool: &str| -> usize {
        targets
            .iter()
            .filter(|t| t["scrapePool"] == pool)
            .filter(|t| t["discoveredLabels"]["__param_cf_app_guid"] == app.as_str())
            .count()
    };
    let deadline = Instant::now() + Duration::from_secs(60);
    let targets = loop {
        let targets = prometheus.active_targets().await;
        if discovered(&targets, "cf-file-sd") == 2 && discovered(&targets, "cf-http-sd") == 2 {
            break targets;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not discover both instances through both mechanisms within 60 s.\n\
             targets: {targets:#?}\nPrometheus log:\n{}",
            prometheus.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    };

    for target in targets
        .iter()
        .filter(|t| t["discoveredLabels"]["__param_cf_app_guid"] == app.as_str())
    {
        let labels = &target["labels"];
        let index = target["discoveredLabels"]["__param_cf_app_instance_index"]
            .as_str()
            .unwrap();
        assert_eq!(labels["job"], "my-app", "{target:#}");
        assert_eq!(labels["org"], "my-org", "{target:#}");
        assert_eq!(labels["space"], "my-space", "{target:#}");
        assert_eq!(labels["instance"], format!("{app}:{index}"), "{target:#}");
        let scrape_url = target["scrapeUrl"].as_str().unwrap();
        assert!(
            // Prometheus 2.42 spells out the default port.
            (scrape_url.starts_with("http://my-app.apps.example.com/metrics?")
                || scrape_url.starts_with("http://my-app.apps.example.com:80/metrics?"))
                && scrape_url.contains(&format!("cf_app_guid={app}")),
            "the query parameters the forward proxy turns into headers: {scrape_url}"
        );
    }
}

#[test]
fn the_example_prometheus_configs_are_valid() {
    let examples = Path::new(env!("CARGO_MANIFEST_DIR")).join("../manifests/prometheus");
    let mut checked = 0;
    for entry in std::fs::read_dir(&examples).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_some_and(|e| e == "yml") {
            let output = Command::new(prometheus_tool("promtool"))
                .args(["check", "config", "--syntax-only"])
                .arg(&path)
                .output()
                .expect("promtool runs");
            assert!(
                output.status.success(),
                "{}: {}{}",
                path.display(),
                String::from_utf8_lossy(&output.stdout),
                String::from_utf8_lossy(&output.stderr)
            );
            checked += 1;
        }
    }
    assert!(checked >= 2, "the file_sd and http_sd examples");
}
