//! Cloud Controller v3 handlers. Authentication, scope checks and rate limiting happen
//! in middleware (`server.rs`); handlers find the caller's [`Identity`] in the request
//! extensions.

use std::collections::{BTreeMap, HashSet};

use actix_web::http::header;
use actix_web::{HttpMessage, HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::CcError;
use crate::present;
use crate::query::{ListQuery, ListSpec, OrderBy, parse_single};
use crate::state::SimState;
use crate::uaa::Identity;
use crate::world::{App, Domain, Event, Org, Process, Route, Space, Table, World};

/// The CC API version advertised at `/` and `/v3`.
pub const CC_V3_VERSION: &str = "3.190.0";

type Data = web::Data<SimState>;
type CcResult = Result<HttpResponse, CcError>;

pub fn json_response(status: u16, body: &Value) -> HttpResponse {
    let status =
        actix_web::http::StatusCode::from_u16(status).unwrap_or(actix_web::http::StatusCode::OK);
    HttpResponse::build(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_vec(body).expect("serialising JSON cannot fail"))
}

fn ok(body: &Value) -> CcResult {
    Ok(json_response(200, body))
}

/// The caller, put there by the CC auth middleware.
fn identity(req: &HttpRequest) -> Identity {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .expect("CC auth middleware runs before every /v3 handler")
}

fn parse_body<T: for<'de> Deserialize<'de>>(body: &[u8]) -> Result<T, CcError> {
    let body = if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    };
    serde_json::from_slice(body).map_err(|e| {
        if e.is_data() {
            CcError::unprocessable(e.to_string())
        } else {
            CcError::message_parse(e.to_string())
        }
    })
}

// ---------------------------------------------------------------- roots

/// `GET /`: the CC root, UAA and login on this same server, no v2 link (v2 disabled).
pub async fn root(state: Data) -> HttpResponse {
    let base = &state.base_url;
    json_response(
        200,
        &json!({"links": {
            "self": {"href": base},
            "bits_service": null,
            "cloud_controller_v3": {"href": format!("{base}/v3"), "meta": {"version": CC_V3_VERSION}},
            "network_policy_v0": {"href": format!("{base}/networking/v0/external")},
            "network_policy_v1": {"href": format!("{base}/networking/v1/external")},
            "login": {"href": base},
            "uaa": {"href": base},
            "credhub": null,
            "routing": null,
            "logging": null,
            "log_cache": null,
            "log_stream": null,
            "app_ssh": null,
        }}),
    )
}

/// `GET /v3`.
pub async fn v3_root(state: Data) -> HttpResponse {
    let v3 = format!("{}/v3", state.base_url);
    let links: serde_json::Map<String, Value> = [
        "apps",
        "audit_events",
        "domains",
        "jobs",
        "organizations",
        "processes",
        "routes",
        "spaces",
    ]
    .iter()
    .map(|r| (r.to_string(), json!({"href": format!("{v3}/{r}")})))
    .chain([("self".to_string(), json!({"href": v3}))])
    .collect();
    json_response(200, &json!({"links": links}))
}

/// `GET /v2/info`: nginx lets it through even with v2 disabled.
pub async fn v2_info(state: Data) -> HttpResponse {
    let base = &state.base_url;
    json_response(
        200,
        &json!({
            "name": "cf-sim",
            "build": "",
            "support": "CF API v2 is disabled",
            "version": 0,
            "description": "Cloud Foundry simulator",
            "authorization_endpoint": base,
            "token_endpoint": base,
            "min_cli_version": null,
            "min_recommended_cli_version": null,
            "app_ssh_endpoint": null,
            "app_ssh_host_key_fingerprint": null,
            "app_ssh_oauth_client": "ssh-proxy",
            "doppler_logging_endpoint": null,
            "api_version": "",
            "osbapi_version": "2.15",
        }),
    )
}

/// Any other `/v2/*`: capi-release's nginx answers 404 when v2 is disabled.
pub async fn v2_disabled() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("404 Not Found\n")
}

/// Unknown `/v3/...` endpoint.
pub async fn v3_unknown() -> HttpResponse {
    actix_web::ResponseError::error_response(&CcError::unknown_request())
}

