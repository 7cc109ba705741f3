//! etcd snapshots: inspection of the bbolt database inside an `etcdctl snapshot save` file.
//!
//! An etcd snapshot is a [bbolt](https://github.com/etcd-io/bbolt) database file, followed (when
//! it was taken through etcd's Maintenance.Snapshot call, as `etcdctl snapshot save` does) by a
//! 32-byte sha256 of the database bytes. [`inspect`] computes the four facts that
//! `etcdctl snapshot status -w json` (etcd 3.4's `snapshot.Status`, `etcdutl snapshot status` in
//! later releases) prints, with identical values:
//!
//! * `hash`: CRC-32C (Castagnoli) over, for every top-level bucket in key order, the bucket's
//!   name, then for every entry of that bucket in key order its key then its value. An entry
//!   that is itself a (nested) bucket contributes its key only, and its contents nothing.
//! * `revision`: the main revision of the last key of the `key` bucket (keys there are 8 bytes
//!   big-endian main revision, `_`, 8 bytes big-endian sub revision, optionally `t`), 0 when the
//!   bucket is empty or missing.
//! * `totalKey`: the number of entries in all top-level buckets (nested bucket names count, their
//!   contents do not; the top-level bucket names themselves do not).
//! * `totalSize`: the meta page's high-water mark times the page size, which is the length of the
//!   database without the trailer.
//!
//! Like etcd, which runs bbolt's `Tx.Check` before hashing and refuses to report on a damaged
//! file, [`inspect`] verifies the page structure: every reachable page is inside the file, under
//! the high-water mark, of the right type and referenced once; with a stored freelist, no page is
//! freed twice, in use and free at once, or neither. Unlike bbolt, it never follows a page twice
//! (so a cycle is an error, not an endless loop), bounds the depth of the tree, checks every
//! element against the bounds of its page, and reads pages on demand, so memory does not grow
//! with the size of the database (a snapshot may be many gigabytes).
//!
//! Everything little-endian, as bbolt writes it on the platforms etcd supports. `inspect_bytes`
//! is the function to fuzz.

use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

use crc::{Crc, Table, CRC_32_ISCSI};
use sha2::{Digest, Sha256};
use thiserror::Error;

/// Length of the sha256 trailer etcd appends to a snapshot.
pub const TRAILER_LEN: u64 = 32;

/// Smallest page size accepted.
pub const MIN_PAGE_SIZE: u32 = 512;

/// Largest page size accepted (bbolt uses the OS page size: 4 KiB, 16 KiB or 64 KiB).
pub const MAX_PAGE_SIZE: u32 = 1 << 20;

/// Deepest nesting of pages and buckets followed from the root (a real etcd database is a
/// handful of levels deep).
pub const MAX_DEPTH: usize = 64;

/// Longest key bbolt stores (`bolt.MaxKeySize`); top-level bucket names beyond it are refused.
pub const MAX_KEY_SIZE: u32 = 32768;

const MAGIC: u32 = 0xED0C_DAED;
const VERSION: u32 = 2;
/// bbolt falls back to the OS page size when meta page 0 is unusable.
const DEFAULT_PAGE_SIZE: u32 = 4096;
const PAGE_HEADER: u64 = 16;
const ELEMENT: u64 = 16;
const META_LEN: usize = 64;
const BUCKET_HEADER: usize = 16;
const NO_FREELIST: u64 = u64::MAX;

const BRANCH_PAGE: u16 = 0x01;
const LEAF_PAGE: u16 = 0x02;
const META_PAGE: u16 = 0x04;
const FREELIST_PAGE: u16 = 0x10;
const BUCKET_LEAF: u32 = 0x01;

/// Pages up to this size (header and overflow included) are read whole; larger ones (huge
/// values, hostile overflow counts) are read element by element.
const WHOLE_PAGE_MAX: u64 = 1 << 20;
/// Read size for streaming large values, freelists and trailers.
const CHUNK: usize = 1 << 16;

static CASTAGNOLI: Crc<u32, Table<16>> = Crc::<u32, Table<16>>::new(&CRC_32_ISCSI);

/// What `etcdctl snapshot status -w json` reports for a snapshot, plus two facts about the
/// database that were needed to compute it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct SnapshotStatus {
    /// `hash`: CRC-32C of the top-level bucket names, keys and values.
    pub hash: u32,
    /// `revision`: main revision of the last key of the `key` bucket.
    pub revision: i64,
    /// `totalKey`: entries in the top-level buckets.
    pub total_key: u64,
    /// `totalSize`: database size in bytes (high-water mark × page size), trailer excluded.
    pub total_size: u64,
    /// bbolt page size.
    pub page_size: u32,
    /// Transaction id of the meta page in use.
    pub txid: u64,
}

/// Why one meta page cannot be used.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MetaFault {
    /// The page lies (partly) beyond the end of the data.
    Missing,
    /// The magic number is not bbolt's.
    BadMagic(u32),
    /// The bbolt format version is not 2.
    BadVersion(u32),
    /// The FNV-1a checksum over the meta fields does not match the stored one.
    BadChecksum {
        /// Checksum stored in the page.
        stored: u64,
        /// Checksum computed over the page.
        computed: u64,
    },
    /// The page size it records differs from the one the database is read with.
    PageSize {
        /// Page size in this meta page.
        found: u32,
        /// Page size in use (from meta page 0, or bbolt's 4096 fallback).
        expected: u32,
    },
}

impl fmt::Display for MetaFault {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            MetaFault::Missing => write!(f, "missing"),
            MetaFault::BadMagic(m) => write!(f, "bad magic {m:#010x}"),
            MetaFault::BadVersion(v) => write!(f, "format version {v}, not 2"),
            MetaFault::BadChecksum { stored, computed } => {
                write!(f, "checksum {stored:#018x}, computed {computed:#018x}")
            }
            MetaFault::PageSize { found, expected } => {
                write!(f, "page size {found} differs from {expected}")
            }
        }
    }
}

