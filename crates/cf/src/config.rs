//! Typed configuration of the client; built by each service from its environment.

use std::time::Duration;

use gds_service::{Secret, SettingsError};
use url::Url;

/// How the client obtains its UAA token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UaaCredentials {
    /// Password grant through a public client (the original used `cf` with an empty
    /// secret and `UAA_USERNAME`/`UAA_PASSWORD`).
    Password {
        client_id: String,
        client_secret: Secret,
        username: String,
        password: Secret,
    },
    /// Client-credentials grant for a dedicated UAA client (e.g. with
    /// `cloud_controller.global_auditor`).
    ClientCredentials {
        client_id: String,
        client_secret: Secret,
    },
}

/// Everything the client needs to know.
#[derive(Debug, Clone)]
pub struct CfConfig {
    /// `API_ENDPOINT`, e.g. `https://api.example.org`.
    pub api_endpoint: Url,
    /// `UAA_ENDPOINT`; when `None`, discovered from the API root (`links.uaa`).
    pub uaa_endpoint: Option<Url>,
    pub credentials: UaaCredentials,
    /// Check each token's RS256 signature against UAA's `/token_keys`. The token is only
    /// ever sent to our own Cloud Controller, so this is defence in depth, off by default.
    pub verify_token_signature: bool,
    /// App metadata label that marks a platform exporter (value `true`).
    pub exporter_label: String,
    /// `per_page` for list requests, 1..=5000.
    pub page_size: u32,
    /// GUIDs per filtered request; keeps URLs well under common limits.
    pub guid_chunk: usize,
    /// Requests in flight at once.
    pub max_concurrency: usize,
    /// Timeout of one HTTP request.
    pub request_timeout: Duration,
    /// Retries of one request on 429, 502/503/504 or a transport error.
    pub max_retries: u32,
    /// Longest single wait on a rate limit; a longer `Retry-After` fails the request so that
    /// a pass reports failure instead of hanging for up to an hour.
    pub max_rate_limit_wait: Duration,
    /// `CF_BACKGROUND_SHARE`: the part of the platform's rate limit (when one applies)
    /// that background work (full passes, the fast path) may use; binds never wait on it
    /// (see [`crate::budget`]).
    pub background_share: f64,
}

impl CfConfig {
    /// Defaults for everything but the endpoint and credentials.
    pub fn new(api_endpoint: Url, credentials: UaaCredentials) -> Self {
        Self {
            api_endpoint,
            uaa_endpoint: None,
            credentials,
            verify_token_signature: false,
            exporter_label: "prometheus.gds/exporter".into(),
            page_size: 5000,
            guid_chunk: 100,
            max_concurrency: 4,
            request_timeout: Duration::from_secs(30),
            max_retries: 4,
            max_rate_limit_wait: Duration::from_secs(120),
            background_share: crate::budget::DEFAULT_BACKGROUND_SHARE,
        }
    }
}

/// Every setting [`CfConfig::from_lookup`] reads (checked against this crate's sources by
/// a unit test, see `gds_service::declared`).
pub const SETTINGS: &[&str] = &[
    "API_ENDPOINT",
    "UAA_ENDPOINT",
    "UAA_USERNAME",
    "UAA_PASSWORD",
    "UAA_CLIENT_ID",
    "UAA_CLIENT_SECRET",
    "UAA_VERIFY_TOKEN_SIGNATURE",
    "EXPORTER_LABEL",
    "CF_PAGE_SIZE",
    "CF_MAX_CONCURRENCY",
    "CF_REQUEST_TIMEOUT_SECONDS",
    "CF_BACKGROUND_SHARE",
];

