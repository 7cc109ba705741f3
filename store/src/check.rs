//! Integrity audits, in layers:
//!
//! - [`check_names`] needs no key: every content-addressed object's bytes must hash (blake3)
//!   to its name, and `config` must decode. This is what an auditor without keys can prove.
//! - [`check_structure`] (write key or identity): key objects match their names, index and
//!   snapshot objects decode, every indexed pack is stored with its indexed size, every
//!   snapshot's trees load and every blob they reference is indexed. A storage failure (an
//!   unreachable server, a refused read) stops the check: it is not damage.
//! - [`check_data`] (identity): selected packs are read whole, their names, age
//!   authentication, trailers and every blob's keyed hash are verified; index entries that
//!   disagree with a pack's trailer are the index's fault, not the pack's.
//!
//! Problems name the object, the cause, what to do, and the snapshots and files affected.

use crate::backend::Backend;
use crate::copy::stored_packs_and_foreign;
use crate::index::{Index, Location, PackInfo};
use crate::lease;
use crate::loader::Loader;
use crate::pack_entries::{PackEntries, PackEntriesBuilder};
use crate::pack_stream;
use crate::partial_index::WHOLE_BELOW;
use crate::repo::Repository;
use crate::{snapshots, trees, Error, Result};
use cairn_format::config::RepoConfig;
use cairn_format::envelope::EnvelopeError;
use cairn_format::pack::{self, PackKind};
use cairn_format::payload::Payload;
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::NodeKind;
use cairn_format::Id;
use std::borrow::Cow;
use std::collections::{HashMap, HashSet};
use std::io::Read;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Files listed per damaged object (the rest are counted).
const MAX_FILES_LISTED: usize = 20;
/// Largest pack read whole by `check_data`.
const MAX_PACK_LEN: u64 = 1 << 30;
/// Threads reading objects from remote storage (requests in flight).
const REMOTE_READERS: usize = 4;

/// Threads reading objects: [`REMOTE_READERS`] for remote storage; one per core (2 to 4)
/// locally, where reading is CPU work and each reader holds a pack's ciphertext and plaintext
/// (up to 2 × 16 MiB).
fn readers(backend: &dyn crate::backend::Backend) -> usize {
    if backend.is_remote() {
        REMOTE_READERS
    } else {
        std::thread::available_parallelism().map_or(2, |n| n.get().clamp(2, 4))
    }
}

/// One damaged or missing object.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Problem {
    /// Object path (or blob id when no object can be named).
    pub object: String,
    /// What is wrong.
    pub cause: String,
    /// What to do.
    pub hint: &'static str,
    /// Snapshots affected.
    pub snapshots: Vec<Id>,
    /// Some affected files (`snapshot-id:/path`), at most `MAX_FILES_LISTED`.
    pub files: Vec<String>,
    /// How many affected files there are in all.
    pub files_affected: u64,
}

impl Problem {
    /// Damage to `object`: what is wrong, and what to do.
    pub fn new(object: impl Into<String>, cause: impl ToString, hint: &'static str) -> Problem {
        Problem {
            object: object.into(),
            cause: cause.to_string(),
            hint,
            snapshots: Vec::new(),
            files: Vec::new(),
            files_affected: 0,
        }
    }
}

/// What a check looked at and found.
#[derive(Debug, Default, Clone)]
pub struct CheckReport {
    /// Only the objects' names were checked (no key given, or the repository could not be
    /// opened).
    pub names_only: bool,
    /// Objects whose names were verified.
    pub objects_named: u64,
    /// Snapshots examined.
    pub snapshots: u64,
    /// Packs in the index.
    pub packs: u64,
    /// Blobs in the index.
    pub blobs: u64,
    /// Packs read by `check_data`.
    pub packs_read: u64,
    /// Bytes read by `check_data` (or by `check_names`).
    pub bytes_read: u64,
    /// Blobs verified by `check_data`.
    pub blobs_verified: u64,
    /// Damage found.
    pub problems: Vec<Problem>,
    /// Intact objects this version cannot read (a newer cairn wrote them): not checked.
    pub unchecked: Vec<Problem>,
    /// Remarks that are not damage (packs awaiting prune, skipped layers).
    pub notes: Vec<String>,
}

const HINT_INDEX: &str = "run `cairn repair index`";
const HINT_SNAPSHOTS: &str =
    "restore what is intact, then run `cairn repair snapshots` to drop what is lost";
/// A pack that is there but damaged: `repair snapshots` counts only packs that are gone.
const HINT_DAMAGED_PACK: &str = "restore what is intact; then move the pack out of the repository (keep it: parts of it may still be read), run `cairn repair index`, and `cairn repair snapshots` to drop what is lost";
const HINT_STRAY: &str = "in no index, so no snapshot is known to use it (planted, damaged after an interrupted backup, or left out by `repair index` as damaged): move it out of the repository, then run `cairn repair snapshots` (which drops what snapshots lose with it) and `cairn prune`";
const HINT_FUTURE: &str = "planted, or written by a host whose clock is wrong (host and key in `cairn snapshots`): fix the clock or inspect the host, then `cairn forget` the snapshot";
const HINT_PLANTED: &str = "a snapshot cairn did not write this way: inspect who wrote it (`cairn snapshots`), then `cairn forget` it";
const HINT_DELETE: &str = "delete the object or restore it from a copy of the repository";
const HINT_FORGET_DAMAGED: &str = "restore it from a copy of the repository, or remove it with `cairn forget ID` (the id is its name; it holds that snapshot's record and nothing else)";
const HINT_NEWER: &str = "a newer cairn wrote it: read this repository with that version (nothing is wrong with the object)";
const HINT_RESTORE: &str =
    "restore it from a copy of the repository (an `init --like` target holds the same config and key objects)";
const HINT_UNINDEXED: &str = "run `cairn repair index` first: stored packs that are in no index may hold it; if it is still missing, restore what is intact, then run `cairn repair snapshots`";

/// Directories whose objects are named by the blake3 of their bytes.
const NAMED_DIRS: [&str; 6] = ["keys", "data", "tree", "index", "snapshots", "gc"];

