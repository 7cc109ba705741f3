//! A repository as it was at a moment, read from the object versions of a versioned S3
//! bucket (S3 Object Lock implies versioning): for each key, the newest version written at or
//! before that moment, unless that is a delete marker. After an attacker deleted or
//! overwrote objects (delete markers, new versions), this shows what was there before.
//! Read-only: every write is refused.

use super::{Backend, ObjectInfo, ReadSeek};
use crate::{Error, Result};
use chrono::{DateTime, SecondsFormat, Utc};
use std::collections::BTreeMap;
use std::io::Cursor;

/// A read-only view of `inner` as of a moment.
pub struct AsOfBackend {
    inner: Box<dyn Backend>,
    at: DateTime<Utc>,
    /// Path → (version id, size) of every object present at `at`.
    objects: BTreeMap<String, (String, u64)>,
}

impl AsOfBackend {
    /// List every version in `inner` once and keep, per path, the one current at `at`.
    pub fn new(inner: Box<dyn Backend>, at: DateTime<Utc>) -> Result<AsOfBackend> {
        let versions = inner.versions("")?;
        // S3 lists the versions of a key newest first: the first one not after `at` is the
        // one that was current then.
        let mut seen = std::collections::HashSet::new();
        let mut objects = BTreeMap::new();
        for v in versions {
            if v.last_modified > at || seen.contains(&v.path) {
                continue;
            }
            seen.insert(v.path.clone());
            if !v.delete_marker {
                objects.insert(v.path, (v.version_id, v.size));
            }
        }
        if objects.is_empty() {
            return Err(Error::Invalid(format!(
                "{} held no objects at {} (is the bucket versioned, and the time after the repository was created?)",
                inner.location(),
                at.to_rfc3339_opts(SecondsFormat::Secs, true)
            )));
        }
        Ok(AsOfBackend { inner, at, objects })
    }

    fn read_only(&self, path: &str) -> Error {
        Error::Invalid(format!(
            "{} is read-only: it is the repository as of a past moment (not writing {path})",
            self.location()
        ))
    }

    fn version(&self, path: &str) -> Result<&str> {
        self.objects
            .get(path)
            .map(|(v, _)| v.as_str())
            .ok_or_else(|| Error::NotFound {
                object: path.to_string(),
            })
    }
}

impl Backend for AsOfBackend {
    fn location(&self) -> String {
        format!(
            "{} as of {}",
            self.inner.location(),
            self.at.to_rfc3339_opts(SecondsFormat::Secs, true)
        )
    }

    fn put(&self, path: &str, _bytes: &[u8]) -> Result<()> {
        Err(self.read_only(path))
    }

    fn replace(&self, path: &str, _bytes: &[u8]) -> Result<()> {
        Err(self.read_only(path))
    }

    fn put_new(&self, path: &str, _bytes: &[u8]) -> Result<bool> {
        Err(self.read_only(path))
    }

    fn get(&self, path: &str) -> Result<Vec<u8>> {
        let version = self.version(path)?;
        self.inner.get_version(path, version)
    }

    fn open(&self, path: &str) -> Result<Box<dyn ReadSeek>> {
        Ok(Box::new(Cursor::new(self.get(path)?)))
    }

    fn exists(&self, path: &str) -> Result<bool> {
        Ok(self.objects.contains_key(path))
    }

    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>> {
        let dir = format!("{}/", prefix.trim_end_matches('/'));
        Ok(self
            .objects
            .range(dir.clone()..)
            .take_while(|(p, _)| p.starts_with(&dir))
            .map(|(p, (_, size))| ObjectInfo {
                path: p.clone(),
                size: *size,
            })
            .collect())
    }

    fn delete(&self, path: &str) -> Result<()> {
        Err(self.read_only(path))
    }

    fn set_write_lock(&self, _lock: Option<super::WriteLock>) -> Result<()> {
        Ok(()) // nothing is written
    }

    fn is_remote(&self) -> bool {
        self.inner.is_remote()
    }
}
