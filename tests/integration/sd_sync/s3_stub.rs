//! A minimal in-memory S3 for benchmarks: `ListObjectsV2` (prefix, delimiter, start-after,
//! pages of at most 1,000 keys) and `GetObject` (with `If-None-Match`: `304`), path-style,
//! no authentication, with a configurable latency per request, counting the requests by
//! kind (what they cost at S3's prices). Objects are written
//! with [`S3Stub::put`] and [`S3Stub::remove`] (there is no `PutObject`).
//!
//! Why: moto serves about 250 reads per second on this machine and lists 10,000 keys in
//! seconds, so against moto a benchmark measures moto. With latencies like S3's within a
//! region, the stub shows what sd-sync itself costs.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use gds_store::ETag;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// Per-request latencies.
#[derive(Clone, Copy, Debug)]
pub struct Latency {
    pub list_page: Duration,
    pub get: Duration,
}

/// The running stub, stopped on drop.
pub struct S3Stub {
    pub url: String,
    /// `ListObjectsV2` requests served so far.
    pub list_requests: Arc<AtomicU64>,
    /// Those of them that started after a key (`start-after`, no continuation token): the
    /// later ranges of a listing in ranges.
    pub ranged_requests: Arc<AtomicU64>,
    /// `GetObject` requests served so far, `304`s included.
    pub get_requests: Arc<AtomicU64>,
    /// Those of them that had an `If-None-Match`.
    pub conditional_gets: Arc<AtomicU64>,
    /// Those of them answered `304 Not Modified`.
    pub not_modified: Arc<AtomicU64>,
    bucket: Arc<Bucket>,
    acceptor: JoinHandle<()>,
}

impl Drop for S3Stub {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

struct Bucket {
    name: String,
    /// key -> (content, quoted ETag)
    objects: RwLock<BTreeMap<String, (Vec<u8>, String)>>,
    latency: Latency,
    list_requests: Arc<AtomicU64>,
    ranged_requests: Arc<AtomicU64>,
    get_requests: Arc<AtomicU64>,
    conditional_gets: Arc<AtomicU64>,
    not_modified: Arc<AtomicU64>,
}

impl S3Stub {
    /// Serves `objects` (key -> content) in bucket `name`.
    pub async fn start(name: &str, objects: BTreeMap<String, String>, latency: Latency) -> S3Stub {
        let list_requests = Arc::new(AtomicU64::new(0));
        let ranged_requests = Arc::new(AtomicU64::new(0));
        let get_requests = Arc::new(AtomicU64::new(0));
        let conditional_gets = Arc::new(AtomicU64::new(0));
        let not_modified = Arc::new(AtomicU64::new(0));
        let bucket = Arc::new(Bucket {
            name: name.to_owned(),
            objects: RwLock::new(
                objects
                    .into_iter()
                    .map(|(key, content)| (key, stored(content)))
                    .collect(),
            ),
            latency,
            list_requests: list_requests.clone(),
            ranged_requests: ranged_requests.clone(),
            get_requests: get_requests.clone(),
            conditional_gets: conditional_gets.clone(),
            not_modified: not_modified.clone(),
        });
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let served = bucket.clone();
        let acceptor = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                tokio::spawn(serve_connection(stream, served.clone()));
            }
        });
        S3Stub {
            url,
            list_requests,
            ranged_requests,
            get_requests,
            conditional_gets,
            not_modified,
            bucket,
            acceptor,
        }
    }

    /// Creates or replaces object `key`: listings and reads that start from now on see it.
    pub fn put(&self, key: &str, content: &str) {
        let mut objects = self.bucket.objects.write().unwrap();
        objects.insert(key.to_owned(), stored(content.to_owned()));
    }

    /// Removes object `key`.
    pub fn remove(&self, key: &str) {
        self.bucket.objects.write().unwrap().remove(key);
    }
}

fn stored(content: String) -> (Vec<u8>, String) {
    let etag = format!("\"{}\"", ETag::of(content.as_bytes()));
    (content.into_bytes(), etag)
}

/// HTTP/1.1 with keep-alive; requests without bodies (the SDK's GETs) only.
async fn serve_connection(mut stream: TcpStream, bucket: Arc<Bucket>) {
    let mut buffer = Vec::new();
    let mut chunk = [0u8; 8192];
    loop {
        let head_end = loop {
            if let Some(end) = buffer.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            match stream.read(&mut chunk).await {
                Ok(0) | Err(_) => return,
                Ok(n) => buffer.extend_from_slice(&chunk[..n]),
            }
        };
        let head = String::from_utf8_lossy(&buffer[..head_end]).into_owned();
        buffer.drain(..head_end);
        let target = head.split_whitespace().nth(1).unwrap_or("/").to_owned();
        let if_none_match = head.lines().find_map(|line| {
            let (name, value) = line.split_once(':')?;
            name.trim()
                .eq_ignore_ascii_case("if-none-match")
                .then(|| value.trim().to_owned())
        });
        let (status, content_type, etag, body, delay) =
            respond(&bucket, &target, if_none_match.as_deref());
        tokio::time::sleep(delay).await;
        let mut response = format!(
            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: {content_type}\r\n",
            body.len()
        );
        if let Some(etag) = etag {
            response.push_str(&format!("ETag: {etag}\r\n"));
        }
        response.push_str("\r\n");
        let mut bytes = response.into_bytes();
        bytes.extend_from_slice(&body);
        if stream.write_all(&bytes).await.is_err() {
            return;
        }
    }
}