/// Verify every object's name against its bytes, and that `config` decodes. No key needed.
pub fn check_names(backend: &dyn Backend, report: &mut CheckReport) -> Result<()> {
    match backend.get("config") {
        Ok(b) => {
            if let Err(e) = RepoConfig::decode(&b) {
                report
                    .problems
                    .push(Problem::new("config", e, HINT_RESTORE));
            }
        }
        Err(Error::NotFound { .. }) => {
            return Err(Error::NotARepository {
                location: backend.location(),
            })
        }
        Err(e) => return Err(e),
    }
    let mut objects = Vec::new();
    for dir in NAMED_DIRS {
        objects.extend(backend.list(dir)?);
    }
    let problems = Mutex::new(Vec::new());
    let bytes = AtomicU64::new(0);
    parallel(&objects, readers(backend), |obj| {
        let name = obj.path.rsplit('/').next().unwrap_or_default();
        let Ok(want) = name.parse::<Id>() else {
            problems.lock().expect("lock").push(Problem::new(
                obj.path.clone(),
                "name is not a blake3 id",
                HINT_DELETE,
            ));
            return Ok(());
        };
        let found = hash_object(backend, &obj.path)?;
        bytes.fetch_add(found.1, Ordering::Relaxed);
        if found.0 != want {
            problems.lock().expect("lock").push(Problem::new(
                obj.path.clone(),
                format!(
                    "content does not match its name (blake3 {}, {} bytes): modified or truncated",
                    found.0, found.1
                ),
                hint_for(&obj.path),
            ));
        }
        Ok(())
    })?;
    report.objects_named += objects.len() as u64;
    report.bytes_read += bytes.into_inner();
    report.problems.extend(problems.into_inner().expect("lock"));
    Ok(())
}

fn hint_for(path: &str) -> &'static str {
    match path.split('/').next() {
        Some("index") => HINT_INDEX,
        Some("data" | "tree") => HINT_DAMAGED_PACK,
        Some("keys") => HINT_RESTORE,
        _ => HINT_DELETE,
    }
}

/// blake3 and length of an object, streamed.
fn hash_object(backend: &dyn Backend, path: &str) -> Result<(Id, u64)> {
    let mut reader = backend.open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buf = vec![0u8; 1 << 20];
    let mut len = 0u64;
    loop {
        let n = reader
            .read(&mut buf)
            .map_err(|e| Error::io("reading", path, e))?;
        if n == 0 {
            break;
        }
        hasher.update(&buf[..n]);
        len += n as u64;
    }
    Ok((Id(*hasher.finalize().as_bytes()), len))
}

/// Run `f` over `items` on `threads` threads; the first error stops the rest.
fn parallel<T: Sync>(
    items: &[T],
    threads: usize,
    f: impl Fn(&T) -> Result<()> + Sync,
) -> Result<()> {
    let next = AtomicU64::new(0);
    let first_error = Mutex::new(None);
    std::thread::scope(|s| {
        for _ in 0..threads.min(items.len()) {
            s.spawn(|| loop {
                let i = next.fetch_add(1, Ordering::Relaxed) as usize;
                if i >= items.len() || first_error.lock().expect("lock").is_some() {
                    return;
                }
                if let Err(e) = f(&items[i]) {
                    first_error.lock().expect("lock").get_or_insert(e);
                }
            });
        }
    });
    match first_error.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Which packs `check_data` reads.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Subset {
    /// Every pack.
    All,
    /// The `n`-th of `m` deterministic groups (1-based), by pack id.
    Part(u64, u64),
    /// A random share (0–1) of the packs.
    Fraction(f64),
}

impl Subset {
    fn selects(self, id: &Id) -> bool {
        let key = u64::from_le_bytes(id.0[..8].try_into().expect("8 bytes"));
        match self {
            Subset::All => true,
            Subset::Part(n, m) => key % m == n - 1,
            Subset::Fraction(f) => rand::random::<f64>() < f,
        }
    }
}

/// The structure check's state, shared with the data check.
pub struct Audit {
    repo: Arc<Repository>,
    /// The whole index; or, from a large repository ([`load_index`]), the tree packs' blobs
    /// located and the data packs' blob ids on disk.
    index: Arc<Index>,
    /// Every indexed pack.
    packs: Vec<PackInfo>,
    /// The index is split (see `index`).
    split: bool,
    /// With a split index: each pack's index entries, on disk, for [`check_data`] (set aside
    /// while the index is read when a data check was announced, else read when it runs).
    entries: Option<PackEntries>,
    snapshots: Vec<(Id, Snapshot)>,
    /// Pack → problem number, for packs found missing or damaged.
    bad_packs: HashMap<Id, usize>,
    /// Stored packs that are in no index (a lost index object's blobs may be in them, an
    /// interrupted backup may have left them, or someone planted them).
    unindexed: Vec<PackInfo>,
}

/// The index as the check holds it, every indexed pack, and whether it is split, with (split
/// and `with_entries`) each pack's entries on disk. Index objects adding up to fewer than
/// `whole_below` bytes are loaded whole, as is everything where no temporary file can be made.
/// Above, what the check holds does not grow with the blobs: the tree packs' blobs located
/// (the trees are walked), the data packs' ids in an [`crate::id_file::IdFile`] (every
/// referenced blob is looked up: a bit each in the referenced set) and every pack's entries
/// in a [`PackEntries`] file (`--read-data` reads them a pack at a time).
fn load_index(repo: &Repository, whole_below: u64, with_entries: bool) -> Result<Loaded> {
    let (listed, bytes) = Index::listing(repo)?;
    let index = if bytes >= whole_below {
        if let Some(split) = load_split(repo, with_entries)? {
            return Ok(split);
        }
        Index::load(repo)?
    } else {
        Index::load_listed(repo, &Default::default(), listed)?
    };
    Ok(Loaded {
        packs: index.packs().to_vec(),
        index,
        split: false,
        entries: None,
    })
}

/// What [`load_index`] gives (see [`Audit`]'s fields).
struct Loaded {
    index: Index,
    packs: Vec<PackInfo>,
    split: bool,
    entries: Option<PackEntries>,
}

/// Every pack's index entries set aside in a temporary file, for a data check that was not
/// announced to [`check_structure`].
fn read_entries(repo: &Repository) -> Result<PackEntries> {
    let mut entries = PackEntriesBuilder::new()?;
    Index::load_aside(repo, &|_, _| false, &mut |attempt, p| {
        entries.put(attempt, p);
        Ok(())
    })?;
    entries.finish()
}

/// Data blob ids sorted in memory at once while the index is split (1 MiB; a backup's 4 MiB
/// would be most of what the check adds to reading one index object).
const SPLIT_RUN_IDS: usize = 32 << 10;

/// [`load_index`] split; None where a temporary file fails (logged).
fn load_split(repo: &Repository, with_entries: bool) -> Result<Option<Loaded>> {
    let mut entries = match with_entries.then(PackEntriesBuilder::new).transpose() {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!("{e}: the whole index is held in memory instead");
            return Ok(None);
        }
    };
    // Packs by first listing, as the whole index numbers them; a new listing starts over.
    let mut packs: Vec<PackInfo> = Vec::new();
    let mut known: HashSet<Id> = HashSet::new();
    let mut listing = 1;
    let index = Index::load_split(repo, &HashSet::new(), SPLIT_RUN_IDS, &mut |attempt, p| {
        if attempt != listing {
            listing = attempt;
            packs.clear();
            known.clear();
        }
        if known.insert(p.id) {
            packs.push(PackInfo {
                id: p.id,
                kind: p.kind,
                size: p.size,
            });
        }
        if let Some(e) = entries.as_mut() {
            e.put(attempt, p);
        }
        Ok(())
    })?;
    let Some(index) = index else {
        return Ok(None);
    };
    match entries.map(PackEntriesBuilder::finish).transpose() {
        Ok(entries) => Ok(Some(Loaded {
            index,
            packs,
            split: true,
            entries,
        })),
        Err(e) => {
            tracing::warn!("{e}: the whole index is held in memory instead");
            Ok(None)
        }
    }
}

