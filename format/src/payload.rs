//! An age file's STREAM payload decrypted chunk by chunk in the caller's buffer.
//!
//! age's own reader ([`crate::envelope::SeekableReader`]) reads each 64 KiB chunk into a
//! buffer of its own, decrypts a copy of it into a fresh allocation, copies the plaintext out
//! and zeroes the allocation: four passes over every byte besides the decryption. Restores
//! read runs of whole chunks at once, so [`Payload`] decrypts them where they were read: the
//! caller reads the chunks covering a plaintext range into one buffer
//! ([`Payload::chunks_for`]), and [`Payload::decrypt_in_place`] authenticates and decrypts
//! each chunk in place and closes the 16-byte gaps the tags leave. The header is parsed and
//! authenticated by age itself ([`Payload::open`]); only the payload (ChaCha20-Poly1305 with
//! the STREAM nonce: an 11-byte big-endian chunk counter and a last-chunk flag, under the key
//! HKDF-SHA256(nonce, "payload", file key)) is decrypted here.
//!
//! The last chunk is recognised by position: the payload's length is the object's length
//! minus the header, so a stream cut at a chunk boundary fails authentication of its new
//! last chunk (it was sealed without the last-chunk flag), as age's own reader does.

use crate::envelope::{self, EnvelopeError};
use age::secrecy::ExposeSecret;
use chacha20poly1305::aead::{AeadInOut, KeyInit};
use chacha20poly1305::{ChaCha20Poly1305, Nonce, Tag};
use std::io::{self, Read};
use std::ops::Range;
use std::sync::Mutex;

/// Plaintext bytes per STREAM chunk.
pub const CHUNK: u64 = 64 << 10;
/// Authentication tag per chunk.
const TAG: u64 = 16;
/// Stored bytes of a full chunk.
pub const CHUNK_STORED: u64 = CHUNK + TAG;
/// The age payload nonce that follows the header.
const NONCE: usize = 16;
/// Longest header accepted (age headers of a few recipients are a few hundred bytes).
const MAX_HEADER: usize = envelope::MAX_HEADER_LEN + NONCE;

/// The payload of one age file: its key and where its chunks lie in the stored object.
pub struct Payload {
    aead: ChaCha20Poly1305,
    /// Offset of the first chunk in the stored object (the header and nonce before it).
    start: u64,
    /// Number of chunks (at least one).
    chunks: u64,
    /// The stored object's length.
    object_len: u64,
    /// Plaintext length.
    len: u64,
}

/// The stored chunks that hold a plaintext range: read `stored` of the object into a buffer
/// and pass it with `first` to [`Payload::decrypt_in_place`]; the range is then at `skip`
/// in the plaintext that call returns.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunks {
    /// Byte range of the stored object to read.
    pub stored: Range<u64>,
    /// Index of the first chunk read.
    pub first: u64,
    /// Where the requested range starts in the decrypted chunks.
    pub skip: usize,
}

/// Records the bytes age reads while parsing the header: their count is the header's length
/// and the last 16 are the payload nonce.
struct Tap<'a, R> {
    inner: &'a mut R,
    seen: Vec<u8>,
    stanzas: usize,
}

impl<R: Read> Read for Tap<'_, R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        let from = self.seen.len().saturating_sub(3);
        self.seen.extend_from_slice(&buf[..n]);
        // Stanzas counted as they come (age re-parses the header as it grows).
        self.stanzas += envelope::stanza_count(&self.seen[from..]);
        if self.seen.len() > MAX_HEADER || self.stanzas > envelope::MAX_STANZAS {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                EnvelopeError::HeaderTooLarge.to_string(),
            ));
        }
        Ok(n)
    }
}

/// Where [`Capture`] keeps the file key; zeroed when dropped, on every path out of
/// [`Payload::open`].
#[derive(Default)]
struct KeySlot(Mutex<Option<[u8; 16]>>);

impl Drop for KeySlot {
    fn drop(&mut self) {
        let slot = self.0.get_mut().unwrap_or_else(|p| p.into_inner());
        if let Some(key) = slot.as_mut() {
            key.fill(0);
            std::hint::black_box(&*key);
        }
    }
}

/// An identity that hands age the file key another identity unwraps, keeping a copy.
struct Capture<'a> {
    inner: &'a dyn age::Identity,
    key: &'a KeySlot,
}

impl Capture<'_> {
    fn keep(
        &self,
        got: Option<Result<age_core::format::FileKey, age::DecryptError>>,
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        match got {
            Some(Ok(key)) => {
                *self.key.0.lock().unwrap_or_else(|p| p.into_inner()) = Some(*key.expose_secret());
                Some(Ok(key))
            }
            other => other,
        }
    }
}

impl age::Identity for Capture<'_> {
    fn unwrap_stanza(
        &self,
        stanza: &age_core::format::Stanza,
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        self.keep(self.inner.unwrap_stanza(stanza))
    }

    fn unwrap_stanzas(
        &self,
        stanzas: &[age_core::format::Stanza],
    ) -> Option<Result<age_core::format::FileKey, age::DecryptError>> {
        self.keep(self.inner.unwrap_stanzas(stanzas))
    }
}

