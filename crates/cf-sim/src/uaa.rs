//! The simulated UAA: grants, RS256 JWTs shaped like UAA's, and the Cloud Controller's
//! validation of them (CCNG `uaa_token_decoder.rb`, `security_context_setter.rb`).
//!
//! Users: one admin user (password grant through the public `cf` client, empty secret)
//! with scopes `cloud_controller.admin`, `cloud_controller.read`,
//! `cloud_controller.write`, `openid`. Clients: one `client_credentials` client whose
//! authorities default to `cloud_controller.global_auditor`. Every valid reader sees
//! every org and space: CC roles (space auditor, ...) are not modelled.

use std::collections::HashSet;

use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use jsonwebtoken::{Algorithm, Header, Validation};
use serde_json::{Value, json};

use crate::error::CcError;
use crate::keys::{KEY_ID, SigningKey};
use crate::util::{GuidKind, now, random_guid, stable_guid};
use crate::world::Party;

/// Scopes granted to the admin user.
pub const ADMIN_USER_SCOPES: &[&str] = &[
    "cloud_controller.admin",
    "cloud_controller.read",
    "cloud_controller.write",
    "openid",
];

/// Scopes that allow reading from the CC (`check_read_permissions!`).
const READ_SCOPES: &[&str] = &[
    "cloud_controller.admin",
    "cloud_controller.read",
    "cloud_controller.admin_read_only",
    "cloud_controller.global_auditor",
];

/// Scopes that allow writing (`check_write_permissions!`).
const WRITE_SCOPES: &[&str] = &["cloud_controller.admin", "cloud_controller.write"];

/// An OAuth error as UAA sends it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OAuthError {
    pub status: u16,
    pub error: &'static str,
    pub description: String,
    /// Set for failed client authentication (`WWW-Authenticate: Basic realm="UAA/client"`).
    pub client_auth_failed: bool,
}

impl OAuthError {
    fn new(status: u16, error: &'static str, description: impl Into<String>) -> Self {
        Self {
            status,
            error,
            description: description.into(),
            client_auth_failed: false,
        }
    }

    fn bad_client() -> Self {
        Self {
            client_auth_failed: true,
            ..Self::new(401, "unauthorized", "Bad credentials")
        }
    }

    pub fn body(&self) -> Value {
        json!({"error": self.error, "error_description": self.description})
    }

    pub fn www_authenticate(&self) -> Option<String> {
        self.client_auth_failed.then(|| {
            format!(
                "Basic realm=\"UAA/client\", error=\"{}\", error_description=\"{}\"",
                self.error, self.description
            )
        })
    }
}

/// Who a valid token speaks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// `user_id`, else `client_id` (the CC's acting user guid, and our rate-limit key).
    pub subject: String,
    /// `user_name`, else the client id.
    pub name: String,
    pub scopes: Vec<String>,
}

impl Identity {
    pub fn can_read(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| READ_SCOPES.contains(&s.as_str()))
    }

    /// `cloud_controller.admin` or `admin_read_only`: exempt from the CC's rate limiter
    /// by default.
    pub fn is_admin(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| s == "cloud_controller.admin" || s == "cloud_controller.admin_read_only")
    }

    pub fn can_write(&self) -> bool {
        self.scopes
            .iter()
            .any(|s| WRITE_SCOPES.contains(&s.as_str()))
    }

    /// The audit-event actor (CC's `UserAuditInfo`: type `user` for users and clients).
    pub fn actor(&self) -> Party {
        Party {
            guid: self.subject.clone(),
            kind: "user".into(),
            name: self.name.clone(),
        }
    }
}

/// Credentials and lifetimes (from [`crate::SimConfig`]). `Debug` redacts secrets.
#[derive(Clone)]
pub struct UaaSettings {
    pub admin_user: String,
    pub admin_password: String,
    pub client_id: String,
    pub client_secret: String,
    pub client_authorities: Vec<String>,
    pub token_ttl: u64,
}

impl std::fmt::Debug for UaaSettings {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UaaSettings")
            .field("admin_user", &self.admin_user)
            .field("admin_password", &"[redacted]")
            .field("client_id", &self.client_id)
            .field("client_secret", &"[redacted]")
            .field("client_authorities", &self.client_authorities)
            .field("token_ttl", &self.token_ttl)
            .finish()
    }
}

impl UaaSettings {
    pub fn admin_user_id(&self) -> String {
        stable_guid(GuidKind::User, 1)
    }
}

