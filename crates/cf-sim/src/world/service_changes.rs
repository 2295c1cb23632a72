//! The changes to the world's services, as the control API records them.
//!
//! The simulator runs no broker: these changes record the state a broker (say, the one
//! being replaced) and the platform would have left behind, without calling anybody.
//! Deleting an app removes its bindings (the CC unbinds a deleted app).

use std::collections::HashSet;

use serde::Deserialize;

use super::World;
use super::services::{
    BindingType, CredentialBinding, LastOperation, ServiceInstance, ServiceOffering, ServicePlan,
};
use super::table::Table;
use crate::error::CcError;
use crate::util::{now, random_guid};

/// `POST /sim/service_offerings` body: an offering with its plans, as a broker's catalog
/// creates them.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewOffering {
    pub name: String,
    pub broker_catalog_id: String,
    #[serde(default)]
    pub description: Option<String>,
    /// The broker's name (default `broker`); offerings of one broker name share its guid.
    #[serde(default)]
    pub broker_name: Option<String>,
    #[serde(default)]
    pub guid: Option<String>,
    pub plans: Vec<NewPlan>,
}

/// A plan of a [`NewOffering`].
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewPlan {
    pub name: String,
    pub broker_catalog_id: String,
    #[serde(default)]
    pub description: Option<String>,
    #[serde(default)]
    pub free: Option<bool>,
    #[serde(default)]
    pub guid: Option<String>,
}

/// A `last_operation` in control bodies: `{type, state}`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewLastOperation {
    #[serde(rename = "type")]
    pub kind: String,
    pub state: String,
}

/// `POST /sim/service_instances` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewServiceInstance {
    pub name: String,
    pub plan_guid: String,
    pub space_guid: String,
    #[serde(default)]
    pub tags: Vec<String>,
    /// Default `{type: create, state: succeeded}`.
    #[serde(default)]
    pub last_operation: Option<NewLastOperation>,
    #[serde(default)]
    pub guid: Option<String>,
}

/// `POST /sim/service_credential_bindings` body.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NewCredentialBinding {
    pub service_instance_guid: String,
    /// `app` (default) or `key`.
    #[serde(default, rename = "type")]
    pub binding_type: Option<String>,
    /// Required for `app`, absent for `key`.
    #[serde(default)]
    pub app_guid: Option<String>,
    /// Required for `key`.
    #[serde(default)]
    pub name: Option<String>,
    /// Default `{type: create, state: succeeded}`.
    #[serde(default)]
    pub last_operation: Option<NewLastOperation>,
    #[serde(default)]
    pub guid: Option<String>,
}

fn last_operation(given: Option<&NewLastOperation>, at: i64) -> Result<LastOperation, CcError> {
    let (kind, state) = match given {
        None => ("create", "succeeded"),
        Some(op) => (op.kind.as_str(), op.state.as_str()),
    };
    if !["create", "update", "delete"].contains(&kind) {
        return Err(CcError::unprocessable(
            "last_operation.type must be create, update or delete",
        ));
    }
    if !["in progress", "succeeded", "failed"].contains(&state) {
        return Err(CcError::unprocessable(
            "last_operation.state must be 'in progress', succeeded or failed",
        ));
    }
    Ok(LastOperation {
        kind: kind.into(),
        state: state.into(),
        created_at: at,
        updated_at: at,
    })
}

fn fresh_guid<T>(table: &Table<T>, given: Option<String>) -> Result<String, CcError> {
    let guid = given.unwrap_or_else(random_guid);
    if guid.is_empty() || table.contains(&guid) {
        return Err(CcError::unprocessable(format!("guid '{guid}' is taken")));
    }
    Ok(guid)
}

