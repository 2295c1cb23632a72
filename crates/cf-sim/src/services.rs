//! Services in the simulated Cloud Controller: the service offerings and plans a
//! registered broker's catalog creates, managed service instances of those plans, and
//! their credential bindings (app bindings and service keys).
//!
//! The CC API side is read-only, with the CC's shapes, filters and pagination:
//!
//! | endpoint | notes |
//! | --- | --- |
//! | `GET /v3/service_offerings` (+ `/:guid`) | `names` (case-insensitive), `available`, `broker_catalog_ids`, `service_broker_guids`, `service_broker_names`, `space_guids`, `organization_guids`, `fields[service_broker]=guid,name` |
//! | `GET /v3/service_plans` (+ `/:guid`) | `names`, `available`, `broker_catalog_ids`, `service_offering_guids`, `service_offering_names`, `service_broker_guids`, `service_broker_names`, `service_instance_guids`, `space_guids`, `organization_guids`, `include (service_offering, space.organization)`, `fields[service_offering.service_broker]` |
//! | `GET /v3/service_instances` (+ `/:guid`) | `names`, `guids`, `type (managed, user-provided)`, `space_guids`, `organization_guids`, `service_plan_guids`, `service_plan_names`, `fields[space]`, `fields[space.organization]`, `fields[service_plan]`, `fields[service_plan.service_offering]`, `fields[service_plan.service_offering.service_broker]` |
//! | `GET /v3/service_credential_bindings` (+ `/:guid`) | `guids`, `names`, `type (app, key)`, `service_instance_guids`, `service_instance_names`, `app_guids`, `app_names`, `service_plan_guids`, `service_plan_names`, `service_offering_guids`, `service_offering_names`, `include (app, service_instance)` |
//!
//! Every list also takes `page`, `per_page`, `order_by` (`created_at`, `updated_at`,
//! `name`), `label_selector` (nothing here has labels), `created_ats` and `updated_ats`.
//! A filter value nothing has gives an empty list; an unknown parameter, `include` or
//! `fields` resource or key gives 400 CF-BadQueryParameter, as everywhere in the simulator.
//!
//! The simulator runs no broker: the control API records the state a broker (say, the one
//! being replaced) and the platform would have left behind, without calling anybody:
//! `POST /sim/service_offerings` (an offering and its plans, as a broker's catalog would
//! create them), `POST /sim/service_instances`, `POST /sim/service_credential_bindings`,
//! `DELETE` of the last two (see [`ENDPOINTS`]). Deleting an app removes its bindings (the
//! CC unbinds a deleted app).
//!
//! Visibility is not modelled (as everywhere in the simulator): every reader sees every
//! offering, plan, instance and binding, and every plan is public, so `space_guids` and
//! `organization_guids` on offerings and plans (which only narrow org-restricted plans and
//! space-scoped brokers) filter nothing. There are no user-provided instances.

use std::collections::{BTreeMap, BTreeSet, HashSet};

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use crate::cc::json_response;
use crate::error::CcError;
use crate::present;
use crate::query::{ListQuery, ListSpec, OrderBy};
use crate::state::SimState;
use crate::util::{format_ts, now, random_guid};
use crate::world::{Table, World};

type Data = web::Data<SimState>;
type CcResult = Result<HttpResponse, CcError>;

// ---------------------------------------------------------------- the model

/// A service offering, as a broker's catalog entry becomes one.
#[derive(Debug, Clone)]
pub struct ServiceOffering {
    pub guid: String,
    pub name: String,
    pub description: String,
    /// The broker's id for it (`broker_catalog.id`, the OSB `service_id`).
    pub broker_catalog_id: String,
    pub broker_guid: String,
    pub broker_name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A plan of an offering.
#[derive(Debug, Clone)]
pub struct ServicePlan {
    pub guid: String,
    pub name: String,
    pub description: String,
    /// The broker's id for it (`broker_catalog.id`, the OSB `plan_id`).
    pub broker_catalog_id: String,
    pub offering_guid: String,
    pub free: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// The `last_operation` of an instance or binding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LastOperation {
    /// `create`, `update` or `delete`.
    pub kind: String,
    /// `in progress`, `succeeded` or `failed`.
    pub state: String,
    pub created_at: i64,
    pub updated_at: i64,
}

/// A managed service instance.
#[derive(Debug, Clone)]
pub struct ServiceInstance {
    pub guid: String,
    pub name: String,
    pub plan_guid: String,
    pub space_guid: String,
    pub tags: Vec<String>,
    pub last_operation: LastOperation,
    pub created_at: i64,
    pub updated_at: i64,
}

/// What a credential binding binds: an app, or nothing (a service key).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BindingType {
    App,
    Key,
}

impl BindingType {
    pub fn as_str(self) -> &'static str {
        match self {
            BindingType::App => "app",
            BindingType::Key => "key",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "app" => Some(BindingType::App),
            "key" => Some(BindingType::Key),
            _ => None,
        }
    }
}

/// A service credential binding: an app binding or a service key.
#[derive(Debug, Clone)]
pub struct CredentialBinding {
    pub guid: String,
    /// Optional for app bindings (`cf bind-service --binding-name`), required for keys.
    pub name: Option<String>,
    pub binding_type: BindingType,
    /// `Some` exactly for app bindings.
    pub app_guid: Option<String>,
    pub instance_guid: String,
    pub last_operation: LastOperation,
    pub created_at: i64,
    pub updated_at: i64,
}

