//! Settings from the environment and from `VCAP_SERVICES`.
//!
//! The original deployment kept its secrets (UAA and AWS credentials) in a user-provided
//! service and copied them into environment variables with a buildpack. Here any
//! user-provided service's `credentials` object is read directly: a key named like a
//! setting (`UAA_PASSWORD`, `AWS_ACCESS_KEY_ID`, ...) provides that setting. A variable
//! set in the environment wins over `VCAP_SERVICES`, so an operator can always override.

use std::collections::HashMap;

/// A setting is missing or invalid; `Display` is the one line printed at start-up.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct SettingsError {
    pub name: String,
    pub reason: String,
}

impl SettingsError {
    pub fn new(name: impl Into<String>, reason: impl Into<String>) -> Self {
        Self {
            name: name.into(),
            reason: reason.into(),
        }
    }
}

/// Every setting a service may read: the environment, then `VCAP_SERVICES` credentials.
#[derive(Debug, Clone, Default)]
pub struct Settings {
    env: HashMap<String, String>,
    vcap: HashMap<String, String>,
}

impl Settings {
    /// From the process environment.
    pub fn from_env() -> Result<Self, SettingsError> {
        Self::from_pairs(std::env::vars())
    }

    /// From explicit pairs (tests pass a list, not the process environment).
    pub fn from_pairs<K: Into<String>, V: Into<String>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, SettingsError> {
        let env: HashMap<String, String> = pairs
            .into_iter()
            .map(|(k, v)| (k.into(), v.into()))
            .collect();
        let vcap = match env.get("VCAP_SERVICES").filter(|v| !v.trim().is_empty()) {
            Some(raw) => credentials_from_vcap(raw)?,
            None => HashMap::new(),
        };
        Ok(Self { env, vcap })
    }

    /// The value of `name`, if set and not blank.
    pub fn get(&self, name: &str) -> Option<String> {
        self.env
            .get(name)
            .or_else(|| self.vcap.get(name))
            .filter(|v| !v.trim().is_empty())
            .cloned()
    }

    /// A lookup function for the libraries' `from_lookup` constructors.
    pub fn lookup(&self) -> impl Fn(&str) -> Option<String> + '_ {
        move |name| self.get(name)
    }

    /// The value of `name`, or an error saying what it is for.
    pub fn required(&self, name: &str, what: &str) -> Result<String, SettingsError> {
        self.get(name)
            .ok_or_else(|| SettingsError::new(name, format!("is required ({what})")))
    }

    /// A number in `range`, or `default` when unset.
    pub fn number<T>(
        &self,
        name: &str,
        default: T,
        range: std::ops::RangeInclusive<T>,
    ) -> Result<T, SettingsError>
    where
        T: std::str::FromStr + PartialOrd + std::fmt::Display + Copy,
    {
        match self.get(name) {
            None => Ok(default),
            Some(v) => v
                .trim()
                .parse::<T>()
                .ok()
                .filter(|n| range.contains(n))
                .ok_or_else(|| {
                    SettingsError::new(
                        name,
                        format!(
                            "{v:?} is not a number in {}..={}",
                            range.start(),
                            range.end()
                        ),
                    )
                }),
        }
    }

    /// A boolean (`true`/`false`, `1`/`0`, `yes`/`no`), or `default` when unset.
    pub fn flag(&self, name: &str, default: bool) -> Result<bool, SettingsError> {
        match self.get(name).as_deref().map(str::trim) {
            None => Ok(default),
            Some("true" | "1" | "yes") => Ok(true),
            Some("false" | "0" | "no") => Ok(false),
            Some(other) => Err(SettingsError::new(
                name,
                format!("{other:?} is not true or false"),
            )),
        }
    }

    /// `PORT` (Cloud Foundry sets it), default 8080.
    pub fn port(&self) -> Result<u16, SettingsError> {
        self.number("PORT", 8080, 0..=65535)
    }
}

/// Collects string credentials of every user-provided service, in order; the first
/// service that names a key wins.
fn credentials_from_vcap(raw: &str) -> Result<HashMap<String, String>, SettingsError> {
    let parsed: serde_json::Value = serde_json::from_str(raw)
        .map_err(|e| SettingsError::new("VCAP_SERVICES", format!("is not valid JSON: {e}")))?;
    let mut out = HashMap::new();
    let Some(services) = parsed.get("user-provided").and_then(|v| v.as_array()) else {
        return Ok(out);
    };
    for service in services {
        let Some(credentials) = service.get("credentials").and_then(|c| c.as_object()) else {
            continue;
        };
        for (key, value) in credentials {
            let value = match value {
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Number(n) => n.to_string(),
                serde_json::Value::Bool(b) => b.to_string(),
                _ => continue,
            };
            out.entry(key.clone()).or_insert(value);
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    const VCAP: &str = r#"{"user-provided": [
        {"label": "user-provided", "name": "prometheus-targets-access", "tags": [],
         "credentials": {"AWS_ACCESS_KEY_ID": "AKIA", "AWS_SECRET_ACCESS_KEY": "secret",
                         "UAA_USERNAME": "broker", "UAA_PASSWORD": "pw", "access_name": "prometheus-targets-access"}}]}"#;

    #[test]
    fn user_provided_credentials_become_settings() {
        let s = Settings::from_pairs([("VCAP_SERVICES", VCAP)]).unwrap();
        assert_eq!(s.get("UAA_USERNAME").as_deref(), Some("broker"));
        assert_eq!(s.get("AWS_SECRET_ACCESS_KEY").as_deref(), Some("secret"));
        assert_eq!(s.get("NOPE"), None);
    }

    #[test]
    fn the_environment_wins_over_vcap_services() {
        let s =
            Settings::from_pairs([("VCAP_SERVICES", VCAP), ("UAA_USERNAME", "override")]).unwrap();
        assert_eq!(s.get("UAA_USERNAME").as_deref(), Some("override"));
    }

    #[test]
    fn invalid_vcap_services_is_named() {
        let e = Settings::from_pairs([("VCAP_SERVICES", "{nope")]).unwrap_err();
        assert_eq!(e.name, "VCAP_SERVICES");
    }

    #[test]
    fn blank_values_count_as_unset() {
        let s = Settings::from_pairs([("PORT", " ")]).unwrap();
        assert_eq!(s.port().unwrap(), 8080);
        assert!(s.required("PORT", "the listener").is_err());
    }

    #[test]
    fn numbers_and_flags_are_checked() {
        let s = Settings::from_pairs([("PORT", "70000"), ("X", "maybe")]).unwrap();
        assert_eq!(s.port().unwrap_err().name, "PORT");
        assert_eq!(s.flag("X", false).unwrap_err().name, "X");
        assert!(!s.flag("Y", false).unwrap());
    }
}
