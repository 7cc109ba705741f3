//! Reading the spans of one pack one after the other, with as few requests as it takes.
//!
//! A restore knows every span (run of frames) it needs from a pack before it reads the first,
//! in order. Spans no further apart than a gap form a run, read with one request
//! ([`crate::backend::Backend::open_range`]: one streamed GET from an object store) and cut
//! into spans as the bytes arrive, so memory holds a span, not the run. When the first span
//! lies near the pack's start, the run's request starts at the object's first byte and the
//! age header is parsed from it: no request of its own. Two spans may need the same age chunk
//! (a frame ends and the next begins in it): its stored bytes are kept from the first span for
//! the second, as they are read once.

use crate::backend::Backend;
use crate::plain::Plain;
use crate::repo::Repository;
use crate::{Error, Result};
use cairn_format::envelope::EnvelopeError;
use cairn_format::pack::PackKind;
use cairn_format::payload::{Chunks, Payload, CHUNK, CHUNK_STORED};
use cairn_format::Id;
use std::io::Read;
use std::ops::Range;

/// Longest run read with one request. A request's timeout covers its whole body, so a run is
/// kept to what a slow link still receives in time; packs of the default size are one run.
pub const MAX_RUN: u64 = 32 << 20;
/// Stored bytes allowed for the age header when a run's request starts at the object's start
/// (headers are a few hundred bytes; a longer one only costs another request).
const HEADER_ROOM: u64 = 64 << 10;

/// The spans of one pack, read in order.
pub struct SpanReader<'r> {
    backend: &'r dyn Backend,
    path: String,
    payload: Payload,
    /// Plaintext ranges to read, in order, and the next one.
    spans: Vec<Range<u64>>,
    next: usize,
    /// Spans this close (plaintext bytes) are read with one request.
    gap: u64,
    /// The run being read: its reader, the stored offset it is at and where it ends.
    run: Option<(Box<dyn Read + Send>, u64, u64)>,
    /// Stored bytes of the last age chunk read, at that stored offset, for a next span that
    /// starts in it.
    carry: (u64, Vec<u8>),
}

