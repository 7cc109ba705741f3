//! Index entries set aside in an unnamed temporary file as fixed-size records, for commands
//! that need them a pack at a time rather than all at once (`check --read-data` verifies each
//! pack against the entries the index objects list for it), and the record format shared with
//! [`crate::partial_index`].
//!
//! [`PackEntries::append`] writes each pack's blobs as the index objects are read (one `pwrite`
//! per pack) and remembers, per pack, where its records are (a pack listed by several index
//! objects has several runs); [`PackEntries::entries`] reads one pack's runs back with
//! `pread`. Memory holds a few dozen bytes per pack, none per blob.

use crate::index::head;
use crate::{Error, Result};
use cairn_format::frame::Compression;
use cairn_format::index::IndexPack;
use cairn_format::pack::{BlobEntry, FrameRef};
use cairn_format::Id;
use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;

/// One blob in a file of records: id, frame (offset, stored length, raw length,
/// compression), offset and length in the frame.
pub(crate) const BLOB_RECORD: usize = 32 + 8 + 4 + 4 + 1 + 4 + 4;

/// The record of `b`.
pub(crate) fn encode_blob(b: &BlobEntry) -> [u8; BLOB_RECORD] {
    let mut rec = [0u8; BLOB_RECORD];
    rec[..32].copy_from_slice(&b.id.0);
    rec[32..40].copy_from_slice(&b.frame.offset.to_le_bytes());
    rec[40..44].copy_from_slice(&b.frame.stored_len.to_le_bytes());
    rec[44..48].copy_from_slice(&b.frame.raw_len.to_le_bytes());
    rec[48] = u8::from(b.frame.compression == Compression::Zstd);
    rec[49..53].copy_from_slice(&b.offset.to_le_bytes());
    rec[53..57].copy_from_slice(&b.len.to_le_bytes());
    rec
}

/// The blob of a record written by [`encode_blob`].
pub(crate) fn decode_blob(rec: &[u8; BLOB_RECORD]) -> BlobEntry {
    let u32_at = |i: usize| u32::from_le_bytes([rec[i], rec[i + 1], rec[i + 2], rec[i + 3]]);
    let mut id = [0u8; 32];
    id.copy_from_slice(&rec[..32]);
    let mut offset = [0u8; 8];
    offset.copy_from_slice(&rec[32..40]);
    BlobEntry {
        id: Id(id),
        frame: FrameRef {
            offset: u64::from_le_bytes(offset),
            stored_len: u32_at(40),
            raw_len: u32_at(44),
            compression: if rec[48] == 1 {
                Compression::Zstd
            } else {
                Compression::None
            },
        },
        offset: u32_at(49),
        len: u32_at(53),
    }
}

fn tmp_error(what: &str, e: std::io::Error) -> Error {
    crate::record_sort::temp_file_error("index entries", what, e)
}

/// Where one listing of a pack's blobs is: first record, number of records.
type Run = (u64, u32);

/// Collects packs' index entries, as read from one listing of `index/`, into a temporary
/// file: a new listing starts it over, and a failed write is reported by
/// [`PackEntriesBuilder::finish`].
pub struct PackEntriesBuilder {
    entries: PackEntries,
    /// The listing of `index/` the entries come from.
    listing: u32,
    /// The first write that failed: [`PackEntriesBuilder::finish`] returns it.
    failed: Option<Error>,
}

impl PackEntriesBuilder {
    /// An empty builder with its temporary file.
    pub fn new() -> Result<PackEntriesBuilder> {
        Ok(PackEntriesBuilder {
            entries: PackEntries::new()?,
            listing: 1,
            failed: None,
        })
    }

    /// Set aside the blobs of `p`, read from listing `listing` of `index/` (a new listing
    /// forgets what earlier ones gave, as [`crate::index::Index::load_aside`] asks). A write
    /// that fails is kept for [`PackEntriesBuilder::finish`].
    pub fn put(&mut self, listing: u32, p: &IndexPack) {
        if self.failed.is_some() {
            return;
        }
        if listing != self.listing {
            self.listing = listing;
            self.entries.clear();
        }
        self.failed = self.entries.append(p).err();
    }

    /// The entries set aside, or the first write that failed.
    pub fn finish(self) -> Result<PackEntries> {
        match self.failed {
            Some(e) => Err(e),
            None => Ok(self.entries),
        }
    }
}

