//! One mapping's mirror: list, plan, fetch what changed, install atomically, delete on
//! proof, and keep the installed groups for HTTP SD.
//!
//! The in-memory index (file name -> MD5 and target groups) is what is installed in the
//! directory: it is seeded from the directory at start and changed only right after a
//! file has been renamed into place or removed. Polls compare the listing's ETags with it,
//! so an unchanged object costs nothing but its share of the listing.

use std::collections::{BTreeMap, HashMap, HashSet, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gds_store::{Bytes, ETag, WritersRecord};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::directory::{
    Committed, Staged, check_replaceable, commit, remove_managed_file, remove_staged_files,
    seed_index, stage,
};
use crate::filesd::{MAX_FILE_BYTES, join_fragments, parse_file_sd};
use crate::metrics::MappingMetrics;
use crate::plan::{Entry, ListedObject, Plan};
use crate::source::{Source, SourceError};
use crate::valve::{Hold, RecordRead, Screen, Valve, ValveConfig, Verdict};
use crate::watch::{Decision, ListReason, Watch};

/// Failed reads and writes logged one by one per sync; the rest are counted (and summed
/// up in the "sync done" line).
const LOGGED_ERRORS_PER_SYNC: usize = 5;

/// Staged files that start a commit while more objects are being fetched (see
/// [`commit`]); when nothing more is on its way, whatever is staged is committed.
const COMMIT_BATCH: usize = 500;

/// What the HTTP side may see of a mirror; shared with the sync task.
#[derive(Debug)]
pub struct MirrorShared {
    /// The mapping's name (last component of its directory).
    pub name: String,
    /// `s3://BUCKET/PREFIX`.
    pub source: String,
    /// The directory.
    pub dir: PathBuf,
    index: RwLock<BTreeMap<String, Entry>>,
    status: Mutex<Status>,
}

/// How the mirror's listings have been going.
#[derive(Clone, Debug, Default)]
pub struct Status {
    /// When the directory was last known to be current: a complete listing came back,
    /// or the writers' record was unchanged since one (see [`crate::watch`]).
    pub last_listing: Option<Instant>,
    /// What went wrong in the last poll: its listing failed, or objects could not be
    /// fetched, installed or removed. `None` after a clean poll.
    pub last_error: Option<String>,
    /// Failed listings since the last complete one.
    pub consecutive_failures: u32,
    /// Objects the last complete sync could not fetch, install or remove (each is retried
    /// on every poll).
    pub failing_objects: usize,
    /// Objects in the last complete listing.
    pub listed: usize,
    /// Deletions the valve is holding back.
    pub held_back: usize,
    /// Why the valve is holding them back.
    pub hold: Option<Hold>,
}

/// Whether a mirror's state can be served as current.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Freshness {
    /// Listed within the stale-after time.
    Fresh,
    /// No listing has completed since start.
    NeverListed,
    /// The last complete listing is older than the stale-after time.
    Stale { age: Duration },
}

impl MirrorShared {
    /// The installed target groups as one JSON array (http_sd), in file-name order: the
    /// same groups as the directory.
    pub fn targets_json(&self) -> Vec<u8> {
        let index = self.index.read().expect("index lock");
        join_fragments(index.values().map(|entry| &entry.fragment))
    }

    /// The fragments of every installed file, in file-name order.
    pub fn fragments(&self) -> Vec<Bytes> {
        let index = self.index.read().expect("index lock");
        index.values().map(|entry| entry.fragment.clone()).collect()
    }

    /// How many files are installed.
    pub fn files(&self) -> usize {
        self.index.read().expect("index lock").len()
    }

    pub fn status(&self) -> Status {
        self.status.lock().expect("status lock").clone()
    }

