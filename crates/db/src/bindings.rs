//! Bindings, and the per-app transaction every change to them goes through.

use gds_targets::AppGuid;
use sqlx::{Any, Transaction};

use crate::model::{Binding, BindingRow, Insert, NewBinding};
use crate::{Db, DbError, DbKind, now_millis};

fn rows_to_bindings(rows: Vec<BindingRow>) -> Result<Vec<Binding>, DbError> {
    rows.into_iter().map(Binding::try_from).collect()
}

impl Db {
    /// The binding with this id, if recorded.
    pub async fn binding(&self, binding_id: &str) -> Result<Option<Binding>, DbError> {
        sqlx::query_as::<_, BindingRow>(
            "SELECT binding_id, instance_id, app_guid, parameters, created_at \
             FROM service_bindings WHERE binding_id = $1",
        )
        .bind(binding_id)
        .fetch_optional(self.pool())
        .await
        .map_err(DbError::query("reading a binding"))?
        .map(Binding::try_from)
        .transpose()
    }

    /// The bindings of one app, newest first (the first one's parameters apply, DESIGN.md
    /// section 3a).
    pub async fn bindings_of_app(&self, app: &AppGuid) -> Result<Vec<Binding>, DbError> {
        let rows = sqlx::query_as::<_, BindingRow>(
            "SELECT binding_id, instance_id, app_guid, parameters, created_at \
             FROM service_bindings WHERE app_guid = $1 ORDER BY created_at DESC, binding_id",
        )
        .bind(app.as_str())
        .fetch_all(self.pool())
        .await
        .map_err(DbError::query("reading an app's bindings"))?;
        rows_to_bindings(rows)
    }

    /// The bindings of one service instance, oldest first.
    pub async fn bindings_of_instance(&self, instance_id: &str) -> Result<Vec<Binding>, DbError> {
        let rows = sqlx::query_as::<_, BindingRow>(
            "SELECT binding_id, instance_id, app_guid, parameters, created_at \
             FROM service_bindings WHERE instance_id = $1 ORDER BY created_at, binding_id",
        )
        .bind(instance_id)
        .fetch_all(self.pool())
        .await
        .map_err(DbError::query("reading an instance's bindings"))?;
        rows_to_bindings(rows)
    }

    /// Every binding, ordered by app and then newest first: for each app, its first
    /// binding is the one whose parameters apply. This is the updater's desired state.
    pub async fn all_bindings(&self) -> Result<Vec<Binding>, DbError> {
        let rows = sqlx::query_as::<_, BindingRow>(
            "SELECT binding_id, instance_id, app_guid, parameters, created_at \
             FROM service_bindings ORDER BY app_guid, created_at DESC, binding_id",
        )
        .fetch_all(self.pool())
        .await
        .map_err(DbError::query("reading all bindings"))?;
        rows_to_bindings(rows)
    }

    /// Starts a transaction holding `app`'s lock: until it commits or is dropped (which
    /// rolls back), every other [`AppTx`] of the same app, in this process or any other
    /// sharing the database, waits.
    ///
    /// Why a lock row rather than, say, `pg_advisory_xact_lock`: one portable statement
    /// (an upsert of the app's row in `app_locks`) serialises per app on PostgreSQL, where
    /// the row lock is held until commit while other apps proceed in parallel, and on
    /// SQLite, where the first write of a transaction takes the database's single write
    /// lock (`BEGIN IMMEDIATE`, so a transaction never has to upgrade a stale read
    /// snapshot, which SQLite would refuse with `SQLITE_BUSY` instead of waiting). The
    /// row also leaves room for per-app state the updater may need later.
    ///
    /// Callers do the object-store write or delete inside the transaction and commit only
    /// when it succeeded: so a file exists exactly when a binding exists, even with
    /// concurrent binds and unbinds of one app on several brokers.
    pub async fn lock_app(&self, app: &AppGuid) -> Result<AppTx, DbError> {
        let queued = self.queue_for_write().await;
        let mut tx = match self.kind {
            DbKind::Sqlite => self.pool().begin_with("BEGIN IMMEDIATE").await,
            DbKind::Postgres => self.pool().begin().await,
        }
        .map_err(DbError::query("starting an app transaction"))?;
        sqlx::query(
            "INSERT INTO app_locks (app_guid, locked_at) VALUES ($1, $2) \
             ON CONFLICT (app_guid) DO UPDATE SET locked_at = excluded.locked_at",
        )
        .bind(app.as_str())
        .bind(now_millis())
        .execute(&mut *tx)
        .await
        .map_err(DbError::query("taking an app's lock"))?;
        Ok(AppTx {
            tx,
            app: app.clone(),
            _queued: queued,
        })
    }
}

