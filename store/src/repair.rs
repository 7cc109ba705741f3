//! Repairs: rebuilding the index from pack trailers (`repair index`) and rewriting snapshots
//! whose trees refer to blobs that are gone (`repair snapshots`).
//!
//! Both take the prune lease, so they never run beside a prune. Both write new objects first
//! and remove the objects they replace last, so an interrupted repair leaves the repository
//! at least as readable as before.

use crate::copy::stored_packs;
use crate::index::Index;
use crate::lease::{load_markers, Lease};
use crate::loader::Loader;
use crate::repo::{Repository, Role};
use crate::saver::Saver;
use crate::{snapshots, Error, Result};
use cairn_format::index::{IndexPack, IndexRecord};
use cairn_format::pack::{self, PackKind, PackTrailer, FOOTER_LEN};
use cairn_format::tree::{NodeKind, Tree};
use cairn_format::Id;
use std::collections::HashSet;
use std::sync::Arc;

/// Tag added to snapshots rewritten by `repair snapshots`.
pub const REPAIRED_TAG: &str = "repaired";
/// Fact recording how many files a repaired snapshot lost.
pub const LOST_FACT: &str = "repaired.lost_files";

/// What `repair index` did (or would do, on a dry run).
#[derive(Debug, Default, Clone)]
pub struct IndexRepairReport {
    /// Packs whose trailer was read and indexed.
    pub packs_read: u64,
    /// Data packs carried over from the old index because the role cannot read them.
    pub packs_kept_from_index: u64,
    /// Data packs that a write key could not read and that no readable index listed.
    pub packs_unreadable_needs_identity: u64,
    /// True when data packs were not read because the credentials are a write key.
    pub data_needs_identity: bool,
    /// Blobs in the new index.
    pub blobs: u64,
    /// Packs condemned by gc markers, left out.
    pub packs_condemned: u64,
    /// Packs whose trailer could not be read: (object path, reason). Left out.
    pub damaged: Vec<(String, String)>,
    /// Index objects written.
    pub written: Vec<Id>,
    /// Old index objects removed.
    pub removed: u64,
}

/// Read and validate the trailer of one stored pack.
pub(crate) fn read_trailer(repo: &Repository, kind: PackKind, id: &Id) -> Result<PackTrailer> {
    let path = Repository::pack_path(kind, id);
    let mut reader = repo.open_pack(kind, id)?;
    let len = reader
        .plaintext_len()
        .map_err(|e| Error::damaged(path.clone(), e))?;
    if len < FOOTER_LEN as u64 {
        return Err(Error::damaged(
            path,
            cairn_format::Error::Truncated { what: "pack" },
        ));
    }
    let footer = reader
        .read_at(len - FOOTER_LEN as u64, FOOTER_LEN)
        .map_err(|e| Error::damaged(path.clone(), e))?;
    let range = pack::trailer_range(&footer, len).map_err(|e| Error::damaged(path.clone(), e))?;
    let bytes = reader
        .read_at(range.start, (range.end - range.start) as usize)
        .map_err(|e| Error::damaged(path.clone(), e))?;
    let trailer =
        pack::decode_trailer(&bytes, range.start).map_err(|e| Error::damaged(path.clone(), e))?;
    if trailer.kind != kind {
        return Err(Error::Invalid(format!(
            "pack {path} says it holds {:?} blobs but is stored under {}/",
            trailer.kind,
            kind.dir()
        )));
    }
    Ok(trailer)
}

