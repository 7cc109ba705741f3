//! A large file's restore plan, made and kept in unnamed temporary files rather than memory.
//!
//! Each use of a blob is located in file order (its offset in the file is the sum of the
//! lengths before it) and pushed, with its pack, frame and place, to an external sort
//! ([`crate::record_sort`]) in pack order, the order of the in-memory plan. The sorted records
//! are read back once: the frames, spans and packs ([`super::content::Layout`]: a few dozen
//! bytes per frame of 256 KiB) stay in memory, each use's id, place in its frame and offset in
//! the file (48 bytes) go to the plan file, which the workers read a frame's pieces at a time.
//!
//! The ids come a batch at a time ([`Source`]: a file's content lists one by one). Where a
//! restore's partial index set the file's entries aside on disk, they are located by two more
//! sorts: the ids by id, read beside the entries; the located uses in file order, for their
//! offsets.
//!
//! Memory: one batch of ids (a content list: at most 2 MiB as writers make them), a sort's run
//! (4 MiB) and its read buffers, and nothing per blob. Temporary space: 121 bytes per use of a
//! blob (146 at most while entries set aside are joined).

use super::content::{Layout, Placed};
use crate::disk_space::reserve;
use crate::entry_file::{frame_ref, EntryFile};
use crate::index::{Index, Location};
use crate::loader::Loader;
use crate::record_sort::{temp_file_error, Record, Sorter, RUN_BYTES};
use crate::{Error, Result};
use cairn_format::frame::Compression;
use cairn_format::pack::FrameRef;
use cairn_format::Id;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::ops::Range;
use std::os::unix::fs::FileExt;

/// Files of at least this many blobs are planned on disk (the bbolt summaries' threshold:
/// below it, the in-memory plan costs at most ~130 KiB).
pub const LARGE_FILE_BLOBS: usize = 8192;

/// What the temporary files hold, for errors.
const WHAT: &str = "a large file's restore plan";

/// Whether a file of `ids` is planned on disk.
pub(super) fn wanted(ids: &[Id]) -> bool {
    ids.len() >= LARGE_FILE_BLOBS
}

/// One use of a blob, in pack order: pack number, frame (its offset, then the rest of it: two
/// listings may describe one offset differently), offset in the frame, position in the file's
/// list (the sort key, in the in-memory plan's order), then what the writer needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Use {
    pack: u32,
    frame_offset: u64,
    stored_len: u32,
    raw_len: u32,
    zstd: bool,
    offset: u32,
    seq: u32,
    len: u32,
    at: u64,
    id: Id,
}

impl Use {
    fn frame(&self) -> FrameRef {
        frame_ref(self.frame_offset, self.stored_len, self.raw_len, self.zstd)
    }
}

fn u32_at(b: &[u8], i: usize) -> u32 {
    u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"))
}

fn u64_at(b: &[u8], i: usize) -> u64 {
    u64::from_le_bytes(b[i..i + 8].try_into().expect("8 bytes"))
}

fn id_at(b: &[u8], i: usize) -> Id {
    Id(b[i..i + 32].try_into().expect("32 bytes"))
}

impl Record for Use {
    const LEN: usize = 4 + 8 + 4 + 4 + 4 + 4 + 1 + 4 + 8 + 32;

    fn encode(&self, out: &mut [u8]) {
        out[0..4].copy_from_slice(&self.pack.to_le_bytes());
        out[4..12].copy_from_slice(&self.frame_offset.to_le_bytes());
        out[12..16].copy_from_slice(&self.offset.to_le_bytes());
        out[16..20].copy_from_slice(&self.seq.to_le_bytes());
        out[20..24].copy_from_slice(&self.stored_len.to_le_bytes());
        out[24..28].copy_from_slice(&self.raw_len.to_le_bytes());
        out[28] = u8::from(self.zstd);
        out[29..33].copy_from_slice(&self.len.to_le_bytes());
        out[33..41].copy_from_slice(&self.at.to_le_bytes());
        out[41..73].copy_from_slice(&self.id.0);
    }

