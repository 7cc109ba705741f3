//! Restoring a snapshot tree into a directory.
//!
//! Everything is created relative to directory file descriptors with `O_NOFOLLOW`, names are
//! checked by the tree decoder (no `/`, `.` or `..`), and an existing symlink where a directory
//! should be is refused: a malicious repository or a prepared target cannot make restore write
//! outside the target. Files are written under a temporary name, checked (every blob against
//! its keyed hash, the total against the recorded size), given their metadata, then renamed.
//!
//! A preflight ([`plan`]) walks the same entries against the target first, so a restore that
//! would stop half-way (something in the way, an `--include` matching nothing) writes nothing.
//! Directories that exist already keep their metadata unless `--overwrite`.

mod blobs;
pub mod cluster_backup;
mod content;
mod file_pool;
mod follow;
mod owners;
pub mod plan;
mod plan_file;

pub use content::FileContent;
pub use plan_file::LARGE_FILE_BLOBS;
pub mod privileged;
mod temporaries;
pub mod verify;
pub mod walk;

use crate::content_lists::UnreadLists;
use crate::loader::Loader;
use crate::progress::Progress;
use crate::{Error, Result};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Node, NodeKind};
use cairn_format::Id;
use rustix::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, Mode, OFlags, Timespec, Timestamps};
use rustix::io::Errno;
use serde::Serialize;
use std::collections::HashMap;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use thiserror::Error;
use walk::{Includes, Visit};

/// Why a restore stopped or refused to start. The causes of wrapped errors are part of the
/// message (as in [`crate::Error`]), so each prints whole.
#[derive(Debug, Error)]
pub enum RestoreError {
    /// The preflight found reasons not to start; nothing was written.
    #[error("{message}")]
    Refused {
        /// Why, with the first paths concerned.
        message: String,
        /// What to do about it, if there is something to suggest.
        hint: Option<String>,
    },
    /// The restore target is not a directory.
    #[error("restore target {} exists and is not a directory", .0.display())]
    TargetNotADirectory(PathBuf),
    /// Something appeared where the restore writes since the preflight.
    #[error("{0} already exists in the target; refusing to overwrite it (use --overwrite, or restore into an empty directory)")]
    Exists(String),
    /// A directory in the target where the snapshot has something else.
    #[error("{path} is a directory in the target, the snapshot has a {kind:?}")]
    DirectoryInTheWay {
        /// The entry.
        path: String,
        /// What the snapshot has.
        kind: NodeKind,
    },
    /// A symlink where the snapshot has a directory.
    #[error("the target holds a symlink where the snapshot has a directory; refusing to restore through it")]
    SymlinkInTheWay,
    /// A non-directory where the snapshot has a directory.
    #[error("the target holds a non-directory where the snapshot has a directory")]
    NotADirectory,
    /// The snapshot's tree contradicts itself.
    #[error("{0}: the snapshot is damaged")]
    Inconsistent(String),
    /// A restored file's content is not the size recorded.
    #[error(
        "content is {written} bytes but the snapshot recorded {recorded}: the snapshot is damaged"
    )]
    SizeMismatch {
        /// Bytes written.
        written: u64,
        /// Bytes recorded.
        recorded: u64,
    },
    /// A restored etcd database differs from what its backup recorded.
    #[error("{} {why}", path.display())]
    Unverified {
        /// The restored file.
        path: PathBuf,
        /// What differs.
        why: String,
    },
    /// A file failed its check and was removed.
    #[error("{} failed verification; it was not kept: {cause}", path.display())]
    NotKept {
        /// Where it would have gone.
        path: PathBuf,
        /// Why.
        cause: Box<Error>,
    },
    /// A restored etcd database failed its re-check and was renamed.
    #[error("the restored database failed verification and was renamed to {}: {cause}", path.display())]
    SetAside {
        /// Its new name.
        path: PathBuf,
        /// Why it failed.
        cause: Box<Error>,
    },
    /// Restoring one entry failed.
    #[error("restoring {path}: {cause}")]
    Entry {
        /// The entry's path in the snapshot.
        path: String,
        /// Why.
        cause: Box<Error>,
    },
    /// A system call on the target failed.
    #[error("{op}: {cause}")]
    System {
        /// What was being done.
        op: &'static str,
        /// The system's answer.
        cause: std::io::Error,
    },
    /// A worker thread of the restore stopped unexpectedly.
    #[error("{0}")]
    Worker(&'static str),
}

/// A [`RestoreError::System`] maker for `map_err`.
fn sys<E: Into<std::io::Error>>(op: &'static str) -> impl FnOnce(E) -> Error {
    move |cause| {
        RestoreError::System {
            op,
            cause: cause.into(),
        }
        .into()
    }
}

/// Restore options.
#[derive(Default)]
pub struct Options {
    /// Only paths matching (or below a directory matching) these globs.
    pub includes: Option<Includes>,
    /// Replace existing files and set the metadata of existing directories.
    pub overwrite: bool,
    /// Create privileged entries (see [`privileged`]) instead of refusing.
    pub allow_privileged: bool,
}

