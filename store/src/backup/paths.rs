//! Host paths into a backup session: resolved as the shell would, walked by
//! [`crate::source::fs::Walker`] against the parent snapshot.

use super::{Produced, Session};
use crate::source::fs::{Options, Walker};
use crate::{Error, Result};
use cairn_format::snapshot::SourceKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The absolute path `p` names, as a shell's `cd -P` would resolve it: symlinks and `..` in
/// the directories above it resolved physically, so the snapshot records real directories, and
/// the last component kept as given (a symlink named on the command line is saved as the
/// link). A path ending in `/`, `.` or `..` names a directory and is resolved whole, so
/// `link/` saves the directory a symlink points to, as `ls link/` lists it.
fn resolve(p: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    let bytes = p.as_os_str().as_bytes();
    let names_a_directory = matches!(
        abs.components().next_back(),
        Some(Component::CurDir | Component::ParentDir)
    ) || bytes.ends_with(b"/.")
        || (bytes.len() > 1 && bytes.ends_with(b"/"));
    if names_a_directory {
        return std::fs::canonicalize(&abs).or_else(|_| Ok(lexical(&abs)));
    }
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)
            .map(|real| real.join(name))
            .unwrap_or_else(|_| lexical(&abs))),
        _ => Ok(lexical(&abs)),
    }
}

/// A symlink to a directory named on the command line is saved as the link, as restic and
/// tar do; say so, since the directory itself (an `/etc/kubernetes` that is a link, say) is
/// then not in the snapshot.
fn warn_if_link_to_directory(given: &Path, real: &Path) {
    let is_link = std::fs::symlink_metadata(real).is_ok_and(|m| m.file_type().is_symlink());
    if is_link && std::fs::metadata(real).is_ok_and(|m| m.is_dir()) {
        tracing::warn!(
            "{} is a symlink to a directory: the snapshot holds the link, not the directory; \
             write {}/ to back up the directory it points to",
            given.display(),
            given.display()
        );
    }
}

/// `p` with `.` dropped and `..` applied to the components before it (for paths that do not
/// exist, where nothing physical can be resolved).
fn lexical(p: &Path) -> PathBuf {
    let mut out = PathBuf::from("/");
    for c in p.components() {
        match c {
            Component::ParentDir => {
                out.pop();
            }
            Component::Normal(n) => out.push(n),
            _ => {}
        }
    }
    out
}

/// Sorted, deduplicated absolute paths.
pub fn absolute_paths(paths: &[PathBuf]) -> Result<Vec<String>> {
    let mut out: Vec<String> = paths
        .iter()
        .map(|p| {
            let real = resolve(p).map_err(Error::file("resolving", p.display()))?;
            warn_if_link_to_directory(p, &real);
            Ok(real.display().to_string())
        })
        .collect::<Result<_>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Walk `paths` into the session's saver. Returns what the snapshot needs.
pub fn walk(
    s: &mut Session,
    source: SourceKind,
    paths: Vec<String>,
    opts: Options,
) -> Result<Produced> {
    let walked: Vec<PathBuf> = paths.iter().map(Into::into).collect();
    walk_recording(s, source, paths, &walked, opts)
}

/// Walk `walked` into the session's saver, for a snapshot that will record `paths` (which
/// may name more than is walked, e.g. the host inventory): the parent is the latest snapshot
/// that recorded the same.
pub fn walk_recording(
    s: &mut Session,
    source: SourceKind,
    paths: Vec<String>,
    walked: &[PathBuf],
    opts: Options,
) -> Result<Produced> {
    let parent = if opts.force {
        None
    } else {
        s.parent(source, &paths)?
    };
    if let Some((id, _)) = &parent {
        tracing::info!(
            "parent snapshot {}: unchanged files are not read again",
            id.short()
        );
    }
    let loader = parent.as_ref().map(|_| s.loader());
    let policy = s.repo().cdc_policy();
    let progress = s.progress().clone();
    let walker = Walker::new(&mut s.saver, loader, policy, opts, progress);
    let outcome = walker.run(walked, parent.as_ref().map(|(_, s)| s.tree))?;
    Ok(Produced {
        root: outcome.root,
        source,
        paths,
        facts: Vec::new(),
        parent: parent.map(|(id, _)| id),
        stats: outcome.stats,
        unreadable: outcome.unreadable,
        changed: outcome.changed,
    })
}
