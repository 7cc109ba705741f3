//! The in-memory index: blob id → location, merged from every `index/<id>` object.
//!
//! Memory model: one fixed-size 44-byte entry per blob (32-byte id, frame number, offset in the
//! frame, length) in a vector sorted by id and searched by bisection; one 32-byte record per
//! frame (pack number and the frame's place in the pack) and one per pack. Nothing is hashed
//! per blob, so a million blobs cost ~45 MB (a hash map of ids to locations cost ~3× that).
//! Lookups first narrow the range with a table of where each value of the id's first 16 bits
//! starts, then bisect within it.

use crate::backend::ObjectInfo;
use crate::entry_file::EntryFile;
use crate::id_file::{IdFile, IdFileBuilder};
use crate::partial_index::WHOLE_BELOW;
use crate::repo::Repository;
use crate::{Error, Result};
use cairn_format::index::{IndexPack, IndexRecord};
use cairn_format::pack::{FrameRef, PackKind};
use cairn_format::Id;
use std::collections::{HashMap, HashSet};
use std::ops::Range;

/// Listings of `index/` tried when objects vanish between listing and reading.
const LOAD_ATTEMPTS: u32 = 3;
/// Largest index object accepted.
const MAX_INDEX_LEN: u64 = 1 << 30;

/// Where one blob is: pack number (into [`Index::packs`]), frame, offset and length.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Location {
    /// Index into [`Index::pack`].
    pub pack: u32,
    /// Frame in the pack.
    pub frame: FrameRef,
    /// Offset inside the uncompressed frame.
    pub offset: u32,
    /// Blob length.
    pub len: u32,
}

/// A pack known to the index.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PackInfo {
    /// Pack id.
    pub id: Id,
    /// Data or tree.
    pub kind: PackKind,
    /// Stored size.
    pub size: u64,
}

/// One blob: its id and where it is in its frame. 44 bytes.
#[derive(Debug, Clone, Copy)]
struct Entry {
    id: Id,
    /// Index into [`Index::frames`].
    frame: u32,
    offset: u32,
    len: u32,
}

/// One frame and the pack holding it.
#[derive(Debug, Clone, Copy)]
struct FrameSlot {
    pack: u32,
    frame: FrameRef,
}

/// Bits of an id's prefix the lookup table is built on.
const PREFIX_BITS: u32 = 16;

/// Blob locations for the whole repository.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    pack_numbers: HashMap<Id, u32>,
    frames: Vec<FrameSlot>,
    /// Sorted by id, one entry per id (the first pack added wins).
    entries: Vec<Entry>,
    /// The other listings of ids listed more than once, sorted by id, tried by
    /// [`Index::alternatives`] when the first listing does not hold the blob: normally few
    /// (two backups that stored one blob at once); a claim a write-key holder planted adds one
    /// per blob it lists (44 bytes, as its entry would).
    others: Vec<Entry>,
    /// `starts[p]`: first entry whose id's 16-bit prefix is `p` or more; `PREFIX + 1` values,
    /// empty until the entries are sorted.
    starts: Vec<u32>,
    /// Index objects that could not be read, with the reason.
    pub damaged: Vec<(String, String)>,
    /// The data packs' blob ids, known present but not located, on disk
    /// ([`Index::load_for_writing`] of a large repository).
    stored: Option<IdFile>,
    /// Blobs located on disk rather than in `entries` (a restore's large files: see
    /// [`crate::partial_index::for_restore`]); [`Index::get`] finds them too.
    aside: Option<EntryFile>,
}

impl Index {
    /// Load and merge every index object. Damaged ones are recorded in `damaged` and logged;
    /// the blobs they list are then unknown (a backup stores them again).
    pub fn load(repo: &Repository) -> Result<Index> {
        Self::load_excluding(repo, &HashSet::new())
    }