/// Every service resource of the world, each table in creation order.
#[derive(Debug, Clone, Default)]
pub struct Services {
    pub offerings: Table<ServiceOffering>,
    pub plans: Table<ServicePlan>,
    pub instances: Table<ServiceInstance>,
    pub bindings: Table<CredentialBinding>,
}

impl Services {
    /// Forgets the bindings of a deleted app.
    pub fn remove_bindings_of_app(&mut self, app_guid: &str) {
        let doomed: Vec<String> = self
            .bindings
            .iter()
            .filter(|b| b.app_guid.as_deref() == Some(app_guid))
            .map(|b| b.guid.clone())
            .collect();
        for guid in doomed {
            self.bindings.remove(&guid);
        }
    }

    fn plan_of(&self, instance: &ServiceInstance) -> Option<&ServicePlan> {
        self.plans.get(&instance.plan_guid)
    }

    fn offering_of(&self, plan: &ServicePlan) -> Option<&ServiceOffering> {
        self.offerings.get(&plan.offering_guid)
    }
}

// ---------------------------------------------------------------- changes

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

// ---------------------------------------------------------------- presenters

fn href(url: String) -> Value {
    json!({"href": url})
}

fn no_metadata() -> Value {
    json!({"labels": {}, "annotations": {}})
}

fn last_operation_json(op: &LastOperation) -> Value {
    json!({
        "type": op.kind,
        "state": op.state,
        "description": "",
        "created_at": format_ts(op.created_at),
        "updated_at": format_ts(op.updated_at),
    })
}

pub fn offering(base: &str, o: &ServiceOffering) -> Value {
    let v3 = format!("{base}/v3");
    json!({
        "guid": o.guid,
        "name": o.name,
        "description": o.description,
        "available": true,
        "tags": [],
        "requires": [],
        "created_at": format_ts(o.created_at),
        "updated_at": format_ts(o.updated_at),
        "shareable": false,
        "documentation_url": null,
        "broker_catalog": {
            "id": o.broker_catalog_id,
            "metadata": {},
            "features": {
                "plan_updateable": false,
                "bindable": true,
                "instances_retrievable": true,
                "bindings_retrievable": true,
                "allow_context_updates": false,
            },
        },
        "relationships": {"service_broker": {"data": {"guid": o.broker_guid}}},
        "metadata": no_metadata(),
        "links": {
            "self": href(format!("{v3}/service_offerings/{}", o.guid)),
            "service_plans": href(format!("{v3}/service_plans?service_offering_guids={}", o.guid)),
            "service_broker": href(format!("{v3}/service_brokers/{}", o.broker_guid)),
        },
    })
}

pub fn plan(base: &str, p: &ServicePlan) -> Value {
    let v3 = format!("{base}/v3");
    json!({
        "guid": p.guid,
        "name": p.name,
        "description": p.description,
        "visibility_type": "public",
        "available": true,
        "free": p.free,
        "costs": [],
        "created_at": format_ts(p.created_at),
        "updated_at": format_ts(p.updated_at),
        "maintenance_info": {},
        "broker_catalog": {
            "id": p.broker_catalog_id,
            "metadata": {},
            "maximum_polling_duration": null,
            "features": {"plan_updateable": false, "bindable": true},
        },
        "schemas": {
            "service_instance": {"create": {"parameters": {}}, "update": {"parameters": {}}},
            "service_binding": {"create": {"parameters": {}}},
        },
        "relationships": {"service_offering": {"data": {"guid": p.offering_guid}}},
        "metadata": no_metadata(),
        "links": {
            "self": href(format!("{v3}/service_plans/{}", p.guid)),
            "service_offering": href(format!("{v3}/service_offerings/{}", p.offering_guid)),
            "visibility": href(format!("{v3}/service_plans/{}/visibility", p.guid)),
        },
    })
}

pub fn instance(base: &str, i: &ServiceInstance) -> Value {
    let v3 = format!("{base}/v3");
    let me = format!("{v3}/service_instances/{}", i.guid);
    json!({
        "guid": i.guid,
        "created_at": format_ts(i.created_at),
        "updated_at": format_ts(i.updated_at),
        "name": i.name,
        "tags": i.tags,
        "type": "managed",
        "maintenance_info": {},
        "upgrade_available": false,
        "dashboard_url": null,
        "last_operation": last_operation_json(&i.last_operation),
        "relationships": {
            "service_plan": {"data": {"guid": i.plan_guid}},
            "space": {"data": {"guid": i.space_guid}},
        },
        "metadata": no_metadata(),
        "links": {
            "self": href(me.clone()),
            "service_plan": href(format!("{v3}/service_plans/{}", i.plan_guid)),
            "space": href(format!("{v3}/spaces/{}", i.space_guid)),
            "parameters": href(format!("{me}/parameters")),
            "shared_spaces": href(format!("{me}/relationships/shared_spaces")),
            "service_credential_bindings": href(format!("{v3}/service_credential_bindings?service_instance_guids={}", i.guid)),
            "service_route_bindings": href(format!("{v3}/service_route_bindings?service_instance_guids={}", i.guid)),
        },
    })
}

