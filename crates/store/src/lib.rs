//! The target store: where each monitored app's Prometheus `file_sd` file lives.
//!
//! The broker and the updater write `active/<app_guid>.json` for started apps and
//! `inactive/<app_guid>.json` for stopped ones (DESIGN.md sections 2 and 3); sd-sync lists
//! and reads them on every Prometheus node. That layout is the compatibility contract with
//! alphagov/cf_app_discovery, so it is built in exactly one place (the private `layout`
//! module) and callers only ever speak in domain verbs through [`TargetStore`]:
//! `write_app`, `read_app`, `remove_app`, `move_app`, `list_apps`.
//!
//! Three backends implement the trait:
//!
//! - [`S3Store`]: an S3 bucket (or an S3-compatible store via `S3_ENDPOINT`), optionally
//!   under a key prefix such as `eu-west-1/` (one bucket or prefix per region, DESIGN.md 6);
//! - [`DirStore`]: a local directory (`ENVIRONMENT=local` + `TARGETS_PATH=DIR`), written
//!   atomically so Prometheus never reads half a file;
//! - [`MemoryStore`]: in memory, with failure injection for other crates' unit tests.
//!
//! Every backend keeps its own error detail and converts it into the shared [`StoreError`].
//! One conformance suite (`conformance`, behind the `conformance` feature) holds all
//! backends to the same contract.

pub mod atomic;
mod config;
mod credentials;
mod dir;
mod error;
mod layout;
mod memory;
pub mod ranges;
pub mod record;
pub mod requests;
mod s3;
pub mod scrape_credentials;

#[cfg(any(test, feature = "conformance"))]
pub mod conformance;

use std::fmt;
use std::sync::Arc;

use async_trait::async_trait;
use gds_targets::AppGuid;
use md5::{Digest, Md5};

pub use atomic::write_file_atomically;
/// The body type of [`TargetStore`] files, re-exported so callers need no `bytes` dependency.
pub use bytes::Bytes;
pub use config::{SETTINGS, StoreConfig};
pub use dir::DirStore;
pub use error::{ConfigError, StoreError};
pub use layout::{staged_file_name, unique_of_staged_file_name};
pub use memory::MemoryStore;
pub use record::{RECORD_KEY, RecordPublisher, WritersRecord, record_key_for_active_prefix};
pub use requests::{S3Operation, S3Requests};
pub use s3::{LIST_PAGE_SIZE, ListPageError, S3Config, S3Store, list_page};
pub use scrape_credentials::{BindingAuth, CredentialsDocument, ScrapeTokenKey};

/// Which of the two directories of the bucket an app's target file is in.
///
/// Prometheus is configured to read `active/` only; `inactive/` keeps the files of stopped
/// apps so that they can be moved back when the app starts again.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TargetState {
    /// The app is started: its file is under `active/`.
    Active,
    /// The app is stopped: its file is under `inactive/`.
    Inactive,
}

impl TargetState {
    /// Both states, in listing order.
    pub const ALL: [TargetState; 2] = [TargetState::Active, TargetState::Inactive];

    /// The directory name of this state in the bucket layout: `active` or `inactive`.
    pub fn dir_name(self) -> &'static str {
        match self {
            TargetState::Active => "active",
            TargetState::Inactive => "inactive",
        }
    }

    /// The other state.
    pub fn other(self) -> TargetState {
        match self {
            TargetState::Active => TargetState::Inactive,
            TargetState::Inactive => TargetState::Active,
        }
    }
}

impl fmt::Display for TargetState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.dir_name())
    }
}

/// The version tag of a stored file: the lowercase hex MD5 of its content, without quotes.
///
/// Every backend reports the same value for the same bytes, so a caller can compare the
/// ETag from a listing with `ETag::of(bytes it would write)` and skip unchanged files
/// without fetching them. (On S3 this relies on the object ETag being the MD5 of the
/// content, which holds for single-part uploads without SSE-KMS/SSE-C encryption; a store
/// that breaks it only costs extra writes and reads, never a wrong result.)
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ETag(String);

impl ETag {
    /// The ETag of `content`: its lowercase hex MD5.
    pub fn of(content: &[u8]) -> ETag {
        ETag(format!("{:x}", Md5::digest(content)))
    }

    /// Normalises an ETag as a store reports it (`"9e10…"`, `W/"9E10…"`) by removing the
    /// weak-validator prefix and the quotes and lowering the hex digits.
    ///
    /// An empty string (a store that reports no ETag) gives an ETag that equals no
    /// content's ETag, so callers fall back to fetching.
    pub fn from_store(raw: &str) -> ETag {
        let raw = raw.trim();
        let raw = raw.strip_prefix("W/").unwrap_or(raw);
        ETag(raw.trim_matches('"').to_ascii_lowercase())
    }

