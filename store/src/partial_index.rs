//! An index of what reading some snapshots needs, not of the whole repository: restore holds
//! 44 bytes per blob of the small files it reads whatever else the repository holds (a million
//! other blobs would add 44 MB), and locates large files' blobs on disk.
//!
//! Two passes over the index objects: the first keeps the blobs of tree packs (trees and
//! content lists), enough to walk the snapshots' trees and list the data blobs they reference
//! (a sorted vector of their ids' first 8 bytes, 8 bytes per blob; 4 for large files); the
//! second keeps the tree packs' blobs and the data blobs whose first 8 bytes are listed (the
//! few other blobs that share them by chance cost an entry each, nothing else). The second
//! pass reads the data packs' entries set aside in a temporary file by the first
//! ([`trees_and_spill`], which copy uses too). A repository whose index objects are small
//! ([`WHOLE_BELOW`]) is loaded whole, in one pass.

use crate::content_lists;
use crate::entry_file::EntryFileBuilder;
use crate::index::Index;
use crate::loader::Loader;
use crate::pack_entries::{decode_blob, encode_blob, BLOB_RECORD};
use crate::repo::Repository;
use crate::restore::LARGE_FILE_BLOBS;
use crate::{Error, Result};
use cairn_format::index::IndexPack;
use cairn_format::pack::PackKind;
use cairn_format::tree::NodeKind;
use cairn_format::Id;
use std::collections::HashSet;
use std::fs::File;
use std::io::{BufReader, BufWriter, Read, Seek, SeekFrom, Write};
use std::sync::Arc;

/// Index objects adding up to fewer bytes than this (~150,000 blobs) are loaded whole: the
/// whole index then costs at most ~6 MiB, less than a second look at the data packs is worth.
pub const WHOLE_BELOW: u64 = 8 << 20;

/// The index a restore of `roots` (snapshot trees) needs: every blob of the repository's tree
/// packs and the data blobs the trees reference (those the index knows; a missing one is
/// reported by the reader as it would be with the whole index). The data blobs of large files
/// (at least [`LARGE_FILE_BLOBS`] or several content lists, which restore plans on disk) are
/// located in an [`EntryFile`](crate::entry_file::EntryFile) on disk rather than in memory
/// (44 bytes a blob), unless a smaller file holds them too. [`Index::get`] finds them all.
///
/// The index objects are read and decrypted once: the data packs' entries go to an unnamed
/// temporary file (fixed-size records, read back once the trees are walked); where no
/// temporary file can be made, the index objects are read a second time instead.
pub fn for_restore(repo: &Arc<Repository>, roots: &[Id]) -> Result<Index> {
    for_trees_above(repo, roots, WHOLE_BELOW, true)
}

/// An index of the tree packs alone (trees and content lists): what a command that reads
/// trees but no file content needs (`diff`, `ls`), ~44 bytes per tree or list blob instead of
/// per blob of the repository.
pub fn trees_only(repo: &Repository) -> Result<Index> {
    Index::load_filtered(repo, &|pack, _| pack.kind == PackKind::Tree)
}

