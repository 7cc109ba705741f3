//! The sha256 trailer etcd appends to a snapshot, checked on a side thread.
//!
//! [`TrailerCheck`] passes a reader through unchanged and sends copies of the bytes (in 1 MiB
//! pieces, through a bounded channel) to a second thread, which hashes everything but the last
//! 32 bytes and, for live snapshots, runs the streaming bbolt inspector. Hashing and inspection
//! thus run beside chunking instead of after it.

use cairn_format::bbolt::{BboltError, SnapshotStatus, StreamInspector};
use crossbeam_channel::{bounded, Receiver, Sender};
use sha2::{Digest as _, Sha256};
use std::io::{self, Read};
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

/// The side thread: sha256 of all but the last 32 bytes, compared with them; bbolt facts.
fn side(rx: Receiver<Vec<u8>>, inspect: bool) -> Digest {
    let mut digester = Digester::new(inspect);
    for piece in rx {
        digester.update(&piece);
    }
    digester.finish()
}

/// The trailer check (and bbolt facts) of bytes fed in file order, on the caller's thread.
pub struct Digester {
    hasher: Sha256,
    /// The newest 32 bytes, not hashed yet: they may be the trailer.
    tail: Vec<u8>,
    inspector: Option<StreamInspector>,
    len: u64,
}

impl Digester {
    /// A digester that has seen nothing; with `inspect`, it also computes the bbolt facts.
    pub fn new(inspect: bool) -> Self {
        Digester {
            hasher: Sha256::new(),
            tail: Vec::with_capacity(2 * TRAILER_LEN),
            inspector: inspect.then(StreamInspector::new),
            len: 0,
        }
    }

    /// Bytes fed so far.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// Take the next bytes of the file.
    pub fn update(&mut self, piece: &[u8]) {
        self.len += piece.len() as u64;
        if let Some(i) = self.inspector.as_mut() {
            i.update(piece);
        }
        // Everything except the newest 32 bytes is known not to be trailer: hash it.
        if piece.len() >= TRAILER_LEN {
            self.hasher.update(&self.tail);
            self.hasher.update(&piece[..piece.len() - TRAILER_LEN]);
            self.tail.clear();
            self.tail
                .extend_from_slice(&piece[piece.len() - TRAILER_LEN..]);
        } else {
            self.tail.extend_from_slice(piece);
            if self.tail.len() > TRAILER_LEN {
                let extra = self.tail.len() - TRAILER_LEN;
                self.hasher.update(&self.tail[..extra]);
                self.tail.drain(..extra);
            }
        }
    }

    /// The verdict on the trailer and, if asked for, the bbolt facts.
    pub fn finish(self) -> Digest {
        let verdict =
            if self.tail.len() == TRAILER_LEN && self.hasher.finalize().as_slice() == self.tail {
                Verdict::Valid
            } else {
                Verdict::Invalid
            };
        Digest {
            verdict,
            bbolt: self.inspector.map(StreamInspector::finish),
        }
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
