//! File metadata → tree nodes, and owner names of ids (cached); restore maps names back in
//! `restore::owners`.

use cairn_format::tree::{Node, NodeKind, Xattr};
use rustix::fd::{AsRawFd, BorrowedFd};
use rustix::fs::{FileType, Stat};
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Resolves uid/gid ↔ names with a cache (one passwd lookup per id, not per file).
#[derive(Default)]
pub struct Owners {
    users: HashMap<u32, Option<String>>,
    groups: HashMap<u32, Option<String>>,
}

impl Owners {
    /// User name of `uid` on this host.
    pub fn user(&mut self, uid: u32) -> Option<String> {
        self.users
            .entry(uid)
            .or_insert_with(|| {
                uzers::get_user_by_uid(uid).map(|u| u.name().to_string_lossy().into_owned())
            })
            .clone()
    }

    /// Group name of `gid` on this host.
    pub fn group(&mut self, gid: u32) -> Option<String> {
        self.groups
            .entry(gid)
            .or_insert_with(|| {
                uzers::get_group_by_gid(gid).map(|g| g.name().to_string_lossy().into_owned())
            })
            .clone()
    }
}

/// Node kind from a `stat` mode.
pub fn kind(st: &Stat) -> NodeKind {
    match FileType::from_raw_mode(st.st_mode) {
        FileType::Directory => NodeKind::Dir,
        FileType::Symlink => NodeKind::Symlink,
        FileType::Fifo => NodeKind::Fifo,
        FileType::CharacterDevice => NodeKind::CharDevice,
        FileType::BlockDevice => NodeKind::BlockDevice,
        FileType::Socket => NodeKind::Socket,
        _ => NodeKind::File,
    }
}

/// A node with the metadata of `st` and the given extended attributes (content, subtree and
/// target left empty).
pub fn node(name: Vec<u8>, st: &Stat, xattrs: Vec<Xattr>, owners: &mut Owners) -> Node {
    let mut n = Node::new(name, kind(st));
    n.mode = st.st_mode & 0o7777;
    n.uid = st.st_uid;
    n.gid = st.st_gid;
    n.user = owners.user(n.uid);
    n.group = owners.group(n.gid);
    n.mtime_ns = mtime_ns(st);
    n.ctime_ns = ctime_ns(st);
    n.size = if n.kind == NodeKind::File {
        st.st_size as u64
    } else {
        0
    };
    n.device = st.st_dev;
    n.inode = st.st_ino;
    #[allow(clippy::unnecessary_cast)] // u32 on some architectures
    let nlink = st.st_nlink as u64;
    n.nlink = nlink;
    n.rdev = st.st_rdev;
    n.xattrs = xattrs;
    n
}

/// Modification time in nanoseconds since the epoch.
#[allow(clippy::unnecessary_cast)] // the field types differ between architectures
pub fn mtime_ns(st: &Stat) -> i64 {
    st.st_mtime as i64 * 1_000_000_000 + st.st_mtime_nsec as i64
}

/// Status change time in nanoseconds since the epoch.
#[allow(clippy::unnecessary_cast)]
pub fn ctime_ns(st: &Stat) -> i64 {
    st.st_ctime as i64 * 1_000_000_000 + st.st_ctime_nsec as i64
}

/// Extended attributes of the entry `name` in the directory `dir` (not following a symlink),
/// sorted; none where unsupported. The entry is named through the directory descriptor
/// (`/proc/self/fd/N/name`), so paths longer than PATH_MAX work and a renamed parent cannot
/// redirect the read; `fallback` (the full path) is used where /proc is not mounted.
pub fn xattrs_at(dir: BorrowedFd<'_>, name: &[u8], fallback: &Path) -> Vec<Xattr> {
    let mut via_fd = format!("/proc/self/fd/{}/", dir.as_raw_fd()).into_bytes();
    via_fd.extend_from_slice(name);
    let via_fd = Path::new(OsStr::from_bytes(&via_fd));
    static PROC: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    let path = if *PROC.get_or_init(|| Path::new("/proc/self/fd").is_dir()) {
        via_fd
    } else {
        fallback
    };
    let Ok(names) = xattr::list(path) else {
        return Vec::new();
    };
    let mut out: Vec<Xattr> = names
        .filter_map(|name| {
            let value = xattr::get(path, &name).ok().flatten()?;
            Some(Xattr {
                name: name.as_bytes().to_vec(),
                value,
            })
        })
        .collect();
    out.sort_by(|a, b| a.name.cmp(&b.name));
    out
}

/// True when the file looks unchanged since `old` was recorded: same type, size, mtime,
/// ctime, inode and device.
pub fn unchanged(new: &Node, old: &Node) -> bool {
    new.kind == old.kind
        && new.size == old.size
        && new.mtime_ns == old.mtime_ns
        && new.ctime_ns == old.ctime_ns
        && new.inode == old.inode
        && new.device == old.device
}
