//! Reading blobs back: index lookup, a ranged read through age's seekable stream,
//! decompression, and a check of the keyed hash. Nothing unverified is returned.

use crate::backend::ReadSeek;
use crate::index::{Index, Location};
use crate::repo::Repository;
use crate::staged::{self, StagedReader, Stager};
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

/// Decompresses frames and checks blobs against their keyed hash; cheap to clone, `Send`, for
/// threads that work on frames read elsewhere.
#[derive(Clone)]
pub struct FrameCheck {
    repo: Arc<Repository>,
    index: Arc<Index>,
    key: ChunkIdKey,
    remote: bool,
}

/// One pack opened for ranged reads of its plaintext; from remote storage each read is one
/// request of the stored object (see [`crate::staged`]).
pub struct PackReader {
    number: u32,
    reader: SeekableReader<StagedReader>,
    stager: Stager,
}

impl FrameCheck {
    /// Open pack number `pack`.
    pub fn open_pack(&self, pack: u32) -> Result<PackReader> {
        let info = self.index.pack(pack);
        let object = self.repo.pack_object(info.kind, &info.id)?;
        let (staged, stager) = staged::staged(object)
            .map_err(|e| self.damaged(pack, cairn_format::envelope::EnvelopeError::Io(e)))?;
        Ok(PackReader {
            number: pack,
            reader: self.repo.decrypt_pack(info.kind, &info.id, staged)?,
            stager,
        })
    }

    /// `len` plaintext bytes at `offset` of the pack `pack` is open on: from remote storage,
    /// the stored chunks holding them are read in one request, then decrypted.
    pub fn read(&self, pack: &mut PackReader, offset: u64, len: usize) -> Result<Vec<u8>> {
        let total = pack
            .reader
            .plaintext_len()
            .map_err(|e| self.damaged(pack.number, e))?;
        let end = offset.saturating_add(len as u64);
        // Locally the decryption reads the file directly: staging would only add a copy.
        if self.remote && end <= total {
            let range =
                cairn_format::envelope::ciphertext_range(pack.stager.size(), total, offset..end);
            pack.stager.stage(range).map_err(|e| {
                use cairn_format::envelope::EnvelopeError;
                match e.kind() {
                    // Shorter than its index entry says.
                    std::io::ErrorKind::UnexpectedEof => {
                        self.damaged(pack.number, EnvelopeError::Damaged)
                    }
                    // A storage failure is reported as itself.
                    _ => self.damaged(pack.number, EnvelopeError::Io(e)),
                }
            })?;
        }
        let read = pack
            .reader
            .read_at(offset, len)
            .map_err(|e| self.damaged(pack.number, e));
        pack.stager.clear();
        read
    }

    /// The plaintext of `frame` of pack number `pack`, from its stored bytes.
    pub fn decompress(&self, pack: u32, frame: &FrameRef, stored: &[u8]) -> Result<Vec<u8>> {
        cairn_format::frame::decompress(stored, frame.compression, frame.raw_len)
            .map_err(|e| self.damaged(pack, e))
    }

    /// Blob `id` at `offset`, `len` in the plaintext `raw` of a frame of pack number `pack`,
    /// after checking that it hashes to `id`.
    pub fn blob<'r>(
        &self,
        pack: u32,
        raw: &'r [u8],
        id: &Id,
        offset: u32,
        len: u32,
    ) -> Result<&'r [u8]> {
        let start = offset as usize;
        raw.get(start..start + len as usize)
            .filter(|b| self.key.id(b) == *id)
            .ok_or(Error::BlobMismatch {
                id: *id,
                pack: self.index.pack(pack).id,
            })
    }

    /// True when packs travel over a network (each read is a request).
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// A damaged-pack error for pack number `pack`.
    pub fn damaged(&self, pack: u32, e: impl Into<cairn_format::Error>) -> Error {
        let info = self.index.pack(pack);
        Error::damaged(Repository::pack_path(info.kind, &info.id), e)
    }
}

/// Reads verified blobs. Keeps, for data and for trees separately, the last pack open and the
/// last frame decompressed, so consecutive blobs of one pack or frame cost little even when a
/// walk alternates between trees and file content. One per thread.
pub struct Loader {
    repo: Arc<Repository>,
    index: Arc<Index>,
    check: FrameCheck,
    caches: [Cache; 2],
}

