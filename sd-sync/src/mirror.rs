//! One mapping's mirror: list, plan, fetch what changed, install atomically, delete on
//! proof, and keep the installed groups for HTTP SD.
//!
//! The in-memory index (file name -> MD5 and target groups) is what is installed in the
//! directory: it is seeded from the directory at start and changed only right after a
//! file has been renamed into place or removed. Polls compare the listing's ETags with it,
//! so an unchanged object costs nothing but its share of the listing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gds_store::{Bytes, ETag, WritersRecord};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::filesd::{MAX_FILE_BYTES, is_managed_name, join_fragments, parse_file_sd};
use crate::metrics::MappingMetrics;
use crate::plan::{Entry, ListedObject, Plan};
use crate::source::{Source, SourceError};
use crate::valve::{Hold, RecordRead, Screen, Valve, ValveConfig, Verdict};

/// Failed reads and writes logged one by one per sync; the rest are counted (and summed
/// up in the "sync done" line).
const LOGGED_ERRORS_PER_SYNC: usize = 5;

/// Staged files that start a commit while more objects are being fetched (see
/// [`commit`]); when nothing more is on its way, whatever is staged is committed.
const COMMIT_BATCH: usize = 500;

/// Batches of at least this many files are flushed with one syncfs(2) rather than one
/// fsync(2) per file.
const SYNCFS_BATCH: usize = 16;

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
    /// When the last complete listing came back.
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

/// A checked object in its staged file, waiting for its batch's rename into place.
struct Staged {
    name: String,
    /// `.staged-<pid>-<n>.tmp` in the mapping's directory.
    path: PathBuf,
    entry: Entry,
}

/// What committing a batch of staged files did.
struct Committed {
    /// Each staged file: renamed into place, or why not (its staged file is removed).
    files: Vec<(Staged, io::Result<()>)>,
    /// The directory's fsync after the renames, when there were any.
    dir_synced: io::Result<()>,
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
        let installed_before = self.shared.files();
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
        {
            let mut status = self.shared.status.lock().expect("status lock");
            if status.consecutive_failures > 0 {
                tracing::info!(
                    failures = status.consecutive_failures,
                    "listing works again"
                );
            }
            status.last_listing = Some(Instant::now());
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
        let mut index = self.shared.index.write().expect("index lock");
        for (name, result) in results {
            match result {
                Ok(()) => {
                    report.deleted += 1;
                    self.metrics.deletions.inc();
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
    } = fetch;
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
                record_commit(committed, shared, metrics, report);
            }
        }
    }
}

