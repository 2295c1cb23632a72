//! Deterministic worlds: the start-up state, `--seed-apps` / `POST /sim/seed`, and the
//! `--demo` / `POST /sim/demo` sample foundation.
//!
//! Seeded and demo rows get GUIDs from [`stable_guid`] and timestamps from a fixed base
//! ([`SEED_EPOCH`]), so the same input always yields byte-identical API output. Seeding
//! records no audit events: it models a foundation whose history has aged out.

use std::collections::BTreeMap;

use serde::Deserialize;
use serde_json::{Value, json};

use crate::error::CcError;
use crate::util::{GuidKind, mix64, stable_guid};
use crate::world::{
    App, AppState, DEFAULT_COMMAND, Destination, Domain, Org, Process, Route, Space, World,
};

/// 2025-01-01T00:00:00Z: `created_at` base of every seeded and demo row.
pub const SEED_EPOCH: i64 = 1_735_689_600;

/// The label that marks the platform's own exporters (DESIGN §3: the start command is
/// redacted in CC v3 lists, so a label stands in for it).
pub const EXPORTER_LABEL: &str = "prometheus.gds/exporter";
/// The start command of the platform's metric exporter.
pub const EXPORTER_COMMAND: &str = "./bin/paas-metric-exporter";
/// The internal (container-to-container) shared domain.
pub const INTERNAL_DOMAIN: &str = "apps.internal";

/// Creates the start-up world: the two shared domains, nothing else.
pub fn base_world(apps_domain: &str) -> World {
    let mut w = World::default();
    for (n, name, internal) in [(1, apps_domain, false), (2, INTERNAL_DOMAIN, true)] {
        w.add_domain(Domain {
            guid: stable_guid(GuidKind::Domain, n),
            name: name.to_string(),
            internal,
            created_at: SEED_EPOCH,
            updated_at: SEED_EPOCH,
        });
    }
    w.apps_domain_guid = stable_guid(GuidKind::Domain, 1);
    w
}

/// What to seed: `POST /sim/seed {"apps": N, "spaces": M, "orgs": K}`.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SeedSpec {
    pub apps: usize,
    /// Default `max(1, apps / 10)`.
    pub spaces: Option<usize>,
    /// Default `max(1, spaces / 10)`.
    pub orgs: Option<usize>,
}

impl SeedSpec {
    pub fn spaces(&self) -> usize {
        self.spaces.unwrap_or(self.apps / 10).max(1)
    }

    pub fn orgs(&self) -> usize {
        self.orgs.unwrap_or(self.spaces() / 10).max(1)
    }
}