    /// Like [`Index::load`], leaving out the packs in `excluded` (condemned by a prune), so
    /// their blobs count as absent and are stored again if needed.
    pub fn load_excluding(repo: &Repository, excluded: &HashSet<Id>) -> Result<Index> {
        Index::load_whole(repo, excluded, None)
    }

    /// The index objects, listed, and their stored bytes: what decides whether a command
    /// holds the whole index or only what it needs. Hand the listing to
    /// [`Index::load_listed`] rather than listing again (a request to an object store).
    pub fn listing(repo: &Repository) -> Result<(Vec<ObjectInfo>, u64)> {
        let listed = repo.backend().list("index")?;
        let bytes = listed.iter().map(|o| o.size).sum();
        Ok((listed, bytes))
    }

    /// [`Index::load_excluding`] of the index objects `listed` by [`Index::listing`] (listed
    /// again only if one vanished while it was read).
    pub fn load_listed(
        repo: &Repository,
        excluded: &HashSet<Id>,
        listed: Vec<ObjectInfo>,
    ) -> Result<Index> {
        Index::load_whole(repo, excluded, Some(listed))
    }

    fn load_whole(
        repo: &Repository,
        excluded: &HashSet<Id>,
        listed: Option<Vec<ObjectInfo>>,
    ) -> Result<Index> {
        let keep_all = |_: &IndexPack, _: &Id| true;
        Index::load_attempt(repo, excluded, &keep_all, &mut |_, _| Ok(()), 1, listed)
    }

    /// What a writer (backup, the destination of a copy) needs: [`Index::load_excluding`]
    /// below [`WHOLE_BELOW`] bytes of index objects; above, the tree packs' blobs located (the
    /// previous snapshots' trees and content lists are read back) and the data packs' blob ids
    /// only, in an [`IdFile`] on disk: [`Index::contains`] knows every blob, [`Index::get`]
    /// only those of tree packs. Where no temporary file can be made, the whole index.
    pub fn load_for_writing(repo: &Repository, excluded: &HashSet<Id>) -> Result<Index> {
        Index::load_for_writing_above(repo, excluded, WHOLE_BELOW)
    }

    fn load_for_writing_above(
        repo: &Repository,
        excluded: &HashSet<Id>,
        whole_below: u64,
    ) -> Result<Index> {
        let (listed, bytes) = Index::listing(repo)?;
        if bytes < whole_below {
            return Index::load_listed(repo, excluded, listed);
        }
        match Index::load_split(repo, excluded, crate::id_file::RUN_IDS, &mut |_, _| Ok(()))? {
            Some(index) => Ok(index),
            None => Index::load_excluding(repo, excluded),
        }
    }

