//! Trees: one blob per directory, listing its entries sorted by name.

use crate::bounded::{self, bytes_cost, Limits};
use crate::record::{self, RecordKind};
use crate::{Error, Id};
use serde::{Deserialize, Deserializer, Serialize};

/// Most extended attributes one entry may carry (Linux keeps a file's attribute names within
/// 64 KiB; real files carry a handful).
pub const MAX_XATTRS: usize = 1024;
/// Longest extended attribute name (Linux's XATTR_NAME_MAX).
pub const MAX_XATTR_NAME: usize = 255;
/// Largest extended attribute value (Linux's XATTR_SIZE_MAX).
pub const MAX_XATTR_VALUE: usize = 64 << 10;
/// Most memory one decoded tree may take, as estimated while decoding. A tree blob is at most
/// 16 MiB; real entries decode to at most ~3 times their encoded size, minimal hostile ones
/// to ~12 times, which this bound refuses.
pub const MAX_TREE_DECODED: usize = 96 << 20;

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

impl NodeKind {
    /// The kind in words, as plans and messages name it (`file`, `dir`, `char-device`, …).
    pub fn name(self) -> &'static str {
        match self {
            NodeKind::File => "file",
            NodeKind::Dir => "dir",
            NodeKind::Symlink => "symlink",
            NodeKind::Fifo => "fifo",
            NodeKind::CharDevice => "char-device",
            NodeKind::BlockDevice => "block-device",
            NodeKind::Socket => "socket",
        }
    }
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
    #[serde(deserialize_with = "bounded_xattrs")]
    pub xattrs: Vec<Xattr>,
    /// Content blob ids, in order (files). For a file stored with a content list (SPEC §9.1)
    /// the tree blob holds none: readers fill them in from the list (`store`'s loader).
    pub content: Vec<Id>,
    /// Subtree blob id (directories).
    pub subtree: Option<Id>,
    /// Content list blobs (not part of the node's encoding: a version-2 or 3 tree lists them
    /// after its nodes). Empty: the ids are inline. Otherwise the file's lists in file order
    /// (one per [`crate::content_list::LIST_SEGMENT_IDS`] ids, SPEC §9.1), each followed (as filled in by readers)
    /// by the bases it was resolved through: see `list_segments`. Every one of them is
    /// referenced by the snapshot: see [`Node::referenced`].
    #[serde(skip)]
    pub content_lists: Vec<Id>,
    /// How `content_lists` divides into the file's lists, as readers resolve them: empty when
    /// every one of `content_lists` is one of the file's lists (as decoded, or as a writer
    /// sets them).
    #[serde(skip)]
    pub list_segments: Vec<ListSegment>,
}

/// One of a file's content lists, as resolved: how many of the node's `content_lists` form
/// its chain (the list first, then its bases) and how many ids it resolves to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ListSegment {
    /// Blobs of the chain: the list itself and its bases.
    pub chain: usize,
    /// Ids the list resolves to.
    pub ids: u64,
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
            content_lists: Vec::new(),
            list_segments: Vec::new(),
        }
    }

    /// The file's content lists as a tree stores them, in file order (the first blob of each
    /// chain once resolved).
    pub fn list_heads(&self) -> Vec<Id> {
        if self.list_segments.is_empty() {
            return self.content_lists.clone();
        }
        let mut at = 0;
        let mut heads = Vec::with_capacity(self.list_segments.len());
        for s in &self.list_segments {
            if let Some(id) = self.content_lists.get(at) {
                heads.push(*id);
            }
            at += s.chain;
        }
        heads
    }

    /// Every blob this entry references besides its subtree: its content list blobs (with
    /// their bases), then its content blobs. Walkers that collect or check what a snapshot
    /// needs go through this, so list blobs are never missed.
    pub fn referenced(&self) -> impl Iterator<Item = &Id> {
        self.content_lists.iter().chain(self.content.iter())
    }

    /// Move the blobs [`Node::referenced`] lists onto `out`, leaving `content` empty (moved
    /// whole, not copied, when `out` is empty: a content list's ids are most of a tree).
    pub fn take_referenced(&mut self, out: &mut Vec<Id>) {
        out.extend_from_slice(&self.content_lists);
        if out.is_empty() {
            *out = std::mem::take(&mut self.content);
        } else {
            out.append(&mut self.content);
        }
    }
}

