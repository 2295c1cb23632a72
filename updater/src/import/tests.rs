//! The import's choices (which offering, which instances and bindings) and its writes
//! against a real (SQLite) database: idempotent, never overwriting, dry runs write nothing.

use super::*;
use gds_cf::LastOperation;
use gds_db::ConnectOptions;
use gds_db::conformance::app;

fn ids() -> CatalogIds {
    CatalogIds {
        service_id: "svc".into(),
        service_name: "gds-prometheus".into(),
        plan_id: "plan".into(),
    }
}

fn offering(guid: &str, name: &str) -> ServiceOffering {
    ServiceOffering {
        guid: guid.into(),
        name: name.into(),
        broker_catalog_id: "svc".into(),
        broker_guid: Some(format!("broker-of-{guid}")),
    }
}

fn op(kind: &str, state: &str) -> Option<LastOperation> {
    Some(LastOperation {
        kind: kind.into(),
        state: state.into(),
    })
}

fn instance(guid: &str, last_operation: Option<LastOperation>) -> ServiceInstance {
    ServiceInstance {
        guid: guid.into(),
        name: format!("name-{guid}"),
        space_guid: "space".into(),
        organization_guid: "org".into(),
        plan_guid: Some("plan-guid".into()),
        last_operation,
        created_at: "2024-01-01T00:00:00Z".into(),
    }
}

fn binding(
    guid: &str,
    instance: &str,
    app: Option<&str>,
    last_operation: Option<LastOperation>,
) -> CredentialBinding {
    CredentialBinding {
        guid: guid.into(),
        name: None,
        app_guid: app.map(str::to_owned),
        service_instance_guid: instance.into(),
        last_operation,
        created_at: "2024-01-01T00:00:00Z".into(),
    }
}

#[test]
fn the_offering_is_the_one_with_our_catalog_id_and_name() {
    assert_eq!(choose_offering(vec![], &ids()).unwrap(), None);
    let ours = offering("o1", "GDS-Prometheus");
    assert_eq!(
        choose_offering(vec![offering("o0", "other"), ours.clone()], &ids()).unwrap(),
        Some(ours)
    );
    let misnamed = choose_offering(vec![offering("o0", "other")], &ids()).unwrap_err();
    assert!(
        misnamed.to_string().contains("is named \"other\""),
        "{misnamed}"
    );
    let ambiguous = choose_offering(
        vec![
            offering("o1", "gds-prometheus"),
            offering("o2", "gds-prometheus"),
        ],
        &ids(),
    )
    .unwrap_err();
    assert!(
        ambiguous.to_string().contains("broker-of-o1, broker-of-o2"),
        "{ambiguous}"
    );
}

#[test]
fn no_offering_says_what_the_cloud_controller_has_instead() {
    let mut other = offering("o1", "gds-prometheus");
    other.broker_catalog_id = "old-id".into();
    let message = no_offering(&ids(), &[other]);
    assert!(
        message.contains("gds-prometheus has broker_catalog.id old-id"),
        "{message}"
    );
    assert!(no_offering(&ids(), &[]).contains("nor one named gds-prometheus"));
}

#[test]
fn only_completed_instances_and_app_bindings_of_them_are_imported() {
    let (instances, skipped) = select_instances(vec![
        instance("si-1", op("create", "succeeded")),
        instance("si-2", None),
        instance("si-3", op("create", "failed")),
        instance("si-4", op("update", "failed")),
        instance("si-5", op("create", "in progress")),
    ]);
    let kept: Vec<&str> = instances.iter().map(|i| i.guid.as_str()).collect();
    assert_eq!(kept, ["si-1", "si-2", "si-4"]);
    assert_eq!(skipped.len(), 2, "{skipped:?}");

    let a = app(1).to_string();
    let (bindings, skipped) = select_bindings(
        &instances,
        vec![
            binding("b-1", "si-1", Some(&a), op("create", "succeeded")),
            binding("b-2", "si-2", Some(&a), None),
            binding("b-3", "si-1", Some(&a), op("create", "failed")),
            binding("b-4", "si-1", None, None),
            binding("b-5", "si-3", Some(&a), None),
            binding("b-6", "si-1", Some("not-a-guid"), None),
            binding("b-7", "si-4", Some(&a), op("delete", "failed")),
        ],
    );
    let kept: Vec<&str> = bindings.iter().map(|(b, _)| b.guid.as_str()).collect();
    assert_eq!(kept, ["b-1", "b-2", "b-7"]);
    assert!(bindings.iter().all(|(_, app_guid)| *app_guid == app(1)));
    let reasons = skipped.join("\n");
    for why in [
        "b-3 (app",
        "has not succeeded (create failed)",
        "binds no app",
        "is not one of ours",
        "app GUID is invalid",
    ] {
        assert!(reasons.contains(why), "{why} in {reasons}");
    }
}

