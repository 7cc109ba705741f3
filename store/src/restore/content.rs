//! Writing one large file's content with every core busy.
//!
//! The file's blobs are placed in pack order: sorted by pack, frame and offset in the frame,
//! so each needed frame is read once and decompressed once however often and wherever the file
//! uses its blobs. Runs of nearby frames of one pack form spans, each read (and decrypted) in
//! one sequential pass; nearby spans of a pack are read with one request ([`crate::pack_spans`]).
//! (A frame two listings describe differently is two jobs, each read and decompressed.)
//! Packs are taken in the order of the first file offset they supply, so the follower (if any)
//! can read the file back early. Fetcher threads take whole packs (so several packs are in
//! flight from remote storage) and hand spans through a short bounded queue to workers that decompress,
//! check every blob against its keyed hash (once per distinct blob of a frame) and write runs
//! of adjacent blobs with one positioned write each, starting their writeback up to 8 MiB of
//! adjacent writes at a time. Blobs of zeros are not written (holes).
//!
//! Memory: the plan (8 bytes per use of a blob, 8 per blob of the file, 40 per frame; blobs
//! are named by their index entry, not their id) plus at most
//! `fetchers + queue + workers` spans (see [`Spans`]) of at most [`Spans::max`] bytes (twice that in a fetcher:
//! the stored chunks and their plaintext) and one frame per worker; from remote storage, up to
//! three 256 KiB batches of each fetcher's streamed response; with a follower, up to twelve
//! 256 KiB pieces read back for the check.
//!
//! A listing that does not hold its blob (a damaged or missing pack, or a claim planted in an
//! index object) does not end the restore where the index lists the blob elsewhere: the
//! blobs of a frame that fails are read one at a time from their other listings, and the
//! spans of a pack that cannot be read are written blob by blob after the rest (each from its
//! own listing first), through one [`Loader`] per worker (one blob and one frame each).

use super::follow::{self, Done, Feed};
use crate::content_lists::UnreadLists;
use crate::index::{Index, Location};
use crate::loader::{FrameCheck, Loader};
use crate::plain::{Buffers, Plain};
use crate::writeback::start_writeback;
use crate::{Error, Result};
use cairn_format::content_list::LIST_SEGMENT_IDS;
use cairn_format::pack::FrameRef;
use cairn_format::tree::Node;
use cairn_format::Id;
use std::borrow::Cow;
use std::fs::File;
use std::ops::Range;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};

/// How frames of one pack are grouped into spans, each read with one request.
#[derive(Debug, Clone, Copy)]
pub struct Spans {
    /// Frames of one pack this close together are read in one pass (the gap is read too).
    pub gap: u64,
    /// Longest span read in one pass (a longer frame is read alone).
    pub max: u64,
    /// Threads reading packs (several packs in flight from remote storage).
    pub fetchers: usize,
    /// Spans read ahead of the workers.
    pub queue: usize,
}

impl Spans {
    /// Local storage: a read costs a system call, a gap costs its bytes.
    pub const LOCAL: Spans = Spans {
        gap: 64 << 10,
        max: 512 << 10,
        fetchers: 4,
        queue: 4,
    };
    /// Remote storage: a request costs a round trip and the server's work, worth a MiB of
    /// gap. A pack's spans this close are read with one request, streamed (see
    /// [`crate::pack_spans`]), so a span is only the unit handed to a worker: spans of up to
    /// 2 MiB with two packs in flight and two spans queued keep the bytes in flight near
    /// 12 MiB (see the module's memory note).
    pub const REMOTE: Spans = Spans {
        gap: 1 << 20,
        max: 2 << 20,
        fetchers: 2,
        queue: 2,
    };
}

/// A file's content as restore gets it.
pub enum FileContent<'a> {
    /// Its ids, at hand (inline in its tree, or already read).
    Ids(Cow<'a, [Id]>),
    /// Its content lists, read one at a time.
    Lists(Box<UnreadLists>),
}

