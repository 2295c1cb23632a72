//! The one small error type every backend converts into, and configuration errors.

use gds_targets::AppGuid;

use crate::TargetState;

/// A boxed backend error kept as the [`std::error::Error::source`] of a [`StoreError`].
pub type BoxError = Box<dyn std::error::Error + Send + Sync + 'static>;

/// Why a [`crate::TargetStore`] call failed.
///
/// Backends keep their own detail (the SDK error, the `io::Error` with its path) as the
/// source and say in the message which operation on which key failed. Callers branch on
/// the variant, mostly through [`StoreError::is_transient`]: a transient failure is retried
/// later, and no caller plans deletions while the store is failing.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// The store could not be reached or could not serve the request now (network error,
    /// timeout, HTTP 5xx, throttling, an injected test failure). Retrying later may work.
    #[error("target store unavailable: {context}")]
    Unavailable {
        /// What was attempted and what went wrong.
        context: String,
        /// The backend's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// The store refused the request (access denied, no such bucket, invalid request).
    /// Retrying will not help until the configuration or the store changes.
    #[error("target store rejected the request: {context}")]
    Rejected {
        /// What was attempted and what went wrong.
        context: String,
        /// The backend's error, when there is one.
        #[source]
        source: Option<BoxError>,
    },

    /// A local file-system operation failed.
    #[error("target store I/O error: {context}")]
    Io {
        /// The operation and the path.
        context: String,
        /// The underlying error.
        #[source]
        source: std::io::Error,
    },

    /// The app has no file in that state (returned by `move_app`; reads return `None`).
    #[error("the {state} target file of app {app} does not exist")]
    NotFound {
        /// The state that was looked in.
        state: TargetState,
        /// The app.
        app: AppGuid,
    },
}

impl StoreError {
    /// Whether retrying the same call later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            StoreError::Unavailable { .. } => true,
            StoreError::Io { source, .. } => matches!(
                source.kind(),
                std::io::ErrorKind::Interrupted
                    | std::io::ErrorKind::TimedOut
                    | std::io::ErrorKind::WouldBlock
            ),
            StoreError::Rejected { .. } | StoreError::NotFound { .. } => false,
        }
    }

    pub(crate) fn io(context: impl Into<String>, source: std::io::Error) -> StoreError {
        StoreError::Io {
            context: context.into(),
            source,
        }
    }
}

/// A missing or invalid store setting, reported at start in one line.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A required setting is not set (or is empty).
    #[error("{name} is not set: {why}")]
    Missing {
        /// The setting, e.g. `BUCKET_NAME`.
        name: &'static str,
        /// When and why it is required.
        why: &'static str,
    },

    /// A setting has a value that cannot work.
    #[error("{name} is invalid: {reason}")]
    Invalid {
        /// The setting, e.g. `S3_ENDPOINT`.
        name: &'static str,
        /// What is wrong with it (never the value of a secret).
        reason: String,
    },

    /// Half a pair of static S3 keys (an id without a secret, or the reverse).
    #[error(
        "S3 credentials incomplete: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
         (or neither, for the AWS default credential chain)"
    )]
    MissingCredentials,

    /// No static keys, and no provider of the AWS default credential chain yielded any.
    #[error(
        "S3 credentials missing: no static keys (AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY) and \
         the AWS default chain (environment, profile files, web identity, ECS, EC2 instance \
         metadata) found none: {reason}"
    )]
    NoCredentials {
        /// The chain's answer, in one line.
        reason: String,
    },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unavailability_and_interruptions_are_transient() {
        let app = AppGuid::parse("1cb006ee-fb05-47e1-b541-c34179ddc446").unwrap();
        let unavailable = StoreError::Unavailable {
            context: "x".into(),
            source: None,
        };
        let rejected = StoreError::Rejected {
            context: "x".into(),
            source: None,
        };
        let denied = StoreError::io("x", std::io::ErrorKind::PermissionDenied.into());
        let timed_out = StoreError::io("x", std::io::ErrorKind::TimedOut.into());
        let not_found = StoreError::NotFound {
            state: TargetState::Active,
            app,
        };
        assert!(unavailable.is_transient());
        assert!(timed_out.is_transient());
        assert!(!rejected.is_transient());
        assert!(!denied.is_transient());
        assert!(!not_found.is_transient());
    }

    #[test]
    fn not_found_names_the_state_and_the_app() {
        let app = AppGuid::parse("1cb006ee-fb05-47e1-b541-c34179ddc446").unwrap();
        let e = StoreError::NotFound {
            state: TargetState::Inactive,
            app,
        };
        assert_eq!(
            e.to_string(),
            "the inactive target file of app 1cb006ee-fb05-47e1-b541-c34179ddc446 does not exist"
        );
    }
}
