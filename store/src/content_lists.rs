//! Content lists (SPEC §9.1): writing a long file's ids as a list blob (relative to the same
//! file's list in the previous backup when one is offered), and filling a loaded tree's files
//! back in from their lists. Every reader gets trees through [`crate::loader::Loader::load_tree`],
//! which calls `resolve`: walkers see each file's `content` complete, and its list blobs in
//! `content_lists` (see `Node::referenced`).

use crate::loader::Loader;
use crate::saver::Saver;
use crate::{Error, Result};
use cairn_format::content_list::{ContentList, LIST_MIN_IDS, MAX_CHAIN};
use cairn_format::pack::PackKind;
use cairn_format::tree::{Node, NodeKind, Tree, MAX_TREE_DECODED};
use cairn_format::Id;

/// Most encoded list bytes read along one chain (each list blob is at most 16 MiB).
const MAX_CHAIN_BYTES: usize = 64 << 20;

/// A list earlier backups wrote, offered as the base of the next list: the list's chain (its
/// own id first) and its resolved ids.
#[derive(Debug, Clone, Default)]
pub struct ListBase {
    chain: Vec<Id>,
    ids: Vec<Id>,
}

impl ListBase {
    /// The base a loaded file node offers, if it was stored with a content list.
    pub fn of(node: &cairn_format::tree::Node) -> Option<ListBase> {
        (!node.content_lists.is_empty()).then(|| ListBase {
            chain: node.content_lists.clone(),
            ids: node.content.clone(),
        })
    }
}

/// Store the content of every long file of `tree` that has none yet as a content list blob,
/// relative to `base` where that saves space and its chain is short enough. Those files are
/// left with the list in `content_lists` and an empty `content`, as [`resolve`] finds them.
pub(crate) fn write(saver: &mut Saver, tree: &mut Tree, base: Option<&ListBase>) -> Result<()> {
    for node in &mut tree.nodes {
        if node.kind != NodeKind::File
            || !node.content_lists.is_empty()
            || node.content.len() < LIST_MIN_IDS
        {
            continue;
        }
        let bytes = match base {
            Some(b) if b.chain.len() < MAX_CHAIN => {
                ContentList::delta(&node.content, (b.chain[0], &b.ids)).encode()
            }
            // Encoded from the node's ids, not a copy of them.
            _ => ContentList::encode_full(&node.content),
        };
        if bytes.len() > cairn_format::MAX_BLOB_LEN as usize {
            continue; // kept inline, as before content lists
        }
        // The list blob holds the ids now: the node is left as a decoded tree has it (no
        // `content`), and the ids (32 bytes a blob) are freed before the list is packed.
        node.content = Vec::new();
        node.content_lists = vec![saver.add_blob(PackKind::Tree, bytes)?];
    }
    Ok(())
}

/// Fill in the content of `tree`'s files stored with a content list, following each list's
/// chain of bases (at most [`MAX_CHAIN`] lists and `MAX_CHAIN_BYTES` encoded bytes), and
/// record the chain in `content_lists`. The filled tree stays within the decoded-tree bound.
pub(crate) fn resolve(loader: &mut Loader, tree_id: &Id, tree: &mut Tree) -> Result<()> {
    for node in &mut tree.nodes {
        resolve_node(loader, tree_id, node)?;
    }
    within_bound(tree_id, tree)
}

/// [`resolve`], leaving the files whose lists cannot be read or resolved (storage failures
/// aside) with no content: [`unresolved`] tells them. For `repair snapshots`, which drops
/// such files instead of their whole directory.
pub(crate) fn resolve_lenient(loader: &mut Loader, tree_id: &Id, tree: &mut Tree) -> Result<()> {
    for node in &mut tree.nodes {
        if let Err(e) = resolve_node(loader, tree_id, node) {
            if e.is_storage_failure() {
                return Err(e);
            }
            tracing::warn!("{e}");
            node.content.clear();
            node.content_lists.truncate(1);
        }
    }
    within_bound(tree_id, tree)
}

/// A file stored with a content list that `resolve_lenient` could not resolve.
pub fn unresolved(node: &Node) -> bool {
    node.kind == NodeKind::File
        && !node.content_lists.is_empty()
        && node.content.is_empty()
        && node.size > 0
}

fn resolve_node(loader: &mut Loader, tree_id: &Id, node: &mut Node) -> Result<()> {
    let Some(first) = node.content_lists.first().copied() else {
        return Ok(());
    };
    let what = |list: &Id| {
        format!(
            "content list blob {list} of {:?} (tree blob {tree_id})",
            String::from_utf8_lossy(&node.name)
        )
    };
    let mut chain = vec![first];
    let mut lists = Vec::new();
    let mut bytes_read = 0usize;
    let mut next = Some(first);
    while let Some(id) = next {
        if lists.len() == MAX_CHAIN {
            return Err(Error::damaged(
                what(&first),
                malformed(
                    "content list",
                    format!("a chain of more than {MAX_CHAIN} lists"),
                ),
            ));
        }
        let bytes = loader.load(&id)?;
        bytes_read += bytes.len();
        if bytes_read > MAX_CHAIN_BYTES {
            return Err(Error::damaged(
                what(&first),
                malformed(
                    "content list",
                    format!("its chain takes more than {} MiB", MAX_CHAIN_BYTES >> 20),
                ),
            ));
        }
        // Consumed: a self-contained list becomes its ids without holding the blob too.
        let list = ContentList::decode_owned(bytes).map_err(|e| Error::damaged(what(&id), e))?;
        next = list.base;
        if let Some(b) = next {
            chain.push(b);
        }
        lists.push((id, list));
    }
    // Two buffers: each list resolves from its base's ids into the other one.
    let (mut ids, mut spare) = (Vec::new(), Vec::new());
    for (n, (id, list)) in lists.into_iter().rev().enumerate() {
        let base = (n > 0).then_some(&ids[..]);
        list.resolve_owned(base, &mut spare)
            .map_err(|e| Error::damaged(what(&id), e))?;
        std::mem::swap(&mut ids, &mut spare);
    }
    node.content = ids;
    node.content_lists = chain;
    Ok(())
}

fn within_bound(tree_id: &Id, tree: &Tree) -> Result<()> {
    if tree.decoded_size() > MAX_TREE_DECODED {
        return Err(Error::damaged(
            format!("tree blob {tree_id}"),
            malformed(
                "tree",
                format!(
                    "its files' content lists take more than {} MiB decoded",
                    MAX_TREE_DECODED >> 20
                ),
            ),
        ));
    }
    Ok(())
}

fn malformed(kind: &'static str, reason: String) -> cairn_format::Error {
    cairn_format::Error::Malformed { kind, reason }
}