/// Where the records are: a temporary file, or memory where none can be made or written (a
/// full TMPDIR: 57 bytes a blob, logged).
#[derive(Debug)]
enum Records {
    File(File),
    Memory(Vec<u8>),
}

impl Records {
    /// A temporary file, or memory (logged) where none can be made.
    fn new() -> Records {
        match tempfile::tempfile() {
            Ok(f) => Records::File(f),
            Err(e) => {
                tracing::warn!("{}; {IN_MEMORY}", tmp_error("creating", e));
                Records::Memory(Vec::new())
            }
        }
    }

    /// Write `bytes` at `at`, where the records written so far end. A file that cannot take
    /// them is read back into memory, where they go on.
    fn write(&mut self, bytes: &[u8], at: u64) -> Result<()> {
        if let Records::File(f) = self {
            let Err(e) = f.write_all_at(bytes, at) else {
                return Ok(());
            };
            let e = tmp_error("writing", e);
            let mut held = vec![0u8; at as usize];
            if f.read_exact_at(&mut held, 0).is_err() {
                return Err(e);
            }
            tracing::warn!("{e}; {IN_MEMORY}");
            *self = Records::Memory(held);
        }
        if let Records::Memory(v) = self {
            v.truncate(at as usize);
            v.extend_from_slice(bytes);
        }
        Ok(())
    }

    fn read(&self, bytes: &mut [u8], at: u64) -> Result<()> {
        match self {
            Records::File(f) => f
                .read_exact_at(bytes, at)
                .map_err(|e| tmp_error("reading", e)),
            Records::Memory(v) => {
                let held = v.get(at as usize..at as usize + bytes.len());
                bytes.copy_from_slice(held.ok_or_else(|| {
                    Error::Invalid("index entries read beyond those set aside".into())
                })?);
                Ok(())
            }
        }
    }
}

/// What a [`PackEntries`] without a usable temporary file does.
const IN_MEMORY: &str = "the index entries are held in memory instead (57 bytes a blob)";

/// Packs' index entries on disk, appended a pack at a time and read back a pack at a time.
#[derive(Debug)]
pub struct PackEntries {
    records: Records,
    /// Records written.
    written: u64,
    runs: HashMap<Id, Vec<Run>>,
    /// One pack's records, encoded for one write.
    buf: Vec<u8>,
}

impl PackEntries {
    /// An empty set with its temporary file (in memory where none can be made).
    pub fn new() -> Result<PackEntries> {
        Ok(PackEntries {
            records: Records::new(),
            written: 0,
            runs: HashMap::new(),
            buf: Vec::new(),
        })
    }

    /// Forget every entry (the file is reused from its start).
    fn clear(&mut self) {
        self.written = 0;
        self.runs.clear();
    }

    /// Set aside the blobs of `p` (one write); a pack appended again adds a listing of it.
    pub fn append(&mut self, p: &IndexPack) -> Result<()> {
        if p.blobs.is_empty() {
            return Ok(());
        }
        let count = u32::try_from(p.blobs.len())
            .map_err(|_| Error::Invalid(format!("pack {} lists over 2^32 blobs", p.id)))?;
        self.buf.clear();
        for b in &p.blobs {
            self.buf.extend_from_slice(&encode_blob(b));
        }
        self.records
            .write(&self.buf, self.written * BLOB_RECORD as u64)?;
        if self.buf.capacity() > 1 << 20 {
            self.buf = Vec::new();
        }
        self.runs
            .entry(p.id)
            .or_default()
            .push((self.written, count));
        self.written += u64::from(count);
        Ok(())
    }

    /// Records set aside for `pack`, duplicates included (an upper bound of its blobs).
    pub fn listed(&self, pack: &Id) -> usize {
        self.runs
            .get(pack)
            .map_or(0, |runs| runs.iter().map(|(_, n)| *n as usize).sum())
    }

    /// Every blob the index objects list in `pack`, each once (the first listing of an id
    /// wins), in id order.
    pub fn entries(&self, pack: &Id) -> Result<Vec<BlobEntry>> {
        let mut out = Vec::new();
        self.entries_into(pack, &mut out)?;
        Ok(out)
    }

