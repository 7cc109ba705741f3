//! Content lists (SPEC §9.1): writing a long file's ids as a list blob (relative to the same
//! file's list in the previous backup when one is offered), and filling a loaded tree's files
//! back in from their lists. Every reader gets trees through [`crate::loader::Loader::load_tree`],
//! which calls `resolve`: walkers see each file's `content` complete, and its list blobs in
//! `content_lists` (see `Node::referenced`).

use crate::loader::Loader;
use crate::saver::Saver;
use crate::{Error, Result};
use cairn_format::content_list::{
    ContentList, Op, LIST_MIN_IDS, LIST_SEGMENT_IDS, MAX_CHAIN, MAX_LIST_IDS,
};
use cairn_format::pack::PackKind;
use cairn_format::tree::{ListSegment, Node, NodeKind, Tree, MAX_TREE_DECODED};
use cairn_format::Id;

/// Most encoded list bytes read along one chain (each list blob is at most 16 MiB).
const MAX_CHAIN_BYTES: usize = 64 << 20;

/// The lists an earlier backup wrote for a file, offered as the bases of the next backup's
/// lists. The first is read when offered (while the new file is still being read: a file of
/// one list waits for nothing at the end), the others when the list at their place is
/// written (one at a time: a base costs one list's ids, not the file's).
pub struct ListBase {
    loader: Loader,
    tree_id: Id,
    name: Vec<u8>,
    heads: Vec<Id>,
    /// The first list's chain and ids, until used.
    first: Option<(Vec<Id>, Vec<Id>)>,
}

impl ListBase {
    /// The base `node` (of the tree `tree_id`, as loaded by `loader`, resolved or not)
    /// offers, if it was stored with content lists.
    pub fn of(loader: Loader, tree_id: Id, node: Node) -> Option<ListBase> {
        let heads = node.list_heads();
        let mut base = ListBase {
            loader,
            tree_id,
            name: node.name,
            heads,
            first: None,
        };
        base.first = Some(base.read(0)?);
        Some(base)
    }

    /// The `n`th list: its chain and its ids. None if there is none, or (with a warning: it
    /// only costs space) if it cannot be read.
    fn segment(&mut self, n: usize) -> Option<(Vec<Id>, Vec<Id>)> {
        match self.first.take() {
            Some(first) if n == 0 => Some(first),
            _ => self.read(n),
        }
    }

    fn read(&mut self, n: usize) -> Option<(Vec<Id>, Vec<Id>)> {
        let head = *self.heads.get(n)?;
        resolve_list(&mut self.loader, &self.tree_id, &self.name, head)
            .map(|r| (r.chain, r.ids))
            .inspect_err(|e| {
                tracing::warn!("the previous backup's list is unreadable ({e}); this one stores a complete list")
            })
            .ok()
    }
}

/// Store the content of every long file of `tree` that has none yet as content list blobs of
/// at most [`LIST_SEGMENT_IDS`] ids each (see [`Saver::add_content_list`]). Those files are
/// left with their lists in `content_lists` and an empty `content`, as [`resolve`] finds them.
pub(crate) fn write(saver: &mut Saver, tree: &mut Tree) -> Result<()> {
    for node in &mut tree.nodes {
        if node.kind != NodeKind::File
            || !node.content_lists.is_empty()
            || node.content.len() < LIST_MIN_IDS
        {
            continue;
        }
        let mut lists = Vec::with_capacity(node.content.len().div_ceil(LIST_SEGMENT_IDS));
        for (n, ids) in node.content.chunks(LIST_SEGMENT_IDS).enumerate() {
            lists.push(saver.add_content_list(n, ids)?);
        }
        // The list blobs hold the ids now: the node is left as a decoded tree has it (no
        // `content`), and the ids (32 bytes a blob) are freed.
        node.content = Vec::new();
        node.content_lists = lists;
        node.list_segments = Vec::new();
    }
    Ok(())
}

/// Store `ids` as the `n`th content list of a file: relative to `base`'s `n`th list where that
/// saves space and its chain is short enough, or that very list when its ids are unchanged
/// (and still stored, not in a pack a prune condemned).
pub(crate) fn write_list(
    saver: &mut Saver,
    base: Option<&mut ListBase>,
    n: usize,
    ids: &[Id],
) -> Result<Id> {
    let bytes = match base.and_then(|b| b.segment(n)) {
        Some((chain, old)) if old == ids && chain.iter().all(|l| saver.contains(l)) => {
            return Ok(chain[0]);
        }
        Some((chain, old)) if chain.len() < MAX_CHAIN => {
            ContentList::delta(ids, (chain[0], &old)).encode()
        }
        // Encoded from the ids, not a copy of them.
        _ => ContentList::encode_full(ids),
    };
    saver.add_blob(PackKind::Tree, bytes)
}