/// Rebuild the index from the trailers of every stored pack. New index objects are written
/// before the old ones (those listed at the start) are removed. With a write key, data packs
/// cannot be read: their entries are carried over from the readable old index objects.
pub fn repair_index(repo: &Arc<Repository>, dry_run: bool) -> Result<IndexRepairReport> {
    let lease = if dry_run {
        None
    } else {
        Some(Lease::prune(repo)?)
    };
    let mut report = IndexRepairReport::default();
    let old_objects = repo.backend().list("index")?;
    let condemned: HashSet<Id> = load_markers(repo)?
        .iter()
        .flat_map(|(_, m)| m.packs.iter().map(|p| p.id))
        .collect();
    let mut stored: Vec<(Id, (PackKind, u64))> = stored_packs(repo)?.into_iter().collect();
    stored.sort_by_key(|(id, _)| *id);
    let can_read_data = repo.role() == Role::Full;
    report.data_needs_identity = !can_read_data
        && stored
            .iter()
            .any(|(id, (k, _))| *k == PackKind::Data && !condemned.contains(id));
    let old = if can_read_data {
        None
    } else {
        Some(Index::load(repo)?)
    };
    let mut packs: Vec<IndexPack> = Vec::new();
    let mut kept_numbers = HashSet::new();
    for (id, (kind, size)) in &stored {
        if condemned.contains(id) {
            report.packs_condemned += 1;
            continue;
        }
        if *kind == PackKind::Data && !can_read_data {
            let old = old.as_ref().expect("loaded for write keys");
            match old.packs().iter().position(|p| p.id == *id) {
                Some(n) => {
                    kept_numbers.insert(n as u32);
                    report.packs_kept_from_index += 1;
                }
                None => report.packs_unreadable_needs_identity += 1,
            }
            continue;
        }
        match read_trailer(repo, *kind, id) {
            Ok(t) => {
                report.packs_read += 1;
                packs.push(IndexPack {
                    id: *id,
                    kind: *kind,
                    size: *size,
                    blobs: t.blobs,
                });
            }
            Err(e) => {
                tracing::warn!("skipping pack: {e}");
                report
                    .damaged
                    .push((Repository::pack_path(*kind, id), e.to_string()));
            }
        }
    }
    if let Some(old) = &old {
        packs.extend(old.records_for(&kept_numbers));
    }
    report.blobs = packs.iter().map(|p| p.blobs.len() as u64).sum();
    if dry_run {
        report.removed = old_objects.len() as u64;
        return Ok(report);
    }
    let counted = packs.into_iter().map(|p| {
        let blobs = p.blobs.len();
        (p, blobs)
    });
    crate::index::in_objects(counted, |packs| {
        let id = repo.put_index(&IndexRecord { packs })?;
        report.written.push(id);
        Ok(())
    })?;
    if let Some(lease) = &lease {
        lease.ensure_fresh()?;
    }
    let written: HashSet<String> = report
        .written
        .iter()
        .map(|id| format!("index/{id}"))
        .collect();
    for obj in &old_objects {
        // An identical rebuilt object has the same name: keep it.
        if written.contains(&obj.path) {
            continue;
        }
        match repo.backend().delete(&obj.path) {
            Ok(()) | Err(Error::NotFound { .. }) => report.removed += 1,
            Err(e) => return Err(e),
        }
    }
    drop(lease);
    Ok(report)
}

/// One snapshot rewritten (or that would be) by `repair snapshots`.
#[derive(Debug, Clone)]
pub struct RepairedSnapshot {
    /// The damaged snapshot.
    pub original: Id,
    /// Its replacement (None on a dry run).
    pub new: Option<Id>,
    /// Paths of lost files and unreadable directories, relative to the snapshot root.
    pub lost: Vec<Vec<Vec<u8>>>,
}

/// What `repair snapshots` did.
#[derive(Debug, Default, Clone)]
pub struct SnapshotRepairReport {
    /// Snapshots checked.
    pub checked: u64,
    /// Snapshots rewritten.
    pub repaired: Vec<RepairedSnapshot>,
    /// Snapshots that could not be repaired (root tree unreadable, or damaged object): (name,
    /// reason). They are left as they are.
    pub failed: Vec<(String, String)>,
    /// Packs listed by the index but no longer stored: their blobs counted as lost.
    pub missing_packs: u64,
    /// Packs stored but listed by no index: blobs counted as lost may be in them (`repair
    /// index` first). A repair that would drop files is refused while there are any.
    pub unindexed_packs: u64,
}

/// Rewrite `tree_id` without lost files and unreadable subtrees. Returns the new tree id when
/// something was removed below it (None: unchanged). `saver` is None on a dry run; then a
/// changed tree gets its old id back.
fn rewrite(
    loader: &mut Loader,
    saver: &mut Option<Saver>,
    tree: Tree,
    path: &mut Vec<Vec<u8>>,
    lost: &mut Vec<Vec<Vec<u8>>>,
) -> Result<Option<Tree>> {
    if path.len() >= crate::trees::MAX_DEPTH {
        return Err(Error::Invalid(format!(
            "directory nesting deeper than {} levels",
            crate::trees::MAX_DEPTH
        )));
    }
    let mut changed = false;
    let mut nodes = Vec::with_capacity(tree.nodes.len());
    for mut node in tree.nodes {
        path.push(node.name.clone());
        if node.referenced().any(|b| !loader.index().contains(b))
            || crate::content_lists::unresolved(&node)
        {
            lost.push(path.clone());
            changed = true;
            path.pop();
            continue;
        }
        if let (NodeKind::Dir, Some(sub)) = (node.kind, node.subtree) {
            match loader.load_tree_lenient(&sub) {
                Err(e) => {
                    tracing::warn!("directory {:?} is unreadable: {e}", path);
                    lost.push(path.clone());
                    changed = true;
                    path.pop();
                    continue;
                }
                Ok(subtree) => {
                    if let Some(mut new) = rewrite(loader, saver, subtree, path, lost)? {
                        changed = true;
                        if let Some(s) = saver.as_mut() {
                            node.subtree = Some(s.save_tree(&mut new)?);
                        }
                    }
                }
            }
        }
        path.pop();
        nodes.push(node);
    }
    Ok(changed.then_some(Tree { nodes }))
}

