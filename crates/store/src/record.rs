//! The writers' record: what the writers (broker, updater) say `active/` should hold.
//!
//! One small JSON object beside the two state directories, `[<prefix>]record/active.json`,
//! outside `active/` and `inactive/` so that an old `aws s3 sync .../active/` or an old
//! sd-sync never sees it (DESIGN.md section 3):
//!
//! ```json
//! {"format":1,"generation":42,"active_count":1234,"writer":"updater","written_at":"2026-12-07T12:00:00Z"}
//! ```
//!
//! sd-sync reads it before applying a deletion its safety valve would hold back: a mass
//! deletion goes through only when the record agrees (the listing holds at least
//! `active_count` objects), never because time passed (DESIGN.md section 5).
//!
//! # Publication protocol
//!
//! A writer changes `active/` first, then publishes: read the record (its ETag), list
//! `active/`, and replace the record with `generation + 1` and the listed count *only if
//! it still has the ETag read* (a conditional put); on a conflict, start the publication
//! again. The last successful publication therefore always follows a listing taken after
//! every writer's change: two writers racing can never leave a record that claims less
//! than the bucket holds (see [`crate::TargetStore::publish_record`]).

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use serde::{Deserialize, Serialize};

use crate::{Bytes, StoreError, TargetState, TargetStore};

/// The record's key relative to the store's root (the bucket prefix): a sibling of
/// `active/` and `inactive/`.
pub const RECORD_KEY: &str = "record/active.json";

/// The only format this code writes and understands.
pub const RECORD_FORMAT: u32 = 1;

/// The writers' record of what `active/` should hold.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct WritersRecord {
    /// [`RECORD_FORMAT`]; a reader refuses a record of another format.
    pub format: u32,
    /// Increases by one with every publication.
    pub generation: u64,
    /// How many app files `active/` held when the writer listed it, after its change.
    pub active_count: u64,
    /// Which service published it (`broker`, `updater`), for operators.
    pub writer: String,
    /// When it was published (RFC 3339, the writer's clock), for operators.
    pub written_at: String,
}

impl WritersRecord {
    /// Parses a record object; unknown fields are ignored (a later format may add some),
    /// another `format` is an error.
    pub fn parse(body: &[u8]) -> Result<WritersRecord, String> {
        let record: WritersRecord = serde_json::from_slice(body)
            .map_err(|e| format!("the writers' record is not valid: {e}"))?;
        if record.format != RECORD_FORMAT {
            return Err(format!(
                "the writers' record has format {}, this version understands {RECORD_FORMAT}",
                record.format
            ));
        }
        Ok(record)
    }

    /// The record's object body.
    pub fn to_bytes(&self) -> Vec<u8> {
        serde_json::to_vec(self).expect("a record always serialises")
    }

    /// Whether a complete listing of `listed` objects in `active/` agrees with the record:
    /// it holds at least what the writers say it should.
    pub fn agrees_with(&self, listed: usize) -> bool {
        listed as u64 >= self.active_count
    }
}

/// The key of the record for an sd-sync mapping whose prefix is `active_prefix`
/// (`""` or ending in `/`): `eu-west-2/active/` -> `eu-west-2/record/active.json`.
/// `None` when the prefix does not end in `active/`, so no record can be located.
pub fn record_key_for_active_prefix(active_prefix: &str) -> Option<String> {
    let root = active_prefix.strip_suffix("active/")?;
    if !(root.is_empty() || root.ends_with('/')) {
        return None;
    }
    Some(format!("{root}{RECORD_KEY}"))
}

/// How many times [`publish`] starts again when other writers keep changing the record.
pub const PUBLISH_ATTEMPTS: u32 = 8;

/// Publishes the writers' record after a change to `active/`: reads the record, lists
/// `active/`, and replaces the record with the next generation and the listed count if
/// no other writer replaced it meanwhile; otherwise starts again (with a short random
/// pause), at most [`PUBLISH_ATTEMPTS`] times.
///
/// Call it after the change is in the store. Why this keeps the record honest with
/// several writers: a publication only succeeds if the record is still the one it read
/// before listing, so the last successful publication's listing was taken after every
/// other successful publication started, and so after every writer's change (each
/// writer changes first, then publishes, and keeps trying until it succeeds or gives up
/// with an error). The record can lag behind while publications are under way, never
/// stay behind once they are done.
pub async fn publish(store: &dyn TargetStore, writer: &str) -> Result<WritersRecord, StoreError> {
    for attempt in 1..=PUBLISH_ATTEMPTS {
        let current = store.read_record().await?;
        let generation = match &current {
            None => 0,
            Some((body, _)) => match WritersRecord::parse(body) {
                Ok(record) => record.generation,
                Err(e) => {
                    tracing::warn!(error = %e, "replacing an unreadable writers' record");
                    0
                }
            },
        };
        let active_count = store.list_apps(TargetState::Active).await?.len() as u64;
        let record = WritersRecord {
            format: RECORD_FORMAT,
            generation: generation + 1,
            active_count,
            writer: writer.to_owned(),
            written_at: now_rfc3339(),
        };
        let expected = current.as_ref().map(|(_, etag)| etag);
        if store
            .replace_record(Bytes::from(record.to_bytes()), expected)
            .await?
            .is_some()
        {
            tracing::debug!(
                generation = record.generation,
                active_count,
                "published the writers' record"
            );
            return Ok(record);
        }
        tracing::debug!(
            attempt,
            "the writers' record changed meanwhile: publishing again"
        );
        tokio::time::sleep(conflict_pause(attempt)).await;
    }
    Err(StoreError::Unavailable {
        context: format!(
            "the writers' record kept changing under {PUBLISH_ATTEMPTS} publications in a row"
        ),
        source: None,
    })
}

