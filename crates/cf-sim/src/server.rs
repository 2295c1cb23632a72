//! The one place that knows the route table, the middleware order and `HttpServer`
//! (the simulated gorouter on `--router-listen` is [`crate::router`]).
//!
//! Middleware, outermost first:
//! 1. request counters (every request, keyed `METHOD /route/:pattern`);
//! 2. injected faults (every path except `/sim/...`);
//! 3. CC authentication, rate limiting and scope checks (authenticated `/v3/...` only).

use std::net::SocketAddr;
use std::time::Duration;

use actix_web::body::MessageBody;
use actix_web::dev::{Server, ServerHandle, ServiceFactory, ServiceRequest, ServiceResponse};
use actix_web::http::{Method, StatusCode, header};
use actix_web::middleware::{Next, from_fn};
use actix_web::{App, HttpMessage, HttpResponse, HttpServer, ResponseError, web};
use anyhow::Context;
use serde_json::{Value, json};

use crate::cc::{self, apps, events, orgs, processes, routes, services};
use crate::config::SimConfig;
use crate::control;
use crate::error::CcError;
use crate::router::router_app;
use crate::state::{FaultSpec, RateDecision, SimState, Surface, pattern_key};
use crate::uaa::authenticate;
use crate::uaa_api;
use crate::util::now;

/// The catch-all for unknown `/v3/...` paths (404 CF-NotFound, no auth).
const V3_CATCH_ALL: &str = "/v3/{tail:.*}";

/// The actix application: used by [`Sim::start`] and, in-process, by tests
/// (`actix_web::test::init_service(cf_sim::app(state))`).
pub fn app(
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
    App::new()
        .app_data(state)
        .wrap(from_fn(cc_auth))
        .wrap(from_fn(inject_faults))
        .wrap(from_fn(count_requests))
        .configure(routes)
        .default_service(web::to(not_found))
}