    /// Fresh when a listing completed less than `stale_after` before `now`.
    pub fn freshness(&self, now: Instant, stale_after: Duration) -> Freshness {
        match self.status().last_listing {
            None => Freshness::NeverListed,
            Some(at) => {
                let age = now.saturating_duration_since(at);
                if age > stale_after {
                    Freshness::Stale { age }
                } else {
                    Freshness::Fresh
                }
            }
        }
    }
}

/// What one sync did.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct SyncReport {
    /// Why this sync listed the prefix; `None` when the writers' record said nothing
    /// changed since the last listing (and the rest of the report is zero but `listed`).
    /// Other per-sync listings can follow it (see [`crate::watch`]).
    pub listing: Option<ListReason>,
    /// Objects in the last complete listing (this sync's, when it listed).
    pub listed: usize,
    pub fetched: usize,
    pub installed: usize,
    pub invalid: usize,
    pub deleted: usize,
    pub held_back: usize,
    /// Why the valve held deletions back.
    pub hold: Option<Hold>,
    /// Failed reads, writes and removals (each is retried on the next poll).
    pub errors: usize,
    /// The first of them, for `/health` and `--once`.
    pub first_error: Option<String>,
}

impl SyncReport {
    /// Counts a failed read, write or removal of `name`.
    fn failed(&mut self, name: &str, error: &dyn std::fmt::Display) {
        self.errors += 1;
        if self.first_error.is_none() {
            self.first_error = Some(format!("{name}: {error}"));
        }
    }

    /// What went wrong, in one line, when something did.
    pub fn error_summary(&self) -> Option<String> {
        let first = self.first_error.as_ref()?;
        Some(if self.errors == 1 {
            format!("1 object could not be fetched, installed or removed: {first}")
        } else {
            format!(
                "{} objects could not be fetched, installed or removed (the first: {first})",
                self.errors
            )
        })
    }
}

/// The settings of one mirror.
#[derive(Clone, Debug)]
pub struct MirrorConfig {
    pub name: String,
    pub source: String,
    pub dir: PathBuf,
    pub valve: ValveConfig,
    /// Object reads (and installs) in flight.
    pub fetch_concurrency: usize,
    /// The longest time without a listing while the writers' record is unchanged
    /// (`Duration::ZERO`: list on every poll). See [`crate::watch`].
    pub safety_listing_interval: Duration,
}

/// One mapping's mirror; owned by its sync task.
pub struct Mirror<S> {
    shared: Arc<MirrorShared>,
    source: S,
    valve: Valve,
    /// Object versions found invalid, by name: not fetched again until they change.
    rejected: HashMap<String, ETag>,
    fetch_concurrency: usize,
    metrics: MappingMetrics,
    /// Files planned for deletion, by name: since when (the first complete listing that
    /// showed their object gone). Entries leave when the file is removed or its object
    /// is listed again.
    gone_since: HashMap<String, Instant>,
    /// Whether a poll lists the prefix.
    watch: Watch,
    /// The last sync left work that only a listing retries.
    retry: bool,
    /// Failed reads of the writers' record in a row (logged once, then every 30th).
    record_failures: u32,
}

/// How fetching and staging one object ended.
enum Outcome {
    /// Checked and written to a staged file: installed when its batch is committed (see
    /// [`commit`]).
    Staged(Staged),
    /// The object's content is what is installed already (its ETag is not an MD5).
    AlreadyInstalled(String, Option<ETag>),
    Invalid {
        name: String,
        etag: ETag,
        reason: String,
    },
    Vanished,
    FetchFailed(String, SourceError),
    InstallFailed(String, io::Error),
}

