//! Writing a file so that no reader ever sees part of it: the one write-and-rename helper
//! of the workspace, used by [`crate::DirStore`] and by sd-sync's mirror.
//!
//! The bytes go to a staged file in the same directory ([`stage`]), whose data is flushed
//! to disk, and which is then renamed over the final path ([`StagedFile::install`]).
//!
//! Why: Prometheus' `file_sd` re-reads a file on every inotify event and keeps the old
//! targets, logging errors, while a file is truncated or half-written. A rename within
//! one directory (one file system) is atomic, so readers see the old file or the new one.
//! The staged name is [`crate::staged_file_name`]`("<pid>-<n>")`: it never ends in
//! `.json`, so the `*.json` glob never matches it; it starts with a dot; and its length
//! does not depend on the final name's. The data is on disk before the rename, so that a
//! crash cannot leave a renamed but empty or short file under the final name.

use std::fs::{self, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::layout;

/// Makes staged names unique within the process; the pid makes them unique on the host.
static STAGED: AtomicU64 = AtomicU64::new(0);

/// When a staged file's data is flushed to disk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flush {
    /// Now: one fsync(2) of the file, before [`stage`] returns.
    Now,
    /// Later, by the caller, before [`StagedFile::install`]: with [`StagedFile::flush`],
    /// or for a whole batch at once (one syncfs(2), as sd-sync does).
    Later,
}

/// A file written under its staged name beside its final path, not yet in place.
/// Dropping it without [`StagedFile::install`] leaves the staged file: call
/// [`StagedFile::discard`].
#[derive(Debug)]
#[must_use = "install or discard a staged file"]
pub struct StagedFile {
    staged: PathBuf,
    target: PathBuf,
}

/// Writes `contents` to a new staged file beside `path` (the parent directory must
/// exist), flushing it when `flush` is [`Flush::Now`]. Blocking. On error nothing is
/// left behind.
pub fn stage(path: &Path, contents: &[u8], flush: Flush) -> io::Result<StagedFile> {
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir,
        _ => Path::new("."),
    };
    if path.file_name().is_none() {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("{} has no file name", path.display()),
        ));
    }
    let (staged, mut file) = create_staged(dir)?;
    let written = file.write_all(contents).and_then(|()| match flush {
        Flush::Now => file.sync_all(),
        Flush::Later => Ok(()),
    });
    match written {
        Ok(()) => Ok(StagedFile {
            staged,
            target: path.to_owned(),
        }),
        Err(e) => {
            let _ = fs::remove_file(&staged);
            Err(e)
        }
    }
}

/// Creates a new staged file in `dir`. A name left by an earlier process with the same
/// pid (a container restarted after a crash: pid 1 again) is skipped, never reused.
fn create_staged(dir: &Path) -> io::Result<(PathBuf, fs::File)> {
    loop {
        let n = STAGED.fetch_add(1, Ordering::Relaxed);
        let name = layout::staged_file_name(&format!("{}-{n}", std::process::id()));
        let staged = dir.join(name);
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .open(&staged)
        {
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => continue,
            result => return result.map(|file| (staged, file)),
        }
    }
}

impl StagedFile {
    /// The staged file's path.
    pub fn staged_path(&self) -> &Path {
        &self.staged
    }

    /// The final path.
    pub fn target(&self) -> &Path {
        &self.target
    }

    /// Flushes the staged file's data to disk (one fsync(2)), for [`Flush::Later`].
    pub fn flush(&self) -> io::Result<()> {
        fs::File::open(&self.staged).and_then(|file| file.sync_all())
    }

    /// Renames the staged file over the final path; on error it is removed. Its data
    /// must be on disk already ([`Flush::Now`], [`StagedFile::flush`] or a syncfs). The
    /// directory is not fsynced: callers that need the new name to survive a power loss
    /// fsync it (once per batch).
    pub fn install(self) -> io::Result<()> {
        let renamed = fs::rename(&self.staged, &self.target);
        if renamed.is_err() {
            self.discard();
        }
        renamed
    }

