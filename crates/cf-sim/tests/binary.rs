//! The `cf-sim` binary: one ready line on stdout, a real port, clean shutdown.

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
    let mut stream = TcpStream::connect(addr).unwrap();
    stream
        .set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: {addr}\r\nConnection: close\r\n\r\n"
    )
    .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).unwrap();
    response
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
fn bad_flags_exit_2_with_one_line_and_help_exits_0() {
    let out = Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .args(["--seed-apps", "lots"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert_eq!(
        String::from_utf8_lossy(&out.stderr),
        "cf-sim: --seed-apps: `lots` is not a non-negative integer\n"
    );
    let help = Command::new(env!("CARGO_BIN_EXE_cf-sim"))
        .arg("--help")
        .output()
        .unwrap();
    assert!(help.status.success());
    assert!(String::from_utf8_lossy(&help.stdout).contains("--rate-limit-window"));
}
