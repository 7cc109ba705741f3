//! A local cache of a remote repository's metadata: key objects, index objects, snapshots and
//! tree packs. Without it, every backup to S3 downloads the whole index and snapshot history
//! and the parent snapshot's trees again.
//!
//! Only content-addressed objects are cached (their name is the blake3 of their bytes), so a
//! cached copy is either exactly the remote object or detectably wrong: every read hashes the
//! file and falls back to the remote on a mismatch. The cache is best-effort: a failure to
//! read or write it is logged and never fails an operation. Listings always come from the
//! remote; after listing a cached directory, entries the remote no longer holds are removed.
//! Entries unused for [`UNUSED_EXPIRY`] are removed when the cache is opened.
//!
//! `check` and `repair` must not use the cache: they audit the remote itself.

use super::{Backend, ObjectInfo, ReadSeek};
use crate::Result;
use cairn_format::id::Id;
use std::collections::HashSet;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Cursor, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, SystemTime};

/// Directories whose objects are cached.
const CACHED_DIRS: [&str; 4] = ["keys", "index", "snapshots", "tree"];
/// Cached objects not read or written for this long are removed.
pub const UNUSED_EXPIRY: Duration = Duration::from_secs(30 * 24 * 3600);
/// Temporary files older than this are left over from killed writers.
const STALE_TEMP: Duration = Duration::from_secs(3600);

/// A backend that keeps copies of metadata objects of `inner` in a local directory.
pub struct CachedBackend {
    inner: Box<dyn Backend>,
    dir: PathBuf,
    warned: AtomicBool,
}

impl CachedBackend {
    /// Cache `inner`'s metadata in `dir` (created on first write, mode 0700), removing entries
    /// unused for `UNUSED_EXPIRY`.
    pub fn new(inner: Box<dyn Backend>, dir: PathBuf) -> CachedBackend {
        let cache = CachedBackend {
            inner,
            dir,
            warned: AtomicBool::new(false),
        };
        cache.expire();
        cache
    }

    /// The cache file of `path`, if `path` names a cacheable object.
    fn file(&self, path: &str) -> Option<PathBuf> {
        let (dir, rest) = path.split_once('/')?;
        if !CACHED_DIRS.contains(&dir) {
            return None;
        }
        let name = rest.rsplit('/').next()?;
        name.parse::<Id>().ok()?;
        if rest.split('/').any(|c| c.is_empty() || c.starts_with('.')) {
            return None;
        }
        Some(self.dir.join(path))
    }

    fn warn(&self, what: &str, file: &Path, e: &io::Error) {
        if !self.warned.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "metadata cache: {what} {} failed: {e} (continuing without it; --no-cache silences this)",
                file.display()
            );
        } else {
            tracing::debug!("metadata cache: {what} {} failed: {e}", file.display());
        }
    }

    /// The cached bytes of `path`, if present and intact.
    fn load(&self, path: &str, file: &Path) -> Option<Vec<u8>> {
        let bytes = match fs::read(file) {
            Ok(b) => b,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return None,
            Err(e) => {
                self.warn("reading", file, &e);
                return None;
            }
        };
        let name = path.rsplit('/').next().unwrap_or_default();
        if Id::of_object(&bytes).to_hex() != name {
            tracing::warn!(
                "metadata cache: {} does not match its name; removed, reading {path} from the repository",
                file.display()
            );
            let _ = fs::remove_file(file);
            return None;
        }
        // Mark it used, for expiry.
        if let Ok(f) = File::options().write(true).open(file) {
            let _ = f.set_modified(SystemTime::now());
        }
        tracing::trace!("metadata cache hit: {path}");
        Some(bytes)
    }

    /// Keep a copy of `bytes` (already known to be `path`'s content) if it matches its name.
    fn store(&self, path: &str, file: &Path, bytes: &[u8]) {
        let name = path.rsplit('/').next().unwrap_or_default();
        if Id::of_object(bytes).to_hex() != name {
            return; // damaged remote object: never cache it
        }
        if let Err(e) = write_atomic(file, bytes) {
            self.warn("writing", file, &e);
        }
    }

    fn fetch(&self, path: &str) -> Result<Vec<u8>> {
        let Some(file) = self.file(path) else {
            return self.inner.get(path);
        };
        if let Some(bytes) = self.load(path, &file) {
            return Ok(bytes);
        }
        let bytes = self.inner.get(path)?;
        self.store(path, &file, &bytes);
        Ok(bytes)
    }

    /// Remove cached objects of directory `dir` that `listed` no longer holds.
    fn sweep(&self, dir: &str, listed: &[ObjectInfo]) {
        let root = self.dir.join(dir);
        if !root.exists() {
            return;
        }
        let keep: HashSet<PathBuf> = listed.iter().map(|o| self.dir.join(&o.path)).collect();
        walk(&root, &mut |file, _| {
            if !keep.contains(file) && !is_recent_temp(file) {
                tracing::debug!("metadata cache: removing {}", file.display());
                let _ = fs::remove_file(file);
            }
        });
    }

    /// Remove entries unused for [`UNUSED_EXPIRY`] and stale temporary files.
    fn expire(&self) {
        let now = SystemTime::now();
        for dir in CACHED_DIRS {
            walk(&self.dir.join(dir), &mut |file, meta| {
                let age = meta
                    .modified()
                    .ok()
                    .and_then(|m| now.duration_since(m).ok())
                    .unwrap_or_default();
                let temp = file_name(file).starts_with(".tmp-");
                if age > UNUSED_EXPIRY || (temp && age > STALE_TEMP) {
                    let _ = fs::remove_file(file);
                }
            });
        }
    }
}

