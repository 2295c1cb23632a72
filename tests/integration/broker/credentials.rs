//! Secret per-binding scrape credentials (issue 14) through the real broker binary: the
//! `auth` binding parameter, the credentials a bind answers, the bucket's
//! `credentials/<app>.json` document, and the token never at rest nor in a log line.

use std::process::Command;

use gds_store::{CredentialsDocument, ScrapeTokenKey};
use gds_targets::{AppGuid, ScrapeAuth};
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use super::support::*;
use crate::harness::{bin_path, start_command};

on_both_databases!(
    a_token_binding_answers_its_derived_token_and_the_bucket_never_holds_it,
    an_app_keeps_its_credentials_document_until_its_last_token_binding_goes,
    the_auth_parameter_is_validated_and_a_token_needs_a_configured_key,
);

const KEY: &str = "integration-test-scrape-token-key-0123456789";

fn with_key() -> Options {
    Options {
        env: vec![("SCRAPE_TOKEN_KEY".into(), KEY.into())],
        ..Options::default()
    }
}

fn token_of(binding: &str) -> String {
    ScrapeTokenKey::parse(KEY)
        .unwrap()
        .token_for(binding)
        .expose()
        .to_owned()
}

/// The app's credentials document in the test bucket, if any.
async fn document(f: &Fixture, app: &str) -> Option<CredentialsDocument> {
    use gds_store::TargetStore;
    let app = AppGuid::parse(app).unwrap();
    let (body, _) = f.store.read_credentials(&app).await.unwrap()?;
    Some(CredentialsDocument::parse(&body, &app).expect("the document is valid"))
}

fn listed(doc: &CredentialsDocument) -> Vec<(String, ScrapeAuth)> {
    doc.bindings
        .iter()
        .map(|b| (b.binding_id.clone(), b.auth))
        .collect()
}

/// Every object of the test bucket (the writers' record included) and its content.
async fn bucket_objects(f: &Fixture) -> Vec<(String, String)> {
    let mut objects = Vec::new();
    let listing = f
        .store
        .client()
        .list_objects_v2()
        .bucket(f.store.bucket())
        .send()
        .await
        .unwrap();
    for object in listing.contents() {
        let key = object.key().unwrap().to_owned();
        let body = f
            .store
            .client()
            .get_object()
            .bucket(f.store.bucket())
            .key(&key)
            .send()
            .await
            .unwrap()
            .body
            .collect()
            .await
            .unwrap()
            .into_bytes();
        objects.push((key, String::from_utf8_lossy(&body).into_owned()));
    }
    objects
}

async fn a_token_binding_answers_its_derived_token_and_the_bucket_never_holds_it(db: Database) {
    let f = Fixture::start_with(db, with_key()).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    let params = json!({"auth": "token"});
    let token = token_of("b-1");
    let expected = json!({
        "auth": "token",
        "job": "web-shop",
        "metrics_path": "/metrics",
        "token": token,
        "authorization_header": format!("Bearer {token}"),
    });
    assert_eq!(
        f.bind("si-1", "b-1", WEB_SHOP, params.clone()).await,
        (StatusCode::CREATED, json!({"credentials": expected}))
    );
    assert_eq!(
        f.bind("si-1", "b-1", WEB_SHOP, params.clone()).await,
        (StatusCode::OK, json!({"credentials": expected})),
        "an identical bind answers the same credentials"
    );
    let (status, body) = send(f.osb(Method::GET, &binding_path("si-1", "b-1"))).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(body, json!({"credentials": expected, "parameters": params}));

    assert_eq!(
        f.bucket_keys().await,
        [
            format!("test-region/active/{WEB_SHOP}.json"),
            format!("test-region/credentials/{WEB_SHOP}.json"),
        ]
    );
    let doc = document(&f, WEB_SHOP).await.unwrap();
    assert_eq!(listed(&doc), [("b-1".to_owned(), ScrapeAuth::Token)]);
    for (key, body) in bucket_objects(&f).await {
        assert!(!body.contains(&token), "the token is in {key}: {body}");
    }

    // A new binding of the same app gets another token.
    let (status, other) = f.bind("si-1", "b-2", WEB_SHOP, params).await;
    assert_eq!(status, StatusCode::CREATED);
    assert_eq!(other["credentials"]["token"], json!(token_of("b-2")));
    assert_ne!(other["credentials"]["token"], json!(token));
}

