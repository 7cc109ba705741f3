//! Content lists (SPEC §9.1): a long file's list of content blob ids stored out of line, as a
//! blob of its own, optionally written relative to an earlier list (its *base*) so that a file
//! whose blobs mostly stay in place (an etcd database: bbolt pages rewritten at fixed offsets)
//! costs only its changed ids per backup.
//!
//! ```text
//! ContentList { base: Option<Id>, len: u64, ops: Vec<Op> }
//! Op::Copy { start: u64, count: u64 }   ids start..start+count of the base's resolved list
//! Op::Ids(Vec<Id>)                      literal ids
//! ```
//!
//! A list resolves to the concatenation of its ops, exactly `len` ids. Readers follow at most
//! [`MAX_CHAIN`] lists along a chain of bases (the list itself included) and resolve to at
//! most [`MAX_LIST_IDS`] ids; decoding is bounded by the blob's size.

use crate::bounded::{self, Limits, ALLOC};
use crate::record::{self, RecordKind};
use crate::{Error, Id};
use serde::{Deserialize, Deserializer, Serialize};

/// Most lists one file's content is resolved through: the file's own list and its bases.
/// Writers start a self-contained list when a base's chain is this long already.
pub const MAX_CHAIN: usize = 32;

/// Most ids a list resolves to (the ids of one decoded tree's memory bound).
pub const MAX_LIST_IDS: u64 = (crate::tree::MAX_TREE_DECODED / std::mem::size_of::<Id>()) as u64;

/// Files with at least this many content blobs are written with a content list; shorter ones
/// keep their ids inline in the tree.
pub const LIST_MIN_IDS: usize = 256;

/// Writers divide a long file's ids into lists of at most this many ids (2 MiB of ids, well
/// within the 16 MiB blob limit, so a file of any size the tree bound allows can be stored;
/// several lists of one file need a version-3 tree). The list of a part of a file that did not
/// change is the same blob as in the previous backup.
pub const LIST_SEGMENT_IDS: usize = 65_536;

/// Most decoded bytes one list's operations may take.
const MAX_OPS_DECODED: usize = 64 << 20;

/// One run of a content list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum Op {
    /// `count` ids of the base's resolved list, from index `start`.
    Copy {
        /// First index in the base's list.
        start: u64,
        /// How many ids (at least 1).
        count: u64,
    },
    /// Literal ids (at least 1).
    Ids(#[serde(deserialize_with = "bounded_ids")] Vec<Id>),
}

impl Op {
    fn decoded_cost(&self) -> Result<usize, String> {
        Ok(std::mem::size_of::<Op>()
            + match self {
                Op::Copy { .. } => 0,
                Op::Ids(ids) => ids.len() * std::mem::size_of::<Id>() + ALLOC,
            })
    }

    /// How many ids this run yields.
    pub fn count(&self) -> u64 {
        match self {
            Op::Copy { count, .. } => *count,
            Op::Ids(ids) => ids.len() as u64,
        }
    }
}

/// If `bytes` is a content list blob that `decode` accepts as a self-contained list of one
/// run of ids, in canonical encoding: its length and where its ids start. None for anything
/// else (left to `decode`).
fn full_layout(bytes: &[u8]) -> Option<(u64, usize)> {
    record::version(RecordKind::ContentList, bytes).ok()?;
    let body = bytes.get(record::HEADER_LEN..)?;
    // base: None.
    let rest = body.strip_prefix(&[0u8])?;
    let (len, rest) = varint(rest)?;
    // One op, variant 1 (Ids), of `len` ids.
    let (ops, rest) = varint(rest)?;
    let (variant, rest) = varint(rest)?;
    let (count, rest) = varint(rest)?;
    let id_len = std::mem::size_of::<Id>() as u64;
    let fits = count
        .checked_mul(id_len)
        .is_some_and(|b| b + 4096 < MAX_OPS_DECODED as u64);
    (ops == 1
        && variant == 1
        && count == len
        && len > 0
        && len <= MAX_LIST_IDS
        && fits
        && rest.len() as u64 == count * id_len)
        .then_some((len, bytes.len() - rest.len()))
}

/// A postcard varint of at most 4 bytes (LEB128, no redundant last byte: every value a list
/// may hold) and the bytes after it; None for anything else.
fn varint(b: &[u8]) -> Option<(u64, &[u8])> {
    let mut v = 0u64;
    for (i, &byte) in b.iter().enumerate().take(4) {
        v |= u64::from(byte & 0x7f).checked_shl(7 * i as u32)?;
        if byte & 0x80 == 0 {
            if i > 0 && byte == 0 {
                return None;
            }
            return Some((v, &b[i + 1..]));
        }
    }
    None
}

