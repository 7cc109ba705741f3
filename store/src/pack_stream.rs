//! `check --read-data`'s pass over one pack, frame by frame in bounded memory.
//!
//! The stored object is read in order, a window of age chunks at a time, into one buffer:
//! each window is hashed (the pack's name is the blake3 of its stored bytes), authenticated
//! and decrypted where it was read, and every indexed frame it completes is decompressed (into
//! a second, reused buffer) and each of its indexed blobs checked against its keyed hash. What
//! no pending frame needs is dropped before the next window, so a reader holds a window and
//! the frame straddling it rather than the whole pack; the trailer, at the plaintext's end,
//! is what is left at the end and is checked against the index entries last.
//!
//! A pass that finds anything wrong does not say what: [`verify`] answers `None` and the
//! caller checks the pack again as a whole to name the cause, with the same precedence as
//! before (name, decryption, trailer, index placement, blob), so damage is reported exactly as
//! it always was and the pass over an intact pack is the only one that has to be fast.

use crate::backend::ReadSeek;
use crate::index::{Location, PackInfo};
use crate::repo::Repository;
use crate::{Error, Result};
use cairn_format::pack::{self, BlobEntry, FOOTER_LEN};
use cairn_format::payload::{Payload, CHUNK};
use cairn_format::Id;
use std::cell::RefCell;
use std::collections::HashSet;
use std::io::SeekFrom;

/// Plaintext per window read from local storage (a system call each; small enough to stay in
/// the CPU's cache between decryption and decompression).
pub const LOCAL_WINDOW: u64 = 8 * CHUNK;
/// Plaintext per window read from remote storage (a request each).
pub const REMOTE_WINDOW: u64 = 64 * CHUNK;

thread_local! {
    /// Each reader's window buffer and frame buffer, reused from pack to pack.
    static BUFFERS: RefCell<(Vec<u8>, Vec<u8>)> = const { RefCell::new((Vec::new(), Vec::new())) };
}

/// Read the pack at `path` (`info`) in windows of `window` plaintext bytes and verify its name,
/// every chunk, every blob of `entries` and that they are where its trailer puts them.
/// `Some(blobs checked)` when all of it holds, `None` when anything does not (the pack is to
/// be checked as a whole for the cause); an error only when storage could not be read.
pub fn verify(
    repo: &Repository,
    path: &str,
    info: &PackInfo,
    entries: &[(Id, Location)],
    window: u64,
) -> Result<Option<u64>> {
    let mut entries = entries.to_vec();
    entries.sort_by_key(|(_, l)| (l.frame.offset, l.offset));
    BUFFERS.with_borrow_mut(|(buf, raw)| {
        let pass = Pass {
            repo,
            path,
            info,
            entries: &entries,
            window: window.max(CHUNK) / CHUNK * CHUNK,
        };
        pass.run(buf, raw)
    })
}

/// One pass over one pack.
struct Pass<'a> {
    repo: &'a Repository,
    path: &'a str,
    info: &'a PackInfo,
    /// Indexed blobs, in frame order.
    entries: &'a [(Id, Location)],
    /// Plaintext per window, a whole number of chunks.
    window: u64,
}

/// Why a pass stopped early.
enum Short {
    /// The object is shorter than it says: damage, named by the whole-pack check.
    Damage,
    /// Storage could not be read.
    Storage(Error),
}

