//! Typed configuration of the client; built by each service from its environment.

use std::fmt;
use std::time::Duration;

use url::Url;

/// A secret string: usable, never printed.
#[derive(Clone, PartialEq, Eq)]
pub struct Secret(String);

impl Secret {
    pub fn new(value: impl Into<String>) -> Self {
        Self(value.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

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
        }
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
