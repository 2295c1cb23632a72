//! CC v3 list queries: parameter validation, filters, label selectors, ordering and the
//! pagination object with its absolute, Rails-`to_query`-style links.
//!
//! Everything here is pure (no state, no HTTP), so it is unit-tested directly.

use std::collections::BTreeMap;

use serde_json::{Value, json};

use crate::error::CcError;
use crate::util::{cgi_escape, parse_ts};

/// Default and maximum `per_page` (CCNG `pagination_options.rb`).
pub const DEFAULT_PER_PAGE: usize = 50;
pub const MAX_PER_PAGE: usize = 5000;

/// What one list endpoint accepts.
#[derive(Debug, Clone, Copy)]
pub struct ListSpec {
    /// Every accepted parameter, in the order the error message lists them.
    pub params: &'static [&'static str],
    /// Fields accepted by `order_by` (each also with a `-` prefix).
    pub order_by: &'static [&'static str],
    /// Values accepted by `include`.
    pub includes: &'static [&'static str],
}

/// Timestamp comparison in `created_ats[op]` / `updated_ats[op]`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TsOp {
    Eq,
    Lt,
    Lte,
    Gt,
    Gte,
}

impl TsOp {
    fn matches(self, value: i64, bound: i64) -> bool {
        match self {
            TsOp::Eq => value == bound,
            TsOp::Lt => value < bound,
            TsOp::Lte => value <= bound,
            TsOp::Gt => value > bound,
            TsOp::Gte => value >= bound,
        }
    }
}

/// One label-selector requirement (`GET /v3/apps?label_selector=...`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LabelReq {
    Exists(String),
    NotExists(String),
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
}

impl LabelReq {
    pub fn matches(&self, labels: &BTreeMap<String, String>) -> bool {
        match self {
            LabelReq::Exists(k) => labels.contains_key(k),
            LabelReq::NotExists(k) => !labels.contains_key(k),
            LabelReq::Equals(k, v) => labels.get(k) == Some(v),
            LabelReq::NotEquals(k, v) => labels.get(k) != Some(v),
            LabelReq::In(k, vs) => labels.get(k).is_some_and(|v| vs.contains(v)),
            LabelReq::NotIn(k, vs) => labels.get(k).is_none_or(|v| !vs.contains(v)),
        }
    }
}

/// Parses a Kubernetes-style selector: `a=b,c!=d,e,!f,g in (h,i),j notin (k)`.
pub fn parse_label_selector(s: &str) -> Result<Vec<LabelReq>, String> {
    let invalid = || format!("Invalid label_selector value: '{s}'");
    // Split on commas outside parentheses.
    let mut parts = Vec::new();
    let mut depth = 0i32;
    let mut current = String::new();
    for c in s.chars() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            _ => {}
        }
        if depth < 0 {
            return Err(invalid());
        }
        if c == ',' && depth == 0 {
            parts.push(std::mem::take(&mut current));
        } else {
            current.push(c);
        }
    }
    if depth != 0 {
        return Err(invalid());
    }
    parts.push(current);

    let valid_key = |k: &str| {
        !k.is_empty()
            && k.chars()
                .all(|c| c.is_ascii_alphanumeric() || "-_./".contains(c))
    };
    let set_values = |rest: &str| -> Option<Vec<String>> {
        let inner = rest.trim().strip_prefix('(')?.strip_suffix(')')?;
        let values: Vec<String> = inner.split(',').map(|v| v.trim().to_string()).collect();
        (!values.iter().any(String::is_empty)).then_some(values)
    };

    let mut reqs = Vec::new();
    for part in parts {
        let part = part.trim();
        let req = if let Some(key) = part.strip_prefix('!') {
            valid_key(key).then(|| LabelReq::NotExists(key.to_string()))
        } else if let Some((k, rest)) = part.split_once(" notin ") {
            set_values(rest).map(|vs| LabelReq::NotIn(k.trim().to_string(), vs))
        } else if let Some((k, rest)) = part.split_once(" in ") {
            set_values(rest).map(|vs| LabelReq::In(k.trim().to_string(), vs))
        } else if let Some((k, v)) = part.split_once("!=") {
            Some(LabelReq::NotEquals(k.to_string(), v.to_string()))
        } else if let Some((k, v)) = part.split_once("==") {
            Some(LabelReq::Equals(k.to_string(), v.to_string()))
        } else if let Some((k, v)) = part.split_once('=') {
            Some(LabelReq::Equals(k.to_string(), v.to_string()))
        } else {
            valid_key(part).then(|| LabelReq::Exists(part.to_string()))
        };
        match req {
            Some(r) if valid_key(label_key(&r)) => reqs.push(r),
            _ => return Err(invalid()),
        }
    }
    Ok(reqs)
}

