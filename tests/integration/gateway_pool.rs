//! The scrape gateway's upstream connections (`sd-sync/src/gateway/pool.rs`), counted
//! where they arrive: a TLS router of this test's own (hyper over tokio-rustls) that
//! records the SNI each connection was opened with and the `Host` of each request on it,
//! and can answer 421 (Misdirected Request) when they differ, as some routers do.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::Full;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::gateway::{GatewaySdSync, scrape_target_file, start_gateway};
use crate::sd_sync::{Bucket, eventually};
use crate::tls::TestPki;

/// A TLS router: counts connections, records `(connection number, SNI, Host)` per
/// request, answers 421 to a `Host` other than the SNI when strict, after `delay_ms`;
/// its TLS handshakes take `handshake_delay_ms` more.
struct Router {
    addr: SocketAddr,
    connections: Arc<AtomicUsize>,
    requests: Arc<Mutex<Vec<(usize, String, String)>>>,
    strict: Arc<AtomicBool>,
    delay_ms: Arc<AtomicU64>,
    handshake_delay_ms: Arc<AtomicU64>,
    /// Per connection: the task serving it (aborted to close it).
    serving: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl Router {
    async fn start(pki: &TestPki) -> Router {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let tls = TlsAcceptor::from(Arc::new(pki.server_config()));
        let connections = Arc::new(AtomicUsize::new(0));
        let requests: Arc<Mutex<Vec<(usize, String, String)>>> = Arc::default();
        let strict = Arc::new(AtomicBool::new(false));
        let delay_ms = Arc::new(AtomicU64::new(0));
        let handshake_delay_ms = Arc::new(AtomicU64::new(0));
        let serving: Arc<Mutex<Vec<JoinHandle<()>>>> = Arc::default();
        let acceptor = tokio::spawn({
            let (connections, requests, strict, delay_ms, handshake_delay_ms, serving) = (
                connections.clone(),
                requests.clone(),
                strict.clone(),
                delay_ms.clone(),
                handshake_delay_ms.clone(),
                serving.clone(),
            );
            async move {
                loop {
                    let Ok((tcp, _)) = listener.accept().await else {
                        continue;
                    };
                    let number = connections.fetch_add(1, Ordering::SeqCst) + 1;
                    let (tls, requests, strict, delay_ms) = (
                        tls.clone(),
                        requests.clone(),
                        strict.clone(),
                        delay_ms.clone(),
                    );
                    let handshake_delay =
                        Duration::from_millis(handshake_delay_ms.load(Ordering::SeqCst));
                    let task = tokio::spawn(async move {
                        tokio::time::sleep(handshake_delay).await;
                        let Ok(stream) = tls.accept(tcp).await else {
                            return;
                        };
                        let sni = stream.get_ref().1.server_name().unwrap_or("").to_owned();
                        let service = service_fn(move |req: Request<hyper::body::Incoming>| {
                            let host = req
                                .headers()
                                .get("host")
                                .and_then(|v| v.to_str().ok())
                                .unwrap_or("")
                                .to_owned();
                            requests
                                .lock()
                                .unwrap()
                                .push((number, sni.clone(), host.clone()));
                            let status = if strict.load(Ordering::SeqCst) && host != sni {
                                421
                            } else {
                                200
                            };
                            let delay = Duration::from_millis(delay_ms.load(Ordering::SeqCst));
                            async move {
                                tokio::time::sleep(delay).await;
                                Ok::<_, Infallible>(
                                    Response::builder()
                                        .status(status)
                                        .body(Full::new(Bytes::from(format!("up 1 # {host}\n"))))
                                        .unwrap(),
                                )
                            }
                        });
                        let _ = http1::Builder::new()
                            .serve_connection(TokioIo::new(stream), service)
                            .await;
                    });
                    serving.lock().unwrap().push(task);
                }
            }
        });
        Router {
            addr,
            connections,
            requests,
            strict,
            delay_ms,
            handshake_delay_ms,
            serving,
            acceptor,
        }
    }

    fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    fn requests(&self) -> Vec<(usize, String, String)> {
        self.requests.lock().unwrap().clone()
    }

    /// Closes every connection (as a router does with idle ones).
    fn close_connections(&self) {
        for task in self.serving.lock().unwrap().drain(..) {
            task.abort();
        }
    }
}

impl Drop for Router {
    fn drop(&mut self) {
        self.acceptor.abort();
        self.close_connections();
    }
}

/// `app-N.apps.example.com` with one instance of app `aaaaaaaa-0000-4000-8000-00000000000N`.
fn app(n: usize) -> (String, String) {
    (
        format!("app-{n}.apps.example.com"),
        format!("aaaaaaaa-0000-4000-8000-{n:012}"),
    )
}

/// A bucket with `apps` apps (one instance each) and a gateway pinned to `router`.
async fn gateway_for(
    apps: usize,
    router: &Router,
    pki: &TestPki,
    extra: &[&str],
) -> (Bucket, GatewaySdSync) {
    let bucket = Bucket::new().await;
    for n in 1..=apps {
        let (host, guid) = app(n);
        bucket
            .put(
                &format!("active/{guid}.json"),
                &scrape_target_file(&host, &guid, 1, None),
            )
            .await;
    }
    let mut args = vec![
        "--scrape-router".to_owned(),
        router.addr.to_string(),
        "--scrape-ca-file".to_owned(),
        pki.ca_file.display().to_string(),
    ];
    args.extend(extra.iter().map(|a| a.to_string()));
    let gateway = start_gateway(&bucket, &args, &[], None).await;
    gateway.wait_for_targets(apps as u64).await;
    (bucket, gateway)
}

/// Scrapes app `n` through the gateway: the status.
async fn scrape(gateway: &GatewaySdSync, n: usize) -> u16 {
    let (host, guid) = app(n);
    let response = gateway.scrape(&host, "/metrics", &guid, 0, &[]).await;
    let status = response.status().as_u16();
    let body = response.text().await.unwrap();
    if status == 200 {
        assert_eq!(body, format!("up 1 # {host}\n"));
    }
    status
}

#[tokio::test]
async fn one_connection_to_the_router_carries_every_host_its_certificate_covers() {
    let pki = TestPki::platform();
    let router = Router::start(&pki).await;
    let (_bucket, gateway) = gateway_for(5, &router, &pki, &[]).await;

    for round in 0..2 {
        for n in 1..=5 {
            assert_eq!(scrape(&gateway, n).await, 200, "round {round}, app {n}");
        }
    }
    // One connection, opened for the first host; each request with its own Host.
    assert_eq!(router.connections(), 1);
    let requests = router.requests();
    assert_eq!(requests.len(), 10);
    for (i, (connection, sni, host)) in requests.iter().enumerate() {
        assert_eq!(*connection, 1);
        assert_eq!(sni, "app-1.apps.example.com");
        assert_eq!(*host, app(i % 5 + 1).0);
    }
    assert_eq!(
        gateway
            .sd_sync
            .metric("sd_sync_gateway_upstream_connections_total")
            .await,
        1.0
    );
    assert_eq!(
        gateway
            .sd_sync
            .metric("sd_sync_gateway_upstream_connections_idle")
            .await,
        1.0
    );

    // The router closes it: the next scrape opens another, and succeeds.
    router.close_connections();
    eventually(
        "the gateway sees its idle connection closed",
        Duration::from_secs(5),
        async || scrape(&gateway, 3).await == 200,
    )
    .await;
    assert_eq!(router.connections(), 2);
    assert_eq!(router.requests().last().unwrap().0, 2);
}

#[tokio::test]
async fn a_router_that_answers_421_to_a_shared_connection_gets_each_host_its_own() {
    let pki = TestPki::platform();
    let router = Router::start(&pki).await;
    router.strict.store(true, Ordering::SeqCst);
    let (_bucket, gateway) = gateway_for(2, &router, &pki, &[]).await;

    // app-1: a new connection. app-2: tried on app-1's (421), then on its own; Prometheus
    // sees only the 200.
    assert_eq!(scrape(&gateway, 1).await, 200);
    assert_eq!(scrape(&gateway, 2).await, 200);
    // From then on each host's scrapes go on a connection opened for it.
    for _ in 0..3 {
        assert_eq!(scrape(&gateway, 1).await, 200);
        assert_eq!(scrape(&gateway, 2).await, 200);
    }
    let requests = router.requests();
    let misdirected: Vec<_> = requests
        .iter()
        .filter(|(_, sni, host)| sni != host)
        .collect();
    assert_eq!(misdirected.len(), 1, "{requests:?}");
    assert_eq!(requests.len(), 9, "{requests:?}");
    // app-1's first connection was dropped with the 421: app-1 got a second one.
    assert_eq!(router.connections(), 3, "{requests:?}");
    assert_eq!(
        gateway.requests("forwarded", "").await,
        8.0,
        "each scrape counted once"
    );
}

#[tokio::test]
async fn the_pool_keeps_at_most_its_idle_limit_and_closes_idle_connections_after_the_timeout() {
    let pki = TestPki::platform();
    let router = Router::start(&pki).await;
    let (_bucket, gateway) = gateway_for(
        6,
        &router,
        &pki,
        &[
            "--scrape-pool-max-idle",
            "2",
            "--scrape-pool-idle-timeout",
            "2s",
        ],
    )
    .await;
    let idle = async || {
        gateway
            .sd_sync
            .metric("sd_sync_gateway_upstream_connections_idle")
            .await
    };

    // Six slow scrapes at once: six connections (none idle to share); two stay.
    router.delay_ms.store(500, Ordering::SeqCst);
    let statuses = futures::future::join_all((1..=6).map(|n| scrape(&gateway, n))).await;
    assert_eq!(statuses, vec![200; 6]);
    assert_eq!(router.connections(), 6);
    assert_eq!(idle().await, 2.0);
    // Sequential scrapes reuse them: no new connection.
    router.delay_ms.store(0, Ordering::SeqCst);
    for n in 1..=6 {
        assert_eq!(scrape(&gateway, n).await, 200);
    }
    assert_eq!(router.connections(), 6);
    assert_eq!(idle().await, 2.0);
    // Idle past the timeout: closed, without a scrape to notice.
    eventually(
        "idle connections are closed after the idle timeout",
        Duration::from_secs(10),
        async || idle().await == 0.0,
    )
    .await;
}

#[tokio::test]
async fn a_burst_of_scrapes_waits_for_a_few_connections_instead_of_opening_one_each() {
    let pki = TestPki::platform();
    let router = Router::start(&pki).await;
    let (_bucket, gateway) = gateway_for(10, &router, &pki, &[]).await;

    // Ten scrapes at once, each needing a connection whose handshake takes 300 ms: a
    // connection per scrape would be ten. Four are opened at once; the other scrapes
    // wait for one of them to come back (or for their turn to open one).
    router.handshake_delay_ms.store(300, Ordering::SeqCst);
    let statuses = futures::future::join_all((1..=10).map(|n| scrape(&gateway, n))).await;
    assert_eq!(statuses, vec![200; 10]);
    let opened = router.connections();
    assert!(
        (4..=8).contains(&opened),
        "{opened} connections for 10 scrapes"
    );
}

/// Sends one request for an unregistered host on `stream` (kept alive) and reads its
/// answer: the status.
async fn refused_on(stream: &mut tokio::net::TcpStream) -> u16 {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    stream
        .write_all(b"GET http://nobody.apps.example.com/metrics HTTP/1.1\r\nHost: nobody.apps.example.com\r\n\r\n")
        .await
        .unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8; 1];
        assert_eq!(
            stream.read(&mut byte).await.unwrap(),
            1,
            "closed mid-answer"
        );
        head.push(byte[0]);
    }
    let head = String::from_utf8(head).unwrap();
    let length: usize = head
        .lines()
        .find_map(|l| {
            l.to_ascii_lowercase()
                .strip_prefix("content-length:")
                .map(|v| v.trim().parse().unwrap())
        })
        .expect("a length");
    let mut body = vec![0u8; length];
    stream.read_exact(&mut body).await.unwrap();
    head.split(' ').nth(1).unwrap().parse().unwrap()
}

#[tokio::test]
async fn a_connection_from_prometheus_idle_past_the_client_timeout_is_closed_and_a_busy_one_is_not()
{
    use tokio::io::AsyncReadExt;
    let pki = TestPki::platform();
    let router = Router::start(&pki).await;
    let (_bucket, gateway) =
        gateway_for(1, &router, &pki, &["--scrape-client-idle-timeout", "1s"]).await;

    let mut idle = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    let mut busy = tokio::net::TcpStream::connect(gateway.addr).await.unwrap();
    assert_eq!(refused_on(&mut idle).await, 403);
    // The busy one sends a request every 400 ms for 2.4 s: never idle for 1 s.
    for _ in 0..6 {
        assert_eq!(refused_on(&mut busy).await, 403);
        tokio::time::sleep(Duration::from_millis(400)).await;
    }
    assert_eq!(refused_on(&mut busy).await, 403);
    // The idle one was closed by the gateway: end of stream.
    let mut rest = Vec::new();
    let read = tokio::time::timeout(Duration::from_secs(5), idle.read_to_end(&mut rest))
        .await
        .expect("the idle connection is closed");
    assert!(read.is_ok_and(|n| n == 0), "{rest:?}");
}
