//! Apply against a real (SQLite) database and an in-memory store: the per-app re-check
//! that keeps a pass from undoing a concurrent bind or unbind, per-app failures, and no
//! write once the lease cannot be confirmed.

use std::time::{Duration, SystemTime};

use super::*;
use gds_db::conformance::{app, new_binding, new_instance};
use gds_db::{ConnectOptions, Insert};
use gds_reconcile::{Action, Plan, Reason};
use gds_store::{Bytes, ETag, ListHint, MemoryStore, StoreError, StoredTarget};
use gds_targets::AppGuid;

use crate::lease::{LeaseLost, Stamp};

struct World {
    db: Db,
    store: MemoryStore,
    metrics: ReconcileMetrics,
    _dir: tempfile::TempDir,
}

async fn world() -> World {
    let dir = tempfile::tempdir().unwrap();
    let url = format!("sqlite://{}/broker.db?mode=rwc", dir.path().display());
    let db = Db::connect(&url, ConnectOptions::default()).await.unwrap();
    db.create_instance(&new_instance("si-1")).await.unwrap();
    World {
        db,
        store: MemoryStore::new(),
        metrics: ReconcileMetrics::new(),
        _dir: dir,
    }
}

impl World {
    async fn bind(&self, n: u32, binding: &str) {
        self.bind_with(n, binding, "{}").await;
    }

    async fn bind_with(&self, n: u32, binding: &str, parameters: &str) {
        let mut tx = self.db.lock_app(&app(n)).await.unwrap();
        let outcome = tx
            .insert_binding(&new_binding(binding, "si-1", parameters))
            .await
            .unwrap();
        assert!(matches!(outcome, Insert::Created(_)), "{outcome:?}");
        tx.commit().await.unwrap();
    }

    async fn unbind(&self, n: u32, binding: &str) {
        let mut tx = self.db.lock_app(&app(n)).await.unwrap();
        tx.delete_binding(binding).await.unwrap().expect("bound");
        tx.commit().await.unwrap();
    }

    async fn apply(&self, plan: &Plan, newest: &[(u32, &str)], concurrency: usize) -> ApplyOutcome {
        self.apply_with(&self.store, plan, newest, concurrency, &held())
            .await
    }

    async fn apply_with(
        &self,
        store: &dyn TargetStore,
        plan: &Plan,
        newest: &[(u32, &str)],
        concurrency: usize,
        tenure: &Tenure,
    ) -> ApplyOutcome {
        let changes = ChangeTimes::PassStart(SystemTime::now());
        self.apply_since(store, plan, newest, concurrency, tenure, &changes)
            .await
    }

    async fn apply_since(
        &self,
        store: &dyn TargetStore,
        plan: &Plan,
        newest: &[(u32, &str)],
        concurrency: usize,
        tenure: &Tenure,
        changes: &ChangeTimes,
    ) -> ApplyOutcome {
        let newest = newest
            .iter()
            .map(|(n, b)| (app(*n), b.to_string()))
            .collect();
        let batch = Batch {
            plan,
            newest: &newest,
            changes,
        };
        apply(&self.db, store, batch, concurrency, &self.metrics, tenure).await
    }

    /// Observations of `gds_updater_change_latency_seconds{source}`: (count, sum).
    fn change_latency(&self, source: &str) -> (u64, f64) {
        let h = self.metrics.change_latency.with_label_values(&[source]);
        (h.get_sample_count(), h.get_sample_sum())
    }
}

/// A lease just taken (10 s).
fn held() -> Tenure {
    Tenure::new(Stamp::now(), LeaseTiming::for_ttl(Duration::from_secs(10)))
}

/// The memory store, whose lease is lost while its first write is in flight.
#[derive(Debug)]
struct LeaseLapsesDuringFirstWrite<'a> {
    inner: &'a MemoryStore,
    tenure: Tenure,
}

