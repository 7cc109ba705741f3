//! The sha256 trailer etcd appends to a snapshot, checked on a side thread.
//!
//! [`TrailerCheck`] passes a reader through unchanged and sends copies of the bytes (in 1 MiB
//! pieces, through a bounded channel) to a second thread, which hashes everything but the last
//! 32 bytes and, for live snapshots, runs the streaming bbolt inspector. Hashing and inspection
//! thus run beside chunking instead of after it. [`BlockCheck`] does the same with the blocks
//! [`Saver::save_pages`] reads, shared with it instead of copied.
//!
//! [`Saver::save_pages`]: cairn_store::saver::Saver::save_pages

use cairn_format::bbolt::{BboltError, SnapshotStatus, StreamInspector};
use cairn_store::pages::Block;
use crossbeam_channel::{bounded, Receiver, Sender};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Length of the trailer.
pub const TRAILER_LEN: usize = 32;
const PIECE: usize = 1 << 20;

/// Whether the last 32 bytes are the sha256 of the rest.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// They are.
    Valid,
    /// They are not (no trailer, or damaged data).
    Invalid,
}

/// What the side thread learnt once the stream ended.
#[derive(Debug)]
pub struct Digest {
    /// Trailer check.
    pub verdict: Verdict,
    /// bbolt facts, when inspection was asked for.
    pub bbolt: Option<Result<SnapshotStatus, BboltError>>,
}

/// Passes `inner` through unchanged while the side thread checks it.
pub struct TrailerCheck<R> {
    inner: R,
    piece: Vec<u8>,
    tx: Option<Sender<Vec<u8>>>,
    worker: Option<JoinHandle<Digest>>,
    len: u64,
    eof: bool,
}

impl<R: Read> TrailerCheck<R> {
    /// Wrap a reader; with `inspect`, also compute the bbolt facts from the stream.
    pub fn new(inner: R, inspect: bool) -> Self {
        let (tx, rx) = bounded::<Vec<u8>>(4);
        let worker = std::thread::Builder::new()
            .name("cairn-digest".into())
            .spawn(move || side(rx, inspect))
            .ok();
        TrailerCheck {
            inner,
            piece: Vec::with_capacity(PIECE),
            tx: Some(tx),
            worker,
            len: 0,
            eof: false,
        }
    }

    /// Bytes passed through so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Wait for the side thread. None if the stream was not read to its end.
    pub fn finish(mut self) -> Option<Digest> {
        if !self.eof {
            return None;
        }
        self.flush();
        drop(self.tx.take());
        self.worker.take()?.join().ok()
    }

    fn flush(&mut self) {
        if self.piece.is_empty() {
            return;
        }
        let piece = std::mem::replace(&mut self.piece, Vec::with_capacity(PIECE));
        if let Some(tx) = &self.tx {
            let _ = tx.send(piece);
        }
    }
}

impl<R: Read> Read for TrailerCheck<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        if n == 0 {
            self.eof = true;
            return Ok(0);
        }
        self.len += n as u64;
        self.piece.extend_from_slice(&buf[..n]);
        if self.piece.len() >= PIECE {
            self.flush();
        }
        Ok(n)
    }
}

/// The check of a stream that [`Saver::save_pages`] reads: fed its blocks in order. The
/// trailer's sha256 and the bbolt inspection run on two threads of their own, so that neither
/// waits for the other (the sha256 alone takes about as long as hashing every page).
///
/// [`Saver::save_pages`]: cairn_store::saver::Saver::save_pages
pub struct BlockCheck {
    hash: Option<Side<Verdict>>,
    inspect: Option<Side<Result<SnapshotStatus, BboltError>>>,
    /// Whether the bbolt facts were asked for.
    facts: bool,
    len: u64,
}

/// One side thread and the channel feeding it.
struct Side<T> {
    tx: Sender<Arc<Block>>,
    worker: JoinHandle<T>,
}

impl<T: Send + 'static> Side<T> {
    fn spawn(
        name: &str,
        run: impl FnOnce(Receiver<Arc<Block>>) -> T + Send + 'static,
    ) -> Option<Self> {
        let (tx, rx) = bounded::<Arc<Block>>(4);
        let worker = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(rx))
            .ok()?;
        Some(Side { tx, worker })
    }

    fn join(self) -> Option<T> {
        drop(self.tx);
        self.worker.join().ok()
    }
}

