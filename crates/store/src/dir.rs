//! [`DirStore`]: the bucket layout in a local directory (`ENVIRONMENT=local` +
//! `TARGETS_PATH=DIR`), for a laptop or a demo where Prometheus reads the files directly.

use std::fs::{self, OpenOptions};
use std::io;
use std::path::{Path, PathBuf};

use async_trait::async_trait;
use bytes::Bytes;
use gds_targets::AppGuid;

use crate::atomic::write_file_atomically;
use crate::record::RECORD_KEY;
use crate::{ETag, StoreError, StoredCredentials, StoredTarget, TargetState, TargetStore, layout};

/// A [`TargetStore`] on the local file system: `DIR/active/<guid>.json` and
/// `DIR/inactive/<guid>.json`.
///
/// Every write is atomic (see [`write_file_atomically`]), so a Prometheus pointed at
/// `DIR/active/*.json` never reads half a file. The directories are created on first use.
#[derive(Debug, Clone)]
pub struct DirStore {
    root: PathBuf,
}

impl DirStore {
    /// A store rooted at `root`. Nothing is touched until the first call.
    pub fn new(root: impl Into<PathBuf>) -> DirStore {
        DirStore { root: root.into() }
    }

    /// The root directory.
    pub fn root(&self) -> &Path {
        &self.root
    }

    fn state_dir(&self, state: TargetState) -> PathBuf {
        self.root.join(state.dir_name())
    }

    fn path_of(&self, state: TargetState, app: &AppGuid) -> PathBuf {
        self.state_dir(state).join(layout::file_name(app))
    }

    fn credentials_dir(&self) -> PathBuf {
        self.root.join(layout::CREDENTIALS_DIR)
    }

    fn credentials_path(&self, app: &AppGuid) -> PathBuf {
        self.root.join(layout::credentials_key(app))
    }

    fn record_path(&self) -> PathBuf {
        self.root.join(RECORD_KEY)
    }
}

/// Reads a file: `Ok(None)` when it does not exist.
fn read_optional(path: &Path) -> Result<Option<(Bytes, ETag)>, StoreError> {
    match fs::read(path) {
        Ok(body) => {
            let etag = ETag::of(&body);
            Ok(Some((Bytes::from(body), etag)))
        }
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(StoreError::io(format!("reading {}", path.display()), e)),
    }
}

/// Runs blocking file-system work off the async executor.
async fn blocking<T: Send + 'static>(
    work: impl FnOnce() -> Result<T, StoreError> + Send + 'static,
) -> Result<T, StoreError> {
    tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| StoreError::io("a file-system task did not finish", io::Error::other(e)))?
}

fn create_dir(dir: &Path) -> Result<(), StoreError> {
    fs::create_dir_all(dir)
        .map_err(|e| StoreError::io(format!("creating directory {}", dir.display()), e))
}

#[async_trait]
impl TargetStore for DirStore {
    async fn write_app(
        &self,
        state: TargetState,
        app: &AppGuid,
        body: Bytes,
    ) -> Result<ETag, StoreError> {
        let dir = self.state_dir(state);
        let path = self.path_of(state, app);
        blocking(move || {
            create_dir(&dir)?;
            write_file_atomically(&path, &body)
                .map_err(|e| StoreError::io(format!("writing {}", path.display()), e))?;
            Ok(ETag::of(&body))
        })
        .await
    }

    async fn read_app(
        &self,
        state: TargetState,
        app: &AppGuid,
    ) -> Result<Option<(Bytes, ETag)>, StoreError> {
        let path = self.path_of(state, app);
        blocking(move || read_optional(&path)).await
    }

    async fn remove_app(&self, state: TargetState, app: &AppGuid) -> Result<(), StoreError> {
        let path = self.path_of(state, app);
        blocking(move || remove_optional(&path)).await
    }

