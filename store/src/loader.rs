//! Reading blobs back: index lookup, a ranged read through age's seekable stream,
//! decompression, and a check of the keyed hash. Nothing unverified is returned.

use crate::backend::ReadSeek;
use crate::index::{Index, Location};
use crate::repo::Repository;
use crate::{Error, Result};
use cairn_format::envelope::SeekableReader;
use cairn_format::pack::{FrameRef, PackKind};
use cairn_format::{ChunkIdKey, Id};
use std::sync::Arc;

fn slot(kind: PackKind) -> usize {
    match kind {
        PackKind::Data => 0,
        PackKind::Tree => 1,
    }
}

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
        let slot = slot(self.index.pack(loc.pack).kind);
        if self.caches[slot].frame.as_ref().map(|(k, _)| *k) != Some(key) {
            let stored = self.stored_frame(loc.pack, &loc.frame)?;
            let raw = self.decompress(loc.pack, &stored, &loc.frame)?;
            self.caches[slot].frame = Some((key, raw));
        }
        Ok(&self.caches[slot].frame.as_ref().expect("filled above").1)
    }

    /// The stored (compressed) bytes of `frame` in pack number `pack`.
    fn stored_frame(&mut self, pack: u32, frame: &FrameRef) -> Result<Vec<u8>> {
        let info = self.index.pack(pack);
        let cache = &mut self.caches[slot(info.kind)];
        if cache.open.as_ref().map(|(n, _)| *n) != Some(pack) {
            cache.open = None;
            let reader = self.repo.open_pack(info.kind, &info.id)?;
            cache.open = Some((pack, reader));
        }
        let (_, reader) = cache.open.as_mut().expect("opened above");
        reader
            .read_at(frame.offset, frame.stored_len as usize)
            .map_err(|e| Error::damaged(Repository::pack_path(info.kind, &info.id), e))
    }

    fn decompress(&self, pack: u32, stored: &[u8], frame: &FrameRef) -> Result<Vec<u8>> {
        let info = self.index.pack(pack);
        cairn_format::frame::decompress(stored, frame.compression, frame.raw_len)
            .map_err(|e| Error::damaged(Repository::pack_path(info.kind, &info.id), e))
    }

    /// A whole frame of pack number `pack` as stored, for copying it into another pack
    /// without recompressing, after checking that it decompresses and that each of `blobs`
    /// (id, offset, length in the frame) hashes to its id.
    pub fn load_frame(
        &mut self,
        pack: u32,
        frame: &FrameRef,
        blobs: &[(Id, u32, u32)],
    ) -> Result<Vec<u8>> {
        let stored = self.stored_frame(pack, frame)?;
        let raw = self.decompress(pack, &stored, frame)?;
        for &(id, offset, len) in blobs {
            let ok = raw
                .get(offset as usize..offset as usize + len as usize)
                .is_some_and(|b| self.key.id(b) == id);
            if !ok {
                return Err(Error::BlobMismatch {
                    id,
                    pack: self.index.pack(pack).id,
                });
            }
        }
        Ok(stored)
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
