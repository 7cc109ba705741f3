//! An exact set of blob ids in ~32 bytes per id, for the ids a save adds (its `seen` set).
//!
//! A hash set of ids costs 33 bytes per bucket at a load of at most 7/8, in power-of-two
//! tables that double as they fill: 40–75 bytes per id, and twice that for a moment while it
//! grows (a 1 GB etcd database's 245,000 pages: 17 MB, 26 MB while growing). Here the newest
//! ids sit in a small hash set; every [`RECENT_IDS`] of them are sorted into a run, and runs of
//! equal length are merged (a binary counter) up to [`MAX_RUN_IDS`] ids (2 MiB), so the set
//! is a few sorted vectors of ids, at most one run's worth more while two are merged. Each
//! run has a table of where each value of the ids' first [`RUN_PREFIX_BITS`] bits starts, so
//! a lookup costs a hash probe and, per run, a bisection of a few dozen ids.
//!
//! Ids are keyed hashes, uniform in their first bits: the runs' tables stay balanced.

use cairn_format::Id;
use std::collections::HashSet;

/// Ids held in the hash set before they are sorted into a run.
pub const RECENT_IDS: usize = 4096;
/// Runs are not merged past this many ids (2 MiB): a merge holds at most this much twice.
pub const MAX_RUN_IDS: usize = 64 << 10;
/// Bits of an id's prefix a run's lookup table is built on.
const RUN_PREFIX_BITS: u32 = 10;

/// A sorted run of ids and where each prefix starts in it.
struct Run {
    ids: Vec<Id>,
    /// `starts[p]`: first id whose prefix is `p` or more; `2^RUN_PREFIX_BITS + 1` values.
    starts: Vec<u32>,
}

impl Run {
    fn new(ids: Vec<Id>) -> Run {
        let buckets = 1usize << RUN_PREFIX_BITS;
        let mut starts = Vec::with_capacity(buckets + 1);
        let mut at = 0usize;
        for p in 0..buckets {
            while at < ids.len() && prefix(&ids[at]) < p {
                at += 1;
            }
            starts.push(at as u32);
        }
        starts.push(ids.len() as u32);
        Run { ids, starts }
    }

    fn contains(&self, id: &Id) -> bool {
        let p = prefix(id);
        let range = self.starts[p] as usize..self.starts[p + 1] as usize;
        self.ids[range].binary_search(id).is_ok()
    }

    /// One sorted run of `self` and `other` (which share no id).
    fn merge(self, other: Run) -> Run {
        let (a, b) = (self.ids, other.ids);
        let mut ids = Vec::with_capacity(a.len() + b.len());
        let (mut i, mut j) = (0, 0);
        while i < a.len() && j < b.len() {
            if a[i] < b[j] {
                ids.push(a[i]);
                i += 1;
            } else {
                ids.push(b[j]);
                j += 1;
            }
        }
        ids.extend_from_slice(&a[i..]);
        ids.extend_from_slice(&b[j..]);
        drop((a, b));
        Run::new(ids)
    }
}

/// Which bucket of a run's table `id` is in.
fn prefix(id: &Id) -> usize {
    (u16::from_be_bytes([id.0[0], id.0[1]]) >> (16 - RUN_PREFIX_BITS)) as usize
}

/// A set of ids: a small hash set of the newest and sorted runs of the others.
#[derive(Default)]
pub struct IdSet {
    recent: HashSet<Id>,
    /// Longest first; no two below [`MAX_RUN_IDS`] have the same length.
    runs: Vec<Run>,
    len: usize,
}

impl IdSet {
    /// An empty set.
    pub fn new() -> IdSet {
        IdSet::default()
    }

    /// True if `id` is in the set.
    pub fn contains(&self, id: &Id) -> bool {
        self.recent.contains(id) || self.runs.iter().any(|r| r.contains(id))
    }

    /// Add `id`; false if it was there already.
    pub fn insert(&mut self, id: Id) -> bool {
        if self.contains(&id) {
            return false;
        }
        self.insert_absent(id);
        true
    }

    /// Add `id`, which the caller has just found not to be in the set (one lookup less).
    pub fn insert_absent(&mut self, id: Id) {
        debug_assert!(!self.contains(&id));
        self.recent.insert(id);
        self.len += 1;
        if self.recent.len() >= RECENT_IDS {
            self.seal_recent();
        }
    }

    /// Number of ids.
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Sort the recent ids into a run and merge the runs of equal length below the cap.
    fn seal_recent(&mut self) {
        let mut ids: Vec<Id> = self.recent.drain().collect();
        self.recent.shrink_to(RECENT_IDS);
        ids.sort_unstable();
        let mut run = Run::new(ids);
        while let Some(last) = self.runs.last() {
            if last.ids.len() != run.ids.len() || last.ids.len() + run.ids.len() > MAX_RUN_IDS {
                break;
            }
            let last = self.runs.pop().expect("a last run");
            run = last.merge(run);
        }
        self.runs.push(run);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    use crate::test_repo::spread_id as id;

    #[test]
    fn many_ids_across_runs() {
        let mut set = IdSet::new();
        let n = (MAX_RUN_IDS * 2 + RECENT_IDS * 3 + 17) as u64;
        for i in 0..n {
            assert!(set.insert(id(i)));
        }
        assert_eq!(set.len(), n as usize);
        assert!(set.runs.len() >= 3, "{}", set.runs.len());
        assert!(set.runs.iter().all(|r| r.ids.len() <= MAX_RUN_IDS));
        for i in (0..n).step_by(7) {
            assert!(set.contains(&id(i)));
            assert!(!set.insert(id(i)));
        }
        for i in n..n + 1000 {
            assert!(!set.contains(&id(i)));
        }
        assert!(!set.contains(&Id([0xff; 32])));
        assert_eq!(set.len(), n as usize);
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The same answers as a HashSet, for ids that share prefixes and for repeats.
        #[test]
        fn behaves_like_a_hash_set(ops in proptest::collection::vec((0u64..20_000, any::<bool>()), 0..12_000)) {
            let mut set = IdSet::new();
            let mut model = HashSet::new();
            for (n, insert) in ops {
                // Few distinct first bytes: many ids per run bucket.
                let mut b = [0u8; 32];
                b[0] = (n % 3) as u8;
                b[24..].copy_from_slice(&n.to_be_bytes());
                let x = Id(b);
                if insert {
                    prop_assert_eq!(set.insert(x), model.insert(x));
                } else {
                    prop_assert_eq!(set.contains(&x), model.contains(&x));
                }
                prop_assert_eq!(set.len(), model.len());
            }
            for x in &model {
                prop_assert!(set.contains(x));
            }
        }
    }
}
