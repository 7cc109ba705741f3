//! Index entries set aside in an unnamed temporary file as fixed-size records, for commands
//! that need them a pack at a time rather than all at once (`check --read-data` verifies each
//! pack against the entries the index objects list for it), and the record format shared with
//! [`crate::partial_index`].
//!
//! [`PackEntriesBuilder::put`] appends each pack's blobs as the index objects are read (256 KiB
//! write buffer) and remembers, per pack, where its records are (a pack listed by several
//! index objects has several runs); [`PackEntries::entries`] reads one pack's runs back with
//! `pread`. Memory holds a few dozen bytes per pack, none per blob.

use crate::{Error, Result};
use cairn_format::frame::Compression;
use cairn_format::index::IndexPack;
use cairn_format::pack::{BlobEntry, FrameRef};
use cairn_format::Id;
use std::collections::HashMap;
use std::fs::File;
use std::io::{BufWriter, Seek, SeekFrom, Write};
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
    crate::id_file::temp_file_error("index entries", what, e)
}

/// Where one listing of a pack's blobs is: first record, number of records.
type Run = (u64, u32);

/// Collects packs' index entries into a temporary file.
pub struct PackEntriesBuilder {
    out: BufWriter<File>,
    /// Records written.
    written: u64,
    /// The listing of `index/` the entries come from.
    listing: u32,
    runs: HashMap<Id, Vec<Run>>,
    /// The first write that failed: [`PackEntriesBuilder::finish`] returns it.
    failed: Option<Error>,
}

impl PackEntriesBuilder {
    /// An empty builder with its temporary file.
    pub fn new() -> Result<PackEntriesBuilder> {
        let f = tempfile::tempfile().map_err(|e| tmp_error("creating", e))?;
        Ok(PackEntriesBuilder {
            out: BufWriter::with_capacity(256 << 10, f),
            written: 0,
            listing: 1,
            runs: HashMap::new(),
            failed: None,
        })
    }

    /// Set aside the blobs of `p`, read from listing `listing` of `index/` (a new listing
    /// forgets what earlier ones gave, as [`crate::index::Index::load_aside`] asks). A write
    /// that fails is kept for [`PackEntriesBuilder::finish`].
    pub fn put(&mut self, listing: u32, p: &IndexPack) {
        if self.failed.is_none() {
            self.failed = self.try_put(listing, p).err();
        }
    }

    fn try_put(&mut self, listing: u32, p: &IndexPack) -> Result<()> {
        if listing != self.listing {
            self.listing = listing;
            self.out.flush().map_err(|e| tmp_error("writing", e))?;
            let f = self.out.get_mut();
            f.set_len(0).map_err(|e| tmp_error("truncating", e))?;
            f.seek(SeekFrom::Start(0))
                .map_err(|e| tmp_error("truncating", e))?;
            self.written = 0;
            self.runs.clear();
        }
        if p.blobs.is_empty() {
            return Ok(());
        }
        let count = u32::try_from(p.blobs.len())
            .map_err(|_| Error::Invalid(format!("pack {} lists over 2^32 blobs", p.id)))?;
        self.runs
            .entry(p.id)
            .or_default()
            .push((self.written, count));
        for b in &p.blobs {
            self.out
                .write_all(&encode_blob(b))
                .map_err(|e| tmp_error("writing", e))?;
        }
        self.written += u64::from(count);
        Ok(())
    }

    /// The entries set aside, or the first write that failed.
    pub fn finish(self) -> Result<PackEntries> {
        if let Some(e) = self.failed {
            return Err(e);
        }
        let mut runs = self.runs;
        runs.shrink_to_fit();
        let file = self
            .out
            .into_inner()
            .map_err(|e| tmp_error("writing", e.into_error()))?;
        Ok(PackEntries { file, runs })
    }
}

/// Packs' index entries on disk, read back a pack at a time.
#[derive(Debug)]
pub struct PackEntries {
    file: File,
    runs: HashMap<Id, Vec<Run>>,
}

impl PackEntries {
    /// Every blob the index objects list in `pack`, each once (the first listing of an id
    /// wins), in id order.
    pub fn entries(&self, pack: &Id) -> Result<Vec<BlobEntry>> {
        let Some(runs) = self.runs.get(pack) else {
            return Ok(Vec::new());
        };
        let total: u64 = runs.iter().map(|(_, n)| u64::from(*n)).sum();
        let mut out = Vec::with_capacity(total as usize);
        let mut bytes = Vec::new();
        for &(first, count) in runs {
            bytes.resize(count as usize * BLOB_RECORD, 0);
            self.file
                .read_exact_at(&mut bytes, first * BLOB_RECORD as u64)
                .map_err(|e| tmp_error("reading", e))?;
            for rec in bytes.chunks_exact(BLOB_RECORD) {
                let rec: &[u8; BLOB_RECORD] = rec.try_into().expect("a whole record");
                out.push(decode_blob(rec));
            }
        }
        // By id, the first listed of each (a stable sort), as the whole index keeps them.
        out.sort_by_key(|b| b.id);
        out.dedup_by_key(|b| b.id);
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::pack::PackKind;
    use proptest::prelude::*;

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
