//! Restoring a snapshot tree into a directory.
//!
//! Everything is created relative to directory file descriptors with `O_NOFOLLOW`, names are
//! checked by the tree decoder (no `/`, `.` or `..`), and an existing symlink where a directory
//! should be is refused: a malicious repository or a prepared target cannot make restore write
//! outside the target. Files are written under a temporary name, checked (every blob against
//! its keyed hash, the total against the recorded size), given their metadata, then renamed.

mod blobs;
pub mod cluster_backup;
pub mod verify;

use crate::source::meta;
use anyhow::{bail, Context, Result};
use cairn_format::tree::{Node, NodeKind};
use cairn_format::Id;
use cairn_store::loader::Loader;
use globset::GlobSet;
use indicatif::ProgressBar;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Restore options.
pub struct Options {
    /// Only paths matching (or below a directory matching) these globs.
    pub includes: Option<GlobSet>,
    /// Replace existing files.
    pub overwrite: bool,
}

/// What a restore did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Regular files written (hard links included).
    pub files: u64,
    /// Directories created or updated.
    pub dirs: u64,
    /// Symlinks, FIFOs and devices created.
    pub others: u64,
    /// Content bytes written and verified.
    pub bytes: u64,
    /// Entries not restored, with the reason (sockets, devices without root).
    pub skipped: Vec<(String, String)>,
    /// Metadata that could not be applied (e.g. `security.*` xattrs without privilege).
    pub warnings: Vec<String>,
}

struct Level {
    fd: Option<OwnedFd>,
    node: Option<Node>,
}

struct Restorer<'a> {
    loader: &'a mut Loader,
    root: OwnedFd,
    tmp_counter: u64,
    opts: Options,
    progress: ProgressBar,
    is_root: bool,
    /// First restored path (components below the target) of each hard-link group.
    links: HashMap<(u64, u64), Vec<Vec<u8>>>,
    report: Report,
}

/// Restore the tree `root` into `target`.
pub fn restore(
    loader: &mut Loader,
    root: &Id,
    target: &Path,
    opts: Options,
    progress: ProgressBar,
) -> Result<Report> {
    match std::fs::symlink_metadata(target) {
        Ok(m) if !m.is_dir() && !m.file_type().is_symlink() => {
            bail!(
                "restore target {} exists and is not a directory",
                target.display()
            )
        }
        _ => {}
    }
    std::fs::create_dir_all(target)
        .with_context(|| format!("creating restore target {}", target.display()))?;
    let root_fd = rfs::open(
        target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    )
    .with_context(|| format!("opening restore target {}", target.display()))?;
    let level0 = rustix::io::dup(&root_fd)?;
    let mut r = Restorer {
        loader,
        root: root_fd,
        tmp_counter: 0,
        opts,
        progress,
        is_root: rustix::process::geteuid().is_root(),
        links: HashMap::new(),
        report: Report::default(),
    };
    let mut levels = vec![Level {
        fd: Some(level0),
        node: None,
    }];
    let mut path = Vec::new();
    let included = r.opts.includes.is_none();
    r.dir(root, &mut levels, &mut path, included)?;
    rfs::syncfs(&r.root).context("flushing restored files to disk")?;
    Ok(r.report)
}

fn display(path: &[Vec<u8>]) -> String {
    crate::output::path(path)
}

fn ts(ns: i64) -> Timespec {
    Timespec {
        tv_sec: ns.div_euclid(1_000_000_000),
        tv_nsec: ns.rem_euclid(1_000_000_000) as _,
    }
}

fn times(node: &Node) -> Timestamps {
    Timestamps {
        last_access: ts(node.mtime_ns),
        last_modification: ts(node.mtime_ns),
    }
}

