//! [`S3Store`]: the bucket layout in an S3 bucket or an S3-compatible store.
//!
//! Credentials are static keys from the configuration or from
//! `AWS_ACCESS_KEY_ID`/`AWS_SECRET_ACCESS_KEY`/`AWS_SESSION_TOKEN` read through an injected
//! lookup (so tests pass a map, and `VCAP_SERVICES` keys work without touching the process
//! environment); without any, the AWS SDK's default chain ([`crate::credentials`]).

use std::fmt;
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use aws_sdk_s3::config::retry::RetryConfig;
use aws_sdk_s3::config::timeout::TimeoutConfig;
use aws_sdk_s3::config::{
    BehaviorVersion, Region, RequestChecksumCalculation, ResponseChecksumValidation,
    SharedCredentialsProvider,
};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_sdk_s3::operation::list_objects_v2::ListObjectsV2Error;
use aws_sdk_s3::primitives::ByteStream;
use aws_sdk_s3::types::{BucketLocationConstraint, CreateBucketConfiguration};
use bytes::Bytes;
use gds_service::{Secret, error_chain};
use gds_targets::AppGuid;

use crate::ranges::{ListedKey, Page, PageRequest, boundaries_of, list_in_ranges};
use crate::record::RECORD_KEY;
use crate::requests::{RequestCounter, S3Requests};
use crate::{
    ConfigError, ETag, ListHint, RecordChange, StoreError, StoredCredentials, StoredTarget,
    TargetState, TargetStore, credentials, layout,
};

/// The most keys S3 returns per `ListObjectsV2` page, and what [`list_page`] asks for.
pub const LIST_PAGE_SIZE: i32 = 1000;
/// At most this many ranges of a hinted listing are requested at once (10,000 targets
/// are 10 ranges; 100,000 would be 100).
const LIST_RANGE_CONCURRENCY: usize = 16;
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Per attempt: a target file is small, so a slow attempt is a stuck one.
const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);
/// For the whole call, retries included.
const OPERATION_TIMEOUT: Duration = Duration::from_secs(30);
const MAX_ATTEMPTS: u32 = 3;

/// Why [`list_page`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ListPageError {
    #[error("{}", error_chain(.0))]
    Request(Box<SdkError<ListObjectsV2Error>>),
    /// Stopping at such a page would silently drop the remaining pages.
    #[error("a truncated page without a continuation token")]
    NoContinuationToken,
}

/// One `ListObjectsV2` page (at most 1,000 keys) of `prefix` in `bucket`, as
/// [`crate::ranges`] asks for it. With a `delimiter`, keys with one after the prefix are
/// left out (S3 returns them as common prefixes).
pub async fn list_page(
    client: &aws_sdk_s3::Client,
    bucket: &str,
    prefix: &str,
    delimiter: Option<&str>,
    request: PageRequest,
) -> Result<Page, ListPageError> {
    let (start_after, continuation) = match request {
        PageRequest::StartAfter(start) => (start, None),
        PageRequest::Continue(token) => (None, Some(token)),
    };
    let page = client
        .list_objects_v2()
        .bucket(bucket)
        .prefix(prefix)
        .set_delimiter(delimiter.map(str::to_owned))
        .max_keys(LIST_PAGE_SIZE)
        .set_start_after(start_after)
        .set_continuation_token(continuation)
        .send()
        .await
        .map_err(|e| ListPageError::Request(Box::new(e)))?;
    let keys = page
        .contents()
        .iter()
        .filter_map(|object| {
            Some(ListedKey {
                key: object.key()?.to_owned(),
                etag: object.e_tag().unwrap_or_default().to_owned(),
                size: object.size().unwrap_or(0).max(0) as u64,
                last_modified: object
                    .last_modified()
                    .and_then(|t| std::time::SystemTime::try_from(*t).ok()),
            })
        })
        .collect();
    if page.is_truncated() != Some(true) {
        return Ok(Page { keys, next: None });
    }
    match page.next_continuation_token() {
        Some(token) if !token.is_empty() => Ok(Page {
            keys,
            next: Some(token.to_owned()),
        }),
        _ => Err(ListPageError::NoContinuationToken),
    }
}