    fn decode(b: &[u8]) -> Use {
        Use {
            pack: u32_at(b, 0),
            frame_offset: u64_at(b, 4),
            offset: u32_at(b, 12),
            seq: u32_at(b, 16),
            stored_len: u32_at(b, 20),
            raw_len: u32_at(b, 24),
            zstd: b[28] == 1,
            len: u32_at(b, 29),
            at: u64_at(b, 33),
            id: id_at(b, 41),
        }
    }
}

/// A placed piece in the plan file: id, offset in the frame, length, offset in the file.
const PLACED: usize = 32 + 4 + 4 + 8;

fn encode_placed(p: &Placed, out: &mut [u8]) {
    out[..32].copy_from_slice(&p.id.0);
    out[32..36].copy_from_slice(&p.offset.to_le_bytes());
    out[36..40].copy_from_slice(&p.len.to_le_bytes());
    out[40..48].copy_from_slice(&p.at.to_le_bytes());
}

fn decode_placed(b: &[u8]) -> Placed {
    Placed {
        id: id_at(b, 0),
        offset: u32_at(b, 32),
        len: u32_at(b, 36),
        at: u64_at(b, 40),
    }
}

/// Every use of a blob of a file, in pack order, on disk.
pub(super) struct PlanFile {
    file: File,
}

impl PlanFile {
    /// Pieces `range` (numbered in pack order) into `out`, replacing what it holds.
    pub(super) fn read(&self, range: Range<usize>, out: &mut Vec<Placed>) -> Result<()> {
        let mut bytes = vec![0u8; range.len() * PLACED];
        self.file
            .read_exact_at(&mut bytes, (range.start * PLACED) as u64)
            .map_err(|e| temp_file_error(WHAT, "reading", e))?;
        out.clear();
        out.extend(bytes.chunks_exact(PLACED).map(decode_placed));
        Ok(())
    }
}

/// The temporary files a plan of `uses` uses of a blob needs (the sort's runs, the plan),
/// with room reserved for all of it. Where they cannot be made or hold it (a full TMPDIR), the
/// plan is made in memory (logged), unless `index` located the file's blobs on disk.
pub(super) fn temporaries(index: &Index, uses: usize) -> Result<Option<(File, File)>> {
    let made = || -> Result<(File, File)> {
        let create = |e| temp_file_error(WHAT, "creating", e);
        let room = |e| temp_file_error(WHAT, "making room for", e);
        let (runs, plan) = (
            tempfile::tempfile().map_err(create)?,
            tempfile::tempfile().map_err(create)?,
        );
        // The runs are written only when they are more than one.
        if uses > RUN_BYTES / std::mem::size_of::<Use>() {
            reserve(&runs, (uses * Use::LEN) as u64).map_err(room)?;
        }
        reserve(&plan, (uses * PLACED) as u64).map_err(room)?;
        Ok((runs, plan))
    };
    match made() {
        Ok(files) => Ok(Some(files)),
        Err(e) if index.aside().is_some() => Err(e),
        Err(e) => {
            tracing::warn!("{e}; the plan is held in memory instead");
            Ok(None)
        }
    }
}

/// A file's ids in file order: each call of `f` hands it the next batch (a content list).
pub(super) type Source<'s> = &'s mut dyn FnMut(&mut dyn FnMut(&[Id]) -> Result<()>) -> Result<()>;

