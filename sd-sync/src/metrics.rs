//! sd-sync's own metrics, per mapping (label `mapping`, the last component of its DIR).

use std::collections::BTreeMap;

use prometheus::{
    Gauge, GaugeVec, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry,
};

use crate::source::RequestCounters;

/// Every metric family, registered in one registry.
#[derive(Clone, Debug)]
pub struct Metrics {
    pub registry: Registry,
    polls: IntCounterVec,
    listing_errors: IntCounterVec,
    fetched: IntCounterVec,
    fetch_errors: IntCounterVec,
    installs: IntCounterVec,
    install_errors: IntCounterVec,
    deletions: IntCounterVec,
    held_back: IntGaugeVec,
    valve_holds: IntCounterVec,
    failing_objects: IntGaugeVec,
    invalid: IntCounterVec,
    files: IntGaugeVec,
    last_listing: GaugeVec,
    last_success: GaugeVec,
    duration: HistogramVec,
    propagation: HistogramVec,
    poll_period: GaugeVec,
    requests: IntCounterVec,
    listings: IntCounterVec,
    unchanged_polls: IntCounterVec,
}

/// The metrics of one mapping.
#[derive(Clone, Debug)]
pub struct MappingMetrics {
    pub polls: IntCounter,
    pub listing_errors: IntCounter,
    pub fetched: IntCounter,
    pub fetch_errors: IntCounter,
    pub installs: IntCounter,
    pub install_errors: IntCounter,
    pub deletions: IntCounter,
    pub held_back: IntGauge,
    /// Polls whose deletions the valve held back, by reason (see [`crate::valve::Hold`]).
    pub valve_holds: BTreeMap<&'static str, IntCounter>,
    pub failing_objects: IntGauge,
    pub invalid: IntCounter,
    pub files: IntGauge,
    pub last_listing: Gauge,
    pub last_success: Gauge,
    pub duration: Histogram,
    /// `sd_sync_propagation_seconds{change="install"}`: object's `LastModified` (the
    /// store's clock) to its file renamed into place (the node's clock).
    pub propagation_install: Histogram,
    /// `sd_sync_propagation_seconds{change="delete"}`: first listing without the object
    /// to its file removed (both the node's clock).
    pub propagation_delete: Histogram,
    /// Set by the sync loop; see [`crate::schedule`].
    pub poll_period: Gauge,
    pub requests: RequestCounters,
    /// Polls that listed the prefix, by reason (see [`crate::watch::ListReason`]).
    pub listings: BTreeMap<&'static str, IntCounter>,
    /// Polls that listed nothing: the writers' record was unchanged.
    pub unchanged_polls: IntCounter,
}

