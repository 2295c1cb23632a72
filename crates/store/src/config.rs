//! Choosing and opening a store from the settings the broker and the updater share
//! (DESIGN.md section 7), so both read them the same way.

use std::path::PathBuf;
use std::sync::Arc;

use gds_service::Secret;

use crate::{ConfigError, DirStore, S3Config, S3Store, TargetStore};

/// Every setting [`StoreConfig::from_lookup`] (and [`S3Store::new`]'s `lookup`) reads,
/// checked against this crate's sources by a unit test (see `gds_service::declared`).
pub const SETTINGS: &[&str] = &[
    "ENVIRONMENT",
    "TARGETS_PATH",
    "BUCKET_NAME",
    "BUCKET_PREFIX",
    "AWS_REGION",
    "S3_ENDPOINT",
    "AWS_ACCESS_KEY_ID",
    "AWS_SECRET_ACCESS_KEY",
    "AWS_SESSION_TOKEN",
];

/// Which store to use.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum StoreConfig {
    /// `ENVIRONMENT=local`: the directory `TARGETS_PATH`.
    Dir(PathBuf),
    /// Otherwise: an S3 bucket.
    S3(S3Config),
}

impl StoreConfig {
    /// Reads the store settings through `lookup` (`|name| std::env::var(name).ok()` for
    /// the process environment; a map in tests). Empty values count as unset.
    ///
    /// - `ENVIRONMENT=local`: `TARGETS_PATH` (required).
    /// - otherwise: `BUCKET_NAME` (required), `AWS_REGION` (required unless `S3_ENDPOINT`
    ///   is set; then it defaults to `us-east-1`), `S3_ENDPOINT`, `BUCKET_PREFIX` (a key
    ///   prefix such as `eu-west-1/`), and static keys `AWS_ACCESS_KEY_ID` +
    ///   `AWS_SECRET_ACCESS_KEY` (+ `AWS_SESSION_TOKEN`): both or neither; with neither,
    ///   the AWS SDK's default credential chain (an instance role, say), which
    ///   [`StoreConfig::open_checked`] resolves at start.
    ///
    /// Credentials found elsewhere (`VCAP_SERVICES`) can be set on the returned
    /// [`S3Config`] by the caller; pass a lookup that serves them under the `AWS_*` names.
    pub fn from_lookup(
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<StoreConfig, ConfigError> {
        let get = |name: &str| lookup(name).filter(|value| !value.trim().is_empty());
        if get("ENVIRONMENT").as_deref() == Some("local") {
            let path = get("TARGETS_PATH").ok_or(ConfigError::Missing {
                name: "TARGETS_PATH",
                why: "ENVIRONMENT=local keeps the target files in this directory",
            })?;
            return Ok(StoreConfig::Dir(PathBuf::from(path)));
        }
        let bucket = get("BUCKET_NAME").ok_or(ConfigError::Missing {
            name: "BUCKET_NAME",
            why: "the S3 bucket of the target files (or set ENVIRONMENT=local and TARGETS_PATH)",
        })?;
        let endpoint = get("S3_ENDPOINT");
        let region = match (get("AWS_REGION"), &endpoint) {
            (Some(region), _) => region,
            (None, Some(_)) => "us-east-1".to_owned(),
            (None, None) => {
                return Err(ConfigError::Missing {
                    name: "AWS_REGION",
                    why: "the region of the S3 bucket",
                });
            }
        };
        let access_key_id = get("AWS_ACCESS_KEY_ID");
        let secret_access_key = get("AWS_SECRET_ACCESS_KEY").map(Secret::new);
        if access_key_id.is_some() != secret_access_key.is_some() {
            return Err(ConfigError::MissingCredentials);
        }
        Ok(StoreConfig::S3(S3Config {
            bucket,
            region,
            endpoint,
            prefix: get("BUCKET_PREFIX").unwrap_or_default(),
            access_key_id,
            secret_access_key,
            session_token: get("AWS_SESSION_TOKEN").map(Secret::new),
        }))
    }

    /// Builds the store. Makes no request; call [`TargetStore::check`] to probe it.
    /// Without static keys the S3 credentials are resolved on first use: prefer
    /// [`StoreConfig::open_checked`] at start.
    pub fn open(self) -> Result<Arc<dyn TargetStore>, ConfigError> {
        Ok(match self {
            StoreConfig::Dir(path) => Arc::new(DirStore::new(path)),
            // The static keys, if any, are in the config already; the process environment
            // is the default chain's business.
            StoreConfig::S3(config) => Arc::new(S3Store::new(config, |_| None)?),
        })
    }

    /// [`StoreConfig::open`], then, for S3, resolves the credentials once
    /// ([`S3Store::check_credentials`]), so that a service without any stops at start
    /// with one line naming what was tried. Makes no request to the bucket.
    pub async fn open_checked(self) -> Result<Arc<dyn TargetStore>, ConfigError> {
        match self {
            StoreConfig::Dir(_) => self.open(),
            StoreConfig::S3(config) => {
                let store = S3Store::new(config, |_| None)?;
                store.check_credentials().await?;
                Ok(Arc::new(store))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    #[test]
    fn settings_declares_exactly_what_the_sources_read() {
        gds_service::declared::check_sources(env!("CARGO_MANIFEST_DIR"), SETTINGS, &[], &[])
            .unwrap_or_else(|e| panic!("{e}"));
    }

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    const KEYS: [(&str, &str); 2] = [
        ("AWS_ACCESS_KEY_ID", "AKID"),
        ("AWS_SECRET_ACCESS_KEY", "secret"),
    ];

    #[test]
    fn environment_local_selects_the_targets_directory() {
        let config =
            StoreConfig::from_lookup(lookup(&[("ENVIRONMENT", "local"), ("TARGETS_PATH", "/t")]))
                .unwrap();
        assert_eq!(config, StoreConfig::Dir("/t".into()));
    }

    #[test]
    fn environment_local_without_targets_path_names_the_setting() {
        let err = StoreConfig::from_lookup(lookup(&[("ENVIRONMENT", "local")])).unwrap_err();
        assert!(
            err.to_string().starts_with("TARGETS_PATH is not set"),
            "{err}"
        );
    }

    #[test]
    fn any_other_environment_reads_the_bucket_settings() {
        let mut pairs = vec![
            ("ENVIRONMENT", "production"),
            ("BUCKET_NAME", "targets"),
            ("AWS_REGION", "eu-west-2"),
            ("BUCKET_PREFIX", "eu-west-2/"),
            ("AWS_SESSION_TOKEN", "token"),
        ];
        pairs.extend(KEYS);
        let StoreConfig::S3(config) = StoreConfig::from_lookup(lookup(&pairs)).unwrap() else {
            panic!("expected an S3 configuration");
        };
        assert_eq!(config.bucket, "targets");
        assert_eq!(config.region, "eu-west-2");
        assert_eq!(config.prefix, "eu-west-2/");
        assert_eq!(config.endpoint, None);
        assert_eq!(config.access_key_id.as_deref(), Some("AKID"));
        assert_eq!(
            config.session_token.as_ref().map(Secret::expose),
            Some("token")
        );
    }

    #[test]
    fn an_s3_endpoint_makes_the_region_optional() {
        let mut pairs = vec![
            ("BUCKET_NAME", "targets"),
            ("S3_ENDPOINT", "http://127.0.0.1:9000"),
        ];
        pairs.extend(KEYS);
        let StoreConfig::S3(config) = StoreConfig::from_lookup(lookup(&pairs)).unwrap() else {
            panic!("expected an S3 configuration");
        };
        assert_eq!(config.region, "us-east-1");
        assert_eq!(config.endpoint.as_deref(), Some("http://127.0.0.1:9000"));
    }

    #[test]
    fn without_static_keys_the_default_chain_is_left_to_supply_them() {
        let pairs = [("BUCKET_NAME", "b"), ("AWS_REGION", "eu-west-1")];
        let StoreConfig::S3(config) = StoreConfig::from_lookup(lookup(&pairs)).unwrap() else {
            panic!("expected an S3 configuration");
        };
        assert_eq!(config.access_key_id, None);
        assert_eq!(config.secret_access_key, None);
    }

    #[tokio::test]
    async fn open_checked_resolves_static_keys_and_skips_directories() {
        StoreConfig::Dir("/t".into()).open_checked().await.unwrap();
        let s3 = S3Config::new("b", "eu-west-1").with_credentials("a", "s");
        StoreConfig::S3(s3).open_checked().await.unwrap();
    }

    #[test]
    fn missing_settings_stop_the_service_with_one_clear_line() {
        let cases: [(&[(&str, &str)], &str); 3] = [
            (&[], "BUCKET_NAME is not set"),
            (&[("BUCKET_NAME", "b")], "AWS_REGION is not set"),
            (
                &[
                    ("BUCKET_NAME", "b"),
                    ("AWS_REGION", "eu-west-1"),
                    ("AWS_ACCESS_KEY_ID", "AKID"),
                ],
                "S3 credentials incomplete",
            ),
        ];
        for (pairs, expected) in cases {
            let err = StoreConfig::from_lookup(lookup(pairs)).unwrap_err();
            assert!(err.to_string().starts_with(expected), "{err}");
            assert!(!err.to_string().contains('\n'), "{err}");
        }
    }

    #[test]
    fn a_config_opens_its_backend() {
        let dir = StoreConfig::Dir("/t".into()).open().unwrap();
        assert!(format!("{dir:?}").starts_with("DirStore"), "{dir:?}");
        let s3 = StoreConfig::S3(S3Config::new("b", "eu-west-1").with_credentials("a", "s"))
            .open()
            .unwrap();
        assert!(format!("{s3:?}").starts_with("S3Store"), "{s3:?}");
    }

    #[test]
    fn an_invalid_endpoint_fails_on_open() {
        let config = S3Config::new("b", "eu-west-1")
            .with_credentials("a", "s")
            .with_endpoint("localhost:9000");
        let err = StoreConfig::S3(config).open().unwrap_err();
        assert!(
            err.to_string().starts_with("S3_ENDPOINT is invalid"),
            "{err}"
        );
    }
}