fn routes(cfg: &mut web::ServiceConfig) {
    use web::{delete, get, patch, post, resource};
    cfg
        // Cloud Controller roots and v2.
        .service(resource("/").route(get().to(cc::root)))
        .service(resource("/v3").route(get().to(cc::v3_root)))
        .service(resource("/v2/info").route(get().to(cc::v2_info)))
        .service(resource("/v3/info").route(get().to(cc::v3_info)))
        .service(resource("/v2/{tail:.*}").to(cc::v2_disabled))
        // Apps.
        .service(resource("/v3/apps").route(get().to(apps::list_apps)))
        .service(
            resource("/v3/apps/{guid}")
                .route(get().to(apps::get_app))
                .route(patch().to(apps::update_app))
                .route(delete().to(apps::delete_app)),
        )
        .service(resource("/v3/apps/{guid}/actions/start").route(post().to(apps::start_app)))
        .service(resource("/v3/apps/{guid}/actions/stop").route(post().to(apps::stop_app)))
        .service(
            resource("/v3/apps/{guid}/processes").route(get().to(processes::list_app_processes)),
        )
        .service(
            resource("/v3/apps/{guid}/processes/{type}")
                .route(get().to(processes::get_app_process)),
        )
        .service(
            resource("/v3/apps/{guid}/processes/{type}/stats")
                .route(get().to(processes::app_process_stats)),
        )
        .service(
            resource("/v3/apps/{guid}/processes/{type}/actions/scale")
                .route(post().to(processes::scale_app_process)),
        )
        .service(resource("/v3/apps/{guid}/routes").route(get().to(routes::list_app_routes)))
        // Processes.
        .service(resource("/v3/processes").route(get().to(processes::list_processes)))
        .service(resource("/v3/processes/{guid}").route(get().to(processes::get_process)))
        .service(resource("/v3/processes/{guid}/stats").route(get().to(processes::process_stats)))
        .service(
            resource("/v3/processes/{guid}/actions/scale")
                .route(post().to(processes::scale_process)),
        )
        // Routes.
        .service(resource("/v3/routes").route(get().to(routes::list_routes)))
        .service(resource("/v3/routes/{guid}").route(get().to(routes::get_route)))
        .service(
            resource("/v3/routes/{guid}/destinations")
                .route(get().to(routes::get_destinations))
                .route(post().to(routes::add_destinations)),
        )
        .service(
            resource("/v3/routes/{guid}/destinations/{destination_guid}")
                .route(delete().to(routes::remove_destination)),
        )
        // Domains, spaces, orgs, events, jobs.
        .service(resource("/v3/domains").route(get().to(orgs::list_domains)))
        .service(resource("/v3/domains/{guid}").route(get().to(orgs::get_domain)))
        .service(resource("/v3/spaces").route(get().to(orgs::list_spaces)))
        .service(resource("/v3/spaces/{guid}").route(get().to(orgs::get_space)))
        .service(resource("/v3/organizations").route(get().to(orgs::list_orgs)))
        .service(resource("/v3/organizations/{guid}").route(get().to(orgs::get_org)))
        .service(resource("/v3/audit_events").route(get().to(events::list_events)))
        .service(resource("/v3/audit_events/{guid}").route(get().to(events::get_event)))
        .service(resource("/v3/jobs/{guid}").route(get().to(apps::get_job)))
        // Services (read-only).
        .service(resource("/v3/service_offerings").route(get().to(services::list_offerings)))
        .service(resource("/v3/service_offerings/{guid}").route(get().to(services::get_offering)))
        .service(resource("/v3/service_plans").route(get().to(services::list_plans)))
        .service(resource("/v3/service_plans/{guid}").route(get().to(services::get_plan)))
        .service(resource("/v3/service_instances").route(get().to(services::list_instances)))
        .service(resource("/v3/service_instances/{guid}").route(get().to(services::get_instance)))
        .service(
            resource("/v3/service_credential_bindings").route(get().to(services::list_bindings)),
        )
        .service(
            resource("/v3/service_credential_bindings/{guid}")
                .route(get().to(services::get_binding)),
        )
        .service(resource(V3_CATCH_ALL).to(cc::v3_unknown))
        // UAA.
        .service(resource("/oauth/token").route(post().to(uaa_api::token)))
        .service(resource("/token_keys").route(get().to(uaa_api::token_keys)))
        .service(resource("/token_key").route(get().to(uaa_api::token_key)))
        .service(
            resource("/.well-known/openid-configuration")
                .route(get().to(uaa_api::openid_configuration)),
        )
        // Control API.
        .service(resource("/sim").route(get().to(control::index)))
        .service(resource("/sim/orgs").route(post().to(control::create_org)))
        .service(resource("/sim/spaces").route(post().to(control::create_space)))
        .service(resource("/sim/apps").route(post().to(control::create_app)))
        .service(resource("/sim/apps/{guid}").route(delete().to(control::delete)))
        .service(resource("/sim/apps/{guid}/scale").route(post().to(control::scale)))
        .service(resource("/sim/apps/{guid}/stop").route(post().to(control::stop)))
        .service(resource("/sim/apps/{guid}/start").route(post().to(control::start)))
        .service(resource("/sim/apps/{guid}/rename").route(post().to(control::rename)))
        .service(resource("/sim/apps/{guid}/metrics-auth").route(post().to(control::metrics_auth)))
        .service(
            resource("/sim/apps/{guid}/rolling-deploy").route(post().to(control::rolling_deploy)),
        )
        .service(
            resource("/sim/apps/{guid}/rolling-deploy/finish")
                .route(post().to(control::finish_rolling_deploy)),
        )
        .service(resource("/sim/routes").route(post().to(control::create_route)))
        .service(resource("/sim/routes/{guid}/destinations").route(post().to(control::map_route)))
        .service(
            resource("/sim/routes/{guid}/destinations/{app_guid}")
                .route(delete().to(control::unmap_route)),
        )
        .service(
            resource("/sim/service_offerings").route(post().to(control::services::create_offering)),
        )
        .service(
            resource("/sim/service_instances").route(post().to(control::services::create_instance)),
        )
        .service(
            resource("/sim/service_instances/{guid}")
                .route(delete().to(control::services::delete_instance)),
        )
        .service(
            resource("/sim/service_credential_bindings")
                .route(post().to(control::services::create_binding)),
        )
        .service(
            resource("/sim/service_credential_bindings/{guid}")
                .route(delete().to(control::services::delete_binding)),
        )
        .service(resource("/sim/seed").route(post().to(control::seed_world)))
        .service(resource("/sim/demo").route(post().to(control::demo_world)))
        .service(
            resource("/sim/faults")
                .route(get().to(control::list_faults))
                .route(post().to(control::add_fault))
                .route(delete().to(control::clear_faults)),
        )
        .service(resource("/sim/uaa/revoke").route(post().to(control::revoke)))
        .service(resource("/sim/uaa/down").route(post().to(control::uaa_down)))
        .service(
            resource("/sim/requests")
                .route(get().to(control::requests))
                .route(delete().to(control::reset_requests)),
        )
        .service(
            resource("/sim/router/requests")
                .route(get().to(control::router_requests))
                .route(delete().to(control::reset_router_requests)),
        )
        .service(resource("/sim/reset").route(post().to(control::reset)));
}

