//! Upstream connections: opened to a mapping's router (or to the route host's filtered
//! addresses), TLS with the route host as SNI, HTTP/1.1, and kept idle in one pool for
//! all upstreams, bounded in number.
//!
//! Why not a pool per route host (reqwest's, hyper-util's): with every connection going
//! to one router, a pool per host keeps an idle TLS connection (about 100 KiB) per route
//! host, 10,000 of them for 10,000 apps, and reuses none of them within a scrape interval
//! longer than the idle timeout. Here a connection to a router carries the scrapes of
//! every route host the certificate it presented covers (a gorouter presents one
//! certificate for its apps domain, `*.apps.example.com`), as RFC 9110 section 4.3.3
//! allows; so the pool holds about as many connections as there are scrapes in flight.
//! A router that answers 421 (Misdirected Request) to such a reuse gets the scrape again
//! on a fresh connection with the right SNI (RFC 9110 section 15.5.20), and from then on
//! its connections carry their own host's scrapes only. A mapping without a router never
//! shares connections between hosts: each host's addresses are its own.

use std::collections::{HashMap, VecDeque};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode};
use http_body_util::Empty;
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, SendRequest};
use hyper_util::rt::TokioIo;
use ipnet::IpNet;
use prometheus::{IntCounter, IntGauge};
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::WebPkiSupportedAlgorithms;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{DigitallySignedStruct, SignatureScheme};
use tokio::net::TcpStream;
use tokio::sync::{Notify, Semaphore};
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use super::refusal::Refusal;
use super::upstream::{Pin, allowed};

/// The request a scrape sends upstream (a `GET`: no body).
pub type UpstreamRequest = Request<Empty<Bytes>>;

/// Distinct certificates remembered per router (a router presents one per domain it
/// serves; more than this and further ones are not learned: their hosts' connections
/// are then reused for their own host only).
const MAX_CERTIFICATES: usize = 16;
/// Route hosts remembered per router with the certificate that covers them; past this,
/// the memory is cleared (and relearned, one certificate check per host).
const MAX_HOSTS: usize = 100_000;

/// The most a connection's read buffer grows to. hyper's default (about 400 KiB) is
/// reached by any body of a few hundred KiB, and then kept by the idle connection: 64 of
/// them would hold 25 MiB. Two TLS records per read are plenty on a LAN.
const READ_BUFFER_BYTES: usize = 32 * 1024;

/// Connections being opened at once to a router whose connections carry every host's
/// scrapes. A scrape that finds no idle connection beyond these waits for one to come
/// back or for its turn to open one: at a cold start under load (Prometheus' scrapes
/// arriving at thousands a second), opening one connection per scrape would hold
/// hundreds of handshakes, their memory, and then hundreds of idle connections, where a
/// few connections soon carry every scrape.
const MAX_OPENING_SHARED: usize = 4;
/// The same where each host needs connections of its own (no router, or a router that
/// answered 421): another host's connection coming back is no use to a scrape, so only
/// the handshakes in flight are bounded.
const MAX_OPENING_PER_HOST: usize = 64;

/// How a scrape failed upstream, before its response's head.
#[derive(Debug)]
pub enum Failure {
    /// Not sent: every address the host resolved to is forbidden (a 403).
    Refused(Refusal),
    /// DNS, TCP: `connect`.
    Connect(String),
    /// The TLS handshake failed (certificate, protocol, or the peer hung up in it).
    Tls(String),
    /// The connect and handshake took longer than the connect timeout.
    Timeout(String),
    /// HTTP: the upstream's answer was not one.
    Protocol(String),
}

/// The TLS settings of upstream connections.
#[derive(Clone, Debug, Default)]
pub struct Tls {
    /// PEM bundle replacing the system's roots.
    pub ca_pem: Option<Vec<u8>>,
    pub insecure_skip_verify: bool,
}

/// The pool's settings.
pub struct PoolSettings {
    /// Per upstream (a distinct router, or `None`: the route hosts' own addresses).
    pub upstreams: Vec<Option<Pin>>,
    /// Addresses allowed for an upstream without a pin (when any).
    pub allow: Vec<IpNet>,
    /// The port of an upstream without a pin.
    pub port: u16,
    pub tls: Tls,
    /// TCP connect and TLS handshake, together.
    pub connect_timeout: Duration,
    /// Idle connections kept, all upstreams together; the oldest goes first.
    pub max_idle: usize,
    pub idle_timeout: Duration,
    /// Counts every connection attempted.
    pub connects: IntCounter,
    /// Idle connections now.
    pub idle: IntGauge,
}