/// Issuing state: which tokens exist (revocation clears it) and whether UAA is "down".
#[derive(Debug, Default)]
pub struct UaaState {
    issued: HashSet<String>,
    pub down: bool,
    pub issued_count: u64,
}

impl UaaState {
    /// `POST /sim/uaa/revoke`: every token issued so far stops working.
    pub fn revoke_all(&mut self) -> usize {
        let n = self.issued.len();
        self.issued.clear();
        n
    }
}

/// A parsed `POST /oauth/token` request.
#[derive(Debug, Default, Clone)]
pub struct TokenRequest {
    pub basic: Option<(String, String)>,
    pub form: Vec<(String, String)>,
}

impl TokenRequest {
    pub fn parse(authorization: Option<&str>, body: &[u8]) -> Self {
        let basic = authorization.and_then(|h| {
            let (scheme, value) = h.trim().split_once(' ')?;
            if !scheme.eq_ignore_ascii_case("basic") {
                return None;
            }
            let decoded = STANDARD.decode(value.trim()).ok()?;
            let decoded = String::from_utf8(decoded).ok()?;
            let (id, secret) = decoded.split_once(':')?;
            // UAA url-decodes both parts (clients may url-encode them).
            let dec = |s: &str| {
                url::form_urlencoded::parse(format!("x={s}").as_bytes())
                    .next()
                    .map(|(_, v)| v.into_owned())
                    .unwrap_or_default()
            };
            Some((dec(id), dec(secret)))
        });
        let form = url::form_urlencoded::parse(body)
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self { basic, form }
    }

    fn get(&self, key: &str) -> Option<&str> {
        self.form
            .iter()
            .rev()
            .find(|(k, _)| k == key)
            .map(|(_, v)| v.as_str())
    }

    /// Client credentials from Basic auth, else from the form.
    fn client(&self) -> Option<(String, String)> {
        self.basic.clone().or_else(|| {
            self.get("client_id").map(|id| {
                (
                    id.to_string(),
                    self.get("client_secret").unwrap_or("").to_string(),
                )
            })
        })
    }
}

/// Handles one token request; `base` is the UAA base URL (the issuer prefix).
pub fn grant(
    req: &TokenRequest,
    settings: &UaaSettings,
    key: &SigningKey,
    state: &mut UaaState,
    base: &str,
) -> Result<Value, OAuthError> {
    let grant_type = req
        .get("grant_type")
        .ok_or_else(|| OAuthError::new(400, "invalid_request", "Missing grant type"))?;
    let Some((client_id, client_secret)) = req.client() else {
        return Err(OAuthError {
            client_auth_failed: true,
            ..OAuthError::new(
                401,
                "unauthorized",
                "Full authentication is required to access this resource",
            )
        });
    };
    let is_cf = client_id == "cf" && client_secret.is_empty();
    let is_configured = client_id == settings.client_id && client_secret == settings.client_secret;
    if !is_cf && !is_configured {
        return Err(OAuthError::bad_client());
    }
    let requested: Option<Vec<String>> = req
        .get("scope")
        .map(|s| s.split_whitespace().map(str::to_string).collect());

    let (claims_user, scopes, refresh) = match grant_type {
        "password" => {
            if !is_cf {
                return Err(OAuthError::new(
                    401,
                    "invalid_client",
                    "Unauthorized grant type: password",
                ));
            }
            let user_ok = req.get("username") == Some(settings.admin_user.as_str())
                && req.get("password") == Some(settings.admin_password.as_str());
            if !user_ok {
                return Err(OAuthError::new(401, "unauthorized", "Bad credentials"));
            }
            let allowed: Vec<String> = ADMIN_USER_SCOPES.iter().map(|s| s.to_string()).collect();
            (true, narrow(&allowed, requested)?, true)
        }
        "refresh_token" => {
            let token = req
                .get("refresh_token")
                .ok_or_else(|| OAuthError::new(400, "invalid_request", "Missing refresh token"))?;
            let claims = decode(token, key, base, false)
                .filter(|c| {
                    c["jti"].as_str().is_some_and(|j| j.ends_with("-r"))
                        && c["client_id"] == client_id.as_str()
                })
                .ok_or_else(|| OAuthError::new(401, "invalid_token", "Invalid refresh token"))?;
            let granted: Vec<String> = claims["scope"]
                .as_array()
                .map(|a| {
                    a.iter()
                        .filter_map(|s| s.as_str().map(str::to_string))
                        .collect()
                })
                .unwrap_or_default();
            (true, narrow(&granted, requested)?, true)
        }
        "client_credentials" => {
            if !is_configured {
                return Err(OAuthError::new(
                    401,
                    "invalid_client",
                    "Unauthorized grant type: client_credentials",
                ));
            }
            (
                false,
                narrow(&settings.client_authorities, requested)?,
                false,
            )
        }
        other => {
            return Err(OAuthError::new(
                400,
                "unsupported_grant_type",
                format!("Unsupported grant type: {other}"),
            ));
        }
    };

    let iat = now();
    let exp = iat + settings.token_ttl as i64;
    let jti = random_guid().replace('-', "");
    let mut claims = json!({
        "jti": jti,
        "client_id": client_id,
        "cid": client_id,
        "azp": client_id,
        "grant_type": grant_type,
        "scope": scopes,
        "iat": iat,
        "exp": exp,
        "iss": format!("{base}/oauth/token"),
        "zid": "uaa",
        "aud": audience(&scopes),
        "revocable": false,
        "rev_sig": format!("{:08x}", crate::util::mix64(iat as u64) as u32),
    });
    if claims_user {
        let user_id = settings.admin_user_id();
        claims["sub"] = json!(user_id);
        claims["user_id"] = json!(user_id);
        claims["user_name"] = json!(settings.admin_user);
        claims["email"] = json!(format!("{}@example.com", settings.admin_user));
        claims["origin"] = json!("uaa");
        claims["auth_time"] = json!(iat);
    } else {
        claims["sub"] = json!(client_id);
        claims["authorities"] = json!(scopes);
    }
    let access_token = sign(&claims, key, base);
    state.issued.insert(jti.clone());
    state.issued_count += 1;
    let mut response = json!({
        "access_token": access_token,
        "token_type": "bearer",
        "expires_in": settings.token_ttl.saturating_sub(1),
        "scope": scopes.join(" "),
        "jti": jti,
    });
    if refresh {
        let mut refresh_claims = claims.clone();
        refresh_claims["jti"] = json!(format!("{jti}-r"));
        refresh_claims["exp"] = json!(iat + 2_592_000);
        response["refresh_token"] = json!(sign(&refresh_claims, key, base));
    }
    Ok(response)
}

