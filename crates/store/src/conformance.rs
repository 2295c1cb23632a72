//! One conformance suite for every [`TargetStore`] backend (after
//! apache/arrow-rs-object-store's `integration.rs`).
//!
//! Each check is a `pub async fn` that takes a fresh, empty store (or [`Backend`]) and
//! panics with a message naming the broken guarantee.
//! [`target_store_conformance_tests!`](crate::target_store_conformance_tests) turns them
//! all into one `#[tokio::test]` per check for a backend, so a failure report names the
//! check:
//!
//! ```ignore
//! gds_store::target_store_conformance_tests!(my_fixture().await);
//! ```
//!
//! where the expression builds a fresh [`Backend`] for every test. It runs against
//! [`MemoryStore`] and [`DirStore`](crate::DirStore) in this crate's unit tests and
//! against an S3-compatible server in `tests/integration/store_s3.rs`.
//! Compiled for this crate's tests and with the `conformance` feature.

use std::future::Future;

use bytes::Bytes;
use futures::{StreamExt, TryStreamExt};
use gds_targets::AppGuid;

use crate::record::{self, RECORD_KEY, WritersRecord};
use crate::{
    ETag, ListHint, MemoryStore, StoreError, StoredCredentials, StoredTarget, TargetState,
    TargetStore,
};

/// A store under test plus raw access to what lies beneath it, to plant entries the
/// store itself would never write. Implement the methods with `async fn`.
pub trait Backend: Send + Sync {
    /// The store under test.
    fn store(&self) -> &dyn TargetStore;

    /// Writes `body` at `key`, relative to the store's root (after any prefix) and
    /// bypassing the [`TargetStore`] API, e.g. `active/README.txt`. Panics on failure.
    fn put_raw(&self, key: &str, body: &[u8]) -> impl Future<Output = ()> + Send;

    /// Whether `key` (relative, as for [`Backend::put_raw`]) exists. Panics on failure.
    fn exists_raw(&self, key: &str) -> impl Future<Output = bool> + Send;
}

impl Backend for MemoryStore {
    fn store(&self) -> &dyn TargetStore {
        self
    }

    async fn put_raw(&self, key: &str, body: &[u8]) {
        self.insert_raw(key, Bytes::copy_from_slice(body));
    }

    async fn exists_raw(&self, key: &str) -> bool {
        self.contains_raw(key)
    }
}

/// How many files [`a_listing_of_more_than_a_thousand_files_is_complete`] writes: more
/// than one S3 listing page (1000 keys).
pub const MANY_FILES: usize = 1100;

/// How many writes [`a_listing_of_more_than_a_thousand_files_is_complete`] keeps in
/// flight.
pub const WRITE_CONCURRENCY: usize = 32;

/// Generates one `#[tokio::test]` per conformance check. `$backend` is an expression,
/// evaluated inside each (async) test, that yields a fresh [`Backend`] with an empty
/// store; it may use `.await`. The calling crate needs `tokio` with `macros` and `rt`.
#[macro_export]
macro_rules! target_store_conformance_tests {
    ($backend:expr) => {
        $crate::target_store_conformance_tests!(@store $backend;
            the_store_starts_empty,
            a_written_file_reads_back_identical_with_its_md5_as_etag,
            a_listing_returns_every_written_file_sorted_with_state_and_etag,
            overwriting_a_file_changes_its_etag_even_at_the_same_size,
            writing_in_one_state_does_not_touch_the_other,
            moving_keeps_the_bytes_and_leaves_exactly_one_file,
            moving_a_missing_file_fails_with_not_found_and_creates_nothing,
            moving_to_the_same_state_keeps_the_file,
            removing_is_idempotent_and_only_touches_one_state,
            reading_a_missing_file_returns_none,
            a_listing_of_more_than_a_thousand_files_is_complete,
            the_record_is_replaced_only_while_it_is_unchanged,
            racing_publications_leave_a_record_that_counts_every_file,
            credentials_documents_are_written_read_listed_and_removed,
            the_record_is_read_only_when_it_changed,
        );
        $crate::target_store_conformance_tests!(@backend $backend;
            foreign_entries_are_neither_listed_nor_removed,
            the_record_lives_beside_the_state_directories,
            credentials_documents_live_beside_the_state_directories,
        );
    };
    (@store $backend:expr; $($check:ident),* $(,)?) => {$(
        #[::tokio::test]
        async fn $check() {
            let backend = $backend;
            $crate::conformance::$check($crate::conformance::Backend::store(&backend)).await;
        }
    )*};
    (@backend $backend:expr; $($check:ident),* $(,)?) => {$(
        #[::tokio::test]
        async fn $check() {
            let backend = $backend;
            $crate::conformance::$check(&backend).await;
        }
    )*};
}

