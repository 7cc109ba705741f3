//! Copying snapshots between repositories that share keys (`init --like`), as ciphertext.
//!
//! Because both repositories hold the same chunk-id key and recipients, a pack, a snapshot
//! object and a blob id mean the same thing in both: packs are moved as stored bytes, without
//! decrypting them, so a write key suffices. Order: packs, then an index covering them, then the
//! snapshot objects; an interrupted copy leaves only packs, which the next run finds (by
//! listing the destination) and adopts instead of sending again.

use crate::entry_file::EntryFileBuilder;
use crate::index::{InObjects, Index};
use crate::lease::Lease;
use crate::loader::Loader;
use crate::pack_sink::PackSink;
use crate::partial_index::Spilled;
use crate::record_sort::Sorter;
use crate::repo::Repository;
use crate::trees;
use crate::{Error, Result};
use cairn_format::index::{IndexPack, IndexRecord};
use cairn_format::pack::PackKind;
use cairn_format::snapshot::Snapshot;
use cairn_format::Id;
use std::collections::{HashMap, HashSet};
use std::io::{Read, Write};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

/// Packs transferred at once, at most.
const PARALLEL_PACKS: usize = 4;
/// Memory for packs in transit where each is held whole (to or from object stores): 2 packs
/// of the default 16 MiB.
const TRANSIT_BYTES: u64 = 40 << 20;
/// Bytes read at a time from a local source pack streamed into a staged object.
const STREAM_PIECE: usize = 256 << 10;

/// What a copy did.
#[derive(Debug, Default, Clone)]
pub struct CopyReport {
    /// Snapshots written to the destination.
    pub snapshots_copied: Vec<Id>,
    /// Snapshots the destination already had.
    pub snapshots_present: Vec<Id>,
    /// Packs sent.
    pub packs_copied: u64,
    /// Bytes sent.
    pub bytes_copied: u64,
    /// Packs found at the destination from an earlier, interrupted copy and indexed now.
    pub packs_adopted: u64,
    /// Blobs the destination already had.
    pub blobs_present: u64,
    /// Snapshots not copied because something they need is damaged at the source, with why.
    pub snapshots_failed: Vec<(Id, String)>,
}

/// Refuse to copy between repositories that do not share keys.
pub fn check_compatible(src: &Repository, dst: &Repository) -> Result<()> {
    let same = src.config().repo_id == dst.config().repo_id
        && src.write_key_text(None) == dst.write_key_text(None)
        && src.config().chunker == dst.config().chunker;
    if same {
        Ok(())
    } else {
        Err(Error::Invalid(format!(
            "{} was not created with `cairn init --like {}`: copy moves encrypted packs unchanged and needs both repositories to share keys and chunker parameters",
            dst.backend().location(),
            src.backend().location()
        )))
    }
}

/// Stored packs: id → (kind, size).
pub type StoredPacks = HashMap<Id, (PackKind, u64)>;

/// The packs stored in a repository (listing `data/` and `tree/`): id → (kind, size).
pub fn stored_packs(repo: &Repository) -> Result<StoredPacks> {
    Ok(stored_packs_and_foreign(repo)?.0)
}

/// [`stored_packs`], and the objects in `data/` and `tree/` whose names are no pack id (never
/// written by cairn: planted, or left by another tool).
pub fn stored_packs_and_foreign(repo: &Repository) -> Result<(StoredPacks, Vec<String>)> {
    let mut out = HashMap::new();
    let mut foreign = Vec::new();
    for kind in [PackKind::Data, PackKind::Tree] {
        for obj in repo.backend().list(kind.dir())? {
            match Repository::id_of_path(&obj.path) {
                Some(id) => {
                    out.insert(id, (kind, obj.size));
                }
                None => foreign.push(obj.path),
            }
        }
    }
    Ok((out, foreign))
}

