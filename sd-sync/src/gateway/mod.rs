//! The scrape gateway (`--scrape-listen`): a forward proxy for Prometheus' scrapes that
//! forwards only to targets sd-sync has installed, over HTTPS, with the platform's
//! headers. It speaks the protocol of `manifests/nginx/forward-proxy.conf`: Prometheus
//! keeps `proxy_url` and `scheme: http` and sends
//! `GET http://<host><path>?cf_app_guid=G&cf_app_instance=G%3AI&cf_app_instance_index=I`.
//!
//! - [`request`] parses the request line (pure); [`routes`] holds the installed targets,
//!   rebuilt by each mapping's sync loop after a sync that changed its files and read
//!   without a lock per scrape. A scrape that names no installed target is refused (403,
//!   one line, counted by reason) before any DNS lookup or connection.
//! - [`upstream`]: `https://<host><path>` (no query: the `cf_*` parameters stop here, as
//!   with nginx) with `X-CF-APP-INSTANCE: G:I` and the [`UpstreamAuthorization`]'s
//!   header; connections go to the router the target's mapping is pinned to
//!   (`--scrape-router [MAPPING=]HOST_OR_IP:PORT`), or, for a mapping without one, to the
//!   host's resolved addresses minus loopback, link-local and unspecified ones (and
//!   within `--scrape-allow-cidr`). [`pool`] keeps them: one bounded pool, a connection
//!   to a router reused for every host its certificate covers.
//!   Only `Accept`, `Accept-Encoding`, `User-Agent` and
//!   `X-Prometheus-Scrape-Timeout-Seconds` of Prometheus' headers go upstream; the
//!   response streams back with its headers less hop-by-hop ones, its body capped.

mod metrics;
pub mod pool;
pub mod refusal;
pub mod request;
pub mod routes;
pub mod upstream;

use std::convert::Infallible;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::{Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Empty, Full, StreamBody};
use hyper::body::{Body as _, Frame, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use ipnet::IpNet;
use prometheus::Registry;
use tokio::time::Instant;

use self::metrics::GatewayMetrics;
use self::pool::{Failure, Lease, Pool, PoolSettings, Tls};
pub use self::refusal::Refusal;
pub use self::routes::{RouteTable, RoutesBuilder};
pub use self::upstream::{AppGuidBearer, Pin, RouterEntry, UpstreamAuthorization};

/// The header that picks an instance at the gorouter.
pub const CF_APP_INSTANCE: HeaderName = HeaderName::from_static("x-cf-app-instance");
/// Prometheus' scrape timeout, in seconds.
pub const SCRAPE_TIMEOUT: HeaderName =
    HeaderName::from_static("x-prometheus-scrape-timeout-seconds");

/// The gateway's settings (`--scrape-*`).
#[derive(Clone, Debug)]
pub struct GatewayConfig {
    /// Loopback only: the gateway has no authentication of its own.
    pub listen: SocketAddr,
    /// Per mapping, in `--mapping` order (the [`RouteTable`]'s): where its scrapes
    /// connect.
    pub routers: Vec<MappingRouter>,
    /// For the mappings without a router: resolved addresses must be in one of these
    /// (when any).
    pub allow_cidrs: Vec<IpNet>,
    /// A PEM bundle that replaces the system's roots.
    pub ca_file: Option<PathBuf>,
    pub insecure_skip_verify: bool,
    /// A response body longer than this is cut (502 when its length is announced).
    pub max_body_bytes: u64,
    /// The upstream port of the mappings without a router.
    pub upstream_port: u16,
    /// When Prometheus sends no `X-Prometheus-Scrape-Timeout-Seconds`.
    pub default_timeout: Duration,
    pub connect_timeout: Duration,
    /// Idle upstream connections kept, all routers together.
    pub pool_max_idle: usize,
    pub pool_idle_timeout: Duration,
    /// A connection from Prometheus waiting longer for its next request is closed.
    pub client_idle_timeout: Duration,
}

/// Where one mapping's scrapes connect.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MappingRouter {
    /// The mapping's name (the last component of its directory).
    pub mapping: String,
    /// Its router: every connection goes there, the route's host being only `Host` and
    /// SNI (a router knows its own foundation's routes only). `None`: the route host's
    /// resolved addresses, filtered.
    pub pin: Option<Pin>,
}

