//! Backing up host paths: walk, skip what is unchanged since the parent snapshot, chunk the
//! rest, and build one tree blob per directory.

use super::meta::{self, Owners};
use anyhow::{Context, Result};
use cairn_format::chunker::ChunkPolicy;
use cairn_format::snapshot::SnapshotStats;
use cairn_format::tree::{Node, NodeKind, Tree};
use cairn_format::Id;
use cairn_store::loader::Loader;
use cairn_store::saver::Saver;
use globset::{Glob, GlobSet, GlobSetBuilder};
use indicatif::ProgressBar;
use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};

/// Exclusion rules: globs over the absolute path, or over the name when a glob has no `/`.
#[derive(Default)]
pub struct Excludes {
    paths: GlobSet,
    names: GlobSet,
}

impl Excludes {
    /// Build from glob patterns.
    pub fn new(patterns: &[String]) -> Result<Self> {
        let mut paths = GlobSetBuilder::new();
        let mut names = GlobSetBuilder::new();
        for p in patterns {
            let glob = Glob::new(p).with_context(|| format!("invalid exclude pattern {p:?}"))?;
            if p.contains('/') {
                paths.add(glob);
            } else {
                names.add(glob);
            }
        }
        Ok(Excludes {
            paths: paths.build()?,
            names: names.build()?,
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
}

/// Result of walking the paths.
pub struct Outcome {
    /// Root tree, not yet saved (the caller may add entries, e.g. an etcd snapshot).
    pub root: Tree,
    /// Counters (content and walk; the caller adds what the saver stored).
    pub stats: SnapshotStats,
    /// Entries that could not be read: (path, reason).
    pub unreadable: Vec<(String, String)>,
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
        let abs =
            std::path::absolute(p).with_context(|| format!("resolving path {}", p.display()))?;
        let comps: Vec<Vec<u8>> = abs
            .components()
            .filter_map(|c| match c {
                std::path::Component::Normal(n) => Some(n.as_bytes().to_vec()),
                _ => None,
            })
            .collect();
        if comps.is_empty() {
            anyhow::bail!("backing up / as a whole is not supported; name the directories to keep");
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

/// Walks paths into a saver.
pub struct Walker<'a> {
    saver: &'a mut Saver,
    parent: Option<Loader>,
    policy: ChunkPolicy,
    opts: Options,
    owners: Owners,
    stats: SnapshotStats,
    unreadable: Vec<(String, String)>,
    progress: ProgressBar,
    root_dev: u64,
}

impl<'a> Walker<'a> {
    /// A walker writing into `saver`, comparing with `parent` trees through `parent_loader`.
    pub fn new(
        saver: &'a mut Saver,
        parent_loader: Option<Loader>,
        policy: ChunkPolicy,
        opts: Options,
        progress: ProgressBar,
    ) -> Self {
        Walker {
            saver,
            parent: parent_loader,
            policy,
            opts,
            owners: Owners::default(),
            stats: SnapshotStats::default(),
            unreadable: Vec::new(),
            progress,
            root_dev: 0,
        }
    }

    /// Back up `paths`; `parent_root` is the root tree of the parent snapshot, if any.
    pub fn run(mut self, paths: &[PathBuf], parent_root: Option<Id>) -> Result<Outcome> {
        let layout = layout(paths)?;
        let parent_tree = self.parent_tree(parent_root.as_ref());
        let root = self.above(Path::new("/"), &layout, parent_tree.as_ref())?;
        Ok(Outcome {
            root,
            stats: self.stats,
            unreadable: self.unreadable,
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

    fn above(
        &mut self,
        dir: &Path,
        children: &BTreeMap<Vec<u8>, Layout>,
        parent: Option<&Tree>,
    ) -> Result<Tree> {
        let mut tree = Tree::default();
        for (name, layout) in children {
            let path = dir.join(OsStr::from_bytes(name));
            let old = parent.and_then(|t| t.get(name));
            let meta = match fs::symlink_metadata(&path) {
                Ok(m) => m,
                Err(e) => {
                    self.unreadable(&path, e);
                    continue;
                }
            };
            let node = match layout {
                Layout::Whole => {
                    self.root_dev = meta.dev();
                    self.entry(&path, name.clone(), meta, old)?
                }
                Layout::Above(grand) => {
                    let mut node = meta::node(name.clone(), &path, &meta, &mut self.owners);
                    if node.kind != NodeKind::Dir {
                        self.unreadable(&path, "expected a directory above the given paths");
                        continue;
                    }
                    let old_sub = self.old_subtree(old);
                    let mut sub = self.above(&path, grand, old_sub.as_ref())?;
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

    /// One entry and (for directories) everything below it. None when it was skipped.
    fn entry(
        &mut self,
        path: &Path,
        name: Vec<u8>,
        meta: fs::Metadata,
        old: Option<&Node>,
    ) -> Result<Option<Node>> {
        if self.opts.excludes.excluded(path) {
            return Ok(None);
        }
        let mut node = meta::node(name, path, &meta, &mut self.owners);
        match node.kind {
            NodeKind::File => {
                self.stats.files += 1;
                let reuse = old.filter(|o| {
                    !self.opts.force
                        && meta::unchanged(&node, o)
                        && o.content.iter().all(|id| self.saver.contains(id))
                });
                if let Some(o) = reuse {
                    node.content = o.content.clone();
                    self.progress.inc(node.size);
                } else {
                    let file = match File::open(path) {
                        Ok(f) => f,
                        Err(e) => {
                            self.unreadable(path, e);
                            return Ok(None);
                        }
                    };
                    let progress = self.progress.clone();
                    match self
                        .saver
                        .save_reader(file, self.policy, |n| progress.inc(n))?
                    {
                        Ok((ids, size)) => {
                            if size != node.size {
                                tracing::info!(
                                    "{} changed size while being read ({} → {size} bytes)",
                                    path.display(),
                                    node.size
                                );
                            }
                            node.content = ids;
                            node.size = size;
                            self.stats.files_read += 1;
                        }
                        Err(e) => {
                            self.unreadable(path, e);
                            return Ok(None);
                        }
                    }
                }
                self.stats.bytes += node.size;
            }
            NodeKind::Dir => {
                self.stats.dirs += 1;
                let old_sub = self.old_subtree(old);
                let mut sub = Tree::default();
                if self.opts.one_file_system && meta.dev() != self.root_dev {
                    tracing::info!(
                        "not crossing into another file system at {}",
                        path.display()
                    );
                } else {
                    match read_dir_sorted(path) {
                        Ok(names) => {
                            for child in names {
                                let cpath = path.join(OsStr::from_bytes(&child));
                                let cmeta = match fs::symlink_metadata(&cpath) {
                                    Ok(m) => m,
                                    Err(e) => {
                                        self.unreadable(&cpath, e);
                                        continue;
                                    }
                                };
                                let cold = old_sub.as_ref().and_then(|t| t.get(&child));
                                if let Some(n) = self.entry(&cpath, child, cmeta, cold)? {
                                    sub.nodes.push(n);
                                }
                            }
                        }
                        Err(e) => self.unreadable(path, e),
                    }
                }
                node.subtree = Some(self.saver.save_tree(&mut sub)?);
            }
            NodeKind::Symlink => {
                self.stats.others += 1;
                match fs::read_link(path) {
                    Ok(t) => node.target = Some(t.as_os_str().as_bytes().to_vec()),
                    Err(e) => {
                        self.unreadable(path, e);
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
}

fn read_dir_sorted(path: &Path) -> std::io::Result<Vec<Vec<u8>>> {
    let mut names = fs::read_dir(path)?
        .map(|e| e.map(|e| e.file_name().as_bytes().to_vec()))
        .collect::<std::io::Result<Vec<_>>>()?;
    names.sort();
    Ok(names)
}

#[cfg(test)]
mod tests {
    use super::*;

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
