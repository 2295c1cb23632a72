//! The control API for services: record a broker's service offering and plans, service
//! instances and credential bindings as an old broker and the platform left them (no
//! broker is called).

use actix_web::{HttpResponse, web};
use serde_json::{Value, json};

use crate::http::{CcResult, control_body, json_response};
use crate::present::services::{binding, instance, offering, plan};
use crate::state::Data;
use crate::world::service_changes::{NewCredentialBinding, NewOffering, NewServiceInstance};

/// The control endpoints for services (served by `GET /sim` with the others).
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

/// `POST /sim/service_offerings`.
pub async fn create_offering(state: Data, bytes: web::Bytes) -> CcResult {
    let new: NewOffering = control_body(&bytes)?;
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
    let new: NewServiceInstance = control_body(&bytes)?;
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
    let new: NewCredentialBinding = control_body(&bytes)?;
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
