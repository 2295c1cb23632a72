//! The updater reconciles the scrape credentials documents (`credentials/<app_guid>.json`)
//! against moto: a document the broker should have left (missing, stale, corrupted) is
//! written back with exactly the broker's bytes, one nobody should have is removed, the
//! target files are left alone, and an app unbound behind the broker's back loses its
//! document only with (after) its target files.

use std::collections::BTreeMap;

use gds_store::{Bytes, TargetState, TargetStore};
use gds_targets::AppGuid;
use reqwest::StatusCode;
use serde_json::json;

use crate::broker::support::{
    API_APP, BATCH_WORKER, Database, Fixture, Options, WEB_SHOP, on_both_databases,
};
use crate::updater::run_updater;

on_both_databases!(a_full_pass_puts_back_exactly_the_credentials_documents_the_bindings_call_for);

const KEY: &str = "integration-test-scrape-token-key-0123456789";
const INSTANCE: &str = "credentials-si";

/// An app nobody is bound to (the simulator does not know it either).
const STRAY: &str = "5d1e0c3a-7b2f-4c11-9a0e-00000000c0de";

fn guid(s: &str) -> AppGuid {
    AppGuid::parse(s).expect("a valid guid")
}

/// A broker with a scrape token key, and bindings: web-shop with a token binding and an
/// `app_guid` one, api with a token binding, batch-worker with an `app_guid` one only.
async fn bound(db: Database) -> Fixture {
    let f = Fixture::start_with(
        db,
        Options {
            env: vec![("SCRAPE_TOKEN_KEY".into(), KEY.into())],
            ..Options::default()
        },
    )
    .await;
    assert_eq!(f.provision(INSTANCE).await.0, StatusCode::CREATED);
    for (binding, app, auth) in [
        ("b-1", WEB_SHOP, "token"),
        ("b-2", WEB_SHOP, "app_guid"),
        ("b-3", API_APP, "token"),
        ("b-4", BATCH_WORKER, "app_guid"),
    ] {
        let (status, body) = f.bind(INSTANCE, binding, app, json!({"auth": auth})).await;
        assert_eq!(status, StatusCode::CREATED, "{body}");
    }
    f
}

/// Every credentials document in the bucket, by app, with its bytes.
async fn documents(f: &Fixture) -> BTreeMap<String, Vec<u8>> {
    let mut docs = BTreeMap::new();
    for listed in f
        .store
        .list_credentials()
        .await
        .expect("listing credentials/")
    {
        let (body, _) = f
            .store
            .read_credentials(&listed.app_guid)
            .await
            .unwrap()
            .expect("a listed document");
        docs.insert(listed.app_guid.to_string(), body.to_vec());
    }
    docs
}

/// Every target file in the bucket (`active/...`, `inactive/...`) with its bytes.
async fn target_files(f: &Fixture) -> BTreeMap<String, Vec<u8>> {
    let mut files = BTreeMap::new();
    for state in TargetState::ALL {
        for target in f.store.list_apps(state).await.expect("listing targets") {
            let body = f
                .file(state, target.app_guid.as_str())
                .await
                .expect("a listed file");
            files.insert(format!("{state}/{}", target.app_guid), body);
        }
    }
    files
}

/// The last line of a successful `updater --once`.
async fn once(f: &Fixture) -> String {
    let exit = run_updater(f, &["--once"], &[]).await;
    assert_eq!(
        exit.code,
        Some(0),
        "updater --once failed:\nstdout: {}\nstderr: {}",
        exit.stdout,
        exit.stderr
    );
    exit.stdout.lines().last().unwrap_or_default().to_owned()
}

async fn a_full_pass_puts_back_exactly_the_credentials_documents_the_bindings_call_for(
    db: Database,
) {
    let f = bound(db).await;
    // What the broker wrote: a document for each app with a token binding, none for
    // batch-worker.
    let written = documents(&f).await;
    assert_eq!(
        written.keys().map(String::as_str).collect::<Vec<_>>(),
        [WEB_SHOP, API_APP]
    );
    let targets = target_files(&f).await;
    assert_eq!(targets.len(), 3, "{:?}", targets.keys());
    let record = f.record().await.expect("the binds published a record");

    // The bucket goes wrong behind the broker's back: web-shop's document vanishes,
    // api's is corrupted, batch-worker (no token binding) and an unbound app get one.
    f.store.remove_credentials(&guid(WEB_SHOP)).await.unwrap();
    f.store
        .write_credentials(&guid(API_APP), Bytes::from_static(b"{\"format\":1"))
        .await
        .unwrap();
    for app in [BATCH_WORKER, STRAY] {
        let planted = written[WEB_SHOP].clone();
        f.store
            .write_credentials(&guid(app), Bytes::from(planted))
            .await
            .unwrap();
    }

    let summary = once(&f).await;
    assert!(
        summary.starts_with("updater: full pass succeeded")
            && summary
                .contains(": 4 action(s) applied (remove_credentials 2, write_credentials 2)"),
        "{summary}"
    );
    assert_eq!(
        documents(&f).await,
        written,
        "credentials/ is not exactly what the broker wrote"
    );
    assert_eq!(target_files(&f).await, targets, "a target file changed");
    // The pass changed credentials/, so it published the record (sd-sync re-reads it).
    let published = f.record().await.unwrap();
    assert_eq!(published.writer, "updater");
    assert_eq!(published.generation, record.generation + 1);
    assert_eq!(published.active_count, record.active_count);

    // Nothing left to do.
    let again = once(&f).await;
    assert!(again.contains(": 0 action(s) applied"), "{again}");
    assert_eq!(f.record().await.unwrap(), published);
}

/// Bindings deleted in the database (not through the broker), so the broker removed
/// neither the target file nor the credentials document: one pass removes both.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_unbound_in_the_database_loses_its_target_file_and_its_credentials_document() {
    let f = bound(Database::Sqlite).await;
    let db = f.db().await;
    let mut tx = db.lock_app(&guid(API_APP)).await.unwrap();
    tx.delete_binding("b-3").await.unwrap().expect("bound");
    tx.commit().await.unwrap();
    db.close().await;
    let before = documents(&f).await;

    let summary = once(&f).await;
    assert!(
        summary.contains(": 2 action(s) applied (remove 1, remove_credentials 1)"),
        "{summary}"
    );
    assert_eq!(f.file(TargetState::Active, API_APP).await, None);
    let mut expected = before;
    expected.remove(API_APP);
    assert_eq!(documents(&f).await, expected);
    assert_eq!(
        documents(&f)
            .await
            .keys()
            .map(String::as_str)
            .collect::<Vec<_>>(),
        [WEB_SHOP]
    );
}
