//! What the simulated gorouter decides, without HTTP: the route and instance pool for a
//! host and path, `X-CF-APP-INSTANCE` validation, round-robin, and the router's own state
//! (request and scrape counters, metrics-auth settings). The rules are in [`crate::router`].

use std::collections::{BTreeMap, HashMap, HashSet};

use serde_json::{Value, json};

use crate::world::{AppState, Route, World};

/// One instance of an app's `web` process, as registered with the router.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    pub app_guid: String,
    pub app_name: String,
    pub process_guid: String,
    pub index: u32,
}

/// What the router does with a request before any app sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    EmptyHost,
    InvalidInstanceHeader,
    /// No route (and no `X-CF-APP-INSTANCE`).
    UnknownRoute,
    /// `X-CF-APP-INSTANCE` names no instance in the route's pool (or there is no route).
    UnknownInstance {
        guid: String,
        index: String,
    },
    /// A route whose apps are all stopped or scaled to 0; `app_guid` = its first app.
    NoEndpoints {
        app_guid: Option<String>,
    },
    Instance(Endpoint),
}

/// Key of the router request counters.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) struct RequestKey {
    pub app_guid: Option<String>,
    pub instance_index: Option<u64>,
    pub path: String,
    pub status: u16,
    pub host: String,
    pub method: String,
}

/// Router and app-instance state: request counters, scrape counters, round-robin
/// positions, the apps that do not check the bearer token and those that check tokens
/// of their own instead of their guid.
#[derive(Debug, Default)]
pub struct RouterState {
    requests: BTreeMap<RequestKey, u64>,
    total: u64,
    scrapes: HashMap<(String, u32), u64>,
    round_robin: HashMap<String, usize>,
    auth_not_required: HashSet<String>,
    /// The bearer tokens an app accepts instead of its guid (as an app reads them from
    /// its bindings' credentials in `VCAP_SERVICES`).
    accepted_tokens: HashMap<String, Vec<String>>,
}

impl RouterState {
    /// `POST /sim/apps/:guid/metrics-auth`: `tokens` = the bearer tokens the app accepts
    /// instead of its guid (`None`: its guid again).
    pub fn set_metrics_auth(
        &mut self,
        app_guid: &str,
        required: bool,
        tokens: Option<Vec<String>>,
    ) {
        if required {
            self.auth_not_required.remove(app_guid);
        } else {
            self.auth_not_required.insert(app_guid.to_string());
        }
        match tokens {
            Some(tokens) => self.accepted_tokens.insert(app_guid.to_string(), tokens),
            None => self.accepted_tokens.remove(app_guid),
        };
    }

    pub fn metrics_auth_required(&self, app_guid: &str) -> bool {
        !self.auth_not_required.contains(app_guid)
    }

    /// Whether an instance of `app_guid` accepts the `Authorization` value `given`:
    /// `Bearer <one of its tokens>` when it was given some, else `Bearer <app guid>`
    /// (the GOV.UK metrics libraries'), anything when it checks nothing.
    pub fn metrics_authorized(&self, app_guid: &str, given: Option<&str>) -> bool {
        if !self.metrics_auth_required(app_guid) {
            return true;
        }
        let Some(token) = given.and_then(|g| g.strip_prefix("Bearer ")) else {
            return false;
        };
        match self.accepted_tokens.get(app_guid) {
            Some(tokens) => tokens.iter().any(|t| t == token),
            None => token == app_guid,
        }
    }

    /// Metrics answers (200s) an instance has given so far.
    pub fn scrapes(&self, app_guid: &str, index: u32) -> u64 {
        self.scrapes
            .get(&(app_guid.to_string(), index))
            .copied()
            .unwrap_or(0)
    }

    /// `DELETE /sim/router/requests` (instances keep their scrape counters).
    pub fn reset_requests(&mut self) {
        self.requests.clear();
        self.total = 0;
    }

    /// `GET /sim/router/requests`.
    pub fn requests_json(&self) -> Value {
        let requests: Vec<Value> = self
            .requests
            .iter()
            .map(|(k, n)| {
                json!({
                    "app_guid": k.app_guid,
                    "instance_index": k.instance_index,
                    "path": k.path,
                    "status": k.status,
                    "host": k.host,
                    "method": k.method,
                    "count": n,
                })
            })
            .collect();
        json!({"total": self.total, "requests": requests})
    }

    pub(crate) fn count(&mut self, key: RequestKey) {
        self.total += 1;
        *self.requests.entry(key).or_insert(0) += 1;
    }

