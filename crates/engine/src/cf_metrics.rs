//! Cloud Controller requests by purpose and the rate-limit budget as seen, under the
//! prefix of the service that serves them (`gds_updater`, `observe_broker`).

use gds_cf::{CfClient, Purpose};
use prometheus::{Gauge, GaugeVec, IntCounterVec, Opts, Registry};

/// `<prefix>_cf_requests_by_purpose_total{purpose,outcome}`, `<prefix>_cf_rate_limit_requests`,
/// `<prefix>_cf_rate_limit_window_seconds`, `<prefix>_cf_rate_limit_remaining_requests`,
/// `<prefix>_cf_background_budget_requests_per_second{purpose}`. Cheap to clone.
#[derive(Clone, Debug)]
pub struct CfMetrics {
    /// Requests by purpose (`bind`, `full_pass`, `fast_path`, `info`, `other`) and outcome
    /// (`ok`, `client_error`, `rate_limited`, `server_error`, `no_answer`).
    pub requests: IntCounterVec,
    /// The rate limit that applies to our identity, requests per window; 0 when none does
    /// (the limiter is off, or our identity is exempt).
    pub limit: Gauge,
    /// Its window.
    pub window: Gauge,
    /// The last `X-RateLimit-Remaining` (10 % steps, for every process using our
    /// identity); NaN when unknown or its window has passed.
    pub remaining: Gauge,
    /// Requests per second background work of `purpose` (`fast_path`, `full_pass`) may
    /// make now; no series when not paced.
    pub background_rate: GaugeVec,
}

impl CfMetrics {
    /// The metrics, registered in `registry` under `prefix`. Panics if it has them already.
    pub fn registered_in(registry: &Registry, prefix: &str) -> Self {
        let requests = IntCounterVec::new(
            Opts::new(
                format!("{prefix}_cf_requests_by_purpose_total"),
                "Cloud Controller requests, by purpose (bind, full_pass, fast_path, info, \
                 other) and outcome (ok, client_error, rate_limited, server_error, no_answer).",
            ),
            &["purpose", "outcome"],
        )
        .expect("valid metric");
        let limit = Gauge::new(
            format!("{prefix}_cf_rate_limit_requests"),
            "The Cloud Controller's rate limit for our identity, in requests per window, as \
             seen (0: none applies).",
        )
        .expect("valid metric");
        let window = Gauge::new(
            format!("{prefix}_cf_rate_limit_window_seconds"),
            "The window of the Cloud Controller's rate limit (0: none applies).",
        )
        .expect("valid metric");
        let remaining = Gauge::new(
            format!("{prefix}_cf_rate_limit_remaining_requests"),
            "The last X-RateLimit-Remaining seen (NaN: unknown).",
        )
        .expect("valid metric");
        let background_rate = GaugeVec::new(
            Opts::new(
                format!("{prefix}_cf_background_budget_requests_per_second"),
                "Cloud Controller requests per second background work may make now, by \
                 purpose (no series: not paced).",
            ),
            &["purpose"],
        )
        .expect("valid metric");
        for purpose in [Purpose::Bind, Purpose::FullPass, Purpose::FastPath] {
            requests.with_label_values(&[purpose.label(), "ok"]);
        }
        for m in [
            Box::new(requests.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(limit.clone()),
            Box::new(window.clone()),
            Box::new(remaining.clone()),
            Box::new(background_rate.clone()),
        ] {
            registry.register(m).expect("unique metric names");
        }
        let metrics = Self {
            requests,
            limit,
            window,
            remaining,
            background_rate,
        };
        metrics.remaining.set(f64::NAN);
        metrics
    }

    /// Brings the metrics up to the client's tally and budget.
    pub fn observe(&self, cf: &CfClient) {
        for ((purpose, outcome), count) in &cf.request_stats().by_purpose {
            let counter = self.requests.with_label_values(&[purpose.label(), outcome]);
            let seen = counter.get();
            if *count > seen {
                counter.inc_by(count - seen);
            }
        }
        let budget = cf.budget().snapshot();
        self.limit
            .set(budget.limit.map_or(0.0, |l| l.requests as f64));
        self.window
            .set(budget.limit.map_or(0.0, |l| l.window.as_secs_f64()));
        self.remaining
            .set(budget.remaining.map_or(f64::NAN, |r| r as f64));
        for (purpose, rate) in [
            (Purpose::FastPath, budget.fast_path_rate),
            (Purpose::FullPass, budget.full_pass_rate),
        ] {
            match rate {
                Some(rate) => self
                    .background_rate
                    .with_label_values(&[purpose.label()])
                    .set(rate),
                None => {
                    // Not there yet, or already gone: either way no series.
                    let _ = self.background_rate.remove_label_values(&[purpose.label()]);
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gds_cf::{CfConfig, UaaCredentials};
    use gds_service::Secret;

    #[test]
    fn a_client_without_a_known_limit_shows_zero_limit_unknown_remaining_and_no_pacing() {
        let cf = CfClient::new(CfConfig::new(
            "https://api.example.org".parse().unwrap(),
            UaaCredentials::ClientCredentials {
                client_id: "c".into(),
                client_secret: Secret::new("s"),
            },
        ))
        .unwrap();
        let registry = Registry::new();
        let metrics = CfMetrics::registered_in(&registry, "gds_updater");
        metrics.observe(&cf);
        let text = gds_service::metrics::render(&registry);
        assert!(
            !text.contains("gds_updater_cf_background_budget_requests_per_second{"),
            "not paced: no series\n{text}"
        );
        for expected in [
            "gds_updater_cf_rate_limit_requests 0",
            "gds_updater_cf_rate_limit_window_seconds 0",
            "gds_updater_cf_rate_limit_remaining_requests NaN",
            "gds_updater_cf_requests_by_purpose_total{outcome=\"ok\",purpose=\"bind\"} 0",
        ] {
            assert!(text.contains(expected), "{expected} missing from:\n{text}");
        }
        // The broker's prefix, in a registry of its own.
        let broker = Registry::new();
        CfMetrics::registered_in(&broker, "observe_broker");
        assert!(
            gds_service::metrics::render(&broker).contains("observe_broker_cf_rate_limit_requests")
        );
    }
}
