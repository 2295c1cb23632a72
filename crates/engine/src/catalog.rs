//! The catalog's identifiers (DESIGN.md section 3: one service, one plan `prometheus`):
//! what the broker offers, and what the updater's `--import-bindings` looks for in the
//! Cloud Controller (those of the replaced broker, which its instances refer to).

use gds_service::{Settings, SettingsError};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CatalogIds {
    /// `SERVICE_ID`: the offering's `broker_catalog.id`.
    pub service_id: String,
    /// `SERVICE_NAME`, default `gds-prometheus`: the offering's name.
    pub service_name: String,
    /// `PLAN_ID`: the plan's `broker_catalog.id`.
    pub plan_id: String,
}

impl CatalogIds {
    /// The settings [`CatalogIds::from_settings`] reads.
    pub const SETTINGS: &[&str] = &["SERVICE_ID", "SERVICE_NAME", "PLAN_ID"];

    pub fn from_settings(settings: &Settings) -> Result<Self, SettingsError> {
        let ids = CatalogIds {
            service_id: settings.required("SERVICE_ID", "the catalog's service id")?,
            service_name: settings
                .get("SERVICE_NAME")
                .unwrap_or_else(|| "gds-prometheus".into()),
            plan_id: settings.required("PLAN_ID", "the catalog's plan id")?,
        };
        if ids.service_id == ids.plan_id {
            return Err(SettingsError::new("PLAN_ID", "must differ from SERVICE_ID"));
        }
        Ok(ids)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn catalog_ids_are_required_and_distinct() {
        let settings = |pairs: &[(&str, &str)]| {
            CatalogIds::from_settings(&Settings::from_pairs(pairs.iter().copied()).unwrap())
        };
        assert_eq!(
            settings(&[("PLAN_ID", "p")]).unwrap_err().name,
            "SERVICE_ID"
        );
        assert_eq!(
            settings(&[("SERVICE_ID", "s")]).unwrap_err().name,
            "PLAN_ID"
        );
        assert_eq!(
            settings(&[("SERVICE_ID", "x"), ("PLAN_ID", "x")])
                .unwrap_err()
                .name,
            "PLAN_ID"
        );
        let ids = settings(&[("SERVICE_ID", "s"), ("PLAN_ID", "p")]).unwrap();
        assert_eq!(ids.service_name, "gds-prometheus");
    }
}