pub fn binding(base: &str, b: &CredentialBinding) -> Value {
    let v3 = format!("{base}/v3");
    let me = format!("{v3}/service_credential_bindings/{}", b.guid);
    let mut relationships = Map::new();
    let mut links = Map::new();
    links.insert("self".into(), href(me.clone()));
    links.insert("details".into(), href(format!("{me}/details")));
    links.insert(
        "service_instance".into(),
        href(format!("{v3}/service_instances/{}", b.instance_guid)),
    );
    if let Some(app) = &b.app_guid {
        relationships.insert("app".into(), json!({"data": {"guid": app}}));
        links.insert("app".into(), href(format!("{v3}/apps/{app}")));
        links.insert("parameters".into(), href(format!("{me}/parameters")));
    }
    relationships.insert(
        "service_instance".into(),
        json!({"data": {"guid": b.instance_guid}}),
    );
    json!({
        "guid": b.guid,
        "type": b.binding_type.as_str(),
        "name": b.name,
        "created_at": format_ts(b.created_at),
        "updated_at": format_ts(b.updated_at),
        "last_operation": last_operation_json(&b.last_operation),
        "metadata": no_metadata(),
        "relationships": relationships,
        "links": links,
    })
}

// ---------------------------------------------------------------- list plumbing

/// What every listed service resource has.
trait Row {
    fn guid(&self) -> &str;
    fn created_at(&self) -> i64;
    fn updated_at(&self) -> i64;
    fn sort_name(&self) -> &str;
}

macro_rules! row {
    ($t:ty, |$s:ident| $name:expr) => {
        impl Row for $t {
            fn guid(&self) -> &str {
                &self.guid
            }
            fn created_at(&self) -> i64 {
                self.created_at
            }
            fn updated_at(&self) -> i64 {
                self.updated_at
            }
            fn sort_name(&self) -> &str {
                let $s = self;
                $name
            }
        }
    };
}

row!(ServiceOffering, |s| &s.name);
row!(ServicePlan, |s| &s.name);
row!(ServiceInstance, |s| &s.name);
row!(CredentialBinding, |s| s.name.as_deref().unwrap_or(""));

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Rows in creation order (only the named ones for a `guids` filter), then the common
/// filters: `label_selector` (nothing has labels) and the timestamps.
fn rows<'a, T: Row>(table: &'a Table<T>, q: &ListQuery) -> Vec<&'a T> {
    let mut rows: Vec<(u64, &T)> = match q.filter("guids") {
        Some(guids) => {
            let mut seen = HashSet::new();
            let mut rows: Vec<(u64, &T)> = guids
                .iter()
                .filter(|g| seen.insert(g.as_str()))
                .filter_map(|g| Some((table.seq_of(g)?, table.get(g)?)))
                .collect();
            rows.sort_by_key(|(seq, _)| *seq);
            rows
        }
        None => table.iter_seq().collect(),
    };
    rows.retain(|(_, r)| {
        q.labels_match(&NO_LABELS) && q.timestamps_match(r.created_at(), r.updated_at())
    });
    order(&mut rows, &q.order_by);
    rows.into_iter().map(|(_, r)| r).collect()
}

fn order<T: Row>(rows: &mut [(u64, &T)], order_by: &Option<OrderBy>) {
    let Some(o) = order_by else {
        return;
    };
    match o.field.as_str() {
        "created_at" => rows.sort_by_key(|(s, r)| (r.created_at(), *s)),
        "updated_at" => rows.sort_by_key(|(s, r)| (r.updated_at(), *s)),
        "name" => rows.sort_by(|a, b| (a.1.sort_name(), a.0).cmp(&(b.1.sort_name(), b.0))),
        _ => {}
    }
    if o.descending {
        rows.reverse();
    }
}

/// A list filter as a set (`None`: not given, keep everything).
fn filter<'q>(q: &'q ListQuery, name: &str) -> Option<BTreeSet<&'q str>> {
    q.filter_set(name)
}

fn keep(set: &Option<BTreeSet<&str>>, value: &str) -> bool {
    set.as_ref().is_none_or(|s| s.contains(value))
}

fn keep_opt(set: &Option<BTreeSet<&str>>, value: Option<&str>) -> bool {
    match set {
        None => true,
        Some(s) => value.is_some_and(|v| s.contains(v)),
    }
}

/// `available=true|false`: everything here is available.
fn check_available(q: &ListQuery) -> Result<bool, CcError> {
    match q.filter("available") {
        None => Ok(true),
        Some([v]) if v == "true" => Ok(true),
        Some([v]) if v == "false" => Ok(false),
        Some(_) => Err(CcError::bad_query(&[
            "Available only accepts values 'true' or 'false'".into(),
        ])),
    }
}

/// A single-valued enum filter (`type`), checked against its values.
fn check_one_of(q: &ListQuery, name: &str, values: &[&str]) -> Result<(), CcError> {
    if let Some(given) = q.filter(name)
        && given.iter().any(|v| !values.contains(&v.as_str()))
    {
        let human = name[..1].to_uppercase() + &name[1..];
        return Err(CcError::bad_query(&[format!(
            "{human} must be one of '{}'",
            values.join("', '")
        )]));
    }
    Ok(())
}

