//! The operator kit against the real stack of the end-to-end test: a Prometheus that
//! scrapes the broker, the updater, sd-sync and itself, and evaluates the shipped alert
//! rules (`manifests/prometheus/rules/alerts.yml`, with every `for:` shortened to 1 s).
//!
//! - Every query of every panel of the Grafana dashboard (`manifests/grafana/`) answers
//!   without error and with data; the JSON has what Grafana needs. Its scrape gateway
//!   panels query every `sd_sync_gateway_*` metric sd-sync exports, and show Prometheus'
//!   scrapes of the bound app forwarded through the gateway, with their latency.
//! - The dead man's switch (`GdsUpdaterNoSuccessfulPass`) goes `firing` when the updater
//!   stops, and resolves when it is back.

use std::path::Path;
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

use crate::broker::support::WEB_SHOP;
use crate::e2e::{Stack, expect_status};

const DEAD_MANS_SWITCH: &str = "GdsUpdaterNoSuccessfulPass";

fn repo(relative: &str) -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("..")
        .join(relative)
}

/// The shipped rules with every `for:` at 1 s, so that the test waits seconds, not minutes.
fn rules_with_short_for(dir: &Path) -> std::path::PathBuf {
    let rules = std::fs::read_to_string(repo("manifests/prometheus/rules/alerts.yml")).unwrap();
    let shortened: String = rules
        .lines()
        .map(|line| match line.trim_start().strip_prefix("for: ") {
            Some(_) => format!("{}for: 1s\n", &line[..line.len() - line.trim_start().len()]),
            None => format!("{line}\n"),
        })
        .collect();
    assert_ne!(shortened, rules, "the rules have no `for:` to shorten");
    let path = dir.join("alerts.yml");
    std::fs::write(&path, shortened).unwrap();
    path
}

/// The dashboard's panels that query Prometheus, as (panel title, queries).
fn dashboard_queries(dashboard: &Value) -> Vec<(String, Vec<String>)> {
    dashboard["panels"]
        .as_array()
        .expect("panels")
        .iter()
        .filter(|panel| panel["type"] != "row")
        .map(|panel| {
            let title = panel["title"].as_str().expect("a panel title").to_owned();
            let queries = panel["targets"]
                .as_array()
                .unwrap_or_else(|| panic!("panel {title:?} has no targets"))
                .iter()
                .map(|target| target["expr"].as_str().expect("expr").to_owned())
                .collect();
            (title, queries)
        })
        .collect()
}

#[test]
fn the_dashboard_has_what_grafana_requires() {
    let text = std::fs::read_to_string(repo("manifests/grafana/gds-prometheus.json")).unwrap();
    let dashboard: Value = serde_json::from_str(&text).expect("the dashboard is JSON");
    assert!(dashboard["schemaVersion"].as_u64().is_some_and(|v| v >= 36));
    assert!(dashboard["uid"].as_str().is_some_and(|uid| !uid.is_empty()));
    assert!(dashboard["title"].as_str().is_some_and(|t| !t.is_empty()));
    let variables = dashboard["templating"]["list"]
        .as_array()
        .expect("templating");
    assert!(
        variables
            .iter()
            .any(|v| v["name"] == "datasource" && v["type"] == "datasource"),
        "a datasource variable"
    );
    let mut ids = std::collections::BTreeSet::new();
    for panel in dashboard["panels"].as_array().expect("panels") {
        assert!(
            ids.insert(panel["id"].as_u64().expect("a panel id")),
            "ids are unique"
        );
        for key in ["x", "y", "w", "h"] {
            assert!(
                panel["gridPos"][key].as_u64().is_some(),
                "gridPos.{key}: {panel}"
            );
        }
        if panel["type"] == "row" {
            continue;
        }
        assert_eq!(panel["datasource"]["uid"], "${datasource}", "{panel}");
        for target in panel["targets"].as_array().expect("targets") {
            assert!(target["refId"].as_str().is_some(), "{target}");
            assert_eq!(target["datasource"]["type"], "prometheus", "{target}");
        }
    }
    assert!(dashboard_queries(&dashboard).len() >= 21);
}

/// The queries of the dashboard's panel with this title.
fn panel_queries<'a>(panels: &'a [(String, Vec<String>)], title: &str) -> &'a [String] {
    panels
        .iter()
        .find(|(t, _)| t == title)
        .map(|(_, queries)| queries.as_slice())
        .unwrap_or_else(|| panic!("the dashboard has no panel {title:?}"))
}

/// The value of one sample of an instant query's result (`NaN` included).
fn sample_value(sample: &Value) -> f64 {
    sample["value"][1]
        .as_str()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("not a sample: {sample}"))
}

