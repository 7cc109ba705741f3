//! Trees: one blob per directory, listing its entries sorted by name.

use crate::record::{self, RecordKind};
use crate::{Error, Id};
use serde::{Deserialize, Serialize};

/// What a node is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum NodeKind {
    /// Regular file; content in `Node::content`.
    File,
    /// Directory; entries in the tree `Node::subtree`.
    Dir,
    /// Symbolic link; target in `Node::target`.
    Symlink,
    /// Named pipe.
    Fifo,
    /// Character device (`Node::rdev`).
    CharDevice,
    /// Block device (`Node::rdev`).
    BlockDevice,
    /// Unix socket (recorded, not restored).
    Socket,
}

/// One extended attribute (e.g. `security.selinux`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Xattr {
    /// Attribute name.
    pub name: Vec<u8>,
    /// Attribute value.
    pub value: Vec<u8>,
}

/// One directory entry with its metadata.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Node {
    /// File name (raw bytes, never empty, no `/` or NUL, not `.` or `..`).
    pub name: Vec<u8>,
    /// Type.
    pub kind: NodeKind,
    /// Permission bits including setuid/setgid/sticky (`st_mode & 0o7777`).
    pub mode: u32,
    /// Owner id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
    /// Owner name, when the backup host could resolve it.
    pub user: Option<String>,
    /// Group name, when the backup host could resolve it.
    pub group: Option<String>,
    /// Modification time, nanoseconds since the Unix epoch.
    pub mtime_ns: i64,
    /// Status change time, nanoseconds since the Unix epoch (used to detect changes).
    pub ctime_ns: i64,
    /// Size in bytes (files: content length).
    pub size: u64,
    /// Device of the source file system (hard-link grouping and change detection).
    pub device: u64,
    /// Inode number on the source (hard-link grouping and change detection).
    pub inode: u64,
    /// Link count on the source; files with `nlink > 1` sharing (device, inode) are hard links.
    pub nlink: u64,
    /// Device number for device nodes.
    pub rdev: u64,
    /// Symlink target (raw bytes).
    pub target: Option<Vec<u8>>,
    /// Extended attributes, sorted by name.
    pub xattrs: Vec<Xattr>,
    /// Content blob ids, in order (files).
    pub content: Vec<Id>,
    /// Subtree blob id (directories).
    pub subtree: Option<Id>,
}

impl Node {
    /// A node with the given name and kind and every other field empty.
    pub fn new(name: Vec<u8>, kind: NodeKind) -> Self {
        Node {
            name,
            kind,
            mode: 0,
            uid: 0,
            gid: 0,
            user: None,
            group: None,
            mtime_ns: 0,
            ctime_ns: 0,
            size: 0,
            device: 0,
            inode: 0,
            nlink: 1,
            rdev: 0,
            target: None,
            xattrs: Vec::new(),
            content: Vec::new(),
            subtree: None,
        }
    }
}

/// Is `name` acceptable as one path component? Restore relies on this to stay in its target.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// A directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tree {
    /// Entries, strictly sorted by name (so names are unique).
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Encode as a tree blob. Sorts the nodes first.
    pub fn encode(&mut self) -> Vec<u8> {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        record::encode(RecordKind::Tree, self)
    }

    /// Decode a tree blob, rejecting unsafe names, duplicates, and kind/field mismatches.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tree: Tree = record::decode(RecordKind::Tree, bytes)?;
        let mut prev: Option<&[u8]> = None;
        for n in &tree.nodes {
            if !valid_name(&n.name) {
                return Err(Error::malformed(
                    "tree",
                    format!("unsafe entry name {:?}", String::from_utf8_lossy(&n.name)),
                ));
            }
            if prev.is_some_and(|p| p >= n.name.as_slice()) {
                return Err(Error::malformed(
                    "tree",
                    format!(
                        "entries not strictly sorted at {:?}",
                        String::from_utf8_lossy(&n.name)
                    ),
                ));
            }
            prev = Some(&n.name);
            let consistent = match n.kind {
                NodeKind::Dir => n.subtree.is_some() && n.content.is_empty(),
                NodeKind::Symlink => n.target.is_some() && n.content.is_empty(),
                NodeKind::File => n.subtree.is_none(),
                _ => n.content.is_empty() && n.subtree.is_none(),
            };
            if !consistent {
                return Err(Error::malformed(
                    "tree",
                    format!(
                        "entry {:?} has fields that do not fit its kind",
                        String::from_utf8_lossy(&n.name)
                    ),
                ));
            }
        }
        Ok(tree)
    }

    /// Find an entry by name.
    pub fn get(&self, name: &[u8]) -> Option<&Node> {
        self.nodes
            .binary_search_by(|n| n.name.as_slice().cmp(name))
            .ok()
            .map(|i| &self.nodes[i])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn file(name: &str) -> Node {
        let mut n = Node::new(name.as_bytes().to_vec(), NodeKind::File);
        n.content = vec![Id([5; 32])];
        n.xattrs = vec![Xattr {
            name: b"security.selinux".to_vec(),
            value: b"system_u:object_r:etc_t:s0".to_vec(),
        }];
        n
    }

    #[test]
    fn round_trip_sorted() {
        let mut t = Tree {
            nodes: vec![file("b"), file("a")],
        };
        let bytes = t.encode();
        let back = Tree::decode(&bytes).unwrap();
        assert_eq!(back.nodes[0].name, b"a");
        assert!(back.get(b"b").is_some());
        assert!(back.get(b"c").is_none());
    }

    #[test]
    fn unsafe_names_and_duplicates_are_rejected() {
        for bad in ["..", ".", "a/b", ""] {
            let t = Tree {
                nodes: vec![file(bad)],
            };
            let bytes = record::encode(RecordKind::Tree, &t);
            assert!(Tree::decode(&bytes).is_err(), "{bad:?} accepted");
        }
        let t = Tree {
            nodes: vec![file("a"), file("a")],
        };
        assert!(Tree::decode(&record::encode(RecordKind::Tree, &t)).is_err());
        let mut dir = Node::new(b"d".to_vec(), NodeKind::Dir);
        dir.subtree = None;
        let t = Tree { nodes: vec![dir] };
        assert!(Tree::decode(&record::encode(RecordKind::Tree, &t)).is_err());
    }
}
