//! An exact set of blob ids, for the ids a save adds (its `seen` set): ~32 bytes per id for
//! the newest 65,536, 2 bytes per id for the others.
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
//! A run that reaches [`MAX_RUN_IDS`] is written to an unnamed temporary file (merged from its
//! two halves as it is written, so never held whole) and only the
//! 16 bits after the table's prefix of each of its ids stay in memory (sorted, with the same
//! table): a lookup that matches its bucket and those bits reads the whole id back with one
//! `pread` of 32 bytes to confirm it, so answers stay exact, and a lookup of an id not in the
//! run (nearly all of them: the 64 ids of a bucket match 16 random bits by chance about once in
//! a thousand lookups) reads nothing. A read that fails counts
//! as absent (the blob is stored again: space, never loss); where no temporary file can be
//! made, runs stay in memory as before.
//!
//! Ids are keyed hashes, uniform in their first bits: the runs' tables stay balanced.

use crate::index::head;
use cairn_format::Id;
use std::collections::HashSet;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

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
        let mut starts = Starts::new();
        ids.iter().enumerate().for_each(|(i, id)| starts.add(i, id));
        let starts = starts.finish(ids.len());
        Run { ids, starts }
    }

    fn contains(&self, id: &Id) -> bool {
        let p = prefix(id);
        let range = self.starts[p] as usize..self.starts[p + 1] as usize;
        self.ids[range].binary_search(id).is_ok()
    }

    /// One sorted run of `self` and `other` (which share no id).
    fn merge(self, other: Run) -> Run {
        let mut ids = Vec::with_capacity(self.ids.len() + other.ids.len());
        ids.extend(merged(&self.ids, &other.ids));
        drop((self, other));
        Run::new(ids)
    }
}

/// The ids of two sorted runs, in order.
fn merged<'a>(a: &'a [Id], b: &'a [Id]) -> impl Iterator<Item = Id> + 'a {
    let (mut i, mut j) = (0, 0);
    std::iter::from_fn(move || {
        let next = match (a.get(i), b.get(j)) {
            (Some(x), Some(y)) if x < y => x,
            (Some(x), None) => x,
            (_, Some(y)) => {
                j += 1;
                return Some(*y);
            }
            (None, None) => return None,
        };
        i += 1;
        Some(*next)
    })
}

/// A run's table ([`Run::starts`]), built as its ids go by in order.
struct Starts(Vec<u32>);

impl Starts {
    fn new() -> Starts {
        Starts(Vec::with_capacity((1 << RUN_PREFIX_BITS) + 1))
    }

    /// The run's `i`-th id.
    fn add(&mut self, i: usize, id: &Id) {
        while self.0.len() <= prefix(id) {
            self.0.push(i as u32);
        }
    }

    /// The table of a run of `len` ids.
    fn finish(mut self, len: usize) -> Vec<u32> {
        self.0.resize((1 << RUN_PREFIX_BITS) + 1, len as u32);
        self.0
    }
}

/// Which bucket of a run's table `id` is in.
fn prefix(id: &Id) -> usize {
    (u16::from_be_bytes([id.0[0], id.0[1]]) >> (16 - RUN_PREFIX_BITS)) as usize
}

const ID_LEN: u64 = 32;

/// The 16 bits of an id after its [`prefix`]: within a bucket of a run, in the ids' order.
fn key(id: &Id) -> u16 {
    (head(id) >> (48 - RUN_PREFIX_BITS)) as u16
}

/// A full run written to the temporary file: its ids' [`key`]s in memory.
struct Spilled {
    keys: Vec<u16>,
    /// As [`Run::starts`].
    starts: Vec<u32>,
    /// Where the run's ids start in the file.
    at: u64,
}

impl Spilled {
    /// Write `len` sorted `ids` at `at` in `file`, a buffer of 64 KiB at a time (the ids are
    /// never copied whole), keeping their keys and the table of their buckets.
    fn write(
        ids: impl Iterator<Item = Id>,
        len: usize,
        file: &File,
        at: u64,
    ) -> std::io::Result<Spilled> {
        const BUFFER_IDS: usize = 2048;
        let mut keys = Vec::with_capacity(len);
        let mut starts = Starts::new();
        let mut bytes = Vec::with_capacity(BUFFER_IDS * ID_LEN as usize);
        let mut written = at;
        for (i, id) in ids.enumerate() {
            starts.add(i, &id);
            keys.push(key(&id));
            bytes.extend_from_slice(&id.0);
            if bytes.len() == bytes.capacity() {
                file.write_all_at(&bytes, written)?;
                written += bytes.len() as u64;
                bytes.clear();
            }
        }
        file.write_all_at(&bytes, written)?;
        let starts = starts.finish(keys.len());
        Ok(Spilled { keys, starts, at })
    }

