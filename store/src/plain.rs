//! Decrypted pack bytes in buffers that are used again: a restore reads every span of a pack
//! into a buffer, decrypts it there and hands it on; the buffer comes back for the next read
//! instead of a fresh allocation (fresh memory of a MiB or more is mapped, faulted in and
//! zeroed by the kernel page by page, and unmapped again after use).

use std::ops::{Deref, Range};
use std::sync::{Arc, Mutex};

/// Plaintext of a pack read into a buffer: the bytes asked for, within the decrypted chunks
/// around them. Dropped, it hands its buffer back to the pool it came from, if any.
pub struct Plain {
    buf: Vec<u8>,
    range: Range<usize>,
    /// Offset in the pack's plaintext of `buf[0]`.
    origin: u64,
    /// Decrypted bytes at the start of `buf`.
    valid: usize,
    home: Option<Arc<Buffers>>,
}

impl Plain {
    /// The bytes `range` of `buf`, whose first `valid` bytes are the pack's plaintext from
    /// `origin` on. The range must lie within them.
    pub(crate) fn new(buf: Vec<u8>, range: Range<usize>, origin: u64, valid: usize) -> Plain {
        debug_assert!(range.end <= valid && valid <= buf.len());
        Plain {
            buf,
            range,
            origin,
            valid,
            home: None,
        }
    }

    /// The pack's plaintext at `offset`, `len` bytes, if this read decrypted it (a frame
    /// next to the one asked for often lies in the same age chunk).
    pub fn within(&self, offset: u64, len: usize) -> Option<&[u8]> {
        let at = usize::try_from(offset.checked_sub(self.origin)?).ok()?;
        self.buf[..self.valid].get(at..at.checked_add(len)?)
    }

    /// The bytes [`Plain::within`] gives, as the buffer itself (moved to its start, the rest
    /// cut off): a long frame stored uncompressed is then held once, not copied.
    pub fn into_within(self, offset: u64, len: usize) -> Option<Vec<u8>> {
        let at = usize::try_from(offset.checked_sub(self.origin)?).ok()?;
        let end = at.checked_add(len).filter(|&end| end <= self.valid)?;
        let mut buf = self.into_buffer();
        buf.truncate(end);
        buf.drain(..at);
        Some(buf)
    }

    /// The same bytes, their buffer handed back to `pool` once dropped.
    pub fn returning_to(mut self, pool: &Arc<Buffers>) -> Plain {
        self.home = Some(pool.clone());
        self
    }

    /// The buffer, for the next read.
    pub fn into_buffer(mut self) -> Vec<u8> {
        self.home = None;
        std::mem::take(&mut self.buf)
    }
}

impl Drop for Plain {
    fn drop(&mut self) {
        if let Some(home) = self.home.take() {
            home.put(std::mem::take(&mut self.buf));
        }
    }
}

impl Deref for Plain {
    type Target = [u8];
    fn deref(&self) -> &[u8] {
        &self.buf[self.range.clone()]
    }
}

impl AsRef<[u8]> for Plain {
    fn as_ref(&self) -> &[u8] {
        self
    }
}

/// Buffers handed back after use, at most `keep` of them.
pub struct Buffers {
    free: Mutex<Vec<Vec<u8>>>,
    keep: usize,
}

impl Buffers {
    /// A pool that keeps at most `keep` buffers (those in use are not counted).
    pub fn new(keep: usize) -> Buffers {
        Buffers {
            free: Mutex::new(Vec::with_capacity(keep)),
            keep,
        }
    }

    /// A buffer handed back earlier, or a new empty one.
    pub fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .pop()
            .unwrap_or_default()
    }

    /// Hand `buf` back (dropped if the pool is full).
    pub fn put(&self, buf: Vec<u8>) {
        let mut free = self.free.lock().unwrap_or_else(|p| p.into_inner());
        if free.len() < self.keep {
            free.push(buf);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn buffers_come_back_and_the_pool_is_bounded() {
        let pool = Buffers::new(1);
        let mut a = pool.take();
        a.resize(1000, 1);
        let ptr = a.as_ptr();
        let plain = Plain::new(a, 10..20, 5_000, 900);
        assert_eq!(&*plain, &[1u8; 10]);
        assert_eq!(plain.within(5_010, 10), Some(&[1u8; 10][..]));
        assert!(plain.within(5_000, 901).is_none() && plain.within(4_999, 1).is_none());
        pool.put(plain.into_buffer());
        pool.put(vec![0; 5]);
        let again = pool.take();
        assert_eq!((again.as_ptr(), again.len()), (ptr, 1000));
        assert!(pool.take().is_empty(), "the second buffer was not kept");
        // Dropped, a plaintext from a pool goes back to it.
        let pool = Arc::new(pool);
        drop(Plain::new(again, 0..1, 0, 1).returning_to(&pool));
        let back = pool.take();
        assert_eq!(back.as_ptr(), ptr);
    }
}
