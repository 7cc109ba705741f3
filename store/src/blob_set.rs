//! A set of blob ids as one bit per blob the index knows ([`Index::rank`]: located, or known
//! present only, on disk): a million referenced blobs cost 128 KB instead of a hash set's
//! ~40 MB. Ids the index does not know (missing blobs) are kept apart in a small hash set.

use crate::index::Index;
use cairn_format::Id;
use std::collections::HashSet;
use std::sync::Arc;

/// Blob ids, most of them located by `index`.
pub struct BlobSet {
    index: Arc<Index>,
    bits: Vec<u64>,
    indexed: usize,
    unindexed: HashSet<Id>,
}

impl BlobSet {
    /// An empty set over `index`.
    pub fn new(index: Arc<Index>) -> Self {
        let words = index.ranks().div_ceil(64);
        BlobSet {
            index,
            bits: vec![0; words],
            indexed: 0,
            unindexed: HashSet::new(),
        }
    }

    /// Add `id`; false if it was there already.
    pub fn insert(&mut self, id: Id) -> bool {
        match self.index.rank(&id) {
            Some(i) => self.mark(i),
            None => self.unindexed.insert(id),
        }
    }

    /// Set the bit of rank `i`; false if it was set already.
    fn mark(&mut self, i: usize) -> bool {
        let (w, b) = (i / 64, 1u64 << (i % 64));
        let new = self.bits[w] & b == 0;
        self.bits[w] |= b;
        self.indexed += usize::from(new);
        new
    }

    /// Add every id of `ids` (sorted here: the index looks them up in one pass).
    pub fn insert_all(&mut self, mut ids: Vec<Id>) {
        ids.sort_unstable();
        ids.dedup();
        // In slices: the ranks of a content list's ids are not all held at once.
        for ids in ids.chunks(8192) {
            let ranks = self.index.ranks_sorted(ids);
            for (id, rank) in ids.iter().zip(ranks) {
                match rank {
                    Some(i) => self.mark(i),
                    None => self.unindexed.insert(*id),
                };
            }
        }
    }

    /// True if `id` is in the set.
    pub fn contains(&self, id: &Id) -> bool {
        match self.index.rank(id) {
            Some(i) => self.bits[i / 64] & (1u64 << (i % 64)) != 0,
            None => self.unindexed.contains(id),
        }
    }

    /// Number of ids the index does not know.
    pub fn unknown(&self) -> usize {
        self.unindexed.len()
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.indexed + self.unindexed.len()
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Add every id of `other` (over another index: those [`BlobSet::iter`] lists).
    pub fn extend_from(&mut self, other: &BlobSet) {
        if Arc::ptr_eq(&self.index, &other.index) {
            self.indexed = 0;
            for (mine, theirs) in self.bits.iter_mut().zip(&other.bits) {
                *mine |= theirs;
                self.indexed += mine.count_ones() as usize;
            }
            self.unindexed.extend(other.unindexed.iter().copied());
        } else {
            for id in other {
                self.insert(*id);
            }
        }
    }

    /// Every id the index locates, in id order, then the ids it does not know. Ids an index
    /// knows present only ([`Index::load_for_writing`] of a large repository) are counted by
    /// [`BlobSet::len`] and answered by [`BlobSet::contains`] but not listed here.
    pub fn iter(&self) -> impl Iterator<Item = &Id> {
        let bits = &self.bits;
        (0..self.index.len())
            .filter(move |i| bits[i / 64] & (1u64 << (i % 64)) != 0)
            .map(|i| self.index.id_at(i))
            .chain(self.unindexed.iter())
    }
}

impl<'a> IntoIterator for &'a BlobSet {
    type Item = &'a Id;
    type IntoIter = Box<dyn Iterator<Item = &'a Id> + 'a>;

    fn into_iter(self) -> Self::IntoIter {
        Box::new(self.iter())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::frame::Compression;
    use cairn_format::index::IndexPack;
    use cairn_format::pack::{BlobEntry, FrameRef, PackKind};

    #[test]
    fn indexed_and_unindexed_ids() {
        let id = |n: u8| Id([n; 32]);
        let pack = IndexPack {
            id: id(200),
            kind: PackKind::Data,
            size: 1000,
            blobs: (0..100)
                .map(|n| BlobEntry {
                    id: id(n),
                    frame: FrameRef {
                        offset: 0,
                        stored_len: 10,
                        raw_len: 1000,
                        compression: Compression::None,
                    },
                    offset: u32::from(n) * 10,
                    len: 10,
                })
                .collect(),
        };
        let mut set = BlobSet::new(Arc::new(Index::from_packs([&pack])));
        assert!(set.is_empty());
        assert!(set.insert(id(5)));
        assert!(!set.insert(id(5)));
        assert!(set.insert(id(150)));
        assert!(set.insert(id(99)));
        let mut again = BlobSet::new(set.index.clone());
        again.insert_all(vec![id(150), id(99), id(5), id(99)]);
        assert_eq!(again.len(), 3);
        assert!(again.contains(&id(5)) && again.contains(&id(150)) && again.contains(&id(99)));
        assert!(set.contains(&id(5)) && set.contains(&id(150)) && set.contains(&id(99)));
        assert!(!set.contains(&id(6)) && !set.contains(&id(151)));
        assert_eq!(set.len(), 3);
        let all: Vec<Id> = set.iter().copied().collect();
        assert_eq!(all, vec![id(5), id(99), id(150)]);

        // A union over the same index, and over another one.
        let mut other = BlobSet::new(set.index.clone());
        for n in [5, 7, 151] {
            other.insert(id(n));
        }
        let mut same = BlobSet::new(set.index.clone());
        same.extend_from(&set);
        same.extend_from(&other);
        let mut apart = BlobSet::new(Arc::new(Index::from_packs([&pack])));
        apart.extend_from(&set);
        apart.extend_from(&other);
        for union in [&same, &apart] {
            let all: Vec<Id> = union.iter().copied().collect();
            assert_eq!(union.len(), 5);
            assert_eq!(&all[..3], &[id(5), id(7), id(99)]);
            assert!(union.contains(&id(150)) && union.contains(&id(151)));
        }
    }
}