/// The `fields[RESOURCE]=keys` an endpoint accepts: (resource, allowed keys).
type FieldSpec = &'static [(&'static str, &'static [&'static str])];

const OFFERING_FIELDS: FieldSpec = &[("service_broker", &["guid", "name"])];
const PLAN_FIELDS: FieldSpec = &[("service_offering.service_broker", &["guid", "name"])];
const INSTANCE_FIELDS: FieldSpec = &[
    ("space", &["guid", "name", "relationships.organization"]),
    ("space.organization", &["guid", "name"]),
    (
        "service_plan",
        &["guid", "name", "relationships.service_offering"],
    ),
    (
        "service_plan.service_offering",
        &[
            "guid",
            "name",
            "description",
            "documentation_url",
            "tags",
            "relationships.service_broker",
        ],
    ),
    (
        "service_plan.service_offering.service_broker",
        &["guid", "name"],
    ),
];

fn check_fields(q: &ListQuery, spec: FieldSpec) -> Result<(), CcError> {
    let resources: Vec<&str> = spec.iter().map(|(r, _)| *r).collect();
    let mut errors = Vec::new();
    if q.filter("fields").is_some() {
        errors.push(format!(
            "Fields must name a resource: fields[RESOURCE]=keys, with RESOURCE one of '{}'",
            resources.join("', '")
        ));
    }
    for (resource, keys) in &q.fields {
        match spec.iter().find(|(r, _)| r == resource) {
            None => errors.push(format!(
                "Fields [{resource}] valid resources are: '{}'",
                resources.join("', '")
            )),
            Some((_, allowed)) => {
                if keys.iter().any(|k| !allowed.contains(&k.as_str())) {
                    errors.push(format!(
                        "Fields valid keys for '{resource}' are: '{}'",
                        allowed.join("', '")
                    ));
                }
            }
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(CcError::bad_query(&errors))
    }
}

/// `full` reduced to `keys`; a dotted key (`relationships.organization`) keeps that path.
fn pick(full: &Value, keys: &[String]) -> Value {
    let mut out = Value::Object(Map::new());
    for key in keys {
        let path: Vec<&str> = key.split('.').collect();
        let mut source = full;
        let mut found = true;
        for part in &path {
            match source.get(part) {
                Some(v) => source = v,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let mut target = &mut out;
        for part in &path[..path.len() - 1] {
            target = target
                .as_object_mut()
                .expect("built from objects")
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        target
            .as_object_mut()
            .expect("built from objects")
            .insert(path[path.len() - 1].to_string(), source.clone());
    }
    out
}

/// Orders, paginates and presents; `included` gets the page's rows.
fn list_response<T>(
    q: &ListQuery,
    url: &str,
    rows: Vec<&T>,
    present: impl Fn(&T) -> Value,
    included: impl FnOnce(&[&T]) -> Option<Value>,
) -> HttpResponse {
    let (page, pagination) = q.paginate(&rows, url);
    let mut body = json!({
        "pagination": pagination,
        "resources": page.iter().map(|r| present(r)).collect::<Vec<_>>(),
    });
    if let Some(inc) = included(page) {
        body["included"] = inc;
    }
    json_response(200, &body)
}

/// Parses the query of a single-resource GET that takes only `params` (`include` or
/// `fields`).
fn parse_single(
    raw: &str,
    params: &'static [&'static str],
    spec: &ListSpec,
) -> Result<ListQuery, CcError> {
    ListQuery::parse(
        raw,
        &ListSpec {
            params,
            order_by: &[],
            includes: spec.includes,
        },
    )
}

/// Sorted like CCNG's include decorators: `created_at`, then guid; each once.
fn sorted_unique<'a, T: Row>(items: impl IntoIterator<Item = &'a T>) -> Vec<&'a T> {
    let mut seen = HashSet::new();
    let mut out: Vec<&T> = items
        .into_iter()
        .filter(|r| seen.insert(r.guid().to_owned()))
        .collect();
    out.sort_by(|a, b| (a.created_at(), a.guid()).cmp(&(b.created_at(), b.guid())));
    out
}

/// `included.service_brokers` of offerings, as `fields[...service_broker]` asks.
fn brokers_of<'a>(
    offerings: impl IntoIterator<Item = &'a ServiceOffering>,
    keys: &[String],
) -> Value {
    let offerings = sorted_unique(offerings);
    let mut seen = HashSet::new();
    Value::Array(
        offerings
            .iter()
            .filter(|o| seen.insert(o.broker_guid.as_str()))
            .map(|o| pick(&json!({"guid": o.broker_guid, "name": o.broker_name}), keys))
            .collect(),
    )
}

// ---------------------------------------------------------------- offerings

const OFFERINGS: ListSpec = ListSpec {
    params: &[
        "names",
        "available",
        "broker_catalog_ids",
        "service_broker_guids",
        "service_broker_names",
        "space_guids",
        "organization_guids",
        "label_selector",
        "fields",
        "page",
        "per_page",
        "order_by",
        "created_ats",
        "updated_ats",
    ],
    order_by: &["created_at", "updated_at", "name"],
    includes: &[],
};

