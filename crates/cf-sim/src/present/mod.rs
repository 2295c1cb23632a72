//! CC v3 resource JSON, shaped like CCNG's presenters (`app/presenters/v3/*`).
//! All links are absolute, built from the simulator's base URL.

use serde_json::{Value, json};

use crate::list::sorted_unique;
use crate::util::{GuidKind, format_rfc3339_now, format_ts, mix64, now, stable_guid};
use crate::world::{
    App, AppState, Destination, Domain, Event, Job, Org, Process, Route, Space, World,
};

pub mod services;

/// Shown instead of the command in process lists (CCNG `ProcessPresenter`).
pub const HIDDEN_IN_LISTS: &str = "[PRIVATE DATA HIDDEN IN LISTS]";

fn href(url: String) -> Value {
    json!({"href": url})
}

fn metadata(labels: Option<&std::collections::BTreeMap<String, String>>) -> Value {
    json!({"labels": labels.cloned().unwrap_or_default(), "annotations": {}})
}

pub fn app(base: &str, a: &App) -> Value {
    let v3 = format!("{base}/v3");
    let me = format!("{v3}/apps/{}", a.guid);
    json!({
        "guid": a.guid,
        "name": a.name,
        "state": a.state.as_str(),
        "created_at": format_ts(a.created_at),
        "updated_at": format_ts(a.updated_at),
        "lifecycle": {"type": "buildpack", "data": {"buildpacks": ["ruby_buildpack"], "stack": "cflinuxfs4"}},
        "relationships": {
            "space": {"data": {"guid": a.space_guid}},
            "current_droplet": {"data": {"guid": a.droplet_guid}},
        },
        "metadata": metadata(Some(&a.labels)),
        "links": {
            "self": href(me.clone()),
            "environment_variables": href(format!("{me}/environment_variables")),
            "space": href(format!("{v3}/spaces/{}", a.space_guid)),
            "processes": href(format!("{me}/processes")),
            "packages": href(format!("{me}/packages")),
            "current_droplet": href(format!("{me}/droplets/current")),
            "droplets": href(format!("{me}/droplets")),
            "tasks": href(format!("{me}/tasks")),
            "start": {"href": format!("{me}/actions/start"), "method": "POST"},
            "stop": {"href": format!("{me}/actions/stop"), "method": "POST"},
            "revisions": href(format!("{me}/revisions")),
            "deployed_revisions": href(format!("{me}/revisions/deployed")),
            "features": href(format!("{me}/features")),
        },
    })
}

/// `in_list`: the command is hidden in lists.
pub fn process(base: &str, w: &World, p: &Process, in_list: bool) -> Value {
    let v3 = format!("{base}/v3");
    let me = format!("{v3}/processes/{}", p.guid);
    let space = w.space_of_app(&p.app_guid).unwrap_or_default();
    json!({
        "guid": p.guid,
        "type": p.process_type,
        "command": if in_list { HIDDEN_IN_LISTS } else { p.command.as_str() },
        "user": "vcap",
        "instances": p.instances,
        "memory_in_mb": p.memory_in_mb,
        "disk_in_mb": p.disk_in_mb,
        "log_rate_limit_in_bytes_per_second": -1,
        "health_check": {"type": "port", "data": {"timeout": null, "invocation_timeout": null, "interval": null}},
        "readiness_health_check": {"type": "process", "data": {"invocation_timeout": null, "interval": null}},
        "relationships": {
            "app": {"data": {"guid": p.app_guid}},
            "revision": {"data": null},
        },
        "metadata": metadata(None),
        "created_at": format_ts(p.created_at),
        "updated_at": format_ts(p.updated_at),
        "version": p.version,
        "links": {
            "self": href(me.clone()),
            "scale": {"href": format!("{me}/actions/scale"), "method": "POST"},
            "app": href(format!("{v3}/apps/{}", p.app_guid)),
            "space": href(format!("{v3}/spaces/{space}")),
            "stats": href(format!("{me}/stats")),
        },
    })
}

