//! A real Prometheus (Debian's package, installed by scripts/deps/prometheus.sh) of the
//! test's own: a free loopback port, its own configuration and data directory, its own
//! process group, killed on drop. Missing is a failure with one line saying what to install, never a skip.

use std::path::{Path, PathBuf};
use std::process::{Child, Command};

use serde_json::Value;

use crate::harness::{spawn_group, stop_group};

/// The `prometheus` (or `promtool`) binary: `GDS_TEST_PROMETHEUS_DIR/NAME`, else PATH.
/// Missing is a failure, not a skip.
pub fn prometheus_tool(name: &str) -> PathBuf {
    let candidates = std::env::var_os("GDS_TEST_PROMETHEUS_DIR")
        .map(|dir| vec![PathBuf::from(dir)])
        .unwrap_or_else(|| {
            std::env::var_os("PATH")
                .map(|path| std::env::split_paths(&path).collect())
                .unwrap_or_default()
        });
    candidates
        .into_iter()
        .map(|dir| dir.join(name))
        .find(|path| path.is_file())
        .unwrap_or_else(|| {
            panic!(
                "{name} is not installed: run scripts/install-test-deps.sh (it installs \
                 Debian's prometheus package), or set GDS_TEST_PROMETHEUS_DIR"
            )
        })
}

/// A free loopback port (free when asked: the caller binds it soon after).
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// A Prometheus process of our own, on a free loopback port, killed on drop.
pub struct Prometheus {
    child: Child,
    pub url: String,
    log: PathBuf,
    http: reqwest::Client,
}

impl Drop for Prometheus {
    fn drop(&mut self) {
        stop_group(&mut self.child);
    }
}

impl Prometheus {
    /// Starts Prometheus with `config`, storing its data in `data` and its log next to it
    /// (`data` with the extension `.log`).
    pub fn start(config: &Path, data: &Path) -> Prometheus {
        Prometheus::start_on(free_port(), config, data)
    }

    /// [`Prometheus::start`] on `port` (for a configuration that scrapes Prometheus itself).
    pub fn start_on(port: u16, config: &Path, data: &Path) -> Prometheus {
        let log = data.with_extension("log");
        let log_file = std::fs::File::create(&log).unwrap();
        let child = spawn_group(
            Command::new(prometheus_tool("prometheus"))
                .arg(format!("--config.file={}", config.display()))
                .arg(format!("--storage.tsdb.path={}", data.display()))
                .arg(format!("--web.listen-address=127.0.0.1:{port}"))
                .stdout(log_file.try_clone().unwrap())
                .stderr(log_file),
            "prometheus",
        );
        Prometheus {
            child,
            url: format!("http://127.0.0.1:{port}"),
            log,
            http: reqwest::Client::builder()
                .timeout(std::time::Duration::from_secs(10))
                .build()
                .expect("an HTTP client"),
        }
    }

    /// The last 20 lines of its log, for failure messages.
    pub fn log_tail(&self) -> String {
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = log.lines().collect();
        lines[lines.len().saturating_sub(20)..].join("\n")
    }

    /// Whether `/-/ready` answers 200.
    pub async fn is_ready(&self) -> bool {
        self.http
            .get(format!("{}/-/ready", self.url))
            .send()
            .await
            .is_ok_and(|r| r.status().is_success())
    }

    /// `GET /api/v1/targets?state=active`: the active targets (empty while it does not
    /// answer).
    pub async fn active_targets(&self) -> Vec<Value> {
        let Ok(response) = self
            .http
            .get(format!("{}/api/v1/targets?state=active", self.url))
            .send()
            .await
        else {
            return Vec::new();
        };
        let body: Value = response.json().await.unwrap_or(Value::Null);
        body["data"]["activeTargets"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }

    /// `GET /api/v1/query?query=QUERY`: the instant vector's samples (empty while it does
    /// not answer).
    pub async fn query(&self, query: &str) -> Vec<Value> {
        let Ok(response) = self
            .http
            .get(format!("{}/api/v1/query", self.url))
            .query(&[("query", query)])
            .send()
            .await
        else {
            return Vec::new();
        };
        let body: Value = response.json().await.unwrap_or(Value::Null);
        body["data"]["result"]
            .as_array()
            .cloned()
            .unwrap_or_default()
    }
}
