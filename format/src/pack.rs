//! Packs: many blobs in one object.
//!
//! Plaintext layout (the whole is then one age file):
//!
//! ```text
//! frame 0 | frame 1 | ... | trailer record | trailer_len: u32 LE | b"CPK1"
//! ```
//!
//! The trailer lists every blob with its frame, so a lost index can be rebuilt from packs.

use crate::frame::Compression;
use crate::record::{self, RecordKind};
use crate::{Error, Id, MAX_BLOB_LEN, MAX_FRAME_LEN};
use serde::{Deserialize, Serialize};
use std::io::{self, Write};

/// Magic closing every pack plaintext.
pub const FOOTER_MAGIC: &[u8; 4] = b"CPK1";
/// Length of the footer: trailer length + magic.
pub const FOOTER_LEN: usize = 8;
/// Largest trailer accepted (bounds memory when reading a hostile pack).
pub const MAX_TRAILER_LEN: u32 = 64 << 20;

/// What a pack holds. Data packs are readable only by the identity holder; tree packs also by
/// the write key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum PackKind {
    /// File content blobs.
    Data,
    /// Directory tree blobs.
    Tree,
}

impl PackKind {
    /// Top-level directory of packs of this kind.
    pub fn dir(self) -> &'static str {
        match self {
            PackKind::Data => "data",
            PackKind::Tree => "tree",
        }
    }
}

/// Where a frame sits in a pack's plaintext.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct FrameRef {
    /// Offset of the frame's first byte in the pack plaintext.
    pub offset: u64,
    /// Stored (possibly compressed) length.
    pub stored_len: u32,
    /// Uncompressed length.
    pub raw_len: u32,
    /// How the frame is stored.
    pub compression: Compression,
}

/// One blob as listed in a trailer or an index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct BlobEntry {
    /// Keyed hash of the blob plaintext.
    pub id: Id,
    /// Its frame.
    pub frame: FrameRef,
    /// Offset of the blob inside the uncompressed frame.
    pub offset: u32,
    /// Blob length.
    pub len: u32,
}

impl BlobEntry {
    /// Check the entry is internally consistent and fits in a pack plaintext of `frames_end`
    /// bytes (the offset where the trailer starts).
    pub fn validate(&self, frames_end: u64) -> Result<(), Error> {
        let f = &self.frame;
        let end = f.offset.checked_add(u64::from(f.stored_len));
        let ok = end.is_some_and(|e| e <= frames_end)
            && f.raw_len <= MAX_FRAME_LEN
            && self.len <= MAX_BLOB_LEN
            && u64::from(self.offset) + u64::from(self.len) <= u64::from(f.raw_len)
            && (f.compression != Compression::None || f.stored_len == f.raw_len);
        if ok {
            Ok(())
        } else {
            Err(Error::malformed(
                "pack trailer",
                format!(
                    "blob {} has an impossible location {:?}",
                    self.id.short(),
                    self
                ),
            ))
        }
    }
}

/// The trailer record.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PackTrailer {
    /// What the pack holds.
    pub kind: PackKind,
    /// Every blob, in the order written.
    pub blobs: Vec<BlobEntry>,
}

/// Builds a pack plaintext in memory. No I/O: the caller encrypts and stores the result.
pub struct PackBuilder(PackWriter<Vec<u8>>);

impl PackBuilder {
    /// An empty pack with room reserved for `capacity` bytes.
    pub fn new(kind: PackKind, capacity: usize) -> Self {
        PackBuilder(PackWriter::new(kind, Vec::with_capacity(capacity)))
    }

    /// What the pack holds.
    pub fn kind(&self) -> PackKind {
        self.0.kind()
    }

    /// Bytes of frames so far.
    pub fn len(&self) -> usize {
        self.0.len()
    }

    /// True when no frame was added.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// Append one frame holding `blobs` (id, offset in frame, length), which must lie within
    /// `raw_len`. Returns the entries added.
    pub fn add_frame(
        &mut self,
        compression: Compression,
        stored: &[u8],
        raw_len: u32,
        blobs: &[(Id, u32, u32)],
    ) -> &[BlobEntry] {
        self.0.push_frame(compression, raw_len, blobs, stored.len());
        self.0.out.extend_from_slice(stored);
        self.0.added(blobs.len())
    }

    /// Close the pack: append trailer and footer. Returns the plaintext and its blob list.
    pub fn finish(self) -> (Vec<u8>, PackTrailer) {
        let mut w = self.0;
        let (trailer, tail) = w.close();
        w.out.extend_from_slice(&tail);
        (w.out, trailer)
    }
}

/// Writes a pack plaintext to `out` as frames are added, e.g. through an age encryptor
/// ([`crate::envelope::encrypting_writer`]) so that a pack in the making is held once, already
/// encrypted. No other I/O: the caller stores the result.
pub struct PackWriter<W: Write> {
    kind: PackKind,
    out: W,
    /// Plaintext bytes of frames written so far.
    len: u64,
    blobs: Vec<BlobEntry>,
}

