//! One repository suite for both databases.
//!
//! Each check is a `pub async fn` taking a fresh, empty, migrated [`Db`] and panicking
//! with a message naming the broken guarantee.
//! [`repository_tests!`](crate::repository_tests) turns them into one `#[tokio::test]`
//! each:
//!
//! ```ignore
//! gds_db::repository_tests!(postgres: fresh_postgres_db().await);
//! ```
//!
//! where the expression yields a fresh fixture implementing `AsRef<Db>` (a [`Db`], or a
//! struct that also keeps a temporary directory alive). It runs against SQLite in this
//! crate's unit tests and against PostgreSQL in `tests/integration/broker_db.rs`.
//! Compiled for this crate's tests and with the `conformance` feature.
//!
//! A guarantee that only one database gives is generated only for it (`postgres:` adds
//! PostgreSQL's; SQLite's own are unit tests below), so that no test passes on a database
//! without checking anything; each such check fails when given the other database.

use std::time::{Duration, Instant};

use gds_targets::AppGuid;

pub use crate::event_cursors::checks::*;
pub use crate::leases::checks::*;
pub use crate::orphans::checks::*;

use crate::{
    Db, DbKind, DeleteInstance, Insert, InstanceUpdate, NewBinding, NewInstance, ServiceInstance,
};

/// Generates one `#[tokio::test]` per check that every database passes; with `postgres:`
/// before the fixture, also PostgreSQL's own. `$fixture` is evaluated inside each (async)
/// test and must yield a fresh database as something implementing `AsRef<Db>`; it may
/// use `.await`. The calling crate needs `tokio` with `macros` and `rt-multi-thread`.
#[macro_export]
macro_rules! repository_tests {
    ($fixture:expr) => {
        $crate::repository_tests!(@each $fixture;
            a_new_instance_is_created_then_identical_then_conflicting,
            an_instance_reads_back_updates_and_deletes,
            an_instance_with_bindings_is_not_deleted,
            a_binding_needs_an_existing_instance,
            a_new_binding_is_created_then_identical_then_conflicting,
            an_apps_bindings_come_newest_first_even_within_one_millisecond,
            a_dropped_app_transaction_leaves_nothing_behind,
            deleting_a_binding_returns_it_once_and_only_for_its_app,
            all_bindings_are_grouped_by_app_newest_first,
            transactions_of_one_app_are_serialised,
            a_lease_has_one_holder_until_it_is_released_or_expires,
            a_lease_is_renewed_only_by_its_holder_before_it_expires,
            a_lease_expires_on_the_database_clock_in_milliseconds,
            the_event_cursor_round_trips,
            bindings_of_a_deleted_app_are_marked_orphaned_once,
            a_bind_in_progress_is_joined_by_identical_requests_and_taken_over_by_others,
            a_bind_in_progress_finishes_once_unless_an_unbind_cancelled_it,
        );
    };
    (postgres: $fixture:expr) => {
        $crate::repository_tests!($fixture);
        $crate::repository_tests!(@each $fixture;
            transactions_of_different_apps_do_not_wait_for_each_other_on_postgres,
        );
    };
    (@each $fixture:expr; $($check:ident),* $(,)?) => {$(
        #[::tokio::test(flavor = "multi_thread", worker_threads = 2)]
        async fn $check() {
            let fixture = $fixture;
            $crate::conformance::$check(::std::convert::AsRef::<$crate::Db>::as_ref(&fixture))
                .await;
        }
    )*};
}

impl AsRef<Db> for Db {
    fn as_ref(&self) -> &Db {
        self
    }
}

/// A fresh SQLite database in a temporary directory (kept until the fixture drops).
#[cfg(test)]
pub(crate) struct SqliteFixture {
    db: Db,
    _dir: tempfile::TempDir,
}

#[cfg(test)]
impl AsRef<Db> for SqliteFixture {
    fn as_ref(&self) -> &Db {
        &self.db
    }
}

