//! Service instances.

use crate::model::{DeleteInstance, Insert, InstanceUpdate, NewInstance, ServiceInstance};
use crate::{Db, DbError, now_millis};

const SELECT_INSTANCE: &str = "SELECT instance_id, service_id, plan_id, organization_guid, \
     space_guid, parameters, context, created_at, updated_at \
     FROM service_instances WHERE instance_id = $1";

impl Db {
    /// Records a new instance, or reports the one already recorded under its id
    /// (identical or conflicting). Safe against concurrent identical requests: exactly
    /// one of them gets [`Insert::Created`].
    pub async fn create_instance(
        &self,
        new: &NewInstance,
    ) -> Result<Insert<ServiceInstance>, DbError> {
        let now = now_millis();
        let inserted = sqlx::query(
            "INSERT INTO service_instances (instance_id, service_id, plan_id, \
             organization_guid, space_guid, parameters, context, created_at, updated_at) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $8) \
             ON CONFLICT (instance_id) DO NOTHING",
        )
        .bind(&new.instance_id)
        .bind(&new.service_id)
        .bind(&new.plan_id)
        .bind(&new.organization_guid)
        .bind(&new.space_guid)
        .bind(&new.parameters)
        .bind(&new.context)
        .bind(now)
        .execute(self.pool())
        .await
        .map_err(DbError::query("inserting a service instance"))?
        .rows_affected()
            == 1;
        let existing = self.instance(&new.instance_id).await?.ok_or_else(|| {
            DbError::Corrupt(format!(
                "service instance {} vanished right after it was recorded",
                new.instance_id
            ))
        })?;
        Ok(if inserted {
            Insert::Created(existing)
        } else if new.is_identical_to(&existing) {
            Insert::Identical(existing)
        } else {
            Insert::Conflict(existing)
        })
    }

    /// The instance with this id, if recorded.
    pub async fn instance(&self, instance_id: &str) -> Result<Option<ServiceInstance>, DbError> {
        sqlx::query_as::<_, ServiceInstance>(SELECT_INSTANCE)
            .bind(instance_id)
            .fetch_optional(self.pool())
            .await
            .map_err(DbError::query("reading a service instance"))
    }

    /// Applies `update`; `None` when there is no such instance.
    pub async fn update_instance(
        &self,
        instance_id: &str,
        update: &InstanceUpdate,
    ) -> Result<Option<ServiceInstance>, DbError> {
        let updated = sqlx::query(
            "UPDATE service_instances SET plan_id = COALESCE($2, plan_id), \
             parameters = COALESCE($3, parameters), updated_at = $4 WHERE instance_id = $1",
        )
        .bind(instance_id)
        .bind(update.plan_id.as_deref())
        .bind(update.parameters.as_deref())
        .bind(now_millis())
        .execute(self.pool())
        .await
        .map_err(DbError::query("updating a service instance"))?
        .rows_affected();
        if updated == 0 {
            return Ok(None);
        }
        self.instance(instance_id).await
    }

    /// Deletes the instance unless bindings still refer to it.
    pub async fn delete_instance(&self, instance_id: &str) -> Result<DeleteInstance, DbError> {
        let bound = self.bindings_of_instance(instance_id).await?.len();
        if bound > 0 {
            return Ok(DeleteInstance::StillBound(bound));
        }
        // A binding created between the count and the delete makes the foreign key
        // refuse the delete (an error, so the platform retries); nothing is lost.
        let deleted = sqlx::query("DELETE FROM service_instances WHERE instance_id = $1")
            .bind(instance_id)
            .execute(self.pool())
            .await
            .map_err(DbError::query("deleting a service instance"))?
            .rows_affected();
        Ok(if deleted == 0 {
            DeleteInstance::NotFound
        } else {
            DeleteInstance::Deleted
        })
    }
}
