//! Garbage collection in two phases, safe while backups run (SPEC.md §11).
//!
//! **Mark**: with the single prune lease held, find packs no snapshot needs — wholly unused
//! packs, packs left unindexed by interrupted backups, and partly used packs whose live blobs
//! were first rewritten into new packs (repack) — and write one `gc/<id>` marker naming them
//! with their index entries. Writers that load the index after the marker exists leave those
//! packs alone. **Sweep**: a marker is swept once no live writer lease predates it (every live
//! writer has seen it): prune reloads every snapshot, puts back any condemned pack a
//! concurrent backup turned out to need, rewrites the index without the rest, deletes them,
//! and deletes the marker last. Each step is idempotent, so a killed prune is finished by the
//! next one.

use crate::blob_set::BlobSet;
use crate::copy::stored_packs;
use crate::index::Index;
use crate::lease::{self, Lease, PRUNE_LEASE};
use crate::loader::Loader;
use crate::pack_entries::PackEntries;
use crate::repo::{Repository, Role};
use crate::saver::Saver;
use crate::{snapshots, trees, Error, Result};
use cairn_format::gc::{GcRecord, LeaseKind};
use cairn_format::index::{IndexPack, IndexRecord};
use cairn_format::pack::{BlobEntry, FrameRef, PackKind};
use cairn_format::Id;
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

/// Largest index object accepted.
const MAX_INDEX_LEN: u64 = 1 << 30;

/// How to prune.
#[derive(Debug, Clone)]
pub struct PruneOptions {
    /// Repack partly used packs until at most this fraction (0.0–1.0) of the blob bytes left
    /// is unused.
    pub max_unused: f64,
    /// Only report what would be done.
    pub dry_run: bool,
}

impl Default for PruneOptions {
    fn default() -> Self {
        PruneOptions {
            max_unused: 0.05,
            dry_run: false,
        }
    }
}

/// What a prune did (or, with `dry_run`, would do).
#[derive(Debug, Default, Clone)]
pub struct PruneReport {
    /// Packs condemned because nothing uses them.
    pub unused_packs: u64,
    /// Packs condemned because no index lists them (interrupted backups).
    pub unindexed_packs: u64,
    /// Partly used packs rewritten.
    pub repacked_packs: u64,
    /// Live blobs copied into new packs while repacking.
    pub blobs_rewritten: u64,
    /// Partly used data packs left as they are because the write key cannot read them.
    pub repack_needs_identity: u64,
    /// Stored bytes of the condemned packs.
    pub bytes_condemned: u64,
    /// The marker written, if any.
    pub marker: Option<Id>,
    /// Packs deleted by sweeps.
    pub packs_deleted: u64,
    /// Bytes freed by sweeps.
    pub bytes_freed: u64,
    /// Condemned packs a concurrent backup turned out to need, put back in the index.
    pub packs_rescued: u64,
    /// Markers swept.
    pub markers_swept: Vec<Id>,
    /// Temporary files of killed writers removed (local repositories).
    pub incomplete_removed: u64,
    /// Markers left for a later prune, with the reason.
    pub markers_pending: Vec<(Id, String)>,
    /// S3 Object Lock policy of the repository, if any: deleted objects stay stored as locked
    /// versions until their retention ends.
    pub object_lock: Option<crate::backend::WriteLock>,
    /// Objects whose retention was extended to the policy's days from now.
    pub retention_extended: u64,
}

/// The repository's index objects, read one by one (prune needs to know which object says
/// what, to replace them): their paths, each pack's kind and size, and the packs' entries set
/// aside in a temporary file and read back a pack at a time, so they are not held twice (here
/// and in the merged index) for every blob.
struct IndexObjects {
    paths: Vec<String>,
    packs: HashMap<Id, (PackKind, u64)>,
    entries: PackEntries,
    /// Index objects this prune's repack wrote, and the blobs they list (sorted): the only
    /// listings the sweep takes on trust. Blobs, not packs: another index object may list
    /// more blobs in a pack the repack wrote.
    own: HashSet<Id>,
    own_blobs: Vec<Id>,
}

impl IndexObjects {
    fn load(repo: &Repository) -> Result<IndexObjects> {
        let mut out = IndexObjects {
            paths: Vec::new(),
            packs: HashMap::new(),
            entries: PackEntries::new()?,
            own: HashSet::new(),
            own_blobs: Vec::new(),
        };
        out.refresh(repo)?;
        Ok(out)
    }

    /// Read the index objects stored since these were read. Index objects are immutable and,
    /// while the prune lease is held, only added (by backups and by repacking), never removed:
    /// the ones read before stay valid.
    fn refresh(&mut self, repo: &Repository) -> Result<()> {
        let known: HashSet<String> = self.paths.iter().cloned().collect();
        for obj in repo.backend().list("index")? {
            if known.contains(&obj.path) {
                continue;
            }
            let name = obj.path.rsplit('/').next().unwrap_or_default();
            let rec = name
                .parse::<Id>()
                .map_err(|e| Error::Invalid(format!("{}: {e}", obj.path)))
                .and_then(|id| repo.get_meta("index", &id, MAX_INDEX_LEN))
                .and_then(|plain| {
                    IndexRecord::decode(&plain).map_err(|e| Error::damaged(obj.path.clone(), e))
                })
                .map_err(|e| {
                    Error::Invalid(format!(
                        "prune stopped: index object {} cannot be read ({e}); packs it lists would look unused. Run `cairn repair index` first",
                        obj.path
                    ))
                })?;
            let own = name.parse::<Id>().is_ok_and(|id| self.own.contains(&id));
            for p in &rec.packs {
                self.packs.entry(p.id).or_insert((p.kind, p.size));
                self.entries.append(p)?;
                if own {
                    self.own_blobs.extend(p.blobs.iter().map(|b| b.id));
                }
            }
            self.paths.push(obj.path);
        }
        self.own_blobs.sort_unstable();
        self.own_blobs.dedup();
        Ok(())
    }

    /// Pack `id` as the index objects list it (each blob once, in id order).
    fn pack(&self, id: &Id) -> Result<IndexPack> {
        let mut pack = IndexObjects::buffer();
        self.pack_into(id, &mut pack)?;
        Ok(pack)
    }

    /// A pack record for [`IndexObjects::pack_into`] to fill.
    fn buffer() -> IndexPack {
        IndexPack {
            id: Id([0; 32]),
            kind: PackKind::Data,
            size: 0,
            blobs: Vec::new(),
        }
    }

    /// [`IndexObjects::pack`] into `pack`, reusing its allocation: for passes over every pack.
    fn pack_into(&self, id: &Id, pack: &mut IndexPack) -> Result<()> {
        let (kind, size) =
            self.packs.get(id).copied().ok_or_else(|| {
                Error::Invalid(format!("pack {id} is in no index object prune read"))
            })?;
        (pack.id, pack.kind, pack.size) = (*id, kind, size);
        self.entries.entries_into(id, &mut pack.blobs)
    }

    /// The packs' ids in order, but those in `excluded`.
    fn ids(&self, excluded: &HashSet<Id>) -> Vec<Id> {
        let mut ids: Vec<Id> = self
            .packs
            .keys()
            .filter(|id| !excluded.contains(id))
            .copied()
            .collect();
        ids.sort_unstable();
        ids
    }