// ---------------------------------------------------------------- list plumbing

/// Fields every listed resource has.
trait Listed {
    fn created_at(&self) -> i64;
    fn updated_at(&self) -> i64;
    fn sort_name(&self) -> &str {
        ""
    }
    fn sort_state(&self) -> &str {
        ""
    }
    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        None
    }
}

macro_rules! listed {
    ($t:ty, created: $c:ident, updated: $u:ident $(, name: $n:ident)?) => {
        impl Listed for $t {
            fn created_at(&self) -> i64 { self.$c }
            fn updated_at(&self) -> i64 { self.$u }
            $(fn sort_name(&self) -> &str { &self.$n })?
        }
    };
}

impl Listed for App {
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn updated_at(&self) -> i64 {
        self.updated_at
    }
    fn sort_name(&self) -> &str {
        &self.name
    }
    fn sort_state(&self) -> &str {
        self.state.as_str()
    }
    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.labels)
    }
}
listed!(Process, created: created_at, updated: updated_at);
listed!(Route, created: created_at, updated: updated_at);
listed!(Domain, created: created_at, updated: updated_at, name: name);
listed!(Space, created: created_at, updated: updated_at, name: name);
listed!(Org, created: created_at, updated: updated_at, name: name);
listed!(Event, created: created_at, updated: created_at);

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Rows in creation order: only the named ones when a `guids` filter is given (O(k)),
/// else all of them (O(n)); then the common filters (`label_selector`, timestamps).
fn candidates<'a, T: Listed>(table: &'a Table<T>, q: &ListQuery) -> Vec<(u64, &'a T)> {
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
    if !q.label_selector.is_empty() || !q.timestamps.is_empty() {
        rows.retain(|(_, r)| {
            q.labels_match(r.labels().unwrap_or(&NO_LABELS))
                && q.timestamps_match(r.created_at(), r.updated_at())
        });
    }
    rows
}

fn order<T: Listed>(rows: &mut [(u64, &T)], order_by: &Option<OrderBy>) {
    let Some(o) = order_by else {
        return; // creation order
    };
    match o.field.as_str() {
        "created_at" => rows.sort_by_key(|(s, r)| (r.created_at(), *s)),
        "updated_at" => rows.sort_by_key(|(s, r)| (r.updated_at(), *s)),
        "name" => rows.sort_by(|a, b| (a.1.sort_name(), a.0).cmp(&(b.1.sort_name(), b.0))),
        "state" => rows.sort_by(|a, b| (a.1.sort_state(), a.0).cmp(&(b.1.sort_state(), b.0))),
        _ => {}
    }
    if o.descending {
        rows.reverse();
    }
}

