//! The write pipeline: chunk → keyed hash → dedup → (batch small blobs) → zstd → pack → age →
//! store, with a fixed number of worker threads and a bounded queue, so memory stays bounded
//! whatever the input size: at most `2 × workers` queued jobs and [`packs_in_memory`] packs
//! (two on local storage, three on remote), counting the open one of each kind, sealed ones
//! waiting for an uploader and those being stored ([`Backend::parallel_writes`] at most). A
//! pack is encrypted as its frames are added (age's STREAM is incremental) into its sink
//! ([`crate::pack_sink`]): on local storage a staged temporary file ([`Backend::stage`]),
//! hashed as written, so a pack costs a 64 KiB buffer, not its size; on object stores memory,
//! where each is held once, as ciphertext.
//!
//! [`Backend::parallel_writes`]: crate::backend::Backend::parallel_writes
//! [`Backend::stage`]: crate::backend::Backend::stage

use crate::id_set::IdSet;
use crate::index::Index;
use crate::pack_sink::{PackSink, SealedPack};
use crate::repo::Repository;
use crate::{Error, Result};
use cairn_format::chunker::{ChunkPolicy, Chunker};
use cairn_format::envelope;
use cairn_format::frame::{Compression, FrameCompressor};
use cairn_format::index::{IndexPack, IndexRecord};
use cairn_format::pack::{PackKind, PackWriter};
use cairn_format::tree::Tree;
use cairn_format::{ChunkIdKey, Id};
use crossbeam_channel::{bounded, Receiver, Sender};
use std::borrow::Cow;
use std::collections::HashMap;
use std::io::{self, Read};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

/// Blobs smaller than this are compressed together with their neighbours.
pub const SMALL_BLOB: usize = 32 << 10;
/// A run of small blobs is closed into one frame once it reaches this size.
pub const FRAME_TARGET: usize = 256 << 10;
/// A batch's buffer: a frame's target and the small blob that may take it past it.
const BATCH_CAPACITY: usize = FRAME_TARGET + SMALL_BLOB;
/// Bytes of packs a save has at once on local storage (open, sealed and waiting, or being
/// written), counted in whole packs of the repository's pack size: two 16 MiB packs, one
/// filling while the other is committed (its fsync takes a fraction of the time to fill the
/// next one). They are temporary files there, not memory: the budget bounds how many exist.
pub const PACK_BYTES_IN_MEMORY: u64 = 32 << 20;
/// The same on remote storage, where an upload takes longer than filling a pack: three 16
/// MiB packs.
pub const REMOTE_PACK_BYTES_IN_MEMORY: u64 = 48 << 20;

/// Packs a save holds at once for packs of `pack_size` bytes: two or three (the data and the
/// tree packer can both be open; a third lets one fill while two are stored). In memory on
/// object stores; staged temporary files on local storage.
pub fn packs_in_memory(pack_size: u64, remote: bool) -> usize {
    let budget = if remote {
        REMOTE_PACK_BYTES_IN_MEMORY
    } else {
        PACK_BYTES_IN_MEMORY
    };
    (budget / pack_size.max(1)).clamp(2, 3) as usize
}
/// Index entries a save holds for stored packs before it writes them as an index object
/// (~64 bytes each in memory, ~57 encoded): a save of a large input writes one index object
/// per this many new blobs instead of one at the end, so its memory does not grow with it.
pub const INDEX_FLUSH_BLOBS: usize = 32 << 10;

/// A pack being filled: its frames go through age into its sink (a staged temporary file on
/// local storage, memory on object stores) as they are added.
struct OpenPack {
    writer: PackWriter<age::stream::StreamWriter<PackSink>>,
    /// The sink is a staged object: write failures are the storage's.
    staged: bool,
}

/// What a save added to the repository.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub struct SaveStats {
    /// New blobs.
    pub blobs_added: u64,
    /// Their plaintext bytes.
    pub raw_added: u64,
    /// Stored (encrypted pack) bytes written.
    pub stored_added: u64,
    /// Packs written.
    pub packs: u64,
}

struct Job {
    kind: PackKind,
    body: Body,
    blobs: Vec<(Id, u32, u32)>,
}

/// A frame's content: to be compressed, or as stored in another pack.
enum Body {
    Raw(Vec<u8>),
    Stored {
        how: Compression,
        bytes: Vec<u8>,
        raw_len: u32,
    },
}

#[derive(Default)]
struct Batch {
    raw: Vec<u8>,
    blobs: Vec<(Id, u32, u32)>,
}

