//! What the broker and the updater share at start: the settings of the database, the
//! store, the Cloud Controller and the planner's model, read one way, and connecting to
//! them in one place. Makes no Cloud Controller request: both services start while the
//! Cloud Controller is down.

use std::sync::Arc;

use anyhow::Context;
use gds_cf::{CfClient, CfConfig};
use gds_db::{ConnectOptions, Db};
use gds_service::{Secret, Settings, SettingsError};
use gds_store::{StoreConfig, TargetStore};
use gds_targets::ModelConfig;

use crate::{ReconcileMetrics, ReconcileSettings, Reconciler};

/// Where the SQLite database lives unless `DATABASE_URL` says otherwise: a data directory
/// under the working directory, created at start. The updater reads the broker's.
pub const DEFAULT_DATABASE_URL: &str = "sqlite://.data/broker.db?mode=rwc";

/// The database's settings.
#[derive(Clone, Debug)]
pub struct DatabaseConfig {
    /// `DATABASE_URL`; may contain a password, so never log it unredacted.
    pub url: Secret,
    /// `DATABASE_MAX_CONNECTIONS`, 2..=500, default 10. At least two: a reconcile pass
    /// holds one connection in an app's lock transaction while its lease is renewed on
    /// another; with one, the renewal would wait behind the pass and the lease lapse.
    /// The broker runs passes too (`POST /update-targets`), so the bound is the same.
    pub max_connections: u32,
}

impl DatabaseConfig {
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let url = settings
            .get("DATABASE_URL")
            .unwrap_or_else(|| DEFAULT_DATABASE_URL.into());
        gds_db::DbKind::of_url(&url).map_err(|e| {
            SettingsError::new(
                "DATABASE_URL",
                e.to_string()
                    .trim_start_matches("DATABASE_URL is invalid: "),
            )
        })?;
        Ok(Self {
            url: Secret::new(url),
            max_connections: settings.number("DATABASE_MAX_CONNECTIONS", 10, 2..=500)?,
        })
    }

    /// Connects, running the migrations.
    pub async fn connect(&self) -> anyhow::Result<Db> {
        Db::connect(
            self.url.expose(),
            ConnectOptions {
                max_connections: self.max_connections,
                ..ConnectOptions::default()
            },
        )
        .await
        .context("preparing the database (DATABASE_URL)")
    }
}

/// Everything the reconcile engine reads at start, in the broker and the updater alike.
#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub database: DatabaseConfig,
    /// `PAAS_DOMAIN`.
    pub model: ModelConfig,
    /// `API_ENDPOINT`, `UAA_*`, `CF_*`.
    pub cf: CfConfig,
    /// `ENVIRONMENT`/`TARGETS_PATH` or `BUCKET_NAME`, `AWS_*`, `S3_ENDPOINT`, `BUCKET_PREFIX`.
    pub store: StoreConfig,
    /// `DELETION_MAX_SHARE`, ... (a pass's own settings).
    pub reconcile: ReconcileSettings,
}

/// The clients a service works with, connected.
#[derive(Clone)]
pub struct Connections {
    pub db: Db,
    pub store: Arc<dyn TargetStore>,
    pub cf: Arc<CfClient>,
}

impl EngineConfig {
    /// The settings [`EngineConfig::from_settings`] reads itself, besides those of the
    /// crates it reads through ([`EngineConfig::settings`]).
    pub const SETTINGS: &[&str] = &["DATABASE_URL", "DATABASE_MAX_CONNECTIONS", "PAAS_DOMAIN"];