#[async_trait::async_trait]
impl TargetStore for LeaseLapsesDuringFirstWrite<'_> {
    async fn write_app(
        &self,
        state: TargetState,
        app: &AppGuid,
        body: Bytes,
    ) -> Result<ETag, StoreError> {
        let etag = self.inner.write_app(state, app, body).await;
        self.tenure.lose(LeaseLost::TakenOver);
        etag
    }

    async fn read_app(
        &self,
        state: TargetState,
        app: &AppGuid,
    ) -> Result<Option<(Bytes, ETag)>, StoreError> {
        self.inner.read_app(state, app).await
    }

    async fn remove_app(&self, state: TargetState, app: &AppGuid) -> Result<(), StoreError> {
        self.inner.remove_app(state, app).await
    }

    async fn list_apps(&self, state: TargetState) -> Result<Vec<StoredTarget>, StoreError> {
        self.inner.list_apps(state).await
    }

    async fn list_apps_hinted(
        &self,
        state: TargetState,
        hint: Option<&ListHint>,
    ) -> Result<(Vec<StoredTarget>, Option<ListHint>), StoreError> {
        self.inner.list_apps_hinted(state, hint).await
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.inner.check().await
    }

    async fn read_record(&self) -> Result<Option<(Bytes, ETag)>, StoreError> {
        self.inner.read_record().await
    }

    async fn replace_record(
        &self,
        body: Bytes,
        expected: Option<&ETag>,
    ) -> Result<Option<ETag>, StoreError> {
        self.inner.replace_record(body, expected).await
    }

    async fn write_credentials(&self, app: &AppGuid, body: Bytes) -> Result<ETag, StoreError> {
        self.inner.write_credentials(app, body).await
    }

    async fn read_credentials(&self, app: &AppGuid) -> Result<Option<(Bytes, ETag)>, StoreError> {
        self.inner.read_credentials(app).await
    }

    async fn remove_credentials(&self, app: &AppGuid) -> Result<(), StoreError> {
        self.inner.remove_credentials(app).await
    }

    async fn list_credentials(&self) -> Result<Vec<gds_store::StoredCredentials>, StoreError> {
        self.inner.list_credentials().await
    }
}

fn write(n: u32, body: &str) -> Action {
    Action::Write {
        app: app(n),
        name: format!("app-{n}"),
        state: TargetState::Active,
        body: body.as_bytes().to_vec(),
        reason: Reason::Changed,
    }
}

fn plan_of(actions: Vec<Action>) -> Plan {
    Plan {
        actions,
        complete: true,
        ..Plan::default()
    }
}

#[tokio::test]
async fn a_write_planned_before_an_unbind_does_not_resurrect_the_file() {
    let w = world().await;
    w.bind(1, "b-1").await;
    // The pass read binding b-1 and planned a write; then the broker unbinds (and
    // removes the files, of which there were none yet).
    let plan = plan_of(vec![write(1, "[planned]")]);
    w.unbind(1, "b-1").await;
    let outcome = w.apply(&plan, &[(1, "b-1")], 4).await;
    assert_eq!(outcome.superseded, [app(1)]);
    assert!(outcome.applied.is_empty() && outcome.failed.is_empty());
    assert!(w.store.raw_keys().is_empty(), "{:?}", w.store.raw_keys());
}

#[tokio::test]
async fn a_write_planned_before_a_newer_bind_leaves_the_binds_file_alone() {
    let w = world().await;
    w.bind(1, "b-1").await;
    let plan = plan_of(vec![write(1, "[planned]")]);
    // A newer bind writes its own file (with its own parameters) under the lock.
    w.bind(1, "b-2").await;
    w.store
        .write_app(TargetState::Active, &app(1), Bytes::from_static(b"[bind]"))
        .await
        .unwrap();
    let outcome = w.apply(&plan, &[(1, "b-1")], 4).await;
    assert_eq!(outcome.superseded, [app(1)]);
    let (body, _) = w
        .store
        .read_app(TargetState::Active, &app(1))
        .await
        .unwrap()
        .unwrap();
    assert_eq!(&body[..], b"[bind]");
}

