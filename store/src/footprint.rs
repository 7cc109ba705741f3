//! What snapshots occupy once a prune has removed everything else (for `forget --max-size`).

use crate::index::Index;
use crate::loader::Loader;
use crate::repo::Repository;
use crate::retention::{PackSize, INDEX_BYTES_PER_BLOB, INDEX_BYTES_PER_OBJECT};
use crate::{trees, Result};
use cairn_format::snapshot::Snapshot;
use cairn_format::Id;
use std::collections::{HashMap, HashSet};
use std::sync::Arc;

/// Input for [`crate::retention::fitting_prefix`]: bytes that stay whatever is forgotten, and
/// for each candidate (in the order given) its snapshot object size and the packs it uses.
#[derive(Debug, Default)]
pub struct Footprint {
    /// Config, keys, and everything the snapshots that are not candidates keep.
    pub fixed: u64,
    /// Per candidate: snapshot object size and the packs it uses (less those in `fixed`).
    pub candidates: Vec<(u64, Vec<Id>)>,
    /// Size and indexed blob count of every pack a candidate uses.
    pub packs: HashMap<Id, PackSize>,
}

/// Measures `candidates` (which may be removed) against `kept` (which stay whatever happens).
/// Reads every tree the snapshots reach; fails on the first that cannot be read.
pub fn measure(
    repo: &Arc<Repository>,
    kept: &[(Id, &Snapshot)],
    candidates: &[(Id, &Snapshot)],
) -> Result<Footprint> {
    let index = Arc::new(Index::load(repo)?);
    let mut blobs_per_pack: HashMap<u32, u64> = HashMap::new();
    for (_, loc) in index.iter() {
        *blobs_per_pack.entry(loc.pack).or_default() += 1;
    }
    let pack_size = |n: u32| PackSize {
        size: index.pack(n).size,
        blobs: blobs_per_pack.get(&n).copied().unwrap_or(0),
    };
    let object_sizes: HashMap<String, u64> = repo
        .backend()
        .list("snapshots")?
        .into_iter()
        .map(|o| (o.path, o.size))
        .collect();
    let object_size = |id: &Id| {
        object_sizes
            .get(&format!("snapshots/{id}"))
            .copied()
            .unwrap_or(0)
    };
    let mut loader = Loader::new(repo.clone(), index.clone());
    let mut packs_of = |s: &Snapshot| -> Result<HashSet<u32>> {
        let blobs = trees::referenced_blobs(&mut loader, &[s.tree])?;
        Ok(blobs
            .iter()
            .filter_map(|b| index.get(b).map(|l| l.pack))
            .collect())
    };

    let mut out = Footprint {
        fixed: repo.backend().get("config")?.len() as u64,
        ..Footprint::default()
    };
    for obj in repo.backend().list("keys")? {
        out.fixed += obj.size;
    }
    let mut fixed_packs = HashSet::new();
    for (id, s) in kept {
        out.fixed += object_size(id);
        fixed_packs.extend(packs_of(s)?);
    }
    for &n in &fixed_packs {
        let p = pack_size(n);
        out.fixed += p.size + p.blobs * INDEX_BYTES_PER_BLOB + INDEX_BYTES_PER_OBJECT;
    }
    for (id, s) in candidates {
        let mut ids = Vec::new();
        for n in packs_of(s)? {
            if fixed_packs.contains(&n) {
                continue;
            }
            let pack = index.pack(n);
            out.packs.insert(pack.id, pack_size(n));
            ids.push(pack.id);
        }
        out.candidates.push((object_size(id), ids));
    }
    Ok(out)
}

/// The repository's stored bytes now: every object (config, keys, packs, index, snapshots,
/// locks and GC markers), as `forget --max-size` counts them.
pub fn stored_total(repo: &Repository) -> Result<u64> {
    let mut stored = repo.backend().get("config")?.len() as u64;
    for dir in ["keys", "data", "tree", "index", "snapshots", "locks", "gc"] {
        for obj in repo.backend().list(dir)? {
            stored = stored.saturating_add(obj.size);
        }
    }
    Ok(stored)
}
