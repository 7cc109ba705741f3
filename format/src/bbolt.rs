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

use std::borrow::Cow;
use std::fmt;
use std::io::{self, Read, Seek, SeekFrom};

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

/// CRC-32C (Castagnoli) digest, with the CPU's CRC instructions where it has them (crc-fast):
/// a table-driven CRC cost a third of a backup's CPU time on a daily etcd incremental.
struct Crc32c(crc_fast::Digest);

impl Crc32c {
    fn new() -> Self {
        Crc32c(crc_fast::Digest::new(crc_fast::CrcAlgorithm::Crc32Iscsi))
    }

    fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    fn finalize(&self) -> u32 {
        self.0.finalize() as u32
    }
}

/// CRC-32C of `bytes`.
fn crc32c(bytes: &[u8]) -> u32 {
    crc_fast::crc32_iscsi(bytes)
}

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
    /// The keys and values of a leaf page take more room than the page has, so some overlap
    /// (bbolt stores each once, one after the other).
    #[error(
        "the etcd snapshot is damaged: the keys and values of {} overlap (at element {index})",
        page_name(*.pgid, *.inline)
    )]
    OverlappingEntries {
        /// The page (the page holding it, for an inline bucket).
        pgid: u64,
        /// Whether it is an inline bucket's page.
        inline: bool,
        /// The first element that does not fit.
        index: u64,
    },
    /// A page that one-pass inspection ([`StreamInspector`]) does not hold, and that bbolt does
    /// not write either.
    #[error(
        "the etcd snapshot cannot be inspected as it streams: page {pgid} {why}; \
         inspect a saved copy instead"
    )]
    NotStreamable {
        /// The page.
        pgid: u64,
        /// What is wrong with it.
        why: &'static str,
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
    let mut src = Source { r };
    let meta = select_meta(len, |offset| src.meta_area(offset))?;
    let page_size = u64::from(meta.page_size);
    let pages = FilePages {
        src,
        page_size,
        file_pages: len / page_size,
    };
    status(pages, meta, len)
}

/// Computes the status of the database whose chosen meta page is `meta`, `len` bytes long,
/// walking its pages through `pages`. [`inspect`] and [`StreamInspector::finish`] share it.
fn status<P: Pages>(pages: P, meta: Meta, len: u64) -> Result<SnapshotStatus, BboltError> {
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
        pages,
        file_pages,
        high_water: meta.pgid,
        reachable: Bitmap::new(file_pages),
        freed: None,
        crc: 0,
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
        hash: walk.crc,
        revision: walk.revision,
        total_key: walk.total_key,
        total_size,
        page_size: meta.page_size,
        txid: meta.txid,
    })
}

/// Computes what [`inspect`] computes, in one pass over the snapshot's bytes, for a snapshot that
/// streams from etcd's Maintenance.Snapshot call and cannot be read again: feed it every byte in
/// order with [`update`](Self::update) (pieces of any size, the sha256 trailer included), then
/// call [`finish`](Self::finish).
///
/// For every snapshot bbolt writes, `finish` returns exactly what `inspect` returns for the same
/// bytes (`inspect(r, db_len(n))` where `n` bytes were fed, which is what `inspect` returns for the
/// whole file too). It runs the same checks, on the same walk from the same meta page, with two
/// differences on damaged input: an error may be reported with less detail (the key of a
/// top-level entry that is not a bucket), and three things `inspect` would read are refused with
/// [`BboltError::NotStreamable`] if the walk reaches them: a page spanning more than
/// [`MAX_STREAM_PAGE`] bytes, an overflowing page whose span overlaps those of more than 64 others
/// (freed pages keep their old headers, so spans may overlap), and a page whose elements do not
/// start in its first page. bbolt writes none of these.
///
/// Pages arrive in file order, not in key order, and a page's place in the tree is only known from
/// the pages that point to it, which may come later. So every page is digested as it arrives, into
/// a summary keyed by page id: for a branch page its children, for a leaf page the CRC-32C, byte
/// count and entry count of each run of plain entries, each bucket entry's name and root (or inline
/// bucket, digested the same way), and the revision in its last key. `finish` then walks the tree
/// from the meta page's root through the summaries, combining the CRCs in key order. Pages the
/// walk does not reach (freed pages with stale contents, or bytes inside large values that happen
/// to look like a page header) are summarized too, and ignored.
///
/// Memory: about 32 bytes per page of the database, plus 8 bytes per child of a branch page
/// (about one in a hundred pages), 8 bytes per id in the freelist, and for leaf pages holding
/// bucket entries (the root bucket's) their names; plus one page of buffer, and while an
/// overflowing page (a large value) streams by, its whole span, at most [`MAX_STREAM_PAGE`] but in
/// practice below etcd's 1.5 MiB request limit. For an 8 GB snapshot of 4 KiB pages that is about
/// 80 MB. Damaged input cannot make it hold more than a small multiple of the bytes fed, nor work
/// more than a small multiple of the time of reading them, and never panics.
///
/// Made with [`with_store`](Self::with_store), it keeps the summaries of the first `bound` pages
/// only and hands those of later pages to a [`SummaryStore`] as fixed records of
/// [`SUMMARY_RECORD`] bytes (the rare pages a record cannot describe, branch pages, leaves with
/// buckets, the freelist, damage, stay in memory), read back one by one as `finish` walks the
/// tree: memory then no longer grows with the database (a caller's store may be a temporary
/// file). The result is the same.
pub struct StreamInspector<S = NoStore> {
    /// Bytes fed so far, trailer included.
    received: u64,
    /// The page size from meta page 0 (bbolt's fallback when it is unusable), 0 until its first
    /// 80 bytes arrived.
    page_size: u64,
    /// The meta fields of pages 0 and 1, once arrived.
    meta0: Option<[u8; META_LEN]>,
    meta1: Option<[u8; META_LEN]>,
    /// The meta page in use, once pages 0 and 1 arrived.
    meta: Option<Meta>,
    /// No page can be read (page size out of range, or no usable meta page): `finish` says why.
    halted: bool,
    /// The start of the page in progress, when it came in several pieces.
    partial: Vec<u8>,
    /// One summary per complete page, by page id, for the first pages (all of them without a
    /// store).
    slots: Vec<PageSum>,
    /// Pages kept in `slots` before later ones go to `store`.
    bound: u64,
    /// Where the summaries of pages `slots.len()..` go, in page order.
    store: S,
    /// Pages handed to `store`.
    stored: u64,
    /// Summaries of stored pages that a record cannot hold, by increasing page id.
    held: Vec<(u64, PageSum)>,
    /// Consecutive pages from `window_first` on, while overflowing pages are open.
    window: Vec<u8>,
    window_first: u64,
    /// Overflowing pages whose end has not arrived yet: first page, one past the last, and what
    /// to read them as.
    open: Vec<(u64, u64, Want)>,
}

/// Largest page, overflow included, that [`StreamInspector`] holds to digest it (a page bbolt
/// writes for a value of nearly that size). etcd refuses requests larger than 1.5 MiB unless told
/// otherwise.
pub const MAX_STREAM_PAGE: u64 = 64 << 20;

/// Most overflowing pages [`StreamInspector`] follows at once: the live one, and freed ones whose
/// stale headers claim the same pages.
const MAX_OPEN_PAGES: usize = 64;

/// Bytes of one page summary as a [`SummaryStore`] holds it.
pub const SUMMARY_RECORD: usize = 26;

/// Where a [`StreamInspector`] made with [`StreamInspector::with_store`] keeps the summaries of
/// pages beyond those it holds: records of [`SUMMARY_RECORD`] bytes, numbered from 0 in the
/// order they are put, each read back at most a few times, in any order.
pub trait SummaryStore {
    /// Keeps record `n` (records come in order: 0, 1, 2…). A store that cannot write must keep
    /// it otherwise (in memory).
    fn put(&mut self, n: u64, record: &[u8; SUMMARY_RECORD]);
    /// Reads record `n` back into `record`.
    fn get(&mut self, n: u64, record: &mut [u8; SUMMARY_RECORD]) -> io::Result<()>;
    /// Replaces record `n`, already put (an overflowing page's, once its last page arrived);
    /// false if the store cannot (the summary then stays in memory).
    fn replace(&mut self, _n: u64, _record: &[u8; SUMMARY_RECORD]) -> bool {
        false
    }
}

