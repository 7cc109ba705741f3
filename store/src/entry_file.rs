//! Index entries of some data blobs, sorted by id in an unnamed temporary file instead of
//! memory: the blobs of a restore's large files ([`crate::partial_index::for_restore`]), which
//! its plan reads in id order ([`EntryFile::reader`]) and anything else looks up one at a time
//! ([`EntryFile::get`]: one `pread` of a 4 KiB block).
//!
//! Building: entries are sorted with [`crate::record_sort`] by id and the order they were
//! added in, so the first added of an id wins, as in [`crate::index::Index`]. Memory then
//! holds the first id of every block of [`BLOCK`] entries (half a byte per entry), and the
//! other listings of ids listed in several places, tried when the first does not hold the
//! blob ([`EntryFile::alternatives`]): normally few, one per blob a planted claim lists.

use crate::index::Location;
use crate::record_sort::temp_file_error;
use crate::record_sort::{Record, Sorter};
use crate::Result;
use cairn_format::frame::Compression;
use cairn_format::pack::{BlobEntry, FrameRef};
use cairn_format::Id;
use std::fs::File;
use std::io::{BufWriter, Write};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, Ordering};

/// Entries per block of the file: one fence in memory, one `pread` per lookup.
const BLOCK: usize = 64;
/// Entries read at once by a [`EntryReader`].
const READ_AHEAD: usize = 1024;
/// One entry: id, pack number, frame (offset, stored and raw length, compression), offset
/// and length in the frame.
const ENTRY: usize = 32 + 4 + 8 + 4 + 4 + 1 + 4 + 4;

const WHAT: &str = "index entries of large files";

/// An entry as sorted: by id, then by the order entries were added.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
struct Sorted {
    id: Id,
    order: u64,
    pack: u32,
    frame_offset: u64,
    stored_len: u32,
    raw_len: u32,
    zstd: bool,
    offset: u32,
    len: u32,
}

/// A frame as the temporary files record it: offset, stored and raw length, zstd or not.
pub(crate) fn frame_ref(offset: u64, stored_len: u32, raw_len: u32, zstd: bool) -> FrameRef {
    FrameRef {
        offset,
        stored_len,
        raw_len,
        compression: if zstd {
            Compression::Zstd
        } else {
            Compression::None
        },
    }
}

impl Sorted {
    fn location(&self) -> Location {
        Location {
            pack: self.pack,
            frame: frame_ref(self.frame_offset, self.stored_len, self.raw_len, self.zstd),
            offset: self.offset,
            len: self.len,
        }
    }

    /// The entry's record in the sorted file ([`ENTRY`] bytes: the order is not kept).
    fn encode_entry(&self, out: &mut [u8]) {
        out[..32].copy_from_slice(&self.id.0);
        out[32..36].copy_from_slice(&self.pack.to_le_bytes());
        out[36..44].copy_from_slice(&self.frame_offset.to_le_bytes());
        out[44..48].copy_from_slice(&self.stored_len.to_le_bytes());
        out[48..52].copy_from_slice(&self.raw_len.to_le_bytes());
        out[52] = u8::from(self.zstd);
        out[53..57].copy_from_slice(&self.offset.to_le_bytes());
        out[57..61].copy_from_slice(&self.len.to_le_bytes());
    }

    fn decode_entry(b: &[u8]) -> Sorted {
        let u32_at = |i: usize| u32::from_le_bytes(b[i..i + 4].try_into().expect("4 bytes"));
        Sorted {
            id: Id(b[..32].try_into().expect("32 bytes")),
            order: 0,
            pack: u32_at(32),
            frame_offset: u64::from_le_bytes(b[36..44].try_into().expect("8 bytes")),
            stored_len: u32_at(44),
            raw_len: u32_at(48),
            zstd: b[52] == 1,
            offset: u32_at(53),
            len: u32_at(57),
        }
    }
}

impl Record for Sorted {
    const LEN: usize = ENTRY + 8;

    fn encode(&self, out: &mut [u8]) {
        self.encode_entry(&mut out[..ENTRY]);
        out[ENTRY..].copy_from_slice(&self.order.to_le_bytes());
    }

