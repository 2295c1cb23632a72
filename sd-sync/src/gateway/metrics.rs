//! The gateway's metrics, registered in sd-sync's registry (served on its `/metrics`).
//! No label or value ever holds an authorization.

use prometheus::{
    Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge, Opts, Registry,
};

use super::refusal::Refusal;

/// 502/504 reasons.
pub const FAILURES: [&str; 6] = [
    "connect",
    "tls",
    "timeout",
    "protocol",
    "body_too_large",
    "body_error",
];

/// Refusals decided once the scrape's mapping is known (the others are decided before,
/// with `mapping=""`).
const MAPPED_REFUSALS: [&str; 2] = ["forbidden_address", "no_authorization"];

#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    requests: IntCounterVec,
    /// Per mapping (the route table's order): scrape requests forwarded and answered by
    /// the upstream (any status).
    pub forwarded: Vec<IntCounter>,
    /// Per mapping: time to the upstream's response head.
    pub upstream_duration: Vec<Histogram>,
    pub response_bytes: IntCounter,
    pub in_flight: IntGauge,
    pub connects: IntCounter,
    pub idle_connections: IntGauge,
}

fn register<T: prometheus::core::Collector + Clone + 'static>(registry: &Registry, metric: T) -> T {
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

impl GatewayMetrics {
    /// The metrics of a gateway serving `mappings` (their names, in the route table's
    /// order).
    pub fn new(registry: &Registry, mappings: &[&str]) -> GatewayMetrics {
        let requests = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "sd_sync_gateway_requests_total",
                    "Scrape requests to the gateway, by outcome: forwarded (the upstream \
                     answered, any status), refused (403, reason: why; no connection made), \
                     upstream_failed (502/504, reason: connect, tls, timeout, protocol, \
                     body_too_large; or a body cut after its head was forwarded, which also \
                     counted as forwarded: timeout, body_too_large, body_error); mapping: the \
                     target's mapping (the last component of its directory), empty for a \
                     refusal decided before the scrape matched an installed target.",
                ),
                &["mapping", "outcome", "reason"],
            )
            .expect("a valid metric"),
        );
        for reason in Refusal::REASONS {
            if !MAPPED_REFUSALS.contains(&reason) {
                requests.with_label_values(&["", "refused", reason]);
            }
        }
        for mapping in mappings {
            for reason in MAPPED_REFUSALS {
                requests.with_label_values(&[mapping, "refused", reason]);
            }
            for reason in FAILURES {
                requests.with_label_values(&[mapping, "upstream_failed", reason]);
            }
        }
        let forwarded = mappings
            .iter()
            .map(|mapping| requests.with_label_values(&[mapping, "forwarded", ""]))
            .collect();
        let durations = register(
            registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "sd_sync_gateway_upstream_duration_seconds",
                    "Time from forwarding a scrape to the upstream's response headers \
                     (connection and TLS handshake included when a new one was needed), by \
                     the target's mapping.",
                )
                .buckets(vec![
                    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0,
                    30.0,
                ]),
                &["mapping"],
            )
            .expect("a valid metric"),
        );
        GatewayMetrics {
            forwarded,
            requests,
            upstream_duration: mappings
                .iter()
                .map(|mapping| durations.with_label_values(&[mapping]))
                .collect(),
            response_bytes: register(
                registry,
                IntCounter::new(
                    "sd_sync_gateway_response_bytes_total",
                    "Response body bytes passed from upstreams to Prometheus, as sent \
                     (compressed when the app compressed them).",
                )
                .expect("a valid metric"),
            ),
            in_flight: register(
                registry,
                IntGauge::new(
                    "sd_sync_gateway_requests_in_flight",
                    "Scrapes being forwarded now: each holds one upstream connection.",
                )
                .expect("a valid metric"),
            ),
            connects: register(
                registry,
                IntCounter::new(
                    "sd_sync_gateway_upstream_connections_total",
                    "Upstream connections opened (a scrape on a pooled keep-alive \
                     connection opens none).",
                )
                .expect("a valid metric"),
            ),
            idle_connections: register(
                registry,
                IntGauge::new(
                    "sd_sync_gateway_upstream_connections_idle",
                    "Upstream keep-alive connections idle in the pool now (at most \
                     --scrape-pool-max-idle, all routers together).",
                )
                .expect("a valid metric"),
            ),
        }
    }

    /// A refusal, of a scrape of `mapping` (`""`: decided before it matched one).
    pub fn refused(&self, refusal: &Refusal, mapping: &str) {
        self.requests
            .with_label_values(&[mapping, "refused", refusal.reason()])
            .inc();
    }

    pub fn failed(&self, reason: &str, mapping: &str) {
        self.requests
            .with_label_values(&[mapping, "upstream_failed", reason])
            .inc();
    }
}
