//! The cut-over from the old broker (cf_app_discovery): its bindings live only in the
//! Cloud Controller and its files in the bucket; this broker's database is empty.
//! `updater --import-bindings` records them (dry run first, then for real, then again:
//! nothing), `updater --once` adopts the files without deleting any, and an unbind
//! through this broker of an imported binding removes its app's files. A Cloud Controller
//! failure during the import records nothing.

use gds_store::{Bytes, TargetState, TargetStore};
use gds_targets::AppGuid;
use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::broker::support::{Database, Fixture, Options, PLAN_ID, SERVICE_ID, on_both_databases};
use crate::updater::{Exit, UpdaterEnv};

/// The old broker's instances and bindings (the Cloud Controller's GUIDs).
const SI_1: &str = "51000000-0000-4000-8000-000000000001";
const SI_2: &str = "51000000-0000-4000-8000-000000000002";
const SI_FAILED: &str = "51000000-0000-4000-8000-00000000000f";
const SI_OTHER_SERVICE: &str = "51000000-0000-4000-8000-0000000000aa";
const B_WEB: &str = "b1000000-0000-4000-8000-000000000001";
const B_BATCH: &str = "b1000000-0000-4000-8000-000000000002";
const B_API: &str = "b1000000-0000-4000-8000-000000000003";
const B_FAILED: &str = "b1000000-0000-4000-8000-00000000000f";
const B_KEY: &str = "b1000000-0000-4000-8000-0000000000cc";
const B_OTHER_SERVICE: &str = "b1000000-0000-4000-8000-0000000000aa";

/// What the old broker wrote: the content does not matter, only that files are there.
const OLD_CONTENT: &str = r#"[{"targets":["old.example.com"],"labels":{"job":"old"}}]"#;

struct OldWorld {
    web_shop: String,
    api: String,
    batch_worker: String,
    exporter: String,
}

async fn sim(f: &Fixture, method: Method, path: &str, body: Value) -> Value {
    f.sim_control(method, path, body).await
}

/// The simulator with the demo apps, the old broker's offering, instances and bindings
/// (plus a failed binding, a service key and another service's binding, none of which
/// are ours to import), and the old broker's files; an empty database.
async fn old_world(db: Database) -> (Fixture, OldWorld) {
    let f = Fixture::start_with(
        db,
        Options {
            sim_args: Vec::new(),
            env: Vec::new(),
        },
    )
    .await;
    let demo = sim(&f, Method::POST, "/sim/demo", json!({})).await;
    let space = demo["space_guid"].as_str().unwrap().to_owned();
    let app = |name: &str| demo["apps"][name].as_str().unwrap().to_owned();
    let world = OldWorld {
        web_shop: app("web-shop"),
        api: app("api"),
        batch_worker: app("batch-worker"),
        exporter: app("paas-metric-exporter"),
    };
    let ours = sim(
        &f,
        Method::POST,
        "/sim/service_offerings",
        json!({"name": "gds-prometheus", "broker_catalog_id": SERVICE_ID, "broker_name": "gds-prometheus",
               "plans": [{"name": "prometheus", "broker_catalog_id": PLAN_ID}]}),
    )
    .await;
    let plan = ours["service_plans"][0]["guid"]
        .as_str()
        .unwrap()
        .to_owned();
    let theirs = sim(
        &f,
        Method::POST,
        "/sim/service_offerings",
        json!({"name": "postgres", "broker_catalog_id": "rds-postgres", "broker_name": "rds",
               "plans": [{"name": "small", "broker_catalog_id": "rds-small"}]}),
    )
    .await;
    let other_plan = theirs["service_plans"][0]["guid"]
        .as_str()
        .unwrap()
        .to_owned();
    for (guid, name, plan, last_operation) in [
        (SI_1, "my-prom", &plan, json!(null)),
        (SI_2, "team-prom", &plan, json!(null)),
        (
            SI_FAILED,
            "broken-prom",
            &plan,
            json!({"type": "create", "state": "failed"}),
        ),
        (SI_OTHER_SERVICE, "db", &other_plan, json!(null)),
    ] {
        let mut body = json!({"guid": guid, "name": name, "plan_guid": plan, "space_guid": space});
        if !last_operation.is_null() {
            body["last_operation"] = last_operation;
        }
        sim(&f, Method::POST, "/sim/service_instances", body).await;
    }
    for (guid, instance, app, extra) in [
        (B_WEB, SI_1, Some(&world.web_shop), json!({})),
        (B_BATCH, SI_1, Some(&world.batch_worker), json!({})),
        (B_API, SI_2, Some(&world.api), json!({})),
        (
            B_FAILED,
            SI_2,
            Some(&world.exporter),
            json!({"last_operation": {"type": "create", "state": "failed"}}),
        ),
        (B_KEY, SI_1, None, json!({"type": "key", "name": "a-key"})),
        (
            B_OTHER_SERVICE,
            SI_OTHER_SERVICE,
            Some(&world.exporter),
            json!({}),
        ),
    ] {
        let mut body = json!({"guid": guid, "service_instance_guid": instance});
        if let Some(app) = app {
            body["app_guid"] = json!(app);
        }
        for (k, v) in extra.as_object().unwrap() {
            body[k] = v.clone();
        }
        sim(&f, Method::POST, "/sim/service_credential_bindings", body).await;
    }
    for (state, app) in [
        (TargetState::Active, &world.web_shop),
        (TargetState::Active, &world.api),
        (TargetState::Inactive, &world.batch_worker),
    ] {
        f.store
            .write_app(
                state,
                &guid(app),
                Bytes::from_static(OLD_CONTENT.as_bytes()),
            )
            .await
            .expect("writing an old file");
    }
    (f, world)
}