fn bounded_ids<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Id>, D::Error> {
    bounded::vec(
        d,
        Limits {
            what: "ids of one content list run",
            max_len: MAX_LIST_IDS as usize,
            max_bytes: MAX_OPS_DECODED,
            cost: |_: &Id| Ok(std::mem::size_of::<Id>()),
        },
    )
}

fn bounded_ops<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Op>, D::Error> {
    bounded::vec(
        d,
        Limits {
            what: "runs of one content list",
            max_len: MAX_LIST_IDS as usize,
            max_bytes: MAX_OPS_DECODED,
            cost: Op::decoded_cost,
        },
    )
}

/// A content list blob (record kind `N`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ContentList {
    /// The list this one copies runs from; None for a self-contained list.
    pub base: Option<Id>,
    /// How many ids the list resolves to.
    pub len: u64,
    /// The runs, in order.
    #[serde(deserialize_with = "bounded_ops")]
    pub ops: Vec<Op>,
}

impl ContentList {
    /// A self-contained list of `ids`.
    pub fn full(ids: &[Id]) -> ContentList {
        ContentList {
            base: None,
            len: ids.len() as u64,
            ops: if ids.is_empty() {
                Vec::new()
            } else {
                vec![Op::Ids(ids.to_vec())]
            },
        }
    }

    /// `ids` written relative to `base` (its blob id and resolved ids): positions where both
    /// hold the same id become copy runs, the rest literal ids. Falls back to a self-contained
    /// list when fewer than half of the ids could be copied.
    pub fn delta(ids: &[Id], base: (Id, &[Id])) -> ContentList {
        let (base_id, old) = base;
        let mut ops: Vec<Op> = Vec::new();
        let mut copied = 0usize;
        let mut i = 0;
        while i < ids.len() {
            let start = i;
            if i < old.len() && ids[i] == old[i] {
                while i < ids.len() && i < old.len() && ids[i] == old[i] {
                    i += 1;
                }
                copied += i - start;
                ops.push(Op::Copy {
                    start: start as u64,
                    count: (i - start) as u64,
                });
            } else {
                while i < ids.len() && !(i < old.len() && ids[i] == old[i]) {
                    i += 1;
                }
                ops.push(Op::Ids(ids[start..i].to_vec()));
            }
        }
        if copied * 2 < ids.len() {
            return ContentList::full(ids);
        }
        ContentList {
            base: Some(base_id),
            len: ids.len() as u64,
            ops,
        }
    }

    /// Encode as a content list blob.
    pub fn encode(&self) -> Vec<u8> {
        record::encode(RecordKind::ContentList, self)
    }

