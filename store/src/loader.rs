//! Reading blobs back: index lookup, a ranged read through age's seekable stream,
//! decompression, and a check of the keyed hash. Nothing unverified is returned.

use crate::backend::ReadSeek;
use crate::index::{Index, Location};
use crate::pack_spans::SpanReader;
use crate::plain::Plain;
use crate::repo::Repository;
use crate::{Error, Result};
use cairn_format::envelope::EnvelopeError;
use cairn_format::frame::Compression;
use cairn_format::pack::{FrameRef, PackKind};
use cairn_format::payload::Payload;
use cairn_format::{ChunkIdKey, Id};
use std::collections::HashSet;
use std::io::{Read, Seek, SeekFrom};
use std::sync::{Arc, Mutex};

fn slot(kind: PackKind) -> usize {
    match kind {
        PackKind::Data => 0,
        PackKind::Tree => 1,
    }
}

/// Per pack kind: the last pack opened, the last frame decompressed and the age chunks last
/// decrypted (with the pack's number; their buffer serves the next read).
#[derive(Default)]
struct Cache {
    open: Option<PackReader>,
    frame: Option<((u32, FrameRef), Vec<u8>)>,
    chunks: Option<(u32, Plain)>,
}

/// Stored frames of up to this many bytes leave their buffer for the next one; a larger one
/// is freed (a loader lives as long as its restore or walk).
const KEEP_BUFFER: usize = 1 << 20;

/// `buf` if it is worth keeping for the next frame, else an empty buffer.
fn keep(buf: Vec<u8>) -> Vec<u8> {
    if buf.capacity() <= KEEP_BUFFER {
        buf
    } else {
        Vec::new()
    }
}

/// The stored bytes of `frame` of pack number `pack` among the chunks `cache` holds decrypted.
fn stored_in<'c>(cache: &'c Cache, pack: u32, frame: &FrameRef) -> Result<&'c [u8]> {
    cache
        .chunks
        .as_ref()
        .filter(|(number, _)| *number == pack)
        .and_then(|(_, plain)| plain.within(frame.offset, frame.stored_len as usize))
        .ok_or_else(|| {
            Error::Invalid(format!(
                "frame at {} of pack number {pack} was not read",
                frame.offset
            ))
        })
}

/// Decompresses frames and checks blobs against their keyed hash; cheap to clone, `Send`, for
/// threads that work on frames read elsewhere.
#[derive(Clone)]
pub struct FrameCheck {
    repo: Arc<Repository>,
    index: Arc<Index>,
    key: ChunkIdKey,
    remote: bool,
    /// Packs whose listings were passed over for another (see [`Loader::load_elsewhere`]):
    /// each is warned about once.
    passed_over: Arc<Mutex<HashSet<u32>>>,
}

/// One pack opened for ranged reads of its plaintext: each read is one read of the stored
/// object (one request from remote storage) of exactly the age chunks that hold the range,
/// decrypted in the buffer it was read into.
pub struct PackReader {
    number: u32,
    object: Box<dyn ReadSeek>,
    payload: Payload,
}

impl FrameCheck {
    /// Open pack number `pack`.
    pub fn open_pack(&self, pack: u32) -> Result<PackReader> {
        let info = self.index.pack(pack);
        let (object, payload) = self.repo.open_pack_payload(info.kind, &info.id)?;
        Ok(PackReader {
            number: pack,
            object,
            payload,
        })
    }