/// Check index, packs and snapshots. Returns the audit for [`check_data`] and
/// [`Audit::attribute`]. `read_data` says whether [`check_data`] follows: in a large
/// repository the packs' index entries are then set aside as the index is read (else a data
/// check reads the index objects again for them).
pub fn check_structure(
    repo: &Arc<Repository>,
    report: &mut CheckReport,
    read_data: bool,
) -> Result<Audit> {
    check_structure_above(repo, report, WHOLE_BELOW, read_data)
}

/// [`check_structure`], the index split above `whole_below` bytes of index objects.
fn check_structure_above(
    repo: &Arc<Repository>,
    report: &mut CheckReport,
    whole_below: u64,
    read_data: bool,
) -> Result<Audit> {
    check_keys(repo.backend(), report)?;
    let Loaded {
        index,
        packs,
        split,
        entries,
    } = load_index(repo, whole_below, read_data)?;
    for (path, why) in &index.damaged {
        report
            .problems
            .push(Problem::new(path.clone(), why, HINT_INDEX));
    }
    report.packs = packs.len() as u64;
    report.blobs = index.ranks() as u64;
    let (markers, unreadable) = lease::read_markers(repo)?;
    for (path, cause) in unreadable {
        report.problems.push(Problem::new(
            path,
            format!("no readable gc marker: {cause}; backups and prunes stop on it"),
            lease::UNREADABLE_MARKER,
        ));
    }
    let condemned: HashSet<Id> = markers
        .iter()
        .flat_map(|(_, m)| m.packs.iter().map(|p| p.id))
        .collect();
    let (stored, foreign) = stored_packs_and_foreign(repo)?;
    for path in foreign {
        report.problems.push(Problem::new(
            path,
            "name is not a pack id: cairn never writes it (planted, or left by another tool)",
            HINT_DELETE,
        ));
    }
    let mut bad_packs = HashMap::new();
    for info in &packs {
        let path = Repository::pack_path(info.kind, &info.id);
        let cause = match stored.get(&info.id) {
            None if condemned.contains(&info.id) => continue,
            None => "missing from storage".to_string(),
            Some((kind, _)) if *kind != info.kind => format!("stored as a {kind:?} pack"),
            Some((_, size)) if *size != info.size => {
                format!(
                    "{size} bytes stored, {} indexed: truncated or replaced",
                    info.size
                )
            }
            Some(_) => continue,
        };
        bad_packs.insert(info.id, report.problems.len());
        report
            .problems
            .push(Problem::new(path, cause, HINT_DAMAGED_PACK));
    }
    let indexed: HashSet<Id> = packs.iter().map(|p| p.id).collect();
    let unindexed: Vec<PackInfo> = stored
        .iter()
        .filter(|(id, _)| !condemned.contains(id) && !indexed.contains(id))
        .map(|(id, (kind, size))| PackInfo {
            id: *id,
            kind: *kind,
            size: *size,
        })
        .collect();
    if !condemned.is_empty() {
        report.notes.push(format!(
            "{} packs are condemned by a pending prune and will be deleted by the next one",
            condemned.len()
        ));
    }
    let listing = snapshots::list(repo)?;
    for crate::snapshots::Unreadable { path, why, newer } in &listing.unreadable {
        if *newer {
            report
                .unchecked
                .push(Problem::new(path.clone(), why, HINT_NEWER));
            continue;
        }
        let hint = if Repository::id_of_path(path).is_some() {
            HINT_FORGET_DAMAGED
        } else {
            HINT_DELETE
        };
        report.problems.push(Problem::new(path.clone(), why, hint));
    }
    report.snapshots = listing.snapshots.len() as u64;
    let now = snapshots::now_ns();
    for (id, s) in listing
        .snapshots
        .iter()
        .filter(|(_, s)| snapshots::is_future(s, now))
    {
        let mut p = Problem::new(
            format!("snapshots/{id}"),
            format!(
                "dated {}, in the future: it is not taken as latest nor counted by retention",
                chrono::DateTime::from_timestamp_nanos(s.time_ns)
                    .to_rfc3339_opts(chrono::SecondsFormat::Secs, true)
            ),
            HINT_FUTURE,
        );
        p.snapshots.push(*id);
        report.problems.push(p);
    }
    Ok(Audit {
        repo: repo.clone(),
        index: Arc::new(index),
        packs,
        split,
        entries,
        snapshots: listing.snapshots,
        bad_packs,
        unindexed,
    })
}

