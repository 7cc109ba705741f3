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

thread_local! {
    /// One streaming zstd context per thread, for frames read only up to a point.
    static PREFIX_DECODER: std::cell::RefCell<Option<zstd::stream::raw::Decoder<'static>>> =
        const { std::cell::RefCell::new(None) };
}

/// Largest zstd window a frame may ask a streaming reader for: a frame's plaintext is at most
/// [`MAX_FRAME_LEN`] (16 MiB), so no honest frame needs more; a planted one asking for more is
/// refused instead of being given the memory.
const WINDOW_LOG_MAX: u32 = 24;

/// The first `upto` bytes of a frame's plaintext (all of it, checked as [`decompress_into`]
/// does, when `upto >= raw_len`), for a reader that needs only blobs ending by then:
/// decompression stops there. `out` is cleared first and its allocation reused. A frame that
/// ends before `upto` is an error; what follows `upto` is not read, so blobs taken from the
/// prefix must be checked against their ids.
pub fn decompress_prefix<'a>(
    stored: &'a [u8],
    compression: Compression,
    raw_len: u32,
    upto: u32,
    out: &'a mut Vec<u8>,
) -> Result<&'a [u8], Error> {
    if raw_len > MAX_FRAME_LEN || upto >= raw_len || compression == Compression::None {
        let all = decompress_into(stored, compression, raw_len, out)?;
        return Ok(&all[..all.len().min(upto as usize)]);
    }
    let short = |got: usize| {
        Error::Decompress(format!(
            "frame ended after {got} bytes, before the {upto} read of the {raw_len} the index says"
        ))
    };
    out.clear();
    out.resize(upto as usize, 0);
    PREFIX_DECODER.with(|cell| -> Result<(), Error> {
        use zstd::stream::raw::{Decoder, InBuffer, Operation, OutBuffer};
        let mut slot = cell.borrow_mut();
        let d = match &mut *slot {
            Some(d) => {
                d.reinit().map_err(|e| Error::Decompress(e.to_string()))?;
                d
            }
            empty => {
                let mut d = Decoder::new().map_err(|e| Error::Decompress(e.to_string()))?;
                d.set_parameter(zstd::stream::raw::DParameter::WindowLogMax(WINDOW_LOG_MAX))
                    .map_err(|e| Error::Decompress(e.to_string()))?;
                empty.insert(d)
            }
        };
        let mut input = InBuffer::around(stored);
        let mut output = OutBuffer::around(&mut out[..]);
        while output.pos() < upto as usize {
            let before = (input.pos(), output.pos());
            let left = d
                .run(&mut input, &mut output)
                .map_err(|e| Error::Decompress(e.to_string()))?;
            // A finished frame, or no progress with all input given: the frame is short.
            if (left == 0 || (input.pos(), output.pos()) == before) && output.pos() < upto as usize
            {
                return Err(short(output.pos()));
            }
        }
        Ok(())
    })?;
    Ok(&out[..])
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
            // Exactly one zstd frame (§7): the bulk decoder would also take several in a row,
            // or a skippable frame first, which a reader stopping early does not.
            match zstd::zstd_safe::find_frame_compressed_size(stored) {
                Ok(n) if n == stored.len() => {}
                Ok(n) => {
                    return Err(Error::Decompress(format!(
                        "stored frame is {} bytes, its zstd frame {n}",
                        stored.len()
                    )))
                }
                Err(code) => {
                    return Err(Error::Decompress(
                        zstd::zstd_safe::get_error_name(code).to_string(),
                    ))
                }
            }
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
        // Two frames in a row, or a skippable frame before it, are not one frame.
        let twice = [stored, stored].concat();
        assert!(decompress(&twice, how, 2 * raw.len() as u32).is_err());
        let skippable = [&[0x50, 0x2a, 0x4d, 0x18, 0, 0, 0, 0][..], stored].concat();
        assert!(decompress(&skippable, how, raw.len() as u32).is_err());
        // Into a buffer used before (larger, full of other bytes): the same plaintext.
        let mut out = vec![7u8; 3 * raw.len()];
        assert_eq!(
            decompress_into(stored, how, raw.len() as u32, &mut out).unwrap(),
            &raw[..]
        );
        assert!(decompress_into(stored, how, raw.len() as u32 + 1, &mut out).is_err());
    }

    #[test]
    fn a_prefix_is_the_plaintext_up_to_the_point_asked() {
        let mut raw = b"kind: Secret\n".repeat(30_000);
        raw.extend(pseudo_random(9, 200_000));
        let len = raw.len() as u32;
        let mut c = FrameCompressor::new(3).unwrap();
        let (how, stored) = c.compress(&raw);
        assert_eq!(how, Compression::Zstd);
        let stored = stored.to_vec();
        let mut out = vec![5u8; 100];
        for upto in [0, 1, 4096, 390_000, 390_001, len - 1, len, len + 7] {
            let got = decompress_prefix(&stored, how, len, upto, &mut out).unwrap();
            assert_eq!(got, &raw[..upto.min(len) as usize], "upto {upto}");
        }
        // Stored raw: a slice of it, once its length is checked.
        let got = decompress_prefix(&raw, Compression::None, len, 10, &mut out).unwrap();
        assert_eq!(got, &raw[..10]);
        assert!(decompress_prefix(&raw, Compression::None, len + 1, 10, &mut out).is_err());
        // A frame cut short, or shorter than the index says, ends in an error: not a loop, not
        // a prefix padded with anything.
        for cut in [stored.len() / 2, 20, 0] {
            let e = decompress_prefix(&stored[..cut], how, len, len - 1, &mut out);
            assert!(e.is_err(), "cut at {cut}");
        }
        let e = decompress_prefix(&stored, how, len + 100, len + 50, &mut out).unwrap_err();
        assert!(e.to_string().contains("frame ended after"), "{e}");
        // Garbage, then a good frame again on the same thread's context.
        assert!(
            decompress_prefix(&[0x28, 0xb5, 0x2f, 0xfd, 1, 2, 3], how, len, 9, &mut out).is_err()
        );
        let got = decompress_prefix(&stored, how, len, 4096, &mut out).unwrap();
        assert_eq!(got, &raw[..4096]);
    }

    #[test]
    fn a_prefix_read_refuses_a_window_no_frame_needs() {
        // A valid zstd frame of one 100-byte raw block whose header asks for a 64 MiB window
        // (no frame of at most 16 MiB does; zstd's own default limit would allow it).
        let mut frame = vec![0x28, 0xb5, 0x2f, 0xfd, 0x00, 16 << 3];
        frame.extend((1u32 | (100 << 3)).to_le_bytes()[..3].iter());
        frame.extend([7u8; 100]);
        let mut out = Vec::new();
        let e = decompress_prefix(&frame, Compression::Zstd, 200, 50, &mut out).unwrap_err();
        assert!(matches!(e, Error::Decompress(_)), "{e}");
        // The same frame asking for 16 MiB is read.
        frame[5] = 14 << 3;
        let got = decompress_prefix(&frame, Compression::Zstd, 200, 50, &mut out).unwrap();
        assert_eq!(got, &[7u8; 50][..]);
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