    async fn write_credentials(&self, app: &AppGuid, body: Bytes) -> Result<ETag, StoreError> {
        let dir = self.credentials_dir();
        let path = self.credentials_path(app);
        blocking(move || {
            create_dir(&dir)?;
            write_file_atomically(&path, &body)
                .map_err(|e| StoreError::io(format!("writing {}", path.display()), e))?;
            Ok(ETag::of(&body))
        })
        .await
    }

    async fn read_credentials(&self, app: &AppGuid) -> Result<Option<(Bytes, ETag)>, StoreError> {
        let path = self.credentials_path(app);
        blocking(move || read_optional(&path)).await
    }

    async fn remove_credentials(&self, app: &AppGuid) -> Result<(), StoreError> {
        let path = self.credentials_path(app);
        blocking(move || remove_optional(&path)).await
    }

    async fn list_credentials(&self) -> Result<Vec<StoredCredentials>, StoreError> {
        let dir = self.credentials_dir();
        blocking(move || {
            let mut listed: Vec<StoredCredentials> =
                list_json_files(&dir, "credentials", layout::app_of_listed_credentials_name)?
                    .into_iter()
                    .map(|(app_guid, etag)| StoredCredentials { app_guid, etag })
                    .collect();
            listed.sort_by(|a, b| a.app_guid.cmp(&b.app_guid));
            Ok(listed)
        })
        .await
    }

    async fn list_apps(&self, state: TargetState) -> Result<Vec<StoredTarget>, StoreError> {
        let dir = self.state_dir(state);
        blocking(move || list_dir(&dir, state)).await
    }

    /// A rename: atomic, and the file is in exactly one of the two directories at every
    /// moment, which is even better than the copy-then-delete the trait requires.
    async fn move_app(
        &self,
        from: TargetState,
        to: TargetState,
        app: &AppGuid,
    ) -> Result<ETag, StoreError> {
        let source = self.path_of(from, app);
        let to_dir = self.state_dir(to);
        let destination = self.path_of(to, app);
        let app = app.clone();
        blocking(move || {
            let not_found = || StoreError::NotFound { state: from, app };
            if from != to {
                create_dir(&to_dir)?;
                if let Err(e) = fs::rename(&source, &destination) {
                    return Err(if e.kind() == io::ErrorKind::NotFound && !source.exists() {
                        not_found()
                    } else {
                        let context =
                            format!("moving {} to {}", source.display(), destination.display());
                        StoreError::io(context, e)
                    });
                }
            }
            match fs::read(&destination) {
                Ok(body) => Ok(ETag::of(&body)),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Err(not_found()),
                Err(e) => Err(StoreError::io(
                    format!("reading {}", destination.display()),
                    e,
                )),
            }
        })
        .await
    }

    async fn read_record(&self) -> Result<Option<(Bytes, ETag)>, StoreError> {
        let path = self.record_path();
        blocking(move || read_optional(&path)).await
    }

    /// The check and the write happen under an exclusive lock of `record/.lock`
    /// (`flock`), which every process writing the directory takes the same way.
    async fn replace_record(
        &self,
        body: Bytes,
        expected: Option<&ETag>,
    ) -> Result<Option<ETag>, StoreError> {
        let path = self.record_path();
        let expected = expected.cloned();
        blocking(move || {
            let dir = path.parent().expect("the record lives in a directory");
            create_dir(dir)?;
            let lock_path = dir.join(".lock");
            let lock = OpenOptions::new()
                .create(true)
                .truncate(false)
                .write(true)
                .open(&lock_path)
                .map_err(|e| StoreError::io(format!("opening {}", lock_path.display()), e))?;
            lock.lock()
                .map_err(|e| StoreError::io(format!("locking {}", lock_path.display()), e))?;
            let current = read_optional(&path)?.map(|(_, etag)| etag);
            if current != expected {
                return Ok(None);
            }
            write_file_atomically(&path, &body)
                .map_err(|e| StoreError::io(format!("writing {}", path.display()), e))?;
            Ok(Some(ETag::of(&body)))
            // The lock is released when `lock` is closed.
        })
        .await
    }

