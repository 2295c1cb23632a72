//! The file-system half of a mirror: the mapping's directory. Staging checked objects
//! and installing them in batches (atomically and durably, see below), removing files,
//! cleaning up after a killed run, and indexing what is installed at start.
//!
//! Only regular files with a managed name are ever replaced or removed: never a symlink
//! (whose target may be anywhere) nor a directory.

use std::collections::BTreeMap;
use std::fs;
use std::io;
use std::path::Path;

use gds_store::atomic::{self, Flush, StagedFile};
use gds_store::{Bytes, ETag};

use crate::filesd::{is_managed_name, parse_file_sd};
use crate::plan::Entry;

/// Batches of at least this many files are flushed with one syncfs(2) rather than one
/// fsync(2) per file.
pub(crate) const SYNCFS_BATCH: usize = 16;

/// A checked object in its staged file, waiting for its batch's rename into place.
pub(crate) struct Staged {
    pub name: String,
    /// `.staged-<pid>-<n>.tmp` in the mapping's directory.
    pub file: StagedFile,
    pub entry: Entry,
}

/// What committing a batch of staged files did.
pub(crate) struct Committed {
    /// Each file: renamed into place, or why not (its staged file is removed).
    pub files: Vec<(String, Entry, io::Result<()>)>,
    /// The directory's fsync after the renames, when there were any.
    pub dir_synced: io::Result<()>,
}

// Installing a file, and why it is safe.
//
// A file is installed in two steps, with gds-store's one write-and-rename helper
// ([`gds_store::atomic`]). [`stage`] writes the content to a staged file in the same
// directory, `.staged-<pid>-<n>.tmp` (gds-store's rule, [`gds_store::staged_file_name`]),
// whose name Prometheus' `*.json` glob never matches and whose length does not depend on
// the final name's (a 255-byte object name must not make its staged name too long); its
// data is flushed later ([`Flush::Later`]). [`commit`] then takes a batch of staged files,
// flushes their data to disk, renames each into place and fsyncs the directory once.
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

/// Writes `content` to a new staged file next to `path`. Nothing is left if writing
/// fails. The data is flushed by [`commit`].
pub(crate) fn stage(path: &Path, content: &[u8]) -> io::Result<StagedFile> {
    atomic::stage(path, content, Flush::Later)
}

/// Installs a batch of staged files in `dir`: flushes their data to disk (one syncfs for
/// a large batch, one fsync per file for a small one), renames each into place if its
/// name is still a regular file or free, then fsyncs `dir` once. A staged file that is
/// not installed is removed.
pub(crate) fn commit(dir: &Path, batch: Vec<Staged>) -> Committed {
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
        Ok(_) => batch.iter().map(|staged| staged.file.flush()).collect(),
    };
    let mut renamed = false;
    let files = batch
        .into_iter()
        .zip(flushed)
        .map(|(Staged { name, file, entry }, flushed)| {
            let result = match flushed.and_then(|()| check_replaceable(file.target())) {
                Ok(()) => file.install(),
                Err(e) => {
                    file.discard();
                    Err(e)
                }
            };
            renamed |= result.is_ok();
            (name, entry, result)
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
pub(crate) fn is_staged_name(name: &str) -> bool {
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
pub(crate) fn remove_staged_files(dir: &Path) {
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
pub(crate) fn check_replaceable(path: &Path) -> io::Result<()> {
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
pub(crate) fn remove_managed_file(dir: &Path, name: &str) -> io::Result<()> {
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
pub(crate) fn seed_index(dir: &Path) -> io::Result<BTreeMap<String, Entry>> {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn group(app: &str) -> String {
        format!(r#"[{{"targets": ["{app}.example.com"], "labels": {{"job": "{app}"}}}}]"#)
    }

    #[test]
    fn staged_names_are_recognised_and_short_whatever_the_final_name() {
        let dir = tempfile::tempdir().unwrap();
        for final_name in ["x.json".to_string(), format!("{}.json", "x".repeat(250))] {
            let staged = stage(&dir.path().join(&final_name), b"[]").unwrap();
            let name = staged
                .staged_path()
                .file_name()
                .unwrap()
                .to_str()
                .unwrap()
                .to_owned();
            staged.discard();
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
                    file: stage(&dir.path().join(name), group(name).as_bytes()).unwrap(),
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
                .filter(|(_, _, result)| result.is_err())
                .map(|(name, _, _)| name.as_str())
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
}
