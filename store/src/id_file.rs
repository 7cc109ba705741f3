//! An exact set of blob ids kept in an unnamed temporary file, for membership questions over
//! more ids than are worth holding in memory ("is this blob stored?", which is all a backup
//! asks of the data packs' index entries).
//!
//! Building: ids are sorted in runs of at most [`RUN_IDS`] (4 MiB) appended to a temporary file
//! ([`crate::record_sort`]); at the end the runs are merged (one 8 KiB read buffer per run) into
//! a second temporary file of sorted, distinct ids, 32 bytes each. Memory then holds only the
//! first id of every block of [`BLOCK_IDS`] ids (1 byte per id stored: a million ids, 250 KB);
//! a lookup bisects that table and reads one 4 KiB block with `pread` (no mapping: mapped pages
//! that are touched count in the process's resident memory, page cache reads do not).
//!
//! Answers are exact: an id is reported present only if it was read from the file. A read
//! that fails (the temporary file's disk failing under it) reports the id absent and logs it
//! once: the caller then stores the blob again, which costs space and never loses data.

use crate::record_sort::{temp_file_error, Record, Sorter, RUN_BYTES};
use crate::{Error, Result};
use cairn_format::Id;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Ids sorted in memory at once while building (4 MiB).
pub const RUN_IDS: usize = RUN_BYTES / ID_LEN;
/// Ids per block of the file: one in-memory fence per block, one `pread` per lookup.
pub const BLOCK_IDS: usize = 128;
/// Bytes read at once from each run while merging.
const MERGE_READ_BYTES: usize = 8 << 10;
const ID_LEN: usize = 32;
const WHAT: &str = "stored blob ids";

fn tmp_error(what: &str, e: std::io::Error) -> Error {
    temp_file_error(WHAT, what, e)
}

impl Record for Id {
    const LEN: usize = ID_LEN;
    fn encode(&self, out: &mut [u8]) {
        out.copy_from_slice(&self.0);
    }
    fn decode(b: &[u8]) -> Id {
        id_of(b)
    }
}

/// Collects ids into sorted runs on disk; [`IdFileBuilder::finish`] merges them.
pub struct IdFileBuilder {
    ids: Sorter<Id>,
    /// Where the merged ids go (made at once: no temporary file, no builder).
    out: File,
}

impl IdFileBuilder {
    /// An empty builder with its temporary file.
    pub fn new() -> Result<IdFileBuilder> {
        IdFileBuilder::with_run(RUN_IDS)
    }

    /// An empty builder sorting runs of `run_ids` ids in memory (32 bytes each).
    pub(crate) fn with_run(run_ids: usize) -> Result<IdFileBuilder> {
        Ok(IdFileBuilder {
            ids: Sorter::with_run(WHAT, run_ids).reading(MERGE_READ_BYTES),
            out: tempfile::tempfile().map_err(|e| tmp_error("creating", e))?,
        })
    }

    /// Add an id (repeats are fine).
    pub fn push(&mut self, id: Id) -> Result<()> {
        self.ids.push(id)
    }

    /// Forget everything pushed so far.
    pub fn clear(&mut self) -> Result<()> {
        self.ids.clear()
    }

    /// The set of every id pushed: the merged ids written out once each, a fence taken every
    /// block.
    pub fn finish(self) -> Result<IdFile> {
        let mut ids = self.ids.finish()?;
        let mut w = BufWriter::with_capacity(64 << 10, self.out);
        let mut fences = Vec::new();
        let mut len = 0u64;
        let mut last = None;
        while let Some(id) = ids.next_record()? {
            if last == Some(id) {
                continue;
            }
            if len.is_multiple_of(BLOCK_IDS as u64) {
                fences.push(id);
            }
            w.write_all(&id.0).map_err(|e| tmp_error("writing", e))?;
            len += 1;
            last = Some(id);
        }
        let out = w
            .into_inner()
            .map_err(|e| tmp_error("writing", e.into_error()))?;
        fences.shrink_to_fit();
        Ok(IdFile::new(out, fences, len))
    }
}