/// Where and how to reach the bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct S3Config {
    /// `BUCKET_NAME`.
    pub bucket: String,
    /// `AWS_REGION`. Any value works for most S3-compatible stores.
    pub region: String,
    /// `S3_ENDPOINT`: the URL of an S3-compatible store (`http://127.0.0.1:9000`). Setting
    /// it also selects path-style addressing (`ENDPOINT/BUCKET/KEY`), which such stores
    /// need because `BUCKET.127.0.0.1` or `BUCKET.localhost` do not resolve.
    pub endpoint: Option<String>,
    /// A key prefix such as `eu-west-1/` (one prefix per region, DESIGN.md 6); empty for
    /// none. Normalised to one trailing `/`.
    pub prefix: String,
    /// A static access key id; when `None`, `AWS_ACCESS_KEY_ID` is looked up, and without
    /// that the AWS SDK's default credential chain is used.
    pub access_key_id: Option<String>,
    /// The secret key going with `access_key_id`.
    pub secret_access_key: Option<Secret>,
    /// A session token going with `access_key_id`, for temporary credentials.
    pub session_token: Option<Secret>,
}

impl S3Config {
    /// A configuration for `bucket` in `region`, with no endpoint override, no prefix and
    /// credentials to be looked up (static keys, else the default chain).
    pub fn new(bucket: impl Into<String>, region: impl Into<String>) -> S3Config {
        S3Config {
            bucket: bucket.into(),
            region: region.into(),
            endpoint: None,
            prefix: String::new(),
            access_key_id: None,
            secret_access_key: None,
            session_token: None,
        }
    }

    /// Sets `endpoint` (an S3-compatible store, path-style).
    pub fn with_endpoint(mut self, endpoint: impl Into<String>) -> S3Config {
        self.endpoint = Some(endpoint.into());
        self
    }

    /// Sets the key prefix.
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> S3Config {
        self.prefix = prefix.into();
        self
    }

    /// Sets static credentials.
    pub fn with_credentials(
        mut self,
        access_key_id: impl Into<String>,
        secret_access_key: impl Into<String>,
    ) -> S3Config {
        self.access_key_id = Some(access_key_id.into());
        self.secret_access_key = Some(Secret::new(secret_access_key));
        self
    }
}

/// A [`TargetStore`] in an S3 bucket, under an optional key prefix.
#[derive(Clone)]
pub struct S3Store {
    client: aws_sdk_s3::Client,
    bucket: String,
    region: String,
    prefix: String,
    endpoint: Option<String>,
    credentials: SharedCredentialsProvider,
    /// Every request the client sends, counted by operation.
    requests: Arc<S3Requests>,
}

impl fmt::Debug for S3Store {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("S3Store")
            .field("bucket", &self.bucket)
            .field("region", &self.region)
            .field("prefix", &self.prefix)
            .field("endpoint", &self.endpoint)
            .finish_non_exhaustive()
    }
}

/// Treats empty strings as unset, as a shell `export VAR=` would mean.
fn non_empty(value: Option<String>) -> Option<String> {
    value.filter(|v| !v.trim().is_empty())
}

