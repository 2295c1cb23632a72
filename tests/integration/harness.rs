//! Starting the project's real binaries for a test: each on a free port, killed when the
//! handle drops.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Where cargo put the workspace's binaries (`target/debug` next to this test's `deps/`).
pub fn bin_path(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run the tests through `make test`, which builds every binary first \
         (or run `cargo build --workspace --bins`)",
        path.display()
    );
    path
}

/// A running child process that is killed on drop.
pub struct Running {
    child: Child,
    pub base_url: String,
}

impl Running {
    /// The process id, for tests that signal the process (`kill -9`, `SIGSTOP`).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `name` with `args`, waits for its ready line on stdout
/// (`... listening on http://ADDR`) and returns its base URL.
pub fn start(name: &str, args: &[&str], env: &[(&str, &str)]) -> Running {
    let mut command = Command::new(bin_path(name));
    command.args(args).envs(env.iter().copied()).env(
        "RUST_LOG",
        std::env::var("TEST_LOG").unwrap_or_else(|_| "warn".into()),
    );
    let (child, base_url) = spawn_ready(command, name);
    Running { child, base_url }
}

/// Spawns `command` with stdout piped, waits (30 s at most) for its first line, which
/// must read `... listening on URL`, and returns the child and the URL. The rest of
/// stdout is drained so the child never blocks on a full pipe.
pub fn spawn_ready(mut command: Command, name: &str) -> (Child, String) {
    let mut child = command
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let line = rx
        .recv_timeout(Duration::from_secs(30))
        .unwrap_or_else(|_| panic!("{name} printed no ready line within 30 s"));
    let base_url = line
        .split_once("listening on ")
        .map(|(_, url)| url.trim().trim_end_matches('/').to_owned())
        .unwrap_or_else(|| panic!("unexpected first line from {name}: {line:?}"));
    (child, base_url)
}

/// Every app GUID a running `cf-sim` holds, read through its v3 API as the admin user.
pub async fn sim_app_guids(sim_url: &str) -> Vec<String> {
    let http = reqwest::Client::new();
    let token: serde_json::Value = http
        .post(format!("{sim_url}/oauth/token"))
        .basic_auth("cf", Some(""))
        .form(&[
            ("grant_type", "password"),
            ("username", "admin"),
            ("password", "admin"),
        ])
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let bearer = format!("bearer {}", token["access_token"].as_str().unwrap());
    let mut guids = Vec::new();
    let mut next = Some(format!("{sim_url}/v3/apps?per_page=5000"));
    while let Some(url) = next {
        let page: serde_json::Value = http
            .get(url)
            .header("Authorization", &bearer)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for app in page["resources"].as_array().unwrap() {
            guids.push(app["guid"].as_str().unwrap().to_owned());
        }
        next = page["pagination"]["next"]["href"]
            .as_str()
            .map(str::to_owned);
    }
    guids
}