/// Where `id` is among the sorted ids packed in `bytes`.
fn search(bytes: &[u8], id: &Id) -> Option<usize> {
    let (mut lo, mut hi) = (0usize, bytes.len() / ID_LEN);
    while lo < hi {
        let mid = (lo + hi) / 2;
        match bytes[mid * ID_LEN..(mid + 1) * ID_LEN].cmp(&id.0[..]) {
            std::cmp::Ordering::Less => lo = mid + 1,
            std::cmp::Ordering::Greater => hi = mid,
            std::cmp::Ordering::Equal => return Some(mid),
        }
    }
    None
}

fn id_of(b: &[u8]) -> Id {
    let mut a = [0u8; ID_LEN];
    a.copy_from_slice(b);
    Id(a)
}

/// A sorted file of distinct ids and the first id of each of its blocks.
#[derive(Debug)]
pub struct IdFile {
    file: File,
    fences: Vec<Id>,
    len: u64,
    /// A read failed already (logged once).
    failed: AtomicBool,
}

impl IdFile {
    fn new(file: File, fences: Vec<Id>, len: u64) -> IdFile {
        IdFile {
            file,
            fences,
            len,
            failed: AtomicBool::new(false),
        }
    }

    /// Number of ids.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Bytes held in memory (the fence table).
    pub fn memory(&self) -> usize {
        self.fences.capacity() * ID_LEN
    }

    /// True if `id` is in the set (false, logged once, if the file cannot be read).
    pub fn contains(&self, id: &Id) -> bool {
        self.rank(id).is_some()
    }

    /// The number of ids in the set below `id`, if `id` is in it: a dense number (0..len)
    /// for sets kept apart, one bit per id (None, logged once, if the file cannot be read).
    pub fn rank(&self, id: &Id) -> Option<u64> {
        let block = self.fences.partition_point(|f| f <= id);
        if block == 0 {
            return None;
        }
        let first = (block - 1) * BLOCK_IDS;
        let mut bytes = [0u8; BLOCK_IDS * ID_LEN];
        let n = self.read_block(first, &mut bytes)?;
        Some(first as u64 + search(&bytes[..n * ID_LEN], id)? as u64)
    }

    /// [`IdFile::rank`] of each of `ids`. Sorted ids are answered reading each block of the
    /// file once for all of them it may hold (a content list's ids: one read per block, not
    /// per id); others in any order, correctly, with more reads.
    pub fn ranks_sorted(&self, ids: &[Id]) -> Vec<Option<u64>> {
        let mut bytes = [0u8; BLOCK_IDS * ID_LEN];
        // The block in `bytes` and its number of ids; None if it could not be read.
        let mut held: Option<(usize, Option<usize>)> = None;
        ids.iter()
            .map(|id| {
                let block = self.fences.partition_point(|f| f <= id);
                if block == 0 {
                    return None;
                }
                let first = (block - 1) * BLOCK_IDS;
                let n = match held {
                    Some((b, n)) if b == block => n,
                    _ => {
                        let n = self.read_block(first, &mut bytes);
                        held = Some((block, n));
                        n
                    }
                };
                Some(first as u64 + search(&bytes[..n? * ID_LEN], id)? as u64)
            })
            .collect()
    }

    /// Read the block of ids starting at id number `first` into `bytes`; its number of ids,
    /// or None (logged once) if it cannot be read.
    fn read_block(&self, first: usize, bytes: &mut [u8; BLOCK_IDS * ID_LEN]) -> Option<usize> {
        let n = (self.len - first as u64).min(BLOCK_IDS as u64) as usize;
        match self
            .file
            .read_exact_at(&mut bytes[..n * ID_LEN], (first * ID_LEN) as u64)
        {
            Ok(()) => Some(n),
            Err(e) => {
                self.read_failed(e);
                None
            }
        }
    }