impl Loader {
    /// A loader over `repo` using `index`.
    pub fn new(repo: Arc<Repository>, index: Arc<Index>) -> Self {
        let check = FrameCheck {
            repo: repo.clone(),
            index: index.clone(),
            key: repo.chunk_id_key(),
            remote: repo.backend().is_remote(),
        };
        Loader {
            repo,
            index,
            check,
            caches: [Cache::default(), Cache::default()],
        }
    }

    /// Another loader over the same repository and index, with caches of its own (for
    /// another thread).
    pub fn fork(&self) -> Loader {
        Loader::new(self.repo.clone(), self.index.clone())
    }

    /// The index in use.
    pub fn index(&self) -> &Index {
        &self.index
    }

    /// The index in use, shared.
    pub fn shared_index(&self) -> &Arc<Index> {
        &self.index
    }

    /// Frame decompression and blob checks, for other threads.
    pub fn frame_check(&self) -> FrameCheck {
        self.check.clone()
    }

    /// Read blob `id`, verifying it hashes to its id.
    pub fn load(&mut self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.index.get(id).ok_or(Error::BlobMissing(*id))?;
        self.fill_frame(&loc)?;
        let (_, raw) = self.caches[slot(self.index.pack(loc.pack).kind)]
            .frame
            .as_ref()
            .expect("filled by fill_frame()");
        Ok(self
            .check
            .blob(loc.pack, raw, id, loc.offset, loc.len)?
            .to_vec())
    }

    /// Make the decompressed frame holding `loc` the cached one of its pack kind.
    fn fill_frame(&mut self, loc: &Location) -> Result<()> {
        let key = (loc.pack, loc.frame.offset);
        let slot = slot(self.index.pack(loc.pack).kind);
        if self.caches[slot].frame.as_ref().map(|(k, _)| *k) != Some(key) {
            let stored = self.stored_frame(loc.pack, &loc.frame)?;
            let raw = self.check.decompress(loc.pack, &loc.frame, &stored)?;
            self.caches[slot].frame = Some((key, raw));
        }
        Ok(())
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

    /// A whole frame of pack number `pack` as stored, for copying it into another pack
    /// without recompressing, after checking that it decompresses and that each of `blobs`
    /// (id, offset, length in the frame) hashes to its id.
    pub fn load_frame(
        &mut self,
        pack: u32,
        frame: &FrameRef,
        blobs: &[(Id, u32, u32)],
    ) -> Result<Vec<u8>> {
        Ok(self.verified_frame(pack, frame, blobs)?.0)
    }

    /// A frame of pack number `pack` decompressed, after checking that each of `blobs` (id,
    /// offset, length in the frame) hashes to its id: the blobs are the checked slices.
    pub fn load_frame_raw(
        &mut self,
        pack: u32,
        frame: &FrameRef,
        blobs: &[(Id, u32, u32)],
    ) -> Result<Vec<u8>> {
        Ok(self.verified_frame(pack, frame, blobs)?.1)
    }

    /// A frame as stored and decompressed, with `blobs` checked.
    fn verified_frame(
        &mut self,
        pack: u32,
        frame: &FrameRef,
        blobs: &[(Id, u32, u32)],
    ) -> Result<(Vec<u8>, Vec<u8>)> {
        let stored = self.stored_frame(pack, frame)?;
        let raw = self.check.decompress(pack, frame, &stored)?;
        for &(id, offset, len) in blobs {
            self.check.blob(pack, &raw, &id, offset, len)?;
        }
        Ok((stored, raw))
    }

    /// Read and decode a tree blob, its files' content filled in from their content lists.
    pub fn load_tree(&mut self, id: &Id) -> Result<cairn_format::tree::Tree> {
        let bytes = self.load(id)?;
        let mut tree = cairn_format::tree::Tree::decode(&bytes)
            .map_err(|e| Error::damaged(format!("tree blob {id}"), e))?;
        crate::content_lists::resolve(self, id, &mut tree)?;
        Ok(tree)
    }

    /// [`Loader::load_tree`], but a file whose content list cannot be read comes back without
    /// content instead of failing the tree (see `content_lists::unresolved`).
    pub fn load_tree_lenient(&mut self, id: &Id) -> Result<cairn_format::tree::Tree> {
        let bytes = self.load(id)?;
        let mut tree = cairn_format::tree::Tree::decode(&bytes)
            .map_err(|e| Error::damaged(format!("tree blob {id}"), e))?;
        crate::content_lists::resolve_lenient(self, id, &mut tree)?;
        Ok(tree)
    }

    /// The kind of pack holding a blob, if indexed.
    pub fn kind_of(&self, id: &Id) -> Option<PackKind> {
        self.index.get(id).map(|l| self.index.pack(l.pack).kind)
    }
}
