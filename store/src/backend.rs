//! Where objects are kept. A backend stores immutable, write-once objects by path
//! (`data/ab/ab…`, `snapshots/…`); the repository never modifies one in place.

mod aws_profile;
mod cache;
mod credential_process;
mod imds;
mod local;
mod location;
mod remote;
mod s3_api;
mod s3_config;
mod transport;
mod versioned;

pub use cache::CachedBackend;
pub use local::LocalBackend;
pub use remote::{RemoteBackend, RemoteOptions, RETRY_LOG};
pub use s3_api::{LockMode, ObjectVersion, Retention, WriteLock};
pub use versioned::AsOfBackend;

use crate::Result;
use std::io::{Read, Seek, SeekFrom, Write};
use std::ops::Range;

/// Anything that reads an object with random access.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// `range` of the object `object` opened at `path`, read in order, and the object's size.
pub(crate) fn range_of(
    mut object: Box<dyn ReadSeek>,
    path: &str,
    range: Range<u64>,
) -> Result<(Box<dyn Read + Send>, u64)> {
    let io = |e| crate::Error::io("reading", path, e);
    let size = object.seek(SeekFrom::End(0)).map_err(io)?;
    object.seek(SeekFrom::Start(range.start)).map_err(io)?;
    let len = range.end.saturating_sub(range.start);
    Ok((Box::new(object.take(len)), size))
}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// An object written to storage as it is made ([`Backend::stage`]): its bytes go to a
/// temporary the backend hides from listings and readers (`.tmp-*`, SPEC §3) until
/// [`StagedObject::commit`] names it. Dropped uncommitted, it is deleted.
pub trait StagedObject: Write + Send {
    /// The temporary's path in the repository, for messages.
    fn temporary(&self) -> &str;
    /// Store the bytes written as the object at `path` with [`Backend::put`]'s guarantees:
    /// durable before it is named, never partial under `path`, and a create: an object
    /// already stored there is kept (its name is content-addressed, so it holds the same
    /// bytes). The temporary is gone afterwards, committed or not.
    fn commit(self: Box<Self>, path: &str) -> Result<()>;
}