pub(crate) fn for_trees_above(
    repo: &Arc<Repository>,
    roots: &[Id],
    whole_below: u64,
    aside_large: bool,
) -> Result<Index> {
    let (listed, bytes) = Index::listing(repo)?;
    if bytes < whole_below {
        return Index::load_listed(repo, &Default::default(), listed);
    }
    // A temporary file that cannot be made or filled up (a full TMPDIR) costs a second read
    // of the index, not the command.
    let (trees, spill) = trees_and_spill(repo)?;
    let trees = Arc::new(trees);
    let found = data_blobs(
        &mut Loader::new(repo.clone(), trees.clone()),
        roots,
        aside_large && spill.is_some(),
    );
    let (needed, large) = match found {
        Ok(ids) => ids,
        Err(e) if e.is_storage_failure() => return Err(e),
        // A tree that the tree packs do not hold, or that does not decode: the whole index,
        // and the reader reports what is wrong as it did before.
        Err(e) => {
            tracing::debug!("reading the snapshots' trees for a partial index: {e}");
            drop(trees);
            return Index::load(repo);
        }
    };
    let keep = |p: &IndexPack, id: &Id| {
        p.kind == PackKind::Tree || needed.binary_search(&prefix(id)).is_ok()
    };
    let is_large = |p: &IndexPack, id: &Id| {
        p.kind == PackKind::Data && large.binary_search(&short(id)).is_ok()
    };
    let Some(sp) = spill else {
        drop(trees);
        return Index::load_filtered(repo, &keep);
    };
    let mut index = Arc::try_unwrap(trees)
        .map_err(|_| Error::Invalid("the tree index is still in use".into()))?;
    let mut aside = if large.is_empty() {
        None
    } else {
        EntryFileBuilder::new()
            .map_err(|e| tracing::warn!("{e}: large files are located in memory"))
            .ok()
    };
    // Without a file for them, the large files' blobs are located in memory.
    let in_memory = aside.is_none();
    let keep_here = |p: &IndexPack, id: &Id| keep(p, id) || (in_memory && is_large(p, id));
    let mut aside_failed = None;
    sp.replay(|p| {
        index.add_unsealed(p, &keep_here);
        let Some(b) = aside.as_mut().filter(|_| aside_failed.is_none()) else {
            return Ok(());
        };
        let mut number = None;
        for blob in p.blobs.iter().filter(|b| is_large(p, &b.id)) {
            let number = *number.get_or_insert_with(|| index.number(p));
            if let Err(e) = b.push(number, blob) {
                aside_failed = Some(e);
                break;
            }
        }
        Ok(())
    })?;
    index.seal_now();
    let aside = aside.map(EntryFileBuilder::finish).transpose();
    match aside_failed.map_or(aside, Err) {
        Ok(Some(entries)) => index.set_aside(entries),
        Ok(None) => {}
        Err(e) => {
            // Read again, the large files' blobs in memory.
            tracing::warn!("{e}: large files are located in memory");
            drop(index);
            let keep_all = |p: &IndexPack, id: &Id| keep(p, id) || is_large(p, id);
            return Index::load_filtered(repo, &keep_all);
        }
    }
    Ok(index)
}

/// The blobs of the repository's tree packs, in memory, and its data packs' index entries set
/// aside in a temporary file ([`Spilled`]), the index objects read once. Without the file
/// (none can be made, or it filled up: logged), only the tree packs' blobs.
pub(crate) fn trees_and_spill(repo: &Arc<Repository>) -> Result<(Index, Option<Spilled>)> {
    let is_tree = |p: &IndexPack, _: &Id| p.kind == PackKind::Tree;
    let mut spill = tempfile::tempfile()
        .map(Spill::new)
        .map_err(|e| tracing::debug!("no temporary file for the index ({e}): reading it twice"))
        .ok();
    let trees = match spill.as_mut() {
        Some(sp) => Index::load_aside(repo, &is_tree, &mut |attempt, p| sp.put(attempt, p))?,
        None => Index::load_filtered(repo, &is_tree)?,
    };
    Ok((trees, spill.and_then(Spill::usable)))
}

/// Data packs' index entries set aside in a temporary file while the trees are read.
struct Spill {
    out: BufWriter<File>,
    attempt: u32,
    /// The first write that failed (the file is then no longer written).
    failed: Option<std::io::Error>,
}

/// One pack: id, size, number of blobs.
const PACK_RECORD: usize = 32 + 8 + 4;

fn spill_error(e: std::io::Error) -> Error {
    Error::Invalid(format!(
        "setting index entries aside in a temporary file (in TMPDIR, or /tmp): {e}; free space there or point TMPDIR elsewhere"
    ))
}

impl Spill {
    fn new(f: File) -> Spill {
        Spill {
            out: BufWriter::with_capacity(1 << 20, f),
            attempt: 0,
            failed: None,
        }
    }

    /// Set a data pack aside (tree packs stay in the index); a new listing starts over. A
    /// write that fails is kept for [`Spill::usable`], not returned: the index goes on loading.
    fn put(&mut self, attempt: u32, p: &IndexPack) -> Result<()> {
        if self.failed.is_none() {
            if let Err(e) = self.write(attempt, p) {
                self.failed = Some(e);
            }
        }
        Ok(())
    }

    fn write(&mut self, attempt: u32, p: &IndexPack) -> std::io::Result<()> {
        if attempt != self.attempt {
            self.attempt = attempt;
            self.out.flush()?;
            let f = self.out.get_mut();
            f.set_len(0)?;
            f.seek(SeekFrom::Start(0))?;
        }
        if p.kind != PackKind::Data {
            return Ok(());
        }
        let w = &mut self.out;
        w.write_all(&p.id.0)?;
        w.write_all(&p.size.to_le_bytes())?;
        w.write_all(&(p.blobs.len() as u32).to_le_bytes())?;
        for b in &p.blobs {
            w.write_all(&encode_blob(b))?;
        }
        Ok(())
    }