    async fn check(&self) -> Result<(), StoreError> {
        let root = self.root.clone();
        blocking(move || {
            create_dir(&root)?;
            let metadata = fs::metadata(&root)
                .map_err(|e| StoreError::io(format!("inspecting {}", root.display()), e))?;
            if metadata.is_dir() {
                Ok(())
            } else {
                Err(StoreError::io(
                    format!("{} is not a directory", root.display()),
                    io::ErrorKind::NotADirectory.into(),
                ))
            }
        })
        .await
    }
}

/// Lists one state directory completely or fails (see [`TargetStore::list_apps`]).
///
/// The ETag is computed by reading every file. That is fine for a laptop-sized store;
/// should it ever matter, a cache of ETags keyed by (path, mtime, length) would avoid the
/// reads.
fn list_dir(dir: &Path, state: TargetState) -> Result<Vec<StoredTarget>, StoreError> {
    let name_of = |name: &str, location: &dyn std::fmt::Display| {
        layout::app_of_listed_name(state, name, location)
    };
    let mut listed: Vec<StoredTarget> = list_json_files(dir, state.dir_name(), name_of)?
        .into_iter()
        .map(|(app_guid, etag)| StoredTarget {
            app_guid,
            state,
            etag,
        })
        .collect();
    listed.sort_by(|a, b| a.app_guid.cmp(&b.app_guid));
    Ok(listed)
}

/// Removes a file: `Ok` when it does not exist.
fn remove_optional(path: &Path) -> Result<(), StoreError> {
    match fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(StoreError::io(format!("removing {}", path.display()), e)),
    }
}

