//! Cloud Controller v3 handlers, one module per API area. Authentication, scope checks
//! and rate limiting happen in middleware (`server.rs`); handlers find the caller's
//! [`Identity`] in the request extensions. Lists go through [`crate::list`].

use actix_web::{HttpMessage, HttpRequest, HttpResponse};
use serde_json::{Value, json};

use crate::error::CcError;
use crate::http::json_response;
use crate::state::Data;
use crate::uaa::Identity;

pub mod apps;
pub mod events;
pub mod orgs;
pub mod processes;
pub mod routes;
pub mod services;

/// The CC API version advertised at `/` and `/v3`.
pub const CC_V3_VERSION: &str = "3.190.0";

/// The caller, put there by the CC auth middleware.
fn identity(req: &HttpRequest) -> Identity {
    req.extensions()
        .get::<Identity>()
        .cloned()
        .expect("CC auth middleware runs before every /v3 handler")
}

/// `GET /`: the CC root, UAA and login on this same server, no v2 link (v2 disabled).
pub async fn root(state: Data) -> HttpResponse {
    let base = &state.base_url;
    json_response(
        200,
        &json!({"links": {
            "self": {"href": base},
            "bits_service": null,
            "cloud_controller_v3": {"href": format!("{base}/v3"), "meta": {"version": CC_V3_VERSION}},
            "network_policy_v0": {"href": format!("{base}/networking/v0/external")},
            "network_policy_v1": {"href": format!("{base}/networking/v1/external")},
            "login": {"href": base},
            "uaa": {"href": base},
            "credhub": null,
            "routing": null,
            "logging": null,
            "log_cache": null,
            "log_stream": null,
            "app_ssh": null,
        }}),
    )
}

/// `GET /v3`.
pub async fn v3_root(state: Data) -> HttpResponse {
    let v3 = format!("{}/v3", state.base_url);
    let links: serde_json::Map<String, Value> = [
        "apps",
        "audit_events",
        "domains",
        "jobs",
        "organizations",
        "processes",
        "routes",
        "spaces",
    ]
    .iter()
    .map(|r| (r.to_string(), json!({"href": format!("{v3}/{r}")})))
    .chain([("self".to_string(), json!({"href": v3}))])
    .collect();
    json_response(200, &json!({"links": links}))
}

/// `GET /v2/info`: nginx lets it through even with v2 disabled.
pub async fn v2_info(state: Data) -> HttpResponse {
    let base = &state.base_url;
    json_response(
        200,
        &json!({
            "name": "cf-sim",
            "build": "",
            "support": "CF API v2 is disabled",
            "version": 0,
            "description": "Cloud Foundry simulator",
            "authorization_endpoint": base,
            "token_endpoint": base,
            "min_cli_version": null,
            "min_recommended_cli_version": null,
            "app_ssh_endpoint": null,
            "app_ssh_host_key_fingerprint": null,
            "app_ssh_oauth_client": "ssh-proxy",
            "doppler_logging_endpoint": null,
            "api_version": "",
            "osbapi_version": "2.15",
        }),
    )
}

/// `GET /v3/info`: the platform's description; `rate_limits` only when the rate limiter
/// is on, as in CCNG (`general_limit` per `reset_interval_in_minutes`; a window that is
/// not a whole number of minutes, for scaled-down tests, gives a fraction).
pub async fn v3_info(state: Data) -> HttpResponse {
    let base = &state.base_url;
    let mut info = json!({
        "build": "",
        "cli_version": {"minimum": null, "recommended": null},
        "custom": {},
        "description": "Cloud Foundry simulator",
        "name": "cf-sim",
        "version": 0,
        "osbapi_version": "2.15",
        "links": {
            "self": {"href": format!("{base}/v3/info")},
            "support": {"href": ""},
        },
    });
    let config = &state.config;
    if config.rate_limit > 0 {
        let minutes = config.rate_limit_window as f64 / 60.0;
        let minutes = if config.rate_limit_window.is_multiple_of(60) {
            json!(config.rate_limit_window / 60)
        } else {
            json!(minutes)
        };
        info["rate_limits"] = json!({
            "enabled": true,
            "general_limit": config.rate_limit,
            "reset_interval_in_minutes": minutes,
        });
    }
    json_response(200, &info)
}

/// Any other `/v2/*`: capi-release's nginx answers 404 when v2 is disabled.
pub async fn v2_disabled() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("404 Not Found\n")
}

/// Unknown `/v3/...` endpoint.
pub async fn v3_unknown() -> HttpResponse {
    actix_web::ResponseError::error_response(&CcError::unknown_request())
}
