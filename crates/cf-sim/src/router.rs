//! The simulated gorouter (`--router-listen`) and the app instances behind it.
//!
//! A second listener that routes like `cloudfoundry/gorouter` (`handlers/lookup.go`,
//! `errorwriter`; `reference/cf-platform.md` §7.1) over the simulator's own world, so a
//! scale, stop, unmap or delete through the CC API or the control API changes what it
//! serves at once:
//!
//! 1. `Host` (the request target's authority for an absolute-form request) is required
//!    and must not be the caller's own IP → else `400 empty_host`.
//! 2. A non-empty `X-CF-APP-INSTANCE` must match
//!    `^[\da-f]{8}-([\da-f]{4}-){3}[\da-f]{12}:\d+$` → else `400
//!    invalid_cf_app_instance_header` (checked before the route lookup, like gorouter).
//! 3. The route: host without port plus path, case-insensitively, against `host.domain`
//!    (the apex `domain` for an empty host) of routes on non-internal domains that have a
//!    destination on an existing app's `web` process; the longest route path that is a
//!    whole-segment prefix of the request path wins (`""` matches everything).
//! 4. The pool: every instance `0..instances` of every `web` process (two during a
//!    rolling deploy) of every STARTED destination app.
//! 5. With the header: the pool's instance with that app guid and index (compared as
//!    strings, as gorouter does) → else `400 unknown_route` "Requested instance ('i')
//!    with guid ('g') does not exist for route ('host')". Without: no route → `404
//!    unknown_route`; empty pool → `503 no_endpoints`; else round-robin per route.
//!
//! Error bodies are gorouter's: `text/plain; charset=utf-8`, `"<code> <text>: <msg>\n"`,
//! `X-Cf-Routererror`, gorouter's `Cache-Control`; `<host>` in messages is the raw
//! `Host` value (with any port), as gorouter prints `r.Host`.
//!
//! The chosen instance plays an app instrumented with the GOV.UK metrics library: any
//! GET/HEAD (any path: every path is "the metrics path") needs `Authorization: Bearer
//! <its app guid>` unless the app was told otherwise (`POST /sim/apps/:guid/metrics-auth`:
//! `{"required": false}` checks nothing, `{"tokens": [...]}` accepts `Bearer <token>` for
//! those tokens instead, as an app bound with `"auth": "token"` does) and answers a Prometheus text exposition (see
//! [`metrics_body`]); other methods get `405`. Every router request is counted by host,
//! method, path (no query), app guid, instance index and status
//! (`GET /sim/router/requests`).

use actix_web::body::MessageBody;
use actix_web::dev::{ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::{App, HttpRequest, HttpResponse, web};

use crate::routing::{Decision, Endpoint, RequestKey, RouterState, decide, metrics_body};
use crate::state::SimState;

/// The request header that picks an instance.
pub const CF_APP_INSTANCE: &str = "x-cf-app-instance";
/// The header gorouter puts on the errors it generates itself.
pub const ROUTER_ERROR: &str = "x-cf-routererror";
/// `Content-Type` of the instances' metrics.
pub const METRICS_CONTENT_TYPE: &str = "text/plain; version=0.0.4; charset=utf-8";

/// The router's actix application (shares `state` with [`crate::app`]); in-process:
/// `actix_web::test::init_service(cf_sim::router_app(state))`.
pub fn router_app(
    state: web::Data<SimState>,
) -> App<
    impl ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = ServiceResponse<impl MessageBody>,
        Error = actix_web::Error,
        InitError = (),
    >,
> {
    App::new().app_data(state).default_service(web::to(handle))
}

/// gorouter's `errorwriter` (plaintext): `"<code> <text>: <message>\n"`.
fn router_error(
    status: u16,
    router_error: &str,
    cache_control: &str,
    message: &str,
) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    HttpResponse::build(code)
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
        .insert_header((ROUTER_ERROR, router_error))
        .insert_header((header::CACHE_CONTROL, cache_control))
        .body(format!(
            "{status} {}: {message}\n",
            code.canonical_reason().unwrap_or("")
        ))
}

