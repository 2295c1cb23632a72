//! Orphan marks: bindings whose app is gone from the Cloud Controller.

use gds_targets::AppGuid;

use crate::{AppTx, Db, DbError, now_millis};

/// An orphaned binding: its app is gone from the Cloud Controller.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct OrphanedBinding {
    pub binding_id: String,
    pub app_guid: AppGuid,
    /// Milliseconds since the Unix epoch.
    pub orphaned_at: i64,
}

impl Db {
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

/// The orphan marks' part of the repository suite (see [`crate::conformance`]).
#[cfg(any(test, feature = "conformance"))]
pub mod checks {
    use super::*;
    use crate::conformance::must;
    use crate::conformance::{app, new_binding, new_instance};

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