fn label_key(r: &LabelReq) -> &str {
    match r {
        LabelReq::Exists(k)
        | LabelReq::NotExists(k)
        | LabelReq::Equals(k, _)
        | LabelReq::NotEquals(k, _)
        | LabelReq::In(k, _)
        | LabelReq::NotIn(k, _) => k,
    }
}

/// Sort order requested with `order_by`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OrderBy {
    pub field: String,
    pub descending: bool,
}

/// A validated list query.
#[derive(Debug, Clone, Default)]
pub struct ListQuery {
    pub page: usize,
    pub per_page: usize,
    pub order_by: Option<OrderBy>,
    pub include: Vec<String>,
    pub label_selector: Vec<LabelReq>,
    /// Comma-list filters (`guids`, `names`, `app_guids`, ...), values as given.
    pub filters: BTreeMap<String, Vec<String>>,
    /// `target_guids[not]`-style negated filters.
    pub not_filters: BTreeMap<String, Vec<String>>,
    /// `fields[RESOURCE]=key,key` (sparse related resources, e.g. `fields[space]=guid`),
    /// for the endpoints whose spec lists `fields`; the handler checks resources and keys.
    pub fields: BTreeMap<String, Vec<String>>,
    /// `created_ats` / `updated_ats` comparisons: (field, op, bounds).
    pub timestamps: Vec<(String, TsOp, Vec<i64>)>,
    /// Every parameter except `page`/`per_page`, decoded, for the pagination links.
    link_params: Vec<(String, String)>,
}

impl ListQuery {
    /// Parses and validates a raw query string against `spec`, reporting problems the
    /// way the CC does (one 400 CF-BadQueryParameter listing them all).
    pub fn parse(raw: &str, spec: &ListSpec) -> Result<Self, CcError> {
        let mut q = ListQuery {
            page: 1,
            per_page: DEFAULT_PER_PAGE,
            ..Default::default()
        };
        let mut unknown: Vec<String> = Vec::new();
        let mut errors: Vec<String> = Vec::new();
        // Last value wins for repeated keys, like Rails.
        let mut params: BTreeMap<String, String> = BTreeMap::new();
        for (k, v) in url::form_urlencoded::parse(raw.as_bytes()) {
            params.insert(k.into_owned(), v.into_owned());
        }

        for (key, value) in &params {
            let (base, op) = match key.split_once('[') {
                Some((base, rest)) => (base, rest.strip_suffix(']')),
                None => (key.as_str(), None),
            };
            if !spec.params.contains(&base) {
                if !unknown.iter().any(|u| u == base) {
                    unknown.push(base.to_string());
                }
                continue;
            }
            match base {
                "page" => match value.parse::<i64>() {
                    Ok(p) if p >= 1 => q.page = p as usize,
                    _ => errors.push("Page must be greater than 0".into()),
                },
                "per_page" => match value.parse::<i64>() {
                    Ok(p) if (1..=MAX_PER_PAGE as i64).contains(&p) => q.per_page = p as usize,
                    Ok(_) => errors.push(format!("Per page must be between 1 and {MAX_PER_PAGE}")),
                    Err(_) => errors.push("Per page is not a number".into()),
                },
                "order_by" => {
                    let (descending, field) = match value.strip_prefix('-') {
                        Some(f) => (true, f),
                        None => (false, value.strip_prefix('+').unwrap_or(value)),
                    };
                    if spec.order_by.contains(&field) {
                        q.order_by = Some(OrderBy {
                            field: field.to_string(),
                            descending,
                        });
                    } else {
                        errors.push(format!(
                            "Order by can only be: '{}'",
                            spec.order_by.join("', '")
                        ));
                    }
                }
                "include" => {
                    for inc in value.split(',') {
                        if spec.includes.contains(&inc) {
                            q.include.push(inc.to_string());
                        } else {
                            errors.push(format!(
                                "Invalid included resource: '{inc}'. Valid included resources are: '{}'",
                                spec.includes.join("', '")
                            ));
                        }
                    }
                }
                "label_selector" => match parse_label_selector(value) {
                    Ok(reqs) => q.label_selector = reqs,
                    Err(e) => errors.push(e),
                },
                "created_ats" | "updated_ats" => {
                    let op = match op {
                        None => Some(TsOp::Eq),
                        Some("lt") => Some(TsOp::Lt),
                        Some("lte") => Some(TsOp::Lte),
                        Some("gt") => Some(TsOp::Gt),
                        Some("gte") => Some(TsOp::Gte),
                        Some(_) => None,
                    };
                    let human = if base == "created_ats" {
                        "Created ats"
                    } else {
                        "Updated ats"
                    };
                    let Some(op) = op else {
                        errors.push(format!("{human} has an invalid relational operator"));
                        continue;
                    };
                    let bounds: Option<Vec<i64>> = value.split(',').map(parse_ts).collect();
                    match bounds {
                        Some(b) if op == TsOp::Eq || b.len() == 1 => {
                            q.timestamps.push((base.to_string(), op, b))
                        }
                        Some(_) => errors.push(format!(
                            "{human} relational operator '{}' requires a single timestamp",
                            key
                        )),
                        None => errors.push(format!(
                            "{human} has an invalid timestamp format. Timestamps should be formatted as 'YYYY-MM-DDThh:mm:ssZ'"
                        )),
                    }
                }
                _ => {
                    let values: Vec<String> = value.split(',').map(str::to_string).collect();
                    match op {
                        None => {
                            q.filters.insert(base.to_string(), values);
                        }
                        Some("not") if base == "target_guids" => {
                            q.not_filters.insert(base.to_string(), values);
                        }
                        Some(resource) if base == "fields" => {
                            q.fields.insert(resource.to_string(), values);
                        }
                        Some(_) => errors.push(format!("'{key}' is not a valid filter")),
                    }
                }
            }
            if base != "page" && base != "per_page" {
                q.link_params.push((key.clone(), value.clone()));
            }
        }

        if !unknown.is_empty() {
            errors.insert(
                0,
                format!(
                    "Unknown query parameter(s): '{}'. Valid parameters are: '{}'",
                    unknown.join("', '"),
                    spec.params.join("', '")
                ),
            );
        }
        if errors.is_empty() {
            Ok(q)
        } else {
            Err(CcError::bad_query(&errors))
        }
    }

