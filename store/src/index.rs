//! The in-memory index: blob id → location, merged from every `index/<id>` object.

use crate::repo::Repository;
use crate::{Error, Result};
use cairn_format::index::{IndexPack, IndexRecord};
use cairn_format::pack::{FrameRef, PackKind};
use cairn_format::Id;
use std::collections::{HashMap, HashSet};

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

/// Blob locations for the whole repository.
#[derive(Debug, Default)]
pub struct Index {
    packs: Vec<PackInfo>,
    pack_numbers: HashMap<Id, u32>,
    blobs: HashMap<Id, Location>,
    /// Index objects that could not be read, with the reason.
    pub damaged: Vec<(String, String)>,
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
        Index::load_excluding_attempt(repo, excluded, 1)
    }

    fn load_excluding_attempt(
        repo: &Repository,
        excluded: &HashSet<Id>,
        attempt: u32,
    ) -> Result<Index> {
        let mut index = Index::default();
        for obj in repo.backend().list("index")? {
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
                    for p in rec.packs.iter().filter(|p| !excluded.contains(&p.id)) {
                        index.add_pack(p);
                    }
                }
                // Storage that fails is not damage: nothing is known about the object.
                Err(e) if e.is_storage_failure() => return Err(e),
                // Deleted since the listing (a prune replaced it): its replacement, written
                // before, may be missing from the listing, so list again.
                Err(Error::NotFound { .. }) if attempt < LOAD_ATTEMPTS => {
                    return Index::load_excluding_attempt(repo, excluded, attempt + 1)
                }
                Err(e) => {
                    tracing::warn!("skipping index object {}: {e}", obj.path);
                    index.damaged.push((obj.path.clone(), e.to_string()));
                }
            }
        }
        Ok(index)
    }

    /// Add one pack's blobs.
    pub fn add_pack(&mut self, p: &IndexPack) {
        let next = self.packs.len() as u32;
        let number = *self.pack_numbers.entry(p.id).or_insert_with(|| {
            self.packs.push(PackInfo {
                id: p.id,
                kind: p.kind,
                size: p.size,
            });
            next
        });
        for b in &p.blobs {
            self.blobs.entry(b.id).or_insert(Location {
                pack: number,
                frame: b.frame,
                offset: b.offset,
                len: b.len,
            });
        }
    }

    /// Where a blob is.
    pub fn get(&self, id: &Id) -> Option<Location> {
        self.blobs.get(id).copied()
    }

    /// True if the blob is stored.
    pub fn contains(&self, id: &Id) -> bool {
        self.blobs.contains_key(id)
    }

    /// Every blob and where it is (one location per blob), in no particular order.
    pub fn iter(&self) -> impl Iterator<Item = (&Id, &Location)> {
        self.blobs.iter()
    }

    /// Index records for the given packs (by number), built from the blobs located in them.
    pub fn records_for(&self, numbers: &HashSet<u32>) -> Vec<IndexPack> {
        let mut out: HashMap<u32, IndexPack> = HashMap::new();
        for (id, loc) in &self.blobs {
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
        self.blobs.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }
}
