//! Binding parameters (`cf bind-service APP SI -c '{...}'`), DESIGN.md section 3a.
//!
//! Parsed once, strictly, with a message that names the offending field, so that the
//! broker can answer a clear `400` and nothing invalid ever reaches a target file.

use std::collections::BTreeMap;
use std::fmt;

use serde_json::Value;

/// Label names a tenant may not set: Prometheus' own (`__*`) and the ones this system owns.
const RESERVED_LABELS: [&str; 4] = ["job", "instance", "org", "space"];
/// Longest label value accepted; anything longer is almost certainly a mistake.
const MAX_LABEL_VALUE_LEN: usize = 1024;
/// The most extra labels one binding may add.
const MAX_EXTRA_LABELS: usize = 32;

/// Why binding parameters were rejected. The `Display` text is meant for the tenant.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParamError {
    #[error("binding parameters must be a JSON object, got {0}")]
    NotAnObject(&'static str),
    #[error(
        "unknown binding parameter(s): {0}; valid parameters are: path, labels, scrape_interval, auth"
    )]
    UnknownKeys(String),
    #[error("invalid binding parameter `{field}`: {reason}")]
    Invalid { field: String, reason: String },
}

impl ParamError {
    fn invalid(field: impl Into<String>, reason: impl Into<String>) -> Self {
        Self::Invalid {
            field: field.into(),
            reason: reason.into(),
        }
    }
}

/// The validated parameters of one binding. `Default` means "none given".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BindingParams {
    /// Overrides the `__metrics_path__` derived from the app's route.
    pub path: Option<MetricsPath>,
    /// Extra static labels put on every target group of the app.
    pub labels: BTreeMap<LabelName, String>,
    /// Emitted as `__scrape_interval__`.
    pub scrape_interval: Option<PromDuration>,
    /// How the scrape authenticates to the app; not part of the target file.
    pub auth: ScrapeAuth,
}

/// How a scrape of a binding's app authenticates to the app (the `auth` binding
/// parameter): the `Authorization: Bearer ...` header the scrape gateway sends.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub enum ScrapeAuth {
    /// `Bearer <app guid>`: the original's header, which GOV.UK's metrics libraries check.
    /// Not a secret (every space member can read an app's GUID). The default.
    #[default]
    AppGuid,
    /// `Bearer <token>`: a secret token per binding, derived from the deployment's scrape
    /// token key and handed to the app in the binding's credentials.
    Token,
}

impl ScrapeAuth {
    /// Both modes, in the order the docs list them.
    pub const ALL: [ScrapeAuth; 2] = [ScrapeAuth::AppGuid, ScrapeAuth::Token];

    /// The parameter's value: `app_guid` or `token`.
    pub fn as_str(self) -> &'static str {
        match self {
            ScrapeAuth::AppGuid => "app_guid",
            ScrapeAuth::Token => "token",
        }
    }

    /// Parses the parameter's value; the error is a reason for the tenant.
    pub fn parse(s: &str) -> Result<ScrapeAuth, String> {
        ScrapeAuth::ALL
            .into_iter()
            .find(|mode| mode.as_str() == s)
            .ok_or_else(|| format!("must be \"app_guid\" or \"token\", got {s:?}"))
    }
}

impl ScrapeAuth {
    /// The authorization a stored binding asked for: its parameters were validated on
    /// bind; a hand-edited row that no longer validates gets the default.
    pub fn of_stored(parameters: &Value) -> ScrapeAuth {
        BindingParams::from_json(Some(parameters))
            .map(|p| p.auth)
            .unwrap_or_default()
    }
}