    fn read_failed(&self, e: std::io::Error) {
        if !self.failed.swap(true, Ordering::Relaxed) {
            tracing::warn!(
                "{}; blobs whose presence cannot be read back count as absent (a backup stores them again, a check reads the whole index instead)",
                tmp_error("reading", e)
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use std::collections::HashSet;

    use crate::test_repo::spread_id as id;

    #[test]
    fn many_runs_merged_with_repeats() {
        let mut b = IdFileBuilder::with_run(1000).unwrap();
        let n = 20_000u64;
        for i in 0..n {
            b.push(id(i)).unwrap();
            if i % 3 == 0 {
                b.push(id(i / 2)).unwrap();
            }
        }
        let set = b.finish().unwrap();
        assert_eq!(set.len(), n);
        assert_eq!(set.fences.len(), (n as usize).div_ceil(BLOCK_IDS));
        for i in 0..n {
            assert!(set.contains(&id(i)), "{i}");
        }
        for i in n..n + 2000 {
            assert!(!set.contains(&id(i)));
        }
        assert!(
            set.contains(&Id([0; 32])),
            "id(0) is all zeros: the first of all"
        );
        assert!(!set.contains(&Id([1; 32])));
        assert!(!set.contains(&Id([0xff; 32])));
    }

    #[test]
    fn empty_and_cleared() {
        let set = IdFileBuilder::new().unwrap().finish().unwrap();
        assert!(set.is_empty());
        assert!(!set.contains(&id(1)));
        let mut b = IdFileBuilder::with_run(10).unwrap();
        for i in 0..55 {
            b.push(id(i)).unwrap();
        }
        b.clear().unwrap();
        b.push(id(100)).unwrap();
        let set = b.finish().unwrap();
        assert_eq!(set.len(), 1);
        assert!(set.contains(&id(100)));
        assert!(!set.contains(&id(1)));
    }

    /// Timing, not a check: `cargo test --release -p cairn-store --lib id_file::tests::time_build
    /// -- --ignored --nocapture` builds the set of 2 million random ids (16 runs) and looks each up.
    #[test]
    #[ignore]
    fn time_build() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let ids: Vec<Id> = (0..2_000_000).map(|_| Id(rng.gen())).collect();
        for round in 0..3 {
            let start = std::time::Instant::now();
            let mut b = IdFileBuilder::new().unwrap();
            for id in &ids {
                b.push(*id).unwrap();
            }
            let set = b.finish().unwrap();
            let built = start.elapsed();
            assert_eq!(set.len(), ids.len() as u64);
            assert!(ids.iter().step_by(97).all(|id| set.contains(id)));
            println!(
                "round {round}: built 2M ids in {built:.2?}, {} bytes of fences",
                set.memory()
            );
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// The same answers as a HashSet, for ids sharing long prefixes, one run or many.
        #[test]
        fn behaves_like_a_hash_set(
            ins in proptest::collection::vec(0u64..5_000, 0..3_000),
            ask in proptest::collection::vec(0u64..6_000, 0..500),
            run in 1usize..700,
        ) {
            let make = |n: u64| {
                // Few distinct first bytes: blocks and fences full of near neighbours.
                let mut b = [0u8; 32];
                b[0] = (n % 3) as u8;
                b[24..].copy_from_slice(&n.to_be_bytes());
                Id(b)
            };
            let mut b = IdFileBuilder::with_run(run).unwrap();
            let mut model = HashSet::new();
            for n in &ins {
                b.push(make(*n)).unwrap();
                model.insert(make(*n));
            }
            let set = b.finish().unwrap();
            prop_assert_eq!(set.len(), model.len() as u64);
            let mut sorted: Vec<Id> = model.iter().copied().collect();
            sorted.sort_unstable();
            for n in ask.iter().chain(&ins) {
                prop_assert_eq!(set.contains(&make(*n)), model.contains(&make(*n)));
                let rank = sorted.binary_search(&make(*n)).ok().map(|r| r as u64);
                prop_assert_eq!(set.rank(&make(*n)), rank);
            }
            let mut asked: Vec<Id> = ask.iter().chain(&ins).map(|n| make(*n)).collect();
            asked.sort_unstable();
            let ranks: Vec<Option<u64>> = asked
                .iter()
                .map(|id| sorted.binary_search(id).ok().map(|r| r as u64))
                .collect();
            prop_assert_eq!(set.ranks_sorted(&asked), ranks);
        }
    }
}