    fn contains(&self, id: &Id, file: &File, failed: &AtomicBool) -> bool {
        let p = prefix(id);
        let (lo, hi) = (self.starts[p] as usize, self.starts[p + 1] as usize);
        let keys = &self.keys[lo..hi];
        let k = key(id);
        let first = keys.partition_point(|x| *x < k);
        keys[first..]
            .iter()
            .take_while(|x| **x == k)
            .enumerate()
            .any(|(i, _)| {
                let mut b = [0u8; ID_LEN as usize];
                let at = self.at + (lo + first + i) as u64 * ID_LEN;
                match file.read_exact_at(&mut b, at) {
                    Ok(()) => b == id.0,
                    Err(e) => {
                        if !failed.swap(true, Ordering::Relaxed) {
                            tracing::warn!(
                                "reading back a blob id set aside in a temporary file (TMPDIR): {e}; such blobs are stored again"
                            );
                        }
                        false
                    }
                }
            })
    }
}

/// Full runs set aside in an unnamed temporary file.
struct Aside {
    file: File,
    runs: Vec<Spilled>,
    end: u64,
    /// A read failed (logged once).
    failed: AtomicBool,
}

/// A set of ids: a small hash set of the newest and sorted runs of the others.
pub struct IdSet {
    recent: HashSet<Id>,
    /// Longest first; no two below the cap have the same length.
    runs: Vec<Run>,
    len: usize,
    /// Runs are not merged past this many ids; a full one is set aside.
    max_run: usize,
    /// Full runs in the temporary file (none until the first is full; never, where no
    /// temporary file can be made).
    aside: Option<Aside>,
    /// No temporary file could be made: full runs stay in memory.
    no_file: bool,
}

impl Default for IdSet {
    fn default() -> Self {
        IdSet::with_max_run(MAX_RUN_IDS)
    }
}

impl IdSet {
    /// An empty set.
    pub fn new() -> IdSet {
        IdSet::default()
    }

    /// An empty set whose runs are set aside at `max_run` ids (tests use small numbers).
    fn with_max_run(max_run: usize) -> IdSet {
        IdSet {
            recent: HashSet::new(),
            runs: Vec::new(),
            len: 0,
            max_run: max_run.max(RECENT_IDS),
            aside: None,
            no_file: false,
        }
    }

