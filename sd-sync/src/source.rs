//! Where a mapping's objects come from: a bucket prefix, listed and read.
//!
//! [`S3Source`] uses the client that gds-store builds (endpoint override, path-style,
//! static keys or the AWS default credential chain, timeouts and retries) and speaks raw keys, because a mapping may
//! name any prefix, not only the standard `active/` layout.

use std::future::Future;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use std::sync::{Arc, Mutex};

use gds_service::error_chain;
use gds_store::ranges::{ListedKey, PageRequest, boundaries_of, list_in_ranges_streaming};
use gds_store::{
    Bytes, ConfigError, ETag, LIST_PAGE_SIZE, ListPageError, S3Config, S3Store, list_page,
    record_key_for_active_prefix,
};
use prometheus::IntCounter;
use tokio::sync::mpsc::UnboundedSender;

use crate::filesd::is_managed_name;
use crate::plan::ListedObject;

/// How many ranges of a listing are read at once (16,000 objects in about one page's time).
const LIST_RANGES_AT_ONCE: usize = 16;

/// Why a listing or a read failed, in one line for the log.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct SourceError(pub String);

/// The pages of a listing, as they arrive.
pub type Pages = UnboundedSender<Vec<ListedObject>>;

/// A listable, readable set of `file_sd` objects.
pub trait Source: Send + Sync + 'static {
    /// Sends every managed (`*.json`, see [`is_managed_name`]) object directly under the
    /// prefix to `pages`, a page at a time (so that fetching can start before the listing
    /// ends). `Ok` only once every page has been sent: only then is the listing complete,
    /// and only a complete listing may plan deletions.
    fn list(&self, pages: &Pages) -> impl Future<Output = Result<(), SourceError>> + Send;

    /// The content of `name`; `Ok(None)` when it vanished since the listing.
    fn get(&self, name: &str) -> impl Future<Output = Result<Option<Bytes>, SourceError>> + Send;

    /// The key of the writers' record beside the prefix (`<root>/record/active.json` for
    /// `<root>/active/`, see [`gds_store::record`]); `None` when the prefix locates none.
    fn record_key(&self) -> Option<&str>;

    /// The writers' record object; `Ok(None)` when there is none. Called only when
    /// [`Source::record_key`] is some.
    fn get_record(&self) -> impl Future<Output = Result<Option<Bytes>, SourceError>> + Send;

    /// Asks whether the writers' record differs from the version `known` (its ETag), with
    /// one conditional read (`If-None-Match`): [`RecordPoll::Unchanged`] costs no body.
    /// Without `known`, an ordinary read. Called only when [`Source::record_key`] is some.
    fn poll_record(
        &self,
        known: Option<&ETag>,
    ) -> impl Future<Output = Result<RecordPoll, SourceError>> + Send;
}

/// What a conditional read of the writers' record said.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordPoll {
    /// The record is still the version asked about (S3: `304 Not Modified`).
    Unchanged,
    /// There is no record.
    Absent,
    /// The record is another version than the one asked about (or none was asked about).
    Changed { etag: ETag, body: Bytes },
}

/// Counts the requests a source makes, by kind: what an idle poll costs.
#[derive(Clone, Debug)]
pub struct RequestCounters {
    pub list: IntCounter,
    pub get: IntCounter,
    /// Reads of the writers' record (only when the valve would hold deletions back).
    pub record: IntCounter,
    /// Conditional reads of the writers' record (one per poll), whatever they answered.
    pub record_poll: IntCounter,
}

/// A bucket prefix on S3 or an S3-compatible store.
#[derive(Clone, Debug)]
pub struct S3Source {
    /// Kept for its credentials check; requests go through `client`.
    store: S3Store,
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    record_key: Option<String>,
    requests: RequestCounters,
    /// Every 1,000th key of the last complete listing (see [`gds_store::ranges`]).
    boundaries: Arc<Mutex<Vec<String>>>,
}

impl S3Source {
    /// A source for `prefix` (`""` or ending in `/`) of the bucket in `config`, whose own
    /// `prefix` must be empty. Makes no request.
    pub fn new(
        config: S3Config,
        prefix: String,
        requests: RequestCounters,
    ) -> Result<S3Source, ConfigError> {
        let bucket = config.bucket.clone();
        // Static keys are in the config if given; nothing is looked up here (the default
        // chain reads the process environment itself).
        let store = S3Store::new(config, |_| None)?;
        Ok(S3Source {
            client: store.client().clone(),
            store,
            bucket,
            record_key: record_key_for_active_prefix(&prefix),
            prefix,
            requests,
            boundaries: Arc::default(),
        })
    }

