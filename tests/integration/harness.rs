//! Starting the project's real binaries for a test: each on a free port, in a process
//! group of its own that is killed, whole, when the handle drops.

use std::collections::BTreeSet;
use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, Once};
use std::time::{Duration, Instant};

use rustix::process::{Pid, Signal, WaitId, WaitIdOptions, kill_process_group, waitid};

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

/// The process groups of the servers this test binary has started and not yet stopped.
static GROUPS: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

/// Spawns `command` as the leader of a new process group (`process_group(0)`), so that
/// [`stop_group`] can stop every process it starts (nginx's workers outlive a killed
/// master, still holding their listening sockets). A group of its own no longer receives
/// the terminal's Ctrl-C: the first spawn installs a SIGINT/SIGTERM handler that kills
/// every registered group before the test binary exits.
pub fn spawn_group(command: &mut Command, name: &str) -> Child {
    static HANDLER: Once = Once::new();
    HANDLER.call_once(stop_groups_on_interrupt);
    let child = command
        .process_group(0)
        .spawn()
        .unwrap_or_else(|e| panic!("cannot start {name}: {e}"));
    GROUPS.lock().unwrap().insert(child.id());
    child
}

/// Kills the process group led by `child` (SIGKILL to every member, not just the leader),
/// reaps the leader and waits (5 s at most) until no member is left.
pub fn stop_group(child: &mut Child) {
    let pgid = child.id();
    if let Some(pid) = i32::try_from(pgid).ok().and_then(Pid::from_raw) {
        // Only while the leader is not reaped (running, or a zombie: `NOWAIT` leaves it
        // so) is the number surely still this group's. Once reaped (a test waited for
        // it), the kernel may give the number to another test's server, which leads a
        // group of its own: a kill would stop that one. (PIDs wrap at 32768 here.)
        let unreaped = waitid(
            WaitId::Pid(pid),
            WaitIdOptions::EXITED | WaitIdOptions::NOHANG | WaitIdOptions::NOWAIT,
        )
        .is_ok();
        if unreaped {
            // ESRCH: the whole group is gone already.
            let _ = kill_process_group(pid, Signal::KILL);
        }
    }
    let _ = child.wait();
    wait_until_group_ends(pgid, Duration::from_secs(5));
    GROUPS.lock().unwrap().remove(&pgid);
}

/// Waits (`within` at most) until process group `pgid` has no live member; returns the
/// members left, each with its command line.
pub fn wait_until_group_ends(pgid: u32, within: Duration) -> Vec<String> {
    let deadline = Instant::now() + within;
    loop {
        let members = group_members(pgid);
        if members.is_empty() || Instant::now() >= deadline {
            return members
                .into_iter()
                .map(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    format!(
                        "{pid} {}",
                        String::from_utf8_lossy(&cmdline).replace('\0', " ")
                    )
                })
                .collect();
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The live processes (zombies hold nothing and are left out) in process group `pgid`,
/// from `/proc/PID/stat`.
pub fn group_members(pgid: u32) -> Vec<u32> {
    let Ok(entries) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            // `PID (COMM) STATE PPID PGRP ...`; COMM may hold spaces and parentheses.
            let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
                return false;
            };
            let Some((_, rest)) = stat.rsplit_once(')') else {
                return false;
            };
            let fields: Vec<&str> = rest.split_whitespace().collect();
            fields.len() > 2
                && !matches!(fields[0], "Z" | "X")
                && fields[2].parse::<u32>() == Ok(pgid)
        })
        .collect()
}

/// On SIGINT or SIGTERM (Ctrl-C, or the wrapper scripts stopping the run), kills every
/// registered process group, then exits as the signal would have.
fn stop_groups_on_interrupt() {
    std::thread::spawn(|| {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .expect("a runtime for the signal handler");
        let code = runtime.block_on(async {
            use tokio::signal::unix::{SignalKind, signal};
            let mut interrupt = signal(SignalKind::interrupt()).expect("a SIGINT handler");
            let mut terminate = signal(SignalKind::terminate()).expect("a SIGTERM handler");
            tokio::select! {
                _ = interrupt.recv() => 130,
                _ = terminate.recv() => 143,
            }
        });
        for pgid in GROUPS.lock().unwrap().iter() {
            if let Some(pid) = i32::try_from(*pgid).ok().and_then(Pid::from_raw) {
                let _ = kill_process_group(pid, Signal::KILL);
            }
        }
        std::process::exit(code);
    });
}

/// A running child process, in a process group of its own that is killed on drop.
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
        stop_group(&mut self.child);
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
    start_command(command, name)
}

/// Starts the CF simulator (`cf-sim`) on a free loopback port, with `args`: the one
/// place every test starts it.
pub fn start_sim(args: &[&str]) -> Running {
    start(
        "cf-sim",
        &[&["--listen", "127.0.0.1:0"], args].concat(),
        &[],
    )
}

/// Starts `command` (a binary of this workspace, named `name` in messages) and waits for
/// its ready line, as [`start`] does.
pub fn start_command(command: Command, name: &str) -> Running {
    let (child, base_url) = spawn_ready(command, name);
    Running { child, base_url }
}

/// Spawns `command` in a process group of its own ([`spawn_group`]; stop it with
/// [`stop_group`]) with stdout piped, waits (30 s at most) for its first line, which must
/// read `... listening on URL`, and returns the child and the URL. The rest of stdout is
/// drained so the child never blocks on a full pipe.
pub fn spawn_ready(command: Command, name: &str) -> (Child, String) {
    spawn_ready_with_stderr(command, name, Stdio::inherit())
}

/// [`spawn_ready`] with the child's stderr sent to `stderr` (a log file, say).
pub fn spawn_ready_with_stderr(mut command: Command, name: &str, stderr: Stdio) -> (Child, String) {
    let mut child = spawn_group(command.stdout(Stdio::piped()).stderr(stderr), name);
    let stdout = child.stdout.take().expect("piped stdout");
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let mut lines = BufReader::new(stdout).lines();
        if let Some(Ok(line)) = lines.next() {
            let _ = tx.send(line);
        }
        for _ in lines {}
    });
    let Ok(line) = rx.recv_timeout(Duration::from_secs(30)) else {
        stop_group(&mut child);
        panic!("{name} printed no ready line within 30 s");
    };
    let Some((_, url)) = line.split_once("listening on ") else {
        stop_group(&mut child);
        panic!("unexpected first line from {name}: {line:?}");
    };
    (child, url.trim().trim_end_matches('/').to_owned())
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