impl<S: Source> Mirror<S> {
    /// Creates the directory if needed and seeds the index from the managed files in it
    /// (blocking; call at start).
    pub fn open(config: MirrorConfig, source: S, metrics: MappingMetrics) -> io::Result<Self> {
        fs::create_dir_all(&config.dir).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("cannot create {}: {e}", config.dir.display()),
            )
        })?;
        remove_staged_files(&config.dir);
        let index = seed_index(&config.dir)?;
        metrics.files.set(index.len() as i64);
        tracing::info!(
            mapping = %config.name,
            dir = %config.dir.display(),
            files = index.len(),
            "seeded from the directory"
        );
        Ok(Mirror {
            shared: Arc::new(MirrorShared {
                name: config.name,
                source: config.source,
                dir: config.dir,
                index: RwLock::new(index),
                status: Mutex::new(Status::default()),
            }),
            source,
            valve: Valve::new(config.valve),
            rejected: HashMap::new(),
            fetch_concurrency: config.fetch_concurrency.max(1),
            metrics,
            gone_since: HashMap::new(),
            watch: Watch::new(config.safety_listing_interval),
            retry: false,
            record_failures: 0,
        })
    }

    /// This mapping's metrics.
    pub fn metrics(&self) -> &MappingMetrics {
        &self.metrics
    }

    /// The part the HTTP side reads.
    pub fn shared(&self) -> Arc<MirrorShared> {
        self.shared.clone()
    }

    /// One poll: list; install new and changed objects; remove files whose object is gone
    /// (unless the valve holds them back). A failed listing changes nothing.
    #[tracing::instrument(skip_all, fields(mapping = %self.shared.name))]
    pub async fn sync_once(&mut self) -> Result<SyncReport, SourceError> {
        let started = Instant::now();
        self.metrics.polls.inc();
        let result = self.sync_inner().await;
        self.metrics
            .duration
            .observe(started.elapsed().as_secs_f64());
        result
    }

    async fn sync_inner(&mut self) -> Result<SyncReport, SourceError> {
        let started = Instant::now();
        let poll = match self.source.record_key() {
            None => None,
            Some(_) => Some(self.source.poll_record(self.watch.known()).await),
        };
        match &poll {
            Some(Err(e)) => {
                self.record_failures += 1;
                let failures = self.record_failures;
                if failures == 1 || failures.is_multiple_of(30) {
                    tracing::warn!(
                        error = %e,
                        failures,
                        "cannot read the writers' record: listing on every poll meanwhile"
                    );
                }
            }
            Some(Ok(_)) if self.record_failures > 0 => {
                tracing::info!(
                    failures = self.record_failures,
                    "the writers' record is readable again"
                );
                self.record_failures = 0;
            }
            _ => {}
        }
        let (reason, seen) = match self.watch.decide(started, poll.as_ref(), self.retry) {
            Decision::Unchanged => return Ok(self.unchanged()),
            Decision::List { reason, seen } => (reason, seen),
        };
        self.metrics.listings[reason.as_str()].inc();
        let installed_before = self.shared.files();
        // The first sync after start installs objects that may have changed long ago:
        // their propagation time says nothing about this node's latency.
        let observe_installs = self.shared.status().last_listing.is_some();
        let mut plan = Plan::default();
        let mut listing = Vec::new();
        let mut report = SyncReport::default();
        // List and fetch at once: the objects of the first page are on their way while
        // the next pages are listed.
        let (pages, received) = mpsc::unbounded_channel();
        let Mirror {
            shared,
            source,
            rejected,
            metrics,
            fetch_concurrency,
            ..
        } = self;
        let source: &S = source;
        let lister = async move {
            let result = source.list(&pages).await;
            drop(pages); // ends the fetcher's page stream
            result
        };
        let fetcher = fetch_pages(
            Fetch {
                source,
                shared,
                metrics,
                concurrency: *fetch_concurrency,
                observe_installs,
            },
            received,
            rejected,
            &mut plan,
            &mut listing,
            &mut report,
        );
        let (listed, ()) = tokio::join!(lister, fetcher);

        if let Err(e) = listed {
            // What a partial listing showed was installed (those objects exist); nothing
            // is deleted.
            self.metrics.listing_errors.inc();
            self.valve.interrupted();
            self.retry = true;
            let failures = {
                let mut status = self.shared.status.lock().expect("status lock");
                status.last_error = Some(e.to_string());
                status.consecutive_failures += 1;
                status.consecutive_failures
            };
            // Every failure is counted; the log says it once and then every 30th time.
            if failures == 1 || failures.is_multiple_of(30) {
                tracing::warn!(error = %e, failures, "listing failed: nothing is deleted");
            }
            self.metrics.files.set(self.shared.files() as i64);
            return Err(e);
        }
        let listed_at = Instant::now();
        self.watch.listed(started, seen);
        report.listing = Some(reason);
        {
            let mut status = self.shared.status.lock().expect("status lock");
            if status.consecutive_failures > 0 {
                tracing::info!(
                    failures = status.consecutive_failures,
                    "listing works again"
                );
            }
            status.last_listing = Some(listed_at);
            status.last_error = None;
            status.consecutive_failures = 0;
        }
        self.metrics.last_listing.set(unix_now());
        report.listed = listing.len();

        // Forget invalid versions that are gone or replaced.
        if !self.rejected.is_empty() {
            let listed: HashMap<&str, &ETag> =
                listing.iter().map(|o| (o.name.as_str(), &o.etag)).collect();
            self.rejected
                .retain(|name, etag| listed.get(name.as_str()) == Some(&&*etag));
        }
        plan.finish(&listing, &self.shared.index.read().expect("index lock"));
        self.note_gone(&plan.delete, listed_at);
        if !plan.is_empty() {
            tracing::debug!(%plan, "synced the listing");
        }

        let deletions = plan.delete.len();
        let verdict = match self
            .valve
            .screen(Instant::now(), deletions, installed_before, &listing)
        {
            Screen::Proceed => Verdict::Proceed,
            // Only now is the record worth a request.
            Screen::Suspicious => {
                let record = self.read_record().await;
                self.valve.judge(&listing, &record)
            }
        };
        let previous_hold = self.shared.status().hold;
        match verdict {
            Verdict::Proceed if plan.delete.is_empty() => {}
            Verdict::Proceed => self.delete(plan.delete, &mut report).await,
            Verdict::Corroborated {
                generation,
                recorded,
            } => {
                tracing::info!(
                    deletions,
                    files = installed_before,
                    listed = listing.len(),
                    record_generation = generation,
                    recorded,
                    "safety valve: the writers' record agrees with the listing; applying \
                     the mass deletion"
                );
                self.delete(plan.delete, &mut report).await;
            }
            Verdict::Hold(hold) => {
                report.held_back = deletions;
                self.metrics.valve_holds[hold.reason()].inc();
                let reason_changed =
                    previous_hold.as_ref().map(Hold::reason) != Some(hold.reason());
                if reason_changed {
                    tracing::warn!(
                        deletions,
                        files = installed_before,
                        listed = listing.len(),
                        reason = hold.reason(),
                        "safety valve: holding back a mass deletion: {hold} \
                         (--allow-mass-deletion lets it through)"
                    );
                }
                report.hold = Some(hold);
            }
        }
        if previous_hold.is_some() && report.hold.is_none() {
            tracing::info!(
                deleted = report.deleted,
                "safety valve: no longer holding back"
            );
        }
        {
            let mut status = self.shared.status.lock().expect("status lock");
            status.listed = listing.len();
            status.held_back = report.held_back;
            status.hold = report.hold.clone();
            status.failing_objects = report.errors;
            status.last_error = report.error_summary();
        }
        // A listing retries these; an unchanged record would not.
        self.retry = report.errors > 0 || report.hold.is_some() || !self.gone_since.is_empty();
        self.metrics.failing_objects.set(report.errors as i64);
        self.metrics.held_back.set(report.held_back as i64);
        self.metrics.files.set(self.shared.files() as i64);
        if report.errors == 0 {
            self.metrics.last_success.set(unix_now());
        }
        if report.installed + report.deleted + report.invalid + report.errors > 0 {
            tracing::info!(
                installed = report.installed,
                deleted = report.deleted,
                invalid = report.invalid,
                errors = report.errors,
                held_back = report.held_back,
                "sync done"
            );
        }
        Ok(report)
    }

    /// A poll whose record says nothing changed since the last complete (and clean)
    /// listing: the directory is current as of now.
    fn unchanged(&mut self) -> SyncReport {
        self.metrics.unchanged_polls.inc();
        let listed = {
            let mut status = self.shared.status.lock().expect("status lock");
            status.last_listing = Some(Instant::now());
            status.listed
        };
        let now = unix_now();
        self.metrics.last_listing.set(now);
        self.metrics.last_success.set(now);
        SyncReport {
            listed,
            ..SyncReport::default()
        }
    }

    /// Reads and parses the writers' record beside the mapping's prefix.
    async fn read_record(&self) -> RecordRead {
        if self.source.record_key().is_none() {
            return RecordRead::NotLocated;
        }
        match self.source.get_record().await {
            Ok(None) => RecordRead::Absent,
            Ok(Some(body)) => match WritersRecord::parse(&body) {
                Ok(record) => RecordRead::Present(record),
                Err(e) => RecordRead::Invalid(e),
            },
            Err(e) => RecordRead::Unreadable(e.to_string()),
        }
    }

    /// Remembers when each of `deleting` was first planned for deletion (at `listed_at`),
    /// and forgets the others.
    fn note_gone(&mut self, deleting: &[String], listed_at: Instant) {
        let deleting: HashSet<&str> = deleting.iter().map(String::as_str).collect();
        self.gone_since
            .retain(|name, _| deleting.contains(name.as_str()));
        for name in deleting {
            self.gone_since.entry(name.to_owned()).or_insert(listed_at);
        }
    }

    async fn delete(&mut self, names: Vec<String>, report: &mut SyncReport) {
        let dir = self.shared.dir.clone();
        let results = tokio::task::spawn_blocking(move || {
            names
                .into_iter()
                .map(|name| {
                    let result = remove_managed_file(&dir, &name);
                    (name, result)
                })
                .collect::<Vec<_>>()
        })
        .await
        .expect("the removal task does not panic");
        let removed_at = Instant::now();
        let mut index = self.shared.index.write().expect("index lock");
        for (name, result) in results {
            match result {
                Ok(()) => {
                    report.deleted += 1;
                    self.metrics.deletions.inc();
                    if let Some(since) = self.gone_since.remove(&name) {
                        self.metrics
                            .propagation_delete
                            .observe(removed_at.saturating_duration_since(since).as_secs_f64());
                    }
                    index.remove(&name);
                }
                Err(e) => {
                    report.failed(&name, &e);
                    self.metrics.install_errors.inc();
                    tracing::error!(file = %name, error = %e, "removal failed; retrying on the next poll");
                }
            }
        }
    }
}

