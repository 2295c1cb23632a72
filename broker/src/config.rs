//! The broker's typed configuration, read once at start from [`Settings`] (the environment,
//! then the credentials of user-provided services in `VCAP_SERVICES`).

use gds_cf::CfConfig;
use gds_service::{Settings, SettingsError};
use gds_store::StoreConfig;
use gds_targets::ModelConfig;

/// Where the SQLite database lives unless `DATABASE_URL` says otherwise: a data directory
/// under the working directory, created at start.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://.data/broker.db?mode=rwc";

/// The settings the broker reads itself (checked against this crate's sources by a unit
/// test, see `gds_service::declared`).
pub const SETTINGS: &[&str] = &[
    "SERVICE_ID",
    "SERVICE_NAME",
    "PLAN_ID",
    "BROKER_USERNAME",
    "BROKER_PASSWORD",
    "DATABASE_URL",
    "DATABASE_MAX_CONNECTIONS",
    "PAAS_DOMAIN",
    "CACHE_EXPIRY_TIME",
    "LISTEN_HOST",
    "BROKER_OPERATION_TIMEOUT_SECONDS",
];

/// Every setting the `broker` binary reads: its own, those of the reconcile pass behind
/// `POST /update-targets`, the Cloud Controller client's, the store's and every service's
/// (`PORT`, `VCAP_SERVICES`, ...), sorted. The deployment manifests are checked against
/// this list.
pub fn settings() -> Vec<&'static str> {
    let mut all = [
        SETTINGS,
        gds_engine::ReconcileSettings::SETTINGS,
        gds_cf::SETTINGS,
        gds_store::SETTINGS,
        gds_service::SETTINGS,
    ]
    .concat();
    all.sort_unstable();
    all.dedup();
    all
}

/// A secret: usable, never printed (the Cloud Controller client's type).
pub use gds_cf::Secret;

/// The catalog's identifiers (DESIGN.md section 3: one service, one plan `prometheus`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogIds {
    /// `SERVICE_ID`.
    pub service_id: String,
    /// `SERVICE_NAME`, default `gds-prometheus`.
    pub service_name: String,
    /// `PLAN_ID`.
    pub plan_id: String,
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
    /// `DATABASE_URL`; may contain a password, so never log it unredacted.
    pub database_url: Secret,
    /// `DATABASE_MAX_CONNECTIONS`, default 10.
    pub database_max_connections: u32,
    /// `PAAS_DOMAIN` and friends.
    pub model: ModelConfig,
    /// `API_ENDPOINT`, `UAA_*`, `CF_*`.
    pub cf: CfConfig,
    /// `ENVIRONMENT`/`TARGETS_PATH` or `BUCKET_NAME`, `AWS_*`, `S3_ENDPOINT`, `BUCKET_PREFIX`.
    pub store: StoreConfig,
    /// `CACHE_EXPIRY_TIME` (seconds). Accepted so that the original's manifests keep
    /// working, and validated, but it changes nothing: the original cached app look-ups
    /// for this long; this broker looks an app up afresh on every bind (one batched set of
    /// requests) and the updater keeps files current, so there is nothing to expire.
    pub cache_expiry_seconds: u64,
    /// The updater's pass settings (`DELETION_MAX_SHARE`, ...), for `POST /update-targets`.
    pub reconcile: gds_engine::ReconcileSettings,
    /// `LISTEN_HOST`, default `0.0.0.0` (Cloud Foundry routes to any interface).
    pub listen_host: String,
    /// `PORT`, default 8080; 0 picks a free port.
    pub port: u16,
    /// `BROKER_OPERATION_TIMEOUT_SECONDS`, default 45: every OSB operation answers within
    /// this, Cloud Controller retries and rate-limit waits included. Keep it below the
    /// platform's broker client timeout (Cloud Foundry: `broker_client_timeout_seconds`,
    /// 60 by default), after which the platform gives up on a bind and unbinds it.
    pub operation_timeout: std::time::Duration,
}

/// A missing or invalid setting: `Display` is the one line printed before exiting.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name}: {reason}")]
pub struct ConfigError {
    pub name: String,
    pub reason: String,
}

impl From<SettingsError> for ConfigError {
    fn from(e: SettingsError) -> Self {
        Self {
            name: e.name,
            reason: e.reason,
        }
    }
}

