//! Frames: the unit of compression inside a pack.
//!
//! A frame holds one blob, or several small consecutive blobs compressed together (small
//! chunks compress far better as a run than one by one). Each blob stays addressable by
//! (frame, offset in frame, length).

use crate::{Error, MAX_FRAME_LEN};
use serde::{Deserialize, Serialize};

/// How a frame's bytes are stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Compression {
    /// Stored as is (compression did not pay).
    None,
    /// One zstd frame.
    Zstd,
}

/// Reusable zstd compressor (one per worker thread), with its output buffer: compressing a
/// frame allocates nothing once the buffer has grown to the largest frame.
pub struct FrameCompressor {
    inner: zstd::bulk::Compressor<'static>,
    out: Vec<u8>,
}

impl FrameCompressor {
    /// A compressor at `level`.
    pub fn new(level: i32) -> std::io::Result<Self> {
        Ok(FrameCompressor {
            inner: zstd::bulk::Compressor::new(level)?,
            out: Vec::new(),
        })
    }

    /// Compress `raw`; returns the stored bytes and how they are stored. Data that does not
    /// shrink by at least 1/32 is stored raw (borrowed, not copied), saving the reader a
    /// decompression. Compressed bytes are borrowed from the compressor's buffer, valid until
    /// the next call.
    ///
    /// Memory: the buffer kept between calls is at most [`KEEP_OUT`] (a longer frame's is freed
    /// at the next call), and a frame longer than [`SAMPLE_ABOVE`] is first tried on its first
    /// [`SAMPLE`] bytes: if those do not shrink, it is stored raw without compressing the rest
    /// (a content list, 32 bytes of keyed hash per blob, would otherwise take its own size in
    /// compressed output only to be stored raw).
    pub fn compress<'a>(&'a mut self, raw: &'a [u8]) -> (Compression, &'a [u8]) {
        if self.out.capacity() > KEEP_OUT {
            self.out = Vec::new();
        }
        if raw.len() > SAMPLE_ABOVE && !self.shrinks(&raw[..SAMPLE]) {
            return (Compression::None, raw);
        }
        match self.compress_into_out(raw) {
            Some(n) => (Compression::Zstd, &self.out[..n]),
            None => (Compression::None, raw),
        }
    }

    /// Whether `sample` shrinks by at least 1/32.
    fn shrinks(&mut self, sample: &[u8]) -> bool {
        self.compress_into_out(sample).is_some()
    }

    /// Compress `raw` into the buffer; its compressed length if it shrank by at least 1/32.
    fn compress_into_out(&mut self, raw: &[u8]) -> Option<usize> {
        self.out.clear();
        self.out.reserve(zstd::zstd_safe::compress_bound(raw.len()));
        match self.inner.compress_to_buffer(raw, &mut self.out) {
            Ok(n) if n + raw.len() / 32 < raw.len() => Some(n),
            _ => None,
        }
    }
}

/// Output buffer a [`FrameCompressor`] keeps between frames (a small blobs' frame, a default
/// chunk); a longer one is freed at the next call.
pub const KEEP_OUT: usize = 1 << 20;
/// Frames longer than this are tried on a sample first (see [`FrameCompressor::compress`]).
pub const SAMPLE_ABOVE: usize = 1 << 20;
/// Bytes of a long frame tried first.
pub const SAMPLE: usize = 256 << 10;