/// What a restore did.
#[derive(Debug, Default, Serialize)]
pub struct Report {
    /// Regular files written (hard links included).
    pub files: u64,
    /// Directories created, or updated (`--overwrite`).
    pub dirs: u64,
    /// Existing directories left as they were.
    pub kept_dirs: u64,
    /// Symlinks, FIFOs and devices created.
    pub others: u64,
    /// Content bytes written and verified.
    pub bytes: u64,
    /// Temporary files of killed restores removed from the directories restored into.
    pub stale_temporaries: u64,
    /// Entries not restored, with the reason (sockets, devices without root).
    pub skipped: Vec<(String, String)>,
    /// Metadata that could not be applied (e.g. `security.*` xattrs without privilege).
    pub warnings: Vec<String>,
    /// SELinux labels (`security.selinux`) the kernel or file system refused (no SELinux,
    /// no privilege, or a label the loaded policy does not know): reported once, with
    /// `restorecon -R` as the remedy.
    pub selinux_labels_not_set: u64,
    /// The etcd database restored (etcd and cluster snapshots), re-checked from its bytes as
    /// they were written: its path and what was checked (size, sha256 trailer, bbolt facts).
    #[serde(skip)]
    pub database: Option<(PathBuf, Vec<String>)>,
}

impl Report {
    /// Add what `other` did.
    fn merge(&mut self, other: Report) {
        self.files += other.files;
        self.dirs += other.dirs;
        self.kept_dirs += other.kept_dirs;
        self.others += other.others;
        self.bytes += other.bytes;
        self.stale_temporaries += other.stale_temporaries;
        self.skipped.extend(other.skipped);
        self.warnings.extend(other.warnings);
        self.selinux_labels_not_set += other.selinux_labels_not_set;
    }
}

/// A directory of the snapshot on the way down: open once something is restored in it.
struct Level {
    fd: Option<Arc<OwnedFd>>,
    /// What leaving it does.
    finish: Finish,
}

/// A directory left whose metadata waits: its descriptor, node, path and what to do.
type Deferred = (Arc<OwnedFd>, Node, Vec<Vec<u8>>, Finish);

/// What leaving a directory does once everything below it is restored.
#[derive(Clone, Copy)]
enum Finish {
    /// Set the snapshot's metadata (the restore made it, or `--overwrite`).
    Meta,
    /// It existed: put back its own modification time, which restoring into it changed.
    Keep(Timespec),
}

struct Restorer {
    root: OwnedFd,
    tmp_counter: u64,
    overwrite: bool,
    progress: Progress,
    is_root: bool,
    /// Owner names → ids on the host being restored.
    owners: Arc<owners::Owners>,
    /// Threads writing small files (see [`file_pool`]).
    pool: Option<file_pool::Pool>,
    /// Directories left whose metadata waits for the files in flight, in the order left.
    deferred: Vec<Deferred>,
    /// `levels[k]`: the directory at the first `k` path components.
    levels: Vec<Level>,
    /// First restored path (components below the target) of each hard-link group.
    links: HashMap<(u64, u64), Vec<Vec<u8>>>,
    /// The etcd database, checked against the snapshot's facts as it is written (see
    /// [`verify::database`]).
    database: Option<Database>,
    report: Report,
}

/// Restore the tree of `snap` into `target`. Refuses before writing anything when the
/// preflight ([`plan::plan`]) finds entries in the way or `--include` patterns that match
/// nothing.
pub fn restore(
    loader: &mut Loader,
    snap: &Snapshot,
    target: &Path,
    mut opts: Options,
    progress: Progress,
) -> Result<Report> {
    plan::plan(
        loader,
        snap,
        target,
        &mut opts.includes,
        opts.overwrite,
        None,
    )?
    .check(opts.overwrite, opts.allow_privileged)?;
    std::fs::create_dir_all(target)
        .map_err(Error::file("creating restore target", target.display()))?;
    let root_fd = open_target(target)?.ok_or_else(|| Error::File {
        op: "opening restore target",
        path: target.display().to_string(),
        cause: std::io::ErrorKind::NotFound.into(),
    })?;
    let stale_temporaries = remove_stale(root_fd.as_fd(), &[])?;
    let is_root = rustix::process::geteuid().is_root();
    let owners = Arc::new(owners::Owners::for_target(target));
    let threads = std::thread::available_parallelism().map_or(2, |n| n.get());
    let write: Arc<file_pool::WriteFile> = {
        let (owners, progress, overwrite) = (owners.clone(), progress.clone(), opts.overwrite);
        Arc::new(move |loader, job, report| {
            let m = Meta {
                is_root,
                owners: &owners,
                overwrite,
            };
            write_file(
                loader,
                job.dir.as_fd(),
                &job.tmp,
                &job.node,
                FileContent::Ids((&job.node.content[..]).into()),
                &job.path,
                &m,
                &progress,
                report,
                None,
            )
            .map(drop)
        })
    };
    let pool = file_pool::Pool::new(threads, || loader.fork(), write);
    let mut r = Restorer {
        levels: vec![Level {
            fd: Some(Arc::new(
                rustix::io::dup(&root_fd).map_err(sys("duplicating a descriptor"))?,
            )),
            finish: Finish::Meta,
        }],
        root: root_fd,
        tmp_counter: 0,
        overwrite: opts.overwrite,
        progress,
        is_root,
        owners,
        pool: Some(pool),
        deferred: Vec::new(),
        links: HashMap::new(),
        database: verify::database(snap).map(|path| Database {
            at: path
                .iter()
                .fold(target.to_path_buf(), |p, c| p.join(OsStr::from_bytes(c))),
            path,
            snap: snap.clone(),
        }),
        report: Report {
            stale_temporaries,
            ..Report::default()
        },
    };
    walk::walk(loader, snap, &mut opts.includes, &mut r)?;
    r.finish_deferred()?;
    rfs::syncfs(&r.root).map_err(Error::file("flushing to disk", target.display()))?;
    Ok(r.report)
}

