//! `cairn backup PATH…`.

use super::Reader;
use crate::args::{BackupArgs, Global};
use crate::exit::Code;
use crate::output;
use crate::source::fs::{Excludes, Options, Walker};
use anyhow::{bail, Context, Result};
use cairn_format::snapshot::{Snapshot, SnapshotStats, SourceKind};
use cairn_store::saver::Saver;
use cairn_store::snapshots::{self, Filter};
use serde_json::json;
use std::time::Instant;

/// This host's name.
pub fn hostname() -> String {
    rustix::system::uname()
        .nodename()
        .to_string_lossy()
        .into_owned()
}

/// The absolute form of `p` with symlinks in its parent directories resolved (so the snapshot
/// records real directories above it) but the last component kept as given.
fn resolve_parent(p: &std::path::Path) -> std::io::Result<std::path::PathBuf> {
    let abs = std::path::absolute(p)?;
    match (abs.parent(), abs.file_name()) {
        (Some(parent), Some(name)) => Ok(std::fs::canonicalize(parent)
            .map(|real| real.join(name))
            .unwrap_or(abs)),
        _ => Ok(abs),
    }
}

pub fn run(g: &Global, a: BackupArgs) -> Result<Code> {
    let started = Instant::now();
    let time_ns = chrono::Utc::now()
        .timestamp_nanos_opt()
        .context("clock outside the representable range")?;
    let mut patterns = a.excludes.clone();
    for f in &a.exclude_files {
        let text = std::fs::read_to_string(f)
            .with_context(|| format!("reading exclude file {}", f.display()))?;
        patterns.extend(
            text.lines()
                .map(str::trim)
                .filter(|l| !l.is_empty() && !l.starts_with('#'))
                .map(str::to_string),
        );
    }
    let excludes = Excludes::new(&patterns)?;
    if a.paths
        .iter()
        .all(|p| std::fs::symlink_metadata(p).is_err())
    {
        bail!("none of the paths to back up exists; nothing was saved");
    }
    let mut paths: Vec<String> = a
        .paths
        .iter()
        .map(|p| resolve_parent(p).map(|p| p.display().to_string()))
        .collect::<std::io::Result<_>>()?;
    paths.sort();
    paths.dedup();
    let host = a.host.clone().unwrap_or_else(hostname);

    let reader = Reader::open(g)?;
    let repo = reader.repo.clone();
    let parent = if a.force {
        None
    } else {
        let filter = Filter {
            host: Some(host.clone()),
            tags: Vec::new(),
        };
        snapshots::list(&repo)?
            .snapshots
            .into_iter()
            .rev()
            .find(|(_, s)| filter.matches(s) && s.source == SourceKind::Paths && s.paths == paths)
    };
    if let Some((id, _)) = &parent {
        tracing::info!(
            "parent snapshot {}: unchanged files are not read again",
            id.short()
        );
    }

    let mut saver = Saver::new(repo.clone(), reader.index.clone(), 0);
    let progress = output::progress(None, g.quiet, g.json);
    let walker = Walker::new(
        &mut saver,
        parent.as_ref().map(|_| reader.loader()),
        repo.cdc_policy(),
        Options {
            excludes,
            one_file_system: a.one_file_system,
            force: a.force,
        },
        progress.clone(),
    );
    let fs_paths: Vec<std::path::PathBuf> = paths.iter().map(Into::into).collect();
    let outcome = walker.run(&fs_paths, parent.as_ref().map(|(_, s)| s.tree))?;
    let (saved, _) = saver.finish()?;
    progress.finish_and_clear();

    let stats = SnapshotStats {
        blobs_added: saved.blobs_added,
        stored_added: saved.stored_added,
        duration_ms: started.elapsed().as_millis() as u64,
        ..outcome.stats
    };
    let snapshot = Snapshot {
        time_ns,
        host,
        username: uzers::get_current_username()
            .map(|u| u.to_string_lossy().into_owned())
            .unwrap_or_default(),
        source: SourceKind::Paths,
        paths,
        tags: a.tags.clone(),
        tree: outcome.root,
        parent: parent.as_ref().map(|(id, _)| *id),
        stats,
        program: format!("cairn {}", env!("CARGO_PKG_VERSION")),
        facts: Vec::new(),
    };
    let id = snapshots::save(&repo, &snapshot)?;

    if g.json {
        output::json(&json!({
            "snapshot": id.to_hex(),
            "parent": snapshot.parent.map(|p| p.to_hex()),
            "files": stats.files,
            "dirs": stats.dirs,
            "bytes": stats.bytes,
            "files_read": stats.files_read,
            "blobs_added": stats.blobs_added,
            "added_bytes": stats.stored_added,
            "duration_ms": stats.duration_ms,
            "unreadable": outcome.unreadable.iter().map(|(p, e)| json!({"path": p, "error": e})).collect::<Vec<_>>(),
        }))?;
    } else if !g.quiet {
        println!(
            "snapshot {} saved: {} files, {} dirs, {} ({} files read, {} new blobs, {} stored) in {:.1}s",
            id.short(),
            stats.files,
            stats.dirs,
            output::bytes(stats.bytes),
            stats.files_read,
            stats.blobs_added,
            output::bytes(stats.stored_added),
            stats.duration_ms as f64 / 1000.0
        );
    }
    if !outcome.unreadable.is_empty() {
        eprintln!(
            "cairn: warning: {} entries could not be read and are missing from snapshot {}:",
            outcome.unreadable.len(),
            id.short()
        );
        for (p, e) in &outcome.unreadable {
            eprintln!("  {p}: {e}");
        }
        return Ok(Code::Partial);
    }
    Ok(Code::Ok)
}
