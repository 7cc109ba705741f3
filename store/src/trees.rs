//! Walking snapshot trees.

use crate::loader::Loader;
use crate::{Error, Result};
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::Id;
use std::collections::HashSet;

/// Largest directory depth followed (a hostile repository could nest without end).
pub const MAX_DEPTH: usize = 1024;

/// A walk callback: gets the path components and the node; returning false skips a
/// directory's contents.
pub type Visit<'a> = dyn FnMut(&[Vec<u8>], &Node) -> Result<bool> + 'a;

/// Visit every node below `root` depth-first in name order.
pub fn walk(loader: &mut Loader, root: &Id, visit: &mut Visit<'_>) -> Result<()> {
    let tree = loader.load_tree(root)?;
    let mut path = Vec::new();
    walk_tree(loader, &tree, &mut path, visit)
}

fn walk_tree(
    loader: &mut Loader,
    tree: &Tree,
    path: &mut Vec<Vec<u8>>,
    visit: &mut Visit<'_>,
) -> Result<()> {
    if path.len() >= MAX_DEPTH {
        return Err(Error::Invalid(format!(
            "directory nesting deeper than {MAX_DEPTH} levels"
        )));
    }
    for node in &tree.nodes {
        path.push(node.name.clone());
        let descend = visit(path, node)?;
        if node.kind == NodeKind::Dir && descend {
            if let Some(sub) = &node.subtree {
                let subtree = loader.load_tree(sub)?;
                walk_tree(loader, &subtree, path, visit)?;
            }
        }
        path.pop();
    }
    Ok(())
}

/// Every blob (tree blobs and file contents) reachable from `roots`, each tree read once
/// however many snapshots share it. Fails on the first tree that cannot be read.
pub fn referenced_blobs(loader: &mut Loader, roots: &[Id]) -> Result<HashSet<Id>> {
    let mut seen = HashSet::new();
    let mut stack: Vec<Id> = roots.to_vec();
    while let Some(tree_id) = stack.pop() {
        if !seen.insert(tree_id) {
            continue;
        }
        let tree = loader.load_tree(&tree_id)?;
        for node in &tree.nodes {
            seen.extend(node.content.iter().copied());
            if let (NodeKind::Dir, Some(sub)) = (&node.kind, node.subtree) {
                stack.push(sub);
            }
        }
    }
    Ok(seen)
}

/// Find the node at `path` (components) below `root`. An empty path has no node: returns None.
pub fn find(loader: &mut Loader, root: &Id, path: &[Vec<u8>]) -> Result<Option<Node>> {
    let mut tree = loader.load_tree(root)?;
    for (i, comp) in path.iter().enumerate() {
        let Some(node) = tree.get(comp).cloned() else {
            return Ok(None);
        };
        if i + 1 == path.len() {
            return Ok(Some(node));
        }
        match (&node.kind, &node.subtree) {
            (NodeKind::Dir, Some(sub)) => tree = loader.load_tree(sub)?,
            _ => return Ok(None),
        }
    }
    Ok(None)
}