/// Seeds `spec` into `w`. Refuses (422) when the seeded orgs already exist: seed once,
/// or `POST /sim/reset` first.
///
/// App `n` (1-based) is `app-NNNNN` in space `((n-1) % spaces) + 1`, and:
/// - instances `1 + hash(n) % 3`; STOPPED when `n % 10 == 0`;
/// - a platform exporter (label `prometheus.gds/exporter: "true"`, command
///   `./bin/paas-metric-exporter`) when `n % 50 == 25`;
/// - no route at all when `n % 20 == 3`; otherwise a route on the apps domain with path
///   `""` whose host is the app name when `n % 3 == 0`, else `<name>-<4 hex digits>`
///   (a random-route style host);
/// - a second route, same host, path `/metrics` or `/internal/metrics`, when `n % 5 == 1`;
/// - an extra route `<name>.apps.internal` when `n % 10 == 4`.
pub fn seed(w: &mut World, spec: SeedSpec) -> Result<Value, CcError> {
    let (n_apps, n_spaces, n_orgs) = (spec.apps, spec.spaces(), spec.orgs());
    if w.orgs.contains(&stable_guid(GuidKind::Org, 1)) {
        return Err(CcError::unprocessable(
            "The world is already seeded: POST /sim/reset {\"empty\": true} first",
        ));
    }
    let internal_guid = w
        .domain_by_name(INTERNAL_DOMAIN)
        .map(|d| d.guid.clone())
        .ok_or_else(|| CcError::unprocessable("the apps.internal domain is missing"))?;
    let apps_domain = w.apps_domain_guid.clone();

    for k in 1..=n_orgs {
        w.add_org(Org {
            guid: stable_guid(GuidKind::Org, k as u64),
            name: format!("org-{k:02}"),
            created_at: SEED_EPOCH,
            updated_at: SEED_EPOCH,
        });
    }
    for j in 1..=n_spaces {
        w.add_space(Space {
            guid: stable_guid(GuidKind::Space, j as u64),
            name: format!("space-{j:04}"),
            org_guid: stable_guid(GuidKind::Org, ((j - 1) % n_orgs + 1) as u64),
            created_at: SEED_EPOCH + 1,
            updated_at: SEED_EPOCH + 1,
        });
    }

    let mut routes = 0usize;
    for n in 1..=n_apps as u64 {
        let name = format!("app-{n:05}");
        let at = SEED_EPOCH + 3600 + n as i64;
        let space_guid = stable_guid(GuidKind::Space, (n - 1) % n_spaces as u64 + 1);
        let exporter = n % 50 == 25;
        let app = App {
            guid: stable_guid(GuidKind::App, n),
            name: name.clone(),
            state: if n % 10 == 0 {
                AppState::Stopped
            } else {
                AppState::Started
            },
            space_guid: space_guid.clone(),
            labels: if exporter {
                BTreeMap::from([(EXPORTER_LABEL.to_string(), "true".to_string())])
            } else {
                BTreeMap::new()
            },
            droplet_guid: stable_guid(GuidKind::Droplet, n),
            created_at: at,
            updated_at: at,
            started_at: at,
        };
        let process = Process {
            guid: stable_guid(GuidKind::Process, n),
            app_guid: app.guid.clone(),
            process_type: "web".into(),
            command: if exporter {
                EXPORTER_COMMAND.into()
            } else {
                DEFAULT_COMMAND.into()
            },
            instances: 1 + (mix64(n) % 3) as u32,
            memory_in_mb: 256,
            disk_in_mb: 1024,
            version: stable_guid(GuidKind::Droplet, n + (1 << 40)),
            created_at: at,
            updated_at: at,
        };
        let app_guid = app.guid.clone();
        w.insert_app(app, vec![process]);

        if n % 20 == 3 {
            continue;
        }
        let host = if n % 3 == 0 {
            name.clone()
        } else {
            format!("{name}-{:04x}", mix64(n ^ 0xfeed) & 0xffff)
        };
        let mut planned = vec![(host.clone(), String::new(), apps_domain.clone())];
        if n % 5 == 1 {
            let path = if (n / 5) % 2 == 0 {
                "/metrics"
            } else {
                "/internal/metrics"
            };
            planned.push((host.clone(), path.to_string(), apps_domain.clone()));
        }
        if n % 10 == 4 {
            planned.push((name.clone(), String::new(), internal_guid.clone()));
        }
        for (k, (host, path, domain_guid)) in planned.into_iter().enumerate() {
            let id = n * 4 + k as u64;
            w.insert_route(seeded_route(
                GuidKind::Route,
                GuidKind::Destination,
                id,
                &host,
                &path,
                &domain_guid,
                &space_guid,
                &app_guid,
                at,
            ));
            routes += 1;
        }
    }
    Ok(json!({
        "orgs": n_orgs,
        "spaces": n_spaces,
        "apps": n_apps,
        "routes": routes,
    }))
}

#[allow(clippy::too_many_arguments)]
fn seeded_route(
    route_kind: GuidKind,
    destination_kind: GuidKind,
    id: u64,
    host: &str,
    path: &str,
    domain_guid: &str,
    space_guid: &str,
    app_guid: &str,
    at: i64,
) -> Route {
    Route {
        guid: stable_guid(route_kind, id),
        host: host.to_string(),
        path: path.to_string(),
        domain_guid: domain_guid.to_string(),
        space_guid: space_guid.to_string(),
        destinations: vec![Destination {
            guid: stable_guid(destination_kind, id),
            app_guid: app_guid.to_string(),
            process_type: "web".into(),
            port: 8080,
            protocol: "http1".into(),
            created_at: at,
            updated_at: at,
        }],
        created_at: at,
        updated_at: at,
    }
}