/// A sealed pack on its way to the backend.
struct Upload {
    kind: PackKind,
    pack: SealedPack,
    blobs: Vec<cairn_format::pack::BlobEntry>,
}

struct Shared {
    repo: Arc<Repository>,
    uploads: Mutex<Option<Sender<Upload>>>,
    packers: [Mutex<Option<OpenPack>>; 2],
    /// One token per pack that may be held ([`packs_in_memory`]): taken to open a pack (a
    /// buffer, or a staged temporary file), given back once it is stored (or dropped).
    tokens: (Sender<()>, Receiver<()>),
    written: Mutex<Written>,
    /// Index entries held before they go out as an index object ([`INDEX_FLUSH_BLOBS`]).
    index_flush_blobs: usize,
    error: Mutex<Option<Error>>,
    failed: AtomicBool,
    stored: AtomicU64,
    /// Frame buffers the workers are done with, for the next batches: a save of many small
    /// blobs reuses a few buffers instead of allocating (and faulting in) one per frame.
    spare: (Sender<Vec<u8>>, Receiver<Vec<u8>>),
}

/// Packs stored and not yet in an index object, and the index objects written so far.
#[derive(Default)]
struct Written {
    packs: Vec<IndexPack>,
    /// Blob entries in `packs`.
    blobs: usize,
    /// Packs stored in all.
    count: u64,
    index_ids: Vec<Id>,
}

fn slot(kind: PackKind) -> usize {
    match kind {
        PackKind::Data => 0,
        PackKind::Tree => 1,
    }
}

impl Shared {
    fn fail(&self, e: Error) {
        let mut slot = self.error.lock().expect("error lock");
        if slot.is_none() {
            *slot = Some(e);
        }
        self.failed.store(true, Ordering::SeqCst);
    }

    /// Open a pack of `kind`, once fewer than [`packs_in_memory`] are held.
    fn open_pack(&self, kind: PackKind) -> Result<OpenPack> {
        self.tokens
            .1
            .recv()
            .map_err(|_| Error::Invalid("pack budget closed".into()))?;
        let capacity = self.repo.config().pack_size as usize + (2 << 20);
        let sink = match PackSink::open(self.repo.backend(), kind.dir(), capacity) {
            Ok(sink) => sink,
            Err(e) => {
                self.give_token();
                return Err(e);
            }
        };
        let staged = sink.is_staged();
        let failure = sink.failure();
        envelope::encrypting_writer(self.repo.pack_recipients(kind), sink)
            .map(|w| OpenPack {
                writer: PackWriter::new(kind, w),
                staged,
            })
            .map_err(|e| {
                self.give_token();
                // The header's write failed in storage: that error, not age's wrapping of it.
                let first = failure.and_then(|f| f.lock().ok().and_then(|mut f| f.take()));
                let e = first.map_or(e, |(kind, message)| io::Error::new(kind, message));
                self.write_error(staged, "starting the encryption of a pack", e)
            })
    }

    /// A pack's write failed: the storage's failure where it is staged (a full disk), else
    /// the encryption's.
    fn write_error(&self, staged: bool, what: &str, e: io::Error) -> Error {
        if staged {
            Error::pack_write(self.repo.backend(), e)
        } else {
            Error::Invalid(format!("{what}: {e}"))
        }
    }

    /// A held pack is gone (stored, or dropped after a failure).
    fn give_token(&self) {
        let _ = self.tokens.0.try_send(());
    }

    /// Seal a pack (trailer, last age segment, blake3 name) and hand it to the uploaders.
    fn write_pack(&self, pack: OpenPack) -> Result<()> {
        let kind = pack.writer.kind();
        let sealed = pack
            .writer
            .finish()
            .and_then(|(w, trailer)| Ok((w.finish()?, trailer)));
        let (sink, trailer) = match sealed {
            Ok(s) => s,
            Err(e) => {
                self.give_token();
                return Err(self.write_error(pack.staged, "sealing a pack", e));
            }
        };
        let upload = Upload {
            kind,
            pack: sink.seal(),
            blobs: trailer.blobs,
        };
        let tx = self.uploads.lock().expect("uploads lock").clone();
        match tx.map(|tx| tx.send(upload)) {
            Some(Ok(())) => Ok(()),
            _ => {
                self.give_token();
                Err(Error::Invalid("pack uploaders stopped".into()))
            }
        }
    }

