//! S3 credentials from the AWS SDK's default chain: an sd-sync without static keys on an
//! "EC2 instance" whose metadata service is a local stand-in of IMDSv2, reached through
//! the SDK's endpoint override (`AWS_EC2_METADATA_SERVICE_ENDPOINT`).

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use super::*;

const TOKEN: &str = "imds-v2-session-token";
const ROLE: &str = "gds-prometheus-node";
const ACCESS_KEY_ID: &str = "ASIAIMDSSTANDIN";
const SESSION_TOKEN: &str = "session-token-from-the-instance-role";

/// One request as a server saw it: the request line and the headers, lowercased names.
#[derive(Clone, Debug)]
struct Seen {
    line: String,
    headers: BTreeMap<String, String>,
}

/// Reads one request head (no body is expected) from `stream`.
async fn read_head(stream: &mut TcpStream) -> Option<(Seen, Vec<u8>)> {
    let mut bytes = Vec::new();
    let mut chunk = [0u8; 4096];
    while !bytes.windows(4).any(|w| w == b"\r\n\r\n") {
        let n = stream.read(&mut chunk).await.ok()?;
        if n == 0 {
            return None;
        }
        bytes.extend_from_slice(&chunk[..n]);
    }
    let text = String::from_utf8_lossy(&bytes).into_owned();
    let mut lines = text.split("\r\n");
    let line = lines.next()?.to_owned();
    let headers = lines
        .take_while(|l| !l.is_empty())
        .filter_map(|l| l.split_once(':'))
        .map(|(name, value)| (name.trim().to_ascii_lowercase(), value.trim().to_owned()))
        .collect();
    Some((Seen { line, headers }, bytes))
}

/// The instance metadata service of an instance with role [`ROLE`] (or with no role),
/// speaking IMDSv2 only: every metadata read needs the session token from
/// `PUT /latest/api/token`. One request per connection.
struct ImdsStandIn {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    acceptor: JoinHandle<()>,
}

impl Drop for ImdsStandIn {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl ImdsStandIn {
    async fn start(with_role: bool) -> ImdsStandIn {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((mut stream, _)) = listener.accept().await {
                    let seen = seen.clone();
                    tokio::spawn(async move {
                        let Some((request, _)) = read_head(&mut stream).await else {
                            return;
                        };
                        let (status, headers, body) = answer(&request, with_role);
                        seen.lock().unwrap().push(request);
                        let response = format!(
                            "HTTP/1.1 {status}\r\nContent-Length: {}\r\nContent-Type: text/plain\r\n\
                             {headers}Connection: close\r\n\r\n{body}",
                            body.len()
                        );
                        let _ = stream.write_all(response.as_bytes()).await;
                    });
                }
            }
        });
        ImdsStandIn {
            url,
            seen,
            acceptor,
        }
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

/// The status, extra header lines and body of the answer to `request`.
fn answer(request: &Seen, with_role: bool) -> (&'static str, String, String) {
    let credentials = "/latest/meta-data/iam/security-credentials/";
    let mut words = request.line.split_whitespace();
    let (method, path) = (words.next().unwrap_or(""), words.next().unwrap_or(""));
    if method == "PUT" && path == "/latest/api/token" {
        return match request.headers.get("x-aws-ec2-metadata-token-ttl-seconds") {
            // The SDK requires the TTL back.
            Some(ttl) => (
                "200 OK",
                format!("x-aws-ec2-metadata-token-ttl-seconds: {ttl}\r\n"),
                TOKEN.to_owned(),
            ),
            None => ("400 Bad Request", String::new(), String::new()),
        };
    }
    if request
        .headers
        .get("x-aws-ec2-metadata-token")
        .map(String::as_str)
        != Some(TOKEN)
    {
        return ("401 Unauthorized", String::new(), String::new());
    }
    match (method, path.strip_prefix(credentials)) {
        ("GET", Some("")) if with_role => ("200 OK", String::new(), ROLE.to_owned()),
        ("GET", Some(role)) if with_role && role == ROLE => (
            "200 OK",
            String::new(),
            serde_json::json!({
                "Code": "Success",
                "LastUpdated": "2026-01-01T00:00:00Z",
                "Type": "AWS-HMAC",
                "AccessKeyId": ACCESS_KEY_ID,
                "SecretAccessKey": "secret-from-the-instance-role",
                "Token": SESSION_TOKEN,
                "Expiration": "2099-01-01T00:00:00Z",
            })
            .to_string(),
        ),
        _ => ("404 Not Found", String::new(), String::new()),
    }
}

/// A TCP proxy in front of the S3 server that records the head of the first request on
/// each connection: how sd-sync signs its requests.
struct RecordingProxy {
    url: String,
    seen: Arc<Mutex<Vec<Seen>>>,
    acceptor: JoinHandle<()>,
}