/// Applies a commit's renames to the index, the metrics and the report.
fn record_commit(
    committed: Committed,
    shared: &MirrorShared,
    metrics: &MappingMetrics,
    report: &mut SyncReport,
) {
    let mut index = shared.index.write().expect("index lock");
    for (staged, result) in committed.files {
        match result {
            Ok(()) => {
                report.fetched += 1;
                report.installed += 1;
                metrics.fetched.inc();
                metrics.installs.inc();
                index.insert(staged.name, staged.entry);
            }
            Err(e) => {
                report.failed(&staged.name, &e);
                metrics.install_errors.inc();
                if report.errors <= LOGGED_ERRORS_PER_SYNC {
                    tracing::error!(object = %staged.name, error = %e, "install failed; retrying on the next poll");
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
            path: staged,
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

/// Makes staged names unique within the process (one sd-sync per directory).
static STAGED: AtomicU64 = AtomicU64::new(0);

// Installing a file, and why it is safe.
//
// A file is installed in two steps. [`stage`] writes the content to a staged file in the
// same directory, `.staged-<pid>-<n>.tmp` (gds-store's rule, [`gds_store::staged_file_name`]),
// whose name Prometheus' `*.json` glob never matches and whose length does not depend on
// the final name's (a 255-byte object name must not make its staged name too long). [`commit`] then takes a batch of staged files, flushes their data to
// disk, renames each into place and fsyncs the directory once.
//
// - Prometheus never reads half a file: it opens only `*.json` names, and rename(2)
//   replaces a name atomically, so it sees the old complete file or the new one.
// - After a crash no truncated `*.json` is in place: a rename is issued only once the
//   staged file's data is on disk. (Without that, a file system may persist the rename
//   before the data, and a power loss leaves an empty or short file under the final
//   name.) So any name that survives a crash points to the previous complete file or to
//   the new complete one. Staged files a crash leaves behind are removed at the next start
//   ([`remove_staged_files`]).
// - The directory's fsync after a batch's renames makes the new names durable. Without it
//   a crash could bring back previous versions, never partial ones, and the first poll
//   after the restart would fetch them again anyway (the index is rebuilt from the
//   directory's content at start).
//
// Durability is batched, because one fsync per file is what makes a first sync slow:
// with an fsync per file (eight at a time), a first sync of 10,000 objects took 11-14 s
// instead of 4.3-5.3 s on a journalling ext4, and 9-11 s on the test VM's unjournalled
// disk (docs/BENCHMARKS.md, sd-sync). A batch of [`SYNCFS_BATCH`] files or more is
// flushed with one syncfs(2) on the directory's file system: the kernel writes back every
// dirty file there, so also each staged file's data and inode, and then flushes the
// device once; when it returns without error, the batch's data is durable. A smaller
// batch, the usual case once the first sync is done (a few changed objects per poll),
// fsyncs its files one by one, so that a steady trickle of changes never makes sd-sync
// flush other programs' writes on that file system (a Prometheus data directory, say).
// Batches are [`COMMIT_BATCH`] files while more are being fetched, and a batch is
// committed while the next one is fetched and staged.

/// Writes `content` to a new staged file next to `path`; returns the staged file's path.
/// The staged file is removed if writing fails. The data is flushed by [`commit`].
fn stage(path: &Path, content: &[u8]) -> io::Result<PathBuf> {
    let unique = STAGED.fetch_add(1, Ordering::Relaxed);
    let staged = path.with_file_name(gds_store::staged_file_name(&format!(
        "{}-{unique}",
        std::process::id()
    )));
    let result = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&staged)
        .and_then(|mut file| file.write_all(content));
    match result {
        Ok(()) => Ok(staged),
        Err(e) => {
            let _ = fs::remove_file(&staged);
            Err(e)
        }
    }
}

/// Installs a batch of staged files in `dir`: flushes their data to disk (one syncfs for
/// a large batch, one fsync per file for a small one), renames each into place if its
/// name is still a regular file or free, then fsyncs `dir` once. A staged file that is
/// not installed is removed.
fn commit(dir: &Path, batch: Vec<Staged>) -> Committed {
    let directory = fs::File::open(dir);
    let flushed: Vec<io::Result<()>> = match &directory {
        Err(e) => batch
            .iter()
            .map(|_| {
                Err(io::Error::new(
                    e.kind(),
                    format!("cannot open {}: {e}", dir.display()),
                ))
            })
            .collect(),
        Ok(directory) if batch.len() >= SYNCFS_BATCH => {
            let synced = rustix::fs::syncfs(directory).map_err(io::Error::from);
            batch
                .iter()
                .map(|_| match &synced {
                    Ok(()) => Ok(()),
                    Err(e) => Err(io::Error::new(e.kind(), format!("syncfs: {e}"))),
                })
                .collect()
        }
        Ok(_) => batch
            .iter()
            .map(|staged| fs::File::open(&staged.path).and_then(|file| file.sync_all()))
            .collect(),
    };
    let mut renamed = false;
    let files: Vec<(Staged, io::Result<()>)> = batch
        .into_iter()
        .zip(flushed)
        .map(|(staged, flushed)| {
            let path = dir.join(&staged.name);
            let result = flushed
                .and_then(|()| check_replaceable(&path))
                .and_then(|()| fs::rename(&staged.path, &path));
            match &result {
                Ok(()) => renamed = true,
                Err(_) => {
                    let _ = fs::remove_file(&staged.path);
                }
            }
            (staged, result)
        })
        .collect();
    let dir_synced = match directory {
        Ok(directory) if renamed => directory.sync_all(),
        _ => Ok(()),
    };
    Committed { files, dir_synced }
}

/// Whether `name` is one of sd-sync's staged files: `.staged-<pid>-<n>.tmp`, or
/// `.<managed name>.<pid>-<n>.tmp` as earlier versions named them.
fn is_staged_name(name: &str) -> bool {
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    let pid_and_counter = |unique: &str| {
        unique
            .split_once('-')
            .is_some_and(|(pid, n)| digits(pid) && digits(n))
    };
    if let Some(unique) = gds_store::unique_of_staged_file_name(name) {
        return pid_and_counter(unique);
    }
    name.strip_prefix('.')
        .and_then(|n| n.strip_suffix(".tmp"))
        .and_then(|n| n.rsplit_once('.'))
        .is_some_and(|(managed, unique)| is_managed_name(managed) && pid_and_counter(unique))
}

/// Removes the staged files (regular files only) a previous run left in `dir` when it
/// was killed between staging and committing.
fn remove_staged_files(dir: &Path) {
    let Ok(entries) = fs::read_dir(dir) else {
        return; // seed_index reports it
    };
    for entry in entries.flatten() {
        let is_file = entry.file_type().is_ok_and(|t| t.is_file());
        if is_file && entry.file_name().to_str().is_some_and(is_staged_name) {
            match fs::remove_file(entry.path()) {
                Ok(()) => {
                    tracing::info!(file = %entry.path().display(), "removed a staged file left by an earlier run")
                }
                Err(e) => {
                    tracing::warn!(file = %entry.path().display(), error = %e, "cannot remove a staged file left by an earlier run")
                }
            }
        }
    }
}

/// Only a missing path or a regular file may be replaced: never a symlink (whose target
/// may be anywhere) nor a directory.
fn check_replaceable(path: &Path) -> io::Result<()> {
    match fs::symlink_metadata(path) {
        Ok(metadata) if metadata.file_type().is_file() => Ok(()),
        Ok(_) => Err(io::Error::other(format!(
            "{} is not a regular file (a symlink or a directory?); left alone",
            path.display()
        ))),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(e),
    }
}

/// Removes `dir/name` if it is a regular file; a missing file is already removed.
fn remove_managed_file(dir: &Path, name: &str) -> io::Result<()> {
    debug_assert!(is_managed_name(name));
    let path = dir.join(name);
    check_replaceable(&path)?;
    match fs::remove_file(&path) {
        Err(e) if e.kind() != io::ErrorKind::NotFound => Err(e),
        _ => Ok(()),
    }
}

/// The managed files in `dir`: regular files (not symlinks) with a managed name, hashed
/// and parsed. A file that is not valid file_sd is indexed with no groups, so it is
/// replaced when its object is listed and removed when it is not.
fn seed_index(dir: &Path) -> io::Result<BTreeMap<String, Entry>> {
    let mut index = BTreeMap::new();
    let entries = fs::read_dir(dir)
        .map_err(|e| io::Error::new(e.kind(), format!("cannot read {}: {e}", dir.display())))?;
    for entry in entries {
        let entry = entry?;
        let Some(name) = entry.file_name().to_str().map(str::to_owned) else {
            continue;
        };
        // file_type() does not follow symlinks.
        if !is_managed_name(&name) || !entry.file_type()?.is_file() {
            continue;
        }
        let content = match fs::read(entry.path()) {
            Ok(content) => content,
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => {
                return Err(io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", entry.path().display()),
                ));
            }
        };
        let fragment = match parse_file_sd(&content) {
            Ok(groups) => groups.fragment,
            Err(reason) => {
                tracing::warn!(file = %entry.path().display(), reason, "a local file is not valid file_sd; not served until replaced");
                Bytes::new()
            }
        };
        index.insert(
            name,
            Entry {
                etag: ETag::of(&content),
                source_etag: None,
                fragment,
            },
        );
    }
    Ok(index)
}

fn unix_now() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs_f64())
        .unwrap_or(0.0)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metrics::Metrics;
    use crate::source::memory::MemorySource;

    fn group(app: &str) -> String {
        format!(r#"[{{"targets": ["{app}.example.com"], "labels": {{"job": "{app}"}}}}]"#)
    }

    struct World {
        source: Arc<MemorySource>,
        dir: tempfile::TempDir,
        mirror: Mirror<Arc<MemorySource>>,
        metrics: Metrics,
    }

    fn world_with(valve: ValveConfig, setup: impl FnOnce(&Path)) -> World {
        let dir = tempfile::tempdir().unwrap();
        setup(dir.path());
        let source = Arc::new(MemorySource::default());
        let metrics = Metrics::new();
        let config = MirrorConfig {
            name: "targets".into(),
            source: "memory".into(),
            dir: dir.path().to_owned(),
            valve,
            fetch_concurrency: 4,
        };
        let mirror = Mirror::open(config, source.clone(), metrics.mapping("targets")).unwrap();
        World {
            source,
            dir,
            mirror,
            metrics,
        }
    }

    fn world() -> World {
        world_with(ValveConfig::default(), |_| {})
    }

    impl World {
        fn files(&self) -> BTreeMap<String, String> {
            fs::read_dir(self.dir.path())
                .unwrap()
                .map(|e| e.unwrap())
                .map(|e| {
                    let name = e.file_name().into_string().unwrap();
                    let content = fs::read_to_string(e.path()).unwrap_or_else(|_| "<link>".into());
                    (name, content)
                })
                .collect()
        }

        async fn sync(&mut self) -> SyncReport {
            self.mirror.sync_once().await.expect("the sync lists")
        }
    }

    #[tokio::test]
    async fn new_changed_and_deleted_objects_reach_the_directory() {
        let mut w = world();
        w.source.put("a.json", &group("a"));
        w.source.put("b.json", &group("b"));
        let report = w.sync().await;
        assert_eq!((report.installed, report.deleted), (2, 0));
        assert_eq!(w.files()["a.json"], group("a"));

        w.source.put("a.json", &group("c")); // same size
        w.source.remove("b.json");
        let report = w.sync().await;
        assert_eq!((report.installed, report.deleted), (1, 1));
        assert_eq!(w.files(), BTreeMap::from([("a.json".into(), group("c"))]));
    }

    #[tokio::test]
    async fn an_unchanged_listing_fetches_nothing() {
        let mut w = world();
        w.source.put("a.json", &group("a"));
        w.sync().await;
        let gets = w.source.gets.load(std::sync::atomic::Ordering::SeqCst);
        let report = w.sync().await;
        assert_eq!(
            report,
            SyncReport {
                listed: 1,
                ..SyncReport::default()
            }
        );
        assert_eq!(
            w.source.gets.load(std::sync::atomic::Ordering::SeqCst),
            gets
        );
    }

    #[tokio::test]
    async fn a_warm_directory_is_not_fetched_again() {
        let mut w = world_with(ValveConfig::default(), |dir| {
            fs::write(dir.join("a.json"), group("a")).unwrap();
        });
        w.source.put("a.json", &group("a"));
        let report = w.sync().await;
        assert_eq!(report.fetched, 0);
        assert_eq!(w.source.gets.load(std::sync::atomic::Ordering::SeqCst), 0);
        assert_eq!(
            w.mirror.shared().targets_json(),
            br#"[{"targets":["a.example.com"],"labels":{"job":"a"}}]"#
        );
    }

    #[tokio::test]
    async fn an_invalid_object_is_not_installed_the_old_file_stays_and_it_is_not_refetched() {
        let mut w = world();
        w.source.put("a.json", &group("a"));
        w.sync().await;
        w.source.put("a.json", "[{\"targets\": [\"a\"]");
        let report = w.sync().await;
        assert_eq!((report.invalid, report.installed), (1, 0));
        assert_eq!(w.files()["a.json"], group("a"));
        let gets = w.source.gets.load(std::sync::atomic::Ordering::SeqCst);
        assert_eq!(w.sync().await.invalid, 0, "counted once per version");
        assert_eq!(
            w.source.gets.load(std::sync::atomic::Ordering::SeqCst),
            gets
        );
        w.source.put("a.json", &group("fixed"));
        assert_eq!(w.sync().await.installed, 1);
        assert_eq!(w.files()["a.json"], group("fixed"));
        let invalid = w.metrics.mapping("targets").invalid.get();
        assert_eq!(invalid, 1);
    }

    #[tokio::test]
    async fn a_failed_listing_changes_nothing() {
        let mut w = world();
        w.source.put("a.json", &group("a"));
        w.sync().await;
        w.source.clear();
        w.source.fail(true);
        assert!(w.mirror.sync_once().await.is_err());
        assert_eq!(w.files().len(), 1);
        assert_eq!(w.mirror.shared().status().consecutive_failures, 1);
        assert_eq!(w.metrics.mapping("targets").listing_errors.get(), 1);
    }

    #[tokio::test]
    async fn a_partial_listing_installs_what_it_showed_and_deletes_nothing() {
        let mut w = world_with(ValveConfig::default(), |dir| {
            fs::write(dir.join("stale.json"), group("stale")).unwrap();
        });
        for name in ["a", "b", "c", "d"] {
            w.source.put(&format!("{name}.json"), &group(name));
        }
        w.source
            .truncating
            .store(true, std::sync::atomic::Ordering::SeqCst);
        assert!(w.mirror.sync_once().await.is_err());
        let files: Vec<String> = w.files().into_keys().collect();
        assert_eq!(files, ["a.json", "b.json", "stale.json"]);
        assert_eq!(
            w.mirror
                .shared()
                .freshness(Instant::now(), Duration::from_secs(60)),
            Freshness::NeverListed,
            "a partial listing is not a listing"
        );
        w.source
            .truncating
            .store(false, std::sync::atomic::Ordering::SeqCst);
        let report = w.sync().await;
        assert_eq!((report.installed, report.deleted), (2, 1));
    }

    #[tokio::test]
    async fn an_emptied_bucket_is_held_back_until_confirmed() {
        let mut w = world_with(
            ValveConfig {
                confirmations: 3,
                ..ValveConfig::default()
            },
            |_| {},
        );
        for i in 0..3 {
            w.source.put(&format!("{i}.json"), &group("x"));
        }
        w.sync().await;
        w.source.clear();
        for _ in 0..2 {
            let report = w.sync().await;
            assert_eq!((report.held_back, report.deleted), (3, 0));
            assert_eq!(w.files().len(), 3);
        }
        assert_eq!(w.metrics.mapping("targets").held_back.get(), 3);
        let report = w.sync().await;
        assert_eq!((report.held_back, report.deleted), (0, 3));
        assert!(w.files().is_empty());
        assert_eq!(w.metrics.mapping("targets").held_back.get(), 0);
        assert_eq!(w.mirror.shared().targets_json(), b"[]");
    }

    fn record(generation: u64, active_count: u64) -> Vec<u8> {
        WritersRecord {
            format: gds_store::record::RECORD_FORMAT,
            generation,
            active_count,
            writer: "broker".into(),
            written_at: "2026-12-07T12:00:00Z".into(),
        }
        .to_bytes()
    }

    fn holds(w: &World, reason: &str) -> u64 {
        w.metrics.mapping("targets").valve_holds[reason].get()
    }

    #[tokio::test]
    async fn an_emptied_bucket_whose_record_still_claims_its_objects_is_held_indefinitely() {
        let mut w = world_with(
            ValveConfig {
                confirmations: 3,
                ..ValveConfig::default()
            },
            |_| {},
        );
        for i in 0..3 {
            w.source.put(&format!("{i}.json"), &group("x"));
        }
        w.source.set_record(Some(&record(4, 3)));
        w.sync().await;
        let served = w.mirror.shared().targets_json();
        w.source.clear();
        for _ in 0..30 {
            let report = w.sync().await;
            assert_eq!((report.held_back, report.deleted), (3, 0));
        }
        assert_eq!(w.files().len(), 3);
        assert_eq!(w.mirror.shared().targets_json(), served);
        let status = w.mirror.shared().status();
        assert_eq!(
            status.hold,
            Some(Hold::RecordDisagrees {
                listed: 0,
                recorded: 3,
                generation: 4
            })
        );
        assert_eq!(holds(&w, "record_disagrees"), 30);
        assert_eq!(holds(&w, "unconfirmed"), 0);

        // The writers publish that active/ is empty: applied on the next poll.
        w.source.set_record(Some(&record(5, 0)));
        let report = w.sync().await;
        assert_eq!((report.held_back, report.deleted), (0, 3));
        assert_eq!(w.mirror.shared().targets_json(), b"[]");
        assert_eq!(w.mirror.shared().status().hold, None);
    }

    #[tokio::test]
    async fn the_record_is_read_only_when_the_valve_would_hold() {
        let mut w = world();
        w.source.set_record(Some(&record(1, 1)));
        w.source.put("a.json", &group("a"));
        w.source.put("b.json", &group("b"));
        w.sync().await;
        w.source.remove("b.json");
        assert_eq!(w.sync().await.deleted, 1, "a small deletion");
        assert_eq!(
            w.source
                .record_gets
                .load(std::sync::atomic::Ordering::SeqCst),
            0
        );
        // The last app goes and the record says 0: no countdown.
        w.source.set_record(Some(&record(2, 0)));
        w.source.clear();
        assert_eq!(w.sync().await.deleted, 1);
        assert_eq!(
            w.source
                .record_gets
                .load(std::sync::atomic::Ordering::SeqCst),
            1
        );
        assert!(w.files().is_empty());
    }

    #[tokio::test]
    async fn an_unreadable_invalid_or_vanished_record_holds() {
        let mut w = world_with(
            ValveConfig {
                confirmations: 2,
                ..ValveConfig::default()
            },
            |_| {},
        );
        w.source.put("a.json", &group("a"));
        w.sync().await;
        w.source.clear();
        w.source.set_record(Some(&record(1, 1)));
        w.source
            .record_failing
            .store(true, std::sync::atomic::Ordering::SeqCst);
        for _ in 0..3 {
            assert_eq!(w.sync().await.held_back, 1);
        }
        assert_eq!(holds(&w, "record_unreadable"), 3);
        w.source
            .record_failing
            .store(false, std::sync::atomic::Ordering::SeqCst);
        w.source.set_record(Some(b"{\"format\": 2}"));
        for _ in 0..3 {
            assert_eq!(w.sync().await.held_back, 1);
        }
        assert_eq!(holds(&w, "record_invalid"), 3);
        assert!(matches!(
            w.mirror.shared().status().hold,
            Some(Hold::RecordInvalid { .. })
        ));
        // Seen once, a record that disappears does not start the countdown.
        w.source.set_record(None);
        for _ in 0..3 {
            assert_eq!(w.sync().await.held_back, 1);
        }
        assert_eq!(holds(&w, "record_vanished"), 3);
        assert_eq!(w.files().len(), 1);
    }

    #[tokio::test]
    async fn an_object_name_of_255_bytes_is_installed() {
        let mut w = world();
        for name in [
            format!("{}.json", "a".repeat(240)),
            format!("{}.json", "b".repeat(250)),
        ] {
            w.source.put(&name, &group("x"));
        }
        let report = w.sync().await;
        assert_eq!((report.installed, report.errors), (2, 0), "{report:?}");
        assert_eq!(w.files().len(), 2);
        assert_eq!(w.mirror.shared().status().last_error, None);
    }

    #[tokio::test]
    async fn an_object_that_keeps_failing_to_install_shows_in_the_status_and_metrics() {
        let mut w = world_with(ValveConfig::default(), |dir| {
            fs::create_dir(dir.join("b.json")).unwrap();
        });
        w.source.put("a.json", &group("a"));
        w.source.put("b.json", &group("b"));
        for _ in 0..2 {
            assert_eq!(w.sync().await.errors, 1);
        }
        let status = w.mirror.shared().status();
        assert_eq!(status.failing_objects, 1);
        let error = status.last_error.expect("the failure is the last error");
        assert!(
            error.contains("b.json") && error.contains("not a regular file"),
            "{error}"
        );
        assert_eq!(w.metrics.mapping("targets").failing_objects.get(), 1);

        fs::remove_dir(w.dir.path().join("b.json")).unwrap();
        assert_eq!(w.sync().await.errors, 0);
        let status = w.mirror.shared().status();
        assert_eq!((status.failing_objects, status.last_error), (0, None));
        assert_eq!(w.metrics.mapping("targets").failing_objects.get(), 0);
    }

    #[tokio::test]
    async fn only_managed_regular_files_are_touched() {
        let outside = tempfile::tempdir().unwrap();
        let outside_file = outside.path().join("precious.json");
        fs::write(&outside_file, group("precious")).unwrap();
        let mut w = world_with(
            ValveConfig {
                allow_mass_deletion: true,
                ..ValveConfig::default()
            },
            |dir| {
                fs::write(dir.join("README"), "hello").unwrap();
                fs::write(dir.join(".hidden.json"), "x").unwrap();
                fs::write(dir.join("stale.json"), group("stale")).unwrap();
                std::os::unix::fs::symlink(&outside_file, dir.join("link.json")).unwrap();
                fs::create_dir(dir.join("sub.json")).unwrap();
            },
        );
        // The bucket has an object named like the symlink: it is not installed through it.
        w.source.put("link.json", &group("new"));
        let report = w.sync().await;
        assert_eq!(report.deleted, 1, "stale.json");
        assert_eq!(report.errors, 1, "link.json is left alone");
        assert_eq!(
            fs::read_to_string(&outside_file).unwrap(),
            group("precious")
        );
        let files = w.files();
        assert!(files.contains_key("README") && files.contains_key(".hidden.json"));
        assert!(
            fs::symlink_metadata(w.dir.path().join("link.json"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
        assert!(w.dir.path().join("sub.json").is_dir());
        assert!(!files.contains_key("stale.json"));
    }

    #[tokio::test]
    async fn no_staged_file_is_left_behind() {
        let mut w = world();
        for i in 0..20 {
            w.source.put(&format!("{i}.json"), &group("x"));
        }
        w.sync().await;
        assert!(
            w.files()
                .keys()
                .all(|name| name.ends_with(".json") && !name.starts_with('.'))
        );
    }

    #[test]
    fn staged_names_are_recognised_and_short_whatever_the_final_name() {
        let dir = tempfile::tempdir().unwrap();
        for final_name in ["x.json".to_string(), format!("{}.json", "x".repeat(250))] {
            let staged = stage(&dir.path().join(&final_name), b"[]").unwrap();
            let name = staged.file_name().unwrap().to_str().unwrap().to_owned();
            let prefix = format!(".staged-{}-", std::process::id());
            assert!(
                name.starts_with(&prefix) && name.ends_with(".tmp") && name.len() < 64,
                "{name}"
            );
            assert!(is_staged_name(&name));
        }
        // As earlier versions named them: still cleaned up after an upgrade.
        assert!(is_staged_name(".x.json.12-3.tmp"));
        for other in [
            "x.json",
            ".x.json",
            ".x.json.tmp",
            ".x.json.12.tmp",
            ".x.json.12-.tmp",
            ".x.json.a-1.tmp",
            ".x.txt.1-2.tmp",
            "..json.1-2.tmp",
            ".x.json.1-2.tmp.json",
            ".staged-.tmp",
            ".staged-12.tmp",
            ".staged-a-1.tmp",
            ".staged-1-2.json",
        ] {
            assert!(!is_staged_name(other), "{other}");
        }
    }

    #[tokio::test]
    async fn staged_files_left_by_a_killed_run_are_removed_at_start() {
        let w = world_with(ValveConfig::default(), |dir| {
            fs::write(dir.join(".a.json.4242-7.tmp"), "[{\"targ").unwrap();
            fs::write(dir.join(".staged-4242-8.tmp"), "[{\"targ").unwrap();
            fs::write(dir.join(".notes.tmp"), "mine").unwrap();
            fs::create_dir(dir.join(".b.json.1-2.tmp")).unwrap();
        });
        let files: Vec<String> = w.files().into_keys().collect();
        assert_eq!(files, [".b.json.1-2.tmp", ".notes.tmp"]);
    }

    #[tokio::test]
    async fn a_first_sync_of_many_objects_installs_them_all_in_batches() {
        let mut w = world();
        for i in 0..300 {
            w.source
                .put(&format!("{i:03}.json"), &group(&i.to_string()));
        }
        let report = w.sync().await;
        assert_eq!(
            (report.fetched, report.installed, report.errors),
            (300, 300, 0)
        );
        let files = w.files();
        assert_eq!(files.len(), 300);
        assert!(files.keys().all(|name| is_managed_name(name)));
        assert_eq!(files["042.json"], group("42"));
        assert_eq!(w.mirror.shared().files(), 300);
        assert_eq!(w.metrics.mapping("targets").files.get(), 300);
    }

    #[test]
    fn a_commit_flushes_renames_and_cleans_up_small_and_large_batches() {
        for size in [1, SYNCFS_BATCH - 1, SYNCFS_BATCH, 40] {
            let dir = tempfile::tempdir().unwrap();
            std::os::unix::fs::symlink("/nowhere", dir.path().join("link.json")).unwrap();
            let mut names: Vec<String> = (0..size).map(|i| format!("{i}.json")).collect();
            names.push("link.json".into());
            let batch = names
                .iter()
                .map(|name| Staged {
                    name: name.clone(),
                    path: stage(&dir.path().join(name), group(name).as_bytes()).unwrap(),
                    entry: Entry {
                        etag: ETag::of(group(name).as_bytes()),
                        source_etag: None,
                        fragment: Bytes::new(),
                    },
                })
                .collect();
            let committed = commit(dir.path(), batch);
            committed.dir_synced.unwrap();
            let failed: Vec<&str> = committed
                .files
                .iter()
                .filter(|(_, result)| result.is_err())
                .map(|(staged, _)| staged.name.as_str())
                .collect();
            assert_eq!(failed, ["link.json"], "batch of {size}");
            let mut files: Vec<String> = fs::read_dir(dir.path())
                .unwrap()
                .map(|e| e.unwrap().file_name().into_string().unwrap())
                .collect();
            files.sort();
            names.sort();
            assert_eq!(files, names, "no staged file is left (batch of {size})");
            assert_eq!(
                fs::read_to_string(dir.path().join("0.json")).unwrap(),
                group("0.json")
            );
        }
    }

    // The clock is an argument, so the test moves "now" instead of sleeping.
    #[tokio::test]
    async fn a_mirror_is_stale_when_its_last_listing_is_older_than_the_limit() {
        let mut w = world();
        let shared = w.mirror.shared();
        let limit = Duration::from_secs(60);
        assert_eq!(
            shared.freshness(Instant::now(), limit),
            Freshness::NeverListed
        );
        w.sync().await;
        let listed = Instant::now();
        assert_eq!(shared.freshness(listed, limit), Freshness::Fresh);
        w.source.fail(true);
        assert!(w.mirror.sync_once().await.is_err());
        assert_eq!(
            shared.freshness(listed + Duration::from_secs(59), limit),
            Freshness::Fresh,
            "a failed listing does not make the last good one older"
        );
        assert!(matches!(
            shared.freshness(listed + Duration::from_secs(61), limit),
            Freshness::Stale { .. }
        ));
    }
}
