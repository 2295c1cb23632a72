//! Cloud Controller v3 errors: `{"errors":[{"detail","title","code"}]}` with the HTTP
//! status, title and code of CCNG `errors/v2.yml`.

use actix_web::http::StatusCode;
use actix_web::{HttpResponse, ResponseError};
use serde_json::json;

/// One CC v3 error. The control API (`/sim/...`) reuses it, so every JSON error the
/// simulator sends has the same shape.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CcError {
    pub status: u16,
    pub title: &'static str,
    pub code: u32,
    pub detail: String,
}

impl CcError {
    pub fn new(status: u16, title: &'static str, code: u32, detail: impl Into<String>) -> Self {
        Self {
            status,
            title,
            code,
            detail: detail.into(),
        }
    }

    /// 401 CF-InvalidAuthToken (1000): bad signature, expired, revoked, unknown.
    pub fn invalid_auth_token() -> Self {
        Self::new(401, "CF-InvalidAuthToken", 1000, "Invalid Auth Token")
    }

    /// 401 CF-NotAuthenticated (10002): no token at all.
    pub fn not_authenticated() -> Self {
        Self::new(401, "CF-NotAuthenticated", 10002, "Authentication error")
    }

    /// 403 CF-NotAuthorized (10003): token without the needed scope.
    pub fn not_authorized() -> Self {
        Self::new(
            403,
            "CF-NotAuthorized",
            10003,
            "You are not authorized to perform the requested action",
        )
    }

    /// 400 CF-BadQueryParameter (10005); `messages` are joined like CCNG's `ApiError`.
    pub fn bad_query(messages: &[String]) -> Self {
        Self::new(
            400,
            "CF-BadQueryParameter",
            10005,
            format!("The query parameter is invalid: {}", messages.join(", ")),
        )
    }

    /// 404 CF-ResourceNotFound (10010), e.g. `not_found("App")` → `App not found`.
    pub fn not_found(resource: &str) -> Self {
        Self::new(
            404,
            "CF-ResourceNotFound",
            10010,
            format!("{resource} not found"),
        )
    }

    /// 404 CF-NotFound (10000): no such endpoint.
    pub fn unknown_request() -> Self {
        Self::new(404, "CF-NotFound", 10000, "Unknown request")
    }

    /// 422 CF-UnprocessableEntity (10008).
    pub fn unprocessable(detail: impl Into<String>) -> Self {
        Self::new(422, "CF-UnprocessableEntity", 10008, detail)
    }

    /// 400 CF-MessageParseError (1001): the body is not valid JSON.
    pub fn message_parse(detail: impl Into<String>) -> Self {
        Self::new(
            400,
            "CF-MessageParseError",
            1001,
            format!("Request invalid due to parse error: {}", detail.into()),
        )
    }

    /// The JSON body.
    pub fn body(&self) -> serde_json::Value {
        json!({"errors": [{"detail": self.detail, "title": self.title, "code": self.code}]})
    }
}

impl std::fmt::Display for CcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "{} {} ({}): {}",
            self.status, self.title, self.code, self.detail
        )
    }
}

impl ResponseError for CcError {
    fn status_code(&self) -> StatusCode {
        StatusCode::from_u16(self.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR)
    }

    fn error_response(&self) -> HttpResponse {
        HttpResponse::build(self.status_code()).json(self.body())
    }
}
