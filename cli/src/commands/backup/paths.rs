//! `cairn backup PATH…`.

use super::session;
use crate::args::{BackupCommon, Global, WalkArgs};
use anyhow::{bail, Result};
use cairn_format::snapshot::SourceKind;
use cairn_store::backup::paths::{absolute_paths, walk};
use cairn_store::backup::Saved;
use cairn_store::source::fs::{Excludes, Options};
use std::path::PathBuf;

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

pub fn run(g: &Global, common: &BackupCommon, w: &WalkArgs, paths: &[PathBuf]) -> Result<Saved> {
    let opts = walk_options(w)?;
    if paths.iter().all(|p| std::fs::symlink_metadata(p).is_err()) {
        bail!("none of the paths to back up exists; nothing was saved");
    }
    let paths = absolute_paths(paths)?;
    let mut s = session(g, common)?;
    let produced = walk(&mut s, SourceKind::Paths, paths, opts)?;
    Ok(s.finish(produced)?)
}
