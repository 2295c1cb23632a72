//! sd-sync's index of the scrape credentials documents (`credentials/<app>.json` beside
//! `active/`, issue 14): it follows the bucket, keeps the last good document when a new
//! one is malformed (counted, `/health` degraded), and nothing of it reaches Prometheus'
//! directory, `/targets`, `/metrics` or the log.

use std::process::Command;
use std::time::Duration;

use gds_store::{BindingAuth, CredentialsDocument, ScrapeTokenKey};
use gds_targets::{AppGuid, ScrapeAuth};

use super::*;

const KEY: &str = "sd-sync-integration-scrape-token-key-0123456789";

fn document(app: &str, bindings: &[(&str, ScrapeAuth)]) -> String {
    let app = AppGuid::parse(app).unwrap();
    let bindings = bindings
        .iter()
        .map(|(id, auth)| BindingAuth {
            binding_id: (*id).into(),
            auth: *auth,
            created_at: "2026-12-07T12:00:00.000Z".into(),
        })
        .collect();
    // Built directly: the broker writes a document only while a binding uses a token,
    // but the index must read any valid one.
    String::from_utf8(
        CredentialsDocument {
            app_guid: app,
            bindings,
        }
        .to_bytes(),
    )
    .unwrap()
}

/// The index as `/health` shows it for the only mapping.
async fn index_health(sd: &SdSync) -> (String, serde_json::Value) {
    let (_, health) = sd.health().await;
    let mapping = &health["mappings"][0];
    (
        mapping["status"].as_str().unwrap().to_owned(),
        mapping["scrape_credentials"].clone(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_credentials_index_follows_the_bucket_and_keeps_the_last_good_document() {
    let bucket = Bucket::new().await;
    let dirs = TargetDirs::new();
    let dir = dirs.dir("eu-west-2-targets");
    let app = guid(1);
    let binding = "binding-of-the-test-0001";
    bucket
        .put(&format!("active/{app}.json"), &target_file(&app, "web", 2))
        .await;
    bucket
        .put(
            &format!("credentials/{app}.json"),
            &document(&app, &[(binding, ScrapeAuth::Token)]),
        )
        .await;

    // At debug level, with its stderr (the log) in a file.
    let log = dirs.root().join("sd-sync.log");
    let mut command = Command::new("sh");
    command
        .args(["-c", r#"exec "$0" "$@" 2>"$LOG_FILE""#])
        .arg(bin_path("sd-sync"))
        .args(args(&[(&bucket, "active/", &dir)], &s3_endpoint()))
        .args(["--listen", "127.0.0.1:0"])
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("LOG_FILE", &log)
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("SCRAPE_TOKEN_KEY", KEY)
        .env("RUST_LOG", "debug");
    let (child, base_url) = crate::harness::spawn_ready(command, "sd-sync");
    let pid = child.id();
    let sd = SdSync {
        child,
        base_url,
        pid,
        authorization: None,
    };
    let timeout = Duration::from_secs(20);

    eventually("the document is indexed", timeout, async || {
        index_health(&sd).await.1["documents"] == 1
    })
    .await;
    assert_eq!(index_health(&sd).await.0, "ok");

    // A malformed version: counted, shown, the mapping degraded; the last good stays.
    bucket
        .put(&format!("credentials/{app}.json"), "{\"format\":1,")
        .await;
    eventually("the malformed document is refused", timeout, async || {
        index_health(&sd).await.1["invalid_documents"] == serde_json::json!([app])
    })
    .await;
    let (status, index) = index_health(&sd).await;
    assert_eq!(status, "degraded");
    assert_eq!(
        index["documents"], 1,
        "the last good document went: {index}"
    );
    assert_eq!(
        sd.metric(r#"sd_sync_scrape_credentials_invalid_total{mapping="eu-west-2-targets"}"#)
            .await,
        1.0,
        "a malformed version is read and counted once"
    );

    // Fixed, then removed: the index follows.
    bucket
        .put(
            &format!("credentials/{app}.json"),
            &document(&app, &[(binding, ScrapeAuth::AppGuid)]),
        )
        .await;
    eventually("the fixed document is indexed", timeout, async || {
        let (status, index) = index_health(&sd).await;
        status == "ok" && index["invalid_documents"] == serde_json::json!([])
    })
    .await;
    bucket.delete(&format!("credentials/{app}.json")).await;
    eventually(
        "the removed document leaves the index",
        timeout,
        async || index_health(&sd).await.1["documents"] == 0,
    )
    .await;

    // Nothing of credentials/ in Prometheus' directory, /targets or /metrics.
    assert_eq!(
        dir_files(&dir).keys().cloned().collect::<Vec<_>>(),
        [format!("{app}.json")]
    );
    let targets = sd.get("/targets").await.text().await.unwrap();
    let metrics = sd.get("/metrics").await.text().await.unwrap();
    for (what, text) in [("/targets", &targets), ("/metrics", &metrics)] {
        assert!(!text.contains(binding), "{what} names the binding: {text}");
    }
    drop(sd);
    let token = ScrapeTokenKey::parse(KEY).unwrap().token_for(binding);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(text.contains("DEBUG"), "sd-sync did not log at debug level");
    assert!(!text.contains(token.expose()), "a log line holds the token");
    assert!(!text.contains(KEY), "a log line holds the key");
}