impl Xattr {
    /// Estimated decoded size; an error for names and values Linux could not have held.
    fn decoded_cost(&self) -> Result<usize, String> {
        if self.name.is_empty() || self.name.len() > MAX_XATTR_NAME {
            return Err(format!(
                "extended attribute name of {} bytes (1 to {MAX_XATTR_NAME} allowed)",
                self.name.len()
            ));
        }
        if self.value.len() > MAX_XATTR_VALUE {
            return Err(format!(
                "extended attribute value of {} bytes (at most {MAX_XATTR_VALUE})",
                self.value.len()
            ));
        }
        Ok(std::mem::size_of::<Xattr>()
            + bytes_cost(self.name.len())
            + bytes_cost(self.value.len()))
    }
}

impl Node {
    /// Estimated memory of this node once decoded (inline and heap).
    pub fn decoded_size(&self) -> usize {
        std::mem::size_of::<Node>()
            + bytes_cost(self.name.len())
            + self.user.as_ref().map_or(0, |u| bytes_cost(u.len()))
            + self.group.as_ref().map_or(0, |g| bytes_cost(g.len()))
            + self.target.as_ref().map_or(0, |t| bytes_cost(t.len()))
            + self
                .xattrs
                .iter()
                .map(|x| x.decoded_cost().unwrap_or(0))
                .sum::<usize>()
            + bytes_cost(self.content.len() * std::mem::size_of::<Id>())
            + bytes_cost(self.content_lists.len() * std::mem::size_of::<Id>())
            + bytes_cost(self.list_segments.len() * std::mem::size_of::<ListSegment>())
    }
}

fn bounded_xattrs<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Xattr>, D::Error> {
    bounded::vec(
        d,
        Limits {
            what: "extended attributes of one entry",
            max_len: MAX_XATTRS,
            max_bytes: MAX_TREE_DECODED,
            cost: Xattr::decoded_cost,
        },
    )
}

fn bounded_nodes<'de, D: Deserializer<'de>>(d: D) -> Result<Vec<Node>, D::Error> {
    bounded::vec(
        d,
        Limits {
            what: "entries of one tree",
            max_len: usize::MAX,
            max_bytes: MAX_TREE_DECODED,
            cost: |n: &Node| Ok(n.decoded_size()),
        },
    )
}

/// Is `name` acceptable as one path component? Restore relies on this to stay in its target.
pub fn valid_name(name: &[u8]) -> bool {
    !name.is_empty() && name != b"." && name != b".." && !name.contains(&b'/') && !name.contains(&0)
}

/// A directory listing.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, Default)]
pub struct Tree {
    /// Entries, strictly sorted by name (so names are unique).
    #[serde(deserialize_with = "bounded_nodes")]
    pub nodes: Vec<Node>,
}

impl Tree {
    /// Encode as a tree blob. Sorts the nodes first. A tree without content lists is written
    /// at version 1 (readable by older readers); with them at version 2: the version-1 body
    /// with those files' `content` left empty, followed by `Vec<(u32 node index, Id list)>`;
    /// at version 3 (the same layout) when a file has more than one list.
    pub fn encode(&mut self) -> Vec<u8> {
        self.nodes.sort_by(|a, b| a.name.cmp(&b.name));
        let mut lists: Vec<(u32, Id)> = Vec::new();
        let mut version = 1;
        let mut held = Vec::new();
        for (i, n) in self.nodes.iter_mut().enumerate() {
            let heads = n.list_heads();
            if heads.is_empty() {
                continue;
            }
            version = version.max(if heads.len() > 1 { 3 } else { 2 });
            lists.extend(heads.into_iter().map(|l| (i as u32, l)));
            held.push((i, std::mem::take(&mut n.content)));
        }
        if version == 1 {
            return record::encode_at(RecordKind::Tree, 1, self);
        }
        let mut out = record::encode_at(RecordKind::Tree, version, self);
        for (i, content) in held {
            self.nodes[i].content = content;
        }
        // postcard serialisation into a Vec cannot fail for these plain types.
        postcard::to_io(&lists, &mut out).expect("postcard encoding to a Vec");
        out
    }