/// Unwraps a store result or panics naming the call.
#[track_caller]
fn must<T>(call: &str, result: Result<T, StoreError>) -> T {
    result.unwrap_or_else(|e| panic!("{call} failed: {e} ({e:?})"))
}

/// A new random app GUID.
pub fn new_app() -> AppGuid {
    AppGuid::parse(&uuid::Uuid::new_v4().to_string()).expect("a v4 UUID is an app GUID")
}

/// A realistic target file body for `app` with `instances` instances.
fn target_file(app: &AppGuid, instances: usize) -> Bytes {
    let groups: Vec<String> = (0..instances)
        .map(|i| {
            format!(
                r#"{{"targets":["app.example.org"],"labels":{{"__param_cf_app_guid":"{app}","instance":"{app}:{i}","job":"app-é"}}}}"#
            )
        })
        .collect();
    Bytes::from(format!("[{}]", groups.join(",")))
}

async fn list(store: &dyn TargetStore, state: TargetState) -> Vec<StoredTarget> {
    must(&format!("list_apps({state})"), store.list_apps(state).await)
}

async fn write(store: &dyn TargetStore, state: TargetState, app: &AppGuid, body: &Bytes) -> ETag {
    must(
        &format!("write_app({state}, {app})"),
        store.write_app(state, app, body.clone()).await,
    )
}

async fn read(store: &dyn TargetStore, state: TargetState, app: &AppGuid) -> Option<(Bytes, ETag)> {
    must(
        &format!("read_app({state}, {app})"),
        store.read_app(state, app).await,
    )
}

async fn assert_only(store: &dyn TargetStore, state: TargetState, expected: &[StoredTarget]) {
    let listed = list(store, state).await;
    assert_eq!(
        listed, expected,
        "the {state} listing is not what was written"
    );
}

/// A fresh store lists nothing in either state and passes its health check.
pub async fn the_store_starts_empty(store: &dyn TargetStore) {
    must("check()", store.check().await);
    for state in TargetState::ALL {
        assert_only(store, state, &[]).await;
    }
}

/// `write_app` then `read_app` returns the identical bytes, and every reported ETag is
/// the MD5 of the body.
pub async fn a_written_file_reads_back_identical_with_its_md5_as_etag(store: &dyn TargetStore) {
    let app = new_app();
    let alphabet = b"[]{}\"\\ \n\t\xc3\xa9";
    let large = Bytes::from(
        (0..64 * 1024)
            .map(|i| alphabet[i % alphabet.len()])
            .collect::<Vec<u8>>(),
    );
    for body in [Bytes::from_static(b"[]"), target_file(&app, 3), large] {
        let etag = write(store, TargetState::Active, &app, &body).await;
        assert_eq!(
            etag,
            ETag::of(&body),
            "write_app's ETag is not the MD5 of the body"
        );
        let (read_body, read_etag) = read(store, TargetState::Active, &app)
            .await
            .expect("a file just written must be readable");
        assert!(
            read_body == body,
            "read_app returned different bytes than were written"
        );
        assert_eq!(read_etag, etag, "read_app's ETag differs from write_app's");
    }
}

/// A listing returns exactly the written files of its state, sorted by GUID, each with
/// its state and the MD5 ETag of its content.
pub async fn a_listing_returns_every_written_file_sorted_with_state_and_etag(
    store: &dyn TargetStore,
) {
    let mut expected = Vec::new();
    for (i, state) in [
        TargetState::Active,
        TargetState::Inactive,
        TargetState::Active,
        TargetState::Active,
        TargetState::Inactive,
    ]
    .into_iter()
    .enumerate()
    {
        let app = new_app();
        let body = target_file(&app, i + 1);
        let etag = write(store, state, &app, &body).await;
        expected.push(StoredTarget {
            app_guid: app,
            state,
            etag: ETag::of(&body),
        });
        assert_eq!(
            etag,
            ETag::of(&body),
            "write_app's ETag is not the MD5 of the body"
        );
    }
    expected.sort_by(|a, b| a.app_guid.cmp(&b.app_guid));
    for state in TargetState::ALL {
        let of_state: Vec<StoredTarget> = expected
            .iter()
            .filter(|t| t.state == state)
            .cloned()
            .collect();
        assert_only(store, state, &of_state).await;
    }
}