    /// The encoding of [`ContentList::full`]`(ids)`, byte for byte, without copying the ids
    /// into a list first (a 1 GB etcd database's list is ~8 MB of ids).
    pub fn encode_full(ids: &[Id]) -> Vec<u8> {
        /// [`ContentList`] and [`Op`] borrowing their ids: the same serde layout.
        #[derive(Serialize)]
        struct ListRef<'a> {
            base: Option<Id>,
            len: u64,
            ops: &'a [OpRef<'a>],
        }
        #[derive(Serialize)]
        enum OpRef<'a> {
            #[allow(dead_code)]
            Copy {
                start: u64,
                count: u64,
            },
            Ids(&'a [Id]),
        }
        let op = [OpRef::Ids(ids)];
        let list = ListRef {
            base: None,
            len: ids.len() as u64,
            ops: if ids.is_empty() { &[] } else { &op },
        };
        let kind = RecordKind::ContentList;
        let capacity = 64 + ids.len() * (std::mem::size_of::<Id>() + 2);
        record::encode_sized(kind, kind.current_version(), &list, capacity)
    }

    /// Decode a content list blob: runs non-empty, their counts adding up to `len`, at most
    /// [`MAX_LIST_IDS`], copy runs only with a base.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let list: ContentList = record::decode(RecordKind::ContentList, bytes)?;
        let bad = |m: String| Err(Error::malformed("content list", m));
        if list.len > MAX_LIST_IDS {
            return bad(format!(
                "{} ids, more than the {MAX_LIST_IDS} allowed",
                list.len
            ));
        }
        let mut total = 0u64;
        for op in &list.ops {
            if op.count() == 0 {
                return bad("an empty run".into());
            }
            if matches!(op, Op::Copy { .. }) && list.base.is_none() {
                return bad("a copy run in a list without base".into());
            }
            total = total.saturating_add(op.count());
        }
        if total != list.len {
            return bad(format!(
                "runs yield {total} ids, the list says {}",
                list.len
            ));
        }
        Ok(list)
    }

    /// [`ContentList::decode`] of a blob, consuming it. A self-contained list of one run of ids
    /// (what [`ContentList::full`] writes: every list of a fresh repository) becomes its ids a
    /// piece at a time from the end, the blob shrinking behind, so the blob and its ids are not
    /// both held whole (a 2 GB etcd database's list is 16 MB). Any other list, and any list
    /// this does not recognise at once, is decoded by `decode`: the result is the same.
    pub fn decode_owned(mut bytes: Vec<u8>) -> Result<Self, Error> {
        let Some((len, start)) = full_layout(&bytes) else {
            return Self::decode(&bytes);
        };
        /// Ids moved at a time (1 MiB).
        const PIECE_IDS: usize = 1 << 15;
        let id_len = std::mem::size_of::<Id>();
        let mut ids: Vec<Id> = Vec::with_capacity(len as usize);
        while bytes.len() > start {
            let from = bytes.len() - ((bytes.len() - start) / id_len).min(PIECE_IDS) * id_len;
            ids.extend(bytes[from..].chunks_exact(id_len).rev().map(|c| {
                let mut id = Id::default();
                id.0.copy_from_slice(c);
                id
            }));
            bytes.truncate(from);
            // Large blocks are mapped on their own: shrinking one returns its tail.
            bytes.shrink_to_fit();
        }
        ids.reverse();
        Ok(ContentList {
            base: None,
            len,
            ops: vec![Op::Ids(ids)],
        })
    }

    /// The ids this list stands for, given its base's resolved ids (None when it has no base).
    pub fn resolve(&self, base: Option<&[Id]>) -> Result<Vec<Id>, Error> {
        let mut out = Vec::new();
        self.resolve_into(base, &mut out)?;
        Ok(out)
    }

    /// [`ContentList::resolve_into`], consuming the list: a self-contained list of one run (as
    /// [`ContentList::full`] writes) hands its ids over instead of copying them (a 1 GB etcd
    /// database's list holds 8 MB of ids).
    pub fn resolve_owned(mut self, base: Option<&[Id]>, out: &mut Vec<Id>) -> Result<(), Error> {
        if self.base.is_none() && base.is_none() && self.ops.len() == 1 {
            match self.ops.pop() {
                Some(Op::Ids(ids)) if ids.len() as u64 == self.len => {
                    *out = ids;
                    return Ok(());
                }
                Some(op) => self.ops.push(op),
                None => {}
            }
        }
        self.resolve_into(base, out)
    }

    /// [`ContentList::resolve`] into `out` (cleared first; its allocation is reused): a chain
    /// of lists resolves through two buffers instead of one new vector per list.
    pub fn resolve_into(&self, base: Option<&[Id]>, out: &mut Vec<Id>) -> Result<(), Error> {
        let bad = |m: String| Err(Error::malformed("content list", m));
        if self.base.is_some() != base.is_some() {
            return bad("base given for a list without one, or missing".into());
        }
        out.clear();
        out.reserve(self.len.min(MAX_LIST_IDS) as usize);
        for op in &self.ops {
            match op {
                Op::Ids(ids) => out.extend_from_slice(ids),
                Op::Copy { start, count } => {
                    let old = base.unwrap_or(&[]);
                    let end = start.checked_add(*count).unwrap_or(u64::MAX);
                    if end > old.len() as u64 {
                        return bad(format!(
                            "copy run {start}..{end} beyond its base's {} ids",
                            old.len()
                        ));
                    }
                    out.extend_from_slice(&old[*start as usize..end as usize]);
                }
            }
            if out.len() as u64 > self.len {
                return bad("runs yield more ids than the list says".into());
            }
        }
        if out.len() as u64 != self.len {
            return bad(format!(
                "runs yield {} ids, the list says {}",
                out.len(),
                self.len
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(n: usize, salt: u8) -> Vec<Id> {
        (0..n)
            .map(|i| {
                let mut b = [salt; 32];
                b[..8].copy_from_slice(&(i as u64).to_le_bytes());
                Id(b)
            })
            .collect()
    }

    #[test]
    fn delta_copies_unchanged_positions() {
        let old = ids(1000, 1);
        let mut new = old.clone();
        new[10] = Id([9; 32]);
        new[500] = Id([8; 32]);
        new.extend(ids(5, 2));
        let l = ContentList::delta(&new, (Id([7; 32]), &old));
        assert_eq!(l.base, Some(Id([7; 32])));
        let literal: usize = l
            .ops
            .iter()
            .map(|o| match o {
                Op::Ids(v) => v.len(),
                _ => 0,
            })
            .sum();
        assert_eq!(literal, 7);
        let back = ContentList::decode(&l.encode()).unwrap();
        assert_eq!(back.resolve(Some(&old)).unwrap(), new);
        // Mostly changed: self-contained.
        let other = ids(1000, 3);
        let l = ContentList::delta(&other, (Id([7; 32]), &old));
        assert_eq!(l.base, None);
        assert_eq!(l.resolve(None).unwrap(), other);
    }

    /// `decode_owned` says what `decode` says, whatever the bytes.
    fn same_decode(bytes: &[u8]) {
        let a = ContentList::decode(bytes);
        let b = ContentList::decode_owned(bytes.to_vec());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
    }

    #[test]
    fn decode_owned_agrees_with_decode() {
        // Self-contained lists of one run (the fast path), of sizes around its 1 MiB pieces
        // and varint boundaries, a delta list, and damaged copies of each.
        let old = ids(1000, 1);
        let mut new = old.clone();
        new[10] = Id([9; 32]);
        let mut blobs: Vec<Vec<u8>> = [1, 127, 128, 16383, 16384, 40_000]
            .iter()
            .map(|&n| ContentList::encode_full(&ids(n, 4)))
            .collect();
        blobs.push(ContentList::delta(&new, (Id([7; 32]), &old)).encode());
        let mut rng = 0x9e37_79b9_7f4a_7c15u64;
        let mut next = || {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            rng
        };
        for b in &blobs {
            same_decode(b);
            assert!(ContentList::decode_owned(b.clone()).is_ok());
            for cut in [0, 1, 8, 9, 12, b.len() - 1] {
                same_decode(&b[..cut]);
            }
            let mut longer = b.clone();
            longer.push(0);
            same_decode(&longer);
            for _ in 0..40 {
                let mut d = b.clone();
                // Mostly the header and the counts, where the layout is decided.
                let at = if next() % 2 == 0 {
                    (next() % 16) as usize
                } else {
                    (next() % d.len() as u64) as usize
                };
                let at = at.min(d.len() - 1);
                d[at] ^= 1 << (next() % 8);
                same_decode(&d);
            }
        }
        // An overlong varint for the length: left to `decode`.
        let mut b = ContentList::encode_full(&ids(1, 4));
        b.splice(9..10, [0x81, 0x00]);
        same_decode(&b);
    }

    #[test]
    fn resolve_owned_agrees_with_resolve() {
        let old = ids(1000, 1);
        let mut new = old.clone();
        new[3] = Id([9; 32]);
        let lists = [
            (ContentList::full(&old), None),
            (
                ContentList::delta(&new, (Id([7; 32]), &old)),
                Some(&old[..]),
            ),
        ];
        for (l, base) in lists {
            let mut out = ids(3, 5);
            l.clone().resolve_owned(base, &mut out).unwrap();
            assert_eq!(out, l.resolve(base).unwrap());
        }
        // Checked as resolve_into checks: a base given to a list without one, a short run.
        assert!(ContentList::full(&old)
            .resolve_owned(Some(&old), &mut Vec::new())
            .is_err());
        let short = ContentList {
            base: None,
            len: 5,
            ops: vec![Op::Ids(ids(4, 1))],
        };
        assert!(short.resolve_owned(None, &mut Vec::new()).is_err());
    }

    #[test]
    fn inconsistent_lists_are_refused() {
        let mut l = ContentList::full(&ids(3, 1));
        l.len = 4;
        assert!(ContentList::decode(&l.encode()).is_err());
        let l = ContentList {
            base: None,
            len: 2,
            ops: vec![Op::Copy { start: 0, count: 2 }],
        };
        assert!(ContentList::decode(&l.encode()).is_err());
        let l = ContentList {
            base: Some(Id([1; 32])),
            len: 2,
            ops: vec![Op::Copy {
                start: u64::MAX,
                count: 2,
            }],
        };
        let l = ContentList::decode(&l.encode()).unwrap();
        assert!(l.resolve(Some(&ids(5, 1))).is_err());
        let l = ContentList {
            base: Some(Id([1; 32])),
            len: 1,
            ops: vec![Op::Ids(Vec::new()), Op::Ids(ids(1, 1))],
        };
        assert!(ContentList::decode(&l.encode()).is_err());
    }
}
