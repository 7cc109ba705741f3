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
use std::sync::atomic::{AtomicBool, Ordering};
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

/// Which blob positions of a file are written (or are holes); none tracked when nobody follows.
pub struct Done(Vec<AtomicBool>);

impl Done {
    /// Tracking for `blobs` blob positions, or none.
    pub fn new(blobs: usize, track: bool) -> Done {
        Done(if track {
            (0..blobs).map(|_| AtomicBool::new(false)).collect()
        } else {
            Vec::new()
        })
    }

    /// Position `blob` is on disk.
    pub fn mark(&self, blob: usize) {
        if let Some(d) = self.0.get(blob) {
            d.store(true, Ordering::Release);
        }
    }

    /// Whether positions are tracked (somebody follows).
    pub fn tracked(&self) -> bool {
        !self.0.is_empty()
    }

    fn is_done(&self, blob: usize) -> bool {
        self.0[blob].load(Ordering::Acquire)
    }
}

/// Feed `file`'s bytes to `feed` in order as `done` says they are written; `ends[i]` is where
/// blob position `i` ends in the file, `len` the file's length (already set: holes read as
/// zeros). Returns when all is fed, or early once `failed`; `over` says no more is coming.
pub fn follow(
    file: &File,
    len: u64,
    ends: &[u64],
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
        while next < ends.len() && done.is_done(next) {
            next += 1;
        }
        let ready = if next == ends.len() {
            len
        } else {
            next.checked_sub(1).map_or(0, |i| ends[i])
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
    follow(file, len, &[], &done, &set, &AtomicBool::new(false), feed)
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
        let ends: Vec<u64> = (1..=n).map(|i| (i * blob) as u64).collect();
        let done = Done::new(n, true);
        let (over, failed) = (AtomicBool::new(false), AtomicBool::new(false));
        let mut seen = Vec::new();
        std::thread::scope(|s| {
            let follower = s.spawn(|| {
                let mut feed = |p: Piece| seen.extend_from_slice(&p);
                follow(&file, len, &ends, &done, &over, &failed, &mut feed)
            });
            for i in (0..n).rev() {
                if i != 2 {
                    file.write_all_at(&vec![i as u8 + 1; blob], (i * blob) as u64)
                        .unwrap();
                }
                done.mark(i);
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
        let done = Done::new(n, true);
        done.mark(0);
        let mut feed = |_: Piece| {};
        let e = follow(&file, len, &ends, &done, &over, &failed, &mut feed).unwrap_err();
        assert!(e.to_string().contains("not completely written"), "{e}");
    }
}
