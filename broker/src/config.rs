//! The broker's typed configuration, read once at start from [`Settings`] (the environment,
//! then the credentials of user-provided services in `VCAP_SERVICES`).

use gds_engine::{CatalogIds, EngineConfig};
use gds_service::{Secret, Settings, SettingsError};
use gds_store::ScrapeTokenKey;

/// The settings the broker reads itself (checked against this crate's sources by a unit
/// test, see `gds_service::declared`).
pub const SETTINGS: &[&str] = &[
    "BROKER_USERNAME",
    "BROKER_PASSWORD",
    "CACHE_EXPIRY_TIME",
    "LISTEN_HOST",
    "BROKER_OPERATION_TIMEOUT_SECONDS",
    "SCRAPE_TOKEN_KEY",
    "SCRAPE_TOKEN_KEY_FILE",
];

/// Every setting the `broker` binary reads: its own, the catalog ids, the engine's (the
/// database, the reconcile pass behind `POST /update-targets`, the Cloud Controller
/// client, the store) and every service's (`PORT`, `VCAP_SERVICES`, ...), sorted. The
/// deployment manifests are checked against this list.
pub fn settings() -> Vec<&'static str> {
    let mut all = [
        SETTINGS,
        CatalogIds::SETTINGS,
        &EngineConfig::settings(),
        gds_service::SETTINGS,
    ]
    .concat();
    all.sort_unstable();
    all.dedup();
    all
}

/// The OSB API's basic-auth credentials.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct BrokerCredentials {
    /// `BROKER_USERNAME`.
    pub username: String,
    /// `BROKER_PASSWORD`.
    pub password: Secret,
}

/// Everything the broker reads at start.
#[derive(Clone, Debug)]
pub struct BrokerConfig {
    pub catalog: CatalogIds,
    pub credentials: BrokerCredentials,
    /// The database, the Cloud Controller, the store, and the settings of the pass behind
    /// `POST /update-targets` (`DELETION_MAX_SHARE`, ...).
    pub engine: EngineConfig,
    /// `CACHE_EXPIRY_TIME` (seconds). Accepted so that the original's manifests keep
    /// working, and validated, but it changes nothing: the original cached app look-ups
    /// for this long; this broker looks an app up afresh on every bind (one batched set of
    /// requests) and the updater keeps files current, so there is nothing to expire.
    pub cache_expiry_seconds: u64,
    /// `LISTEN_HOST`, default `0.0.0.0` (Cloud Foundry routes to any interface).
    pub listen_host: String,
    /// `PORT`, default 8080; 0 picks a free port.
    pub port: u16,
    /// `BROKER_OPERATION_TIMEOUT_SECONDS`, default 45: every OSB operation answers within
    /// this, Cloud Controller retries and rate-limit waits included. Keep it below the
    /// platform's broker client timeout (Cloud Foundry: `broker_client_timeout_seconds`,
    /// 60 by default), after which the platform gives up on a bind and unbinds it.
    pub operation_timeout: std::time::Duration,
    /// `SCRAPE_TOKEN_KEY`, or the content of the file `SCRAPE_TOKEN_KEY_FILE` (at least 32
    /// bytes): the deployment secret that binding tokens are derived from
    /// ([`gds_store::scrape_credentials`]). Without it, binds asking for `"auth": "token"`
    /// are refused.
    pub scrape_token_key: Option<ScrapeTokenKey>,
}

