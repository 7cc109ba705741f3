//! Chunking policies: where a file's content is cut into blobs.
//!
//! General files use FastCDC (2020) with the repository's secret seed, so that chunk boundaries
//! do not leak content to whoever sees blob sizes. Files whose layout is known (bbolt databases:
//! 4 KiB pages at fixed offsets) may use fixed-size chunks instead. The policy is chosen per file
//! by the writer; readers need not know it, since a file is just the list of its blob ids.

use crate::Error;
use fastcdc::v2020::{Normalization, StreamCDC};
use serde::{Deserialize, Serialize};
use std::io::{self, Read};

/// FastCDC size parameters, in bytes. Part of the plaintext config.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct ChunkerParams {
    /// Smallest chunk (except a file's last).
    pub min: u32,
    /// Target average chunk.
    pub avg: u32,
    /// Largest chunk.
    pub max: u32,
}

impl Default for ChunkerParams {
    /// 16 KiB / 64 KiB / 256 KiB: small enough that a file with scattered small changes
    /// re-stores a fraction of itself (see bench/), large enough to keep the index small.
    fn default() -> Self {
        ChunkerParams {
            min: 16 << 10,
            avg: 64 << 10,
            max: 256 << 10,
        }
    }
}

impl ChunkerParams {
    /// Check the parameters are within what FastCDC and the format accept.
    pub fn validate(&self) -> Result<(), Error> {
        use fastcdc::v2020::{
            AVERAGE_MAX, AVERAGE_MIN, MAXIMUM_MAX, MAXIMUM_MIN, MINIMUM_MAX, MINIMUM_MIN,
        };
        let (min, avg, max) = (self.min as usize, self.avg as usize, self.max as usize);
        let ok = (MINIMUM_MIN..=MINIMUM_MAX).contains(&min)
            && (AVERAGE_MIN..=AVERAGE_MAX).contains(&avg)
            && (MAXIMUM_MIN..=MAXIMUM_MAX).contains(&max)
            && min <= avg
            && avg <= max
            && self.max <= crate::MAX_BLOB_LEN
            && self.min.is_multiple_of(2)
            && self.avg.is_multiple_of(2)
            && self.max.is_multiple_of(2);
        if ok {
            Ok(())
        } else {
            Err(Error::malformed(
                "config",
                format!(
                    "chunker sizes min {} avg {} max {} are not valid (need min in 64..=1 MiB, avg in 256..=4 MiB, max in 1 KiB..=16 MiB, min <= avg <= max, all even)",
                    self.min, self.avg, self.max
                ),
            ))
        }
    }
}

/// How one file is cut.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChunkPolicy {
    /// Content-defined chunks with the repository parameters and secret seed.
    Cdc {
        /// Sizes.
        params: ChunkerParams,
        /// Secret gear-table seed from the repository keys.
        seed: u64,
    },
    /// Fixed-size chunks at fixed offsets (e.g. 4096 for bbolt pages).
    Fixed(u32),
}

impl ChunkPolicy {
    /// The largest chunk this policy cuts.
    pub fn max_chunk(&self) -> u32 {
        match self {
            ChunkPolicy::Cdc { params, .. } => params.max,
            ChunkPolicy::Fixed(n) => *n,
        }
    }
}

/// Iterator over the chunks of a reader under a policy. Memory: one `max` (or fixed) buffer.
pub struct Chunker<R: Read> {
    inner: Inner<R>,
}

enum Inner<R: Read> {
    Cdc(StreamCDC<RetryInterrupted<R>>),
    Fixed { reader: R, size: usize, done: bool },
}

/// Retries reads interrupted by a signal (fastcdc passes `Interrupted` up as an error).
struct RetryInterrupted<R>(R);

impl<R: Read> Read for RetryInterrupted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            match self.0.read(buf) {
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                other => return other,
            }
        }
    }
}

impl<R: Read> Chunker<R> {
    /// Cut `reader` under `policy`. Parameters must have been validated.
    pub fn new(reader: R, policy: ChunkPolicy) -> Self {
        let inner = match policy {
            ChunkPolicy::Cdc { params, seed } => Inner::Cdc(StreamCDC::with_level_and_seed(
                RetryInterrupted(reader),
                params.min as usize,
                params.avg as usize,
                params.max as usize,
                Normalization::Level1,
                seed,
            )),
            ChunkPolicy::Fixed(size) => Inner::Fixed {
                reader,
                size: size.clamp(64, crate::MAX_BLOB_LEN) as usize,
                done: false,
            },
        };
        Chunker { inner }
    }
}

impl<R: Read> Iterator for Chunker<R> {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        match &mut self.inner {
            Inner::Cdc(cdc) => cdc
                .next()
                .map(|r| r.map(|c| c.data).map_err(io::Error::from)),
            Inner::Fixed { reader, size, done } => {
                if *done {
                    return None;
                }
                let mut buf = vec![0u8; *size];
                let mut filled = 0;
                while filled < buf.len() {
                    match reader.read(&mut buf[filled..]) {
                        Ok(0) => break,
                        Ok(n) => filled += n,
                        Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                        Err(e) => {
                            *done = true;
                            return Some(Err(e));
                        }
                    }
                }
                if filled < buf.len() {
                    *done = true;
                    if filled == 0 {
                        return None;
                    }
                    buf.truncate(filled);
                }
                Some(Ok(buf))
            }
        }
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// Deterministic xorshift noise (incompressible), for this crate's tests.
    pub(crate) fn pseudo_random(len: usize, mut state: u64) -> Vec<u8> {
        (0..len)
            .map(|_| {
                state ^= state << 13;
                state ^= state >> 7;
                state ^= state << 17;
                state as u8
            })
            .collect()
    }

    fn cdc(seed: u64) -> ChunkPolicy {
        ChunkPolicy::Cdc {
            params: ChunkerParams {
                min: 2048,
                avg: 8192,
                max: 32768,
            },
            seed,
        }
    }

    #[test]
    fn chunks_reassemble_and_respect_bounds() {
        let data = pseudo_random(1 << 20, 42);
        let chunks: Vec<Vec<u8>> = Chunker::new(&data[..], cdc(9))
            .map(Result::unwrap)
            .collect();
        assert_eq!(chunks.concat(), data);
        assert!(chunks.len() > 30);
        for c in &chunks[..chunks.len() - 1] {
            assert!(c.len() >= 2048 && c.len() <= 32768);
        }
    }

    #[test]
    fn seed_changes_boundaries() {
        let data = pseudo_random(1 << 20, 7);
        let a: Vec<usize> = Chunker::new(&data[..], cdc(1))
            .map(|c| c.unwrap().len())
            .collect();
        let b: Vec<usize> = Chunker::new(&data[..], cdc(2))
            .map(|c| c.unwrap().len())
            .collect();
        assert_ne!(a, b);
    }

    #[test]
    fn fixed_cuts_pages() {
        let data = pseudo_random(10_000, 3);
        let lens: Vec<usize> = Chunker::new(&data[..], ChunkPolicy::Fixed(4096))
            .map(|c| c.unwrap().len())
            .collect();
        assert_eq!(lens, vec![4096, 4096, 1808]);
        assert_eq!(Chunker::new(&[][..], ChunkPolicy::Fixed(4096)).count(), 0);
    }

    #[test]
    fn validation_rejects_nonsense() {
        assert!(ChunkerParams::default().validate().is_ok());
        let bad = ChunkerParams {
            min: 10,
            avg: 5,
            max: 1,
        };
        assert!(bad.validate().is_err());
    }
}