    /// [`PackEntries::entries`] into `out` (replacing its content): for readers of every
    /// pack in turn, whose one buffer is not a fresh allocation, faulted in, per pack.
    pub fn entries_into(&self, pack: &Id, out: &mut Vec<BlobEntry>) -> Result<()> {
        out.clear();
        let Some(runs) = self.runs.get(pack) else {
            return Ok(());
        };
        out.reserve(runs.iter().map(|(_, n)| *n as usize).sum());
        // Read in pieces of 64 KiB, below the size that is mapped afresh per allocation.
        const CHUNK: usize = (64 << 10) / BLOB_RECORD;
        let mut bytes = vec![0u8; CHUNK * BLOB_RECORD];
        for &(first, count) in runs {
            let mut at = first;
            let end = first + u64::from(count);
            while at < end {
                let n = (end - at).min(CHUNK as u64) as usize;
                let bytes = &mut bytes[..n * BLOB_RECORD];
                self.records.read(bytes, at * BLOB_RECORD as u64)?;
                for rec in bytes.chunks_exact(BLOB_RECORD) {
                    let rec: &[u8; BLOB_RECORD] = rec.try_into().expect("a whole record");
                    out.push(decode_blob(rec));
                }
                at += n as u64;
            }
        }
        // By id, the first listed of each (a stable sort), as the whole index keeps them; the
        // ids' first 8 bytes decide nearly every comparison.
        out.sort_by(|a, b| head(&a.id).cmp(&head(&b.id)).then_with(|| a.id.cmp(&b.id)));
        out.dedup_by_key(|b| b.id);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::pack::PackKind;
    use proptest::prelude::*;

    #[test]
    fn a_file_that_cannot_be_written_is_read_back_into_memory() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("records");
        std::fs::write(&path, b"abc").unwrap();
        // Read-only: the write fails, the 3 bytes written before move to memory.
        let mut r = Records::File(File::open(&path).unwrap());
        r.write(b"def", 3).unwrap();
        assert!(matches!(&r, Records::Memory(v) if v == b"abcdef"));
        r.write(b"XY", 2).unwrap(); // a listing starting over truncates, as the file would
        let mut back = [0u8; 4];
        r.read(&mut back, 0).unwrap();
        assert_eq!(&back, b"abXY");
        assert!(r.read(&mut back, 1).is_err(), "beyond what was written");
    }

    fn blob(n: u32, seed: u32) -> BlobEntry {
        let mut id = [0u8; 32];
        id[..4].copy_from_slice(&n.to_be_bytes());
        BlobEntry {
            id: Id(id),
            frame: FrameRef {
                offset: u64::from(seed) << 33 | u64::from(n),
                stored_len: seed ^ n,
                raw_len: seed.wrapping_mul(7),
                compression: if (n ^ seed).is_multiple_of(2) {
                    Compression::Zstd
                } else {
                    Compression::None
                },
            },
            offset: n.wrapping_mul(3),
            len: seed.wrapping_add(n),
        }
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(48))]
        /// Each pack's entries read back as a model built in memory gives them: listings of
        /// one pack united (first listing of an id wins), packs apart, a new listing of
        /// `index/` forgetting the earlier ones.
        #[test]
        fn reads_back_what_a_model_holds(
            puts in proptest::collection::vec(
                (1u32..3, 0u8..6, proptest::collection::vec(0u32..40, 0..30), any::<u32>()),
                0..40,
            ),
        ) {
            let mut b = PackEntriesBuilder::new().unwrap();
            let mut model: HashMap<Id, Vec<BlobEntry>> = HashMap::new();
            let mut listing = 1;
            for (l, pack, blobs, seed) in &puts {
                // Listings only grow, as index loads number them.
                let l = (*l).max(listing);
                if l != listing {
                    listing = l;
                    model.clear();
                }
                let p = IndexPack {
                    id: Id([*pack; 32]),
                    kind: PackKind::Data,
                    size: 1,
                    blobs: blobs.iter().map(|n| blob(*n, *seed)).collect(),
                };
                b.put(l, &p);
                let have = model.entry(p.id).or_default();
                for e in &p.blobs {
                    if !have.iter().any(|h| h.id == e.id) {
                        have.push(*e);
                    }
                }
            }
            let file = b.finish().unwrap();
            for pack in 0u8..7 {
                let id = Id([pack; 32]);
                let mut want = model.get(&id).cloned().unwrap_or_default();
                want.sort_by_key(|b| b.id);
                prop_assert_eq!(file.entries(&id).unwrap(), want);
            }
        }

        #[test]
        fn records_round_trip(n in any::<u32>(), seed in any::<u32>()) {
            let b = blob(n, seed);
            prop_assert_eq!(decode_blob(&encode_blob(&b)), b);
        }
    }
}