    /// Resolves the credentials once ([`S3Store::check_credentials`]).
    pub async fn check_credentials(&self) -> Result<(), ConfigError> {
        self.store.check_credentials().await
    }

    fn describe<E>(&self, operation: &str, key: &str, err: &SdkError<E>) -> SourceError
    where
        E: ProvideErrorMetadata + std::error::Error + 'static,
    {
        let summary = match err {
            SdkError::ServiceError(service) => format!(
                "{} (HTTP {}){}",
                err.code().unwrap_or("no error code"),
                service.raw().status().as_u16(),
                err.message().map(|m| format!(": {m}")).unwrap_or_default()
            ),
            _ => error_chain(err),
        };
        SourceError(format!(
            "S3 {operation} s3://{}/{key}: {summary}",
            self.bucket
        ))
    }
}

impl Source for S3Source {
    /// With the boundaries of the previous complete listing, lists the ranges between them
    /// concurrently ([`gds_store::ranges`]): as many requests as page after page, one per
    /// 1,000 objects, in about the time of one page however large the bucket.
    async fn list(&self, pages: &Pages) -> Result<(), SourceError> {
        let boundaries = self.boundaries.lock().expect("boundaries lock").clone();
        let fetch = |request: PageRequest| async move {
            self.requests.list.inc();
            // The delimiter keeps "subdirectories" out of the pages: only objects directly
            // under the prefix are mirrored.
            list_page(&self.client, &self.bucket, &self.prefix, Some("/"), request)
                .await
                .map_err(|e| match e {
                    ListPageError::Request(e) => self.describe("ListObjectsV2", &self.prefix, &e),
                    e @ ListPageError::NoContinuationToken => SourceError(format!(
                        "S3 ListObjectsV2 s3://{}/{}: {e}",
                        self.bucket, self.prefix
                    )),
                })
        };
        let on_keys = |keys: &[ListedKey]| {
            let listed = keys
                .iter()
                .filter_map(|object| {
                    let name = object.key.strip_prefix(&self.prefix)?;
                    if !is_managed_name(name) {
                        tracing::debug!(bucket = %self.bucket, key = %object.key, "not a *.json object: skipped");
                        return None;
                    }
                    Some(ListedObject {
                        name: name.to_owned(),
                        etag: ETag::from_store(&object.etag),
                        size: object.size,
                        last_modified: object.last_modified,
                    })
                })
                .collect();
            // A closed receiver means the sync is gone; the listing is then moot.
            let _ = pages.send(listed);
        };
        let keys =
            list_in_ranges_streaming(&boundaries, LIST_RANGES_AT_ONCE, fetch, on_keys).await?;
        *self.boundaries.lock().expect("boundaries lock") =
            boundaries_of(&keys, LIST_PAGE_SIZE as usize);
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<Bytes>, SourceError> {
        self.requests.get.inc();
        self.get_key(&format!("{}{name}", self.prefix)).await
    }

    fn record_key(&self) -> Option<&str> {
        self.record_key.as_deref()
    }

    async fn get_record(&self) -> Result<Option<Bytes>, SourceError> {
        let Some(key) = &self.record_key else {
            return Ok(None);
        };
        self.requests.record.inc();
        self.get_key(key).await
    }

    async fn poll_record(&self, known: Option<&ETag>) -> Result<RecordPoll, SourceError> {
        let Some(key) = &self.record_key else {
            return Ok(RecordPoll::Absent);
        };
        self.requests.record_poll.inc();
        let mut request = self.client.get_object().bucket(&self.bucket).key(key);
        if let Some(etag) = known {
            request = request.if_none_match(format!("\"{etag}\""));
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 304 => {
                return Ok(RecordPoll::Unchanged);
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(RecordPoll::Absent);
            }
            Err(e) => return Err(self.describe("GetObject", key, &e)),
        };
        let etag = output.e_tag().map(ETag::from_store);
        let body = output.body.collect().await.map_err(|e| {
            SourceError(format!(
                "S3 GetObject s3://{}/{key}: reading the body failed: {}",
                self.bucket,
                error_chain(&e)
            ))
        })?;
        let body = body.into_bytes();
        // A store that reports no ETag: the content's MD5 stands in (and changes with it).
        let etag = etag.unwrap_or_else(|| ETag::of(&body));
        // A store that ignores If-None-Match answers 200 with the same version.
        if known == Some(&etag) {
            return Ok(RecordPoll::Unchanged);
        }
        Ok(RecordPoll::Changed { etag, body })
    }
}

impl S3Source {
    /// The object `key` of the bucket; `Ok(None)` when there is none.
    async fn get_key(&self, key: &str) -> Result<Option<Bytes>, SourceError> {
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(self.describe("GetObject", key, &e)),
        };
        let body = output.body.collect().await.map_err(|e| {
            SourceError(format!(
                "S3 GetObject s3://{}/{key}: reading the body failed: {}",
                self.bucket,
                error_chain(&e)
            ))
        })?;
        Ok(Some(body.into_bytes()))
    }
}