/// Fill in the content of `tree`'s files stored with a content list, following each list's
/// chain of bases (at most [`MAX_CHAIN`] lists and `MAX_CHAIN_BYTES` encoded bytes), and
/// record the chain in `content_lists`. The filled tree stays within the decoded-tree bound.
pub(crate) fn resolve(loader: &mut Loader, tree_id: &Id, tree: &mut Tree) -> Result<()> {
    let mut budget = tree_budget(tree);
    for node in &mut tree.nodes {
        resolve_node(loader, tree_id, node, &mut budget)?;
    }
    within_bound(tree_id, tree)
}

/// [`resolve`], leaving the files whose lists cannot be read or resolved (storage failures
/// aside) with no content: [`unresolved`] tells them. For `repair snapshots`, which drops
/// such files instead of their whole directory.
pub(crate) fn resolve_lenient(loader: &mut Loader, tree_id: &Id, tree: &mut Tree) -> Result<()> {
    let mut budget = tree_budget(tree);
    for node in &mut tree.nodes {
        if let Err(e) = resolve_node(loader, tree_id, node, &mut budget) {
            if e.is_storage_failure() {
                return Err(e);
            }
            tracing::warn!("{e}");
            node.content.clear();
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

/// Resolve one file's lists in order; `budget` is what the tree may still take decoded (the
/// ids and chains added are charged to it as each list resolves, so a hostile tree cannot
/// grow past the bound before it is checked).
fn resolve_node(
    loader: &mut Loader,
    tree_id: &Id,
    node: &mut Node,
    budget: &mut usize,
) -> Result<()> {
    if node.content_lists.is_empty() || !node.list_segments.is_empty() {
        return Ok(());
    }
    // On failure the node keeps its lists as decoded (`unresolved` tells it).
    let heads = &node.content_lists;
    let (mut all, mut chains) = (Vec::new(), Vec::with_capacity(heads.len()));
    each_list(
        loader,
        tree_id,
        &node.name,
        heads,
        budget,
        |Resolution { chain, ids, .. }, left| {
            chains.push((chain, ids.len() as u64));
            if chains.len() == 1 {
                // Writers make every list but the last as long as the first: room for all at
                // once (within the bound), not doubled as they are appended.
                all = ids;
                let rest = all.len().saturating_mul(heads.len() - 1);
                all.reserve_exact(rest.min(left / std::mem::size_of::<Id>()));
            } else {
                all.extend_from_slice(&ids);
            }
            Ok(())
        },
    )?;
    node.content = all;
    node.list_segments = chains
        .iter()
        .map(|(chain, n)| ListSegment {
            chain: chain.len(),
            ids: *n,
        })
        .collect();
    node.content_lists = chains.into_iter().flat_map(|(chain, _)| chain).collect();
    Ok(())
}

/// Hand `f` every blob `tree` (decoded by `Loader::load_tree_unresolved`) references besides
/// its subtrees, a batch at a time: each content list's chain and ids as it is resolved (so a
/// long file's ids are never all held at once: one list, at most 2 MiB as writers make them;
/// of a list resolved from one this walk handed on, only the ids it adds), then the inline ids
/// of every file. Bounded as [`resolve`] is.
pub(crate) fn each_referenced(
    loader: &mut Loader,
    tree_id: &Id,
    tree: Tree,
    mut f: impl FnMut(Vec<Id>) -> Result<()>,
) -> Result<()> {
    let mut budget = tree_budget(&tree);
    let mut inline = Vec::new();
    for mut node in tree.nodes {
        let lists = std::mem::take(&mut node.content_lists);
        if node.list_segments.is_empty() {
            each_list(loader, tree_id, &node.name, &lists, &mut budget, |r, _| {
                f(r.chain)?;
                // Ids the walk has handed on already need not be handed again.
                f(r.new_ids.unwrap_or(r.ids))
            })?;
        } else {
            // Resolved already: its lists are all there.
            f(lists)?;
        }
        node.take_referenced(&mut inline);
    }
    f(inline)
}

/// What the files of `tree` (decoded with their lists unread) may take decoded: the bound
/// less what the tree takes as stored.
pub(crate) fn tree_budget(tree: &Tree) -> usize {
    MAX_TREE_DECODED.saturating_sub(tree.decoded_size())
}

/// Hand `f` the ids of each content list of `node` (a file of the tree `tree_id`, decoded with
/// its lists unread), one list at a time, in file order; charged to the tree's `budget` (see
/// [`tree_budget`]) as [`resolve`] charges them. Nothing for a file without lists.
pub(crate) fn each_list_of(
    loader: &mut Loader,
    tree_id: &Id,
    node: &Node,
    budget: &mut usize,
    mut f: impl FnMut(Vec<Id>) -> Result<()>,
) -> Result<()> {
    if !node.list_segments.is_empty() {
        return Ok(());
    }
    let heads = &node.content_lists;
    each_list(loader, tree_id, &node.name, heads, budget, |r, _| f(r.ids))
}

/// A file's content lists left unread (its tree decoded by `Loader::load_tree_unresolved`),
/// read one at a time: at most 2 MiB of ids as writers make them, so a restore plans a long
/// file without holding its ids whole (32 bytes a blob). The file's lists are charged to the
/// tree bound as [`resolve`] charges them, the file alone.
pub struct UnreadLists {
    loader: Loader,
    tree_id: Id,
    node: Node,
}

impl UnreadLists {
    /// The lists of `node` (a file of the tree `tree_id`, decoded with its lists unread), taken
    /// out of it; None for a file whose ids are inline (or already resolved).
    pub fn take(loader: &Loader, tree_id: Id, node: &mut Node) -> Option<UnreadLists> {
        let lists = UnreadLists::of(loader, tree_id, node)?;
        node.content_lists = Vec::new();
        Some(lists)
    }

    /// [`UnreadLists::take`], leaving `node` as it is.
    pub fn of(loader: &Loader, tree_id: Id, node: &Node) -> Option<UnreadLists> {
        if node.kind != NodeKind::File
            || node.content_lists.is_empty()
            || !node.list_segments.is_empty()
        {
            return None;
        }
        let mut lists = Node::new(node.name.clone(), NodeKind::File);
        lists.content_lists = node.content_lists.clone();
        Some(UnreadLists {
            loader: loader.fork(),
            tree_id,
            node: lists,
        })
    }

    /// How many lists the file has.
    pub fn count(&self) -> usize {
        self.node.content_lists.len()
    }

    /// Most ids the lists hold as writers make them ([`LIST_SEGMENT_IDS`] each), and never
    /// more than the tree bound lets a file hold (a planted tree of many lists asks no more
    /// room of a restore than the largest file it can describe).
    pub fn most_ids(&self) -> usize {
        let bound = usize::try_from(MAX_LIST_IDS).unwrap_or(usize::MAX);
        self.count().saturating_mul(LIST_SEGMENT_IDS).min(bound)
    }

    /// Hand `f` each list's ids in file order.
    pub fn each(&mut self, f: impl FnMut(Vec<Id>) -> Result<()>) -> Result<()> {
        let mut budget = MAX_TREE_DECODED;
        each_list_of(&mut self.loader, &self.tree_id, &self.node, &mut budget, f)
    }

    /// All the file's ids at once.
    pub fn into_ids(mut self) -> Result<Vec<Id>> {
        let mut all = Vec::new();
        self.each(|ids| {
            if all.is_empty() {
                all = ids;
            } else {
                all.extend_from_slice(&ids);
            }
            Ok(())
        })?;
        Ok(all)
    }
}

/// Whether two files, each of the tree given with it (decoded with its lists unread), hold
/// the same ids in the same order. The same list heads are the same content; otherwise each
/// file's ids are hashed in order, its lists read one at a time (a list written against a
/// base names other blobs than the same ids written whole).
pub fn same_content(loader: &Loader, a: (Id, &Node), b: (Id, &Node)) -> Result<bool> {
    let (x, y) = (a.1, b.1);
    if x.content_lists == y.content_lists {
        return Ok(x.content == y.content);
    }
    Ok(ids_digest(loader, a)? == ids_digest(loader, b)?)
}

/// A hash of a file's ids in order (inline, or from its lists one at a time).
fn ids_digest(loader: &Loader, (tree_id, node): (Id, &Node)) -> Result<blake3::Hash> {
    let mut h = blake3::Hasher::new();
    match UnreadLists::of(loader, tree_id, node) {
        Some(mut lists) => lists.each(|ids| {
            ids.iter().for_each(|id| {
                h.update(&id.0);
            });
            Ok(())
        })?,
        None => node.content.iter().for_each(|id| {
            h.update(&id.0);
        }),
    }
    Ok(h.finalize())
}

/// Resolve the lists `heads` of the file `name` in order, handing `f` each one resolved and
/// what the tree may still take decoded after it: each is charged to `budget` (what the tree
/// may take decoded) before `f` sees it.
fn each_list(
    loader: &mut Loader,
    tree_id: &Id,
    name: &[u8],
    heads: &[Id],
    budget: &mut usize,
    mut f: impl FnMut(Resolution, usize) -> Result<()>,
) -> Result<()> {
    for head in heads {
        let r = resolve_list(loader, tree_id, name, *head)?;
        let cost = (r.ids.len() + r.chain.len()) * std::mem::size_of::<Id>()
            + std::mem::size_of::<ListSegment>();
        *budget = budget
            .checked_sub(cost)
            .ok_or_else(|| over_bound(tree_id))?;
        f(r, *budget)?;
    }
    Ok(())
}

/// One content list resolved.
#[derive(Debug, PartialEq)]
struct Resolution {
    /// The list and its bases.
    chain: Vec<Id>,
    /// The ids it resolves to.
    ids: Vec<Id>,
    /// When it was resolved from a list the walk resolved before (and so handed on): the
    /// literal ids of the lists read on top of that one. With that list's ids, they hold
    /// every id of this one.
    new_ids: Option<Vec<Id>>,
}

/// Most ids the content lists a loader keeps resolved may hold, chains included: two lists as
/// writers make them (4 MiB of ids).
const RESOLVED_IDS: usize = 2 * (LIST_SEGMENT_IDS + MAX_CHAIN + 1);
/// Most lists a loader keeps resolved (whatever their size: a planted tree of many empty lists
/// must not make each lookup long).
const RESOLVED_LISTS: usize = 4;

/// The content lists a loader resolved last, newest first, at most [`RESOLVED_LISTS`] of them
/// within [`RESOLVED_IDS`] ids, once
/// [`Resolved::keep_lists`] is called (by walks over many snapshots; a restore reads each list
/// once and keeps none). A list whose chain reaches one of them resolves from its ids instead
/// of along the rest of the chain: walking the snapshots of a file oldest first (as listings
/// order them), each list costs its own step, not its whole chain of up to [`MAX_CHAIN`] lists.
#[derive(Default)]
pub(crate) struct Resolved {
    on: bool,
    lists: std::collections::VecDeque<ResolvedList>,
}

struct ResolvedList {
    /// The list.
    head: Id,
    /// It and its bases, as [`resolve_list`] returns them.
    chain: Vec<Id>,
    ids: Vec<Id>,
    /// Encoded bytes read along the chain (charged again to a list resolved from it, so the
    /// bounds hold as if the whole chain were read).
    bytes: usize,
}

impl Resolved {
    /// Keep the lists resolved from now on, for a walk that starts: whatever an earlier walk
    /// kept is let go (a list kept is one this walk handed on).
    pub(crate) fn keep_lists(&mut self) {
        self.on = true;
        self.lists.clear();
    }

    fn get(&self, head: &Id) -> Option<&ResolvedList> {
        self.lists.iter().find(|l| l.head == *head)
    }

    /// Keep the list `head` resolved to `ids` through `chain` (`bytes` read along it), when
    /// walking and within the bound; copied only then.
    fn keep(&mut self, head: Id, chain: &[Id], ids: &[Id], bytes: usize) {
        if !self.on || cost(ids.len(), chain.len()) > RESOLVED_IDS {
            return;
        }
        self.lists.retain(|l| l.head != head);
        self.lists.push_front(ResolvedList {
            head,
            chain: chain.to_vec(),
            ids: ids.to_vec(),
            bytes,
        });
        let mut held = 0;
        self.lists.retain(|l| {
            held += l.cost();
            held <= RESOLVED_IDS
        });
        self.lists.truncate(RESOLVED_LISTS);
    }
}

impl ResolvedList {
    /// What it holds, in ids.
    fn cost(&self) -> usize {
        cost(self.ids.len(), self.chain.len())
    }
}

/// What a kept list of `ids` ids and a chain of `chain` lists holds, in ids.
fn cost(ids: usize, chain: usize) -> usize {
    ids + chain + 1
}

/// Resolve the list `first` (of the file `name`) through its chain of bases: the chain
/// (`first`, then its bases) and the ids. The chain is read as far as a list the loader
/// resolved lately (see [`Resolved`]).
fn resolve_list(loader: &mut Loader, tree_id: &Id, name: &[u8], first: Id) -> Result<Resolution> {
    let what = |list: &Id| {
        format!(
            "content list blob {list} of {:?} (tree blob {tree_id})",
            String::from_utf8_lossy(name)
        )
    };
    let too_long = || {
        Error::damaged(
            what(&first),
            malformed(
                "content list",
                format!("a chain of more than {MAX_CHAIN} lists"),
            ),
        )
    };
    let too_big = || {
        Error::damaged(
            what(&first),
            malformed(
                "content list",
                format!("its chain takes more than {} MiB", MAX_CHAIN_BYTES >> 20),
            ),
        )
    };
    // The chain ends with the list `next` names, until it is read.
    let mut chain = vec![first];
    let mut lists = Vec::new();
    let mut bytes_read = 0usize;
    let mut next = Some(first);
    let mut known = None;
    while let Some(id) = next {
        if let Some(done) = loader.resolved.get(&id) {
            if lists.len() + done.chain.len() > MAX_CHAIN {
                return Err(too_long());
            }
            bytes_read += done.bytes;
            if bytes_read > MAX_CHAIN_BYTES {
                return Err(too_big());
            }
            chain.pop();
            chain.extend_from_slice(&done.chain);
            known = Some(done.ids.clone());
            break;
        }
        if lists.len() == MAX_CHAIN {
            return Err(too_long());
        }
        let bytes = loader.load(&id)?;
        bytes_read += bytes.len();
        if bytes_read > MAX_CHAIN_BYTES {
            return Err(too_big());
        }
        // Consumed: a self-contained list becomes its ids without holding the blob too.
        let list = ContentList::decode_owned(bytes).map_err(|e| Error::damaged(what(&id), e))?;
        next = list.base;
        if let Some(b) = next {
            chain.push(b);
        }
        lists.push((id, list));
    }
    let from_known = known.is_some();
    let new_ids = from_known.then(|| {
        fn literal(op: &Op) -> &[Id] {
            match op {
                Op::Ids(ids) => ids,
                Op::Copy { .. } => &[],
            }
        }
        let ops = lists.iter().flat_map(|(_, l)| l.ops.iter());
        ops.flat_map(literal).copied().collect::<Vec<Id>>()
    });
    // Two buffers: each list resolves from its base's ids into the other one.
    let (mut ids, mut spare) = (known.unwrap_or_default(), Vec::new());
    for (n, (id, list)) in lists.into_iter().rev().enumerate() {
        let base = (n > 0 || from_known).then_some(&ids[..]);
        list.resolve_owned(base, &mut spare)
            .map_err(|e| Error::damaged(what(&id), e))?;
        std::mem::swap(&mut ids, &mut spare);
    }
    loader.resolved.keep(first, &chain, &ids, bytes_read);
    Ok(Resolution {
        chain,
        ids,
        new_ids,
    })
}

fn within_bound(tree_id: &Id, tree: &Tree) -> Result<()> {
    if tree.decoded_size() > MAX_TREE_DECODED {
        return Err(over_bound(tree_id));
    }
    Ok(())
}

fn over_bound(tree_id: &Id) -> Error {
    Error::damaged(
        format!("tree blob {tree_id}"),
        malformed(
            "tree",
            format!(
                "its files' content lists take more than {} MiB decoded",
                MAX_TREE_DECODED >> 20
            ),
        ),
    )
}

fn malformed(kind: &'static str, reason: String) -> cairn_format::Error {
    cairn_format::Error::Malformed { kind, reason }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::test_repo::{create, spread_id};
    use std::sync::Arc;

    /// Back up one file holding each of `days` in turn, each day's lists written against the
    /// day before: each day's root tree and its file's node (lists unread).
    fn back_up_days(repo: &Arc<crate::repo::Repository>, days: &[&Vec<Id>]) -> Vec<(Id, Node)> {
        let mut roots: Vec<(Id, Node)> = Vec::new();
        for ids in days {
            let index = Arc::new(Index::load(repo).unwrap());
            let mut saver = Saver::new(repo.clone(), index.clone(), 2);
            if let Some((root, node)) = roots.last().cloned() {
                let loader = Loader::new(repo.clone(), index);
                saver.set_list_base(ListBase::of(loader, root, node).unwrap());
            }
            let root = saver.save_tree(&mut file((*ids).clone())).unwrap();
            saver.finish().unwrap();
            let index = Arc::new(Index::load(repo).unwrap());
            let node = Loader::new(repo.clone(), index)
                .load_tree_unresolved(&root)
                .unwrap()
                .nodes
                .remove(0);
            roots.push((root, node));
        }
        roots
    }

    fn file(ids: Vec<Id>) -> Tree {
        let mut node = Node::new(b"snapshot_x.db".to_vec(), NodeKind::File);
        node.size = ids.len() as u64 * 4096;
        node.content = ids;
        Tree { nodes: vec![node] }
    }

    #[test]
    fn same_content_compares_the_ids_not_the_list_blobs() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = create(dir.path(), &identity, None);
        let day1: Vec<Id> = (0..150_000).map(spread_id).collect();
        let mut day2 = day1.clone();
        day2[70_000] = spread_id(1_000_000);
        // Day 1 whole; day 2 against it; day 1 again against day 2: its second list is a
        // delta, another blob than day 1's, for the same ids.
        let roots = back_up_days(&repo, &[&day1, &day2, &day1]);
        let loader = Loader::new(repo.clone(), Arc::new(Index::load(&repo).unwrap()));
        let [(r1, n1), (r2, n2), (r3, n3)] = &roots[..] else {
            unreachable!()
        };
        assert_ne!(n1.content_lists[1], n3.content_lists[1], "a delta list");
        assert_eq!(n1.content_lists[0], n3.content_lists[0], "a list reused");
        assert!(same_content(&loader, (*r1, n1), (*r3, n3)).unwrap());
        assert!(!same_content(&loader, (*r1, n1), (*r2, n2)).unwrap());
        assert!(same_content(&loader, (*r2, n2), (*r2, n2)).unwrap());
        // Inline ids against a file of lists, and against each other.
        let mut inline = Node::new(b"small".to_vec(), NodeKind::File);
        inline.content = day1[..10].to_vec();
        assert!(!same_content(&loader, (*r1, n1), (*r1, &inline)).unwrap());
        assert!(same_content(&loader, (*r1, &inline), (*r2, &inline.clone())).unwrap());
    }

    #[test]
    fn long_files_are_stored_as_several_lists_and_unchanged_ones_are_reused() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = create(dir.path(), &identity, None);
        let day1: Vec<Id> = (0..150_000).map(spread_id).collect();
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        let root1 = saver.save_tree(&mut file(day1.clone())).unwrap();
        saver.finish().unwrap();

        let index = Arc::new(Index::load(&repo).unwrap());
        let mut loader = Loader::new(repo.clone(), index.clone());
        let stored = loader.load(&root1).unwrap();
        assert_eq!(
            &stored[6..8],
            &3u16.to_le_bytes(),
            "several lists: version 3"
        );
        let node1 = loader.load_tree(&root1).unwrap().nodes.remove(0);
        assert_eq!(node1.content, day1);
        let lens: Vec<u64> = node1.list_segments.iter().map(|s| s.ids).collect();
        assert_eq!(lens, [65_536, 65_536, 18_928]);
        assert_eq!(node1.content_lists.len(), 3);

        // Day 2 changes ten ids in the second list only.
        let mut day2 = day1.clone();
        for i in 0..10 {
            day2[70_000 + i * 100] = spread_id(1_000_000 + i as u64);
        }
        let mut saver = Saver::new(repo.clone(), index.clone(), 2);
        let base = Loader::new(repo.clone(), index);
        saver.set_list_base(ListBase::of(base, root1, node1.clone()).unwrap());
        let root2 = saver.save_tree(&mut file(day2.clone())).unwrap();
        let (stats, _) = saver.finish().unwrap();
        assert_eq!(stats.blobs_added, 2, "the tree and one list: {stats:?}");

        let index = Arc::new(Index::load(&repo).unwrap());
        let mut loader = Loader::new(repo.clone(), index);
        let node2 = loader.load_tree(&root2).unwrap().nodes.remove(0);
        assert_eq!(node2.content, day2);
        let (h1, h2) = (node1.list_heads(), node2.list_heads());
        assert_eq!(
            (h2[0], h2[2]),
            (h1[0], h1[2]),
            "unchanged lists are the same blobs"
        );
        assert_ne!(h2[1], h1[1]);
        let chains: Vec<usize> = node2.list_segments.iter().map(|s| s.chain).collect();
        assert_eq!(
            chains,
            [1, 2, 1],
            "the changed list is written against its base"
        );
        assert_eq!(node2.content_lists[2], h1[1]);
        // A file that ends earlier (or later) than its base still resolves.
        let index = Arc::new(Index::load(&repo).unwrap());
        let mut saver = Saver::new(repo.clone(), index.clone(), 2);
        let base = Loader::new(repo.clone(), index);
        saver.set_list_base(ListBase::of(base, root2, node2.clone()).unwrap());
        let shorter = day2[..100_000].to_vec();
        let root3 = saver.save_tree(&mut file(shorter.clone())).unwrap();
        saver.finish().unwrap();
        let mut loader = Loader::new(repo.clone(), Arc::new(Index::load(&repo).unwrap()));
        assert_eq!(loader.load_tree(&root3).unwrap().nodes[0].content, shorter);
    }

    #[test]
    fn backup_refuses_a_directory_readers_would_refuse() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = create(dir.path(), &identity, None);
        let mut saver = Saver::new(repo, Arc::new(Index::default()), 2);
        // Lists already written as pages were stored, holding 3.5 million ids in all.
        let mut node = Node::new(b"snapshot_x.db".to_vec(), NodeKind::File);
        node.content_lists = vec![spread_id(1), spread_id(2)];
        node.list_segments = vec![
            ListSegment {
                chain: 1,
                ids: 2_000_000,
            },
            ListSegment {
                chain: 1,
                ids: 1_500_000,
            },
        ];
        let err = saver
            .save_tree(&mut Tree { nodes: vec![node] })
            .unwrap_err()
            .to_string();
        assert!(err.contains("3500000 blobs"), "{err}");
        assert!(err.contains("over the 96 MiB a tree may take"), "{err}");
        // Inline ids count the same way.
        let mut node = Node::new(b"big".to_vec(), NodeKind::File);
        node.content = (0..3_200_000).map(spread_id).collect();
        let err = saver
            .save_tree(&mut Tree { nodes: vec![node] })
            .unwrap_err();
        assert!(err.to_string().contains("3200000 blobs"), "{err}");
    }

    #[test]
    fn lists_named_over_and_over_are_refused_before_they_outgrow_the_tree_bound() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = create(dir.path(), &identity, None);
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        let ids: Vec<Id> = (0..LIST_SEGMENT_IDS as u64).map(spread_id).collect();
        let list = saver
            .add_blob(PackKind::Tree, ContentList::encode_full(&ids))
            .unwrap();
        // 2 MiB of ids named 60 times: 120 MiB resolved, over the 96 MiB bound.
        let mut node = Node::new(b"f".to_vec(), NodeKind::File);
        node.size = 1;
        node.content_lists = vec![list; 60];
        let root = saver
            .add_blob(PackKind::Tree, Tree { nodes: vec![node] }.encode())
            .unwrap();
        saver.finish().unwrap();
        let mut loader = Loader::new(repo.clone(), Arc::new(Index::load(&repo).unwrap()));
        let err = loader.load_tree(&root).unwrap_err().to_string();
        assert!(err.contains("more than 96 MiB decoded"), "{err}");
        assert!(err.contains(&root.to_string()), "{err}");
    }

    /// `n` lists, each written against the one before (the first self-contained), one id
    /// changed each time: each list's id and ids.
    fn chain_of(repo: &Arc<crate::repo::Repository>, n: usize) -> Vec<(Id, Vec<Id>)> {
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        let mut ids: Vec<Id> = (0..1_000).map(spread_id).collect();
        let mut lists: Vec<(Id, Vec<Id>)> = Vec::new();
        for k in 0..n {
            let bytes = match lists.last() {
                None => ContentList::encode_full(&ids),
                Some((base, old)) => {
                    ids[k * 7 % 1_000] = spread_id(10_000 + k as u64);
                    ContentList::delta(&ids, (*base, old)).encode()
                }
            };
            let id = saver.add_blob(PackKind::Tree, bytes).unwrap();
            lists.push((id, ids.clone()));
        }
        saver.finish().unwrap();
        lists
    }

    #[test]
    fn lists_resolved_lately_shorten_a_chain_and_keep_its_bounds() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = create(dir.path(), &identity, None);
        let lists = chain_of(&repo, MAX_CHAIN + 1);
        let fresh = || Loader::new(repo.clone(), Arc::new(Index::load(&repo).unwrap()));
        let tree = spread_id(0);
        // Oldest first with one loader, as a walk goes: each list from the one before, and the
        // same chain and ids as a loader that reads the whole chain.
        let mut walker = fresh();
        walker.resolved.keep_lists();
        for (k, (head, ids)) in lists.iter().take(MAX_CHAIN).enumerate() {
            let got = resolve_list(&mut walker, &tree, b"f", *head).unwrap();
            assert_eq!(&got.ids, ids, "list {k}");
            assert_eq!(got.chain.len(), k + 1, "list {k}: the whole chain");
            let mut reader = fresh();
            let whole = resolve_list(&mut reader, &tree, b"f", *head).unwrap();
            assert_eq!((&got.chain, &got.ids), (&whole.chain, &whole.ids));
            assert_eq!(whole.new_ids, None, "a reader hands every id");
            assert!(walker.resolved.get(head).is_some(), "list {k} kept");
            assert!(reader.resolved.lists.is_empty(), "kept by a walk only");
            // From the list before, only the id that changed is new to the walk.
            match (k, got.new_ids) {
                (0, None) => {}
                (_, Some(new)) => assert_eq!(new, [ids[k * 7 % 1_000]], "list {k}"),
                (_, other) => panic!("list {k}: {other:?}"),
            }
        }
        // A new walk keeps nothing from the last one.
        walker.resolved.keep_lists();
        let again = resolve_list(&mut walker, &tree, b"f", lists[5].0).unwrap();
        assert_eq!(again.new_ids, None);
        // One list more than a chain may hold is refused, whether its bases were resolved
        // lately or not.
        let (over, _) = lists[MAX_CHAIN];
        for mut loader in [walker, fresh()] {
            let e = resolve_list(&mut loader, &tree, b"f", over).unwrap_err();
            assert!(
                e.to_string().contains("a chain of more than 32 lists"),
                "{e}"
            );
        }
        // What is kept stays within its bound: lists of more ids are not kept.
        let mut kept = Resolved::default();
        kept.keep_lists();
        for n in 0..4u64 {
            kept.keep(
                spread_id(n),
                &[spread_id(n)],
                &vec![spread_id(n); LIST_SEGMENT_IDS],
                0,
            );
        }
        let heads: Vec<Id> = kept.lists.iter().map(|l| l.head).collect();
        assert_eq!(heads, [spread_id(3), spread_id(2)]);
        // Lists of no ids count too: at most a few are kept.
        for n in 10..20u64 {
            kept.keep(spread_id(n), &[spread_id(n)], &[], 0);
        }
        assert_eq!(kept.lists.len(), RESOLVED_LISTS);
        kept.keep(spread_id(9), &[], &vec![spread_id(9); RESOLVED_IDS + 1], 0);
        assert!(kept.get(&spread_id(9)).is_none());
    }

    #[test]
    fn a_walk_over_chained_lists_reaches_what_each_snapshot_alone_does() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = create(dir.path(), &identity, None);
        // Six days of one file, each day's list written against the day before, ten ids
        // changed a day.
        let mut ids: Vec<Id> = (0..3_000).map(spread_id).collect();
        let mut days = Vec::new();
        for day in 0..6u64 {
            for i in 0..10 {
                ids[(day * 300 + i * 7) as usize] = spread_id(100_000 + day * 10 + i);
            }
            days.push(ids.clone());
        }
        let roots: Vec<Id> = back_up_days(&repo, &days.iter().collect::<Vec<_>>())
            .into_iter()
            .map(|(root, _)| root)
            .collect();
        let index = Arc::new(Index::load(&repo).unwrap());
        let set = |b: &crate::blob_set::BlobSet| {
            b.iter()
                .copied()
                .collect::<std::collections::BTreeSet<Id>>()
        };
        // Each kept snapshot walked alone, with a loader of its own: what the walk must reach.
        // The first day is left out: its ids that later days changed are reached by no one.
        let kept = &roots[1..];
        let mut want = std::collections::BTreeSet::new();
        for root in kept {
            let mut alone = Loader::new(repo.clone(), index.clone());
            want.extend(set(&crate::trees::referenced_blobs_on(
                &mut alone,
                &[*root],
                1,
            )
            .unwrap()));
        }
        assert!(!want.contains(&spread_id(0)), "changed on the first day");
        for threads in [1, 2] {
            // One loader for two walks, as callers may: the second keeps nothing of the first.
            let mut loader = Loader::new(repo.clone(), index.clone());
            for _ in 0..2 {
                let got = crate::trees::referenced_blobs_on(&mut loader, kept, threads).unwrap();
                assert_eq!(set(&got), want, "{threads} threads");
            }
        }
        let reached = std::cell::RefCell::new(std::collections::BTreeSet::new());
        crate::trees::each_reachable(
            &mut Loader::new(repo.clone(), index.clone()),
            kept,
            |id| {
                reached.borrow_mut().insert(id);
                Ok(())
            },
            |ids| {
                reached.borrow_mut().extend(ids.iter().copied());
                Ok(())
            },
        )
        .unwrap();
        assert_eq!(reached.into_inner(), want);
    }
}