/// No store: every summary stays in memory.
#[derive(Debug, Default)]
pub struct NoStore;

impl SummaryStore for NoStore {
    fn put(&mut self, _n: u64, _record: &[u8; SUMMARY_RECORD]) {}
    fn get(&mut self, n: u64, _record: &mut [u8; SUMMARY_RECORD]) -> io::Result<()> {
        Err(io::Error::other(format!(
            "page summary {n} was never stored (no summary store)"
        )))
    }
}

/// Records held in memory, one after the other (for tests and fuzzing of the record path).
impl SummaryStore for Vec<u8> {
    fn put(&mut self, n: u64, record: &[u8; SUMMARY_RECORD]) {
        debug_assert_eq!(n as usize * SUMMARY_RECORD, self.len());
        self.extend_from_slice(record);
    }
    fn get(&mut self, n: u64, record: &mut [u8; SUMMARY_RECORD]) -> io::Result<()> {
        let at = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(SUMMARY_RECORD))
            .and_then(|at| self.as_slice().get(at..at + SUMMARY_RECORD))
            .ok_or_else(|| io::Error::other(format!("page summary {n} was never stored")))?;
        record.copy_from_slice(at);
        Ok(())
    }
    fn replace(&mut self, n: u64, record: &[u8; SUMMARY_RECORD]) -> bool {
        let slot = usize::try_from(n)
            .ok()
            .and_then(|n| n.checked_mul(SUMMARY_RECORD))
            .and_then(|at| self.get_mut(at..at + SUMMARY_RECORD));
        match slot {
            Some(slot) => {
                slot.copy_from_slice(record);
                true
            }
            None => false,
        }
    }
}

impl Default for StreamInspector {
    fn default() -> Self {
        Self::new()
    }
}

impl StreamInspector {
    /// An inspector that has seen no bytes yet, holding every page's summary in memory.
    pub fn new() -> Self {
        Self::with_store(NoStore, u64::MAX)
    }
}

impl<S: SummaryStore> StreamInspector<S> {
    /// An inspector that has seen no bytes yet, holding the summaries of the first `bound`
    /// pages and handing later ones to `store`.
    pub fn with_store(store: S, bound: u64) -> Self {
        StreamInspector {
            received: 0,
            page_size: 0,
            meta0: None,
            meta1: None,
            meta: None,
            halted: false,
            partial: Vec::new(),
            slots: Vec::new(),
            bound,
            store,
            stored: 0,
            held: Vec::new(),
            window: Vec::new(),
            window_first: 0,
            open: Vec::new(),
        }
    }

    /// Bytes fed so far.
    pub fn received(&self) -> u64 {
        self.received
    }

    /// Takes the next `bytes` of the snapshot.
    pub fn update(&mut self, mut bytes: &[u8]) {
        self.received += bytes.len() as u64;
        while !bytes.is_empty() && !self.halted {
            if self.page_size == 0 {
                // Meta page 0's fields decide the page size.
                let want = PAGE_HEADER as usize + META_LEN;
                let take = (want - self.partial.len()).min(bytes.len());
                self.partial.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.partial.len() == want {
                    let mut m = [0u8; META_LEN];
                    m.copy_from_slice(&self.partial[PAGE_HEADER as usize..]);
                    self.meta0 = Some(m);
                    let page_size = page_size_for(&parse_meta(&m));
                    if (MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
                        self.page_size = u64::from(page_size);
                    } else {
                        self.halted = true;
                    }
                }
                continue;
            }
            let ps = self.page_size as usize;
            if self.partial.is_empty() && bytes.len() >= ps {
                let (page, rest) = bytes.split_at(ps);
                self.page(page);
                bytes = rest;
            } else {
                let take = (ps - self.partial.len()).min(bytes.len());
                self.partial.extend_from_slice(&bytes[..take]);
                bytes = &bytes[take..];
                if self.partial.len() == ps {
                    let page = std::mem::take(&mut self.partial);
                    self.page(&page);
                    self.partial = page;
                    self.partial.clear();
                }
            }
        }
    }

    /// Ends the stream and returns the snapshot's status, as [`inspect`] would. The last 32 bytes
    /// are taken for etcd's sha256 trailer, and ignored, when the length says so ([`db_len`]).
    pub fn finish(mut self) -> Result<SnapshotStatus, BboltError> {
        let len = db_len(self.received);
        let meta = select_meta(len, |offset| Ok(self.meta_area(offset)))?;
        let file_pages = len / u64::from(meta.page_size);
        let pages = StreamPages {
            slots: &mut self.slots,
            store: &mut self.store,
            stored: self.stored,
            held: &mut self.held,
            file_pages,
        };
        status(pages, meta, len)
    }

    /// The meta fields of the page at `offset`, if they arrived.
    fn meta_area(&self, offset: u64) -> Option<[u8; META_LEN]> {
        match offset {
            0 => self.meta0,
            o if o == self.page_size => self.meta1,
            _ => None,
        }
    }

    /// Digests the next complete page.
    fn page(&mut self, bytes: &[u8]) {
        let pgid = self.slots.len() as u64 + self.stored;
        let ps = self.page_size;
        if pgid == 1 {
            let mut m = [0u8; META_LEN];
            m.copy_from_slice(&bytes[PAGE_HEADER as usize..PAGE_HEADER as usize + META_LEN]);
            self.meta1 = Some(m);
            // The same choice `finish` makes, whatever length follows.
            match select_meta(2 * ps, |offset| Ok(self.meta_area(offset))) {
                Ok(meta) => self.meta = Some(meta),
                Err(_) => self.halted = true,
            }
        }
        let found = le64(bytes, 0);
        let flags = u16::from_le_bytes([bytes[8], bytes[9]]);
        let overflow = le32(bytes, 12);
        let want = match self.meta {
            Some(meta) if pgid >= 2 => {
                if pgid == meta.freelist && flags & FREELIST_PAGE != 0 {
                    Some(Want::Freelist)
                } else if pgid <= meta.pgid && flags & (BRANCH_PAGE | LEAF_PAGE) != 0 {
                    // Pages above the high-water mark cannot be in use: the walk refuses them
                    // from their header alone.
                    Some(Want::Tree)
                } else {
                    None
                }
            }
            _ => None,
        };
        let body = match want {
            _ if found != pgid => Body::Mismatch(found),
            None => Body::Opaque,
            Some(want) if overflow == 0 => summarize_resident(pgid, bytes, want, ps),
            Some(want) => {
                let end = pgid + u64::from(overflow) + 1;
                if (end - pgid) * ps > MAX_STREAM_PAGE {
                    Body::Refused("spans more than the 64 MiB a stream inspection holds")
                } else if self.open.len() >= MAX_OPEN_PAGES {
                    Body::Refused(
                        "overlaps more overflowing pages than a stream inspection follows",
                    )
                } else {
                    self.open.push((pgid, end, want));
                    Body::Pending
                }
            }
        };
        self.keep(
            pgid,
            PageSum {
                body,
                overflow,
                flags,
            },
        );
        if self.open.is_empty() {
            return;
        }
        if self.window.is_empty() {
            self.window_first = pgid;
        }
        self.window.extend_from_slice(bytes);
        let next = pgid + 1;
        while let Some(i) = self.open.iter().position(|o| o.1 == next) {
            let (first, _, want) = self.open.swap_remove(i);
            let at = ((first - self.window_first) * ps) as usize;
            let body = summarize_resident(first, &self.window[at..], want, ps);
            self.complete(first, body);
        }
        match self.open.iter().map(|o| o.0).min() {
            None => self.window.clear(),
            Some(first) => {
                let drop = ((first - self.window_first) * ps) as usize;
                self.window.drain(..drop);
                self.window_first = first;
            }
        }
    }
}

