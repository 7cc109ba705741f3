//! Early writeback: files written in one go (restored files, staged packs) ask the kernel to
//! start writing their pages out while more are written, so the fsync at their end has little
//! left to do and dirty pages do not pile up.

use std::fs::File;

/// Start writing `len` bytes at `offset` of `file` to disk without waiting (a later fsync
/// then has little left to do). Best effort: an error is left to that fsync.
pub fn start_writeback(file: &File, offset: u64, len: u64) {
    use std::os::fd::AsRawFd;
    let (Ok(offset), Ok(len)) = (i64::try_from(offset), i64::try_from(len)) else {
        return;
    };
    // SAFETY: sync_file_range only reads its integer arguments; the descriptor is open for
    // the duration of the borrow of `file`.
    unsafe {
        libc::sync_file_range(file.as_raw_fd(), offset, len, libc::SYNC_FILE_RANGE_WRITE);
    }
}