    /// The tree packs' blobs located, the data packs' blob ids in an [`IdFile`] (see
    /// [`Index::load_for_writing`]), at any size, sorted in runs of `run_ids` ids; every pack
    /// read is handed to `also` too, with the number of its listing (as
    /// [`Index::load_aside`]). None where the temporary file fails (logged): the caller loads
    /// the whole index instead.
    pub(crate) fn load_split(
        repo: &Repository,
        excluded: &HashSet<Id>,
        run_ids: usize,
        also: &mut dyn FnMut(u32, &IndexPack) -> Result<()>,
    ) -> Result<Option<Index>> {
        let mut ids = match IdFileBuilder::with_run(run_ids) {
            Ok(b) => b,
            Err(e) => {
                tracing::warn!("{e}: the whole index is held in memory instead");
                return Ok(None);
            }
        };
        let mut listing = 1;
        // A temporary file that fails (a full TMPDIR) costs a second read of the index.
        let mut failed: Option<Error> = None;
        let is_tree = |p: &IndexPack, _: &Id| p.kind == PackKind::Tree;
        let mut aside = |attempt: u32, p: &IndexPack| -> Result<()> {
            also(attempt, p)?;
            if failed.is_some() {
                return Ok(());
            }
            failed = put_data_ids(&mut ids, &mut listing, attempt, p).err();
            Ok(())
        };
        let mut index = Index::load_attempt(repo, excluded, &is_tree, &mut aside, 1, None)?;
        let stored = match failed.map_or_else(|| ids.finish(), Err) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!("{e}: the whole index is held in memory instead");
                return Ok(None);
            }
        };
        tracing::debug!(
            "index: {} tree-pack blobs located in memory, {} data blob ids on disk ({} bytes of fences)",
            index.len(),
            stored.len(),
            stored.memory()
        );
        index.stored = Some(stored);
        Ok(Some(index))
    }

    /// Like [`Index::load`], keeping only the blobs `keep` accepts (given the pack and the
    /// blob's id): an index of what one command needs (see [`crate::partial_index`]). Packs
    /// with no blob kept are left out.
    pub fn load_filtered(
        repo: &Repository,
        keep: &dyn Fn(&IndexPack, &Id) -> bool,
    ) -> Result<Index> {
        Index::load_aside(repo, keep, &mut |_, _| Ok(()))
    }

    /// [`Index::load_filtered`], handing every pack read to `aside` too, with the number of
    /// the listing it came from: a load lists `index/` again when an object vanished while
    /// it read (a prune replaced it), and what earlier listings gave is then to be forgotten.
    pub fn load_aside(
        repo: &Repository,
        keep: &dyn Fn(&IndexPack, &Id) -> bool,
        aside: &mut dyn FnMut(u32, &IndexPack) -> Result<()>,
    ) -> Result<Index> {
        Index::load_attempt(repo, &HashSet::new(), keep, aside, 1, None)
    }

    fn load_attempt(
        repo: &Repository,
        excluded: &HashSet<Id>,
        keep: &dyn Fn(&IndexPack, &Id) -> bool,
        aside: &mut dyn FnMut(u32, &IndexPack) -> Result<()>,
        attempt: u32,
        listed: Option<Vec<ObjectInfo>>,
    ) -> Result<Index> {
        let mut index = Index::default();
        let listed = match listed {
            Some(l) => l,
            None => repo.backend().list("index")?,
        };
        for obj in listed {
            let name = obj.path.rsplit('/').next().unwrap_or_default();
            let loaded = name
                .parse::<Id>()
                .map_err(|e| Error::Invalid(e.to_string()))
                .and_then(|id| repo.get_meta("index", &id, MAX_INDEX_LEN))
                .and_then(|plain| {
                    IndexRecord::decode(&plain).map_err(|e| Error::damaged(obj.path.clone(), e))
                });
            match loaded {
                Ok(rec) => {
                    // Sorted once, after the last object: first listed still wins.
                    for p in rec.packs.iter().filter(|p| !excluded.contains(&p.id)) {
                        aside(attempt, p)?;
                        index.add_unsealed(p, keep);
                    }
                }
                // Storage that fails is not damage: nothing is known about the object.
                Err(e) if e.is_storage_failure() => return Err(e),
                // Deleted since the listing (a prune replaced it): its replacement, written
                // before, may be missing from the listing, so list again.
                Err(Error::NotFound { .. }) if attempt < LOAD_ATTEMPTS => {
                    return Index::load_attempt(repo, excluded, keep, aside, attempt + 1, None)
                }
                Err(e) => {
                    tracing::warn!("skipping index object {}: {e}", obj.path);
                    index.damaged.push((obj.path.clone(), e.to_string()));
                }
            }
        }
        index.seal();
        Ok(index)
    }

    /// An index of `packs`; where a blob is in several, the first listed wins.
    pub fn from_packs<'a>(packs: impl IntoIterator<Item = &'a IndexPack>) -> Index {
        let packs: Vec<&IndexPack> = packs.into_iter().collect();
        let mut index = Index::default();
        // Sized once: growing by doubling would hold up to three times the entries while
        // the last reallocation copies them.
        index
            .entries
            .reserve_exact(packs.iter().map(|p| p.blobs.len()).sum());
        for p in packs {
            index.push_pack(p);
        }
        index.seal();
        index
    }

    /// Add one pack's blobs (a pack already known adds nothing new for blobs already
    /// located). Re-sorts the whole index: for building many packs at once, use
    /// [`Index::from_packs`].
    pub fn add_pack(&mut self, p: &IndexPack) {
        self.push_pack(p);
        self.seal();
    }

    /// Append the blobs of `p` that `keep` accepts, unsorted: [`Index::seal_now`] after the
    /// last.
    pub(crate) fn add_unsealed(&mut self, p: &IndexPack, keep: &dyn Fn(&IndexPack, &Id) -> bool) {
        self.push_blobs(p, |b| keep(p, b));
    }

    /// Sort what [`Index::add_unsealed`] appended.
    pub(crate) fn seal_now(&mut self) {
        self.seal();
    }

    /// Append one pack's blobs, unsorted.
    fn push_pack(&mut self, p: &IndexPack) {
        self.push_blobs(p, |_| true);
    }

    /// Append the blobs of a pack that `keep` accepts, unsorted; nothing if none is.
    fn push_blobs(&mut self, p: &IndexPack, keep: impl Fn(&Id) -> bool) {
        let kept = p.blobs.iter().filter(|b| keep(&b.id)).count();
        if kept == 0 && !p.blobs.is_empty() {
            return;
        }
        let number = self.number(p);
        // Blobs of one frame are listed together: reuse the frame record of the previous blob.
        let mut last: Option<(FrameRef, u32)> = None;
        self.entries.reserve(kept);
        for b in p.blobs.iter().filter(|b| keep(&b.id)) {
            let frame = match last {
                Some((f, n)) if f == b.frame => n,
                _ => {
                    let n = self.frames.len() as u32;
                    self.frames.push(FrameSlot {
                        pack: number,
                        frame: b.frame,
                    });
                    last = Some((b.frame, n));
                    n
                }
            };
            self.entries.push(Entry {
                id: b.id,
                frame,
                offset: b.offset,
                len: b.len,
            });
        }
    }

    /// Sort by id, keep the first added of each id (frame numbers grow as packs are added)
    /// as its entry and the others aside, and rebuild the prefix table.
    fn seal(&mut self) {
        // The ids' first 8 bytes as an integer decide nearly every comparison without a call
        // to memcmp (sorting is on the way of every backup's start).
        let order = |a: &Entry, b: &Entry| {
            head(&a.id)
                .cmp(&head(&b.id))
                .then_with(|| a.id.cmp(&b.id))
                .then(a.frame.cmp(&b.frame))
        };
        self.entries.sort_unstable_by(order);
        let before = self.others.len();
        let (frames, others) = (&self.frames, &mut self.others);
        // The same place listed twice (one pack in two index objects) is no alternative.
        let place = |e: &Entry| {
            let slot = &frames[e.frame as usize];
            (slot.pack, slot.frame, e.offset, e.len)
        };
        self.entries.dedup_by(|b, a| {
            let same = a.id == b.id;
            if same && place(a) != place(b) {
                others.push(*b);
            }
            same
        });
        if self.others.len() > before {
            self.others.sort_unstable_by(order);
        }
        self.entries.shrink_to_fit();
        self.frames.shrink_to_fit();
        let buckets = 1usize << PREFIX_BITS;
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut at = 0usize;
        for p in 0..buckets {
            while at < self.entries.len() && (prefix(&self.entries[at].id) as usize) < p {
                at += 1;
            }
            starts.push(at as u32);
        }
        starts.push(self.entries.len() as u32);
        self.starts = starts;
    }

    /// The entries that may hold `id`.
    fn bucket(&self, id: &Id) -> Range<usize> {
        if self.starts.is_empty() {
            return 0..0;
        }
        let p = prefix(id) as usize;
        self.starts[p] as usize..self.starts[p + 1] as usize
    }

    fn entry(&self, id: &Id) -> Option<&Entry> {
        self.position(id).map(|i| &self.entries[i])
    }

    fn location(&self, e: &Entry) -> Location {
        let slot = self.frames[e.frame as usize];
        Location {
            pack: slot.pack,
            frame: slot.frame,
            offset: e.offset,
            len: e.len,
        }
    }

    /// The other places index objects list blob `id` in, besides [`Index::get`]'s, in the
    /// order they were added.
    pub fn alternatives(&self, id: &Id) -> impl Iterator<Item = Location> + '_ {
        let id = *id;
        let start = self
            .others
            .partition_point(|e| (head(&e.id), &e.id) < (head(&id), &id));
        let in_memory = self.others[start..]
            .iter()
            .take_while(move |e| e.id == id)
            .map(|e| self.location(e));
        let aside = self.aside.iter().flat_map(move |a| a.alternatives(&id));
        in_memory.chain(aside)
    }

    /// Whether any blob has [`Index::alternatives`].
    pub fn has_alternatives(&self) -> bool {
        !self.others.is_empty() || self.aside.as_ref().is_some_and(EntryFile::has_alternatives)
    }

    /// Where a blob is (in memory, else among the entries set aside on disk).
    pub fn get(&self, id: &Id) -> Option<Location> {
        match self.entry(id) {
            Some(e) => Some(self.location(e)),
            None => self.aside.as_ref()?.get(id),
        }
    }

    /// The entries located on disk rather than in memory, if any.
    pub fn aside(&self) -> Option<&EntryFile> {
        self.aside.as_ref()
    }

    /// Locate, besides the blobs in memory, those of `aside` (numbered by [`Index::number`]).
    pub(crate) fn set_aside(&mut self, aside: EntryFile) {
        self.aside = Some(aside);
    }

    /// The number of pack `p`, added (without blobs) if new.
    pub(crate) fn number(&mut self, p: &IndexPack) -> u32 {
        let next = self.packs.len() as u32;
        *self.pack_numbers.entry(p.id).or_insert_with(|| {
            self.packs.push(PackInfo {
                id: p.id,
                kind: p.kind,
                size: p.size,
            });
            next
        })
    }

    /// The number of the pack `id`, if the index has it.
    pub(crate) fn pack_number(&self, id: &Id) -> Option<u32> {
        self.pack_numbers.get(id).copied()
    }

    /// The blob's position in id order (0..len), if indexed.
    pub fn position(&self, id: &Id) -> Option<usize> {
        let range = self.bucket(id);
        let start = range.start;
        self.entries[range]
            .binary_search_by(|e| e.id.cmp(id))
            .ok()
            .map(|i| start + i)
    }

    /// The id at `position` in id order.
    pub fn id_at(&self, position: usize) -> &Id {
        &self.entries[position].id
    }

    /// Where the blob at `position` in id order is.
    pub fn location_at(&self, position: usize) -> Location {
        self.location(&self.entries[position])
    }

    /// A dense number for every blob [`Index::contains`] knows (0..[`Index::ranks`]): its
    /// position among the located blobs, else [`Index::len`] plus its rank among those known
    /// present only.
    pub fn rank(&self, id: &Id) -> Option<usize> {
        self.position(id).or_else(|| {
            let r = self.stored.as_ref()?.rank(id)?;
            Some(self.entries.len() + r as usize)
        })
    }

    /// [`Index::rank`] of each of `ids` (sorted, for fewer reads of the ids on disk).
    pub fn ranks_sorted(&self, ids: &[Id]) -> Vec<Option<usize>> {
        let mut ranks: Vec<Option<usize>> = ids.iter().map(|id| self.position(id)).collect();
        if let Some(stored) = &self.stored {
            let asked: Vec<Id> = ids
                .iter()
                .zip(&ranks)
                .filter(|(_, r)| r.is_none())
                .map(|(id, _)| *id)
                .collect();
            let mut found = stored.ranks_sorted(&asked).into_iter();
            for r in ranks.iter_mut().filter(|r| r.is_none()) {
                *r = found
                    .next()
                    .flatten()
                    .map(|s| self.entries.len() + s as usize);
            }
        }
        ranks
    }

    /// Number of blobs [`Index::contains`] knows: located, or known present only.
    pub fn ranks(&self) -> usize {
        self.entries.len() + self.stored.as_ref().map_or(0, |s| s.len() as usize)
    }

    /// True if the blob is stored (located, or known present by [`Index::load_for_writing`]).
    pub fn contains(&self, id: &Id) -> bool {
        self.entry(id).is_some()
            || self.stored.as_ref().is_some_and(|s| s.contains(id))
            || self.aside.as_ref().is_some_and(|a| a.get(id).is_some())
    }

    /// Every blob and where it is (one location per blob), in id order.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, Location)> {
        self.entries.iter().map(|e| (&e.id, self.location(e)))
    }

    /// Index records for the given packs (by number), built from the blobs located in them.
    pub fn records_for(&self, numbers: &HashSet<u32>) -> Vec<IndexPack> {
        let mut out: HashMap<u32, IndexPack> = HashMap::new();
        for (id, loc) in self.iter() {
            if !numbers.contains(&loc.pack) {
                continue;
            }
            let info = self.packs[loc.pack as usize];
            out.entry(loc.pack)
                .or_insert_with(|| IndexPack {
                    id: info.id,
                    kind: info.kind,
                    size: info.size,
                    blobs: Vec::new(),
                })
                .blobs
                .push(cairn_format::pack::BlobEntry {
                    id: *id,
                    frame: loc.frame,
                    offset: loc.offset,
                    len: loc.len,
                });
        }
        let mut packs: Vec<IndexPack> = out.into_values().collect();
        packs.sort_by_key(|p| p.id);
        packs
    }

    /// Pack by number.
    pub fn pack(&self, number: u32) -> PackInfo {
        self.packs[number as usize]
    }

    /// All packs.
    pub fn packs(&self) -> &[PackInfo] {
        &self.packs
    }

    /// Number of blobs.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }
}