    /// The normalised value.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl fmt::Debug for ETag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "ETag({})", self.0)
    }
}

/// One entry of a [`TargetStore::list_apps`] listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoredTarget {
    /// The app the file belongs to.
    pub app_guid: AppGuid,
    /// The directory the file is in.
    pub state: TargetState,
    /// The version of its content.
    pub etag: ETag,
}

/// One entry of a [`TargetStore::list_credentials`] listing.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct StoredCredentials {
    /// The app the credentials document belongs to.
    pub app_guid: AppGuid,
    /// The version of its content.
    pub etag: ETag,
}

/// What a complete listing of one state remembers for listing that state again faster
/// ([`TargetStore::list_apps_hinted`]).
///
/// For [`S3Store`], every 1000th key of the listing: the next listing asks for the
/// ranges between them all at once, one request per range, instead of one page after the
/// other (see the `ranges` module). Opaque: only the store that made it reads it, and a
/// hint that does not fit (another state, another store) is ignored. A stale hint never
/// makes a listing wrong, only (when many keys were added) a little more expensive.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ListHint {
    /// The listed directory (with any prefix), e.g. `eu-west-1/active/`.
    dir: String,
    /// Strictly increasing keys under `dir`.
    boundaries: Vec<String>,
}

impl ListHint {
    /// How many ranges a listing with this hint asks for at once.
    pub fn ranges(&self) -> usize {
        self.boundaries.len() + 1
    }

    /// Whether the hint can be used to list `dir`: made for it, with boundaries in it
    /// and strictly increasing (which the range listing needs to be exact).
    fn fits(&self, dir: &str) -> bool {
        self.dir == dir
            && self.boundaries.iter().all(|b| b.starts_with(dir))
            && self.boundaries.windows(2).all(|w| w[0] < w[1])
    }
}

/// What [`TargetStore::read_record_if_changed`] found.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum RecordChange {
    /// The record is still the version asked about.
    Unchanged,
    /// There is no record.
    Absent,
    /// Another version than the one asked about (or none was asked about).
    Changed(Bytes, ETag),
}

impl RecordChange {
    /// `body` with its `etag`, read when `known` was the version asked about.
    pub fn of(known: Option<&ETag>, body: Bytes, etag: ETag) -> RecordChange {
        if known == Some(&etag) {
            RecordChange::Unchanged
        } else {
            RecordChange::Changed(body, etag)
        }
    }
}

/// The bucket of target files, spoken to in domain verbs.
///
/// Implementations are cheap to share (`Arc<dyn TargetStore>`) and safe to call
/// concurrently. No method panics on any input; failures are [`StoreError`]s.
#[async_trait]
pub trait TargetStore: Send + Sync + fmt::Debug {
    /// Writes (creates or replaces) the app's file in `state` and returns its ETag.
    ///
    /// Readers see either the old or the new content, never a mix or a truncated file.
    /// The app's file in the other state is not touched.
    async fn write_app(
        &self,
        state: TargetState,
        app: &AppGuid,
        body: Bytes,
    ) -> Result<ETag, StoreError>;

    /// Reads the app's file in `state`: `Ok(None)` when there is none, an error only when
    /// the store could not answer.
    async fn read_app(
        &self,
        state: TargetState,
        app: &AppGuid,
    ) -> Result<Option<(Bytes, ETag)>, StoreError>;

    /// Removes the app's file in `state`. Idempotent: removing a missing file is `Ok`.
    /// The app's file in the other state is not touched.
    async fn remove_app(&self, state: TargetState, app: &AppGuid) -> Result<(), StoreError>;

    /// Lists every app file in `state`, sorted by app GUID.
    ///
    /// The listing is complete (all pages) or an error, never a partial result: the
    /// updater and sd-sync plan deletions from it, and a silently truncated listing would
    /// make them delete the targets of every app that happened to be on a missing page.
    /// Entries whose name is not `<app guid>.json` are skipped with a warning; they are
    /// never returned and never deleted.
    async fn list_apps(&self, state: TargetState) -> Result<Vec<StoredTarget>, StoreError>;

    /// [`TargetStore::list_apps`], using `hint` from the previous listing of `state` to
    /// list faster, and returning the hint for the next one (`None` when the backend has
    /// no use for hints). The listing is exactly what `list_apps` would return, whatever
    /// the hint: complete or an error, never partial.
    ///
    /// For callers that list the same state again and again (the long-running updater).
    /// The provided implementation ignores hints and calls `list_apps`.
    async fn list_apps_hinted(
        &self,
        state: TargetState,
        hint: Option<&ListHint>,
    ) -> Result<(Vec<StoredTarget>, Option<ListHint>), StoreError> {
        let _ = hint;
        Ok((self.list_apps(state).await?, None))
    }