impl Restorer<'_> {
    fn included(&self, path: &[Vec<u8>]) -> bool {
        self.opts
            .includes
            .as_ref()
            .is_none_or(|g| g.is_match(display(path)))
    }

    fn dir(
        &mut self,
        tree_id: &Id,
        levels: &mut Vec<Level>,
        path: &mut Vec<Vec<u8>>,
        included: bool,
    ) -> Result<()> {
        if levels.len() > cairn_store::trees::MAX_DEPTH {
            bail!(
                "snapshot nests directories deeper than {}",
                cairn_store::trees::MAX_DEPTH
            );
        }
        let tree = self.loader.load_tree(tree_id)?;
        for node in tree.nodes {
            path.push(node.name.clone());
            let inc = included || self.included(path);
            if node.kind == NodeKind::Dir {
                let sub = node.subtree.context("directory without subtree")?;
                levels.push(Level {
                    fd: None,
                    node: Some(node),
                });
                if inc {
                    self.ensure(levels, path)?;
                }
                self.dir(&sub, levels, path, inc)?;
                let level = levels.pop().expect("pushed above");
                if let (Some(fd), Some(node)) = (level.fd, level.node) {
                    self.apply_fd_meta(fd.as_fd(), &node, path)?;
                    self.report.dirs += 1;
                }
            } else if inc {
                self.ensure(levels, path)?;
                let dfd = levels[path.len() - 1].fd.as_ref().expect("ensured").as_fd();
                self.entry(dfd, &node, path)
                    .with_context(|| format!("restoring {}", display(path)))?;
            }
            path.pop();
        }
        Ok(())
    }

    /// Make sure every directory level for `path` (a directory path) is created and open.
    fn ensure(&mut self, levels: &mut [Level], path: &[Vec<u8>]) -> Result<()> {
        // levels[k] is the directory path[..k]; an entry at `path` lives in levels[len-1].
        let upto = levels.len();
        let first_missing = levels.iter().position(|l| l.fd.is_none()).unwrap_or(upto);
        for k in first_missing..upto {
            let name = &path[k - 1];
            let parent = levels[k - 1].fd.as_ref().expect("parent open");
            let fd = open_or_create_dir(parent.as_fd(), name)
                .with_context(|| format!("creating directory {}", display(&path[..k])))?;
            levels[k].fd = Some(fd);
        }
        Ok(())
    }

    fn entry(&mut self, dfd: BorrowedFd<'_>, node: &Node, path: &[Vec<u8>]) -> Result<()> {
        let name = OsStr::from_bytes(&node.name);
        if let Ok(st) = rfs::statat(dfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            if !self.opts.overwrite {
                bail!("{} already exists in the target; refusing to overwrite it (use --overwrite, or restore into an empty directory)", display(path));
            }
            if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
                bail!(
                    "{} is a directory in the target, the snapshot has a {:?}",
                    display(path),
                    node.kind
                );
            }
        }
        match node.kind {
            NodeKind::File => self.file(dfd, node, path),
            NodeKind::Symlink => {
                let target = node.target.as_deref().unwrap_or_default();
                replace_existing(dfd, name, self.opts.overwrite)?;
                rfs::symlinkat(OsStr::from_bytes(target), dfd, name)?;
                self.apply_path_meta(dfd, node, path);
                self.report.others += 1;
                Ok(())
            }
            NodeKind::Fifo | NodeKind::CharDevice | NodeKind::BlockDevice => {
                let ft = match node.kind {
                    NodeKind::Fifo => rfs::FileType::Fifo,
                    NodeKind::CharDevice => rfs::FileType::CharacterDevice,
                    _ => rfs::FileType::BlockDevice,
                };
                if ft != rfs::FileType::Fifo && !self.is_root {
                    self.report
                        .skipped
                        .push((display(path), "device nodes need root".into()));
                    return Ok(());
                }
                replace_existing(dfd, name, self.opts.overwrite)?;
                rfs::mknodat(
                    dfd,
                    name,
                    ft,
                    Mode::from_raw_mode(node.mode),
                    node.rdev as _,
                )?;
                self.apply_path_meta(dfd, node, path);
                self.report.others += 1;
                Ok(())
            }
            NodeKind::Socket => {
                self.report
                    .skipped
                    .push((display(path), "sockets are not restored".into()));
                Ok(())
            }
            NodeKind::Dir => unreachable!("directories are handled by the walk"),
        }
    }

    fn file(&mut self, dfd: BorrowedFd<'_>, node: &Node, path: &[Vec<u8>]) -> Result<()> {
        let name = OsStr::from_bytes(&node.name);
        if node.nlink > 1 {
            if let Some(first) = self.links.get(&(node.device, node.inode)) {
                let (first_name, first_dir) = first.split_last().expect("paths are not empty");
                // Reopen the first name's directory strictly below the target, refusing any
                // symlink on the way.
                let dir = if first_dir.is_empty() {
                    rustix::io::dup(&self.root)?
                } else {
                    rfs::openat2(
                        &self.root,
                        OsStr::from_bytes(&first_dir.join(&b'/')),
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                        rfs::ResolveFlags::BENEATH | rfs::ResolveFlags::NO_SYMLINKS,
                    )
                    .with_context(|| format!("reopening {} to link to it", display(first_dir)))?
                };
                replace_existing(dfd, name, self.opts.overwrite)?;
                rfs::linkat(
                    &dir,
                    OsStr::from_bytes(first_name),
                    dfd,
                    name,
                    AtFlags::empty(),
                )
                .with_context(|| format!("creating hard link to {}", display(first)))?;
                self.report.files += 1;
                return Ok(());
            }
        }
        self.tmp_counter += 1;
        let tmp = format!(".cairn-restore-{}-{}", std::process::id(), self.tmp_counter);
        let fd = rfs::openat(
            dfd,
            tmp.as_str(),
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::from_raw_mode(0o600),
        )?;
        let result = (|| -> Result<()> {
            let file = std::fs::File::from(fd);
            let progress = self.progress.clone();
            let written =
                blobs::write_content(self.loader, &file, &node.content, |n| progress.inc(n))?;
            if written != node.size {
                bail!(
                    "content is {written} bytes but the snapshot recorded {}: the snapshot is damaged",
                    node.size
                );
            }
            self.apply_fd_meta(file.as_fd(), node, path)?;
            self.report.bytes += written;
            rfs::renameat(dfd, tmp.as_str(), dfd, name)?;
            Ok(())
        })();
        if result.is_err() {
            let _ = rfs::unlinkat(dfd, tmp.as_str(), AtFlags::empty());
        }
        result?;
        if node.nlink > 1 {
            self.links.insert((node.device, node.inode), path.to_vec());
        }
        self.report.files += 1;
        Ok(())
    }

    /// Set every extended attribute of `node` with `set`; failures (e.g. `security.*` without
    /// privilege) become warnings, not errors.
    fn set_xattrs(
        &mut self,
        node: &Node,
        path: &[Vec<u8>],
        set: impl Fn(&OsStr, &[u8]) -> rustix::io::Result<()>,
    ) {
        for x in &node.xattrs {
            if let Err(e) = set(OsStr::from_bytes(&x.name), &x.value) {
                self.report.warnings.push(format!(
                    "{}: extended attribute {} not restored: {e}",
                    display(path),
                    String::from_utf8_lossy(&x.name)
                ));
            }
        }
    }

    /// Owner, xattrs, mode and times on an open file or directory.
    fn apply_fd_meta(&mut self, fd: BorrowedFd<'_>, node: &Node, path: &[Vec<u8>]) -> Result<()> {
        if self.is_root {
            rfs::fchown(
                fd,
                Some(rustix::fs::Uid::from_raw(meta::restore_uid(node))),
                Some(rustix::fs::Gid::from_raw(meta::restore_gid(node))),
            )
            .with_context(|| "setting owner".to_string())?;
        }
        self.set_xattrs(node, path, |name, value| {
            rfs::fsetxattr(fd, name, value, rfs::XattrFlags::empty())
        });
        rfs::fchmod(fd, Mode::from_raw_mode(node.mode))
            .with_context(|| "setting mode".to_string())?;
        rfs::futimens(fd, &times(node)).with_context(|| "setting times".to_string())?;
        Ok(())
    }

    /// Owner, mode and times on a symlink or special file, without following it.
    fn apply_path_meta(&mut self, dfd: BorrowedFd<'_>, node: &Node, path: &[Vec<u8>]) {
        let name = OsStr::from_bytes(&node.name);
        if self.is_root {
            if let Err(e) = rfs::chownat(
                dfd,
                name,
                Some(rustix::fs::Uid::from_raw(meta::restore_uid(node))),
                Some(rustix::fs::Gid::from_raw(meta::restore_gid(node))),
                AtFlags::SYMLINK_NOFOLLOW,
            ) {
                self.report
                    .warnings
                    .push(format!("{}: owner not restored: {e}", display(path)));
            }
        }
        // No descriptor can be opened on a symlink or FIFO for fsetxattr; name it through the
        // directory descriptor instead (lsetxattr does not follow the last link).
        let mut via_fd = format!("/proc/self/fd/{}/", dfd.as_raw_fd()).into_bytes();
        via_fd.extend_from_slice(&node.name);
        self.set_xattrs(node, path, |name, value| {
            rfs::lsetxattr(
                OsStr::from_bytes(&via_fd),
                name,
                value,
                rfs::XattrFlags::empty(),
            )
        });
        if node.kind != NodeKind::Symlink {
            let _ = rfs::chmodat(dfd, name, Mode::from_raw_mode(node.mode), AtFlags::empty());
        }
        if let Err(e) = rfs::utimensat(dfd, name, &times(node), AtFlags::SYMLINK_NOFOLLOW) {
            self.report
                .warnings
                .push(format!("{}: times not restored: {e}", display(path)));
        }
    }
}

/// Remove what is at `name` (not a directory) when overwriting is allowed.
fn replace_existing(dfd: BorrowedFd<'_>, name: &OsStr, overwrite: bool) -> Result<()> {
    if overwrite {
        match rfs::unlinkat(dfd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}

/// Create (or reuse) the directory `name` in `parent` and open it without following symlinks.
fn open_or_create_dir(parent: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd> {
    let name = OsStr::from_bytes(name);
    match rfs::mkdirat(parent, name, Mode::from_raw_mode(0o700)) {
        Ok(()) => {}
        Err(Errno::EXIST) => {
            let st = rfs::statat(parent, name, AtFlags::SYMLINK_NOFOLLOW)?;
            match rfs::FileType::from_raw_mode(st.st_mode) {
                rfs::FileType::Directory => {}
                rfs::FileType::Symlink => bail!("the target holds a symlink where the snapshot has a directory; refusing to restore through it"),
                other => bail!("the target holds a {other:?} where the snapshot has a directory"),
            }
        }
        Err(e) => return Err(e.into()),
    }
    Ok(rfs::openat(
        parent,
        name,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?)
}
