//! What the updater keeps in the database besides the bindings: orphan markers, the
//! lease that lets only one updater reconcile at a time, and the audit-event cursor.

use std::collections::BTreeSet;
use std::time::Duration;

use gds_targets::AppGuid;

use crate::{AppTx, Db, DbError, now_millis};

/// Where an audit-event poll continues (see the `event_cursors` table).
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct EventCursor {
    /// The newest event second handled, `YYYY-MM-DDThh:mm:ssZ`; the next poll asks for
    /// events created at or after it.
    pub last_second: String,
    /// GUIDs of the events of `last_second` already handled, to drop on the next poll.
    pub seen: BTreeSet<String>,
}

/// An orphaned binding: its app is gone from the Cloud Controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrphanedBinding {
    pub binding_id: String,
    pub app_guid: AppGuid,
    /// Milliseconds since the Unix epoch.
    pub orphaned_at: i64,
}

impl Db {
    /// Takes (or renews) the lease `name` for `holder` until `ttl` from now, if it is
    /// free, expired, or already `holder`'s; `false` when someone else holds it.
    ///
    /// Why a lease row rather than `pg_try_advisory_lock`: one portable statement works
    /// on PostgreSQL and on SQLite (several processes on one file), it needs no
    /// connection pinned for the lease's lifetime, and a holder that dies or hangs loses
    /// the lease when it expires. The holder renews it while it works.
    pub async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DbError> {
        let now = now_millis();
        let until = now.saturating_add(i64::try_from(ttl.as_millis()).unwrap_or(i64::MAX));
        let affected = sqlx::query(
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE leases.expires_at < $4 OR leases.holder = excluded.holder",
        )
        .bind(name)
        .bind(holder)
        .bind(until)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(DbError::query("taking a lease"))?
        .rows_affected();
        Ok(affected == 1)
    }

    /// Gives the lease up if `holder` has it (idempotent).
    pub async fn release_lease(&self, name: &str, holder: &str) -> Result<(), DbError> {
        sqlx::query("DELETE FROM leases WHERE name = $1 AND holder = $2")
            .bind(name)
            .bind(holder)
            .execute(self.pool())
            .await
            .map(drop)
            .map_err(DbError::query("releasing a lease"))
    }

    /// The cursor `name`, if one was saved.
    pub async fn event_cursor(&self, name: &str) -> Result<Option<EventCursor>, DbError> {
        let row: Option<(String, String)> =
            sqlx::query_as("SELECT last_second, seen_guids FROM event_cursors WHERE name = $1")
                .bind(name)
                .fetch_optional(self.pool())
                .await
                .map_err(DbError::query("reading the event cursor"))?;
        row.map(|(last_second, seen)| {
            let seen = serde_json::from_str(&seen).map_err(|e| {
                DbError::Corrupt(format!(
                    "event cursor {name}: seen_guids is not a list: {e}"
                ))
            })?;
            Ok(EventCursor { last_second, seen })
        })
        .transpose()
    }

    /// Saves the cursor `name` (replacing the previous one).
    pub async fn save_event_cursor(&self, name: &str, cursor: &EventCursor) -> Result<(), DbError> {
        let seen = serde_json::to_string(&cursor.seen).expect("a set of strings serialises");
        sqlx::query(
            "INSERT INTO event_cursors (name, last_second, seen_guids, updated_at) \
             VALUES ($1, $2, $3, $4) ON CONFLICT (name) DO UPDATE SET \
             last_second = excluded.last_second, seen_guids = excluded.seen_guids, \
             updated_at = excluded.updated_at",
        )
        .bind(name)
        .bind(&cursor.last_second)
        .bind(seen)
        .bind(now_millis())
        .execute(self.pool())
        .await
        .map(drop)
        .map_err(DbError::query("saving the event cursor"))
    }

    /// Every orphaned binding, by app.
    pub async fn orphaned_bindings(&self) -> Result<Vec<OrphanedBinding>, DbError> {
        let rows: Vec<(String, String, i64)> = sqlx::query_as(
            "SELECT binding_id, app_guid, orphaned_at FROM service_bindings \
             WHERE orphaned_at IS NOT NULL ORDER BY app_guid, binding_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(DbError::query("reading orphaned bindings"))?;
        rows.into_iter()
            .map(|(binding_id, app, orphaned_at)| {
                let app_guid = AppGuid::parse(&app)
                    .map_err(|e| DbError::Corrupt(format!("binding {binding_id}: {e}")))?;
                Ok(OrphanedBinding {
                    binding_id,
                    app_guid,
                    orphaned_at,
                })
            })
            .collect()
    }

    /// How many bindings are orphaned (for the updater's gauge).
    pub async fn orphaned_binding_count(&self) -> Result<u64, DbError> {
        let n: i64 = sqlx::query_scalar(
            "SELECT COUNT(*) FROM service_bindings WHERE orphaned_at IS NOT NULL",
        )
        .fetch_one(self.pool())
        .await
        .map_err(DbError::query("counting orphaned bindings"))?;
        Ok(u64::try_from(n).unwrap_or(0))
    }
}

impl AppTx {
    /// Marks the locked app's bindings orphaned (its app is gone from the Cloud
    /// Controller); returns how many were newly marked. Already marked ones keep their
    /// time.
    pub async fn mark_orphaned(&mut self) -> Result<u64, DbError> {
        let app = self.app().as_str().to_owned();
        sqlx::query(
            "UPDATE service_bindings SET orphaned_at = $1 \
             WHERE app_guid = $2 AND orphaned_at IS NULL",
        )
        .bind(now_millis())
        .bind(app)
        .execute(self.conn())
        .await
        .map(|r| r.rows_affected())
        .map_err(DbError::query("marking bindings orphaned"))
    }
}

/// The updater's part of the repository suite (see [`crate::conformance`]).
#[cfg(any(test, feature = "conformance"))]
pub mod checks {
    use super::*;
    use crate::conformance::{app, new_binding, new_instance};