/// Everything that can be wrong with bytes that claim to be an etcd snapshot (bbolt database).
#[derive(Debug, Error)]
pub enum BboltError {
    /// Reading failed.
    #[error("reading the etcd snapshot failed: {0}")]
    Io(#[from] io::Error),
    /// Too short to hold the two meta pages.
    #[error("not an etcd snapshot (bbolt database): {len} bytes cannot hold its two meta pages")]
    TooSmall {
        /// Length of the data.
        len: u64,
    },
    /// Neither meta page carries bbolt's magic number.
    #[error("not an etcd snapshot (bbolt database): no meta page carries the bbolt magic")]
    NotBbolt,
    /// Both meta pages are damaged (or from an unsupported bbolt version).
    #[error(
        "the etcd snapshot is damaged: both bbolt meta pages are unusable \
         (page 0: {meta0}; page 1: {meta1})"
    )]
    BadMeta {
        /// What is wrong with meta page 0.
        meta0: MetaFault,
        /// What is wrong with meta page 1.
        meta1: MetaFault,
    },
    /// The meta page records a page size this reader does not accept.
    #[error("bbolt page size {page_size} is not supported ({MIN_PAGE_SIZE} to {MAX_PAGE_SIZE})")]
    UnsupportedPageSize {
        /// The recorded page size.
        page_size: u32,
    },
    /// The data ends before the database does.
    #[error(
        "the etcd snapshot is truncated: its meta page says the database is {expected} bytes, \
         only {len} are present"
    )]
    Truncated {
        /// Size recorded by the meta page (high-water mark × page size).
        expected: u64,
        /// Length of the data.
        len: u64,
    },
    /// A page (with its overflow pages) lies beyond the end of the data.
    #[error(
        "the etcd snapshot is damaged: page {pgid} (+{overflow} overflow) lies beyond the end of \
         the database ({pages} pages)"
    )]
    PageOutOfRange {
        /// The page referenced.
        pgid: u64,
        /// Its overflow count, when its header could be read.
        overflow: u32,
        /// Pages in the data.
        pages: u64,
    },
    /// A page in use lies above the meta page's high-water mark (bbolt: "out of bounds").
    #[error("the etcd snapshot is damaged: page {pgid} is above the high-water mark {high_water}")]
    PageAboveHighWater {
        /// The page.
        pgid: u64,
        /// The high-water mark.
        high_water: u64,
    },
    /// A page's header names another page.
    #[error("the etcd snapshot is damaged: page {pgid} carries the header of page {found}")]
    PageIdMismatch {
        /// Where the page was read.
        pgid: u64,
        /// The id in its header.
        found: u64,
    },
    /// A page is not of the type its reference calls for.
    #[error(
        "the etcd snapshot is damaged: {} is a {} page where a {expected} page belongs",
        page_name(*.pgid, *.inline),
        page_type(*.flags)
    )]
    UnexpectedPageType {
        /// The page (the page holding it, for an inline bucket).
        pgid: u64,
        /// Whether it is an inline bucket's page.
        inline: bool,
        /// Its flags.
        flags: u16,
        /// What was expected.
        expected: &'static str,
    },
    /// An element, key or value extends past the end of its page.
    #[error(
        "the etcd snapshot is damaged: element {index} of {} lies outside the page",
        page_name(*.pgid, *.inline)
    )]
    ElementOutOfBounds {
        /// The page (the page holding it, for an inline bucket).
        pgid: u64,
        /// Whether it is an inline bucket's page.
        inline: bool,
        /// The element's index (for a freelist, the number of ids claimed).
        index: u64,
    },
    /// A branch page without children.
    #[error("the etcd snapshot is damaged: branch page {pgid} is empty")]
    EmptyBranch {
        /// The page.
        pgid: u64,
    },
    /// A page is reached twice: a cycle or a cross-linked tree (bbolt: "multiple references").
    #[error(
        "the etcd snapshot is damaged: page {pgid} is referenced more than once \
         (a cycle or cross-linked pages)"
    )]
    MultipleReferences {
        /// The page.
        pgid: u64,
    },
    /// Pages and buckets nest deeper than [`MAX_DEPTH`].
    #[error(
        "the etcd snapshot is damaged: the tree is deeper than {MAX_DEPTH} levels at page {pgid}"
    )]
    TooDeep {
        /// The page where the limit was reached.
        pgid: u64,
    },
    /// A top-level bucket name longer than bbolt allows.
    #[error("the etcd snapshot is damaged: page {pgid} holds a bucket name of {len} bytes")]
    KeyTooLarge {
        /// The page.
        pgid: u64,
        /// The key's length.
        len: u32,
    },
    /// An entry flagged as a bucket whose value is not a bucket header (plus inline page).
    #[error(
        "the etcd snapshot is damaged: element {index} of {} is a bucket with a value of {len} \
         bytes that is not a bucket",
        page_name(*.pgid, *.inline)
    )]
    BadBucketValue {
        /// The page.
        pgid: u64,
        /// Whether it is an inline bucket's page.
        inline: bool,
        /// The element's index.
        index: u64,
        /// The value's length.
        len: u64,
    },
    /// A top-level entry that is not a bucket (etcd: "cannot get hash of bucket").
    #[error("the etcd snapshot is damaged: top-level key {name:?} is not a bucket")]
    NotABucket {
        /// The key, lossily decoded.
        name: String,
    },
    /// Top-level bucket names out of order or repeated.
    #[error("the etcd snapshot is damaged: top-level bucket {name:?} is out of order")]
    BucketsOutOfOrder {
        /// The name, lossily decoded.
        name: String,
    },
    /// A key in etcd's `key` bucket too short to hold a revision (etcd itself panics on it).
    #[error("the etcd snapshot is damaged: a key of {len} bytes in the \"key\" bucket is not a revision")]
    BadRevisionKey {
        /// The key's length.
        len: u64,
    },
    /// A page listed twice in the freelist (bbolt: "already freed").
    #[error("the etcd snapshot is damaged: page {pgid} is freed twice")]
    DoubleFree {
        /// The page.
        pgid: u64,
    },
    /// A page both in use and free (bbolt: "reachable freed").
    #[error("the etcd snapshot is damaged: page {pgid} is both in use and free")]
    ReachableFreed {
        /// The page.
        pgid: u64,
    },
    /// Pages neither in use nor free (bbolt: "unreachable unfreed").
    #[error(
        "the etcd snapshot is damaged: {count} pages are neither in use nor free, \
         the first is page {first}"
    )]
    Unreachable {
        /// Lowest such page.
        first: u64,
        /// How many.
        count: u64,
    },
}

fn page_name(pgid: u64, inline: bool) -> String {
    if inline {
        format!("an inline bucket in page {pgid}")
    } else {
        format!("page {pgid}")
    }
}

fn page_type(flags: u16) -> String {
    // The order bbolt's `page.typ` tests them in.
    if flags & BRANCH_PAGE != 0 {
        "branch".into()
    } else if flags & LEAF_PAGE != 0 {
        "leaf".into()
    } else if flags & META_PAGE != 0 {
        "meta".into()
    } else if flags & FREELIST_PAGE != 0 {
        "freelist".into()
    } else {
        format!("unknown<{flags:02x}>")
    }
}

/// The database length etcd's restore assumes for a file of `file_len` bytes: etcd takes a file
/// whose size modulo 512 is 32 to end with a sha256 trailer (`hasChecksum` in etcd).
pub fn db_len(file_len: u64) -> u64 {
    if has_trailer(file_len) {
        file_len - TRAILER_LEN
    } else {
        file_len
    }
}

/// Whether a file of `file_len` bytes ends with a sha256 trailer, by etcd's own rule (size modulo
/// 512 is 32).
pub fn has_trailer(file_len: u64) -> bool {
    file_len % 512 == TRAILER_LEN
}

/// Splits a snapshot file into the database and its sha256 trailer, if it has one (by etcd's
/// rule, see [`has_trailer`]).
pub fn split_trailer(file: &[u8]) -> Option<(&[u8], &[u8; 32])> {
    if !has_trailer(file.len() as u64) {
        return None;
    }
    let (db, trailer) = file.split_at(file.len() - TRAILER_LEN as usize);
    Some((db, trailer.try_into().ok()?))
}