impl<'r> SpanReader<'r> {
    /// Open pack `id` (of `kind`) of `repo` to read `spans` (plaintext ranges, ascending by
    /// start; they overlap only where two listings describe one frame differently), joining
    /// spans at most `gap` apart into one request.
    pub fn open(
        repo: &'r Repository,
        kind: PackKind,
        id: &Id,
        spans: Vec<Range<u64>>,
        gap: u64,
    ) -> Result<SpanReader<'r>> {
        let path = Repository::pack_path(kind, id);
        let backend = repo.backend();
        let first = spans.first().map_or(0, |s| s.start);
        let (payload, run) = if first <= gap {
            // The header and the first run in one request: the run's stored end as if there
            // were no header, plus room for it.
            let end = stored_end(spans_run(&spans, 0, gap).end) + HEADER_ROOM;
            let (mut reader, size) = backend.open_range(&path, 0..end)?;
            let payload = repo.pack_payload(kind, id, &mut reader, size)?;
            let at = header_len(&payload);
            (payload, Some((reader, at, end.min(size))))
        } else {
            (repo.open_pack_payload(kind, id)?.1, None)
        };
        Ok(SpanReader {
            backend,
            path,
            payload,
            spans,
            next: 0,
            gap,
            run,
            carry: (0, Vec::new()),
        })
    }

    fn damaged(&self, e: impl Into<cairn_format::Error>) -> Error {
        Error::damaged(self.path.clone(), e)
    }

    /// A failed read of the stored object.
    fn read_error(&self, e: std::io::Error) -> Error {
        match e.kind() {
            // Shorter than its index entry says.
            std::io::ErrorKind::UnexpectedEof => self.damaged(EnvelopeError::Damaged),
            // A storage failure is reported as itself.
            _ => self.damaged(EnvelopeError::Io(e)),
        }
    }

    /// The next span, read into `buf` (a buffer of an earlier read, or empty) and decrypted
    /// there; None once every span was read.
    pub fn next_span(&mut self, mut buf: Vec<u8>) -> Result<Option<Plain>> {
        let Some(span) = self.spans.get(self.next).cloned() else {
            return Ok(None);
        };
        let chunks = self
            .payload
            .chunks_for(span.clone())
            // The index places it beyond the pack's end: the pack is shorter than indexed.
            .ok_or_else(|| self.damaged(EnvelopeError::Damaged))?;
        let stored = &chunks.stored;
        let len = usize::try_from(stored.end - stored.start)
            .map_err(|_| self.damaged(EnvelopeError::Damaged))?;
        if buf.len() < len {
            // Only growth is zeroed: a buffer used before is overwritten as it stands.
            buf.resize(len, 0);
        }
        // The chunk the last span ended in, if this one starts there.
        let (carry_at, carried) = &self.carry;
        let mut filled = 0;
        if (*carry_at..carry_at + carried.len() as u64).contains(&stored.start) {
            let from = (stored.start - carry_at) as usize;
            filled = (carried.len() - from).min(len);
            buf[..filled].copy_from_slice(&carried[from..from + filled]);
        }
        while filled < len {
            let at = stored.start + filled as u64;
            self.seek_run(at)?;
            let Some((reader, pos, end)) = self.run.as_mut() else {
                unreachable!("seek_run opened a run");
            };
            let n = (len - filled).min((*end - at) as usize);
            let read = reader.read_exact(&mut buf[filled..filled + n]);
            *pos += n as u64;
            if let Err(e) = read {
                self.run = None;
                return Err(self.read_error(e));
            }
            filled += n;
        }
        self.next += 1;
        // Keep the last chunk's stored bytes if the next span starts in it.
        let last = stored.end - 1 - (stored.end - 1 - stored.start) % CHUNK_STORED;
        let shares = self
            .spans
            .get(self.next)
            .and_then(|s| self.payload.chunks_for(s.clone()))
            .is_some_and(|c| c.stored.start < stored.end);
        self.carry.1.clear();
        if shares {
            self.carry.0 = last;
            let from = (last - stored.start) as usize;
            self.carry.1.extend_from_slice(&buf[from..len]);
        }
        let want = (span.end - span.start) as usize;
        decrypt(&self.payload, buf, len, &chunks, want)
            .map(Some)
            .map_err(|e| self.damaged(e))
    }

    /// Make the run reader stand at stored offset `at`, with bytes to give there: skip a short
    /// gap in the current run, or request a new run from `at`.
    fn seek_run(&mut self, at: u64) -> Result<()> {
        if let Some((reader, pos, end)) = self.run.as_mut() {
            if *pos <= at && at < *end && at - *pos <= self.gap {
                let skip = at - *pos;
                let skipped = std::io::copy(&mut reader.take(skip), &mut std::io::sink());
                match skipped {
                    Ok(n) if n == skip => {
                        *pos = at;
                        return Ok(());
                    }
                    Ok(_) => {
                        self.run = None;
                        return Err(self.damaged(EnvelopeError::Damaged));
                    }
                    Err(e) => {
                        self.run = None;
                        return Err(self.read_error(e));
                    }
                }
            }
        }
        let run = spans_run(&self.spans, self.next, self.gap);
        let end = self
            .payload
            .chunks_for(run)
            .map(|c| c.stored.end)
            .ok_or_else(|| self.damaged(EnvelopeError::Damaged))?;
        let (reader, size) = self.backend.open_range(&self.path, at..end)?;
        self.run = Some((reader, at, end.min(size)));
        if at >= end.min(size) {
            // Nothing there: the object is shorter than its index says.
            self.run = None;
            return Err(self.damaged(EnvelopeError::Damaged));
        }
        Ok(())
    }
}

/// Decrypt the first `stored` bytes of `buf`, the stored `chunks` holding a plaintext range
/// of `want` bytes, in place: that range of the plaintext.
pub(crate) fn decrypt(
    payload: &Payload,
    mut buf: Vec<u8>,
    stored: usize,
    chunks: &Chunks,
    want: usize,
) -> std::result::Result<Plain, EnvelopeError> {
    let plain = payload.decrypt_in_place(&mut buf[..stored], chunks.first)?;
    if chunks.skip + want > plain {
        return Err(EnvelopeError::Damaged);
    }
    Ok(Plain::new(
        buf,
        chunks.skip..chunks.skip + want,
        chunks.first * CHUNK,
        plain,
    ))
}

/// The plaintext range of the run of `spans` from `first` on: spans at most `gap` apart, at
/// most [`MAX_RUN`] long (a longer first span alone).
fn spans_run(spans: &[Range<u64>], first: usize, gap: u64) -> Range<u64> {
    let Some(start) = spans.get(first) else {
        return 0..0;
    };
    let mut end = start.end;
    for s in &spans[first + 1..] {
        if s.start.saturating_sub(end) > gap || s.end.saturating_sub(start.start) > MAX_RUN {
            break;
        }
        // Spans of frames two listings describe differently may overlap.
        end = end.max(s.end);
    }
    start.start..end
}

/// The stored end of plaintext `end` in a payload without header: past the chunk holding
/// its last byte.
fn stored_end(end: u64) -> u64 {
    end.div_ceil(CHUNK).max(1) * CHUNK_STORED
}

