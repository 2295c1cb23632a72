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
