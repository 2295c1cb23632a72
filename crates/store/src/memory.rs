//! [`MemoryStore`]: the bucket layout in a map, for unit tests of the broker, the
//! updater and sd-sync.

use std::collections::BTreeMap;
use std::sync::{Mutex, MutexGuard};

use async_trait::async_trait;
use bytes::Bytes;
use gds_targets::AppGuid;

use crate::record::RECORD_KEY;
use crate::{ETag, StoreError, StoredCredentials, StoredTarget, TargetState, TargetStore, layout};

/// An in-memory [`TargetStore`] keyed by the same relative keys as the bucket
/// (`active/<guid>.json`), with hooks for tests: [`MemoryStore::fail_next`] and
/// [`MemoryStore::set_unavailable`] make calls fail with [`StoreError::Unavailable`] (to
/// test "store down → delete nothing"), [`MemoryStore::insert_raw`] plants foreign keys.
#[derive(Debug, Default)]
pub struct MemoryStore {
    inner: Mutex<Inner>,
}

#[derive(Debug, Default)]
struct Inner {
    objects: BTreeMap<String, Bytes>,
    fail_next: usize,
    unavailable: bool,
}

impl MemoryStore {
    /// An empty store.
    pub fn new() -> MemoryStore {
        MemoryStore::default()
    }

    /// Makes the next `calls` calls (of any method) fail with [`StoreError::Unavailable`].
    pub fn fail_next(&self, calls: usize) {
        self.lock().fail_next = calls;
    }

    /// While `down` is true, every call fails with [`StoreError::Unavailable`].
    pub fn set_unavailable(&self, down: bool) {
        self.lock().unavailable = down;
    }

    /// Stores `body` under a raw relative key such as `active/README.txt`, bypassing the
    /// layout: for testing that foreign entries are skipped.
    pub fn insert_raw(&self, key: impl Into<String>, body: Bytes) {
        self.lock().objects.insert(key.into(), body);
    }

    /// Whether a raw relative key exists.
    pub fn contains_raw(&self, key: &str) -> bool {
        self.lock().objects.contains_key(key)
    }

    /// The body at a raw relative key, if any.
    pub fn read_raw(&self, key: &str) -> Option<Bytes> {
        self.lock().objects.get(key).cloned()
    }

    /// Every raw relative key, sorted: for asserting on the exact content of the store.
    pub fn raw_keys(&self) -> Vec<String> {
        self.lock().objects.keys().cloned().collect()
    }

    fn lock(&self) -> MutexGuard<'_, Inner> {
        // A panicking test thread must not make every later call panic too.
        self.inner
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Locks the map for one call, or fails the call if a failure is injected.
    fn call(&self, operation: &str) -> Result<MutexGuard<'_, Inner>, StoreError> {
        let mut inner = self.lock();
        let injected = if inner.unavailable {
            true
        } else if inner.fail_next > 0 {
            inner.fail_next -= 1;
            true
        } else {
            false
        };
        if injected {
            return Err(StoreError::Unavailable {
                context: format!("memory store: injected failure of {operation}"),
                source: None,
            });
        }
        Ok(inner)
    }
}

#[async_trait]
impl TargetStore for MemoryStore {
    async fn write_app(
        &self,
        state: TargetState,
        app: &AppGuid,
        body: Bytes,
    ) -> Result<ETag, StoreError> {
        let mut inner = self.call("write_app")?;
        let etag = ETag::of(&body);
        inner.objects.insert(layout::relative_key(state, app), body);
        Ok(etag)
    }

    async fn read_app(
        &self,
        state: TargetState,
        app: &AppGuid,
    ) -> Result<Option<(Bytes, ETag)>, StoreError> {
        let inner = self.call("read_app")?;
        Ok(inner
            .objects
            .get(&layout::relative_key(state, app))
            .map(|body| (body.clone(), ETag::of(body))))
    }

    async fn remove_app(&self, state: TargetState, app: &AppGuid) -> Result<(), StoreError> {
        let mut inner = self.call("remove_app")?;
        inner.objects.remove(&layout::relative_key(state, app));
        Ok(())
    }