/// The `<app guid>.json` files directly in `dir` (created if missing) with their ETags,
/// unsorted; `app_of` names the app of a file name or skips it (`kind` serves the logs).
fn list_json_files(
    dir: &Path,
    kind: &str,
    app_of: impl Fn(&str, &dyn std::fmt::Display) -> Option<AppGuid>,
) -> Result<Vec<(AppGuid, ETag)>, StoreError> {
    create_dir(dir)?;
    let listing_error = |e| StoreError::io(format!("listing {}", dir.display()), e);
    let mut listed = Vec::new();
    for entry in fs::read_dir(dir).map_err(listing_error)? {
        let path = entry.map_err(listing_error)?.path();
        let Some(name) = path.file_name().and_then(|name| name.to_str()) else {
            tracing::warn!(state = kind, location = %path.display(), "skipping a file whose name is not UTF-8");
            continue;
        };
        let Some(app) = app_of(name, &path.display()) else {
            continue;
        };
        // Follows symlinks: a link to a file is a file.
        match fs::metadata(&path) {
            Ok(metadata) if metadata.is_file() => {}
            Ok(_) => {
                tracing::warn!(state = kind, location = %path.display(), "skipping an entry that is not a file");
                continue;
            }
            // Removed since read_dir: it is legitimately gone.
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(format!("inspecting {}", path.display()), e)),
        }
        match fs::read(&path) {
            Ok(body) => listed.push((app, ETag::of(&body))),
            Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
            Err(e) => return Err(StoreError::io(format!("reading {}", path.display()), e)),
        }
    }
    Ok(listed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conformance::Backend;

    /// A [`DirStore`] in a fresh temporary directory whose root does not exist yet.
    struct DirFixture {
        _tmp: tempfile::TempDir,
        store: DirStore,
    }

    fn fixture() -> DirFixture {
        let tmp = tempfile::tempdir().expect("creating a temporary directory");
        let store = DirStore::new(tmp.path().join("targets"));
        DirFixture { _tmp: tmp, store }
    }

    impl Backend for DirFixture {
        fn store(&self) -> &dyn TargetStore {
            &self.store
        }
        async fn put_raw(&self, key: &str, body: &[u8]) {
            let path = self.store.root().join(key);
            fs::create_dir_all(path.parent().unwrap()).unwrap();
            fs::write(&path, body).unwrap();
        }
        async fn exists_raw(&self, key: &str) -> bool {
            self.store.root().join(key).exists()
        }
    }

    crate::target_store_conformance_tests!(fixture());

    fn app(n: u8) -> AppGuid {
        AppGuid::parse(&format!("1cb006ee-fb05-47e1-b541-c34179ddc4{n:02x}")).unwrap()
    }

    /// Every file name under `dir`, recursively, relative to it.
    fn all_files(dir: &Path) -> Vec<String> {
        let mut found = Vec::new();
        for entry in fs::read_dir(dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                let sub = path.file_name().unwrap().to_str().unwrap().to_owned();
                found.extend(all_files(&path).into_iter().map(|f| format!("{sub}/{f}")));
            } else {
                found.push(path.file_name().unwrap().to_str().unwrap().to_owned());
            }
        }
        found.sort();
        found
    }

    #[tokio::test]
    async fn files_live_at_dir_state_guid_json() {
        let f = fixture();
        f.store
            .write_app(TargetState::Active, &app(1), "[1]".into())
            .await
            .unwrap();
        f.store
            .write_app(TargetState::Inactive, &app(2), "[2]".into())
            .await
            .unwrap();
        let root = f.store.root();
        let active = root.join("active/1cb006ee-fb05-47e1-b541-c34179ddc401.json");
        let inactive = root.join("inactive/1cb006ee-fb05-47e1-b541-c34179ddc402.json");
        assert_eq!(fs::read(active).unwrap(), b"[1]");
        assert_eq!(fs::read(inactive).unwrap(), b"[2]");
    }

    #[tokio::test]
    async fn no_staged_file_is_left_behind_after_writes_overwrites_and_moves() {
        let f = fixture();
        for n in 0..5 {
            f.store
                .write_app(TargetState::Active, &app(n), "[]".into())
                .await
                .unwrap();
        }
        f.store
            .write_app(TargetState::Active, &app(0), "[0]".into())
            .await
            .unwrap();
        f.store
            .move_app(TargetState::Active, TargetState::Inactive, &app(1))
            .await
            .unwrap();
        let files = all_files(f.store.root());
        assert_eq!(files.len(), 5, "{files:?}");
        assert!(
            files
                .iter()
                .all(|name| name.ends_with(".json") && !name.contains("/.")),
            "{files:?}"
        );
    }

    #[tokio::test]
    async fn a_failed_write_leaves_no_staged_file_and_says_where() {
        let f = fixture();
        // A directory where the app's file should be makes the rename fail.
        let blocker = f
            .store
            .root()
            .join("active")
            .join(layout::file_name(&app(7)));
        fs::create_dir_all(&blocker).unwrap();
        fs::write(blocker.join("inside"), "x").unwrap();
        let err = f
            .store
            .write_app(TargetState::Active, &app(7), "[]".into())
            .await
            .expect_err("renaming a file over a directory must fail");
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        assert!(
            err.to_string().contains(&blocker.display().to_string()),
            "{err}"
        );
        assert_eq!(
            all_files(&f.store.root().join("active")),
            [format!("{}/inside", layout::file_name(&app(7)))]
        );
    }

    #[tokio::test]
    async fn a_root_that_is_a_file_fails_the_check_naming_the_path() {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().join("not-a-dir");
        fs::write(&root, "x").unwrap();
        let err = DirStore::new(&root).check().await.unwrap_err();
        assert!(matches!(err, StoreError::Io { .. }), "{err:?}");
        assert!(err.to_string().contains("not-a-dir"), "{err}");
    }

    #[tokio::test]
    async fn the_check_creates_a_missing_root() {
        let f = fixture();
        f.store.check().await.unwrap();
        assert!(f.store.root().is_dir());
    }
}
