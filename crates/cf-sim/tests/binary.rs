//! The `cf-sim` binary: one ready line on stdout (two with `--router-listen`), a real
//! port, clean shutdown.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// Kills the child if a test fails half-way.
struct Running(Child);

impl Drop for Running {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn http_get(addr: &str, path: &str) -> String {
    http_request(addr, addr, path, &[])
}

/// A hand-written HTTP/1.1 GET to `addr` with `Host: host` and extra headers.
fn http_request(addr: &str, host: &str, path: &str, headers: &[(&str, &str)]) -> String {
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut request = format!("GET {path} HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n");
    for (name, value) in headers {
        request.push_str(&format!("{name}: {value}\r\n"));
    }
    request.push_str("\r\n");
    stream.write_all(request.as_bytes()).unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
}

/// The address in a ready line `<prefix>http://ADDR`.
fn ready_addr(line: &str, prefix: &str) -> String {
    let url = line
        .trim_end()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    let addr = url.strip_prefix("http://").unwrap().to_string();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );
    addr
}

#[test]
fn the_binary_prints_one_ready_line_and_serves_on_the_chosen_port() {
    let child = Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .args(["--listen", "127.0.0.1:0", "--demo", "--seed-apps", "100"])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let url = line
        .trim_end()
        .strip_prefix("cf-sim listening on ")
        .unwrap_or_else(|| panic!("unexpected ready line {line:?}"));
    let addr = url.strip_prefix("http://").unwrap();
    assert!(
        addr.starts_with("127.0.0.1:") && !addr.ends_with(":0"),
        "{addr}"
    );

    let root = http_get(addr, "/");
    assert!(root.starts_with("HTTP/1.1 200"), "{root}");
    assert!(
        root.contains(&format!("\"uaa\":{{\"href\":\"{url}\"}}")),
        "{root}"
    );
    let sim = http_get(addr, "/sim");
    assert!(sim.contains("\"apps\":105"), "{sim}");
    let unauthenticated = http_get(addr, "/v3/apps");
    assert!(
        unauthenticated.starts_with("HTTP/1.1 401"),
        "{unauthenticated}"
    );

    // Nothing else on stdout.
    child.0.kill().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
}

#[test]
fn with_router_listen_a_second_ready_line_names_the_router_which_reaches_the_demo_apps() {
    let child = Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .args([
            "--listen",
            "127.0.0.1:0",
            "--router-listen",
            "127.0.0.1:0",
            "--demo",
        ])
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let (mut first, mut second) = (String::new(), String::new());
    stdout.read_line(&mut first).unwrap();
    stdout.read_line(&mut second).unwrap();
    let addr = ready_addr(&first, "cf-sim listening on ");
    let router = ready_addr(&second, "cf-sim router listening on ");
    assert_ne!(addr, router);

    let sim = http_get(&addr, "/sim");
    assert!(
        sim.contains(&format!("\"router_url\":\"http://{router}\"")),
        "{sim}"
    );

    // What nginx sends for a Prometheus target of the demo's web-shop, instance 1.
    let guid = cf_sim::seed::demo_app_guid("web-shop").unwrap();
    let instance = format!("{guid}:1");
    let bearer = format!("Bearer {guid}");
    let scrape = http_request(
        &router,
        "web-shop.apps.example.com",
        "/metrics",
        &[
            ("X-CF-APP-INSTANCE", instance.as_str()),
            ("Authorization", bearer.as_str()),
        ],
    );
    assert!(scrape.starts_with("HTTP/1.1 200"), "{scrape}");
    assert!(
        scrape.contains(&format!(
            "cf_sim_instance_info{{app_guid=\"{guid}\",app_name=\"web-shop\",instance_index=\"1\""
        )),
        "{scrape}"
    );
    assert!(
        scrape.contains("\ncf_sim_instance_scrapes_total 1\n"),
        "{scrape}"
    );

    let unknown = http_request(&router, "nope.apps.example.com", "/metrics", &[]);
    assert!(unknown.starts_with("HTTP/1.1 404"), "{unknown}");
    assert!(
        unknown
            .to_ascii_lowercase()
            .contains("x-cf-routererror: unknown_route"),
        "{unknown}"
    );
    let counted = http_get(&addr, "/sim/router/requests");
    assert!(counted.contains("\"total\":2"), "{counted}");

    // Nothing else on stdout.
    child.0.kill().unwrap();
    let mut rest = String::new();
    stdout.read_to_string(&mut rest).unwrap();
    assert_eq!(rest, "");
}

#[test]
fn bad_flags_exit_2_with_one_line_and_help_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .args(["--seed-apps", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cf-sim: invalid value 'lots' for '--seed-apps <N>': `lots` is not a non-negative integer\n"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .arg("--no-such-flag")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cf-sim: unexpected argument '--no-such-flag' found\n"
    );
    let out = Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .env("CF_SIM_RATE_LIMIT_WINDOW", "0")
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cf-sim: invalid value '0' for '--rate-limit-window <SECS>': must be at least 1\n"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .arg("--help")
        .env("CF_SIM_CLIENT_SECRET", "do-not-print-me")
        .output()
        .unwrap();
    assert!(help.status.success());
    let help = String::from_utf8_lossy(&help.stdout);
    assert!(help.contains("--rate-limit-window <SECS>"), "{help}");
    assert!(help.contains("[env: CF_SIM_RATE_LIMIT_WINDOW="), "{help}");
    assert!(!help.contains("do-not-print-me"), "{help}");
}

#[test]
fn the_environment_fills_in_flags_that_are_not_given_and_flags_win() {
    let child = Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .args(["--seed-apps", "3"])
        .env("CF_SIM_LISTEN", "127.0.0.1:0")
        .env("CF_SIM_SEED_APPS", "7")
        .env("CF_SIM_DEMO", "true")
        .env("CF_SIM_RATE_LIMIT", "10")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Running(child);
    let mut stdout = BufReader::new(child.0.stdout.take().unwrap());
    let mut line = String::new();
    stdout.read_line(&mut line).unwrap();
    let addr = ready_addr(&line, "cf-sim listening on ");
    let sim = http_get(&addr, "/sim");
    // Five demo apps (CF_SIM_DEMO) and three seeded (--seed-apps beats CF_SIM_SEED_APPS).
    assert!(sim.contains("\"apps\":8"), "{sim}");
    assert!(sim.contains("\"limit\":10"), "{sim}");
}