impl Payload {
    /// Read and authenticate the header of the age file `object` reads from its start (it is
    /// left just past the header) with `identities`; `object_len` is the stored object's
    /// length.
    pub fn open<R: Read>(
        object: &mut R,
        object_len: u64,
        identities: &[&dyn age::Identity],
    ) -> Result<Payload, EnvelopeError> {
        let key = KeySlot::default();
        let captures: Vec<Capture<'_>> = identities
            .iter()
            .map(|&inner| Capture { inner, key: &key })
            .collect();
        let mut tap = Tap {
            inner: object,
            seen: Vec::new(),
            stanzas: 0,
        };
        // age authenticates the header (its MAC under the file key) before it returns.
        let opened: Result<(), EnvelopeError> = age::Decryptor::new(&mut tap)
            .and_then(|d| d.decrypt(captures.iter().map(|c| c as &dyn age::Identity)))
            .map(drop)
            .map_err(Into::into);
        if let Err(e) = opened {
            let refused = tap.stanzas > envelope::MAX_STANZAS || tap.seen.len() > MAX_HEADER;
            return Err(if refused {
                EnvelopeError::HeaderTooLarge
            } else {
                e
            });
        }
        // The captured key is used where it lies (never moved out) and zeroed with the slot.
        let held = key.0.lock().unwrap_or_else(|p| p.into_inner());
        let file_key = held.as_ref().ok_or(EnvelopeError::NoMatchingKey)?;
        let start = tap.seen.len();
        let nonce = tap.seen.get(start.saturating_sub(NONCE)..).unwrap_or(&[]);
        if start < NONCE {
            return Err(EnvelopeError::NotAge);
        }
        let mut payload_key = age_core::primitives::hkdf(nonce, b"payload", file_key);
        let payload = Payload::with_key(&payload_key, start as u64, object_len);
        payload_key.fill(0);
        std::hint::black_box(&payload_key);
        payload
    }

    /// A payload under `payload_key` starting at `start` of an object of `object_len` bytes.
    fn with_key(
        payload_key: &[u8; 32],
        start: u64,
        object_len: u64,
    ) -> Result<Payload, EnvelopeError> {
        let stored = object_len
            .checked_sub(start)
            .filter(|&n| n >= TAG)
            .ok_or(EnvelopeError::Damaged)?;
        let chunks = stored.div_ceil(CHUNK_STORED);
        let len = stored - chunks * TAG;
        Ok(Payload {
            // From the caller's buffer, which it wipes; the cipher wipes its copy on drop.
            aead: ChaCha20Poly1305::new_from_slice(payload_key)
                .map_err(|_| EnvelopeError::Damaged)?,
            start,
            chunks,
            len,
            object_len,
        })
    }

    /// Plaintext length (as the object's length implies; a cut stream fails decryption).
    pub fn len(&self) -> u64 {
        self.len
    }

    /// True when the plaintext is empty.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// The stored chunks holding plaintext `range`, or None if it lies past the end.
    pub fn chunks_for(&self, range: Range<u64>) -> Option<Chunks> {
        if range.start > range.end || range.end > self.len {
            return None;
        }
        let first = (range.start / CHUNK).min(self.chunks - 1);
        let end = range.end.div_ceil(CHUNK).clamp(first + 1, self.chunks);
        let stored_end = (self.start + end * CHUNK_STORED).min(self.object_len);
        Some(Chunks {
            stored: self.start + first * CHUNK_STORED..stored_end,
            first,
            skip: (range.start - first * CHUNK) as usize,
        })
    }

    /// Authenticate and decrypt the chunks in `buf` (stored chunks from number `first` on, as
    /// [`Payload::chunks_for`] gave), in place: the plaintext ends up contiguous at the start
    /// of `buf`; returns its length. Any damage (a changed byte, a short read, a chunk out of
    /// place) fails authentication.
    pub fn decrypt_in_place(&self, buf: &mut [u8], first: u64) -> Result<usize, EnvelopeError> {
        let mut plain = 0usize;
        let mut at = 0usize;
        let mut index = first;
        while at < buf.len() {
            if index >= self.chunks {
                return Err(EnvelopeError::Damaged);
            }
            let last = index + 1 == self.chunks;
            let stored = (buf.len() - at).min(CHUNK_STORED as usize);
            if (!last && stored != CHUNK_STORED as usize) || stored < TAG as usize {
                return Err(EnvelopeError::Damaged);
            }
            let body = stored - TAG as usize;
            let (data, tag) = buf[at..at + stored].split_at_mut(body);
            let tag = Tag::try_from(&*tag).map_err(|_| EnvelopeError::Damaged)?;
            self.aead
                .decrypt_inout_detached(&stream_nonce(index, last), b"", data.into(), &tag)
                .map_err(|_| EnvelopeError::Damaged)?;
            if at != plain {
                buf.copy_within(at..at + body, plain);
            }
            plain += body;
            at += stored;
            index += 1;
        }
        Ok(plain)
    }
}