/// `GET /v3/service_offerings`.
pub async fn list_offerings(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &OFFERINGS)?;
    check_fields(&q, OFFERING_FIELDS)?;
    let available = check_available(&q)?;
    let w = state.world();
    let names: Option<BTreeSet<String>> = q
        .filter("names")
        .map(|vs| vs.iter().map(|v| v.to_lowercase()).collect());
    let (ids, broker_guids, broker_names) = (
        filter(&q, "broker_catalog_ids"),
        filter(&q, "service_broker_guids"),
        filter(&q, "service_broker_names"),
    );
    let mut rows = rows(&w.services.offerings, &q);
    rows.retain(|o| {
        available
            && names
                .as_ref()
                .is_none_or(|n| n.contains(&o.name.to_lowercase()))
            && keep(&ids, &o.broker_catalog_id)
            && keep(&broker_guids, &o.broker_guid)
            && keep(&broker_names, &o.broker_name)
    });
    let base = &state.base_url;
    Ok(list_response(
        &q,
        &format!("{base}/v3/service_offerings"),
        rows,
        |o| offering(base, o),
        |page| {
            q.fields
                .get("service_broker")
                .map(|keys| json!({"service_brokers": brokers_of(page.iter().copied(), keys)}))
        },
    ))
}

/// `GET /v3/service_offerings/:guid`.
pub async fn get_offering(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    let q = parse_single(req.query_string(), &["fields"], &OFFERINGS)?;
    check_fields(&q, OFFERING_FIELDS)?;
    let w = state.world();
    let o = w
        .services
        .offerings
        .get(&path)
        .ok_or_else(|| CcError::not_found("Service offering"))?;
    let mut body = offering(&state.base_url, o);
    if let Some(keys) = q.fields.get("service_broker") {
        body["included"] = json!({"service_brokers": brokers_of([o], keys)});
    }
    Ok(json_response(200, &body))
}

// ---------------------------------------------------------------- plans

const PLANS: ListSpec = ListSpec {
    params: &[
        "names",
        "available",
        "broker_catalog_ids",
        "space_guids",
        "organization_guids",
        "service_broker_guids",
        "service_broker_names",
        "service_offering_guids",
        "service_offering_names",
        "service_instance_guids",
        "include",
        "page",
        "per_page",
        "order_by",
        "label_selector",
        "fields",
        "created_ats",
        "updated_ats",
    ],
    order_by: &["created_at", "updated_at", "name"],
    includes: &["space.organization", "service_offering"],
};

fn plans_included(base: &str, w: &World, q: &ListQuery, page: &[&ServicePlan]) -> Option<Value> {
    let mut included = Map::new();
    let offerings = || {
        sorted_unique(
            page.iter()
                .filter_map(|p| w.services.offerings.get(&p.offering_guid)),
        )
    };
    if q.includes("space.organization") {
        // Only plans of space-scoped brokers have a space; there are none here.
        included.insert("spaces".into(), json!([]));
        included.insert("organizations".into(), json!([]));
    }
    if q.includes("service_offering") {
        included.insert(
            "service_offerings".into(),
            offerings().iter().map(|o| offering(base, o)).collect(),
        );
    }
    if let Some(keys) = q.fields.get("service_offering.service_broker") {
        included.insert("service_brokers".into(), brokers_of(offerings(), keys));
    }
    (!included.is_empty()).then_some(Value::Object(included))
}

/// `GET /v3/service_plans`.
pub async fn list_plans(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &PLANS)?;
    check_fields(&q, PLAN_FIELDS)?;
    let available = check_available(&q)?;
    let w = state.world();
    let s = &w.services;
    let (names, ids, offering_guids, offering_names, broker_guids, broker_names) = (
        filter(&q, "names"),
        filter(&q, "broker_catalog_ids"),
        filter(&q, "service_offering_guids"),
        filter(&q, "service_offering_names"),
        filter(&q, "service_broker_guids"),
        filter(&q, "service_broker_names"),
    );
    let of_instances: Option<HashSet<&str>> = q.filter("service_instance_guids").map(|guids| {
        guids
            .iter()
            .filter_map(|g| s.instances.get(g))
            .map(|i| i.plan_guid.as_str())
            .collect()
    });
    let mut rows = rows(&s.plans, &q);
    rows.retain(|p| {
        let offering = s.offering_of(p);
        available
            && keep(&names, &p.name)
            && keep(&ids, &p.broker_catalog_id)
            && keep(&offering_guids, &p.offering_guid)
            && keep_opt(&offering_names, offering.map(|o| o.name.as_str()))
            && keep_opt(&broker_guids, offering.map(|o| o.broker_guid.as_str()))
            && keep_opt(&broker_names, offering.map(|o| o.broker_name.as_str()))
            && of_instances
                .as_ref()
                .is_none_or(|plans| plans.contains(p.guid.as_str()))
    });
    let base = &state.base_url;
    Ok(list_response(
        &q,
        &format!("{base}/v3/service_plans"),
        rows,
        |p| plan(base, p),
        |page| plans_included(base, &w, &q, page),
    ))
}

/// `GET /v3/service_plans/:guid`.
pub async fn get_plan(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    let q = parse_single(req.query_string(), &["include", "fields"], &PLANS)?;
    check_fields(&q, PLAN_FIELDS)?;
    let w = state.world();
    let p = w
        .services
        .plans
        .get(&path)
        .ok_or_else(|| CcError::not_found("Service plan"))?;
    let mut body = plan(&state.base_url, p);
    if let Some(included) = plans_included(&state.base_url, &w, &q, &[p]) {
        body["included"] = included;
    }
    Ok(json_response(200, &body))
}