    /// A merged in-memory index of every pack not in `excluded`.
    fn index(&self, excluded: &HashSet<Id>) -> Result<Index> {
        let mut index = Index::default();
        let mut pack = IndexObjects::buffer();
        for id in self.ids(excluded) {
            self.pack_into(&id, &mut pack)?;
            index.add_unsealed(&pack, &|_, _| true);
        }
        index.seal_now();
        Ok(index)
    }
}

/// The blobs snapshots reference, and which snapshots were walked for them.
struct Referenced {
    blobs: BlobSet,
    snapshots: HashSet<Id>,
}

/// Delete temporary files that belong to no running writer; returns how many. A lease's life
/// after their last write, or two minutes (the lease life, if shorter) when no lease but
/// prune's is held: a writer stages files only once its lease is stored, so the leases are
/// listed after the files, and a writer that starts in between cannot own one of them (its
/// files are newer). Two minutes allows for clocks that differ between the hosts of a shared
/// repository.
fn remove_incomplete(repo: &Repository) -> Result<u64> {
    let expiry = std::time::Duration::from_secs(lease::expiry_secs().max(0) as u64);
    let soonest = expiry.min(std::time::Duration::from_secs(120));
    let candidates = repo.backend().incomplete(soonest)?;
    if candidates.is_empty() {
        return Ok(0);
    }
    let others_held = lease::list_leases(repo)?
        .iter()
        .any(|l| l.path != lease::PRUNE_LEASE && l.may_be_held());
    let old_enough = if others_held { expiry } else { soonest };
    let mut removed = 0;
    for (path, age) in candidates {
        if age >= old_enough {
            repo.backend().delete(&path)?;
            removed += 1;
        }
    }
    Ok(removed)
}

/// Every blob the repository's snapshots reference, walking only the snapshots not in
/// `known` (whose blobs the caller has). `index` is built only if there is something to walk.
/// Unreadable snapshots stop prune.
fn referenced(
    repo: &Arc<Repository>,
    known: &HashSet<Id>,
    index: impl FnOnce() -> Result<Arc<Index>>,
) -> Result<Referenced> {
    let listing = snapshots::list(repo)?;
    if let Some(u) = listing.unreadable.iter().find(|u| u.newer) {
        return Err(Error::Invalid(format!(
            "prune stopped: snapshot {} was written by a newer cairn, so what it references is unknown to this one; prune with that version",
            u.path
        )));
    }
    if let Some(crate::snapshots::Unreadable { path, why, .. }) = listing.unreadable.first() {
        return Err(Error::Invalid(format!(
            "prune stopped: snapshot {path} cannot be read ({why}), so what it references is unknown. Put the object back from a copy of the repository, or remove it with `cairn forget ID` (its name; by hand if its name is not an id): it holds that snapshot's record and nothing else. `cairn check` lists every damaged one"
        )));
    }
    let new: Vec<&(Id, cairn_format::snapshot::Snapshot)> = listing
        .snapshots
        .iter()
        .filter(|(id, _)| !known.contains(id))
        .collect();
    let snapshots = new.iter().map(|(id, _)| *id).collect();
    if new.is_empty() {
        return Ok(Referenced {
            blobs: BlobSet::new(Arc::new(Index::from_packs(std::iter::empty()))),
            snapshots,
        });
    }
    let roots: Vec<Id> = new.iter().map(|(_, s)| s.tree).collect();
    let blobs = trees::referenced_blobs(&mut Loader::new(repo.clone(), index()?), &roots)
        .map_err(|e| {
            Error::Invalid(format!(
                "prune stopped: a snapshot's tree cannot be read ({e}). Run `cairn check`, which names the snapshots affected: where stored packs are in no index, `cairn repair index` puts them back; what is still missing after that, `cairn repair snapshots` drops, and a snapshot with nothing left goes with `cairn forget ID`"
            ))
        })?;
    Ok(Referenced { blobs, snapshots })
}

/// Run prune: sweep what earlier runs marked, mark, and sweep again if nothing is running.
pub fn prune(repo: &Arc<Repository>, opts: &PruneOptions) -> Result<PruneReport> {
    let mut report = PruneReport::default();
    if opts.dry_run {
        plan(repo, opts, &mut report)?;
        return Ok(report);
    }
    let _lease = Lease::prune(repo)?;
    report.incomplete_removed = remove_incomplete(repo)?;
    sweep(repo, &mut report, None)?;
    let plan = plan(repo, opts, &mut report)?;
    let done = execute(repo, &plan)?;
    if let Some(marker) = done.marker {
        report.marker = Some(marker);
        report.markers_pending.clear();
        // What the plan read stays true: its index objects and the blobs of the snapshots it
        // walked. The sweep reads only what was stored since.
        let mut objects = plan.objects;
        objects.own.extend(done.index_objects);
        sweep(repo, &mut report, Some((objects, plan.used)))?;
    }
    remove_spent_leases(repo)?;
    // Object Lock: what is kept stays protected the policy's days from now (packs a pending
    // marker condemns excepted).
    if let Some(lock) = crate::object_lock::apply(repo.backend())? {
        let condemned: HashSet<String> = lease::load_markers(repo)?
            .iter()
            .flat_map(|(_, m)| m.packs.iter().map(|p| p.id.to_hex()))
            .collect();
        report.retention_extended = crate::object_lock::extend(repo.backend(), lock, |path| {
            path.rsplit('/')
                .next()
                .is_some_and(|n| condemned.contains(n))
        })?;
        report.object_lock = Some(lock);
    }
    Ok(report)
}

/// What the mark phase decided.
struct Plan {
    objects: IndexObjects,
    /// The index of every pack in `objects`.
    index: Arc<Index>,
    used: Referenced,
    condemned: HashSet<Id>,
    unused: Vec<Id>,
    unindexed: Vec<(Id, PackKind, u64)>,
    repack: Vec<(Id, Vec<Id>)>,
}

