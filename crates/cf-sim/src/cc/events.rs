//! Audit events (`/v3/audit_events`).

use std::collections::HashSet;

use actix_web::{HttpRequest, web};

use crate::http::{CcResult, ok};
use crate::list::{Filter, candidates, list_response};
use crate::present;
use crate::query::{ListQuery, ListSpec, parse_single};
use crate::state::Data;

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
    let types = Filter::of(&q, "types");
    let targets = Filter::of(&q, "target_guids");
    let not_targets: Option<HashSet<String>> = q
        .not_filters
        .get("target_guids")
        .map(|v| v.iter().cloned().collect());
    let spaces = Filter::of(&q, "space_guids");
    let orgs = Filter::of(&q, "organization_guids");
    let mut rows = candidates(&w.events, &q);
    rows.retain(|(_, e)| {
        types.keeps(&e.event_type)
            && targets.keeps(&e.target.guid)
            && not_targets
                .as_ref()
                .is_none_or(|n| !n.contains(&e.target.guid))
            && spaces.keeps(e.space_guid.as_deref().unwrap_or(""))
            && orgs.keeps(e.org_guid.as_deref().unwrap_or(""))
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
    parse_single(req.query_string(), &[], &[])?;
    let w = state.world();
    let e = w.events.find(&path, "Event")?;
    ok(&present::event(&state.base_url, e))
}