    /// The values of list filter `name`, if given.
    pub fn filter(&self, name: &str) -> Option<&[String]> {
        self.filters.get(name).map(Vec::as_slice)
    }

    pub fn includes(&self, what: &str) -> bool {
        self.include.iter().any(|i| i == what)
    }

    /// Checks the `created_ats` / `updated_ats` conditions.
    pub fn timestamps_match(&self, created_at: i64, updated_at: i64) -> bool {
        self.timestamps.iter().all(|(field, op, bounds)| {
            let value = if field == "created_ats" {
                created_at
            } else {
                updated_at
            };
            bounds.iter().any(|b| op.matches(value, *b))
        })
    }

    pub fn labels_match(&self, labels: &BTreeMap<String, String>) -> bool {
        self.label_selector.iter().all(|r| r.matches(labels))
    }

    /// The query string of a page link: every given parameter plus `page` and
    /// `per_page`, each `key=value` CGI-escaped, sorted like Rails' `to_query`.
    pub fn link_query(&self, page: usize) -> String {
        let mut pairs: Vec<String> = self
            .link_params
            .iter()
            .map(|(k, v)| format!("{}={}", cgi_escape(k), cgi_escape(v)))
            .collect();
        pairs.push(format!("page={page}"));
        pairs.push(format!("per_page={}", self.per_page));
        pairs.sort();
        pairs.join("&")
    }

    /// Cuts one page out of `items` (already filtered and ordered) and builds the
    /// pagination object. `url` is the absolute URL of the list without a query.
    pub fn paginate<'a, T>(&self, items: &'a [T], url: &str) -> (&'a [T], Value) {
        let total = items.len();
        let total_pages = total.div_ceil(self.per_page).max(1);
        let start = (self.page - 1).saturating_mul(self.per_page).min(total);
        let end = start.saturating_add(self.per_page).min(total);
        let link = |page: usize| json!({"href": format!("{url}?{}", self.link_query(page))});
        let pagination = json!({
            "total_results": total,
            "total_pages": total_pages,
            "first": link(1),
            "last": link(total_pages),
            "next": if self.page < total_pages { link(self.page + 1) } else { Value::Null },
            "previous": if self.page > 1 { link(self.page - 1) } else { Value::Null },
        });
        (&items[start..end], pagination)
    }
}