/// Key objects are what the identity and passphrases open the repository with: each must
/// match its name, and there must be one. Credentials that opened the repository (a write key
/// needs none) do not prove that the others are intact.
fn check_keys(backend: &dyn Backend, report: &mut CheckReport) -> Result<()> {
    let keys = backend.list("keys")?;
    if keys.is_empty() {
        report.problems.push(Problem::new(
            "keys",
            "no key objects: no identity or passphrase can open the repository",
            HINT_RESTORE,
        ));
    }
    for obj in &keys {
        let name = obj.path.rsplit('/').next().unwrap_or_default();
        let (found, len) = hash_object(backend, &obj.path)?;
        if name.parse::<Id>().ok() != Some(found) {
            report.problems.push(Problem::new(
                obj.path.clone(),
                format!(
                    "content does not match its name (blake3 {found}, {len} bytes): modified or truncated"
                ),
                HINT_RESTORE,
            ));
        }
    }
    report.objects_named += keys.len() as u64;
    Ok(())
}

impl Audit {
    /// Walk every snapshot's trees: record unloadable trees and unindexed blobs, and name the
    /// snapshots and files that use any pack found bad. Each snapshot is walked in full only
    /// when something is wrong; otherwise every distinct tree is read once.
    pub fn attribute(&self, report: &mut CheckReport) -> Result<()> {
        let walked = self.walk_trees(trees::walkers())?;
        self.attribute_walked(walked, report)
    }

    /// Read every distinct tree: entry counts beyond the recorded ones, and the blobs
    /// referenced (an error if a tree cannot be read). Needs nothing `check_data` finds, so
    /// it can run beside it. `threads` walk the snapshots.
    fn walk_trees(&self, threads: usize) -> Result<Walked> {
        self.walk_trees_in(&self.index, threads)
    }

    /// [`Audit::walk_trees`] with `index`.
    fn walk_trees_in(&self, index: &Arc<Index>, threads: usize) -> Result<Walked> {
        let roots: Vec<Id> = self.snapshots.iter().map(|(_, s)| s.tree).collect();
        let mut loader = Loader::new(self.repo.clone(), index.clone());
        let problems = self.entry_counts(&mut loader)?;
        let referenced = trees::referenced_blobs_on(&mut loader, &roots, threads);
        Ok(Walked {
            problems,
            referenced,
        })
    }

    /// [`Audit::attribute`] after [`Audit::walk_trees`].
    fn attribute_walked(&self, walked: Walked, report: &mut CheckReport) -> Result<()> {
        let attributed = self.attribute_split(walked, report);
        self.note_unindexed(report);
        attributed
    }

    /// Stored packs in no index: debris of interrupted backups when nothing is missing, else
    /// perhaps what is missing (an index object lost), which prune would delete.
    fn note_unindexed(&self, report: &mut CheckReport) {
        let n = self.unindexed.len();
        if n == 0 {
            return;
        }
        let missing = report
            .problems
            .iter()
            .any(|p| p.object.starts_with("blob ") || p.object.starts_with("tree "));
        let packs = if n == 1 {
            "1 stored pack is".to_string()
        } else {
            format!("{n} stored packs are")
        };
        report.notes.push(if missing {
            format!("{packs} in no index, and snapshots miss data: they may hold it (an index object lost or damaged). Run `cairn repair index` first, and do not prune before it")
        } else {
            format!("{packs} in no index (left by interrupted backups): nothing is lost; `cairn prune` removes them")
        });
    }

    /// [`Audit::attribute_walked`] before the note on unindexed packs.
    fn attribute_split(&self, walked: Walked, report: &mut CheckReport) -> Result<()> {
        if !self.split {
            return self.attribute_in(&self.index, walked, report);
        }
        // A split index: every tree loaded, every referenced blob known and no pack found bad
        // is all there is to know. Otherwise what the problems affect is named as before,
        // with the whole index (the walk again, in case a tree is only in a data pack).
        let clean = self.bad_packs.is_empty()
            && walked
                .referenced
                .as_ref()
                .is_ok_and(|blobs| blobs.unknown() == 0);
        if clean {
            report.problems.extend(walked.problems);
            return Ok(());
        }
        tracing::info!("problems found: loading the whole index to name what they affect");
        let whole = Arc::new(Index::load(&self.repo)?);
        let walked = self.walk_trees_in(&whole, trees::walkers())?;
        self.attribute_in(&whole, walked, report)
    }