/// Whether `file` ends with a trailer equal to the sha256 of the bytes before it, which is what
/// `etcdctl snapshot restore` checks unless told `--skip-hash-check`.
pub fn verify_trailer(file: &[u8]) -> bool {
    match split_trailer(file) {
        Some((db, trailer)) => Sha256::digest(db).as_slice() == trailer,
        None => false,
    }
}

/// What a snapshot file's trailer says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TrailerStatus {
    /// The file ends with the sha256 of the database: `etcdctl snapshot restore` accepts it.
    Valid,
    /// The file has a trailer by etcd's rule, but it does not match: the file is damaged.
    Mismatch {
        /// The trailer.
        stored: [u8; 32],
        /// sha256 of the bytes before it.
        computed: [u8; 32],
    },
    /// The file has no trailer (its size modulo 512 is not 32): restore needs
    /// `--skip-hash-check`.
    Absent,
}

/// Checks the trailer of a snapshot file of `file_len` bytes read from `r` (from offset 0),
/// streaming the sha256 over the database part.
pub fn check_trailer<R: Read + Seek>(r: &mut R, file_len: u64) -> io::Result<TrailerStatus> {
    if !has_trailer(file_len) {
        return Ok(TrailerStatus::Absent);
    }
    let db = file_len - TRAILER_LEN;
    r.seek(SeekFrom::Start(0))?;
    let mut hasher = Sha256::new();
    let mut buf = vec![0u8; CHUNK * 16];
    let mut left = db;
    while left > 0 {
        let n = left.min(buf.len() as u64) as usize;
        r.read_exact(&mut buf[..n])?;
        hasher.update(&buf[..n]);
        left -= n as u64;
    }
    let mut stored = [0u8; 32];
    r.read_exact(&mut stored)?;
    let computed: [u8; 32] = hasher.finalize().into();
    Ok(if stored == computed {
        TrailerStatus::Valid
    } else {
        TrailerStatus::Mismatch { stored, computed }
    })
}

/// Whether the snapshot file of `file_len` bytes in `r` ends with a valid sha256 trailer.
pub fn has_valid_trailer<R: Read + Seek>(r: &mut R, file_len: u64) -> io::Result<bool> {
    Ok(check_trailer(r, file_len)? == TrailerStatus::Valid)
}

/// Inspects an etcd snapshot held in memory: `bytes` is the file as saved, with or without its
/// trailer (like etcd, the reader ignores bytes past the database). This is the fuzz entry point.
pub fn inspect_bytes(bytes: &[u8]) -> Result<SnapshotStatus, BboltError> {
    inspect(&mut io::Cursor::new(bytes), bytes.len() as u64)
}

/// Inspects the etcd snapshot (bbolt database) in the first `len` bytes of `r`, reading pages on
/// demand, and returns what `etcdctl snapshot status` reports for it. `len` may include the
/// sha256 trailer or not (etcd reads the whole file; the database never reaches the trailer).
pub fn inspect<R: Read + Seek>(r: &mut R, len: u64) -> Result<SnapshotStatus, BboltError> {
    let mut src = Source { r, len };
    let meta = read_metas(&mut src)?;
    let page_size = u64::from(meta.page_size);
    let total_size = meta
        .pgid
        .checked_mul(page_size)
        .ok_or(BboltError::Truncated {
            expected: u64::MAX,
            len,
        })?;
    if total_size > len {
        return Err(BboltError::Truncated {
            expected: total_size,
            len,
        });
    }
    let file_pages = len / page_size;
    let mut walk = Walker {
        src,
        page_size,
        file_pages,
        high_water: meta.pgid,
        reachable: Bitmap::new(file_pages),
        freed: None,
        crc: CASTAGNOLI.digest(),
        total_key: 0,
        revision: 0,
        prev_top: None,
    };
    walk.reachable.set(0);
    walk.reachable.set(1);
    if meta.freelist != NO_FREELIST {
        walk.load_freelist(meta.freelist)?;
    }
    walk.tree(meta.root, 0, Role::Root)?;
    if let Some(freed) = &walk.freed {
        // With a stored freelist every page under the high-water mark is in use or free.
        let mut first = None;
        let mut count = 0u64;
        for pgid in 0..meta.pgid {
            if !walk.reachable.get(pgid) && !freed.get(pgid) {
                first.get_or_insert(pgid);
                count += 1;
            }
        }
        if let Some(first) = first {
            return Err(BboltError::Unreachable { first, count });
        }
    }
    Ok(SnapshotStatus {
        hash: walk.crc.finalize(),
        revision: walk.revision,
        total_key: walk.total_key,
        total_size,
        page_size: meta.page_size,
        txid: meta.txid,
    })
}

/// The fields of a meta page that inspection uses.
#[derive(Debug, Clone, Copy)]
struct Meta {
    page_size: u32,
    root: u64,
    freelist: u64,
    pgid: u64,
    txid: u64,
}

fn le32(b: &[u8], at: usize) -> u32 {
    let mut a = [0u8; 4];
    a.copy_from_slice(&b[at..at + 4]);
    u32::from_le_bytes(a)
}

fn le64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

fn be64(b: &[u8]) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    u64::from_be_bytes(a)
}

fn fnv1a64(bytes: &[u8]) -> u64 {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    h
}

/// Validates one meta page as bbolt's `meta.validate` does (magic, version, checksum; a zero
/// checksum is accepted, as bbolt accepts it).
fn parse_meta(m: &[u8; META_LEN]) -> Result<Meta, MetaFault> {
    let magic = le32(m, 0);
    if magic != MAGIC {
        return Err(MetaFault::BadMagic(magic));
    }
    let version = le32(m, 4);
    if version != VERSION {
        return Err(MetaFault::BadVersion(version));
    }
    let stored = le64(m, 56);
    let computed = fnv1a64(&m[..56]);
    if stored != 0 && stored != computed {
        return Err(MetaFault::BadChecksum { stored, computed });
    }
    Ok(Meta {
        page_size: le32(m, 8),
        root: le64(m, 16),
        freelist: le64(m, 32),
        pgid: le64(m, 40),
        txid: le64(m, 48),
    })
}

struct Source<'a, R> {
    r: &'a mut R,
    len: u64,
}

impl<R: Read + Seek> Source<'_, R> {
    /// Reads `buf.len()` bytes at `offset`, which the caller has bounded by `len`.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.r.seek(SeekFrom::Start(offset))?;
        self.r.read_exact(buf)
    }

    fn meta_at(&mut self, offset: u64) -> Result<Result<Meta, MetaFault>, BboltError> {
        let end = offset + PAGE_HEADER + META_LEN as u64;
        if end > self.len {
            return Ok(Err(MetaFault::Missing));
        }
        let mut m = [0u8; META_LEN];
        self.read_at(offset + PAGE_HEADER, &mut m)?;
        Ok(parse_meta(&m))
    }
}