    #[track_caller]
    fn must<T, E: std::fmt::Display>(call: &str, result: Result<T, E>) -> T {
        result.unwrap_or_else(|e| panic!("{call} failed: {e}"))
    }

    pub async fn a_lease_has_one_holder_until_it_is_released_or_expires(db: &Db) {
        let ttl = Duration::from_secs(60);
        assert!(must(
            "acquire",
            db.try_acquire_lease("reconcile", "a", ttl).await
        ));
        assert!(
            !must("acquire", db.try_acquire_lease("reconcile", "b", ttl).await),
            "a held lease was given to another holder"
        );
        assert!(
            must("renew", db.try_acquire_lease("reconcile", "a", ttl).await),
            "the holder could not renew its lease"
        );
        assert!(
            must("other", db.try_acquire_lease("other", "b", ttl).await),
            "leases of different names are independent"
        );
        must("release", db.release_lease("reconcile", "b").await);
        assert!(
            !must("acquire", db.try_acquire_lease("reconcile", "b", ttl).await),
            "releasing someone else's lease freed it"
        );
        must("release", db.release_lease("reconcile", "a").await);
        assert!(must(
            "acquire",
            db.try_acquire_lease("reconcile", "b", Duration::ZERO).await
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            must("acquire", db.try_acquire_lease("reconcile", "c", ttl).await),
            "an expired lease was not taken over"
        );
    }

    pub async fn the_event_cursor_round_trips(db: &Db) {
        assert_eq!(must("event_cursor", db.event_cursor("audit").await), None);
        let cursor = EventCursor {
            last_second: "2026-01-02T03:04:05Z".into(),
            seen: ["e-1".to_owned(), "e-2".to_owned()].into(),
        };
        must("save", db.save_event_cursor("audit", &cursor).await);
        assert_eq!(
            must("event_cursor", db.event_cursor("audit").await),
            Some(cursor)
        );
        let later = EventCursor {
            last_second: "2026-01-02T03:04:06Z".into(),
            seen: BTreeSet::new(),
        };
        must("save", db.save_event_cursor("audit", &later).await);
        assert_eq!(
            must("event_cursor", db.event_cursor("audit").await),
            Some(later)
        );
    }

    pub async fn bindings_of_a_deleted_app_are_marked_orphaned_once(db: &Db) {
        must(
            "create_instance",
            db.create_instance(&new_instance("si-1")).await,
        );
        for (n, binding) in [(1, "b-1"), (1, "b-2"), (2, "b-3")] {
            let mut tx = must("lock_app", db.lock_app(&app(n)).await);
            must(
                "insert_binding",
                tx.insert_binding(&new_binding(binding, "si-1", "{}")).await,
            );
            must("commit", tx.commit().await);
        }
        assert_eq!(must("count", db.orphaned_binding_count().await), 0);
        let mut tx = must("lock_app", db.lock_app(&app(1)).await);
        assert_eq!(must("mark_orphaned", tx.mark_orphaned().await), 2);
        must("commit", tx.commit().await);
        let mut tx = must("lock_app", db.lock_app(&app(1)).await);
        assert_eq!(
            must("mark_orphaned", tx.mark_orphaned().await),
            0,
            "bindings were marked twice"
        );
        drop(tx);
        let orphaned = must("orphaned_bindings", db.orphaned_bindings().await);
        let ids: Vec<_> = orphaned.iter().map(|o| o.binding_id.as_str()).collect();
        assert_eq!(ids, ["b-1", "b-2"]);
        assert!(orphaned.iter().all(|o| o.app_guid == app(1)));
        assert_eq!(must("count", db.orphaned_binding_count().await), 2);
        assert_eq!(
            must("bindings_of_app", db.bindings_of_app(&app(1)).await).len(),
            2,
            "orphaned bindings are still bindings"
        );
    }
}
