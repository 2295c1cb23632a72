//! The HTTP side: `/targets` (Prometheus http_sd), `/targets/<name>`, `/health`,
//! `/metrics`. The one place that knows the route table and `HttpServer`.

use std::convert::Infallible;
use std::net::{SocketAddr, TcpListener};
use std::sync::Arc;
use std::time::Duration;

use actix_web::body::SizedStream;
use actix_web::dev::Server;
use actix_web::http::header;
use actix_web::middleware::from_fn;
use actix_web::{App, HttpResponse, HttpServer, web};
use bytes::{Bytes, BytesMut};
use prometheus::Registry;
use serde::Serialize;
use tokio::time::Instant;

use crate::auth::{HttpAuth, require_auth};
use crate::mirror::{Freshness, MirrorShared, Status};
use crate::valve::Hold;

/// What the handlers share.
pub struct AppState {
    pub mirrors: Vec<Arc<MirrorShared>>,
    pub registry: Registry,
    /// `/targets` answers 503 when a mapping's last complete listing is older.
    pub stale_after: Duration,
    /// What every route but `/health` requires.
    pub auth: HttpAuth,
    /// The scrape gateway, when configured.
    pub gateway: Option<GatewayHealth>,
    /// Each mapping's scrape credentials index, by mapping name, for `/health`.
    pub credentials: Vec<(
        String,
        Arc<std::sync::Mutex<crate::scrape_auth::CredentialsHealth>>,
    )>,
}

/// What `/health` says of the scrape gateway.
pub struct GatewayHealth {
    /// The address it listens on (bound before sd-sync says it is listening).
    pub address: String,
    pub routes: Arc<crate::gateway::RouteTable>,
}

#[derive(Serialize)]
struct GatewayStatus<'a> {
    listening: bool,
    address: &'a str,
    /// Installed targets it forwards scrapes to.
    targets: usize,
}

impl AppState {
    /// Why `mirrors` cannot be served as current, if they cannot.
    ///
    /// Why 503 and not `[]` or the old state forever: Prometheus treats `[]` as "every
    /// target is gone" and keeps its current targets when the request fails.
    fn unavailable<'a>(
        &self,
        mirrors: impl IntoIterator<Item = &'a Arc<MirrorShared>>,
    ) -> Option<String> {
        let now = Instant::now();
        let reasons: Vec<String> = mirrors
            .into_iter()
            .filter_map(|m| match m.freshness(now, self.stale_after) {
                Freshness::Fresh => None,
                Freshness::NeverListed => Some(format!(
                    "{}: no complete listing of {} yet",
                    m.name, m.source
                )),
                Freshness::Stale { age } => Some(format!(
                    "{}: the last complete listing of {} is {}s old (stale after {}s)",
                    m.name,
                    m.source,
                    age.as_secs(),
                    self.stale_after.as_secs()
                )),
            })
            .collect();
        (!reasons.is_empty()).then(|| reasons.join("; "))
    }
}

/// The http_sd answer: the fragments joined into one JSON array, streamed in chunks of
/// about 64 KiB with a Content-Length, so that serving 10,000 files does not hold a
/// second copy of all their groups in memory.
fn json_targets(fragments: Vec<Bytes>) -> HttpResponse {
    let fragments: Vec<Bytes> = fragments.into_iter().filter(|f| !f.is_empty()).collect();
    let length =
        2 + fragments.iter().map(Bytes::len).sum::<usize>() + fragments.len().saturating_sub(1);
    let chunks = ArrayChunks {
        fragments: fragments.into_iter(),
        state: ArrayState::Start,
    };
    HttpResponse::Ok()
        .content_type("application/json")
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .body(SizedStream::new(
            length as u64,
            futures::stream::iter(chunks),
        ))
}

const CHUNK: usize = 64 * 1024;

enum ArrayState {
    Start,
    Middle,
    Done,
}

/// `[`, the fragments separated by commas, `]`, in chunks of about [`CHUNK`] bytes.
struct ArrayChunks {
    fragments: std::vec::IntoIter<Bytes>,
    state: ArrayState,
}

impl Iterator for ArrayChunks {
    type Item = Result<Bytes, Infallible>;

    fn next(&mut self) -> Option<Self::Item> {
        let mut chunk = BytesMut::with_capacity(CHUNK);
        loop {
            match self.state {
                ArrayState::Done => return (!chunk.is_empty()).then(|| Ok(chunk.freeze())),
                ArrayState::Start => {
                    chunk.extend_from_slice(b"[");
                    self.state = ArrayState::Middle;
                    if let Some(first) = self.fragments.next() {
                        chunk.extend_from_slice(&first);
                    }
                }
                ArrayState::Middle => match self.fragments.next() {
                    Some(fragment) => {
                        chunk.extend_from_slice(b",");
                        chunk.extend_from_slice(&fragment);
                    }
                    None => {
                        chunk.extend_from_slice(b"]");
                        self.state = ArrayState::Done;
                    }
                },
            }
            if chunk.len() >= CHUNK {
                return Some(Ok(chunk.freeze()));
            }
        }
    }
}

