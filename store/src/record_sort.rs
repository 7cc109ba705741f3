//! Sorting more fixed-size records than are worth holding in memory: runs of a bounded number
//! of records are sorted in memory and appended to an unnamed temporary file, then merged
//! (a buffered `pread` per run, a heap of one record per run) as they are read back.
//!
//! Memory: one run while records are pushed ([`RUN_BYTES`] of decoded records), one read
//! buffer of [`READ_BYTES`] per run while merging (a 2 GB etcd database's restore plan: 8 runs).

use crate::{Error, Result};
use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// Bytes of records sorted in memory at once (as held decoded).
pub const RUN_BYTES: usize = 4 << 20;
/// Bytes read at once from each run while merging, unless [`Sorter::reading`] says otherwise.
const READ_BYTES: usize = 64 << 10;

/// An error `what`-ing (creating, writing, reading…) a local temporary file of `holding`: it
/// names the file's place and what to do.
pub(crate) fn temp_file_error(holding: &str, what: &str, e: std::io::Error) -> Error {
    Error::Invalid(format!(
        "{what} the temporary file of {holding} (in TMPDIR, or /tmp): {e}; free space there or point TMPDIR elsewhere"
    ))
}

/// A record of a fixed encoded length, ordered as it is to be sorted.
pub trait Record: Ord + Copy {
    /// Encoded length in bytes.
    const LEN: usize;
    /// Write the record into `out` (`LEN` bytes).
    fn encode(&self, out: &mut [u8]);
    /// The record `encode` wrote into `b` (`LEN` bytes).
    fn decode(b: &[u8]) -> Self;
}

/// Records pushed in any order, read back sorted by [`Sorter::finish`].
pub struct Sorter<R: Record> {
    what: &'static str,
    run: Vec<R>,
    run_len: usize,
    /// Records read at once from each run while merging.
    read_len: usize,
    file: Option<File>,
    /// Records in each run written, in order.
    runs: Vec<u64>,
    written: u64,
}

impl<R: Record> Sorter<R> {
    /// An empty sorter of records of `what` (named in errors), runs of [`RUN_BYTES`].
    pub fn new(what: &'static str) -> Sorter<R> {
        Sorter::with_run(what, RUN_BYTES / std::mem::size_of::<R>().max(1))
    }

    /// An empty sorter with runs of `run_len` records.
    pub fn with_run(what: &'static str, run_len: usize) -> Sorter<R> {
        Sorter {
            what,
            run: Vec::new(),
            run_len: run_len.max(1),
            read_len: (READ_BYTES / R::LEN).max(1),
            file: None,
            runs: Vec::new(),
            written: 0,
        }
    }

    /// An empty sorter writing its runs to `file` (an unnamed temporary file).
    pub fn in_file(what: &'static str, file: File) -> Sorter<R> {
        Sorter {
            file: Some(file),
            ..Sorter::new(what)
        }
    }

    /// The same sorter reading `bytes` at once from each run while merging.
    pub fn reading(self, bytes: usize) -> Sorter<R> {
        Sorter {
            read_len: (bytes / R::LEN).max(1),
            ..self
        }
    }

    /// Add a record.
    pub fn push(&mut self, r: R) -> Result<()> {
        if self.run.capacity() == 0 {
            self.run.reserve_exact(self.run_len);
        }
        self.run.push(r);
        if self.run.len() >= self.run_len {
            self.spill()?;
        }
        Ok(())
    }

    /// Forget every record pushed so far (the file is emptied).
    pub fn clear(&mut self) -> Result<()> {
        self.run.clear();
        self.runs.clear();
        self.written = 0;
        match &self.file {
            Some(f) => f
                .set_len(0)
                .map_err(|e| temp_file_error(self.what, "truncating", e)),
            None => Ok(()),
        }
    }

    /// Sort the run in memory and append it to the file.
    fn spill(&mut self) -> Result<()> {
        self.run.sort_unstable();
        let file = match &mut self.file {
            Some(f) => f,
            None => self.file.insert(
                tempfile::tempfile().map_err(|e| temp_file_error(self.what, "creating", e))?,
            ),
        };
        let per_write = (READ_BYTES / R::LEN).max(1);
        let mut bytes = vec![0u8; per_write * R::LEN];
        let mut at = self.written * R::LEN as u64;
        for chunk in self.run.chunks(per_write) {
            let out = &mut bytes[..chunk.len() * R::LEN];
            for (r, b) in chunk.iter().zip(out.chunks_exact_mut(R::LEN)) {
                r.encode(b);
            }
            file.write_all_at(out, at)
                .map_err(|e| temp_file_error(self.what, "writing", e))?;
            at += out.len() as u64;
        }
        self.runs.push(self.run.len() as u64);
        self.written += self.run.len() as u64;
        self.run.clear();
        Ok(())
    }

