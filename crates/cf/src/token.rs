//! UAA tokens: fetched once, shared, cached until shortly before they expire.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;
use tokio::sync::Mutex;
use url::Url;

use crate::config::{USER_AGENT, UaaCredentials};
use crate::error::CfError;

/// Never refresh more than this long before `exp`.
const MAX_REFRESH_MARGIN: Duration = Duration::from_secs(60);

#[derive(Clone)]
pub(crate) struct Token {
    pub value: String,
    /// Unix seconds after which we no longer use it.
    refresh_at: u64,
}

#[derive(Deserialize)]
struct TokenResponse {
    access_token: String,
}

#[derive(Deserialize)]
struct Claims {
    exp: u64,
    #[serde(default)]
    iat: Option<u64>,
}

#[derive(Deserialize)]
struct Jwks {
    keys: Vec<Jwk>,
}

#[derive(Deserialize)]
struct Jwk {
    kid: Option<String>,
    n: String,
    e: String,
}

/// Hands out a valid token, fetching a new one only when the cached one is near expiry or
/// was rejected. Concurrent callers wait for one fetch instead of each starting their own.
pub(crate) struct TokenSource {
    http: reqwest::Client,
    credentials: UaaCredentials,
    verify_signature: bool,
    cached: Mutex<Option<Token>>,
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

impl TokenSource {
    pub fn new(http: reqwest::Client, credentials: UaaCredentials, verify_signature: bool) -> Self {
        Self {
            http,
            credentials,
            verify_signature,
            cached: Mutex::new(None),
        }
    }

    /// A token that is not near expiry. `rejected` is the value the Cloud Controller just
    /// refused, if any: it is dropped unless another caller already replaced it.
    pub async fn get(&self, uaa: &Url, rejected: Option<&str>) -> Result<Token, CfError> {
        let mut cached = self.cached.lock().await;
        if let Some(token) = cached.as_ref() {
            let was_rejected = rejected == Some(token.value.as_str());
            if !was_rejected && now_secs() < token.refresh_at {
                return Ok(token.clone());
            }
        }
        let token = self.fetch(uaa).await?;
        *cached = Some(token.clone());
        Ok(token)
    }

    async fn fetch(&self, uaa: &Url) -> Result<Token, CfError> {
        let endpoint = uaa
            .join("oauth/token")
            .map_err(|e| CfError::InvalidResponse {
                endpoint: uaa.to_string(),
                reason: e.to_string(),
            })?;
        let (client_id, client_secret, form): (_, _, Vec<(&str, &str)>) = match &self.credentials {
            UaaCredentials::Password {
                client_id,
                client_secret,
                username,
                password,
            } => (
                client_id,
                client_secret,
                vec![
                    ("grant_type", "password"),
                    ("username", username.as_str()),
                    ("password", password.expose()),
                ],
            ),
            UaaCredentials::ClientCredentials {
                client_id,
                client_secret,
            } => (
                client_id,
                client_secret,
                vec![("grant_type", "client_credentials")],
            ),
        };
        let transport = |source| CfError::Transport {
            endpoint: "POST /oauth/token".into(),
            source,
        };
        let response = self
            .http
            .post(endpoint)
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            .header(reqwest::header::ACCEPT, "application/json")
            .basic_auth(client_id, Some(client_secret.expose()))
            .form(&form)
            .send()
            .await
            .map_err(transport)?;
        let status = response.status();
        let body = response.bytes().await.map_err(transport)?;
        if !status.is_success() {
            // UAA's error body is {"error": .., "error_description": ..}; never echo secrets.
            let message = serde_json::from_slice::<serde_json::Value>(&body)
                .ok()
                .and_then(|v| {
                    v.get("error_description")
                        .or_else(|| v.get("error"))
                        .and_then(|d| d.as_str().map(str::to_owned))
                })
                .unwrap_or_else(|| String::from_utf8_lossy(&body).chars().take(200).collect());
            return Err(CfError::Uaa {
                status: status.as_u16(),
                message,
            });
        }
        let parsed: TokenResponse =
            serde_json::from_slice(&body).map_err(|e| CfError::InvalidResponse {
                endpoint: "POST /oauth/token".into(),
                reason: e.to_string(),
            })?;
        let claims = if self.verify_signature {
            self.verified_claims(uaa, &parsed.access_token).await?
        } else {
            jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(&parsed.access_token)
                .map_err(|e| CfError::InvalidResponse {
                    endpoint: "POST /oauth/token".into(),
                    reason: format!("access token is not a JWT: {e}"),
                })?
        };
        let lifetime = claims
            .exp
            .saturating_sub(claims.iat.unwrap_or_else(now_secs));
        // A fifth of the lifetime, at most a minute: 20-minute cf tokens are renewed a
        // minute early, a 5-second test token one second early.
        let margin = (lifetime / 5).min(MAX_REFRESH_MARGIN.as_secs());
        tracing::debug!(expires_in = lifetime, "fetched UAA token");
        Ok(Token {
            value: parsed.access_token,
            refresh_at: claims.exp.saturating_sub(margin),
        })
    }

    /// Checks the token's RS256 signature against UAA's published keys.
    async fn verified_claims(&self, uaa: &Url, token: &str) -> Result<Claims, CfError> {
        let invalid = |reason: String| CfError::InvalidResponse {
            endpoint: "GET /token_keys".into(),
            reason,
        };
        let header = jsonwebtoken::decode_header(token)
            .map_err(|e| invalid(format!("token header: {e}")))?;
        let keys_url = uaa.join("token_keys").map_err(|e| invalid(e.to_string()))?;
        let jwks: Jwks = self
            .http
            .get(keys_url)
            .header(reqwest::header::USER_AGENT, USER_AGENT)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .map_err(|source| CfError::Transport {
                endpoint: "GET /token_keys".into(),
                source,
            })?
            .json()
            .await
            .map_err(|e| invalid(e.to_string()))?;
        let key = jwks
            .keys
            .iter()
            .find(|k| header.kid.is_none() || k.kid == header.kid)
            .ok_or_else(|| invalid(format!("no key {:?} in /token_keys", header.kid)))?;
        let decoding =
            DecodingKey::from_rsa_components(&key.n, &key.e).map_err(|e| invalid(e.to_string()))?;
        let mut validation = Validation::new(Algorithm::RS256);
        validation.validate_aud = false;
        jsonwebtoken::decode::<Claims>(token, &decoding, &validation)
            .map(|d| d.claims)
            .map_err(|e| invalid(format!("token signature check failed: {e}")))
    }
}

/// A syntactically valid, unsigned JWT for tests.
#[cfg(test)]
pub(crate) fn fake_jwt(exp: u64, iat: u64) -> String {
    use base64::Engine as _;
    let b64 = base64::engine::general_purpose::URL_SAFE_NO_PAD;
    format!(
        "{}.{}.sig",
        b64.encode(r#"{"alg":"RS256","typ":"JWT"}"#),
        b64.encode(format!(r#"{{"exp":{exp},"iat":{iat}}}"#))
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn claims_are_read_from_an_unverified_token() {
        let c =
            jsonwebtoken::dangerous::insecure_decode_claims::<Claims>(fake_jwt(2000, 800)).unwrap();
        assert_eq!((c.exp, c.iat), (2000, Some(800)));
    }
}