#[tokio::test]
async fn a_stray_file_bound_during_the_pass_is_not_removed() {
    let w = world().await;
    w.store
        .write_app(TargetState::Active, &app(1), Bytes::from_static(b"[bind]"))
        .await
        .unwrap();
    let plan = plan_of(vec![Action::Remove {
        app: app(1),
        state: TargetState::Active,
        reason: Reason::Unbound,
    }]);
    w.bind(1, "b-1").await;
    let outcome = w.apply(&plan, &[], 4).await;
    assert_eq!(outcome.superseded, [app(1)]);
    assert_eq!(
        w.store.raw_keys(),
        ["active/00000000-0000-4000-8000-000000000001.json"]
    );
}

#[tokio::test]
async fn unchanged_bindings_let_every_action_through_in_order_and_orphans_are_marked() {
    let w = world().await;
    w.bind(1, "b-1").await;
    w.bind(2, "b-2").await;
    w.store
        .write_app(TargetState::Active, &app(1), Bytes::from_static(b"[old]"))
        .await
        .unwrap();
    w.store
        .write_app(
            TargetState::Inactive,
            &app(2),
            Bytes::from_static(b"[gone]"),
        )
        .await
        .unwrap();
    let mut plan = plan_of(vec![
        Action::Move {
            app: app(1),
            name: "app-1".into(),
            from: TargetState::Active,
            to: TargetState::Inactive,
            body: b"[stopped]".to_vec(),
            reason: Reason::Stopped,
        },
        Action::Remove {
            app: app(2),
            state: TargetState::Inactive,
            reason: Reason::AppDeleted,
        },
    ]);
    plan.orphaned = vec![app(2)];
    let outcome = w.apply(&plan, &[(1, "b-1"), (2, "b-2")], 4).await;
    assert!(
        outcome.failed.is_empty() && outcome.superseded.is_empty(),
        "{outcome:?}"
    );
    assert_eq!(
        outcome.applied,
        [("deactivate", 1), ("remove", 1)].into_iter().collect()
    );
    assert_eq!(
        w.store.raw_keys(),
        ["inactive/00000000-0000-4000-8000-000000000001.json"]
    );
    let orphaned = w.db.orphaned_bindings().await.unwrap();
    assert_eq!(orphaned.len(), 1);
    assert_eq!(orphaned[0].binding_id, "b-2");
}

#[tokio::test]
async fn one_failing_app_is_reported_and_the_others_still_apply() {
    let w = world().await;
    w.bind(1, "b-1").await;
    w.bind(2, "b-2").await;
    let plan = plan_of(vec![write(1, "[one]"), write(2, "[two]")]);
    // Apps are applied in GUID order at concurrency 1: the first store call fails.
    w.store.fail_next(1);
    let outcome = w.apply(&plan, &[(1, "b-1"), (2, "b-2")], 1).await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    assert_eq!(outcome.failed[0].0, app(1));
    assert_eq!(outcome.applied, [("write", 1)].into_iter().collect());
    assert_eq!(
        w.store.raw_keys(),
        ["active/00000000-0000-4000-8000-000000000002.json"]
    );
}

#[tokio::test]
async fn a_pass_whose_lease_is_lost_writes_nothing_and_abandons_every_app() {
    let w = world().await;
    w.bind(1, "b-1").await;
    w.bind(2, "b-2").await;
    let mut plan = plan_of(vec![write(1, "[one]"), write(2, "[two]")]);
    plan.orphaned = vec![app(2)];
    let tenure = held();
    tenure.lose(LeaseLost::TakenOver);
    let outcome = w
        .apply_with(&w.store, &plan, &[(1, "b-1"), (2, "b-2")], 4, &tenure)
        .await;
    assert_eq!(outcome.lease_lost, Some(LeaseLost::TakenOver));
    assert_eq!(outcome.abandoned, [app(1), app(2)]);
    assert!(
        outcome.applied.is_empty() && outcome.failed.is_empty(),
        "{outcome:?}"
    );
    assert!(w.store.raw_keys().is_empty(), "{:?}", w.store.raw_keys());
    assert!(
        w.db.orphaned_bindings().await.unwrap().is_empty(),
        "bindings were marked orphaned without the lease"
    );
}

