//! sd-sync, the real binary, against a real S3-compatible server (moto, started by
//! `scripts/s3-test-server.sh`) and, in `prometheus`, a real Prometheus.
//!
//! Every test has its own bucket and directory. A small TCP proxy in front of moto stands
//! in for a store that goes away and comes back.

mod credentials;
mod imds;
mod mirroring;
mod prometheus;
mod record_watch;
pub(crate) mod s3_stub;

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use gds_store::S3Store;
use gds_targets::TargetGroup;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

use crate::harness::bin_path;
use crate::store_s3::{fresh_s3_store, s3_endpoint};

/// A running `sd-sync`, killed on drop.
pub struct SdSync {
    pub(crate) child: Child,
    pub base_url: String,
    pub pid: u32,
    /// The `Authorization` header [`SdSync::get`] sends, when sd-sync requires one.
    pub authorization: Option<String>,
}

impl Drop for SdSync {
    fn drop(&mut self) {
        crate::harness::stop_group(&mut self.child);
    }
}

/// The environment sd-sync gets: only what a test passes plus credentials, so that the
/// developer's own AWS_* or SD_SYNC_* variables cannot change what is tested.
pub(crate) fn sd_sync_command(args: &[String], env: &[(&str, &str)]) -> Command {
    let mut command = Command::new(bin_path("sd-sync"));
    command
        .args(args)
        .env_clear()
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env(
            "RUST_LOG",
            std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .envs(env.iter().copied());
    command
}

/// Starts sd-sync with `args` (add `--s3-endpoint`; `--listen 127.0.0.1:0` is added) and
/// waits for its `sd-sync listening on http://ADDR` line.
pub fn start_sd_sync(args: &[String]) -> SdSync {
    start_sd_sync_with(args, &[], None)
}

/// [`start_sd_sync`] with environment `env`; `get` sends `authorization`.
pub fn start_sd_sync_with(
    args: &[String],
    env: &[(&str, &str)],
    authorization: Option<String>,
) -> SdSync {
    let mut args = args.to_vec();
    args.extend(["--listen".into(), "127.0.0.1:0".into()]);
    let (child, base_url) = crate::harness::spawn_ready(sd_sync_command(&args, env), "sd-sync");
    let pid = child.id();
    SdSync {
        child,
        base_url,
        pid,
        authorization,
    }
}

/// Runs sd-sync to completion (`--once`, or a bad command line): status and stderr.
pub fn run_sd_sync(args: &[String], env: &[(&str, &str)]) -> (std::process::ExitStatus, String) {
    let output = sd_sync_command(args, env)
        .stdin(Stdio::null())
        .output()
        .expect("sd-sync runs");
    (
        output.status,
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// `--mapping s3://BUCKET/PREFIX=DIR --s3-endpoint ENDPOINT --interval 200ms`, the usual
/// arguments of a test.
pub fn args(mappings: &[(&Bucket, &str, &Path)], endpoint: &str) -> Vec<String> {
    let mut args = Vec::new();
    for (bucket, prefix, dir) in mappings {
        args.push("--mapping".into());
        args.push(format!("s3://{}/{prefix}={}", bucket.name(), dir.display()));
    }
    args.extend([
        "--s3-endpoint".into(),
        endpoint.into(),
        "--interval".into(),
        "200ms".into(),
    ]);
    args
}

impl SdSync {
    pub async fn get(&self, path: &str) -> reqwest::Response {
        let mut request = reqwest::Client::new().get(format!("{}{path}", self.base_url));
        if let Some(authorization) = &self.authorization {
            request = request.header(reqwest::header::AUTHORIZATION, authorization);
        }
        request
            .send()
            .await
            .unwrap_or_else(|e| panic!("GET {path}: {e}"))
    }

    /// `/health` as JSON, with its status code.
    pub async fn health(&self) -> (u16, serde_json::Value) {
        let response = self.get("/health").await;
        let status = response.status().as_u16();
        (status, response.json().await.unwrap())
    }

    /// The value of the sample `name{labels}` in `/metrics` (0 when absent).
    pub async fn metric(&self, sample: &str) -> f64 {
        let text = self.get("/metrics").await.text().await.unwrap();
        text.lines()
            .find_map(|line| {
                line.strip_prefix(sample)
                    .and_then(|rest| rest.strip_prefix(' '))
                    .map(|value| value.trim().parse::<f64>().unwrap())
            })
            .unwrap_or(0.0)
    }

    /// `/targets...` as JSON, asserting a 200 with the content type http_sd requires.
    pub async fn targets(&self, path: &str) -> serde_json::Value {
        let response = self.get(path).await;
        assert_eq!(response.status(), 200, "{path}");
        let content_type = response.headers()[reqwest::header::CONTENT_TYPE]
            .to_str()
            .unwrap()
            .to_owned();
        assert_eq!(content_type, "application/json", "{path}");
        response.json().await.unwrap()
    }

    /// User plus system CPU time of the process so far, in seconds.
    pub fn cpu_seconds(&self) -> f64 {
        let stat = std::fs::read_to_string(format!("/proc/{}/stat", self.pid)).unwrap();
        // After the command name in parentheses: fields 3.. ; utime and stime are 14 and 15.
        let fields: Vec<&str> = stat
            .rsplit_once(')')
            .unwrap()
            .1
            .split_whitespace()
            .collect();
        let ticks: f64 = fields[11].parse::<f64>().unwrap() + fields[12].parse::<f64>().unwrap();
        ticks / 100.0 // USER_HZ
    }

    /// The peak resident set size of the process (VmHWM), in KiB.
    pub fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid)).unwrap();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .expect("VmHWM in /proc/PID/status")
    }
}

