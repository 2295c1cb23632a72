//! The lookup table of installed targets: (host, app guid, instance index, path), built
//! from a mapping's installed target groups after each sync that changed them, and read
//! without a lock by every scrape.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use arc_swap::ArcSwap;
use bytes::Bytes;
use serde::Deserialize;

use super::refusal::Refusal;
use super::request::{ScrapeRequest, is_guid};

/// One scrapeable target: an instance of an app on a route host and metrics path.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Target {
    host: Box<str>,
    path: Box<str>,
    index: u32,
}

/// One mapping's installed targets, by app guid.
#[derive(Debug, Default)]
pub struct Routes {
    apps: HashMap<Box<str>, Vec<Target>>,
    hosts: HashSet<Box<str>>,
    targets: usize,
}

#[derive(Deserialize)]
struct Group {
    targets: Vec<String>,
    #[serde(default)]
    labels: HashMap<String, String>,
}

/// The targets a file's groups (a fragment, see [`crate::filesd::Groups`]) make
/// scrapeable: each group's route hosts (no port, no IP literal) with its
/// `__param_cf_app_guid`, `__param_cf_app_instance_index` (`__param_cf_app_instance`
/// consistent with them) and `__metrics_path__` (default `/metrics`). Groups without
/// these are not scrapeable through the gateway.
fn targets_of(fragment: &Bytes) -> Vec<(Box<str>, Target)> {
    let mut json = Vec::with_capacity(fragment.len() + 2);
    json.push(b'[');
    json.extend_from_slice(fragment);
    json.push(b']');
    let Ok(groups) = serde_json::from_slice::<Vec<Group>>(&json) else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for group in groups {
        let label = |name: &str| group.labels.get(name).map(String::as_str);
        let (Some(guid), Some(index_text)) = (
            label("__param_cf_app_guid"),
            label("__param_cf_app_instance_index"),
        ) else {
            continue;
        };
        let Ok(index) = index_text.parse::<u32>() else {
            continue;
        };
        if !is_guid(guid)
            || label("__param_cf_app_instance") != Some(&format!("{guid}:{index_text}"))
        {
            continue;
        }
        let path = label("__metrics_path__").unwrap_or("/metrics");
        for host in &group.targets {
            // A port or an IP literal: the gateway refuses such requests anyway.
            if host.contains(':') || host.parse::<std::net::IpAddr>().is_ok() {
                continue;
            }
            let host = host.strip_suffix('.').unwrap_or(host).to_ascii_lowercase();
            out.push((
                guid.into(),
                Target {
                    host: host.into(),
                    path: path.into(),
                    index,
                },
            ));
        }
    }
    out
}

impl Routes {
    /// Installed targets.
    pub fn len(&self) -> usize {
        self.targets
    }

    pub fn is_empty(&self) -> bool {
        self.targets == 0
    }

    /// Whether `scrape` names an installed target; if not, how it missed.
    pub fn check(&self, scrape: &ScrapeRequest<'_>) -> Result<(), Refusal> {
        let host: &str = &scrape.host;
        let Some(targets) = self.apps.get(&*scrape.app_guid) else {
            return Err(if self.hosts.contains(host) {
                Refusal::UnknownApp
            } else {
                Refusal::UnregisteredHost
            });
        };
        let mut refusal = if self.hosts.contains(host) {
            Refusal::UnknownApp
        } else {
            Refusal::UnregisteredHost
        };
        for target in targets.iter().filter(|t| &*t.host == host) {
            if target.index != scrape.index {
                if refusal.closeness() < Refusal::WrongInstance.closeness() {
                    refusal = Refusal::WrongInstance;
                }
            } else if &*target.path != scrape.path {
                refusal = Refusal::WrongPath;
            } else {
                return Ok(());
            }
        }
        Err(refusal)
    }
}