// ---------------------------------------------------------------- instances

const INSTANCES: ListSpec = ListSpec {
    params: &[
        "names",
        "guids",
        "type",
        "space_guids",
        "organization_guids",
        "service_plan_guids",
        "service_plan_names",
        "label_selector",
        "fields",
        "page",
        "per_page",
        "order_by",
        "created_ats",
        "updated_ats",
    ],
    order_by: &["created_at", "updated_at", "name"],
    includes: &[],
};

/// `included` for `fields[...]` of service instances: spaces, organizations, plans,
/// offerings and brokers of the page, each reduced to the keys asked for.
fn instances_included(w: &World, q: &ListQuery, page: &[&ServiceInstance]) -> Option<Value> {
    if q.fields.is_empty() {
        return None;
    }
    let s = &w.services;
    let mut included = Map::new();
    let mut spaces: Vec<&crate::world::Space> = Vec::new();
    let mut seen = HashSet::new();
    for i in page {
        if seen.insert(i.space_guid.as_str())
            && let Some(space) = w.spaces.get(&i.space_guid)
        {
            spaces.push(space);
        }
    }
    spaces.sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
    if let Some(keys) = q.fields.get("space") {
        let spaces: Vec<Value> = spaces
            .iter()
            .map(|sp| {
                let full = json!({
                    "guid": sp.guid,
                    "name": sp.name,
                    "relationships": {"organization": {"data": {"guid": sp.org_guid}}},
                });
                pick(&full, keys)
            })
            .collect();
        included.insert("spaces".into(), Value::Array(spaces));
    }
    if let Some(keys) = q.fields.get("space.organization") {
        let mut seen = HashSet::new();
        let mut orgs: Vec<&crate::world::Org> = spaces
            .iter()
            .filter(|sp| seen.insert(sp.org_guid.as_str()))
            .filter_map(|sp| w.orgs.get(&sp.org_guid))
            .collect();
        orgs.sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
        let orgs: Vec<Value> = orgs
            .iter()
            .map(|o| pick(&json!({"guid": o.guid, "name": o.name}), keys))
            .collect();
        included.insert("organizations".into(), Value::Array(orgs));
    }
    let plans = sorted_unique(page.iter().filter_map(|i| s.plan_of(i)));
    if let Some(keys) = q.fields.get("service_plan") {
        let plans: Vec<Value> = plans
            .iter()
            .map(|p| {
                let full = json!({
                    "guid": p.guid,
                    "name": p.name,
                    "relationships": {"service_offering": {"data": {"guid": p.offering_guid}}},
                });
                pick(&full, keys)
            })
            .collect();
        included.insert("service_plans".into(), Value::Array(plans));
    }
    let offerings = sorted_unique(plans.iter().filter_map(|p| s.offering_of(p)));
    if let Some(keys) = q.fields.get("service_plan.service_offering") {
        let offerings: Vec<Value> = offerings
            .iter()
            .map(|o| {
                let full = json!({
                    "guid": o.guid,
                    "name": o.name,
                    "description": o.description,
                    "documentation_url": null,
                    "tags": [],
                    "relationships": {"service_broker": {"data": {"guid": o.broker_guid}}},
                });
                pick(&full, keys)
            })
            .collect();
        included.insert("service_offerings".into(), Value::Array(offerings));
    }
    if let Some(keys) = q.fields.get("service_plan.service_offering.service_broker") {
        included.insert(
            "service_brokers".into(),
            brokers_of(offerings.iter().copied(), keys),
        );
    }
    Some(Value::Object(included))
}

/// `GET /v3/service_instances`.
pub async fn list_instances(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &INSTANCES)?;
    check_fields(&q, INSTANCE_FIELDS)?;
    check_one_of(&q, "type", &["managed", "user-provided"])?;
    let w = state.world();
    let s = &w.services;
    let (names, types, spaces, orgs, plan_guids, plan_names) = (
        filter(&q, "names"),
        filter(&q, "type"),
        filter(&q, "space_guids"),
        filter(&q, "organization_guids"),
        filter(&q, "service_plan_guids"),
        filter(&q, "service_plan_names"),
    );
    let mut rows = rows(&s.instances, &q);
    rows.retain(|i| {
        keep(&names, &i.name)
            && keep(&types, "managed")
            && keep(&spaces, &i.space_guid)
            && keep_opt(&orgs, w.org_of_space(&i.space_guid))
            && keep(&plan_guids, &i.plan_guid)
            && keep_opt(&plan_names, s.plan_of(i).map(|p| p.name.as_str()))
    });
    let base = &state.base_url;
    Ok(list_response(
        &q,
        &format!("{base}/v3/service_instances"),
        rows,
        |i| instance(base, i),
        |page| instances_included(&w, &q, page),
    ))
}

/// `GET /v3/service_instances/:guid`.
pub async fn get_instance(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    let q = parse_single(req.query_string(), &["fields"], &INSTANCES)?;
    check_fields(&q, INSTANCE_FIELDS)?;
    let w = state.world();
    let i = w
        .services
        .instances
        .get(&path)
        .ok_or_else(|| CcError::not_found("Service instance"))?;
    let mut body = instance(&state.base_url, i);
    if let Some(included) = instances_included(&w, &q, &[i]) {
        body["included"] = included;
    }
    Ok(json_response(200, &body))
}

