//! The broker's own metrics, served on `GET /metrics`.

use prometheus::{HistogramOpts, HistogramVec, IntCounterVec, Opts, Registry};

/// Every metric of the broker, registered in one registry.
#[derive(Clone, Debug)]
pub struct BrokerMetrics {
    pub registry: Registry,
    /// `observe_broker_http_requests_total{code,method,path}`: the name, labels and
    /// lowercase methods of the original's Rack collector, which existing alerts use;
    /// `path` is the route template (e.g.
    /// `/v2/service_instances/{instance_id}/service_bindings/{binding_id}`), never raw ids.
    pub http_requests: IntCounterVec,
    /// `observe_broker_http_request_duration_seconds{method,path}`.
    pub http_duration: HistogramVec,
    /// `observe_broker_cf_lookups_total{result}`: `found`, `not_found`, `error`,
    /// `timeout` (no answer within the bind's budget, `BROKER_OPERATION_TIMEOUT_SECONDS`).
    pub cf_lookups: IntCounterVec,
    /// `observe_broker_store_operations_total{operation,result}`: `write`/`remove`/
    /// `publish_record` (the writers' record), `ok`/`error`.
    pub store_operations: IntCounterVec,
    /// `observe_broker_binding_changes_total{change}`: `created`, `deleted`, `cancelled` (an
    /// unbind that arrived while the binding's bind was still running).
    pub binding_changes: IntCounterVec,
    /// `observe_broker_target_latency_seconds{operation}`: the broker's part of discovery
    /// latency, on its own monotonic clock (the platform's time before the request reached
    /// the broker is not in it). `bind`: request received -> the app's target file written
    /// (`active/` or `inactive/`); `unbind`: request received -> the app's files removed,
    /// observed only when the app's last binding goes. Nothing is observed when nothing was
    /// written or removed.
    pub target_latency: HistogramVec,
}

impl BrokerMetrics {
    pub fn new() -> Self {
        let registry = Registry::new();
        let http_requests = IntCounterVec::new(
            Opts::new(
                "observe_broker_http_requests_total",
                "HTTP requests answered, by status code, method and route.",
            ),
            &["code", "method", "path"],
        )
        .expect("valid metric");
        let http_duration = HistogramVec::new(
            HistogramOpts::new(
                "observe_broker_http_request_duration_seconds",
                "Time to answer an HTTP request, by method and route.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0,
            ]),
            &["method", "path"],
        )
        .expect("valid metric");
        let cf_lookups = IntCounterVec::new(
            Opts::new(
                "observe_broker_cf_lookups_total",
                "Cloud Controller app look-ups on bind, by result.",
            ),
            &["result"],
        )
        .expect("valid metric");
        let store_operations = IntCounterVec::new(
            Opts::new(
                "observe_broker_store_operations_total",
                "Target store writes and removals, by result.",
            ),
            &["operation", "result"],
        )
        .expect("valid metric");
        let binding_changes = IntCounterVec::new(
            Opts::new(
                "observe_broker_binding_changes_total",
                "Bindings recorded and deleted, and binds cancelled while running.",
            ),
            &["change"],
        )
        .expect("valid metric");
        let target_latency = HistogramVec::new(
            HistogramOpts::new(
                "observe_broker_target_latency_seconds",
                "Seconds from a bind request received to the app's target file written, or \
                 from an unbind request received to the app's files removed (last binding \
                 only), on the broker's monotonic clock, by operation.",
            )
            .buckets(gds_service::metrics::DISCOVERY_LATENCY_BUCKETS.to_vec()),
            &["operation"],
        )
        .expect("valid metric");
        // Both series exist from the start, so rates and alerts see zeros, not gaps.
        for operation in ["bind", "unbind"] {
            target_latency.with_label_values(&[operation]);
        }
        for metric in [
            &http_requests,
            &cf_lookups,
            &store_operations,
            &binding_changes,
        ] {
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
        }
        for metric in [&http_duration, &target_latency] {
            registry
                .register(Box::new(metric.clone()))
                .expect("metric names are unique");
        }
        Self {
            registry,
            http_requests,
            http_duration,
            cf_lookups,
            store_operations,
            binding_changes,
            target_latency,
        }
    }
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        Self::new()
    }
}