/// A random pause of up to `10 ms * attempt`, so that writers that collided do not
/// collide again in lockstep.
fn conflict_pause(attempt: u32) -> Duration {
    let random = (uuid::Uuid::new_v4().as_u128() % 1000) as u64;
    Duration::from_micros(random * 10 * u64::from(attempt))
}

fn now_rfc3339() -> String {
    time::OffsetDateTime::now_utc()
        .replace_nanosecond(0)
        .ok()
        .and_then(|t| {
            t.format(&time::format_description::well_known::Rfc3339)
                .ok()
        })
        .unwrap_or_default()
}

/// One process' publications of the writers' record, coalesced: a burst of changes
/// (many binds at once) costs a few publications, not one each.
///
/// [`RecordPublisher::publish_after_change`] returns once a publication that *started
/// after the call* has succeeded, whether it ran it itself or another caller did: that
/// publication's listing includes the caller's change. Publications of one process run
/// one at a time; callers waiting meanwhile are served by the next one.
///
/// A failed publication is not left to chance: the record would stay behind the bucket,
/// and sd-sync, which lists only when the record changes, would not see the change until
/// its safety listing. So the publisher retries on its own, in the background, after
/// [`RETRY_FIRST`] and then twice as long each time up to [`RETRY_MAX`], until one
/// publication (its own or a later caller's) succeeds.
#[derive(Debug, Clone)]
pub struct RecordPublisher {
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    store: Arc<dyn TargetStore>,
    writer: &'static str,
    /// One publication at a time.
    running: tokio::sync::Mutex<()>,
    /// Tickets handed out: one per call.
    requested: AtomicU64,
    /// Every ticket up to this one has been served by a successful publication.
    served: AtomicU64,
    /// A background retry is scheduled.
    retrying: AtomicBool,
}

/// The first background retry of a failed publication comes this long after it.
pub const RETRY_FIRST: Duration = Duration::from_secs(1);
/// Background retries come at most this far apart.
pub const RETRY_MAX: Duration = Duration::from_secs(30);

impl RecordPublisher {
    /// A publisher for `writer` (`broker`, `updater`: named in the record).
    pub fn new(store: Arc<dyn TargetStore>, writer: &'static str) -> RecordPublisher {
        RecordPublisher {
            inner: Arc::new(Inner {
                store,
                writer,
                running: tokio::sync::Mutex::new(()),
                requested: AtomicU64::new(0),
                served: AtomicU64::new(0),
                retrying: AtomicBool::new(false),
            }),
        }
    }

    /// Publishes the record after a change to `active/` that is already in the store:
    /// `Ok(Some(record))` when this call published, `Ok(None)` when a publication by
    /// another caller, started after this call, covered the change.
    ///
    /// Logs the outcome (a failure as a warning); callers only count it. A failure must
    /// not fail the caller's operation, whose change is stored: the publisher retries in
    /// the background until a publication succeeds (see the type's documentation), and
    /// meanwhile sd-sync only holds mass deletions back, the safe direction.
    pub async fn publish_after_change(&self) -> Result<Option<WritersRecord>, StoreError> {
        let result = self.inner.publish_after_change().await;
        if result.is_err() {
            self.retry_in_background();
        }
        result
    }

    /// Whether a failed publication still waits for a successful one.
    pub fn pending(&self) -> bool {
        self.inner.served.load(Ordering::SeqCst) < self.inner.requested.load(Ordering::SeqCst)
    }

    /// Schedules background retries unless some are scheduled already.
    fn retry_in_background(&self) {
        if self.inner.retrying.swap(true, Ordering::SeqCst) {
            return;
        }
        let inner = Arc::clone(&self.inner);
        tokio::spawn(async move {
            let mut pause = RETRY_FIRST;
            loop {
                tokio::time::sleep(pause).await;
                let pending =
                    inner.served.load(Ordering::SeqCst) < inner.requested.load(Ordering::SeqCst);
                if !pending {
                    break;
                }
                // Logged by the publication, failure or success.
                if inner.publish_after_change().await.is_ok() {
                    break;
                }
                pause = (pause * 2).min(RETRY_MAX);
            }
            inner.retrying.store(false, Ordering::SeqCst);
        });
    }