const NO_CACHE: &str = "no-cache, no-store";
const SHORT_CACHE: &str = "public,max-age=2";

/// The app instance: bearer check (per app), then the metrics page.
fn serve_instance(router: &mut RouterState, req: &HttpRequest, e: &Endpoint) -> HttpResponse {
    if !matches!(*req.method(), Method::GET | Method::HEAD) {
        return HttpResponse::MethodNotAllowed()
            .insert_header((header::ALLOW, "GET, HEAD"))
            .content_type("text/plain; charset=utf-8")
            .body("Method Not Allowed\n");
    }
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    if !router.metrics_authorized(&e.app_guid, given) {
        return HttpResponse::Unauthorized()
            .content_type("text/plain; charset=utf-8")
            .body("Unauthorized\n");
    }
    let n = router.record_scrape(&e.app_guid, e.index);
    HttpResponse::Ok()
        .content_type(METRICS_CONTENT_TYPE)
        .body(metrics_body(e, n))
}

/// `Host` as Go's `r.Host` has it: the absolute-form target's authority, else the header.
fn request_host(req: &HttpRequest) -> String {
    if let Some(authority) = req.uri().authority() {
        return authority.as_str().to_string();
    }
    req.headers()
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_string()
}

async fn handle(req: HttpRequest, state: web::Data<SimState>) -> HttpResponse {
    let raw_host = request_host(&req);
    // `Header.Get`: the first value; an empty one counts as absent.
    let instance_header = req
        .headers()
        .get(CF_APP_INSTANCE)
        .map(|v| String::from_utf8_lossy(v.as_bytes()).into_owned())
        .filter(|v| !v.is_empty());
    let peer_ip = req.peer_addr().map(|a| a.ip().to_string());
    let path = req.path().to_string();

    let world = state.world();
    let mut router = state.router();
    let decision = decide(
        &world,
        &mut router,
        &raw_host,
        &path,
        instance_header.as_deref(),
        peer_ip.as_deref(),
    );
    drop(world);
    let (res, app_guid, instance_index) = match decision {
        Decision::EmptyHost => (
            router_error(
                400,
                "empty_host",
                SHORT_CACHE,
                "Request had empty Host header",
            ),
            None,
            None,
        ),
        Decision::InvalidInstanceHeader => (
            router_error(
                400,
                "invalid_cf_app_instance_header",
                NO_CACHE,
                "Invalid X-CF-App-Instance Header",
            ),
            None,
            None,
        ),
        Decision::UnknownRoute => (
            router_error(
                404,
                "unknown_route",
                NO_CACHE,
                &format!("Requested route ('{raw_host}') does not exist."),
            ),
            None,
            None,
        ),
        Decision::UnknownInstance { guid, index } => (
            router_error(
                400,
                "unknown_route",
                NO_CACHE,
                &format!(
                    "Requested instance ('{index}') with guid ('{guid}') does not exist for route ('{raw_host}')"
                ),
            ),
            Some(guid),
            index.parse().ok(),
        ),
        Decision::NoEndpoints { app_guid } => (
            router_error(
                503,
                "no_endpoints",
                SHORT_CACHE,
                &format!("Requested route ('{raw_host}') has no available endpoints."),
            ),
            app_guid,
            None,
        ),
        Decision::Instance(e) => (
            serve_instance(&mut router, &req, &e),
            Some(e.app_guid),
            Some(u64::from(e.index)),
        ),
    };
    let status = res.status().as_u16();
    tracing::debug!(
        host = raw_host,
        path,
        status,
        app_guid,
        instance_index,
        "router request"
    );
    router.count(RequestKey {
        app_guid,
        instance_index,
        path,
        status,
        host: raw_host,
        method: req.method().to_string(),
    });
    res
}