impl<S: SummaryStore> StreamInspector<S> {
    /// Keeps the summary of page `pgid`, the next page: in memory up to the bound, else as a
    /// record in the store (in memory too when a record cannot hold it).
    fn keep(&mut self, pgid: u64, sum: PageSum) {
        if self.stored == 0 && (self.slots.len() as u64) < self.bound {
            self.slots.push(sum);
            return;
        }
        let record = match sum.record() {
            Some(record) => record,
            None => {
                self.held.push((pgid, sum));
                PageSum::held_record()
            }
        };
        self.store.put(self.stored, &record);
        self.stored += 1;
    }

    /// The overflowing page `pgid`, kept pending, is complete: its summary is `body`. One that
    /// went to the store replaces its record there when a record can hold it (most can: a
    /// large database's values spill into overflow pages), instead of staying in memory.
    fn complete(&mut self, pgid: u64, body: Body) {
        if let Some(sum) = usize::try_from(pgid)
            .ok()
            .and_then(|i| self.slots.get_mut(i))
        {
            sum.body = body;
            return;
        }
        let Ok(i) = self.held.binary_search_by_key(&pgid, |h| h.0) else {
            return;
        };
        self.held[i].1.body = body;
        let n = pgid - self.slots.len() as u64;
        if let Some(record) = self.held[i].1.record() {
            if self.store.replace(n, &record) {
                // Pending pages are the last few held: little to shift.
                self.held.remove(i);
            }
        }
    }
}

/// The summary of page `pgid` among `held` (sorted by page id).
fn held_mut(held: &mut [(u64, PageSum)], pgid: u64) -> Option<&mut PageSum> {
    let i = held.binary_search_by_key(&pgid, |h| h.0).ok()?;
    Some(&mut held[i].1)
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

/// CRC-32C's polynomial, bit-reflected (x^0 is the top bit).
const CASTAGNOLI_POLY: u32 = 0x82F6_3B78;

/// `a·b` modulo CRC-32C's polynomial, both bit-reflected (zlib's `multmodp`, made to stop when
/// `a` is 0).
const fn mul_mod_p(mut a: u32, mut b: u32) -> u32 {
    let mut p = 0;
    while a != 0 {
        if a & (1 << 31) != 0 {
            p ^= b;
        }
        a <<= 1;
        b = if b & 1 != 0 {
            (b >> 1) ^ CASTAGNOLI_POLY
        } else {
            b >> 1
        };
    }
    p
}

/// `X2N[k]` is x^(2^k) modulo the polynomial; enough powers for any 64-bit length in bytes.
static X2N: [u32; 67] = {
    let mut t = [0u32; 67];
    let mut p = 1 << 30; // x^1
    let mut k = 0;
    while k < t.len() {
        t[k] = p;
        p = mul_mod_p(p, p);
        k += 1;
    }
    t
};

/// CRC-32C of `a ‖ b` from the CRC-32C of `a`, that of `b`, and `b`'s length (zlib's
/// `crc32_combine`): `a`'s CRC moved past `len_b` zero bytes, plus `b`'s.
fn crc32c_combine(crc_a: u32, crc_b: u32, len_b: u64) -> u32 {
    let mut shift = 1 << 31; // x^0
    let mut n = len_b;
    let mut k = 3; // x^(8·len_b): bytes are 8 bits
    while n != 0 {
        if n & 1 != 0 {
            shift = mul_mod_p(X2N[k], shift);
        }
        n >>= 1;
        k += 1;
    }
    mul_mod_p(shift, crc_a) ^ crc_b
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

/// The page size bbolt reads a database with: meta page 0's when it is valid, else 4096.
fn page_size_for(meta0: &Result<Meta, MetaFault>) -> u32 {
    match meta0 {
        Ok(m) => m.page_size,
        Err(_) => DEFAULT_PAGE_SIZE,
    }
}

struct Source<'a, R> {
    r: &'a mut R,
}

impl<R: Read + Seek> Source<'_, R> {
    /// Reads `buf.len()` bytes at `offset`, which the caller has bounded by the data's length.
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        self.r.seek(SeekFrom::Start(offset))?;
        self.r.read_exact(buf)
    }

    /// The meta fields of the page at `offset`, which `select_meta` has bounded by the data's
    /// length.
    fn meta_area(&mut self, offset: u64) -> Result<Option<[u8; META_LEN]>, BboltError> {
        let mut m = [0u8; META_LEN];
        self.read_at(offset + PAGE_HEADER, &mut m)?;
        Ok(Some(m))
    }
}

