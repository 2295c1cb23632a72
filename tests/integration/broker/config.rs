//! Start-up: a missing or invalid setting stops the broker with one clear line naming it.

use std::process::{Command, Stdio};

use crate::harness::bin_path;

fn complete_env() -> Vec<(&'static str, &'static str)> {
    vec![
        ("SERVICE_ID", "svc"),
        ("PLAN_ID", "plan"),
        ("BROKER_USERNAME", "broker"),
        ("BROKER_PASSWORD", "secret-password"),
        ("PAAS_DOMAIN", "apps.example.com"),
        ("API_ENDPOINT", "http://127.0.0.1:9"),
        ("UAA_USERNAME", "admin"),
        ("UAA_PASSWORD", "admin"),
        ("ENVIRONMENT", "local"),
        ("TARGETS_PATH", "/nonexistent/targets"),
        ("DATABASE_URL", "sqlite::memory:"),
        ("LISTEN_HOST", "127.0.0.1"),
        ("PORT", "0"),
    ]
}

/// Runs the broker with exactly `env` (nothing inherited); returns (exit code, stderr).
fn run_broker(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let output = Command::new(bin_path("broker"))
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .output()
        .expect("running the broker");
    assert!(
        output.stdout.is_empty(),
        "no ready line: {:?}",
        String::from_utf8_lossy(&output.stdout)
    );
    (
        output.status.code(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[test]
fn a_missing_or_invalid_setting_stops_the_broker_with_one_line_naming_it() {
    let cases: Vec<(&str, Option<&str>)> = vec![
        ("BROKER_PASSWORD", None),
        ("BROKER_USERNAME", None),
        ("SERVICE_ID", None),
        ("PLAN_ID", None),
        ("PAAS_DOMAIN", None),
        ("API_ENDPOINT", None),
        ("API_ENDPOINT", Some("not a url")),
        ("PORT", Some("eighty")),
        ("DATABASE_URL", Some("mysql://db/broker")),
        ("CACHE_EXPIRY_TIME", Some("soon")),
        ("TARGETS_PATH", None),
        ("VCAP_SERVICES", Some("{not json")),
    ];
    for (name, value) in cases {
        let mut env: Vec<(&str, &str)> = complete_env()
            .into_iter()
            .filter(|(k, _)| *k != name)
            .collect();
        if let Some(value) = value {
            env.push((name, value));
        }
        let (code, stderr) = run_broker(&env);
        assert_eq!(code, Some(2), "{name}={value:?}: stderr {stderr:?}");
        let lines: Vec<&str> = stderr.lines().collect();
        assert_eq!(lines.len(), 1, "{name}={value:?}: one line, got {stderr:?}");
        assert!(
            lines[0].contains(name),
            "{name}={value:?}: the line names the setting: {stderr:?}"
        );
        assert!(
            !stderr.contains("secret-password"),
            "no secret in {stderr:?}"
        );
    }
}

#[test]
fn an_unusable_database_stops_the_broker_with_a_clear_line() {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("a-file");
    std::fs::write(&file, b"not a directory").unwrap();
    // The database's directory would have to be inside a regular file.
    let url = format!("sqlite://{}/broker.db?mode=rwc", file.display());
    let mut env = complete_env();
    env.retain(|(k, _)| *k != "DATABASE_URL");
    env.push(("DATABASE_URL", &url));
    let (code, stderr) = run_broker(&env);
    assert_eq!(code, Some(1), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr:?}");
    assert!(stderr.contains("DATABASE_URL"), "{stderr:?}");
}