fn service_unavailable(reason: String) -> HttpResponse {
    tracing::debug!(reason, "answering 503");
    HttpResponse::ServiceUnavailable()
        .content_type("text/plain; charset=utf-8")
        .insert_header((header::RETRY_AFTER, "5"))
        .body(format!("{reason}\n"))
}

/// `GET /targets`: every mapping's groups together.
async fn all_targets(state: web::Data<AppState>) -> HttpResponse {
    if let Some(reason) = state.unavailable(&state.mirrors) {
        return service_unavailable(reason);
    }
    json_targets(state.mirrors.iter().flat_map(|m| m.fragments()).collect())
}

/// `GET /targets/<name>`: one mapping's groups.
async fn mapping_targets(state: web::Data<AppState>, name: web::Path<String>) -> HttpResponse {
    let Some(mirror) = state.mirrors.iter().find(|m| m.name == *name) else {
        let names: Vec<&str> = state.mirrors.iter().map(|m| m.name.as_str()).collect();
        return HttpResponse::NotFound()
            .content_type("text/plain; charset=utf-8")
            .body(format!(
                "no mapping named {name:?}; there are: {}\n",
                names.join(", ")
            ));
    };
    if let Some(reason) = state.unavailable([mirror]) {
        return service_unavailable(reason);
    }
    json_targets(mirror.fragments())
}

#[derive(Serialize)]
struct Health<'a> {
    status: &'static str,
    mappings: Vec<MappingHealth<'a>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gateway: Option<GatewayStatus<'a>>,
}

#[derive(Serialize)]
struct MappingHealth<'a> {
    name: &'a str,
    /// See [`mapping_status`].
    status: &'static str,
    source: &'a str,
    dir: String,
    files: usize,
    /// Objects in the last complete listing.
    listed: usize,
    last_listing_age_seconds: Option<f64>,
    last_error: Option<String>,
    failing_objects: usize,
    held_back_deletions: usize,
    /// Why deletions are held back: `{"reason": ..., ...}` (see [`crate::valve::Hold`]).
    hold: Option<Hold>,
    /// The hold in words.
    hold_message: Option<String>,
    /// The index of the scrape credentials documents beside the mapping's prefix (none
    /// when the prefix locates no `credentials/`); malformed documents or a failed
    /// listing make the mapping `degraded`, as failing target objects do.
    scrape_credentials: Option<crate::scrape_auth::CredentialsHealth>,
}

/// A mapping's status, worst first: `stale` (the last complete listing is older than
/// `--stale-after`), `starting` (no complete listing yet), `degraded` (the last sync could
/// not fetch, install or remove some objects), `held` (the valve holds a mass deletion
/// that only the writers' record or the operator can release; the countdown of a mapping
/// without a record is not one), `ok`.
fn mapping_status(freshness: &Freshness, status: &Status) -> &'static str {
    match freshness {
        Freshness::Stale { .. } => "stale",
        Freshness::NeverListed => "starting",
        Freshness::Fresh if status.failing_objects > 0 => "degraded",
        Freshness::Fresh if status.hold.as_ref().is_some_and(Hold::needs_attention) => "held",
        Freshness::Fresh => "ok",
    }
}

/// The order of [`mapping_status`]'s answers, worst first.
const STATUS_ORDER: [&str; 5] = ["stale", "starting", "degraded", "held", "ok"];

