//! An index of what reading some snapshots needs, not of the whole repository: restore and
//! copy hold 44 bytes per blob of the snapshots they read (a 1 GB etcd database: ~245,000
//! blobs, ~11 MB) whatever else the repository holds (a million other blobs would add 44 MB).
//!
//! Two passes over the index objects: the first keeps the blobs of tree packs (trees and
//! content lists), enough to walk the snapshots' trees and list the data blobs they reference
//! (a sorted vector, 32 bytes per blob); the second keeps the tree packs' blobs and those data
//! blobs. A repository whose index objects are small ([`WHOLE_BELOW`]) is loaded whole, in
//! one pass, as before.

use crate::index::Index;
use crate::loader::Loader;
use crate::repo::Repository;
use crate::Result;
use cairn_format::pack::PackKind;
use cairn_format::tree::NodeKind;
use cairn_format::Id;
use std::collections::HashSet;
use std::sync::Arc;

/// Index objects adding up to fewer bytes than this (~150,000 blobs) are loaded whole: the
/// whole index then costs at most ~6 MiB, less than reading the index objects twice is worth.
pub const WHOLE_BELOW: u64 = 8 << 20;

/// The index `roots` (snapshot trees) need: every blob of the repository's tree packs and the
/// data blobs the trees reference (those the index knows; a missing one is reported by the
/// reader as it would be with the whole index). With `whole_packs`, every blob of each pack
/// holding one of those (copy writes the index records of the packs it sends from it).
pub fn for_trees(repo: &Arc<Repository>, roots: &[Id], whole_packs: bool) -> Result<Index> {
    let listed: u64 = repo.backend().list("index")?.iter().map(|o| o.size).sum();
    if listed < WHOLE_BELOW {
        return Index::load(repo);
    }
    let trees = Arc::new(Index::load_filtered(
        repo,
        &|p, _| p.kind == PackKind::Tree,
        false,
    )?);
    let needed = data_blobs(&mut Loader::new(repo.clone(), trees.clone()), roots)?;
    drop(trees);
    Index::load_filtered(
        repo,
        &|p, id| p.kind == PackKind::Tree || needed.binary_search(id).is_ok(),
        whole_packs,
    )
}

/// The blobs the files below `roots` hold, sorted, each once (content lists included).
fn data_blobs(loader: &mut Loader, roots: &[Id]) -> Result<Vec<Id>> {
    let mut visited: HashSet<Id> = HashSet::new();
    let mut stack: Vec<Id> = roots.to_vec();
    let mut ids: Vec<Id> = Vec::new();
    while let Some(tree_id) = stack.pop() {
        if !visited.insert(tree_id) {
            continue;
        }
        let tree = loader.load_tree(&tree_id)?;
        for node in &tree.nodes {
            if node.kind == NodeKind::File {
                ids.extend_from_slice(&node.content);
            }
            if let (NodeKind::Dir, Some(sub)) = (&node.kind, node.subtree) {
                stack.push(sub);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids.shrink_to_fit();
    Ok(ids)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::backend::LocalBackend;
    use crate::repo::{Credentials, InitOptions};
    use crate::saver::Saver;
    use cairn_format::tree::{Node, Tree};

    #[test]
    fn keeps_the_snapshot_blobs_and_trees_only() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        Repository::init(
            Box::new(LocalBackend::new(dir.path())),
            InitOptions {
                recipients: vec![identity.to_public().to_string()],
                pack_size: 1 << 20,
                ..InitOptions::default()
            },
        )
        .unwrap();
        let repo = Arc::new(
            Repository::open(
                Box::new(LocalBackend::new(dir.path())),
                Credentials::Identities(vec![Box::new(identity)]),
            )
            .unwrap(),
        );
        // Two files in two trees, 20,000 small blobs each (~1.1 MB of index objects).
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        let mut roots = Vec::new();
        let mut files = Vec::new();
        for f in 0..2u32 {
            let ids: Vec<Id> = (0..20_000u32)
                .map(|i| {
                    let mut b = f.to_le_bytes().to_vec();
                    b.extend_from_slice(&i.to_le_bytes());
                    saver.add_blob(PackKind::Data, b).unwrap()
                })
                .collect();
            let mut node = Node::new(format!("f{f}").into_bytes(), NodeKind::File);
            node.content = ids.clone();
            let mut tree = Tree { nodes: vec![node] };
            roots.push(saver.save_tree(&mut tree).unwrap());
            files.push(ids);
        }
        saver.finish().unwrap();

        let whole = Index::load(&repo).unwrap();
        let trees = Index::load_filtered(&repo, &|p, _| p.kind == PackKind::Tree, false).unwrap();
        let needed =
            data_blobs(&mut Loader::new(repo.clone(), Arc::new(trees)), &roots[..1]).unwrap();
        let mut want = files[0].clone();
        want.sort_unstable();
        assert_eq!(needed, want);

        let keep = |p: &cairn_format::index::IndexPack, id: &Id| {
            p.kind == PackKind::Tree || needed.binary_search(id).is_ok()
        };
        let part = Index::load_filtered(&repo, &keep, false).unwrap();
        // Whole packs: a pack's blobs all or none.
        let packs = Index::load_filtered(&repo, &keep, true).unwrap();
        for (id, loc) in whole.iter() {
            let pack = whole.pack(loc.pack).id;
            if part.contains(id) {
                assert!(packs.contains(id));
            }
            let kept = packs.packs().iter().any(|p| p.id == pack);
            assert_eq!(packs.contains(id), kept, "{id} of pack {pack}");
        }
        for id in &files[0] {
            assert_eq!(
                part.get(id).map(|l| part.pack(l.pack).id),
                whole.get(id).map(|l| whole.pack(l.pack).id)
            );
        }
        assert!(files[1].iter().all(|id| !part.contains(id)));
        assert!(part.len() < whole.len() - 19_000);
        // The trees are there: a loader over the partial index reads the first snapshot back.
        let mut loader = Loader::new(repo.clone(), Arc::new(part));
        let tree = loader.load_tree(&roots[0]).unwrap();
        assert_eq!(tree.nodes[0].content, files[0]);
        for id in tree.nodes[0].content.iter().take(100) {
            loader.load(id).unwrap();
        }
        // Below the threshold, for_trees loads it all.
        assert_eq!(
            for_trees(&repo, &roots[..1], false).unwrap().len(),
            whole.len()
        );
    }
}
