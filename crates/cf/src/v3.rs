//! The parts of Cloud Controller v3 resources that discovery reads. Unknown fields are
//! ignored, so newer Cloud Controllers keep working.

use std::collections::BTreeMap;

use serde::Deserialize;

#[derive(Debug, Deserialize)]
pub struct Page<T> {
    pub pagination: Pagination,
    pub resources: Vec<T>,
    #[serde(default)]
    pub included: Included,
}

#[derive(Debug, Deserialize)]
pub struct Pagination {
    pub total_results: u64,
    pub next: Option<Link>,
}

#[derive(Debug, Deserialize)]
pub struct Link {
    pub href: String,
}

#[derive(Debug, Default, Deserialize)]
pub struct Included {
    #[serde(default)]
    pub spaces: Vec<Space>,
    #[serde(default)]
    pub organizations: Vec<Named>,
    #[serde(default)]
    pub domains: Vec<Domain>,
}

#[derive(Debug, Deserialize)]
pub struct Relationship {
    pub data: Option<GuidRef>,
}

#[derive(Debug, Deserialize)]
pub struct GuidRef {
    pub guid: String,
}

#[derive(Debug, Deserialize)]
pub struct Named {
    pub guid: String,
    pub name: String,
}

#[derive(Debug, Deserialize)]
pub struct Space {
    pub guid: String,
    pub name: String,
    pub relationships: SpaceRelationships,
}

#[derive(Debug, Deserialize)]
pub struct SpaceRelationships {
    pub organization: Relationship,
}

#[derive(Debug, Deserialize)]
pub struct Domain {
    pub guid: String,
    pub name: String,
    #[serde(default)]
    pub internal: bool,
}

#[derive(Debug, Default, Deserialize)]
pub struct Metadata {
    /// Label values may be `null` in PATCH bodies; in answers they are strings.
    #[serde(default)]
    pub labels: BTreeMap<String, Option<String>>,
}

#[derive(Debug, Deserialize)]
pub struct App {
    pub guid: String,
    pub name: String,
    pub state: String,
    pub relationships: AppRelationships,
    #[serde(default)]
    pub metadata: Metadata,
}

#[derive(Debug, Deserialize)]
pub struct AppRelationships {
    pub space: Relationship,
}

/// A single app answered with `include=space.organization`: `included` sits next to the
/// app's own fields.
#[derive(Debug, Deserialize)]
pub struct AppWithIncluded {
    #[serde(flatten)]
    pub app: App,
    #[serde(default)]
    pub included: Included,
}

#[derive(Debug, Deserialize)]
pub struct Process {
    #[serde(rename = "type")]
    pub process_type: String,
    pub instances: u32,
    pub relationships: ProcessRelationships,
}

#[derive(Debug, Deserialize)]
pub struct ProcessRelationships {
    pub app: Relationship,
}

#[derive(Debug, Deserialize)]
pub struct Route {
    #[serde(default)]
    pub host: String,
    #[serde(default)]
    pub path: String,
    #[serde(default)]
    pub port: Option<u32>,
    #[serde(default)]
    pub protocol: Option<String>,
    #[serde(default)]
    pub destinations: Vec<Destination>,
    pub relationships: RouteRelationships,
}

#[derive(Debug, Deserialize)]
pub struct RouteRelationships {
    pub domain: Relationship,
}

#[derive(Debug, Deserialize)]
pub struct Destination {
    pub app: DestinationApp,
}

#[derive(Debug, Deserialize)]
pub struct DestinationApp {
    pub guid: String,
    #[serde(default)]
    pub process: Option<DestinationProcess>,
}

#[derive(Debug, Deserialize)]
pub struct DestinationProcess {
    #[serde(rename = "type")]
    pub process_type: String,
}

/// The Cloud Controller's error body: `{"errors":[{"detail","title","code"}]}`.
#[derive(Debug, Deserialize)]
pub struct Errors {
    pub errors: Vec<ErrorItem>,
}

#[derive(Debug, Deserialize)]
pub struct ErrorItem {
    #[serde(default)]
    pub detail: String,
    #[serde(default)]
    pub title: String,
}

/// `GET /`: where UAA lives.
#[derive(Debug, Deserialize)]
pub struct Root {
    pub links: RootLinks,
}

#[derive(Debug, Deserialize)]
pub struct RootLinks {
    pub uaa: Option<Link>,
    pub login: Option<Link>,
}

/// An audit event, reduced to what change detection needs.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct AuditEvent {
    pub guid: String,
    /// Second precision, `YYYY-MM-DDThh:mm:ssZ`.
    pub created_at: String,
    #[serde(rename = "type")]
    pub event_type: String,
    #[serde(default)]
    pub target: Option<EventTarget>,
}

#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
pub struct EventTarget {
    pub guid: String,
    #[serde(rename = "type")]
    pub target_type: String,
}

/// `GET /v3/info`: only its rate limits are read.
#[derive(Debug, Deserialize)]
pub struct Info {
    #[serde(default)]
    pub rate_limits: Option<InfoRateLimits>,
}

/// `rate_limits` of `GET /v3/info`, present when the rate limiter is on.
#[derive(Debug, Deserialize)]
pub struct InfoRateLimits {
    #[serde(default = "enabled_by_presence")]
    pub enabled: bool,
    #[serde(default)]
    pub general_limit: Option<u64>,
    /// Whole minutes on a real Cloud Controller.
    #[serde(default)]
    pub reset_interval_in_minutes: Option<f64>,
}

fn enabled_by_presence() -> bool {
    true
}