/// One upstream: where its connections go, and what its certificates cover.
struct Upstream {
    pin: Option<Pin>,
    /// Whether its connections carry the scrapes of other hosts their certificate covers
    /// (cleared by a 421).
    coalesce: AtomicBool,
    covering: Mutex<Covering>,
    /// Connections being opened (TCP and TLS handshake) at once:
    /// [`MAX_OPENING_SHARED`], or [`MAX_OPENING_PER_HOST`].
    opening: Semaphore,
    /// Wakes one waiting scrape when a connection that carries any covered host's
    /// scrapes is put back in the pool.
    released: Notify,
}

impl Upstream {
    /// Whether its connections may carry other hosts' scrapes: pinned to a router that
    /// has not answered 421.
    fn shares(&self) -> bool {
        self.pin.is_some() && self.coalesce.load(Ordering::Relaxed)
    }

    fn covering(&self) -> MutexGuard<'_, Covering> {
        self.covering
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }
}

/// The certificates an upstream presented, and which host each covers.
#[derive(Default)]
struct Covering {
    certificates: Vec<CertificateDer<'static>>,
    hosts: HashMap<Box<str>, usize>,
}

impl Covering {
    /// The certificate known to cover `host`, checking the known ones against a host
    /// not seen yet (one name check per certificate, once per host).
    fn find(&mut self, host: &str) -> Option<usize> {
        if let Some(n) = self.hosts.get(host) {
            return Some(*n);
        }
        let name = ServerName::try_from(host).ok()?;
        let n = self
            .certificates
            .iter()
            .position(|der| covers(der, &name))?;
        self.remember(host, n);
        Some(n)
    }

    /// Learns the certificate a connection opened for `host` presented: its number, or
    /// `None` when it does not cover `host` (possible only without verification) or no
    /// more certificates are learned.
    fn learn(&mut self, host: &str, der: &CertificateDer<'_>) -> Option<usize> {
        let name = ServerName::try_from(host).ok()?;
        if !covers(der, &name) {
            return None;
        }
        let n = match self.certificates.iter().position(|c| c == der) {
            Some(n) => n,
            None if self.certificates.len() < MAX_CERTIFICATES => {
                self.certificates.push(der.clone().into_owned());
                self.certificates.len() - 1
            }
            None => return None,
        };
        self.remember(host, n);
        Some(n)
    }

    fn remember(&mut self, host: &str, n: usize) {
        if self.hosts.len() >= MAX_HOSTS {
            self.hosts.clear();
        }
        self.hosts.insert(host.into(), n);
    }
}

/// Whether the certificate's names cover `name` (its validity was checked when it was
/// presented).
fn covers(der: &CertificateDer<'_>, name: &ServerName<'_>) -> bool {
    rustls::server::ParsedCertificate::try_from(der)
        .and_then(|cert| rustls::client::verify_server_name(&cert, name))
        .is_ok()
}

/// An open connection, checked out for one scrape or idle in the pool.
struct Connection {
    sender: SendRequest<Empty<Bytes>>,
    upstream: usize,
    /// The host it was opened for (its SNI): it carries this host's scrapes...
    host: Box<str>,
    /// ... and those of every host the upstream's certificate number N covers, when
    /// `Some(N)`.
    certificate: Option<usize>,
}

struct Idle {
    connection: Connection,
    since: Instant,
}

/// Every upstream's connections.
pub struct Pool {
    upstreams: Vec<Upstream>,
    allow: Vec<IpNet>,
    port: u16,
    tls: TlsConnector,
    connect_timeout: Duration,
    max_idle: usize,
    idle_timeout: Duration,
    /// Oldest first.
    idle: Mutex<VecDeque<Idle>>,
    connects: IntCounter,
    idle_gauge: IntGauge,
}

/// A connection carrying a scrape: [`Lease::release`] when its response's body ended
/// puts it back in the pool; dropped, it closes.
pub struct Lease {
    pool: Arc<Pool>,
    connection: Option<Connection>,
}

impl Lease {
    pub fn release(mut self) {
        if let Some(connection) = self.connection.take() {
            self.pool.put(connection);
        }
    }
}