/// What fetching needs of a mirror.
struct Fetch<'a, S> {
    source: &'a S,
    shared: &'a MirrorShared,
    metrics: &'a MappingMetrics,
    concurrency: usize,
    /// Whether installs are observed in `sd_sync_propagation_seconds` (not in the first
    /// sync after start).
    observe_installs: bool,
}

/// Plans each page as it arrives and keeps up to `concurrency` objects being fetched and
/// staged, and commits the staged files in batches (one batch at a time, while fetching
/// goes on: [`COMMIT_BATCH`] files, or what is staged when nothing more is on its way),
/// until the listing ends and the last batch is committed. The pages end up in
/// `listing`; the fetches in `plan`.
async fn fetch_pages<S: Source>(
    fetch: Fetch<'_, S>,
    mut pages: mpsc::UnboundedReceiver<Vec<ListedObject>>,
    rejected: &mut HashMap<String, ETag>,
    plan: &mut Plan,
    listing: &mut Vec<ListedObject>,
    report: &mut SyncReport,
) {
    let Fetch {
        source,
        shared,
        metrics,
        concurrency,
        observe_installs,
    } = fetch;
    // The `LastModified` of each object being fetched, when installs are observed.
    let mut modified: HashMap<String, SystemTime> = HashMap::new();
    let dir = shared.dir.as_path();
    let mut queue: VecDeque<(ListedObject, Option<ETag>)> = VecDeque::new();
    let mut in_flight = FuturesUnordered::new();
    let mut listing_open = true;
    let mut batch: Vec<Staged> = Vec::new();
    let mut committing: Option<tokio::task::JoinHandle<Committed>> = None;
    loop {
        while in_flight.len() < concurrency {
            let Some((object, current)) = queue.pop_front() else {
                break;
            };
            in_flight.push(fetch_and_stage(source, dir, object, current));
        }
        let idle = in_flight.is_empty() && queue.is_empty();
        if committing.is_none() && (batch.len() >= COMMIT_BATCH || (idle && !batch.is_empty())) {
            let (dir, batch) = (dir.to_owned(), std::mem::take(&mut batch));
            committing = Some(tokio::task::spawn_blocking(move || commit(&dir, batch)));
        }
        if !listing_open && in_flight.is_empty() && committing.is_none() {
            return;
        }
        tokio::select! {
            page = pages.recv(), if listing_open => match page {
                Some(page) => {
                    let index = shared.index.read().expect("index lock");
                    for object in plan.add_page(&page, &index, rejected) {
                        if let (true, Some(at)) = (observe_installs, object.last_modified) {
                            modified.insert(object.name.clone(), at);
                        }
                        let current = index.get(&object.name).map(|e| e.etag.clone());
                        queue.push_back((object, current));
                    }
                    drop(index);
                    listing.extend(page);
                }
                None => listing_open = false,
            },
            Some(outcome) = in_flight.next(), if !in_flight.is_empty() => {
                record(outcome, shared, metrics, rejected, report, &mut batch);
            }
            committed = async { committing.as_mut().expect("a commit is running").await },
                if committing.is_some() =>
            {
                committing = None;
                let committed = committed.expect("the commit task does not panic");
                record_commit(committed, shared, metrics, report, &modified);
            }
        }
    }
}

