//! The updater's typed configuration, read once at start from [`Settings`].

use std::time::Duration;

use gds_engine::{CatalogIds, EngineConfig};
use gds_service::{Settings, SettingsError};

/// Every minute, at second 0.
pub const DEFAULT_SCHEDULE: &str = "0 * * * * *";

/// The settings the updater reads itself, besides the engine's (checked
/// against this crate's sources by a unit test, see `gds_service::declared`).
pub const SETTINGS: &[&str] = &[
    "UPDATE_TARGETS_SCHEDULE",
    "UPDATE_TARGETS_RATE_SECONDS",
    "AUDIT_EVENTS_POLL_SECONDS",
    "LISTEN_HOST",
];

/// Every setting the `updater` binary reads: its own, the engine's (the database, a
/// reconcile pass, the Cloud Controller client, the store), the catalog ids
/// (`--import-bindings` only) and every service's (`PORT`, `VCAP_SERVICES`, ...), sorted.
/// The deployment manifests are checked against this list.
pub fn settings() -> Vec<&'static str> {
    let mut all = [
        SETTINGS,
        &EngineConfig::settings(),
        CatalogIds::SETTINGS,
        gds_service::SETTINGS,
    ]
    .concat();
    all.sort_unstable();
    all.dedup();
    all
}

/// When full reconcile passes run.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Schedule {
    /// `UPDATE_TARGETS_SCHEDULE`: a cron expression with seconds (`sec min hour dom mon
    /// dow`, UTC); a five-field crontab expression gets second 0.
    Cron(String),
    /// `UPDATE_TARGETS_RATE_SECONDS` (the original's setting): every so many seconds.
    Every(Duration),
}

/// Everything the updater reads at start.
#[derive(Clone, Debug)]
pub struct UpdaterConfig {
    /// The database (shared with the broker), the Cloud Controller, the store and a
    /// pass's settings.
    pub engine: EngineConfig,
    pub schedule: Schedule,
    /// `AUDIT_EVENTS_POLL_SECONDS` (default 2; 0 turns the fast path off). Two seconds keeps
    /// a change's worst case (one poll interval plus one scoped pass) within five seconds,
    /// for one cheap request per poll.
    pub events_poll: Option<Duration>,
    /// `LISTEN_HOST`, default `0.0.0.0`.
    pub listen_host: String,
    /// `PORT`, default 8080; 0 picks a free port.
    pub port: u16,
}

impl UpdaterConfig {
    /// Reads and checks every setting; the first problem is reported, naming it.
    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let engine = EngineConfig::from_settings(settings)?;
        let schedule = match (
            settings.get("UPDATE_TARGETS_SCHEDULE"),
            settings.get("UPDATE_TARGETS_RATE_SECONDS"),
        ) {
            (Some(expr), _) => Schedule::Cron(parse_cron(&expr)?),
            (None, Some(_)) => Schedule::Every(Duration::from_secs(settings.number(
                "UPDATE_TARGETS_RATE_SECONDS",
                60,
                1..=86_400,
            )?)),
            (None, None) => Schedule::Cron(DEFAULT_SCHEDULE.into()),
        };
        let poll: u64 = settings.number("AUDIT_EVENTS_POLL_SECONDS", 2, 0..=3600)?;
        Ok(Self {
            engine,
            schedule,
            events_poll: (poll > 0).then(|| Duration::from_secs(poll)),
            listen_host: settings
                .get("LISTEN_HOST")
                .unwrap_or_else(|| "0.0.0.0".into()),
            port: settings.port()?,
        })
    }
}

/// Checks a cron expression, giving a five-field (crontab) one second 0.
fn parse_cron(expr: &str) -> Result<String, SettingsError> {
    let expr = expr.trim();
    let expr = if expr.split_whitespace().count() == 5 {
        format!("0 {expr}")
    } else {
        expr.to_owned()
    };
    tokio_cron_scheduler::Job::new_async(expr.as_str(), |_, _| Box::pin(async {}))
        .map(|_| expr.clone())
        .map_err(|_| {
            SettingsError::new(
                "UPDATE_TARGETS_SCHEDULE",
                format!("{expr:?} is not a cron expression (sec min hour day-of-month month day-of-week)"),
            )
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use gds_engine::{DEFAULT_DATABASE_URL, ReconcileSettings};

    #[test]
    fn settings_declares_exactly_what_the_sources_read() {
        let passed_through = [
            &EngineConfig::settings(),
            CatalogIds::SETTINGS,
            gds_service::SETTINGS,
        ]
        .concat();
        gds_service::declared::check_sources(
            env!("CARGO_MANIFEST_DIR"),
            SETTINGS,
            &passed_through,
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    fn complete() -> Vec<(&'static str, &'static str)> {
        vec![
            ("PAAS_DOMAIN", "apps.example.com"),
            ("API_ENDPOINT", "https://api.example.com"),
            ("UAA_USERNAME", "u"),
            ("UAA_PASSWORD", "p"),
            ("ENVIRONMENT", "local"),
            ("TARGETS_PATH", "/tmp/targets"),
        ]
    }

    fn config(extra: &[(&'static str, &'static str)]) -> Result<UpdaterConfig, SettingsError> {
        let mut pairs = complete();
        pairs.extend_from_slice(extra);
        UpdaterConfig::from_settings(&Settings::from_pairs(pairs).unwrap())
    }

    #[tokio::test]
    async fn complete_settings_give_the_defaults() {
        let c = config(&[]).unwrap();
        assert_eq!(c.engine.database.url.expose(), DEFAULT_DATABASE_URL);
        assert_eq!(c.schedule, Schedule::Cron(DEFAULT_SCHEDULE.into()));
        assert_eq!(c.events_poll, Some(Duration::from_secs(2)));
        assert_eq!(c.engine.reconcile, ReconcileSettings::default());
        assert_eq!(c.engine.reconcile.lease_ttl, Duration::from_secs(10));
        assert_eq!(c.port, 8080);
    }

    #[tokio::test]
    async fn the_originals_rate_setting_is_honoured_and_a_cron_expression_wins() {
        let c = config(&[("UPDATE_TARGETS_RATE_SECONDS", "180")]).unwrap();
        assert_eq!(c.schedule, Schedule::Every(Duration::from_secs(180)));
        let c = config(&[
            ("UPDATE_TARGETS_RATE_SECONDS", "180"),
            ("UPDATE_TARGETS_SCHEDULE", "*/5 * * * *"),
        ])
        .unwrap();
        assert_eq!(c.schedule, Schedule::Cron("0 */5 * * * *".into()));
    }

    #[tokio::test]
    async fn invalid_values_are_named() {
        for (name, value) in [
            ("UPDATE_TARGETS_SCHEDULE", "every minute"),
            ("UPDATE_TARGETS_RATE_SECONDS", "0"),
            ("AUDIT_EVENTS_POLL_SECONDS", "soon"),
            ("DELETION_MAX_SHARE", "1.5"),
            ("ALLOW_MASS_DELETION", "maybe"),
            ("UPDATER_CONCURRENCY", "0"),
            ("UPDATER_LEASE_SECONDS", "4"),
            ("DATABASE_URL", "mysql://db"),
            ("PORT", "http"),
        ] {
            let e = config(&[(name, value)]).unwrap_err();
            assert_eq!(e.name, name, "{e}");
        }
    }

    #[tokio::test]
    async fn zero_turns_the_fast_path_off() {
        let c = config(&[("AUDIT_EVENTS_POLL_SECONDS", "0")]).unwrap();
        assert_eq!(c.events_poll, None);
    }
}
