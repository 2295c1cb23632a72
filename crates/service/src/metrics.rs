//! Prometheus text exposition for `/metrics`.

use prometheus::{Encoder, Registry, TextEncoder};

/// The content type Prometheus expects for the text format.
pub const CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

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