    /// Moves the app's file from `from` to `to` (replacing any file already at `to`) and
    /// returns its ETag, which is unchanged by the move.
    ///
    /// The destination is written before the source is removed, so a crash between the
    /// two leaves the file in both states (the updater tidies that up), never in neither.
    /// A missing source is [`StoreError::NotFound`] and changes nothing. Moving to the
    /// same state is a no-op that returns the file's ETag.
    ///
    /// The provided implementation reads, writes and removes; backends override it with
    /// a cheaper server-side operation where they have one.
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
        let (body, etag) = self.read_app(from, app).await?.ok_or_else(not_found)?;
        if from == to {
            return Ok(etag);
        }
        let etag = self.write_app(to, app, body).await?;
        self.remove_app(from, app).await?;
        Ok(etag)
    }

    /// Writes (creates or replaces) the app's scrape credentials document
    /// (`credentials/<app_guid>.json`, [`scrape_credentials`]) and returns its ETag.
    /// Atomic like [`TargetStore::write_app`]; touches no target file.
    async fn write_credentials(&self, app: &AppGuid, body: Bytes) -> Result<ETag, StoreError>;

    /// Reads the app's credentials document: `Ok(None)` when there is none.
    async fn read_credentials(&self, app: &AppGuid) -> Result<Option<(Bytes, ETag)>, StoreError>;

    /// Removes the app's credentials document. Idempotent.
    async fn remove_credentials(&self, app: &AppGuid) -> Result<(), StoreError>;

    /// Lists every credentials document, sorted by app GUID; complete or an error, never
    /// partial. Entries whose name is not `<app guid>.json` are skipped with a warning.
    async fn list_credentials(&self) -> Result<Vec<StoredCredentials>, StoreError>;

    /// A cheap probe that the store is reachable and usable (S3: `HeadBucket`), for
    /// `GET /health` and for failing fast at start.
    async fn check(&self) -> Result<(), StoreError>;

    /// Reads the writers' record ([`record`]) and its ETag: `Ok(None)` when there is none.
    async fn read_record(&self) -> Result<Option<(Bytes, ETag)>, StoreError>;

    /// Reads the writers' record unless it is still the version `known` (its ETag): the
    /// cheap "did any writer publish?" question. The provided implementation reads it and
    /// compares ETags (a local file or memory costs nothing more); S3 asks with a
    /// conditional GET, whose `304` carries no body.
    async fn read_record_if_changed(
        &self,
        known: Option<&ETag>,
    ) -> Result<RecordChange, StoreError> {
        Ok(match self.read_record().await? {
            None => RecordChange::Absent,
            Some((body, etag)) => RecordChange::of(known, body, etag),
        })
    }

    /// The S3 requests this store has sent, by operation (`None`: not an S3 store).
    fn s3_requests(&self) -> Option<Arc<S3Requests>> {
        None
    }

    /// Writes the writers' record only if it is still the one whose ETag is `expected`
    /// (`None`: only if there is none yet), the check and the write being one atomic step:
    /// a compare-and-swap between writers in any number of processes. Returns the new
    /// ETag, or `Ok(None)` when another writer changed the record first (nothing is
    /// written; read it again). Use [`record::publish`] rather than calling this directly.
    async fn replace_record(
        &self,
        body: Bytes,
        expected: Option<&ETag>,
    ) -> Result<Option<ETag>, StoreError>;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_etag_of_content_is_its_lowercase_hex_md5() {
        assert_eq!(ETag::of(b"").as_str(), "d41d8cd98f00b204e9800998ecf8427e");
        assert_eq!(ETag::of(b"[]").as_str(), "d751713988987e9331980363e24189ce");
    }

    #[test]
    fn store_etags_are_normalised_to_the_md5_form() {
        let md5 = ETag::of(b"[]");
        for raw in [
            "\"d751713988987e9331980363e24189ce\"",
            "\"D751713988987E9331980363E24189CE\"",
            "W/\"d751713988987e9331980363e24189ce\"",
            "d751713988987e9331980363e24189ce",
        ] {
            assert_eq!(ETag::from_store(raw), md5, "{raw}");
        }
    }

    #[test]
    fn a_missing_store_etag_matches_no_content() {
        assert_ne!(ETag::from_store(""), ETag::of(b""));
    }

    #[test]
    fn states_name_their_directories() {
        assert_eq!(TargetState::Active.to_string(), "active");
        assert_eq!(TargetState::Inactive.to_string(), "inactive");
        assert_eq!(TargetState::Active.other(), TargetState::Inactive);
        assert!(TargetState::Active < TargetState::Inactive);
    }
}