/// `GET /v3/processes/:guid/stats`: `instances` rows sorted by index; RUNNING when the
/// app is STARTED, the reduced DOWN rows when it is STOPPED.
pub fn process_stats(w: &World, p: &Process) -> Value {
    let app = w.apps.get(&p.app_guid);
    let running = app.is_some_and(|a| a.state == AppState::Started);
    let started_at = app.map_or(0, |a| a.started_at).max(p.created_at);
    let uptime = (now() - started_at).max(0);
    let seed = mix64(
        p.guid
            .bytes()
            .fold(0u64, |h, b| h.wrapping_mul(31) ^ b as u64),
    );
    let rows: Vec<Value> = (0..p.instances)
        .map(|index| {
            if !running {
                return json!({
                    "type": p.process_type, "index": index, "state": "DOWN",
                    "routable": null, "uptime": 0, "isolation_segment": null, "details": null,
                });
            }
            let h = mix64(seed ^ u64::from(index));
            json!({
                "type": p.process_type,
                "index": index,
                "instance_guid": format!(
                    "{:08x}-{:04x}-{:04x}-{:04x}-{:04x}",
                    h as u32, (h >> 32) as u16, (h >> 48) as u16, seed as u16, (seed >> 16) as u16
                ),
                "state": "RUNNING",
                "routable": true,
                "usage": {
                    "time": format_rfc3339_now(),
                    "cpu": 0.0012,
                    "cpu_entitlement": 0.011,
                    "mem": 64 * 1024 * 1024 + (h % (32 * 1024 * 1024)),
                    "disk": 96 * 1024 * 1024,
                    "log_rate": 0,
                },
                "host": format!("10.0.{}.{}", (h >> 8) % 64 + 16, h % 250 + 2),
                "instance_internal_ip": format!("10.255.{}.{}", (h >> 16) % 250, (h >> 24) % 250 + 2),
                "instance_ports": [{
                    "external": 61000 + (h % 3000),
                    "internal": 8080,
                    "external_tls_proxy_port": 61000 + (h % 3000) + 1,
                    "internal_tls_proxy_port": 61001,
                }],
                "uptime": uptime,
                "mem_quota": u64::from(p.memory_in_mb) * 1024 * 1024,
                "disk_quota": u64::from(p.disk_in_mb) * 1024 * 1024,
                "log_rate_limit": null,
                "fds_quota": 16384,
                "isolation_segment": null,
                "details": null,
            })
        })
        .collect();
    json!({"resources": rows})
}

pub fn destination(d: &Destination) -> Value {
    json!({
        "guid": d.guid,
        "app": {"guid": d.app_guid, "process": {"type": d.process_type}},
        "weight": null,
        "port": d.port,
        "protocol": d.protocol,
        "created_at": format_ts(d.created_at),
        "updated_at": format_ts(d.updated_at),
    })
}

/// `url`: `host.domain + path`, or `domain + path` for an apex route. No `options` key:
/// simulated routes have none.
pub fn route(base: &str, w: &World, r: &Route) -> Value {
    let v3 = format!("{base}/v3");
    let me = format!("{v3}/routes/{}", r.guid);
    let domain = w
        .domains
        .get(&r.domain_guid)
        .map_or("", |d| d.name.as_str());
    let url = if r.host.is_empty() {
        format!("{domain}{}", r.path)
    } else {
        format!("{}.{domain}{}", r.host, r.path)
    };
    let mut destinations: Vec<&Destination> = r.destinations.iter().collect();
    destinations.sort_by(|a, b| a.guid.cmp(&b.guid));
    json!({
        "guid": r.guid,
        "protocol": "http",
        "created_at": format_ts(r.created_at),
        "updated_at": format_ts(r.updated_at),
        "host": r.host,
        "path": r.path,
        "port": null,
        "url": url,
        "destinations": destinations.into_iter().map(destination).collect::<Vec<_>>(),
        "metadata": metadata(None),
        "relationships": {
            "space": {"data": {"guid": r.space_guid}},
            "domain": {"data": {"guid": r.domain_guid}},
        },
        "links": {
            "self": href(me.clone()),
            "space": href(format!("{v3}/spaces/{}", r.space_guid)),
            "domain": href(format!("{v3}/domains/{}", r.domain_guid)),
            "destinations": href(format!("{me}/destinations")),
        },
    })
}

/// `GET /v3/routes/:guid/destinations`.
pub fn destinations(base: &str, r: &Route) -> Value {
    let mut destinations: Vec<&Destination> = r.destinations.iter().collect();
    destinations.sort_by(|a, b| a.guid.cmp(&b.guid));
    let me = format!("{base}/v3/routes/{}", r.guid);
    json!({
        "destinations": destinations.into_iter().map(destination).collect::<Vec<_>>(),
        "links": {"self": href(format!("{me}/destinations")), "route": href(me)},
    })
}

