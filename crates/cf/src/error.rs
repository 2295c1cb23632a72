use std::time::Duration;

/// Why a Cloud Controller or UAA call failed.
#[derive(Debug, thiserror::Error)]
pub enum CfError {
    /// UAA refused or failed to issue a token.
    #[error("UAA token request failed ({status}): {message}")]
    Uaa { status: u16, message: String },
    /// The Cloud Controller answered with an error.
    #[error("Cloud Controller {endpoint} answered {status} {title}: {detail}")]
    Api {
        endpoint: String,
        status: u16,
        title: String,
        detail: String,
    },
    /// Rate limited for longer than we are willing to wait.
    #[error("Cloud Controller rate limit: retry after {0:?}")]
    RateLimited(Duration),
    /// The caller's deadline came before an answer (see `CfClient::app_info_by`).
    #[error("no answer from {endpoint} before the deadline")]
    Deadline { endpoint: String },
    /// Network failure or timeout, after retries.
    #[error("cannot reach {endpoint}: {source}")]
    Transport {
        endpoint: String,
        #[source]
        source: reqwest::Error,
    },
    /// The answer did not have the documented shape.
    #[error("unexpected response from {endpoint}: {reason}")]
    InvalidResponse { endpoint: String, reason: String },
}

impl CfError {
    /// Worth trying again later (the platform may recover); the opposite is a configuration
    /// or permission problem.
    pub fn is_transient(&self) -> bool {
        match self {
            Self::RateLimited(_) | Self::Deadline { .. } | Self::Transport { .. } => true,
            Self::Api { status, .. } | Self::Uaa { status, .. } => *status >= 500 || *status == 429,
            Self::InvalidResponse { .. } => false,
        }
    }
}