fn file_name(file: &Path) -> &str {
    file.file_name().and_then(|n| n.to_str()).unwrap_or("")
}

fn is_recent_temp(file: &Path) -> bool {
    file_name(file).starts_with(".tmp-")
        && fs::metadata(file)
            .and_then(|m| m.modified())
            .ok()
            .and_then(|m| SystemTime::now().duration_since(m).ok())
            .is_some_and(|age| age < STALE_TEMP)
}

/// Call `f` for every regular file below `dir` (absent directories have none).
fn walk(dir: &Path, f: &mut dyn FnMut(&Path, &fs::Metadata)) {
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let Ok(meta) = entry.metadata() else { continue };
        if meta.is_dir() {
            walk(&path, f);
        } else if meta.is_file() {
            f(&path, &meta);
        }
    }
}

/// Write `bytes` to `file` through a temporary file and a rename, so readers never see a
/// partial entry. No fsync: a torn entry after a crash fails its hash check and is refetched.
fn write_atomic(file: &Path, bytes: &[u8]) -> io::Result<()> {
    use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
    let dir = file.parent().expect("cache files live in a directory");
    fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)?;
    let tmp = dir.join(format!(".tmp-{:016x}", rand::random::<u64>()));
    let result = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut f| f.write_all(bytes))
        .and_then(|()| fs::rename(&tmp, file));
    if result.is_err() {
        let _ = fs::remove_file(&tmp);
    }
    result
}

impl Backend for CachedBackend {
    fn location(&self) -> String {
        self.inner.location()
    }

    fn put(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.inner.put(path, bytes)?;
        if let Some(file) = self.file(path) {
            self.store(path, &file, bytes);
        }
        Ok(())
    }

    fn put_owned(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        match self.file(path) {
            Some(file) => {
                self.inner.put(path, &bytes)?;
                self.store(path, &file, &bytes);
                Ok(())
            }
            None => self.inner.put_owned(path, bytes),
        }
    }

    fn parallel_writes(&self) -> usize {
        self.inner.parallel_writes()
    }

    fn replace(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.inner.replace(path, bytes)
    }

    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<bool> {
        self.inner.put_new(path, bytes)
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        self.fetch(path)
    }

    fn open(&self, path: &str) -> Result<Box<dyn ReadSeek>> {
        if self.file(path).is_some() {
            return Ok(Box::new(Cursor::new(self.fetch(path)?)));
        }
        self.inner.open(path)
    }

    fn open_range(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> Result<(Box<dyn std::io::Read + Send>, u64)> {
        if self.file(path).is_some() {
            return super::range_of(self.open(path)?, path, range);
        }
        self.inner.open_range(path, range)
    }

    fn exists(&self, path: &str) -> Result<bool> {
        self.inner.exists(path)
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let listed = self.inner.list(prefix)?;
        let dir = prefix.trim_matches('/');
        if CACHED_DIRS.contains(&dir) {
            self.sweep(dir, &listed);
        }
        Ok(listed)
    }

    fn incomplete(&self, age: Duration) -> Result<Vec<(String, Duration)>> {
        self.inner.incomplete(age)
    }

    fn delete(&self, path: &str) -> Result<()> {
        self.inner.delete(path)?;
        if let Some(file) = self.file(path) {
            let _ = fs::remove_file(file);
        }
        Ok(())
    }

    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }

