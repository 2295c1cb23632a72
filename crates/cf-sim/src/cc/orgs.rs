//! Organizations, spaces and domains.

use actix_web::{HttpRequest, web};

use crate::http::{CcResult, ok};
use crate::list::{Filter, candidates, list_response};
use crate::present;
use crate::query::{ListQuery, ListSpec, parse_single};
use crate::state::Data;

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
    let names = Filter::of(&q, "names");
    let owned_only = q.filter("organization_guids").is_some();
    let mut rows = candidates(&w.domains, &q);
    rows.retain(|(_, d)| !owned_only && names.keeps(&d.name));
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
    parse_single(req.query_string(), &[], &[])?;
    let w = state.world();
    let d = w.domains.find(&path, "Domain")?;
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
    let (names, orgs) = (
        Filter::of(&q, "names"),
        Filter::of(&q, "organization_guids"),
    );
    let mut rows = candidates(&w.spaces, &q);
    rows.retain(|(_, s)| names.keeps(&s.name) && orgs.keeps(&s.org_guid));
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
    let q = parse_single(req.query_string(), &["include"], SPACES.includes)?;
    let w = state.world();
    let s = w.spaces.find(&path, "Space")?;
    let mut body = present::space(&state.base_url, s);
    if q.includes("organization") {
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
    let names = Filter::of(&q, "names");
    let mut rows = candidates(&w.orgs, &q);
    rows.retain(|(_, o)| names.keeps(&o.name));
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
    parse_single(req.query_string(), &[], &[])?;
    let w = state.world();
    let o = w.orgs.find(&path, "Organization")?;
    ok(&present::org(&state.base_url, o))
}