/// Anything else: a router-style plain-text 404.
async fn not_found() -> HttpResponse {
    HttpResponse::NotFound()
        .content_type("text/plain; charset=utf-8")
        .body("404 Not Found\n")
}

fn state_of(req: &ServiceRequest) -> web::Data<SimState> {
    req.app_data::<web::Data<SimState>>()
        .cloned()
        .expect("app() registers the state")
}

/// The counter key of a request: `METHOD /pattern/:param`, or `METHOD <unmatched>`.
pub fn counter_key(method: &Method, pattern: Option<&str>) -> String {
    match pattern {
        Some(p) => format!("{method} {}", pattern_key(p)),
        None => format!("{method} <unmatched>"),
    }
}

async fn count_requests(
    req: ServiceRequest,
    next: Next<impl MessageBody>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let state = state_of(&req);
    let key = counter_key(req.method(), req.match_pattern().as_deref());
    state.counters().count(Surface::of(req.path()), key);
    let started = std::time::Instant::now();
    let (method, path) = (req.method().clone(), req.path().to_string());
    let res = next.call(req).await?;
    tracing::debug!(
        %method,
        path,
        status = res.status().as_u16(),
        elapsed_ms = started.elapsed().as_millis() as u64,
        "request"
    );
    Ok(res)
}

async fn inject_faults(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    if Surface::of(req.path()) != Surface::Control {
        let state = state_of(&req);
        let fault = state.faults().take(req.method().as_str(), req.path());
        if let Some(fault) = fault {
            tracing::info!(path = req.path(), status = ?fault.status, delay_ms = ?fault.delay_ms, "injecting fault");
            if let Some(ms) = fault.delay_ms {
                tokio::time::sleep(Duration::from_millis(ms)).await;
            }
            if let Some(status) = fault.status {
                let res = fault_response(&state, &fault, status);
                return Ok(req.into_response(res).map_into_boxed_body());
            }
        }
    }
    Ok(next.call(req).await?.map_into_boxed_body())
}

/// The response of an injected fault: the real 429 shape, router-style plain text for
/// 502/504, CC JSON errors otherwise; `body` overrides.
fn fault_response(state: &SimState, fault: &FaultSpec, status: u16) -> HttpResponse {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut res = if status == 429 && fault.body.is_none() {
        let retry_after = fault.retry_after.unwrap_or(1) as i64;
        let limit = if state.config.rate_limit > 0 {
            state.config.rate_limit
        } else {
            2000
        };
        rate_limited(
            RateDecision {
                limit,
                remaining: 0,
                reset: now() + retry_after,
                exceeded: true,
            },
            retry_after,
        )
    } else {
        let mut b = HttpResponse::build(code);
        match &fault.body {
            Some(Value::String(text)) => b
                .content_type("text/plain; charset=utf-8")
                .body(text.clone()),
            Some(v) => b
                .content_type("application/json; charset=utf-8")
                .body(v.to_string()),
            None => match status {
                502 => b
                    .content_type("text/plain; charset=utf-8")
                    .body("502 Bad Gateway: Registered endpoint failed to handle the request.\n"),
                504 => b
                    .content_type("text/plain; charset=utf-8")
                    .body("504 Gateway Timeout\n"),
                _ => b
                    .content_type("application/json; charset=utf-8")
                    .body(default_fault_body(status).to_string()),
            },
        }
    };
    if let Some(secs) = fault.retry_after
        && status != 429
        && let Ok(v) = header::HeaderValue::from_str(&secs.to_string())
    {
        res.headers_mut().insert(header::RETRY_AFTER, v);
    }
    res
}

fn default_fault_body(status: u16) -> Value {
    let e = match status {
        500 => {
            return json!({"errors": [{"detail": "An unknown error occurred.", "title": "UnknownError", "code": 10001}]});
        }
        400 => CcError::new(400, "CF-InvalidRequest", 10004, "The request is invalid"),
        401 => CcError::invalid_auth_token(),
        403 => CcError::not_authorized(),
        404 => CcError::unknown_request(),
        422 => CcError::unprocessable("Simulated fault"),
        503 => CcError::new(503, "CF-ServiceUnavailable", 10015, "Service Unavailable"),
        _ => CcError::new(
            status,
            "CF-SimulatedFault",
            0,
            format!("Simulated fault ({status})"),
        ),
    };
    e.body()
}