/// Orders, paginates and presents; `included` gets the page's rows.
fn list_response<'a, T: Listed>(
    q: &ListQuery,
    url: &str,
    mut rows: Vec<(u64, &'a T)>,
    present: impl Fn(&T) -> Value,
    included: impl FnOnce(&[(u64, &'a T)]) -> Option<Value>,
) -> HttpResponse {
    order(&mut rows, &q.order_by);
    let (page, pagination) = q.paginate(&rows, url);
    let mut body = json!({
        "pagination": pagination,
        "resources": page.iter().map(|(_, r)| present(r)).collect::<Vec<_>>(),
    });
    if let Some(inc) = included(page) {
        body["included"] = inc;
    }
    json_response(200, &body)
}

/// [`list_response`] for the big lists a reconciler reads every pass (apps, processes,
/// routes): the page's resources come serialised from [`SimState::presented`] and the
/// body is written around them. The same JSON as `list_response` would give.
#[allow(clippy::too_many_arguments)]
fn cached_list_response<'a, T: Listed>(
    state: &SimState,
    generation: u64,
    kind: &'static str,
    q: &ListQuery,
    url: &str,
    mut rows: Vec<(u64, &'a T)>,
    guid: impl Fn(&T) -> &str,
    present: impl Fn(&T) -> Value,
    included: impl FnOnce(&[(u64, &'a T)]) -> Option<Value>,
) -> HttpResponse {
    order(&mut rows, &q.order_by);
    let (page, pagination) = q.paginate(&rows, url);
    let items = state.presented(generation, kind, page, guid, present);
    let included = included(page);
    let mut body = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 1024);
    let write = |body: &mut Vec<u8>, value: &Value| {
        serde_json::to_writer(body, value).expect("serialising JSON cannot fail")
    };
    body.extend_from_slice(b"{\"pagination\":");
    write(&mut body, &pagination);
    body.extend_from_slice(b",\"resources\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item.as_bytes());
    }
    body.push(b']');
    if let Some(included) = included {
        body.extend_from_slice(b",\"included\":");
        write(&mut body, &included);
    }
    body.push(b'}');
    HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(body)
}

fn set(q: &ListQuery, name: &str) -> Option<HashSet<String>> {
    q.filter(name)
        .map(|vs| vs.iter().cloned().collect::<HashSet<_>>())
}

fn contains(set: &Option<HashSet<String>>, value: &str) -> bool {
    set.as_ref().is_none_or(|s| s.contains(value))
}

// ---------------------------------------------------------------- apps

const APPS: ListSpec = ListSpec {
    params: &[
        "guids",
        "names",
        "space_guids",
        "organization_guids",
        "stacks",
        "lifecycle_type",
        "label_selector",
        "created_ats",
        "updated_ats",
        "page",
        "per_page",
        "order_by",
        "include",
    ],
    order_by: &["created_at", "updated_at", "name", "state"],
    includes: &["space", "space.organization", "org"],
};

fn app_included(q: &ListQuery) -> (bool, bool) {
    (
        q.includes("space") || q.includes("space.organization"),
        q.includes("space.organization") || q.includes("org"),
    )
}

/// `GET /v3/apps`.
pub async fn list_apps(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &APPS)?;
    let w = state.world();
    let generation = state.world_generation();
    let base = &state.base_url;
    let names: Option<HashSet<String>> = q
        .filter("names")
        .map(|vs| vs.iter().map(|n| n.to_lowercase()).collect());
    let (spaces, orgs) = (set(&q, "space_guids"), set(&q, "organization_guids"));
    let stack_ok = contains(&set(&q, "stacks"), "cflinuxfs4");
    let lifecycle_ok = contains(&set(&q, "lifecycle_type"), "buildpack");
    let mut rows = candidates(&w.apps, &q);
    rows.retain(|(_, a)| {
        stack_ok
            && lifecycle_ok
            && names
                .as_ref()
                .is_none_or(|n| n.contains(&a.name.to_lowercase()))
            && contains(&spaces, &a.space_guid)
            && (orgs.is_none() || contains(&orgs, w.org_of_space(&a.space_guid).unwrap_or("")))
    });
    let (with_spaces, with_orgs) = app_included(&q);
    Ok(cached_list_response(
        &state,
        generation,
        "app",
        &q,
        &format!("{base}/v3/apps"),
        rows,
        |a| a.guid.as_str(),
        |a| present::app(base, a),
        |page| {
            (with_spaces || with_orgs).then(|| {
                present::included_spaces_and_orgs(
                    base,
                    &w,
                    page.iter().map(|(_, a)| a.space_guid.as_str()),
                    with_spaces,
                    with_orgs,
                )
            })
        },
    ))
}

/// `GET /v3/apps/:guid` (accepts `include`; `included` sits at top level).
pub async fn get_app(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    let include = parse_single(req.query_string(), APPS.includes)?;
    let w = state.world();
    let app = w.app(&path)?;
    let mut body = present::app(&state.base_url, app);
    let with_spaces = include
        .iter()
        .any(|i| i == "space" || i == "space.organization");
    let with_orgs = include
        .iter()
        .any(|i| i == "space.organization" || i == "org");
    if with_spaces || with_orgs {
        body["included"] = present::included_spaces_and_orgs(
            &state.base_url,
            &w,
            [app.space_guid.as_str()],
            with_spaces,
            with_orgs,
        );
    }
    ok(&body)
}

fn app_body(state: &SimState, guid: &str) -> CcResult {
    let w = state.world();
    ok(&present::app(&state.base_url, w.app(guid)?))
}

/// `POST /v3/apps/:guid/actions/start`.
pub async fn start_app(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    state
        .world_mut()
        .start_app(&path, &identity(&req).actor())?;
    app_body(&state, &path)
}

/// `POST /v3/apps/:guid/actions/stop`.
pub async fn stop_app(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    state.world_mut().stop_app(&path, &identity(&req).actor())?;
    app_body(&state, &path)
}

#[derive(Deserialize)]
struct AppPatch {
    name: Option<String>,
    metadata: Option<MetadataPatch>,
    #[serde(rename = "lifecycle")]
    _lifecycle: Option<Value>,
}

#[derive(Deserialize)]
struct MetadataPatch {
    labels: Option<BTreeMap<String, Option<String>>>,
    #[serde(rename = "annotations")]
    _annotations: Option<Value>,
}

/// `PATCH /v3/apps/:guid` (`name`, `metadata.labels`).
pub async fn update_app(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> CcResult {
    let patch: AppPatch = parse_body(&body)?;
    let labels = patch.metadata.and_then(|m| m.labels);
    state.world_mut().update_app(
        &path,
        patch.name.as_deref(),
        labels.as_ref(),
        &identity(&req).actor(),
    )?;
    app_body(&state, &path)
}

/// `DELETE /v3/apps/:guid`: 202 with `Location` of a COMPLETE job; gone at once.
pub async fn delete_app(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    let job = state
        .world_mut()
        .delete_app(&path, &identity(&req).actor())?;
    Ok(HttpResponse::Accepted()
        .insert_header((
            header::LOCATION,
            format!("{}/v3/jobs/{job}", state.base_url),
        ))
        .finish())
}

/// `GET /v3/jobs/:guid`.
pub async fn get_job(state: Data, path: web::Path<String>) -> CcResult {
    let w = state.world();
    let job = w
        .jobs
        .get(path.as_str())
        .ok_or_else(|| CcError::not_found("Job"))?;
    ok(&present::job(&state.base_url, job))
}

// ---------------------------------------------------------------- processes

const PROCESSES: ListSpec = ListSpec {
    params: &[
        "guids",
        "types",
        "app_guids",
        "space_guids",
        "organization_guids",
        "label_selector",
        "created_ats",
        "updated_ats",
        "page",
        "per_page",
        "order_by",
    ],
    order_by: &["created_at", "updated_at"],
    includes: &[],
};

const APP_PROCESSES: ListSpec = ListSpec {
    params: &[
        "guids",
        "types",
        "label_selector",
        "created_ats",
        "updated_ats",
        "page",
        "per_page",
        "order_by",
    ],
    order_by: &["created_at", "updated_at"],
    includes: &[],
};

fn filter_processes(w: &World, q: &ListQuery, rows: &mut Vec<(u64, &Process)>) {
    let types = set(q, "types");
    let apps = set(q, "app_guids");
    let spaces = set(q, "space_guids");
    let orgs = set(q, "organization_guids");
    rows.retain(|(_, p)| {
        if !contains(&types, &p.process_type) || !contains(&apps, &p.app_guid) {
            return false;
        }
        if spaces.is_none() && orgs.is_none() {
            return true;
        }
        let space = w.space_of_app(&p.app_guid).unwrap_or("");
        contains(&spaces, space) && contains(&orgs, w.org_of_space(space).unwrap_or(""))
    });
}

/// `GET /v3/processes` (command hidden).
pub async fn list_processes(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &PROCESSES)?;
    let w = state.world();
    let generation = state.world_generation();
    let mut rows = candidates(&w.processes, &q);
    filter_processes(&w, &q, &mut rows);
    let base = &state.base_url;
    Ok(cached_list_response(
        &state,
        generation,
        "process in a list",
        &q,
        &format!("{base}/v3/processes"),
        rows,
        |p| p.guid.as_str(),
        |p| present::process(base, &w, p, true),
        |_| None,
    ))
}

/// `GET /v3/apps/:guid/processes`.
pub async fn list_app_processes(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &APP_PROCESSES)?;
    let w = state.world();
    w.app(&path)?;
    let mut rows = candidates(&w.processes, &q);
    rows.retain(|(_, p)| p.app_guid == *path);
    filter_processes(&w, &q, &mut rows);
    let base = &state.base_url;
    Ok(list_response(
        &q,
        &format!("{base}/v3/apps/{path}/processes"),
        rows,
        |p| present::process(base, &w, p, true),
        |_| None,
    ))
}

/// `GET /v3/processes/:guid` (command shown).
pub async fn get_process(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    parse_single(req.query_string(), &[])?;
    let w = state.world();
    let p = w
        .processes
        .get(&path)
        .ok_or_else(|| CcError::not_found("Process"))?;
    ok(&present::process(&state.base_url, &w, p, false))
}

/// `GET /v3/apps/:guid/processes/:type` (the newest process of that type).
pub async fn get_app_process(
    state: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> CcResult {
    parse_single(req.query_string(), &[])?;
    let (app, process_type) = path.into_inner();
    let w = state.world();
    w.app(&app)?;
    let p = w
        .newest_process(&app, &process_type)
        .ok_or_else(|| CcError::not_found("Process"))?;
    ok(&present::process(&state.base_url, &w, p, false))
}

/// `GET /v3/processes/:guid/stats`.
pub async fn process_stats(state: Data, path: web::Path<String>) -> CcResult {
    let w = state.world();
    let p = w
        .processes
        .get(&path)
        .ok_or_else(|| CcError::not_found("Process"))?;
    ok(&present::process_stats(&w, p))
}

/// `GET /v3/apps/:guid/processes/:type/stats`.
pub async fn app_process_stats(state: Data, path: web::Path<(String, String)>) -> CcResult {
    let (app, process_type) = path.into_inner();
    let w = state.world();
    w.app(&app)?;
    let p = w
        .newest_process(&app, &process_type)
        .ok_or_else(|| CcError::not_found("Process"))?;
    ok(&present::process_stats(&w, p))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct ScaleBody {
    instances: Option<u32>,
    memory_in_mb: Option<u32>,
    disk_in_mb: Option<u32>,
    log_rate_limit_in_bytes_per_second: Option<i64>,
}

fn scale(state: &SimState, req: &HttpRequest, process_guid: &str, body: ScaleBody) -> CcResult {
    {
        let mut w = state.world_mut();
        let current = w
            .processes
            .get(process_guid)
            .ok_or_else(|| CcError::not_found("Process"))?
            .instances;
        let _ = body.log_rate_limit_in_bytes_per_second;
        w.scale_process(
            process_guid,
            body.instances.unwrap_or(current),
            &identity(req).actor(),
        )?;
        let p = w.processes.get_mut(process_guid).expect("just scaled");
        if let Some(m) = body.memory_in_mb {
            p.memory_in_mb = m;
        }
        if let Some(d) = body.disk_in_mb {
            p.disk_in_mb = d;
        }
    }
    let w = state.world();
    let p = w.processes.get(process_guid).expect("just scaled");
    Ok(json_response(
        202,
        &present::process(&state.base_url, &w, p, false),
    ))
}

/// `POST /v3/processes/:guid/actions/scale` → 202 process.
pub async fn scale_process(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> CcResult {
    scale(&state, &req, &path, parse_body(&body)?)
}

/// `POST /v3/apps/:guid/processes/:type/actions/scale` → 202 process.
pub async fn scale_app_process(
    state: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> CcResult {
    let body: ScaleBody = parse_body(&body)?;
    let (app, process_type) = path.into_inner();
    let guid = {
        let w = state.world();
        w.app(&app)?;
        w.newest_process(&app, &process_type)
            .ok_or_else(|| CcError::not_found("Process"))?
            .guid
            .clone()
    };
    scale(&state, &req, &guid, body)
}

// ---------------------------------------------------------------- routes

const ROUTES: ListSpec = ListSpec {
    params: &[
        "app_guids",
        "domain_guids",
        "hosts",
        "paths",
        "organization_guids",
        "space_guids",
        "guids",
        "label_selector",
        "created_ats",
        "updated_ats",
        "page",
        "per_page",
        "order_by",
        "include",
    ],
    order_by: &["created_at", "updated_at"],
    includes: &["domain", "space", "space.organization"],
};

const APP_ROUTES: ListSpec = ListSpec {
    params: &[
        "guids",
        "domain_guids",
        "hosts",
        "paths",
        "label_selector",
        "page",
        "per_page",
        "order_by",
    ],
    order_by: &["created_at", "updated_at"],
    includes: &[],
};

fn filter_routes(w: &World, q: &ListQuery, rows: &mut Vec<(u64, &Route)>) {
    let apps = set(q, "app_guids");
    let domains = set(q, "domain_guids");
    let hosts = set(q, "hosts");
    let paths = set(q, "paths");
    let spaces = set(q, "space_guids");
    let orgs = set(q, "organization_guids");
    rows.retain(|(_, r)| {
        contains(&domains, &r.domain_guid)
            && contains(&hosts, &r.host)
            && contains(&paths, &r.path)
            && contains(&spaces, &r.space_guid)
            && (orgs.is_none() || contains(&orgs, w.org_of_space(&r.space_guid).unwrap_or("")))
            && apps
                .as_ref()
                .is_none_or(|a| r.destinations.iter().any(|d| a.contains(&d.app_guid)))
    });
}

fn routes_included(base: &str, w: &World, q: &ListQuery, page: &[(u64, &Route)]) -> Option<Value> {
    let with_domains = q.includes("domain");
    let with_spaces = q.includes("space") || q.includes("space.organization");
    let with_orgs = q.includes("space.organization");
    if !(with_domains || with_spaces || with_orgs) {
        return None;
    }
    let mut included = present::included_spaces_and_orgs(
        base,
        w,
        page.iter().map(|(_, r)| r.space_guid.as_str()),
        with_spaces,
        with_orgs,
    );
    if with_domains {
        let mut seen = HashSet::new();
        let mut domains: Vec<&Domain> = page
            .iter()
            .filter(|(_, r)| seen.insert(r.domain_guid.as_str()))
            .filter_map(|(_, r)| w.domains.get(&r.domain_guid))
            .collect();
        domains.sort_by(|a, b| (a.created_at, &a.guid).cmp(&(b.created_at, &b.guid)));
        included["domains"] = domains.iter().map(|d| present::domain(base, d)).collect();
    }
    Some(included)
}

/// `GET /v3/routes`.
pub async fn list_routes(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &ROUTES)?;
    let w = state.world();
    let generation = state.world_generation();
    let mut rows = candidates(&w.routes, &q);
    filter_routes(&w, &q, &mut rows);
    let base = &state.base_url;
    Ok(cached_list_response(
        &state,
        generation,
        "route",
        &q,
        &format!("{base}/v3/routes"),
        rows,
        |r| r.guid.as_str(),
        |r| present::route(base, &w, r),
        |page| routes_included(base, &w, &q, page),
    ))
}

/// `GET /v3/apps/:guid/routes`: routes with a destination for the app.
pub async fn list_app_routes(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &APP_ROUTES)?;
    let w = state.world();
    w.app(&path)?;
    let mut rows = candidates(&w.routes, &q);
    rows.retain(|(_, r)| r.destinations.iter().any(|d| d.app_guid == *path));
    filter_routes(&w, &q, &mut rows);
    let base = &state.base_url;
    Ok(list_response(
        &q,
        &format!("{base}/v3/apps/{path}/routes"),
        rows,
        |r| present::route(base, &w, r),
        |_| None,
    ))
}

/// `GET /v3/routes/:guid`.
pub async fn get_route(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    let include = parse_single(
        req.query_string(),
        &["domain", "space", "space.organization"],
    )?;
    let w = state.world();
    let r = w
        .routes
        .get(&path)
        .ok_or_else(|| CcError::not_found("Route"))?;
    let mut body = present::route(&state.base_url, &w, r);
    let q = ListQuery::with_include(include);
    if let Some(inc) = routes_included(&state.base_url, &w, &q, &[(0, r)]) {
        body["included"] = inc;
    }
    ok(&body)
}

/// `GET /v3/routes/:guid/destinations`.
pub async fn get_destinations(state: Data, path: web::Path<String>) -> CcResult {
    let w = state.world();
    let r = w
        .routes
        .get(&path)
        .ok_or_else(|| CcError::not_found("Route"))?;
    ok(&present::destinations(&state.base_url, r))
}

#[derive(Deserialize)]
struct NewDestinations {
    destinations: Vec<NewDestination>,
}

#[derive(Deserialize)]
struct NewDestination {
    app: DestinationApp,
}

#[derive(Deserialize)]
struct DestinationApp {
    guid: String,
    process: Option<DestinationProcess>,
}

#[derive(Deserialize)]
struct DestinationProcess {
    #[serde(rename = "type")]
    process_type: String,
}

/// `POST /v3/routes/:guid/destinations` (map-route; `web` processes, port 8080).
pub async fn add_destinations(
    state: Data,
    req: HttpRequest,
    path: web::Path<String>,
    body: web::Bytes,
) -> CcResult {
    let body: NewDestinations = parse_body(&body)?;
    let actor = identity(&req).actor();
    {
        let mut w = state.world_mut();
        for d in &body.destinations {
            if d.app
                .process
                .as_ref()
                .is_some_and(|p| p.process_type != "web")
            {
                return Err(CcError::unprocessable(
                    "The simulator maps routes to web processes only",
                ));
            }
            if !w.apps.contains(&d.app.guid) {
                return Err(CcError::unprocessable(format!(
                    "App(s) with guid(s) \"{}\" do not exist or you do not have access.",
                    d.app.guid
                )));
            }
            w.map_route(&path, &d.app.guid, &actor)?;
        }
    }
    let w = state.world();
    let r = w
        .routes
        .get(&path)
        .ok_or_else(|| CcError::not_found("Route"))?;
    ok(&present::destinations(&state.base_url, r))
}

/// `DELETE /v3/routes/:guid/destinations/:destination_guid` → 204.
pub async fn remove_destination(
    state: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> CcResult {
    let (route, destination) = path.into_inner();
    state
        .world_mut()
        .remove_destination(&route, &destination, &identity(&req).actor())?;
    Ok(HttpResponse::NoContent().finish())
}

// ---------------------------------------------------------------- domains, spaces, orgs

const DOMAINS: ListSpec = ListSpec {
    params: &[
        "guids",
        "names",
        "organization_guids",
        "label_selector",
        "created_ats",
        "updated_ats",
        "page",
        "per_page",
        "order_by",
    ],
    order_by: &["created_at", "updated_at", "name"],
    includes: &[],
};

/// `GET /v3/domains`. Every simulated domain is shared, so `organization_guids`
/// (owning org) matches none.
pub async fn list_domains(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &DOMAINS)?;
    let w = state.world();
    let names = set(&q, "names");
    let owned_only = q.filter("organization_guids").is_some();
    let mut rows = candidates(&w.domains, &q);
    rows.retain(|(_, d)| !owned_only && contains(&names, &d.name));
    let base = &state.base_url;
    Ok(list_response(
        &q,
        &format!("{base}/v3/domains"),
        rows,
        |d| present::domain(base, d),
        |_| None,
    ))
}

/// `GET /v3/domains/:guid`.
pub async fn get_domain(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    parse_single(req.query_string(), &[])?;
    let w = state.world();
    let d = w
        .domains
        .get(&path)
        .ok_or_else(|| CcError::not_found("Domain"))?;
    ok(&present::domain(&state.base_url, d))
}

const SPACES: ListSpec = ListSpec {
    params: &[
        "names",
        "guids",
        "organization_guids",
        "label_selector",
        "created_ats",
        "updated_ats",
        "page",
        "per_page",
        "order_by",
        "include",
    ],
    order_by: &["created_at", "updated_at", "name"],
    includes: &["organization"],
};

/// `GET /v3/spaces` (`include=organization`).
pub async fn list_spaces(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &SPACES)?;
    let w = state.world();
    let (names, orgs) = (set(&q, "names"), set(&q, "organization_guids"));
    let mut rows = candidates(&w.spaces, &q);
    rows.retain(|(_, s)| contains(&names, &s.name) && contains(&orgs, &s.org_guid));
    let base = &state.base_url;
    let with_orgs = q.includes("organization");
    Ok(list_response(
        &q,
        &format!("{base}/v3/spaces"),
        rows,
        |s| present::space(base, s),
        |page| {
            with_orgs.then(|| {
                present::included_spaces_and_orgs(
                    base,
                    &w,
                    page.iter().map(|(_, s)| s.guid.as_str()),
                    false,
                    true,
                )
            })
        },
    ))
}

/// `GET /v3/spaces/:guid`.
pub async fn get_space(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    let include = parse_single(req.query_string(), SPACES.includes)?;
    let w = state.world();
    let s = w
        .spaces
        .get(&path)
        .ok_or_else(|| CcError::not_found("Space"))?;
    let mut body = present::space(&state.base_url, s);
    if !include.is_empty() {
        body["included"] =
            present::included_spaces_and_orgs(&state.base_url, &w, [s.guid.as_str()], false, true);
    }
    ok(&body)
}

const ORGS: ListSpec = ListSpec {
    params: &[
        "names",
        "guids",
        "label_selector",
        "created_ats",
        "updated_ats",
        "page",
        "per_page",
        "order_by",
    ],
    order_by: &["created_at", "updated_at", "name"],
    includes: &[],
};

/// `GET /v3/organizations`.
pub async fn list_orgs(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &ORGS)?;
    let w = state.world();
    let names = set(&q, "names");
    let mut rows = candidates(&w.orgs, &q);
    rows.retain(|(_, o)| contains(&names, &o.name));
    let base = &state.base_url;
    Ok(list_response(
        &q,
        &format!("{base}/v3/organizations"),
        rows,
        |o| present::org(base, o),
        |_| None,
    ))
}

/// `GET /v3/organizations/:guid`.
pub async fn get_org(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    parse_single(req.query_string(), &[])?;
    let w = state.world();
    let o = w
        .orgs
        .get(&path)
        .ok_or_else(|| CcError::not_found("Organization"))?;
    ok(&present::org(&state.base_url, o))
}

// ---------------------------------------------------------------- audit events

const EVENTS: ListSpec = ListSpec {
    params: &[
        "types",
        "target_guids",
        "space_guids",
        "organization_guids",
        "created_ats",
        "updated_ats",
        "page",
        "per_page",
        "order_by",
    ],
    order_by: &["created_at", "updated_at"],
    includes: &[],
};

/// `GET /v3/audit_events` (`target_guids[not]` supported).
pub async fn list_events(state: Data, req: HttpRequest) -> CcResult {
    let q = ListQuery::parse(req.query_string(), &EVENTS)?;
    let w = state.world();
    let types = set(&q, "types");
    let targets = set(&q, "target_guids");
    let not_targets: Option<HashSet<String>> = q
        .not_filters
        .get("target_guids")
        .map(|v| v.iter().cloned().collect());
    let spaces = set(&q, "space_guids");
    let orgs = set(&q, "organization_guids");
    let mut rows = candidates(&w.events, &q);
    rows.retain(|(_, e)| {
        contains(&types, &e.event_type)
            && contains(&targets, &e.target.guid)
            && not_targets
                .as_ref()
                .is_none_or(|n| !n.contains(&e.target.guid))
            && (spaces.is_none() || contains(&spaces, e.space_guid.as_deref().unwrap_or("")))
            && (orgs.is_none() || contains(&orgs, e.org_guid.as_deref().unwrap_or("")))
    });
    let base = &state.base_url;
    Ok(list_response(
        &q,
        &format!("{base}/v3/audit_events"),
        rows,
        |e| present::event(base, e),
        |_| None,
    ))
}

/// `GET /v3/audit_events/:guid`.
pub async fn get_event(state: Data, req: HttpRequest, path: web::Path<String>) -> CcResult {
    parse_single(req.query_string(), &[])?;
    let w = state.world();
    let e = w
        .events
        .get(&path)
        .ok_or_else(|| CcError::not_found("Event"))?;
    ok(&present::event(&state.base_url, e))
}
