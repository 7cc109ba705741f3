//! The restore preflight: what a restore would write, keep or replace in its target, found
//! before anything is written, so a restore that cannot complete refuses as a whole.
//!
//! The target is probed the way restore writes it: relative to directory descriptors, never
//! following a symlink below the target. Memory stays bounded: steps are streamed to a sink
//! and only the first [`LISTED`] conflicts are kept.

use super::privileged::{self, Scope};
use super::walk::{self, Includes, Visit};
use super::{display, skip_reason};
use super::{sys, RestoreError};
use crate::loader::Loader;
use crate::{Error, Result};
use cairn_format::snapshot::Snapshot;
use cairn_format::tree::{Node, NodeKind};
use cairn_format::Id;
use rustix::fd::{AsFd, OwnedFd};
use rustix::fs::{self as rfs, AtFlags, FileType};
use rustix::io::Errno;
use serde::Serialize;
use std::ffi::OsStr;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// How many conflicts a refusal names.
pub const LISTED: usize = 20;

/// What restore would do with one entry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Action {
    /// Create it (nothing is there).
    New,
    /// An existing directory, left as it is.
    Keep,
    /// An existing directory whose metadata is set (`--overwrite`).
    Update,
    /// Replace an existing non-directory (`--overwrite`).
    Replace,
    /// Not restorable here (sockets; device nodes without root).
    Skip,
    /// In the way: the restore is refused.
    Conflict,
}

impl Action {
    /// The word a dry run prints.
    pub fn word(self) -> &'static str {
        match self {
            Action::New => "new",
            Action::Keep => "keep",
            Action::Update => "update",
            Action::Replace => "replace",
            Action::Skip => "skip",
            Action::Conflict => "conflict",
        }
    }
}

/// One entry of the plan.
#[derive(Debug, Serialize)]
pub struct Step<'a> {
    /// What would happen.
    pub action: Action,
    /// The snapshot path.
    pub path: &'a str,
    /// `file`, `dir`, `symlink`, …
    pub kind: &'static str,
    /// Why (skips and conflicts).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reason: Option<&'a str>,
}

/// Receives each [`Step`] as the preflight finds it.
pub type Sink<'s> = &'s mut dyn FnMut(&Step) -> std::io::Result<()>;

/// The longest file name Linux file systems take, in bytes.
const NAME_MAX: usize = 255;

/// An entry in the way.
#[derive(Debug, Clone, Serialize)]
pub struct Conflict {
    /// The snapshot path.
    pub path: String,
    /// What is there.
    pub reason: String,
}

/// What a restore would do, counted.
#[derive(Debug, Default, Serialize)]
pub struct Plan {
    /// Entries to create.
    pub new: u64,
    /// Existing directories left alone.
    pub kept_dirs: u64,
    /// Existing directories whose metadata would be set (`--overwrite`).
    pub updated_dirs: u64,
    /// Existing non-directories to replace (`--overwrite`).
    pub replaced: u64,
    /// Entries not restorable here.
    pub skipped: u64,
    /// Entries in the way.
    pub conflicts: u64,
    /// The first [`LISTED`] of them.
    pub first_conflicts: Vec<Conflict>,
    /// `--include` patterns that matched nothing.
    pub unmatched_includes: Vec<String>,
    /// Entries created only with `--allow-privileged` (setuid, capabilities, devices, entries
    /// outside the snapshot's paths).
    pub privileged: u64,
    /// The first [`LISTED`] of them, with the reason.
    pub first_privileged: Vec<Conflict>,
    /// Conflicts `--overwrite` does not resolve (directory against non-directory).
    #[serde(skip)]
    blocking: u64,
    /// Entries whose names no file system here takes (longer than [`NAME_MAX`]).
    #[serde(skip)]
    too_long: u64,
}

