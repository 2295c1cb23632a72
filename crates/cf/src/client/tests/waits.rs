//! The request loop's waits on paused tokio time: a `429`'s `Retry-After`, the back-off
//! after a `5xx`, the pause when the Cloud Controller reports no rate-limit headroom, and
//! a caller's deadline. An in-process Cloud Controller answers each `/v3` request with
//! the first scripted reply for its path (and any token request); the clock moves only when every task waits on a
//! timer, so a 30 s `Retry-After` takes no real time and the time it took is exact.
//! The same rules against the real simulator binary, in real time, are in
//! `tests/integration/cf_client.rs`.

use std::collections::VecDeque;
use std::sync::Arc;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};

use super::*;
use crate::config::UaaCredentials;
use gds_service::Secret;

use crate::CfConfig;

/// One scripted answer to a `/v3` request whose path starts with `path`.
struct Reply {
    path: &'static str,
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

impl Reply {
    /// A list page at `path`: `total` resources, none of them on this page.
    fn page(path: &'static str, total: u64) -> Reply {
        Reply {
            path,
            status: 200,
            headers: Vec::new(),
            body: json!({"pagination": {"total_results": total, "total_pages": 1,
                "next": null}, "resources": []})
            .to_string(),
        }
    }

    fn status(path: &'static str, status: u16) -> Reply {
        Reply {
            path,
            status,
            headers: Vec::new(),
            body: json!({"errors": [{"code": 10000, "title": "CF-Scripted",
                "detail": "scripted"}]})
            .to_string(),
        }
    }

    fn with(mut self, name: &'static str, value: &str) -> Reply {
        self.headers.push((name, value.to_owned()));
        self
    }
}

/// The in-process Cloud Controller (and UAA): the `/v3` replies still to give, and each
/// `/v3` request's path and time (on the test's clock).
#[derive(Clone, Default)]
struct FakeCc {
    script: Arc<Mutex<VecDeque<Reply>>>,
    seen: Arc<Mutex<Vec<(String, Instant)>>>,
}

impl FakeCc {
    /// Serves on a free loopback port; returns a client of it (UAA at the same address,
    /// at most `max_retries` retries).
    async fn start(script: Vec<Reply>, max_retries: u32) -> (FakeCc, CfClient) {
        let fake = FakeCc {
            script: Arc::new(Mutex::new(script.into())),
            ..FakeCc::default()
        };
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url: Url = format!("http://{}/", listener.local_addr().unwrap())
            .parse()
            .unwrap();
        let server = fake.clone();
        tokio::spawn(async move {
            while let Ok((socket, _)) = listener.accept().await {
                tokio::spawn(server.clone().answer(socket));
            }
        });
        let mut config = CfConfig::new(
            url.clone(),
            UaaCredentials::Password {
                client_id: "cf".into(),
                client_secret: Secret::new(""),
                username: "admin".into(),
                password: Secret::new("admin"),
            },
        );
        config.uaa_endpoint = Some(url);
        config.max_retries = max_retries;
        (fake, CfClient::new(config).unwrap())
    }

    /// Reads one request (head and `Content-Length` body) and answers it, closing the
    /// connection.
    async fn answer(self, mut socket: TcpStream) {
        let mut request = Vec::new();
        let mut buf = [0u8; 4096];
        let head_end = loop {
            let n = socket.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed the connection mid-request");
            request.extend_from_slice(&buf[..n]);
            if let Some(i) = request.windows(4).position(|w| w == b"\r\n\r\n") {
                break i + 4;
            }
        };
        let head = String::from_utf8_lossy(&request[..head_end]).to_lowercase();
        let length: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length:"))
            .map_or(0, |v| v.trim().parse().unwrap());
        while request.len() < head_end + length {
            let n = socket.read(&mut buf).await.unwrap();
            request.extend_from_slice(&buf[..n]);
        }
        let target = head
            .split_whitespace()
            .nth(1)
            .unwrap_or_default()
            .to_owned();
        let reply = if head.starts_with("post /oauth/token") {
            let now = now_secs();
            Reply {
                path: "/oauth/token",
                status: 200,
                headers: Vec::new(),
                body: json!({"access_token": crate::token::fake_jwt(now + 3600, now),
                    "token_type": "bearer"})
                .to_string(),
            }
        } else if target.starts_with("/v3/info") {
            // No rate_limits: the limiter is off unless a reply's headers say otherwise.
            Reply {
                path: "/v3/info",
                status: 200,
                headers: Vec::new(),
                body: "{}".into(),
            }
        } else {
            self.seen
                .lock()
                .unwrap()
                .push((target.clone(), Instant::now()));
            let mut script = self.script.lock().unwrap();
            let Some(i) = script.iter().position(|r| target.starts_with(r.path)) else {
                panic!("no scripted reply left for {target}");
            };
            script.remove(i).unwrap()
        };
        let mut response = format!(
            "HTTP/1.1 {} Scripted\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\
             connection: close\r\n",
            reply.status,
            reply.body.len()
        );
        for (name, value) in &reply.headers {
            response.push_str(&format!("{name}: {value}\r\n"));
        }
        response.push_str("\r\n");
        response.push_str(&reply.body);
        socket.write_all(response.as_bytes()).await.unwrap();
        socket.shutdown().await.unwrap();
    }