impl Pool {
    pub fn new(settings: PoolSettings) -> anyhow::Result<Arc<Pool>> {
        let tls = TlsConnector::from(Arc::new(client_config(&settings.tls)?));
        Ok(Arc::new(Pool {
            upstreams: settings
                .upstreams
                .into_iter()
                .map(|pin| Upstream {
                    opening: Semaphore::new(if pin.is_some() {
                        MAX_OPENING_SHARED
                    } else {
                        MAX_OPENING_PER_HOST
                    }),
                    pin,
                    coalesce: AtomicBool::new(true),
                    covering: Mutex::default(),
                    released: Notify::new(),
                })
                .collect(),
            allow: settings.allow,
            port: settings.port,
            tls,
            connect_timeout: settings.connect_timeout,
            max_idle: settings.max_idle,
            idle_timeout: settings.idle_timeout,
            idle: Mutex::default(),
            connects: settings.connects,
            idle_gauge: settings.idle,
        }))
    }

    fn idle(&self) -> MutexGuard<'_, VecDeque<Idle>> {
        self.idle
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Sends the scrape of `host` (`request()` builds it; twice when the first try must
    /// be repeated) through `upstream`: on an idle connection that may carry it, else a
    /// new one. A reused connection that turns out closed, or that the router refuses
    /// with 421, is dropped and the scrape sent once more on a new connection.
    pub async fn send(
        self: &Arc<Self>,
        upstream: usize,
        host: &str,
        request: impl Fn() -> UpstreamRequest,
    ) -> Result<(Response<Incoming>, Lease), Failure> {
        let mut again = false;
        loop {
            let (mut connection, reused) = self.connection(upstream, host, again).await?;
            match connection.sender.send_request(request()).await {
                Ok(response)
                    if response.status() == StatusCode::MISDIRECTED_REQUEST
                        && *connection.host != *host =>
                {
                    let up = &self.upstreams[upstream];
                    if up.coalesce.swap(false, Ordering::Relaxed) {
                        up.opening
                            .add_permits(MAX_OPENING_PER_HOST - MAX_OPENING_SHARED);
                        tracing::warn!(
                            router = up.pin.as_ref().map(|p| p.to_string()),
                            "gateway: the router answered 421 to a scrape on a connection opened \
                             for another host its certificate covers; its connections now carry \
                             their own host's scrapes only"
                        );
                    }
                }
                Ok(response) => {
                    return Ok((
                        response,
                        Lease {
                            pool: self.clone(),
                            connection: Some(connection),
                        },
                    ));
                }
                Err(e) if reused && !again => {
                    tracing::debug!(error = %e, "gateway: a pooled connection failed; sending again on a new one");
                }
                Err(e) => return Err(Failure::Protocol(gds_service::error_chain(&e))),
            }
            again = true;
        }
    }

    /// A connection for a scrape of `host` through `upstream` (and whether it was idle
    /// in the pool): an idle one that may carry it; else, within the limit of
    /// connections being opened at once, a new one (a `fresh` one in any case), unless a
    /// connection that may carry it comes back to the pool first. So a burst of scrapes,
    /// at a cold start, waits for a few connections rather than opening one each.
    async fn connection(
        &self,
        upstream: usize,
        host: &str,
        fresh: bool,
    ) -> Result<(Connection, bool), Failure> {
        let up = &self.upstreams[upstream];
        loop {
            // A connection put back wakes one scrape that any shared connection may carry
            // (registered before looking, so that one put back meanwhile is not missed);
            // the others wait for their turn to open one, which first looks again.
            let certificate = if fresh {
                None
            } else {
                self.covering(upstream, host)
            };
            let shared = certificate.is_some();
            let released = up.released.notified();
            tokio::pin!(released);
            if shared {
                released.as_mut().enable();
            }
            if !fresh && let Some(connection) = self.checkout(upstream, host, certificate).await {
                return Ok((connection, true));
            }
            tokio::select! {
                biased;
                () = &mut released, if shared => continue,
                permit = up.opening.acquire() => {
                    let _opening = permit.expect("the semaphore is never closed");
                    // Looked up again: the connections opened while this scrape waited
                    // taught which certificate covers its host.
                    if !fresh
                        && let Some(connection) = self
                            .checkout(upstream, host, self.covering(upstream, host))
                            .await
                    {
                        return Ok((connection, true));
                    }
                    let connection =
                        tokio::time::timeout(self.connect_timeout, self.open(upstream, host))
                            .await
                            .map_err(|_| {
                                Failure::Timeout(format!(
                                    "no connection within the connect timeout of {}s",
                                    self.connect_timeout.as_secs_f64()
                                ))
                            })??;
                    return Ok((connection, false));
                }
            }
        }
    }

    /// The certificate of `upstream` known to cover `host`, when its connections may carry
    /// other hosts' scrapes.
    fn covering(&self, upstream: usize, host: &str) -> Option<usize> {
        let up = &self.upstreams[upstream];
        up.shares().then(|| up.covering().find(host)).flatten()
    }

    /// The most recently used idle connection that may carry the scrape (one opened for
    /// `host`, or one of `certificate`'s, [`Pool::covering`]), ready.
    async fn checkout(
        &self,
        upstream: usize,
        host: &str,
        certificate: Option<usize>,
    ) -> Option<Connection> {
        loop {
            let mut connection = {
                let mut idle = self.idle();
                self.expire(&mut idle);
                let at = idle.iter().rposition(|i| {
                    let c = &i.connection;
                    c.upstream == upstream
                        && (*c.host == *host
                            || certificate.is_some() && c.certificate == certificate)
                })?;
                let taken = idle.remove(at).expect("a found position");
                self.idle_gauge.set(idle.len() as i64);
                taken.connection
            };
            // Ready at once unless the server closed it meanwhile (then: the next one).
            if connection.sender.ready().await.is_ok() {
                return Some(connection);
            }
        }
    }

    /// Drops the idle connections past the idle timeout (the oldest are first).
    fn expire(&self, idle: &mut VecDeque<Idle>) {
        let now = Instant::now();
        while idle
            .front()
            .is_some_and(|i| now.duration_since(i.since) >= self.idle_timeout)
        {
            idle.pop_front();
        }
        self.idle_gauge.set(idle.len() as i64);
    }

    /// Closes the idle connections past the idle timeout every half of it (at most every
    /// second), so that an unused pool empties; runs until the runtime stops.
    pub async fn expire_idle(self: Arc<Self>) {
        let mut ticks = tokio::time::interval((self.idle_timeout / 2).max(Duration::from_secs(1)));
        loop {
            ticks.tick().await;
            let mut idle = self.idle();
            self.expire(&mut idle);
        }
    }

    fn put(&self, connection: Connection) {
        if self.max_idle == 0 || connection.sender.is_closed() {
            return;
        }
        let (upstream, shared) = (connection.upstream, connection.certificate.is_some());
        {
            let mut idle = self.idle();
            idle.push_back(Idle {
                connection,
                since: Instant::now(),
            });
            while idle.len() > self.max_idle {
                idle.pop_front();
            }
            self.idle_gauge.set(idle.len() as i64);
        }
        if shared {
            self.upstreams[upstream].released.notify_one();
        }
    }

    /// A new connection for a scrape of `host` through `upstream`.
    async fn open(&self, upstream: usize, host: &str) -> Result<Connection, Failure> {
        let up = &self.upstreams[upstream];
        let addrs: Vec<SocketAddr> = match &up.pin {
            Some(Pin::Addr(addr)) => vec![*addr],
            Some(Pin::Name(name, port)) => tokio::net::lookup_host((name.as_str(), *port))
                .await
                .map_err(|e| Failure::Connect(format!("cannot resolve the router {name}: {e}")))?
                .collect(),
            None => {
                let addrs: Vec<SocketAddr> = tokio::net::lookup_host((host, self.port))
                    .await
                    .map_err(|e| Failure::Connect(format!("cannot resolve {host}: {e}")))?
                    .filter(|addr| allowed(addr.ip(), &self.allow))
                    .collect();
                if addrs.is_empty() {
                    return Err(Failure::Refused(Refusal::ForbiddenAddress));
                }
                addrs
            }
        };
        let server_name = ServerName::try_from(host.to_owned())
            .map_err(|_| Failure::Protocol(format!("{host:?} is not a server name")))?;
        self.connects.inc();
        let mut last = None;
        let mut tcp = None;
        for addr in &addrs {
            match TcpStream::connect(addr).await {
                Ok(stream) => {
                    tcp = Some(stream);
                    break;
                }
                Err(e) => last = Some(format!("{addr}: {e}")),
            }
        }
        let tcp = tcp.ok_or_else(|| {
            Failure::Connect(last.unwrap_or_else(|| format!("no address for {host}")))
        })?;
        let _ = tcp.set_nodelay(true);
        let tls = self
            .tls
            .connect(server_name, tcp)
            .await
            .map_err(|e| Failure::Tls(gds_service::error_chain(&e)))?;
        let certificate = tls
            .get_ref()
            .1
            .peer_certificates()
            .and_then(|chain| chain.first())
            .map(|der| der.clone().into_owned());
        let (sender, connection) = http1::Builder::new()
            .max_buf_size(READ_BUFFER_BYTES)
            .handshake(TokioIo::new(tls))
            .await
            .map_err(|e| Failure::Protocol(gds_service::error_chain(&e)))?;
        tokio::spawn(async move {
            if let Err(e) = connection.await {
                tracing::debug!(error = %e, "gateway: an upstream connection ended with an error");
            }
        });
        let certificate = certificate
            .filter(|_| up.shares())
            .and_then(|der| up.covering().learn(host, &der));
        Ok(Connection {
            sender,
            upstream,
            host: host.into(),
            certificate,
        })
    }
}

/// The client's TLS configuration: aws-lc-rs, TLS 1.2 and 1.3, HTTP/1.1 by ALPN; roots
/// from the CA bundle, else the system's (rustls-platform-verifier).
fn client_config(tls: &Tls) -> anyhow::Result<rustls::ClientConfig> {
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let builder = rustls::ClientConfig::builder_with_provider(provider.clone())
        .with_safe_default_protocol_versions()?;
    let mut config = if tls.insecure_skip_verify {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(NoVerification(
                provider.signature_verification_algorithms,
            )))
            .with_no_client_auth()
    } else if let Some(pem) = &tls.ca_pem {
        use rustls::pki_types::pem::PemObject;
        let mut roots = rustls::RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(pem) {
            roots.add(cert?)?;
        }
        anyhow::ensure!(!roots.is_empty(), "no certificate in the CA bundle");
        builder.with_root_certificates(roots).with_no_client_auth()
    } else {
        let verifier = rustls_platform_verifier::Verifier::new(provider)?;
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(verifier))
            .with_no_client_auth()
    };
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok(config)
}

