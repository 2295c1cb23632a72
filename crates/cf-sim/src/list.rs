//! The one list machinery of every CC list endpoint: candidate rows (a `guids` filter,
//! `label_selector`, `created_ats`/`updated_ats`), filters, ordering, pagination and the
//! list envelope, plus the helpers for `include`d and `fields`-reduced related resources.
//!
//! Handlers parse their [`ListQuery`], take [`candidates`], `retain` by their own
//! filters (with [`Filter`]) and answer with [`list_response`] (or
//! [`cached_list_response`] for the big lists a reconciler reads every pass).

use std::collections::{BTreeMap, HashSet};

use actix_web::HttpResponse;
use serde_json::{Map, Value, json};

use crate::cache::PresentedCache;
use crate::http::json_response;
use crate::query::{ListQuery, OrderBy};
use crate::world::{
    App, CredentialBinding, Domain, Event, Org, Process, Route, ServiceInstance, ServiceOffering,
    ServicePlan, Space, Table,
};

/// What every listed resource has.
pub trait Listed {
    fn guid(&self) -> &str;
    fn created_at(&self) -> i64;
    fn updated_at(&self) -> i64;
    /// The key of `order_by=name` (empty where a resource has no name).
    fn sort_name(&self) -> &str {
        ""
    }
    /// The key of `order_by=state` (apps only).
    fn sort_state(&self) -> &str {
        ""
    }
    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        None
    }
}

macro_rules! listed {
    ($t:ty, updated: $u:ident $(, name: |$s:ident| $name:expr)?) => {
        impl Listed for $t {
            fn guid(&self) -> &str {
                &self.guid
            }
            fn created_at(&self) -> i64 {
                self.created_at
            }
            fn updated_at(&self) -> i64 {
                self.$u
            }
            $(fn sort_name(&self) -> &str {
                let $s = self;
                $name
            })?
        }
    };
}

impl Listed for App {
    fn guid(&self) -> &str {
        &self.guid
    }
    fn created_at(&self) -> i64 {
        self.created_at
    }
    fn updated_at(&self) -> i64 {
        self.updated_at
    }
    fn sort_name(&self) -> &str {
        &self.name
    }
    fn sort_state(&self) -> &str {
        self.state.as_str()
    }
    fn labels(&self) -> Option<&BTreeMap<String, String>> {
        Some(&self.labels)
    }
}
listed!(Process, updated: updated_at);
listed!(Route, updated: updated_at);
listed!(Domain, updated: updated_at, name: |s| &s.name);
listed!(Space, updated: updated_at, name: |s| &s.name);
listed!(Org, updated: updated_at, name: |s| &s.name);
listed!(Event, updated: created_at);
listed!(ServiceOffering, updated: updated_at, name: |s| &s.name);
listed!(ServicePlan, updated: updated_at, name: |s| &s.name);
listed!(ServiceInstance, updated: updated_at, name: |s| &s.name);
listed!(CredentialBinding, updated: updated_at, name: |s| s.name.as_deref().unwrap_or(""));

static NO_LABELS: BTreeMap<String, String> = BTreeMap::new();

/// Rows in creation order: only the named ones when a `guids` filter is given (O(k)),
/// else all of them (O(n)); then the common filters (`label_selector`, timestamps).
pub fn candidates<'a, T: Listed>(table: &'a Table<T>, q: &ListQuery) -> Vec<(u64, &'a T)> {
    let mut rows: Vec<(u64, &T)> = match q.filter("guids") {
        Some(guids) => {
            let mut seen = HashSet::new();
            let mut rows: Vec<(u64, &T)> = guids
                .iter()
                .filter(|g| seen.insert(g.as_str()))
                .filter_map(|g| Some((table.seq_of(g)?, table.get(g)?)))
                .collect();
            rows.sort_by_key(|(seq, _)| *seq);
            rows
        }
        None => table.iter_seq().collect(),
    };
    if !q.label_selector.is_empty() || !q.timestamps.is_empty() {
        rows.retain(|(_, r)| {
            q.labels_match(r.labels().unwrap_or(&NO_LABELS))
                && q.timestamps_match(r.created_at(), r.updated_at())
        });
    }
    rows
}

fn order<T: Listed>(rows: &mut [(u64, &T)], order_by: &Option<OrderBy>) {
    let Some(o) = order_by else {
        return; // creation order
    };
    match o.field.as_str() {
        "created_at" => rows.sort_by_key(|(s, r)| (r.created_at(), *s)),
        "updated_at" => rows.sort_by_key(|(s, r)| (r.updated_at(), *s)),
        "name" => rows.sort_by(|a, b| (a.1.sort_name(), a.0).cmp(&(b.1.sort_name(), b.0))),
        "state" => rows.sort_by(|a, b| (a.1.sort_state(), a.0).cmp(&(b.1.sort_state(), b.0))),
        _ => {}
    }
    if o.descending {
        rows.reverse();
    }
}