/// A place that keeps objects.
pub trait Backend: Send + Sync {
    /// Human-readable location, for messages.
    fn location(&self) -> String;
    /// Store `bytes` at `path`, durably, never exposing a partial object under `path`.
    /// `path` is content-addressed (or otherwise written once): an object already stored
    /// under it holds the same bytes. Object stores therefore create without overwriting
    /// (`If-None-Match: *`) and accept a name already taken, so writers need no permission
    /// to replace or delete objects.
    fn put(&self, path: &str, bytes: &[u8]) -> Result<()>;
    /// [`Backend::put`] of a buffer the caller no longer needs (spares a copy where the
    /// backend keeps its own).
    fn put_owned(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.put(path, &bytes)
    }
    /// Start an object to be committed below the directory `dir` (`data`, `tree`), written as
    /// it is made instead of held in memory; None where the backend has no such place
    /// (object stores: callers hold the bytes and [`Backend::put_owned`] them).
    fn stage(&self, _dir: &str) -> Result<Option<Box<dyn StagedObject>>> {
        Ok(None)
    }
    /// Store `bytes` at `path`, replacing what is there (needs permission to overwrite; only
    /// the prune lease, held by maintenance, is written so).
    fn replace(&self, path: &str, bytes: &[u8]) -> Result<()>;
    /// How many large writes (packs) to run at once.
    fn parallel_writes(&self) -> usize {
        2
    }
    /// Store `bytes` at `path` only if nothing is there yet; returns false if something was.
    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<bool>;
    /// Read a whole object.
    fn get(&self, path: &str) -> Result<Vec<u8>>;
    /// Read a whole object into `buf` (replacing its content), reusing its allocation where
    /// the backend can: for readers of many large objects in turn.
    fn get_into(&self, path: &str, buf: &mut Vec<u8>) -> Result<()> {
        *buf = self.get(path)?;
        Ok(())
    }
    /// Open an object for random access.
    fn open(&self, path: &str) -> Result<Box<dyn ReadSeek>>;
    /// Read `range` of an object in order: a reader of those bytes (fewer if the object ends
    /// first) and the object's size. Object stores send it as one streamed response, so a
    /// long run costs one request rather than one per read.
    fn open_range(&self, path: &str, range: Range<u64>) -> Result<(Box<dyn Read + Send>, u64)> {
        range_of(self.open(path)?, path, range)
    }
    /// True if an object exists at `path`.
    fn exists(&self, path: &str) -> Result<bool>;
    /// Every object below the directory `prefix` (recursively).
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Incomplete writes (temporary files, of killed writers or of running ones) last written
    /// `age` or longer ago, with how long ago, to [`Backend::delete`] once their writers are
    /// known to be gone. Object stores have none: a failed upload never becomes visible.
    fn incomplete(&self, _age: std::time::Duration) -> Result<Vec<(String, std::time::Duration)>> {
        Ok(Vec::new())
    }
    /// Delete an object (absent objects are not an error).
    fn delete(&self, path: &str) -> Result<()>;
    /// True if objects travel over a network (worth caching metadata locally).
    fn is_remote(&self) -> bool {
        false
    }
    /// Whether the bucket has S3 Object Lock enabled; None where there is no such thing.
    fn bucket_object_lock(&self) -> Result<Option<bool>> {
        Ok(None)
    }
    /// Give every object written from now on this retention (S3 Object Lock; leases and gc
    /// markers excepted). Backends without Object Lock refuse a lock.
    fn set_write_lock(&self, lock: Option<WriteLock>) -> Result<()> {
        match lock {
            None => Ok(()),
            Some(_) => Err(no_lock(&self.location())),
        }
    }
    /// The retention of the current version of `path` (None: it has none).
    fn retention(&self, _path: &str) -> Result<Option<Retention>> {
        Err(no_lock(&self.location()))
    }
    /// Set (extend) the retention of the current version of `path`.
    fn set_retention(&self, _path: &str, _retention: Retention) -> Result<()> {
        Err(no_lock(&self.location()))
    }
    /// Every version and delete marker below the directory `dir` (versioned S3 buckets).
    fn versions(&self, _dir: &str) -> Result<Vec<ObjectVersion>> {
        Err(crate::Error::Invalid(format!(
            "{} keeps no object versions (--as-of needs a versioned S3 bucket)",
            self.location()
        )))
    }
    /// Read one version of an object.
    fn get_version(&self, path: &str, _version_id: &str) -> Result<Vec<u8>> {
        Err(crate::Error::Invalid(format!(
            "{} keeps no object versions (reading {path})",
            self.location()
        )))
    }
    /// Read `range` of one version of an object in order (as [`Backend::open_range`]); also
    /// returns the version's size.
    fn open_version_range(
        &self,
        path: &str,
        version_id: &str,
        range: Range<u64>,
    ) -> Result<(Box<dyn Read + Send>, u64)> {
        let whole = std::io::Cursor::new(self.get_version(path, version_id)?);
        range_of(Box::new(whole), path, range)
    }
}

fn no_lock(location: &str) -> crate::Error {
    crate::Error::Invalid(format!(
        "{location} has no Object Lock: it needs an S3 bucket created with Object Lock enabled"
    ))
}

/// Open a backend from a location: a path, a `file://` URL, or an object store URL
/// (`s3://bucket/prefix`; `gs://` and `az://` are built in but untested). Other schemes, and
/// `word:rest` that may be meant as one, are refused ([`crate::ConfigError`]).
pub fn open(location: &str, remote: &RemoteOptions) -> Result<Box<dyn Backend>> {
    Ok(match location::parse(location)? {
        location::Location::Local(path) => Box::new(LocalBackend::new(path)),
        location::Location::Remote => Box::new(RemoteBackend::open(location, remote)?),
    })
}