/// Applies a commit's renames to the index, the metrics and the report; observes the
/// propagation time of each installed object whose `LastModified` is in `modified`.
fn record_commit(
    committed: Committed,
    shared: &MirrorShared,
    metrics: &MappingMetrics,
    report: &mut SyncReport,
    modified: &HashMap<String, SystemTime>,
) {
    let installed_at = SystemTime::now();
    let mut index = shared.index.write().expect("index lock");
    for (name, entry, result) in committed.files {
        match result {
            Ok(()) => {
                report.fetched += 1;
                report.installed += 1;
                metrics.fetched.inc();
                metrics.installs.inc();
                if let Some(&at) = modified.get(&name) {
                    metrics
                        .propagation_install
                        .observe(seconds_between(at, installed_at));
                }
                index.insert(name, entry);
            }
            Err(e) => {
                report.failed(&name, &e);
                metrics.install_errors.inc();
                if report.errors <= LOGGED_ERRORS_PER_SYNC {
                    tracing::error!(object = %name, error = %e, "install failed; retrying on the next poll");
                }
            }
        }
    }
    metrics.files.set(index.len() as i64);
    drop(index);
    if let Err(e) = committed.dir_synced {
        // The files are in place and complete; only their names may not survive a crash.
        report.failed(&shared.dir.display().to_string(), &e);
        metrics.install_errors.inc();
        tracing::error!(dir = %shared.dir.display(), error = %e, "fsync of the directory failed");
    }
}