fn guid(s: &str) -> AppGuid {
    AppGuid::parse(s).expect("a valid guid")
}

/// `updater ARGS` with the import's settings: the updater's fixture plus the old broker's
/// catalog ids; `extra` overrides (an empty value removes the variable).
async fn updater(f: &Fixture, args: &[&str], extra: &[(&str, &str)]) -> Exit {
    UpdaterEnv::of(f)
        .with(&[
            ("SERVICE_ID", SERVICE_ID),
            ("SERVICE_NAME", "gds-prometheus"),
            ("PLAN_ID", PLAN_ID),
        ])
        .with(extra)
        .run(args)
        .await
}

fn succeeded(exit: &Exit, what: &str) {
    assert_eq!(
        exit.code,
        Some(0),
        "{what} failed:\nstdout: {}\nstderr: {}",
        exit.stdout,
        exit.stderr
    );
}

/// The database holds no instance and no binding.
async fn assert_nothing_recorded(f: &Fixture) {
    let db = f.db().await;
    assert_eq!(db.all_bindings().await.unwrap(), Vec::new());
    for instance in [SI_1, SI_2, SI_FAILED, SI_OTHER_SERVICE] {
        assert_eq!(db.instance(instance).await.unwrap(), None, "{instance}");
    }
    db.close().await;
}

async fn groups(f: &Fixture, state: TargetState, app: &str) -> Option<Vec<Value>> {
    f.file(state, app).await.map(|body| {
        serde_json::from_slice::<Vec<Value>>(&body).expect("a target file is a JSON array")
    })
}

on_both_databases!(
    the_old_brokers_bindings_are_imported_once_and_their_files_adopted,
    a_cloud_controller_failure_or_a_wrong_catalog_id_imports_nothing
);