#[tokio::test]
async fn a_lease_lost_mid_pass_stops_writes_between_two_store_requests() {
    let w = world().await;
    w.bind(1, "b-1").await;
    w.bind(2, "b-2").await;
    w.store
        .write_app(TargetState::Active, &app(1), Bytes::from_static(b"[old]"))
        .await
        .unwrap();
    let plan = plan_of(vec![
        Action::Move {
            app: app(1),
            name: "app-1".into(),
            from: TargetState::Active,
            to: TargetState::Inactive,
            body: b"[stopped]".to_vec(),
            reason: Reason::Stopped,
        },
        write(2, "[two]"),
    ]);
    let tenure = held();
    let store = LeaseLapsesDuringFirstWrite {
        inner: &w.store,
        tenure: tenure.clone(),
    };
    // Concurrency 1, GUID order: app 1's move writes inactive/, then the lease is gone.
    let outcome = w
        .apply_with(&store, &plan, &[(1, "b-1"), (2, "b-2")], 1, &tenure)
        .await;
    assert_eq!(outcome.lease_lost, Some(LeaseLost::TakenOver));
    assert_eq!(outcome.abandoned, [app(1), app(2)]);
    assert!(outcome.applied.is_empty(), "{outcome:?}");
    assert_eq!(
        w.store.raw_keys(),
        [
            "active/00000000-0000-4000-8000-000000000001.json",
            "inactive/00000000-0000-4000-8000-000000000001.json"
        ],
        "the move's removal or app 2's write went through without the lease"
    );
}

#[tokio::test]
async fn each_applied_action_is_one_change_latency_observation_and_no_other_action_is() {
    let w = world().await;
    for n in 1..=3 {
        w.bind(n, &format!("b-{n}")).await;
    }
    w.store
        .write_app(TargetState::Inactive, &app(2), Bytes::from_static(b"[old]"))
        .await
        .unwrap();
    let plan = plan_of(vec![
        write(1, "[one]"),
        write(2, "[two]"),
        Action::Remove {
            app: app(2),
            state: TargetState::Inactive,
            reason: Reason::Duplicate,
        },
        write(3, "[three]"),
    ]);
    // Concurrency 1, GUID order: app 1's write fails, app 2's two actions apply, app 3
    // is superseded by an unbind during the pass.
    w.unbind(3, "b-3").await;
    w.store.fail_next(1);
    let events = SystemTime::now() - Duration::from_secs(3);
    let changes = ChangeTimes::AuditEvents((1..=3).map(|n| (app(n), events)).collect());
    let outcome = w
        .apply_since(
            &w.store,
            &plan,
            &[(1, "b-1"), (2, "b-2"), (3, "b-3")],
            1,
            &held(),
            &changes,
        )
        .await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    assert_eq!(outcome.superseded, [app(3)]);
    assert_eq!(
        outcome.applied,
        [("remove", 1), ("write", 1)].into_iter().collect()
    );
    let (count, sum) = w.change_latency("audit_event");
    assert_eq!(count, 2, "one observation per applied action");
    assert!(sum >= 6.0, "each measured from its event, 3 s back: {sum}");
    assert_eq!(w.change_latency("full_pass").0, 0);

    // A full pass that loses its lease applies nothing and observes nothing.
    let plan = plan_of(vec![write(1, "[one]")]);
    let lost = held();
    lost.lose(LeaseLost::TakenOver);
    let outcome = w.apply_with(&w.store, &plan, &[(1, "b-1")], 4, &lost).await;
    assert_eq!(outcome.abandoned, [app(1)]);
    assert_eq!(w.change_latency("full_pass").0, 0);
    // The same plan, applied: one observation, of its source.
    let outcome = w.apply(&plan, &[(1, "b-1")], 4).await;
    assert_eq!(outcome.applied, [("write", 1)].into_iter().collect());
    assert_eq!(w.change_latency("full_pass").0, 1);
    assert_eq!(w.change_latency("audit_event").0, 2);
}

/// The credentials document app `n`'s bindings call for now (its bytes).
async fn document_of(w: &World, n: u32) -> Option<Vec<u8>> {
    let bindings: Vec<_> =
        w.db.all_bindings()
            .await
            .unwrap()
            .into_iter()
            .filter(|b| b.app_guid == app(n))
            .collect();
    read::credentials_document(&app(n), &bindings).map(|d| d.to_bytes())
}