impl fmt::Display for ScrapeAuth {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl BindingParams {
    /// Parses the raw `parameters` object of an OSB bind request. `None` and `{}` both
    /// mean no parameters.
    pub fn from_json(raw: Option<&Value>) -> Result<Self, ParamError> {
        let object = match raw {
            None | Some(Value::Null) => return Ok(Self::default()),
            Some(Value::Object(o)) => o,
            Some(other) => return Err(ParamError::NotAnObject(json_kind(other))),
        };
        let mut unknown: Vec<&str> = object
            .keys()
            .map(String::as_str)
            .filter(|k| !matches!(*k, "path" | "labels" | "scrape_interval" | "auth"))
            .collect();
        if !unknown.is_empty() {
            unknown.sort_unstable();
            return Err(ParamError::UnknownKeys(unknown.join(", ")));
        }

        let mut params = Self::default();
        if let Some(v) = object.get("path") {
            let s = v.as_str().ok_or_else(|| {
                ParamError::invalid("path", format!("must be a string, got {}", json_kind(v)))
            })?;
            params.path = Some(MetricsPath::parse(s).map_err(|r| ParamError::invalid("path", r))?);
        }
        if let Some(v) = object.get("labels") {
            let map = v.as_object().ok_or_else(|| {
                ParamError::invalid(
                    "labels",
                    format!(
                        "must be an object of name to string value, got {}",
                        json_kind(v)
                    ),
                )
            })?;
            if map.len() > MAX_EXTRA_LABELS {
                return Err(ParamError::invalid(
                    "labels",
                    format!(
                        "at most {MAX_EXTRA_LABELS} labels may be given, got {}",
                        map.len()
                    ),
                ));
            }
            for (name, value) in map {
                let field = format!("labels.{name}");
                let name =
                    LabelName::parse_extra(name).map_err(|r| ParamError::invalid(&field, r))?;
                let value = value.as_str().ok_or_else(|| {
                    ParamError::invalid(
                        &field,
                        format!("value must be a string, got {}", json_kind(value)),
                    )
                })?;
                if value.len() > MAX_LABEL_VALUE_LEN {
                    return Err(ParamError::invalid(
                        &field,
                        format!("value is longer than {MAX_LABEL_VALUE_LEN} bytes"),
                    ));
                }
                params.labels.insert(name, value.to_owned());
            }
        }
        if let Some(v) = object.get("scrape_interval") {
            let s = v.as_str().ok_or_else(|| {
                ParamError::invalid(
                    "scrape_interval",
                    format!("must be a string such as \"30s\", got {}", json_kind(v)),
                )
            })?;
            params.scrape_interval = Some(
                PromDuration::parse(s).map_err(|r| ParamError::invalid("scrape_interval", r))?,
            );
        }
        if let Some(v) = object.get("auth") {
            let s = v.as_str().ok_or_else(|| {
                ParamError::invalid(
                    "auth",
                    format!(
                        "must be the string \"app_guid\" or \"token\", got {}",
                        json_kind(v)
                    ),
                )
            })?;
            params.auth = ScrapeAuth::parse(s).map_err(|r| ParamError::invalid("auth", r))?;
        }
        Ok(params)
    }

