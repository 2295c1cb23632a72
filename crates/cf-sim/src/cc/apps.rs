//! Apps (`/v3/apps`, their actions) and jobs.

use std::collections::{BTreeMap, HashSet};

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;

use super::identity;
use crate::error::CcError;
use crate::http::{CcResult, cc_body, ok};
use crate::list::{Cached, Filter, cached_list_response, candidates};
use crate::present;
use crate::query::{ListQuery, ListSpec, parse_single};
use crate::state::{Data, SimState};

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
    let (spaces, orgs) = (
        Filter::of(&q, "space_guids"),
        Filter::of(&q, "organization_guids"),
    );
    let stack_ok = Filter::of(&q, "stacks").keeps("cflinuxfs4");
    let lifecycle_ok = Filter::of(&q, "lifecycle_type").keeps("buildpack");
    let mut rows = candidates(&w.apps, &q);
    rows.retain(|(_, a)| {
        stack_ok
            && lifecycle_ok
            && names
                .as_ref()
                .is_none_or(|n| n.contains(&a.name.to_lowercase()))
            && spaces.keeps(&a.space_guid)
            && orgs.keeps(w.org_of_space(&a.space_guid).unwrap_or(""))
    });
    let (with_spaces, with_orgs) = app_included(&q);
    let cached = Cached {
        cache: state.presented(),
        generation,
        kind: "app",
    };
    Ok(cached_list_response(
        cached,
        &q,
        &format!("{base}/v3/apps"),
        rows,
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
    let q = parse_single(req.query_string(), &["include"], APPS.includes)?;
    let w = state.world();
    let app = w.app(&path)?;
    let mut body = present::app(&state.base_url, app);
    let (with_spaces, with_orgs) = app_included(&q);
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
    let patch: AppPatch = cc_body(&body)?;
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