/// A transaction holding one app's lock (see [`Db::lock_app`]). Dropping it without
/// [`AppTx::commit`] rolls every change back and releases the lock.
pub struct AppTx {
    tx: Transaction<'static, Any>,
    app: AppGuid,
    _queued: Option<tokio::sync::OwnedMutexGuard<()>>,
}

impl std::fmt::Debug for AppTx {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AppTx").field("app", &self.app).finish()
    }
}

impl AppTx {
    /// The locked app.
    pub fn app(&self) -> &AppGuid {
        &self.app
    }

    /// The transaction's connection, for statements of other modules of this crate.
    pub(crate) fn conn(&mut self) -> &mut sqlx::AnyConnection {
        &mut self.tx
    }

    /// The binding with this id (of any app), as this transaction sees it.
    pub async fn binding(&mut self, binding_id: &str) -> Result<Option<Binding>, DbError> {
        sqlx::query_as::<_, BindingRow>(
            "SELECT binding_id, instance_id, app_guid, parameters, created_at \
             FROM service_bindings WHERE binding_id = $1",
        )
        .bind(binding_id)
        .fetch_optional(&mut *self.tx)
        .await
        .map_err(DbError::query("reading a binding"))?
        .map(Binding::try_from)
        .transpose()
    }

    /// The locked app's bindings, newest first.
    pub async fn bindings(&mut self) -> Result<Vec<Binding>, DbError> {
        let rows = sqlx::query_as::<_, BindingRow>(
            "SELECT binding_id, instance_id, app_guid, parameters, created_at \
             FROM service_bindings WHERE app_guid = $1 ORDER BY created_at DESC, binding_id",
        )
        .bind(self.app.as_str())
        .fetch_all(&mut *self.tx)
        .await
        .map_err(DbError::query("reading an app's bindings"))?;
        rows_to_bindings(rows)
    }

    /// Records a binding of the locked app, or reports the one already recorded under its
    /// id (identical or conflicting, possibly of another app). A new binding's
    /// `created_at` is later than every other binding of the app, so it is the newest.
    /// The instance must exist (foreign key).
    pub async fn insert_binding(&mut self, new: &NewBinding) -> Result<Insert<Binding>, DbError> {
        let newest: Option<i64> =
            sqlx::query_scalar("SELECT MAX(created_at) FROM service_bindings WHERE app_guid = $1")
                .bind(self.app.as_str())
                .fetch_one(&mut *self.tx)
                .await
                .map_err(DbError::query("reading an app's newest binding"))?;
        let created_at = now_millis().max(newest.map_or(i64::MIN, |n| n + 1));
        let inserted = sqlx::query(
            "INSERT INTO service_bindings (binding_id, instance_id, app_guid, parameters, \
             created_at) VALUES ($1, $2, $3, $4, $5) ON CONFLICT (binding_id) DO NOTHING",
        )
        .bind(&new.binding_id)
        .bind(&new.instance_id)
        .bind(self.app.as_str())
        .bind(&new.parameters)
        .bind(created_at)
        .execute(&mut *self.tx)
        .await
        .map_err(DbError::query("inserting a binding"))?
        .rows_affected()
            == 1;
        if inserted {
            return Ok(Insert::Created(Binding {
                binding_id: new.binding_id.clone(),
                instance_id: new.instance_id.clone(),
                app_guid: self.app.clone(),
                parameters: new.parameters.clone(),
                created_at,
            }));
        }
        let existing = self.binding(&new.binding_id).await?.ok_or_else(|| {
            // Only a concurrent unbind between the two statements can get here.
            DbError::Corrupt(format!(
                "binding {} vanished while it was being recorded again",
                new.binding_id
            ))
        })?;
        Ok(if existing.is_identical_to(&self.app, new) {
            Insert::Identical(existing)
        } else {
            Insert::Conflict(existing)
        })
    }

    /// Deletes a binding of the locked app; returns it, or `None` if there was none (a
    /// binding of another app is not touched and counts as none).
    pub async fn delete_binding(&mut self, binding_id: &str) -> Result<Option<Binding>, DbError> {
        let Some(binding) = self
            .binding(binding_id)
            .await?
            .filter(|b| b.app_guid == self.app)
        else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM service_bindings WHERE binding_id = $1")
            .bind(binding_id)
            .execute(&mut *self.tx)
            .await
            .map_err(DbError::query("deleting a binding"))?;
        Ok(Some(binding))
    }

    /// Makes the changes visible and releases the lock.
    pub async fn commit(self) -> Result<(), DbError> {
        self.tx
            .commit()
            .await
            .map_err(DbError::query("committing an app transaction"))
    }
}