impl<W: Write> PackWriter<W> {
    /// An empty pack written to `out`.
    pub fn new(kind: PackKind, out: W) -> Self {
        PackWriter {
            kind,
            out,
            len: 0,
            blobs: Vec::new(),
        }
    }

    /// What the pack holds.
    pub fn kind(&self) -> PackKind {
        self.kind
    }

    /// Plaintext bytes of frames so far.
    pub fn len(&self) -> usize {
        self.len as usize
    }

    /// True when no frame was added.
    pub fn is_empty(&self) -> bool {
        self.blobs.is_empty()
    }

    /// Record a frame of `stored_len` bytes at the current end and its blobs.
    fn push_frame(
        &mut self,
        compression: Compression,
        raw_len: u32,
        blobs: &[(Id, u32, u32)],
        stored_len: usize,
    ) {
        let frame = FrameRef {
            offset: self.len,
            stored_len: stored_len as u32,
            raw_len,
            compression,
        };
        self.len += stored_len as u64;
        for &(id, offset, len) in blobs {
            debug_assert!(offset as u64 + len as u64 <= raw_len as u64);
            self.blobs.push(BlobEntry {
                id,
                frame,
                offset,
                len,
            });
        }
    }

    /// The last `n` entries.
    fn added(&self, n: usize) -> &[BlobEntry] {
        &self.blobs[self.blobs.len() - n..]
    }

    /// The trailer and the bytes that close the pack (trailer record, its length, magic).
    fn close(&mut self) -> (PackTrailer, Vec<u8>) {
        let trailer = PackTrailer {
            kind: self.kind,
            blobs: std::mem::take(&mut self.blobs),
        };
        let mut tail = record::encode(RecordKind::PackTrailer, &trailer);
        let len = tail.len() as u32;
        tail.extend_from_slice(&len.to_le_bytes());
        tail.extend_from_slice(FOOTER_MAGIC);
        (trailer, tail)
    }

    /// Append one frame holding `blobs` (id, offset in frame, length), which must lie within
    /// `raw_len`. Fails only when `out` does.
    pub fn add_frame(
        &mut self,
        compression: Compression,
        stored: &[u8],
        raw_len: u32,
        blobs: &[(Id, u32, u32)],
    ) -> io::Result<&[BlobEntry]> {
        self.out.write_all(stored)?;
        self.push_frame(compression, raw_len, blobs, stored.len());
        Ok(self.added(blobs.len()))
    }

    /// Close the pack: append trailer and footer. Returns the writer and the blob list.
    pub fn finish(mut self) -> io::Result<(W, PackTrailer)> {
        let (trailer, tail) = self.close();
        self.out.write_all(&tail)?;
        Ok((self.out, trailer))
    }
}

/// From a pack plaintext's last [`FOOTER_LEN`] bytes and its total length, the byte range of
/// the trailer record.
pub fn trailer_range(footer: &[u8], plaintext_len: u64) -> Result<std::ops::Range<u64>, Error> {
    if footer.len() != FOOTER_LEN || plaintext_len < FOOTER_LEN as u64 {
        return Err(Error::Truncated { what: "pack" });
    }
    if &footer[4..] != FOOTER_MAGIC {
        return Err(Error::BadMagic {
            expected: "pack footer",
        });
    }
    let len = u32::from_le_bytes([footer[0], footer[1], footer[2], footer[3]]);
    if len > MAX_TRAILER_LEN {
        return Err(Error::TooLarge {
            what: "pack trailer",
            len: len.into(),
            max: MAX_TRAILER_LEN.into(),
        });
    }
    let end = plaintext_len - FOOTER_LEN as u64;
    let start = end
        .checked_sub(u64::from(len))
        .ok_or(Error::Truncated { what: "pack" })?;
    Ok(start..end)
}

/// Decode a trailer record found at `frames_end` and validate every entry against it.
pub fn decode_trailer(bytes: &[u8], frames_end: u64) -> Result<PackTrailer, Error> {
    let trailer: PackTrailer = record::decode(RecordKind::PackTrailer, bytes)?;
    for b in &trailer.blobs {
        b.validate(frames_end)?;
    }
    Ok(trailer)
}

/// Parse the trailer of a whole pack plaintext.
pub fn parse_pack(plaintext: &[u8]) -> Result<PackTrailer, Error> {
    let n = plaintext.len();
    if n < FOOTER_LEN {
        return Err(Error::Truncated { what: "pack" });
    }
    let range = trailer_range(&plaintext[n - FOOTER_LEN..], n as u64)?;
    decode_trailer(
        &plaintext[range.start as usize..range.end as usize],
        range.start,
    )
}

