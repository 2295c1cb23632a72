//! When the changes a pass follows happened: what `gds_updater_change_latency_seconds`
//! measures from.

use std::collections::BTreeMap;
use std::time::{Duration, SystemTime};

use gds_targets::AppGuid;

/// When the changes a pass follows happened, per app.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ChangeTimes {
    /// A full (or any other scheduled) pass: the start of the pass. The change happened
    /// at some unknown time before it, so this is a lower bound of the true latency.
    PassStart(SystemTime),
    /// A fast-path pass: per app, the `created_at` of the newest audit event that named
    /// it. That is the Cloud Controller's clock, in whole seconds, compared with ours.
    AuditEvents(BTreeMap<AppGuid, SystemTime>),
}

impl ChangeTimes {
    /// The `source` label: `full_pass` or `audit_event`.
    pub fn source(&self) -> &'static str {
        match self {
            ChangeTimes::PassStart(_) => "full_pass",
            ChangeTimes::AuditEvents(_) => "audit_event",
        }
    }

    /// The time from `app`'s change to `applied`; zero when the change looks later (the
    /// Cloud Controller's clock ahead of ours). `None` for an app without a known change
    /// time (an audit event whose `created_at` did not parse).
    pub fn latency(&self, app: &AppGuid, applied: SystemTime) -> Option<Duration> {
        let changed = match self {
            ChangeTimes::PassStart(start) => *start,
            ChangeTimes::AuditEvents(times) => *times.get(app)?,
        };
        Some(applied.duration_since(changed).unwrap_or(Duration::ZERO))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const B: &str = "aaaaaaaa-0000-4000-8000-000000000002";

    #[test]
    fn an_audit_events_latency_runs_from_the_apps_newest_event_and_clamps_skew_to_zero() {
        let event = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let times = ChangeTimes::AuditEvents([(AppGuid::parse(A).unwrap(), event)].into());
        assert_eq!(times.source(), "audit_event");
        let a = AppGuid::parse(A).unwrap();
        assert_eq!(
            times.latency(&a, event + Duration::from_millis(1_500)),
            Some(Duration::from_millis(1_500))
        );
        assert_eq!(
            times.latency(&a, event - Duration::from_secs(2)),
            Some(Duration::ZERO),
            "a Cloud Controller clock ahead of ours counts as no latency"
        );
        assert_eq!(times.latency(&AppGuid::parse(B).unwrap(), event), None);
    }

    #[test]
    fn a_full_pass_latency_runs_from_its_start_for_every_app() {
        let start = SystemTime::UNIX_EPOCH + Duration::from_secs(1_000);
        let times = ChangeTimes::PassStart(start);
        assert_eq!(times.source(), "full_pass");
        assert_eq!(
            times.latency(&AppGuid::parse(B).unwrap(), start + Duration::from_secs(3)),
            Some(Duration::from_secs(3))
        );
    }
}