async fn an_app_keeps_its_credentials_document_until_its_last_token_binding_goes(db: Database) {
    let f = Fixture::start_with(db, with_key()).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    for (binding, auth) in [("b-1", "token"), ("b-2", "token"), ("b-3", "app_guid")] {
        let (status, body) = f
            .bind("si-1", binding, WEB_SHOP, json!({"auth": auth}))
            .await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    let doc = document(&f, WEB_SHOP).await.unwrap();
    assert_eq!(
        listed(&doc),
        [
            ("b-1".to_owned(), ScrapeAuth::Token),
            ("b-2".to_owned(), ScrapeAuth::Token),
            ("b-3".to_owned(), ScrapeAuth::AppGuid),
        ],
        "all bindings, oldest first"
    );
    let generation = f.record().await.unwrap().generation;

    // Unbinding the oldest: the next oldest's token takes over, the target stays.
    assert_eq!(f.unbind("si-1", "b-1").await.0, StatusCode::OK);
    let doc = document(&f, WEB_SHOP).await.unwrap();
    assert_eq!(doc.oldest().binding_id, "b-2");
    assert_eq!(doc.bindings.len(), 2);
    assert!(
        f.file(gds_store::TargetState::Active, WEB_SHOP)
            .await
            .is_some()
    );
    assert!(
        f.record().await.unwrap().generation > generation,
        "the writers' record was not published after the document changed"
    );

    // No token binding left: no document, the target stays for b-3.
    assert_eq!(f.unbind("si-1", "b-2").await.0, StatusCode::OK);
    assert_eq!(document(&f, WEB_SHOP).await, None);
    assert_eq!(
        f.bucket_keys().await,
        [format!("test-region/active/{WEB_SHOP}.json")]
    );
    assert_eq!(f.unbind("si-1", "b-3").await.0, StatusCode::OK);
    assert!(f.bucket_keys().await.is_empty());
}

async fn the_auth_parameter_is_validated_and_a_token_needs_a_configured_key(db: Database) {
    let f = Fixture::start(db).await;
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    let (status, body) = f
        .bind("si-1", "b-1", WEB_SHOP, json!({"auth": "password"}))
        .await;
    assert_eq!(status, StatusCode::BAD_REQUEST);
    let description = body["description"].as_str().unwrap();
    assert!(
        description.contains("`auth`") && description.contains("\"token\""),
        "{description}"
    );
    let (status, body) = f
        .bind("si-1", "b-1", WEB_SHOP, json!({"auth": "token"}))
        .await;
    assert_eq!(status, StatusCode::UNPROCESSABLE_ENTITY, "{body}");
    assert!(
        body["description"]
            .as_str()
            .unwrap()
            .contains("SCRAPE_TOKEN_KEY"),
        "{body}"
    );
    assert!(f.bucket_keys().await.is_empty());
    // The default still works without a key.
    assert_eq!(
        f.bind("si-1", "b-1", WEB_SHOP, json!({"auth": "app_guid"}))
            .await
            .0,
        StatusCode::CREATED
    );
}

/// Every line the broker logs at debug level during binds, rebinds, fetches and unbinds
/// of token bindings: none holds a token (nor the key).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn no_broker_log_line_holds_a_token_or_the_key_at_debug_level() {
    let f = Fixture::start_with(Database::Sqlite, with_key()).await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("broker.log");
    let mut command = Command::new("sh");
    command
        .args(["-c", r#"exec "$0" 2>"$1""#])
        .arg(bin_path("broker"))
        .arg(&log)
        .envs(f.broker_env().iter().map(|(k, v)| (k.as_str(), v.as_str())))
        .env("RUST_LOG", "debug");
    let broker = start_command(command, "broker");
    let body = |app: &str, parameters: Value| bind_body(app, parameters);
    assert_eq!(f.provision("si-1").await.0, StatusCode::CREATED);
    for (binding, app) in [("b-1", WEB_SHOP), ("b-2", WEB_SHOP), ("b-3", API_APP)] {
        for _ in 0..2 {
            let (status, _) = send(
                f.osb_at(&broker, Method::PUT, &binding_path("si-1", binding))
                    .json(&body(app, json!({"auth": "token"}))),
            )
            .await;
            assert!(status.is_success(), "{status}");
        }
        let (status, _) =
            send(f.osb_at(&broker, Method::GET, &binding_path("si-1", binding))).await;
        assert_eq!(status, StatusCode::OK);
    }
    for binding in ["b-1", "b-2", "b-3"] {
        assert_eq!(
            f.unbind_at(&broker, "si-1", binding).await.0,
            StatusCode::OK
        );
    }
    drop(broker);
    let text = std::fs::read_to_string(&log).unwrap();
    assert!(
        text.lines().count() > 20 && text.contains("DEBUG"),
        "the broker did not log at debug level: {text}"
    );
    for binding in ["b-1", "b-2", "b-3"] {
        let token = token_of(binding);
        for line in text.lines() {
            assert!(!line.contains(&token), "a log line holds the token: {line}");
        }
    }
    assert!(!text.contains(KEY), "a log line holds the key");
}
