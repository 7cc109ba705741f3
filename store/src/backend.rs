//! Where objects are kept. A backend stores immutable, write-once objects by path
//! (`data/ab/ab…`, `snapshots/…`); the repository never modifies one in place.

mod aws_profile;
mod cache;
mod local;
mod location;
mod remote;
mod s3_config;

pub use cache::CachedBackend;
pub use local::LocalBackend;
pub use remote::{RemoteBackend, RemoteOptions};

use crate::Result;
use std::io::{Read, Seek};

/// Anything that reads an object with random access.
pub trait ReadSeek: Read + Seek + Send {}
impl<T: Read + Seek + Send> ReadSeek for T {}

/// One listed object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectInfo {
    /// Path relative to the repository root, `/`-separated.
    pub path: String,
    /// Size in bytes.
    pub size: u64,
}

/// A place that keeps objects.
pub trait Backend: Send + Sync {
    /// Human-readable location, for messages.
    fn location(&self) -> String;
    /// Store `bytes` at `path`, durably, never exposing a partial object under `path`.
    /// Content-addressed objects may be written twice with the same bytes.
    fn put(&self, path: &str, bytes: &[u8]) -> Result<()>;
    /// [`Backend::put`] of a buffer the caller no longer needs (spares a copy where the
    /// backend keeps its own).
    fn put_owned(&self, path: &str, bytes: Vec<u8>) -> Result<()> {
        self.put(path, &bytes)
    }
    /// How many large writes (packs) to run at once.
    fn parallel_writes(&self) -> usize {
        2
    }
    /// Store `bytes` at `path` only if nothing is there yet; returns false if something was.
    fn put_new(&self, path: &str, bytes: &[u8]) -> Result<bool>;
    /// Read a whole object.
    fn get(&self, path: &str) -> Result<Vec<u8>>;
    /// Open an object for random access.
    fn open(&self, path: &str) -> Result<Box<dyn ReadSeek>>;
    /// True if an object exists at `path`.
    fn exists(&self, path: &str) -> Result<bool>;
    /// Every object below the directory `prefix` (recursively).
    fn list(&self, prefix: &str) -> Result<Vec<ObjectInfo>>;
    /// Remove incomplete writes (temporary files of killed writers) older than `age`; returns
    /// how many. Object stores have none: a failed upload never becomes visible.
    fn remove_incomplete(&self, _age: std::time::Duration) -> Result<u64> {
        Ok(0)
    }
    /// Delete an object (absent objects are not an error).
    fn delete(&self, path: &str) -> Result<()>;
    /// True if objects travel over a network (worth caching metadata locally).
    fn is_remote(&self) -> bool {
        false
    }
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
