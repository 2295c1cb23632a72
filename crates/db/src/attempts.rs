//! Binds in progress (`binding_attempts`): what lets an unbind that arrives while its
//! binding's bind is still running (the platform's orphan mitigation after a broker
//! timeout) cancel that bind, on any broker process sharing the database.
//!
//! The protocol, for one binding id:
//! - the bind records its attempt ([`Db::start_binding_attempt`]) before its slow Cloud
//!   Controller look-up;
//! - under the app's lock, it writes anything only if its attempt is still recorded, and
//!   deletes it in the transaction that records the binding ([`AppTx::finish_binding_attempt`]);
//! - an unbind deletes the attempt under the same lock ([`AppTx::cancel_binding_attempt`]),
//!   so whichever of the two takes the lock second sees what the first did.

use gds_targets::AppGuid;

use crate::bindings::AppTx;
use crate::model::NewBinding;
use crate::{Db, DbError, now_millis};

/// A bind in progress, as recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BindingAttempt {
    pub binding_id: String,
    pub instance_id: String,
    pub app_guid: AppGuid,
    /// Normalised JSON text, as in a [`crate::Binding`].
    pub parameters: String,
    /// The id of the request(s) owning the attempt.
    pub attempt: String,
    /// Milliseconds since the Unix epoch.
    pub started_at: i64,
}

impl BindingAttempt {
    /// Whether a bind request asks for exactly what this attempt is binding.
    pub fn is_identical_to(&self, app: &AppGuid, new: &NewBinding) -> bool {
        self.binding_id == new.binding_id
            && self.instance_id == new.instance_id
            && &self.app_guid == app
            && self.parameters == new.parameters
    }
}

#[derive(sqlx::FromRow)]
struct AttemptRow {
    binding_id: String,
    instance_id: String,
    app_guid: String,
    parameters: String,
    attempt: String,
    started_at: i64,
}

impl TryFrom<AttemptRow> for BindingAttempt {
    type Error = DbError;

    fn try_from(row: AttemptRow) -> Result<Self, Self::Error> {
        let app_guid = AppGuid::parse(&row.app_guid)
            .map_err(|e| DbError::Corrupt(format!("binding attempt {}: {e}", row.binding_id)))?;
        Ok(BindingAttempt {
            binding_id: row.binding_id,
            instance_id: row.instance_id,
            app_guid,
            parameters: row.parameters,
            attempt: row.attempt,
            started_at: row.started_at,
        })
    }
}

const SELECT: &str = "SELECT binding_id, instance_id, app_guid, parameters, attempt, started_at \
                      FROM binding_attempts WHERE binding_id = $1";

impl Db {
    /// Records that a bind of `new` for `app` starts, as request `attempt` (a fresh random
    /// id), and returns the attempt id the request now owns: its own, or, when an
    /// identical bind of the same binding id is already recorded (the platform retrying,
    /// or a retry after a broker crashed mid-bind), that one's, which the request joins.
    /// A recorded attempt that differs is replaced (the older request then gives up).
    pub async fn start_binding_attempt(
        &self,
        app: &AppGuid,
        new: &NewBinding,
        attempt: &str,
    ) -> Result<String, DbError> {
        let _queued = self.queue_for_write().await;
        let inserted = sqlx::query(
            "INSERT INTO binding_attempts (binding_id, instance_id, app_guid, parameters, \
             attempt, started_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (binding_id) DO NOTHING",
        )
        .bind(&new.binding_id)
        .bind(&new.instance_id)
        .bind(app.as_str())
        .bind(&new.parameters)
        .bind(attempt)
        .bind(now_millis())
        .execute(self.pool())
        .await
        .map_err(DbError::query("recording a bind in progress"))?
        .rows_affected()
            == 1;
        if inserted {
            return Ok(attempt.to_owned());
        }
        if let Some(existing) = self.binding_attempt(&new.binding_id).await?
            && existing.is_identical_to(app, new)
        {
            return Ok(existing.attempt);
        }
        // Different (or gone in the meantime): this request takes the binding id over.
        sqlx::query(
            "INSERT INTO binding_attempts (binding_id, instance_id, app_guid, parameters, \
             attempt, started_at) VALUES ($1, $2, $3, $4, $5, $6) \
             ON CONFLICT (binding_id) DO UPDATE SET instance_id = excluded.instance_id, \
             app_guid = excluded.app_guid, parameters = excluded.parameters, \
             attempt = excluded.attempt, started_at = excluded.started_at",
        )
        .bind(&new.binding_id)
        .bind(&new.instance_id)
        .bind(app.as_str())
        .bind(&new.parameters)
        .bind(attempt)
        .bind(now_millis())
        .execute(self.pool())
        .await
        .map_err(DbError::query("recording a bind in progress"))?;
        Ok(attempt.to_owned())
    }

