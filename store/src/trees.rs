//! Walking snapshot trees.

use crate::blob_set::BlobSet;
use crate::loader::Loader;
use crate::{Error, Result};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::Id;

/// Render a snapshot path from its components as an absolute, lossy UTF-8 string.
pub fn path_string(components: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for c in components {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c));
    }
    if s.is_empty() {
        s.push('/');
    }
    s
}

/// [`path_string`] for people: control characters, newlines included, escaped (`\n`,
/// `\u{1b}`), so that a planted name cannot fake lines of a message or drive the terminal.
pub fn display_path(components: &[Vec<u8>]) -> String {
    let s = path_string(components);
    if !s.chars().any(char::is_control) {
        return s;
    }
    s.chars()
        .map(|c| {
            if c.is_control() {
                c.escape_default().to_string()
            } else {
                c.to_string()
            }
        })
        .collect()
}

/// Parse an absolute (or relative, taken as from the root) snapshot path into components.
pub fn path_components(p: &str) -> Vec<Vec<u8>> {
    p.split('/')
        .filter(|c| !c.is_empty() && *c != ".")
        .map(|c| c.as_bytes().to_vec())
        .collect()
}

/// Largest directory depth followed (a hostile repository could nest without end).
pub const MAX_DEPTH: usize = 1024;

/// Most decoded tree memory a walk holds at once (one tree per level of the current path).
pub const MAX_HELD: usize = 256 << 20;

/// Most entries any walk of one snapshot visits (2^30, about a billion), whatever the
/// snapshot records: far above any control plane's.
pub const MAX_WALK_ENTRIES: u64 = 1 << 30;

/// How far a walk may go. Trees are content-addressed, so a hostile repository can reuse one
/// directory under many names and describe 2^26 paths in 27 small blobs: a walk is bounded by
/// the entries its snapshot says it holds, and by the memory of the trees it holds at once.
#[derive(Debug, Clone, Copy)]
pub struct Bounds {
    /// Most entries visited.
    pub max_entries: u64,
    /// Most decoded tree bytes held at once.
    pub max_held: usize,
}

impl Bounds {
    /// The bounds of walking `snap`: the entries it records (files, directories, others),
    /// with room for the directories above its paths.
    pub fn of(snap: &Snapshot) -> Bounds {
        let s = &snap.stats;
        let recorded = s.files.saturating_add(s.dirs).saturating_add(s.others);
        Bounds {
            // The count is the snapshot's own, which a forger chooses: never more than
            // MAX_WALK_ENTRIES, so a forged count cannot make a walk last for days.
            max_entries: recorded
                .saturating_mul(2)
                .saturating_add(4096)
                .min(MAX_WALK_ENTRIES),
            max_held: MAX_HELD,
        }
    }

    /// Bounds for a tree whose snapshot is not at hand (memory only).
    pub fn memory_only() -> Bounds {
        Bounds {
            max_entries: u64::MAX,
            max_held: MAX_HELD,
        }
    }
}

/// What a bounded walk calls, depth-first in name order. `path` holds the entry's names below
/// the root, its own last.
pub trait TreeVisitor {
    /// The visitor's error (store errors convert into it).
    type Error: From<Error>;
    /// A directory, before its entries; false skips them (and [`TreeVisitor::leave`]).
    fn enter(
        &mut self,
        loader: &mut Loader,
        path: &[Vec<u8>],
        node: &Node,
    ) -> std::result::Result<bool, Self::Error>;
    /// A directory, after its entries.
    fn leave(
        &mut self,
        _loader: &mut Loader,
        _path: &[Vec<u8>],
        _node: Node,
    ) -> std::result::Result<(), Self::Error> {
        Ok(())
    }
    /// Whether trees are read with their files' content lists (the default), or with the lists
    /// unread, for a visitor that reads them itself one at a time
    /// (`content_lists::UnreadLists`).
    fn reads_lists(&self) -> bool {
        true
    }
    /// Anything but a directory (the walk's own copy: a visitor may take its content).
    fn entry(
        &mut self,
        loader: &mut Loader,
        path: &[Vec<u8>],
        node: &mut Node,
    ) -> std::result::Result<(), Self::Error>;
}