impl S3Store {
    /// Builds the store and its client. No request is made; call
    /// [`TargetStore::check`] to probe the bucket.
    ///
    /// Credentials are the ones in `config` if it has an access key id, otherwise
    /// `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY` and optionally `AWS_SESSION_TOKEN`
    /// from `lookup` (pass `|name| std::env::var(name).ok()` for the process environment),
    /// otherwise the AWS SDK's default chain, resolved on first use: call
    /// [`S3Store::check_credentials`] at start to fail early when it finds none.
    pub fn new(
        config: S3Config,
        lookup: impl Fn(&str) -> Option<String>,
    ) -> Result<S3Store, ConfigError> {
        if config.bucket.trim().is_empty() {
            return Err(ConfigError::Missing {
                name: "BUCKET_NAME",
                why: "the S3 bucket of the target files",
            });
        }
        if config.region.trim().is_empty() {
            return Err(ConfigError::Missing {
                name: "AWS_REGION",
                why: "the region of the S3 bucket",
            });
        }
        let prefix =
            layout::normalise_prefix(&config.prefix).map_err(|reason| ConfigError::Invalid {
                name: "the key prefix",
                reason,
            })?;
        let endpoint = non_empty(config.endpoint);
        if let Some(endpoint) = &endpoint
            && !(endpoint.starts_with("http://") || endpoint.starts_with("https://"))
        {
            return Err(ConfigError::Invalid {
                name: "S3_ENDPOINT",
                reason: format!("{endpoint:?} is not an http:// or https:// URL"),
            });
        }
        let static_keys = credentials::static_keys(
            config.access_key_id,
            config.secret_access_key,
            config.session_token,
            &lookup,
        )?;
        let credentials = credentials::provider(static_keys, &config.region);

        let mut builder = aws_sdk_s3::Config::builder()
            .behavior_version(BehaviorVersion::latest())
            .region(Region::new(config.region.clone()))
            .credentials_provider(credentials.clone())
            // Only checksums that S3 itself requires: the SDK's default CRC32 headers and
            // aws-chunked bodies break some S3-compatible stores.
            .request_checksum_calculation(RequestChecksumCalculation::WhenRequired)
            .response_checksum_validation(ResponseChecksumValidation::WhenRequired)
            .timeout_config(
                TimeoutConfig::builder()
                    .connect_timeout(CONNECT_TIMEOUT)
                    .operation_attempt_timeout(ATTEMPT_TIMEOUT)
                    .operation_timeout(OPERATION_TIMEOUT)
                    .build(),
            )
            .retry_config(RetryConfig::standard().with_max_attempts(MAX_ATTEMPTS));
        if let Some(endpoint) = &endpoint {
            builder = builder.endpoint_url(endpoint).force_path_style(true);
        }
        let requests = Arc::new(S3Requests::default());
        builder = builder.interceptor(RequestCounter(requests.clone()));
        Ok(S3Store {
            client: aws_sdk_s3::Client::from_conf(builder.build()),
            bucket: config.bucket,
            region: config.region,
            prefix,
            endpoint,
            credentials,
            requests,
        })
    }

    /// The requests this store's client has sent, by operation (clones share them).
    pub fn requests(&self) -> Arc<S3Requests> {
        self.requests.clone()
    }

    /// Resolves the credentials once (static keys at once; the default chain asks its
    /// providers in turn, within a bounded time): an error names what was tried.
    pub async fn check_credentials(&self) -> Result<(), ConfigError> {
        credentials::check(&self.credentials).await
    }

    /// The underlying client, for tests and tools that need raw bucket access.
    pub fn client(&self) -> &aws_sdk_s3::Client {
        &self.client
    }

    /// The bucket name.
    pub fn bucket(&self) -> &str {
        &self.bucket
    }

    /// The normalised key prefix (`""` or ending in `/`).
    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// Creates the bucket unless it already exists and is ours: for tests and demos
    /// against an S3-compatible store. Production buckets are provisioned elsewhere.
    pub async fn create_bucket_if_missing(&self) -> Result<(), StoreError> {
        let mut request = self.client.create_bucket().bucket(&self.bucket);
        // us-east-1 is the one region that refuses an explicit location constraint.
        if self.region != "us-east-1" {
            request = request.create_bucket_configuration(
                CreateBucketConfiguration::builder()
                    .location_constraint(BucketLocationConstraint::from(self.region.as_str()))
                    .build(),
            );
        }
        match request.send().await {
            Ok(_) => Ok(()),
            Err(e)
                if e.as_service_error()
                    .is_some_and(|e| e.is_bucket_already_owned_by_you()) =>
            {
                Ok(())
            }
            Err(e) => Err(self.error("CreateBucket", "", e)),
        }
    }

    fn key(&self, state: TargetState, app: &AppGuid) -> String {
        format!("{}{}", self.prefix, layout::relative_key(state, app))
    }

    fn credentials_key(&self, app: &AppGuid) -> String {
        format!("{}{}", self.prefix, layout::credentials_key(app))
    }

