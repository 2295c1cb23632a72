//! From what the Cloud Controller says about an app to the bytes of its target file.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::AppGuid;
use crate::params::BindingParams;

/// Start commands of the platform's own exporters. Their targets carry no `space` label
/// (they report on every space), as the original broker did.
pub const EXPORTER_COMMANDS: [&str; 2] = [
    "./bin/paas-metric-exporter",
    "./bin/paas-prometheus-exporter",
];

/// Scrape timeout Prometheus uses when a job sets none; a target whose interval is shorter
/// than its timeout is rejected by Prometheus, see [`build_target_file`].
const PROMETHEUS_DEFAULT_SCRAPE_TIMEOUT_MS: u64 = 10_000;

/// The desired state of an app, as the Cloud Controller reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "UPPERCASE")]
pub enum AppState {
    Started,
    Stopped,
}

/// One route of an app, reduced to what target building needs.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Route {
    /// May be empty (a route on the apex of the domain).
    pub host: String,
    /// The domain's name, e.g. `apps.example.com`.
    pub domain: String,
    /// Empty, or starting with `/`.
    #[serde(default)]
    pub path: String,
    /// Routes on internal domains (`apps.internal`) are not reachable through the router.
    #[serde(default)]
    pub internal: bool,
}

impl Route {
    fn hostname(&self) -> String {
        if self.host.is_empty() {
            self.domain.clone()
        } else {
            format!("{}.{}", self.host, self.domain)
        }
    }
}

/// Everything about one app that its targets depend on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AppInfo {
    pub guid: AppGuid,
    pub name: String,
    pub state: AppState,
    /// The web process' desired instance count.
    pub instances: u32,
    pub org: String,
    pub space: String,
    /// HTTP routes mapped to the web process, in the Cloud Controller's order.
    #[serde(default)]
    pub routes: Vec<Route>,
    /// The detected start command, where the Cloud Controller shows it (v3 redacts it in
    /// lists and for users who may not read secrets).
    #[serde(default)]
    pub start_command: Option<String>,
    /// Set when the app carries the operator's exporter label (see `EXPORTER_LABEL`).
    #[serde(default)]
    pub exporter_label: bool,
}

impl AppInfo {
    /// Whether the app is one of the platform's own exporters.
    pub fn is_platform_exporter(&self) -> bool {
        self.exporter_label
            || self
                .start_command
                .as_deref()
                .is_some_and(|c| EXPORTER_COMMANDS.contains(&c.trim()))
    }

    /// `job` label: the app name with a trailing `-venerable` removed, so that
    /// blue-green deploys (autopilot renames the old app `<name>-venerable`) keep one job.
    pub fn job(&self) -> &str {
        self.name.strip_suffix("-venerable").unwrap_or(&self.name)
    }
}

/// Target-building settings that come from configuration, not from the app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelConfig {
    /// `PAAS_DOMAIN`: used to guess `<app name>.<PAAS_DOMAIN>` for an app with no public route.
    pub paas_domain: String,
}

/// One Prometheus `file_sd` target group. Only `targets` and `labels`, as file_sd wants.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TargetGroup {
    pub targets: Vec<String>,
    /// Sorted, so serialisation is deterministic.
    pub labels: BTreeMap<String, String>,
}

/// Where the scrape goes: the chosen hostname and metrics path.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub hostname: String,
    /// The `__metrics_path__` label, `None` to let Prometheus use `/metrics`.
    pub metrics_path: Option<String>,
    /// True when the app had no public route and the hostname was guessed.
    pub guessed: bool,
}

/// A built target file: the groups and its exact bytes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TargetFile {
    pub groups: Vec<TargetGroup>,
    pub endpoint: Endpoint,
}

impl TargetFile {
    /// The file's bytes: pretty-printed JSON (two-space indent, sorted label keys) with a
    /// final newline. Deterministic, so "did it change?" is a byte (or MD5/ETag) comparison.
    pub fn to_bytes(&self) -> Vec<u8> {
        let mut out =
            serde_json::to_vec_pretty(&self.groups).expect("target groups always serialise");
        out.push(b'\n');
        out
    }
}