impl World {
    /// Records an offering and its plans (the catalog of a registered broker). Returns the
    /// offering's guid. Catalog ids and names are unique per broker (offerings) and per
    /// offering (plans), as the CC's catalog validation requires.
    pub fn add_service_offering(&mut self, new: NewOffering) -> Result<String, CcError> {
        if new.name.is_empty() || new.broker_catalog_id.is_empty() {
            return Err(CcError::unprocessable(
                "An offering needs a name and a broker_catalog_id",
            ));
        }
        if new.plans.is_empty() {
            return Err(CcError::unprocessable(
                "Service broker catalog is invalid: each service must have at least one plan",
            ));
        }
        let broker_name = new.broker_name.unwrap_or_else(|| "broker".into());
        let broker_guid = self
            .services
            .offerings
            .iter()
            .find(|o| o.broker_name == broker_name)
            .map_or_else(random_guid, |o| o.broker_guid.clone());
        let clash = self.services.offerings.iter().any(|o| {
            o.broker_guid == broker_guid
                && (o.broker_catalog_id == new.broker_catalog_id || o.name == new.name)
        });
        if clash {
            return Err(CcError::unprocessable(format!(
                "Service broker catalog is invalid: broker '{broker_name}' already has a service \
                 with id '{}' or name '{}'",
                new.broker_catalog_id, new.name
            )));
        }
        let mut ids = HashSet::new();
        let mut names = HashSet::new();
        for plan in &new.plans {
            if plan.name.is_empty() || plan.broker_catalog_id.is_empty() {
                return Err(CcError::unprocessable(
                    "A plan needs a name and a broker_catalog_id",
                ));
            }
            if !ids.insert(plan.broker_catalog_id.as_str()) || !names.insert(plan.name.as_str()) {
                return Err(CcError::unprocessable(
                    "Service broker catalog is invalid: plan ids and names must be unique within a service",
                ));
            }
        }
        let guid = fresh_guid(&self.services.offerings, new.guid)?;
        let mut plan_guids = HashSet::new();
        for plan in &new.plans {
            let g = fresh_guid(&self.services.plans, plan.guid.clone())?;
            if !plan_guids.insert(g) {
                return Err(CcError::unprocessable("plan guids must be unique"));
            }
        }
        let at = now();
        let seq = self.next_seq();
        self.services.offerings.insert(
            seq,
            guid.clone(),
            ServiceOffering {
                guid: guid.clone(),
                description: new.description.unwrap_or_else(|| new.name.clone()),
                name: new.name,
                broker_catalog_id: new.broker_catalog_id,
                broker_guid,
                broker_name,
                created_at: at,
                updated_at: at,
            },
        );
        for plan in new.plans {
            let seq = self.next_seq();
            let plan_guid = plan.guid.unwrap_or_else(random_guid);
            self.services.plans.insert(
                seq,
                plan_guid.clone(),
                ServicePlan {
                    guid: plan_guid,
                    description: plan.description.unwrap_or_else(|| plan.name.clone()),
                    name: plan.name,
                    broker_catalog_id: plan.broker_catalog_id,
                    offering_guid: guid.clone(),
                    free: plan.free.unwrap_or(true),
                    created_at: at,
                    updated_at: at,
                },
            );
        }
        Ok(guid)
    }

    /// Records a managed instance of a plan in a space; names are unique per space.
    pub fn add_service_instance(&mut self, new: NewServiceInstance) -> Result<String, CcError> {
        if !self.services.plans.contains(&new.plan_guid) {
            return Err(CcError::unprocessable(
                "Invalid service plan. Ensure that the service plan exists, is available, and you have access to it.",
            ));
        }
        if !self.spaces.contains(&new.space_guid) {
            return Err(CcError::unprocessable(
                "Invalid space. Ensure that the space exists and you have access to it.",
            ));
        }
        if new.name.is_empty() {
            return Err(CcError::unprocessable("Name can't be blank"));
        }
        let taken = self
            .services
            .instances
            .iter()
            .any(|i| i.space_guid == new.space_guid && i.name == new.name);
        if taken {
            return Err(CcError::unprocessable(format!(
                "The service instance name is taken: {}.",
                new.name
            )));
        }
        let guid = fresh_guid(&self.services.instances, new.guid)?;
        let at = now();
        let last_operation = last_operation(new.last_operation.as_ref(), at)?;
        let seq = self.next_seq();
        self.services.instances.insert(
            seq,
            guid.clone(),
            ServiceInstance {
                guid: guid.clone(),
                name: new.name,
                plan_guid: new.plan_guid,
                space_guid: new.space_guid,
                tags: new.tags,
                last_operation,
                created_at: at,
                updated_at: at,
            },
        );
        Ok(guid)
    }