fn respond(
    bucket: &Bucket,
    target: &str,
    if_none_match: Option<&str>,
) -> (
    &'static str,
    &'static str,
    Option<String>,
    Vec<u8>,
    Duration,
) {
    let (path, query) = target.split_once('?').unwrap_or((target, ""));
    let path = percent_decode(path);
    let params: BTreeMap<String, String> = query
        .split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (percent_decode(k), percent_decode(v))
        })
        .collect();
    let bucket_path = format!("/{}", bucket.name);
    if (path == bucket_path || path == format!("{bucket_path}/"))
        && params.get("list-type").map(String::as_str) == Some("2")
    {
        bucket.list_requests.fetch_add(1, Ordering::Relaxed);
        if params.contains_key("start-after") && !params.contains_key("continuation-token") {
            bucket.ranged_requests.fetch_add(1, Ordering::Relaxed);
        }
        let body = list(bucket, &params);
        return (
            "200 OK",
            "application/xml",
            None,
            body,
            bucket.latency.list_page,
        );
    }
    bucket.get_requests.fetch_add(1, Ordering::Relaxed);
    if if_none_match.is_some() {
        bucket.conditional_gets.fetch_add(1, Ordering::Relaxed);
    }
    if let Some(key) = path.strip_prefix(&format!("{bucket_path}/"))
        && let Some((content, etag)) = bucket.objects.read().unwrap().get(key)
    {
        if if_none_match == Some(etag.as_str()) {
            bucket.not_modified.fetch_add(1, Ordering::Relaxed);
            return (
                "304 Not Modified",
                "application/json",
                Some(etag.clone()),
                Vec::new(),
                bucket.latency.get,
            );
        }
        return (
            "200 OK",
            "application/json",
            Some(etag.clone()),
            content.clone(),
            bucket.latency.get,
        );
    }
    let error = "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<Error><Code>NoSuchKey</Code>\
                 <Message>The specified key does not exist.</Message></Error>";
    (
        "404 Not Found",
        "application/xml",
        None,
        error.as_bytes().to_vec(),
        bucket.latency.get,
    )
}

fn list(bucket: &Bucket, params: &BTreeMap<String, String>) -> Vec<u8> {
    let prefix = params.get("prefix").cloned().unwrap_or_default();
    let delimiter = params.get("delimiter").cloned().unwrap_or_default();
    let max_keys: usize = params
        .get("max-keys")
        .and_then(|m| m.parse().ok())
        .unwrap_or(1000)
        .min(1000);
    // The continuation token is the last key returned; as on S3, it wins over start-after.
    let start_after = params
        .get("continuation-token")
        .or_else(|| params.get("start-after"))
        .cloned()
        .unwrap_or_default();
    let mut contents = String::new();
    let mut count = 0;
    let mut last = None;
    let mut truncated = false;
    let objects = bucket.objects.read().unwrap();
    let range = objects.range::<String, _>((
        std::ops::Bound::Excluded(start_after.clone()),
        std::ops::Bound::Unbounded,
    ));
    for (key, (content, etag)) in range {
        if !key.starts_with(&prefix) {
            continue;
        }
        if !delimiter.is_empty() && key[prefix.len()..].contains(delimiter.as_str()) {
            continue; // the benchmark has no "subdirectories"; they would be CommonPrefixes
        }
        if count == max_keys {
            truncated = true;
            break;
        }
        contents.push_str(&format!(
            "<Contents><Key>{key}</Key><LastModified>2026-01-01T00:00:00.000Z</LastModified>\
             <ETag>{}</ETag><Size>{}</Size><StorageClass>STANDARD</StorageClass></Contents>",
            etag.replace('"', "&quot;"),
            content.len()
        ));
        count += 1;
        last = Some(key.clone());
    }
    let next = match (truncated, last) {
        (true, Some(last)) => format!("<NextContinuationToken>{last}</NextContinuationToken>"),
        _ => String::new(),
    };
    format!(
        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n<ListBucketResult \
         xmlns=\"http://s3.amazonaws.com/doc/2006-03-01/\"><Name>{}</Name><Prefix>{prefix}</Prefix>\
         <Delimiter>{delimiter}</Delimiter><KeyCount>{count}</KeyCount><MaxKeys>{max_keys}</MaxKeys>\
         <IsTruncated>{truncated}</IsTruncated>{next}{contents}</ListBucketResult>",
        bucket.name
    )
    .into_bytes()
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%'
            && i + 2 < bytes.len()
            && let Ok(byte) = u8::from_str_radix(&text[i + 1..i + 3], 16)
        {
            out.push(byte);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}