/// The STREAM nonce of chunk `index`: the counter big-endian in 11 bytes, then the flag.
fn stream_nonce(index: u64, last: bool) -> Nonce {
    let mut n = [0u8; 12];
    n[3..11].copy_from_slice(&index.to_be_bytes());
    n[11] = u8::from(last);
    Nonce::from(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::envelope::encrypt;
    use age::x25519;
    use proptest::prelude::*;
    use std::io::Cursor;

    fn read(ct: &[u8], p: &Payload, range: Range<u64>) -> Result<Vec<u8>, EnvelopeError> {
        let c = p.chunks_for(range.clone()).ok_or(EnvelopeError::Damaged)?;
        let mut buf = ct[c.stored.start as usize..c.stored.end as usize].to_vec();
        let n = p.decrypt_in_place(&mut buf, c.first)?;
        let len = (range.end - range.start) as usize;
        assert!(c.skip + len <= n);
        Ok(buf[c.skip..c.skip + len].to_vec())
    }

    #[test]
    fn any_range_of_any_size_and_damage_fails() {
        let id = x25519::Identity::generate();
        for size in [0usize, 1, 65_535, 65_536, 65_537, 3 * 65_536, 300_000] {
            let data: Vec<u8> = (0..size).map(|i| (i * 7 % 251) as u8).collect();
            let ct = encrypt(&data, &[id.to_public()]);
            let mut cur = Cursor::new(&ct);
            let p = Payload::open(&mut cur, ct.len() as u64, &[&id]).unwrap();
            assert_eq!(p.len(), size as u64, "{size}");
            for (a, b) in [
                (0, 0),
                (0, 1),
                (0, size),
                (65_535, 65_537),
                (size / 2, size),
            ] {
                if b > size || a > b {
                    continue;
                }
                assert_eq!(read(&ct, &p, a as u64..b as u64).unwrap(), &data[a..b]);
            }
            assert!(p.chunks_for(0..size as u64 + 1).is_none());
            if size > 0 {
                let mut bad = ct.clone();
                let n = bad.len();
                bad[n - 1] ^= 1;
                assert!(matches!(
                    read(&bad, &p, 0..size as u64),
                    Err(EnvelopeError::Damaged)
                ));
            }
        }
    }

    #[test]
    fn a_stream_cut_at_a_chunk_boundary_fails() {
        let id = x25519::Identity::generate();
        let data = vec![5u8; 3 * 65_536 + 10];
        let ct = encrypt(&data, &[id.to_public()]);
        let header = ct.len() - data.len() - 4 * 16;
        let cut = &ct[..header + 2 * CHUNK_STORED as usize];
        let p = Payload::open(&mut Cursor::new(cut), cut.len() as u64, &[&id]).unwrap();
        assert_eq!(p.len(), 2 * CHUNK);
        // The first chunk is intact; the new last one was not sealed as last.
        assert_eq!(read(cut, &p, 0..10).unwrap(), &data[..10]);
        assert!(matches!(
            read(cut, &p, CHUNK..CHUNK + 10),
            Err(EnvelopeError::Damaged)
        ));
        // Chunks swapped: each fails under the other's counter.
        let mut swapped = ct.clone();
        let (a, b) = (header, header + CHUNK_STORED as usize);
        let first: Vec<u8> = swapped[a..b].to_vec();
        swapped.copy_within(b..b + CHUNK_STORED as usize, a);
        swapped[b..b + CHUNK_STORED as usize].copy_from_slice(&first);
        let p = Payload::open(&mut Cursor::new(&swapped), swapped.len() as u64, &[&id]).unwrap();
        assert!(read(&swapped, &p, 0..10).is_err());
    }

    #[test]
    fn wrong_identity_is_no_matching_key() {
        let id = x25519::Identity::generate();
        let other = x25519::Identity::generate();
        let ct = encrypt(b"hello", &[id.to_public()]);
        assert!(matches!(
            Payload::open(&mut Cursor::new(&ct), ct.len() as u64, &[&other]),
            Err(EnvelopeError::NoMatchingKey)
        ));
        assert!(Payload::open(&mut Cursor::new(b"junk"), 4, &[&id]).is_err());
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(24))]
        #[test]
        fn round_trip(size in 0usize..200_000, a in 0usize..200_000, b in 0usize..200_000) {
            let id = x25519::Identity::generate();
            let data: Vec<u8> = (0..size).map(|i| (i * 31 % 253) as u8).collect();
            let ct = encrypt(&data, &[id.to_public()]);
            let p = Payload::open(&mut Cursor::new(&ct), ct.len() as u64, &[&id]).unwrap();
            let (a, b) = (a.min(b).min(size), a.max(b).min(size));
            prop_assert_eq!(read(&ct, &p, a as u64..b as u64).unwrap(), &data[a..b]);
        }
    }
}
