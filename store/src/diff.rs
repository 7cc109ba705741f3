//! What changed between two snapshots, from their trees alone: no file content is read (a
//! write key suffices), identical subtrees are skipped by id, and a long file's two versions
//! are compared a content list at a time.

use crate::content_lists;
use crate::loader::Loader;
use crate::trees::{self, Bounds};
use crate::{Error, Result};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::Id;
use serde::Serialize;
use std::cmp::Ordering;

/// How an entry changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum ChangeKind {
    /// Only in the second snapshot.
    Added,
    /// Only in the first.
    Removed,
    /// A file whose content (or size) differs.
    Modified,
    /// The same content, other metadata.
    Metadata,
    /// Another kind of entry (a file became a directory...).
    Type,
}

/// One difference.
#[derive(Debug, Clone, Serialize)]
pub struct Change {
    /// Absolute path in the snapshots.
    pub path: String,
    /// What changed.
    #[serde(rename = "change")]
    pub kind: ChangeKind,
    /// What changed, human-readable (`mode 0644 -> 0600`).
    pub details: Vec<String>,
}

/// Compare `from` with `to`, handing each change to `emit` as it is found, in path order, so
/// that memory does not grow with the number of changes. Metadata changes are reported only
/// with `metadata`. Work and memory are bounded as every walk is ([`trees::Bounds`]): by the
/// entries the two snapshots record and by the decoded trees held along the current path.
pub fn diff<E: From<Error>>(
    loader: &mut Loader,
    (from, to): (&Snapshot, &Snapshot),
    metadata: bool,
    emit: &mut dyn FnMut(Change) -> std::result::Result<(), E>,
) -> std::result::Result<(), E> {
    let mut d = Differ {
        loader,
        metadata,
        emit,
        entries: 0,
        max_entries: Bounds::of(from)
            .max_entries
            .saturating_add(Bounds::of(to).max_entries),
        held: 0,
    };
    d.dirs(Some(&from.tree), Some(&to.tree), &mut Vec::new())
}

struct Differ<'a, E> {
    loader: &'a mut Loader,
    metadata: bool,
    emit: &'a mut dyn FnMut(Change) -> std::result::Result<(), E>,
    /// Entries visited so far, and the most allowed.
    entries: u64,
    max_entries: u64,
    /// Decoded tree bytes held along the current path.
    held: usize,
}

fn time(ns: i64) -> String {
    chrono::DateTime::from_timestamp_nanos(ns).to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
}

fn meta_details(a: &Node, b: &Node) -> Vec<String> {
    let mut d = Vec::new();
    if a.mode != b.mode {
        d.push(format!("mode {:04o} -> {:04o}", a.mode, b.mode));
    }
    let owner = |name: &Option<String>, id: u32| name.clone().unwrap_or_else(|| id.to_string());
    if a.uid != b.uid || a.user != b.user {
        d.push(format!(
            "owner {} -> {}",
            owner(&a.user, a.uid),
            owner(&b.user, b.uid)
        ));
    }
    if a.gid != b.gid || a.group != b.group {
        d.push(format!(
            "group {} -> {}",
            owner(&a.group, a.gid),
            owner(&b.group, b.gid)
        ));
    }
    if a.kind != NodeKind::Dir && a.mtime_ns != b.mtime_ns {
        d.push(format!(
            "mtime {} -> {}",
            time(a.mtime_ns),
            time(b.mtime_ns)
        ));
    }
    if a.xattrs != b.xattrs {
        d.push("extended attributes".into());
    }
    if a.target != b.target {
        let target = |t: &Option<Vec<u8>>| {
            String::from_utf8_lossy(t.as_deref().unwrap_or_default()).into_owned()
        };
        d.push(format!(
            "symlink target {} -> {}",
            target(&a.target),
            target(&b.target)
        ));
    }
    d
}

