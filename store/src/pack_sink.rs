//! A pack's stored bytes on their way to the backend: encrypted straight into a staged object
//! (a temporary file on local storage, [`Backend::stage`]) and hashed as they are written, or
//! held in memory where the backend has no such place (object stores); then stored under
//! their blake3 name.

use crate::backend::{Backend, StagedObject};
use crate::{Error, Result};
use cairn_format::Id;
use std::io::{self, Write};
use std::sync::{Arc, Mutex};

/// A staged sink's first write failure, shared with whoever handed the sink on: age reports a
/// failure to write its header as a message of its own (the error's Debug form, kind lost),
/// so the opener of a pack takes the original from here.
pub(crate) type FirstFailure = Arc<Mutex<Option<(io::ErrorKind, String)>>>;

/// Where a pack's bytes go as they are made.
pub(crate) enum PackSink {
    /// Held whole, to be [`Backend::put_owned`].
    Memory(Vec<u8>),
    /// Written to the backend as they come, hashed on the way.
    Staged {
        object: Box<dyn StagedObject>,
        hasher: Box<blake3::Hasher>,
        len: u64,
        failure: FirstFailure,
    },
}

impl PackSink {
    /// A staged object below `dir` where the backend offers one; else a buffer of `capacity`
    /// bytes.
    pub(crate) fn open(backend: &dyn Backend, dir: &str, capacity: usize) -> Result<PackSink> {
        let staged = backend
            .stage(dir)
            .map_err(|e| Error::pack_write(backend, e))?;
        Ok(match staged {
            Some(object) => PackSink::Staged {
                object,
                hasher: Box::default(),
                len: 0,
                failure: FirstFailure::default(),
            },
            None => PackSink::Memory(Vec::with_capacity(capacity)),
        })
    }

    /// True if the bytes go to storage as they are written.
    pub(crate) fn is_staged(&self) -> bool {
        matches!(self, PackSink::Staged { .. })
    }

    /// Where a staged sink keeps its first write failure (None for a buffer, which cannot
    /// fail).
    pub(crate) fn failure(&self) -> Option<FirstFailure> {
        match self {
            PackSink::Memory(_) => None,
            PackSink::Staged { failure, .. } => Some(failure.clone()),
        }
    }

    /// The bytes written, named by their blake3 hash, ready to be stored.
    pub(crate) fn seal(self) -> SealedPack {
        match self {
            PackSink::Memory(bytes) => SealedPack {
                id: Id::of_object(&bytes),
                size: bytes.len() as u64,
                bytes: Sealed::Memory(bytes),
            },
            PackSink::Staged {
                object,
                hasher,
                len,
                ..
            } => SealedPack {
                id: Id(*hasher.finalize().as_bytes()),
                size: len,
                bytes: Sealed::Staged(object),
            },
        }
    }
}

impl Write for PackSink {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        match self {
            PackSink::Memory(bytes) => {
                bytes.extend_from_slice(buf);
                Ok(buf.len())
            }
            PackSink::Staged {
                object,
                hasher,
                len,
                failure,
            } => {
                let n = object.write(buf).map_err(|e| {
                    let message = format!("{}: {e}", object.temporary());
                    if let Ok(mut first) = failure.lock() {
                        first.get_or_insert((e.kind(), message.clone()));
                    }
                    io::Error::new(e.kind(), message)
                })?;
                hasher.update(&buf[..n]);
                *len += n as u64;
                Ok(n)
            }
        }
    }

    fn flush(&mut self) -> io::Result<()> {
        match self {
            PackSink::Memory(_) => Ok(()),
            PackSink::Staged { object, .. } => object.flush(),
        }
    }
}

/// A pack's complete bytes and their name. Dropped unstored, a staged pack is deleted.
pub(crate) struct SealedPack {
    /// blake3 of the bytes: the pack id.
    pub(crate) id: Id,
    /// Stored bytes.
    pub(crate) size: u64,
    bytes: Sealed,
}

enum Sealed {
    Memory(Vec<u8>),
    Staged(Box<dyn StagedObject>),
}

impl SealedPack {
    /// Store the pack at `path` (its directory and id), as a create: a name already taken is
    /// kept (content-addressed, the same bytes). Failures of a staged pack are
    /// [`Error::PackWrite`].
    pub(crate) fn store(self, backend: &dyn Backend, path: &str) -> Result<()> {
        match self.bytes {
            Sealed::Memory(bytes) => backend.put_owned(path, bytes),
            Sealed::Staged(object) => object
                .commit(path)
                .map_err(|e| Error::pack_write(backend, e)),
        }
    }
}