    fn decode(b: &[u8]) -> Sorted {
        Sorted {
            order: u64::from_le_bytes(b[ENTRY..].try_into().expect("8 bytes")),
            ..Sorted::decode_entry(&b[..ENTRY])
        }
    }
}

/// Collects entries; [`EntryFileBuilder::finish`] sorts them into an [`EntryFile`].
pub struct EntryFileBuilder {
    sorter: Sorter<Sorted>,
    table: File,
    added: u64,
}

impl EntryFileBuilder {
    /// An empty builder with its temporary files.
    pub fn new() -> Result<EntryFileBuilder> {
        let make = || tempfile::tempfile().map_err(|e| temp_file_error(WHAT, "creating", e));
        Ok(EntryFileBuilder {
            sorter: Sorter::in_file(WHAT, make()?),
            table: make()?,
            added: 0,
        })
    }

    /// Add blob `b` of pack number `pack` (an id added before keeps its first entry).
    pub fn push(&mut self, pack: u32, b: &BlobEntry) -> Result<()> {
        self.added += 1;
        self.sorter.push(Sorted {
            id: b.id,
            order: self.added,
            pack,
            frame_offset: b.frame.offset,
            stored_len: b.frame.stored_len,
            raw_len: b.frame.raw_len,
            zstd: b.frame.compression == Compression::Zstd,
            offset: b.offset,
            len: b.len,
        })
    }

    /// The entries added, sorted, each id once.
    pub fn finish(self) -> Result<EntryFile> {
        let mut sorted = self.sorter.finish()?;
        let mut out = BufWriter::with_capacity(256 << 10, self.table);
        let mut fences = Vec::new();
        let mut rec = [0u8; ENTRY];
        let mut len = 0u64;
        let mut last: Option<Sorted> = None;
        let mut others = Vec::new();
        while let Some(e) = sorted.next_record()? {
            if let Some(first) = last.filter(|l| l.id == e.id) {
                // The same place listed twice (one pack in two index objects) is no other.
                if first.location() != e.location() {
                    others.push((e.id, e.location()));
                }
                continue;
            }
            last = Some(e);
            if len.is_multiple_of(BLOCK as u64) {
                fences.push(e.id);
            }
            e.encode_entry(&mut rec);
            out.write_all(&rec)
                .map_err(|e| temp_file_error(WHAT, "writing", e))?;
            len += 1;
        }
        let file = out
            .into_inner()
            .map_err(|e| temp_file_error(WHAT, "writing", e.into_error()))?;
        fences.shrink_to_fit();
        others.shrink_to_fit();
        Ok(EntryFile {
            file,
            fences,
            len,
            others,
            failed: AtomicBool::new(false),
        })
    }
}

/// Index entries sorted by id on disk, and the first id of each block of them.
#[derive(Debug)]
pub struct EntryFile {
    file: File,
    fences: Vec<Id>,
    len: u64,
    /// The other listings of ids listed in several places, in id order, each id's in the
    /// order added.
    others: Vec<(Id, Location)>,
    /// A read failed already (logged once).
    failed: AtomicBool,
}

impl EntryFile {
    /// Number of entries.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Where blob `id` is, if listed (None, logged once, if the file cannot be read: the
    /// blob is then reported missing).
    pub fn get(&self, id: &Id) -> Option<Location> {
        let block = self.fences.partition_point(|f| f <= id).checked_sub(1)?;
        let first = (block * BLOCK) as u64;
        let n = (self.len - first).min(BLOCK as u64) as usize;
        let mut bytes = [0u8; BLOCK * ENTRY];
        let bytes = &mut bytes[..n * ENTRY];
        if let Err(e) = self.file.read_exact_at(bytes, first * ENTRY as u64) {
            if !self.failed.swap(true, Ordering::Relaxed) {
                tracing::warn!("{}", temp_file_error(WHAT, "reading", e));
            }
            return None;
        }
        let (mut lo, mut hi) = (0, n);
        while lo < hi {
            let mid = (lo + hi) / 2;
            let rec = &bytes[mid * ENTRY..(mid + 1) * ENTRY];
            match rec[..32].cmp(&id.0[..]) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return Some(Sorted::decode_entry(rec).location()),
            }
        }
        None
    }

    /// The other places blob `id` is listed in, besides [`EntryFile::get`]'s.
    pub fn alternatives(&self, id: &Id) -> impl Iterator<Item = Location> + '_ {
        let id = *id;
        let start = self.others.partition_point(|(o, _)| *o < id);
        self.others[start..]
            .iter()
            .take_while(move |(o, _)| *o == id)
            .map(|(_, l)| *l)
    }

    /// Whether any blob has [`EntryFile::alternatives`].
    pub fn has_alternatives(&self) -> bool {
        !self.others.is_empty()
    }

    /// Every entry in id order.
    pub fn reader(&self) -> EntryReader<'_> {
        EntryReader {
            entries: self,
            next: 0,
            buf: Vec::new(),
            at: 0,
        }
    }
}

