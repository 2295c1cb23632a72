//! What the in-process API tests (`api.rs`, `services.rs`) share: calling the app, tokens,
//! reading lists. Each test binary uses its own part of it.
#![allow(dead_code, unused_macros)]

use actix_web::http::header::HeaderMap;
use serde_json::Value;

pub const BASE: &str = "http://cf.test";

pub struct Reply {
    pub status: u16,
    pub headers: HeaderMap,
    pub body: Value,
}

impl Reply {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Calls the in-process app; the body is parsed as JSON, else kept as a string.
macro_rules! call {
    ($app:expr, $req:expr) => {{
        let res = ::actix_web::test::call_service(&$app, $req.to_request()).await;
        let status = res.status().as_u16();
        let headers = res.headers().clone();
        let bytes = ::actix_web::test::read_body(res).await;
        let body: ::serde_json::Value = ::serde_json::from_slice(&bytes).unwrap_or_else(|_| {
            ::serde_json::Value::String(String::from_utf8_lossy(&bytes).into_owned())
        });
        $crate::common::Reply {
            status,
            headers,
            body,
        }
    }};
}

/// An admin user token (password grant through the `cf` client).
macro_rules! admin_token {
    ($app:expr) => {{
        let r = call!(
            $app,
            ::actix_web::test::TestRequest::post()
                .uri("/oauth/token")
                .insert_header(("Authorization", "Basic Y2Y6"))
                .insert_header(("Content-Type", "application/x-www-form-urlencoded"))
                .set_payload("grant_type=password&username=admin&password=admin")
        );
        assert_eq!(r.status, 200, "{}", r.body);
        r.body["access_token"].as_str().unwrap().to_string()
    }};
}

/// A GET with a bearer token.
macro_rules! get {
    ($app:expr, $token:expr, $uri:expr) => {
        call!(
            $app,
            ::actix_web::test::TestRequest::get()
                .uri(&$uri)
                .insert_header(("Authorization", format!("bearer {}", $token)))
        )
    };
}

/// A call to the control API (`/sim/...`) with a JSON body.
macro_rules! control {
    ($app:expr, $method:ident, $uri:expr, $body:expr) => {
        call!(
            $app,
            ::actix_web::test::TestRequest::$method()
                .uri(&$uri)
                .insert_header(("Content-Type", "application/json"))
                .set_payload($body.to_string())
        )
    };
}

/// The path of a `{"href": ...}` link.
pub fn path_of(href: &Value) -> String {
    href["href"]
        .as_str()
        .unwrap()
        .strip_prefix(BASE)
        .unwrap()
        .to_string()
}

/// The guids of a list's `resources`, in order.
pub fn guids(body: &Value) -> Vec<String> {
    body["resources"]
        .as_array()
        .unwrap_or_else(|| panic!("a list: {body}"))
        .iter()
        .map(|r| r["guid"].as_str().unwrap().to_string())
        .collect()
}