    /// The entries set aside, unless a write failed (logged: the index is then read again).
    fn usable(mut self) -> Option<Spilled> {
        let failed = self.failed.take();
        let written = match failed {
            None => self.out.into_inner().map_err(|e| e.into_error()),
            Some(e) => Err(e),
        };
        match written {
            Ok(file) => Some(Spilled { file }),
            Err(e) => {
                tracing::warn!(
                    "{}; reading the index objects again instead",
                    spill_error(e)
                );
                None
            }
        }
    }
}

/// The data packs' index entries, set aside in a temporary file (fixed-size records).
pub(crate) struct Spilled {
    file: File,
}

impl Spilled {
    /// Every pack set aside, in order, one at a time (as often as asked).
    pub(crate) fn replay(&self, mut each: impl FnMut(&IndexPack) -> Result<()>) -> Result<()> {
        let mut f = &self.file;
        f.seek(SeekFrom::Start(0)).map_err(spill_error)?;
        let mut r = BufReader::with_capacity(1 << 20, f);
        let mut head = [0u8; PACK_RECORD];
        let mut rec = [0u8; BLOB_RECORD];
        loop {
            match r.read_exact(&mut head) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(()),
                Err(e) => return Err(spill_error(e)),
            }
            let count = u32::from_le_bytes(head[40..44].try_into().expect("4 bytes")) as usize;
            let mut pack = IndexPack {
                id: Id(head[..32].try_into().expect("32 bytes")),
                kind: PackKind::Data,
                size: u64::from_le_bytes(head[32..40].try_into().expect("8 bytes")),
                blobs: Vec::with_capacity(count),
            };
            for _ in 0..count {
                r.read_exact(&mut rec).map_err(spill_error)?;
                pack.blobs.push(decode_blob(&rec));
            }
            each(&pack)?;
        }
    }
}

/// An id's first 8 bytes: what [`data_blobs`] keeps of each id.
fn prefix(id: &Id) -> u64 {
    u64::from_be_bytes(id.0[..8].try_into().expect("8 bytes"))
}

/// An id's first 4 bytes: what [`data_blobs`] keeps of a large file's ids (its entries are
/// matched exactly on disk: a chance match costs a record there, not memory).
fn short(id: &Id) -> u32 {
    u32::from_be_bytes(id.0[..4].try_into().expect("4 bytes"))
}

