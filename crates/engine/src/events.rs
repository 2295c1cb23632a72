//! The fast path: Cloud Controller audit events since a cursor kept in the database,
//! turned into a reconcile of just the apps they touch (reference/cf-platform.md 1.10:
//! events are a trigger, never the source of truth; the scheduled full pass repairs
//! anything missed).

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, SystemTime};

use gds_cf::{AuditEvent, Purpose};
use gds_db::EventCursor;
use gds_reconcile::Scope;
use gds_targets::AppGuid;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::lease::Tenure;
use crate::reconciler::{PassError, PassReport, Reconciler};

/// The cursor's name in the database.
pub const CURSOR: &str = "audit_events";

/// The event types that can change an app's targets. Process events name the app as
/// their target, so scale and rolling-deploy events are caught by app GUID too.
pub const EVENT_TYPES: &[&str] = &[
    "audit.app.start",
    "audit.app.stop",
    "audit.app.restart",
    "audit.app.restage",
    "audit.app.update",
    "audit.app.delete-request",
    "audit.app.process.scale",
    "audit.app.process.update",
    "audit.app.process.create",
    "audit.app.process.delete",
    "audit.app.map-route",
    "audit.app.unmap-route",
    "audit.app.deployment.create",
    "audit.app.deployment.cancel",
    "audit.app.droplet.mapped",
];

/// Where a cursor starts when none was saved: a minute back, so that clock skew between
/// us and the Cloud Controller loses nothing (reconciling an app twice is harmless).
const START_BACK: Duration = Duration::from_secs(60);

/// The new events' apps (each with the `created_at` of its newest new event) and the
/// cursor after them. Events come oldest first, all at or after `cursor.last_second`
/// (`created_ats[gte]`); the ones already seen in that second are dropped. The new
/// cursor remembers every event of its last second, since the next poll asks for that
/// second again.
pub fn digest(
    cursor: &EventCursor,
    events: &[AuditEvent],
) -> (BTreeMap<AppGuid, String>, EventCursor, usize) {
    let fresh: Vec<&AuditEvent> = events
        .iter()
        .filter(|e| e.created_at.as_str() >= cursor.last_second.as_str())
        .filter(|e| !(e.created_at == cursor.last_second && cursor.seen.contains(&e.guid)))
        .collect();
    let mut apps: BTreeMap<AppGuid, String> = BTreeMap::new();
    for e in &fresh {
        let Some(app) = e
            .target
            .as_ref()
            .filter(|t| t.target_type == "app")
            .and_then(|t| AppGuid::parse(&t.guid).ok())
        else {
            continue;
        };
        let newest = apps.entry(app).or_default();
        if e.created_at > *newest {
            newest.clone_from(&e.created_at);
        }
    }
    let last_second = events
        .iter()
        .map(|e| e.created_at.as_str())
        .chain([cursor.last_second.as_str()])
        .max()
        .unwrap_or_default()
        .to_owned();
    let mut seen: BTreeSet<String> = events
        .iter()
        .filter(|e| e.created_at == last_second)
        .map(|e| e.guid.clone())
        .collect();
    if last_second == cursor.last_second {
        seen.extend(cursor.seen.iter().cloned());
    }
    (apps, EventCursor { last_second, seen }, fresh.len())
}

/// An audit event's `created_at` (RFC 3339) as a point in time; `None` if it is not one.
pub fn event_time(created_at: &str) -> Option<SystemTime> {
    OffsetDateTime::parse(created_at, &Rfc3339)
        .ok()
        .map(SystemTime::from)
}

/// `YYYY-MM-DDThh:mm:ssZ`, `back` before now.
pub fn second_before_now(back: Duration) -> String {
    let t = OffsetDateTime::now_utc() - back;
    let t = t.replace_nanosecond(0).unwrap_or(t);
    t.format(&Rfc3339)
        .unwrap_or_else(|_| "1970-01-01T00:00:00Z".into())
}

impl Reconciler {
    /// One poll of the fast path, under the reconcile lease: reads the cursor, the events
    /// since, reconciles the bound apps they touch, and moves the cursor on when the
    /// pass read everything it needed (otherwise the same events are tried again).
    /// `Ok(None)` when no new event touched an app.
    ///
    /// Its Cloud Controller requests count as [`Purpose::FastPath`].
    pub async fn follow_events(&self) -> Result<Option<PassReport>, PassError> {
        Purpose::FastPath
            .scope(async {
                let lease = self.lease().await?;
                let result = self.follow_events_locked(lease.tenure()).await;
                lease.release().await;
                result
            })
            .await
    }