    /// Every record pushed, sorted (equal records in any order).
    pub fn finish(mut self) -> Result<Merged<R>> {
        let memory = if self.runs.is_empty() {
            // One run: sorted in memory, nothing written.
            self.run.sort_unstable();
            std::mem::take(&mut self.run)
        } else {
            if !self.run.is_empty() {
                self.spill()?;
            }
            Vec::new()
        };
        let mut start = 0u64;
        let cursors = self
            .runs
            .iter()
            .map(|&n| {
                let c = Cursor {
                    next: start,
                    end: start + n,
                    buf: Vec::new(),
                    at: 0,
                };
                start += n;
                c
            })
            .collect();
        let mut merged = Merged {
            what: self.what,
            read_len: self.read_len,
            file: self.file.take(),
            cursors,
            heap: BinaryHeap::new(),
            memory: memory.into_iter(),
        };
        for i in 0..merged.cursors.len() {
            merged.refill(i)?;
        }
        Ok(merged)
    }
}

/// A run's place in the file and its records read ahead.
struct Cursor<R> {
    next: u64,
    end: u64,
    buf: Vec<R>,
    at: usize,
}

/// The records of a [`Sorter`], in order.
pub struct Merged<R: Record> {
    what: &'static str,
    read_len: usize,
    file: Option<File>,
    cursors: Vec<Cursor<R>>,
    /// The next record of each run not exhausted, with its run.
    heap: BinaryHeap<Reverse<(R, usize)>>,
    /// A sort that fit in one run.
    memory: std::vec::IntoIter<R>,
}

impl<R: Record> Merged<R> {
    /// Put run `i`'s next record on the heap, reading ahead when its buffer is used up.
    fn refill(&mut self, i: usize) -> Result<()> {
        let c = &mut self.cursors[i];
        if c.at == c.buf.len() {
            let n = (c.end - c.next).min(self.read_len as u64) as usize;
            if n == 0 {
                c.buf = Vec::new();
                return Ok(());
            }
            let mut bytes = vec![0u8; n * R::LEN];
            let file = self.file.as_ref().expect("runs on disk have a file");
            file.read_exact_at(&mut bytes, c.next * R::LEN as u64)
                .map_err(|e| temp_file_error(self.what, "reading", e))?;
            c.buf.clear();
            c.buf.extend(bytes.chunks_exact(R::LEN).map(R::decode));
            c.next += n as u64;
            c.at = 0;
        }
        self.heap.push(Reverse((c.buf[c.at], i)));
        c.at += 1;
        Ok(())
    }

    /// The next record in order, if any.
    pub fn next_record(&mut self) -> Result<Option<R>> {
        if let Some(r) = self.memory.next() {
            return Ok(Some(r));
        }
        let Some(Reverse((r, i))) = self.heap.pop() else {
            return Ok(None);
        };
        self.refill(i)?;
        Ok(Some(r))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
    struct Pair(u32, u8);

    impl Record for Pair {
        const LEN: usize = 5;
        fn encode(&self, out: &mut [u8]) {
            out[..4].copy_from_slice(&self.0.to_be_bytes());
            out[4] = self.1;
        }
        fn decode(b: &[u8]) -> Self {
            Pair(u32::from_be_bytes(b[..4].try_into().unwrap()), b[4])
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(64))]
        /// The same order as a sort in memory, in one run or many, after records pushed and
        /// cleared.
        #[test]
        fn sorts_like_a_vector(
            recs in proptest::collection::vec((0u32..500, any::<u8>()), 0..2_000),
            run in 1usize..300,
            read in 1usize..40,
            cleared in 0usize..1_000,
        ) {
            let mut s = Sorter::with_run("test records", run).reading(read * Pair::LEN);
            // Records pushed, then forgotten.
            for &(a, b) in recs.iter().take(cleared) {
                s.push(Pair(b.into(), a as u8)).unwrap();
            }
            s.clear().unwrap();
            for &(a, b) in &recs {
                s.push(Pair(a, b)).unwrap();
            }
            let mut m = s.finish().unwrap();
            let mut got = Vec::new();
            while let Some(r) = m.next_record().unwrap() {
                got.push(r);
            }
            let mut want: Vec<Pair> = recs.iter().map(|&(a, b)| Pair(a, b)).collect();
            want.sort();
            prop_assert_eq!(got, want);
        }
    }
}
