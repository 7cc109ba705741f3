//! Restore's temporary files, `.cairn-restore-<pid>-<n>`, and removing those a killed restore
//! left behind.

use rustix::fd::BorrowedFd;
use rustix::fs::{self as rfs, AtFlags, Dir, FileType};
use rustix::io::Errno;
use rustix::process::Pid;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;

const PREFIX: &str = ".cairn-restore-";

/// The name of this process's `n`th temporary file.
pub fn name(n: u64) -> String {
    format!("{PREFIX}{}-{n}", std::process::id())
}

/// The process id in a temporary file's name, if `name` is exactly one.
fn owner(name: &[u8]) -> Option<Pid> {
    let rest = name.strip_prefix(PREFIX.as_bytes())?;
    let dash = rest.iter().position(|&b| b == b'-')?;
    let (pid, n) = (&rest[..dash], &rest[dash + 1..]);
    let digits = |s: &[u8]| !s.is_empty() && s.iter().all(u8::is_ascii_digit);
    if !digits(pid) || !digits(n) {
        return None;
    }
    let pid: i32 = std::str::from_utf8(pid).ok()?.parse().ok()?;
    Pid::from_raw(pid)
}

/// Whether no process `pid` exists on this host.
fn is_dead(pid: Pid) -> bool {
    matches!(rustix::process::test_kill_process(pid), Err(Errno::SRCH))
}

/// Remove the regular files in `dir` named like a temporary of a process that no longer
/// exists (a killed restore's). Symlinks and anything else are left alone. Returns how many
/// were removed.
pub fn remove_stale(dir: BorrowedFd<'_>) -> rustix::io::Result<u64> {
    let mut removed = 0;
    for entry in Dir::read_from(dir)? {
        let entry = entry?;
        let name = OsStr::from_bytes(entry.file_name().to_bytes());
        let Some(pid) = owner(name.as_bytes()) else {
            continue;
        };
        if !is_dead(pid) || !is_regular_file(dir, name, entry.file_type()) {
            continue;
        }
        match rfs::unlinkat(dir, name, AtFlags::empty()) {
            Ok(()) => removed += 1,
            Err(Errno::NOENT) => {}
            Err(e) => return Err(e),
        }
    }
    Ok(removed)
}

/// Whether `name` in `dir` is a regular file (not following a symlink).
fn is_regular_file(dir: BorrowedFd<'_>, name: &OsStr, listed: FileType) -> bool {
    match listed {
        FileType::Unknown => rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW)
            .is_ok_and(|st| FileType::from_raw_mode(st.st_mode) == FileType::RegularFile),
        t => t == FileType::RegularFile,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_exact_names_have_an_owner() {
        let raw = |s: &[u8]| owner(s).map(|p| p.as_raw_nonzero().get());
        assert_eq!(raw(b".cairn-restore-123-4"), Some(123));
        for bad in [
            &b".cairn-restore-123-"[..],
            b".cairn-restore--4",
            b".cairn-restore-0-4",
            b".cairn-restore-12a-4",
            b".cairn-restore-123-4.db",
            b".cairn-restore-+1-4",
            b".cairn-restore-99999999999-4",
            b"x.cairn-restore-1-4",
        ] {
            assert_eq!(raw(bad), None, "{}", String::from_utf8_lossy(bad));
        }
    }
}