fn credentials_key(n: u32) -> String {
    format!("credentials/{}.json", app(n))
}

#[tokio::test]
async fn the_credentials_document_is_written_first_and_a_failure_stops_the_target_write() {
    let w = world().await;
    w.bind_with(1, "b-1", r#"{"auth":"token"}"#).await;
    let doc = document_of(&w, 1)
        .await
        .expect("a token binding has a document");
    let plan = plan_of(vec![
        Action::WriteCredentials {
            app: app(1),
            body: doc.clone(),
            reason: Reason::Missing,
        },
        write(1, "[one]"),
    ]);
    // The document's write fails: the target file is not written without it.
    w.store.fail_next(1);
    let outcome = w.apply(&plan, &[(1, "b-1")], 4).await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    assert!(
        outcome.failed[0].1.starts_with("write_credentials: "),
        "{outcome:?}"
    );
    assert!(w.store.raw_keys().is_empty(), "{:?}", w.store.raw_keys());

    let outcome = w.apply(&plan, &[(1, "b-1")], 4).await;
    assert_eq!(
        outcome.applied,
        [("write", 1), ("write_credentials", 1)]
            .into_iter()
            .collect()
    );
    assert_eq!(
        w.store.read_raw(&credentials_key(1)).as_deref(),
        Some(&doc[..])
    );
    assert_eq!(
        w.metrics
            .actions
            .with_label_values(&["write_credentials", "applied"])
            .get(),
        1
    );
    assert_eq!(
        w.metrics
            .actions
            .with_label_values(&["write_credentials", "failed"])
            .get(),
        1
    );
}

#[tokio::test]
async fn the_credentials_document_is_removed_only_once_the_target_files_are_gone() {
    let w = world().await;
    w.store
        .write_app(TargetState::Active, &app(1), Bytes::from_static(b"[stray]"))
        .await
        .unwrap();
    w.store
        .write_credentials(&app(1), Bytes::from_static(b"{}"))
        .await
        .unwrap();
    let plan = plan_of(vec![
        Action::Remove {
            app: app(1),
            state: TargetState::Active,
            reason: Reason::Unbound,
        },
        Action::RemoveCredentials {
            app: app(1),
            reason: Reason::Unbound,
        },
    ]);
    w.store.fail_next(1);
    let outcome = w.apply(&plan, &[], 4).await;
    assert_eq!(outcome.failed.len(), 1, "{outcome:?}");
    assert_eq!(w.store.raw_keys().len(), 2, "{:?}", w.store.raw_keys());

    let outcome = w.apply(&plan, &[], 4).await;
    assert_eq!(
        outcome.applied,
        [("remove", 1), ("remove_credentials", 1)]
            .into_iter()
            .collect()
    );
    assert!(w.store.raw_keys().is_empty(), "{:?}", w.store.raw_keys());
}

#[tokio::test]
async fn a_credentials_document_planned_before_an_older_binding_is_unbound_is_left_to_the_broker() {
    let w = world().await;
    w.bind_with(1, "b-1", r#"{"auth":"token"}"#).await;
    w.bind_with(1, "b-2", r#"{"auth":"token"}"#).await;
    let planned = document_of(&w, 1).await.unwrap();
    let plan = plan_of(vec![Action::WriteCredentials {
        app: app(1),
        body: planned,
        reason: Reason::Missing,
    }]);
    // The broker unbinds the older binding (the newest stays b-2) and rewrites the
    // document itself: the planned one, which still lists b-1, must not replace it.
    w.unbind(1, "b-1").await;
    let current = document_of(&w, 1).await.unwrap();
    w.store
        .write_credentials(&app(1), Bytes::from(current.clone()))
        .await
        .unwrap();
    let outcome = w.apply(&plan, &[(1, "b-2")], 4).await;
    assert_eq!(outcome.superseded, [app(1)], "{outcome:?}");
    assert_eq!(
        w.store.read_raw(&credentials_key(1)).as_deref(),
        Some(&current[..])
    );
    assert_eq!(
        w.metrics
            .actions
            .with_label_values(&["write_credentials", "superseded"])
            .get(),
        1
    );
}