impl CfConfig {
    /// Reads the Cloud Controller settings through `lookup` (the environment, or a map in
    /// tests; `VCAP_SERVICES` credentials are merged in by the caller's lookup):
    ///
    /// | name | default |
    /// |---|---|
    /// | `API_ENDPOINT` | required |
    /// | `UAA_ENDPOINT` | discovered from `API_ENDPOINT` |
    /// | `UAA_USERNAME`, `UAA_PASSWORD` | password grant when set |
    /// | `UAA_CLIENT_ID`, `UAA_CLIENT_SECRET` | `cf`, empty (client-credentials grant when no username) |
    /// | `UAA_VERIFY_TOKEN_SIGNATURE` | `false` |
    /// | `EXPORTER_LABEL` | `prometheus.gds/exporter` |
    /// | `CF_PAGE_SIZE` | `5000` |
    /// | `CF_MAX_CONCURRENCY` | `4` |
    /// | `CF_REQUEST_TIMEOUT_SECONDS` | `30` |
    /// | `CF_BACKGROUND_SHARE` | `0.5` (of the platform's rate limit, when one applies; 0.05..=1) |
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, SettingsError> {
        let get = |name: &str| lookup(name).filter(|v| !v.trim().is_empty());
        let url = |name: &'static str, value: String| {
            Url::parse(value.trim()).map_err(|e| SettingsError {
                name: name.into(),
                reason: format!("{value:?} is not a URL: {e}"),
            })
        };
        let number = |name: &'static str, default: u64, range: std::ops::RangeInclusive<u64>| {
            match get(name) {
                None => Ok(default),
                Some(v) => v
                    .trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| range.contains(n))
                    .ok_or_else(|| SettingsError {
                        name: name.into(),
                        reason: format!(
                            "{v:?} is not a whole number in {}..={}",
                            range.start(),
                            range.end()
                        ),
                    }),
            }
        };
        let api_endpoint = url(
            "API_ENDPOINT",
            get("API_ENDPOINT").ok_or_else(|| SettingsError {
                name: "API_ENDPOINT".into(),
                reason: "is required (the Cloud Controller URL, e.g. https://api.example.org)"
                    .into(),
            })?,
        )?;
        let uaa_endpoint = get("UAA_ENDPOINT")
            .map(|v| url("UAA_ENDPOINT", v))
            .transpose()?;
        let client_id = get("UAA_CLIENT_ID").unwrap_or_else(|| "cf".into());
        let client_secret = Secret::new(lookup("UAA_CLIENT_SECRET").unwrap_or_default());
        let credentials = match (get("UAA_USERNAME"), get("UAA_PASSWORD")) {
            (Some(username), Some(password)) => UaaCredentials::Password {
                client_id,
                client_secret,
                username,
                password: Secret::new(password),
            },
            (Some(_), None) => {
                return Err(SettingsError {
                    name: "UAA_PASSWORD".into(),
                    reason: "is required when UAA_USERNAME is set".into(),
                });
            }
            (None, _) if client_id == "cf" => {
                return Err(SettingsError {
                    name: "UAA_USERNAME".into(),
                    reason:
                        "set UAA_USERNAME and UAA_PASSWORD, or UAA_CLIENT_ID and UAA_CLIENT_SECRET"
                            .into(),
                });
            }
            (None, _) => UaaCredentials::ClientCredentials {
                client_id,
                client_secret,
            },
        };
        let verify_token_signature =
            match get("UAA_VERIFY_TOKEN_SIGNATURE").as_deref().map(str::trim) {
                None | Some("false" | "0" | "no") => false,
                Some("true" | "1" | "yes") => true,
                Some(other) => {
                    return Err(SettingsError {
                        name: "UAA_VERIFY_TOKEN_SIGNATURE".into(),
                        reason: format!("{other:?} is not true or false"),
                    });
                }
            };
        let mut config = Self::new(api_endpoint, credentials);
        config.uaa_endpoint = uaa_endpoint;
        config.verify_token_signature = verify_token_signature;
        if let Some(label) = get("EXPORTER_LABEL") {
            config.exporter_label = label.trim().to_owned();
        }
        config.page_size = number("CF_PAGE_SIZE", 5000, 1..=5000)? as u32;
        config.max_concurrency = number("CF_MAX_CONCURRENCY", 4, 1..=64)? as usize;
        config.request_timeout =
            Duration::from_secs(number("CF_REQUEST_TIMEOUT_SECONDS", 30, 1..=600)?);
        if let Some(v) = get("CF_BACKGROUND_SHARE") {
            config.background_share = v
                .trim()
                .parse::<f64>()
                .ok()
                .filter(|share| (0.05..=1.0).contains(share))
                .ok_or_else(|| SettingsError {
                    name: "CF_BACKGROUND_SHARE".into(),
                    reason: format!(
                        "{v:?} is not a share of the rate limit between 0.05 and 1 (e.g. 0.5)"
                    ),
                })?;
        }
        Ok(config)
    }
}