/// 64 MiB: far above any real exposition (Prometheus' own default `body_size_limit` is
/// unlimited; a 64 MiB page is about a million series from one target), so no tenant's
/// scrape is cut, while an endless or runaway body is. Bodies stream: the cap costs no
/// memory.
pub const DEFAULT_MAX_BODY_BYTES: u64 = 64 * 1024 * 1024;

/// How long a connection from Prometheus may wait for its next request (or take to send
/// a request's head) before the gateway closes it (`--scrape-client-idle-timeout`).
/// Prometheus keeps up to 1,000 idle connections to a proxy for 5 minutes, about 20 KiB
/// each here: a burst of scrapes (at its start, or after a stall) would otherwise hold
/// its connections' memory that long. A connection in use is seldom idle this long:
/// Prometheus sends the scrapes of all its targets over the connections it has, so
/// mostly the burst's surplus closes (and Go's client sends a scrape that meets a
/// connection closing again on a new one).
pub const DEFAULT_CLIENT_IDLE_TIMEOUT: Duration = Duration::from_secs(15);

/// What a request's handler shares.
struct Shared {
    routes: Arc<RouteTable>,
    /// The connections to every distinct router (and to the unpinned mappings' hosts).
    pool: Arc<Pool>,
    /// Per mapping, in the route table's order: its name and its upstream in `pool` (one
    /// per distinct router, so a connection to one router never carries another
    /// foundation's scrape).
    upstreams: Vec<(Box<str>, usize)>,
    authorization: Arc<dyn UpstreamAuthorization>,
    metrics: GatewayMetrics,
    max_body_bytes: u64,
    default_timeout: Duration,
    client_idle_timeout: Duration,
}

/// The gateway, bound and ready to serve.
pub struct Gateway {
    listener: std::net::TcpListener,
    shared: Arc<Shared>,
}

type Body = BoxBody<Bytes, std::io::Error>;

impl Gateway {
    /// Binds the listener and builds the client (reading the CA bundle). Logs a warning
    /// when certificates are not verified.
    pub fn bind(
        config: &GatewayConfig,
        routes: Arc<RouteTable>,
        authorization: Arc<dyn UpstreamAuthorization>,
        registry: &Registry,
    ) -> anyhow::Result<Gateway> {
        let names: Vec<&str> = config.routers.iter().map(|r| r.mapping.as_str()).collect();
        let metrics = GatewayMetrics::new(registry, &names);
        let ca_pem = match &config.ca_file {
            Some(path) => Some(
                std::fs::read(path)
                    .with_context(|| format!("--scrape-ca-file: cannot read {}", path.display()))?,
            ),
            None => None,
        };
        if config.insecure_skip_verify {
            tracing::warn!(
                "--scrape-insecure-skip-verify: upstream certificates are NOT verified; \
                 anyone on the path can read every scrape and its authorization (tests only)"
            );
        }
        anyhow::ensure!(
            config.routers.len() == routes.mappings(),
            "the gateway has routers for {} mappings, its route table {}",
            config.routers.len(),
            routes.mappings()
        );
        let mut pins: Vec<Option<Pin>> = Vec::new();
        let mut upstreams = Vec::with_capacity(config.routers.len());
        for router in &config.routers {
            match &router.pin {
                Some(pin) => tracing::info!(
                    mapping = %router.mapping,
                    router = %pin,
                    "scrapes of the mapping connect to its router"
                ),
                None => tracing::info!(
                    mapping = %router.mapping,
                    "no --scrape-router for the mapping: its scrapes connect to the addresses \
                     their route hosts resolve to (loopback and link-local refused); pinning \
                     to the router is recommended"
                ),
            }
            let upstream = match pins.iter().position(|pin| *pin == router.pin) {
                Some(upstream) => upstream,
                None => {
                    pins.push(router.pin.clone());
                    pins.len() - 1
                }
            };
            upstreams.push((router.mapping.as_str().into(), upstream));
        }
        let pool = Pool::new(PoolSettings {
            upstreams: pins,
            allow: config.allow_cidrs.clone(),
            port: config.upstream_port,
            tls: Tls {
                ca_pem,
                insecure_skip_verify: config.insecure_skip_verify,
            },
            connect_timeout: config.connect_timeout,
            max_idle: config.pool_max_idle,
            idle_timeout: config.pool_idle_timeout,
            connects: metrics.connects.clone(),
            idle: metrics.idle_connections.clone(),
        })
        .context("--scrape-ca-file: cannot build the upstream TLS client")?;
        let listener = std::net::TcpListener::bind(config.listen)
            .with_context(|| format!("cannot listen on {} (--scrape-listen)", config.listen))?;
        listener.set_nonblocking(true)?;
        Ok(Gateway {
            listener,
            shared: Arc::new(Shared {
                routes,
                pool,
                upstreams,
                authorization,
                metrics,
                max_body_bytes: config.max_body_bytes,
                default_timeout: config.default_timeout,
                client_idle_timeout: config.client_idle_timeout,
            }),
        })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Accepts connections until the runtime stops (call inside a tokio runtime).
    pub fn spawn(self) -> anyhow::Result<tokio::task::JoinHandle<()>> {
        let listener = tokio::net::TcpListener::from_std(self.listener)?;
        let shared = self.shared;
        tokio::spawn(shared.pool.clone().expire_idle());
        Ok(tokio::spawn(async move {
            loop {
                let (stream, _) = match listener.accept().await {
                    Ok(accepted) => accepted,
                    Err(e) => {
                        // EMFILE and the like: wait a little instead of spinning.
                        tracing::warn!(error = %e, "gateway: accept failed");
                        tokio::time::sleep(Duration::from_millis(50)).await;
                        continue;
                    }
                };
                let _ = stream.set_nodelay(true);
                let shared = shared.clone();
                let idle_timeout = shared.client_idle_timeout;
                tokio::spawn(async move {
                    let service = service_fn(move |req| {
                        let shared = shared.clone();
                        async move { Ok::<_, Infallible>(handle(&shared, req).await) }
                    });
                    if let Err(e) = http1::Builder::new()
                        .timer(TokioTimer::new())
                        .header_read_timeout(idle_timeout)
                        .serve_connection(TokioIo::new(stream), service)
                        .await
                    {
                        tracing::debug!(error = %e, "gateway: connection ended with an error");
                    }
                });
            }
        }))
    }
}

fn text(status: StatusCode, message: String) -> Response<Body> {
    let mut response = Response::new(
        Full::new(Bytes::from(message + "\n"))
            .map_err(|never| match never {})
            .boxed(),
    );
    *response.status_mut() = status;
    response.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("text/plain; charset=utf-8"),
    );
    response
}