    /// True if `id` is in the set.
    pub fn contains(&self, id: &Id) -> bool {
        self.recent.contains(id)
            || self.runs.iter().any(|r| r.contains(id))
            || self
                .aside
                .as_ref()
                .is_some_and(|a| a.runs.iter().any(|r| r.contains(id, &a.file, &a.failed)))
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

    /// Sort the recent ids into a run and merge the runs of equal length below the cap; a run
    /// that reaches the cap is set aside, merged as it is written when it is made of two.
    fn seal_recent(&mut self) {
        let mut ids: Vec<Id> = self.recent.drain().collect();
        self.recent.shrink_to(RECENT_IDS);
        ids.sort_unstable();
        let mut run = Run::new(ids);
        while let Some(last) = self.runs.last() {
            let len = last.ids.len() + run.ids.len();
            if last.ids.len() != run.ids.len() || len > self.max_run {
                break;
            }
            let Some(last) = self.runs.pop() else { break };
            if len >= self.max_run && self.set_aside(merged(&last.ids, &run.ids), len) {
                return;
            }
            run = last.merge(run);
        }
        let len = run.ids.len();
        if len < self.max_run || !self.set_aside(run.ids.iter().copied(), len) {
            self.runs.push(run);
        }
    }

    /// Write a full run's `len` sorted `ids` to the temporary file, keeping 2 bytes per id;
    /// false if they cannot be (they then stay in memory).
    fn set_aside(&mut self, ids: impl Iterator<Item = Id>, len: usize) -> bool {
        if self.no_file {
            return false;
        }
        if self.aside.is_none() {
            match tempfile::tempfile() {
                Ok(file) => {
                    self.aside = Some(Aside {
                        file,
                        runs: Vec::new(),
                        end: 0,
                        failed: AtomicBool::new(false),
                    })
                }
                Err(e) => {
                    tracing::debug!(
                        "no temporary file for the ids a save added ({e}): they stay in memory"
                    );
                    self.no_file = true;
                    return false;
                }
            }
        }
        let Some(a) = self.aside.as_mut() else {
            return false;
        };
        match Spilled::write(ids, len, &a.file, a.end) {
            Ok(spilled) => {
                a.end += len as u64 * ID_LEN;
                a.runs.push(spilled);
                true
            }
            Err(e) => {
                tracing::debug!(
                    "writing the ids a save added to a temporary file ({e}): they stay in memory"
                );
                self.no_file = true;
                false
            }
        }
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
        // Two full runs set aside, the rest in memory below the cap.
        assert_eq!(set.aside.as_ref().map(|a| a.runs.len()), Some(2));
        assert!(set.runs.iter().all(|r| r.ids.len() < MAX_RUN_IDS));
        assert!(set.runs.iter().map(|r| r.ids.len()).sum::<usize>() < MAX_RUN_IDS);
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

    /// Two runs that fill a run between them are merged as they are written to the file: the
    /// same answers, for ids whose first 8 bytes are shared by groups of four.
    #[test]
    fn runs_merged_as_they_are_set_aside() {
        let id = |n: u64| {
            let mut b = [0u8; 32];
            b[..8].copy_from_slice(&(n / 4).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
            b[24..].copy_from_slice(&n.to_be_bytes());
            Id(b)
        };
        let mut set = IdSet::with_max_run(2 * RECENT_IDS);
        let n = 5 * RECENT_IDS as u64 + 3;
        for i in 0..n {
            assert!(set.insert(id(i)));
        }
        assert_eq!(set.aside.as_ref().map(|a| a.runs.len()), Some(2));
        assert_eq!(
            set.aside.as_ref().map(|a| a.end),
            Some(4 * RECENT_IDS as u64 * ID_LEN)
        );
        for i in 0..n {
            assert!(!set.insert(id(i)), "{i}");
        }
        for i in n..n + 4000 {
            assert!(!set.contains(&id(i)), "{i}");
        }
        assert_eq!(set.len(), n as usize);
    }

    /// Apply `ops` (insert or ask about the id `id(n)`) to `set` and to a HashSet: the same
    /// answers and length throughout, and every inserted id found at the end. Returns `set`.
    fn agrees_with_a_hash_set(
        mut set: IdSet,
        ops: &[(u64, bool)],
        id: impl Fn(u64) -> Id,
    ) -> Result<IdSet, proptest::test_runner::TestCaseError> {
        let mut model = HashSet::new();
        for &(n, insert) in ops {
            let x = id(n);
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
        Ok(set)
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(32))]
        /// The same answers as a HashSet, for ids that share prefixes and for repeats.
        #[test]
        fn behaves_like_a_hash_set(ops in proptest::collection::vec((0u64..20_000, any::<bool>()), 0..12_000)) {
            // Few distinct first bytes: many ids per run bucket.
            agrees_with_a_hash_set(IdSet::new(), &ops, |n| {
                let mut b = [0u8; 32];
                b[0] = (n % 3) as u8;
                b[24..].copy_from_slice(&n.to_be_bytes());
                Id(b)
            })?;
        }

        /// With runs set aside at 4,096 ids: the same answers, for ids whose first 8 bytes
        /// (more than stays in memory) are shared by groups of four.
        #[test]
        fn set_aside_runs_answer_exactly(ops in proptest::collection::vec((0u64..30_000, any::<bool>()), 0..16_000)) {
            let set = agrees_with_a_hash_set(IdSet::with_max_run(RECENT_IDS), &ops, |n| {
                let mut b = [0u8; 32];
                b[..8].copy_from_slice(&(n / 4).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
                b[24..].copy_from_slice(&n.to_be_bytes());
                Id(b)
            })?;
            for n in 30_000..30_100u64 {
                let mut b = [0u8; 32];
                b[..8].copy_from_slice(&(n / 4).wrapping_mul(0x9E37_79B9_7F4A_7C15).to_be_bytes());
                prop_assert!(!set.contains(&Id(b)));
            }
        }
    }
}