    /// Store sealed packs and remember them for the index.
    fn upload(&self, rx: Receiver<Upload>) {
        for up in rx {
            if self.failed.load(Ordering::Relaxed) {
                drop(up);
                self.give_token();
                continue;
            }
            let (id, size) = (up.pack.id, up.pack.size);
            let path = Repository::pack_path(up.kind, &id);
            let stored = up.pack.store(self.repo.backend(), &path);
            self.give_token();
            if let Err(e) = stored {
                self.fail(e);
                continue;
            }
            self.stored.fetch_add(size, Ordering::Relaxed);
            let full = {
                let mut w = self.written.lock().expect("written lock");
                w.blobs += up.blobs.len();
                w.count += 1;
                w.packs.push(IndexPack {
                    id,
                    kind: up.kind,
                    size,
                    blobs: up.blobs,
                });
                w.blobs >= self.index_flush_blobs
            };
            if full {
                if let Err(e) = self.write_index() {
                    self.fail(e);
                }
            }
        }
    }

    /// Write an index object for the packs stored since the last one (nothing if none):
    /// what a save holds per new blob stays bounded however large the input (SPEC §8, §11).
    fn write_index(&self) -> Result<()> {
        let packs = std::mem::take(&mut self.written.lock().expect("written lock").packs);
        if packs.is_empty() {
            return Ok(());
        }
        let blobs: usize = packs.iter().map(|p| p.blobs.len()).sum();
        let id = self.repo.put_index(&IndexRecord { packs })?;
        let mut w = self.written.lock().expect("written lock");
        w.blobs -= blobs;
        w.index_ids.push(id);
        Ok(())
    }

    /// A buffer for a batch's bytes: a spare one if a worker gave one back.
    fn batch_buffer(&self) -> Vec<u8> {
        self.spare
            .1
            .try_recv()
            .unwrap_or_else(|_| Vec::with_capacity(BATCH_CAPACITY))
    }

    /// Keep a batch's buffer for the next batch (buffers of large blobs are dropped).
    fn recycle(&self, mut raw: Vec<u8>) {
        if raw.capacity() == BATCH_CAPACITY {
            raw.clear();
            let _ = self.spare.0.try_send(raw);
        }
    }

    fn work(&self, rx: Receiver<Job>, level: i32) {
        let mut compressor = match FrameCompressor::new(level) {
            Ok(c) => c,
            Err(e) => {
                self.fail(Error::Invalid(format!("zstd: {e}")));
                return;
            }
        };
        let pack_size = self.repo.config().pack_size as usize;
        for job in rx {
            if self.failed.load(Ordering::Relaxed) {
                continue;
            }
            let (how, stored, raw_len) = match &job.body {
                Body::Raw(raw) => {
                    let (how, stored) = compressor.compress(raw);
                    (how, stored, raw.len() as u32)
                }
                Body::Stored {
                    how,
                    bytes,
                    raw_len,
                } => (*how, &bytes[..], *raw_len),
            };
            let full = {
                let mut guard = self.packers[slot(job.kind)].lock().expect("packer lock");
                if guard.is_none() {
                    match self.open_pack(job.kind) {
                        Ok(p) => *guard = Some(p),
                        Err(e) => {
                            self.fail(e);
                            continue;
                        }
                    }
                }
                let Some(pack) = guard.as_mut() else { continue };
                if let Err(e) = pack.writer.add_frame(how, stored, raw_len, &job.blobs) {
                    let e = self.write_error(pack.staged, "encrypting a pack", e);
                    // Gone now (a staged pack's temporary file with it), not when the saver is.
                    drop(guard.take());
                    self.give_token();
                    self.fail(e);
                    continue;
                }
                if pack.writer.len() >= pack_size {
                    guard.take()
                } else {
                    None
                }
            };
            if let Some(pack) = full {
                if let Err(e) = self.write_pack(pack) {
                    self.fail(e);
                }
            }
            if let Body::Raw(raw) = job.body {
                self.recycle(raw);
            }
        }
    }
}

/// Saves blobs into a repository. Create one per backup, feed it from one thread, and call
/// [`Saver::finish`] to flush packs and write the index; until then nothing refers to the new
/// packs, so an interrupted save leaves only unreferenced packs behind.
pub struct Saver {
    shared: Arc<Shared>,
    index: Arc<Index>,
    key: ChunkIdKey,
    seen: IdSet,
    batches: [Batch; 2],
    tx: Option<Sender<Job>>,
    workers: Vec<JoinHandle<()>>,
    uploaders: Vec<JoinHandle<()>>,
    blobs_added: u64,
    raw_added: u64,
    /// Ids of all-zero blobs by length (holes of sparse files), hashed once each.
    zero_ids: HashMap<u32, Id>,
    /// The content list new long files' lists are written relative to.
    list_base: Option<crate::content_lists::ListBase>,
}