/// A fresh bucket on the test server.
pub struct Bucket(S3Store);

impl Bucket {
    pub async fn new() -> Bucket {
        Bucket(fresh_s3_store("").await)
    }

    pub fn name(&self) -> &str {
        self.0.bucket()
    }

    pub fn client(&self) -> &aws_sdk_s3::Client {
        self.0.client()
    }

    /// The bucket as the writers' store.
    pub fn store(&self) -> &S3Store {
        &self.0
    }

    pub async fn put(&self, key: &str, body: &str) {
        self.client()
            .put_object()
            .bucket(self.name())
            .key(key)
            .body(body.as_bytes().to_vec().into())
            .send()
            .await
            .unwrap_or_else(|e| panic!("put {key}: {e:?}"));
    }

    /// Publishes the writers' record beside `active/` (at the bucket's root), as the
    /// broker and the updater do after changing `active/`.
    pub async fn put_record(&self, generation: u64, active_count: u64) {
        let record = gds_store::WritersRecord {
            format: gds_store::record::RECORD_FORMAT,
            generation,
            active_count,
            writer: "updater".into(),
            written_at: "2026-12-07T12:00:00Z".into(),
        };
        let body = String::from_utf8(record.to_bytes()).unwrap();
        self.put(gds_store::RECORD_KEY, &body).await;
    }

    pub async fn delete(&self, key: &str) {
        self.client()
            .delete_object()
            .bucket(self.name())
            .key(key)
            .send()
            .await
            .unwrap_or_else(|e| panic!("delete {key}: {e:?}"));
    }
}

/// A target file as the broker writes it: one group per instance.
pub fn target_file(app_guid: &str, job: &str, instances: usize) -> String {
    let groups: Vec<TargetGroup> = (0..instances)
        .map(|i| TargetGroup {
            targets: vec![format!("{job}.apps.example.com")],
            labels: BTreeMap::from([
                ("__param_cf_app_guid".into(), app_guid.into()),
                ("__param_cf_app_instance_index".into(), i.to_string()),
                ("__param_cf_app_instance".into(), format!("{app_guid}:{i}")),
                ("instance".into(), format!("{app_guid}:{i}")),
                ("job".into(), job.into()),
                ("org".into(), "my-org".into()),
                ("space".into(), "my-space".into()),
            ]),
        })
        .collect();
    let mut text = serde_json::to_string_pretty(&groups).unwrap();
    text.push('\n');
    text
}