impl BrokerConfig {
    /// Reads and checks every setting; the first problem is reported, naming the setting.
    pub fn from_settings(settings: &Settings) -> Result<Self, ConfigError> {
        let catalog = CatalogIds {
            service_id: settings.required("SERVICE_ID", "the catalog's service id")?,
            service_name: settings
                .get("SERVICE_NAME")
                .unwrap_or_else(|| "gds-prometheus".into()),
            plan_id: settings.required("PLAN_ID", "the catalog's plan id")?,
        };
        if catalog.service_id == catalog.plan_id {
            return Err(ConfigError {
                name: "PLAN_ID".into(),
                reason: "must differ from SERVICE_ID".into(),
            });
        }
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
            return Err(ConfigError {
                name: "BROKER_USERNAME".into(),
                reason: "must not contain ':' (basic auth cannot carry it)".into(),
            });
        }
        let database_url = settings
            .get("DATABASE_URL")
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        gds_db::DbKind::of_url(&database_url).map_err(|e| ConfigError {
            name: "DATABASE_URL".into(),
            reason: e
                .to_string()
                .trim_start_matches("DATABASE_URL is invalid: ")
                .to_owned(),
        })?;
        let database_max_connections = settings.number("DATABASE_MAX_CONNECTIONS", 10, 1..=500)?;
        let model = ModelConfig {
            paas_domain: settings.required(
                "PAAS_DOMAIN",
                "the apps domain used to guess the hostname of an app without a public route",
            )?,
        };
        let cf = CfConfig::from_lookup(settings.lookup()).map_err(|e| ConfigError {
            name: e.name.into(),
            reason: e.reason,
        })?;
        let store = StoreConfig::from_lookup(settings.lookup()).map_err(store_error)?;
        let cache_expiry_seconds = settings.number("CACHE_EXPIRY_TIME", 60, 0..=86_400 * 365)?;
        let reconcile = gds_engine::ReconcileSettings::from_settings(settings)?;
        let listen_host = settings
            .get("LISTEN_HOST")
            .unwrap_or_else(|| "0.0.0.0".into());
        let port = settings.port()?;
        let operation_timeout = std::time::Duration::from_secs(settings.number(
            "BROKER_OPERATION_TIMEOUT_SECONDS",
            crate::service::DEFAULT_OPERATION_TIMEOUT.as_secs(),
            1..=3600,
        )?);
        Ok(Self {
            catalog,
            credentials,
            database_url: Secret::new(database_url),
            database_max_connections,
            model,
            cf,
            store,
            cache_expiry_seconds,
            reconcile,
            listen_host,
            port,
            operation_timeout,
        })
    }
}

fn store_error(e: gds_store::ConfigError) -> ConfigError {
    use gds_store::ConfigError as E;
    let (name, reason) = match &e {
        E::Missing { name, why } => ((*name).to_owned(), format!("is required ({why})")),
        E::Invalid { name, reason } => ((*name).to_owned(), reason.clone()),
        E::MissingCredentials => (
            "AWS_ACCESS_KEY_ID".to_owned(),
            "AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY are required for S3".to_owned(),
        ),
        _ => ("store".to_owned(), e.to_string()),
    };
    ConfigError { name, reason }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_declares_exactly_what_the_sources_read() {
        let passed_through = [
            gds_engine::ReconcileSettings::SETTINGS,
            gds_cf::SETTINGS,
            gds_store::SETTINGS,
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

    fn config(pairs: &[(&str, &str)]) -> Result<BrokerConfig, ConfigError> {
        BrokerConfig::from_settings(&Settings::from_pairs(pairs.iter().copied()).unwrap())
    }

    #[test]
    fn complete_settings_give_defaults_for_the_rest() {
        let c = config(&complete()).unwrap();
        assert_eq!(c.catalog.service_name, "gds-prometheus");
        assert_eq!(c.database_url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(c.port, 8080);
        assert_eq!(c.cache_expiry_seconds, 60);
        assert_eq!(c.listen_host, "0.0.0.0");
        assert_eq!(c.operation_timeout, std::time::Duration::from_secs(45));
        assert_eq!(c.store, StoreConfig::Dir("/tmp/targets".into()));
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
    fn secrets_never_show_in_debug_output() {
        let mut pairs = complete();
        pairs.push(("DATABASE_URL", "postgres://u:dbsecret@db/broker"));
        let text = format!("{:?}", config(&pairs).unwrap());
        assert!(!text.contains("hunter2"), "{text}");
        assert!(!text.contains("dbsecret"), "{text}");
    }
}