/// An in-memory source for unit tests, with failure injection.
#[cfg(test)]
pub(crate) mod memory {
    use std::collections::BTreeMap;
    use std::sync::Mutex;
    use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
    use std::time::SystemTime;

    use super::*;

    #[derive(Debug, Default)]
    pub(crate) struct MemorySource {
        pub objects: Mutex<BTreeMap<String, Bytes>>,
        pub failing: AtomicBool,
        pub truncating: AtomicBool,
        pub lists: AtomicUsize,
        pub gets: AtomicUsize,
        /// The writers' record (the source stands for an `active/` prefix).
        pub record: Mutex<Option<Bytes>>,
        pub record_failing: AtomicBool,
        pub record_gets: AtomicUsize,
        /// Conditional reads of the record ([`Source::poll_record`]).
        pub record_polls: AtomicUsize,
        /// Each object's `LastModified`: when it was put, unless set otherwise.
        pub modified: Mutex<BTreeMap<String, SystemTime>>,
    }

    impl MemorySource {
        pub fn put(&self, name: &str, content: &str) {
            let content = Bytes::copy_from_slice(content.as_bytes());
            self.objects.lock().unwrap().insert(name.into(), content);
            self.set_modified(name, SystemTime::now());
        }

        /// Makes the listing say that `name` was last modified `at` (the store's clock).
        pub fn set_modified(&self, name: &str, at: SystemTime) {
            self.modified.lock().unwrap().insert(name.into(), at);
        }

        pub fn remove(&self, name: &str) {
            self.objects.lock().unwrap().remove(name);
        }

        pub fn clear(&self) {
            self.objects.lock().unwrap().clear();
        }

        pub fn fail(&self, failing: bool) {
            self.failing.store(failing, Ordering::SeqCst);
        }

        pub fn set_record(&self, body: Option<&[u8]>) {
            *self.record.lock().unwrap() = body.map(Bytes::copy_from_slice);
        }
    }

    impl Source for std::sync::Arc<MemorySource> {
        /// Pages of two objects. `failing`: no page at all; `truncating`: the listing
        /// fails after its first page.
        async fn list(&self, pages: &Pages) -> Result<(), SourceError> {
            self.lists.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(SourceError("injected listing failure".into()));
            }
            let listed: Vec<ListedObject> = self
                .objects
                .lock()
                .unwrap()
                .iter()
                .filter(|(name, _)| is_managed_name(name))
                .map(|(name, content)| ListedObject {
                    name: name.clone(),
                    etag: ETag::of(content),
                    size: content.len() as u64,
                    last_modified: self.modified.lock().unwrap().get(name).copied(),
                })
                .collect();
            for (n, page) in listed.chunks(2).enumerate() {
                if n == 1 && self.truncating.load(Ordering::SeqCst) {
                    return Err(SourceError("injected failure after the first page".into()));
                }
                let _ = pages.send(page.to_vec());
            }
            Ok(())
        }

        async fn get(&self, name: &str) -> Result<Option<Bytes>, SourceError> {
            self.gets.fetch_add(1, Ordering::SeqCst);
            if self.failing.load(Ordering::SeqCst) {
                return Err(SourceError("injected read failure".into()));
            }
            Ok(self.objects.lock().unwrap().get(name).cloned())
        }

        fn record_key(&self) -> Option<&str> {
            Some(gds_store::RECORD_KEY)
        }

        async fn get_record(&self) -> Result<Option<Bytes>, SourceError> {
            self.record_gets.fetch_add(1, Ordering::SeqCst);
            if self.record_failing.load(Ordering::SeqCst) {
                return Err(SourceError("injected record read failure".into()));
            }
            Ok(self.record.lock().unwrap().clone())
        }

        async fn poll_record(&self, known: Option<&ETag>) -> Result<RecordPoll, SourceError> {
            self.record_polls.fetch_add(1, Ordering::SeqCst);
            if self.record_failing.load(Ordering::SeqCst) {
                return Err(SourceError("injected record read failure".into()));
            }
            Ok(match self.record.lock().unwrap().clone() {
                None => RecordPoll::Absent,
                Some(body) => {
                    let etag = ETag::of(&body);
                    if known == Some(&etag) {
                        RecordPoll::Unchanged
                    } else {
                        RecordPoll::Changed { etag, body }
                    }
                }
            })
        }
    }
}
