//! The simulated foundation: orgs, spaces, apps, processes, routes, domains, audit
//! events and jobs, all in memory.
//!
//! Every table keeps its rows in creation order (`BTreeMap` by a global sequence number,
//! which is the CC's default order, DB `id` ascending) with a `HashMap` index by guid, so
//! a lookup is O(1) and a filtered listing is one O(n) pass. Every mutation goes through
//! a method here that also records the audit event(s) the real CC records, so the
//! CC-API handlers and the control API share one implementation.

use std::collections::{BTreeMap, HashMap};

use serde_json::{Value, json};

use crate::error::CcError;

mod apps;
pub mod service_changes;
pub mod services;
pub mod table;

pub use services::{
    BindingType, CredentialBinding, LastOperation, ServiceInstance, ServiceOffering, ServicePlan,
    Services,
};
pub use table::Table;

#[derive(Debug, Clone)]
pub struct Org {
    pub guid: String,
    pub name: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Space {
    pub guid: String,
    pub name: String,
    pub org_guid: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AppState {
    Started,
    Stopped,
}

impl AppState {
    pub fn as_str(self) -> &'static str {
        match self {
            AppState::Started => "STARTED",
            AppState::Stopped => "STOPPED",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        match s {
            "STARTED" => Some(AppState::Started),
            "STOPPED" => Some(AppState::Stopped),
            _ => None,
        }
    }
}

#[derive(Debug, Clone)]
pub struct App {
    pub guid: String,
    pub name: String,
    pub state: AppState,
    pub space_guid: String,
    pub labels: BTreeMap<String, String>,
    pub droplet_guid: String,
    pub created_at: i64,
    pub updated_at: i64,
    /// When the app was last started (for `uptime` in process stats).
    pub started_at: i64,
}

#[derive(Debug, Clone)]
pub struct Process {
    pub guid: String,
    pub app_guid: String,
    pub process_type: String,
    pub command: String,
    pub instances: u32,
    pub memory_in_mb: u32,
    pub disk_in_mb: u32,
    pub version: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Destination {
    pub guid: String,
    pub app_guid: String,
    pub process_type: String,
    pub port: u16,
    pub protocol: String,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Route {
    pub guid: String,
    pub host: String,
    pub path: String,
    pub domain_guid: String,
    pub space_guid: String,
    pub destinations: Vec<Destination>,
    pub created_at: i64,
    pub updated_at: i64,
}

#[derive(Debug, Clone)]
pub struct Domain {
    pub guid: String,
    pub name: String,
    pub internal: bool,
    pub created_at: i64,
    pub updated_at: i64,
}

/// `actor` / `target` of an audit event.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Party {
    pub guid: String,
    pub kind: String,
    pub name: String,
}

impl Party {
    pub fn to_json(&self) -> Value {
        json!({"guid": self.guid, "type": self.kind, "name": self.name})
    }
}

#[derive(Debug, Clone)]
pub struct Event {
    pub guid: String,
    pub event_type: String,
    pub actor: Party,
    pub target: Party,
    pub data: Value,
    pub space_guid: Option<String>,
    pub org_guid: Option<String>,
    pub created_at: i64,
}

#[derive(Debug, Clone)]
pub struct Job {
    pub guid: String,
    pub operation: String,
    pub created_at: i64,
}

/// Who made a change: the user or client of the token, or the simulator's admin user
/// for control-API calls.
pub type Actor = Party;

/// Input of [`World::create_app`].
#[derive(Debug, Clone)]
pub struct NewApp {
    pub guid: Option<String>,
    pub name: String,
    pub space_guid: String,
    pub state: AppState,
    pub instances: u32,
    pub labels: BTreeMap<String, String>,
    pub command: Option<String>,
}

/// Default start command of a simulated web process.
pub const DEFAULT_COMMAND: &str = "bundle exec rackup config.ru -p $PORT";

#[derive(Debug, Clone, Default)]
pub struct World {
    pub orgs: Table<Org>,
    pub spaces: Table<Space>,
    pub apps: Table<App>,
    pub processes: Table<Process>,
    pub routes: Table<Route>,
    pub domains: Table<Domain>,
    pub events: Table<Event>,
    pub jobs: HashMap<String, Job>,
    /// Service offerings, plans, instances and credential bindings ([`services`]).
    pub services: Services,
    next_seq: u64,
    /// The shared, external domain used when a route names none.
    pub apps_domain_guid: String,
}

impl World {
    pub fn next_seq(&mut self) -> u64 {
        self.next_seq += 1;
        self.next_seq
    }

    pub fn add_org(&mut self, org: Org) {
        let seq = self.next_seq();
        self.orgs.insert(seq, org.guid.clone(), org);
    }

    pub fn add_space(&mut self, space: Space) {
        let seq = self.next_seq();
        self.spaces.insert(seq, space.guid.clone(), space);
    }

    pub fn add_domain(&mut self, domain: Domain) {
        let seq = self.next_seq();
        self.domains.insert(seq, domain.guid.clone(), domain);
    }

    /// Inserts an app with its processes as they are (no checks, no events): seeding.
    pub fn insert_app(&mut self, app: App, processes: Vec<Process>) {
        let seq = self.next_seq();
        self.apps.insert(seq, app.guid.clone(), app);
        for p in processes {
            let seq = self.next_seq();
            self.processes.insert(seq, p.guid.clone(), p);
        }
    }

    pub fn insert_route(&mut self, route: Route) {
        let seq = self.next_seq();
        self.routes.insert(seq, route.guid.clone(), route);
    }

    pub fn org_of_space(&self, space_guid: &str) -> Option<&str> {
        self.spaces.get(space_guid).map(|s| s.org_guid.as_str())
    }

    pub fn space_of_app(&self, app_guid: &str) -> Option<&str> {
        self.apps.get(app_guid).map(|a| a.space_guid.as_str())
    }

    pub fn app(&self, guid: &str) -> Result<&App, CcError> {
        self.apps.find(guid, "App")
    }

    pub fn domain_by_name(&self, name: &str) -> Option<&Domain> {
        self.domains.iter().find(|d| d.name == name)
    }

    /// Processes of one app in creation order.
    pub fn processes_of(&self, app_guid: &str) -> Vec<&Process> {
        self.processes
            .iter()
            .filter(|p| p.app_guid == app_guid)
            .collect()
    }

    /// The newest process of `process_type` (the CC's `web_process` during a deploy).
    pub fn newest_process(&self, app_guid: &str, process_type: &str) -> Option<&Process> {
        self.processes
            .iter_seq()
            .filter(|(_, p)| p.app_guid == app_guid && p.process_type == process_type)
            .max_by_key(|(seq, p)| (p.created_at, *seq))
            .map(|(_, p)| p)
    }
}