/// Parses the query of a single-resource GET, which accepts only `params` (`include`,
/// `fields`, or nothing) with the `include` values `includes`.
pub fn parse_single(
    raw: &str,
    params: &'static [&'static str],
    includes: &'static [&'static str],
) -> Result<ListQuery, CcError> {
    let spec = ListSpec {
        params,
        order_by: &[],
        includes,
    };
    ListQuery::parse(raw, &spec)
}

/// The `fields[RESOURCE]=keys` an endpoint accepts: (resource, allowed keys).
pub type FieldSpec = &'static [(&'static str, &'static [&'static str])];

impl ListQuery {
    /// Checks `fields[RESOURCE]=keys` against what the endpoint accepts.
    pub fn check_fields(&self, spec: FieldSpec) -> Result<(), CcError> {
        let resources: Vec<&str> = spec.iter().map(|(r, _)| *r).collect();
        let mut errors = Vec::new();
        if self.filter("fields").is_some() {
            errors.push(format!(
                "Fields must name a resource: fields[RESOURCE]=keys, with RESOURCE one of '{}'",
                resources.join("', '")
            ));
        }
        for (resource, keys) in &self.fields {
            match spec.iter().find(|(r, _)| r == resource) {
                None => errors.push(format!(
                    "Fields [{resource}] valid resources are: '{}'",
                    resources.join("', '")
                )),
                Some((_, allowed)) => {
                    if keys.iter().any(|k| !allowed.contains(&k.as_str())) {
                        errors.push(format!(
                            "Fields valid keys for '{resource}' are: '{}'",
                            allowed.join("', '")
                        ));
                    }
                }
            }
        }
        if errors.is_empty() {
            Ok(())
        } else {
            Err(CcError::bad_query(&errors))
        }
    }

    /// `available=true|false` (default true).
    pub fn available(&self) -> Result<bool, CcError> {
        match self.filter("available") {
            None => Ok(true),
            Some([v]) if v == "true" => Ok(true),
            Some([v]) if v == "false" => Ok(false),
            Some(_) => Err(CcError::bad_query(&[
                "Available only accepts values 'true' or 'false'".into(),
            ])),
        }
    }