impl Drop for RecordingProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
    }
}

impl RecordingProxy {
    async fn start() -> RecordingProxy {
        let target = s3_endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .to_owned();
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio::spawn({
            let seen = seen.clone();
            async move {
                while let Ok((mut inbound, _)) = listener.accept().await {
                    let seen = seen.clone();
                    let target = target.clone();
                    tokio::spawn(async move {
                        let Some((request, head)) = read_head(&mut inbound).await else {
                            return;
                        };
                        seen.lock().unwrap().push(request);
                        let Ok(mut outbound) = TcpStream::connect(target.as_str()).await else {
                            return;
                        };
                        if outbound.write_all(&head).await.is_ok() {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                }
            }
        });
        RecordingProxy {
            url,
            seen,
            acceptor,
        }
    }
}

/// sd-sync `--once` with no static keys and the instance metadata service at `imds`:
/// nothing from the developer's environment or AWS files.
async fn run_once_on_instance(args: Vec<String>, imds: &str) -> (std::process::ExitStatus, String) {
    let home = tempfile::tempdir().unwrap();
    let missing = |name: &str| home.path().join(name).display().to_string();
    let mut command = Command::new(bin_path("sd-sync"));
    command
        .args(args)
        .arg("--once")
        .env_clear()
        .env("HOME", home.path())
        .env("AWS_CONFIG_FILE", missing("config"))
        .env("AWS_SHARED_CREDENTIALS_FILE", missing("credentials"))
        .env("AWS_EC2_METADATA_SERVICE_ENDPOINT", imds)
        .env("RUST_LOG", "error")
        .stdin(Stdio::null());
    let output = tokio::task::spawn_blocking(move || command.output().expect("sd-sync runs"))
        .await
        .unwrap();
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test]
async fn without_static_keys_sd_sync_reads_the_bucket_with_the_instance_roles_credentials() {
    let bucket = Bucket::new().await;
    bucket
        .put(
            &format!("active/{}.json", guid(1)),
            &target_file(&guid(1), "app", 1),
        )
        .await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    let imds = ImdsStandIn::start(true).await;
    let s3 = RecordingProxy::start().await;

    let (status, stderr) =
        run_once_on_instance(args(&[(&bucket, "active/", &dir)], &s3.url), &imds.url).await;

    assert!(status.success(), "{stderr}");
    assert_eq!(dir_files(&dir).len(), 1, "the object was mirrored");
    let metadata = imds.seen();
    assert!(
        metadata
            .iter()
            .any(|r| r.line.starts_with("PUT /latest/api/token ")),
        "IMDSv2: a session token first: {metadata:?}"
    );
    assert!(
        metadata.iter().any(|r| r.line.starts_with(&format!(
            "GET /latest/meta-data/iam/security-credentials/{ROLE} "
        ))),
        "the role's credentials were read: {metadata:?}"
    );
    assert!(
        metadata
            .iter()
            .filter(|r| r.line.starts_with("GET "))
            .all(|r| r
                .headers
                .get("x-aws-ec2-metadata-token")
                .map(String::as_str)
                == Some(TOKEN)),
        "every metadata read carries the session token: {metadata:?}"
    );
    let requests = s3.seen.lock().unwrap().clone();
    assert!(!requests.is_empty());
    for request in &requests {
        let authorization = request
            .headers
            .get("authorization")
            .cloned()
            .unwrap_or_default();
        assert!(
            authorization.contains(&format!("Credential={ACCESS_KEY_ID}/")),
            "{}: signed with the instance role's key: {authorization}",
            request.line
        );
        assert_eq!(
            request
                .headers
                .get("x-amz-security-token")
                .map(String::as_str),
            Some(SESSION_TOKEN),
            "{}",
            request.line
        );
    }
}

#[tokio::test]
async fn without_static_keys_or_an_instance_role_sd_sync_stops_at_start_with_one_line() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("targets");
    std::fs::create_dir_all(&dir).unwrap();
    let installed = dir.join(format!("{}.json", guid(1)));
    std::fs::write(&installed, target_file(&guid(1), "app", 1)).unwrap();
    let imds = ImdsStandIn::start(false).await;

    let (status, stderr) = run_once_on_instance(
        args(&[(&bucket, "active/", &dir)], &s3_endpoint()),
        &imds.url,
    )
    .await;

    assert!(!status.success());
    assert_eq!(stderr.lines().count(), 1, "one line: {stderr:?}");
    assert!(
        stderr.starts_with("sd-sync: ")
            && stderr.contains("S3 credentials missing")
            && stderr.contains("EC2 instance metadata"),
        "{stderr}"
    );
    assert!(installed.exists(), "nothing is deleted");
}