/// Hands `packs` (each with its number of blobs), in order, to `put` in groups of at most
/// [`INDEX_FLUSH_BLOBS`] blobs, a pack holding more going alone: the index objects backup,
/// copy, prune and repair write, so what any of them holds to write one stays bounded.
///
/// [`INDEX_FLUSH_BLOBS`]: crate::saver::INDEX_FLUSH_BLOBS
pub(crate) fn in_objects<T>(
    packs: impl IntoIterator<Item = (T, usize)>,
    put: impl FnMut(Vec<T>) -> Result<()>,
) -> Result<()> {
    let mut objects = InObjects::new(put);
    for (pack, blobs) in packs {
        objects.push(pack, blobs)?;
    }
    objects.finish()
}

/// [`in_objects`] for packs handed over one at a time: each group goes to `put` once full.
pub(crate) struct InObjects<T, F> {
    group: Vec<T>,
    held: usize,
    put: F,
}

impl<T, F: FnMut(Vec<T>) -> Result<()>> InObjects<T, F> {
    pub(crate) fn new(put: F) -> Self {
        InObjects {
            group: Vec::new(),
            held: 0,
            put,
        }
    }

    /// Add `pack`, of `blobs` blobs.
    pub(crate) fn push(&mut self, pack: T, blobs: usize) -> Result<()> {
        if !self.group.is_empty() && self.held + blobs > crate::saver::INDEX_FLUSH_BLOBS {
            (self.put)(std::mem::take(&mut self.group))?;
            self.held = 0;
        }
        self.group.push(pack);
        self.held += blobs;
        Ok(())
    }