/// Applies one fetch's outcome to the index, the metrics and the report; a staged file
/// joins the next batch.
fn record(
    outcome: Outcome,
    shared: &MirrorShared,
    metrics: &MappingMetrics,
    rejected: &mut HashMap<String, ETag>,
    report: &mut SyncReport,
    batch: &mut Vec<Staged>,
) {
    match outcome {
        Outcome::Staged(staged) => batch.push(staged),
        Outcome::AlreadyInstalled(name, source_etag) => {
            report.fetched += 1;
            metrics.fetched.inc();
            if let Some(entry) = shared.index.write().expect("index lock").get_mut(&name) {
                entry.source_etag = source_etag;
            }
        }
        Outcome::Invalid { name, etag, reason } => {
            report.invalid += 1;
            metrics.invalid.inc();
            tracing::warn!(
                object = %name,
                %etag,
                reason,
                "invalid object not installed; the previous file, if any, stays"
            );
            // An object without an ETag cannot be recognised later: fetch it again.
            if !etag.as_str().is_empty() {
                rejected.insert(name, etag);
            }
        }
        Outcome::Vanished => {}
        Outcome::FetchFailed(name, e) => {
            report.failed(&name, &e);
            metrics.fetch_errors.inc();
            if report.errors <= LOGGED_ERRORS_PER_SYNC {
                tracing::warn!(object = %name, error = %e, "fetch failed; retrying on the next poll");
            }
        }
        Outcome::InstallFailed(name, e) => {
            report.failed(&name, &e);
            metrics.install_errors.inc();
            if report.errors <= LOGGED_ERRORS_PER_SYNC {
                tracing::error!(object = %name, error = %e, "install failed; retrying on the next poll");
            }
        }
    }
}