/// What `repair snapshots` says of what it cannot read while packs in no index may hold it.
const INDEX_FIRST: &str = "packs in no index may hold it: run `cairn repair index` first (and move out of the repository any pack it skips as damaged)";

/// Rewrite every snapshot whose trees refer to blobs that are not in the index (or whose packs
/// are gone): lost files and unreadable directories are dropped, the new trees stored, a new
/// snapshot written (tagged `repaired`, parent = the original) and the original removed.
pub fn repair_snapshots(repo: &Arc<Repository>, dry_run: bool) -> Result<SnapshotRepairReport> {
    let lease = if dry_run {
        None
    } else {
        Some(Lease::prune(repo)?)
    };
    let mut report = SnapshotRepairReport::default();
    let stored = stored_packs(repo)?;
    let mut excluded: HashSet<Id> = load_markers(repo)?
        .iter()
        .flat_map(|(_, m)| m.packs.iter().map(|p| p.id))
        .collect();
    let full = Index::load(repo)?;
    for p in full.packs() {
        if !stored.contains_key(&p.id) {
            report.missing_packs += 1;
            excluded.insert(p.id);
        }
    }
    let indexed: HashSet<Id> = full.packs().iter().map(|p| p.id).collect();
    report.unindexed_packs = stored
        .keys()
        .filter(|id| !indexed.contains(id) && !excluded.contains(id))
        .count() as u64;
    drop(full);
    let index = Arc::new(Index::load_excluding(repo, &excluded)?);
    let listing = snapshots::list(repo)?;
    report
        .failed
        .extend(listing.unreadable.into_iter().map(|u| (u.path, u.why)));
    let mut loader = Loader::new(repo.clone(), index.clone());
    let mut saver = if dry_run {
        None
    } else {
        Some(Saver::new(repo.clone(), index.clone(), 1))
    };
    let mut pending = Vec::new();
    for (id, snap) in listing.snapshots {
        report.checked += 1;
        let root = match loader.load_tree_lenient(&snap.tree) {
            Ok(t) => t,
            Err(e) => {
                report.failed.push((
                    format!("snapshots/{id}"),
                    if report.unindexed_packs > 0 {
                        format!("its root tree cannot be read ({e}); {INDEX_FIRST}")
                    } else {
                        format!("its root tree cannot be read ({e}); nothing of it can be saved: remove it with `cairn forget {}`", id.short())
                    },
                ));
                continue;
            }
        };
        let mut lost = Vec::new();
        let Some(mut new_root) =
            rewrite(&mut loader, &mut saver, root, &mut Vec::new(), &mut lost)?
        else {
            continue;
        };
        // Without its database an etcd or cluster snapshot would pass for a backup that
        // restores nothing (and retention would keep it over good ones).
        if let Some(db) = crate::restore::verify::database(&snap).filter(|db| lost.contains(db)) {
            report.failed.push((
                format!("snapshots/{id}"),
                if report.unindexed_packs > 0 {
                    format!(
                        "its etcd database {} is not in the index; {INDEX_FIRST}; the snapshot is left as it is",
                        crate::trees::display_path(&db),
                    )
                } else {
                    format!(
                        "its etcd database {} is lost; the snapshot is left as it is: remove it with `cairn forget {}`",
                        crate::trees::display_path(&db),
                        id.short()
                    )
                },
            ));
            continue;
        }
        let new_tree = match saver.as_mut() {
            Some(s) => Some(s.save_tree(&mut new_root)?),
            None => None,
        };
        pending.push((id, snap, new_tree, lost));
    }
    if !dry_run && !pending.is_empty() && report.unindexed_packs > 0 {
        return Err(Error::Invalid(format!(
            "{} packs are stored but listed in no index (an index object was lost, or backups were interrupted), so files this repair would drop may still be there; nothing was changed. Run `cairn repair index` first, then `cairn repair snapshots` again (a pack `repair index` skips as damaged stays in no index: move it out of the repository first)",
            report.unindexed_packs
        )));
    }
    if let Some(s) = saver.take() {
        s.finish()?;
    }
    if let Some(lease) = &lease {
        lease.ensure_fresh()?;
    }
    for (id, mut snap, new_tree, lost) in pending {
        let mut new_id = None;
        if let Some(tree) = new_tree {
            snap.tree = tree;
            if !snap.tags.iter().any(|t| t == REPAIRED_TAG) {
                snap.tags.push(REPAIRED_TAG.to_string());
            }
            snap.facts
                .push((LOST_FACT.to_string(), lost.len().to_string()));
            snap.parent = Some(id);
            let nid = snapshots::save(repo, &snap)?;
            match repo.backend().delete(&format!("snapshots/{id}")) {
                Ok(()) | Err(Error::NotFound { .. }) => {}
                Err(e) => return Err(e),
            }
            new_id = Some(nid);
        }
        report.repaired.push(RepairedSnapshot {
            original: id,
            new: new_id,
            lost,
        });
    }
    drop(lease);
    Ok(report)
}