/// A 403, counted for `mapping` (`""`: decided before the scrape matched a target).
fn refuse(shared: &Shared, refusal: &Refusal, mapping: &str) -> Response<Body> {
    shared.metrics.refused(refusal, mapping);
    tracing::debug!(
        reason = refusal.reason(),
        "gateway: refused a scrape: {refusal}"
    );
    text(StatusCode::FORBIDDEN, format!("sd-sync gateway: {refusal}"))
}

fn fail(
    shared: &Shared,
    mapping: &str,
    status: StatusCode,
    reason: &'static str,
    detail: &str,
) -> Response<Body> {
    shared.metrics.failed(reason, mapping);
    tracing::debug!(reason, error = detail, "gateway: upstream failed");
    text(
        status,
        format!("sd-sync gateway: upstream {reason}: {detail}"),
    )
}

/// The scrape timeout Prometheus asked for (seconds, fractional), else the default;
/// at most 10 minutes.
fn scrape_timeout(headers: &HeaderMap, default: Duration) -> Duration {
    headers
        .get(&SCRAPE_TIMEOUT)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.trim().parse::<f64>().ok())
        .filter(|s| s.is_finite() && *s > 0.0)
        .map_or(default, |s| Duration::from_secs_f64(s.min(600.0)))
}

/// Prometheus' headers that go upstream; nothing else does (its `Authorization` and
/// `Proxy-Authorization` in particular stay here).
const FORWARDED_REQUEST_HEADERS: [HeaderName; 4] = [
    header::ACCEPT,
    header::ACCEPT_ENCODING,
    header::USER_AGENT,
    SCRAPE_TIMEOUT,
];

/// Hop-by-hop headers (RFC 9110 section 7.6.1), never passed on.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    matches!(
        name.as_str(),
        "connection"
            | "keep-alive"
            | "proxy-authenticate"
            | "proxy-authorization"
            | "proxy-connection"
            | "te"
            | "trailer"
            | "transfer-encoding"
            | "upgrade"
    )
}