    /// The parameters as the JSON object they were given as (normalised), for storage.
    /// The default `auth` (`app_guid`) is left out, so that `{}` and
    /// `{"auth": "app_guid"}` are the same binding.
    pub fn to_json(&self) -> Value {
        let mut o = serde_json::Map::new();
        if let Some(p) = &self.path {
            o.insert("path".into(), Value::String(p.as_str().into()));
        }
        if !self.labels.is_empty() {
            let labels = self
                .labels
                .iter()
                .map(|(k, v)| (k.as_str().to_owned(), Value::String(v.clone())))
                .collect();
            o.insert("labels".into(), Value::Object(labels));
        }
        if let Some(d) = &self.scrape_interval {
            o.insert("scrape_interval".into(), Value::String(d.as_str().into()));
        }
        if self.auth != ScrapeAuth::AppGuid {
            o.insert("auth".into(), Value::String(self.auth.as_str().into()));
        }
        Value::Object(o)
    }
}

fn json_kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

/// A metrics path given by a tenant: starts with `/`, no query or fragment, no spaces.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MetricsPath(String);

impl MetricsPath {
    /// Parses a path; the error is a reason for the tenant.
    pub fn parse(s: &str) -> Result<Self, String> {
        if !s.starts_with('/') {
            return Err(format!("must start with `/`, got {s:?}"));
        }
        if s.len() > 1024 {
            return Err("is longer than 1024 bytes".into());
        }
        if let Some(c) = s
            .chars()
            .find(|c| c.is_whitespace() || c.is_control() || matches!(c, '?' | '#'))
        {
            return Err(format!("must not contain {c:?}"));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// Whether `s` is a syntactically valid Prometheus label name, `[a-zA-Z_][a-zA-Z0-9_]*`.
///
/// Reserved names (`__*`, `job`, ...) are valid here: this is the rule every `file_sd`
/// label obeys, not the stricter one for tenants' extra labels ([`LabelName::parse_extra`]).
pub fn is_valid_label_name(s: &str) -> bool {
    let mut chars = s.chars();
    chars
        .next()
        .is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_')
}

/// A Prometheus label name a tenant may set: `[a-zA-Z_][a-zA-Z0-9_]*`, not starting with
/// `__` (reserved for Prometheus' internal labels), and not one this system sets itself.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct LabelName(String);

impl LabelName {
    /// Parses a name for the `labels` binding parameter.
    pub fn parse_extra(s: &str) -> Result<Self, String> {
        if !is_valid_label_name(s) {
            return Err(format!(
                "{s:?} is not a valid Prometheus label name ([a-zA-Z_][a-zA-Z0-9_]*)"
            ));
        }
        if s.starts_with("__") {
            return Err(format!("{s:?} starts with `__`, which Prometheus reserves"));
        }
        if RESERVED_LABELS.contains(&s) {
            return Err(format!(
                "{s:?} is set by gds-prometheus and cannot be overridden"
            ));
        }
        Ok(Self(s.to_owned()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LabelName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A Prometheus duration such as `15s`, `1m30s` or `500ms`
/// (`((\d+)y)?((\d+)w)?((\d+)d)?((\d+)h)?((\d+)m)?((\d+)s)?((\d+)ms)?`, not zero),
/// kept in the form the tenant wrote it because Prometheus parses it again.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PromDuration {
    text: String,
    millis: u64,
}

impl PromDuration {
    /// Parses a duration; the error is a reason for the tenant.
    pub fn parse(s: &str) -> Result<Self, String> {
        const UNITS: [(&str, u64); 7] = [
            ("y", 365 * 24 * 3_600_000),
            ("w", 7 * 24 * 3_600_000),
            ("d", 24 * 3_600_000),
            ("h", 3_600_000),
            ("m", 60_000),
            ("s", 1_000),
            ("ms", 1),
        ];
        let bad =
            || format!("{s:?} is not a Prometheus duration such as \"15s\", \"1m\" or \"1m30s\"");
        let mut rest = s;
        let mut millis: u64 = 0;
        let mut next_unit = 0;
        while !rest.is_empty() {
            let digits = rest.bytes().take_while(u8::is_ascii_digit).count();
            if digits == 0 {
                return Err(bad());
            }
            let n: u64 = rest[..digits].parse().map_err(|_| bad())?;
            rest = &rest[digits..];
            // Longest unit first so that "ms" is not read as "m" followed by "s".
            let (i, (unit, factor)) = UNITS
                .iter()
                .enumerate()
                .skip(next_unit)
                .filter(|(_, (u, _))| rest.starts_with(u))
                .max_by_key(|(_, (u, _))| u.len())
                .ok_or_else(bad)?;
            rest = &rest[unit.len()..];
            next_unit = i + 1;
            millis = n
                .checked_mul(*factor)
                .and_then(|v| millis.checked_add(v))
                .ok_or_else(bad)?;
        }
        if millis == 0 {
            return Err(format!("{s:?} must be longer than zero"));
        }
        Ok(Self {
            text: s.to_owned(),
            millis,
        })
    }

    pub fn as_str(&self) -> &str {
        &self.text
    }

    pub fn as_millis(&self) -> u64 {
        self.millis
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn err(v: Value) -> String {
        BindingParams::from_json(Some(&v)).unwrap_err().to_string()
    }

    #[test]
    fn no_parameters_and_an_empty_object_mean_defaults() {
        assert_eq!(
            BindingParams::from_json(None).unwrap(),
            BindingParams::default()
        );
        assert_eq!(
            BindingParams::from_json(Some(&json!({}))).unwrap(),
            BindingParams::default()
        );
        assert_eq!(
            BindingParams::from_json(Some(&Value::Null)).unwrap(),
            BindingParams::default()
        );
    }

    #[test]
    fn all_three_parameters_parse() {
        let p = BindingParams::from_json(Some(&json!({
            "path": "/internal/metrics",
            "labels": {"team": "payments", "tier": "web"},
            "scrape_interval": "1m30s"
        })))
        .unwrap();
        assert_eq!(p.path.unwrap().as_str(), "/internal/metrics");
        assert_eq!(p.labels.len(), 2);
        assert_eq!(p.scrape_interval.unwrap().as_millis(), 90_000);
    }

    #[test]
    fn parameters_round_trip_through_json() {
        let raw = json!({"path": "/m", "labels": {"a": "b"}, "scrape_interval": "15s"});
        let p = BindingParams::from_json(Some(&raw)).unwrap();
        assert_eq!(p.to_json(), raw);
        assert_eq!(BindingParams::from_json(Some(&p.to_json())).unwrap(), p);
    }

    #[test]
    fn unknown_keys_are_rejected_by_name() {
        let e = err(json!({"path": "/m", "interval": "5s", "extra": 1}));
        assert!(e.contains("extra, interval"), "{e}");
    }

    #[test]
    fn a_path_without_a_leading_slash_is_rejected() {
        let e = err(json!({"path": "metrics"}));
        assert!(
            e.contains("`path`") && e.contains("must start with `/`"),
            "{e}"
        );
    }

    #[test]
    fn a_path_with_a_query_is_rejected() {
        assert!(err(json!({"path": "/metrics?x=1"})).contains("'?'"));
        assert!(err(json!({"path": 5})).contains("must be a string"));
    }

    #[test]
    fn invalid_label_names_are_rejected_with_the_field_named() {
        for (name, why) in [
            ("1abc", "not a valid Prometheus label name"),
            ("team-name", "not a valid Prometheus label name"),
            ("", "not a valid Prometheus label name"),
            ("__address__", "reserves"),
            ("job", "cannot be overridden"),
            ("instance", "cannot be overridden"),
            ("org", "cannot be overridden"),
            ("space", "cannot be overridden"),
        ] {
            let e = err(json!({"labels": {name: "x"}}));
            assert!(
                e.contains(&format!("`labels.{name}`")) && e.contains(why),
                "{name}: {e}"
            );
        }
    }

    #[test]
    fn label_name_validity_is_the_prometheus_rule_reserved_names_included() {
        for valid in ["a", "_", "__metrics_path__", "job", "Ab_9"] {
            assert!(is_valid_label_name(valid), "{valid}");
        }
        for invalid in ["", "9a", "a-b", "a.b", "é", "a b"] {
            assert!(!is_valid_label_name(invalid), "{invalid}");
        }
    }

    #[test]
    fn label_values_must_be_strings() {
        assert!(err(json!({"labels": {"team": 3}})).contains("value must be a string"));
        assert!(err(json!({"labels": ["team"]})).contains("must be an object"));
    }

    #[test]
    fn durations_follow_prometheus_syntax() {
        for (s, ms) in [
            ("15s", 15_000),
            ("1m", 60_000),
            ("1h30m", 5_400_000),
            ("500ms", 500),
            ("1d", 86_400_000),
        ] {
            assert_eq!(PromDuration::parse(s).unwrap().as_millis(), ms, "{s}");
        }
        for s in [
            "", "15", "s", "1.5s", "30s1m", "0s", "-5s", "5 s", "5sec", "1m1m",
        ] {
            assert!(PromDuration::parse(s).is_err(), "{s:?} should be rejected");
        }
    }

    #[test]
    fn auth_defaults_to_the_app_guid_and_accepts_token() {
        assert_eq!(
            BindingParams::from_json(None).unwrap().auth,
            ScrapeAuth::AppGuid
        );
        let token = BindingParams::from_json(Some(&json!({"auth": "token"}))).unwrap();
        assert_eq!(token.auth, ScrapeAuth::Token);
        assert_eq!(token.to_json(), json!({"auth": "token"}));
        let explicit = BindingParams::from_json(Some(&json!({"auth": "app_guid"}))).unwrap();
        assert_eq!(explicit, BindingParams::default());
        assert_eq!(explicit.to_json(), json!({}));
    }

    #[test]
    fn an_unknown_or_mistyped_auth_is_rejected_with_the_field_named() {
        let e = err(json!({"auth": "basic"}));
        assert!(
            e.contains("`auth`") && e.contains("\"app_guid\" or \"token\"") && e.contains("basic"),
            "{e}"
        );
        assert!(err(json!({"auth": true})).contains("got a boolean"));
        assert!(err(json!({"auth": "Token"})).contains("`auth`"));
    }

    #[test]
    fn a_non_object_is_rejected() {
        assert!(err(json!(["path"])).contains("must be a JSON object, got an array"));
    }
}