pub fn domain(base: &str, d: &Domain) -> Value {
    let me = format!("{base}/v3/domains/{}", d.guid);
    json!({
        "guid": d.guid,
        "created_at": format_ts(d.created_at),
        "updated_at": format_ts(d.updated_at),
        "name": d.name,
        "internal": d.internal,
        "router_group": null,
        "supported_protocols": ["http"],
        "metadata": metadata(None),
        "relationships": {
            "organization": {"data": null},
            "shared_organizations": {"data": []},
        },
        "links": {
            "self": href(me.clone()),
            "route_reservations": href(format!("{me}/route_reservations")),
        },
    })
}

pub fn space(base: &str, s: &Space) -> Value {
    let v3 = format!("{base}/v3");
    json!({
        "guid": s.guid,
        "name": s.name,
        "suspended": false,
        "created_at": format_ts(s.created_at),
        "updated_at": format_ts(s.updated_at),
        "relationships": {
            "organization": {"data": {"guid": s.org_guid}},
            "quota": {"data": null},
        },
        "metadata": metadata(None),
        "links": {
            "self": href(format!("{v3}/spaces/{}", s.guid)),
            "features": href(format!("{v3}/spaces/{}/features", s.guid)),
            "organization": href(format!("{v3}/organizations/{}", s.org_guid)),
            "apply_manifest": {"href": format!("{v3}/spaces/{}/actions/apply_manifest", s.guid), "method": "POST"},
        },
    })
}

pub fn org(base: &str, o: &Org) -> Value {
    let me = format!("{base}/v3/organizations/{}", o.guid);
    json!({
        "guid": o.guid,
        "name": o.name,
        "suspended": false,
        "created_at": format_ts(o.created_at),
        "updated_at": format_ts(o.updated_at),
        "relationships": {"quota": {"data": {"guid": stable_guid(GuidKind::Org, 0)}}},
        "metadata": metadata(None),
        "links": {
            "self": href(me.clone()),
            "domains": href(format!("{me}/domains")),
            "default_domain": href(format!("{me}/domains/default")),
            "quota": href(format!("{base}/v3/organization_quotas/{}", stable_guid(GuidKind::Org, 0))),
        },
    })
}

pub fn event(base: &str, e: &Event) -> Value {
    json!({
        "guid": e.guid,
        "created_at": format_ts(e.created_at),
        "updated_at": format_ts(e.created_at),
        "type": e.event_type,
        "actor": e.actor.to_json(),
        "target": e.target.to_json(),
        "data": e.data,
        "space": e.space_guid.as_ref().map(|g| json!({"guid": g})),
        "organization": e.org_guid.as_ref().map(|g| json!({"guid": g})),
        "links": {"self": href(format!("{base}/v3/audit_events/{}", e.guid))},
    })
}

pub fn job(base: &str, j: &Job) -> Value {
    json!({
        "guid": j.guid,
        "created_at": format_ts(j.created_at),
        "updated_at": format_ts(j.created_at),
        "operation": j.operation,
        "state": "COMPLETE",
        "errors": [],
        "warnings": [],
        "links": {"self": href(format!("{base}/v3/jobs/{}", j.guid))},
    })
}

/// Spaces (and optionally their orgs) referenced by `space_guids`, each once, sorted by
/// `created_at, guid` as CCNG's include decorators do.
pub fn included_spaces_and_orgs<'a>(
    base: &str,
    w: &World,
    space_guids: impl IntoIterator<Item = &'a str>,
    with_spaces: bool,
    with_orgs: bool,
) -> Value {
    let (spaces, orgs) = spaces_and_orgs(w, space_guids);
    let mut included = serde_json::Map::new();
    if with_spaces {
        included.insert(
            "spaces".into(),
            spaces.iter().map(|s| space(base, s)).collect(),
        );
    }
    if with_orgs {
        included.insert(
            "organizations".into(),
            orgs.iter().map(|o| org(base, o)).collect(),
        );
    }
    Value::Object(included)
}

/// The spaces named by `space_guids` and their orgs, each once, in include order.
pub fn spaces_and_orgs<'w, 'a>(
    w: &'w World,
    space_guids: impl IntoIterator<Item = &'a str>,
) -> (Vec<&'w Space>, Vec<&'w Org>) {
    let spaces = sorted_unique(space_guids.into_iter().filter_map(|g| w.spaces.get(g)));
    let orgs = sorted_unique(spaces.iter().filter_map(|s| w.orgs.get(&s.org_guid)));
    (spaces, orgs)
}