/// Walk the tree `root` within `bounds`, calling `visitor` for every entry.
pub fn walk_with<V: TreeVisitor>(
    loader: &mut Loader,
    root: &Id,
    bounds: Bounds,
    visitor: &mut V,
) -> std::result::Result<(), V::Error> {
    let tree = load(loader, root, visitor)?;
    let mut w = Walk {
        bounds,
        path: Vec::new(),
        held: tree.decoded_size(),
        entries: 0,
    };
    w.tree(loader, tree, visitor)
}

/// The tree `id`, its lists read or not as `visitor` wants.
fn load(loader: &mut Loader, id: &Id, visitor: &impl TreeVisitor) -> Result<Tree> {
    if visitor.reads_lists() {
        loader.load_tree(id)
    } else {
        loader.load_tree_unresolved(id)
    }
}

/// A walk callback: gets the path components and the node; returning false skips a
/// directory's contents.
pub type Visit<'a, E = Error> = dyn FnMut(&[Vec<u8>], &Node) -> std::result::Result<bool, E> + 'a;

/// Visit every node below `root` depth-first in name order, within `bounds`; `visit`
/// returning false skips a directory's contents. Its error type is the caller's. With
/// `content`, files come with their content ids (their lists read); without, with their
/// lists unread (`Node::content_lists`), for a caller that needs only their metadata.
pub fn walk<E: From<Error>>(
    loader: &mut Loader,
    root: &Id,
    bounds: Bounds,
    content: bool,
    visit: &mut Visit<'_, E>,
) -> std::result::Result<(), E> {
    struct Each<'v, 'a, E>(&'v mut Visit<'a, E>, bool);
    impl<E: From<Error>> TreeVisitor for Each<'_, '_, E> {
        type Error = E;
        fn reads_lists(&self) -> bool {
            self.1
        }
        fn enter(
            &mut self,
            _: &mut Loader,
            path: &[Vec<u8>],
            node: &Node,
        ) -> std::result::Result<bool, E> {
            (self.0)(path, node)
        }
        fn entry(
            &mut self,
            _: &mut Loader,
            path: &[Vec<u8>],
            node: &mut Node,
        ) -> std::result::Result<(), E> {
            (self.0)(path, node).map(drop)
        }
    }
    walk_with(loader, root, bounds, &mut Each(visit, content))
}

struct Walk {
    bounds: Bounds,
    path: Vec<Vec<u8>>,
    held: usize,
    entries: u64,
}

impl Walk {
    fn tree<V: TreeVisitor>(
        &mut self,
        loader: &mut Loader,
        tree: Tree,
        visitor: &mut V,
    ) -> std::result::Result<(), V::Error> {
        if self.path.len() >= MAX_DEPTH {
            return Err(Error::Invalid(format!(
                "directory nesting deeper than {MAX_DEPTH} levels"
            ))
            .into());
        }
        if self.held > self.bounds.max_held {
            return Err(Error::Invalid(format!(
                "the directories above {} take more than {} MiB decoded; refusing a tree this \
                 large (a damaged or hostile snapshot)",
                display(&self.path),
                self.bounds.max_held >> 20
            ))
            .into());
        }
        for mut node in tree.nodes {
            self.entries += 1;
            if self.entries > self.bounds.max_entries {
                return Err(Error::Invalid(format!(
                    "the snapshot holds more entries than its recorded counts allow ({}, at {}); \
                     its trees are damaged or planted",
                    self.bounds.max_entries,
                    display(&self.path)
                ))
                .into());
            }
            self.path.push(node.name.clone());
            match (node.kind, node.subtree) {
                (NodeKind::Dir, Some(sub)) => {
                    if visitor.enter(loader, &self.path, &node)? {
                        let subtree = load(loader, &sub, visitor)?;
                        let size = subtree.decoded_size();
                        self.held += size;
                        let r = self.tree(loader, subtree, visitor);
                        self.held -= size;
                        r?;
                        visitor.leave(loader, &self.path, node)?;
                    }
                }
                _ => visitor.entry(loader, &self.path, &mut node)?,
            }
            self.path.pop();
        }
        Ok(())
    }
}