impl Saver {
    /// Start a saver with `workers` compression threads (0: one per core).
    pub fn new(repo: Arc<Repository>, index: Arc<Index>, workers: usize) -> Saver {
        Saver::with_index_flush(repo, index, workers, INDEX_FLUSH_BLOBS)
    }

    /// [`Saver::new`], writing an index object whenever the stored packs not yet in one hold
    /// `index_flush_blobs` blobs (tests use a small number).
    pub(crate) fn with_index_flush(
        repo: Arc<Repository>,
        index: Arc<Index>,
        workers: usize,
        index_flush_blobs: usize,
    ) -> Saver {
        let workers = if workers == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            workers
        };
        let (tx, rx) = bounded::<Job>(workers * 2);
        let level = repo.config().zstd_level;
        let key = repo.chunk_id_key();
        let uploaders = repo.backend().parallel_writes().max(1);
        // A rendezvous: a sealed pack waits in its sealing worker, not in a queue, until an
        // uploader is free (one pack less in memory; the other worker keeps compressing).
        let (up_tx, up_rx) = bounded::<Upload>(0);
        let held = packs_in_memory(
            u64::from(repo.config().pack_size),
            repo.backend().is_remote(),
        );
        let tokens = bounded::<()>(held);
        for _ in 0..held {
            let _ = tokens.0.try_send(());
        }
        let shared = Arc::new(Shared {
            repo,
            uploads: Mutex::new(Some(up_tx)),
            packers: [Mutex::new(None), Mutex::new(None)],
            tokens,
            written: Mutex::new(Written::default()),
            index_flush_blobs: index_flush_blobs.max(1),
            error: Mutex::new(None),
            failed: AtomicBool::new(false),
            stored: AtomicU64::new(0),
            spare: bounded(workers * 2 + 2),
        });
        let handles = (0..workers)
            .map(|i| {
                let shared = shared.clone();
                let rx = rx.clone();
                std::thread::Builder::new()
                    .name(format!("cairn-pack-{i}"))
                    .spawn(move || shared.work(rx, level))
                    .expect("spawning a worker thread")
            })
            .collect();
        let uploader_handles = (0..uploaders)
            .map(|i| {
                let shared = shared.clone();
                let rx = up_rx.clone();
                std::thread::Builder::new()
                    .name(format!("cairn-upload-{i}"))
                    .spawn(move || shared.upload(rx))
                    .expect("spawning an upload thread")
            })
            .collect();
        Saver {
            uploaders: uploader_handles,
            shared,
            index,
            key,
            seen: IdSet::new(),
            batches: [Batch::default(), Batch::default()],
            tx: Some(tx),
            workers: handles,
            blobs_added: 0,
            raw_added: 0,
            zero_ids: HashMap::new(),
            list_base: None,
        }
    }

    /// Write the content lists of long files relative to `base` (the same file in the
    /// previous backup) from now on.
    pub fn set_list_base(&mut self, base: crate::content_lists::ListBase) {
        self.list_base = Some(base);
    }

    /// True if the blob is already stored or queued. The index first: of a daily backup's
    /// blobs, most are stored already, and few are new in this save.
    pub fn contains(&self, id: &Id) -> bool {
        self.index.contains(id) || self.seen.contains(id)
    }

    /// Stored bytes written so far.
    pub fn stored_added(&self) -> u64 {
        self.shared.stored.load(Ordering::Relaxed)
    }

    fn check_failed(&self) -> Result<()> {
        if self.shared.failed.load(Ordering::Relaxed) {
            let e = self.shared.error.lock().expect("error lock").take();
            return Err(e.unwrap_or_else(|| Error::Invalid("a pack writer failed".into())));
        }
        Ok(())
    }

    fn send(&mut self, job: Job) -> Result<()> {
        self.check_failed()?;
        let tx = self.tx.as_ref().expect("saver used after finish");
        if tx.send(job).is_err() {
            self.check_failed()?;
            return Err(Error::Invalid("pack writers stopped".into()));
        }
        Ok(())
    }

    fn flush_batch(&mut self, kind: PackKind) -> Result<()> {
        let batch = std::mem::take(&mut self.batches[slot(kind)]);
        if batch.blobs.is_empty() {
            return Ok(());
        }
        self.send(Job {
            kind,
            body: Body::Raw(batch.raw),
            blobs: batch.blobs,
        })
    }

    /// The key blob ids are computed with.
    pub(crate) fn chunk_id_key(&self) -> ChunkIdKey {
        self.key.clone()
    }

    /// Store one blob whose id the caller computed with [`Saver::chunk_id_key`], or checked
    /// against its bytes (prune's repacking verifies each blob it reads): not hashed again.
    /// Deduplicated.
    pub(crate) fn add_hashed(&mut self, kind: PackKind, id: Id, data: &[u8]) -> Result<()> {
        self.store(kind, id, Cow::Borrowed(data))
    }

    /// Store one blob (deduplicated). Returns its id.
    pub fn add_blob(&mut self, kind: PackKind, data: Vec<u8>) -> Result<Id> {
        let id = self.key.id(&data);
        self.store(kind, id, Cow::Owned(data))?;
        Ok(id)
    }

    fn store(&mut self, kind: PackKind, id: Id, data: Cow<'_, [u8]>) -> Result<()> {
        if self.contains(&id) {
            return Ok(());
        }
        self.seen.insert_absent(id);
        self.blobs_added += 1;
        self.raw_added += data.len() as u64;
        let len = data.len() as u32;
        if data.len() < SMALL_BLOB {
            let batch = &mut self.batches[slot(kind)];
            if batch.raw.capacity() == 0 {
                batch.raw = self.shared.batch_buffer();
            }
            batch.blobs.push((id, batch.raw.len() as u32, len));
            batch.raw.extend_from_slice(&data);
            if batch.raw.len() >= FRAME_TARGET {
                self.flush_batch(kind)?;
            }
        } else {
            self.send(Job {
                kind,
                body: Body::Raw(data.into_owned()),
                blobs: vec![(id, 0, len)],
            })?;
        }
        Ok(())
    }

    /// Store a frame taken whole from another pack, without recompressing it: `stored` as it
    /// was stored (`how`), an uncompressed frame of `raw_len` bytes holding `blobs` (id,
    /// offset, length), which the caller has verified. Returns false, storing nothing, when
    /// every blob is already stored or queued; blobs of a partly known frame are stored again
    /// (harmless duplicates, rare: prune's repacking only).
    pub fn add_stored_frame(
        &mut self,
        kind: PackKind,
        how: Compression,
        stored: Vec<u8>,
        raw_len: u32,
        blobs: Vec<(Id, u32, u32)>,
    ) -> Result<bool> {
        if blobs.iter().all(|(id, _, _)| self.contains(id)) {
            return Ok(false);
        }
        for &(id, _, len) in &blobs {
            if self.seen.insert(id) {
                self.blobs_added += 1;
                self.raw_added += u64::from(len);
            }
        }
        self.send(Job {
            kind,
            body: Body::Stored {
                how,
                bytes: stored,
                raw_len,
            },
            blobs,
        })?;
        Ok(true)
    }

    /// Chunk `reader` under `policy` and store its content. The outer error is the
    /// repository's; the inner one is the source's (the file could not be read), after which
    /// the saver remains usable.
    pub fn save_reader<R: Read>(
        &mut self,
        reader: R,
        policy: ChunkPolicy,
        mut progress: impl FnMut(u64),
    ) -> Result<io::Result<(Vec<Id>, u64)>> {
        let mut ids = Vec::new();
        let mut size = 0u64;
        for chunk in Chunker::new(reader, policy) {
            let chunk = match chunk {
                Ok(c) => c,
                Err(e) => return Ok(Err(e)),
            };
            size += chunk.len() as u64;
            progress(chunk.len() as u64);
            ids.push(self.add_blob(PackKind::Data, chunk)?);
        }
        Ok(Ok((ids, size)))
    }

    /// Store `len` zero bytes (a hole of a sparse file) as zero blobs of the policy's largest chunk and
    /// one shorter remainder, without reading anything: each distinct length is hashed once per
    /// saver, so a 10 GB hole costs a list of ids, not 10 GB of hashing. Ids are appended to
    /// `ids`.
    pub fn add_zeros(&mut self, len: u64, policy: ChunkPolicy, ids: &mut Vec<Id>) -> Result<()> {
        let step = u64::from(policy.max_chunk().max(1));
        let mut left = len;
        while left > 0 {
            let n = left.min(step) as u32;
            let id = match self.zero_ids.get(&n) {
                Some(id) => *id,
                None => {
                    let id = self.add_blob(PackKind::Data, vec![0; n as usize])?;
                    self.zero_ids.insert(n, id);
                    id
                }
            };
            ids.push(id);
            left -= u64::from(n);
        }
        Ok(())
    }

    /// Store a tree blob (long files' ids as content lists, SPEC §9.1: such a file is left
    /// with its list in `content_lists` and no `content`, as a loaded tree has it).
    pub fn save_tree(&mut self, tree: &mut Tree) -> Result<Id> {
        // Readers refuse a tree whose files' ids take more than this once resolved (counting
        // the ids of lists already written, by `save_pages`).
        let listed: u64 = (tree.nodes.iter())
            .filter(|n| n.content.is_empty())
            .flat_map(|n| &n.list_segments)
            .map(|s| s.ids)
            .sum();
        let resolved = tree.decoded_size() as u64 + listed * std::mem::size_of::<Id>() as u64;
        if resolved > cairn_format::tree::MAX_TREE_DECODED as u64 {
            return Err(Error::Invalid(format!(
                "a directory of {} entries holding {} blobs takes {} MiB decoded, over the {} MiB \
                 a tree may take (a file of more than about 3 million chunks: with \
                 --chunk-size 1, files over ~3 GB)",
                tree.nodes.len(),
                tree.nodes
                    .iter()
                    .map(|n| n.content.len() as u64)
                    .sum::<u64>()
                    + listed,
                resolved >> 20,
                cairn_format::tree::MAX_TREE_DECODED >> 20
            )));
        }
        crate::content_lists::write(self, tree)?;
        let bytes = tree.encode();
        if bytes.len() > cairn_format::MAX_BLOB_LEN as usize {
            return Err(Error::Invalid(format!(
                "a directory listing of {} entries encodes to {} bytes, over the {} byte blob limit",
                tree.nodes.len(),
                bytes.len(),
                cairn_format::MAX_BLOB_LEN
            )));
        }
        self.add_blob(PackKind::Tree, bytes)
    }

    /// Store `ids` as the `n`th content list of the file being saved, written against the
    /// offered list base's `n`th list (see [`Saver::set_list_base`]).
    pub fn add_content_list(&mut self, n: usize, ids: &[Id]) -> Result<Id> {
        let mut base = self.list_base.take();
        let written = crate::content_lists::write_list(self, base.as_mut(), n, ids);
        self.list_base = base;
        written
    }

    /// Flush every pack, write the index object for those not in one yet, and return what was
    /// added and the ids of the index objects written by this save, in order (none when
    /// nothing new was stored).
    pub fn finish(mut self) -> Result<(SaveStats, Vec<Id>)> {
        self.flush_batch(PackKind::Data)?;
        self.flush_batch(PackKind::Tree)?;
        drop(self.tx.take());
        for h in self.workers.drain(..) {
            if h.join().is_err() {
                self.shared
                    .fail(Error::Invalid("a pack writer panicked".into()));
            }
        }
        self.check_failed()?;
        for packer in &self.shared.packers {
            let pack = packer.lock().expect("packer lock").take();
            if let Some(pack) = pack.filter(|p| !p.writer.is_empty()) {
                self.shared.write_pack(pack)?;
            }
        }
        self.stop_uploaders();
        self.check_failed()?;
        self.shared.write_index()?;
        let w = std::mem::take(&mut *self.shared.written.lock().expect("written lock"));
        let stats = SaveStats {
            blobs_added: self.blobs_added,
            raw_added: self.raw_added,
            stored_added: self.stored_added(),
            packs: w.count,
        };
        Ok((stats, w.index_ids))
    }
}