impl Pass<'_> {
    fn run(&self, buf: &mut Vec<u8>, raw: &mut Vec<u8>) -> Result<Option<u64>> {
        let mut object = match self.repo.backend().open(self.path) {
            Ok(o) => o,
            Err(e) if e.is_storage_failure() => return Err(e),
            Err(_) => return Ok(None),
        };
        match self.pass(object.as_mut(), buf, raw) {
            Ok(v) => Ok(v),
            Err(Short::Damage) => Ok(None),
            Err(Short::Storage(e)) => Err(e),
        }
    }

    /// A failed read of the object.
    fn short(&self, e: std::io::Error) -> Short {
        match e.kind() {
            std::io::ErrorKind::UnexpectedEof => Short::Damage,
            _ => Short::Storage(Error::io("reading", self.path, e)),
        }
    }

    /// The header, then the payload; the name last.
    fn pass(
        &self,
        object: &mut dyn ReadSeek,
        buf: &mut Vec<u8>,
        raw: &mut Vec<u8>,
    ) -> std::result::Result<Option<u64>, Short> {
        let io = |e| self.short(e);
        let len = object.seek(SeekFrom::End(0)).map_err(io)?;
        // An object of another size than indexed is damage (and what the pass holds stays
        // within the indexed size, which the caller bounds).
        if len != self.info.size {
            return Ok(None);
        }
        object.seek(SeekFrom::Start(0)).map_err(io)?;
        let ids = self
            .repo
            .pack_identities(self.info.kind)
            .map_err(Short::Storage)?;
        let Ok(payload) = Payload::open(&mut &mut *object, len, &ids) else {
            return Ok(None);
        };
        let Some(start) = payload.chunks_for(0..0).map(|c| c.stored.start) else {
            return Ok(None);
        };
        // The header, hashed as stored (age has parsed it from the same bytes).
        let mut hasher = blake3::Hasher::new();
        buf.resize(buf.len().max(start as usize), 0);
        object.seek(SeekFrom::Start(0)).map_err(io)?;
        object.read_exact(&mut buf[..start as usize]).map_err(io)?;
        hasher.update(&buf[..start as usize]);
        let verified = self.frames(object, &payload, &mut hasher, start, buf, raw)?;
        if Id(*hasher.finalize().as_bytes()) != self.info.id {
            return Ok(None);
        }
        Ok(verified)
    }

    /// Read, hash and decrypt the payload window by window from stored offset `start`,
    /// checking each frame once complete, then the trailer.
    fn frames(
        &self,
        object: &mut dyn ReadSeek,
        payload: &Payload,
        hasher: &mut blake3::Hasher,
        start: u64,
        buf: &mut Vec<u8>,
        raw: &mut Vec<u8>,
    ) -> std::result::Result<Option<u64>, Short> {
        let io = |e| self.short(e);
        let key = self.repo.chunk_id_key();
        let total = payload.len();
        // buf[..valid] is the plaintext from `origin` on.
        let (mut origin, mut valid) = (0u64, 0usize);
        // The next entry to check, and the end of the last frame checked.
        let (mut next, mut checked_to) = (0usize, 0u64);
        let (mut hashed, mut at) = (start, 0u64);
        let mut held = Vec::new();
        object.seek(SeekFrom::Start(start)).map_err(io)?;
        loop {
            let end = (at + self.window).min(total);
            let Some(c) = payload.chunks_for(at..end) else {
                return Ok(None);
            };
            if c.stored.start != hashed || c.skip != 0 {
                return Ok(None);
            }
            let n = (c.stored.end - c.stored.start) as usize;
            if buf.len() < valid + n {
                buf.resize(valid + n, 0);
            }
            let piece = &mut buf[valid..valid + n];
            object.read_exact(piece).map_err(io)?;
            hasher.update(piece);
            hashed = c.stored.end;
            let Ok(plain) = payload.decrypt_in_place(piece, c.first) else {
                return Ok(None);
            };
            valid += plain;
            // Every frame now complete.
            while let Some((_, loc)) = self.entries.get(next) {
                let frame = loc.frame;
                let frame_end = frame.offset + u64::from(frame.stored_len);
                if frame_end > origin + valid as u64 {
                    break;
                }
                let Some(stored) = frame
                    .offset
                    .checked_sub(origin)
                    .and_then(|from| buf.get(from as usize..(frame_end - origin) as usize))
                else {
                    return Ok(None);
                };
                let Ok(bytes) = cairn_format::frame::decompress_into(
                    stored,
                    frame.compression,
                    frame.raw_len,
                    raw,
                ) else {
                    return Ok(None);
                };
                // The frame's blobs, hashed together (equal pages side by side).
                let in_frame = self.entries[next..]
                    .iter()
                    .take_while(|(_, l)| l.frame == frame)
                    .map(|(id, l)| (id, l.offset, l.len));
                held.clear();
                key.holds(bytes, in_frame, &mut held);
                if held.contains(&false) {
                    return Ok(None);
                }
                next += held.len();
                checked_to = checked_to.max(frame_end);
            }
            // Keep what a pending frame or the trailer (after the last frame) may need.
            let keep = match self.entries.get(next) {
                Some((_, l)) => l.frame.offset,
                None => checked_to,
            };
            let drop = usize::try_from(keep.saturating_sub(origin))
                .unwrap_or(usize::MAX)
                .min(valid);
            if drop > 0 {
                buf.copy_within(drop..valid, 0);
                valid -= drop;
                origin += drop as u64;
            }
            at = end;
            if at >= total {
                break;
            }
        }
        let len = object.seek(SeekFrom::End(0)).map_err(io)?;
        if hashed != len || next < self.entries.len() || origin + valid as u64 != total {
            return Ok(None);
        }
        Ok(self.trailer(&buf[..valid], origin, total))
    }

    /// Check the trailer (in `tail`, the plaintext from `origin` to its end at `total`) and
    /// that it places every entry where the index does.
    fn trailer(&self, tail: &[u8], origin: u64, total: u64) -> Option<u64> {
        let footer = tail.get(tail.len().checked_sub(FOOTER_LEN)?..)?;
        let range = pack::trailer_range(footer, total).ok()?;
        let bytes = tail.get(
            usize::try_from(range.start.checked_sub(origin)?).ok()?
                ..usize::try_from(range.end - origin).ok()?,
        )?;
        let trailer = pack::decode_trailer(bytes, range.start).ok()?;
        let listed: HashSet<&BlobEntry> = trailer.blobs.iter().collect();
        self.entries
            .iter()
            .all(|(id, loc)| {
                listed.contains(&BlobEntry {
                    id: *id,
                    frame: loc.frame,
                    offset: loc.offset,
                    len: loc.len,
                })
            })
            .then_some(self.entries.len() as u64)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::saver::Saver;
    use cairn_format::pack::PackKind;
    use std::collections::HashMap;
    use std::sync::Arc;

    /// Packs of blobs that compress (frames of several chunks) and blobs that do not.
    fn repo_with_packs(dir: &std::path::Path) -> (Arc<Repository>, Index) {
        let identity = age::x25519::Identity::generate();
        let repo = crate::test_repo::create(dir, &identity, Some(1 << 20));
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        let mut noise = 0x9e37_79b9_7f4a_7c15u64;
        for i in 0..600u32 {
            let blob: Vec<u8> = if i % 3 == 0 {
                crate::test_repo::noise(&mut noise, 20_000)
            } else {
                format!("blob {i} ")
                    .repeat(1 + i as usize % 700)
                    .into_bytes()
            };
            saver.add_blob(PackKind::Data, blob).unwrap();
        }
        saver.finish().unwrap();
        let index = Index::load(&repo).unwrap();
        (repo, index)
    }

    fn by_pack(index: &Index) -> HashMap<u32, Vec<(Id, Location)>> {
        let mut by_pack: HashMap<u32, Vec<(Id, Location)>> = HashMap::new();
        for (id, loc) in index.iter() {
            by_pack.entry(loc.pack).or_default().push((*id, loc));
        }
        by_pack
    }

    #[test]
    fn intact_packs_verify_in_any_window_and_damage_does_not() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, index) = repo_with_packs(dir.path());
        let packs = by_pack(&index);
        assert!(packs.len() > 2, "several packs");
        for (n, entries) in &packs {
            let info = index.pack(*n);
            let path = Repository::pack_path(info.kind, &info.id);
            for window in [CHUNK, 3 * CHUNK, LOCAL_WINDOW, REMOTE_WINDOW] {
                let got = verify(&repo, &path, &info, entries, window).unwrap();
                assert_eq!(got, Some(entries.len() as u64), "{path}, window {window}");
            }
            // An entry the trailer does not list, or a wrong id: not verified.
            let mut moved = entries.clone();
            moved[0].1.offset += 1;
            assert_eq!(
                verify(&repo, &path, &info, &moved, LOCAL_WINDOW).unwrap(),
                None
            );
            let mut renamed = entries.clone();
            renamed[0].0 = Id([7; 32]);
            assert_eq!(
                verify(&repo, &path, &info, &renamed, LOCAL_WINDOW).unwrap(),
                None
            );
        }
        // One flipped byte anywhere in a pack: not verified.
        let (n, entries) = packs.iter().next().unwrap();
        let info = index.pack(*n);
        let path = Repository::pack_path(info.kind, &info.id);
        let file = dir.path().join(&path);
        let good = std::fs::read(&file).unwrap();
        for at in [10, good.len() / 2, good.len() - 3] {
            let mut bad = good.clone();
            bad[at] ^= 1;
            std::fs::write(&file, &bad).unwrap();
            assert_eq!(
                verify(&repo, &path, &info, entries, LOCAL_WINDOW).unwrap(),
                None
            );
        }
        // An object grown past its indexed size (bytes appended): not verified, and not read.
        let mut grown = good.clone();
        grown.extend_from_slice(&[0u8; 4096]);
        std::fs::write(&file, &grown).unwrap();
        assert_eq!(
            verify(&repo, &path, &info, entries, LOCAL_WINDOW).unwrap(),
            None
        );
        std::fs::remove_file(&file).unwrap();
        assert_eq!(
            verify(&repo, &path, &info, entries, LOCAL_WINDOW).unwrap(),
            None
        );
    }
}
