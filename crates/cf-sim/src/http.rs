//! HTTP helpers every handler module shares: JSON responses and request bodies.

use actix_web::HttpResponse;
use actix_web::http::StatusCode;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::error::CcError;

/// What a handler that can fail with a CC error returns.
pub type CcResult = Result<HttpResponse, CcError>;

/// `body` as `application/json; charset=utf-8` with `status` (200 if not a status).
pub fn json_response(status: u16, body: &Value) -> HttpResponse {
    let status = StatusCode::from_u16(status).unwrap_or(StatusCode::OK);
    HttpResponse::build(status)
        .content_type("application/json; charset=utf-8")
        .body(serde_json::to_vec(body).expect("serialising JSON cannot fail"))
}

/// 200 with `body`.
pub fn ok(body: &Value) -> CcResult {
    Ok(json_response(200, body))
}

/// An empty or all-blank body reads as `{}`.
fn or_empty_object(body: &[u8]) -> &[u8] {
    if body.iter().all(u8::is_ascii_whitespace) {
        b"{}".as_slice()
    } else {
        body
    }
}

/// A CC request body: a well-formed body of the wrong shape is 422
/// CF-UnprocessableEntity, malformed JSON 400 CF-MessageParseError (as the CC answers).
pub fn cc_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CcError> {
    serde_json::from_slice(or_empty_object(body)).map_err(|e| {
        if e.is_data() {
            CcError::unprocessable(e.to_string())
        } else {
            CcError::message_parse(e.to_string())
        }
    })
}

/// A control-API body: any problem is 422.
pub fn control_body<T: DeserializeOwned>(body: &[u8]) -> Result<T, CcError> {
    serde_json::from_slice(or_empty_object(body)).map_err(|e| CcError::unprocessable(e.to_string()))
}