#[cfg(test)]
impl EntryFile {
    /// Every id listed, in order.
    pub(crate) fn reader_all(&self) -> Vec<Id> {
        let mut r = self.reader();
        let mut all = Vec::new();
        while let Some((id, _)) = r.next_entry().unwrap() {
            all.push(id);
        }
        all
    }
}

/// Reads an [`EntryFile`] in id order, [`READ_AHEAD`] entries at a time.
pub struct EntryReader<'a> {
    entries: &'a EntryFile,
    next: u64,
    buf: Vec<(Id, Location)>,
    at: usize,
}

impl EntryReader<'_> {
    /// The next entry, if any.
    pub fn next_entry(&mut self) -> Result<Option<(Id, Location)>> {
        if self.at == self.buf.len() {
            let n = (self.entries.len - self.next).min(READ_AHEAD as u64) as usize;
            if n == 0 {
                return Ok(None);
            }
            let mut bytes = vec![0u8; n * ENTRY];
            self.entries
                .file
                .read_exact_at(&mut bytes, self.next * ENTRY as u64)
                .map_err(|e| temp_file_error(WHAT, "reading", e))?;
            self.buf.clear();
            self.buf.extend(bytes.chunks_exact(ENTRY).map(|b| {
                let e = Sorted::decode_entry(b);
                (e.id, e.location())
            }));
            self.next += n as u64;
            self.at = 0;
        }
        self.at += 1;
        Ok(Some(self.buf[self.at - 1]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_repo::spread_id as id;

    fn blob(n: u64, offset: u32) -> BlobEntry {
        BlobEntry {
            id: id(n),
            frame: FrameRef {
                offset: n << 20,
                stored_len: n as u32 + 7,
                raw_len: n as u32 * 3,
                compression: if n.is_multiple_of(2) {
                    Compression::Zstd
                } else {
                    Compression::None
                },
            },
            offset,
            len: (n as u32) ^ 0x55,
        }
    }

    #[test]
    fn first_added_wins_and_every_id_is_found() {
        let mut b = EntryFileBuilder::new().unwrap();
        let n = 3_000u64;
        for i in 0..n {
            b.push(i as u32, &blob(i, 1)).unwrap();
        }
        // Listed again, later: ignored.
        for i in (0..n).step_by(7) {
            b.push(99_999, &blob(i, 2)).unwrap();
        }
        let f = b.finish().unwrap();
        assert_eq!(f.len(), n);
        for i in 0..n {
            let loc = f.get(&id(i)).expect("listed");
            assert_eq!((loc.pack, loc.offset), (i as u32, 1), "{i}");
            assert_eq!(loc.frame, blob(i, 1).frame);
            assert_eq!(loc.len, blob(i, 1).len);
        }
        for i in n..n + 500 {
            assert!(f.get(&id(i)).is_none());
        }
        let mut r = f.reader();
        let mut seen = Vec::new();
        while let Some((i, loc)) = r.next_entry().unwrap() {
            assert_eq!(Some(loc), f.get(&i));
            seen.push(i);
        }
        let mut want: Vec<Id> = (0..n).map(id).collect();
        want.sort_unstable();
        assert_eq!(seen, want);
        assert!(EntryFileBuilder::new()
            .unwrap()
            .finish()
            .unwrap()
            .is_empty());
    }
}