// ---------------------------------------------------------------- credential bindings

const BINDINGS: ListSpec = ListSpec {
    params: &[
        "names",
        "service_instance_guids",
        "service_instance_names",
        "app_guids",
        "app_names",
        "service_plan_guids",
        "service_plan_names",
        "service_offering_guids",
        "service_offering_names",
        "type",
        "guids",
        "created_ats",
        "updated_ats",
        "include",
        "label_selector",
        "page",
        "per_page",
        "order_by",
    ],
    order_by: &["created_at", "updated_at", "name"],
    includes: &["app", "service_instance"],
};

fn bindings_included(
    base: &str,
    w: &World,
    q: &ListQuery,
    page: &[&CredentialBinding],
) -> Option<Value> {
    let mut included = Map::new();
    if q.includes("app") {
        let mut seen = HashSet::new();
        let mut apps: Vec<&crate::world::App> = page
            .iter()
            .filter_map(|b| b.app_guid.as_deref())
            .filter(|g| seen.insert(*g))
            .filter_map(|g| w.apps.get(g))
            .collect();
        apps.sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
        included.insert(
            "apps".into(),
            apps.iter().map(|a| present::app(base, a)).collect(),
        );
    }
    if q.includes("service_instance") {
        let instances = sorted_unique(
            page.iter()
                .filter_map(|b| w.services.instances.get(&b.instance_guid)),
        );
        included.insert(
            "service_instances".into(),
            instances.iter().map(|i| instance(base, i)).collect(),
        );
    }
    (!included.is_empty()).then_some(Value::Object(included))
}

/// `GET /v3/service_credential_bindings`.
pub async fn list_bindings(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &BINDINGS)?;
    check_one_of(&q, "type", &["app", "key"])?;
    let w = state.world();
    let s = &w.services;
    let (names, types, instance_guids, instance_names, app_guids, app_names) = (
        filter(&q, "names"),
        filter(&q, "type"),
        filter(&q, "service_instance_guids"),
        filter(&q, "service_instance_names"),
        filter(&q, "app_guids"),
        filter(&q, "app_names"),
    );
    let (plan_guids, plan_names, offering_guids, offering_names) = (
        filter(&q, "service_plan_guids"),
        filter(&q, "service_plan_names"),
        filter(&q, "service_offering_guids"),
        filter(&q, "service_offering_names"),
    );
    let mut rows = rows(&s.bindings, &q);
    rows.retain(|b| {
        let instance = s.instances.get(&b.instance_guid);
        let plan = instance.and_then(|i| s.plan_of(i));
        let offering = plan.and_then(|p| s.offering_of(p));
        let app = b.app_guid.as_deref().and_then(|g| w.apps.get(g));
        keep_opt(&names, b.name.as_deref())
            && keep(&types, b.binding_type.as_str())
            && keep(&instance_guids, &b.instance_guid)
            && keep_opt(&instance_names, instance.map(|i| i.name.as_str()))
            && keep_opt(&app_guids, b.app_guid.as_deref())
            && keep_opt(&app_names, app.map(|a| a.name.as_str()))
            && keep_opt(&plan_guids, plan.map(|p| p.guid.as_str()))
            && keep_opt(&plan_names, plan.map(|p| p.name.as_str()))
            && keep_opt(&offering_guids, offering.map(|o| o.guid.as_str()))
            && keep_opt(&offering_names, offering.map(|o| o.name.as_str()))
    });
    let base = &state.base_url;
    Ok(list_response(
        &q,
        &format!("{base}/v3/service_credential_bindings"),
        rows,
        |b| binding(base, b),
        |page| bindings_included(base, &w, &q, page),
    ))
}

/// `GET /v3/service_credential_bindings/:guid`.
pub async fn get_binding(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    let q = parse_single(req.query_string(), &["include"], &BINDINGS)?;
    let w = state.world();
    let b = w
        .services
        .bindings
        .get(&path)
        .ok_or_else(|| CcError::not_found("Service credential binding"))?;
    let mut body = binding(&state.base_url, b);
    if let Some(included) = bindings_included(&state.base_url, &w, &q, &[b]) {
        body["included"] = included;
    }
    Ok(json_response(200, &body))
}

// ---------------------------------------------------------------- control API

/// The control endpoints of this module (served by `GET /sim` with the others).
pub const ENDPOINTS: &[(&str, &str)] = &[
    (
        "POST /sim/service_offerings",
        "{name, broker_catalog_id, plans: [{name, broker_catalog_id, free?: true, description?, guid?}], broker_name?: \"broker\", description?, guid?} → {service_offering, service_plans}: a broker's catalog entry",
    ),
    (
        "POST /sim/service_instances",
        "{name, plan_guid, space_guid, tags?, last_operation?: {type, state} (default create/succeeded), guid?} → service instance (as the broker left it; no broker is called)",
    ),
    (
        "DELETE /sim/service_instances/:guid",
        "the instance and its bindings go (no broker is called)",
    ),
    (
        "POST /sim/service_credential_bindings",
        "{service_instance_guid, type?: app|key, app_guid? (app: required, same space), name? (key: required), last_operation?, guid?} → binding (no broker is called)",
    ),
    (
        "DELETE /sim/service_credential_bindings/:guid",
        "the binding goes (no broker is called)",
    ),
];

