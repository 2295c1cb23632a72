//! A real Prometheus (Debian's package, installed by scripts/deps/prometheus.sh) discovers
//! a target written to the bucket through sd-sync, by file_sd and by http_sd (sending
//! sd-sync's credentials: a bearer token, and basic auth).

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use serde_json::Value;

use super::*;
use crate::prometheus::{Prometheus, prometheus_tool};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_target_written_to_the_bucket_reaches_prometheus_through_file_sd_and_http_sd() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("eu-west-1-targets");
    // sd-sync requires credentials; Prometheus sends them as its http_sd settings say:
    // a bearer token from a file on one job (without `type`, which Prometheus 2.42 then
    // sends bare, not as `Bearer <token>`), basic auth on the other.
    let token_file = dirs.root().join("sd-sync-token");
    std::fs::write(&token_file, "t0ken-for-prometheus\n").unwrap();
    let password_file = dirs.root().join("sd-sync-password");
    std::fs::write(&password_file, "pass-for-prometheus\n").unwrap();
    let sd_sync = start_sd_sync_with(
        &args(&[(&bucket, "active/", &dir)], &s3_endpoint()),
        &[
            ("SD_SYNC_AUTH_TOKEN_FILE", token_file.to_str().unwrap()),
            ("SD_SYNC_AUTH_USERNAME", "prometheus"),
            (
                "SD_SYNC_AUTH_PASSWORD_FILE",
                password_file.to_str().unwrap(),
            ),
        ],
        Some("Bearer t0ken-for-prometheus".into()),
    );
    assert_eq!(
        reqwest::get(format!("{}/targets", sd_sync.base_url))
            .await
            .unwrap()
            .status(),
        401,
        "not without credentials"
    );

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
        authorization:
          credentials_file: '{token}'
  - job_name: cf-http-sd-basic
    scheme: http
    proxy_url: http://127.0.0.1:1
    http_sd_configs:
      - url: '{sd_sync}/targets/eu-west-1-targets'
        refresh_interval: 1s
        basic_auth:
          username: prometheus
          password_file: '{password}'
"#,
            dir = dir.display(),
            sd_sync = sd_sync.base_url,
            token = token_file.display(),
            password = password_file.display(),
        ),
    )
    .unwrap();
    let prometheus = Prometheus::start(&config, &dirs.root().join("prometheus-data"));
    eventually("Prometheus is ready", Duration::from_secs(30), async || {
        prometheus.is_ready().await
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
        if discovered(&targets, "cf-file-sd") == 2
            && discovered(&targets, "cf-http-sd") == 2
            && discovered(&targets, "cf-http-sd-basic") == 2
        {
            break targets;
        }
        assert!(
            Instant::now() < deadline,
            "Prometheus did not discover both instances through every mechanism within 60 s.\n\
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