/// Picks the meta page as bbolt does: the page size comes from meta page 0 when it is valid (else
/// 4096), meta page 1 sits one page in, and of the valid ones the higher txid wins (page 0 on a
/// tie). `area(offset)` gives the 64 meta bytes of the page at `offset`, asked only when they lie
/// within the `len` bytes of the data (`None`: they did not arrive).
fn select_meta(
    len: u64,
    mut area: impl FnMut(u64) -> Result<Option<[u8; META_LEN]>, BboltError>,
) -> Result<Meta, BboltError> {
    let mut meta_at = |offset: u64| -> Result<Result<Meta, MetaFault>, BboltError> {
        if offset + PAGE_HEADER + META_LEN as u64 > len {
            return Ok(Err(MetaFault::Missing));
        }
        Ok(match area(offset)? {
            Some(m) => parse_meta(&m),
            None => Err(MetaFault::Missing),
        })
    };
    let meta0 = meta_at(0)?;
    let page_size = page_size_for(&meta0);
    if !(MIN_PAGE_SIZE..=MAX_PAGE_SIZE).contains(&page_size) {
        return Err(BboltError::UnsupportedPageSize { page_size });
    }
    if len < 2 * u64::from(page_size) {
        return Err(BboltError::TooSmall { len });
    }
    let meta1 = meta_at(u64::from(page_size))?.and_then(|m| {
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
struct Page<'a> {
    /// Where it was read (for an inline page: the page holding the bucket).
    pgid: u64,
    inline: bool,
    flags: u16,
    count: u16,
    overflow: u32,
    /// File offset of the page (unused for pages held whole).
    offset: u64,
    /// Bytes covered by the page, header included.
    span: u64,
    /// The page from its start: all of it when `whole`, else at least its header and elements.
    mem: Cow<'a, [u8]>,
    whole: bool,
}

impl<'a> Page<'a> {
    /// A page held whole in memory; `mem` holds at least its 16-byte header.
    fn from_bytes(pgid: u64, inline: bool, mem: Cow<'a, [u8]>) -> Page<'a> {
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

/// Where the parts of a page that are not held in memory are read from.
trait Fetch {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()>;
}

impl<R: Read + Seek> Fetch for Source<'_, R> {
    fn read_at(&mut self, offset: u64, buf: &mut [u8]) -> io::Result<()> {
        Source::read_at(self, offset, buf)
    }
}

/// For pages held whole in memory: nothing is ever fetched.
struct Resident;

impl Fetch for Resident {
    fn read_at(&mut self, _offset: u64, _buf: &mut [u8]) -> io::Result<()> {
        Err(io::Error::other("bbolt page not held in memory"))
    }
}

/// Streams `len` bytes at page-relative offset `at` (already bounds-checked) to `f`.
fn stream_range<F: Fetch>(
    fetch: &mut F,
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
        fetch.read_at(page.offset + at + done, &mut buf[..n])?;
        f(&buf[..n]);
        done += n as u64;
    }
    Ok(())
}

/// Reads a short field (a key, a bucket value) into memory; the caller bounds `len`.
fn read_range<F: Fetch>(
    fetch: &mut F,
    page: &Page,
    at: u64,
    len: u64,
) -> Result<Vec<u8>, BboltError> {
    let mut out = Vec::with_capacity(len as usize);
    stream_range(fetch, page, at, len, |b| out.extend_from_slice(b))?;
    Ok(out)
}

/// What a page is read as.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Want {
    /// A branch or leaf page of a bucket's tree.
    Tree,
    /// The freelist.
    Freelist,
}

/// What the walk needs of one page: its header, and a digest of its contents.
struct PageSum {
    body: Body,
    overflow: u32,
    flags: u16,
}

/// Kinds of [`SUMMARY_RECORD`]s (byte 0).
const RECORD_OPAQUE: u8 = 0;
const RECORD_MISMATCH: u8 = 1;
const RECORD_PLAIN: u8 = 2;
/// The summary is held in memory.
const RECORD_HELD: u8 = 3;

impl PageSum {
    /// The summary as a record: kind, flags, overflow, then the body's fields; None when the
    /// body does not fit one.
    fn record(&self) -> Option<[u8; SUMMARY_RECORD]> {
        let mut r = [0u8; SUMMARY_RECORD];
        r[1..3].copy_from_slice(&self.flags.to_le_bytes());
        r[3..7].copy_from_slice(&self.overflow.to_le_bytes());
        match self.body {
            Body::Opaque => r[0] = RECORD_OPAQUE,
            Body::Mismatch(found) => {
                r[0] = RECORD_MISMATCH;
                r[7..15].copy_from_slice(&found.to_le_bytes());
            }
            Body::Plain(p) => {
                r[0] = RECORD_PLAIN;
                r[7..15].copy_from_slice(&p.last_rev.to_le_bytes());
                r[15..19].copy_from_slice(&p.len.to_le_bytes());
                r[19..23].copy_from_slice(&p.crc.to_le_bytes());
                r[23..25].copy_from_slice(&p.count.to_le_bytes());
                r[25] = p.short;
            }
            _ => return None,
        }
        Some(r)
    }

    /// The record of a summary held in memory.
    fn held_record() -> [u8; SUMMARY_RECORD] {
        let mut r = [0u8; SUMMARY_RECORD];
        r[0] = RECORD_HELD;
        r
    }

    /// The summary a record holds; None for a held one, an error for one that is damaged.
    fn from_record(r: &[u8; SUMMARY_RECORD]) -> Result<Option<PageSum>, BboltError> {
        let body = match r[0] {
            RECORD_HELD => return Ok(None),
            RECORD_OPAQUE => Body::Opaque,
            RECORD_MISMATCH => Body::Mismatch(le64(r, 7)),
            RECORD_PLAIN => Body::Plain(PlainLeaf {
                last_rev: le64(r, 7),
                len: le32(r, 15),
                crc: le32(r, 19),
                count: u16::from_le_bytes([r[23], r[24]]),
                short: r[25],
            }),
            kind => {
                return Err(BboltError::Io(io::Error::new(
                    io::ErrorKind::InvalidData,
                    format!("a page summary read back is damaged (kind {kind})"),
                )))
            }
        };
        Ok(Some(PageSum {
            body,
            flags: u16::from_le_bytes([r[1], r[2]]),
            overflow: le32(r, 3),
        }))
    }
}

/// A page's contents, digested.
enum Body {
    /// Nothing the walk can use: a meta page, a page of a type not asked for, or a page the
    /// stream did not digest (above the high-water mark).
    Opaque,
    /// The header carries this page id instead.
    Mismatch(u64),
    /// A branch page's children, in key order.
    Branch(Box<[u64]>),
    /// A leaf page of plain entries only, held compactly (most pages are this).
    Plain(PlainLeaf),
    /// Any other leaf page.
    Leaf(Box<LeafSum>),
    /// The page ids a freelist page lists.
    Freelist(Box<[u64]>),
    /// Damage found in the page, reported when the walk reaches it.
    Broken(Box<BboltError>),
    /// An overflowing page whose end has not arrived (yet).
    Pending,
    /// A page the stream did not hold, and why.
    Refused(&'static str),
}

/// A [`LeafSum`] of plain entries only (at most one run), compact: the fields of a
/// [`SUMMARY_RECORD`] of kind plain, in its order.
#[derive(Clone, Copy)]
struct PlainLeaf {
    /// Main revision in the last key.
    last_rev: u64,
    /// The page's one run of entries: the length and CRC-32C of its keys and values.
    len: u32,
    crc: u32,
    /// Elements in the page (all in the run).
    count: u16,
    /// Length + 1 of a key too short to hold a revision, 0 when there is none.
    short: u8,
}

/// A leaf page's entries, digested for the walk: runs of plain entries and bucket entries, in
/// key order.
#[derive(Default)]
struct LeafSum {
    /// Elements in the page.
    count: u16,
    /// Main revision in the last key (its first 8 bytes, big-endian).
    last_rev: u64,
    /// The first key too short to hold a revision: the segment it is in, and its length.
    short: Option<(usize, u32)>,
    segs: Vec<Seg>,
    /// Damage found at the element after the last segment's.
    broken: Option<BboltError>,
}

enum Seg {
    /// Consecutive plain entries: CRC-32C of their keys and values, their length, how many.
    Run {
        crc: u32,
        len: u64,
        count: u32,
        /// The first key, kept (outside compact pages) for the error if the walk finds this run
        /// among the top-level buckets.
        first: Option<Name>,
    },
    /// An entry that is a bucket.
    Bucket(Box<BucketSum>),
}

/// A key: its CRC-32C and length, and its bytes if it is no longer than bbolt allows.
struct Name {
    crc: u32,
    len: u64,
    bytes: Option<Box<[u8]>>,
}

struct BucketSum {
    name: Name,
    entry: BucketEntry,
}

/// Where a bucket entry's contents are.
struct BucketEntry {
    /// The element's index in its page.
    index: u16,
    /// The value's length.
    vsize: u64,
    value: BucketValue,
}

enum BucketValue {
    /// Too short for a bucket header.
    Short,
    /// A bucket in its own pages, rooted here.
    Root(u64),
    /// An inline bucket: its page, digested, or what is wrong with it.
    Inline(Result<Box<LeafSum>, Box<BboltError>>),
    /// Inside an inline bucket, where neither etcd nor bbolt's check look.
    NotRead,
}

/// Turns a structural error into a digest the walk reports when it gets there; read errors stay
/// errors.
fn broken(r: Result<Body, BboltError>) -> Result<Body, BboltError> {
    match r {
        Err(BboltError::Io(e)) => Err(BboltError::Io(e)),
        Err(e) => Ok(Body::Broken(Box::new(e))),
        ok => ok,
    }
}

/// Digests a page read as `want`.
fn summarize<F: Fetch>(
    fetch: &mut F,
    page: &Page,
    want: Want,
    page_size: u64,
) -> Result<Body, BboltError> {
    let is = |flag| page.flags & flag != 0;
    broken(match want {
        Want::Freelist if is(FREELIST_PAGE) => {
            freelist_ids(fetch, page).map(|ids| Body::Freelist(ids.into()))
        }
        // bbolt's check would take it for a branch and its cursor for a leaf.
        Want::Tree if is(BRANCH_PAGE) && is(LEAF_PAGE) => Ok(Body::Opaque),
        Want::Tree if is(BRANCH_PAGE) => branch_children(page).map(Body::Branch),
        Want::Tree if is(LEAF_PAGE) => {
            summarize_leaf(fetch, page, page_size).map(LeafSum::into_body)
        }
        _ => Ok(Body::Opaque),
    })
}

/// A branch page's children, in key order.
fn branch_children(page: &Page) -> Result<Box<[u64]>, BboltError> {
    page.check_elements()?;
    if page.count == 0 {
        return Err(BboltError::EmptyBranch { pgid: page.pgid });
    }
    Ok((0..page.count).map(|i| page.branch_child(i)).collect())
}

/// Digests a page held whole in `bytes` (its full span).
fn summarize_resident(pgid: u64, bytes: &[u8], want: Want, page_size: u64) -> Body {
    let page = Page::from_bytes(pgid, false, Cow::Borrowed(bytes));
    summarize(&mut Resident, &page, want, page_size).unwrap_or_else(|e| Body::Broken(Box::new(e)))
}

/// The page ids a freelist page lists.
fn freelist_ids<F: Fetch>(fetch: &mut F, page: &Page) -> Result<Vec<u64>, BboltError> {
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
    // Bounded by the page's span.
    let mut ids = Vec::with_capacity(count as usize);
    stream_range(fetch, page, start, count * 8, |b| {
        ids.extend(b.chunks_exact(8).map(|c| le64(c, 0)))
    })?;
    Ok(ids)
}

/// A run of plain entries being digested.
struct RunDigest {
    crc: Crc32c,
    len: u64,
    count: u32,
    /// Offset and length of its first key.
    first: (u64, u64),
}

/// Digests a leaf page's entries in order; damage stops the digest where it is found (the walk
/// reports it after the entries before it, as it would have met them). Read errors are errors.
fn summarize_leaf<F: Fetch>(
    fetch: &mut F,
    page: &Page,
    page_size: u64,
) -> Result<LeafSum, BboltError> {
    let mut sum = LeafSum {
        count: page.count,
        ..LeafSum::default()
    };
    if let Err(e) = page.check_elements() {
        sum.broken = Some(e);
        return Ok(sum);
    }
    // bbolt packs keys and values after the elements, each once: more than fits means they
    // overlap, and hashing them would cost more than reading the page.
    let room = page.span - PAGE_HEADER - ELEMENT * u64::from(page.count);
    let mut used = 0u64;
    let mut run: Option<RunDigest> = None;
    let mut firsts = Vec::new();
    let mut last = None;
    let mut flush = |run: &mut Option<RunDigest>, segs: &mut Vec<Seg>| {
        if let Some(r) = run.take() {
            firsts.push((segs.len(), r.first));
            segs.push(Seg::Run {
                crc: r.crc.finalize(),
                len: r.len,
                count: r.count,
                first: None,
            });
        }
    };
    for i in 0..page.count {
        let leaf = match page.leaf(i) {
            Ok(leaf) => leaf,
            Err(e) => {
                sum.broken = Some(e);
                break;
            }
        };
        used += leaf.ksize + leaf.vsize;
        if used > room {
            sum.broken = Some(BboltError::OverlappingEntries {
                pgid: page.pgid,
                inline: page.inline,
                index: u64::from(i),
            });
            break;
        }
        if leaf.bucket {
            flush(&mut run, &mut sum.segs);
        }
        if leaf.ksize < 17 && sum.short.is_none() {
            sum.short = Some((sum.segs.len(), leaf.ksize as u32));
        }
        if leaf.bucket {
            let bucket = summarize_bucket(fetch, page, i, &leaf, page_size)?;
            sum.segs.push(Seg::Bucket(Box::new(bucket)));
        } else {
            let r = run.get_or_insert_with(|| RunDigest {
                crc: Crc32c::new(),
                len: 0,
                count: 0,
                first: (leaf.key, leaf.ksize),
            });
            stream_range(fetch, page, leaf.key, leaf.ksize + leaf.vsize, |b| {
                r.crc.update(b)
            })?;
            r.len += leaf.ksize + leaf.vsize;
            r.count += 1;
        }
        last = Some(leaf);
    }
    flush(&mut run, &mut sum.segs);
    if let Some(leaf) = last.filter(|l| l.ksize >= 8) {
        sum.last_rev = be64(&read_range(fetch, page, leaf.key, 8)?);
    }
    if !sum.is_plain() {
        // Keep the first key of each run, for the error should the run turn out to be among
        // the top-level buckets.
        for (at, (key, ksize)) in firsts {
            let name = read_name(fetch, page, key, ksize)?;
            if let Some(Seg::Run { first, .. }) = sum.segs.get_mut(at) {
                *first = Some(name);
            }
        }
    }
    Ok(sum)
}

/// Reads a key: its CRC, and its bytes when bbolt allows a key that long.
fn read_name<F: Fetch>(fetch: &mut F, page: &Page, at: u64, len: u64) -> Result<Name, BboltError> {
    if len <= u64::from(MAX_KEY_SIZE) {
        let bytes = read_range(fetch, page, at, len)?;
        Ok(Name {
            crc: crc32c(&bytes),
            len,
            bytes: Some(bytes.into()),
        })
    } else {
        let mut crc = Crc32c::new();
        stream_range(fetch, page, at, len, |b| crc.update(b))?;
        Ok(Name {
            crc: crc.finalize(),
            len,
            bytes: None,
        })
    }
}

/// Digests the bucket entry in element `index` of `page`: its name, and unless `page` is itself
/// an inline bucket's, where its contents are (an inline bucket is digested right away).
fn summarize_bucket<F: Fetch>(
    fetch: &mut F,
    page: &Page,
    index: u16,
    leaf: &Leaf,
    page_size: u64,
) -> Result<BucketSum, BboltError> {
    let name = read_name(fetch, page, leaf.key, leaf.ksize)?;
    let value = if page.inline {
        BucketValue::NotRead
    } else if leaf.vsize < BUCKET_HEADER as u64 {
        BucketValue::Short
    } else {
        let header = read_range(fetch, page, leaf.value, BUCKET_HEADER as u64)?;
        match le64(&header, 0) {
            0 => BucketValue::Inline(match inline_page(fetch, page, index, leaf, page_size) {
                Err(BboltError::Io(e)) => return Err(BboltError::Io(e)),
                r => r.map_err(Box::new),
            }),
            root => BucketValue::Root(root),
        }
    };
    Ok(BucketSum {
        name,
        entry: BucketEntry {
            index,
            vsize: leaf.vsize,
            value,
        },
    })
}

/// Reads and digests an inline bucket: the rest of the value is a leaf page (bbolt keeps it under
/// a quarter of a page).
fn inline_page<F: Fetch>(
    fetch: &mut F,
    page: &Page,
    index: u16,
    leaf: &Leaf,
    page_size: u64,
) -> Result<Box<LeafSum>, BboltError> {
    let inline_len = leaf.vsize - BUCKET_HEADER as u64;
    if inline_len < PAGE_HEADER || inline_len > page_size {
        return Err(BboltError::BadBucketValue {
            pgid: page.pgid,
            inline: page.inline,
            index: u64::from(index),
            len: leaf.vsize,
        });
    }
    let mem = read_range(fetch, page, leaf.value + BUCKET_HEADER as u64, inline_len)?;
    let inline = Page::from_bytes(page.pgid, true, Cow::Owned(mem));
    if inline.flags & LEAF_PAGE == 0 {
        return Err(BboltError::UnexpectedPageType {
            pgid: page.pgid,
            inline: true,
            flags: inline.flags,
            expected: "leaf",
        });
    }
    Ok(Box::new(summarize_leaf(&mut Resident, &inline, page_size)?))
}

impl LeafSum {
    /// Plain entries only (at most one run), undamaged.
    fn is_plain(&self) -> bool {
        self.broken.is_none()
            && match self.segs.as_slice() {
                [] => true,
                [Seg::Run { len, .. }] => *len <= u64::from(u32::MAX),
                _ => false,
            }
    }

    /// The compact form when it fits.
    fn into_body(self) -> Body {
        if !self.is_plain() {
            return Body::Leaf(Box::new(self));
        }
        let (crc, len) = match self.segs.first() {
            Some(Seg::Run { crc, len, .. }) => (*crc, *len as u32),
            _ => (0, 0),
        };
        Body::Plain(PlainLeaf {
            last_rev: self.last_rev,
            len,
            crc,
            count: self.count,
            short: self.short.map_or(0, |(_, len)| len as u8 + 1),
        })
    }
}

impl From<PlainLeaf> for LeafSum {
    /// Back from the compact form.
    fn from(p: PlainLeaf) -> LeafSum {
        LeafSum {
            count: p.count,
            last_rev: p.last_rev,
            short: (p.short > 0).then(|| (0, u32::from(p.short) - 1)),
            segs: if p.count > 0 {
                vec![Seg::Run {
                    crc: p.crc,
                    len: u64::from(p.len),
                    count: u32::from(p.count),
                    first: None,
                }]
            } else {
                Vec::new()
            },
            broken: None,
        }
    }
}

/// Where the walk gets its pages from.
trait Pages {
    /// Page `pgid` read as `want`, once the walk has checked it lies within the data. Fails if
    /// its header names another page or its overflow runs past the data.
    fn load(&mut self, pgid: u64, want: Want) -> Result<PageSum, BboltError>;
}

/// Checks the header of page `pgid` of `file_pages`: its id, and that its overflow pages are
/// within the data.
fn check_header(pgid: u64, found: u64, overflow: u32, file_pages: u64) -> Result<(), BboltError> {
    if found != pgid {
        return Err(BboltError::PageIdMismatch { pgid, found });
    }
    if u64::from(overflow) + 1 > file_pages - pgid {
        return Err(BboltError::PageOutOfRange {
            pgid,
            overflow,
            pages: file_pages,
        });
    }
    Ok(())
}

/// [`inspect`]'s pages: read from the file as the walk reaches them.
struct FilePages<'a, R> {
    src: Source<'a, R>,
    page_size: u64,
    file_pages: u64,
}

impl<R: Read + Seek> Pages for FilePages<'_, R> {
    fn load(&mut self, pgid: u64, want: Want) -> Result<PageSum, BboltError> {
        let page = self.read(pgid)?;
        let body = summarize(&mut self.src, &page, want, self.page_size)?;
        Ok(PageSum {
            body,
            overflow: page.overflow,
            flags: page.flags,
        })
    }
}

impl<R: Read + Seek> FilePages<'_, R> {
    /// Reads page `pgid` from the file: its whole span when small, else its header and elements.
    fn read(&mut self, pgid: u64) -> Result<Page<'static>, BboltError> {
        let offset = pgid * self.page_size;
        let mut mem = vec![0u8; self.page_size as usize];
        self.src.read_at(offset, &mut mem)?;
        let overflow = le32(&mem, 12);
        check_header(pgid, le64(&mem, 0), overflow, self.file_pages)?;
        let span = (u64::from(overflow) + 1) * self.page_size;
        let count = u64::from(u16::from_le_bytes([mem[10], mem[11]]));
        let want = if span <= WHOLE_PAGE_MAX {
            span
        } else {
            // Elements only (at most 64 Ki × 16 bytes); keys and values are read on demand.
            span.min(PAGE_HEADER + ELEMENT * count).max(self.page_size)
        };
        let have = mem.len();
        if want as usize > have {
            mem.resize(want as usize, 0);
            self.src.read_at(offset + have as u64, &mut mem[have..])?;
        }
        let mut page = Page::from_bytes(pgid, false, Cow::Owned(mem));
        page.offset = offset;
        page.span = span;
        page.whole = want == span;
        Ok(page)
    }
}