    async fn follow_events_locked(&self, tenure: &Tenure) -> Result<Option<PassReport>, PassError> {
        let cursor = match self.db().event_cursor(CURSOR).await? {
            Some(cursor) => cursor,
            None => EventCursor {
                last_second: second_before_now(START_BACK),
                seen: BTreeSet::new(),
            },
        };
        let events = match self
            .cf()
            .audit_events(EVENT_TYPES, &cursor.last_second)
            .await
        {
            Ok(events) => events,
            Err(e) => {
                self.metrics()
                    .pass_failures
                    .with_label_values(&["audit_events"])
                    .inc();
                self.metrics()
                    .observe_cf_requests(&self.cf().request_stats());
                return Err(PassError::AuditEvents(e));
            }
        };
        let (apps, next, fresh) = digest(&cursor, &events);
        self.metrics().audit_events.inc_by(fresh as u64);
        if apps.is_empty() {
            // Without the lease the cursor stays: the holder's poll handles these events.
            if next != cursor && tenure.confirm().is_ok() {
                self.db().save_event_cursor(CURSOR, &next).await?;
            }
            self.metrics()
                .observe_cf_requests(&self.cf().request_stats());
            return Ok(None);
        }
        tracing::info!(
            events = fresh,
            apps = apps.len(),
            "audit events: reconciling the apps they touch"
        );
        let scope = Scope::Apps(apps.keys().cloned().collect());
        // What the change latency of each app's actions is measured from.
        let times = apps
            .iter()
            .filter_map(|(app, created_at)| match event_time(created_at) {
                Some(t) => Some((app.clone(), t)),
                None => {
                    tracing::warn!(
                        app_guid = %app,
                        created_at,
                        "an audit event's created_at is not RFC 3339: the change latency \
                         of the app's actions is not measured"
                    );
                    None
                }
            })
            .collect();
        let report = self.pass_locked(&scope, Some(times), tenure).await?;
        if report.plan.complete && report.lease_lost.is_none() && tenure.confirm().is_ok() {
            self.db().save_event_cursor(CURSOR, &next).await?;
        }
        Ok(Some(report))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gds_cf::EventTarget;

    const A: &str = "aaaaaaaa-0000-4000-8000-000000000001";
    const B: &str = "aaaaaaaa-0000-4000-8000-000000000002";

    fn event(guid: &str, at: &str, target: &str, kind: &str) -> AuditEvent {
        AuditEvent {
            guid: guid.into(),
            created_at: at.into(),
            event_type: "audit.app.process.scale".into(),
            target: Some(EventTarget {
                guid: target.into(),
                target_type: kind.into(),
            }),
        }
    }

    fn cursor(second: &str, seen: &[&str]) -> EventCursor {
        EventCursor {
            last_second: second.into(),
            seen: seen.iter().map(|s| s.to_string()).collect(),
        }
    }

    #[test]
    fn events_already_seen_in_the_cursors_second_are_dropped() {
        let start = cursor("2026-01-01T00:00:05Z", &["e1"]);
        let events = [
            event("e1", "2026-01-01T00:00:05Z", A, "app"),
            event("e2", "2026-01-01T00:00:05Z", B, "app"),
        ];
        let (apps, next, fresh) = digest(&start, &events);
        assert_eq!(fresh, 1);
        assert_eq!(
            apps,
            [(AppGuid::parse(B).unwrap(), "2026-01-01T00:00:05Z".into())].into()
        );
        assert_eq!(next, cursor("2026-01-01T00:00:05Z", &["e1", "e2"]));
    }

    #[test]
    fn the_cursor_moves_to_the_newest_second_and_remembers_only_its_events() {
        let start = cursor("2026-01-01T00:00:05Z", &["e1"]);
        let events = [
            event("e1", "2026-01-01T00:00:05Z", A, "app"),
            event("e2", "2026-01-01T00:00:06Z", A, "app"),
            event("e3", "2026-01-01T00:00:07Z", B, "app"),
            event("e4", "2026-01-01T00:00:07Z", "binding-1", "service_binding"),
        ];
        let (apps, next, fresh) = digest(&start, &events);
        assert_eq!(fresh, 3);
        assert_eq!(
            apps,
            [
                (AppGuid::parse(A).unwrap(), "2026-01-01T00:00:06Z".into()),
                (AppGuid::parse(B).unwrap(), "2026-01-01T00:00:07Z".into())
            ]
            .into(),
            "each app with its newest new event"
        );
        assert_eq!(next, cursor("2026-01-01T00:00:07Z", &["e3", "e4"]));
    }

    #[test]
    fn no_events_leave_the_cursor_as_it_was() {
        let start = cursor("2026-01-01T00:00:05Z", &["e1"]);
        let (apps, next, fresh) = digest(&start, &[]);
        assert!(apps.is_empty());
        assert_eq!(fresh, 0);
        assert_eq!(next, start);
    }

    #[test]
    fn an_event_time_is_the_cloud_controllers_second() {
        assert_eq!(
            event_time("2026-01-01T00:00:05Z"),
            Some(SystemTime::UNIX_EPOCH + Duration::from_secs(1_767_225_605))
        );
        assert_eq!(event_time("yesterday"), None);
    }

    #[test]
    fn the_start_second_has_the_cloud_controllers_format() {
        let s = second_before_now(Duration::from_secs(60));
        assert_eq!(s.len(), "2026-01-01T00:00:00Z".len(), "{s}");
        assert!(s.ends_with('Z'), "{s}");
    }
}
