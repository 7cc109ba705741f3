//! Local disk and NFS: a directory tree, one file per object.
//!
//! Writes go to a temporary name in the destination directory, are fsynced, renamed into
//! place, and the directory is fsynced, so a crash or a full disk never leaves a partial object
//! under its final name. No advisory locks (`flock` is unreliable on NFS).

use super::{Backend, ObjectInfo, ReadSeek};
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
        fs::create_dir_all(dir)?;
        let name = dest.file_name().and_then(|n| n.to_str()).unwrap_or("obj");
        let tmp = dir.join(format!(".tmp-{}-{:016x}", name, rand::random::<u64>()));
        let result = (|| {
            let mut f = OpenOptions::new().write(true).create_new(true).open(&tmp)?;
            f.write_all(bytes)?;
            f.sync_all()
        })();
        match result {
            Ok(()) => Ok(tmp),
            Err(e) => {
                let _ = fs::remove_file(&tmp);
                Err(e)
            }
        }
    }
}

fn sync_dir(dir: &Path) -> io::Result<()> {
    File::open(dir)?.sync_all()
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
        // link(2) fails if the destination exists, atomically, also on NFS.
        let linked = fs::hard_link(&tmp, &dest);
        let _ = fs::remove_file(&tmp);
        match linked {
            Ok(()) => {
                let dir = dest.parent().unwrap_or(&self.root);
                sync_dir(dir).map_err(|e| Error::io("writing", path, e))?;
                Ok(true)
            }
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
            Err(e) => Err(Error::io("writing", path, e)),
        }
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
                if name.starts_with(".tmp-") {
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

    fn remove_incomplete(&self, age: std::time::Duration) -> Result<u64> {
        let mut removed = 0;
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
                let old = meta
                    .modified()
                    .ok()
                    .and_then(|m| m.elapsed().ok())
                    .is_some_and(|e| e >= age);
                if entry.file_name().to_string_lossy().starts_with(".tmp-") && old {
                    fs::remove_file(entry.path()).map_err(|e| {
                        Error::io("deleting", entry.path().display().to_string(), e)
                    })?;
                    removed += 1;
                }
            }
        }
        Ok(removed)
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
}