impl Saver {
    /// Close the upload queue and wait for the uploads in flight.
    fn stop_uploaders(&mut self) {
        drop(self.shared.uploads.lock().expect("uploads lock").take());
        for h in self.uploaders.drain(..) {
            if h.join().is_err() {
                self.shared
                    .fail(Error::Invalid("a pack uploader panicked".into()));
            }
        }
    }
}

impl Drop for Saver {
    fn drop(&mut self) {
        drop(self.tx.take());
        for h in self.workers.drain(..) {
            let _ = h.join();
        }
        self.stop_uploaders();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;
    use crate::loader::Loader;
    use crate::repo::{Credentials, InitOptions, Role};
    use cairn_format::tree::{Node, NodeKind};

    fn bytes(len: usize, mut s: u64) -> Vec<u8> {
        (0..len)
            .map(|i| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                if i % 3 == 0 {
                    b'a'
                } else {
                    s as u8
                }
            })
            .collect()
    }

    #[test]
    fn save_then_load_with_each_role() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = Repository::init(
            Box::new(LocalBackend::new(dir.path())),
            InitOptions {
                recipients: vec![identity.to_public().to_string()],
                pack_size: 1 << 20,
                ..InitOptions::default()
            },
        )
        .unwrap();
        // init holds the master identity; save as a backup host does, with the write key.
        assert_eq!(repo.role(), Role::Full);
        let wk = cairn_format::keys::write_key_from_text(&repo.write_key_text(None)).unwrap();
        let repo = Repository::open(
            Box::new(LocalBackend::new(dir.path())),
            Credentials::WriteKey(wk),
        )
        .unwrap();
        assert_eq!(repo.role(), Role::WriteOnly);
        let repo = Arc::new(repo);
        let policy = repo.cdc_policy();
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        let big = bytes(5 << 20, 1);
        let (ids, size) = saver
            .save_reader(&big[..], policy, |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(size, big.len() as u64);
        let small: Vec<Id> = (0..50)
            .map(|i| {
                saver
                    .add_blob(PackKind::Data, bytes(1000 + i, i as u64 + 7))
                    .unwrap()
            })
            .collect();
        let mut node = Node::new(b"f".to_vec(), NodeKind::File);
        node.content = ids.clone();
        let mut tree = Tree { nodes: vec![node] };
        let root = saver.save_tree(&mut tree).unwrap();
        let (stats, index_id) = saver.finish().unwrap();
        assert_eq!(index_id.len(), 1);
        assert!(stats.packs >= 3, "{stats:?}");

        // The identity holder reads everything back, verified.
        let full = Arc::new(
            Repository::open(
                Box::new(LocalBackend::new(dir.path())),
                Credentials::Identities(vec![Box::new(identity)]),
            )
            .unwrap(),
        );
        assert_eq!(full.role(), Role::Full);
        let index = Arc::new(Index::load(&full).unwrap());
        let mut loader = Loader::new(full.clone(), index.clone());
        let back: Vec<u8> = ids.iter().flat_map(|id| loader.load(id).unwrap()).collect();
        assert_eq!(back, big);
        for (i, id) in small.iter().enumerate() {
            assert_eq!(loader.load(id).unwrap(), bytes(1000 + i, i as u64 + 7));
        }

        // A second save of the same content adds nothing.
        let mut again = Saver::new(full.clone(), index.clone(), 2);
        again
            .save_reader(&big[..], policy, |_| {})
            .unwrap()
            .unwrap();
        let (stats, index_id) = again.finish().unwrap();
        assert_eq!(stats.blobs_added, 0);
        assert!(index_id.is_empty());

        // The write key reads trees but not file content.
        let wk = cairn_format::keys::write_key_from_text(&full.write_key_text(None)).unwrap();
        let writer = Arc::new(
            Repository::open(
                Box::new(LocalBackend::new(dir.path())),
                Credentials::WriteKey(wk),
            )
            .unwrap(),
        );
        let mut loader = Loader::new(writer, index);
        assert_eq!(loader.load_tree(&root).unwrap().nodes.len(), 1);
        assert!(matches!(
            loader.load(&ids[0]),
            Err(Error::NeedsIdentity { .. })
        ));
    }

