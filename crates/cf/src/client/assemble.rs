//! Joining the resources of one look-up into [`AppInfo`]s: pure, no request.

use std::collections::{BTreeSet, HashMap};

use gds_targets::{AppGuid, AppInfo, AppState, Route};

use super::AppsSnapshot;
use crate::v3;

/// The raw resources of one look-up, before they are joined per app.
#[derive(Default)]
pub(super) struct Resources {
    pub(super) apps: Vec<v3::App>,
    pub(super) spaces: Vec<v3::Space>,
    pub(super) orgs: Vec<v3::Named>,
    pub(super) processes: Vec<v3::Process>,
    pub(super) routes: Vec<v3::Route>,
    pub(super) domains: Vec<v3::Domain>,
}

/// Joins apps with their space, org, web processes and routes. Pure.
///
/// - Instances: the web process' count; during a rolling deploy there are two web
///   processes and the larger count is used, so no index that answers is left out.
/// - Routes: HTTP routes with a destination on this app's web process, in the Cloud
///   Controller's order; TCP routes are dropped (Prometheus scrapes over HTTP through the
///   router), internal domains are flagged for the model to skip.
pub(super) fn assemble(
    wanted: &BTreeSet<AppGuid>,
    r: Resources,
    exporter_label: &str,
) -> AppsSnapshot {
    let spaces: HashMap<&str, &v3::Space> = r.spaces.iter().map(|s| (s.guid.as_str(), s)).collect();
    let orgs: HashMap<&str, &str> = r
        .orgs
        .iter()
        .map(|o| (o.guid.as_str(), o.name.as_str()))
        .collect();
    let domains: HashMap<&str, &v3::Domain> =
        r.domains.iter().map(|d| (d.guid.as_str(), d)).collect();

    let mut instances: HashMap<&str, u32> = HashMap::new();
    for p in r.processes.iter().filter(|p| p.process_type == "web") {
        if let Some(app) = &p.relationships.app.data {
            let entry = instances.entry(app.guid.as_str()).or_default();
            *entry = (*entry).max(p.instances);
        }
    }

    let mut routes: HashMap<&str, Vec<Route>> = HashMap::new();
    let mut route_problems: HashMap<&str, String> = HashMap::new();
    for route in &r.routes {
        let is_tcp = route.port.is_some() || route.protocol.as_deref() == Some("tcp");
        if is_tcp {
            continue;
        }
        let mut seen_for_route = BTreeSet::new();
        for d in &route.destinations {
            let web = d
                .app
                .process
                .as_ref()
                .is_none_or(|p| p.process_type == "web");
            if !web || !seen_for_route.insert(d.app.guid.as_str()) {
                continue;
            }
            let domain = route
                .relationships
                .domain
                .data
                .as_ref()
                .and_then(|g| domains.get(g.guid.as_str()));
            match domain {
                Some(domain) => routes.entry(d.app.guid.as_str()).or_default().push(Route {
                    host: route.host.clone(),
                    domain: domain.name.clone(),
                    path: route.path.clone(),
                    internal: domain.internal,
                }),
                None => {
                    route_problems.insert(
                        d.app.guid.as_str(),
                        "a route's domain was not included".into(),
                    );
                }
            }
        }
    }

    let mut snapshot = AppsSnapshot::default();
    for app in &r.apps {
        let Ok(guid) = AppGuid::parse(&app.guid) else {
            continue;
        };
        if !wanted.contains(&guid) || snapshot.apps.contains_key(&guid) {
            continue;
        }
        if let Some(problem) = route_problems.get(app.guid.as_str()) {
            snapshot.failed.insert(guid, problem.clone());
            continue;
        }
        let space = app
            .relationships
            .space
            .data
            .as_ref()
            .and_then(|s| spaces.get(s.guid.as_str()));
        let Some(space) = space else {
            snapshot
                .failed
                .insert(guid, "the app's space was not included".into());
            continue;
        };
        let org = space
            .relationships
            .organization
            .data
            .as_ref()
            .and_then(|o| orgs.get(o.guid.as_str()));
        let Some(org) = org else {
            snapshot
                .failed
                .insert(guid, "the app's organization was not included".into());
            continue;
        };
        let state = if app.state == "STARTED" {
            AppState::Started
        } else {
            AppState::Stopped
        };
        let exporter_label = app
            .metadata
            .labels
            .get(exporter_label)
            .is_some_and(|v| v.as_deref() == Some("true"));
        snapshot.apps.insert(
            guid,
            AppInfo {
                guid: AppGuid::parse(&app.guid).expect("parsed above"),
                name: app.name.clone(),
                state,
                instances: instances.get(app.guid.as_str()).copied().unwrap_or(0),
                org: (*org).to_owned(),
                space: space.name.clone(),
                routes: routes.remove(app.guid.as_str()).unwrap_or_default(),
                // v3 redacts commands in lists; the exporter label stands in (DESIGN.md §3).
                start_command: None,
                exporter_label,
            },
        );
    }
    snapshot.missing = wanted
        .iter()
        .filter(|g| !snapshot.apps.contains_key(*g) && !snapshot.failed.contains_key(*g))
        .cloned()
        .collect();
    snapshot
}