    fn bucket_object_lock(&self) -> Result<Option<bool>> {
        self.inner.bucket_object_lock()
    }

    fn set_write_lock(&self, lock: Option<super::WriteLock>) -> Result<()> {
        self.inner.set_write_lock(lock)
    }

    fn retention(&self, path: &str) -> Result<Option<super::Retention>> {
        self.inner.retention(path)
    }

    fn set_retention(&self, path: &str, retention: super::Retention) -> Result<()> {
        self.inner.set_retention(path, retention)
    }

    fn versions(&self, dir: &str) -> Result<Vec<super::ObjectVersion>> {
        self.inner.versions(dir)
    }

    fn get_version(&self, path: &str, version_id: &str) -> Result<Vec<u8>> {
        self.inner.get_version(path, version_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;

    fn setup() -> (tempfile::TempDir, CachedBackend, LocalBackend) {
        let t = tempfile::tempdir().unwrap();
        let remote = LocalBackend::new(t.path().join("repo"));
        let cached = CachedBackend::new(
            Box::new(LocalBackend::new(t.path().join("repo"))),
            t.path().join("cache"),
        );
        (t, cached, remote)
    }

    fn obj(bytes: &[u8]) -> String {
        format!("index/{}", Id::of_object(bytes))
    }

    #[test]
    fn reads_come_from_the_cache_after_the_first() {
        let (t, cached, remote) = setup();
        let bytes = b"index object".to_vec();
        let path = obj(&bytes);
        remote.put(&path, &bytes).unwrap();
        assert_eq!(cached.get(&path).unwrap(), bytes);
        assert!(t.path().join("cache").join(&path).is_file());
        // Gone from the "remote": still served (the listing decides what is read).
        remote.delete(&path).unwrap();
        assert_eq!(cached.get(&path).unwrap(), bytes);
    }

    #[test]
    fn a_damaged_entry_is_refetched_and_a_damaged_remote_object_never_cached() {
        let (t, cached, remote) = setup();
        let bytes = b"snapshot".to_vec();
        let path = format!("snapshots/{}", Id::of_object(&bytes));
        cached.put(&path, &bytes).unwrap();
        let file = t.path().join("cache").join(&path);
        fs::write(&file, b"snapshoT").unwrap();
        assert_eq!(
            cached.get(&path).unwrap(),
            bytes,
            "refetched from the repository"
        );
        assert_eq!(fs::read(&file).unwrap(), bytes, "entry rewritten");

        let bad = format!("snapshots/{}", Id::of_object(b"other"));
        remote.put(&bad, b"not other").unwrap();
        assert_eq!(cached.get(&bad).unwrap(), b"not other");
        assert!(!t.path().join("cache").join(&bad).exists());
    }

    #[test]
    fn listing_sweeps_objects_the_repository_lost_and_uncached_paths_pass_through() {
        let (t, cached, remote) = setup();
        let (a, b) = (b"a".to_vec(), b"b".to_vec());
        cached.put(&obj(&a), &a).unwrap();
        cached.put(&obj(&b), &b).unwrap();
        remote.delete(&obj(&a)).unwrap();
        let listed = cached.list("index").unwrap();
        assert_eq!(listed.len(), 1);
        assert!(!t.path().join("cache").join(obj(&a)).exists());
        assert!(t.path().join("cache").join(obj(&b)).exists());

        cached.put("config", b"cfg").unwrap();
        cached.put("locks/prune", b"lease").unwrap();
        let data = format!("data/00/{}", Id::of_object(b"d"));
        cached.put(&data, b"d").unwrap();
        for p in ["config", "locks", "data"] {
            assert!(!t.path().join("cache").join(p).exists(), "{p} cached");
        }
    }

    #[test]
    fn entries_unused_for_the_expiry_are_removed_on_open() {
        let (t, cached, _remote) = setup();
        let (a, b) = (b"old".to_vec(), b"new".to_vec());
        cached.put(&obj(&a), &a).unwrap();
        cached.put(&obj(&b), &b).unwrap();
        let old = t.path().join("cache").join(obj(&a));
        File::options()
            .write(true)
            .open(&old)
            .unwrap()
            .set_modified(SystemTime::now() - UNUSED_EXPIRY - Duration::from_secs(60))
            .unwrap();
        drop(cached);
        let _reopened = CachedBackend::new(
            Box::new(LocalBackend::new(t.path().join("repo"))),
            t.path().join("cache"),
        );
        assert!(!old.exists());
        assert!(t.path().join("cache").join(obj(&b)).exists());
    }
}
