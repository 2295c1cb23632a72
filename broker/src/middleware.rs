//! Cross-cutting rules, as middleware (outermost first, see `startup.rs`):
//! request identity and logging span, metrics, then on the OSB routes basic auth and the
//! API version check.

use std::time::Instant;

use actix_web::body::{EitherBody, MessageBody};
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{AUTHORIZATION, HeaderName, HeaderValue};
use actix_web::middleware::Next;
use actix_web::{Error, ResponseError, web};
use base64::Engine;
use base64::engine::general_purpose::STANDARD;
use tracing::Instrument;
use tracing::field::Empty;

use crate::config::BrokerCredentials;
use crate::metrics::BrokerMetrics;
use crate::osb::{BrokerError, MIN_API_MINOR_VERSION, Operation};
use crate::routes::OsbFailure;

/// `X-Broker-API-Request-Identity`: the platform's id of this request, echoed back.
pub const REQUEST_IDENTITY: HeaderName = HeaderName::from_static("x-broker-api-request-identity");
/// `X-Broker-API-Originating-Identity`: who asked the platform (`cloudfoundry <base64>`).
pub const ORIGINATING_IDENTITY: HeaderName =
    HeaderName::from_static("x-broker-api-originating-identity");
/// `X-Broker-API-Version`.
pub const API_VERSION: HeaderName = HeaderName::from_static("x-broker-api-version");

/// The route template of a request (`/v2/service_instances/{instance_id}`), or
/// `unmatched`, so that metrics and logs never carry raw ids.
fn route_of(req: &ServiceRequest) -> String {
    req.match_pattern().unwrap_or_else(|| "unmatched".into())
}

/// Opens the request's span (request identity, method, route, originating user, and the
/// OSB ids that handlers record), answers `X-Broker-API-Request-Identity` (the platform's,
/// or a new one), and logs one line per request.
pub async fn request_identity(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    // The platform's identity when it sent a usable one, else a new one; answered either
    // way, so that whoever saw an opaque 500 can find its log lines.
    let request_id = req
        .headers()
        .get(&REQUEST_IDENTITY)
        .and_then(|v| v.to_str().ok())
        .filter(|v| !v.is_empty() && v.len() <= 128 && v.chars().all(|c| c.is_ascii_graphic()))
        .map(str::to_owned)
        .unwrap_or_else(|| uuid::Uuid::new_v4().to_string());
    // At ERROR level so that the span (and its ids) is attached to every event that is
    // logged at all, whatever RUST_LOG says; the span itself is never printed.
    let span = tracing::error_span!(
        "request",
        request_id = %request_id,
        method = %req.method(),
        path = %route_of(&req),
        originating_user = Empty,
        instance_id = Empty,
        binding_id = Empty,
        app_guid = Empty,
    );
    if let Some(user) = req
        .headers()
        .get(&ORIGINATING_IDENTITY)
        .and_then(|v| v.to_str().ok())
        .and_then(originating_user)
    {
        span.record("originating_user", user.as_str());
    }
    let started = Instant::now();
    let result = span
        .in_scope(|| next.call(req))
        .instrument(span.clone())
        .await;
    let mut res = result?;
    if let Ok(id) = HeaderValue::from_str(&request_id) {
        res.headers_mut().insert(REQUEST_IDENTITY, id);
    }
    span.in_scope(|| {
        tracing::info!(
            status = res.status().as_u16(),
            elapsed_ms = started.elapsed().as_secs_f64() * 1000.0,
            "request answered"
        )
    });
    Ok(res)
}

/// The user id in an originating identity header: `cloudfoundry <base64 of
/// {"user_id": "..."}>`. Only the user id is kept (for audit); anything else is dropped.
pub fn originating_user(header: &str) -> Option<String> {
    let (platform, encoded) = header.trim().split_once(' ')?;
    let decoded = STANDARD.decode(encoded.trim()).ok()?;
    let value: serde_json::Value = serde_json::from_slice(&decoded).ok()?;
    let user = value.get("user_id")?.as_str()?;
    let user: String = user.chars().take(128).collect();
    Some(format!("{platform}:{user}"))
}

/// Counts every answer in `observe_broker_http_requests_total{code,method,path}` and
/// times it.
pub async fn record_metrics(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, Error> {
    let metrics = req.app_data::<web::Data<BrokerMetrics>>().cloned();
    let method = req.method().as_str().to_ascii_lowercase();
    let path = route_of(&req);
    let started = Instant::now();
    let result = next.call(req).await;
    if let Some(metrics) = metrics {
        let code = match &result {
            Ok(res) => res.status().as_u16(),
            Err(e) => e.as_response_error().status_code().as_u16(),
        };
        metrics
            .http_requests
            .with_label_values(&[code.to_string().as_str(), &method, &path])
            .inc();
        metrics
            .http_duration
            .with_label_values(&[&method, &path])
            .observe(started.elapsed().as_secs_f64());
    }
    result
}

/// Answers `401` unless the request carries the broker's basic-auth credentials.
pub async fn require_basic_auth<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let authorised = req
        .app_data::<web::Data<BrokerCredentials>>()
        .is_some_and(|expected| {
            basic_auth_matches(
                req.headers()
                    .get(AUTHORIZATION)
                    .and_then(|v| v.to_str().ok()),
                expected,
            )
        });
    if authorised {
        return next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body);
    }
    tracing::warn!("request without valid basic-auth credentials refused");
    let failure = OsbFailure::new(
        Operation::of(req.method().as_str(), req.match_pattern().as_deref()),
        BrokerError::Unauthorized,
    );
    let res = failure.error_response();
    Ok(req.into_response(res).map_into_right_body())
}

