//! The S3 requests a store's client sends, counted by operation: what the bucket costs.
//!
//! Counted by an interceptor on the AWS SDK client as each request is sent, so every
//! attempt is counted, retries included (an attempt that never reached S3 is counted too;
//! S3 would not bill it, so the figure errs high): what the bill is made of. S3 bills `ListObjectsV2`, `PutObject` and `CopyObject`
//! at the LIST/PUT price and `GetObject` and `HeadBucket` at the GET price, a conditional
//! `GetObject` answered `304 Not Modified` included.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use aws_sdk_s3::config::interceptors::{
    BeforeDeserializationInterceptorContextRef, BeforeTransmitInterceptorContextRef,
};
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::BoxError;

/// One kind of S3 request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum S3Operation {
    /// `ListObjectsV2`: one page of at most 1,000 keys.
    List,
    /// `GetObject` answered with the object (or an error).
    Get,
    /// A conditional `GetObject` answered `304 Not Modified` (no body).
    GetNotModified,
    /// `PutObject`, conditional ones included.
    Put,
    /// `CopyObject`.
    Copy,
    /// `DeleteObject`.
    Delete,
    /// `HeadBucket` (and `HeadObject`).
    Head,
    /// Anything else (`CreateBucket`, ...).
    Other,
}

impl S3Operation {
    pub const ALL: [S3Operation; 8] = [
        S3Operation::List,
        S3Operation::Get,
        S3Operation::GetNotModified,
        S3Operation::Put,
        S3Operation::Copy,
        S3Operation::Delete,
        S3Operation::Head,
        S3Operation::Other,
    ];

    /// The `operation` label value.
    pub fn as_str(self) -> &'static str {
        match self {
            S3Operation::List => "list",
            S3Operation::Get => "get",
            S3Operation::GetNotModified => "get_not_modified",
            S3Operation::Put => "put",
            S3Operation::Copy => "copy",
            S3Operation::Delete => "delete",
            S3Operation::Head => "head",
            S3Operation::Other => "other",
        }
    }

    /// The operation of a request, from its method, URI, whether it names a copy source,
    /// and its response status.
    pub fn of(method: &str, uri: &str, copy: bool, status: u16) -> S3Operation {
        let query = uri.split_once('?').map_or("", |(_, query)| query);
        // Lowercase: upper-case literals read as settings to this workspace's checks.
        match method.to_ascii_lowercase().as_str() {
            "get" if query.split('&').any(|p| p == "list-type=2") => S3Operation::List,
            "get" if status == 304 => S3Operation::GetNotModified,
            "get" => S3Operation::Get,
            "put" if copy => S3Operation::Copy,
            "put" if query.is_empty() || query.starts_with("x-id=PutObject") => S3Operation::Put,
            "delete" => S3Operation::Delete,
            "head" => S3Operation::Head,
            _ => S3Operation::Other,
        }
    }
}

/// Requests counted so far, by operation; shared by a store and whoever exports them.
#[derive(Debug, Default)]
pub struct S3Requests {
    counts: [AtomicU64; S3Operation::ALL.len()],
}

impl S3Requests {
    /// How many `operation` requests were sent and answered.
    pub fn get(&self, operation: S3Operation) -> u64 {
        self.counts[operation as usize].load(Ordering::Relaxed)
    }

    /// Every operation with its count, in [`S3Operation::ALL`] order.
    pub fn snapshot(&self) -> Vec<(S3Operation, u64)> {
        S3Operation::ALL
            .into_iter()
            .map(|operation| (operation, self.get(operation)))
            .collect()
    }

    fn count(&self, operation: S3Operation) {
        self.counts[operation as usize].fetch_add(1, Ordering::Relaxed);
    }

    /// A `GetObject` counted as sent was answered `304`.
    fn not_modified(&self) {
        self.count(S3Operation::GetNotModified);
        self.counts[S3Operation::Get as usize].fetch_sub(1, Ordering::Relaxed);
    }
}

/// The interceptor that counts into [`S3Requests`].
#[derive(Debug)]
pub(crate) struct RequestCounter(pub(crate) Arc<S3Requests>);

impl Intercept for RequestCounter {
    fn name(&self) -> &'static str {
        "gds_store::RequestCounter"
    }

    /// The request is only visible before it is sent (the SDK hands it to the HTTP
    /// client), so it is counted then, as sent.
    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let request = context.request();
        self.0.count(S3Operation::of(
            request.method(),
            request.uri(),
            request.headers().contains_key("x-amz-copy-source"),
            0,
        ));
        Ok(())
    }

    /// Only a `GetObject` is ever answered `304`.
    fn read_after_transmit(
        &self,
        context: &BeforeDeserializationInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context.response().status().as_u16() == 304 {
            self.0.not_modified();
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn requests_are_classified_by_method_query_and_status() {
        let cases = [
            (
                "get",
                "http://s3/b?list-type=2&prefix=active%2F",
                false,
                200,
                S3Operation::List,
            ),
            (
                "get",
                "http://s3/b/record/active.json",
                false,
                200,
                S3Operation::Get,
            ),
            (
                "get",
                "http://s3/b/record/active.json",
                false,
                404,
                S3Operation::Get,
            ),
            (
                "get",
                "http://s3/b/record/active.json",
                false,
                304,
                S3Operation::GetNotModified,
            ),
            (
                "put",
                "http://s3/b/active/a.json?x-id=PutObject",
                false,
                200,
                S3Operation::Put,
            ),
            (
                "put",
                "http://s3/b/active/a.json",
                false,
                412,
                S3Operation::Put,
            ),
            (
                "put",
                "http://s3/b/inactive/a.json?x-id=CopyObject",
                true,
                200,
                S3Operation::Copy,
            ),
            (
                "delete",
                "http://s3/b/active/a.json?x-id=DeleteObject",
                false,
                204,
                S3Operation::Delete,
            ),
            ("HEAD", "http://s3/b", false, 200, S3Operation::Head),
            ("PUT", "http://s3/b?cors", false, 200, S3Operation::Other),
        ];
        for (method, uri, copy, status, expected) in cases {
            assert_eq!(
                S3Operation::of(method, uri, copy, status),
                expected,
                "{method} {uri}"
            );
        }
    }
}