/// Builds a mapping's [`Routes`] from its installed fragments, parsing only fragments it
/// has not seen in the previous build (a fragment is immutable: same bytes, same targets).
#[derive(Default)]
pub struct RoutesBuilder {
    cache: HashMap<Bytes, FileTargets>,
}

/// A file's targets, each with its app guid.
type FileTargets = Arc<[(Box<str>, Target)]>;

impl RoutesBuilder {
    pub fn build(&mut self, fragments: &[Bytes]) -> Routes {
        let mut cache = HashMap::with_capacity(fragments.len());
        let mut routes = Routes::default();
        for fragment in fragments {
            let parsed = match self.cache.get(fragment) {
                Some(parsed) => parsed.clone(),
                None => Arc::from(targets_of(fragment)),
            };
            for (guid, target) in parsed.iter() {
                routes.hosts.insert(target.host.clone());
                let targets = routes.apps.entry(guid.clone()).or_default();
                if !targets.contains(target) {
                    targets.push(target.clone());
                    routes.targets += 1;
                }
            }
            cache.insert(fragment.clone(), parsed);
        }
        self.cache = cache;
        routes
    }
}

/// The routes of every mapping, each swapped whole when its mapping's sync changed the
/// installed files.
#[derive(Default)]
pub struct RouteTable {
    mappings: Vec<ArcSwap<Routes>>,
}

impl RouteTable {
    pub fn new(mappings: usize) -> RouteTable {
        RouteTable {
            mappings: (0..mappings)
                .map(|_| ArcSwap::from_pointee(Routes::default()))
                .collect(),
        }
    }

    /// How many mappings it has.
    pub fn mappings(&self) -> usize {
        self.mappings.len()
    }

    /// Replaces mapping `i`'s routes.
    pub fn publish(&self, i: usize, routes: Routes) {
        self.mappings[i].store(Arc::new(routes));
    }

    /// Installed targets, over all mappings.
    pub fn len(&self) -> usize {
        self.mappings.iter().map(|m| m.load().len()).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.mappings.iter().all(|m| m.load().is_empty())
    }

    /// The first mapping (in `--mapping` order) that has `scrape`'s target installed: its
    /// index, which picks the scrape's router; if none has, the refusal of the mapping
    /// that came closest.
    pub fn check(&self, scrape: &ScrapeRequest<'_>) -> Result<usize, Refusal> {
        let mut refusal = Refusal::UnregisteredHost;
        for (i, mapping) in self.mappings.iter().enumerate() {
            match mapping.load().check(scrape) {
                Ok(()) => return Ok(i),
                Err(r) if r.closeness() > refusal.closeness() => refusal = r,
                Err(_) => {}
            }
        }
        Err(refusal)
    }
}

#[cfg(test)]
mod tests {
    use std::borrow::Cow;

    use super::*;

    const G: &str = "0e9c9b69-5fb6-46cf-a53f-9c94b49b1bb3";
    const H: &str = "139fd468-5bcc-4d31-baff-0ae3f7945053";

    fn group(host: &str, guid: &str, index: u32, path: Option<&str>) -> String {
        let path = path
            .map(|p| format!(r#","__metrics_path__":"{p}""#))
            .unwrap_or_default();
        format!(
            r#"{{"targets":["{host}"],"labels":{{"__param_cf_app_guid":"{guid}","__param_cf_app_instance_index":"{index}","__param_cf_app_instance":"{guid}:{index}","instance":"{guid}:{index}","job":"x"{path}}}}}"#
        )
    }

    fn scrape<'a>(host: &'a str, guid: &'a str, index: u32, path: &'a str) -> ScrapeRequest<'a> {
        ScrapeRequest {
            host: Cow::Borrowed(host),
            path,
            app_guid: Cow::Borrowed(guid),
            index,
        }
    }

    fn routes(fragments: &[String]) -> Routes {
        let fragments: Vec<Bytes> = fragments.iter().map(|f| Bytes::from(f.clone())).collect();
        RoutesBuilder::default().build(&fragments)
    }