/// 429 as the CC's rate limiter sends it: JSON body under `text/plain`.
fn rate_limited(d: RateDecision, retry_after: i64) -> HttpResponse {
    let body = json!({"errors": [{"detail": "Rate Limit Exceeded", "title": "CF-RateLimitExceeded", "code": 10013}]});
    let mut res = HttpResponse::TooManyRequests()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::RETRY_AFTER, retry_after.max(0).to_string()))
        .body(body.to_string());
    add_rate_headers(&mut res, d);
    res
}

fn add_rate_headers<B>(res: &mut actix_web::HttpResponse<B>, d: RateDecision) {
    let headers = res.headers_mut();
    for (name, value) in [
        ("x-ratelimit-limit", d.limit.to_string()),
        ("x-ratelimit-remaining", d.remaining.to_string()),
        ("x-ratelimit-reset", d.reset.to_string()),
    ] {
        if let Ok(v) = header::HeaderValue::from_str(&value) {
            headers.insert(header::HeaderName::from_static(name), v);
        }
    }
}

async fn cc_auth(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    // `GET /v3/info` answers without a token too; with one, it is counted like any call.
    let authenticated = req.path().starts_with("/v3/")
        && req.match_pattern().is_some_and(|p| p != V3_CATCH_ALL)
        && (req.path() != "/v3/info" || req.headers().contains_key(header::AUTHORIZATION));
    if !authenticated {
        return Ok(next.call(req).await?.map_into_boxed_body());
    }
    let state = state_of(&req);
    let authorization = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok());
    let identity = {
        let uaa = state.uaa();
        authenticate(authorization, &state.key, &uaa, &state.base_url)
    };
    let identity = match identity {
        Ok(i) => i,
        Err(e) => return Ok(req.into_response(e.error_response()).map_into_boxed_body()),
    };

    // Like CCNG: the rate limiter (Rack middleware) runs after the token is decoded and
    // before the controller's scope checks. Admin and admin_read_only tokens are exempt
    // (CCNG's default `per_process_admin_limit: -1`): no count, no headers.
    let decision = (state.config.rate_limit > 0 && !identity.is_admin()).then(|| {
        state.rate().hit(
            &identity.subject,
            state.config.rate_limit,
            state.config.rate_limit_window,
            now(),
        )
    });
    if let Some(d) = decision
        && d.exceeded
    {
        state.counters().rate_limited += 1;
        return Ok(req
            .into_response(rate_limited(d, d.reset - now()))
            .map_into_boxed_body());
    }

    let reading = matches!(*req.method(), Method::GET | Method::HEAD);
    let allowed = if reading {
        identity.can_read()
    } else {
        identity.can_write()
    };
    let mut res = if allowed {
        req.extensions_mut().insert(identity);
        next.call(req).await?.map_into_boxed_body()
    } else {
        req.into_response(CcError::not_authorized().error_response())
            .map_into_boxed_body()
    };
    if let Some(d) = decision {
        add_rate_headers(res.response_mut(), d);
    }
    Ok(res)
}

/// A simulator bound to its port(s). Call [`Sim::run`] (or spawn it) to serve.
pub struct Sim {
    /// The bound address (the real port when `--listen` asked for port 0).
    pub addr: SocketAddr,
    /// `http://ADDR` with `127.0.0.1` / `[::1]` in place of an unspecified address.
    pub local_url: String,
    /// What the simulator advertises (`--base-url`, else `local_url`).
    pub base_url: String,
    /// The simulated gorouter's bound address (`--router-listen`), if on.
    pub router_addr: Option<SocketAddr>,
    /// `http://ADDR` of the router, like `local_url` (also `router_url` in `GET /sim`).
    pub router_url: Option<String>,
    pub state: web::Data<SimState>,
    server: Server,
    router: Option<Server>,
}