    /// The bind in progress for this binding id, if one is recorded.
    pub async fn binding_attempt(
        &self,
        binding_id: &str,
    ) -> Result<Option<BindingAttempt>, DbError> {
        sqlx::query_as::<_, AttemptRow>(SELECT)
            .bind(binding_id)
            .fetch_optional(self.pool())
            .await
            .map_err(DbError::query("reading a bind in progress"))?
            .map(BindingAttempt::try_from)
            .transpose()
    }

    /// The binds in progress in one service instance.
    pub async fn binding_attempts_of_instance(
        &self,
        instance_id: &str,
    ) -> Result<Vec<BindingAttempt>, DbError> {
        sqlx::query_as::<_, AttemptRow>(
            "SELECT binding_id, instance_id, app_guid, parameters, attempt, started_at \
             FROM binding_attempts WHERE instance_id = $1 ORDER BY started_at, binding_id",
        )
        .bind(instance_id)
        .fetch_all(self.pool())
        .await
        .map_err(DbError::query("reading an instance's binds in progress"))?
        .into_iter()
        .map(BindingAttempt::try_from)
        .collect()
    }

    /// Forgets a bind that failed before writing anything, if `attempt` still owns it;
    /// whether it did. (A request that joined an attempt may end it for the others: they
    /// then give up, as if unbound, and the platform retries.)
    pub async fn abandon_binding_attempt(
        &self,
        binding_id: &str,
        attempt: &str,
    ) -> Result<bool, DbError> {
        let _queued = self.queue_for_write().await;
        Ok(
            sqlx::query("DELETE FROM binding_attempts WHERE binding_id = $1 AND attempt = $2")
                .bind(binding_id)
                .bind(attempt)
                .execute(self.pool())
                .await
                .map_err(DbError::query("forgetting a bind in progress"))?
                .rows_affected()
                == 1,
        )
    }
}

impl AppTx {
    /// Ends the locked app's bind in progress `attempt` for this binding id: deletes it and
    /// returns `true` if it is still recorded, `false` if an unbind cancelled it or a newer
    /// request took the binding id over (the bind must then write nothing).
    pub async fn finish_binding_attempt(
        &mut self,
        binding_id: &str,
        attempt: &str,
    ) -> Result<bool, DbError> {
        let app = self.app().as_str().to_owned();
        Ok(sqlx::query(
            "DELETE FROM binding_attempts WHERE binding_id = $1 AND attempt = $2 \
             AND app_guid = $3",
        )
        .bind(binding_id)
        .bind(attempt)
        .bind(app)
        .execute(self.conn())
        .await
        .map_err(DbError::query("ending a bind in progress"))?
        .rows_affected()
            == 1)
    }

    /// Cancels the locked app's bind in progress for this binding id, whoever runs it, and
    /// returns it; `None` if there is none (one of another app is not touched).
    pub async fn cancel_binding_attempt(
        &mut self,
        binding_id: &str,
    ) -> Result<Option<BindingAttempt>, DbError> {
        let Some(attempt) = sqlx::query_as::<_, AttemptRow>(SELECT)
            .bind(binding_id)
            .fetch_optional(self.conn())
            .await
            .map_err(DbError::query("reading a bind in progress"))?
            .map(BindingAttempt::try_from)
            .transpose()?
            .filter(|a| &a.app_guid == self.app())
        else {
            return Ok(None);
        };
        sqlx::query("DELETE FROM binding_attempts WHERE binding_id = $1")
            .bind(binding_id)
            .execute(self.conn())
            .await
            .map_err(DbError::query("cancelling a bind in progress"))?;
        Ok(Some(attempt))
    }
}
