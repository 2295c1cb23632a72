//! Prometheus text exposition for `/metrics`.

use prometheus::{Encoder, Registry, TextEncoder};

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The buckets of the three discovery-latency histograms
/// (`observe_broker_target_latency_seconds`, `gds_updater_change_latency_seconds`,
/// `sd_sync_propagation_seconds`): 0.1 s to 5 min, the range of the figures we promise,
/// and at most 1 s apart up to 5 s, so that a percentile read from them (Prometheus
/// interpolates within a bucket) is within one poll period (2 s) of the true one where the
/// services' poll loops put their latencies.
pub const DISCOVERY_LATENCY_BUCKETS: [f64; 17] = [
    0.1, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 4.0, 5.0, 7.5, 10.0, 15.0, 20.0, 30.0, 60.0, 120.0, 300.0,
];

/// Renders every metric of `registry` in the text format.
pub fn render(registry: &Registry) -> String {
    let mut out = Vec::new();
    TextEncoder::new()
        .encode(&registry.gather(), &mut out)
        .expect("encoding to a Vec cannot fail");
    String::from_utf8(out).expect("the text format is UTF-8")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_rendered_in_the_text_format() {
        let registry = Registry::new();
        let c = prometheus::IntCounterVec::new(
            prometheus::Opts::new("things_total", "Things."),
            &["kind"],
        )
        .unwrap();
        registry.register(Box::new(c.clone())).unwrap();
        c.with_label_values(&["a"]).inc_by(3);
        let text = render(&registry);
        assert!(text.contains("# TYPE things_total counter"), "{text}");
        assert!(text.contains("things_total{kind=\"a\"} 3"), "{text}");
    }
}
