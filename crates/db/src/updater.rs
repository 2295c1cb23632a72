//! What the updater keeps in the database besides the bindings: orphan markers, the
//! lease that lets only one updater reconcile at a time, and the audit-event cursor.

use std::collections::BTreeSet;
use std::time::Duration;

use gds_targets::AppGuid;

use crate::{AppTx, Db, DbError, DbKind, now_millis};

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

/// `$sql` with `NOW` standing for the database's clock in milliseconds since the Unix
/// epoch, as a `&'static str` for `kind`.
///
/// Lease times are read and written on this one clock, never on the callers': two
/// updater hosts whose clocks disagree by seconds would otherwise both believe they hold
/// the lease (one writes an expiry from a slow clock, the other compares it with a fast
/// one). PostgreSQL's `clock_timestamp()` is the time the statement runs (not the
/// transaction's start, as `now()` is); SQLite's `'now'` is the clock of the one host whose
/// processes share the file.
macro_rules! on_db_clock {
    ($kind:expr, $($part:tt)*) => {
        match $kind {
            DbKind::Postgres => on_db_clock!(@sql
                "CAST(EXTRACT(EPOCH FROM clock_timestamp()) * 1000 AS BIGINT)"; []; $($part)*),
            DbKind::Sqlite => on_db_clock!(@sql
                "CAST((julianday('now') - 2440587.5) * 86400000.0 AS INTEGER)"; []; $($part)*),
        }
    };
    (@sql $now:literal; [$($done:expr),*]; NOW $($rest:tt)*) => {
        on_db_clock!(@sql $now; [$($done,)* $now]; $($rest)*)
    };
    (@sql $now:literal; [$($done:expr),*]; $text:literal $($rest:tt)*) => {
        on_db_clock!(@sql $now; [$($done,)* $text]; $($rest)*)
    };
    (@sql $now:literal; [$($done:expr),*];) => { concat!($($done),*) };
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl Db {
    /// Takes (or renews) the lease `name` for `holder` until `ttl` from now, if it is
    /// free, expired, or already `holder`'s; `false` when someone else holds it.
    ///
    /// "Now" is the database's clock (see `on_db_clock!`), so the holder's lease lasts at
    /// least `ttl` from the moment this call was made, whatever the clocks of the
    /// updater hosts say: a caller that measures `ttl` on its own monotonic clock from
    /// before the call never overestimates what it holds.
    ///
    /// Why a lease row rather than `pg_try_advisory_lock`: one portable statement works
    /// on PostgreSQL and on SQLite (several processes on one file), it needs no
    /// connection pinned for the lease's lifetime, and a holder that dies or hangs loses
    /// the lease when it expires. The holder renews it ([`Db::renew_lease`]) while it works.
    pub async fn try_acquire_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DbError> {
        let affected = sqlx::query(on_db_clock!(
            self.kind(),
            "INSERT INTO leases (name, holder, expires_at) VALUES ($1, $2, " NOW " + $3) \
             ON CONFLICT (name) DO UPDATE SET holder = excluded.holder, \
             expires_at = excluded.expires_at \
             WHERE leases.expires_at < " NOW " OR leases.holder = excluded.holder"
        ))
        .bind(name)
        .bind(holder)
        .bind(millis(ttl))
        .execute(self.pool())
        .await
        .map_err(DbError::query("taking a lease"))?
        .rows_affected();
        Ok(affected == 1)
    }

    /// Extends `holder`'s lease `name` to `ttl` from now (the database's clock), only
    /// while it is still `holder`'s and has not expired; `false` otherwise. Unlike
    /// [`Db::try_acquire_lease`] it never takes back a lease that lapsed, even when
    /// nobody else took it meanwhile: another holder may have taken it, worked and
    /// released it in between, so a holder that let its lease lapse has lost it.
    pub async fn renew_lease(
        &self,
        name: &str,
        holder: &str,
        ttl: Duration,
    ) -> Result<bool, DbError> {
        let affected = sqlx::query(on_db_clock!(
            self.kind(),
            "UPDATE leases SET expires_at = " NOW " + $1 \
             WHERE name = $2 AND holder = $3 AND expires_at >= " NOW
        ))
        .bind(millis(ttl))
        .bind(name)
        .bind(holder)
        .execute(self.pool())
        .await
        .map_err(DbError::query("renewing a lease"))?
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

    pub async fn a_lease_is_renewed_only_by_its_holder_before_it_expires(db: &Db) {
        let ttl = Duration::from_secs(60);
        assert!(
            !must("renew", db.renew_lease("reconcile", "a", ttl).await),
            "a lease nobody took was renewed"
        );
        assert!(must(
            "acquire",
            db.try_acquire_lease("reconcile", "a", ttl).await
        ));
        assert!(must("renew", db.renew_lease("reconcile", "a", ttl).await));
        assert!(
            !must("renew", db.renew_lease("reconcile", "b", ttl).await),
            "another holder renewed a held lease"
        );
        assert!(must(
            "acquire",
            db.try_acquire_lease("lapsing", "a", Duration::ZERO).await
        ));
        tokio::time::sleep(Duration::from_millis(5)).await;
        assert!(
            !must("renew", db.renew_lease("lapsing", "a", ttl).await),
            "a lapsed lease was renewed (someone may have held it in between)"
        );
    }

    pub async fn a_lease_expires_on_the_database_clock_in_milliseconds(db: &Db) {
        let before = now_millis();
        assert!(must(
            "acquire",
            db.try_acquire_lease("reconcile", "a", Duration::from_secs(60))
                .await
        ));
        let expires_at: i64 =
            sqlx::query_scalar("SELECT expires_at FROM leases WHERE name = 'reconcile'")
                .fetch_one(db.pool())
                .await
                .expect("the lease row");
        // The database runs on this host in the tests, so its clock is ours (within the
        // slack given for a slow machine).
        let ahead = expires_at - before;
        assert!(
            (55_000..=65_000).contains(&ahead),
            "a 60 s lease expires {ahead} ms after it was taken"
        );
        assert!(must(
            "renew",
            db.renew_lease("reconcile", "a", Duration::from_secs(120))
                .await
        ));
        let renewed: i64 =
            sqlx::query_scalar("SELECT expires_at FROM leases WHERE name = 'reconcile'")
                .fetch_one(db.pool())
                .await
                .expect("the lease row");
        assert!(
            (renewed - expires_at) >= 55_000,
            "renewing for 120 s moved the expiry by {} ms",
            renewed - expires_at
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