/// The plan of the ids `source` hands over in the [`temporaries`] `files`, its frames laid out
/// in `layout`; the file's length.
pub(super) fn build(
    loader: &Loader,
    source: Source<'_>,
    layout: &mut Layout,
    (runs, plan): (File, File),
) -> Result<(PlanFile, u64)> {
    let mut uses = Sorter::in_file(WHAT, runs);
    match loader.index().aside() {
        Some(aside) => join(loader.index(), aside, source, &mut uses)?,
        None => in_file_order(loader.index(), source, &mut uses)?,
    }
    let mut sorted = uses.finish()?;
    let mut out = BufWriter::with_capacity(256 << 10, plan);
    let mut rec = [0u8; PLACED];
    let (mut i, mut len) = (0usize, 0u64);
    while let Some(u) = sorted.next_record()? {
        let at = u.at;
        len = len.max(at + u64::from(u.len));
        layout.add(i, u.pack, u.frame(), at);
        let placed = Placed {
            id: u.id,
            offset: u.offset,
            len: u.len,
            at,
        };
        encode_placed(&placed, &mut rec);
        out.write_all(&rec)
            .map_err(|e| temp_file_error(WHAT, "writing", e))?;
        i += 1;
    }
    let file = out
        .into_inner()
        .map_err(|e| temp_file_error(WHAT, "writing", e.into_error()))?;
    Ok((PlanFile { file }, len))
}

/// The use of blob `seq` of the file, `id` at `loc`, placed at `at` (when known).
fn use_of(seq: u32, id: &Id, loc: Location, at: u64) -> Use {
    Use {
        pack: loc.pack,
        frame_offset: loc.frame.offset,
        offset: loc.offset,
        seq,
        stored_len: loc.frame.stored_len,
        raw_len: loc.frame.raw_len,
        zstd: loc.frame.compression == Compression::Zstd,
        len: loc.len,
        at,
        id: *id,
    }
}

/// The next position in a file's list, refusing a list longer than a position counts.
fn next_seq(seq: &mut u32) -> Result<u32> {
    let this = *seq;
    *seq = seq
        .checked_add(1)
        .ok_or_else(|| Error::Invalid(format!("a file of more than {} blobs", u32::MAX)))?;
    Ok(this)
}

/// Locate the ids of `source` in `index` (in memory) in file order, each use with its offset
/// in the file.
fn in_file_order(index: &Index, source: Source<'_>, uses: &mut Sorter<Use>) -> Result<()> {
    let (mut seq, mut at) = (0u32, 0u64);
    source(&mut |ids| {
        for id in ids {
            let loc = index.get(id).ok_or(Error::BlobMissing(*id))?;
            uses.push(use_of(next_seq(&mut seq)?, id, loc, at))?;
            at += u64::from(loc.len);
        }
        Ok(())
    })
}

/// A blob of the file to locate: its id and position in the file's list, sorted by id to be
/// read beside the entries set aside (which are in id order).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Wanted {
    id: Id,
    seq: u32,
}

impl Record for Wanted {
    const LEN: usize = 32 + 4;

    fn encode(&self, out: &mut [u8]) {
        out[..32].copy_from_slice(&self.id.0);
        out[32..36].copy_from_slice(&self.seq.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Wanted {
        Wanted {
            id: id_at(b, 0),
            seq: u32_at(b, 32),
        }
    }
}

/// A located use, sorted in file order (its position in the file's list) to learn its offset
/// in the file from the lengths before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct InFileOrder(Use);

impl Ord for InFileOrder {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (self.0.seq, self.0).cmp(&(other.0.seq, other.0))
    }
}

impl PartialOrd for InFileOrder {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

impl Record for InFileOrder {
    const LEN: usize = Use::LEN;

    fn encode(&self, out: &mut [u8]) {
        self.0.encode(out)
    }