/// Decide what to condemn.
fn plan(repo: &Arc<Repository>, opts: &PruneOptions, report: &mut PruneReport) -> Result<Plan> {
    let markers = lease::load_markers(repo)?;
    let condemned: HashSet<Id> = markers
        .iter()
        .flat_map(|(_, m)| m.packs.iter().map(|p| p.id))
        .collect();
    let t = std::time::Instant::now();
    let objects = IndexObjects::load(repo)?;
    let all = Arc::new(objects.index(&HashSet::new())?);
    tracing::debug!("plan: index loaded in {:?}", t.elapsed());
    // Without pending markers the live index is the whole index: share it.
    let live = if condemned.is_empty() {
        all.clone()
    } else {
        Arc::new(objects.index(&condemned)?)
    };
    let t = std::time::Instant::now();
    let used = referenced(repo, &HashSet::new(), || Ok(all.clone()))?;
    tracing::debug!("plan: snapshots walked in {:?}", t.elapsed());
    let missing = used.blobs.iter().filter(|b| !all.contains(b)).count();

    // A referenced blob keeps every pack an index object lists it in, not only the first the
    // index finds: index objects are unverified claims (a write-key holder can plant one that
    // lists every blob in a pack of its choosing), and choosing one listing would let such a
    // claim empty the packs that really hold the data. A blob stored twice (two concurrent
    // backups) therefore keeps both packs.
    let mut plan = Plan {
        objects,
        index: all,
        used,
        condemned,
        unused: Vec::new(),
        unindexed: Vec::new(),
        repack: Vec::new(),
    };
    // Wholly unused packs go. Partly used ones are repacked, most wasteful first, only until
    // the unused bytes left are at most `max_unused` of what stays stored (a repository-wide
    // limit: with small chunks almost every pack holds some unused bytes, and a per-pack limit
    // would rewrite nearly everything at every prune).
    let mut partly = Vec::new();
    let (mut used_total, mut unused_total) = (0u64, 0u64);
    let mut pack = IndexObjects::buffer();
    for info in live.packs() {
        if plan.condemned.contains(&info.id) {
            continue;
        }
        plan.objects.pack_into(&info.id, &mut pack)?;
        let total: u64 = pack.blobs.iter().map(|b| u64::from(b.len)).sum();
        let used_len: u64 = pack
            .blobs
            .iter()
            .filter(|b| plan.used.blobs.contains(&b.id))
            .map(|b| u64::from(b.len))
            .sum();
        if used_len == 0 {
            plan.unused.push(info.id);
            report.unused_packs += 1;
            report.bytes_condemned += info.size;
            continue;
        }
        let unused = total - used_len.min(total);
        used_total += used_len;
        unused_total += unused;
        if unused > 0 {
            partly.push((unused as f64 / total as f64, unused, info));
        }
    }
    partly.sort_by(|a, b| b.0.total_cmp(&a.0));
    for (_, unused, info) in partly {
        if unused_total as f64 <= opts.max_unused * (used_total + unused_total) as f64 {
            break;
        }
        if info.kind == PackKind::Data && repo.role() != Role::Full {
            report.repack_needs_identity += 1;
            continue;
        }
        unused_total -= unused;
        plan.repack.push((info.id, Vec::new()));
        report.repacked_packs += 1;
        report.bytes_condemned += info.size;
    }
    // The referenced blobs each chosen pack is listed as holding move to new packs (written
    // again even where another pack is listed as holding them: see `execute`).
    for (id, live_blobs) in &mut plan.repack {
        plan.objects.pack_into(id, &mut pack)?;
        let mut ids: Vec<Id> = pack
            .blobs
            .iter()
            .map(|b| b.id)
            .filter(|b| plan.used.blobs.contains(b))
            .collect();
        ids.sort_unstable();
        ids.dedup();
        *live_blobs = ids;
    }
    if missing > 0 {
        tracing::warn!(
            "{missing} referenced blobs are in no index; unindexed packs are kept (they may hold them). Run `cairn repair index`"
        );
    } else {
        for (id, (kind, size)) in stored_packs(repo)? {
            if !plan.objects.packs.contains_key(&id) && !plan.condemned.contains(&id) {
                plan.unindexed.push((id, kind, size));
                report.unindexed_packs += 1;
                report.bytes_condemned += size;
            }
        }
    }
    report.blobs_rewritten = plan.repack.iter().map(|(_, b)| b.len() as u64).sum();
    Ok(plan)
}

/// What [`execute`] did: the marker, if anything was condemned, and the index objects the
/// repack wrote.
#[derive(Default)]
struct Executed {
    marker: Option<Id>,
    index_objects: Vec<Id>,
}

/// Repack, then write the marker.
fn execute(repo: &Arc<Repository>, plan: &Plan) -> Result<Executed> {
    let mut done = Executed::default();
    if plan.unused.is_empty() && plan.unindexed.is_empty() && plan.repack.is_empty() {
        return Ok(done);
    }
    if !plan.repack.is_empty() {
        let t = std::time::Instant::now();
        // The live blobs are written again whatever other packs the index lists them in:
        // those listings are unverified claims (a planted one would have the saver skip the
        // blob, and the condemned pack that really holds it be deleted), and packs this plan
        // condemns may be among them. The saver deduplicates among its own writes only.
        let read_index = plan.index.clone();
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 0);
        // One thread reads (decrypts, decompresses, verifies) while this one feeds the saver,
        // whose own threads compress and upload.
        let numbers: HashMap<Id, u32> = (0u32..)
            .zip(read_index.packs())
            .map(|(n, p)| (p.id, n))
            .collect();
        let next = std::sync::atomic::AtomicUsize::new(0);
        let mut stats = RepackStats::default();
        std::thread::scope(|scope| -> Result<()> {
            let (tx, rx) = std::sync::mpsc::sync_channel::<Result<Repacked>>(8);
            let (repack, objects) = (&plan.repack, &plan.objects);
            let (numbers, next) = (&numbers, &next);
            // Readers take packs in turn: decompressing whole frames for a few live blobs
            // costs as much as compressing them again.
            let readers = std::thread::available_parallelism().map_or(2, |n| n.get().min(4));
            for _ in 0..readers {
                let (tx, loader_index) = (tx.clone(), read_index.clone());
                scope.spawn(move || {
                    let mut loader = Loader::new(repo.clone(), loader_index);
                    while let Some((pack, live)) =
                        repack.get(next.fetch_add(1, std::sync::atomic::Ordering::Relaxed))
                    {
                        let number = numbers[pack];
                        let pack = match objects.pack(pack) {
                            Ok(p) => p,
                            Err(e) => {
                                let _ = tx.send(Err(e));
                                return;
                            }
                        };
                        for item in repack_pack(&mut loader, number, &pack, live) {
                            let failed = item.is_err();
                            if tx.send(item).is_err() || failed {
                                return;
                            }
                        }
                    }
                });
            }
            drop(tx);
            for item in rx {
                match item? {
                    Repacked::Blobs { kind, raw, blobs } => {
                        stats.partial += 1;
                        stats.raw_decompressed += raw.len() as u64;
                        stats.raw_recompressed +=
                            blobs.iter().map(|&(_, _, len)| u64::from(len)).sum::<u64>();
                        for (id, offset, len) in blobs {
                            let start = offset as usize;
                            // In range: the reader checked each blob's hash over this slice.
                            let bytes = raw
                                .get(start..start + len as usize)
                                .ok_or(Error::BlobMissing(id))?;
                            saver.add_hashed(kind, id, bytes)?;
                        }
                    }
                    Repacked::Frame {
                        kind,
                        frame,
                        stored,
                        blobs,
                    } => {
                        stats.whole += 1;
                        stats.raw_decompressed += u64::from(frame.raw_len);
                        stats.stored_copied += stored.len() as u64;
                        saver.add_stored_frame(
                            kind,
                            frame.compression,
                            stored,
                            frame.raw_len,
                            blobs,
                        )?;
                    }
                }
            }
            Ok(())
        })?;
        done.index_objects = saver.finish()?.1;
        tracing::debug!(
            "repacked {} packs in {:?}: {stats:?}",
            plan.repack.len(),
            t.elapsed()
        );
    }
    let mut packs: Vec<IndexPack> = plan
        .unused
        .iter()
        .chain(plan.repack.iter().map(|(id, _)| id))
        .map(|id| plan.objects.pack(id))
        .collect::<Result<_>>()?;
    packs.extend(plan.unindexed.iter().map(|(id, kind, size)| IndexPack {
        id: *id,
        kind: *kind,
        size: *size,
        blobs: Vec::new(),
    }));
    let marker = GcRecord {
        created_unix: chrono::Utc::now().timestamp(),
        packs,
    };
    done.marker = Some(repo.put_meta("gc", &marker.encode())?);
    Ok(done)
}