impl FileContent<'static> {
    /// The content of `node` (a file of the tree `tree_id`, decoded with its lists unread),
    /// taken out of it: its lists when it has some, else its ids.
    pub fn take(loader: &Loader, tree_id: Id, node: &mut Node) -> FileContent<'static> {
        match UnreadLists::take(loader, tree_id, node) {
            Some(lists) => FileContent::Lists(Box::new(lists)),
            None => FileContent::Ids(Cow::Owned(std::mem::take(&mut node.content))),
        }
    }
}

/// One use of a blob in the file: 8 bytes (its id and place are looked up when used).
#[derive(Debug, Clone, Copy)]
struct Piece {
    /// The blob's position in the index, which holds its id and location.
    entry: u32,
    /// Position in the file's blob list: where it goes (see [`Pieces::Memory`]'s `ends`).
    blob: u32,
}

/// One use of a blob, as the workers write it: the blob, its place in its frame and in the file.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Placed {
    /// The blob's id, its keyed hash.
    pub id: Id,
    /// Offset in the uncompressed frame.
    pub offset: u32,
    /// Length.
    pub len: u32,
    /// Offset in the file.
    pub at: u64,
}

impl Placed {
    /// Where the plan found it: in `frame` of pack number `pack`.
    fn location(&self, pack: u32, frame: &FrameRef) -> Location {
        Location {
            pack,
            frame: *frame,
            offset: self.offset,
            len: self.len,
        }
    }
}

/// One frame and the pieces it supplies.
pub(super) struct Job {
    frame: FrameRef,
    pieces: Range<usize>,
}

/// Nearby frames of one pack, read together.
pub(super) struct Span {
    pack: u32,
    start: u64,
    end: u64,
    jobs: Range<usize>,
}

/// The pieces of a plan, in pack order.
enum Pieces {
    /// In memory, naming index entries.
    Memory {
        /// The index the pieces point into.
        index: Arc<Index>,
        pieces: Vec<Piece>,
        /// Where each blob of the file's list ends in the file.
        ends: Vec<u64>,
    },
    /// In a temporary file (a large file: see [`super::plan_file`]).
    Disk(super::plan_file::PlanFile),
}

/// Pieces read at once by a worker (a frame supplying more is written in batches).
const BATCH: usize = 4096;

/// The placement of a file's blobs, in pack order.
pub struct Plan {
    pieces: Pieces,
    jobs: Vec<Job>,
    spans: Vec<Span>,
    /// Spans by pack: each range is one pack's spans.
    packs: Vec<Range<usize>>,
    /// How spans were made and are read.
    limits: Spans,
    /// The file's length.
    pub len: u64,
}

/// Groups pieces, given in pack order, into jobs, spans and packs.
pub(super) struct Layout {
    limits: Spans,
    jobs: Vec<Job>,
    spans: Vec<Span>,
    packs: Vec<Range<usize>>,
    /// The first file offset each pack supplies.
    first: Vec<u64>,
    last: Option<(u32, FrameRef)>,
}

impl Layout {
    pub(super) fn new(limits: Spans) -> Layout {
        Layout {
            limits,
            jobs: Vec::new(),
            spans: Vec::new(),
            packs: Vec::new(),
            first: Vec::new(),
            last: None,
        }
    }

    /// Piece number `i`, at `at` in the file, from `frame` of pack number `pack`.
    pub(super) fn add(&mut self, i: usize, pack: u32, frame: FrameRef, at: u64) {
        if let (Some(j), Some(f)) = (self.jobs.last_mut(), self.first.last_mut()) {
            // The whole reference: a listing that describes a frame otherwise is another job,
            // which fails alone.
            if self.last == Some((pack, frame)) {
                j.pieces.end = i + 1;
                *f = (*f).min(at);
                return;
            }
        }
        self.last = Some((pack, frame));
        let j = self.jobs.len();
        self.jobs.push(Job {
            frame,
            pieces: i..i + 1,
        });
        let (start, end) = (frame.offset, frame.offset + u64::from(frame.stored_len));
        let limits = self.limits;
        match self.spans.last_mut() {
            Some(s)
                if s.pack == pack
                    && start >= s.end
                    && start - s.end <= limits.gap
                    && end - s.start <= limits.max =>
            {
                s.end = end;
                s.jobs.end = j + 1;
            }
            _ => {
                if self.spans.last().is_none_or(|s| s.pack != pack) {
                    self.packs.push(self.spans.len()..self.spans.len());
                    self.first.push(at);
                }
                self.spans.push(Span {
                    pack,
                    start,
                    end,
                    jobs: j..j + 1,
                });
            }
        }
        if let (Some(p), Some(f)) = (self.packs.last_mut(), self.first.last_mut()) {
            p.end = self.spans.len();
            *f = (*f).min(at);
        }
    }