    /// Decode a tree blob (version 1, 2 or 3), rejecting unsafe names, duplicates, and
    /// kind/field mismatches. Files with content lists come back with `content` empty and
    /// their lists, in order, in `content_lists`.
    pub fn decode(bytes: &[u8]) -> Result<Self, Error> {
        let tree: Tree = match record::version(RecordKind::Tree, bytes)? {
            1 => record::decode(RecordKind::Tree, bytes)?,
            v => Self::decode_lists(bytes, v == 3)?,
        };
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

    /// Versions 2 and 3: the nodes, then their lists; version 3 lets a file have several
    /// (listed one after the other, in file order).
    fn decode_lists(bytes: &[u8], several: bool) -> Result<Self, Error> {
        let (mut tree, rest) = record::take::<Tree>("tree", &bytes[record::HEADER_LEN..])?;
        let (lists, rest) = record::take::<Vec<(u32, Id)>>("tree", rest)?;
        let bad = |m: String| Err(Error::malformed("tree", m));
        if !rest.is_empty() {
            return bad(format!("{} unexpected trailing bytes", rest.len()));
        }
        if lists.is_empty() {
            return bad("a version-2 tree without content lists".into());
        }
        let mut prev: Option<u32> = None;
        for (i, list) in lists {
            if prev == Some(i) && several {
                tree.nodes[i as usize].content_lists.push(list);
                continue;
            }
            if prev.is_some_and(|p| p >= i) {
                return bad(format!(
                    "content lists not in {} entry order",
                    if several {
                        "increasing"
                    } else {
                        "strictly increasing"
                    }
                ));
            }
            prev = Some(i);
            let Some(n) = tree.nodes.get_mut(i as usize) else {
                return bad(format!(
                    "content list for entry {i} of {}",
                    tree.nodes.len()
                ));
            };
            if n.kind != NodeKind::File || !n.content.is_empty() {
                return bad(format!(
                    "content list on {:?}, which is not a file without inline content",
                    String::from_utf8_lossy(&n.name)
                ));
            }
            n.content_lists = vec![list];
        }
        Ok(tree)
    }

    /// Estimated memory of this tree once decoded (at most [`MAX_TREE_DECODED`] for a tree
    /// that decoded).
    pub fn decoded_size(&self) -> usize {
        std::mem::size_of::<Tree>() + self.nodes.iter().map(Node::decoded_size).sum::<usize>()
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
    fn xattr_floods_are_refused_while_decoding() {
        // 2 bytes encoded, 48 decoded: a blob of empty attributes.
        let mut n = file("a");
        n.xattrs = vec![
            Xattr {
                name: Vec::new(),
                value: Vec::new()
            };
            10
        ];
        let bytes = record::encode_at(RecordKind::Tree, 1, &Tree { nodes: vec![n] });
        assert!(Tree::decode(&bytes).is_err());
        let mut n = file("a");
        n.xattrs = (0..MAX_XATTRS + 1)
            .map(|i| Xattr {
                name: format!("user.{i}").into_bytes(),
                value: Vec::new(),
            })
            .collect();
        let bytes = record::encode_at(RecordKind::Tree, 1, &Tree { nodes: vec![n] });
        let err = Tree::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("extended attributes"), "{err}");
    }

    #[test]
    fn trees_decoding_beyond_the_memory_bound_are_refused() {
        // Minimal entries: about 20 bytes encoded, ~250 decoded.
        let nodes: Vec<Node> = (0..600_000u32)
            .map(|i| Node::new(format!("{i:08}").into_bytes(), NodeKind::Fifo))
            .collect();
        let t = Tree { nodes };
        assert!(t.decoded_size() > MAX_TREE_DECODED);
        let bytes = record::encode_at(RecordKind::Tree, 1, &t);
        assert!(bytes.len() < crate::MAX_BLOB_LEN as usize);
        let err = Tree::decode(&bytes).unwrap_err().to_string();
        assert!(err.contains("decoded bytes"), "{err}");
        // A real-sized directory decodes, and says what it holds.
        let t = Tree {
            nodes: (0..1000).map(|i| file(&format!("{i:04}"))).collect(),
        };
        let back = Tree::decode(&record::encode_at(RecordKind::Tree, 1, &t)).unwrap();
        assert!(back.decoded_size() < 1 << 20);
    }

    #[test]
    fn content_lists_round_trip_and_version_1_still_reads() {
        let mut listed = file("b");
        listed.content = Vec::new();
        listed.content_lists = vec![Id([6; 32])];
        let mut t = Tree {
            nodes: vec![file("a"), listed.clone()],
        };
        let bytes = t.encode();
        assert_eq!(&bytes[6..8], &2u16.to_le_bytes());
        let back = Tree::decode(&bytes).unwrap();
        assert_eq!(back.nodes[1], listed);
        assert!(back.nodes[0].content_lists.is_empty());
        // Trees without lists stay at version 1, as older writers wrote them.
        let mut t = Tree {
            nodes: vec![file("a")],
        };
        let v1 = t.encode();
        assert_eq!(&v1[6..8], &1u16.to_le_bytes());
        assert_eq!(Tree::decode(&v1).unwrap(), t);
        // A list on a directory, or on a file with inline ids, is refused.
        let mut bad = file("c");
        bad.content_lists = vec![Id([6; 32])];
        let mut t = Tree { nodes: vec![bad] };
        let bytes = t.encode();
        let mut body = record::encode_at(RecordKind::Tree, 2, &t);
        body.extend_from_slice(&postcard::to_allocvec(&vec![(0u32, Id([6; 32]))]).unwrap());
        assert!(Tree::decode(&body).is_err());
        assert!(Tree::decode(&bytes).is_ok());
    }

    #[test]
    fn several_lists_of_one_file_need_version_3() {
        let mut listed = file("b");
        listed.content = Vec::new();
        listed.content_lists = vec![Id([6; 32]), Id([7; 32]), Id([6; 32])];
        let mut t = Tree {
            nodes: vec![file("a"), listed.clone(), file("c")],
        };
        let bytes = t.encode();
        assert_eq!(&bytes[6..8], &3u16.to_le_bytes());
        let back = Tree::decode(&bytes).unwrap();
        assert_eq!(back.nodes[1], listed);
        // Resolved, only each chain's first blob is stored.
        let mut resolved = listed.clone();
        resolved.content_lists = vec![Id([6; 32]), Id([1; 32]), Id([7; 32])];
        resolved.list_segments = vec![
            ListSegment { chain: 2, ids: 5 },
            ListSegment { chain: 1, ids: 5 },
        ];
        let mut t = Tree {
            nodes: vec![resolved],
        };
        let back = Tree::decode(&t.encode()).unwrap();
        assert_eq!(back.nodes[0].content_lists, [Id([6; 32]), Id([7; 32])]);
        // Repeated entries are refused at version 2, out-of-order ones at 3.
        let t = Tree {
            nodes: vec![file("a"), {
                let mut n = file("b");
                n.content = Vec::new();
                n
            }],
        };
        let lists = |l: &[(u32, Id)]| postcard::to_allocvec(&l.to_vec()).unwrap();
        for (version, l, ok) in [
            (2, lists(&[(1, Id([6; 32])), (1, Id([7; 32]))]), false),
            (3, lists(&[(1, Id([6; 32])), (1, Id([7; 32]))]), true),
            (3, lists(&[(1, Id([6; 32])), (0, Id([7; 32]))]), false),
        ] {
            let mut body = record::encode_at(RecordKind::Tree, version, &t);
            body.extend_from_slice(&l);
            assert_eq!(Tree::decode(&body).is_ok(), ok, "version {version}");
        }
        // Readers older than version 3 refuse it with an upgrade message.
        let mut v4 = Tree::default().encode();
        v4[6..8].copy_from_slice(&4u16.to_le_bytes());
        assert!(matches!(
            Tree::decode(&v4),
            Err(Error::UnsupportedVersion {
                found: 4,
                supported: 3,
                ..
            })
        ));
    }

    #[test]
    fn unsafe_names_and_duplicates_are_rejected() {
        for bad in ["..", ".", "a/b", ""] {
            let t = Tree {
                nodes: vec![file(bad)],
            };
            let bytes = record::encode_at(RecordKind::Tree, 1, &t);
            assert!(Tree::decode(&bytes).is_err(), "{bad:?} accepted");
        }
        let t = Tree {
            nodes: vec![file("a"), file("a")],
        };
        assert!(Tree::decode(&record::encode_at(RecordKind::Tree, 1, &t)).is_err());
        let mut dir = Node::new(b"d".to_vec(), NodeKind::Dir);
        dir.subtree = None;
        let t = Tree { nodes: vec![dir] };
        assert!(Tree::decode(&record::encode_at(RecordKind::Tree, 1, &t)).is_err());
    }
}
