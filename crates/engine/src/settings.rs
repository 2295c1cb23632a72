//! What a reconcile pass reads besides its clients: the deletion valve, the concurrency
//! of apply and the lease's lifetime. Shared by the updater and the broker's
//! `POST /update-targets`.

use std::time::Duration;

use gds_reconcile::Limits;
use gds_service::{Settings, SettingsError};

/// The reconcile lease's lifetime: with the fast path's 2 s poll, a standby takes over
/// from a crashed holder within 12 s. Renewing it costs one small UPDATE every 3.3 s
/// while a pass runs.
pub const DEFAULT_LEASE_SECONDS: u64 = 10;

/// What a reconcile pass needs besides its clients; shared by the updater and the
/// broker's `POST /update-targets`.
#[derive(Clone, Debug, PartialEq)]
pub struct ReconcileSettings {
    /// `DELETION_MAX_SHARE` (default 0.5), `DELETION_MAX_COUNT` (default 10),
    /// `ALLOW_MASS_DELETION` (default false): the bounded-deletion valve.
    pub limits: Limits,
    /// `UPDATER_CONCURRENCY` (default 8): apps whose files are changed at once.
    pub concurrency: usize,
    /// `UPDATER_LEASE_SECONDS` (default 10): how long the reconcile lease lasts without
    /// renewal, so a crashed updater's lease is free again after this and a standby's
    /// next poll takes over. The holder renews it every third of that and stops writing
    /// when a fifth of it is left unconfirmed ([`crate::lease::LeaseTiming`]).
    pub lease_ttl: Duration,
    /// `UPDATER_SAFETY_LISTING_SECONDS` (default 600): a full pass reuses its previous
    /// listing of the bucket when the writers' record is unchanged since it, at most this
    /// long (0: every full pass lists).
    pub safety_listing: Duration,
}

/// A full pass lists the bucket at least this often even when the writers' record says
/// nothing changed: 10 minutes, catching writes that bypassed the record.
pub const DEFAULT_SAFETY_LISTING_SECONDS: u64 = 600;

impl Default for ReconcileSettings {
    fn default() -> Self {
        Self {
            limits: Limits::default(),
            concurrency: 8,
            lease_ttl: Duration::from_secs(DEFAULT_LEASE_SECONDS),
            safety_listing: Duration::from_secs(DEFAULT_SAFETY_LISTING_SECONDS),
        }
    }
}

impl ReconcileSettings {
    /// The settings [`ReconcileSettings::from_settings`] reads.
    pub const SETTINGS: &[&str] = &[
        "DELETION_MAX_SHARE",
        "DELETION_MAX_COUNT",
        "ALLOW_MASS_DELETION",
        "UPDATER_CONCURRENCY",
        "UPDATER_LEASE_SECONDS",
        "UPDATER_SAFETY_LISTING_SECONDS",
    ];

    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let defaults = Limits::default();
        Ok(Self {
            limits: Limits {
                max_share: settings.number("DELETION_MAX_SHARE", defaults.max_share, 0.0..=1.0)?,
                max_count: settings.number(
                    "DELETION_MAX_COUNT",
                    defaults.max_count,
                    0..=1_000_000,
                )?,
                allow_mass_deletion: settings.flag("ALLOW_MASS_DELETION", false)?,
            },
            concurrency: settings.number("UPDATER_CONCURRENCY", 8, 1..=256)?,
            lease_ttl: Duration::from_secs(settings.number(
                "UPDATER_LEASE_SECONDS",
                DEFAULT_LEASE_SECONDS,
                5..=86_400,
            )?),
            safety_listing: Duration::from_secs(settings.number(
                "UPDATER_SAFETY_LISTING_SECONDS",
                DEFAULT_SAFETY_LISTING_SECONDS,
                0..=86_400,
            )?),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn settings_declares_exactly_what_the_sources_read() {
        let declared = [
            ReconcileSettings::SETTINGS,
            crate::EngineConfig::SETTINGS,
            crate::CatalogIds::SETTINGS,
        ]
        .concat();
        // The store's settings its errors name.
        let passed_through = [gds_cf::SETTINGS, gds_store::SETTINGS].concat();
        gds_service::declared::check_sources(
            env!("CARGO_MANIFEST_DIR"),
            &declared,
            &passed_through,
            &[],
        )
        .unwrap_or_else(|e| panic!("{e}"));
    }

    #[test]
    fn unset_settings_give_the_defaults_and_bad_ones_are_named() {
        let none = Settings::from_pairs(Vec::<(String, String)>::new()).unwrap();
        let defaults = ReconcileSettings::from_settings(&none).unwrap();
        assert_eq!(defaults, ReconcileSettings::default());
        assert_eq!(
            defaults.lease_ttl,
            Duration::from_secs(DEFAULT_LEASE_SECONDS)
        );
        for (name, value) in [
            ("DELETION_MAX_SHARE", "1.5"),
            ("DELETION_MAX_COUNT", "-1"),
            ("ALLOW_MASS_DELETION", "maybe"),
            ("UPDATER_CONCURRENCY", "0"),
            ("UPDATER_LEASE_SECONDS", "4"),
        ] {
            let settings = Settings::from_pairs([(name, value)]).unwrap();
            let e = ReconcileSettings::from_settings(&settings).unwrap_err();
            assert_eq!(e.name, name, "{e}");
        }
    }
}
