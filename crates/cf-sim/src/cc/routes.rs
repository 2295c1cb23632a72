//! Routes (`/v3/routes`, `/v3/apps/:guid/routes`) and their destinations.

use actix_web::{HttpRequest, HttpResponse, web};
use serde::Deserialize;
use serde_json::Value;

use super::identity;
use crate::error::CcError;
use crate::http::{CcResult, cc_body, ok};
use crate::list::{Cached, Filter, cached_list_response, candidates, list_response, sorted_unique};
use crate::present;
use crate::query::{ListQuery, ListSpec, parse_single};
use crate::state::Data;
use crate::world::{Route, World};

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
    let apps = Filter::of(q, "app_guids");
    let domains = Filter::of(q, "domain_guids");
    let hosts = Filter::of(q, "hosts");
    let paths = Filter::of(q, "paths");
    let spaces = Filter::of(q, "space_guids");
    let orgs = Filter::of(q, "organization_guids");
    rows.retain(|(_, r)| {
        domains.keeps(&r.domain_guid)
            && hosts.keeps(&r.host)
            && paths.keeps(&r.path)
            && spaces.keeps(&r.space_guid)
            && orgs.keeps(w.org_of_space(&r.space_guid).unwrap_or(""))
            && apps.keeps_any(r.destinations.iter().map(|d| d.app_guid.as_str()))
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
        let domains = sorted_unique(
            page.iter()
                .filter_map(|(_, r)| w.domains.get(&r.domain_guid)),
        );
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
    let cached = Cached {
        cache: state.presented(),
        generation,
        kind: "route",
    };
    Ok(cached_list_response(
        cached,
        &q,
        &format!("{base}/v3/routes"),
        rows,
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
    let q = parse_single(req.query_string(), &["include"], ROUTES.includes)?;
    let w = state.world();
    let r = w.routes.find(&path, "Route")?;
    let mut body = present::route(&state.base_url, &w, r);
    if let Some(inc) = routes_included(&state.base_url, &w, &q, &[(0, r)]) {
        body["included"] = inc;
    }
    ok(&body)
}

/// `GET /v3/routes/:guid/destinations`.
pub async fn get_destinations(state: Data, path: web::Path<String>) -> CcResult {
    let w = state.world();
    let r = w.routes.find(&path, "Route")?;
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
    let body: NewDestinations = cc_body(&body)?;
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
    let r = w.routes.find(&path, "Route")?;
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