    /// Every key under `dir`, complete or an error: the ranges between `boundaries`
    /// (strictly increasing keys under `dir`) are listed concurrently.
    async fn list_keys(
        &self,
        dir: &str,
        boundaries: &[String],
    ) -> Result<Vec<ListedKey>, StoreError> {
        let fetch = |request: PageRequest| async move {
            list_page(&self.client, &self.bucket, dir, None, request)
                .await
                .map_err(|e| match e {
                    ListPageError::Request(e) => self.error("ListObjectsV2", dir, *e),
                    ListPageError::NoContinuationToken => StoreError::Rejected {
                        context: format!(
                            "S3 ListObjectsV2 s3://{}/{dir}: {}",
                            self.bucket,
                            ListPageError::NoContinuationToken
                        ),
                        source: None,
                    },
                })
        };
        // Any failing page fails the whole listing: see the trait on why a partial
        // listing must never be returned.
        list_in_ranges(boundaries, LIST_RANGE_CONCURRENCY, fetch).await
    }

    /// `PutObject` of a JSON body; returns its ETag.
    async fn put(&self, key: &str, body: Bytes) -> Result<ETag, StoreError> {
        // A single PutObject is atomic: readers get the old or the new object.
        let output = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(key)
            .content_type("application/json")
            .body(ByteStream::from(body.clone()))
            .send()
            .await
            .map_err(|e| self.error("PutObject", key, e))?;
        Ok(self.etag_or_md5(key, output.e_tag(), &body))
    }

    /// `DeleteObject`; S3 answers 204 for a missing key too, which makes it idempotent.
    async fn delete(&self, key: &str) -> Result<(), StoreError> {
        self.client
            .delete_object()
            .bucket(&self.bucket)
            .key(key)
            .send()
            .await
            .map_err(|e| self.error("DeleteObject", key, e))?;
        Ok(())
    }

    /// `GetObject`: `Ok(None)` when there is no such key.
    async fn get_optional(&self, key: &str) -> Result<Option<(Bytes, ETag)>, StoreError> {
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
            Err(e) => return Err(self.error("GetObject", key, e)),
        };
        self.body_and_etag(key, output).await.map(Some)
    }

    /// The body of a `GetObject` answer for `key`, and its ETag (the body's MD5 when the
    /// store reports none).
    async fn body_and_etag(
        &self,
        key: &str,
        output: aws_sdk_s3::operation::get_object::GetObjectOutput,
    ) -> Result<(Bytes, ETag), StoreError> {
        let reported = output.e_tag().map(str::to_owned);
        let body = output
            .body
            .collect()
            .await
            .map_err(|e| StoreError::Unavailable {
                context: format!(
                    "S3 GetObject s3://{}/{key}: reading the body failed",
                    self.bucket
                ),
                source: Some(Box::new(e)),
            })?
            .into_bytes();
        let etag = self.etag_or_md5(key, reported.as_deref(), &body);
        Ok((body, etag))
    }

    /// Converts an SDK error into a [`StoreError`] naming the operation and the object.
    fn error<E>(&self, operation: &str, key: &str, err: SdkError<E>) -> StoreError
    where
        E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
    {
        let status = match &err {
            SdkError::ServiceError(e) => Some(e.raw().status().as_u16()),
            _ => None,
        };
        let summary = match (status, err.message()) {
            (Some(status), message) => format!(
                "{} (HTTP {status}){}",
                err.code().unwrap_or("no error code"),
                message.map(|m| format!(": {m}")).unwrap_or_default()
            ),
            (None, _) => error_chain(&err),
        };
        let context = format!("S3 {operation} s3://{}/{key}: {summary}", self.bucket);
        let transient = match (&err, status) {
            (SdkError::ConstructionFailure(_), _) => false,
            (SdkError::ServiceError(_), Some(status)) => {
                service_error_is_transient(status, err.code())
            }
            // Timeouts, connection failures, unreadable responses.
            _ => true,
        };
        let source = Some(Box::new(err) as crate::error::BoxError);
        if transient {
            StoreError::Unavailable { context, source }
        } else {
            StoreError::Rejected { context, source }
        }
    }

    fn etag_or_md5(&self, key: &str, reported: Option<&str>, body: &[u8]) -> ETag {
        let computed = ETag::of(body);
        match reported.map(ETag::from_store) {
            Some(reported) if reported == computed => computed,
            Some(reported) => {
                tracing::warn!(
                    bucket = %self.bucket,
                    key,
                    %reported,
                    %computed,
                    "the store's ETag is not the MD5 of the content (SSE-KMS or SSE-C?); \
                     change detection by ETag will not work and files will be rewritten"
                );
                reported
            }
            None => computed,
        }
    }
}