/// Extract a blob's plaintext from a whole pack plaintext (no id check: see the caller).
pub fn read_blob(plaintext: &[u8], entry: &BlobEntry) -> Result<Vec<u8>, Error> {
    entry.validate(plaintext.len() as u64)?;
    let f = entry.frame;
    let stored = &plaintext[f.offset as usize..(f.offset + u64::from(f.stored_len)) as usize];
    blob_from_frame(stored, entry)
}

/// Decompress a whole frame of a pack plaintext (no blob check: see the caller).
pub fn read_frame(plaintext: &[u8], frame: &FrameRef) -> Result<Vec<u8>, Error> {
    BlobEntry {
        id: Id([0; 32]),
        frame: *frame,
        offset: 0,
        len: frame.raw_len,
    }
    .validate(plaintext.len() as u64)?;
    let stored =
        &plaintext[frame.offset as usize..(frame.offset + u64::from(frame.stored_len)) as usize];
    crate::frame::decompress(stored, frame.compression, frame.raw_len)
}

/// Given a frame's stored bytes, decompress and cut out the blob.
pub fn blob_from_frame(stored: &[u8], entry: &BlobEntry) -> Result<Vec<u8>, Error> {
    let raw = crate::frame::decompress(stored, entry.frame.compression, entry.frame.raw_len)?;
    let start = entry.offset as usize;
    let end = start + entry.len as usize;
    raw.get(start..end)
        .map(<[u8]>::to_vec)
        .ok_or(Error::Truncated { what: "frame" })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::FrameCompressor;
    use crate::ChunkIdKey;

    #[test]
    fn builder_round_trip_with_shared_frame() {
        let key = ChunkIdKey([3; 32]);
        let mut c = FrameCompressor::new(3).unwrap();
        let mut p = PackBuilder::new(PackKind::Data, 0);
        let a = b"first small blob ".repeat(10);
        let b = b"second small blob".repeat(10);
        let run = [a.clone(), b.clone()].concat();
        let (how, stored) = c.compress(&run);
        p.add_frame(
            how,
            stored,
            run.len() as u32,
            &[
                (key.id(&a), 0, a.len() as u32),
                (key.id(&b), a.len() as u32, b.len() as u32),
            ],
        );
        let big = vec![9u8; 5000];
        let (how, stored) = c.compress(&big);
        p.add_frame(how, stored, 5000, &[(key.id(&big), 0, 5000)]);
        let (bytes, trailer) = p.finish();
        let parsed = parse_pack(&bytes).unwrap();
        assert_eq!(parsed, trailer);
        assert_eq!(parsed.blobs.len(), 3);
        assert_eq!(read_blob(&bytes, &parsed.blobs[0]).unwrap(), a);
        assert_eq!(read_blob(&bytes, &parsed.blobs[1]).unwrap(), b);
        assert_eq!(read_blob(&bytes, &parsed.blobs[2]).unwrap(), big);
        assert!(parse_pack(&bytes[..bytes.len() - 1]).is_err());
        assert!(parse_pack(&bytes[1..]).is_err());
    }

    #[test]
    fn writer_through_age_holds_the_builders_pack() {
        let identity = age::x25519::Identity::generate();
        let out = crate::envelope::encrypting_writer(&[identity.to_public()], Vec::new()).unwrap();
        let mut w = PackWriter::new(PackKind::Tree, out);
        let mut b = PackBuilder::new(PackKind::Tree, 0);
        let key = ChunkIdKey([4; 32]);
        // Frames spanning several 64 KiB age segments.
        for i in 0..40u32 {
            let raw: Vec<u8> = (0..(i * 997 + 3))
                .map(|j| (j % 251) as u8 ^ i as u8)
                .collect();
            let blobs = [(key.id(&raw), 0, raw.len() as u32)];
            let len = raw.len() as u32;
            let first = w
                .add_frame(Compression::None, &raw, len, &blobs)
                .unwrap()
                .to_vec();
            assert_eq!(first, b.add_frame(Compression::None, &raw, len, &blobs));
        }
        assert_eq!(w.len(), b.len());
        let (enc, trailer) = w.finish().unwrap();
        let ciphertext = enc.finish().unwrap();
        let (plain, expected) = b.finish();
        assert_eq!(trailer, expected);
        let back = crate::envelope::decrypt(&ciphertext, &[&identity], 1 << 30).unwrap();
        assert!(back == plain);
        assert_eq!(parse_pack(&back).unwrap(), trailer);
    }

    #[test]
    fn hostile_entries_are_rejected() {
        let entry = BlobEntry {
            id: Id::default(),
            frame: FrameRef {
                offset: u64::MAX,
                stored_len: 10,
                raw_len: 10,
                compression: Compression::None,
            },
            offset: 0,
            len: 10,
        };
        assert!(entry.validate(100).is_err());
        assert!(read_blob(&[0u8; 100], &entry).is_err());
    }
}