/// The stored length of `payload`'s header (its first chunk's offset).
fn header_len(payload: &Payload) -> u64 {
    payload.chunks_for(0..0).map_or(0, |c| c.stored.start)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::saver::Saver;
    use std::sync::Arc;

    /// A repository with one data pack of incompressible blobs, its number and plaintext.
    fn one_pack(dir: &std::path::Path) -> (Arc<Repository>, Index, u32, Vec<u8>) {
        let identity = age::x25519::Identity::generate();
        let repo = crate::test_repo::create(dir, &identity, Some(4 << 20));
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 1);
        let mut noise = 0x5eed_u64;
        for _ in 0..40 {
            let blob = crate::test_repo::noise(&mut noise, 50_000);
            saver.add_blob(PackKind::Data, blob).unwrap();
        }
        saver.finish().unwrap();
        let index = Index::load(&repo).unwrap();
        let number = (0..index.packs().len() as u32)
            .find(|&n| index.pack(n).kind == PackKind::Data)
            .unwrap();
        let info = index.pack(number);
        let mut pack = repo.open_pack(info.kind, &info.id).unwrap();
        let len = pack.plaintext_len().unwrap();
        let plain = pack.read_at(0, len as usize).unwrap();
        (repo, index, number, plain)
    }

    fn read_all(
        repo: &Repository,
        index: &Index,
        number: u32,
        spans: &[Range<u64>],
        gap: u64,
    ) -> Result<Vec<Vec<u8>>> {
        let info = index.pack(number);
        let mut r = SpanReader::open(repo, info.kind, &info.id, spans.to_vec(), gap)?;
        let mut out = Vec::new();
        let mut buf = Vec::new();
        while let Some(p) = r.next_span(buf)? {
            out.push(p.to_vec());
            buf = p.into_buffer();
        }
        assert_eq!(out.len(), spans.len());
        Ok(out)
    }

    #[test]
    fn spans_in_any_layout_read_exactly() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, index, number, plain) = one_pack(dir.path());
        let len = plain.len() as u64;
        assert!(len > 20 * CHUNK, "{len}");
        let layouts: Vec<Vec<Range<u64>>> = vec![
            // From the start: the header comes with the first run.
            vec![0..10, 10..70_000, 70_000..200_000, 900_000..1_000_000],
            // Two spans ending and starting in one age chunk, then a far one.
            vec![100..65_000, 65_000..65_537, 65_537..131_072, len - 5..len],
            // Far from the start: the header is read alone.
            vec![
                CHUNK * 7 + 3..CHUNK * 9,
                CHUNK * 9..CHUNK * 9 + 1,
                len - CHUNK..len,
            ],
            // Every span its own chunk, wide gaps.
            (0..len / (3 * CHUNK))
                .map(|i| i * 3 * CHUNK + 17..i * 3 * CHUNK + 40_000)
                .collect(),
            // One span: the whole pack.
            std::iter::once(0..len).collect(),
        ];
        for spans in &layouts {
            for gap in [0, CHUNK, 1 << 20] {
                let got = read_all(&repo, &index, number, spans, gap).unwrap();
                for (s, g) in spans.iter().zip(&got) {
                    assert!(
                        g[..] == plain[s.start as usize..s.end as usize],
                        "span {s:?}, gap {gap}"
                    );
                }
            }
        }
        // Past the end: damage, named.
        let past: Vec<_> = std::iter::once(len - 10..len + 1).collect();
        let e = read_all(&repo, &index, number, &past, 0).unwrap_err();
        let info = index.pack(number);
        assert!(
            e.to_string()
                .contains(&Repository::pack_path(info.kind, &info.id)),
            "{e}"
        );
    }

    #[test]
    fn a_pack_cut_short_or_changed_fails_naming_it() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, index, number, plain) = one_pack(dir.path());
        let info = index.pack(number);
        let path = Repository::pack_path(info.kind, &info.id);
        let file = dir.path().join(&path);
        let good = std::fs::read(&file).unwrap();
        let len = plain.len() as u64;
        let spans = [0..CHUNK * 3, CHUNK * 3..len];
        for bad in [
            good[..good.len() / 2].to_vec(),
            good[..good.len() - CHUNK_STORED as usize].to_vec(),
            {
                let mut b = good.clone();
                b[good.len() / 3] ^= 1;
                b
            },
        ] {
            std::fs::write(&file, &bad).unwrap();
            for gap in [0, 1 << 20] {
                let e = read_all(&repo, &index, number, &spans, gap).unwrap_err();
                assert!(e.to_string().contains(&path), "{e}");
                assert!(e.to_string().contains("damaged"), "{e}");
            }
        }
    }
}