    #[test]
    fn wrong_identity_and_passphrase_are_named() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init(
            Box::new(LocalBackend::new(dir.path())),
            InitOptions {
                passphrase: Some("right".into()),
                ..InitOptions::default()
            },
        )
        .unwrap();
        let other = age::x25519::Identity::generate();
        let err = Repository::open(
            Box::new(LocalBackend::new(dir.path())),
            Credentials::Identities(vec![Box::new(other)]),
        )
        .err()
        .unwrap();
        assert!(
            matches!(err, Error::WrongIdentity { tried: 1, .. }),
            "{err}"
        );
        let err = Repository::open(
            Box::new(LocalBackend::new(dir.path())),
            Credentials::Passphrase("wrong".into()),
        )
        .err()
        .unwrap();
        assert!(matches!(err, Error::WrongPassphrase { .. }), "{err}");
        let ok = Repository::open(
            Box::new(LocalBackend::new(dir.path())),
            Credentials::Passphrase("right".into()),
        )
        .unwrap();
        assert_eq!(ok.role(), Role::Full);
        let err = Repository::open(
            Box::new(LocalBackend::new(dir.path().join("nope"))),
            Credentials::Passphrase("right".into()),
        )
        .err()
        .unwrap();
        assert!(matches!(err, Error::NotARepository { .. }));
    }

    /// Local storage that fills up: staged objects fail once `room` bytes are written.
    struct FullDisk {
        inner: LocalBackend,
        room: u64,
    }

    struct FillingObject {
        inner: Box<dyn crate::backend::StagedObject>,
        room: u64,
    }

    impl io::Write for FillingObject {
        fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
            if buf.len() as u64 > self.room {
                return Err(io::Error::new(
                    io::ErrorKind::StorageFull,
                    "No space left on device",
                ));
            }
            let n = self.inner.write(buf)?;
            self.room -= n as u64;
            Ok(n)
        }
        fn flush(&mut self) -> io::Result<()> {
            self.inner.flush()
        }
    }

    impl crate::backend::StagedObject for FillingObject {
        fn temporary(&self) -> &str {
            self.inner.temporary()
        }
        fn commit(self: Box<Self>, path: &str) -> Result<()> {
            self.inner.commit(path)
        }
    }

    impl crate::backend::Backend for FullDisk {
        fn location(&self) -> String {
            self.inner.location()
        }
        fn put(&self, path: &str, bytes: &[u8]) -> Result<()> {
            self.inner.put(path, bytes)
        }
        fn replace(&self, path: &str, bytes: &[u8]) -> Result<()> {
            self.inner.replace(path, bytes)
        }
        fn put_new(&self, path: &str, bytes: &[u8]) -> Result<bool> {
            self.inner.put_new(path, bytes)
        }
        fn stage(&self, dir: &str) -> Result<Option<Box<dyn crate::backend::StagedObject>>> {
            let inner = self.inner.stage(dir)?.expect("local storage stages");
            Ok(Some(Box::new(FillingObject {
                inner,
                room: self.room,
            })))
        }
        fn get(&self, path: &str) -> Result<Vec<u8>> {
            self.inner.get(path)
        }
        fn open(&self, path: &str) -> Result<Box<dyn crate::backend::ReadSeek>> {
            self.inner.open(path)
        }
        fn exists(&self, path: &str) -> Result<bool> {
            self.inner.exists(path)
        }
        fn list(&self, prefix: &str) -> Result<Vec<crate::backend::ObjectInfo>> {
            self.inner.list(prefix)
        }
        fn delete(&self, path: &str) -> Result<()> {
            self.inner.delete(path)
        }
    }

    /// Every file below `dir`, temporaries included.
    fn files(dir: &std::path::Path) -> Vec<String> {
        let mut out = Vec::new();
        for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
            if entry.file_type().unwrap().is_dir() {
                out.extend(files(&entry.path()));
            } else {
                out.push(entry.path().display().to_string());
            }
        }
        out
    }

    #[test]
    fn packs_are_staged_on_local_storage_and_a_full_disk_fails_cleanly() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let init = |backend: Box<dyn crate::backend::Backend>| {
            Repository::init(
                backend,
                InitOptions {
                    recipients: vec![identity.to_public().to_string()],
                    pack_size: 1 << 20,
                    ..InitOptions::default()
                },
            )
            .unwrap()
        };
        // Packs go through staged temporaries and none is left behind.
        let repo = Arc::new(init(Box::new(LocalBackend::new(dir.path().join("ok")))));
        let policy = repo.cdc_policy();
        let big = bytes(3 << 20, 5);
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        let (ids, _) = saver
            .save_reader(&big[..], policy, |_| {})
            .unwrap()
            .unwrap();
        let (stats, _) = saver.finish().unwrap();
        assert!(stats.packs >= 2, "{stats:?}");
        let data = files(&dir.path().join("ok/data"));
        assert_eq!(data.len() as u64, stats.packs, "{data:?}");
        assert!(data.iter().all(|f| !f.contains(".tmp-")), "{data:?}");
        let index = Arc::new(Index::load(&repo).unwrap());
        let mut loader = Loader::new(repo.clone(), index);
        let back: Vec<u8> = ids.iter().flat_map(|id| loader.load(id).unwrap()).collect();
        assert_eq!(back, big);

        // The disk fills while a pack is written: the save fails naming the
        // temporary and what to do, and leaves no file under data/, final or temporary.
        let root = dir.path().join("full");
        let repo = Arc::new(init(Box::new(FullDisk {
            inner: LocalBackend::new(&root),
            room: 700 << 10,
        })));
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        let saved = saver
            .save_reader(&big[..], policy, |_| {})
            .map(|r| r.unwrap())
            .and_then(|_| saver.finish());
        let Err(err) = saved else {
            panic!("a full disk fails the save")
        };
        let err = err.to_string();
        assert!(err.contains("data/.tmp-staged-"), "{err}");
        assert!(err.contains("No space left on device"), "{err}");
        assert!(err.contains("free space"), "{err}");
        assert!(
            files(&root.join("data")).is_empty(),
            "{:?}",
            files(&root.join("data"))
        );
        assert!(files(&root.join("index")).is_empty());
    }
}