impl Plan {
    /// An error saying why the restore must not start, if it must not.
    pub fn check(&self, overwrite: bool, allow_privileged: bool) -> Result<()> {
        if !self.unmatched_includes.is_empty() {
            return Err(RestoreError::Refused {
                message: format!(
                    "--include {} matched nothing in the snapshot; nothing was written",
                    self.unmatched_includes
                        .iter()
                        .map(|p| format!("{p:?}"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
                hint: Some("`cairn ls SNAP` lists the snapshot's paths".into()),
            }
            .into());
        }
        if self.privileged > 0 && !allow_privileged {
            let mut msg = format!(
                "the snapshot holds {} privileged entr{} that restore creates only when asked; nothing was written:",
                self.privileged,
                if self.privileged == 1 { "y" } else { "ies" }
            );
            list(&mut msg, &self.first_privileged, self.privileged);
            return Err(RestoreError::Refused {
                message: msg,
                hint: Some("inspect the snapshot (`cairn ls -l SNAP`, who wrote it in `cairn snapshots`); if these are expected, restore with --allow-privileged, or leave them out with --include".into()),
            }
            .into());
        }
        if self.conflicts == 0 {
            return Ok(());
        }
        let mut msg = format!(
            "{} path{} in the target {} in the way; nothing was written:",
            self.conflicts,
            if self.conflicts == 1 { "" } else { "s" },
            if self.conflicts == 1 { "is" } else { "are" }
        );
        list(&mut msg, &self.first_conflicts, self.conflicts);
        let mut hints = Vec::new();
        if self.blocking < self.conflicts && !overwrite {
            hints.push("use --overwrite to replace existing files (--dry-run lists every path the restore would write)");
        }
        if self.blocking > self.too_long {
            hints.push("--overwrite never replaces a directory by a file or restores through a non-directory: move those out of the way first");
        }
        if self.too_long > 0 {
            hints.push("leave the entries with long names out with --include; a project snapshot restores with --layout manifests, which shortens them");
        }
        Err(RestoreError::Refused {
            message: msg,
            hint: Some(hints.join("; ")).filter(|h| !h.is_empty()),
        }
        .into())
    }
}

/// Append `first` of `total` entries to a refusal.
fn list(msg: &mut String, first: &[Conflict], total: u64) {
    for c in first {
        msg.push_str(&format!("\n  {}: {}", c.path, c.reason));
    }
    let more = total - first.len() as u64;
    if more > 0 {
        msg.push_str(&format!("\n  … and {more} more"));
    }
}

/// The preflight of restoring the tree of `snap` into `target`; writes nothing. `sink` receives every
/// step (for `--dry-run`).
pub fn plan(
    loader: &mut Loader,
    snap: &Snapshot,
    target: &Path,
    includes: &mut Option<Includes>,
    overwrite: bool,
    sink: Option<Sink<'_>>,
) -> Result<Plan> {
    if includes.is_none() {
        if let Some(path) = super::verify::database(snap) {
            let found = crate::trees::find_unresolved(loader, &snap.tree, &path)?;
            if !found.is_some_and(|(_, n)| n.kind == NodeKind::File) {
                return Err(super::verify::no_database(snap, &display(&path), true));
            }
        }
    }
    let mut p = Planner::new(target, overwrite, sink, Scope::of(snap))?;
    walk::walk(loader, snap, includes, &mut p)?;
    if let Some(i) = includes {
        p.plan.unmatched_includes = i.unmatched().into_iter().map(String::from).collect();
    }
    Ok(p.plan)
}

/// The preflight of writing the files `names` directly into `dir` (the cluster-backup
/// layout); writes nothing.
pub fn files(dir: &Path, names: &[&str], overwrite: bool, sink: Option<Sink<'_>>) -> Result<Plan> {
    let mut p = Planner::new(dir, overwrite, sink, Scope::default())?;
    for name in names {
        p.place(&[name.as_bytes().to_vec()], "file")?;
    }
    Ok(p.plan)
}

/// A directory of the snapshot, as found in the target.
enum Target {
    /// Not there (so nothing below it is either).
    Absent,
    /// An existing directory, open.
    Dir(OwnedFd),
    /// A non-directory is in its place.
    Blocked,
}

struct Planner<'s> {
    overwrite: bool,
    is_root: bool,
    /// `dirs[k]`: the directory at the first `k` path components.
    dirs: Vec<Target>,
    /// A blocked directory that is not selected itself (its depth and what is there):
    /// a conflict once anything below it is.
    pending: Option<(usize, String)>,
    plan: Plan,
    sink: Option<Sink<'s>>,
    scope: Scope,
}

impl<'s> Planner<'s> {
    fn new(target: &Path, overwrite: bool, sink: Option<Sink<'s>>, scope: Scope) -> Result<Self> {
        let top = match super::open_target(target)? {
            Some(fd) => Target::Dir(fd),
            None => Target::Absent,
        };
        Ok(Planner {
            overwrite,
            is_root: rustix::process::geteuid().is_root(),
            dirs: vec![top],
            pending: None,
            plan: Plan::default(),
            sink,
            scope,
        })
    }

    /// Count `node` at `path` if it is privileged.
    fn privileged(&mut self, node: &Node, path: &[Vec<u8>]) {
        if let Some(why) = privileged::reason(node, path, &self.scope) {
            self.plan.privileged += 1;
            if self.plan.first_privileged.len() < LISTED {
                self.plan.first_privileged.push(Conflict {
                    path: display(path),
                    reason: why.to_string(),
                });
            }
        }
    }

    /// The type of what is at `name` in the current directory of the target, if anything.
    fn existing(&self, name: &[u8], path: &[Vec<u8>]) -> Result<Option<FileType>> {
        let Some(Target::Dir(dir)) = self.dirs.last() else {
            return Ok(None);
        };
        match rfs::statat(dir, OsStr::from_bytes(name), AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(FileType::from_raw_mode(st.st_mode))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(Error::file("looking in the target at", display(path))(e)),
        }
    }

    fn step(
        &mut self,
        action: Action,
        path: &[Vec<u8>],
        kind: &'static str,
        reason: Option<&str>,
    ) -> Result<()> {
        let counter = match action {
            Action::New => &mut self.plan.new,
            Action::Keep => &mut self.plan.kept_dirs,
            Action::Update => &mut self.plan.updated_dirs,
            Action::Replace => &mut self.plan.replaced,
            Action::Skip => &mut self.plan.skipped,
            Action::Conflict => &mut self.plan.conflicts,
        };
        *counter += 1;
        let Some(sink) = self.sink.as_mut() else {
            return Ok(());
        };
        sink(&Step {
            action,
            path: &display(path),
            kind,
            reason,
        })
        .map_err(sys("printing the plan"))
    }

    fn conflict(
        &mut self,
        path: &[Vec<u8>],
        kind: &'static str,
        reason: String,
        blocking: bool,
    ) -> Result<()> {
        self.plan.blocking += u64::from(blocking);
        self.step(Action::Conflict, path, kind, Some(&reason))?;
        if self.plan.first_conflicts.len() < LISTED {
            self.plan.first_conflicts.push(Conflict {
                path: display(path),
                reason,
            });
        }
        Ok(())
    }

    /// A selected entry at `path`: the blocked directory above it, if any, is in the way.
    fn selected_below(&mut self, path: &[Vec<u8>]) -> Result<()> {
        match self.pending.take() {
            Some((depth, reason)) => {
                if path[depth - 1].len() > NAME_MAX {
                    self.plan.too_long += 1;
                }
                self.conflict(&path[..depth], "dir", reason, true)
            }
            None => Ok(()),
        }
    }

    /// A conflict if the name of the entry at `path` is longer than a file name may be.
    fn too_long(&mut self, path: &[Vec<u8>], kind: &'static str) -> Result<bool> {
        let len = path.last().map_or(0, Vec::len);
        if len <= NAME_MAX {
            return Ok(false);
        }
        self.plan.too_long += 1;
        self.conflict(path, kind, long_name(len), true)?;
        Ok(true)
    }

    /// A non-directory of `kind` to be written at `path`, in the current directory.
    fn place(&mut self, path: &[Vec<u8>], kind: &'static str) -> Result<()> {
        let name = path
            .last()
            .ok_or(RestoreError::Worker("an entry without a name"))?;
        if self.too_long(path, kind)? {
            return Ok(());
        }
        match self.existing(name, path)? {
            None => self.step(Action::New, path, kind, None),
            Some(FileType::Directory) => {
                let reason = format!("the target has a directory where the snapshot has a {kind}");
                self.conflict(path, kind, reason, true)
            }
            Some(_) if self.overwrite => self.step(Action::Replace, path, kind, None),
            Some(other) => {
                let reason = format!("already exists (a {})", type_name(other));
                self.conflict(path, kind, reason, false)
            }
        }
    }
}

impl Visit for Planner<'_> {
    fn enter(&mut self, node: &Node, path: &[Vec<u8>], included: bool) -> Result<()> {
        if included {
            self.selected_below(path)?;
            self.privileged(node, path);
        }
        if node.name.len() > NAME_MAX {
            if included {
                self.too_long(path, "dir")?;
            } else if self.pending.is_none() {
                // A conflict once something below it is selected (unless a directory above is
                // in the way already: that one is the conflict).
                self.pending = Some((path.len(), long_name(node.name.len())));
            }
            self.dirs.push(Target::Blocked);
            return Ok(());
        }
        let target = match self.existing(&node.name, path)? {
            None => {
                if included {
                    self.step(Action::New, path, "dir", None)?;
                }
                Target::Absent
            }
            Some(FileType::Directory) => {
                let Some(Target::Dir(parent)) = self.dirs.last() else {
                    unreachable!("something exists only in an existing directory")
                };
                let fd = super::open_dir(parent.as_fd(), &node.name)
                    .map_err(|e| super::entry_error(path, e))?;
                if included {
                    let action = if self.overwrite {
                        Action::Update
                    } else {
                        Action::Keep
                    };
                    self.step(action, path, "dir", None)?;
                }
                Target::Dir(fd)
            }
            Some(other) => {
                let reason = format!(
                    "the target has a {} where the snapshot has a directory",
                    type_name(other)
                );
                if included {
                    self.conflict(path, "dir", reason, true)?;
                } else {
                    self.pending = Some((path.len(), reason));
                }
                Target::Blocked
            }
        };
        self.dirs.push(target);
        Ok(())
    }

    fn leave(&mut self, _node: Node, path: &[Vec<u8>], _included: bool) -> Result<()> {
        self.dirs.pop();
        if self.pending.as_ref().is_some_and(|(d, _)| *d == path.len()) {
            self.pending = None;
        }
        Ok(())
    }

    fn entry(
        &mut self,
        _loader: &mut Loader,
        node: &mut Node,
        path: &[Vec<u8>],
        _tree: &Id,
    ) -> Result<()> {
        self.selected_below(path)?;
        self.privileged(node, path);
        let kind = node.kind.name();
        if let Some(why) = skip_reason(node, self.is_root) {
            return self.step(Action::Skip, path, kind, Some(why));
        }
        self.place(path, kind)
    }
}

/// Why a name of `len` bytes cannot be written.
fn long_name(len: usize) -> String {
    format!("its name is {len} bytes long; a file name may have at most {NAME_MAX}")
}

/// What is in the target, in words.
fn type_name(t: FileType) -> &'static str {
    match t {
        FileType::RegularFile => "file",
        FileType::Directory => "directory",
        FileType::Symlink => "symlink",
        FileType::Fifo => "FIFO",
        FileType::Socket => "socket",
        FileType::CharacterDevice => "character device",
        FileType::BlockDevice => "block device",
        FileType::Unknown => "file of unknown type",
    }
}
