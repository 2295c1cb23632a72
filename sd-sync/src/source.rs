//! Where a mapping's objects come from: a bucket prefix, listed and read.
//!
//! [`S3Source`] uses the client that gds-store builds (endpoint override, path-style,
//! static credentials, timeouts and retries) and speaks raw keys, because a mapping may
//! name any prefix, not only the standard `active/` layout.

use std::future::Future;

use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use gds_store::{Bytes, ConfigError, ETag, S3Config, S3Store, error_chain};
use prometheus::IntCounter;
use tokio::sync::mpsc::UnboundedSender;

use crate::filesd::is_managed_name;
use crate::plan::ListedObject;

/// The most keys S3 returns per `ListObjectsV2` page: one request per 1,000 objects.
const LIST_PAGE_SIZE: i32 = 1000;

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
}

/// Counts the requests a source makes, by kind: what an idle poll costs.
#[derive(Clone, Debug)]
pub struct RequestCounters {
    pub list: IntCounter,
    pub get: IntCounter,
}

/// A bucket prefix on S3 or an S3-compatible store.
#[derive(Clone, Debug)]
pub struct S3Source {
    client: aws_sdk_s3::Client,
    bucket: String,
    prefix: String,
    requests: RequestCounters,
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
        // The credentials are in the config; nothing is looked up.
        let store = S3Store::new(config, |_| None)?;
        Ok(S3Source {
            client: store.client().clone(),
            bucket,
            prefix,
            requests,
        })
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
    async fn list(&self, pages: &Pages) -> Result<(), SourceError> {
        let mut continuation: Option<String> = None;
        loop {
            self.requests.list.inc();
            // The delimiter keeps "subdirectories" out of the pages: only objects directly
            // under the prefix are mirrored.
            let page = self
                .client
                .list_objects_v2()
                .bucket(&self.bucket)
                .prefix(&self.prefix)
                .delimiter("/")
                .max_keys(LIST_PAGE_SIZE)
                .set_continuation_token(continuation.take())
                .send()
                .await
                .map_err(|e| self.describe("ListObjectsV2", &self.prefix, &e))?;
            let mut listed = Vec::with_capacity(page.contents().len());
            for object in page.contents() {
                let Some(name) = object.key().and_then(|k| k.strip_prefix(&self.prefix)) else {
                    continue;
                };
                if !is_managed_name(name) {
                    tracing::debug!(bucket = %self.bucket, key = ?object.key(), "not a *.json object: skipped");
                    continue;
                }
                listed.push(ListedObject {
                    name: name.to_owned(),
                    etag: ETag::from_store(object.e_tag().unwrap_or_default()),
                    size: object.size().unwrap_or(0).max(0) as u64,
                });
            }
            // A closed receiver means the sync is gone; the listing is then moot.
            let _ = pages.send(listed);
            if page.is_truncated() != Some(true) {
                break;
            }
            match page.next_continuation_token() {
                Some(token) if !token.is_empty() => continuation = Some(token.to_owned()),
                // Stopping here would silently drop the remaining pages.
                _ => {
                    return Err(SourceError(format!(
                        "S3 ListObjectsV2 s3://{}/{}: a truncated page without a \
                         continuation token",
                        self.bucket, self.prefix
                    )));
                }
            }
        }
        Ok(())
    }

    async fn get(&self, name: &str) -> Result<Option<Bytes>, SourceError> {
        let key = format!("{}{name}", self.prefix);
        self.requests.get.inc();
        let output = match self
            .client
            .get_object()
            .bucket(&self.bucket)
            .key(&key)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(None);
            }
            Err(e) => return Err(self.describe("GetObject", &key, &e)),
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

    use super::*;

    #[derive(Debug, Default)]
    pub(crate) struct MemorySource {
        pub objects: Mutex<BTreeMap<String, Bytes>>,
        pub failing: AtomicBool,
        pub truncating: AtomicBool,
        pub lists: AtomicUsize,
        pub gets: AtomicUsize,
    }

    impl MemorySource {
        pub fn put(&self, name: &str, content: &str) {
            let content = Bytes::copy_from_slice(content.as_bytes());
            self.objects.lock().unwrap().insert(name.into(), content);
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
    }
}