/// Copy `snaps` from `src` to `dst`. `progress` gets the bytes of each pack sent.
pub fn copy(
    src: &Arc<Repository>,
    dst: &Arc<Repository>,
    snaps: &[(Id, Snapshot)],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<CopyReport> {
    check_compatible(src, dst)?;
    let mut report = CopyReport::default();
    let mut todo = Vec::new();
    for (id, s) in snaps {
        if dst.backend().exists(&format!("snapshots/{id}"))? {
            report.snapshots_present.push(*id);
        } else {
            todo.push((*id, s.clone()));
        }
    }
    if todo.is_empty() {
        return Ok(report);
    }
    match copy_set(src, dst, &todo, progress, &mut report) {
        Ok(()) => Ok(report),
        // One damaged object of the source must not keep every other snapshot from its copy:
        // each is tried alone (what was sent already is adopted), and those that need it are
        // named. Damage at the destination, or any other failure, stops the copy.
        Err(Failed::Source(e)) if is_damage(&e) && todo.len() > 1 => {
            tracing::warn!(
                "{e}; copying the snapshots one at a time, to copy those that do not need it"
            );
            for snap in &todo {
                if report.snapshots_copied.contains(&snap.0) {
                    continue;
                }
                match copy_set(src, dst, std::slice::from_ref(snap), progress, &mut report) {
                    Ok(()) => {}
                    Err(Failed::Source(e)) if is_damage(&e) => {
                        report.snapshots_failed.push((snap.0, e.to_string()))
                    }
                    Err(f) => return Err(f.into()),
                }
            }
            Ok(report)
        }
        Err(f) => Err(f.into()),
    }
}

/// Why [`copy_set`] failed: reading the source, or anything else (the destination, its lease).
enum Failed {
    Source(Error),
    Other(Error),
}

impl From<Failed> for Error {
    fn from(f: Failed) -> Error {
        match f {
            Failed::Source(e) | Failed::Other(e) => e,
        }
    }
}

/// An object that does not hold what its name says, or cannot be decoded, or a blob missing.
fn is_damage(e: &Error) -> bool {
    e.is_damage() || matches!(e, Error::BlobMissing(_))
}

/// Copy `todo` (snapshots the destination lacks) in one go, adding to `report`.
fn copy_set(
    src: &Arc<Repository>,
    dst: &Arc<Repository>,
    todo: &[(Id, Snapshot)],
    progress: &(dyn Fn(u64) + Sync),
    report: &mut CopyReport,
) -> Result<(), Failed> {
    let roots: Vec<Id> = todo.iter().map(|(_, s)| s.tree).collect();
    let (lease, dst_index) = Lease::begin_write(dst).map_err(Failed::Other)?;
    let Selection {
        index: src_index,
        spilled,
        packs,
        present,
    } = select(src, &roots, &dst_index).map_err(Failed::Source)?;
    report.blobs_present += present;
    if let Some(n) = packs
        .iter()
        .find(|n| lease.condemned().contains(&src_index.pack(**n).id))
    {
        return Err(Failed::Other(Error::Invalid(format!(
            "pack {} is condemned by a pending prune of {}; run `cairn prune` there first, then copy again",
            src_index.pack(*n).id,
            dst.backend().location()
        ))));
    }
    let present = stored_packs(dst).map_err(Failed::Other)?;
    // A pack already at the destination with the right size is adopted; one of another size
    // (a damaged leftover) is sent again over it.
    let (adopt, send): (Vec<u32>, Vec<u32>) = packs.iter().partition(|n| {
        let info = src_index.pack(**n);
        present
            .get(&info.id)
            .is_some_and(|(_, size)| *size == info.size)
    });
    report.packs_adopted += adopt.len() as u64;
    // Writes are creates that keep what a name already holds: a damaged leftover must go
    // first, which needs credentials that may delete.
    for n in &send {
        let info = src_index.pack(*n);
        if let Some((_, size)) = present.get(&info.id) {
            let path = Repository::pack_path(info.kind, &info.id);
            dst.backend().delete(&path).map_err(|e| {
                Failed::Other(Error::Invalid(format!(
                    "{path} at {} is damaged ({size} bytes, {} expected) and could not be removed to send it again: {e}; remove it with credentials that may delete (or run `cairn prune` there), then copy again",
                    dst.backend().location(),
                    info.size
                )))
            })?;
        }
    }
    // The index entries the destination gets must be the packs' own: an index object can
    // be a planted claim, and following it would send a pack that does not hold the data.
    let records = src_index.records_for(&packs);
    check_listings(src, &records, spilled.as_ref(), &src_index, &packs).map_err(Failed::Source)?;
    // A pack's bytes are checked against its name before they are sent: damage found here
    // is the source's (writing to the destination fails as storage, not as damage).
    let sent = send_packs(src, dst, &src_index, &send, progress).map_err(Failed::Source)?;
    report.packs_copied += send.len() as u64;
    report.bytes_copied += sent;
    write_index(dst, records, &src_index, spilled.as_ref(), &packs).map_err(Failed::Other)?;
    lease.ensure_fresh().map_err(Failed::Other)?;
    for (id, _) in todo {
        let path = format!("snapshots/{id}");
        let bytes = src.backend().get(&path).map_err(Failed::Source)?;
        verify_name(&path, id, &bytes).map_err(Failed::Source)?;
        dst.backend().put(&path, &bytes).map_err(Failed::Other)?;
        report.snapshots_copied.push(*id);
    }
    Ok(())
}

/// What a copy sends: the packs holding the blobs it needs that the destination lacks.
struct Selection {
    /// The source's tree packs' blobs (all its blobs without `spilled`); every pack numbered.
    index: Index,
    /// The source's data packs' index entries, on disk.
    spilled: Option<Spilled>,
    /// The packs to send or adopt (numbers in `index`).
    packs: HashSet<u32>,
    /// Blobs needed that the destination has.
    present: u64,
}

/// What the temporary files of a copy hold, for errors.
const TEMPORARY: &str = "the blobs a copy needs";

/// The packs of `src` holding the blobs below `roots` that `dst_index` lacks, found without
/// a per-blob structure in memory: the tree packs' blobs are in memory, the data blobs' ids
/// reached are sorted on disk and read beside the source's data entries, sorted by id on disk
/// too. Where the entries cannot be set aside (a full TMPDIR, logged), the source's whole
/// index is loaded instead. Fails on a blob neither repository has.
fn select(src: &Arc<Repository>, roots: &[Id], dst_index: &Index) -> Result<Selection> {
    let (index, spilled) = crate::partial_index::trees_and_spill(src)?;
    let index = Arc::new(match spilled {
        Some(_) => index,
        None => {
            drop(index);
            Index::load(src)?
        }
    });
    let (mut packs, present) = (HashSet::new(), std::cell::Cell::new(0u64));
    let is_present = |id: &Id| {
        let there = dst_index.contains(id);
        present.set(present.get() + u64::from(there));
        there
    };
    // Without the entries aside, every blob the source has is located in `index`.
    let mut wanted = spilled.as_ref().map(|_| Sorter::new(TEMPORARY));
    let mut loader = Loader::new(src.clone(), index.clone());
    trees::each_reachable(
        &mut loader,
        roots,
        |id| {
            if !is_present(&id) {
                let loc = index.get(&id).ok_or(Error::BlobMissing(id))?;
                packs.insert(loc.pack);
            }
            Ok(())
        },
        |ids| match wanted.as_mut() {
            Some(w) => ids.iter().try_for_each(|id| w.push(*id)),
            None => match ids.iter().find(|id| !is_present(id)) {
                Some(id) => Err(Error::BlobMissing(*id)),
                None => Ok(()),
            },
        },
    )?;
    drop(loader);
    let mut index = Arc::try_unwrap(index)
        .map_err(|_| Error::Invalid("the tree index is still in use".into()))?;
    if let (Some(spilled), Some(wanted)) = (&spilled, wanted) {
        // Sorted first: one sort's run in memory at a time.
        let mut wanted = wanted.finish()?;
        let mut entries = EntryFileBuilder::new()?;
        spilled.replay(|p| {
            let number = index.number(p);
            p.blobs.iter().try_for_each(|b| entries.push(number, b))
        })?;
        let entries = entries.finish()?;
        let mut reader = entries.reader();
        let (mut entry, mut last) = (reader.next_entry()?, None);
        while let Some(id) = wanted.next_record()? {
            if last.replace(id) == Some(id) {
                continue;
            }
            if is_present(&id) {
                continue;
            }
            while entry.as_ref().is_some_and(|(e, _)| *e < id) {
                entry = reader.next_entry()?;
            }
            match &entry {
                Some((e, loc)) if *e == id => packs.insert(loc.pack),
                _ => return Err(Error::BlobMissing(id)),
            };
        }
    }
    Ok(Selection {
        index,
        spilled,
        packs,
        present: present.get(),
    })
}

/// Write the destination's index records for `packs` (by number in `index`; the data packs'
/// entries are read from `spilled` when set aside) as index objects of at most
/// [`INDEX_FLUSH_BLOBS`](crate::saver::INDEX_FLUSH_BLOBS) blobs each (a pack holding more goes
/// alone), as a backup writes them: what is held at once stays bounded.
fn write_index(
    dst: &Repository,
    records: Vec<IndexPack>,
    index: &Index,
    spilled: Option<&Spilled>,
    packs: &HashSet<u32>,
) -> Result<()> {
    let mut objects = InObjects::new(|group: Vec<IndexPack>| {
        dst.put_index(&IndexRecord { packs: group }).map(drop)
    });
    // The packs whose blobs `index` holds (all of them without `spilled`).
    for p in records {
        let blobs = p.blobs.len();
        objects.push(p, blobs)?;
    }
    if let Some(spilled) = spilled {
        spilled.replay(|p| match index.pack_number(&p.id) {
            Some(n) if packs.contains(&n) => objects.push(p.clone(), p.blobs.len()),
            _ => Ok(()),
        })?;
    }
    objects.finish()
}

/// Check that each pack's own trailer holds every entry the source index gives it (`records`,
/// and the data packs' entries set aside in `spilled`): a planted index object can list blobs
/// in a pack that does not hold them. Data packs are checked only with the identity (a write
/// key cannot read their trailers).
fn check_listings(
    src: &Repository,
    records: &[IndexPack],
    spilled: Option<&Spilled>,
    index: &Index,
    packs: &HashSet<u32>,
) -> Result<()> {
    let full = src.role() == crate::repo::Role::Full;
    let check = |p: &IndexPack| -> Result<()> {
        if p.kind == PackKind::Data && !full {
            return Ok(());
        }
        let trailer = crate::repair::read_trailer(src, p.kind, &p.id)?;
        let held: HashMap<Id, &cairn_format::pack::BlobEntry> =
            trailer.blobs.iter().map(|b| (b.id, b)).collect();
        match p.blobs.iter().find(|b| held.get(&b.id) != Some(b)) {
            None => Ok(()),
            Some(b) => Err(Error::damaged(
                Repository::pack_path(p.kind, &p.id),
                cairn_format::Error::Malformed {
                    kind: "index",
                    reason: format!(
                        "an index object lists blob {} in this pack, whose own trailer does not \
                         (a planted claim, or a damaged index): run `cairn repair index` on the \
                         source, then copy again",
                        b.id
                    ),
                },
            )),
        }
    };
    records.iter().try_for_each(check)?;
    if let Some(spilled) = spilled {
        spilled.replay(|p| match index.pack_number(&p.id) {
            Some(n) if packs.contains(&n) => check(p),
            _ => Ok(()),
        })?;
    }
    Ok(())
}

fn verify_name(path: &str, id: &Id, bytes: &[u8]) -> Result<()> {
    check_name(path, id, Id::of_object(bytes))
}

/// [`verify_name`] of bytes whose blake3 hash is `actual`.
fn check_name(path: &str, id: &Id, actual: Id) -> Result<()> {
    if actual == *id {
        Ok(())
    } else {
        Err(Error::NameMismatch {
            object: path.to_string(),
            actual,
        })
    }
}

/// Send packs with a few workers; each pack's bytes are checked against its name first, so a
/// damaged source pack is reported instead of spread. Returns the bytes sent.
fn send_packs(
    src: &Repository,
    dst: &Repository,
    index: &Index,
    numbers: &[u32],
    progress: &(dyn Fn(u64) + Sync),
) -> Result<u64> {
    let next = Mutex::new(numbers.iter());
    let bytes = AtomicU64::new(0);
    let first_error = Mutex::new(None);
    let largest = numbers
        .iter()
        .map(|&n| index.pack(n).size)
        .max()
        .unwrap_or(1);
    let parallel = ((TRANSIT_BYTES / largest.max(1)) as usize).clamp(1, PARALLEL_PACKS);
    std::thread::scope(|s| {
        for _ in 0..parallel.min(numbers.len()) {
            s.spawn(|| loop {
                if first_error.lock().expect("lock").is_some() {
                    return;
                }
                let Some(&n) = next.lock().expect("lock").next() else {
                    return;
                };
                let info = index.pack(n);
                match send_pack(src, dst, info.kind, &info.id) {
                    Ok(len) => {
                        bytes.fetch_add(len, Ordering::Relaxed);
                        progress(len);
                    }
                    Err(e) => {
                        first_error.lock().expect("lock").get_or_insert(e);
                        return;
                    }
                }
            });
        }
    });
    match first_error.into_inner().expect("lock") {
        Some(e) => Err(e),
        None => Ok(bytes.into_inner()),
    }
}

/// Send one pack, checked against its name; returns its size. From local storage into a
/// backend that stages objects (local storage) it goes a piece at a time; otherwise it is
/// held whole (one GET from an object store, one PUT to one).
fn send_pack(src: &Repository, dst: &Repository, kind: PackKind, id: &Id) -> Result<u64> {
    let path = Repository::pack_path(kind, id);
    if !src.backend().is_remote() {
        let sink = PackSink::open(dst.backend(), kind.dir(), 0)?;
        if sink.is_staged() {
            return stream_pack(src, dst, &path, id, sink);
        }
    }
    let bytes = src.backend().get(&path)?;
    verify_name(&path, id, &bytes)?;
    let len = bytes.len() as u64;
    dst.backend().put_owned(&path, bytes)?;
    Ok(len)
}

/// Copy the pack at `path` into `sink` and store it under `path` if its bytes hash to `id`
/// (else the staged copy is deleted and the source named as damaged).
fn stream_pack(
    src: &Repository,
    dst: &Repository,
    path: &str,
    id: &Id,
    mut sink: PackSink,
) -> Result<u64> {
    let mut reader = src.backend().open(path)?;
    let mut buf = vec![0u8; STREAM_PIECE];
    loop {
        let n = match reader.read(&mut buf) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(Error::io("reading", path, e)),
        };
        sink.write_all(&buf[..n])
            .map_err(|e| Error::pack_write(dst.backend(), e))?;
    }
    let sealed = sink.seal();
    check_name(path, id, sealed.id)?;
    let size = sealed.size;
    sealed.store(dst.backend(), path)?;
    Ok(size)
}
