//! Reading a file back in file order while it is still being written out of order.
//!
//! [`super::content`] writes a file's blobs in pack order. A check that needs the bytes in file
//! order (an etcd snapshot's sha256 trailer and bbolt facts) follows the written prefix on its
//! own thread: as the blobs at the front are done it reads them back (from the page cache) into
//! pooled buffers and hands them on (to the two threads of the check), and starts their
//! writeback to disk, so the check and most of the flush are over soon after the last blob is
//! written instead of starting then.

use super::{sys, RestoreError};
use crate::plain::{Buffers, Plain};
use crate::writeback::start_writeback;
use crate::Result;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::Arc;
use std::time::Duration;

/// Bytes read back and fed at a time.
const PIECE: usize = 256 << 10;
/// Read-back buffers kept for reuse: as many as the check's two threads may hold queued.
const POOLED: usize = 12;

/// Bytes of the file read back, in a buffer that goes back to its pool once every holder let
/// it go.
pub type Piece = Arc<Plain>;

/// Takes the file's bytes in order, piece by piece.
pub type Feed<'a> = &'a mut (dyn FnMut(Piece) + Send);

/// Bytes of the file whose completion is tracked together.
const REGION: u64 = 1 << 20;

/// How much of each 1 MiB region of a file is written (or a hole): 4 bytes a MiB, whatever the
/// number of blobs; none tracked when nobody follows.
pub struct Done {
    regions: Vec<AtomicU32>,
    len: u64,
}

impl Done {
    /// Tracking for a file of `len` bytes, or none.
    pub fn new(len: u64, track: bool) -> Done {
        let regions = if track { len.div_ceil(REGION) } else { 0 };
        Done {
            regions: (0..regions).map(|_| AtomicU32::new(0)).collect(),
            len,
        }
    }

    /// `len` bytes at `at` are on disk (each byte of the file is marked once).
    pub fn mark(&self, at: u64, len: u64) {
        let mut at = at;
        let end = at + len;
        while at < end && self.tracked() {
            let r = at / REGION;
            let upto = ((r + 1) * REGION).min(end);
            if let Some(d) = self.regions.get(r as usize) {
                d.fetch_add((upto - at) as u32, Ordering::Release);
            }
            at = upto;
        }
    }

    /// Whether regions are tracked (somebody follows).
    pub fn tracked(&self) -> bool {
        !self.regions.is_empty()
    }

    /// Whether region `r` is complete.
    fn is_done(&self, r: usize) -> bool {
        let start = r as u64 * REGION;
        let want = (start + REGION).min(self.len) - start;
        u64::from(self.regions[r].load(Ordering::Acquire)) >= want
    }
}

/// Feed `file`'s bytes to `feed` in order as `done` says they are written; `len` is the file's
/// length (already set: holes read as zeros). Returns when all is fed, or early once `failed`;
/// `over` says no more is coming.
pub fn follow(
    file: &File,
    len: u64,
    done: &Done,
    over: &AtomicBool,
    failed: &AtomicBool,
    feed: Feed<'_>,
) -> Result<()> {
    let pool = Arc::new(Buffers::new(POOLED));
    let (mut next, mut pos) = (0usize, 0u64);
    loop {
        // Read before the scan: once set, every position written is visible to it.
        let finished = over.load(Ordering::Acquire);
        while next < done.regions.len() && done.is_done(next) {
            next += 1;
        }
        let ready = if next == done.regions.len() {
            len
        } else {
            next as u64 * REGION
        };
        while ready - pos >= PIECE as u64 || (ready == len && pos < len) {
            let n = (ready - pos).min(PIECE as u64) as usize;
            let mut buf = pool.take();
            if buf.len() < n {
                buf.resize(n, 0);
            }
            file.read_exact_at(&mut buf[..n], pos)
                .map_err(sys("reading back the restored file"))?;
            feed(Arc::new(Plain::new(buf, 0..n, pos, n).returning_to(&pool)));
            start_writeback(file, pos, n as u64);
            pos += n as u64;
        }
        if pos == len || failed.load(Ordering::Relaxed) {
            return Ok(());
        }
        if finished {
            return Err(RestoreError::Inconsistent(format!(
                "the file was not completely written ({pos} of {len} bytes)"
            ))
            .into());
        }
        std::thread::sleep(Duration::from_millis(1));
    }
}

/// Feed the first `len` bytes of `file`, written already, to `feed`.
pub fn feed_written(file: &File, len: u64, feed: Feed<'_>) -> Result<()> {
    let done = Done::new(0, false);
    let set = AtomicBool::new(true);
    follow(file, len, &done, &set, &AtomicBool::new(false), feed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn follows_out_of_order_writes_in_file_order() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::options()
            .read(true)
            .write(true)
            .create_new(true)
            .open(dir.path().join("f"))
            .unwrap();
        // Blobs of 700 KiB written last to first, the middle one a hole.
        let blob = 700 << 10;
        let n = 5usize;
        let len = (n * blob) as u64;
        file.set_len(len).unwrap();
        let done = Done::new(len, true);
        let (over, failed) = (AtomicBool::new(false), AtomicBool::new(false));
        let mut seen = Vec::new();
        std::thread::scope(|s| {
            let follower = s.spawn(|| {
                let mut feed = |p: Piece| seen.extend_from_slice(&p);
                follow(&file, len, &done, &over, &failed, &mut feed)
            });
            for i in (0..n).rev() {
                if i != 2 {
                    file.write_all_at(&vec![i as u8 + 1; blob], (i * blob) as u64)
                        .unwrap();
                }
                done.mark((i * blob) as u64, blob as u64);
                std::thread::sleep(Duration::from_millis(3));
            }
            over.store(true, Ordering::Release);
            follower.join().unwrap().unwrap();
        });
        let want: Vec<u8> = (0..n)
            .flat_map(|i| vec![if i == 2 { 0 } else { i as u8 + 1 }; blob])
            .collect();
        assert!(seen == want);

        // A position never marked: an error once no more is coming, not a hang.
        let done = Done::new(len, true);
        done.mark(0, blob as u64);
        let mut feed = |_: Piece| {};
        let e = follow(&file, len, &done, &over, &failed, &mut feed).unwrap_err();
        assert!(e.to_string().contains("not completely written"), "{e}");
    }
}
