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

    /// One ranged, streamed request for the version current at the moment (restore reads a
    /// pack's spans so, instead of the whole pack per group of spans).
    fn open_range(
        &self,
        path: &str,
        range: std::ops::Range<u64>,
    ) -> Result<(Box<dyn std::io::Read + Send>, u64)> {
        let (version, size) = self.objects.get(path).ok_or_else(|| Error::NotFound {
            object: path.to_string(),
        })?;
        let range = range.start.min(*size)..range.end.min(*size);
        let (reader, _) = self.inner.open_version_range(path, version, range)?;
        Ok((reader, *size))
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::ObjectVersion;
    use std::collections::HashMap;

    /// A versioned bucket in memory: its versions (each key's newest first) and their bytes.
    struct Bucket {
        versions: Vec<ObjectVersion>,
        bytes: HashMap<String, Vec<u8>>,
    }

    fn refuse() -> Error {
        Error::Invalid("not in this test".into())
    }

    impl Backend for Bucket {
        fn location(&self) -> String {
            "s3://test".into()
        }
        fn put(&self, _: &str, _: &[u8]) -> Result<()> {
            Err(refuse())
        }
        fn replace(&self, _: &str, _: &[u8]) -> Result<()> {
            Err(refuse())
        }
        fn put_new(&self, _: &str, _: &[u8]) -> Result<bool> {
            Err(refuse())
        }
        fn get(&self, _: &str) -> Result<Vec<u8>> {
            Err(refuse())
        }
        fn open(&self, _: &str) -> Result<Box<dyn ReadSeek>> {
            Err(refuse())
        }
        fn exists(&self, _: &str) -> Result<bool> {
            Err(refuse())
        }
        fn list(&self, _: &str) -> Result<Vec<ObjectInfo>> {
            Err(refuse())
        }
        fn delete(&self, _: &str) -> Result<()> {
            Err(refuse())
        }
        fn versions(&self, _: &str) -> Result<Vec<ObjectVersion>> {
            Ok(self.versions.clone())
        }
        fn get_version(&self, _: &str, version_id: &str) -> Result<Vec<u8>> {
            self.bytes.get(version_id).cloned().ok_or_else(refuse)
        }
    }

    fn at(secs: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000 + secs, 0).unwrap()
    }

    fn v(path: &str, id: &str, secs: i64, marker: bool) -> ObjectVersion {
        ObjectVersion {
            path: path.into(),
            version_id: id.into(),
            last_modified: at(secs),
            size: if marker { 0 } else { id.len() as u64 },
            delete_marker: marker,
        }
    }

    fn bucket() -> Bucket {
        // snapshots/a written at 10, deleted at 30; data/p written at 10, overwritten at 30;
        // snapshots/b written at 20; index/late written at 40.
        let versions = vec![
            v("data/p", "p-garbage", 30, false),
            v("data/p", "p-good", 10, false),
            v("index/late", "late", 40, false),
            v("snapshots/a", "a-marker", 30, true),
            v("snapshots/a", "a1", 10, false),
            v("snapshots/b", "b1", 20, false),
        ];
        let bytes = ["p-garbage", "p-good", "late", "a1", "b1"]
            .iter()
            .map(|id| (id.to_string(), id.as_bytes().to_vec()))
            .collect();
        Bucket { versions, bytes }
    }

    #[test]
    fn each_key_reads_its_version_current_at_the_moment() {
        let before = AsOfBackend::new(Box::new(bucket()), at(25)).unwrap();
        let names = |b: &AsOfBackend, dir| -> Vec<String> {
            b.list(dir).unwrap().into_iter().map(|o| o.path).collect()
        };
        assert_eq!(names(&before, "snapshots"), ["snapshots/a", "snapshots/b"]);
        assert_eq!(before.get("data/p").unwrap(), b"p-good");
        assert!(!before.exists("index/late").unwrap());
        assert!(matches!(
            before.get("index/late"),
            Err(Error::NotFound { .. })
        ));
        let range = |b: &AsOfBackend, r| {
            let (mut reader, size) = b.open_range("data/p", r).unwrap();
            let mut got = Vec::new();
            std::io::Read::read_to_end(&mut reader, &mut got).unwrap();
            (got, size)
        };
        assert_eq!(range(&before, 2..4), (b"go".to_vec(), 6));
        assert_eq!(range(&before, 4..100), (b"od".to_vec(), 6));
        assert!(before.put("snapshots/c", b"x").is_err());
        assert!(before.delete("snapshots/a").is_err());

        let after = AsOfBackend::new(Box::new(bucket()), at(35)).unwrap();
        assert_eq!(names(&after, "snapshots"), ["snapshots/b"]);
        assert_eq!(after.get("data/p").unwrap(), b"p-garbage");

        // Before anything was written: nothing to read, said so.
        assert!(AsOfBackend::new(Box::new(bucket()), at(5)).is_err());
    }
}
