//! The sha256 trailer etcd appends to a snapshot, and the bbolt facts, computed from the bytes
//! in file order by [`BlockCheck`] on two side threads: beside a backup's chunking (fed the
//! blocks [`Saver::save_pages`] reads, shared with it instead of copied), and beside a
//! restore's writes (fed the pieces its follower reads back as the file's prefix completes).
//!
//! [`Saver::save_pages`]: crate::saver::Saver::save_pages

use crate::pages::Block;
use cairn_format::bbolt::{BboltError, SnapshotStatus, StreamInspector};
use crossbeam_channel::{bounded, Receiver, Sender};
use sha2::{Digest as _, Sha256};
use std::sync::Arc;
use std::thread::JoinHandle;

/// Length of the trailer.
pub const TRAILER_LEN: usize = 32;

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

/// The check of a stream fed in order, in shared pieces (a backup's blocks, a restore's
/// read-back buffers). The trailer's sha256 and the bbolt inspection run on two threads of
/// their own, so that neither waits for the other (the sha256 alone takes about as long as
/// hashing every page).
pub struct BlockCheck<P = Block> {
    hash: Option<Side<Verdict, P>>,
    inspect: Option<Side<Result<SnapshotStatus, BboltError>, P>>,
    /// Whether the bbolt facts were asked for.
    facts: bool,
    len: u64,
}

/// One side thread and the channel feeding it (closed at the end of the stream).
struct Side<T, P> {
    tx: Option<Sender<Arc<P>>>,
    worker: JoinHandle<T>,
}

impl<T: Send + 'static, P: Send + Sync + 'static> Side<T, P> {
    fn spawn(name: &str, run: impl FnOnce(Receiver<Arc<P>>) -> T + Send + 'static) -> Option<Self> {
        let (tx, rx) = bounded::<Arc<P>>(4);
        let worker = std::thread::Builder::new()
            .name(name.into())
            .spawn(move || run(rx))
            .ok()?;
        Some(Side {
            tx: Some(tx),
            worker,
        })
    }

    fn join(mut self) -> Option<T> {
        drop(self.tx.take());
        self.worker.join().ok()
    }
}

impl<P: AsRef<[u8]> + Send + Sync + 'static> BlockCheck<P> {
    /// Start the side threads; with `inspect`, one also computes the bbolt facts.
    pub fn new(inspect: bool) -> Self {
        let hash = Side::spawn("cairn-sha256", |rx: Receiver<Arc<P>>| {
            let mut hash = TrailerHash::new();
            for block in rx {
                hash.update((*block).as_ref());
            }
            hash.verdict()
        });
        let inspect_side = inspect
            .then(|| {
                Side::spawn("cairn-bbolt", |rx: Receiver<Arc<P>>| {
                    let mut inspector = StreamInspector::with_store(
                        crate::summary_file::SummaryFile::new(),
                        crate::summary_file::IN_MEMORY_PAGES,
                    );
                    for block in rx {
                        inspector.update((*block).as_ref());
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
    pub fn feed(&mut self, block: &Arc<P>) {
        self.len += (**block).as_ref().len() as u64;
        for tx in [
            self.hash.as_ref().and_then(|s| s.tx.as_ref()),
            self.inspect.as_ref().and_then(|s| s.tx.as_ref()),
        ]
        .into_iter()
        .flatten()
        {
            let _ = tx.send(block.clone());
        }
    }

    /// The stream ended: the side threads finish their work (the sha256's last block, the
    /// bbolt facts from the page summaries) while the caller goes on; [`BlockCheck::finish`]
    /// collects it. Blocks fed after this are not checked.
    pub fn close(&mut self) {
        for side in [
            self.hash.as_mut().map(|s| &mut s.tx),
            self.inspect.as_mut().map(|s| &mut s.tx),
        ]
        .into_iter()
        .flatten()
        {
            drop(side.take());
        }
    }

    /// Bytes fed so far.
    pub fn fed(&self) -> u64 {
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

#[cfg(test)]
mod tests {
    use super::*;

    fn check(data: &[u8], step: usize) -> Digest {
        let mut d = BlockCheck::new(false);
        for piece in data.chunks(step) {
            d.feed(&Arc::new(piece.to_vec()));
        }
        assert_eq!(d.fed(), data.len() as u64);
        d.finish().unwrap()
    }

    #[test]
    fn closing_early_gives_the_same_verdict() {
        let db: Vec<u8> = (0..100_000u32).map(|i| (i % 251) as u8).collect();
        let mut with = db.clone();
        with.extend_from_slice(&Sha256::digest(&db));
        let mut d = BlockCheck::new(false);
        for piece in with.chunks(4096) {
            d.feed(&Arc::new(piece.to_vec()));
        }
        d.close();
        d.close();
        assert_eq!(d.finish().unwrap().verdict, Verdict::Valid);
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
    }
}
