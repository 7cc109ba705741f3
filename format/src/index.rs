//! Index objects: which pack holds each blob. One is written per backup; readers merge all.

use crate::pack::{BlobEntry, PackKind};
use crate::record::{self, RecordKind};
use crate::{Error, Id};
use serde::{Deserialize, Serialize};

/// One pack as listed in an index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct IndexPack {
    /// Pack id (blake3 of the stored ciphertext).
    pub id: Id,
    /// Data or tree.
    pub kind: PackKind,
    /// Stored (ciphertext) size in bytes.
    pub size: u64,
    /// The pack's blobs, as in its trailer.
    pub blobs: Vec<BlobEntry>,
}

impl IndexPack {
    /// Checks every blob entry lies within the pack. The trailer lies inside the plaintext,
    /// which is smaller than the stored ciphertext, so `size` bounds every entry.
    pub fn validate(&self) -> Result<(), Error> {
        self.blobs.iter().try_for_each(|b| b.validate(self.size))
    }
}

/// The `index/<id>` record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct IndexRecord {
    /// Packs described.
    pub packs: Vec<IndexPack>,
}

impl IndexRecord {
    /// Encode as an index record.
    pub fn encode(&self) -> Vec<u8> {
        record::encode(RecordKind::Index, self)
    }

    /// Write as an index record to `out` as it is encoded ([`IndexRecord::encoded_len`] bytes).
    pub fn encode_to<W: std::io::Write>(&self, out: W) -> std::io::Result<W> {
        record::encode_to(
            RecordKind::Index,
            RecordKind::Index.current_version(),
            self,
            out,
        )
    }

    /// The length of [`IndexRecord::encode`]'s bytes.
    pub fn encoded_len(&self) -> usize {
        record::encoded_len(self)
    }

    /// Decode and sanity-check an index record.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let rec: IndexRecord = record::decode(RecordKind::Index, bytes)?;
        for p in &rec.packs {
            // The entries are checked as a pack trailer's are; the error is the index's.
            p.validate().map_err(|e| match e {
                Error::Malformed { reason, .. } => {
                    Error::malformed("index", format!("its entry for pack {}: {reason}", p.id))
                }
                other => other,
            })?;
        }
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Compression;
    use crate::pack::FrameRef;

    #[test]
    fn round_trip() {
        let rec = IndexRecord {
            packs: vec![IndexPack {
                id: Id([1; 32]),
                kind: PackKind::Tree,
                size: 1000,
                blobs: vec![BlobEntry {
                    id: Id([2; 32]),
                    frame: FrameRef {
                        offset: 0,
                        stored_len: 100,
                        raw_len: 300,
                        compression: Compression::Zstd,
                    },
                    offset: 10,
                    len: 200,
                }],
            }],
        };
        assert_eq!(IndexRecord::decode(&rec.encode()).unwrap(), rec);
        // Streamed, the same bytes, of the length measured beforehand.
        let streamed = rec.encode_to(Vec::new()).unwrap();
        assert_eq!(streamed, rec.encode());
        assert_eq!(rec.encoded_len(), streamed.len());
        let mut bad = rec.clone();
        bad.packs[0].size = 50;
        assert!(IndexRecord::decode(&bad.encode()).is_err());
    }
}
