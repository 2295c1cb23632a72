//! The Cloud Controller client against the real `cf-sim` binary at foundation sizes: how
//! many requests, and how long, a full look-up of every bound app takes.

use std::collections::BTreeSet;
use std::time::Instant;

use gds_targets::AppGuid;
use serde_json::json;

use crate::cf_client::{all_guids, client_for, control, sim, sim_requests};

/// `make bench`: how many requests and how long a full look-up of every bound app takes,
/// for a few foundation sizes. Prints figures; asserts nothing about time.
#[tokio::test]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_cf_discovery() {
    for (apps, bound_every) in [(10_000usize, 1usize), (20_000, 1), (20_000, 20)] {
        let apps_arg = apps.to_string();
        let spaces = (apps / 10).to_string();
        let sim = sim(&["--seed-apps", &apps_arg, "--seed-spaces", &spaces]);
        let everything = all_guids(&sim).await;
        let wanted: BTreeSet<AppGuid> = everything.iter().step_by(bound_every).cloned().collect();
        let mut timings = Vec::new();
        let mut requests = 0;
        for _ in 0..5 {
            control(&sim, reqwest::Method::DELETE, "/sim/requests", json!({})).await;
            let client = client_for(&sim);
            let started = Instant::now();
            let snapshot = client.apps_info(&wanted).await.unwrap();
            timings.push(started.elapsed());
            assert_eq!(snapshot.apps.len(), wanted.len());
            let counts = sim_requests(&sim).await;
            requests = counts["total_cc"].as_u64().unwrap() + counts["total_uaa"].as_u64().unwrap();
        }
        timings.sort();
        println!(
            "bench_cf_discovery: {} bound of {apps} apps: {requests} requests (incl. token), median {:?}, max {:?}",
            wanted.len(),
            timings[timings.len() / 2],
            timings[timings.len() - 1]
        );
    }
}

/// Minutes each idle measurement of [`bench_cf_idle_requests_per_hour`] lasts: two full
/// passes (every minute, at second 0) and the polls in between.
const IDLE_MINUTES: u64 = 2;

/// `make bench`: Cloud Controller requests per hour of an idle updater (default schedule:
/// a full pass every minute, the fast path every 2 s) with 10,000 bound apps, with the
/// platform's rate limiter off and on at CF's 2,000 an hour (the updater as a limited
/// client, `global_auditor`); and the fast path's time from a scale to the rewritten
/// file in both. Counted at the simulator over [`IDLE_MINUTES`], scaled to an hour.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
#[ignore = "benchmark: run with `make bench`"]
async fn bench_cf_idle_requests_per_hour() {
    use std::time::Duration;

    use gds_store::TargetState;
    use reqwest::{Method, StatusCode};
    use serde_json::Value;

    use super::updater::{INSTANCE, app_guids, bind_all};
    use crate::broker::support::{Database, Fixture, Options};
    use crate::updater::{UpdaterEnv, metrics, wait_for};

    const AS_CLIENT: [(&str, &str); 4] = [
        ("UAA_USERNAME", ""),
        ("UAA_PASSWORD", ""),
        ("UAA_CLIENT_ID", "gds-prometheus"),
        ("UAA_CLIENT_SECRET", "gds-prometheus-secret"),
    ];
    for (label, limiter) in [
        ("limiter off", &[][..]),
        ("limiter on, 2000/h", &["--rate-limit", "2000"][..]),
    ] {
        let mut sim_args: Vec<String> = ["--seed-apps", "10000", "--seed-spaces", "1000"]
            .iter()
            .map(|a| (*a).to_owned())
            .collect();
        sim_args.extend(limiter.iter().map(|a| (*a).to_owned()));
        let f = Fixture::start_with(
            Database::Postgres,
            Options {
                sim_args,
                env: AS_CLIENT
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                    .collect(),
            },
        )
        .await;
        let apps = app_guids(&f).await;
        assert_eq!(f.provision(INSTANCE).await.0, StatusCode::CREATED);
        bind_all(&f, &apps).await;
        let env = UpdaterEnv::of(&f).with(&AS_CLIENT);
        let once = env.run(&["--once"]).await;
        assert_eq!(once.code, Some(0), "{}\n{}", once.stdout, once.stderr);
        let updater = env.start();
        let http = reqwest::Client::new();
        wait_for(
            "the full pass at start",
            Duration::from_secs(300),
            async || {
                metrics(&http, &updater)
                    .await
                    .contains("gds_updater_passes_total{outcome=\"ok\",scope=\"full\"} 1")
            },
        )
        .await;
        f.sim_control(Method::DELETE, "/sim/requests", json!({}))
            .await;
        tokio::time::sleep(Duration::from_secs(IDLE_MINUTES * 60)).await;
        let counts = f.sim_control(Method::GET, "/sim/requests", json!({})).await;
        let per_hour = |n: u64| n * 60 / IDLE_MINUTES;
        let by = |endpoint: &str| counts["by_endpoint"][endpoint].as_u64().unwrap_or(0);
        let total = counts["total_cc"].as_u64().unwrap();
        println!(
            "bench_cf_idle_requests_per_hour: 10000 bound apps, {label}: {} CC requests/h \
             (audit events {}/h, apps {}/h, processes {}/h, routes {}/h, info {}/h; 429s: {}; \
             UAA {}/h), over {IDLE_MINUTES} min",
            per_hour(total),
            per_hour(by("GET /v3/audit_events")),
            per_hour(by("GET /v3/apps")),
            per_hour(by("GET /v3/processes")),
            per_hour(by("GET /v3/routes")),
            per_hour(by("GET /v3/info")),
            counts["rate_limited"],
            per_hour(counts["total_uaa"].as_u64().unwrap()),
        );

        // The fast path's time to file: three scales, one at a time, with no scheduled
        // pass in the way (a full pass at 10,000 apps holds the loop for seconds).
        drop(updater);
        let updater = env.set("UPDATE_TARGETS_SCHEDULE", "0 0 0 1 1 *").start();
        wait_for(
            "the full pass at start",
            Duration::from_secs(300),
            async || {
                metrics(&http, &updater)
                    .await
                    .contains("gds_updater_passes_total{outcome=\"ok\",scope=\"full\"} 1")
            },
        )
        .await;
        let mut delays = Vec::new();
        for app in apps.iter().step_by(997).take(8) {
            if delays.len() == 3 {
                break;
            }
            let Some(now) = f.file(TargetState::Active, app).await else {
                continue;
            };
            let instances = serde_json::from_slice::<Vec<Value>>(&now).unwrap().len() + 1;
            // The previous pass' writers' record publication (a listing of 10,000 keys)
            // done, and the fast path's budget, if any, paid back.
            tokio::time::sleep(Duration::from_secs(40)).await;
            let scaled = Instant::now();
            f.sim_control(
                Method::POST,
                &format!("/sim/apps/{app}/scale"),
                json!({ "instances": instances }),
            )
            .await;
            wait_for(
                "the scale in the bucket",
                Duration::from_secs(120),
                async || {
                    f.file(TargetState::Active, app).await.is_some_and(|b| {
                        serde_json::from_slice::<Vec<Value>>(&b).is_ok_and(|g| g.len() == instances)
                    })
                },
            )
            .await;
            delays.push(format!("{:.2}", scaled.elapsed().as_secs_f64()));
        }
        println!(
            "bench_cf_idle_requests_per_hour: {label}: fast path, scale -> rewritten file: {} s",
            delays.join(", ")
        );
    }
}