fn narrow(allowed: &[String], requested: Option<Vec<String>>) -> Result<Vec<String>, OAuthError> {
    match requested {
        None => Ok(allowed.to_vec()),
        Some(req) => {
            let bad: Vec<&String> = req.iter().filter(|s| !allowed.contains(s)).collect();
            if bad.is_empty() && !req.is_empty() {
                Ok(req)
            } else {
                Err(OAuthError::new(
                    400,
                    "invalid_scope",
                    format!(
                        "Invalid scope: {}. Did you know that you can get default scopes by simply sending no value?",
                        bad.iter().map(|s| s.as_str()).collect::<Vec<_>>().join(" ")
                    ),
                ))
            }
        }
    }
}

/// `aud`: the resource ids, i.e. the scope prefixes before the last dot.
fn audience(scopes: &[String]) -> Vec<String> {
    let mut aud: Vec<String> = Vec::new();
    for s in scopes {
        let prefix = s
            .rsplit_once('.')
            .map_or(s.as_str(), |(p, _)| p)
            .to_string();
        if !aud.contains(&prefix) {
            aud.push(prefix);
        }
    }
    aud
}

fn sign(claims: &Value, key: &SigningKey, base: &str) -> String {
    let mut header = Header::new(Algorithm::RS256);
    header.kid = Some(KEY_ID.into());
    header.jku = Some(format!("{base}/token_keys"));
    header.typ = Some("JWT".into());
    jsonwebtoken::encode(&header, claims, &key.encoding).expect("RS256 signing cannot fail")
}

/// Verifies signature, `exp` (no leeway), `iss` and `aud ∋ cloud_controller`.
fn decode(token: &str, key: &SigningKey, base: &str, need_cc_audience: bool) -> Option<Value> {
    let mut validation = Validation::new(Algorithm::RS256);
    validation.leeway = 0;
    validation.set_issuer(&[format!("{base}/oauth/token")]);
    if need_cc_audience {
        validation.set_audience(&["cloud_controller", "cloud_controller_service_permissions"]);
    } else {
        validation.validate_aud = false;
    }
    validation.set_required_spec_claims(&["exp", "iss"]);
    jsonwebtoken::decode::<Value>(token, &key.decoding, &validation)
        .ok()
        .map(|d| d.claims)
}