/// The blobs the files below `roots` hold (content lists included): the first 8 bytes of their
/// ids, sorted, each once (4 times less memory than the ids, for a test that is exact but for
/// chance collisions, which keep a blob too many); apart, with `aside_large`, the first 4 bytes of
/// those of the files restore plans on disk (of [`LARGE_FILE_BLOBS`] or more, or of several
/// content lists).
fn data_blobs(
    loader: &mut Loader,
    roots: &[Id],
    aside_large: bool,
) -> Result<(Vec<u64>, Vec<u32>)> {
    let is_large =
        |several_lists: bool, n: usize| aside_large && (several_lists || n >= LARGE_FILE_BLOBS);
    let mut visited: HashSet<Id> = HashSet::new();
    let mut stack: Vec<Id> = roots.to_vec();
    let (mut ids, mut large): (Vec<u64>, Vec<u32>) = (Vec::new(), Vec::new());
    while let Some(tree_id) = stack.pop() {
        if !visited.insert(tree_id) {
            continue;
        }
        // A long file's lists are read one at a time: its ids are never all held.
        let tree = loader.load_tree_unresolved(&tree_id)?;
        let mut budget = content_lists::tree_budget(&tree);
        for node in &tree.nodes {
            // A file of several lists is large (restore plans it on disk from its lists).
            let several = node.content_lists.len() > 1;
            let mut add = |content: &[Id]| {
                if is_large(several, content.len()) {
                    large.extend(content.iter().map(short));
                } else {
                    ids.extend(content.iter().map(prefix));
                }
            };
            if node.kind == NodeKind::File {
                add(&node.content);
                content_lists::each_list_of(loader, &tree_id, node, &mut budget, |list| {
                    add(&list);
                    Ok(())
                })?;
            }
            if let (NodeKind::Dir, Some(sub)) = (&node.kind, node.subtree) {
                stack.push(sub);
            }
        }
    }
    ids.sort_unstable();
    ids.dedup();
    ids.shrink_to_fit();
    large.sort_unstable();
    large.dedup();
    large.shrink_to_fit();
    Ok((ids, large))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::saver::Saver;
    use cairn_format::frame::Compression;
    use cairn_format::pack::{BlobEntry, FrameRef};
    use cairn_format::tree::{Node, Tree};

    #[test]
    fn keeps_the_snapshot_blobs_and_trees_only() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = crate::test_repo::create(dir.path(), &identity, Some(1 << 20));
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
        let trees = Index::load_filtered(&repo, &|p, _| p.kind == PackKind::Tree).unwrap();
        let (needed, _) = data_blobs(
            &mut Loader::new(repo.clone(), Arc::new(trees)),
            &roots[..1],
            false,
        )
        .unwrap();
        let mut want: Vec<u64> = files[0].iter().map(prefix).collect();
        want.sort_unstable();
        assert_eq!(needed, want);

        let keep = |p: &cairn_format::index::IndexPack, id: &Id| {
            p.kind == PackKind::Tree || needed.binary_search(&prefix(id)).is_ok()
        };
        let part = Arc::new(Index::load_filtered(&repo, &keep).unwrap());
        for id in &files[0] {
            assert_eq!(
                part.get(id).map(|l| part.pack(l.pack).id),
                whole.get(id).map(|l| whole.pack(l.pack).id)
            );
        }
        assert!(files[1].iter().all(|id| !part.contains(id)));
        assert!(part.len() < whole.len() - 19_000);
        // The trees are there: a loader over the partial index reads the first snapshot back.
        let mut loader = Loader::new(repo.clone(), part.clone());
        let tree = loader.load_tree(&roots[0]).unwrap();
        assert_eq!(tree.nodes[0].content, files[0]);
        for id in tree.nodes[0].content.iter().take(100) {
            loader.load(id).unwrap();
        }
        // Below the threshold, it is all loaded.
        assert_eq!(for_restore(&repo, &roots[..1]).unwrap().len(), whole.len());
        // Above it, through the temporary file: the same as the two passes.
        let spilled = for_trees_above(&repo, &roots[..1], 0, false).unwrap();
        assert_eq!(spilled.len(), part.len());
        for (id, loc) in part.iter() {
            let got = spilled.get(id).expect("indexed");
            assert_eq!(spilled.pack(got.pack).id, part.pack(loc.pack).id);
            assert_eq!(
                (got.frame, got.offset, got.len),
                (loc.frame, loc.offset, loc.len)
            );
        }
    }

    #[test]
    fn a_root_the_tree_packs_do_not_hold_gives_the_whole_index() {
        let dir = tempfile::tempdir().unwrap();
        let identity = age::x25519::Identity::generate();
        let repo = crate::test_repo::create(dir.path(), &identity, None);
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 2);
        let data = saver.add_blob(PackKind::Data, b"data".to_vec()).unwrap();
        saver.finish().unwrap();
        // A data blob as the root: not a tree of the tree packs.
        let index = for_trees_above(&repo, &[data], 0, true).unwrap();
        assert!(index.contains(&data));
        assert_eq!(index.len(), Index::load(&repo).unwrap().len());
    }

    #[test]
    fn spill_round_trip_and_a_new_listing_starts_over() {
        let pack = |n: u8, blobs: u32| IndexPack {
            id: Id([n; 32]),
            kind: PackKind::Data,
            size: 1000 + u64::from(n),
            blobs: (0..blobs)
                .map(|i| BlobEntry {
                    id: Id([n ^ (i as u8); 32]),
                    frame: FrameRef {
                        offset: u64::from(i) * 7 + (1 << 40),
                        stored_len: i + 1,
                        raw_len: i + 2,
                        compression: if i % 2 == 0 {
                            Compression::Zstd
                        } else {
                            Compression::None
                        },
                    },
                    offset: i * 3,
                    len: i + 5,
                })
                .collect(),
        };
        let mut sp = Spill::new(tempfile::tempfile().unwrap());
        sp.put(1, &pack(1, 10)).unwrap();
        sp.put(2, &pack(2, 0)).unwrap();
        sp.put(2, &pack(3, 300)).unwrap();
        let tree = IndexPack {
            kind: PackKind::Tree,
            ..pack(4, 3)
        };
        sp.put(2, &tree).unwrap();
        let mut back = Vec::new();
        let spilled = sp.usable().unwrap();
        for _ in 0..2 {
            back.clear();
            spilled
                .replay(|p| {
                    back.push(p.clone());
                    Ok(())
                })
                .unwrap();
            assert_eq!(back, vec![pack(2, 0), pack(3, 300)]);
        }
        // A file that cannot be written (here: opened read-only) is given up, not an error.
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("spill"), b"").unwrap();
        let mut sp = Spill::new(File::open(dir.path().join("spill")).unwrap());
        for n in 0..20 {
            sp.put(1, &pack(n, 3000)).unwrap();
        }
        assert!(sp.failed.is_some(), "a write to a read-only file failed");
        assert!(sp.usable().is_none());
    }
}
