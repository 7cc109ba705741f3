//! A pack's ciphertext read one span at a time: before a span of plaintext is decrypted, the
//! STREAM chunks holding it are read with one request (one ranged GET from S3, however far
//! the span lies from the previous one) into a window that the decryption then reads from.

use crate::backend::ReadSeek;
use std::io::{self, Read, Seek, SeekFrom};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

/// The object reader and the staged window, shared by the handle and the reader.
struct State {
    inner: Box<dyn ReadSeek>,
    /// Where `inner` stands (None: unknown, seek before reading).
    inner_pos: Option<u64>,
    size: u64,
    window_start: u64,
    window: Vec<u8>,
}

/// The reader handed to the decryption: reads come from the window when they fall in it,
/// from the object otherwise.
pub struct StagedReader {
    state: Arc<Mutex<State>>,
    pos: u64,
}

/// The handle that stages windows of the object a [`StagedReader`] reads.
pub struct Stager {
    state: Arc<Mutex<State>>,
}

/// A staged reader over `inner` and its handle.
pub fn staged(mut inner: Box<dyn ReadSeek>) -> io::Result<(StagedReader, Stager)> {
    let size = inner.seek(SeekFrom::End(0))?;
    let state = Arc::new(Mutex::new(State {
        inner,
        inner_pos: None,
        size,
        window_start: 0,
        window: Vec::new(),
    }));
    Ok((
        StagedReader {
            state: state.clone(),
            pos: 0,
        },
        Stager { state },
    ))
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

impl Stager {
    /// The object's length.
    pub fn size(&self) -> u64 {
        lock(&self.state).size
    }

    /// Read `range` of the object with one read; later reads inside it are served from it.
    pub fn stage(&self, range: Range<u64>) -> io::Result<()> {
        let mut s = lock(&self.state);
        s.window = Vec::new();
        let len = usize::try_from(range.end.saturating_sub(range.start))
            .map_err(|_| io::Error::other("span too large"))?;
        let mut window = vec![0u8; len];
        s.inner_pos = None;
        s.inner.seek(SeekFrom::Start(range.start))?;
        s.inner.read_exact(&mut window)?;
        s.inner_pos = Some(range.end);
        s.window_start = range.start;
        s.window = window;
        Ok(())
    }

    /// Drop the staged window.
    pub fn clear(&self) {
        lock(&self.state).window = Vec::new();
    }
}

impl Read for StagedReader {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        let mut s = lock(&self.state);
        let end = s.window_start + s.window.len() as u64;
        if self.pos >= s.window_start && self.pos < end {
            let at = (self.pos - s.window_start) as usize;
            let n = out.len().min(s.window.len() - at);
            out[..n].copy_from_slice(&s.window[at..at + n]);
            self.pos += n as u64;
            return Ok(n);
        }
        if s.inner_pos != Some(self.pos) {
            s.inner_pos = None;
            s.inner.seek(SeekFrom::Start(self.pos))?;
        }
        let n = s.inner.read(out)?;
        self.pos += n as u64;
        s.inner_pos = Some(self.pos);
        Ok(n)
    }
}

impl Seek for StagedReader {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        let new = match to {
            SeekFrom::Start(n) => Some(n),
            SeekFrom::End(d) => lock(&self.state).size.checked_add_signed(d),
            SeekFrom::Current(d) => self.pos.checked_add_signed(d),
        };
        self.pos = new.ok_or_else(|| {
            io::Error::new(io::ErrorKind::InvalidInput, "seek before start of object")
        })?;
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Counts reads of the object.
    struct Counting(io::Cursor<Vec<u8>>, Arc<Mutex<usize>>);
    impl Read for Counting {
        fn read(&mut self, b: &mut [u8]) -> io::Result<usize> {
            *self.1.lock().unwrap() += 1;
            self.0.read(b)
        }
    }
    impl Seek for Counting {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.0.seek(to)
        }
    }

    #[test]
    fn a_staged_span_is_read_once_and_other_reads_still_work() {
        let data: Vec<u8> = (0..10_000u32).map(|i| (i % 253) as u8).collect();
        let reads = Arc::new(Mutex::new(0));
        let (mut r, stager) = staged(Box::new(Counting(
            io::Cursor::new(data.clone()),
            reads.clone(),
        )))
        .unwrap();
        assert_eq!(stager.size(), 10_000);
        stager.stage(3_000..7_000).unwrap();
        let before = *reads.lock().unwrap();
        let mut buf = vec![0u8; 4_000];
        r.seek(SeekFrom::Start(3_000)).unwrap();
        for piece in buf.chunks_mut(700) {
            r.read_exact(piece).unwrap();
        }
        assert_eq!(buf, &data[3_000..7_000]);
        assert_eq!(*reads.lock().unwrap(), before, "served from the window");
        // Past the window and after clearing it: from the object.
        let mut tail = vec![0u8; 100];
        r.read_exact(&mut tail).unwrap();
        assert_eq!(tail, &data[7_000..7_100]);
        stager.clear();
        r.seek(SeekFrom::Start(3_500)).unwrap();
        r.read_exact(&mut tail).unwrap();
        assert_eq!(tail, &data[3_500..3_600]);
        assert!(stager.stage(9_000..11_000).is_err(), "beyond the end");
    }
}