    /// [`Audit::attribute_walked`] with the whole index.
    fn attribute_in(
        &self,
        index: &Arc<Index>,
        walked: Walked,
        report: &mut CheckReport,
    ) -> Result<()> {
        report.problems.extend(walked.problems);
        let clean = walked.referenced.is_ok_and(|blobs| {
            blobs.iter().all(|b| {
                index
                    .get(b)
                    .is_some_and(|l| !self.bad_packs.contains_key(&index.pack(l.pack).id))
            })
        });
        if clean {
            return Ok(());
        }
        let mut loader = Loader::new(self.repo.clone(), index.clone());
        let mut missing: HashMap<String, usize> = HashMap::new();
        for (snap_id, snap) in &self.snapshots {
            let mut affected =
                |report: &mut CheckReport, object: String, cause: String, file: String| {
                    let n = match self.problem_for(&object, &mut missing, report, &cause) {
                        Some(n) => n,
                        None => return,
                    };
                    let p = &mut report.problems[n];
                    if p.snapshots.last() != Some(snap_id) {
                        p.snapshots.push(*snap_id);
                    }
                    p.files_affected += 1;
                    if p.files.len() < MAX_FILES_LISTED {
                        p.files.push(format!("{}:{file}", snap_id.short()));
                    }
                };
            let mut visit = |path: &[Vec<u8>], node: &cairn_format::tree::Node| -> Result<bool> {
                let file = display(path);
                for b in node.referenced() {
                    if let Some((object, cause)) = self.blob_problem(index, b) {
                        affected(report, object, cause, file.clone());
                        break;
                    }
                }
                if node.kind == NodeKind::Dir {
                    if let Some(sub) = node.subtree {
                        if let Err(e) = loader.load_tree(&sub) {
                            if e.is_storage_failure() {
                                return Err(e);
                            }
                            let object = self.blame(index, &sub, &e);
                            affected(report, object, e.to_string(), format!("{file}/"));
                            return Ok(false);
                        }
                    }
                }
                Ok(true)
            };
            match trees::walk(
                &mut Loader::new(self.repo.clone(), index.clone()),
                &snap.tree,
                trees::Bounds::of(snap),
                true,
                &mut visit,
            ) {
                Ok(()) => {}
                Err(e) if e.is_storage_failure() => return Err(e),
                Err(e) => {
                    let object = self.blame(index, &snap.tree, &e);
                    affected(report, object, e.to_string(), "/".into());
                }
            }
        }
        Ok(())
    }

    /// Report snapshots whose trees describe more entries than they record: directories
    /// reused under many names, which would make `ls`, `diff` and `restore` run without end
    /// (they refuse such snapshots). Unreadable trees are reported by the walk that follows.
    fn entry_counts(&self, loader: &mut Loader) -> Result<Vec<Problem>> {
        let mut problems = Vec::new();
        for (snap_id, snap) in &self.snapshots {
            let bound = trees::Bounds::of(snap).max_entries;
            match trees::count_entries(loader, &snap.tree) {
                Ok(n) if n > bound => {
                    let mut p = Problem::new(
                        format!("snapshots/{snap_id}"),
                        format!(
                            "its trees describe {} entries where its recorded counts allow at \
                             most {} (directories reused under many names: damaged or planted)",
                            if n == u64::MAX {
                                "over 2^64".to_string()
                            } else {
                                n.to_string()
                            },
                            bound
                        ),
                        HINT_PLANTED,
                    );
                    p.snapshots.push(*snap_id);
                    problems.push(p);
                }
                Err(e) if e.is_storage_failure() => return Err(e),
                _ => {}
            }
        }
        Ok(problems)
    }

    /// The object to name for tree blob `blob`, which could not be loaded with error `e`: the
    /// pack already found bad, else the object the error names (a damaged pack, or the blob
    /// itself when it is in no index or does not decode).
    fn blame(&self, index: &Index, blob: &Id, e: &Error) -> String {
        if let Some((object, _)) = self.blob_problem(index, blob) {
            return object;
        }
        match e {
            Error::Damaged { object, .. }
            | Error::NameMismatch { object, .. }
            | Error::NotFound { object } => object.clone(),
            Error::BlobMismatch { pack, .. } => match index.get(blob) {
                Some(l) => Repository::pack_path(index.pack(l.pack).kind, pack),
                None => format!("tree blob {blob}"),
            },
            Error::BlobMissing(id) => format!("blob {id}"),
            _ => format!("tree blob {blob}"),
        }
    }

    /// The object to blame for an unreadable blob, if any.
    fn blob_problem(&self, index: &Index, blob: &Id) -> Option<(String, String)> {
        match index.get(blob) {
            None => Some((format!("blob {blob}"), "referenced but in no index".into())),
            Some(l) => {
                let p = index.pack(l.pack);
                self.bad_packs
                    .contains_key(&p.id)
                    .then(|| (Repository::pack_path(p.kind, &p.id), String::new()))
            }
        }
    }

    /// The problem entry for `object`, created for blobs and trees not yet reported.
    fn problem_for(
        &self,
        object: &str,
        missing: &mut HashMap<String, usize>,
        report: &mut CheckReport,
        cause: &str,
    ) -> Option<usize> {
        if let Some(id) = pack_id_of(object) {
            if let Some(n) = self.bad_packs.get(&id) {
                return Some(*n);
            }
        }
        let hint = if object.starts_with("blob ") && !self.unindexed.is_empty() {
            HINT_UNINDEXED
        } else {
            HINT_SNAPSHOTS
        };
        Some(*missing.entry(object.to_string()).or_insert_with(|| {
            report.problems.push(Problem::new(object, cause, hint));
            report.problems.len() - 1
        }))
    }
}

fn pack_id_of(object: &str) -> Option<Id> {
    let (dir, rest) = object.split_once('/')?;
    if dir != "data" && dir != "tree" {
        return None;
    }
    Repository::id_of_path(rest)
}

fn display(path: &[Vec<u8>]) -> String {
    let mut s = String::new();
    for c in path {
        s.push('/');
        s.push_str(&String::from_utf8_lossy(c));
    }
    s
}

/// What walking the trees found (see [`Audit::walk_trees`]).
struct Walked {
    problems: Vec<Problem>,
    referenced: Result<crate::blob_set::BlobSet>,
}

