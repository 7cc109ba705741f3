//! Reading blobs back: index lookup, a ranged read through age's seekable stream,
//! decompression, and a check of the keyed hash. Nothing unverified is returned.

use crate::backend::ReadSeek;
use crate::index::{Index, Location};
use crate::repo::Repository;
use crate::{Error, Result};
use cairn_format::envelope::SeekableReader;
use cairn_format::pack::{BlobEntry, PackKind};
use cairn_format::{ChunkIdKey, Id};
use std::sync::Arc;

/// Per pack kind: the last pack opened and the last frame decompressed.
#[derive(Default)]
struct Cache {
    open: Option<(u32, SeekableReader<Box<dyn ReadSeek>>)>,
    frame: Option<((u32, u64), Vec<u8>)>,
}

/// Reads verified blobs. Keeps, for data and for trees separately, the last pack open and the
/// last frame decompressed, so consecutive blobs of one pack or frame cost little even when a
/// walk alternates between trees and file content. One per thread.
pub struct Loader {
    repo: Arc<Repository>,
    index: Arc<Index>,
    key: ChunkIdKey,
    caches: [Cache; 2],
}

impl Loader {
    /// A loader over `repo` using `index`.
    pub fn new(repo: Arc<Repository>, index: Arc<Index>) -> Self {
        let key = repo.chunk_id_key();
        Loader {
            repo,
            index,
            key,
            caches: [Cache::default(), Cache::default()],
        }
    }

    /// The index in use.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// Read blob `id`, verifying it hashes to its id.
    pub fn load(&mut self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.index.get(id).ok_or(Error::BlobMissing(*id))?;
        let pack = self.index.pack(loc.pack);
        let raw = self.frame(&loc)?;
        let start = loc.offset as usize;
        let blob = raw
            .get(start..start + loc.len as usize)
            .ok_or(Error::BlobMismatch {
                id: *id,
                pack: pack.id,
            })?
            .to_vec();
        if self.key.id(&blob) != *id {
            return Err(Error::BlobMismatch {
                id: *id,
                pack: pack.id,
            });
        }
        Ok(blob)
    }

    /// The decompressed frame holding `loc`, from cache or the pack.
    fn frame(&mut self, loc: &Location) -> Result<&[u8]> {
        let key = (loc.pack, loc.frame.offset);
        let pack = self.index.pack(loc.pack);
        let cache = &mut self.caches[match pack.kind {
            PackKind::Data => 0,
            PackKind::Tree => 1,
        }];
        if cache.frame.as_ref().map(|(k, _)| *k) != Some(key) {
            if cache.open.as_ref().map(|(n, _)| *n) != Some(loc.pack) {
                cache.open = None;
                let reader = self.repo.open_pack(pack.kind, &pack.id)?;
                cache.open = Some((loc.pack, reader));
            }
            let path = Repository::pack_path(pack.kind, &pack.id);
            let (_, reader) = cache.open.as_mut().expect("opened above");
            let stored = reader
                .read_at(loc.frame.offset, loc.frame.stored_len as usize)
                .map_err(|e| Error::damaged(path.clone(), e))?;
            let entry = BlobEntry {
                id: Id::default(),
                frame: loc.frame,
                offset: 0,
                len: loc.frame.raw_len,
            };
            let raw = cairn_format::pack::blob_from_frame(&stored, &entry)
                .map_err(|e| Error::damaged(path, e))?;
            cache.frame = Some((key, raw));
        }
        Ok(&cache.frame.as_ref().expect("filled above").1)
    }

    /// Read and decode a tree blob.
    pub fn load_tree(&mut self, id: &Id) -> Result<cairn_format::tree::Tree> {
        let bytes = self.load(id)?;
        cairn_format::tree::Tree::decode(&bytes)
            .map_err(|e| Error::damaged(format!("tree blob {id}"), e))
    }

    /// The kind of pack holding a blob, if indexed.
    pub fn kind_of(&self, id: &Id) -> Option<PackKind> {
        self.index.get(id).map(|l| self.index.pack(l.pack).kind)
    }
}