    /// Open pack number `pack` to read `spans` of its plaintext (ascending) in turn, spans at
    /// most `gap` apart with one request (see [`crate::pack_spans`]).
    pub fn open_spans(
        &self,
        pack: u32,
        spans: Vec<std::ops::Range<u64>>,
        gap: u64,
    ) -> Result<SpanReader<'_>> {
        let info = self.index.pack(pack);
        SpanReader::open(&self.repo, info.kind, &info.id, spans, gap)
    }

    /// `len` plaintext bytes at `offset` of the pack `pack` is open on, read into `buf` (a
    /// buffer of an earlier read, or empty) with one read and decrypted there.
    pub fn read_into(
        &self,
        pack: &mut PackReader,
        offset: u64,
        len: usize,
        mut buf: Vec<u8>,
    ) -> Result<Plain> {
        let number = pack.number;
        let chunks = offset
            .checked_add(len as u64)
            .and_then(|end| pack.payload.chunks_for(offset..end))
            // The index places it beyond the pack's end: the pack is shorter than indexed.
            .ok_or_else(|| self.damaged(number, EnvelopeError::Damaged))?;
        let stored = usize::try_from(chunks.stored.end - chunks.stored.start)
            .map_err(|_| self.damaged(number, EnvelopeError::Damaged))?;
        if buf.len() < stored {
            // Only growth is zeroed: a buffer used before is overwritten as it stands.
            buf.resize(stored, 0);
        }
        let read = pack
            .object
            .seek(SeekFrom::Start(chunks.stored.start))
            .and_then(|_| pack.object.read_exact(&mut buf[..stored]));
        read.map_err(|e| match e.kind() {
            // Shorter than its index entry says.
            std::io::ErrorKind::UnexpectedEof => self.damaged(number, EnvelopeError::Damaged),
            // A storage failure is reported as itself.
            _ => self.damaged(number, EnvelopeError::Io(e)),
        })?;
        crate::pack_spans::decrypt(&pack.payload, buf, stored, &chunks, len)
            .map_err(|e| self.damaged(number, e))
    }

    /// The plaintext of `frame` of pack number `pack`, from its stored bytes.
    pub fn decompress(&self, pack: u32, frame: &FrameRef, stored: &[u8]) -> Result<Vec<u8>> {
        cairn_format::frame::decompress(stored, frame.compression, frame.raw_len)
            .map_err(|e| self.damaged(pack, e))
    }

    /// The plaintext of `frame` of pack number `pack`: `stored` itself when the frame is
    /// stored uncompressed, else decompressed into `out` (its allocation reused).
    pub fn decompress_into<'a>(
        &self,
        pack: u32,
        frame: &FrameRef,
        stored: &'a [u8],
        out: &'a mut Vec<u8>,
    ) -> Result<&'a [u8]> {
        cairn_format::frame::decompress_into(stored, frame.compression, frame.raw_len, out)
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

    /// Whether the plaintext `raw` of a frame holds each of `blobs` (id, offset, length) as
    /// [`FrameCheck::blob`] would find it, appended to `held`; the blobs are hashed together
    /// (equal pages side by side), so this is the fast way to check a frame's many blobs.
    pub fn holds<'a>(
        &self,
        raw: &[u8],
        blobs: impl Iterator<Item = (&'a Id, u32, u32)> + Clone,
        held: &mut Vec<bool>,
    ) {
        self.key.holds(raw, blobs, held)
    }

    /// Check that the plaintext `raw` of a frame of pack number `pack` holds each of `blobs`
    /// (id, offset, length), hashed together; the error is [`FrameCheck::blob`]'s for the
    /// first that it does not.
    pub fn blobs(&self, pack: u32, raw: &[u8], blobs: &[(Id, u32, u32)]) -> Result<()> {
        let mut held = Vec::with_capacity(blobs.len());
        self.holds(raw, blobs.iter().map(|(id, o, l)| (id, *o, *l)), &mut held);
        for (&(id, offset, len), _) in blobs.iter().zip(held).filter(|(_, held)| !held) {
            self.blob(pack, raw, &id, offset, len)?;
        }
        Ok(())
    }

    /// True when packs travel over a network (each read is a request).
    pub fn is_remote(&self) -> bool {
        self.remote
    }

    /// Blob `id` was read from pack number `used` because pack number `failed`, listed
    /// first, did not hold it (`cause`): warn, once per failed pack.
    pub fn passed_over(&self, failed: u32, used: u32, id: &Id, cause: &Error) {
        let first = self
            .passed_over
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .insert(failed);
        if first {
            let path = |n: u32| {
                let info = self.index.pack(n);
                Repository::pack_path(info.kind, &info.id)
            };
            tracing::warn!(
                "an index object lists blob {id} in pack {}, which does not hold it there ({cause}); it and others listed so are read from their other listings (in pack {} and maybe others). Run `cairn check --read-data`: it names the damaged or planted objects to move out before `cairn repair index`",
                path(failed),
                path(used)
            );
        }
    }

    /// A damaged-pack error for pack number `pack`.
    pub fn damaged(&self, pack: u32, e: impl Into<cairn_format::Error>) -> Error {
        let info = self.index.pack(pack);
        Error::damaged(Repository::pack_path(info.kind, &info.id), e)
    }
}

/// Reads verified blobs. Keeps, for data and for trees separately, the last pack open and the
/// last frame decompressed, so consecutive blobs of one pack or frame cost little even when a
/// walk alternates between trees and file content; and, for walks, the content lists it
/// resolved last. One per thread.
pub struct Loader {
    repo: Arc<Repository>,
    index: Arc<Index>,
    check: FrameCheck,
    caches: [Cache; 2],
    /// Content lists resolved last (see [`crate::content_lists::Resolved`]).
    pub(crate) resolved: crate::content_lists::Resolved,
}