/// Reads one object, checks it and writes it to a staged file in `dir` (see [`stage`]).
async fn fetch_and_stage(
    source: &impl Source,
    dir: &Path,
    object: ListedObject,
    current: Option<ETag>,
) -> Outcome {
    if object.size > MAX_FILE_BYTES {
        return Outcome::Invalid {
            name: object.name.clone(),
            etag: object.etag.clone(),
            reason: format!(
                "{} bytes, more than the {MAX_FILE_BYTES} a target file may have",
                object.size
            ),
        };
    }
    let content = match source.get(&object.name).await {
        Ok(Some(content)) => content,
        // Deleted since the listing: the next listing says so.
        Ok(None) => return Outcome::Vanished,
        Err(e) => return Outcome::FetchFailed(object.name.clone(), e),
    };
    let path = dir.join(&object.name);
    tokio::task::spawn_blocking(move || {
        let md5 = ETag::of(&content);
        // Remembered only when it differs from the MD5 and says something.
        let source_etag =
            (object.etag != md5 && !object.etag.as_str().is_empty()).then(|| object.etag.clone());
        if current.as_ref() == Some(&md5) {
            return Outcome::AlreadyInstalled(object.name, source_etag);
        }
        let groups = match parse_file_sd(&content) {
            Ok(groups) => groups,
            Err(reason) => {
                return Outcome::Invalid {
                    name: object.name,
                    etag: object.etag,
                    reason,
                };
            }
        };
        let staged = match check_replaceable(&path).and_then(|()| stage(&path, &content)) {
            Ok(staged) => staged,
            Err(e) => return Outcome::InstallFailed(object.name, e),
        };
        Outcome::Staged(Staged {
            name: object.name,
            file: staged,
            entry: Entry {
                etag: md5,
                source_etag,
                fragment: groups.fragment,
            },
        })
    })
    .await
    .expect("the install task does not panic")
}

/// Seconds from `earlier` (the store's clock) to `later` (this node's), 0 when the clocks'
/// skew makes it negative.
fn seconds_between(earlier: SystemTime, later: SystemTime) -> f64 {
    later
        .duration_since(earlier)
        .map_or(0.0, |elapsed| elapsed.as_secs_f64())
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests;