impl BlockCheck {
    /// Start the side threads; with `inspect`, one also computes the bbolt facts.
    pub fn new(inspect: bool) -> Self {
        let hash = Side::spawn("cairn-sha256", |rx| {
            let mut hash = TrailerHash::new();
            for block in rx {
                hash.update(block.bytes());
            }
            hash.verdict()
        });
        let inspect_side = inspect
            .then(|| {
                Side::spawn("cairn-bbolt", |rx| {
                    let mut inspector = StreamInspector::new();
                    for block in rx {
                        inspector.update(block.bytes());
                    }
                    inspector.finish()
                })
            })
            .flatten();
        BlockCheck {
            hash,
            facts: inspect,
            inspect: inspect_side,
            len: 0,
        }
    }

    /// The stream's next block.
    pub fn feed(&mut self, block: &Arc<Block>) {
        self.len += block.bytes().len() as u64;
        for tx in [
            self.hash.as_ref().map(|s| &s.tx),
            self.inspect.as_ref().map(|s| &s.tx),
        ]
        .into_iter()
        .flatten()
        {
            let _ = tx.send(block.clone());
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Wait for the side threads, once the stream was fed to its end. None if one of them
    /// could not be started or died.
    pub fn finish(self) -> Option<Digest> {
        let bbolt = self.inspect.and_then(Side::join);
        if self.facts && bbolt.is_none() {
            return None;
        }
        Some(Digest {
            verdict: self.hash?.join()?,
            bbolt,
        })
    }
}

/// sha256 of all but the last 32 bytes of a stream fed in pieces, compared with them.
struct TrailerHash {
    hasher: Sha256,
    tail: Vec<u8>,
}

impl TrailerHash {
    fn new() -> Self {
        TrailerHash {
            hasher: Sha256::new(),
            tail: Vec::with_capacity(2 * TRAILER_LEN),
        }
    }

    fn update(&mut self, piece: &[u8]) {
        let tail = &mut self.tail;
        // Everything except the newest 32 bytes is known not to be trailer: hash it.
        if piece.len() >= TRAILER_LEN {
            self.hasher.update(&tail[..]);
            self.hasher.update(&piece[..piece.len() - TRAILER_LEN]);
            tail.clear();
            tail.extend_from_slice(&piece[piece.len() - TRAILER_LEN..]);
        } else {
            tail.extend_from_slice(piece);
            if tail.len() > TRAILER_LEN {
                let extra = tail.len() - TRAILER_LEN;
                self.hasher.update(&tail[..extra]);
                tail.drain(..extra);
            }
        }
    }

    fn verdict(self) -> Verdict {
        if self.tail.len() == TRAILER_LEN && self.hasher.finalize().as_slice() == self.tail {
            Verdict::Valid
        } else {
            Verdict::Invalid
        }
    }
}

/// The side thread of [`TrailerCheck`]: the trailer check and, with `inspect`, the bbolt facts.
fn side(rx: Receiver<Vec<u8>>, inspect: bool) -> Digest {
    let mut hash = TrailerHash::new();
    let mut inspector = inspect.then(StreamInspector::new);
    for piece in rx {
        if let Some(i) = inspector.as_mut() {
            i.update(&piece);
        }
        hash.update(&piece);
    }
    Digest {
        verdict: hash.verdict(),
        bbolt: inspector.map(StreamInspector::finish),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn check(data: &[u8], step: usize) -> Digest {
        let mut r = TrailerCheck::new(data, false);
        let mut buf = vec![0u8; step];
        while r.read(&mut buf).unwrap() > 0 {}
        assert_eq!(r.len(), data.len() as u64);
        r.finish().unwrap()
    }

    #[test]
    fn detects_valid_and_invalid_trailers_at_any_read_size() {
        let db: Vec<u8> = (0..3_000_000u32).map(|i| (i % 253) as u8).collect();
        let mut with = db.clone();
        with.extend_from_slice(&Sha256::digest(&db));
        for step in [1, 7, 31, 32, 33, 4096, 100_000, 5_000_000] {
            if step == 1 && with.len() > 100_000 {
                continue;
            }
            assert_eq!(check(&with, step).verdict, Verdict::Valid, "step {step}");
            assert_eq!(check(&db, step).verdict, Verdict::Invalid);
        }
        let small = b"tiny";
        let mut with_small = small.to_vec();
        with_small.extend_from_slice(&Sha256::digest(small));
        assert_eq!(check(&with_small, 1).verdict, Verdict::Valid);
        let mut bad = with.clone();
        bad[5] ^= 1;
        assert_eq!(check(&bad, 4096).verdict, Verdict::Invalid);
        assert_eq!(check(&[], 10).verdict, Verdict::Invalid);
        let unfinished = TrailerCheck::new(&with[..], false);
        assert!(unfinished.finish().is_none());
    }
}
