//! Where the S3 client's credentials come from: static keys when given, otherwise the AWS
//! SDK's default credential chain (`aws-config`): the environment, the shared config and
//! credentials files (profiles, `credential_process`), web identity (EKS), the ECS
//! container endpoint and EC2 instance metadata (IMDSv2), in that order.
//!
//! The chain is built on first use (building it is async; [`crate::S3Store::new`] is not)
//! and the SDK caches what it yields, refreshing temporary credentials before they expire.
//! [`check`] resolves them once so that a service can refuse to start without any.

use std::time::Duration;

use aws_config::default_provider::credentials::DefaultCredentialsChain;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider, future};
use aws_sdk_s3::config::{Credentials, Region};
use tokio::sync::OnceCell;

use gds_service::{Secret, error_chain};

use crate::ConfigError;

/// How long [`check`] waits for the chain. The chain's own providers time out sooner
/// (instance metadata: 1 s per attempt); this only guarantees that start-up never hangs.
const CHECK_TIMEOUT: Duration = Duration::from_secs(20);

/// The static keys given, if any: in the configuration, else through `lookup`
/// (`AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`). Half a pair is
/// an error ([`ConfigError::MissingCredentials`]), not a reason to try the chain.
pub(crate) fn static_keys(
    access_key_id: Option<String>,
    secret_access_key: Option<Secret>,
    session_token: Option<Secret>,
    lookup: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<Credentials>, ConfigError> {
    let non_empty = |value: Option<String>| value.filter(|v| !v.trim().is_empty());
    let secret_access_key = secret_access_key.filter(|s| !s.expose().trim().is_empty());
    let (id, secret, token) = match (non_empty(access_key_id), secret_access_key) {
        (Some(id), Some(secret)) => (id, secret, session_token),
        (Some(_), None) | (None, Some(_)) => return Err(ConfigError::MissingCredentials),
        (None, None) => {
            let id = non_empty(lookup("AWS_ACCESS_KEY_ID"));
            let secret = non_empty(lookup("AWS_SECRET_ACCESS_KEY"));
            match (id, secret) {
                (Some(id), Some(secret)) => (
                    id,
                    Secret::new(secret),
                    non_empty(lookup("AWS_SESSION_TOKEN")).map(Secret::new),
                ),
                (None, None) => return Ok(None),
                _ => return Err(ConfigError::MissingCredentials),
            }
        }
    };
    Ok(Some(Credentials::new(
        id,
        secret.expose(),
        token.map(|t| t.expose().to_owned()),
        None,
        "gds-store static credentials",
    )))
}

/// The provider for the S3 client: the static keys, else the default chain for `region`
/// (the region matters to web identity, which asks STS).
pub(crate) fn provider(
    static_keys: Option<Credentials>,
    region: &str,
) -> SharedCredentialsProvider {
    match static_keys {
        Some(credentials) => SharedCredentialsProvider::new(credentials),
        None => SharedCredentialsProvider::new(DefaultChain {
            region: Region::new(region.to_owned()),
            chain: OnceCell::new(),
        }),
    }
}

/// Resolves credentials once through `provider`: `Ok` when some provider yields them.
pub(crate) async fn check(provider: &SharedCredentialsProvider) -> Result<(), ConfigError> {
    let failed = |reason: String| ConfigError::NoCredentials { reason };
    match tokio::time::timeout(CHECK_TIMEOUT, provider.provide_credentials()).await {
        Ok(Ok(_)) => Ok(()),
        // The chain lists each provider's answer on a line of its own: keep one line.
        Ok(Err(e)) => Err(failed(
            error_chain(&e)
                .lines()
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("; ")
                .replace(":;", ":"),
        )),
        Err(_) => Err(failed(format!(
            "no answer within {} s",
            CHECK_TIMEOUT.as_secs()
        ))),
    }
}

/// The SDK's default chain, built on first use.
#[derive(Debug)]
struct DefaultChain {
    region: Region,
    chain: OnceCell<DefaultCredentialsChain>,
}

impl ProvideCredentials for DefaultChain {
    fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
    where
        Self: 'a,
    {
        future::ProvideCredentials::new(async move {
            let chain = self
                .chain
                .get_or_init(|| {
                    DefaultCredentialsChain::builder()
                        .region(self.region.clone())
                        .build()
                })
                .await;
            chain.provide_credentials().await
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn credentials_come_from_the_lookup_when_the_config_has_none() {
        let lookup = env(&[
            ("AWS_ACCESS_KEY_ID", "AKIDEXAMPLE"),
            ("AWS_SECRET_ACCESS_KEY", "wJalrXUtnFEMI"),
            ("AWS_SESSION_TOKEN", "token"),
        ]);
        let credentials = static_keys(None, None, None, &lookup).unwrap().unwrap();
        assert_eq!(credentials.access_key_id(), "AKIDEXAMPLE");
        assert_eq!(credentials.secret_access_key(), "wJalrXUtnFEMI");
        assert_eq!(credentials.session_token(), Some("token"));
    }

    #[test]
    fn configured_credentials_win_over_the_lookup() {
        let lookup = env(&[
            ("AWS_ACCESS_KEY_ID", "FROM_ENV"),
            ("AWS_SECRET_ACCESS_KEY", "from-env"),
        ]);
        let credentials = static_keys(
            Some("FROM_CONFIG".into()),
            Some(Secret::new("from-config")),
            None,
            &lookup,
        )
        .unwrap()
        .unwrap();
        assert_eq!(credentials.access_key_id(), "FROM_CONFIG");
        assert_eq!(credentials.session_token(), None);
    }

    #[test]
    fn no_keys_at_all_select_the_default_chain() {
        for lookup in [env(&[]), env(&[("AWS_ACCESS_KEY_ID", " ")])] {
            assert!(static_keys(None, None, None, &lookup).unwrap().is_none());
        }
    }

    #[test]
    fn half_a_pair_of_keys_is_a_clear_error() {
        for lookup in [
            env(&[("AWS_ACCESS_KEY_ID", "AKID")]),
            env(&[("AWS_ACCESS_KEY_ID", "AKID"), ("AWS_SECRET_ACCESS_KEY", "")]),
            env(&[("AWS_SECRET_ACCESS_KEY", "secret")]),
        ] {
            let err = static_keys(None, None, None, &lookup).unwrap_err();
            assert_eq!(err, ConfigError::MissingCredentials);
        }
        let err = static_keys(Some("AKID".into()), None, None, &env(&[])).unwrap_err();
        assert_eq!(err, ConfigError::MissingCredentials);
        let err = static_keys(None, Some(Secret::new("s")), None, &env(&[])).unwrap_err();
        assert_eq!(err, ConfigError::MissingCredentials);
    }

    /// A provider that fails as the chain does when no provider has credentials, or never
    /// answers.
    #[derive(Debug)]
    struct Failing {
        answers: bool,
    }

    impl ProvideCredentials for Failing {
        fn provide_credentials<'a>(&'a self) -> future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let answers = self.answers;
            future::ProvideCredentials::new(async move {
                if !answers {
                    std::future::pending::<()>().await;
                }
                Err(
                    aws_credential_types::provider::error::CredentialsError::not_loaded(
                        "no credentials found in chain. Attempted:\n  Environment: not set\n  \
                     Ec2InstanceMetadata: could not communicate with IMDS",
                    ),
                )
            })
        }
    }

    #[tokio::test]
    async fn no_credentials_fail_the_check_with_one_line_naming_what_was_tried() {
        let err = check(&SharedCredentialsProvider::new(Failing { answers: true }))
            .await
            .unwrap_err();
        let message = err.to_string();
        assert!(
            message.starts_with("S3 credentials missing: no static keys"),
            "{message}"
        );
        assert!(
            message.contains("Environment: not set; Ec2InstanceMetadata: could not"),
            "{message}"
        );
        assert!(!message.contains('\n'), "{message}");
    }

    #[tokio::test(start_paused = true)]
    async fn a_chain_that_never_answers_fails_the_check_instead_of_hanging() {
        let err = check(&SharedCredentialsProvider::new(Failing { answers: false }))
            .await
            .unwrap_err();
        assert!(err.to_string().ends_with("no answer within 20 s"), "{err}");
    }

    #[tokio::test]
    async fn static_keys_pass_the_check_without_a_request() {
        let keys = static_keys(Some("a".into()), Some(Secret::new("s")), None, &env(&[])).unwrap();
        check(&provider(keys, "eu-west-1")).await.unwrap();
    }
}
