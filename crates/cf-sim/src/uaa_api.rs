//! UAA HTTP endpoints: `POST /oauth/token`, `GET /token_keys`, `GET /token_key`,
//! `GET /.well-known/openid-configuration`. `POST /sim/uaa/down` makes all of them
//! answer 503 (as the router does when UAA has no healthy instance).

use actix_web::http::header;
use actix_web::{HttpRequest, HttpResponse, web};
use serde_json::json;

use crate::http::json_response;
use crate::state::Data;
use crate::uaa::{TokenRequest, grant};

fn down() -> HttpResponse {
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain; charset=utf-8")
        .body("503 Service Unavailable\n")
}

/// `POST /oauth/token` (form body; Basic or form-field client authentication).
pub async fn token(state: Data, req: HttpRequest, body: web::Bytes) -> HttpResponse {
    if state.uaa().down {
        return down();
    }
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let token_request = TokenRequest::parse(authorization, &body);
    let result = {
        let mut uaa = state.uaa();
        grant(
            &token_request,
            &state.uaa_settings,
            &state.key,
            &mut uaa,
            &state.base_url,
        )
    };
    match result {
        Ok(body) => {
            let mut res = json_response(200, &body);
            res.headers_mut().insert(
                header::CACHE_CONTROL,
                header::HeaderValue::from_static("no-store"),
            );
            res
        }
        Err(e) => {
            tracing::info!(error = e.error, description = %e.description, "token request refused");
            let mut res = json_response(e.status, &e.body());
            if let Some(challenge) = e.www_authenticate()
                && let Ok(v) = header::HeaderValue::from_str(&challenge)
            {
                res.headers_mut().insert(header::WWW_AUTHENTICATE, v);
            }
            res
        }
    }
}

/// `GET /token_keys`: the JWKS.
pub async fn token_keys(state: Data) -> HttpResponse {
    if state.uaa().down {
        return down();
    }
    json_response(200, &json!({"keys": [state.key.jwk()]}))
}

/// `GET /token_key`: the one key, without the `keys` wrapper.
pub async fn token_key(state: Data) -> HttpResponse {
    if state.uaa().down {
        return down();
    }
    json_response(200, &state.key.jwk())
}

/// `GET /.well-known/openid-configuration`: the CC compares `iss` with `issuer`.
pub async fn openid_configuration(state: Data) -> HttpResponse {
    if state.uaa().down {
        return down();
    }
    let base = &state.base_url;
    json_response(
        200,
        &json!({
            "issuer": format!("{base}/oauth/token"),
            "authorization_endpoint": format!("{base}/oauth/authorize"),
            "token_endpoint": format!("{base}/oauth/token"),
            "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            "token_endpoint_auth_signing_alg_values_supported": ["RS256"],
            "userinfo_endpoint": format!("{base}/userinfo"),
            "jwks_uri": format!("{base}/token_keys"),
            "scopes_supported": ["openid", "cloud_controller.read", "cloud_controller.write", "cloud_controller.admin"],
            "response_types_supported": ["code", "code id_token", "id_token", "token id_token"],
            "subject_types_supported": ["public"],
            "id_token_signing_alg_values_supported": ["RS256"],
            "claim_types_supported": ["normal"],
            "claims_supported": ["sub", "user_name", "origin", "iss", "auth_time", "amr", "acr", "client_id", "aud", "zid", "grant_type", "user_id", "azp", "scope", "exp", "iat", "jti", "rev_sig", "cid", "given_name", "family_name", "phone_number", "email"],
            "claims_parameter_supported": false,
            "service_documentation": "https://docs.cloudfoundry.org/api/uaa/",
            "ui_locales_supported": ["en-US"],
        }),
    )
}
