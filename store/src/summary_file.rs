//! The page summaries of a large etcd database's one-pass bbolt inspection, kept in an unnamed
//! local temporary file instead of memory (a [`SummaryStore`]): a 2 GB database has half a
//! million pages, 32 bytes each in memory.

use cairn_format::bbolt::{SummaryStore, SUMMARY_RECORD};
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;

/// Pages whose summaries the inspection holds in memory (about 32 bytes each: 256 KiB, a
/// 32 MiB database of 4 KiB pages) before later ones go to the file.
pub const IN_MEMORY_PAGES: u64 = 1 << 13;

/// Records gathered before one write (52 KiB).
const BATCH: usize = 2048;

/// Records read back at a time: one 4 KiB block's worth (the walk visits pages near those it
/// visited last).
const BLOCK_RECORDS: u64 = (4096 / SUMMARY_RECORD) as u64;

/// Blocks kept read back (direct-mapped by block number): 256 KiB.
const CACHED_BLOCKS: usize = 64;

/// Summary records in a temporary file made at the first full batch. When it cannot be made or
/// written, the records stay in memory (26 bytes a page) and a warning says why.
#[derive(Default)]
pub struct SummaryFile {
    file: Option<File>,
    /// The file failed: records are no longer written.
    failed: bool,
    /// Records in the file.
    written: u64,
    /// Records after those, not written yet.
    pending: Vec<u8>,
    /// Blocks read back: block number and its records.
    cache: Vec<(u64, Vec<u8>)>,
}

impl SummaryFile {
    /// A store that has no record yet (and no file).
    pub fn new() -> Self {
        SummaryFile::default()
    }

    /// Writes the pending records to the file, making it first if need be.
    fn flush(&mut self) {
        let file = match &mut self.file {
            Some(f) => f,
            None => match tempfile::tempfile() {
                Ok(f) => self.file.insert(f),
                Err(e) => return self.give_up("creating", e),
            },
        };
        match file.write_all_at(&self.pending, self.written * SUMMARY_RECORD as u64) {
            Ok(()) => {
                self.written += (self.pending.len() / SUMMARY_RECORD) as u64;
                self.pending.clear();
            }
            Err(e) => self.give_up("writing", e),
        }
    }

    /// The records of block `b` (all written), read back unless cached.
    fn block(&mut self, b: u64) -> io::Result<&[u8]> {
        if self.cache.is_empty() {
            self.cache = vec![(u64::MAX, Vec::new()); CACHED_BLOCKS];
        }
        let slot = (b % CACHED_BLOCKS as u64) as usize;
        let first = b * BLOCK_RECORDS;
        let records = BLOCK_RECORDS.min(self.written - first) as usize;
        // A block cached before more records were written is read again.
        if self.cache[slot].0 != b || self.cache[slot].1.len() < records * SUMMARY_RECORD {
            let file = self
                .file
                .as_ref()
                .ok_or_else(|| io::Error::other("the file is gone"))?;
            let buf = &mut self.cache[slot].1;
            buf.resize(records * SUMMARY_RECORD, 0);
            // Marked unread until the read succeeds.
            self.cache[slot].0 = u64::MAX;
            file.read_exact_at(&mut self.cache[slot].1, first * SUMMARY_RECORD as u64)?;
            self.cache[slot].0 = b;
        }
        Ok(&self.cache[slot].1)
    }

    fn give_up(&mut self, what: &str, e: io::Error) {
        self.failed = true;
        tracing::warn!(
            "{what} the temporary file of the etcd database's page summaries (in TMPDIR, or /tmp): {e}; they are held in memory instead (26 bytes a page); free space there or point TMPDIR elsewhere"
        );
    }
}

impl SummaryStore for SummaryFile {
    fn put(&mut self, _n: u64, record: &[u8; SUMMARY_RECORD]) {
        self.pending.extend_from_slice(record);
        if !self.failed && self.pending.len() >= BATCH * SUMMARY_RECORD {
            self.flush();
        }
    }

    fn replace(&mut self, n: u64, record: &[u8; SUMMARY_RECORD]) -> bool {
        if n >= self.written {
            let at = usize::try_from(n - self.written)
                .ok()
                .and_then(|i| i.checked_mul(SUMMARY_RECORD));
            return match at.and_then(|at| self.pending.get_mut(at..at + SUMMARY_RECORD)) {
                Some(slot) => {
                    slot.copy_from_slice(record);
                    true
                }
                None => false,
            };
        }
        let Some(file) = self.file.as_ref().filter(|_| !self.failed) else {
            return false;
        };
        if let Err(e) = file.write_all_at(record, n * SUMMARY_RECORD as u64) {
            self.give_up("writing", e);
            return false;
        }
        // A cached copy of its block is read again.
        let b = n / BLOCK_RECORDS;
        if let Some(slot) = self.cache.get_mut((b % CACHED_BLOCKS as u64) as usize) {
            if slot.0 == b {
                slot.0 = u64::MAX;
            }
        }
        true
    }

    fn get(&mut self, n: u64, record: &mut [u8; SUMMARY_RECORD]) -> io::Result<()> {
        if n < self.written {
            let block = self.block(n / BLOCK_RECORDS).map_err(|e| {
                io::Error::new(
                    e.kind(),
                    format!(
                        "reading back page summary {n} from its temporary file (in TMPDIR, or /tmp): {e}"
                    ),
                )
            })?;
            let at = (n % BLOCK_RECORDS) as usize * SUMMARY_RECORD;
            record.copy_from_slice(&block[at..at + SUMMARY_RECORD]);
            return Ok(());
        }
        let at = usize::try_from(n - self.written)
            .ok()
            .and_then(|i| i.checked_mul(SUMMARY_RECORD))
            .and_then(|at| self.pending.as_slice().get(at..at + SUMMARY_RECORD))
            .ok_or_else(|| io::Error::other(format!("page summary {n} was never stored")))?;
        record.copy_from_slice(at);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_read_back_from_the_file_and_from_memory() {
        let mut s = SummaryFile::new();
        let n = (BATCH * 2 + 100) as u64;
        let rec = |i: u64| {
            let mut r = [0u8; SUMMARY_RECORD];
            r[..8].copy_from_slice(&i.to_le_bytes());
            r[SUMMARY_RECORD - 1] = i as u8;
            r
        };
        for i in 0..n {
            s.put(i, &rec(i));
        }
        assert!(s.file.is_some());
        assert_eq!(s.written, (BATCH * 2) as u64);
        let mut r = [0u8; SUMMARY_RECORD];
        for i in [
            0,
            1,
            BATCH as u64,
            n - 101,
            n - 100,
            n - 1,
            1,
            BLOCK_RECORDS,
            0,
        ] {
            s.get(i, &mut r).unwrap();
            assert_eq!(r, rec(i));
        }
        assert!(s.get(n, &mut r).is_err());
        // Replaced: in the file (its block cached above, and not), and among the pending.
        let other = |i: u64| {
            let mut r = rec(i);
            r[8] = 0xAA;
            r
        };
        for i in [1, BATCH as u64 + 3, n - 1] {
            assert!(s.replace(i, &other(i)));
            s.get(i, &mut r).unwrap();
            assert_eq!(r, other(i));
        }
        s.get(2, &mut r).unwrap();
        assert_eq!(r, rec(2));
        assert!(!s.replace(n, &rec(n)), "never put");
    }
}