    /// Earliest in the file first: the packs holding the blobs nearest the file's start
    /// are read first, so a follower reading the file back in order (see [`follow`]) can
    /// start long before the last pack is in, and a pack of blobs spread over the whole
    /// file (the pages a day changed) comes before the packs that fill it in order.
    fn finish(self, pieces: Pieces, len: u64) -> Plan {
        let mut order: Vec<(u64, Range<usize>)> = self.first.into_iter().zip(self.packs).collect();
        order.sort_by_key(|(first, _)| *first);
        Plan {
            pieces,
            jobs: self.jobs,
            spans: self.spans,
            packs: order.into_iter().map(|(_, r)| r).collect(),
            limits: self.limits,
            len,
        }
    }
}

impl Plan {
    /// Locate every blob of `content` in the loader's index; spans sized for its storage. The
    /// plan refers to the index's entries, not to the ids: owned, they are freed once located.
    pub fn new(loader: &Loader, content: FileContent<'_>) -> Result<Plan> {
        let spans = if loader.frame_check().is_remote() {
            Spans::REMOTE
        } else {
            Spans::LOCAL
        };
        Plan::with_spans(loader, content, spans)
    }

    /// Locate every blob of `content` in the loader's index, grouping frames into `limits`'
    /// spans. A large file's plan is made and kept in temporary files ([`super::plan_file`]);
    /// from several content lists, one list at a time.
    pub fn with_spans(loader: &Loader, content: FileContent<'_>, limits: Spans) -> Result<Plan> {
        let on_disk = |most: usize, source: super::plan_file::Source<'_>| -> Result<Option<Plan>> {
            let Some(files) = super::plan_file::temporaries(loader.index(), most)? else {
                return Ok(None);
            };
            let mut layout = Layout::new(limits);
            let (file, len) = super::plan_file::build(loader, source, &mut layout, files)?;
            Ok(Some(layout.finish(Pieces::Disk(file), len)))
        };
        let ids = match content {
            FileContent::Ids(ids) => ids,
            FileContent::Lists(mut lists) if lists.count() > 1 => {
                let most = lists.most_ids();
                let source =
                    &mut |f: &mut dyn FnMut(&[Id]) -> Result<()>| lists.each(|ids| f(&ids));
                if let Some(plan) = on_disk(most, source)? {
                    return Ok(plan);
                }
                Cow::Owned(lists.into_ids()?)
            }
            // One list: at most 2 MiB of ids as writers make them.
            FileContent::Lists(lists) => Cow::Owned(lists.into_ids()?),
        };
        if super::plan_file::wanted(&ids) {
            let source = &mut |f: &mut dyn FnMut(&[Id]) -> Result<()>| {
                ids.chunks(LIST_SEGMENT_IDS).try_for_each(&mut *f)
            };
            if let Some(plan) = on_disk(ids.len(), source)? {
                return Ok(plan);
            }
        }
        Plan::in_memory(loader, ids, limits)
    }

    /// The plan held in memory: 8 bytes per use of a blob, 8 per blob of the file.
    pub(super) fn in_memory(loader: &Loader, ids: Cow<'_, [Id]>, limits: Spans) -> Result<Plan> {
        let index = loader.shared_index().clone();
        let piece = |i: usize, id: &Id| -> Result<Piece> {
            let entry = index.position(id).ok_or(Error::BlobMissing(*id))?;
            Ok(Piece {
                entry: entry as u32,
                blob: i as u32,
            })
        };
        let mut pieces = Vec::with_capacity(ids.len());
        match ids {
            Cow::Borrowed(ids) => {
                for (i, id) in ids.iter().enumerate() {
                    pieces.push(piece(i, id)?);
                }
            }
            Cow::Owned(mut ids) => {
                // From the end, the ids shrinking behind (a large block is mapped on its own:
                // shrinking it returns its tail), so they and the pieces are not both whole.
                // The first missing in file order is reported, as from borrowed ids.
                let mut missing = None;
                while let Some(id) = ids.pop() {
                    match piece(ids.len(), &id) {
                        Ok(p) => pieces.push(p),
                        Err(e) => missing = Some(e),
                    }
                    if ids.len() % (1 << 15) == 0 {
                        ids.shrink_to_fit();
                    }
                }
                if let Some(e) = missing {
                    return Err(e);
                }
                pieces.reverse();
            }
        }
        // Pieces are still in file order.
        let mut at = 0u64;
        let ends: Vec<u64> = pieces
            .iter()
            .map(|p| {
                at += u64::from(index.location_at(p.entry as usize).len);
                at
            })
            .collect();
        // Pack order; the uses of one blob stay together, in file order.
        pieces.sort_unstable_by_key(|p| {
            let l = index.location_at(p.entry as usize);
            let f = l.frame;
            let zstd = f.compression == cairn_format::frame::Compression::Zstd;
            (
                l.pack,
                f.offset,
                f.stored_len,
                f.raw_len,
                zstd,
                l.offset,
                p.blob,
            )
        });
        let mut layout = Layout::new(limits);
        for (i, p) in pieces.iter().enumerate() {
            let loc = index.location_at(p.entry as usize);
            let start = ends[p.blob as usize] - u64::from(loc.len);
            layout.add(i, loc.pack, loc.frame, start);
        }
        let pieces = Pieces::Memory {
            index,
            pieces,
            ends,
        };
        Ok(layout.finish(pieces, at))
    }

    /// Whether a blob of spans `spans` has another listing than the one planned.
    fn any_alternative(&self, spans: Range<usize>, index: &Index) -> Result<bool> {
        let mut pieces = Vec::new();
        for span in &self.spans[spans] {
            for job in &self.jobs[span.jobs.clone()] {
                for start in job.pieces.clone().step_by(BATCH) {
                    self.read(start..(start + BATCH).min(job.pieces.end), &mut pieces)?;
                    if pieces
                        .iter()
                        .any(|p| index.alternatives(&p.id).next().is_some())
                    {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(false)
    }

    /// Frames to read.
    pub fn frames(&self) -> usize {
        self.jobs.len()
    }

    /// Pieces `range` (in pack order), replacing what `out` holds.
    fn read(&self, range: Range<usize>, out: &mut Vec<Placed>) -> Result<()> {
        out.clear();
        match &self.pieces {
            Pieces::Memory {
                index,
                pieces,
                ends,
            } => out.extend(pieces[range].iter().map(|p| {
                let loc = index.location_at(p.entry as usize);
                Placed {
                    id: *index.id_at(p.entry as usize),
                    offset: loc.offset,
                    len: loc.len,
                    at: ends[p.blob as usize] - u64::from(loc.len),
                }
            })),
            Pieces::Disk(file) => file.read(range, out)?,
        }
        Ok(())
    }

    /// Every use of a blob in pack order (its id, offset in the file, length), a batch at a
    /// time.
    pub fn each_placement(&self, mut f: impl FnMut(&Placed) -> Result<()>) -> Result<()> {
        let mut buf = Vec::new();
        let total = self.jobs.last().map_or(0, |j| j.pieces.end);
        for start in (0..total).step_by(BATCH) {
            self.read(start..(start + BATCH).min(total), &mut buf)?;
            buf.iter().try_for_each(&mut f)?;
        }
        Ok(())
    }
}

/// Write `plan`'s blobs into `file` with fetcher and worker threads; `progress` gets
/// the bytes of each blob placed, `feed` (if any) the file's bytes in order as they are written
/// (see [`follow`]). Returns the file's length (the file is extended to it first).
pub fn write(
    loader: &Loader,
    plan: &Plan,
    file: &File,
    progress: &(dyn Fn(u64) + Sync),
    feed: Option<Feed<'_>>,
) -> Result<u64> {
    let check = loader.frame_check();
    let next_pack = AtomicUsize::new(0);
    let failed = AtomicBool::new(false);
    // Holes read back as zeros while the follower reads behind the writes.
    file.set_len(plan.len)
        .map_err(super::sys("setting the restored file's length"))?;
    let done = Done::new(plan.len, feed.is_some());
    let over = AtomicBool::new(false);
    let first_error: Mutex<Option<Error>> = Mutex::new(None);
    let fail = |e: Error| {
        failed.store(true, Ordering::Relaxed);
        first_error
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert(e);
    };
    let workers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // Span buffers go round: fetcher, queue, worker, back.
    let Spans {
        fetchers, queue, ..
    } = plan.limits;
    let buffers = &Arc::new(Buffers::new(fetchers + queue + workers));
    // Spans a pack did not yield, with why: written from other listings of their blobs once
    // the rest is (only where the index has other listings: otherwise the error ends the
    // restore at once, as it always did).
    let unread: Mutex<Vec<(Range<usize>, Error)>> = Mutex::new(Vec::new());
    let index = loader.index();
    let elsewhere = index.has_alternatives();
    std::thread::scope(|s| {
        let (tx, rx) = crossbeam_channel::bounded::<(usize, Plain)>(queue);
        for _ in 0..fetchers.min(plan.packs.len()) {
            let tx = tx.clone();
            let (next_pack, failed, fail, check) = (&next_pack, &failed, &fail, &check);
            let unread = &unread;
            s.spawn(move || {
                let fetch = || -> Result<()> {
                    loop {
                        let n = next_pack.fetch_add(1, Ordering::Relaxed);
                        let Some(spans) = plan.packs.get(n) else {
                            return Ok(());
                        };
                        if failed.load(Ordering::Relaxed) {
                            return Ok(());
                        }
                        let mut from = spans.start;
                        let sent = (|| -> Result<bool> {
                            let ranges = plan.spans[spans.clone()]
                                .iter()
                                .map(|s| s.start..s.end)
                                .collect();
                            let pack = plan.spans[spans.start].pack;
                            let mut reader = check.open_spans(pack, ranges, plan.limits.gap)?;
                            for i in spans.clone() {
                                let Some(bytes) = reader.next_span(buffers.take())? else {
                                    break;
                                };
                                let bytes = bytes.returning_to(buffers);
                                if tx.send((i, bytes)).is_err() || failed.load(Ordering::Relaxed) {
                                    return Ok(false);
                                }
                                from = i + 1;
                            }
                            Ok(true)
                        })();
                        match sent {
                            Ok(true) => {}
                            Ok(false) => return Ok(()),
                            Err(e)
                                if elsewhere
                                    && !e.is_storage_failure()
                                    && plan.any_alternative(from..spans.end, index)? =>
                            {
                                unread
                                    .lock()
                                    .unwrap_or_else(|p| p.into_inner())
                                    .push((from..spans.end, e))
                            }
                            Err(e) => return Err(e),
                        }
                    }
                };
                if let Err(e) = fetch() {
                    fail(e);
                }
            });
        }
        drop(tx);
        if let Some(feed) = feed {
            let (done, over, failed, fail) = (&done, &over, &failed, &fail);
            s.spawn(move || {
                if let Err(e) = follow::follow(file, plan.len, done, over, failed, feed) {
                    fail(e);
                }
            });
        }
        let done = &done;
        let others: Vec<_> = (1..workers)
            .map(|_| {
                let (rx, check, fail) = (rx.clone(), check.clone(), &fail);
                let mut alt = loader.fork();
                s.spawn(move || {
                    if let Err(e) = work(plan, &check, &mut alt, file, &rx, progress, done) {
                        fail(e);
                    }
                })
            })
            .collect();
        let mut alt = loader.fork();
        if let Err(e) = work(plan, &check, &mut alt, file, &rx, progress, done) {
            fail(e);
        }
        for w in others {
            if w.join().is_err() {
                fail(super::RestoreError::Worker("a restore worker thread panicked").into());
            }
        }
        // The follower (if any) still waits for these.
        let unread = std::mem::take(&mut *unread.lock().unwrap_or_else(|p| p.into_inner()));
        if !failed.load(Ordering::Relaxed) {
            let out = Sink::new(file, done, progress);
            if let Err(e) = write_unread(plan, unread, &mut alt, out) {
                fail(e);
            }
        }
        over.store(true, Ordering::Release);
    });
    if let Some(e) = first_error.into_inner().unwrap_or_else(|p| p.into_inner()) {
        return Err(e);
    }
    Ok(plan.len)
}

/// Where one worker writes: the file, what is done, and the range it wrote last whose
/// writeback it has not started yet.
struct Sink<'a> {
    file: &'a File,
    done: &'a Done,
    progress: &'a (dyn Fn(u64) + Sync),
    /// Written, writeback not started: adjacent writes are gathered up to [`EARLY_WRITEBACK`]
    /// so that the disk gets a few large requests rather than one per run (each a request to
    /// the device: a VM exit on a virtual disk).
    unflushed: Option<Range<u64>>,
}

/// Bytes of adjacent writes gathered before their writeback is started.
const EARLY_WRITEBACK: u64 = 8 << 20;

impl<'a> Sink<'a> {
    fn new(file: &'a File, done: &'a Done, progress: &'a (dyn Fn(u64) + Sync)) -> Sink<'a> {
        Sink {
            file,
            done,
            progress,
            unflushed: None,
        }
    }

    /// Write `bytes` at `at` and mark them done.
    fn write(&mut self, bytes: &[u8], at: u64) -> Result<()> {
        let len = bytes.len() as u64;
        self.file
            .write_all_at(bytes, at)
            .map_err(super::sys("writing the restored file"))?;
        if !self.done.tracked() {
            // Disk writes start now rather than in the restore's final sync (a follower,
            // when there is one, starts them in file order).
            self.unflushed = match self.unflushed.take() {
                Some(r) if r.end == at && r.end - r.start < EARLY_WRITEBACK => {
                    Some(r.start..at + len)
                }
                other => {
                    self.start_writeback(other);
                    Some(at..at + len)
                }
            };
        }
        self.done.mark(at, len);
        Ok(())
    }

    fn start_writeback(&self, range: Option<Range<u64>>) {
        if let Some(r) = range {
            start_writeback(self.file, r.start, r.end - r.start);
        }
    }
}

impl Drop for Sink<'_> {
    fn drop(&mut self) {
        let unflushed = self.unflushed.take();
        self.start_writeback(unflushed);
    }
}

/// Decompress, check and write the spans received until the fetchers are done. A frame or
/// blob that does not verify is read from another listing of its blobs through `alt`, where
/// the index has one.
fn work(
    plan: &Plan,
    check: &FrameCheck,
    alt: &mut Loader,
    file: &File,
    rx: &crossbeam_channel::Receiver<(usize, Plain)>,
    progress: &(dyn Fn(u64) + Sync),
    done: &Done,
) -> Result<()> {
    let mut out = Sink::new(file, done, progress);
    // Decompressed frames, one after the other in one allocation; the pieces of one.
    let (mut frame, mut pieces) = (Vec::new(), Vec::new());
    for (i, bytes) in rx {
        let span = &plan.spans[i];
        for job in &plan.jobs[span.jobs.clone()] {
            let from = (job.frame.offset - span.start) as usize;
            let raw = bytes
                .get(from..from + job.frame.stored_len as usize)
                .ok_or_else(|| {
                    check.damaged(span.pack, cairn_format::Error::Truncated { what: "frame" })
                })
                .and_then(|stored| {
                    check.decompress_into(span.pack, &job.frame, stored, &mut frame)
                });
            let raw = match raw {
                Ok(raw) => raw,
                Err(e) if !e.is_storage_failure() && alt.index().has_alternatives() => {
                    tracing::debug!("frame at {} read blob by blob: {e}", job.frame.offset);
                    write_elsewhere(plan, job, span.pack, Some(e), alt, &mut out)?;
                    continue;
                }
                Err(e) => return Err(e),
            };
            for start in job.pieces.clone().step_by(BATCH) {
                plan.read(start..(start + BATCH).min(job.pieces.end), &mut pieces)?;
                write_frame(span.pack, &job.frame, &pieces, check, alt, raw, &mut out)?;
            }
        }
    }
    Ok(())
}

/// Check and write the pieces of one decompressed frame of pack number `pack`; adjacent pieces
/// go in one write. Each piece is marked in `done` once on disk (or a hole). A blob the frame
/// does not hold is read from another listing through `alt`, where the index has one.
fn write_frame(
    pack: u32,
    frame: &FrameRef,
    pieces: &[Placed],
    check: &FrameCheck,
    alt: &mut Loader,
    raw: &[u8],
    out: &mut Sink,
) -> Result<()> {
    // The run being gathered: file offset and range in the frame.
    let mut run: Option<(u64, Range<usize>)> = None;
    // Pieces of one blob are adjacent: each blob is checked at its first piece, all of them
    // hashed together first.
    let first = |i: usize| i == 0 || pieces[i - 1].id != pieces[i].id;
    let mut held = Vec::new();
    let blobs = pieces.iter().enumerate().filter(|&(i, _)| first(i));
    check.holds(raw, blobs.map(|(_, p)| (&p.id, p.offset, p.len)), &mut held);
    let mut held = held.into_iter();
    // The last blob checked: its id, whether it is all zeros, and its bytes when read from
    // another listing.
    let mut checked: Option<(&Id, bool, Option<Vec<u8>>)> = None;
    for (i, p) in pieces.iter().enumerate() {
        if first(i) {
            let verdict = match held.next() {
                Some(true) => Ok(&raw[p.offset as usize..p.offset as usize + p.len as usize]),
                // Checked again, for the error that names the blob and its pack.
                _ => check.blob(pack, raw, &p.id, p.offset, p.len),
            };
            checked = Some(match verdict {
                Ok(blob) => (&p.id, super::blobs::is_zero(blob), None),
                Err(e) => {
                    let blob = elsewhere(alt, &p.id, &p.location(pack, frame), e)?;
                    (&p.id, super::blobs::is_zero(&blob), Some(blob))
                }
            });
        }
        let (_, zero, other) = checked.as_ref().expect("set above");
        let zero = *zero;
        let here = p.offset as usize..p.offset as usize + p.len as usize;
        run = match run {
            Some((start, r))
                if !zero
                    && other.is_none()
                    && start + r.len() as u64 == p.at
                    && r.end == here.start =>
            {
                Some((start, r.start..here.end))
            }
            before => {
                if let Some((at, r)) = before {
                    out.write(&raw[r], at)?;
                }
                if zero {
                    out.done.mark(p.at, u64::from(p.len));
                } else if let Some(blob) = other {
                    out.write(blob, p.at)?;
                }
                (!zero && other.is_none()).then_some((p.at, here))
            }
        };
        (out.progress)(u64::from(p.len));
    }
    if let Some((at, r)) = run {
        out.write(&raw[r], at)?;
    }
    Ok(())
}

/// Blob `id` from a listing other than `failed`, which did not hold it (`cause`), or
/// `cause`.
fn elsewhere(alt: &mut Loader, id: &Id, failed: &Location, cause: Error) -> Result<Vec<u8>> {
    if cause.is_storage_failure() {
        return Err(cause);
    }
    match other_listing(alt, id, failed, &cause)? {
        Some(blob) => Ok(blob),
        None => Err(cause),
    }
}

/// Blob `id` from a listing other than `failed` (see [`Loader::load_elsewhere`]), as long as
/// `failed` says: the file's layout was planned with that length.
fn other_listing(
    alt: &mut Loader,
    id: &Id,
    failed: &Location,
    cause: &Error,
) -> Result<Option<Vec<u8>>> {
    match alt.load_elsewhere(id, failed, cause)? {
        Some(blob) if blob.len() != failed.len as usize => Err(Error::Invalid(format!(
            "blob {id} is listed as {} bytes long but is {}: the file cannot be laid out. `cairn check --read-data` names the damaged or planted index objects and packs to move out before `cairn repair index`",
            failed.len,
            blob.len()
        ))),
        found => Ok(found),
    }
}

/// Write the pieces of `job` of pack number `pack` blob by blob from other listings of their
/// blobs, its frame having failed (`failed`), or each first from its own listing when its
/// span or pack could not be read as a whole (`None`). A blob that cannot be read ends the
/// restore, with its error.
fn write_elsewhere(
    plan: &Plan,
    job: &Job,
    pack: u32,
    failed: Option<Error>,
    alt: &mut Loader,
    out: &mut Sink,
) -> Result<()> {
    // Once the job's own frame failed, it fails for every blob: not read again. A blob it
    // does not hold where listed fails alone (the frame holds the others).
    let mut failed = failed;
    // One blob held at a time (the pieces of one blob are adjacent).
    let (mut pieces, mut last) = (Vec::new(), None::<(Id, Vec<u8>)>);
    for start in job.pieces.clone().step_by(BATCH) {
        plan.read(start..(start + BATCH).min(job.pieces.end), &mut pieces)?;
        for p in &pieces {
            if last.as_ref().is_none_or(|(id, _)| *id != p.id) {
                let listed = p.location(pack, &job.frame);
                let (mut found, mut mismatch) = (None, None);
                if failed.is_none() {
                    match alt.load_at(&p.id, &listed) {
                        Ok(blob) => found = Some(blob),
                        Err(e) if e.is_storage_failure() => return Err(e),
                        Err(e @ Error::BlobMismatch { .. }) => mismatch = Some(e),
                        Err(e) => failed = Some(e),
                    }
                }
                if let (None, Some(cause)) = (&found, mismatch.as_ref().or(failed.as_ref())) {
                    found = other_listing(alt, &p.id, &listed, cause)?;
                }
                let Some(blob) = found else {
                    return Err(mismatch.or(failed).expect("set when nothing was found"));
                };
                last = Some((p.id, blob));
            }
            let blob = &last.as_ref().expect("set above").1;
            if super::blobs::is_zero(blob) {
                out.done.mark(p.at, u64::from(p.len));
            } else {
                out.write(blob, p.at)?;
            }
            (out.progress)(u64::from(p.len));
        }
    }
    Ok(())
}

/// Write the spans no pack yielded (each range of spans with why), blob by blob (see
/// [`write_elsewhere`]).
fn write_unread(
    plan: &Plan,
    unread: Vec<(Range<usize>, Error)>,
    alt: &mut Loader,
    mut out: Sink,
) -> Result<()> {
    for (spans, cause) in unread {
        tracing::debug!("spans {spans:?} read blob by blob: {cause}");
        for span in &plan.spans[spans] {
            for job in &plan.jobs[span.jobs.clone()] {
                write_elsewhere(plan, job, span.pack, None, alt, &mut out)?;
            }
        }
    }
    Ok(())
}

#[cfg(test)]
impl Plan {
    /// Where the pieces are: "memory" or "disk".
    pub(super) fn pieces_kind(&self) -> &'static str {
        match self.pieces {
            Pieces::Memory { .. } => "memory",
            Pieces::Disk(_) => "disk",
        }
    }

    /// Each pack in the order read (its id in `index`) and its spans.
    pub(super) fn pack_order(&self, index: &Index) -> Vec<(Id, Vec<(u64, u64)>)> {
        self.packs
            .iter()
            .map(|r| {
                let spans = &self.spans[r.clone()];
                let pack = index.pack(spans[0].pack).id;
                (pack, spans.iter().map(|s| (s.start, s.end)).collect())
            })
            .collect()
    }
}
