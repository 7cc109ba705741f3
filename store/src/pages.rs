//! Saving a stream of fixed-size pages (an etcd database's 4 KiB bbolt pages) with the keyed
//! hashing spread over every core.
//!
//! A daily etcd backup finds almost every page already stored, so its cost is reading the stream
//! and hashing it. The reader (the calling thread) fills recycled blocks of [`BLOCK_PAGES`]
//! pages, shows each block to the caller's `tap` (which checks the snapshot's sha256 trailer and
//! inspects the bbolt pages on its own thread, from the same memory: nothing is copied), and
//! hands it to hashing threads, one per core, which compute the ids of its pages. The calling
//! thread then takes blocks back in stream order, looks each id up and stores the pages that are
//! new. At most [`BLOCKS_IN_FLIGHT`] blocks exist, allocated once per save, so memory is fixed
//! whatever the stream's size.
//!
//! A backup starts reading and hashing before its lease, index and previous content list are
//! loaded ([`save_pages`] with a [`Pending`] saver): the hashing needs only the repository's
//! keys. From a file, the blocks hashed meanwhile are let go and their new pages read again by
//! offset once the index says which are new; from a stream, the reading waits for the saver
//! once every block is in flight.

use crate::pending::Pending;
use crate::saver::Saver;
use crate::{Error, Result};
use cairn_format::content_list::LIST_SEGMENT_IDS;
use cairn_format::pack::PackKind;
use cairn_format::tree::{ListSegment, Node};
use cairn_format::{ChunkIdKey, Id};
use crossbeam_channel::{bounded, never, select, Receiver, Sender};
use std::collections::BTreeMap;
use std::fs::File;
use std::io::{self, Read};
use std::os::unix::fs::FileExt;
use std::sync::Arc;

/// Pages per block.
pub const BLOCK_PAGES: usize = 256;
/// Blocks allocated per save: those being read, tapped, hashed and stored at once. Six keep
/// both hashing threads and the sha256 trailer check busy on two cores (a daily incremental is
/// as fast as with eight; with four it is ~10% slower), for 6 MiB.
pub const BLOCKS_IN_FLIGHT: usize = 6;

/// One block of the stream. When its last holder drops it, its buffer goes back to the pool.
pub struct Block {
    data: Vec<u8>,
    pool: Sender<Vec<u8>>,
}

impl Block {
    /// The block's bytes.
    pub fn bytes(&self) -> &[u8] {
        &self.data
    }
}

impl AsRef<[u8]> for Block {
    fn as_ref(&self) -> &[u8] {
        &self.data
    }
}

impl Drop for Block {
    fn drop(&mut self) {
        // The pool has room for every buffer; after the save it is gone, and so is the buffer.
        let _ = self.pool.try_send(std::mem::take(&mut self.data));
    }
}

/// A block whose page ids were computed.
struct Hashed {
    block: Arc<Block>,
    ids: Vec<Id>,
}