/// `/api/v1/query` with Grafana's `$__rate_interval` replaced: the result, or the error.
async fn query(stack: &Stack, expr: &str) -> Result<Vec<Value>, String> {
    let expr = expr.replace("$__rate_interval", "30s");
    let response = reqwest::Client::new()
        .get(format!("{}/api/v1/query", stack.prometheus.url))
        .query(&[("query", expr.as_str())])
        .send()
        .await
        .map_err(|e| e.to_string())?;
    let body: Value = response.json().await.map_err(|e| e.to_string())?;
    if body["status"] != "success" {
        return Err(format!("{expr}: {body}"));
    }
    Ok(body["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The dead man's switch's state in `/api/v1/alerts`, if it is pending or firing.
async fn dead_mans_switch(stack: &Stack) -> Option<String> {
    let body: Value = reqwest::get(format!("{}/api/v1/alerts", stack.prometheus.url))
        .await
        .ok()?
        .json()
        .await
        .ok()?;
    body["data"]["alerts"]
        .as_array()?
        .iter()
        .find(|alert| alert["labels"]["alertname"] == DEAD_MANS_SWITCH)
        .and_then(|alert| alert["state"].as_str().map(str::to_owned))
}

async fn wait_for(
    stack: &Stack,
    what: &str,
    within: Duration,
    mut check: impl AsyncFnMut(&Stack) -> bool,
) {
    let started = Instant::now();
    while !check(stack).await {
        assert!(
            started.elapsed() < within,
            "timed out after {within:?} waiting until {what}\nPrometheus log:\n{}",
            stack.prometheus.log_tail()
        );
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    eprintln!(
        "operator kit: {what} after {:.1} s",
        started.elapsed().as_secs_f64()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_dashboard_query_has_data_and_the_dead_mans_switch_fires_and_resolves() {
    let dir = tempfile::tempdir().unwrap();
    let rules = rules_with_short_for(dir.path());
    let mut stack = Stack::start_with_operator_kit(&rules).await;
    let f = &stack.fixture;
    expect_status(
        f.provision("kit-prom").await,
        StatusCode::CREATED,
        "provision",
    );
    expect_status(
        f.bind("kit-prom", "kit-binding", WEB_SHOP, Value::Null)
            .await,
        StatusCode::CREATED,
        "bind web-shop",
    );

    // A Cloud Controller change for the updater's fast path to follow (its latency).
    stack
        .sim(
            reqwest::Method::POST,
            &format!("/sim/apps/{WEB_SHOP}/scale"),
            serde_json::json!({"instances": 3}),
        )
        .await;

    // Every panel's every query, once the services have been scraped with what it needs:
    // the bind, the scale followed, sd-sync's installs, web-shop's scrapes.
    let text = std::fs::read_to_string(repo("manifests/grafana/gds-prometheus.json")).unwrap();
    let panels = dashboard_queries(&serde_json::from_str(&text).unwrap());
    let mut empty = Vec::new();
    let started = Instant::now();
    loop {
        empty.clear();
        for (title, queries) in &panels {
            for expr in queries {
                match query(&stack, expr).await {
                    Ok(result) if result.is_empty() => empty.push(format!("{title}: {expr}")),
                    Ok(_) => {}
                    Err(e) => panic!("panel {title:?}: the query fails: {e}"),
                }
            }
        }
        if empty.is_empty() {
            break;
        }
        assert!(
            started.elapsed() < Duration::from_secs(120),
            "queries without data after 120 s:\n{}",
            empty.join("\n")
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
    eprintln!(
        "operator kit: {} panels' queries all have data after {:.1} s",
        panels.len(),
        started.elapsed().as_secs_f64()
    );

    // The gateway's counters exist at zero from its start, so data alone proves little:
    // every metric it exports has a panel, and the panels show web-shop's scrapes
    // forwarded through it, with a latency.
    let exported = stack.sd_sync.get("/metrics").await.text().await.unwrap();
    let families: Vec<&str> = exported
        .lines()
        .filter_map(|line| line.strip_prefix("# TYPE ")?.split(' ').next())
        .filter(|name| name.starts_with("sd_sync_gateway_"))
        .collect();
    assert!(
        families.len() >= 6,
        "sd-sync's gateway metrics: {families:?}"
    );
    for family in families {
        assert!(
            panels
                .iter()
                .any(|(_, queries)| queries.iter().any(|q| q.contains(family))),
            "no panel of the dashboard queries {family}"
        );
    }
    let outcomes = panel_queries(&panels, "Gateway scrapes by outcome")[0].clone();
    let latency = panel_queries(&panels, "Gateway upstream latency (p50, p99)").to_vec();
    wait_for(
        &stack,
        "the gateway's panels show scrapes forwarded and their latency",
        Duration::from_secs(60),
        async |s| {
            let forwarded = query(s, &outcomes).await.unwrap().iter().any(|sample| {
                sample["metric"]["outcome"] == "forwarded" && sample_value(sample) > 0.0
            });
            let mut measured = true;
            for expr in &latency {
                let result = query(s, expr).await.unwrap();
                measured &= result.iter().any(|sample| sample_value(sample).is_finite());
            }
            forwarded && measured
        },
    )
    .await;

    // At start the updater has not finished a pass yet, which the switch may catch.
    wait_for(
        &stack,
        "the dead man's switch is quiet",
        Duration::from_secs(90),
        async |s| dead_mans_switch(s).await.is_none(),
    )
    .await;
    stack.stop_updater();
    wait_for(
        &stack,
        "the dead man's switch fires",
        Duration::from_secs(60),
        async |s| dead_mans_switch(s).await.as_deref() == Some("firing"),
    )
    .await;
    stack.restart_updater();
    // The new updater takes the dead one's lease when it expires, and passes at its next
    // scheduled full pass (every minute).
    wait_for(
        &stack,
        "the dead man's switch resolves",
        Duration::from_secs(150),
        async |s| dead_mans_switch(s).await.is_none(),
    )
    .await;
}