/// Parses a JSON control body; an empty body reads as `{}`.
fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, CcError> {
    let bytes = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        bytes
    };
    serde_json::from_slice(bytes).map_err(|e| CcError::unprocessable(e.to_string()))
}

/// `POST /sim/service_offerings`.
pub async fn create_offering(state: Data, bytes: web::Bytes) -> CcResult {
    let new: NewOffering = body(&bytes)?;
    let mut w = state.world_mut();
    let guid = w.add_service_offering(new)?;
    let base = &state.base_url;
    let o = w.services.offerings.get(&guid).expect("just added");
    let plans: Vec<Value> = w
        .services
        .plans
        .iter()
        .filter(|p| p.offering_guid == guid)
        .map(|p| plan(base, p))
        .collect();
    Ok(json_response(
        201,
        &json!({"service_offering": offering(base, o), "service_plans": plans}),
    ))
}

/// `POST /sim/service_instances`.
pub async fn create_instance(state: Data, bytes: web::Bytes) -> CcResult {
    let new: NewServiceInstance = body(&bytes)?;
    let mut w = state.world_mut();
    let guid = w.add_service_instance(new)?;
    let i = w.services.instances.get(&guid).expect("just added");
    Ok(json_response(201, &instance(&state.base_url, i)))
}

/// `DELETE /sim/service_instances/:guid`.
pub async fn delete_instance(state: Data, path: web::Path<String>) -> CcResult {
    state.world_mut().delete_service_instance(&path)?;
    Ok(HttpResponse::NoContent().finish())
}

/// `POST /sim/service_credential_bindings`.
pub async fn create_binding(state: Data, bytes: web::Bytes) -> CcResult {
    let new: NewCredentialBinding = body(&bytes)?;
    let mut w = state.world_mut();
    let guid = w.add_credential_binding(new)?;
    let b = w.services.bindings.get(&guid).expect("just added");
    Ok(json_response(201, &binding(&state.base_url, b)))
}

/// `DELETE /sim/service_credential_bindings/:guid`.
pub async fn delete_binding(state: Data, path: web::Path<String>) -> CcResult {
    state.world_mut().delete_credential_binding(&path)?;
    Ok(HttpResponse::NoContent().finish())
}

// ---------------------------------------------------------------- routes

/// The CC routes of this module; registered before the `/v3` catch-all.
pub fn cc_routes(cfg: &mut web::ServiceConfig) {
    use web::{get, resource};
    cfg.service(resource("/v3/service_offerings").route(get().to(list_offerings)))
        .service(resource("/v3/service_offerings/{guid}").route(get().to(get_offering)))
        .service(resource("/v3/service_plans").route(get().to(list_plans)))
        .service(resource("/v3/service_plans/{guid}").route(get().to(get_plan)))
        .service(resource("/v3/service_instances").route(get().to(list_instances)))
        .service(resource("/v3/service_instances/{guid}").route(get().to(get_instance)))
        .service(resource("/v3/service_credential_bindings").route(get().to(list_bindings)))
        .service(resource("/v3/service_credential_bindings/{guid}").route(get().to(get_binding)));
}

/// The control routes of this module ([`ENDPOINTS`]).
pub fn control_routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, post, resource};
    cfg.service(resource("/sim/service_offerings").route(post().to(create_offering)))
        .service(resource("/sim/service_instances").route(post().to(create_instance)))
        .service(resource("/sim/service_instances/{guid}").route(delete().to(delete_instance)))
        .service(resource("/sim/service_credential_bindings").route(post().to(create_binding)))
        .service(
            resource("/sim/service_credential_bindings/{guid}").route(delete().to(delete_binding)),
        );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_keeps_only_the_keys_asked_for_including_dotted_paths() {
        let full = json!({
            "guid": "g",
            "name": "n",
            "relationships": {"organization": {"data": {"guid": "o"}}, "quota": 1},
        });
        assert_eq!(
            pick(&full, &["guid".into(), "relationships.organization".into()]),
            json!({"guid": "g", "relationships": {"organization": {"data": {"guid": "o"}}}})
        );
        assert_eq!(pick(&full, &[]), json!({}));
    }

    #[test]
    fn deleting_an_app_forgets_its_bindings_only() {
        let mut s = Services::default();
        for (n, app) in [(1, Some("a")), (2, Some("b")), (3, None)] {
            s.bindings.insert(
                n,
                format!("b{n}"),
                CredentialBinding {
                    guid: format!("b{n}"),
                    name: None,
                    binding_type: if app.is_some() {
                        BindingType::App
                    } else {
                        BindingType::Key
                    },
                    app_guid: app.map(str::to_owned),
                    instance_guid: "i".into(),
                    last_operation: LastOperation {
                        kind: "create".into(),
                        state: "succeeded".into(),
                        created_at: 0,
                        updated_at: 0,
                    },
                    created_at: 0,
                    updated_at: 0,
                },
            );
        }
        s.remove_bindings_of_app("a");
        let left: Vec<&str> = s.bindings.iter().map(|b| b.guid.as_str()).collect();
        assert_eq!(left, ["b2", "b3"]);
    }
}
