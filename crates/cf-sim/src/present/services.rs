//! Service offering, plan, instance and credential binding JSON, shaped like CCNG's
//! presenters (`app/presenters/v3/service_*`).

use serde_json::{Map, Value, json};

use super::{href, metadata};
use crate::util::format_ts;
use crate::world::{
    CredentialBinding, LastOperation, ServiceInstance, ServiceOffering, ServicePlan,
};

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
        "metadata": metadata(None),
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
        "metadata": metadata(None),
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
        "metadata": metadata(None),
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
        "metadata": metadata(None),
        "relationships": relationships,
        "links": links,
    })
}
