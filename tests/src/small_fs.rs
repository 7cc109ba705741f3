//! A small tmpfs mounted for a test's duration: a full disk, for real (needs root or
//! CAP_SYS_ADMIN; tests skip with a note where mounting is not allowed).

use std::path::{Path, PathBuf};
use std::process::Command;

/// A tmpfs mounted on a directory, unmounted when dropped.
pub struct SmallFs {
    /// Where it is mounted.
    pub dir: PathBuf,
}

impl SmallFs {
    /// A 1 MiB tmpfs on `dir` (created), or None if mounting is not allowed here.
    pub fn mount(dir: &Path) -> Option<SmallFs> {
        SmallFs::mount_sized(dir, "1m")
    }

    /// A tmpfs of `size` (mount's syntax: `64k`, `1m`) on `dir`, or None.
    pub fn mount_sized(dir: &Path, size: &str) -> Option<SmallFs> {
        std::fs::create_dir_all(dir).unwrap();
        let ok = Command::new("mount")
            .args(["-t", "tmpfs", "-o", &format!("size={size}"), "tmpfs"])
            .arg(dir)
            .status()
            .map(|st| st.success())
            .unwrap_or(false);
        ok.then(|| SmallFs {
            dir: dir.to_path_buf(),
        })
    }
}

impl Drop for SmallFs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.dir).status();
    }
}