async fn db(dir: &tempfile::TempDir) -> Db {
    let url = format!("sqlite://{}/broker.db?mode=rwc", dir.path().display());
    Db::connect(&url, ConnectOptions::default()).await.unwrap()
}

fn inventory() -> Inventory {
    let instances = vec![instance("si-1", None), instance("si-2", None)];
    let bindings = vec![
        (binding("b-1", "si-1", Some(app(1).as_str()), None), app(1)),
        (binding("b-2", "si-1", Some(app(2).as_str()), None), app(2)),
        (binding("b-3", "si-2", Some(app(1).as_str()), None), app(1)),
    ];
    Inventory {
        offering: offering("o", "gds-prometheus"),
        plan: ServicePlan {
            guid: "plan-guid".into(),
            name: "prometheus".into(),
            broker_catalog_id: "plan".into(),
            offering_guid: Some("o".into()),
        },
        instances,
        bindings,
        skipped: vec!["binding x: a reason".into()],
    }
}

fn fates<T>(items: &[(T, Fate)]) -> Vec<Fate> {
    items.iter().map(|(_, f)| *f).collect()
}

#[tokio::test]
async fn a_dry_run_writes_nothing_and_an_import_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir).await;

    let dry = import(&db, &ids(), inventory(), true).await.unwrap();
    assert_eq!(fates(&dry.instances), [Fate::Import; 2]);
    assert_eq!(fates(&dry.bindings), [Fate::Import; 3]);
    assert!(db.all_bindings().await.unwrap().is_empty());
    assert!(db.instance("si-1").await.unwrap().is_none());
    let text = dry.to_string();
    assert!(text.contains("binding b-2 (app"), "{text}");
    assert!(text.contains(": would import\n"), "{text}");
    assert!(text.contains("skipped binding x: a reason"), "{text}");
    assert!(
        text.ends_with("dry run: would import 2 of 2 service instance(s) and 3 of 3 app binding(s); already recorded: 0 instance(s), 0 binding(s); recorded differently (left as they are): 0 instance(s), 0 binding(s); skipped: 1\n"),
        "{text}"
    );

    let first = import(&db, &ids(), inventory(), false).await.unwrap();
    assert_eq!(
        (first.imported_instances(), first.imported_bindings()),
        (2, 3)
    );
    let si = db.instance("si-1").await.unwrap().unwrap();
    assert_eq!(
        (si.service_id.as_str(), si.plan_id.as_str()),
        ("svc", "plan")
    );
    assert_eq!(
        (si.organization_guid.as_str(), si.space_guid.as_str()),
        ("org", "space")
    );
    assert_eq!(si.parameters, "{}");
    let b = db.binding("b-2").await.unwrap().unwrap();
    assert_eq!(
        (b.instance_id.as_str(), &b.app_guid, b.parameters.as_str()),
        ("si-1", &app(2), "{}")
    );
    assert_eq!(db.bindings_of_app(&app(1)).await.unwrap().len(), 2);

    let second = import(&db, &ids(), inventory(), false).await.unwrap();
    assert_eq!(fates(&second.instances), [Fate::Recorded; 2]);
    assert_eq!(fates(&second.bindings), [Fate::Recorded; 3]);
    assert!(
        second.summary().starts_with("imported 0 of 2"),
        "{}",
        second.summary()
    );
}

#[tokio::test]
async fn what_is_recorded_differently_is_left_as_it_is() {
    let dir = tempfile::tempdir().unwrap();
    let db = db(&dir).await;
    // Bound through this broker since the cut-over, with parameters, and an instance
    // provisioned with other attributes under the same id.
    let mut si = new_instance(&ids(), &instance("si-1", None));
    si.space_guid = "another-space".into();
    db.create_instance(&si).await.unwrap();
    let mut tx = db.lock_app(&app(2)).await.unwrap();
    tx.insert_binding(&NewBinding {
        binding_id: "b-1".into(),
        instance_id: "si-1".into(),
        parameters: r#"{"path":"/m"}"#.into(),
    })
    .await
    .unwrap();
    tx.commit().await.unwrap();

    let report = import(&db, &ids(), inventory(), false).await.unwrap();
    assert_eq!(
        fates(&report.instances),
        [Fate::RecordedDifferently, Fate::Import]
    );
    assert_eq!(
        fates(&report.bindings),
        [Fate::RecordedDifferently, Fate::Import, Fate::Import]
    );
    let kept = db.binding("b-1").await.unwrap().unwrap();
    assert_eq!(
        (&kept.app_guid, kept.parameters.as_str()),
        (&app(2), r#"{"path":"/m"}"#)
    );
    assert_eq!(
        db.instance("si-1").await.unwrap().unwrap().space_guid,
        "another-space"
    );
}
