//! Optional authentication of sd-sync's HTTP endpoints (all but `/health`), with what
//! Prometheus' `http_sd_configs` (and a scrape job) can send: `basic_auth` (a username and
//! password) or `authorization` (a bearer token).
//!
//! Secrets come from the environment or from a file (`*_FILE`, for systemd credentials
//! and mode-0600 files), never from the command line, where `ps` would show them. They
//! are compared in constant time and never logged.

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, WWW_AUTHENTICATE};
use actix_web::middleware::Next;
use actix_web::{Error, HttpResponse, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use gds_service::Secret;
use subtle::ConstantTimeEq;

/// The credentials a request must carry; either kind is accepted when both are set.
#[derive(Clone, Debug, Default)]
pub struct HttpAuth {
    /// `Authorization: Basic base64(username:password)`.
    pub basic: Option<(String, Secret)>,
    /// `Authorization: Bearer <token>`.
    pub bearer: Option<Secret>,
}

impl HttpAuth {
    /// Whether any credentials are configured.
    pub fn is_enabled(&self) -> bool {
        self.basic.is_some() || self.bearer.is_some()
    }

    /// Whether an `Authorization` header value carries configured credentials. Without
    /// configured credentials everything is allowed.
    pub fn allows(&self, header: Option<&[u8]>) -> bool {
        if !self.is_enabled() {
            return true;
        }
        let Some(header) = header
            .and_then(|h| std::str::from_utf8(h).ok())
            .map(str::trim)
        else {
            return false;
        };
        let Some((scheme, value)) = header.split_once(' ') else {
            // The bare token: what Prometheus 2.42's http_sd sends when `authorization`
            // leaves out `type: Bearer` (it does not apply the documented default).
            return self
                .bearer
                .as_ref()
                .is_some_and(|token| equal(header.as_bytes(), token.expose().as_bytes()));
        };
        let value = value.trim();
        if scheme.eq_ignore_ascii_case("bearer") {
            return self
                .bearer
                .as_ref()
                .is_some_and(|token| equal(value.as_bytes(), token.expose().as_bytes()));
        }
        if scheme.eq_ignore_ascii_case("basic") {
            let Some((username, password)) = &self.basic else {
                return false;
            };
            let Ok(decoded) = STANDARD.decode(value) else {
                return false;
            };
            let Some(colon) = decoded.iter().position(|&b| b == b':') else {
                return false;
            };
            // Both parts always, so the timing does not say which one was wrong.
            let user_ok = equal(&decoded[..colon], username.as_bytes());
            let password_ok = equal(&decoded[colon + 1..], password.expose().as_bytes());
            return user_ok & password_ok;
        }
        false
    }

    /// The `WWW-Authenticate` challenge of a 401.
    fn challenge(&self) -> String {
        let mut schemes = Vec::new();
        if self.basic.is_some() {
            schemes.push(r#"Basic realm="sd-sync", charset="UTF-8""#);
        }
        if self.bearer.is_some() {
            schemes.push(r#"Bearer realm="sd-sync""#);
        }
        schemes.join(", ")
    }
}

/// Constant-time in the content (the lengths may show, as with any such comparison).
fn equal(given: &[u8], expected: &[u8]) -> bool {
    bool::from(given.ct_eq(expected))
}

/// Answers 401 (with a `WWW-Authenticate` challenge) unless the request carries the
/// configured credentials.
pub async fn require_auth<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let auth = req.app_data::<web::Data<HttpAuth>>().cloned();
    let header = req.headers().get(AUTHORIZATION).map(|v| v.as_bytes());
    match auth {
        Some(auth) if !auth.allows(header) => {
            tracing::warn!(
                path = %req.path(),
                peer = ?req.peer_addr(),
                credentials = if header.is_some() { "wrong" } else { "none" },
                "request refused: authentication required"
            );
            let response = HttpResponse::Unauthorized()
                .insert_header((WWW_AUTHENTICATE, auth.challenge()))
                .content_type("text/plain; charset=utf-8")
                .body("authentication required\n");
            Ok(req.into_response(response).map_into_right_body())
        }
        _ => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    fn auth(basic: bool, bearer: bool) -> HttpAuth {
        HttpAuth {
            basic: basic.then(|| ("prometheus".to_owned(), Secret::new("pa:ss"))),
            bearer: bearer.then(|| Secret::new("t0ken")),
        }
    }

    fn allows(auth: &HttpAuth, header: &str) -> bool {
        auth.allows(Some(header.as_bytes()))
    }

    #[test]
    fn without_credentials_everything_is_allowed() {
        assert!(HttpAuth::default().allows(None));
        assert!(!HttpAuth::default().is_enabled());
    }

    #[test]
    fn only_the_configured_credentials_are_accepted() {
        let both = auth(true, true);
        assert!(allows(&both, &basic("prometheus:pa:ss")));
        assert!(allows(&both, "Bearer t0ken"));
        assert!(allows(&both, "bearer  t0ken "));
        assert!(
            allows(&both, "t0ken"),
            "as Prometheus 2.42 sends it without `type`"
        );
        for bad in [
            basic("prometheus:pa"),
            basic("prometheus:pa:ss!"),
            basic("Prometheus:pa:ss"),
            basic("prometheus"),
            "Bearer t0ke".into(),
            "Bearer t0ken0".into(),
            "Token t0ken".into(),
            "Basic not-base64!".into(),
            "t0ke".into(),
            String::new(),
        ] {
            assert!(!allows(&both, &bad), "{bad:?}");
        }
        assert!(!both.allows(None));
        assert!(!both.allows(Some(b"Bearer \xff")));
        // One kind configured: the other is refused.
        assert!(!allows(&auth(true, false), "Bearer t0ken"));
        assert!(!allows(&auth(true, false), "t0ken"));
        assert!(!allows(&auth(false, true), &basic("prometheus:pa:ss")));
    }

    #[test]
    fn the_challenge_names_the_configured_schemes_and_no_secret() {
        let challenge = auth(true, true).challenge();
        assert!(challenge.starts_with("Basic realm=") && challenge.contains("Bearer realm="));
        assert!(!challenge.contains("t0ken") && !challenge.contains("pa:ss"));
        assert!(!format!("{:?}", auth(true, true)).contains("t0ken"));
    }
}