/// Whether an `Authorization` header carries exactly the expected credentials. Both parts
/// are compared in constant time, and both always, so the answer's timing says nothing
/// about which part or how much of it was right.
pub fn basic_auth_matches(header: Option<&str>, expected: &BrokerCredentials) -> bool {
    let Some((scheme, encoded)) = header.and_then(|h| h.trim().split_once(' ')) else {
        return false;
    };
    if !scheme.eq_ignore_ascii_case("basic") {
        return false;
    }
    let Ok(decoded) = STANDARD.decode(encoded.trim()) else {
        return false;
    };
    let Some(colon) = decoded.iter().position(|&b| b == b':') else {
        return false;
    };
    let (user, password) = (&decoded[..colon], &decoded[colon + 1..]);
    let user_ok = constant_time_eq(user, expected.username.as_bytes());
    let password_ok = constant_time_eq(password, expected.password.expose().as_bytes());
    user_ok & password_ok
}

/// Compares without stopping at the first difference. The loop runs over the longer
/// input, so the time depends only on lengths, never on content.
fn constant_time_eq(given: &[u8], expected: &[u8]) -> bool {
    let mut diff = u8::from(given.len() != expected.len());
    for i in 0..given.len().max(expected.len()) {
        let a = given.get(i).copied().unwrap_or(0);
        let b = expected.get(i).copied().unwrap_or(0);
        diff |= std::hint::black_box(a ^ b);
    }
    diff == 0
}

/// Answers `412` unless `X-Broker-API-Version` is 2.13 or a later 2.x.
pub async fn require_api_version<B: MessageBody + 'static>(
    req: ServiceRequest,
    next: Next<B>,
) -> Result<ServiceResponse<EitherBody<B>>, Error> {
    let header = req.headers().get(&API_VERSION).map(|v| {
        v.to_str()
            .map(str::to_owned)
            .unwrap_or_else(|_| String::from_utf8_lossy(v.as_bytes()).into_owned())
    });
    match check_api_version(header.as_deref()) {
        Ok(()) => next
            .call(req)
            .await
            .map(ServiceResponse::map_into_left_body),
        Err(err) => {
            tracing::warn!(version = ?header, "request with an unsupported API version refused");
            let op = Operation::of(req.method().as_str(), req.match_pattern().as_deref());
            let res = OsbFailure::new(op, err).error_response();
            Ok(req.into_response(res).map_into_right_body())
        }
    }
}

/// `2.N` with `N >= 13` is accepted; anything else is a [`BrokerError`] for a `412`.
pub fn check_api_version(header: Option<&str>) -> Result<(), BrokerError> {
    let value = header.ok_or(BrokerError::MissingApiVersion)?.trim();
    let unsupported = || BrokerError::UnsupportedApiVersion(value.chars().take(32).collect());
    let (major, minor) = value.split_once('.').ok_or_else(unsupported)?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(major) || !digits(minor) {
        return Err(unsupported());
    }
    match (major.parse::<u32>(), minor.parse::<u32>()) {
        (Ok(2), Ok(minor)) if minor >= MIN_API_MINOR_VERSION => Ok(()),
        _ => Err(unsupported()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use gds_service::Secret;

    fn creds() -> BrokerCredentials {
        BrokerCredentials {
            username: "broker".into(),
            password: Secret::new("s3cret:with:colons"),
        }
    }

    fn basic(user_pass: &str) -> String {
        format!("Basic {}", STANDARD.encode(user_pass))
    }

    #[test]
    fn only_the_exact_credentials_are_accepted() {
        let c = creds();
        assert!(basic_auth_matches(
            Some(&basic("broker:s3cret:with:colons")),
            &c
        ));
        assert!(basic_auth_matches(
            Some(&format!(
                "basic {}",
                STANDARD.encode("broker:s3cret:with:colons")
            )),
            &c
        ));
        for bad in [
            basic("broker:s3cret"),
            basic("broker:s3cret:with:colons!"),
            basic("Broker:s3cret:with:colons"),
            basic("broker"),
            basic(":"),
            "Bearer abc".into(),
            "Basic not-base64!".into(),
            "Basic".into(),
            String::new(),
        ] {
            assert!(!basic_auth_matches(Some(&bad), &c), "{bad:?}");
        }
        assert!(!basic_auth_matches(None, &c));
    }

    #[test]
    fn constant_time_comparison_is_still_a_comparison() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(constant_time_eq(b"", b""));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
        assert!(!constant_time_eq(b"abcd", b"abc"));
        assert!(!constant_time_eq(b"", b"\0"));
    }

    #[test]
    fn api_versions_from_2_13_on_are_accepted() {
        for ok in ["2.13", "2.15", "2.17", "2.99", " 2.15 "] {
            assert!(check_api_version(Some(ok)).is_ok(), "{ok}");
        }
        assert!(matches!(
            check_api_version(None),
            Err(BrokerError::MissingApiVersion)
        ));
        for bad in [
            "", "2", "2.12", "1.0", "3.0", "2.x", "two", "2.15.1", "-2.15",
        ] {
            assert!(
                matches!(
                    check_api_version(Some(bad)),
                    Err(BrokerError::UnsupportedApiVersion(_))
                ),
                "{bad:?}"
            );
        }
    }

    #[test]
    fn the_originating_user_is_decoded_and_nothing_else_kept() {
        let header = format!(
            "cloudfoundry {}",
            STANDARD.encode(r#"{"user_id":"683ea748-3092-4ff4-b656-39cacc4d5360","email":"x@y"}"#)
        );
        assert_eq!(
            originating_user(&header).as_deref(),
            Some("cloudfoundry:683ea748-3092-4ff4-b656-39cacc4d5360")
        );
        assert_eq!(originating_user("cloudfoundry !!!"), None);
        assert_eq!(originating_user("garbage"), None);
    }
}