/// Orders, paginates and presents; `included` gets the page's rows.
pub fn list_response<'a, T: Listed>(
    q: &ListQuery,
    url: &str,
    mut rows: Vec<(u64, &'a T)>,
    present: impl Fn(&T) -> Value,
    included: impl FnOnce(&[(u64, &'a T)]) -> Option<Value>,
) -> HttpResponse {
    order(&mut rows, &q.order_by);
    let (page, pagination) = q.paginate(&rows, url);
    let mut body = json!({
        "pagination": pagination,
        "resources": page.iter().map(|(_, r)| present(r)).collect::<Vec<_>>(),
    });
    if let Some(inc) = included(page) {
        body["included"] = inc;
    }
    json_response(200, &body)
}

/// Where [`cached_list_response`] keeps serialised resources: the cache, the world
/// generation read under the same world guard as the rows, and the presenter's name.
pub struct Cached<'c> {
    pub cache: &'c PresentedCache,
    pub generation: u64,
    pub kind: &'static str,
}

/// [`list_response`] for the big lists a reconciler reads every pass (apps, processes,
/// routes): the page's resources come serialised from the [`PresentedCache`] and the
/// body is written around them. The same JSON as `list_response` would give.
pub fn cached_list_response<'a, T: Listed>(
    cached: Cached<'_>,
    q: &ListQuery,
    url: &str,
    mut rows: Vec<(u64, &'a T)>,
    present: impl Fn(&T) -> Value,
    included: impl FnOnce(&[(u64, &'a T)]) -> Option<Value>,
) -> HttpResponse {
    order(&mut rows, &q.order_by);
    let (page, pagination) = q.paginate(&rows, url);
    let items = cached
        .cache
        .presented(cached.generation, cached.kind, page, |r| r.guid(), present);
    let included = included(page);
    let mut body = Vec::with_capacity(items.iter().map(|i| i.len() + 1).sum::<usize>() + 1024);
    let write = |body: &mut Vec<u8>, value: &Value| {
        serde_json::to_writer(body, value).expect("serialising JSON cannot fail")
    };
    body.extend_from_slice(b"{\"pagination\":");
    write(&mut body, &pagination);
    body.extend_from_slice(b",\"resources\":[");
    for (i, item) in items.iter().enumerate() {
        if i > 0 {
            body.push(b',');
        }
        body.extend_from_slice(item.as_bytes());
    }
    body.push(b']');
    if let Some(included) = included {
        body.extend_from_slice(b",\"included\":");
        write(&mut body, &included);
    }
    body.push(b'}');
    HttpResponse::Ok()
        .content_type("application/json; charset=utf-8")
        .body(body)
}

/// A comma-list filter of a query as a set; not given keeps everything.
pub struct Filter<'q>(Option<HashSet<&'q str>>);

impl<'q> Filter<'q> {
    pub fn of(q: &'q ListQuery, name: &str) -> Self {
        Self(
            q.filter(name)
                .map(|vs| vs.iter().map(String::as_str).collect()),
        )
    }

    pub fn is_given(&self) -> bool {
        self.0.is_some()
    }

    /// Not given, or `value` is one of the filter's values.
    pub fn keeps(&self, value: &str) -> bool {
        self.0.as_ref().is_none_or(|s| s.contains(value))
    }

    /// Not given, or one of `values` is one of the filter's values.
    pub fn keeps_any<'v>(&self, mut values: impl Iterator<Item = &'v str>) -> bool {
        self.0
            .as_ref()
            .is_none_or(|s| values.any(|v| s.contains(v)))
    }

    /// Not given, or there is a `value` and it is one of the filter's values.
    pub fn keeps_some(&self, value: Option<&str>) -> bool {
        match &self.0 {
            None => true,
            Some(s) => value.is_some_and(|v| s.contains(v)),
        }
    }
}

/// Related resources as CCNG's include decorators list them: each once, sorted by
/// `created_at`, then guid.
pub fn sorted_unique<'a, T: Listed>(items: impl IntoIterator<Item = &'a T>) -> Vec<&'a T> {
    let mut seen = HashSet::new();
    let mut out: Vec<&T> = items
        .into_iter()
        .filter(|r| seen.insert(r.guid().to_owned()))
        .collect();
    out.sort_by(|a, b| (a.created_at(), a.guid()).cmp(&(b.created_at(), b.guid())));
    out
}

/// `full` reduced to `keys` (`fields[RESOURCE]=keys`); a dotted key
/// (`relationships.organization`) keeps that path.
pub fn pick(full: &Value, keys: &[String]) -> Value {
    let mut out = Value::Object(Map::new());
    for key in keys {
        let path: Vec<&str> = key.split('.').collect();
        let mut source = full;
        let mut found = true;
        for part in &path {
            match source.get(part) {
                Some(v) => source = v,
                None => {
                    found = false;
                    break;
                }
            }
        }
        if !found {
            continue;
        }
        let mut target = &mut out;
        for part in &path[..path.len() - 1] {
            target = target
                .as_object_mut()
                .expect("built from objects")
                .entry(part.to_string())
                .or_insert_with(|| Value::Object(Map::new()));
        }
        target
            .as_object_mut()
            .expect("built from objects")
            .insert(path[path.len() - 1].to_string(), source.clone());
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pick_keeps_only_the_keys_asked_for_including_dotted_paths() {
        let full = json!({
            "guid": "g",
            "name": "n",
            "relationships": {"organization": {"data": {"guid": "o"}}, "quota": 1},
        });
        assert_eq!(
            pick(&full, &["guid".into(), "relationships.organization".into()]),
            json!({"guid": "g", "relationships": {"organization": {"data": {"guid": "o"}}}})
        );
        assert_eq!(pick(&full, &[]), json!({}));
    }
}
