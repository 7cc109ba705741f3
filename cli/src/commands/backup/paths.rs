//! `cairn backup PATH…`.

use super::{Produced, Session};
use crate::args::{BackupCommon, Global, WalkArgs};
use crate::source::fs::{Excludes, Options, Walker};
use anyhow::{bail, Result};
use cairn_format::snapshot::SourceKind;
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// The absolute path `p` names, as a shell's `cd -P` would resolve it: symlinks and `..` in
/// the directories above it resolved physically, so the snapshot records real directories, and
/// the last component kept as given (a symlink named on the command line is saved as the
/// link). A path ending in `.` or `..` names a directory and is resolved whole.
fn resolve(p: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    let ends_in_dots = matches!(
        abs.components().next_back(),
        Some(Component::CurDir | Component::ParentDir)
    ) || p.as_os_str().as_bytes().ends_with(b"/.");
    if ends_in_dots {
        return std::fs::canonicalize(&abs).or_else(|_| Ok(lexical(&abs)));
    }
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)
            .map(|real| real.join(name))
            .unwrap_or_else(|_| lexical(&abs))),
        _ => Ok(lexical(&abs)),
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

/// Walk options from the command line.
pub fn walk_options(w: &WalkArgs) -> Result<Options> {
    let mut patterns = w.excludes.clone();
    for f in &w.exclude_files {
        patterns.extend(crate::credentials::read_list_file(f, "exclude")?);
    }
    Ok(Options {
        excludes: Excludes::new(&patterns)?,
        one_file_system: w.one_file_system,
        force: w.force,
        root: PathBuf::new(),
    })
}

/// Sorted, deduplicated absolute paths.
pub fn absolute_paths(paths: &[PathBuf]) -> Result<Vec<String>> {
    let mut out: Vec<String> = paths
        .iter()
        .map(|p| resolve(p).map(|p| p.display().to_string()))
        .collect::<std::io::Result<_>>()?;
    out.sort();
    out.dedup();
    Ok(out)
}

/// Walk `paths` into the session's saver. Returns what the snapshot needs.
pub fn walk(
    s: &mut Session<'_>,
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
    s: &mut Session<'_>,
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
    let loader = parent.as_ref().map(|_| s.reader.loader());
    let walker = Walker::new(
        &mut s.saver,
        loader,
        s.reader.repo.cdc_policy(),
        opts,
        s.progress.clone(),
    );
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

pub fn run(
    g: &Global,
    common: &BackupCommon,
    w: &WalkArgs,
    paths: &[PathBuf],
) -> Result<super::Saved> {
    let opts = walk_options(w)?;
    if paths.iter().all(|p| std::fs::symlink_metadata(p).is_err()) {
        bail!("none of the paths to back up exists; nothing was saved");
    }
    let paths = absolute_paths(paths)?;
    let mut s = Session::open(g, common)?;
    let produced = walk(&mut s, SourceKind::Paths, paths, opts)?;
    s.finish(produced)
}