    /// Counts one metrics answer of an instance; returns its scrapes so far, this one
    /// included.
    pub(crate) fn record_scrape(&mut self, app_guid: &str, index: u32) -> u64 {
        let n = self
            .scrapes
            .entry((app_guid.to_string(), index))
            .or_insert(0);
        *n += 1;
        *n
    }

    fn next_round_robin(&mut self, route_guid: &str, len: usize) -> usize {
        let n = self.round_robin.entry(route_guid.to_string()).or_insert(0);
        let pick = *n % len;
        *n = n.wrapping_add(1);
        pick
    }
}

/// `X-CF-APP-INSTANCE` as gorouter validates it:
/// `^[\da-f]{8}-([\da-f]{4}-){3}[\da-f]{12}:\d+$` → `(guid, index)`.
pub fn parse_instance_header(value: &str) -> Option<(&str, &str)> {
    let (guid, index) = value.split_once(':')?;
    let lower_hex = |s: &str| s.bytes().all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'));
    let groups: Vec<&str> = guid.split('-').collect();
    let guid_ok = groups.len() == 5
        && groups
            .iter()
            .zip([8, 4, 4, 4, 12])
            .all(|(g, len)| g.len() == len && lower_hex(g));
    let index_ok = !index.is_empty() && index.bytes().all(|b| b.is_ascii_digit());
    (guid_ok && index_ok).then_some((guid, index))
}

/// Go's `hostWithoutPort`: strips `:port`, keeping bracketed IPv6 literals whole.
pub fn host_without_port(host: &str) -> &str {
    if let Some(rest) = host.strip_prefix('[') {
        return rest.split_once(']').map_or(host, |(h, _)| h);
    }
    match host.rsplit_once(':') {
        Some((h, port)) if !h.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => h,
        _ => host,
    }
}

fn host_matches(request_host: &str, route_host: &str, domain: &str) -> bool {
    if route_host.is_empty() {
        return request_host.eq_ignore_ascii_case(domain);
    }
    request_host.len() == route_host.len() + 1 + domain.len()
        && request_host
            .get(..route_host.len())
            .is_some_and(|h| h.eq_ignore_ascii_case(route_host))
        && request_host.as_bytes()[route_host.len()] == b'.'
        && request_host
            .get(route_host.len() + 1..)
            .is_some_and(|d| d.eq_ignore_ascii_case(domain))
}

/// Whole-segment, case-insensitive prefix match (gorouter's trie); `""` matches all.
fn path_matches(route_path: &str, request_path: &str) -> bool {
    let route_path = route_path.trim_end_matches('/');
    if route_path.is_empty() {
        return true;
    }
    request_path
        .get(..route_path.len())
        .is_some_and(|p| p.eq_ignore_ascii_case(route_path))
        && matches!(
            request_path.as_bytes().get(route_path.len()),
            None | Some(b'/')
        )
}

/// The route gorouter would pick for `host` (no port) and `path`, with its pool.
pub fn lookup<'w>(world: &'w World, host: &str, path: &str) -> Option<(&'w Route, Vec<Endpoint>)> {
    let route = world
        .routes
        .iter()
        .filter(|r| path_matches(&r.path, path))
        .filter(|r| {
            world
                .domains
                .get(&r.domain_guid)
                .is_some_and(|d| !d.internal && host_matches(host, &r.host, &d.name))
        })
        // Routes without a destination are not registered with the router at all.
        .filter(|r| {
            r.destinations
                .iter()
                .any(|d| d.process_type == "web" && world.apps.contains(&d.app_guid))
        })
        .max_by_key(|r| r.path.trim_end_matches('/').len())?;
    let mut pool = Vec::new();
    let mut seen = HashSet::new();
    for d in route
        .destinations
        .iter()
        .filter(|d| d.process_type == "web")
    {
        let Some(app) = world.apps.get(&d.app_guid) else {
            continue;
        };
        if app.state != AppState::Started || !seen.insert(app.guid.as_str()) {
            continue;
        }
        for p in world.processes_of(&app.guid) {
            if p.process_type != "web" {
                continue;
            }
            pool.extend((0..p.instances).map(|index| Endpoint {
                app_guid: app.guid.clone(),
                app_name: app.name.clone(),
                process_guid: p.guid.clone(),
                index,
            }));
        }
    }
    Some((route, pool))
}