    /// Removes the staged file (best effort: its name is invisible to Prometheus anyway).
    pub fn discard(self) {
        let _ = fs::remove_file(&self.staged);
    }
}

/// [`stage`] with [`Flush::Now`], then [`StagedFile::install`]. For the directory store
/// the directory is not fsynced: after a power loss the rename may be lost and the old
/// content come back, which is harmless because the store is derived state that the
/// updater rewrites on its next pass.
pub fn write_file_atomically(path: &Path, contents: &[u8]) -> io::Result<()> {
    stage(path, contents, Flush::Now)?.install()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all_files(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().file_name().into_string().unwrap())
            .collect();
        names.sort();
        names
    }

    #[test]
    fn write_file_atomically_replaces_a_file_and_stages_beside_it() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join("eu-west-1.json");
        fs::write(&path, "old").unwrap();
        write_file_atomically(&path, b"new content").unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"new content");
        assert_eq!(all_files(tmp.path()), ["eu-west-1.json"]);
    }

    #[test]
    fn write_file_atomically_writes_a_name_as_long_as_the_file_system_allows() {
        let tmp = tempfile::tempdir().unwrap();
        let name = format!("{}.json", "a".repeat(250));
        assert_eq!(name.len(), 255);
        write_file_atomically(&tmp.path().join(&name), b"x").unwrap();
        assert_eq!(all_files(tmp.path()), [name]);
    }

    #[test]
    fn write_file_atomically_rejects_a_path_without_a_file_name() {
        let err = write_file_atomically(Path::new("/"), b"x").unwrap_err();
        assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    }

    #[test]
    fn a_staged_file_is_named_by_the_one_rule_and_waits_until_installed() {
        let tmp = tempfile::tempdir().unwrap();
        let path = tmp.path().join(format!("{}.json", "x".repeat(250)));
        let staged = stage(&path, b"[]", Flush::Later).unwrap();
        let name = staged.staged_path().file_name().unwrap().to_str().unwrap();
        let unique = layout::unique_of_staged_file_name(name).expect("the staged-name rule");
        assert!(
            unique.starts_with(&format!("{}-", std::process::id())),
            "{name}"
        );
        assert!(name.len() < 64, "{name}");
        assert!(!path.exists(), "nothing in place before the rename");
        staged.flush().unwrap();
        staged.install().unwrap();
        assert_eq!(fs::read(&path).unwrap(), b"[]");
        assert_eq!(all_files(tmp.path()).len(), 1);
    }

    #[test]
    fn a_name_left_by_an_earlier_process_with_our_pid_is_skipped() {
        let tmp = tempfile::tempdir().unwrap();
        let next = STAGED.load(Ordering::Relaxed);
        // Whatever other tests take meanwhile, some of these names are the next ones.
        for n in next..next + 64 {
            let left = layout::staged_file_name(&format!("{}-{n}", std::process::id()));
            fs::write(tmp.path().join(left), "left by a killed run").unwrap();
        }
        write_file_atomically(&tmp.path().join("a.json"), b"new").unwrap();
        assert_eq!(fs::read(tmp.path().join("a.json")).unwrap(), b"new");
        assert_eq!(
            all_files(tmp.path()).len(),
            65,
            "the leftovers are not touched"
        );
    }

    #[test]
    fn a_discarded_or_failed_install_leaves_no_staged_file() {
        let tmp = tempfile::tempdir().unwrap();
        stage(&tmp.path().join("a.json"), b"x", Flush::Later)
            .unwrap()
            .discard();
        // A directory in the way makes the rename fail.
        fs::create_dir(tmp.path().join("b.json")).unwrap();
        fs::write(tmp.path().join("b.json/inside"), "x").unwrap();
        let staged = stage(&tmp.path().join("b.json"), b"x", Flush::Now).unwrap();
        assert!(staged.install().is_err());
        assert_eq!(all_files(tmp.path()), ["b.json"]);
    }
}