/// Chooses the route Prometheus scrapes (DESIGN.md section 3): routes on internal domains
/// are ignored; among the rest, the first whose path ends with `metrics` wins, otherwise
/// the first one; with none, `<app name>.<PAAS_DOMAIN>` is guessed.
pub fn choose_endpoint(app: &AppInfo, config: &ModelConfig, params: &BindingParams) -> Endpoint {
    let mut public = app.routes.iter().filter(|r| !r.internal).peekable();
    let chosen = match public.peek() {
        None => None,
        Some(first) => {
            let first = *first;
            Some(
                public
                    .find(|r| r.path.ends_with("metrics"))
                    .unwrap_or(first),
            )
        }
    };
    let (hostname, route_path, guessed) = match chosen {
        Some(route) => (route.hostname(), route.path.as_str(), false),
        None => (format!("{}.{}", app.name, config.paas_domain), "", true),
    };
    let metrics_path = match &params.path {
        Some(p) => Some(p.as_str().to_owned()),
        None if route_path.ends_with("metrics") => Some(route_path.to_owned()),
        None if !route_path.is_empty() => Some(format!("{route_path}/metrics")),
        None => None,
    };
    Endpoint {
        hostname,
        metrics_path,
        guessed,
    }
}

/// Builds an app's target file: one group per instance index `0..instances`, each with
/// the label set of DESIGN.md section 3, plus the binding's extra labels and scrape interval.
pub fn build_target_file(
    app: &AppInfo,
    config: &ModelConfig,
    params: &BindingParams,
) -> TargetFile {
    let endpoint = choose_endpoint(app, config, params);
    let guid = app.guid.as_str();

    let mut common: BTreeMap<String, String> = params
        .labels
        .iter()
        .map(|(k, v)| (k.as_str().to_owned(), v.clone()))
        .collect();
    common.insert("__param_cf_app_guid".into(), guid.to_owned());
    common.insert("job".into(), app.job().to_owned());
    common.insert("org".into(), app.org.clone());
    if !app.is_platform_exporter() {
        common.insert("space".into(), app.space.clone());
    }
    if let Some(path) = &endpoint.metrics_path {
        common.insert("__metrics_path__".into(), path.clone());
    }
    if let Some(interval) = &params.scrape_interval {
        common.insert("__scrape_interval__".into(), interval.as_str().to_owned());
        // Prometheus drops a target whose scrape timeout exceeds its interval; the job's
        // timeout is unknown here, so a short interval brings its own equal timeout.
        if interval.as_millis() < PROMETHEUS_DEFAULT_SCRAPE_TIMEOUT_MS {
            common.insert("__scrape_timeout__".into(), interval.as_str().to_owned());
        }
    }

    let groups = (0..app.instances)
        .map(|i| {
            let instance = format!("{guid}:{i}");
            let mut labels = common.clone();
            labels.insert("__param_cf_app_instance_index".into(), i.to_string());
            labels.insert("__param_cf_app_instance".into(), instance.clone());
            labels.insert("instance".into(), instance);
            TargetGroup {
                targets: vec![endpoint.hostname.clone()],
                labels,
            }
        })
        .collect();
    TargetFile { groups, endpoint }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn app(routes: Vec<Route>) -> AppInfo {
        AppInfo {
            guid: AppGuid::parse("5b2b0e2e-7d1c-4f43-9a57-1a0c6f0d2a01").unwrap(),
            name: "shop".into(),
            state: AppState::Started,
            instances: 3,
            org: "o".into(),
            space: "s".into(),
            routes,
            start_command: None,
            exporter_label: false,
        }
    }

    fn config() -> ModelConfig {
        ModelConfig {
            paas_domain: "cloudapps.example.org".into(),
        }
    }

    #[test]
    fn an_app_with_no_routes_gets_the_documented_guess_and_says_so() {
        let e = choose_endpoint(&app(vec![]), &config(), &BindingParams::default());
        assert_eq!(e.hostname, "shop.cloudapps.example.org");
        assert_eq!(e.metrics_path, None);
        assert!(e.guessed);
    }

    #[test]
    fn a_public_route_is_not_a_guess() {
        let route = Route {
            host: "shop".into(),
            domain: "example.com".into(),
            path: String::new(),
            internal: false,
        };
        let e = choose_endpoint(&app(vec![route]), &config(), &BindingParams::default());
        assert!(!e.guessed);
    }

    #[test]
    fn instance_labels_count_up_from_zero() {
        let file = build_target_file(&app(vec![]), &config(), &BindingParams::default());
        let indexes: Vec<_> = file
            .groups
            .iter()
            .map(|g| g.labels["__param_cf_app_instance_index"].as_str())
            .collect();
        assert_eq!(indexes, ["0", "1", "2"]);
        assert_eq!(
            file.groups[2].labels["instance"],
            "5b2b0e2e-7d1c-4f43-9a57-1a0c6f0d2a01:2"
        );
    }

    #[test]
    fn a_start_command_with_surrounding_spaces_still_marks_an_exporter() {
        let mut a = app(vec![]);
        a.start_command = Some(" ./bin/paas-metric-exporter ".into());
        assert!(a.is_platform_exporter());
    }
}