/// The etcd database of the snapshot restored: its path components below the target, where
/// that is, and the snapshot recording its facts.
struct Database {
    path: Vec<Vec<u8>>,
    at: PathBuf,
    snap: Snapshot,
}

/// What setting an entry's owner needs.
struct Meta<'a> {
    is_root: bool,
    owners: &'a owners::Owners,
    /// Whether a file found in place (since the preflight) may be replaced.
    overwrite: bool,
}

/// Rename the finished temporary `tmp` of `dir` to `name` (the entry at `path`). Without
/// `overwrite` an entry there is not replaced: the preflight found none, so one that
/// appeared since (a second restore into the same target) is reported, not overwritten.
pub(super) fn rename_into_place(
    dir: BorrowedFd<'_>,
    tmp: &OsStr,
    name: &OsStr,
    overwrite: bool,
    path: impl Fn() -> String,
) -> Result<()> {
    let exists = |e| match e {
        Errno::EXIST => RestoreError::Exists(path()).into(),
        e => sys("renaming the temporary file into place")(e),
    };
    if overwrite {
        return rfs::renameat(dir, tmp, dir, name).map_err(exists);
    }
    match rfs::renameat_with(dir, tmp, dir, name, rfs::RenameFlags::NOREPLACE) {
        // File systems without RENAME_NOREPLACE (some NFS servers): a link cannot replace
        // either; where there are no links either (some FUSE and SMB mounts), a look first,
        // which a second restore can race.
        Err(Errno::INVAL | Errno::NOSYS) => {
            match rfs::linkat(dir, tmp, dir, name, AtFlags::empty()) {
                Ok(()) => rfs::unlinkat(dir, tmp, AtFlags::empty())
                    .map_err(sys("removing the temporary file")),
                Err(Errno::PERM | Errno::OPNOTSUPP | Errno::NOSYS) => {
                    match rfs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                        Err(Errno::NOENT) => rfs::renameat(dir, tmp, dir, name).map_err(exists),
                        Ok(_) => Err(exists(Errno::EXIST)),
                        Err(e) => Err(sys("looking in the target")(e)),
                    }
                }
                Err(e) => Err(exists(e)),
            }
        }
        other => other.map_err(exists),
    }
}

/// Open the restore target directory (following a symlink: it is the operator's own path);
/// `None` if it does not exist.
fn open_target(target: &Path) -> Result<Option<OwnedFd>> {
    match rfs::open(
        target,
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::NOENT) => Ok(None),
        Err(Errno::NOTDIR) => Err(RestoreError::TargetNotADirectory(target.to_path_buf()).into()),
        Err(e) => Err(Error::file("opening restore target", target.display())(e)),
    }
}

/// Remove killed restores' temporaries from the directory `dir` at `path`; how many.
fn remove_stale(dir: BorrowedFd<'_>, path: &[Vec<u8>]) -> Result<u64> {
    temporaries::remove_stale(dir).map_err(Error::file(
        "removing stale temporary files from",
        display(path),
    ))
}

/// Is this the kernel refusing an SELinux label (no SELinux, no privilege, a label the loaded
/// policy does not know), which `restorecon` fixes, rather than some other failure?
fn label_refused(name: &[u8], e: Errno) -> bool {
    name == b"security.selinux"
        && matches!(
            e,
            Errno::OPNOTSUPP | Errno::PERM | Errno::INVAL | Errno::ACCESS
        )
}

/// Why `node` is not restored here, if it is not.
fn skip_reason(node: &Node, is_root: bool) -> Option<&'static str> {
    match node.kind {
        NodeKind::Socket => Some("sockets are not restored"),
        NodeKind::CharDevice | NodeKind::BlockDevice if !is_root => Some("device nodes need root"),
        _ => None,
    }
}

