//! Reserving room for a temporary file before it is written, so that a full file system
//! (a small or full TMPDIR) is found before the work starts, while a fallback is still cheap,
//! rather than half-way through.

use rustix::fs::{fallocate, FallocateFlags};
use rustix::io::Errno;
use std::fs::File;

/// Reserve `len` bytes of disk for `file` from its start without changing its length: writes
/// within them then cannot fail for want of space. A file system that cannot reserve space
/// (no `fallocate`) is left to the writes.
pub(crate) fn reserve(file: &File, len: u64) -> std::io::Result<()> {
    if len == 0 {
        return Ok(());
    }
    match fallocate(file, FallocateFlags::KEEP_SIZE, 0, len) {
        Ok(()) | Err(Errno::OPNOTSUPP | Errno::NOSYS) => Ok(()),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reserving_keeps_the_length_and_refuses_what_the_disk_cannot_hold() {
        let f = tempfile::tempfile().unwrap();
        reserve(&f, 1 << 20).unwrap();
        assert_eq!(f.metadata().unwrap().len(), 0);
        let e = reserve(&f, u64::MAX >> 2).unwrap_err();
        assert!(
            matches!(e.raw_os_error(), Some(libc::ENOSPC | libc::EFBIG)),
            "{e}"
        );
    }
}