async fn handle(shared: &Shared, req: Request<Incoming>) -> Response<Body> {
    let scrape = match request::parse(req.method(), req.uri()) {
        Ok(scrape) => scrape,
        Err(refusal) => return refuse(shared, &refusal, ""),
    };
    let (index_of_mapping, mapping, upstream) = match shared.routes.check(&scrape) {
        Ok(index) => {
            let (name, upstream) = &shared.upstreams[index];
            (index, &**name, *upstream)
        }
        Err(refusal) => return refuse(shared, &refusal, ""),
    };
    let mut authorization = match shared.authorization.authorization(&scrape.app_guid) {
        Ok(value) => value,
        Err(refusal) => return refuse(shared, &refusal, mapping),
    };
    authorization.set_sensitive(true);
    let instance = HeaderValue::from_str(&format!("{}:{}", scrape.app_guid, scrape.index))
        .expect("a checked guid and a number");
    let timeout = scrape_timeout(req.headers(), shared.default_timeout);
    let deadline = Instant::now() + timeout;

    let mut headers = HeaderMap::with_capacity(8);
    for name in &FORWARDED_REQUEST_HEADERS {
        for value in req.headers().get_all(name) {
            headers.append(name.clone(), value.clone());
        }
    }
    headers.insert(CF_APP_INSTANCE, instance);
    headers.insert(header::AUTHORIZATION, authorization);
    let host = scrape.host.clone().into_owned();
    let Ok(host_value) = HeaderValue::from_str(&host) else {
        return refuse(shared, &Refusal::BadHost, mapping);
    };
    headers.insert(header::HOST, host_value);
    let path = scrape.path.to_owned();
    let app_guid = scrape.app_guid.clone().into_owned();
    let index = scrape.index;
    drop(req);

    shared.metrics.in_flight.inc();
    let _in_flight = InFlight(&shared.metrics);
    let started = Instant::now();
    let request = || {
        let mut request = Request::new(Empty::new());
        *request.uri_mut() = http::Uri::try_from(path.as_str()).unwrap_or_default();
        *request.headers_mut() = headers.clone();
        request
    };
    // Boxed: hyper keeps room for a connection's request future while the connection is
    // idle, and the connecting part is most of its size (the TLS handshake's state).
    let sent = tokio::time::timeout_at(
        deadline,
        Box::pin(shared.pool.send(upstream, &host, request)),
    )
    .await;
    let (upstream, lease) = match sent {
        Err(_) => {
            return fail(
                shared,
                mapping,
                StatusCode::GATEWAY_TIMEOUT,
                "timeout",
                &format!(
                    "no response within the scrape timeout of {}s",
                    timeout.as_secs_f64()
                ),
            );
        }
        Ok(Err(Failure::Refused(refusal))) => return refuse(shared, &refusal, mapping),
        Ok(Err(failure)) => {
            let (status, reason, detail) = match failure {
                Failure::Timeout(detail) => (StatusCode::GATEWAY_TIMEOUT, "timeout", detail),
                Failure::Connect(detail) => (StatusCode::BAD_GATEWAY, "connect", detail),
                Failure::Tls(detail) => (StatusCode::BAD_GATEWAY, "tls", detail),
                Failure::Protocol(detail) => (StatusCode::BAD_GATEWAY, "protocol", detail),
                Failure::Refused(_) => unreachable!("answered above"),
            };
            return fail(shared, mapping, status, reason, &detail);
        }
        Ok(Ok(answered)) => answered,
    };
    shared.metrics.upstream_duration[index_of_mapping].observe(started.elapsed().as_secs_f64());
    if upstream
        .headers()
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<u64>().ok())
        .is_some_and(|length| length > shared.max_body_bytes)
    {
        return fail(
            shared,
            mapping,
            StatusCode::BAD_GATEWAY,
            "body_too_large",
            &format!("the body is larger than {} bytes", shared.max_body_bytes),
        );
    }
    shared.metrics.forwarded[index_of_mapping].inc();
    tracing::debug!(
        mapping,
        host,
        app_guid,
        instance_index = index,
        status = upstream.status().as_u16(),
        "gateway: forwarded a scrape"
    );

    let mut response = Response::builder().status(upstream.status());
    if let Some(headers) = response.headers_mut() {
        let connection_named: Vec<HeaderName> = upstream
            .headers()
            .get_all(header::CONNECTION)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(|v| v.split(','))
            .filter_map(|name| HeaderName::from_bytes(name.trim().as_bytes()).ok())
            .collect();
        for (name, value) in upstream.headers() {
            if !is_hop_by_hop(name) && !connection_named.contains(name) {
                headers.append(name.clone(), value.clone());
            }
        }
    }
    let body = BodyStream {
        upstream: upstream.into_body(),
        lease: Some(lease),
        deadline,
        sent: 0,
        max: shared.max_body_bytes,
        metrics: shared.metrics.clone(),
        mapping: mapping.into(),
    };
    let stream = futures::stream::unfold(Some(body), |body| async move {
        let mut body = body?;
        match body.next().await {
            Ok(Some(chunk)) => Some((Ok(Frame::data(chunk)), Some(body))),
            Ok(None) => None,
            Err(e) => Some((Err(e), None)),
        }
    });
    response
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .unwrap_or_else(|e| text(StatusCode::BAD_GATEWAY, format!("sd-sync gateway: {e}")))
}