    #[test]
    fn only_an_installed_host_guid_instance_and_path_match() {
        let routes = routes(&[
            format!(
                "{},{}",
                group("Shop.apps.example.com", G, 0, None),
                group("shop.apps.example.com", G, 1, None)
            ),
            group("api.apps.example.com", H, 0, Some("/internal/metrics")),
        ]);
        assert_eq!(routes.len(), 3);
        let check = |host, guid, index, path| routes.check(&scrape(host, guid, index, path));
        assert_eq!(check("shop.apps.example.com", G, 1, "/metrics"), Ok(()));
        assert_eq!(
            check("api.apps.example.com", H, 0, "/internal/metrics"),
            Ok(())
        );
        assert_eq!(
            check("evil.example.com", G, 0, "/metrics"),
            Err(Refusal::UnregisteredHost)
        );
        assert_eq!(
            check(
                "evil.example.com",
                "aaaaaaaa-5fb6-46cf-a53f-9c94b49b1bb3",
                0,
                "/metrics"
            ),
            Err(Refusal::UnregisteredHost)
        );
        assert_eq!(
            check("api.apps.example.com", G, 0, "/metrics"),
            Err(Refusal::UnknownApp)
        );
        assert_eq!(
            check("shop.apps.example.com", H, 0, "/internal/metrics"),
            Err(Refusal::UnknownApp)
        );
        assert_eq!(
            check("shop.apps.example.com", G, 2, "/metrics"),
            Err(Refusal::WrongInstance)
        );
        assert_eq!(
            check("api.apps.example.com", H, 0, "/metrics"),
            Err(Refusal::WrongPath)
        );
    }

    #[test]
    fn groups_without_the_scrape_parameters_or_with_ports_or_ip_targets_are_not_scrapeable() {
        let routes = routes(&[
            r#"{"targets":["a.example.com"],"labels":{"job":"x"}}"#.to_owned(),
            group("b.example.com:9100", G, 0, None),
            group("10.0.0.1", G, 0, None),
            group("c.example.com", "not-a-guid", 0, None),
            format!(
                r#"{{"targets":["d.example.com"],"labels":{{"__param_cf_app_guid":"{G}","__param_cf_app_instance_index":"0","__param_cf_app_instance":"{G}:1"}}}}"#
            ),
            String::new(),
        ]);
        assert!(routes.is_empty(), "{routes:?}");
    }

    #[test]
    fn a_rebuild_drops_what_is_no_longer_installed_and_reuses_what_is() {
        let mut builder = RoutesBuilder::default();
        let a = Bytes::from(group("a.example.com", G, 0, None));
        let b = Bytes::from(group("b.example.com", H, 0, None));
        let first = builder.build(&[a.clone(), b.clone()]);
        assert_eq!(first.len(), 2);
        let second = builder.build(std::slice::from_ref(&b));
        assert_eq!(second.len(), 1);
        assert_eq!(
            second.check(&scrape("a.example.com", G, 0, "/metrics")),
            Err(Refusal::UnregisteredHost)
        );
        assert_eq!(builder.cache.len(), 1);

        let table = RouteTable::new(2);
        table.publish(0, first);
        assert_eq!(
            table.check(&scrape("a.example.com", G, 0, "/metrics")),
            Ok(0)
        );
        table.publish(0, second);
        assert_eq!(
            table.check(&scrape("a.example.com", G, 0, "/metrics")),
            Err(Refusal::UnregisteredHost)
        );
        table.publish(1, builder.build(&[a]));
        assert_eq!(
            table.check(&scrape("a.example.com", G, 0, "/metrics")),
            Ok(1),
            "the mapping that has it"
        );
        assert_eq!(
            table.check(&scrape("a.example.com", G, 3, "/metrics")),
            Err(Refusal::WrongInstance),
            "the closest refusal of all mappings"
        );
        assert_eq!(table.len(), 2);
    }
}