impl Loader {
    /// A loader over `repo` using `index`.
    pub fn new(repo: Arc<Repository>, index: Arc<Index>) -> Self {
        let check = FrameCheck {
            repo: repo.clone(),
            index: index.clone(),
            key: repo.chunk_id_key(),
            remote: repo.backend().is_remote(),
            passed_over: Default::default(),
        };
        Loader {
            repo,
            index,
            check,
            caches: [Cache::default(), Cache::default()],
            resolved: Default::default(),
        }
    }

    /// Another loader over the same repository and index, with caches of its own (for
    /// another thread).
    pub fn fork(&self) -> Loader {
        let mut fork = Loader::new(self.repo.clone(), self.index.clone());
        fork.check.passed_over = self.check.passed_over.clone();
        fork
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

    /// Read blob `id`, verifying it hashes to its id. Where the index's first listing of it
    /// does not hold it (a damaged or missing pack, or a planted claim), the other listings
    /// are tried in turn (see [`Loader::load_elsewhere`]).
    pub fn load(&mut self, id: &Id) -> Result<Vec<u8>> {
        let loc = self.index.get(id).ok_or(Error::BlobMissing(*id))?;
        self.load_from(id, &loc)
    }

    /// Read blob `id` from its listing `loc`, else from its other listings (see
    /// [`Loader::load_elsewhere`]); the error is `loc`'s.
    pub fn load_from(&mut self, id: &Id, loc: &Location) -> Result<Vec<u8>> {
        match self.load_at(id, loc) {
            Err(e) if !e.is_storage_failure() => match self.load_elsewhere(id, loc, &e)? {
                Some(blob) => Ok(blob),
                None => Err(e),
            },
            loaded => loaded,
        }
    }

    /// Read blob `id` from a listing other than `failed`, which did not hold it (`cause`):
    /// the first that verifies, with a warning naming both packs (once per pack that failed),
    /// or none. Storage that cannot be reached ends the search.
    pub fn load_elsewhere(
        &mut self,
        id: &Id,
        failed: &Location,
        cause: &Error,
    ) -> Result<Option<Vec<u8>>> {
        let index = self.index.clone();
        for loc in index.alternatives(id).filter(|l| l != failed) {
            match self.load_at(id, &loc) {
                Ok(blob) => {
                    self.check.passed_over(failed.pack, loc.pack, id, cause);
                    return Ok(Some(blob));
                }
                Err(e) if e.is_storage_failure() => return Err(e),
                Err(e) => tracing::debug!("blob {id}: another listing fails too: {e}"),
            }
        }
        Ok(None)
    }

    /// Read blob `id` from `loc`, verifying it hashes to its id.
    pub(crate) fn load_at(&mut self, id: &Id, loc: &Location) -> Result<Vec<u8>> {
        let loc = *loc;
        self.fill_frame(&loc)?;
        let kind = slot(self.index.pack(loc.pack).kind);
        let (_, raw) = self.caches[kind]
            .frame
            .as_ref()
            .expect("filled by fill_frame()");
        let blob = self.check.blob(loc.pack, raw, id, loc.offset, loc.len)?;
        if raw.len() <= KEEP_BUFFER {
            return Ok(blob.to_vec());
        }
        // A long frame (a content list, a large tree blob) is not kept for a next blob: it is
        // handed over when it is the blob, and its stored bytes are let go, so that loading a
        // 1 GB etcd database's 8 MB list holds it once, not three times, and not afterwards.
        let part = (blob.len() < raw.len()).then(|| blob.to_vec());
        let cache = &mut self.caches[kind];
        cache.chunks = None;
        let raw = cache.frame.take().map(|(_, raw)| raw).unwrap_or_default();
        Ok(part.unwrap_or(raw))
    }

    /// Make the decompressed frame holding `loc` the cached one of its pack kind.
    fn fill_frame(&mut self, loc: &Location) -> Result<()> {
        // The whole frame reference: two listings may describe one offset differently.
        let key = (loc.pack, loc.frame);
        let slot = slot(self.index.pack(loc.pack).kind);
        if self.caches[slot].frame.as_ref().map(|(k, _)| *k) != Some(key) {
            // The frame cached before is overwritten in its own allocation.
            let mut raw = self.caches[slot]
                .frame
                .take()
                .map(|(_, raw)| raw)
                .unwrap_or_default();
            self.read_frame(loc.pack, &loc.frame)?;
            let cache = &mut self.caches[slot];
            let stored = stored_in(cache, loc.pack, &loc.frame)?;
            self.check
                .decompress_into(loc.pack, &loc.frame, stored, &mut raw)?;
            let long = stored.len() > KEEP_BUFFER;
            if loc.frame.compression == Compression::None && !long {
                // Stored uncompressed: checked as it is, and copied to be cached.
                raw.clear();
                raw.extend_from_slice(stored);
            } else if loc.frame.compression == Compression::None {
                // A long one (a content list): its decrypted bytes are moved, not copied, so
                // they are not held twice.
                raw = cache
                    .chunks
                    .take()
                    .and_then(|(_, plain)| {
                        plain.into_within(loc.frame.offset, loc.frame.stored_len as usize)
                    })
                    .ok_or_else(|| {
                        Error::Invalid(format!(
                            "frame at {} of pack number {} was not read",
                            loc.frame.offset, loc.pack
                        ))
                    })?;
            }
            cache.frame = Some((key, raw));
        }
        Ok(())
    }

    /// Make the stored bytes of `frame` of pack number `pack` part of the chunks its pack
    /// kind's cache holds decrypted: from those already there, or read (into their buffer).
    fn read_frame(&mut self, pack: u32, frame: &FrameRef) -> Result<()> {
        let info = self.index.pack(pack);
        let cache = &mut self.caches[slot(info.kind)];
        if stored_in(cache, pack, frame).is_ok() {
            return Ok(());
        }
        if cache.open.as_ref().map(|r| r.number) != Some(pack) {
            cache.open = None;
            cache.open = Some(self.check.open_pack(pack)?);
        }
        let reader = cache.open.as_mut().expect("opened above");
        let buf = cache
            .chunks
            .take()
            .map(|(_, plain)| keep(plain.into_buffer()))
            .unwrap_or_default();
        let plain = self
            .check
            .read_into(reader, frame.offset, frame.stored_len as usize, buf)?;
        cache.chunks = Some((pack, plain));
        Ok(())
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
        self.read_frame(pack, frame)?;
        let cache = &self.caches[slot(self.index.pack(pack).kind)];
        let stored = stored_in(cache, pack, frame)?.to_vec();
        let raw = self.check.decompress(pack, frame, &stored)?;
        self.check.blobs(pack, &raw, blobs)?;
        Ok(stored)
    }

    /// The plaintext of a frame of pack number `pack` up to the end of the last of `blobs` (id,
    /// offset, length in the frame; decompression stops there), after checking that each
    /// hashes to its id: the blobs are the checked slices.
    pub fn load_frame_prefix(
        &mut self,
        pack: u32,
        frame: &FrameRef,
        blobs: &[(Id, u32, u32)],
    ) -> Result<Vec<u8>> {
        self.read_frame(pack, frame)?;
        let end = blobs
            .iter()
            .map(|&(_, offset, len)| u64::from(offset) + u64::from(len))
            .max()
            .unwrap_or(0);
        let cache = &self.caches[slot(self.index.pack(pack).kind)];
        let stored = stored_in(cache, pack, frame)?;
        let mut out = Vec::new();
        let upto = u32::try_from(end).unwrap_or(u32::MAX);
        let prefix = cairn_format::frame::decompress_prefix(
            stored,
            frame.compression,
            frame.raw_len,
            upto,
            &mut out,
        )
        .map_err(|e| self.check.damaged(pack, e))?;
        // A frame stored raw comes back as a slice of `stored`; a decompressed one fills `out`.
        let raw = match frame.compression {
            Compression::None => prefix.to_vec(),
            Compression::Zstd => {
                let len = prefix.len();
                out.truncate(len);
                out
            }
        };
        self.check.blobs(pack, &raw, blobs)?;
        Ok(raw)
    }

    /// Read and decode a tree blob, its files' content filled in from their content lists.
    pub fn load_tree(&mut self, id: &Id) -> Result<cairn_format::tree::Tree> {
        let bytes = self.load(id)?;
        let mut tree = cairn_format::tree::Tree::decode(&bytes)
            .map_err(|e| Error::damaged(format!("tree blob {id}"), e))?;
        crate::content_lists::resolve(self, id, &mut tree)?;
        Ok(tree)
    }

    /// A tree blob decoded as stored: files with content lists keep them unread (their
    /// `content` empty). For walks that need only the entries.
    pub fn load_tree_unresolved(&mut self, id: &Id) -> Result<cairn_format::tree::Tree> {
        let bytes = self.load(id)?;
        cairn_format::tree::Tree::decode(&bytes)
            .map_err(|e| Error::damaged(format!("tree blob {id}"), e))
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
