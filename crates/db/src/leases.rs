//! The reconcile lease's row (`leases`): one holder at a time, on the database's clock.

use std::time::Duration;

use crate::{Db, DbError, DbKind};

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
}

/// The lease's part of the repository suite (see [`crate::conformance`]).
#[cfg(any(test, feature = "conformance"))]
pub mod checks {
    use super::*;
    use crate::conformance::must;
    use crate::now_millis;

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
}