impl BrokerConfig {
    /// Reads and checks every setting; the first problem is reported, naming the setting.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let catalog = CatalogIds::from_settings(settings)?;
        let credentials = BrokerCredentials {
            username: settings.required(
                "BROKER_USERNAME",
                "the user name the Cloud Controller authenticates with",
            )?,
            password: Secret::new(settings.required(
                "BROKER_PASSWORD",
                "the password the Cloud Controller authenticates with",
            )?),
        };
        if credentials.username.contains(':') {
            return Err(SettingsError::new(
                "BROKER_USERNAME",
                "must not contain ':' (basic auth cannot carry it)",
            ));
        }
        let engine = EngineConfig::from_settings(settings)?;
        let cache_expiry_seconds = settings.number("CACHE_EXPIRY_TIME", 60, 0..=86_400 * 365)?;
        let listen_host = settings
            .get("LISTEN_HOST")
            .unwrap_or_else(|| "0.0.0.0".into());
        let port = settings.port()?;
        let operation_timeout = std::time::Duration::from_secs(settings.number(
            "BROKER_OPERATION_TIMEOUT_SECONDS",
            crate::operations::DEFAULT_OPERATION_TIMEOUT.as_secs(),
            1..=3600,
        )?);
        let scrape_token_key = scrape_token_key(settings)?;
        Ok(Self {
            catalog,
            credentials,
            engine,
            cache_expiry_seconds,
            listen_host,
            port,
            operation_timeout,
            scrape_token_key,
        })
    }
}