impl<E: From<Error>> Differ<'_, E> {
    fn tree(&mut self, id: Option<&Id>) -> Result<Tree> {
        Ok(match id {
            // Long files' lists are read only to compare two versions, one list at a time.
            Some(id) => self.loader.load_tree_unresolved(id)?,
            None => Tree::default(),
        })
    }

    /// Whether the files `x` and `y` (of the trees `ids`) hold the same content.
    fn same_content(&mut self, x: &Node, y: &Node, ids: (Option<Id>, Option<Id>)) -> Result<bool> {
        Ok(match ids {
            (Some(a), Some(b)) => content_lists::same_content(self.loader, (a, x), (b, y))?,
            // An entry in both versions is in both trees.
            _ => x.content == y.content,
        })
    }

    /// Count one entry at `path` against the bounds.
    fn visit(&mut self, path: &[Vec<u8>]) -> Result<()> {
        if path.len() > trees::MAX_DEPTH {
            return Err(Error::Invalid(format!(
                "snapshot nests directories deeper than {} levels at {}",
                trees::MAX_DEPTH,
                trees::display_path(&path[..8])
            )));
        }
        self.entries += 1;
        if self.entries > self.max_entries {
            return Err(Error::Invalid(format!(
                "the snapshots hold more entries than their recorded counts allow ({}, at {}); \
                 their trees are damaged or planted",
                self.max_entries,
                trees::display_path(path)
            )));
        }
        Ok(())
    }

    fn emit(
        &mut self,
        path: &[Vec<u8>],
        kind: ChangeKind,
        details: Vec<String>,
    ) -> std::result::Result<(), E> {
        (self.emit)(Change {
            path: trees::display_path(path),
            kind,
            details,
        })
    }

    /// Hold `trees` while `f` runs, within the memory bound.
    fn holding<T>(
        &mut self,
        trees: &[&Tree],
        path: &mut Vec<Vec<u8>>,
        f: impl FnOnce(&mut Self, &mut Vec<Vec<u8>>) -> std::result::Result<T, E>,
    ) -> std::result::Result<T, E> {
        let size: usize = trees.iter().map(|t| t.decoded_size()).sum();
        if self.held + size > 2 * trees::MAX_HELD {
            return Err(Error::Invalid(format!(
                "the directories above {} take more than {} MiB decoded; refusing trees this \
                 large (damaged or planted snapshots)",
                trees::display_path(path),
                (2 * trees::MAX_HELD) >> 20
            ))
            .into());
        }
        self.held += size;
        let r = f(self, path);
        self.held -= size;
        r
    }

    /// Everything below `node` (inclusive) as added or removed.
    fn whole(
        &mut self,
        path: &mut Vec<Vec<u8>>,
        node: &Node,
        kind: ChangeKind,
    ) -> std::result::Result<(), E> {
        path.push(node.name.clone());
        self.visit(path)?;
        self.emit(path, kind, Vec::new())?;
        if node.kind == NodeKind::Dir {
            let t = self.tree(node.subtree.as_ref())?;
            self.holding(&[&t], path, |d, path| {
                t.nodes.iter().try_for_each(|n| d.whole(path, n, kind))
            })?;
        }
        path.pop();
        Ok(())
    }

    fn dirs(
        &mut self,
        a: Option<&Id>,
        b: Option<&Id>,
        path: &mut Vec<Vec<u8>>,
    ) -> std::result::Result<(), E> {
        if a == b {
            return Ok(());
        }
        let (ta, tb) = (self.tree(a)?, self.tree(b)?);
        let ids = (a.copied(), b.copied());
        self.holding(&[&ta, &tb], path, |d, path| d.merge((&ta, &tb), ids, path))
    }

    /// The entries of two versions of one directory (of the trees `ids`, where they exist), in
    /// name order.
    fn merge(
        &mut self,
        (ta, tb): (&Tree, &Tree),
        ids: (Option<Id>, Option<Id>),
        path: &mut Vec<Vec<u8>>,
    ) -> std::result::Result<(), E> {
        let (mut i, mut j) = (0, 0);
        while i < ta.nodes.len() || j < tb.nodes.len() {
            let ord = match (ta.nodes.get(i), tb.nodes.get(j)) {
                (Some(x), Some(y)) => x.name.cmp(&y.name),
                (Some(_), None) => Ordering::Less,
                _ => Ordering::Greater,
            };
            match ord {
                Ordering::Less => {
                    self.whole(path, &ta.nodes[i], ChangeKind::Removed)?;
                    i += 1;
                }
                Ordering::Greater => {
                    self.whole(path, &tb.nodes[j], ChangeKind::Added)?;
                    j += 1;
                }
                Ordering::Equal => {
                    self.pair(&ta.nodes[i], &tb.nodes[j], ids, path)?;
                    i += 1;
                    j += 1;
                }
            }
        }
        Ok(())
    }

    /// One entry in both versions, of the trees `ids`.
    fn pair(
        &mut self,
        x: &Node,
        y: &Node,
        ids: (Option<Id>, Option<Id>),
        path: &mut Vec<Vec<u8>>,
    ) -> std::result::Result<(), E> {
        path.push(x.name.clone());
        self.visit(path)?;
        if x.kind != y.kind {
            let details = vec![format!("{:?} -> {:?}", x.kind, y.kind).to_lowercase()];
            self.emit(path, ChangeKind::Type, details)?;
        } else {
            let meta = if self.metadata {
                meta_details(x, y)
            } else {
                Vec::new()
            };
            if x.kind == NodeKind::File && (x.size != y.size || !self.same_content(x, y, ids)?) {
                let mut details = vec![format!("size {} -> {}", x.size, y.size)];
                details.extend(meta);
                self.emit(path, ChangeKind::Modified, details)?;
            } else if !meta.is_empty() {
                self.emit(path, ChangeKind::Metadata, meta)?;
            }
            if x.kind == NodeKind::Dir {
                self.dirs(x.subtree.as_ref(), y.subtree.as_ref(), path)?;
            }
        }
        path.pop();
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::saver::Saver;
    use crate::test_repo::spread_id as id;
    use cairn_format::snapshot::SnapshotStats;
    use std::sync::Arc;

    fn file(name: &str, content: &[u64], size: u64, mode: u32) -> Node {
        let mut n = Node::new(name.into(), NodeKind::File);
        n.content = content.iter().map(|&i| id(i)).collect();
        n.size = size;
        n.mode = mode;
        n
    }

    /// A snapshot of `/d` holding `files`, and of `/same`, a directory both snapshots share.
    fn snapshot(saver: &mut Saver, files: Vec<Node>) -> Snapshot {
        let mut same = Node::new(b"same".to_vec(), NodeKind::Dir);
        let inner = vec![file("x", &[9], 1, 0o644)];
        same.subtree = Some(saver.save_tree(&mut Tree { nodes: inner }).unwrap());
        let mut d = Node::new(b"d".to_vec(), NodeKind::Dir);
        d.subtree = Some(saver.save_tree(&mut Tree { nodes: files }).unwrap());
        let tree = saver
            .save_tree(&mut Tree {
                nodes: vec![d, same],
            })
            .unwrap();
        let stats = SnapshotStats {
            files: 4,
            dirs: 2,
            ..SnapshotStats::default()
        };
        crate::test_repo::snapshot_of(tree, 1, stats)
    }

    /// Every kind of change, in path order; metadata only when asked for; the shared
    /// directory skipped.
    #[test]
    fn reports_each_change_in_path_order() {
        let dir = tempfile::tempdir().unwrap();
        let repo = crate::test_repo::create(dir.path(), &age::x25519::Identity::generate(), None);
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::load(&repo).unwrap()), 1);
        let from = snapshot(
            &mut saver,
            vec![
                file("a", &[1, 2], 10, 0o644),
                file("b", &[3], 5, 0o644),
                file("e", &[4], 5, 0o644),
                file("t", &[5], 5, 0o644),
            ],
        );
        let mut t = Node::new(b"t".to_vec(), NodeKind::Dir);
        t.subtree = from.tree.into();
        let to = snapshot(
            &mut saver,
            vec![
                // The same size, other content.
                file("a", &[1, 6], 10, 0o644),
                file("c", &[7], 5, 0o644),
                file("e", &[4], 5, 0o600),
                t,
            ],
        );
        saver.finish().unwrap();
        let mut loader = Loader::new(repo.clone(), Arc::new(Index::load(&repo).unwrap()));
        let mut changes = |metadata| {
            let mut got = Vec::new();
            diff::<Error>(&mut loader, (&from, &to), metadata, &mut |c| {
                got.push((c.path, c.kind, c.details.join(", ")));
                Ok(())
            })
            .unwrap();
            got
        };
        let expected = [
            ("/d/a", ChangeKind::Modified, "size 10 -> 10"),
            ("/d/b", ChangeKind::Removed, ""),
            ("/d/c", ChangeKind::Added, ""),
            ("/d/e", ChangeKind::Metadata, "mode 0644 -> 0600"),
            ("/d/t", ChangeKind::Type, "file -> dir"),
        ];
        let owned = |e: &[(&str, ChangeKind, &str)]| -> Vec<_> {
            e.iter()
                .map(|(p, k, d)| (p.to_string(), *k, d.to_string()))
                .collect()
        };
        assert_eq!(changes(true), owned(&expected));
        let without: Vec<_> = expected
            .into_iter()
            .filter(|c| c.1 != ChangeKind::Metadata)
            .collect();
        assert_eq!(changes(false), owned(&without));
    }
}
