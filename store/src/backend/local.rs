//! Local disk and NFS: a directory tree, one file per object.
//!
//! Writes go to a temporary name in the destination directory, are fsynced, renamed into
//! place, and the directory is fsynced, so a crash or a full disk never leaves a partial object
//! under its final name. No advisory locks (`flock` is unreliable on NFS).
//!
//! Staged objects (packs, written as they are made) go to a temporary file in the directory
//! they are committed below (`data/.tmp-staged-…`), with early writeback as they grow; the
//! commit fsyncs the file, hard-links it under its name (a create: a name already taken is
//! kept), fsyncs that directory and removes the temporary name.

use super::{Backend, ObjectInfo, ReadSeek, StagedObject};
use crate::writeback::start_writeback;
use crate::{Error, Result};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};

/// A repository in a local (or NFS-mounted) directory.
pub struct LocalBackend {
    root: PathBuf,
}

impl LocalBackend {
    /// A backend rooted at `root` (not created until the first write).
    pub fn new(root: impl Into<PathBuf>) -> Self {
        LocalBackend { root: root.into() }
    }

    fn full(&self, path: &str) -> PathBuf {
        self.root.join(path)
    }

    /// Write `bytes` to a fresh temporary file beside `dest` and fsync it.
    fn write_temp(&self, dest: &Path, bytes: &[u8]) -> io::Result<PathBuf> {
        let dir = dest.parent().unwrap_or(&self.root);
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("obj");
        let (tmp, mut f) = create_temp(dir, name)?;
        match f.write_all(bytes).and_then(|()| f.sync_all()) {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

/// Create `dir` and its missing ancestors; each directory created is made durable in its
/// parent (fsync), so an object named in it is found there after a crash.
fn ensure_dir(dir: &Path) -> io::Result<()> {
    if dir.is_dir() {
        return Ok(());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty());
    if let Some(parent) = parent {
        ensure_dir(parent)?;
    }
    match fs::create_dir(dir) {
        Ok(()) => {}
        // Made meanwhile by another writer: synced here too, before anything is named in it.
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists && dir.is_dir() => {}
        Err(e) => return Err(e),
    }
    parent.map_or(Ok(()), sync_dir)
}

/// A fresh temporary file `.tmp-<name>-<random>` in `dir` (created if missing).
fn create_temp(dir: &Path, name: &str) -> io::Result<(PathBuf, File)> {
    ensure_dir(dir)?;
    let tmp = dir.join(format!(".tmp-{}-{:016x}", name, rand::random::<u64>()));
    let f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
    Ok((tmp, f))
}

/// Give the (fsynced) file `tmp` the name `dest` unless that is taken, and fsync `dest`'s
/// directory; false if the name was taken. link(2) fails if the destination exists,
/// atomically, also on NFS. The temporary name stays.
fn link_new(tmp: &Path, dest: &Path) -> io::Result<bool> {
    let dir = dest.parent().unwrap_or(Path::new("."));
    ensure_dir(dir)?;
    match fs::hard_link(tmp, dest) {
        Ok(()) => sync_dir(dir).map(|()| true),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(e),
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
}

/// Bytes a staged object writes between requests to start writing them out: the fsync at
/// its commit then has little left to do.
const WRITEBACK_STEP: u64 = 4 << 20;

/// A local object being written ([`Backend::stage`]): a temporary file, removed on drop.
struct LocalStaged {
    root: PathBuf,
    file: File,
    tmp: PathBuf,
    /// `tmp` relative to the root, for messages.
    name: String,
    written: u64,
    /// Where the bytes not yet sent to writeback start.
    writeback_from: u64,
}

impl Write for LocalStaged {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let n = self.file.write(buf)?;
        self.written += n as u64;
        let pending = self.written - self.writeback_from;
        if pending >= WRITEBACK_STEP {
            start_writeback(&self.file, self.writeback_from, pending);
            self.writeback_from = self.written;
        }
        Ok(n)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.file.flush()
    }
}

impl StagedObject for LocalStaged {
    fn temporary(&self) -> &str {
        &self.name
    }

    fn commit(self: Box<Self>, path: &str) -> Result<()> {
        // Not Error::io: a temporary gone (NotFound) is a failed write, not a missing object.
        let failed = |cause| Error::Io {
            op: "writing",
            object: format!("{path} (from its temporary file {})", self.name),
            cause,
        };
        self.file.sync_all().map_err(failed)?;
        link_new(&self.tmp, &self.root.join(path)).map_err(failed)?;
        Ok(())
    }
}

impl Drop for LocalStaged {
    fn drop(&mut self) {
        let _ = fs::remove_file(&self.tmp);
    }
}

impl Backend for LocalBackend {
    fn location(&self) -> String {
        self.root.display().to_string()
    }

    fn put(&self, path: &str, bytes: &[u8]) -> Result<()> {
        let dest = self.full(path);
        let tmp = self
            .write_temp(&dest, bytes)
            .map_err(|e| Error::io("writing", path, e))?;
        let dir = dest.parent().unwrap_or(&self.root);
        fs::rename(&tmp, &dest)
            .and_then(|()| sync_dir(dir))
            .map_err(|e| {
                let _ = fs::remove_file(&tmp);
                Error::io("writing", path, e)
            })
    }

    fn replace(&self, path: &str, bytes: &[u8]) -> Result<()> {
        self.put(path, bytes)
    }

    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<bool> {
        let dest = self.full(path);
        let tmp = self
            .write_temp(&dest, bytes)
            .map_err(|e| Error::io("writing", path, e))?;
        let linked = link_new(&tmp, &dest);
        let _ = fs::remove_file(&tmp);
        linked.map_err(|e| Error::io("writing", path, e))
    }

    fn stage(&self, dir: &str) -> Result<Option<Box<dyn StagedObject>>> {
        let dir = dir.trim_matches('/');
        let (tmp, file) = create_temp(&self.full(dir), "staged")
            .map_err(|e| Error::io("creating a temporary file in", dir, e))?;
        let file_name = tmp.file_name().map(|n| n.to_string_lossy().into_owned());
        Ok(Some(Box::new(LocalStaged {
            root: self.root.clone(),
            file,
            name: format!("{dir}/{}", file_name.unwrap_or_default()),
            tmp,
            written: 0,
            writeback_from: 0,
        })))
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        fs::read(self.full(path)).map_err(|e| Error::io("reading", path, e))
    }

    fn get_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<()> {
        use std::io::Read;
        buf.clear();
        File::open(self.full(path))
            .and_then(|mut f| f.read_to_end(buf))
            .map(drop)
            .map_err(|e| Error::io("reading", path, e))
    }

    fn open(&self, path: &str) -> Result<Box<dyn ReadSeek>> {
        let f = File::open(self.full(path)).map_err(|e| Error::io("opening", path, e))?;
        Ok(Box::new(io::BufReader::with_capacity(64 << 10, f)))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        self.full(path)
            .try_exists()
            .map_err(|e| Error::io("checking", path, e))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let mut out = Vec::new();
        let base = self.full(prefix);
        let mut stack = vec![(base, prefix.trim_end_matches('/').to_string())];
        while let Some((dir, rel)) = stack.pop() {
            let entries = match fs::read_dir(&dir) {
                Ok(e) => e,
                Err(e) if e.kind() == io::ErrorKind::NotFound => continue,
                Err(e) => return Err(Error::io("listing", rel, e)),
            };
            for entry in entries {
                let entry = entry.map_err(|e| Error::io("listing", rel.clone(), e))?;
                let name = entry.file_name().to_string_lossy().into_owned();
                // Incomplete writes, and NFS's "silly renames" of files deleted while open.
                if name.starts_with(".tmp-") || name.starts_with(".nfs") {
                    continue;
                }
                let child = if rel.is_empty() {
                    name
                } else {
                    format!("{rel}/{name}")
                };
                let meta = entry
                    .metadata()
                    .map_err(|e| Error::io("listing", child.clone(), e))?;
                if meta.is_dir() {
                    stack.push((entry.path(), child));
                } else {
                    out.push(ObjectInfo {
                        path: child,
                        size: meta.len(),
                    });
                }
            }
        }
        out.sort_by(|a, b| a.path.cmp(&b.path));
        Ok(out)
    }

    fn incomplete(&self, age: std::time::Duration) -> Result<Vec<(String, std::time::Duration)>> {
        let mut found = Vec::new();
        let mut stack = vec![self.root.clone()];
        while let Some(dir) = stack.pop() {
            let Ok(entries) = fs::read_dir(&dir) else {
                continue;
            };
            for entry in entries.flatten() {
                let Ok(meta) = entry.metadata() else { continue };
                if meta.is_dir() {
                    stack.push(entry.path());
                    continue;
                }
                let elapsed = meta.modified().ok().and_then(|m| m.elapsed().ok());
                let name = entry.file_name().to_string_lossy().into_owned();
                match (name.starts_with(".tmp-"), elapsed) {
                    (true, Some(e)) if e >= age => {
                        let path = entry.path();
                        let rel = path.strip_prefix(&self.root).unwrap_or(&path);
                        found.push((rel.to_string_lossy().into_owned(), e));
                    }
                    _ => {}
                }
            }
        }
        Ok(found)
    }

    fn delete(&self, path: &str) -> Result<()> {
        match fs::remove_file(self.full(path)) {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(Error::io("deleting", path, e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Seek, SeekFrom};

    #[test]
    fn put_get_list_and_exclusive_create() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.put("data/ab/abcd", b"hello").unwrap();
        b.put("snapshots/1", b"s").unwrap();
        assert_eq!(b.get("data/ab/abcd").unwrap(), b"hello");
        let listed = b.list("data").unwrap();
        assert_eq!(
            listed,
            vec![ObjectInfo {
                path: "data/ab/abcd".into(),
                size: 5
            }]
        );
        assert!(b.put_new("config", b"one").unwrap());
        assert!(!b.put_new("config", b"two").unwrap());
        assert_eq!(b.get("config").unwrap(), b"one");
        let mut r = b.open("data/ab/abcd").unwrap();
        r.seek(SeekFrom::Start(1)).unwrap();
        let mut s = String::new();
        r.read_to_string(&mut s).unwrap();
        assert_eq!(s, "ello");
        assert!(matches!(b.get("nope"), Err(Error::NotFound { .. })));
        b.delete("snapshots/1").unwrap();
        b.delete("snapshots/1").unwrap();
        assert!(!b.exists("snapshots/1").unwrap());
        // No temporary files are left behind.
        let names: Vec<_> = fs::read_dir(dir.path().join("data/ab")).unwrap().collect();
        assert_eq!(names.len(), 1);
    }

    fn stage_dir(dir: &Path) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(dir)
            .map(|d| {
                d.flatten()
                    .map(|e| e.file_name().to_string_lossy().into_owned())
                    .collect()
            })
            .unwrap_or_default();
        names.sort();
        names
    }

    #[test]
    fn a_staged_object_is_named_on_commit_and_gone_when_dropped() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let mut s = b.stage("data").unwrap().unwrap();
        assert!(
            s.temporary().starts_with("data/.tmp-staged-"),
            "{}",
            s.temporary()
        );
        // More than one writeback step, in pieces.
        let bytes: Vec<u8> = (0..(9 << 20)).map(|i| (i % 251) as u8).collect();
        for piece in bytes.chunks(100_000) {
            s.write_all(piece).unwrap();
        }
        // Hidden from listings while written.
        assert!(b.list("data").unwrap().is_empty());
        s.commit("data/ab/abcd").unwrap();
        assert_eq!(b.get("data/ab/abcd").unwrap(), bytes);
        assert_eq!(stage_dir(&dir.path().join("data")), ["ab"]);

        let mut s = b.stage("data").unwrap().unwrap();
        s.write_all(b"partial").unwrap();
        let tmp = dir.path().join(s.temporary());
        assert!(tmp.is_file());
        drop(s);
        assert!(!tmp.exists());
        assert_eq!(stage_dir(&dir.path().join("data")), ["ab"]);
        assert_eq!(b.list("data").unwrap().len(), 1);
    }

    #[test]
    fn a_staged_commit_keeps_an_object_already_named() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        b.put("tree/cd/cdef", b"first").unwrap();
        let mut s = b.stage("tree").unwrap().unwrap();
        s.write_all(b"second").unwrap();
        s.commit("tree/cd/cdef").unwrap();
        // A create, never a replacement (a write key adds, it never overwrites).
        assert_eq!(b.get("tree/cd/cdef").unwrap(), b"first");
        assert_eq!(stage_dir(&dir.path().join("tree")), ["cd"]);
        assert_eq!(stage_dir(&dir.path().join("tree/cd")), ["cdef"]);
    }

    #[test]
    fn a_staged_object_that_fails_leaves_nothing_under_its_name() {
        let dir = tempfile::tempdir().unwrap();
        let b = LocalBackend::new(dir.path());
        let mut s = b.stage("data").unwrap().unwrap();
        s.write_all(&[7; 100_000]).unwrap();
        // Its temporary removed under it (as a prune's removal of incomplete writes would):
        // the commit fails, naming the object, and nothing appears under the name.
        fs::remove_file(dir.path().join(s.temporary())).unwrap();
        let err = s.commit("data/ef/ef01").unwrap_err();
        assert!(err.to_string().contains("data/ef/ef01"), "{err}");
        assert!(!b.exists("data/ef/ef01").unwrap());
        assert_eq!(stage_dir(&dir.path().join("data")), ["ef"]);
        assert!(stage_dir(&dir.path().join("data/ef")).is_empty());

        // A repository that cannot be written: staging fails, naming the directory.
        let file = dir.path().join("not-a-dir");
        fs::write(&file, b"x").unwrap();
        let err = LocalBackend::new(&file).stage("data").err().unwrap();
        assert!(err.to_string().contains("data"), "{err}");
    }
}