/// The demo app guids, by name (stable across runs).
pub fn demo_app_guid(name: &str) -> Option<String> {
    DEMO_APPS
        .iter()
        .position(|a| a.name == name)
        .map(|i| stable_guid(GuidKind::DemoApp, i as u64 + 1))
}

struct DemoApp {
    name: &'static str,
    instances: u32,
    state: AppState,
    exporter: bool,
    /// (host, path) on the apps domain.
    routes: &'static [(&'static str, &'static str)],
}

const DEMO_APPS: &[DemoApp] = &[
    DemoApp {
        name: "web-shop",
        instances: 2,
        state: AppState::Started,
        exporter: false,
        routes: &[("web-shop", "")],
    },
    DemoApp {
        name: "api",
        instances: 3,
        state: AppState::Started,
        exporter: false,
        routes: &[("api", ""), ("api", "/internal/metrics")],
    },
    DemoApp {
        name: "paas-metric-exporter",
        instances: 1,
        state: AppState::Started,
        exporter: true,
        routes: &[("paas-metric-exporter", "")],
    },
    DemoApp {
        name: "batch-worker",
        instances: 1,
        state: AppState::Stopped,
        exporter: false,
        routes: &[],
    },
    DemoApp {
        name: "orders-venerable",
        instances: 2,
        state: AppState::Started,
        exporter: false,
        routes: &[("orders", "")],
    },
];

