//! The updater's metrics (`gds_updater_*`), served on `GET /metrics`.

use gds_cf::RequestStats;
use prometheus::{
    Gauge, HistogramOpts, HistogramVec, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry,
};

/// Every metric of a reconciler, in one registry. Cheap to clone (shared handles).
#[derive(Clone, Debug)]
pub struct ReconcileMetrics {
    pub registry: Registry,
    /// `gds_updater_last_success_timestamp_seconds`: end of the last successful pass.
    pub last_success: Gauge,
    /// `gds_updater_pass_duration_seconds{scope}`: `full` or `apps` (the fast path).
    pub pass_duration: HistogramVec,
    /// `gds_updater_passes_total{scope,outcome}`: `ok`, `failed`, `busy`.
    pub passes: IntCounterVec,
    /// `gds_updater_pass_failures_total{kind}`: `database`, `cloud_controller`,
    /// `store_listing`, `apply`, `audit_events`, `lease_lost` (the pass could not confirm
    /// the reconcile lease before a write, or at its end, and stopped writing).
    pub pass_failures: IntCounterVec,
    /// `gds_updater_actions_total{kind,outcome}`: kind `write`, `activate`,
    /// `deactivate`, `remove` (target files), `write_credentials`, `remove_credentials`
    /// (scrape credentials documents); outcome `applied`, `failed`, `superseded` (the broker
    /// changed the app's bindings during the pass, so its action was dropped),
    /// `abandoned` (the pass lost the reconcile lease before it).
    pub actions: IntCounterVec,
    /// `gds_updater_held_back_deletions`: destructive actions (and the removals of
    /// credentials documents held back with them) the last pass held back.
    pub held_back: IntGauge,
    /// `gds_updater_orphaned_bindings`: bindings whose app the Cloud Controller no
    /// longer knows.
    pub orphaned_bindings: IntGauge,
    /// `gds_updater_targets{state}`: files in `active/` and `inactive/` at the last full
    /// listing.
    pub targets: IntGaugeVec,
    /// `gds_updater_cf_requests_total{endpoint,status}`: Cloud Controller and UAA
    /// requests (status 0: no answer).
    pub cf_requests: IntCounterVec,
    /// `gds_updater_audit_events_total`: new audit events handled by the fast path.
    pub audit_events: prometheus::IntCounter,
    /// `gds_updater_record_publications_total{outcome}`: publications of the writers'
    /// record after a pass, `ok` or `error`.
    pub record_publications: IntCounterVec,
    /// `gds_updater_change_latency_seconds{source}`: per applied action, the time from
    /// the change it follows to the moment it was applied ([`crate::reconciler::ChangeTimes`]):
    /// `audit_event` from the newest audit event naming the app (the Cloud Controller's
    /// clock, to the second), `full_pass` from the start of the full pass.
    pub change_latency: HistogramVec,
    /// `gds_updater_full_listings_total{outcome}`: how a full pass got the bucket's
    /// listing: `listed`, or `reused` (the writers' record unchanged since the previous
    /// listing, within `UPDATER_SAFETY_LISTING_SECONDS`).
    pub full_listings: IntCounterVec,
}

impl Default for ReconcileMetrics {
    fn default() -> Self {
        Self::new()
    }
}

impl ReconcileMetrics {
    /// The metrics in a registry of their own (the updater's `/metrics`).
    pub fn new() -> Self {
        Self::registered_in(Registry::new())
    }