/// A pack found bad by `check_data`: id, path, cause, hint.
type BadPack = (Id, String, String, &'static str);

/// Read the selected packs whole and verify name, encryption, trailer and every blob.
pub fn check_data(audit: &mut Audit, subset: Subset, report: &mut CheckReport) -> Result<()> {
    let found = data_problems(audit, subset, report)?;
    audit.add_bad_packs(found, report);
    Ok(())
}

/// [`check_data`] (when `subset` is given) and [`Audit::attribute`], the tree walk running
/// on a thread of its own beside the pack readers (one: they keep the cores busy, and one
/// walker resolves each snapshot's content lists from the previous one's).
pub fn check_data_and_attribute(
    audit: &mut Audit,
    subset: Option<Subset>,
    report: &mut CheckReport,
) -> Result<()> {
    let Some(subset) = subset else {
        return audit.attribute(report);
    };
    let shared = &*audit;
    let (walked, found) = std::thread::scope(|s| {
        let walker = s.spawn(move || shared.walk_trees(1));
        let found = data_problems(shared, subset, report);
        let walked = walker
            .join()
            .unwrap_or_else(|_| Err(Error::Invalid("the tree walk thread panicked".into())));
        (walked, found)
    });
    audit.add_bad_packs(found?, report);
    audit.attribute_walked(walked?, report)
}

/// Verify the selected packs; the bad ones, for [`Audit::add_bad_packs`].
fn data_problems(audit: &Audit, subset: Subset, report: &mut CheckReport) -> Result<Vec<BadPack>> {
    if audit.repo.data_identities().is_none() {
        report.notes.push(
            "data packs were only checked against their names: decrypting them and verifying their blobs needs the identity (a write key cannot read file contents); tree packs were fully verified".into(),
        );
        return check_packs(audit, subset, report, |k| k == PackKind::Tree);
    }
    check_packs(audit, subset, report, |_| true)
}

impl Audit {
    /// Record packs `check_data` found bad, as problems.
    fn add_bad_packs(&mut self, found: Vec<BadPack>, report: &mut CheckReport) {
        for (id, path, cause, hint) in found {
            self.bad_packs.insert(id, report.problems.len());
            report.problems.push(Problem::new(path, cause, hint));
        }
    }
}

/// Verify the selected packs: every pack's name; the ones `decryptable` allows also in full.
fn check_packs(
    audit: &Audit,
    subset: Subset,
    report: &mut CheckReport,
    decryptable: impl Fn(PackKind) -> bool + Sync,
) -> Result<Vec<BadPack>> {
    // Blobs by pack: from the whole index, or read back a pack at a time.
    let mut by_pack: HashMap<Id, Vec<(Id, Location)>> = HashMap::new();
    let unannounced = match (&audit.entries, audit.split) {
        (None, true) => Some(read_entries(&audit.repo)?),
        _ => None,
    };
    if !audit.split {
        for (id, loc) in audit.index.iter() {
            by_pack
                .entry(audit.index.pack(loc.pack).id)
                .or_default()
                .push((*id, loc));
        }
    }
    let entries_of = |info: &PackInfo| -> Result<Cow<'_, [(Id, Location)]>> {
        let Some(file) = audit.entries.as_ref().or(unannounced.as_ref()) else {
            return Ok(Cow::Borrowed(
                by_pack.get(&info.id).map_or(&[][..], Vec::as_slice),
            ));
        };
        let located = file.entries(&info.id)?.into_iter().map(|b| {
            let loc = Location {
                pack: 0,
                frame: b.frame,
                offset: b.offset,
                len: b.len,
            };
            (b.id, loc)
        });
        Ok(Cow::Owned(located.collect()))
    };
    let mut packs: Vec<&PackInfo> = audit
        .packs
        .iter()
        .filter(|p| !audit.bad_packs.contains_key(&p.id) && subset.selects(&p.id))
        .collect();
    // Largest first: the readers end together instead of one reading a large pack alone.
    packs.sort_by_key(|p| std::cmp::Reverse(p.size));
    let found = Mutex::new(Vec::new());
    let (bytes, blobs, read) = (AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0));
    let repo = &audit.repo;
    parallel(&packs, readers(repo.backend()), |info| {
        let info = *info;
        let path = Repository::pack_path(info.kind, &info.id);
        let entries = entries_of(info)?;
        match verify_pack(repo, &path, info, &entries, decryptable(info.kind)) {
            Ok(count) => {
                blobs.fetch_add(count, Ordering::Relaxed);
                bytes.fetch_add(info.size, Ordering::Relaxed);
                read.fetch_add(1, Ordering::Relaxed);
            }
            Err(PackError::Damaged(cause)) => {
                found
                    .lock()
                    .expect("lock")
                    .push((info.id, path, cause, HINT_DAMAGED_PACK))
            }
            Err(PackError::Index(cause)) => found
                .lock()
                .expect("lock")
                .push((info.id, path, cause, HINT_INDEX)),
            Err(PackError::Storage(e)) => return Err(e),
        }
        Ok(())
    })?;
    // Packs in no index are read too: nothing uses them, but one that does not verify was
    // planted or damaged, and `repair index` would otherwise be the first to trip over it.
    let unindexed: Vec<&PackInfo> = audit
        .unindexed
        .iter()
        .filter(|p| subset.selects(&p.id))
        .collect();
    parallel(&unindexed, readers(repo.backend()), |info| {
        let path = Repository::pack_path(info.kind, &info.id);
        match verify_pack(repo, &path, info, &[], decryptable(info.kind)) {
            Ok(_) => {
                bytes.fetch_add(info.size, Ordering::Relaxed);
                read.fetch_add(1, Ordering::Relaxed);
            }
            Err(PackError::Damaged(cause) | PackError::Index(cause)) => {
                found.lock().expect("lock").push((
                    info.id,
                    path,
                    format!("in no index, and {cause}"),
                    HINT_STRAY,
                ))
            }
            Err(PackError::Storage(e)) => return Err(e),
        }
        Ok(())
    })?;
    report.packs_read += read.into_inner();
    report.bytes_read += bytes.into_inner();
    report.blobs_verified += blobs.into_inner();
    Ok(found.into_inner().expect("lock"))
}

enum PackError {
    /// The pack itself is damaged.
    Damaged(String),
    /// The pack is intact but the index disagrees with its trailer: the index is wrong.
    Index(String),
    /// Storage could not be read.
    Storage(Error),
}