/// Adds the demo foundation: org `demo-org`, space `demo-space` and five apps
/// (`web-shop`, `api`, `paas-metric-exporter`, `batch-worker` STOPPED,
/// `orders-venerable`) with fixed guids. Refuses (422) when it is already there.
pub fn demo(w: &mut World) -> Result<Value, CcError> {
    let org_guid = stable_guid(GuidKind::DemoOrg, 1);
    if w.orgs.contains(&org_guid) {
        return Err(CcError::unprocessable("The demo foundation already exists"));
    }
    let space_guid = stable_guid(GuidKind::DemoSpace, 1);
    w.add_org(Org {
        guid: org_guid.clone(),
        name: "demo-org".into(),
        created_at: SEED_EPOCH,
        updated_at: SEED_EPOCH,
    });
    w.add_space(Space {
        guid: space_guid.clone(),
        name: "demo-space".into(),
        org_guid: org_guid.clone(),
        created_at: SEED_EPOCH,
        updated_at: SEED_EPOCH,
    });
    let domain = w.apps_domain_guid.clone();
    let mut apps = serde_json::Map::new();
    for (i, demo) in DEMO_APPS.iter().enumerate() {
        let n = i as u64 + 1;
        let at = SEED_EPOCH + 60 * n as i64;
        let guid = stable_guid(GuidKind::DemoApp, n);
        let app = App {
            guid: guid.clone(),
            name: demo.name.into(),
            state: demo.state,
            space_guid: space_guid.clone(),
            labels: if demo.exporter {
                BTreeMap::from([(EXPORTER_LABEL.to_string(), "true".to_string())])
            } else {
                BTreeMap::new()
            },
            droplet_guid: stable_guid(GuidKind::Droplet, (1 << 41) + n),
            created_at: at,
            updated_at: at,
            started_at: at,
        };
        let process = Process {
            guid: stable_guid(GuidKind::DemoProcess, n),
            app_guid: guid.clone(),
            process_type: "web".into(),
            command: if demo.exporter {
                EXPORTER_COMMAND.into()
            } else {
                DEFAULT_COMMAND.into()
            },
            instances: demo.instances,
            memory_in_mb: 256,
            disk_in_mb: 1024,
            version: stable_guid(GuidKind::Droplet, (1 << 42) + n),
            created_at: at,
            updated_at: at,
        };
        w.insert_app(app, vec![process]);
        for (k, (host, path)) in demo.routes.iter().enumerate() {
            w.insert_route(seeded_route(
                GuidKind::DemoRoute,
                GuidKind::DemoDestination,
                n * 4 + k as u64,
                host,
                path,
                &domain,
                &space_guid,
                &guid,
                at,
            ));
        }
        apps.insert(demo.name.into(), Value::String(guid));
    }
    Ok(json!({"org_guid": org_guid, "space_guid": space_guid, "apps": apps}))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn guids(w: &World) -> Vec<String> {
        w.apps
            .iter()
            .map(|a| a.guid.clone())
            .chain(w.routes.iter().map(|r| r.guid.clone()))
            .chain(w.processes.iter().map(|p| p.guid.clone()))
            .collect()
    }

    #[test]
    fn the_same_seed_gives_the_same_guids() {
        let spec = SeedSpec {
            apps: 500,
            spaces: Some(7),
            orgs: None,
        };
        let mut a = base_world("apps.example.com");
        let mut b = base_world("apps.example.com");
        seed(&mut a, spec).unwrap();
        seed(&mut b, spec).unwrap();
        assert_eq!(guids(&a), guids(&b));
        assert_eq!(a.apps.iter().next().unwrap().name, "app-00001");
        assert_eq!(a.spaces.len(), 7);
        assert_eq!(a.orgs.len(), 1);
        assert_eq!(a.spaces.iter().next().unwrap().name, "space-0001");
        assert_eq!(a.orgs.iter().next().unwrap().name, "org-01");
    }

    #[test]
    fn seeding_twice_is_refused() {
        let mut w = base_world("apps.example.com");
        seed(
            &mut w,
            SeedSpec {
                apps: 3,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(
            seed(
                &mut w,
                SeedSpec {
                    apps: 3,
                    ..Default::default()
                }
            )
            .unwrap_err()
            .status,
            422
        );
    }

    #[test]
    fn seeding_has_the_promised_variety() {
        let mut w = base_world("apps.example.com");
        seed(
            &mut w,
            SeedSpec {
                apps: 1000,
                ..Default::default()
            },
        )
        .unwrap();
        let stopped = w
            .apps
            .iter()
            .filter(|a| a.state == AppState::Stopped)
            .count();
        let exporters = w
            .apps
            .iter()
            .filter(|a| a.labels.contains_key(EXPORTER_LABEL))
            .count();
        let internal = w
            .routes
            .iter()
            .filter(|r| r.domain_guid != w.apps_domain_guid)
            .count();
        let with_path = w.routes.iter().filter(|r| !r.path.is_empty()).count();
        let routed: std::collections::HashSet<&str> = w
            .routes
            .iter()
            .flat_map(|r| r.destinations.iter().map(|d| d.app_guid.as_str()))
            .collect();
        assert_eq!(stopped, 100);
        assert_eq!(exporters, 20);
        assert_eq!(internal, 100);
        assert_eq!(with_path, 200);
        assert_eq!(1000 - routed.len(), 50);
        let instances: std::collections::BTreeSet<u32> =
            w.processes.iter().map(|p| p.instances).collect();
        assert_eq!(instances, [1, 2, 3].into());
        assert_eq!(w.spaces.len(), 100);
        assert_eq!(w.orgs.len(), 10);
    }

    #[test]
    fn twenty_thousand_apps_seed_quickly() {
        let started = std::time::Instant::now();
        let mut w = base_world("apps.example.com");
        seed(
            &mut w,
            SeedSpec {
                apps: 20_000,
                ..Default::default()
            },
        )
        .unwrap();
        assert_eq!(w.apps.len(), 20_000);
        assert_eq!(w.processes.len(), 20_000);
        // Generous even for an unoptimised debug build on a busy machine.
        assert!(started.elapsed() < std::time::Duration::from_secs(10));
    }

    #[test]
    fn the_demo_has_fixed_guids() {
        let mut a = base_world("apps.example.com");
        let mut b = base_world("apps.example.com");
        let da = demo(&mut a).unwrap();
        assert_eq!(da, demo(&mut b).unwrap());
        assert_eq!(da["apps"]["api"], demo_app_guid("api").unwrap());
        assert!(demo(&mut a).is_err());
        let api = a
            .apps
            .get(&demo_app_guid("api").unwrap())
            .unwrap()
            .guid
            .clone();
        let paths: Vec<&str> = a
            .routes
            .iter()
            .filter(|r| r.destinations[0].app_guid == api)
            .map(|r| r.path.as_str())
            .collect();
        assert_eq!(paths, ["", "/internal/metrics"]);
    }
}