    /// The metrics, registered in `registry` (a shared handle): how a process that runs
    /// passes besides its own work (the broker's `POST /update-targets`) serves them on
    /// its one `/metrics`. Panics if `registry` already has a metric of the same name.
    pub fn registered_in(registry: Registry) -> Self {
        let last_success = Gauge::new(
            "gds_updater_last_success_timestamp_seconds",
            "Unix time at which the last successful reconcile pass ended.",
        )
        .expect("valid metric");
        let pass_duration = HistogramVec::new(
            HistogramOpts::new(
                "gds_updater_pass_duration_seconds",
                "Duration of reconcile passes, by scope (full, apps).",
            )
            .buckets(vec![
                0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 300.0,
            ]),
            &["scope"],
        )
        .expect("valid metric");
        let passes = IntCounterVec::new(
            Opts::new(
                "gds_updater_passes_total",
                "Reconcile passes, by scope and outcome (ok, failed, busy).",
            ),
            &["scope", "outcome"],
        )
        .expect("valid metric");
        let pass_failures = IntCounterVec::new(
            Opts::new(
                "gds_updater_pass_failures_total",
                "Failed reconcile steps, by kind.",
            ),
            &["kind"],
        )
        .expect("valid metric");
        let actions = IntCounterVec::new(
            Opts::new(
                "gds_updater_actions_total",
                "Planned changes to the bucket, by kind and outcome.",
            ),
            &["kind", "outcome"],
        )
        .expect("valid metric");
        let held_back = IntGauge::new(
            "gds_updater_held_back_deletions",
            "Deletions and deactivations (and credentials document removals) the last pass held back (bounded-deletion valve).",
        )
        .expect("valid metric");
        let orphaned_bindings = IntGauge::new(
            "gds_updater_orphaned_bindings",
            "Bindings whose app the Cloud Controller no longer knows.",
        )
        .expect("valid metric");
        let targets = IntGaugeVec::new(
            Opts::new(
                "gds_updater_targets",
                "Target files in the bucket at the last full pass, by state.",
            ),
            &["state"],
        )
        .expect("valid metric");
        let cf_requests = IntCounterVec::new(
            Opts::new(
                "gds_updater_cf_requests_total",
                "Cloud Controller and UAA requests, by endpoint and HTTP status (0: no answer).",
            ),
            &["endpoint", "status"],
        )
        .expect("valid metric");
        let audit_events = prometheus::IntCounter::new(
            "gds_updater_audit_events_total",
            "New audit events read by the fast path.",
        )
        .expect("valid metric");
        let record_publications = IntCounterVec::new(
            Opts::new(
                "gds_updater_record_publications_total",
                "Publications of the writers' record (what active/ should hold), by outcome.",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        let change_latency = HistogramVec::new(
            HistogramOpts::new(
                "gds_updater_change_latency_seconds",
                "Time from a Cloud Controller change to the target file written, moved or \
                 removed after it, per applied action, by source: audit_event measures from \
                 the newest audit event naming the app (the Cloud Controller's clock, whole \
                 seconds, against the updater's; negative skew counts as 0), full_pass from \
                 the start of the full pass that noticed the change.",
            )
            .buckets(gds_service::metrics::DISCOVERY_LATENCY_BUCKETS.to_vec()),
            &["source"],
        )
        .expect("valid metric");
        let full_listings = IntCounterVec::new(
            Opts::new(
                "gds_updater_full_listings_total",
                "How full passes got the bucket's listing: listed, or reused (the writers' \
                 record unchanged since the previous listing).",
            ),
            &["outcome"],
        )
        .expect("valid metric");
        for outcome in ["listed", "reused"] {
            full_listings.with_label_values(&[outcome]);
        }
        for m in [
            Box::new(last_success.clone()) as Box<dyn prometheus::core::Collector>,
            Box::new(full_listings.clone()),
            Box::new(change_latency.clone()),
            Box::new(record_publications.clone()),
            Box::new(pass_duration.clone()),
            Box::new(passes.clone()),
            Box::new(pass_failures.clone()),
            Box::new(actions.clone()),
            Box::new(held_back.clone()),
            Box::new(orphaned_bindings.clone()),
            Box::new(targets.clone()),
            Box::new(cf_requests.clone()),
            Box::new(audit_events.clone()),
        ] {
            registry.register(m).expect("unique metric names");
        }
        Self {
            registry,
            last_success,
            pass_duration,
            passes,
            pass_failures,
            actions,
            held_back,
            orphaned_bindings,
            targets,
            cf_requests,
            audit_events,
            record_publications,
            change_latency,
            full_listings,
        }
    }

    /// Brings the request counters up to the client's own tally.
    pub fn observe_cf_requests(&self, stats: &RequestStats) {
        for ((endpoint, status), count) in &stats.by_endpoint {
            let counter = self
                .cf_requests
                .with_label_values(&[endpoint.as_str(), &status.to_string()]);
            let seen = counter.get();
            if *count > seen {
                counter.inc_by(count - seen);
            }
        }
    }

    /// The text exposition of the whole registry (with whatever else it holds).
    pub fn render(&self) -> String {
        gds_service::metrics::render(&self.registry)
    }
}

/// Exports a store's S3 request counts ([`gds_store::S3Requests`]) as the counter family
/// `name{operation}` (e.g. `gds_updater_s3_requests_total`), read at each scrape.
pub struct S3RequestsCollector {
    requests: std::sync::Arc<gds_store::S3Requests>,
    family: IntCounterVec,
    /// One scrape at a time sets the family from the counts.
    collecting: std::sync::Mutex<()>,
}

impl S3RequestsCollector {
    pub fn new(name: &str, requests: std::sync::Arc<gds_store::S3Requests>) -> Self {
        let family = IntCounterVec::new(
            Opts::new(
                name,
                "S3 requests sent to the target store, by operation (every attempt that got \
                 an answer): list (ListObjectsV2 page), get, get_not_modified (a conditional \
                 read of the writers' record answered 304), put, copy, delete, head, other.",
            ),
            &["operation"],
        )
        .expect("a valid metric");
        S3RequestsCollector {
            requests,
            family,
            collecting: std::sync::Mutex::new(()),
        }
    }

    /// Registers the counts of `store`, when it is an S3 store, as `name` in `registry`.
    pub fn register(registry: &Registry, name: &str, store: &dyn gds_store::TargetStore) {
        if let Some(requests) = store.s3_requests() {
            registry
                .register(Box::new(S3RequestsCollector::new(name, requests)))
                .expect("registered once");
        }
    }
}

impl prometheus::core::Collector for S3RequestsCollector {
    fn desc(&self) -> Vec<&prometheus::core::Desc> {
        self.family.desc()
    }

    fn collect(&self) -> Vec<prometheus::proto::MetricFamily> {
        let _one = self.collecting.lock().expect("collector lock");
        for (operation, count) in self.requests.snapshot() {
            let counter = self.family.with_label_values(&[operation.as_str()]);
            counter.inc_by(count.saturating_sub(counter.get()));
        }
        self.family.collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metrics_registered_in_a_shared_registry_render_with_its_other_metrics() {
        let registry = Registry::new();
        let other = prometheus::IntCounter::new("other_total", "Another process' metric.").unwrap();
        registry.register(Box::new(other.clone())).unwrap();
        other.inc();
        let metrics = ReconcileMetrics::registered_in(registry.clone());
        metrics.passes.with_label_values(&["full", "ok"]).inc();
        let text = gds_service::metrics::render(&registry);
        assert!(text.contains("other_total 1"), "{text}");
        assert!(
            text.contains(r#"gds_updater_passes_total{outcome="ok",scope="full"} 1"#),
            "{text}"
        );
        assert_eq!(metrics.render(), text);
    }
}