/// The CC's token check for one request (`Authorization` header value, if any).
pub fn authenticate(
    authorization: Option<&str>,
    key: &SigningKey,
    state: &UaaState,
    base: &str,
) -> Result<Identity, CcError> {
    let Some(header) = authorization.map(str::trim).filter(|h| !h.is_empty()) else {
        return Err(CcError::not_authenticated());
    };
    // The CC only checks that the value starts with "bearer", case-insensitively.
    let token = match header.get(..6) {
        Some(scheme) if scheme.eq_ignore_ascii_case("bearer") => header[6..].trim(),
        _ => return Err(CcError::invalid_auth_token()),
    };
    let claims = decode(token, key, base, true).ok_or_else(CcError::invalid_auth_token)?;
    let jti = claims["jti"].as_str().unwrap_or("");
    if jti.is_empty() || jti.ends_with("-r") || !state.issued.contains(jti) {
        return Err(CcError::invalid_auth_token());
    }
    let scopes: Vec<String> = claims["scope"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|s| s.as_str().map(str::to_string))
                .collect()
        })
        .unwrap_or_default();
    let (subject, name) = match claims["user_id"].as_str() {
        Some(user_id) => (
            user_id.to_string(),
            claims["user_name"].as_str().unwrap_or("").to_string(),
        ),
        None => {
            let client = claims["client_id"].as_str().unwrap_or("").to_string();
            (client.clone(), client)
        }
    };
    Ok(Identity {
        subject,
        name,
        scopes,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const BASE: &str = "http://uaa.test";

    fn settings() -> UaaSettings {
        UaaSettings {
            admin_user: "admin".into(),
            admin_password: "pw".into(),
            client_id: "broker".into(),
            client_secret: "s3cret".into(),
            client_authorities: vec!["cloud_controller.global_auditor".into()],
            token_ttl: 1200,
        }
    }

    fn basic(id: &str, secret: &str) -> String {
        format!("Basic {}", STANDARD.encode(format!("{id}:{secret}")))
    }

    fn password_grant(
        state: &mut UaaState,
        key: &SigningKey,
        body: &str,
    ) -> Result<Value, OAuthError> {
        let req = TokenRequest::parse(Some(&basic("cf", "")), body.as_bytes());
        grant(&req, &settings(), key, state, BASE)
    }

    fn claims_of(token: &str) -> (Value, Value) {
        let mut parts = token.split('.');
        let dec = |p: &str| {
            serde_json::from_slice::<Value>(
                &base64::engine::general_purpose::URL_SAFE_NO_PAD
                    .decode(p)
                    .unwrap(),
            )
            .unwrap()
        };
        (dec(parts.next().unwrap()), dec(parts.next().unwrap()))
    }

    #[test]
    fn password_grant_issues_a_uaa_shaped_user_token() {
        let key = SigningKey::development();
        let mut state = UaaState::default();
        let res = password_grant(
            &mut state,
            &key,
            "grant_type=password&username=admin&password=pw",
        )
        .unwrap();
        assert_eq!(res["token_type"], "bearer");
        assert_eq!(res["expires_in"], 1199);
        assert!(res["refresh_token"].is_string());
        let (header, claims) = claims_of(res["access_token"].as_str().unwrap());
        assert_eq!(header["alg"], "RS256");
        assert_eq!(header["kid"], "key-1");
        assert_eq!(header["jku"], "http://uaa.test/token_keys");
        assert_eq!(header["typ"], "JWT");
        assert_eq!(claims["iss"], "http://uaa.test/oauth/token");
        assert_eq!(claims["zid"], "uaa");
        assert_eq!(claims["user_name"], "admin");
        assert_eq!(claims["origin"], "uaa");
        assert_eq!(claims["cid"], "cf");
        assert_eq!(claims["grant_type"], "password");
        assert_eq!(claims["aud"], json!(["cloud_controller", "openid"]));
        assert!(
            claims["scope"]
                .as_array()
                .unwrap()
                .contains(&json!("cloud_controller.read"))
        );
        assert_eq!(claims["jti"], res["jti"]);

        let auth = format!("bearer {}", res["access_token"].as_str().unwrap());
        let id = authenticate(Some(&auth), &key, &state, BASE).unwrap();
        assert!(id.can_read() && id.can_write());
        assert_eq!(id.name, "admin");
    }

    #[test]
    fn bad_password_and_bad_client_are_401_only_the_client_gets_www_authenticate() {
        let key = SigningKey::development();
        let mut state = UaaState::default();
        let e = password_grant(
            &mut state,
            &key,
            "grant_type=password&username=admin&password=no",
        )
        .unwrap_err();
        assert_eq!((e.status, e.description.as_str()), (401, "Bad credentials"));
        assert!(e.www_authenticate().is_none());
        let req = TokenRequest::parse(
            Some(&basic("broker", "wrong")),
            b"grant_type=client_credentials",
        );
        let e = grant(&req, &settings(), &key, &mut state, BASE).unwrap_err();
        assert_eq!(e.status, 401);
        assert!(e.www_authenticate().unwrap().contains("UAA/client"));
        let e = password_grant(&mut state, &key, "grant_type=implicit").unwrap_err();
        assert_eq!((e.status, e.error), (400, "unsupported_grant_type"));
    }

    #[test]
    fn client_credentials_via_form_fields_gives_a_global_auditor_token() {
        let key = SigningKey::development();
        let mut state = UaaState::default();
        let req = TokenRequest::parse(
            None,
            b"grant_type=client_credentials&client_id=broker&client_secret=s3cret",
        );
        let res = grant(&req, &settings(), &key, &mut state, BASE).unwrap();
        assert!(res.get("refresh_token").is_none());
        assert_eq!(res["scope"], "cloud_controller.global_auditor");
        let (_, claims) = claims_of(res["access_token"].as_str().unwrap());
        assert_eq!(claims["sub"], "broker");
        assert!(claims.get("user_id").is_none());
        let id = authenticate(
            Some(&format!("Bearer {}", res["access_token"].as_str().unwrap())),
            &key,
            &state,
            BASE,
        )
        .unwrap();
        assert!(id.can_read() && !id.can_write());
        assert_eq!(id.subject, "broker");
    }

    #[test]
    fn revoked_unknown_refresh_and_malformed_tokens_are_invalid() {
        let key = SigningKey::development();
        let mut state = UaaState::default();
        let res = password_grant(
            &mut state,
            &key,
            "grant_type=password&username=admin&password=pw",
        )
        .unwrap();
        let access = format!("bearer {}", res["access_token"].as_str().unwrap());
        let refresh = format!("bearer {}", res["refresh_token"].as_str().unwrap());
        assert_eq!(
            authenticate(Some(&refresh), &key, &state, BASE)
                .unwrap_err()
                .code,
            1000
        );
        assert_eq!(
            authenticate(Some("bearer x.y.z"), &key, &state, BASE)
                .unwrap_err()
                .code,
            1000
        );
        assert_eq!(
            authenticate(None, &key, &state, BASE).unwrap_err().code,
            10002
        );
        assert_eq!(
            authenticate(Some(&access), &key, &state, "http://other")
                .unwrap_err()
                .code,
            1000
        );
        state.revoke_all();
        assert_eq!(
            authenticate(Some(&access), &key, &state, BASE)
                .unwrap_err()
                .code,
            1000
        );
    }

    #[test]
    fn expired_tokens_are_invalid() {
        let key = SigningKey::development();
        let mut state = UaaState::default();
        let mut s = settings();
        s.token_ttl = 0;
        let req = TokenRequest::parse(
            Some(&basic("cf", "")),
            b"grant_type=password&username=admin&password=pw",
        );
        let res = grant(&req, &s, &key, &mut state, BASE).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        let auth = format!("bearer {}", res["access_token"].as_str().unwrap());
        assert_eq!(
            authenticate(Some(&auth), &key, &state, BASE)
                .unwrap_err()
                .code,
            1000
        );
    }

    #[test]
    fn scopes_can_be_narrowed_but_not_widened_and_refresh_works() {
        let key = SigningKey::development();
        let mut state = UaaState::default();
        let res = password_grant(
            &mut state,
            &key,
            "grant_type=password&username=admin&password=pw&scope=cloud_controller.write",
        )
        .unwrap();
        let auth = format!("bearer {}", res["access_token"].as_str().unwrap());
        let id = authenticate(Some(&auth), &key, &state, BASE).unwrap();
        assert!(!id.can_read(), "write-only token cannot read");
        let e = password_grant(
            &mut state,
            &key,
            "grant_type=password&username=admin&password=pw&scope=uaa.admin",
        )
        .unwrap_err();
        assert_eq!(e.error, "invalid_scope");
        let body = format!(
            "grant_type=refresh_token&refresh_token={}",
            res["refresh_token"].as_str().unwrap()
        );
        let refreshed = password_grant(&mut state, &key, &body).unwrap();
        assert_eq!(refreshed["scope"], "cloud_controller.write");
    }
}