/// `/a/b` for messages.
fn display(path: &[Vec<u8>]) -> String {
    if path.is_empty() {
        return "/".into();
    }
    path.iter()
        .map(|c| format!("/{}", String::from_utf8_lossy(c)))
        .collect()
}

/// How many entries (paths) the tree `root` describes, counting a directory shared under
/// several names once per name, without expanding it: each distinct tree is read once (and
/// no content list).
/// Saturates instead of overflowing (27 trees can describe 2^26 paths, 64 can describe more
/// than a u64 holds).
pub fn count_entries(loader: &mut Loader, root: &Id) -> Result<u64> {
    fn count(
        loader: &mut Loader,
        id: &Id,
        memo: &mut std::collections::HashMap<Id, u64>,
        depth: usize,
    ) -> Result<u64> {
        if let Some(n) = memo.get(id) {
            return Ok(*n);
        }
        if depth >= MAX_DEPTH {
            return Err(Error::Invalid(format!(
                "directory nesting deeper than {MAX_DEPTH} levels"
            )));
        }
        // Entries only: content lists are not read.
        let tree = loader.load_tree_unresolved(id)?;
        let mut n = 0u64;
        for node in &tree.nodes {
            n = n.saturating_add(1);
            if let (NodeKind::Dir, Some(sub)) = (node.kind, &node.subtree) {
                n = n.saturating_add(count(loader, sub, memo, depth + 1)?);
            }
        }
        memo.insert(*id, n);
        Ok(n)
    }
    count(loader, root, &mut std::collections::HashMap::new(), 0)
}

/// Every blob (tree blobs and file contents) reachable from `roots`, each tree read once
/// however many snapshots share it (per thread: with several roots, threads with loaders of
/// their own take roots in turn, and a tree two of them reach is read by both). Fails on the
/// first tree that cannot be read.
pub fn referenced_blobs(loader: &mut Loader, roots: &[Id]) -> Result<BlobSet> {
    referenced_blobs_on(loader, roots, walkers())
}

/// How many threads walk snapshots when nothing else keeps the cores busy.
pub fn walkers() -> usize {
    std::thread::available_parallelism().map_or(1, |n| n.get())
}

/// [`referenced_blobs`] on at most `threads` threads.
pub fn referenced_blobs_on(loader: &mut Loader, roots: &[Id], threads: usize) -> Result<BlobSet> {
    let threads = threads.min(roots.len());
    loader.resolved.keep_lists();
    if threads <= 1 {
        let mut seen = BlobSet::new(loader.shared_index().clone());
        reach(loader, roots.iter(), &mut seen)?;
        return Ok(seen);
    }
    let next = std::sync::atomic::AtomicUsize::new(0);
    let take = || {
        std::iter::from_fn(|| roots.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed)))
    };
    std::thread::scope(|scope| {
        let others: Vec<_> = (1..threads)
            .map(|_| {
                let mut loader = loader.fork();
                loader.resolved.keep_lists();
                let take = &take;
                scope.spawn(move || -> Result<BlobSet> {
                    let mut seen = BlobSet::new(loader.shared_index().clone());
                    reach(&mut loader, take(), &mut seen)?;
                    Ok(seen)
                })
            })
            .collect();
        let mut seen = BlobSet::new(loader.shared_index().clone());
        let mine = reach(loader, take(), &mut seen);
        for handle in others {
            let theirs = handle
                .join()
                .map_err(|_| Error::Invalid("a tree walking thread panicked".into()))??;
            seen.extend_from(&theirs);
        }
        mine.map(|()| seen)
    })
}

/// What [`walk_reachable`] hands on.
enum Reached {
    /// A tree not seen before, about to be read.
    Tree(Id),
    /// A batch of the blobs a tree references besides its subtrees (repeats included).
    Blobs(Vec<Id>),
}

