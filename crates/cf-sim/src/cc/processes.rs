//! Processes (`/v3/processes`, `/v3/apps/:guid/processes`), their stats and scaling.

use actix_web::{HttpRequest, web};
use serde::Deserialize;

use super::identity;
use crate::error::CcError;
use crate::http::{CcResult, cc_body, json_response, ok};
use crate::list::{Cached, Filter, cached_list_response, candidates, list_response};
use crate::present;
use crate::query::{ListQuery, ListSpec, parse_single};
use crate::state::{Data, SimState};
use crate::world::{Process, World};

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
    let types = Filter::of(q, "types");
    let apps = Filter::of(q, "app_guids");
    let spaces = Filter::of(q, "space_guids");
    let orgs = Filter::of(q, "organization_guids");
    rows.retain(|(_, p)| {
        if !types.keeps(&p.process_type) || !apps.keeps(&p.app_guid) {
            return false;
        }
        if !spaces.is_given() && !orgs.is_given() {
            return true;
        }
        let space = w.space_of_app(&p.app_guid).unwrap_or("");
        spaces.keeps(space) && orgs.keeps(w.org_of_space(space).unwrap_or(""))
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
    let cached = Cached {
        cache: state.presented(),
        generation,
        kind: "process in a list",
    };
    Ok(cached_list_response(
        cached,
        &q,
        &format!("{base}/v3/processes"),
        rows,
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
    parse_single(req.query_string(), &[], &[])?;
    let w = state.world();
    let p = w.processes.find(&path, "Process")?;
    ok(&present::process(&state.base_url, &w, p, false))
}

/// `GET /v3/apps/:guid/processes/:type` (the newest process of that type).
pub async fn get_app_process(
    state: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
) -> CcResult {
    parse_single(req.query_string(), &[], &[])?;
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
    let p = w.processes.find(&path, "Process")?;
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
        let current = w.processes.find(process_guid, "Process")?.instances;
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
    scale(&state, &req, &path, cc_body(&body)?)
}

/// `POST /v3/apps/:guid/processes/:type/actions/scale` → 202 process.
pub async fn scale_app_process(
    state: Data,
    req: HttpRequest,
    path: web::Path<(String, String)>,
    body: web::Bytes,
) -> CcResult {
    let body: ScaleBody = cc_body(&body)?;
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