#[cfg(test)]
pub(crate) async fn fresh_sqlite() -> SqliteFixture {
    let dir = tempfile::tempdir().expect("a temporary directory");
    let url = format!("sqlite://{}/broker.db?mode=rwc", dir.path().display());
    let db = Db::connect(&url, crate::ConnectOptions::default())
        .await
        .expect("a fresh SQLite database");
    SqliteFixture { db, _dir: dir }
}

/// An app GUID made from a small number.
pub fn app(n: u32) -> AppGuid {
    AppGuid::parse(&format!("00000000-0000-4000-8000-{n:012}")).expect("a valid GUID")
}

/// A provision request for `id` with fixed attributes.
pub fn new_instance(id: &str) -> NewInstance {
    NewInstance {
        instance_id: id.into(),
        service_id: "service-1".into(),
        plan_id: "plan-1".into(),
        organization_guid: "org-1".into(),
        space_guid: "space-1".into(),
        parameters: "{}".into(),
        context: r#"{"platform":"cloudfoundry"}"#.into(),
    }
}

/// A bind request for `id` in `instance` with `parameters`.
pub fn new_binding(id: &str, instance: &str, parameters: &str) -> NewBinding {
    NewBinding {
        binding_id: id.into(),
        instance_id: instance.into(),
        parameters: parameters.into(),
    }
}

#[track_caller]
pub(crate) fn must<T, E: std::fmt::Display>(call: &str, result: Result<T, E>) -> T {
    result.unwrap_or_else(|e| panic!("{call} failed: {e}"))
}

async fn created_instance(db: &Db, id: &str) -> ServiceInstance {
    match must(
        "create_instance",
        db.create_instance(&new_instance(id)).await,
    ) {
        Insert::Created(i) => i,
        other => panic!("a new instance was not created: {other:?}"),
    }
}

/// Binds `binding` of `app` in `instance` in its own committed transaction.
async fn bind(db: &Db, app: &AppGuid, instance: &str, binding: &str, parameters: &str) {
    let mut tx = must("lock_app", db.lock_app(app).await);
    let outcome = must(
        "insert_binding",
        tx.insert_binding(&new_binding(binding, instance, parameters))
            .await,
    );
    assert!(
        matches!(outcome, Insert::Created(_)),
        "binding {binding} was not created: {outcome:?}"
    );
    must("commit", tx.commit().await);
}

pub async fn a_new_instance_is_created_then_identical_then_conflicting(db: &Db) {
    let created = created_instance(db, "si-1").await;
    assert_eq!(created.plan_id, "plan-1");
    assert_eq!(created.created_at, created.updated_at);

    let again = must(
        "create_instance",
        db.create_instance(&new_instance("si-1")).await,
    );
    assert_eq!(again, Insert::Identical(created.clone()));

    // The context is not part of an instance's identity: names may differ on a retry.
    let mut renamed = new_instance("si-1");
    renamed.context = r#"{"space_name":"renamed"}"#.into();
    let again = must("create_instance", db.create_instance(&renamed).await);
    assert_eq!(again, Insert::Identical(created.clone()));

    let mut other_space = new_instance("si-1");
    other_space.space_guid = "space-2".into();
    let conflict = must("create_instance", db.create_instance(&other_space).await);
    assert_eq!(conflict, Insert::Conflict(created.clone()), "space differs");

    let mut other_params = new_instance("si-1");
    other_params.parameters = r#"{"a":1}"#.into();
    let conflict = must("create_instance", db.create_instance(&other_params).await);
    assert_eq!(conflict, Insert::Conflict(created), "parameters differ");
}