/// Fill `buf` from `reader`; the number of bytes read (short only at the end of the stream).
fn fill(reader: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut filled = 0;
    while filled < buf.len() {
        match reader.read(&mut buf[filled..]) {
            Ok(0) => break,
            Ok(n) => filled += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(filled)
}

/// The hashing threads' loop: ids of every `page`-byte piece of each block.
fn hash_blocks(
    key: &ChunkIdKey,
    page: usize,
    rx: Receiver<(u64, Arc<Block>)>,
    tx: Sender<(u64, Hashed)>,
) {
    for (seq, block) in rx {
        let mut ids = Vec::with_capacity(block.bytes().len().div_ceil(page));
        key.ids(block.bytes().chunks(page), &mut ids);
        if tx.send((seq, Hashed { block, ids })).is_err() {
            return;
        }
    }
}

impl AsMut<Saver> for Saver {
    fn as_mut(&mut self) -> &mut Saver {
        self
    }
}

impl Saver {
    /// Cut `reader` into pages of `page` bytes (the last one may be shorter), store the new ones
    /// as data blobs and return their ids in order (see [`Paged`]) and the stream's length.
    /// `tap` sees every block of the stream once, in order, before its pages are stored;
    /// `progress` is told the bytes of each block stored. The outer error is the repository's;
    /// the inner one is the source's (the stream could not be read), after which the saver
    /// remains usable.
    pub fn save_pages<R: Read>(
        &mut self,
        reader: R,
        page: u32,
        tap: impl FnMut(&Arc<Block>),
        progress: impl FnMut(u64),
    ) -> Result<io::Result<Paged>> {
        let key = self.chunk_id_key();
        save_pages(
            &mut Pending::ready(self),
            &key,
            reader,
            None,
            page,
            tap,
            progress,
        )
    }
}

/// The ids of a stream's pages as [`save_pages`] stored them: in `ids`, or, for a stream of
/// [`LIST_SEGMENT_IDS`] pages or more, in content lists written as the pages were stored
/// (the list blob and how many ids it holds, in order), so that a large database's ids are
/// never all held at once (the last, shorter list too).
#[derive(Debug, Default)]
pub struct Paged {
    /// The pages' ids, when not in `lists`.
    pub ids: Vec<Id>,
    /// The content lists holding them, when the stream was long.
    pub lists: Vec<(Id, u64)>,
    /// The stream's length.
    pub size: u64,
}

impl Paged {
    /// The content of file `node`: its ids, or its lists (each one resolves on its own).
    pub fn place_in(self, node: &mut Node) {
        node.size = self.size;
        node.content = self.ids;
        node.list_segments = self
            .lists
            .iter()
            .map(|&(_, ids)| ListSegment { chain: 1, ids })
            .collect();
        node.content_lists = self.lists.into_iter().map(|(id, _)| id).collect();
    }
}

/// [`Saver::save_pages`] into a saver that may still be being set up (a backup's lease, index
/// and previous content list loading on another thread): the stream is read, tapped and hashed
/// with `key` meanwhile. When `reread` is the file `reader` reads, blocks hashed before the
/// saver is ready are let go, keeping only their page ids; once it is ready, the ids are looked
/// up and the new pages read again from the file by offset, each checked against its id (a file
/// changed since is the source's error). Without `reread` (a stream) at most
/// [`BLOCKS_IN_FLIGHT`] blocks are read ahead.
pub fn save_pages<S: AsMut<Saver>, R: Read>(
    store: &mut Pending<S>,
    key: &ChunkIdKey,
    mut reader: R,
    reread: Option<&File>,
    page: u32,
    mut tap: impl FnMut(&Arc<Block>),
    mut progress: impl FnMut(u64),
) -> Result<io::Result<Paged>> {
    let page = page.clamp(64, cairn_format::MAX_BLOB_LEN) as usize;
    let block_len = page * BLOCK_PAGES;
    let hashers = std::thread::available_parallelism().map_or(2, |n| n.get());
    // A file's ids are known in number: the list is allocated once, not grown by copying
    // (at most one list's worth and a block's: they go to lists as they are stored).
    let expected = reread
        .and_then(|f| f.metadata().ok())
        .map_or(0, |m| m.len().div_ceil(page as u64))
        .min((LIST_SEGMENT_IDS + BLOCK_PAGES) as u64) as usize;
    std::thread::scope(|scope| {
        // Created here so that they close when this closure returns, early or not, and the
        // hashing threads end before the scope waits for them.
        let (pool_tx, pool_rx) = bounded::<Vec<u8>>(BLOCKS_IN_FLIGHT);
        let (work_tx, work_rx) = bounded::<(u64, Arc<Block>)>(BLOCKS_IN_FLIGHT);
        let (done_tx, done_rx) = bounded::<(u64, Hashed)>(BLOCKS_IN_FLIGHT);
        for _ in 0..hashers {
            let (key, rx, tx) = (key.clone(), work_rx.clone(), done_tx.clone());
            scope.spawn(move || hash_blocks(&key, page, rx, tx));
        }
        drop((work_rx, done_tx));
        let mut run = PageRun {
            key,
            reread,
            page,
            ids: Vec::with_capacity(expected),
            first: 0,
            lists: Vec::new(),
            size: 0,
            looked: 0,
            next: 0,
            waiting: BTreeMap::new(),
        };
        let mut allocated = 0;
        let mut spare: Option<Vec<u8>> = None;
        let mut sent = 0u64;
        let mut eof = false;
        loop {
            while let Ok((seq, hashed)) = done_rx.try_recv() {
                run.waiting.insert(seq, hashed);
            }
            if let Some(saver) = store.poll()? {
                let saver = saver.as_mut();
                if let Err(e) = run.catch_up(saver)? {
                    return Ok(Err(e));
                }
                run.store_ready(saver, &mut progress)?;
            } else if run.reread.is_some() {
                run.hash_ahead(&mut progress);
            }
            if eof && run.next == sent {
                if store.is_ready() {
                    break;
                }
                store.get()?;
                continue;
            }
            if !eof {
                let free = spare
                    .take()
                    .or_else(|| pool_rx.try_recv().ok())
                    .or_else(|| {
                        (allocated < BLOCKS_IN_FLIGHT).then(|| {
                            allocated += 1;
                            vec![0u8; block_len]
                        })
                    });
                if let Some(mut buf) = free {
                    buf.resize(block_len, 0);
                    let n = match fill(&mut reader, &mut buf) {
                        Ok(n) => n,
                        Err(e) => return Ok(Err(e)),
                    };
                    buf.truncate(n);
                    eof = n < block_len;
                    if n > 0 {
                        let block = Arc::new(Block {
                            data: buf,
                            pool: pool_tx.clone(),
                        });
                        tap(&block);
                        if work_tx.send((sent, block)).is_err() {
                            return Err(hashers_stopped());
                        }
                        sent += 1;
                    }
                    continue;
                }
            }
            // Nothing to read into (or nothing left to read): wait for a hashed block, a
            // buffer to come free, or the saver.
            let free_buffers = if eof { never() } else { pool_rx.clone() };
            let arrival = store.arrival();
            select! {
                recv(done_rx) -> msg => match msg {
                    Ok((seq, hashed)) => {
                        run.waiting.insert(seq, hashed);
                    }
                    Err(_) => return Err(hashers_stopped()),
                },
                recv(free_buffers) -> buf => spare = buf.ok(),
                recv(arrival) -> made => store.accept(made)?,
            }
        }
        if !run.lists.is_empty() {
            // The rest, as the last list.
            run.write_lists(store.get()?.as_mut(), 1)?;
        }
        Ok(Ok(Paged {
            ids: std::mem::take(&mut run.ids),
            lists: std::mem::take(&mut run.lists),
            size: run.size,
        }))
    })
}

fn hashers_stopped() -> Error {
    Error::Invalid("page hashing threads stopped".into())
}

/// The stored part of a [`save_pages`]: blocks are stored (or, before the saver is ready,
/// their ids kept) in stream order.
struct PageRun<'a> {
    key: &'a ChunkIdKey,
    reread: Option<&'a File>,
    page: usize,
    /// Ids of the pages from `first` on not yet in a list.
    ids: Vec<Id>,
    /// Pages whose ids went to `lists`.
    first: usize,
    /// The content lists written so far, and how many ids each holds.
    lists: Vec<(Id, u64)>,
    size: u64,
    /// Ids before this one (in `ids`) were looked up (the others were hashed ahead of the
    /// saver).
    looked: usize,
    /// The next block to store.
    next: u64,
    /// Hashed blocks that arrived before their turn.
    waiting: BTreeMap<u64, Hashed>,
}

impl PageRun<'_> {
    /// Store every waiting block whose turn it is.
    /// A list is written as soon as its ids are all stored: at most one list's ids and a
    /// block's are held (the capacity `ids` was given), however many blocks were waiting.
    fn store_ready(&mut self, saver: &mut Saver, progress: &mut impl FnMut(u64)) -> Result<()> {
        while let Some(hashed) = self.waiting.remove(&self.next) {
            let bytes = hashed.block.bytes();
            for (id, data) in hashed.ids.iter().zip(bytes.chunks(self.page)) {
                saver.add_hashed(PackKind::Data, *id, data)?;
            }
            self.ids.extend_from_slice(&hashed.ids);
            self.size += bytes.len() as u64;
            progress(bytes.len() as u64);
            self.next += 1;
            self.looked = self.ids.len();
            self.write_lists(saver, LIST_SEGMENT_IDS)?;
        }
        self.looked = self.ids.len();
        self.write_lists(saver, LIST_SEGMENT_IDS)
    }

    /// Once every id held is looked up: write the ids of each [`LIST_SEGMENT_IDS`] pages as a
    /// content list (written against the saver's list base, as `Saver::save_tree` would) and
    /// let them go, while at least `least` are held.
    fn write_lists(&mut self, saver: &mut Saver, least: usize) -> Result<()> {
        while self.looked == self.ids.len() && self.ids.len() >= least.max(1) {
            let n = self.ids.len().min(LIST_SEGMENT_IDS);
            let list = saver.add_content_list(self.lists.len(), &self.ids[..n])?;
            self.lists.push((list, n as u64));
            self.ids.drain(..n);
            self.first += n;
            self.looked = self.ids.len();
        }
        Ok(())
    }

    /// Before the saver is ready: keep the ids of every waiting block whose turn it is and let
    /// the blocks go (their pages can be read again from the file).
    fn hash_ahead(&mut self, progress: &mut impl FnMut(u64)) {
        while let Some(hashed) = self.waiting.remove(&self.next) {
            self.ids.extend_from_slice(&hashed.ids);
            let len = hashed.block.bytes().len() as u64;
            self.size += len;
            progress(len);
            self.next += 1;
        }
    }

    /// Once the saver is ready: look up the ids hashed ahead and store their new pages, read
    /// again from the file and checked against their ids.
    fn catch_up(&mut self, saver: &mut Saver) -> Result<io::Result<()>> {
        let (Some(file), true) = (self.reread, self.looked < self.ids.len()) else {
            return Ok(Ok(()));
        };
        let mut buf = vec![0u8; self.page];
        let mut read_again = 0usize;
        for (i, id) in self.ids.iter().enumerate().skip(self.looked) {
            if saver.contains(id) {
                continue;
            }
            read_again += 1;
            let at = (self.first + i) as u64 * self.page as u64;
            let len = (self.size - at).min(self.page as u64) as usize;
            let data = &mut buf[..len];
            if let Err(e) = file.read_exact_at(data, at) {
                return Ok(Err(changed(at, &e.to_string())));
            }
            if self.key.id(data) != *id {
                return Ok(Err(changed(at, "its bytes differ from those read first")));
            }
            saver.add_hashed(PackKind::Data, *id, data)?;
        }
        tracing::debug!(
            "pages: {} pages were hashed before the index was loaded; {read_again} of them are new, read again",
            self.ids.len() - self.looked
        );
        self.looked = self.ids.len();
        Ok(Ok(()))
    }
}