/// Picks the meta page as bbolt does: the page size comes from meta page 0 when it is valid (else
/// 4096), meta page 1 sits one page in, and of the valid ones the higher txid wins (page 0 on a
/// tie).
fn read_metas<R: Read + Seek>(src: &mut Source<'_, R>) -> Result<Meta, BboltError> {
    let meta0 = src.meta_at(0)?;
    let page_size = match &meta0 {
        Ok(m) => m.page_size,
        Err(_) => DEFAULT_PAGE_SIZE,
    };
    if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(BboltError::UnsupportedPageSize { page_size });
    }
    if src.len < 2 * u64::from(page_size) {
        return Err(BboltError::TooSmall { len: src.len });
    }
    let meta1 = src.meta_at(u64::from(page_size))?.and_then(|m| {
        if m.page_size == page_size {
            Ok(m)
        } else {
            Err(MetaFault::PageSize {
                found: m.page_size,
                expected: page_size,
            })
        }
    });
    match (meta0, meta1) {
        (Ok(a), Ok(b)) => Ok(if b.txid > a.txid { b } else { a }),
        (Ok(a), Err(_)) => Ok(a),
        (Err(_), Ok(b)) => Ok(b),
        (Err(MetaFault::BadMagic(_)), Err(MetaFault::BadMagic(_) | MetaFault::Missing)) => {
            Err(BboltError::NotBbolt)
        }
        (Err(meta0), Err(meta1)) => Err(BboltError::BadMeta { meta0, meta1 }),
    }
}

/// One bit per page of the data.
struct Bitmap(Vec<u64>);

impl Bitmap {
    fn new(bits: u64) -> Self {
        // `bits` is the number of pages in the data, so this is bounded by its length / 512 / 8.
        Bitmap(vec![0; bits.div_ceil(64) as usize])
    }

    fn get(&self, i: u64) -> bool {
        self.0
            .get((i / 64) as usize)
            .is_some_and(|w| w & (1 << (i % 64)) != 0)
    }

    fn set(&mut self, i: u64) {
        if let Some(w) = self.0.get_mut((i / 64) as usize) {
            *w |= 1 << (i % 64);
        }
    }
}

/// A branch, leaf or freelist page, or an inline bucket's page.
struct Page {
    /// Where it was read (for an inline page: the page holding the bucket).
    pgid: u64,
    inline: bool,
    flags: u16,
    count: u16,
    overflow: u32,
    /// File offset of the page (unused for inline pages, which are always `whole`).
    offset: u64,
    /// Bytes covered by the page, header included.
    span: u64,
    /// The page from its start: all of it when `whole`, else at least its header and elements.
    mem: Vec<u8>,
    whole: bool,
}

impl Page {
    fn from_bytes(pgid: u64, inline: bool, mem: Vec<u8>) -> Page {
        Page {
            pgid,
            inline,
            flags: u16::from_le_bytes([mem[8], mem[9]]),
            count: u16::from_le_bytes([mem[10], mem[11]]),
            overflow: le32(&mem, 12),
            offset: 0,
            span: mem.len() as u64,
            mem,
            whole: true,
        }
    }

    fn out_of_bounds(&self, index: u64) -> BboltError {
        BboltError::ElementOutOfBounds {
            pgid: self.pgid,
            inline: self.inline,
            index,
        }
    }

    /// Checks that the element array of a branch or leaf page lies inside the page.
    fn check_elements(&self) -> Result<(), BboltError> {
        let end = PAGE_HEADER + ELEMENT * u64::from(self.count);
        if end > self.span || end > self.mem.len() as u64 {
            return Err(self.out_of_bounds(u64::from(self.count).saturating_sub(1)));
        }
        Ok(())
    }

    fn element(&self, i: u16) -> &[u8] {
        let at = (PAGE_HEADER + ELEMENT * u64::from(i)) as usize;
        &self.mem[at..at + ELEMENT as usize]
    }

    fn branch_child(&self, i: u16) -> u64 {
        le64(self.element(i), 8)
    }

    fn leaf(&self, i: u16) -> Result<Leaf, BboltError> {
        let e = self.element(i);
        let at = PAGE_HEADER + ELEMENT * u64::from(i);
        let key = at + u64::from(le32(e, 4));
        let ksize = u64::from(le32(e, 8));
        let vsize = u64::from(le32(e, 12));
        let value = key + ksize;
        if value + vsize > self.span {
            return Err(self.out_of_bounds(u64::from(i)));
        }
        Ok(Leaf {
            bucket: le32(e, 0) & BUCKET_LEAF != 0,
            key,
            ksize,
            value,
            vsize,
        })
    }
}

/// A leaf element, with page-relative offsets already checked against the page.
struct Leaf {
    bucket: bool,
    key: u64,
    ksize: u64,
    value: u64,
    vsize: u64,
}

/// What the entries of a tree are to etcd's status computation.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Role {
    /// The root bucket: entries are the top-level buckets.
    Root,
    /// A top-level bucket: entries are hashed and counted.
    Top { is_key: bool },
    /// A nested bucket: only checked, as bbolt's `Tx.Check` does.
    Nested,
}

struct Walker<'a, R> {
    src: Source<'a, R>,
    page_size: u64,
    file_pages: u64,
    high_water: u64,
    reachable: Bitmap,
    /// Pages in the stored freelist, when there is one.
    freed: Option<Bitmap>,
    crc: crc::Digest<'static, u32, Table<16>>,
    total_key: u64,
    revision: i64,
    prev_top: Option<Vec<u8>>,
}

