//! The gateway's metrics, registered in sd-sync's registry (served on its `/metrics`).
//! No label or value ever holds an authorization.

use prometheus::{Histogram, HistogramOpts, IntCounter, IntCounterVec, IntGauge, Opts, Registry};

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

#[derive(Clone, Debug)]
pub struct GatewayMetrics {
    requests: IntCounterVec,
    /// Scrape requests forwarded and answered by the upstream (any status).
    pub forwarded: IntCounter,
    pub upstream_duration: Histogram,
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
    pub fn new(registry: &Registry) -> GatewayMetrics {
        let requests = register(
            registry,
            IntCounterVec::new(
                Opts::new(
                    "sd_sync_gateway_requests_total",
                    "Scrape requests to the gateway, by outcome: forwarded (the upstream \
                     answered, any status), refused (403, reason: why; no connection made), \
                     upstream_failed (502/504, reason: connect, tls, timeout, protocol, \
                     body_too_large; or a body cut after its head was forwarded, which also \
                     counted as forwarded: timeout, body_too_large, body_error).",
                ),
                &["outcome", "reason"],
            )
            .expect("a valid metric"),
        );
        for reason in Refusal::REASONS {
            requests.with_label_values(&["refused", reason]);
        }
        for reason in FAILURES {
            requests.with_label_values(&["upstream_failed", reason]);
        }
        let forwarded = requests.with_label_values(&["forwarded", ""]);
        GatewayMetrics {
            forwarded,
            requests,
            upstream_duration: register(
                registry,
                Histogram::with_opts(
                    HistogramOpts::new(
                        "sd_sync_gateway_upstream_duration_seconds",
                        "Time from forwarding a scrape to the upstream's response headers \
                         (connection and TLS handshake included when a new one was needed).",
                    )
                    .buckets(vec![
                        0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0,
                        10.0, 30.0,
                    ]),
                )
                .expect("a valid metric"),
            ),
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

    pub fn refused(&self, refusal: &Refusal) {
        self.requests
            .with_label_values(&["refused", refusal.reason()])
            .inc();
    }

    pub fn failed(&self, reason: &str) {
        self.requests
            .with_label_values(&["upstream_failed", reason])
            .inc();
    }
}