fn counter(registry: &Registry, name: &str, help: &str, labels: &[&str]) -> IntCounterVec {
    let metric = IntCounterVec::new(Opts::new(name, help), labels).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn int_gauge(registry: &Registry, name: &str, help: &str) -> IntGaugeVec {
    let metric = IntGaugeVec::new(Opts::new(name, help), &["mapping"]).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

fn gauge(registry: &Registry, name: &str, help: &str) -> GaugeVec {
    let metric = GaugeVec::new(Opts::new(name, help), &["mapping"]).expect("a valid metric");
    registry
        .register(Box::new(metric.clone()))
        .expect("registered once");
    metric
}

impl Metrics {
    pub fn new() -> Metrics {
        let registry = Registry::new();
        let r = &registry;
        let m = &["mapping"];
        let duration = HistogramVec::new(
            HistogramOpts::new(
                "sd_sync_sync_duration_seconds",
                "Time one sync of a mapping took: listing, fetches, installs and deletions.",
            )
            .buckets(vec![
                0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
            ]),
            m,
        )
        .expect("a valid metric");
        registry
            .register(Box::new(duration.clone()))
            .expect("registered once");
        let propagation = HistogramVec::new(
            HistogramOpts::new(
                "sd_sync_propagation_seconds",
                "How long a change of the bucket took to reach the directory. \
                 change=install: from the object's LastModified (the store's clock, whole \
                 seconds) to its file renamed into place (this node's clock; clock skew can \
                 shift it, negative values count as 0); not observed in the first sync after \
                 start, whose objects may be old. change=delete: from the first listing \
                 without the object to its file removed (this node's clock; includes any time \
                 the safety valve held it back).",
            )
            .buckets(gds_service::metrics::DISCOVERY_LATENCY_BUCKETS.to_vec()),
            &["mapping", "change"],
        )
        .expect("a valid metric");
        registry
            .register(Box::new(propagation.clone()))
            .expect("registered once");
        Metrics {
            polls: counter(r, "sd_sync_polls_total", "Syncs started.", m),
            listing_errors: counter(
                r,
                "sd_sync_listing_errors_total",
                "Listings that failed; such a sync changes nothing.",
                m,
            ),
            fetched: counter(
                r,
                "sd_sync_objects_fetched_total",
                "Objects read because they were new or changed.",
                m,
            ),
            fetch_errors: counter(
                r,
                "sd_sync_fetch_errors_total",
                "Object reads that failed.",
                m,
            ),
            installs: counter(
                r,
                "sd_sync_installs_total",
                "Files written (atomically) into the directory.",
                m,
            ),
            install_errors: counter(
                r,
                "sd_sync_install_errors_total",
                "Files that could not be written or removed.",
                m,
            ),
            deletions: counter(
                r,
                "sd_sync_deletions_total",
                "Files removed because their object vanished.",
                m,
            ),
            held_back: int_gauge(
                r,
                "sd_sync_held_back_deletions",
                "Deletions the safety valve is holding back now.",
            ),
            valve_holds: counter(
                r,
                "sd_sync_valve_holds_total",
                "Polls whose deletions the safety valve held back, by reason: unconfirmed \
                 (no writers' record: counting polls), record_disagrees, record_unreadable, \
                 record_invalid, record_vanished (these last until the writers or the \
                 operator act).",
                &["mapping", "reason"],
            ),
            failing_objects: int_gauge(
                r,
                "sd_sync_failing_objects",
                "Objects the last sync could not fetch, install or remove (retried on every \
                 poll): nonzero for long means the directory is not what the bucket says.",
            ),
            invalid: counter(
                r,
                "sd_sync_invalid_objects_total",
                "Object versions that are not valid file_sd JSON and were not installed.",
                m,
            ),
            files: int_gauge(r, "sd_sync_files", "Files installed in the directory."),
            last_listing: gauge(
                r,
                "sd_sync_last_listing_timestamp_seconds",
                "Unix time the directory was last known current: a complete listing, or a \
                 poll whose writers' record was unchanged since one.",
            ),
            last_success: gauge(
                r,
                "sd_sync_last_success_timestamp_seconds",
                "Unix time of the last sync that listed, fetched and installed without error.",
            ),
            duration,
            propagation,
            poll_period: gauge(
                r,
                "sd_sync_poll_period_seconds",
                "Time from the start of one poll to the start of the next: the interval \
                 less the recent syncs' cost, so that a write is installed within the interval.",
            ),
            requests: counter(
                r,
                "sd_sync_s3_requests_total",
                "Requests to the store, by operation (list = one ListObjectsV2 page; get = a \
                 read of a target object; poll_record = the conditional read of the writers' \
                 record that starts every poll; get_record = a read of the record, made only \
                 when the valve would hold deletions).",
                &["mapping", "operation"],
            ),
            listings: counter(
                r,
                "sd_sync_listings_total",
                "Polls that listed the prefix, by reason: first, record_changed, no_record \
                 (older writers: every poll lists), record_unreadable, no_record_key (the \
                 prefix does not end in active/), retry (the last sync left work), safety \
                 (--safety-listing-interval).",
                &["mapping", "reason"],
            ),
            unchanged_polls: counter(
                r,
                "sd_sync_unchanged_polls_total",
                "Polls that listed nothing because the writers' record was unchanged since the \
                 last listing.",
                m,
            ),
            registry,
        }
    }

    /// The metrics of mapping `name`, created at zero so they show up at once.
    pub fn mapping(&self, name: &str) -> MappingMetrics {
        let l = &[name];
        MappingMetrics {
            polls: self.polls.with_label_values(l),
            listing_errors: self.listing_errors.with_label_values(l),
            fetched: self.fetched.with_label_values(l),
            fetch_errors: self.fetch_errors.with_label_values(l),
            installs: self.installs.with_label_values(l),
            install_errors: self.install_errors.with_label_values(l),
            deletions: self.deletions.with_label_values(l),
            held_back: self.held_back.with_label_values(l),
            valve_holds: crate::valve::Hold::REASONS
                .into_iter()
                .map(|reason| (reason, self.valve_holds.with_label_values(&[name, reason])))
                .collect(),
            failing_objects: self.failing_objects.with_label_values(l),
            invalid: self.invalid.with_label_values(l),
            files: self.files.with_label_values(l),
            last_listing: self.last_listing.with_label_values(l),
            last_success: self.last_success.with_label_values(l),
            duration: self.duration.with_label_values(l),
            propagation_install: self.propagation.with_label_values(&[name, "install"]),
            propagation_delete: self.propagation.with_label_values(&[name, "delete"]),
            poll_period: self.poll_period.with_label_values(l),
            requests: RequestCounters {
                list: self.requests.with_label_values(&[name, "list"]),
                get: self.requests.with_label_values(&[name, "get"]),
                record: self.requests.with_label_values(&[name, "get_record"]),
                record_poll: self.requests.with_label_values(&[name, "poll_record"]),
            },
            listings: crate::watch::ListReason::ALL
                .into_iter()
                .map(|reason| {
                    let reason = reason.as_str();
                    (reason, self.listings.with_label_values(&[name, reason]))
                })
                .collect(),
            unchanged_polls: self.unchanged_polls.with_label_values(l),
        }
    }
}

impl Default for Metrics {
    fn default() -> Self {
        Metrics::new()
    }
}
