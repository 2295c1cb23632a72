//! One mapping's mirror: list, plan, fetch what changed, install atomically, delete on
//! proof, and keep the installed groups for HTTP SD.
//!
//! The in-memory index (file name -> MD5 and target groups) is what is installed in the
//! directory: it is seeded from the directory at start and changed only right after a
//! file has been renamed into place or removed. Polls compare the listing's ETags with it,
//! so an unchanged object costs nothing but its share of the listing.

use std::collections::{BTreeMap, HashMap, VecDeque};
use std::fs;
use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures::StreamExt;
use futures::stream::FuturesUnordered;
use gds_store::{Bytes, ETag};
use tokio::sync::mpsc;
use tokio::time::Instant;

use crate::filesd::{MAX_FILE_BYTES, is_managed_name, join_fragments, parse_file_sd};
use crate::metrics::MappingMetrics;
use crate::plan::{Entry, ListedObject, Plan};
use crate::source::{Source, SourceError};
use crate::valve::{Valve, ValveConfig, Verdict};

/// Failed reads and writes logged one by one per sync; the rest are counted (and summed
/// up in the "sync done" line).
const LOGGED_ERRORS_PER_SYNC: usize = 5;

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
    /// The error of the last listing, when it failed.
    pub last_error: Option<String>,
    /// Failed listings since the last complete one.
    pub consecutive_failures: u32,
    /// Deletions the valve is holding back.
    pub held_back: usize,
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
    /// Failed reads, writes and removals (each is retried on the next poll).
    pub errors: usize,
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

/// How fetching and installing one object ended.
enum Outcome {
    Installed(String, Entry),
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

        match self.valve.judge(
            Instant::now(),
            plan.delete.len(),
            installed_before,
            &listing,
        ) {
            Verdict::Proceed if plan.delete.is_empty() => {}
            Verdict::Proceed => self.delete(plan.delete, &mut report).await,
            Verdict::Hold { seen, needed } => {
                report.held_back = plan.delete.len();
                if seen == 1 {
                    tracing::warn!(
                        deletions = plan.delete.len(),
                        files = installed_before,
                        listed = listing.len(),
                        needed,
                        "safety valve: holding back a mass deletion until the same \
                         listing has been seen on {needed} consecutive polls \
                         (--allow-mass-deletion lets it through)"
                    );
                } else if seen.is_multiple_of(10) {
                    tracing::info!(
                        deletions = plan.delete.len(),
                        seen,
                        needed,
                        "safety valve: still holding back"
                    );
                }
            }
        }
        self.shared.status.lock().expect("status lock").held_back = report.held_back;
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
                    report.errors += 1;
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
/// installed, until the listing ends and the last install is done. The pages end up in
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
    loop {
        while in_flight.len() < concurrency {
            let Some((object, current)) = queue.pop_front() else {
                break;
            };
            in_flight.push(fetch_and_install(source, dir, object, current));
        }
        if !listing_open && in_flight.is_empty() {
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
                record(outcome, shared, metrics, rejected, report);
            }
        }
    }
}

/// Applies one fetch's outcome to the index, the metrics and the report.
fn record(
    outcome: Outcome,
    shared: &MirrorShared,
    metrics: &MappingMetrics,
    rejected: &mut HashMap<String, ETag>,
    report: &mut SyncReport,
) {
    match outcome {
        Outcome::Installed(name, entry) => {
            report.fetched += 1;
            report.installed += 1;
            metrics.fetched.inc();
            metrics.installs.inc();
            let mut index = shared.index.write().expect("index lock");
            index.insert(name, entry);
            metrics.files.set(index.len() as i64);
        }
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
            report.errors += 1;
            metrics.fetch_errors.inc();
            if report.errors <= LOGGED_ERRORS_PER_SYNC {
                tracing::warn!(object = %name, error = %e, "fetch failed; retrying on the next poll");
            }
        }
        Outcome::InstallFailed(name, e) => {
            report.errors += 1;
            metrics.install_errors.inc();
            if report.errors <= LOGGED_ERRORS_PER_SYNC {
                tracing::error!(object = %name, error = %e, "install failed; retrying on the next poll");
            }
        }
    }
}

/// Reads one object, checks it and writes it into `dir` atomically.
async fn fetch_and_install(
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
        if let Err(e) = check_replaceable(&path).and_then(|()| install_file(&path, &content)) {
            return Outcome::InstallFailed(object.name, e);
        }
        Outcome::Installed(
            object.name,
            Entry {
                etag: md5,
                source_etag,
                fragment: groups.fragment,
            },
        )
    })
    .await
    .expect("the install task does not panic")
}

/// Makes staged names unique within the process (one sd-sync per directory).
static STAGED: AtomicU64 = AtomicU64::new(0);

/// Writes `content` to `path` atomically: to a staged file in the same directory, then
/// renamed over `path`, so Prometheus (which re-reads a file on every inotify event) sees
/// the old file or the new one, never half of one. The staged name
/// (`.<name>.<pid>-<n>.tmp`, as gds-store's) never matches the `*.json` glob.
///
/// Unlike `gds_store::write_file_atomically` the file is not fsynced: the directory is a
/// copy of the bucket that sd-sync re-checks at every start (it hashes every file), so a
/// file emptied by a power loss is fetched again at the first poll; and 10,000 fsyncs
/// would triple the time of a first full sync.
fn install_file(path: &Path, content: &[u8]) -> io::Result<()> {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("file");
    let unique = STAGED.fetch_add(1, Ordering::Relaxed);
    let staged = path.with_file_name(format!(".{name}.{}-{unique}.tmp", std::process::id()));
    let result = fs::write(&staged, content).and_then(|()| fs::rename(&staged, path));
    if result.is_err() {
        let _ = fs::remove_file(&staged);
    }
    result
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
