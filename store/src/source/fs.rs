//! Backing up host paths: walk, skip what is unchanged since the parent snapshot, chunk the
//! rest, and build one tree blob per directory.

use super::meta::{self, Owners};
use super::SourceError;
use crate::loader::Loader;
use crate::progress::Progress;
use crate::saver::Saver;
use crate::trees::MAX_DEPTH;
use crate::{Error, Result};
use cairn_format::chunker::ChunkPolicy;
use cairn_format::snapshot::SnapshotStats;
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::Id;
use globset::{Glob, GlobSet, GlobSetBuilder};
use rustix::fd::{AsFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType, Mode, OFlags, Stat};
use rustix::io::Errno;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Exclusion rules: globs over the absolute path, or over the name when a glob has no `/`.
#[derive(Default)]
pub struct Excludes {
    paths: GlobSet,
    names: GlobSet,
}

impl Excludes {
    /// Build from glob patterns.
    pub fn new(patterns: &[String]) -> Result<Self> {
        let invalid = |p: &str, e: globset::Error| {
            Error::Invalid(format!("invalid exclude pattern {p:?}: {e}"))
        };
        let mut paths = GlobSetBuilder::new();
        let mut names = GlobSetBuilder::new();
        for p in patterns {
            let glob = Glob::new(p).map_err(|e| invalid(p, e))?;
            if p.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        let built = |set: GlobSetBuilder| set.build().map_err(|e| invalid(&patterns.join(" "), e));
        Ok(Excludes {
            paths: built(paths)?,
            names: built(names)?,
        })
    }

    fn excluded(&self, path: &Path) -> bool {
        self.paths.is_match(path) || path.file_name().is_some_and(|n| self.names.is_match(n))
    }
}

/// Options of a path backup.
#[derive(Default)]
pub struct Options {
    /// Exclusions.
    pub excludes: Excludes,
    /// Stay on each given path's file system.
    pub one_file_system: bool,
    /// Read files even when the parent says they are unchanged.
    pub force: bool,
    /// The directory that stands for / (`backup host --root`): paths stay host-absolute in
    /// the snapshot and are read below it. Empty: /.
    pub root: PathBuf,
}

/// Result of walking the paths.
pub struct Outcome {
    /// Root tree, not yet saved (the caller may add entries, e.g. an etcd snapshot).
    pub root: Tree,
    /// Counters (content and walk; the caller adds what the saver stored).
    pub stats: SnapshotStats,
    /// Entries that could not be read: (path, reason).
    pub unreadable: Vec<(String, String)>,
    /// Files that kept changing while they were read (saved as last read, possibly torn).
    pub changed: Vec<String>,
}

/// Paths arranged as the directories above them, so the snapshot mirrors absolute paths.
enum Layout {
    /// Back up this path and everything below it.
    Whole,
    /// An ancestor directory of given paths: only metadata, and these children.
    Above(BTreeMap<Vec<u8>, Layout>),
}

fn layout(paths: &[PathBuf]) -> Result<BTreeMap<Vec<u8>, Layout>> {
    let mut root = BTreeMap::new();
    for p in paths {
        let comps: Vec<Vec<u8>> = p
            .components()
            .filter_map(|c| match c {
                Component::Normal(n) => Some(n.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        if !p.is_absolute() || p.components().any(|c| c == Component::ParentDir) {
            return Err(Error::Invalid(format!(
                "internal error: {} is not a resolved path",
                p.display()
            )));
        }
        if comps.is_empty() {
            return Err(SourceError::WholeRoot.into());
        }
        let mut level = &mut root;
        for (i, c) in comps.iter().enumerate() {
            let last = i + 1 == comps.len();
            let entry = level.entry(c.clone()).or_insert_with(|| {
                if last {
                    Layout::Whole
                } else {
                    Layout::Above(BTreeMap::new())
                }
            });
            if last {
                *entry = Layout::Whole;
                break;
            }
            match entry {
                Layout::Whole => break, // an ancestor is already backed up whole
                Layout::Above(children) => level = children,
            }
        }
    }
    Ok(root)
}

/// Open the directory `name` below `dir` without following a symlink.
fn open_dir(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<OwnedFd> {
    rfs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::DIRECTORY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )
}

/// `lstat` of `name` below `dir`.
fn stat_at(dir: BorrowedFd<'_>, name: &[u8]) -> rustix::io::Result<Stat> {
    rfs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW)
}

/// The names in a directory, sorted.
fn read_dir_sorted(dir: BorrowedFd<'_>) -> rustix::io::Result<Vec<Vec<u8>>> {
    let mut names = Vec::new();
    for entry in rfs::Dir::read_from(dir)? {
        let name = entry?.file_name().to_bytes().to_vec();
        if name != b"." && name != b".." {
            names.push(name);
        }
    }
    names.sort();
    Ok(names)
}

/// Why a file's content could not be taken.
enum ReadFailure {
    /// Not readable (the reason).
    Unreadable(String),
    /// It is no longer the entry that was listed (replaced between `lstat` and `open`).
    Replaced,
}

/// Walks paths into a saver.
pub struct Walker<'a> {
    saver: &'a mut Saver,
    parent: Option<Loader>,
    policy: ChunkPolicy,
    opts: Options,
    owners: Owners,
    stats: SnapshotStats,
    unreadable: Vec<(String, String)>,
    changed: Vec<String>,
    progress: Progress,
    root_dev: u64,
}

impl<'a> Walker<'a> {
    /// A walker writing into `saver`, comparing with `parent` trees through `parent_loader`.
    pub fn new(
        saver: &'a mut Saver,
        parent_loader: Option<Loader>,
        policy: ChunkPolicy,
        opts: Options,
        progress: Progress,
    ) -> Self {
        Walker {
            saver,
            parent: parent_loader,
            policy,
            opts,
            owners: Owners::default(),
            stats: SnapshotStats::default(),
            unreadable: Vec::new(),
            changed: Vec::new(),
            progress,
            root_dev: 0,
        }
    }

    /// Back up `paths` (absolute, resolved: no `.` or `..`); `parent_root` is the root tree of
    /// the parent snapshot, if any.
    pub fn run(mut self, paths: &[PathBuf], parent_root: Option<Id>) -> Result<Outcome> {
        let layout = layout(paths)?;
        let parent_tree = self.parent_tree(parent_root.as_ref());
        let top = if self.opts.root.as_os_str().is_empty() {
            Path::new("/")
        } else {
            self.opts.root.as_path()
        };
        let root = rfs::open(
            top,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(Error::file("opening", top.display()))?;
        let root = self.above(
            root.as_fd(),
            Path::new("/"),
            &layout,
            parent_tree.as_ref(),
            0,
        )?;
        Ok(Outcome {
            root,
            stats: self.stats,
            unreadable: self.unreadable,
            changed: self.changed,
        })
    }

    fn parent_tree(&mut self, id: Option<&Id>) -> Option<Tree> {
        let (loader, id) = (self.parent.as_mut()?, id?);
        match loader.load_tree(id) {
            Ok(t) => Some(t),
            Err(e) => {
                tracing::warn!("parent snapshot tree unreadable, reading files again: {e}");
                None
            }
        }
    }

    fn unreadable(&mut self, path: &Path, err: impl std::fmt::Display) {
        let p = path.display().to_string();
        tracing::warn!("cannot read {p}: {err}");
        self.stats.unreadable += 1;
        self.unreadable.push((p, err.to_string()));
    }

    /// Directories above the given paths (`dir` open at `path`).
    fn above(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &Path,
        children: &BTreeMap<Vec<u8>, Layout>,
        parent: Option<&Tree>,
        depth: usize,
    ) -> Result<Tree> {
        let mut tree = Tree::default();
        for (name, layout) in children {
            let cpath = path.join(OsStr::from_bytes(name));
            let old = parent.and_then(|t| t.get(name));
            let st = match stat_at(dir, name) {
                Ok(st) => st,
                Err(e) => {
                    self.unreadable(&cpath, io::Error::from(e));
                    continue;
                }
            };
            let node = match layout {
                Layout::Whole if self.opts.excludes.excluded(&cpath) => None,
                Layout::Whole => {
                    self.root_dev = st.st_dev;
                    self.entry(dir, &cpath, name.clone(), st, old, depth + 1)?
                }
                Layout::Above(grand) => {
                    let xattrs = meta::xattrs_at(dir, name, &cpath);
                    let mut node = meta::node(name.clone(), &st, xattrs, &mut self.owners);
                    if node.kind != NodeKind::Dir {
                        self.unreadable(&cpath, "expected a directory above the given paths");
                        continue;
                    }
                    let sub_fd = match open_dir(dir, name) {
                        Ok(fd) => fd,
                        Err(e) => {
                            self.unreadable(&cpath, io::Error::from(e));
                            continue;
                        }
                    };
                    let old_sub = self.old_subtree(old);
                    let mut sub =
                        self.above(sub_fd.as_fd(), &cpath, grand, old_sub.as_ref(), depth + 1)?;
                    node.subtree = Some(self.saver.save_tree(&mut sub)?);
                    self.stats.dirs += 1;
                    Some(node)
                }
            };
            tree.nodes.extend(node);
        }
        Ok(tree)
    }

    fn old_subtree(&mut self, old: Option<&Node>) -> Option<Tree> {
        let sub = old.filter(|n| n.kind == NodeKind::Dir)?.subtree;
        self.parent_tree(sub.as_ref())
    }

    /// The entry `name` of `dir` (at `path`, `depth` levels below /) and, for directories,
    /// everything below it. None when it was skipped. Its callers leave out excluded paths
    /// (a directory's children before they are stat'ed).
    fn entry(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &Path,
        name: Vec<u8>,
        st: Stat,
        old: Option<&Node>,
        depth: usize,
    ) -> Result<Option<Node>> {
        let xattrs = meta::xattrs_at(dir, &name, path);
        let mut node = meta::node(name, &st, xattrs, &mut self.owners);
        match node.kind {
            NodeKind::File => {
                let reuse = old.filter(|o| {
                    !self.opts.force
                        && meta::unchanged(&node, o)
                        && o.content.iter().all(|id| self.saver.contains(id))
                });
                if let Some(o) = reuse {
                    node.content = o.content.clone();
                    self.progress.inc(node.size);
                } else {
                    match self.read_file(dir, path, &mut node)? {
                        Ok(()) => self.stats.files_read += 1,
                        Err(ReadFailure::Unreadable(e)) => {
                            self.unreadable(path, e);
                            return Ok(None);
                        }
                        Err(ReadFailure::Replaced) => {
                            self.unreadable(
                                path,
                                "replaced while being backed up (no longer the file listed)",
                            );
                            return Ok(None);
                        }
                    }
                }
                self.stats.files += 1;
                self.stats.bytes += node.size;
            }
            NodeKind::Dir => {
                if depth >= MAX_DEPTH {
                    self.unreadable(
                        path,
                        format!(
                            "deeper than {MAX_DEPTH} directory levels (the most restore and ls \
                             follow); not saved"
                        ),
                    );
                    return Ok(None);
                }
                self.stats.dirs += 1;
                let old_sub = self.old_subtree(old);
                let mut sub = Tree::default();
                if self.opts.one_file_system && st.st_dev != self.root_dev {
                    tracing::info!(
                        "not crossing into another file system at {}",
                        path.display()
                    );
                } else {
                    match open_dir(dir, &node.name) {
                        Ok(fd) => {
                            self.children(fd, path, &st, old_sub.as_ref(), &mut sub, depth)?
                        }
                        Err(e) => self.unreadable(path, io::Error::from(e)),
                    }
                }
                node.subtree = Some(self.saver.save_tree(&mut sub)?);
            }
            NodeKind::Symlink => {
                self.stats.others += 1;
                match rfs::readlinkat(dir, OsStr::from_bytes(&node.name), Vec::new()) {
                    Ok(t) => node.target = Some(t.into_bytes()),
                    Err(e) => {
                        self.unreadable(path, io::Error::from(e));
                        return Ok(None);
                    }
                }
            }
            _ => self.stats.others += 1,
        }
        self.progress
            .set_message(format!("{} files", self.stats.files));
        Ok(Some(node))
    }

    /// The entries of the directory open as `fd` (listed as `st`) into `sub`.
    fn children(
        &mut self,
        fd: OwnedFd,
        path: &Path,
        st: &Stat,
        old_sub: Option<&Tree>,
        sub: &mut Tree,
        depth: usize,
    ) -> Result<()> {
        match rfs::fstat(&fd) {
            Ok(now) if same_inode(&now, st) => {}
            _ => {
                self.unreadable(
                    path,
                    "replaced while being backed up (no longer the directory listed)",
                );
                return Ok(());
            }
        }
        let names = match read_dir_sorted(fd.as_fd()) {
            Ok(names) => names,
            Err(e) => {
                self.unreadable(path, io::Error::from(e));
                return Ok(());
            }
        };
        for child in names {
            let cpath = path.join(OsStr::from_bytes(&child));
            // Before the stat: an excluded name (a temporary file renamed away at any moment)
            // is never looked at.
            if self.opts.excludes.excluded(&cpath) {
                continue;
            }
            let cst = match stat_at(fd.as_fd(), &child) {
                Ok(m) => m,
                Err(e) => {
                    self.unreadable(&cpath, io::Error::from(e));
                    continue;
                }
            };
            let cold = old_sub.and_then(|t| t.get(&child));
            if let Some(n) = self.entry(fd.as_fd(), &cpath, child, cst, cold, depth + 1)? {
                sub.nodes.push(n);
            }
        }
        Ok(())
    }

    /// Read the regular file `node.name` of `dir` into the saver, setting its content and
    /// size. It is opened without following symlinks and without blocking (a FIFO swapped in
    /// cannot hang the backup), and must be the file that was listed. A file that changes
    /// while it is read is read once more; if it changes again it is saved as read the second
    /// time and reported.
    fn read_file(
        &mut self,
        dir: BorrowedFd<'_>,
        path: &Path,
        node: &mut Node,
    ) -> Result<std::result::Result<(), ReadFailure>> {
        let (file, mut before) = match open_listed(dir, &node.name, (node.device, node.inode)) {
            Ok(opened) => opened,
            Err(e) => return Ok(Err(e)),
        };
        for attempt in 0..2 {
            let (ids, size) = match self.read_content(&file, before.st_size as u64)? {
                Ok(read) => read,
                Err(e) => return Ok(Err(ReadFailure::Unreadable(e.to_string()))),
            };
            let after = match rfs::fstat(&file) {
                Ok(st) => st,
                Err(e) => return Ok(Err(ReadFailure::Unreadable(io::Error::from(e).to_string()))),
            };
            node.content = ids;
            node.size = size;
            node.mtime_ns = meta::mtime_ns(&after);
            node.ctime_ns = meta::ctime_ns(&after);
            if size == after.st_size as u64 && same_times(&before, &after) {
                return Ok(Ok(()));
            }
            if attempt == 0 {
                tracing::info!(
                    "{} changed while being read; reading it again",
                    path.display()
                );
                before = after;
            }
        }
        tracing::warn!(
            "{} kept changing while being read; saved as read",
            path.display()
        );
        // The recorded times cannot match the content, so the next backup reads it again.
        node.ctime_ns = 0;
        self.changed.push(path.display().to_string());
        Ok(Ok(()))
    }

    /// Chunk `file` from its start to its end: data through the chunker, holes (of a sparse
    /// file) of at least one maximum chunk within the first `size` bytes as zero blobs,
    /// without reading them. Returns the blob ids and the bytes covered.
    fn read_content(&mut self, file: &File, size: u64) -> Result<io::Result<(Vec<Id>, u64)>> {
        let mut ids = Vec::new();
        let mut pos = 0u64;
        let min_hole = u64::from(self.policy.max_chunk());
        loop {
            let hole = next_hole(file, pos, size, min_hole);
            let want = hole.map_or(u64::MAX, |(start, _)| start - pos);
            let n = match self.save_range(file, pos, want, &mut ids)? {
                Ok(n) => n,
                Err(e) => return Ok(Err(e)),
            };
            pos += n;
            let Some((start, end)) = hole.filter(|_| n == want) else {
                // The end of the file (or it shrank while being read).
                return Ok(Ok((ids, pos)));
            };
            debug_assert_eq!(pos, start);
            self.saver.add_zeros(end - start, self.policy, &mut ids)?;
            self.progress.inc(end - start);
            pos = end;
        }
    }

    /// Chunk at most `len` bytes of `file` from `offset` into `ids`; the bytes read.
    fn save_range(
        &mut self,
        file: &File,
        offset: u64,
        len: u64,
        ids: &mut Vec<Id>,
    ) -> Result<io::Result<u64>> {
        let mut reader = file;
        if let Err(e) = reader.seek(SeekFrom::Start(offset)) {
            return Ok(Err(e));
        }
        let progress = self.progress.clone();
        let saved = self
            .saver
            .save_reader(reader.take(len), self.policy, |n| progress.inc(n))?;
        Ok(saved.map(|(mut part, n)| {
            ids.append(&mut part);
            n
        }))
    }
}

/// Open the regular file `name` of `dir` for reading, if it is still the one listed as
/// (`device`, `inode`): without following a symlink and without blocking (a FIFO swapped in
/// cannot hang the backup, a device cannot be read). Returns it with its `fstat`.
fn open_listed(
    dir: BorrowedFd<'_>,
    name: &[u8],
    listed: (u64, u64),
) -> std::result::Result<(File, Stat), ReadFailure> {
    let unreadable = |e: Errno| ReadFailure::Unreadable(io::Error::from(e).to_string());
    let fd = rfs::openat(
        dir,
        OsStr::from_bytes(name),
        OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::NONBLOCK | OFlags::NOCTTY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .map_err(|e| match e {
        // A symlink (ELOOP) or a FIFO without writer (ENXIO) swapped in.
        Errno::LOOP | Errno::NXIO => ReadFailure::Replaced,
        e => unreadable(e),
    })?;
    let st = rfs::fstat(&fd).map_err(unreadable)?;
    if (st.st_dev, st.st_ino) != listed
        || FileType::from_raw_mode(st.st_mode) != FileType::RegularFile
    {
        return Err(ReadFailure::Replaced);
    }
    Ok((File::from(fd), st))
}

/// The first hole of `file` at or after `from` that starts before `size` and is at least
/// `min_len` long (ending at the next data or at `size`): (start, end). None when there is
/// none, or the file system cannot tell (SEEK_HOLE unsupported: read everything).
fn next_hole(file: &File, mut from: u64, size: u64, min_len: u64) -> Option<(u64, u64)> {
    while from < size {
        let start = rustix::fs::seek(file, rustix::fs::SeekFrom::Hole(from)).ok()?;
        if start >= size {
            return None;
        }
        let end = match rustix::fs::seek(file, rustix::fs::SeekFrom::Data(start)) {
            Ok(d) => d.min(size),
            Err(Errno::NXIO) => size,
            Err(_) => return None,
        };
        if end - start >= min_len {
            return Some((start, end));
        }
        from = end.max(start + 1);
    }
    None
}

/// Same device and inode.
fn same_inode(a: &Stat, b: &Stat) -> bool {
    (a.st_dev, a.st_ino) == (b.st_dev, b.st_ino)
}

/// Same size, modification and change times: the file was not written in between.
fn same_times(a: &Stat, b: &Stat) -> bool {
    (
        a.st_size,
        a.st_mtime,
        a.st_mtime_nsec,
        a.st_ctime,
        a.st_ctime_nsec,
    ) == (
        b.st_size,
        b.st_mtime,
        b.st_mtime_nsec,
        b.st_ctime,
        b.st_ctime_nsec,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_listed_refuses_what_was_swapped_in() {
        use std::os::unix::fs::MetadataExt;
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f");
        std::fs::write(&file, b"listed").unwrap();
        let m = std::fs::metadata(&file).unwrap();
        let listed = (m.dev(), m.ino());
        let dfd = rfs::open(
            dir.path(),
            OFlags::DIRECTORY | OFlags::RDONLY,
            Mode::empty(),
        )
        .unwrap();
        assert!(open_listed(dfd.as_fd(), b"f", listed).is_ok());
        // A symlink to another file in its place.
        std::fs::write(dir.path().join("secret"), b"secret").unwrap();
        std::fs::remove_file(&file).unwrap();
        std::os::unix::fs::symlink("secret", &file).unwrap();
        assert!(matches!(
            open_listed(dfd.as_fd(), b"f", listed),
            Err(ReadFailure::Replaced)
        ));
        // A FIFO without a writer: refused at once, not a hang.
        std::fs::remove_file(&file).unwrap();
        rfs::mknodat(&dfd, "f", FileType::Fifo, Mode::from_raw_mode(0o600), 0).unwrap();
        assert!(matches!(
            open_listed(dfd.as_fd(), b"f", listed),
            Err(ReadFailure::Replaced)
        ));
        // Another regular file under the same name.
        std::fs::remove_file(&file).unwrap();
        std::fs::write(&file, b"other").unwrap();
        let other = std::fs::metadata(&file).unwrap();
        if (other.dev(), other.ino()) != listed {
            assert!(matches!(
                open_listed(dfd.as_fd(), b"f", listed),
                Err(ReadFailure::Replaced)
            ));
        }
    }

    #[test]
    fn layout_nests_and_merges() {
        let l = layout(&[
            PathBuf::from("/etc/kubernetes/manifests"),
            PathBuf::from("/etc/kubernetes"),
            PathBuf::from("/etc/origin"),
        ])
        .unwrap();
        let Layout::Above(etc) = &l[&b"etc".to_vec()] else {
            panic!("etc should be an ancestor")
        };
        assert!(matches!(etc[&b"kubernetes".to_vec()], Layout::Whole));
        assert!(matches!(etc[&b"origin".to_vec()], Layout::Whole));
        assert!(layout(&[PathBuf::from("/")]).is_err());
    }

    #[test]
    fn excludes_match_names_and_paths() {
        let ex = Excludes::new(&["*.log".into(), "/etc/kubernetes/tmp/**".into()]).unwrap();
        assert!(ex.excluded(Path::new("/var/x/kubelet.log")));
        assert!(ex.excluded(Path::new("/etc/kubernetes/tmp/a/b")));
        assert!(!ex.excluded(Path::new("/etc/kubernetes/manifests/etcd.yaml")));
    }
}
