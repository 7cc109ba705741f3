//! The sha256 trailer etcd appends to a snapshot: a pass-through reader that hashes everything
//! but the last 32 bytes and, at the end, says whether those 32 bytes are that hash.

use sha2::{Digest, Sha256};
use std::io::{self, Read};

/// Length of the trailer.
pub const TRAILER_LEN: usize = 32;

/// Passes `inner` through unchanged while checking its trailer.
pub struct TrailerCheck<R> {
    inner: R,
    hasher: Sha256,
    tail: Vec<u8>,
    len: u64,
    eof: bool,
}

/// Outcome once the stream is read to the end.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Verdict {
    /// The last 32 bytes are the sha256 of the rest.
    Valid,
    /// They are not (no trailer, or damaged data).
    Invalid,
}

impl<R: Read> TrailerCheck<R> {
    /// Wrap a reader.
    pub fn new(inner: R) -> Self {
        TrailerCheck {
            inner,
            hasher: Sha256::new(),
            tail: Vec::with_capacity(2 * TRAILER_LEN),
            len: 0,
            eof: false,
        }
    }

    /// Total bytes passed through.
    pub fn len(&self) -> u64 {
        self.len
    }

    /// The verdict; None until the end of the stream was reached.
    pub fn verdict(&self) -> Option<Verdict> {
        if !self.eof {
            return None;
        }
        if self.tail.len() == TRAILER_LEN && self.hasher.clone().finalize().as_slice() == self.tail
        {
            Some(Verdict::Valid)
        } else {
            Some(Verdict::Invalid)
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
        let data = &buf[..n];
        // Everything except the newest 32 bytes is known not to be trailer: hash it.
        if data.len() >= TRAILER_LEN {
            self.hasher.update(&self.tail);
            self.hasher.update(&data[..data.len() - TRAILER_LEN]);
            self.tail.clear();
            self.tail
                .extend_from_slice(&data[data.len() - TRAILER_LEN..]);
        } else {
            self.tail.extend_from_slice(data);
            if self.tail.len() > TRAILER_LEN {
                let extra = self.tail.len() - TRAILER_LEN;
                self.hasher.update(&self.tail[..extra]);
                self.tail.drain(..extra);
            }
        }
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain<R: Read>(r: &mut R, step: usize) {
        let mut buf = vec![0u8; step];
        while r.read(&mut buf).unwrap() > 0 {}
    }

    #[test]
    fn detects_valid_and_invalid_trailers_at_any_read_size() {
        let db: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let mut with = db.clone();
        with.extend_from_slice(&Sha256::digest(&db));
        for step in [1, 7, 31, 32, 33, 4096, 100_000] {
            let mut r = TrailerCheck::new(&with[..]);
            assert_eq!(r.verdict(), None);
            drain(&mut r, step);
            assert_eq!(r.verdict(), Some(Verdict::Valid), "step {step}");
            assert_eq!(r.len(), with.len() as u64);
            let mut r = TrailerCheck::new(&db[..]);
            drain(&mut r, step);
            assert_eq!(r.verdict(), Some(Verdict::Invalid));
        }
        let mut bad = with.clone();
        bad[5] ^= 1;
        let mut r = TrailerCheck::new(&bad[..]);
        drain(&mut r, 4096);
        assert_eq!(r.verdict(), Some(Verdict::Invalid));
        let mut r = TrailerCheck::new(&[][..]);
        drain(&mut r, 10);
        assert_eq!(r.verdict(), Some(Verdict::Invalid));
    }
}