/// What a repack did, for the debug log.
#[derive(Debug, Default)]
struct RepackStats {
    /// Frames whose blobs were all live, copied as stored.
    whole: u64,
    /// Frames with dead blobs, whose live blobs were compressed again.
    partial: u64,
    /// Bytes decompressed (to verify copied frames, and to take blobs from the others).
    raw_decompressed: u64,
    /// Bytes compressed again.
    raw_recompressed: u64,
    /// Stored bytes of the frames copied.
    stored_copied: u64,
}

/// What repacking takes from an old frame: the frame as stored, when all its blobs are live
/// (copied without recompression), or else the frame decompressed with its live blobs, to be
/// compressed again into new frames. Blobs are (id, offset, length) in the frame, verified.
enum Repacked {
    Frame {
        kind: PackKind,
        frame: FrameRef,
        stored: Vec<u8>,
        blobs: Vec<(Id, u32, u32)>,
    },
    Blobs {
        kind: PackKind,
        raw: Vec<u8>,
        blobs: Vec<(Id, u32, u32)>,
    },
}

/// The live content of `pack` (number `number` of the loader's index), frame by frame in pack
/// order, each frame read and decompressed once. Stops after the first error.
fn repack_pack<'a>(
    loader: &'a mut Loader,
    number: u32,
    pack: &'a IndexPack,
    live: &'a [Id],
) -> impl Iterator<Item = Result<Repacked>> + 'a {
    let live: HashSet<&Id> = live.iter().collect();
    let mut frames: BTreeMap<u64, Vec<&BlobEntry>> = BTreeMap::new();
    for b in &pack.blobs {
        frames.entry(b.frame.offset).or_default().push(b);
    }
    let kind = pack.kind;
    frames.into_values().filter_map(move |entries| {
        let frame = entries[0].frame;
        if entries.iter().any(|e| e.frame != frame) {
            return Some(Err(Error::Invalid(format!(
                "the index describes the frame at offset {} of pack {} in two ways; run `cairn repair index`",
                frame.offset,
                Repository::pack_path(kind, &pack.id)
            ))));
        }
        let whole = entries.iter().all(|e| live.contains(&e.id));
        let mut blobs: Vec<(Id, u32, u32)> = entries
            .iter()
            .filter(|e| live.contains(&e.id))
            .map(|e| (e.id, e.offset, e.len))
            .collect();
        if blobs.is_empty() {
            return None;
        }
        Some(if whole {
            loader
                .load_frame(number, &frame, &blobs)
                .map(|stored| Repacked::Frame {
                    kind,
                    frame,
                    stored,
                    blobs,
                })
        } else {
            blobs.sort_by_key(|&(_, offset, _)| offset);
            loader
                .load_frame_prefix(number, &frame, &blobs)
                .map(|raw| Repacked::Blobs { kind, raw, blobs })
        })
    })
}

/// Remove the objects of writer leases released or no longer held, and superseded records of
/// held ones (after a prune that ran to its end: one that refuses deletes nothing).
fn remove_spent_leases(repo: &Repository) -> Result<()> {
    for l in lease::list_leases(repo)? {
        if l.path == PRUNE_LEASE {
            continue;
        }
        let over = !l.may_be_held();
        if let (true, false, Ok(r)) = (over, l.released, &l.record) {
            tracing::info!(
                "removing abandoned lease {} of host {} pid {}",
                l.path,
                r.host,
                r.pid
            );
        }
        let remove = if over { &l.objects[..] } else { l.superseded() };
        for path in remove {
            repo.backend().delete(path)?;
        }
    }
    Ok(())
}

/// Sweep every marker no live writer could still be relying on. `known`: index objects
/// already read and the blobs of the snapshots already walked in this run, to be completed
/// with what was stored since rather than read again.
fn sweep(
    repo: &Arc<Repository>,
    report: &mut PruneReport,
    known: Option<(IndexObjects, Referenced)>,
) -> Result<()> {
    let leases = lease::list_leases(repo)?;
    let markers = lease::load_markers(repo)?;
    if markers.is_empty() {
        return Ok(());
    }
    // Every pending marker's packs, swept now or not (only prune, holding its lease, writes
    // markers: the list stays true while this runs).
    let all_condemned: HashSet<Id> = markers
        .iter()
        .flat_map(|(_, m)| m.packs.iter().map(|p| p.id))
        .collect();
    let now = chrono::Utc::now().timestamp();
    let mut ready = Vec::new();
    for (id, marker) in markers {
        let blocker = leases.iter().find_map(|l| match &l.record {
            _ if l.path == PRUNE_LEASE || l.released => None,
            Err(e) => Some(format!("lease {} cannot be read ({e}); delete it if no backup is running", l.path)),
            Ok(r) if r.kind == LeaseKind::Writer && lease::is_held(r) && !r.has_seen(&id) && lease::from_the_future(r) => {
                Some(format!(
                    "{} (a backup on host {}, pid {}) is dated {}s in the future, so it never expires: planted, or that host's clock is wrong; if no backup runs on host {}, delete it",
                    l.path,
                    r.host,
                    r.pid,
                    r.renewed_unix - now,
                    r.host
                ))
            }
            Ok(l) if l.kind == LeaseKind::Writer && lease::is_held(l) && !l.has_seen(&id) => {
                Some(format!(
                    "a backup on host {} (pid {}) started {}s ago and may use these packs; the next prune finishes this",
                    l.host,
                    l.pid,
                    now - l.started_unix
                ))
            }
            Ok(_) => None,
        });
        match blocker {
            Some(why) => report.markers_pending.push((id, why)),
            None => ready.push((id, marker)),
        }
    }
    if ready.is_empty() {
        return Ok(());
    }
    let t = std::time::Instant::now();
    let (objects, earlier) = match known {
        Some((mut objects, used)) => {
            objects.refresh(repo)?;
            (objects, Some(used))
        }
        None => (IndexObjects::load(repo)?, None),
    };
    let walked = earlier
        .as_ref()
        .map(|u| u.snapshots.clone())
        .unwrap_or_default();
    let later = referenced(repo, &walked, || {
        Ok(Arc::new(objects.index(&HashSet::new())?))
    })?;
    let used = |id: &Id| {
        later.blobs.contains(id) || earlier.as_ref().is_some_and(|u| u.blobs.contains(id))
    };
    tracing::debug!(
        "sweep: index loaded and snapshots walked in {:?}",
        t.elapsed()
    );
    // A condemned pack's blobs: as its marker lists them, and as the index objects do while
    // they still list it (read a pack at a time, not held).
    let listed = |p: &IndexPack| -> Result<Option<IndexPack>> {
        match objects.packs.contains_key(&p.id) {
            true => objects.pack(&p.id).map(Some),
            false => Ok(None),
        }
    };
    // The used blobs of the packs the ready markers condemn, and of those, the ones that have
    // a home outside every condemned pack (only these are held, not every indexed blob).
    let mut wanted: HashSet<Id> = HashSet::new();
    for p in ready.iter().flat_map(|(_, marker)| &marker.packs) {
        let indexed = listed(p)?;
        let blobs = p.blobs.iter().chain(indexed.iter().flat_map(|i| &i.blobs));
        wanted.extend(blobs.map(|b| b.id).filter(|id| used(id)));
    }
    let Some(housed) = housed(repo, &objects, &all_condemned, &wanted)? else {
        // Putting the packs back would keep every repacked blob twice: wait for the identity.
        for (id, _) in ready {
            report.markers_pending.push((
                id,
                "blobs a backup used meanwhile are listed in data packs that only the identity \
                 can read to verify; a prune with the identity finishes this"
                    .into(),
            ));
        }
        return Ok(());
    };
    let mut delete = Vec::new();
    let mut rescue = Vec::new();
    for (_, marker) in &ready {
        for p in &marker.packs {
            let indexed = listed(p)?;
            let needed = p
                .blobs
                .iter()
                .chain(indexed.iter().flat_map(|i| i.blobs.iter()))
                .any(|b| wanted.contains(&b.id) && !housed.contains(&b.id));
            if !needed {
                delete.push(p.clone());
            } else if indexed.is_none() {
                rescue.push(p.clone());
            } else {
                report.packs_rescued += 1;
            }
        }
    }
    report.packs_rescued += rescue.len() as u64;
    if !rescue.is_empty() {
        repo.put_index(&IndexRecord { packs: rescue })?;
    }
    let doomed: HashSet<Id> = delete.iter().map(|p| p.id).collect();
    let t = std::time::Instant::now();
    rewrite_index(repo, &objects, &doomed)?;
    tracing::debug!("sweep: index rewritten in {:?}", t.elapsed());
    let t = std::time::Instant::now();
    delete_packs(repo, &delete)?;
    tracing::debug!("sweep: {} packs deleted in {:?}", delete.len(), t.elapsed());
    for p in &delete {
        report.packs_deleted += 1;
        report.bytes_freed += p.size;
    }
    for (id, _) in ready {
        repo.backend().delete(&format!("gc/{id}"))?;
        report.markers_swept.push(id);
    }
    Ok(())
}