/// `cause` of restoring the entry at `path`, naming it once (an inner entry already named
/// keeps its name).
fn entry_error(path: &[Vec<u8>], cause: Error) -> Error {
    match cause {
        Error::Restore(RestoreError::Entry { .. }) => cause,
        cause => RestoreError::Entry {
            path: display(path),
            cause: Box::new(cause),
        }
        .into(),
    }
}

fn display(path: &[Vec<u8>]) -> String {
    crate::trees::display_path(path)
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

impl Visit for Restorer {
    fn enter(&mut self, _node: &Node, path: &[Vec<u8>], included: bool) -> Result<()> {
        self.levels.push(Level {
            fd: None,
            finish: Finish::Meta,
        });
        if included {
            self.ensure(path)?;
        }
        Ok(())
    }

    fn leave(&mut self, node: Node, path: &[Vec<u8>], _included: bool) -> Result<()> {
        let level = self
            .levels
            .pop()
            .ok_or(RestoreError::Worker("directory levels out of step"))?;
        let Some(fd) = level.fd else {
            return Ok(());
        };
        if self.pool.is_some() {
            // Files in flight may still be made in it: its metadata comes after them.
            self.deferred.push((fd, node, path.to_vec(), level.finish));
            if self.deferred.len() >= file_pool::DEFERRED {
                self.finish_deferred()?;
            }
            return Ok(());
        }
        self.finish_dir(&fd, &node, path, level.finish)
    }

    fn entry(
        &mut self,
        loader: &mut Loader,
        node: &mut Node,
        path: &[Vec<u8>],
        tree: &Id,
    ) -> Result<()> {
        if let Some(why) = skip_reason(node, self.is_root) {
            self.report.skipped.push((display(path), why.into()));
            return Ok(());
        }
        self.ensure(path)?;
        let level = path.len() - 1;
        let dir = self.levels[level]
            .fd
            .clone()
            .ok_or(RestoreError::Worker("directory not open"))?;
        self.write_entry(loader, &dir, node, *tree, path)
            .map_err(|e| entry_error(path, e))
    }
}

impl Restorer {
    /// Wait for the files in flight, then apply the deferred directories' metadata.
    fn finish_deferred(&mut self) -> Result<()> {
        if let Some(pool) = &self.pool {
            pool.wait(&mut self.report)?;
        }
        for (fd, node, path, finish) in std::mem::take(&mut self.deferred) {
            self.finish_dir(&fd, &node, &path, finish)?;
        }
        Ok(())
    }

    /// Leaving directory `fd` at `path`: apply its metadata, or put back its time.
    fn finish_dir(
        &mut self,
        fd: &OwnedFd,
        node: &Node,
        path: &[Vec<u8>],
        finish: Finish,
    ) -> Result<()> {
        match finish {
            Finish::Meta => {
                self.apply_fd_meta(fd.as_fd(), node, path)
                    .map_err(|e| entry_error(path, e))?;
                self.report.dirs += 1;
            }
            Finish::Keep(mtime) => {
                if let Err(e) = keep_mtime(fd.as_fd(), mtime) {
                    self.report.warnings.push(format!(
                        "{}: modification time not put back: {e}",
                        display(path)
                    ));
                }
                self.report.kept_dirs += 1;
            }
        }
        Ok(())
    }

    /// Make sure the directories holding `path` (and `path` itself when it is a directory
    /// being entered) exist and are open; stale temporaries are removed from existing ones.
    fn ensure(&mut self, path: &[Vec<u8>]) -> Result<()> {
        let upto = self.levels.len();
        let first_missing = self
            .levels
            .iter()
            .position(|l| l.fd.is_none())
            .unwrap_or(upto);
        for k in first_missing..upto {
            let parent = self.levels[k - 1]
                .fd
                .as_ref()
                .ok_or(RestoreError::Worker("parent not open"))?;
            let (fd, created) = open_or_create_dir(parent.as_fd(), &path[k - 1])
                .map_err(|e| entry_error(&path[..k], e))?;
            if !created {
                self.report.stale_temporaries += remove_stale(fd.as_fd(), &path[..k])?;
            }
            let finish = if created || self.overwrite {
                Finish::Meta
            } else {
                Finish::Keep(mtime(fd.as_fd())?)
            };
            self.levels[k] = Level {
                fd: Some(Arc::new(fd)),
                finish,
            };
        }
        Ok(())
    }

    /// Write the entry `node` of the tree `tree`.
    fn write_entry(
        &mut self,
        loader: &mut Loader,
        dir: &Arc<OwnedFd>,
        node: &mut Node,
        tree: Id,
        path: &[Vec<u8>],
    ) -> Result<()> {
        let dfd = dir.as_fd();
        let name = OsStr::from_bytes(&node.name);
        // The preflight found the way clear; this re-check catches what changed since.
        if let Ok(st) = rfs::statat(dfd, name, AtFlags::SYMLINK_NOFOLLOW) {
            if !self.overwrite {
                return Err(RestoreError::Exists(display(path)).into());
            }
            if rfs::FileType::from_raw_mode(st.st_mode) == rfs::FileType::Directory {
                return Err(RestoreError::DirectoryInTheWay {
                    path: display(path),
                    kind: node.kind,
                }
                .into());
            }
        }
        let special = match node.kind {
            NodeKind::File => return self.file(loader, dir, node, tree, path),
            NodeKind::Symlink => {
                let target = node.target.as_deref().unwrap_or_default();
                replace_existing(dfd, name, self.overwrite)?;
                rfs::symlinkat(OsStr::from_bytes(target), dfd, name)
                    .map_err(sys("creating the symlink"))?;
                None
            }
            NodeKind::Fifo => Some(rfs::FileType::Fifo),
            NodeKind::CharDevice => Some(rfs::FileType::CharacterDevice),
            NodeKind::BlockDevice => Some(rfs::FileType::BlockDevice),
            NodeKind::Socket | NodeKind::Dir => {
                return Err(RestoreError::Inconsistent(format!(
                    "a {:?} is not restored as an entry",
                    node.kind
                ))
                .into())
            }
        };
        if let Some(ft) = special {
            replace_existing(dfd, name, self.overwrite)?;
            rfs::mknodat(
                dfd,
                name,
                ft,
                Mode::from_raw_mode(node.mode),
                node.rdev as _,
            )
            .map_err(sys("creating the node"))?;
        }
        self.apply_path_meta(dfd, node, path);
        self.report.others += 1;
        Ok(())
    }

    fn file(
        &mut self,
        loader: &mut Loader,
        dir: &Arc<OwnedFd>,
        node: &mut Node,
        tree: Id,
        path: &[Vec<u8>],
    ) -> Result<()> {
        let dfd = dir.as_fd();
        let name = OsStr::from_bytes(&node.name);
        if node.nlink > 1 {
            if let Some(first) = self.links.get(&(node.device, node.inode)) {
                let (first_name, first_dir) = first.split_last().expect("paths are not empty");
                // Reopen the first name's directory strictly below the target, refusing any
                // symlink on the way.
                let dir = if first_dir.is_empty() {
                    rustix::io::dup(&self.root).map_err(sys("duplicating a descriptor"))?
                } else {
                    rfs::openat2(
                        &self.root,
                        OsStr::from_bytes(&first_dir.join(&b'/')),
                        OFlags::PATH | OFlags::DIRECTORY | OFlags::CLOEXEC,
                        Mode::empty(),
                        rfs::ResolveFlags::BENEATH | rfs::ResolveFlags::NO_SYMLINKS,
                    )
                    .map_err(Error::file("reopening to link to it", display(first_dir)))?
                };
                replace_existing(dfd, name, self.overwrite)?;
                rfs::linkat(
                    &dir,
                    OsStr::from_bytes(first_name),
                    dfd,
                    name,
                    AtFlags::empty(),
                )
                .map_err(Error::file("creating hard link to", display(first)))?;
                self.report.files += 1;
                return Ok(());
            }
        }
        self.tmp_counter += 1;
        let tmp = temporaries::name(self.tmp_counter);
        let database = self.database.as_ref().filter(|db| db.path == path);
        // Hard links need their first name in place before the next, and the etcd database
        // its check: written here.
        if let (Some(pool), 1, true, None) = (
            &self.pool,
            node.nlink,
            node.size <= file_pool::SMALL,
            database,
        ) {
            // A small file's lists (if any) are read here, at most a MiB of content's ids.
            if let Some(lists) = UnreadLists::take(loader, tree, node) {
                node.content = lists.into_ids()?;
            }
            return pool.submit(file_pool::Job {
                dir: dir.clone(),
                tmp,
                node: node.clone(),
                path: path.to_vec(),
            });
        }
        let m = Meta {
            is_root: self.is_root,
            owners: &self.owners,
            overwrite: self.overwrite,
        };
        // The walk's copy of the node: its ids are handed over, freed as they are placed (or
        // its lists, read one at a time).
        let content = FileContent::take(loader, tree, node);
        let checked = write_file(
            loader,
            dfd,
            &tmp,
            node,
            content,
            path,
            &m,
            &self.progress,
            &mut self.report,
            database,
        )?;
        if let (Some(checks), Some(db)) = (checked, database) {
            self.report.database = Some((db.at.clone(), checks));
        }
        if node.nlink > 1 {
            self.links.insert((node.device, node.inode), path.to_vec());
        }
        Ok(())
    }

    /// Set every extended attribute of `node` with `set` (see [`set_xattrs`]).
    fn set_xattrs(
        &mut self,
        node: &Node,
        path: &[Vec<u8>],
        set: impl Fn(&OsStr, &[u8]) -> rustix::io::Result<()>,
    ) {
        set_xattrs(&mut self.report, node, path, set)
    }

    /// Owner, xattrs, mode and times on an open file or directory.
    fn apply_fd_meta(&mut self, fd: BorrowedFd<'_>, node: &Node, path: &[Vec<u8>]) -> Result<()> {
        let m = Meta {
            is_root: self.is_root,
            owners: &self.owners,
            overwrite: self.overwrite,
        };
        fd_meta(fd, node, path, &m, &mut self.report)
    }

    /// Owner, mode and times on a symlink or special file, without following it.
    fn apply_path_meta(&mut self, dfd: BorrowedFd<'_>, node: &Node, path: &[Vec<u8>]) {
        let name = OsStr::from_bytes(&node.name);
        if self.is_root {
            if let Err(e) = rfs::chownat(
                dfd,
                name,
                Some(rustix::fs::Uid::from_raw(self.owners.uid(node))),
                Some(rustix::fs::Gid::from_raw(self.owners.gid(node))),
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
            if let Err(e) = chmod_special(dfd, name, node) {
                self.report
                    .warnings
                    .push(format!("{}: mode not restored: {e}", display(path)));
            }
        }
        if let Err(e) = rfs::utimensat(dfd, name, &times(node), AtFlags::SYMLINK_NOFOLLOW) {
            self.report
                .warnings
                .push(format!("{}: times not restored: {e}", display(path)));
        }
    }
}

/// Write the file `node` at `path` into `dfd` through the temporary name `tmp`: its content
/// (every blob checked; owned ids are freed as they are placed), size check, metadata,
/// rename; the temporary is removed on failure.
///
/// With `database` (the etcd snapshot `node` is the database of), the file is read back behind
/// the writes and checked against the snapshot's facts before it is renamed into place;
/// returns what was checked. A file failing that check is renamed to
/// `<name>.failed-verification` instead, never left under its name.
#[allow(clippy::too_many_arguments)]
fn write_file(
    loader: &mut Loader,
    dfd: BorrowedFd<'_>,
    tmp: &str,
    node: &Node,
    content: FileContent<'_>,
    path: &[Vec<u8>],
    m: &Meta<'_>,
    progress: &Progress,
    report: &mut Report,
    database: Option<&Database>,
) -> Result<Option<Vec<String>>> {
    // Readable too: the database's check reads it back behind the writes.
    let fd = rfs::openat(
        dfd,
        tmp,
        OFlags::RDWR | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_raw_mode(0o600),
    )
    .map_err(sys("creating a temporary file"))?;
    let result = (|| -> Result<Option<Vec<String>>> {
        let file = std::fs::File::from(fd);
        let (written, check) = match database {
            Some(_) => {
                let (n, check) =
                    verify::write_followed(loader, &file, content, |n| progress.inc(n))?;
                (n, Some(check))
            }
            None => (
                blobs::write_content(loader, &file, content, |n| progress.inc(n), None)?,
                None,
            ),
        };
        if written != node.size {
            return Err(RestoreError::SizeMismatch {
                written,
                recorded: node.size,
            }
            .into());
        }
        let checked = match (database, check) {
            (Some(db), Some(check)) => match verify::etcd_digest(&db.at, &db.snap, check) {
                Ok(checks) => Some(checks),
                Err(cause) => return Err(set_aside(dfd, tmp, node, &db.at, cause)),
            },
            _ => None,
        };
        fd_meta(file.as_fd(), node, path, m, report)?;
        report.bytes += written;
        rename_into_place(
            dfd,
            OsStr::new(tmp),
            OsStr::from_bytes(&node.name),
            m.overwrite,
            || display(path),
        )?;
        Ok(checked)
    })();
    if result.is_err() {
        let _ = rfs::unlinkat(dfd, tmp, AtFlags::empty());
    }
    let checked = result?;
    report.files += 1;
    Ok(checked)
}

/// A database restored to the temporary `tmp` failed its check (`cause`): rename it to
/// `<name>.failed-verification` next to where it belongs, for inspection; when that fails
/// it is removed (by the caller) and not kept.
fn set_aside(dfd: BorrowedFd<'_>, tmp: &str, node: &Node, at: &Path, cause: Error) -> Error {
    let mut aside = node.name.clone();
    aside.extend_from_slice(b".failed-verification");
    let cause = Box::new(cause);
    match rfs::renameat(dfd, tmp, dfd, OsStr::from_bytes(&aside)) {
        Ok(()) => RestoreError::SetAside {
            path: at.with_file_name(OsStr::from_bytes(&aside)),
            cause,
        },
        Err(_) => RestoreError::NotKept {
            path: at.to_path_buf(),
            cause,
        },
    }
    .into()
}

/// Set every extended attribute of `node` with `set`; failures (e.g. `security.*` without
/// privilege) become warnings in `report`, not errors.
fn set_xattrs(
    report: &mut Report,
    node: &Node,
    path: &[Vec<u8>],
    set: impl Fn(&OsStr, &[u8]) -> rustix::io::Result<()>,
) {
    for x in &node.xattrs {
        if let Err(e) = set(OsStr::from_bytes(&x.name), &x.value) {
            if label_refused(&x.name, e) {
                report.selinux_labels_not_set += 1;
                continue;
            }
            report.warnings.push(format!(
                "{}: extended attribute {} not restored: {e}",
                display(path),
                String::from_utf8_lossy(&x.name)
            ));
        }
    }
}

/// Owner, xattrs, mode and times on an open file or directory.
fn fd_meta(
    fd: BorrowedFd<'_>,
    node: &Node,
    path: &[Vec<u8>],
    m: &Meta<'_>,
    report: &mut Report,
) -> Result<()> {
    if m.is_root {
        rfs::fchown(
            fd,
            Some(rustix::fs::Uid::from_raw(m.owners.uid(node))),
            Some(rustix::fs::Gid::from_raw(m.owners.gid(node))),
        )
        .map_err(sys("setting owner"))?;
    }
    set_xattrs(report, node, path, |name, value| {
        rfs::fsetxattr(fd, name, value, rfs::XattrFlags::empty())
    });
    rfs::fchmod(fd, Mode::from_raw_mode(node.mode)).map_err(sys("setting mode"))?;
    rfs::futimens(fd, &times(node)).map_err(sys("setting times"))?;
    Ok(())
}

/// Set the mode of the FIFO or device node `name` in `dfd` without following a symlink: it is
/// opened as a path (`O_PATH|O_NOFOLLOW`, which neither blocks on a FIFO nor opens a device),
/// checked to be the kind of node restored, and changed through that descriptor, so a symlink
/// swapped in after it was created cannot redirect the change to another file.
fn chmod_special(dfd: BorrowedFd<'_>, name: &OsStr, node: &Node) -> rustix::io::Result<()> {
    let fd = rfs::openat(
        dfd,
        name,
        OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    )?;
    let expected = match node.kind {
        NodeKind::Fifo => rfs::FileType::Fifo,
        NodeKind::CharDevice => rfs::FileType::CharacterDevice,
        NodeKind::BlockDevice => rfs::FileType::BlockDevice,
        _ => return Err(Errno::INVAL),
    };
    if rfs::FileType::from_raw_mode(rfs::fstat(&fd)?.st_mode) != expected {
        return Err(Errno::EXIST);
    }
    // fchmod refuses O_PATH descriptors; the descriptor's /proc link names that very inode.
    let via = format!("/proc/self/fd/{}", fd.as_raw_fd());
    rfs::chmodat(
        rfs::CWD,
        via.as_str(),
        Mode::from_raw_mode(node.mode),
        AtFlags::empty(),
    )
}

/// Remove what is at `name` (not a directory) when overwriting is allowed.
fn replace_existing(dfd: BorrowedFd<'_>, name: &OsStr, overwrite: bool) -> Result<()> {
    if overwrite {
        match rfs::unlinkat(dfd, name, AtFlags::empty()) {
            Ok(()) | Err(Errno::NOENT) => {}
            Err(e) => return Err(sys("removing what is in the way")(e)),
        }
    }
    Ok(())
}

/// The modification time of `fd`.
fn mtime(fd: BorrowedFd<'_>) -> Result<Timespec> {
    let st = rfs::fstat(fd).map_err(sys("reading a directory's time"))?;
    Ok(Timespec {
        tv_sec: st.st_mtime as _,
        tv_nsec: st.st_mtime_nsec as _,
    })
}

/// Set the modification time of `fd` back to `was` if it changed (the access time is left).
fn keep_mtime(fd: BorrowedFd<'_>, was: Timespec) -> Result<()> {
    let now = mtime(fd)?;
    if (now.tv_sec, now.tv_nsec) != (was.tv_sec, was.tv_nsec) {
        let omit = Timespec {
            tv_sec: 0,
            tv_nsec: rfs::UTIME_OMIT,
        };
        rfs::futimens(
            fd,
            &Timestamps {
                last_access: omit,
                last_modification: was,
            },
        )
        .map_err(sys("putting back a directory's time"))?;
    }
    Ok(())
}

/// Open the existing directory `name` in `parent`, never through a symlink.
fn open_dir(parent: BorrowedFd<'_>, name: &[u8]) -> Result<OwnedFd> {
    match rfs::openat(
        parent,
        OsStr::from_bytes(name),
        OFlags::DIRECTORY | OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::empty(),
    ) {
        Ok(fd) => Ok(fd),
        Err(Errno::LOOP) => Err(RestoreError::SymlinkInTheWay.into()),
        Err(Errno::NOTDIR) => Err(RestoreError::NotADirectory.into()),
        Err(e) => Err(sys("opening a directory")(e)),
    }
}

/// Create the directory `name` in `parent` (or reuse an existing one) and open it; true when
/// it was created.
fn open_or_create_dir(parent: BorrowedFd<'_>, name: &[u8]) -> Result<(OwnedFd, bool)> {
    let created = match rfs::mkdirat(parent, OsStr::from_bytes(name), Mode::from_raw_mode(0o700)) {
        Ok(()) => true,
        Err(Errno::EXIST) => false,
        Err(e) => return Err(sys("creating a directory")(e)),
    };
    Ok((open_dir(parent, name)?, created))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::index::Index;
    use crate::saver::Saver;
    use cairn_format::pack::PackKind;
    use cairn_format::snapshot::{SnapshotStats, SourceKind};
    use cairn_format::tree::Tree;

    /// Restore, into a new directory made ready by `prepare`, an etcd snapshot of a file
    /// `snapshot_1.db` holding 8 bytes, recorded as 99 bytes. Returns the directory and the
    /// error.
    fn restore_mismatched(prepare: impl FnOnce(&Path)) -> (tempfile::TempDir, String) {
        let repo = tempfile::tempdir().unwrap();
        let target = tempfile::tempdir().unwrap();
        let id = age::x25519::Identity::generate();
        let repo = crate::test_repo::create(repo.path(), &id, None);
        let mut saver = Saver::new(repo.clone(), Arc::new(Index::default()), 1);
        let mut node = Node::new(b"snapshot_1.db".to_vec(), NodeKind::File);
        node.content.push(
            saver
                .add_blob(PackKind::Data, b"not etcd".to_vec())
                .unwrap(),
        );
        node.size = 8;
        node.mode = 0o600;
        let tree = saver.save_tree(&mut Tree { nodes: vec![node] }).unwrap();
        saver.finish().unwrap();
        let snap = Snapshot {
            time_ns: 1,
            host: "h".into(),
            username: "u".into(),
            source: SourceKind::Etcd,
            paths: vec!["/snapshot_1.db".into()],
            tags: Vec::new(),
            tree,
            parent: None,
            stats: SnapshotStats::default(),
            program: "test".into(),
            facts: vec![
                ("etcd.file".into(), "snapshot_1.db".into()),
                ("etcd.size".into(), "99".into()),
            ],
        };
        let index = Arc::new(Index::load(&repo).unwrap());
        prepare(target.path());
        let err = restore(
            &mut Loader::new(repo, index),
            &snap,
            target.path(),
            Options::default(),
            Progress::none(),
        )
        .unwrap_err();
        (target, err.to_string())
    }

    #[test]
    fn a_database_failing_its_check_is_set_aside_not_restored() {
        let (target, text) = restore_mismatched(|_| {});
        assert!(text.contains("the backup recorded 99"), "{text}");
        assert!(text.contains("is 8 bytes"), "{text}");
        assert!(text.contains("snapshot_1.db.failed-verification"), "{text}");
        assert!(!target.path().join("snapshot_1.db").exists());
        assert_eq!(
            std::fs::read(target.path().join("snapshot_1.db.failed-verification")).unwrap(),
            b"not etcd"
        );
    }

    #[test]
    fn a_database_that_cannot_be_set_aside_is_not_kept() {
        // A non-empty directory under the aside name: rename(2) cannot replace it, even as root.
        let (target, text) = restore_mismatched(|dir| {
            let aside = dir.join("snapshot_1.db.failed-verification");
            std::fs::create_dir(&aside).unwrap();
            std::fs::write(aside.join("x"), b"").unwrap();
        });
        assert!(text.contains("it was not kept"), "{text}");
        assert!(text.contains("the backup recorded 99"), "{text}");
        assert!(!target.path().join("snapshot_1.db").exists());
        let left: Vec<_> = std::fs::read_dir(target.path()).unwrap().collect();
        assert_eq!(left.len(), 1, "only the directory in the way is left");
    }

    #[test]
    fn only_refused_selinux_labels_are_counted() {
        assert!(label_refused(b"security.selinux", Errno::OPNOTSUPP));
        assert!(label_refused(b"security.selinux", Errno::PERM));
        assert!(label_refused(b"security.selinux", Errno::INVAL));
        assert!(!label_refused(b"security.selinux", Errno::NOSPC));
        assert!(!label_refused(b"user.x", Errno::OPNOTSUPP));
        assert!(!label_refused(b"security.capability", Errno::PERM));
    }

    #[test]
    fn a_file_that_appeared_since_the_preflight_is_not_replaced() {
        let dir = tempfile::tempdir().unwrap();
        let fd = open_target(dir.path()).unwrap().unwrap();
        std::fs::write(dir.path().join("tmp"), b"restored").unwrap();
        std::fs::write(dir.path().join("f"), b"another restore's").unwrap();
        let err = rename_into_place(
            fd.as_fd(),
            OsStr::new("tmp"),
            OsStr::new("f"),
            false,
            || "/f".into(),
        )
        .unwrap_err();
        assert!(err.to_string().contains("/f already exists"), "{err}");
        assert_eq!(
            std::fs::read(dir.path().join("f")).unwrap(),
            b"another restore's"
        );
        rename_into_place(fd.as_fd(), OsStr::new("tmp"), OsStr::new("f"), true, || {
            "/f".into()
        })
        .unwrap();
        assert_eq!(std::fs::read(dir.path().join("f")).unwrap(), b"restored");
        assert!(!dir.path().join("tmp").exists());
    }
}
