//! Concurrency records (SPEC.md §11): leases held by running backups, copies and prunes, and
//! the markers by which prune condemns packs before deleting them.

use crate::index::IndexPack;
use crate::record::{self, RecordKind};
use crate::{Error, Id};
use serde::{Deserialize, Serialize};

/// What holds a lease.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum LeaseKind {
    /// A backup (or copy) adding data.
    Writer,
    /// The one prune allowed at a time.
    Prune,
}

/// A `locks/<name>` object: who is working, since when, and which gc markers it has seen.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct LeaseRecord {
    /// Kind of holder.
    pub kind: LeaseKind,
    /// Host name.
    pub host: String,
    /// Process id on that host.
    pub pid: u32,
    /// When the work started (Unix seconds, holder's clock).
    pub started_unix: i64,
    /// When the lease was last renewed (Unix seconds, holder's clock).
    pub renewed_unix: i64,
    /// The gc markers the holder had seen when it loaded the index; `None` while it has not
    /// loaded it yet. A holder never reuses blobs from packs condemned by a marker it saw.
    pub seen_markers: Option<Vec<Id>>,
}

impl LeaseRecord {
    /// Encode as a lease record.
    pub fn encode(&self) -> Vec<u8> {
        record::encode(RecordKind::Lease, self)
    }

    /// Decode a lease record.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        record::decode(RecordKind::Lease, bytes)
    }

    /// True if the lease was renewed less than `expiry_secs` before `now_unix`.
    pub fn is_live(&self, now_unix: i64, expiry_secs: i64) -> bool {
        now_unix.saturating_sub(self.renewed_unix) < expiry_secs
    }

    /// True if the holder loaded its index after `marker` was written.
    pub fn has_seen(&self, marker: &Id) -> bool {
        self.seen_markers
            .as_ref()
            .is_some_and(|seen| seen.contains(marker))
    }
}

/// A `gc/<id>` object: packs condemned by a prune, with the index entries they had, so that a
/// pack a concurrent backup turned out to need can be put back in the index.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GcRecord {
    /// When the marker was written (Unix seconds, prune's clock).
    pub created_unix: i64,
    /// Condemned packs. `blobs` is empty for packs no index listed (left by an interrupted
    /// backup).
    pub packs: Vec<IndexPack>,
}

impl GcRecord {
    /// Encode as a gc record.
    pub fn encode(&self) -> Vec<u8> {
        record::encode(RecordKind::Gc, self)
    }

    /// Decode and sanity-check a gc record.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let rec: GcRecord = record::decode(RecordKind::Gc, bytes)?;
        rec.packs.iter().try_for_each(IndexPack::validate)?;
        Ok(rec)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pack::PackKind;

    #[test]
    fn lease_round_trip_and_liveness() {
        let l = LeaseRecord {
            kind: LeaseKind::Writer,
            host: "master-0".into(),
            pid: 42,
            started_unix: 1000,
            renewed_unix: 1300,
            seen_markers: Some(vec![Id([7; 32])]),
        };
        assert_eq!(LeaseRecord::decode(&l.encode()).unwrap(), l);
        assert!(l.is_live(1300 + 3599, 3600));
        assert!(!l.is_live(1300 + 3600, 3600));
        assert!(l.has_seen(&Id([7; 32])));
        assert!(!l.has_seen(&Id([8; 32])));
        let unloaded = LeaseRecord {
            seen_markers: None,
            ..l
        };
        assert!(!unloaded.has_seen(&Id([7; 32])));
    }

    #[test]
    fn gc_round_trip_and_rejects_other_kinds() {
        let g = GcRecord {
            created_unix: 5,
            packs: vec![IndexPack {
                id: Id([1; 32]),
                kind: PackKind::Data,
                size: 100,
                blobs: Vec::new(),
            }],
        };
        assert_eq!(GcRecord::decode(&g.encode()).unwrap(), g);
        assert!(LeaseRecord::decode(&g.encode()).is_err());
        let mut truncated = g.encode();
        truncated.pop();
        assert!(GcRecord::decode(&truncated).is_err());
    }
}
