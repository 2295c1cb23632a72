//! Service offerings, plans, instances and credential bindings (read-only), with the
//! CC's shapes, filters and pagination:
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
//! Visibility is not modelled (as everywhere in the simulator): every reader sees every
//! offering, plan, instance and binding, and every plan is public, so `space_guids` and
//! `organization_guids` on offerings and plans (which only narrow org-restricted plans and
//! space-scoped brokers) filter nothing. There are no user-provided instances.

use std::collections::{BTreeSet, HashSet};

use actix_web::{HttpRequest, web};
use serde_json::{Map, Value, json};

use crate::http::{CcResult, ok};
use crate::list::{Filter, candidates, list_response, pick, sorted_unique};
use crate::present;
use crate::present::services::{binding, instance, offering, plan};
use crate::query::{FieldSpec, ListQuery, ListSpec, parse_single};
use crate::state::Data;
use crate::world::{CredentialBinding, ServiceInstance, ServiceOffering, ServicePlan, World};

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
    q.check_fields(OFFERING_FIELDS)?;
    let available = q.available()?;
    let w = state.world();
    let names: Option<BTreeSet<String>> = q
        .filter("names")
        .map(|vs| vs.iter().map(|v| v.to_lowercase()).collect());
    let (ids, broker_guids, broker_names) = (
        Filter::of(&q, "broker_catalog_ids"),
        Filter::of(&q, "service_broker_guids"),
        Filter::of(&q, "service_broker_names"),
    );
    let mut rows = candidates(&w.services.offerings, &q);
    rows.retain(|(_, o)| {
        available
            && names
                .as_ref()
                .is_none_or(|n| n.contains(&o.name.to_lowercase()))
            && ids.keeps(&o.broker_catalog_id)
            && broker_guids.keeps(&o.broker_guid)
            && broker_names.keeps(&o.broker_name)
    });
    let base = &state.base_url;
    Ok(list_response(
        &q,
        &format!("{base}/v3/service_offerings"),
        rows,
        |o| offering(base, o),
        |page| {
            q.fields.get("service_broker").map(
                |keys| json!({"service_brokers": brokers_of(page.iter().map(|(_, o)| *o), keys)}),
            )
        },
    ))
}

