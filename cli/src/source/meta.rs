//! File metadata → tree nodes, and owner names both ways (cached).

use cairn_format::tree::{Node, NodeKind, Xattr};
use std::collections::HashMap;
use std::fs::Metadata;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
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

/// The uid to restore for a node: the named user's id on this host if it exists, else the
/// recorded number (as tar does).
pub fn restore_uid(node: &Node) -> u32 {
    node.user
        .as_deref()
        .and_then(uzers::get_user_by_name)
        .map_or(node.uid, |u| u.uid())
}

/// The gid to restore for a node, likewise.
pub fn restore_gid(node: &Node) -> u32 {
    node.group
        .as_deref()
        .and_then(uzers::get_group_by_name)
        .map_or(node.gid, |g| g.gid())
}

/// Node kind from metadata.
pub fn kind(meta: &Metadata) -> NodeKind {
    let ft = meta.file_type();
    if ft.is_dir() {
        NodeKind::Dir
    } else if ft.is_symlink() {
        NodeKind::Symlink
    } else if ft.is_fifo() {
        NodeKind::Fifo
    } else if ft.is_char_device() {
        NodeKind::CharDevice
    } else if ft.is_block_device() {
        NodeKind::BlockDevice
    } else if ft.is_socket() {
        NodeKind::Socket
    } else {
        NodeKind::File
    }
}

/// A node with the metadata of `path` (content, subtree and target left empty).
pub fn node(name: Vec<u8>, path: &Path, meta: &Metadata, owners: &mut Owners) -> Node {
    let mut n = Node::new(name, kind(meta));
    n.mode = meta.mode() & 0o7777;
    n.uid = meta.uid();
    n.gid = meta.gid();
    n.user = owners.user(n.uid);
    n.group = owners.group(n.gid);
    n.mtime_ns = meta.mtime() * 1_000_000_000 + meta.mtime_nsec();
    n.ctime_ns = meta.ctime() * 1_000_000_000 + meta.ctime_nsec();
    n.size = if n.kind == NodeKind::File {
        meta.len()
    } else {
        0
    };
    n.device = meta.dev();
    n.inode = meta.ino();
    n.nlink = meta.nlink();
    n.rdev = meta.rdev();
    n.xattrs = xattrs(path);
    n
}

/// Extended attributes of `path` (not following symlinks), sorted; none where unsupported.
pub fn xattrs(path: &Path) -> Vec<Xattr> {
    use std::os::unix::ffi::OsStrExt;
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