/// Whether an S3 error response is worth retrying later.
fn service_error_is_transient(status: u16, code: Option<&str>) -> bool {
    status >= 500
        || status == 408
        || status == 429
        || matches!(
            code,
            Some(
                "SlowDown"
                    | "RequestTimeout"
                    | "InternalError"
                    | "ServiceUnavailable"
                    | "Throttling"
                    | "ThrottlingException"
            )
        )
}

#[async_trait]
impl TargetStore for S3Store {
    async fn write_app(
        &self,
        state: TargetState,
        app: &AppGuid,
        body: Bytes,
    ) -> Result<ETag, StoreError> {
        self.put(&self.key(state, app), body).await
    }

    async fn read_app(
        &self,
        state: TargetState,
        app: &AppGuid,
    ) -> Result<Option<(Bytes, ETag)>, StoreError> {
        self.get_optional(&self.key(state, app)).await
    }

    async fn remove_app(&self, state: TargetState, app: &AppGuid) -> Result<(), StoreError> {
        self.delete(&self.key(state, app)).await
    }

    async fn write_credentials(&self, app: &AppGuid, body: Bytes) -> Result<ETag, StoreError> {
        self.put(&self.credentials_key(app), body).await
    }

    async fn read_credentials(&self, app: &AppGuid) -> Result<Option<(Bytes, ETag)>, StoreError> {
        self.get_optional(&self.credentials_key(app)).await
    }

    async fn remove_credentials(&self, app: &AppGuid) -> Result<(), StoreError> {
        self.delete(&self.credentials_key(app)).await
    }

    async fn list_credentials(&self) -> Result<Vec<StoredCredentials>, StoreError> {
        let dir = format!("{}{}", self.prefix, layout::CREDENTIALS_DIR);
        let mut listed: Vec<StoredCredentials> = self
            .list_keys(&dir, &[])
            .await?
            .into_iter()
            .filter_map(|ListedKey { key, etag, .. }| {
                let app = layout::app_of_listed_credentials_name(key.strip_prefix(&dir)?, &key)?;
                Some(StoredCredentials {
                    app_guid: app,
                    etag: ETag::from_store(&etag),
                })
            })
            .collect();
        listed.sort_by(|a, b| a.app_guid.cmp(&b.app_guid));
        Ok(listed)
    }

    async fn list_apps(&self, state: TargetState) -> Result<Vec<StoredTarget>, StoreError> {
        Ok(self.list_apps_hinted(state, None).await?.0)
    }

    /// With a hint from the previous listing of `state`, the ranges between its
    /// boundaries are listed concurrently ([`crate::ranges`]): in steady state one
    /// request per 1000 keys, as without a hint, but in about the time of one page.
    /// Without one (or with one that does not fit), page after page.
    async fn list_apps_hinted(
        &self,
        state: TargetState,
        hint: Option<&ListHint>,
    ) -> Result<(Vec<StoredTarget>, Option<ListHint>), StoreError> {
        let dir = format!("{}{}", self.prefix, layout::state_dir(state));
        let boundaries = match hint {
            Some(hint) if hint.fits(&dir) => hint.boundaries.as_slice(),
            Some(_) => {
                tracing::debug!(%dir, "ignoring a listing hint for another directory");
                &[]
            }
            None => &[],
        };
        let keys = self.list_keys(&dir, boundaries).await?;
        let next_hint = ListHint {
            boundaries: boundaries_of(&keys, LIST_PAGE_SIZE as usize),
            dir: dir.clone(),
        };
        let mut listed = Vec::with_capacity(keys.len());
        for ListedKey { key, etag, .. } in keys {
            let Some(name) = key.strip_prefix(&dir) else {
                continue;
            };
            let Some(app) = layout::app_of_listed_name(state, name, &key) else {
                continue;
            };
            listed.push(StoredTarget {
                app_guid: app,
                state,
                etag: ETag::from_store(&etag),
            });
        }
        listed.sort_by(|a, b| a.app_guid.cmp(&b.app_guid));
        Ok((listed, Some(next_hint)))
    }

