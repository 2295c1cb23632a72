//! The rows, as the rest of the system sees them.

use gds_targets::AppGuid;
use serde_json::Value;

/// A provision request, to be recorded.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewInstance {
    pub instance_id: String,
    pub service_id: String,
    pub plan_id: String,
    pub organization_guid: String,
    pub space_guid: String,
    /// The request's `parameters` as normalised JSON text (`{}` when none).
    pub parameters: String,
    /// The request's `context` as normalised JSON text (`{}` when none). Not part of the
    /// identity of an instance: the platform may send different names on a retry.
    pub context: String,
}

impl NewInstance {
    /// Whether `existing` has the same attributes, so that provisioning again is a no-op
    /// (OSB: `200` for an identical instance, `409` otherwise).
    pub fn is_identical_to(&self, existing: &ServiceInstance) -> bool {
        self.instance_id == existing.instance_id
            && self.service_id == existing.service_id
            && self.plan_id == existing.plan_id
            && self.organization_guid == existing.organization_guid
            && self.space_guid == existing.space_guid
            && self.parameters == existing.parameters
    }
}

/// A recorded service instance.
#[derive(Clone, Debug, PartialEq, Eq, sqlx::FromRow)]
pub struct ServiceInstance {
    pub instance_id: String,
    pub service_id: String,
    pub plan_id: String,
    pub organization_guid: String,
    pub space_guid: String,
    /// Normalised JSON text.
    pub parameters: String,
    /// Normalised JSON text.
    pub context: String,
    /// Milliseconds since the Unix epoch.
    pub created_at: i64,
    /// Milliseconds since the Unix epoch.
    pub updated_at: i64,
}

impl ServiceInstance {
    /// The stored parameters as JSON (`{}` if the text was somehow not JSON).
    pub fn parameters_json(&self) -> Value {
        parse_object(&self.parameters)
    }
}

/// A change to an instance (OSB update); `None` leaves a field as it is.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct InstanceUpdate {
    pub plan_id: Option<String>,
    /// Normalised JSON text.
    pub parameters: Option<String>,
}

/// The outcome of recording something that may already exist (OSB provision and bind
/// answer `201`, `200` and `409` respectively).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Insert<T> {
    /// It was new and is now recorded.
    Created(T),
    /// It existed already with the same attributes; nothing changed.
    Identical(T),
    /// It existed already with different attributes (returned); nothing changed.
    Conflict(T),
}

/// The outcome of [`crate::Db::delete_instance`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum DeleteInstance {
    Deleted,
    NotFound,
    /// It still has this many bindings; unbind them first. Nothing changed.
    StillBound(usize),
}

/// A bind request, to be recorded for the app of an [`crate::AppTx`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewBinding {
    pub binding_id: String,
    pub instance_id: String,
    /// Validated parameters as normalised JSON text (`BindingParams::to_json`).
    pub parameters: String,
}

/// A recorded binding of an app to a service instance.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Binding {
    pub binding_id: String,
    pub instance_id: String,
    pub app_guid: AppGuid,
    /// Normalised JSON text.
    pub parameters: String,
    /// Milliseconds since the Unix epoch; strictly increasing among one app's bindings.
    pub created_at: i64,
}

impl Binding {
    /// The stored parameters as JSON (`{}` if the text was somehow not JSON).
    pub fn parameters_json(&self) -> Value {
        parse_object(&self.parameters)
    }

    /// Whether a bind request asks for exactly this binding.
    pub fn is_identical_to(&self, app: &AppGuid, new: &NewBinding) -> bool {
        self.binding_id == new.binding_id
            && self.instance_id == new.instance_id
            && &self.app_guid == app
            && self.parameters == new.parameters
    }
}

/// The row as stored, before its app GUID is parsed.
#[derive(sqlx::FromRow)]
pub(crate) struct BindingRow {
    pub binding_id: String,
    pub instance_id: String,
    pub app_guid: String,
    pub parameters: String,
    pub created_at: i64,
}

impl TryFrom<BindingRow> for Binding {
    type Error = crate::DbError;

    fn try_from(row: BindingRow) -> Result<Self, Self::Error> {
        let app_guid = AppGuid::parse(&row.app_guid)
            .map_err(|e| crate::DbError::Corrupt(format!("binding {}: {e}", row.binding_id)))?;
        Ok(Binding {
            binding_id: row.binding_id,
            instance_id: row.instance_id,
            app_guid,
            parameters: row.parameters,
            created_at: row.created_at,
        })
    }
}

fn parse_object(text: &str) -> Value {
    serde_json::from_str(text).unwrap_or_else(|_| Value::Object(Default::default()))
}