async fn the_old_brokers_bindings_are_imported_once_and_their_files_adopted(db: Database) {
    let (f, world) = old_world(db).await;
    let old_keys = f.bucket_keys().await;
    assert_eq!(old_keys.len(), 3, "{old_keys:?}");

    // A dry run lists what it would import, and records nothing.
    let dry = updater(&f, &["--import-bindings", "--dry-run"], &[]).await;
    succeeded(&dry, "--import-bindings --dry-run");
    for line in [
        format!("service instance {SI_1} (\"my-prom\""),
        format!(
            "binding {B_WEB} (app {}, service instance {SI_1}): would import",
            world.web_shop
        ),
        format!(
            "binding {B_BATCH} (app {}, service instance {SI_1}): would import",
            world.batch_worker
        ),
        format!(
            "binding {B_API} (app {}, service instance {SI_2}): would import",
            world.api
        ),
        format!("skipped service instance {SI_FAILED}"),
        format!("skipped binding {B_FAILED}"),
        "dry run: would import 2 of 2 service instance(s) and 3 of 3 app binding(s)".into(),
    ] {
        assert!(dry.stdout.contains(&line), "{line:?} in:\n{}", dry.stdout);
    }
    for absent in [B_KEY, B_OTHER_SERVICE, SI_OTHER_SERVICE] {
        assert!(!dry.stdout.contains(absent), "{absent} in:\n{}", dry.stdout);
    }
    assert_nothing_recorded(&f).await;

    // The import, one resource per page (every list is read to its last page).
    let import = updater(&f, &["--import-bindings"], &[("CF_PAGE_SIZE", "1")]).await;
    succeeded(&import, "--import-bindings");
    assert!(
        import
            .stdout
            .contains("imported 2 of 2 service instance(s) and 3 of 3 app binding(s)"),
        "{}",
        import.stdout
    );
    let db = f.db().await;
    let si = db.instance(SI_1).await.unwrap().expect("SI_1 recorded");
    assert_eq!(
        (si.service_id.as_str(), si.plan_id.as_str()),
        (SERVICE_ID, PLAN_ID)
    );
    assert_eq!(db.instance(SI_FAILED).await.unwrap(), None);
    let mut bindings: Vec<(String, String, String, String)> = db
        .all_bindings()
        .await
        .unwrap()
        .into_iter()
        .map(|b| {
            (
                b.binding_id,
                b.instance_id,
                b.app_guid.to_string(),
                b.parameters,
            )
        })
        .collect();
    bindings.sort();
    let expected = |b: &str, si: &str, app: &str| {
        (b.to_owned(), si.to_owned(), app.to_owned(), "{}".to_owned())
    };
    assert_eq!(
        bindings,
        [
            expected(B_WEB, SI_1, &world.web_shop),
            expected(B_BATCH, SI_1, &world.batch_worker),
            expected(B_API, SI_2, &world.api),
        ]
    );
    db.close().await;
    // The import writes no file.
    assert_eq!(f.bucket_keys().await, old_keys);

    // Again: nothing new.
    let again = updater(&f, &["--import-bindings"], &[]).await;
    succeeded(&again, "the second --import-bindings");
    assert!(
        again.stdout.contains(
            "imported 0 of 2 service instance(s) and 0 of 3 app binding(s); already recorded: 2 instance(s), 3 binding(s)"
        ),
        "{}",
        again.stdout
    );

    // A pass deletes nothing and rewrites every file in this broker's format.
    let pass = updater(&f, &["--once"], &[]).await;
    succeeded(&pass, "updater --once");
    assert_eq!(f.bucket_keys().await, old_keys, "{}", pass.stdout);
    let web = groups(&f, TargetState::Active, &world.web_shop)
        .await
        .expect("active/web-shop");
    assert_eq!(web.len(), 2, "web-shop runs 2 instances: {web:?}");
    assert_eq!(web[0]["labels"]["job"], "web-shop");
    assert_eq!(web[0]["labels"]["org"], "demo-org");
    assert_eq!(web[1]["labels"]["__param_cf_app_instance_index"], "1");
    assert_eq!(
        groups(&f, TargetState::Active, &world.api)
            .await
            .unwrap()
            .len(),
        3
    );
    let batch = groups(&f, TargetState::Inactive, &world.batch_worker)
        .await
        .expect("inactive/batch-worker");
    assert_eq!(batch[0]["labels"]["job"], "batch-worker");

    // The platform's unbind of an imported binding removes its app's files; an imported
    // instance unbound and deprovisioned is found (not 410).
    let (status, body) = f.unbind(SI_1, B_WEB).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(f.file(TargetState::Active, &world.web_shop).await, None);
    assert_eq!(f.file(TargetState::Inactive, &world.web_shop).await, None);
    let (status, body) = f.unbind(SI_2, B_API).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    let (status, body) = f.deprovision(SI_2).await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(f.file(TargetState::Active, &world.api).await, None);
    // batch-worker is still bound: its file stays.
    assert!(
        f.file(TargetState::Inactive, &world.batch_worker)
            .await
            .is_some()
    );
}

async fn a_cloud_controller_failure_or_a_wrong_catalog_id_imports_nothing(db: Database) {
    let (f, _world) = old_world(db).await;

    // The bindings cannot be read, every time: the instances read before are not recorded.
    sim(
        &f,
        Method::POST,
        "/sim/faults",
        json!({"path_prefix": "/v3/service_credential_bindings", "status": 500, "count": 0}),
    )
    .await;
    let failed = updater(&f, &["--import-bindings"], &[]).await;
    assert_eq!(failed.code, Some(1), "{}\n{}", failed.stdout, failed.stderr);
    assert!(
        failed.stderr.contains("nothing was recorded")
            && failed.stderr.contains("listing the app bindings")
            && failed
                .stderr
                .contains("GET /v3/service_credential_bindings"),
        "{}",
        failed.stderr
    );
    assert_nothing_recorded(&f).await;
    sim(&f, Method::DELETE, "/sim/faults", json!({})).await;

    // Catalog ids the Cloud Controller does not know: a clear error naming what it has.
    let wrong = updater(
        &f,
        &["--import-bindings"],
        &[("SERVICE_ID", "not-the-old-brokers-id")],
    )
    .await;
    assert_eq!(wrong.code, Some(1), "{}", wrong.stderr);
    assert!(
        wrong.stderr.contains(&format!(
            "gds-prometheus has broker_catalog.id {SERVICE_ID}"
        )),
        "{}",
        wrong.stderr
    );
    let wrong_plan = updater(&f, &["--import-bindings"], &[("PLAN_ID", "not-the-plan")]).await;
    assert_eq!(wrong_plan.code, Some(1), "{}", wrong_plan.stderr);
    assert!(
        wrong_plan
            .stderr
            .contains("no plan with broker_catalog.id not-the-plan"),
        "{}",
        wrong_plan.stderr
    );
    // A missing id is a configuration error (exit 2) naming it.
    let missing = updater(&f, &["--import-bindings", "--dry-run"], &[("PLAN_ID", "")]).await;
    assert_eq!(missing.code, Some(2), "{}", missing.stderr);
    assert!(missing.stderr.contains("PLAN_ID"), "{}", missing.stderr);
    assert_nothing_recorded(&f).await;
}