    /// `CopyObject` then `DeleteObject`: S3 has no rename. If the delete fails the file
    /// is in both states until the updater's next pass removes the stale one.
    async fn move_app(
        &self,
        from: TargetState,
        to: TargetState,
        app: &AppGuid,
    ) -> Result<ETag, StoreError> {
        let not_found = || StoreError::NotFound {
            state: from,
            app: app.clone(),
        };
        if from == to {
            return Ok(self.read_app(from, app).await?.ok_or_else(not_found)?.1);
        }
        let source = self.key(from, app);
        let destination = self.key(to, app);
        let output = match self
            .client
            .copy_object()
            .bucket(&self.bucket)
            // The key needs no URL-encoding: GUIDs, and a prefix checked by
            // `normalise_prefix`.
            .copy_source(format!("{}/{source}", self.bucket))
            // The metadata (Content-Type) is copied along.
            .key(&destination)
            .send()
            .await
        {
            Ok(output) => output,
            Err(e) if e.code() == Some("NoSuchKey") => return Err(not_found()),
            Err(e) => return Err(self.error("CopyObject", &source, e)),
        };
        let etag = output
            .copy_object_result()
            .and_then(|result| result.e_tag())
            .map(ETag::from_store);
        self.remove_app(from, app).await?;
        match etag {
            Some(etag) => Ok(etag),
            // Unusual, but cheap to recover from: ask for it.
            None => Ok(self.read_app(to, app).await?.ok_or_else(not_found)?.1),
        }
    }

    async fn read_record(&self) -> Result<Option<(Bytes, ETag)>, StoreError> {
        self.get_optional(&format!("{}{RECORD_KEY}", self.prefix))
            .await
    }

    /// A conditional `GetObject` (`If-None-Match`): `304 Not Modified` costs no body.
    async fn read_record_if_changed(
        &self,
        known: Option<&ETag>,
    ) -> Result<RecordChange, StoreError> {
        let key = format!("{}{RECORD_KEY}", self.prefix);
        let mut request = self.client.get_object().bucket(&self.bucket).key(&key);
        if let Some(etag) = known {
            request = request.if_none_match(format!("\"{etag}\""));
        }
        let output = match request.send().await {
            Ok(output) => output,
            Err(SdkError::ServiceError(e)) if e.raw().status().as_u16() == 304 => {
                return Ok(RecordChange::Unchanged);
            }
            Err(e) if e.as_service_error().is_some_and(|e| e.is_no_such_key()) => {
                return Ok(RecordChange::Absent);
            }
            Err(e) => return Err(self.error("GetObject", &key, e)),
        };
        let (body, etag) = self.body_and_etag(&key, output).await?;
        Ok(RecordChange::of(known, body, etag))
    }

    fn s3_requests(&self) -> Option<Arc<S3Requests>> {
        Some(self.requests())
    }

    /// A conditional `PutObject`: `If-Match` the expected ETag, or `If-None-Match: *`
    /// when there should be no record yet (S3 conditional writes, 2024). S3 answers 412
    /// when the condition fails, 409 when a concurrent conditional write won the race,
    /// and 404 when an `If-Match` object is gone: all three mean "read it again".
    async fn replace_record(
        &self,
        body: Bytes,
        expected: Option<&ETag>,
    ) -> Result<Option<ETag>, StoreError> {
        let key = format!("{}{RECORD_KEY}", self.prefix);
        let request = self
            .client
            .put_object()
            .bucket(&self.bucket)
            .key(&key)
            .content_type("application/json")
            .body(ByteStream::from(body.clone()));
        let request = match expected {
            Some(etag) => request.if_match(format!("\"{etag}\"")),
            None => request.if_none_match("*"),
        };
        match request.send().await {
            Ok(output) => Ok(Some(self.etag_or_md5(&key, output.e_tag(), &body))),
            Err(SdkError::ServiceError(e))
                if matches!(e.raw().status().as_u16(), 404 | 409 | 412) =>
            {
                Ok(None)
            }
            Err(e) => Err(self.error("PutObject", &key, e)),
        }
    }

