//! The control API under `/sim`: no authentication, JSON in and out. Mutations go
//! through the same [`World`](crate::world::World) methods as the CC API, so they record
//! the same audit events (actor: the admin user). Errors use the CC error shape.

use std::collections::BTreeMap;

use actix_web::{HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::CcError;
use crate::http::{CcResult, control_body as body, json_response, ok};
use crate::present;
use crate::seed::{SeedSpec, demo, seed};
use crate::state::{Data, FaultSpec, SimState};
use crate::util::{now, random_guid};
use crate::world::{AppState, NewApp, Org, Space};

pub mod services;

/// Every control endpoint with a one-line description (served by `GET /sim`).
pub const ENDPOINTS: &[(&str, &str)] = &[
    (
        "GET /sim",
        "this index, plus the size of the world and router_url (null unless --router-listen)",
    ),
    ("POST /sim/orgs", "{name, guid?} → org"),
    ("POST /sim/spaces", "{name, org_guid, guid?} → space"),
    (
        "POST /sim/apps",
        "{name, space_guid, state?: STARTED|STOPPED, instances?: 1, labels?: {..}, command?, guid?} → app (audit.app.create, audit.app.start)",
    ),
    (
        "POST /sim/routes",
        "{host, domain?: name (default the apps domain), path?: \"\", app_guid?, space_guid?} → route; app_guid maps it to the app's web process (audit.app.map-route)",
    ),
    (
        "POST /sim/routes/:guid/destinations",
        "{app_guid} → route (audit.app.map-route)",
    ),
    (
        "DELETE /sim/routes/:guid/destinations/:app_guid",
        "→ route (audit.app.unmap-route)",
    ),
    (
        "POST /sim/apps/:guid/scale",
        "{instances} → process (audit.app.process.scale)",
    ),
    ("POST /sim/apps/:guid/stop", "→ app (audit.app.stop)"),
    ("POST /sim/apps/:guid/start", "→ app (audit.app.start)"),
    (
        "POST /sim/apps/:guid/rename",
        "{name} → app (audit.app.update)",
    ),
    (
        "DELETE /sim/apps/:guid",
        "→ {job_guid}; app, processes and route destinations go at once (audit.app.unmap-route, audit.app.process.delete, audit.app.delete-request)",
    ),
    (
        "POST /sim/apps/:guid/rolling-deploy",
        "{instances?} → the new, second web process (audit.app.deployment.create, audit.app.process.create)",
    ),
    (
        "POST /sim/apps/:guid/rolling-deploy/finish",
        "→ the surviving web process; older web processes go (audit.app.process.delete)",
    ),
    (
        "POST /sim/seed",
        "{apps: N, spaces?: M, orgs?: K} → counts; deterministic guids and names (app-00001, space-0001, org-01)",
    ),
    ("POST /sim/demo", "→ guids of the demo org, space and apps"),
    ("GET /sim/faults", "→ active faults"),
    (
        "POST /sim/faults",
        "{path_prefix, method?, status?, count?: 1 (0 = until cleared), retry_after?, delay_ms?, body?} → {id}",
    ),
    ("DELETE /sim/faults", "clear all faults"),
    (
        "POST /sim/uaa/revoke",
        "every token issued so far becomes invalid",
    ),
    (
        "POST /sim/uaa/down",
        "{down: bool}: UAA endpoints answer 503 while down",
    ),
    (
        "GET /sim/requests",
        "{total_cc, total_uaa, rate_limited, by_endpoint: {\"GET /v3/apps\": n, ...}} (control calls only in by_endpoint; rate_limited: 429s of the rate limiter)",
    ),
    ("DELETE /sim/requests", "reset the request counters"),
    (
        "POST /sim/apps/:guid/metrics-auth",
        "{required?: bool, tokens?: [string]} → {app_guid, required, tokens: n}; whether the app's instances answer 401 (through the router) without the right `Authorization` (default true), which is `Bearer <app guid>`, or `Bearer <t>` for any t in `tokens` when given (the tokens of its bindings' credentials); each call replaces the app's settings",
    ),
    (
        "GET /sim/router/requests",
        "{total, requests: [{app_guid, instance_index, path, status, host, method, count}, ...]}: requests through the router (--router-listen); app_guid/instance_index null when the router answered alone",
    ),
    (
        "DELETE /sim/router/requests",
        "reset the router request counters (instances keep their scrape counters)",
    ),
    (
        "POST /sim/reset",
        "{empty?: false}: world, faults, counters, rate limits, router state (request and scrape counters, metrics-auth settings) and UAA back to start-up state (empty: no seed/demo); tokens stay valid",
    ),
];

fn created(v: &Value) -> CcResult {
    Ok(json_response(201, v))
}

/// `GET /sim`.
pub async fn index(state: Data) -> HttpResponse {
    let (down, issued) = {
        let uaa = state.uaa();
        (uaa.down, uaa.issued_count)
    };
    let w = state.world();
    let endpoints: BTreeMap<&str, &str> = ENDPOINTS
        .iter()
        .chain(services::ENDPOINTS)
        .copied()
        .collect();
    json_response(
        200,
        &json!({
            "base_url": state.base_url,
            "router_url": state.router_url,
            "endpoints": endpoints,
            "world": {
                "organizations": w.orgs.len(),
                "spaces": w.spaces.len(),
                "apps": w.apps.len(),
                "processes": w.processes.len(),
                "routes": w.routes.len(),
                "domains": w.domains.len(),
                "audit_events": w.events.len(),
                "service_offerings": w.services.offerings.len(),
                "service_instances": w.services.instances.len(),
                "service_credential_bindings": w.services.bindings.len(),
            },
            "uaa": {"down": down, "tokens_issued": issued},
            "rate_limit": {"limit": state.config.rate_limit, "window_seconds": state.config.rate_limit_window},
        }),
    )
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewOrg {
    name: String,
    guid: Option<String>,
}

/// `POST /sim/orgs`.
pub async fn create_org(state: Data, bytes: web::Bytes) -> CcResult {
    let b: NewOrg = body(&bytes)?;
    let mut w = state.world_mut();
    if w.orgs.iter().any(|o| o.name == b.name) {
        return Err(CcError::unprocessable(format!(
            "Organization '{}' already exists.",
            b.name
        )));
    }
    let guid = b.guid.unwrap_or_else(random_guid);
    if w.orgs.contains(&guid) {
        return Err(CcError::unprocessable(format!("guid '{guid}' is taken")));
    }
    let at = now();
    let org = Org {
        guid,
        name: b.name,
        created_at: at,
        updated_at: at,
    };
    let v = present::org(&state.base_url, &org);
    w.add_org(org);
    created(&v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewSpace {
    name: String,
    org_guid: String,
    guid: Option<String>,
}

/// `POST /sim/spaces`.
pub async fn create_space(state: Data, bytes: web::Bytes) -> CcResult {
    let b: NewSpace = body(&bytes)?;
    let mut w = state.world_mut();
    if !w.orgs.contains(&b.org_guid) {
        return Err(CcError::unprocessable("Invalid organization."));
    }
    if w.spaces
        .iter()
        .any(|s| s.org_guid == b.org_guid && s.name == b.name)
    {
        return Err(CcError::unprocessable(format!(
            "Name must be unique per organization: '{}'",
            b.name
        )));
    }
    let guid = b.guid.unwrap_or_else(random_guid);
    if w.spaces.contains(&guid) {
        return Err(CcError::unprocessable(format!("guid '{guid}' is taken")));
    }
    let at = now();
    let space = Space {
        guid,
        name: b.name,
        org_guid: b.org_guid,
        created_at: at,
        updated_at: at,
    };
    let v = present::space(&state.base_url, &space);
    w.add_space(space);
    created(&v)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewAppBody {
    name: String,
    space_guid: String,
    state: Option<String>,
    instances: Option<u32>,
    labels: Option<BTreeMap<String, String>>,
    command: Option<String>,
    guid: Option<String>,
}

/// `POST /sim/apps`.
pub async fn create_app(state: Data, bytes: web::Bytes) -> CcResult {
    let b: NewAppBody = body(&bytes)?;
    let app_state = match b.state.as_deref() {
        None => AppState::Started,
        Some(s) => AppState::parse(s)
            .ok_or_else(|| CcError::unprocessable("state must be STARTED or STOPPED"))?,
    };
    let actor = state.control_actor();
    let mut w = state.world_mut();
    let guid = w.create_app(
        NewApp {
            guid: b.guid,
            name: b.name,
            space_guid: b.space_guid,
            state: app_state,
            instances: b.instances.unwrap_or(1),
            labels: b.labels.unwrap_or_default(),
            command: b.command,
        },
        &actor,
    )?;
    created(&present::app(&state.base_url, w.app(&guid)?))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewRoute {
    host: String,
    domain: Option<String>,
    path: Option<String>,
    app_guid: Option<String>,
    space_guid: Option<String>,
}

/// `POST /sim/routes`.
pub async fn create_route(state: Data, bytes: web::Bytes) -> CcResult {
    let b: NewRoute = body(&bytes)?;
    let actor = state.control_actor();
    let mut w = state.world_mut();
    let domain_guid = match &b.domain {
        None => w.apps_domain_guid.clone(),
        Some(name) => w
            .domain_by_name(name)
            .map(|d| d.guid.clone())
            .ok_or_else(|| CcError::unprocessable(format!("No domain named '{name}'")))?,
    };
    let space_guid = match (&b.space_guid, &b.app_guid) {
        (Some(s), _) => s.clone(),
        (None, Some(app)) => w.app(app)?.space_guid.clone(),
        (None, None) => {
            return Err(CcError::unprocessable(
                "A route needs an app_guid or a space_guid",
            ));
        }
    };
    if let Some(app) = &b.app_guid {
        w.app(app)?;
    }
    let guid = w.create_route(
        &b.host,
        b.path.as_deref().unwrap_or(""),
        &domain_guid,
        &space_guid,
    )?;
    if let Some(app) = &b.app_guid {
        w.map_route(&guid, app, &actor)?;
    }
    let route = w.routes.get(&guid).expect("just created");
    created(&present::route(&state.base_url, &w, route))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct AppGuid {
    app_guid: String,
}

fn route_json(state: &SimState, guid: &str) -> CcResult {
    let w = state.world();
    let route = w.routes.find(guid, "Route")?;
    ok(&present::route(&state.base_url, &w, route))
}

/// `POST /sim/routes/:guid/destinations`.
pub async fn map_route(state: Data, path: web::Path<String>, bytes: web::Bytes) -> CcResult {
    let b: AppGuid = body(&bytes)?;
    let actor = state.control_actor();
    state.world_mut().map_route(&path, &b.app_guid, &actor)?;
    route_json(&state, &path)
}

/// `DELETE /sim/routes/:guid/destinations/:app_guid`.
pub async fn unmap_route(state: Data, path: web::Path<(String, String)>) -> CcResult {
    let (route, app) = path.into_inner();
    let actor = state.control_actor();
    state.world_mut().unmap_route(&route, &app, &actor)?;
    route_json(&state, &route)
}

fn app_json(state: &SimState, guid: &str) -> CcResult {
    let w = state.world();
    ok(&present::app(&state.base_url, w.app(guid)?))
}

fn process_json(state: &SimState, guid: &str) -> CcResult {
    let w = state.world();
    let p = w.processes.find(guid, "Process")?;
    ok(&present::process(&state.base_url, &w, p, false))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Instances {
    instances: u32,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct OptionalInstances {
    instances: Option<u32>,
}

/// `POST /sim/apps/:guid/scale`.
pub async fn scale(state: Data, path: web::Path<String>, bytes: web::Bytes) -> CcResult {
    let b: Instances = body(&bytes)?;
    let actor = state.control_actor();
    let process = state
        .world_mut()
        .scale_app_process(&path, "web", b.instances, &actor)?;
    process_json(&state, &process)
}

/// `POST /sim/apps/:guid/stop`.
pub async fn stop(state: Data, path: web::Path<String>) -> CcResult {
    let actor = state.control_actor();
    state.world_mut().stop_app(&path, &actor)?;
    app_json(&state, &path)
}

/// `POST /sim/apps/:guid/start`.
pub async fn start(state: Data, path: web::Path<String>) -> CcResult {
    let actor = state.control_actor();
    state.world_mut().start_app(&path, &actor)?;
    app_json(&state, &path)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Rename {
    name: String,
}

/// `POST /sim/apps/:guid/rename`.
pub async fn rename(state: Data, path: web::Path<String>, bytes: web::Bytes) -> CcResult {
    let b: Rename = body(&bytes)?;
    let actor = state.control_actor();
    state.world_mut().rename_app(&path, &b.name, &actor)?;
    app_json(&state, &path)
}

/// `DELETE /sim/apps/:guid`.
pub async fn delete(state: Data, path: web::Path<String>) -> CcResult {
    let actor = state.control_actor();
    let job = state.world_mut().delete_app(&path, &actor)?;
    ok(&json!({"deleted": path.as_str(), "job_guid": job}))
}

/// `POST /sim/apps/:guid/rolling-deploy`.
pub async fn rolling_deploy(state: Data, path: web::Path<String>, bytes: web::Bytes) -> CcResult {
    let b: OptionalInstances = body(&bytes)?;
    let actor = state.control_actor();
    let process = state
        .world_mut()
        .rolling_deploy(&path, b.instances, &actor)?;
    process_json(&state, &process)
}

/// `POST /sim/apps/:guid/rolling-deploy/finish`.
pub async fn finish_rolling_deploy(state: Data, path: web::Path<String>) -> CcResult {
    let actor = state.control_actor();
    let process = state.world_mut().finish_rolling_deploy(&path, &actor)?;
    process_json(&state, &process)
}

/// `POST /sim/seed`.
pub async fn seed_world(state: Data, bytes: web::Bytes) -> CcResult {
    let spec: SeedSpec = body(&bytes)?;
    let started = std::time::Instant::now();
    let summary = seed(&mut state.world_mut(), spec)?;
    tracing::info!(
        apps = spec.apps,
        elapsed_ms = started.elapsed().as_millis() as u64,
        "seeded"
    );
    ok(&summary)
}

/// `POST /sim/demo`.
pub async fn demo_world(state: Data) -> CcResult {
    ok(&demo(&mut state.world_mut())?)
}

/// `GET /sim/faults`.
pub async fn list_faults(state: Data) -> HttpResponse {
    json_response(200, &json!({"faults": state.faults().to_json()}))
}

/// `POST /sim/faults`.
pub async fn add_fault(state: Data, bytes: web::Bytes) -> CcResult {
    let spec: FaultSpec = body(&bytes)?;
    let id = state.faults().add(spec)?;
    created(&json!({"id": id}))
}

/// `DELETE /sim/faults`.
pub async fn clear_faults(state: Data) -> HttpResponse {
    json_response(200, &json!({"cleared": state.faults().clear()}))
}

/// `POST /sim/uaa/revoke`.
pub async fn revoke(state: Data) -> HttpResponse {
    let n = state.uaa().revoke_all();
    json_response(200, &json!({"revoked": n}))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct Down {
    down: bool,
}

/// `POST /sim/uaa/down`.
pub async fn uaa_down(state: Data, bytes: web::Bytes) -> CcResult {
    let b: Down = body(&bytes)?;
    state.uaa().down = b.down;
    ok(&json!({"down": b.down}))
}

/// `GET /sim/requests`.
pub async fn requests(state: Data) -> HttpResponse {
    json_response(200, &state.counters().to_json())
}

/// `DELETE /sim/requests`.
pub async fn reset_requests(state: Data) -> HttpResponse {
    *state.counters() = Default::default();
    json_response(200, &state.counters().to_json())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct MetricsAuth {
    #[serde(default = "yes")]
    required: bool,
    tokens: Option<Vec<String>>,
}

fn yes() -> bool {
    true
}

/// `POST /sim/apps/:guid/metrics-auth`.
pub async fn metrics_auth(state: Data, path: web::Path<String>, bytes: web::Bytes) -> CcResult {
    let b: MetricsAuth = body(&bytes)?;
    state.world().app(&path)?;
    let tokens = b.tokens.as_ref().map_or(0, Vec::len);
    state.router().set_metrics_auth(&path, b.required, b.tokens);
    // The tokens are counted, not echoed: they are the app's secrets.
    ok(&json!({"app_guid": path.as_str(), "required": b.required, "tokens": tokens}))
}

/// `GET /sim/router/requests`.
pub async fn router_requests(state: Data) -> HttpResponse {
    json_response(200, &state.router().requests_json())
}

/// `DELETE /sim/router/requests`.
pub async fn reset_router_requests(state: Data) -> HttpResponse {
    let mut router = state.router();
    router.reset_requests();
    json_response(200, &router.requests_json())
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct Reset {
    #[serde(default)]
    empty: bool,
}

/// `POST /sim/reset`.
pub async fn reset(state: Data, bytes: web::Bytes) -> CcResult {
    let b: Reset = body(&bytes)?;
    state.reset(b.empty)?;
    ok(&json!({"reset": true, "empty": b.empty}))
}