/// [`StreamInspector`]'s pages: the summaries it made, each taken once.
struct StreamPages<'a, S> {
    slots: &'a mut [PageSum],
    /// Summaries of the pages after `slots`, and how many.
    store: &'a mut S,
    stored: u64,
    held: &'a mut [(u64, PageSum)],
    file_pages: u64,
}

impl<S: SummaryStore> Pages for StreamPages<'_, S> {
    fn load(&mut self, pgid: u64, _want: Want) -> Result<PageSum, BboltError> {
        let out_of_range = BboltError::PageOutOfRange {
            pgid,
            overflow: 0,
            pages: self.file_pages,
        };
        let in_memory = self.slots.len() as u64;
        let slot = match usize::try_from(pgid).ok().filter(|&i| i < self.slots.len()) {
            Some(i) => &mut self.slots[i],
            None if pgid - in_memory < self.stored => {
                let mut record = [0u8; SUMMARY_RECORD];
                self.store.get(pgid - in_memory, &mut record)?;
                match PageSum::from_record(&record)? {
                    // A record is read afresh on each visit: the walk refuses a second one
                    // when it claims the page, as below.
                    Some(sum) => {
                        let found = match sum.body {
                            Body::Mismatch(found) => found,
                            _ => pgid,
                        };
                        check_header(pgid, found, sum.overflow, self.file_pages)?;
                        return Ok(sum);
                    }
                    None => held_mut(self.held, pgid).ok_or(out_of_range)?,
                }
            }
            // The walk asks only for pages within the data, which all arrived.
            None => return Err(out_of_range),
        };
        let found = match slot.body {
            Body::Mismatch(found) => found,
            _ => pgid,
        };
        check_header(pgid, found, slot.overflow, self.file_pages)?;
        // Each page is walked once (a second visit fails its claim); its digest moves out.
        Ok(PageSum {
            body: std::mem::replace(&mut slot.body, Body::Opaque),
            overflow: slot.overflow,
            flags: slot.flags,
        })
    }
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