/// The `User-Agent` of every request, so that platform operators can tell who calls.
pub(crate) const USER_AGENT: &str = concat!(
    "gds-prometheus/",
    env!("CARGO_PKG_VERSION"),
    " (Cloud Foundry Prometheus service discovery)"
);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_declares_exactly_what_the_sources_read() {
        // `"GET"`, `"STARTED"`: an HTTP method and an app state; `CARGO_PKG_VERSION` is
        // read at compile time.
        gds_service::declared::check_sources(
            env!("CARGO_MANIFEST_DIR"),
            SETTINGS,
            &[],
            &["GET", "STARTED", "CARGO_PKG_VERSION"],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let map: std::collections::HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn the_original_settings_give_a_password_grant_through_the_cf_client() {
        let c = CfConfig::from_lookup(lookup(&[
            ("API_ENDPOINT", "https://api.example.org"),
            ("UAA_ENDPOINT", "https://uaa.example.org"),
            ("UAA_USERNAME", "broker"),
            ("UAA_PASSWORD", "pw"),
        ]))
        .unwrap();
        assert_eq!(c.api_endpoint.as_str(), "https://api.example.org/");
        assert!(
            matches!(&c.credentials, UaaCredentials::Password { client_id, username, .. }
            if client_id == "cf" && username == "broker")
        );
        assert_eq!(c.page_size, 5000);
    }

    #[test]
    fn a_client_id_without_a_username_gives_client_credentials() {
        let c = CfConfig::from_lookup(lookup(&[
            ("API_ENDPOINT", "https://api.example.org"),
            ("UAA_CLIENT_ID", "gds-prometheus"),
            ("UAA_CLIENT_SECRET", "s"),
        ]))
        .unwrap();
        assert!(matches!(
            c.credentials,
            UaaCredentials::ClientCredentials { .. }
        ));
    }

    #[test]
    fn missing_or_bad_settings_are_named() {
        let e = CfConfig::from_lookup(lookup(&[])).unwrap_err();
        assert_eq!(e.name, "API_ENDPOINT");
        let e = CfConfig::from_lookup(lookup(&[
            ("API_ENDPOINT", "https://a"),
            ("UAA_USERNAME", "u"),
        ]))
        .unwrap_err();
        assert_eq!(e.name, "UAA_PASSWORD");
        let e = CfConfig::from_lookup(lookup(&[("API_ENDPOINT", "not a url")])).unwrap_err();
        assert_eq!(e.name, "API_ENDPOINT");
        let e = CfConfig::from_lookup(lookup(&[
            ("API_ENDPOINT", "https://a"),
            ("UAA_CLIENT_ID", "x"),
            ("CF_PAGE_SIZE", "9000"),
        ]))
        .unwrap_err();
        assert_eq!(e.name, "CF_PAGE_SIZE");
        for bad in ["0", "1.5", "half"] {
            let e = CfConfig::from_lookup(lookup(&[
                ("API_ENDPOINT", "https://a"),
                ("UAA_CLIENT_ID", "x"),
                ("CF_BACKGROUND_SHARE", bad),
            ]))
            .unwrap_err();
            assert_eq!(e.name, "CF_BACKGROUND_SHARE", "{bad}");
        }
    }

    #[test]
    fn the_background_share_defaults_to_half_the_rate_limit() {
        let base = [("API_ENDPOINT", "https://a"), ("UAA_CLIENT_ID", "x")];
        let c = CfConfig::from_lookup(lookup(&base)).unwrap();
        assert_eq!(c.background_share, 0.5);
        let c = CfConfig::from_lookup(lookup(&[base[0], base[1], ("CF_BACKGROUND_SHARE", "0.3")]))
            .unwrap();
        assert_eq!(c.background_share, 0.3);
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let c = UaaCredentials::Password {
            client_id: "cf".into(),
            client_secret: Secret::new(""),
            username: "broker".into(),
            password: Secret::new("hunter2"),
        };
        let s = format!("{c:?}");
        assert!(!s.contains("hunter2") && s.contains("redacted"), "{s}");
    }
}