/// The router's decision for one request (`instance_header`: a non-empty
/// `X-CF-APP-INSTANCE`). Round-robin advances in `router`.
pub fn decide(
    world: &World,
    router: &mut RouterState,
    raw_host: &str,
    path: &str,
    instance_header: Option<&str>,
    peer_ip: Option<&str>,
) -> Decision {
    let host = host_without_port(raw_host);
    if host.is_empty() || peer_ip.is_some_and(|ip| host_without_port(ip) == host) {
        return Decision::EmptyHost;
    }
    let wanted = match instance_header {
        None => None,
        Some(v) => match parse_instance_header(v) {
            Some(w) => Some(w),
            None => return Decision::InvalidInstanceHeader,
        },
    };
    let found = lookup(world, host, path);
    if let Some((guid, index)) = wanted {
        let hit = found.and_then(|(_, pool)| {
            pool.into_iter()
                .find(|e| e.app_guid == guid && e.index.to_string() == index)
        });
        return match hit {
            Some(e) => Decision::Instance(e),
            None => Decision::UnknownInstance {
                guid: guid.to_string(),
                index: index.to_string(),
            },
        };
    }
    match found {
        None => Decision::UnknownRoute,
        Some((route, pool)) if pool.is_empty() => Decision::NoEndpoints {
            app_guid: route
                .destinations
                .iter()
                .find(|d| d.process_type == "web" && world.apps.contains(&d.app_guid))
                .map(|d| d.app_guid.clone()),
        },
        Some((route, mut pool)) => {
            let pick = router.next_round_robin(&route.guid, pool.len());
            Decision::Instance(pool.swap_remove(pick))
        }
    }
}

/// Escapes a Prometheus label value.
fn label(value: &str) -> String {
    value
        .replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

/// The metrics page of one instance (after `scrapes` answers, this one included).
pub fn metrics_body(e: &Endpoint, scrapes: u64) -> String {
    format!(
        "# HELP cf_sim_instance_info The simulated app instance that answered.\n\
         # TYPE cf_sim_instance_info gauge\n\
         cf_sim_instance_info{{app_guid=\"{}\",app_name=\"{}\",instance_index=\"{}\",process_guid=\"{}\"}} 1\n\
         # HELP cf_sim_instance_scrapes_total Metrics requests this instance has answered.\n\
         # TYPE cf_sim_instance_scrapes_total counter\n\
         cf_sim_instance_scrapes_total {scrapes}\n",
        label(&e.app_guid),
        label(&e.app_name),
        e.index,
        label(&e.process_guid),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instance_headers_are_validated_like_gorouter() {
        let guid = "aaaaaaaa-bbbb-4ccc-8ddd-0123456789ef";
        assert_eq!(
            parse_instance_header(&format!("{guid}:0")),
            Some((guid, "0"))
        );
        assert_eq!(
            parse_instance_header(&format!("{guid}:12")),
            Some((guid, "12"))
        );
        for bad in [
            format!("{guid}%3A0"),
            format!("{guid}:"),
            format!("{guid}:x"),
            format!("{guid}:1:2"),
            format!("{guid}: 1"),
            format!("{}:0", guid.to_uppercase()),
            format!("{guid}0:0"),
            "app-guid:0".to_string(),
            String::new(),
        ] {
            assert_eq!(parse_instance_header(&bad), None, "{bad}");
        }
    }

    #[test]
    fn hosts_lose_their_port_but_not_ipv6() {
        assert_eq!(host_without_port("a.example.com:8080"), "a.example.com");
        assert_eq!(host_without_port("a.example.com"), "a.example.com");
        assert_eq!(host_without_port("[::1]:80"), "::1");
        assert_eq!(host_without_port("::1"), "::1");
    }

    #[test]
    fn paths_match_whole_segments_case_insensitively() {
        assert!(path_matches("", "/anything"));
        assert!(path_matches("/metrics", "/metrics"));
        assert!(path_matches("/metrics", "/Metrics/x"));
        assert!(!path_matches("/metrics", "/metricsx"));
        assert!(!path_matches("/internal/metrics", "/internal"));
        assert!(host_matches(
            "api.apps.example.com",
            "api",
            "apps.example.com"
        ));
        assert!(host_matches(
            "API.apps.example.com",
            "api",
            "apps.example.com"
        ));
        assert!(host_matches("apps.example.com", "", "apps.example.com"));
        assert!(!host_matches(
            "xapi.apps.example.com",
            "api",
            "apps.example.com"
        ));
        assert!(!host_matches(
            "api.apps.example.com",
            "",
            "apps.example.com"
        ));
    }

    #[test]
    fn label_values_are_escaped() {
        let e = Endpoint {
            app_guid: "g".into(),
            app_name: "a\"b\\c".into(),
            process_guid: "p".into(),
            index: 3,
        };
        let body = metrics_body(&e, 7);
        assert!(
            body.contains(r#"app_name="a\"b\\c",instance_index="3""#),
            "{body}"
        );
        assert!(
            body.contains("\ncf_sim_instance_scrapes_total 7\n"),
            "{body}"
        );
    }
}