/// A GUID-like name, different for each `n`.
pub fn guid(n: usize) -> String {
    format!("00000000-0000-4000-8000-{n:012}")
}

/// Every entry of `dir` (hidden and temporary ones included) with its content.
pub fn dir_files(dir: &Path) -> BTreeMap<String, String> {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .map(|e| e.unwrap())
                .map(|e| {
                    let content = std::fs::read_to_string(e.path()).unwrap_or_default();
                    (e.file_name().into_string().unwrap(), content)
                })
                .collect()
        })
        .unwrap_or_default()
}

/// The `*.json` files of `dir` (what Prometheus' glob reads) with their content; staged
/// files of a write in progress are not among them.
pub fn json_files(dir: &Path) -> BTreeMap<String, String> {
    dir_files(dir)
        .into_iter()
        .filter(|(name, _)| name.ends_with(".json") && !name.starts_with('.'))
        .collect()
}

/// The target groups of every `*.json` file in `dir`, in file-name order: what Prometheus
/// reads through file_sd.
pub fn dir_groups(dir: &Path) -> serde_json::Value {
    let mut groups = Vec::new();
    for content in json_files(dir).values() {
        let file: Vec<serde_json::Value> = serde_json::from_str(content).unwrap();
        groups.extend(file);
    }
    serde_json::Value::Array(groups)
}

/// Waits until `check` holds, polling; panics with `what` after `timeout`.
pub async fn eventually(what: &str, timeout: Duration, mut check: impl AsyncFnMut() -> bool) {
    let deadline = Instant::now() + timeout;
    loop {
        if check().await {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "timed out after {timeout:?} waiting until {what}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A directory for a test's target files (`<tmp>/<name>`), removed on drop.
pub struct TargetDirs {
    root: tempfile::TempDir,
}

impl TargetDirs {
    pub fn new() -> TargetDirs {
        TargetDirs {
            root: tempfile::tempdir().unwrap(),
        }
    }

    pub fn dir(&self, name: &str) -> PathBuf {
        self.root.path().join(name)
    }

    pub fn root(&self) -> &Path {
        self.root.path()
    }
}

/// A TCP proxy in front of the S3 server that can be switched off: then it accepts and
/// drops every connection (and cuts the open ones), as a store that went away.
pub struct FlakyProxy {
    pub url: String,
    up: Arc<AtomicBool>,
    connections: Arc<Mutex<Vec<JoinHandle<()>>>>,
    acceptor: JoinHandle<()>,
}

impl FlakyProxy {
    pub async fn start(up: bool) -> FlakyProxy {
        let target: SocketAddr = s3_endpoint()
            .trim_start_matches("http://")
            .trim_end_matches('/')
            .parse()
            .expect("the test S3 endpoint is http://IP:PORT");
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let up = Arc::new(AtomicBool::new(up));
        let connections = Arc::new(Mutex::new(Vec::new()));
        let acceptor = tokio::spawn({
            let up = up.clone();
            let connections = connections.clone();
            async move {
                loop {
                    let Ok((mut inbound, _)) = listener.accept().await else {
                        continue;
                    };
                    if !up.load(Ordering::SeqCst) {
                        drop(inbound);
                        continue;
                    }
                    let relay = tokio::spawn(async move {
                        if let Ok(mut outbound) = TcpStream::connect(target).await {
                            let _ =
                                tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
                        }
                    });
                    connections.lock().unwrap().push(relay);
                }
            }
        });
        FlakyProxy {
            url,
            up,
            connections,
            acceptor,
        }
    }

    pub fn set_up(&self, up: bool) {
        self.up.store(up, Ordering::SeqCst);
        if !up {
            for relay in self.connections.lock().unwrap().drain(..) {
                relay.abort();
            }
        }
    }
}

impl Drop for FlakyProxy {
    fn drop(&mut self) {
        self.acceptor.abort();
        for relay in self.connections.lock().unwrap().drain(..) {
            relay.abort();
        }
    }
}