/// `GET /health`: 200 when every mapping is `ok`, else 503 with the worst mapping's status;
/// the body says how each mapping is doing.
async fn health(state: web::Data<AppState>) -> HttpResponse {
    let now = Instant::now();
    let mappings: Vec<MappingHealth> = state
        .mirrors
        .iter()
        .map(|m| {
            let s = m.status();
            let mut status = mapping_status(&m.freshness(now, state.stale_after), &s);
            let scrape_credentials = state
                .credentials
                .iter()
                .find(|(name, _)| *name == m.name)
                .map(|(_, health)| health.lock().unwrap_or_else(|p| p.into_inner()).clone());
            if status == "ok"
                && scrape_credentials
                    .as_ref()
                    .is_some_and(|c| !c.invalid_documents.is_empty() || c.last_error.is_some())
            {
                status = "degraded";
            }
            MappingHealth {
                name: &m.name,
                status,
                source: &m.source,
                dir: m.dir.display().to_string(),
                files: m.files(),
                listed: s.listed,
                last_listing_age_seconds: s
                    .last_listing
                    .map(|at| now.saturating_duration_since(at).as_secs_f64()),
                last_error: s.last_error,
                failing_objects: s.failing_objects,
                held_back_deletions: s.held_back,
                hold_message: s.hold.as_ref().map(ToString::to_string),
                hold: s.hold,
                scrape_credentials,
            }
        })
        .collect();
    let status = STATUS_ORDER
        .into_iter()
        .find(|candidate| mappings.iter().any(|m| m.status == *candidate))
        .unwrap_or("ok");
    let gateway = state.gateway.as_ref().map(|g| GatewayStatus {
        listening: true,
        address: &g.address,
        targets: g.routes.len(),
    });
    let body = Health {
        status,
        mappings,
        gateway,
    };
    if status == "ok" {
        HttpResponse::Ok().json(body)
    } else {
        HttpResponse::ServiceUnavailable().json(body)
    }
}

async fn metrics(state: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type(gds_service::metrics::CONTENT_TYPE)
        .body(gds_service::metrics::render(&state.registry))
}

/// The route table. `/health` is open (a load balancer's or systemd's check has no
/// credentials, and it names no target); the rest requires the configured credentials:
/// `/targets` because it is every target's address, `/metrics` because its labels name
/// the node's mappings and its counters tell the foundation's size, and the Prometheus
/// that scrapes it is the one that reads `/targets`, so it has the credentials already.
pub fn routes(config: &mut web::ServiceConfig) {
    config.route("/health", web::get().to(health)).service(
        web::scope("")
            .wrap(from_fn(require_auth))
            .route("/targets", web::get().to(all_targets))
            .route("/targets/{name}", web::get().to(mapping_targets))
            .route("/metrics", web::get().to(metrics)),
    );
}

/// Builds the server on an already bound listener. One worker: the only clients are the
/// local Prometheus and operators.
pub fn server(state: AppState, listener: TcpListener) -> std::io::Result<Server> {
    let auth = web::Data::new(state.auth.clone());
    let state = web::Data::new(state);
    Ok(HttpServer::new(move || {
        App::new()
            .app_data(state.clone())
            .app_data(auth.clone())
            .configure(routes)
    })
    .workers(1)
    .shutdown_timeout(5)
    .listen(listener)?
    .run())
}

/// `http://ADDR` with loopback in place of an unspecified address.
pub fn local_url(addr: SocketAddr) -> String {
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
    use crate::filesd::join_fragments;

    fn streamed(fragments: Vec<Bytes>) -> Vec<u8> {
        let chunks = ArrayChunks {
            fragments: fragments.into_iter(),
            state: ArrayState::Start,
        };
        chunks.flat_map(|c| c.unwrap().to_vec()).collect()
    }

    #[actix_web::test]
    async fn every_route_but_health_requires_the_configured_credentials() {
        use actix_web::test::{TestRequest, call_service, init_service};
        let auth = HttpAuth {
            basic: None,
            bearer: Some(gds_service::Secret::new("t0ken")),
        };
        let state = AppState {
            mirrors: Vec::new(),
            registry: Registry::new(),
            stale_after: Duration::from_secs(60),
            auth: auth.clone(),
            gateway: None,
            credentials: Vec::new(),
        };
        let app = init_service(
            App::new()
                .app_data(web::Data::new(state))
                .app_data(web::Data::new(auth))
                .configure(routes),
        )
        .await;
        for path in ["/targets", "/targets/x", "/metrics"] {
            let res = call_service(&app, TestRequest::get().uri(path).to_request()).await;
            assert_eq!(res.status(), 401, "{path}");
            assert!(
                res.headers().contains_key(header::WWW_AUTHENTICATE),
                "{path}"
            );
            let res = call_service(
                &app,
                TestRequest::get()
                    .uri(path)
                    .insert_header((header::AUTHORIZATION, "Bearer t0ken"))
                    .to_request(),
            )
            .await;
            assert_ne!(res.status(), 401, "{path}");
        }
        let res = call_service(&app, TestRequest::get().uri("/health").to_request()).await;
        assert_eq!(res.status(), 200);
    }

    #[test]
    fn the_streamed_array_is_the_joined_array() {
        let group = Bytes::from_static(br#"{"targets":["a"],"labels":{}}"#);
        for count in [0, 1, 2, 5000] {
            let fragments = vec![group.clone(); count];
            let joined = join_fragments(&fragments);
            assert_eq!(streamed(fragments), joined, "{count}");
        }
    }
}