/// The `wanted` blobs that a pack outside the `condemned` ones holds. Index objects are
/// unverified claims: a write-key holder can plant one that lists every blob in a junk pack of
/// its own (or in a pack the repack wrote), and trusting it would delete the condemned pack
/// that really holds a blob a backup reused meanwhile. So only the listings of the index
/// objects this prune's repack wrote are trusted; any other counts once the blob is read from
/// where it is listed and hashes to its id (a sweep left to a later prune reads the repacked
/// blobs again). A listing that does not verify (damaged or junk) leaves its blob unhoused, and
/// the condemned pack is kept; storage that fails stops the sweep. None when a listing to read
/// is in a data pack and the repository was opened without the identity.
fn housed(
    repo: &Arc<Repository>,
    objects: &IndexObjects,
    condemned: &HashSet<Id>,
    wanted: &HashSet<Id>,
) -> Result<Option<HashSet<Id>>> {
    let mut housed: HashSet<Id> = wanted
        .iter()
        .filter(|id| objects.own_blobs.binary_search(id).is_ok())
        .copied()
        .collect();
    if housed.len() == wanted.len() {
        return Ok(Some(housed));
    }
    // The other listings of wanted blobs, a pack at a time: each frame read, decompressed up
    // to its last wanted blob and hashed once.
    let t = std::time::Instant::now();
    let (mut read, mut failed) = (0u64, 0u64);
    let mut pack = IndexObjects::buffer();
    for id in objects.ids(condemned) {
        objects.pack_into(&id, &mut pack)?;
        pack.blobs
            .retain(|b| wanted.contains(&b.id) && !housed.contains(&b.id));
        if pack.blobs.is_empty() {
            continue;
        }
        if pack.kind == PackKind::Data && repo.data_identities().is_none() {
            return Ok(None);
        }
        read += pack.blobs.len() as u64;
        let mut one = Index::default();
        one.add_unsealed(&pack, &|_, _| true);
        one.seal_now();
        let mut loader = Loader::new(repo.clone(), Arc::new(one));
        let mut blobs = std::mem::take(&mut pack.blobs);
        blobs.sort_unstable_by_key(|b| (b.frame.offset, b.offset));
        for in_frame in blobs.chunk_by(|a, b| a.frame == b.frame) {
            let listed: Vec<(Id, u32, u32)> =
                in_frame.iter().map(|b| (b.id, b.offset, b.len)).collect();
            match loader.load_frame_prefix(0, &in_frame[0].frame, &listed) {
                Ok(_) => {
                    housed.extend(listed.iter().map(|(id, ..)| *id));
                    continue;
                }
                Err(e) if e.is_storage_failure() => return Err(e),
                Err(_) => {}
            }
            // Blob by blob, for the ones the frame does hold.
            for (id, ..) in &listed {
                match loader.load(id) {
                    Ok(_) => {
                        housed.insert(*id);
                    }
                    Err(e) if e.is_storage_failure() => return Err(e),
                    Err(e) => {
                        failed += 1;
                        tracing::debug!("sweep: blob {id} is not where the index lists it: {e}");
                    }
                }
            }
        }
        pack.blobs = blobs;
    }
    if read > 0 {
        tracing::debug!(
            "sweep: {read} listings outside the condemned packs read in {:?}",
            t.elapsed()
        );
    }
    if failed > 0 {
        tracing::warn!(
            "{failed} listings of blobs that backups use, outside the packs this prune \
             condemned, do not hold them (damaged or planted index listings): the condemned \
             packs that hold them are kept. Run `cairn check --read-data`"
        );
    }
    Ok(Some(housed))
}

/// Replace the index objects by ones without `doomed` packs: new objects first, then the old
/// ones are deleted (concurrent readers always find every live blob).
fn rewrite_index(repo: &Repository, objects: &IndexObjects, doomed: &HashSet<Id>) -> Result<()> {
    if !objects.packs.keys().any(|id| doomed.contains(id)) {
        return Ok(());
    }
    let counted = objects
        .ids(doomed)
        .into_iter()
        .map(|id| (id, objects.entries.listed(&id)));
    crate::index::in_objects(counted, |ids| {
        let packs = ids
            .iter()
            .map(|id| objects.pack(id))
            .collect::<Result<_>>()?;
        repo.put_index(&IndexRecord { packs })?;
        Ok(())
    })?;
    for path in &objects.paths {
        repo.backend().delete(path)?;
    }
    Ok(())
}