/// `SCRAPE_TOKEN_KEY` or `SCRAPE_TOKEN_KEY_FILE` (not both), if either is set.
fn scrape_token_key(settings: &Settings) -> Result<Option<ScrapeTokenKey>, SettingsError> {
    let inline = settings.get("SCRAPE_TOKEN_KEY").filter(|v| !v.is_empty());
    let file = settings
        .get("SCRAPE_TOKEN_KEY_FILE")
        .filter(|v| !v.is_empty());
    match (inline, file) {
        (Some(_), Some(_)) => Err(SettingsError::new(
            "SCRAPE_TOKEN_KEY",
            "give either SCRAPE_TOKEN_KEY or SCRAPE_TOKEN_KEY_FILE, not both",
        )),
        (Some(key), None) => ScrapeTokenKey::parse(&key)
            .map(Some)
            .map_err(|e| SettingsError::new("SCRAPE_TOKEN_KEY", e)),
        (None, Some(path)) => ScrapeTokenKey::read_file(std::path::Path::new(&path))
            .map(Some)
            .map_err(|e| SettingsError::new("SCRAPE_TOKEN_KEY_FILE", e)),
        (None, None) => Ok(None),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_declares_exactly_what_the_sources_read() {
        let passed_through = [
            CatalogIds::SETTINGS,
            &EngineConfig::settings(),
            gds_service::SETTINGS,
        ]
        .concat();
        // HTTP methods of the OSB routes.
        let not_settings = ["GET", "PUT", "PATCH", "DELETE", "POST"];
        gds_service::declared::check_sources(
            env!("CARGO_MANIFEST_DIR"),
            SETTINGS,
            &passed_through,
            &not_settings,
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn complete() -> Vec<(&'static str, &'static str)> {
        vec![
            ("SERVICE_ID", "svc"),
            ("PLAN_ID", "plan"),
            ("BROKER_USERNAME", "broker"),
            ("BROKER_PASSWORD", "hunter2"),
            ("PAAS_DOMAIN", "apps.example.com"),
            ("API_ENDPOINT", "https://api.example.com"),
            ("UAA_USERNAME", "u"),
            ("UAA_PASSWORD", "p"),
            ("ENVIRONMENT", "local"),
            ("TARGETS_PATH", "/tmp/targets"),
        ]
    }

    fn config(pairs: &[(&str, &str)]) -> Result<BrokerConfig, SettingsError> {
        BrokerConfig::from_settings(&Settings::from_pairs(pairs.iter().copied()).unwrap())
    }

    #[test]
    fn complete_settings_give_defaults_for_the_rest() {
        let c = config(&complete()).unwrap();
        assert_eq!(c.catalog.service_name, "gds-prometheus");
        assert_eq!(
            c.engine.database.url.expose(),
            gds_engine::DEFAULT_DATABASE_URL
        );
        assert_eq!(c.port, 8080);
        assert_eq!(c.cache_expiry_seconds, 60);
        assert_eq!(c.listen_host, "0.0.0.0");
        assert_eq!(c.operation_timeout, std::time::Duration::from_secs(45));
        assert_eq!(
            c.engine.store,
            gds_store::StoreConfig::Dir("/tmp/targets".into())
        );
    }

    #[test]
    fn each_missing_setting_is_named() {
        for missing in [
            "SERVICE_ID",
            "PLAN_ID",
            "BROKER_USERNAME",
            "BROKER_PASSWORD",
            "PAAS_DOMAIN",
            "API_ENDPOINT",
            "TARGETS_PATH",
        ] {
            let pairs: Vec<_> = complete()
                .into_iter()
                .filter(|(k, _)| *k != missing)
                .collect();
            let e = config(&pairs).unwrap_err();
            assert_eq!(e.name, missing, "{e}");
        }
    }

    #[test]
    fn invalid_values_are_named() {
        for (name, value) in [
            ("PORT", "http"),
            ("DATABASE_URL", "mysql://db/broker"),
            ("CACHE_EXPIRY_TIME", "soon"),
            ("DATABASE_MAX_CONNECTIONS", "0"),
            ("CF_PAGE_SIZE", "0"),
            ("BROKER_OPERATION_TIMEOUT_SECONDS", "0"),
            ("BROKER_OPERATION_TIMEOUT_SECONDS", "45s"),
        ] {
            let mut pairs = complete();
            pairs.push((name, value));
            let e = config(&pairs).unwrap_err();
            assert_eq!(e.name, name, "{e}");
        }
    }

    #[test]
    fn credentials_may_come_from_a_user_provided_service() {
        let vcap = r#"{"user-provided":[{"name":"secrets","credentials":
            {"BROKER_PASSWORD":"from-vcap","UAA_PASSWORD":"p2"}}]}"#;
        let mut pairs: Vec<_> = complete()
            .into_iter()
            .filter(|(k, _)| !matches!(*k, "BROKER_PASSWORD" | "UAA_PASSWORD"))
            .collect();
        pairs.push(("VCAP_SERVICES", vcap));
        let c = config(&pairs).unwrap();
        assert_eq!(c.credentials.password.expose(), "from-vcap");
    }

    #[test]
    fn the_scrape_token_key_is_optional_long_and_given_one_way() {
        assert!(config(&complete()).unwrap().scrape_token_key.is_none());
        let key = "0123456789abcdef0123456789abcdef";
        let mut pairs = complete();
        pairs.push(("SCRAPE_TOKEN_KEY", key));
        let inline = config(&pairs).unwrap().scrape_token_key.unwrap();
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("key");
        std::fs::write(&path, format!("{key}\n")).unwrap();
        let mut pairs = complete();
        pairs.push(("SCRAPE_TOKEN_KEY_FILE", path.to_str().unwrap()));
        let from_file = config(&pairs).unwrap().scrape_token_key.unwrap();
        assert_eq!(inline.token_for("b"), from_file.token_for("b"));

        let mut pairs = complete();
        pairs.push(("SCRAPE_TOKEN_KEY", "too-short-a-key"));
        let e = config(&pairs).unwrap_err();
        assert_eq!(e.name, "SCRAPE_TOKEN_KEY");
        assert!(!e.to_string().contains("too-short"), "{e}");
        let mut pairs = complete();
        pairs.push(("SCRAPE_TOKEN_KEY", key));
        pairs.push(("SCRAPE_TOKEN_KEY_FILE", path.to_str().unwrap()));
        assert_eq!(config(&pairs).unwrap_err().name, "SCRAPE_TOKEN_KEY");
        let mut pairs = complete();
        pairs.push(("SCRAPE_TOKEN_KEY_FILE", "/no/such/key"));
        assert_eq!(config(&pairs).unwrap_err().name, "SCRAPE_TOKEN_KEY_FILE");
    }

    #[test]
    fn secrets_never_show_in_debug_output() {
        let mut pairs = complete();
        pairs.push(("SCRAPE_TOKEN_KEY", "scrape-token-key-0123456789abcdef"));
        pairs.push(("DATABASE_URL", "postgres://u:dbsecret@db/broker"));
        let text = format!("{:?}", config(&pairs).unwrap());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("dbsecret"), "{text}");
        assert!(!text.contains("scrape-token-key"), "{text}");
    }
}