    fn decode(b: &[u8]) -> InFileOrder {
        InFileOrder(Use::decode(b))
    }
}

/// Locate the ids of `source` by reading `aside` once in id order beside them sorted (those
/// not there in `index`), then place each use in file order. Three external sorts (by id, in
/// file order, and `uses` in pack order): nothing per blob is held in memory.
fn join(
    index: &Index,
    aside: &EntryFile,
    source: Source<'_>,
    uses: &mut Sorter<Use>,
) -> Result<()> {
    let mut wanted = Sorter::new(WHAT);
    let mut seq = 0u32;
    source(&mut |ids| {
        ids.iter().try_for_each(|&id| {
            wanted.push(Wanted {
                id,
                seq: next_seq(&mut seq)?,
            })
        })
    })?;
    let mut wanted = wanted.finish()?;
    let mut located = Sorter::new(WHAT);
    // The first missing in file order is reported, as by the in-memory plan.
    let mut first_missing: Option<Wanted> = None;
    let mut entries = aside.reader();
    let mut entry = entries.next_entry()?;
    while let Some(w) = wanted.next_record()? {
        while let Some((e, _)) = &entry {
            if *e >= w.id {
                break;
            }
            entry = entries.next_entry()?;
        }
        let loc = match &entry {
            Some((e, loc)) if *e == w.id => Some(*loc),
            _ => index.get(&w.id),
        };
        match loc {
            Some(loc) => located.push(InFileOrder(use_of(w.seq, &w.id, loc, 0)))?,
            None if first_missing.is_none_or(|m| w.seq < m.seq) => first_missing = Some(w),
            None => {}
        }
    }
    if let Some(w) = first_missing {
        return Err(Error::BlobMissing(w.id));
    }
    drop(wanted);
    let mut located = located.finish()?;
    let mut at = 0u64;
    while let Some(InFileOrder(mut u)) = located.next_record()? {
        u.at = at;
        at += u64::from(u.len);
        uses.push(u)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::super::content::{self, FileContent, Plan, Spans};
    use super::*;
    use crate::content_lists::UnreadLists;
    use crate::saver::Saver;
    use crate::test_repo;
    use cairn_format::frame::Compression;
    use cairn_format::index::IndexRecord;
    use cairn_format::pack::{BlobEntry, PackKind};
    use cairn_format::tree::{Node, NodeKind, Tree};
    use std::borrow::Cow;
    use std::sync::Arc;

    /// A repository with a file stored: its directory, the repository, the file's tree, its
    /// ids and its bytes.
    type StoredFile = (
        tempfile::TempDir,
        Arc<crate::Repository>,
        Id,
        Vec<Id>,
        Vec<u8>,
    );

    /// A new repository of 1 MiB packs and a saver into it.
    fn small_packs() -> (tempfile::TempDir, Arc<crate::Repository>, Saver) {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = test_repo::create(dir.path(), &identity, Some(1 << 20));
        let saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        (dir, repo, saver)
    }

    /// A repository of small packs and a file of more than [`LARGE_FILE_BLOBS`] uses of
    /// blobs: distinct ones, some used again far apart, and a blob of zeros used often. The
    /// repository's directory, the repository, the file's tree and its ids.
    fn large_file() -> StoredFile {
        let (dir, repo, mut saver) = small_packs();
        let mut seed = 7u64;
        let (mut ids, mut bytes) = (Vec::new(), Vec::new());
        let zero = saver.add_blob(PackKind::Data, vec![0; 300]).unwrap();
        let mut distinct = Vec::new();
        for i in 0..(LARGE_FILE_BLOBS + 1500) {
            let (id, b) = if i % 11 == 3 {
                (zero, vec![0; 300])
            } else if i % 13 == 5 && distinct.len() > 100 {
                let (id, b): &(Id, Vec<u8>) = &distinct[i % 97];
                (*id, b.clone())
            } else {
                let b = test_repo::noise(&mut seed, 200 + i % 400);
                let id = saver.add_blob(PackKind::Data, b.clone()).unwrap();
                distinct.push((id, b.clone()));
                (id, b)
            };
            ids.push(id);
            bytes.extend_from_slice(&b);
        }
        let mut node = Node::new(b"large".to_vec(), NodeKind::File);
        node.content = ids.clone();
        let small_blob = distinct[5].0;
        let mut small = Node::new(b"small".to_vec(), NodeKind::File);
        small.content = vec![small_blob, zero];
        let tree = saver
            .save_tree(&mut Tree {
                nodes: vec![node, small],
            })
            .unwrap();
        saver.finish().unwrap();
        (dir, repo, tree, ids, bytes)
    }

    /// The placements, frames and pack order of `plan`.
    fn shape(plan: &Plan) -> (Vec<Placed>, usize, u64) {
        let mut all = Vec::new();
        plan.each_placement(|p| {
            all.push(*p);
            Ok(())
        })
        .unwrap();
        (all, plan.frames(), plan.len)
    }

    /// `plan` written into a new file, and the bytes a follower was fed.
    fn written(loader: &Loader, plan: &Plan) -> Result<(Vec<u8>, Vec<u8>)> {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        let mut fed = Vec::new();
        let mut feed = |p: super::super::follow::Piece| fed.extend_from_slice(&p);
        content::write(loader, plan, &file, &|_| {}, Some(&mut feed))?;
        Ok((std::fs::read(dir.path().join("f")).unwrap(), fed))
    }

    /// The three ways a large file is planned: in memory, on disk from the index in memory,
    /// on disk from the entries set aside by a restore's partial index.
    fn loaders(repo: &Arc<crate::Repository>, tree: Id) -> (Loader, Loader) {
        let whole = Arc::new(Index::load(repo).unwrap());
        let part = crate::partial_index::for_trees_above(repo, &[tree], 0, true).unwrap();
        assert!(part
            .aside()
            .is_some_and(|a| a.len() >= LARGE_FILE_BLOBS as u64 / 2));
        // In memory: the tree and the small file's two blobs, not the large file's.
        assert!(part.len() < 10, "{} entries in memory", part.len());
        for b in part.aside().unwrap().reader_all() {
            let (a, w) = (part.get(&b).unwrap(), whole.get(&b).unwrap());
            assert_eq!(part.pack(a.pack).id, whole.pack(w.pack).id);
            assert_eq!((a.frame, a.offset, a.len), (w.frame, w.offset, w.len));
        }
        (
            Loader::new(repo.clone(), whole),
            Loader::new(repo.clone(), Arc::new(part)),
        )
    }

    fn plans(whole: &Loader, part: &Loader, ids: &[Id]) -> [Result<Plan>; 3] {
        let spans = Spans::LOCAL;
        [
            Plan::in_memory(whole, Cow::Borrowed(ids), spans),
            Plan::with_spans(whole, FileContent::Ids(Cow::Borrowed(ids)), spans),
            Plan::with_spans(part, FileContent::Ids(Cow::Owned(ids.to_vec())), spans),
        ]
    }

    #[test]
    fn a_plan_on_disk_places_and_writes_what_the_one_in_memory_does() {
        let (_dir, repo, tree, ids, bytes) = large_file();
        let (whole, part) = loaders(&repo, tree);
        let [memory, from_index, from_aside] = plans(&whole, &part, &ids).map(Result::unwrap);
        assert!(matches!(memory.pieces_kind(), "memory"));
        assert!(matches!(from_index.pieces_kind(), "disk"));
        assert!(matches!(from_aside.pieces_kind(), "disk"));
        let want = shape(&memory);
        assert_eq!(want.2, bytes.len() as u64);
        assert!(want.1 > 10, "several frames: {}", want.1);
        assert_eq!(shape(&from_index), want);
        assert_eq!(shape(&from_aside), want);
        let order = memory.pack_order(whole.index());
        assert_eq!(from_index.pack_order(whole.index()), order);
        assert_eq!(from_aside.pack_order(part.index()), order);
        for (loader, plan) in [
            (&whole, &memory),
            (&whole, &from_index),
            (&part, &from_aside),
        ] {
            let (file, fed) = written(loader, plan).unwrap();
            assert!(file == bytes, "the file as stored");
            assert!(fed == bytes, "fed in file order");
        }
    }

    #[test]
    fn a_missing_blob_and_a_damaged_pack_are_the_same_errors() {
        let (dir, repo, tree, mut ids, _) = large_file();
        let (whole, part) = loaders(&repo, tree);
        // Two unknown blobs: the first in file order is named.
        let (first, last) = (test_repo::spread_id(1), test_repo::spread_id(2));
        ids.insert(10, first);
        ids.insert(9000, last);
        for plan in plans(&whole, &part, &ids) {
            let e = plan.err().expect("a missing blob");
            assert!(matches!(e, Error::BlobMissing(id) if id == first), "{e}");
        }
        ids.remove(9000);
        ids.remove(10);
        // A byte flipped in the pack of one blob in the middle of the file.
        let loc = whole.index().get(&ids[5000]).unwrap();
        let pack = whole.index().pack(loc.pack).id;
        let path = dir
            .path()
            .join(crate::Repository::pack_path(PackKind::Data, &pack));
        let mut stored = std::fs::read(&path).unwrap();
        let middle = stored.len() / 2;
        stored[middle] ^= 1;
        std::fs::write(&path, stored).unwrap();
        let errors: Vec<String> = plans(&whole, &part, &ids)
            .into_iter()
            .zip([&whole, &whole, &part])
            .map(|(plan, loader)| written(loader, &plan.unwrap()).unwrap_err().to_string())
            .collect();
        assert!(errors[0].contains(&pack.to_hex()), "{}", errors[0]);
        assert_eq!(errors[1], errors[0]);
        assert_eq!(errors[2], errors[0]);
    }

    /// Listings found first that do not hold their blobs (another blob's place in the same
    /// frame, a frame said to be compressed otherwise than it is, frames beyond the end of the
    /// pack) are passed over for the other listing of each blob: every way of writing the
    /// large file writes it whole and feeds it in order. With no other listing, the first
    /// listing's damage is the error, as before.
    #[test]
    fn listings_that_do_not_hold_their_blobs_are_passed_over() {
        let (_dir, repo, tree, ids, bytes) = large_file();
        let whole = Index::load(&repo).unwrap();
        let numbers: std::collections::HashSet<u32> = (0..whole.packs().len() as u32).collect();
        let honest = whole.records_for(&numbers);
        let mut claims = honest.clone();
        for (n, pack) in claims.iter_mut().enumerate() {
            // A frame stored as it is said to be compressed (as valid a claim as any: a
            // frame said to be stored as it is must be as long stored as raw).
            let flip = |_: Compression| Compression::Zstd;
            match n % 4 {
                // Each blob at the place of the next one in its frame, with its own length.
                0 => {
                    let places: Vec<_> = pack.blobs.iter().map(|b| (b.frame, b.offset)).collect();
                    for (i, b) in pack.blobs.iter_mut().enumerate() {
                        let (frame, offset) = places[(i + 1) % places.len()];
                        if frame == b.frame && offset + b.len <= frame.raw_len {
                            b.offset = offset;
                        }
                    }
                }
                // Frames said to be stored the other way.
                1 => {
                    for b in &mut pack.blobs {
                        b.frame.compression = flip(b.frame.compression);
                    }
                }
                // Frames past the end of the pack.
                2 => {
                    for b in &mut pack.blobs {
                        b.frame.offset += pack.size;
                    }
                    pack.size *= 3;
                }
                // Claims beside honest listings: every other blob in its frame said to be
                // stored otherwise (honest blobs share those frames), and the last in a
                // frame that starts where the last honest one ends and runs past the end of
                // the pack (read in one run with the honest frames before it).
                _ => {
                    let end = pack
                        .blobs
                        .iter()
                        .map(|b| b.frame.offset + u64::from(b.frame.stored_len))
                        .max()
                        .unwrap();
                    let mut kept: Vec<_> = pack.blobs.iter().copied().step_by(2).collect();
                    for b in &mut kept {
                        // Shorter, so that it sorts before the honest description.
                        b.frame.compression = flip(b.frame.compression);
                        b.frame.stored_len -= 1;
                    }
                    // And every fourth blob at the place of the one two after it in the
                    // same frame, described as the honest blobs are (in their job).
                    for i in (1..pack.blobs.len().saturating_sub(2)).step_by(4) {
                        let (b, other) = (pack.blobs[i], pack.blobs[i + 2]);
                        if b.frame == other.frame && other.offset + b.len <= b.frame.raw_len {
                            kept.push(BlobEntry {
                                offset: other.offset,
                                ..b
                            });
                        }
                    }
                    let mut last = *pack.blobs.last().unwrap();
                    last.frame.offset = end;
                    last.frame.stored_len = pack.size as u32;
                    last.frame.compression = Compression::Zstd;
                    last.offset = 0;
                    kept.retain(|b| b.id != last.id);
                    kept.push(last);
                    pack.blobs = kept;
                    pack.size *= 3;
                }
            }
        }
        for c in &claims {
            c.validate().expect("claims an index object may hold");
        }
        let planted = Arc::new(Index::from_packs(claims.iter().chain(&honest)));
        assert!(planted.has_alternatives());
        let loader = Loader::new(repo.clone(), planted);
        for plan in [
            Plan::in_memory(&loader, Cow::Borrowed(&ids), Spans::LOCAL),
            Plan::with_spans(&loader, FileContent::Ids(Cow::Borrowed(&ids)), Spans::LOCAL),
        ] {
            let (file, fed) = written(&loader, &plan.unwrap()).unwrap();
            assert!(file == bytes, "the file as stored");
            assert!(fed == bytes, "fed in file order");
        }
        // The claims in an index object read first, the large file's blobs set aside on disk
        // by a restore's partial index: there too the other listing is found.
        let listed = repo.backend().list("index").unwrap();
        let lowest = listed
            .iter()
            .filter_map(|o| crate::Repository::id_of_path(&o.path))
            .min()
            .unwrap();
        let record = IndexRecord {
            packs: claims.clone(),
        };
        loop {
            let id = repo.put_index(&record).unwrap();
            if id < lowest {
                break;
            }
            repo.backend().delete(&format!("index/{id}")).unwrap();
        }
        let part = crate::partial_index::for_trees_above(&repo, &[tree], 0, true).unwrap();
        let aside = part.aside().expect("the large file's entries set aside");
        assert!(aside.has_alternatives());
        // Lookups find the claims first.
        let claimed = ids.iter().filter(|id| {
            let (a, w) = (aside.get(id).unwrap(), whole.get(id).unwrap());
            (a.frame, a.offset) != (w.frame, w.offset)
        });
        assert!(claimed.count() > ids.len() / 4);
        let loader = Loader::new(repo.clone(), Arc::new(part));
        let plan = Plan::with_spans(
            &loader,
            FileContent::Ids(Cow::Owned(ids.clone())),
            Spans::LOCAL,
        );
        let (file, fed) = written(&loader, &plan.unwrap()).unwrap();
        assert!(
            file == bytes && fed == bytes,
            "the file as stored, from the entries set aside"
        );

        // A data pack's listings replaced by the claims about it (shifted offsets): no other
        // listing. Packs sort by their random ids, so the tree pack may come first.
        let n = (0..claims.len())
            .step_by(4)
            .find(|&n| claims[n].kind == PackKind::Data && claims[n].blobs != honest[n].blobs)
            .expect("a data pack with shifted claims");
        let mut only = honest.clone();
        only[n] = claims[n].clone();
        let claims_only = Loader::new(repo.clone(), Arc::new(Index::from_packs(&only)));
        assert!(!claims_only.index().has_alternatives());
        let plan = Plan::in_memory(&claims_only, Cow::Borrowed(&ids), Spans::LOCAL).unwrap();
        let e = written(&claims_only, &plan).unwrap_err();
        assert!(
            matches!(e, Error::BlobMismatch { .. } | Error::Damaged { .. }),
            "{e}"
        );
    }

    /// A file of three content lists (65,536 ids each as writers make them) drawn from a few
    /// thousand small blobs, one of zeros among them; a second file of the same ids with two
    /// unknown ones inserted. The repository's directory, the repository, the tree, the ids and
    /// the file's bytes.
    fn listed_file() -> StoredFile {
        let (dir, repo, mut saver) = small_packs();
        let mut seed = 11u64;
        let mut distinct: Vec<(Id, Vec<u8>)> = (0..3000)
            .map(|i| {
                let b = test_repo::noise(&mut seed, 16 + i % 64);
                (saver.add_blob(PackKind::Data, b.clone()).unwrap(), b)
            })
            .collect();
        let zero = vec![0; 48];
        distinct.push((saver.add_blob(PackKind::Data, zero.clone()).unwrap(), zero));
        let (mut ids, mut bytes) = (Vec::new(), Vec::new());
        for i in 0..(2 * 65_536 + 700) {
            let (id, b) = &distinct[(i * 7919) % distinct.len()];
            ids.push(*id);
            bytes.extend_from_slice(b);
        }
        let mut missing = ids.clone();
        missing.insert(70_000, test_repo::spread_id(2));
        missing.insert(10, test_repo::spread_id(1));
        let nodes = [(b"listed", &ids), (b"broken", &missing)].map(|(name, ids)| {
            let mut node = Node::new(name.to_vec(), NodeKind::File);
            node.content = ids.clone();
            node
        });
        let tree = saver
            .save_tree(&mut Tree {
                nodes: nodes.to_vec(),
            })
            .unwrap();
        saver.finish().unwrap();
        (dir, repo, tree, ids, bytes)
    }

    /// The file `name` of `tree`, its lists unread.
    fn lists_of(loader: &mut Loader, tree: Id, name: &[u8]) -> UnreadLists {
        let mut node = loader
            .load_tree_unresolved(&tree)
            .unwrap()
            .nodes
            .into_iter()
            .find(|n| n.name == name)
            .unwrap();
        assert!(node.content.is_empty(), "stored as lists");
        let lists = UnreadLists::take(loader, tree, &mut node).unwrap();
        assert_eq!(lists.count(), 3);
        lists
    }

    #[test]
    fn a_file_of_several_lists_is_planned_from_one_list_at_a_time() {
        let (_dir, repo, tree, ids, bytes) = listed_file();
        let mut whole = Loader::new(repo.clone(), Arc::new(Index::load(&repo).unwrap()));
        let part = crate::partial_index::for_trees_above(&repo, &[tree], 0, true).unwrap();
        // A file of several lists is located on disk, whatever its length.
        let aside = part.aside().expect("the lists' blobs are set aside").len();
        assert_eq!(aside, 3001);
        let mut part = Loader::new(repo.clone(), Arc::new(part));
        let spans = Spans::LOCAL;
        let memory = Plan::in_memory(&whole, Cow::Borrowed(&ids), spans).unwrap();
        let content = FileContent::Lists(Box::new(lists_of(&mut whole, tree, b"listed")));
        let from_index = Plan::with_spans(&whole, content, spans).unwrap();
        let content = FileContent::Lists(Box::new(lists_of(&mut part, tree, b"listed")));
        let from_aside = Plan::with_spans(&part, content, spans).unwrap();
        assert!(matches!(from_index.pieces_kind(), "disk"));
        assert!(matches!(from_aside.pieces_kind(), "disk"));
        let want = shape(&memory);
        assert_eq!(want.2, bytes.len() as u64);
        assert_eq!(shape(&from_index), want);
        assert_eq!(shape(&from_aside), want);
        for (loader, plan) in [(&whole, &from_index), (&part, &from_aside)] {
            let (file, fed) = written(loader, plan).unwrap();
            assert!(file == bytes, "the file as stored");
            assert!(fed == bytes, "fed in file order");
        }
        // Two unknown blobs, in the first and second lists: the first in file order is named.
        for loader in [&mut whole, &mut part] {
            let content = FileContent::Lists(Box::new(lists_of(loader, tree, b"broken")));
            let e = Plan::with_spans(loader, content, spans).err().unwrap();
            assert!(
                matches!(e, Error::BlobMissing(id) if id == test_repo::spread_id(1)),
                "{e}"
            );
        }
    }
}