    async fn check(&self) -> Result<(), StoreError> {
        self.client
            .head_bucket()
            .bucket(&self.bucket)
            .send()
            .await
            .map_err(|e| self.error("HeadBucket", "", e))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |name| map.get(name).cloned()
    }

    #[test]
    fn half_a_pair_of_static_keys_is_a_clear_error() {
        let half = S3Config {
            access_key_id: Some("AKID".into()),
            ..S3Config::new("b", "eu-west-1")
        };
        let err = S3Store::new(half, env(&[])).unwrap_err();
        assert_eq!(err, ConfigError::MissingCredentials);
        let err = S3Store::new(
            S3Config::new("b", "eu-west-1"),
            env(&[("AWS_ACCESS_KEY_ID", "AKID")]),
        )
        .unwrap_err();
        assert_eq!(
            err.to_string(),
            "S3 credentials incomplete: set both AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY \
             (or neither, for the AWS default credential chain)"
        );
    }

    #[test]
    fn without_static_keys_the_store_opens_on_the_default_chain() {
        // Nothing is resolved until the first request or `check_credentials`.
        S3Store::new(S3Config::new("b", "eu-west-1"), env(&[])).unwrap();
    }

    #[test]
    fn the_config_debug_output_redacts_secrets() {
        let mut config = S3Config::new("bucket", "eu-west-1")
            .with_credentials("AKIDEXAMPLE", "wJalrXUtnFEMI-secret");
        config.session_token = Some(Secret::new("session-secret"));
        let debug = format!("{config:?}");
        assert!(debug.contains("AKIDEXAMPLE"), "{debug}");
        assert!(!debug.contains("wJalrXUtnFEMI-secret"), "{debug}");
        assert!(!debug.contains("session-secret"), "{debug}");
        assert!(debug.contains("redacted"), "{debug}");
    }

    #[test]
    fn a_store_has_a_normalised_prefix_and_names_its_keys_under_it() {
        let config = S3Config::new("bucket", "eu-west-1")
            .with_prefix("/eu-west-1")
            .with_credentials("a", "b");
        let store = S3Store::new(config, env(&[])).unwrap();
        let app = AppGuid::parse("1cb006ee-fb05-47e1-b541-c34179ddc446").unwrap();
        assert_eq!(store.prefix(), "eu-west-1/");
        assert_eq!(
            store.key(TargetState::Active, &app),
            "eu-west-1/active/1cb006ee-fb05-47e1-b541-c34179ddc446.json"
        );
        let debug = format!("{store:?}");
        assert!(
            debug.contains("eu-west-1/") && !debug.contains("\"b\""),
            "{debug}"
        );
    }

    #[test]
    fn invalid_settings_are_rejected_with_their_name() {
        let base = || S3Config::new("bucket", "eu-west-1").with_credentials("a", "b");
        let cases = [
            (base().with_endpoint("127.0.0.1:9000"), "S3_ENDPOINT"),
            (base().with_prefix("a b"), "the key prefix"),
            (
                S3Config {
                    bucket: " ".into(),
                    ..base()
                },
                "BUCKET_NAME",
            ),
            (
                S3Config {
                    region: String::new(),
                    ..base()
                },
                "AWS_REGION",
            ),
        ];
        for (config, name) in cases {
            let err = S3Store::new(config, env(&[])).unwrap_err();
            assert!(err.to_string().starts_with(name), "{err}");
        }
    }

    #[test]
    fn server_errors_and_throttling_are_transient_refusals_are_not() {
        assert!(service_error_is_transient(500, Some("InternalError")));
        assert!(service_error_is_transient(503, Some("SlowDown")));
        assert!(service_error_is_transient(429, None));
        assert!(service_error_is_transient(400, Some("RequestTimeout")));
        assert!(!service_error_is_transient(403, Some("AccessDenied")));
        assert!(!service_error_is_transient(404, Some("NoSuchBucket")));
        assert!(!service_error_is_transient(400, Some("InvalidRequest")));
    }
}