/// Walks the tree from the meta page's root in key order, checking it as bbolt's `Tx.Check`
/// does and computing etcd's status from the pages' digests.
struct Walker<P> {
    pages: P,
    file_pages: u64,
    high_water: u64,
    reachable: Bitmap,
    /// Pages in the stored freelist, when there is one.
    freed: Option<Bitmap>,
    /// CRC-32C of everything hashed so far.
    crc: u32,
    total_key: u64,
    revision: i64,
    prev_top: Option<Box<[u8]>>,
}

impl<P: Pages> Walker<P> {
    /// Page `pgid`, checked against the end of the data and its header.
    fn load(&mut self, pgid: u64, want: Want) -> Result<PageSum, BboltError> {
        if pgid >= self.file_pages {
            return Err(BboltError::PageOutOfRange {
                pgid,
                overflow: 0,
                pages: self.file_pages,
            });
        }
        self.pages.load(pgid, want)
    }

    /// Marks page `pgid` and its overflow pages as in use, as bbolt's `Tx.Check` does.
    fn claim(&mut self, pgid: u64, overflow: u32) -> Result<(), BboltError> {
        if pgid > self.high_water {
            // bbolt tests `>`, so a page at the high-water mark itself passes.
            return Err(BboltError::PageAboveHighWater {
                pgid,
                high_water: self.high_water,
            });
        }
        for p in pgid..=pgid + u64::from(overflow) {
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
        let page = self.load(pgid, Want::Freelist)?;
        let wrong_type = BboltError::UnexpectedPageType {
            pgid,
            inline: false,
            flags: page.flags,
            expected: "freelist",
        };
        if page.flags & FREELIST_PAGE == 0 {
            return Err(wrong_type);
        }
        for p in pgid..=pgid + u64::from(page.overflow) {
            self.reachable.set(p);
        }
        let ids = match page.body {
            Body::Freelist(ids) => ids,
            body => return Err(body_error(pgid, body, wrong_type)),
        };
        // Ids past the end of the data cannot be in use; like bbolt, ignore them.
        let mut freed = Bitmap::new(self.file_pages);
        for &id in ids.iter().filter(|&&id| id < self.file_pages) {
            if freed.get(id) {
                return Err(BboltError::DoubleFree { pgid: id });
            }
            freed.set(id);
        }
        self.freed = Some(freed);
        Ok(())
    }

    /// Walks the tree rooted at page `pgid`, depth `depth` below the root bucket.
    fn tree(&mut self, pgid: u64, depth: usize, role: Role) -> Result<(), BboltError> {
        if depth > MAX_DEPTH {
            return Err(BboltError::TooDeep { pgid });
        }
        let page = self.load(pgid, Want::Tree)?;
        self.claim(pgid, page.overflow)?;
        match page.body {
            Body::Branch(children) => {
                for &child in children.iter() {
                    self.tree(child, depth + 1, role)?;
                }
                Ok(())
            }
            Body::Plain(p) => self.leaf(pgid, false, p.into(), depth, role, true),
            Body::Leaf(sum) => self.leaf(pgid, false, *sum, depth, role, true),
            body => Err(body_error(
                pgid,
                body,
                BboltError::UnexpectedPageType {
                    pgid,
                    inline: false,
                    flags: page.flags,
                    expected: "branch or leaf",
                },
            )),
        }
    }

    /// Visits the entries of a leaf page in order. `check_nested`: walk nested buckets (bbolt's
    /// `Tx.Check` skips the contents of inline buckets).
    fn leaf(
        &mut self,
        pgid: u64,
        inline: bool,
        sum: LeafSum,
        depth: usize,
        role: Role,
        check_nested: bool,
    ) -> Result<(), BboltError> {
        for (i, seg) in sum.segs.into_iter().enumerate() {
            match role {
                Role::Root => {
                    let (name, entry) = match seg {
                        Seg::Bucket(b) => (Some(b.name), Some(b.entry)),
                        Seg::Run { first, .. } => (first, None),
                    };
                    let Some(name) = name else {
                        // A compact page keeps no key.
                        return Err(BboltError::NotABucket {
                            name: format!("(the first key of page {pgid})"),
                        });
                    };
                    let Some(bytes) = name.bytes else {
                        return Err(BboltError::KeyTooLarge {
                            pgid,
                            len: name.len as u32,
                        });
                    };
                    let lossy = || String::from_utf8_lossy(&bytes).into_owned();
                    if self.prev_top.as_ref().is_some_and(|p| *p >= bytes) {
                        return Err(BboltError::BucketsOutOfOrder { name: lossy() });
                    }
                    let Some(entry) = entry else {
                        return Err(BboltError::NotABucket { name: lossy() });
                    };
                    self.crc = crc32c_combine(self.crc, name.crc, name.len);
                    let is_key = &*bytes == b"key";
                    self.prev_top = Some(bytes);
                    let role = Role::Top { is_key };
                    self.bucket(pgid, inline, entry, depth + 1, role, true)?;
                }
                Role::Top { is_key } => {
                    if let Some((_, len)) = sum.short.filter(|&(at, _)| is_key && at == i) {
                        return Err(BboltError::BadRevisionKey {
                            len: u64::from(len),
                        });
                    }
                    match seg {
                        Seg::Run {
                            crc, len, count, ..
                        } => {
                            self.crc = crc32c_combine(self.crc, crc, len);
                            self.total_key += u64::from(count);
                        }
                        Seg::Bucket(b) => {
                            // etcd's ForEach sees a nested bucket with a nil value.
                            self.crc = crc32c_combine(self.crc, b.name.crc, b.name.len);
                            if check_nested {
                                self.bucket(pgid, inline, b.entry, depth + 1, Role::Nested, false)?;
                            }
                            self.total_key += 1;
                        }
                    }
                }
                Role::Nested => {
                    if let (Seg::Bucket(b), true) = (seg, check_nested) {
                        self.bucket(pgid, inline, b.entry, depth + 1, role, false)?;
                    }
                }
            }
        }
        if let Some(e) = sum.broken {
            return Err(e);
        }
        if role == (Role::Top { is_key: true }) && sum.count > 0 {
            self.revision = sum.last_rev as i64;
        }
        Ok(())
    }

    /// Opens the bucket stored in element `index` of page `pgid` and walks it. `walk_inline`:
    /// visit an inline bucket's entries (needed for hashing; bbolt's check does not look inside).
    fn bucket(
        &mut self,
        pgid: u64,
        inline: bool,
        entry: BucketEntry,
        depth: usize,
        role: Role,
        walk_inline: bool,
    ) -> Result<(), BboltError> {
        match entry.value {
            BucketValue::Short => Err(BboltError::BadBucketValue {
                pgid,
                inline,
                index: u64::from(entry.index),
                len: entry.vsize,
            }),
            BucketValue::Root(root) => self.tree(root, depth, role),
            BucketValue::Inline(page) if walk_inline => {
                if depth > MAX_DEPTH {
                    return Err(BboltError::TooDeep { pgid });
                }
                let sum = page.map_err(|e| *e)?;
                self.leaf(pgid, true, *sum, depth, role, false)
            }
            BucketValue::Inline(_) | BucketValue::NotRead => Ok(()),
        }
    }
}

/// The error for a page whose digest is not what the walk asked for: the damage or refusal it
/// records, else `wrong_type`.
fn body_error(pgid: u64, body: Body, wrong_type: BboltError) -> BboltError {
    match body {
        Body::Broken(e) => *e,
        Body::Refused(why) => BboltError::NotStreamable { pgid, why },
        _ => wrong_type,
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

        let mut h = Crc32c::new();
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
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
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
        for piece in PIECES {
            // Also from a page summary read back from a record.
            assert!(matches!(
                stream(&bytes, piece),
                Err(BboltError::BadRevisionKey { len: 5 })
            ));
        }

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

    /// What the stream inspector says of `bytes` fed in pieces of `piece` bytes; the same
    /// whether it holds every page's summary or hands those after the first `piece % 5` pages
    /// to a store of records.
    fn stream(bytes: &[u8], piece: usize) -> Result<SnapshotStatus, BboltError> {
        let mut s = StreamInspector::new();
        let mut stored = StreamInspector::with_store(Vec::<u8>::new(), (piece % 5) as u64);
        for c in bytes.chunks(piece.max(1)) {
            s.update(c);
            stored.update(c);
        }
        assert_eq!(s.received(), bytes.len() as u64);
        let (a, b) = (s.finish(), stored.finish());
        assert_eq!(format!("{a:?}"), format!("{b:?}"));
        a
    }

    /// What `inspect` says of a file of `bytes`, its trailer cut off by etcd's rule, as the
    /// stream does.
    fn inspect_db(bytes: &[u8]) -> Result<SnapshotStatus, BboltError> {
        inspect(&mut io::Cursor::new(bytes), db_len(bytes.len() as u64))
    }

    /// Both give the same status, or the same error.
    fn assert_same(
        stream: &Result<SnapshotStatus, BboltError>,
        inspect: &Result<SnapshotStatus, BboltError>,
    ) {
        match (stream, inspect) {
            (Ok(a), Ok(b)) => assert_eq!(a, b),
            (Err(a), Err(b)) => assert_eq!(format!("{a:?}"), format!("{b:?}")),
            _ => panic!("stream {stream:?}, inspect {inspect:?}"),
        }
    }

    const PIECES: [usize; 9] = [1, 7, 100, 511, 4095, 4096, 4097, 65537, usize::MAX];

    #[test]
    fn crc32c_combine_small_cases() {
        let data = b"the quick brown fox jumps over the lazy dog";
        for cut in 0..=data.len() {
            let (a, b) = data.split_at(cut);
            let (ca, cb) = (crc32c(a), crc32c(b));
            assert_eq!(crc32c_combine(ca, cb, b.len() as u64), crc32c(data));
        }
        assert_eq!(crc32c_combine(0, 0, 0), 0);
        assert_eq!(crc32c_combine(0x1234_5678, 0, 0), 0x1234_5678);
        // Long zero runs: the shift by 2^k bytes for large k.
        let zeros = vec![0u8; 1 << 20];
        let c = crc32c(b"x");
        let mut whole = Crc32c::new();
        whole.update(b"x");
        whole.update(&zeros);
        assert_eq!(
            crc32c_combine(c, crc32c(&zeros), zeros.len() as u64),
            whole.finalize()
        );
    }

    #[test]
    fn stream_matches_inspect_on_samples() {
        for freelist in [false, true] {
            let (bytes, hash, keys) = sample(freelist);
            let mut with_trailer = bytes.clone();
            with_trailer.extend_from_slice(&Sha256::digest(&bytes));
            for file in [&bytes, &with_trailer] {
                let want = inspect_bytes(file).unwrap();
                assert_eq!((want.hash, want.total_key, want.revision), (hash, keys, 4));
                for piece in PIECES {
                    assert_eq!(stream(file, piece).unwrap(), want, "piece {piece}");
                }
            }
        }
    }

    #[test]
    fn stream_of_an_inline_key_bucket() {
        // A fresh etcd keeps small buckets inline, "key" among them.
        let mut db = Db::new(4096);
        let root = db.leaf(&[
            (
                b"key".to_vec(),
                Val::Inline(vec![
                    (rev_key(2, 0), b"a".to_vec()),
                    (rev_key(7, 3), b"b".to_vec()),
                ]),
            ),
            (b"lease".to_vec(), Val::Inline(vec![])),
        ]);
        let bytes = db.finish(root, NO_FREELIST, 3);
        let want = inspect_bytes(&bytes).unwrap();
        assert_eq!((want.revision, want.total_key), (7, 2));
        for piece in PIECES {
            assert_eq!(stream(&bytes, piece).unwrap(), want);
        }
    }

    /// A database whose free pages keep stale headers claiming overflow pages that are now in
    /// use, as bbolt leaves them when it reuses part of a freed large page: `stale` such headers
    /// in a row, each claiming the next 100 pages, then the live tree.
    fn stale_overflow(stale: usize) -> Vec<u8> {
        let mut db = Db::new(512);
        for _ in 0..stale {
            let id = db.next_id();
            // One page, with the header of a 101-page one.
            let mut p = page_bytes(512, id, LEAF_PAGE, 1, 0);
            p[12..16].copy_from_slice(&100u32.to_le_bytes());
            db.pages.push(p);
        }
        let big = vec![9u8; 3000];
        let k1 = db.leaf(&[plain(&rev_key(1, 0), &big)]);
        let k2 = db.leaf(&[plain(&rev_key(2, 0), b"x"), plain(&rev_key(3, 0), &big)]);
        let key_root = db.branch(&[(rev_key(1, 0), k1), (rev_key(2, 0), k2)]);
        let root = db.leaf(&[(b"key".to_vec(), Val::Bucket(key_root))]);
        // Room for the stale spans to end inside the file.
        for _ in 0..100 {
            let id = db.next_id();
            db.pages.push(page_bytes(512, id, LEAF_PAGE, 0, 0));
        }
        db.finish(root, NO_FREELIST, 5)
    }

    #[test]
    fn stream_skips_stale_overflow_headers() {
        let bytes = stale_overflow(3);
        let want = inspect_bytes(&bytes).unwrap();
        assert_eq!((want.revision, want.total_key), (3, 3));
        for piece in PIECES {
            assert_eq!(stream(&bytes, piece).unwrap(), want);
        }
    }

    #[test]
    fn completed_overflowing_pages_go_to_the_store() {
        // Two leaves with values spilling into overflow pages, past the pages held in memory:
        // once complete, their summaries are records in the store, not held.
        let bytes = stale_overflow(0);
        let want = inspect_bytes(&bytes).unwrap();
        let mut stored = StreamInspector::with_store(Vec::<u8>::new(), 2);
        stored.update(&bytes);
        assert!(stored.stored > 2, "{} pages stored", stored.stored);
        let pending_or_leaf = |s: &PageSum| matches!(s.body, Body::Pending | Body::Plain(_));
        assert!(
            !stored.held.iter().any(|(_, s)| pending_or_leaf(s)),
            "{} summaries held",
            stored.held.len()
        );
        assert_eq!(stored.finish().unwrap(), want);
    }

    #[test]
    fn stream_refuses_too_many_overlapping_pages() {
        // More stale spans open at once than the stream follows: the live pages after them are
        // not held, and the walk says so rather than guessing.
        let bytes = stale_overflow(MAX_OPEN_PAGES + 1);
        assert!(inspect_bytes(&bytes).is_ok());
        let err = stream(&bytes, 4096).unwrap_err();
        assert!(matches!(err, BboltError::NotStreamable { .. }), "{err}");
    }

    #[test]
    fn stream_cut_short_is_an_error() {
        let (bytes, _, _) = sample(true);
        let mut file = bytes.clone();
        file.extend_from_slice(&Sha256::digest(&bytes));
        for cut in [0, 1, 79, 80, 81, 4095, 4096, 8191, 8192, 8193, 12288] {
            assert!(stream(&bytes[..cut], 1000).is_err(), "cut at {cut}");
            assert_same(&stream(&bytes[..cut], 1000), &inspect_db(&bytes[..cut]));
        }
        assert!(matches!(
            stream(&bytes[..100], 7),
            Err(BboltError::TooSmall { len: 100 })
        ));
        // Every length short of the database, with or without what would be a trailer.
        for cut in (0..bytes.len()).step_by(509).chain([bytes.len() - 1]) {
            let r = stream(&file[..cut], 4096);
            assert!(r.is_err(), "cut at {cut}");
            assert_same(&r, &inspect_db(&file[..cut]));
        }
        assert!(matches!(
            stream(&bytes[..bytes.len() - 1], 4096),
            Err(BboltError::Truncated { .. })
        ));
        // The whole database, its trailer cut short: no trailer by etcd's rule, still fine.
        assert!(stream(&file[..file.len() - 1], 4096).is_ok());
    }

    #[test]
    fn stream_reports_damage_as_inspect_does() {
        let (bytes, _, _) = sample(true);
        let mut b = bytes.clone();
        b[16 + 50] ^= 0xff;
        assert_eq!(stream(&b, 333).unwrap().txid, 9);
        b[4096 + 16 + 48] ^= 0xff;
        assert!(matches!(stream(&b, 333), Err(BboltError::BadMeta { .. })));
        assert!(matches!(
            stream(&vec![0u8; 16384], 333),
            Err(BboltError::NotBbolt)
        ));
        let mut b = bytes.clone();
        b[16 + 8..16 + 12].copy_from_slice(&100u32.to_le_bytes());
        b[16 + 56..16 + 64].fill(0);
        assert!(matches!(
            stream(&b, 333),
            Err(BboltError::UnsupportedPageSize { page_size: 100 })
        ));
    }

    #[test]
    fn every_single_byte_flip_terminates() {
        let (bytes, _, _) = sample(true);
        // Flip bytes throughout the metas, the pages' headers and a few bodies.
        for at in (0..bytes.len()).step_by(7) {
            let mut b = bytes.clone();
            b[at] ^= 0x5a;
            let want = inspect_bytes(&b);
            assert_same(&stream(&b, 4096), &want);
            assert_same(&stream(&b, 1000), &want);
        }
    }

    proptest::proptest! {
        #[test]
        fn crc32c_combine_matches_concatenation(
            a in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
            b in proptest::collection::vec(proptest::num::u8::ANY, 0..3000),
        ) {
            let whole = [a.as_slice(), b.as_slice()].concat();
            proptest::prop_assert_eq!(
                crc32c_combine(crc32c(&a), crc32c(&b), b.len() as u64),
                crc32c(&whole)
            );
        }

        #[test]
        fn arbitrary_bytes_never_panic(data in proptest::collection::vec(proptest::num::u8::ANY, 0..20_000)) {
            let want = inspect_bytes(&data);
            assert_same(&stream(&data, 777), &inspect_db(&data));
            drop(want);
        }

        #[test]
        fn mutated_databases_never_panic(
            edits in proptest::collection::vec((0usize..40_000, proptest::num::u8::ANY), 1..8),
            piece in 1usize..20_000,
        ) {
            let (mut bytes, _, _) = sample(true);
            let n = bytes.len();
            for (at, v) in edits {
                bytes[at % n] = v;
            }
            assert_same(&stream(&bytes, piece), &inspect_bytes(&bytes));
        }

        #[test]
        fn stream_in_random_pieces(cuts in proptest::collection::vec(0usize..30_000, 0..40)) {
            let (bytes, _, _) = sample(true);
            let mut cuts: Vec<usize> = cuts.into_iter().map(|c| c % bytes.len()).collect();
            cuts.sort_unstable();
            let mut s = StreamInspector::new();
            let mut at = 0;
            for c in cuts.into_iter().chain([bytes.len()]) {
                s.update(&bytes[at..c]);
                at = c;
            }
            proptest::prop_assert_eq!(s.finish().unwrap(), inspect_bytes(&bytes).unwrap());
        }
    }
}