/// Delete packs, a few requests at a time.
fn delete_packs(repo: &Repository, packs: &[IndexPack]) -> Result<()> {
    let chunks: Vec<&[IndexPack]> = packs.chunks(packs.len().div_ceil(8).max(1)).collect();
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|chunk| {
                s.spawn(move || {
                    chunk.iter().try_for_each(|p| {
                        repo.backend().delete(&Repository::pack_path(p.kind, &p.id))
                    })
                })
            })
            .collect();
        handles
            .into_iter()
            .try_for_each(|h| h.join().expect("delete thread panicked"))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use cairn_format::snapshot::SnapshotStats;
    use cairn_format::tree::{Node, NodeKind, Tree};

    fn create(dir: &std::path::Path, id: &age::x25519::Identity) -> Arc<Repository> {
        crate::test_repo::create(dir, id, None)
    }

    /// Store `content` as file `name` in a new snapshot, deduplicating against `index`.
    fn snapshot(repo: &Arc<Repository>, index: Index, name: &str, content: &[u8]) -> Id {
        snapshot_of_blobs(repo, index, name, &[content.to_vec()])
    }

    /// [`snapshot`] of a file made of the blobs `chunks`.
    fn snapshot_of_blobs(
        repo: &Arc<Repository>,
        index: Index,
        name: &str,
        chunks: &[Vec<u8>],
    ) -> Id {
        let mut saver = Saver::new(repo.clone(), Arc::new(index), 1);
        let mut node = Node::new(name.as_bytes().to_vec(), NodeKind::File);
        for c in chunks {
            node.content
                .push(saver.add_blob(PackKind::Data, c.clone()).unwrap());
            node.size += c.len() as u64;
        }
        let tree = saver.save_tree(&mut Tree { nodes: vec![node] }).unwrap();
        saver.finish().unwrap();
        commit(repo, tree)
    }

    /// Store a snapshot of the tree `tree`.
    fn commit(repo: &Repository, tree: Id) -> Id {
        crate::test_repo::save_snapshot(repo, tree, 1, SnapshotStats::default())
    }

    /// The first blob of the first file of snapshot `snap`, read through the current index.
    fn first_blob(repo: &Arc<Repository>, snap: &Id) -> Vec<u8> {
        let snap = snapshots::load(repo, snap).unwrap();
        let mut loader = Loader::new(repo.clone(), Arc::new(Index::load(repo).unwrap()));
        let tree = loader.load_tree(&snap.tree).unwrap();
        loader.load(&tree.nodes[0].content[0]).unwrap()
    }

    /// A snapshot of `content` is stored; a backup starts with it in its index; the snapshot is
    /// forgotten and a prune plans and marks its packs; before the sweep, the backup reuses the
    /// condemned blob and commits. Returns the backup's lease (still held), the plan, the
    /// report and the new snapshot.
    fn reused_while_marked(
        repo: &Arc<Repository>,
        content: &[u8],
    ) -> (Lease, Plan, PruneReport, Id) {
        let old = snapshot(repo, Index::default(), "a", content);
        let (lease, index) = Lease::begin_write(repo).unwrap();
        repo.backend().delete(&format!("snapshots/{old}")).unwrap();
        let mut report = PruneReport::default();
        let plan = plan(repo, &PruneOptions::default(), &mut report).unwrap();
        execute(repo, &plan).unwrap().marker.expect("a marker");
        lease.ensure_fresh().unwrap();
        let reused = snapshot(repo, index, "b", content);
        (lease, plan, report, reused)
    }

    fn data_packs(dir: &std::path::Path) -> usize {
        walk(&dir.join("data"))
    }

    fn walk(p: &std::path::Path) -> usize {
        std::fs::read_dir(p).map_or(0, |rd| {
            rd.map(|e| {
                let e = e.unwrap();
                if e.file_type().unwrap().is_dir() {
                    walk(&e.path())
                } else {
                    1
                }
            })
            .sum()
        })
    }

    #[test]
    fn a_running_backup_that_reuses_condemned_data_keeps_it() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let repo = create(dir.path(), &id);
        let content = vec![7u8; 100_000];
        let old = snapshot(&repo, Index::default(), "a", &content);

        // A backup starts (lease, index with the old data), then the old snapshot is forgotten.
        let (lease, index) = Lease::begin_write(&repo).unwrap();
        repo.backend().delete(&format!("snapshots/{old}")).unwrap();
        let first = prune(&repo, &PruneOptions::default()).unwrap();
        assert!(first.marker.is_some());
        assert_eq!(first.markers_pending.len(), 1, "{first:?}");
        assert_eq!(first.packs_deleted, 0);

        // A backup starting now must not reuse the condemned data.
        let (late, late_index) = Lease::begin_write(&repo).unwrap();
        assert!(
            late_index.is_empty(),
            "condemned packs were visible to a new writer"
        );
        drop(late);

        // The running backup reuses the condemned blob and commits.
        lease.ensure_fresh().unwrap();
        let reused = snapshot(&repo, index, "b", &content);
        drop(lease);
        let packs_before = data_packs(dir.path());
        let second = prune(&repo, &PruneOptions::default()).unwrap();
        assert!(second.markers_pending.is_empty(), "{second:?}");
        assert_eq!(second.packs_rescued, 1, "{second:?}");
        assert_eq!(data_packs(dir.path()), packs_before);

        // Everything the new snapshot needs is indexed and readable.
        assert_eq!(first_blob(&repo, &reused), content);
        assert!(lease::load_markers(&repo).unwrap().is_empty());
    }

    /// A long backup writes index objects as it goes; a prune meanwhile condemns its packs
    /// (indexed, referenced by no snapshot yet), and finds them needed once it commits.
    #[test]
    fn a_backup_indexing_as_it_goes_keeps_its_packs_through_a_prune() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let repo = crate::test_repo::create(dir.path(), &id, Some(1 << 20));
        let chunk = |i: u64| -> Vec<u8> {
            let mut s = i.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
            crate::test_repo::noise(&mut s, 200_000)
        };
        let (lease, index) = Lease::begin_write(&repo).unwrap();
        let mut saver = Saver::with_index_flush(repo.clone(), Arc::new(index), 1, 4);
        let mut node = Node::new(b"big".to_vec(), NodeKind::File);
        for i in 0..24 {
            node.content
                .push(saver.add_blob(PackKind::Data, chunk(i)).unwrap());
            node.size += 200_000;
        }
        // Packs of 1 MiB hold 5 such blobs: index objects appear while the save goes on.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while repo.backend().list("index").unwrap().len() < 2 {
            assert!(std::time::Instant::now() < deadline, "no index object yet");
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
        let first = prune(&repo, &PruneOptions::default()).unwrap();
        assert!(first.marker.is_some(), "{first:?}");
        assert_eq!(first.packs_deleted, 0, "{first:?}");

        let tree = saver.save_tree(&mut Tree { nodes: vec![node] }).unwrap();
        let (stats, index_ids) = saver.finish().unwrap();
        assert!(index_ids.len() >= 3, "{index_ids:?}");
        assert_eq!(stats.blobs_added, 25);
        lease.ensure_fresh().unwrap();
        let snap_id = commit(&repo, tree);
        drop(lease);
        let second = prune(&repo, &PruneOptions::default()).unwrap();
        assert!(second.markers_pending.is_empty(), "{second:?}");
        assert!(second.packs_rescued > 0, "{second:?}");

        let snap = snapshots::load(&repo, &snap_id).unwrap();
        let index = Arc::new(Index::load(&repo).unwrap());
        let mut loader = Loader::new(repo.clone(), index);
        let tree = loader.load_tree(&snap.tree).unwrap();
        for (i, blob) in tree.nodes[0].content.iter().enumerate() {
            assert_eq!(loader.load(blob).unwrap(), chunk(i as u64), "blob {i}");
        }
        assert!(lease::load_markers(&repo).unwrap().is_empty());
    }

    /// Plant an index object that lists `content`'s blob in a data pack, as a write-key
    /// holder could: in `pack` (id, size), or else in a junk pack it stores.
    fn plant_claim(repo: &Repository, content: &[u8], pack: Option<(Id, u64)>) {
        let (junk, size) = pack.unwrap_or_else(|| {
            let junk = Id::of_object(b"junk pack");
            let path = Repository::pack_path(PackKind::Data, &junk);
            repo.backend().put(&path, &[0x5a; 100_000]).unwrap();
            (junk, 100_000)
        });
        let len = content.len() as u32;
        let frame = FrameRef {
            offset: 0,
            stored_len: len,
            raw_len: len,
            compression: cairn_format::frame::Compression::None,
        };
        let blob = BlobEntry {
            id: repo.chunk_id_key().id(content),
            frame,
            offset: 0,
            len,
        };
        let pack = IndexPack {
            id: junk,
            kind: PackKind::Data,
            size,
            blobs: vec![blob],
        };
        repo.put_index(&IndexRecord { packs: vec![pack] }).unwrap();
    }

    /// A backup reuses a condemned blob while a prune runs, and an index object planted
    /// meanwhile claims that a junk pack holds it: the sweep, in the same prune or left to the
    /// next, reads the claim, finds it false and keeps the condemned pack.
    #[test]
    fn a_planted_listing_does_not_house_a_reused_blob() {
        for deferred in [false, true] {
            let dir = tempfile::tempdir().unwrap();
            let id = age::x25519::Identity::generate();
            let repo = create(dir.path(), &id);
            let content = vec![9u8; 90_000];
            let (lease, plan, mut report, reused) = reused_while_marked(&repo, &content);
            plant_claim(&repo, &content, None);
            if deferred {
                // The backup is still running at the end of this prune; the next one sweeps.
                sweep(&repo, &mut report, Some((plan.objects, plan.used))).unwrap();
                assert_eq!(report.markers_pending.len(), 1, "{report:?}");
                drop(lease);
                report = prune(&repo, &PruneOptions::default()).unwrap();
            } else {
                drop(lease);
                sweep(&repo, &mut report, Some((plan.objects, plan.used))).unwrap();
            }
            assert!(report.markers_pending.is_empty(), "{report:?}");
            assert_eq!(report.packs_rescued, 1, "deferred {deferred}: {report:?}");
            assert_eq!(first_blob(&repo, &reused), content);
        }
    }

    /// A repository holding `live` in a snapshot, in a pack with `dead`, which no snapshot
    /// uses; the snapshot.
    fn partly_used(repo: &Arc<Repository>, live: &[u8], dead: &[u8]) -> Id {
        let both = snapshot_of_blobs(repo, Index::default(), "a", &[live.to_vec(), dead.to_vec()]);
        let kept = snapshot(repo, Index::load(repo).unwrap(), "b", live);
        repo.backend().delete(&format!("snapshots/{both}")).unwrap();
        kept
    }

    const REPACK_ALL: PruneOptions = PruneOptions {
        max_unused: 0.0,
        dry_run: false,
    };

    /// A listing planted in a pack the repack wrote is read before it counts: the repack's
    /// index objects are trusted, not every listing of its packs.
    #[test]
    fn a_listing_planted_in_a_repacked_pack_is_read_before_it_counts() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let repo = create(dir.path(), &id);
        let mut seed = 11;
        let live = crate::test_repo::noise(&mut seed, 60_000);
        let dead = crate::test_repo::noise(&mut seed, 20_000);
        partly_used(&repo, &live, &dead);
        let (lease, index) = Lease::begin_write(&repo).unwrap();
        let mut report = PruneReport::default();
        let plan = plan(&repo, &REPACK_ALL, &mut report).unwrap();
        let done = execute(&repo, &plan).unwrap();
        let own = done
            .index_objects
            .iter()
            .map(|id| repo.get_meta("index", id, MAX_INDEX_LEN).unwrap())
            .flat_map(|plain| IndexRecord::decode(&plain).unwrap().packs)
            .find(|p| p.kind == PackKind::Data)
            .expect("the repacked data pack");

        // A backup reuses the dead blob; a claim puts it in the repack's pack.
        lease.ensure_fresh().unwrap();
        let reused = snapshot(&repo, index, "c", &dead);
        plant_claim(&repo, &dead, Some((own.id, own.size)));
        drop(lease);
        let mut objects = plan.objects;
        objects.own.extend(done.index_objects);
        sweep(&repo, &mut report, Some((objects, plan.used))).unwrap();
        assert_eq!(report.packs_rescued, 1, "{report:?}");
        assert_eq!(first_blob(&repo, &reused), dead);
    }

    /// A sweep left to the next prune reads the repacked blobs where the repack wrote them,
    /// finds them there, and deletes the packs they came from; without the identity it waits;
    /// where the repacked pack is damaged, it keeps the old one.
    #[test]
    fn a_later_sweep_verifies_the_repacked_blobs_and_deletes_their_old_packs() {
        for damaged in [false, true] {
            a_later_sweep(damaged);
        }
    }

    fn a_later_sweep(damaged: bool) {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let repo = create(dir.path(), &id);
        let mut seed = 7;
        let live = crate::test_repo::noise(&mut seed, 60_000);
        let dead = crate::test_repo::noise(&mut seed, 60_000);
        let kept = partly_used(&repo, &live, &dead);
        let before = repo.backend().list("data").unwrap();

        // A backup runs through the first prune: its sweep waits.
        let lease = Lease::begin_write(&repo).unwrap().0;
        let first = prune(&repo, &REPACK_ALL).unwrap();
        assert_eq!(first.repacked_packs, 1, "{first:?}");
        assert_eq!(first.markers_pending.len(), 1, "{first:?}");
        drop(lease);
        // A prune with a write key cannot read the repacked data: the marker waits for one
        // with the identity (putting the packs back would keep every repacked blob twice).
        let key = cairn_format::keys::write_key_from_text(&repo.write_key_text(None)).unwrap();
        let writer = Repository::open(
            Box::new(crate::backend::LocalBackend::new(dir.path())),
            crate::repo::Credentials::WriteKey(key),
        )
        .unwrap();
        let by_writer = prune(&Arc::new(writer), &PruneOptions::default()).unwrap();
        assert_eq!(by_writer.markers_pending.len(), 1, "{by_writer:?}");
        assert_eq!((by_writer.packs_deleted, by_writer.packs_rescued), (0, 0));
        if damaged {
            for obj in repo.backend().list("data").unwrap() {
                if !before.iter().any(|b| b.path == obj.path) {
                    repo.backend()
                        .put(&obj.path, &vec![0x5a; obj.size as usize])
                        .unwrap();
                }
            }
        }
        // (With the old pack kept, this prune repacks it again and sweeps its own marker.)
        let second = prune(&repo, &PruneOptions::default()).unwrap();
        assert!(
            second.markers_swept.contains(&first.marker.unwrap()),
            "{second:?}"
        );
        assert_eq!(second.packs_rescued, u64::from(damaged), "{second:?}");
        assert!(second.packs_deleted >= 1, "{second:?}");
        assert_eq!(first_blob(&repo, &kept), live);
    }

    #[test]
    fn the_sweep_after_marking_walks_snapshots_committed_since_the_plan() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let repo = create(dir.path(), &id);
        let content = vec![5u8; 80_000];
        let (lease, plan, mut report, reused) = reused_while_marked(&repo, &content);
        assert_eq!(report.unused_packs, 2, "data and tree pack: {report:?}");
        drop(lease);

        // The sweep reuses what the plan read, yet sees the new snapshot and keeps the pack.
        sweep(&repo, &mut report, Some((plan.objects, plan.used))).unwrap();
        assert_eq!(report.markers_swept.len(), 1, "{report:?}");
        assert_eq!(report.packs_rescued, 1, "the data pack: {report:?}");
        assert_eq!(report.packs_deleted, 1, "the old tree pack: {report:?}");
        assert_eq!(first_blob(&repo, &reused), content);
    }

    #[test]
    fn repacking_copies_wholly_live_frames_as_stored_and_rewrites_the_rest() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let repo = create(dir.path(), &id);
        // 4 KiB blobs: 64 to a frame, all in one pack.
        let chunks: Vec<Vec<u8>> = (0..200)
            .map(|i| format!("page {i:04} of the database ").repeat(160)[..4096].into())
            .collect();
        let old = snapshot_of_blobs(&repo, Index::default(), "old", &chunks);
        let before = Index::load(&repo).unwrap();
        let frame_of = |index: &Index, c: &Vec<u8>| index.get(&repo.chunk_id_key().id(c)).unwrap();
        let f0 = frame_of(&before, &chunks[0]);
        assert_eq!((f0.frame.raw_len, f0.offset), (64 * 4096, 0));

        // Keep frame 1 whole, and one blob each of frames 0 and 2.
        let mut kept = vec![chunks[5].clone()];
        kept.extend_from_slice(&chunks[64..128]);
        kept.push(chunks[150].clone());
        let new = snapshot_of_blobs(&repo, Index::load(&repo).unwrap(), "new", &kept);
        repo.backend().delete(&format!("snapshots/{old}")).unwrap();
        let report = prune(
            &repo,
            &PruneOptions {
                max_unused: 0.0,
                ..PruneOptions::default()
            },
        )
        .unwrap();
        assert_eq!(report.repacked_packs, 1, "{report:?}");
        assert_eq!(report.blobs_rewritten, 66, "{report:?}");

        let after = Index::load(&repo).unwrap();
        assert!(!after.contains(&repo.chunk_id_key().id(&chunks[199])));
        let f1 = frame_of(&before, &chunks[64]);
        let (g1, g0) = (frame_of(&after, &chunks[64]), frame_of(&after, &chunks[5]));
        assert_ne!(after.pack(g1.pack).id, before.pack(f1.pack).id, "repacked");
        assert_eq!(
            (g1.frame.stored_len, g1.frame.raw_len, g1.offset),
            (f1.frame.stored_len, f1.frame.raw_len, 0),
            "the wholly live frame is copied as stored"
        );
        assert_eq!(
            g0.frame,
            frame_of(&after, &chunks[150]).frame,
            "single live blobs are compressed together again"
        );
        assert_eq!(g0.frame.raw_len, 2 * 4096);
        let snap = snapshots::load(&repo, &new).unwrap();
        let mut loader = Loader::new(repo.clone(), Arc::new(after));
        let tree = loader.load_tree(&snap.tree).unwrap();
        for (blob, want) in tree.nodes[0].content.iter().zip(&kept) {
            assert_eq!(&loader.load(blob).unwrap(), want);
        }
    }

    /// The walk of several snapshots (on several threads) finds what each walk alone finds.
    #[test]
    fn walking_several_snapshots_at_once_finds_the_union() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let repo = create(dir.path(), &id);
        let mut roots = Vec::new();
        for n in 0..5u8 {
            let chunks: Vec<Vec<u8>> = (0..3u8).map(|c| vec![n * 3 + c; 20_000]).collect();
            let snap = snapshot_of_blobs(&repo, Index::load(&repo).unwrap(), "f", &chunks);
            roots.push(snapshots::load(&repo, &snap).unwrap().tree);
        }
        let index = Arc::new(Index::load(&repo).unwrap());
        let mut loader = Loader::new(repo.clone(), index.clone());
        let all = trees::referenced_blobs(&mut loader, &roots).unwrap();
        let mut want = std::collections::BTreeSet::new();
        for root in &roots {
            let one = trees::referenced_blobs(&mut loader, std::slice::from_ref(root)).unwrap();
            assert_eq!(one.len(), 4, "a tree and three blobs");
            want.extend(one.iter().copied());
        }
        assert_eq!(all.len(), want.len());
        assert!(all.iter().copied().eq(want.iter().copied()));
        // An unreadable tree fails the walk, whichever thread meets it.
        let mut bad = roots.clone();
        bad.insert(2, Id([9; 32]));
        assert!(trees::referenced_blobs(&mut loader, &bad).is_err());
    }

    #[test]
    fn unused_and_unindexed_packs_are_deleted_when_nothing_runs() {
        let dir = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let repo = create(dir.path(), &id);
        let keep = snapshot(&repo, Index::default(), "keep", &[1u8; 50_000]);
        let gone = snapshot(&repo, Index::load(&repo).unwrap(), "gone", &[2u8; 50_000]);
        // An interrupted backup: a pack stored, no index for it.
        let index = Index::load(&repo).unwrap();
        let mut saver = Saver::new(repo.clone(), Arc::new(index), 1);
        saver.add_blob(PackKind::Data, vec![3u8; 50_000]).unwrap();
        let (_, written) = saver.finish().unwrap();
        repo.backend()
            .delete(&format!("index/{}", written[0]))
            .unwrap();
        repo.backend().delete(&format!("snapshots/{gone}")).unwrap();

        let dry = prune(
            &repo,
            &PruneOptions {
                dry_run: true,
                ..PruneOptions::default()
            },
        )
        .unwrap();
        assert!(dry.marker.is_none() && dry.packs_deleted == 0);
        let report = prune(&repo, &PruneOptions::default()).unwrap();
        assert!(report.markers_pending.is_empty(), "{report:?}");
        assert!(report.packs_deleted >= 2, "{report:?}");
        let snap = snapshots::load(&repo, &keep).unwrap();
        let index = Arc::new(Index::load(&repo).unwrap());
        let mut loader = Loader::new(repo.clone(), index);
        let tree = loader.load_tree(&snap.tree).unwrap();
        assert_eq!(
            loader.load(&tree.nodes[0].content[0]).unwrap(),
            vec![1u8; 50_000]
        );
        let again = prune(&repo, &PruneOptions::default()).unwrap();
        assert_eq!(again.packs_deleted, 0, "{again:?}");
        assert!(again.marker.is_none());
    }
}