impl Sim {
    /// Binds `config.listen` (and `config.router_listen`) and builds the start-up state
    /// (seed, demo). Must be called inside an actix/tokio runtime; nothing is served
    /// until [`Sim::run`] is awaited (or the future spawned).
    pub fn start(config: SimConfig) -> anyhow::Result<Self> {
        let listener = std::net::TcpListener::bind(&config.listen)
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let addr = listener.local_addr()?;
        let local_url = local_url(addr);
        let router_listener = match &config.router_listen {
            Some(listen) => Some(
                std::net::TcpListener::bind(listen)
                    .with_context(|| format!("cannot listen on {listen} (--router-listen)"))?,
            ),
            None => None,
        };
        let router_addr = router_listener
            .as_ref()
            .map(std::net::TcpListener::local_addr)
            .transpose()?;
        let router_tls = config
            .router_tls
            .as_ref()
            .map(router_tls_config)
            .transpose()
            .context("--router-tls-cert / --router-tls-key")?;
        let router_url = router_addr.map(|addr| {
            let url = self::local_url(addr);
            match router_tls {
                Some(_) => url.replacen("http://", "https://", 1),
                None => url,
            }
        });
        let base_url = config.base_url.clone().unwrap_or_else(|| local_url.clone());
        let seeding = std::time::Instant::now();
        let mut state = SimState::new(config, &base_url)?;
        state.router_url = router_url.clone();
        let state = web::Data::new(state);
        tracing::info!(
            apps = state.world().apps.len(),
            elapsed_ms = seeding.elapsed().as_millis() as u64,
            %base_url,
            router_url = router_url.as_deref().unwrap_or("off"),
            "world ready"
        );
        let shared = state.clone();
        let server = HttpServer::new(move || app(shared.clone()))
            .listen(listener)?
            .shutdown_timeout(5)
            .run();
        let router = match router_listener {
            Some(listener) => {
                let shared = state.clone();
                let server = HttpServer::new(move || router_app(shared.clone()));
                let server = match router_tls {
                    Some(tls) => server.listen_rustls_0_23(listener, tls)?,
                    None => server.listen(listener)?,
                };
                Some(server.shutdown_timeout(5).run())
            }
            None => None,
        };
        Ok(Self {
            addr,
            local_url,
            base_url,
            router_addr,
            router_url,
            state,
            server,
            router,
        })
    }

    /// A handle to stop the server (`handle.stop(true).await`); the router stops with it.
    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    /// Serves until stopped (Ctrl-C / SIGTERM stop it gracefully); the router, if any,
    /// is served alongside and stopped when the main server stops.
    pub async fn run(self) -> std::io::Result<()> {
        let Some(router) = self.router else {
            return self.server.await;
        };
        let router_handle = router.handle();
        let router_task = actix_web::rt::spawn(router);
        let result = self.server.await;
        router_handle.stop(true).await;
        let _ = router_task.await;
        result
    }
}

/// The router's TLS settings: the PEM chain and key, rustls with aws-lc-rs, HTTP/1.1
/// (gorouter's front end also speaks HTTP/2; Prometheus' scrapes through a proxy do not).
fn router_tls_config(tls: &crate::config::RouterTls) -> anyhow::Result<rustls::ServerConfig> {
    use rustls_pki_types::pem::PemObject;
    use rustls_pki_types::{CertificateDer, PrivateKeyDer};
    let certs = CertificateDer::pem_slice_iter(&tls.cert_pem)
        .collect::<Result<Vec<_>, _>>()
        .context("the certificate chain is not PEM")?;
    anyhow::ensure!(!certs.is_empty(), "no certificate in the chain");
    let key =
        PrivateKeyDer::from_pem_slice(&tls.key_pem).context("the key is not a PEM private key")?;
    let provider = std::sync::Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let mut config = rustls::ServerConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(certs, key)?;
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

fn local_url(addr: SocketAddr) -> String {
    let ip = match addr.ip() {
        std::net::IpAddr::V4(v4) if v4.is_unspecified() => "127.0.0.1".to_string(),
        std::net::IpAddr::V6(v6) if v6.is_unspecified() => "[::1]".to_string(),
        std::net::IpAddr::V4(v4) => v4.to_string(),
        std::net::IpAddr::V6(v6) => format!("[{v6}]"),
    };
    format!("http://{ip}:{}", addr.port())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn local_urls_replace_unspecified_addresses() {
        assert_eq!(
            local_url("0.0.0.0:9292".parse().unwrap()),
            "http://127.0.0.1:9292"
        );
        assert_eq!(
            local_url("127.0.0.1:1".parse().unwrap()),
            "http://127.0.0.1:1"
        );
        assert_eq!(local_url("[::]:80".parse().unwrap()), "http://[::1]:80");
    }

    #[test]
    fn counter_keys_read_like_the_api_reference() {
        assert_eq!(counter_key(&Method::GET, Some("/v3/apps")), "GET /v3/apps");
        assert_eq!(
            counter_key(&Method::GET, Some("/v3/apps/{guid}")),
            "GET /v3/apps/:guid"
        );
        assert_eq!(counter_key(&Method::POST, None), "POST <unmatched>");
    }
}