pub async fn an_instance_reads_back_updates_and_deletes(db: &Db) {
    assert_eq!(must("instance", db.instance("si-1").await), None);
    let created = created_instance(db, "si-1").await;
    assert_eq!(
        must("instance", db.instance("si-1").await),
        Some(created.clone())
    );
    assert_eq!(created.parameters_json(), serde_json::json!({}));

    let update = InstanceUpdate {
        plan_id: None,
        parameters: Some(r#"{"x":"y"}"#.into()),
    };
    let updated = must("update_instance", db.update_instance("si-1", &update).await)
        .expect("the instance exists");
    assert_eq!(updated.plan_id, "plan-1", "an absent plan id is kept");
    assert_eq!(updated.parameters_json(), serde_json::json!({"x": "y"}));
    assert!(updated.updated_at >= created.updated_at);
    assert_eq!(
        must("update_instance", db.update_instance("nope", &update).await),
        None
    );

    assert_eq!(
        must("delete_instance", db.delete_instance("si-1").await),
        DeleteInstance::Deleted
    );
    assert_eq!(
        must("delete_instance", db.delete_instance("si-1").await),
        DeleteInstance::NotFound
    );
    assert_eq!(must("instance", db.instance("si-1").await), None);
}

pub async fn an_instance_with_bindings_is_not_deleted(db: &Db) {
    created_instance(db, "si-1").await;
    bind(db, &app(1), "si-1", "b-1", "{}").await;
    bind(db, &app(2), "si-1", "b-2", "{}").await;
    assert_eq!(
        must("delete_instance", db.delete_instance("si-1").await),
        DeleteInstance::StillBound(2)
    );
    assert!(must("instance", db.instance("si-1").await).is_some());
    assert_eq!(
        must(
            "bindings_of_instance",
            db.bindings_of_instance("si-1").await
        )
        .len(),
        2
    );
}

pub async fn a_binding_needs_an_existing_instance(db: &Db) {
    let mut tx = must("lock_app", db.lock_app(&app(1)).await);
    let result = tx
        .insert_binding(&new_binding("b-1", "no-such-instance", "{}"))
        .await;
    assert!(
        result.is_err(),
        "a binding of an unknown instance was recorded: {result:?}"
    );
}

pub async fn a_new_binding_is_created_then_identical_then_conflicting(db: &Db) {
    created_instance(db, "si-1").await;
    created_instance(db, "si-2").await;
    let params = r#"{"path":"/metrics"}"#;
    let mut tx = must("lock_app", db.lock_app(&app(1)).await);
    let created = match must(
        "insert_binding",
        tx.insert_binding(&new_binding("b-1", "si-1", params)).await,
    ) {
        Insert::Created(b) => b,
        other => panic!("not created: {other:?}"),
    };
    assert_eq!(created.app_guid, app(1));
    assert_eq!(
        created.parameters_json(),
        serde_json::json!({"path": "/metrics"})
    );
    let again = must(
        "insert_binding",
        tx.insert_binding(&new_binding("b-1", "si-1", params)).await,
    );
    assert_eq!(again, Insert::Identical(created.clone()));
    let other_params = must(
        "insert_binding",
        tx.insert_binding(&new_binding("b-1", "si-1", "{}")).await,
    );
    assert_eq!(other_params, Insert::Conflict(created.clone()));
    let other_instance = must(
        "insert_binding",
        tx.insert_binding(&new_binding("b-1", "si-2", params)).await,
    );
    assert_eq!(other_instance, Insert::Conflict(created.clone()));
    must("commit", tx.commit().await);

    // The same binding id for another app conflicts too, and changes nothing.
    let mut tx = must("lock_app", db.lock_app(&app(2)).await);
    let other_app = must(
        "insert_binding",
        tx.insert_binding(&new_binding("b-1", "si-1", params)).await,
    );
    assert_eq!(other_app, Insert::Conflict(created.clone()));
    must("commit", tx.commit().await);
    assert_eq!(must("binding", db.binding("b-1").await), Some(created));
    assert!(must("bindings_of_app", db.bindings_of_app(&app(2)).await).is_empty());
}

pub async fn an_apps_bindings_come_newest_first_even_within_one_millisecond(db: &Db) {
    created_instance(db, "si-1").await;
    created_instance(db, "si-2").await;
    // One transaction, so all three get the same clock reading at most a few
    // microseconds apart: created_at must still be strictly increasing.
    let mut tx = must("lock_app", db.lock_app(&app(1)).await);
    for (id, instance) in [("b-c", "si-1"), ("b-a", "si-2"), ("b-b", "si-1")] {
        let outcome = must(
            "insert_binding",
            tx.insert_binding(&new_binding(id, instance, "{}")).await,
        );
        assert!(matches!(outcome, Insert::Created(_)), "{outcome:?}");
    }
    let in_tx: Vec<String> = must("bindings", tx.bindings().await)
        .into_iter()
        .map(|b| b.binding_id)
        .collect();
    assert_eq!(in_tx, ["b-b", "b-a", "b-c"], "inside the transaction");
    must("commit", tx.commit().await);

    let bindings = must("bindings_of_app", db.bindings_of_app(&app(1)).await);
    let ids: Vec<&str> = bindings.iter().map(|b| b.binding_id.as_str()).collect();
    assert_eq!(ids, ["b-b", "b-a", "b-c"], "newest first");
    assert!(
        bindings
            .windows(2)
            .all(|w| w[0].created_at > w[1].created_at),
        "created_at strictly decreasing: {bindings:?}"
    );
}

pub async fn a_dropped_app_transaction_leaves_nothing_behind(db: &Db) {
    created_instance(db, "si-1").await;
    bind(db, &app(1), "si-1", "b-1", "{}").await;
    {
        let mut tx = must("lock_app", db.lock_app(&app(1)).await);
        must(
            "insert_binding",
            tx.insert_binding(&new_binding("b-2", "si-1", "{}")).await,
        );
        must("delete_binding", tx.delete_binding("b-1").await);
        // Dropped: e.g. the store write failed.
    }
    let ids: Vec<String> = must("bindings_of_app", db.bindings_of_app(&app(1)).await)
        .into_iter()
        .map(|b| b.binding_id)
        .collect();
    assert_eq!(ids, ["b-1"], "the rollback restored the state before");
    // And the lock was released.
    let tx = tokio::time::timeout(Duration::from_secs(5), db.lock_app(&app(1)))
        .await
        .expect("the lock of a dropped transaction is released");
    must("lock_app", tx);
}

pub async fn deleting_a_binding_returns_it_once_and_only_for_its_app(db: &Db) {
    created_instance(db, "si-1").await;
    bind(db, &app(1), "si-1", "b-1", r#"{"path":"/m"}"#).await;

    let mut tx = must("lock_app", db.lock_app(&app(2)).await);
    assert_eq!(
        must("delete_binding", tx.delete_binding("b-1").await),
        None,
        "another app's binding is not deleted"
    );
    must("commit", tx.commit().await);

    let mut tx = must("lock_app", db.lock_app(&app(1)).await);
    let deleted =
        must("delete_binding", tx.delete_binding("b-1").await).expect("the binding was there");
    assert_eq!(deleted.binding_id, "b-1");
    assert_eq!(deleted.parameters, r#"{"path":"/m"}"#);
    assert_eq!(must("delete_binding", tx.delete_binding("b-1").await), None);
    assert!(must("bindings", tx.bindings().await).is_empty());
    must("commit", tx.commit().await);
    assert_eq!(must("binding", db.binding("b-1").await), None);
}

pub async fn all_bindings_are_grouped_by_app_newest_first(db: &Db) {
    assert!(must("all_bindings", db.all_bindings().await).is_empty());
    created_instance(db, "si-1").await;
    bind(db, &app(2), "si-1", "b-1", "{}").await;
    bind(db, &app(1), "si-1", "b-2", "{}").await;
    bind(db, &app(2), "si-1", "b-3", "{}").await;
    let all: Vec<(AppGuid, String)> = must("all_bindings", db.all_bindings().await)
        .into_iter()
        .map(|b| (b.app_guid, b.binding_id))
        .collect();
    assert_eq!(
        all,
        [
            (app(1), "b-2".to_owned()),
            (app(2), "b-3".to_owned()),
            (app(2), "b-1".to_owned()),
        ]
    );
}

pub async fn transactions_of_one_app_are_serialised(db: &Db) {
    created_instance(db, "si-1").await;
    let mut first = must("lock_app", db.lock_app(&app(1)).await);
    let second = {
        let db = db.clone();
        tokio::spawn(async move {
            let mut tx = must("lock_app", db.lock_app(&app(1)).await);
            let acquired = Instant::now();
            let seen = must("bindings", tx.bindings().await).len();
            must("commit", tx.commit().await);
            (acquired, seen)
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    must(
        "insert_binding",
        first
            .insert_binding(&new_binding("b-1", "si-1", "{}"))
            .await,
    );
    let committed = Instant::now();
    must("commit", first.commit().await);
    let (acquired, seen) = second.await.expect("the second transaction ran");
    assert!(
        acquired >= committed,
        "the second transaction got the lock before the first committed"
    );
    assert_eq!(
        seen, 1,
        "the second transaction sees the first one's binding"
    );
}

/// PostgreSQL only (SQLite has one writer at a time: see
/// [`transactions_of_different_apps_wait_for_each_other_on_sqlite`]).
pub async fn transactions_of_different_apps_do_not_wait_for_each_other_on_postgres(db: &Db) {
    assert_eq!(db.kind(), DbKind::Postgres, "a PostgreSQL-only check");
    let _first = must("lock_app", db.lock_app(&app(1)).await);
    let second = tokio::time::timeout(Duration::from_secs(5), db.lock_app(&app(2)))
        .await
        .expect("another app's lock is free while the first is held");
    must("lock_app", second);
}

/// SQLite only: one writer at a time, so another app's transaction waits for the first
/// one to end (in this process' queue, rather than failing on a busy database file).
pub async fn transactions_of_different_apps_wait_for_each_other_on_sqlite(db: &Db) {
    assert_eq!(db.kind(), DbKind::Sqlite, "a SQLite-only check");
    let first = must("lock_app", db.lock_app(&app(1)).await);
    let second = {
        let db = db.clone();
        tokio::spawn(async move { must("lock_app", db.lock_app(&app(2)).await) })
    };
    // Real time (a real database): ample for the second task to reach the lock.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(
        !second.is_finished(),
        "another app's transaction started while the first was open"
    );
    drop(first);
    let second = second.await.expect("the second transaction ran");
    drop(second);
}

pub async fn a_bind_in_progress_is_joined_by_identical_requests_and_taken_over_by_others(db: &Db) {
    let first = new_binding("b-1", "si-1", "{}");
    assert_eq!(
        must("binding_attempt", db.binding_attempt("b-1").await),
        None
    );
    let owner = must(
        "start_binding_attempt",
        db.start_binding_attempt(&app(1), &first, "attempt-a").await,
    );
    assert_eq!(owner, "attempt-a", "the first request owns its attempt");
    let recorded = must("binding_attempt", db.binding_attempt("b-1").await)
        .expect("the bind in progress is recorded");
    assert_eq!(
        (
            recorded.app_guid.clone(),
            recorded.instance_id.as_str(),
            recorded.attempt.as_str()
        ),
        (app(1), "si-1", "attempt-a")
    );
    // The platform retries the same bind (e.g. after this broker crashed mid-bind): the
    // retry joins the recorded attempt rather than being blocked by it.
    let joined = must(
        "start_binding_attempt",
        db.start_binding_attempt(&app(1), &first, "attempt-b").await,
    );
    assert_eq!(joined, "attempt-a", "an identical request joins");
    // A different request for the same binding id takes it over.
    let other = new_binding("b-1", "si-1", r#"{"path":"/m"}"#);
    let taken = must(
        "start_binding_attempt",
        db.start_binding_attempt(&app(1), &other, "attempt-c").await,
    );
    assert_eq!(taken, "attempt-c", "a different request takes over");
    assert_eq!(
        must("binding_attempt", db.binding_attempt("b-1").await).map(|a| a.parameters),
        Some(r#"{"path":"/m"}"#.to_owned())
    );
    let listed: Vec<String> = must(
        "binding_attempts_of_instance",
        db.binding_attempts_of_instance("si-1").await,
    )
    .into_iter()
    .map(|a| a.binding_id)
    .collect();
    assert_eq!(listed, ["b-1"]);
    // The replaced request can neither finish nor abandon it.
    assert!(!must(
        "abandon_binding_attempt",
        db.abandon_binding_attempt("b-1", "attempt-a").await
    ));
    assert!(must(
        "abandon_binding_attempt",
        db.abandon_binding_attempt("b-1", "attempt-c").await
    ));
    assert_eq!(
        must("binding_attempt", db.binding_attempt("b-1").await),
        None,
        "abandoned"
    );
}

pub async fn a_bind_in_progress_finishes_once_unless_an_unbind_cancelled_it(db: &Db) {
    created_instance(db, "si-1").await;
    let b1 = new_binding("b-1", "si-1", "{}");
    let b2 = new_binding("b-2", "si-1", "{}");
    must(
        "start_binding_attempt",
        db.start_binding_attempt(&app(1), &b1, "a-1").await,
    );
    must(
        "start_binding_attempt",
        db.start_binding_attempt(&app(1), &b2, "a-2").await,
    );

    // b-1 finishes: its attempt ends in the transaction that records the binding.
    let mut tx = must("lock_app", db.lock_app(&app(1)).await);
    assert!(!must(
        "finish_binding_attempt",
        tx.finish_binding_attempt("b-1", "someone-else").await
    ));
    assert!(must(
        "finish_binding_attempt",
        tx.finish_binding_attempt("b-1", "a-1").await
    ));
    must("insert_binding", tx.insert_binding(&b1).await);
    must("commit", tx.commit().await);
    assert_eq!(
        must("binding_attempt", db.binding_attempt("b-1").await),
        None
    );

    // An unbind of b-2 arrives while its bind still runs: under another app's lock it is
    // not touched; under its app's lock it is cancelled, once.
    let mut tx = must("lock_app", db.lock_app(&app(2)).await);
    assert_eq!(
        must(
            "cancel_binding_attempt",
            tx.cancel_binding_attempt("b-2").await
        ),
        None
    );
    must("commit", tx.commit().await);
    let mut tx = must("lock_app", db.lock_app(&app(1)).await);
    let cancelled = must(
        "cancel_binding_attempt",
        tx.cancel_binding_attempt("b-2").await,
    )
    .expect("the bind in progress was there");
    assert_eq!(
        (cancelled.attempt.as_str(), cancelled.app_guid),
        ("a-2", app(1))
    );
    assert_eq!(
        must(
            "cancel_binding_attempt",
            tx.cancel_binding_attempt("b-2").await
        ),
        None
    );
    must("commit", tx.commit().await);
    // The bind then takes the lock and finds it cancelled: it writes nothing.
    let mut tx = must("lock_app", db.lock_app(&app(1)).await);
    assert!(
        !must(
            "finish_binding_attempt",
            tx.finish_binding_attempt("b-2", "a-2").await
        ),
        "a cancelled bind cannot finish"
    );
    drop(tx);
    // A rolled-back finish leaves the attempt in place (e.g. the store write failed, or
    // the request was cut short): an unbind can still find it.
    must(
        "start_binding_attempt",
        db.start_binding_attempt(&app(1), &b2, "a-3").await,
    );
    {
        let mut tx = must("lock_app", db.lock_app(&app(1)).await);
        assert!(must(
            "finish_binding_attempt",
            tx.finish_binding_attempt("b-2", "a-3").await
        ));
    }
    assert_eq!(
        must("binding_attempt", db.binding_attempt("b-2").await).map(|a| a.attempt),
        Some("a-3".to_owned())
    );
}

#[cfg(test)]
mod sqlite_only {
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn transactions_of_different_apps_wait_for_each_other_on_sqlite() {
        let fixture = super::fresh_sqlite().await;
        super::transactions_of_different_apps_wait_for_each_other_on_sqlite(&fixture.db).await;
    }
}