    /// Records an app binding (the app must be in the instance's space) or a service key
    /// (named, unique per instance).
    pub fn add_credential_binding(&mut self, new: NewCredentialBinding) -> Result<String, CcError> {
        let binding_type = match new.binding_type.as_deref() {
            None => BindingType::App,
            Some(t) => BindingType::parse(t)
                .ok_or_else(|| CcError::unprocessable("Type must be 'app' or 'key'"))?,
        };
        let instance = self
            .services
            .instances
            .get(&new.service_instance_guid)
            .ok_or_else(|| {
                CcError::unprocessable(format!(
                    "The service instance could not be found: {}.",
                    new.service_instance_guid
                ))
            })?;
        match binding_type {
            BindingType::App => {
                let app_guid = new
                    .app_guid
                    .as_deref()
                    .ok_or_else(|| CcError::unprocessable("An app binding needs an app_guid"))?;
                let app = self.apps.get(app_guid).ok_or_else(|| {
                    CcError::unprocessable(format!("The app could not be found: {app_guid}."))
                })?;
                if app.space_guid != instance.space_guid {
                    return Err(CcError::unprocessable(
                        "The service instance and the app are in different spaces.",
                    ));
                }
            }
            BindingType::Key => {
                if new.app_guid.is_some() {
                    return Err(CcError::unprocessable("A service key binds no app"));
                }
                let Some(name) = new.name.as_deref().filter(|n| !n.is_empty()) else {
                    return Err(CcError::unprocessable("Name can't be blank"));
                };
                let taken = self.services.bindings.iter().any(|b| {
                    b.instance_guid == new.service_instance_guid
                        && b.binding_type == BindingType::Key
                        && b.name.as_deref() == Some(name)
                });
                if taken {
                    return Err(CcError::unprocessable(format!(
                        "The binding name is invalid. Key binding names must be unique. The \
                         service instance already has a key binding with name '{name}'."
                    )));
                }
            }
        }
        let guid = fresh_guid(&self.services.bindings, new.guid)?;
        let at = now();
        let last_operation = last_operation(new.last_operation.as_ref(), at)?;
        let seq = self.next_seq();
        self.services.bindings.insert(
            seq,
            guid.clone(),
            CredentialBinding {
                guid: guid.clone(),
                name: new.name,
                binding_type,
                app_guid: new.app_guid,
                instance_guid: new.service_instance_guid,
                last_operation,
                created_at: at,
                updated_at: at,
            },
        );
        Ok(guid)
    }

    /// Forgets a binding (as after a successful unbind).
    pub fn delete_credential_binding(&mut self, guid: &str) -> Result<(), CcError> {
        self.services
            .bindings
            .remove(guid)
            .map(drop)
            .ok_or_else(|| CcError::not_found("Service credential binding"))
    }

    /// Forgets an instance and its bindings (as `cf delete-service` does after unbinding).
    pub fn delete_service_instance(&mut self, guid: &str) -> Result<(), CcError> {
        self.services
            .instances
            .remove(guid)
            .ok_or_else(|| CcError::not_found("Service instance"))?;
        let doomed: Vec<String> = self
            .services
            .bindings
            .iter()
            .filter(|b| b.instance_guid == guid)
            .map(|b| b.guid.clone())
            .collect();
        for binding in doomed {
            self.services.bindings.remove(&binding);
        }
        Ok(())
    }
}
