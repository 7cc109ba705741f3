//! `cairn backup PATH…`.

use super::{Produced, Session};
use crate::args::{BackupCommon, Global, WalkArgs};
use crate::exit::Code;
use crate::source::fs::{Excludes, Options, Walker};
use anyhow::{bail, Result};
use cairn_format::snapshot::SourceKind;
use std::path::{Path, PathBuf};

/// The absolute form of `p` with symlinks in its parent directories resolved (so the snapshot
/// records real directories above it) but the last component kept as given.
fn resolve_parent(p: &Path) -> std::io::Result<PathBuf> {
    let abs = std::path::absolute(p)?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)
            .map(|real| real.join(name))
            .unwrap_or(abs)),
        _ => Ok(abs),
    }
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
    })
}

/// Sorted, deduplicated absolute paths.
pub fn absolute_paths(paths: &[PathBuf]) -> Result<Vec<String>> {
    let mut out: Vec<String> = paths
        .iter()
        .map(|p| resolve_parent(p).map(|p| p.display().to_string()))
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
    let fs_paths: Vec<PathBuf> = paths.iter().map(Into::into).collect();
    let outcome = walker.run(&fs_paths, parent.as_ref().map(|(_, s)| s.tree))?;
    Ok(Produced {
        root: outcome.root,
        source,
        paths,
        facts: Vec::new(),
        parent: parent.map(|(id, _)| id),
        stats: outcome.stats,
        unreadable: outcome.unreadable,
    })
}

pub fn run(g: &Global, common: &BackupCommon, w: &WalkArgs, paths: &[PathBuf]) -> Result<Code> {
    let opts = walk_options(w)?;
    if paths.iter().all(|p| std::fs::symlink_metadata(p).is_err()) {
        bail!("none of the paths to back up exists; nothing was saved");
    }
    let paths = absolute_paths(paths)?;
    let mut s = Session::open(g, common)?;
    let produced = walk(&mut s, SourceKind::Paths, paths, opts)?;
    s.finish(produced)
}