/// Verify one pack (only its name unless `decrypt`); returns the number of blobs checked.
fn verify_pack(
    repo: &Repository,
    path: &str,
    info: &PackInfo,
    entries: &[(Id, Location)],
    decrypt: bool,
) -> std::result::Result<u64, PackError> {
    if info.size > MAX_PACK_LEN {
        return Err(PackError::Damaged(format!(
            "indexed size {} is implausible",
            info.size
        )));
    }
    if decrypt {
        let window = if repo.backend().is_remote() {
            pack_stream::REMOTE_WINDOW
        } else {
            pack_stream::LOCAL_WINDOW
        };
        // An intact pack is verified frame by frame; one that is not is read again whole
        // below, which names the cause.
        match pack_stream::verify(repo, path, info, entries, window) {
            Ok(Some(blobs)) => return Ok(blobs),
            Ok(None) => {}
            Err(e) => return Err(PackError::Storage(e)),
        }
    }
    BUFFERS.with_borrow_mut(|ct| {
        repo.backend().get_into(path, ct).map_err(|e| match e {
            Error::NotFound { .. } => PackError::Damaged("missing from storage".into()),
            e => PackError::Storage(e),
        })?;
        if Id::of_object(ct) != info.id {
            return Err(PackError::Damaged("content does not match its name".into()));
        }
        if !decrypt {
            return Ok(0);
        }
        let ids = repo
            .pack_identities(info.kind)
            .map_err(PackError::Storage)?;
        // Decrypted where it was read: the plaintext ends up at the start of the payload.
        let undecryptable =
            |e: EnvelopeError| PackError::Damaged(format!("cannot be decrypted: {e}"));
        let payload = Payload::open(&mut &ct[..], ct.len() as u64, &ids).map_err(undecryptable)?;
        let chunks = payload
            .chunks_for(0..payload.len())
            .ok_or_else(|| PackError::Damaged("cannot be decrypted: no payload".into()))?;
        let stored = chunks.stored.start as usize..chunks.stored.end as usize;
        let n = payload
            .decrypt_in_place(&mut ct[stored.clone()], chunks.first)
            .map_err(undecryptable)?;
        verify_plaintext(repo, &ct[stored.start..stored.start + n], entries)
    })
}