    /// The time between consecutive `/v3` requests.
    fn gaps(&self) -> Vec<Duration> {
        let seen = self.seen.lock().unwrap();
        seen.windows(2).map(|w| w[1].1 - w[0].1).collect()
    }

    /// How many `/v3` requests had a path starting with `path`.
    fn requests(&self, path: &str) -> usize {
        let seen = self.seen.lock().unwrap();
        seen.iter().filter(|(p, _)| p.starts_with(path)).count()
    }
}

#[tokio::test(start_paused = true)]
async fn a_429_is_waited_out_for_its_retry_after_then_retried() {
    let (cc, client) = FakeCc::start(
        vec![
            Reply::status("/v3/apps", 429).with("retry-after", "30"),
            Reply::page("/v3/apps", 7),
        ],
        4,
    )
    .await;
    assert_eq!(client.visible_app_count().await.unwrap(), 7);
    let gaps = cc.gaps();
    assert_eq!(gaps.len(), 1, "one retry: {gaps:?}");
    // Retry-After is whole seconds: the retry comes 30 s later, not before.
    assert!(
        gaps[0] >= Duration::from_secs(30) && gaps[0] < Duration::from_secs(31),
        "{gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_429_without_retry_after_waits_until_the_rate_limit_resets() {
    let reset = (now_secs() + 20).to_string();
    let (cc, client) = FakeCc::start(
        vec![
            Reply::status("/v3/apps", 429).with("x-ratelimit-reset", &reset),
            Reply::page("/v3/apps", 1),
        ],
        4,
    )
    .await;
    assert_eq!(client.visible_app_count().await.unwrap(), 1);
    let gaps = cc.gaps();
    assert!(
        gaps[0] >= Duration::from_secs(19) && gaps[0] <= Duration::from_secs(20),
        "{gaps:?}"
    );
}

#[tokio::test(start_paused = true)]
async fn a_retry_after_beyond_the_longest_wait_fails_at_once() {
    // The default longest wait is 120 s.
    let (cc, client) = FakeCc::start(
        vec![Reply::status("/v3/apps", 429).with("retry-after", "121")],
        4,
    )
    .await;
    let started = Instant::now();
    let err = client.visible_app_count().await.unwrap_err();
    assert!(
        matches!(err, CfError::RateLimited(wait) if wait == Duration::from_secs(121)),
        "{err}"
    );
    assert_eq!(started.elapsed(), Duration::ZERO, "it waited");
    assert_eq!(cc.requests("/v3/apps"), 1);
}

#[tokio::test(start_paused = true)]
async fn unavailable_answers_are_retried_with_a_growing_backoff_then_surfaced() {
    let (cc, client) =
        FakeCc::start((0..4).map(|_| Reply::status("/v3/apps", 503)).collect(), 3).await;
    let err = client.visible_app_count().await.unwrap_err();
    assert!(matches!(err, CfError::Api { status: 503, .. }), "{err}");
    // Three retries, after 250, 500 and 1000 ms (each with up to 25% jitter).
    let gaps = cc.gaps();
    assert_eq!(gaps.len(), 3, "{gaps:?}");
    for (gap, base) in gaps.iter().zip([250u64, 500, 1000]) {
        let base = Duration::from_millis(base);
        assert!(
            *gap >= base && *gap <= base + base / 4 + Duration::from_millis(1),
            "{gaps:?}"
        );
    }
}

#[tokio::test(start_paused = true)]
async fn a_request_after_an_answer_with_no_headroom_left_waits_first() {
    let (cc, client) = FakeCc::start(
        vec![
            Reply::page("/v3/apps", 1).with("x-ratelimit-remaining", "0"),
            Reply::page("/v3/apps", 2).with("x-ratelimit-remaining", "50"),
            Reply::page("/v3/apps", 3),
        ],
        4,
    )
    .await;
    for _ in 0..3 {
        client.visible_app_count().await.unwrap();
    }
    let gaps = cc.gaps();
    assert!(
        gaps[0] >= LOW_HEADROOM_PAUSE && gaps[0] < LOW_HEADROOM_PAUSE * 2,
        "{gaps:?}"
    );
    assert!(gaps[1] < LOW_HEADROOM_PAUSE, "headroom came back: {gaps:?}");
}

#[tokio::test(start_paused = true)]
async fn by_a_deadline_a_retry_after_that_ends_too_late_fails_at_once() {
    let (cc, client) = FakeCc::start(
        vec![
            Reply::status("/v3/apps", 429).with("retry-after", "10"),
            Reply::page("/v3/processes", 0),
            Reply::page("/v3/routes", 0),
        ],
        4,
    )
    .await;
    let guid = AppGuid::parse(A).unwrap();
    let started = Instant::now();
    let err = client
        .app_info_by(&guid, Some(started + Duration::from_secs(5)))
        .await
        .unwrap_err();
    assert!(matches!(err, CfError::RateLimited(_)), "{err}");
    assert_eq!(started.elapsed(), Duration::ZERO, "it waited");
    assert_eq!(cc.requests("/v3/apps/"), 1);
}