/// Decrements the in-flight gauge when the request's handling ends (the body may still
/// stream: the scrape's connection is then back in, or on its way to, the pool).
struct InFlight<'a>(&'a GatewayMetrics);

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.0.in_flight.dec();
    }
}

/// The upstream body, chunk by chunk, within the scrape's deadline and the size cap; its
/// end puts the connection back in the pool (a body cut short closes it).
struct BodyStream {
    upstream: Incoming,
    lease: Option<Lease>,
    deadline: Instant,
    sent: u64,
    max: u64,
    metrics: GatewayMetrics,
    mapping: Box<str>,
}

impl BodyStream {
    /// The next chunk; an error cuts the response (Prometheus sees the scrape fail).
    async fn next(&mut self) -> std::io::Result<Option<Bytes>> {
        let chunk = loop {
            let frame = match tokio::time::timeout_at(self.deadline, self.upstream.frame()).await {
                Err(_) => {
                    self.metrics.failed("timeout", &self.mapping);
                    tracing::debug!("gateway: body cut at the scrape timeout");
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::TimedOut,
                        "the scrape timeout passed",
                    ));
                }
                Ok(Some(Err(e))) => {
                    self.metrics.failed("body_error", &self.mapping);
                    tracing::debug!(error = %gds_service::error_chain(&e), "gateway: body failed");
                    return Err(std::io::Error::other(e));
                }
                Ok(Some(Ok(frame))) => frame,
                Ok(None) => {
                    self.release();
                    return Ok(None);
                }
            };
            // Trailers (a scrape's response has none) are not passed on.
            if let Ok(chunk) = frame.into_data() {
                break chunk;
            }
        };
        self.sent += chunk.len() as u64;
        if self.sent > self.max {
            self.metrics.failed("body_too_large", &self.mapping);
            tracing::debug!(max = self.max, "gateway: body cut at the size cap");
            return Err(std::io::Error::other("the body is larger than the cap"));
        }
        self.metrics.response_bytes.inc_by(chunk.len() as u64);
        // The last chunk of a body of known length: the connection is free now (the
        // server side may never ask for the end of the stream once it sent the length).
        if self.upstream.is_end_stream() {
            self.release();
        }
        Ok(Some(chunk))
    }

    fn release(&mut self) {
        if let Some(lease) = self.lease.take() {
            lease.release();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_scrape_timeout_comes_from_prometheus_else_the_default() {
        let default = Duration::from_secs(10);
        let mut headers = HeaderMap::new();
        assert_eq!(scrape_timeout(&headers, default), default);
        for (value, expected) in [
            ("2.5", Duration::from_millis(2500)),
            ("0.2", Duration::from_millis(200)),
            ("3600", Duration::from_secs(600)),
            ("0", default),
            ("-1", default),
            ("NaN", default),
            ("soon", default),
        ] {
            headers.insert(SCRAPE_TIMEOUT, HeaderValue::from_static(value));
            assert_eq!(scrape_timeout(&headers, default), expected, "{value}");
        }
    }

    #[test]
    fn hop_by_hop_headers_are_recognised() {
        for name in [
            "connection",
            "keep-alive",
            "transfer-encoding",
            "upgrade",
            "te",
        ] {
            assert!(is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
        for name in ["content-encoding", "content-type", "content-length", "vary"] {
            assert!(!is_hop_by_hop(&HeaderName::from_static(name)), "{name}");
        }
    }
}