thread_local! {
    /// One zstd decompression context per thread, reused across frames.
    static DECOMPRESSOR: std::cell::RefCell<Option<zstd::bulk::Decompressor<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Recover a frame's plaintext. `raw_len` comes from the trailer or index and bounds memory.
pub fn decompress(stored: &[u8], compression: Compression, raw_len: u32) -> Result<Vec<u8>, Error> {
    let mut out = Vec::new();
    let len = decompress_into(stored, compression, raw_len, &mut out)?.len();
    if compression == Compression::None {
        out.extend_from_slice(&stored[..len]);
    }
    Ok(out)
}

/// Recover a frame's plaintext without copying what needs no decompression: `stored` itself
/// when it is stored raw, else decompressed into `out` (cleared first; its allocation is
/// reused). `raw_len` comes from the trailer or index and bounds memory.
pub fn decompress_into<'a>(
    stored: &'a [u8],
    compression: Compression,
    raw_len: u32,
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8], Error> {
    if raw_len > MAX_FRAME_LEN {
        return Err(Error::TooLarge {
            what: "frame",
            len: raw_len.into(),
            max: MAX_FRAME_LEN.into(),
        });
    }
    match compression {
        Compression::None => {
            if stored.len() != raw_len as usize {
                return Err(Error::Decompress(format!(
                    "stored frame is {} bytes, index says {}",
                    stored.len(),
                    raw_len
                )));
            }
            Ok(stored)
        }
        Compression::Zstd => {
            out.clear();
            out.reserve(raw_len as usize);
            DECOMPRESSOR.with(|cell| {
                let mut slot = cell.borrow_mut();
                if slot.is_none() {
                    *slot = Some(
                        zstd::bulk::Decompressor::new()
                            .map_err(|e| Error::Decompress(e.to_string()))?,
                    );
                }
                let d = slot.as_mut().expect("set above");
                d.decompress_to_buffer(stored, out)
                    .map_err(|e| Error::Decompress(e.to_string()))
            })?;
            if out.len() != raw_len as usize {
                return Err(Error::Decompress(format!(
                    "frame decompressed to {} bytes, index says {}",
                    out.len(),
                    raw_len
                )));
            }
            Ok(out)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::chunker::tests::pseudo_random;

    #[test]
    fn compressible_round_trip() {
        let raw = b"apiVersion: v1\nkind: ConfigMap\n".repeat(200);
        let mut c = FrameCompressor::new(3).unwrap();
        let (how, stored) = c.compress(&raw);
        assert_eq!(how, Compression::Zstd);
        assert!(stored.len() < raw.len() / 10);
        assert_eq!(decompress(stored, how, raw.len() as u32).unwrap(), raw);
        assert!(decompress(stored, how, raw.len() as u32 - 1).is_err());
        assert!(decompress(&stored[..stored.len() / 2], how, raw.len() as u32).is_err());
        // Into a buffer used before (larger, full of other bytes): the same plaintext.
        let mut out = vec![7u8; 3 * raw.len()];
        assert_eq!(
            decompress_into(stored, how, raw.len() as u32, &mut out).unwrap(),
            &raw[..]
        );
        assert!(decompress_into(stored, how, raw.len() as u32 + 1, &mut out).is_err());
    }

    #[test]
    fn incompressible_is_stored_raw() {
        let raw: Vec<u8> = (0..4096u32)
            .map(|i| (i.wrapping_mul(2654435761) >> 13) as u8)
            .collect();
        let mut c = FrameCompressor::new(3).unwrap();
        let (how, stored) = c.compress(&raw);
        if how == Compression::None {
            assert_eq!(stored, raw);
        }
        assert_eq!(decompress(stored, how, raw.len() as u32).unwrap(), raw);
    }

    #[test]
    fn long_frames_are_sampled_and_their_buffer_not_kept() {
        let mut c = FrameCompressor::new(3).unwrap();
        // Incompressible from the start (a content list's ids): stored raw, and the sample
        // is all the compressor held.
        let raw = pseudo_random(SAMPLE_ABOVE + 4096, 1);
        let (how, stored) = c.compress(&raw);
        assert_eq!((how, stored), (Compression::None, &raw[..]));
        assert!(c.out.capacity() < 2 * SAMPLE, "{}", c.out.capacity());
        // Compressible: compressed whole, its buffer freed at the next call.
        let text = b"apiVersion: v1\nkind: Secret\n".repeat(SAMPLE_ABOVE / 16);
        let (how, stored) = c.compress(&text);
        assert_eq!(how, Compression::Zstd);
        assert_eq!(decompress(stored, how, text.len() as u32).unwrap(), text);
        assert!(c.out.capacity() > KEEP_OUT);
        let small = pseudo_random(1000, 2);
        let (how, stored) = c.compress(&small);
        assert_eq!(decompress(stored, how, 1000).unwrap(), small);
        assert!(c.out.capacity() <= KEEP_OUT);
    }
}