    async fn list_apps(&self, state: TargetState) -> Result<Vec<StoredTarget>, StoreError> {
        let inner = self.call("list_apps")?;
        let dir = layout::state_dir(state);
        let mut listed: Vec<StoredTarget> = inner
            .objects
            .range(dir.clone()..)
            .take_while(|(key, _)| key.starts_with(&dir))
            .filter_map(|(key, body)| {
                let app = layout::app_of_listed_name(state, &key[dir.len()..], key)?;
                Some(StoredTarget {
                    app_guid: app,
                    state,
                    etag: ETag::of(body),
                })
            })
            .collect();
        listed.sort_by(|a, b| a.app_guid.cmp(&b.app_guid));
        Ok(listed)
    }

    async fn write_credentials(&self, app: &AppGuid, body: Bytes) -> Result<ETag, StoreError> {
        let mut inner = self.call("write_credentials")?;
        let etag = ETag::of(&body);
        inner.objects.insert(layout::credentials_key(app), body);
        Ok(etag)
    }

    async fn read_credentials(&self, app: &AppGuid) -> Result<Option<(Bytes, ETag)>, StoreError> {
        let inner = self.call("read_credentials")?;
        Ok(inner
            .objects
            .get(&layout::credentials_key(app))
            .map(|body| (body.clone(), ETag::of(body))))
    }

    async fn remove_credentials(&self, app: &AppGuid) -> Result<(), StoreError> {
        let mut inner = self.call("remove_credentials")?;
        inner.objects.remove(&layout::credentials_key(app));
        Ok(())
    }

    async fn list_credentials(&self) -> Result<Vec<StoredCredentials>, StoreError> {
        let inner = self.call("list_credentials")?;
        let dir = layout::CREDENTIALS_DIR;
        Ok(inner
            .objects
            .range(dir.to_owned()..)
            .take_while(|(key, _)| key.starts_with(dir))
            .filter_map(|(key, body)| {
                let app = layout::app_of_listed_credentials_name(&key[dir.len()..], key)?;
                Some(StoredCredentials {
                    app_guid: app,
                    etag: ETag::of(body),
                })
            })
            .collect())
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.call("check").map(drop)
    }

    async fn read_record(&self) -> Result<Option<(Bytes, ETag)>, StoreError> {
        let inner = self.call("read_record")?;
        Ok(inner
            .objects
            .get(RECORD_KEY)
            .map(|body| (body.clone(), ETag::of(body))))
    }

    async fn replace_record(
        &self,
        body: Bytes,
        expected: Option<&ETag>,
    ) -> Result<Option<ETag>, StoreError> {
        let mut inner = self.call("replace_record")?;
        let current = inner.objects.get(RECORD_KEY).map(|body| ETag::of(body));
        if current.as_ref() != expected {
            return Ok(None);
        }
        let etag = ETag::of(&body);
        inner.objects.insert(RECORD_KEY.to_owned(), body);
        Ok(Some(etag))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    crate::target_store_conformance_tests!(MemoryStore::new());

    fn app() -> AppGuid {
        AppGuid::parse("1cb006ee-fb05-47e1-b541-c34179ddc446").unwrap()
    }

    #[tokio::test]
    async fn fail_next_fails_exactly_that_many_calls_of_any_kind() {
        let store = MemoryStore::new();
        store.fail_next(2);
        let first = store.list_apps(TargetState::Active).await;
        let second = store
            .write_app(TargetState::Active, &app(), "[]".into())
            .await;
        assert!(
            matches!(first, Err(StoreError::Unavailable { .. })),
            "{first:?}"
        );
        assert!(
            matches!(second, Err(StoreError::Unavailable { .. })),
            "{second:?}"
        );
        assert!(second.unwrap_err().is_transient());
        assert!(store.raw_keys().is_empty(), "a failed write wrote");
        store
            .write_app(TargetState::Active, &app(), "[]".into())
            .await
            .expect("the third call succeeds");
    }

    #[tokio::test]
    async fn an_unavailable_store_fails_every_call_until_it_is_back() {
        let store = MemoryStore::new();
        store.set_unavailable(true);
        assert!(store.check().await.is_err());
        assert!(store.list_apps(TargetState::Inactive).await.is_err());
        assert!(store.remove_app(TargetState::Active, &app()).await.is_err());
        store.set_unavailable(false);
        store.check().await.expect("the store is back");
    }

    #[tokio::test]
    async fn raw_keys_show_the_bucket_layout() {
        let store = MemoryStore::new();
        store
            .write_app(TargetState::Inactive, &app(), "[]".into())
            .await
            .unwrap();
        assert_eq!(
            store.raw_keys(),
            ["inactive/1cb006ee-fb05-47e1-b541-c34179ddc446.json"]
        );
    }
}