thread_local! {
    /// Each pack reader's buffer, reused from pack to pack (a fresh 16 MiB buffer per pack
    /// costs as many page faults as its pages); packs are decrypted in it, in place.
    static BUFFERS: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Verify a decrypted pack: trailer, and every indexed blob in `entries` against it and its id.
fn verify_plaintext(
    repo: &Repository,
    plain: &[u8],
    entries: &[(Id, Location)],
) -> std::result::Result<u64, PackError> {
    let trailer =
        pack::parse_pack(plain).map_err(|e| PackError::Damaged(format!("trailer: {e}")))?;
    let in_trailer: HashSet<Id> = trailer.blobs.iter().map(|b| b.id).collect();
    let trailer_entries: HashSet<&pack::BlobEntry> = trailer.blobs.iter().collect();
    let key = repo.chunk_id_key();
    let mut entries = entries.to_vec();
    entries.sort_by_key(|(_, l)| (l.frame.offset, l.offset));
    for (id, loc) in &entries {
        if !in_trailer.contains(id) {
            return Err(PackError::Index(format!(
                "indexed blob {id} is not in the pack's trailer: the index is wrong, the pack may be intact"
            )));
        }
        let indexed = pack::BlobEntry {
            id: *id,
            frame: loc.frame,
            offset: loc.offset,
            len: loc.len,
        };
        if !trailer_entries.contains(&indexed) {
            return Err(PackError::Index(format!(
                "the index places blob {id} elsewhere than the pack's trailer does: the index is wrong, the pack may be intact"
            )));
        }
    }
    // One frame decompressed at a time, its blobs hashed together (equal pages side by side).
    let mut held = Vec::new();
    for in_frame in entries.chunk_by(|(_, a), (_, b)| a.frame == b.frame) {
        let f = in_frame[0].1.frame;
        let raw = pack::read_frame(plain, &f)
            .map_err(|e| PackError::Damaged(format!("frame at {}: {e}", f.offset)))?;
        held.clear();
        key.holds(
            &raw,
            in_frame.iter().map(|(id, l)| (id, l.offset, l.len)),
            &mut held,
        );
        if let Some(((id, loc), _)) = in_frame.iter().zip(&held).find(|(_, held)| !**held) {
            let within = (loc.offset as usize).saturating_add(loc.len as usize) <= raw.len();
            return Err(PackError::Damaged(if within {
                format!("blob {id} does not match its id")
            } else {
                format!("blob {id} lies outside its frame")
            }));
        }
    }
    Ok(entries.len() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saver::Saver;
    use cairn_format::snapshot::SnapshotStats;
    use cairn_format::tree::{Node, Tree};

    /// Snapshots of one file each, over data packs of 1 MiB, one index object per save; the
    /// third file shares the first one's blobs.
    fn repo(dir: &std::path::Path) -> (Arc<Repository>, Vec<Vec<Id>>) {
        let identity = age::x25519::Identity::generate();
        let repo = crate::test_repo::create(dir, &identity, Some(1 << 20));
        let mut noise = 0x9e37_79b9_7f4a_7c15u64;
        let mut files: Vec<Vec<Id>> = Vec::new();
        for f in 0..3u32 {
            let mut saver = Saver::new(repo.clone(), Arc::new(Index::load(&repo).unwrap()), 2);
            let mut node = Node::new(format!("f{f}").into_bytes(), NodeKind::File);
            if f == 2 {
                node.content = files[0].clone();
            }
            for i in 0..150u32 {
                let blob = if i % 2 == 0 {
                    crate::test_repo::noise(&mut noise, 20_000)
                } else {
                    format!("{f} {i} ").repeat(300).into_bytes()
                };
                node.content
                    .push(saver.add_blob(PackKind::Data, blob).unwrap());
            }
            files.push(node.content.clone());
            let tree = saver.save_tree(&mut Tree { nodes: vec![node] }).unwrap();
            saver.finish().unwrap();
            let stats = SnapshotStats {
                files: 1,
                ..SnapshotStats::default()
            };
            crate::test_repo::save_snapshot(&repo, tree, 1 + i64::from(f), stats);
        }
        (repo, files)
    }

    /// `check` (with `--read-data` if `read_data`), the index split (or not) whatever its
    /// size, the data check announced to the structure pass (or not); problems in a stable
    /// order.
    fn check(repo: &Arc<Repository>, split: bool, read_data: bool, announced: bool) -> CheckReport {
        let mut report = CheckReport::default();
        let whole_below = if split { 0 } else { u64::MAX };
        let mut audit = check_structure_above(repo, &mut report, whole_below, announced).unwrap();
        assert_eq!(audit.split, split);
        assert_eq!(audit.entries.is_some(), split && announced);
        let subset = read_data.then_some(Subset::All);
        check_data_and_attribute(&mut audit, subset, &mut report).unwrap();
        report.problems.sort_by(|a, b| a.object.cmp(&b.object));
        report
    }

    fn same(repo: &Arc<Repository>, read_data: bool) -> CheckReport {
        let whole = check(repo, false, read_data, read_data);
        for announced in [read_data, false] {
            let split = check(repo, true, read_data, announced);
            assert_eq!(split.problems, whole.problems);
            assert_eq!(split.unchecked, whole.unchecked);
            assert_eq!(split.notes, whole.notes);
            assert_eq!(
                (split.packs, split.blobs, split.snapshots),
                (whole.packs, whole.blobs, whole.snapshots)
            );
            assert_eq!(
                (split.packs_read, split.bytes_read, split.blobs_verified),
                (whole.packs_read, whole.bytes_read, whole.blobs_verified)
            );
        }
        whole
    }

    fn data_pack_of(repo: &Repository, blob: &Id) -> String {
        let index = Index::load(repo).unwrap();
        let loc = index.get(blob).unwrap();
        let p = index.pack(loc.pack);
        Repository::pack_path(p.kind, &p.id)
    }

    #[test]
    fn a_snapshot_a_newer_cairn_wrote_is_not_damage() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, _) = repo(dir.path());
        let mut record =
            crate::test_repo::snapshot_of(Id([7; 32]), 9, SnapshotStats::default()).encode();
        assert_eq!(&record[..8], b"cairnS\x01\x00", "snapshot record header");
        record[6] = 2;
        let newer = format!("snapshots/{}", repo.put_meta("snapshots", &record).unwrap());
        let r = same(&repo, true);
        assert!(r.problems.is_empty(), "{:?}", r.problems);
        assert_eq!(r.unchecked.len(), 1, "{r:?}");
        assert_eq!(
            (r.unchecked[0].object.as_str(), r.unchecked[0].hint),
            (newer.as_str(), HINT_NEWER)
        );
        // It may be the newest: `latest` is refused, with the upgrade as the way out.
        let e = snapshots::resolve(&repo, snapshots::LATEST, &snapshots::Filter::default())
            .unwrap_err();
        assert!(
            matches!(&e, Error::LatestUnknown { newer: true, object, .. } if *object == newer),
            "{e}"
        );
        let msg = e.to_string();
        assert!(
            msg.contains("newer cairn") && !msg.contains("forget") && !msg.contains("damage"),
            "{e}"
        );
        assert!(!r.unchecked[0].cause.contains("damage"), "{r:?}");
        // Damage beside it is what `latest` names, though listed after it (names sort), and
        // what `check` lists.
        let damaged = format!("snapshots/{}", "f".repeat(64));
        repo.backend().put(&damaged, b"not a record").unwrap();
        let r = same(&repo, false);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert_eq!(r.problems[0].object, damaged);
        let e = snapshots::resolve(&repo, snapshots::LATEST, &snapshots::Filter::default())
            .unwrap_err();
        assert!(
            matches!(&e, Error::LatestUnknown { newer: false, object, more: 1, .. } if *object == damaged),
            "{e}"
        );
    }

    #[test]
    fn a_split_index_finds_what_the_whole_one_does() {
        let dir = tempfile::tempdir().unwrap();
        let (repo, files) = repo(dir.path());
        for read_data in [false, true] {
            let r = same(&repo, read_data);
            assert!(r.problems.is_empty(), "{:?}", r.problems);
            assert!(r.packs > 6 && r.blobs > 300, "{r:?}");
        }
        assert_eq!(same(&repo, true).blobs_verified, same(&repo, true).blobs);

        // A flipped byte in a data pack of the first file: found by --read-data only, and
        // named with the two snapshots that use it.
        let flipped = data_pack_of(&repo, &files[0][10]);
        let path = dir.path().join(&flipped);
        let mut bytes = std::fs::read(&path).unwrap();
        let mid = bytes.len() / 2;
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(same(&repo, false).problems.is_empty());
        let r = same(&repo, true);
        assert_eq!(r.problems.len(), 1, "{:?}", r.problems);
        assert_eq!(r.problems[0].object, flipped);
        assert_eq!(r.problems[0].snapshots.len(), 2, "{:?}", r.problems);
        bytes[mid] ^= 1;
        std::fs::write(&path, &bytes).unwrap();

        // A truncated data pack of the second file, and a missing one of the first.
        let truncated = data_pack_of(&repo, &files[1][3]);
        let path = dir.path().join(&truncated);
        let len = std::fs::metadata(&path).unwrap().len();
        std::fs::OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(len - 1)
            .unwrap();
        let missing = data_pack_of(&repo, &files[0][140]);
        std::fs::remove_file(dir.path().join(&missing)).unwrap();
        for read_data in [false, true] {
            let r = same(&repo, read_data);
            let objects: Vec<&str> = r.problems.iter().map(|p| p.object.as_str()).collect();
            assert!(objects.contains(&truncated.as_str()), "{objects:?}");
            assert!(objects.contains(&missing.as_str()), "{objects:?}");
            assert!(r.problems.iter().all(|p| p.files_affected > 0), "{r:?}");
        }

        // An index object gone: its blobs are referenced but in no index, its packs stored
        // but unindexed.
        let index_objects = repo.backend().list("index").unwrap();
        std::fs::remove_file(dir.path().join(&index_objects[0].path)).unwrap();
        for read_data in [false, true] {
            let r = same(&repo, read_data);
            assert!(!r.problems.is_empty() && !r.notes.is_empty(), "{r:?}");
        }
    }
}