/// `--scrape-insecure-skip-verify`: any certificate is accepted (its handshake signature
/// is still checked, so the peer holds the key of the certificate it sent).
#[derive(Debug)]
struct NoVerification(WebPkiSupportedAlgorithms);

impl ServerCertVerifier for NoVerification {
    fn verify_server_cert(
        &self,
        _end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(message, cert, dss, &self.0)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(message, cert, dss, &self.0)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed certificate for `names`.
    fn certificate(names: &[&str]) -> CertificateDer<'static> {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        rcgen::generate_simple_self_signed(names)
            .unwrap()
            .cert
            .der()
            .clone()
    }

    #[test]
    fn a_router_certificate_is_learned_and_shared_by_the_hosts_it_covers_only() {
        let apps = certificate(&["*.apps.example.com", "apps.example.com"]);
        let system = certificate(&["*.system.example.com"]);
        let mut covering = Covering::default();
        assert_eq!(
            covering.find("web.apps.example.com"),
            None,
            "nothing learned yet"
        );
        assert_eq!(covering.learn("web.apps.example.com", &apps), Some(0));
        assert_eq!(covering.find("api.apps.example.com"), Some(0));
        assert_eq!(covering.find("apps.example.com"), Some(0));
        // A wildcard covers one label only.
        assert_eq!(covering.find("a.b.apps.example.com"), None);
        assert_eq!(covering.find("api.system.example.com"), None);
        assert_eq!(covering.learn("api.system.example.com", &system), Some(1));
        assert_eq!(covering.find("uaa.system.example.com"), Some(1));
        // The same certificate again is not a new one.
        assert_eq!(covering.learn("shop.apps.example.com", &apps), Some(0));
        assert_eq!(covering.certificates.len(), 2);
        // A certificate that does not cover the host it was opened for (possible only
        // without verification) is shared with nobody.
        assert_eq!(covering.learn("web.other.example.org", &apps), None);
        assert_eq!(covering.find("web.other.example.org"), None);
    }

    #[test]
    fn certificates_past_the_limit_are_not_learned() {
        let mut covering = Covering::default();
        for n in 0..MAX_CERTIFICATES {
            let host = format!("a.domain-{n}.example.com");
            let cert = certificate(&[&host]);
            assert_eq!(covering.learn(&host, &cert), Some(n));
        }
        let cert = certificate(&["a.one-too-many.example.com"]);
        assert_eq!(covering.learn("a.one-too-many.example.com", &cert), None);
        assert_eq!(covering.certificates.len(), MAX_CERTIFICATES);
    }
}