    /// Every setting it reads: its own, a pass's, the Cloud Controller client's, the
    /// store's.
    pub fn settings() -> Vec<&'static str> {
        [
            Self::SETTINGS,
            ReconcileSettings::SETTINGS,
            gds_cf::SETTINGS,
            gds_store::SETTINGS,
        ]
        .concat()
    }

    /// Reads and checks every setting; the first problem is reported, naming it.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        Ok(Self {
            database: DatabaseConfig::from_settings(settings)?,
            model: ModelConfig {
                paas_domain: settings.required(
                    "PAAS_DOMAIN",
                    "the apps domain used to guess the hostname of an app without a public route",
                )?,
            },
            cf: CfConfig::from_lookup(settings.lookup())?,
            store: StoreConfig::from_lookup(settings.lookup()).map_err(store_error)?,
            reconcile: ReconcileSettings::from_settings(settings)?,
        })
    }

    /// The Cloud Controller client (no request is made).
    pub fn cf_client(&self) -> anyhow::Result<Arc<CfClient>> {
        let cf = CfClient::new(self.cf.clone()).context("building the Cloud Controller client")?;
        Ok(Arc::new(cf))
    }

    /// Connects to the database (running migrations), opens the store and builds the
    /// Cloud Controller client.
    pub async fn connect(&self) -> anyhow::Result<Connections> {
        let db = self.database.connect().await?;
        // Without static keys, the S3 credentials come from the AWS default chain:
        // resolved now, so that a service without any stops at start with one line.
        let store = self
            .store
            .clone()
            .open_checked()
            .await
            .map_err(store_error)
            .context("opening the target store")?;
        Ok(Connections {
            db,
            store,
            cf: self.cf_client()?,
        })
    }

    /// A reconciler over `connections`, counting into `metrics`.
    pub fn reconciler(&self, connections: &Connections, metrics: ReconcileMetrics) -> Reconciler {
        Reconciler::new(
            connections.db.clone(),
            Arc::clone(&connections.store),
            Arc::clone(&connections.cf),
            self.model.clone(),
            self.reconcile.clone(),
            metrics,
        )
    }
}

/// The store's own configuration error as the setting it names.
fn store_error(e: gds_store::ConfigError) -> SettingsError {
    use gds_store::ConfigError as E;
    match &e {
        E::Missing { name, why } => SettingsError::new(*name, format!("is required ({why})")),
        E::Invalid { name, reason } => SettingsError::new(*name, reason.clone()),
        E::MissingCredentials => SettingsError::new(
            "AWS_SECRET_ACCESS_KEY",
            "set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or neither (the AWS \
             default credential chain: environment, profile, web identity, ECS or EC2 \
             instance metadata)",
        ),
        _ => SettingsError::new("store", e.to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &[(&'static str, &'static str)]) -> Result<EngineConfig, SettingsError> {
        let mut pairs = vec![
            ("PAAS_DOMAIN", "apps.example.com"),
            ("API_ENDPOINT", "https://api.example.com"),
            ("UAA_USERNAME", "u"),
            ("UAA_PASSWORD", "p"),
            ("ENVIRONMENT", "local"),
            ("TARGETS_PATH", "/tmp/targets"),
        ];
        pairs.extend_from_slice(extra);
        EngineConfig::from_settings(&Settings::from_pairs(pairs).unwrap())
    }

    #[test]
    fn complete_settings_give_the_defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(c.database.max_connections, 10);
        assert_eq!(c.store, StoreConfig::Dir("/tmp/targets".into()));
        assert_eq!(c.reconcile, ReconcileSettings::default());
    }

    #[test]
    fn a_pass_needs_two_database_connections() {
        assert_eq!(
            config(&[("DATABASE_MAX_CONNECTIONS", "2")])
                .unwrap()
                .database
                .max_connections,
            2
        );
        for bad in ["1", "0", "501", "many"] {
            let e = config(&[("DATABASE_MAX_CONNECTIONS", bad)]).unwrap_err();
            assert_eq!(e.name, "DATABASE_MAX_CONNECTIONS", "{e}");
        }
    }

    #[test]
    fn invalid_values_are_named() {
        for (name, value) in [
            ("DATABASE_URL", "mysql://db"),
            ("PAAS_DOMAIN", ""),
            ("API_ENDPOINT", "not a url"),
            ("TARGETS_PATH", ""),
            ("UPDATER_LEASE_SECONDS", "4"),
        ] {
            let e = config(&[(name, value)]).unwrap_err();
            assert_eq!(e.name, name, "{e}");
        }
    }

    #[test]
    fn the_database_url_never_shows_in_debug_output() {
        let c = config(&[("DATABASE_URL", "postgres://u:dbsecret@db/broker")]).unwrap();
        let text = format!("{c:?}");
        assert!(!text.contains("dbsecret"), "{text}");
    }
}