/// `GET /v3/service_offerings/:guid`.
pub async fn get_offering(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    let q = parse_single(req.query_string(), &["fields"], OFFERINGS.includes)?;
    q.check_fields(OFFERING_FIELDS)?;
    let w = state.world();
    let o = w.services.offerings.find(&path, "Service offering")?;
    let mut body = offering(&state.base_url, o);
    if let Some(keys) = q.fields.get("service_broker") {
        body["included"] = json!({"service_brokers": brokers_of([o], keys)});
    }
    ok(&body)
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

fn plans_included(
    base: &str,
    w: &World,
    q: &ListQuery,
    page: &[(u64, &ServicePlan)],
) -> Option<Value> {
    let mut included = Map::new();
    let offerings = || {
        sorted_unique(
            page.iter()
                .filter_map(|(_, p)| w.services.offerings.get(&p.offering_guid)),
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
    q.check_fields(PLAN_FIELDS)?;
    let available = q.available()?;
    let w = state.world();
    let s = &w.services;
    let (names, ids, offering_guids, offering_names, broker_guids, broker_names) = (
        Filter::of(&q, "names"),
        Filter::of(&q, "broker_catalog_ids"),
        Filter::of(&q, "service_offering_guids"),
        Filter::of(&q, "service_offering_names"),
        Filter::of(&q, "service_broker_guids"),
        Filter::of(&q, "service_broker_names"),
    );
    let of_instances: Option<HashSet<&str>> = q.filter("service_instance_guids").map(|guids| {
        guids
            .iter()
            .filter_map(|g| s.instances.get(g))
            .map(|i| i.plan_guid.as_str())
            .collect()
    });
    let mut rows = candidates(&s.plans, &q);
    rows.retain(|(_, p)| {
        let offering = s.offering_of(p);
        available
            && names.keeps(&p.name)
            && ids.keeps(&p.broker_catalog_id)
            && offering_guids.keeps(&p.offering_guid)
            && offering_names.keeps_some(offering.map(|o| o.name.as_str()))
            && broker_guids.keeps_some(offering.map(|o| o.broker_guid.as_str()))
            && broker_names.keeps_some(offering.map(|o| o.broker_name.as_str()))
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
    let q = parse_single(req.query_string(), &["include", "fields"], PLANS.includes)?;
    q.check_fields(PLAN_FIELDS)?;
    let w = state.world();
    let p = w.services.plans.find(&path, "Service plan")?;
    let mut body = plan(&state.base_url, p);
    if let Some(included) = plans_included(&state.base_url, &w, &q, &[(0, p)]) {
        body["included"] = included;
    }
    ok(&body)
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
fn instances_included(w: &World, q: &ListQuery, page: &[(u64, &ServiceInstance)]) -> Option<Value> {
    if q.fields.is_empty() {
        return None;
    }
    let s = &w.services;
    let mut included = Map::new();
    let (spaces, orgs) =
        present::spaces_and_orgs(w, page.iter().map(|(_, i)| i.space_guid.as_str()));
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
        let orgs: Vec<Value> = orgs
            .iter()
            .map(|o| pick(&json!({"guid": o.guid, "name": o.name}), keys))
            .collect();
        included.insert("organizations".into(), Value::Array(orgs));
    }
    let plans = sorted_unique(page.iter().filter_map(|(_, i)| s.plan_of(i)));
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
    q.check_fields(INSTANCE_FIELDS)?;
    q.check_one_of("type", &["managed", "user-provided"])?;
    let w = state.world();
    let s = &w.services;
    let (names, types, spaces, orgs, plan_guids, plan_names) = (
        Filter::of(&q, "names"),
        Filter::of(&q, "type"),
        Filter::of(&q, "space_guids"),
        Filter::of(&q, "organization_guids"),
        Filter::of(&q, "service_plan_guids"),
        Filter::of(&q, "service_plan_names"),
    );
    let mut rows = candidates(&s.instances, &q);
    rows.retain(|(_, i)| {
        names.keeps(&i.name)
            && types.keeps("managed")
            && spaces.keeps(&i.space_guid)
            && orgs.keeps_some(w.org_of_space(&i.space_guid))
            && plan_guids.keeps(&i.plan_guid)
            && plan_names.keeps_some(s.plan_of(i).map(|p| p.name.as_str()))
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
    let q = parse_single(req.query_string(), &["fields"], INSTANCES.includes)?;
    q.check_fields(INSTANCE_FIELDS)?;
    let w = state.world();
    let i = w.services.instances.find(&path, "Service instance")?;
    let mut body = instance(&state.base_url, i);
    if let Some(included) = instances_included(&w, &q, &[(0, i)]) {
        body["included"] = included;
    }
    ok(&body)
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
    page: &[(u64, &CredentialBinding)],
) -> Option<Value> {
    let mut included = Map::new();
    if q.includes("app") {
        let apps = sorted_unique(
            page.iter()
                .filter_map(|(_, b)| w.apps.get(b.app_guid.as_deref()?)),
        );
        included.insert(
            "apps".into(),
            apps.iter().map(|a| present::app(base, a)).collect(),
        );
    }
    if q.includes("service_instance") {
        let instances = sorted_unique(
            page.iter()
                .filter_map(|(_, b)| w.services.instances.get(&b.instance_guid)),
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
    q.check_one_of("type", &["app", "key"])?;
    let w = state.world();
    let s = &w.services;
    let (names, types, instance_guids, instance_names, app_guids, app_names) = (
        Filter::of(&q, "names"),
        Filter::of(&q, "type"),
        Filter::of(&q, "service_instance_guids"),
        Filter::of(&q, "service_instance_names"),
        Filter::of(&q, "app_guids"),
        Filter::of(&q, "app_names"),
    );
    let (plan_guids, plan_names, offering_guids, offering_names) = (
        Filter::of(&q, "service_plan_guids"),
        Filter::of(&q, "service_plan_names"),
        Filter::of(&q, "service_offering_guids"),
        Filter::of(&q, "service_offering_names"),
    );
    let mut rows = candidates(&s.bindings, &q);
    rows.retain(|(_, b)| {
        let instance = s.instances.get(&b.instance_guid);
        let plan = instance.and_then(|i| s.plan_of(i));
        let offering = plan.and_then(|p| s.offering_of(p));
        let app = b.app_guid.as_deref().and_then(|g| w.apps.get(g));
        names.keeps_some(b.name.as_deref())
            && types.keeps(b.binding_type.as_str())
            && instance_guids.keeps(&b.instance_guid)
            && instance_names.keeps_some(instance.map(|i| i.name.as_str()))
            && app_guids.keeps_some(b.app_guid.as_deref())
            && app_names.keeps_some(app.map(|a| a.name.as_str()))
            && plan_guids.keeps_some(plan.map(|p| p.guid.as_str()))
            && plan_names.keeps_some(plan.map(|p| p.name.as_str()))
            && offering_guids.keeps_some(offering.map(|o| o.guid.as_str()))
            && offering_names.keeps_some(offering.map(|o| o.name.as_str()))
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
    let q = parse_single(req.query_string(), &["include"], BINDINGS.includes)?;
    let w = state.world();
    let b = w
        .services
        .bindings
        .find(&path, "Service credential binding")?;
    let mut body = binding(&state.base_url, b);
    if let Some(included) = bindings_included(&state.base_url, &w, &q, &[(0, b)]) {
        body["included"] = included;
    }
    ok(&body)
}