impl<R: Read + Seek> Walker<'_, R> {
    /// Reads page `pgid` from the file: its whole span when small, else its header and elements.
    fn load(&mut self, pgid: u64) -> Result<Page, BboltError> {
        let out_of_range = |overflow| BboltError::PageOutOfRange {
            pgid,
            overflow,
            pages: self.file_pages,
        };
        if pgid >= self.file_pages {
            return Err(out_of_range(0));
        }
        let offset = pgid * self.page_size;
        let mut mem = vec![0u8; self.page_size as usize];
        self.src.read_at(offset, &mut mem)?;
        let found = le64(&mem, 0);
        if found != pgid {
            return Err(BboltError::PageIdMismatch { pgid, found });
        }
        let mut page = Page::from_bytes(pgid, false, mem);
        let pages = u64::from(page.overflow) + 1;
        if pages > self.file_pages - pgid {
            return Err(out_of_range(page.overflow));
        }
        page.offset = offset;
        page.span = pages * self.page_size;
        if page.span > self.page_size {
            let want = if page.span <= WHOLE_PAGE_MAX {
                page.span
            } else {
                // Elements only (at most 64 Ki × 16 bytes); keys and values are read on demand.
                page.span
                    .min(PAGE_HEADER + ELEMENT * u64::from(page.count))
                    .max(self.page_size)
            };
            page.whole = want == page.span;
            let have = page.mem.len();
            if (want as usize) > have {
                page.mem.resize(want as usize, 0);
                self.src
                    .read_at(offset + have as u64, &mut page.mem[have..])?;
            }
        }
        Ok(page)
    }

    /// Streams `len` bytes at page-relative offset `at` (already bounds-checked) to `f`.
    fn stream(
        src: &mut Source<'_, R>,
        page: &Page,
        at: u64,
        len: u64,
        mut f: impl FnMut(&[u8]),
    ) -> Result<(), BboltError> {
        if page.whole || at + len <= page.mem.len() as u64 {
            f(&page.mem[at as usize..(at + len) as usize]);
            return Ok(());
        }
        let mut buf = vec![0u8; len.min(CHUNK as u64) as usize];
        let mut done = 0u64;
        while done < len {
            let n = (len - done).min(buf.len() as u64) as usize;
            src.read_at(page.offset + at + done, &mut buf[..n])?;
            f(&buf[..n]);
            done += n as u64;
        }
        Ok(())
    }

    /// Reads a short field (a key, a bucket value) into memory; the caller bounds `len`.
    fn bytes(&mut self, page: &Page, at: u64, len: u64) -> Result<Vec<u8>, BboltError> {
        let mut out = Vec::with_capacity(len as usize);
        Self::stream(&mut self.src, page, at, len, |b| out.extend_from_slice(b))?;
        Ok(out)
    }

    /// Marks page `pgid` and its overflow pages as in use, as bbolt's `Tx.Check` does.
    fn claim(&mut self, page: &Page) -> Result<(), BboltError> {
        let pgid = page.pgid;
        if pgid > self.high_water {
            // bbolt tests `>`, so a page at the high-water mark itself passes.
            return Err(BboltError::PageAboveHighWater {
                pgid,
                high_water: self.high_water,
            });
        }
        for p in pgid..=pgid + u64::from(page.overflow) {
            if self.reachable.get(p) {
                return Err(BboltError::MultipleReferences { pgid: p });
            }
            self.reachable.set(p);
        }
        if self.freed.as_ref().is_some_and(|f| f.get(pgid)) {
            return Err(BboltError::ReachableFreed { pgid });
        }
        Ok(())
    }

    fn load_freelist(&mut self, pgid: u64) -> Result<(), BboltError> {
        let page = self.load(pgid)?;
        if page.flags & FREELIST_PAGE == 0 {
            return Err(BboltError::UnexpectedPageType {
                pgid,
                inline: false,
                flags: page.flags,
                expected: "freelist",
            });
        }
        for p in pgid..=pgid + u64::from(page.overflow) {
            self.reachable.set(p);
        }
        // A count of 0xFFFF means the real count is the first u64 of the page body.
        let (start, count) = if page.count == 0xFFFF {
            (PAGE_HEADER + 8, le64(&page.mem, PAGE_HEADER as usize))
        } else {
            (PAGE_HEADER, u64::from(page.count))
        };
        let room = (page.span - start) / 8;
        if count > room {
            return Err(page.out_of_bounds(count));
        }
        // Ids past the end of the data cannot be in use; like bbolt, ignore them.
        let mut freed = Bitmap::new(self.file_pages);
        let mut double = None;
        let file_pages = self.file_pages;
        Self::stream(&mut self.src, &page, start, count * 8, |b| {
            for id in b.chunks_exact(8).map(|c| le64(c, 0)) {
                if id >= file_pages {
                    continue;
                }
                if freed.get(id) {
                    double.get_or_insert(id);
                }
                freed.set(id);
            }
        })?;
        if let Some(pgid) = double {
            return Err(BboltError::DoubleFree { pgid });
        }
        self.freed = Some(freed);
        Ok(())
    }

    /// Walks the tree rooted at page `pgid`, depth `depth` below the root bucket.
    fn tree(&mut self, pgid: u64, depth: usize, role: Role) -> Result<(), BboltError> {
        if depth > MAX_DEPTH {
            return Err(BboltError::TooDeep { pgid });
        }
        let page = self.load(pgid)?;
        self.claim(&page)?;
        if page.flags & (BRANCH_PAGE | LEAF_PAGE) == BRANCH_PAGE | LEAF_PAGE {
            // bbolt's check would take it for a branch and its cursor for a leaf.
            return Err(BboltError::UnexpectedPageType {
                pgid,
                inline: false,
                flags: page.flags,
                expected: "branch or leaf",
            });
        }
        if page.flags & BRANCH_PAGE != 0 {
            page.check_elements()?;
            if page.count == 0 {
                return Err(BboltError::EmptyBranch { pgid });
            }
            let children: Vec<u64> = (0..page.count).map(|i| page.branch_child(i)).collect();
            drop(page);
            for child in children {
                self.tree(child, depth + 1, role)?;
            }
            Ok(())
        } else if page.flags & LEAF_PAGE != 0 {
            self.leaf_page(&page, depth, role, true)
        } else {
            Err(BboltError::UnexpectedPageType {
                pgid,
                inline: false,
                flags: page.flags,
                expected: "branch or leaf",
            })
        }
    }

    /// Visits the entries of a leaf page in order. `check_nested`: walk nested buckets (bbolt's
    /// `Tx.Check` skips the contents of inline buckets).
    fn leaf_page(
        &mut self,
        page: &Page,
        depth: usize,
        role: Role,
        check_nested: bool,
    ) -> Result<(), BboltError> {
        page.check_elements()?;
        for i in 0..page.count {
            let leaf = page.leaf(i)?;
            match role {
                Role::Root => {
                    if leaf.ksize > u64::from(MAX_KEY_SIZE) {
                        return Err(BboltError::KeyTooLarge {
                            pgid: page.pgid,
                            len: leaf.ksize as u32,
                        });
                    }
                    let name = self.bytes(page, leaf.key, leaf.ksize)?;
                    let lossy = || String::from_utf8_lossy(&name).into_owned();
                    if self.prev_top.as_ref().is_some_and(|p| *p >= name) {
                        return Err(BboltError::BucketsOutOfOrder { name: lossy() });
                    }
                    if !leaf.bucket {
                        return Err(BboltError::NotABucket { name: lossy() });
                    }
                    self.crc.update(&name);
                    let is_key = name == b"key";
                    self.prev_top = Some(name);
                    self.bucket(page, i, &leaf, depth + 1, Role::Top { is_key }, true)?;
                }
                Role::Top { is_key } => {
                    if is_key {
                        if leaf.ksize < 17 {
                            return Err(BboltError::BadRevisionKey { len: leaf.ksize });
                        }
                        let main = self.bytes(page, leaf.key, 8)?;
                        self.revision = be64(&main) as i64;
                    }
                    let crc = &mut self.crc;
                    Self::stream(&mut self.src, page, leaf.key, leaf.ksize, |b| crc.update(b))?;
                    if leaf.bucket {
                        // etcd's ForEach sees a nested bucket with a nil value.
                        if check_nested {
                            self.bucket(page, i, &leaf, depth + 1, Role::Nested, false)?;
                        }
                    } else {
                        let crc = &mut self.crc;
                        Self::stream(&mut self.src, page, leaf.value, leaf.vsize, |b| {
                            crc.update(b)
                        })?;
                    }
                    self.total_key += 1;
                }
                Role::Nested => {
                    if leaf.bucket && check_nested {
                        self.bucket(page, i, &leaf, depth + 1, Role::Nested, false)?;
                    }
                }
            }
        }
        Ok(())
    }

    /// Opens the bucket stored in element `index` of `page` and walks it. `walk_inline`: visit
    /// an inline bucket's entries (needed for hashing; bbolt's check does not look inside).
    fn bucket(
        &mut self,
        page: &Page,
        index: u16,
        leaf: &Leaf,
        depth: usize,
        role: Role,
        walk_inline: bool,
    ) -> Result<(), BboltError> {
        let bad = || BboltError::BadBucketValue {
            pgid: page.pgid,
            inline: page.inline,
            index: u64::from(index),
            len: leaf.vsize,
        };
        if leaf.vsize < BUCKET_HEADER as u64 {
            return Err(bad());
        }
        let header = self.bytes(page, leaf.value, BUCKET_HEADER as u64)?;
        let root = le64(&header, 0);
        if root != 0 {
            return self.tree(root, depth, role);
        }
        if !walk_inline {
            return Ok(());
        }
        if depth > MAX_DEPTH {
            return Err(BboltError::TooDeep { pgid: page.pgid });
        }
        // An inline bucket: the rest of the value is a leaf page (bbolt keeps it under a
        // quarter of a page).
        let inline_len = leaf.vsize - BUCKET_HEADER as u64;
        if inline_len < PAGE_HEADER || inline_len > self.page_size {
            return Err(bad());
        }
        let mem = self.bytes(page, leaf.value + BUCKET_HEADER as u64, inline_len)?;
        let inline = Page::from_bytes(page.pgid, true, mem);
        if inline.flags & LEAF_PAGE == 0 {
            return Err(BboltError::UnexpectedPageType {
                pgid: page.pgid,
                inline: true,
                flags: inline.flags,
                expected: "leaf",
            });
        }
        self.leaf_page(&inline, depth, role, false)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Builds small bbolt databases page by page.
    struct Db {
        page_size: usize,
        pages: Vec<Vec<u8>>,
    }

    #[derive(Clone)]
    enum Val {
        Plain(Vec<u8>),
        /// A bucket stored in its own pages, rooted at this page.
        Bucket(u64),
        /// An inline bucket holding these plain entries.
        Inline(Vec<(Vec<u8>, Vec<u8>)>),
    }

    fn page_bytes(page_size: usize, id: u64, flags: u16, count: u16, overflow: u32) -> Vec<u8> {
        let mut p = vec![0u8; page_size * (overflow as usize + 1)];
        p[0..8].copy_from_slice(&id.to_le_bytes());
        p[8..10].copy_from_slice(&flags.to_le_bytes());
        p[10..12].copy_from_slice(&count.to_le_bytes());
        p[12..16].copy_from_slice(&overflow.to_le_bytes());
        p
    }

    /// Leaf body (elements, then keys and values), as bbolt's node.write lays it out.
    fn leaf_body(entries: &[(Vec<u8>, u32, Vec<u8>)]) -> Vec<u8> {
        let n = entries.len();
        let mut elems = vec![0u8; n * 16];
        let mut data = Vec::new();
        for (i, (k, flags, v)) in entries.iter().enumerate() {
            let at = i * 16;
            let pos = (n * 16 - at + data.len()) as u32;
            elems[at..at + 4].copy_from_slice(&flags.to_le_bytes());
            elems[at + 4..at + 8].copy_from_slice(&pos.to_le_bytes());
            elems[at + 8..at + 12].copy_from_slice(&(k.len() as u32).to_le_bytes());
            elems[at + 12..at + 16].copy_from_slice(&(v.len() as u32).to_le_bytes());
            data.extend_from_slice(k);
            data.extend_from_slice(v);
        }
        elems.extend_from_slice(&data);
        elems
    }

    fn encode(entries: &[(Vec<u8>, Val)]) -> Vec<(Vec<u8>, u32, Vec<u8>)> {
        entries
            .iter()
            .map(|(k, v)| match v {
                Val::Plain(v) => (k.clone(), 0, v.clone()),
                Val::Bucket(root) => {
                    let mut b = root.to_le_bytes().to_vec();
                    b.extend_from_slice(&0u64.to_le_bytes());
                    (k.clone(), BUCKET_LEAF, b)
                }
                Val::Inline(inner) => {
                    let mut b = vec![0u8; 16];
                    let body = leaf_body(
                        &inner
                            .iter()
                            .map(|(k, v)| (k.clone(), 0, v.clone()))
                            .collect::<Vec<_>>(),
                    );
                    let mut p = page_bytes(16, 0, LEAF_PAGE, inner.len() as u16, 0);
                    p.truncate(16);
                    p.extend_from_slice(&body);
                    b.extend_from_slice(&p);
                    (k.clone(), BUCKET_LEAF, b)
                }
            })
            .collect()
    }

    impl Db {
        fn new(page_size: usize) -> Db {
            // Pages 0 and 1 are the metas, written by `finish`.
            Db {
                page_size,
                pages: vec![vec![0; page_size], vec![0; page_size]],
            }
        }

        fn next_id(&self) -> u64 {
            self.pages
                .iter()
                .map(|p| p.len() / self.page_size)
                .sum::<usize>() as u64
        }

        fn leaf(&mut self, entries: &[(Vec<u8>, Val)]) -> u64 {
            let id = self.next_id();
            let body = leaf_body(&encode(entries));
            let pages = (16 + body.len()).div_ceil(self.page_size);
            let mut p = page_bytes(
                self.page_size,
                id,
                LEAF_PAGE,
                entries.len() as u16,
                pages as u32 - 1,
            );
            p[16..16 + body.len()].copy_from_slice(&body);
            self.pages.push(p);
            id
        }

        fn branch(&mut self, children: &[(Vec<u8>, u64)]) -> u64 {
            let id = self.next_id();
            let mut p = page_bytes(self.page_size, id, BRANCH_PAGE, children.len() as u16, 0);
            let n = children.len();
            let mut data = Vec::new();
            for (i, (k, child)) in children.iter().enumerate() {
                let at = 16 + i * 16;
                let pos = (n * 16 - i * 16 + data.len()) as u32;
                p[at..at + 4].copy_from_slice(&pos.to_le_bytes());
                p[at + 4..at + 8].copy_from_slice(&(k.len() as u32).to_le_bytes());
                p[at + 8..at + 16].copy_from_slice(&child.to_le_bytes());
                data.extend_from_slice(k);
            }
            p[16 + n * 16..16 + n * 16 + data.len()].copy_from_slice(&data);
            self.pages.push(p);
            id
        }

        fn freelist(&mut self, ids: &[u64]) -> u64 {
            let id = self.next_id();
            let mut p = page_bytes(self.page_size, id, FREELIST_PAGE, ids.len() as u16, 0);
            for (i, f) in ids.iter().enumerate() {
                p[16 + i * 8..24 + i * 8].copy_from_slice(&f.to_le_bytes());
            }
            self.pages.push(p);
            id
        }

        fn finish(mut self, root: u64, freelist: u64, txid: u64) -> Vec<u8> {
            let pgid = self.next_id();
            for (i, page) in self.pages.iter_mut().take(2).enumerate() {
                let mut p = page_bytes(self.page_size, i as u64, META_PAGE, 0, 0);
                let m = &mut p[16..16 + 64];
                m[0..4].copy_from_slice(&MAGIC.to_le_bytes());
                m[4..8].copy_from_slice(&VERSION.to_le_bytes());
                m[8..12].copy_from_slice(&(self.page_size as u32).to_le_bytes());
                m[16..24].copy_from_slice(&root.to_le_bytes());
                m[32..40].copy_from_slice(&freelist.to_le_bytes());
                m[40..48].copy_from_slice(&pgid.to_le_bytes());
                m[48..56].copy_from_slice(&(txid - i as u64).to_le_bytes());
                let sum = fnv1a64(&m[..56]);
                m[56..64].copy_from_slice(&sum.to_le_bytes());
                *page = p;
            }
            self.pages.concat()
        }
    }

    fn rev_key(main: u64, sub: u64) -> Vec<u8> {
        let mut k = main.to_be_bytes().to_vec();
        k.push(b'_');
        k.extend_from_slice(&sub.to_be_bytes());
        k
    }

    fn plain(k: &[u8], v: &[u8]) -> (Vec<u8>, Val) {
        (k.to_vec(), Val::Plain(v.to_vec()))
    }

    /// A database with a multi-page "key" bucket, an inline bucket, a nested bucket and a large
    /// (overflowing) value, plus what etcd's status would hash for it.
    fn sample(freelist: bool) -> (Vec<u8>, u32, u64) {
        let mut db = Db::new(4096);
        let big = vec![7u8; 10_000];
        let k1 = db.leaf(&[plain(&rev_key(1, 0), b"a"), plain(&rev_key(2, 0), &big)]);
        let k2 = db.leaf(&[plain(&rev_key(3, 0), b"c"), plain(&rev_key(4, 1), b"d")]);
        let key_root = db.branch(&[(rev_key(1, 0), k1), (rev_key(3, 0), k2)]);
        let nested = db.leaf(&[plain(b"inner", b"hidden")]);
        let meta = db.leaf(&[
            plain(b"consistent_index", &9u64.to_be_bytes()),
            (b"sub".to_vec(), Val::Bucket(nested)),
        ]);
        let root = db.leaf(&[
            (b"alarm".to_vec(), Val::Inline(vec![])),
            (
                b"cluster".to_vec(),
                Val::Inline(vec![(b"clusterVersion".to_vec(), b"3.4.0".to_vec())]),
            ),
            (b"key".to_vec(), Val::Bucket(key_root)),
            (b"meta".to_vec(), Val::Bucket(meta)),
        ]);
        let free = if freelist {
            // One spare page, free.
            let spare = db.next_id();
            db.pages.push(page_bytes(4096, spare, LEAF_PAGE, 0, 0));
            db.freelist(&[spare])
        } else {
            NO_FREELIST
        };
        let bytes = db.finish(root, free, 10);

        let mut h = CASTAGNOLI.digest();
        h.update(b"alarm");
        h.update(b"cluster");
        h.update(b"clusterVersion");
        h.update(b"3.4.0");
        h.update(b"key");
        for (k, v) in [
            (rev_key(1, 0), b"a".to_vec()),
            (rev_key(2, 0), big.clone()),
            (rev_key(3, 0), b"c".to_vec()),
            (rev_key(4, 1), b"d".to_vec()),
        ] {
            h.update(&k);
            h.update(&v);
        }
        h.update(b"meta");
        h.update(b"consistent_index");
        h.update(&9u64.to_be_bytes());
        h.update(b"sub");
        // cluster 1 + key 4 + meta 2
        (bytes, h.finalize(), 7)
    }

    #[test]
    fn castagnoli_check_value() {
        assert_eq!(CASTAGNOLI.checksum(b"123456789"), 0xE306_9283);
    }

    #[test]
    fn sample_matches_etcd_semantics() {
        for freelist in [false, true] {
            let (bytes, hash, keys) = sample(freelist);
            let st = inspect_bytes(&bytes).unwrap();
            assert_eq!(st.hash, hash);
            assert_eq!(st.total_key, keys);
            assert_eq!(st.revision, 4);
            assert_eq!(st.total_size, bytes.len() as u64);
            assert_eq!(st.page_size, 4096);
            assert_eq!(st.txid, 10);
        }
    }

    #[test]
    fn trailer_is_ignored_and_checked() {
        let (mut bytes, hash, _) = sample(false);
        let sum = Sha256::digest(&bytes);
        bytes.extend_from_slice(&sum);
        assert_eq!(inspect_bytes(&bytes).unwrap().hash, hash);
        assert!(verify_trailer(&bytes));
        let (db, t) = split_trailer(&bytes).unwrap();
        assert_eq!(db.len() + 32, bytes.len());
        assert_eq!(t.as_slice(), sum.as_slice());
        let mut c = io::Cursor::new(&bytes);
        assert_eq!(
            check_trailer(&mut c, bytes.len() as u64).unwrap(),
            TrailerStatus::Valid
        );
        bytes[5000] ^= 1;
        assert!(!verify_trailer(&bytes));
        let mut c = io::Cursor::new(&bytes);
        assert!(matches!(
            check_trailer(&mut c, bytes.len() as u64).unwrap(),
            TrailerStatus::Mismatch { .. }
        ));
        let n = bytes.len() as u64 - 32;
        let mut c = io::Cursor::new(&bytes);
        assert_eq!(check_trailer(&mut c, n).unwrap(), TrailerStatus::Absent);
        assert_eq!(db_len(bytes.len() as u64), n);
        assert_eq!(db_len(n), n);
    }

    #[test]
    fn meta_fallback_and_faults() {
        let (bytes, hash, _) = sample(false);
        // Damaged meta 0 (higher txid): meta 1 is used.
        let mut b = bytes.clone();
        b[16 + 50] ^= 0xff;
        let st = inspect_bytes(&b).unwrap();
        assert_eq!((st.hash, st.txid), (hash, 9));
        // Both checksums bad.
        b[4096 + 16 + 48] ^= 0xff;
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::BadMeta {
                meta0: MetaFault::BadChecksum { .. },
                meta1: MetaFault::BadChecksum { .. }
            })
        ));
        // A zero checksum is accepted, as bbolt accepts it.
        let mut b = bytes.clone();
        b[16 + 56..16 + 64].fill(0);
        assert_eq!(inspect_bytes(&b).unwrap().hash, hash);
        // Not bbolt at all.
        assert!(matches!(
            inspect_bytes(&vec![0u8; 16384]),
            Err(BboltError::NotBbolt)
        ));
        assert!(matches!(
            inspect_bytes(b"hello"),
            Err(BboltError::TooSmall { .. })
        ));
        // Version 1 in both.
        let mut b = bytes.clone();
        b[16 + 4] = 1;
        b[4096 + 16 + 4] = 1;
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::BadMeta {
                meta0: MetaFault::BadVersion(1),
                meta1: MetaFault::BadVersion(1)
            })
        ));
    }

    #[test]
    fn truncation_is_reported() {
        let (bytes, _, _) = sample(false);
        assert!(matches!(
            inspect_bytes(&bytes[..bytes.len() - 4096]),
            Err(BboltError::Truncated { .. })
        ));
        for cut in [0, 100, 4095, 4096, 8191] {
            assert!(inspect_bytes(&bytes[..cut]).is_err(), "cut at {cut}");
        }
    }

    #[test]
    fn self_referencing_branch_is_a_cycle() {
        let mut db = Db::new(4096);
        let leaf = db.leaf(&[plain(&rev_key(1, 0), b"x")]);
        let branch = db.branch(&[(rev_key(1, 0), leaf), (rev_key(2, 0), 3)]);
        assert_eq!(branch, 3);
        let root = db.leaf(&[(b"key".to_vec(), Val::Bucket(branch))]);
        let bytes = db.finish(root, NO_FREELIST, 2);
        assert!(matches!(
            inspect_bytes(&bytes),
            Err(BboltError::MultipleReferences { pgid: 3 })
        ));
    }

    #[test]
    fn deep_chain_is_bounded() {
        // A chain of single-child branches deeper than MAX_DEPTH.
        let mut db = Db::new(512);
        let mut child = db.leaf(&[plain(&rev_key(1, 0), b"x")]);
        for _ in 0..MAX_DEPTH + 5 {
            child = db.branch(&[(rev_key(1, 0), child)]);
        }
        let root = db.leaf(&[(b"key".to_vec(), Val::Bucket(child))]);
        let bytes = db.finish(root, NO_FREELIST, 2);
        assert!(matches!(
            inspect_bytes(&bytes),
            Err(BboltError::TooDeep { .. })
        ));
    }

    #[test]
    fn structural_damage_is_typed() {
        let mut db = Db::new(4096);
        let leaf = db.leaf(&[plain(&rev_key(5, 0), b"x")]);
        let root = db.leaf(&[
            (b"key".to_vec(), Val::Bucket(leaf)),
            plain(b"zzz", b"not a bucket"),
        ]);
        let bytes = db.finish(root, NO_FREELIST, 2);
        assert!(matches!(
            inspect_bytes(&bytes),
            Err(BboltError::NotABucket { name }) if name == "zzz"
        ));

        let mut db = Db::new(4096);
        let leaf = db.leaf(&[plain(b"short", b"x")]);
        let root = db.leaf(&[(b"key".to_vec(), Val::Bucket(leaf))]);
        let bytes = db.finish(root, NO_FREELIST, 2);
        assert!(matches!(
            inspect_bytes(&bytes),
            Err(BboltError::BadRevisionKey { len: 5 })
        ));

        let (bytes, _, _) = sample(false);
        let root = le64(&bytes, 16 + 16) as usize;
        // Root page points beyond the file.
        let mut b = bytes.clone();
        b[16 + 16..16 + 24].copy_from_slice(&1000u64.to_le_bytes());
        b[4096 + 16 + 16..4096 + 16 + 24].copy_from_slice(&1000u64.to_le_bytes());
        fix_meta(&mut b, 4096);
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::PageOutOfRange { pgid: 1000, .. })
        ));
        // Root leaf element pointing past its page.
        let mut b = bytes.clone();
        let at = root * 4096 + 16 + 4;
        b[at..at + 4].copy_from_slice(&5000u32.to_le_bytes());
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::ElementOutOfBounds { .. })
        ));
        // Root page id field wrong.
        let mut b = bytes.clone();
        b[root * 4096] ^= 1;
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::PageIdMismatch { .. })
        ));
        // Root page type wrong.
        let mut b = bytes.clone();
        b[root * 4096 + 8] = FREELIST_PAGE as u8;
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::UnexpectedPageType { .. })
        ));
        // Root points at a meta page.
        let mut b = bytes.clone();
        b[16 + 16..16 + 24].copy_from_slice(&1u64.to_le_bytes());
        fix_meta(&mut b, 4096);
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::MultipleReferences { pgid: 1 })
        ));
        // Huge overflow count.
        let mut b = bytes.clone();
        b[root * 4096 + 12..root * 4096 + 16].copy_from_slice(&u32::MAX.to_le_bytes());
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::PageOutOfRange { .. })
        ));
    }

    #[test]
    fn freelist_checks() {
        let (bytes, _, _) = sample(true);
        let meta = parse_meta(bytes[16..80].try_into().unwrap()).unwrap();
        let fl = meta.freelist as usize * 4096;
        let spare = le64(&bytes, fl + 16);
        // The spare page neither free nor used.
        let mut b = bytes.clone();
        b[fl + 10] = 0;
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::Unreachable { first, count: 1 }) if first == spare
        ));
        // A used page freed.
        let mut b = bytes.clone();
        b[fl + 16..fl + 24].copy_from_slice(&meta.root.to_le_bytes());
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::ReachableFreed { .. }) | Err(BboltError::Unreachable { .. })
        ));
        // Freed twice.
        let mut b = bytes.clone();
        b[fl + 10] = 2;
        b[fl + 24..fl + 32].copy_from_slice(&spare.to_le_bytes());
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::DoubleFree { .. })
        ));
        // Overflowing freelist count claims more ids than the page holds.
        let mut b = bytes.clone();
        b[fl + 10..fl + 12].copy_from_slice(&0xFFFFu16.to_le_bytes());
        b[fl + 16..fl + 24].copy_from_slice(&u64::MAX.to_le_bytes());
        assert!(matches!(
            inspect_bytes(&b),
            Err(BboltError::ElementOutOfBounds { .. })
        ));
    }

    /// Rewrites meta page 0's checksum after editing it (meta 1 is made invalid so 0 is used).
    fn fix_meta(b: &mut [u8], ps: usize) {
        let sum = fnv1a64(&b[16..16 + 56]);
        b[16 + 56..16 + 64].copy_from_slice(&sum.to_le_bytes());
        b[ps + 16] ^= 0xff;
    }

    #[test]
    fn every_single_byte_flip_terminates() {
        let (bytes, _, _) = sample(true);
        // Flip bytes throughout the metas, the pages' headers and a few bodies.
        for at in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[at] ^= 0x5a;
            let _ = inspect_bytes(&b);
        }
    }

    proptest::proptest! {
        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..20_000)) {
            let _ = inspect_bytes(&data);
        }

        #[test]
        fn mutated_databases_never_panic(
            edits in proptest::collection::vec((0usize..40_000, proptest::num::u8::ANY), 1..8),
        ) {
            let (mut bytes, _, _) = sample(true);
            let n = bytes.len();
            for (at, v) in edits {
                bytes[at % n] = v;
            }
            let _ = inspect_bytes(&bytes);
        }
    }
}