/// The error of a page that could not be read again as it was first read.
fn changed(at: u64, why: &str) -> io::Error {
    io::Error::other(format!(
        "the file changed while it was backed up: the page at byte {at} could not be read again ({why}); back up a copy nobody writes to"
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;
    use crate::index::Index;
    use crate::loader::Loader;
    use crate::repo::{Credentials, InitOptions, Repository};
    use cairn_format::chunker::{ChunkPolicy, Chunker};

    fn bytes(len: usize, mut s: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                s ^= s << 13;
                s ^= s >> 7;
                s ^= s << 17;
                (s % 7) as u8
            })
            .collect()
    }

    /// Reads `data`, failing once `fail_at` bytes were passed if given, in odd-sized pieces.
    struct Source<'a> {
        data: &'a [u8],
        at: usize,
        fail_at: Option<usize>,
    }

    impl Read for Source<'_> {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            if self.fail_at.is_some_and(|f| self.at >= f) {
                return Err(io::Error::other("disk on fire"));
            }
            let n = buf.len().min(3001).min(self.data.len() - self.at);
            buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
            self.at += n;
            Ok(n)
        }
    }

    fn repo(dir: &std::path::Path) -> (Arc<Repository>, age::x25519::Identity) {
        let identity = age::x25519::Identity::generate();
        let repo = Repository::init(
            Box::new(LocalBackend::new(dir)),
            InitOptions {
                recipients: vec![identity.to_public().to_string()],
                pack_size: 1 << 20,
                ..InitOptions::default()
            },
        )
        .unwrap();
        (Arc::new(repo), identity)
    }

    #[test]
    fn pages_match_fixed_chunks_and_tap_sees_the_stream_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, identity) = repo(dir.path());
        // Several blocks, a repeated page, and a short last page.
        let mut data = bytes(4096 * (BLOCK_PAGES * 3 + 17) + 1000, 5);
        data[4096 * 9..4096 * 10].copy_from_slice(&bytes(4096, 9));
        data[4096 * 700..4096 * 701].copy_from_slice(&bytes(4096, 9));
        let expected: Vec<Id> = Chunker::new(&data[..], ChunkPolicy::Fixed(4096))
            .map(|c| repo.chunk_id_key().id(&c.unwrap()))
            .collect();
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        let mut tapped = Vec::new();
        let mut progressed = 0;
        let source = Source {
            data: &data,
            at: 0,
            fail_at: None,
        };
        let Paged { ids, size, .. } = saver
            .save_pages(
                source,
                4096,
                |b| tapped.extend_from_slice(b.bytes()),
                |n| progressed += n,
            )
            .unwrap()
            .unwrap();
        assert_eq!(ids, expected);
        assert_eq!(size, data.len() as u64);
        assert_eq!(progressed, data.len() as u64);
        assert!(tapped == data, "the tap saw the stream out of order");
        let (stats, _) = saver.finish().unwrap();
        assert_eq!(stats.blobs_added, expected.len() as u64 - 1);

        let full = Arc::new(
            Repository::open(
                Box::new(LocalBackend::new(dir.path())),
                Credentials::Identities(vec![Box::new(identity)]),
            )
            .unwrap(),
        );
        let index = Arc::new(Index::load(&full).unwrap());
        let mut loader = Loader::new(full.clone(), index.clone());
        let back: Vec<u8> = ids.iter().flat_map(|id| loader.load(id).unwrap()).collect();
        assert!(back == data);

        // Again, into the same repository: nothing new; an empty stream has no pages.
        let mut again = Saver::new(full, index, 2);
        let Paged { ids: ids2, .. } = again
            .save_pages(&data[..], 4096, |_| {}, |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(ids2, ids);
        let Paged { ids: none, .. } = again
            .save_pages(&[][..], 4096, |_| {}, |_| {})
            .unwrap()
            .unwrap();
        assert!(none.is_empty());
        assert_eq!(again.finish().unwrap().0.blobs_added, 0);
    }

    #[test]
    fn a_long_stream_goes_to_content_lists_as_it_is_stored() {
        // 64-byte pages: 10 MiB is 163,840 pages, two full lists and a half one.
        let dir = tempfile::tempdir().unwrap();
        let (repo, _) = repo(dir.path());
        let data = bytes(10 << 20, 11);
        let expected: Vec<Id> = Chunker::new(&data[..], ChunkPolicy::Fixed(64))
            .map(|c| repo.chunk_id_key().id(&c.unwrap()))
            .collect();
        let save = |base: Option<(Id, Node)>| {
            let index = Arc::new(Index::load(&repo).unwrap());
            let mut saver = Saver::new(repo.clone(), index.clone(), 2);
            if let Some((tree, node)) = base {
                let loader = Loader::new(repo.clone(), index);
                saver
                    .set_list_base(crate::content_lists::ListBase::of(loader, tree, node).unwrap());
            }
            let paged = saver
                .save_pages(&data[..], 64, |_| {}, |_| {})
                .unwrap()
                .unwrap();
            assert!(paged.ids.is_empty());
            let lens: Vec<u64> = paged.lists.iter().map(|l| l.1).collect();
            assert_eq!(lens, [65_536, 65_536, 32_768]);
            let mut node = Node::new(
                b"snapshot_x.db".to_vec(),
                cairn_format::tree::NodeKind::File,
            );
            paged.place_in(&mut node);
            assert_eq!(node.size, data.len() as u64);
            let root = saver
                .save_tree(&mut cairn_format::tree::Tree { nodes: vec![node] })
                .unwrap();
            let (stats, _) = saver.finish().unwrap();
            let mut loader = Loader::new(repo.clone(), Arc::new(Index::load(&repo).unwrap()));
            let node = loader.load_tree(&root).unwrap().nodes.remove(0);
            assert!(node.content == expected);
            (root, node, stats.blobs_added)
        };
        let (root, first, added) = save(None);
        assert_eq!(
            added,
            expected.len() as u64 + 3 + 1,
            "pages, lists and the tree"
        );
        // Again with the first as base: every list is the same blob, only the tree is new.
        let (_, again, added) = save(Some((root, first.clone())));
        assert_eq!(again.list_heads(), first.list_heads());
        assert_eq!(added, 0, "the same tree too");
    }

    #[test]
    fn a_read_error_is_the_sources_and_the_saver_stays_usable() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, _) = repo(dir.path());
        let data = bytes(4096 * BLOCK_PAGES * 5, 3);
        let mut saver = Saver::new(repo, Arc::new(Index::default()), 2);
        let source = Source {
            data: &data,
            at: 0,
            fail_at: Some(4096 * BLOCK_PAGES * 2 + 5),
        };
        let err = saver
            .save_pages(source, 4096, |_| {}, |_| {})
            .unwrap()
            .unwrap_err();
        assert_eq!(err.to_string(), "disk on fire");
        let Paged { ids, .. } = saver
            .save_pages(&data[..4096 * 3], 4096, |_| {}, |_| {})
            .unwrap()
            .unwrap();
        assert_eq!(ids.len(), 3);
        saver.finish().unwrap();
    }

    /// A saver that is made only once `go` delivers, on another thread.
    fn late_saver(repo: &Arc<Repository>, go: Receiver<()>) -> Pending<Saver> {
        let repo = repo.clone();
        Pending::spawn("late", "a saver", move || {
            let _ = go.recv();
            Ok(Saver::new(repo, Arc::new(Index::default()), 2))
        })
        .unwrap()
    }

    #[test]
    fn pages_hashed_ahead_of_the_saver_are_read_again_from_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, identity) = repo(dir.path());
        let mut data = bytes(4096 * (BLOCK_PAGES * 4 + 3) + 100, 11);
        data[4096 * 2..4096 * 3].copy_from_slice(&bytes(4096, 2));
        data[4096 * 900..4096 * 901].copy_from_slice(&bytes(4096, 2));
        let path = dir.path().join("db");
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let expected: Vec<Id> = data
            .chunks(4096)
            .map(|p| repo.chunk_id_key().id(p))
            .collect();
        // The saver comes only once the whole file was read: every page is hashed ahead.
        let (go_tx, go) = bounded(1);
        let mut store = late_saver(&repo, go);
        let mut tapped = 0;
        let Paged { ids, size, .. } = save_pages(
            &mut store,
            &repo.chunk_id_key(),
            &file,
            Some(&file),
            4096,
            |b| {
                tapped += b.bytes().len();
                if tapped == data.len() {
                    go_tx.send(()).unwrap();
                }
            },
            |_| {},
        )
        .unwrap()
        .unwrap();
        assert_eq!(ids, expected);
        assert_eq!(size, data.len() as u64);
        let saver = store.wait().unwrap();
        assert_eq!(
            saver.finish().unwrap().0.blobs_added,
            expected.len() as u64 - 1
        );

        let full = Arc::new(
            Repository::open(
                Box::new(LocalBackend::new(dir.path())),
                Credentials::Identities(vec![Box::new(identity)]),
            )
            .unwrap(),
        );
        let mut loader = Loader::new(full.clone(), Arc::new(Index::load(&full).unwrap()));
        let back: Vec<u8> = ids.iter().flat_map(|id| loader.load(id).unwrap()).collect();
        assert!(back == data);
    }

    #[test]
    fn a_file_changed_before_its_pages_are_read_again_is_the_sources_error() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, _) = repo(dir.path());
        let data = bytes(4096 * BLOCK_PAGES * 2, 4);
        let path = dir.path().join("db");
        std::fs::write(&path, &data).unwrap();
        let file = File::open(&path).unwrap();
        let (go_tx, go) = bounded(1);
        let mut store = late_saver(&repo, go);
        let mut rewritten = false;
        let err = save_pages(
            &mut store,
            &repo.chunk_id_key(),
            &file,
            Some(&file),
            4096,
            |_| {},
            |_| {
                // The first block was hashed ahead and let go: rewrite one of its pages before
                // the saver is there to store it.
                if !rewritten {
                    rewritten = true;
                    let w = std::fs::OpenOptions::new().write(true).open(&path).unwrap();
                    w.write_all_at(&[0xff; 10], 4096 * 3).unwrap();
                    go_tx.send(()).unwrap();
                }
            },
        )
        .unwrap()
        .unwrap_err();
        assert!(
            err.to_string().contains("changed while it was backed up"),
            "{err}"
        );
        assert!(err.to_string().contains("byte 12288"), "{err}");
    }

    #[test]
    fn a_stream_waits_for_a_late_saver_with_every_block_in_flight() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, _) = repo(dir.path());
        let data = bytes(4096 * BLOCK_PAGES * (BLOCKS_IN_FLIGHT + 3) + 5, 8);
        let (go_tx, go) = bounded(1);
        let mut store = late_saver(&repo, go);
        let late = std::thread::spawn(move || {
            std::thread::sleep(std::time::Duration::from_millis(300));
            go_tx.send(()).unwrap();
        });
        let Paged { ids, size, .. } = save_pages(
            &mut store,
            &repo.chunk_id_key(),
            &data[..],
            None,
            4096,
            |_| {},
            |_| {},
        )
        .unwrap()
        .unwrap();
        late.join().unwrap();
        assert_eq!(size, data.len() as u64);
        assert_eq!(ids.len(), data.len().div_ceil(4096));
        let saver = store.wait().unwrap();
        assert_eq!(saver.finish().unwrap().0.blobs_added, ids.len() as u64);
    }
}