    /// Whether the published record is readable and counts `listed` files in `active/`
    /// (a full listing of the caller's), so that publishing again would change nothing
    /// but its generation.
    pub async fn counts(&self, listed: usize) -> Result<bool, StoreError> {
        Ok(match self.inner.store.read_record().await? {
            Some((body, _)) => {
                WritersRecord::parse(&body).is_ok_and(|record| record.active_count == listed as u64)
            }
            None => false,
        })
    }
}

impl Inner {
    async fn publish_after_change(&self) -> Result<Option<WritersRecord>, StoreError> {
        let ticket = self.requested.fetch_add(1, Ordering::SeqCst) + 1;
        let _running = self.running.lock().await;
        if self.served.load(Ordering::SeqCst) >= ticket {
            return Ok(None);
        }
        // Every ticket handed out until now belongs to a change made before this
        // publication reads the record.
        let covers = self.requested.load(Ordering::SeqCst);
        let record = match publish(self.store.as_ref(), self.writer).await {
            Ok(record) => record,
            Err(e) => {
                tracing::warn!(
                    error = %gds_service::error_chain(&e),
                    "cannot publish the writers' record: retrying in the background; \
                     meanwhile sd-sync may see the change only at its safety listing"
                );
                return Err(e);
            }
        };
        self.served.fetch_max(covers, Ordering::SeqCst);
        tracing::info!(
            generation = record.generation,
            active_count = record.active_count,
            "published the writers' record"
        );
        Ok(Some(record))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(active_count: u64) -> WritersRecord {
        WritersRecord {
            format: RECORD_FORMAT,
            generation: 7,
            active_count,
            writer: "updater".into(),
            written_at: "2026-12-07T12:00:00Z".into(),
        }
    }

    #[test]
    fn a_record_round_trips_through_its_bytes() {
        let r = record(12);
        assert_eq!(WritersRecord::parse(&r.to_bytes()), Ok(r));
    }

    #[test]
    fn unknown_fields_are_ignored_and_another_format_is_refused() {
        let body = br#"{"format":1,"generation":3,"active_count":2,"writer":"broker","written_at":"x","later":true}"#;
        assert_eq!(WritersRecord::parse(body).unwrap().active_count, 2);
        let body =
            br#"{"format":2,"generation":3,"active_count":2,"writer":"broker","written_at":"x"}"#;
        assert!(WritersRecord::parse(body).unwrap_err().contains("format 2"));
        assert!(WritersRecord::parse(b"[]").is_err());
    }

    #[test]
    fn a_listing_agrees_when_it_holds_at_least_the_recorded_count() {
        assert!(record(0).agrees_with(0));
        assert!(record(3).agrees_with(3));
        assert!(record(3).agrees_with(4));
        assert!(!record(3).agrees_with(2));
        assert!(!record(1).agrees_with(0));
    }

    #[test]
    fn the_record_sits_beside_the_active_directory() {
        assert_eq!(
            record_key_for_active_prefix("active/").as_deref(),
            Some("record/active.json")
        );
        assert_eq!(
            record_key_for_active_prefix("eu-west-2/active/").as_deref(),
            Some("eu-west-2/record/active.json")
        );
        assert_eq!(record_key_for_active_prefix("eu-west-2/"), None);
        assert_eq!(record_key_for_active_prefix("inactive/"), None);
        assert_eq!(record_key_for_active_prefix(""), None);
    }

    #[tokio::test(start_paused = true)]
    async fn a_failed_publication_is_retried_in_the_background_until_it_succeeds() {
        use crate::MemoryStore;
        let memory = Arc::new(MemoryStore::new());
        let store: Arc<dyn TargetStore> = memory.clone();
        let publisher = RecordPublisher::new(store.clone(), "broker");
        let app = gds_targets::AppGuid::parse("1cb006ee-fb05-47e1-b541-c34179ddc446").unwrap();
        store
            .write_app(TargetState::Active, &app, Bytes::from_static(b"[]"))
            .await
            .unwrap();
        memory.set_unavailable(true);
        assert!(publisher.publish_after_change().await.is_err());
        assert!(publisher.pending());
        // Still down at the first retries: they fail and back off.
        tokio::time::sleep(RETRY_FIRST * 3 + Duration::from_millis(10)).await;
        assert!(publisher.pending());
        assert!(store.read_record().await.is_err());
        memory.set_unavailable(false);
        assert_eq!(store.read_record().await.unwrap(), None);
        tokio::time::sleep(RETRY_FIRST * 4 + Duration::from_millis(10)).await;
        assert!(!publisher.pending());
        let (body, _) = store.read_record().await.unwrap().expect("published");
        let record = WritersRecord::parse(&body).unwrap();
        assert_eq!((record.generation, record.active_count), (1, 1));
        // Nothing is pending: no more publications.
        tokio::time::sleep(RETRY_MAX * 2).await;
        let (body, _) = store.read_record().await.unwrap().unwrap();
        assert_eq!(WritersRecord::parse(&body).unwrap().generation, 1);
    }
}