/// Read every tree reachable from `roots` that is not in `seen` yet, once, adding it to `seen`
/// and handing `reached` the tree and then its blobs a batch at a time (content lists are read
/// one at a time). Fails on the first tree that cannot be read.
fn walk_reachable<'r>(
    loader: &mut Loader,
    roots: impl IntoIterator<Item = &'r Id>,
    seen: &mut BlobSet,
    mut reached: impl FnMut(&mut BlobSet, Reached) -> Result<()>,
) -> Result<()> {
    for root in roots {
        let mut stack = vec![*root];
        while let Some(tree_id) = stack.pop() {
            if !seen.insert(tree_id) {
                continue;
            }
            reached(seen, Reached::Tree(tree_id))?;
            let tree = loader.load_tree_unresolved(&tree_id)?;
            for node in &tree.nodes {
                if let (NodeKind::Dir, Some(sub)) = (&node.kind, node.subtree) {
                    stack.push(sub);
                }
            }
            crate::content_lists::each_referenced(loader, &tree_id, tree, |ids| {
                reached(seen, Reached::Blobs(ids))
            })?;
        }
    }
    Ok(())
}

/// Add to `seen` every blob reachable from `roots` (trees already in `seen` are not read).
fn reach<'r>(
    loader: &mut Loader,
    roots: impl Iterator<Item = &'r Id>,
    seen: &mut BlobSet,
) -> Result<()> {
    walk_reachable(loader, roots, seen, |seen, reached| {
        if let Reached::Blobs(ids) = reached {
            seen.insert_all(ids);
        }
        Ok(())
    })
}

/// Every blob reachable from `roots`, without a set of them all in memory: each blob the
/// loader's index locates (with an index of the tree packs only, the trees and content lists)
/// handed once to `located`, every other blob (file contents) to `other` a batch at a time,
/// repeats included. Content lists are read one at a time.
pub fn each_reachable(
    loader: &mut Loader,
    roots: &[Id],
    mut located: impl FnMut(Id) -> Result<()>,
    mut other: impl FnMut(&[Id]) -> Result<()>,
) -> Result<()> {
    let index = loader.shared_index().clone();
    let mut seen = BlobSet::new(index.clone());
    loader.resolved.keep_lists();
    walk_reachable(loader, roots, &mut seen, |seen, reached| match reached {
        Reached::Tree(id) => located(id),
        Reached::Blobs(ids) if !ids.iter().any(|id| index.position(id).is_some()) => other(&ids),
        Reached::Blobs(ids) => {
            for id in ids {
                if index.position(&id).is_none() {
                    other(&[id])?;
                } else if seen.insert(id) {
                    located(id)?;
                }
            }
            Ok(())
        }
    })
}

/// Find the node at `path` (components) below `root`. An empty path has no node: returns None.
pub fn find(loader: &mut Loader, root: &Id, path: &[Vec<u8>]) -> Result<Option<Node>> {
    let Some((tree_id, mut node)) = find_unresolved(loader, root, path)? else {
        return Ok(None);
    };
    if !node.content_lists.is_empty() {
        let mut tree = Tree { nodes: vec![node] };
        crate::content_lists::resolve(loader, &tree_id, &mut tree)?;
        node = tree.nodes.swap_remove(0);
    }
    Ok(Some(node))
}

/// [`find`], with a file's content lists left unread (`content_lists::UnreadLists` reads them
/// one at a time), and the id of the tree that holds the node.
pub fn find_unresolved(
    loader: &mut Loader,
    root: &Id,
    path: &[Vec<u8>],
) -> Result<Option<(Id, Node)>> {
    let mut tree_id = *root;
    for (i, comp) in path.iter().enumerate() {
        let tree = loader.load_tree_unresolved(&tree_id)?;
        let Some(node) = tree.get(comp).cloned() else {
            return Ok(None);
        };
        if i + 1 == path.len() {
            return Ok(Some((tree_id, node)));
        }
        match (&node.kind, &node.subtree) {
            (NodeKind::Dir, Some(sub)) => tree_id = *sub,
            _ => return Ok(None),
        }
    }
    Ok(None)
}