    /// Hand over the last group.
    pub(crate) fn finish(mut self) -> Result<()> {
        if self.group.is_empty() {
            return Ok(());
        }
        (self.put)(self.group)
    }
}

/// Add the blob ids of `p` if it is a data pack; a new listing of `index/` starts over.
fn put_data_ids(
    ids: &mut IdFileBuilder,
    listing: &mut u32,
    attempt: u32,
    p: &IndexPack,
) -> Result<()> {
    if attempt != *listing {
        *listing = attempt;
        ids.clear()?;
    }
    if p.kind == PackKind::Data {
        for b in &p.blobs {
            ids.push(b.id)?;
        }
    }
    Ok(())
}

/// The first [`PREFIX_BITS`] bits of `id`.
fn prefix(id: &Id) -> u16 {
    u16::from_be_bytes([id.0[0], id.0[1]])
}

/// An id's first 8 bytes, ordered as the id.
pub(crate) fn head(id: &Id) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&id.0[..8]);
    u64::from_be_bytes(b)
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::frame::Compression;
    use cairn_format::pack::BlobEntry;

    fn id(n: u32) -> Id {
        // Spread over the prefix table, with shared prefixes too.
        let mut b = [0u8; 32];
        b[..4].copy_from_slice(&(n.wrapping_mul(2_654_435_761) >> 4).to_be_bytes());
        b[28..].copy_from_slice(&n.to_be_bytes());
        Id(b)
    }

    fn frame(offset: u64) -> FrameRef {
        FrameRef {
            offset,
            stored_len: 100,
            raw_len: 1000,
            compression: Compression::Zstd,
        }
    }

    /// A pack with blobs `ids`, ten per frame.
    fn pack(n: u32, ids: impl Iterator<Item = u32>) -> IndexPack {
        IndexPack {
            id: Id([n as u8; 32]),
            kind: PackKind::Data,
            size: 1 << 20,
            blobs: ids
                .enumerate()
                .map(|(i, b)| BlobEntry {
                    id: id(b),
                    frame: frame(100 * (i as u64 / 10)),
                    offset: (i % 10) as u32 * 100,
                    len: 100,
                })
                .collect(),
        }
    }

    #[test]
    fn finds_every_blob_and_nothing_else() {
        let a = pack(1, 0..5000);
        let b = pack(2, 4000..9000);
        let index = Index::from_packs([&a, &b]);
        assert_eq!(index.len(), 9000);
        assert_eq!(index.packs().len(), 2);
        for (p, pk) in [(0u32, &a), (1, &b)] {
            for e in &pk.blobs {
                let loc = index.get(&e.id).expect("indexed");
                // Blobs in both packs are located in the first.
                let owner = if a.blobs.iter().any(|x| x.id == e.id) {
                    0
                } else {
                    p
                };
                assert_eq!(loc.pack, owner);
                if owner == p {
                    assert_eq!((loc.frame, loc.offset, loc.len), (e.frame, e.offset, e.len));
                }
            }
        }
        for n in 9000..10_000 {
            assert!(!index.contains(&id(n)));
        }
        assert!(index.contains(&Id([0; 32])), "id(0) is all zeros");
        assert!(!index.contains(&Id([1; 32])));
        assert!(!index.contains(&Id([0xff; 32])));
        let mut seen: Vec<Id> = index.iter().map(|(i, _)| *i).collect();
        assert_eq!(seen.len(), 9000);
        seen.dedup();
        assert_eq!(seen.len(), 9000);
    }

    #[test]
    fn add_pack_keeps_earlier_locations_and_records_round_trip() {
        let a = pack(1, 0..100);
        let mut index = Index::from_packs([&a]);
        index.add_pack(&pack(2, 50..150));
        index.add_pack(&a);
        assert_eq!(index.len(), 150);
        assert_eq!(index.get(&id(60)).expect("indexed").pack, 0);
        assert_eq!(index.get(&id(120)).expect("indexed").pack, 1);
        let records = index.records_for(&HashSet::from([0]));
        assert_eq!(records.len(), 1);
        let mut want = a.blobs.clone();
        want.sort_by_key(|b| b.id);
        let mut got = records[0].blobs.clone();
        got.sort_by_key(|b| b.id);
        assert_eq!(got, want);
    }

    #[test]
    fn for_writing_knows_every_blob_and_locates_the_trees() {
        use crate::saver::Saver;
        use cairn_format::tree::{Node, NodeKind, Tree};
        use std::sync::Arc;
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = crate::test_repo::create(dir.path(), &identity, Some(1 << 20));
        // Two saves: two index objects, one of whose packs is then excluded.
        let mut data = Vec::new();
        let mut trees = Vec::new();
        for round in 0..2u32 {
            let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
            let ids: Vec<Id> = (0..3000u32)
                .map(|i| {
                    let b = [round.to_le_bytes(), i.to_le_bytes()].concat();
                    saver.add_blob(PackKind::Data, b).unwrap()
                })
                .collect();
            let mut node = Node::new(format!("f{round}").into_bytes(), NodeKind::File);
            node.content = ids.clone();
            trees.push(saver.save_tree(&mut Tree { nodes: vec![node] }).unwrap());
            saver.finish().unwrap();
            data.push(ids);
        }
        let whole = Index::load(&repo).unwrap();
        let first_pack = whole.pack(whole.get(&data[1][0]).unwrap().pack).id;
        let excluded = HashSet::from([first_pack]);
        let model = Index::load_excluding(&repo, &excluded).unwrap();
        assert!(model.len() < whole.len());
        let small = Index::load_for_writing(&repo, &excluded).unwrap();
        assert!(small.stored.is_none(), "small index objects: all in memory");
        let split = Index::load_for_writing_above(&repo, &excluded, 0).unwrap();
        let stored = split.stored.as_ref().expect("data ids on disk");
        assert_eq!(
            split.len() + stored.len() as usize,
            model.len(),
            "every blob once"
        );
        for (id, loc) in whole.iter() {
            assert_eq!(split.contains(id), model.contains(id), "{id}");
            if whole.pack(loc.pack).kind == PackKind::Tree {
                let got = split.get(id).expect("tree blobs are located");
                assert_eq!(split.pack(got.pack).id, whole.pack(loc.pack).id);
            } else {
                assert!(split.get(id).is_none());
            }
        }
        assert!(!split.contains(&Id([7; 32])));
        // Earlier snapshots' trees read back through it.
        let mut loader = crate::loader::Loader::new(repo.clone(), Arc::new(split));
        assert_eq!(
            loader.load_tree(&trees[0]).unwrap().nodes[0].content,
            data[0]
        );
    }

    #[test]
    fn index_objects_group_packs_in_order_within_the_flush_size() {
        let max = crate::saver::INDEX_FLUSH_BLOBS;
        let packs = [
            (0, max / 2),
            (1, max / 2),
            (2, 1),
            (3, max + 5),
            (4, 3),
            (5, 0),
        ];
        let mut groups = Vec::new();
        in_objects(packs, |g| {
            groups.push(g);
            Ok(())
        })
        .unwrap();
        // Full groups close before a pack that would overflow them; a pack over the size goes
        // alone; nothing is lost or reordered.
        assert_eq!(groups, vec![vec![0, 1], vec![2], vec![3], vec![4, 5]]);
        let mut none = 0;
        in_objects(Vec::<(u8, usize)>::new(), |_| {
            none += 1;
            Ok(())
        })
        .unwrap();
        assert_eq!(none, 0);
        // The first error stops the writing.
        let mut calls = 0;
        let failed = in_objects(packs, |_| {
            calls += 1;
            Err(Error::Invalid("disk full".into()))
        });
        assert!(failed.is_err());
        assert_eq!(calls, 1);
    }

    #[test]
    fn empty_index_finds_nothing() {
        let index = Index::default();
        assert!(index.is_empty());
        assert!(index.get(&id(1)).is_none());
    }
}