/// Overwriting changes the ETag, also when the new content has the same size, so that
/// callers comparing ETags never miss a change; rewriting the same bytes keeps it.
pub async fn overwriting_a_file_changes_its_etag_even_at_the_same_size(store: &dyn TargetStore) {
    let app = new_app();
    let first = Bytes::from_static(br#"[{"targets":["a.example.org"]}]"#);
    let same_size = Bytes::from_static(br#"[{"targets":["b.example.org"]}]"#);
    assert_eq!(first.len(), same_size.len());
    let first_etag = write(store, TargetState::Active, &app, &first).await;
    let second_etag = write(store, TargetState::Active, &app, &same_size).await;
    assert_ne!(first_etag, second_etag, "a same-size change kept the ETag");
    assert_eq!(
        read(store, TargetState::Active, &app).await.map(|(b, _)| b),
        Some(same_size.clone()),
        "read_app does not return the new content after an overwrite"
    );
    let expected = [StoredTarget {
        app_guid: app.clone(),
        state: TargetState::Active,
        etag: second_etag.clone(),
    }];
    assert_only(store, TargetState::Active, &expected).await;
    let again = write(store, TargetState::Active, &app, &same_size).await;
    assert_eq!(
        again, second_etag,
        "rewriting the same bytes changed the ETag"
    );
}

/// Writing, overwriting or removing in one state never creates, changes or removes the
/// app's file in the other: an app may transiently have both, and the updater resolves
/// that itself.
pub async fn writing_in_one_state_does_not_touch_the_other(store: &dyn TargetStore) {
    let app = new_app();
    let active = target_file(&app, 1);
    write(store, TargetState::Active, &app, &active).await;
    assert!(
        read(store, TargetState::Inactive, &app).await.is_none(),
        "writing in active created a file in inactive"
    );
    assert_only(store, TargetState::Inactive, &[]).await;

    let inactive = target_file(&app, 2);
    write(store, TargetState::Inactive, &app, &inactive).await;
    assert_eq!(
        read(store, TargetState::Active, &app).await.map(|(b, _)| b),
        Some(active),
        "writing in inactive changed the file in active"
    );
    must(
        "remove_app(active)",
        store.remove_app(TargetState::Active, &app).await,
    );
    assert_eq!(
        read(store, TargetState::Inactive, &app)
            .await
            .map(|(b, _)| b),
        Some(inactive),
        "removing from active removed the file in inactive"
    );
}

/// Moving active → inactive leaves exactly one file, in inactive, with the same bytes and
/// ETag; moving back works too, and a move replaces a file already at the destination.
pub async fn moving_keeps_the_bytes_and_leaves_exactly_one_file(store: &dyn TargetStore) {
    let app = new_app();
    let body = target_file(&app, 2);
    let etag = write(store, TargetState::Active, &app, &body).await;

    let moved = must(
        "move_app(active -> inactive)",
        store
            .move_app(TargetState::Active, TargetState::Inactive, &app)
            .await,
    );
    assert_eq!(moved, etag, "move_app changed the ETag");
    assert!(
        read(store, TargetState::Active, &app).await.is_none(),
        "the source is still there after a move"
    );
    assert_eq!(
        read(store, TargetState::Inactive, &app).await,
        Some((body.clone(), etag.clone())),
        "the moved file differs from the original"
    );
    assert_only(store, TargetState::Active, &[]).await;
    let expected = StoredTarget {
        app_guid: app.clone(),
        state: TargetState::Inactive,
        etag: etag.clone(),
    };
    assert_only(
        store,
        TargetState::Inactive,
        std::slice::from_ref(&expected),
    )
    .await;

    // Back to active, over a stale file that is already there.
    write(store, TargetState::Active, &app, &Bytes::from_static(b"[]")).await;
    let moved_back = must(
        "move_app(inactive -> active)",
        store
            .move_app(TargetState::Inactive, TargetState::Active, &app)
            .await,
    );
    assert_eq!(moved_back, etag, "moving back changed the ETag");
    assert_eq!(
        read(store, TargetState::Active, &app).await,
        Some((body, etag.clone())),
        "a move did not replace the file already at the destination"
    );
    assert_only(store, TargetState::Inactive, &[]).await;
    let expected = StoredTarget {
        state: TargetState::Active,
        ..expected
    };
    assert_only(store, TargetState::Active, &[expected]).await;
}

/// Moving a file that does not exist fails with [`StoreError::NotFound`] naming the
/// source state and the app, and creates nothing.
pub async fn moving_a_missing_file_fails_with_not_found_and_creates_nothing(
    store: &dyn TargetStore,
) {
    let app = new_app();
    match store
        .move_app(TargetState::Active, TargetState::Inactive, &app)
        .await
    {
        Err(StoreError::NotFound {
            state,
            app: missing,
        }) => {
            assert_eq!(state, TargetState::Active, "NotFound names the wrong state");
            assert_eq!(missing, app, "NotFound names the wrong app");
        }
        other => panic!("moving a missing file must fail with NotFound, got {other:?}"),
    }
    for state in TargetState::ALL {
        assert_only(store, state, &[]).await;
    }
}

/// Moving a file to the state it is in keeps it (and must never delete it, as a naive
/// copy-then-delete would).
pub async fn moving_to_the_same_state_keeps_the_file(store: &dyn TargetStore) {
    let app = new_app();
    let body = target_file(&app, 1);
    let etag = write(store, TargetState::Inactive, &app, &body).await;
    let moved = must(
        "move_app(inactive -> inactive)",
        store
            .move_app(TargetState::Inactive, TargetState::Inactive, &app)
            .await,
    );
    assert_eq!(moved, etag, "a move within one state changed the ETag");
    assert_eq!(
        read(store, TargetState::Inactive, &app).await,
        Some((body, etag)),
        "a move within one state lost the file"
    );
    let missing = new_app();
    let result = store
        .move_app(TargetState::Active, TargetState::Active, &missing)
        .await;
    assert!(
        matches!(result, Err(StoreError::NotFound { .. })),
        "moving a missing file within one state must be NotFound, got {result:?}"
    );
}

/// Removing a missing file is `Ok`, removing a file makes it unreadable and unlisted, and
/// removing it again is `Ok`.
pub async fn removing_is_idempotent_and_only_touches_one_state(store: &dyn TargetStore) {
    let app = new_app();
    must(
        "remove_app of a file never written",
        store.remove_app(TargetState::Active, &app).await,
    );
    let kept = new_app();
    let kept_body = target_file(&kept, 1);
    let kept_etag = write(store, TargetState::Active, &kept, &kept_body).await;
    write(store, TargetState::Active, &app, &target_file(&app, 1)).await;
    must(
        "remove_app",
        store.remove_app(TargetState::Active, &app).await,
    );
    assert!(
        read(store, TargetState::Active, &app).await.is_none(),
        "a removed file is still readable"
    );
    let expected = [StoredTarget {
        app_guid: kept,
        state: TargetState::Active,
        etag: kept_etag,
    }];
    assert_only(store, TargetState::Active, &expected).await;
    must(
        "remove_app of a file already removed",
        store.remove_app(TargetState::Active, &app).await,
    );
}

/// Reading a file that does not exist is `Ok(None)`, not an error.
pub async fn reading_a_missing_file_returns_none(store: &dyn TargetStore) {
    let app = new_app();
    for state in TargetState::ALL {
        assert!(
            read(store, state, &app).await.is_none(),
            "read_app of a missing {state} file returned something"
        );
    }
    write(store, TargetState::Active, &app, &target_file(&app, 1)).await;
    assert!(
        read(store, TargetState::Inactive, &app).await.is_none(),
        "read_app(inactive) returned the active file"
    );
}

/// A listing of more than one S3 page ([`MANY_FILES`] files, written
/// [`WRITE_CONCURRENCY`] at a time) is complete, sorted and has the right ETags; and
/// [`TargetStore::list_apps_hinted`] returns the same listing whatever the hint.
pub async fn a_listing_of_more_than_a_thousand_files_is_complete(store: &dyn TargetStore) {
    let mut expected: Vec<StoredTarget> = futures::stream::iter(0..MANY_FILES)
        .map(|i| async move {
            let app = new_app();
            let body = Bytes::from(format!("[{i}]"));
            let etag = store.write_app(TargetState::Active, &app, body).await?;
            Ok::<_, StoreError>(StoredTarget {
                app_guid: app,
                state: TargetState::Active,
                etag,
            })
        })
        .buffer_unordered(WRITE_CONCURRENCY)
        .try_collect()
        .await
        .unwrap_or_else(|e| panic!("writing {MANY_FILES} files failed: {e} ({e:?})"));
    expected.sort_by(|a, b| a.app_guid.cmp(&b.app_guid));
    let listed = list(store, TargetState::Active).await;
    assert_eq!(
        listed.len(),
        MANY_FILES,
        "the listing is incomplete: pagination lost files"
    );
    assert!(
        listed == expected,
        "the listing of {MANY_FILES} files is not the sorted set that was written"
    );
    assert_only(store, TargetState::Inactive, &[]).await;

    // A hinted listing is the same listing, with or without a hint, with a hint that is
    // stale (files added and removed since, the first one and a range boundary among
    // them) or made for the other state.
    let hinted = |hint: Option<ListHint>| async move {
        let call = format!("list_apps_hinted(active, {hint:?})");
        must(
            &call,
            store
                .list_apps_hinted(TargetState::Active, hint.as_ref())
                .await,
        )
    };
    let (listed, hint) = hinted(None).await;
    assert!(
        listed == expected,
        "a listing without a hint differs from list_apps"
    );
    let (listed, same) = hinted(hint.clone()).await;
    assert!(
        listed == expected,
        "a listing with a fresh hint differs from list_apps"
    );
    assert_eq!(same, hint, "an unchanged listing gave another hint");
    for gone in [0, 999, 1000, 1001, MANY_FILES - 1] {
        let app = &expected[gone].app_guid;
        must(
            "remove_app",
            store.remove_app(TargetState::Active, app).await,
        );
    }
    for i in 0..30 {
        let app = new_app();
        must(
            "write_app",
            store
                .write_app(TargetState::Active, &app, Bytes::from(format!("[{i}]")))
                .await,
        );
    }
    let expected = list(store, TargetState::Active).await;
    assert_eq!(expected.len(), MANY_FILES - 5 + 30);
    let (listed, _) = hinted(hint).await;
    assert!(
        listed == expected,
        "a listing with a stale hint differs from list_apps"
    );
    let (_, inactive_hint) = must(
        "list_apps_hinted(inactive)",
        store.list_apps_hinted(TargetState::Inactive, None).await,
    );
    let (listed, _) = hinted(inactive_hint).await;
    assert!(
        listed == expected,
        "a listing with the other state's hint differs from list_apps"
    );
}

/// Entries that are not `<app guid>.json` directly in a state directory are skipped by
/// listings, and no call of the store removes them.
pub async fn foreign_entries_are_neither_listed_nor_removed(backend: &impl Backend) {
    let store = backend.store();
    let app = new_app();
    let foreign = [
        "README.txt".to_owned(),
        "active/README.txt".to_owned(),
        "active/not-a-guid.json".to_owned(),
        format!("active/{app}.json.bak"),
        format!("active/{app}"),
        format!("active/nested/{app}.json"),
        format!("inactive/{}.json", app.as_str().to_uppercase()),
        "inactive/.hidden.tmp".to_owned(),
    ];
    for key in &foreign {
        backend.put_raw(key, b"[]").await;
    }
    for state in TargetState::ALL {
        assert_only(store, state, &[]).await;
    }

    let body = target_file(&app, 1);
    let etag = write(store, TargetState::Active, &app, &body).await;
    let expected = [StoredTarget {
        app_guid: app.clone(),
        state: TargetState::Active,
        etag,
    }];
    assert_only(store, TargetState::Active, &expected).await;
    must(
        "move_app(active -> inactive)",
        store
            .move_app(TargetState::Active, TargetState::Inactive, &app)
            .await,
    );
    must(
        "remove_app(inactive)",
        store.remove_app(TargetState::Inactive, &app).await,
    );
    for state in TargetState::ALL {
        assert_only(store, state, &[]).await;
    }
    for key in &foreign {
        assert!(
            backend.exists_raw(key).await,
            "the foreign entry {key} was removed"
        );
    }
}

/// The writers' record is a compare-and-swap: created only when absent, replaced only
/// while it still has the ETag the writer read.
pub async fn the_record_is_replaced_only_while_it_is_unchanged(store: &dyn TargetStore) {
    assert!(
        must("read_record", store.read_record().await).is_none(),
        "a new store has a writers' record"
    );
    let first = Bytes::from_static(b"{\"n\":1}");
    let second = Bytes::from_static(b"{\"n\":2}");
    let created = must("create", store.replace_record(first.clone(), None).await)
        .expect("creating the absent record was refused");
    assert_eq!(
        created,
        ETag::of(&first),
        "the record's ETag is not its MD5"
    );
    assert!(
        must(
            "create again",
            store.replace_record(second.clone(), None).await
        )
        .is_none(),
        "a record was created over an existing one"
    );
    assert!(
        must(
            "replace with a stale ETag",
            store
                .replace_record(second.clone(), Some(&ETag::of(b"other")))
                .await
        )
        .is_none(),
        "a record was replaced although it had changed"
    );
    assert_eq!(
        must("read_record", store.read_record().await),
        Some((first.clone(), created.clone())),
        "a refused replacement changed the record"
    );
    let replaced = must(
        "replace with the current ETag",
        store.replace_record(second.clone(), Some(&created)).await,
    );
    assert_eq!(
        replaced,
        Some(ETag::of(&second)),
        "the current ETag was refused"
    );
    assert_eq!(
        must("read_record", store.read_record().await).map(|(body, _)| body),
        Some(second)
    );
}

/// Writers that each add a file and publish at the same time leave a record counting all
/// of them, one generation per publication: none is lost to a race.
pub async fn racing_publications_leave_a_record_that_counts_every_file(store: &dyn TargetStore) {
    const WRITERS: usize = 6;
    let results = futures::future::join_all((0..WRITERS).map(|i| async move {
        let app = new_app();
        write(store, TargetState::Active, &app, &target_file(&app, i + 1)).await;
        record::publish(store, "conformance").await
    }))
    .await;
    for result in results {
        must("publish", result);
    }
    let (body, _) = must("read_record", store.read_record().await).expect("no record");
    let record = WritersRecord::parse(&body).expect("the published record does not parse");
    assert_eq!(
        record.active_count, WRITERS as u64,
        "the record does not count every file: {record:?}"
    );
    assert_eq!(
        record.generation, WRITERS as u64,
        "every publication must advance the generation by exactly one: {record:?}"
    );
}

/// [`TargetStore::read_record_if_changed`] answers `Unchanged` for the version asked
/// about, the new body and ETag after any publication, and `Absent` without a record.
pub async fn the_record_is_read_only_when_it_changed(store: &dyn TargetStore) {
    use crate::RecordChange;
    assert_eq!(
        must("poll", store.read_record_if_changed(None).await),
        RecordChange::Absent
    );
    let first = must("publish", record::publish(store, "conformance").await);
    let (body, etag) = match must("poll", store.read_record_if_changed(None).await) {
        RecordChange::Changed(body, etag) => (body, etag),
        other => panic!("a new record reads as {other:?}"),
    };
    assert_eq!(WritersRecord::parse(&body).unwrap(), first);
    for _ in 0..2 {
        assert_eq!(
            must("poll", store.read_record_if_changed(Some(&etag)).await),
            RecordChange::Unchanged
        );
    }
    let second = must("publish", record::publish(store, "conformance").await);
    match must("poll", store.read_record_if_changed(Some(&etag)).await) {
        RecordChange::Changed(body, new) => {
            assert_ne!(new, etag);
            assert_eq!(WritersRecord::parse(&body).unwrap(), second);
        }
        other => panic!("a republished record reads as {other:?}"),
    }
}

/// The record is `record/active.json`, beside (never inside) `active/` and `inactive/`:
/// listings do not see it, and an old sync of `active/` never copies it.
pub async fn the_record_lives_beside_the_state_directories(backend: &impl Backend) {
    let store = backend.store();
    let app = new_app();
    write(store, TargetState::Active, &app, &target_file(&app, 2)).await;
    let record = must("publish", record::publish(store, "conformance").await);
    assert_eq!((record.generation, record.active_count), (1, 1));
    assert!(
        backend.exists_raw(RECORD_KEY).await,
        "the record is not at {RECORD_KEY}"
    );
    assert_eq!(list(store, TargetState::Active).await.len(), 1);
    assert_eq!(list(store, TargetState::Inactive).await.len(), 0);
}

/// Credentials documents are written, read back with their MD5 as ETag, replaced, listed
/// (sorted, complete) and removed (idempotently), by app.
pub async fn credentials_documents_are_written_read_listed_and_removed(store: &dyn TargetStore) {
    let mut apps = [new_app(), new_app(), new_app()];
    apps.sort();
    assert_eq!(
        must("list_credentials", store.list_credentials().await),
        [],
        "a fresh store lists credentials"
    );
    for app in &apps {
        let body = Bytes::from(format!(
            r#"{{"format":1,"app_guid":"{app}","bindings":[]}}"#
        ));
        let etag = must(
            "write_credentials",
            store.write_credentials(app, body.clone()).await,
        );
        assert_eq!(etag, ETag::of(&body), "the ETag is not the MD5 of the body");
        assert_eq!(
            must("read_credentials", store.read_credentials(app).await),
            Some((body, etag)),
            "a credentials document does not read back identical"
        );
    }
    let replaced = Bytes::from_static(b"{\"replaced\":true}");
    must(
        "write_credentials",
        store.write_credentials(&apps[1], replaced.clone()).await,
    );
    let listed = must("list_credentials", store.list_credentials().await);
    let expected: Vec<StoredCredentials> = apps
        .iter()
        .map(|app| StoredCredentials {
            app_guid: app.clone(),
            etag: if app == &apps[1] {
                ETag::of(&replaced)
            } else {
                listed
                    .iter()
                    .find(|c| &c.app_guid == app)
                    .map(|c| c.etag.clone())
                    .unwrap_or_else(|| panic!("{app} is not listed: {listed:?}"))
            },
        })
        .collect();
    assert_eq!(
        listed, expected,
        "the credentials listing is not sorted or complete"
    );
    must(
        "remove_credentials",
        store.remove_credentials(&apps[0]).await,
    );
    must(
        "remove_credentials",
        store.remove_credentials(&apps[0]).await,
    );
    assert_eq!(
        must("read_credentials", store.read_credentials(&apps[0]).await),
        None,
        "a removed credentials document is still there"
    );
    assert_eq!(
        must("list_credentials", store.list_credentials().await).len(),
        2,
        "removing one credentials document removed another"
    );
}

/// Credentials documents are `credentials/<guid>.json`, beside (never inside) `active/`
/// and `inactive/`: target listings never see them, writing or removing one touches no
/// target file, and foreign entries under `credentials/` are skipped.
pub async fn credentials_documents_live_beside_the_state_directories(backend: &impl Backend) {
    let store = backend.store();
    let app = new_app();
    let file = target_file(&app, 1);
    write(store, TargetState::Active, &app, &file).await;
    must(
        "write_credentials",
        store
            .write_credentials(&app, Bytes::from_static(b"{}"))
            .await,
    );
    assert!(
        backend.exists_raw(&format!("credentials/{app}.json")).await,
        "the document is not at credentials/<guid>.json"
    );
    backend.put_raw("credentials/README.txt", b"foreign").await;
    assert_eq!(list(store, TargetState::Active).await.len(), 1);
    assert_eq!(list(store, TargetState::Inactive).await.len(), 0);
    let listed = must("list_credentials", store.list_credentials().await);
    assert_eq!(
        listed.iter().map(|c| &c.app_guid).collect::<Vec<_>>(),
        [&app],
        "a foreign entry under credentials/ was listed"
    );
    must("remove_credentials", store.remove_credentials(&app).await);
    assert_eq!(
        read(store, TargetState::Active, &app).await.map(|(b, _)| b),
        Some(file),
        "removing the credentials document touched the target file"
    );
    assert!(backend.exists_raw("credentials/README.txt").await);
}