    /// A single-valued enum filter (`type`), checked against its values.
    pub fn check_one_of(&self, name: &str, values: &[&str]) -> Result<(), CcError> {
        if let Some(given) = self.filter(name)
            && given.iter().any(|v| !values.contains(&v.as_str()))
        {
            let human = name[..1].to_uppercase() + &name[1..];
            return Err(CcError::bad_query(&[format!(
                "{human} must be one of '{}'",
                values.join("', '")
            )]));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const APPS: ListSpec = ListSpec {
        params: &[
            "guids",
            "names",
            "space_guids",
            "page",
            "per_page",
            "order_by",
            "include",
            "label_selector",
            "created_ats",
        ],
        order_by: &["created_at", "name"],
        includes: &["space", "space.organization"],
    };

    fn detail(e: CcError) -> String {
        assert_eq!(
            (e.status, e.code, e.title),
            (400, 10005, "CF-BadQueryParameter")
        );
        e.detail
    }

    #[test]
    fn defaults_are_page_one_of_fifty() {
        let q = ListQuery::parse("", &APPS).unwrap();
        assert_eq!((q.page, q.per_page), (1, 50));
        assert!(q.order_by.is_none());
    }

    #[test]
    fn per_page_outside_1_to_5000_is_rejected() {
        for bad in ["0", "5001", "-3"] {
            let d = detail(ListQuery::parse(&format!("per_page={bad}"), &APPS).unwrap_err());
            assert!(d.contains("Per page must be between 1 and 5000"), "{d}");
        }
        assert_eq!(
            ListQuery::parse("per_page=5000", &APPS).unwrap().per_page,
            5000
        );
        assert!(
            detail(ListQuery::parse("per_page=x", &APPS).unwrap_err()).contains("not a number")
        );
    }

    #[test]
    fn unknown_parameters_are_listed_with_the_valid_ones() {
        let d = detail(ListQuery::parse("foo=1&guids=a&bar[gt]=2", &APPS).unwrap_err());
        assert!(
            d.starts_with("The query parameter is invalid: Unknown query parameter(s): 'bar', 'foo'. Valid parameters are: 'guids', 'names'"),
            "{d}"
        );
    }

    #[test]
    fn filters_split_on_commas_and_order_by_accepts_a_minus() {
        let q =
            ListQuery::parse("guids=a,b&order_by=-name&include=space.organization", &APPS).unwrap();
        assert_eq!(q.filter("guids").unwrap(), ["a", "b"]);
        assert_eq!(
            q.order_by,
            Some(OrderBy {
                field: "name".into(),
                descending: true
            })
        );
        assert!(q.includes("space.organization"));
        assert!(ListQuery::parse("order_by=state", &APPS).is_err());
        assert!(ListQuery::parse("include=domain", &APPS).is_err());
    }

    #[test]
    fn timestamp_filters_take_operators_and_second_precision_only() {
        let q = ListQuery::parse("created_ats%5Bgte%5D=2025-01-01T00:00:10Z", &APPS).unwrap();
        let base = parse_ts("2025-01-01T00:00:10Z").unwrap();
        assert!(q.timestamps_match(base, 0));
        assert!(q.timestamps_match(base + 1, 0));
        assert!(!q.timestamps_match(base - 1, 0));
        assert!(ListQuery::parse("created_ats[gte]=2025-01-01T00:00:10.5Z", &APPS).is_err());
        assert!(ListQuery::parse("created_ats[between]=2025-01-01T00:00:10Z", &APPS).is_err());
    }

    #[test]
    fn links_repeat_filters_sorted_and_escaped_with_null_at_the_ends() {
        let q = ListQuery::parse(
            "space_guids=s1,s2&per_page=2&names=x&created_ats[gt]=2025-01-01T00:00:00Z",
            &APPS,
        )
        .unwrap();
        let items = [1, 2, 3, 4, 5];
        let (page, p) = q.paginate(&items, "http://cc/v3/apps");
        assert_eq!(page, [1, 2]);
        assert_eq!(p["total_results"], 5);
        assert_eq!(p["total_pages"], 3);
        assert_eq!(
            p["next"]["href"],
            "http://cc/v3/apps?created_ats%5Bgt%5D=2025-01-01T00%3A00%3A00Z&names=x&page=2&per_page=2&space_guids=s1%2Cs2"
        );
        assert_eq!(p["previous"], Value::Null);
        assert_eq!(
            p["last"]["href"],
            "http://cc/v3/apps?created_ats%5Bgt%5D=2025-01-01T00%3A00%3A00Z&names=x&page=3&per_page=2&space_guids=s1%2Cs2"
        );

        let q3 = ListQuery::parse("page=3&per_page=2", &APPS).unwrap();
        let (page, p) = q3.paginate(&items, "http://cc/v3/apps");
        assert_eq!(page, [5]);
        assert_eq!(p["next"], Value::Null);
        assert_eq!(p["previous"]["href"], "http://cc/v3/apps?page=2&per_page=2");
        assert_eq!(p["first"]["href"], "http://cc/v3/apps?page=1&per_page=2");
    }

    #[test]
    fn an_empty_list_has_one_page_and_a_page_past_the_end_is_empty() {
        let q = ListQuery::parse("", &APPS).unwrap();
        let (page, p) = q.paginate::<u8>(&[], "http://cc/v3/apps");
        assert!(page.is_empty());
        assert_eq!(p["total_pages"], 1);
        assert_eq!(p["last"]["href"], "http://cc/v3/apps?page=1&per_page=50");
        let q = ListQuery::parse("page=9", &APPS).unwrap();
        let (page, p) = q.paginate(&[1, 2], "http://cc/v3/apps");
        assert!(page.is_empty());
        assert_eq!(p["next"], Value::Null);
    }

    #[test]
    fn label_selectors_cover_equality_existence_and_sets() {
        let labels: BTreeMap<String, String> = [
            ("prometheus.gds/exporter".to_string(), "true".to_string()),
            ("team".into(), "a".into()),
        ]
        .into();
        let m = |s: &str| {
            parse_label_selector(s)
                .unwrap()
                .iter()
                .all(|r| r.matches(&labels))
        };
        assert!(m("prometheus.gds/exporter=true"));
        assert!(m("prometheus.gds/exporter==true"));
        assert!(m("prometheus.gds/exporter"));
        assert!(!m("!prometheus.gds/exporter"));
        assert!(m("team in (a,b),prometheus.gds/exporter"));
        assert!(!m("team notin (a,b)"));
        assert!(m("team!=b,missing notin (x)"));
        assert!(!m("missing"));
        assert!(parse_label_selector("a in (b").is_err());
        assert!(parse_label_selector("").is_err());
        assert!(parse_label_selector("=x").is_err());
    }
}
